/* vigil bench: a load generator for Tang servers (tangd, vigil-tang).
 *
 *   bench_tang --url http://127.0.0.1:PORT --clients N --duration S
 *              [--keepalive|--no-keepalive] [--warmup S] [--pool N] [--timeout-ms MS]
 *
 * Fetches /adv once, picks the exchange (ECMR) key, precomputes a pool of recovery requests the
 * way clevis decrypt builds them (x = c + e for a provisioning point c and an ephemeral key E,
 * both P-521), then runs N concurrent clients on one libevent loop, each POSTing /rec/{kid}
 * back to back. Every reply must be 200 with an EC P-521 JWK; the first reply to each pool
 * entry is also checked cryptographically (y - E·s == C·s), so a server returning the wrong
 * point counts as an error. Prints one JSON line. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <jose/b64.h>
#include <jose/jwk.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "error.h"
#include "http_client.h"

struct pool_entry {
        char *body; /* the request JWK, compact JSON */
        size_t body_len;
        json_t *eph;    /* E with d */
        json_t *expect; /* C·s, the key clevis would recover */
        bool verified;
};

struct bench {
        struct event_base *base;
        struct vg_http_client *client;
        char *rec_url;
        json_t *srv; /* s, the advertised ECMR public key */
        struct pool_entry *pool;
        size_t npool;
        double t_start, t_measure, t_end;
        bool stopping;
        unsigned active;
        uint64_t recoveries, errors, warm_recoveries;
        uint64_t connects_at_measure;
        double *lat; /* ms, measured phase only */
        size_t nlat, cap_lat;
        char first_error[512];
        unsigned timeout_ms;
};

struct client {
        struct bench *b;
        unsigned id;
        size_t next;
        size_t cur;
        double t_sent;
        struct event *retry;
};

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void record_error(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void record_error(struct bench *b, const char *fmt, ...)
{
        b->errors++;
        if (b->first_error[0])
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->first_error, sizeof(b->first_error), fmt, ap);
        va_end(ap);
}

static void client_send(struct client *c);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        client_send(arg);
}

static void on_mark(evutil_socket_t fd, short what, void *arg)
{
        struct bench *b = arg;
        (void)fd;
        (void)what;
        b->connects_at_measure = vg_http_client_connects(b->client);
}

/* True when reply y gives back C·s: K = y - E·s. */
static bool reply_recovers(struct bench *b, struct pool_entry *p, json_t *y)
{
        json_auto_t *z = jose_jwk_exc(NULL, p->eph, b->srv); /* E·s */
        if (!z)
                return false;
        json_auto_t *yy = json_deep_copy(y);
        if (!yy || json_object_set_new(yy, "alg", json_string("ECMR")) < 0 ||
            json_object_set_new(z, "alg", json_string("ECMR")) < 0)
                return false;
        json_auto_t *k = jose_jwk_exc(NULL, yy, z); /* subtract */
        if (!k)
                return false;
        return json_equal(json_object_get(k, "x"), json_object_get(p->expect, "x")) &&
               json_equal(json_object_get(k, "y"), json_object_get(p->expect, "y"));
}

static void on_reply(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct client *c = userdata;
        struct bench *b = c->b;
        double t = now_s();
        bool good = false;

        if (err) {
                record_error(b, "%s", vg_error_str(err));
        } else if (resp->status != 200) {
                record_error(b, "POST /rec answered %d", resp->status);
        } else {
                json_error_t jerr;
                json_auto_t *y = json_loadb((const char *)resp->body, resp->body_len, 0, &jerr);
                const char *kty = NULL, *crv = NULL;
                if (!y ||
                    json_unpack(y, "{s:s,s:s,s:s,s:s}", "kty", &kty, "crv", &crv, "x",
                                &(const char *){ NULL }, "y", &(const char *){ NULL }) < 0 ||
                    strcmp(kty, "EC") != 0 || strcmp(crv, "P-521") != 0) {
                        record_error(b, "POST /rec reply is not an EC P-521 JWK: %.200s",
                                     (const char *)resp->body);
                } else {
                        struct pool_entry *p = &b->pool[c->cur];
                        if (!p->verified) {
                                if (reply_recovers(b, p, y)) {
                                        p->verified = true;
                                        good = true;
                                } else {
                                        record_error(b, "POST /rec reply does not recover the "
                                                        "provisioned key (y - E·s != C·s)");
                                }
                        } else {
                                good = true;
                        }
                }
        }

        if (good) {
                if (c->t_sent >= b->t_measure && t <= b->t_end) {
                        b->recoveries++;
                        if (b->nlat == b->cap_lat) {
                                b->cap_lat = b->cap_lat ? b->cap_lat * 2 : 65536;
                                double *n = realloc(b->lat, b->cap_lat * sizeof(*n));
                                if (!n) {
                                        fprintf(stderr, "bench_tang: out of memory\n");
                                        exit(1);
                                }
                                b->lat = n;
                        }
                        b->lat[b->nlat++] = (t - c->t_sent) * 1e3;
                } else if (c->t_sent < b->t_measure) {
                        b->warm_recoveries++;
                }
        }

        if (t >= b->t_end) {
                if (--b->active == 0)
                        event_base_loopbreak(b->base);
                return;
        }
        if (!good) {
                /* Do not spin on a dead server: one failed request per client per 10 ms. */
                struct timeval tv = { 0, 10000 };
                evtimer_add(c->retry, &tv);
                return;
        }
        client_send(c);
}

static void client_send(struct client *c)
{
        struct bench *b = c->b;
        struct vg_error err = { 0 };
        c->cur = c->next;
        c->next = (c->next + 1) % b->npool;
        struct pool_entry *p = &b->pool[c->cur];
        struct vg_http_client_request req = {
                .method = "POST",
                .url = b->rec_url,
                .body = p->body,
                .body_len = p->body_len,
                .content_type = "application/jwk+json",
                .timeout_ms = b->timeout_ms,
        };
        c->t_sent = now_s();
        if (vg_http_client_send(b->client, &req, on_reply, c, NULL, &err) < 0) {
                fprintf(stderr, "bench_tang: %s\n", vg_error_str(&err));
                exit(1);
        }
}

/* The ECMR key from a /adv reply (flattened or general JWS), or NULL with a message. */
static json_t *pick_exchange_key(const struct vg_http_response *resp, char *why, size_t whylen)
{
        json_error_t jerr;
        json_auto_t *jws = json_loadb((const char *)resp->body, resp->body_len, 0, &jerr);
        if (!jws) {
                snprintf(why, whylen, "/adv is not JSON: %s", jerr.text);
                return NULL;
        }
        json_auto_t *payload = jose_b64_dec_load(json_object_get(jws, "payload"));
        json_t *keys = json_object_get(payload, "keys");
        if (!json_is_array(keys)) {
                snprintf(why, whylen, "/adv payload has no \"keys\" array");
                return NULL;
        }
        size_t i;
        json_t *k;
        json_array_foreach (keys, i, k) {
                if (!jose_jwk_prm(NULL, k, false, "deriveKey"))
                        continue;
                const char *alg = json_string_value(json_object_get(k, "alg"));
                if (alg && strcmp(alg, "ECMR") != 0)
                        continue;
                return json_incref(k);
        }
        snprintf(why, whylen, "/adv advertises no exchange (ECMR, deriveKey) key");
        return NULL;
}

static int build_pool(struct bench *b, size_t n)
{
        b->pool = calloc(n, sizeof(*b->pool));
        if (!b->pool)
                return -ENOMEM;
        b->npool = n;
        for (size_t i = 0; i < n; i++) {
                /* Provisioning (clevis encrypt): C, c = g·C, K = C·s. */
                json_auto_t *cc = json_pack("{s:s,s:s}", "alg", "ECMR", "crv", "P-521");
                json_auto_t *ee = json_pack("{s:s,s:s}", "alg", "ECMR", "crv", "P-521");
                if (!cc || !ee || !jose_jwk_gen(NULL, cc) || !jose_jwk_gen(NULL, ee))
                        return -EIO;
                json_auto_t *k = jose_jwk_exc(NULL, cc, b->srv);
                json_auto_t *cpub = json_deep_copy(cc);
                if (!k || !cpub || !jose_jwk_pub(NULL, cpub))
                        return -EIO;
                /* Recovery (clevis decrypt): x = c + e. */
                json_auto_t *x = jose_jwk_exc(NULL, cpub, ee);
                if (!x)
                        return -EIO;
                json_object_set_new(x, "alg", json_string("ECMR"));
                json_object_set_new(x, "key_ops", json_pack("[s]", "deriveKey"));
                b->pool[i].body = json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS);
                if (!b->pool[i].body)
                        return -ENOMEM;
                b->pool[i].body_len = strlen(b->pool[i].body);
                b->pool[i].eph = TAKE_PTR(ee);
                b->pool[i].expect = TAKE_PTR(k);
        }
        return 0;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
        if (n == 0)
                return 0;
        double r = p / 100.0 * (double)n;
        size_t i = (size_t)r;
        if ((double)i < r)
                i++;
        if (i > 0)
                i--;
        if (i >= n)
                i = n - 1;
        return v[i];
}

static void usage(FILE *f)
{
        fprintf(f, "usage: bench_tang --url http://HOST:PORT --clients N --duration S\n"
                   "                  [--keepalive|--no-keepalive] [--warmup S] [--pool N]\n"
                   "                  [--timeout-ms MS] [--label TEXT]\n");
}

int main(int argc, char **argv)
{
        const char *url = NULL, *label = NULL;
        unsigned clients = 1, pool = 64, timeout_ms = 10000;
        double duration = 10, warmup = 1;
        bool keepalive = true;
        static const struct option opts[] = {
                { "url", required_argument, NULL, 'u' },
                { "clients", required_argument, NULL, 'c' },
                { "duration", required_argument, NULL, 'd' },
                { "warmup", required_argument, NULL, 'w' },
                { "keepalive", no_argument, NULL, 'k' },
                { "no-keepalive", no_argument, NULL, 'K' },
                { "pool", required_argument, NULL, 'p' },
                { "timeout-ms", required_argument, NULL, 't' },
                { "label", required_argument, NULL, 'l' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        int o;
        while ((o = getopt_long(argc, argv, "u:c:d:w:kKp:t:l:h", opts, NULL)) != -1) {
                char *end = NULL;
                switch (o) {
                case 'u':
                        url = optarg;
                        break;
                case 'c':
                        clients = (unsigned)strtoul(optarg, &end, 10);
                        if (*end || clients == 0 || clients > 100000) {
                                fprintf(stderr,
                                        "bench_tang: --clients: expected 1..100000, "
                                        "found '%s'\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'd':
                case 'w': {
                        double v = strtod(optarg, &end);
                        if (*end || !(v >= 0) || v > 86400) {
                                fprintf(stderr, "bench_tang: --%s: expected seconds, found '%s'\n",
                                        o == 'd' ? "duration" : "warmup", optarg);
                                return 2;
                        }
                        *(o == 'd' ? &duration : &warmup) = v;
                        break;
                }
                case 'k':
                        keepalive = true;
                        break;
                case 'K':
                        keepalive = false;
                        break;
                case 'p':
                        pool = (unsigned)strtoul(optarg, &end, 10);
                        if (*end || pool == 0 || pool > 100000) {
                                fprintf(stderr,
                                        "bench_tang: --pool: expected 1..100000, found "
                                        "'%s'\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 't':
                        timeout_ms = (unsigned)strtoul(optarg, &end, 10);
                        if (*end || timeout_ms == 0) {
                                fprintf(stderr,
                                        "bench_tang: --timeout-ms: expected a positive "
                                        "number, found '%s'\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'l':
                        label = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!url || optind != argc || duration <= 0) {
                usage(stderr);
                return 2;
        }
        size_t ulen = strlen(url);
        while (ulen > 0 && url[ulen - 1] == '/')
                ulen--;

        struct bench b = { .timeout_ms = timeout_ms };
        struct vg_error err = { 0 };

        /* GET /adv and the exchange key. */
        _cleanup_free_ char *adv_url = NULL;
        if (asprintf(&adv_url, "%.*s/adv", (int)ulen, url) < 0)
                return 1;
        struct vg_http_client_config fcfg = { .timeout_ms = timeout_ms, .no_keepalive = true };
        struct vg_http_client_request areq = { .url = adv_url };
        struct vg_http_response *aresp = NULL;
        if (vg_http_fetch(&fcfg, &areq, &aresp, &err) < 0) {
                fprintf(stderr, "bench_tang: GET %s: %s\n", adv_url, vg_error_str(&err));
                return 1;
        }
        if (aresp->status != 200) {
                fprintf(stderr, "bench_tang: GET %s answered %d\n", adv_url, aresp->status);
                vg_http_response_free(aresp);
                return 1;
        }
        char why[256];
        b.srv = pick_exchange_key(aresp, why, sizeof(why));
        vg_http_response_free(aresp);
        if (!b.srv) {
                fprintf(stderr, "bench_tang: GET %s: %s\n", adv_url, why);
                return 1;
        }
        json_auto_t *thp = jose_jwk_thp(NULL, b.srv, "S256");
        const char *kid = json_string_value(thp);
        if (!kid) {
                fprintf(stderr, "bench_tang: cannot compute the exchange key's thumbprint\n");
                return 1;
        }
        if (asprintf(&b.rec_url, "%.*s/rec/%s", (int)ulen, url, kid) < 0)
                return 1;
        if (build_pool(&b, pool) < 0) {
                fprintf(stderr, "bench_tang: cannot build the request pool with libjose\n");
                return 1;
        }

        b.base = event_base_new();
        struct vg_http_client_config cfg = {
                .timeout_ms = timeout_ms,
                .max_idle_per_origin = clients,
                .no_keepalive = !keepalive,
                .idle_timeout_ms = 60000,
        };
        if (!b.base || vg_http_client_new(b.base, &cfg, &b.client, &err) < 0) {
                fprintf(stderr, "bench_tang: %s\n", vg_error_str(&err));
                return 1;
        }
        struct client *cl = calloc(clients, sizeof(*cl));
        if (!cl)
                return 1;
        b.t_start = now_s();
        b.t_measure = b.t_start + warmup;
        b.t_end = b.t_measure + duration;
        b.active = clients;
        for (unsigned i = 0; i < clients; i++) {
                cl[i] = (struct client){ .b = &b, .id = i, .next = (i * 7u) % b.npool };
                cl[i].retry = evtimer_new(b.base, on_retry, &cl[i]);
                if (!cl[i].retry)
                        return 1;
                client_send(&cl[i]);
        }
        /* The connect count at the start of the measured phase. */
        struct event *mark = evtimer_new(b.base, on_mark, &b);
        struct timeval wtv = { (time_t)warmup,
                               (suseconds_t)((warmup - (double)(time_t)warmup) * 1e6) };
        if (!mark || evtimer_add(mark, &wtv) < 0)
                return 1;
        event_base_dispatch(b.base);
        double elapsed = now_s() - b.t_measure;
        if (elapsed > duration)
                elapsed = duration;
        uint64_t connects = vg_http_client_connects(b.client);
        if (warmup <= 0)
                b.connects_at_measure = 0;

        qsort(b.lat, b.nlat, sizeof(*b.lat), cmp_double);
        json_auto_t *out = json_pack(
            "{s:s,s:s,s:b,s:I,s:f,s:f,s:I,s:f,s:{s:f,s:f,s:f,s:f,s:f},s:I,s:I,s:I,s:I}", "url", url,
            "label", label ? label : "", "keepalive", keepalive, "clients", (json_int_t)clients,
            "duration_s", elapsed, "warmup_s", warmup, "recoveries", (json_int_t)b.recoveries,
            "recoveries_per_s",
            elapsed > 0 ? (double)(long long)((double)b.recoveries / elapsed * 10 + 0.5) / 10 : 0.0,
            "latency_ms", "p50", pct(b.lat, b.nlat, 50), "p90", pct(b.lat, b.nlat, 90), "p99",
            pct(b.lat, b.nlat, 99), "max", b.nlat ? b.lat[b.nlat - 1] : 0.0, "mean", 0.0, "errors",
            (json_int_t)b.errors, "connects", (json_int_t)(connects - b.connects_at_measure),
            "connects_total", (json_int_t)connects, "warmup_recoveries",
            (json_int_t)b.warm_recoveries);
        if (!out)
                return 1;
        double sum = 0;
        for (size_t i = 0; i < b.nlat; i++)
                sum += b.lat[i];
        json_object_set_new(json_object_get(out, "latency_ms"), "mean",
                            json_real(b.nlat ? sum / (double)b.nlat : 0));
        if (b.first_error[0])
                json_object_set_new(out, "first_error", json_string(b.first_error));
        _cleanup_free_ char *line =
            json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        printf("%s\n", line);
        fflush(stdout);

        event_free(mark);
        for (unsigned i = 0; i < clients; i++)
                event_free(cl[i].retry);
        free(cl);
        vg_http_client_free(b.client);
        event_base_free(b.base);
        for (size_t i = 0; i < b.npool; i++) {
                free(b.pool[i].body);
                json_decref(b.pool[i].eph);
                json_decref(b.pool[i].expect);
        }
        free(b.pool);
        free(b.lat);
        free(b.rec_url);
        json_decref(b.srv);
        return b.errors == 0 && b.recoveries > 0 ? 0 : 3;
}
