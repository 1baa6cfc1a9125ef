/* vigil: sink_mqtt (placeholder: being written). */
#include <stddef.h>
