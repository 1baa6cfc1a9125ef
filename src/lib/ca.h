/* vigil: a small certificate authority for the daemons' mTLS, laid out like Keylime's cv_ca
 * (cacert.crt, server-cert.crt, client-cert.crt, ...) so a component's tls_dir can point at it. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "cleanup.h"
#include "error.h"

/* File names inside a CA directory. Keylime's cv_ca uses the same ones for the certificates,
 * the CRL and NAME-cert.crt / NAME-private.pem; it keeps the CA key in private.yml instead. */
#define VG_CA_CERT_FILE   "cacert.crt"
#define VG_CA_KEY_FILE    "ca-private.pem"
#define VG_CA_CRL_FILE    "cacrl.pem"
#define VG_CA_CERT_SUFFIX "-cert.crt"
#define VG_CA_KEY_SUFFIX  "-private.pem"

/* Keylime's [ca] defaults: cert_bits 2048, CA lifetime 3650 days, certificates 365 days. */
#define VG_CA_DEFAULT_CA_DAYS   3650u
#define VG_CA_DEFAULT_CERT_DAYS 365u
#define VG_CA_MAX_DAYS          36500u
#define VG_CA_DEFAULT_CN        "vigil CA"

enum vg_ca_key_type {
        VG_CA_KEY_AUTO = 0, /* a new CA: rsa:2048; an issued key: the same type as the CA's */
        VG_CA_KEY_RSA2048,
        VG_CA_KEY_RSA3072,
        VG_CA_KEY_RSA4096,
        VG_CA_KEY_EC_P256,
        VG_CA_KEY_EC_P384,
};

/* "rsa:2048", "rsa:3072", "rsa:4096", "ec:P-256", "ec:P-384"; also "rsa" (2048), "ec" (P-256)
 * and the curves' OpenSSL names (prime256v1, secp384r1). -EINVAL with a message otherwise. */
int vg_ca_key_type_parse(const char *s, enum vg_ca_key_type *out, struct vg_error *err);
const char *vg_ca_key_type_name(enum vg_ca_key_type t);

enum vg_ca_usage {
        VG_CA_SERVER, /* EKU serverAuth; default SANs 127.0.0.1, ::1, localhost, the host name */
        VG_CA_CLIENT, /* EKU clientAuth (Keylime 7.14 requires it for admin requests) */
};

/* A subjectAltName as given on a command line: "IP:1.2.3.4", "IP:::1", "DNS:host.example",
 * or a bare address or host name. 0, or -EINVAL with "expected ..., found ...". */
int vg_ca_san_validate(const char *spec, struct vg_error *err);

/* A certificate name usable as NAME in NAME-cert.crt: letters, digits, '.', '_', '-', not
 * starting with '.' or '-', at most 64 characters, and not "ca" (that would be the CA's key). */
int vg_ca_name_validate(const char *name, struct vg_error *err);

struct vg_ca;        /* a CA certificate and its private key */
struct vg_ca_issued; /* a certificate the CA issued and its private key, not yet written */

struct vg_ca_params {
        enum vg_ca_key_type key_type;
        const char *cn;    /* NULL: VG_CA_DEFAULT_CN */
        unsigned days;     /* 0: VG_CA_DEFAULT_CA_DAYS */
        time_t not_before; /* 0: now, minus a few minutes for clock skew between hosts */
};

/* A new self-signed CA (basicConstraints critical CA:TRUE, pathlen:0; keyUsage keyCertSign,
 * cRLSign; subject and authority key identifiers) and its empty CRL, in memory. */
int vg_ca_new(const struct vg_ca_params *p, struct vg_ca **out, struct vg_error *err);

/* Read DIR/cacert.crt and DIR/ca-private.pem (password NULL when it is not encrypted) and
 * check that they belong together and make a CA that is valid now. Errors name the file. */
int vg_ca_load(const char *dir, const char *password, struct vg_ca **out, struct vg_error *err);
void vg_ca_free(struct vg_ca *ca);
VG_DEFINE_CLEANUP_FUNC(struct vg_ca, vg_ca_free)

struct vg_ca_issue_params {
        enum vg_ca_usage usage;
        const char *cn;          /* subject common name; required */
        const char *const *sans; /* NULL-terminated, as vg_ca_san_validate() takes them; NULL:
                                  * the defaults for a server, none for a client */
        enum vg_ca_key_type key_type;
        unsigned days;     /* 0: VG_CA_DEFAULT_CERT_DAYS; never past the CA's own expiry */
        time_t not_before; /* 0: now, minus a few minutes */
};

/* A fresh key and a certificate for it signed by the CA: random 159-bit serial, basicConstraints
 * CA:FALSE, keyUsage, the usage's EKU, SANs, subject and authority key identifiers. */
int vg_ca_issue(const struct vg_ca *ca, const struct vg_ca_issue_params *p,
                struct vg_ca_issued **out, struct vg_error *err);
void vg_ca_issued_free(struct vg_ca_issued *c);
VG_DEFINE_CLEANUP_FUNC(struct vg_ca_issued, vg_ca_issued_free)

/* Writing. Each file is written to a temporary name, synced and renamed into place: keys 0600
 * (PEM; PKCS#8 encrypted with AES-256 when password is set), certificates and the CRL 0644.
 * Without force an existing file is an -EEXIST error and nothing is written. The directory is
 * created (0700) when it does not exist, but not its parents. */
struct vg_ca_save_opts {
        const char *password;
        bool force;
};

/* DIR/ca-private.pem, DIR/cacert.crt and DIR/cacrl.pem. */
int vg_ca_save(const struct vg_ca *ca, const char *dir, const struct vg_ca_save_opts *o,
               struct vg_error *err);
/* DIR/NAME-private.pem and DIR/NAME-cert.crt. */
int vg_ca_issued_save(const struct vg_ca_issued *c, const char *dir, const char *name,
                      const struct vg_ca_save_opts *o, struct vg_error *err);

struct vg_ca_init_params {
        enum vg_ca_key_type key_type;   /* for the CA, server and client keys; AUTO: rsa:2048 */
        const char *cn;                 /* the CA's common name; NULL: VG_CA_DEFAULT_CN */
        unsigned days;                  /* the CA's lifetime; 0: VG_CA_DEFAULT_CA_DAYS */
        unsigned cert_days;             /* server and client; 0: VG_CA_DEFAULT_CERT_DAYS */
        const char *const *server_sans; /* NULL: the server defaults */
        const char *password;           /* encrypt every private key; NULL: plain PEM */
        bool force;                     /* replace an existing CA */
};

/* Keylime's cv_ca layout in one step: the CA (ca-private.pem, cacert.crt, cacrl.pem),
 * server-private.pem + server-cert.crt (CN "server") and client-private.pem + client-cert.crt
 * (CN "client"). All files or none; only with force can a failed rename part-way leave some
 * replaced. This is what a daemon's `tls_dir = generate` should call. */
int vg_ca_init(const char *dir, const struct vg_ca_init_params *p, struct vg_error *err);

/* What `vigil ca show` prints about one certificate. */
enum vg_ca_cert_status {
        VG_CA_CERT_OK,
        VG_CA_CERT_EXPIRED,
        VG_CA_CERT_NOT_YET_VALID,
        VG_CA_CERT_FOREIGN,    /* not signed by this directory's CA */
        VG_CA_CERT_NOT_A_CA,   /* the directory's cacert.crt lacks basicConstraints CA:TRUE */
        VG_CA_CERT_UNREADABLE, /* not a PEM certificate; problem says why */
};
const char *vg_ca_cert_status_name(enum vg_ca_cert_status s);

struct vg_ca_cert_info {
        char file[NAME_MAX + 1]; /* base name, "server-cert.crt"; empty when from memory */
        char name[NAME_MAX + 1]; /* NAME of NAME-cert.crt; "ca" for the CA */
        enum vg_ca_cert_status status;
        char problem[256]; /* for a status other than OK: what was expected and found */
        char subject[256]; /* RFC 2253, "CN=server" */
        char issuer[256];
        char serial[64];   /* upper-case hex, as `openssl x509 -serial` prints it */
        char sha256[96];   /* "AB:CD:...", as `openssl x509 -fingerprint -sha256` */
        char key_type[80]; /* "rsa:2048", "ec:P-256", or the algorithm's name */
        char sans[1024];   /* "IP:127.0.0.1, DNS:localhost"; empty when none */
        time_t not_before, not_after;
        bool is_ca, server_auth, client_auth;
};

int vg_ca_info(const struct vg_ca *ca, struct vg_ca_cert_info *out);
int vg_ca_issued_info(const struct vg_ca_issued *c, struct vg_ca_cert_info *out);

struct vg_ca_listing {
        struct vg_ca_cert_info ca;
        struct vg_ca_cert_info *certs; /* every NAME-cert.crt in the directory, sorted by name */
        size_t n_certs;
        bool have_crl; /* cacrl.pem exists; the fields below describe it */
        bool crl_ok;   /* parsed and signed by the CA */
        size_t crl_revoked;
        time_t crl_last_update, crl_next_update;
        char crl_problem[256];
};

/* Describe a CA directory without its private key. An unreadable cacert.crt is an error;
 * an unreadable NAME-cert.crt is listed with VG_CA_CERT_UNREADABLE. */
int vg_ca_list(const char *dir, struct vg_ca_listing *out, struct vg_error *err);
void vg_ca_listing_clear(struct vg_ca_listing *l);
