/* vigil: integrity events (issue 7 contract §1), modelled on GCE's cloud_integrity.IntegrityEvent:
 * constructors from C data, one validator for incoming JSON (vigil's form and GCE's log entry). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "hash.h"

#define VG_IEVENT_TYPE_NAME     "vigil.IntegrityEvent"
#define VG_IEVENT_GCE_TYPE_NAME "type.googleapis.com/cloud_integrity.IntegrityEvent"
/* Events larger than this are refused (the validator, the outbox). */
#define VG_IEVENT_MAX_BYTES (1024 * 1024)
/* Ids: eventId and agentId, in bytes. */
#define VG_IEVENT_MAX_ID 255

/* The report key of an event; the names are the JSON keys and the MQTT topic's last level. */
enum vg_ievent_kind {
        VG_IEVENT_EARLY_BOOT = 1, /* "earlyBootReportEvent": PCRs 0-3 and 7 */
        VG_IEVENT_LATE_BOOT,      /* "lateBootReportEvent": PCRs 4, 5, 8, 9, 11-14 */
        VG_IEVENT_RUNTIME,        /* "runtimeReportEvent": IMA */
        VG_IEVENT_RELEARN,        /* "relearnEvent" */
};

enum vg_ievent_severity {
        VG_IEVENT_INFO = 1,
        VG_IEVENT_NOTICE,
        VG_IEVENT_WARNING,
        VG_IEVENT_ERROR,
        VG_IEVENT_CRITICAL,
};

const char *vg_ievent_kind_name(enum vg_ievent_kind k);
int vg_ievent_kind_from_name(const char *s, enum vg_ievent_kind *out);
const char *vg_ievent_severity_name(enum vg_ievent_severity s);
int vg_ievent_severity_from_name(const char *s, enum vg_ievent_severity *out);
/* Whether PCR pcr belongs to early boot (0-3, 7) or late boot (4, 5, 8, 9, 11-14). */
bool vg_ievent_pcr_is_early(unsigned pcr);
bool vg_ievent_pcr_is_late(unsigned pcr);

/* One PCR value: {"hashAlgo": "SHA256", "pcrNum": "PCR_4", "value": "<base64>"}. */
struct vg_ievent_measurement {
        enum vg_hash_alg alg; /* SHA1, SHA256, SHA384 or SHA512 */
        unsigned pcr;         /* 0..23 */
        uint8_t value[64];    /* vg_hash_size(alg) bytes */
};

/* What every event carries. */
struct vg_ievent_header {
        const char *event_id;  /* NULL: a fresh random UUID */
        const char *agent_id;  /* required; no '/', '+', '#' or control characters (MQTT) */
        uint64_t boot_counter; /* the TPM reset count */
        int64_t time_ms;       /* Unix milliseconds; 0: now */
        enum vg_ievent_severity severity;
        const char *verifier_id; /* NULL: "default" */
        const json_t *labels;    /* object of strings, borrowed; NULL: {} */
};

/* earlyBootReportEvent (late false) or lateBootReportEvent (late true). Every measurement must
 * be of that phase's PCRs. Returns a new event (caller decrefs), or NULL with err. */
json_t *vg_ievent_boot_report(const struct vg_ievent_header *h, bool late, bool passed,
                              const struct vg_ievent_measurement *actual, size_t n_actual,
                              const struct vg_ievent_measurement *policy, size_t n_policy,
                              struct vg_error *err);

/* One IMA failure of a runtimeReportEvent. */
struct vg_ievent_runtime_failure {
        const char *type; /* "fnf" | "hash" | "template-hash" | "signature" | "policy" */
        const char *file;
        const char *expected; /* NULL: omitted */
        const char *found;    /* NULL: omitted */
};

/* summary: object of non-negative integers ({"good": 12, "fnf": 1, ...}), borrowed; NULL: {}. */
json_t *vg_ievent_runtime_report(const struct vg_ievent_header *h, bool passed,
                                 const struct vg_ievent_runtime_failure *failures, size_t n,
                                 const json_t *summary, struct vg_error *err);

/* relearnEvent: late-boot measurements only. reason NULL: "late boot measurements equal
 * known-good baseline <name>". */
json_t *vg_ievent_relearn(const struct vg_ievent_header *h, const char *baseline,
                          const struct vg_ievent_measurement *previous, size_t n_previous,
                          const struct vg_ievent_measurement *next, size_t n_next,
                          const char *reason, struct vg_error *err);

/* What the validator read from a valid event (pointers into the event's JSON). */
struct vg_ievent_info {
        const char *event_id;
        const char *agent_id;
        const char *time;
        enum vg_ievent_kind kind;
        enum vg_ievent_severity severity;
        uint64_t boot_counter;
        bool passed; /* policyEvaluationPassed; true for relearnEvent */
};

/*
 * Check an event in vigil's form against the contract: every field's type and spelling, exactly
 * one report key, the phase's PCRs, base64 values of the algorithm's length, RFC 3339 time.
 * Unknown keys are ignored (a newer verifier may add some). -EINVAL with err naming the JSON
 * path ("lateBootReportEvent.actualMeasurements[2].value: ..."). info may be NULL.
 */
int vg_ievent_validate(const json_t *ev, struct vg_ievent_info *info, struct vg_error *err);

/*
 * Parse and validate bytes from outside (a file line, an MQTT payload, a webhook body): vigil's
 * event, or GCE's log entry verbatim ({"severity", "jsonPayload": {"@type":
 * "type.googleapis.com/cloud_integrity.IntegrityEvent", ...}, "resource": {"labels":
 * {"instance_id"}}, "insertId", "timestamp"}), which is converted to vigil's form (agentId :=
 * instance_id, eventId := insertId, severity from the entry, the other resource labels as
 * labels, verifierId "gce"). GCE's other entries (startupEvent, shutdownEvent, ...) are -ENOTSUP.
 * Duplicate keys, more than VG_IEVENT_MAX_BYTES and anything malformed are -EINVAL.
 * *out: the event in vigil's form (caller decrefs).
 */
int vg_ievent_parse(const void *data, size_t len, json_t **out, struct vg_ievent_info *info,
                    struct vg_error *err);

/* One compact line of JSON, keys in the contract's order, no newline (caller frees). */
char *vg_ievent_dumps(const json_t *ev);

/* "2026-11-23T09:00:00.123Z" for Unix milliseconds; buf of at least 32 bytes. */
void vg_ievent_format_time(int64_t ms, char *buf, size_t len);
/* A random (version 4) UUID, 37 bytes with the NUL. */
void vg_ievent_new_uuid(char out[37]);
