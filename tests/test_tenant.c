/* vigil tests: `vigil tenant` against a real deployment on loopback (CA, swtpm, vigil-registrar,
 * vigil-agent, and vigil-verifier once it runs): keylime_tenant's commands as an operator types
 * them, what the agent and the verifier receive, and the errors for each thing that can fail. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "encoding.h"
#include "ima.h"
#include "stack.h"
#include "tap.h"

/* Run `vigil tenant ARGS...` with the stack's tenant environment plus extra "NAME=value"
 * settings (NULL-terminated list, may be NULL), which win over the stack's. */
static int tenant_env(struct vg_stack *s, const char *const *extra, char **out, ...)
{
        const char *argv[64] = { getenv("VIGIL_CLI"), "tenant" };
        char *set[32];
        size_t n = 2, k = 0;
        va_list ap;
        int r;

        va_start(ap, out);
        for (const char *a = va_arg(ap, const char *); a && n < 63; a = va_arg(ap, const char *))
                argv[n++] = a;
        va_end(ap);
        argv[n] = NULL;
        set[k++] = tap_strf("VIGIL_CONF_DIR=%s/noconf", s->dir);
        set[k++] = tap_strf("VIGIL_TENANT_REGISTRAR_PORT=%d", s->registrar.tls_port);
        set[k++] = tap_strf("VIGIL_TENANT_VERIFIER_PORT=%d", s->verifier.port);
        set[k++] = tap_strf("VIGIL_TENANT_TLS_DIR=%s", s->ca_dir);
        set[k++] = tap_strf("VIGIL_TENANT_TPM_CERT_STORE=%s", vg_swtpm_ek_ca_dir(s->tpm));
        set[k++] = tap_strf("VIGIL_TENANT_RETRY_INTERVAL=0.2");
        for (size_t i = 0; extra && extra[i] && k < 31; i++)
                set[k++] = tap_strf("%s", extra[i]);
        for (size_t i = 0; i < k; i++) {
                char *eq = strchr(set[i], '=');
                *eq = '\0';
                setenv(set[i], eq + 1, 1);
        }
        r = tap_run((char *const *)argv, out);
        for (size_t i = 0; i < k; i++) {
                unsetenv(set[i]);
                free(set[i]);
        }
        return r;
}

#define T(s, out, ...) tenant_env((s), NULL, (out), __VA_ARGS__, (char *)NULL)

static char *read_or_empty(const char *path)
{
        char *t = tap_read_file(path, NULL);

        return t ? t : strdup("");
}

/* ---- what works without a verifier ------------------------------------------------------- */

static void test_usage(struct vg_stack *s)
{
        char *out = NULL;

        is_int(T(s, &out, "--help"), 0, "--help exits 0");
        contains(out, "Usage: vigil tenant", "--help prints the usage");
        static const char *const cmds[] = { "add",
                                            "delete",
                                            "update",
                                            "reactivate",
                                            "regstatus",
                                            "cvstatus",
                                            "status",
                                            "reglist",
                                            "cvlist",
                                            "addruntimepolicy",
                                            "showruntimepolicy",
                                            "deleteruntimepolicy",
                                            "listruntimepolicy" };
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
                contains(out, cmds[i], "--help names the command %s", cmds[i]);
        free(out);

        is_int(T(s, &out, "-c", "frobnicate"), 2, "an unknown command is a usage error (2)");
        contains(out, "invalid command 'frobnicate'", "... naming the command");
        free(out);
        is_int(T(s, &out, "-c", "add", "--exclude", "x"), 2, "--exclude without --allowlist: 2");
        contains(out, "--exclude cannot be used without an --allowlist", "... with Keylime's text");
        free(out);
        is_int(T(s, &out, "-c", "add", "--verify"), 2, "--verify without a payload: 2");
        contains(out, "--verify only works when a payload is given", "... saying why");
        free(out);
        is_int(T(s, &out, "-c", "add", "-f", "a", "--cert", "b"), 2, "-f and --cert: 2");
        free(out);
        is_int(T(s, &out, "-c", "regstatus", "-u", "../etc"), 2, "a UUID with '/': 2");
        contains(out, "-u: expected an agent ID", "... naming -u");
        free(out);
        is_int(T(s, &out, "-c", "add", "--push-model"), 2, "--push-model is refused: 2");
        free(out);
        is_int(T(s, &out, "-c", "addruntimepolicy", "--runtime-policy-name", "p"), 2,
               "addruntimepolicy without a policy: 2");
        free(out);
        is_int(T(s, &out, "-c", "regstatus", "-tp", "99999"), 2, "-tp out of range: 2");
        free(out);
}

static void test_registrar(struct vg_stack *s)
{
        char *out = NULL;

        is_int(T(s, &out, "-c", "reglist"), 0, "reglist exits 0");
        contains(out, s->uuid, "reglist lists the registered agent");
        contains(out, "\"uuids\"", "reglist prints the registrar's results");
        free(out);

        is_int(T(s, &out, "-c", "regstatus", "-u", s->uuid), 0, "regstatus exits 0");
        contains(out, "\"aik_tpm\"", "regstatus prints the AK");
        contains(out, "\"ek_tpm\"", "regstatus prints the EK");
        contains(out, "\"mtls_cert\"", "regstatus prints the agent's mTLS certificate");
        contains(out, "\"operational_state\": \"Registered\"",
                 "regstatus names the state Registered, as keylime_tenant");
        free(out);

        is_int(T(s, &out, "-c", "regstatus", "-u", "00000000-0000-4000-8000-000000000000"), 1,
               "regstatus of an unknown agent exits 1");
        contains(out, "Agent 00000000-0000-4000-8000-000000000000 does not exist on Registrar",
                 "... saying so");
        contains(out, "404", "... with the registrar's status");
        free(out);

        /* The registrar's admin port wants this CA's client certificate. */
        char *foreign = tap_strf("%s/foreign-ca", s->dir);
        if (tap_runl(NULL, getenv("VIGIL_CLI"), "ca", "init", foreign, (char *)NULL) != 0)
                tap_bail("vigil ca init %s failed", foreign);
        const char *fenv[] = { tap_strf("VIGIL_TENANT_TLS_DIR=%s", foreign), NULL };
        is_int(tenant_env(s, fenv, &out, "-c", "reglist", (char *)NULL), 1,
               "reglist with another CA's certificates fails");
        contains(out, "GET https://127.0.0.1:", "... naming the request that failed");
        free(out);
        free((char *)fenv[0]);
        free(foreign);

        const char *penv[] = { "VIGIL_TENANT_REGISTRAR_PORT=1", NULL };
        is_int(tenant_env(s, penv, &out, "-c", "reglist", (char *)NULL), 1,
               "reglist with nothing listening fails");
        contains(out, "127.0.0.1:1", "... naming the address");
        free(out);
}

static void test_ek_store(struct vg_stack *s)
{
        char *out = NULL;
        char *empty = tap_strf("%s/empty-store", s->dir),
             *other = tap_strf("%s/other-store", s->dir);

        mkdir(empty, 0700);
        mkdir(other, 0700);
        /* A store holding a real CA that did not issue the swtpm's EK certificate. */
        char *ca_from = tap_strf("%s/cacert.crt", s->ca_dir), *ca_to = tap_strf("%s/ca.pem", other);
        tap_copy_file(ca_from, ca_to);
        free(ca_from);
        free(ca_to);

        const char *e1[] = { tap_strf("VIGIL_TENANT_TPM_CERT_STORE=%s", empty), NULL };
        is_int(tenant_env(s, e1, &out, "-c", "add", "-u", s->uuid, (char *)NULL), 1,
               "add with an empty tpm_cert_store fails");
        contains(out, "invalid EK certificate for Agent", "... with a clear message");
        contains(out, empty, "... naming the store");
        free(out);

        const char *e2[] = { tap_strf("VIGIL_TENANT_TPM_CERT_STORE=%s", other), NULL };
        char *payload = tap_strf("%s/payload.txt", s->dir);
        tap_write_file(payload, "secret\n");
        is_int(tenant_env(s, e2, &out, "-c", "add", "-u", s->uuid, "-f", payload, (char *)NULL), 1,
               "add with a foreign tpm_cert_store fails");
        contains(out, "invalid EK certificate", "... the EK certificate is refused");
        contains(out, "unable to get local issuer certificate", "... because it does not chain");
        ok(!strstr(out, "Quote from"), "... before the agent is asked for a quote");
        free(out);

        const char *e3[] = { tap_strf("VIGIL_TENANT_TPM_CERT_STORE=%s/nonexistent", s->dir), NULL };
        is_int(tenant_env(s, e3, &out, "-c", "add", "-u", s->uuid, (char *)NULL), 1,
               "add with a missing tpm_cert_store fails");
        contains(out, "tpm_cert_store", "... naming the option");
        free(out);
        free((char *)e1[0]);
        free((char *)e2[0]);
        free((char *)e3[0]);
        free(payload);
        free(empty);
        free(other);
}

/* Without a verifier, add stops after the agent part: the identity quote is checked and U
 * with the payload reaches the agent, then the verifier cannot be reached. */
static void test_add_without_verifier(struct vg_stack *s)
{
        char *out = NULL, *log;
        char *payload = tap_strf("%s/payload1", s->dir);

        tap_write_file(payload, "the payload\n");
        is_int(T(s, &out, "-c", "add", "-t", "127.0.0.1", "-u", s->uuid, "-f", payload), 1,
               "add without a verifier exits 1");
        contains(out, "EK certificate of Agent", "the EK certificate is verified");
        contains(out, "Quote from Agent " VG_STACK_UUID, "the identity quote is validated");
        contains(out, "validated", "... and says so");
        contains(out, "encrypted U and payload delivered", "U and the payload are delivered");
        contains(out, "cannot connect to Verifier", "the verifier failure is named");
        free(out);
        ok(vg_stack_wait_log(&s->agent, "U received", 5), "the agent logs that U arrived");
        log = read_or_empty(s->agent.log);
        ok(!strstr(log, "U refused"), "the agent accepted U and the auth_tag");
        free(log);

        /* Identity-quote checks a configuration can tighten. */
        const char *h[] = { "VIGIL_TENANT_ACCEPT_TPM_HASH_ALGS=sha512", NULL };
        is_int(tenant_env(s, h, &out, "-c", "add", "-u", s->uuid, (char *)NULL), 1,
               "a quote hash outside accept_tpm_hash_algs fails");
        contains(out, "unaccepted hash algorithm: sha256", "... naming the algorithm");
        free(out);
        const char *g[] = { "VIGIL_TENANT_ACCEPT_TPM_SIGNING_ALGS=ecdsa", NULL };
        is_int(tenant_env(s, g, &out, "-c", "add", "-u", s->uuid, (char *)NULL), 1,
               "a quote signature outside accept_tpm_signing_algs fails");
        contains(out, "unaccepted signing algorithm: rsassa", "... naming the scheme");
        free(out);

        const char *tp[] = { NULL };
        is_int(tenant_env(s, tp, &out, "-c", "add", "-u", s->uuid, "--tpm_policy",
                          "{\"10\": \"00\"}", (char *)NULL),
               1, "a tpm_policy naming PCR 10 is refused");
        contains(out, "--tpm_policy", "... naming the option");
        free(out);

        is_int(T(s, &out, "-c", "add", "-u", s->uuid, "--allowlist", "/nonexistent/allow"), 1,
               "a missing allowlist fails");
        contains(out, "/nonexistent/allow", "... naming the file");
        free(out);
        char *bad = tap_strf("%s/bad-allowlist", s->dir);
        tap_write_file(bad, "# comment\n"
                            "0123456789abcdef0123456789abcdef01234567 /usr/bin/ok\n"
                            "xyz /usr/bin/bad\n");
        is_int(T(s, &out, "-c", "add", "-u", s->uuid, "--allowlist", bad), 1,
               "an allowlist with a bad digest fails");
        char *where = tap_strf("%s:3:", bad);
        contains(out, where, "... naming FILE:LINE");
        free(where);
        free(out);
        free(bad);
        free(payload);
}

/* ---- with the verifier ------------------------------------------------------------------- */

static bool verifier_runs(void)
{
        char *out = NULL;
        int r = tap_runl(&out, getenv("VIGIL_VERIFIER"), "--version", (char *)NULL);

        free(out);
        return r == 0;
}

static bool wait_cvstatus(struct vg_stack *s, const char *needle, double secs)
{
        for (int i = 0; i < (int)(secs * 5); i++) {
                char *out = NULL;
                bool found =
                    T(s, &out, "-c", "cvstatus", "-u", s->uuid) == 0 && strstr(out, needle);

                free(out);
                if (found)
                        return true;
                usleep(200000);
        }
        return false;
}

/* The policy the verifier stored is the allowlist converted: parse it with the verifier's
 * own policy reader and count what it holds. */
static void check_policy(const char *out, size_t digests, size_t excludes)
{
        const char *brace = strchr(out, '{');
        json_t *j = brace ? json_loads(brace, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
        const char *b64 =
            json_string_value(json_object_get(json_object_get(j, "results"), "runtime_policy"));
        uint8_t *raw = NULL;
        size_t len = 0;
        struct vg_ima_policy *p = NULL;
        struct vg_error err = { 0 };

        /* Keylime's GET returns the policy text as stored; accept base64 of it too. */
        if (b64 && b64[0] == '{') {
                raw = (uint8_t *)strdup(b64);
                len = strlen(b64);
        } else if (b64) {
                vg_b64_decode(b64, strlen(b64), VG_B64_STD, &raw, &len);
        }
        ok(raw != NULL, "showruntimepolicy prints the stored runtime policy");
        ok(raw && vg_ima_policy_parse((const char *)raw, len, &p, &err) == 0,
           "the converted allowlist is a runtime policy JSON v1 the verifier's reader accepts "
           "(%s)",
           vg_error_str(&err));
        is_int(p ? vg_ima_policy_digest_count(p) : 0, digests, "... with the allowlist's digests");
        is_int(p ? vg_ima_policy_exclude_count(p) : 0, excludes, "... and the exclude list");
        if (p)
                vg_ima_policy_unref(p);
        free(raw);
        json_decref(j);
}

static void test_with_verifier(void)
{
        struct vg_stack *s;
        char *out = NULL, *text;
        const char *slow[] = { "VIGIL_TENANT_MAX_RETRIES=60", NULL };

        vg_stack_start(NULL, &s);
        char *payload = tap_strf("%s/payload1.zip", s->dir);
        char *allow = tap_strf("%s/allowlist.txt", s->dir);
        char *excl = tap_strf("%s/excludelist", s->dir);
        /* payload1 as the guide's operator would send it: a zip with autorun.sh. */
        char *secret = tap_strf("%s/secret.txt", s->dir),
             *autorun = tap_strf("%s/autorun.sh", s->dir);
        tap_write_file(secret, "delivered only after the first good quote\n");
        tap_write_file(autorun, "#!/bin/sh\ncp secret.txt ran.txt\n");
        if (tap_runl(NULL, "zip", "-q", "-j", payload, secret, autorun, (char *)NULL) != 0)
                tap_bail("zip failed");
        free(secret);
        free(autorun);
        tap_write_file(allow, "");
        tap_write_file(excl, "/tmp/.*\n.*\n");

        /* The guide's step 9. */
        is_int(tenant_env(s, slow, &out, "-c", "add", "-t", "127.0.0.1", "-v", "127.0.0.1", "-u",
                          s->uuid, "--allowlist", allow, "--exclude", excl, "-f", payload,
                          "--verify", (char *)NULL),
               0, "add --allowlist --exclude -f --verify exits 0");
        contains(out, "Successful key derivation", "--verify confirms the derived key");
        if (!strstr(out, "Successful key derivation")) {
                tap_diag("%s", out);
                vg_stack_daemon_show_log(&s->verifier);
        }
        free(out);
        char *ran = tap_strf("%s/secure/unzipped/ran.txt", s->agent.dir);
        text = read_or_empty(ran);
        for (int i = 0; i < 50 && !*text; i++) {
                usleep(100000);
                free(text);
                text = read_or_empty(ran);
        }
        is_str(text, "delivered only after the first good quote\n",
               "the agent decrypted and unzipped the payload and ran its autorun.sh");
        free(ran);
        free(text);

        ok(wait_cvstatus(s, "\"operational_state\": \"Get Quote\"", 10),
           "cvstatus shows the agent in state Get Quote");
        is_int(T(s, &out, "-c", "cvlist"), 0, "cvlist exits 0");
        contains(out, s->uuid, "cvlist lists the agent");
        free(out);
        is_int(T(s, &out, "-c", "status", "-u", s->uuid), 0, "status exits 0");
        contains(out, "Registered", "status shows the registrar's view");
        contains(out, "Get Quote", "... and the verifier's");
        free(out);

        is_int(T(s, &out, "-c", "add", "-u", s->uuid), 1, "adding the agent twice fails");
        contains(out, "Run \"delete\" or \"update\" first", "... with keylime_tenant's advice");
        free(out);

        is_int(T(s, &out, "-c", "reactivate", "-u", s->uuid), 0, "reactivate exits 0");
        contains(out, "re-activated", "... and says so");
        free(out);

        /* Named runtime policies. */
        char *allow2 = tap_strf("%s/allowlist2.txt", s->dir);
        tap_write_file(allow2, "# generated\n"
                               "aa1f9ee82e9fc2b2f8ab2b5fa6cba3e5f9c3d8b2a4e6c1d0f7e8a9b0c1d2e3f4 "
                               "/usr/bin/bash\n"
                               "AB1F9EE82E9FC2B2F8AB2B5FA6CBA3E5F9C3D8B2A4E6C1D0F7E8A9B0C1D2E3F4 "
                               "/usr/bin/with space\n");
        is_int(T(s, &out, "-c", "addruntimepolicy", "--runtime-policy-name", "pol1", "--allowlist",
                 allow2, "--exclude", excl),
               0, "addruntimepolicy exits 0");
        free(out);
        is_int(T(s, &out, "-c", "listruntimepolicy"), 0, "listruntimepolicy exits 0");
        contains(out, "pol1", "... and lists the policy");
        free(out);
        is_int(T(s, &out, "-c", "showruntimepolicy", "--runtime-policy-name", "pol1"), 0,
               "showruntimepolicy exits 0");
        contains(out, "runtime_policy", "... and prints it");
        check_policy(out, 2, 2);
        free(out);
        is_int(T(s, &out, "-c", "deleteruntimepolicy", "--runtime-policy-name", "pol1"), 0,
               "deleteruntimepolicy exits 0");
        free(out);
        is_int(T(s, &out, "-c", "showruntimepolicy", "--runtime-policy-name", "pol1"), 1,
               "a deleted policy cannot be shown");
        contains(out, "404", "... the verifier says 404");
        free(out);

        is_int(tenant_env(s, slow, &out, "-c", "update", "-u", s->uuid, "-f", payload, "--verify",
                          (char *)NULL),
               0, "update (delete + add) exits 0");
        contains(out, "Successful key derivation", "... with a new key confirmed");
        free(out);

        is_int(T(s, &out, "-c", "delete", "-u", s->uuid), 0, "delete exits 0");
        contains(out, "deleted from the CV", "... and says so");
        free(out);
        is_int(T(s, &out, "-c", "cvstatus", "-u", s->uuid), 1, "cvstatus after delete exits 1");
        contains(out, "does not exist on Verifier", "... saying the agent is gone");
        free(out);
        is_int(T(s, &out, "-c", "regstatus", "-u", s->uuid), 0,
               "delete leaves the registration, as keylime_tenant");
        free(out);

        /* Keylime's certificate package. */
        char *ca = tap_strf("%s/tenant-ca", s->dir);
        if (tap_runl(NULL, getenv("VIGIL_CLI"), "ca", "init", ca, (char *)NULL) != 0)
                tap_bail("vigil ca init failed");
        is_int(tenant_env(s, slow, &out, "-c", "add", "-u", s->uuid, "--cert", ca, "--verify",
                          (char *)NULL),
               0, "add --cert --verify exits 0");
        if (!strstr(out, "Successful key derivation"))
                tap_diag("%s", out);
        free(out);
        char *rev = tap_strf("%s/secure/unzipped/RevocationNotifier-cert.crt", s->agent.dir);
        for (int i = 0; i < 50 && access(rev, F_OK) != 0; i++)
                usleep(100000);
        ok(access(rev, F_OK) == 0, "the certificate package reached the agent, with the "
                                   "revocation certificate");
        char *issued = tap_strf("%s/%s-cert.crt", ca, s->uuid);
        ok(access(issued, F_OK) == 0, "the agent's certificate was issued in the CA directory");
        free(issued);
        free(rev);
        free(ca);
        free(payload);
        free(allow);
        free(allow2);
        free(excl);
        vg_stack_free(s);
}

int main(void)
{
        struct vg_stack *s;
        struct vg_stack_opts o = { .no_verifier = true };

        vg_stack_start(&o, &s);
        test_usage(s);
        test_registrar(s);
        test_ek_store(s);
        test_add_without_verifier(s);
        vg_stack_free(s);

        if (verifier_runs())
                test_with_verifier();
        else
                tap_skip("vigil-verifier does not run yet (its --version fails)",
                         "add/--verify, cvstatus, cvlist, status, reactivate, runtime policies, "
                         "update, delete and --cert against the verifier");
        return tap_done();
}
