/* vigil-verifier: the agent and runtime-policy tables (SQL written for SQLite and PostgreSQL),
 * the in-memory agents derived from them, and the batched write of attestation state: an agent's
 * owner thread queues snapshots of its state (v->snaps, under v->snap_lock, at most one per
 * agent), and the main thread writes the queue in one transaction, never one statement per
 * poll. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "boot.h"
#include "encoding.h"
#include "integrity.h"
#include "log.h"
#include "store.h"
#include "tls.h"
#include "tpm_public.h"
#include "verifier.h"

static const struct vg_store_migration verifier_migrations[] = {
        { 1, "agents and runtime policies",
          "CREATE TABLE allowlists ("
          " name TEXT PRIMARY KEY,"
          " tpm_policy TEXT,"
          " runtime_policy TEXT NOT NULL,"
          " checksum TEXT NOT NULL,"
          " generator BIGINT NOT NULL DEFAULT 0,"
          " runtime_policy_sig TEXT,"
          " runtime_policy_key TEXT);"
          "CREATE TABLE agents ("
          " agent_id TEXT PRIMARY KEY,"
          " verifier_id TEXT NOT NULL,"
          " ip TEXT,"
          " port BIGINT,"
          " v TEXT,"
          " operational_state BIGINT NOT NULL,"
          " public_key TEXT,"
          " tpm_policy TEXT,"
          " meta_data TEXT,"
          " ak_tpm TEXT NOT NULL,"
          " mtls_cert TEXT,"
          " revocation_key TEXT,"
          " accept_tpm_hash_algs TEXT,"
          " accept_tpm_encryption_algs TEXT,"
          " accept_tpm_signing_algs TEXT,"
          " supported_version TEXT,"
          " hash_alg TEXT,"
          " enc_alg TEXT,"
          " sign_alg TEXT,"
          " verifier_ip TEXT,"
          " verifier_port BIGINT,"
          " runtime_policy_name TEXT,"
          " severity_level TEXT,"
          " last_event_id TEXT,"
          " attestation_count BIGINT NOT NULL DEFAULT 0,"
          " last_received_quote BIGINT NOT NULL DEFAULT 0,"
          " last_successful_attestation BIGINT NOT NULL DEFAULT 0,"
          " v_delivered BIGINT NOT NULL DEFAULT 0,"
          " tpm_clock BIGINT,"
          " tpm_reset_count BIGINT,"
          " tpm_restart_count BIGINT,"
          " ima_state TEXT);" /* base64 of vg_ima_state_save() */
          "CREATE INDEX agents_verifier_id ON agents (verifier_id);" },
        /* What a failed agent has already had reported, so that a restart does not report it
         * again: {"quote": "<event id>", "entries": [IMA entry numbers]}. */
        { 2, "violations already reported", "ALTER TABLE agents ADD COLUMN reported TEXT;" },
        /* The latest authentic quote's PCR values (vg_measurements_pack()), for baselines. */
        { 3, "latest quoted PCR values", "ALTER TABLE agents ADD COLUMN quoted_pcrs BYTEA;" },
        /* Measured boot (boot.c): Keylime's named refstates and the agent's. */
        { 4, "measured boot policies",
          "CREATE TABLE mbpolicies (name TEXT PRIMARY KEY, mb_policy TEXT NOT NULL,"
          " checksum TEXT NOT NULL);"
          "ALTER TABLE agents ADD COLUMN mb_policy_name TEXT;" },
};

#define AGENT_COLUMNS                                                                              \
        "agent_id, verifier_id, ip, port, v, operational_state, public_key, tpm_policy, "          \
        "meta_data, ak_tpm, mtls_cert, revocation_key, accept_tpm_hash_algs, "                     \
        "accept_tpm_encryption_algs, accept_tpm_signing_algs, supported_version, hash_alg, "       \
        "enc_alg, sign_alg, verifier_ip, verifier_port, runtime_policy_name, severity_level, "     \
        "last_event_id, attestation_count, last_received_quote, last_successful_attestation, "     \
        "v_delivered, tpm_clock, tpm_reset_count, tpm_restart_count, ima_state, reported, "        \
        "quoted_pcrs"

int vg_cv_db_open(struct vg_verifier *v, struct vg_error *err)
{
        struct vg_store_options so = {
                .data_dir = vg_config_string(v->cfg, "data_dir"),
                .default_file = "cv_data.sqlite",
        };
        int r = vg_store_open(&v->db, vg_config_string(v->cfg, "database_url"), &so, err);

        if (r >= 0)
                r = vg_store_migrate(v->db, "verifier", verifier_migrations,
                                     VG_ARRAY_SIZE(verifier_migrations), err);
        if (r >= 0)
                r = vg_baseline_migrate(v->db, err);
        return r;
}

static char *col_dup(struct vg_stmt *st, int col)
{
        const char *s = vg_stmt_column_text(st, col, NULL);
        return s ? strdup(s) : NULL;
}

void vg_cv_agent_free(struct vg_cv_agent *a)
{
        if (!a)
                return;
        vg_cv_poll_stop(a);
        if (a->timer)
                event_free(a->timer);
        if (a->snap)
                vg_cv_agent_unqueue(a);
        free(a->id);
        free(a->ip);
        free(a->v_b64);
        free(a->tpm_policy_json);
        free(a->meta_data);
        free(a->ak_tpm);
        free(a->mtls_cert);
        if (a->revocation_key)
                OPENSSL_cleanse(a->revocation_key, strlen(a->revocation_key));
        free(a->revocation_key);
        free(a->accept_hash);
        free(a->accept_enc);
        free(a->accept_sign);
        free(a->supported_version);
        free(a->verifier_ip);
        free(a->policy_name);
        free(a->hash_alg_s);
        free(a->enc_alg_s);
        free(a->sign_alg_s);
        free(a->public_key);
        free(a->severity_level);
        free(a->last_event_id);
        free(a->reported);
        vg_measurements_clear(&a->quoted);
        vg_ima_state_free(a->ima);
        vg_tpm_public_free(a->ak);
        vg_tpm_policy_free(a->tpm_policy);
        vg_ima_policy_unref(a->ima_policy);
        vg_cv_boot_agent_free(a);
        if (a->tls)
                SSL_CTX_free(a->tls);
        EVP_PKEY_free(a->nk);
        free(a);
}

static void load_reported(struct vg_cv_agent *a, const char *text)
{
        json_auto_t *j = json_loads(text, 0, NULL);
        const json_t *entries = json_object_get(j, "entries"), *x;
        const char *q = json_string_value(json_object_get(j, "quote"));
        size_t i, n = json_array_size(entries);

        if (q)
                snprintf(a->reported_quote_event, sizeof(a->reported_quote_event), "%s", q);
        if (n == 0)
                return;
        a->reported = calloc(n, sizeof(*a->reported));
        if (!a->reported)
                return;
        a->cap_reported = n;
        json_array_foreach (entries, i, x)
                if (json_is_integer(x) && json_integer_value(x) >= 0)
                        a->reported[a->n_reported++] = (uint64_t)json_integer_value(x);
}

/* NULL when nothing was reported (the agent is not failed, or was reactivated). */
static char *save_reported(const struct vg_cv_agent *a)
{
        if (!a->in_failure || (a->n_reported == 0 && !a->reported_quote_event[0]))
                return NULL;
        json_auto_t *entries = json_array();
        for (size_t i = 0; i < a->n_reported; i++)
                json_array_append_new(entries, json_integer((json_int_t)a->reported[i]));
        json_auto_t *j =
            json_pack("{s:s, s:O}", "quote", a->reported_quote_event, "entries", entries);
        return j ? json_dumps(j, JSON_COMPACT) : NULL;
}

static int agent_from_row(struct vg_verifier *v, struct vg_stmt *st, struct vg_cv_agent **out,
                          struct vg_error *err)
{
        struct vg_cv_agent *a = calloc(1, sizeof(*a));
        size_t len;

        if (!a)
                return -ENOMEM;
        a->v = v;
        a->id = col_dup(st, 0);
        a->ip = col_dup(st, 2);
        a->port = vg_stmt_column_int64(st, 3);
        a->v_b64 = col_dup(st, 4);
        a->state = (int)vg_stmt_column_int64(st, 5);
        a->public_key = col_dup(st, 6);
        a->tpm_policy_json = col_dup(st, 7);
        a->meta_data = col_dup(st, 8);
        a->ak_tpm = col_dup(st, 9);
        a->mtls_cert = col_dup(st, 10);
        a->revocation_key = col_dup(st, 11);
        a->accept_hash = col_dup(st, 12);
        a->accept_enc = col_dup(st, 13);
        a->accept_sign = col_dup(st, 14);
        a->supported_version = col_dup(st, 15);
        a->hash_alg_s = col_dup(st, 16);
        a->enc_alg_s = col_dup(st, 17);
        a->sign_alg_s = col_dup(st, 18);
        a->verifier_ip = col_dup(st, 19);
        a->verifier_port = vg_stmt_column_int64(st, 20);
        a->policy_name = col_dup(st, 21);
        a->severity_level = col_dup(st, 22);
        a->last_event_id = col_dup(st, 23);
        a->attestation_count = vg_stmt_column_int64(st, 24);
        a->last_received_quote = vg_stmt_column_int64(st, 25);
        a->last_successful_attestation = vg_stmt_column_int64(st, 26);
        a->v_delivered = vg_stmt_column_int64(st, 27) != 0;
        if (!vg_stmt_column_is_null(st, 28)) {
                a->have_clock = true;
                a->clock.clock = (uint64_t)vg_stmt_column_int64(st, 28);
                a->clock.reset_count = (uint32_t)vg_stmt_column_int64(st, 29);
                a->clock.restart_count = (uint32_t)vg_stmt_column_int64(st, 30);
                a->clock.safe = 1;
        }
        const char *ima = vg_stmt_column_text(st, 31, &len);
        if (ima && len) {
                _cleanup_free_ uint8_t *raw = NULL;
                size_t rlen;
                struct vg_error ierr = { 0 };
                if (vg_b64_decode(ima, len, VG_B64_STD, &raw, &rlen) < 0 ||
                    vg_ima_state_load(raw, rlen, &a->ima, &ierr) < 0)
                        vg_warn(VG_F("agent", a->id),
                                "stored IMA state unreadable (%s); starting from entry 0",
                                vg_error_str(&ierr));
        }
        const char *rep = vg_stmt_column_text(st, 32, NULL);
        if (rep && *rep)
                load_reported(a, rep);
        size_t qlen = 0;
        const void *quoted = vg_stmt_column_blob(st, 33, &qlen);
        struct vg_error qerr = { 0 };
        if (quoted && qlen && vg_measurements_unpack(quoted, qlen, &a->quoted, &qerr) < 0)
                vg_warn(VG_F("agent", a->id), "%s; ignored", vg_error_str(&qerr));
        if (!a->id || !a->ak_tpm) {
                vg_cv_agent_free(a);
                return vg_error_set(err, -EBADMSG, "agent row without id or ak_tpm");
        }
        *out = a;
        return 0;
}

int vg_cv_db_read_agent(struct vg_verifier *v, const char *id, bool any_verifier,
                        struct vg_cv_agent **out, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r;

        *out = NULL;
        r = vg_store_prepare(v->db,
                             any_verifier ? "SELECT " AGENT_COLUMNS
                                            " FROM agents WHERE agent_id = $1"
                                          : "SELECT " AGENT_COLUMNS
                                            " FROM agents WHERE agent_id = $1 AND verifier_id = $2",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, id);
        if (!any_verifier)
                vg_stmt_bind_text(st, 2, v->o.uuid);
        r = vg_stmt_step(st, err);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        r = agent_from_row(v, st, out, err);
        vg_stmt_reset(st);
        return r;
}

int vg_cv_db_load_agents(struct vg_verifier *v, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_cv_agent *a;
        int r;

        r = vg_store_prepare(
            v->db, "SELECT " AGENT_COLUMNS " FROM agents WHERE verifier_id = $1 ORDER BY agent_id",
            &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, v->o.uuid);
        while ((r = vg_stmt_step(st, err)) > 0) {
                if (agent_from_row(v, st, &a, err) < 0)
                        return err->code;
                if (vg_cv_link(v, a) < 0) {
                        vg_cv_agent_free(a);
                        return vg_error_set(err, -ENOMEM, "out of memory");
                }
        }
        return r;
}

static void bind_text_or_null(struct vg_stmt *st, int idx, const char *s)
{
        if (s)
                vg_stmt_bind_text(st, idx, s);
        else
                vg_stmt_bind_null(st, idx);
}

int vg_cv_db_insert_agent(struct vg_verifier *v, const struct vg_cv_agent *a, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r;

        r = vg_store_prepare(v->db,
                             "INSERT INTO agents (agent_id, verifier_id, ip, port, v, "
                             "operational_state, tpm_policy, meta_data, ak_tpm, mtls_cert, "
                             "revocation_key, accept_tpm_hash_algs, accept_tpm_encryption_algs, "
                             "accept_tpm_signing_algs, supported_version, verifier_ip, "
                             "verifier_port, runtime_policy_name, hash_alg, enc_alg, sign_alg) "
                             "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
                             "$15, $16, $17, $18, '', '', '')",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, a->id);
        vg_stmt_bind_text(st, 2, v->o.uuid);
        bind_text_or_null(st, 3, a->ip);
        vg_stmt_bind_int64(st, 4, a->port);
        bind_text_or_null(st, 5, a->v_b64);
        vg_stmt_bind_int64(st, 6, a->state);
        bind_text_or_null(st, 7, a->tpm_policy_json);
        bind_text_or_null(st, 8, a->meta_data);
        vg_stmt_bind_text(st, 9, a->ak_tpm);
        bind_text_or_null(st, 10, a->mtls_cert);
        bind_text_or_null(st, 11, a->revocation_key);
        bind_text_or_null(st, 12, a->accept_hash);
        bind_text_or_null(st, 13, a->accept_enc);
        bind_text_or_null(st, 14, a->accept_sign);
        bind_text_or_null(st, 15, a->supported_version);
        bind_text_or_null(st, 16, a->verifier_ip);
        vg_stmt_bind_int64(st, 17, a->verifier_port);
        bind_text_or_null(st, 18, a->policy_name);
        return vg_stmt_exec(st, err);
}

int vg_cv_db_delete_agent(struct vg_verifier *v, const char *id, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r = vg_store_prepare(v->db, "DELETE FROM agents WHERE agent_id = $1", &st, err);

        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, id);
        r = vg_stmt_exec(st, err);
        return r < 0 ? r : vg_stmt_changes(st) > 0 ? 0 : -ENOENT;
}

/* What one row update needs, copied from the agent by its owner thread. */
struct vg_cv_snap {
        struct vg_cv_snap *next;
        struct vg_cv_agent *a; /* NULL once the agent is gone */
        char *id;
        int state;
        char *public_key, *hash_alg_s, *enc_alg_s, *sign_alg_s, *severity_level, *last_event_id;
        int64_t attestation_count, last_received_quote, last_successful_attestation;
        bool v_delivered, have_clock;
        struct vg_clock_info clock;
        uint8_t *ima; /* vg_ima_state_save() */
        size_t ima_len;
        char *reported;
        uint8_t *pcrs; /* vg_measurements_pack() of a->quoted */
        size_t pcrs_len;
};

static void snap_clear(struct vg_cv_snap *s)
{
        free(s->id);
        free(s->public_key);
        free(s->hash_alg_s);
        free(s->enc_alg_s);
        free(s->sign_alg_s);
        free(s->severity_level);
        free(s->last_event_id);
        free(s->ima);
        free(s->reported);
        free(s->pcrs);
}

static void snap_free(struct vg_cv_snap *s)
{
        if (!s)
                return;
        snap_clear(s);
        free(s);
}

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

static struct vg_cv_snap *snap_take(const struct vg_cv_agent *a)
{
        struct vg_cv_snap *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->id = strdup(a->id);
        s->state = a->state;
        s->public_key = dup_or_null(a->public_key);
        s->hash_alg_s = dup_or_null(a->hash_alg_s);
        s->enc_alg_s = dup_or_null(a->enc_alg_s);
        s->sign_alg_s = dup_or_null(a->sign_alg_s);
        s->severity_level = dup_or_null(a->severity_level);
        s->last_event_id = dup_or_null(a->last_event_id);
        s->attestation_count = a->attestation_count;
        s->last_received_quote = a->last_received_quote;
        s->last_successful_attestation = a->last_successful_attestation;
        s->v_delivered = a->v_delivered;
        s->have_clock = a->have_clock;
        s->clock = a->clock;
        if (a->ima && vg_ima_state_save(a->ima, &s->ima, &s->ima_len) < 0)
                s->ima = NULL;
        s->reported = save_reported(a);
        if (a->quoted.n && vg_measurements_pack(&a->quoted, &s->pcrs, &s->pcrs_len) < 0)
                s->pcrs = NULL;
        if (!s->id) {
                snap_free(s);
                return NULL;
        }
        return s;
}

/* Queue s for a (under v->snap_lock): a snapshot still queued for a is replaced in place, so
 * the queue keeps one per agent, the newest. Returns what the caller frees. */
static struct vg_cv_snap *snap_queue_locked(struct vg_verifier *v, struct vg_cv_agent *a,
                                            struct vg_cv_snap *s)
{
        if (a->snap) {
                struct vg_cv_snap tmp = *a->snap;
                struct vg_cv_snap *next = a->snap->next;
                *a->snap = *s;
                a->snap->next = next;
                a->snap->a = a;
                *s = tmp;
                s->next = NULL;
                return s;
        }
        s->a = a;
        s->next = v->snaps;
        v->snaps = s;
        a->snap = s;
        return NULL;
}

void vg_cv_agent_publish(struct vg_cv_agent *a)
{
        struct vg_verifier *v = a->v;
        struct vg_cv_snap *s = snap_take(a), *old;

        a->dirty = false;
        if (!s) {
                vg_err(VG_F("agent", a->id), "out of memory: attestation state not written");
                return;
        }
        pthread_mutex_lock(&v->snap_lock);
        old = snap_queue_locked(v, a, s);
        pthread_mutex_unlock(&v->snap_lock);
        snap_free(old);
}

void vg_cv_agent_unqueue(struct vg_cv_agent *a)
{
        pthread_mutex_lock(&a->v->snap_lock);
        if (a->snap) {
                a->snap->a = NULL; /* written anyway: an UPDATE of a deleted row changes nothing */
                a->snap = NULL;
        }
        pthread_mutex_unlock(&a->v->snap_lock);
}

void vg_cv_snaps_free(struct vg_verifier *v)
{
        while (v->snaps) {
                struct vg_cv_snap *s = v->snaps;
                v->snaps = s->next;
                if (s->a)
                        s->a->snap = NULL;
                snap_free(s);
        }
}

static int write_state(struct vg_store *db, struct vg_stmt **stp, const struct vg_cv_snap *a,
                       struct vg_error *err)
{
        _cleanup_free_ char *ima = NULL;
        int r;

        if (!*stp) {
                r = vg_store_prepare(db,
                                     "UPDATE agents SET operational_state = $2, public_key = $3, "
                                     "hash_alg = $4, enc_alg = $5, sign_alg = $6, severity_level "
                                     "= $7, last_event_id = $8, attestation_count = $9, "
                                     "last_received_quote = $10, last_successful_attestation = "
                                     "$11, v_delivered = $12, tpm_clock = $13, tpm_reset_count = "
                                     "$14, tpm_restart_count = $15, ima_state = $16, "
                                     "reported = $17, quoted_pcrs = $18 WHERE agent_id = $1",
                                     stp, err);
                if (r < 0)
                        return r;
        }
        struct vg_stmt *st = *stp;
        if (a->ima)
                ima = vg_b64_encode(a->ima, a->ima_len, VG_B64_STD);
        vg_stmt_bind_text(st, 1, a->id);
        vg_stmt_bind_int64(st, 2, a->state);
        bind_text_or_null(st, 3, a->public_key);
        bind_text_or_null(st, 4, a->hash_alg_s);
        bind_text_or_null(st, 5, a->enc_alg_s);
        bind_text_or_null(st, 6, a->sign_alg_s);
        bind_text_or_null(st, 7, a->severity_level);
        bind_text_or_null(st, 8, a->last_event_id);
        vg_stmt_bind_int64(st, 9, a->attestation_count);
        vg_stmt_bind_int64(st, 10, a->last_received_quote);
        vg_stmt_bind_int64(st, 11, a->last_successful_attestation);
        vg_stmt_bind_int64(st, 12, a->v_delivered);
        if (a->have_clock) {
                vg_stmt_bind_int64(st, 13, (int64_t)a->clock.clock);
                vg_stmt_bind_int64(st, 14, a->clock.reset_count);
                vg_stmt_bind_int64(st, 15, a->clock.restart_count);
        } else {
                vg_stmt_bind_null(st, 13);
                vg_stmt_bind_null(st, 14);
                vg_stmt_bind_null(st, 15);
        }
        bind_text_or_null(st, 16, ima);
        bind_text_or_null(st, 17, a->reported);
        if (a->pcrs)
                vg_stmt_bind_blob(st, 18, a->pcrs, a->pcrs_len);
        else
                vg_stmt_bind_null(st, 18);
        return vg_stmt_exec(st, err);
}

int vg_cv_db_write_state(struct vg_verifier *v, struct vg_cv_agent *a, struct vg_error *err)
{
        vg_cv_agent_publish(a);
        return vg_cv_db_flush(v, err);
}

void vg_cv_agent_dirty(struct vg_cv_agent *a)
{
        struct vg_cv_worker *w = a->w;

        if (a->dirty)
                return;
        if (!w) { /* not polled by a worker (main thread owns it) */
                vg_cv_agent_publish(a);
                return;
        }
        if (w->n_dirty == w->cap_dirty) {
                size_t cap = w->cap_dirty ? w->cap_dirty * 2 : 256;
                struct vg_cv_agent **p = realloc(w->dirty, cap * sizeof(*p));
                if (!p) {
                        vg_cv_agent_publish(a);
                        return;
                }
                w->dirty = p;
                w->cap_dirty = cap;
        }
        w->dirty[w->n_dirty++] = a;
        a->dirty = true;
}

struct flush_ctx {
        struct vg_cv_snap *list;
};

static int flush_txn(struct vg_store *db, void *userdata, struct vg_error *err)
{
        struct flush_ctx *fc = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r;

        for (struct vg_cv_snap *s = fc->list; s; s = s->next)
                if ((r = write_state(db, &st, s, err)) < 0)
                        return r;
        return 0;
}

int vg_cv_db_flush(struct vg_verifier *v, struct vg_error *err)
{
        struct flush_ctx fc = { 0 };
        int r;

        pthread_mutex_lock(&v->snap_lock);
        fc.list = v->snaps;
        v->snaps = NULL;
        for (struct vg_cv_snap *s = fc.list; s; s = s->next)
                if (s->a)
                        s->a->snap = NULL;
        pthread_mutex_unlock(&v->snap_lock);
        if (!fc.list)
                return 0;
        r = vg_store_transact(v->db, flush_txn, &fc, err);
        if (r < 0) {
                /* Kept for the next try, unless a newer snapshot came meanwhile. */
                pthread_mutex_lock(&v->snap_lock);
                while (fc.list) {
                        struct vg_cv_snap *s = fc.list;
                        fc.list = s->next;
                        if (s->a && !s->a->snap) {
                                s->next = v->snaps;
                                v->snaps = s;
                                s->a->snap = s;
                        } else {
                                snap_free(s);
                        }
                }
                pthread_mutex_unlock(&v->snap_lock);
                return r;
        }
        while (fc.list) {
                struct vg_cv_snap *s = fc.list;
                fc.list = s->next;
                snap_free(s);
        }
        v->flushes++;
        return 0;
}

int vg_cv_db_policy_get(struct vg_verifier *v, const char *name, char **json, char **tpm_policy,
                        struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r = vg_store_prepare(
            v->db, "SELECT runtime_policy, tpm_policy FROM allowlists WHERE name = $1", &st, err);

        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, name);
        r = vg_stmt_step(st, err);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        if (json)
                *json = col_dup(st, 0);
        if (tpm_policy)
                *tpm_policy = col_dup(st, 1);
        vg_stmt_reset(st);
        return 0;
}

int vg_cv_policy_unwrap(const char *text, char **payload, struct vg_error *err)
{
        *payload = NULL;
        /* Cheap test first: a policy of 100k digests is not parsed twice to learn it is not an
         * envelope. */
        if (!strstr(text, "\"payloadType\"") || !strstr(text, "\"signatures\""))
                return 0;
        json_auto_t *j = json_loads(text, 0, NULL);
        const json_t *p = json_object_get(j, "payload");
        if (!json_is_string(p) || !json_object_get(j, "signatures") ||
            json_object_get(j, "digests"))
                return 0;
        uint8_t *raw = NULL;
        size_t len = 0;
        const char *b = json_string_value(p);
        if (vg_b64_decode(b, json_string_length(p), VG_B64_STD, &raw, &len) < 0 &&
            vg_b64_decode(b, json_string_length(p), VG_B64_URL, &raw, &len) < 0)
                return vg_error_set(err, -EINVAL, "DSSE envelope: payload is not base64");
        if (memchr(raw, 0, len)) {
                free(raw);
                return vg_error_set(err, -EINVAL, "DSSE envelope: the payload contains NUL");
        }
        char *s = realloc(raw, len + 1);
        if (!s) {
                free(raw);
                return -ENOMEM;
        }
        s[len] = '\0';
        *payload = s;
        return 1;
}

static size_t id_hash(const char *id)
{
        size_t h = 5381;

        for (; *id; id++)
                h = h * 33 + (uint8_t)*id;
        return h;
}

struct vg_cv_agent *vg_cv_find(struct vg_verifier *v, const char *id)
{
        if (!v->n_buckets)
                return NULL;
        for (struct vg_cv_agent *a = v->by_id[id_hash(id) & (v->n_buckets - 1)]; a; a = a->hnext)
                if (strcmp(a->id, id) == 0)
                        return a;
        return NULL;
}

int vg_cv_link(struct vg_verifier *v, struct vg_cv_agent *a)
{
        if (v->n_agents >= v->n_buckets) {
                size_t n = v->n_buckets ? v->n_buckets * 2 : 1024;
                struct vg_cv_agent **t = calloc(n, sizeof(*t));
                if (!t)
                        return -ENOMEM;
                for (struct vg_cv_agent *x = v->agents; x; x = x->next) {
                        size_t b = id_hash(x->id) & (n - 1);
                        x->hnext = t[b];
                        t[b] = x;
                }
                free(v->by_id);
                v->by_id = t;
                v->n_buckets = n;
        }
        size_t b = id_hash(a->id) & (v->n_buckets - 1);
        a->hnext = v->by_id[b];
        v->by_id[b] = a;
        a->next = v->agents;
        v->agents = a;
        v->n_agents++;
        return 0;
}

void vg_cv_unlink(struct vg_verifier *v, struct vg_cv_agent *a)
{
        if (v->n_buckets)
                for (struct vg_cv_agent **p = &v->by_id[id_hash(a->id) & (v->n_buckets - 1)]; *p;
                     p = &(*p)->hnext)
                        if (*p == a) {
                                *p = a->hnext;
                                break;
                        }
        for (struct vg_cv_agent **p = &v->agents; *p; p = &(*p)->next)
                if (*p == a) {
                        *p = a->next;
                        a->next = NULL;
                        v->n_agents--;
                        if (a->w)
                                a->w->n_agents--;
                        vg_cv_agent_unqueue(a);
                        return;
                }
}

/* What the row implies, computed once: the AK key, tpm_policy, the shared parsed runtime
 * policy, the PCR mask and the TLS context pinning the agent's certificate. */
int vg_cv_agent_prepare(struct vg_verifier *v, struct vg_cv_agent *a, struct vg_error *err)
{
        int r;

        vg_tpm_public_free(a->ak);
        a->ak = NULL;
        r = vg_tpm_public_parse_b64(a->ak_tpm, &a->ak, err);
        if (r < 0) {
                vg_error_prefix(err, "ak_tpm: ");
                return r;
        }
        vg_tpm_policy_free(a->tpm_policy);
        a->tpm_policy = NULL;
        a->mask = 0;
        if (a->tpm_policy_json && *a->tpm_policy_json) {
                r = vg_tpm_policy_parse(a->tpm_policy_json, &a->tpm_policy, err);
                if (r < 0) {
                        vg_error_prefix(err, "tpm_policy: ");
                        return r;
                }
                a->mask = a->tpm_policy->mask;
        }
        vg_ima_policy_unref(a->ima_policy);
        a->ima_policy = NULL;
        if (a->policy_name) {
                _cleanup_free_ char *json = NULL;
                r = vg_cv_db_policy_get(v, a->policy_name, &json, NULL, err);
                if (r == -ENOENT)
                        return vg_error_set(err, -ENOENT, "runtime policy %s does not exist",
                                            a->policy_name);
                if (r < 0)
                        return r;
                _cleanup_free_ char *inner = NULL;
                if ((r = vg_cv_policy_unwrap(json, &inner, err)) < 0) {
                        vg_error_prefix(err, "runtime policy %s: ", a->policy_name);
                        return r;
                }
                const char *pol = inner ? inner : json;
                r = vg_ima_policy_cache_get(v->policies, pol, strlen(pol), &a->ima_policy, err);
                if (r < 0) {
                        vg_error_prefix(err, "runtime policy %s: ", a->policy_name);
                        return r;
                }
                a->mask |= 1u << VG_PCR_IMA;
        }
        a->mask |= vg_cv_integrity_mask(v); /* boot PCRs for the baselines (integrity.c) */
        if ((r = vg_cv_boot_prepare(v, a, err)) < 0)
                return r;
        if (vg_hash_alg_from_name(a->hash_alg_s && *a->hash_alg_s ? a->hash_alg_s : "sha256",
                                  &a->hash_alg) < 0)
                a->hash_alg = VG_HASH_SHA256;
        if (!a->ima) {
                r = vg_ima_state_new(a->hash_alg, &a->ima);
                if (r < 0)
                        return vg_error_set(err, r, "cannot create the IMA state");
        }
        if (a->public_key && !a->nk) {
                BIO *b = BIO_new_mem_buf(a->public_key, -1);
                a->nk = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
                BIO_free(b);
                ERR_clear_error();
        }
        if (!a->tls && v->o.enable_agent_mtls) {
                if (!a->mtls_cert || strcmp(a->mtls_cert, "disabled") == 0)
                        return vg_error_set(err, -EINVAL,
                                            "mTLS certificate for agent is required!");
                struct vg_tls_client_config tc = {
                        .pinned_cert_pem = a->mtls_cert,
                        .cert_file = v->client_cert,
                        .key_file = v->client_key,
                        .key_password = v->client_key_password,
                };
                a->tls = vg_tls_client_ctx_new(&tc, err);
                if (!a->tls) {
                        vg_error_prefix(err, "mtls_cert: ");
                        return err->code ? err->code : -EINVAL;
                }
        }
        return 0;
}
