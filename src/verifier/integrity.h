/* vigil-verifier: integrity events and boot baselines (issue 7): the durable outbox with its
 * sinks, per-agent boot evaluation in the Shielded VM model (TOFU, known-good relearning) and
 * runtimeReportEvents from IMA failures. The outbox and the database belong to the main thread;
 * the pollers hand their decisions over through a queue, as they hand over state snapshots. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "baseline.h"
#include "error.h"

struct vg_verifier;
struct vg_cv_agent;
struct vg_cv_failure;

/* Main thread, after the database is open and before any agent is prepared: read the
 * integrity_* and event_* options, create the outbox (tables in the verifier's store), attach
 * the sinks. Sets v->integrity (NULL when integrity_events is off). */
int vg_cv_integrity_new(struct vg_verifier *v, struct vg_error *err);
/* Main thread, after the workers are joined: append what they handed over, stop delivery. */
void vg_cv_integrity_free(struct vg_verifier *v);

/* The PCRs boot evaluation needs in every quote (0-5, 7-9, 11-14), 0 when it is off. */
uint32_t vg_cv_integrity_mask(const struct vg_verifier *v);

/* Owner (poller) of a: the PCR values of an authentic quote (a->quoted, boot counter set).
 * When the boot counter is one this poller has not handed over yet, the values go to the main
 * thread, which evaluates that boot once (first attestation, reboot, verifier restart). */
void vg_cv_integrity_quote(struct vg_cv_agent *a);
/* Owner of a: the events of f marked fresh (reported now) that are IMA failures become one
 * runtimeReportEvent. */
void vg_cv_integrity_runtime(struct vg_cv_agent *a, const struct vg_cv_failure *f);

/* Main thread: the agent's late-boot baseline was relearned onto known-good baseline `name`
 * through the API (POST /agents/{id}/relearn): emit a relearnEvent. */
void vg_cv_integrity_relearned(struct vg_verifier *v, const char *agent_id, const char *name,
                               const struct vg_measurements *previous,
                               const struct vg_measurements *actual, const char *actor,
                               const char *cause_event_id);

/* The labels of an agent: its meta_data's "labels" object, string values only (others are
 * skipped); {} when there is none. Never NULL unless out of memory. */
json_t *vg_cv_integrity_labels(const char *meta_data);
