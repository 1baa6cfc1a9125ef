/* vigil-verifier: measured boot (Keylime's mbpolicies, API 2.3+): the named refstates and their
 * REST routes, the agent's measured-boot policy, and the evaluation of a quote's UEFI event log
 * (parse, replay against the quoted PCRs, refstate), each failure a "measured_boot.*" event. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "baseline.h"
#include "error.h"
#include "hash.h"

struct vg_verifier;
struct vg_cv_agent;
struct vg_cv_failure;

/* PCRs whose replay is compared with the quote: Keylime's MEASUREDBOOT_PCRS (0-9, 11-15)
 * intersected with the refstate's relevant PCRs (VG_MB_POLICY_RELEVANT_PCRS: 0-9, 14). */
#define VG_CV_BOOT_REPLAY_PCRS 0x43FFu

/* Register GET /v{version}/mbpolicies[/{name}], POST, PUT, DELETE /v{version}/mbpolicies/{name}.
 * Main thread, at startup. */
int vg_cv_boot_api_register(struct vg_verifier *v);

/*
 * POST /agents/{id}: read mb_policy_name and mb_policy (a refstate as a JSON string, as
 * keylime_tenant sends it, or an object) from the body and attach them to a (not yet stored):
 * an inline refstate is checked and stored under mb_policy_name (or the agent id); a name alone
 * must exist. 0, or the HTTP status to refuse with (err says why). Main thread.
 */
int vg_cv_boot_add(struct vg_verifier *v, struct vg_cv_agent *a, const char *body, size_t len,
                   struct vg_error *err);
/* The agent could not be stored after vg_cv_boot_add: drop the refstate it stored, if any. */
void vg_cv_boot_add_undo(struct vg_verifier *v, struct vg_cv_agent *a);
/* The agent row exists: record its mb_policy_name in it. */
int vg_cv_boot_add_done(struct vg_verifier *v, struct vg_cv_agent *a, struct vg_error *err);
/* DELETE /agents/{id} succeeded: drop the refstate named after the agent (Keylime does). */
void vg_cv_boot_agent_deleted(struct vg_verifier *v, const char *id);

/* vg_cv_agent_prepare: (re)load the agent's refstate through the shared cache (parsed once per
 * checksum) and add the PCRs it needs to a->mask. Main thread. */
int vg_cv_boot_prepare(struct vg_verifier *v, struct vg_cv_agent *a, struct vg_error *err);
/* Whether the agent has a measured-boot policy (has_mb_refstate). */
bool vg_cv_boot_has_policy(const struct vg_cv_agent *a);
/* vg_cv_agent_free. */
void vg_cv_boot_agent_free(struct vg_cv_agent *a);

/*
 * The owner (poller) with an authentic quote: when the agent has a refstate and PCR 0 was
 * quoted, decode mb_b64 (the agent's mb_measurement_list; NULL when it sent none), parse it
 * (only when it changed since the last quote), replay it against the quoted PCRs of bank alg
 * and evaluate the refstate. Every problem becomes a "measured_boot.*" event in f.
 */
void vg_cv_boot_check(struct vg_cv_agent *a, const char *mb_b64,
                      const struct vg_measurements *quoted, enum vg_hash_alg alg,
                      struct vg_cv_failure *f);

/* Statistics for tests and benches: event logs parsed, refstates parsed. */
size_t vg_cv_boot_log_parses(const struct vg_cv_agent *a);
