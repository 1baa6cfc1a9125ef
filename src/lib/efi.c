/* vigil: efi (placeholder: being written). */
#include <stddef.h>
