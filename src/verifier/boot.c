/* vigil-verifier: measured boot. Named refstates (/mbpolicies, Keylime API 2.3+) shared by
 * checksum between the agents using them, and the judgement of a quote's UEFI event log:
 * parsed once per distinct log (it only changes on reboot), replayed against the quoted PCRs,
 * evaluated against the refstate; every failure is a "measured_boot.*" event. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot.h"
#include "encoding.h"
#include "eventlog.h"
#include "http_server.h"
#include "log.h"
#include "mb_policy.h"
#include "store.h"
#include "verifier.h"

/* A parsed refstate in use by at least one agent (main thread only; the pollers only read
 * ->policy, which never changes). */
struct vg_cv_mb_entry {
        struct vg_cv_mb_entry *next;
        uint8_t checksum[32]; /* SHA-256 of the stored text */
        struct vg_mb_policy *policy;
        unsigned refs;
};

/* An agent's measured-boot state. */
struct vg_cv_boot {
        bool loaded;        /* name read (from the add request or the row) */
        bool stored_inline; /* vg_cv_boot_add stored a refstate (undo drops it) */
        struct vg_cv_mb_entry *pol;
        /* The last log seen, keyed by SHA-256 of its base64 text. */
        bool have_log;
        uint8_t log_digest[32];
        struct vg_evlog *log;                   /* NULL when it did not parse */
        char *log_error;                        /* why it did not */
        const struct vg_cv_mb_entry *evaluated; /* the refstate res is for, NULL: none */
        struct vg_mb_result res;
        size_t log_parses;
};

static const char *const api_versions[] = { VG_VERIFIER_API_VERSIONS };

/* ---- the refstate cache ------------------------------------------------------------------- */

static void entry_unref(struct vg_verifier *v, struct vg_cv_mb_entry *e)
{
        if (!e || --e->refs > 0)
                return;
        for (struct vg_cv_mb_entry **p = &v->mb_cache; *p; p = &(*p)->next)
                if (*p == e) {
                        *p = e->next;
                        break;
                }
        vg_mb_policy_free(e->policy);
        free(e);
}

static int entry_get(struct vg_verifier *v, const char *text, struct vg_cv_mb_entry **out,
                     struct vg_error *err)
{
        uint8_t sum[32];
        struct vg_cv_mb_entry *e;
        int r;

        if (vg_hash(VG_HASH_SHA256, text, strlen(text), sum) < 0)
                return vg_error_set(err, -ENOMEM, "cannot hash the refstate");
        for (e = v->mb_cache; e; e = e->next)
                if (memcmp(e->checksum, sum, sizeof(sum)) == 0) {
                        e->refs++;
                        *out = e;
                        return 0;
                }
        e = calloc(1, sizeof(*e));
        if (!e)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if ((r = vg_mb_policy_parse(text, strlen(text), &e->policy, err)) < 0) {
                free(e);
                return r;
        }
        memcpy(e->checksum, sum, sizeof(sum));
        e->refs = 1;
        e->next = v->mb_cache;
        v->mb_cache = e;
        *out = e;
        return 0;
}

/* ---- the mbpolicies table ----------------------------------------------------------------- */

/* The refstate text of name; -ENOENT. */
static int policy_get(struct vg_verifier *v, const char *name, char **text, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r =
            vg_store_prepare(v->db, "SELECT mb_policy FROM mbpolicies WHERE name = $1", &st, err);

        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, name);
        if ((r = vg_stmt_step(st, err)) < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        if (text) {
                const char *s = vg_stmt_column_text(st, 0, NULL);
                if (!(*text = strdup(s ? s : "{}")))
                        return vg_error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int policy_store(struct vg_verifier *v, const char *name, const char *text, bool update,
                        struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        uint8_t sum[32];
        _cleanup_free_ char *hex = NULL;
        int r;

        if (vg_hash(VG_HASH_SHA256, text, strlen(text), sum) < 0 ||
            !(hex = vg_hex_encode(sum, sizeof(sum))))
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = vg_store_prepare(v->db,
                             update ? "UPDATE mbpolicies SET mb_policy = $2, checksum = $3 "
                                      "WHERE name = $1"
                                    : "INSERT INTO mbpolicies (name, mb_policy, checksum) "
                                      "VALUES ($1, $2, $3)",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, name);
        vg_stmt_bind_text(st, 2, text);
        vg_stmt_bind_text(st, 3, hex);
        r = vg_stmt_exec(st, err);
        if (r >= 0 && update && vg_stmt_changes(st) == 0)
                return -ENOENT;
        return r;
}

static int policy_delete(struct vg_verifier *v, const char *name, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r = vg_store_prepare(v->db, "DELETE FROM mbpolicies WHERE name = $1", &st, err);

        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, name);
        return vg_stmt_exec(st, err);
}

/* The agent using name, or NULL (malloc'd). */
static char *policy_user(struct vg_verifier *v, const char *name)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };

        if (vg_store_prepare(v->db, "SELECT agent_id FROM agents WHERE mb_policy_name = $1", &st,
                             &err) < 0)
                return NULL;
        vg_stmt_bind_text(st, 1, name);
        if (vg_stmt_step(st, &err) <= 0)
                return NULL;
        const char *id = vg_stmt_column_text(st, 0, NULL);
        return id ? strdup(id) : NULL;
}

/*
 * The "mb_policy" field: a refstate as a JSON string (keylime_tenant's mba.policy_load) or as
 * an object. *text gets the refstate text (NULL when absent, null or ""), checked with
 * vg_mb_policy_parse so that err names the JSON path of what is wrong.
 */
static int refstate_field(const json_t *body, char **text, struct vg_error *err)
{
        const json_t *f = json_object_get(body, "mb_policy");
        struct vg_mb_policy *p = NULL;
        char *s;
        int r;

        *text = NULL;
        if (!f || json_is_null(f) || (json_is_string(f) && json_string_length(f) == 0))
                return 0;
        if (json_is_string(f)) {
                if (strlen(json_string_value(f)) != json_string_length(f))
                        return vg_error_set(err, -EINVAL, "mb_policy contains a NUL character");
                s = strdup(json_string_value(f));
        } else if (json_is_object(f)) {
                s = json_dumps(f, JSON_COMPACT | JSON_PRESERVE_ORDER);
        } else {
                return vg_error_set(err, -EINVAL,
                                    "mb_policy: expected a refstate (a JSON object or its text), "
                                    "found %s",
                                    vg_json_type_name(f));
        }
        if (!s)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if ((r = vg_mb_policy_parse(s, strlen(s), &p, err)) < 0) {
                free(s);
                vg_error_prefix(err, "mb_policy: ");
                return r;
        }
        vg_mb_policy_free(p);
        *text = s;
        return 0;
}

/* ---- REST: /mbpolicies -------------------------------------------------------------------- */

static bool request_ok(struct vg_http_request *req)
{
        const char *ver = vg_http_request_param(req, "version");
        bool known = false;

        for (size_t i = 0; i < VG_ARRAY_SIZE(api_versions); i++)
                known = known || (ver && strcmp(ver, api_versions[i]) == 0);
        if (!known) {
                vg_http_refuse(req, 400, NULL, "API version not supported: v%.10s", ver ? ver : "");
                return false;
        }
        if (!vg_http_request_peer_cert(req)) {
                vg_http_refuse(req, 401, NULL,
                               "a client certificate is required for this action (mTLS)");
                return false;
        }
        return true;
}

static const char *name_param(struct vg_http_request *req)
{
        const char *name;

        if (!request_ok(req))
                return NULL;
        name = vg_http_request_param(req, "name");
        if (!vg_cv_agent_id_valid(name)) {
                vg_http_refuse(req, 400, NULL,
                               "Invalid URL: measured boot policy name with letters, digits, "
                               "'-', '_' and '.' expected");
                return NULL;
        }
        return name;
}

static void on_mb_list(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };
        int r;

        if (!request_ok(req))
                return;
        json_t *names = json_array();
        r = vg_store_prepare(v->db, "SELECT name FROM mbpolicies ORDER BY name", &st, &err);
        while (r >= 0 && (r = vg_stmt_step(st, &err)) > 0)
                json_array_append_new(names, json_string(vg_stmt_column_text(st, 0, NULL)));
        if (r < 0) {
                json_decref(names);
                vg_err(NULL, "listing measured boot policies failed: %s", vg_error_str(&err));
                vg_http_reply_error(req, 500, "Failed to get names of mbpolicies");
                return;
        }
        vg_http_reply_keylime(req, 200, "Success", json_pack("{s:o}", "mbpolicy names", names));
}

static void on_mb_get(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *name = name_param(req);
        _cleanup_free_ char *text = NULL;
        struct vg_error err = { 0 };
        int r;

        if (!name)
                return;
        r = policy_get(v, name, &text, &err);
        if (r == -ENOENT) {
                vg_http_reply_error(req, 404, "Measured boot policy %s not found", name);
                return;
        }
        if (r < 0) {
                vg_http_reply_error(req, 500, "Failed to get mb_policy");
                return;
        }
        /* Keylime returns the stored text as it is. */
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:s}", "name", name, "mb_policy", text));
}

static void mb_write(struct vg_http_request *req, struct vg_verifier *v, bool update)
{
        const char *name = name_param(req);
        _cleanup_free_ char *text = NULL;
        struct vg_error err = { 0 };
        json_error_t je;
        size_t len;
        int r;

        if (!name)
                return;
        const char *body = (const char *)vg_http_request_body(req, &len);
        if (!body || len == 0) {
                vg_http_refuse(req, 400, NULL, "Expected non zero content length");
                return;
        }
        json_auto_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(j)) {
                vg_http_refuse(req, 400, NULL, "malformed JSON body: %s",
                               j ? "expected an object" : je.text);
                return;
        }
        if (refstate_field(j, &text, &err) < 0) {
                vg_http_refuse(req, 400, NULL, "%s", vg_error_str(&err));
                return;
        }
        if (!text) {
                vg_http_refuse(req, 400, NULL, "field 'mb_policy' is missing or empty");
                return;
        }
        r = policy_get(v, name, NULL, &err);
        if (r < 0 && r != -ENOENT) {
                vg_http_reply_error(req, 500, "Internal Server Error");
                return;
        }
        /* Keylime answers 409 both for a POST over an existing name and a PUT of a new one. */
        if (!update && r == 0) {
                vg_http_refuse(req, 409, NULL, "Measured boot policy with name %s already exists",
                               name);
                return;
        }
        if (update && r == -ENOENT) {
                vg_http_refuse(req, 409, NULL,
                               "Measured boot policy with name %s does not already exist", name);
                return;
        }
        if ((r = policy_store(v, name, text, update, &err)) < 0) {
                vg_err(VG_F("mb_policy", name), "storing failed: %s", vg_error_str(&err));
                vg_http_reply_error(req, 500, "Internal Server Error");
                return;
        }
        vg_info(VG_F("mb_policy", name, "peer", vg_http_request_peer(req)),
                "measured boot policy %s %s; agents using it pick it up at reactivate", name,
                update ? "replaced" : "created");
        vg_http_reply_keylime(req, 201, "Created", NULL);
}

static void on_mb_post(struct vg_http_request *req, void *userdata)
{
        mb_write(req, userdata, false);
}

static void on_mb_put(struct vg_http_request *req, void *userdata)
{
        mb_write(req, userdata, true);
}

static void on_mb_delete(struct vg_http_request *req, void *userdata)
{
        struct vg_verifier *v = userdata;
        const char *name = name_param(req);
        _cleanup_free_ char *user = NULL;
        struct vg_error err = { 0 };
        int r;

        if (!name)
                return;
        r = policy_get(v, name, NULL, &err);
        if (r == -ENOENT) {
                vg_http_reply_error(req, 404, "Measured boot policy %s not found", name);
                return;
        }
        if (r < 0) {
                vg_http_reply_error(req, 500, "Failed to get mb_policy");
                return;
        }
        if ((user = policy_user(v, name))) {
                vg_http_refuse(req, 409, user,
                               "Can't delete mb_policy as it's currently in use by agent %s", user);
                return;
        }
        if (policy_delete(v, name, &err) < 0) {
                vg_http_reply_error(req, 500, "Database error: %s", vg_error_str(&err));
                return;
        }
        vg_info(VG_F("mb_policy", name), "measured boot policy %s deleted", name);
        vg_http_reply_header(req, "Content-Type", "application/json");
        vg_http_reply(req, 204, NULL, NULL, 0);
}

int vg_cv_boot_api_register(struct vg_verifier *v)
{
        static const struct {
                const char *method, *pattern;
                vg_http_handler_fn fn;
        } routes[] = {
                { "GET", "/v{version}/mbpolicies", on_mb_list },
                { "GET", "/v{version}/mbpolicies/{name}", on_mb_get },
                { "POST", "/v{version}/mbpolicies/{name}", on_mb_post },
                { "PUT", "/v{version}/mbpolicies/{name}", on_mb_put },
                { "DELETE", "/v{version}/mbpolicies/{name}", on_mb_delete },
        };
        int r;

        for (size_t i = 0; i < VG_ARRAY_SIZE(routes); i++)
                if ((r = vg_http_server_route(v->srv, routes[i].method, routes[i].pattern,
                                              routes[i].fn, v)) < 0)
                        return r;
        return 0;
}

/* ---- the agent's refstate ------------------------------------------------------------------ */

static struct vg_cv_boot *boot_of(struct vg_cv_agent *a)
{
        if (!a->boot)
                a->boot = calloc(1, sizeof(*a->boot));
        return a->boot;
}

int vg_cv_boot_add(struct vg_verifier *v, struct vg_cv_agent *a, const char *body, size_t len,
                   struct vg_error *err)
{
        _cleanup_free_ char *text = NULL;
        struct vg_cv_boot *b = boot_of(a);
        json_auto_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
        const json_t *n = json_object_get(j, "mb_policy_name");
        const char *name = json_string_value(n);
        int r;

        if (!b) {
                vg_error_set(err, -ENOMEM, "out of memory");
                return 500;
        }
        b->loaded = true;
        if (n && !json_is_null(n) && !json_is_string(n)) {
                vg_error_set(err, -EINVAL, "field 'mb_policy_name': expected a string, found %s",
                             vg_json_type_name(n));
                return 400;
        }
        if (name && !*name)
                name = NULL;
        if (name && !vg_cv_agent_id_valid(name)) {
                vg_error_set(err, -EINVAL,
                             "field 'mb_policy_name': letters, digits, '-', '_' and '.' only");
                return 400;
        }
        if (refstate_field(j, &text, err) < 0)
                return 400;
        if (!text && !name)
                return 0; /* no measured boot */
        if (!name)
                name = a->id;
        r = policy_get(v, name, NULL, err);
        if (r < 0 && r != -ENOENT)
                return 500;
        if (text && r == 0) {
                vg_error_set(err, -EEXIST,
                             "mb_policy with name %s already exists. Please use a different name "
                             "or delete the mb_policy from the verifier.",
                             name);
                return 409;
        }
        if (!text && r == -ENOENT) {
                vg_error_set(err, -ENOENT, "Could not find mb_policy with name %s!", name);
                return 404;
        }
        if (text) {
                if ((r = policy_store(v, name, text, false, err)) < 0)
                        return r == -EEXIST ? 409 : 500;
                b->stored_inline = true;
        }
        if (!(a->mb_policy_name = strdup(name))) {
                vg_error_set(err, -ENOMEM, "out of memory");
                return 500;
        }
        return 0;
}

void vg_cv_boot_add_undo(struct vg_verifier *v, struct vg_cv_agent *a)
{
        struct vg_error err = { 0 };

        if (a->boot && a->boot->stored_inline && a->mb_policy_name)
                policy_delete(v, a->mb_policy_name, &err);
}

int vg_cv_boot_add_done(struct vg_verifier *v, struct vg_cv_agent *a, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r;

        if (!a->mb_policy_name)
                return 0;
        r = vg_store_prepare(v->db, "UPDATE agents SET mb_policy_name = $2 WHERE agent_id = $1",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, a->id);
        vg_stmt_bind_text(st, 2, a->mb_policy_name);
        return vg_stmt_exec(st, err);
}

void vg_cv_boot_agent_deleted(struct vg_verifier *v, const char *id)
{
        struct vg_error err = { 0 };
        _cleanup_free_ char *user = policy_user(v, id);

        if (!user && policy_delete(v, id, &err) < 0)
                vg_warn(VG_F("agent", id), "deleting the measured boot policy %s failed: %s", id,
                        vg_error_str(&err));
}

int vg_cv_boot_prepare(struct vg_verifier *v, struct vg_cv_agent *a, struct vg_error *err)
{
        struct vg_cv_boot *b = boot_of(a);
        _cleanup_free_ char *text = NULL;
        struct vg_cv_mb_entry *e = NULL;
        int r;

        if (!b)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (!b->loaded) { /* an agent read from its row: the name is in the row */
                _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
                r = vg_store_prepare(v->db, "SELECT mb_policy_name FROM agents WHERE agent_id = $1",
                                     &st, err);
                if (r < 0)
                        return r;
                vg_stmt_bind_text(st, 1, a->id);
                if ((r = vg_stmt_step(st, err)) < 0)
                        return r;
                const char *name = r > 0 ? vg_stmt_column_text(st, 0, NULL) : NULL;
                free(a->mb_policy_name);
                a->mb_policy_name = name && *name ? strdup(name) : NULL;
                b->loaded = true;
        }
        b->evaluated = NULL; /* the refstate may be another one now */
        if (!a->mb_policy_name) {
                entry_unref(v, b->pol);
                b->pol = NULL;
                return 0;
        }
        r = policy_get(v, a->mb_policy_name, &text, err);
        if (r == -ENOENT)
                return vg_error_set(err, -ENOENT, "measured boot policy %s does not exist",
                                    a->mb_policy_name);
        if (r < 0)
                return r;
        if ((r = entry_get(v, text, &e, err)) < 0) {
                vg_error_prefix(err, "measured boot policy %s: ", a->mb_policy_name);
                return r;
        }
        entry_unref(v, b->pol);
        b->pol = e;
        /* Keylime's tenant asks for 0-9 and 11-15; what the refstate reads must be quoted. */
        a->mask |= VG_MB_POLICY_RELEVANT_PCRS;
        return 0;
}

bool vg_cv_boot_has_policy(const struct vg_cv_agent *a)
{
        return a->mb_policy_name != NULL;
}

static void forget_log(struct vg_cv_boot *b)
{
        vg_evlog_free(b->log);
        b->log = NULL;
        free(b->log_error);
        b->log_error = NULL;
        vg_mb_result_clear(&b->res);
        b->evaluated = NULL;
        b->have_log = false;
}

void vg_cv_boot_agent_free(struct vg_cv_agent *a)
{
        struct vg_cv_boot *b = a->boot;

        free(a->mb_policy_name);
        a->mb_policy_name = NULL;
        if (!b)
                return;
        forget_log(b);
        entry_unref(a->v, b->pol);
        free(b);
        a->boot = NULL;
}

size_t vg_cv_boot_log_parses(const struct vg_cv_agent *a)
{
        return a->boot ? a->boot->log_parses : 0;
}

/* ---- evaluation ---------------------------------------------------------------------------- */

static void add_event(struct vg_cv_failure *f, const char *id, int64_t pcr, const char *expected,
                      const char *found, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add_event(struct vg_cv_failure *f, const char *id, int64_t pcr, const char *expected,
                      const char *found, const char *fmt, ...)
{
        char file[16] = "", msg[2048];
        va_list ap;

        if (pcr >= 0)
                snprintf(file, sizeof(file), "PCR %d", (int)pcr);
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        vg_cv_failure_add(f, id, false, true, pcr >= 0 ? file : NULL, expected, found, UINT64_MAX,
                          "%s", msg);
}

/* Parse (and evaluate) the log when it is not the one seen last time. */
static void load_log(struct vg_cv_agent *a, struct vg_cv_boot *b, const char *mb_b64)
{
        uint8_t d[32];
        _cleanup_free_ uint8_t *raw = NULL;
        size_t len = 0, b64_len = strlen(mb_b64);
        struct vg_error err = { 0 };

        if (vg_hash(VG_HASH_SHA256, mb_b64, b64_len, d) < 0)
                return;
        if (b->have_log && memcmp(d, b->log_digest, sizeof(d)) == 0)
                return;
        forget_log(b);
        memcpy(b->log_digest, d, sizeof(d));
        b->have_log = true;
        b->log_parses++;
        if (b64_len / 4 * 3 > VG_EVLOG_MAX_LOG_SIZE + 3) {
                if (asprintf(&b->log_error, "mb_measurement_list: the log is larger than %u bytes",
                             VG_EVLOG_MAX_LOG_SIZE) < 0)
                        b->log_error = NULL;
                return;
        }
        if (vg_b64_decode(mb_b64, b64_len, VG_B64_STD, &raw, &len) < 0) {
                b->log_error = strdup("mb_measurement_list: not base64");
                return;
        }
        if (vg_evlog_parse(raw, len, &b->log, &err) < 0) {
                if (asprintf(&b->log_error, "mb_measurement_list: %s", vg_error_str(&err)) < 0)
                        b->log_error = NULL;
                return;
        }
        /* Once per boot: the log is the same on every quote until the next reboot. */
        vg_info(VG_F("agent", a->id), "UEFI event log of agent %s parsed: %zu events, %zu bytes",
                a->id, b->log->n_events, len);
}

static const char *type_name(uint32_t type)
{
        const char *n = vg_evlog_type_name(type);
        return n ? n : "unknown type";
}

static void report_mismatch(const struct vg_evlog *log, const struct vg_evlog_mismatch *m,
                            enum vg_hash_alg alg, struct vg_cv_failure *f)
{
        _cleanup_free_ char *exp = vg_hex_encode(m->expected, m->size);
        _cleanup_free_ char *rep = vg_hex_encode(m->replayed, m->size);
        const char *bank = vg_hash_alg_name(alg);
        char last[160] = "no event of the log extends it", agreed[160];

        (void)log;
        if (m->bank_missing) {
                add_event(f, "measured_boot.missing_bank", m->pcr, bank, NULL,
                          "PCR %u: the event log has no %s bank to replay against the quote",
                          m->pcr, bank);
                return;
        }
        if (m->last_event >= 0)
                snprintf(last, sizeof(last), "%u events extend it, the last is event %lld (%s)",
                         m->n_events, (long long)m->last_event, type_name(m->last_event_type));
        if (m->agreed_after_event >= 0)
                snprintf(agreed, sizeof(agreed),
                         "the replay agreed with the quote up to event %lld; the events after it "
                         "were not in the quote",
                         (long long)m->agreed_after_event);
        else
                snprintf(agreed, sizeof(agreed),
                         "no prefix of the log's PCR %u events gives the quoted value (an "
                         "extend the log does not show, or a changed event)",
                         m->pcr);
        add_event(f, "measured_boot.invalid_pcr", m->pcr, exp, rep,
                  "PCR %u (%s) does not match the event log: quoted %s, replayed %s; %s; %s",
                  m->pcr, bank, exp ? exp : "?", rep ? rep : "?", last, agreed);
}

void vg_cv_boot_check(struct vg_cv_agent *a, const char *mb_b64,
                      const struct vg_measurements *quoted, enum vg_hash_alg alg,
                      struct vg_cv_failure *f)
{
        struct vg_cv_boot *b = a->boot;
        struct vg_evlog_pcr_value exp[VG_EVLOG_PCRS];
        struct vg_evlog_mismatch *mm = NULL;
        struct vg_error err = { 0 };
        size_t n = 0, n_mm = 0;
        int r;

        if (!b || !b->pol || !quoted || !vg_measurements_get(quoted, alg, 0))
                return;
        if (!mb_b64 || !*mb_b64) {
                add_event(f, "measured_boot.missing_log", -1, NULL, NULL,
                          "the agent sent no UEFI event log (mb_measurement_list) with a quote "
                          "of PCR 0; its measured boot policy %s cannot be checked",
                          a->mb_policy_name);
                return;
        }
        load_log(a, b, mb_b64);
        if (!b->log) {
                add_event(f, "measured_boot.invalid_log", -1, NULL, NULL, "%s",
                          b->log_error ? b->log_error : "the event log cannot be read");
                return;
        }
        /* Replay against the quoted PCRs (PFP §3.3.3; Keylime's Tpm.check_pcrs). */
        for (unsigned pcr = 0; pcr < VG_EVLOG_PCRS; pcr++) {
                const uint8_t *val;
                if (!(VG_CV_BOOT_REPLAY_PCRS & (1u << pcr)))
                        continue;
                if (!(val = vg_measurements_get(quoted, alg, pcr))) {
                        add_event(f, "measured_boot.missing_pcr", pcr, NULL, NULL,
                                  "PCR %u (%s) is not in the quote; the measured boot policy "
                                  "needs PCRs 0-9 and 14",
                                  pcr, vg_hash_alg_name(alg));
                        continue;
                }
                exp[n].alg_id = vg_hash_tpm_alg_id(alg);
                exp[n].pcr = pcr;
                exp[n].size = (uint16_t)vg_hash_size(alg);
                memcpy(exp[n].digest, val, exp[n].size);
                n++;
        }
        r = vg_evlog_replay_check(b->log, exp, n, &mm, &n_mm, &err);
        if (r == -EBADMSG) {
                for (size_t i = 0; i < n_mm; i++)
                        report_mismatch(b->log, &mm[i], alg, f);
        } else if (r < 0) {
                add_event(f, "measured_boot.replay_error", -1, NULL, NULL,
                          "the event log cannot be replayed: %s", vg_error_str(&err));
        }
        free(mm);
        /* The refstate, once per (log, refstate); reported even when the replay failed, for
         * it names the events that differ from the known-good boot. */
        if (b->evaluated != b->pol) {
                vg_mb_result_clear(&b->res);
                struct vg_error perr = { 0 };
                r = vg_mb_policy_evaluate(b->pol->policy, b->log, &b->res, &perr);
                if (r < 0 && r != -EBADMSG) {
                        add_event(f, "measured_boot.error", -1, NULL, NULL,
                                  "the measured boot policy could not be evaluated: %s",
                                  vg_error_str(&perr));
                        return;
                }
                b->evaluated = b->pol;
        }
        for (size_t i = 0; i < b->res.n_failures; i++) {
                const struct vg_mb_failure *fl = &b->res.failures[i];
                add_event(f, "measured_boot.policy_violation",
                          fl->event >= 0 ? (int64_t)fl->pcr : -1, NULL, NULL,
                          "measured boot policy %s: %s", a->mb_policy_name,
                          fl->msg ? fl->msg : "violated");
        }
}
