/* vigil tests: vigil-agent end to end on loopback: a real swtpm, registration against a mock and
 * the real vigil-registrar, quotes checked with quote.h and tpm2_checkquote, mTLS, restarts. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "credential.h"
#include "encoding.h"
#include "http_client.h"
#include "http_server.h"
#include "quote.h"
#include "swtpm.h"
#include "payload.h"
#include "revocation.h"
#include "tap.h"
#include "tls.h"
#include "tpm_public.h"

/* ---- a mock registrar on its own thread: Keylime's registration with credential.h ---- */

struct mock {
        pthread_t thread;
        struct event_base *base;
        struct vg_http_server *srv;
        struct event *tick;
        atomic_bool stop;
        int port;
        pthread_mutex_t lock;
        /* what the last registration sent, under lock */
        int posts, activations, bad_tags;
        char version[16];
        char uuid[256];
        char *aik_tpm, *mtls_cert, *ip;
        long long agent_port;
        bool ekcert_matches;
        char key[VG_CHALLENGE_KEY_LEN + 1];
};

static void mock_tick(evutil_socket_t fd, short what, void *arg)
{
        struct mock *m = arg;

        if (atomic_load(&m->stop))
                event_base_loopbreak(m->base);
}

static void mock_version(struct vg_http_request *req, void *arg)
{
        /* Older than ours, so the agent must settle on 2.3. */
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:[s,s,s,s]}", "current_version", "2.3",
                                        "supported_versions", "2.0", "2.1", "2.2", "2.3"));
}

static void mock_post(struct vg_http_request *req, void *arg)
{
        struct mock *m = arg;
        struct vg_error err = { 0 };
        json_t *j = vg_http_request_json(req, &err);
        const char *ek_b64 = json_string_value(json_object_get(j, "ek_tpm"));
        const char *ak_b64 = json_string_value(json_object_get(j, "aik_tpm"));
        const char *cert_b64 = json_string_value(json_object_get(j, "ekcert"));
        struct vg_tpm_public *ek = NULL, *ak = NULL;
        char challenge[VG_CHALLENGE_LEN + 1];
        struct vg_credential cred;
        uint8_t *blob = NULL, *der = NULL;
        size_t blob_len, der_len;
        char *b64 = NULL;

        if (!ek_b64 || !ak_b64 || vg_tpm_public_parse_b64(ek_b64, &ek, &err) < 0 ||
            vg_tpm_public_parse_b64(ak_b64, &ak, &err) < 0 ||
            vg_registration_challenge(challenge) < 0 ||
            vg_credential_make(ek, ak->name, ak->name_len, (const uint8_t *)challenge,
                               VG_CHALLENGE_LEN, &cred, &err) < 0 ||
            vg_credential_blob(&cred, &blob, &blob_len) < 0 ||
            !(b64 = vg_b64_encode(blob, blob_len, VG_B64_STD))) {
                vg_http_reply_error(req, 400, "mock: bad registration: %s", vg_error_str(&err));
                goto out;
        }
        pthread_mutex_lock(&m->lock);
        m->posts++;
        snprintf(m->version, sizeof(m->version), "%s", vg_http_request_param(req, "version"));
        snprintf(m->uuid, sizeof(m->uuid), "%s", vg_http_request_param(req, "uuid"));
        free(m->aik_tpm);
        free(m->mtls_cert);
        free(m->ip);
        m->aik_tpm = strdup(ak_b64);
        m->mtls_cert = strdup(json_string_value(json_object_get(j, "mtls_cert")) ?: "");
        m->ip = strdup(json_string_value(json_object_get(j, "ip")) ?: "");
        m->agent_port = json_integer_value(json_object_get(j, "port"));
        m->ekcert_matches =
            cert_b64 &&
            vg_b64_decode(cert_b64, strlen(cert_b64), VG_B64_STD, &der, &der_len) == 0 &&
            vg_tpm_public_match_cert(ek, der, der_len, NULL) == 0;
        vg_registration_key(challenge, VG_CHALLENGE_LEN, m->key);
        pthread_mutex_unlock(&m->lock);
        vg_http_reply_keylime(req, 200, "Success", json_pack("{s:s}", "blob", b64));
out:
        free(der);
        free(b64);
        free(blob);
        vg_tpm_public_free(ek);
        vg_tpm_public_free(ak);
        json_decref(j);
}

static void mock_put(struct vg_http_request *req, void *arg)
{
        struct mock *m = arg;
        json_t *j = vg_http_request_json(req, NULL);
        const char *tag = json_string_value(json_object_get(j, "auth_tag"));
        int r;

        pthread_mutex_lock(&m->lock);
        r = tag ? vg_auth_tag_check(m->key, vg_http_request_param(req, "uuid"), tag, NULL) : -1;
        if (r == 0)
                m->activations++;
        else
                m->bad_tags++;
        pthread_mutex_unlock(&m->lock);
        if (r == 0)
                vg_http_reply_keylime(req, 200, "Success", NULL);
        else
                vg_http_reply_error(req, 400, "mock: auth_tag mismatch");
        json_decref(j);
}

static void *mock_run(void *arg)
{
        struct mock *m = arg;

        event_base_dispatch(m->base);
        return NULL;
}

static void mock_start(struct mock *m)
{
        struct vg_error err = { 0 };
        struct vg_http_server_config hc = { .address = "127.0.0.1", .name = "mock-registrar" };
        struct timeval tv = { 0, 50000 };

        pthread_mutex_init(&m->lock, NULL);
        m->base = event_base_new();
        if (!m->base || vg_http_server_new(m->base, &hc, &m->srv, &err) < 0)
                tap_bail("mock registrar: %s", vg_error_str(&err));
        m->port = vg_http_server_port(m->srv);
        vg_http_server_route(m->srv, "GET", "/version", mock_version, m);
        vg_http_server_route(m->srv, "POST", "/v{version}/agents/{uuid}", mock_post, m);
        vg_http_server_route(m->srv, "PUT", "/v{version}/agents/{uuid}", mock_put, m);
        m->tick = event_new(m->base, -1, EV_PERSIST, mock_tick, m);
        event_add(m->tick, &tv);
        pthread_create(&m->thread, NULL, mock_run, m);
}

static void mock_stop(struct mock *m)
{
        atomic_store(&m->stop, true);
        pthread_join(m->thread, NULL);
        event_free(m->tick);
        vg_http_server_free(m->srv);
        vg_event_base_free_drained(m->base);
        free(m->aik_tpm);
        free(m->mtls_cert);
        free(m->ip);
}

static int mock_activations(struct mock *m)
{
        int n;

        pthread_mutex_lock(&m->lock);
        n = m->activations;
        pthread_mutex_unlock(&m->lock);
        return n;
}

/* ---- the agent as a subprocess ---- */

struct env {
        const char *vars[32];
        size_t n;
};

static void env_add(struct env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void env_add(struct env *e, const char *fmt, ...)
{
        va_list ap;
        char *s;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                tap_bail("out of memory");
        va_end(ap);
        e->vars[e->n++] = s; /* the child putenv()s it; the parent frees it */
}

static void env_free(struct env *e)
{
        for (size_t i = 0; i < e->n; i++)
                free((char *)e->vars[i]);
        e->n = 0;
}

static pid_t spawn(const char *prog, const struct env *e, const char *log, const char *extra_arg)
{
        pid_t pid = fork();

        if (pid < 0)
                tap_bail("fork: %s", strerror(errno));
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
                if (fd < 0)
                        _exit(127);
                dup2(fd, 1);
                dup2(fd, 2);
                int nul = open("/dev/null", O_RDONLY);
                dup2(nul, 0);
                for (size_t i = 0; i < e->n; i++)
                        putenv((char *)e->vars[i]);
                execl(prog, prog, "-f", "--log-level", "debug", extra_arg, (char *)NULL);
                _exit(127);
        }
        return pid;
}

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait for pid to exit (up to secs); its exit status, or -1 (still running, then killed). */
static int wait_exit(pid_t pid, double secs)
{
        double end = now() + secs;
        int st;

        while (now() < end) {
                pid_t r = waitpid(pid, &st, WNOHANG);
                if (r == pid)
                        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                usleep(20000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return -1;
}

static int stop(pid_t pid)
{
        kill(pid, SIGTERM);
        return wait_exit(pid, 20);
}

static void show_log(const char *log)
{
        char *text = tap_read_file(log, NULL);

        if (text)
                tap_diag("--- %s ---\n%s", log, text);
        free(text);
}

/* ---- HTTPS requests as the verifier makes them ---- */

struct ctx {
        char *dir;
        char *ca_dir, *other_ca_dir;
        struct vg_swtpm *tpm;
        int agent_port;
        SSL_CTX *client; /* pins the agent's certificate, presents the CA's client cert */
        char *ima_path, *mb_path;
};

static SSL_CTX *client_ctx(const char *pinned_pem, const char *ca_dir)
{
        char cert[512], key[512];
        struct vg_error err = { 0 };
        struct vg_tls_client_config c = { .pinned_cert_pem = pinned_pem };

        if (ca_dir) {
                snprintf(cert, sizeof(cert), "%s/client-cert.crt", ca_dir);
                snprintf(key, sizeof(key), "%s/client-private.pem", ca_dir);
                c.cert_file = cert;
                c.key_file = key;
        }
        SSL_CTX *ctx = vg_tls_client_ctx_new(&c, &err);
        if (!ctx)
                tap_bail("client TLS: %s", vg_error_str(&err));
        return ctx;
}

/* METHOD http(s)://127.0.0.1:port<target> with an optional JSON body: the HTTP status (or -1
 * when the request failed), the reply's "results" (new ref) and its "status" text (or why the
 * request failed). */
static int request(const char *method, int port, SSL_CTX *tls, const char *target, json_t *body,
                   json_t **results, char **status)
{
        char url[1024];
        struct vg_http_response *resp = NULL;
        struct vg_error err = { 0 };
        struct vg_http_client_config cc = { .timeout_ms = 10000 };

        snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", tls ? "https" : "http", port, target);
        struct vg_http_client_request req = {
                .method = method, .url = url, .json = body, .tls = tls
        };
        if (results)
                *results = NULL;
        if (status)
                *status = NULL;
        if (vg_http_fetch(&cc, &req, &resp, &err) < 0) {
                if (status)
                        *status = strdup(vg_error_str(&err));
                return -1;
        }
        int code = resp->status;
        json_t *j = vg_http_response_json(resp, NULL);
        if (results && j)
                *results = json_incref(json_object_get(j, "results"));
        if (status && j)
                *status = strdup(json_string_value(json_object_get(j, "status")) ?: "");
        json_decref(j);
        vg_http_response_free(resp);
        return code;
}

static int get(int port, SSL_CTX *tls, const char *target, json_t **results, char **status)
{
        return request("GET", port, tls, target, NULL, results, status);
}

static int post(int port, SSL_CTX *tls, const char *target, json_t *body, char **status)
{
        return request("POST", port, tls, target, body, NULL, status);
}

static bool wait_until_up(int port, SSL_CTX *tls, double secs)
{
        double end = now() + secs;

        while (now() < end) {
                if (get(port, tls, "/version", NULL, NULL) == 200)
                        return true;
                usleep(50000);
        }
        return false;
}

static const char *jstr(json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

/* Verify a quote as the verifier does; returns the parsed quote or NULL. */
static struct vg_quote *check_quote(json_t *res, const char *aik_b64, const char *nonce,
                                    const char *pubkey_pem, uint32_t want_mask, const char *what)
{
        struct vg_tpm_public *ak = NULL;
        struct vg_quote *q = NULL;
        struct vg_error err = { 0 };
        enum vg_quote_status st = VG_QUOTE_OK;
        const char *qs = jstr(res, "quote");
        struct vg_quote_expect exp = { .nonce = (const uint8_t *)nonce,
                                       .nonce_len = strlen(nonce),
                                       .hash_alg = VG_HASH_SHA256 };

        if (!ok(qs && vg_tpm_public_parse_b64(aik_b64, &ak, &err) == 0 &&
                    vg_quote_parse(qs, strlen(qs), &q, &err) == 0,
                "%s: quote and AK parse (%s)", what, vg_error_str(&err)))
                goto fail;
        if (!ok(vg_quote_verify(q, ak->pkey, &exp, &st, &err) == 0,
                "%s: quote verifies with the registered AK and the nonce (%s)", what,
                vg_error_str(&err)))
                goto fail;
        is_int(q->pcrs.selection.count == 1 ? q->pcrs.selection.bank[0].mask : 0,
               want_mask | 1u << 16, "%s: quoted PCRs are the mask plus PCR16", what);
        ok(vg_quote_check_pcr16(&q->pcrs, VG_HASH_SHA256, pubkey_pem, strlen(pubkey_pem), &st,
                                &err) == 0,
           "%s: PCR16 = H(0..0 || H(NK pubkey PEM)) (%s)", what, vg_error_str(&err));
        is_str(jstr(res, "hash_alg"), "sha256", "%s: hash_alg", what);
        is_str(jstr(res, "enc_alg"), "rsa", "%s: enc_alg", what);
        is_str(jstr(res, "sign_alg"), "rsassa", "%s: sign_alg", what);
        vg_tpm_public_free(ak);
        return q;
fail:
        vg_quote_free(q);
        vg_tpm_public_free(ak);
        return NULL;
}

static char *write_tmp(const char *dir, const char *name, const void *data, size_t len)
{
        char *path;
        FILE *f;

        if (asprintf(&path, "%s/%s", dir, name) < 0 || !(f = fopen(path, "w")))
                tap_bail("cannot write %s", name);
        fwrite(data, 1, len, f);
        fclose(f);
        return path;
}

/* tpm2_checkquote, the independent oracle, on the parts of a Keylime quote string. */
static int checkquote(const char *dir, const char *quote, const char *aik_b64, const char *nonce)
{
        uint8_t *part[3] = { 0 };
        size_t len[3] = { 0 };
        const char *p = quote + 1;
        struct vg_tpm_public *ak = NULL;
        char *pem = NULL, *nonce_hex, *out = NULL;
        int rc = -1;

        for (int i = 0; i < 3; i++) {
                const char *end = strchr(p, ':');
                size_t n = end ? (size_t)(end - p) : strlen(p);
                if (vg_b64_decode(p, n, VG_B64_STD, &part[i], &len[i]) < 0)
                        goto out;
                p += n + 1;
        }
        if (vg_tpm_public_parse_b64(aik_b64, &ak, NULL) < 0 ||
            vg_tpm_public_to_pem(ak, &pem, NULL) < 0)
                goto out;
        char *msg = write_tmp(dir, "quote.msg", part[0], len[0]);
        char *sig = write_tmp(dir, "quote.sig", part[1], len[1]);
        char *pcr = write_tmp(dir, "quote.pcrs", part[2], len[2]);
        char *akp = write_tmp(dir, "ak.pem", pem, strlen(pem));
        nonce_hex = vg_hex_encode(nonce, strlen(nonce));
        char *argv[] = { "tpm2_checkquote", "-u", akp,       "-m", msg, "-s", sig, "-f", pcr, "-g",
                         "sha256",          "-q", nonce_hex, NULL };
        rc = tap_run(argv, &out);
        if (rc != 0)
                tap_diag("tpm2_checkquote: %s", out ? out : "");
        free(out);
        free(nonce_hex);
        free(msg);
        free(sig);
        free(pcr);
        free(akp);
out:
        for (int i = 0; i < 3; i++)
                free(part[i]);
        free(pem);
        vg_tpm_public_free(ak);
        return rc;
}

/* The IMA list text from line n on, as the agent must send it. */
static const char *ima_from(const char *all, int n)
{
        const char *p = all;

        for (int i = 0; i < n && *p; i++) {
                const char *nl = strchr(p, '\n');
                p = nl ? nl + 1 : p + strlen(p);
        }
        return p;
}

static json_t *ima_quote(struct ctx *c, uint64_t entry, uint64_t *entry_out)
{
        char *target = tap_strf("/v2.1/quotes/integrity?nonce=s1&mask=0x400&ima_ml_entry=%llu",
                                (unsigned long long)entry);
        json_t *res = NULL;

        get(c->agent_port, c->client, target, &res, NULL);
        free(target);
        *entry_out =
            (uint64_t)json_integer_value(json_object_get(res, "ima_measurement_list_entry"));
        return res;
}

/* The IMA list slices Keylime's agent gives: from an entry on, nothing when nothing is new,
 * everything from entry 0 past the end; lines appended later or a list that starts over. */
static void test_ima_slices(struct ctx *c, const char *ima)
{
        uint64_t lines = 0, got;
        json_t *res;
        char *text;

        for (const char *p = ima; *p; p++)
                lines += *p == '\n';
        res = ima_quote(c, lines, &got);
        is_str(jstr(res, "ima_measurement_list"), "",
               "ima_ml_entry = number of entries: an empty list (nothing new yet)");
        is_int((long long)got, (long long)lines, "and ima_measurement_list_entry %llu",
               (unsigned long long)lines);
        json_decref(res);
        res = ima_quote(c, lines + 1, &got);
        is_str(jstr(res, "ima_measurement_list"), ima,
               "an entry past the end gives the whole list, as Keylime's agent does");
        is_int((long long)got, 0, "with ima_measurement_list_entry 0");
        json_decref(res);

        /* Two entries and half of a third arrive; the half line is not sent. */
        text = tap_strf("%s10 aa ima-ng sha256:01 /new1\n10 bb ima-ng sha256:02 /new2\n10 cc", ima);
        tap_write_file(c->ima_path, text);
        free(text);
        res = ima_quote(c, lines, &got);
        is_str(jstr(res, "ima_measurement_list"),
               "10 aa ima-ng sha256:01 /new1\n10 bb ima-ng sha256:02 /new2\n",
               "entries appended later come from where the last reply ended, complete lines only");
        is_int((long long)got, (long long)lines, "from entry %llu", (unsigned long long)lines);
        json_decref(res);
        res = ima_quote(c, lines + 1, &got);
        is_str(jstr(res, "ima_measurement_list"), "10 bb ima-ng sha256:02 /new2\n",
               "and from the entry after it");
        json_decref(res);

        /* The list starts over (a shorter file): slices come from the new one. */
        tap_write_file(c->ima_path, "10 dd ima-ng sha256:03 /a\n10 ee ima-ng sha256:04 /b\n");
        res = ima_quote(c, 1, &got);
        is_str(jstr(res, "ima_measurement_list"), "10 ee ima-ng sha256:04 /b\n",
               "after the list shrank, entry 1 is the new list's second line");
        json_decref(res);
        res = ima_quote(c, 3, &got);
        is_str(jstr(res, "ima_measurement_list"),
               "10 dd ima-ng sha256:03 /a\n10 ee ima-ng sha256:04 /b\n",
               "and an entry past its end gives it whole");
        is_int((long long)got, 0, "from entry 0");
        json_decref(res);
        tap_write_file(c->ima_path, ima);
}

static void base_env(struct ctx *c, struct env *e, const char *data_dir, int registrar_port)
{
        env_add(e, "VIGIL_CONF_DIR=%s/noconf", c->dir);
        env_add(e, "VIGIL_AGENT_TCTI=%s", vg_swtpm_tcti(c->tpm));
        env_add(e, "VIGIL_AGENT_DATA_DIR=%s", data_dir);
        env_add(e, "VIGIL_AGENT_PORT=%d", c->agent_port);
        env_add(e, "VIGIL_AGENT_REGISTRAR_PORT=%d", registrar_port);
        env_add(e, "VIGIL_AGENT_IMA_ML_PATH=%s", c->ima_path);
        env_add(e, "VIGIL_AGENT_MEASUREDBOOT_ML_PATH=%s", c->mb_path);
}

/* Whether path is a tmpfs mount point (from /proc/self/mountinfo). */
static bool is_tmpfs_mount(const char *path)
{
        char *info = tap_read_file("/proc/self/mountinfo", NULL), needle[1100];
        bool found;

        snprintf(needle, sizeof(needle), " %s ", path);
        char *at = info ? strstr(info, needle) : NULL;
        char *eol = at ? strchr(at, '\n') : NULL;
        found = at && eol && memmem(at, (size_t)(eol - at), " - tmpfs ", 9);
        free(info);
        return found;
}

static bool wait_for_file(const char *path, double secs)
{
        for (double end = now() + secs; now() < end; usleep(20000))
                if (access(path, F_OK) == 0)
                        return true;
        return false;
}

/* The tenant's and verifier's side of a Keylime payload: split K into U and V, encrypt each
 * to the agent's NK, send U with the auth_tag and a zip whose autorun.sh leaves a marker, then
 * V; then a signed revocation notification runs the configured action, a forged one nothing. */
static void test_payload(struct ctx *c, int port, const char *uuid, const char *nk_pem,
                         const char *data_dir, const char *revoker_key)
{
        char path[1100], marker[1024], zip[1024], *status = NULL, *out = NULL;
        struct vg_payload_bundle b = { 0 };
        struct vg_error err = { 0 };

        snprintf(path, sizeof(path), "%s/payload-src", c->dir);
        mkdir(path, 0700);
        snprintf(marker, sizeof(marker), "%s/autorun-ran", c->dir);
        char script[4096];
        /* A slow script: the agent must keep answering while it runs. */
        snprintf(script, sizeof(script), "#!/bin/sh\ntouch '%s.started'\nsleep 2\npwd > '%s'\n",
                 marker, marker);
        char *autorun = write_tmp(path, "autorun.sh", script, strlen(script));
        char *secret = write_tmp(path, "secret.txt", "s3cr3t\n", 7);
        snprintf(zip, sizeof(zip), "%s/payload.zip", c->dir);
        char *zip_argv[] = { "zip", "-q", "-j", zip, autorun, secret, NULL };
        is_int(tap_run(zip_argv, &out), 0, "payload zip made with zip(1)");
        free(out);
        size_t zip_len = 0;
        char *zip_bytes = tap_read_file(zip, &zip_len);

        BIO *bio = BIO_new_mem_buf(nk_pem, -1);
        EVP_PKEY *nk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
        ok(nk != NULL, "the NK from /keys/pubkey loads");
        char *u = NULL, *v = NULL;
        if (!nk || !zip_bytes || vg_payload_bundle_new(zip_bytes, zip_len, uuid, &b, &err) < 0 ||
            vg_payload_encrypt_half(nk, b.u, &u, &err) < 0 ||
            vg_payload_encrypt_half(nk, b.v, &v, &err) < 0)
                tap_bail("payload bundle: %s", vg_error_str(&err));

        is_int(get(port, c->client, "/v2.1/keys/verify?challenge=abc", NULL, &status), 400,
               "/keys/verify before the key exists: 400");
        contains(status, "not available", "saying the key is not there yet");
        free(status);

        /* A U with a wrong auth_tag is refused once V arrives; nothing is delivered. */
        char bad_tag[VG_PAYLOAD_AUTH_TAG_HEX + 1];
        memcpy(bad_tag, b.auth_tag_hex, sizeof(bad_tag));
        bad_tag[0] = bad_tag[0] == '0' ? '1' : '0';
        json_t *ju = json_pack("{s:s, s:s, s:s}", "encrypted_key", u, "auth_tag", bad_tag,
                               "payload", b.payload_b64);
        json_t *jv = json_pack("{s:s}", "encrypted_key", v);
        is_int(post(port, c->client, "/v2.1/keys/ukey", ju, NULL), 200,
               "U with a wrong tag: stored");
        is_int(post(port, c->client, "/v2.1/keys/vkey", jv, &status), 400,
               "V then completes a pair whose auth_tag does not match: 400");
        free(status);
        json_decref(ju);

        ju = json_pack("{s:s, s:s, s:s}", "encrypted_key", u, "auth_tag", b.auth_tag_hex, "payload",
                       b.payload_b64);
        is_int(post(port, c->client, "/v2.1/keys/ukey", ju, NULL), 200, "POST /keys/ukey");
        is_int(post(port, c->client, "/v2.1/keys/vkey", jv, NULL), 200, "POST /keys/vkey");
        json_decref(ju);
        json_decref(jv);
        snprintf(path, sizeof(path), "%s.started", marker);
        ok(wait_for_file(path, 15), "autorun.sh from the payload started");
        double t0 = now();
        is_int(get(port, c->client, "/version", NULL, NULL), 200,
               "the agent answers while the payload script runs");
        ok(now() - t0 < 1.0 && access(marker, F_OK) != 0,
           "at once, before the script has finished (%.3f s)", now() - t0);
        ok(wait_for_file(marker, 15), "autorun.sh from the payload ran to the end");
        snprintf(path, sizeof(path), "%s/secure", data_dir);
        if (geteuid() == 0)
                ok(is_tmpfs_mount(path),
                   "as root, the payload lives on a tmpfs at data_dir/secure");
        else
                tap_skip("not root", "the secure directory is a tmpfs");
        char *ran_in = tap_read_file(marker, NULL);
        snprintf(path, sizeof(path), "%s/secure/unzipped\n", data_dir);
        is_str(ran_in, path, "it ran in the secure unzipped directory");
        free(ran_in);
        snprintf(path, sizeof(path), "%s/secure/unzipped/secret.txt", data_dir);
        char *got = tap_read_file(path, NULL);
        is_str(got, "s3cr3t\n", "the payload's files are there, decrypted");
        free(got);
        snprintf(path, sizeof(path), "%s/secure/unzipped/derived_tci_key", data_dir);
        size_t klen = 0;
        got = tap_read_file(path, &klen);
        is_mem(got, klen, b.k, sizeof(b.k), "K is written as enc_keyname");
        free(got);

        json_t *res = NULL;
        is_int(get(port, c->client, "/v2.1/keys/verify?challenge=c0ffee", &res, NULL), 200,
               "GET /keys/verify");
        uint8_t mac[48];
        unsigned mac_len = sizeof(mac);
        HMAC(EVP_sha384(), b.k, sizeof(b.k), (const uint8_t *)"c0ffee", 6, mac, &mac_len);
        char *mac_hex = vg_hex_encode(mac, mac_len);
        is_str(jstr(res, "hmac"), mac_hex,
               "its HMAC-SHA384(K, challenge) is what the tenant expects");
        free(mac_hex);
        json_decref(res);

        /* Revocation: signed by the configured notifier, and forged. */
        FILE *f = fopen(revoker_key, "r");
        EVP_PKEY *rk = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
        if (f)
                fclose(f);
        EVP_PKEY *forger = EVP_RSA_gen(2048);
        char *msg = NULL, *sig = NULL, *forged = NULL;
        if (asprintf(&msg, "{\"type\": \"revocation\", \"agent_id\": \"%s\"}", uuid) < 0 || !rk ||
            vg_revocation_sign(msg, rk, &sig, &err) < 0 ||
            vg_revocation_sign(msg, forger, &forged, &err) < 0)
                tap_bail("revocation signature: %s", vg_error_str(&err));
        snprintf(path, sizeof(path), "%s/revoked", c->dir);
        json_t *jr = json_pack("{s:s, s:s}", "msg", msg, "signature", forged);
        is_int(post(port, c->client, "/v2.1/notifications/revocation", jr, &status), 400,
               "a revocation signed by another key: 400");
        json_decref(jr);
        free(status);
        usleep(200000);
        ok(access(path, F_OK) != 0, "and its action did not run");
        jr = json_pack("{s:s, s:s}", "msg", msg, "signature", sig);
        is_int(post(port, c->client, "/v2.1/notifications/revocation", jr, NULL), 200,
               "a revocation signed by revocation_cert's key: 200");
        json_decref(jr);
        ok(wait_for_file(path, 10), "the configured revocation action ran");
        got = tap_read_file(path, NULL);
        contains(got, uuid, "and got the notification's JSON");
        free(got);

        EVP_PKEY_free(rk);
        EVP_PKEY_free(forger);
        EVP_PKEY_free(nk);
        free(msg);
        free(sig);
        free(forged);
        free(u);
        free(v);
        free(zip_bytes);
        free(autorun);
        free(secret);
        vg_payload_bundle_clear(&b);
}

/* ---- the tests ---- */

static void test_refusals(struct ctx *c)
{
        char log[512], *text;
        struct env e = { 0 };
        int rc;

        base_env(c, &e, "/nonexistent-unused", 1);
        env_add(&e, "VIGIL_AGENT_TRUSTED_CLIENT_CA=%s/cacert.crt", c->ca_dir);
        env_add(&e, "VIGIL_AGENT_SERVER_KEY=keys/server.pem");
        snprintf(log, sizeof(log), "%s/refuse-relative.log", c->dir);
        rc = wait_exit(spawn(getenv("VIGIL_AGENT"), &e, log, NULL), 20);
        ok(rc > 0, "a relative server_key is refused at start (exit %d)", rc);
        text = tap_read_file(log, NULL);
        contains(text, "server_key", "the message names the option");
        contains(text, "absolute", "the message says the path must be absolute");
        free(text);

        char data[512];
        snprintf(data, sizeof(data), "%s/refuse-data", c->dir);
        struct env e2 = { 0 };
        base_env(c, &e2, data, 1);
        snprintf(log, sizeof(log), "%s/refuse-noca.log", c->dir);
        rc = wait_exit(spawn(getenv("VIGIL_AGENT"), &e2, log, NULL), 30);
        ok(rc > 0, "no trusted_client_ca: refused at start (exit %d)", rc);
        text = tap_read_file(log, NULL);
        contains(text, "trusted_client_ca", "the message names trusted_client_ca");
        free(text);
        env_free(&e);
        env_free(&e2);
}

static SSL_CTX *registrar_ctx(struct ctx *c)
{
        char ca[512], cert[512], key[512];
        struct vg_error err = { 0 };

        snprintf(ca, sizeof(ca), "%s/cacert.crt", c->ca_dir);
        snprintf(cert, sizeof(cert), "%s/client-cert.crt", c->ca_dir);
        snprintf(key, sizeof(key), "%s/client-private.pem", c->ca_dir);
        struct vg_tls_client_config tc = { .ca_file = ca, .cert_file = cert, .key_file = key };
        SSL_CTX *ctx = vg_tls_client_ctx_new(&tc, &err);
        if (!ctx)
                tap_bail("registrar client TLS: %s", vg_error_str(&err));
        return ctx;
}

/* Against the real vigil-registrar: the agent starts first (the registrar is down, so it
 * retries), registers and activates; the registrar then serves it as active; a restart
 * re-registers with the same identity and the registrar accepts it. */
static void test_real_registrar(struct ctx *c, const char *ima)
{
        char log[512], rlog[512], data[512], regdata[512], target[1100];
        int port = tap_free_port(), tls_port = tap_free_port();
        struct env re = { 0 }, e = { 0 };
        json_t *res = NULL;
        int code = -1;

        snprintf(regdata, sizeof(regdata), "%s/registrar", c->dir);
        mkdir(regdata, 0700);
        env_add(&re, "VIGIL_CONF_DIR=%s/noconf", c->dir);
        env_add(&re, "VIGIL_REGISTRAR_IP=127.0.0.1");
        env_add(&re, "VIGIL_REGISTRAR_PORT=%d", port);
        env_add(&re, "VIGIL_REGISTRAR_TLS_PORT=%d", tls_port);
        env_add(&re, "VIGIL_REGISTRAR_TLS_DIR=%s", c->ca_dir);
        env_add(&re, "VIGIL_REGISTRAR_DATA_DIR=%s", regdata);
        env_add(&re, "VIGIL_REGISTRAR_TPM_CERT_STORE=%s", vg_swtpm_ek_ca_dir(c->tpm));

        snprintf(data, sizeof(data), "%s/data-real", c->dir);
        base_env(c, &e, data, port);
        env_add(&e, "VIGIL_AGENT_TRUSTED_CLIENT_CA=%s/cacert.crt", c->ca_dir);
        snprintf(log, sizeof(log), "%s/agent-real.log", c->dir);
        pid_t agent = spawn(getenv("VIGIL_AGENT"), &e, log, NULL);
        usleep(300000);
        snprintf(rlog, sizeof(rlog), "%s/registrar.log", c->dir);
        pid_t reg = spawn(getenv("VIGIL_REGISTRAR"), &re, rlog, NULL);

        SSL_CTX *rtls = registrar_ctx(c);
        char *uuid_file = NULL;
        snprintf(target, sizeof(target), "%s/agent_uuid", data);
        double end = now() + 25;
        while (now() < end && !(uuid_file = tap_read_file(target, NULL)))
                usleep(50000);
        if (!uuid_file) {
                tap_skip("the agent did not start", "real registrar tests");
                goto out;
        }
        uuid_file[strcspn(uuid_file, "\n")] = '\0';
        snprintf(target, sizeof(target), "/v2.1/agents/%s", uuid_file);
        while (now() < end) {
                if (waitpid(reg, NULL, WNOHANG) == reg) {
                        reg = 0;
                        break;
                }
                code = get(tls_port, rtls, target, &res, NULL);
                if (code == 200)
                        break;
                json_decref(res);
                res = NULL;
                usleep(100000);
        }
        if (!reg) {
                show_log(rlog);
                tap_skip("vigil-registrar exited at start", "real registrar tests");
                goto out;
        }
        if (!is_int(code, 200,
                    "the real registrar serves the agent as active (retried while "
                    "the registrar was down)")) {
                show_log(log);
                show_log(rlog);
                goto out;
        }
        char *aik = strdup(jstr(res, "aik_tpm") ?: "");
        char *mtls = strdup(jstr(res, "mtls_cert") ?: "");
        json_decref(res);
        code = get(tls_port, rtls, "/v2.1/agents/", &res, NULL);
        bool listed = false;
        size_t i;
        json_t *v;
        json_array_foreach (json_object_get(res, "uuids"), i, v)
                listed |= json_is_string(v) && strcmp(json_string_value(v), uuid_file) == 0;
        ok(listed, "the registrar lists the agent");
        json_decref(res);

        SSL_CTX *client = client_ctx(mtls, c->ca_dir);
        code = get(c->agent_port, client, "/v2.1/keys/pubkey", &res, NULL);
        char *pubkey = strdup(jstr(res, "pubkey") ?: "");
        json_decref(res);
        code = get(c->agent_port, client,
                   "/v2.1/quotes/integrity?nonce=RealReg1&mask=0x400&partial=0&ima_ml_entry=2",
                   &res, NULL);
        is_int(code, 200, "integrity quote from the agent the registrar knows");
        struct vg_quote *q = check_quote(res, aik, "RealReg1", pubkey, 0x400, "real registrar");
        vg_quote_free(q);
        is_str(jstr(res, "ima_measurement_list"), ima_from(ima, 2), "IMA list from entry 2");
        is_int(checkquote(c->dir, jstr(res, "quote"), aik, "RealReg1"), 0,
               "tpm2_checkquote accepts it with the registrar's aik_tpm");
        json_decref(res);

        /* restart: the same EK, AK and UUID register again */
        is_int(stop(agent), 0, "agent stops on SIGTERM");
        snprintf(log, sizeof(log), "%s/agent-real2.log", c->dir);
        agent = spawn(getenv("VIGIL_AGENT"), &e, log, NULL);
        end = now() + 20;
        char *text = NULL;
        while (now() < end) {
                free(text);
                text = tap_read_file(log, NULL);
                if (text &&
                    (strstr(text, "activated with the registrar") || strstr(text, "refused")))
                        break;
                usleep(100000);
        }
        contains(text, "activated with the registrar", "the registrar accepts the re-registration");
        free(text);
        code = get(tls_port, rtls, target, &res, NULL);
        is_int(code, 200, "still active after the restart");
        is_str(jstr(res, "aik_tpm"), aik, "same AK at the registrar");
        is_str(jstr(res, "mtls_cert"), mtls, "same mtls_cert at the registrar");
        json_decref(res);
        SSL_CTX_free(client);
        free(aik);
        free(mtls);
        free(pubkey);
out:
        free(uuid_file);
        SSL_CTX_free(rtls);
        is_int(stop(agent), 0, "agent exits 0 on SIGTERM");
        if (reg)
                is_int(stop(reg), 0, "registrar exits 0 on SIGTERM");
        env_free(&re);
        env_free(&e);
}

/* enable_agent_mtls = false (plain HTTP), uuid = "hash_ek", and no IMA list on the machine. */
static void test_insecure_variant(struct ctx *c)
{
        char log[512], data[512];
        struct env e = { 0 };
        json_t *res = NULL;
        int code;

        snprintf(data, sizeof(data), "%s/data-plain", c->dir);
        base_env(c, &e, data, tap_free_port());
        env_add(&e, "VIGIL_AGENT_ENABLE_AGENT_MTLS=false");
        env_add(&e, "VIGIL_AGENT_UUID=hash_ek");
        env_add(&e, "VIGIL_AGENT_IMA_ML_PATH=%s/no-such-ima-list", c->dir);
        snprintf(log, sizeof(log), "%s/agent-plain.log", c->dir);
        pid_t pid = spawn(getenv("VIGIL_AGENT"), &e, log, NULL);
        ok(wait_until_up(c->agent_port, NULL, 15), "enable_agent_mtls = false serves plain HTTP");
        code = get(c->agent_port, NULL, "/v2.1/agent/info", &res, NULL);
        const char *id = jstr(res, "agent_uuid");
        ok(code == 200 && id && strlen(id) == 64 && strspn(id, "0123456789abcdef") == 64,
           "uuid = \"hash_ek\" gives a SHA-256 hex id (%s)", id ? id : "none");
        json_decref(res);
        code = get(c->agent_port, NULL, "/v2.1/quotes/integrity?nonce=abc&mask=0x400", &res, NULL);
        is_int(code, 200, "integrity quote without an IMA list");
        ok(jstr(res, "quote") && !json_object_get(res, "ima_measurement_list") &&
               !json_object_get(res, "ima_measurement_list_entry"),
           "no IMA list on the machine: the fields are left out");
        json_decref(res);
        is_int(stop(pid), 0, "plain-HTTP agent exits 0 on SIGTERM");
        char *text = tap_read_file(log, NULL);
        contains(text, "plain HTTP", "the insecure mode is logged as a warning");
        free(text);
        env_free(&e);
}

int main(void)
{
        struct ctx c = { 0 };
        struct vg_error err = { 0 };
        struct mock m = { 0 };
        char log[512], data[512], buf[1024];
        char *out = NULL;

        signal(SIGPIPE, SIG_IGN);
        c.dir = tap_tmpdir();
        if (asprintf(&c.ca_dir, "%s/ca", c.dir) < 0 ||
            asprintf(&c.other_ca_dir, "%s/ca2", c.dir) < 0)
                return 1;
        char *ca1[] = { getenv("VIGIL_CLI"), "ca", "init", c.ca_dir, NULL };
        char *ca2[] = { getenv("VIGIL_CLI"), "ca", "init", c.other_ca_dir, NULL };
        if (tap_run(ca1, &out) != 0 || tap_run(ca2, NULL) != 0)
                tap_bail("vigil ca init failed: %s", out ? out : "");
        free(out);
        if (vg_swtpm_start(NULL, &c.tpm, &err) < 0)
                tap_bail("swtpm: %s", vg_error_str(&err));
        char *ima_src = tap_shared_data("ima/keylime-ima-log-sha256.ascii");
        char *mb_src = tap_shared_data("eventlog/keylime-rhel95-secureboot.bin");
        size_t ima_len, mb_len;
        char *ima = tap_read_file(ima_src, &ima_len);
        char *mb = tap_read_file(mb_src, &mb_len);
        if (!ima || !mb)
                tap_bail("cannot read the shared IMA list or event log");
        c.ima_path = write_tmp(c.dir, "ima.ascii", ima, ima_len);
        c.mb_path = write_tmp(c.dir, "bios.bin", mb, mb_len);
        c.agent_port = tap_free_port();

        test_refusals(&c);

        /* --- first start, against the mock registrar --- */
        mock_start(&m);
        struct env e = { 0 };
        snprintf(data, sizeof(data), "%s/data", c.dir);
        base_env(&c, &e, data, m.port);
        env_add(&e, "VIGIL_AGENT_TRUSTED_CLIENT_CA=%s/cacert.crt", c.ca_dir);
        /* Revocations: signed with the key of a certificate our CA issues; the action leaves
         * the notification's JSON in a marker file. */
        char revoker_key[600], actions_dir[600];
        char *issue[] = { getenv("VIGIL_CLI"), "ca",       "issue", c.ca_dir, "--name",
                          "revoker",           "--client", NULL };
        if (tap_run(issue, NULL) != 0)
                tap_bail("vigil ca issue revoker failed");
        snprintf(revoker_key, sizeof(revoker_key), "%s/revoker-private.pem", c.ca_dir);
        snprintf(actions_dir, sizeof(actions_dir), "%s/actions", c.dir);
        mkdir(actions_dir, 0700);
        /* Written under another name and renamed, so the test never reads it half-written. */
        snprintf(buf, sizeof(buf),
                 "#!/bin/sh\ncat \"$1\" > '%s/revoked.tmp' && mv '%s/revoked.tmp' '%s/revoked'\n",
                 c.dir, c.dir, c.dir);
        free(write_tmp(actions_dir, "mark.sh", buf, strlen(buf)));
        snprintf(buf, sizeof(buf), "%s/mark.sh", actions_dir);
        chmod(buf, 0700);
        env_add(&e, "VIGIL_AGENT_ENABLE_REVOCATION_NOTIFICATIONS=true");
        env_add(&e, "VIGIL_AGENT_REVOCATION_CERT=%s/revoker-cert.crt", c.ca_dir);
        env_add(&e, "VIGIL_AGENT_REVOCATION_ACTIONS_DIR=%s", actions_dir);
        env_add(&e, "VIGIL_AGENT_REVOCATION_ACTIONS=mark.sh");
        snprintf(log, sizeof(log), "%s/agent1.log", c.dir);
        pid_t pid = spawn(getenv("VIGIL_AGENT"), &e, log, NULL);

        double end = now() + 20;
        while (mock_activations(&m) < 1 && now() < end)
                usleep(50000);
        if (!is_int(mock_activations(&m), 1,
                    "the agent registered and activated (auth_tag "
                    "accepted by credential.h's check)")) {
                show_log(log);
                tap_bail("no registration");
        }
        pthread_mutex_lock(&m.lock);
        char *uuid = strdup(m.uuid), *aik = strdup(m.aik_tpm), *mtls = strdup(m.mtls_cert);
        is_str(m.version, "2.3", "registration used the newest version both sides speak");
        ok(m.ekcert_matches, "ekcert is the EK's certificate (DER, base64)");
        is_str(m.ip, "127.0.0.1", "registered ip");
        is_int(m.agent_port, c.agent_port, "registered port");
        is_int(m.bad_tags, 0, "no wrong auth_tag");
        pthread_mutex_unlock(&m.lock);
        snprintf(buf, sizeof(buf), "%s/server-cert.crt", data);
        char *cert_file = tap_read_file(buf, NULL);
        is_str(mtls, cert_file, "mtls_cert is the agent's server certificate");
        free(cert_file);
        snprintf(buf, sizeof(buf), "%s/nk-private.pem", data);
        struct stat sb;
        ok(stat(buf, &sb) == 0 && (sb.st_mode & 0777) == 0600, "the NK is kept with mode 0600");

        c.client = client_ctx(mtls, c.ca_dir);
        ok(wait_until_up(c.agent_port, c.client, 10), "the API answers over mTLS");

        json_t *res = NULL;
        char *status = NULL;
        int code;

        code = get(c.agent_port, c.client, "/version", &res, NULL);
        is_int(code, 200, "GET /version");
        is_str(jstr(res, "supported_version"), "2.5", "supported_version");
        is_int(json_array_size(json_object_get(res, "supported_versions")), 5,
               "supported_versions lists 2.1..2.5");
        json_decref(res);

        code = get(c.agent_port, c.client, "/v2.2/agent/info", &res, NULL);
        is_int(code, 200, "GET /v2.2/agent/info");
        is_str(jstr(res, "agent_uuid"), uuid, "agent_uuid is the registered one");
        is_str(jstr(res, "tpm_hash_alg"), "sha256", "tpm_hash_alg");
        is_str(jstr(res, "tpm_enc_alg"), "rsa", "tpm_enc_alg");
        is_str(jstr(res, "tpm_sign_alg"), "rsassa", "tpm_sign_alg");
        ok(json_is_integer(json_object_get(res, "ak_handle")), "ak_handle");
        json_decref(res);

        code = get(c.agent_port, c.client, "/v2.1/keys/pubkey", &res, NULL);
        is_int(code, 200, "GET /v2.1/keys/pubkey");
        char *pubkey = strdup(jstr(res, "pubkey") ?: "");
        contains(pubkey, "-----BEGIN PUBLIC KEY-----", "pubkey is a PEM public key");
        json_decref(res);

        /* identity quote */
        code = get(c.agent_port, c.client, "/v2.5/quotes/identity?nonce=abcdefghij0123456789", &res,
                   NULL);
        is_int(code, 200, "GET /quotes/identity");
        struct vg_quote *q = check_quote(res, aik, "abcdefghij0123456789", pubkey, 0, "identity");
        is_str(jstr(res, "pubkey"), pubkey, "identity quote carries the NK");
        vg_quote_free(q);
        json_decref(res);

        /* integrity quote, IMA from entry 1, no PCR 0 */
        code = get(c.agent_port, c.client,
                   "/v2.1/quotes/integrity?nonce=N0nce42&mask=0x400&partial=0&ima_ml_entry=1", &res,
                   NULL);
        is_int(code, 200, "GET /quotes/integrity mask 0x400");
        q = check_quote(res, aik, "N0nce42", pubkey, 0x400, "integrity");
        vg_quote_free(q);
        is_str(jstr(res, "pubkey"), pubkey, "partial=0 sends the pubkey");
        is_str(jstr(res, "ima_measurement_list"), ima_from(ima, 1),
               "ima_measurement_list is the list from its second line (entry 1)");
        is_int(json_integer_value(json_object_get(res, "ima_measurement_list_entry")), 1,
               "ima_measurement_list_entry");
        ok(!json_object_get(res, "mb_measurement_list"), "no UEFI log without PCR 0");
        is_int(checkquote(c.dir, jstr(res, "quote"), aik, "N0nce42"), 0,
               "tpm2_checkquote accepts the quote");
        ok(checkquote(c.dir, jstr(res, "quote"), aik, "OtherNonce") != 0,
           "tpm2_checkquote refuses it with another nonce");
        json_decref(res);

        /* partial, PCR 0: the UEFI log */
        code = get(c.agent_port, c.client,
                   "/v2.3/quotes/integrity?nonce=x1&mask=0x1&partial=1&ima_ml_entry=0", &res, NULL);
        is_int(code, 200, "GET /quotes/integrity mask 0x1 partial=1");
        q = check_quote(res, aik, "x1", pubkey, 0x1, "integrity+mb");
        vg_quote_free(q);
        ok(!json_object_get(res, "pubkey"), "partial=1 leaves out the pubkey");
        char *mb_b64 = vg_b64_encode(mb, mb_len, VG_B64_STD);
        is_str(jstr(res, "mb_measurement_list"), mb_b64, "mb_measurement_list is the UEFI log");
        is_str(jstr(res, "ima_measurement_list"), ima, "ima_ml_entry=0 sends the whole list");
        free(mb_b64);
        json_decref(res);

        test_ima_slices(&c, ima);

        /* bad parameters */
        static const struct {
                const char *target, *needle;
        } bad[] = {
                { "/v2.1/quotes/identity", "nonce" },
                { "/v2.1/quotes/identity?nonce=abc-def", "nonce" },
                { "/v2.1/quotes/identity?nonce="
                  "01234567890123456789012345678901234567890123456789012345678901234",
                  "64" },
                { "/v2.1/quotes/integrity?nonce=a&mask=0xZZ", "mask" },
                { "/v2.1/quotes/integrity?nonce=a&mask=0x1000000", "mask" },
                { "/v2.1/quotes/integrity?nonce=a&mask=0x1&partial=2", "partial" },
                { "/v2.1/quotes/integrity?nonce=a&mask=0x1&ima_ml_entry=-1", "ima_ml_entry" },
                { "/v2.1/quotes/integrity?nonce=a&mask=0x1&ima_ml_entry=x", "ima_ml_entry" },
                { "/v1.0/agent/info", "version" },
                { "/v3.0/quotes/identity?nonce=a", "version" },
        };
        for (size_t i = 0; i < VG_ARRAY_SIZE(bad); i++) {
                code = get(c.agent_port, c.client, bad[i].target, NULL, &status);
                is_int(code, 400, "%s -> 400", bad[i].target);
                contains(status, bad[i].needle, "its message names %s", bad[i].needle);
                free(status);
        }
        test_payload(&c, c.agent_port, uuid, pubkey, data, revoker_key);

        /* mTLS: no certificate, or one from another CA */
        SSL_CTX *nocert = client_ctx(mtls, NULL);
        code = get(c.agent_port, nocert, "/version", NULL, &status);
        is_int(code, -1, "a client without a certificate is refused (%s)", status ?: "");
        free(status);
        SSL_CTX *other = client_ctx(mtls, c.other_ca_dir);
        code = get(c.agent_port, other, "/version", NULL, &status);
        is_int(code, -1, "a client certificate from another CA is refused (%s)", status ?: "");
        free(status);

        is_int(stop(pid), 0, "SIGTERM: the agent exits 0");
        snprintf(buf, sizeof(buf), "%s/secure", data);
        ok(!is_tmpfs_mount(buf), "and unmounts its tmpfs: the decrypted payload is gone");
        char *log1 = tap_read_file(log, NULL);
        contains(log1, "registering with", "registration steps are logged");
        contains(log1, "integrity quote requested", "quote requests are logged at debug");
        free(log1);

        /* --- restart with the guide's drop-ins: same identity, both CAs trusted --- */
        char confd[512];
        snprintf(confd, sizeof(confd), "%s/conf/agent.conf.d", c.dir);
        snprintf(buf, sizeof(buf), "%s/conf", c.dir);
        mkdir(buf, 0755);
        mkdir(confd, 0755);
        char *p1 = NULL, *p2 = NULL;
        if (asprintf(&p1, "%s/00-registrar.conf", confd) < 0 ||
            asprintf(&p2, "%s/10-keys-and-certs.conf", confd) < 0)
                return 1;
        tap_write_file(p1, "[agent]\nregistrar_ip = \"127.0.0.1\"\n");
        snprintf(buf, sizeof(buf),
                 "[agent]\ntrusted_client_ca = ['%s/cacert.crt', '%s/cacert.crt']\n", c.ca_dir,
                 c.other_ca_dir);
        tap_write_file(p2, buf);
        struct env e2 = { 0 };
        base_env(&c, &e2, data, m.port);
        env_add(&e2, "VIGIL_CONF_DIR=%s/conf", c.dir); /* later putenv wins */
        snprintf(log, sizeof(log), "%s/agent-show.log", c.dir);
        wait_exit(spawn(getenv("VIGIL_AGENT"), &e2, log, "--show-config"), 20);
        char *shown = tap_read_file(log, NULL);
        contains(shown, "00-registrar.conf", "the guide's registrar drop-in is read");
        contains(shown, "10-keys-and-certs.conf", "the keys-and-certs drop-in is read");
        free(shown);

        snprintf(log, sizeof(log), "%s/agent2.log", c.dir);
        pid = spawn(getenv("VIGIL_AGENT"), &e2, log, NULL);
        end = now() + 20;
        while (mock_activations(&m) < 2 && now() < end)
                usleep(50000);
        is_int(mock_activations(&m), 2, "the restarted agent registers again");
        pthread_mutex_lock(&m.lock);
        is_str(m.uuid, uuid, "same UUID after restart");
        is_str(m.aik_tpm, aik, "same AK after restart");
        is_str(m.mtls_cert, mtls, "same TLS certificate after restart");
        pthread_mutex_unlock(&m.lock);
        ok(wait_until_up(c.agent_port, c.client, 10), "the restarted agent answers");
        code = get(c.agent_port, c.client, "/v2.1/keys/pubkey", &res, NULL);
        is_str(jstr(res, "pubkey"), pubkey, "same NK after restart");
        json_decref(res);
        code = get(c.agent_port, other, "/version", NULL, NULL);
        is_int(code, 200, "with both CAs in trusted_client_ca, the second CA's client is accepted");
        is_int(stop(pid), 0, "SIGTERM again: exit 0");
        mock_stop(&m);

        test_real_registrar(&c, ima);
        test_insecure_variant(&c);

        env_free(&e);
        env_free(&e2);
        free(p1);
        free(p2);
        free(ima_src);
        free(mb_src);
        free(c.ima_path);
        free(c.mb_path);
        free(c.ca_dir);
        free(c.other_ca_dir);
        free(c.dir);
        SSL_CTX_free(nocert);
        SSL_CTX_free(other);
        SSL_CTX_free(c.client);
        free(uuid);
        free(aik);
        free(mtls);
        free(pubkey);
        free(ima);
        free(mb);
        vg_swtpm_free(c.tpm);
        return tap_done();
}
