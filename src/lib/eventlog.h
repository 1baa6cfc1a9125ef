/* vigil: eventlog (placeholder: being written). */
#pragma once
