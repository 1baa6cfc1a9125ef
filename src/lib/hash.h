/* vigil: message digests over OpenSSL EVP (SHA-NI where the CPU has it), named the way TPMs,
 * IMA and Keylime name them. One-shot and incremental. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define VG_HASH_MAX_SIZE 64

enum vg_hash_alg {
        VG_HASH_SHA1,
        VG_HASH_SHA256,
        VG_HASH_SHA384,
        VG_HASH_SHA512,
        VG_HASH_ALG_COUNT,
};

/* "sha1", "sha256", "sha384", "sha512" (case-insensitive). -EINVAL for anything else. */
int vg_hash_alg_from_name(const char *name, enum vg_hash_alg *out);
const char *vg_hash_alg_name(enum vg_hash_alg alg);
size_t vg_hash_size(enum vg_hash_alg alg);
/* TPM2_ALG_ID (TCG Algorithm Registry): sha1 0x0004, sha256 0x000B, sha384 0x000C, sha512 0x000D.
 */
uint16_t vg_hash_tpm_alg_id(enum vg_hash_alg alg);
int vg_hash_alg_from_tpm_id(uint16_t id, enum vg_hash_alg *out);

struct vg_hash_ctx; /* opaque; wraps EVP_MD_CTX */

int vg_hash_new(enum vg_hash_alg alg, struct vg_hash_ctx **out);
int vg_hash_update(struct vg_hash_ctx *ctx, const void *data, size_t len);
/* Writes vg_hash_size() bytes to out and resets the context for reuse with the same alg. */
int vg_hash_final(struct vg_hash_ctx *ctx, uint8_t *out);
void vg_hash_free(struct vg_hash_ctx *ctx);

/* One-shot: out must hold vg_hash_size(alg) bytes. */
int vg_hash(enum vg_hash_alg alg, const void *data, size_t len, uint8_t *out);

/* Digest a whole file, streaming; -errno on I/O error. */
int vg_hash_file(enum vg_hash_alg alg, const char *path, uint8_t *out);

/* TPM PCR extend: pcr = H(pcr || digest), both vg_hash_size(alg) bytes. */
int vg_hash_extend(enum vg_hash_alg alg, uint8_t *pcr, const uint8_t *digest);
