/* vigil tests: evidence tampered with on the way, caught by vigil-verifier's poller. A TLS
 * man-in-the-middle per case sits between the verifier and a real vigil-agent (forged quote
 * signature, replayed quote, NK swapped against PCR 16, an IMA entry rewritten), an agent enrolled
 * with another TPM's AK; and PostgreSQL: two verifiers sharing one database, each polling only
 * its own agents, and a restart that resumes where it was without reporting old failures again. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "encoding.h"
#include "hash.h"
#include "http_client.h"
#include "http_server.h"
#include "pg.h"
#include "stack.h"
#include "tap.h"
#include "tls.h"

#define UUID_B "0b0b0b0b-2222-4a97-9ef7-75bd81c00002"

static struct vg_stack *S1, *S2;
static SSL_CTX *admin1, *admin2;

/* ---- the man in the middle ------------------------------------------------------------------ */

enum mode {
        PASS,    /* forward, and remember the last answer */
        SIG,     /* flip a byte of the TPMT_SIGNATURE */
        REPLAY,  /* answer with the remembered answer (an old nonce) */
        NK_SWAP, /* put another RSA key in "pubkey" */
        IMA,     /* rewrite a file digest in the first IMA entry sent */
};

struct proxy {
        const char *name;
        atomic_int mode;
        atomic_bool stop;
        atomic_int tampered; /* answers changed */
        int port, upstream_port;
        SSL_CTX *up_tls;
        struct event_base *base;
        struct event *tick;
        struct vg_http_server *srv;
        pthread_t th;
        char *captured; /* only touched by the proxy's thread */
};

static char *attacker_pem;

static void flip_signature(json_t *res)
{
        const char *q = json_string_value(json_object_get(res, "quote"));
        const char *sig = q ? strchr(q, ':') : NULL;
        uint8_t *raw = NULL;
        size_t rawlen = 0, slen;

        if (!sig)
                return;
        sig++;
        slen = strcspn(sig, ":");
        if (vg_b64_decode(sig, slen, VG_B64_STD, &raw, &rawlen) < 0 || rawlen < 8) {
                free(raw);
                return;
        }
        raw[rawlen - 5] ^= 0x40;
        char *sig2 = vg_b64_encode(raw, rawlen, VG_B64_STD);
        char *forged = tap_strf("%.*s%s%s", (int)(sig - q), q, sig2, sig + slen);
        json_object_set_new(res, "quote", json_string(forged));
        free(forged);
        free(sig2);
        free(raw);
}

/* Change one hex digit of the file digest of the first entry: its template hash no longer
 * matches what the line says. */
static bool rewrite_ima(json_t *res)
{
        const char *l = json_string_value(json_object_get(res, "ima_measurement_list"));
        char *copy, *d;

        if (!l || !*l)
                return false;
        copy = strdup(l);
        d = strstr(copy, "sha256:");
        if (!d || d > copy + strcspn(copy, "\n")) {
                free(copy);
                return false;
        }
        d += 7;
        *d = *d == '0' ? '1' : '0';
        json_object_set_new(res, "ima_measurement_list", json_string(copy));
        free(copy);
        return true;
}

static void on_proxy(struct vg_http_request *req, void *userdata)
{
        struct proxy *p = userdata;
        struct vg_http_client_config cc = { .tls = p->up_tls, .timeout_ms = 20000 };
        char *url =
            tap_strf("https://127.0.0.1:%d%s", p->upstream_port, vg_http_request_target(req));
        size_t blen = 0;
        const uint8_t *body = vg_http_request_body(req, &blen);
        struct vg_http_client_request rq = { .method = vg_http_request_method(req),
                                             .url = url,
                                             .body = blen ? body : NULL,
                                             .body_len = blen,
                                             .content_type = blen ? "application/json" : NULL };
        struct vg_http_response *resp = NULL;
        struct vg_error err = { 0 };
        int m = atomic_load(&p->mode);

        if (m == REPLAY && p->captured) {
                atomic_fetch_add(&p->tampered, 1);
                vg_http_reply(req, 200, "application/json", p->captured, strlen(p->captured));
                free(url);
                return;
        }
        if (vg_http_fetch(&cc, &rq, &resp, &err) < 0) {
                vg_http_reply_error(req, 502, "proxy: %s", vg_error_str(&err));
                free(url);
                return;
        }
        free(url);
        json_t *j = resp->status == 200 ? vg_http_response_json(resp, &err) : NULL;
        json_t *res = json_object_get(j, "results");
        if (!json_is_object(res) || !json_object_get(res, "quote")) {
                vg_http_reply(req, resp->status, "application/json", resp->body, resp->body_len);
                vg_http_response_free(resp);
                json_decref(j);
                return;
        }
        vg_http_response_free(resp);
        switch (m) {
        case PASS:
        case REPLAY: /* nothing captured yet */
                free(p->captured);
                p->captured = json_dumps(j, JSON_COMPACT);
                break;
        case SIG:
                flip_signature(res);
                atomic_fetch_add(&p->tampered, 1);
                break;
        case NK_SWAP:
                json_object_set_new(res, "pubkey", json_string(attacker_pem));
                atomic_fetch_add(&p->tampered, 1);
                break;
        case IMA:
                if (rewrite_ima(res))
                        atomic_fetch_add(&p->tampered, 1);
                break;
        }
        vg_http_reply_json(req, 200, j);
}

static void on_tick(evutil_socket_t fd, short what, void *userdata)
{
        struct proxy *p = userdata;

        (void)fd;
        (void)what;
        if (atomic_load(&p->stop))
                event_base_loopbreak(p->base);
}

static void *proxy_main(void *userdata)
{
        struct proxy *p = userdata;

        event_base_dispatch(p->base);
        return NULL;
}

static void proxy_start(struct proxy *p, const char *name, SSL_CTX *server_tls, SSL_CTX *up_tls,
                        int upstream_port)
{
        struct vg_error err = { 0 };
        struct vg_http_server_config sc = { .address = "127.0.0.1",
                                            .tls = server_tls,
                                            .name = name };
        struct timeval tv = { 0, 50000 };

        p->name = name;
        p->up_tls = up_tls;
        p->upstream_port = upstream_port;
        atomic_store(&p->mode, PASS);
        p->base = event_base_new();
        if (!p->base || vg_http_server_new(p->base, &sc, &p->srv, &err) < 0 ||
            vg_http_server_route(p->srv, "GET", "/{a}/{b}/{c}", on_proxy, p) < 0 ||
            vg_http_server_route(p->srv, "POST", "/{a}/{b}/{c}", on_proxy, p) < 0)
                tap_bail("proxy %s: %s", name, vg_error_str(&err));
        p->port = vg_http_server_port(p->srv);
        p->tick = event_new(p->base, -1, EV_PERSIST, on_tick, p);
        event_add(p->tick, &tv);
        if (pthread_create(&p->th, NULL, proxy_main, p) != 0)
                tap_bail("pthread_create");
}

static void proxy_stop(struct proxy *p)
{
        atomic_store(&p->stop, true);
        pthread_join(p->th, NULL);
        vg_http_server_free(p->srv);
        event_free(p->tick);
        vg_event_base_free_drained(p->base);
        free(p->captured);
}

/* ---- REST helpers --------------------------------------------------------------------------- */

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

static json_t *status_of(struct vg_stack *s, SSL_CTX *tls, const char *id)
{
        char *url = tap_strf("https://127.0.0.1:%d/v2.5/agents/%s", s->verifier.port, id);
        json_t *j = NULL, *res = NULL;

        if (request(tls, "GET", url, NULL, &j) == 200)
                res = json_incref(json_object_get(j, "results"));
        json_decref(j);
        free(url);
        return res;
}

static long long int_of(struct vg_stack *s, SSL_CTX *tls, const char *id, const char *key)
{
        json_t *st = status_of(s, tls, id);
        long long v = st ? json_integer_value(json_object_get(st, key)) : -1;

        json_decref(st);
        return v;
}

static long long wait_int(struct vg_stack *s, SSL_CTX *tls, const char *id, const char *key,
                          long long want, double secs)
{
        long long v = -1;

        for (int i = 0; i < (int)(secs * 10); i++) {
                v = int_of(s, tls, id, key);
                if (v >= want)
                        break;
                usleep(100000);
        }
        return v;
}

/* Wait until the agent's last_event_id is event (up to secs); returns the last one seen. */
static char *wait_event(const char *id, const char *event, double secs)
{
        char *last = NULL;

        for (int i = 0; i < (int)(secs * 10); i++) {
                json_t *st = status_of(S1, admin1, id);
                const char *e = json_string_value(json_object_get(st, "last_event_id"));
                free(last);
                last = e ? strdup(e) : NULL;
                json_decref(st);
                if (last && strcmp(last, event) == 0)
                        break;
                usleep(100000);
        }
        return last;
}

/* Lines of a daemon's log holding all of a, b (and c when given). */
static int count_lines(const struct vg_stack_daemon *d, const char *a, const char *b, const char *c)
{
        char *text = tap_read_file(d->log, NULL);
        int n = 0;

        for (char *line = text, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (strstr(line, a) && (!b || strstr(line, b)) && (!c || strstr(line, c)))
                        n++;
                if (!next)
                        break;
        }
        free(text);
        return n;
}

static SSL_CTX *client_ctx(struct vg_stack *s, bool trust_ca, const char *pinned)
{
        struct vg_error err = { 0 };
        char *ca = tap_strf("%s/cacert.crt", s->ca_dir);
        char *cert = tap_strf("%s/client-cert.crt", s->ca_dir);
        char *key = tap_strf("%s/client-private.pem", s->ca_dir);
        struct vg_tls_client_config tc = {
                .ca_file = trust_ca ? ca : NULL,
                .pinned_cert_pem = pinned,
                .cert_file = cert,
                .key_file = key,
        };
        SSL_CTX *c = vg_tls_client_ctx_new(&tc, &err);
        if (!c)
                tap_bail("TLS context: %s", vg_error_str(&err));
        free(ca);
        free(cert);
        free(key);
        return c;
}

/* aik_tpm and mtls_cert of a stack's agent, from its registrar. */
static void registrar_record(struct vg_stack *s, SSL_CTX *tls, char **aik, char **mtls)
{
        char *url = tap_strf("https://127.0.0.1:%d/v2.5/agents/%s", s->registrar.tls_port, s->uuid);
        json_t *j = NULL;

        if (request(tls, "GET", url, NULL, &j) != 200)
                tap_bail("registrar GET %s", url);
        json_t *res = json_object_get(j, "results");
        *aik = strdup(json_string_value(json_object_get(res, "aik_tpm")));
        *mtls = strdup(json_string_value(json_object_get(res, "mtls_cert")));
        json_decref(j);
        free(url);
}

static void sim(struct vg_stack *s, const char *cmd, const char *arg, char **out)
{
        char *o = NULL;

        if (vg_stack_ima_sim(s, &o, cmd, arg, (char *)NULL) != 0)
                tap_bail("ima-sim %s: %s", cmd, o ? o : "");
        if (out)
                *out = o;
        else
                free(o);
}

static int add_agent(struct vg_stack *s, SSL_CTX *tls, const char *id, int port, const char *aik,
                     const char *mtls, const char *policy_name)
{
        json_t *add = json_pack(
            "{s:s, s:i, s:s, s:s, s:s, s:s, s:[s], s:[s,s], s:[s,s], s:s}", "cloudagent_ip",
            "127.0.0.1", "cloudagent_port", port, "tpm_policy", "{}", "metadata", "{}", "ak_tpm",
            aik, "mtls_cert", mtls, "accept_tpm_hash_algs", "sha256", "accept_tpm_encryption_algs",
            "rsa", "ecc", "accept_tpm_signing_algs", "rsassa", "ecdsa", "supported_version", "2.5");
        if (policy_name)
                json_object_set_new(add, "runtime_policy_name", json_string(policy_name));
        char *url = tap_strf("https://127.0.0.1:%d/v2.5/agents/%s", s->verifier.port, id);
        json_t *j = NULL;
        int r = request(tls, "POST", url, add, &j);
        if (r != 200 && j) {
                char *t = json_dumps(j, 0);
                tap_diag("add %s: %s", id, t);
                free(t);
        }
        json_decref(j);
        json_decref(add);
        free(url);
        return r;
}

static char *rsa_pub_pem(void)
{
        EVP_PKEY *k = EVP_RSA_gen(2048);
        BIO *b = BIO_new(BIO_s_mem());
        char *data = NULL, *out;
        long n;

        if (!k || !b || PEM_write_bio_PUBKEY(b, k) != 1)
                tap_bail("RSA key");
        n = BIO_get_mem_data(b, &data);
        out = strndup(data, (size_t)n);
        BIO_free(b);
        EVP_PKEY_free(k);
        return out;
}

/* One tamper case: the agent fails with event, named in a log line with the agent. */
static void expect_failure(const char *id, const char *event, int state)
{
        char *e = wait_event(id, event, 15);
        is_str(e, event, "%s: last_event_id %s", id, event);
        free(e);
        is_int(int_of(S1, admin1, id, "operational_state"), state, "%s: operational_state %d", id,
               state);
        char *a = tap_strf("agent=%s ", id), *ev = tap_strf("event=%s ", event);
        ok(count_lines(&S1->verifier, a, ev, NULL) >= 1,
           "%s: the verifier logs the event in a line naming the agent", id);
        free(a);
        free(ev);
}

int main(void)
{
        struct vg_error err = { 0 };
        _cleanup_(vg_pg_freep) struct vg_pg *pg = NULL;
        _cleanup_free_ char *db_url = NULL;
        char *out = NULL;

        tap_plan(43);
        int pr = vg_pg_start(&pg, &err);
        if (pr == -ENOENT) {
                tap_diag("PostgreSQL not installed (%s): the verifiers use SQLite",
                         vg_error_str(&err));
        } else if (pr < 0 || vg_pg_create_db(pg, "cv", &db_url, &err) < 0) {
                tap_bail("PostgreSQL: %s", vg_error_str(&err));
        }

        static const char *const env1[] = { "VIGIL_VERIFIER_UUID=verifier-one",
                                            "VIGIL_VERIFIER_RETRY_INTERVAL=0.5", NULL };
        static const char *const env2[] = { "VIGIL_VERIFIER_UUID=verifier-two", NULL };
        struct vg_stack_opts o1 = { .verifier_env = env1,
                                    .database_url = db_url,
                                    .quote_interval = 0.3 };
        struct vg_stack_opts o2 = {
                .uuid = UUID_B, .verifier_env = env2, .database_url = db_url, .quote_interval = 0.3
        };
        vg_stack_start(&o1, &S1);
        vg_stack_start(&o2, &S2);
        admin1 = client_ctx(S1, true, NULL);
        admin2 = client_ctx(S2, true, NULL);

        char *aik_a, *mtls_a, *aik_b, *mtls_b;
        registrar_record(S1, admin1, &aik_a, &mtls_a);
        registrar_record(S2, admin2, &aik_b, &mtls_b);
        SSL_CTX *agent_a_tls = client_ctx(S1, false, mtls_a);
        attacker_pem = rsa_pub_pem();

        /* A runtime policy: the boot aggregate and one allowed program. */
        char *boot = NULL;
        sim(S1, "boot", NULL, &boot);
        boot[strspn(boot, "0123456789abcdef")] = '\0';
        char *good = tap_strf("%s/good", S1->dir);
        tap_write_file(good, "#!/bin/sh\necho good\n");
        uint8_t d[32];
        if (vg_hash_file(VG_HASH_SHA256, good, d) < 0)
                tap_bail("hash %s", good);
        char *good_hex = vg_hex_encode(d, sizeof(d));
        char *p_good = tap_strf("/usr/bin/good=%s", good);
        sim(S1, "exec-as", p_good, NULL);
        json_t *pol = json_pack(
            "{s:{s:i, s:i}, s:i, s:{s:[s], s:[s]}, s:[], s:{}, s:{s:[], s:s, s:n}, "
            "s:{}, s:s}",
            "meta", "version", 1, "generator", 3, "release", 0, "digests", "boot_aggregate", boot,
            "/usr/bin/good", good_hex, "excludes", "keyrings", "ima", "ignored_keyrings",
            "log_hash_alg", "sha1", "dm_policy", "ima-buf", "verification-keys", "");
        char *pol_s = json_dumps(pol, JSON_COMPACT);
        char *pol_b64 = vg_b64_encode(pol_s, strlen(pol_s), VG_B64_STD);
        json_t *ab = json_pack("{s:s, s:s}", "runtime_policy", pol_b64, "tpm_policy", "{}");
        char *url = tap_strf("https://127.0.0.1:%d/v2.5/allowlists/tpol", S1->verifier.port);
        json_t *j = NULL;
        if (request(admin1, "POST", url, ab, &j) != 201)
                tap_bail("POST /allowlists/tpol: %s",
                         json_string_value(json_object_get(j, "status")));
        json_decref(j);
        free(url);
        json_decref(ab);
        json_decref(pol);

        /* The men in the middle present the CA's server certificate, which the verifier is
         * told is the agent's mtls_cert. */
        char *srv_cert = tap_strf("%s/server-cert.crt", S1->ca_dir);
        char *srv_key = tap_strf("%s/server-private.pem", S1->ca_dir);
        char *proxy_cert = tap_read_file(srv_cert, NULL);
        struct vg_tls_server_config stc = { .cert_file = srv_cert, .key_file = srv_key };
        SSL_CTX *proxy_tls = vg_tls_server_ctx_new(&stc, &err);
        if (!proxy_tls || !proxy_cert)
                tap_bail("proxy TLS: %s", vg_error_str(&err));
        static struct proxy px[4];
        static const char *const ids[4] = { "t-sig", "t-replay", "t-nk", "t-ima" };
        for (int i = 0; i < 4; i++)
                proxy_start(&px[i], ids[i], proxy_tls, agent_a_tls, S1->agent.port);

        /* ---- enrolment ---- */
        is_int(add_agent(S1, admin1, S1->uuid, S1->agent.port, aik_a, mtls_a, "tpol"), 200,
               "agent A added to verifier one");
        is_int(add_agent(S2, admin2, UUID_B, S2->agent.port, aik_b, mtls_b, NULL), 200,
               "agent B added to verifier two (same database)");
        int added = 0;
        for (int i = 0; i < 4; i++)
                added +=
                    add_agent(S1, admin1, ids[i], px[i].port, aik_a, proxy_cert, "tpol") == 200;
        is_int(added, 4, "four agents enrolled through men in the middle");
        is_int(add_agent(S1, admin1, "t-ak", S1->agent.port, aik_b, mtls_a, "tpol"), 200,
               "agent A enrolled with agent B's AK");

        long long n = wait_int(S1, admin1, S1->uuid, "attestation_count", 2, 20);
        ok(n >= 2, "agent A passes on verifier one (%lld)", n);
        bool all = true;
        for (int i = 0; i < 4; i++)
                all &= wait_int(S1, admin1, ids[i], "attestation_count", 2, 15) >= 2;
        ok(all, "through the untouched proxies attestation passes");

        /* ---- swapped AK ---- */
        expect_failure("t-ak", "quote_validation.invalid_signature", 9);
        is_int(int_of(S1, admin1, "t-ak", "attestation_count"), 0, "t-ak: never attested");

        /* ---- tampering starts ---- */
        atomic_store(&px[0].mode, SIG);
        atomic_store(&px[1].mode, REPLAY);
        atomic_store(&px[2].mode, NK_SWAP);
        atomic_store(&px[3].mode, IMA);
        sleep(1);
        sim(S1, "exec-as", p_good, NULL); /* new entries for the IMA case to rewrite */
        expect_failure("t-sig", "quote_validation.invalid_signature", 9);
        expect_failure("t-replay", "quote_validation.invalid_nonce", 9);
        expect_failure("t-nk", "pcr_validation.invalid_pcr_16", 9);
        expect_failure("t-ima", "ima.template_hash_mismatch", 7);
        ok(count_lines(&S1->verifier, "agent=t-ima", "IMA ERRORS: template-hash 1 fnf 0 hash 0",
                       NULL) >= 1,
           "t-ima: IMA ERRORS: template-hash 1 fnf 0 hash 0");
        for (int i = 0; i < 4; i++)
                ok(atomic_load(&px[i].tampered) > 0, "%s: the proxy did tamper", ids[i]);
        /* The CVE-2023-3674 class: the forged quote keeps failing, never passes. */
        long long c0 = int_of(S1, admin1, "t-sig", "attestation_count");
        int t0 = atomic_load(&px[0].tampered);
        for (int i = 0; i < 30 && atomic_load(&px[0].tampered) < t0 + 3; i++)
                usleep(100000);
        ok(atomic_load(&px[0].tampered) >= t0 + 3 &&
               int_of(S1, admin1, "t-sig", "attestation_count") == c0 &&
               int_of(S1, admin1, "t-sig", "operational_state") == 9,
           "forged signatures keep failing while polling goes on");
        /* The swapped NK was not adopted: back to honest answers, the agent's own key and
         * quotes still fail only because it stays failed until reactivate; after reactivate
         * it passes. */
        atomic_store(&px[2].mode, PASS);
        char *re = tap_strf("https://127.0.0.1:%d/v2.5/agents/t-nk/reactivate", S1->verifier.port);
        is_int(request(admin1, "PUT", re, NULL, NULL), 200, "t-nk reactivated with honest answers");
        free(re);
        c0 = int_of(S1, admin1, "t-nk", "attestation_count");
        ok(wait_int(S1, admin1, "t-nk", "attestation_count", c0 + 2, 15) >= c0 + 2,
           "t-nk passes again: the attacker's key was never taken as the agent's");
        is_int(int_of(S1, admin1, S1->uuid, "operational_state"), 3,
               "agent A itself is untouched (Get Quote)");

        /* ---- two verifiers, one database ---- */
        n = wait_int(S2, admin2, UUID_B, "attestation_count", 2, 15);
        ok(n >= 2, "verifier two attests agent B (%lld)", n);
        json_t *st = status_of(S1, admin1, UUID_B);
        is_str(json_string_value(json_object_get(st, "verifier_id")), "verifier-two",
               "verifier one sees agent B as verifier-two's");
        json_decref(st);
        url =
            tap_strf("https://127.0.0.1:%d/v2.5/agents/?verifier=verifier-one", S1->verifier.port);
        request(admin1, "GET", url, NULL, &j);
        free(url);
        is_int(json_array_size(json_object_get(json_object_get(j, "results"), "uuids")), 6,
               "six agents belong to verifier-one");
        json_decref(j);
        is_int(count_lines(&S1->verifier, "agent=" UUID_B, NULL, NULL), 0,
               "verifier one never polls agent B");
        char *a_field = tap_strf("agent=%s", S1->uuid);
        is_int(count_lines(&S2->verifier, a_field, NULL, NULL), 0,
               "verifier two never polls verifier one's agents");
        free(a_field);

        /* ---- restart on the shared database ---- */
        long long cnt = int_of(S1, admin1, S1->uuid, "attestation_count");
        long long next = int_of(S1, admin1, S1->uuid, "ima_next_entry");
        int sig_reports = count_lines(&S1->verifier, "agent=t-sig ",
                                      "event=quote_validation.invalid_signature", NULL);
        int ima_reports = count_lines(&S1->verifier, "agent=t-ima ", "IMA ERRORS", NULL);
        int resumed = count_lines(&S1->verifier, "resuming agent", NULL, NULL);
        vg_stack_daemon_stop(&S1->verifier);
        vg_stack_daemon_start(S1, &S1->verifier);
        for (int i = 0;
             i < 50 && count_lines(&S1->verifier, "resuming agent", NULL, NULL) < resumed + 6; i++)
                usleep(100000);
        is_int(count_lines(&S1->verifier, "resuming agent", NULL, NULL) - resumed, 6,
               "the restarted verifier resumes its six agents");
        char *next_s = tap_strf("IMA next entry %lld", next);
        n = wait_int(S1, admin1, S1->uuid, "attestation_count", cnt + 2, 15);
        ok(n >= cnt + 2, "attestation_count continues on PostgreSQL (%lld -> %lld)", cnt, n);
        ok(next > 0 && count_lines(&S1->verifier, next_s, S1->uuid, "resuming") >= 1,
           "the IMA position (entry %lld) survives the restart", next);
        free(next_s);
        sleep(1);
        is_int(int_of(S1, admin1, "t-sig", "operational_state"), 9, "t-sig is still failed");
        is_int(count_lines(&S1->verifier, "agent=t-sig ",
                           "event=quote_validation.invalid_signature", NULL),
               sig_reports, "the forged signature is not reported again after the restart");
        is_int(count_lines(&S1->verifier, "agent=t-ima ", "IMA ERRORS", NULL), ima_reports,
               "nor the rewritten IMA entry");
        ok(atomic_load(&px[0].tampered) > t0 + 3, "while t-sig is still polled");

        for (int i = 0; i < 4; i++)
                proxy_stop(&px[i]);
        SSL_CTX_free(proxy_tls);
        SSL_CTX_free(agent_a_tls);
        SSL_CTX_free(admin1);
        SSL_CTX_free(admin2);
        free(srv_cert);
        free(srv_key);
        free(proxy_cert);
        free(aik_a);
        free(mtls_a);
        free(aik_b);
        free(mtls_b);
        free(attacker_pem);
        free(boot);
        free(good);
        free(good_hex);
        free(p_good);
        free(pol_s);
        free(pol_b64);
        free(out);
        vg_stack_free(S2);
        vg_stack_free(S1);
        return tap_done();
}
