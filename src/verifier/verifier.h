/* vigil-verifier: Keylime-compatible cloud verifier (REST API v2.1-v2.5, pull model): the
 * shared state of the daemon's modules (config, db, api, poll, attest, events, notify). */
#pragma once

#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "baseline.h"
#include "cleanup.h"
#include "config.h"
#include "error.h"
#include "hash.h"
#include "ima.h"
#include "quote.h"

/* API versions accepted in request paths, oldest first; the last is "current_version". */
#define VG_VERIFIER_API_VERSIONS "2.1", "2.2", "2.3", "2.4", "2.5"
#define VG_VERIFIER_API_CURRENT  "2.5"

/* Keylime's operational states (keylime/common/states.py). */
enum vg_cv_state {
        VG_CV_REGISTERED = 0,
        VG_CV_START = 1,
        VG_CV_SAVED = 2,
        VG_CV_GET_QUOTE = 3,
        VG_CV_GET_QUOTE_RETRY = 4,
        VG_CV_PROVIDE_V = 5,
        VG_CV_PROVIDE_V_RETRY = 6,
        VG_CV_FAILED = 7,
        VG_CV_TERMINATED = 8,
        VG_CV_INVALID_QUOTE = 9,
        VG_CV_TENANT_FAILED = 10,
};
const char *vg_cv_state_str(int state); /* "Get Quote", ... as Keylime spells them */

extern const struct vg_config_schema vg_verifier_schema;

/* ---- Events (events.c) ------------------------------------------------------------------- */

enum vg_cv_severity {
        VG_SEV_INFO,
        VG_SEV_NOTICE,
        VG_SEV_WARNING,
        VG_SEV_ERROR,
        VG_SEV_CRITICAL,
        VG_SEV_ALERT,
        VG_SEV_EMERGENCY,
};
const char *vg_cv_severity_str(enum vg_cv_severity s);

/* One attestation failure, Keylime's failure.Event with vigil's fields: "ima.file_not_found",
 * "quote_validation.invalid_signature", ... A quote-level event makes the agent INVALID_QUOTE,
 * a policy event FAILED. */
struct vg_cv_event {
        char id[64];
        char *file;     /* may be NULL */
        char *expected; /* may be NULL */
        char *found;    /* may be NULL */
        char *message;  /* one sentence */
        uint64_t entry; /* IMA entry (absolute), UINT64_MAX when none */
        enum vg_cv_severity severity;
        bool recoverable;
        bool quote_level; /* the evidence itself is not trusted (INVALID_QUOTE) */
        bool fresh;       /* reported now, not before (handle_failure; integrity.c) */
};

/* A list of events produced by one evaluation. */
struct vg_cv_failure {
        struct vg_cv_event *ev;
        size_t n, cap;
        struct vg_ima_counts ima_counts;
        bool ima_checked;
};
int vg_cv_failure_add(struct vg_cv_failure *f, const char *id, bool quote_level, bool recoverable,
                      const char *file, const char *expected, const char *found, uint64_t entry,
                      const char *fmt, ...) __attribute__((format(printf, 9, 10)));
void vg_cv_failure_clear(struct vg_cv_failure *f);
/* The highest severity, and whether any event is quote-level. */
enum vg_cv_severity vg_cv_failure_severity(const struct vg_cv_failure *f);
bool vg_cv_failure_quote_level(const struct vg_cv_failure *f);
/* Log one event with its structured fields (agent, event, file, expected, found, severity). */
void vg_cv_event_log(const char *agent, const struct vg_cv_event *e);
/* {"type": id, "context": {...}} as /verify/evidence answers and notifications carry it. */
json_t *vg_cv_event_json(const struct vg_cv_event *e);

/* ---- Pure evaluation (attest.c) ------------------------------------------------------------ */

struct vg_cv_evidence {
        const char *quote; /* Keylime quote string */
        const char *nonce;
        enum vg_hash_alg hash_alg;
        EVP_PKEY *ak;
        const char *nk_pem;                     /* for PCR 16; NULL: not checked */
        const struct vg_tpm_policy *tpm_policy; /* may be NULL */
        /* Clock info of the previous quote of this agent (NULL: none). */
        const struct vg_clock_info *prev_clock;
        /* IMA: all may be NULL/0 when no runtime policy applies. */
        const struct vg_ima_policy *ima_policy;
        struct vg_ima_state *ima_state; /* advanced on a match */
        const char *ima_list;
        size_t ima_list_len;
        uint64_t ima_first_entry;
        bool ima_requested; /* a runtime policy is set: PCR 10 was asked for */
        bool fail_on_violations;
        /* Baselines: receives the PCR values of an authentic quote (signature, nonce, digest,
         * clock, PCR 16 checked), whatever the policies then say. May be NULL. */
        struct vg_measurements *pcrs_out;
};

struct vg_cv_verdict {
        bool quote_ok;        /* signature, nonce, digest, clock, PCR16, tpm_policy */
        bool ima_ok;          /* no IMA failure (and a match when one was required) */
        bool ima_pcr_matched; /* the quoted PCR 10 was reached */
        bool reboot;          /* reset/restart counter moved against prev_clock */
        bool ima_skipped;     /* reboot seen with a list from the old position: not checked */
        bool pcrs_saved;      /* pcrs_out was filled */
        struct vg_clock_info clock;
        struct vg_ima_result ima;
};

/*
 * Check evidence: quote (vg_quote_verify, clock vs prev, PCR 16, tpm_policy), then the IMA list
 * against the policy continuing from ima_state. Every problem goes into f as an event. Pure:
 * no I/O, no logging. 0 when the evaluation ran (the verdict says pass or fail), < 0 on misuse.
 */
int vg_cv_evaluate(const struct vg_cv_evidence *ev, struct vg_cv_verdict *out,
                   struct vg_cv_failure *f);

/* ---- Request bodies (api.c; pure, fuzzed) --------------------------------------------------- */

/* POST /agents/{id}: what a tenant sends (keylime/cloud_verifier_tornado.py AgentsHandler.post). */
struct vg_cv_add_request {
        char *v;                   /* base64 32 bytes, or NULL */
        char *ip;                  /* cloudagent_ip */
        int64_t port;              /* cloudagent_port */
        char *tpm_policy;          /* JSON string, normalised; never NULL ("{}" by default) */
        char *meta_data;           /* JSON string; "{}" by default */
        char *ak_tpm;              /* base64 TPM2B_PUBLIC */
        char *mtls_cert;           /* PEM or NULL ("disabled") */
        char *revocation_key;      /* PEM private key or NULL */
        char *runtime_policy_name; /* NULL: agent id */
        char *runtime_policy;      /* decoded JSON text, or NULL */
        char *runtime_policy_sig, *runtime_policy_key;
        char *accept_hash, *accept_enc, *accept_sign; /* JSON arrays as text */
        char *supported_version;
        char *verifier_ip;
        int64_t verifier_port;
};
int vg_cv_parse_add_request(const char *body, size_t len, struct vg_cv_add_request *out,
                            struct vg_error *err);
void vg_cv_add_request_clear(struct vg_cv_add_request *r);

/* POST/PUT /allowlists/{name}: {tpm_policy, runtime_policy (b64), runtime_policy_sig, _key}. */
struct vg_cv_allowlist_request {
        char *tpm_policy;     /* JSON text or NULL */
        char *runtime_policy; /* decoded JSON */
        char *runtime_policy_sig, *runtime_policy_key;
};
int vg_cv_parse_allowlist_request(const char *body, size_t len, struct vg_cv_allowlist_request *out,
                                  struct vg_error *err);
void vg_cv_allowlist_request_clear(struct vg_cv_allowlist_request *r);

/* Keylime's agent id rule: a UUID, a hash_ek id, or letters, digits, '-', '_', '.'. */
bool vg_cv_agent_id_valid(const char *id);

/* ---- The daemon ---------------------------------------------------------------------------- */

struct vg_verifier;
struct vg_cv_agent;

struct vg_cv_options {
        const char *uuid;
        double quote_interval;  /* s */
        double request_timeout; /* s */
        double retry_interval;  /* s */
        int64_t max_retries;
        bool exponential_backoff;
        bool ignore_tomtou_errors;
        int64_t max_quotes_without_progress;
        bool stop_polling_on_failure;
        bool notify_agent, notify_webhook;
        const char *webhook_url;
        bool require_allow_list_signatures;
        bool enable_agent_mtls;
        double flush_interval; /* s */
        unsigned poll_workers; /* threads polling agents (poll.c) */
};

int vg_verifier_new(struct event_base *base, const struct vg_config *cfg, struct vg_verifier **out,
                    struct vg_error *err);
void vg_verifier_free(struct vg_verifier *v);
VG_DEFINE_CLEANUP_FUNC(struct vg_verifier, vg_verifier_free)
int vg_verifier_port(const struct vg_verifier *v);

/* ---- Internals shared by the daemon's modules ----------------------------------------------- */

struct vg_http_server;
struct vg_http_client;
struct vg_http_call;
struct vg_store;
struct vg_cv_notice;
struct vg_cv_worker;
struct vg_cv_snap;

/* One agent this verifier polls: its database row, what was derived from it once (AK, tpm_policy,
 * runtime policy from the shared cache, the pinned TLS context), and the poller's state. */
struct vg_cv_agent {
        struct vg_verifier *v;
        struct vg_cv_worker *w; /* the poller thread that owns it (poll.c explains) */
        struct vg_cv_agent *next;
        struct vg_cv_agent *hnext; /* v->by_id chain */
        char *id;
        /* the row */
        char *ip;
        int64_t port;
        char *v_b64;
        char *tpm_policy_json, *meta_data, *ak_tpm, *mtls_cert, *revocation_key;
        char *accept_hash, *accept_enc, *accept_sign, *supported_version;
        char *verifier_ip;
        int64_t verifier_port;
        char *policy_name; /* NULL: no runtime policy */
        char *mb_policy_name;   /* NULL: no measured boot policy (boot.c) */
        struct vg_cv_boot *boot; /* measured-boot state (boot.c) */
        char *hash_alg_s, *enc_alg_s, *sign_alg_s;
        char *public_key; /* the NK (PEM) once a quote brought it */
        int state;
        char *severity_level, *last_event_id;
        int64_t attestation_count, last_received_quote, last_successful_attestation;
        bool v_delivered;
        bool have_clock;
        struct vg_clock_info clock;
        struct vg_ima_state *ima;
        struct vg_measurements quoted; /* the latest authentic quote's PCR values (baselines) */
        uint64_t integrity_boot;       /* integrity.c: boot counter + 1 handed over (owner) */
        /* derived once */
        struct vg_tpm_public *ak;
        struct vg_tpm_policy *tpm_policy;
        struct vg_ima_policy *ima_policy;
        uint32_t mask;
        SSL_CTX *tls;
        EVP_PKEY *nk;
        enum vg_hash_alg hash_alg;
        /* poller */
        struct event *timer;
        struct vg_http_call *call;
        char nonce[21];
        uint64_t asked_entry;
        unsigned retries;
        int64_t no_progress;
        bool polling;
        bool in_failure;    /* failed and still polled: only new events are reported */
        uint64_t *reported; /* IMA entries already reported while in_failure */
        size_t n_reported, cap_reported;
        char reported_quote_event[64];
        char accepted_hash[16];  /* the last hash_alg found in accept_hash */
        bool dirty;              /* on w->dirty: a snapshot is due (owner only) */
        struct vg_cv_snap *snap; /* queued for the next write (v->snap_lock) */
};

/* A poller thread (poll.c): its own loop and HTTP client, the agents assigned to it. */
struct vg_cv_worker {
        struct vg_verifier *v;
        unsigned index;
        pthread_t thread;
        bool running;
        struct event_base *base;
        struct vg_http_client *client;
        const struct timeval *interval_tv; /* quote_interval as a common timeout */
        int wake_fd;                       /* eventfd: commands are queued */
        struct event *wake_ev, *publish_ev;
        pthread_mutex_t lock; /* cmds and done */
        pthread_cond_t done;
        struct vg_cv_cmd *cmds, **cmds_tail;
        struct vg_cv_agent **dirty; /* worker-local */
        size_t n_dirty, cap_dirty;
        size_t n_agents; /* assigned (main thread) */
};

struct vg_verifier {
        struct event_base *base;
        const struct vg_config *cfg;
        struct vg_cv_options o;
        struct vg_store *db;
        struct vg_http_server *srv;
        struct vg_http_client *client;
        struct vg_ima_policy_cache *policies;
        struct vg_cv_mb_entry *mb_cache; /* refstates in use (boot.c; main thread) */
        struct vg_cv_agent *agents;
        size_t n_agents;
        struct vg_cv_agent **by_id; /* hash of agents by id (main thread) */
        size_t n_buckets;
        struct vg_cv_worker *workers;
        unsigned n_workers;
        SSL_CTX *agent_tls; /* the default client context of the workers' clients */
        /* Shared between the workers and the main thread, under snap_lock: agent state
         * snapshots waiting for the batched write, notifications waiting to be sent. */
        pthread_mutex_t snap_lock;
        struct vg_cv_snap *snaps;
        struct vg_cv_outbox *outbox, **outbox_tail;
        int main_wake_fd;
        struct event *main_wake_ev;
        char client_cert[4096], client_key[4096];
        const char *client_key_password;
        EVP_PKEY *revocation_key; /* the verifier's own, when an agent brings none */
        struct event *flush_ev;
        uint64_t flushes;             /* transactions written */
        struct vg_cv_notice *notices; /* notifications in flight (notify.c) */
        /* integrity events and boot baselines (integrity.c) */
        struct vg_cv_integrity *integrity;
};

/* db.c */
int vg_cv_db_open(struct vg_verifier *v, struct vg_error *err);
/* Read this verifier's agents into memory (startup). */
int vg_cv_db_load_agents(struct vg_verifier *v, struct vg_error *err);
/* Read one agent row (any verifier id when all is true) into a new in-memory agent. -ENOENT. */
int vg_cv_db_read_agent(struct vg_verifier *v, const char *id, bool any_verifier,
                        struct vg_cv_agent **out, struct vg_error *err);
int vg_cv_db_insert_agent(struct vg_verifier *v, const struct vg_cv_agent *a, struct vg_error *err);
int vg_cv_db_delete_agent(struct vg_verifier *v, const char *id, struct vg_error *err);
/* Main thread, agent stopped (vg_cv_agent_stop): write its state now, with what is queued. */
int vg_cv_db_write_state(struct vg_verifier *v, struct vg_cv_agent *a, struct vg_error *err);
/* Owner (worker) only: the state changed; a snapshot goes to the queue at the worker's next
 * publish (flush_interval / 2), the batched flush writes the queue in one transaction. */
void vg_cv_agent_dirty(struct vg_cv_agent *a);
/* Owner only: queue a snapshot of a's state now (replacing one still queued). */
void vg_cv_agent_publish(struct vg_cv_agent *a);
/* Main thread: drop a's queued snapshot (the agent goes away). */
void vg_cv_agent_unqueue(struct vg_cv_agent *a);
void vg_cv_snaps_free(struct vg_verifier *v);
int vg_cv_db_flush(struct vg_verifier *v, struct vg_error *err);
/* Runtime policy text by name; -ENOENT. *out is new. */
int vg_cv_db_policy_get(struct vg_verifier *v, const char *name, char **json, char **tpm_policy,
                        struct vg_error *err);
/* A runtime policy stored as a DSSE envelope (keylime-policy sign): *payload gets the policy
 * inside (1); 0 and NULL when text is a plain policy; < 0 for a broken envelope. */
int vg_cv_policy_unwrap(const char *text, char **payload, struct vg_error *err);
/* The agent's derived state (AK, tpm_policy, runtime policy, mask, TLS). */
int vg_cv_agent_prepare(struct vg_verifier *v, struct vg_cv_agent *a, struct vg_error *err);
void vg_cv_agent_free(struct vg_cv_agent *a);
struct vg_cv_agent *vg_cv_find(struct vg_verifier *v, const char *id);
/* Add to v->agents and the id index (main thread). */
int vg_cv_link(struct vg_verifier *v, struct vg_cv_agent *a);
void vg_cv_unlink(struct vg_verifier *v, struct vg_cv_agent *a);

/* api.c */
int vg_cv_api_register(struct vg_verifier *v);

/* poll.c: the owner's side (worker thread, or main before the workers run) */
void vg_cv_poll_start(struct vg_cv_agent *a, double delay);
void vg_cv_poll_stop(struct vg_cv_agent *a);
/* Reactivate: clear the failure and start fresh (IMA from entry 0). Owner, or main when
 * stopped. */
void vg_cv_agent_reset_failure(struct vg_cv_agent *a);

/* poll.c: workers, called from the main thread */
int vg_cv_workers_new(struct vg_verifier *v, SSL_CTX *agent_tls, struct vg_error *err);
int vg_cv_workers_run(struct vg_verifier *v, struct vg_error *err); /* start the threads */
/* Stop and join the threads, stop polling, publish what is dirty. */
void vg_cv_workers_free(struct vg_verifier *v);
/* Free the loops and clients (after the agents). */
void vg_cv_workers_release(struct vg_verifier *v);
/* Give a to the worker with the fewest agents. */
void vg_cv_agent_assign(struct vg_verifier *v, struct vg_cv_agent *a);
/* Start polling a on its worker (delay s). */
void vg_cv_agent_start(struct vg_cv_agent *a, double delay);
/* Stop polling a on its worker and queue its state; the main thread owns a until started. */
void vg_cv_agent_stop(struct vg_cv_agent *a);
/* Run fn(a, i, ctx) for each agents[i] on its owner thread; returns when all have run. */
void vg_cv_on_owners(struct vg_verifier *v, struct vg_cv_agent *const *agents, size_t n,
                     void (*fn)(struct vg_cv_agent *a, size_t i, void *ctx), void *ctx);

/* notify.c */
int vg_cv_notify_load_key(struct vg_verifier *v, struct vg_error *err);
/* A revocation (or comm_error) for agent a caused by event e (may be NULL): signed by the
 * caller (a's owner), sent by the main thread. */
void vg_cv_notify(struct vg_verifier *v, struct vg_cv_agent *a, const char *type,
                  const struct vg_cv_event *e);
/* Main thread: send the notifications the workers queued. */
void vg_cv_notify_drain(struct vg_verifier *v);
/* Drop the notifications still in flight (shutdown). */
void vg_cv_notify_free_all(struct vg_verifier *v);
json_t *vg_cv_notify_message(struct vg_cv_agent *a, const char *type, const struct vg_cv_event *e);

/* Helpers */
double vg_cv_now(void); /* wall clock seconds */
