/* vigil: TPM2B_PUBLIC parsed in software (TPM 2.0 Part 2 §12.2), turned into an OpenSSL 3 key
 * through OSSL_PARAM, named (Part 1 §16) and compared with the key an EK certificate carries. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "buf.h"
#include "encoding.h"
#include "tpm_public.h"

#define ALG_RSA       0x0001
#define ALG_AES       0x0006
#define ALG_NULL      0x0010
#define ALG_RSASSA    0x0014
#define ALG_RSAES     0x0015
#define ALG_RSAPSS    0x0016
#define ALG_OAEP      0x0017
#define ALG_ECDSA     0x0018
#define ALG_ECDAA     0x001a
#define ALG_ECC       0x0023
#define ALG_CFB       0x0043
#define RSA_MAX_BYTES 512

VG_DEFINE_CLEANUP_FUNC(OSSL_PARAM_BLD, OSSL_PARAM_BLD_free)
VG_DEFINE_CLEANUP_FUNC(OSSL_PARAM, OSSL_PARAM_free)
VG_DEFINE_CLEANUP_FUNC(BIGNUM, BN_free)
VG_DEFINE_CLEANUP_FUNC(BIO, BIO_free)
VG_DEFINE_CLEANUP_FUNC(X509, X509_free)

void vg_tpm_public_free(struct vg_tpm_public *pub)
{
        if (!pub)
                return;
        EVP_PKEY_free(pub->pkey);
        free(pub->marshalled);
        free(pub);
}

static int truncated(struct vg_error *err, const char *what, const struct vg_buf *b,
                     const uint8_t *start)
{
        return vg_error_set(err, -EBADMSG, "TPM2B_PUBLIC: truncated at byte %zu reading %s",
                            vg_buf_offset(b, start), what);
}

/* A TPM2B of at most max bytes (Part 2 §10.4): the size field, then that many bytes. */
static int read_tpm2b(struct vg_buf *b, const uint8_t *start, const char *what, size_t max,
                      struct vg_buf *out, struct vg_error *err)
{
        uint16_t size;

        if (!vg_buf_u16be(b, &size))
                return truncated(err, what, b, start);
        if (size > max)
                return vg_error_set(err, -EBADMSG,
                                    "TPM2B_PUBLIC: %s is %u bytes, at most %zu are allowed", what,
                                    size, max);
        if (!vg_buf_sub(b, size, out))
                return truncated(err, what, b, start);
        return 0;
}

static int hash_from_id(uint16_t id, const char *what, enum vg_hash_alg *out, struct vg_error *err)
{
        if (vg_hash_alg_from_tpm_id(id, out) < 0)
                return vg_error_set(err, -EOPNOTSUPP,
                                    "TPM2B_PUBLIC: %s 0x%04x is not sha1, sha256, sha384 or sha512",
                                    what, id);
        return 0;
}

static int rsa_pkey(const uint8_t *n, size_t n_len, uint32_t e, EVP_PKEY **out,
                    struct vg_error *err)
{
        _cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        _cleanup_(OSSL_PARAM_freep) OSSL_PARAM *params = NULL;
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        _cleanup_(BN_freep) BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL);
        _cleanup_(BN_freep) BIGNUM *bn_e = BN_new();

        if (!bld || !bn_n || !bn_e || !BN_set_word(bn_e, e) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) ||
            !(params = OSSL_PARAM_BLD_to_param(bld)))
                return vg_error_set(err, -ENOMEM, "out of memory building an RSA key");
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
            EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0)
                return vg_error_set(err, -EINVAL, "TPM2B_PUBLIC: OpenSSL refuses the RSA key");
        return 0;
}

static int ecc_pkey(const char *group, const uint8_t *point, size_t point_len, EVP_PKEY **out,
                    struct vg_error *err)
{
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        OSSL_PARAM params[] = {
                OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
                OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point, point_len),
                OSSL_PARAM_END,
        };

        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
            EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0)
                return vg_error_set(err, -EINVAL, "TPM2B_PUBLIC: the ECC point is not on curve %s",
                                    group);
        return 0;
}

/* TPMT_SYM_DEF_OBJECT (Part 2 §11.1.7): only AES (storage keys) or NULL (signing keys). */
static int parse_symmetric(struct vg_buf *b, const uint8_t *start, struct vg_tpm_public *pub,
                           struct vg_error *err)
{
        if (!vg_buf_u16be(b, &pub->sym_alg))
                return truncated(err, "the symmetric algorithm", b, start);
        if (pub->sym_alg == ALG_NULL)
                return 0;
        if (pub->sym_alg != ALG_AES)
                return vg_error_set(err, -EOPNOTSUPP,
                                    "TPM2B_PUBLIC: symmetric algorithm 0x%04x is not AES or NULL",
                                    pub->sym_alg);
        if (!vg_buf_u16be(b, &pub->sym_bits) || !vg_buf_u16be(b, &pub->sym_mode))
                return truncated(err, "the symmetric key bits and mode", b, start);
        if (pub->sym_bits != 128 && pub->sym_bits != 192 && pub->sym_bits != 256)
                return vg_error_set(err, -EBADMSG, "TPM2B_PUBLIC: AES with %u key bits",
                                    pub->sym_bits);
        return 0;
}

/* TPMT_RSA_SCHEME / TPMT_ECC_SCHEME (Part 2 §11.2.4.2, §11.2.5.6): every scheme but NULL and
 * RSAES carries a hash; ECDAA also a count. */
static int parse_scheme(struct vg_buf *b, const uint8_t *start, struct vg_tpm_public *pub,
                        struct vg_error *err)
{
        enum vg_hash_alg h;
        uint16_t count;
        int r;

        pub->scheme_hash = ALG_NULL;
        if (!vg_buf_u16be(b, &pub->scheme))
                return truncated(err, "the scheme", b, start);
        if (pub->scheme == ALG_NULL || pub->scheme == ALG_RSAES)
                return 0;
        if (pub->scheme < ALG_RSASSA || pub->scheme > 0x001d)
                return vg_error_set(err, -EOPNOTSUPP, "TPM2B_PUBLIC: unknown scheme 0x%04x",
                                    pub->scheme);
        if (!vg_buf_u16be(b, &pub->scheme_hash))
                return truncated(err, "the scheme's hash", b, start);
        if ((r = hash_from_id(pub->scheme_hash, "scheme hash", &h, err)) < 0)
                return r;
        if (pub->scheme == ALG_ECDAA && !vg_buf_u16be(b, &count))
                return truncated(err, "the ECDAA count", b, start);
        return 0;
}

static int parse_rsa(struct vg_buf *b, const uint8_t *start, struct vg_tpm_public *pub,
                     struct vg_error *err)
{
        uint32_t exponent;
        struct vg_buf n;
        int r;

        if ((r = parse_symmetric(b, start, pub, err)) < 0 ||
            (r = parse_scheme(b, start, pub, err)) < 0)
                return r;
        if (pub->scheme != ALG_NULL && pub->scheme != ALG_RSASSA && pub->scheme != ALG_RSAPSS &&
            pub->scheme != ALG_RSAES && pub->scheme != ALG_OAEP)
                return vg_error_set(
                    err, -EBADMSG, "TPM2B_PUBLIC: scheme 0x%04x is not an RSA scheme", pub->scheme);
        if (!vg_buf_u16be(b, &pub->key_bits) || !vg_buf_u32be(b, &exponent))
                return truncated(err, "the RSA key bits and exponent", b, start);
        if (pub->key_bits < 1024 || pub->key_bits > 4096 || pub->key_bits % 8)
                return vg_error_set(err, -EOPNOTSUPP, "TPM2B_PUBLIC: RSA with %u bits",
                                    pub->key_bits);
        /* Part 2 §12.2.3.5: an exponent of zero means the default, 2^16 + 1. */
        if (exponent == 0)
                exponent = 65537;
        if (exponent < 3 || !(exponent & 1))
                return vg_error_set(err, -EBADMSG, "TPM2B_PUBLIC: RSA exponent %u", exponent);
        if ((r = read_tpm2b(b, start, "the RSA modulus", RSA_MAX_BYTES, &n, err)) < 0)
                return r;
        if (n.len != pub->key_bits / 8u || !(n.p[0] & 0x80))
                return vg_error_set(err, -EBADMSG,
                                    "TPM2B_PUBLIC: the RSA modulus has %zu bytes, a %u-bit key "
                                    "needs %u with the top bit set",
                                    n.len, pub->key_bits, pub->key_bits / 8u);
        return rsa_pkey(n.p, n.len, exponent, &pub->pkey, err);
}

static int parse_ecc(struct vg_buf *b, const uint8_t *start, struct vg_tpm_public *pub,
                     struct vg_error *err)
{
        static const struct {
                uint16_t id;
                uint16_t bits;
                const char *name;
        } curves[] = {
                { 0x0003, 256, "P-256" },
                { 0x0004, 384, "P-384" },
                { 0x0005, 521, "P-521" },
        };
        uint8_t point[1 + 2 * 66];
        uint16_t kdf, kdf_hash;
        struct vg_buf x, y;
        const char *group = NULL;
        size_t field = 0;
        int r;

        if ((r = parse_symmetric(b, start, pub, err)) < 0 ||
            (r = parse_scheme(b, start, pub, err)) < 0)
                return r;
        if (pub->scheme != ALG_NULL && (pub->scheme < ALG_ECDSA || pub->scheme > 0x001d))
                return vg_error_set(
                    err, -EBADMSG, "TPM2B_PUBLIC: scheme 0x%04x is not an ECC scheme", pub->scheme);
        if (!vg_buf_u16be(b, &pub->curve))
                return truncated(err, "the curve", b, start);
        for (size_t i = 0; i < VG_ARRAY_SIZE(curves); i++) {
                if (curves[i].id == pub->curve) {
                        group = curves[i].name;
                        pub->key_bits = curves[i].bits;
                        field = (curves[i].bits + 7u) / 8u;
                }
        }
        if (!group)
                return vg_error_set(err, -EOPNOTSUPP,
                                    "TPM2B_PUBLIC: ECC curve 0x%04x is not NIST P-256, P-384 or "
                                    "P-521",
                                    pub->curve);
        if (!vg_buf_u16be(b, &kdf))
                return truncated(err, "the KDF scheme", b, start);
        if (kdf != ALG_NULL && !vg_buf_u16be(b, &kdf_hash))
                return truncated(err, "the KDF hash", b, start);
        if ((r = read_tpm2b(b, start, "the ECC point's x", field, &x, err)) < 0 ||
            (r = read_tpm2b(b, start, "the ECC point's y", field, &y, err)) < 0)
                return r;
        if (x.len == 0 || y.len == 0)
                return vg_error_set(err, -EBADMSG, "TPM2B_PUBLIC: the ECC point is empty");
        /* Coordinates are big-endian integers; a TPM may drop leading zero bytes. */
        memset(point, 0, sizeof(point));
        point[0] = 0x04;
        memcpy(point + 1 + field - x.len, x.p, x.len);
        memcpy(point + 1 + 2 * field - y.len, y.p, y.len);
        memcpy(pub->ecc_x, point + 1, field);
        pub->ecc_x_len = field;
        return ecc_pkey(group, point, 1 + 2 * field, &pub->pkey, err);
}

int vg_tpm_public_parse(const uint8_t *data, size_t len, struct vg_tpm_public **out,
                        struct vg_error *err)
{
        _cleanup_tpm_public_ struct vg_tpm_public *pub = NULL;
        struct vg_buf b = vg_buf_init(data, len), t, policy;
        uint16_t size, type, name_alg;
        uint8_t digest[VG_HASH_MAX_SIZE];
        int r;

        *out = NULL;
        if (!vg_buf_u16be(&b, &size))
                return vg_error_set(err, -EBADMSG,
                                    "TPM2B_PUBLIC: %zu bytes, too short for the "
                                    "size field",
                                    len);
        if (size != b.len)
                return vg_error_set(err, -EBADMSG,
                                    "TPM2B_PUBLIC: the size field says %u bytes follow, %zu do%s",
                                    size, b.len, b.len > size ? " (trailing bytes)" : "");
        t = b;
        pub = calloc(1, sizeof(*pub));
        if (!pub)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (!vg_buf_u16be(&b, &type) || !vg_buf_u16be(&b, &name_alg) ||
            !vg_buf_u32be(&b, &pub->attributes))
                return truncated(err, "the type, nameAlg and attributes", &b, data);
        if ((r = hash_from_id(name_alg, "nameAlg", &pub->name_alg, err)) < 0)
                return r;
        if ((r = read_tpm2b(&b, data, "the authPolicy", VG_HASH_MAX_SIZE, &policy, err)) < 0)
                return r;
        if (type == ALG_RSA) {
                pub->type = VG_TPM_KEY_RSA;
                r = parse_rsa(&b, data, pub, err);
        } else if (type == ALG_ECC) {
                pub->type = VG_TPM_KEY_ECC;
                r = parse_ecc(&b, data, pub, err);
        } else {
                r = vg_error_set(err, -EOPNOTSUPP,
                                 "TPM2B_PUBLIC: type 0x%04x is not RSA (0x0001) or ECC (0x0023)",
                                 type);
        }
        if (r < 0)
                return r;
        if (b.len != 0)
                return vg_error_set(err, -EBADMSG,
                                    "TPM2B_PUBLIC: %zu bytes inside the structure after the key",
                                    b.len);
        /* Part 1 §16: Name = nameAlg || H_nameAlg(marshalled TPMT_PUBLIC). */
        if ((r = vg_hash(pub->name_alg, t.p, t.len, digest)) < 0)
                return vg_error_set(err, r, "hashing the public area failed");
        pub->name[0] = (uint8_t)(name_alg >> 8);
        pub->name[1] = (uint8_t)name_alg;
        memcpy(pub->name + 2, digest, vg_hash_size(pub->name_alg));
        pub->name_len = 2 + vg_hash_size(pub->name_alg);
        pub->marshalled = malloc(len);
        if (!pub->marshalled)
                return vg_error_set(err, -ENOMEM, "out of memory");
        memcpy(pub->marshalled, data, len);
        pub->marshalled_len = len;
        *out = TAKE_PTR(pub);
        return 0;
}

int vg_tpm_public_parse_b64(const char *b64, struct vg_tpm_public **out, struct vg_error *err)
{
        _cleanup_free_ uint8_t *raw = NULL;
        size_t len;

        *out = NULL;
        if (vg_b64_decode(b64, strlen(b64), VG_B64_STD, &raw, &len) < 0)
                return vg_error_set(err, -EINVAL, "TPM2B_PUBLIC: not valid base64");
        return vg_tpm_public_parse(raw, len, out, err);
}

int vg_tpm_public_to_pem(const struct vg_tpm_public *pub, char **pem, struct vg_error *err)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        char *data;
        long n;

        *pem = NULL;
        if (!bio || !PEM_write_bio_PUBKEY(bio, pub->pkey))
                return vg_error_set(err, -ENOMEM, "writing the public key as PEM failed");
        n = BIO_get_mem_data(bio, &data);
        *pem = strndup(data, (size_t)n);
        if (!*pem)
                return vg_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

char *vg_tpm_public_name_hex(const struct vg_tpm_public *pub)
{
        return vg_hex_encode(pub->name, pub->name_len);
}

const char *vg_tpm_public_attributes_str(uint32_t attributes, char *buf, size_t size)
{
        static const struct {
                uint32_t bit;
                const char *name;
        } names[] = {
                { VG_TPMA_FIXED_TPM, "fixedtpm" },
                { VG_TPMA_ST_CLEAR, "stclear" },
                { VG_TPMA_FIXED_PARENT, "fixedparent" },
                { VG_TPMA_SENSITIVE_DATA_ORIGIN, "sensitivedataorigin" },
                { VG_TPMA_USER_WITH_AUTH, "userwithauth" },
                { VG_TPMA_ADMIN_WITH_POLICY, "adminwithpolicy" },
                { VG_TPMA_NO_DA, "noda" },
                { VG_TPMA_ENCRYPTED_DUPLICATION, "encryptedduplication" },
                { VG_TPMA_RESTRICTED, "restricted" },
                { VG_TPMA_DECRYPT, "decrypt" },
                { VG_TPMA_SIGN, "sign" },
        };
        size_t off = 0;

        if (size == 0)
                return buf;
        buf[0] = '\0';
        for (size_t i = 0; i < VG_ARRAY_SIZE(names); i++) {
                int n;

                if (!(attributes & names[i].bit))
                        continue;
                n = snprintf(buf + off, size - off, "%s%s", off ? "|" : "", names[i].name);
                if (n < 0 || (size_t)n >= size - off)
                        break;
                off += (size_t)n;
        }
        return buf;
}

int vg_tpm_public_match_cert(const struct vg_tpm_public *pub, const uint8_t *cert, size_t len,
                             struct vg_error *err)
{
        _cleanup_(X509_freep) X509 *x = NULL;
        const unsigned char *p = cert;
        EVP_PKEY *key;

        if (len > 10 && memmem(cert, len, "-----BEGIN", 10)) {
                _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(cert, (int)len);

                if (bio)
                        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        } else if (len <= (size_t)INT32_MAX) {
                x = d2i_X509(NULL, &p, (long)len);
                if (x && p != cert + len) {
                        X509_free(x);
                        x = NULL;
                }
        }
        if (!x)
                return vg_error_set(err, -EINVAL,
                                    "the EK certificate (%zu bytes) is neither DER nor PEM X.509",
                                    len);
        key = X509_get0_pubkey(x);
        if (!key)
                return vg_error_set(err, -EINVAL, "the EK certificate's public key is unreadable");
        if (EVP_PKEY_eq(key, pub->pkey) != 1)
                return vg_error_set(err, -EKEYREJECTED,
                                    "the %s key in the TPM public area differs from the %s key "
                                    "in the certificate",
                                    pub->type == VG_TPM_KEY_RSA ? "RSA" : "ECC",
                                    EVP_PKEY_get0_type_name(key));
        return 0;
}

static int need(const struct vg_tpm_public *pub, uint32_t bit, bool want, const char *what,
                const char *name, struct vg_error *err)
{
        if (!!(pub->attributes & bit) == want)
                return 0;
        return vg_error_set(err, -EKEYREJECTED, "the %s %s %s", what,
                            want ? "lacks the attribute" : "must not have the attribute", name);
}

int vg_tpm_public_check_ak(const struct vg_tpm_public *pub, struct vg_error *err)
{
        int r;

        if ((r = need(pub, VG_TPMA_RESTRICTED, true, "AK", "restricted", err)) < 0 ||
            (r = need(pub, VG_TPMA_SIGN, true, "AK", "sign", err)) < 0 ||
            (r = need(pub, VG_TPMA_DECRYPT, false, "AK", "decrypt", err)) < 0 ||
            (r = need(pub, VG_TPMA_FIXED_TPM, true, "AK", "fixedTPM", err)) < 0 ||
            (r = need(pub, VG_TPMA_FIXED_PARENT, true, "AK", "fixedParent", err)) < 0)
                return r;
        if (pub->scheme == ALG_NULL)
                return vg_error_set(err, -EKEYREJECTED, "the AK has no signing scheme");
        return 0;
}

int vg_tpm_public_check_ek(const struct vg_tpm_public *pub, struct vg_error *err)
{
        int r;

        if ((r = need(pub, VG_TPMA_RESTRICTED, true, "EK", "restricted", err)) < 0 ||
            (r = need(pub, VG_TPMA_DECRYPT, true, "EK", "decrypt", err)) < 0 ||
            (r = need(pub, VG_TPMA_SIGN, false, "EK", "sign", err)) < 0 ||
            (r = need(pub, VG_TPMA_FIXED_TPM, true, "EK", "fixedTPM", err)) < 0)
                return r;
        if (pub->sym_alg != ALG_AES || pub->sym_mode != ALG_CFB)
                return vg_error_set(err, -EKEYREJECTED,
                                    "the EK's symmetric algorithm is not AES-CFB (Part 1 §24)");
        return 0;
}
