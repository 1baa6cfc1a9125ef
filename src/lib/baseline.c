/* vigil: baseline (placeholder: being written). */
#include <stddef.h>
