/* vigil-responder (placeholder: being written). */
#include <stddef.h>
