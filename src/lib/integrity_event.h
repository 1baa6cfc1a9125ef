/* vigil: integrity_event (placeholder: being written). */
#pragma once
