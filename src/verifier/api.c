/* vigil-verifier: the Keylime verifier REST API v2.1-v2.5 (keylime/cloud_verifier_tornado.py):
 * agents (add, get, list, delete, reactivate, stop), runtime policies (/allowlists), /version,
 * /verify/identity and /verify/evidence; request bodies parsed by pure, fuzzed functions. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "boot.h"
#include "dsse.h"
#include "encoding.h"
#include "hash.h"
#include "http_server.h"
#include "integrity.h"
#include "log.h"
#include "store.h"
#include "tpm_public.h"
#include "verifier.h"

static const char *const api_versions[] = { VG_VERIFIER_API_VERSIONS };

/* ---- pure request parsing ---------------------------------------------------------------- */

/* A string field; absent or null gives NULL (an error when required). */
static int get_string(const json_t *o, const char *name, bool required, char **out,
                      struct vg_error *err)
{
        const json_t *v = json_object_get(o, name);

        *out = NULL;
        if (!v || json_is_null(v))
                return required ? vg_error_set(err, -EINVAL, "field '%s' is missing", name) : 0;
        if (!json_is_string(v))
                return vg_error_set(err, -EINVAL, "field '%s': expected a string, found %s", name,
                                    vg_json_type_name(v));
        if (strlen(json_string_value(v)) != json_string_length(v))
                return vg_error_set(err, -EINVAL, "field '%s' contains a NUL character", name);
        *out = strdup(json_string_value(v));
        return *out ? 0 : -ENOMEM;
}

/* A field Keylime sends as a JSON *string* holding JSON (tpm_policy, metadata); an object is
 * accepted too. Normalised to compact JSON text of an object; def when absent. */
static int get_json_text(const json_t *o, const char *name, const char *def, char **out,
                         struct vg_error *err)
{
        const json_t *v = json_object_get(o, name);
        json_t *parsed = NULL;
        json_error_t je;

        *out = NULL;
        if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) {
                *out = def ? strdup(def) : NULL;
                return 0;
        }
        if (json_is_string(v)) {
                parsed = json_loadb(json_string_value(v), json_string_length(v), 0, &je);
                if (!parsed)
                        return vg_error_set(err, -EINVAL,
                                            "field '%s': not JSON (%s at position %d)", name,
                                            je.text, je.position);
        } else {
                parsed = json_incref((json_t *)v);
        }
        if (!json_is_object(parsed)) {
                json_decref(parsed);
                return vg_error_set(err, -EINVAL, "field '%s': expected a JSON object", name);
        }
        *out = json_dumps(parsed, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(parsed);
        return *out ? 0 : -ENOMEM;
}

/* JSON syntax with every number replaced by 0 (numbers are checked against the JSON grammar
 * first): a document valid except for the size of its numbers parses, so that a big integer
 * (keylime_tenant --cert puts a 159-bit certificate serial in metadata) is never refused. */
static char *numbers_zeroed(const char *s, size_t len)
{
        char *out = malloc(len + 1), *o = out;
        bool in_str = false;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len;) {
                char c = s[i];
                if (in_str) {
                        *o++ = c;
                        i++;
                        if (c == '\\' && i < len)
                                *o++ = s[i++];
                        else if (c == '"')
                                in_str = false;
                        continue;
                }
                if (c == '"') {
                        in_str = true;
                        *o++ = s[i++];
                        continue;
                }
                if (c != '-' && !(c >= '0' && c <= '9')) {
                        *o++ = s[i++];
                        continue;
                }
                /* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
                size_t j = i;
                bool good = true;
                if (s[j] == '-')
                        j++;
                if (j < len && s[j] == '0')
                        j++;
                else if (j < len && s[j] >= '1' && s[j] <= '9')
                        while (j < len && s[j] >= '0' && s[j] <= '9')
                                j++;
                else
                        good = false;
                if (good && j < len && s[j] == '.') {
                        size_t k = ++j;
                        while (j < len && s[j] >= '0' && s[j] <= '9')
                                j++;
                        good = j > k;
                }
                if (good && j < len && (s[j] == 'e' || s[j] == 'E')) {
                        j++;
                        if (j < len && (s[j] == '+' || s[j] == '-'))
                                j++;
                        size_t k = j;
                        while (j < len && s[j] >= '0' && s[j] <= '9')
                                j++;
                        good = j > k;
                }
                if (!good) {
                        /* Left as it is: the parser names the position. */
                        *o++ = s[i++];
                        continue;
                }
                *o++ = '0';
                i = j;
        }
        *o = '\0';
        return out;
}

/* metadata: kept byte for byte as the tenant gave it (GET answers the same text), once it is
 * known to be a JSON object; the size of its numbers does not matter. "{}" by default. */
static int get_metadata(const json_t *o, const char *name, char **out, struct vg_error *err)
{
        const json_t *v = json_object_get(o, name);
        json_error_t je;

        *out = NULL;
        if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) {
                *out = strdup("{}");
                return *out ? 0 : -ENOMEM;
        }
        if (!json_is_string(v)) {
                if (!json_is_object(v))
                        return vg_error_set(err, -EINVAL,
                                            "field '%s': expected a JSON object, found %s", name,
                                            vg_json_type_name(v));
                *out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
                return *out ? 0 : -ENOMEM;
        }
        const char *text = json_string_value(v);
        size_t len = json_string_length(v);
        if (strlen(text) != len)
                return vg_error_set(err, -EINVAL, "field '%s' contains a NUL character", name);
        _cleanup_free_ char *zeroed = numbers_zeroed(text, len);
        if (!zeroed)
                return -ENOMEM;
        json_t *parsed = json_loadb(zeroed, strlen(zeroed), 0, &je);
        if (!parsed)
                return vg_error_set(err, -EINVAL, "field '%s': not JSON (%s at position %d)", name,
                                    je.text, je.position);
        bool is_obj = json_is_object(parsed);
        json_decref(parsed);
        if (!is_obj)
                return vg_error_set(err, -EINVAL, "field '%s': expected a JSON object", name);
        *out = strdup(text);
        return *out ? 0 : -ENOMEM;
}

/* A list of algorithm names (accept_tpm_*_algs): an array of strings, kept as JSON text. */
static int get_alg_list(const json_t *o, const char *name, char **out, struct vg_error *err)
{
        const json_t *v = json_object_get(o, name);
        size_t i;
        json_t *x;

        *out = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_array(v))
                return vg_error_set(err, -EINVAL, "field '%s': expected an array, found %s", name,
                                    vg_json_type_name(v));
        json_array_foreach (v, i, x)
                if (!json_is_string(x) || json_string_length(x) > 32)
                        return vg_error_set(err, -EINVAL,
                                            "field '%s[%zu]': expected an algorithm name", name, i);
        *out = json_dumps(v, JSON_COMPACT);
        return *out ? 0 : -ENOMEM;
}

static int get_port(const json_t *o, const char *name, bool required, int64_t *out,
                    struct vg_error *err)
{
        const json_t *v = json_object_get(o, name);
        char *end;

        *out = 0;
        if (!v || json_is_null(v))
                return required ? vg_error_set(err, -EINVAL, "field '%s' is missing", name) : 0;
        if (json_is_integer(v)) {
                *out = json_integer_value(v);
        } else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 8) {
                long p = strtol(json_string_value(v), &end, 10);
                *out = *end ? -1 : p;
        } else {
                return vg_error_set(err, -EINVAL, "field '%s': expected a port number, found %s",
                                    name, vg_json_type_name(v));
        }
        if (*out < 1 || *out > 65535)
                return vg_error_set(err, -EINVAL, "field '%s': expected 1..65535", name);
        return 0;
}

/* runtime_policy: base64 of the policy JSON ("" for none). */
static int get_b64_text(const json_t *o, const char *name, char **out, struct vg_error *err)
{
        _cleanup_free_ char *b64 = NULL;
        uint8_t *raw = NULL;
        size_t len;
        int r = get_string(o, name, false, &b64, err);

        *out = NULL;
        if (r < 0 || !b64 || !*b64)
                return r;
        if (vg_b64_decode(b64, strlen(b64), VG_B64_STD, &raw, &len) < 0)
                return vg_error_set(err, -EINVAL, "field '%s': not base64", name);
        if (memchr(raw, 0, len)) {
                free(raw);
                return vg_error_set(err, -EINVAL, "field '%s': the decoded policy contains NUL",
                                    name);
        }
        char *s = realloc(raw, len + 1);
        if (!s) {
                free(raw);
                return -ENOMEM;
        }
        s[len] = '\0';
        *out = len ? s : NULL;
        if (!len)
                free(s);
        return 0;
}

static json_t *parse_object(const char *body, size_t len, struct vg_error *err)
{
        json_error_t je;
        json_t *j;

        if (!body || len == 0) {
                vg_error_set(err, -EINVAL, "Expected non zero content length");
                return NULL;
        }
        j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
        if (!j) {
                vg_error_set(err, -EINVAL, "malformed JSON body: %s at line %d column %d", je.text,
                             je.line, je.column);
                return NULL;
        }
        if (!json_is_object(j)) {
                json_decref(j);
                vg_error_set(err, -EINVAL, "malformed JSON body: expected an object");
                return NULL;
        }
        return j;
}

void vg_cv_add_request_clear(struct vg_cv_add_request *r)
{
        free(r->v);
        free(r->ip);
        free(r->tpm_policy);
        free(r->meta_data);
        free(r->ak_tpm);
        free(r->mtls_cert);
        if (r->revocation_key)
                OPENSSL_cleanse(r->revocation_key, strlen(r->revocation_key));
        free(r->revocation_key);
        free(r->runtime_policy_name);
        free(r->runtime_policy);
        free(r->runtime_policy_sig);
        free(r->runtime_policy_key);
        free(r->accept_hash);
        free(r->accept_enc);
        free(r->accept_sign);
        free(r->supported_version);
        free(r->verifier_ip);
        memset(r, 0, sizeof(*r));
}

int vg_cv_parse_add_request(const char *body, size_t len, struct vg_cv_add_request *out,
                            struct vg_error *err)
{
        json_auto_t *j = parse_object(body, len, err);
        int r;

        memset(out, 0, sizeof(*out));
        if (!j)
                return -EINVAL;
        if ((r = get_string(j, "ak_tpm", true, &out->ak_tpm, err)) < 0 ||
            (r = get_string(j, "cloudagent_ip", true, &out->ip, err)) < 0 ||
            (r = get_port(j, "cloudagent_port", true, &out->port, err)) < 0 ||
            (r = get_string(j, "v", false, &out->v, err)) < 0 ||
            (r = get_json_text(j, "tpm_policy", "{}", &out->tpm_policy, err)) < 0 ||
            (r = get_metadata(j, "metadata", &out->meta_data, err)) < 0 ||
            (r = get_string(j, "mtls_cert", false, &out->mtls_cert, err)) < 0 ||
            (r = get_string(j, "revocation_key", false, &out->revocation_key, err)) < 0 ||
            (r = get_string(j, "runtime_policy_name", false, &out->runtime_policy_name, err)) < 0 ||
            (r = get_b64_text(j, "runtime_policy", &out->runtime_policy, err)) < 0 ||
            (r = get_string(j, "runtime_policy_sig", false, &out->runtime_policy_sig, err)) < 0 ||
            (r = get_string(j, "runtime_policy_key", false, &out->runtime_policy_key, err)) < 0 ||
            (r = get_alg_list(j, "accept_tpm_hash_algs", &out->accept_hash, err)) < 0 ||
            (r = get_alg_list(j, "accept_tpm_encryption_algs", &out->accept_enc, err)) < 0 ||
            (r = get_alg_list(j, "accept_tpm_signing_algs", &out->accept_sign, err)) < 0 ||
            (r = get_string(j, "supported_version", false, &out->supported_version, err)) < 0 ||
            (r = get_string(j, "verifier_ip", false, &out->verifier_ip, err)) < 0 ||
            (r = get_port(j, "verifier_port", false, &out->verifier_port, err)) < 0)
                goto fail;
        if (out->v && *out->v) {
                _cleanup_free_ uint8_t *raw = NULL;
                size_t n = 0;
                if (vg_b64_decode(out->v, strlen(out->v), VG_B64_STD, &raw, &n) < 0 || n != 32) {
                        r = vg_error_set(err, -EINVAL, "field 'v': expected base64 of 32 bytes");
                        goto fail;
                }
                OPENSSL_cleanse(raw, n);
        } else {
                free(out->v);
                out->v = NULL;
        }
        if (strlen(out->ip) > 255) {
                r = vg_error_set(err, -EINVAL, "field 'cloudagent_ip' is too long");
                goto fail;
        }
        if (out->mtls_cert && strcmp(out->mtls_cert, "disabled") == 0) {
                free(out->mtls_cert);
                out->mtls_cert = NULL;
        }
        if (out->runtime_policy_name &&
            (!*out->runtime_policy_name || !vg_cv_agent_id_valid(out->runtime_policy_name))) {
                if (!*out->runtime_policy_name) {
                        free(out->runtime_policy_name);
                        out->runtime_policy_name = NULL;
                } else {
                        r = vg_error_set(err, -EINVAL,
                                         "field 'runtime_policy_name': letters, digits, '-', "
                                         "'_' and '.' only");
                        goto fail;
                }
        }
        return 0;
fail:
        vg_cv_add_request_clear(out);
        return r;
}

void vg_cv_allowlist_request_clear(struct vg_cv_allowlist_request *r)
{
        free(r->tpm_policy);
        free(r->runtime_policy);
        free(r->runtime_policy_sig);
        free(r->runtime_policy_key);
        memset(r, 0, sizeof(*r));
}

int vg_cv_parse_allowlist_request(const char *body, size_t len, struct vg_cv_allowlist_request *out,
                                  struct vg_error *err)
{
        json_auto_t *j = parse_object(body, len, err);
        int r;

        memset(out, 0, sizeof(*out));
        if (!j)
                return -EINVAL;
        if ((r = get_json_text(j, "tpm_policy", NULL, &out->tpm_policy, err)) < 0 ||
            (r = get_b64_text(j, "runtime_policy", &out->runtime_policy, err)) < 0 ||
            (r = get_string(j, "runtime_policy_sig", false, &out->runtime_policy_sig, err)) < 0 ||
            (r = get_string(j, "runtime_policy_key", false, &out->runtime_policy_key, err)) < 0)
                goto fail;
        if (!out->runtime_policy) {
                r = vg_error_set(err, -EINVAL, "field 'runtime_policy' is missing or empty");
                goto fail;
        }
        return 0;
fail:
        vg_cv_allowlist_request_clear(out);
        return r;
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

static bool check_version(struct vg_http_request *req)
{
        const char *v = vg_http_request_param(req, "version");

        for (size_t i = 0; i < VG_ARRAY_SIZE(api_versions); i++)
                if (v && strcmp(v, api_versions[i]) == 0)
                        return true;
        vg_http_refuse(req, 400, NULL,
                       "API version not supported: v%.10s (supported: 2.1, 2.2, 2.3, 2.4, 2.5)",
                       v ? v : "");
        return false;
}

/* Admin actions need a client certificate chaining to trusted_client_ca (the handshake checked
 * the chain; here its presence). /version and the /verify routes are public, as in Keylime
 * 2.5. */
static bool check_admin(struct vg_http_request *req)
{
        if (vg_http_request_peer_cert(req))
                return true;
        vg_http_refuse(req, 401, NULL, "a client certificate is required for this action (mTLS)");
        return false;
}

static const char *agent_param(struct vg_http_request *req)
{
        const char *id;

        if (!check_version(req) || !check_admin(req))
                return NULL;
        id = vg_http_request_param(req, "agent_id");
        if (!vg_cv_agent_id_valid(id)) {
                vg_http_refuse(req, 400, NULL, "agent_id not valid");
                return NULL;
        }
        return id;
}

static const char *body_text(struct vg_http_request *req, size_t *len)
{
        return (const char *)vg_http_request_body(req, len);
}

static json_t *str_or_null(const char *s)
{
        return s ? json_string(s) : json_null();
}

/* A JSON list stored as text, as a JSON value (null if absent). */
static json_t *json_list(const char *s)
{
        json_t *j = s ? json_loads(s, 0, NULL) : NULL;
        return j ? j : json_array();
}

/* keylime/cloud_verifier_common.py process_get_status */
static json_t *agent_status(struct vg_verifier *v, const struct vg_cv_agent *a)
{
        const char *status = "PENDING";
        char period[32], maxint[32];

        switch (a->state) {
        case VG_CV_GET_QUOTE:
        case VG_CV_GET_QUOTE_RETRY:
        case VG_CV_PROVIDE_V:
        case VG_CV_PROVIDE_V_RETRY:
                status = a->attestation_count > 0 ? "PASS" : "PENDING";
                break;
        case VG_CV_FAILED:
        case VG_CV_INVALID_QUOTE:
        case VG_CV_TENANT_FAILED:
                status = "FAIL";
                break;
        }
        snprintf(period, sizeof(period), "%ds", (int)v->o.quote_interval);
        snprintf(maxint, sizeof(maxint), "%ds", (int)(v->o.quote_interval * 5));
        json_t *o = json_object();
        json_object_set_new(o, "operational_state", json_integer(a->state));
        json_object_set_new(o, "operational_state_str", json_string(vg_cv_state_str(a->state)));
        json_object_set_new(o, "v", str_or_null(a->v_b64));
        json_object_set_new(o, "ip", str_or_null(a->ip));
        json_object_set_new(o, "port", json_integer(a->port));
        json_object_set_new(o, "tpm_policy", str_or_null(a->tpm_policy_json));
        json_object_set_new(o, "meta_data", str_or_null(a->meta_data));
        json_object_set_new(o, "has_mb_refstate", json_integer(vg_cv_boot_has_policy(a)));
        json_object_set_new(o, "mb_policy_name", str_or_null(a->mb_policy_name));
        json_object_set_new(o, "has_runtime_policy", json_integer(a->policy_name ? 1 : 0));
        json_object_set_new(o, "runtime_policy_name", str_or_null(a->policy_name));
        json_object_set_new(o, "accept_tpm_hash_algs", json_list(a->accept_hash));
        json_object_set_new(o, "accept_tpm_encryption_algs", json_list(a->accept_enc));
        json_object_set_new(o, "accept_tpm_signing_algs", json_list(a->accept_sign));
        json_object_set_new(o, "hash_alg", json_string(a->hash_alg_s ? a->hash_alg_s : ""));
        json_object_set_new(o, "enc_alg", json_string(a->enc_alg_s ? a->enc_alg_s : ""));
        json_object_set_new(o, "sign_alg", json_string(a->sign_alg_s ? a->sign_alg_s : ""));
        json_object_set_new(o, "verifier_id", json_string(v->o.uuid));
        json_object_set_new(o, "verifier_ip", str_or_null(a->verifier_ip));
        json_object_set_new(o, "verifier_port", json_integer(a->verifier_port));
        json_object_set_new(o, "severity_level", str_or_null(a->severity_level));
        json_object_set_new(o, "last_event_id", str_or_null(a->last_event_id));
        json_object_set_new(o, "attestation_count", json_integer(a->attestation_count));
        json_object_set_new(o, "last_received_quote", json_integer(a->last_received_quote));
        json_object_set_new(o, "last_successful_attestation",
                            json_integer(a->last_successful_attestation));
        json_object_set_new(o, "attestation_status", json_string(status));
        json_object_set_new(o, "attestation_period", json_string(period));
        json_object_set_new(o, "maximum_attestation_interval", json_string(maxint));
        /* vigil: where incremental IMA stands (the entry the next quote asks for). */
        json_object_set_new(o, "ima_next_entry",
                            json_integer(a->ima ? (json_int_t)vg_ima_state_next_entry(a->ima) : 0));
        return o;
}

/* The status of agents, each built on its owner thread (poll.c). */
struct status_ctx {
        struct vg_verifier *v;
        json_t **out;
};

static void status_one(struct vg_cv_agent *a, size_t i, void *ctx)
{
        struct status_ctx *c = ctx;

        c->out[i] = agent_status(c->v, a);
}

static json_t *agent_status_owned(struct vg_verifier *v, struct vg_cv_agent *a)
{
        json_t *out = NULL;
        struct status_ctx c = { v, &out };

        vg_cv_on_owners(v, &a, 1, status_one, &c);
        return out;
}

/* ---- /version -------------------------------------------------------------------------------- */

static void on_version(struct vg_http_request *req, void *userdata)
{
        json_t *list = json_array();

        (void)userdata;
        for (size_t i = 0; i < VG_ARRAY_SIZE(api_versions); i++)
                json_array_append_new(list, json_string(api_versions[i]));
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:o}", "current_version", VG_VERIFIER_API_CURRENT,
                                        "supported_versions", list));
}

/* ---- agents ---------------------------------------------------------------------------------- */

static void on_agent_get(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *id = agent_param(req);
        struct vg_cv_agent *a, *tmp = NULL;
        struct vg_error err = { 0 };

        if (!id)
                return;
        a = vg_cv_find(v, id);
        if (!a) {
                int r = vg_cv_db_read_agent(v, id, true, &tmp, &err);
                if (r == -ENOENT) {
                        vg_http_reply_error(req, 404, "agent id not found");
                        return;
                }
                if (r < 0) {
                        vg_err(VG_F("agent", id), "reading the agent failed: %s",
                               vg_error_str(&err));
                        vg_http_reply_error(req, 500, "Internal Server Error");
                        return;
                }
                a = tmp;
        }
        json_t *st = agent_status_owned(v, a);
        if (tmp) {
                /* Another verifier's agent: its id, not ours. */
                _cleanup_(vg_stmt_freep) struct vg_stmt *s = NULL;
                if (vg_store_prepare(v->db, "SELECT verifier_id FROM agents WHERE agent_id = $1",
                                     &s, &err) >= 0) {
                        vg_stmt_bind_text(s, 1, id);
                        if (vg_stmt_step(s, &err) > 0)
                                json_object_set_new(st, "verifier_id",
                                                    json_string(vg_stmt_column_text(s, 0, NULL)));
                }
        }
        vg_cv_agent_free(tmp);
        vg_http_reply_keylime(req, 200, "Success", st);
}

static void on_agent_list(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };
        const char *verifier = vg_http_request_query(req, "verifier");
        bool bulk = vg_http_request_query(req, "bulk") != NULL;
        int r;

        if (!check_version(req) || !check_admin(req))
                return;
        if (verifier && !*verifier)
                verifier = NULL;
        r = vg_store_prepare(v->db,
                             verifier ? "SELECT agent_id FROM agents WHERE verifier_id = $1 "
                                        "ORDER BY agent_id"
                                      : "SELECT agent_id FROM agents ORDER BY agent_id",
                             &st, &err);
        if (r >= 0 && verifier)
                vg_stmt_bind_text(st, 1, verifier);
        json_t *out = bulk ? json_object() : json_array();
        /* Bulk: the agents first, then their statuses in one command per poller thread. */
        struct vg_cv_agent **list = NULL;
        bool *tmp = NULL;
        size_t n = 0, cap = 0;
        while (r >= 0 && (r = vg_stmt_step(st, &err)) > 0) {
                const char *id = vg_stmt_column_text(st, 0, NULL);
                if (!bulk) {
                        /* Keylime answers with SQLAlchemy rows: one-element lists. */
                        json_array_append_new(out, json_pack("[s]", id));
                        continue;
                }
                struct vg_cv_agent *a = vg_cv_find(v, id), *t = NULL;
                if (!a && vg_cv_db_read_agent(v, id, true, &t, &err) == 0)
                        a = t;
                if (!a)
                        continue;
                if (n == cap) {
                        size_t c2 = cap ? cap * 2 : 256;
                        struct vg_cv_agent **l2 = realloc(list, c2 * sizeof(*l2));
                        bool *t2 = l2 ? realloc(tmp, c2 * sizeof(*t2)) : NULL;
                        if (l2)
                                list = l2;
                        if (!t2) {
                                vg_cv_agent_free(t);
                                r = vg_error_set(&err, -ENOMEM, "out of memory");
                                break;
                        }
                        tmp = t2;
                        cap = c2;
                }
                list[n] = a;
                tmp[n++] = t != NULL;
        }
        if (n) {
                json_t **sts = calloc(n, sizeof(*sts));
                struct status_ctx c = { v, sts };
                if (sts && r >= 0)
                        vg_cv_on_owners(v, list, n, status_one, &c);
                for (size_t i = 0; i < n; i++) {
                        if (sts && sts[i])
                                json_object_set_new(out, list[i]->id, sts[i]);
                        if (tmp[i])
                                vg_cv_agent_free(list[i]);
                }
                free(sts);
        }
        free(list);
        free(tmp);
        if (r < 0) {
                json_decref(out);
                vg_err(NULL, "listing agents failed: %s", vg_error_str(&err));
                vg_http_reply_error(req, 500, "Internal Server Error");
                return;
        }
        vg_http_reply_keylime(req, 200, "Success", bulk ? out : json_pack("{s:o}", "uuids", out));
}

static int policy_generator(const char *json)
{
        json_auto_t *j = json_loads(json, 0, NULL);
        json_t *g = json_object_get(json_object_get(j, "meta"), "generator");
        return json_is_integer(g) ? (int)json_integer_value(g) : 0;
}

static char *sha256_hex(const char *s)
{
        uint8_t d[32];

        if (vg_hash(VG_HASH_SHA256, s, strlen(s), d) < 0)
                return NULL;
        return vg_hex_encode(d, sizeof(d));
}

/* runtime_policy_key: base64 of a PEM public key or certificate. */
static int load_policy_key(const char *key_b64, EVP_PKEY **out, struct vg_error *err)
{
        _cleanup_free_ uint8_t *key = NULL;
        size_t klen;
        EVP_PKEY *pk;

        *out = NULL;
        if (vg_b64_decode(key_b64, strlen(key_b64), VG_B64_STD, &key, &klen) < 0)
                return vg_error_set(err, -EINVAL, "runtime_policy_key: not base64");
        BIO *b = BIO_new_mem_buf(key, (int)klen);
        pk = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
        if (!pk && b) {
                (void)BIO_reset(b);
                X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
                pk = x ? X509_get_pubkey(x) : NULL;
                X509_free(x);
        }
        BIO_free(b);
        ERR_clear_error();
        if (!pk)
                return vg_error_set(err, -EINVAL,
                                    "runtime_policy_key: not a PEM public key or certificate");
        *out = pk;
        return 0;
}

/* Detached signature of a runtime policy (runtime_policy_sig, runtime_policy_key: base64 of
 * the signature and of a PEM public key or certificate), ECDSA or RSA over SHA-256. */
static int check_policy_signature(const char *policy, const char *sig_b64, const char *key_b64,
                                  struct vg_error *err)
{
        _cleanup_free_ uint8_t *sig = NULL;
        size_t slen;
        EVP_PKEY *pk = NULL;
        int r = -EKEYREJECTED;

        if (!sig_b64 || !*sig_b64 || !key_b64 || !*key_b64)
                return vg_error_set(err, -EPERM,
                                    "runtime policy signature required: give a DSSE envelope "
                                    "(keylime-policy sign) with runtime_policy_key, or "
                                    "runtime_policy_sig and runtime_policy_key");
        if (vg_b64_decode(sig_b64, strlen(sig_b64), VG_B64_STD, &sig, &slen) < 0)
                return vg_error_set(err, -EINVAL, "runtime_policy_sig: not base64");
        if ((r = load_policy_key(key_b64, &pk, err)) < 0)
                return r;
        r = -EKEYREJECTED;
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        if (c && EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, pk) == 1 &&
            EVP_DigestVerify(c, sig, slen, (const uint8_t *)policy, strlen(policy)) == 1)
                r = 0;
        EVP_MD_CTX_free(c);
        EVP_PKEY_free(pk);
        ERR_clear_error();
        return r < 0 ? vg_error_set(err, r, "runtime policy signature does not verify") : 0;
}

/* A DSSE envelope (keylime-policy sign runtime) checked with runtime_policy_key, an EC public
 * key or certificate, as Keylime's verifier does (signing.verify_dsse_envelope). */
static int check_policy_dsse(const char *envelope, const char *key_b64, struct vg_error *err)
{
        EVP_PKEY *pk = NULL;
        int r;

        if (!key_b64 || !*key_b64)
                return vg_error_set(err, -EPERM,
                                    "Runtime policy signature verification required but no key "
                                    "was given (runtime_policy_key: base64 of the EC public key "
                                    "or certificate PEM)");
        if ((r = load_policy_key(key_b64, &pk, err)) < 0)
                return r;
        r = vg_dsse_verify(envelope, strlen(envelope), pk, NULL, err);
        EVP_PKEY_free(pk);
        if (r == -EKEYREJECTED)
                return vg_error_set(err, -EKEYREJECTED,
                                    "Runtime policy failed DSSE signature verification");
        if (r < 0)
                vg_error_prefix(err, "runtime_policy (DSSE): ");
        return r;
}

/* Validate a runtime policy (parsed into the shared cache) and its signature: a DSSE envelope
 * is verified when a key is given or signatures are required; a plain policy's detached
 * signature likewise. Returns the HTTP code to refuse with, or 0. */
static int validate_policy(struct vg_verifier *v, const char *json, const char *sig,
                           const char *key, struct vg_error *err)
{
        struct vg_ima_policy *p = NULL;
        _cleanup_free_ char *inner = NULL;
        int r = vg_cv_policy_unwrap(json, &inner, err);

        if (r < 0)
                return 400;
        if (inner) {
                if (v->o.require_allow_list_signatures || (key && *key)) {
                        r = check_policy_dsse(json, key, err);
                        if (r < 0)
                                return r == -EPERM || r == -EKEYREJECTED ? 401 : 400;
                }
        } else if (v->o.require_allow_list_signatures || (sig && *sig)) {
                r = check_policy_signature(json, sig, key, err);
                if (r < 0)
                        return r == -EPERM || r == -EKEYREJECTED ? 401 : 400;
        }
        const char *pol = inner ? inner : json;
        if (vg_ima_policy_cache_get(v->policies, pol, strlen(pol), &p, err) < 0) {
                vg_error_prefix(err, "Runtime policy is malformatted: ");
                return 400;
        }
        vg_ima_policy_unref(p);
        return 0;
}

static int store_policy(struct vg_verifier *v, const char *name, const char *json,
                        const char *tpm_policy, const char *sig, const char *key, bool update,
                        struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        _cleanup_free_ char *sum = sha256_hex(json);
        int r;

        r = vg_store_prepare(v->db,
                             update ? "UPDATE allowlists SET runtime_policy = $2, tpm_policy = $3, "
                                      "checksum = $4, generator = $5, runtime_policy_sig = $6, "
                                      "runtime_policy_key = $7 WHERE name = $1"
                                    : "INSERT INTO allowlists (name, runtime_policy, tpm_policy, "
                                      "checksum, generator, runtime_policy_sig, "
                                      "runtime_policy_key) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, name);
        vg_stmt_bind_text(st, 2, json);
        vg_stmt_bind_text(st, 3, tpm_policy);
        vg_stmt_bind_text(st, 4, sum ? sum : "");
        {
                _cleanup_free_ char *inner = NULL;
                struct vg_error e2 = { 0 };
                vg_cv_policy_unwrap(json, &inner, &e2);
                vg_stmt_bind_int64(st, 5, policy_generator(inner ? inner : json));
        }
        vg_stmt_bind_text(st, 6, sig);
        vg_stmt_bind_text(st, 7, key);
        r = vg_stmt_exec(st, err);
        if (r >= 0 && update && vg_stmt_changes(st) == 0)
                return -ENOENT;
        return r;
}

static bool agent_exists(struct vg_verifier *v, const char *id, struct vg_error *err, int *r)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;

        *r = vg_store_prepare(v->db, "SELECT 1 FROM agents WHERE agent_id = $1", &st, err);
        if (*r < 0)
                return false;
        vg_stmt_bind_text(st, 1, id);
        *r = vg_stmt_step(st, err);
        return *r > 0;
}

static void on_agent_add(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *id = agent_param(req);
        struct vg_cv_add_request rq;
        struct vg_error err = { 0 };
        size_t len;
        int r, code;

        if (!id)
                return;
        const char *body = body_text(req, &len);
        if (vg_cv_parse_add_request(body, len, &rq, &err) < 0) {
                vg_http_refuse(req, 400, id, "%s", vg_error_str(&err));
                return;
        }
        if (v->o.enable_agent_mtls && !rq.mtls_cert) {
                vg_http_refuse(req, 400, id, "mTLS certificate for agent is required!");
                goto out;
        }
        if (agent_exists(v, id, &err, &r) || r < 0) {
                if (r < 0)
                        vg_http_reply_error(req, 500, "Internal Server Error");
                else
                        vg_http_refuse(
                            req, 409, id,
                            "Agent of uuid %s already exists. Please use delete or update.", id);
                goto out;
        }
        const char *name = rq.runtime_policy_name;
        if (rq.runtime_policy) {
                if (!name)
                        name = id;
                _cleanup_free_ char *existing = NULL;
                r = vg_cv_db_policy_get(v, name, &existing, NULL, &err);
                if (r == 0) {
                        vg_http_refuse(
                            req, 409, id,
                            "IMA policy with name %s already exists. Please use a different "
                            "name or delete the allowlist from the verifier.",
                            name);
                        goto out;
                }
                if ((code = validate_policy(v, rq.runtime_policy, rq.runtime_policy_sig,
                                            rq.runtime_policy_key, &err)) != 0) {
                        vg_http_refuse(req, code, id, "%s", vg_error_str(&err));
                        goto out;
                }
        } else if (name) {
                r = vg_cv_db_policy_get(v, name, NULL, NULL, &err);
                if (r == -ENOENT) {
                        vg_http_refuse(req, 404, id, "Could not find IMA policy with name %s!",
                                       name);
                        goto out;
                }
        }

        struct vg_cv_agent *a = calloc(1, sizeof(*a));
        if (!a)
                goto oom;
        a->v = v;
        a->id = strdup(id);
        a->ip = TAKE_PTR(rq.ip);
        a->port = rq.port;
        a->v_b64 = TAKE_PTR(rq.v);
        a->tpm_policy_json = TAKE_PTR(rq.tpm_policy);
        a->meta_data = TAKE_PTR(rq.meta_data);
        a->ak_tpm = TAKE_PTR(rq.ak_tpm);
        a->mtls_cert = TAKE_PTR(rq.mtls_cert);
        a->revocation_key = TAKE_PTR(rq.revocation_key);
        a->accept_hash = TAKE_PTR(rq.accept_hash);
        a->accept_enc = TAKE_PTR(rq.accept_enc);
        a->accept_sign = TAKE_PTR(rq.accept_sign);
        a->supported_version = TAKE_PTR(rq.supported_version);
        if (a->supported_version) {
                bool ok = false;
                for (size_t i = 0; i < VG_ARRAY_SIZE(api_versions); i++)
                        ok |= strcmp(a->supported_version, api_versions[i]) == 0;
                if (!ok) {
                        free(a->supported_version);
                        a->supported_version = strdup(VG_VERIFIER_API_CURRENT);
                }
        }
        a->verifier_ip =
            rq.verifier_ip ? TAKE_PTR(rq.verifier_ip) : strdup(vg_config_string(v->cfg, "ip"));
        a->verifier_port = rq.verifier_port ? rq.verifier_port : vg_verifier_port(v);
        a->policy_name = name ? strdup(name) : NULL;
        a->state = VG_CV_START;
        /* measured boot (boot.c): mb_policy_name and/or an inline mb_policy */
        if ((code = vg_cv_boot_add(v, a, body, len, &err)) != 0) {
                vg_cv_agent_free(a);
                if (code >= 500)
                        vg_http_reply_error(req, code, "Internal Server Error");
                else
                        vg_http_refuse(req, code, id, "%s", vg_error_str(&err));
                goto out;
        }

        /* The AK, tpm_policy and TLS are checked before anything is stored. */
        if (rq.runtime_policy &&
            (r = store_policy(v, name, rq.runtime_policy, a->tpm_policy_json, rq.runtime_policy_sig,
                              rq.runtime_policy_key, false, &err)) < 0) {
                vg_cv_agent_free(a);
                vg_err(VG_F("agent", id), "storing the runtime policy failed: %s",
                       vg_error_str(&err));
                vg_http_reply_error(req, 500, "Internal Server Error");
                goto out;
        }
        bool stored_policy = rq.runtime_policy != NULL;
        if ((r = vg_cv_agent_prepare(v, a, &err)) < 0 ||
            (r = vg_cv_db_insert_agent(v, a, &err)) < 0) {
                if (stored_policy) {
                        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
                        struct vg_error e2 = { 0 };
                        if (vg_store_prepare(v->db, "DELETE FROM allowlists WHERE name = $1", &st,
                                             &e2) >= 0) {
                                vg_stmt_bind_text(st, 1, name);
                                vg_stmt_exec(st, &e2);
                        }
                }
                vg_cv_boot_add_undo(v, a);
                vg_cv_agent_free(a);
                vg_http_refuse(req, r == -EEXIST ? 409 : 400, id, "%s", vg_error_str(&err));
                goto out;
        }
        if (vg_cv_boot_add_done(v, a, &err) < 0)
                vg_err(VG_F("agent", id), "storing mb_policy_name failed: %s", vg_error_str(&err));
        if (vg_cv_link(v, a) < 0) {
                vg_cv_agent_free(a);
                goto oom;
        }
        vg_cv_agent_assign(v, a);
        vg_info(VG_F("agent", id, "peer", vg_http_request_peer(req), "policy", a->policy_name),
                "agent %s added (%s:%lld, mask 0x%x%s); polling starts", id, a->ip,
                (long long)a->port, a->mask, a->v_b64 ? ", V to deliver" : "");
        vg_cv_agent_start(a, 0);
        vg_http_reply_keylime(req, 200, "Success", NULL);
        goto out;
oom:
        vg_http_reply_error(req, 500, "out of memory");
out:
        vg_cv_add_request_clear(&rq);
}

static void on_agent_delete(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *id = agent_param(req);
        struct vg_error err = { 0 };
        struct vg_cv_agent *a;

        if (!id)
                return;
        a = vg_cv_find(v, id);
        if (!a) {
                int r;
                if (agent_exists(v, id, &err, &r))
                        vg_http_reply_error(req, 404, "agent id associated to this verifier");
                else
                        vg_http_reply_error(req, 404, "agent id not found");
                return;
        }
        /* Stopping (on its poller thread) cancels any request in flight and hands the agent
         * to this thread, so the row can go at once. */
        vg_cv_agent_stop(a);
        if (vg_cv_db_delete_agent(v, id, &err) < 0) {
                vg_err(VG_F("agent", id), "deleting failed: %s", vg_error_str(&err));
                vg_http_reply_error(req, 500, "Internal Server Error");
                vg_cv_agent_start(a, v->o.quote_interval);
                return;
        }
        vg_cv_unlink(v, a);
        vg_cv_agent_free(a);
        vg_cv_boot_agent_deleted(v, id);
        vg_info(VG_F("agent", id, "peer", vg_http_request_peer(req)), "agent %s deleted", id);
        vg_http_reply_keylime(req, 200, "Success", NULL);
}

static void on_agent_reactivate(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *id = agent_param(req);
        struct vg_error err = { 0 };
        struct vg_cv_agent *a;

        if (!id)
                return;
        if (!(a = vg_cv_find(v, id))) {
                vg_http_reply_error(req, 404, "agent id not found");
                return;
        }
        vg_cv_agent_stop(a);
        /* The policy may have been replaced (PUT /allowlists): derive everything afresh. */
        if (vg_cv_agent_prepare(v, a, &err) < 0) {
                vg_http_refuse(req, 400, id, "%s", vg_error_str(&err));
                return;
        }
        vg_cv_agent_reset_failure(a);
        vg_cv_db_write_state(v, a, &err);
        vg_info(VG_F("agent", id, "peer", vg_http_request_peer(req)),
                "agent %s reactivated: failure cleared, IMA replayed from entry 0", id);
        vg_cv_agent_start(a, 0);
        vg_http_reply_keylime(req, 200, "Success", NULL);
}

static void on_agent_stop(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *id = agent_param(req);
        struct vg_error err = { 0 };
        struct vg_cv_agent *a;

        if (!id)
                return;
        if (!(a = vg_cv_find(v, id))) {
                vg_http_reply_error(req, 404, "agent id not found");
                return;
        }
        vg_cv_agent_stop(a);
        a->state = VG_CV_TENANT_FAILED;
        if (vg_cv_db_write_state(v, a, &err) < 0) {
                vg_err(VG_F("agent", id), "storing the state failed: %s", vg_error_str(&err));
                vg_http_reply_error(req, 500, "Internal server error");
                return;
        }
        vg_info(VG_F("agent", id, "peer", vg_http_request_peer(req)),
                "agent %s stopped by the tenant; polling stopped", id);
        vg_http_reply_keylime(req, 200, "Success", NULL);
}

/* ---- allowlists ------------------------------------------------------------------------------ */

static const char *policy_param(struct vg_http_request *req)
{
        const char *name;

        if (!check_version(req) || !check_admin(req))
                return NULL;
        name = vg_http_request_param(req, "name");
        if (!vg_cv_agent_id_valid(name)) {
                vg_http_refuse(req, 400, NULL,
                               "Invalid URL: policy name with letters, digits, '-', '_' "
                               "and '.' expected");
                return NULL;
        }
        return name;
}

static void on_policy_list(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };
        int r;

        if (!check_version(req) || !check_admin(req))
                return;
        json_t *names = json_array();
        r = vg_store_prepare(v->db, "SELECT name FROM allowlists ORDER BY name", &st, &err);
        while (r >= 0 && (r = vg_stmt_step(st, &err)) > 0)
                json_array_append_new(names, json_string(vg_stmt_column_text(st, 0, NULL)));
        if (r < 0) {
                json_decref(names);
                vg_http_reply_error(req, 500, "Failed to get names of allowlists");
                return;
        }
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:o}", "runtimepolicy names", names));
}

static void on_policy_get(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *name = policy_param(req);
        _cleanup_free_ char *json = NULL, *tpm = NULL;
        struct vg_error err = { 0 };

        if (!name)
                return;
        int r = vg_cv_db_policy_get(v, name, &json, &tpm, &err);
        if (r == -ENOENT) {
                vg_http_reply_error(req, 404, "Runtime policy %s not found", name);
                return;
        }
        if (r < 0) {
                vg_http_reply_error(req, 500, "Failed to get allowlist");
                return;
        }
        /* Keylime's GET spells it "tmp_policy"; "tpm_policy" is given too. */
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:o, s:o, s:s}", "name", name, "tmp_policy",
                                        str_or_null(tpm), "tpm_policy", str_or_null(tpm),
                                        "runtime_policy", json));
}

static void policy_write(struct vg_http_request *req, struct vg_verifier *v, bool update)
{
        const char *name = policy_param(req);
        struct vg_cv_allowlist_request rq;
        struct vg_error err = { 0 };
        size_t len;
        int r, code;

        if (!name)
                return;
        const char *body = body_text(req, &len);
        if (vg_cv_parse_allowlist_request(body, len, &rq, &err) < 0) {
                vg_http_refuse(req, 400, NULL, "%s", vg_error_str(&err));
                return;
        }
        if ((code = validate_policy(v, rq.runtime_policy, rq.runtime_policy_sig,
                                    rq.runtime_policy_key, &err)) != 0) {
                vg_http_refuse(req, code, NULL, "%s", vg_error_str(&err));
                goto out;
        }
        r = store_policy(v, name, rq.runtime_policy, rq.tpm_policy, rq.runtime_policy_sig,
                         rq.runtime_policy_key, update, &err);
        if (r == -EEXIST) {
                vg_http_refuse(req, 409, NULL, "Runtime policy with name %s already exists", name);
        } else if (r == -ENOENT) {
                vg_http_refuse(
                    req, 404, NULL,
                    "Runtime policy with name %s does not already exist, use POST to create", name);
        } else if (r < 0) {
                vg_err(VG_F("policy", name), "storing failed: %s", vg_error_str(&err));
                vg_http_reply_error(req, 500, "Internal Server Error");
        } else {
                vg_info(VG_F("policy", name, "peer", vg_http_request_peer(req)),
                        "runtime policy %s %s; agents using it pick it up at reactivate", name,
                        update ? "replaced" : "created");
                vg_http_reply_keylime(req, 201, "Created", NULL);
        }
out:
        vg_cv_allowlist_request_clear(&rq);
}

static void on_policy_post(struct vg_http_request *req, void *userdata)
{
        policy_write(req, userdata, false);
}

static void on_policy_put(struct vg_http_request *req, void *userdata)
{
        policy_write(req, userdata, true);
}

static void on_policy_delete(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *name = policy_param(req);
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };
        int r;

        if (!name)
                return;
        r = vg_cv_db_policy_get(v, name, NULL, NULL, &err);
        if (r == -ENOENT) {
                vg_http_reply_error(req, 404, "Runtime policy %s not found", name);
                return;
        }
        r = vg_store_prepare(v->db, "SELECT agent_id FROM agents WHERE runtime_policy_name = $1",
                             &st, &err);
        if (r >= 0) {
                vg_stmt_bind_text(st, 1, name);
                r = vg_stmt_step(st, &err);
        }
        if (r > 0) {
                vg_http_refuse(req, 409, vg_stmt_column_text(st, 0, NULL),
                               "Can't delete allowlist as it's currently in use by agent %s",
                               vg_stmt_column_text(st, 0, NULL));
                return;
        }
        vg_stmt_free(TAKE_PTR(st));
        r = vg_store_prepare(v->db, "DELETE FROM allowlists WHERE name = $1", &st, &err);
        if (r >= 0) {
                vg_stmt_bind_text(st, 1, name);
                r = vg_stmt_exec(st, &err);
        }
        if (r < 0) {
                vg_http_reply_error(req, 500, "Database error: %s", vg_error_str(&err));
                return;
        }
        vg_info(VG_F("policy", name), "runtime policy %s deleted", name);
        vg_http_reply_header(req, "Content-Type", "application/json");
        vg_http_reply(req, 204, NULL, NULL, 0);
}

/* ---- /verify ----------------------------------------------------------------------------------
 */

static void copy_nk(struct vg_cv_agent *a, size_t i, void *ctx)
{
        (void)i;
        *(char **)ctx = a->public_key ? strdup(a->public_key) : NULL;
}

static void on_verify_identity(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *id = vg_http_request_query(req, "agent_uuid");
        const char *quote = vg_http_request_query(req, "quote");
        const char *nonce = vg_http_request_query(req, "nonce");
        const char *hash = vg_http_request_query(req, "hash_alg");
        struct vg_cv_agent *a, *tmp = NULL;
        struct vg_error err = { 0 };
        enum vg_hash_alg alg;

        if (!check_version(req))
                return;
        if (!id || !quote || !nonce || !hash) {
                vg_http_reply_error(req, 400,
                                    "missing query parameter: agent_uuid, quote, nonce "
                                    "and hash_alg are required");
                return;
        }
        if (!vg_cv_agent_id_valid(id) || vg_hash_alg_from_name(hash, &alg) < 0) {
                vg_http_reply_error(req, 400, "invalid agent_uuid or hash_alg");
                return;
        }
        a = vg_cv_find(v, id);
        if (!a && vg_cv_db_read_agent(v, id, true, &tmp, &err) == 0 &&
            vg_tpm_public_parse_b64(tmp->ak_tpm, &tmp->ak, &err) == 0)
                a = tmp;
        if (!a || !a->ak) {
                vg_cv_agent_free(tmp);
                vg_http_reply_error(req, 404, "agent id not found");
                return;
        }
        /* The NK changes on the poller thread: a copy from there. */
        _cleanup_free_ char *nk = NULL;
        vg_cv_on_owners(v, &a, 1, copy_nk, &nk);
        if (!nk) {
                vg_cv_agent_free(tmp);
                vg_http_reply_error(req, 400, "the agent's key is not known yet (no quote so far)");
                return;
        }
        struct vg_cv_failure f = { 0 };
        struct vg_cv_verdict vd;
        struct vg_cv_evidence ev = {
                .quote = quote,
                .nonce = nonce,
                .hash_alg = alg,
                .ak = a->ak->pkey,
                .nk_pem = nk,
        };
        int valid = vg_cv_evaluate(&ev, &vd, &f) == 0 && vd.quote_ok && f.n == 0;
        if (!valid && f.n)
                vg_info(VG_F("agent", id, "event", f.ev[0].id), "identity quote not valid: %s",
                        f.ev[0].message);
        vg_cv_failure_clear(&f);
        vg_cv_agent_free(tmp);
        vg_http_reply_keylime(req, 200, "Success", json_pack("{s:i}", "valid", valid));
}

static void on_verify_evidence(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        struct vg_error err = { 0 };
        size_t len;
        const char *body = body_text(req, &len);
        json_auto_t *j = NULL;
        json_t *data;
        struct vg_cv_failure f = { 0 };
        _cleanup_tpm_public_ struct vg_tpm_public *ak = NULL;
        _cleanup_tpm_policy_ struct vg_tpm_policy *tp = NULL;
        _cleanup_ima_policy_ struct vg_ima_policy *ip = NULL;
        _cleanup_(vg_ima_state_freep) struct vg_ima_state *ist = NULL;
        _cleanup_free_ char *policy_text = NULL;
        enum vg_hash_alg alg = VG_HASH_SHA256;

        if (!check_version(req))
                return;
        if (!(j = parse_object(body, len, &err))) {
                vg_http_reply_error(req, 400, "%s", vg_error_str(&err));
                return;
        }
        const char *type = json_string_value(json_object_get(j, "type"));
        data = json_object_get(j, "data");
        if (!type || !*type) {
                vg_http_reply_error(req, 400, "missing parameter 'type'");
                return;
        }
        if (!json_is_object(data)) {
                vg_http_reply_error(req, 400, "missing parameter 'data'");
                return;
        }
        if (strcmp(type, "tpm") != 0) {
                vg_http_reply_error(req, 400, "invalid evidence type");
                return;
        }
        const char *quote = json_string_value(json_object_get(data, "quote"));
        const char *nonce = json_string_value(json_object_get(data, "nonce"));
        const char *hash = json_string_value(json_object_get(data, "hash_alg"));
        const char *tak = json_string_value(json_object_get(data, "tpm_ak"));
        const char *ima = json_string_value(json_object_get(data, "ima_measurement_list"));
        const json_t *tpol = json_object_get(data, "tpm_policy");
        const json_t *rpol = json_object_get(data, "runtime_policy");
        bool input_error = false;

        if (!quote || !nonce || !hash || !tak) {
                vg_cv_failure_add(&f, "tpm.missing_param", false, true, NULL, NULL, NULL,
                                  UINT64_MAX, "quote, nonce, hash_alg and tpm_ak are required");
                input_error = true;
        } else if (vg_hash_alg_from_name(hash, &alg) < 0) {
                vg_cv_failure_add(&f, "tpm.invalid_hash_alg", false, true, NULL, NULL, hash,
                                  UINT64_MAX, "unknown hash algorithm");
                input_error = true;
        } else if (vg_tpm_public_parse_b64(tak, &ak, &err) < 0) {
                vg_cv_failure_add(&f, "tpm.invalid_tpm_ak", false, true, NULL, NULL, NULL,
                                  UINT64_MAX, "tpm_ak: %s", vg_error_str(&err));
                input_error = true;
        }
        if (!input_error && tpol && !json_is_null(tpol)) {
                _cleanup_free_ char *t = json_is_string(tpol) ? strdup(json_string_value(tpol))
                                                              : json_dumps(tpol, JSON_COMPACT);
                if (!t || vg_tpm_policy_parse(t, &tp, &err) < 0) {
                        vg_cv_failure_add(&f, "tpm.invalid_tpm_policy", false, true, NULL, NULL,
                                          NULL, UINT64_MAX, "tpm_policy: %s", vg_error_str(&err));
                        input_error = true;
                }
        }
        if (!input_error && rpol && !json_is_null(rpol)) {
                /* The policy JSON, as a string or an object, or base64 of it. */
                if (json_is_object(rpol))
                        policy_text = json_dumps(rpol, JSON_COMPACT);
                else if (json_is_string(rpol) && json_string_value(rpol)[0] == '{')
                        policy_text = strdup(json_string_value(rpol));
                else if (json_is_string(rpol)) {
                        json_auto_t *w = json_pack("{s:O}", "runtime_policy", rpol);
                        get_b64_text(w, "runtime_policy", &policy_text, &err);
                }
                if (!policy_text || vg_ima_policy_cache_get(v->policies, policy_text,
                                                            strlen(policy_text), &ip, &err) < 0) {
                        vg_cv_failure_add(&f, "tpm.missing_policy", false, true, NULL, NULL, NULL,
                                          UINT64_MAX, "runtime_policy: %s", vg_error_str(&err));
                        input_error = true;
                }
        }
        if (!input_error && ip && !ima) {
                vg_cv_failure_add(&f, "tpm.missing_param", false, true, NULL, NULL, NULL,
                                  UINT64_MAX, "runtime_policy given without ima_measurement_list");
                input_error = true;
        }
        struct vg_cv_verdict vd = { 0 };
        if (!input_error) {
                if (ip && vg_ima_state_new(alg, &ist) < 0)
                        goto oom;
                struct vg_cv_evidence ev = {
                        .quote = quote,
                        .nonce = nonce,
                        .hash_alg = alg,
                        .ak = ak->pkey,
                        .tpm_policy = tp,
                        .ima_policy = ip,
                        .ima_state = ist,
                        .ima_list = ima,
                        .ima_list_len = ima ? strlen(ima) : 0,
                        .ima_requested = ip != NULL,
                        .fail_on_violations = !v->o.ignore_tomtou_errors,
                };
                if (vg_cv_evaluate(&ev, &vd, &f) < 0)
                        goto oom;
                if (ip && f.n == 0 && !vd.ima_pcr_matched)
                        vg_cv_failure_add(&f, "ima.pcr_mismatch", false, true, NULL, NULL, NULL,
                                          UINT64_MAX,
                                          "IMA measurement list does not match TPM PCR 10");
        }
        json_t *failures = json_array();
        for (size_t i = 0; i < f.n; i++)
                json_array_append_new(failures, vg_cv_event_json(&f.ev[i]));
        json_t *claims = json_object();
        if (vd.quote_ok) {
                json_object_set_new(claims, "reset_count", json_integer(vd.clock.reset_count));
                json_object_set_new(claims, "restart_count", json_integer(vd.clock.restart_count));
                json_object_set_new(claims, "clock", json_integer((json_int_t)vd.clock.clock));
                if (ip)
                        json_object_set_new(claims, "ima_entries",
                                            json_integer((json_int_t)vd.ima.entries));
        }
        json_t *res =
            json_pack("{s:b, s:o, s:o}", "valid", f.n == 0, "failures", failures, "claims", claims);
        vg_cv_failure_clear(&f);
        if (input_error)
                vg_http_reply_keylime(req, 400, "Bad Request", res);
        else
                vg_http_reply_keylime(req, 200, "Success", res);
        return;
oom:
        vg_cv_failure_clear(&f);
        vg_http_reply_error(req, 500, "Internal Server Error: Failed to process attestation data");
}

/* ==== baselines (issue 7; src/lib/baseline.h) ================================================
 * Known-good late-boot measurements, their journal, an agent's latest authentic quote's PCR
 * values and relearning onto a known-good baseline. Admin routes (mTLS client certificate);
 * every change is journaled with the certificate's subject as the actor. */

static const char *baseline_actor(struct vg_http_request *req)
{
        const char *s = vg_http_request_peer_subject(req);

        return s && *s ? s : vg_http_request_peer(req);
}

static const char *baseline_param(struct vg_http_request *req)
{
        const char *name;

        if (!check_version(req) || !check_admin(req))
                return NULL;
        name = vg_http_request_param(req, "name");
        if (!vg_baseline_name_valid(name)) {
                vg_http_refuse(req, 400, NULL,
                               "Invalid URL: baseline name with letters, digits, '-', '_' and "
                               "'.' expected (1-128 characters, not 'history')");
                return NULL;
        }
        return name;
}

struct quoted_ctx {
        struct vg_measurements *out;
        int r;
};

static void copy_quoted(struct vg_cv_agent *a, size_t i, void *ctx)
{
        struct quoted_ctx *c = ctx;

        (void)i;
        c->r = vg_measurements_copy(c->out, &a->quoted);
}

/* The agent's latest authentic quote's PCR values (out->n == 0: none yet); -ENOENT when the
 * agent is unknown (to any verifier on this database). */
static int agent_quoted(struct vg_verifier *v, const char *id, struct vg_measurements *out,
                        struct vg_error *err)
{
        struct vg_cv_agent *a = vg_cv_find(v, id), *tmp = NULL;
        struct quoted_ctx c = { out, 0 };
        int r;

        if (a) {
                vg_cv_on_owners(v, &a, 1, copy_quoted, &c);
                return c.r;
        }
        r = vg_cv_db_read_agent(v, id, true, &tmp, err);
        if (r < 0)
                return r;
        r = vg_measurements_copy(out, &tmp->quoted);
        vg_cv_agent_free(tmp);
        return r;
}

static void reply_db_error(struct vg_http_request *req, const char *what, struct vg_error *err)
{
        vg_err(NULL, "%s failed: %s", what, vg_error_str(err));
        vg_http_reply_error(req, 500, "Internal Server Error: %s failed", what);
}

static void on_baseline_list(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        struct vg_baseline *list = NULL;
        struct vg_error err = { 0 };
        size_t n = 0;

        if (!check_version(req) || !check_admin(req))
                return;
        if (vg_baseline_list(v->db, &list, &n, &err) < 0) {
                reply_db_error(req, "listing baselines", &err);
                return;
        }
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, vg_baseline_json(&list[i]));
        vg_baseline_list_free(list, n);
        vg_http_reply_keylime(req, 200, "Success", json_pack("{s:o}", "baselines", a));
}

static void on_baseline_get(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *name = baseline_param(req);
        struct vg_baseline b;
        struct vg_error err = { 0 };
        int r;

        if (!name)
                return;
        r = vg_baseline_get(v->db, name, &b, &err);
        if (r == -ENOENT) {
                vg_http_reply_error(req, 404, "known-good baseline %s not found", name);
                return;
        }
        if (r < 0) {
                reply_db_error(req, "reading a baseline", &err);
                return;
        }
        vg_http_reply_keylime(req, 200, "Success", vg_baseline_json(&b));
        vg_baseline_clear(&b);
}

static void on_baseline_post(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *name = baseline_param(req);
        struct vg_measurements m = { 0 };
        struct vg_error err = { 0 };
        _cleanup_free_ char *source = NULL;
        size_t ignored = 0;
        int r;

        if (!name)
                return;
        json_auto_t *body = vg_http_request_json(req, &err);
        if (!json_is_object(body)) {
                vg_http_refuse(req, 400, NULL,
                               "body: expected {\"measurements\": [...]} or "
                               "{\"fromAgent\": \"<uuid>\"}%s%s",
                               body ? "" : ": ", body ? "" : vg_error_str(&err));
                return;
        }
        const json_t *from = json_object_get(body, "fromAgent");
        if (from) {
                const char *id = json_string_value(from);
                if (!vg_cv_agent_id_valid(id)) {
                        vg_http_refuse(req, 400, NULL, "fromAgent: agent id not valid");
                        return;
                }
                r = agent_quoted(v, id, &m, &err);
                if (r == -ENOENT) {
                        vg_http_refuse(req, 404, id, "agent %s not found", id);
                        goto out;
                }
                if (r < 0) {
                        reply_db_error(req, "reading the agent", &err);
                        goto out;
                }
                if (m.n == 0) {
                        vg_http_refuse(req, 409, id, "agent %s has no good quote yet", id);
                        goto out;
                }
                struct vg_measurements late = { 0 };
                vg_measurements_filter(&late, &m, vg_pcr_late_boot, NULL);
                size_t nl = late.n;
                vg_measurements_clear(&late);
                if (nl == 0) {
                        vg_http_refuse(req, 409, id,
                                       "agent %s's latest quote has no late-boot PCR (4, 5, 8, "
                                       "9, 11-14): add them to its tpm_policy mask",
                                       id);
                        goto out;
                }
                if (asprintf(&source, "agent:%s", id) < 0)
                        source = NULL;
        } else {
                const char *s = json_string_value(json_object_get(body, "source"));
                if (vg_measurements_from_json(body, &m, &err) < 0) {
                        vg_http_refuse(req, 400, NULL, "%s", vg_error_str(&err));
                        goto out;
                }
                if (asprintf(&source, "import:%.200s", s && *s ? s : "api") < 0)
                        source = NULL;
        }
        if (!source) {
                vg_http_reply_error(req, 500, "out of memory");
                goto out;
        }
        r = vg_baseline_add(v->db, name, &m, source, baseline_actor(req), &ignored, &err);
        if (r == -EEXIST) {
                vg_http_refuse(req, 409, NULL, "known-good baseline %s already exists", name);
        } else if (r == -EINVAL) {
                vg_http_refuse(req, 400, NULL, "%s", vg_error_str(&err));
        } else if (r < 0) {
                reply_db_error(req, "adding a baseline", &err);
        } else {
                struct vg_baseline b;
                vg_info(VG_F("baseline", name, "peer", vg_http_request_peer(req)),
                        "known-good baseline %s added from %s by %s", name, source,
                        baseline_actor(req));
                json_t *res = NULL;
                if (vg_baseline_get(v->db, name, &b, &err) == 0) {
                        res = vg_baseline_json(&b);
                        vg_baseline_clear(&b);
                        json_object_set_new(res, "ignored", json_integer((json_int_t)ignored));
                }
                vg_http_reply_keylime(req, 201, "Created", res);
        }
out:
        vg_measurements_clear(&m);
}

static void on_baseline_delete(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *name = baseline_param(req);
        struct vg_error err = { 0 };
        int r;

        if (!name)
                return;
        r = vg_baseline_remove(v->db, name, baseline_actor(req), &err);
        if (r == -ENOENT) {
                vg_http_reply_error(req, 404, "known-good baseline %s not found", name);
                return;
        }
        if (r < 0) {
                reply_db_error(req, "removing a baseline", &err);
                return;
        }
        vg_info(VG_F("baseline", name, "peer", vg_http_request_peer(req)),
                "known-good baseline %s removed by %s", name, baseline_actor(req));
        vg_http_reply_keylime(req, 200, "Success", NULL);
}

static void on_baseline_history(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        struct vg_journal_entry *e = NULL;
        struct vg_error err = { 0 };
        size_t n = 0;
        int64_t bad = 0;
        char problem[256] = "";

        if (!check_version(req) || !check_admin(req))
                return;
        if (vg_journal_read(v->db, &e, &n, &err) < 0) {
                reply_db_error(req, "reading the baseline journal", &err);
                return;
        }
        int r = vg_journal_verify(e, n, &bad, problem, sizeof(problem));
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, vg_journal_entry_json(&e[i]));
        vg_journal_entries_free(e, n);
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:o, s:b, s:o, s:s}", "entries", a, "verified", r == 0,
                                        "firstBad", r == 0 ? json_null() : json_integer(bad),
                                        "problem", problem));
}

static void on_agent_measurements(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *id = agent_param(req);
        struct vg_measurements m = { 0 };
        struct vg_error err = { 0 };
        char when[32];
        int r;

        if (!id)
                return;
        r = agent_quoted(v, id, &m, &err);
        if (r == -ENOENT) {
                vg_http_reply_error(req, 404, "agent id not found");
        } else if (r < 0) {
                reply_db_error(req, "reading the agent", &err);
        } else if (m.n == 0) {
                vg_http_refuse(req, 409, id, "agent %s has no good quote yet", id);
        } else {
                struct vg_measurements early = { 0 }, late = { 0 };
                char boot[24];
                vg_measurements_filter(&early, &m, vg_pcr_early_boot, NULL);
                vg_measurements_filter(&late, &m, vg_pcr_late_boot, NULL);
                vg_rfc3339_ms(m.time_ms, when);
                snprintf(boot, sizeof(boot), "%lld", (long long)m.boot_counter);
                vg_http_reply_keylime(req, 200, "Success",
                                      json_pack("{s:s, s:s, s:s, s:o*, s:o*, s:o*, s:o*}",
                                                "agentId", id, "time", when, "bootCounter", boot,
                                                "banks", vg_measurements_banks_json(&m),
                                                "measurements", vg_measurements_json(&m),
                                                "earlyBoot", vg_measurements_json(&early),
                                                "lateBoot", vg_measurements_json(&late)));
                vg_measurements_clear(&early);
                vg_measurements_clear(&late);
        }
        vg_measurements_clear(&m);
}

/* Keylime's envelope, with the outcome also at the top level (contract §4). */
static void relearn_reply(struct vg_http_request *req, int code, const char *status, json_t *res)
{
        json_t *o = json_deep_copy(res);

        json_object_set_new(o, "code", json_integer(code));
        json_object_set_new(o, "status", json_string(status));
        json_object_set_new(o, "results", res);
        vg_http_reply_json(req, code, o);
}

static void on_agent_relearn(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *id = agent_param(req);
        struct vg_measurements m = { 0 }, previous = { 0 };
        struct vg_error err = { 0 };
        _cleanup_free_ char *baseline = NULL, *reason = NULL;
        const char *event_id = NULL;
        size_t len = 0;
        int r;

        if (!id)
                return;
        json_auto_t *body = NULL;
        if (vg_http_request_body(req, &len) && len > 0) {
                body = vg_http_request_json(req, &err);
                if (!json_is_object(body)) {
                        vg_http_refuse(req, 400, id, "body: expected {\"eventId\": \"...\"}%s%s",
                                       body ? "" : ": ", body ? "" : vg_error_str(&err));
                        return;
                }
                const json_t *e = json_object_get(body, "eventId");
                if (e && (!json_is_string(e) || json_string_length(e) > 128)) {
                        vg_http_refuse(req, 400, id, "eventId: expected a string (at most 128)");
                        return;
                }
                event_id = json_string_value(e);
        }
        r = agent_quoted(v, id, &m, &err);
        if (r == -ENOENT) {
                vg_http_reply_error(req, 404, "agent id not found");
                goto out;
        }
        if (r < 0) {
                reply_db_error(req, "reading the agent", &err);
                goto out;
        }
        if (m.n == 0) {
                vg_warn(VG_F("agent", id), "relearn refused: agent %s has no good quote yet", id);
                relearn_reply(req, 409, "agent has no good quote yet",
                              json_pack("{s:b, s:s}", "relearned", 0, "reason",
                                        "the agent has no good quote yet"));
                goto out;
        }
        r = vg_agent_baseline_relearn(v->db, id, &m, baseline_actor(req), event_id, &baseline,
                                      &previous, &reason, &err);
        if (r < 0) {
                reply_db_error(req, "relearning", &err);
        } else if (r == 0) {
                vg_warn(VG_F("agent", id), "relearn refused for agent %s: %s", id,
                        reason ? reason : "");
                relearn_reply(
                    req, 409, reason ? reason : "not relearned",
                    json_pack("{s:b, s:s}", "relearned", 0, "reason", reason ? reason : ""));
        } else {
                struct vg_measurements late = { 0 };
                vg_measurements_filter(&late, &m, vg_pcr_late_boot, NULL);
                vg_notice(VG_F("agent", id, "baseline", baseline),
                          "agent %s relearned its late-boot baseline: its measurements equal "
                          "known-good baseline %s (by %s)",
                          id, baseline, baseline_actor(req));
                vg_cv_integrity_relearned(v, id, baseline, &previous, &m, baseline_actor(req),
                                          event_id); /* the relearnEvent (integrity.c) */
                relearn_reply(req, 200, "Success",
                              json_pack("{s:b, s:s, s:s, s:o*, s:o*, s:s}", "relearned", 1,
                                        "baseline", baseline, "agentId", id, "previousMeasurements",
                                        vg_measurements_json(&previous), "newMeasurements",
                                        vg_measurements_json(&late), "reason",
                                        "late boot measurements equal known-good "
                                        "baseline"));
                vg_measurements_clear(&late);
        }
out:
        vg_measurements_clear(&m);
        vg_measurements_clear(&previous);
}

/* ==== end of baselines =========================================================================
 */

int vg_cv_api_register(struct vg_verifier *v)
{
        static const struct {
                const char *method, *pattern;
                vg_http_handler_fn fn;
        } routes[] = {
                { "GET", "/version", on_version },
                { "GET", "/v{version}/agents", on_agent_list },
                { "GET", "/v{version}/agents/{agent_id}", on_agent_get },
                { "POST", "/v{version}/agents/{agent_id}", on_agent_add },
                { "DELETE", "/v{version}/agents/{agent_id}", on_agent_delete },
                { "PUT", "/v{version}/agents/{agent_id}/reactivate", on_agent_reactivate },
                { "PUT", "/v{version}/agents/{agent_id}/stop", on_agent_stop },
                { "GET", "/v{version}/allowlists", on_policy_list },
                { "GET", "/v{version}/allowlists/{name}", on_policy_get },
                { "POST", "/v{version}/allowlists/{name}", on_policy_post },
                { "PUT", "/v{version}/allowlists/{name}", on_policy_put },
                { "DELETE", "/v{version}/allowlists/{name}", on_policy_delete },
                { "GET", "/v{version}/verify/identity", on_verify_identity },
                { "POST", "/v{version}/verify/evidence", on_verify_evidence },
                /* baselines (issue 7) */
                { "GET", "/v{version}/baselines", on_baseline_list },
                { "GET", "/v{version}/baselines/history", on_baseline_history },
                { "GET", "/v{version}/baselines/{name}", on_baseline_get },
                { "POST", "/v{version}/baselines/{name}", on_baseline_post },
                { "DELETE", "/v{version}/baselines/{name}", on_baseline_delete },
                { "GET", "/v{version}/agents/{agent_id}/measurements", on_agent_measurements },
                { "POST", "/v{version}/agents/{agent_id}/relearn", on_agent_relearn },
        };
        int r;

        for (size_t i = 0; i < VG_ARRAY_SIZE(routes); i++)
                if ((r = vg_http_server_route(v->srv, routes[i].method, routes[i].pattern,
                                              routes[i].fn, v)) < 0)
                        return r;
        return vg_cv_boot_api_register(v); /* /mbpolicies */
}
