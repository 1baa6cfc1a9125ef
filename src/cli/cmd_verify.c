/* vigil verify: placeholder, being written. */
#include <stdio.h>

#include "commands.h"

int cmd_verify(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        fprintf(stderr, "vigil verify: not built yet\n");
        return 1;
}
