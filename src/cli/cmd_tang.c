/* vigil tang: placeholder, being written. */
#include <stdio.h>

#include "commands.h"

int cmd_tang(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        fprintf(stderr, "vigil tang: not built yet\n");
        return 1;
}
