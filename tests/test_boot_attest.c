/* vigil tests: measured-boot attestation end to end. A real UEFI event log replayed into a fresh
 * swtpm (vigil-evlog-sim), served by the agent, enrolled with `vigil tenant --mb-policy` and a
 * refstate from `vigil policy create measured-boot`; an unlogged extend to PCR 4 and a tampered
 * log fail, naming the PCR and the event; the /mbpolicies CRUD through the tenant and curl. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "eventlog.h"
#include "stack.h"
#include "swtpm.h"
#include "tap.h"

#define LOG_NAME "eventlog/keylime-rhel95-secureboot.bin"

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
        struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
        nanosleep(&ts, NULL);
}

static int evlog_sim(struct vg_stack *s, char **out, const char *arg0, ...)
    __attribute__((sentinel));
static int evlog_sim(struct vg_stack *s, char **out, const char *arg0, ...)
{
        const char *argv[16] = { getenv("VIGIL_EVLOG_SIM"), "--tcti", vg_swtpm_tcti(s->tpm), arg0 };
        size_t n = 4;
        va_list ap;

        if (!argv[0])
                tap_bail("VIGIL_EVLOG_SIM is not set (run the tests through meson)");
        va_start(ap, arg0);
        while (n < 15 && (argv[n] = va_arg(ap, const char *)))
                n++;
        va_end(ap);
        argv[n] = NULL;
        return tap_run((char *const *)argv, out);
}

/* Binary copy, written in place (the agent keeps its log file open). */
static void copy_binary(const char *from, const char *to)
{
        size_t len = 0;
        _cleanup_free_ char *data = tap_read_file(from, &len);
        FILE *f = fopen(to, "r+b");

        if (!data || !f || fwrite(data, 1, len, f) != len || ftruncate(fileno(f), (off_t)len) < 0)
                tap_bail("cannot copy %s to %s", from, to);
        fclose(f);
}

struct cv {
        long long count;
        char status[32];
        long long has_mb;
};

static struct cv cv_status(struct vg_stack *s)
{
        _cleanup_free_ char *out = NULL;
        struct cv cv = { .count = -1, .has_mb = -1 };
        const char *brace;
        json_t *j, *res, *v;

        vg_stack_tenant(s, &out, "-c", "cvstatus", "-u", s->uuid, NULL);
        brace = out ? strchr(out, '{') : NULL;
        j = brace ? json_loads(brace, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
        res = json_object_get(j, s->uuid);
        if (!res)
                res = json_object_get(json_object_get(j, "results"), s->uuid);
        if (!res)
                res = j;
        if ((v = json_object_get(res, "attestation_count")))
                cv.count = json_integer_value(v);
        if ((v = json_object_get(res, "attestation_status")))
                snprintf(cv.status, sizeof(cv.status), "%s", json_string_value(v));
        if ((v = json_object_get(res, "has_mb_refstate")))
                cv.has_mb = json_integer_value(v);
        json_decref(j);
        return cv;
}

static bool wait_count(struct vg_stack *s, long long want, double secs)
{
        double end = now() + secs;
        struct cv cv;

        do {
                cv = cv_status(s);
                if (cv.count >= want && strcmp(cv.status, "PASS") == 0)
                        return true;
                if (strcmp(cv.status, "FAIL") == 0)
                        break;
                sleep_s(0.1);
        } while (now() < end);
        tap_diag("attestation_count %lld (wanted %lld), status %s", cv.count, want, cv.status);
        return false;
}

static bool wait_status(struct vg_stack *s, const char *status, double secs)
{
        double end = now() + secs;

        do {
                if (strcmp(cv_status(s).status, status) == 0)
                        return true;
                sleep_s(0.1);
        } while (now() < end);
        return false;
}

static size_t count_in_log(const struct vg_stack_daemon *d, const char *needle)
{
        _cleanup_free_ char *text = tap_read_file(d->log, NULL);
        size_t n = 0;

        for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* The line of the verifier's log with needle (malloc'd), or NULL. */
static char *log_line(const struct vg_stack_daemon *d, const char *needle)
{
        _cleanup_free_ char *text = tap_read_file(d->log, NULL);
        const char *p = text ? strstr(text, needle) : NULL, *b;

        if (!p)
                return NULL;
        for (b = p; b > text && b[-1] != '\n'; b--)
                ;
        return strndup(b, strcspn(b, "\n"));
}

/* The last EV_EFI_BOOT_SERVICES_APPLICATION in PCR 4 (the kernel, on this log). */
static long kernel_event(const char *path)
{
        struct vg_evlog *log = NULL;
        struct vg_error err = { 0 };
        long idx = -1;

        if (vg_evlog_load(path, &log, &err) < 0)
                tap_bail("%s", vg_error_str(&err));
        for (size_t i = 0; i < log->n_events; i++)
                if (log->events[i].pcr == 4 &&
                    log->events[i].type == VG_EV_EFI_BOOT_SERVICES_APPLICATION)
                        idx = (long)i;
        vg_evlog_free(log);
        return idx;
}

static struct vg_stack *boot_stack(const char *log, const char *served, const char *refstate)
{
        struct vg_stack *s;
        _cleanup_free_ char *out = NULL;

        vg_stack_start(NULL, &s);
        if (evlog_sim(s, &out, "replay", log, NULL) != 0)
                tap_bail("vigil-evlog-sim replay failed: %s", out ? out : "");
        tap_diag("%s", out);
        copy_binary(served, s->mb_path);
        if (refstate && vg_stack_vigil(s, NULL, "policy", "create", "measured-boot", "--eventlog",
                                       log, "-o", refstate, NULL) != 0)
                tap_bail("vigil policy create measured-boot failed");
        return s;
}

static int enrol(struct vg_stack *s, const char *refstate, char **out)
{
        return vg_stack_tenant(s, out, "-c", "add", "-t", "127.0.0.1", "-v", "127.0.0.1", "-u",
                               s->uuid, "--mb-policy", refstate, NULL);
}

/* curl against the verifier with the stack's client certificate: "<status> <body>". */
static char *verifier_curl(struct vg_stack *s, const char *method, const char *path,
                           const char *body)
{
        _cleanup_free_ char *url = tap_strf("https://127.0.0.1:%d%s", s->verifier.port, path);
        _cleanup_free_ char *cacert = tap_strf("%s/cacert.crt", s->ca_dir);
        _cleanup_free_ char *cert = tap_strf("%s/client-cert.crt", s->ca_dir);
        _cleanup_free_ char *key = tap_strf("%s/client-private.pem", s->ca_dir);
        char *out = NULL;

        tap_runl(&out, "curl", "-s", "-w", " %{http_code}", "--cacert", cacert, "--cert", cert,
                 "--key", key, "-X", method, "-H", "Content-Type: application/json", "--data",
                 body ? body : "", url, (char *)NULL);
        return out;
}

static void test_pass_then_pcr4(const char *log, struct vg_stack **keep, char **refstate_out)
{
        _cleanup_free_ char *out = NULL, *line = NULL;
        struct vg_stack *s;
        char *refstate;

        s = boot_stack(log, log, NULL);
        refstate = tap_strf("%s/refstate.json", s->dir);
        is_int(vg_stack_vigil(s, NULL, "policy", "create", "measured-boot", "--eventlog", log, "-o",
                              refstate, NULL),
               0, "vigil policy create measured-boot makes a refstate from the log");
        is_int(enrol(s, refstate, &out), 0, "vigil tenant -c add --mb-policy enrols the agent");
        if (out && strstr(out, "rror"))
                tap_diag("%s", out);
        ok(wait_count(s, 3, 20), "the verifier attests the measured boot (PASS, 3 attestations)");
        struct cv cv = cv_status(s);
        is_int(cv.has_mb, 1, "cvstatus: has_mb_refstate 1");
        ok(wait_count(s, cv.count + 3, 20), "the attestation count grows (%lld -> more)", cv.count);
        is_int(count_in_log(&s->verifier, "UEFI event log of agent"), 1,
               "the log is parsed once, not on every quote");

        /* (a) an extend the log does not show */
        free(out);
        out = NULL;
        is_int(evlog_sim(s, &out, "extend", "4", "an unlogged boot application", NULL), 0,
               "extra extend into PCR 4");
        ok(wait_status(s, "FAIL", 20), "the agent fails (attestation_status FAIL)");
        ok(vg_stack_wait_log(&s->verifier, "measured_boot.invalid_pcr", 5),
           "event measured_boot.invalid_pcr is logged");
        line = log_line(&s->verifier, "does not match the event log");
        contains(line, "PCR 4 (sha256) does not match the event log",
                 "the failure names PCR 4 and the bank");
        contains(line, "the last is event", "the failure names the last event of PCR 4");
        ok(line && !strstr(line, "PCR 0 ") && !strstr(line, "PCR 7 "), "only PCR 4 is reported");
        /* Still polled (graded failure policy): quotes keep arriving. */
        size_t before = count_in_log(&s->verifier, "requesting quote");
        sleep_s(1.0);
        ok(count_in_log(&s->verifier, "requesting quote") > before,
           "a failed agent is still polled");
        *keep = s;
        *refstate_out = refstate;
}

static void test_tampered_log(const char *log)
{
        _cleanup_free_ char *out = NULL, *tampered = NULL, *refstate = NULL, *line = NULL;
        _cleanup_free_ char *ev = NULL, *want = NULL;
        struct vg_stack *s;
        long kev = kernel_event(log);

        ok(kev > 0, "the log has a PCR 4 boot application (event %ld)", kev);
        vg_stack_start(NULL, &s);
        tampered = tap_strf("%s/tampered.bin", s->dir);
        refstate = tap_strf("%s/refstate.json", s->dir);
        ev = tap_strf("%ld", kev);
        is_int(tap_runl(&out, getenv("VIGIL_EVLOG_SIM"), "tamper", log, tampered, ev, (char *)NULL),
               0, "vigil-evlog-sim tamper flips event %ld's digest", kev);
        free(out);
        out = NULL;
        if (evlog_sim(s, &out, "replay", log, NULL) != 0)
                tap_bail("vigil-evlog-sim replay failed: %s", out ? out : "");
        copy_binary(tampered, s->mb_path); /* the PCRs hold the original */
        is_int(vg_stack_vigil(s, NULL, "policy", "create", "measured-boot", "--eventlog", log, "-o",
                              refstate, NULL),
               0, "refstate from the original log");
        free(out);
        out = NULL;
        is_int(enrol(s, refstate, &out), 0, "enrolled with the tampered log served");
        ok(wait_status(s, "FAIL", 20), "the agent serving a modified log fails");
        ok(vg_stack_wait_log(&s->verifier, "does not match the event log", 5),
           "replay mismatch reported");
        line = log_line(&s->verifier, "does not match the event log");
        contains(line, "PCR 4 (sha256)", "the mismatch names PCR 4");
        free(line);
        want = tap_strf("event %ld", kev);
        ok(vg_stack_wait_log(&s->verifier, "measured_boot.policy_violation", 5),
           "policy violation reported");
        line = log_line(&s->verifier, "measured_boot.policy_violation");
        contains(line, want, "the policy violation names the tampered event %ld", kev);
        contains(line, "kernel Authenticode digest", "... and what it measured");
        ok(cv_status(s).count <= 0, "no attestation passed");
        vg_stack_free(s);
}

static void test_crud(struct vg_stack *s, const char *refstate)
{
        _cleanup_free_ char *out = NULL, *bad = NULL, *body = NULL, *text = NULL;

        is_int(vg_stack_tenant(s, &out, "-c", "addmbpolicy", "--mb-policy-name", "golden",
                               "--mb-policy", refstate, NULL),
               0, "addmbpolicy golden");
        free(out);
        out = NULL;
        ok(vg_stack_tenant(s, &out, "-c", "addmbpolicy", "--mb-policy-name", "golden",
                           "--mb-policy", refstate, NULL) != 0,
           "addmbpolicy of an existing name fails");
        contains(out, "409", "... with 409");
        free(out);
        out = NULL;
        is_int(vg_stack_tenant(s, &out, "-c", "listmbpolicy", NULL), 0, "listmbpolicy");
        contains(out, "mbpolicy names", "list: Keylime's key");
        contains(out, "golden", "list: golden");
        contains(out, s->uuid, "list: the agent's inline refstate, named after it");
        free(out);
        out = NULL;
        is_int(vg_stack_tenant(s, &out, "-c", "showmbpolicy", "--mb-policy-name", "golden", NULL),
               0, "showmbpolicy golden");
        contains(out, "has_secureboot", "show: the refstate");
        free(out);
        out = NULL;
        is_int(vg_stack_tenant(s, &out, "-c", "updatembpolicy", "--mb-policy-name", "golden",
                               "--mb-policy", refstate, NULL),
               0, "updatembpolicy golden");
        free(out);
        out = NULL;
        ok(vg_stack_tenant(s, &out, "-c", "deletembpolicy", "--mb-policy-name", s->uuid, NULL) != 0,
           "deletembpolicy of a refstate in use fails");
        contains(out, "in use by agent", "... naming the agent");
        free(out);
        out = NULL;
        is_int(vg_stack_tenant(s, &out, "-c", "deletembpolicy", "--mb-policy-name", "golden", NULL),
               0, "deletembpolicy golden");
        free(out);
        out = NULL;
        vg_stack_tenant(s, &out, "-c", "listmbpolicy", NULL);
        ok(out && !strstr(out, "golden"), "golden is gone from the list");
        free(out);
        out = NULL;

        /* A bad refstate: the tenant refuses it, naming the JSON path... */
        text = tap_read_file(refstate, NULL);
        char *p = text ? strstr(text, "\"kernel_authcode_sha256\": \"0x") : NULL;
        if (!p)
                tap_bail("the refstate has no kernel_authcode_sha256");
        p += strlen("\"kernel_authcode_sha256\": \"0x");
        p[0] = 'A'; /* upper case: not a Keylime digest */
        bad = tap_strf("%s/bad.json", s->dir);
        tap_write_file(bad, text);
        ok(vg_stack_tenant(s, &out, "-c", "addmbpolicy", "--mb-policy-name", "bad", "--mb-policy",
                           bad, NULL) != 0,
           "the tenant refuses a bad refstate");
        contains(out, "kernels[0].kernel_authcode_sha256", "... naming its JSON path");
        free(out);
        /* ... and so does the verifier (400, the path in the message). */
        json_auto_t *j = json_pack("{s:s}", "mb_policy", text);
        body = json_dumps(j, JSON_COMPACT);
        out = verifier_curl(s, "POST", "/v2.3/mbpolicies/bad", body);
        contains(out, "kernels[0].kernel_authcode_sha256", "verifier: 400 names the JSON path");
        ok(out && strlen(out) > 4 && strcmp(out + strlen(out) - 4, " 400") == 0,
           "verifier: HTTP 400");
        free(out);
        out = verifier_curl(s, "GET", "/v2.5/mbpolicies/", NULL);
        contains(out, "\"mbpolicy names\"", "GET /mbpolicies lists names");
        free(out);
        out = verifier_curl(s, "DELETE", "/v2.5/mbpolicies/nosuch", NULL);
        contains(out, "404", "DELETE of a missing refstate: 404");
        free(out);
        out = NULL;
        /* Deleting the agent drops the refstate named after it (as Keylime does). */
        is_int(vg_stack_tenant(s, &out, "-c", "delete", "-u", s->uuid, NULL), 0, "delete agent");
        free(out);
        out = NULL;
        vg_stack_tenant(s, &out, "-c", "listmbpolicy", NULL);
        ok(out && !strstr(out, s->uuid), "the agent's refstate went with it");
}

int main(void)
{
        _cleanup_free_ char *log = tap_shared_data(LOG_NAME);
        struct vg_stack *s = NULL;
        char *refstate = NULL;

        if (access(log, R_OK) != 0) {
                printf("1..0 # SKIP %s not found\n", log);
                return 0;
        }
        test_pass_then_pcr4(log, &s, &refstate);
        test_crud(s, refstate);
        free(refstate);
        vg_stack_free(s);
        test_tampered_log(log);
        return tap_done();
}
