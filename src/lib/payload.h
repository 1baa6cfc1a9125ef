/* vigil: Keylime payload delivery (reference/keylime.md §4): the U/V key halves that combine
 * into K on an attested agent, the AES-256-GCM payload, its safe unpacking and autorun script. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "error.h"

#define VG_PAYLOAD_KEY_SIZE     32
#define VG_PAYLOAD_AUTH_TAG_HEX 96 /* hex of HMAC-SHA384 */
#define VG_PAYLOAD_MAX_ENCRYPTED                                                                   \
        (64u << 20) /* decoded "payload" bytes accepted from /keys/ukey                            \
                     */

/* ---- Agent side ---------------------------------------------------------------------------- */

struct vg_payload_state; /* NK (borrowed), uuid, the pending halves, K, the encrypted payload */

int vg_payload_state_new(EVP_PKEY *nk, const char *uuid, struct vg_payload_state **out);
/* Wipes U, V, K and the payload. NULL is fine. */
void vg_payload_state_free(struct vg_payload_state *st);
VG_DEFINE_CLEANUP_FUNC(struct vg_payload_state, vg_payload_state_free)

/*
 * POST /keys/ukey: encrypted_key is b64 RSA-OAEP-SHA1(NK, U), auth_tag the hex HMAC-SHA384(K,
 * uuid), payload (may be NULL or "") b64(IV16 || ciphertext || tag16).
 * POST /keys/vkey: encrypted_key is b64 RSA-OAEP-SHA1(NK, V).
 *
 * Each half must decrypt to exactly 32 bytes (-EINVAL otherwise, and nothing is stored). When
 * the second half of a pair arrives, K = U xor V is checked against the auth_tag in constant
 * time; on a mismatch both halves, the tag and the payload are wiped and the call that
 * completed the pair returns -EKEYREJECTED.
 *
 * Re-sent halves: Keylime lets the tenant and verifier send new halves at any time (tenant
 * `update` re-adds an agent with a fresh K). vigil accepts them, but a half that arrives once K
 * exists starts a *new* pair: it is never combined with a half of the old pair, and the old K
 * (and its delivered payload) stays in force until the new pair authenticates, so a stray or
 * hostile half can neither corrupt nor erase a working key. A half re-sent before its pair is
 * complete replaces the earlier one, as in Keylime.
 */
int vg_payload_add_u(struct vg_payload_state *st, const char *encrypted_key_b64,
                     const char *auth_tag_hex, const char *payload_b64, struct vg_error *err);
int vg_payload_add_v(struct vg_payload_state *st, const char *encrypted_key_b64,
                     struct vg_error *err);
/* Forget K, the halves and the payload (wiped). The agent may call it on re-registration. */
void vg_payload_reset(struct vg_payload_state *st);

bool vg_payload_have_key(const struct vg_payload_state *st);
/* True when the current K has been delivered (vg_payload_deliver succeeded for it). */
bool vg_payload_delivered(const struct vg_payload_state *st);

/* GET /keys/verify?challenge=: lower-case hex HMAC-SHA384(K, challenge); -EAGAIN before K. */
int vg_payload_verify_hmac(const struct vg_payload_state *st, const char *challenge,
                           char out_hex[VG_PAYLOAD_AUTH_TAG_HEX + 1], struct vg_error *err);

struct vg_payload_config {
        const char *secure_dir;       /* private dir, created 0700 if missing */
        const char *enc_keyname;      /* K's file name in secure_dir/unzipped ("derived_tci_key") */
        const char *dec_payload_file; /* plaintext's file name there ("decrypted_payload") */
        bool extract_zip;             /* extract_payload_zip */
        const char *payload_script;   /* "autorun.sh", run with /bin/sh in unzipped/ if present */
        bool allow_script;            /* only under mTLS or enable_insecure_payload */
        unsigned script_timeout_s;    /* 0: 300 s */
        uint64_t max_unzipped_bytes;  /* 0: 256 MiB in all entries together */
        unsigned max_entries;         /* 0: 4096 */
};

/*
 * Once K exists: decrypt the payload (if one came; the GCM tag is verified before a byte is
 * written), build secure_dir/unzipped afresh holding K and the plaintext, unzip it there when
 * asked (regular files and directories only, confined, capped), chmod 0700 the scripts named
 * in action_list, then run payload_script if allowed and present.
 * The directory appears complete or not at all (built under a temporary name, then renamed).
 * *script_status: -1 when no script ran, its exit code, or 128 + signal (timeout: 128 + 9).
 * Idempotent per K: once delivered, a second call returns 0 and runs nothing.
 * -EAGAIN before K exists; -EBADMSG for a payload that fails authentication; -EPERM for a zip
 * entry that would escape or is not a plain file or directory; -EFBIG over the caps.
 */
int vg_payload_deliver(struct vg_payload_state *st, const struct vg_payload_config *cfg,
                       int *script_status, struct vg_error *err);

/* vg_payload_deliver() in two steps, for a caller that must not wait for the script (the agent
 * keeps answering the verifier while it runs): install the files, and say whether payload_script
 * is there and allowed to run; then run it (blocking, up to script_timeout_s), e.g. in a child. */
int vg_payload_install(struct vg_payload_state *st, const struct vg_payload_config *cfg,
                       bool *run_script, struct vg_error *err);
int vg_payload_run_script(const struct vg_payload_state *st, const struct vg_payload_config *cfg,
                          int *script_status, struct vg_error *err);

/* ---- Tenant / verifier side ---------------------------------------------------------------- */

struct vg_payload_bundle {
        uint8_t k[VG_PAYLOAD_KEY_SIZE], u[VG_PAYLOAD_KEY_SIZE], v[VG_PAYLOAD_KEY_SIZE];
        char auth_tag_hex[VG_PAYLOAD_AUTH_TAG_HEX + 1];
        char *payload_b64; /* NULL when no data was given */
};

/* Fresh K and V, U = K xor V, the auth_tag for uuid, and data (may be NULL/0) encrypted as
 * Keylime's user_data_encrypt does: b64(IV16 || AES-256-GCM(K, data) || tag16). */
int vg_payload_bundle_new(const void *data, size_t len, const char *uuid,
                          struct vg_payload_bundle *out, struct vg_error *err);
void vg_payload_bundle_clear(struct vg_payload_bundle *b);

/* RSA-OAEP (SHA-1, MGF1-SHA-1: Keylime's wire format) of a half to the NK, base64. */
int vg_payload_encrypt_half(EVP_PKEY *nk_pub, const uint8_t half[VG_PAYLOAD_KEY_SIZE],
                            char **out_b64, struct vg_error *err);

/* ---- Shared with revocation.c -------------------------------------------------------------- */

/*
 * Run argv[0] (an absolute path) with argv in dir: a new process group, stdin /dev/null,
 * environment only PATH=/usr/sbin:/usr/bin:/sbin:/bin, descriptors above 2 closed. After
 * timeout_s (0: 300) the whole group gets SIGKILL. *status: exit code or 128 + signal.
 * Returns 0 when the child ran (whatever its status), -errno when it could not be started.
 */
int vg_run_confined(const char *dir, char *const argv[], unsigned timeout_s, int *status);

/* Names in an action_list file (opened relative to dirfd, no symlink followed, at most 64 KiB),
 * separated by commas or blanks as Keylime writes them; a NULL-terminated array for
 * vg_strv_free(). The names are not validated here. */
int vg_action_list_read(int dirfd, const char *name, char ***out);
void vg_strv_free(char **v);
