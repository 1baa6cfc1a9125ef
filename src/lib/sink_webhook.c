/* vigil: sink_webhook (placeholder: being written). */
#include <stddef.h>
