/* vigil tenant: placeholder, being written. */
#include <stdio.h>

#include "commands.h"

int cmd_tenant(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        fprintf(stderr, "vigil tenant: not built yet\n");
        return 1;
}
