/* vigil: baseline (placeholder: being written). */
#pragma once
