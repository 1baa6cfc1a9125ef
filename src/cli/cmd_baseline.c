/* vigil baseline: known-good late-boot measurements on the verifier (add from an agent, import,
 * list, rm), the hash-chained journal of every baseline change (history, verified here), an
 * agent's latest measurements and relearning; over mTLS as `vigil tenant`. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"
#include "cleanup.h"
#include "commands.h"
#include "tenant.h"
#include "tls.h"

struct bl_args {
        const char *verb;
        const char *operand; /* FILE, NAME or UUID */
        const char *name, *from_agent, *event_id;
        const char *verifier_ip, *verifier_port, *config;
        bool json, verify;
};

static void usage(FILE *out)
{
        fprintf(
            out,
            "Usage: vigil baseline COMMAND [OPTIONS]\n"
            "\n"
            "Known-good late-boot measurements (PCRs 4, 5, 8, 9, 11-14) on the verifier: an\n"
            "agent whose late-boot measurements equal one of them may relearn its baseline.\n"
            "\n"
            "Commands:\n"
            "  add --from-agent UUID --name NAME\n"
            "                        a known-good baseline from the agent's latest good quote\n"
            "  import FILE [--name NAME]\n"
            "                        from a measurements file: [{\"hashAlgo\", \"pcrNum\",\n"
            "                        \"value\"}], GCE's policyMeasurements or a log entry,\n"
            "                        or `list --json` output (NAME: default from the file)\n"
            "  list [--json]         the known-good baselines\n"
            "  show NAME [--json]    one of them with its values\n"
            "  rm NAME               remove one\n"
            "  history [--verify] [--json]\n"
            "                        the journal of baseline changes; --verify checks its\n"
            "                        hash chain here and fails naming the first bad entry\n"
            "  measurements UUID [--json]\n"
            "                        the agent's latest good quote's PCR values\n"
            "  relearn UUID [--event-id ID]\n"
            "                        relearn the agent's late-boot baseline if its\n"
            "                        measurements equal a known-good baseline\n"
            "\n"
            "Options:\n"
            "  -v, --cv, --verifier IP        verifier address (verifier_ip)\n"
            "  -vp, --cvport, --verifier-port PORT\n"
            "                                 verifier port (verifier_port)\n"
            "  --config FILE                  configuration instead of tenant.conf\n"
            "  -h, --help                     this text\n"
            "\n"
            "Configuration: /etc/vigil/tenant.conf [tenant] (tls_dir, client_cert,\n"
            "client_key, trusted_server_ca, verifier_ip, verifier_port), VIGIL_TENANT_<OPTION>.\n"
            "Exit status: 0 success, 1 failure, 2 usage error. See vigil-baseline(1).\n");
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
        va_list ap;

        fputs("vigil baseline: error: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

static int parse_args(int argc, char **argv, struct bl_args *a)
{
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i], *val = NULL;
                const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
                size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
                static const struct {
                        const char *name;
                        bool value;
                } opts[] = {
                        { "-h", false },
                        { "--help", false },
                        { "--json", false },
                        { "--verify", false },
                        { "--name", true },
                        { "--from-agent", true },
                        { "--event-id", true },
                        { "-v", true },
                        { "--cv", true },
                        { "--verifier", true },
                        { "-vp", true },
                        { "--cvport", true },
                        { "--verifier-port", true },
                        { "--config", true },
                };
                int k = -1;

                if (arg[0] != '-' || strcmp(arg, "-") == 0) {
                        if (!a->verb)
                                a->verb = arg;
                        else if (!a->operand)
                                a->operand = arg;
                        else
                                return cli_usage_error("baseline", "unexpected argument '%s'", arg);
                        continue;
                }
                for (size_t j = 0; j < VG_ARRAY_SIZE(opts) && k < 0; j++)
                        if (strlen(opts[j].name) == len && strncmp(arg, opts[j].name, len) == 0)
                                k = (int)j;
                if (k < 0)
                        return cli_usage_error("baseline", "unknown option '%s'", arg);
                if (opts[k].value) {
                        if (eq)
                                val = eq + 1;
                        else if (i + 1 < argc)
                                val = argv[++i];
                        else
                                return cli_usage_error("baseline", "option %s: expected a value",
                                                       arg);
                } else if (eq) {
                        return cli_usage_error("baseline", "option %.*s takes no value", (int)len,
                                               arg);
                }
                const char *n = opts[k].name;
                if (strcmp(n, "-h") == 0 || strcmp(n, "--help") == 0) {
                        usage(stdout);
                        return -1;
                } else if (strcmp(n, "--json") == 0) {
                        a->json = true;
                } else if (strcmp(n, "--verify") == 0) {
                        a->verify = true;
                } else if (strcmp(n, "--name") == 0) {
                        a->name = val;
                } else if (strcmp(n, "--from-agent") == 0) {
                        a->from_agent = val;
                } else if (strcmp(n, "--event-id") == 0) {
                        a->event_id = val;
                } else if (strcmp(n, "--config") == 0) {
                        a->config = val;
                } else if (strcmp(n, "-vp") == 0 || strcmp(n, "--cvport") == 0 ||
                           strcmp(n, "--verifier-port") == 0) {
                        a->verifier_port = val;
                } else {
                        a->verifier_ip = val;
                }
        }
        return 0;
}

static bool agent_id_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > 255)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
                        return false;
        return true;
}

static int check_args(struct bl_args *a)
{
        static const char *const verbs[] = { "add", "import",  "list",         "show",
                                             "rm",  "history", "measurements", "relearn" };
        bool known = false;
        const char *v = a->verb;

        if (!v)
                return cli_usage_error("baseline", "a command is required (add, import, list, "
                                                   "show, rm, history, measurements, relearn)");
        for (size_t i = 0; i < VG_ARRAY_SIZE(verbs); i++)
                known = known || strcmp(v, verbs[i]) == 0;
        if (!known)
                return cli_usage_error("baseline", "unknown command '%s'", v);
        if (strcmp(v, "add") == 0) {
                if (!a->from_agent || !a->name)
                        return cli_usage_error("baseline", "add needs --from-agent UUID and "
                                                           "--name NAME");
                if (a->operand)
                        return cli_usage_error("baseline", "add takes no operand ('%s')",
                                               a->operand);
                if (!agent_id_ok(a->from_agent))
                        return cli_usage_error("baseline",
                                               "--from-agent: expected an agent ID of letters, "
                                               "digits, '-', '_' and '.', found '%s'",
                                               a->from_agent);
        } else if (strcmp(v, "import") == 0) {
                if (!a->operand)
                        return cli_usage_error("baseline", "import needs a FILE");
        } else if (strcmp(v, "rm") == 0 || strcmp(v, "show") == 0) {
                if (!a->operand)
                        return cli_usage_error("baseline", "%s needs a NAME", v);
        } else if (strcmp(v, "measurements") == 0 || strcmp(v, "relearn") == 0) {
                if (!a->operand || !agent_id_ok(a->operand))
                        return cli_usage_error("baseline", "%s needs an agent UUID", v);
        } else if (a->operand) {
                return cli_usage_error("baseline", "%s takes no operand ('%s')", v, a->operand);
        }
        const char *name = a->name                                          ? a->name
                           : strcmp(v, "rm") == 0 || strcmp(v, "show") == 0 ? a->operand
                                                                            : NULL;
        if (name && !vg_baseline_name_valid(name))
                return cli_usage_error("baseline",
                                       "baseline name '%s': letters, digits, '-', '_' and '.' "
                                       "expected (1-128 characters, not 'history')",
                                       name);
        return 0;
}

static int setup(struct tenant *t, const struct bl_args *a)
{
        struct vg_config_load_opts lo = { .file = a->config };
        struct vg_error err = { 0 };

        if (vg_config_load(&tenant_schema, &lo, &t->cfg, &err) < 0)
                return fail("configuration: %s", vg_error_str(&err));
        if ((a->verifier_ip && vg_config_set(t->cfg, "verifier_ip", a->verifier_ip, &err) < 0) ||
            (a->verifier_port &&
             vg_config_set(t->cfg, "verifier_port", a->verifier_port, &err) < 0))
                return cli_usage_error("baseline", "%s", vg_error_str(&err));
        t->timeout_ms = (unsigned)vg_config_integer(t->cfg, "request_timeout") * 1000u;
        const char *vip = vg_config_string(t->cfg, "verifier_ip");
        tenant_https_base(t->verifier_base, sizeof(t->verifier_base), vip,
                          (long long)vg_config_integer(t->cfg, "verifier_port"));
        t->tls = tenant_tls_ctx(t->cfg, &err);
        if (!t->tls)
                return fail("%s", vg_error_str(&err));
        return 0;
}

/* One request to the verifier; status (or -1 after printing the transport error). */
static int call(struct tenant *t, const char *method, json_t *body, json_t **out, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
static int call(struct tenant *t, const char *method, json_t *body, json_t **out, const char *fmt,
                ...)
{
        char path[600];
        struct vg_error err = { 0 };
        va_list ap;
        int n = snprintf(path, sizeof(path), "/v%s", tenant_verifier_api(t));

        va_start(ap, fmt);
        vsnprintf(path + n, sizeof(path) - (size_t)n, fmt, ap);
        va_end(ap);
        int st = tenant_request(t, t->tls, method, t->verifier_base, path, body, out, &err);
        if (st < 0)
                fail("%s", vg_error_str(&err));
        return st;
}

static int http_fail(int st, json_t *reply, const char *what)
{
        if (st < 0)
                return 1;
        return fail("%s: the verifier answered %d: %s", what, st, tenant_status_text(reply));
}

static json_t *results(json_t *reply)
{
        return json_object_get(reply, "results");
}

/* "SHA256: 4 5 8 9; SHA1: 4 5" */
static void print_pcrs(const json_t *ms)
{
        const char *last = NULL;
        size_t i;
        const json_t *m;

        json_array_foreach (ms, i, m) {
                const char *alg = json_string_value(json_object_get(m, "hashAlgo"));
                const char *pcr = json_string_value(json_object_get(m, "pcrNum"));
                if (!alg || !pcr)
                        continue;
                if (!last || strcmp(last, alg) != 0)
                        printf("%s%s:", last ? "; " : "", alg);
                printf(" %s", strncmp(pcr, "PCR_", 4) == 0 ? pcr + 4 : pcr);
                last = alg;
        }
}

static void print_values(const json_t *ms)
{
        size_t i;
        const json_t *m;

        json_array_foreach (ms, i, m)
                printf("  %-7s %-7s %s\n", json_string_value(json_object_get(m, "hashAlgo")),
                       json_string_value(json_object_get(m, "pcrNum")),
                       json_string_value(json_object_get(m, "value")));
}

static int cmd_add(struct tenant *t, const struct bl_args *a)
{
        json_auto_t *reply = NULL;
        json_auto_t *body = json_pack("{s:s}", "fromAgent", a->from_agent);
        int st = call(t, "POST", body, &reply, "/baselines/%s", a->name);

        if (st != 201)
                return http_fail(st, reply, "add");
        printf("added known-good baseline %s from agent %s (", a->name, a->from_agent);
        print_pcrs(json_object_get(results(reply), "measurements"));
        printf(")\n");
        return 0;
}

static int import_one(struct tenant *t, const char *name, const json_t *doc, const char *file)
{
        struct vg_measurements m = { 0 };
        struct vg_error err = { 0 };
        _cleanup_free_ char *copy = strdup(file);
        int r;

        if (vg_measurements_from_json(doc, &m, &err) < 0) {
                vg_measurements_clear(&m);
                return fail("%s: %s", file, vg_error_str(&err));
        }
        json_auto_t *body = json_pack("{s:o, s:s}", "measurements", vg_measurements_json(&m),
                                      "source", copy ? basename(copy) : file);
        json_auto_t *reply = NULL;
        int st = call(t, "POST", body, &reply, "/baselines/%s", name);
        vg_measurements_clear(&m);
        if (st != 201) {
                char what[200];
                snprintf(what, sizeof(what), "import %s as %s", file, name);
                return http_fail(st, reply, what);
        }
        json_int_t ignored = json_integer_value(json_object_get(results(reply), "ignored"));
        printf("imported known-good baseline %s from %s (", name, file);
        print_pcrs(json_object_get(results(reply), "measurements"));
        printf(")\n");
        if (ignored > 0)
                printf("  %lld measurement(s) of other PCRs ignored: only late-boot PCRs (4, 5, "
                       "8, 9, 11-14) make a known-good baseline\n",
                       (long long)ignored);
        r = 0;
        return r;
}

/* A `list --json` export (an array of {name, measurements}) or a single such object? */
static bool is_export(const json_t *doc)
{
        size_t i;
        const json_t *x;

        if (json_is_object(doc))
                return json_is_string(json_object_get(doc, "name")) &&
                       json_object_get(doc, "measurements");
        if (!json_is_array(doc) || json_array_size(doc) == 0)
                return false;
        json_array_foreach (doc, i, x)
                if (!json_is_object(x) || !json_is_string(json_object_get(x, "name")) ||
                    !json_object_get(x, "measurements"))
                        return false;
        return true;
}

static int cmd_import(struct tenant *t, const struct bl_args *a)
{
        json_error_t je;
        json_auto_t *doc = json_load_file(a->operand, JSON_REJECT_DUPLICATES, &je);
        char name[160];
        int r = 0;

        if (!doc) {
                if (je.line <= 0)
                        return fail("%s: %s", a->operand, je.text);
                return fail("%s:%d: not JSON: %s", a->operand, je.line, je.text);
        }
        if (is_export(doc)) {
                json_t *one = json_is_object(doc) ? doc : NULL;
                size_t i;
                json_t *x;
                if (!one && json_array_size(doc) == 1)
                        one = json_array_get(doc, 0);
                if (!one && a->name) {
                        json_array_foreach (doc, i, x)
                                if (strcmp(json_string_value(json_object_get(x, "name")),
                                           a->name) == 0)
                                        one = x;
                        if (!one)
                                return fail("%s: no baseline named %s in it", a->operand, a->name);
                }
                if (one)
                        return import_one(
                            t, a->name ? a->name : json_string_value(json_object_get(one, "name")),
                            one, a->operand);
                json_array_foreach (doc, i, x) {
                        const char *n = json_string_value(json_object_get(x, "name"));
                        if (!vg_baseline_name_valid(n)) {
                                r = fail("%s[%zu].name: '%s' is not a valid baseline name",
                                         a->operand, i, n);
                                continue;
                        }
                        if (import_one(t, n, x, a->operand) != 0)
                                r = 1;
                }
                return r;
        }
        if (a->name) {
                snprintf(name, sizeof(name), "%s", a->name);
        } else {
                _cleanup_free_ char *copy = strdup(a->operand);
                char *b = copy ? basename(copy) : NULL, *dot;
                snprintf(name, sizeof(name), "%s", b ? b : "");
                if ((dot = strrchr(name, '.')) && dot != name)
                        *dot = '\0';
                if (!vg_baseline_name_valid(name))
                        return cli_usage_error("baseline",
                                               "cannot make a baseline name of '%s': give "
                                               "--name NAME",
                                               a->operand);
        }
        return import_one(t, name, doc, a->operand);
}

static int cmd_list(struct tenant *t, const struct bl_args *a)
{
        json_auto_t *reply = NULL;
        int st = call(t, "GET", NULL, &reply, "/baselines");
        json_t *list = json_object_get(results(reply), "baselines"), *b;
        size_t i;

        if (st != 200 || !json_is_array(list))
                return http_fail(st, reply, "list");
        if (a->json) {
                tenant_print_json(list);
                return 0;
        }
        if (json_array_size(list) == 0) {
                printf("no known-good baselines\n");
                return 0;
        }
        printf("%-24s %-26s %-45s %s\n", "NAME", "TIME", "SOURCE", "PCRS");
        json_array_foreach (list, i, b) {
                printf("%-24s %-26s %-45s ", json_string_value(json_object_get(b, "name")),
                       json_string_value(json_object_get(b, "time")),
                       json_string_value(json_object_get(b, "source")));
                print_pcrs(json_object_get(b, "measurements"));
                printf("\n");
        }
        return 0;
}

static int cmd_show(struct tenant *t, const struct bl_args *a)
{
        json_auto_t *reply = NULL;
        int st = call(t, "GET", NULL, &reply, "/baselines/%s", a->operand);
        json_t *b = results(reply);

        if (st != 200)
                return http_fail(st, reply, "show");
        if (a->json) {
                tenant_print_json(b);
                return 0;
        }
        printf("%s  (%s, %s)\n", a->operand, json_string_value(json_object_get(b, "source")),
               json_string_value(json_object_get(b, "time")));
        print_values(json_object_get(b, "measurements"));
        return 0;
}

static int cmd_rm(struct tenant *t, const struct bl_args *a)
{
        json_auto_t *reply = NULL;
        int st = call(t, "DELETE", NULL, &reply, "/baselines/%s", a->operand);

        if (st != 200)
                return http_fail(st, reply, "rm");
        printf("removed known-good baseline %s\n", a->operand);
        return 0;
}

static int entry_from_json(const json_t *j, struct vg_journal_entry *e)
{
        memset(e, 0, sizeof(*e));
        e->seq = json_integer_value(json_object_get(j, "seq"));
        e->time = strdup(json_string_value(json_object_get(j, "time")) ?: "");
        e->actor = strdup(json_string_value(json_object_get(j, "actor")) ?: "");
        e->action = strdup(json_string_value(json_object_get(j, "action")) ?: "");
        e->subject = strdup(json_string_value(json_object_get(j, "subject")) ?: "");
        e->before = json_incref(json_object_get(j, "before"));
        e->after = json_incref(json_object_get(j, "after"));
        snprintf(e->prev_hash, sizeof(e->prev_hash), "%s",
                 json_string_value(json_object_get(j, "prev_hash")) ?: "");
        snprintf(e->hash, sizeof(e->hash), "%s",
                 json_string_value(json_object_get(j, "hash")) ?: "");
        return e->time && e->actor && e->action && e->subject ? 0 : -ENOMEM;
}

static int cmd_history(struct tenant *t, const struct bl_args *a)
{
        json_auto_t *reply = NULL;
        int st = call(t, "GET", NULL, &reply, "/baselines/history");
        json_t *res = results(reply), *list = json_object_get(res, "entries"), *x;
        size_t i, n = json_array_size(list);
        int64_t bad = 0;
        char problem[256] = "";

        if (st != 200 || !json_is_array(list))
                return http_fail(st, reply, "history");
        if (a->json)
                tenant_print_json(res);
        else if (n == 0)
                printf("the baseline journal is empty\n");
        json_array_foreach (list, i, x) {
                if (a->json)
                        break;
                const char *hash = json_string_value(json_object_get(x, "hash"));
                printf("%4lld  %s  %-8s %-40s by %s  [%.12s]\n",
                       (long long)json_integer_value(json_object_get(x, "seq")),
                       json_string_value(json_object_get(x, "time")),
                       json_string_value(json_object_get(x, "action")),
                       json_string_value(json_object_get(x, "subject")),
                       json_string_value(json_object_get(x, "actor")), hash ? hash : "");
        }
        if (!a->verify)
                return 0;
        /* Verified here, from the entries themselves, not on the verifier's word. */
        struct vg_journal_entry *e = calloc(n ? n : 1, sizeof(*e));
        if (!e)
                return fail("out of memory");
        int r = 0;
        for (i = 0; i < n && r == 0; i++)
                r = entry_from_json(json_array_get(list, i), &e[i]);
        if (r == 0)
                r = vg_journal_verify(e, n, &bad, problem, sizeof(problem));
        vg_journal_entries_free(e, n);
        if (r < 0)
                return fail("out of memory");
        if (r > 0)
                return fail("the baseline journal does not verify: %s", problem);
        if (json_is_false(json_object_get(res, "verified")))
                return fail("the verifier says its journal does not verify: %s",
                            json_string_value(json_object_get(res, "problem")));
        fprintf(stderr, "vigil baseline: journal verified: %zu entries, hash chain intact\n", n);
        return 0;
}

static int cmd_measurements(struct tenant *t, const struct bl_args *a)
{
        json_auto_t *reply = NULL;
        int st = call(t, "GET", NULL, &reply, "/agents/%s/measurements", a->operand);
        json_t *res = results(reply);

        if (st != 200)
                return http_fail(st, reply, "measurements");
        if (a->json) {
                tenant_print_json(res);
                return 0;
        }
        printf("agent %s, quote of %s, boot %s\n", a->operand,
               json_string_value(json_object_get(res, "time")),
               json_string_value(json_object_get(res, "bootCounter")));
        print_values(json_object_get(res, "measurements"));
        return 0;
}

static int cmd_relearn(struct tenant *t, const struct bl_args *a)
{
        json_auto_t *reply = NULL;
        json_auto_t *body =
            a->event_id ? json_pack("{s:s}", "eventId", a->event_id) : json_object();
        int st = call(t, "POST", body, &reply, "/agents/%s/relearn", a->operand);

        if (st == 200) {
                printf("agent %s relearned: its late-boot measurements equal known-good "
                       "baseline %s\n",
                       a->operand, json_string_value(json_object_get(reply, "baseline")));
                return 0;
        }
        if (st == 409)
                return fail("agent %s not relearned: %s", a->operand,
                            json_string_value(json_object_get(reply, "reason")) ?: "refused");
        return http_fail(st, reply, "relearn");
}

int cmd_baseline(int argc, char **argv)
{
        struct bl_args a = { 0 };
        struct tenant t = { 0 };
        int r = parse_args(argc, argv, &a);

        if (r < 0)
                return 0;
        if (r > 0 || (r = check_args(&a)) != 0)
                return r;
        if ((r = setup(&t, &a)) == 0) {
                const char *v = a.verb;
                if (strcmp(v, "add") == 0)
                        r = cmd_add(&t, &a);
                else if (strcmp(v, "import") == 0)
                        r = cmd_import(&t, &a);
                else if (strcmp(v, "list") == 0)
                        r = cmd_list(&t, &a);
                else if (strcmp(v, "show") == 0)
                        r = cmd_show(&t, &a);
                else if (strcmp(v, "rm") == 0)
                        r = cmd_rm(&t, &a);
                else if (strcmp(v, "history") == 0)
                        r = cmd_history(&t, &a);
                else if (strcmp(v, "measurements") == 0)
                        r = cmd_measurements(&t, &a);
                else
                        r = cmd_relearn(&t, &a);
        }
        if (t.tls)
                SSL_CTX_free(t.tls);
        vg_config_free(t.cfg);
        return r;
}
