/* vigil: IMA runtime measurement lists checked against a Keylime runtime policy: the ASCII log
 * parser, template-hash check, incremental PCR 10 replay, allowlist/exclude lookup, ima-sig
 * signatures and keyrings (reference/keylime.md §5, §6). Pure: bytes in, verdicts out. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"
#include "hash.h"

/* ---- Entries ------------------------------------------------------------------------------- */

enum vg_ima_template {
        VG_IMA_TPL_IMA, /* legacy "ima": d|n, SHA-1 or MD5 digest, name padded to 256 bytes */
        VG_IMA_TPL_NG,  /* "ima-ng": d-ng|n-ng */
        VG_IMA_TPL_SIG, /* "ima-sig": d-ng|n-ng|sig */
        VG_IMA_TPL_BUF, /* "ima-buf": d-ng|n-ng|buf */
};

/* One line of ascii_runtime_measurements, decoded. Pointers point into the parser's scratch
 * and stay valid until the next entry is parsed. */
struct vg_ima_entry {
        uint64_t line; /* 1-based line number in the text given to the parser */
        unsigned pcr;
        enum vg_ima_template tpl;
        uint8_t template_hash[VG_HASH_MAX_SIZE]; /* column 2, as given */
        size_t template_hash_len;
        bool violation; /* an all-zero template hash: a ToMToU/open-writers record */
        /* The file digest's algorithm as written ("sha256", "md5", "sm3_256"...; "sha1" or "md5"
         * for legacy "ima"); digest_alg is VG_HASH_ALG_COUNT when it is none of vg_hash's. */
        const char *digest_alg_name;
        enum vg_hash_alg digest_alg;
        bool digest_md5; /* an MD5 digest (16 bytes), in any template */
        uint8_t digest[VG_HASH_MAX_SIZE];
        size_t digest_len;
        const char *path; /* n-ng, NUL-terminated */
        size_t path_len;
        const uint8_t *sig; /* ima-sig: the signature_v2_hdr bytes, or NULL/0 */
        size_t sig_len;
        const uint8_t *buf; /* ima-buf: the buffer bytes */
        size_t buf_len;
        const uint8_t *template_data; /* the bytes the template hash is taken over */
        size_t template_data_len;
};

/* ---- Runtime policy ------------------------------------------------------------------------ */

/*
 * A parsed Keylime runtime policy (JSON v1, reference/keylime.md §5): digests by path, exclude
 * regexes (PCRE2, Python re.match semantics: anchored at the start only), keyrings, ima-buf,
 * ignored_keyrings, log_hash_alg and verification keys. Immutable once loaded and reference
 * counted, so one parsed copy is shared by every agent that uses it.
 */
struct vg_ima_policy;

/* Runtime policy JSON v1; every required key checked, each problem named with its JSON path
 * ("digests./usr/bin/bash[0]: not a hex digest of 40..128 characters"). -EINVAL on error. */
int vg_ima_policy_parse(const char *json, size_t len, struct vg_ima_policy **out,
                        struct vg_error *err);
/* A legacy flat allowlist (`<hex> <path>` per line, `%keyring:<name>` paths into keyrings, `#`
 * comments) and an optional exclude list (one regex per line; NULL/0 for none). */
int vg_ima_policy_from_lists(const char *allowlist, size_t allowlist_len, const char *exclude,
                             size_t exclude_len, struct vg_ima_policy **out, struct vg_error *err);
struct vg_ima_policy *vg_ima_policy_ref(struct vg_ima_policy *p);
void vg_ima_policy_unref(struct vg_ima_policy *p);
VG_DEFINE_CLEANUP_FUNC(struct vg_ima_policy, vg_ima_policy_unref)
#define _cleanup_ima_policy_ _cleanup_(vg_ima_policy_unrefp)
/* SHA-256 of the bytes it was parsed from (for the flat form: of allowlist, 0x00, exclude). */
const uint8_t *vg_ima_policy_checksum(const struct vg_ima_policy *p);
size_t vg_ima_policy_digest_count(const struct vg_ima_policy *p); /* (path, digest) pairs */
size_t vg_ima_policy_exclude_count(const struct vg_ima_policy *p);
/* ima.log_hash_alg: the algorithm of the log's template-hash column (sha1 for flat lists). */
enum vg_hash_alg vg_ima_policy_log_hash_alg(const struct vg_ima_policy *p);
/* Serialize as runtime policy JSON v1 (new string), e.g. for `vigil policy convert`. */
int vg_ima_policy_to_json(const struct vg_ima_policy *p, char **out, struct vg_error *err);

/*
 * Parsed policies shared by checksum: get returns a new reference to the cached copy of the
 * policy whose bytes hash to sha256(json), parsing it only the first time. Unused entries are
 * dropped once no agent holds them (the cache keeps at most `keep_unused` of them).
 */
struct vg_ima_policy_cache;
int vg_ima_policy_cache_new(size_t keep_unused, struct vg_ima_policy_cache **out);
void vg_ima_policy_cache_free(struct vg_ima_policy_cache *c);
int vg_ima_policy_cache_get(struct vg_ima_policy_cache *c, const char *json, size_t len,
                            struct vg_ima_policy **out, struct vg_error *err);
size_t vg_ima_policy_cache_parses(const struct vg_ima_policy_cache *c); /* for tests, benches */

/* ---- Per-agent state (incremental attestation) ---------------------------------------------- */

/*
 * What the verifier keeps between quotes of one agent: the entry to ask for next
 * (ima_ml_entry), the PCR 10 value of the bank reached at that entry, and the keys learned
 * from ima-buf keyring measurements. A fresh state is all zero (entry 0, PCR 0...0).
 */
struct vg_ima_state;
int vg_ima_state_new(enum vg_hash_alg bank, struct vg_ima_state **out);
void vg_ima_state_free(struct vg_ima_state *st);
VG_DEFINE_CLEANUP_FUNC(struct vg_ima_state, vg_ima_state_free)
/* Back to entry 0, PCR zero, no learned keys (agent reboot, or any IMA failure). */
void vg_ima_state_reset(struct vg_ima_state *st);
uint64_t vg_ima_state_next_entry(const struct vg_ima_state *st);
enum vg_hash_alg vg_ima_state_bank(const struct vg_ima_state *st);
const uint8_t *vg_ima_state_pcr(const struct vg_ima_state *st);
size_t vg_ima_state_learned_keys(const struct vg_ima_state *st); /* keys from ima-buf entries */
/* A compact, versioned byte string for the database, and back (-EBADMSG if it does not parse). */
int vg_ima_state_save(const struct vg_ima_state *st, uint8_t **out, size_t *len);
int vg_ima_state_load(const uint8_t *data, size_t len, struct vg_ima_state **out,
                      struct vg_error *err);

/* ---- Verification -------------------------------------------------------------------------- */

enum vg_ima_failure_kind {
        VG_IMA_FAIL_PARSE,          /* malformed line, or a template other than the four */
        VG_IMA_FAIL_PCR,            /* an entry for a PCR other than 10 */
        VG_IMA_FAIL_TEMPLATE_HASH,  /* column 2 != H(template data) */
        VG_IMA_FAIL_NOT_IN_POLICY,  /* "fnf": path neither excluded nor in digests */
        VG_IMA_FAIL_HASH,           /* path known, digest not allowed */
        VG_IMA_FAIL_SIGNATURE,      /* ima-sig signature did not verify and no allowlist match */
        VG_IMA_FAIL_KEYRING,        /* ima-buf keyring key not allowed */
        VG_IMA_FAIL_VIOLATION,      /* ToMToU/open-writers entry while violations fail */
        VG_IMA_FAIL_BOOT_AGGREGATE, /* boot_aggregate digest not allowed */
        VG_IMA_FAIL_PCR_MISMATCH,   /* replay never reached the quoted PCR 10 */
        VG_IMA_FAIL_ENTRY_NUMBER,   /* ima_measurement_list_entry neither 0 nor the one asked */
};
const char *vg_ima_failure_kind_str(enum vg_ima_failure_kind k); /* "fnf", "hash", ... */

struct vg_ima_failure {
        enum vg_ima_failure_kind kind;
        uint64_t entry;       /* absolute entry number in the agent's list (0-based) */
        uint64_t line;        /* 1-based line number in the text verified */
        const char *path;     /* may be NULL */
        const char *expected; /* human-readable, e.g. the allowed digests; may be NULL */
        const char *found;    /* e.g. "sha256:ab12..."; may be NULL */
        const char *message;  /* one sentence: "File not found in allowlist: /root/bad-script.sh" */
};

/* Keylime's error summary: `template-hash N fnf N hash N good N`. Each field counts entries:
 * template_hash, fnf, hash (file and ima-buf lookups, boot_aggregate included), keyring,
 * parse, pcr (not PCR 10) and violation_failed are failing entries of that kind; good passed
 * every check; excluded matched an exclude; violation is every ToMToU/open-writers entry seen
 * (they fail only with fail_on_violations); sig is unused (a bad signature falls back to the
 * allowlist, so it ends as fnf or hash). */
struct vg_ima_counts {
        uint64_t template_hash, fnf, hash, good;
        uint64_t sig, keyring, violation, excluded, parse;
        uint64_t pcr, violation_failed;
};

struct vg_ima_options {
        /* ToMToU/open-writers (violation) entries: false (default) accepts them, extending
         * 0xFF... into the replay as the kernel does; true makes each one a failure. (Keylime's
         * ignore_tomtou_errors works backwards since 2022; this does what it says.) */
        bool fail_on_violations;
        /* Hash algorithm of column 2; NULL/unset means the policy's ima.log_hash_alg (sha1). */
        bool log_hash_alg_set;
        enum vg_hash_alg log_hash_alg;
        /* Boot aggregates computed from a UEFI log, added to the policy's (may be NULL/0); each
         * is zero-padded after its digest size (20 bytes for sha1, 32 for sha256...). */
        const uint8_t (*boot_aggregates)[VG_HASH_MAX_SIZE];
        size_t n_boot_aggregates;
        /* Called once per failing entry, in log order (may be NULL). */
        void (*on_failure)(const struct vg_ima_failure *f, void *userdata);
        void *userdata;
};

struct vg_ima_result {
        bool pass;            /* no failure, and (when a PCR was given) the replay matched */
        bool pcr_matched;     /* the quoted PCR 10 was reached before or after some entry */
        uint64_t match_entry; /* absolute entry number just after the match: ask for it next */
        uint64_t entries;     /* entries read from the text */
        struct vg_ima_counts counts;
};

/*
 * Verify `log` (the ASCII list from absolute entry `first_entry` on, as the agent sent it)
 * against policy p (may be NULL: only parse, template hashes and replay), continuing from st.
 * When quoted_pcr10 is non-NULL (st's bank size), the running PCR is compared before the walk
 * and after every entry; the state then moves to the *last* matching point (entries after it
 * are checked now, and asked for again next time). Without a match the state is not moved
 * and res->pcr_matched is false: whether that fails the agent (the log may be lagging) is the
 * caller's decision; see reference/keylime.md §6 (on_failure still hears of it, as
 * VG_IMA_FAIL_PCR_MISMATCH). Any failing entry resets nothing here either. Without
 * quoted_pcr10 the state moves to the end of the text (offline verification).
 * first_entry must be st's next entry or 0; 0 when st expects more means the agent started
 * over (reboot): st is reset first. Anything else is VG_IMA_FAIL_ENTRY_NUMBER, nothing walked.
 * Policy p NULL: no lookups, but ima-buf keys are still learned. Keys measured by ima-buf into
 * a keyring that is neither ignored nor excluded are learned into st once their digest is in
 * the policy's keyrings; ima-sig signatures verify against them and the policy's
 * verification-keys. Excluded paths (and keyrings) are skipped entirely.
 * Returns 0 when the text could be walked (res says pass or fail), < 0 for API misuse.
 */
int vg_ima_verify(const struct vg_ima_policy *p, struct vg_ima_state *st, const char *log,
                  size_t len, uint64_t first_entry, const uint8_t *quoted_pcr10,
                  const struct vg_ima_options *opts, struct vg_ima_result *res,
                  struct vg_error *err);

/* ---- Parsing alone (policy generation, tests, fuzzing) ------------------------------------- */

typedef int (*vg_ima_entry_fn)(const struct vg_ima_entry *e, void *userdata);
/* Call fn (may be NULL: only check) for each entry of an ASCII list; stops at the first
 * malformed line with -EBADMSG naming its line number and what was wrong, or when fn returns
 * < 0 (that value). Empty lines are skipped (but counted in line numbers). */
int vg_ima_parse_log(const char *log, size_t len, vg_ima_entry_fn fn, void *userdata,
                     struct vg_error *err);
