/* vigil: eventlog (placeholder: being written). */
#include <stddef.h>
