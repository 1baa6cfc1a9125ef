/* vigil: integrity_event (placeholder: being written). */
#include <stddef.h>
