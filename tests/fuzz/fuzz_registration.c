/* vigil fuzz: what the registrar and verifier parse from peers besides quotes: the tpm2-tools
 * credential blob (round trip must be exact) and Keylime's tpm_policy JSON. The first byte
 * picks the parser. */
#include <stdlib.h>
#include <string.h>

#include "credential.h"
#include "quote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vg_error err = { 0 };

        if (size == 0)
                return 0;
        if (data[0] & 1) {
                struct vg_credential c;
                uint8_t *again = NULL;
                size_t len = 0;

                if (vg_credential_blob_parse(data + 1, size - 1, &c, &err) == 0) {
                        /* A parsed blob serializes back to exactly the bytes it came from. */
                        if (vg_credential_blob(&c, &again, &len) < 0 || len != size - 1 ||
                            memcmp(again, data + 1, len) != 0)
                                abort();
                        free(again);
                } else if (!err.msg[0]) {
                        abort(); /* every refusal says why */
                }
                return 0;
        }
        char *json = malloc(size);
        if (!json)
                return 0;
        memcpy(json, data + 1, size - 1);
        json[size - 1] = '\0';
        struct vg_tpm_policy *p = NULL;
        if (vg_tpm_policy_parse(json, &p, &err) == 0)
                vg_tpm_policy_free(p);
        else if (!err.msg[0])
                abort();
        free(json);
        return 0;
}
