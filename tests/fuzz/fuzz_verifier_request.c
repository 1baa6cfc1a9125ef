/* vigil fuzz: the verifier's request bodies, POST /agents/{id} (what a tenant enrols) and
 * POST/PUT /allowlists/{name}, through the same pure parsers the REST API uses. The first byte
 * picks the parser. Every refusal must say why; every accepted body must be consistent. */
#include <stdlib.h>
#include <string.h>

#include "verifier.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vg_error err = { 0 };
        const char *body;

        if (size == 0)
                return 0;
        body = (const char *)data + 1;
        if (data[0] & 1) {
                struct vg_cv_add_request r;
                if (vg_cv_parse_add_request(body, size - 1, &r, &err) == 0) {
                        /* Required fields present, port in range, JSON texts are objects. */
                        if (!r.ak_tpm || !r.ip || r.port < 1 || r.port > 65535 || !r.tpm_policy ||
                            r.tpm_policy[0] != '{' || !r.meta_data || r.meta_data[0] != '{')
                                abort();
                        if (r.runtime_policy_name && !vg_cv_agent_id_valid(r.runtime_policy_name))
                                abort();
                        vg_cv_add_request_clear(&r);
                } else if (!err.msg[0]) {
                        abort();
                }
        } else {
                struct vg_cv_allowlist_request r;
                if (vg_cv_parse_allowlist_request(body, size - 1, &r, &err) == 0) {
                        if (!r.runtime_policy || strlen(r.runtime_policy) == 0)
                                abort();
                        vg_cv_allowlist_request_clear(&r);
                } else if (!err.msg[0]) {
                        abort();
                }
        }
        return 0;
}
