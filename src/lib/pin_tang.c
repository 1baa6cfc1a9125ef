/* vigil: the tang pin (placeholder: being written). */
#include "pin_private.h"
