/* vigil: mb_policy (placeholder: being written). */
#include <stddef.h>
