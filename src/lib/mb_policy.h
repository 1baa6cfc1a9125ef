/* vigil: Keylime's measured-boot policy (the "refstate" of keylime/mba/elchecking/example.py) as
 * data: a strict JSON reader and writer, native evaluation against a parsed event log (every
 * failure, each naming the event), and the generator of `keylime-policy create measured-boot`. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "eventlog.h"

/* PCRs the example policy reads (get_relevant_pcrs: 0-9 and 14). A verifier must have all of
 * them in the quote before it evaluates a refstate. */
#define VG_MB_POLICY_RELEVANT_PCRS 0x43FFu

/* A parsed refstate. `{}` is valid and means "no measured-boot policy" (replay only). */
struct vg_mb_policy;

/* Parse a refstate. Strict: every key is known, digests are "0x" + lowercase hex of their
 * algorithm's size, GUIDs are canonical, kernel_cmdline regexes compile (PCRE2). Errors name the
 * JSON path: "refstate.kernels[0].kernel_authcode_sha256: expected \"0x\" and 64 lowercase hex
 * digits, found \"0xAB\"". -EINVAL (bad refstate), -ENOMEM. */
int vg_mb_policy_from_json(const json_t *refstate, struct vg_mb_policy **out, struct vg_error *err);
int vg_mb_policy_parse(const char *text, size_t len, struct vg_mb_policy **out,
                       struct vg_error *err);
/* Read and parse a file (errors prefixed with the path). */
int vg_mb_policy_load(const char *path, struct vg_mb_policy **out, struct vg_error *err);
void vg_mb_policy_free(struct vg_mb_policy *p);

/* Whether the refstate was `{}` (evaluation always passes). */
bool vg_mb_policy_is_empty(const struct vg_mb_policy *p);
bool vg_mb_policy_has_secureboot(const struct vg_mb_policy *p);
size_t vg_mb_policy_kernel_count(const struct vg_mb_policy *p);

/* The refstate back as JSON, in Keylime's key order (what was read; `{}` for an empty one). */
json_t *vg_mb_policy_to_json(const struct vg_mb_policy *p);

/* ---------------------------------------------------------------------------------------- */
/* Evaluation. Every failure is reported, not only the first (Keylime stops at the first). */

struct vg_mb_failure {
        int64_t event; /* index of the event concerned, -1 for a failure about the whole log */
        uint32_t pcr;  /* its PCR (when event >= 0) */
        uint32_t type; /* its type (when event >= 0) */
        /* One sentence with the context: "PCR 4: event 37 EV_EFI_BOOT_SERVICES_APPLICATION:
         * kernel Authenticode digest sha256:ab12... is not among the policy's kernels". */
        char *msg;
};

struct vg_mb_result {
        size_t n_failures;
        struct vg_mb_failure *failures;
};

/* Evaluate log against p. 0 when it passes; -EBADMSG when it fails, with the failures in res
 * (err holds the first). -ENOMEM. res must be zeroed (or cleared) beforehand. */
int vg_mb_policy_evaluate(const struct vg_mb_policy *p, const struct vg_evlog *log,
                          struct vg_mb_result *res, struct vg_error *err);
void vg_mb_result_clear(struct vg_mb_result *res);

/* ---------------------------------------------------------------------------------------- */
/* Generation (keylime/policy/create_mb_policy.py). */

struct vg_mb_create_opts {
        /* -i/--without-secureboot: allowed to build a policy from a log with Secure Boot off
         * (then the kernel is pinned by vmlinuz_plain_sha256 instead of its Authenticode digest).
         */
        bool without_secureboot;
        /* Called with each warning (may be NULL). */
        void (*warn)(const char *msg, void *ud);
        void *ud;
};

/* Build a refstate from a known-good log. -EINVAL names what the log lacks ("Secure Boot is off
 * in this log: pass --without-secureboot", "PCR 4 has 5 boot applications, expected 3 or 4").
 * The result is Keylime's JSON (same keys, same order, same "0x" digests). */
int vg_mb_policy_create(const struct vg_evlog *log, const struct vg_mb_create_opts *opts,
                        json_t **out, struct vg_error *err);

/* Python's re.escape() of s (what Keylime writes as kernel_cmdline). Malloc'd. */
char *vg_mb_regex_escape(const char *s, size_t len);
