/* vigil fuzz: the Keylime quote string parser and verifier. Any input is parsed, re-encoded,
 * and verified against a fixed P-256 key with checks that must never crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "quote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fixed public key (the P-256 generator point), made afresh per input: no global state. */
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
        struct vg_quote *q = NULL;
        struct vg_error err = { 0 };
        enum vg_quote_status st;
        EVP_PKEY *key;
        char *s;

        if (vg_quote_parse((const char *)data, size, &q, &err) < 0)
                return 0;
        if (vg_quote_format(q, &s) == 0)
                free(s);
        key = fixed_key();
        if (key) {
                struct vg_quote_expect exp = {
                        .nonce = q->attest.extra_data,
                        .nonce_len = q->attest.extra_data_len,
                        .hash_alg = q->sig.hash,
                };
                vg_quote_verify(q, key, &exp, &st, &err);
                EVP_PKEY_free(key);
        }
        vg_quote_check_clock(&q->attest.clock_info, &q->attest.clock_info, &st, &err);
        vg_quote_check_pcr16(&q->pcrs, VG_HASH_SHA256, "pem", 3, &st, &err);
        vg_quote_free(q);
        return 0;
}
