/* vigil: the sss pin (placeholder: being written). */
#include "pin_private.h"
