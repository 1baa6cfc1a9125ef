/* vigil: sink_file (placeholder: being written). */
#include <stddef.h>
