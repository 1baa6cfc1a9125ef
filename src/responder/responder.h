/* vigil-responder: the engine around rules.h: a state database that makes every event id run its
 * actions at most once, the actions themselves (exec, webhook, relearn-if-known-good,
 * reprovision, notify), the dry-run report, and the MQTT subscription that feeds it. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "cleanup.h"
#include "error.h"
#include "rules.h"

struct vg_responder_options {
        const char *database_url; /* Keylime-style: "sqlite" = data_dir/responder.sqlite */
        const char *data_dir;     /* NULL: /var/lib/vigil */
        bool dry_run;             /* print what would be done to report; run nothing, write
                                   * nothing (the state database is only read) */
        FILE *report;             /* dry-run output; NULL: stdout */
        unsigned retention_days;  /* handled-event records older than this are pruned; 0: never */
        /* relearn-if-known-good defaults (an action's own settings win) */
        const char *verifier_url; /* "https://127.0.0.1:8881" */
        const char *trusted_server_ca;
        const char *client_cert;
        const char *client_key;
        const char *client_key_password;
};

struct vg_responder;

/* rules is borrowed and must outlive the responder. */
int vg_responder_new(const struct vg_rules *rules, const struct vg_responder_options *opts,
                     struct vg_responder **out, struct vg_error *err);
void vg_responder_free(struct vg_responder *r);
VG_DEFINE_CLEANUP_FUNC(struct vg_responder, vg_responder_free)

/* Handle one event (its JSON bytes); source names where it came from in logs ("mqtt topic
 * vigil/events/x/lateBootReportEvent", "file events.jsonl:3"). Returns 0 when every matching
 * action succeeded (or the event was already handled), 1 when an action failed, -EINVAL with err
 * for a malformed event, another negative errno when the state database failed (nothing run). */
int vg_responder_handle(struct vg_responder *r, const void *data, size_t len, const char *source,
                        struct vg_error *err);

/* ---- MQTT input ------------------------------------------------------------------------- */

struct vg_resp_mqtt_options {
        const char *host;
        int port;
        const char *topic;     /* "vigil/events/#" */
        const char *client_id; /* fixed, so that the broker keeps the session (clean session
                                * false) and queues QoS 1 events while the responder is down */
        const char *username, *password;
        const char *ca_file; /* TLS when set */
        const char *cert_file, *key_file;
        int keepalive;
        unsigned reconnect_max; /* seconds; 0: 30 */
        bool ephemeral;         /* dry run: clean session, client id + "-dry-run-PID", so the real
                                 * responder's queued events are not consumed */
};

struct vg_resp_mqtt;

/* Connect (retrying in the background while the broker is away), subscribe with QoS 1 and hand
 * each message to vg_responder_handle() on libmosquitto's thread, which from then on is the only
 * user of r. */
int vg_resp_mqtt_start(struct vg_responder *r, const struct vg_resp_mqtt_options *opts,
                       struct vg_resp_mqtt **out, struct vg_error *err);
/* Disconnect and join the thread (after the event in progress). */
void vg_resp_mqtt_stop(struct vg_resp_mqtt *m);
VG_DEFINE_CLEANUP_FUNC(struct vg_resp_mqtt, vg_resp_mqtt_stop)
