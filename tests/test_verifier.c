/* vigil tests: vigil-verifier end to end on loopback (CA, swtpm, registrar, verifier, agent):
 * an agent added through the REST API as a tenant does, attestation that keeps passing, V
 * delivered after the first quote, a file outside the policy caught and reported once while
 * polling goes on, reactivate, restart resume, agent reboot, API errors, allowlists CRUD,
 * /verify/identity and /verify/evidence including a forged signature (CVE-2023-3674). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "dsse.h"
#include "encoding.h"
#include "hash.h"
#include "http_client.h"
#include "payload.h"
#include "revocation.h"
#include "stack.h"
#include "tap.h"
#include "tls.h"

static struct vg_stack *S;
static SSL_CTX *admin_tls; /* the CA's client certificate, trusting the CA */
static SSL_CTX *anon_tls;  /* trusting the CA, no client certificate */
static SSL_CTX *agent_tls; /* pinned to the agent's mtls_cert, with the client certificate */
static char *aik_tpm, *mtls_cert, *files_dir, *boot_agg;

/* One request; returns the status, *out the parsed body (may be NULL). */
static int request(SSL_CTX *tls, const char *method, const char *url, json_t *body, json_t **out)
{
        struct vg_http_client_config cc = { .tls = tls, .timeout_ms = 20000 };
        struct vg_http_client_request rq = { .method = method, .url = url, .json = body };
        struct vg_http_response *resp = NULL;
        struct vg_error err = { 0 };
        int status;

        if (out)
                *out = NULL;
        if (vg_http_fetch(&cc, &rq, &resp, &err) < 0) {
                tap_diag("%s %s: %s", method, url, vg_error_str(&err));
                return -1;
        }
        status = resp->status;
        if (out)
                *out = vg_http_response_json(resp, &err);
        vg_http_response_free(resp);
        return status;
}

static int raw_request(const char *method, const char *url, const char *body, json_t **out)
{
        struct vg_http_client_config cc = { .tls = admin_tls, .timeout_ms = 20000 };
        struct vg_http_client_request rq = { .method = method,
                                             .url = url,
                                             .body = body,
                                             .body_len = strlen(body),
                                             .content_type = "application/json" };
        struct vg_http_response *resp = NULL;
        struct vg_error err = { 0 };
        int status;

        *out = NULL;
        if (vg_http_fetch(&cc, &rq, &resp, &err) < 0)
                return -1;
        status = resp->status;
        *out = vg_http_response_json(resp, &err);
        vg_http_response_free(resp);
        return status;
}

/* A verifier URL; valid until eight more are made. */
static const char *cv(const char *path)
{
        static char buf[8][512];
        static unsigned i;
        char *b = buf[i++ % 8];

        snprintf(b, sizeof(buf[0]), "https://127.0.0.1:%d%s", S->verifier.port, path);
        return b;
}

static json_t *agent_status(void)
{
        const char *url = cv("/v2.5/agents/" VG_STACK_UUID);
        json_t *j = NULL, *res;

        if (request(admin_tls, "GET", url, NULL, &j) != 200) {
                json_decref(j);
                return NULL;
        }
        res = json_incref(json_object_get(j, "results"));
        json_decref(j);
        return res;
}

static long long status_int(const char *key)
{
        json_t *st = agent_status();
        long long v = st ? json_integer_value(json_object_get(st, key)) : -1;

        json_decref(st);
        return v;
}

/* Wait until results[key] >= want (up to secs); returns the last value. */
static long long wait_int(const char *key, long long want, double secs)
{
        long long v = -1;

        for (int i = 0; i < (int)(secs * 10); i++) {
                v = status_int(key);
                if (v >= want)
                        break;
                usleep(100000);
        }
        return v;
}

static int count_in_log(const struct vg_stack_daemon *d, const char *needle)
{
        char *text = tap_read_file(d->log, NULL);
        int n = 0;

        for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
                n++;
        free(text);
        return n;
}

static int wait_count_in_log(const struct vg_stack_daemon *d, const char *needle, int want,
                             double secs)
{
        int n = 0;

        for (int i = 0; i < (int)(secs * 20); i++) {
                if ((n = count_in_log(d, needle)) >= want)
                        break;
                usleep(50000);
        }
        return n;
}

/* PEM text of a key's public half. */
static char *pub_pem(EVP_PKEY *k)
{
        BIO *b = BIO_new(BIO_s_mem());
        char *data = NULL, *out;
        long n;

        if (!b || PEM_write_bio_PUBKEY(b, k) != 1)
                tap_bail("PEM_write_bio_PUBKEY");
        n = BIO_get_mem_data(b, &data);
        out = strndup(data, (size_t)n);
        BIO_free(b);
        return out;
}

static char *file_sha256(const char *path)
{
        uint8_t d[32];

        if (vg_hash_file(VG_HASH_SHA256, path, d) < 0)
                tap_bail("hash %s", path);
        return vg_hex_encode(d, sizeof(d));
}

static char *make_file(const char *name, const char *content)
{
        char *p = tap_strf("%s/%s", files_dir, name);
        if (tap_write_file(p, content) < 0)
                tap_bail("write %s", p);
        return p;
}

/* A runtime policy (JSON v1) allowing boot_aggregate and the given TARGET=LOCAL pairs. */
static char *policy_json(const char *const *pairs)
{
        json_t *digests = json_object();

        json_object_set_new(digests, "boot_aggregate", json_pack("[s]", boot_agg));
        for (size_t i = 0; pairs[i]; i++) {
                char *target = strdup(pairs[i]), *eq = strchr(target, '=');
                *eq = '\0';
                char *sum = file_sha256(eq + 1);
                json_object_set_new(digests, target, json_pack("[s]", sum));
                free(sum);
                free(target);
        }
        json_t *p =
            json_pack("{s:{s:i, s:i}, s:i, s:o, s:[s], s:{}, s:{s:[], s:s, s:n}, s:{}, "
                      "s:s}",
                      "meta", "version", 1, "generator", 3, "release", 0, "digests", digests,
                      "excludes", "^/tmp/.*", "keyrings", "ima", "ignored_keyrings", "log_hash_alg",
                      "sha1", "dm_policy", "ima-buf", "verification-keys", "");
        char *s = json_dumps(p, JSON_COMPACT);
        json_decref(p);
        return s;
}

static char *b64(const char *s)
{
        return vg_b64_encode(s, strlen(s), VG_B64_STD);
}

static void sim(const char *cmd, const char *arg)
{
        char *out = NULL;
        int r = vg_stack_ima_sim(S, &out, cmd, arg, (char *)NULL);
        if (r != 0)
                tap_bail("ima-sim %s %s: %s", cmd, arg ? arg : "", out ? out : "");
        free(out);
}

static char *urlencode(const char *s)
{
        char *out = malloc(strlen(s) * 3 + 1), *p = out;

        for (; *s; s++) {
                if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                    (*s >= '0' && *s <= '9') || *s == ':')
                        *p++ = *s;
                else
                        p += sprintf(p, "%%%02X", (unsigned char)*s);
        }
        *p = '\0';
        return out;
}

/* ---- a webhook receiver: plain HTTP on 127.0.0.1, one request per connection ---- */

struct hook {
        int fd, port;
        pthread_t th;
        atomic_bool stop;
        pthread_mutex_t mu;
        char *bodies[32];
        int n;
};

static void hook_serve(struct hook *h, int c)
{
        char buf[65536];
        size_t got = 0;
        char *end = NULL;
        long clen = -1;

        while (got < sizeof(buf) - 1) {
                struct pollfd pfd = { .fd = c, .events = POLLIN };
                if (poll(&pfd, 1, 5000) <= 0)
                        break;
                ssize_t r = read(c, buf + got, sizeof(buf) - 1 - got);
                if (r <= 0)
                        break;
                got += (size_t)r;
                buf[got] = '\0';
                if (!end && (end = strstr(buf, "\r\n\r\n"))) {
                        char *cl = strcasestr(buf, "\r\nContent-Length:");
                        clen = cl && cl < end ? strtol(cl + 17, NULL, 10) : 0;
                }
                if (end && (long)(got - (size_t)(end + 4 - buf)) >= clen)
                        break;
        }
        if (end && clen >= 0 && (long)(got - (size_t)(end + 4 - buf)) >= clen) {
                pthread_mutex_lock(&h->mu);
                if (h->n < 32)
                        h->bodies[h->n++] = strndup(end + 4, (size_t)clen);
                pthread_mutex_unlock(&h->mu);
                static const char ok200[] =
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                if (write(c, ok200, sizeof(ok200) - 1) < 0)
                        tap_diag("webhook receiver: write failed");
        }
        close(c);
}

static void *hook_main(void *userdata)
{
        struct hook *h = userdata;

        while (!atomic_load(&h->stop)) {
                struct pollfd pfd = { .fd = h->fd, .events = POLLIN };
                if (poll(&pfd, 1, 50) <= 0)
                        continue;
                int c = accept(h->fd, NULL, NULL);
                if (c >= 0)
                        hook_serve(h, c);
        }
        return NULL;
}

static void hook_start(struct hook *h)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)h->port) };
        int one = 1;

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (h->fd < 0 || bind(h->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            listen(h->fd, 16) < 0)
                tap_bail("webhook receiver on port %d: %s", h->port, strerror(errno));
        atomic_store(&h->stop, false);
        if (pthread_create(&h->th, NULL, hook_main, h) != 0)
                tap_bail("pthread_create");
}

static void hook_stop(struct hook *h)
{
        atomic_store(&h->stop, true);
        pthread_join(h->th, NULL);
        close(h->fd);
}

static int hook_count(struct hook *h)
{
        pthread_mutex_lock(&h->mu);
        int n = h->n;
        pthread_mutex_unlock(&h->mu);
        return n;
}

static int wait_count_in_log(const struct vg_stack_daemon *d, const char *needle, int want,
                             double secs);

static SSL_CTX *client_ctx(const char *ca, bool with_cert, const char *pinned)
{
        struct vg_error err = { 0 };
        char *cert = tap_strf("%s/client-cert.crt", S->ca_dir);
        char *key = tap_strf("%s/client-private.pem", S->ca_dir);
        struct vg_tls_client_config tc = {
                .ca_file = pinned ? NULL : ca,
                .pinned_cert_pem = pinned,
                .cert_file = with_cert ? cert : NULL,
                .key_file = with_cert ? key : NULL,
        };
        SSL_CTX *c = vg_tls_client_ctx_new(&tc, &err);
        if (!c)
                tap_bail("TLS context: %s", vg_error_str(&err));
        free(cert);
        free(key);
        return c;
}

int main(void)
{
        static struct hook hook = { .mu = PTHREAD_MUTEX_INITIALIZER };
        hook.port = tap_free_port();
        char *hook_env = tap_strf("VIGIL_VERIFIER_WEBHOOK_URL=http://127.0.0.1:%d/hook", hook.port);
        /* Webhook and agent retries: every 0.5 s, 10 times, so that an outage is bounded. */
        const char *const venv[] = {
                "VIGIL_VERIFIER_MAX_QUOTES_WITHOUT_PROGRESS=5",
                "VIGIL_VERIFIER_RETRY_INTERVAL=0.5",
                "VIGIL_VERIFIER_EXPONENTIAL_BACKOFF=false",
                "VIGIL_VERIFIER_MAX_RETRIES=10",
                "VIGIL_VERIFIER_ENABLED_REVOCATION_NOTIFICATIONS=agent,webhook",
                hook_env,
                NULL
        };
        struct vg_stack_opts so = { .verifier_env = venv, .quote_interval = 0.2 };
        struct vg_error err = { 0 };
        json_t *j = NULL;
        char *out = NULL, *url;
        int r;

        tap_plan(87);
        vg_stack_start(&so, &S);
        files_dir = tap_strf("%s/files", S->dir);
        tap_runl(NULL, "mkdir", "-p", files_dir, (char *)NULL);
        _cleanup_free_ char *ca = tap_strf("%s/cacert.crt", S->ca_dir);
        admin_tls = client_ctx(ca, true, NULL);
        anon_tls = client_ctx(ca, false, NULL);

        /* The registrar's record, as a tenant reads it. */
        url = tap_strf("https://127.0.0.1:%d/v2.5/agents/%s", S->registrar.tls_port, S->uuid);
        r = request(admin_tls, "GET", url, NULL, &j);
        free(url);
        if (r != 200)
                tap_bail("registrar GET: %d", r);
        aik_tpm =
            strdup(json_string_value(json_object_get(json_object_get(j, "results"), "aik_tpm")));
        mtls_cert =
            strdup(json_string_value(json_object_get(json_object_get(j, "results"), "mtls_cert")));
        json_decref(j);
        agent_tls = client_ctx(NULL, true, mtls_cert);

        /* IMA: the boot aggregate and two allowed programs. */
        r = vg_stack_ima_sim(S, &out, "boot", (char *)NULL);
        if (r != 0)
                tap_bail("ima-sim boot: %s", out);
        boot_agg = strndup(out, strspn(out, "0123456789abcdef"));
        free(out);
        _cleanup_free_ char *good1 = make_file("good1", "#!/bin/sh\necho good 1\n");
        _cleanup_free_ char *good2 = make_file("good2", "#!/bin/sh\necho good 2\n");
        _cleanup_free_ char *bad1 = make_file("bad1", "#!/bin/sh\necho -e \"Hello Evil!\"\n");
        _cleanup_free_ char *bad2 = make_file("bad2", "#!/bin/sh\necho evil 2\n");
        _cleanup_free_ char *p_good1 = tap_strf("/usr/bin/good1=%s", good1);
        _cleanup_free_ char *p_good2 = tap_strf("/usr/bin/good2=%s", good2);
        _cleanup_free_ char *p_bad1 = tap_strf("/root/bad-script.sh=%s", bad1);
        _cleanup_free_ char *p_bad2 = tap_strf("/root/bad-two.sh=%s", bad2);
        sim("exec-as", p_good1);
        sim("exec-as", p_good2);

        /* U to the agent, as the tenant sends it. */
        struct vg_payload_bundle pb;
        if (vg_payload_bundle_new(NULL, 0, S->uuid, &pb, &err) < 0)
                tap_bail("bundle: %s", vg_error_str(&err));
        url = tap_strf("https://127.0.0.1:%d/v2.5/keys/pubkey", S->agent.port);
        r = request(agent_tls, "GET", url, NULL, &j);
        free(url);
        is_int(r, 200, "agent GET /keys/pubkey over pinned mTLS");
        const char *nk_pem =
            json_string_value(json_object_get(json_object_get(j, "results"), "pubkey"));
        BIO *bio = BIO_new_mem_buf(nk_pem, -1);
        EVP_PKEY *nk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
        json_decref(j);
        j = NULL;
        _cleanup_free_ _cleanup_free_ char *enc_u = NULL;
        _cleanup_free_ char *v_b64 = vg_b64_encode(pb.v, 32, VG_B64_STD);
        if (!nk || vg_payload_encrypt_half(nk, pb.u, &enc_u, &err) < 0)
                tap_bail("encrypt U: %s", vg_error_str(&err));
        url = tap_strf("https://127.0.0.1:%d/v2.5/keys/ukey", S->agent.port);
        json_t *ub = json_pack("{s:s, s:s}", "encrypted_key", enc_u, "auth_tag", pb.auth_tag_hex);
        is_int(request(agent_tls, "POST", url, ub, NULL), 200, "U accepted by the agent");
        json_decref(ub);
        free(url);

        /* ---- add the agent ---- */
        /* keylime_tenant --cert: the certificate serial, 159 bits, as a JSON number. */
        static const char metadata[] =
            "{\"cert_serial\": 730750818665451459101842416358141509827966271487, "
            "\"subject\": \"CN=d432fbb3\", \"ratio\": -1.5e300}";
        const char *allowed[] = { p_good1, p_good2, NULL };
        _cleanup_free_ _cleanup_free_ char *pol = policy_json(allowed);
        _cleanup_free_ char *pol_b64 = b64(pol);
        json_t *add = json_pack(
            "{s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[s,s], s:[s,s], s:[s,s], s:s}",
            "v", v_b64, "cloudagent_ip", "127.0.0.1", "cloudagent_port", S->agent.port,
            "tpm_policy", "{\"mask\": \"0x0\"}", "metadata", metadata, "ak_tpm", aik_tpm,
            "mtls_cert", mtls_cert, "runtime_policy_name", "pol1", "runtime_policy", pol_b64,
            "revocation_key", "", "accept_tpm_hash_algs", "sha256", "sha1",
            "accept_tpm_encryption_algs", "rsa", "ecc", "accept_tpm_signing_algs", "rsassa",
            "ecdsa", "supported_version", "2.5");
        url = tap_strf("%s", cv("/v2.5/agents/" VG_STACK_UUID));
        r = request(admin_tls, "POST", url, add, &j);
        is_int(r, 200, "POST /agents/{id} adds the agent");
        if (r != 200)
                tap_diag("%s", j ? json_dumps(j, 0) : "(no body)");
        json_decref(j);
        is_int(request(admin_tls, "POST", url, add, NULL), 409, "adding it again is 409");
        free(url);
        json_decref(add);

        long long n = wait_int("attestation_count", 3, 20);
        ok(n >= 3, "attestation passes repeatedly (attestation_count %lld)", n);
        json_t *st = agent_status();
        is_int(json_integer_value(json_object_get(st, "operational_state")), 3,
               "operational_state 3 (Get Quote)");
        is_str(json_string_value(json_object_get(st, "attestation_status")), "PASS",
               "attestation_status PASS");
        is_int(json_integer_value(json_object_get(st, "has_runtime_policy")), 1,
               "has_runtime_policy 1");
        ok(json_is_string(json_object_get(st, "tpm_policy")), "tpm_policy is a JSON string");
        is_str(json_string_value(json_object_get(st, "meta_data")), metadata,
               "metadata with a 159-bit serial is stored and returned as given");
        json_decref(st);

        /* V delivered: the agent holds K = U xor V. */
        ok(vg_stack_wait_log(&S->verifier, "V delivered", 10), "V delivered after the first quote");
        {
                url =
                    tap_strf("https://127.0.0.1:%d/v2.5/keys/verify?challenge=abcdefghij0123456789",
                             S->agent.port);
                r = request(agent_tls, "GET", url, NULL, &j);
                free(url);
                uint8_t mac[48];
                unsigned ml = 0;
                HMAC(EVP_sha384(), pb.k, 32, (const uint8_t *)"abcdefghij0123456789", 20, mac, &ml);
                char *hex = vg_hex_encode(mac, ml);
                is_str(json_string_value(json_object_get(json_object_get(j, "results"), "hmac")),
                       hex, "the agent derived K (keys/verify)");
                free(hex);
                json_decref(j);
        }

        /* ---- a file outside the policy ---- */
        long long before = status_int("attestation_count");
        sim("exec-as", p_bad1);
        ok(vg_stack_wait_log(&S->verifier, "File not found in allowlist: /root/bad-script.sh", 10),
           "verifier logs: File not found in allowlist: /root/bad-script.sh");
        ok(vg_stack_wait_log(&S->verifier, "IMA ERRORS: template-hash 0 fnf 1 hash 0 good", 5),
           "verifier logs the IMA ERRORS summary");
        ok(vg_stack_wait_log(&S->verifier, "agent=" VG_STACK_UUID, 1), "lines name the agent");
        ok(vg_stack_wait_log(&S->verifier, "event=ima.file_not_found", 1),
           "the structured event ima.file_not_found");
        ok(vg_stack_wait_log(&S->verifier, "failed", 1), "the agent is logged as failed");

        /* ---- the webhook: down first, then up ---- */
        ok(vg_stack_wait_log(&S->verifier, "retry 2 of 10", 5),
           "the webhook is down: the verifier retries");
        is_int(hook_count(&hook), 0, "nothing received while the receiver is down");
        hook_start(&hook);
        for (int i = 0; i < 100 && hook_count(&hook) == 0; i++)
                usleep(50000);
        is_int(hook_count(&hook), 1, "the revocation arrives once the receiver is up");
        ok(vg_stack_wait_log(&S->verifier, "revocation delivered to the webhook", 2),
           "the verifier logs the delivery");
        {
                json_t *hb = hook.n ? json_loads(hook.bodies[0], 0, NULL) : NULL;
                const char *msg = json_string_value(json_object_get(hb, "msg"));
                const char *sig = json_string_value(json_object_get(hb, "signature"));
                json_t *m = msg ? json_loads(msg, 0, NULL) : NULL;
                is_str(json_string_value(json_object_get(m, "type")), "revocation",
                       "webhook msg: type revocation");
                is_str(json_string_value(json_object_get(m, "agent_id")), VG_STACK_UUID,
                       "webhook msg: agent_id");
                is_str(json_string_value(json_object_get(m, "event_id")), "ima.file_not_found",
                       "webhook msg: event_id ima.file_not_found");
                char *cpath = tap_strf("%s/RevocationNotifier-cert.crt", S->ca_dir);
                FILE *cf = fopen(cpath, "re");
                X509 *x = cf ? PEM_read_X509(cf, NULL, NULL, NULL) : NULL;
                EVP_PKEY *rpub = x ? X509_get_pubkey(x) : NULL;
                if (cf)
                        fclose(cf);
                struct vg_error verr = { 0 };
                is_int(msg && sig ? vg_revocation_verify(msg, sig, rpub, &verr) : -1, 0,
                       "its signature verifies with the verifier's revocation certificate %s",
                       vg_error_str(&verr));
                char *msg2 = msg ? tap_strf("%s ", msg) : NULL;
                ok(msg2 && vg_revocation_verify(msg2, sig, rpub, &verr) < 0,
                   "a changed msg does not verify");
                free(msg2);
                EVP_PKEY_free(rpub);
                X509_free(x);
                free(cpath);
                json_decref(m);
                json_decref(hb);
        }
        st = agent_status();
        is_int(json_integer_value(json_object_get(st, "operational_state")), 7, "state 7 (Failed)");
        is_str(json_string_value(json_object_get(st, "attestation_status")), "FAIL",
               "attestation_status FAIL");
        is_str(json_string_value(json_object_get(st, "last_event_id")), "ima.file_not_found",
               "last_event_id");
        long long lrq = json_integer_value(json_object_get(st, "last_received_quote"));
        json_decref(st);
        (void)before;
        sleep(2);
        ok(status_int("last_received_quote") > lrq, "polling continues after the failure");
        is_int(count_in_log(&S->verifier, "File not found in allowlist: /root/bad-script.sh"), 1,
               "the same violation is reported once");
        /* The receiver goes away for good: the retries end. */
        hook_stop(&hook);
        sim("exec-as", p_bad2);
        ok(vg_stack_wait_log(&S->verifier, "File not found in allowlist: /root/bad-two.sh", 10),
           "a second bad file is reported too");
        sleep(1);
        is_int(count_in_log(&S->verifier, "File not found in allowlist: /root/bad-script.sh"), 1,
               "the first is still reported only once");
        ok(wait_count_in_log(&S->verifier,
                             "revocation not delivered to the webhook after 11 attempts", 1,
                             10) == 1,
           "webhook retries are bounded: given up after 11 attempts");
        is_int(hook_count(&hook), 1, "nothing more was received");

        /* ---- a restart while failed does not report the old violations again ---- */
        int resumed = count_in_log(&S->verifier, "resuming agent");
        int summaries = count_in_log(&S->verifier, "IMA ERRORS:");
        vg_stack_daemon_stop(&S->verifier);
        vg_stack_daemon_start(S, &S->verifier);
        is_int(wait_count_in_log(&S->verifier, "resuming agent", resumed + 1, 5), resumed + 1,
               "the verifier restarts and resumes the failed agent");
        lrq = status_int("last_received_quote");
        sleep(2);
        ok(status_int("last_received_quote") > lrq, "it is polled again");
        is_int(status_int("operational_state"), 7, "still Failed");
        is_int(count_in_log(&S->verifier, "File not found in allowlist: /root/bad-script.sh") +
                   count_in_log(&S->verifier, "File not found in allowlist: /root/bad-two.sh"),
               2, "old violations are not reported again after the restart");
        is_int(count_in_log(&S->verifier, "IMA ERRORS:"), summaries, "nor their summary");

        /* ---- allowlists CRUD ---- */
        const char *allowed2[] = { p_good1, p_good2, p_bad1, p_bad2, NULL };
        _cleanup_free_ _cleanup_free_ char *pol2 = policy_json(allowed2);
        _cleanup_free_ char *pol2_b64 = b64(pol2);
        json_t *ab = json_pack("{s:s, s:s}", "runtime_policy", pol2_b64, "tpm_policy", "{}");
        const char *aurl = cv("/v2.5/allowlists/pol2");
        is_int(request(admin_tls, "POST", aurl, ab, NULL), 201, "POST /allowlists/pol2 is 201");
        is_int(request(admin_tls, "POST", aurl, ab, NULL), 409, "again is 409");
        r = request(admin_tls, "GET", aurl, NULL, &j);
        is_int(r, 200, "GET /allowlists/pol2");
        json_t *res = json_object_get(j, "results");
        ok(json_object_get(res, "tmp_policy") && json_object_get(res, "tpm_policy") &&
               json_is_string(json_object_get(res, "runtime_policy")),
           "GET answers name, tmp_policy (sic), tpm_policy and runtime_policy");
        json_decref(j);
        const char *lurl = cv("/v2.5/allowlists/");
        request(admin_tls, "GET", lurl, NULL, &j);
        ok(json_array_size(json_object_get(json_object_get(j, "results"), "runtimepolicy names")) ==
               2,
           "list: runtimepolicy names has pol1 and pol2");
        json_decref(j);
        const char *p1url = cv("/v2.5/allowlists/pol1");
        is_int(request(admin_tls, "DELETE", p1url, NULL, NULL), 409,
               "a policy in use cannot be deleted");
        is_int(request(admin_tls, "DELETE", aurl, NULL, NULL), 204, "DELETE pol2 is 204");
        is_int(request(admin_tls, "GET", aurl, NULL, NULL), 404, "then GET is 404");
        /* fix pol1: PUT replaces it */
        is_int(request(admin_tls, "PUT", p1url, ab, NULL), 201, "PUT /allowlists/pol1 replaces it");
        json_decref(ab);

        /* ---- reactivate ---- */
        const char *reurl = cv("/v2.5/agents/" VG_STACK_UUID "/reactivate");
        is_int(request(admin_tls, "PUT", reurl, NULL, NULL), 200, "PUT reactivate");
        long long c0 = status_int("attestation_count");
        n = wait_int("attestation_count", c0 + 3, 15);
        ok(n >= c0 + 3, "attestation passes again after reactivate with the fixed policy");
        is_int(status_int("operational_state"), 3, "state back to 3");

        /* ---- verifier restart resumes ---- */
        sim("exec-as", p_good1);
        sleep(1);
        long long next = status_int("ima_next_entry"), cnt = status_int("attestation_count");
        resumed = count_in_log(&S->verifier, "resuming agent");
        vg_stack_daemon_setenv(&S->verifier, "VIGIL_VERIFIER_REQUIRE_ALLOW_LIST_SIGNATURES",
                               "true");
        vg_stack_daemon_stop(&S->verifier);
        vg_stack_daemon_start(S, &S->verifier);
        is_int(wait_count_in_log(&S->verifier, "resuming agent", resumed + 1, 5), resumed + 1,
               "the restarted verifier resumes");
        n = wait_int("attestation_count", cnt + 2, 15);
        ok(n >= cnt + 2, "attestation_count continues (%lld -> %lld)", cnt, n);
        char *needle = tap_strf("ima_ml_entry %lld", next);
        ok(next > 0 && vg_stack_wait_log(&S->agent, needle, 5),
           "the IMA position survives the restart (agent asked for entry %lld)", next);
        free(needle);

        /* ---- require_allow_list_signatures: DSSE envelopes and detached signatures ---- */
        {
                char *kpath = tap_strf("%s/policy-key.pem", S->dir);
                char *opath = tap_strf("%s/other-key.pem", S->dir);
                EVP_PKEY *pk = NULL, *other = NULL;
                char *env_good = NULL, *env_bad = NULL;
                if (vg_dsse_generate_key(kpath, &pk, &err) < 0 ||
                    vg_dsse_generate_key(opath, &other, &err) < 0 ||
                    vg_dsse_sign(pk, NULL, VG_DSSE_KEYLIME_PAYLOAD_TYPE, pol2, strlen(pol2),
                                 &env_good, &err) < 0 ||
                    vg_dsse_sign(other, NULL, VG_DSSE_KEYLIME_PAYLOAD_TYPE, pol2, strlen(pol2),
                                 &env_bad, &err) < 0)
                        tap_bail("DSSE: %s", vg_error_str(&err));
                char *pem = pub_pem(pk);
                char *key_b64 = b64(pem), *good_b64 = b64(env_good), *bad_b64 = b64(env_bad);
                json_t *body = json_pack("{s:s, s:s}", "runtime_policy", good_b64,
                                         "runtime_policy_key", key_b64);
                is_int(request(admin_tls, "POST", cv("/v2.5/allowlists/dsse-good"), body, NULL),
                       201, "DSSE envelope with a good signature: 201");
                r = request(admin_tls, "GET", cv("/v2.5/allowlists/dsse-good"), NULL, &j);
                is_str(json_string_value(
                           json_object_get(json_object_get(j, "results"), "runtime_policy")),
                       env_good, "the envelope is kept as given");
                json_decref(j);
                json_object_set_new(body, "runtime_policy", json_string(bad_b64));
                r = request(admin_tls, "POST", cv("/v2.5/allowlists/dsse-bad"), body, &j);
                is_int(r, 401, "DSSE envelope signed by another key: 401");
                contains(json_string_value(json_object_get(j, "status")),
                         "failed DSSE signature verification", "naming the failure");
                json_decref(j);
                json_object_del(body, "runtime_policy_key");
                json_object_set_new(body, "runtime_policy", json_string(good_b64));
                is_int(request(admin_tls, "POST", cv("/v2.5/allowlists/dsse-nokey"), body, NULL),
                       401, "DSSE envelope without runtime_policy_key: 401");
                json_object_set_new(body, "runtime_policy", json_string(pol2_b64));
                r = request(admin_tls, "POST", cv("/v2.5/allowlists/unsigned"), body, &j);
                is_int(r, 401, "a policy without any signature: 401");
                contains(json_string_value(json_object_get(j, "status")), "signature required",
                         "saying a signature is required");
                json_decref(j);
                /* A detached ECDSA signature over the policy text still does. */
                EVP_MD_CTX *mc = EVP_MD_CTX_new();
                uint8_t dsig[256];
                size_t dlen = sizeof(dsig);
                if (!mc || EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, pk) != 1 ||
                    EVP_DigestSign(mc, dsig, &dlen, (const uint8_t *)pol2, strlen(pol2)) != 1)
                        tap_bail("ECDSA sign");
                EVP_MD_CTX_free(mc);
                char *dsig_b64 = vg_b64_encode(dsig, dlen, VG_B64_STD);
                json_object_set_new(body, "runtime_policy_sig", json_string(dsig_b64));
                json_object_set_new(body, "runtime_policy_key", json_string(key_b64));
                is_int(request(admin_tls, "POST", cv("/v2.5/allowlists/detached"), body, NULL), 201,
                       "a detached signature verifies too: 201");
                /* The agent's policy replaced by the envelope: reactivate unwraps it. */
                json_object_del(body, "runtime_policy_sig");
                json_object_set_new(body, "runtime_policy", json_string(good_b64));
                is_int(request(admin_tls, "PUT", cv("/v2.5/allowlists/pol1"), body, NULL), 201,
                       "PUT pol1 as a DSSE envelope");
                is_int(request(admin_tls, "PUT", cv("/v2.5/agents/" VG_STACK_UUID "/reactivate"),
                               NULL, NULL),
                       200, "reactivate");
                long long c1 = status_int("attestation_count");
                ok(wait_int("attestation_count", c1 + 2, 15) >= c1 + 2,
                   "the agent attests against the policy inside the envelope");
                json_decref(body);
                free(dsig_b64);
                free(key_b64);
                free(good_b64);
                free(bad_b64);
                free(pem);
                free(env_good);
                free(env_bad);
                EVP_PKEY_free(pk);
                EVP_PKEY_free(other);
                free(kpath);
                free(opath);
        }

        /* ---- agent reboot ---- */
        vg_stack_daemon_stop(&S->agent);
        if (vg_swtpm_stop(S->tpm, &err) < 0 || vg_swtpm_restart(S->tpm, &err) < 0)
                tap_bail("swtpm restart: %s", vg_error_str(&err));
        tap_write_file(S->ima_path, "");
        sim("boot", NULL);
        sim("exec-as", p_good2);
        vg_stack_daemon_start(S, &S->agent);
        ok(vg_stack_wait_log(&S->verifier, "rebooted", 30), "the verifier sees the reboot");
        cnt = status_int("attestation_count");
        n = wait_int("attestation_count", cnt + 3, 20);
        ok(n >= cnt + 3, "attestation passes after the reboot");
        is_int(status_int("operational_state"), 3, "no failure from the reboot");

        /* ---- API errors ---- */
        is_int(raw_request("POST", cv("/v2.5/agents/x-1"), "{bad json", &j), 400,
               "bad JSON is 400");
        json_decref(j);
        is_int(raw_request("POST", cv("/v2.5/agents/x-1"), "{\"cloudagent_ip\":\"1.2.3.4\"}", &j),
               400, "missing fields are 400");
        contains(json_string_value(json_object_get(j, "status")), "ak_tpm", "naming the field");
        json_decref(j);
        is_int(raw_request("POST", cv("/v2.5/agents/x-1"),
                           "{\"cloudagent_ip\":\"1.2.3.4\",\"cloudagent_port\":9002,"
                           "\"ak_tpm\":\"AAAA\",\"mtls_cert\":\"x\","
                           "\"metadata\":\"{\\\"serial\\\": 01}\"}",
                           &j),
               400, "metadata that is not JSON is 400");
        contains(json_string_value(json_object_get(j, "status")), "metadata", "naming the field");
        json_decref(j);
        is_int(request(admin_tls, "GET", cv("/v2.5/agents/nope"), NULL, NULL), 404,
               "unknown agent is 404");
        is_int(request(admin_tls, "GET", cv("/v9.9/agents/nope"), NULL, NULL), 400,
               "unsupported API version is 400");
        is_int(request(anon_tls, "GET", cv("/v2.5/agents/"), NULL, NULL), 401,
               "no client certificate: admin actions refused");
        r = request(anon_tls, "GET", cv("/version"), NULL, &j);
        is_str(json_string_value(json_object_get(json_object_get(j, "results"), "current_version")),
               "2.5", "GET /version is public and answers current_version");
        json_decref(j);
        request(admin_tls, "GET", cv("/v2.5/agents/?bulk=true&verifier=default"), NULL, &j);
        ok(json_object_get(json_object_get(j, "results"), VG_STACK_UUID),
           "bulk list keyed by agent id");
        json_decref(j);

        /* ---- /verify on a real quote ---- */
        const char *nonce = "Vq1nonce0123456789ab";
        url = tap_strf("https://127.0.0.1:%d/v2.5/quotes/identity?nonce=%s", S->agent.port, nonce);
        r = request(agent_tls, "GET", url, NULL, &j);
        free(url);
        _cleanup_free_ char *quote =
            strdup(json_string_value(json_object_get(json_object_get(j, "results"), "quote")));
        json_decref(j);
        char *qenc = urlencode(quote);
        url = tap_strf("https://127.0.0.1:%d/v2.5/verify/identity?agent_uuid=%s&quote=%s&nonce=%s"
                       "&hash_alg=sha256",
                       S->verifier.port, S->uuid, qenc, nonce);
        free(qenc);
        request(admin_tls, "GET", url, NULL, &j);
        is_int(json_integer_value(json_object_get(json_object_get(j, "results"), "valid")), 1,
               "/verify/identity: valid 1");
        json_decref(j);
        free(url);
        json_t *evb = json_pack("{s:s, s:{s:s, s:s, s:s, s:s}}", "type", "tpm", "data", "nonce",
                                nonce, "quote", quote, "hash_alg", "sha256", "tpm_ak", aik_tpm);
        request(admin_tls, "POST", cv("/v2.5/verify/evidence"), evb, &j);
        ok(json_is_true(json_object_get(json_object_get(j, "results"), "valid")),
           "/verify/evidence: a real quote is valid");
        json_decref(j);
        json_object_set_new(json_object_get(evb, "data"), "nonce",
                            json_string("othernonce0123456789"));
        request(admin_tls, "POST", cv("/v2.5/verify/evidence"), evb, &j);
        json_t *f0 = json_array_get(json_object_get(json_object_get(j, "results"), "failures"), 0);
        is_str(json_string_value(json_object_get(f0, "type")), "quote_validation.invalid_nonce",
               "a replayed quote (other nonce) fails with invalid_nonce");
        json_decref(j);
        /* CVE-2023-3674: flip one byte of the signature part. */
        char *sig = strchr(quote, ':') + 1;
        size_t slen = strcspn(sig, ":");
        uint8_t *raw;
        size_t rawlen;
        vg_b64_decode(sig, slen, VG_B64_STD, &raw, &rawlen);
        raw[rawlen - 5] ^= 0x40;
        _cleanup_free_ __attribute__((unused)) uint8_t *raw_owned = raw;
        _cleanup_free_ char *sig2 = vg_b64_encode(raw, rawlen, VG_B64_STD);
        _cleanup_free_ char *forged =
            tap_strf("%.*s%s%s", (int)(sig - quote), quote, sig2, sig + slen);
        json_object_set_new(json_object_get(evb, "data"), "nonce", json_string(nonce));
        json_object_set_new(json_object_get(evb, "data"), "quote", json_string(forged));
        request(admin_tls, "POST", cv("/v2.5/verify/evidence"), evb, &j);
        f0 = json_array_get(json_object_get(json_object_get(j, "results"), "failures"), 0);
        ok(json_is_false(json_object_get(json_object_get(j, "results"), "valid")),
           "CVE-2023-3674: a forged signature is never valid");
        is_str(json_string_value(json_object_get(f0, "type")), "quote_validation.invalid_signature",
               "with invalid_signature");
        json_decref(j);

        /* ---- stop, delete ---- */
        is_int(request(admin_tls, "PUT", cv("/v2.5/agents/" VG_STACK_UUID "/stop"), NULL, NULL),
               200, "PUT stop");
        is_int(status_int("operational_state"), 10, "state 10 (Tenant Quote Failed)");
        is_int(request(admin_tls, "DELETE", cv("/v2.5/agents/" VG_STACK_UUID), NULL, NULL), 200,
               "DELETE the agent");

        json_decref(evb);
        EVP_PKEY_free(nk);
        vg_payload_bundle_clear(&pb);
        SSL_CTX_free(admin_tls);
        SSL_CTX_free(anon_tls);
        SSL_CTX_free(agent_tls);
        free(aik_tpm);
        free(mtls_cert);
        free(files_dir);
        free(boot_agg);
        free(hook_env);
        for (int i = 0; i < hook.n; i++)
                free(hook.bodies[i]);
        vg_stack_free(S);
        return tap_done();
}
