/* vigil: what ima_log.c, ima_policy.c and ima_sig.c share and nobody else sees: the parsed
 * runtime policy's layout (path tables, exclude regex, keys) and the IMA keyrings. */
#pragma once

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "hash.h"
#include "ima.h"

/* ---- Path -> allowed digests (open addressing, linear probing) ----------------------------- */

struct vg_ima_digest {
        uint8_t len;
        uint8_t d[VG_HASH_MAX_SIZE];
};

struct vg_ima_slot {
        uint64_t hash; /* 0 = empty slot */
        const char *key;
        uint32_t key_len;
        uint32_t first; /* index into digests */
        uint32_t n;
};

struct vg_ima_map {
        struct vg_ima_slot *slots;
        size_t mask; /* capacity - 1, capacity a power of two */
        size_t count;
        uint32_t *order; /* slot indices in insertion order, for to_json */
        struct vg_ima_digest *digests;
        size_t n_digests, cap_digests;
};

uint64_t vg_ima_path_hash(const char *s, size_t len);
/* The slot for key, or NULL. */
const struct vg_ima_slot *vg_ima_map_find(const struct vg_ima_map *m, const char *key, size_t len);
/* The same with the key's vg_ima_path_hash already computed. */
const struct vg_ima_slot *vg_ima_map_find_h(const struct vg_ima_map *m, const char *key, size_t len,
                                            uint64_t h);
/* Start loading the cache lines a lookup of h will need (the table is larger than L2). */
static inline void vg_ima_map_prefetch(const struct vg_ima_map *m, uint64_t h)
{
        if (m->count)
                __builtin_prefetch(&m->slots[h & m->mask]);
}
static inline void vg_ima_map_prefetch2(const struct vg_ima_map *m, uint64_t h)
{
        const struct vg_ima_slot *s;

        if (!m->count)
                return;
        s = &m->slots[h & m->mask];
        if (s->hash == h) {
                __builtin_prefetch(s->key);
                __builtin_prefetch(&m->digests[s->first]);
        }
}
bool vg_ima_map_allows(const struct vg_ima_map *m, const struct vg_ima_slot *s,
                       const uint8_t *digest, size_t len);

/* ---- Keys: verification keys and keys learned from keyring measurements -------------------- */

struct vg_ima_key {
        uint32_t keyid; /* keyidv2 */
        EVP_PKEY *pkey;
        uint8_t *spki; /* DER SubjectPublicKeyInfo, for the saved state */
        size_t spki_len;
        char *keyring; /* keyring name it was learned into ("" for verification keys) */
};

struct vg_ima_keyring {
        struct vg_ima_key *keys;
        size_t n, cap;
};

void vg_ima_keyring_clear(struct vg_ima_keyring *kr);
/* Add a DER SPKI key; keyid 0 means compute keyidv2 from the key. -EINVAL if not RSA/EC. */
int vg_ima_keyring_add_spki(struct vg_ima_keyring *kr, const uint8_t *spki, size_t len,
                            uint32_t keyid, const char *keyring);
int vg_ima_keyring_copy(struct vg_ima_keyring *dst, const struct vg_ima_keyring *src);
/* Keylime's "verification-keys" string: {"meta":..,"keyids":[int],"pubkeys":[b64 DER]} (may be
 * JSON-encoded twice). "" gives no keys. */
int vg_ima_keyring_from_verification_keys(struct vg_ima_keyring *kr, const char *s, size_t len,
                                          struct vg_error *err);

/*
 * Does buf hold a public key or certificate (DER or PEM; X.509 or SubjectPublicKeyInfo)?
 * 1 with *spki (new DER SPKI) and *keyid (the certificate's subjectKeyIdentifier low 4 bytes,
 * or 0), 0 when buf is no key, -ENOTSUP for a key that is neither RSA nor EC.
 */
int vg_ima_buf_key(const uint8_t *buf, size_t len, uint8_t **spki, size_t *spki_len,
                   uint32_t *keyid);

/* Verify an ima-sig signature_v2_hdr over the file digest (named by the d-ng algorithm) with
 * any key of the rings. true when one verifies. */
bool vg_ima_sig_verify(const struct vg_ima_keyring *const *rings, size_t n_rings,
                       const uint8_t *sig, size_t sig_len, const char *digest_alg,
                       const uint8_t *digest, size_t digest_len);

/* ---- The policy ---------------------------------------------------------------------------- */

struct vg_ima_arena_block;

struct vg_ima_policy {
        int refs;
        uint8_t checksum[32];
        struct vg_ima_arena_block *arena;
        struct vg_ima_map digests, keyrings, imabuf;
        char **excludes;
        size_t n_excludes;
        pcre2_code *exclude_re; /* all excludes as one alternation, or NULL */
        char **ignored_keyrings;
        size_t n_ignored;
        bool ignore_all_keyrings; /* "*" in ignored_keyrings */
        enum vg_hash_alg log_hash_alg;
        int64_t meta_version, generator, release;
        char *timestamp;             /* may be NULL */
        char *verification_keys;     /* the raw string, "" for none */
        struct vg_ima_keyring vkeys; /* parsed */
};
