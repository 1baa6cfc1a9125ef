/* vigil: mb_policy (placeholder: being written). */
#pragma once
