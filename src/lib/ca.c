/* vigil: the certificate authority behind `vigil ca` and `tls_dir = generate`: keys, a
 * self-signed CA, server and client certificates and an empty CRL, written atomically. */
#include "ca.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

VG_DEFINE_CLEANUP_FUNC(X509, X509_free)
VG_DEFINE_CLEANUP_FUNC(X509_CRL, X509_CRL_free)
VG_DEFINE_CLEANUP_FUNC(X509_NAME, X509_NAME_free)
VG_DEFINE_CLEANUP_FUNC(X509_EXTENSION, X509_EXTENSION_free)
VG_DEFINE_CLEANUP_FUNC(BIO, BIO_free)
VG_DEFINE_CLEANUP_FUNC(BIGNUM, BN_free)
VG_DEFINE_CLEANUP_FUNC(ASN1_INTEGER, ASN1_INTEGER_free)
VG_DEFINE_CLEANUP_FUNC(ASN1_TIME, ASN1_TIME_free)
VG_DEFINE_CLEANUP_FUNC(ASN1_IA5STRING, ASN1_IA5STRING_free)
VG_DEFINE_CLEANUP_FUNC(GENERAL_NAME, GENERAL_NAME_free)
VG_DEFINE_CLEANUP_FUNC(GENERAL_NAMES, GENERAL_NAMES_free)
VG_DEFINE_CLEANUP_FUNC(DIR, closedir)

/* Certificates start this much before "now": a host whose clock lags the CA's by a minute or
 * two must not reject a certificate issued a moment ago. */
#define CLOCK_SKEW_SECONDS 300
#define DAY_SECONDS        86400
/* Certificates, keys, CRLs and password files are a few KiB; anything larger is not one. */
#define MAX_PEM_FILE (1024 * 1024)
#define CN_MAX       64 /* RFC 5280 ub-common-name */

struct vg_ca {
        X509 *cert;
        EVP_PKEY *key;
        X509_CRL *crl; /* NULL for a loaded CA: the CRL on disk stays as it is */
};

struct vg_ca_issued {
        X509 *cert;
        EVP_PKEY *key;
};

/* Record err with the reason OpenSSL queued, and clear the queue so it does not leak into the
 * next failure. */
__attribute__((format(printf, 3, 4))) static int ossl_err(struct vg_error *err, int code,
                                                          const char *fmt, ...)
{
        unsigned long e = ERR_peek_last_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;
        char msg[sizeof(err->msg)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        ERR_clear_error();
        if (reason)
                return vg_error_set(err, code, "%s (OpenSSL: %s)", msg, reason);
        return vg_error_set(err, code, "%s", msg);
}

static const char *fmt_time(time_t t, char buf[static 32])
{
        struct tm tm;

        if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%d %H:%M:%S UTC", &tm))
                snprintf(buf, 32, "@%lld", (long long)t);
        return buf;
}

static int asn1_to_time(const ASN1_TIME *a, time_t *out)
{
        struct tm tm;

        if (!a || !ASN1_TIME_to_tm(a, &tm))
                return -EINVAL;
        *out = timegm(&tm);
        return 0;
}

/* --- key types -------------------------------------------------------------------------- */

static const struct key_desc {
        enum vg_ca_key_type type;
        const char *name;
        bool rsa;
        unsigned bits;
        const char *group; /* OpenSSL's name of the EC group */
} key_descs[] = {
        { VG_CA_KEY_RSA2048, "rsa:2048", true, 2048, NULL },
        { VG_CA_KEY_RSA3072, "rsa:3072", true, 3072, NULL },
        { VG_CA_KEY_RSA4096, "rsa:4096", true, 4096, NULL },
        { VG_CA_KEY_EC_P256, "ec:P-256", false, 256, "prime256v1" },
        { VG_CA_KEY_EC_P384, "ec:P-384", false, 384, "secp384r1" },
};

static const struct key_desc *key_desc_of(enum vg_ca_key_type t)
{
        for (size_t i = 0; i < VG_ARRAY_SIZE(key_descs); i++)
                if (key_descs[i].type == t)
                        return &key_descs[i];
        return NULL;
}

int vg_ca_key_type_parse(const char *s, enum vg_ca_key_type *out, struct vg_error *err)
{
        static const struct {
                const char *alias;
                enum vg_ca_key_type type;
        } aliases[] = {
                { "rsa", VG_CA_KEY_RSA2048 },
                { "rsa:2048", VG_CA_KEY_RSA2048 },
                { "rsa:3072", VG_CA_KEY_RSA3072 },
                { "rsa:4096", VG_CA_KEY_RSA4096 },
                { "ec", VG_CA_KEY_EC_P256 },
                { "ec:P-256", VG_CA_KEY_EC_P256 },
                { "ec:prime256v1", VG_CA_KEY_EC_P256 },
                { "ec:secp256r1", VG_CA_KEY_EC_P256 },
                { "ec:P-384", VG_CA_KEY_EC_P384 },
                { "ec:secp384r1", VG_CA_KEY_EC_P384 },
        };

        for (size_t i = 0; s && i < VG_ARRAY_SIZE(aliases); i++)
                if (strcasecmp(s, aliases[i].alias) == 0) {
                        *out = aliases[i].type;
                        return 0;
                }
        return vg_error_set(err, -EINVAL,
                            "expected a key type rsa:2048, rsa:3072, rsa:4096, ec:P-256 or "
                            "ec:P-384, found '%s'",
                            s ? s : "");
}

const char *vg_ca_key_type_name(enum vg_ca_key_type t)
{
        const struct key_desc *d = key_desc_of(t == VG_CA_KEY_AUTO ? VG_CA_KEY_RSA2048 : t);

        return d ? d->name : "unknown";
}

/* The enum for an existing key, or AUTO when it is none of ours (an Ed25519 CA, RSA-1024). */
static enum vg_ca_key_type key_type_of(const EVP_PKEY *key)
{
        char group[64];
        bool rsa = EVP_PKEY_is_a(key, "RSA");

        if (!rsa && (!EVP_PKEY_is_a(key, "EC") ||
                     !EVP_PKEY_get_group_name(key, group, sizeof(group), NULL)))
                return VG_CA_KEY_AUTO;
        for (size_t i = 0; i < VG_ARRAY_SIZE(key_descs); i++) {
                const struct key_desc *d = &key_descs[i];

                if (rsa && d->rsa && (int)d->bits == EVP_PKEY_get_bits(key))
                        return d->type;
                if (!rsa && !d->rsa && strcmp(d->group, group) == 0)
                        return d->type;
        }
        return VG_CA_KEY_AUTO;
}

static void key_describe(const EVP_PKEY *key, char *buf, size_t len)
{
        enum vg_ca_key_type t = key ? key_type_of(key) : VG_CA_KEY_AUTO;
        char group[64];

        if (!key)
                snprintf(buf, len, "none");
        else if (t != VG_CA_KEY_AUTO)
                snprintf(buf, len, "%s", vg_ca_key_type_name(t));
        else if (EVP_PKEY_is_a(key, "RSA"))
                snprintf(buf, len, "rsa:%d", EVP_PKEY_get_bits(key));
        else if (EVP_PKEY_is_a(key, "EC") &&
                 EVP_PKEY_get_group_name(key, group, sizeof(group), NULL))
                snprintf(buf, len, "ec:%s", group);
        else
                snprintf(buf, len, "%s", EVP_PKEY_get0_type_name(key) ?: "unknown");
}

static int key_generate(enum vg_ca_key_type t, EVP_PKEY **out, struct vg_error *err)
{
        const struct key_desc *d = key_desc_of(t);
        EVP_PKEY *key;

        if (!d)
                return vg_error_set(err, -EINVAL, "expected a key type, found %d", (int)t);
        key = d->rsa ? EVP_RSA_gen(d->bits) : EVP_EC_gen(d->group);
        if (!key)
                return ossl_err(err, -EIO, "cannot generate a %s key", d->name);
        *out = key;
        return 0;
}

/* The digest to sign with: SHA-256 except where the key is stronger than that; none for the
 * EdDSA keys, which hash internally. */
static const EVP_MD *sign_md(const EVP_PKEY *key)
{
        if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448"))
                return NULL;
        if (EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_bits(key) > 384)
                return EVP_sha512();
        if (EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_bits(key) > 256)
                return EVP_sha384();
        return EVP_sha256();
}

/* --- names and SANs --------------------------------------------------------------------- */

static bool is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 1123 host names, plus a leading "*." wildcard label. */
static bool dns_name_ok(const char *s)
{
        size_t label = 0;
        char prev = '.';

        if (strlen(s) > 253)
                return false;
        if (strncmp(s, "*.", 2) == 0)
                s += 2;
        for (; *s; prev = *s++) {
                if (*s == '.') {
                        if (label == 0 || prev == '-')
                                return false;
                        label = 0;
                } else if (is_alnum(*s) || (*s == '-' && label > 0)) {
                        if (++label > 63)
                                return false;
                } else {
                        return false;
                }
        }
        return label > 0 && prev != '-';
}

static bool ip_ok(const char *s)
{
        unsigned char buf[16];

        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Split a SAN spec into its kind and value; *value points into spec. */
static int san_classify(const char *spec, bool *is_ip, const char **value, struct vg_error *err)
{
        const char *colon = strchr(spec, ':');

        if (strncasecmp(spec, "IP:", 3) == 0) {
                *is_ip = true;
                *value = spec + 3;
                if (!ip_ok(*value))
                        return vg_error_set(err, -EINVAL,
                                            "subjectAltName '%s': expected an IPv4 or IPv6 "
                                            "address after IP:, found '%s'",
                                            spec, *value);
                return 0;
        }
        if (strncasecmp(spec, "DNS:", 4) == 0) {
                *is_ip = false;
                *value = spec + 4;
                if (!dns_name_ok(*value))
                        return vg_error_set(err, -EINVAL,
                                            "subjectAltName '%s': expected a host name after "
                                            "DNS: (letters, digits, '-' and '.'), found '%s'",
                                            spec, *value);
                return 0;
        }
        *value = spec;
        *is_ip = ip_ok(spec);
        if (*is_ip || (!colon && dns_name_ok(spec)))
                return 0;
        if (colon)
                return vg_error_set(err, -EINVAL,
                                    "subjectAltName '%s': expected IP:ADDRESS or DNS:NAME, "
                                    "found the type '%.*s'",
                                    spec, (int)(colon - spec), spec);
        return vg_error_set(err, -EINVAL,
                            "subjectAltName '%s': expected IP:ADDRESS, DNS:NAME, an address or "
                            "a host name",
                            spec);
}

int vg_ca_san_validate(const char *spec, struct vg_error *err)
{
        const char *value;
        bool is_ip;

        if (!spec || !*spec)
                return vg_error_set(err, -EINVAL,
                                    "expected a subjectAltName (IP:ADDRESS or DNS:NAME), found "
                                    "an empty string");
        return san_classify(spec, &is_ip, &value, err);
}

static int san_push(GENERAL_NAMES *gens, const char *spec, struct vg_error *err)
{
        _cleanup_(GENERAL_NAME_freep) GENERAL_NAME *gen = GENERAL_NAME_new();
        const char *value;
        bool is_ip;
        int r;

        r = vg_ca_san_validate(spec, err);
        if (r < 0)
                return r;
        san_classify(spec, &is_ip, &value, NULL);
        if (!gen)
                return -ENOMEM;
        if (is_ip) {
                ASN1_OCTET_STRING *ip = a2i_IPADDRESS(value);

                if (!ip)
                        return ossl_err(err, -EINVAL, "subjectAltName '%s': bad address", spec);
                GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
        } else {
                _cleanup_(ASN1_IA5STRING_freep) ASN1_IA5STRING *dns = ASN1_IA5STRING_new();

                if (!dns || !ASN1_STRING_set(dns, value, -1))
                        return -ENOMEM;
                GENERAL_NAME_set0_value(gen, GEN_DNS, TAKE_PTR(dns));
        }
        if (!sk_GENERAL_NAME_push(gens, gen))
                return -ENOMEM;
        gen = NULL; /* the stack owns it now */
        return 0;
}

/* A server is reached as 127.0.0.1, ::1, localhost or by this host's name. */
static int push_default_server_sans(GENERAL_NAMES *gens, struct vg_error *err)
{
        static const char *const fixed[] = { "IP:127.0.0.1", "IP:::1", "DNS:localhost" };
        char host[256] = "";
        int r;

        for (size_t i = 0; i < VG_ARRAY_SIZE(fixed); i++) {
                r = san_push(gens, fixed[i], err);
                if (r < 0)
                        return r;
        }
        if (gethostname(host, sizeof(host) - 1) == 0 && dns_name_ok(host) &&
            strcasecmp(host, "localhost") != 0) {
                char spec[sizeof(host) + 4];

                snprintf(spec, sizeof(spec), "DNS:%s", host);
                return san_push(gens, spec, err);
        }
        return 0;
}

int vg_ca_name_validate(const char *name, struct vg_error *err)
{
        size_t len = name ? strlen(name) : 0;

        if (len == 0 || len > 64)
                return vg_error_set(err, -EINVAL,
                                    "expected a certificate name of 1 to 64 characters, found "
                                    "%zu characters",
                                    len);
        if (name[0] == '.' || name[0] == '-')
                return vg_error_set(err, -EINVAL,
                                    "certificate name '%s': expected a letter or digit first, "
                                    "found '%c'",
                                    name, name[0]);
        for (size_t i = 0; i < len; i++)
                if (!is_alnum(name[i]) && !strchr("._-", name[i]))
                        return vg_error_set(err, -EINVAL,
                                            "certificate name '%s': expected letters, digits, "
                                            "'.', '_' or '-', found '%c'",
                                            name, name[i]);
        if (strcmp(name, "ca") == 0)
                return vg_error_set(err, -EINVAL,
                                    "certificate name 'ca' is reserved: its key file would be "
                                    "the CA's own " VG_CA_KEY_FILE);
        return 0;
}

static int cn_validate(const char *cn, struct vg_error *err)
{
        size_t len = cn ? strlen(cn) : 0;

        if (len == 0 || len > CN_MAX)
                return vg_error_set(err, -EINVAL,
                                    "expected a common name of 1 to %d characters, found %zu",
                                    CN_MAX, len);
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)cn[i] < 0x20 || cn[i] == 0x7f)
                        return vg_error_set(err, -EINVAL,
                                            "common name: expected printable characters, found "
                                            "the control character 0x%02x",
                                            (unsigned char)cn[i]);
        return 0;
}

static int days_validate(unsigned days, struct vg_error *err)
{
        if (days > VG_CA_MAX_DAYS)
                return vg_error_set(err, -EINVAL,
                                    "expected a lifetime of 1 to %u days, found %u days",
                                    VG_CA_MAX_DAYS, days);
        return 0;
}

static void validity(time_t not_before, unsigned days, unsigned default_days, time_t *nb,
                     time_t *na)
{
        time_t start = not_before ? not_before : time(NULL);

        *nb = not_before ? not_before : start - CLOCK_SKEW_SECONDS;
        *na = start + (time_t)(days ? days : default_days) * DAY_SECONDS;
}

/* --- certificates ----------------------------------------------------------------------- */

/* RFC 5280 4.1.2.2: positive, at most 20 octets; random so that serials never repeat across
 * CAs and are not predictable. 159 bits keep the DER encoding within 20 octets. */
static int set_random_serial(X509 *x)
{
        _cleanup_(BN_freep) BIGNUM *bn = BN_new();

        if (!bn)
                return -ENOMEM;
        do {
                if (!BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY))
                        return -EIO;
        } while (BN_is_zero(bn));
        return BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ? 0 : -ENOMEM;
}

static int cert_skeleton(const char *cn, EVP_PKEY *key, const X509_NAME *issuer, time_t nb,
                         time_t na, X509 **out, struct vg_error *err)
{
        _cleanup_(X509_freep) X509 *x = X509_new();
        _cleanup_(X509_NAME_freep) X509_NAME *subject = X509_NAME_new();

        if (!x || !subject)
                return -ENOMEM;
        if (!X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                        -1, 0))
                return ossl_err(err, -EINVAL, "common name '%s' is not usable", cn);
        if (!X509_set_version(x, X509_VERSION_3) || set_random_serial(x) < 0 ||
            !X509_set_subject_name(x, subject) || !X509_set_issuer_name(x, issuer ?: subject) ||
            !ASN1_TIME_set(X509_getm_notBefore(x), nb) ||
            !ASN1_TIME_set(X509_getm_notAfter(x), na) || !X509_set_pubkey(x, key))
                return ossl_err(err, -EIO, "cannot build the certificate for '%s'", cn);
        *out = TAKE_PTR(x);
        return 0;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value, struct vg_error *err)
{
        _cleanup_(X509_EXTENSION_freep) X509_EXTENSION *ext = NULL;
        X509V3_CTX ctx;

        X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
        ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
        if (!ext || !X509_add_ext(x, ext, -1))
                return ossl_err(err, -EIO, "cannot add the %s extension", OBJ_nid2sn(nid));
        return 0;
}

/* RFC 5280 5.2.1 and 5.2.3: a v2 CRL names its CA by key identifier and carries a number. */
static int crl_new(X509 *ca_cert, EVP_PKEY *ca_key, X509_CRL **out, struct vg_error *err)
{
        _cleanup_(X509_CRL_freep) X509_CRL *crl = X509_CRL_new();
        _cleanup_(ASN1_TIME_freep) ASN1_TIME *now =
            ASN1_TIME_set(NULL, time(NULL) - CLOCK_SKEW_SECONDS);
        _cleanup_(ASN1_INTEGER_freep) ASN1_INTEGER *number = ASN1_INTEGER_new();
        _cleanup_(X509_EXTENSION_freep) X509_EXTENSION *aki = NULL;
        X509V3_CTX ctx;

        if (!crl || !now || !number)
                return -ENOMEM;
        X509V3_set_ctx(&ctx, ca_cert, NULL, NULL, crl, 0);
        aki = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        /* Nothing refreshes the CRL yet, so it stays current for as long as the CA does. */
        if (!aki || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
            !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca_cert)) ||
            !X509_CRL_set1_lastUpdate(crl, now) ||
            !X509_CRL_set1_nextUpdate(crl, X509_get0_notAfter(ca_cert)) ||
            !ASN1_INTEGER_set(number, 1) ||
            !X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0) ||
            !X509_CRL_add_ext(crl, aki, -1) || !X509_CRL_sort(crl) ||
            !X509_CRL_sign(crl, ca_key, sign_md(ca_key)))
                return ossl_err(err, -EIO, "cannot build the CA's CRL");
        *out = TAKE_PTR(crl);
        return 0;
}

void vg_ca_free(struct vg_ca *ca)
{
        if (!ca)
                return;
        X509_free(ca->cert);
        EVP_PKEY_free(ca->key);
        X509_CRL_free(ca->crl);
        free(ca);
}

void vg_ca_issued_free(struct vg_ca_issued *c)
{
        if (!c)
                return;
        X509_free(c->cert);
        EVP_PKEY_free(c->key);
        free(c);
}

int vg_ca_new(const struct vg_ca_params *p, struct vg_ca **out, struct vg_error *err)
{
        static const struct vg_ca_params defaults;
        _cleanup_(vg_ca_freep) struct vg_ca *ca = NULL;
        const char *cn;
        time_t nb, na;
        int r;

        p = p ?: &defaults;
        cn = p->cn ?: VG_CA_DEFAULT_CN;
        r = cn_validate(cn, err);
        if (r >= 0)
                r = days_validate(p->days, err);
        if (r < 0)
                return r;
        ca = calloc(1, sizeof(*ca));
        if (!ca)
                return -ENOMEM;
        r = key_generate(p->key_type ?: VG_CA_KEY_RSA2048, &ca->key, err);
        if (r < 0)
                return r;
        validity(p->not_before, p->days, VG_CA_DEFAULT_CA_DAYS, &nb, &na);
        r = cert_skeleton(cn, ca->key, NULL, nb, na, &ca->cert, err);
        if (r < 0)
                return r;
        /* pathlen:0: this CA signs daemons' and admins' certificates, never another CA. The
         * subject key identifier goes first: the authority key identifier copies it. */
        if ((r = add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0",
                         err)) < 0 ||
            (r = add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign", err)) <
                0 ||
            (r = add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash", err)) < 0 ||
            (r = add_ext(ca->cert, ca->cert, NID_authority_key_identifier, "keyid:always", err)) <
                0)
                return r;
        if (!X509_sign(ca->cert, ca->key, sign_md(ca->key)))
                return ossl_err(err, -EIO, "cannot sign the CA certificate");
        r = crl_new(ca->cert, ca->key, &ca->crl, err);
        if (r < 0)
                return r;
        *out = TAKE_PTR(ca);
        return 0;
}

int vg_ca_issue(const struct vg_ca *ca, const struct vg_ca_issue_params *p,
                struct vg_ca_issued **out, struct vg_error *err)
{
        _cleanup_(vg_ca_issued_freep) struct vg_ca_issued *c = NULL;
        _cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *gens = GENERAL_NAMES_new();
        enum vg_ca_key_type kt;
        time_t nb, na, ca_na;
        char when[32];
        bool server = p->usage == VG_CA_SERVER;
        int r;

        r = cn_validate(p->cn, err);
        if (r >= 0)
                r = days_validate(p->days, err);
        if (r < 0)
                return r;
        if (!gens)
                return -ENOMEM;
        if (p->sans) {
                for (const char *const *s = p->sans; *s; s++)
                        if ((r = san_push(gens, *s, err)) < 0)
                                return r;
        } else if (server) {
                r = push_default_server_sans(gens, err);
                if (r < 0)
                        return r;
        }

        /* A certificate that outlives its CA would only fail later, and more confusingly. */
        validity(p->not_before, p->days, VG_CA_DEFAULT_CERT_DAYS, &nb, &na);
        if (asn1_to_time(X509_get0_notAfter(ca->cert), &ca_na) < 0)
                return vg_error_set(err, -EINVAL, "the CA certificate has an unreadable notAfter");
        if (na > ca_na)
                na = ca_na;
        if (nb >= na)
                return vg_error_set(err, -EKEYEXPIRED,
                                    "the CA expires on %s; expected it to outlive the new "
                                    "certificate's start",
                                    fmt_time(ca_na, when));

        kt = p->key_type ?: key_type_of(ca->key) ?: VG_CA_KEY_RSA2048;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = key_generate(kt, &c->key, err);
        if (r < 0)
                return r;
        r = cert_skeleton(p->cn, c->key, X509_get_subject_name(ca->cert), nb, na, &c->cert, err);
        if (r < 0)
                return r;
        /* keyEncipherment only where TLS 1.2's RSA key transport could use it. */
        if ((r = add_ext(c->cert, ca->cert, NID_basic_constraints, "critical,CA:FALSE", err)) < 0 ||
            (r = add_ext(c->cert, ca->cert, NID_key_usage,
                         EVP_PKEY_is_a(c->key, "RSA") ? "critical,digitalSignature,keyEncipherment"
                                                      : "critical,digitalSignature",
                         err)) < 0 ||
            (r = add_ext(c->cert, ca->cert, NID_ext_key_usage, server ? "serverAuth" : "clientAuth",
                         err)) < 0 ||
            (r = add_ext(c->cert, ca->cert, NID_subject_key_identifier, "hash", err)) < 0 ||
            (r = add_ext(c->cert, ca->cert, NID_authority_key_identifier, "keyid:always", err)) < 0)
                return r;
        if (sk_GENERAL_NAME_num(gens) > 0 &&
            X509_add1_ext_i2d(c->cert, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
                return ossl_err(err, -EIO, "cannot add the subjectAltName extension");
        if (!X509_sign(c->cert, ca->key, sign_md(ca->key)))
                return ossl_err(err, -EIO, "cannot sign the certificate for '%s'", p->cn);
        *out = TAKE_PTR(c);
        return 0;
}

/* --- reading ---------------------------------------------------------------------------- */

static int read_small_file(const char *path, struct vg_secret *out, struct vg_error *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        size_t n = 0;

        if (fd < 0 || fstat(fd, &st) < 0)
                return vg_error_set(err, -errno, "%s: cannot read: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return vg_error_set(err, -EINVAL, "%s: expected a regular file, found %s", path,
                                    S_ISDIR(st.st_mode) ? "a directory" : "a special file");
        if (st.st_size > MAX_PEM_FILE)
                return vg_error_set(err, -EFBIG, "%s: expected at most %d bytes, found %lld", path,
                                    MAX_PEM_FILE, (long long)st.st_size);
        out->p = malloc((size_t)st.st_size + 1);
        if (!out->p)
                return -ENOMEM;
        out->len = (size_t)st.st_size + 1;
        while (n < (size_t)st.st_size) {
                ssize_t got = read(fd, out->p + n, (size_t)st.st_size - n);

                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        return vg_error_set(err, -errno, "%s: cannot read: %s", path,
                                            strerror(errno));
                if (got == 0)
                        break;
                n += (size_t)got;
        }
        out->p[n] = '\0';
        /* len stays the allocation size so that vg_secret_free wipes all of it. */
        return (int)n;
}

static int load_cert(const char *path, X509 **out, struct vg_error *err)
{
        _cleanup_secret_ struct vg_secret data = { 0 };
        _cleanup_(BIO_freep) BIO *bio = NULL;
        int n;

        n = read_small_file(path, &data, err);
        if (n < 0)
                return n;
        bio = BIO_new_mem_buf(data.p, n);
        if (!bio)
                return -ENOMEM;
        *out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (!*out)
                return ossl_err(err, -EBADMSG,
                                "%s: expected a PEM certificate, found something else", path);
        return 0;
}

struct password_ctx {
        const char *password;
        bool asked; /* the key is encrypted */
};

/* Never prompt: the CA is used from daemons and scripts, which have no terminal. */
static int password_cb(char *buf, int size, int rwflag, void *u)
{
        struct password_ctx *pc = u;
        size_t len;

        (void)rwflag;
        pc->asked = true;
        if (!pc->password)
                return -1;
        len = strlen(pc->password);
        if (len > (size_t)size)
                return -1;
        memcpy(buf, pc->password, len);
        return (int)len;
}

static int load_key(const char *path, const char *password, EVP_PKEY **out, struct vg_error *err)
{
        _cleanup_secret_ struct vg_secret data = { 0 };
        _cleanup_(BIO_freep) BIO *bio = NULL;
        struct password_ctx pc = { .password = password };
        int n;

        n = read_small_file(path, &data, err);
        if (n < 0)
                return n;
        bio = BIO_new_mem_buf(data.p, n);
        if (!bio)
                return -ENOMEM;
        *out = PEM_read_bio_PrivateKey(bio, NULL, password_cb, &pc);
        if (*out)
                return 0;
        if (pc.asked && !password)
                return ossl_err(err, -EACCES,
                                "%s: the key is encrypted; expected a password, found none", path);
        if (pc.asked)
                return ossl_err(err, -EACCES, "%s: cannot decrypt the key: wrong password", path);
        return ossl_err(err, -EBADMSG, "%s: expected a PEM private key, found something else",
                        path);
}

static int join_path(char *buf, size_t len, const char *dir, const char *name, struct vg_error *err)
{
        int n = snprintf(buf, len, "%s/%s", dir, name);

        if (n < 0 || (size_t)n >= len)
                return vg_error_set(err, -ENAMETOOLONG, "%s/%s: path too long", dir, name);
        return 0;
}

/* Say "no CA here" rather than "cannot read DIR/cacert.crt" for the common mistake. */
static int ca_dir_check(const char *dir, struct vg_error *err)
{
        char path[PATH_MAX];
        struct stat st;

        if (stat(dir, &st) < 0)
                return vg_error_set(err, -errno, "%s: expected a CA directory, found %s", dir,
                                    errno == ENOENT ? "nothing" : strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return vg_error_set(err, -ENOTDIR, "%s: expected a CA directory, found a file",
                                    dir);
        if (join_path(path, sizeof(path), dir, VG_CA_CERT_FILE, err) < 0)
                return -ENAMETOOLONG;
        if (access(path, F_OK) < 0 && errno == ENOENT)
                return vg_error_set(err, -ENOENT,
                                    "%s: expected a CA directory holding " VG_CA_CERT_FILE
                                    ", found no " VG_CA_CERT_FILE,
                                    dir);
        return 0;
}

int vg_ca_load(const char *dir, const char *password, struct vg_ca **out, struct vg_error *err)
{
        _cleanup_(vg_ca_freep) struct vg_ca *ca = calloc(1, sizeof(*ca));
        char cert_path[PATH_MAX], key_path[PATH_MAX], a[80], b[80], subject[256];
        time_t now = time(NULL), t = 0;
        uint32_t flags;
        int r;

        if (!ca)
                return -ENOMEM;
        if ((r = join_path(cert_path, sizeof(cert_path), dir, VG_CA_CERT_FILE, err)) < 0 ||
            (r = join_path(key_path, sizeof(key_path), dir, VG_CA_KEY_FILE, err)) < 0 ||
            (r = ca_dir_check(dir, err)) < 0 || (r = load_cert(cert_path, &ca->cert, err)) < 0 ||
            (r = load_key(key_path, password, &ca->key, err)) < 0)
                return r;

        X509_NAME_oneline(X509_get_subject_name(ca->cert), subject, sizeof(subject));
        flags = X509_get_extension_flags(ca->cert);
        if (!(flags & EXFLAG_CA))
                return vg_error_set(err, -EINVAL,
                                    "%s: expected a CA certificate (basicConstraints CA:TRUE), "
                                    "found an end-entity certificate for %s",
                                    cert_path, subject);
        if ((flags & EXFLAG_KUSAGE) && !(X509_get_key_usage(ca->cert) & KU_KEY_CERT_SIGN))
                return vg_error_set(err, -EINVAL,
                                    "%s: expected a CA certificate whose keyUsage allows "
                                    "keyCertSign, found one without it",
                                    cert_path);
        if (EVP_PKEY_eq(X509_get0_pubkey(ca->cert), ca->key) != 1) {
                key_describe(X509_get0_pubkey(ca->cert), a, sizeof(a));
                key_describe(ca->key, b, sizeof(b));
                ERR_clear_error();
                return vg_error_set(err, -EINVAL,
                                    "%s does not match %s: expected the private half of the "
                                    "certificate's %s key, found a different %s key",
                                    key_path, cert_path, a, b);
        }
        if (asn1_to_time(X509_get0_notAfter(ca->cert), &t) < 0 || t < now)
                return vg_error_set(err, -EKEYEXPIRED,
                                    "%s: the CA expired on %s; expected a CA valid now (%s)",
                                    cert_path, fmt_time(t, a), fmt_time(now, b));
        if (asn1_to_time(X509_get0_notBefore(ca->cert), &t) < 0 || t > now)
                return vg_error_set(err, -EKEYEXPIRED,
                                    "%s: the CA is not valid before %s; expected a CA valid now "
                                    "(%s)",
                                    cert_path, fmt_time(t, a), fmt_time(now, b));
        *out = TAKE_PTR(ca);
        return 0;
}

/* --- writing ---------------------------------------------------------------------------- */

#define STAGE_MAX 8

/* Files written under temporary names and moved into place together by stage_commit(), so a
 * failure part-way leaves the directory as it was (without force, also against a concurrent
 * writer: the final step is link(), which never replaces a file). */
struct stage {
        const char *dir;
        int dirfd;
        bool force;
        size_t n;
        struct {
                char tmp[NAME_MAX + 1]; /* empty once moved into place */
                char dst[NAME_MAX + 1];
        } f[STAGE_MAX];
};

static void stage_release(struct stage *st)
{
        for (size_t i = 0; i < st->n; i++)
                if (st->f[i].tmp[0])
                        unlinkat(st->dirfd, st->f[i].tmp, 0);
        if (st->dirfd >= 0)
                close(st->dirfd);
        st->dirfd = -1;
}

static int stage_open(struct stage *st, const char *dir, bool force, struct vg_error *err)
{
        st->dir = dir;
        st->force = force;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                int e = errno;

                if (e == ENOENT)
                        return vg_error_set(err, -e,
                                            "%s: cannot create the directory: expected its "
                                            "parent directory to exist, found none",
                                            dir);
                return vg_error_set(err, -e, "%s: cannot create the directory: %s", dir,
                                    strerror(e));
        }
        st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (st->dirfd < 0 && errno == ENOTDIR)
                return vg_error_set(err, -ENOTDIR, "%s: expected a directory, found a file", dir);
        if (st->dirfd < 0)
                return vg_error_set(err, -errno, "%s: cannot open the directory: %s", dir,
                                    strerror(errno));
        return 0;
}

static int stage_check_absent(struct stage *st, const char *name, struct vg_error *err)
{
        struct stat sb;

        if (st->force)
                return 0;
        if (fstatat(st->dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
                return vg_error_set(err, -EEXIST, "%s/%s already exists; refusing to overwrite it",
                                    st->dir, name);
        if (errno != ENOENT)
                return vg_error_set(err, -errno, "%s/%s: %s", st->dir, name, strerror(errno));
        return 0;
}

static int stage_add(struct stage *st, const char *name, const void *data, size_t len, mode_t mode,
                     struct vg_error *err)
{
        _cleanup_close_ int fd = -1;
        unsigned char rnd[8];
        const char *p = data;
        int r;

        if (st->n == STAGE_MAX)
                return -E2BIG;
        r = stage_check_absent(st, name, err);
        if (r < 0)
                return r;
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
                return ossl_err(err, -EIO, "no random bytes for a temporary file name");
        if (snprintf(st->f[st->n].dst, NAME_MAX + 1, "%s", name) > NAME_MAX ||
            snprintf(st->f[st->n].tmp, NAME_MAX + 1, ".%s.%02x%02x%02x%02x%02x%02x%02x%02x", name,
                     rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]) > NAME_MAX)
                return vg_error_set(err, -ENAMETOOLONG, "%s/%s: name too long", st->dir, name);
        /* 0600 from the start: a key is never readable by others, not even for a moment. */
        fd = openat(st->dirfd, st->f[st->n].tmp,
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return vg_error_set(err, -errno, "%s: cannot create a file: %s", st->dir,
                                    strerror(errno));
        st->n++;
        while (len > 0) {
                ssize_t w = write(fd, p, len);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return vg_error_set(err, -errno, "%s/%s: cannot write: %s", st->dir, name,
                                            strerror(errno));
                p += w;
                len -= (size_t)w;
        }
        /* fchmod, not the umask: certificates must be readable by the daemons' users. */
        if (fchmod(fd, mode) < 0 || fsync(fd) < 0)
                return vg_error_set(err, -errno, "%s/%s: cannot write: %s", st->dir, name,
                                    strerror(errno));
        return 0;
}

static int stage_add_bio(struct stage *st, const char *name, BIO *bio, mode_t mode,
                         struct vg_error *err)
{
        char *p;
        long len = BIO_get_mem_data(bio, &p);

        if (len <= 0)
                return ossl_err(err, -EIO, "%s/%s: nothing to write", st->dir, name);
        return stage_add(st, name, p, (size_t)len, mode, err);
}

static int stage_key(struct stage *st, const char *name, EVP_PKEY *key, const char *password,
                     struct vg_error *err)
{
        /* Secure-heap BIO: its buffer is wiped when freed. */
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_secmem());

        if (!bio)
                return -ENOMEM;
        if (password && !*password)
                return vg_error_set(err, -EINVAL,
                                    "%s/%s: expected a non-empty password, found an empty one",
                                    st->dir, name);
        /* With a password: PKCS#8 with PBES2 (AES-256-CBC), which OpenSSL, Python and
         * rust-keylime all read. */
        if (!PEM_write_bio_PrivateKey(bio, key, password ? EVP_aes_256_cbc() : NULL,
                                      (const unsigned char *)password,
                                      password ? (int)strlen(password) : 0, NULL, NULL))
                return ossl_err(err, -EIO, "%s/%s: cannot encode the key", st->dir, name);
        return stage_add_bio(st, name, bio, 0600, err);
}

static int stage_cert(struct stage *st, const char *name, X509 *cert, struct vg_error *err)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());

        if (!bio)
                return -ENOMEM;
        if (!PEM_write_bio_X509(bio, cert))
                return ossl_err(err, -EIO, "%s/%s: cannot encode the certificate", st->dir, name);
        return stage_add_bio(st, name, bio, 0644, err);
}

static int stage_crl(struct stage *st, const char *name, X509_CRL *crl, struct vg_error *err)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());

        if (!bio)
                return -ENOMEM;
        if (!PEM_write_bio_X509_CRL(bio, crl))
                return ossl_err(err, -EIO, "%s/%s: cannot encode the CRL", st->dir, name);
        return stage_add_bio(st, name, bio, 0644, err);
}

static int stage_commit(struct stage *st, struct vg_error *err)
{
        for (size_t i = 0; i < st->n; i++) {
                const char *tmp = st->f[i].tmp, *dst = st->f[i].dst;
                int r = 0;

                if (st->force) {
                        r = renameat(st->dirfd, tmp, st->dirfd, dst);
                } else {
                        r = linkat(st->dirfd, tmp, st->dirfd, dst, 0);
                        /* Some file systems have no hard links; fall back to checking first. */
                        if (r < 0 && (errno == EPERM || errno == EOPNOTSUPP)) {
                                r = stage_check_absent(st, dst, err);
                                if (r < 0) {
                                        errno = -r;
                                        r = -1;
                                } else {
                                        r = renameat(st->dirfd, tmp, st->dirfd, dst);
                                }
                        } else if (r == 0) {
                                unlinkat(st->dirfd, tmp, 0);
                        }
                }
                if (r < 0) {
                        int e = errno;

                        /* Without force the files moved so far are new: take them back. */
                        for (size_t j = 0; !st->force && j < i; j++)
                                unlinkat(st->dirfd, st->f[j].dst, 0);
                        if (e == EEXIST)
                                return vg_error_set(err, -EEXIST,
                                                    "%s/%s already exists; refusing to "
                                                    "overwrite it",
                                                    st->dir, dst);
                        return vg_error_set(err, -e, "%s/%s: cannot move into place: %s", st->dir,
                                            dst, strerror(e));
                }
                st->f[i].tmp[0] = '\0';
        }
        /* The renames are durable once the directory is. */
        if (fsync(st->dirfd) < 0)
                return vg_error_set(err, -errno, "%s: cannot sync the directory: %s", st->dir,
                                    strerror(errno));
        return 0;
}

static int stage_ca(struct stage *st, const struct vg_ca *ca, const char *password,
                    struct vg_error *err)
{
        int r;

        if ((r = stage_key(st, VG_CA_KEY_FILE, ca->key, password, err)) < 0 ||
            (r = stage_cert(st, VG_CA_CERT_FILE, ca->cert, err)) < 0)
                return r;
        return ca->crl ? stage_crl(st, VG_CA_CRL_FILE, ca->crl, err) : 0;
}

static int stage_issued(struct stage *st, const struct vg_ca_issued *c, const char *name,
                        const char *password, struct vg_error *err)
{
        char key_name[NAME_MAX + 1], cert_name[NAME_MAX + 1];
        int r;

        r = vg_ca_name_validate(name, err);
        if (r < 0)
                return r;
        snprintf(key_name, sizeof(key_name), "%s" VG_CA_KEY_SUFFIX, name);
        snprintf(cert_name, sizeof(cert_name), "%s" VG_CA_CERT_SUFFIX, name);
        /* The key goes into place first, but an existing certificate is what a user knows. */
        r = stage_check_absent(st, cert_name, err);
        if (r >= 0)
                r = stage_key(st, key_name, c->key, password, err);
        if (r < 0)
                return r;
        return stage_cert(st, cert_name, c->cert, err);
}

int vg_ca_save(const struct vg_ca *ca, const char *dir, const struct vg_ca_save_opts *o,
               struct vg_error *err)
{
        _cleanup_(stage_release) struct stage st = { .dirfd = -1 };
        int r;

        if ((r = stage_open(&st, dir, o && o->force, err)) < 0 ||
            (r = stage_ca(&st, ca, o ? o->password : NULL, err)) < 0)
                return r;
        return stage_commit(&st, err);
}

int vg_ca_issued_save(const struct vg_ca_issued *c, const char *dir, const char *name,
                      const struct vg_ca_save_opts *o, struct vg_error *err)
{
        _cleanup_(stage_release) struct stage st = { .dirfd = -1 };
        int r;

        if ((r = stage_open(&st, dir, o && o->force, err)) < 0 ||
            (r = stage_issued(&st, c, name, o ? o->password : NULL, err)) < 0)
                return r;
        return stage_commit(&st, err);
}

int vg_ca_init(const char *dir, const struct vg_ca_init_params *p, struct vg_error *err)
{
        static const char *const files[] = {
                VG_CA_CERT_FILE,      VG_CA_KEY_FILE,    VG_CA_CRL_FILE,       "server-cert.crt",
                "server-private.pem", "client-cert.crt", "client-private.pem",
        };
        _cleanup_(stage_release) struct stage st = { .dirfd = -1 };
        _cleanup_(vg_ca_freep) struct vg_ca *ca = NULL;
        _cleanup_(vg_ca_issued_freep) struct vg_ca_issued *server = NULL;
        _cleanup_(vg_ca_issued_freep) struct vg_ca_issued *client = NULL;
        struct vg_ca_params cap = { .key_type = p->key_type, .cn = p->cn, .days = p->days };
        struct vg_ca_issue_params sp = {
                .usage = VG_CA_SERVER,
                .cn = "server",
                .sans = p->server_sans,
                .days = p->cert_days,
        };
        struct vg_ca_issue_params cp = { .usage = VG_CA_CLIENT,
                                         .cn = "client",
                                         .days = p->cert_days };
        int r;

        r = stage_open(&st, dir, p->force, err);
        /* Refuse before spending a second on RSA key generation. */
        for (size_t i = 0; r >= 0 && i < VG_ARRAY_SIZE(files); i++)
                r = stage_check_absent(&st, files[i], err);
        if (r >= 0)
                r = vg_ca_new(&cap, &ca, err);
        if (r >= 0)
                r = vg_ca_issue(ca, &sp, &server, err);
        if (r >= 0)
                r = vg_ca_issue(ca, &cp, &client, err);
        if (r >= 0)
                r = stage_ca(&st, ca, p->password, err);
        if (r >= 0)
                r = stage_issued(&st, server, "server", p->password, err);
        if (r >= 0)
                r = stage_issued(&st, client, "client", p->password, err);
        if (r >= 0)
                r = stage_commit(&st, err);
        return r;
}

/* --- describing ------------------------------------------------------------------------- */

const char *vg_ca_cert_status_name(enum vg_ca_cert_status s)
{
        switch (s) {
        case VG_CA_CERT_OK:
                return "ok";
        case VG_CA_CERT_EXPIRED:
                return "expired";
        case VG_CA_CERT_NOT_YET_VALID:
                return "not yet valid";
        case VG_CA_CERT_FOREIGN:
                return "not issued by this CA";
        case VG_CA_CERT_NOT_A_CA:
                return "not a CA";
        case VG_CA_CERT_UNREADABLE:
                return "unreadable";
        }
        return "unknown";
}

__attribute__((format(printf, 3, 4))) static void append(char *buf, size_t size, const char *fmt,
                                                         ...)
{
        size_t used = strnlen(buf, size);
        va_list ap;

        if (used + 1 >= size)
                return;
        va_start(ap, fmt);
        vsnprintf(buf + used, size - used, fmt, ap);
        va_end(ap);
}

/* Names come from files anyone could have written: keep terminal escapes out of the output. */
static void sanitize(char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        *s = '?';
}

static void name_string(const X509_NAME *name, char *buf, size_t len)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        char *p;
        long n;

        buf[0] = '\0';
        if (!bio || X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
                return;
        n = BIO_get_mem_data(bio, &p);
        snprintf(buf, len, "%.*s", (int)(n > 0 ? n : 0), p);
        sanitize(buf);
}

static void sans_string(X509 *x, char *buf, size_t len)
{
        _cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *gens =
            X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        char ip[INET6_ADDRSTRLEN];

        buf[0] = '\0';
        for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
                const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
                const char *sep = i ? ", " : "";
                const unsigned char *d;
                int n;

                switch (g->type) {
                case GEN_DNS:
                case GEN_URI:
                case GEN_EMAIL:
                        d = ASN1_STRING_get0_data(g->d.ia5);
                        n = ASN1_STRING_length(g->d.ia5);
                        append(buf, len, "%s%s:%.*s", sep,
                               g->type == GEN_DNS   ? "DNS"
                               : g->type == GEN_URI ? "URI"
                                                    : "email",
                               n, (const char *)d);
                        break;
                case GEN_IPADD:
                        d = ASN1_STRING_get0_data(g->d.iPAddress);
                        n = ASN1_STRING_length(g->d.iPAddress);
                        if ((n == 4 && inet_ntop(AF_INET, d, ip, sizeof(ip))) ||
                            (n == 16 && inet_ntop(AF_INET6, d, ip, sizeof(ip))))
                                append(buf, len, "%sIP:%s", sep, ip);
                        else
                                append(buf, len, "%sIP:<%d bytes>", sep, n);
                        break;
                default:
                        append(buf, len, "%s<other name>", sep);
                }
        }
        sanitize(buf);
        ERR_clear_error();
}

/* issuer: the CA that should have signed x (x itself for the CA), or NULL not to check. */
static void cert_info(X509 *x, X509 *issuer, struct vg_ca_cert_info *out)
{
        _cleanup_(BN_freep) BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        char *hex = serial ? BN_bn2hex(serial) : NULL, when[32], want[256];
        time_t now = time(NULL);
        uint32_t flags = X509_get_extension_flags(x), xku;

        memset(out, 0, sizeof(*out));
        name_string(X509_get_subject_name(x), out->subject, sizeof(out->subject));
        name_string(X509_get_issuer_name(x), out->issuer, sizeof(out->issuer));
        /* `openssl x509 -serial` prints whole octets; BN_bn2hex drops a leading zero digit. */
        if (hex)
                snprintf(out->serial, sizeof(out->serial), "%s%s", strlen(hex) % 2 ? "0" : "", hex);
        OPENSSL_free(hex);
        if (X509_digest(x, EVP_sha256(), md, &md_len))
                for (unsigned i = 0; i < md_len; i++)
                        append(out->sha256, sizeof(out->sha256), "%s%02X", i ? ":" : "", md[i]);
        key_describe(X509_get0_pubkey(x), out->key_type, sizeof(out->key_type));
        sans_string(x, out->sans, sizeof(out->sans));
        asn1_to_time(X509_get0_notBefore(x), &out->not_before);
        asn1_to_time(X509_get0_notAfter(x), &out->not_after);
        out->is_ca = flags & EXFLAG_CA;
        xku = X509_get_extended_key_usage(x);
        out->server_auth = (flags & EXFLAG_XKUSAGE) && (xku & XKU_SSL_SERVER);
        out->client_auth = (flags & EXFLAG_XKUSAGE) && (xku & XKU_SSL_CLIENT);

        if (issuer && (X509_check_issued(issuer, x) != X509_V_OK ||
                       X509_verify(x, X509_get0_pubkey(issuer)) != 1)) {
                out->status = VG_CA_CERT_FOREIGN;
                name_string(X509_get_subject_name(issuer), want, sizeof(want));
                snprintf(out->problem, sizeof(out->problem),
                         "expected a certificate signed by %.90s, found one issued by %.90s%s",
                         want, out->issuer, strcmp(want, out->issuer) ? "" : " with another key");
        } else if (out->not_after < now) {
                out->status = VG_CA_CERT_EXPIRED;
                snprintf(out->problem, sizeof(out->problem), "expired on %s",
                         fmt_time(out->not_after, when));
        } else if (out->not_before > now) {
                out->status = VG_CA_CERT_NOT_YET_VALID;
                snprintf(out->problem, sizeof(out->problem), "not valid before %s",
                         fmt_time(out->not_before, when));
        }
        ERR_clear_error();
}

int vg_ca_info(const struct vg_ca *ca, struct vg_ca_cert_info *out)
{
        cert_info(ca->cert, ca->cert, out);
        snprintf(out->name, sizeof(out->name), "ca");
        return 0;
}

int vg_ca_issued_info(const struct vg_ca_issued *c, struct vg_ca_cert_info *out)
{
        cert_info(c->cert, NULL, out);
        return 0;
}

static int info_cmp(const void *a, const void *b)
{
        return strcmp(((const struct vg_ca_cert_info *)a)->name,
                      ((const struct vg_ca_cert_info *)b)->name);
}

static void list_crl(const char *dir, X509 *ca_cert, struct vg_ca_listing *l)
{
        _cleanup_secret_ struct vg_secret data = { 0 };
        _cleanup_(BIO_freep) BIO *bio = NULL;
        _cleanup_(X509_CRL_freep) X509_CRL *crl = NULL;
        struct vg_error e = { 0 };
        char path[PATH_MAX];
        int n;

        if (join_path(path, sizeof(path), dir, VG_CA_CRL_FILE, NULL) < 0 || access(path, F_OK) < 0)
                return;
        l->have_crl = true;
        n = read_small_file(path, &data, &e);
        if (n < 0) {
                snprintf(l->crl_problem, sizeof(l->crl_problem), "%s", vg_error_str(&e));
                return;
        }
        bio = BIO_new_mem_buf(data.p, n);
        crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
        if (!crl) {
                snprintf(l->crl_problem, sizeof(l->crl_problem),
                         "expected a PEM CRL, found something else");
        } else if (X509_CRL_verify(crl, X509_get0_pubkey(ca_cert)) != 1) {
                snprintf(l->crl_problem, sizeof(l->crl_problem),
                         "expected a CRL signed by the CA, found a signature that does not "
                         "verify");
        } else {
                STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);

                l->crl_ok = true;
                l->crl_revoked = revoked ? (size_t)sk_X509_REVOKED_num(revoked) : 0;
                asn1_to_time(X509_CRL_get0_lastUpdate(crl), &l->crl_last_update);
                asn1_to_time(X509_CRL_get0_nextUpdate(crl), &l->crl_next_update);
        }
        ERR_clear_error();
}

int vg_ca_list(const char *dir, struct vg_ca_listing *out, struct vg_error *err)
{
        _cleanup_(vg_ca_listing_clear) struct vg_ca_listing l = { 0 };
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_(X509_freep) X509 *ca_cert = NULL;
        char path[PATH_MAX];
        struct dirent *de;
        size_t cap = 0;
        int r;

        r = ca_dir_check(dir, err);
        if (r < 0)
                return r;
        d = opendir(dir);
        if (!d)
                return vg_error_set(err, -errno, "%s: cannot open the directory: %s", dir,
                                    strerror(errno));
        if ((r = join_path(path, sizeof(path), dir, VG_CA_CERT_FILE, err)) < 0 ||
            (r = load_cert(path, &ca_cert, err)) < 0)
                return r;
        cert_info(ca_cert, ca_cert, &l.ca);
        if (!l.ca.is_ca) {
                l.ca.status = VG_CA_CERT_NOT_A_CA;
                snprintf(l.ca.problem, sizeof(l.ca.problem),
                         "expected a CA certificate (basicConstraints CA:TRUE), found an "
                         "end-entity certificate");
        } else if (l.ca.status == VG_CA_CERT_FOREIGN) {
                snprintf(l.ca.problem, sizeof(l.ca.problem),
                         "expected a self-signed CA certificate, found one issued by %.150s",
                         l.ca.issuer);
        }
        snprintf(l.ca.file, sizeof(l.ca.file), VG_CA_CERT_FILE);
        snprintf(l.ca.name, sizeof(l.ca.name), "ca");

        while ((de = readdir(d))) {
                const size_t suffix = strlen(VG_CA_CERT_SUFFIX);
                size_t len = strlen(de->d_name);
                struct vg_ca_cert_info *info;
                _cleanup_(X509_freep) X509 *x = NULL;
                struct vg_error e = { 0 };
                struct stat st;

                if (de->d_name[0] == '.' || len <= suffix ||
                    strcmp(de->d_name + len - suffix, VG_CA_CERT_SUFFIX) != 0 ||
                    fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (l.n_certs == cap) {
                        struct vg_ca_cert_info *n;

                        cap = cap ? cap * 2 : 8;
                        n = reallocarray(l.certs, cap, sizeof(*n));
                        if (!n)
                                return -ENOMEM;
                        l.certs = n;
                }
                info = &l.certs[l.n_certs++];
                if (join_path(path, sizeof(path), dir, de->d_name, &e) < 0 ||
                    load_cert(path, &x, &e) < 0) {
                        memset(info, 0, sizeof(*info));
                        info->status = VG_CA_CERT_UNREADABLE;
                        snprintf(info->problem, sizeof(info->problem), "%s", vg_error_str(&e));
                } else {
                        cert_info(x, ca_cert, info);
                }
                snprintf(info->file, sizeof(info->file), "%s", de->d_name);
                snprintf(info->name, sizeof(info->name), "%.*s", (int)(len - suffix), de->d_name);
                sanitize(info->file);
                sanitize(info->name);
        }
        if (l.n_certs)
                qsort(l.certs, l.n_certs, sizeof(*l.certs), info_cmp);
        list_crl(dir, ca_cert, &l);
        *out = l;
        memset(&l, 0, sizeof(l));
        return 0;
}

void vg_ca_listing_clear(struct vg_ca_listing *l)
{
        free(l->certs);
        memset(l, 0, sizeof(*l));
}
