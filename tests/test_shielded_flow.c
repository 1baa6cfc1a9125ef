/*
 * vigil tests: the Shielded VM guide's flow end to end (issue 7). A whole stack on loopback:
 * swtpm, registrar, verifier (integrity events to a JSON lines file and to a real mosquitto) and
 * agent, with vigil-responder subscribed to the broker:
 *   1. first boot: the verifier learns the agent's baseline (TOFU); both reports pass, no action;
 *   2. "kernel upgrade": the TPM reboots (resetCount + 1) with a different PCR 4: the verifier
 *      emits a failed lateBootReportEvent; the responder asks the real verifier to relearn
 *      (409: not known-good) and quarantines the machine (a veth inside a network namespace
 *      goes down, as root; a marker file otherwise);
 *   3. the operator adds the new measurements as known-good (vigil baseline add --from-agent);
 *   4. the next boot with the same PCR 4: the verifier relearns by itself (relearnEvent, late
 *      boot reported passed), the responder notifies and does not quarantine;
 *   5. an early-boot change (PCR 7) fails early boot and relearns nothing;
 *   6. mosquitto is stopped across a reboot: the events wait in the outbox and arrive once it is
 *      back; every event in the file reached the responder exactly once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "encoding.h"
#include "http_client.h"
#include "stack.h"
#include "swtpm.h"
#include "netns.h"
#include "tap.h"
#include "tls.h"

static struct vg_stack *S;
static const char *dir, *responder;
static char *events_path, *seen_path, *resp_log, *mosq_conf;
static pid_t mosq_pid = -1, resp_pid = -1;
static int mqtt_port;
static struct tap_netns ns;
static bool have_ns;

/* Kernel upgrade: what is extended into PCR 4 (sha256) after the reboot. */
#define KERNEL_NEW "6b65726e656c2d362e312d6e65772d696d6167652d646967657374000000004a"
#define PCR7_EVIL  "5365637572652d626f6f742d64697361626c6564000000000000000000000007"

/* ---- processes and the namespace ------------------------------------------------------- */

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

static void mosquitto_start(void)
{
        char *argv[] = { "/usr/sbin/mosquitto", "-c", mosq_conf, NULL };

        mosq_pid = tap_spawn_log(argv, tap_keep(tap_strf("%s/mosquitto.log", dir)));
        if (!tap_wait_port(mqtt_port, 5000))
                tap_bail("mosquitto did not listen on 127.0.0.1:%d", mqtt_port);
}

static void sleep_ms(int ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* ---- the verifier's events (its file sink) --------------------------------------------- */

static json_t *read_events(void)
{
        json_t *all = json_array();
        _cleanup_free_ char *text = tap_read_file(events_path, NULL);

        for (char *line = text, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                json_t *ev = json_loads(line, 0, NULL);
                if (ev)
                        json_array_append_new(all, ev);
        }
        return all;
}

static long long boot_of(const json_t *ev)
{
        const char *b = json_string_value(json_object_get(ev, "bootCounter"));
        return b ? atoll(b) : -1;
}

/* The report of the first event of that kind (and boot, unless < 0); *ev the whole event. */
static json_t *find_event(const char *kind, long long boot, json_t **ev)
{
        json_t *all = read_events(), *x, *found = NULL;
        size_t i;

        json_array_foreach (all, i, x) {
                if (json_object_get(x, kind) && (boot < 0 || boot_of(x) == boot)) {
                        found = x;
                        break;
                }
        }
        *ev = found ? json_incref(found) : NULL;
        json_decref(all);
        return found ? json_object_get(found, kind) : NULL;
}

static json_t *wait_event(const char *kind, long long boot, json_t **ev, int secs)
{
        for (int i = 0; i < secs * 10; i++) {
                json_t *r = find_event(kind, boot, ev);
                if (r)
                        return r;
                sleep_ms(100);
        }
        return NULL;
}

static size_t count_events(const char *kind)
{
        json_t *all = read_events(), *x;
        size_t i, n = 0;

        json_array_foreach (all, i, x)
                if (!kind || json_object_get(x, kind))
                        n++;
        json_decref(all);
        return n;
}

/* The value of PCR_n in a measurements array (base64), or NULL. */
static const char *pcr_value(const json_t *arr, int pcr)
{
        char name[16];
        const json_t *m;
        size_t i;

        snprintf(name, sizeof(name), "PCR_%d", pcr);
        json_array_foreach (arr, i, m)
                if (strcmp(json_string_value(json_object_get(m, "pcrNum")) ?: "", name) == 0)
                        return json_string_value(json_object_get(m, "value"));
        return NULL;
}

static size_t count_in(const char *path, const char *needle)
{
        _cleanup_free_ char *text = tap_read_file(path, NULL);
        size_t n = 0;

        for (char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* ---- the TPM ----------------------------------------------------------------------------- */

/* A reboot: the agent stops, the TPM resets (resetCount + 1, PCRs cleared), the firmware and
 * boot loader measure (PCR 4: the kernel, PCR 7: secure boot), the agent starts again. */
static void reboot(const char *pcr4_hex, const char *pcr7_hex)
{
        struct vg_error err = { 0 };
        _cleanup_free_ char *out = NULL;

        vg_stack_daemon_stop(&S->agent);
        if (vg_swtpm_stop(S->tpm, &err) < 0 || vg_swtpm_restart(S->tpm, &err) < 0)
                tap_bail("swtpm restart: %s", vg_error_str(&err));
        if (pcr4_hex &&
            vg_swtpm_sh(S->tpm, S->dir, &out, "tpm2_pcrextend 4:sha256=%s", pcr4_hex) != 0)
                tap_bail("tpm2_pcrextend 4: %s", out ? out : "");
        free(out);
        out = NULL;
        if (pcr7_hex &&
            vg_swtpm_sh(S->tpm, S->dir, &out, "tpm2_pcrextend 7:sha256=%s", pcr7_hex) != 0)
                tap_bail("tpm2_pcrextend 7: %s", out ? out : "");
        /* A new IMA measurement list, PCR 10 from zero. */
        tap_write_file(S->ima_path, "");
        free(out);
        out = NULL;
        if (vg_stack_ima_sim(S, &out, "boot", (char *)NULL) != 0)
                tap_bail("ima-sim boot: %s", out ? out : "");
        vg_stack_daemon_start(S, &S->agent);
}

/* base64 of SHA-256(32 zero bytes || hex digest): a PCR extended once from reset. */
static char *extended_once(const char *hex)
{
        uint8_t buf[64] = { 0 }, md[32];
        unsigned len = 0;

        for (int i = 0; i < 32; i++)
                sscanf(hex + 2 * i, "%2hhx", &buf[32 + i]);
        EVP_Digest(buf, sizeof(buf), md, &len, EVP_sha256(), NULL);
        return vg_b64_encode(md, 32, VG_B64_STD);
}

/* ---- enrolment through the verifier's API, with labels in the metadata -------------------- */

static SSL_CTX *client_ctx(void)
{
        struct vg_error err = { 0 };
        _cleanup_free_ char *ca = tap_strf("%s/cacert.crt", S->ca_dir);
        _cleanup_free_ char *cert = tap_strf("%s/client-cert.crt", S->ca_dir);
        _cleanup_free_ char *key = tap_strf("%s/client-private.pem", S->ca_dir);
        struct vg_tls_client_config tc = { .ca_file = ca, .cert_file = cert, .key_file = key };
        SSL_CTX *c = vg_tls_client_ctx_new(&tc, &err);

        if (!c)
                tap_bail("TLS context: %s", vg_error_str(&err));
        return c;
}

static int request(SSL_CTX *tls, const char *method, const char *url, json_t *body, json_t **out)
{
        struct vg_http_client_config cc = { .tls = tls, .timeout_ms = 20000 };
        struct vg_http_client_request rq = { .method = method, .url = url, .json = body };
        struct vg_http_response *resp = NULL;
        struct vg_error err = { 0 };
        int status;

        if (out)
                *out = NULL;
        if (vg_http_fetch(&cc, &rq, &resp, &err) < 0) {
                tap_diag("%s %s: %s", method, url, vg_error_str(&err));
                return -1;
        }
        status = resp->status;
        if (out)
                *out = vg_http_response_json(resp, &err);
        vg_http_response_free(resp);
        return status;
}

static void enrol(void)
{
        SSL_CTX *tls = client_ctx();
        json_t *j = NULL;
        char *url = tap_strf("https://127.0.0.1:%d/v2.5/agents/%s", S->registrar.tls_port, S->uuid);
        int r = request(tls, "GET", url, NULL, &j);

        free(url);
        if (r != 200)
                tap_bail("registrar GET: %d", r);
        json_t *res = json_object_get(j, "results");
        /* A runtime policy that allows nothing but what /tmp holds; boot_aggregate is excluded
         * too, as it changes with every kernel this test boots. */
        json_t *pol =
            json_pack("{s:{s:i, s:i}, s:i, s:{}, s:[s,s], s:{}, s:{s:[], s:s, s:n}, s:{}, s:s}",
                      "meta", "version", 1, "generator", 3, "release", 0, "digests", "excludes",
                      "^/tmp/.*", "^boot_aggregate$", "keyrings", "ima", "ignored_keyrings",
                      "log_hash_alg", "sha1", "dm_policy", "ima-buf", "verification-keys", "");
        _cleanup_free_ char *pol_text = json_dumps(pol, JSON_COMPACT);
        _cleanup_free_ char *pol_b64 = vg_b64_encode(pol_text, strlen(pol_text), VG_B64_STD);
        json_decref(pol);
        /* Labels travel in Keylime's metadata (what `keylime_tenant` sends as "metadata"):
         * {"labels": {"role": "edge", ...}}; the verifier copies them into every event. */
        json_t *add = json_pack(
            "{s:s, s:i, s:s, s:s, s:O, s:O, s:[s], s:[s,s], s:[s,s], s:s}", "cloudagent_ip",
            "127.0.0.1", "cloudagent_port", S->agent.port, "tpm_policy", "{}", "metadata",
            "{\"labels\": {\"role\": \"edge\", \"zone\": \"a\"}}", "ak_tpm",
            json_object_get(res, "aik_tpm"), "mtls_cert", json_object_get(res, "mtls_cert"),
            "accept_tpm_hash_algs", "sha256", "accept_tpm_encryption_algs", "rsa", "ecc",
            "accept_tpm_signing_algs", "rsassa", "ecdsa", "supported_version", "2.5");
        json_object_set_new(add, "runtime_policy_name", json_string("shielded"));
        json_object_set_new(add, "runtime_policy", json_string(pol_b64));
        url = tap_strf("https://127.0.0.1:%d/v2.5/agents/%s", S->verifier.port, S->uuid);
        json_t *resp = NULL;
        r = request(tls, "POST", url, add, &resp);
        if (!is_int(r, 200, "the agent is enrolled with labels in its metadata"))
                tap_diag("%s", resp ? json_dumps(resp, 0) : "(no body)");
        json_decref(resp);
        json_decref(add);
        json_decref(j);
        free(url);
        SSL_CTX_free(tls);
}

/* ---- main ------------------------------------------------------------------------------ */

int main(void)
{
        _cleanup_free_ char *out = NULL;
        json_t *ev = NULL, *rep;

        responder = getenv("VIGIL_RESPONDER");
        if (!responder)
                tap_bail("VIGIL_RESPONDER is not set");
        if (access("/usr/sbin/mosquitto", X_OK) != 0) {
                tap_skip("no /usr/sbin/mosquitto", "the Shielded VM flow");
                return tap_done();
        }
        dir = tap_tmpdir();
        atexit(cleanup);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        signal(SIGPIPE, SIG_IGN);

        /* The broker keeps the responder's persistent session across its own restart. */
        mqtt_port = tap_free_port();
        mosq_conf = tap_strf("%s/mosquitto.conf", dir);
        tap_write_file(mosq_conf, tap_keep(tap_strf("listener %d 127.0.0.1\nallow_anonymous "
                                                    "true\npersistence true\n"
                                                    "persistence_location %s/\n",
                                                    mqtt_port, dir)));
        mosquitto_start();

        char *e_port = tap_keep(tap_strf("VIGIL_VERIFIER_EVENT_MQTT_PORT=%d", mqtt_port));
        const char *const venv[] = {
                "VIGIL_VERIFIER_INTEGRITY_EVENT_SINKS=file,mqtt",
                e_port,
                "VIGIL_VERIFIER_EVENT_MQTT_CLIENT_ID=vigil-verifier-shielded-test",
                "VIGIL_VERIFIER_EVENT_MQTT_KEEPALIVE=5",
                "VIGIL_VERIFIER_EVENT_MQTT_BACKOFF_MIN_MS=100",
                "VIGIL_VERIFIER_EVENT_MQTT_BACKOFF_MAX_MS=500",
                "VIGIL_VERIFIER_EVENT_MQTT_ACK_TIMEOUT_MS=3000",
                "VIGIL_VERIFIER_INTEGRITY_EVENT_BACKOFF_MIN_MS=100",
                "VIGIL_VERIFIER_INTEGRITY_EVENT_BACKOFF_MAX_MS=500",
                NULL,
        };
        struct vg_stack_opts so = { .verifier_env = venv, .quote_interval = 0.2 };
        vg_stack_start(&so, &S);
        events_path = tap_strf("%s/events.jsonl", S->verifier.dir);

        /* ---- the responder ---- */
        have_ns = tap_netns_setup(&ns, "vigil-shielded", 's');
        seen_path = tap_strf("%s/seen", dir);
        char *quarantine_cmd = tap_keep(
            have_ns
                ? tap_strf("[\"ip\", \"netns\", \"exec\", \"%s\", \"ip\", \"link\", \"set\", "
                           "\"%s\", \"down\"]",
                           ns.name, ns.ns_if)
                : tap_strf("[\"sh\", \"-c\", \"echo $VIGIL_AGENT_ID >> %s/quarantined\"]", dir));
        char *rules = tap_keep(tap_strf(
            "[action.seen]\ntype = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo $VIGIL_EVENT_ID "
            "$VIGIL_EVENT_TYPE passed=$VIGIL_PASSED boot=$VIGIL_BOOT_COUNTER "
            "role=$VIGIL_LABEL_ROLE >> %1$s/seen\"]\n\n"
            "[action.relearn]\ntype = \"relearn-if-known-good\"\n"
            "verifier = \"https://127.0.0.1:%2$d\"\nca = \"%3$s/cacert.crt\"\n"
            "client_cert = \"%3$s/client-cert.crt\"\nclient_key = \"%3$s/client-private.pem\"\n"
            "timeout = 10\n\n"
            "[action.quarantine]\ntype = \"exec\"\ncommand = %4$s\n\n"
            "[action.notify]\ntype = \"notify\"\ncommand = [\"sh\", \"-c\", \"echo relearned "
            "$VIGIL_AGENT_ID $VIGIL_EVENT_ID >> %1$s/relearned\"]\n\n"
            "[[rule]]\nname = \"every-event\"\nactions = [\"seen\"]\n\n"
            "[[rule]]\nname = \"late-boot-changed\"\nevent = \"lateBootReportEvent\"\n"
            "passed = false\npcrs = [4]\nlabels = { role = \"edge\" }\n"
            "actions = [\"relearn\", \"quarantine\"]\n\n"
            "[[rule]]\nname = \"relearned\"\nevent = \"relearnEvent\"\nactions = [\"notify\"]\n",
            dir, S->verifier.port, S->ca_dir, quarantine_cmd));
        char *rules_path = tap_keep(tap_strf("%s/rules.toml", dir));
        tap_write_file(rules_path, rules);
        char *conf = tap_keep(tap_strf("%s/responder.conf", dir));
        tap_write_file(conf, tap_keep(tap_strf("[responder]\nrules = \"%s\"\n"
                                               "database_url = \"%s/responder.sqlite\"\n"
                                               "mqtt_port = %d\nmqtt_client_id = "
                                               "\"vigil-responder-shielded\"\nmqtt_keepalive = 5\n"
                                               "mqtt_reconnect_max = 1\n",
                                               rules_path, dir, mqtt_port)));
        resp_log = tap_strf("%s/responder.log", dir);
        char *resp_argv[] = { (char *)responder, "-f", "-c", conf, NULL };
        resp_pid = tap_spawn_log(resp_argv, resp_log);
        ok(tap_wait_file_contains(resp_log, "subscribed (QoS 1)", 5000),
           "the responder subscribed to the broker");
        ok(tap_wait_file_contains(S->verifier.log, "sink=mqtt", 5000),
           "the verifier delivers integrity events to MQTT");

        /* ---- 1. first boot: trust on first use ---- */
        if (vg_stack_ima_sim(S, &out, "boot", (char *)NULL) != 0)
                tap_bail("ima-sim boot: %s", out ? out : "");
        free(out);
        out = NULL;
        enrol();
        rep = wait_event("lateBootReportEvent", -1, &ev, 20);
        ok(rep != NULL, "first boot: a lateBootReportEvent");
        long long boot1 = boot_of(ev);
        ok(json_is_true(json_object_get(rep, "policyEvaluationPassed")),
           "first boot: late boot passes (learned, trust on first use)");
        is_int((long long)json_array_size(json_object_get(rep, "actualMeasurements")), 8,
               "late boot: PCRs 4, 5, 8, 9, 11-14 of the sha256 bank");
        is_str(json_string_value(json_object_get(json_object_get(ev, "labels"), "role")), "edge",
               "the event carries the agent's labels from its metadata");
        is_str(json_string_value(json_object_get(ev, "@type")), "vigil.IntegrityEvent",
               "vigil's IntegrityEvent");
        json_decref(ev);
        rep = find_event("earlyBootReportEvent", boot1, &ev);
        ok(rep && json_is_true(json_object_get(rep, "policyEvaluationPassed")) &&
               json_array_size(json_object_get(rep, "actualMeasurements")) == 5,
           "first boot: early boot (PCRs 0-3, 7) passes");
        json_decref(ev);
        ok(tap_wait_file_contains(S->verifier.log, "learned (trust on first use)", 5000),
           "the verifier logs the learning");
        ok(tap_wait_file_contains(seen_path, "lateBootReportEvent passed=true", 10000),
           "the responder received the events over MQTT");
        contains(tap_keep(tap_read_file(seen_path, NULL)), "role=edge",
                 "with the labels (VIGIL_LABEL_ROLE)");
        if (have_ns)
                is_int(tap_netns_link_up(&ns), 1, "no action: the machine's link stays up");
        else
                ok(access(tap_keep(tap_strf("%s/quarantined", dir)), F_OK) != 0,
                   "no action: nothing quarantined");

        /* ---- 2. kernel upgrade: PCR 4 changes ---- */
        _cleanup_free_ char *pcr4_new = extended_once(KERNEL_NEW);
        reboot(KERNEL_NEW, NULL);
        rep = wait_event("lateBootReportEvent", boot1 + 1, &ev, 20);
        ok(rep != NULL, "reboot: the boot counter moved (%lld -> %lld)", boot1, boot1 + 1);
        ok(rep && json_is_false(json_object_get(rep, "policyEvaluationPassed")),
           "kernel upgrade: lateBootReportEvent fails");
        is_str(json_string_value(json_object_get(ev, "severity")), "ERROR", "with severity ERROR");
        is_str(pcr_value(json_object_get(rep, "actualMeasurements"), 4), pcr4_new,
               "actualMeasurements PCR_4 is the new kernel's (base64)");
        is_str(pcr_value(json_object_get(rep, "policyMeasurements"), 4),
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
               "policyMeasurements PCR_4 is the learned one");
        json_decref(ev);
        rep = find_event("earlyBootReportEvent", boot1 + 1, &ev);
        ok(rep && json_is_true(json_object_get(rep, "policyEvaluationPassed")),
           "early boot still passes");
        json_decref(ev);
        ok(tap_wait_file_contains(resp_log, "action=quarantine: quarantine: exit status 0", 15000),
           "the responder quarantined the machine");
        ok(tap_wait_file_contains(resp_log, "not relearned (HTTP 409)", 100),
           "... after the real verifier answered 409 to relearn-if-known-good");
        ok(tap_wait_file_contains(S->verifier.log, "equal no known-good baseline", 100),
           "the verifier refused the relearn: not known-good");
        if (have_ns)
                is_int(tap_netns_link_up(&ns), 0, "quarantine: the veth in %s is down", ns.name);
        else
                is_int((long long)count_in(tap_keep(tap_strf("%s/quarantined", dir)), S->uuid), 1,
                       "quarantine: the marker action ran once");
        is_int((long long)count_events("relearnEvent"), 0, "nothing relearned");

        /* ---- 3. the operator: the new kernel is known-good ---- */
        int rc = vg_stack_vigil(S, &out, "baseline", "add", "--from-agent", S->uuid, "--name",
                                "kernel-6.1", NULL);
        if (!is_int(rc, 0, "vigil baseline add --from-agent UUID --name kernel-6.1"))
                tap_diag("%s", out ? out : "");
        if (have_ns) {
                tap_netns_link_set_up(&ns);
                is_int(tap_netns_link_up(&ns), 1, "the link is up again for the next boot");
        }

        /* ---- 4. the next boot with the same kernel: relearned, not quarantined ---- */
        reboot(KERNEL_NEW, NULL);
        rep = wait_event("relearnEvent", boot1 + 2, &ev, 20);
        ok(rep != NULL, "next boot: the verifier relearned by itself (relearnEvent)");
        is_str(json_string_value(json_object_get(rep, "baseline")), "kernel-6.1",
               "onto known-good baseline kernel-6.1");
        is_str(pcr_value(json_object_get(rep, "newMeasurements"), 4), pcr4_new,
               "newMeasurements PCR_4 is the new kernel's");
        is_str(pcr_value(json_object_get(rep, "previousMeasurements"), 4),
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
               "previousMeasurements PCR_4 the old baseline's");
        json_decref(ev);
        rep = find_event("lateBootReportEvent", boot1 + 2, &ev);
        ok(rep && json_is_true(json_object_get(rep, "policyEvaluationPassed")),
           "the late-boot report passes against the relearned baseline");
        json_decref(ev);
        ok(tap_wait_file_contains(tap_keep(tap_strf("%s/relearned", dir)), S->uuid, 15000),
           "the responder notified the relearning");
        sleep_ms(1000);
        if (have_ns)
                is_int(tap_netns_link_up(&ns), 1, "and did not quarantine: the link stays up");
        else
                is_int((long long)count_in(tap_keep(tap_strf("%s/quarantined", dir)), S->uuid), 1,
                       "and did not quarantine again");
        free(out);
        out = NULL;
        rc = vg_stack_vigil(S, &out, "baseline", "history", "--verify", NULL);
        is_int(rc, 0, "vigil baseline history --verify: the journal's chain holds");
        contains(out, "learn", "the TOFU learning is journaled");
        contains(out, "relearn", "the relearning is journaled");

        /* ---- 5. early boot changes (secure boot off): fails, relearns nothing ---- */
        size_t relearns = count_events("relearnEvent");
        reboot(KERNEL_NEW, PCR7_EVIL);
        rep = wait_event("earlyBootReportEvent", boot1 + 3, &ev, 20);
        ok(rep && json_is_false(json_object_get(rep, "policyEvaluationPassed")),
           "PCR 7 changed: earlyBootReportEvent fails");
        json_decref(ev);
        rep = wait_event("lateBootReportEvent", boot1 + 3, &ev, 5);
        ok(rep && json_is_true(json_object_get(rep, "policyEvaluationPassed")),
           "late boot (the known kernel) passes");
        json_decref(ev);
        is_int((long long)count_events("relearnEvent"), (long long)relearns,
               "an early-boot failure relearns nothing");

        /* ---- 6. a broker outage loses nothing ---- */
        ok(tap_wait_file_contains(seen_path, "earlyBootReportEvent passed=false", 10000),
           "the responder has everything so far");
        tap_stop(&mosq_pid);
        reboot(KERNEL_NEW, NULL);
        rep = wait_event("lateBootReportEvent", boot1 + 4, &ev, 20);
        ok(rep != NULL, "broker down: the verifier still evaluates the reboot (file sink)");
        _cleanup_free_ char *outage_id =
            strdup(json_string_value(json_object_get(ev, "eventId")) ?: "?");
        json_decref(ev);
        ok(tap_wait_file_contains(S->verifier.log, "sink=mqtt kind=mqtt: delivery failed at seq",
                                  5000),
           "the MQTT outage is logged once, naming the sink");
        sleep_ms(500);
        ok(!tap_wait_file_contains(seen_path, outage_id, 100),
           "nothing reaches the responder while the broker is down");
        mosquitto_start();
        ok(tap_wait_file_contains(seen_path, outage_id, 40000),
           "the broker is back: the events held in the outbox arrive");

        /* ---- 7. runtime: a file outside the policy runs ---- */
        _cleanup_free_ char *bad = tap_strf("%s/bad-script.sh", dir);
        tap_write_file(bad, "#!/bin/sh\necho -e \"Hello Evil!\"\n");
        _cleanup_free_ char *bad_arg = tap_strf("/root/bad-script.sh=%s", bad);
        free(out);
        out = NULL;
        if (vg_stack_ima_sim(S, &out, "exec-as", bad_arg, (char *)NULL) != 0)
                tap_bail("ima-sim exec-as: %s", out ? out : "");
        rep = wait_event("runtimeReportEvent", -1, &ev, 20);
        ok(rep && json_is_false(json_object_get(rep, "policyEvaluationPassed")),
           "IMA: a runtimeReportEvent that fails");
        json_t *f0 = json_array_get(json_object_get(rep, "failures"), 0);
        is_str(json_string_value(json_object_get(f0, "type")), "fnf", "failure type fnf");
        is_str(json_string_value(json_object_get(f0, "file")), "/root/bad-script.sh",
               "naming the file");
        ok(json_string_length(json_object_get(f0, "found")) >= 40, "with the digest found");
        ok(json_integer_value(json_object_get(json_object_get(rep, "summary"), "fnf")) >= 1,
           "summary counts fnf");
        _cleanup_free_ char *rt_id =
            strdup(json_string_value(json_object_get(ev, "eventId")) ?: "?");
        json_decref(ev);
        ok(tap_wait_file_contains(seen_path, rt_id, 10000), "the responder received it");
        sleep_ms(1000);
        is_int((long long)count_events("runtimeReportEvent"), 1,
               "reported once while the agent stays failed and polled");

        /* Every event the verifier made reached the responder, once. */
        sleep_ms(500);
        json_t *all = read_events(), *x;
        size_t i, missing = 0, twice = 0;
        json_array_foreach (all, i, x) {
                const char *id = json_string_value(json_object_get(x, "eventId"));
                size_t n = count_in(seen_path, id);
                missing += n == 0;
                twice += n > 1;
        }
        is_int((long long)json_array_size(all), 12,
               "12 events in the verifier's file: early and late boot for 5 boots, 1 relearn, "
               "1 runtime");
        is_int((long long)missing, 0, "every event reached the responder");
        is_int((long long)twice, 0, "none was acted on twice");
        json_decref(all);

        cleanup();
        ok(!ns.made, "the namespace is removed by name");
        vg_stack_free(S);
        return tap_done();
}
