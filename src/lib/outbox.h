/* vigil: the durable outbox of integrity events (issue 7 contract §2): events committed in the
 * verifier's store, delivered at least once and in order to each sink from its own cursor. */
#pragma once

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "store.h"

/*
 * Usage (on the thread that owns the store and runs the loop):
 *
 *      struct vg_outbox_config oc = { .retention_s = 7 * 86400 };
 *      r = vg_outbox_new(base, db, &oc, &ob, &err);               // migrates its tables
 *      r = vg_sink_file_new(&(struct vg_sink_file_config){ .path = p }, &sink, &err);
 *      r = vg_outbox_add_sink(ob, sink, &err);                    // the outbox owns sink now
 *      r = vg_outbox_append(ob, &event, 1, &err);                 // committed when it returns
 *      event_base_dispatch(base);                                 // delivery runs on the loop
 *
 * Tables: outbox_events (seq, event_id UNIQUE, agent_id, event_type, created_ms, body),
 * outbox_cursors (sink, seq: the last seq the sink confirmed), outbox_meta (next_seq), schema
 * component "outbox". seq is allocated from outbox_meta inside the appending transaction, so
 * events become visible in seq order on both backends (a reader never sees seq n+1 committed
 * before seq n) and seqs are never reused after pruning.
 *
 * Delivery: each sink reads up to batch_size events after its cursor, hands them to the sink,
 * and stores the new cursor when the sink confirmed a prefix of them. A failure keeps the cursor
 * and retries after a back-off (backoff_min_ms doubling to backoff_max_ms); the outage is logged
 * once (warning: sink name and cause) and its end once (notice). Events are read in seq order,
 * so every sink sees every agent's events in the order they were appended.
 */

struct vg_outbox;
struct vg_sink;

/* Zero fields take the defaults in brackets. */
struct vg_outbox_config {
        unsigned batch_size;       /* events per read and per sink delivery [1000] */
        unsigned backoff_min_ms;   /* first retry after a failure [500] */
        unsigned backoff_max_ms;   /* cap of the doubling [30000] */
        unsigned poll_ms;          /* look for events other connections appended [1000] */
        int64_t retention_s;       /* keep delivered events this long; < 0: forever [7 days] */
        unsigned prune_interval_s; /* how often to prune [300] */
};

/* Create the tables (migrations) and load nothing else yet. The store is borrowed and used only
 * from the loop's thread; it must outlive the outbox. base is borrowed too. */
int vg_outbox_new(struct event_base *base, struct vg_store *db, const struct vg_outbox_config *cfg,
                  struct vg_outbox **out, struct vg_error *err);
/* Stops delivery (batches in flight are abandoned: redelivered at the next start) and frees the
 * sinks. NULL is fine. */
void vg_outbox_free(struct vg_outbox *ob);
VG_DEFINE_CLEANUP_FUNC(struct vg_outbox, vg_outbox_free)

/* Only the migrations, e.g. for a tool that reads the outbox. */
int vg_outbox_migrate(struct vg_store *db, struct vg_error *err);

/* Attach a sink (the outbox owns it from now on, also on failure). Its cursor is read from the
 * store (created at 0, i.e. "everything still retained", for a sink never seen) and delivery
 * starts from the loop. Sink names must be unique. */
int vg_outbox_add_sink(struct vg_outbox *ob, struct vg_sink *sink, struct vg_error *err);

/*
 * Append events (vigil's form; each is validated, so one bad event refuses the whole call) in
 * one transaction, committed before return; the sinks are woken. An eventId already in the
 * outbox is skipped (idempotent). seq_out (optional, n entries) receives each event's seq, 0
 * for a skipped one. -EINVAL naming the event index and JSON path for an invalid event;
 * store errors as vg_store's.
 */
int vg_outbox_append(struct vg_outbox *ob, json_t *const *events, size_t n, int64_t *seq_out,
                     struct vg_error *err);
/* The same inside a transaction the caller has begun on db (e.g. with the agent's new state,
 * so that both or neither are stored); the caller then calls vg_outbox_kick() after its commit.
 * No outbox needed: any process may append. */
int vg_outbox_append_txn(struct vg_store *db, json_t *const *events, size_t n, int64_t *seq_out,
                         struct vg_error *err);
/* Deliver what is new now rather than at the next poll. */
void vg_outbox_kick(struct vg_outbox *ob);

/* Delete events every attached sink has confirmed and that are older than the retention
 * (now_ms - retention_s). *deleted (optional) gets the count. Runs by itself every
 * prune_interval_s. */
int vg_outbox_prune(struct vg_outbox *ob, int64_t now_ms, int64_t *deleted, struct vg_error *err);

/* State of one sink, for tests, metrics and `vigil` status output. */
struct vg_outbox_sink_status {
        const char *name;
        int64_t cursor;         /* last confirmed seq */
        int64_t head;           /* highest seq appended (as last read by this sink) */
        uint64_t delivered;     /* events confirmed since the outbox started */
        uint64_t failures;      /* failed deliveries since the outbox started */
        bool failing;           /* in an outage */
        const char *last_error; /* the outage's cause, "" when none */
};
int vg_outbox_sink_status(const struct vg_outbox *ob, const char *name,
                          struct vg_outbox_sink_status *st);
/* Highest seq in the outbox (0 when empty). */
int vg_outbox_head(struct vg_outbox *ob, int64_t *seq, struct vg_error *err);

/* ---- sinks ---- */

/* One event handed to a sink: body is the event's compact JSON line (no newline). */
struct vg_outbox_record {
        int64_t seq;
        const char *event_id;
        const char *agent_id;
        const char *event_type; /* "lateBootReportEvent", ... */
        const char *body;
        size_t body_len;
};

/* What a sink implements. deliver() starts delivering recs[0..n) (valid until it reports) and
 * must report exactly once through vg_sink_done(), from inside deliver() or later from the loop:
 * how many records, from the first, are confirmed, and an error if not all are. */
struct vg_sink_ops {
        const char *kind; /* "file", "webhook", "mqtt" */
        int (*start)(struct vg_sink *s, struct event_base *base, struct vg_error *err);
        void (*deliver)(struct vg_sink *s, const struct vg_outbox_record *recs, size_t n);
        /* Abandon a delivery in progress (the outbox is going away); no vg_sink_done() after. */
        void (*cancel)(struct vg_sink *s);
        void (*free)(struct vg_sink *s);
};

/* The common part of every sink; a sink's own struct starts with it. */
struct vg_sink {
        const struct vg_sink_ops *ops;
        char *name;                         /* "file", "webhook", "mqtt" unless configured */
        struct vg_outbox_sinkstate *state_; /* private to the outbox */
};

/* Called by a sink: n records confirmed (a prefix), err set (non-NULL with code < 0) when the
 * delivery stopped short or failed. */
void vg_sink_done(struct vg_sink *s, size_t n_confirmed, const struct vg_error *err);
/* Called by a sink whose peer came back (MQTT connected): retry now instead of at the end of
 * the back-off. */
void vg_sink_ready(struct vg_sink *s);
/* Free a sink that was never attached. */
void vg_sink_free(struct vg_sink *s);
VG_DEFINE_CLEANUP_FUNC(struct vg_sink, vg_sink_free)

/* JSON lines, one event per line; a batch is written with one write and fdatasync()ed before it
 * is confirmed. A failed write is truncated away, so the file holds whole lines only. */
struct vg_sink_file_config {
        const char *name; /* ["file"] */
        const char *path; /* ["/var/lib/vigil/events.jsonl"] */
        unsigned mode;    /* for a new file [0640] */
};
int vg_sink_file_new(const struct vg_sink_file_config *cfg, struct vg_sink **out,
                     struct vg_error *err);

/* POST each event (application/json) one after the other; 2xx confirms it. Headers
 * X-Vigil-Signature: sha256=<lowercase hex HMAC-SHA256(secret, body)> (when a secret is set) and
 * X-Vigil-Event-Id. */
struct vg_sink_webhook_config {
        const char *name;                 /* ["webhook"] */
        const char *url;                  /* http:// or https:// */
        const char *secret;               /* HMAC key; NULL: no signature header */
        const char *ca_file;              /* for https: the CA to trust [the system's] */
        const char *cert_file, *key_file; /* optional client certificate (mTLS) */
        unsigned timeout_ms;              /* per request [10000] */
};
int vg_sink_webhook_new(const struct vg_sink_webhook_config *cfg, struct vg_sink **out,
                        struct vg_error *err);
/* HMAC-SHA256(secret, body) as 64 lowercase hex digits and a NUL. */
int vg_sink_webhook_signature(const char *secret, const void *body, size_t len, char out[65]);

/* MQTT 3.1.1 through libmosquitto: QoS 1 to <prefix>/<agentId>/<eventType>, confirmed by
 * PUBACK; clean session off. The network runs on a thread of the sink's own (connect,
 * reconnect with back-off, PUBACKs), handing confirmations to the loop. */
struct vg_sink_mqtt_config {
        const char *name;         /* ["mqtt"] */
        const char *host;         /* ["127.0.0.1"] */
        int port;                 /* [1883, 8883 with TLS] */
        const char *client_id;    /* ["vigil-verifier-<hostname>"] */
        const char *topic_prefix; /* ["vigil/events"] */
        const char *username;     /* optional */
        const char *password;
        const char *ca_file;   /* enables TLS */
        const char *cert_file; /* optional client certificate with TLS */
        const char *key_file;
        bool tls_insecure;       /* do not check the broker's host name */
        unsigned keepalive_s;    /* [30] */
        unsigned max_inflight;   /* unacknowledged PUBLISHes on the wire [1000] */
        unsigned ack_timeout_ms; /* a batch without all its PUBACKs fails after [30000] */
        unsigned backoff_min_ms; /* reconnect back-off [500] */
        unsigned backoff_max_ms; /* [30000] */
};
int vg_sink_mqtt_new(const struct vg_sink_mqtt_config *cfg, struct vg_sink **out,
                     struct vg_error *err);
