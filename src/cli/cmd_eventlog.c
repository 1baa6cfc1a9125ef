/* vigil eventlog (placeholder: being written). */
#include <stdio.h>

#include "commands.h"

int cmd_eventlog(int argc, char **argv)
{
        fprintf(stderr, "vigil eventlog: not implemented yet\n");
        return 2;
}
