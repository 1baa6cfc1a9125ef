/* vigil pin (placeholder: being written). */
#include <stdio.h>

#include "commands.h"

int cmd_pin(int argc, char **argv)
{
        fprintf(stderr, "vigil pin: not implemented yet\n");
        return 2;
}
