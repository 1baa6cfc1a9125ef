/* vigil: TPM2_MakeCredential done in software for a registrar (TPM 2.0 Part 1 §24), the
 * tpm2-tools credential file Keylime sends as `blob`, and Keylime's challenge and auth_tag. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tpm_public.h"

/* TPM2B_ID_OBJECT: u16 size, TPM2B_DIGEST integrityHMAC, encIdentity. */
#define VG_ID_OBJECT_MAX (2 + 2 + VG_HASH_MAX_SIZE + 2 + VG_HASH_MAX_SIZE)
/* TPM2B_ENCRYPTED_SECRET: u16 size, then an RSA-4096 ciphertext or a P-521 TPMS_ECC_POINT. */
#define VG_ENC_SECRET_MAX (2 + 512)

struct vg_credential {
        uint8_t id_object[VG_ID_OBJECT_MAX]; /* marshalled TPM2B_ID_OBJECT, size field included */
        size_t id_object_len;
        uint8_t secret[VG_ENC_SECRET_MAX]; /* marshalled TPM2B_ENCRYPTED_SECRET */
        size_t secret_len;
};

/*
 * MakeCredential(ek, credential, ak_name): seed by RSA-OAEP (label "IDENTITY") or ECDH +
 * KDFe for an ECC EK, then KDFa "STORAGE"/"INTEGRITY", AES-CFB and the outer HMAC, all with
 * the EK's nameAlg and symmetric definition. credential holds 1..digest-size bytes of the
 * EK's nameAlg. Only the TPM holding the EK, with the key named ak_name loaded, recovers it.
 */
int vg_credential_make(const struct vg_tpm_public *ek, const uint8_t *ak_name, size_t ak_name_len,
                       const uint8_t *credential, size_t credential_len, struct vg_credential *out,
                       struct vg_error *err);

/* tpm2-tools' credential file (tpm2_makecredential -o; Keylime's `blob` before base64):
 * big-endian u32 0xBADCC0DE, u32 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET. free(*out). */
int vg_credential_blob(const struct vg_credential *c, uint8_t **out, size_t *len);
int vg_credential_blob_parse(const uint8_t *data, size_t len, struct vg_credential *out,
                             struct vg_error *err);

/* Keylime registration (reference keylime.md §3). The challenge: 32 random [A-Za-z0-9] and a
 * NUL. The HMAC key is base64(challenge) as ASCII (what the agent derives from the secret
 * ActivateCredential returns); key must hold 45 bytes. */
#define VG_CHALLENGE_LEN     32
#define VG_CHALLENGE_KEY_LEN 44
#define VG_AUTH_TAG_LEN      96
int vg_registration_challenge(char challenge[VG_CHALLENGE_LEN + 1]);
int vg_registration_key(const void *secret, size_t secret_len, char key[VG_CHALLENGE_KEY_LEN + 1]);
/* auth_tag = hex(HMAC-SHA384(key, agent_uuid)), 96 lower-case hex digits and a NUL. */
int vg_auth_tag(const char *key, const char *agent_uuid, char tag[VG_AUTH_TAG_LEN + 1]);
/* Constant-time comparison of a received tag (either case) with the expected one; 0 if equal,
 * -EKEYREJECTED otherwise (also for a wrong length). */
int vg_auth_tag_check(const char *key, const char *agent_uuid, const char *tag,
                      struct vg_error *err);
