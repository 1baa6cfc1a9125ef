/* vigil-agent: Keylime's software crypto over TPM artefacts: the hash_ek agent id and the
 * registration auth_tag, whose HMAC key is the base64 text of the recovered challenge. */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "encoding.h"
#include "hash.h"
#include "credential.h"
#include "keylime_crypto.h"
#include "tpm_public.h"

/* The SHA-256 hex of the EK public key's SubjectPublicKeyInfo PEM, as rust-keylime hashes it. */
int vg_agent_ek_hash(const uint8_t *ek, size_t len, char *out, struct vg_error *err)
{
        _cleanup_tpm_public_ struct vg_tpm_public *pub = NULL;
        _cleanup_free_ char *pem = NULL, *hex = NULL;
        uint8_t md[VG_HASH_MAX_SIZE];
        int r;

        if ((r = vg_tpm_public_parse(ek, len, &pub, err)) < 0 ||
            (r = vg_tpm_public_to_pem(pub, &pem, err)) < 0)
                return r;
        if (vg_hash(VG_HASH_SHA256, pem, strlen(pem), md) < 0 ||
            !(hex = vg_hex_encode(md, vg_hash_size(VG_HASH_SHA256))))
                return -ENOMEM;
        memcpy(out, hex, strlen(hex) + 1);
        return 0;
}

int vg_agent_auth_tag(const uint8_t *cred, size_t cred_len, const char *uuid,
                      char tag[VG_AGENT_AUTH_TAG_LEN + 1])
{
        _cleanup_free_ char *key = vg_b64_encode(cred, cred_len, VG_B64_STD);
        int r;

        if (!key)
                return -ENOMEM;
        r = vg_auth_tag(key, uuid, tag);
        OPENSSL_cleanse(key, strlen(key));
        return r;
}
