/* vigil-agent: the identity that must survive restarts: the agent UUID, the payload key (NK)
 * and the TLS server key and self-signed certificate, created once under data_dir. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "encoding.h"
#include "keylime_crypto.h"
#include "log.h"

#define UUID_FILE     "agent_uuid"
#define NK_FILE       "nk-private.pem"
#define TLS_KEY_FILE  "server-private.pem"
#define TLS_CERT_FILE "server-cert.crt"
#define CERT_DAYS     3650

VG_DEFINE_CLEANUP_FUNC(BIO, BIO_free)
VG_DEFINE_CLEANUP_FUNC(X509, X509_free)
VG_DEFINE_CLEANUP_FUNC(FILE, fclose)

int vg_agent_read_fd(int fd, size_t max, char **out, size_t *len)
{
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, cap = 0;

        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        for (;;) {
                if (cap - n < 4096) {
                        cap = cap ? cap * 2 : 65536;
                        char *p = realloc(buf, cap + 1);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                }
                ssize_t got = read(fd, buf + n, cap - n);
                if (got < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (got == 0)
                        break;
                n += (size_t)got;
                if (n > max)
                        return -EFBIG;
        }
        if (!buf && !(buf = malloc(1)))
                return -ENOMEM;
        buf[n] = '\0';
        *out = TAKE_PTR(buf);
        if (len)
                *len = n;
        return 0;
}

int vg_agent_read_file(const char *path, size_t max, char **out, size_t *len)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
                return -errno;
        return vg_agent_read_fd(fd, max, out, len);
}

static char *data_path(const struct vg_agent *a, const char *name)
{
        char *p;

        if (asprintf(&p, "%s/%s", a->data_dir, name) < 0)
                return NULL;
        return p;
}

/* Write to a temporary name with mode, then rename: a crash never leaves half a key. */
static int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        const uint8_t *p = data;

        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        while (len > 0) {
                ssize_t w = write(fd, p, len);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        unlink(tmp);
                        return r;
                }
                p += w;
                len -= (size_t)w;
        }
        if (fsync(fd) < 0 || rename(tmp, path) < 0) {
                int r = -errno;
                unlink(tmp);
                return r;
        }
        return 0;
}

/* Keylime puts the id into URLs and registrar keys; refuse what would need escaping. */
static bool agent_id_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > VG_AGENT_ID_MAX)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
                        return false;
        return true;
}

static int random_uuid(char out[37])
{
        uint8_t b[16];

        if (RAND_bytes(b, sizeof(b)) != 1)
                return -EIO;
        b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* RFC 9562 version 4 */
        b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10 */
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15]);
        return 0;
}

/* Keylime's "hash_ek": the id is derived from the EK, so it follows the TPM. */
static int uuid_from_ek(struct vg_agent *a)
{
        _cleanup_free_ uint8_t *ek = NULL;
        struct vg_error err = { 0 };
        size_t len;

        if (vg_tpm_ek_public(a->tpm, &ek, &len, &err) < 0 ||
            vg_agent_ek_hash(ek, len, a->uuid, &err) < 0) {
                vg_err(NULL, "uuid = \"hash_ek\": cannot hash the EK public key: %s",
                       vg_error_str(&err));
                return -EIO;
        }
        return 0;
}

int vg_agent_uuid_setup(struct vg_agent *a)
{
        const char *opt = vg_config_string(a->cfg, "uuid");
        _cleanup_free_ char *path = data_path(a, UUID_FILE);
        _cleanup_free_ char *text = NULL;
        char fresh[37];
        int r;

        if (!path)
                return -ENOMEM;
        if (opt && *opt && strcmp(opt, "generate") == 0) {
                /* Keylime's "generate": a new id on every start, by design. */
                if ((r = random_uuid(fresh)) < 0)
                        return r;
                snprintf(a->uuid, sizeof(a->uuid), "%s", fresh);
                return 0;
        }
        if (opt && *opt && strcmp(opt, "hash_ek") == 0)
                return uuid_from_ek(a);
        if (opt && *opt) {
                if (!agent_id_valid(opt)) {
                        vg_err(VG_F("option", "uuid"),
                               "expected 1 to %d characters of [A-Za-z0-9._-] (or \"generate\", "
                               "\"hash_ek\"), found \"%s\"",
                               VG_AGENT_ID_MAX, opt);
                        return -EINVAL;
                }
                snprintf(a->uuid, sizeof(a->uuid), "%s", opt);
                return 0;
        }

        /* Unset: one random UUID, made on the first start and kept in data_dir. */
        r = vg_agent_read_file(path, 4096, &text, NULL);
        if (r == 0) {
                text[strcspn(text, "\r\n")] = '\0';
                if (!agent_id_valid(text)) {
                        vg_err(VG_F("file", path),
                               "expected an agent UUID, found \"%.64s\"; remove the file to get a "
                               "new one",
                               text);
                        return -EINVAL;
                }
                snprintf(a->uuid, sizeof(a->uuid), "%s", text);
                return 0;
        }
        if (r != -ENOENT) {
                vg_err(VG_F("file", path), "cannot read the agent UUID: %s", strerror(-r));
                return r;
        }
        if ((r = random_uuid(fresh)) < 0)
                return r;
        char line[40];
        int n = snprintf(line, sizeof(line), "%s\n", fresh);
        r = write_file_atomic(path, line, (size_t)n, 0644);
        if (r < 0) {
                vg_err(VG_F("file", path), "cannot save the agent UUID: %s", strerror(-r));
                return r;
        }
        snprintf(a->uuid, sizeof(a->uuid), "%s", fresh);
        vg_info(VG_F("agent", a->uuid, "file", path), "generated a new agent UUID");
        return 0;
}

static int key_to_pem(EVP_PKEY *key, bool private_part, char **out, size_t *len)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        char *p;
        long n;

        if (!bio)
                return -ENOMEM;
        if (private_part ? !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                         : !PEM_write_bio_PUBKEY(bio, key))
                return -EIO;
        n = BIO_get_mem_data(bio, &p);
        if (n <= 0 || !(*out = malloc((size_t)n + 1)))
                return -ENOMEM;
        memcpy(*out, p, (size_t)n);
        (*out)[n] = '\0';
        if (len)
                *len = (size_t)n;
        return 0;
}

/* Load the private key at path, or generate an RSA-2048 key and save it there (0600). */
static int load_or_generate_key(const char *path, const char *password, EVP_PKEY **out,
                                bool *created)
{
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        _cleanup_free_ char *pem = NULL;
        size_t len;
        int r;

        *created = false;
        if (f) {
                *out = PEM_read_PrivateKey(f, NULL, NULL, (void *)password);
                return *out ? 0 : -EBADMSG;
        }
        if (errno != ENOENT)
                return -errno;
        EVP_PKEY *key = EVP_RSA_gen(2048);
        if (!key)
                return -EIO;
        r = key_to_pem(key, true, &pem, &len);
        if (r == 0)
                r = write_file_atomic(path, pem, len, 0600);
        if (pem)
                OPENSSL_cleanse(pem, len);
        if (r < 0) {
                EVP_PKEY_free(key);
                return r;
        }
        *out = key;
        *created = true;
        return 0;
}

int vg_agent_nk_setup(struct vg_agent *a)
{
        _cleanup_free_ char *path = data_path(a, NK_FILE);
        bool created;
        int r;

        if (!path)
                return -ENOMEM;
        /* rust-keylime keeps its payload key (payload_key, under keylime_dir) across restarts;
         * so do we: a restart must not invalidate a U/V pair a tenant is about to send. */
        r = load_or_generate_key(path, NULL, &a->nk, &created);
        if (r < 0) {
                vg_err(VG_F("agent", a->uuid, "file", path),
                       "cannot load or create the payload key (NK): %s",
                       r == -EBADMSG ? "not a PEM private key" : strerror(-r));
                return r;
        }
        if (EVP_PKEY_get_base_id(a->nk) != EVP_PKEY_RSA) {
                vg_err(VG_F("agent", a->uuid, "file", path),
                       "expected an RSA payload key (Keylime encrypts U and V with RSA-OAEP), "
                       "found another key type");
                return -EINVAL;
        }
        r = key_to_pem(a->nk, false, &a->nk_pem, NULL);
        if (r < 0)
                return r;
        vg_info(VG_F("agent", a->uuid, "file", path), "%s the payload key (NK)",
                created ? "generated" : "loaded");
        return 0;
}

static int add_ext(X509 *cert, int nid, const char *value)
{
        X509V3_CTX ctx;
        X509_EXTENSION *ext;
        int ok;

        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
        if (!ext)
                return -EINVAL;
        ok = X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
        return ok ? 0 : -ENOMEM;
}

/* A self-signed server certificate with CN = the agent UUID, as rust-keylime makes one. The
 * verifier and tenant pin it (it reaches them as mtls_cert through the registrar), so its
 * names only matter to humans. */
static int make_self_signed(struct vg_agent *a, EVP_PKEY *key, const char *path)
{
        _cleanup_(X509_freep) X509 *cert = X509_new();
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        uint8_t serial[16];
        char san[128];
        char *p;
        long n;

        if (!cert || !bio || RAND_bytes(serial, sizeof(serial)) != 1)
                return -ENOMEM;
        serial[0] &= 0x7f;
        BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
        if (!bn)
                return -ENOMEM;
        ASN1_INTEGER *sn = BN_to_ASN1_INTEGER(bn, NULL);
        BN_free(bn);
        if (!sn)
                return -ENOMEM;
        X509_set_serialNumber(cert, sn);
        ASN1_INTEGER_free(sn);

        X509_NAME *name = X509_get_subject_name(cert);
        if (!X509_set_version(cert, 2) ||
            !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)a->uuid,
                                        -1, -1, 0) ||
            !X509_set_issuer_name(cert, name) || !X509_set_pubkey(cert, key) ||
            !X509_gmtime_adj(X509_getm_notBefore(cert), -300) ||
            !X509_gmtime_adj(X509_getm_notAfter(cert), (long)CERT_DAYS * 86400))
                return -ENOMEM;
        const char *ip = vg_config_string(a->cfg, "contact_ip");
        if (!ip || !*ip)
                ip = vg_config_string(a->cfg, "ip");
        if (strchr(ip, ':') || strspn(ip, "0123456789.") == strlen(ip))
                snprintf(san, sizeof(san), "IP:%s, DNS:localhost", ip);
        else
                snprintf(san, sizeof(san), "DNS:%s, DNS:localhost", ip);
        if (add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
            add_ext(cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") < 0 ||
            add_ext(cert, NID_ext_key_usage, "serverAuth") < 0 ||
            add_ext(cert, NID_subject_alt_name, san) < 0 ||
            add_ext(cert, NID_subject_key_identifier, "hash") < 0)
                return -EINVAL;
        if (!X509_sign(cert, key, EVP_sha256()) || !PEM_write_bio_X509(bio, cert))
                return -EIO;
        n = BIO_get_mem_data(bio, &p);
        return write_file_atomic(path, p, (size_t)n, 0644);
}

int vg_agent_tls_setup(struct vg_agent *a)
{
        const char *key = vg_config_string(a->cfg, "server_key");
        const char *cert = vg_config_string(a->cfg, "server_cert");
        int r;

        if ((key && *key) != (cert && *cert)) {
                vg_err(NULL, "server_key and server_cert must be set together (or neither, to use "
                             "a self-signed certificate kept in data_dir)");
                return -EINVAL;
        }
        if (key && *key) {
                a->server_key_file = strdup(key);
                a->server_cert_file = strdup(cert);
        } else {
                a->server_key_file = data_path(a, TLS_KEY_FILE);
                a->server_cert_file = data_path(a, TLS_CERT_FILE);
                if (!a->server_key_file || !a->server_cert_file)
                        return -ENOMEM;
                EVP_PKEY *pkey = NULL;
                bool created;
                r = load_or_generate_key(a->server_key_file, NULL, &pkey, &created);
                if (r < 0) {
                        vg_err(VG_F("file", a->server_key_file),
                               "cannot load or create the TLS server key: %s",
                               r == -EBADMSG ? "not a PEM private key" : strerror(-r));
                        return r;
                }
                /* A new key needs a new certificate; an existing one keeps its certificate so
                 * that the verifier's pinned copy stays valid across restarts. */
                if (created || access(a->server_cert_file, F_OK) < 0) {
                        r = make_self_signed(a, pkey, a->server_cert_file);
                        if (r < 0) {
                                EVP_PKEY_free(pkey);
                                vg_err(VG_F("file", a->server_cert_file),
                                       "cannot write the self-signed TLS certificate: %s",
                                       strerror(-r));
                                return r;
                        }
                        vg_info(VG_F("agent", a->uuid, "file", a->server_cert_file),
                                "generated a self-signed TLS server certificate");
                }
                EVP_PKEY_free(pkey);
        }
        if (!a->server_key_file || !a->server_cert_file)
                return -ENOMEM;
        r = vg_agent_read_file(a->server_cert_file, 1 << 20, &a->server_cert_pem, NULL);
        if (r < 0) {
                vg_err(VG_F("file", a->server_cert_file), "cannot read the TLS certificate: %s",
                       strerror(-r));
                return r;
        }
        return 0;
}
