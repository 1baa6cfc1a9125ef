/* vigil tenant: what the keylime_tenant-compatible commands share: the parsed command line,
 * the [tenant] configuration, mTLS contexts and one request helper that names what failed. */
#pragma once

#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "payload.h"
#include "tpm_public.h"

/* keylime_tenant's default agent (and vigil's test stack's). */
#define TENANT_DEFAULT_UUID "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"

struct tenant_args {
        const char *command;
        const char *agent_ip, *agent_port, *cv_agent_ip;
        const char *verifier_ip, *verifier_port, *verifier_id;
        const char *registrar_ip, *registrar_port;
        const char *uuid;
        const char *file, *cert_dir, *include_dir;
        const char *allowlist, *exclude;
        const char *runtime_policy, *runtime_policy_name, *runtime_policy_sig_key,
            *runtime_policy_checksum;
        const char *tpm_policy;
        const char *mb_policy, *mb_policy_name; /* --mb-policy FILE, --mb-policy-name */
        const char *agent_api_version;
        bool verify, push_model, no_verifier_check;
};

/* What the registrar knows about an agent (GET /agents/{uuid}). */
struct tenant_reg {
        json_t *json; /* the results object, owned */
        const char *aik_tpm, *ek_tpm, *ekcert, *mtls_cert, *ip;
        long port; /* -1 when unknown */
        long regcount;
};

struct tenant {
        struct tenant_args a;
        struct vg_config *cfg;
        SSL_CTX *tls;        /* verifier and registrar: trusted_server_ca + client cert */
        SSL_CTX *agent_tls;  /* the agent: its registered mtls_cert pinned + client cert */
        unsigned timeout_ms; /* request_timeout */
        double retry_interval;
        unsigned max_retries;
        bool exponential_backoff;
        char verifier_api[8], registrar_api[8], agent_api[8];
        char verifier_base[300], registrar_base[300], agent_base[300];
        char agent_fid[400];

        /* add/update state */
        struct tenant_reg reg;
        struct vg_payload_bundle bundle;
        bool have_bundle;
        char *payload_b64;        /* encrypted payload to send with U (bundle's), borrowed */
        char *revocation_key;     /* PEM, --cert only */
        char *metadata;           /* JSON text, "{}" unless --cert */
        char *tpm_policy;         /* normalised JSON text */
        char *runtime_policy_b64; /* "" when none */
        char *runtime_policy_key; /* b64 of --runtime-policy-sig-key, "" when none */
        char *mb_policy;          /* the --mb-policy refstate text (checked), NULL when none */
};

/* The [tenant] configuration schema (also read by `vigil baseline`). */
extern const struct vg_config_schema tenant_schema;
/* The mTLS client context that configuration describes: client_cert, client_key (and
 * client_key_password), trusted_server_ca, each absolute or relative to tls_dir. NULL with err
 * naming the option or file at fault. */
SSL_CTX *tenant_tls_ctx(const struct vg_config *cfg, struct vg_error *err);
/* "https://IP:PORT/" base for an IPv4 address or name, "https://[IP]:PORT" for IPv6. */
void tenant_https_base(char *out, size_t len, const char *ip, long long port);

/* ---- cmd_tenant.c: output and requests ----------------------------------------------------- */

/* Progress and results as keylime_tenant logs them, on stderr: "vigil tenant: ...". */
void tenant_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An error line on stderr; returns 1 (the exit status of a failure). */
int tenant_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A JSON value on stdout, indented, followed by a newline. */
void tenant_print_json(json_t *j);

/*
 * One HTTPS request. base is "https://host:port", path starts with "/". On a transport failure
 * returns -1 with err "METHOD URL failed: ..."; otherwise the HTTP status, with *out (may be
 * NULL) the parsed body (NULL when it is not JSON). status_text receives Keylime's "status".
 */
int tenant_request(struct tenant *t, SSL_CTX *tls, const char *method, const char *base,
                   const char *path, json_t *body, json_t **out, struct vg_error *err);
/* "404 (agent X is not registered)" style text of a Keylime reply, for messages. */
const char *tenant_status_text(json_t *reply);

/* Keylime's random_password: n characters of [A-Za-z0-9]; out holds n + 1. */
int tenant_random_alnum(char *out, size_t n);
/* Seconds to wait before try n (1-based), as Keylime's retry_time. */
double tenant_retry_delay(const struct tenant *t, unsigned n);
void tenant_sleep(double seconds);

/* The negotiated API version for the verifier/registrar (GET /version), cached in t. */
const char *tenant_verifier_api(struct tenant *t);
const char *tenant_registrar_api(struct tenant *t);
/* Pick the newest version both sides speak from a /version reply; fallback when none. */
void tenant_negotiate(json_t *version_reply, const char *fallback, char out[8]);

/* Is name (e.g. "rsa2048", "sha256") in the accept list option? */
bool tenant_alg_accepted(const struct tenant *t, const char *option, const char *name);

/* ---- tenant_add.c: add, update, delete, status, reactivate, lists --------------------------- */

int tenant_cmd_add(struct tenant *t, bool update);
int tenant_cmd_delete(struct tenant *t);
int tenant_cmd_cvstatus(struct tenant *t, bool not_found_fail, int *http_status);
int tenant_cmd_status(struct tenant *t);
int tenant_cmd_regstatus(struct tenant *t);
int tenant_cmd_reglist(struct tenant *t);
int tenant_cmd_regdelete(struct tenant *t);
int tenant_cmd_cvlist(struct tenant *t, bool bulk);
int tenant_cmd_reactivate(struct tenant *t);

/* ---- tenant_policy.c: tpm_policy and runtime policies ---------------------------------------- */

/* Fill t->tpm_policy, t->runtime_policy_b64, t->runtime_policy_key from the options
 * (--tpm_policy or the tpm_policy option; --allowlist [--exclude] or --runtime-policy). */
int tenant_policies_prepare(struct tenant *t);
/* Keylime's convert_legacy_allowlist + update_runtime_policy: runtime policy JSON v1 text from
 * a flat (or legacy JSON) allowlist and an optional exclude list. err names FILE:LINE. */
int tenant_policy_from_lists(const char *allowlist_path, const char *exclude_path, char **json,
                             struct vg_error *err);
int tenant_cmd_runtime_policy(struct tenant *t, const char *verb);
/* addmbpolicy, updatembpolicy, showmbpolicy, deletembpolicy, listmbpolicy (/mbpolicies). */
int tenant_cmd_mb_policy(struct tenant *t, const char *verb);

/* ---- tenant_certpkg.c: --cert ------------------------------------------------------------ */

/* Keylime's certificate package for the agent: a zip (stored) with UUID-cert.crt,
 * UUID-private.pem, UUID-public.pem, cacert.crt, cacrl.pem, RevocationNotifier-cert.crt and the
 * files of include_dir; the RevocationNotifier private key (for the verifier) and the metadata
 * JSON {"cert_serial", "subject"}. Certificates missing in ca_dir are issued there. */
int tenant_cert_package(const char *ca_dir, const char *uuid, const char *include_dir,
                        uint8_t **zip, size_t *zip_len, char **revocation_key, char **metadata,
                        struct vg_error *err);
