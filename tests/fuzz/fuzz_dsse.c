/* vigil fuzz: DSSE envelopes checked with a fixed P-256 key (private key 1, public key the
 * generator point, so seeds can carry valid signatures), and the same bytes as an allowlist and
 * as a base runtime policy; a verified payload is checked as a runtime policy. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "dsse.h"
#include "policy_create.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The P-256 generator point as a public key, made afresh per input: no global state. */
static EVP_PKEY *fixed_key(void)
{
        static const uint8_t g[] = {
                0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5,
                0x63, 0xa4, 0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4,
                0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a,
                0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33,
                0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
        };
        OSSL_PARAM params[] = {
                OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"P-256", 0),
                OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)g, sizeof(g)),
                OSSL_PARAM_END,
        };
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        EVP_PKEY *key = NULL;

        if (ctx && EVP_PKEY_fromdata_init(ctx) > 0)
                EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
        EVP_PKEY_CTX_free(ctx);
        return key;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vg_dsse_verified v = { 0 };
        struct vg_error err = { 0 };
        struct vg_policy *p = NULL;
        EVP_PKEY *key = fixed_key();
        char *out = NULL;

        if (key && vg_dsse_verify((const char *)data, size, key, &v, &err) == 0) {
                if (!v.payload || !v.type)
                        abort();
                vg_policy_check_json((const char *)v.payload, v.len, &err);
        }
        vg_dsse_verified_clear(&v);
        EVP_PKEY_free(key);

        /* The same bytes as the other inputs of `vigil policy create`; whatever is accepted
         * must write out. */
        if (vg_policy_new(&p) < 0)
                return 0;
        if (vg_policy_add_allowlist(p, (const char *)data, size, "fuzz", &err) == 0 &&
            vg_policy_to_flat(p, &out, NULL, &err) == 0)
                free(out);
        vg_policy_free(p);
        p = NULL;
        if (vg_policy_new(&p) < 0)
                return 0;
        if (vg_policy_merge_json(p, (const char *)data, size, "fuzz", &err) == 0) {
                out = NULL;
                if (vg_policy_to_json(p, &out, &err) != 0 ||
                    vg_policy_check_json(out, strlen(out), &err) != 0)
                        abort(); /* what we write must pass our own strict check */
                free(out);
        }
        vg_policy_free(p);
        return 0;
}
