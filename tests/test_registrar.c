/* vigil tests: vigil-registrar end to end: a real daemon on loopback, agents played with real
 * swtpms (EK, AK, ActivateCredential), admin reads over mTLS, and the CVE regressions. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "encoding.h"
#include "http_client.h"
#include "swtpm.h"
#include "tap.h"
#include "tls.h"
#include "tpm.h"

#define UUID_A       "d432fbb3-d2f1-4a97-9ef7-75bd81c00001"
#define UUID_B       "d432fbb3-d2f1-4a97-9ef7-75bd81c00002"
#define UUID_C       "d432fbb3-d2f1-4a97-9ef7-75bd81c00003"
#define UUID_D       "d432fbb3-d2f1-4a97-9ef7-75bd81c00004"
#define UUID_E       "d432fbb3-d2f1-4a97-9ef7-75bd81c00005"
#define UUID_UNKNOWN "d432fbb3-d2f1-4a97-9ef7-75bd81c00099"

/* Keylime §3, written here independently of credential.h as the test's own oracle: the agent
 * keys HMAC-SHA384 with the ASCII base64 of the recovered challenge, over the agent id. */
#define VG_AUTH_TAG_LEN 96

static void auth_tag(const uint8_t *cred, size_t cred_len, const char *uuid,
                     char tag[VG_AUTH_TAG_LEN + 1])
{
        _cleanup_free_ char *key = vg_b64_encode(cred, cred_len, VG_B64_STD);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;

        if (!key ||
            !HMAC(EVP_sha384(), key, (int)strlen(key), (const unsigned char *)uuid, strlen(uuid),
                  mac, &mac_len) ||
            mac_len != 48)
                tap_bail("HMAC");
        for (unsigned i = 0; i < mac_len; i++)
                sprintf(tag + 2 * i, "%02x", mac[i]);
}

struct registrar {
        pid_t pid;
        int port, tls_port;
        char *log;
        char *data_dir, *store, *tls_dir;
        bool require_ek_cert;
};

struct ctx {
        char *tmp;
        char *ca, *ca2; /* our CA and a foreign one */
        SSL_CTX *admin; /* trusts ca, presents ca's client certificate */
};

static char *path_in(const char *dir, const char *name)
{
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                tap_bail("asprintf");
        return p;
}

/* ---- the daemon ------------------------------------------------------------------------------ */

static void registrar_start(struct registrar *r, const char *tag)
{
        const char *bin = getenv("VIGIL_REGISTRAR");
        char port[16], tls_port[16], pidarg[512];
        _cleanup_free_ char *pid_file = NULL;

        if (!r->port)
                r->port = tap_free_port();
        if (!r->tls_port)
                r->tls_port = tap_free_port();
        free(r->log);
        r->log = path_in(r->data_dir, tag);
        pid_file = path_in(r->data_dir, "registrar.pid");
        unlink(pid_file);
        snprintf(port, sizeof(port), "%d", r->port);
        snprintf(tls_port, sizeof(tls_port), "%d", r->tls_port);
        snprintf(pidarg, sizeof(pidarg), "%s", pid_file);

        pid_t pid = fork();
        if (pid < 0)
                tap_bail("fork: %s", strerror(errno));
        if (pid == 0) {
                int fd = open(r->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0)
                        _exit(127);
                dup2(fd, 1);
                dup2(fd, 2);
                setenv("VIGIL_CONF_DIR", r->data_dir, 1); /* no registrar.conf there */
                setenv("VIGIL_REGISTRAR_PORT", port, 1);
                setenv("VIGIL_REGISTRAR_TLS_PORT", tls_port, 1);
                setenv("VIGIL_REGISTRAR_TLS_DIR", r->tls_dir, 1);
                setenv("VIGIL_REGISTRAR_DATA_DIR", r->data_dir, 1);
                setenv("VIGIL_REGISTRAR_TPM_CERT_STORE", r->store, 1);
                setenv("VIGIL_REGISTRAR_REQUIRE_EK_CERT", r->require_ek_cert ? "true" : "false", 1);
                execl(bin, bin, "-f", "--pid-file", pidarg, (char *)NULL);
                _exit(127);
        }
        r->pid = pid;
        for (int i = 0; i < 1000; i++) {
                int status;
                if (access(pid_file, F_OK) == 0)
                        return;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        _cleanup_free_ char *log = tap_read_file(r->log, NULL);
                        tap_bail("vigil-registrar exited at start: %s", log ? log : "");
                }
                usleep(10000);
        }
        tap_bail("vigil-registrar did not become ready");
}

/* SIGTERM and the exit status: 0 also means LeakSanitizer found nothing in a sanitized build. */
static int registrar_stop(struct registrar *r)
{
        int status = -1;

        if (r->pid <= 0)
                return -1;
        kill(r->pid, SIGTERM);
        for (int i = 0; i < 1000; i++) {
                if (waitpid(r->pid, &status, WNOHANG) == r->pid)
                        break;
                usleep(10000);
                if (i == 999) {
                        kill(r->pid, SIGKILL);
                        waitpid(r->pid, &status, 0);
                }
        }
        r->pid = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *registrar_log(const struct registrar *r)
{
        char *s = tap_read_file(r->log, NULL);
        return s ? s : strdup("");
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

/* One request; returns the status (or -1 when no HTTP answer came, with why in err) and the
 * parsed body in *out (may be NULL). */
static int call(const char *method, SSL_CTX *tls, int port, const char *path, json_t *body,
                const void *raw, size_t raw_len, json_t **out, struct vg_error *err)
{
        char url[512];
        struct vg_http_response *resp = NULL;
        struct vg_error e = { 0 };

        snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", tls ? "https" : "http", port, path);
        struct vg_http_client_config cc = { .tls = tls, .timeout_ms = 10000 };
        struct vg_http_client_request rq = {
                .method = method,
                .url = url,
                .json = body,
                .body = raw,
                .body_len = raw_len,
                .content_type = raw ? "application/json" : NULL,
        };
        if (out)
                *out = NULL;
        if (vg_http_fetch(&cc, &rq, &resp, err ? err : &e) < 0)
                return -1;
        int status = resp->status;
        if (out)
                *out = vg_http_response_json(resp, NULL);
        vg_http_response_free(resp);
        return status;
}

static const char *status_text(json_t *j)
{
        const char *s = json_string_value(json_object_get(j, "status"));
        return s ? s : "";
}

static const char *result_str(json_t *j, const char *name)
{
        const char *s = json_string_value(json_object_get(json_object_get(j, "results"), name));
        return s ? s : "";
}

/* ---- an agent -------------------------------------------------------------------------------- */

struct agent {
        struct vg_tpm *tpm;
        char *ek, *ak, *ekcert; /* base64 as sent */
};

static char *b64(const uint8_t *p, size_t n)
{
        char *s = vg_b64_encode(p, n, VG_B64_STD);
        if (!s)
                tap_bail("b64");
        return s;
}

static void agent_ak(struct agent *a, enum vg_tpm_key_type alg)
{
        struct vg_tpm_ak_params ap = { .alg = alg, .hash = VG_HASH_SHA256 };
        struct vg_error err = { 0 };
        _cleanup_free_ uint8_t *pub = NULL;
        size_t len;

        if (vg_tpm_ak_create(a->tpm, &ap, &err) < 0 ||
            vg_tpm_ak_public(a->tpm, &pub, &len, &err) < 0)
                tap_bail("AK: %s", vg_error_str(&err));
        free(a->ak);
        a->ak = b64(pub, len);
}

static void agent_init(struct agent *a, struct vg_swtpm *t, enum vg_tpm_key_type alg)
{
        struct vg_error err = { 0 };
        _cleanup_free_ uint8_t *ek = NULL, *cert = NULL;
        size_t ek_len, cert_len;

        memset(a, 0, sizeof(*a));
        if (vg_tpm_open(vg_swtpm_tcti(t), 0, &a->tpm, &err) < 0 ||
            vg_tpm_ek_load(a->tpm, alg, VG_TPM_EK_DEFAULT, &err) < 0 ||
            vg_tpm_ek_public(a->tpm, &ek, &ek_len, &err) < 0 ||
            vg_tpm_ek_cert_read(a->tpm, alg, &cert, &cert_len, &err) < 0)
                tap_bail("agent TPM: %s", vg_error_str(&err));
        a->ek = b64(ek, ek_len);
        a->ekcert = b64(cert, cert_len);
        agent_ak(a, alg);
}

static void agent_free(struct agent *a)
{
        vg_tpm_close(a->tpm);
        free(a->ek);
        free(a->ak);
        free(a->ekcert);
}

static json_t *reg_body(const struct agent *a, const char *ekcert)
{
        return json_pack("{s:s, s:s, s:s?, s:s, s:s, s:i}", "ek_tpm", a->ek, "aik_tpm", a->ak,
                         "ekcert", ekcert, "mtls_cert", "disabled", "ip", "127.0.0.1", "port",
                         9002);
}

/* POST the registration; on 200 run ActivateCredential and compute the auth_tag as the
 * rust-keylime agent does: HMAC-SHA384 keyed with base64(recovered challenge). */
static int agent_register(const struct agent *a, const struct registrar *r, const char *uuid,
                          json_t *body, char tag[VG_AUTH_TAG_LEN + 1], json_t **reply)
{
        char path[128];
        json_auto_t *own = NULL;
        json_t *res = NULL;
        struct vg_error err = { 0 };

        if (!body)
                body = own = reg_body(a, a->ekcert);
        snprintf(path, sizeof(path), "/v2.5/agents/%s", uuid);
        int st = call("POST", NULL, r->port, path, body, NULL, 0, &res, NULL);
        if (st == 200 && tag) {
                _cleanup_free_ uint8_t *blob = NULL, *cred = NULL;
                size_t blob_len, cred_len;
                const char *b = result_str(res, "blob");
                if (vg_b64_decode(b, strlen(b), VG_B64_STD, &blob, &blob_len) < 0 ||
                    vg_tpm_activate_credential_file(a->tpm, blob, blob_len, &cred, &cred_len,
                                                    &err) < 0)
                        tap_bail("activation on the TPM failed: %s", vg_error_str(&err));
                auth_tag(cred, cred_len, uuid, tag);
        }
        if (reply)
                *reply = res;
        else
                json_decref(res);
        return st;
}

static int activate(const struct registrar *r, const char *uuid, const char *tag,
                    const char *suffix, json_t **reply)
{
        char path[160];
        json_auto_t *body = json_pack("{s:s}", "auth_tag", tag);

        snprintf(path, sizeof(path), "/v2.5/agents/%s%s", uuid, suffix);
        return call("PUT", NULL, r->port, path, body, NULL, 0, reply, NULL);
}

static int admin(struct ctx *c, const struct registrar *r, const char *method, const char *path,
                 json_t **reply)
{
        return call(method, c->admin, r->tls_port, path, NULL, NULL, 0, reply, NULL);
}

static int get_agent(struct ctx *c, const struct registrar *r, const char *uuid, json_t **reply)
{
        char path[128];
        snprintf(path, sizeof(path), "/v2.1/agents/%s", uuid);
        return admin(c, r, "GET", path, reply);
}

static bool list_has(struct ctx *c, const struct registrar *r, const char *uuid)
{
        json_auto_t *j = NULL;
        if (admin(c, r, "GET", "/v2.5/agents/", &j) != 200)
                return false;
        json_t *arr = json_object_get(json_object_get(j, "results"), "uuids"), *v;
        size_t i;
        json_array_foreach (arr, i, v)
                if (strcmp(json_string_value(v), uuid) == 0)
                        return true;
        return false;
}

/* ---- the tests ------------------------------------------------------------------------------- */

static void test_flow(struct ctx *c, struct registrar *r, struct agent *a, const char *uuid,
                      const char *label)
{
        char tag[VG_AUTH_TAG_LEN + 1];
        json_auto_t *reg = NULL, *got = NULL, *act = NULL;

        is_int(agent_register(a, r, uuid, NULL, tag, &reg), 200, "%s: registration accepted: %s",
               label, status_text(reg));
        ok(strlen(result_str(reg, "blob")) > 100, "%s: the reply carries a credential blob", label);
        is_int(get_agent(c, r, uuid, NULL), 404, "%s: not readable before activation", label);
        ok(!list_has(c, r, uuid), "%s: not listed before activation", label);
        is_int(activate(r, uuid, tag, "", &act), 200, "%s: activation accepted: %s", label,
               status_text(act));
        is_int(get_agent(c, r, uuid, &got), 200, "%s: readable over mTLS after activation", label);
        is_str(result_str(got, "ek_tpm"), a->ek, "%s: ek_tpm as sent", label);
        is_str(result_str(got, "aik_tpm"), a->ak, "%s: aik_tpm as sent", label);
        is_str(result_str(got, "ekcert"), a->ekcert, "%s: ekcert is the DER certificate", label);
        is_str(result_str(got, "mtls_cert"), "disabled", "%s: mtls_cert", label);
        is_str(result_str(got, "ip"), "127.0.0.1", "%s: ip", label);
        json_t *res = json_object_get(got, "results");
        is_int(json_integer_value(json_object_get(res, "port")), 9002, "%s: port", label);
        is_int(json_integer_value(json_object_get(res, "regcount")), 1, "%s: regcount 1", label);
        ok(list_has(c, r, uuid), "%s: listed", label);
}

static void test_reregistration(struct ctx *c, struct registrar *r, struct agent *a,
                                struct vg_swtpm *other)
{
        char tag[VG_AUTH_TAG_LEN + 1];
        json_auto_t *j = NULL, *got = NULL, *j2 = NULL, *got2 = NULL;

        /* The same TPM identity again (an agent restart): allowed, needs a new activation. */
        is_int(agent_register(a, r, UUID_A, NULL, tag, NULL), 200, "same EK and AK: re-registered");
        is_int(get_agent(c, r, UUID_A, NULL), 404, "re-registered: inactive until re-activated");
        is_int(activate(r, UUID_A, tag, "/activate", NULL), 200, "re-activated through /activate");
        is_int(get_agent(c, r, UUID_A, &got), 200, "readable again");
        is_int(json_integer_value(json_object_get(json_object_get(got, "results"), "regcount")), 2,
               "regcount counts the registrations");

        /* CVE-2025-13609: another AK under the same id. */
        _cleanup_free_ char *old_ak = strdup(a->ak);
        agent_ak(a, VG_TPM_KEY_RSA);
        is_int(agent_register(a, r, UUID_A, NULL, NULL, &j), 403, "a different AK is refused");
        contains(status_text(j), "different AK", "the refusal says the AK changed");
        /* CVE-2025-13609: another TPM (EK) under the same id. */
        struct agent b;
        agent_init(&b, other, VG_TPM_KEY_RSA);
        is_int(agent_register(&b, r, UUID_A, NULL, NULL, &j2), 403, "a different EK is refused");
        contains(status_text(j2), "different EK", "the refusal says the EK changed");
        is_int(get_agent(c, r, UUID_A, &got2), 200, "the agent is still registered and active");
        is_str(result_str(got2, "aik_tpm"), old_ak, "the stored AK is unchanged");
        is_str(result_str(got2, "ek_tpm"), result_str(got, "ek_tpm"), "the stored EK is unchanged");
        is_int(json_integer_value(json_object_get(json_object_get(got2, "results"), "regcount")), 2,
               "regcount unchanged by the refusals");
        agent_free(&b);
}

static void test_wrong_tag(struct ctx *c, struct registrar *r, struct agent *a)
{
        char tag[VG_AUTH_TAG_LEN + 1], bad[VG_AUTH_TAG_LEN + 1];
        json_auto_t *j = NULL;

        /* CVE-2023-38201: a wrong auth_tag never activates and removes the registration. */
        is_int(agent_register(a, r, UUID_B, NULL, tag, NULL), 200, "agent B registered");
        memcpy(bad, tag, sizeof(bad));
        bad[0] = bad[0] == '0' ? '1' : '0';
        is_int(activate(r, UUID_B, bad, "", &j), 400, "a wrong auth_tag is refused");
        contains(status_text(j), "deleted", "the refusal says the registration was deleted");
        is_int(get_agent(c, r, UUID_B, NULL), 404, "the agent is not readable");
        is_int(activate(r, UUID_B, tag, "", NULL), 404,
               "the right tag afterwards finds no registration");
        is_int(activate(r, UUID_UNKNOWN, tag, "", NULL), 404, "activating an unknown agent: 404");
        is_int(agent_register(a, r, UUID_B, NULL, tag, NULL), 200, "agent B registers again");
        is_int(activate(r, UUID_B, "", "", NULL), 400, "an empty auth_tag is refused");
        is_int(activate(r, UUID_B, tag, "", NULL), 404, "and it deleted the registration too");

        /* Unlike Keylime, a junk tag from anyone who reaches port 8890 cannot remove an agent
         * that is already active. */
        is_int(agent_register(a, r, UUID_B, NULL, tag, NULL), 200, "agent B registers once more");
        is_int(activate(r, UUID_B, tag, "", NULL), 200, "and activates");
        json_decref(j);
        j = NULL;
        is_int(activate(r, UUID_B, bad, "", &j), 400, "a wrong tag for an active agent: 400");
        contains(status_text(j), "stays active", "the refusal says the agent stays active");
        is_int(get_agent(c, r, UUID_B, NULL), 200, "the active agent is still readable");
}

static void test_bad_input(struct ctx *c, struct registrar *r, struct agent *a)
{
        static const struct {
                const char *what, *path, *body, *needle;
                int status;
        } cases[] = {
                { "malformed JSON", "/v2.5/agents/" UUID_A, "{\"ek_tpm\": ", "malformed JSON",
                  400 },
                { "not an object", "/v2.5/agents/" UUID_A, "[1, 2]", "expected an object", 400 },
                { "missing ek_tpm", "/v2.5/agents/" UUID_A, "{\"aik_tpm\": \"AAAA\"}", "'ek_tpm'",
                  400 },
                { "ek_tpm not a string", "/v2.5/agents/" UUID_A,
                  "{\"ek_tpm\": 5, \"aik_tpm\": \"\"}", "'ek_tpm': expected a string", 400 },
                { "bad base64", "/v2.5/agents/" UUID_A,
                  "{\"ek_tpm\": \"!!!\", \"aik_tpm\": \"AAAA\"}", "'ek_tpm'", 400 },
                { "TPM2B_PUBLIC that does not parse", "/v2.5/agents/" UUID_A,
                  "{\"ek_tpm\": \"AAEAAgAD\", \"aik_tpm\": \"AAAA\"}", "'ek_tpm'", 400 },
                { "not a UUID", "/v2.5/agents/not-a-uuid", "{}", "not a UUID", 400 },
                { "UUID with a quote", "/v2.5/agents/%27%3B--", "{}", "not a UUID", 400 },
                { "API version 3.0", "/v3.0/agents/" UUID_A, "{}", "not supported", 400 },
                { "API version 2.0", "/v2.0/agents/" UUID_A, "{}", "not supported", 400 },
                { "agent_id missing in the body", "/v2.5/agents", "{}", "'agent_id'", 400 },
        };
        json_auto_t *before = NULL, *after = NULL;

        is_int(get_agent(c, r, UUID_A, &before), 200, "agent A before the bad requests");
        for (size_t i = 0; i < VG_ARRAY_SIZE(cases); i++) {
                json_auto_t *j = NULL;
                is_int(call("POST", NULL, r->port, cases[i].path, NULL, cases[i].body,
                            strlen(cases[i].body), &j, NULL),
                       cases[i].status, "%s: %d", cases[i].what, cases[i].status);
                contains(status_text(j), cases[i].needle, "%s: the message names it",
                         cases[i].what);
        }

        /* Valid keys in the wrong roles: the EK as AK is not a restricted signing key. */
        json_auto_t *b1 =
            json_pack("{s:s, s:s, s:s}", "ek_tpm", a->ek, "aik_tpm", a->ek, "ekcert", a->ekcert);
        json_auto_t *j1 = NULL;
        is_int(agent_register(a, r, UUID_A, b1, NULL, &j1), 400, "the EK as AK is refused");
        contains(status_text(j1), "'aik_tpm': not a restricted signing key", "and says why");
        json_auto_t *b2 =
            json_pack("{s:s, s:s, s:s}", "ek_tpm", a->ek, "aik_tpm", a->ak, "ekcert", "%%%");
        json_auto_t *j2 = NULL;
        is_int(agent_register(a, r, UUID_A, b2, NULL, &j2), 400, "ekcert in bad base64");
        contains(status_text(j2), "ekcert", "and the message names ekcert");
        json_auto_t *b3 = json_pack("{s:s, s:s, s:s, s:s}", "ek_tpm", a->ek, "aik_tpm", a->ak,
                                    "ekcert", a->ekcert, "port", "http");
        json_auto_t *j3 = NULL;
        is_int(agent_register(a, r, UUID_A, b3, NULL, &j3), 400, "a port that is not a number");
        contains(status_text(j3), "'port'", "and the message names port");
        json_auto_t *b4 = json_pack("{s:s, s:s, s:s, s:s}", "ek_tpm", a->ek, "aik_tpm", a->ak,
                                    "ekcert", a->ekcert, "mtls_cert", "not a certificate");
        json_auto_t *j4 = NULL;
        is_int(agent_register(a, r, UUID_A, b4, NULL, &j4), 400, "an mtls_cert that is no PEM");
        contains(status_text(j4), "'mtls_cert'", "and the message names mtls_cert");

        /* Oversized: refused by the HTTP layer before any handler runs. */
        size_t big = 200 * 1024;
        _cleanup_free_ char *huge = malloc(big);
        memset(huge, ' ', big);
        huge[0] = '{';
        huge[big - 1] = '}';
        int st = call("POST", NULL, r->port, "/v2.5/agents/" UUID_A, NULL, huge, big, NULL, NULL);
        ok(st == 413 || st == -1, "a 200 KiB body is refused (got %d)", st);

        is_int(get_agent(c, r, UUID_A, &after), 200, "agent A is still active");
        ok(json_equal(json_object_get(before, "results"), json_object_get(after, "results")),
           "and its record is unchanged by the bad requests");

        /* Admin routes are not on the plain port. */
        ok(call("GET", NULL, r->port, "/v2.5/agents/" UUID_A, NULL, NULL, 0, NULL, NULL) != 200,
           "the plain port does not serve agent records");
        ok(call("DELETE", NULL, r->port, "/v2.5/agents/" UUID_A, NULL, NULL, 0, NULL, NULL) != 200,
           "the plain port does not delete");
}

/* CVE-2026-1709: the admin port demands a certificate from our CA, for a client. */
static void test_mtls(struct ctx *c, struct registrar *r)
{
        _cleanup_free_ char *cacert = path_in(c->ca, "cacert.crt");
        _cleanup_free_ char *fcert = path_in(c->ca2, "client-cert.crt");
        _cleanup_free_ char *fkey = path_in(c->ca2, "client-private.pem");
        _cleanup_free_ char *scert = path_in(c->ca, "server-cert.crt");
        _cleanup_free_ char *skey = path_in(c->ca, "server-private.pem");
        _cleanup_free_ char *ccert = path_in(c->ca, "client-cert.crt");
        _cleanup_free_ char *ckey = path_in(c->ca, "client-private.pem");
        static const char *const endpoints[][2] = {
                { "GET", "/version" },
                { "GET", "/v2.5/agents/" },
                { "GET", "/v2.5/agents/" UUID_A },
                { "DELETE", "/v2.5/agents/" UUID_A },
        };
        struct {
                const char *what, *cert, *key;
        } clients[] = {
                { "no client certificate", NULL, NULL },
                { "a certificate from another CA", fcert, fkey },
                { "the server certificate as client certificate", scert, skey },
        };

        for (size_t e = 0; e < VG_ARRAY_SIZE(endpoints); e++) {
                char url[256];
                snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", r->tls_port, endpoints[e][1]);
                for (size_t k = 0; k < VG_ARRAY_SIZE(clients); k++) {
                        _cleanup_free_ char *out = NULL;
                        char *argv[20] = { "curl",       "-sS", "-o",
                                           "/dev/null",  "-w",  "%{http_code}",
                                           "--max-time", "10",  "--cacert",
                                           cacert,       "-X",  (char *)endpoints[e][0],
                                           url };
                        int n = 13;
                        if (clients[k].cert) {
                                argv[n++] = "--cert";
                                argv[n++] = (char *)clients[k].cert;
                                argv[n++] = "--key";
                                argv[n++] = (char *)clients[k].key;
                        }
                        int st = tap_run(argv, &out);
                        ok(st != 0 && out && strstr(out, "000"),
                           "curl %s %s with %s: no HTTP answer (exit %d)", endpoints[e][0],
                           endpoints[e][1], clients[k].what, st);
                }
        }
        _cleanup_free_ char *out = NULL, *url = NULL;
        if (asprintf(&url, "https://127.0.0.1:%d/version", r->tls_port) < 0)
                tap_bail("asprintf");
        is_int(tap_run((char *[]){ "curl", "-sS", "--max-time", "10", "--cacert", cacert, "--cert",
                                   ccert, "--key", ckey, url, NULL },
                       &out),
               0, "curl with our client certificate gets /version");
        contains(out, "\"current_version\": \"2.5\"", "current_version 2.5");
        contains(out, "\"supported_versions\": [\"2.1\", \"2.2\", \"2.3\", \"2.4\", \"2.5\"]",
                 "supported_versions");

        /* Our own client: without a certificate, and with the foreign CA's. */
        struct vg_error err = { 0 };
        struct vg_tls_client_config none = { .ca_file = cacert };
        struct vg_tls_client_config foreign = { .ca_file = cacert,
                                                .cert_file = fcert,
                                                .key_file = fkey };
        SSL_CTX *t1 = vg_tls_client_ctx_new(&none, &err);
        SSL_CTX *t2 = vg_tls_client_ctx_new(&foreign, &err);
        if (!t1 || !t2)
                tap_bail("client ctx: %s", vg_error_str(&err));
        for (size_t e = 0; e < VG_ARRAY_SIZE(endpoints); e++) {
                is_int(call(endpoints[e][0], t1, r->tls_port, endpoints[e][1], NULL, NULL, 0, NULL,
                            NULL),
                       -1, "vigil client %s %s without certificate: refused", endpoints[e][0],
                       endpoints[e][1]);
                is_int(call(endpoints[e][0], t2, r->tls_port, endpoints[e][1], NULL, NULL, 0, NULL,
                            NULL),
                       -1, "vigil client %s %s with a foreign certificate: refused",
                       endpoints[e][0], endpoints[e][1]);
        }
        SSL_CTX_free(t1);
        SSL_CTX_free(t2);
        is_int(get_agent(c, r, UUID_A, NULL), 200, "agent A survived the refused DELETEs");
}

/* EK certificate policy on a registrar whose store holds only the swtpm root. */
static void test_ek_chain(struct ctx *c, struct registrar *main_r, struct vg_swtpm *t,
                          struct agent *a, struct agent *ecc)
{
        struct registrar r = { .data_dir = path_in(c->tmp, "reg2"),
                               .store = path_in(c->tmp, "store2"),
                               .tls_dir = c->ca,
                               .require_ek_cert = true };
        _cleanup_free_ char *root = path_in(vg_swtpm_ek_ca_dir(t), "rootca-cert.pem");
        _cleanup_free_ char *issuer = path_in(vg_swtpm_ek_ca_dir(t), "issuercert.pem");
        _cleanup_free_ char *root_copy = path_in(r.store, "root.pem");
        char tag[VG_AUTH_TAG_LEN + 1];

        (void)main_r;
        mkdir(r.data_dir, 0700);
        mkdir(r.store, 0700);
        _cleanup_free_ char *root_pem = tap_read_file(root, NULL);
        _cleanup_free_ char *issuer_pem = tap_read_file(issuer, NULL);
        if (!root_pem || !issuer_pem || tap_write_file(root_copy, root_pem) < 0)
                tap_bail("cannot copy the swtpm root");
        registrar_start(&r, "reg2.log");

        json_auto_t *j = NULL, *j2 = NULL, *j3 = NULL, *j4 = NULL;
        is_int(agent_register(a, &r, UUID_D, NULL, NULL, &j), 403,
               "root only in the store, no intermediate sent: refused");
        contains(status_text(j),
                 "EK certificate for agent " UUID_D
                 ": unable to get local issuer certificate (issuer CN=swtpm-localca)",
                 "the refusal names the failed check and the missing issuer");

        /* The agent sends the intermediate itself: leaf then issuer as a PEM chain. */
        _cleanup_free_ uint8_t *der = NULL;
        size_t der_len;
        if (vg_b64_decode(a->ekcert, strlen(a->ekcert), VG_B64_STD, &der, &der_len) < 0)
                tap_bail("b64");
        _cleanup_free_ char *leaf_b64 = b64(der, der_len), *chain = NULL;
        size_t ll = strlen(leaf_b64);
        char *pem = malloc(ll + ll / 64 + 128);
        size_t n = (size_t)sprintf(pem, "-----BEGIN CERTIFICATE-----\n");
        for (size_t i = 0; i < ll; i += 64)
                n += (size_t)sprintf(pem + n, "%.64s\n", leaf_b64 + i);
        sprintf(pem + n, "-----END CERTIFICATE-----\n");
        if (asprintf(&chain, "%s%s", pem, issuer_pem) < 0)
                tap_bail("asprintf");
        free(pem);
        json_auto_t *body = reg_body(a, chain);
        is_int(agent_register(a, &r, UUID_D, body, tag, &j2), 200,
               "PEM chain with the intermediate: accepted (%s)", status_text(j2));
        is_int(activate(&r, UUID_D, tag, "", NULL), 200, "and activated");
        json_auto_t *got = NULL;
        is_int(get_agent(c, &r, UUID_D, &got), 200, "readable");
        is_str(result_str(got, "ekcert"), a->ekcert, "ekcert is returned as the leaf's DER");

        /* A valid certificate for another key: the RSA EK's certificate with the ECC EK. */
        json_auto_t *mix =
            json_pack("{s:s, s:s, s:s}", "ek_tpm", ecc->ek, "aik_tpm", ecc->ak, "ekcert", chain);
        is_int(agent_register(ecc, &r, UUID_E, mix, NULL, &j3), 403,
               "an EK certificate for another key: refused");
        contains(status_text(j3), "not the ek_tpm key", "the refusal says the keys differ");
        json_auto_t *nocert = json_pack("{s:s, s:s}", "ek_tpm", ecc->ek, "aik_tpm", ecc->ak);
        is_int(agent_register(ecc, &r, UUID_E, nocert, NULL, &j4), 403,
               "no EK certificate: refused");
        contains(status_text(j4), "none was sent", "the refusal says none was sent");
        is_int(registrar_stop(&r), 0, "second registrar exits 0 on SIGTERM");
        _cleanup_free_ char *log = registrar_log(&r);
        contains(log, "agent=" UUID_D, "refusals and registrations name the agent");
        contains(log, "peer=127.0.0.1:", "and the peer");

        /* require_ek_cert = false: accepted with a warning. */
        r.require_ek_cert = false;
        registrar_start(&r, "reg3.log");
        json_auto_t *j5 = NULL;
        is_int(agent_register(ecc, &r, UUID_E, nocert, tag, &j5), 200,
               "require_ek_cert off: no EK certificate accepted (%s)", status_text(j5));
        is_int(activate(&r, UUID_E, tag, "", NULL), 200, "and activated");
        is_int(registrar_stop(&r), 0, "third registrar exits 0");
        _cleanup_free_ char *log3 = registrar_log(&r);
        contains(log3, "accepted because require_ek_cert is off", "a warning is logged");
        free(r.data_dir);
        free(r.store);
        free(r.log);
}

static void test_check_config(struct ctx *c)
{
        _cleanup_free_ char *conf = path_in(c->tmp, "bad.conf"), *out = NULL;
        tap_write_file(conf, "[registrar]\nip = \"127.0.0.1\"\ntls_port = \"not a port\"\n");
        int st = tap_run(
            (char *[]){ getenv("VIGIL_REGISTRAR"), "-c", conf, "--check-config", NULL }, &out);
        is_int(st, 1, "--check-config on a bad file exits 1");
        _cleanup_free_ char *where = NULL;
        if (asprintf(&where, "%s:3", conf) < 0)
                tap_bail("asprintf");
        contains(out, where, "and names FILE:LINE");
}

int main(void)
{
        struct ctx c = { 0 };
        struct vg_error err = { 0 };
        _cleanup_swtpm_ struct vg_swtpm *rsa = NULL, *ecc_tpm = NULL, *other = NULL;
        const char *cli = getenv("VIGIL_CLI");

        if (!getenv("VIGIL_REGISTRAR") || !cli)
                tap_bail("VIGIL_REGISTRAR and VIGIL_CLI must be set (meson test does)");
        c.tmp = tap_tmpdir();
        c.ca = path_in(c.tmp, "ca");
        c.ca2 = path_in(c.tmp, "ca2");
        if (tap_run((char *[]){ (char *)cli, "ca", "init", c.ca, "--key-type", "ec:P-256", NULL },
                    NULL) != 0 ||
            tap_run((char *[]){ (char *)cli, "ca", "init", c.ca2, "--key-type", "ec:P-256", NULL },
                    NULL) != 0)
                tap_bail("vigil ca init failed");
        _cleanup_free_ char *cacert = path_in(c.ca, "cacert.crt");
        _cleanup_free_ char *ccert = path_in(c.ca, "client-cert.crt");
        _cleanup_free_ char *ckey = path_in(c.ca, "client-private.pem");
        struct vg_tls_client_config tc = { .ca_file = cacert,
                                           .cert_file = ccert,
                                           .key_file = ckey };
        c.admin = vg_tls_client_ctx_new(&tc, &err);
        if (!c.admin)
                tap_bail("admin TLS context: %s", vg_error_str(&err));

        struct vg_swtpm_opts o_rsa = { .ek = VG_SWTPM_EK_RSA2048 };
        struct vg_swtpm_opts o_ecc = { .ek = VG_SWTPM_EK_ECC_P256 };
        struct vg_swtpm_opts o_other = { .ek = VG_SWTPM_EK_RSA2048, .unique_identity = true };
        if (vg_swtpm_start(&o_rsa, &rsa, &err) < 0 || vg_swtpm_start(&o_ecc, &ecc_tpm, &err) < 0 ||
            vg_swtpm_start(&o_other, &other, &err) < 0)
                tap_bail("swtpm: %s", vg_error_str(&err));

        struct registrar r = { .data_dir = path_in(c.tmp, "reg"),
                               .tls_dir = c.ca,
                               .store = strdup(vg_swtpm_ek_ca_dir(rsa)),
                               .require_ek_cert = true };
        mkdir(r.data_dir, 0700);
        registrar_start(&r, "reg.log");

        struct agent a, e;
        agent_init(&a, rsa, VG_TPM_KEY_RSA);
        agent_init(&e, ecc_tpm, VG_TPM_KEY_ECC);

        test_flow(&c, &r, &a, UUID_A, "RSA EK");
        test_flow(&c, &r, &e, UUID_C, "ECC EK");
        test_reregistration(&c, &r, &a, other);
        test_wrong_tag(&c, &r, &a);
        test_bad_input(&c, &r, &a);
        test_mtls(&c, &r);

        /* POST /v2.x/agents with agent_id in the body. */
        json_auto_t *body = reg_body(&e, e.ekcert);
        json_object_set_new(body, "agent_id", json_string(UUID_E));
        json_auto_t *j = NULL;
        is_int(call("POST", NULL, r.port, "/v2.3/agents", body, NULL, 0, &j, NULL), 200,
               "POST /v2.3/agents with agent_id in the body: %s", status_text(j));

        /* Restart: the data survives. */
        is_int(registrar_stop(&r), 0, "registrar exits 0 on SIGTERM");
        _cleanup_free_ char *log = registrar_log(&r);
        contains(log, "agent=" UUID_A, "the log names the agent");
        contains(log, "activated", "activations are logged");
        contains(log, "auth_tag for agent " UUID_B, "the wrong auth_tag refusal is logged");
        registrar_start(&r, "reg-restart.log");
        json_auto_t *got = NULL;
        is_int(get_agent(&c, &r, UUID_A, &got), 200, "after a restart agent A is still there");
        is_str(result_str(got, "ek_tpm"), a.ek, "with its EK");
        ok(list_has(&c, &r, UUID_C), "and the ECC agent is still listed");

        /* Delete. */
        is_int(admin(&c, &r, "DELETE", "/v2.5/agents/" UUID_C, NULL), 200, "DELETE agent C");
        is_int(get_agent(&c, &r, UUID_C, NULL), 404, "then GET is 404");
        is_int(admin(&c, &r, "DELETE", "/v2.5/agents/" UUID_C, NULL), 404, "DELETE again: 404");
        ok(!list_has(&c, &r, UUID_C), "and it is no longer listed");
        is_int(registrar_stop(&r), 0, "restarted registrar exits 0");

        test_ek_chain(&c, &r, rsa, &a, &e);
        test_check_config(&c);

        agent_free(&a);
        agent_free(&e);
        SSL_CTX_free(c.admin);
        free(r.data_dir);
        free(r.store);
        free(r.log);
        free(c.ca);
        free(c.ca2);
        free(c.tmp);
        return tap_done();
}
