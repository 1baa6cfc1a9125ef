/* vigil-agent: registration with a Keylime registrar (reference keylime.md §3): POST the EK, EK
 * certificate and AK, ActivateCredential on the returned blob, PUT the auth_tag; retried. */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "cleanup.h"
#include "keylime_crypto.h"
#include "encoding.h"
#include "log.h"

/* While the registrar is unreachable or failing (5xx): 1, 2, 4 ... 64 s. */
#define BACKOFF_FIRST_MS 1000u
#define BACKOFF_MAX_MS   64000u
/* A 4xx means the registrar refused what we sent; only an operator can fix that, so ask
 * again rarely instead of hammering it. */
#define REFUSED_RETRY_MS   300000u
#define REQUEST_TIMEOUT_MS 30000u

enum reg_step {
        STEP_VERSION,
        STEP_REGISTER, /* also after a failed activation: the registrar dropped the record */
};

struct vg_agent_registration {
        struct vg_agent *agent;
        struct vg_http_client *client;
        struct vg_http_call *call;
        struct event *timer;
        enum reg_step step;
        char version[16];   /* API version used with this registrar */
        char base_url[300]; /* http://host:port */
        unsigned backoff_ms;
        char auth_tag[VG_AGENT_AUTH_TAG_LEN + 1];
};

static void schedule(struct vg_agent_registration *r, enum reg_step step, unsigned ms)
{
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        r->step = step;
        evtimer_add(r->timer, &tv);
}

static void retry_backoff(struct vg_agent_registration *r)
{
        unsigned ms = r->backoff_ms;

        vg_info(VG_F("agent", r->agent->uuid), "retrying registration in %u s", ms / 1000);
        r->backoff_ms = ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : ms * 2;
        schedule(r, STEP_REGISTER, ms);
}

static void retry_refused(struct vg_agent_registration *r)
{
        vg_info(VG_F("agent", r->agent->uuid), "retrying registration in %u s",
                REFUSED_RETRY_MS / 1000);
        schedule(r, STEP_REGISTER, REFUSED_RETRY_MS);
}

/* The registrar's own words: Keylime puts them in "status". */
static void registrar_message(const struct vg_http_response *resp, char *out, size_t size)
{
        json_t *j = vg_http_response_json(resp, NULL);
        const char *s = j ? json_string_value(json_object_get(j, "status")) : NULL;

        snprintf(out, size, "%.200s", s ? s : (const char *)resp->body);
        json_decref(j);
}

/* A transport failure or 5xx: back off; a 4xx: log what the registrar said, retry slowly. */
static void failed(struct vg_agent_registration *r, const char *what,
                   const struct vg_http_response *resp, const struct vg_error *err)
{
        char msg[256];

        if (!resp) {
                vg_warn(VG_F("agent", r->agent->uuid), "%s: %s", what, vg_error_str(err));
                retry_backoff(r);
                return;
        }
        registrar_message(resp, msg, sizeof(msg));
        if (resp->status >= 500) {
                vg_warn(VG_F("agent", r->agent->uuid), "%s: registrar answered %d: %s", what,
                        resp->status, msg);
                retry_backoff(r);
        } else {
                vg_err(VG_F("agent", r->agent->uuid), "%s: registrar refused with %d: %s", what,
                       resp->status, msg);
                retry_refused(r);
        }
}

static void on_activate(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct vg_agent_registration *r = userdata;

        r->call = NULL;
        if (!resp || resp->status != 200) {
                /* Keylime's registrar deletes the record on a wrong tag: start over. */
                failed(r, "activation failed", resp, err);
                return;
        }
        r->backoff_ms = BACKOFF_FIRST_MS;
        vg_info(VG_F("agent", r->agent->uuid), "activated with the registrar at %s (API v%s)",
                r->base_url, r->version);
}

static void send_activate(struct vg_agent_registration *r)
{
        char url[640];
        struct vg_error err = { 0 };
        json_t *body = json_pack("{s:s}", "auth_tag", r->auth_tag);

        snprintf(url, sizeof(url), "%s/v%s/agents/%s", r->base_url, r->version, r->agent->uuid);
        struct vg_http_client_request req = { .method = "PUT", .url = url, .json = body };
        vg_info(VG_F("agent", r->agent->uuid), "sending the auth_tag to %s", url);
        if (vg_http_client_send(r->client, &req, on_activate, r, &r->call, &err) < 0) {
                vg_err(VG_F("agent", r->agent->uuid), "cannot send the activation: %s",
                       vg_error_str(&err));
                retry_refused(r);
        }
        json_decref(body);
}

/* ActivateCredential recovers the registrar's challenge; the tag proves we hold it. */
static int answer_challenge(struct vg_agent_registration *r, const char *blob_b64)
{
        struct vg_agent *a = r->agent;
        _cleanup_free_ uint8_t *blob = NULL;
        _cleanup_secret_ struct vg_secret cred = { 0 };
        struct vg_error err = { 0 };
        size_t blob_len;
        int rc;

        rc = vg_b64_decode(blob_b64, strlen(blob_b64), VG_B64_STD, &blob, &blob_len);
        if (rc < 0) {
                vg_err(VG_F("agent", a->uuid), "the registrar's blob is not base64");
                return rc;
        }
        rc = vg_tpm_activate_credential_file(a->tpm, blob, blob_len, &cred.p, &cred.len, &err);
        if (rc < 0) {
                vg_err(VG_F("agent", a->uuid), "ActivateCredential failed: %s", vg_error_str(&err));
                return rc;
        }
        return vg_agent_auth_tag(cred.p, cred.len, a->uuid, r->auth_tag);
}

static void on_register(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct vg_agent_registration *r = userdata;
        json_t *j, *blob;

        r->call = NULL;
        if (!resp || resp->status != 200) {
                failed(r, "registration failed", resp, err);
                return;
        }
        j = vg_http_response_json(resp, NULL);
        blob = json_object_get(json_object_get(j, "results"), "blob");
        if (!json_is_string(blob)) {
                vg_err(VG_F("agent", r->agent->uuid),
                       "the registrar's answer has no results.blob; is %s a Keylime registrar?",
                       r->base_url);
                json_decref(j);
                retry_refused(r);
                return;
        }
        vg_info(VG_F("agent", r->agent->uuid), "registered; activating the credential");
        int rc = answer_challenge(r, json_string_value(blob));
        json_decref(j);
        if (rc < 0) {
                retry_refused(r);
                return;
        }
        send_activate(r);
}

static json_t *registration_body(struct vg_agent_registration *r)
{
        struct vg_agent *a = r->agent;
        const struct vg_config *cfg = a->cfg;
        _cleanup_free_ uint8_t *ek = NULL, *ak = NULL, *cert = NULL;
        _cleanup_free_ char *ek_b64 = NULL, *ak_b64 = NULL, *cert_b64 = NULL;
        struct vg_error err = { 0 };
        size_t ek_len, ak_len, cert_len;
        int rc;

        if (vg_tpm_ek_public(a->tpm, &ek, &ek_len, &err) < 0 ||
            vg_tpm_ak_public(a->tpm, &ak, &ak_len, &err) < 0) {
                vg_err(VG_F("agent", a->uuid), "%s", vg_error_str(&err));
                return NULL;
        }
        rc = vg_tpm_ek_cert_read(a->tpm, a->enc_alg, &cert, &cert_len, &err);
        if (rc == -ENOENT)
                vg_warn(VG_F("agent", a->uuid),
                        "the TPM has no EK certificate; registering without one (the tenant "
                        "must then run with require_ek_cert = false)");
        else if (rc < 0)
                vg_warn(VG_F("agent", a->uuid), "cannot read the EK certificate: %s",
                        vg_error_str(&err));
        ek_b64 = vg_b64_encode(ek, ek_len, VG_B64_STD);
        ak_b64 = vg_b64_encode(ak, ak_len, VG_B64_STD);
        if (cert && !(cert_b64 = vg_b64_encode(cert, cert_len, VG_B64_STD)))
                return NULL;
        if (!ek_b64 || !ak_b64)
                return NULL;

        const char *ip = vg_config_string(cfg, "contact_ip");
        if (!ip || !*ip)
                ip = vg_config_string(cfg, "ip");
        if (strcmp(ip, "0.0.0.0") == 0 || strcmp(ip, "::") == 0)
                vg_warn(VG_F("agent", a->uuid),
                        "telling the registrar to reach the agent at %s; set contact_ip to an "
                        "address the verifier can connect to",
                        ip);
        int64_t port = vg_config_integer(cfg, "contact_port");
        if (port == 0)
                port = vg_config_integer(cfg, "port");
        return json_pack("{s:o, s:s, s:s, s:s, s:s, s:I}", "ekcert",
                         cert_b64 ? json_string(cert_b64) : json_null(), "ek_tpm", ek_b64,
                         "aik_tpm", ak_b64, "mtls_cert", a->mtls ? a->server_cert_pem : "disabled",
                         "ip", ip, "port", (json_int_t)port);
}

static void send_register(struct vg_agent_registration *r)
{
        char url[640];
        struct vg_error err = { 0 };
        json_t *body = registration_body(r);

        if (!body) {
                retry_refused(r);
                return;
        }
        snprintf(url, sizeof(url), "%s/v%s/agents/%s", r->base_url, r->version, r->agent->uuid);
        struct vg_http_client_request req = { .method = "POST", .url = url, .json = body };
        vg_info(VG_F("agent", r->agent->uuid), "registering with %s", url);
        if (vg_http_client_send(r->client, &req, on_register, r, &r->call, &err) < 0) {
                vg_err(VG_F("agent", r->agent->uuid), "cannot send the registration: %s",
                       vg_error_str(&err));
                retry_refused(r);
        }
        json_decref(body);
}

static bool api_supported(const char *v)
{
        for (size_t i = 0; vg_agent_api_versions[i]; i++)
                if (strcmp(v, vg_agent_api_versions[i]) == 0)
                        return true;
        return false;
}

/* The newest version both sides speak. Registrars before Keylime 7.12 have no /version; any
 * failure here means v2.1, which every Keylime 7.x registrar accepts. */
static void on_version(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct vg_agent_registration *r = userdata;
        json_t *j = NULL, *res, *list, *v;
        size_t i;

        r->call = NULL;
        if (!resp) {
                /* Not reachable at all: wait for it before settling on a version. */
                vg_warn(VG_F("agent", r->agent->uuid), "registrar unreachable: %s",
                        vg_error_str(err));
                unsigned ms = r->backoff_ms;
                r->backoff_ms = ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : ms * 2;
                vg_info(VG_F("agent", r->agent->uuid), "retrying registration in %u s", ms / 1000);
                schedule(r, STEP_VERSION, ms);
                return;
        }
        snprintf(r->version, sizeof(r->version), "%s", VG_AGENT_API_OLDEST);
        if (resp->status == 200 && (j = vg_http_response_json(resp, NULL))) {
                res = json_object_get(j, "results");
                list = json_object_get(res ? res : j, "supported_versions");
                json_array_foreach (list, i, v)
                        if (json_is_string(v) && api_supported(json_string_value(v)) &&
                            strcmp(json_string_value(v), r->version) > 0)
                                snprintf(r->version, sizeof(r->version), "%s",
                                         json_string_value(v));
                v = json_object_get(res ? res : j, "current_version");
                if (!json_array_size(list) && json_is_string(v) &&
                    api_supported(json_string_value(v)))
                        snprintf(r->version, sizeof(r->version), "%s", json_string_value(v));
        }
        json_decref(j);
        vg_info(VG_F("agent", r->agent->uuid), "using registrar API v%s", r->version);
        send_register(r);
}

static void send_version(struct vg_agent_registration *r)
{
        char url[640];
        struct vg_error err = { 0 };

        snprintf(url, sizeof(url), "%s/version", r->base_url);
        struct vg_http_client_request req = { .method = "GET", .url = url };
        if (vg_http_client_send(r->client, &req, on_version, r, &r->call, &err) < 0) {
                vg_err(VG_F("agent", r->agent->uuid), "cannot ask the registrar's version: %s",
                       vg_error_str(&err));
                snprintf(r->version, sizeof(r->version), "%s", VG_AGENT_API_OLDEST);
                send_register(r);
        }
}

static void step_run(struct vg_agent_registration *r)
{
        switch (r->step) {
        case STEP_VERSION:
                send_version(r);
                break;
        case STEP_REGISTER:
                send_register(r);
                break;
        }
}

static void on_timer(evutil_socket_t fd, short what, void *userdata)
{
        step_run(userdata);
}

int vg_agent_registration_start(struct vg_agent *a)
{
        struct vg_agent_registration *r = calloc(1, sizeof(*r));
        const char *host = vg_config_string(a->cfg, "registrar_ip");
        struct vg_http_client_config cc = { .timeout_ms = REQUEST_TIMEOUT_MS };
        struct vg_error err = { 0 };

        if (!r)
                return -ENOMEM;
        a->reg = r;
        r->agent = a;
        r->backoff_ms = BACKOFF_FIRST_MS;
        snprintf(r->base_url, sizeof(r->base_url),
                 strchr(host, ':') ? "http://[%s]:%lld" : "http://%s:%lld", host,
                 (long long)vg_config_integer(a->cfg, "registrar_port"));
        if (vg_http_client_new(a->base, &cc, &r->client, &err) < 0) {
                vg_err(NULL, "%s", vg_error_str(&err));
                return -ENOMEM;
        }
        r->timer = evtimer_new(a->base, on_timer, r);
        if (!r->timer)
                return -ENOMEM;
        /* First attempt right away, from the loop, after the API is up. */
        schedule(r, STEP_VERSION, 0);
        return 0;
}

void vg_agent_registration_free(struct vg_agent_registration *r)
{
        if (!r)
                return;
        if (r->timer)
                event_free(r->timer);
        vg_http_client_free(r->client);
        OPENSSL_cleanse(r->auth_tag, sizeof(r->auth_tag));
        free(r);
}
