/* vigil: names of Keylime's agent operational states, shared by the verifier and the tenant. */
#include "agent_state.h"
#include "cleanup.h"

static const char *const names[] = {
        [VG_AGENT_REGISTERED] = "Registered",
        [VG_AGENT_START] = "Start",
        [VG_AGENT_SAVED] = "Saved",
        [VG_AGENT_GET_QUOTE] = "Get Quote",
        [VG_AGENT_GET_QUOTE_RETRY] = "Get Quote (retry)",
        [VG_AGENT_PROVIDE_V] = "Provide V",
        [VG_AGENT_PROVIDE_V_RETRY] = "Provide V (retry)",
        [VG_AGENT_FAILED] = "Failed",
        [VG_AGENT_TERMINATED] = "Terminated",
        [VG_AGENT_INVALID_QUOTE] = "Invalid Quote",
        [VG_AGENT_TENANT_FAILED] = "Tenant Quote Failed",
};

const char *vg_agent_state_name(long state)
{
        return state >= 0 && (unsigned long)state < VG_ARRAY_SIZE(names) ? names[state] : "Unknown";
}
