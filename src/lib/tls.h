/* vigil: OpenSSL 3 contexts for the HTTP server and client: TLS 1.2 and later only, client
 * certificates none/optional/required, and a client that trusts a CA or one pinned certificate. */
#pragma once

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

enum vg_tls_client_auth {
        VG_TLS_CLIENT_AUTH_NONE,     /* no certificate requested */
        VG_TLS_CLIENT_AUTH_OPTIONAL, /* requested; none is fine, but one that does not verify fails
                                      */
        VG_TLS_CLIENT_AUTH_REQUIRED, /* a certificate chaining to client_ca_file is required (mTLS)
                                      */
};

struct vg_tls_server_config {
        const char *cert_file;    /* PEM: the server certificate, then its chain */
        const char *key_file;     /* PEM private key */
        const char *key_password; /* for an encrypted key; NULL otherwise */
        enum vg_tls_client_auth client_auth;
        const char *client_ca_file; /* PEM CA certificate(s); required unless client_auth is NONE */
};

/* A server context, or NULL with err naming the file that was missing, unreadable or did not
 * match. The caller owns the reference (SSL_CTX_free); servers take their own. */
SSL_CTX *vg_tls_server_ctx_new(const struct vg_tls_server_config *cfg, struct vg_error *err);

struct vg_tls_client_config {
        /* Exactly one way to trust the server: */
        const char *ca_file;          /* CAs, and the URL's host name or IP must be in the cert */
        const char *pinned_cert_file; /* only this certificate is accepted, whatever its names: */
        const char *pinned_cert_pem;  /* Keylime pins the agent's self-signed mtls_cert this way */
        /* Optional client certificate for mTLS. */
        const char *cert_file;
        const char *key_file;
        const char *key_password;
};

SSL_CTX *vg_tls_client_ctx_new(const struct vg_tls_client_config *cfg, struct vg_error *err);

/* True for a client context built with a pinned certificate. */
bool vg_tls_ctx_is_pinned(const SSL_CTX *ctx);

/* Prepare a new client SSL to talk to host (a name, or an IP literal without brackets): SNI for
 * names, and unless the context pins a certificate, the check that the certificate names host. */
int vg_tls_client_prepare(SSL *ssl, const char *host, struct vg_error *err);

/* One phrase saying why a handshake or TLS read failed: the certificate verification result if
 * that failed ("certificate verify failed: unable to get local issuer certificate"), else the
 * OpenSSL reason of err_code ("tlsv13 alert certificate required"). */
void vg_tls_describe_failure(SSL *ssl, unsigned long err_code, char *out, size_t len);

/* The certificate's subject as an RFC 2253 string ("CN=agent-1,O=vigil"); new string or NULL. */
char *vg_tls_cert_subject(X509 *cert);

/* Lower-case hex SHA-256 of the certificate's DER encoding, for logs; out holds 65 bytes. */
int vg_tls_cert_fingerprint(X509 *cert, char out[65]);
