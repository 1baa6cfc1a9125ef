/* vigil-responder (placeholder: being written). */
#include <stdio.h>

int main(void)
{
        fprintf(stderr, "vigil-responder: not implemented yet\n");
        return 2;
}
