/* vigil: digests over OpenSSL EVP, with the TPM and IMA names and algorithm ids. */
#include "hash.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <strings.h>

struct vg_hash_ctx {
        EVP_MD_CTX *md;
        enum vg_hash_alg alg;
};

static const struct {
        const char *name;
        size_t size;
        uint16_t tpm_id;
} algs[VG_HASH_ALG_COUNT] = {
        [VG_HASH_SHA1] = { "sha1", 20, 0x0004 },
        [VG_HASH_SHA256] = { "sha256", 32, 0x000B },
        [VG_HASH_SHA384] = { "sha384", 48, 0x000C },
        [VG_HASH_SHA512] = { "sha512", 64, 0x000D },
};

/* OpenSSL 3 resolves EVP_sha256() and friends on every use ("implicit fetch"), which costs
 * more than hashing a 64-byte IMA template. Fetch each digest once per process instead: the
 * table is written exactly once, under pthread_once, and only read afterwards. */
static EVP_MD *fetched[VG_HASH_ALG_COUNT];
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_all(void)
{
        static const char *const names[VG_HASH_ALG_COUNT] = { "SHA1", "SHA256", "SHA384",
                                                              "SHA512" };

        for (int i = 0; i < VG_HASH_ALG_COUNT; i++)
                fetched[i] = EVP_MD_fetch(NULL, names[i], NULL);
}

static const EVP_MD *evp_md(enum vg_hash_alg alg)
{
        if ((unsigned)alg >= VG_HASH_ALG_COUNT)
                return NULL;
        pthread_once(&fetch_once, fetch_all);
        return fetched[alg];
}

int vg_hash_alg_from_name(const char *name, enum vg_hash_alg *out)
{
        for (int i = 0; i < VG_HASH_ALG_COUNT; i++) {
                if (strcasecmp(name, algs[i].name) == 0) {
                        *out = (enum vg_hash_alg)i;
                        return 0;
                }
        }
        return -EINVAL;
}

const char *vg_hash_alg_name(enum vg_hash_alg alg)
{
        return (unsigned)alg < VG_HASH_ALG_COUNT ? algs[alg].name : "unknown";
}

size_t vg_hash_size(enum vg_hash_alg alg)
{
        return (unsigned)alg < VG_HASH_ALG_COUNT ? algs[alg].size : 0;
}

uint16_t vg_hash_tpm_alg_id(enum vg_hash_alg alg)
{
        return (unsigned)alg < VG_HASH_ALG_COUNT ? algs[alg].tpm_id : 0;
}

int vg_hash_alg_from_tpm_id(uint16_t id, enum vg_hash_alg *out)
{
        for (int i = 0; i < VG_HASH_ALG_COUNT; i++) {
                if (algs[i].tpm_id == id) {
                        *out = (enum vg_hash_alg)i;
                        return 0;
                }
        }
        return -EINVAL;
}

int vg_hash_new(enum vg_hash_alg alg, struct vg_hash_ctx **out)
{
        const EVP_MD *md = evp_md(alg);
        struct vg_hash_ctx *ctx;

        if (!md)
                return -EINVAL;
        ctx = calloc(1, sizeof(*ctx));
        if (!ctx)
                return -ENOMEM;
        ctx->alg = alg;
        ctx->md = EVP_MD_CTX_new();
        if (!ctx->md || EVP_DigestInit_ex(ctx->md, md, NULL) != 1) {
                vg_hash_free(ctx);
                return -ENOMEM;
        }
        *out = ctx;
        return 0;
}

int vg_hash_update(struct vg_hash_ctx *ctx, const void *data, size_t len)
{
        return EVP_DigestUpdate(ctx->md, data, len) == 1 ? 0 : -EIO;
}

int vg_hash_final(struct vg_hash_ctx *ctx, uint8_t *out)
{
        if (EVP_DigestFinal_ex(ctx->md, out, NULL) != 1)
                return -EIO;
        return EVP_DigestInit_ex(ctx->md, evp_md(ctx->alg), NULL) == 1 ? 0 : -EIO;
}

void vg_hash_free(struct vg_hash_ctx *ctx)
{
        if (!ctx)
                return;
        EVP_MD_CTX_free(ctx->md);
        free(ctx);
}

int vg_hash(enum vg_hash_alg alg, const void *data, size_t len, uint8_t *out)
{
        const EVP_MD *md = evp_md(alg);

        if (!md)
                return -EINVAL;
        return EVP_Digest(data, len, out, NULL, md, NULL) == 1 ? 0 : -EIO;
}

VG_DEFINE_CLEANUP_FUNC(struct vg_hash_ctx, vg_hash_free)

int vg_hash_file(enum vg_hash_alg alg, const char *path, uint8_t *out)
{
        _cleanup_(vg_hash_freep) struct vg_hash_ctx *ctx = NULL;
        _cleanup_close_ int fd = -1;
        uint8_t chunk[64 * 1024];
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        r = vg_hash_new(alg, &ctx);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = read(fd, chunk, sizeof(chunk));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                r = vg_hash_update(ctx, chunk, (size_t)n);
                if (r < 0)
                        return r;
        }
        return vg_hash_final(ctx, out);
}

int vg_hash_extend(enum vg_hash_alg alg, uint8_t *pcr, const uint8_t *digest)
{
        uint8_t both[2 * VG_HASH_MAX_SIZE];
        size_t n = vg_hash_size(alg);

        if (n == 0)
                return -EINVAL;
        memcpy(both, pcr, n);
        memcpy(both + n, digest, n);
        return vg_hash(alg, both, 2 * n, pcr);
}
