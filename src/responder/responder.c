/* vigil-responder: the engine (responder.h): at-most-once actions per event id recorded in a
 * SQLite/PostgreSQL state database (vg_store), the actions, the dry-run report, MQTT input.
 *
 * Why a database rather than an append-only file: the state is looked up by key on every event
 * (has this event id, this rule's action, this agent's reprovision count been seen?), is updated
 * in place (attempt counters, an action's "started" becoming its outcome), and must be pruned
 * by age; vg_store gives that with crash-safe commits (WAL) and the same code on PostgreSQL. */
#include "responder.h"

#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "encoding.h"
#include "http_client.h"
#include "log.h"
#include "store.h"
#include "tls.h"

extern char **environ;

struct vg_responder {
        const struct vg_rules *rules;
        struct vg_responder_options o;
        struct vg_store *db; /* NULL only in a dry run that could not open it */
        FILE *report;
        time_t last_prune;
};

static const struct vg_store_migration schema[] = {
        { 1, "handled events, their actions, reprovision attempts",
          "CREATE TABLE responder_events (event_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, "
          "  event_type TEXT NOT NULL, received BIGINT NOT NULL, done BIGINT);"
          "CREATE TABLE responder_actions (event_id TEXT NOT NULL, rule TEXT NOT NULL, "
          "  action TEXT NOT NULL, outcome TEXT NOT NULL, time BIGINT NOT NULL, "
          "  PRIMARY KEY (event_id, rule, action));"
          "CREATE TABLE responder_attempts (agent_id TEXT NOT NULL, action TEXT NOT NULL, "
          "  count INTEGER NOT NULL, time BIGINT NOT NULL, PRIMARY KEY (agent_id, action));"
          "CREATE INDEX responder_events_done ON responder_events (done);" },
};

/* Outcome of a started action that never recorded its end: the responder stopped mid-way. */
#define OUTCOME_STARTED   "started"
#define OUTCOME_RELEARNED "relearned"

int vg_responder_new(const struct vg_rules *rules, const struct vg_responder_options *opts,
                     struct vg_responder **out, struct vg_error *err)
{
        _cleanup_(vg_responder_freep) struct vg_responder *r = calloc(1, sizeof(*r));
        struct vg_store_options so = { .data_dir = opts->data_dir,
                                       .default_file = "responder.sqlite" };
        int rc;

        *out = NULL;
        if (!r)
                return -ENOMEM;
        r->rules = rules;
        r->o = *opts;
        r->report = opts->report ? opts->report : stdout;
        rc = vg_store_open(&r->db, opts->database_url ? opts->database_url : "sqlite", &so, err);
        if (rc >= 0)
                rc = vg_store_migrate(r->db, "responder", schema, VG_ARRAY_SIZE(schema), err);
        if (rc < 0) {
                vg_store_close(TAKE_PTR(r->db));
                if (!opts->dry_run)
                        return rc;
                fprintf(r->report,
                        "note: state database unavailable (%s): duplicates and "
                        "attempt counts are not known\n",
                        vg_error_str(err));
        }
        *out = TAKE_PTR(r);
        return 0;
}

void vg_responder_free(struct vg_responder *r)
{
        if (!r)
                return;
        vg_store_close(r->db);
        free(r);
}

/* ---- State ------------------------------------------------------------------------------ */

static int64_t now_s(void)
{
        return (int64_t)time(NULL);
}

/* 1 and *done set when the event is known, 0 when not. */
static int state_event(struct vg_responder *r, const char *id, bool *done, int64_t *when,
                       struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int rc = vg_store_prepare(r->db,
                                  "SELECT done, received FROM responder_events "
                                  "WHERE event_id = $1",
                                  &st, err);
        if (rc < 0)
                return rc;
        vg_stmt_bind_text(st, 1, id);
        rc = vg_stmt_step(st, err);
        if (rc > 0) {
                *done = !vg_stmt_column_is_null(st, 0);
                *when = vg_stmt_column_int64(st, *done ? 0 : 1);
                return 1;
        }
        return rc;
}

static int exec_sql(struct vg_responder *r, const char *sql, const char *const *text,
                    const int64_t *ints, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int rc = vg_store_prepare(r->db, sql, &st, err), n = 1;

        if (rc < 0)
                return rc;
        for (; text && *text; text++)
                vg_stmt_bind_text(st, n++, *text);
        for (; ints && n <= vg_stmt_param_count(st); ints++)
                vg_stmt_bind_int64(st, n++, *ints);
        return vg_stmt_exec(st, err);
}

/* The recorded outcome of (event, rule, action), or NULL. */
static char *state_action(struct vg_responder *r, const char *ev, const char *rule,
                          const char *action, struct vg_error *err, int *rc)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;

        *rc = vg_store_prepare(r->db,
                               "SELECT outcome FROM responder_actions WHERE event_id = $1 "
                               "AND rule = $2 AND action = $3",
                               &st, err);
        if (*rc < 0)
                return NULL;
        vg_stmt_bind_text(st, 1, ev);
        vg_stmt_bind_text(st, 2, rule);
        vg_stmt_bind_text(st, 3, action);
        *rc = vg_stmt_step(st, err);
        if (*rc > 0)
                return strdup(vg_stmt_column_text(st, 0, NULL));
        return NULL;
}

static int state_attempts(struct vg_responder *r, const char *agent, const char *action,
                          struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int rc;

        if (!r->db)
                return 0;
        rc = vg_store_prepare(r->db,
                              "SELECT count FROM responder_attempts WHERE agent_id = $1 "
                              "AND action = $2",
                              &st, err);
        if (rc < 0)
                return rc;
        vg_stmt_bind_text(st, 1, agent);
        vg_stmt_bind_text(st, 2, action);
        rc = vg_stmt_step(st, err);
        return rc > 0 ? (int)vg_stmt_column_int64(st, 0) : rc;
}

static void prune(struct vg_responder *r)
{
        struct vg_error err = { 0 };
        int64_t cutoff[1];

        if (!r->db || !r->o.retention_days || r->o.dry_run || now_s() - r->last_prune < 3600)
                return;
        r->last_prune = now_s();
        cutoff[0] = now_s() - (int64_t)r->o.retention_days * 86400;
        if (exec_sql(r,
                     "DELETE FROM responder_actions WHERE event_id IN (SELECT event_id FROM "
                     "responder_events WHERE done IS NOT NULL AND done < $1)",
                     NULL, cutoff, &err) < 0 ||
            exec_sql(r, "DELETE FROM responder_events WHERE done IS NOT NULL AND done < $1", NULL,
                     cutoff, &err) < 0)
                vg_warn(NULL, "cannot prune the state database: %s", vg_error_str(&err));
}

/* ---- Actions ---------------------------------------------------------------------------- */

struct outcome {
        bool ok;
        bool relearned;
        char text[400];
};

static void set_outcome(struct outcome *o, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_outcome(struct outcome *o, bool ok, const char *fmt, ...)
{
        va_list ap;

        o->ok = ok;
        va_start(ap, fmt);
        vsnprintf(o->text, sizeof(o->text), fmt, ap);
        va_end(ap);
}

struct run_ctx {
        const struct vg_resp_event *ev;
        const struct vg_resp_rule *rule;
        const struct vg_resp_action *action;
        char *body; /* the event JSON (vigil's flat form), compact */
        size_t body_len;
        int attempt, max_attempts; /* reprovision; 0 otherwise */
};

static char *env_pair(const char *name, const char *value)
{
        char *s;
        return asprintf(&s, "%s=%s", name, value ? value : "") < 0 ? NULL : s;
}

/* The child's environment: ours minus VIGIL_* (the responder's own settings, e.g. an MQTT
 * password in VIGIL_RESPONDER_MQTT_PASSWORD, are not the command's business), plus the event. */
static char **build_env(const struct run_ctx *c)
{
        size_t n = 0, k = 0;
        json_t *labels = json_object_get(c->ev->json, "labels");
        char pcrs[96], num[32];

        for (char **e = environ; e && *e; e++)
                n++;
        char **env = calloc(n + 16 + json_object_size(labels), sizeof(char *));
        if (!env)
                return NULL;
        for (char **e = environ; e && *e; e++)
                if (strncmp(*e, "VIGIL_", 6) != 0)
                        env[k++] = strdup(*e);
        vg_resp_event_pcr_list(c->ev, pcrs, sizeof(pcrs));
        env[k++] = env_pair("VIGIL_EVENT_ID", c->ev->event_id);
        env[k++] = env_pair("VIGIL_AGENT_ID", c->ev->agent_id);
        env[k++] = env_pair("VIGIL_EVENT_TYPE", c->ev->gce && c->ev->type == VG_RESP_EV_OTHER
                                                    ? c->ev->other_kind
                                                    : vg_resp_event_type_name(c->ev->type));
        env[k++] = env_pair("VIGIL_PCRS", pcrs);
        env[k++] = env_pair("VIGIL_BOOT_COUNTER", c->ev->boot_counter);
        env[k++] = env_pair("VIGIL_SEVERITY", c->ev->severity);
        env[k++] = env_pair("VIGIL_PASSED", c->ev->passed < 0 ? ""
                                            : c->ev->passed   ? "true"
                                                              : "false");
        env[k++] = env_pair("VIGIL_RULE", c->rule->name);
        env[k++] = env_pair("VIGIL_ACTION", c->action->name);
        if (c->max_attempts) {
                snprintf(num, sizeof(num), "%d", c->attempt);
                env[k++] = env_pair("VIGIL_ATTEMPT", num);
                snprintf(num, sizeof(num), "%d", c->max_attempts);
                env[k++] = env_pair("VIGIL_MAX_ATTEMPTS", num);
        }
        const char *key;
        json_t *v;
        json_object_foreach (labels, key, v) {
                char name[96] = "VIGIL_LABEL_";
                size_t o = strlen(name);
                for (const char *p = key; *p && o + 1 < sizeof(name); p++)
                        name[o++] = (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A')
                                    : ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) ? *p
                                                                                             : '_';
                name[o] = '\0';
                env[k++] = env_pair(name, json_string_value(v));
        }
        for (size_t j = 0; j < k; j++)
                if (!env[j]) {
                        for (size_t i = 0; i < k; i++)
                                free(env[i]);
                        free(env);
                        return NULL;
                }
        return env;
}

static void free_env(char **env)
{
        for (char **e = env; e && *e; e++)
                free(*e);
        free(env);
}

static double mono_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One line of the command's output for the log: newlines as " | ", at most 1 KiB. */
static void log_output(const struct run_ctx *c, char *buf, size_t len)
{
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                len--;
        if (!len)
                return;
        for (size_t k = 0; k < len; k++)
                if (buf[k] == '\n')
                        buf[k] = '|';
                else if ((unsigned char)buf[k] < 0x20)
                        buf[k] = ' ';
        buf[len] = '\0';
        vg_info(VG_F("agent", c->ev->agent_id, "event", c->ev->event_id, "rule", c->rule->name,
                     "action", c->action->name),
                "output: %s", buf);
}

/* Run argv with the event on stdin, its own process group, stdout+stderr captured for the log;
 * kill the group after timeout_s (SIGTERM, then SIGKILL 2 s later). */
static void run_command(const struct run_ctx *c, char *const *argv, unsigned timeout_s,
                        struct outcome *o)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, def;
        char **env = build_env(c);
        int pipefd[2] = { -1, -1 }, status = 0, rc;
        _cleanup_close_ int memfd = -1;
        pid_t pid;
        char out[1100];
        size_t out_len = 0;
        bool exited = false, eof = false, timed_out = false;
        double deadline = mono_s() + timeout_s, kill_at = 0;

        if (!env)
                return set_outcome(o, false, "out of memory");
        memfd = memfd_create("vigil-event", MFD_CLOEXEC);
        if (memfd < 0 || write(memfd, c->body, c->body_len) != (ssize_t)c->body_len ||
            write(memfd, "\n", 1) != 1 || lseek(memfd, 0, SEEK_SET) != 0 ||
            pipe2(pipefd, O_CLOEXEC) < 0) {
                set_outcome(o, false, "cannot prepare the command's input: %s", strerror(errno));
                free_env(env);
                if (pipefd[0] >= 0)
                        close(pipefd[0]);
                return;
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, memfd, 0);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
        posix_spawnattr_init(&attr);
        sigemptyset(&none);
        sigemptyset(&def);
        sigaddset(&def, SIGPIPE); /* the daemon ignores it; commands get the default */
        sigaddset(&def, SIGTERM);
        sigaddset(&def, SIGINT);
        sigaddset(&def, SIGHUP);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &def);
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                            POSIX_SPAWN_SETSIGDEF);
        rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        free_env(env);
        close(pipefd[1]);
        if (rc != 0) {
                close(pipefd[0]);
                return set_outcome(o, false, "cannot run %s: %s", argv[0], strerror(rc));
        }
        fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
        while (!exited || !eof) {
                if (!exited) {
                        pid_t w = waitpid(pid, &status, WNOHANG);
                        if (w == pid)
                                exited = true;
                }
                struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
                if (!eof && poll(&pfd, 1, exited ? 0 : 20) > 0) {
                        char tmp[4096];
                        ssize_t n = read(pipefd[0], tmp, sizeof(tmp));
                        if (n > 0) {
                                size_t take = (size_t)n < sizeof(out) - 1 - out_len
                                                  ? (size_t)n
                                                  : sizeof(out) - 1 - out_len;
                                memcpy(out + out_len, tmp, take);
                                out_len += take;
                                continue;
                        }
                        if (n == 0)
                                eof = true;
                }
                if (exited) {
                        /* A background grandchild may keep the pipe open: do not wait for it. */
                        break;
                }
                double now = mono_s();
                if (!timed_out && now > deadline) {
                        timed_out = true;
                        kill(-pid, SIGTERM);
                        kill_at = now + 2;
                } else if (timed_out && kill_at && now > kill_at) {
                        kill(-pid, SIGKILL);
                        kill_at = 0;
                }
        }
        close(pipefd[0]);
        log_output(c, out, out_len);
        if (timed_out)
                set_outcome(o, false, "timed out after %u s (killed)", timeout_s);
        else if (WIFEXITED(status))
                set_outcome(o, WEXITSTATUS(status) == 0, "exit status %d", WEXITSTATUS(status));
        else
                set_outcome(o, false, "killed by signal %d (%s)", WTERMSIG(status),
                            strsignal(WTERMSIG(status)));
}

static void ssl_ctx_freep(SSL_CTX **p)
{
        SSL_CTX_free(*p);
}

static SSL_CTX *client_tls(const char *url, const char *ca, const char *cert, const char *key,
                           const char *key_password, struct vg_error *err, bool *failed)
{
        *failed = false;
        if (strncmp(url, "https://", 8) != 0)
                return NULL;
        struct vg_tls_client_config tc = {
                .ca_file = ca ? ca : "/etc/ssl/certs/ca-certificates.crt",
                .cert_file = cert,
                .key_file = key,
                .key_password = key_password,
        };
        SSL_CTX *ctx = vg_tls_client_ctx_new(&tc, err);
        *failed = !ctx;
        return ctx;
}

static void run_webhook(const struct run_ctx *c, const struct vg_resp_action *a, struct outcome *o)
{
        struct vg_error err = { 0 };
        bool tls_failed;
        _cleanup_(ssl_ctx_freep) SSL_CTX *tls =
            client_tls(a->url, a->ca_file, NULL, NULL, NULL, &err, &tls_failed);
        char sig[7 + 64 + 1] = "";
        unsigned delay = a->retry_delay_ms;

        if (tls_failed)
                return set_outcome(o, false, "%s", vg_error_str(&err));
        if (a->secret) {
                unsigned char mac[EVP_MAX_MD_SIZE];
                unsigned mac_len = 0;
                if (!HMAC(EVP_sha256(), a->secret, (int)strlen(a->secret),
                          (const unsigned char *)c->body, c->body_len, mac, &mac_len))
                        return set_outcome(o, false, "HMAC failed");
                _cleanup_free_ char *hex = vg_hex_encode(mac, mac_len);
                if (!hex)
                        return set_outcome(o, false, "out of memory");
                snprintf(sig, sizeof(sig), "sha256=%s", hex);
        }
        const char *headers[] = { "X-Vigil-Event-Id",
                                  c->ev->event_id,
                                  "X-Vigil-Rule",
                                  c->rule->name,
                                  "X-Vigil-Action",
                                  a->name,
                                  sig[0] ? "X-Vigil-Signature" : NULL,
                                  sig,
                                  NULL };
        struct vg_http_client_config hc = { .tls = tls,
                                            .timeout_ms = a->timeout_s * 1000,
                                            .no_keepalive = true };
        struct vg_http_client_request req = { .method = "POST",
                                              .url = a->url,
                                              .headers = headers,
                                              .body = c->body,
                                              .body_len = c->body_len,
                                              .content_type = "application/json" };
        for (unsigned attempt = 1;; attempt++) {
                struct vg_http_response *resp = NULL;
                int rc = vg_http_fetch(&hc, &req, &resp, &err);
                int status = rc >= 0 ? resp->status : 0;
                vg_http_response_free(resp);
                if (status >= 200 && status < 300)
                        return set_outcome(o, true, "HTTP %d%s", status,
                                           attempt > 1 ? " (after retries)" : "");
                bool permanent = status >= 400 && status < 500 && status != 408 && status != 429;
                if (permanent || attempt > a->retries) {
                        if (status)
                                return set_outcome(o, false, "HTTP %d after %u attempt%s", status,
                                                   attempt, attempt > 1 ? "s" : "");
                        return set_outcome(o, false, "%s (%u attempt%s)", vg_error_str(&err),
                                           attempt, attempt > 1 ? "s" : "");
                }
                vg_warn(VG_F("agent", c->ev->agent_id, "event", c->ev->event_id, "rule",
                             c->rule->name, "action", a->name),
                        "webhook attempt %u failed (%s); retrying in %u ms", attempt,
                        status ? "HTTP error" : vg_error_str(&err), delay);
                struct timespec ts = { .tv_sec = delay / 1000,
                                       .tv_nsec = (long)(delay % 1000) * 1000000 };
                nanosleep(&ts, NULL);
                delay = delay * 2 > 30000 ? 30000 : delay * 2;
        }
}

static char *pct_encode(const char *s)
{
        size_t n = strlen(s);
        char *out = malloc(3 * n + 1), *p = out;

        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~')
                        *p++ = (char)ch;
                else
                        p += sprintf(p, "%%%02X", ch);
        }
        *p = '\0';
        return out;
}

static const char *verifier_of(const struct vg_responder *r, const struct vg_resp_action *a)
{
        return a->verifier ? a->verifier : r->o.verifier_url;
}

static char *relearn_url(const struct vg_responder *r, const struct vg_resp_action *a,
                         const char *agent)
{
        const char *base = verifier_of(r, a);
        _cleanup_free_ char *enc = pct_encode(agent);
        char *url;
        size_t n;

        if (!base || !enc)
                return NULL;
        n = strlen(base);
        while (n && base[n - 1] == '/')
                n--;
        return asprintf(&url, "%.*s/v2.5/agents/%s/relearn", (int)n, base, enc) < 0 ? NULL : url;
}

/* A field of the verifier's answer: at the top level, or inside Keylime's "results" envelope. */
static json_t *answer_field(json_t *body, const char *key)
{
        json_t *v = json_object_get(body, key);
        return v ? v : json_object_get(json_object_get(body, "results"), key);
}

static void run_relearn(struct vg_responder *r, const struct run_ctx *c,
                        const struct vg_resp_action *a, struct outcome *o)
{
        struct vg_error err = { 0 };
        _cleanup_free_ char *url = relearn_url(r, a, c->ev->agent_id);
        bool tls_failed;

        if (!url)
                return set_outcome(o, false,
                                   "no verifier to ask (set verifier in the action or "
                                   "verifier_url in responder.conf)");
        _cleanup_(ssl_ctx_freep) SSL_CTX *tls =
            client_tls(url, a->ca_file ? a->ca_file : r->o.trusted_server_ca,
                       a->client_cert ? a->client_cert : r->o.client_cert,
                       a->client_cert ? a->client_key : r->o.client_key,
                       a->client_cert ? NULL : r->o.client_key_password, &err, &tls_failed);
        if (tls_failed)
                return set_outcome(o, false, "%s", vg_error_str(&err));
        json_t *body = json_pack("{s:s}", "eventId", c->ev->event_id);
        struct vg_http_client_config hc = { .tls = tls,
                                            .timeout_ms = a->timeout_s * 1000,
                                            .no_keepalive = true };
        struct vg_http_client_request req = { .method = "POST", .url = url, .json = body };
        struct vg_http_response *resp = NULL;
        int rc = vg_http_fetch(&hc, &req, &resp, &err);
        json_decref(body);
        if (rc < 0)
                return set_outcome(o, false, "verifier unreachable: %s", vg_error_str(&err));
        json_t *answer = vg_http_response_json(resp, NULL);
        json_t *relearned = answer_field(answer, "relearned");
        const char *baseline = json_string_value(answer_field(answer, "baseline"));
        const char *reason = json_string_value(answer_field(answer, "reason"));
        if (resp->status == 200 && json_is_true(relearned)) {
                set_outcome(o, true, "onto known-good baseline \"%.100s\" (HTTP 200)",
                            baseline ? baseline : "?");
                o->relearned = true;
        } else if (resp->status == 409 || (resp->status == 200 && json_is_false(relearned))) {
                set_outcome(o, true, "not relearned (HTTP %d): %.200s", resp->status,
                            reason ? reason : "no reason given");
        } else {
                set_outcome(o, false, "verifier answered HTTP %d%s%.200s", resp->status,
                            reason ? ": " : "", reason ? reason : "");
        }
        json_decref(answer);
        vg_http_response_free(resp);
}

static void run_simple(struct vg_responder *r, const struct run_ctx *c,
                       const struct vg_resp_action *a, struct outcome *o)
{
        switch (a->type) {
        case VG_RESP_ACT_EXEC:
                return run_command(c, a->command, a->timeout_s, o);
        case VG_RESP_ACT_WEBHOOK:
                return run_webhook(c, a, o);
        case VG_RESP_ACT_NOTIFY:
                if (a->command)
                        return run_command(c, a->command, a->timeout_s, o);
                return run_webhook(c, a, o);
        case VG_RESP_ACT_RELEARN:
                return run_relearn(r, c, a, o);
        case VG_RESP_ACT_REPROVISION:
                break;
        }
        set_outcome(o, false, "internal error: unexpected action type");
}

/* ---- Dry run ---------------------------------------------------------------------------- */

static void print_argv(FILE *f, char *const *argv)
{
        fputc('[', f);
        for (size_t k = 0; argv[k]; k++) {
                json_t *s = json_string(argv[k]);
                char *d = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
                fprintf(f, "%s%s", k ? ", " : "", d ? d : "?");
                free(d);
                json_decref(s);
        }
        fputc(']', f);
}

static void describe(struct vg_responder *r, FILE *f, const struct run_ctx *c,
                     const struct vg_resp_action *a)
{
        switch (a->type) {
        case VG_RESP_ACT_EXEC:
                fprintf(f, "would run ");
                print_argv(f, a->command);
                fprintf(f, " with the event on stdin (timeout %u s)", a->timeout_s);
                break;
        case VG_RESP_ACT_NOTIFY:
        case VG_RESP_ACT_WEBHOOK:
                if (a->command) {
                        fprintf(f, "would run ");
                        print_argv(f, a->command);
                        fprintf(f, " with the event on stdin (timeout %u s)", a->timeout_s);
                } else {
                        fprintf(f, "would POST the event to %s%s (up to %u attempts)", a->url,
                                a->secret ? " signed with X-Vigil-Signature" : "", a->retries + 1);
                }
                break;
        case VG_RESP_ACT_RELEARN: {
                _cleanup_free_ char *url = relearn_url(r, a, c->ev->agent_id);
                fprintf(f,
                        "would POST {\"eventId\": \"%s\"} to %s; if it answers relearned, "
                        "the remaining actions of this rule are skipped",
                        c->ev->event_id, url ? url : "(no verifier configured)");
                break;
        }
        case VG_RESP_ACT_REPROVISION: {
                struct vg_error err = { 0 };
                int n = state_attempts(r, c->ev->agent_id, a->name, &err);
                if (n < 0)
                        n = 0;
                if ((unsigned)n < a->max_attempts) {
                        fprintf(f, "would run attempt %d of %u: ", n + 1, a->max_attempts);
                        print_argv(f, a->command);
                } else if (a->then) {
                        fprintf(f, "attempts exhausted (%d of %u): would run %s \"%s\": ", n,
                                a->max_attempts, vg_resp_action_type_name(a->then->type),
                                a->then->name);
                        describe(r, f, c, a->then);
                } else {
                        fprintf(f, "attempts exhausted (%d of %u); no then action: nothing", n,
                                a->max_attempts);
                }
                break;
        }
        }
}

/* ---- One event -------------------------------------------------------------------------- */

static void run_action(struct vg_responder *r, struct run_ctx *c, struct outcome *o,
                       struct vg_error *err)
{
        const struct vg_resp_action *a = c->action;

        if (a->type != VG_RESP_ACT_REPROVISION)
                return run_simple(r, c, a, o);
        int n = state_attempts(r, c->ev->agent_id, a->name, err);
        if (n < 0)
                return set_outcome(o, false, "state database: %s", vg_error_str(err));
        if ((unsigned)n < a->max_attempts) {
                const char *text[] = { c->ev->agent_id, a->name, NULL };
                int64_t ints[] = { n + 1, now_s() };
                /* Counted before running: a crash mid-attempt still used the attempt up. */
                if (exec_sql(r,
                             "INSERT INTO responder_attempts (agent_id, action, count, time) "
                             "VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id, action) DO UPDATE "
                             "SET count = $3, time = $4",
                             text, ints, err) < 0)
                        return set_outcome(o, false, "state database: %s", vg_error_str(err));
                c->attempt = n + 1;
                c->max_attempts = (int)a->max_attempts;
                run_command(c, a->command, a->timeout_s, o);
                char tmp[sizeof(o->text)];
                snprintf(tmp, sizeof(tmp), "attempt %d of %u: %.350s", n + 1, a->max_attempts,
                         o->text);
                memcpy(o->text, tmp, sizeof(tmp));
                return;
        }
        if (!a->then)
                return set_outcome(o, false, "attempts exhausted (%d of %u); no then action", n,
                                   a->max_attempts);
        struct run_ctx tc = *c;
        tc.action = a->then;
        run_simple(r, &tc, a->then, o);
        char tmp[sizeof(o->text)];
        snprintf(tmp, sizeof(tmp), "attempts exhausted (%d of %u); then \"%.64s\": %.280s", n,
                 a->max_attempts, a->then->name, o->text);
        memcpy(o->text, tmp, sizeof(tmp));
}

int vg_responder_handle(struct vg_responder *r, const void *data, size_t len, const char *source,
                        struct vg_error *err)
{
        _cleanup_(vg_resp_event_freep) struct vg_resp_event *ev = NULL;
        _cleanup_free_ char *body = NULL;
        FILE *f = r->report;
        char pcrs[96], why[256];
        bool dry = r->o.dry_run, failed = false;
        int rc;

        rc = vg_resp_event_parse(data, len, &ev, err);
        if (rc < 0) {
                vg_err(VG_F("source", source), "%s", vg_error_str(err));
                if (dry)
                        fprintf(f, "%s: rejected: %s\n", source, vg_error_str(err));
                return rc;
        }
        const char *const *fields = VG_F("agent", ev->agent_id, "event", ev->event_id);
        vg_resp_event_pcr_list(ev, pcrs, sizeof(pcrs));
        if (ev->type == VG_RESP_EV_OTHER) {
                vg_info(fields, "%s from %s: not a report, ignored", ev->other_kind, source);
                if (dry)
                        fprintf(f, "event %s agent %s: %s (not a report): ignored\n", ev->event_id,
                                ev->agent_id, ev->other_kind);
                return 0;
        }
        vg_info(fields, "%s from %s: %s, severity %s, changed PCRs: %s",
                vg_resp_event_type_name(ev->type), source,
                ev->passed < 0 ? "no verdict"
                : ev->passed   ? "passed"
                               : "FAILED",
                ev->severity, pcrs[0] ? pcrs : "none");
        if (dry)
                fprintf(f, "event %s agent %s: %s %s severity %s changed PCRs %s\n", ev->event_id,
                        ev->agent_id, vg_resp_event_type_name(ev->type),
                        ev->passed < 0 ? "(no verdict)"
                        : ev->passed   ? "passed"
                                       : "failed",
                        ev->severity, pcrs[0] ? pcrs : "none");

        prune(r);
        if (r->db) {
                bool done = false;
                int64_t when = 0;
                rc = state_event(r, ev->event_id, &done, &when, err);
                if (rc < 0)
                        goto db_fail;
                if (rc > 0 && done) {
                        vg_info(fields, "already handled (at %lld): no action runs again",
                                (long long)when);
                        if (dry)
                                fprintf(f, "  already handled: nothing would run\n");
                        return 0;
                }
                if (rc > 0 && !dry)
                        vg_notice(fields,
                                  "resuming an event interrupted since %lld: actions "
                                  "already started are not run again",
                                  (long long)when);
                if (rc == 0 && !dry) {
                        const char *text[] = { ev->event_id, ev->agent_id,
                                               vg_resp_event_type_name(ev->type), NULL };
                        int64_t ints[] = { now_s() };
                        rc = exec_sql(r,
                                      "INSERT INTO responder_events (event_id, agent_id, "
                                      "event_type, received) VALUES ($1, $2, $3, $4)",
                                      text, ints, err);
                        if (rc < 0)
                                goto db_fail;
                }
                /* A boot that passes ends the agent's reprovisioning: its attempts start over. */
                if (!dry && ev->passed == 1 &&
                    (ev->type == VG_RESP_EV_EARLY_BOOT || ev->type == VG_RESP_EV_LATE_BOOT)) {
                        const char *text[] = { ev->agent_id, NULL };
                        rc = exec_sql(r, "DELETE FROM responder_attempts WHERE agent_id = $1", text,
                                      NULL, err);
                        if (rc < 0)
                                goto db_fail;
                }
        }

        body = json_dumps(ev->json, JSON_COMPACT);
        if (!body)
                return vg_error_set(err, -ENOMEM, "out of memory");
        bool any = false;
        for (size_t k = 0; k < r->rules->n_rules; k++) {
                const struct vg_resp_rule *rule = &r->rules->rules[k];
                bool skip_rest = false;

                if (!vg_rule_matches(rule, ev, why, sizeof(why))) {
                        vg_debug(
                            VG_F("agent", ev->agent_id, "event", ev->event_id, "rule", rule->name),
                            "no match: %s", why);
                        if (dry)
                                fprintf(f, "  rule %s: no match (%s)\n", rule->name, why);
                        continue;
                }
                any = true;
                vg_info(VG_F("agent", ev->agent_id, "event", ev->event_id, "rule", rule->name),
                        "rule matches: %zu action%s", rule->n_actions,
                        rule->n_actions == 1 ? "" : "s");
                if (dry)
                        fprintf(f, "  rule %s: matches\n", rule->name);
                for (size_t j = 0; j < rule->n_actions; j++) {
                        const struct vg_resp_action *a = rule->actions[j];
                        const char *const *af = VG_F("agent", ev->agent_id, "event", ev->event_id,
                                                     "rule", rule->name, "action", a->name);
                        struct run_ctx c = { .ev = ev,
                                             .rule = rule,
                                             .action = a,
                                             .body = body,
                                             .body_len = strlen(body) };
                        struct outcome o = { 0 };
                        const char *text[] = { ev->event_id, rule->name, a->name, NULL, NULL };

                        if (r->db) {
                                _cleanup_free_ char *prior =
                                    state_action(r, ev->event_id, rule->name, a->name, err, &rc);
                                if (rc < 0)
                                        goto db_fail;
                                if (prior) {
                                        if (strcmp(prior, OUTCOME_STARTED) == 0)
                                                vg_warn(af, "was interrupted in a previous run: "
                                                            "not run again");
                                        else
                                                vg_info(af, "already done: %s", prior);
                                        if (dry)
                                                fprintf(f, "    action %s: already done (%s)\n",
                                                        a->name, prior);
                                        if (strncmp(prior, OUTCOME_RELEARNED,
                                                    strlen(OUTCOME_RELEARNED)) == 0)
                                                skip_rest = true;
                                        continue;
                                }
                        }
                        if (skip_rest) {
                                vg_info(af, "skipped: the agent was relearned onto a known-good "
                                            "baseline by an earlier action of this rule");
                                if (dry)
                                        fprintf(f, "    action %s: skipped (relearned)\n", a->name);
                                if (r->db && !dry) {
                                        text[3] = "skipped: relearned";
                                        int64_t ints[] = { now_s() };
                                        if (exec_sql(r,
                                                     "INSERT INTO responder_actions (event_id, "
                                                     "rule, action, outcome, time) VALUES ($1, "
                                                     "$2, $3, $4, $5)",
                                                     text, ints, err) < 0)
                                                goto db_fail;
                                }
                                continue;
                        }
                        if (dry) {
                                fprintf(f, "    action %s (%s): ", a->name,
                                        vg_resp_action_type_name(a->type));
                                describe(r, f, &c, a);
                                fputc('\n', f);
                                continue;
                        }
                        /* At most once: "started" is committed before the action runs. */
                        text[3] = OUTCOME_STARTED;
                        int64_t ints[] = { now_s() };
                        rc = exec_sql(r,
                                      "INSERT INTO responder_actions (event_id, rule, action, "
                                      "outcome, time) VALUES ($1, $2, $3, $4, $5)",
                                      text, ints, err);
                        if (rc < 0)
                                goto db_fail;
                        vg_info(af, "running %s action", vg_resp_action_type_name(a->type));
                        run_action(r, &c, &o, err);
                        if (o.relearned) {
                                skip_rest = true;
                                char tmp[sizeof(o.text)];
                                snprintf(tmp, sizeof(tmp), "%s: %.380s", OUTCOME_RELEARNED, o.text);
                                memcpy(o.text, tmp, sizeof(tmp));
                        }
                        if (o.ok)
                                vg_info(af, "%s: %s", a->name, o.text);
                        else
                                vg_err(af, "%s failed: %s", a->name, o.text);
                        failed |= !o.ok;
                        const char *upd[] = { o.text, ev->event_id, rule->name, a->name, NULL };
                        rc = exec_sql(r,
                                      "UPDATE responder_actions SET outcome = $1 WHERE "
                                      "event_id = $2 AND rule = $3 AND action = $4",
                                      upd, NULL, err);
                        if (rc < 0)
                                goto db_fail;
                        if (o.relearned && j + 1 < rule->n_actions)
                                vg_notice(VG_F("agent", ev->agent_id, "event", ev->event_id, "rule",
                                               rule->name),
                                          "relearned: skipping the remaining %zu action%s of "
                                          "this rule",
                                          rule->n_actions - j - 1,
                                          rule->n_actions - j - 1 == 1 ? "" : "s");
                }
                if (rule->final) {
                        if (dry)
                                fprintf(f, "  (final rule: later rules are not evaluated)\n");
                        break;
                }
        }
        if (!any) {
                vg_info(fields, "no rule matches");
                if (dry)
                        fprintf(f, "  no rule matches: nothing would be done\n");
        }
        if (r->db && !dry) {
                const char *text[] = { ev->event_id, NULL };
                int64_t ints[] = { now_s() };
                rc = exec_sql(r, "UPDATE responder_events SET done = $2 WHERE event_id = $1", text,
                              ints, err);
                if (rc < 0)
                        goto db_fail;
        }
        if (dry)
                fflush(f);
        return failed ? 1 : 0;

db_fail:
        vg_err(fields, "state database %s: %s", vg_store_name(r->db), vg_error_str(err));
        return rc < 0 ? rc : -EIO;
}

/* ---- MQTT ------------------------------------------------------------------------------- */

struct vg_resp_mqtt {
        struct mosquitto *mosq;
        struct vg_responder *r;
        char *topic;
        char *broker; /* "host:port" for logs */
        bool started;
        bool down_logged;
};

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
        struct vg_resp_mqtt *m = obj;

        if (rc != 0) {
                vg_warn(VG_F("broker", m->broker), "connection refused: %s",
                        mosquitto_connack_string(rc));
                return;
        }
        m->down_logged = false;
        vg_info(VG_F("broker", m->broker), "connected");
        rc = mosquitto_subscribe(mosq, NULL, m->topic, 1);
        if (rc != MOSQ_ERR_SUCCESS)
                vg_err(VG_F("broker", m->broker, "topic", m->topic), "cannot subscribe: %s",
                       mosquitto_strerror(rc));
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
                         const int *granted)
{
        struct vg_resp_mqtt *m = obj;

        (void)mosq, (void)mid;
        if (qos_count < 1 || granted[0] > 2)
                vg_err(VG_F("broker", m->broker, "topic", m->topic), "subscription refused");
        else
                vg_info(VG_F("broker", m->broker, "topic", m->topic), "subscribed (QoS %d)",
                        granted[0]);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
        struct vg_resp_mqtt *m = obj;

        (void)mosq;
        if (rc != 0 && !m->down_logged) {
                m->down_logged = true;
                vg_warn(VG_F("broker", m->broker),
                        "connection lost (%s): reconnecting; the "
                        "broker keeps events for this session",
                        mosquitto_strerror(rc));
        }
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
        struct vg_resp_mqtt *m = obj;
        struct vg_error err = { 0 };
        char source[300];

        (void)mosq;
        snprintf(source, sizeof(source), "mqtt %.200s%s", msg->topic,
                 msg->retain ? " (retained)" : "");
        if (msg->payloadlen < 0)
                return;
        vg_responder_handle(m->r, msg->payload, (size_t)msg->payloadlen, source, &err);
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
        (void)mosq, (void)obj;
        if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
                vg_debug(VG_F("component", "libmosquitto"), "%s", str);
}

int vg_resp_mqtt_start(struct vg_responder *r, const struct vg_resp_mqtt_options *o,
                       struct vg_resp_mqtt **out, struct vg_error *err)
{
        _cleanup_(vg_resp_mqtt_stopp) struct vg_resp_mqtt *m = calloc(1, sizeof(*m));
        _cleanup_free_ char *id = NULL;
        int rc;

        *out = NULL;
        if (!m)
                return -ENOMEM;
        m->r = r;
        if (!(m->topic = strdup(o->topic)) || asprintf(&m->broker, "%s:%d", o->host, o->port) < 0)
                return -ENOMEM;
        if (o->ephemeral) {
                if (asprintf(&id, "%s-dry-run-%d", o->client_id, (int)getpid()) < 0)
                        return -ENOMEM;
        } else if (!(id = strdup(o->client_id))) {
                return -ENOMEM;
        }
        m->mosq = mosquitto_new(id, o->ephemeral, m);
        if (!m->mosq)
                return vg_error_set(err, -ENOMEM, "cannot create the MQTT client \"%s\"", id);
        mosquitto_connect_callback_set(m->mosq, on_connect);
        mosquitto_subscribe_callback_set(m->mosq, on_subscribe);
        mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
        mosquitto_message_callback_set(m->mosq, on_message);
        mosquitto_log_callback_set(m->mosq, on_log);
        mosquitto_reconnect_delay_set(m->mosq, 1, o->reconnect_max ? o->reconnect_max : 30, true);
        if (o->username && (rc = mosquitto_username_pw_set(m->mosq, o->username, o->password)) != 0)
                return vg_error_set(err, -EINVAL, "MQTT credentials: %s", mosquitto_strerror(rc));
        if (o->ca_file && (rc = mosquitto_tls_set(m->mosq, o->ca_file, NULL, o->cert_file,
                                                  o->key_file, NULL)) != 0)
                return vg_error_set(err, -EINVAL, "MQTT TLS (ca %s%s%s): %s", o->ca_file,
                                    o->cert_file ? ", cert " : "", o->cert_file ? o->cert_file : "",
                                    mosquitto_strerror(rc));
        rc = mosquitto_connect_async(m->mosq, o->host, o->port, o->keepalive);
        if (rc == MOSQ_ERR_INVAL)
                return vg_error_set(err, -EINVAL, "MQTT broker %s: invalid host or port",
                                    m->broker);
        if (rc != MOSQ_ERR_SUCCESS) {
                /* The loop keeps trying: the broker may come up after us. */
                m->down_logged = true;
                vg_warn(VG_F("broker", m->broker), "cannot connect yet (%s): retrying",
                        rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        }
        rc = mosquitto_loop_start(m->mosq);
        if (rc != MOSQ_ERR_SUCCESS)
                return vg_error_set(err, -EIO, "cannot start the MQTT thread: %s",
                                    mosquitto_strerror(rc));
        m->started = true;
        vg_info(VG_F("broker", m->broker, "topic", m->topic, "client", id),
                "MQTT input started (QoS 1, %s session)", o->ephemeral ? "clean" : "persistent");
        *out = TAKE_PTR(m);
        return 0;
}

void vg_resp_mqtt_stop(struct vg_resp_mqtt *m)
{
        if (!m)
                return;
        if (m->mosq) {
                if (m->started) {
                        mosquitto_disconnect(m->mosq);
                        mosquitto_loop_stop(m->mosq, false);
                }
                mosquitto_destroy(m->mosq);
        }
        free(m->topic);
        free(m->broker);
        free(m);
}
