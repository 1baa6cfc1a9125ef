/* vigil policy: placeholder, being written. */
#include <stdio.h>

#include "commands.h"

int cmd_policy(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        fprintf(stderr, "vigil policy: not built yet\n");
        return 1;
}
