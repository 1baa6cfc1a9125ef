/* vigil-responder: the pure part of the responder: the rules file (a TOML subset with [[rule]]
 * and [action.NAME] tables), integrity events (vigil's flat form and GCE's log entry verbatim,
 * issue 7 contract §1) and the matcher. Bytes in, structures and verdicts out; no I/O. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cleanup.h"
#include "error.h"

/* Refused beyond these, before parsing. */
#define VG_RULES_MAX_FILE_SIZE (1024 * 1024)
#define VG_RESP_EVENT_MAX_SIZE (1024 * 1024)
/* PCR numbers accepted in events and rules (TPM 2.0 PC Client: 24 PCRs). */
#define VG_RESP_MAX_PCR 23

/* ---- Events ---------------------------------------------------------------------------- */

enum vg_resp_event_type {
        VG_RESP_EV_EARLY_BOOT, /* earlyBootReportEvent */
        VG_RESP_EV_LATE_BOOT,  /* lateBootReportEvent */
        VG_RESP_EV_RUNTIME,    /* runtimeReportEvent */
        VG_RESP_EV_RELEARN,    /* relearnEvent */
        VG_RESP_EV_OTHER,      /* a GCE entry of another kind (startupEvent, shutdownEvent...) */
};
#define VG_RESP_EV_COUNT 4 /* the matchable types, OTHER excluded */

const char *vg_resp_event_type_name(enum vg_resp_event_type t);
int vg_resp_event_type_from_name(const char *s, enum vg_resp_event_type *out);

/* Cloud Logging's LogSeverity numbers (DEFAULT 0 ... EMERGENCY 800); -1 when unknown. */
int vg_resp_severity_from_name(const char *s);

struct vg_resp_event {
        json_t *json;             /* the event in vigil's flat form (GCE entries converted) */
        bool gce;                 /* the input was a GCE log entry */
        const char *event_id;     /* borrowed from json */
        const char *agent_id;     /* borrowed from json */
        const char *boot_counter; /* "" when absent */
        const char *severity;     /* as given, upper case; derived when absent */
        int severity_level;
        enum vg_resp_event_type type;
        int passed;             /* policyEvaluationPassed: 0, 1, or -1 (relearnEvent, OTHER) */
        uint32_t changed_pcrs;  /* bit n: PCR n differs between actual and policy (relearn:
                                 * previous and new) measurements, in any bank */
        const char *other_kind; /* VG_RESP_EV_OTHER: the GCE key found ("shutdownEvent") */
};

/* Parse and validate one event (a JSON object). On error, -EINVAL (or -ENOMEM) and err says
 * which JSON path was wrong and what was expected ("lateBootReportEvent.actualMeasurements[1]
 * .pcrNum: expected \"PCR_<0-23>\", found \"PCR_x\""). */
int vg_resp_event_parse(const void *data, size_t len, struct vg_resp_event **out,
                        struct vg_error *err);
void vg_resp_event_free(struct vg_resp_event *ev);
VG_DEFINE_CLEANUP_FUNC(struct vg_resp_event, vg_resp_event_free)

/* "4,7": the changed PCRs, comma-separated ("" if none). out holds at least 64 bytes. */
void vg_resp_event_pcr_list(const struct vg_resp_event *ev, char *out, size_t len);

/* The label's value, or NULL. */
const char *vg_resp_event_label(const struct vg_resp_event *ev, const char *key);

/* ---- Rules ------------------------------------------------------------------------------ */

enum vg_resp_action_type {
        VG_RESP_ACT_EXEC,
        VG_RESP_ACT_WEBHOOK,
        VG_RESP_ACT_RELEARN, /* relearn-if-known-good */
        VG_RESP_ACT_REPROVISION,
        VG_RESP_ACT_NOTIFY, /* exec when it has a command, webhook when it has a url */
};
const char *vg_resp_action_type_name(enum vg_resp_action_type t);

struct vg_resp_action {
        char *name;
        enum vg_resp_action_type type;
        unsigned line;  /* of the [action.NAME] header */
        char **command; /* NULL-terminated argv (exec, reprovision, notify-by-command) */
        unsigned timeout_s;
        /* webhook, notify-by-url */
        char *url;
        char *secret;     /* HMAC-SHA256 key for X-Vigil-Signature; NULL: unsigned */
        char *ca_file;    /* https: trust these CAs (else the system store) */
        unsigned retries; /* after the first attempt */
        unsigned retry_delay_ms;
        /* relearn-if-known-good: NULL fields fall back to the responder's configuration */
        char *verifier; /* "https://127.0.0.1:8881" */
        char *client_cert, *client_key;
        /* reprovision */
        unsigned max_attempts;
        const struct vg_resp_action *then; /* may be NULL */
};

struct vg_resp_rule {
        char *name;
        unsigned line;     /* of its [[rule]] header */
        uint32_t events;   /* bit per enum vg_resp_event_type; 0 = any */
        int passed;        /* -1 = any */
        uint32_t pcrs;     /* 0 = any */
        int min_severity;  /* -1 = any */
        char **label_keys; /* NULL-terminated, parallel to label_values */
        char **label_values;
        bool final;                            /* a match stops the rules after this one */
        const struct vg_resp_action **actions; /* NULL-terminated, in order */
        size_t n_actions;
};

struct vg_rules {
        char *file;
        struct vg_resp_rule *rules;
        size_t n_rules;
        struct vg_resp_action *actions;
        size_t n_actions;
};

/* Parse a rules file's text. filename is for messages only. Errors are
 * "FILE:LINE: rule \"quarantine\": actions[1]: no action named \"shutdwn\" (defined: ...)". */
int vg_rules_parse(const char *text, size_t len, const char *filename, struct vg_rules **out,
                   struct vg_error *err);
/* Read and parse a file (at most VG_RULES_MAX_FILE_SIZE). */
int vg_rules_load(const char *path, struct vg_rules **out, struct vg_error *err);
void vg_rules_free(struct vg_rules *rules);
VG_DEFINE_CLEANUP_FUNC(struct vg_rules, vg_rules_free)

const struct vg_resp_action *vg_rules_action(const struct vg_rules *rules, const char *name);

/* Whether rule matches ev; when it does not, *why (may be NULL) says which condition failed
 * ("event type is runtimeReportEvent", "PCR 4 unchanged"), in a static or ev-owned string
 * written to why_buf. */
bool vg_rule_matches(const struct vg_resp_rule *rule, const struct vg_resp_event *ev, char *why_buf,
                     size_t why_len);
