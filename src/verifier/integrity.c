/*
 * vigil-verifier: integrity events and boot baselines (issue 7), in the model of GCE's Shielded
 * VM integrity monitoring.
 *
 * Outbox. The events go to the durable outbox (src/lib/outbox.h) in the verifier's own store,
 * appended by the main thread (which owns the database and the loop the sinks run on) and
 * delivered from there to the configured sinks (file, webhook, MQTT).
 *
 * Hand-over. A poller owns its agents' attestation state; what integrity needs from it goes
 * into a queue (in->lock) and wakes the main thread by eventfd, as revocations do:
 *  - the PCR values of an authentic quote whose boot counter (TPM resetCount) this poller has
 *    not handed over yet (first quote, reboot, and once after each verifier start);
 *  - runtimeReportEvents built from the IMA failures reported for the first time.
 *
 * Boot evaluation (main thread, one transaction per boot): the table integrity_boots keeps the
 * last boot counter evaluated per agent, so a boot is judged once even across restarts; then
 *  - no baseline for the agent: learn it (trust on first use, journaled) and report passed;
 *  - else compare early boot (PCR 0-3, 7) and late boot (4, 5, 8, 9, 11-14) with it and emit
 *    earlyBootReportEvent and lateBootReportEvent (GCE's shape). A late-boot failure whose
 *    actual values equal a known-good baseline relearns the agent's late-boot baseline
 *    (journaled, early boot untouched) and emits a relearnEvent, then the late-boot report as
 *    passed against the relearned baseline. Nothing is ever relearned because early boot
 *    matched, and an early-boot failure never relearns anything (the Shielded VM guide's rule).
 * The events, the relearning and the boot's row commit together or not at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "integrity.h"
#include "integrity_event.h"
#include "log.h"
#include "outbox.h"
#include "store.h"
#include "verifier.h"

static const struct vg_store_migration integrity_migrations[] = {
        { 1, "last boot evaluated per agent",
          "CREATE TABLE integrity_boots ("
          " agent_id TEXT PRIMARY KEY,"
          " boot_counter BIGINT NOT NULL,"
          " evaluated_ms BIGINT NOT NULL);" },
};

enum item_kind { ITEM_BOOT, ITEM_EVENT };

struct item {
        struct item *next;
        enum item_kind kind;
        char *agent_id;
        json_t *labels;           /* ITEM_BOOT */
        struct vg_measurements m; /* ITEM_BOOT: the quote's values */
        json_t *event;            /* ITEM_EVENT */
};

struct vg_cv_integrity {
        struct vg_verifier *v;
        struct vg_outbox *ob;
        bool boot;            /* integrity_boot_baselines */
        pthread_mutex_t lock; /* queue */
        struct item *queue, **tail;
        int wake_fd;
        struct event *wake_ev, *retry_ev;
        uint64_t evaluated, events; /* counters (logs) */
};

/* ---- helpers ----------------------------------------------------------------------------- */

static void item_free(struct item *it)
{
        if (!it)
                return;
        free(it->agent_id);
        json_decref(it->labels);
        json_decref(it->event);
        vg_measurements_clear(&it->m);
        free(it);
}

json_t *vg_cv_integrity_labels(const char *meta_data)
{
        json_t *out = json_object();
        const char *k;
        json_t *val;

        if (!out || !meta_data || !*meta_data)
                return out;
        json_auto_t *md = json_loads(meta_data, JSON_DECODE_ANY, NULL);
        json_t *labels = json_object_get(md, "labels");
        if (!json_is_object(labels))
                return out;
        json_object_foreach (labels, k, val) {
                /* MQTT topics and environment variables carry these: keep them plain. */
                if (json_is_string(val) && strlen(k) <= 63 && json_string_length(val) <= 255)
                        json_object_set_new(out, k, json_string(json_string_value(val)));
        }
        return out;
}

static void enqueue(struct vg_cv_integrity *in, struct item *it)
{
        uint64_t one = 1;

        pthread_mutex_lock(&in->lock);
        *in->tail = it;
        in->tail = &it->next;
        pthread_mutex_unlock(&in->lock);
        if (write(in->wake_fd, &one, sizeof(one)) < 0) {
                /* only on overflow, which a pending wake-up covers */
        }
}

/* A measurement set as the event constructors take it (n entries, caller frees). */
static struct vg_ievent_measurement *to_ievent(const struct vg_measurements *s)
{
        struct vg_ievent_measurement *m = calloc(s->n ? s->n : 1, sizeof(*m));

        for (size_t i = 0; m && i < s->n; i++) {
                m[i].alg = s->m[i].alg;
                m[i].pcr = s->m[i].pcr;
                memcpy(m[i].value, s->m[i].value, vg_hash_size(s->m[i].alg));
        }
        return m;
}

static json_t *boot_report(const struct vg_ievent_header *h, bool late, bool passed,
                           const struct vg_measurements *actual,
                           const struct vg_measurements *policy, struct vg_error *err)
{
        _cleanup_free_ struct vg_ievent_measurement *a = to_ievent(actual);
        _cleanup_free_ struct vg_ievent_measurement *p = to_ievent(policy);

        if (!a || !p) {
                vg_error_set(err, -ENOMEM, "out of memory");
                return NULL;
        }
        return vg_ievent_boot_report(h, late, passed, a, actual->n, p, policy->n, err);
}

static json_t *relearn_event(const struct vg_ievent_header *h, const char *name,
                             const struct vg_measurements *previous,
                             const struct vg_measurements *next, const char *reason,
                             struct vg_error *err)
{
        _cleanup_free_ struct vg_ievent_measurement *a = to_ievent(previous);
        _cleanup_free_ struct vg_ievent_measurement *b = to_ievent(next);

        if (!a || !b) {
                vg_error_set(err, -ENOMEM, "out of memory");
                return NULL;
        }
        return vg_ievent_relearn(h, name, a, previous->n, b, next->n, reason, err);
}

/* ---- boot evaluation (main thread) ------------------------------------------------------- */

struct boot_ctx {
        struct vg_cv_integrity *in;
        const struct item *it;
        /* results, reset at each (re)run of the transaction */
        json_t *events[4];
        size_t n;
        bool skipped, learned, early_ok, late_ok, relearned;
        char *baseline;
};

static void boot_ctx_reset(struct boot_ctx *c)
{
        for (size_t i = 0; i < c->n; i++)
                json_decref(c->events[i]);
        c->n = 0;
        c->skipped = c->learned = c->early_ok = c->late_ok = c->relearned = false;
        free(c->baseline);
        c->baseline = NULL;
}

static int add_event(struct boot_ctx *c, json_t *ev, struct vg_error *err)
{
        if (!ev)
                return err->code ? err->code : -ENOMEM;
        c->events[c->n++] = ev;
        return 0;
}

static int boot_txn(struct vg_store *db, void *ud, struct vg_error *err)
{
        struct boot_ctx *c = ud;
        const struct item *it = c->it;
        const struct vg_measurements *m = &it->m;
        struct vg_measurements early = { 0 }, late = { 0 }, previous = { 0 };
        struct vg_agent_baseline base = { 0 };
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        _cleanup_free_ char *reason = NULL;
        bool have_base = false;
        char late_id[37];
        int r;

        boot_ctx_reset(c);
        r = vg_store_prepare(db, "SELECT boot_counter FROM integrity_boots WHERE agent_id = $1",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, it->agent_id);
        r = vg_stmt_step(st, err);
        if (r < 0)
                return r;
        if (r > 0 && vg_stmt_column_int64(st, 0) == m->boot_counter) {
                c->skipped = true; /* judged before (a restart of this verifier) */
                return 0;
        }
        vg_stmt_free(TAKE_PTR(st));

        struct vg_ievent_header h = {
                .agent_id = it->agent_id,
                .boot_counter = (uint64_t)(m->boot_counter > 0 ? m->boot_counter : 0),
                .verifier_id = c->in->v->o.uuid,
                .labels = it->labels,
        };
        if ((r = vg_measurements_filter(&early, m, vg_pcr_early_boot, NULL)) < 0 ||
            (r = vg_measurements_filter(&late, m, vg_pcr_late_boot, NULL)) < 0)
                goto out;
        r = vg_agent_baseline_get(db, it->agent_id, &base, err);
        if (r < 0 && r != -ENOENT)
                goto out;
        have_base = r >= 0 && (base.early.n || base.late.n);
        if (!have_base) {
                /* Trust on first use: this boot becomes the agent's baseline. */
                r = vg_agent_baseline_learn(db, it->agent_id, m, "verifier", err);
                if (r < 0)
                        goto out;
                c->learned = true;
                c->early_ok = c->late_ok = true;
                h.severity = VG_IEVENT_NOTICE;
                if ((r = add_event(c, boot_report(&h, false, true, &early, &early, err), err)) <
                        0 ||
                    (r = add_event(c, boot_report(&h, true, true, &late, &late, err), err)) < 0)
                        goto out;
        } else {
                c->early_ok = vg_measurements_equal(&early, &base.early);
                c->late_ok = vg_measurements_equal(&late, &base.late);
                h.severity = c->early_ok ? VG_IEVENT_NOTICE : VG_IEVENT_ERROR;
                r = add_event(c, boot_report(&h, false, c->early_ok, &early, &base.early, err),
                              err);
                if (r < 0)
                        goto out;
                vg_ievent_new_uuid(late_id);
                if (!c->late_ok) {
                        /* Only a late-boot failure may relearn, and only onto known-good. */
                        r = vg_agent_baseline_relearn(db, it->agent_id, m, "verifier", late_id,
                                                      &c->baseline, &previous, &reason, err);
                        if (r < 0)
                                goto out;
                        c->relearned = r > 0;
                }
                if (c->relearned) {
                        char why[300];
                        snprintf(why, sizeof(why),
                                 "late boot measurements equal known-good baseline %s",
                                 c->baseline);
                        h.severity = VG_IEVENT_NOTICE;
                        r = add_event(c, relearn_event(&h, c->baseline, &previous, &late, why, err),
                                      err);
                        if (r < 0)
                                goto out;
                }
                h.event_id = late_id;
                h.severity = c->late_ok || c->relearned ? VG_IEVENT_NOTICE : VG_IEVENT_ERROR;
                r = add_event(c,
                              boot_report(&h, true, c->late_ok || c->relearned, &late,
                                          c->relearned ? &late : &base.late, err),
                              err);
                if (r < 0)
                        goto out;
        }
        r = vg_outbox_append_txn(db, c->events, c->n, NULL, err);
        if (r < 0)
                goto out;
        r = vg_store_prepare(db,
                             "INSERT INTO integrity_boots (agent_id, boot_counter, evaluated_ms) "
                             "VALUES ($1, $2, $3) ON CONFLICT (agent_id) DO UPDATE SET "
                             "boot_counter = excluded.boot_counter, "
                             "evaluated_ms = excluded.evaluated_ms",
                             &st, err);
        if (r >= 0) {
                vg_stmt_bind_text(st, 1, it->agent_id);
                vg_stmt_bind_int64(st, 2, m->boot_counter);
                vg_stmt_bind_int64(st, 3, vg_now_ms());
                r = vg_stmt_exec(st, err);
        }
out:
        vg_measurements_clear(&early);
        vg_measurements_clear(&late);
        vg_measurements_clear(&previous);
        vg_agent_baseline_clear(&base);
        return r < 0 ? r : 0;
}

static int evaluate_boot(struct vg_cv_integrity *in, const struct item *it, struct vg_error *err)
{
        struct boot_ctx c = { .in = in, .it = it };
        char bc[24];
        int r = vg_store_transact(in->v->db, boot_txn, &c, err);

        snprintf(bc, sizeof(bc), "%lld", (long long)it->m.boot_counter);
        if (r >= 0 && !c.skipped) {
                in->evaluated++;
                in->events += c.n;
                if (c.learned)
                        vg_notice(VG_F("agent", it->agent_id, "boot_counter", bc),
                                  "agent %s: boot %s, no baseline yet: early- and late-boot "
                                  "measurements learned (trust on first use)",
                                  it->agent_id, bc);
                else if (c.relearned)
                        vg_notice(
                            VG_F("agent", it->agent_id, "boot_counter", bc, "baseline", c.baseline),
                            "agent %s: boot %s: late-boot measurements changed and equal "
                            "known-good baseline %s: relearned",
                            it->agent_id, bc, c.baseline);
                else if (!c.early_ok || !c.late_ok)
                        vg_err(VG_F("agent", it->agent_id, "boot_counter", bc),
                               "agent %s: boot %s: %s%s%s differ from the agent's baseline",
                               it->agent_id, bc, c.early_ok ? "" : "early-boot measurements",
                               !c.early_ok && !c.late_ok ? " and " : "",
                               c.late_ok ? "" : "late-boot measurements (no known-good match)");
                else
                        vg_info(VG_F("agent", it->agent_id, "boot_counter", bc),
                                "agent %s: boot %s matches its baseline", it->agent_id, bc);
                if (in->ob)
                        vg_outbox_kick(in->ob);
        }
        boot_ctx_reset(&c);
        return r;
}

static void schedule_retry(struct vg_cv_integrity *in)
{
        struct timeval tv = { 1, 0 };

        evtimer_add(in->retry_ev, &tv);
}

/* Main thread: everything the pollers handed over, in order. A database failure keeps the
 * rest for a retry a second later. */
static void drain(struct vg_cv_integrity *in)
{
        struct item *list, *it;

        pthread_mutex_lock(&in->lock);
        list = in->queue;
        in->queue = NULL;
        in->tail = &in->queue;
        pthread_mutex_unlock(&in->lock);

        while ((it = list)) {
                struct vg_error err = { 0 };
                int r;
                if (it->kind == ITEM_BOOT) {
                        r = evaluate_boot(in, it, &err);
                } else if (in->ob) {
                        r = vg_outbox_append(in->ob, &it->event, 1, NULL, &err);
                        if (r >= 0)
                                in->events++;
                } else {
                        r = 0;
                }
                if (r < 0) {
                        vg_err(VG_F("agent", it->agent_id, "database", vg_store_name(in->v->db)),
                               "integrity: storing the %s of agent %s failed (retried): %s",
                               it->kind == ITEM_BOOT ? "boot evaluation" : "event", it->agent_id,
                               vg_error_str(&err));
                        /* back at the head, before what came meanwhile */
                        struct item **end = &list;
                        while (*end)
                                end = &(*end)->next;
                        pthread_mutex_lock(&in->lock);
                        *end = in->queue;
                        if (!in->queue)
                                in->tail = end;
                        in->queue = list;
                        pthread_mutex_unlock(&in->lock);
                        schedule_retry(in);
                        return;
                }
                list = it->next;
                item_free(it);
        }
}

static void on_wake(evutil_socket_t fd, short what, void *userdata)
{
        uint64_t n;

        (void)what;
        if (read(fd, &n, sizeof(n)) < 0) {
                /* EAGAIN: the queue is looked at anyway */
        }
        drain(userdata);
}

static void on_retry(evutil_socket_t fd, short what, void *userdata)
{
        (void)fd;
        (void)what;
        drain(userdata);
}

/* ---- the pollers' side ------------------------------------------------------------------- */

uint32_t vg_cv_integrity_mask(const struct vg_verifier *v)
{
        uint32_t mask = 0;

        if (!v->integrity || !v->integrity->boot)
                return 0;
        for (unsigned p = 0; p < 24; p++)
                if (vg_pcr_early_boot(p) || vg_pcr_late_boot(p))
                        mask |= 1u << p;
        return mask;
}

void vg_cv_integrity_quote(struct vg_cv_agent *a)
{
        struct vg_cv_integrity *in = a->v->integrity;
        struct item *it;

        if (!in || !in->boot || a->quoted.n == 0 || a->quoted.boot_counter < 0)
                return;
        if (a->integrity_boot == (uint64_t)a->quoted.boot_counter + 1)
                return; /* this boot was handed over already */
        it = calloc(1, sizeof(*it));
        if (!it || !(it->agent_id = strdup(a->id)) ||
            !(it->labels = vg_cv_integrity_labels(a->meta_data)) ||
            vg_measurements_copy(&it->m, &a->quoted) < 0) {
                item_free(it);
                vg_err(VG_F("agent", a->id), "integrity: out of memory; boot not evaluated");
                return;
        }
        it->m.boot_counter = a->quoted.boot_counter;
        it->m.time_ms = a->quoted.time_ms;
        it->kind = ITEM_BOOT;
        a->integrity_boot = (uint64_t)a->quoted.boot_counter + 1;
        enqueue(in, it);
}

static const char *runtime_type(const char *id)
{
        if (strcmp(id, "ima.file_not_found") == 0)
                return "fnf";
        if (strcmp(id, "ima.hash_not_allowed") == 0)
                return "hash";
        if (strcmp(id, "ima.template_hash_mismatch") == 0)
                return "template-hash";
        if (strcmp(id, "ima.invalid_signature") == 0 || strcmp(id, "ima.keyring_not_allowed") == 0)
                return "signature";
        return "policy";
}

void vg_cv_integrity_runtime(struct vg_cv_agent *a, const struct vg_cv_failure *f)
{
        struct vg_cv_integrity *in = a->v->integrity;
        struct vg_error err = { 0 };
        size_t n = 0;

        if (!in || !in->ob)
                return;
        _cleanup_free_ struct vg_ievent_runtime_failure *rf = calloc(f->n ? f->n : 1, sizeof(*rf));
        if (!rf)
                return;
        for (size_t i = 0; i < f->n; i++) {
                const struct vg_cv_event *e = &f->ev[i];
                if (!e->fresh || strncmp(e->id, "ima.", 4) != 0)
                        continue;
                rf[n].type = runtime_type(e->id);
                rf[n].file = e->file && *e->file ? e->file : e->id;
                rf[n].expected = e->expected;
                rf[n].found = e->found;
                n++;
        }
        if (n == 0)
                return;
        json_auto_t *labels = vg_cv_integrity_labels(a->meta_data);
        json_auto_t *summary = json_pack(
            "{s:I, s:I, s:I, s:I, s:I}", "template-hash", (json_int_t)f->ima_counts.template_hash,
            "fnf", (json_int_t)f->ima_counts.fnf, "hash", (json_int_t)f->ima_counts.hash,
            "signature", (json_int_t)f->ima_counts.sig, "good", (json_int_t)f->ima_counts.good);
        struct vg_ievent_header h = {
                .agent_id = a->id,
                .boot_counter = a->have_clock ? a->clock.reset_count : 0,
                .severity = VG_IEVENT_ERROR,
                .verifier_id = a->v->o.uuid,
                .labels = labels,
        };
        json_t *ev = vg_ievent_runtime_report(&h, false, rf, n, summary, &err);
        struct item *it = ev ? calloc(1, sizeof(*it)) : NULL;
        if (!it || !(it->agent_id = strdup(a->id))) {
                vg_err(VG_F("agent", a->id), "integrity: runtimeReportEvent not made: %s",
                       ev ? "out of memory" : vg_error_str(&err));
                json_decref(ev);
                item_free(it);
                return;
        }
        it->kind = ITEM_EVENT;
        it->event = ev;
        enqueue(in, it);
}

/* ---- the API's relearn ------------------------------------------------------------------- */

void vg_cv_integrity_relearned(struct vg_verifier *v, const char *agent_id, const char *name,
                               const struct vg_measurements *previous,
                               const struct vg_measurements *actual, const char *actor,
                               const char *cause_event_id)
{
        struct vg_cv_integrity *in = v->integrity;
        struct vg_cv_agent *a = vg_cv_find(v, agent_id);
        struct vg_measurements late = { 0 };
        struct vg_error err = { 0 };
        char why[600];

        if (!in || !in->ob)
                return;
        json_auto_t *labels = vg_cv_integrity_labels(a ? a->meta_data : NULL);
        struct vg_ievent_header h = {
                .agent_id = agent_id,
                .boot_counter = (uint64_t)(actual->boot_counter > 0 ? actual->boot_counter : 0),
                .severity = VG_IEVENT_NOTICE,
                .verifier_id = v->o.uuid,
                .labels = labels,
        };
        snprintf(why, sizeof(why),
                 "late boot measurements equal known-good baseline %s (relearn requested by "
                 "%.200s%s%.128s)",
                 name, actor ? actor : "?", cause_event_id ? " for event " : "",
                 cause_event_id ? cause_event_id : "");
        if (vg_measurements_filter(&late, actual, vg_pcr_late_boot, NULL) < 0)
                return;
        json_t *ev = relearn_event(&h, name, previous, &late, why, &err);
        vg_measurements_clear(&late);
        if (!ev || vg_outbox_append(in->ob, &ev, 1, NULL, &err) < 0)
                vg_err(VG_F("agent", agent_id),
                       "integrity: the relearnEvent of agent %s was not stored: %s", agent_id,
                       vg_error_str(&err));
        else
                in->events++;
        json_decref(ev);
}

/* ---- configuration ----------------------------------------------------------------------- */

/* "30s", "15m", "12h", "7d", plain seconds, or "forever" (-1). */
static int parse_duration(const char *s, int64_t *out)
{
        char *end;
        long long n;

        if (!s || !*s)
                return -EINVAL;
        if (strcmp(s, "forever") == 0) {
                *out = -1;
                return 0;
        }
        n = strtoll(s, &end, 10);
        if (end == s || n < 0)
                return -EINVAL;
        switch (*end) {
        case '\0':
        case 's':
                break;
        case 'm':
                n *= 60;
                break;
        case 'h':
                n *= 3600;
                break;
        case 'd':
                n *= 86400;
                break;
        default:
                return -EINVAL;
        }
        if (*end && end[1])
                return -EINVAL;
        *out = n;
        return 0;
}

/* A secret from a file (first line, without the newline); *out NULL for an empty option. */
static int read_secret(const struct vg_config *cfg, const char *opt, char **out,
                       struct vg_error *err)
{
        const char *path = vg_config_string(cfg, opt);
        char buf[4096];
        ssize_t n;
        int fd;

        *out = NULL;
        if (!path || !*path)
                return 0;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return vg_error_set(err, -errno, "option %s: cannot open %s: %s", opt, path,
                                    strerror(errno));
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 0)
                return vg_error_set(err, -EIO, "option %s: cannot read %s", opt, path);
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        if (!*buf)
                return vg_error_set(err, -EINVAL, "option %s: %s is empty", opt, path);
        *out = strdup(buf);
        explicit_bzero(buf, sizeof(buf));
        return *out ? 0 : -ENOMEM;
}

static const char *opt_or_null(const struct vg_config *cfg, const char *name)
{
        const char *s = vg_config_string(cfg, name);

        return s && *s ? s : NULL;
}

static int add_sinks(struct vg_cv_integrity *in, struct vg_error *err)
{
        const struct vg_config *c = in->v->cfg;
        char *const *kinds = vg_config_strv(c, "integrity_event_sinks");
        int r;

        for (char *const *k = kinds; k && *k; k++) {
                struct vg_sink *sink = NULL;
                if (strcmp(*k, "file") == 0) {
                        const char *p = vg_config_string(c, "event_file");
                        const char *dir = vg_config_string(c, "data_dir");
                        char path[4096];
                        char *end;
                        const char *mode_s = vg_config_string(c, "event_file_mode");
                        long mode = mode_s ? strtol(mode_s, &end, 8) : 0640;
                        if (!p || !*p)
                                p = "events.jsonl";
                        if (p[0] == '/')
                                snprintf(path, sizeof(path), "%s", p);
                        else if ((size_t)snprintf(path, sizeof(path), "%s/%s",
                                                  dir && *dir ? dir : ".", p) >= sizeof(path))
                                return vg_error_set(err, -ENAMETOOLONG,
                                                    "option event_file: path too long");
                        if (mode_s && (*end || mode < 0 || mode > 0777))
                                return vg_error_set(err, -EINVAL,
                                                    "option event_file_mode: expected an octal "
                                                    "mode such as 0640, found \"%s\"",
                                                    mode_s);
                        struct vg_sink_file_config fc = { .path = path, .mode = (unsigned)mode };
                        r = vg_sink_file_new(&fc, &sink, err);
                } else if (strcmp(*k, "webhook") == 0) {
                        _cleanup_free_ char *secret = NULL;
                        const char *url = opt_or_null(c, "event_webhook_url");
                        if (!url)
                                return vg_error_set(err, -EINVAL,
                                                    "integrity_event_sinks lists webhook but "
                                                    "event_webhook_url is empty");
                        if ((r = read_secret(c, "event_webhook_secret_file", &secret, err)) < 0)
                                return r;
                        struct vg_sink_webhook_config wc = {
                                .url = url,
                                .secret = secret,
                                .ca_file = opt_or_null(c, "event_webhook_ca"),
                                .cert_file = opt_or_null(c, "event_webhook_cert"),
                                .key_file = opt_or_null(c, "event_webhook_key"),
                                .timeout_ms =
                                    (unsigned)vg_config_integer(c, "event_webhook_timeout_ms"),
                        };
                        r = vg_sink_webhook_new(&wc, &sink, err);
                        if (secret)
                                explicit_bzero(secret, strlen(secret));
                } else if (strcmp(*k, "mqtt") == 0) {
                        _cleanup_free_ char *password = NULL;
                        if ((r = read_secret(c, "event_mqtt_password_file", &password, err)) < 0)
                                return r;
                        struct vg_sink_mqtt_config mc = {
                                .host = opt_or_null(c, "event_mqtt_host"),
                                .port = (int)vg_config_integer(c, "event_mqtt_port"),
                                .client_id = opt_or_null(c, "event_mqtt_client_id"),
                                .topic_prefix = opt_or_null(c, "event_mqtt_topic_prefix"),
                                .username = opt_or_null(c, "event_mqtt_username"),
                                .password = password,
                                .ca_file = opt_or_null(c, "event_mqtt_ca"),
                                .cert_file = opt_or_null(c, "event_mqtt_cert"),
                                .key_file = opt_or_null(c, "event_mqtt_key"),
                                .tls_insecure = vg_config_boolean(c, "event_mqtt_tls_insecure"),
                                .keepalive_s =
                                    (unsigned)vg_config_integer(c, "event_mqtt_keepalive"),
                                .max_inflight =
                                    (unsigned)vg_config_integer(c, "event_mqtt_max_inflight"),
                                .ack_timeout_ms =
                                    (unsigned)vg_config_integer(c, "event_mqtt_ack_timeout_ms"),
                                .backoff_min_ms =
                                    (unsigned)vg_config_integer(c, "event_mqtt_backoff_min_ms"),
                                .backoff_max_ms =
                                    (unsigned)vg_config_integer(c, "event_mqtt_backoff_max_ms"),
                        };
                        r = vg_sink_mqtt_new(&mc, &sink, err);
                        if (password)
                                explicit_bzero(password, strlen(password));
                } else {
                        return vg_error_set(err, -EINVAL,
                                            "option integrity_event_sinks: unknown sink \"%s\" "
                                            "(file, webhook, mqtt)",
                                            *k);
                }
                if (r < 0) {
                        vg_error_prefix(err, "integrity event sink %s: ", *k);
                        return r;
                }
                if ((r = vg_outbox_add_sink(in->ob, sink, err)) < 0)
                        return r;
                vg_info(VG_F("sink", *k), "integrity events go to the %s sink", *k);
        }
        return 0;
}

int vg_cv_integrity_new(struct vg_verifier *v, struct vg_error *err)
{
        const struct vg_config *c = v->cfg;
        struct vg_cv_integrity *in;
        int64_t retention = 0;
        int r;

        v->integrity = NULL;
        if (!vg_config_boolean(c, "integrity_events"))
                return 0;
        if (parse_duration(vg_config_string(c, "integrity_event_retention"), &retention) < 0)
                return vg_error_set(err, -EINVAL,
                                    "option integrity_event_retention: expected seconds, 30s, "
                                    "15m, 12h, 7d or \"forever\", found \"%s\"",
                                    vg_config_string(c, "integrity_event_retention"));
        in = calloc(1, sizeof(*in));
        if (!in)
                return vg_error_set(err, -ENOMEM, "out of memory");
        in->v = v;
        in->boot = vg_config_boolean(c, "integrity_boot_baselines");
        in->tail = &in->queue;
        in->wake_fd = -1;
        pthread_mutex_init(&in->lock, NULL);
        v->integrity = in; /* freed by vg_cv_integrity_free from here on */
        in->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (in->wake_fd < 0)
                return vg_error_set(err, -errno, "eventfd: %s", strerror(errno));
        in->wake_ev = event_new(v->base, in->wake_fd, EV_READ | EV_PERSIST, on_wake, in);
        in->retry_ev = evtimer_new(v->base, on_retry, in);
        if (!in->wake_ev || !in->retry_ev || event_add(in->wake_ev, NULL) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if ((r = vg_store_migrate(v->db, "integrity", integrity_migrations,
                                  VG_ARRAY_SIZE(integrity_migrations), err)) < 0)
                return r;
        struct vg_outbox_config oc = {
                .batch_size = (unsigned)vg_config_integer(c, "integrity_event_batch_size"),
                .backoff_min_ms = (unsigned)vg_config_integer(c, "integrity_event_backoff_min_ms"),
                .backoff_max_ms = (unsigned)vg_config_integer(c, "integrity_event_backoff_max_ms"),
                .poll_ms = (unsigned)vg_config_integer(c, "integrity_event_poll_ms"),
                .retention_s = retention,
                .prune_interval_s =
                    (unsigned)vg_config_integer(c, "integrity_event_prune_interval"),
        };
        if ((r = vg_outbox_new(v->base, v->db, &oc, &in->ob, err)) < 0)
                return r;
        if ((r = add_sinks(in, err)) < 0)
                return r;
        vg_info(NULL, "integrity events on (boot baselines %s)", in->boot ? "on" : "off");
        return 0;
}

void vg_cv_integrity_free(struct vg_verifier *v)
{
        struct vg_cv_integrity *in = v->integrity;

        if (!in)
                return;
        if (v->db && in->queue)
                drain(in); /* what the pollers handed over last */
        while (in->queue) {
                struct item *it = in->queue;
                in->queue = it->next;
                item_free(it);
        }
        vg_outbox_free(in->ob);
        if (in->wake_ev)
                event_free(in->wake_ev);
        if (in->retry_ev)
                event_free(in->retry_ev);
        if (in->wake_fd >= 0)
                close(in->wake_fd);
        pthread_mutex_destroy(&in->lock);
        free(in);
        v->integrity = NULL;
}
