/* vigil bench: fleet_sim, a LOAD GENERATOR (never a product path): N simulated Keylime pull
 * agents with software AKs in one libevent loop, enrolled like real ones, timing the verifier. */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "cleanup.h"
#include "credential.h"
#include "encoding.h"
#include "http_client.h"
#include "http_server.h"
#include "log.h"
#include "soft_tpm.h"
#include "tls.h"

#define API_VERSION "2.5"
#define IMA_FILES   16u /* synthetic executables the runtime policy allows */
#define IMA_BASE    4u  /* entries after boot_aggregate in every agent's initial log */
#define NONCE_MAX   64u

enum enrol_state {
        ENROL_NONE,
        ENROL_REGISTER,
        ENROL_ACTIVATE,
        ENROL_VERIFIER,
        ENROL_DONE,
        ENROL_FAILED
};

struct sim;

struct agent {
        struct sim *sim;
        unsigned idx;
        uint16_t port;
        char uuid[37];
        struct sim_key ak;
        X509 *cert; /* self-signed mtls_cert, served on this agent's port only */
        EVP_PKEY *tls_key;
        char *cert_pem;
        struct vg_http_server *srv;
        uint8_t pcr10[32];
        char *ima; /* own IMA list once it grew; NULL: the shared initial list */
        size_t ima_len, ima_cap;
        unsigned ima_entries;
        double ima_debt; /* fractional entries owed by the growth timer */
        uint64_t clock_offset;
        double last_poll; /* monotonic seconds of the previous integrity quote, 0: none */
        uint64_t polls;
        enum enrol_state enrol;
        /* self-check */
        struct vg_clock_info prev_clock;
        bool have_prev;
        SSL_CTX *pin; /* client context pinning this agent's cert */
};

struct opts {
        unsigned agents;
        unsigned base_port;
        const char *registrar, *verifier;
        const char *tls_dir;
        const char *ek_ca_dir;
        const char *report;
        const char *intervals; /* every interval in ms, one a line, for merging shards */
        double duration;
        double ima_rate; /* new IMA entries per agent per second */
        unsigned concurrency;
        unsigned self_check;
        uint32_t policy_mask; /* tpm_policy mask sent to the verifier */
        enum vg_tpm_key_type ak_type;
        bool no_verifier;
        bool ek_ca_only;
};

struct sim {
        struct opts o;
        struct event_base *base;
        struct agent *agents;
        struct sim_key ek;
        char *ekcert_b64;
        char *nk_pem;
        uint8_t pcr[VG_PCR_MAX][32]; /* the shared PCR bank; 10 is per agent */
        char *ima_base;
        size_t ima_base_len;
        uint8_t pcr10_base[32];
        char *policy_b64;
        SSL_CTX *server_tls;
        SSL_CTX *client_tls; /* to the verifier (https) and, in self-check, our client cert */
        struct vg_http_client *client;
        double t_start, t_enrolled, t_measure_end;
        /* enrolment */
        unsigned next, inflight, enrolled, enrol_failed;
        /* measurement */
        bool measuring;
        double *iv; /* intervals in ms */
        size_t n_iv, cap_iv;
        uint64_t requests, failures;
        /* self-check */
        unsigned sc_sent, sc_done, sc_ok, sc_bad;
        struct event *timer, *growth, *sigint, *sigterm, *sigusr1;
        int exit_code;
};

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        fputs("fleet_sim: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        exit(1);
}

/* ---- synthetic IMA ------------------------------------------------------------------------ */

static void ima_file(unsigned k, char *path, size_t size, uint8_t digest[32])
{
        if (k == UINT32_MAX) {
                snprintf(path, size, "boot_aggregate");
                vg_hash(VG_HASH_SHA256, "fleet-sim boot", 14, digest);
                return;
        }
        snprintf(path, size, "/usr/bin/fleet-sim-%02u", k % IMA_FILES);
        vg_hash(VG_HASH_SHA256, path, strlen(path), digest);
}

/* One ima-ng line ("10 <sha1 template hash> ima-ng sha256:<hex> <path>") appended to *text;
 * pcr10 is extended with SHA-256 of the template data as the kernel does for that bank. */
static void ima_append(char **text, size_t *len, size_t *cap, uint8_t pcr10[32], unsigned k)
{
        char path[64], line[256];
        uint8_t digest[32], tdata[512], th1[20], th256[32];
        size_t plen, n = 0;
        uint32_t dlen = 7 + 1 + 32;

        ima_file(k, path, sizeof(path), digest);
        plen = strlen(path) + 1;
        /* ima-ng template data: u32le len, "sha256:\0" digest, u32le len, path\0. */
        memcpy(tdata + n, &dlen, 4), n += 4;
        memcpy(tdata + n, "sha256:", 8), n += 8;
        memcpy(tdata + n, digest, 32), n += 32;
        uint32_t pl = (uint32_t)plen;
        memcpy(tdata + n, &pl, 4), n += 4;
        memcpy(tdata + n, path, plen), n += plen;
        vg_hash(VG_HASH_SHA1, tdata, n, th1);
        vg_hash(VG_HASH_SHA256, tdata, n, th256);
        vg_hash_extend(VG_HASH_SHA256, pcr10, th256);
        _cleanup_free_ char *h1 = vg_hex_encode(th1, 20), *hd = vg_hex_encode(digest, 32);
        int l = snprintf(line, sizeof(line), "10 %s ima-ng sha256:%s %s\n", h1, hd, path);
        if (*len + (size_t)l + 1 > *cap) {
                *cap = (*cap ? *cap * 2 : 1024) + (size_t)l;
                *text = realloc(*text, *cap);
                if (!*text)
                        die("out of memory");
        }
        memcpy(*text + *len, line, (size_t)l + 1);
        *len += (size_t)l;
}

/* The runtime policy (JSON v1, keylime.md §5) allowing boot_aggregate and the synthetic files. */
static char *runtime_policy_b64(void)
{
        json_auto_t *digests = json_object();
        char path[64];
        uint8_t d[32];

        for (unsigned k = 0; k <= IMA_FILES; k++) {
                ima_file(k == IMA_FILES ? UINT32_MAX : k, path, sizeof(path), d);
                _cleanup_free_ char *hex = vg_hex_encode(d, 32);
                json_object_set_new(digests, path, json_pack("[s]", hex));
        }
        json_auto_t *pol = json_pack(
            "{s:{s:i, s:i, s:s}, s:i, s:O, s:[], s:{}, s:{s:[], s:s, s:n}, s:{}, s:s}", "meta",
            "version", 1, "generator", 0, "timestamp", "2026-01-01 00:00:00", "release", 0,
            "digests", digests, "excludes", "keyrings", "ima", "ignored_keyrings", "log_hash_alg",
            "sha1", "dm_policy", "ima-buf", "verification-keys", "");
        _cleanup_free_ char *text = json_dumps(pol, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                die("out of memory");
        return vg_b64_encode(text, strlen(text), VG_B64_STD);
}

/* ---- certificates --------------------------------------------------------------------------- */

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca,
                       long days, const char *san)
{
        X509 *x = X509_new();
        X509V3_CTX v3;
        uint8_t serial[16];
        BIGNUM *bn;

        if (!x)
                die("out of memory");
        X509_set_version(x, 2);
        RAND_bytes(serial, sizeof(serial));
        serial[0] &= 0x7f;
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
        BN_free(bn);
        X509_gmtime_adj(X509_getm_notBefore(x), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
        X509_set_pubkey(x, key);
        X509_NAME *name = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
        X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
        X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
        const char *ext[][2] = {
                { "basicConstraints", ca ? "critical,CA:TRUE" : "critical,CA:FALSE" },
                { "keyUsage", ca ? "critical,keyCertSign,cRLSign"
                                 : (issuer ? "critical,keyEncipherment"
                                           : "critical,digitalSignature,keyEncipherment") },
                { "subjectKeyIdentifier", "hash" },
                { "authorityKeyIdentifier", issuer ? "keyid" : NULL },
                { "subjectAltName", san },
                { "extendedKeyUsage", (!ca && !issuer) ? "serverAuth,clientAuth" : NULL },
        };
        for (size_t i = 0; i < VG_ARRAY_SIZE(ext); i++) {
                if (!ext[i][1])
                        continue;
                X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, ext[i][0], ext[i][1]);
                if (!e)
                        die("certificate extension %s failed", ext[i][0]);
                X509_add_ext(x, e, -1);
                X509_EXTENSION_free(e);
        }
        if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
                die("signing a certificate failed");
        return x;
}

static char *cert_pem(X509 *x)
{
        BIO *b = BIO_new(BIO_s_mem());
        char *p, *out;
        long n;

        if (!b || PEM_write_bio_X509(b, x) != 1)
                die("PEM encoding failed");
        n = BIO_get_mem_data(b, &p);
        out = strndup(p, (size_t)n);
        BIO_free(b);
        if (!out)
                die("out of memory");
        return out;
}

static void write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
        FILE *f = fopen(path, "w");

        if (!f)
                die("%s: %s", path, strerror(errno));
        if ((x && PEM_write_X509(f, x) != 1) ||
            (k && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1))
                die("%s: writing PEM failed", path);
        fclose(f);
}

/* The EK CA: loaded from ek_ca_dir when there (the registrar's tpm_cert_store points at it),
 * otherwise created. The EK and its certificate are new on each run. */
static void setup_ek(struct sim *s)
{
        _cleanup_free_ char *ca_path = NULL, *key_path = NULL;
        struct vg_error err = { 0 };
        X509 *ca = NULL;
        EVP_PKEY *ca_key = NULL;
        FILE *f;

        if (asprintf(&ca_path, "%s/fleet-sim-ek-ca.pem", s->o.ek_ca_dir) < 0 ||
            asprintf(&key_path, "%s.key", s->o.ek_ca_dir) < 0)
                die("out of memory");
        if ((f = fopen(ca_path, "r"))) {
                ca = PEM_read_X509(f, NULL, NULL, NULL);
                fclose(f);
                if ((f = fopen(key_path, "r"))) {
                        ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
                        fclose(f);
                }
                if (!ca || !ca_key)
                        die("%s or %s is unreadable; remove both to make a new EK CA", ca_path,
                            key_path);
        } else {
                mkdir(s->o.ek_ca_dir, 0755);
                ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
                ca = make_cert(ca_key, "fleet_sim EK CA (load generator, not a TPM vendor)", NULL,
                               NULL, true, 3650, NULL);
                write_pem(ca_path, ca, NULL);
                umask(077);
                write_pem(key_path, NULL, ca_key);
        }
        if (sim_ek_new(NULL, &s->ek, &err) < 0)
                die("EK: %s", vg_error_str(&err));
        X509 *ek = make_cert(s->ek.pub->pkey, "fleet_sim EK", ca, ca_key, false, 3650, NULL);
        uint8_t *der = NULL;
        int len = i2d_X509(ek, &der);
        if (len <= 0 || !(s->ekcert_b64 = vg_b64_encode(der, (size_t)len, VG_B64_STD)))
                die("EK certificate encoding failed");
        OPENSSL_free(der);
        X509_free(ek);
        X509_free(ca);
        EVP_PKEY_free(ca_key);
}

/* One server context for all ports: the certificate is picked per connection by local port. */
static int cert_cb(SSL *ssl, void *arg)
{
        struct sim *s = arg;
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        unsigned port;

        if (getsockname(SSL_get_fd(ssl), (struct sockaddr *)&ss, &len) < 0)
                return 0;
        port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                       : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        if (port < s->o.base_port || port - s->o.base_port >= s->o.agents)
                return 0;
        struct agent *a = &s->agents[port - s->o.base_port];
        return SSL_use_certificate(ssl, a->cert) == 1 && SSL_use_PrivateKey(ssl, a->tls_key) == 1;
}

/* ---- the agent API ----------------------------------------------------------------------------
 */

static bool version_ok(struct vg_http_request *req)
{
        const char *v = vg_http_request_param(req, "version");

        if (v && (!strcmp(v, "2.1") || !strcmp(v, "2.2") || !strcmp(v, "2.3") ||
                  !strcmp(v, "2.4") || !strcmp(v, "2.5")))
                return true;
        vg_http_reply_error(req, 400, "API version v%s is not supported", v ? v : "");
        return false;
}

static void get_version(struct vg_http_request *req, void *userdata)
{
        (void)userdata;
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:[sssss]}", "supported_version", API_VERSION,
                                        "supported_versions", "2.1", "2.2", "2.3", "2.4", "2.5"));
}

static const char *sign_alg(const struct agent *a)
{
        return a->ak.pub->type == VG_TPM_KEY_ECC ? "ecdsa" : "rsassa";
}

static void get_info(struct vg_http_request *req, void *userdata)
{
        struct agent *a = userdata;

        if (!version_ok(req))
                return;
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:s, s:s, s:s, s:i}", "agent_uuid", a->uuid,
                                        "tpm_hash_alg", "sha256", "tpm_enc_alg", "rsa",
                                        "tpm_sign_alg", sign_alg(a), "ak_handle", 0));
}

static void get_pubkey(struct vg_http_request *req, void *userdata)
{
        struct agent *a = userdata;

        if (version_ok(req))
                vg_http_reply_keylime(req, 200, "Success",
                                      json_pack("{s:s}", "pubkey", a->sim->nk_pem));
}

static bool nonce_ok(const char *n)
{
        size_t len = n ? strlen(n) : 0;

        if (len == 0 || len > NONCE_MAX)
                return false;
        for (; *n; n++)
                if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') ||
                      (*n >= '0' && *n <= '9')))
                        return false;
        return true;
}

static json_t *quote(struct agent *a, struct vg_http_request *req, const char *nonce, uint32_t mask)
{
        struct sim *s = a->sim;
        uint8_t pcr[VG_PCR_MAX][32];
        struct vg_error err = { 0 };
        _cleanup_free_ char *qs = NULL;

        memcpy(pcr, s->pcr, sizeof(pcr));
        memcpy(pcr[VG_PCR_IMA], a->pcr10, 32);
        struct sim_quote_in in = {
                .ak = &a->ak,
                .nonce = (const uint8_t *)nonce,
                .nonce_len = strlen(nonce),
                .mask = mask | 1u << VG_PCR_NK,
                .pcr = (const uint8_t(*)[32])pcr,
                .clock = { .clock = a->clock_offset + (uint64_t)((now_s() - s->t_start) * 1000),
                           .reset_count = 3,
                           .restart_count = 0,
                           .safe = 1 },
                .firmware = 0x2000020240101ull,
        };
        if (sim_quote(&in, &qs, &err) < 0) {
                s->failures++;
                vg_http_reply_error(req, 500, "quote failed: %s", vg_error_str(&err));
                return NULL;
        }
        return json_pack("{s:s, s:s, s:s, s:s}", "quote", qs, "hash_alg", "sha256", "enc_alg",
                         "rsa", "sign_alg", sign_alg(a));
}

static void get_identity(struct vg_http_request *req, void *userdata)
{
        struct agent *a = userdata;
        const char *nonce = vg_http_request_query(req, "nonce");
        json_t *res;

        if (!version_ok(req))
                return;
        if (!nonce_ok(nonce)) {
                a->sim->failures++;
                vg_http_reply_error(req, 400, "nonce must be 1 to 64 letters and digits");
                return;
        }
        if ((res = quote(a, req, nonce, 0))) {
                json_object_set_new(res, "pubkey", json_string(a->sim->nk_pem));
                vg_http_reply_keylime(req, 200, "Success", res);
        }
}

static void record_poll(struct agent *a)
{
        struct sim *s = a->sim;
        double t = now_s();

        s->requests++;
        if (s->measuring && a->last_poll > 0) {
                if (s->n_iv == s->cap_iv) {
                        s->cap_iv = s->cap_iv ? s->cap_iv * 2 : 65536;
                        s->iv = realloc(s->iv, s->cap_iv * sizeof(*s->iv));
                        if (!s->iv)
                                die("out of memory");
                }
                s->iv[s->n_iv++] = (t - a->last_poll) * 1000;
        }
        a->last_poll = t;
        a->polls++;
}

static void get_integrity(struct vg_http_request *req, void *userdata)
{
        struct agent *a = userdata;
        struct sim *s = a->sim;
        const char *nonce = vg_http_request_query(req, "nonce");
        const char *m = vg_http_request_query(req, "mask");
        const char *p = vg_http_request_query(req, "partial");
        const char *e = vg_http_request_query(req, "ima_ml_entry");
        unsigned long mask = 0, entry = 0;
        char *end = NULL;
        json_t *res;

        if (!version_ok(req))
                return;
        record_poll(a);
        if (!nonce_ok(nonce)) {
                s->failures++;
                vg_http_reply_error(req, 400, "nonce must be 1 to 64 letters and digits");
                return;
        }
        if (m) {
                errno = 0;
                mask = strtoul(m, &end, 16);
                if (errno || !*m || *end || mask >> VG_PCR_MAX) {
                        s->failures++;
                        vg_http_reply_error(req, 400, "mask must be a hex bitmap of PCRs 0..23");
                        return;
                }
        }
        if (e) {
                errno = 0;
                entry = strtoul(e, &end, 10);
                if (errno || !*e || *end) {
                        s->failures++;
                        vg_http_reply_error(req, 400, "ima_ml_entry must be a line number");
                        return;
                }
        }
        if (!(res = quote(a, req, nonce, (uint32_t)mask)))
                return;
        if (!(p && !strcmp(p, "1")))
                json_object_set_new(res, "pubkey", json_string(s->nk_pem));
        /* From line `entry` on; past the end means a reboot to the verifier: the whole list. */
        const char *text = a->ima ? a->ima : s->ima_base;
        if (entry > a->ima_entries)
                entry = 0;
        for (unsigned long i = 0; i < entry; i++)
                text = strchr(text, '\n') + 1;
        json_object_set_new(res, "ima_measurement_list", json_string(text));
        json_object_set_new(res, "ima_measurement_list_entry", json_integer((json_int_t)entry));
        vg_http_reply_keylime(req, 200, "Success", res);
}

static void grow_ima(evutil_socket_t fd, short what, void *arg)
{
        struct sim *s = arg;

        (void)fd, (void)what;
        for (unsigned i = 0; i < s->o.agents; i++) {
                struct agent *a = &s->agents[i];

                a->ima_debt += s->o.ima_rate;
                while (a->ima_debt >= 1) {
                        if (!a->ima) {
                                a->ima = strdup(s->ima_base);
                                a->ima_len = a->ima_cap = s->ima_base_len;
                                if (!a->ima)
                                        die("out of memory");
                                a->ima_cap++;
                        }
                        ima_append(&a->ima, &a->ima_len, &a->ima_cap, a->pcr10, a->ima_entries);
                        a->ima_entries++;
                        a->ima_debt -= 1;
                }
        }
}

/* ---- agents ------------------------------------------------------------------------------------
 */

static void uuid_v4(char out[37])
{
        uint8_t b[16];

        RAND_bytes(b, sizeof(b));
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15]);
}

static void agents_create(struct sim *s)
{
        struct vg_error err = { 0 };
        char *text = NULL;
        size_t len = 0, cap = 0;

        /* The shared state: boot PCRs, the initial IMA list and its PCR 10, the NK. */
        for (unsigned i = 0; i < VG_PCR_MAX; i++) {
                char seed[32];
                int n = snprintf(seed, sizeof(seed), "fleet-sim pcr %u", i);
                if (i >= 17)
                        memset(s->pcr[i], i <= 22 ? 0xff : 0, 32);
                else
                        vg_hash(VG_HASH_SHA256, seed, (size_t)n, s->pcr[i]);
        }
        memset(s->pcr10_base, 0, 32);
        ima_append(&text, &len, &cap, s->pcr10_base, UINT32_MAX);
        for (unsigned k = 0; k < IMA_BASE; k++)
                ima_append(&text, &len, &cap, s->pcr10_base, k);
        s->ima_base = text;
        s->ima_base_len = len;
        /* The NK is shared by all agents to save 10k RSA key generations: it only binds into
         * PCR 16 and would receive the payload V key, which the fleet does not exercise. */
        EVP_PKEY *nk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        BIO *b = BIO_new(BIO_s_mem());
        char *p;
        if (!nk || !b || PEM_write_bio_PUBKEY(b, nk) != 1)
                die("NK generation failed");
        long n = BIO_get_mem_data(b, &p);
        s->nk_pem = strndup(p, (size_t)n);
        BIO_free(b);
        EVP_PKEY_free(nk);
        if (!s->nk_pem || vg_quote_pcr16_expected(VG_HASH_SHA256, s->nk_pem, strlen(s->nk_pem),
                                                  s->pcr[VG_PCR_NK]) < 0)
                die("NK binding failed");

        s->agents = calloc(s->o.agents, sizeof(*s->agents));
        if (!s->agents)
                die("out of memory");
        for (unsigned i = 0; i < s->o.agents; i++) {
                struct agent *a = &s->agents[i];

                a->sim = s;
                a->idx = i;
                a->port = (uint16_t)(s->o.base_port + i);
                uuid_v4(a->uuid);
                if (sim_ak_new(s->o.ak_type, &a->ak, &err) < 0)
                        die("agent %s: AK: %s", a->uuid, vg_error_str(&err));
                a->tls_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
                if (!a->tls_key)
                        die("out of memory");
                a->cert = make_cert(a->tls_key, a->uuid, NULL, NULL, false, 365,
                                    "IP:127.0.0.1,DNS:localhost");
                a->cert_pem = cert_pem(a->cert);
                memcpy(a->pcr10, s->pcr10_base, 32);
                a->ima_entries = 1 + IMA_BASE;
                RAND_bytes((uint8_t *)&a->clock_offset, sizeof(a->clock_offset));
                a->clock_offset %= 1000000000ull;
        }
}

static void servers_start(struct sim *s, const char *work)
{
        struct vg_error err = { 0 };
        _cleanup_free_ char *cert = NULL, *key = NULL, *ca = NULL;

        if (asprintf(&cert, "%s/agent0-cert.pem", work) < 0 ||
            asprintf(&key, "%s/agent0-key.pem", work) < 0 ||
            asprintf(&ca, "%s/cacert.crt", s->o.tls_dir) < 0)
                die("out of memory");
        write_pem(cert, s->agents[0].cert, NULL);
        write_pem(key, NULL, s->agents[0].tls_key);
        struct vg_tls_server_config tc = {
                .cert_file = cert,
                .key_file = key,
                .client_auth = VG_TLS_CLIENT_AUTH_REQUIRED,
                .client_ca_file = ca,
        };
        s->server_tls = vg_tls_server_ctx_new(&tc, &err);
        if (!s->server_tls)
                die("agent TLS: %s", vg_error_str(&err));
        SSL_CTX_set_cert_cb(s->server_tls, cert_cb, s);

        static const struct {
                const char *pattern;
                vg_http_handler_fn fn;
        } routes[] = {
                { "/version", get_version },
                { "/v{version}/agent/info", get_info },
                { "/v{version}/keys/pubkey", get_pubkey },
                { "/v{version}/quotes/identity", get_identity },
                { "/v{version}/quotes/integrity", get_integrity },
        };
        for (unsigned i = 0; i < s->o.agents; i++) {
                struct agent *a = &s->agents[i];
                struct vg_http_server_config sc = {
                        .address = "127.0.0.1",
                        .port = a->port,
                        .tls = s->server_tls,
                        .name = "fleet-sim-agent",
                        .max_connections = 64,
                };
                if (vg_http_server_new(s->base, &sc, &a->srv, &err) < 0)
                        die("agent %u (%s): %s", i, a->uuid, vg_error_str(&err));
                for (size_t r = 0; r < VG_ARRAY_SIZE(routes); r++)
                        if (vg_http_server_route(a->srv, "GET", routes[r].pattern, routes[r].fn,
                                                 a) < 0)
                                die("route %s", routes[r].pattern);
        }
}

/* ---- measurement and report ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double q)
{
        size_t i;

        if (!n)
                return 0;
        i = (size_t)ceil(q * (double)n);
        return v[i ? i - 1 : 0];
}

static void report(struct sim *s)
{
        unsigned never = 0;
        double end = s->t_measure_end ? s->t_measure_end : now_s(), stale = 0;
        double window = end - s->t_enrolled;

        /* An agent the verifier stopped polling shows here, not among the intervals. */
        for (unsigned i = 0; i < s->o.agents; i++) {
                const struct agent *a = &s->agents[i];
                never += a->polls == 0;
                if (a->polls && end - a->last_poll > stale)
                        stale = end - a->last_poll;
        }
        qsort(s->iv, s->n_iv, sizeof(*s->iv), cmp_double);
        char line[1024];
        snprintf(line, sizeof(line),
                 "{\"bench\":\"fleet_sim\",\"agents\":%u,\"ak\":\"%s\",\"enrolled\":%u,"
                 "\"enrol_failed\":%u,\"enrol_s\":%.2f,\"window_s\":%.1f,\"requests\":%llu,"
                 "\"requests_per_s\":%.1f,\"intervals\":%zu,\"interval_ms\":{\"p50\":%.1f,"
                 "\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f},\"never_polled\":%u,\"max_since_last_"
                 "poll_ms\":"
                 "%.1f,\"failures\":%llu}\n",
                 s->o.agents, s->o.ak_type == VG_TPM_KEY_ECC ? "ecdsa-p256" : "rsassa-2048",
                 s->enrolled, s->enrol_failed, s->t_enrolled - s->t_start, window,
                 (unsigned long long)s->requests, window > 0 ? (double)s->requests / window : 0,
                 s->n_iv, pct(s->iv, s->n_iv, 0.5), pct(s->iv, s->n_iv, 0.9),
                 pct(s->iv, s->n_iv, 0.99), s->n_iv ? s->iv[s->n_iv - 1] : 0, never, stale * 1000,
                 (unsigned long long)s->failures);
        fputs(line, stdout);
        if (s->o.self_check) {
                printf("{\"bench\":\"fleet_sim_self_check\",\"quotes\":%u,\"verified\":%u,"
                       "\"refused\":%u}\n",
                       s->sc_done, s->sc_ok, s->sc_bad);
                if (s->sc_bad || s->sc_ok != s->o.self_check)
                        s->exit_code = 1;
        }
        fflush(stdout);
        if (s->o.intervals) {
                FILE *f = fopen(s->o.intervals, "w");
                for (size_t i = 0; f && i < s->n_iv; i++)
                        fprintf(f, "%.3f\n", s->iv[i]);
                if (!f || fclose(f) != 0)
                        fprintf(stderr, "fleet_sim: %s: %s\n", s->o.intervals, strerror(errno));
        }
        if (s->o.report) {
                FILE *f = fopen(s->o.report, "w");
                if (!f || fputs(line, f) < 0 || fclose(f) != 0)
                        fprintf(stderr, "fleet_sim: %s: %s\n", s->o.report, strerror(errno));
        }
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
        struct sim *s = arg;

        (void)fd, (void)what;
        s->measuring = false;
        s->t_measure_end = now_s();
        event_base_loopbreak(s->base);
}

/* SIGUSR1: the window starts again now (a driver script lines up several shards this way);
 * the interval running across the restart still counts. */
static void on_restart(evutil_socket_t fd, short what, void *arg)
{
        struct sim *s = arg;

        (void)fd, (void)what;
        if (!s->measuring)
                return;
        s->t_enrolled = now_s();
        s->n_iv = 0;
        s->requests = 0;
        s->failures = 0;
        for (unsigned i = 0; i < s->o.agents; i++)
                s->agents[i].polls = 0;
        fprintf(stderr, "fleet_sim: window restarted\n");
}

static void measure_start(struct sim *s)
{
        struct timeval tv = { .tv_sec = (time_t)s->o.duration,
                              .tv_usec =
                                  (suseconds_t)((s->o.duration - floor(s->o.duration)) * 1e6) };

        s->t_enrolled = now_s();
        fprintf(stderr,
                "fleet_sim: %u of %u agents enrolled in %.2f s (%u failed); measuring "
                "for %.0f s\n",
                s->enrolled, s->o.agents, s->t_enrolled - s->t_start, s->enrol_failed,
                s->o.duration);
        for (unsigned i = 0; i < s->o.agents; i++) {
                s->agents[i].last_poll = 0;
                s->agents[i].polls = 0;
        }
        s->requests = 0;
        s->measuring = true;
        s->timer = evtimer_new(s->base, on_stop, s);
        evtimer_add(s->timer, &tv);
        if (s->o.ima_rate > 0) {
                struct timeval one = { .tv_sec = 1 };
                s->growth = event_new(s->base, -1, EV_PERSIST, grow_ima, s);
                evtimer_add(s->growth, &one);
        }
}

/* ---- enrolment: registrar (register, ActivateCredential, activate), then verifier ----------- */

static void enrol_next(struct sim *s);

static void enrol_fail(struct agent *a, const char *what, const struct vg_http_response *resp,
                       const struct vg_error *err)
{
        struct sim *s = a->sim;

        fprintf(stderr, "fleet_sim: agent %s: %s failed: %s%.300s\n", a->uuid, what,
                err ? vg_error_str(err) : "", resp ? (const char *)resp->body : "");
        a->enrol = ENROL_FAILED;
        s->enrol_failed++;
        s->inflight--;
        enrol_next(s);
}

static void send_json(struct agent *a, const char *method, const char *url, json_t *body,
                      vg_http_client_cb cb)
{
        struct vg_error err = { 0 };
        struct vg_http_client_request rq = {
                .method = method,
                .url = url,
                .json = body,
                .timeout_ms = 120000,
        };

        if (vg_http_client_send(a->sim->client, &rq, cb, a, NULL, &err) < 0)
                enrol_fail(a, method, NULL, &err);
}

static void on_verifier(struct vg_http_response *resp, const struct vg_error *err, void *ud)
{
        struct agent *a = ud;

        if (!resp || resp->status != 200)
                return enrol_fail(a, "verifier POST", resp, err);
        a->enrol = ENROL_DONE;
        a->sim->enrolled++;
        a->sim->inflight--;
        enrol_next(a->sim);
}

static void add_to_verifier(struct agent *a)
{
        struct sim *s = a->sim;
        struct vg_http_url u;
        struct vg_error err = { 0 };
        char mask[64], url[512];
        _cleanup_free_ char *ak =
            vg_b64_encode(a->ak.pub->marshalled, a->ak.pub->marshalled_len, VG_B64_STD);

        if (vg_http_url_parse(s->o.verifier, &u, &err) < 0)
                return enrol_fail(a, "verifier URL", NULL, &err);
        snprintf(mask, sizeof(mask), "{\"mask\":\"0x%x\"}", s->o.policy_mask);
        snprintf(url, sizeof(url), "%s/v%s/agents/%s", s->o.verifier, API_VERSION, a->uuid);
        a->enrol = ENROL_VERIFIER;
        json_auto_t *body = json_pack(
            "{s:s, s:i, s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
            "s:[sss], s:[ss], s:[ss], s:s}",
            "cloudagent_ip", "127.0.0.1", "cloudagent_port", (int)a->port, "verifier_ip", u.host,
            "verifier_port", (int)u.port, "tpm_policy", mask, "ak_tpm", ak, "mtls_cert",
            a->cert_pem, "runtime_policy_name", "", "runtime_policy", s->policy_b64,
            "runtime_policy_sig", "", "runtime_policy_key", "", "mb_policy_name", "", "mb_policy",
            "", "ima_sign_verification_keys", "", "metadata", "{}", "revocation_key", "",
            "accept_tpm_hash_algs", "sha512", "sha384", "sha256", "accept_tpm_encryption_algs",
            "ecc", "rsa", "accept_tpm_signing_algs", "ecdsa", "rsassa", "supported_version",
            API_VERSION);
        vg_http_url_clear(&u);
        send_json(a, "POST", url, body, on_verifier);
}

static void enrolled_at_registrar(struct agent *a)
{
        if (a->sim->o.no_verifier) {
                a->enrol = ENROL_DONE;
                a->sim->enrolled++;
                a->sim->inflight--;
                enrol_next(a->sim);
                return;
        }
        add_to_verifier(a);
}

static void on_activate(struct vg_http_response *resp, const struct vg_error *err, void *ud)
{
        struct agent *a = ud;

        if (!resp || resp->status != 200)
                return enrol_fail(a, "registrar activate", resp, err);
        enrolled_at_registrar(a);
}

static void on_register(struct vg_http_response *resp, const struct vg_error *err, void *ud)
{
        struct agent *a = ud;
        struct sim *s = a->sim;
        struct vg_error e = { 0 };
        _cleanup_free_ uint8_t *blob = NULL;
        size_t blob_len = 0, secret_len = 0;
        uint8_t secret[64];
        char key[VG_CHALLENGE_KEY_LEN + 1], tag[VG_AUTH_TAG_LEN + 1], url[512];

        if (!resp || resp->status != 200)
                return enrol_fail(a, "registrar POST", resp, err);
        json_auto_t *j = vg_http_response_json(resp, &e);
        const char *b64 =
            j ? json_string_value(json_object_get(json_object_get(j, "results"), "blob")) : NULL;
        if (!b64) {
                vg_error_set(&e, -EBADMSG, "no results.blob in the reply: ");
                return enrol_fail(a, "registrar POST", resp, &e);
        }
        if (vg_b64_decode(b64, strlen(b64), VG_B64_STD, &blob, &blob_len) < 0 ||
            sim_activate_credential(&s->ek, a->ak.pub, blob, blob_len, secret, &secret_len, &e) <
                0 ||
            vg_registration_key(secret, secret_len, key) < 0 ||
            vg_auth_tag(key, a->uuid, tag) < 0) {
                if (!e.code)
                        vg_error_set(&e, -EBADMSG, "the blob is not a credential for this agent");
                return enrol_fail(a, "ActivateCredential", NULL, &e);
        }
        a->enrol = ENROL_ACTIVATE;
        snprintf(url, sizeof(url), "%s/v%s/agents/%s/activate", s->o.registrar, API_VERSION,
                 a->uuid);
        json_auto_t *body = json_pack("{s:s}", "auth_tag", tag);
        send_json(a, "PUT", url, body, on_activate);
}

static void enrol_one(struct agent *a)
{
        struct sim *s = a->sim;
        char url[512];
        _cleanup_free_ char *ek =
            vg_b64_encode(s->ek.pub->marshalled, s->ek.pub->marshalled_len, VG_B64_STD);
        _cleanup_free_ char *ak =
            vg_b64_encode(a->ak.pub->marshalled, a->ak.pub->marshalled_len, VG_B64_STD);

        a->enrol = ENROL_REGISTER;
        if (!s->o.registrar)
                return enrolled_at_registrar(a);
        snprintf(url, sizeof(url), "%s/v%s/agents/%s", s->o.registrar, API_VERSION, a->uuid);
        json_auto_t *body = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "ek_tpm", ek, "aik_tpm", ak,
                                      "ekcert", s->ekcert_b64, "mtls_cert", a->cert_pem, "ip",
                                      "127.0.0.1", "port", (int)a->port);
        send_json(a, "POST", url, body, on_register);
}

static void self_check_next(struct sim *s);

static void enrol_next(struct sim *s)
{
        while (s->inflight < s->o.concurrency && s->next < s->o.agents) {
                s->inflight++;
                enrol_one(&s->agents[s->next++]);
        }
        if (s->inflight == 0 && s->next == s->o.agents && !s->measuring && !s->t_enrolled) {
                measure_start(s);
                if (s->o.self_check)
                        self_check_next(s);
        }
}

/* ---- self-check: fetch quotes from our own agents and verify them as a verifier would ------ */

static bool replay_ima(const char *text, uint8_t pcr10[32])
{
        /* Only the synthetic ima-ng lines: recompute template data from digest and path. */
        memset(pcr10, 0, 32);
        while (*text) {
                char th[41], dig[80], path[256];
                uint8_t d[32], tdata[512], h[32];
                size_t n = 0;
                int used = 0;

                if (sscanf(text, "10 %40s ima-ng %79s %255s%n", th, dig, path, &used) != 3 ||
                    strncmp(dig, "sha256:", 7) != 0 ||
                    vg_hex_decode_exact(dig + 7, strlen(dig + 7), d, 32) < 0)
                        return false;
                uint32_t dlen = 40, plen = (uint32_t)strlen(path) + 1;
                memcpy(tdata + n, &dlen, 4), n += 4;
                memcpy(tdata + n, "sha256:", 8), n += 8;
                memcpy(tdata + n, d, 32), n += 32;
                memcpy(tdata + n, &plen, 4), n += 4;
                memcpy(tdata + n, path, plen), n += plen;
                vg_hash(VG_HASH_SHA256, tdata, n, h);
                vg_hash_extend(VG_HASH_SHA256, pcr10, h);
                text += used;
                if (*text == '\n')
                        text++;
        }
        return true;
}

struct sc_call {
        struct agent *a;
        char nonce[21];
};

static bool sc_verify(struct sc_call *c, const struct vg_http_response *resp, char *why,
                      size_t why_len)
{
        struct agent *a = c->a;
        struct vg_error err = { 0 };
        enum vg_quote_status st = VG_QUOTE_OK;
        _cleanup_quote_ struct vg_quote *q = NULL;
        uint8_t pcr10[32];

        json_auto_t *j = vg_http_response_json(resp, &err);
        json_t *r = j ? json_object_get(j, "results") : NULL;
        const char *qs = json_string_value(json_object_get(r, "quote"));
        const char *pk = json_string_value(json_object_get(r, "pubkey"));
        const char *ima = json_string_value(json_object_get(r, "ima_measurement_list"));
        struct vg_quote_expect exp = { .nonce = (const uint8_t *)c->nonce,
                                       .nonce_len = strlen(c->nonce),
                                       .hash_alg = VG_HASH_SHA256 };

        if (!qs || !pk || !ima) {
                snprintf(why, why_len, "reply lacks quote, pubkey or ima_measurement_list");
                return false;
        }
        if (vg_quote_parse(qs, strlen(qs), &q, &err) < 0 ||
            vg_quote_verify(q, a->ak.pub->pkey, &exp, &st, &err) < 0 ||
            vg_quote_check_pcr16(&q->pcrs, VG_HASH_SHA256, pk, strlen(pk), &st, &err) < 0 ||
            vg_quote_check_clock(a->have_prev ? &a->prev_clock : NULL, &q->attest.clock_info, &st,
                                 &err) < 0) {
                snprintf(why, why_len, "%s: %s", vg_quote_status_str(st), vg_error_str(&err));
                return false;
        }
        a->prev_clock = q->attest.clock_info;
        a->have_prev = true;
        const uint8_t *quoted = vg_pcr_value(&q->pcrs, VG_HASH_SHA256, VG_PCR_IMA);
        if (!quoted || !replay_ima(ima, pcr10) || memcmp(pcr10, quoted, 32) != 0) {
                snprintf(why, why_len, "the IMA list does not replay to the quoted PCR 10");
                return false;
        }
        return true;
}

static void on_sc(struct vg_http_response *resp, const struct vg_error *err, void *ud)
{
        struct sc_call *c = ud;
        struct sim *s = c->a->sim;
        char why[600] = "";

        s->sc_done++;
        if (resp && resp->status == 200 && sc_verify(c, resp, why, sizeof(why))) {
                s->sc_ok++;
        } else {
                s->sc_bad++;
                fprintf(stderr, "fleet_sim: self-check agent %s: %s%s%.200s\n", c->a->uuid,
                        err ? vg_error_str(err) : "", why,
                        resp && resp->status != 200 ? (const char *)resp->body : "");
        }
        free(c);
        if (s->sc_done == s->o.self_check)
                on_stop(-1, 0, s);
        else
                self_check_next(s);
}

static void self_check_next(struct sim *s)
{
        static const char alnum[] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        struct vg_error err = { 0 };

        while (s->sc_sent < s->o.self_check && s->sc_sent - s->sc_done < s->o.concurrency) {
                struct agent *a = &s->agents[s->sc_sent % s->o.agents];
                struct sc_call *c = calloc(1, sizeof(*c));
                char url[256];
                uint8_t rnd[20];

                if (!c)
                        die("out of memory");
                if (!a->pin) {
                        _cleanup_free_ char *cc = NULL, *ck = NULL;
                        if (asprintf(&cc, "%s/client-cert.crt", s->o.tls_dir) < 0 ||
                            asprintf(&ck, "%s/client-private.pem", s->o.tls_dir) < 0)
                                die("out of memory");
                        struct vg_tls_client_config tc = { .pinned_cert_pem = a->cert_pem,
                                                           .cert_file = cc,
                                                           .key_file = ck };
                        if (!(a->pin = vg_tls_client_ctx_new(&tc, &err)))
                                die("self-check TLS: %s", vg_error_str(&err));
                }
                c->a = a;
                RAND_bytes(rnd, sizeof(rnd));
                for (unsigned j = 0; j < 20; j++)
                        c->nonce[j] = alnum[rnd[j] % 62];
                snprintf(url, sizeof(url),
                         "https://127.0.0.1:%u/v%s/quotes/integrity?nonce=%s&mask=0x%x&partial=0&"
                         "ima_ml_entry=0",
                         a->port, API_VERSION, c->nonce, s->o.policy_mask | 1u << VG_PCR_IMA);
                struct vg_http_client_request rq = { .url = url,
                                                     .tls = a->pin,
                                                     .timeout_ms = 30000 };
                s->sc_sent++;
                if (vg_http_client_send(s->client, &rq, on_sc, c, NULL, &err) < 0)
                        die("self-check request: %s", vg_error_str(&err));
        }
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
        fputs("usage: fleet_sim --tls-dir DIR [options]\n"
              "A LOAD GENERATOR: N simulated Keylime pull agents (API v2.1-2.5) with software\n"
              "AKs, one port each on 127.0.0.1, enrolled at the registrar and the verifier, then\n"
              "timing how often the verifier asks each one for an integrity quote.\n"
              "  --agents N          simulated agents [10000]\n"
              "  --base-port P       agent i listens on P+i [20000]\n"
              "  --registrar URL     e.g. http://127.0.0.1:8890 (registration port)\n"
              "  --verifier URL      e.g. https://127.0.0.1:8881\n"
              "  --no-verifier       register and activate only\n"
              "  --tls-dir DIR       cacert.crt (trusted for the verifier and as the agents'\n"
              "                      client CA), client-cert.crt, client-private.pem\n"
              "  --ek-ca-dir DIR     EK CA certificate (point the registrar's tpm_cert_store\n"
              "                      here); created when absent [./fleet-sim-ek-ca], its key\n"
              "                      beside it as DIR.key\n"
              "  --ek-ca-only        create (or check) the EK CA and exit, before the registrar\n"
              "                      starts\n"
              "  --ak ecdsa|rsa      AK type [ecdsa: P-256; rsa: 2048, slow to generate]\n"
              "  --duration S        measurement window after enrolment [60]\n"
              "  --ima-rate R        new IMA entries per agent per second [0]\n"
              "  --mask 0xHEX        tpm_policy mask sent to the verifier [0x400]\n"
              "  --concurrency C     enrolment (and self-check) requests in flight [64]\n"
              "  --self-check M      fetch M integrity quotes from the agents and verify them\n"
              "                      (signature, nonce, PCR digest, PCR 16, clock, IMA replay)\n"
              "  --report FILE       also write the result line there\n"
              "  --intervals FILE    write every measured interval (ms), one a line\n"
              "SIGUSR1 restarts the measurement window; SIGINT/SIGTERM end it and report.\n"
              "Output: one JSON line per result on stdout.\n",
              f);
}

static unsigned long num(const char *opt, const char *v, unsigned long max)
{
        char *end = NULL;
        unsigned long x;

        errno = 0;
        x = v ? strtoul(v, &end, 0) : 0;
        if (!v || !*v || *end || errno || x > max)
                die("%s: expected a number up to %lu, found \"%s\"", opt, max, v ? v : "");
        return x;
}

/* Agent ports inside the kernel's ephemeral range collide with outgoing connections. */
static void check_port_range(unsigned base, unsigned n)
{
        FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
        unsigned lo, hi;

        if (!f)
                return;
        if (fscanf(f, "%u %u", &lo, &hi) == 2 && base <= hi && base + n - 1 >= lo)
                fprintf(stderr,
                        "fleet_sim: warning: agent ports %u-%u overlap the ephemeral port range "
                        "%u-%u (net.ipv4.ip_local_port_range): some may be taken\n",
                        base, base + n - 1, lo, hi);
        fclose(f);
}

static void raise_nofile(unsigned agents)
{
        struct rlimit rl;
        rlim_t want = (rlim_t)agents * 2 + 1024;

        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_max < want) {
                struct rlimit r2 = { want, want };
                if (setrlimit(RLIMIT_NOFILE, &r2) == 0)
                        return;
        }
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want)
                fprintf(stderr,
                        "fleet_sim: warning: RLIMIT_NOFILE is %llu, %u agents with one "
                        "connection each need about %llu\n",
                        (unsigned long long)rl.rlim_cur, agents, (unsigned long long)want);
}

int main(int argc, char **argv)
{
        struct sim s = { 0 };
        struct vg_error err = { 0 };
        char work[] = "/tmp/fleet-sim.XXXXXX";

        s.o = (struct opts){ .agents = 10000,
                             .base_port = 20000,
                             .ek_ca_dir = "fleet-sim-ek-ca",
                             .duration = 60,
                             .concurrency = 64,
                             .policy_mask = 0x400,
                             .ak_type = VG_TPM_KEY_ECC };
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        usage(stdout);
                        return 0;
                } else if (!strcmp(a, "--no-verifier")) {
                        s.o.no_verifier = true;
                        continue;
                } else if (!strcmp(a, "--ek-ca-only")) {
                        s.o.ek_ca_only = true;
                        continue;
                }
                if (!v)
                        die("%s needs a value (see --help)", a);
                i++;
                if (!strcmp(a, "--agents"))
                        s.o.agents = (unsigned)num(a, v, 60000);
                else if (!strcmp(a, "--base-port"))
                        s.o.base_port = (unsigned)num(a, v, 65535);
                else if (!strcmp(a, "--registrar"))
                        s.o.registrar = v;
                else if (!strcmp(a, "--verifier"))
                        s.o.verifier = v;
                else if (!strcmp(a, "--tls-dir"))
                        s.o.tls_dir = v;
                else if (!strcmp(a, "--ek-ca-dir"))
                        s.o.ek_ca_dir = v;
                else if (!strcmp(a, "--report"))
                        s.o.report = v;
                else if (!strcmp(a, "--intervals"))
                        s.o.intervals = v;
                else if (!strcmp(a, "--duration"))
                        s.o.duration = (double)num(a, v, 86400);
                else if (!strcmp(a, "--ima-rate"))
                        s.o.ima_rate = strtod(v, NULL);
                else if (!strcmp(a, "--mask"))
                        s.o.policy_mask = (uint32_t)num(a, v, 0xffffff);
                else if (!strcmp(a, "--concurrency"))
                        s.o.concurrency = (unsigned)num(a, v, 10000);
                else if (!strcmp(a, "--self-check"))
                        s.o.self_check = (unsigned)num(a, v, 100000000);
                else if (!strcmp(a, "--ak") && !strcmp(v, "ecdsa"))
                        s.o.ak_type = VG_TPM_KEY_ECC;
                else if (!strcmp(a, "--ak") && !strcmp(v, "rsa"))
                        s.o.ak_type = VG_TPM_KEY_RSA;
                else
                        die("unknown option %s %s (see --help)", a, v);
        }
        if (s.o.ek_ca_only) {
                setup_ek(&s);
                sim_key_clear(&s.ek);
                free(s.ekcert_b64);
                printf("%s\n", s.o.ek_ca_dir);
                return 0;
        }
        if (!s.o.tls_dir)
                die("--tls-dir is required (a `vigil ca init` directory)");
        if (s.o.agents == 0 || s.o.base_port + s.o.agents > 65536)
                die("--agents %u from --base-port %u does not fit in the port range", s.o.agents,
                    s.o.base_port);
        if (s.o.concurrency == 0)
                s.o.concurrency = 1;
        if (s.o.policy_mask & (1u << VG_PCR_NK))
                die("--mask: PCR 16 is bound to the NK and always quoted; leave it out");
        if (!s.o.verifier && !s.o.self_check)
                s.o.no_verifier = true;
        if (s.o.verifier && s.o.no_verifier)
                die("--verifier and --no-verifier exclude each other");
        if (s.o.ima_rate < 0 || s.o.ima_rate > 1000)
                die("--ima-rate: expected 0 to 1000 entries per second");
        if (s.o.self_check)
                s.o.no_verifier = true;

        struct vg_log_config lc = { .component = "fleet_sim", .level = VG_LOG_WARNING };
        vg_log_setup(&lc);
        signal(SIGPIPE, SIG_IGN);
        raise_nofile(s.o.agents);
        check_port_range(s.o.base_port, s.o.agents);
        if (!mkdtemp(work))
                die("mkdtemp: %s", strerror(errno));

        s.t_start = now_s();
        setup_ek(&s);
        agents_create(&s);
        s.policy_b64 = runtime_policy_b64();
        if (!s.policy_b64)
                die("out of memory");
        s.base = event_base_new();
        if (!s.base)
                die("event_base_new failed");
        servers_start(&s, work);
        fprintf(stderr, "fleet_sim: %u agents on 127.0.0.1:%u-%u ready in %.2f s; EK CA in %s\n",
                s.o.agents, s.o.base_port, s.o.base_port + s.o.agents - 1, now_s() - s.t_start,
                s.o.ek_ca_dir);

        if (s.o.verifier) {
                _cleanup_free_ char *ca = NULL, *cc = NULL, *ck = NULL;
                if (asprintf(&ca, "%s/cacert.crt", s.o.tls_dir) < 0 ||
                    asprintf(&cc, "%s/client-cert.crt", s.o.tls_dir) < 0 ||
                    asprintf(&ck, "%s/client-private.pem", s.o.tls_dir) < 0)
                        die("out of memory");
                struct vg_tls_client_config tc = { .ca_file = ca, .cert_file = cc, .key_file = ck };
                if (!(s.client_tls = vg_tls_client_ctx_new(&tc, &err)))
                        die("client TLS: %s", vg_error_str(&err));
        }
        struct vg_http_client_config cc = {
                .tls = s.client_tls,
                .max_idle_per_origin = s.o.concurrency,
                /* Self-check goes round the agents: a kept connection to each would double
                 * the descriptors (RLIMIT_NOFILE) for no reuse. */
                .no_keepalive = s.o.self_check > 0 && s.o.agents > 4000,
                .timeout_ms = 120000,
                .user_agent = "vigil-fleet-sim",
        };
        if (vg_http_client_new(s.base, &cc, &s.client, &err) < 0)
                die("HTTP client: %s", vg_error_str(&err));
        s.sigint = evsignal_new(s.base, SIGINT, on_stop, &s);
        s.sigterm = evsignal_new(s.base, SIGTERM, on_stop, &s);
        s.sigusr1 = evsignal_new(s.base, SIGUSR1, on_restart, &s);
        event_add(s.sigusr1, NULL);
        event_add(s.sigint, NULL);
        event_add(s.sigterm, NULL);

        enrol_next(&s);
        event_base_dispatch(s.base);
        if (!s.t_enrolled)
                s.t_enrolled = now_s();
        report(&s);
        if (s.enrol_failed)
                s.exit_code = 1;

        /* Tidy up so leak checkers see only real leaks. */
        vg_http_client_free(s.client);
        for (unsigned i = 0; i < s.o.agents; i++) {
                struct agent *a = &s.agents[i];
                vg_http_server_free(a->srv);
                sim_key_clear(&a->ak);
                X509_free(a->cert);
                EVP_PKEY_free(a->tls_key);
                SSL_CTX_free(a->pin);
                free(a->cert_pem);
                free(a->ima);
        }
        if (s.timer)
                event_free(s.timer);
        if (s.growth)
                event_free(s.growth);
        event_free(s.sigint);
        event_free(s.sigterm);
        event_free(s.sigusr1);
        event_base_free(s.base);
        SSL_CTX_free(s.server_tls);
        SSL_CTX_free(s.client_tls);
        sim_key_clear(&s.ek);
        free(s.agents);
        free(s.iv);
        free(s.ima_base);
        free(s.nk_pem);
        free(s.ekcert_b64);
        free(s.policy_b64);
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "%s/agent0-cert.pem", work);
        unlink(cmd);
        snprintf(cmd, sizeof(cmd), "%s/agent0-key.pem", work);
        unlink(cmd);
        rmdir(work);
        return s.exit_code;
}
