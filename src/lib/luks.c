/* vigil: LUKS2 Clevis bindings (placeholder: being written). */
#include "luks.h"
