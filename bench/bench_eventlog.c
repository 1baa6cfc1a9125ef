/* vigil bench: eventlog (placeholder: being written). */
#include <stdio.h>

int main(void)
{
        return 0;
}
