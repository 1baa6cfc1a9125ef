/*
 * vigil-verifier: the pull-model poller. One timer per agent, keep-alive mTLS connections pinned
 * to each agent's certificate; each answer is judged by vg_cv_evaluate(), and the outcome (state,
 * counters, IMA position) is queued for the next batched write.
 *
 * Threads. `poll_workers` worker threads (default: one per CPU) each run their own event loop
 * and HTTP client; every agent is assigned to one worker for its life (the one with the fewest
 * agents when it is added) and that worker OWNS the agent while it is polled: only the worker
 * reads or writes its poll state (state, counters, IMA state, NK, clock, timer, call). The main
 * thread keeps the REST API, the database and revocation deliveries.
 *
 *  - The main thread touches an agent's poll state only through its worker:
 *    vg_cv_on_owners() runs a function on the owning worker and waits for it (GET status, the NK
 *    for /verify/identity), vg_cv_agent_stop() stops polling there and hands the agent to the
 *    main thread (it may then prepare, reset, write, delete or free it), vg_cv_agent_start()
 *    hands it back. Commands travel in the worker's queue (w->lock) and wake it by eventfd; the
 *    worker never waits for the main thread, so the main thread's wait is short.
 *  - Fields set at enrolment (id, ip, port, keys, policies, TLS context) change only while the
 *    main thread owns the agent, so the main thread may read them at any time (notifications).
 *  - State for the database: the owner marks the agent dirty (worker-local list) and publishes
 *    a snapshot every flush_interval / 2 into v->snaps (v->snap_lock), one per agent, newest
 *    wins; the main thread's batched flush writes the snapshots (db.c).
 *  - Revocations are signed by the owner and queued for the main thread (v->outbox,
 *    v->snap_lock, eventfd), which sends them with its own client (notify.c).
 *  - The parsed runtime policies are shared read-only between workers (atomic refcounts); the
 *    policy cache itself is used by the main thread only (vg_cv_agent_prepare).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/rand.h>

#include "boot.h"
#include "encoding.h"
#include "http_client.h"
#include "integrity.h"
#include "log.h"
#include "payload.h"
#include "tpm_public.h"
#include "verifier.h"

static void poll_now(evutil_socket_t fd, short what, void *userdata);

static void schedule(struct vg_cv_agent *a, double delay)
{
        struct timeval tv;

        if (!a->timer) {
                a->timer = evtimer_new(a->w->base, poll_now, a);
                if (!a->timer)
                        return;
        }
        if (delay == a->v->o.quote_interval && a->w->interval_tv) {
                evtimer_add(a->timer, a->w->interval_tv); /* O(1): a common timeout queue */
                return;
        }
        if (delay < 0)
                delay = 0;
        tv.tv_sec = (time_t)delay;
        tv.tv_usec = (suseconds_t)((delay - (double)tv.tv_sec) * 1e6);
        evtimer_add(a->timer, &tv);
}

void vg_cv_poll_start(struct vg_cv_agent *a, double delay)
{
        a->polling = true;
        if (!a->call)
                schedule(a, delay);
}

void vg_cv_poll_stop(struct vg_cv_agent *a)
{
        a->polling = false;
        if (a->call) {
                vg_http_call_cancel(a->call);
                a->call = NULL;
        }
        if (a->timer)
                evtimer_del(a->timer);
}

void vg_cv_agent_reset_failure(struct vg_cv_agent *a)
{
        a->in_failure = false;
        a->n_reported = 0;
        a->reported_quote_event[0] = '\0';
        a->no_progress = 0;
        a->retries = 0;
        if (a->ima)
                vg_ima_state_reset(a->ima);
        a->state = VG_CV_START;
}

/* Keylime's nonces: 20 random letters and digits. */
static void make_nonce(char out[21])
{
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        size_t n = 0;

        while (n < 20) {
                uint8_t buf[32];
                if (RAND_bytes(buf, sizeof(buf)) != 1)
                        abort(); /* no randomness: nothing this verifier says could be trusted */
                for (size_t i = 0; i < sizeof(buf) && n < 20; i++)
                        if (buf[i] < 248) /* 248 = 4 * 62: no modulo bias */
                                out[n++] = alphabet[buf[i] % 62];
        }
        out[20] = '\0';
}

static const char *api_version(const struct vg_cv_agent *a)
{
        return a->supported_version && *a->supported_version ? a->supported_version
                                                             : VG_VERIFIER_API_CURRENT;
}

static bool host_is_v6(const char *ip)
{
        return ip && strchr(ip, ':');
}

static char *agent_url(const struct vg_cv_agent *a, const char *path)
{
        char *url = NULL;
        bool v6 = host_is_v6(a->ip);

        if (asprintf(&url, "%s://%s%s%s:%lld/v%s%s", a->tls ? "https" : "http", v6 ? "[" : "",
                     a->ip ? a->ip : "127.0.0.1", v6 ? "]" : "", (long long)a->port, api_version(a),
                     path) < 0)
                return NULL;
        return url;
}

static bool reported(struct vg_cv_agent *a, uint64_t entry)
{
        for (size_t i = 0; i < a->n_reported; i++)
                if (a->reported[i] == entry)
                        return true;
        return false;
}

static void remember(struct vg_cv_agent *a, uint64_t entry)
{
        if (a->n_reported == a->cap_reported) {
                size_t cap = a->cap_reported ? a->cap_reported * 2 : 16;
                uint64_t *p = realloc(a->reported, cap * sizeof(*p));
                if (!p)
                        return;
                a->reported = p;
                a->cap_reported = cap;
        }
        a->reported[a->n_reported++] = entry;
}

static void set_str(char **dst, const char *src)
{
        if (*dst && src && strcmp(*dst, src) == 0)
                return;
        free(*dst);
        *dst = src ? strdup(src) : NULL;
}

/*
 * The graded policy: the agent is marked FAILED (a runtime policy violation) or INVALID_QUOTE
 * (evidence that cannot be trusted); each event not reported before is logged and sent as a
 * revocation; polling goes on (stop_polling_on_failure restores Keylime's stop) so that later
 * violations are seen too.
 */
static void handle_failure(struct vg_cv_agent *a, struct vg_cv_failure *f)
{
        struct vg_verifier *v = a->v;
        const struct vg_cv_event *worst = NULL;
        size_t fresh = 0;
        bool quote_level = vg_cv_failure_quote_level(f), stop = v->o.stop_polling_on_failure;

        for (size_t i = 0; i < f->n; i++) {
                struct vg_cv_event *e = &f->ev[i];
                bool seen;
                if (e->entry != UINT64_MAX)
                        seen = a->in_failure && reported(a, e->entry);
                else
                        seen = a->in_failure && strcmp(a->reported_quote_event, e->id) == 0;
                if (!e->recoverable)
                        stop = true;
                if (seen)
                        continue;
                vg_cv_event_log(a->id, e);
                if (e->entry != UINT64_MAX)
                        remember(a, e->entry);
                else
                        snprintf(a->reported_quote_event, sizeof(a->reported_quote_event), "%s",
                                 e->id);
                if (!worst || e->severity > worst->severity) /* the first, the cause */
                        worst = e;
                e->fresh = true;
                fresh++;
        }
        vg_cv_integrity_runtime(a, f); /* the fresh IMA failures as a runtimeReportEvent */
        if (f->ima_checked &&
            (f->ima_counts.template_hash || f->ima_counts.fnf || f->ima_counts.hash || fresh))
                if (fresh)
                        vg_err(VG_F("agent", a->id),
                               "IMA ERRORS: template-hash %llu fnf %llu hash %llu good %llu",
                               (unsigned long long)f->ima_counts.template_hash,
                               (unsigned long long)f->ima_counts.fnf,
                               (unsigned long long)f->ima_counts.hash,
                               (unsigned long long)f->ima_counts.good);

        int new_state = quote_level ? VG_CV_INVALID_QUOTE : VG_CV_FAILED;
        if (a->state == VG_CV_INVALID_QUOTE)
                new_state = VG_CV_INVALID_QUOTE;
        a->state = new_state;
        a->in_failure = true;
        if (worst) {
                set_str(&a->last_event_id, worst->id);
                set_str(&a->severity_level, vg_cv_severity_str(worst->severity));
                if (stop)
                        vg_warn(VG_F("agent", a->id, "event", worst->id),
                                "agent %s failed, stopping polling", a->id);
                else
                        vg_warn(VG_F("agent", a->id, "event", worst->id),
                                "agent %s failed (%s); polling continues and new violations are "
                                "reported",
                                a->id, vg_cv_state_str(a->state));
                vg_cv_notify(v, a, "revocation", worst);
        }
        vg_cv_agent_dirty(a);
        if (stop)
                vg_cv_poll_stop(a);
        else
                schedule(a, v->o.quote_interval);
}

static void comm_failure(struct vg_cv_agent *a, const char *what)
{
        struct vg_verifier *v = a->v;
        double delay;

        a->retries++;
        if ((int64_t)a->retries > v->o.max_retries) {
                struct vg_cv_failure f = { 0 };
                vg_cv_failure_add(&f, "not_reachable", false, true, NULL, NULL, NULL, UINT64_MAX,
                                  "agent %s could not be reached after %lld retries: %s", a->id,
                                  (long long)v->o.max_retries, what);
                vg_cv_event_log(a->id, &f.ev[0]);
                set_str(&a->last_event_id, f.ev[0].id);
                a->state = VG_CV_FAILED;
                a->in_failure = true;
                if (a->attestation_count > 0)
                        vg_cv_notify(v, a, "comm_error", &f.ev[0]);
                vg_cv_failure_clear(&f);
                vg_warn(VG_F("agent", a->id), "agent %s failed, stopping polling", a->id);
                vg_cv_agent_dirty(a);
                vg_cv_poll_stop(a);
                return;
        }
        delay = v->o.exponential_backoff ? v->o.retry_interval * pow(2.0, (double)a->retries - 1)
                                         : v->o.retry_interval;
        vg_warn(VG_F("agent", a->id), "%s; retry %u of %lld in %.1f s", what, a->retries,
                (long long)v->o.max_retries, delay);
        if (!a->in_failure && a->state != VG_CV_PROVIDE_V)
                a->state = VG_CV_GET_QUOTE_RETRY;
        schedule(a, delay);
}

/* ---- V delivery --------------------------------------------------------------------------- */

static void on_vkey(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct vg_cv_agent *a = userdata;

        a->call = NULL;
        if (!resp || resp->status != 200) {
                char what[600];
                if (resp)
                        snprintf(what, sizeof(what), "POST /keys/vkey answered %d", resp->status);
                else
                        snprintf(what, sizeof(what), "POST /keys/vkey failed: %s",
                                 vg_error_str(err));
                a->state = VG_CV_PROVIDE_V_RETRY;
                comm_failure(a, what);
                return;
        }
        a->retries = 0;
        a->v_delivered = true;
        a->state = VG_CV_GET_QUOTE;
        vg_info(VG_F("agent", a->id), "V delivered to agent %s after its first good quote", a->id);
        vg_cv_agent_dirty(a);
        schedule(a, a->v->o.quote_interval);
}

static void provide_v(struct vg_cv_agent *a)
{
        struct vg_verifier *v = a->v;
        struct vg_error err = { 0 };
        _cleanup_free_ uint8_t *half = NULL;
        _cleanup_free_ char *enc = NULL, *url = NULL;
        size_t len = 0;

        if (vg_b64_decode(a->v_b64, strlen(a->v_b64), VG_B64_STD, &half, &len) < 0 ||
            len != VG_PAYLOAD_KEY_SIZE) {
                vg_err(VG_F("agent", a->id), "stored V is not 32 bytes of base64; not delivered");
                a->v_delivered = true; /* nothing to deliver, ever */
                schedule(a, v->o.quote_interval);
                return;
        }
        int r = vg_payload_encrypt_half(a->nk, half, &enc, &err);
        OPENSSL_cleanse(half, len);
        if (r < 0) {
                vg_err(VG_F("agent", a->id), "cannot encrypt V to the agent's key: %s",
                       vg_error_str(&err));
                schedule(a, v->o.quote_interval);
                return;
        }
        json_auto_t *body = json_pack("{s:s}", "encrypted_key", enc);
        url = agent_url(a, "/keys/vkey");
        struct vg_http_client_request rq = {
                .method = "POST",
                .url = url,
                .json = body,
                .tls = a->tls,
                .timeout_ms = (unsigned)(v->o.request_timeout * 1000),
        };
        a->state = VG_CV_PROVIDE_V;
        if (!url || vg_http_client_send(a->w->client, &rq, on_vkey, a, &a->call, &err) < 0) {
                vg_err(VG_F("agent", a->id), "cannot send V: %s", vg_error_str(&err));
                schedule(a, v->o.quote_interval);
        }
}

/* ---- quotes ------------------------------------------------------------------------------- */

static const char *jstr(const json_t *o, const char *k)
{
        const json_t *v = json_object_get(o, k);
        return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool alg_accepted(const char *list_json, const char *alg)
{
        if (!list_json || !*list_json)
                return true;
        json_auto_t *l = json_loads(list_json, 0, NULL);
        size_t i;
        json_t *x;

        if (!json_is_array(l) || json_array_size(l) == 0)
                return true;
        json_array_foreach (l, i, x) {
                const char *s = json_string_value(x);
                /* API 2.5 names carry the key size ("rsa2048"): compare the prefix. */
                if (s && strncmp(s, alg, strlen(alg)) == 0)
                        return true;
        }
        return false;
}

static void pkey_freep(EVP_PKEY **k)
{
        EVP_PKEY_free(*k);
}

static void on_quote(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct vg_cv_agent *a = userdata;
        struct vg_verifier *v = a->v;
        struct vg_cv_failure f = { 0 };
        struct vg_error jerr = { 0 };
        _cleanup_(pkey_freep) EVP_PKEY *new_nk = NULL;
        char what[700];

        a->call = NULL;
        if (!resp) {
                snprintf(what, sizeof(what), "quote request failed: %s", vg_error_str(err));
                comm_failure(a, what);
                return;
        }
        if (resp->status != 200) {
                snprintf(what, sizeof(what), "quote request answered %d: %.200s", resp->status,
                         (const char *)resp->body);
                comm_failure(a, what);
                return;
        }
        a->retries = 0;
        a->last_received_quote = (int64_t)vg_cv_now();
        json_auto_t *j = vg_http_response_json(resp, &jerr);
        json_t *res = json_object_get(j, "results");
        const char *quote = jstr(res, "quote"), *hash_alg = jstr(res, "hash_alg");
        const char *pubkey = jstr(res, "pubkey"), *ima = jstr(res, "ima_measurement_list");
        const json_t *ent = json_object_get(res, "ima_measurement_list_entry");
        enum vg_hash_alg alg;

        if (!json_is_object(res) || !quote || !hash_alg) {
                vg_cv_failure_add(&f, "quote_validation.malformed_response", true, true, NULL, NULL,
                                  NULL, UINT64_MAX,
                                  "the agent's answer has no quote or hash_alg%s%s", j ? "" : ": ",
                                  j ? "" : vg_error_str(&jerr));
                goto failed;
        }
        if (vg_hash_alg_from_name(hash_alg, &alg) < 0 ||
            (strcmp(a->accepted_hash, hash_alg) != 0 && !alg_accepted(a->accept_hash, hash_alg))) {
                vg_cv_failure_add(&f, "quote_validation.invalid_hash_alg", true, true, NULL,
                                  a->accept_hash, hash_alg, UINT64_MAX,
                                  "hash algorithm %.20s is not accepted", hash_alg);
                goto failed;
        }
        if (alg != a->hash_alg || !a->ima) {
                a->hash_alg = alg;
                vg_ima_state_free(a->ima);
                a->ima = NULL;
                if (vg_ima_state_new(alg, &a->ima) < 0)
                        goto failed;
        }
        if (strlen(hash_alg) < sizeof(a->accepted_hash)) /* accept_hash is fixed at enrolment */
                snprintf(a->accepted_hash, sizeof(a->accepted_hash), "%s", hash_alg);
        set_str(&a->hash_alg_s, hash_alg);
        set_str(&a->enc_alg_s, jstr(res, "enc_alg"));
        set_str(&a->sign_alg_s, jstr(res, "sign_alg"));
        if (pubkey && (!a->public_key || strcmp(pubkey, a->public_key) != 0)) {
                BIO *b = BIO_new_mem_buf(pubkey, -1);
                new_nk = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
                BIO_free(b);
                if (!new_nk) {
                        vg_cv_failure_add(&f, "quote_validation.invalid_pubkey", true, true, NULL,
                                          NULL, NULL, UINT64_MAX,
                                          "the agent's pubkey is not a PEM public key");
                        goto failed;
                }
                /* Adopted only once PCR 16 of this very quote binds it (below): a key swapped
                 * in on the way must not become the key V is encrypted to. */
        }
        if (!a->public_key && !new_nk) {
                vg_cv_failure_add(&f, "quote_validation.missing_pubkey", true, true, NULL, NULL,
                                  NULL, UINT64_MAX, "the agent sent no pubkey with partial=0");
                goto failed;
        }

        uint64_t first = a->asked_entry;
        if (a->ima_policy && ima) {
                json_int_t e = json_is_integer(ent) ? json_integer_value(ent) : -1;
                if (e == 0 && a->asked_entry != 0) {
                        /* The agent's list starts again (new boot, or the agent's cache). */
                        vg_info(VG_F("agent", a->id),
                                "agent sent its IMA list from entry 0 (entry %llu asked); "
                                "replaying from the start",
                                (unsigned long long)a->asked_entry);
                        vg_ima_state_reset(a->ima);
                        first = 0;
                } else if (e < 0 || (uint64_t)e != a->asked_entry) {
                        vg_cv_failure_add(&f, "ima.invalid_entry_number", false, false, NULL, NULL,
                                          NULL, UINT64_MAX,
                                          "ima_measurement_list_entry is %lld; expected 0 or "
                                          "%llu",
                                          (long long)e, (unsigned long long)a->asked_entry);
                        goto failed;
                }
        }

        struct vg_cv_evidence ev = {
                .quote = quote,
                .nonce = a->nonce,
                .hash_alg = alg,
                .ak = a->ak->pkey,
                .nk_pem = new_nk ? pubkey : a->public_key,
                .tpm_policy = a->tpm_policy,
                .prev_clock = a->have_clock ? &a->clock : NULL,
                .ima_policy = a->ima_policy,
                .ima_state = a->ima,
                .ima_list = ima,
                .ima_list_len = ima ? strlen(ima) : 0,
                .ima_first_entry = first,
                .ima_requested = a->ima_policy != NULL,
                .fail_on_violations = !v->o.ignore_tomtou_errors,
                .pcrs_out = &a->quoted,
        };
        struct vg_cv_verdict vd;
        int er = vg_cv_evaluate(&ev, &vd, &f);
        if (vd.pcrs_saved) { /* written with the state (db.c) */
                a->quoted.time_ms = (int64_t)(vg_cv_now() * 1000);
                a->quoted.boot_counter = vd.clock.reset_count;
                vg_cv_integrity_quote(a); /* a new boot is evaluated against its baseline */
        }
        /* Keylime's "good N" counts the whole list; the entries before this batch were good. */
        f.ima_counts.good += first;
        if (er < 0) {
                vg_cv_failure_add(&f, "internal.error", true, true, NULL, NULL, NULL, UINT64_MAX,
                                  "the evidence could not be evaluated");
                goto failed;
        }
        if (vd.quote_ok && new_nk) {
                EVP_PKEY_free(a->nk);
                a->nk = TAKE_PTR(new_nk);
                set_str(&a->public_key, pubkey);
        }
        if (vd.quote_ok) {
                if (vd.reboot)
                        vg_notice(VG_F("agent", a->id),
                                  "agent %s rebooted (resetCount %u -> %u, restartCount %u -> "
                                  "%u): IMA state reset, replaying its new list from entry 0",
                                  a->id, a->clock.reset_count, vd.clock.reset_count,
                                  a->clock.restart_count, vd.clock.restart_count);
                a->clock = vd.clock;
                a->have_clock = true;
        }
        if (vd.quote_ok && vd.pcrs_saved) /* measured boot (boot.c) */
                vg_cv_boot_check(a, jstr(res, "mb_measurement_list"), &a->quoted, alg, &f);
        if (f.n)
                goto failed;
        vg_cv_agent_dirty(a);

        if (a->ima_policy && !vd.ima_skipped && !vd.ima_pcr_matched) {
                a->no_progress++;
                if (a->no_progress >= v->o.max_quotes_without_progress) {
                        vg_cv_failure_add(
                            &f, "ima.pcr_mismatch", false, true, NULL, NULL, NULL, UINT64_MAX,
                            "IMA measurement list does not match TPM PCR 10: no entry reached the "
                            "quoted value in %lld successive quotes (from entry %llu)",
                            (long long)a->no_progress,
                            (unsigned long long)vg_ima_state_next_entry(a->ima));
                        a->no_progress = 0;
                        vg_ima_state_reset(a->ima);
                        goto failed;
                }
                vg_debug(VG_F("agent", a->id),
                         "quoted PCR 10 not reached yet by the IMA list (%lld of %lld quotes); "
                         "the entries so far are good",
                         (long long)a->no_progress, (long long)v->o.max_quotes_without_progress);
                schedule(a, v->o.quote_interval);
                return;
        }
        a->no_progress = 0;
        if (a->in_failure) {
                /* Still failed until reactivate; only new violations are reported. */
                schedule(a, v->o.quote_interval);
                return;
        }
        a->attestation_count++;
        a->last_successful_attestation = (int64_t)vg_cv_now();
        a->state = VG_CV_GET_QUOTE;
        vg_debug(VG_F("agent", a->id), "attestation %lld passed (IMA next entry %llu)",
                 (long long)a->attestation_count,
                 (unsigned long long)(a->ima ? vg_ima_state_next_entry(a->ima) : 0));
        if (a->v_b64 && *a->v_b64 && !a->v_delivered && a->nk)
                provide_v(a);
        else
                schedule(a, v->o.quote_interval);
        return;

failed:
        handle_failure(a, &f);
        vg_cv_failure_clear(&f);
}

static void poll_now(evutil_socket_t fd, short what, void *userdata)
{
        struct vg_cv_agent *a = userdata;
        struct vg_verifier *v = a->v;
        struct vg_error err = { 0 };
        _cleanup_free_ char *path = NULL, *url = NULL;

        (void)fd;
        (void)what;
        if (!a->polling || a->call)
                return;
        make_nonce(a->nonce);
        a->asked_entry = a->ima ? vg_ima_state_next_entry(a->ima) : 0;
        if (asprintf(&path, "/quotes/integrity?nonce=%s&mask=0x%x&partial=%d&ima_ml_entry=%llu",
                     a->nonce, a->mask, a->public_key ? 1 : 0,
                     (unsigned long long)a->asked_entry) < 0 ||
            !(url = agent_url(a, path)))
                return;
        if (a->state == VG_CV_START)
                a->state = VG_CV_GET_QUOTE;
        struct vg_http_client_request rq = {
                .url = url,
                .tls = a->tls,
                .timeout_ms = (unsigned)(v->o.request_timeout * 1000),
        };
        vg_debug(VG_F("agent", a->id), "requesting quote: nonce %s mask 0x%x ima_ml_entry %llu",
                 a->nonce, a->mask, (unsigned long long)a->asked_entry);
        if (vg_http_client_send(a->w->client, &rq, on_quote, a, &a->call, &err) < 0) {
                a->call = NULL;
                comm_failure(a, vg_error_str(&err));
        }
}

/* ---- workers ------------------------------------------------------------------------------ */

struct vg_cv_cmd {
        struct vg_cv_cmd *next;
        void (*fn)(void *arg);
        void *arg;
        bool done;
};

/* Main thread: run fn(arg) on w and wait. Inline when w's thread does not run (startup,
 * shutdown). */
static void on_worker(struct vg_cv_worker *w, void (*fn)(void *), void *arg)
{
        struct vg_cv_cmd c = { .fn = fn, .arg = arg };
        uint64_t one = 1;

        if (!w->running) {
                fn(arg);
                return;
        }
        pthread_mutex_lock(&w->lock);
        *w->cmds_tail = &c;
        w->cmds_tail = &c.next;
        pthread_mutex_unlock(&w->lock);
        if (write(w->wake_fd, &one, sizeof(one)) < 0) {
                /* An eventfd write fails only on overflow, which a pending wake-up covers. */
        }
        pthread_mutex_lock(&w->lock);
        while (!c.done)
                pthread_cond_wait(&w->done, &w->lock);
        pthread_mutex_unlock(&w->lock);
}

static void on_wake(evutil_socket_t fd, short what, void *userdata)
{
        struct vg_cv_worker *w = userdata;
        struct vg_cv_cmd *c, *next;
        uint64_t n;

        (void)what;
        if (read(fd, &n, sizeof(n)) < 0) {
                /* EAGAIN: nothing counted; the queue is looked at anyway. */
        }
        pthread_mutex_lock(&w->lock);
        c = w->cmds;
        w->cmds = NULL;
        w->cmds_tail = &w->cmds;
        pthread_mutex_unlock(&w->lock);
        for (; c; c = next) {
                next = c->next; /* c lives on the waiting thread's stack until done */
                c->fn(c->arg);
                pthread_mutex_lock(&w->lock);
                c->done = true;
                pthread_cond_broadcast(&w->done);
                pthread_mutex_unlock(&w->lock);
        }
}

/* Queue a snapshot of every agent whose state changed since the last pass. */
static void publish_dirty(struct vg_cv_worker *w)
{
        for (size_t i = 0; i < w->n_dirty; i++)
                if (w->dirty[i] && w->dirty[i]->dirty)
                        vg_cv_agent_publish(w->dirty[i]);
        w->n_dirty = 0;
}

static void on_publish(evutil_socket_t fd, short what, void *userdata)
{
        (void)fd;
        (void)what;
        publish_dirty(userdata);
}

static void *worker_main(void *userdata)
{
        struct vg_cv_worker *w = userdata;

        event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
        return NULL;
}

static void cmd_exit(void *arg)
{
        struct vg_cv_worker *w = arg;

        event_base_loopbreak(w->base);
}

int vg_cv_workers_new(struct vg_verifier *v, SSL_CTX *agent_tls, struct vg_error *err)
{
        unsigned n = v->o.poll_workers ? v->o.poll_workers : 1;
        struct vg_http_client_config hc = {
                .tls = agent_tls,
                .timeout_ms = (unsigned)(v->o.request_timeout * 1000),
                .max_response_bytes = 256u << 20, /* IMA lists of busy machines */
                .max_idle_per_origin = 2,
                .idle_timeout_ms = (unsigned)(v->o.quote_interval * 1000) + 30000,
        };
        double pub = v->o.flush_interval / 2;
        struct timeval ptv = { (time_t)pub, (suseconds_t)((pub - (double)(time_t)pub) * 1e6) };
        struct timeval itv = {
                (time_t)v->o.quote_interval,
                (suseconds_t)((v->o.quote_interval - (double)(time_t)v->o.quote_interval) * 1e6)
        };
        int r;

        v->workers = calloc(n, sizeof(*v->workers));
        if (!v->workers)
                return vg_error_set(err, -ENOMEM, "out of memory");
        for (unsigned i = 0; i < n; i++) {
                struct vg_cv_worker *w = &v->workers[i];
                w->v = v;
                w->index = i;
                w->wake_fd = -1;
                w->cmds_tail = &w->cmds;
                pthread_mutex_init(&w->lock, NULL);
                pthread_cond_init(&w->done, NULL);
                v->n_workers = i + 1;
                w->base = event_base_new();
                if (!w->base)
                        return vg_error_set(err, -ENOMEM, "cannot create a poller event loop");
                w->interval_tv = event_base_init_common_timeout(w->base, &itv);
                if ((r = vg_http_client_new(w->base, &hc, &w->client, err)) < 0)
                        return r;
                w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                if (w->wake_fd < 0)
                        return vg_error_set(err, -errno, "eventfd: %s", strerror(errno));
                w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w);
                w->publish_ev = event_new(w->base, -1, EV_PERSIST, on_publish, w);
                if (!w->wake_ev || !w->publish_ev || event_add(w->wake_ev, NULL) < 0 ||
                    event_add(w->publish_ev, &ptv) < 0)
                        return vg_error_set(err, -ENOMEM, "cannot start a poller");
        }
        return 0;
}

int vg_cv_workers_run(struct vg_verifier *v, struct vg_error *err)
{
        for (unsigned i = 0; i < v->n_workers; i++) {
                struct vg_cv_worker *w = &v->workers[i];
                int r = pthread_create(&w->thread, NULL, worker_main, w);
                if (r != 0)
                        return vg_error_set(err, -r, "cannot start poller thread %u: %s", i,
                                            strerror(r));
                w->running = true;
        }
        return 0;
}

void vg_cv_workers_free(struct vg_verifier *v)
{
        for (unsigned i = 0; i < v->n_workers; i++) {
                struct vg_cv_worker *w = &v->workers[i];
                if (w->running) {
                        on_worker(w, cmd_exit, w);
                        pthread_join(w->thread, NULL);
                        w->running = false;
                }
        }
        /* Threads gone: everything below runs here. */
        for (struct vg_cv_agent *a = v->agents; a; a = a->next)
                vg_cv_poll_stop(a);
        for (unsigned i = 0; i < v->n_workers; i++)
                publish_dirty(&v->workers[i]);
}

/* After the agents (their timers and calls live on the workers' loops) are freed. */
void vg_cv_workers_release(struct vg_verifier *v)
{
        for (unsigned i = 0; i < v->n_workers; i++) {
                struct vg_cv_worker *w = &v->workers[i];
                vg_http_client_free(w->client);
                if (w->wake_ev)
                        event_free(w->wake_ev);
                if (w->publish_ev)
                        event_free(w->publish_ev);
                if (w->wake_fd >= 0)
                        close(w->wake_fd);
                if (w->base)
                        vg_event_base_free_drained(w->base);
                free(w->dirty);
                pthread_mutex_destroy(&w->lock);
                pthread_cond_destroy(&w->done);
        }
        free(v->workers);
        v->workers = NULL;
        v->n_workers = 0;
}

void vg_cv_agent_assign(struct vg_verifier *v, struct vg_cv_agent *a)
{
        struct vg_cv_worker *best = &v->workers[0];

        for (unsigned i = 1; i < v->n_workers; i++)
                if (v->workers[i].n_agents < best->n_agents)
                        best = &v->workers[i];
        a->w = best;
        best->n_agents++;
}

struct start_cmd {
        struct vg_cv_agent *a;
        double delay;
};

static void cmd_start(void *arg)
{
        struct start_cmd *c = arg;

        vg_cv_poll_start(c->a, c->delay);
}

void vg_cv_agent_start(struct vg_cv_agent *a, double delay)
{
        struct start_cmd c = { a, delay };

        on_worker(a->w, cmd_start, &c);
}

static void cmd_stop(void *arg)
{
        struct vg_cv_agent *a = arg;
        struct vg_cv_worker *w = a->w;

        vg_cv_poll_stop(a);
        if (a->dirty)
                vg_cv_agent_publish(a);
        for (size_t i = 0; i < w->n_dirty; i++)
                if (w->dirty[i] == a)
                        w->dirty[i] = NULL;
}

void vg_cv_agent_stop(struct vg_cv_agent *a)
{
        on_worker(a->w, cmd_stop, a);
}

struct owners_cmd {
        struct vg_cv_worker *w;
        struct vg_cv_agent *const *agents;
        size_t n;
        void (*fn)(struct vg_cv_agent *a, size_t i, void *ctx);
        void *ctx;
};

static void cmd_owners(void *arg)
{
        struct owners_cmd *c = arg;

        for (size_t i = 0; i < c->n; i++)
                if (c->agents[i] && c->agents[i]->w == c->w)
                        c->fn(c->agents[i], i, c->ctx);
}

void vg_cv_on_owners(struct vg_verifier *v, struct vg_cv_agent *const *agents, size_t n,
                     void (*fn)(struct vg_cv_agent *a, size_t i, void *ctx), void *ctx)
{
        for (unsigned k = 0; k < v->n_workers; k++) {
                struct owners_cmd c = { &v->workers[k], agents, n, fn, ctx };
                bool any = false;
                for (size_t i = 0; i < n && !any; i++)
                        any = agents[i] && agents[i]->w == c.w;
                if (any)
                        on_worker(c.w, cmd_owners, &c);
        }
        /* Agents without a worker (read from the database for the call) belong to no one. */
        for (size_t i = 0; i < n; i++)
                if (agents[i] && !agents[i]->w)
                        fn(agents[i], i, ctx);
}
