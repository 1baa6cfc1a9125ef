/* vigil: known-good boot measurements (the Shielded VM model): sets of (hashAlgo, pcrNum, value),
 * named known-good late-boot baselines, per-agent baselines (learned on first use or golden), the
 * "do these late-boot measurements equal a known-good baseline, which?" match, and the
 * append-only, hash-chained journal of every change; all on vg_store (SQLite and PostgreSQL). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"
#include "hash.h"

struct vg_store;
struct vg_pcr_values;

/* Early boot: PCRs 0-3 and 7. Late boot: PCRs 4, 5, 8, 9 and 11-14 (those present). */
bool vg_pcr_early_boot(unsigned pcr);
bool vg_pcr_late_boot(unsigned pcr);

/* ---- measurement sets -------------------------------------------------------------------- */

#define VG_MEASUREMENT_PCR_MAX 24

struct vg_measurement {
        enum vg_hash_alg alg;
        unsigned pcr;                    /* 0..23 */
        uint8_t value[VG_HASH_MAX_SIZE]; /* vg_hash_size(alg) bytes */
};

/* At most one value per (alg, pcr); kept sorted by bank, then PCR. A zeroed struct is empty. */
struct vg_measurements {
        struct vg_measurement *m;
        size_t n, cap;
        int64_t time_ms;      /* when they were measured (a quote) or recorded; 0: unknown */
        int64_t boot_counter; /* the TPM's resetCount with them; -1 or 0: unknown */
};

void vg_measurements_clear(struct vg_measurements *s);
/* Set (or replace) one value; -EINVAL for pcr > 23. */
int vg_measurements_set(struct vg_measurements *s, enum vg_hash_alg alg, unsigned pcr,
                        const uint8_t *value);
/* The value of (alg, pcr), or NULL. */
const uint8_t *vg_measurements_get(const struct vg_measurements *s, enum vg_hash_alg alg,
                                   unsigned pcr);
int vg_measurements_copy(struct vg_measurements *dst, const struct vg_measurements *src);
/* dst := the entries of src whose PCR keep() accepts (vg_pcr_late_boot ...). *ignored (may be
 * NULL) gets how many were left out. */
int vg_measurements_filter(struct vg_measurements *dst, const struct vg_measurements *src,
                           bool (*keep)(unsigned pcr), size_t *ignored);
/* Same entries (times are not compared). */
bool vg_measurements_equal(const struct vg_measurements *a, const struct vg_measurements *b);
/* Every PCR of every bank a quote's pcrblob carries (verified values: call after
 * vg_quote_verify). Replaces the contents; time and boot counter are left to the caller. */
int vg_measurements_from_pcrs(struct vg_measurements *s, const struct vg_pcr_values *pcrs);

/*
 * Parse measurements. Accepted shapes:
 *   [{"hashAlgo": "SHA256", "pcrNum": "PCR_4", "value": "<base64>"}, ...]   (GCE's; hashAlgo
 *       any case, pcrNum also "4" or 4, value base64 or hex of the bank's size)
 *   {"measurements": [...]}, {"policyMeasurements": [...]} or {"actualMeasurements": [...]}
 *   a lateBootReportEvent / earlyBootReportEvent object, a vigil or GCE IntegrityEvent, a GCE log
 *   entry (jsonPayload...): their actualMeasurements
 *   GCE's Firestore known_good_measurements document: {"PCR_4": {"hashAlgo", "pcrNum",
 *   "value"}, ...}
 * err names what is wrong with its JSON path ("measurements[2].value: ...").
 */
int vg_measurements_from_json(const json_t *j, struct vg_measurements *out, struct vg_error *err);
/* The same from text; what (a file name) prefixes messages ("FILE: line 3: ..."). */
int vg_measurements_parse(const char *text, size_t len, const char *what,
                          struct vg_measurements *out, struct vg_error *err);
/* [{"hashAlgo": "SHA256", "pcrNum": "PCR_4", "value": "<base64>"}, ...] in canonical order. */
json_t *vg_measurements_json(const struct vg_measurements *s);
/* {"sha256": {"4": "<hex>", ...}, ...}: the values per bank. */
json_t *vg_measurements_banks_json(const struct vg_measurements *s);

/* A compact binary form (for a BYTEA column): "VGM1", time, boot counter, then per entry the
 * TPM algorithm id, PCR, value. unpack checks every length. */
int vg_measurements_pack(const struct vg_measurements *s, uint8_t **out, size_t *len);
int vg_measurements_unpack(const void *data, size_t len, struct vg_measurements *out,
                           struct vg_error *err);

/* ---- the store --------------------------------------------------------------------------- */

/* Create or upgrade the tables (component "baseline"): known_good_baselines,
 * agent_baselines, baseline_journal. */
int vg_baseline_migrate(struct vg_store *db, struct vg_error *err);

/* Letters, digits, '-', '_' and '.', 1-128 characters, not "history". */
bool vg_baseline_name_valid(const char *name);

struct vg_baseline {
        char *name;
        char *source; /* "agent:<uuid>", "import:<file>" */
        char *time;   /* RFC 3339 UTC with milliseconds */
        struct vg_measurements late;
};
void vg_baseline_clear(struct vg_baseline *b);
json_t *vg_baseline_json(const struct vg_baseline *b); /* {name, source, time, measurements} */

/*
 * Add a known-good baseline of late-boot measurements and journal it (action "add" when the
 * source starts with "agent:", else "import") in one transaction. Only late-boot PCRs are kept;
 * *ignored (may be NULL) gets how many others were dropped. -EEXIST when the name is taken,
 * -EINVAL for a bad name or no late-boot measurement at all.
 */
int vg_baseline_add(struct vg_store *db, const char *name, const struct vg_measurements *m,
                    const char *source, const char *actor, size_t *ignored, struct vg_error *err);
/* -ENOENT when there is none. */
int vg_baseline_get(struct vg_store *db, const char *name, struct vg_baseline *out,
                    struct vg_error *err);
/* All, by name. *out is an array of *n (free with vg_baseline_list_free). */
int vg_baseline_list(struct vg_store *db, struct vg_baseline **out, size_t *n,
                     struct vg_error *err);
void vg_baseline_list_free(struct vg_baseline *list, size_t n);
/* Remove and journal ("rm"); -ENOENT. */
int vg_baseline_remove(struct vg_store *db, const char *name, const char *actor,
                       struct vg_error *err);

/*
 * Do these measurements' late-boot values equal a known-good baseline? A baseline matches
 * when, for each bank it has (and at least one), the actual late-boot PCRs of that bank are
 * exactly its PCRs with exactly its values; banks it does not have are not looked at, and
 * early-boot PCRs never count. 1 with *name (new string) naming the first match by name, 0
 * when none matches.
 */
int vg_baseline_match(struct vg_store *db, const struct vg_measurements *actual, char **name,
                      struct vg_error *err);

/* ---- per-agent baselines ----------------------------------------------------------------- */

enum vg_agent_baseline_kind {
        VG_AGENT_BASELINE_LEARNED, /* trust on first use, or relearned onto a known-good one */
        VG_AGENT_BASELINE_GOLDEN,  /* given by the operator */
};

struct vg_agent_baseline {
        char *agent_id;
        enum vg_agent_baseline_kind kind;
        struct vg_measurements early, late;
        char *source; /* "tofu", "golden", "known-good:<name>" */
        char *time;
};
void vg_agent_baseline_clear(struct vg_agent_baseline *b);
json_t *vg_agent_baseline_json(const struct vg_agent_baseline *b);

int vg_agent_baseline_get(struct vg_store *db, const char *agent_id, struct vg_agent_baseline *out,
                          struct vg_error *err);
/* Trust on first use: when the agent has no baseline, record the early- and late-boot part of
 * m as learned and journal "learn". 1 learned, 0 when it already had one (nothing changed). */
int vg_agent_baseline_learn(struct vg_store *db, const char *agent_id,
                            const struct vg_measurements *m, const char *actor,
                            struct vg_error *err);
/* A golden baseline (replaces any), journaled "golden". */
int vg_agent_baseline_set_golden(struct vg_store *db, const char *agent_id,
                                 const struct vg_measurements *m, const char *actor,
                                 struct vg_error *err);

/*
 * Relearn the agent's late-boot baseline onto its actual measurements if, and only if, their
 * late-boot part equals a known-good baseline; early boot is kept as it was (never relearned).
 * Journaled "relearn" with eventId (may be NULL) in the entry, all in one transaction.
 * 1 relearned (*baseline: the known-good name), 0 not (reason says why: no late-boot values,
 * nothing known-good matches), < 0 on error. previous (may be NULL) receives the late-boot
 * baseline the agent had.
 */
int vg_agent_baseline_relearn(struct vg_store *db, const char *agent_id,
                              const struct vg_measurements *actual, const char *actor,
                              const char *event_id, char **baseline,
                              struct vg_measurements *previous, char **reason,
                              struct vg_error *err);

/* ---- the journal ------------------------------------------------------------------------- */

/*
 * baseline_journal: seq (1, 2, ...), time, actor, action (add|import|rm|learn|relearn|golden),
 * subject (a baseline name or an agent id), before and after (JSON or null), prev_hash (the
 * previous entry's hash; 64 zeros for the first) and hash = lowercase hex of
 * SHA-256(prev_hash || canonical JSON of {seq, time, actor, action, subject, before, after,
 * prev_hash}), the canonical JSON being compact with sorted keys.
 */
struct vg_journal_entry {
        int64_t seq;
        char *time, *actor, *action, *subject;
        json_t *before, *after; /* json null when none */
        char prev_hash[65], hash[65];
};
void vg_journal_entries_free(struct vg_journal_entry *e, size_t n);
json_t *vg_journal_entry_json(const struct vg_journal_entry *e);

/* Append (inside the caller's transaction or on its own). before/after may be NULL. */
int vg_journal_append(struct vg_store *db, const char *actor, const char *action,
                      const char *subject, const json_t *before, const json_t *after,
                      struct vg_error *err);
/* Every entry, by seq. */
int vg_journal_read(struct vg_store *db, struct vg_journal_entry **out, size_t *n,
                    struct vg_error *err);

/*
 * Check the chain of entries (as read): sequence numbers 1, 2, ... without gaps, each prev_hash
 * equal to the previous entry's hash, each hash recomputed. 0 when it holds; otherwise 1 with
 * *first_bad the seq of the first entry that breaks it and problem saying how.
 */
int vg_journal_verify(const struct vg_journal_entry *e, size_t n, int64_t *first_bad, char *problem,
                      size_t problem_len);
/* The hash an entry should have. */
int vg_journal_entry_hash(const struct vg_journal_entry *e, char out[65]);

/* "2026-11-23T09:00:00.123Z" for ms since the epoch. */
void vg_rfc3339_ms(int64_t ms, char out[32]);
int64_t vg_now_ms(void);
