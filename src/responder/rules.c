/* vigil-responder: rules (placeholder: being written). */
#include <stddef.h>
