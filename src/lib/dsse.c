/* vigil: DSSE envelopes for signed runtime policies (reference/keylime.md §5, Keylime's
 * enhancement 88): PAE, ECDSA-SHA256 signatures, Keylime's keyids, EC key files. */
#include "dsse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "encoding.h"
#include "hash.h"

VG_DEFINE_CLEANUP_FUNC(BIO, BIO_free)
VG_DEFINE_CLEANUP_FUNC(EVP_MD_CTX, EVP_MD_CTX_free)
VG_DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
VG_DEFINE_CLEANUP_FUNC(X509, X509_free)
VG_DEFINE_CLEANUP_FUNC(ECDSA_SIG, ECDSA_SIG_free)

int vg_dsse_pae(const char *type, const void *payload, size_t len, uint8_t **out, size_t *out_len)
{
        char head[64];
        size_t tlen = strlen(type);
        int hn = snprintf(head, sizeof(head), "DSSEv1 %zu ", tlen);
        char mid[32];
        int mn = snprintf(mid, sizeof(mid), " %zu ", len);
        size_t total;
        uint8_t *b;

        if (hn < 0 || mn < 0 || len > SIZE_MAX - tlen - 128)
                return -EOVERFLOW;
        total = (size_t)hn + tlen + (size_t)mn + len;
        b = malloc(total + 1);
        if (!b)
                return -ENOMEM;
        memcpy(b, head, (size_t)hn);
        memcpy(b + hn, type, tlen);
        memcpy(b + hn + tlen, mid, (size_t)mn);
        if (len)
                memcpy(b + hn + tlen + mn, payload, len);
        b[total] = '\0';
        *out = b;
        *out_len = total;
        return 0;
}

/* The text a BIO collected, as a new string. */
static char *bio_text(BIO *bio)
{
        char *data;
        long n = BIO_get_mem_data(bio, &data);

        return n < 0 ? NULL : strndup(data, (size_t)n);
}

int vg_dsse_keyid(EVP_PKEY *key, char **out)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        _cleanup_free_ char *pem = NULL;
        uint8_t d[VG_HASH_MAX_SIZE];

        if (!bio || PEM_write_bio_PUBKEY(bio, key) != 1)
                return -EINVAL;
        pem = bio_text(bio);
        if (!pem || vg_hash(VG_HASH_SHA256, pem, strlen(pem), d) < 0)
                return -ENOMEM;
        *out = vg_hex_encode(d, 32);
        return *out ? 0 : -ENOMEM;
}

int vg_dsse_keyid_cert(X509 *cert, char **out)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        _cleanup_free_ char *pem = NULL;

        if (!bio || PEM_write_bio_X509(bio, cert) != 1)
                return -EINVAL;
        pem = bio_text(bio);
        if (!pem)
                return -ENOMEM;
        *out = vg_b64_encode(pem, strlen(pem), VG_B64_STD);
        return *out ? 0 : -ENOMEM;
}

static bool is_ec(EVP_PKEY *key)
{
        return key && EVP_PKEY_get_base_id(key) == EVP_PKEY_EC;
}

int vg_dsse_sign(EVP_PKEY *key, const char *keyid, const char *type, const void *payload,
                 size_t len, char **envelope, struct vg_error *err)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = NULL;
        _cleanup_free_ uint8_t *pae = NULL, *sig = NULL;
        _cleanup_free_ char *own_keyid = NULL, *payload_b64 = NULL, *sig_b64 = NULL;
        json_auto_t *env = NULL;
        size_t pae_len, sig_len = 0;
        int r;

        if (!is_ec(key))
                return vg_error_set(err, -EINVAL,
                                    "expected an EC private key (Keylime signs policies with "
                                    "ECDSA), found another key type");
        if (!keyid) {
                r = vg_dsse_keyid(key, &own_keyid);
                if (r < 0)
                        return vg_error_set(err, r, "cannot compute the key's keyid");
                keyid = own_keyid;
        }
        r = vg_dsse_pae(type, payload, len, &pae, &pae_len);
        if (r < 0)
                return vg_error_set(err, r, "payload too large");
        md = EVP_MD_CTX_new();
        if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
            EVP_DigestSign(md, NULL, &sig_len, pae, pae_len) != 1)
                return vg_error_set(err, -EINVAL, "cannot sign with this key: %s",
                                    ERR_reason_error_string(ERR_get_error()));
        sig = malloc(sig_len);
        if (!sig || EVP_DigestSign(md, sig, &sig_len, pae, pae_len) != 1)
                return vg_error_set(err, -EINVAL, "ECDSA signing failed");
        payload_b64 = vg_b64_encode(payload, len, VG_B64_STD);
        sig_b64 = vg_b64_encode(sig, sig_len, VG_B64_STD);
        if (!payload_b64 || !sig_b64)
                return vg_error_set(err, -ENOMEM, "out of memory");
        /* Key order and spacing as Python's json.dumps writes Keylime's envelopes. */
        env = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "payload", payload_b64, "payloadType", type,
                        "signatures", "keyid", keyid, "sig", sig_b64);
        *envelope = env ? json_dumps(env, 0) : NULL;
        if (!*envelope)
                return vg_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

void vg_dsse_verified_clear(struct vg_dsse_verified *v)
{
        if (!v)
                return;
        free(v->type);
        free(v->payload);
        free(v->keyid);
        memset(v, 0, sizeof(*v));
}

/* Standard base64, or URL-safe (Keylime's b64dec falls back to it). */
static int b64_any(const char *s, uint8_t **out, size_t *len)
{
        if (vg_b64_decode(s, strlen(s), VG_B64_STD, out, len) == 0)
                return 0;
        return vg_b64_decode(s, strlen(s), VG_B64_URL, out, len);
}

/* ECDSA signatures are DER in Keylime; raw r||s (2 x the order size) is turned into DER. */
static int verify_sig(EVP_PKEY *key, const uint8_t *pae, size_t pae_len, const uint8_t *sig,
                      size_t sig_len)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        _cleanup_free_ uint8_t *der = NULL;
        size_t half = ((size_t)EVP_PKEY_get_bits(key) + 7) / 8;
        const uint8_t *p = sig;
        ECDSA_SIG *parsed = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
        bool is_der = parsed && p == sig + sig_len;

        ECDSA_SIG_free(parsed);
        if (!is_der && half && sig_len == 2 * half) {
                _cleanup_(ECDSA_SIG_freep) ECDSA_SIG *es = ECDSA_SIG_new();
                BIGNUM *r = BN_bin2bn(sig, (int)half, NULL),
                       *s = BN_bin2bn(sig + half, (int)half, NULL);
                int n;

                if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
                        BN_free(r);
                        BN_free(s);
                        return -ENOMEM;
                }
                n = i2d_ECDSA_SIG(es, &der);
                if (n <= 0)
                        return -ENOMEM;
                sig = der;
                sig_len = (size_t)n;
        }
        if (!md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1)
                return -ENOMEM;
        int ok = EVP_DigestVerify(md, sig, sig_len, pae, pae_len);

        ERR_clear_error();
        return ok == 1 ? 0 : -EKEYREJECTED;
}

int vg_dsse_verify(const char *envelope, size_t len, EVP_PKEY *key, struct vg_dsse_verified *out,
                   struct vg_error *err)
{
        json_auto_t *env = NULL;
        _cleanup_free_ uint8_t *payload = NULL, *pae = NULL;
        size_t payload_len = 0, pae_len = 0, i;
        const char *type, *payload_b64;
        json_t *sigs, *s;
        json_error_t je;
        int r;

        if (!is_ec(key))
                return vg_error_set(err, -EINVAL,
                                    "expected an EC public key (Keylime checks DSSE with ECDSA), "
                                    "found another key type");
        if (len > VG_DSSE_MAX_ENVELOPE)
                return vg_error_set(err, -EBADMSG, "envelope: expected at most %u bytes, found %zu",
                                    VG_DSSE_MAX_ENVELOPE, len);
        env = json_loadb(envelope, len, JSON_REJECT_DUPLICATES, &je);
        if (!env)
                return vg_error_set(err, -EBADMSG, "envelope:%d:%d: not valid JSON: %s", je.line,
                                    je.column, je.text);
        if (!json_is_object(env))
                return vg_error_set(err, -EBADMSG, "envelope: expected a JSON object");
        payload_b64 = json_string_value(json_object_get(env, "payload"));
        type = json_string_value(json_object_get(env, "payloadType"));
        sigs = json_object_get(env, "signatures");
        if (!payload_b64)
                return vg_error_set(err, -EBADMSG,
                                    "envelope: expected \"payload\" (a base64 string), found %s",
                                    json_object_get(env, "payload") ? "another type" : "none");
        if (!type)
                return vg_error_set(err, -EBADMSG,
                                    "envelope: expected \"payloadType\" (a string), found %s",
                                    json_object_get(env, "payloadType") ? "another type" : "none");
        if (!json_is_array(sigs) || json_array_size(sigs) == 0)
                return vg_error_set(
                    err, -EBADMSG,
                    "envelope: expected \"signatures\" (a non-empty array), found %s",
                    !sigs                 ? "none"
                    : json_is_array(sigs) ? "an empty array"
                                          : "another type");
        if (b64_any(payload_b64, &payload, &payload_len) < 0)
                return vg_error_set(err, -EBADMSG, "envelope: payload: expected base64");
        r = vg_dsse_pae(type, payload, payload_len, &pae, &pae_len);
        if (r < 0)
                return vg_error_set(err, r, "envelope: payload too large");
        json_array_foreach (sigs, i, s) {
                _cleanup_free_ uint8_t *sig = NULL;
                size_t sig_len = 0;
                const char *sig_b64 = json_string_value(json_object_get(s, "sig"));
                json_t *kid = json_object_get(s, "keyid");

                if (!json_is_object(s) || !sig_b64)
                        return vg_error_set(err, -EBADMSG,
                                            "envelope: signatures[%zu]: expected an object with "
                                            "\"sig\" (a base64 string)",
                                            i);
                if (kid && !json_is_string(kid) && !json_is_null(kid))
                        return vg_error_set(
                            err, -EBADMSG, "envelope: signatures[%zu].keyid: expected a string", i);
                if (b64_any(sig_b64, &sig, &sig_len) < 0)
                        return vg_error_set(err, -EBADMSG,
                                            "envelope: signatures[%zu].sig: expected base64", i);
                r = verify_sig(key, pae, pae_len, sig, sig_len);
                if (r == -EKEYREJECTED)
                        continue;
                if (r < 0)
                        return vg_error_set(err, r, "out of memory");
                if (out) {
                        memset(out, 0, sizeof(*out));
                        out->type = strdup(type);
                        out->keyid = json_is_string(kid) ? strdup(json_string_value(kid)) : NULL;
                        out->payload = TAKE_PTR(payload);
                        out->len = payload_len;
                        out->signatures = json_array_size(sigs);
                        if (!out->type || (json_is_string(kid) && !out->keyid)) {
                                vg_dsse_verified_clear(out);
                                return vg_error_set(err, -ENOMEM, "out of memory");
                        }
                }
                return 0;
        }
        return vg_error_set(err, -EKEYREJECTED,
                            "no signature of the envelope (%zu) verifies with this key",
                            json_array_size(sigs));
}

static int read_pem(const char *path, BIO **out, struct vg_error *err)
{
        *out = BIO_new_file(path, "r");
        if (!*out)
                return vg_error_set(err, -errno ? -errno : -ENOENT, "%s: cannot open: %s", path,
                                    strerror(errno ? errno : ENOENT));
        return 0;
}

int vg_dsse_load_private_key(const char *path, EVP_PKEY **out, struct vg_error *err)
{
        _cleanup_(BIO_freep) BIO *bio = NULL;
        EVP_PKEY *k;
        int r = read_pem(path, &bio, err);

        if (r < 0)
                return r;
        k = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
        ERR_clear_error();
        if (!k)
                return vg_error_set(
                    err, -EINVAL, "%s: expected an unencrypted PEM private key, found none", path);
        if (!is_ec(k)) {
                EVP_PKEY_free(k);
                return vg_error_set(err, -EINVAL,
                                    "%s: expected an EC private key (Keylime signs with ECDSA), "
                                    "found another key type",
                                    path);
        }
        *out = k;
        return 0;
}

int vg_dsse_load_public_key(const char *path, bool cert, EVP_PKEY **out, X509 **cert_out,
                            struct vg_error *err)
{
        _cleanup_(BIO_freep) BIO *bio = NULL;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = NULL;
        int r = read_pem(path, &bio, err);

        if (r < 0)
                return r;
        if (cert) {
                _cleanup_(X509_freep) X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);

                if (!x) {
                        ERR_clear_error();
                        return vg_error_set(
                            err, -EINVAL, "%s: expected a PEM X.509 certificate, found none", path);
                }
                k = X509_get_pubkey(x);
                if (cert_out)
                        *cert_out = TAKE_PTR(x);
        } else {
                k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
                if (!k) {
                        (void)BIO_reset(bio);
                        k = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
                }
        }
        ERR_clear_error();
        if (!k)
                return vg_error_set(err, -EINVAL,
                                    "%s: expected a PEM public key (or EC private key), found none",
                                    path);
        if (!is_ec(k))
                return vg_error_set(err, -EINVAL,
                                    "%s: expected an EC key (Keylime checks DSSE with ECDSA), "
                                    "found another key type",
                                    path);
        *out = TAKE_PTR(k);
        return 0;
}

int vg_dsse_generate_key(const char *path, EVP_PKEY **out, struct vg_error *err)
{
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = EVP_EC_gen("P-256");
        _cleanup_(BIO_freep) BIO *bio = NULL;
        _cleanup_free_ char *pem = NULL;
        _cleanup_close_ int fd = -1;
        size_t n, off = 0;

        if (!k)
                return vg_error_set(err, -ENOMEM, "cannot generate an EC P-256 key");
        bio = BIO_new(BIO_s_mem());
        /* SEC1 ("BEGIN EC PRIVATE KEY"), the TraditionalOpenSSL form keylime-policy writes. */
        if (!bio || PEM_write_bio_PrivateKey_traditional(bio, k, NULL, NULL, 0, NULL, NULL) != 1 ||
            !(pem = bio_text(bio)))
                return vg_error_set(err, -ENOMEM, "cannot encode the key");
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return vg_error_set(err, -errno, "%s: cannot create the key file: %s", path,
                                    strerror(errno));
        n = strlen(pem);
        while (off < n) {
                ssize_t w = write(fd, pem + off, n - off);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        int e = errno;

                        unlink(path);
                        return vg_error_set(err, -e, "%s: %s", path, strerror(e));
                }
                off += (size_t)w;
        }
        OPENSSL_cleanse(pem, n);
        *out = TAKE_PTR(k);
        return 0;
}
