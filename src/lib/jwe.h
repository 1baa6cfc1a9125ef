/* vigil: JWE (RFC 7516) as Clevis writes it: compact serialization on the command line, the
 * flattened JSON serialization in LUKS2 tokens, a protected header only, no encrypted key
 * (alg "dir" or "ECDH-ES"), content encryption A256GCM. Strict and bounded: a JWE that is not
 * this shape is refused with the part that is wrong named. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Largest JWE accepted, in either serialization: an sss pin nests its shares' JWEs (each a few
 * KiB with a Tang advertisement) in its header. */
#define VG_JWE_MAX_BYTES (4u * 1024 * 1024)
/* A256GCM */
#define VG_JWE_CEK_LEN 32
#define VG_JWE_IV_LEN  12
#define VG_JWE_TAG_LEN 16

struct vg_jwe {
        char *protected_b64; /* the protected header as sent: base64url, the AAD */
        json_t *header;      /* the protected header, decoded (an object) */
        uint8_t *iv;         /* VG_JWE_IV_LEN bytes */
        uint8_t *ciphertext;
        size_t ciphertext_len;
        uint8_t *tag; /* VG_JWE_TAG_LEN bytes */
};

void vg_jwe_clear(struct vg_jwe *jwe);

/*
 * Parse a JWE: the compact serialization (five base64url parts, the encrypted key empty), or
 * the flattened / general JSON serialization with at most one recipient and no encrypted key,
 * as `jose jwe fmt` writes it (leading and trailing white space ignored). The protected header
 * must be a JSON object with "enc" "A256GCM"; "alg" is left to the pin. Errors name the part:
 * "JWE protected header: not JSON: ...", "JWE iv: 8 bytes, expected 12".
 */
int vg_jwe_parse(const char *text, size_t len, struct vg_jwe *out, struct vg_error *err);
/* The same from a parsed JSON serialization (a LUKS2 token's "jwe" member). */
int vg_jwe_parse_json(const json_t *obj, struct vg_jwe *out, struct vg_error *err);

/* Serializations of a parsed or sealed JWE: compact (new string), and flattened JSON as clevis
 * stores it in LUKS2 tokens: {"ciphertext","encrypted_key":"","iv","protected","tag"} (new
 * reference). NULL when out of memory. */
char *vg_jwe_compact(const struct vg_jwe *jwe);
json_t *vg_jwe_json(const struct vg_jwe *jwe);

/*
 * Encrypt pt with A256GCM under cek: header (borrowed; "enc":"A256GCM" is added) becomes the
 * protected header, serialized as libjose does (sorted keys, compact), a random IV. out is
 * the caller's to clear.
 */
int vg_jwe_seal(const json_t *header, const uint8_t cek[VG_JWE_CEK_LEN], const void *pt,
                size_t pt_len, struct vg_jwe *out, struct vg_error *err);
/* Decrypt and authenticate with cek; *pt (NUL-terminated for convenience) is the caller's.
 * A wrong key or a modified JWE gives -EBADMSG "JWE authentication failed". */
int vg_jwe_open(const struct vg_jwe *jwe, const uint8_t cek[VG_JWE_CEK_LEN], uint8_t **pt,
                size_t *pt_len, struct vg_error *err);

/*
 * ECDH-ES direct key agreement (RFC 7518 4.6): out_len (at most 32) bytes of content key from
 * the shared secret z (the x coordinate of the ECDH point, big-endian, the curve's size) with
 * the Concat KDF over SHA-256, AlgorithmID = alg (the enc, "A256GCM", for direct agreement),
 * PartyUInfo/PartyVInfo = apu/apv (may be NULL), SuppPubInfo = out_len * 8.
 */
int vg_jwe_concat_kdf(const uint8_t *z, size_t z_len, const char *alg, const uint8_t *apu,
                      size_t apu_len, const uint8_t *apv, size_t apv_len, uint8_t *out,
                      size_t out_len, struct vg_error *err);
