/* vigil: IMA file signatures (ima-sig signature_v2_hdr, RSA PKCS#1 v1.5 and ECDSA over the file
 * digest) checked against keys from the policy and keys learned from keyring measurements. */
#include <errno.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "cleanup.h"
#include "encoding.h"
#include "ima_private.h"

void vg_ima_keyring_clear(struct vg_ima_keyring *kr)
{
        for (size_t i = 0; i < kr->n; i++) {
                EVP_PKEY_free(kr->keys[i].pkey);
                free(kr->keys[i].spki);
                free(kr->keys[i].keyring);
        }
        free(kr->keys);
        *kr = (struct vg_ima_keyring){ 0 };
}

/* keyidv2: the low 4 bytes of SHA-1 over the RSAPublicKey DER (PKCS#1) or the uncompressed EC
 * point, as Keylime computes it (file_signatures.py::_get_keyidv2); the kernel takes the SKID. */
static int keyidv2(EVP_PKEY *pk, uint32_t *out)
{
        uint8_t sha[20];
        unsigned char *der = NULL;
        int len;

        if (EVP_PKEY_base_id(pk) == EVP_PKEY_RSA) {
                len = i2d_PublicKey(pk, &der); /* RSAPublicKey, PKCS#1 */
        } else if (EVP_PKEY_base_id(pk) == EVP_PKEY_EC) {
                size_t n = 0;
                if (EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0,
                                                    &n) != 1 ||
                    !(der = OPENSSL_malloc(n)) ||
                    EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, der, n,
                                                    &n) != 1) {
                        OPENSSL_free(der);
                        return -EINVAL;
                }
                len = (int)n;
        } else {
                return -ENOTSUP;
        }
        if (len <= 0) {
                OPENSSL_free(der);
                return -EINVAL;
        }
        vg_hash(VG_HASH_SHA1, der, (size_t)len, sha);
        OPENSSL_free(der);
        *out = (uint32_t)sha[16] << 24 | (uint32_t)sha[17] << 16 | (uint32_t)sha[18] << 8 | sha[19];
        return 0;
}

int vg_ima_keyring_add_spki(struct vg_ima_keyring *kr, const uint8_t *spki, size_t len,
                            uint32_t keyid, const char *keyring)
{
        const unsigned char *q = spki;
        EVP_PKEY *pk = NULL;
        struct vg_ima_key *k;
        int r;

        if (len > INT32_MAX || !(pk = d2i_PUBKEY(NULL, &q, (long)len)) || q != spki + len) {
                if (pk)
                        EVP_PKEY_free(pk);
                return -EINVAL;
        }
        if (EVP_PKEY_base_id(pk) != EVP_PKEY_RSA && EVP_PKEY_base_id(pk) != EVP_PKEY_EC) {
                EVP_PKEY_free(pk);
                return -ENOTSUP;
        }
        if (!keyid && (r = keyidv2(pk, &keyid)) < 0) {
                EVP_PKEY_free(pk);
                return r;
        }
        /* A key learned again (every reboot re-measures the keyring) replaces the old one. */
        for (size_t i = 0; i < kr->n; i++) {
                if (kr->keys[i].keyid == keyid && kr->keys[i].spki_len == len &&
                    memcmp(kr->keys[i].spki, spki, len) == 0 &&
                    strcmp(kr->keys[i].keyring, keyring ? keyring : "") == 0) {
                        EVP_PKEY_free(pk);
                        return 0;
                }
        }
        if (kr->n == kr->cap) {
                size_t cap = kr->cap ? kr->cap * 2 : 4;
                struct vg_ima_key *nk = reallocarray(kr->keys, cap, sizeof(*nk));
                if (!nk) {
                        EVP_PKEY_free(pk);
                        return -ENOMEM;
                }
                kr->keys = nk;
                kr->cap = cap;
        }
        k = &kr->keys[kr->n];
        *k = (struct vg_ima_key){ .keyid = keyid, .pkey = pk };
        k->spki = malloc(len ? len : 1);
        k->keyring = strdup(keyring ? keyring : "");
        if (!k->spki || !k->keyring) {
                free(k->spki);
                free(k->keyring);
                EVP_PKEY_free(pk);
                return -ENOMEM;
        }
        memcpy(k->spki, spki, len);
        k->spki_len = len;
        kr->n++;
        return 0;
}

int vg_ima_keyring_copy(struct vg_ima_keyring *dst, const struct vg_ima_keyring *src)
{
        for (size_t i = 0; i < src->n; i++) {
                int r = vg_ima_keyring_add_spki(dst, src->keys[i].spki, src->keys[i].spki_len,
                                                src->keys[i].keyid, src->keys[i].keyring);
                if (r < 0)
                        return r;
        }
        return 0;
}

int vg_ima_keyring_from_verification_keys(struct vg_ima_keyring *kr, const char *s, size_t len,
                                          struct vg_error *err)
{
        json_error_t jerr;
        json_t *root, *keyids, *pubkeys;
        int r = 0;

        if (len == 0)
                return 0;
        root = json_loadb(s, len, JSON_DECODE_ANY, &jerr);
        if (root && json_is_string(root)) { /* stored JSON-encoded twice */
                json_t *inner = json_loads(json_string_value(root), JSON_DECODE_ANY, &jerr);
                json_decref(root);
                root = inner;
        }
        if (!root)
                return vg_error_set(err, -EINVAL, "not JSON: %s (column %d)", jerr.text,
                                    jerr.column);
        if (!json_is_object(root)) {
                json_decref(root);
                return vg_error_set(err, -EINVAL, "expected an object with \"pubkeys\"");
        }
        keyids = json_object_get(root, "keyids");
        pubkeys = json_object_get(root, "pubkeys");
        if (!json_is_array(pubkeys) || (keyids && !json_is_array(keyids))) {
                json_decref(root);
                return vg_error_set(err, -EINVAL,
                                    "expected \"pubkeys\" (and \"keyids\") to be arrays");
        }
        for (size_t i = 0; r == 0 && i < json_array_size(pubkeys); i++) {
                json_t *b64 = json_array_get(pubkeys, i), *id = json_array_get(keyids, i);
                _cleanup_free_ uint8_t *der = NULL;
                size_t der_len;
                json_int_t keyid = 0;

                if (!json_is_string(b64) ||
                    vg_b64_decode(json_string_value(b64), json_string_length(b64), VG_B64_STD, &der,
                                  &der_len) < 0) {
                        r = vg_error_set(err, -EINVAL, "pubkeys[%zu]: expected base64 DER", i);
                        break;
                }
                if (id) {
                        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
                            json_integer_value(id) > UINT32_MAX) {
                                r = vg_error_set(err, -EINVAL,
                                                 "keyids[%zu]: expected a 32-bit key id", i);
                                break;
                        }
                        keyid = json_integer_value(id);
                }
                r = vg_ima_keyring_add_spki(kr, der, der_len, (uint32_t)keyid, "");
                if (r < 0)
                        r = vg_error_set(err, r == -ENOMEM ? r : -EINVAL, "pubkeys[%zu]: %s", i,
                                         r == -ENOTSUP ? "neither an RSA nor an EC key"
                                                       : "not a DER SubjectPublicKeyInfo");
        }
        json_decref(root);
        return r;
}

static int spki_of(EVP_PKEY *pk, uint8_t **spki, size_t *spki_len)
{
        unsigned char *der = NULL;
        int len;

        if (EVP_PKEY_base_id(pk) != EVP_PKEY_RSA && EVP_PKEY_base_id(pk) != EVP_PKEY_EC)
                return -ENOTSUP;
        len = i2d_PUBKEY(pk, &der);
        if (len <= 0)
                return -EINVAL;
        *spki = malloc((size_t)len);
        if (!*spki) {
                OPENSSL_free(der);
                return -ENOMEM;
        }
        memcpy(*spki, der, (size_t)len);
        *spki_len = (size_t)len;
        OPENSSL_free(der);
        return 1;
}

static int from_cert(X509 *x, uint8_t **spki, size_t *spki_len, uint32_t *keyid)
{
        const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
        EVP_PKEY *pk = X509_get0_pubkey(x);

        *keyid = 0;
        if (skid && ASN1_STRING_length(skid) >= 4) {
                const uint8_t *d = ASN1_STRING_get0_data(skid);
                int n = ASN1_STRING_length(skid);
                *keyid = (uint32_t)d[n - 4] << 24 | (uint32_t)d[n - 3] << 16 |
                         (uint32_t)d[n - 2] << 8 | d[n - 1];
        }
        return pk ? spki_of(pk, spki, spki_len) : -EINVAL;
}

int vg_ima_buf_key(const uint8_t *buf, size_t len, uint8_t **spki, size_t *spki_len,
                   uint32_t *keyid)
{
        const unsigned char *q;
        int r = 0;

        *spki = NULL;
        *spki_len = 0;
        *keyid = 0;
        if (len < 16 || len > INT32_MAX)
                return 0;
        if (buf[0] == 0x30) {
                X509 *x;
                EVP_PKEY *pk;

                q = buf;
                if ((x = d2i_X509(NULL, &q, (long)len)) && q == buf + len)
                        r = from_cert(x, spki, spki_len, keyid);
                X509_free(x);
                if (r)
                        return r;
                q = buf;
                if ((pk = d2i_PUBKEY(NULL, &q, (long)len)) && q == buf + len)
                        r = spki_of(pk, spki, spki_len);
                EVP_PKEY_free(pk);
                ERR_clear_error();
                return r;
        }
        if (len > 11 && memcmp(buf, "-----BEGIN ", 11) == 0) {
                BIO *bio = BIO_new_mem_buf(buf, (int)len);
                X509 *x;
                EVP_PKEY *pk;

                if (!bio)
                        return -ENOMEM;
                if ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
                        r = from_cert(x, spki, spki_len, keyid);
                X509_free(x);
                if (!r && BIO_reset(bio) == 1 &&
                    (pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL))) {
                        r = spki_of(pk, spki, spki_len);
                        EVP_PKEY_free(pk);
                }
                BIO_free(bio);
                ERR_clear_error();
                return r;
        }
        return 0;
}

/* Linux include/uapi/linux/hash_info.h */
static const char *kernel_hash_name(uint8_t algo)
{
        switch (algo) {
        case 1:
                return "md5";
        case 2:
                return "sha1";
        case 4:
                return "sha256";
        case 5:
                return "sha384";
        case 6:
                return "sha512";
        case 7:
                return "sha224";
        default:
                return NULL;
        }
}

static bool verify_one(EVP_PKEY *pk, const char *md_name, const uint8_t *sig, size_t sig_len,
                       const uint8_t *digest, size_t digest_len)
{
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
        EVP_MD *md = EVP_MD_fetch(NULL, md_name, NULL);
        bool ok = false;

        if (ctx && md && EVP_PKEY_verify_init(ctx) == 1 &&
            EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
            (EVP_PKEY_base_id(pk) != EVP_PKEY_RSA ||
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1) &&
            (size_t)EVP_MD_get_size(md) == digest_len)
                ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1;
        EVP_MD_free(md);
        EVP_PKEY_CTX_free(ctx);
        ERR_clear_error();
        return ok;
}

bool vg_ima_sig_verify(const struct vg_ima_keyring *const *rings, size_t n_rings,
                       const uint8_t *sig, size_t sig_len, const char *digest_alg,
                       const uint8_t *digest, size_t digest_len)
{
        uint32_t keyid;
        uint16_t size;
        const char *md;

        /* struct signature_v2_hdr { u8 type; u8 version; u8 hash_algo; __be32 keyid;
         * __be16 sig_size; u8 sig[]; }: type 3 (EVM_IMA_XATTR_DIGSIG) or 5 (portable). */
        if (sig_len < 9 || (sig[0] != 3 && sig[0] != 5) || sig[1] != 2)
                return false;
        keyid = (uint32_t)sig[3] << 24 | (uint32_t)sig[4] << 16 | (uint32_t)sig[5] << 8 | sig[6];
        size = (uint16_t)(sig[7] << 8 | sig[8]);
        if ((size_t)size != sig_len - 9)
                return false;
        md = kernel_hash_name(sig[2]);
        if (!md || strcmp(md, digest_alg) != 0)
                return false;
        for (size_t r = 0; r < n_rings; r++) {
                if (!rings[r])
                        continue;
                for (size_t i = 0; i < rings[r]->n; i++) {
                        const struct vg_ima_key *k = &rings[r]->keys[i];
                        if (k->keyid == keyid &&
                            verify_one(k->pkey, md, sig + 9, size, digest, digest_len))
                                return true;
                }
        }
        return false;
}
