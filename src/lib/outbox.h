/* vigil: outbox (placeholder: being written). */
#pragma once
