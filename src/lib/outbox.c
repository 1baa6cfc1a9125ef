/* vigil: outbox (placeholder: being written). */
#include <stddef.h>
