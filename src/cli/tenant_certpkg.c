/* vigil tenant: `--cert CA_DIR`, Keylime's certificate package (reference/keylime.md §4): a zip
 * the agent receives as its payload, with a certificate for the agent and the certificate that
 * signs revocation notifications, whose private key goes to the verifier. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca.h"
#include "cleanup.h"
#include "dl_archive.h"
#include "tenant.h"
#include "tls.h"

#define REVOKER          "RevocationNotifier"
#define PKG_MAX_FILE     (16u << 20)
#define PKG_MAX_INCLUDES 1024

struct membuf {
        uint8_t *p;
        size_t len, cap;
};

static la_ssize_t mem_write(struct archive *a, void *ud, const void *buf, size_t n)
{
        struct membuf *m = ud;

        (void)a;
        if (m->len + n > m->cap) {
                size_t cap = (m->cap ? m->cap * 2 : 65536);
                while (cap < m->len + n)
                        cap *= 2;
                uint8_t *p = realloc(m->p, cap);
                if (!p)
                        return -1;
                m->p = p;
                m->cap = cap;
        }
        memcpy(m->p + m->len, buf, n);
        m->len += n;
        return (la_ssize_t)n;
}

static int slurp(const char *path, char **out, size_t *len, struct vg_error *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        size_t n = 0;
        char *buf;

        if (fd < 0 || fstat(fd, &sb) < 0)
                return vg_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > PKG_MAX_FILE)
                return vg_error_set(err, -EINVAL, "%s: not a regular file of at most %u MiB", path,
                                    PKG_MAX_FILE >> 20);
        if (!(buf = malloc((size_t)sb.st_size + 1)))
                return vg_error_set(err, -ENOMEM, "out of memory");
        while (n < (size_t)sb.st_size) {
                ssize_t got = read(fd, buf + n, (size_t)sb.st_size - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0) {
                        free(buf);
                        return vg_error_set(err, -EIO, "%s: read failed", path);
                }
                n += (size_t)got;
        }
        buf[n] = '\0';
        *out = buf;
        *len = n;
        return 0;
}

/* DIR/NAME-cert.crt and DIR/NAME-private.pem, issued by the directory's CA when missing. */
static int ensure_cert(const char *dir, const char *name, struct vg_ca **ca, char **cert,
                       size_t *cert_len, char **key, size_t *key_len, struct vg_error *err)
{
        char cpath[4096], kpath[4096];

        snprintf(cpath, sizeof(cpath), "%s/%s" VG_CA_CERT_SUFFIX, dir, name);
        snprintf(kpath, sizeof(kpath), "%s/%s" VG_CA_KEY_SUFFIX, dir, name);
        if (access(cpath, F_OK) != 0 || access(kpath, F_OK) != 0) {
                _cleanup_(vg_ca_issued_freep) struct vg_ca_issued *is = NULL;
                struct vg_ca_issue_params ip = { .usage = VG_CA_CLIENT, .cn = name };

                if (!*ca && vg_ca_load(dir, NULL, ca, err) < 0)
                        return -EINVAL;
                if (vg_ca_issue(*ca, &ip, &is, err) < 0 ||
                    vg_ca_issued_save(is, dir, name, &(struct vg_ca_save_opts){ 0 }, err) < 0)
                        return -EINVAL;
                tenant_say("issued a certificate for %s in %s", name, dir);
        }
        if (slurp(cpath, cert, cert_len, err) < 0)
                return -EINVAL;
        if (slurp(kpath, key, key_len, err) < 0)
                return -EINVAL;
        return 0;
}

static int add_entry(struct archive *a, const char *name, const void *data, size_t len,
                     struct vg_error *err)
{
        struct archive_entry *e = archive_entry_new();
        int r = 0;

        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0600);
        archive_entry_set_size(e, (la_int64_t)len);
        if (archive_write_header(a, e) != ARCHIVE_OK ||
            (len && archive_write_data(a, data, len) != (la_ssize_t)len))
                r = vg_error_set(err, -EIO, "zip entry %s: %s", name, archive_error_string(a));
        archive_entry_free(e);
        return r;
}

static char *public_pem(const char *key_pem)
{
        BIO *in = BIO_new_mem_buf(key_pem, -1), *out = BIO_new(BIO_s_mem());
        EVP_PKEY *k = in ? PEM_read_bio_PrivateKey(in, NULL, NULL, NULL) : NULL;
        char *res = NULL, *p;
        long n;

        if (k && out && PEM_write_bio_PUBKEY(out, k) == 1 && (n = BIO_get_mem_data(out, &p)) > 0)
                res = strndup(p, (size_t)n);
        EVP_PKEY_free(k);
        BIO_free(in);
        BIO_free(out);
        return res;
}

/* {"cert_serial": "<decimal>", "subject": "CN=..."}: Keylime's metadata. Keylime writes the
 * serial as a JSON number; a 159-bit number does not fit the 64-bit integers of JSON parsers
 * such as jansson (vigil-verifier refuses it), so it goes as a decimal string. */
static char *metadata_json(const char *cert_pem)
{
        BIO *in = BIO_new_mem_buf(cert_pem, -1);
        X509 *x = in ? PEM_read_bio_X509(in, NULL, NULL, NULL) : NULL;
        BIGNUM *bn = x ? ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL) : NULL;
        char *dec = bn ? BN_bn2dec(bn) : NULL, *subject = x ? vg_tls_cert_subject(x) : NULL;
        json_t *js = subject ? json_string(subject) : NULL;
        char *subj_json = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        char *res = NULL;

        json_decref(js);
        if (dec && subj_json &&
            asprintf(&res, "{\"cert_serial\": \"%s\", \"subject\": %s}", dec, subj_json) < 0)
                res = NULL;
        free(subj_json);
        free(subject);
        OPENSSL_free(dec);
        BN_free(bn);
        X509_free(x);
        BIO_free(in);
        return res;
}

int tenant_cert_package(const char *ca_dir, const char *uuid, const char *include_dir,
                        uint8_t **zip, size_t *zip_len, char **revocation_key, char **metadata,
                        struct vg_error *err)
{
        _cleanup_(vg_ca_freep) struct vg_ca *ca = NULL;
        _cleanup_free_ char *cert = NULL, *key = NULL, *rcert = NULL, *rkey = NULL, *cacert = NULL,
                            *crl = NULL, *pub = NULL;
        size_t cert_len, key_len, rcert_len, rkey_len, cacert_len, crl_len = 0;
        char path[4096], name[512];
        struct membuf m = { 0 };
        struct archive *a = NULL;
        int r;

        snprintf(path, sizeof(path), "%s/" VG_CA_CERT_FILE, ca_dir);
        if (slurp(path, &cacert, &cacert_len, err) < 0)
                return -EINVAL;
        if (ensure_cert(ca_dir, uuid, &ca, &cert, &cert_len, &key, &key_len, err) < 0 ||
            ensure_cert(ca_dir, REVOKER, &ca, &rcert, &rcert_len, &rkey, &rkey_len, err) < 0)
                return -EINVAL;
        snprintf(path, sizeof(path), "%s/" VG_CA_CRL_FILE, ca_dir);
        if (access(path, F_OK) == 0 && slurp(path, &crl, &crl_len, err) < 0)
                return -EINVAL;
        if (!(pub = public_pem(key)))
                return vg_error_set(err, -EINVAL,
                                    "%s/%s" VG_CA_KEY_SUFFIX ": not an unencrypted PEM private key",
                                    ca_dir, uuid);
        if (!(*metadata = metadata_json(cert)))
                return vg_error_set(err, -EINVAL,
                                    "%s/%s" VG_CA_CERT_SUFFIX ": not a PEM certificate", ca_dir,
                                    uuid);

        if ((r = vg_dl_archive_load(err)) < 0)
                goto out;
        a = archive_write_new();
        /* Stored, not deflated, as Keylime: nothing to inflate in the agent's tmpfs. */
        if (!a || archive_write_set_format_zip(a) != ARCHIVE_OK ||
            archive_write_zip_set_compression_store(a) != ARCHIVE_OK ||
            archive_write_open(a, &m, NULL, mem_write, NULL) != ARCHIVE_OK) {
                r = vg_error_set(err, -EIO, "zip: %s", a ? archive_error_string(a) : "no memory");
                goto out;
        }
        snprintf(name, sizeof(name), "%s-public.pem", uuid);
        if ((r = add_entry(a, name, pub, strlen(pub), err)) < 0)
                goto out;
        snprintf(name, sizeof(name), "%s" VG_CA_CERT_SUFFIX, uuid);
        if ((r = add_entry(a, name, cert, cert_len, err)) < 0)
                goto out;
        snprintf(name, sizeof(name), "%s" VG_CA_KEY_SUFFIX, uuid);
        if ((r = add_entry(a, name, key, key_len, err)) < 0 ||
            (r = add_entry(a, VG_CA_CERT_FILE, cacert, cacert_len, err)) < 0 ||
            (crl && (r = add_entry(a, VG_CA_CRL_FILE, crl, crl_len, err)) < 0) ||
            (r = add_entry(a, REVOKER VG_CA_CERT_SUFFIX, rcert, rcert_len, err)) < 0)
                goto out;
        if (include_dir) {
                DIR *d = opendir(include_dir);
                struct dirent *de;
                unsigned n = 0;

                if (!d)
                        tenant_say("include directory %s cannot be read (%s); skipping it",
                                   include_dir, strerror(errno));
                while (d && (de = readdir(d))) {
                        _cleanup_free_ char *data = NULL;
                        size_t len;
                        struct stat sb;

                        snprintf(path, sizeof(path), "%s/%s", include_dir, de->d_name);
                        if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
                                continue;
                        if (++n > PKG_MAX_INCLUDES) {
                                r = vg_error_set(err, -EFBIG, "--include %s: more than %d files",
                                                 include_dir, PKG_MAX_INCLUDES);
                                break;
                        }
                        if ((r = slurp(path, &data, &len, err)) < 0 ||
                            (r = add_entry(a, de->d_name, data, len, err)) < 0)
                                break;
                }
                if (d)
                        closedir(d);
                if (r < 0)
                        goto out;
        }
        if (archive_write_close(a) != ARCHIVE_OK) {
                r = vg_error_set(err, -EIO, "zip: %s", archive_error_string(a));
                goto out;
        }
        *revocation_key = TAKE_PTR(rkey);
        *zip = TAKE_PTR(m.p);
        *zip_len = m.len;
        r = 0;
out:
        if (a)
                archive_write_free(a);
        free(m.p);
        if (r < 0) {
                free(*metadata);
                *metadata = NULL;
        }
        return r;
}
