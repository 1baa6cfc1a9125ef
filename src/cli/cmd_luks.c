/* vigil luks (placeholder: being written). */
#include <stdio.h>

#include "commands.h"

int cmd_luks(int argc, char **argv)
{
        fprintf(stderr, "vigil luks: not implemented yet\n");
        return 2;
}
