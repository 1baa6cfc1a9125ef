/* vigil-verifier: integrity (placeholder: being written). */
#include <stddef.h>
