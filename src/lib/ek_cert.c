/* vigil: EK certificate validation, shared by the registrar and the tenant. Keylime leaves this
 * to the tenant and checks one level only; here the whole chain to a tpm_cert_store root is built. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ek_cert.h"
#include "encoding.h"
#include "log.h"

/* Vendor stores hold a few dozen certificates of a few KiB each; anything much larger in the
 * directory is not a certificate file. */
#define EK_STORE_MAX_FILE (1024 * 1024)

struct vg_ek_store {
        X509_STORE *anchors;            /* self-signed certificates: where every chain must end */
        STACK_OF(X509) * intermediates; /* the others: offered to the chain builder, not trusted */
        size_t count;
};

static void x509_stack_freep(STACK_OF(X509) * *sk)
{
        if (*sk)
                sk_X509_pop_free(*sk, X509_free);
}

static void biop(BIO **b)
{
        if (*b)
                BIO_free(*b);
}

static void x509p(X509 **x)
{
        if (*x)
                X509_free(*x);
}

static int store_add(struct vg_ek_store *st, X509 *cert)
{
        /* X509_self_signed(.., 0): issuer equals subject and the key identifiers agree; the
         * signature itself is checked by X509_verify_cert() when the chain is built. */
        if (X509_self_signed(cert, 0) == 1) {
                if (!X509_STORE_add_cert(st->anchors, cert))
                        return -ENOMEM;
        } else {
                if (!X509_up_ref(cert))
                        return -ENOMEM;
                if (!sk_X509_push(st->intermediates, cert)) {
                        X509_free(cert);
                        return -ENOMEM;
                }
        }
        st->count++;
        return 0;
}

/* One file: all PEM certificates in it, or a single DER certificate. Returns how many were
 * added, or a negative errno. */
static int store_load_file(struct vg_ek_store *st, int dirfd, const char *name)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat sb;
        int n = 0, r;

        if (fd < 0 || fstat(fd, &sb) < 0)
                return -errno;
        if (!S_ISREG(sb.st_mode) || sb.st_size <= 0 || sb.st_size > EK_STORE_MAX_FILE)
                return 0;
        _cleanup_free_ uint8_t *data = malloc((size_t)sb.st_size);
        if (!data)
                return -ENOMEM;
        size_t len = 0;
        while (len < (size_t)sb.st_size) {
                ssize_t k = read(fd, data + len, (size_t)sb.st_size - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                len += (size_t)k;
        }

        _cleanup_(biop) BIO *bio = BIO_new_mem_buf(data, (int)len);
        if (!bio)
                return -ENOMEM;
        for (;;) {
                _cleanup_(x509p) X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
                if (!x)
                        break;
                r = store_add(st, x);
                if (r < 0)
                        return r;
                n++;
        }
        ERR_clear_error();
        if (n == 0) {
                const unsigned char *p = data;
                _cleanup_(x509p) X509 *x = d2i_X509(NULL, &p, (long)len);
                ERR_clear_error();
                if (x && p == data + len) {
                        r = store_add(st, x);
                        if (r < 0)
                                return r;
                        n = 1;
                }
        }
        return n;
}

int vg_ek_store_load(const char *dir, struct vg_ek_store **out, struct vg_error *err)
{
        _cleanup_(vg_ek_store_freep) struct vg_ek_store *st = calloc(1, sizeof(*st));
        int r;

        *out = NULL;
        if (!st)
                return -ENOMEM;
        st->anchors = X509_STORE_new();
        st->intermediates = sk_X509_new_null();
        if (!st->anchors || !st->intermediates)
                return -ENOMEM;

        DIR *d = opendir(dir);
        if (!d)
                return vg_error_set(err, -errno, "tpm_cert_store %s: %s", dir, strerror(errno));
        /* Sorted, so that the same directory always loads the same way. */
        struct dirent **names = NULL;
        int n = scandir(dir, &names, NULL, alphasort);
        r = 0;
        for (int i = 0; i < n; i++) {
                if (r >= 0 && names[i]->d_name[0] != '.') {
                        int k = store_load_file(st, dirfd(d), names[i]->d_name);
                        if (k == 0)
                                vg_warn(VG_F("file", names[i]->d_name, "dir", dir),
                                        "tpm_cert_store: no certificate in this file, skipped");
                        else if (k == -ENOMEM)
                                r = k;
                        else if (k < 0)
                                vg_warn(VG_F("file", names[i]->d_name, "dir", dir),
                                        "tpm_cert_store: cannot read: %s", strerror(-k));
                }
                free(names[i]);
        }
        free(names);
        closedir(d);
        if (n < 0)
                return vg_error_set(err, -errno, "tpm_cert_store %s: %s", dir, strerror(errno));
        if (r < 0)
                return vg_error_set(err, r, "tpm_cert_store %s: out of memory", dir);
        *out = TAKE_PTR(st);
        return 0;
}

void vg_ek_store_free(struct vg_ek_store *st)
{
        if (!st)
                return;
        X509_STORE_free(st->anchors);
        if (st->intermediates)
                sk_X509_pop_free(st->intermediates, X509_free);
        free(st);
}

size_t vg_ek_store_count(const struct vg_ek_store *st)
{
        return st ? st->count : 0;
}

void vg_ek_cert_clear(struct vg_ek_cert *c)
{
        X509_free(c->leaf);
        if (c->extra)
                sk_X509_pop_free(c->extra, X509_free);
        free(c->der);
        memset(c, 0, sizeof(*c));
}

static int cert_take(struct vg_ek_cert *c, X509 *x)
{
        if (!c->leaf) {
                c->leaf = x;
                return 0;
        }
        if (!sk_X509_push(c->extra, x)) {
                X509_free(x);
                return -ENOMEM;
        }
        return 0;
}

static int decode_pem(const char *text, struct vg_ek_cert *c, struct vg_error *err)
{
        _cleanup_(biop) BIO *bio = BIO_new_mem_buf(text, -1);
        int r;

        if (!bio)
                return -ENOMEM;
        for (;;) {
                X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
                if (!x)
                        break;
                r = cert_take(c, x);
                if (r < 0)
                        return r;
        }
        ERR_clear_error();
        if (!c->leaf)
                return vg_error_set(err, -EINVAL,
                                    "expected a PEM certificate, found text that does "
                                    "not parse as one");
        return 0;
}

static int decode_der(const char *text, struct vg_ek_cert *c, struct vg_error *err)
{
        _cleanup_free_ uint8_t *der = NULL;
        size_t len = 0;
        int r;

        if (vg_b64_decode(text, strlen(text), VG_B64_STD, &der, &len) < 0 || len == 0)
                return vg_error_set(err, -EINVAL,
                                    "expected base64 of a DER certificate or a PEM "
                                    "chain, found invalid base64");
        const unsigned char *p = der, *end = der + len;
        while (p < end) {
                const unsigned char *start = p;
                X509 *x = d2i_X509(NULL, &p, end - p);
                if (!x) {
                        ERR_clear_error();
                        return vg_error_set(err, -EINVAL,
                                            "expected DER certificates, found %zu bytes "
                                            "at offset %zu that do not parse as one",
                                            (size_t)(end - start), (size_t)(start - der));
                }
                r = cert_take(c, x);
                if (r < 0)
                        return r;
        }
        return 0;
}

int vg_ek_cert_decode(const char *text, struct vg_ek_cert *out, struct vg_error *err)
{
        int r;

        memset(out, 0, sizeof(*out));
        out->extra = sk_X509_new_null();
        if (!out->extra)
                return -ENOMEM;
        const char *s = text + strspn(text, " \t\r\n");
        if (strncmp(s, "-----BEGIN", 10) == 0)
                r = decode_pem(s, out, err);
        else
                r = decode_der(text, out, err);
        if (r >= 0) {
                unsigned char *der = NULL;
                int len = i2d_X509(out->leaf, &der);
                if (len <= 0) {
                        r = vg_error_set(err, -EINVAL,
                                         "the certificate cannot be "
                                         "re-encoded as DER");
                } else {
                        /* OPENSSL_malloc is plain malloc here, but keep ownership clean. */
                        out->der = malloc((size_t)len);
                        if (out->der) {
                                memcpy(out->der, der, (size_t)len);
                                out->der_len = (size_t)len;
                        } else {
                                r = -ENOMEM;
                        }
                        OPENSSL_free(der);
                }
        }
        if (r < 0)
                vg_ek_cert_clear(out);
        return r;
}

/* Is this critical extension one an EK certificate legitimately carries and OpenSSL does not
 * implement? TCG EK Credential Profile 2.x 3.2: subjectDirectoryAttributes (2.5.29.9) holds the
 * TPM specification and security assertions, and TCG-defined extensions live under 2.23.133.
 * Their content does not constrain the chain, so not understanding them is safe; any other
 * unknown critical extension still fails verification, as RFC 5280 4.2 requires. */
static bool ek_extension_tolerated(const ASN1_OBJECT *obj)
{
        char oid[80];

        if (OBJ_obj2txt(oid, sizeof(oid), obj, 1) <= 0)
                return false;
        return strcmp(oid, "2.5.29.9") == 0 || strncmp(oid, "2.23.133.", 9) == 0;
}

static int ek_verify_cb(int ok, X509_STORE_CTX *ctx)
{
        if (ok || X509_STORE_CTX_get_error(ctx) != X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION ||
            X509_STORE_CTX_get_error_depth(ctx) != 0)
                return ok;
        X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
        for (int i = 0; i < X509_get_ext_count(cert); i++) {
                X509_EXTENSION *ext = X509_get_ext(cert, i);
                if (X509_EXTENSION_get_critical(ext) && !X509_supported_extension(ext) &&
                    !ek_extension_tolerated(X509_EXTENSION_get_object(ext)))
                        return 0;
        }
        X509_STORE_CTX_set_error(ctx, X509_V_OK);
        return 1;
}

static void name_text(const X509_NAME *name, char *out, size_t len)
{
        _cleanup_(biop) BIO *bio = BIO_new(BIO_s_mem());
        char *p = NULL;

        snprintf(out, len, "(empty)");
        if (!bio || !name || X509_NAME_entry_count(name) == 0)
                return;
        if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0)
                return;
        long n = BIO_get_mem_data(bio, &p);
        if (n > 0)
                snprintf(out, len, "%.*s", (int)n, p);
}

static void x509_store_ctx_freep(X509_STORE_CTX **c)
{
        if (*c)
                X509_STORE_CTX_free(*c);
}

int vg_ek_cert_verify(const struct vg_ek_store *st, const struct vg_ek_cert *cert,
                      const struct vg_tpm_public *ek, struct vg_error *err)
{
        _cleanup_(x509_store_ctx_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        _cleanup_(x509_stack_freep) STACK_OF(X509) *untrusted = sk_X509_new_null();
        struct vg_error merr = { 0 };
        char name[256];

        if (!ctx || !untrusted)
                return -ENOMEM;
        if (vg_tpm_public_match_cert(ek, cert->der, cert->der_len, &merr) < 0)
                return vg_error_set(err, -EKEYREJECTED, "its key is not the ek_tpm key (%s)",
                                    vg_error_str(&merr));
        if (!st)
                return vg_error_set(err, -EKEYREJECTED, "no tpm_cert_store is loaded");

        for (int i = 0; i < sk_X509_num(st->intermediates); i++) {
                X509 *x = sk_X509_value(st->intermediates, i);
                if (!X509_up_ref(x) || !sk_X509_push(untrusted, x))
                        return -ENOMEM;
        }
        for (int i = 0; i < sk_X509_num(cert->extra); i++) {
                X509 *x = sk_X509_value(cert->extra, i);
                if (!X509_up_ref(x) || !sk_X509_push(untrusted, x))
                        return -ENOMEM;
        }
        if (!X509_STORE_CTX_init(ctx, st->anchors, cert->leaf, untrusted))
                return -ENOMEM;
        /* EK certificates carry no TLS EKU (at most tcg-kp-EKCertificate 2.23.133.8.1), so no
         * TLS purpose applies; "any" still checks CA:TRUE and keyCertSign up the chain. */
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
        X509_STORE_CTX_set_verify_cb(ctx, ek_verify_cb);

        int ok = X509_verify_cert(ctx);
        if (ok == 1)
                return 0;

        int e = X509_STORE_CTX_get_error(ctx);
        X509 *bad = X509_STORE_CTX_get_current_cert(ctx);
        const char *reason = X509_verify_cert_error_string(e);
        ERR_clear_error();
        switch (e) {
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
                name_text(bad ? X509_get_issuer_name(bad) : NULL, name, sizeof(name));
                return vg_error_set(err, -EKEYREJECTED, "%s (issuer %s)", reason, name);
        default:
                name_text(bad ? X509_get_subject_name(bad) : NULL, name, sizeof(name));
                return vg_error_set(err, -EKEYREJECTED, "%s (certificate %s, depth %d)", reason,
                                    name, X509_STORE_CTX_get_error_depth(ctx));
        }
}
