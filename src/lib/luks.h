/* vigil: LUKS2 Clevis bindings through libcryptsetup (placeholder: being written). */
#pragma once

#include "pin.h"
