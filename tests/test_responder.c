/* vigil tests: vigil-responder against real peers: a mosquitto broker on 127.0.0.1 (events
 * published with mosquitto_pub -q 1), a webhook receiver checking the HMAC and a fake verifier
 * relearn endpoint (vg_http_server on a thread), exec actions writing marker files, and, as root,
 * the Shielded VM flow: a quarantine that takes a veth down inside a network namespace, then a
 * relearn that skips it. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "encoding.h"
#include "http_client.h"
#include "http_server.h"
#include "netns.h"
#include "tap.h"

#define SECRET "hook-s3cret"

static const char *dir, *responder;

/* ---- The fake peers: webhook receiver and verifier ---------------------------------------- */

struct mock {
        struct event_base *base;
        struct vg_http_server *srv;
        struct event *tick;
        pthread_t thread;
        atomic_bool stop;
        pthread_mutex_t lock;
        int port;
        int hooks_good, hooks_bad; /* X-Vigil-Signature verified / not */
        char last_hook_event[160];
        int flaky_calls;
        int relearn_calls;
        bool relearn_yes; /* answer 200 relearned, else 409 */
        char last_relearn_agent[160], last_relearn_event[160];
};

static void mock_tick(evutil_socket_t fd, short what, void *arg)
{
        struct mock *m = arg;
        (void)fd, (void)what;
        if (atomic_load(&m->stop))
                event_base_loopbreak(m->base);
}

static void mock_hook(struct vg_http_request *req, void *arg)
{
        struct mock *m = arg;
        size_t len = 0;
        const uint8_t *body = vg_http_request_body(req, &len);
        const char *sig = vg_http_request_header(req, "X-Vigil-Signature");
        const char *id = vg_http_request_header(req, "X-Vigil-Event-Id");
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned mac_len = 0;
        char want[80] = "sha256=";

        HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), body, len, mac, &mac_len);
        char *hex = vg_hex_encode(mac, mac_len);
        strncat(want, hex, sizeof(want) - strlen(want) - 1);
        free(hex);
        pthread_mutex_lock(&m->lock);
        if (sig && strcmp(sig, want) == 0)
                m->hooks_good++;
        else
                m->hooks_bad++;
        snprintf(m->last_hook_event, sizeof(m->last_hook_event), "%s", id ? id : "");
        pthread_mutex_unlock(&m->lock);
        vg_http_reply(req, 200, "text/plain", "ok", 2);
}

/* Fails twice with 503, then accepts. */
static void mock_flaky(struct vg_http_request *req, void *arg)
{
        struct mock *m = arg;
        int n;

        pthread_mutex_lock(&m->lock);
        n = ++m->flaky_calls;
        pthread_mutex_unlock(&m->lock);
        vg_http_reply(req, n <= 2 ? 503 : 200, "text/plain", "x", 1);
}

static void mock_relearn(struct vg_http_request *req, void *arg)
{
        struct mock *m = arg;
        json_t *j = vg_http_request_json(req, NULL);
        bool yes;

        pthread_mutex_lock(&m->lock);
        m->relearn_calls++;
        yes = m->relearn_yes;
        snprintf(m->last_relearn_agent, sizeof(m->last_relearn_agent), "%s",
                 vg_http_request_param(req, "agent"));
        snprintf(m->last_relearn_event, sizeof(m->last_relearn_event), "%s",
                 json_string_value(json_object_get(j, "eventId")) ?: "(none)");
        pthread_mutex_unlock(&m->lock);
        json_decref(j);
        if (yes)
                vg_http_reply_json(
                    req, 200, json_pack("{s:b,s:s}", "relearned", 1, "baseline", "kernel-6.1"));
        else
                vg_http_reply_json(req, 409,
                                   json_pack("{s:b,s:s}", "relearned", 0, "reason",
                                             "late boot measurements match no known-good "
                                             "baseline"));
}

static void *mock_run(void *arg)
{
        struct mock *m = arg;
        event_base_dispatch(m->base);
        return NULL;
}

static void mock_start(struct mock *m)
{
        struct vg_error err = { 0 };
        struct vg_http_server_config hc = { .address = "127.0.0.1", .name = "mock-peers" };
        struct timeval tv = { 0, 50000 };

        pthread_mutex_init(&m->lock, NULL);
        m->base = event_base_new();
        if (!m->base || vg_http_server_new(m->base, &hc, &m->srv, &err) < 0)
                tap_bail("mock peers: %s", vg_error_str(&err));
        m->port = vg_http_server_port(m->srv);
        vg_http_server_route(m->srv, "POST", "/hook", mock_hook, m);
        vg_http_server_route(m->srv, "POST", "/flaky", mock_flaky, m);
        vg_http_server_route(m->srv, "POST", "/v2.5/agents/{agent}/relearn", mock_relearn, m);
        m->tick = event_new(m->base, -1, EV_PERSIST, mock_tick, m);
        event_add(m->tick, &tv);
        pthread_create(&m->thread, NULL, mock_run, m);
}

static void mock_stop(struct mock *m)
{
        atomic_store(&m->stop, true);
        pthread_join(m->thread, NULL);
        event_free(m->tick);
        vg_http_server_free(m->srv);
        vg_event_base_free_drained(m->base);
}

static int mock_get(struct mock *m, const int *field)
{
        pthread_mutex_lock(&m->lock);
        int v = *field;
        pthread_mutex_unlock(&m->lock);
        return v;
}

/* ---- Events ---------------------------------------------------------------------------- */

static const char *const PCR_OLD = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
static const char *const PCR_NEW = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/* A vigil event; type "late"/"early" (PCR 4/PCR 0 measured), "runtime" or "relearn". */
static char *event(const char *id, const char *agent, const char *type, bool passed,
                   const char *labels)
{
        const char *actual = passed ? PCR_OLD : PCR_NEW;
        int pcr = strcmp(type, "early") == 0 ? 0 : 4;

        if (strcmp(type, "runtime") == 0)
                return tap_strf("{\"@type\":\"vigil.IntegrityEvent\",\"eventId\":\"%s\","
                                "\"agentId\":\"%s\",\"bootCounter\":\"1\",\"severity\":\"%s\","
                                "\"labels\":%s,\"runtimeReportEvent\":{\"policyEvaluationPassed\""
                                ":%s,\"failures\":[{\"type\":\"hash\",\"file\":\"/usr/bin/x\"}]}}",
                                id, agent, passed ? "INFO" : "ERROR", labels,
                                passed ? "true" : "false");
        if (strcmp(type, "relearn") == 0)
                return tap_strf("{\"@type\":\"vigil.IntegrityEvent\",\"eventId\":\"%s\","
                                "\"agentId\":\"%s\",\"bootCounter\":\"2\",\"severity\":\"NOTICE\","
                                "\"labels\":%s,\"relearnEvent\":{\"baseline\":\"kernel-6.1\","
                                "\"previousMeasurements\":[{\"hashAlgo\":\"SHA256\",\"pcrNum\":"
                                "\"PCR_4\",\"value\":\"%s\"}],\"newMeasurements\":[{\"hashAlgo\":"
                                "\"SHA256\",\"pcrNum\":\"PCR_4\",\"value\":\"%s\"}],\"reason\":"
                                "\"late boot measurements equal known-good baseline kernel-6.1\"}}",
                                id, agent, labels, PCR_OLD, PCR_NEW);
        return tap_strf("{\"@type\":\"vigil.IntegrityEvent\",\"eventId\":\"%s\",\"agentId\":"
                        "\"%s\",\"bootCounter\":\"3\",\"time\":\"2026-11-23T09:00:00.123Z\","
                        "\"severity\":\"%s\",\"verifierId\":\"default\",\"labels\":%s,"
                        "\"%sBootReportEvent\":{\"policyEvaluationPassed\":%s,"
                        "\"actualMeasurements\":[{\"hashAlgo\":\"SHA256\",\"pcrNum\":\"PCR_%d\","
                        "\"value\":\"%s\"}],\"policyMeasurements\":[{\"hashAlgo\":\"SHA256\","
                        "\"pcrNum\":\"PCR_%d\",\"value\":\"%s\"}]}}",
                        id, agent, passed ? "INFO" : "ERROR", labels, type,
                        passed ? "true" : "false", pcr, actual, pcr, PCR_OLD);
}

static char *event_file(const char *name, char *json)
{
        char *path = tap_strf("%s/%s.json", dir, name);
        if (tap_write_file(path, json) < 0)
                tap_bail("cannot write %s", path);
        free(json);
        return path;
}

static int count_lines(const char *path)
{
        char *s = tap_read_file(path, NULL);
        int n = 0;
        for (char *p = s; p && *p; p++)
                n += *p == '\n';
        free(s);
        return n;
}

static int run_oneshot(const char *conf, const char *ev_path, bool dry, char **out)
{
        if (dry)
                return tap_runl(out, responder, "-c", conf, "--event", ev_path, "--dry-run", NULL);
        return tap_runl(out, responder, "-c", conf, "--event", ev_path, NULL);
}

/* ---- Rules files ----------------------------------------------------------------------- */

static void check_rules_error(const char *name, const char *text, const char *want)
{
        char *path = tap_strf("%s/%s.toml", dir, name);
        char *out = NULL;
        tap_write_file(path, text);
        int rc = tap_runl(&out, responder, "--rules", path, "--check-rules", NULL);
        is_int(rc, 1, "bad rules (%s): exit 1", name);
        contains(out, want, "bad rules (%s): the message names the place", name);
        free(out);
        free(path);
}

static void test_rules_errors(void)
{
        check_rules_error("unknown-action",
                          "[action.a]\ntype = \"exec\"\ncommand = [\"true\"]\n\n[[rule]]\n"
                          "name = \"r1\"\nactions = [\"a\", \"shutdwn\"]\n",
                          "unknown-action.toml:7: rule \"r1\": actions[1]: no action named "
                          "\"shutdwn\" (defined: a)");
        check_rules_error("bad-type",
                          "[action.x]\ntype = \"shell\"\n[[rule]]\nname = \"r\"\n"
                          "actions = [\"x\"]\n",
                          "bad-type.toml:2: action \"x\": type: expected exec, webhook, "
                          "relearn-if-known-good, reprovision or notify, found \"shell\"");
        check_rules_error("float", "[action.x]\ntype = \"exec\"\ntimeout = 1.5\n",
                          "float.toml:3: only decimal integers are supported");
        check_rules_error("no-command",
                          "[action.x]\ntype = \"exec\"\n[[rule]]\nname = \"r\"\n"
                          "actions = [\"x\"]\n",
                          "no-command.toml:1: action \"x\": missing command");
        check_rules_error("bad-pcr",
                          "[action.x]\ntype = \"exec\"\ncommand = [\"true\"]\n[[rule]]\n"
                          "name = \"r\"\npcrs = [4, 24]\nactions = [\"x\"]\n",
                          "bad-pcr.toml:6: rule \"r\": pcrs[1]: expected a PCR number 0 to 23");
        check_rules_error("bad-event",
                          "[action.x]\ntype = \"exec\"\ncommand = [\"true\"]\n[[rule]]\n"
                          "name = \"r\"\nevent = \"lateBoot\"\nactions = [\"x\"]\n",
                          "bad-event.toml:6: rule \"r\": event: expected earlyBootReportEvent");
        check_rules_error("then-missing",
                          "[action.p]\ntype = \"reprovision\"\ncommand = [\"true\"]\n"
                          "then = \"nobody\"\n[[rule]]\nname = \"r\"\nactions = [\"p\"]\n",
                          "then-missing.toml:4: action \"p\": then: no action named \"nobody\"");
        check_rules_error("unknown-key",
                          "[action.x]\ntype = \"exec\"\ncommand = [\"true\"]\n[[rule]]\n"
                          "name = \"r\"\nagent = \"a\"\nactions = [\"x\"]\n",
                          "unknown-key.toml:6: rule \"r\": unknown key \"agent\"");
        check_rules_error("unterminated", "[[rule]]\nname = \"r\n",
                          "unterminated.toml:2: unterminated string");
}

/* ---- Main ------------------------------------------------------------------------------ */

static pid_t mosq_pid = -1, resp_pid = -1;
static struct tap_netns ns;

static void cleanup(void)
{
        tap_stop(&resp_pid);
        tap_stop(&mosq_pid);
        tap_netns_cleanup(&ns);
}

static void on_signal(int sig)
{
        cleanup();
        signal(sig, SIG_DFL);
        raise(sig);
}

static int publish(int port, const char *topic, const char *file)
{
        char *p = tap_strf("%d", port);
        int rc = tap_runl(NULL, "mosquitto_pub", "-h", "127.0.0.1", "-p", p, "-q", "1", "-t", topic,
                          "-f", file, NULL);
        free(p);
        return rc;
}

int main(void)
{
        struct mock m = { 0 };
        char *out = NULL;
        int rc;

        responder = getenv("VIGIL_RESPONDER");
        if (!responder)
                tap_bail("VIGIL_RESPONDER is not set");
        dir = tap_tmpdir();
        atexit(cleanup);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        mock_start(&m);

        test_rules_errors();

        bool have_ns = tap_netns_setup(&ns, "vigil-test", 'q');
        /* The quarantine: inside the namespace when we could make one, else a marker file. */
        char *quarantine_cmd =
            have_ns ? tap_strf("[\"ip\", \"netns\", \"exec\", \"%s\", \"ip\", \"link\", \"set\", "
                               "\"%s\", \"down\"]",
                               ns.name, ns.ns_if)
                    : tap_strf("[\"sh\", \"-c\", \"echo $VIGIL_AGENT_ID >> %s/quarantined\"]", dir);
        char *rules = tap_strf(
            "# vigil-responder test rules\n"
            "[action.mark]\ntype = \"exec\"\n"
            "command = [\"sh\", \"-c\", \"cat > %1$s/stdin-$VIGIL_EVENT_ID.json; "
            "echo $VIGIL_EVENT_ID $VIGIL_AGENT_ID $VIGIL_EVENT_TYPE pcrs=$VIGIL_PCRS "
            "role=$VIGIL_LABEL_ROLE >> %1$s/marks\"]\ntimeout = 10\n\n"
            "[action.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:%2$d/hook\"\n"
            "secret = \"" SECRET "\"\n\n"
            "[action.flaky]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:%2$d/flaky\"\n"
            "retries = 3\nretry_delay_ms = 50\n\n"
            "[action.relearn]\ntype = \"relearn-if-known-good\"\n"
            "verifier = \"http://127.0.0.1:%2$d\"\ntimeout = 5\n\n"
            "[action.quarantine]\ntype = \"exec\"\ncommand = %3$s\n\n"
            "[action.reprovision]\ntype = \"reprovision\"\n"
            "command = [\"sh\", \"-c\", \"echo $VIGIL_AGENT_ID $VIGIL_ATTEMPT/$VIGIL_MAX_ATTEMPTS "
            ">> %1$s/reprovisioned\"]\nmax_attempts = 2\nthen = \"page\"\n\n"
            "[action.page]\ntype = \"notify\"\ncommand = [\"sh\", \"-c\", \"echo paged "
            "$VIGIL_AGENT_ID >> %1$s/paged\"]\n\n"
            "[action.on-relearn]\ntype = \"notify\"\ncommand = [\"sh\", \"-c\", \"echo relearned "
            "$VIGIL_AGENT_ID >> %1$s/relearned\"]\n\n"
            "[[rule]]\nname = \"web-runtime\"\nevent = \"runtimeReportEvent\"\npassed = false\n"
            "min_severity = \"ERROR\"\nlabels = { role = \"web\" }\n"
            "actions = [\"mark\", \"hook\"]\n\n"
            "[[rule]]\nname = \"flaky-hook\"\nevent = \"earlyBootReportEvent\"\npassed = true\n"
            "actions = [\"flaky\"]\n[rule.labels]\nrole = \"flaky\"\n\n"
            "[[rule]]\nname = \"db-reprovision\"\nevent = [\"earlyBootReportEvent\"]\n"
            "passed = false\nlabels = { role = \"db\" }\nactions = [\"reprovision\"]\n\n"
            "[[rule]]\nname = \"late-boot\"\nevent = \"lateBootReportEvent\"\npassed = false\n"
            "pcrs = [4, 7]\nlabels = { role = \"edge\" }\nactions = [\"relearn\", "
            "\"quarantine\"]\n\n"
            "[[rule]]\nname = \"relearned\"\nevent = \"relearnEvent\"\nactions = "
            "[\"on-relearn\"]\n",
            dir, m.port, quarantine_cmd);
        char *rules_path = tap_strf("%s/rules.toml", dir);
        tap_write_file(rules_path, rules);
        rc = tap_runl(&out, responder, "--rules", rules_path, "--check-rules", NULL);
        is_int(rc, 0, "the test rules load");
        contains(out, "5 rules, 8 actions: OK", "--check-rules counts rules and actions");
        free(out);

        int mqtt_port = tap_free_port();
        char *conf = tap_strf("%s/responder.conf", dir);
        tap_write_file(conf, tap_keep(tap_strf("[responder]\nrules = \"%s\"\n"
                                               "database_url = \"%s/state.sqlite\"\n"
                                               "mqtt_port = %d\nmqtt_client_id = "
                                               "\"vigil-responder-test\"\nmqtt_keepalive = 5\n",
                                               rules_path, dir, mqtt_port)));

        /* Dry run: what would happen, nothing done, nothing recorded. */
        const char *web = "{\"role\":\"web\",\"zone\":\"a\"}";
        char *ev_rt1 = event_file("rt1", event("ev-rt-1", "agent-web-1", "runtime", false, web));
        rc = run_oneshot(conf, ev_rt1, true, &out);
        is_int(rc, 0, "dry run: exit 0");
        contains(out, "event ev-rt-1 agent agent-web-1: runtimeReportEvent failed severity ERROR",
                 "dry run: the event");
        contains(out, "rule web-runtime: matches", "dry run: the matching rule");
        contains(out, "action mark (exec): would run [\"sh\", \"-c\",", "dry run: the exec");
        contains(out,
                 tap_keep(tap_strf("action hook (webhook): would POST the event to "
                                   "http://127.0.0.1:%d/hook signed with X-Vigil-Signature",
                                   m.port)),
                 "dry run: the webhook");
        contains(out, "rule late-boot: no match (event type is runtimeReportEvent)",
                 "dry run: why the other rules do not match");
        free(out);
        ok(access(tap_keep(tap_strf("%s/marks", dir)), F_OK) != 0, "dry run: nothing ran");
        is_int(mock_get(&m, &m.hooks_good) + mock_get(&m, &m.hooks_bad), 0,
               "dry run: no webhook sent");

        /* For real: exec with the event on stdin and its environment, signed webhook. */
        char *marks = tap_strf("%s/marks", dir);
        rc = run_oneshot(conf, ev_rt1, false, &out);
        is_int(rc, 0, "one-shot: exit 0");
        contains(out,
                 "agent=agent-web-1 event=ev-rt-1 rule=web-runtime action=mark: mark: exit "
                 "status 0",
                 "the log names agent, event, rule, action and the exit status");
        contains(out, "action=hook: hook: HTTP 200", "the log has the webhook's HTTP status");
        free(out);
        char *marks_text = tap_read_file(marks, NULL);
        is_str(marks_text, "ev-rt-1 agent-web-1 runtimeReportEvent pcrs= role=web\n",
               "exec: VIGIL_EVENT_ID, VIGIL_AGENT_ID, VIGIL_EVENT_TYPE, VIGIL_LABEL_ROLE");
        free(marks_text);
        char *stdin_json = tap_read_file(tap_keep(tap_strf("%s/stdin-ev-rt-1.json", dir)), NULL);
        json_t *sj = stdin_json ? json_loads(stdin_json, 0, NULL) : NULL;
        is_str(json_string_value(json_object_get(sj, "eventId")), "ev-rt-1",
               "exec: the event JSON on stdin");
        json_decref(sj);
        free(stdin_json);
        is_int(mock_get(&m, &m.hooks_good), 1, "webhook: X-Vigil-Signature is the HMAC-SHA256");
        is_int(mock_get(&m, &m.hooks_bad), 0, "webhook: no unsigned or badly signed request");
        pthread_mutex_lock(&m.lock);
        is_str(m.last_hook_event, "ev-rt-1", "webhook: X-Vigil-Event-Id");
        pthread_mutex_unlock(&m.lock);

        /* The same event again: nothing runs twice. */
        rc = run_oneshot(conf, ev_rt1, false, &out);
        is_int(rc, 0, "duplicate: exit 0");
        contains(out, "already handled", "duplicate: logged as already handled");
        free(out);
        is_int(count_lines(marks), 1, "duplicate: the exec action did not run again");
        is_int(mock_get(&m, &m.hooks_good), 1, "duplicate: the webhook was not sent again");

        /* Severity below the rule's minimum and a passing verdict: no match. */
        char *ev_rt2 = event_file("rt2", event("ev-rt-2", "agent-web-1", "runtime", true, web));
        rc = run_oneshot(conf, ev_rt2, false, &out);
        contains(out, "no rule matches", "a passing runtime event matches no rule");
        free(out);
        is_int(count_lines(marks), 1, "... and runs nothing");

        /* Webhook retries: 503, 503, then 200. */
        char *ev_fl =
            event_file("fl", event("ev-fl-1", "agent-f", "early", true, "{\"role\":\"flaky\"}"));
        rc = run_oneshot(conf, ev_fl, false, &out);
        is_int(rc, 0, "webhook retried until 2xx: exit 0");
        contains(out, "flaky: HTTP 200 (after retries)", "webhook: the outcome after retries");
        contains(out, "webhook attempt 1 failed", "webhook: the failed attempt is logged");
        free(out);
        is_int(mock_get(&m, &m.flaky_calls), 3, "webhook: three attempts");

        /* Reprovision: two attempts per agent, then the notify action. */
        char *repro = tap_strf("%s/reprovisioned", dir), *paged = tap_strf("%s/paged", dir);
        for (int k = 1; k <= 3; k++) {
                char *f = event_file(tap_keep(tap_strf("db%d", k)),
                                     event(tap_keep(tap_strf("ev-db-%d", k)), "agent-db", "early",
                                           false, "{\"role\":\"db\"}"));
                rc = run_oneshot(conf, f, false, &out);
                if (k == 3)
                        contains(out, "attempts exhausted (2 of 2); then \"page\": exit status 0",
                                 "reprovision: the third failure runs the then action");
                free(out);
                free(f);
        }
        char *repro_text = tap_read_file(repro, NULL);
        is_str(repro_text, "agent-db 1/2\nagent-db 2/2\n",
               "reprovision: two attempts, VIGIL_ATTEMPT/VIGIL_MAX_ATTEMPTS");
        free(repro_text);
        is_int(count_lines(paged), 1, "reprovision: notify once the attempts are used up");
        /* A boot that passes resets the count. */
        char *f =
            event_file("db-ok", event("ev-db-ok", "agent-db", "early", true, "{\"role\":\"db\"}"));
        run_oneshot(conf, f, false, &out);
        free(out);
        free(f);
        f = event_file("db4", event("ev-db-4", "agent-db", "early", false, "{\"role\":\"db\"}"));
        run_oneshot(conf, f, false, &out);
        free(out);
        free(f);
        is_int(count_lines(repro), 3, "reprovision: a passing boot starts the attempts over");
        is_int(count_lines(paged), 1, "... without another notify");

        /* GCE's log entry verbatim. */
        char *gce = event_file(
            "gce", tap_strf("{\"insertId\":\"gce-insert-1\",\"severity\":\"ERROR\",\"jsonPayload\":"
                            "{\"@type\":\"type.googleapis.com/cloud_integrity.IntegrityEvent\","
                            "\"bootCounter\":\"2\",\"runtimeReportEvent\":{"
                            "\"policyEvaluationPassed\":false}},\"resource\":{\"type\":"
                            "\"gce_instance\",\"labels\":{\"instance_id\":\"4711\",\"role\":"
                            "\"web\",\"zone\":\"europe-west1-b\"}},\"logName\":\"projects/p/logs/"
                            "compute.googleapis.com%%2Fshielded_vm_integrity\"}"));
        rc = run_oneshot(conf, gce, false, &out);
        is_int(rc, 0, "GCE entry: handled");
        free(out);
        contains(tap_keep(tap_read_file(marks, NULL)), "gce-insert-1 4711 runtimeReportEvent",
                 "GCE entry: eventId := insertId, agentId := resource.labels.instance_id");

        /* Malformed events: rejected with the JSON path, exit 1. */
        struct {
                const char *name, *json, *want;
        } bad[] = {
                { "not-json", "{\"eventId\": ", "malformed event: not JSON" },
                { "no-id",
                  "{\"@type\":\"vigil.IntegrityEvent\",\"agentId\":\"a\",\"runtimeReportEvent\":"
                  "{\"policyEvaluationPassed\":false}}",
                  "eventId: expected 1 to 128 printable characters, found nothing" },
                { "bad-pcr",
                  "{\"@type\":\"vigil.IntegrityEvent\",\"eventId\":\"e\",\"agentId\":\"a\","
                  "\"lateBootReportEvent\":{\"policyEvaluationPassed\":false,"
                  "\"actualMeasurements\":[{\"hashAlgo\":\"SHA256\",\"pcrNum\":\"PCR_x\","
                  "\"value\":\"\"}]}}",
                  "lateBootReportEvent.actualMeasurements[0].pcrNum: expected \"PCR_<0-23>\", "
                  "found \"PCR_x\"" },
                { "two-reports",
                  "{\"@type\":\"vigil.IntegrityEvent\",\"eventId\":\"e\",\"agentId\":\"a\","
                  "\"earlyBootReportEvent\":{\"policyEvaluationPassed\":true},"
                  "\"relearnEvent\":{}}",
                  "both earlyBootReportEvent and relearnEvent: expected exactly one report" },
                { "short-digest",
                  "{\"@type\":\"vigil.IntegrityEvent\",\"eventId\":\"e\",\"agentId\":\"a\","
                  "\"earlyBootReportEvent\":{\"policyEvaluationPassed\":true,"
                  "\"policyMeasurements\":[{\"hashAlgo\":\"SHA1\",\"pcrNum\":\"PCR_0\","
                  "\"value\":\"AAAA\"}]}}",
                  "earlyBootReportEvent.policyMeasurements[0].value: expected the standard "
                  "base64 of a 20-byte SHA1 digest" },
        };
        for (size_t k = 0; k < VG_ARRAY_SIZE(bad); k++) {
                char *bp = event_file(bad[k].name, strdup(bad[k].json));
                rc = run_oneshot(conf, bp, false, &out);
                is_int(rc, 1, "malformed event (%s): exit 1", bad[k].name);
                contains(out, bad[k].want, "malformed event (%s): says what is wrong", bad[k].name);
                free(out);
                free(bp);
        }

        /* ---- The daemon on MQTT ---- */
        char *mconf = tap_strf("[responder]\nmqtt_port = %d\n", mqtt_port);
        char *mosq_conf = tap_strf("%s/mosquitto.conf", dir);
        tap_write_file(mosq_conf, tap_keep(tap_strf("listener %d 127.0.0.1\nallow_anonymous "
                                                    "true\npersistence false\n",
                                                    mqtt_port)));
        free(mconf);
        char *mosq_argv[] = { "/usr/sbin/mosquitto", "-c", mosq_conf, NULL };
        mosq_pid = tap_spawn_log(mosq_argv, tap_keep(tap_strf("%s/mosquitto.log", dir)));
        if (!tap_wait_port(mqtt_port, 5000))
                tap_bail("mosquitto did not listen on 127.0.0.1:%d", mqtt_port);

        char *log1 = tap_strf("%s/responder1.log", dir);
        char *resp_argv[] = { (char *)responder, "-f", "-c", conf, NULL };
        resp_pid = tap_spawn_log(resp_argv, log1);
        ok(tap_wait_file_contains(log1, "subscribed (QoS 1)", 5000),
           "daemon: subscribed to vigil/events/#");

        char *ev_m1 = event_file("m1", event("ev-mqtt-1", "agent-web-2", "runtime", false, web));
        is_int(publish(mqtt_port, "vigil/events/agent-web-2/runtimeReportEvent", ev_m1), 0,
               "mosquitto_pub -q 1");
        ok(tap_wait_file_contains(marks, "ev-mqtt-1 agent-web-2", 5000),
           "daemon: the MQTT event ran the exec action");
        is_int(publish(mqtt_port, "vigil/events/agent-web-2/runtimeReportEvent", ev_m1), 0,
               "the same event published again");
        ok(tap_wait_file_contains(log1, "event=ev-mqtt-1: already handled", 5000),
           "daemon: the redelivered event is recognised");
        tap_stop(&resp_pid);

        /* Published while the responder is down: the broker keeps them for its session. */
        char *ev_m2 = event_file("m2", event("ev-mqtt-2", "agent-web-3", "runtime", false, web));
        char *ev_m3 = event_file("m3", event("ev-mqtt-3", "agent-web-4", "runtime", false, web));
        publish(mqtt_port, "vigil/events/agent-web-3/runtimeReportEvent", ev_m2);
        publish(mqtt_port, "vigil/events/agent-web-4/runtimeReportEvent", ev_m3);
        publish(mqtt_port, "vigil/events/agent-web-2/runtimeReportEvent", ev_m1);
        usleep(200000);
        ok(!tap_wait_file_contains(marks, "ev-mqtt-2", 100), "nothing ran while it was down");
        char *log2 = tap_strf("%s/responder2.log", dir);
        resp_pid = tap_spawn_log(resp_argv, log2);
        ok(tap_wait_file_contains(marks, "ev-mqtt-3 agent-web-4", 8000),
           "restart: events published while it was down are processed");
        ok(tap_wait_file_contains(marks, "ev-mqtt-2 agent-web-3", 100), "... both of them");
        ok(tap_wait_file_contains(log2, "event=ev-mqtt-1: already handled", 5000),
           "restart: the event handled before the restart is not rerun");
        char *marks_all = tap_read_file(marks, NULL);
        int n_m1 = 0;
        for (char *p = marks_all; p && (p = strstr(p, "ev-mqtt-1 ")); p++)
                n_m1++;
        is_int(n_m1, 1, "ev-mqtt-1 ran its action exactly once over three deliveries");
        free(marks_all);
        is_int(mock_get(&m, &m.hooks_good), 5, "webhooks: one per distinct event, all signed");

        /* ---- The Shielded VM flow: quarantine, then relearn instead ---- */
        const char *edge = "{\"role\":\"edge\"}";
        if (have_ns)
                is_int(tap_netns_link_up(&ns), 1, "quarantine: the veth in %s is up before",
                       ns.name);
        else
                tap_skip("not root or no ip netns", "quarantine inside a network namespace");
        char *ev_l1 = event_file("l1", event("ev-late-1", "agent-edge", "late", false, edge));
        publish(mqtt_port, "vigil/events/agent-edge/lateBootReportEvent", ev_l1);
        ok(tap_wait_file_contains(log2, "action=quarantine: quarantine: exit status 0", 8000),
           "late boot PCR 4 changed, no known-good baseline: the quarantine ran");
        ok(tap_wait_file_contains(log2, "relearn: not relearned (HTTP 409)", 100),
           "... after the verifier answered 409 to relearn-if-known-good");
        pthread_mutex_lock(&m.lock);
        is_str(m.last_relearn_agent, "agent-edge", "relearn: POST /v2.5/agents/{agentId}/relearn");
        is_str(m.last_relearn_event, "ev-late-1", "relearn: body {\"eventId\": ...}");
        pthread_mutex_unlock(&m.lock);
        if (have_ns) {
                is_int(tap_netns_link_up(&ns), 0,
                       "quarantine: the veth in the namespace went down");
                /* The operator investigates, adds the new measurements as known-good, and the
                 * machine boots again (its link back up). */
                tap_netns_link_set_up(&ns);
                is_int(tap_netns_link_up(&ns), 1, "the link is up again for the next boot");
        } else {
                is_int(count_lines(tap_keep(tap_strf("%s/quarantined", dir))), 1,
                       "quarantine: the marker action ran once");
        }
        pthread_mutex_lock(&m.lock);
        m.relearn_yes = true;
        pthread_mutex_unlock(&m.lock);
        char *ev_l2 = event_file("l2", event("ev-late-2", "agent-edge", "late", false, edge));
        publish(mqtt_port, "vigil/events/agent-edge/lateBootReportEvent", ev_l2);
        ok(tap_wait_file_contains(log2,
                                  "relearned: skipping the remaining 1 action of this "
                                  "rule",
                                  8000),
           "known-good: relearned, the rest of the rule skipped");
        contains(tap_keep(tap_read_file(log2, NULL)),
                 "relearn: relearned: onto known-good baseline \"kernel-6.1\" (HTTP 200)",
                 "the log says onto which baseline");
        ok(!tap_wait_file_contains(log2,
                                   "event=ev-late-2 rule=late-boot action=quarantine: "
                                   "running",
                                   300),
           "the quarantine did not run for the relearned boot");
        if (have_ns)
                is_int(tap_netns_link_up(&ns), 1, "the veth stays up");
        else
                is_int(count_lines(tap_keep(tap_strf("%s/quarantined", dir))), 1,
                       "the quarantine marker was not written again");
        char *ev_r1 = event_file("r1", event("ev-relearn-1", "agent-edge", "relearn", true, edge));
        publish(mqtt_port, "vigil/events/agent-edge/relearnEvent", ev_r1);
        ok(tap_wait_file_contains(tap_keep(tap_strf("%s/relearned", dir)), "relearned agent-edge",
                                  5000),
           "the verifier's relearnEvent runs the relearned rule's notify");
        is_int(mock_get(&m, &m.relearn_calls), 2, "the verifier was asked once per failing boot");

        /* Dry run on MQTT uses its own clean session: the real session's queue is untouched. */
        tap_stop(&resp_pid);
        tap_netns_cleanup(&ns);
        mock_stop(&m);
        tap_stop(&mosq_pid);

        free(quarantine_cmd);
        free(rules);
        free(rules_path);
        free(conf);
        free(ev_rt1);
        free(ev_rt2);
        free(ev_fl);
        free(repro);
        free(paged);
        free(gce);
        free(marks);
        free(mosq_conf);
        free(log1);
        free(log2);
        free(ev_m1);
        free(ev_m2);
        free(ev_m3);
        free(ev_l1);
        free(ev_l2);
        free(ev_r1);
        return tap_done();
}
