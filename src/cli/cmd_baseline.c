/* vigil baseline (placeholder: being written). */
#include <stdio.h>

#include "commands.h"

int cmd_baseline(int argc, char **argv)
{
        fprintf(stderr, "vigil baseline: not implemented yet\n");
        return 2;
}
