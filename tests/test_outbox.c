/* vigil tests: integrity events and the outbox against real peers: a mosquitto broker started
 * here (stopped and restarted on the same port mid-test), an HTTP server checking the webhook's
 * HMAC (503 then 200), the file sink; on SQLite and on a real PostgreSQL, with a process restart
 * (a new outbox on the same database) in the middle of a delivery. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <netinet/in.h>

#include "cleanup.h"
#include "encoding.h"
#include "http_client.h"
#include "http_server.h"
#include "integrity_event.h"
#include "log.h"
#include "outbox.h"
#include "pg.h"
#include "store.h"
#include "tap.h"

static char *tmp;
static char *log_path;
static int broker_port;
static pid_t broker_pid = -1;

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef bool (*cond_fn)(void *);

/* Run the loop until cond holds or ms pass. */
static bool run_until(struct event_base *base, cond_fn cond, void *arg, int ms)
{
        int64_t end = mono_ms() + ms;

        while (!cond || !cond(arg)) {
                if (mono_ms() > end)
                        return cond == NULL;
                struct timeval tv = { 0, 20000 };
                event_base_loopexit(base, &tv);
                event_base_dispatch(base);
        }
        return true;
}

static size_t count_in_file(const char *path, const char *needle)
{
        _cleanup_free_ char *s = tap_read_file(path, NULL);
        size_t n = 0;

        for (const char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* A late-boot failure of agent, with bootCounter i (the order check reads it back). */
static json_t *make_event(const char *agent, unsigned i)
{
        struct vg_ievent_measurement actual = { .alg = VG_HASH_SHA256, .pcr = 4 },
                                     policy = { .alg = VG_HASH_SHA256, .pcr = 4 };
        struct vg_ievent_header h = { .agent_id = agent,
                                      .boot_counter = i,
                                      .severity = VG_IEVENT_ERROR };
        struct vg_error err = { 0 };

        memset(actual.value, (int)(i & 0xff), 32);
        memset(policy.value, 0xaa, 32);
        json_t *ev = vg_ievent_boot_report(&h, true, false, &actual, 1, &policy, 1, &err);
        if (!ev)
                tap_bail("make_event: %s", vg_error_str(&err));
        return ev;
}

static int append_range(struct vg_outbox *ob, const char *agent, unsigned from, unsigned to)
{
        json_t *evs[512];
        struct vg_error err = { 0 };
        size_t n = 0;
        int r = 0;

        for (unsigned i = from; i < to; i++) {
                evs[n++] = make_event(agent, i);
                if (n == VG_ARRAY_SIZE(evs) || i + 1 == to) {
                        r = vg_outbox_append(ob, evs, n, NULL, &err);
                        for (size_t k = 0; k < n; k++)
                                json_decref(evs[k]);
                        n = 0;
                        if (r < 0) {
                                tap_diag("append: %s", vg_error_str(&err));
                                return r;
                        }
                }
        }
        return 0;
}

/* ---- received events, per peer ---- */

struct received {
        pthread_mutex_t lock;
        char **items; /* "topic payload" or payload */
        size_t n, cap;
};

static void received_add(struct received *rc, const char *topic, const void *p, size_t len)
{
        char *s = NULL;

        if (asprintf(&s, "%s%s%.*s", topic ? topic : "", topic ? " " : "", (int)len,
                     (const char *)p) < 0)
                return;
        pthread_mutex_lock(&rc->lock);
        if (rc->n == rc->cap) {
                rc->cap = rc->cap ? rc->cap * 2 : 256;
                rc->items = realloc(rc->items, rc->cap * sizeof(*rc->items));
        }
        rc->items[rc->n++] = s;
        pthread_mutex_unlock(&rc->lock);
}

static void received_clear(struct received *rc)
{
        pthread_mutex_lock(&rc->lock);
        for (size_t i = 0; i < rc->n; i++)
                free(rc->items[i]);
        rc->n = 0;
        pthread_mutex_unlock(&rc->lock);
}

/*
 * Check that agent's events from..to-1 all arrived, first occurrences in order, every payload a
 * valid event and (topic set) on the right topic. *dups receives the number of duplicates.
 */
static bool check_sequence(struct received *rc, const char *agent, unsigned from, unsigned to,
                           bool topics, size_t *dups, char *why, size_t why_len)
{
        unsigned next = from;
        size_t d = 0;
        bool ok = true;
        _cleanup_free_ char *topic = NULL;

        if (asprintf(&topic, "vigil/events/%s/lateBootReportEvent ", agent) < 0)
                return false;
        why[0] = '\0';
        pthread_mutex_lock(&rc->lock);
        for (size_t i = 0; i < rc->n && ok; i++) {
                const char *payload = rc->items[i];
                if (topics) {
                        if (strncmp(payload, "vigil/events/", 13) != 0)
                                continue;
                        if (strncmp(payload, topic, strlen(topic)) != 0)
                                continue; /* another agent's */
                        payload += strlen(topic);
                }
                struct vg_error err = { 0 };
                struct vg_ievent_info info;
                json_t *ev = NULL;
                if (vg_ievent_parse(payload, strlen(payload), &ev, &info, &err) < 0) {
                        snprintf(why, why_len, "item %zu invalid: %s", i, vg_error_str(&err));
                        ok = false;
                        break;
                }
                if (strcmp(info.agent_id, agent) == 0) {
                        if (info.boot_counter == next)
                                next++;
                        else if (info.boot_counter < next && info.boot_counter >= from)
                                d++;
                        else {
                                snprintf(why, why_len, "item %zu: event %llu where %u was due", i,
                                         (unsigned long long)info.boot_counter, next);
                                ok = false;
                        }
                }
                json_decref(ev);
        }
        pthread_mutex_unlock(&rc->lock);
        if (ok && next != to) {
                snprintf(why, why_len, "only %u of %u events arrived", next - from, to - from);
                ok = false;
        }
        if (dups)
                *dups = d;
        return ok;
}

struct seq_wait {
        struct received *rc;
        const char *agent;
        unsigned from, to;
        bool topics;
};

static bool seq_complete(void *arg)
{
        struct seq_wait *w = arg;
        char why[256];
        return check_sequence(w->rc, w->agent, w->from, w->to, w->topics, NULL, why, sizeof(why));
}

/* ---- mosquitto ---- */

static void broker_start(void)
{
        char *conf = tap_strf("%s/mosquitto.conf", tmp);
        char *blog = tap_strf("%s/mosquitto.log", tmp);
        char *text = tap_strf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                              "max_queued_messages 100000\nmax_inflight_messages 0\n"
                              "log_dest stderr\nlog_type error\nlog_type warning\n",
                              broker_port);
        char *argv[] = { "/usr/sbin/mosquitto", "-c", conf, NULL };

        tap_write_file(conf, text);
        broker_pid = tap_spawn_log(argv, blog);
        tap_wait_port(broker_port, 5000);
        free(conf);
        free(blog);
        free(text);
}

struct subscriber {
        struct mosquitto *mosq;
        struct received rc;
        pthread_mutex_t lock;
        int subscribed; /* SUBACKs received */
};

static void sub_on_connect(struct mosquitto *mosq, void *ud, int rc)
{
        (void)ud;
        if (rc == 0)
                mosquitto_subscribe(mosq, NULL, "vigil/events/#", 1);
}

static void sub_on_subscribe(struct mosquitto *mosq, void *ud, int mid, int n, const int *qos)
{
        struct subscriber *s = ud;
        (void)mosq;
        (void)mid;
        (void)n;
        (void)qos;
        pthread_mutex_lock(&s->lock);
        s->subscribed++;
        pthread_mutex_unlock(&s->lock);
}

static void sub_on_message(struct mosquitto *mosq, void *ud, const struct mosquitto_message *m)
{
        struct subscriber *s = ud;
        (void)mosq;
        received_add(&s->rc, m->topic, m->payload, (size_t)m->payloadlen);
}

static int sub_subscribed(struct subscriber *s)
{
        pthread_mutex_lock(&s->lock);
        int n = s->subscribed;
        pthread_mutex_unlock(&s->lock);
        return n;
}

static bool sub_wait(struct subscriber *s, int at_least, int ms)
{
        int64_t end = mono_ms() + ms;
        while (sub_subscribed(s) < at_least) {
                if (mono_ms() > end)
                        return false;
                usleep(20000);
        }
        return true;
}

static void subscriber_start(struct subscriber *s)
{
        s->mosq = mosquitto_new("vigil-test-sub", false, s);
        if (!s->mosq)
                tap_bail("mosquitto_new failed");
        mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        mosquitto_max_inflight_messages_set(s->mosq, 0);
        mosquitto_reconnect_delay_set(s->mosq, 1, 1, false);
        mosquitto_connect_callback_set(s->mosq, sub_on_connect);
        mosquitto_subscribe_callback_set(s->mosq, sub_on_subscribe);
        mosquitto_message_callback_set(s->mosq, sub_on_message);
        if (mosquitto_connect(s->mosq, "127.0.0.1", broker_port, 10) != MOSQ_ERR_SUCCESS)
                tap_bail("the test subscriber cannot connect to the broker on port %d",
                         broker_port);
        mosquitto_loop_start(s->mosq);
        if (!sub_wait(s, 1, 5000))
                tap_bail("the test subscriber got no SUBACK");
}

/* ---- webhook peer ---- */

struct hook {
        struct vg_http_server *srv;
        int status; /* what to answer */
        unsigned requests, bad_signatures;
        struct received rc;
};

static void on_hook(struct vg_http_request *req, void *ud)
{
        struct hook *h = ud;
        size_t len = 0;
        const uint8_t *body = vg_http_request_body(req, &len);
        const char *sig = vg_http_request_header(req, "X-Vigil-Signature");
        const char *id = vg_http_request_header(req, "X-Vigil-Event-Id");
        char want[65];

        h->requests++;
        vg_sink_webhook_signature("s3cret", body, len, want);
        if (!sig || strncmp(sig, "sha256=", 7) != 0 || strcmp(sig + 7, want) != 0 || !id ||
            !strstr((const char *)body, id) ||
            strcmp(vg_http_request_header(req, "Content-Type") ?: "", "application/json") != 0) {
                h->bad_signatures++;
                vg_http_reply(req, 401, "text/plain", "bad signature", 13);
                return;
        }
        if (h->status == 200)
                received_add(&h->rc, NULL, body, len);
        vg_http_reply(req, h->status, "text/plain", "", 0);
}

/* ---- one backend ---- */

struct backend {
        const char *name;
        char *url;   /* for vg_store_open */
        char *url_b; /* a second database on the same backend */
};

static struct vg_store *open_store(const char *url)
{
        struct vg_error err = { 0 };
        struct vg_store *db = NULL;
        struct vg_store_options so = { .data_dir = tmp };

        if (vg_store_open(&db, url, &so, &err) < 0)
                tap_bail("open %s: %s", url, vg_error_str(&err));
        return db;
}

static int64_t count_rows(struct vg_store *db, const char *sql)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };

        if (vg_store_prepare(db, sql, &st, &err) < 0 || vg_stmt_step(st, &err) < 0) {
                tap_diag("%s", vg_error_str(&err));
                return -1;
        }
        return vg_stmt_column_int64(st, 0);
}

struct status_wait {
        struct vg_outbox *ob;
        const char *sink;
        bool failing;
        int64_t cursor;
};

static bool status_is(void *arg)
{
        struct status_wait *w = arg;
        struct vg_outbox_sink_status st;
        if (vg_outbox_sink_status(w->ob, w->sink, &st) < 0)
                return false;
        return st.failing == w->failing && (w->cursor < 0 || st.cursor >= w->cursor);
}

static void test_backend(struct backend *b, struct subscriber *sub)
{
        struct vg_error err = { 0 };
        struct event_base *base = event_base_new();
        struct vg_store *db = open_store(b->url);
        struct vg_outbox *ob = NULL;
        struct vg_sink *fs = NULL, *ws = NULL, *ms = NULL;
        char why[256];
        size_t dups = 0;
        _cleanup_free_ char *agent = tap_strf("agent-%s", b->name);
        _cleanup_free_ char *dir = tap_strf("%s/%s-events", tmp, b->name);
        _cleanup_free_ char *path = tap_strf("%s/events.jsonl", dir);
        struct vg_outbox_config oc = {
                .batch_size = 64, .backoff_min_ms = 100, .backoff_max_ms = 400, .poll_ms = 200
        };
        struct hook hook = { .status = 200, .rc.lock = PTHREAD_MUTEX_INITIALIZER };

        tap_diag("backend %s", b->name);
        received_clear(&sub->rc);
        ok(vg_outbox_new(base, db, &oc, &ob, &err) == 0, "%s: outbox created (%s)", b->name,
           vg_error_str(&err));

        /* durable before delivery: another connection sees the rows before the loop runs */
        ok(append_range(ob, agent, 0, 100) == 0, "%s: 100 events appended", b->name);
        {
                struct vg_store *other = open_store(b->url);
                is_int(count_rows(other, "SELECT COUNT(*) FROM outbox_events"), 100,
                       "%s: the 100 events are committed before anything is delivered", b->name);
                vg_store_close(other);
        }
        /* idempotent append: the same eventId twice is one event */
        {
                json_t *ev = make_event(agent, 100);
                int64_t seq[2] = { -1, -1 };
                json_t *twice[2] = { ev, ev };
                int r = vg_outbox_append(ob, twice, 2, seq, &err);
                ok(r == 0 && seq[0] > 0 && seq[1] == 0,
                   "%s: an eventId appended twice is stored once (seqs %lld, %lld: %s)", b->name,
                   (long long)seq[0], (long long)seq[1], r < 0 ? vg_error_str(&err) : "ok");
                json_decref(ev);
                json_t *bad = make_event(agent, 0);
                json_object_set_new(json_object_get(bad, "lateBootReportEvent"),
                                    "policyEvaluationPassed", json_string("no"));
                json_t *mixed[2] = { make_event(agent, 999), bad };
                is_int(vg_outbox_append(ob, mixed, 2, NULL, &err), -EINVAL,
                       "%s: an invalid event refuses the whole append", b->name);
                contains(err.msg, "event 1: lateBootReportEvent.policyEvaluationPassed",
                         "%s: the error names the event and the JSON path", b->name);
                json_decref(mixed[0]);
                json_decref(bad);
        }

        /* the file sink points into a directory that does not exist yet: an outage */
        struct vg_sink_file_config fc = { .path = path };
        ok(vg_sink_file_new(&fc, &fs, &err) == 0 && vg_outbox_add_sink(ob, fs, &err) == 0,
           "%s: file sink attached", b->name);
        struct vg_sink_webhook_config wc = { .url = NULL, .secret = "s3cret" };
        struct vg_http_server_config hc = { .address = "127.0.0.1" };
        if (vg_http_server_new(base, &hc, &hook.srv, &err) < 0 ||
            vg_http_server_route(hook.srv, "POST", "/hook", on_hook, &hook) < 0)
                tap_bail("webhook server: %s", vg_error_str(&err));
        _cleanup_free_ char *hook_url =
            tap_strf("http://127.0.0.1:%d/hook", vg_http_server_port(hook.srv));
        wc.url = hook_url;
        ok(vg_sink_webhook_new(&wc, &ws, &err) == 0 && vg_outbox_add_sink(ob, ws, &err) == 0,
           "%s: webhook sink attached", b->name);
        struct vg_sink_mqtt_config mc = { .port = broker_port,
                                          .client_id = "vigil-test-outbox",
                                          .backoff_min_ms = 100,
                                          .backoff_max_ms = 500,
                                          .ack_timeout_ms = 3000 };
        ok(vg_sink_mqtt_new(&mc, &ms, &err) == 0 && vg_outbox_add_sink(ob, ms, &err) == 0,
           "%s: mqtt sink attached", b->name);

        struct seq_wait wm = { &sub->rc, agent, 0, 101, true };
        ok(run_until(base, seq_complete, &wm, 8000), "%s: MQTT: all 101 events arrived in order",
           b->name);
        ok(check_sequence(&sub->rc, agent, 0, 101, true, &dups, why, sizeof(why)) && dups == 0,
           "%s: MQTT: on vigil/events/<agent>/lateBootReportEvent, once each (%s, %zu dups)",
           b->name, why, dups);
        struct seq_wait ww = { &hook.rc, agent, 0, 101, false };
        ok(run_until(base, seq_complete, &ww, 5000),
           "%s: webhook: all 101 events arrived in order with a valid HMAC", b->name);
        is_int(hook.bad_signatures, 0, "%s: webhook: no request with a bad signature", b->name);

        struct status_wait fw = { ob, "file", true, -1 };
        ok(status_is(&fw), "%s: file sink in an outage (no directory)", b->name);
        is_int(count_in_file(log_path, "sink=file"), 1,
               "%s: the outage is logged once, naming the sink", b->name);
        contains(tap_keep(tap_read_file(log_path, NULL)), "No such file or directory",
                 "%s: ... and its cause", b->name);
        mkdir(dir, 0700);
        fw = (struct status_wait){ ob, "file", false, 101 };
        ok(run_until(base, status_is, &fw, 3000),
           "%s: file sink recovers once the directory exists", b->name);
        is_int(count_in_file(log_path, "delivering again"), 1, "%s: the recovery is logged once",
               b->name);
        {
                struct received lines = { .lock = PTHREAD_MUTEX_INITIALIZER };
                _cleanup_free_ char *text = tap_read_file(path, NULL);
                char *save = NULL;
                for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                        received_add(&lines, NULL, l, strlen(l));
                ok(check_sequence(&lines, agent, 0, 101, false, &dups, why, sizeof(why)) &&
                       dups == 0 && lines.n == 101,
                   "%s: file: 101 JSON lines in order (%s)", b->name, why);
                received_clear(&lines);
                free(lines.items);
        }

        /* broker outage: stop it, append, nothing is lost, order kept */
        tap_stop(&broker_pid);
        ok(append_range(ob, agent, 101, 151) == 0, "%s: 50 events appended with the broker down",
           b->name);
        run_until(base, NULL, NULL, 1200);
        struct vg_outbox_sink_status st;
        vg_outbox_sink_status(ob, "mqtt", &st);
        ok(st.failing && st.cursor == 101,
           "%s: mqtt sink in an outage, its cursor kept at 101 (cursor %lld, %s)", b->name,
           (long long)st.cursor, st.last_error);
        is_int(count_in_file(log_path, "sink=mqtt"), 1, "%s: the broker outage is logged once",
               b->name);
        int subs = sub_subscribed(sub);
        broker_start();
        ok(sub_wait(sub, subs + 1, 8000), "%s: broker back on the same port", b->name);
        wm = (struct seq_wait){ &sub->rc, agent, 0, 151, true };
        ok(run_until(base, seq_complete, &wm, 10000),
           "%s: MQTT: the 50 events appended during the outage arrived, in order", b->name);
        check_sequence(&sub->rc, agent, 0, 151, true, &dups, why, sizeof(why));
        is_int(dups, 0, "%s: MQTT: without duplicates", b->name);
        struct status_wait mw = { ob, "mqtt", false, -1 };
        run_until(base, status_is, &mw, 3000);
        is_int(count_in_file(log_path, "delivering again"), 2, "%s: the recovery is logged once",
               b->name);

        /* webhook outage: 503, then 200 */
        hook.status = 503;
        int64_t before = 0;
        vg_outbox_head(ob, &before, &err);
        ok(append_range(ob, agent, 151, 171) == 0,
           "%s: 20 events appended while the webhook "
           "answers 503",
           b->name);
        run_until(base, NULL, NULL, 1000);
        vg_outbox_sink_status(ob, "webhook", &st);
        ok(st.failing && st.cursor == before && strstr(st.last_error, "503"),
           "%s: webhook sink in an outage, its cursor kept (cursor %lld, %s)", b->name,
           (long long)st.cursor, st.last_error);
        hook.status = 200;
        ww = (struct seq_wait){ &hook.rc, agent, 0, 171, false };
        ok(run_until(base, seq_complete, &ww, 5000),
           "%s: webhook: the 20 events arrived in order after the 503s", b->name);
        check_sequence(&hook.rc, agent, 0, 171, false, &dups, why, sizeof(why));
        is_int(dups, 0, "%s: webhook: without duplicates", b->name);

        /* process restart in the middle of a delivery: a new outbox on the same database */
        wm = (struct seq_wait){ &sub->rc, agent, 0, 1171, true };
        ok(append_range(ob, agent, 171, 1171) == 0, "%s: 1000 more events appended", b->name);
        struct status_wait mid = { ob, "mqtt", false, 300 };
        run_until(base, status_is, &mid, 5000);
        vg_outbox_sink_status(ob, "mqtt", &st);
        int64_t at = st.cursor;
        vg_outbox_free(ob);
        vg_store_close(db);
        ok(at < 1171, "%s: stopped in the middle (mqtt cursor %lld of 1171)", b->name,
           (long long)at);
        db = open_store(b->url);
        ob = NULL;
        ok(vg_outbox_new(base, db, &oc, &ob, &err) == 0, "%s: new outbox on the same database",
           b->name);
        vg_sink_file_new(&fc, &fs, &err);
        vg_outbox_add_sink(ob, fs, &err);
        vg_sink_webhook_new(&wc, &ws, &err);
        vg_outbox_add_sink(ob, ws, &err);
        vg_sink_mqtt_new(&mc, &ms, &err);
        vg_outbox_add_sink(ob, ms, &err);
        vg_outbox_sink_status(ob, "mqtt", &st);
        is_int(st.cursor, at, "%s: the mqtt cursor resumes from the database", b->name);
        ok(run_until(base, seq_complete, &wm, 15000),
           "%s: MQTT: all 1171 events after the restart, in order", b->name);
        check_sequence(&sub->rc, agent, 0, 1171, true, &dups, why, sizeof(why));
        ok(dups <= oc.batch_size, "%s: MQTT: duplicates only within one batch (%zu)", b->name,
           dups);
        ww = (struct seq_wait){ &hook.rc, agent, 0, 1171, false };
        ok(run_until(base, seq_complete, &ww, 15000),
           "%s: webhook: all 1171 events after the restart, in order", b->name);
        int64_t all = 0;
        vg_outbox_head(ob, &all, &err);
        static const char *const names[] = { "file", "webhook", "mqtt" };
        for (size_t i = 0; i < 3; i++) {
                fw = (struct status_wait){ ob, names[i], false, all };
                ok(run_until(base, status_is, &fw, 5000), "%s: %s: cursor at the head (%lld)",
                   b->name, names[i], (long long)all);
        }
        is_int(count_in_file(path, "\n"), 1171 + 0, "%s: file: no line written twice", b->name);

        /* pruning: only what every sink confirmed and is older than the retention */
        int64_t n = 0, head = 0;
        ok(vg_outbox_prune(ob, time(NULL) * 1000LL, &n, &err) == 0 && n == 0,
           "%s: nothing pruned inside the retention", b->name);
        int pr = vg_outbox_prune(ob, time(NULL) * 1000LL + 8 * 86400 * 1000LL, &n, &err);
        ok(pr == 0 && n == 1171,
           "%s: delivered events older than the retention are pruned (%lld%s%s)", b->name,
           (long long)n, pr < 0 ? ": " : "", pr < 0 ? vg_error_str(&err) : "");
        vg_outbox_head(ob, &head, &err);
        ok(append_range(ob, agent, 1171, 1172) == 0, "%s: append after pruning", b->name);
        is_int(count_rows(db, "SELECT MIN(seq) FROM outbox_events"), head + 1,
               "%s: seqs are not reused after pruning", b->name);
        wm = (struct seq_wait){ &sub->rc, agent, 0, 1172, true };
        ok(run_until(base, seq_complete, &wm, 5000), "%s: and it is delivered", b->name);

        {
                /* what an operator reads: one line per outage and per recovery */
                _cleanup_free_ char *text = tap_read_file(log_path, NULL);
                char *save = NULL;
                for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                        if (strstr(l, "sink="))
                                tap_diag("log: %s", l);
        }
        vg_outbox_free(ob);
        vg_http_server_free(hook.srv);
        vg_store_close(db);
        vg_event_base_free_drained(base);
        received_clear(&hook.rc);
        free(hook.rc.items);
}

/* ---- the event model ---- */

static const char gce_entry[] =
    "{\"insertId\": \"0\", \"severity\": \"ERROR\", \"jsonPayload\": {"
    "\"@type\": \"type.googleapis.com/cloud_integrity.IntegrityEvent\", \"bootCounter\": \"2\","
    "\"lateBootReportEvent\": {\"policyEvaluationPassed\": false, \"actualMeasurements\": ["
    "{\"hashAlgo\": \"SHA1\", \"pcrNum\": \"PCR_0\", \"value\": "
    "\"Dy06KhrapHmu7Kj133aq3EG4Yuo=\"},"
    "{\"hashAlgo\": \"SHA1\", \"pcrNum\": \"PCR_4\", \"value\": "
    "\"jZhotmr89AOer471IoVW2fMTZZ8=\"},"
    "{\"hashAlgo\": \"SHA1\", \"pcrNum\": \"PCR_7\", \"value\": "
    "\"d3eVy97KZ593SdjQn8EpQdzJkSo=\"}],"
    "\"policyMeasurements\": ["
    "{\"hashAlgo\": \"SHA1\", \"pcrNum\": \"PCR_0\", \"value\": "
    "\"Dy06KhrapHmu7Kj133aq3EG4Yuo=\"},"
    "{\"hashAlgo\": \"SHA1\", \"pcrNum\": \"PCR_4\", \"value\": "
    "\"5T2QmUHcvGmbJz/EwNgXpBxquXU=\"},"
    "{\"hashAlgo\": \"SHA1\", \"pcrNum\": \"PCR_7\", \"value\": "
    "\"7ecgRnP0GsJZKw07TNQptD853GE=\"}] } },"
    "\"logName\": "
    "\"projects/p/logs/compute.googleapis.com%2Fshielded_vm_integrity\","
    "\"resource\": {\"type\": \"gce_instance\", \"labels\": {\"instance_id\": "
    "\"4526105532134457000\", \"zone\": \"us-central1-a\", \"project_id\": \"p\"}},"
    "\"timestamp\": \"2021-04-23T13:31:56.123456789Z\"}";

static int parse_str(const char *s, json_t **out, struct vg_ievent_info *info, struct vg_error *err)
{
        return vg_ievent_parse(s, strlen(s), out, info, err);
}

static void test_model(void)
{
        struct vg_error err = { 0 };
        struct vg_ievent_info info;
        json_t *ev = NULL;

        /* each kind from C data, and back through the validator */
        json_t *late = make_event("d432fbb3-d2f1-4a97-9ef7-75bd81c00000", 3);
        _cleanup_free_ char *line = vg_ievent_dumps(late);
        ok(parse_str(line, &ev, &info, &err) == 0 && info.kind == VG_IEVENT_LATE_BOOT &&
               !info.passed && info.boot_counter == 3 && info.severity == VG_IEVENT_ERROR,
           "late-boot report: built, serialized, parsed back (%s)", vg_error_str(&err));
        contains(line, "\"@type\":\"vigil.IntegrityEvent\",\"eventId\":\"",
                 "compact line starts with @type and eventId");
        contains(line, "\"bootCounter\":\"3\"", "bootCounter is a string, as GCE's");
        contains(line, "{\"hashAlgo\":\"SHA256\",\"pcrNum\":\"PCR_4\",\"value\":\"qqqq",
                 "measurements as hashAlgo/pcrNum/base64 value");
        json_decref(ev);
        json_decref(late);

        struct vg_ievent_header h = { .agent_id = "a1", .severity = VG_IEVENT_INFO };
        struct vg_ievent_measurement pcr0 = { .alg = VG_HASH_SHA1, .pcr = 0 };
        struct vg_ievent_measurement pcr4 = { .alg = VG_HASH_SHA256, .pcr = 4 };
        ev = vg_ievent_boot_report(&h, false, true, &pcr0, 1, &pcr0, 1, &err);
        ok(ev && json_object_get(ev, "earlyBootReportEvent"), "early-boot report built");
        json_decref(ev);
        ev = vg_ievent_boot_report(&h, false, true, &pcr4, 1, NULL, 0, &err);
        ok(!ev, "early-boot report refuses PCR 4");
        contains(err.msg,
                 "earlyBootReportEvent.actualMeasurements[0].pcrNum: PCR 4 is not an "
                 "early-boot PCR",
                 "... naming the path");
        struct vg_ievent_runtime_failure f = { .type = "fnf", .file = "/root/bad-script.sh" };
        json_auto_t *summary = json_pack("{s:i, s:i}", "fnf", 1, "good", 12);
        ev = vg_ievent_runtime_report(&h, false, &f, 1, summary, &err);
        ok(ev && vg_ievent_validate(ev, &info, &err) == 0 && info.kind == VG_IEVENT_RUNTIME,
           "runtime report built (%s)", vg_error_str(&err));
        json_decref(ev);
        ev = vg_ievent_relearn(&h, "kernel-6.1", &pcr4, 1, &pcr4, 1, NULL, &err);
        ok(ev && !strcmp(json_string_value(
                             json_object_get(json_object_get(ev, "relearnEvent"), "reason")),
                         "late boot measurements equal known-good baseline kernel-6.1"),
           "relearn event built with its reason");
        json_decref(ev);

        /* GCE's log entry, verbatim */
        ok(parse_str(gce_entry, &ev, &info, &err) == 0, "GCE log entry accepted (%s)",
           vg_error_str(&err));
        is_str(info.agent_id, "4526105532134457000", "agentId := resource.labels.instance_id");
        is_str(info.event_id, "0", "eventId := insertId");
        ok(info.severity == VG_IEVENT_ERROR && info.kind == VG_IEVENT_LATE_BOOT && !info.passed &&
               info.boot_counter == 2,
           "severity, kind, verdict and bootCounter from the entry");
        is_str(json_string_value(json_object_get(json_object_get(ev, "labels"), "zone")),
               "us-central1-a", "the other resource labels become labels");
        json_decref(ev);

        static const struct {
                const char *json, *msg;
                int code;
        } bad[] = {
                { "{\"severity\":\"INFO\",\"insertId\":\"1\",\"resource\":{\"labels\":{"
                  "\"instance_id\":\"9\"}},\"jsonPayload\":{\"@type\":\"type.googleapis.com/"
                  "cloud_integrity.IntegrityEvent\",\"bootCounter\":\"1\",\"startupEvent\":{}}}",
                  "startupEvent carries no boot or runtime report", -ENOTSUP },
                { "{\"a\":1,\"a\":2}", "duplicate", -EINVAL },
                { "[1]", "expected a JSON object", -EINVAL },
                { "{\"@type\":\"vigil.IntegrityEvent\",\"eventId\":\"e\",\"agentId\":\"a/b\"}",
                  "agentId: character 0x2f", -EINVAL },
        };
        for (size_t i = 0; i < VG_ARRAY_SIZE(bad); i++) {
                err = (struct vg_error){ 0 };
                is_int(parse_str(bad[i].json, &ev, NULL, &err), bad[i].code,
                       "bad input %zu refused", i);
                contains(err.msg, bad[i].msg, "bad input %zu: error says why", i);
        }
        /* mutations of a valid event, each refused with its path */
        static const struct {
                const char *path, *value, *msg;
        } mut[] = {
                { "time", "\"2026-13-01T00:00:00Z\"", "time: expected an RFC 3339 time" },
                { "severity", "\"FATAL\"", "severity: expected INFO" },
                { "bootCounter", "3", "bootCounter: expected a decimal string" },
                { "earlyBootReportEvent", "{}",
                  "both earlyBootReportEvent and lateBootReportEvent" },
                { "labels", "{\"x\": 1}", "labels.x: expected a string" },
        };
        for (size_t i = 0; i < VG_ARRAY_SIZE(mut); i++) {
                json_t *e = make_event("a", 1);
                json_object_set_new(e, mut[i].path,
                                    json_loads(mut[i].value, JSON_DECODE_ANY, NULL));
                err = (struct vg_error){ 0 };
                is_int(vg_ievent_validate(e, NULL, &err), -EINVAL, "%s mutated: refused",
                       mut[i].path);
                contains(err.msg, mut[i].msg, "%s mutated: error names it", mut[i].path);
                json_decref(e);
        }
        json_t *e = make_event("a", 1);
        json_t *m0 = json_array_get(
            json_object_get(json_object_get(e, "lateBootReportEvent"), "actualMeasurements"), 0);
        json_object_set_new(m0, "value", json_string("AAAA"));
        is_int(vg_ievent_validate(e, NULL, &err), -EINVAL, "short PCR value refused");
        contains(err.msg, "lateBootReportEvent.actualMeasurements[0].value: SHA256 needs 32 bytes",
                 "... naming the measurement");
        json_decref(e);
}

int main(void)
{
        struct subscriber sub = { .lock = PTHREAD_MUTEX_INITIALIZER,
                                  .rc.lock = PTHREAD_MUTEX_INITIALIZER };
        struct vg_pg *pg = NULL;
        struct vg_error err = { 0 };
        FILE *logf;

        signal(SIGPIPE, SIG_IGN);
        tmp = tap_tmpdir();
        log_path = tap_strf("%s/outbox.log", tmp);
        logf = fopen(log_path, "a");
        if (!logf)
                tap_bail("cannot write %s", log_path);
        setvbuf(logf, NULL, _IONBF, 0);

        test_model();

        mosquitto_lib_init();
        broker_port = tap_free_port();
        broker_start();
        subscriber_start(&sub);

        struct backend sqlite = { .name = "sqlite", .url = tap_strf("%s/outbox.sqlite", tmp) };
        vg_log_setup(&(struct vg_log_config){
            .component = "test_outbox", .level = VG_LOG_INFO, .out = logf });
        test_backend(&sqlite, &sub);

        if (vg_pg_start(&pg, &err) < 0) {
                tap_skip(vg_error_str(&err), "PostgreSQL outbox checks");
        } else {
                struct backend pgb = { .name = "postgresql" };
                if (vg_pg_create_db(pg, "outbox", &pgb.url, &err) < 0)
                        tap_bail("%s", vg_error_str(&err));
                if (ftruncate(fileno(logf), 0) < 0)
                        tap_bail("truncate log");
                test_backend(&pgb, &sub);
                free(pgb.url);
                vg_pg_free(pg);
        }

        mosquitto_loop_stop(sub.mosq, true);
        mosquitto_destroy(sub.mosq);
        received_clear(&sub.rc);
        free(sub.rc.items);
        mosquitto_lib_cleanup();
        tap_stop(&broker_pid);
        free(sqlite.url);
        vg_log_setup(&(struct vg_log_config){ .component = "test_outbox", .level = VG_LOG_INFO });
        fclose(logf);
        return tap_done();
}
