/* vigil: OpenSSL contexts from certificate files, with errors that name the file, and pinning
 * as Keylime's verifier pins agents (the pinned certificate is the only trust anchor). */
#include "tls.h"
#include "cleanup.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

VG_DEFINE_CLEANUP_FUNC(SSL_CTX, SSL_CTX_free)
VG_DEFINE_CLEANUP_FUNC(X509, X509_free)
VG_DEFINE_CLEANUP_FUNC(BIO, BIO_free)

/* The most useful line of the OpenSSL error queue, which is then cleared. */
static const char *openssl_reason(char *buf, size_t len)
{
        unsigned long e = ERR_peek_last_error();

        if (!e)
                snprintf(buf, len, "unknown OpenSSL error");
        else
                ERR_error_string_n(e, buf, len);
        ERR_clear_error();
        return buf;
}

static int check_readable(const char *what, const char *path, struct vg_error *err)
{
        FILE *f = fopen(path, "r");

        if (!f)
                return vg_error_set(err, -errno, "cannot read %s %s: %s", what, path,
                                    strerror(errno));
        fclose(f);
        return 0;
}

static int password_cb(char *buf, int size, int rwflag, void *userdata)
{
        const char *pw = userdata;
        size_t n;

        if (!pw || size <= 0)
                return 0;
        n = strlen(pw);
        if (n > (size_t)size)
                n = (size_t)size;
        memcpy(buf, pw, n);
        return (int)n;
}

static void warn_if_expired(X509 *cert, const char *path)
{
        if (cert && X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
                vg_warn(VG_F("file", path), "certificate has expired; peers will refuse it");
        else if (cert && X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
                vg_warn(VG_F("file", path), "certificate is not valid yet; peers will refuse it");
}

/* Certificate chain + private key, checked against each other. */
static int load_identity(SSL_CTX *ctx, const char *cert_file, const char *key_file,
                         const char *password, struct vg_error *err)
{
        char reason[256];
        int r;

        if ((r = check_readable("certificate", cert_file, err)) < 0 ||
            (r = check_readable("private key", key_file, err)) < 0)
                return r;
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
                return vg_error_set(err, -EINVAL, "cannot load certificate %s: %s", cert_file,
                                    openssl_reason(reason, sizeof(reason)));
        warn_if_expired(SSL_CTX_get0_certificate(ctx), cert_file);

        /* The password is only needed while the key is read; do not leave a pointer behind. */
        SSL_CTX_set_default_passwd_cb(ctx, password_cb);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)password);
        r = SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
        SSL_CTX_set_default_passwd_cb(ctx, NULL);
        /* OpenSSL checks the pair while loading the key. */
        unsigned long e = ERR_peek_last_error();
        if (r != 1 && ERR_GET_LIB(e) == ERR_LIB_X509 &&
            ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
                ERR_clear_error();
                return vg_error_set(err, -EINVAL, "private key %s does not match certificate %s",
                                    key_file, cert_file);
        }
        if (r != 1)
                return vg_error_set(err, -EINVAL, "cannot load private key %s%s: %s", key_file,
                                    password ? "" : " (if it is encrypted, give its password)",
                                    openssl_reason(reason, sizeof(reason)));
        if (SSL_CTX_check_private_key(ctx) != 1) {
                ERR_clear_error();
                return vg_error_set(err, -EINVAL, "private key %s does not match certificate %s",
                                    key_file, cert_file);
        }
        return 0;
}

static int load_ca(SSL_CTX *ctx, const char *ca_file, struct vg_error *err)
{
        char reason[256];
        int r = check_readable("CA certificate file", ca_file, err);

        if (r < 0)
                return r;
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
                return vg_error_set(err, -EINVAL, "cannot load CA certificates from %s: %s",
                                    ca_file, openssl_reason(reason, sizeof(reason)));
        return 0;
}

static SSL_CTX *ctx_new(const SSL_METHOD *method, struct vg_error *err)
{
        SSL_CTX *ctx = SSL_CTX_new(method);

        if (!ctx) {
                vg_error_set(err, -ENOMEM, "cannot create a TLS context");
                return NULL;
        }
        /* TLS 1.0/1.1 are deprecated (RFC 8996); renegotiation is a DoS lever we do not need. */
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
        return ctx;
}

SSL_CTX *vg_tls_server_ctx_new(const struct vg_tls_server_config *cfg, struct vg_error *err)
{
        _cleanup_(SSL_CTX_freep) SSL_CTX *ctx = NULL;
        static const unsigned char sid_ctx[] = "vigil";

        if (!cfg->cert_file || !cfg->key_file) {
                vg_error_set(err, -EINVAL, "a TLS server needs a certificate and a private key");
                return NULL;
        }
        if (cfg->client_auth != VG_TLS_CLIENT_AUTH_NONE && !cfg->client_ca_file) {
                vg_error_set(err, -EINVAL,
                             "client certificates are requested but no client CA file is set");
                return NULL;
        }
        ctx = ctx_new(TLS_server_method(), err);
        if (!ctx)
                return NULL;
        SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
        if (load_identity(ctx, cfg->cert_file, cfg->key_file, cfg->key_password, err) < 0)
                return NULL;
        if (cfg->client_auth != VG_TLS_CLIENT_AUTH_NONE) {
                STACK_OF(X509_NAME) * names;
                int mode = SSL_VERIFY_PEER;

                if (load_ca(ctx, cfg->client_ca_file, err) < 0)
                        return NULL;
                /* Tell clients which CAs we accept, so that one holding several certs picks. */
                names = SSL_load_client_CA_file(cfg->client_ca_file);
                if (names)
                        SSL_CTX_set_client_CA_list(ctx, names);
                ERR_clear_error();
                if (cfg->client_auth == VG_TLS_CLIENT_AUTH_REQUIRED)
                        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
                SSL_CTX_set_verify(ctx, mode, NULL);
                /* Session resumption with client verification needs a context id. */
                SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
        }
        return TAKE_PTR(ctx);
}

/* Verification callback of pinning contexts: the chain check runs against the pinned cert as
 * the only trust anchor, and the leaf must be exactly that certificate. */
static int pinned_verify_cb(int preverify_ok, X509_STORE_CTX *xctx)
{
        SSL *ssl;
        X509 *leaf;
        STACK_OF(X509_OBJECT) * objs;

        if (X509_STORE_CTX_get_error_depth(xctx) != 0)
                return preverify_ok;
        ssl = X509_STORE_CTX_get_ex_data(xctx, SSL_get_ex_data_X509_STORE_CTX_idx());
        leaf = X509_STORE_CTX_get_current_cert(xctx);
        if (!ssl || !leaf)
                return 0;
        objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)));
        for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
                X509 *pin = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
                if (pin && X509_cmp(pin, leaf) == 0)
                        return preverify_ok;
        }
        X509_STORE_CTX_set_error(xctx, X509_V_ERR_CERT_REJECTED);
        return 0;
}

static X509 *read_pinned(const struct vg_tls_client_config *cfg, struct vg_error *err)
{
        _cleanup_(BIO_freep) BIO *bio = NULL;
        const char *what = cfg->pinned_cert_file ? cfg->pinned_cert_file : "(in memory)";
        X509 *cert;

        if (cfg->pinned_cert_file) {
                if (check_readable("pinned certificate", cfg->pinned_cert_file, err) < 0)
                        return NULL;
                bio = BIO_new_file(cfg->pinned_cert_file, "r");
        } else {
                bio = BIO_new_mem_buf(cfg->pinned_cert_pem, -1);
        }
        cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        ERR_clear_error();
        if (!cert)
                vg_error_set(err, -EINVAL, "pinned certificate %s is not a PEM certificate", what);
        return cert;
}

SSL_CTX *vg_tls_client_ctx_new(const struct vg_tls_client_config *cfg, struct vg_error *err)
{
        _cleanup_(SSL_CTX_freep) SSL_CTX *ctx = NULL;
        int anchors = !!cfg->ca_file + !!cfg->pinned_cert_file + !!cfg->pinned_cert_pem;

        if (anchors != 1) {
                vg_error_set(err, -EINVAL,
                             "a TLS client needs exactly one of a CA file or a "
                             "pinned certificate, %d given",
                             anchors);
                return NULL;
        }
        if (!!cfg->cert_file != !!cfg->key_file) {
                vg_error_set(err, -EINVAL, "a client certificate needs both cert and key files");
                return NULL;
        }
        ctx = ctx_new(TLS_client_method(), err);
        if (!ctx)
                return NULL;
        if (cfg->ca_file) {
                if (load_ca(ctx, cfg->ca_file, err) < 0)
                        return NULL;
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        } else {
                _cleanup_(X509_freep) X509 *pin = read_pinned(cfg, err);
                if (!pin)
                        return NULL;
                if (X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), pin) != 1) {
                        ERR_clear_error();
                        vg_error_set(err, -ENOMEM, "cannot add the pinned certificate");
                        return NULL;
                }
                /* The pinned cert need not be self-signed: let it end the chain by itself. */
                X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, pinned_verify_cb);
        }
        if (cfg->cert_file &&
            load_identity(ctx, cfg->cert_file, cfg->key_file, cfg->key_password, err) < 0)
                return NULL;
        return TAKE_PTR(ctx);
}

bool vg_tls_ctx_is_pinned(const SSL_CTX *ctx)
{
        return SSL_CTX_get_verify_callback(ctx) == pinned_verify_cb;
}

int vg_tls_client_prepare(SSL *ssl, const char *host, struct vg_error *err)
{
        unsigned char addr[16];
        bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);

        /* RFC 6066 3: SNI carries host names only, never literal addresses. */
        if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1) {
                ERR_clear_error();
                return vg_error_set(err, -EINVAL, "invalid TLS server name %s", host);
        }
        if (vg_tls_ctx_is_pinned(SSL_get_SSL_CTX(ssl)))
                return 0;
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host)
                   : X509_VERIFY_PARAM_set1_host(vp, host, 0)) != 1) {
                ERR_clear_error();
                return vg_error_set(err, -EINVAL, "cannot check certificates against %s", host);
        }
        return 0;
}

void vg_tls_describe_failure(SSL *ssl, unsigned long err_code, char *out, size_t len)
{
        long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

        if (vr == X509_V_ERR_CERT_REJECTED && ssl && vg_tls_ctx_is_pinned(SSL_get_SSL_CTX(ssl)))
                snprintf(out, len, "certificate verify failed: not the pinned certificate");
        else if (vr != X509_V_OK)
                snprintf(out, len, "certificate verify failed: %s",
                         X509_verify_cert_error_string(vr));
        else if (err_code && ERR_reason_error_string(err_code))
                snprintf(out, len, "%s", ERR_reason_error_string(err_code));
        else if (err_code)
                ERR_error_string_n(err_code, out, len);
        else
                snprintf(out, len, "connection closed during the TLS handshake");
}

char *vg_tls_cert_subject(X509 *cert)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        char *data, *s;
        long n;

        if (!bio || !cert ||
            X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0)
                return NULL;
        n = BIO_get_mem_data(bio, &data);
        if (n < 0)
                return NULL;
        s = malloc((size_t)n + 1);
        if (s) {
                memcpy(s, data, (size_t)n);
                s[n] = '\0';
        }
        return s;
}

int vg_tls_cert_fingerprint(X509 *cert, char out[65])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;

        if (!cert || X509_digest(cert, EVP_sha256(), md, &n) != 1 || n != 32) {
                ERR_clear_error();
                out[0] = '\0';
                return -EINVAL;
        }
        for (unsigned i = 0; i < n; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
        return 0;
}
