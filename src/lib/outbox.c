/* vigil: the durable outbox: events appended in one transaction with their seq, and a delivery
 * engine on the caller's libevent loop that moves each sink's cursor only past confirmed events. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "integrity_event.h"
#include "log.h"
#include "outbox.h"

static const struct vg_store_migration outbox_migrations[] = {
        { 1, "integrity event outbox and sink cursors",
          "CREATE TABLE outbox_meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL);"
          "INSERT INTO outbox_meta (k, v) VALUES ('last_seq', 0);"
          "CREATE TABLE outbox_events ("
          " seq BIGINT PRIMARY KEY,"
          " event_id TEXT NOT NULL UNIQUE,"
          " agent_id TEXT NOT NULL,"
          " event_type TEXT NOT NULL,"
          " created_ms BIGINT NOT NULL,"
          " body TEXT NOT NULL);"
          "CREATE INDEX outbox_events_created ON outbox_events (created_ms);"
          "CREATE TABLE outbox_cursors ("
          " sink TEXT PRIMARY KEY,"
          " seq BIGINT NOT NULL,"
          " updated_ms BIGINT NOT NULL);" },
};

struct vg_outbox_sinkstate {
        struct vg_outbox *ob;
        struct vg_sink *sink;
        struct vg_outbox_sinkstate *next;
        int64_t cursor, head;
        /* the batch being delivered: records and their strings */
        struct vg_outbox_record *recs;
        char **strings;
        size_t n;
        bool busy, in_backoff;
        /* vg_sink_done() only records; the loop processes it (it may come from inside deliver) */
        bool done_pending;
        size_t done_n;
        struct vg_error done_err;
        struct event *wake, *retry, *done_ev;
        unsigned backoff_ms, attempts;
        bool failing;
        int64_t outage_start_ms;
        uint64_t delivered, failures;
        char last_error[512];
};

struct vg_outbox {
        struct event_base *base;
        struct vg_store *db;
        struct vg_outbox_config cfg;
        struct vg_outbox_sinkstate *sinks;
        struct event *poll, *prune;
        struct vg_stmt *st_batch, *st_cursor;
};

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval tv_ms(unsigned ms)
{
        return (struct timeval){ .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
}

int vg_outbox_migrate(struct vg_store *db, struct vg_error *err)
{
        return vg_store_migrate(db, "outbox", outbox_migrations, VG_ARRAY_SIZE(outbox_migrations),
                                err);
}

/* ---- append ---- */

struct prepared {
        json_t *const *events;
        size_t n;
        char **bodies;
        struct vg_ievent_info *info;
        int64_t *seq_out;
};

static int append_rows(struct vg_store *db, void *userdata, struct vg_error *err)
{
        struct prepared *p = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *bump = NULL, *ins = NULL;
        int64_t created = now_ms(), last;
        int r;

        if ((r = vg_store_prepare(db,
                                  "UPDATE outbox_meta SET v = v + $1 WHERE k = 'last_seq' "
                                  "RETURNING v",
                                  &bump, err)) < 0)
                return r;
        vg_stmt_bind_int64(bump, 1, (int64_t)p->n);
        if ((r = vg_stmt_step(bump, err)) < 0)
                return r;
        if (r == 0)
                return vg_error_set(err, -EINVAL, "%s: outbox_meta has no last_seq row",
                                    vg_store_name(db));
        last = vg_stmt_column_int64(bump, 0);
        if ((r = vg_stmt_step(bump, err)) < 0) /* finish it (one row) */
                return r;
        if ((r = vg_store_prepare(db,
                                  "INSERT INTO outbox_events (seq, event_id, agent_id, event_type, "
                                  "created_ms, body) VALUES ($1, $2, $3, $4, $5, $6) "
                                  "ON CONFLICT (event_id) DO NOTHING",
                                  &ins, err)) < 0)
                return r;
        for (size_t i = 0; i < p->n; i++) {
                int64_t seq = last - (int64_t)p->n + 1 + (int64_t)i;
                vg_stmt_bind_int64(ins, 1, seq);
                vg_stmt_bind_text(ins, 2, p->info[i].event_id);
                vg_stmt_bind_text(ins, 3, p->info[i].agent_id);
                vg_stmt_bind_text(ins, 4, vg_ievent_kind_name(p->info[i].kind));
                vg_stmt_bind_int64(ins, 5, created);
                vg_stmt_bind_text(ins, 6, p->bodies[i]);
                if ((r = vg_stmt_exec(ins, err)) < 0)
                        return r;
                if (p->seq_out)
                        p->seq_out[i] = vg_stmt_changes(ins) > 0 ? seq : 0;
        }
        return 0;
}

static void free_bodies(char **bodies, size_t n)
{
        for (size_t i = 0; bodies && i < n; i++)
                free(bodies[i]);
        free(bodies);
}

/* Validate and serialize outside the transaction. */
static int prepare_events(json_t *const *events, size_t n, struct prepared *p, struct vg_error *err)
{
        p->events = events;
        p->n = n;
        p->bodies = calloc(n ? n : 1, sizeof(*p->bodies));
        p->info = calloc(n ? n : 1, sizeof(*p->info));
        if (!p->bodies || !p->info)
                return vg_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                int r = vg_ievent_validate(events[i], &p->info[i], err);
                if (r < 0) {
                        vg_error_prefix(err, "event %zu: ", i);
                        return r;
                }
                p->bodies[i] = vg_ievent_dumps(events[i]);
                if (!p->bodies[i])
                        return vg_error_set(err, -ENOMEM, "out of memory");
                if (strlen(p->bodies[i]) > VG_IEVENT_MAX_BYTES)
                        return vg_error_set(err, -EINVAL,
                                            "event %zu (%s): more than %d bytes of JSON", i,
                                            p->info[i].event_id, VG_IEVENT_MAX_BYTES);
        }
        return 0;
}

int vg_outbox_append_txn(struct vg_store *db, json_t *const *events, size_t n, int64_t *seq_out,
                         struct vg_error *err)
{
        struct prepared p = { .seq_out = seq_out };
        int r;

        if (n == 0)
                return 0;
        if (!vg_store_in_transaction(db))
                return vg_error_set(err, -EINVAL, "vg_outbox_append_txn outside a transaction");
        r = prepare_events(events, n, &p, err);
        if (r >= 0)
                r = append_rows(db, &p, err);
        free_bodies(p.bodies, n);
        free(p.info);
        return r;
}

int vg_outbox_append(struct vg_outbox *ob, json_t *const *events, size_t n, int64_t *seq_out,
                     struct vg_error *err)
{
        struct prepared p = { .seq_out = seq_out };
        int r;

        if (n == 0)
                return 0;
        r = prepare_events(events, n, &p, err);
        if (r >= 0)
                r = vg_store_transact(ob->db, append_rows, &p, err);
        free_bodies(p.bodies, n);
        free(p.info);
        if (r >= 0)
                vg_outbox_kick(ob);
        return r;
}

/* ---- delivery ---- */

static void batch_clear(struct vg_outbox_sinkstate *ss)
{
        for (size_t i = 0; i < ss->n; i++)
                free(ss->strings[i]);
        free(ss->strings);
        free(ss->recs);
        ss->strings = NULL;
        ss->recs = NULL;
        ss->n = 0;
}

static int batch_load(struct vg_outbox_sinkstate *ss, struct vg_error *err)
{
        struct vg_outbox *ob = ss->ob;
        size_t cap = ob->cfg.batch_size;
        int r;

        if (!ob->st_batch &&
            (r = vg_store_prepare(ob->db,
                                  "SELECT seq, event_id, agent_id, event_type, body FROM "
                                  "outbox_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                                  &ob->st_batch, err)) < 0)
                return r;
        ss->recs = calloc(cap, sizeof(*ss->recs));
        ss->strings = calloc(cap, sizeof(*ss->strings));
        if (!ss->recs || !ss->strings)
                return vg_error_set(err, -ENOMEM, "out of memory");
        vg_stmt_bind_int64(ob->st_batch, 1, ss->cursor);
        vg_stmt_bind_int64(ob->st_batch, 2, (int64_t)cap);
        while (ss->n < cap && (r = vg_stmt_step(ob->st_batch, err)) > 0) {
                size_t l[4];
                const char *s[4];
                for (int c = 0; c < 4; c++) {
                        s[c] = vg_stmt_column_text(ob->st_batch, c + 1, &l[c]);
                        if (!s[c])
                                s[c] = "", l[c] = 0;
                }
                char *p = malloc(l[0] + l[1] + l[2] + l[3] + 4);
                if (!p) {
                        r = vg_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                struct vg_outbox_record *rec = &ss->recs[ss->n];
                ss->strings[ss->n++] = p;
                rec->seq = vg_stmt_column_int64(ob->st_batch, 0);
                const char **dst[4] = { &rec->event_id, &rec->agent_id, &rec->event_type,
                                        &rec->body };
                for (int c = 0; c < 4; c++) {
                        memcpy(p, s[c], l[c]);
                        p[l[c]] = '\0';
                        *dst[c] = p;
                        p += l[c] + 1;
                }
                rec->body_len = l[3];
                if (rec->seq > ss->head)
                        ss->head = rec->seq;
        }
        vg_stmt_reset(ob->st_batch);
        return r < 0 ? r : 0;
}

static int cursor_store(struct vg_outbox_sinkstate *ss, int64_t seq, struct vg_error *err)
{
        struct vg_outbox *ob = ss->ob;
        int r;

        if (!ob->st_cursor &&
            (r = vg_store_prepare(ob->db,
                                  "UPDATE outbox_cursors SET seq = $1, updated_ms = $2 "
                                  "WHERE sink = $3 AND seq < $1",
                                  &ob->st_cursor, err)) < 0)
                return r;
        vg_stmt_bind_int64(ob->st_cursor, 1, seq);
        vg_stmt_bind_int64(ob->st_cursor, 2, now_ms());
        vg_stmt_bind_text(ob->st_cursor, 3, ss->sink->name);
        r = vg_stmt_exec(ob->st_cursor, err);
        if (r >= 0)
                ss->cursor = seq;
        return r;
}

static void failed(struct vg_outbox_sinkstate *ss, size_t progressed, const char *cause)
{
        struct vg_sink *s = ss->sink;

        ss->failures++;
        ss->attempts++;
        snprintf(ss->last_error, sizeof(ss->last_error), "%s", cause);
        if (!ss->failing) {
                ss->failing = true;
                ss->attempts = 1;
                ss->outage_start_ms = mono_ms();
                ss->backoff_ms = ss->ob->cfg.backoff_min_ms;
                vg_warn(VG_F("sink", s->name, "kind", s->ops->kind),
                        "delivery failed at seq %lld: %s; events are kept and retried with "
                        "back-off",
                        (long long)ss->cursor + 1, cause);
        } else {
                vg_debug(VG_F("sink", s->name), "delivery attempt %u failed: %s", ss->attempts,
                         cause);
        }
        if (progressed)
                ss->backoff_ms = ss->ob->cfg.backoff_min_ms;
        struct timeval tv = tv_ms(ss->backoff_ms);
        ss->in_backoff = true;
        evtimer_add(ss->retry, &tv);
        ss->backoff_ms = ss->backoff_ms * 2 > ss->ob->cfg.backoff_max_ms
                             ? ss->ob->cfg.backoff_max_ms
                             : ss->backoff_ms * 2;
}

static void pump(struct vg_outbox_sinkstate *ss)
{
        struct vg_error err = { 0 };

        if (ss->busy || ss->in_backoff)
                return;
        if (batch_load(ss, &err) < 0) {
                batch_clear(ss);
                failed(ss, 0, vg_error_str(&err));
                return;
        }
        if (ss->n == 0) {
                batch_clear(ss);
                return;
        }
        ss->busy = true;
        ss->sink->ops->deliver(ss->sink, ss->recs, ss->n);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
        struct vg_outbox_sinkstate *ss = arg;
        struct vg_error err = { 0 };
        size_t k = ss->done_n;
        bool ok;

        (void)fd;
        (void)what;
        if (!ss->done_pending)
                return;
        ss->done_pending = false;
        ss->busy = false;
        if (k > ss->n)
                k = ss->n;
        ok = ss->done_err.code == 0 && k == ss->n;
        if (k > 0 && cursor_store(ss, ss->recs[k - 1].seq, &err) < 0) {
                /* confirmed but not recorded: delivered again later (at least once) */
                ok = false;
                k = 0;
                ss->done_err = err;
        }
        ss->delivered += k;
        batch_clear(ss);
        if (!ok) {
                failed(ss, k,
                       ss->done_err.code ? vg_error_str(&ss->done_err)
                                         : "the sink confirmed only part of a batch");
                return;
        }
        if (ss->failing) {
                vg_notice(VG_F("sink", ss->sink->name, "kind", ss->sink->ops->kind),
                          "delivering again after %.1f s and %u failed attempts (last: %s)",
                          (double)(mono_ms() - ss->outage_start_ms) / 1000.0, ss->attempts,
                          ss->last_error);
                ss->failing = false;
                ss->last_error[0] = '\0';
        }
        ss->backoff_ms = ss->ob->cfg.backoff_min_ms;
        event_active(ss->wake, EV_TIMEOUT, 0);
}

void vg_sink_done(struct vg_sink *s, size_t n_confirmed, const struct vg_error *err)
{
        struct vg_outbox_sinkstate *ss = s->state_;

        if (!ss || !ss->busy || ss->done_pending)
                return;
        ss->done_pending = true;
        ss->done_n = n_confirmed;
        ss->done_err = err && err->code < 0 ? *err : (struct vg_error){ 0 };
        event_active(ss->done_ev, EV_TIMEOUT, 0);
}

void vg_sink_ready(struct vg_sink *s)
{
        struct vg_outbox_sinkstate *ss = s->state_;

        if (!ss || !ss->in_backoff)
                return;
        evtimer_del(ss->retry);
        ss->in_backoff = false;
        event_active(ss->wake, EV_TIMEOUT, 0);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        pump(arg);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
        struct vg_outbox_sinkstate *ss = arg;

        (void)fd;
        (void)what;
        ss->in_backoff = false;
        pump(ss);
}

void vg_outbox_kick(struct vg_outbox *ob)
{
        for (struct vg_outbox_sinkstate *ss = ob ? ob->sinks : NULL; ss; ss = ss->next)
                if (!ss->busy && !ss->in_backoff)
                        event_active(ss->wake, EV_TIMEOUT, 0);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        vg_outbox_kick(arg);
}

static void on_prune(evutil_socket_t fd, short what, void *arg)
{
        struct vg_outbox *ob = arg;
        struct vg_error err = { 0 };
        int64_t n = 0;

        (void)fd;
        (void)what;
        if (vg_outbox_prune(ob, now_ms(), &n, &err) < 0)
                vg_warn(VG_F("database", vg_store_name(ob->db)), "pruning the outbox failed: %s",
                        vg_error_str(&err));
        else if (n > 0)
                vg_info(VG_F("database", vg_store_name(ob->db)),
                        "pruned %lld delivered events from the outbox", (long long)n);
}

int vg_outbox_prune(struct vg_outbox *ob, int64_t now, int64_t *deleted, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int64_t upto = INT64_MAX;
        int r;

        if (deleted)
                *deleted = 0;
        if (ob->cfg.retention_s < 0)
                return 0;
        for (struct vg_outbox_sinkstate *ss = ob->sinks; ss; ss = ss->next)
                if (ss->cursor < upto)
                        upto = ss->cursor;
        if ((r = vg_store_prepare(ob->db,
                                  "DELETE FROM outbox_events WHERE seq <= $1 AND created_ms < $2",
                                  &st, err)) < 0)
                return r;
        vg_stmt_bind_int64(st, 1, upto);
        vg_stmt_bind_int64(st, 2, now - ob->cfg.retention_s * 1000);
        if ((r = vg_stmt_exec(st, err)) < 0)
                return r;
        if (deleted)
                *deleted = vg_stmt_changes(st);
        return 0;
}

/* ---- life cycle ---- */

int vg_outbox_new(struct event_base *base, struct vg_store *db, const struct vg_outbox_config *cfg,
                  struct vg_outbox **out, struct vg_error *err)
{
        struct vg_outbox *ob = calloc(1, sizeof(*ob));
        int r;

        if (!ob)
                return vg_error_set(err, -ENOMEM, "out of memory");
        ob->base = base;
        ob->db = db;
        if (cfg)
                ob->cfg = *cfg;
        if (!ob->cfg.batch_size)
                ob->cfg.batch_size = 1000;
        if (!ob->cfg.backoff_min_ms)
                ob->cfg.backoff_min_ms = 500;
        if (!ob->cfg.backoff_max_ms)
                ob->cfg.backoff_max_ms = 30000;
        if (ob->cfg.backoff_max_ms < ob->cfg.backoff_min_ms)
                ob->cfg.backoff_max_ms = ob->cfg.backoff_min_ms;
        if (!ob->cfg.poll_ms)
                ob->cfg.poll_ms = 1000;
        if (!ob->cfg.retention_s)
                ob->cfg.retention_s = 7 * 86400;
        if (!ob->cfg.prune_interval_s)
                ob->cfg.prune_interval_s = 300;
        if ((r = vg_outbox_migrate(db, err)) < 0) {
                free(ob);
                return r;
        }
        ob->poll = event_new(base, -1, EV_PERSIST, on_poll, ob);
        ob->prune = event_new(base, -1, EV_PERSIST, on_prune, ob);
        if (!ob->poll || !ob->prune) {
                vg_outbox_free(ob);
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        struct timeval tp = tv_ms(ob->cfg.poll_ms), tq = tv_ms(ob->cfg.prune_interval_s * 1000);
        evtimer_add(ob->poll, &tp);
        evtimer_add(ob->prune, &tq);
        *out = ob;
        return 0;
}

static void sinkstate_free(struct vg_outbox_sinkstate *ss)
{
        if (ss->busy && ss->sink->ops->cancel)
                ss->sink->ops->cancel(ss->sink);
        ss->sink->state_ = NULL;
        vg_sink_free(ss->sink);
        batch_clear(ss);
        if (ss->wake)
                event_free(ss->wake);
        if (ss->retry)
                event_free(ss->retry);
        if (ss->done_ev)
                event_free(ss->done_ev);
        free(ss);
}

void vg_outbox_free(struct vg_outbox *ob)
{
        if (!ob)
                return;
        while (ob->sinks) {
                struct vg_outbox_sinkstate *ss = ob->sinks;
                ob->sinks = ss->next;
                sinkstate_free(ss);
        }
        if (ob->poll)
                event_free(ob->poll);
        if (ob->prune)
                event_free(ob->prune);
        vg_stmt_free(ob->st_batch);
        vg_stmt_free(ob->st_cursor);
        free(ob);
}

void vg_sink_free(struct vg_sink *s)
{
        if (s && s->ops && s->ops->free)
                s->ops->free(s);
}

static int cursor_load(struct vg_outbox *ob, const char *name, int64_t *seq, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *ins = NULL, *sel = NULL;
        int r;

        if ((r = vg_store_prepare(ob->db,
                                  "INSERT INTO outbox_cursors (sink, seq, updated_ms) "
                                  "VALUES ($1, 0, $2) ON CONFLICT (sink) DO NOTHING",
                                  &ins, err)) < 0)
                return r;
        vg_stmt_bind_text(ins, 1, name);
        vg_stmt_bind_int64(ins, 2, now_ms());
        if ((r = vg_stmt_exec(ins, err)) < 0)
                return r;
        if ((r = vg_store_prepare(ob->db, "SELECT seq FROM outbox_cursors WHERE sink = $1", &sel,
                                  err)) < 0)
                return r;
        vg_stmt_bind_text(sel, 1, name);
        if ((r = vg_stmt_step(sel, err)) < 0)
                return r;
        *seq = r > 0 ? vg_stmt_column_int64(sel, 0) : 0;
        vg_stmt_reset(sel);
        return 0;
}

int vg_outbox_add_sink(struct vg_outbox *ob, struct vg_sink *sink, struct vg_error *err)
{
        struct vg_outbox_sinkstate *ss;
        int r;

        for (ss = ob->sinks; ss; ss = ss->next)
                if (strcmp(ss->sink->name, sink->name) == 0) {
                        vg_sink_free(sink);
                        return vg_error_set(err, -EEXIST, "two sinks named \"%s\"", sink->name);
                }
        ss = calloc(1, sizeof(*ss));
        if (!ss) {
                vg_sink_free(sink);
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        ss->ob = ob;
        ss->sink = sink;
        sink->state_ = ss;
        ss->backoff_ms = ob->cfg.backoff_min_ms;
        ss->wake = event_new(ob->base, -1, 0, on_wake, ss);
        ss->retry = event_new(ob->base, -1, 0, on_retry, ss);
        ss->done_ev = event_new(ob->base, -1, 0, on_done, ss);
        if (!ss->wake || !ss->retry || !ss->done_ev)
                r = vg_error_set(err, -ENOMEM, "out of memory");
        else if ((r = cursor_load(ob, sink->name, &ss->cursor, err)) >= 0 && sink->ops->start)
                r = sink->ops->start(sink, ob->base, err);
        if (r < 0) {
                vg_error_prefix(err, "sink %s: ", sink->name);
                sinkstate_free(ss);
                return r;
        }
        ss->head = ss->cursor;
        ss->next = ob->sinks;
        ob->sinks = ss;
        event_active(ss->wake, EV_TIMEOUT, 0);
        return 0;
}

int vg_outbox_sink_status(const struct vg_outbox *ob, const char *name,
                          struct vg_outbox_sink_status *st)
{
        for (struct vg_outbox_sinkstate *ss = ob->sinks; ss; ss = ss->next)
                if (strcmp(ss->sink->name, name) == 0) {
                        *st = (struct vg_outbox_sink_status){
                                .name = ss->sink->name,
                                .cursor = ss->cursor,
                                .head = ss->head,
                                .delivered = ss->delivered,
                                .failures = ss->failures,
                                .failing = ss->failing,
                                .last_error = ss->last_error,
                        };
                        return 0;
                }
        return -ENOENT;
}

int vg_outbox_head(struct vg_outbox *ob, int64_t *seq, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r =
            vg_store_prepare(ob->db, "SELECT v FROM outbox_meta WHERE k = 'last_seq'", &st, err);

        if (r >= 0)
                r = vg_stmt_step(st, err);
        *seq = r > 0 ? vg_stmt_column_int64(st, 0) : 0;
        return r < 0 ? r : 0;
}
