/* vigil: the operational states a Keylime verifier reports for an agent
 * (keylime/common/states.py): the numbers on the wire and the names keylime_tenant prints. */
#pragma once

enum vg_agent_state {
        VG_AGENT_REGISTERED = 0,
        VG_AGENT_START = 1,
        VG_AGENT_SAVED = 2,
        VG_AGENT_GET_QUOTE = 3,
        VG_AGENT_GET_QUOTE_RETRY = 4,
        VG_AGENT_PROVIDE_V = 5,
        VG_AGENT_PROVIDE_V_RETRY = 6,
        VG_AGENT_FAILED = 7,
        VG_AGENT_TERMINATED = 8,
        VG_AGENT_INVALID_QUOTE = 9,
        VG_AGENT_TENANT_FAILED = 10,
};

/* "Get Quote", "Failed", ... as Keylime spells them; "Unknown" outside 0..10. */
const char *vg_agent_state_name(long state);
