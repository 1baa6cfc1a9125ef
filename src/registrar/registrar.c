/* vigil-registrar: the HTTP handlers and the agent table. Registration answers with a
 * MakeCredential challenge; only an agent whose TPM holds both the EK and the AK can activate. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "credential.h"
#include "ek_cert.h"
#include "encoding.h"
#include "http_server.h"
#include "log.h"
#include "registrar.h"
#include "store.h"
#include "tls.h"
#include "tpm_public.h"

static const struct vg_config_option registrar_options[] = {
        { "ip", VG_CONFIG_STRING, "127.0.0.1", "address both ports listen on" },
        { "port", VG_CONFIG_INTEGER, "8890",
          "plain HTTP port: agent registration and activation only", 0, 65535 },
        { "tls_port", VG_CONFIG_INTEGER, "8891",
          "HTTPS port, client certificate required: list, get, delete, /version", 0, 65535 },
        { "tls_dir", VG_CONFIG_PATH, "/var/lib/vigil/cv_ca",
          "a `vigil ca init` directory; relative TLS file names are read from it" },
        { "server_cert", VG_CONFIG_STRING, "server-cert.crt",
          "TLS server certificate (PEM, chain after it)" },
        { "server_key", VG_CONFIG_STRING, "server-private.pem", "its private key (PEM)" },
        { "server_key_password", VG_CONFIG_STRING, NULL, "password of an encrypted server_key" },
        { "trusted_client_ca", VG_CONFIG_STRING, "cacert.crt",
          "CA certificate(s) (PEM) admin clients must chain to" },
        { "data_dir", VG_CONFIG_PATH, "/var/lib/vigil",
          "state directory; where database_url = \"sqlite\" puts reg_data.sqlite" },
        { "database_url", VG_CONFIG_STRING, "sqlite",
          "\"sqlite\", sqlite:////absolute/path, or postgresql://user:pass@host[:port]/db" },
        { "tpm_cert_store", VG_CONFIG_PATH, "/var/lib/vigil/tpm_cert_store",
          "directory of trusted EK root and intermediate CA certificates (PEM or DER)" },
        { "require_ek_cert", VG_CONFIG_BOOLEAN, "true",
          "refuse agents without an EK certificate that chains to tpm_cert_store" },
        {},
};

const struct vg_config_schema vg_registrar_schema = {
        .component = "registrar",
        .section = "registrar",
        .options = registrar_options,
};

static const struct vg_store_migration registrar_migrations[] = {
        { 1, "agents",
          "CREATE TABLE agents ("
          " agent_id TEXT PRIMARY KEY,"
          " ek_tpm TEXT NOT NULL," /* base64 TPM2B_PUBLIC, canonical */
          " ekcert TEXT,"          /* base64 DER of the EK certificate */
          " aik_tpm TEXT NOT NULL,"
          " mtls_cert TEXT,"
          " ip TEXT,"
          " port INTEGER,"
          " auth_key TEXT NOT NULL," /* base64(challenge): the HMAC key of the auth_tag */
          " active INTEGER NOT NULL DEFAULT 0,"
          " regcount INTEGER NOT NULL DEFAULT 0,"
          " ek_verified INTEGER NOT NULL DEFAULT 0,"
          " updated_at BIGINT NOT NULL DEFAULT 0)" }, /* BIGINT: was INTEGER before PostgreSQL
                                                       * existed; the same column in SQLite */
};

static const char *const api_versions[] = { VG_REGISTRAR_API_VERSIONS };

struct vg_registrar {
        const struct vg_config *cfg;
        struct vg_store *db;
        struct vg_ek_store *ek_store;
        bool require_ek_cert;
        struct vg_http_server *plain;
        struct vg_http_server *tls;
};

/* ---- requests: path checks and refusals --------------------------------------------------- */

/* Quote untrusted text for a message: at most 40 printable characters. */
static const char *printable(const char *s, char *buf, size_t len)
{
        size_t i;

        for (i = 0; s[i] && i + 1 < len && i < 40; i++)
                buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        buf[i] = '\0';
        if (s[i] && i == 40 && len > 44)
                strcpy(buf + i, "...");
        return buf;
}

static bool version_supported(const char *v)
{
        for (size_t i = 0; i < VG_ARRAY_SIZE(api_versions); i++)
                if (v && strcmp(v, api_versions[i]) == 0)
                        return true;
        return false;
}

/* Keylime agent ids: the rust agent's default is a UUID, and uuid = "hash_ek" gives the hex
 * SHA-256 of the EK. Both are accepted; anything else is refused before it reaches a log or
 * the database. */
static bool agent_id_valid(const char *id)
{
        size_t n = strlen(id);

        if (n == 64) {
                for (size_t i = 0; i < n; i++)
                        if (vg_hex_digit_value(id[i]) < 0)
                                return false;
                return true;
        }
        if (n != 36)
                return false;
        for (size_t i = 0; i < n; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash ? id[i] != '-' : vg_hex_digit_value(id[i]) < 0)
                        return false;
        }
        return true;
}

static bool check_version(struct vg_http_request *req)
{
        const char *v = vg_http_request_param(req, "version");
        char buf[48];

        if (version_supported(v))
                return true;
        vg_http_refuse(
            req, 400, NULL,
            "API version %s is not supported by this registrar (supported: 2.1, 2.2, 2.3, "
            "2.4, 2.5)",
            v ? printable(v, buf, sizeof(buf)) : "(none)");
        return false;
}

static bool check_agent_id(struct vg_http_request *req, const char *id)
{
        char buf[48];

        if (id && agent_id_valid(id))
                return true;
        vg_http_refuse(req, 400, NULL,
                       "agent id '%s' is not a UUID (expected 8-4-4-4-12 hex digits, or the 64 hex "
                       "digits of a hash_ek id)",
                       id ? printable(id, buf, sizeof(buf)) : "");
        return false;
}

/* The path's version and agent id, both checked; NULL after a refusal. */
static const char *agent_from_path(struct vg_http_request *req)
{
        if (!check_version(req))
                return NULL;
        const char *id = vg_http_request_param(req, "uuid");
        return check_agent_id(req, id) ? id : NULL;
}

static json_t *request_json(struct vg_http_request *req, const char *agent)
{
        struct vg_error err = { 0 };
        json_t *j = vg_http_request_json(req, &err);

        if (!j) {
                vg_http_refuse(req, 400, agent, "malformed JSON body: %s", vg_error_str(&err));
                return NULL;
        }
        if (!json_is_object(j)) {
                json_decref(j);
                vg_http_refuse(req, 400, agent, "malformed JSON body: expected an object");
                return NULL;
        }
        return j;
}

/* A string field: *out NULL when absent or null (which is an error when required). */
static int field_string(const json_t *body, const char *name, bool required, const char **out,
                        struct vg_error *err)
{
        const json_t *v = json_object_get(body, name);

        *out = NULL;
        if (!v || json_is_null(v))
                return required ? vg_error_set(err, -EINVAL, "field '%s' is missing", name) : 0;
        if (!json_is_string(v))
                return vg_error_set(err, -EINVAL, "field '%s': expected a string, found %s", name,
                                    vg_json_type_name(v));
        *out = json_string_value(v);
        if (strlen(*out) != json_string_length(v))
                return vg_error_set(err, -EINVAL, "field '%s' contains a NUL character", name);
        return 0;
}

/* ---- registration --------------------------------------------------------------------------- */

struct registration {
        const char *agent_id;
        char *ek_b64, *aik_b64; /* canonical re-encodings of what was received */
        char *ekcert_b64;       /* NULL without a certificate */
        const char *mtls_cert, *ip;
        int64_t port; /* -1: none */
        bool ek_verified;
        char key[VG_CHALLENGE_KEY_LEN + 1];
        /* results of the transaction */
        bool identity_changed;
        const char *changed; /* "EK", "AK" */
        int64_t regcount;
};

static int registration_txn(struct vg_store *db, void *userdata, struct vg_error *err)
{
        struct registration *g = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        bool exists = false;
        int r;

        g->identity_changed = false;
        g->regcount = 1;
        r = vg_store_prepare(db, "SELECT ek_tpm, aik_tpm, regcount FROM agents WHERE agent_id = $1",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, g->agent_id);
        r = vg_stmt_step(st, err);
        if (r < 0)
                return r;
        if (r > 0) {
                exists = true;
                /* CVE-2025-13609: the TPM identity of a registered agent id is immutable; a
                 * different EK or AK under the same id is someone else's TPM. */
                if (strcmp(vg_stmt_column_text(st, 0, NULL), g->ek_b64) != 0) {
                        g->identity_changed = true;
                        g->changed = "EK";
                } else if (strcmp(vg_stmt_column_text(st, 1, NULL), g->aik_b64) != 0) {
                        g->identity_changed = true;
                        g->changed = "AK";
                }
                g->regcount = vg_stmt_column_int64(st, 2) + 1;
        }
        vg_stmt_free(TAKE_PTR(st));
        if (g->identity_changed)
                return 0;

        if (exists)
                r = vg_store_prepare(db,
                                     "UPDATE agents SET ekcert = $2, mtls_cert = $3, ip = $4, "
                                     "port = $5, auth_key = $6, active = 0, regcount = $7, "
                                     "ek_verified = $8, updated_at = $9, ek_tpm = $10, "
                                     "aik_tpm = $11 WHERE agent_id = $1",
                                     &st, err);
        else
                r = vg_store_prepare(db,
                                     "INSERT INTO agents (agent_id, ekcert, mtls_cert, ip, port, "
                                     "auth_key, active, regcount, ek_verified, updated_at, ek_tpm, "
                                     "aik_tpm) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10, "
                                     "$11)",
                                     &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, g->agent_id);
        vg_stmt_bind_text(st, 2, g->ekcert_b64);
        vg_stmt_bind_text(st, 3, g->mtls_cert);
        vg_stmt_bind_text(st, 4, g->ip);
        if (g->port < 0)
                vg_stmt_bind_null(st, 5);
        else
                vg_stmt_bind_int64(st, 5, g->port);
        vg_stmt_bind_text(st, 6, g->key);
        vg_stmt_bind_int64(st, 7, g->regcount);
        vg_stmt_bind_int64(st, 8, g->ek_verified);
        vg_stmt_bind_int64(st, 9, (int64_t)time(NULL));
        vg_stmt_bind_text(st, 10, g->ek_b64);
        vg_stmt_bind_text(st, 11, g->aik_b64);
        return vg_stmt_exec(st, err);
}

static int parse_port(const json_t *body, int64_t *port, struct vg_error *err)
{
        const json_t *v = json_object_get(body, "port");
        char *end;

        *port = -1;
        if (!v || json_is_null(v))
                return 0;
        if (json_is_integer(v)) {
                *port = json_integer_value(v);
        } else if (json_is_string(v) && json_string_length(v) > 0) {
                /* Older agents sent the port as a string. */
                errno = 0;
                long long p = strtoll(json_string_value(v), &end, 10);
                *port = (*end || errno) ? -2 : p;
        } else {
                return vg_error_set(err, -EINVAL, "field 'port': expected an integer, found %s",
                                    vg_json_type_name(v));
        }
        if (*port < 1 || *port > 65535)
                return vg_error_set(err, -EINVAL, "field 'port': expected 1..65535");
        return 0;
}

static int parse_mtls_cert(const char *pem, struct vg_error *err)
{
        if (!pem || strcmp(pem, "disabled") == 0)
                return 0;
        BIO *bio = BIO_new_mem_buf(pem, -1);
        X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        int r = x ? 0
                  : vg_error_set(err, -EINVAL,
                                 "field 'mtls_cert': expected a PEM certificate or "
                                 "\"disabled\"");
        X509_free(x);
        BIO_free(bio);
        ERR_clear_error();
        return r;
}

static void registration_clear(struct registration *g)
{
        free(g->ek_b64);
        free(g->aik_b64);
        free(g->ekcert_b64);
        OPENSSL_cleanse(g->key, sizeof(g->key));
}

static int registration_handle(struct vg_http_request *req, struct vg_registrar *reg,
                               const char *agent, json_t *body)
{
        _cleanup_tpm_public_ struct vg_tpm_public *ek = NULL, *ak = NULL;
        _cleanup_(registration_clear) struct registration g = { .agent_id = agent };
        struct vg_ek_cert cert = { 0 };
        struct vg_credential cred;
        struct vg_error err = { 0 };
        const char *ek_text, *ak_text, *ekcert_text, *peer = vg_http_request_peer(req);
        char challenge[VG_CHALLENGE_LEN + 1];
        int r;

        /* Shape of the request first: every field named when it is wrong. */
        if (field_string(body, "ek_tpm", true, &ek_text, &err) < 0 ||
            field_string(body, "aik_tpm", true, &ak_text, &err) < 0 ||
            field_string(body, "ekcert", false, &ekcert_text, &err) < 0 ||
            field_string(body, "mtls_cert", false, &g.mtls_cert, &err) < 0 ||
            field_string(body, "ip", false, &g.ip, &err) < 0 ||
            parse_port(body, &g.port, &err) < 0 || parse_mtls_cert(g.mtls_cert, &err) < 0)
                return vg_http_refuse(req, 400, agent, "%s", vg_error_str(&err));
        if (g.ip && strlen(g.ip) > 255)
                return vg_http_refuse(req, 400, agent, "field 'ip': longer than 255 characters");

        if (vg_tpm_public_parse_b64(ek_text, &ek, &err) < 0)
                return vg_http_refuse(req, 400, agent, "field 'ek_tpm': %s", vg_error_str(&err));
        if (vg_tpm_public_check_ek(ek, &err) < 0)
                return vg_http_refuse(req, 400, agent, "field 'ek_tpm': not an endorsement key: %s",
                                      vg_error_str(&err));
        if (vg_tpm_public_parse_b64(ak_text, &ak, &err) < 0)
                return vg_http_refuse(req, 400, agent, "field 'aik_tpm': %s", vg_error_str(&err));
        if (vg_tpm_public_check_ak(ak, &err) < 0)
                return vg_http_refuse(req, 400, agent,
                                      "field 'aik_tpm': not a restricted signing key: %s",
                                      vg_error_str(&err));
        if (ekcert_text && vg_ek_cert_decode(ekcert_text, &cert, &err) < 0)
                return vg_http_refuse(req, 400, agent, "field 'ekcert': %s", vg_error_str(&err));

        /* The EK certificate, checked here rather than left to the tenant. */
        if (cert.leaf)
                r = vg_ek_cert_verify(reg->ek_store, &cert, ek, &err);
        else
                r = vg_error_set(&err, -EKEYREJECTED, "none was sent");
        g.ek_verified = r == 0;
        if (r < 0 && r != -EKEYREJECTED) {
                vg_ek_cert_clear(&cert);
                return vg_http_refuse(req, 500, agent, "EK certificate check failed: %s",
                                      vg_error_str(&err));
        }
        if (r < 0 && reg->require_ek_cert) {
                vg_ek_cert_clear(&cert);
                return vg_http_refuse(req, 403, agent, "EK certificate for agent %s: %s", agent,
                                      vg_error_str(&err));
        }
        if (r < 0)
                vg_warn(VG_F("agent", agent, "peer", peer),
                        "EK certificate not valid: %s; accepted because require_ek_cert is off",
                        vg_error_str(&err));

        g.ek_b64 = vg_b64_encode(ek->marshalled, ek->marshalled_len, VG_B64_STD);
        g.aik_b64 = vg_b64_encode(ak->marshalled, ak->marshalled_len, VG_B64_STD);
        if (cert.leaf)
                g.ekcert_b64 = vg_b64_encode(cert.der, cert.der_len, VG_B64_STD);
        vg_ek_cert_clear(&cert);
        if (!g.ek_b64 || !g.aik_b64 || (cert.der_len && !g.ekcert_b64))
                return vg_http_refuse(req, 500, agent, "out of memory");

        /* Keylime §3: a random challenge, MakeCredential'd to the AK's Name under the EK; the
         * agent proves it holds both by returning HMAC(base64(challenge), agent id). */
        r = vg_registration_challenge(challenge);
        if (r >= 0)
                r = vg_registration_key(challenge, VG_CHALLENGE_LEN, g.key);
        if (r >= 0)
                r = vg_credential_make(ek, ak->name, ak->name_len, (const uint8_t *)challenge,
                                       VG_CHALLENGE_LEN, &cred, &err);
        OPENSSL_cleanse(challenge, sizeof(challenge));
        if (r < 0)
                return vg_http_refuse(req, 400, agent,
                                      "field 'ek_tpm': cannot make a credential for "
                                      "this EK: %s",
                                      vg_error_str(&err));
        _cleanup_free_ uint8_t *blob = NULL;
        size_t blob_len = 0;
        if (vg_credential_blob(&cred, &blob, &blob_len) < 0)
                return vg_http_refuse(req, 500, agent, "out of memory");
        _cleanup_free_ char *blob_b64 = vg_b64_encode(blob, blob_len, VG_B64_STD);
        if (!blob_b64)
                return vg_http_refuse(req, 500, agent, "out of memory");

        r = vg_store_transact(reg->db, registration_txn, &g, &err);
        if (r < 0) {
                vg_err(VG_F("agent", agent, "peer", peer), "storing the registration failed: %s",
                       vg_error_str(&err));
                return vg_http_reply_error(req, 500, "storing the registration failed");
        }
        if (g.identity_changed)
                return vg_http_refuse(req, 403, agent,
                                      "agent %s is already registered with a different %s; "
                                      "the TPM identity of an agent cannot change (delete the "
                                      "agent first)",
                                      agent, g.changed);

        vg_info(VG_F("agent", agent, "peer", peer), "registered (regcount %lld, EK certificate %s)",
                (long long)g.regcount,
                g.ek_verified ? "valid" : (g.ekcert_b64 ? "NOT valid" : "absent"));
        return vg_http_reply_keylime(req, 200, "Success", json_pack("{s:s}", "blob", blob_b64));
}

static void on_register(struct vg_http_request *req, void *userdata)
{
        const char *agent = agent_from_path(req);
        if (!agent)
                return;
        json_auto_t *body = request_json(req, agent);
        if (body)
                (void)registration_handle(req, userdata, agent, body);
}

/* POST /v{version}/agents with agent_id in the body (Keylime's newer spelling). */
static int register_body(struct vg_http_request *req, void *userdata)
{
        const char *agent = NULL;
        struct vg_error err = { 0 };

        if (!check_version(req))
                return 0;
        json_auto_t *body = request_json(req, NULL);
        if (!body)
                return 0;
        if (field_string(body, "agent_id", true, &agent, &err) < 0)
                return vg_http_refuse(req, 400, NULL, "%s", vg_error_str(&err));
        if (!check_agent_id(req, agent))
                return 0;
        return registration_handle(req, userdata, agent, body);
}

static void on_register_body(struct vg_http_request *req, void *userdata)
{
        (void)register_body(req, userdata);
}

/* ---- activation ------------------------------------------------------------------------------ */

struct activation {
        const char *agent_id;
        const char *auth_tag;
        bool found, matched, was_active;
        char why[256];
};

static int activation_txn(struct vg_store *db, void *userdata, struct vg_error *err)
{
        struct activation *a = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error terr = { 0 };
        int r;

        a->found = a->matched = a->was_active = false;
        r = vg_store_prepare(db, "SELECT auth_key, active FROM agents WHERE agent_id = $1", &st,
                             err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, a->agent_id);
        r = vg_stmt_step(st, err);
        if (r <= 0)
                return r;
        a->found = true;
        a->was_active = vg_stmt_column_int64(st, 1) != 0;
        /* Constant time (CVE-2023-38201 was a tag check that could be bypassed). */
        a->matched = vg_auth_tag_check(vg_stmt_column_text(st, 0, NULL), a->agent_id, a->auth_tag,
                                       &terr) == 0;
        snprintf(a->why, sizeof(a->why), "%s", vg_error_str(&terr));
        vg_stmt_free(TAKE_PTR(st));

        /* Keylime deletes the registration on any failed activation, so anyone who can reach
         * the unauthenticated port could remove an active agent with a junk tag. An active
         * registration stays; only a pending one is removed. */
        if (!a->matched && a->was_active)
                return 0;
        if (a->matched)
                r = vg_store_prepare(db,
                                     "UPDATE agents SET active = 1, updated_at = $2 "
                                     "WHERE agent_id = $1",
                                     &st, err);
        else
                /* As Keylime: a failed activation removes the pending registration; the agent
                 * has to register again and gets a new challenge. */
                r = vg_store_prepare(db, "DELETE FROM agents WHERE agent_id = $1", &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, a->agent_id);
        if (a->matched)
                vg_stmt_bind_int64(st, 2, (int64_t)time(NULL));
        return vg_stmt_exec(st, err);
}

static int activate(struct vg_http_request *req, struct vg_registrar *reg)
{
        struct vg_error err = { 0 };
        const char *agent = agent_from_path(req), *peer = vg_http_request_peer(req);

        if (!agent)
                return 0;
        json_auto_t *body = request_json(req, agent);
        if (!body)
                return 0;
        struct activation a = { .agent_id = agent };
        if (field_string(body, "auth_tag", true, &a.auth_tag, &err) < 0)
                return vg_http_refuse(req, 400, agent, "%s", vg_error_str(&err));

        int r = vg_store_transact(reg->db, activation_txn, &a, &err);
        if (r < 0) {
                vg_err(VG_F("agent", agent, "peer", peer), "activation failed: %s",
                       vg_error_str(&err));
                return vg_http_reply_error(req, 500, "storing the activation failed");
        }
        if (!a.found)
                return vg_http_refuse(req, 404, agent, "agent %s is not registered", agent);
        if (!a.matched && a.was_active)
                return vg_http_refuse(
                    req, 400, agent,
                    "auth_tag for agent %s does not match the challenge (%s); the "
                    "agent stays active",
                    agent, a.why);
        if (!a.matched)
                return vg_http_refuse(
                    req, 400, agent,
                    "auth_tag for agent %s does not match the challenge (%s); the "
                    "registration was deleted",
                    agent, a.why);
        vg_info(VG_F("agent", agent, "peer", peer), "activated");
        return vg_http_reply_keylime(req, 200, "Success", NULL);
}

static void on_activate(struct vg_http_request *req, void *userdata)
{
        (void)activate(req, userdata);
}

/* ---- admin: list, get, delete, version --------------------------------------------------- */

static void on_version(struct vg_http_request *req, void *userdata)
{
        json_t *list = json_array();

        (void)userdata;
        for (size_t i = 0; i < VG_ARRAY_SIZE(api_versions); i++)
                json_array_append_new(list, json_string(api_versions[i]));
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:o}", "current_version",
                                        api_versions[VG_ARRAY_SIZE(api_versions) - 1],
                                        "supported_versions", list));
}

static void on_list(struct vg_http_request *req, void *userdata)
{
        struct vg_registrar *reg = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };
        int r;

        if (!check_version(req))
                return;
        json_t *uuids = json_array();
        r = vg_store_prepare(
            reg->db, "SELECT agent_id FROM agents WHERE active = 1 ORDER BY agent_id", &st, &err);
        while (r >= 0 && (r = vg_stmt_step(st, &err)) > 0)
                json_array_append_new(uuids, json_string(vg_stmt_column_text(st, 0, NULL)));
        if (r < 0) {
                json_decref(uuids);
                vg_err(VG_F("peer", vg_http_request_peer(req)), "listing agents failed: %s",
                       vg_error_str(&err));
                vg_http_reply_error(req, 500, "reading the agent list failed");
                return;
        }
        vg_http_reply_keylime(req, 200, "Success", json_pack("{s:o}", "uuids", uuids));
}

static json_t *json_text_or_null(const char *s)
{
        return s ? json_string(s) : json_null();
}

static void on_get(struct vg_http_request *req, void *userdata)
{
        struct vg_registrar *reg = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };
        const char *agent = agent_from_path(req);
        int r;

        if (!agent)
                return;
        r = vg_store_prepare(reg->db,
                             "SELECT aik_tpm, ek_tpm, ekcert, mtls_cert, ip, port, regcount "
                             "FROM agents WHERE agent_id = $1 AND active = 1",
                             &st, &err);
        if (r >= 0) {
                vg_stmt_bind_text(st, 1, agent);
                r = vg_stmt_step(st, &err);
        }
        if (r < 0) {
                vg_err(VG_F("agent", agent, "peer", vg_http_request_peer(req)),
                       "reading the agent failed: %s", vg_error_str(&err));
                vg_http_reply_error(req, 500, "reading the agent failed");
                return;
        }
        if (r == 0) {
                vg_http_reply_error(req, 404, "agent %s is not registered or not activated", agent);
                return;
        }
        json_t *port =
            vg_stmt_column_is_null(st, 5) ? json_null() : json_integer(vg_stmt_column_int64(st, 5));
        json_t *res =
            json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:I}", "aik_tpm",
                      vg_stmt_column_text(st, 0, NULL), "ek_tpm", vg_stmt_column_text(st, 1, NULL),
                      "ekcert", json_text_or_null(vg_stmt_column_text(st, 2, NULL)), "mtls_cert",
                      json_text_or_null(vg_stmt_column_text(st, 3, NULL)), "ip",
                      json_text_or_null(vg_stmt_column_text(st, 4, NULL)), "port", port, "regcount",
                      (json_int_t)vg_stmt_column_int64(st, 6));
        vg_stmt_reset(st);
        vg_http_reply_keylime(req, 200, "Success", res);
}

static void on_delete(struct vg_http_request *req, void *userdata)
{
        struct vg_registrar *reg = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };
        const char *agent = agent_from_path(req), *peer = vg_http_request_peer(req);
        int r;

        if (!agent)
                return;
        r = vg_store_prepare(reg->db, "DELETE FROM agents WHERE agent_id = $1", &st, &err);
        if (r >= 0) {
                vg_stmt_bind_text(st, 1, agent);
                r = vg_stmt_exec(st, &err);
        }
        if (r < 0) {
                vg_err(VG_F("agent", agent, "peer", peer), "deleting failed: %s",
                       vg_error_str(&err));
                vg_http_reply_error(req, 500, "deleting the agent failed");
                return;
        }
        if (vg_stmt_changes(st) == 0) {
                vg_http_reply_error(req, 404, "agent %s is not registered", agent);
                return;
        }
        vg_info(VG_F("agent", agent, "peer", peer, "client", vg_http_request_peer_subject(req)),
                "deleted");
        vg_http_reply_keylime(req, 200, "Success", NULL);
}

/* ---- set-up ------------------------------------------------------------------------------------
 */

/* A TLS file name: absolute as given, otherwise inside tls_dir (Keylime's rule). */
static int tls_path(const struct vg_config *cfg, const char *name, char *out, size_t len,
                    struct vg_error *err)
{
        const char *v = vg_config_string(cfg, name), *dir = vg_config_string(cfg, "tls_dir");

        if (!v || !*v)
                return vg_error_set(err, -EINVAL, "option %s is not set", name);
        if (v[0] == '/')
                snprintf(out, len, "%s", v);
        else if (!dir || !*dir)
                return vg_error_set(err, -EINVAL, "option %s is relative but tls_dir is unset",
                                    name);
        else if ((size_t)snprintf(out, len, "%s/%s", dir, v) >= len)
                return vg_error_set(err, -ENAMETOOLONG, "option %s: path too long", name);
        return 0;
}

static void ssl_ctx_freep(SSL_CTX **c)
{
        if (*c)
                SSL_CTX_free(*c);
}

static SSL_CTX *registrar_tls_ctx(const struct vg_config *cfg, struct vg_error *err)
{
        char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];

        if (tls_path(cfg, "server_cert", cert, sizeof(cert), err) < 0 ||
            tls_path(cfg, "server_key", key, sizeof(key), err) < 0 ||
            tls_path(cfg, "trusted_client_ca", ca, sizeof(ca), err) < 0)
                return NULL;
        /* CVE-2026-1709: the admin port must never accept a client without a certificate. */
        struct vg_tls_server_config tc = {
                .cert_file = cert,
                .key_file = key,
                .key_password = vg_config_string(cfg, "server_key_password"),
                .client_auth = VG_TLS_CLIENT_AUTH_REQUIRED,
                .client_ca_file = ca,
        };
        return vg_tls_server_ctx_new(&tc, err);
}

int vg_registrar_new(struct event_base *base, const struct vg_config *cfg,
                     struct vg_registrar **out, struct vg_error *err)
{
        _cleanup_(vg_registrar_freep) struct vg_registrar *reg = calloc(1, sizeof(*reg));
        const char *store_dir = vg_config_string(cfg, "tpm_cert_store");
        int r;

        *out = NULL;
        if (!reg)
                return -ENOMEM;
        reg->cfg = cfg;
        reg->require_ek_cert = vg_config_boolean(cfg, "require_ek_cert");

        if (store_dir && *store_dir) {
                r = vg_ek_store_load(store_dir, &reg->ek_store, err);
                if (r < 0 && reg->require_ek_cert)
                        return r;
                if (r < 0)
                        vg_warn(NULL, "%s; EK certificates cannot be validated", vg_error_str(err));
                else
                        vg_info(VG_F("dir", store_dir), "tpm_cert_store: %zu certificates",
                                vg_ek_store_count(reg->ek_store));
        } else if (reg->require_ek_cert) {
                return vg_error_set(err, -EINVAL,
                                    "require_ek_cert is on but tpm_cert_store is not set");
        }
        if (!reg->require_ek_cert)
                vg_warn(NULL, "require_ek_cert is off: agents without a valid EK certificate are "
                              "accepted, so an agent's TPM cannot be told from a software one");

        _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = registrar_tls_ctx(cfg, err);
        if (!ctx)
                return err->code ? err->code : -EINVAL;

        /* The database last of the files: a configuration error elsewhere creates nothing. */
        struct vg_store_options so = {
                .data_dir = vg_config_string(cfg, "data_dir"),
                .default_file = "reg_data.sqlite",
        };
        r = vg_store_open(&reg->db, vg_config_string(cfg, "database_url"), &so, err);
        if (r >= 0)
                r = vg_store_migrate(reg->db, "registrar", registrar_migrations,
                                     VG_ARRAY_SIZE(registrar_migrations), err);
        if (r < 0)
                return r;

        struct vg_http_server_config pc = {
                .address = vg_config_string(cfg, "ip"),
                .port = (uint16_t)vg_config_integer(cfg, "port"),
                .name = "registrar",
                .max_body_bytes = VG_REGISTRAR_MAX_BODY,
        };
        struct vg_http_server_config tc = pc;
        tc.port = (uint16_t)vg_config_integer(cfg, "tls_port");
        tc.tls = ctx;
        tc.name = "registrar-tls";
        r = vg_http_server_new(base, &pc, &reg->plain, err);
        if (r >= 0)
                r = vg_http_server_new(base, &tc, &reg->tls, err);
        if (r < 0)
                return r;

        /* The plain port: what an agent needs before it has any credential. */
        vg_http_server_route(reg->plain, "POST", "/v{version}/agents/{uuid}", on_register, reg);
        vg_http_server_route(reg->plain, "POST", "/v{version}/agents", on_register_body, reg);
        vg_http_server_route(reg->plain, "PUT", "/v{version}/agents/{uuid}", on_activate, reg);
        vg_http_server_route(reg->plain, "PUT", "/v{version}/agents/{uuid}/activate", on_activate,
                             reg);
        vg_http_server_route(reg->plain, "GET", "/version", on_version, reg);

        /* The mTLS port: reads and deletes for the tenant and the verifier. */
        vg_http_server_route(reg->tls, "GET", "/version", on_version, reg);
        vg_http_server_route(reg->tls, "GET", "/v{version}/agents", on_list, reg);
        vg_http_server_route(reg->tls, "GET", "/v{version}/agents/{uuid}", on_get, reg);
        vg_http_server_route(reg->tls, "DELETE", "/v{version}/agents/{uuid}", on_delete, reg);

        vg_info(VG_F("database", vg_store_name(reg->db)),
                "listening on %s port %d (registration) and %d (mTLS)", pc.address,
                vg_http_server_port(reg->plain), vg_http_server_port(reg->tls));
        *out = TAKE_PTR(reg);
        return 0;
}

void vg_registrar_free(struct vg_registrar *reg)
{
        if (!reg)
                return;
        vg_http_server_free(reg->plain);
        vg_http_server_free(reg->tls);
        vg_ek_store_free(reg->ek_store);
        vg_store_close(reg->db);
        free(reg);
}

int vg_registrar_port(const struct vg_registrar *reg)
{
        return vg_http_server_port(reg->plain);
}

int vg_registrar_tls_port(const struct vg_registrar *reg)
{
        return vg_http_server_port(reg->tls);
}
