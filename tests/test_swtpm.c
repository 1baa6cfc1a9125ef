/* vigil tests: the software-TPM harness. tpm2-tools and openssl, as a user would run them,
 * must find a working TPM whose EK certificate chains to the harness's local CA. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "swtpm.h"
#include "tap.h"

static char *work; /* this run's scratch directory */

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Run a NULL-terminated argument list; *out (may be NULL) gets stdout and stderr. */
static int run(char **out, const char *arg0, ...)
{
        const char *argv[32] = { arg0 };
        va_list ap;
        int n = 1;

        va_start(ap, arg0);
        while (n < 31 && (argv[n] = va_arg(ap, const char *)))
                n++;
        va_end(ap);
        argv[n] = NULL;
        return tap_run((char *const *)argv, out);
}

static char *path(const char *name)
{
        char *p;

        if (asprintf(&p, "%s/%s", work, name) < 0)
                tap_bail("out of memory");
        return p;
}

static bool same_file(const char *a, const char *b)
{
        size_t na = 0, nb = 0;
        _cleanup_free_ char *x = tap_read_file(a, &na);
        _cleanup_free_ char *y = tap_read_file(b, &nb);

        return x && y && na == nb && memcmp(x, y, na) == 0;
}

/* A process that ended counts as gone even as a zombie nobody reaps (PID 1 in some
 * containers does not). */
static bool gone(pid_t pid)
{
        char p[64], buf[256] = "";
        FILE *f;

        snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
        f = fopen(p, "r");
        if (!f)
                return kill(pid, 0) < 0 && errno == ESRCH;
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = '\0';
        fclose(f);
        char *s = strrchr(buf, ')');
        return !s || s[2] == 'Z' || s[2] == 'X';
}

/* The public key (PEM) inside a DER certificate. */
static char *cert_pubkey(const char *der)
{
        char *out = NULL;

        if (run(&out, "openssl", "x509", "-inform", "der", "-in", der, "-noout", "-pubkey", NULL) !=
            0) {
                free(out);
                return NULL;
        }
        return out;
}

/* The EK a Keylime agent would create from the TCG default template (not the persistent
 * copy), as PEM; this is what it compares with the EK certificate. */
static char *agent_ek(const struct vg_swtpm *tpm, const char *alg)
{
        _cleanup_free_ char *ctx = path("ek.ctx"), *pem = path("ek-agent.pem");
        char *out = NULL;

        if (run(NULL, "tpm2_createek", "-T", vg_swtpm_tcti(tpm), "-G", alg, "-c", ctx, "-u", pem,
                "-f", "pem", NULL) != 0 ||
            run(NULL, "tpm2_flushcontext", "-T", vg_swtpm_tcti(tpm), "-t", NULL) != 0)
                return NULL;
        out = tap_read_file(pem, NULL);
        return out;
}

/* Read the EK certificate from its NV index and check it chains to the harness's CA. */
static void check_ek_cert(const struct vg_swtpm *tpm, const char *what)
{
        _cleanup_free_ char *der = path("nv-ek.der"), *pem = path("nv-ek.pem");
        _cleanup_free_ char *out = NULL, *issuer = NULL, *root = NULL;
        char index[16];

        snprintf(index, sizeof(index), "0x%08x", vg_swtpm_ek_nv_index(tpm));
        is_int(
            run(&out, "tpm2_nvread", "-T", vg_swtpm_tcti(tpm), "-C", "o", "-o", der, index, NULL),
            0, "%s: tpm2_nvread reads the EK certificate at %s", what, index);
        ok(same_file(der, vg_swtpm_ek_cert(tpm)),
           "%s: NV %s holds the certificate vg_swtpm_ek_cert() names", what, index);
        free(out);
        out = NULL;
        run(NULL, "openssl", "x509", "-inform", "der", "-in", der, "-out", pem, NULL);
        run(&out, "openssl", "verify", "-CAfile", vg_swtpm_ek_ca_file(tpm), pem, NULL);
        contains(out, ": OK", "%s: openssl verify accepts it with the harness's CA file", what);
        free(out);
        out = NULL;
        /* The directory form (a tpm_cert_store): its root as the only trust anchor and its
         * issuing certificate as the intermediate. */
        if (asprintf(&issuer, "%s/issuercert.pem", vg_swtpm_ek_ca_dir(tpm)) < 0 ||
            asprintf(&root, "%s/rootca-cert.pem", vg_swtpm_ek_ca_dir(tpm)) < 0)
                tap_bail("out of memory");
        run(&out, "openssl", "verify", "-CAfile", root, "-untrusted", issuer, pem, NULL);
        contains(out, ": OK", "%s: the CA directory holds the issuer and its root", what);
        free(out);
        out = NULL;
        ok(run(&out, "openssl", "verify", "-CApath", "/nonexistent", "-no-CAfile", pem, NULL) != 0,
           "%s: without that CA the certificate does not verify", what);
}

static void test_fresh_tpm(const char *cache)
{
        struct vg_swtpm_opts opts = { .cache_dir = cache };
        _cleanup_swtpm_ struct vg_swtpm *a = NULL, *b = NULL;
        _cleanup_free_ char *rnd = path("random.bin"), *persistent = path("persistent.pem");
        _cleanup_free_ char *out = NULL, *pub = NULL, *ek = NULL;
        struct vg_error err = { 0 };
        double t0, ms;
        size_t len = 0;

        t0 = now_ms();
        if (!is_int(vg_swtpm_start(&opts, &a, &err), 0,
                    "a TPM starts with an empty cache (golden state made on the way)"))
                tap_bail("cannot start swtpm: %s", vg_error_str(&err));
        tap_diag("golden state created and first TPM started in %.0f ms", now_ms() - t0);
        contains(vg_swtpm_tcti(a), "swtpm:path=", "TCTI is %s", vg_swtpm_tcti(a));
        free(out);
        out = tap_strf("%s.ctrl", vg_swtpm_socket(a));
        is_str(vg_swtpm_ctrl_socket(a), out,
               "the control socket is the command socket + .ctrl, as libtss2's swtpm TCTI wants");
        free(out);
        out = NULL;

        is_int(run(&out, "tpm2_getrandom", "-T", vg_swtpm_tcti(a), "-o", rnd, "16", NULL), 0,
               "tpm2_getrandom talks to it");
        free(tap_read_file(rnd, &len));
        is_int(len, 16, "and returns 16 bytes");
        free(out);
        out = NULL;
        is_int(run(&out, "tpm2_pcrread", "-T", vg_swtpm_tcti(a), "sha256:0", NULL), 0,
               "tpm2_pcrread sha256:0 works");
        contains(out, "0 : 0x0000000000000000000000000000000000000000000000000000000000000000",
                 "PCR 0 of a fresh TPM is zero");
        free(out);
        out = NULL;
        run(&out, "tpm2_getcap", "-T", vg_swtpm_tcti(a), "pcrs", NULL);
        contains(out, "sha1: [ ]", "only the sha256 bank is active by default");

        check_ek_cert(a, "RSA EK");
        pub = cert_pubkey(vg_swtpm_ek_cert(a));
        ek = agent_ek(a, "rsa");
        ok(pub && ek && strcmp(pub, ek) == 0,
           "the RSA EK certificate certifies the EK tpm2_createek derives");
        run(NULL, "tpm2_readpublic", "-T", vg_swtpm_tcti(a), "-c", "0x81010001", "-f", "pem", "-o",
            persistent, NULL);
        free(out);
        out = tap_read_file(persistent, NULL);
        ok(pub && out && strcmp(pub, out) == 0, "and the one persisted at 0x81010001");

        /* A second TPM from the same golden state, running at the same time. */
        t0 = now_ms();
        if (!is_int(vg_swtpm_start(&opts, &b, &err), 0, "a second TPM starts beside the first"))
                tap_diag("%s", vg_error_str(&err));
        ms = now_ms() - t0;
        tap_diag("second TPM (copied golden state) started in %.1f ms", ms);
        ok(ms < 1000, "a fresh TPM starts in under a second (%.1f ms)", ms);
        if (!b)
                return;
        ok(strcmp(vg_swtpm_socket(a), vg_swtpm_socket(b)) != 0, "on other sockets (%s, %s)",
           vg_swtpm_socket(a), vg_swtpm_socket(b));
        is_int(run(NULL, "tpm2_getrandom", "-T", vg_swtpm_tcti(a), "8", NULL), 0,
               "the first still answers");
        is_int(run(NULL, "tpm2_getrandom", "-T", vg_swtpm_tcti(b), "8", NULL), 0,
               "and so does the second");
        ok(same_file(vg_swtpm_ek_cert(a), vg_swtpm_ek_cert(b)),
           "both carry the golden state's EK certificate");
        is_int(run(NULL, "tpm2_nvdefine", "-T", vg_swtpm_tcti(a), "0x01500010", "-C", "o", "-s",
                   "8", NULL),
               0, "an NV index defined in the first TPM");
        ok(run(NULL, "tpm2_nvreadpublic", "-T", vg_swtpm_tcti(b), "0x01500010", NULL) != 0,
           "does not exist in the second: they share no state");
        ok(vg_swtpm_stop(b, &err) == 0 && vg_swtpm_pid(b) == 0, "the second stops");
        is_int(run(NULL, "tpm2_getrandom", "-T", vg_swtpm_tcti(a), "8", NULL), 0,
               "and the first keeps running");
}

static int open_fds(void)
{
        _cleanup_free_ char *out = NULL;
        char cmd[64];

        /* Our own descriptor table, listed from outside: a child's view would miss every
         * close-on-exec one. */
        snprintf(cmd, sizeof(cmd), "ls /proc/%d/fd | wc -l", (int)getpid());
        run(&out, "sh", "-c", cmd, NULL);
        return out ? atoi(out) : -1;
}

static void test_start_times(const char *cache)
{
        struct vg_swtpm_opts opts = { .cache_dir = cache };
        double start[5], stop[5], worst = 0, sum = 0;
        struct vg_error err = { 0 };
        int failed = 0, fds = open_fds();

        for (int i = 0; i < 5; i++) {
                struct vg_swtpm *t = NULL;
                double t0 = now_ms();

                if (vg_swtpm_start(&opts, &t, &err) < 0) {
                        tap_diag("start %d: %s", i, vg_error_str(&err));
                        failed++;
                        continue;
                }
                start[i] = now_ms() - t0;
                t0 = now_ms();
                vg_swtpm_free(t);
                stop[i] = now_ms() - t0;
                worst = start[i] > worst ? start[i] : worst;
                sum += start[i];
                tap_diag("fresh TPM %d: start %.1f ms, stop and remove %.1f ms", i, start[i],
                         stop[i]);
        }
        is_int(failed, 0, "five fresh TPMs in a row start");
        ok(worst < 1000, "each in under a second (mean %.1f ms, worst %.1f ms)", sum / 5, worst);
        is_int(open_fds(), fds, "and leave no file descriptor behind");
}

/* A test program that crashes or is killed by a timeout must not leave its TPM running. */
static void test_parent_death(const char *cache)
{
        int pipefd[2];
        pid_t kid, tpm_pid = 0;
        double t0;

        if (pipe(pipefd) < 0)
                tap_bail("pipe: %s", strerror(errno));
        kid = fork();
        if (kid == 0) {
                /* In our scratch directory: the killed child cannot remove its own. */
                struct vg_swtpm_opts opts = { .cache_dir = cache, .dir = path("orphan") };
                struct vg_swtpm *t = NULL;
                pid_t p = 0;

                close(pipefd[0]);
                if (vg_swtpm_start(&opts, &t, NULL) == 0)
                        p = vg_swtpm_pid(t);
                if (write(pipefd[1], &p, sizeof(p)) != sizeof(p))
                        _exit(1);
                pause();
                _exit(0);
        }
        close(pipefd[1]);
        if (read(pipefd[0], &tpm_pid, sizeof(tpm_pid)) != sizeof(tpm_pid))
                tpm_pid = 0;
        close(pipefd[0]);
        ok(tpm_pid > 0 && !gone(tpm_pid), "a child process starts a TPM (pid %d)", (int)tpm_pid);
        kill(kid, SIGKILL);
        waitpid(kid, NULL, 0);
        t0 = now_ms();
        while (tpm_pid > 0 && !gone(tpm_pid) && now_ms() - t0 < 5000)
                usleep(2000);
        ok(tpm_pid > 0 && gone(tpm_pid), "SIGKILL of that process takes its TPM along (%.0f ms)",
           now_ms() - t0);
        if (tpm_pid > 0)
                waitpid(tpm_pid, NULL, WNOHANG); /* ours to reap: we are the subreaper */
}

static void test_ecc_and_banks(const char *cache)
{
        struct vg_swtpm_opts ecc = { .cache_dir = cache, .ek = VG_SWTPM_EK_ECC_P256 };
        struct vg_swtpm_opts banks = { .cache_dir = cache,
                                       .banks = VG_SWTPM_BANK_SHA1 | VG_SWTPM_BANK_SHA256 };
        _cleanup_swtpm_ struct vg_swtpm *c = NULL, *d = NULL;
        _cleanup_free_ char *out = NULL, *pub = NULL, *ek = NULL;
        struct vg_error err = { 0 };
        double t0;

        if (!is_int(vg_swtpm_start(&ecc, &c, &err), 0, "a TPM for an ECC P-256 EK starts")) {
                tap_diag("%s", vg_error_str(&err));
                return;
        }
        is_int(vg_swtpm_ek_nv_index(c), 0x01c0000a, "its EK certificate is at NV 0x01c0000a");
        check_ek_cert(c, "ECC EK");
        run(&out, "openssl", "x509", "-inform", "der", "-in", vg_swtpm_ek_cert(c), "-noout",
            "-text", NULL);
        contains(out, "NIST CURVE: P-256", "the certificate is for a P-256 key");
        pub = cert_pubkey(vg_swtpm_ek_cert(c));
        ek = agent_ek(c, "ecc");
        ok(pub && ek && strcmp(pub, ek) == 0,
           "the ECC EK certificate certifies the EK tpm2_createek -G ecc derives");
        free(out);
        out = NULL;
        is_int(run(&out, "tpm2_readpublic", "-T", vg_swtpm_tcti(c), "-c", "0x81010002", NULL), 0,
               "the P-256 EK is persisted at 0x81010002");

        t0 = now_ms();
        if (!is_int(vg_swtpm_start(&banks, &d, &err), 0,
                    "a TPM with sha1 and sha256 banks starts")) {
                tap_diag("%s", vg_error_str(&err));
                return;
        }
        tap_diag("golden state for sha1+sha256 created and TPM started in %.0f ms", now_ms() - t0);
        free(out);
        out = NULL;
        run(&out, "tpm2_getcap", "-T", vg_swtpm_tcti(d), "pcrs", NULL);
        contains(out, "sha1: [ 0, 1, 2,", "its sha1 bank is active");
        contains(out, "sha256: [ 0, 1, 2,", "and its sha256 bank");
        free(out);
        out = NULL;
        run(&out, "tpm2_pcrread", "-T", vg_swtpm_tcti(d), "sha1:0", NULL);
        contains(out, "0 : 0x0000000000000000000000000000000000000000", "sha1 PCR 0 reads as zero");
        check_ek_cert(d, "sha1+sha256 TPM");
}

static void test_unique(const char *cache)
{
        struct vg_swtpm_opts shared = { .cache_dir = cache };
        struct vg_swtpm_opts unique = { .cache_dir = cache, .unique_identity = true };
        _cleanup_swtpm_ struct vg_swtpm *s = NULL, *u = NULL;
        _cleanup_free_ char *ps = NULL, *pu = NULL;
        struct vg_error err = { 0 };
        double t0;

        if (vg_swtpm_start(&shared, &s, &err) < 0)
                tap_bail("%s", vg_error_str(&err));
        t0 = now_ms();
        if (!is_int(vg_swtpm_start(&unique, &u, &err), 0, "a TPM with a unique identity starts")) {
                tap_diag("%s", vg_error_str(&err));
                return;
        }
        tap_diag("unique identity (swtpm_setup) TPM started in %.0f ms", now_ms() - t0);
        ok(!same_file(vg_swtpm_ek_cert(s), vg_swtpm_ek_cert(u)),
           "its EK certificate differs from the golden one");
        ps = cert_pubkey(vg_swtpm_ek_cert(s));
        pu = cert_pubkey(vg_swtpm_ek_cert(u));
        ok(ps && pu && strcmp(ps, pu) != 0, "and so does its EK public key");
        check_ek_cert(u, "unique TPM");
        ok(same_file(vg_swtpm_ek_ca_file(s), vg_swtpm_ek_ca_file(u)),
           "both EKs were issued by the same local CA");
}

static int lockout_counter(const char *tcti)
{
        _cleanup_free_ char *out = NULL;
        const char *p;

        run(&out, "tpm2_getcap", "-T", tcti, "properties-variable", NULL);
        p = out ? strstr(out, "TPM2_PT_LOCKOUT_COUNTER: ") : NULL;
        return p ? (int)strtol(p + strlen("TPM2_PT_LOCKOUT_COUNTER: "), NULL, 16) : -1;
}

/* Authorise with a key that is subject to dictionary-attack protection (no noDA). */
static bool use_da_key(const char *tcti)
{
        _cleanup_free_ char *ctx = path("primary.ctx"), *pub = path("k.pub");
        _cleanup_free_ char *priv = path("k.priv");
        bool good;

        good = run(NULL, "tpm2_createprimary", "-T", tcti, "-C", "o", "-c", ctx, NULL) == 0 &&
               run(NULL, "tpm2_create", "-T", tcti, "-C", ctx, "-u", pub, "-r", priv, NULL) == 0;
        run(NULL, "tpm2_flushcontext", "-T", tcti, "-t", NULL);
        return good;
}

static void test_restart_and_stop(const char *cache)
{
        struct vg_swtpm_opts opts = { .cache_dir = cache };
        _cleanup_swtpm_ struct vg_swtpm *t = NULL;
        _cleanup_free_ char *data = path("nv.bin"), *back = path("nv-back.bin"), *out = NULL;
        _cleanup_free_ char *tcti = NULL;
        struct vg_error err = { 0 };
        pid_t first, second;
        int held;
        double t0;

        if (vg_swtpm_start(&opts, &t, &err) < 0)
                tap_bail("%s", vg_error_str(&err));
        tcti = strdup(vg_swtpm_tcti(t));
        first = vg_swtpm_pid(t);
        tap_write_file(data, "vigil-nv");
        is_int(run(NULL, "tpm2_nvdefine", "-T", tcti, "0x01500020", "-C", "o", "-s", "8", NULL), 0,
               "define an NV index");
        is_int(run(NULL, "tpm2_nvwrite", "-T", tcti, "0x01500020", "-C", "o", "-i", data, NULL), 0,
               "write it");
        is_int(run(NULL, "tpm2_pcrextend", "-T", tcti,
                   "10:sha256=f1d2d2f924e986ac86fdf7b36c94bcdf32beec15f1d2d2f924e986ac86fdf7b3",
                   NULL),
               0, "extend PCR 10");

        /* A client (an agent) still connected to the command channel while the TPM restarts. */
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vg_swtpm_socket(t));
        held = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (held < 0 || connect(held, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                tap_bail("cannot connect to the TPM: %s", strerror(errno));

        t0 = now_ms();
        if (!is_int(vg_swtpm_restart(t, &err), 0, "restart, with a client connected")) {
                tap_diag("%s", vg_error_str(&err));
                close(held);
                return;
        }
        tap_diag("restart took %.1f ms", now_ms() - t0);
        close(held);
        second = vg_swtpm_pid(t);
        ok(second > 0 && second != first, "a new process serves the TPM (%d, was %d)", (int)second,
           (int)first);
        ok(gone(first), "the old process is gone");
        is_str(vg_swtpm_tcti(t), tcti, "on the same TCTI");
        is_int(run(NULL, "tpm2_nvread", "-T", tcti, "0x01500020", "-C", "o", "-o", back, NULL), 0,
               "the NV index survives the restart");
        ok(same_file(data, back), "with its contents");
        run(&out, "tpm2_pcrread", "-T", tcti, "sha256:10", NULL);
        contains(out, "10: 0x0000000000000000000000000000000000000000000000000000000000000000",
                 "PCR 10 is reset, as on a reboot");
        free(out);
        out = NULL;
        /* libtss2's swtpm TCTI connects per command, so normally nobody holds the port and
         * the harness shuts the TPM down properly first. Without that, libtpms counts a
         * dictionary-attack failure at each restart after a DA-protected key was used, and
         * locks the TPM out after three: every agent-restart test would trip over it. */
        int before = lockout_counter(tcti), restarts = 0;
        t0 = now_ms();
        for (int i = 0; i < 3; i++)
                if (use_da_key(tcti) && vg_swtpm_restart(t, &err) == 0)
                        restarts++;
        tap_diag("three restarts took %.1f ms in all", now_ms() - t0);
        is_int(restarts, 3, "three restarts, each after using a DA-protected key");
        is_int(lockout_counter(tcti), before, "leave the lockout counter at %d", before);
        ok(use_da_key(tcti), "and DA-protected keys still work");
        run(&out, "tpm2_getcap", "-T", tcti, "properties-variable", NULL);
        contains(out, "orderly:                   1", "the TPM saw an orderly shutdown");
        second = vg_swtpm_pid(t);

        ok(vg_swtpm_stop(t, &err) == 0, "stop");
        ok(gone(second), "leaves no swtpm process (pid %d)", (int)second);
        is_int(vg_swtpm_pid(t), 0, "the handle says it is stopped");
        ok(run(NULL, "tpm2_getrandom", "-T", tcti, "8", NULL) != 0,
           "and the TCTI no longer answers");
        ok(vg_swtpm_stop(t, &err) == 0, "stopping twice is harmless");
}

static void test_errors(const char *cache)
{
        _cleanup_free_ char *dir = path("corrupt"), *state = NULL, *cert = NULL, *junk = NULL;
        struct vg_swtpm_opts opts = { .cache_dir = cache, .dir = dir };
        struct vg_swtpm *t = NULL;
        struct vg_error err = { 0 };

        mkdir(dir, 0700);
        if (asprintf(&state, "%s/tpm2-00.permall", dir) < 0 ||
            asprintf(&cert, "%s/ek-rsa2048.crt", dir) < 0 || asprintf(&junk, "%s/x", work) < 0)
                tap_bail("out of memory");
        tap_write_file(state, "this is not a TPM state");
        tap_write_file(cert, "-");
        ok(vg_swtpm_start(&opts, &t, &err) < 0 && !t, "a corrupt TPM state does not start");
        contains(vg_error_str(&err), dir, "the error names the directory");
        contains(vg_error_str(&err), "Could not initialize libtpms", "and quotes swtpm's log: %s",
                 vg_error_str(&err));

        opts = (struct vg_swtpm_opts){ .cache_dir = junk };
        tap_write_file(junk, "");
        ok(vg_swtpm_start(&opts, &t, &err) < 0, "a cache path that is a file is refused");
        contains(vg_error_str(&err), junk, "naming it: %s", vg_error_str(&err));
}

/* Test programs run in parallel: three processes starting TPMs against one empty cache must
 * all succeed and end up with one golden state. */
static void test_parallel_golden(void)
{
        char *cache = tap_tmpdir();
        pid_t kids[3];
        int good = 0;

        for (int i = 0; i < 3; i++) {
                kids[i] = fork();
                if (kids[i] == 0) {
                        struct vg_swtpm_opts opts = { .cache_dir = cache };
                        struct vg_swtpm *t = NULL;
                        struct vg_error err = { 0 };
                        char dst[4096];
                        int r = vg_swtpm_start(&opts, &t, &err);

                        if (r < 0) {
                                printf("# child %d: %s\n", i, vg_error_str(&err));
                                fflush(stdout);
                                _exit(1);
                        }
                        snprintf(dst, sizeof(dst), "%s/child-%d.der", work, i);
                        r = run(NULL, "cp", vg_swtpm_ek_cert(t), dst, NULL);
                        r |= run(NULL, "tpm2_getrandom", "-T", vg_swtpm_tcti(t), "8", NULL);
                        vg_swtpm_free(t);
                        _exit(r == 0 ? 0 : 1);
                }
        }
        for (int i = 0; i < 3; i++) {
                int status;
                if (kids[i] > 0 && waitpid(kids[i], &status, 0) == kids[i] && WIFEXITED(status) &&
                    WEXITSTATUS(status) == 0)
                        good++;
        }
        is_int(good, 3, "three processes start TPMs against one empty cache at once");
        _cleanup_free_ char *c0 = path("child-0.der"), *c1 = path("child-1.der");
        _cleanup_free_ char *c2 = path("child-2.der"), *golden = NULL, *out = NULL;
        ok(same_file(c0, c1) && same_file(c1, c2), "and all got the same golden EK");
        if (asprintf(&golden, "%s/v1-sha256/tpm2-00.permall", cache) < 0)
                tap_bail("out of memory");
        ok(access(golden, F_OK) == 0, "from one golden state");
        run(&out, "sh", "-c", "ls \"$0\" | grep -c '^tmp-' || true", cache, NULL);
        ok(out && atoi(out) == 0, "with no half-built state left behind");
        free(cache);
}

static void test_default_cache(void)
{
        _cleanup_swtpm_ struct vg_swtpm *t = NULL;
        struct vg_error err = { 0 };
        double t0 = now_ms();

        if (!is_int(vg_swtpm_start(NULL, &t, &err), 0, "a TPM starts with default options")) {
                tap_diag("%s", vg_error_str(&err));
                return;
        }
        tap_diag("default cache: TPM started in %.0f ms", now_ms() - t0);
        is_int(run(NULL, "tpm2_getrandom", "-T", vg_swtpm_tcti(t), "8", NULL), 0, "and answers");
}

static char *env_value(const char *text, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                if (strncmp(p, name, n) == 0 && p[n] == '=')
                        return strndup(p + n + 1, strcspn(p + n + 1, "\n"));
        return NULL;
}

static void test_swtpm_up(const char *cache)
{
        const char *up = getenv("VIGIL_SWTPM_UP");
        _cleanup_free_ char *dir = path("up"), *out = NULL, *tcti = NULL, *pid_s = NULL;
        _cleanup_free_ char *env = NULL, *cert = NULL, *cert2 = NULL, *ca = NULL;
        pid_t pid;

        if (!up) {
                tap_skip("VIGIL_SWTPM_UP is not set", "swtpm-up");
                return;
        }
        is_int(run(&out, up, "--help", NULL), 0, "swtpm-up --help");
        contains(out, "Usage: swtpm-up", "prints its usage");
        free(out);
        out = NULL;
        is_int(run(&out, up, "--bogus", NULL), 2, "an unknown option is a usage error");
        free(out);
        out = NULL;

        is_int(run(&out, up, "--dir", dir, "--cache", cache, NULL), 0,
               "swtpm-up starts a TPM and returns");
        tcti = env_value(out, "VIGIL_SWTPM_TCTI");
        pid_s = env_value(out, "VIGIL_SWTPM_PID");
        cert = env_value(out, "VIGIL_SWTPM_EK_CERT");
        ca = env_value(out, "VIGIL_SWTPM_EK_CA");
        contains(tcti, "swtpm:path=", "it prints VIGIL_SWTPM_TCTI=%s",
                 tcti ? tcti : "");
        ok(pid_s && ca && cert, "and VIGIL_SWTPM_PID, VIGIL_SWTPM_EK_CA, VIGIL_SWTPM_EK_CERT");
        pid = pid_s ? atoi(pid_s) : 0;
        ok(pid > 0 && !gone(pid), "the TPM outlives swtpm-up");
        if (!tcti || pid <= 0)
                return;
        is_int(run(NULL, "tpm2_getrandom", "-T", tcti, "8", NULL), 0, "and answers on its TCTI");
        free(out);
        out = path("up/env");
        env = tap_read_file(out, NULL);
        ok(env && strstr(env, tcti), "DIR/env holds the same assignments");
        free(out);
        out = NULL;
        /* What scripts/demo does with it. */
        is_int(run(&out, "sh", "-c",
                   ". \"$0/env\" && tpm2_getrandom -T \"$VIGIL_SWTPM_TCTI\" 4 >/dev/null &&"
                   " openssl x509 -inform der -in \"$VIGIL_SWTPM_EK_CERT\" -out \"$0/ek.pem\" &&"
                   " openssl verify -CAfile \"$VIGIL_SWTPM_EK_CA\" \"$0/ek.pem\"",
                   dir, NULL),
               0, "a shell sources DIR/env, reaches the TPM and verifies its EK certificate");
        contains(out, "ek.pem: OK", "against VIGIL_SWTPM_EK_CA");
        free(out);
        out = NULL;
        is_int(run(&out, up, "--stop", dir, NULL), 0, "swtpm-up --stop DIR");
        ok(gone(pid), "stops the TPM it started (pid %d)", (int)pid);
        waitpid(pid, NULL, WNOHANG);
        free(out);
        out = NULL;
        is_int(run(&out, up, "--stop", dir, NULL), 1, "stopping it again fails");
        contains(out, "no swtpm is running", "saying so: %s", out ? out : "");
        free(out);
        out = NULL;

        /* Start again in the same directory: same identity. */
        is_int(run(&out, up, "--dir", dir, "--cache", cache, "--ecc", NULL), 0,
               "swtpm-up resumes a TPM directory");
        cert2 = env_value(out, "VIGIL_SWTPM_EK_CERT");
        contains(cert2, "ek-secp256r1.crt", "--ecc reports the P-256 EK certificate");
        free(pid_s);
        pid_s = env_value(out, "VIGIL_SWTPM_PID");
        pid = pid_s ? atoi(pid_s) : 0;
        free(out);
        out = NULL;
        free(out);
        out = path("up/swtpm.pid");
        is_int(run(NULL, up, "--stop", out, NULL), 0, "swtpm-up --stop PIDFILE");
        ok(pid > 0 && gone(pid), "stops it too");
        waitpid(pid, NULL, WNOHANG);
}

int main(void)
{
        char *cache;

        /* Orphaned TPMs (swtpm-up's, or those of a killed child) become ours to reap rather
         * than zombies of a PID 1 that may never reap them. */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        work = tap_tmpdir();
        cache = tap_tmpdir(); /* a private cache: every run makes its golden state afresh */
        test_fresh_tpm(cache);
        test_start_times(cache);
        test_parent_death(cache);
        test_ecc_and_banks(cache);
        test_unique(cache);
        test_restart_and_stop(cache);
        test_errors(cache);
        test_parallel_golden();
        test_default_cache();
        test_swtpm_up(cache);
        /* swtpm_setup does not wait for the swtpm it runs; as subreaper we inherited those. */
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        free(cache);
        free(work);
        return tap_done();
}
