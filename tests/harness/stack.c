/* vigil tests: a whole deployment (CA, swtpm, registrar, verifier, agent) as real processes on
 * loopback, configured only through their VIGIL_<COMPONENT>_<OPTION> environment. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stack.h"
#include "tap.h"

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *path_in(const char *dir, const char *name)
{
        return tap_strf("%s/%s", dir, name);
}

void vg_stack_daemon_setenv(struct vg_stack_daemon *d, const char *name, const char *fmt, ...)
{
        size_t nlen = strlen(name), i;
        char *value, *entry;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&value, fmt, ap) < 0)
                tap_bail("out of memory");
        va_end(ap);
        entry = tap_strf("%s=%s", name, value);
        free(value);
        for (i = 0; d->env[i]; i++)
                if (strncmp(d->env[i], name, nlen) == 0 && d->env[i][nlen] == '=') {
                        free(d->env[i]);
                        d->env[i] = entry;
                        return;
                }
        if (i + 1 >= sizeof(d->env) / sizeof(d->env[0]))
                tap_bail("too many environment variables for %s", d->name);
        d->env[i] = entry;
        d->env[i + 1] = NULL;
}

/* "NAME=value" into the daemon's environment, replacing NAME. */
static void daemon_putenv(struct vg_stack_daemon *d, const char *assignment)
{
        const char *eq = strchr(assignment, '=');
        char *name;

        if (!eq)
                tap_bail("not NAME=value: %s", assignment);
        name = strndup(assignment, (size_t)(eq - assignment));
        vg_stack_daemon_setenv(d, name, "%s", eq + 1);
        free(name);
}

void vg_stack_daemon_show_log(const struct vg_stack_daemon *d)
{
        char *text = d->log ? tap_read_file(d->log, NULL) : NULL;

        if (text)
                tap_diag("--- %s log (%s) ---\n%s", d->name, d->log, text);
        free(text);
}

bool vg_stack_wait_log(const struct vg_stack_daemon *d, const char *needle, double secs)
{
        double end = now() + secs;

        do {
                char *text = tap_read_file(d->log, NULL);
                bool found = text && strstr(text, needle);

                free(text);
                if (found)
                        return true;
                usleep(20000);
        } while (now() < end);
        return false;
}

void vg_stack_daemon_start(struct vg_stack *s, struct vg_stack_daemon *d)
{
        double end;
        pid_t pid;

        (void)s;
        unlink(d->pid_file);
        pid_t parent = getpid();
        pid = fork();
        if (pid < 0)
                tap_bail("fork: %s", strerror(errno));
        if (pid == 0) {
                int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

                /* A test that dies (crash, timeout, SIGKILL) takes its daemons with it. */
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(127);
                if (fd < 0 || nul < 0)
                        _exit(127);
                dup2(nul, 0);
                dup2(fd, 1);
                dup2(fd, 2);
                for (size_t i = 0; d->env[i]; i++)
                        putenv(d->env[i]);
                execl(d->bin, d->bin, "-f", "--log-level", "debug", "--pid-file", d->pid_file,
                      (char *)NULL);
                _exit(127);
        }
        d->pid = pid;
        end = now() + 20;
        while (now() < end) {
                int status;

                if (access(d->pid_file, F_OK) == 0)
                        return;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        d->pid = 0;
                        vg_stack_daemon_show_log(d);
                        tap_bail("vigil-%s exited at start (status 0x%x)", d->name, status);
                }
                usleep(10000);
        }
        vg_stack_daemon_show_log(d);
        tap_bail("vigil-%s did not become ready within 20 s", d->name);
}

int vg_stack_daemon_stop(struct vg_stack_daemon *d)
{
        double end = now() + 10;
        int status;

        if (d->pid <= 0)
                return 0;
        kill(d->pid, SIGTERM);
        while (now() < end) {
                if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
                        d->pid = 0;
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                }
                usleep(10000);
        }
        kill(d->pid, SIGKILL);
        waitpid(d->pid, &status, 0);
        d->pid = 0;
        return -1;
}

static void daemon_init(struct vg_stack *s, struct vg_stack_daemon *d, const char *name,
                        const char *bin_env)
{
        const char *bin = getenv(bin_env);

        if (!bin)
                tap_bail("%s is not set (run the tests through meson)", bin_env);
        d->name = name;
        d->bin = bin;
        d->dir = path_in(s->dir, name);
        if (mkdir(d->dir, 0700) < 0)
                tap_bail("mkdir %s: %s", d->dir, strerror(errno));
        d->log = tap_strf("%s/%s.log", s->dir, name);
        d->pid_file = tap_strf("%s/%s.pid", s->dir, name);
        d->env[0] = NULL;
        vg_stack_daemon_setenv(d, "VIGIL_CONF_DIR", "%s/noconf", s->dir);
        vg_stack_daemon_setenv(d, "TSS2_LOG", "all+none");
}

static void add_env_list(struct vg_stack_daemon *d, const char *const *list)
{
        for (size_t i = 0; list && list[i]; i++)
                daemon_putenv(d, list[i]);
}

void vg_stack_start(const struct vg_stack_opts *opts, struct vg_stack **out)
{
        static const struct vg_stack_opts defaults = { 0 };
        struct vg_swtpm_opts topts = { 0 };
        struct vg_error err = { 0 };
        struct vg_stack *s;
        char *output = NULL;

        if (!opts)
                opts = &defaults;
        /* The test talks to the daemons (and may proxy them): a peer that closes first must
         * give EPIPE, not kill the test. */
        signal(SIGPIPE, SIG_IGN);
        s = calloc(1, sizeof(*s));
        if (!s)
                tap_bail("out of memory");
        s->dir = tap_tmpdir();
        s->uuid = strdup(opts->uuid ? opts->uuid : VG_STACK_UUID);
        s->ca_dir = path_in(s->dir, "ca");
        if (tap_runl(&output, getenv("VIGIL_CLI"), "ca", "init", s->ca_dir, (char *)NULL) != 0)
                tap_bail("vigil ca init failed: %s", output ? output : "");
        free(output);

        topts.ek = opts->ek;
        topts.banks = opts->banks ? opts->banks : VG_SWTPM_BANK_SHA1 | VG_SWTPM_BANK_SHA256;
        if (vg_swtpm_start(&topts, &s->tpm, &err) < 0)
                tap_bail("swtpm: %s", vg_error_str(&err));
        s->ima_path = path_in(s->dir, "ascii_runtime_measurements");
        s->mb_path = path_in(s->dir, "binary_bios_measurements");
        if (tap_write_file(s->ima_path, "") < 0 || tap_write_file(s->mb_path, "") < 0)
                tap_bail("cannot create the measurement lists in %s", s->dir);

        struct vg_stack_daemon *r = &s->registrar, *v = &s->verifier, *a = &s->agent;

        daemon_init(s, r, "registrar", "VIGIL_REGISTRAR");
        r->port = tap_free_port();
        r->tls_port = tap_free_port();
        vg_stack_daemon_setenv(r, "VIGIL_REGISTRAR_PORT", "%d", r->port);
        vg_stack_daemon_setenv(r, "VIGIL_REGISTRAR_TLS_PORT", "%d", r->tls_port);
        vg_stack_daemon_setenv(r, "VIGIL_REGISTRAR_TLS_DIR", "%s", s->ca_dir);
        vg_stack_daemon_setenv(r, "VIGIL_REGISTRAR_DATA_DIR", "%s", r->dir);
        vg_stack_daemon_setenv(r, "VIGIL_REGISTRAR_TPM_CERT_STORE", "%s",
                               vg_swtpm_ek_ca_dir(s->tpm));
        add_env_list(r, opts->registrar_env);

        daemon_init(s, v, "verifier", "VIGIL_VERIFIER");
        v->port = tap_free_port();
        vg_stack_daemon_setenv(v, "VIGIL_VERIFIER_PORT", "%d", v->port);
        vg_stack_daemon_setenv(v, "VIGIL_VERIFIER_TLS_DIR", "%s", s->ca_dir);
        vg_stack_daemon_setenv(v, "VIGIL_VERIFIER_DATA_DIR", "%s", v->dir);
        vg_stack_daemon_setenv(v, "VIGIL_VERIFIER_REGISTRAR_PORT", "%d", r->tls_port);
        vg_stack_daemon_setenv(v, "VIGIL_VERIFIER_QUOTE_INTERVAL", "%g",
                               opts->quote_interval > 0 ? opts->quote_interval : 0.2);
        if (opts->database_url)
                vg_stack_daemon_setenv(v, "VIGIL_VERIFIER_DATABASE_URL", "%s", opts->database_url);
        add_env_list(v, opts->verifier_env);

        daemon_init(s, a, "agent", "VIGIL_AGENT");
        a->port = tap_free_port();
        vg_stack_daemon_setenv(a, "VIGIL_AGENT_UUID", "%s", s->uuid);
        vg_stack_daemon_setenv(a, "VIGIL_AGENT_TCTI", "%s", vg_swtpm_tcti(s->tpm));
        vg_stack_daemon_setenv(a, "VIGIL_AGENT_DATA_DIR", "%s", a->dir);
        vg_stack_daemon_setenv(a, "VIGIL_AGENT_PORT", "%d", a->port);
        vg_stack_daemon_setenv(a, "VIGIL_AGENT_REGISTRAR_PORT", "%d", r->port);
        vg_stack_daemon_setenv(a, "VIGIL_AGENT_TRUSTED_CLIENT_CA", "%s/cacert.crt", s->ca_dir);
        vg_stack_daemon_setenv(a, "VIGIL_AGENT_IMA_ML_PATH", "%s", s->ima_path);
        vg_stack_daemon_setenv(a, "VIGIL_AGENT_MEASUREDBOOT_ML_PATH", "%s", s->mb_path);
        add_env_list(a, opts->agent_env);

        if (!opts->no_registrar)
                vg_stack_daemon_start(s, r);
        if (!opts->no_verifier)
                vg_stack_daemon_start(s, v);
        if (!opts->no_agent) {
                vg_stack_daemon_start(s, a);
                if (!opts->no_registrar &&
                    !vg_stack_wait_log(a, "activated with the registrar", 20)) {
                        vg_stack_daemon_show_log(a);
                        vg_stack_daemon_show_log(r);
                        tap_bail("the agent did not activate with the registrar");
                }
        }
        *out = s;
}

static void daemon_free(struct vg_stack_daemon *d)
{
        vg_stack_daemon_stop(d);
        for (size_t i = 0; d->env[i]; i++)
                free(d->env[i]);
        free(d->dir);
        free(d->log);
        free(d->pid_file);
}

void vg_stack_free(struct vg_stack *s)
{
        if (!s)
                return;
        daemon_free(&s->agent);
        daemon_free(&s->verifier);
        daemon_free(&s->registrar);
        vg_swtpm_free(s->tpm);
        free(s->ima_path);
        free(s->mb_path);
        free(s->ca_dir);
        free(s->uuid);
        free(s->dir); /* tap_tmpdir() removes the directory itself at exit */
        free(s);
}

/* Run argv with the tenant's environment for this stack set around it. */
static int run_with_tenant_env(struct vg_stack *s, const char *const *argv, char **output)
{
        static const char *const names[] = {
                "VIGIL_CONF_DIR",       "VIGIL_TENANT_REGISTRAR_PORT", "VIGIL_TENANT_VERIFIER_PORT",
                "VIGIL_TENANT_TLS_DIR", "VIGIL_TENANT_TPM_CERT_STORE", "TSS2_LOG",
        };
        enum { N = sizeof(names) / sizeof(names[0]) };
        char *saved[N], *values[N];
        int r;

        values[0] = tap_strf("%s/noconf", s->dir);
        values[1] = tap_strf("%d", s->registrar.tls_port);
        values[2] = tap_strf("%d", s->verifier.port);
        values[3] = tap_strf("%s", s->ca_dir);
        values[4] = tap_strf("%s", vg_swtpm_ek_ca_dir(s->tpm));
        values[5] = tap_strf("all+none");
        for (size_t i = 0; i < N; i++) {
                const char *old = getenv(names[i]);

                saved[i] = old ? strdup(old) : NULL;
                setenv(names[i], values[i], 1);
        }
        r = tap_run((char *const *)argv, output);
        for (size_t i = 0; i < N; i++) {
                if (saved[i])
                        setenv(names[i], saved[i], 1);
                else
                        unsetenv(names[i]);
                free(saved[i]);
                free(values[i]);
        }
        return r;
}

/* argv = head..., then arg0 and what follows it in ap up to NULL. */
static size_t collect_args(const char **argv, size_t n, size_t max, const char *arg0, va_list ap)
{
        for (const char *a = arg0; a; a = va_arg(ap, const char *)) {
                if (n + 1 >= max)
                        tap_bail("too many arguments");
                argv[n++] = a;
        }
        argv[n] = NULL;
        return n;
}

static const char *cli(void)
{
        const char *p = getenv("VIGIL_CLI");

        if (!p)
                tap_bail("VIGIL_CLI is not set (run the tests through meson)");
        return p;
}

int vg_stack_tenant(struct vg_stack *s, char **output, const char *arg0, ...)
{
        const char *argv[64] = { cli(), "tenant" };
        va_list ap;

        va_start(ap, arg0);
        collect_args(argv, 2, 64, arg0, ap);
        va_end(ap);
        return run_with_tenant_env(s, argv, output);
}

int vg_stack_vigil(struct vg_stack *s, char **output, const char *arg0, ...)
{
        const char *argv[64] = { cli() };
        va_list ap;

        va_start(ap, arg0);
        collect_args(argv, 1, 64, arg0, ap);
        va_end(ap);
        return run_with_tenant_env(s, argv, output);
}

int vg_stack_ima_sim(struct vg_stack *s, char **output, const char *arg0, ...)
{
        const char *argv[64] = { getenv("VIGIL_IMA_SIM"), "--log", s->ima_path, "--tcti",
                                 vg_swtpm_tcti(s->tpm) };
        va_list ap;

        if (!argv[0])
                tap_bail("VIGIL_IMA_SIM is not set (run the tests through meson)");
        va_start(ap, arg0);
        collect_args(argv, 5, 64, arg0, ap);
        va_end(ap);
        return tap_run((char *const *)argv, output);
}
