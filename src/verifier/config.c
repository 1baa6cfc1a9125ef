/* vigil-verifier: the [verifier] options (Keylime's verifier.conf names where one exists) and
 * Keylime's operational state names. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_state.h"
#include "verifier.h"

static const struct vg_config_option verifier_options[] = {
        { "uuid", VG_CONFIG_STRING, "default",
          "this verifier's id: it polls only the agents stored with this verifier_id" },
        { "ip", VG_CONFIG_STRING, "127.0.0.1", "address the REST API listens on" },
        { "port", VG_CONFIG_INTEGER, "8881", "REST API port (HTTPS, client certificate required)",
          0, 65535 },
        { "tls_dir", VG_CONFIG_PATH, "/var/lib/vigil/cv_ca",
          "a `vigil ca init` directory; relative TLS file names are read from it" },
        { "server_cert", VG_CONFIG_STRING, "server-cert.crt", "TLS server certificate (PEM)" },
        { "server_key", VG_CONFIG_STRING, "server-private.pem", "its private key (PEM)" },
        { "server_key_password", VG_CONFIG_STRING, NULL, "password of an encrypted server_key" },
        { "trusted_client_ca", VG_CONFIG_STRING, "cacert.crt",
          "CA certificate(s) (PEM) API clients (tenants) must chain to" },
        { "client_cert", VG_CONFIG_STRING, "client-cert.crt",
          "certificate the verifier presents to agents (mTLS)" },
        { "client_key", VG_CONFIG_STRING, "client-private.pem", "its private key (PEM)" },
        { "client_key_password", VG_CONFIG_STRING, NULL, "password of an encrypted client_key" },
        { "enable_agent_mtls", VG_CONFIG_BOOLEAN, "true",
          "talk to agents over mTLS, pinning each agent's registered mtls_cert" },
        { "data_dir", VG_CONFIG_PATH, "/var/lib/vigil",
          "state directory; where database_url = \"sqlite\" puts cv_data.sqlite" },
        { "database_url", VG_CONFIG_STRING, "sqlite",
          "\"sqlite\", sqlite:////absolute/path, or postgresql://user:pass@host/db (several "
          "verifiers may share one PostgreSQL database, each with its own uuid)" },
        { "registrar_ip", VG_CONFIG_STRING, "127.0.0.1", "registrar address (informational)" },
        { "registrar_port", VG_CONFIG_INTEGER, "8891", "registrar TLS port (informational)", 0,
          65535 },
        { "quote_interval", VG_CONFIG_STRING, "2",
          "seconds between the end of one attestation and the next quote request (decimal)" },
        { "request_timeout", VG_CONFIG_STRING, "60", "seconds one request to an agent may take" },
        { "retry_interval", VG_CONFIG_STRING, "2",
          "seconds before retrying an agent that could not be reached" },
        { "max_retries", VG_CONFIG_INTEGER, "5",
          "failed contacts in a row before the agent fails with not_reachable", 0, 1000000 },
        { "exponential_backoff", VG_CONFIG_BOOLEAN, "true",
          "retry after retry_interval^n seconds instead of a fixed interval" },
        { "ignore_tomtou_errors", VG_CONFIG_BOOLEAN, "false",
          "true: accept ToMToU/open-writers (violation) IMA entries; false: each is a failure" },
        { "max_quotes_without_progress", VG_CONFIG_INTEGER, "3",
          "successive quotes whose PCR 10 no IMA entry reaches before ima.pcr_mismatch", 1,
          1000000 },
        { "stop_polling_on_failure", VG_CONFIG_BOOLEAN, "false",
          "false: a failed agent stays polled and each new violation is reported; true: "
          "polling stops at the first failure (Keylime's behaviour) until reactivate" },
        { "enabled_revocation_notifications", VG_CONFIG_STRING_LIST, "agent",
          "where revocations go: agent (every agent of this verifier), webhook" },
        { "webhook_url", VG_CONFIG_STRING, "",
          "URL a revocation is POSTed to (http or https); retried as retry_interval, "
          "max_retries and exponential_backoff say" },
        { "revocation_key", VG_CONFIG_STRING, "RevocationNotifier-private.pem",
          "RSA key signing revocations when the tenant gave none (generated in tls_dir if "
          "missing)" },
        { "require_allow_list_signatures", VG_CONFIG_BOOLEAN, "false",
          "refuse runtime policies that are neither a DSSE envelope verified with "
          "runtime_policy_key nor a policy with a valid detached runtime_policy_sig" },
        { "max_upload_size", VG_CONFIG_INTEGER, "104857600",
          "largest request body accepted (runtime policies)", 1024, 1073741824 },
        { "state_flush_interval", VG_CONFIG_STRING, "0.5",
          "seconds between batched writes of attestation state" },
        { "poll_workers", VG_CONFIG_INTEGER, "0",
          "threads polling agents, each with its own event loop and connections (agents are "
          "shared out among them); 0: one per CPU",
          0, 256 },
        /* Integrity events and boot baselines (issue 7; integrity.c) */
        { "integrity_events", VG_CONFIG_BOOLEAN, "true",
          "emit integrity events (boot, runtime, relearn) into the durable outbox" },
        { "integrity_boot_baselines", VG_CONFIG_BOOLEAN, "true",
          "quote PCRs 0-5, 7-9, 11-14 and judge each new boot against the agent's baseline "
          "(learned on first use; relearned onto known-good late-boot baselines)" },
        { "integrity_event_sinks", VG_CONFIG_STRING_LIST, "file",
          "where events are delivered: file, webhook, mqtt (empty: kept in the outbox only)" },
        { "integrity_event_retention", VG_CONFIG_STRING, "7d",
          "delivered events older than this are pruned (seconds, 30s, 15m, 12h, 7d, forever)" },
        { "integrity_event_prune_interval", VG_CONFIG_INTEGER, "300", "seconds between prunes", 1,
          86400 },
        { "integrity_event_batch_size", VG_CONFIG_INTEGER, "1000",
          "events per read and per sink delivery", 1, 100000 },
        { "integrity_event_backoff_min_ms", VG_CONFIG_INTEGER, "500",
          "first retry after a sink failure", 10, 3600000 },
        { "integrity_event_backoff_max_ms", VG_CONFIG_INTEGER, "30000",
          "cap of the doubling back-off", 10, 3600000 },
        { "integrity_event_poll_ms", VG_CONFIG_INTEGER, "1000",
          "look for events appended by other verifiers on the same database", 10, 3600000 },
        { "event_file", VG_CONFIG_STRING, "events.jsonl",
          "file sink: JSON lines (relative to data_dir)" },
        { "event_file_mode", VG_CONFIG_STRING, "0640", "file sink: mode of a new file (octal)" },
        { "event_webhook_url", VG_CONFIG_STRING, "",
          "webhook sink: http(s) URL events are POSTed to" },
        { "event_webhook_secret_file", VG_CONFIG_STRING, "",
          "webhook sink: file holding the HMAC-SHA256 key (X-Vigil-Signature); empty: unsigned" },
        { "event_webhook_ca", VG_CONFIG_STRING, "", "webhook sink: CA file for https" },
        { "event_webhook_cert", VG_CONFIG_STRING, "", "webhook sink: client certificate (mTLS)" },
        { "event_webhook_key", VG_CONFIG_STRING, "", "webhook sink: its private key" },
        { "event_webhook_timeout_ms", VG_CONFIG_INTEGER, "10000", "webhook sink: per POST", 100,
          600000 },
        { "event_mqtt_host", VG_CONFIG_STRING, "127.0.0.1", "MQTT sink: broker host" },
        { "event_mqtt_port", VG_CONFIG_INTEGER, "0",
          "MQTT sink: broker port; 0: 1883, or 8883 with event_mqtt_ca", 0, 65535 },
        { "event_mqtt_client_id", VG_CONFIG_STRING, "",
          "MQTT sink: client id, unique per verifier (clean session is off); empty: "
          "vigil-verifier-<hostname>" },
        { "event_mqtt_topic_prefix", VG_CONFIG_STRING, "vigil/events",
          "MQTT sink: topics are <prefix>/<agentId>/<eventType>" },
        { "event_mqtt_username", VG_CONFIG_STRING, "", "MQTT sink: user name" },
        { "event_mqtt_password_file", VG_CONFIG_STRING, "",
          "MQTT sink: file holding the password" },
        { "event_mqtt_ca", VG_CONFIG_STRING, "", "MQTT sink: CA file; enables TLS" },
        { "event_mqtt_cert", VG_CONFIG_STRING, "", "MQTT sink: client certificate (TLS)" },
        { "event_mqtt_key", VG_CONFIG_STRING, "", "MQTT sink: its private key" },
        { "event_mqtt_tls_insecure", VG_CONFIG_BOOLEAN, "false",
          "MQTT sink: skip the broker host-name check (tests only)" },
        { "event_mqtt_keepalive", VG_CONFIG_INTEGER, "30", "MQTT sink: keep-alive seconds", 5,
          3600 },
        { "event_mqtt_max_inflight", VG_CONFIG_INTEGER, "1000",
          "MQTT sink: unacknowledged QoS 1 PUBLISHes", 1, 65535 },
        { "event_mqtt_ack_timeout_ms", VG_CONFIG_INTEGER, "30000",
          "MQTT sink: a batch without all its PUBACKs fails after this", 100, 3600000 },
        { "event_mqtt_backoff_min_ms", VG_CONFIG_INTEGER, "500", "MQTT sink: reconnect back-off",
          10, 3600000 },
        { "event_mqtt_backoff_max_ms", VG_CONFIG_INTEGER, "30000",
          "MQTT sink: cap of the reconnect back-off", 10, 3600000 },
        {},
};

const struct vg_config_schema vg_verifier_schema = {
        .component = "verifier",
        .section = "verifier",
        .options = verifier_options,
};

const char *vg_cv_state_str(int state)
{
        return vg_agent_state_name(state);
}

double vg_cv_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool vg_cv_agent_id_valid(const char *id)
{
        size_t n = id ? strlen(id) : 0;

        /* keylime/common/validators.py valid_agent_id: [\w.-]+, bounded here. */
        if (n == 0 || n > 255)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = id[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.'))
                        return false;
        }
        return true;
}
