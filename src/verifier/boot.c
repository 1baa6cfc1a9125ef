/* vigil-verifier: boot (placeholder: being written). */
#include <stddef.h>
