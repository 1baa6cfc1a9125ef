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
