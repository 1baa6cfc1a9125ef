/* vigil tests: `swtpm-up`, a software TPM for shell scripts (make demo) that outlives this
 * program; it prints shell assignments describing it, and `--stop` ends the one it started. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "swtpm.h"

static const char usage[] =
    "Usage: swtpm-up [--dir DIR] [--ecc] [--unique] [--sha1] [--cache DIR]\n"
    "       swtpm-up --stop DIR|PIDFILE\n"
    "\n"
    "Start a software TPM (swtpm) on a unix socket in DIR that keeps running after\n"
    "swtpm-up exits, and print shell assignments for it; the same lines go to DIR/env:\n"
    "  VIGIL_SWTPM_TCTI         swtpm:path=DIR/swtpm.sock (tpm2-tools -T, the agent)\n"
    "  VIGIL_SWTPM_PID          the swtpm process\n"
    "  VIGIL_SWTPM_DIR          its state directory\n"
    "  VIGIL_SWTPM_EK_CERT      the EK certificate (DER), also in NV at VIGIL_SWTPM_EK_NV\n"
    "  VIGIL_SWTPM_EK_CA        the local CA that issued it: issuer and root (PEM)\n"
    "  VIGIL_SWTPM_EK_CA_DIR    the same two certificates as files (a tpm_cert_store)\n"
    "\n"
    "  --dir DIR      keep the TPM in DIR (default: a new directory under $TMPDIR); a DIR\n"
    "                 that already holds one is started again with its EK and NV contents\n"
    "  --ecc          describe the ECC P-256 EK (NV 0x01c0000a), not RSA 2048 (0x01c00002)\n"
    "  --unique       give this TPM an EK of its own instead of the shared golden one\n"
    "  --sha1         activate the sha1 PCR bank next to sha256\n"
    "  --cache DIR    golden TPM states and local CA (default: $VIGIL_SWTPM_CACHE, else\n"
    "                 $TMPDIR/vigil-swtpm-cache-UID)\n"
    "  --stop X       stop the TPM started in directory X, or whose pid file is X\n"
    "  -h, --help     show this text\n"
    "\n"
    "Exit status: 0 on success, 1 when the TPM could not be started or stopped (the reason\n"
    "is on stderr), 2 on a usage error.\n";

/* Quote a value for sh only when it needs it, so ordinary values read exactly as
 * VIGIL_SWTPM_TCTI=swtpm:path=/tmp/vigil-swtpm-x/swtpm.sock. */
static void put_var(FILE *f, const char *name, const char *value)
{
        bool plain = *value != '\0';

        for (const char *p = value; *p; p++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                            "_-./:,=+@%",
                            *p))
                        plain = false;
        fprintf(f, "%s=", name);
        if (plain) {
                fputs(value, f);
        } else {
                fputc('\'', f);
                for (const char *p = value; *p; p++)
                        if (*p == '\'')
                                fputs("'\\''", f);
                        else
                                fputc(*p, f);
                fputc('\'', f);
        }
        fputc('\n', f);
}

static void put_env(FILE *f, const struct vg_swtpm *tpm)
{
        char num[32];

        put_var(f, "VIGIL_SWTPM_TCTI", vg_swtpm_tcti(tpm));
        snprintf(num, sizeof(num), "%d", (int)vg_swtpm_pid(tpm));
        put_var(f, "VIGIL_SWTPM_PID", num);
        put_var(f, "VIGIL_SWTPM_DIR", vg_swtpm_dir(tpm));
        put_var(f, "VIGIL_SWTPM_PIDFILE", vg_swtpm_pidfile(tpm));
        put_var(f, "VIGIL_SWTPM_EK_CERT", vg_swtpm_ek_cert(tpm));
        snprintf(num, sizeof(num), "0x%08x", vg_swtpm_ek_nv_index(tpm));
        put_var(f, "VIGIL_SWTPM_EK_NV", num);
        put_var(f, "VIGIL_SWTPM_EK_CA", vg_swtpm_ek_ca_file(tpm));
        put_var(f, "VIGIL_SWTPM_EK_CA_DIR", vg_swtpm_ek_ca_dir(tpm));
}

static int env_path(const struct vg_swtpm *tpm, char *buf, size_t size)
{
        int n = snprintf(buf, size, "%s/env", vg_swtpm_dir(tpm));

        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int stop(const char *what)
{
        _cleanup_swtpm_ struct vg_swtpm *tpm = NULL;
        struct vg_error err = { 0 };
        _cleanup_free_ char *copy = strdup(what);
        const char *dir = what;
        char env[4096];
        struct stat st;

        if (!copy)
                return 1;
        /* A pid file names its directory: the harness keeps it next to the state. */
        if (stat(what, &st) == 0 && !S_ISDIR(st.st_mode))
                dir = dirname(copy);
        if (vg_swtpm_attach(dir, &tpm, &err) < 0 || vg_swtpm_stop(tpm, &err) < 0) {
                fprintf(stderr, "swtpm-up: %s\n", vg_error_str(&err));
                return 1;
        }
        /* The env file says "a TPM runs here"; scripts test for it. */
        if (env_path(tpm, env, sizeof(env)) == 0)
                unlink(env);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "dir", required_argument, NULL, 'd' },   { "ecc", no_argument, NULL, 'e' },
                { "unique", no_argument, NULL, 'u' },      { "sha1", no_argument, NULL, '1' },
                { "cache", required_argument, NULL, 'c' }, { "stop", required_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },        {},
        };
        struct vg_swtpm_opts opts = { .detach = true, .banks = VG_SWTPM_BANK_SHA256 };
        _cleanup_swtpm_ struct vg_swtpm *tpm = NULL;
        struct vg_error err = { 0 };
        const char *stop_what = NULL;
        char env[4096];
        FILE *f;
        int c;

        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'd':
                        opts.dir = optarg;
                        break;
                case 'e':
                        opts.ek = VG_SWTPM_EK_ECC_P256;
                        break;
                case 'u':
                        opts.unique_identity = true;
                        break;
                case '1':
                        opts.banks |= VG_SWTPM_BANK_SHA1;
                        break;
                case 'c':
                        opts.cache_dir = optarg;
                        break;
                case 's':
                        stop_what = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        fputs(usage, stderr);
                        return 2;
                }
        }
        if (optind != argc) {
                fprintf(stderr, "swtpm-up: unexpected argument '%s'\n%s", argv[optind], usage);
                return 2;
        }
        if (stop_what)
                return stop(stop_what);

        if (vg_swtpm_start(&opts, &tpm, &err) < 0) {
                fprintf(stderr, "swtpm-up: %s\n", vg_error_str(&err));
                return 1;
        }
        if (env_path(tpm, env, sizeof(env)) < 0 || !(f = fopen(env, "we"))) {
                fprintf(stderr, "swtpm-up: cannot write %s/env: %s\n", vg_swtpm_dir(tpm),
                        strerror(errno));
                vg_swtpm_stop(tpm, NULL);
                return 1;
        }
        put_env(f, tpm);
        if (fclose(f) != 0) {
                fprintf(stderr, "swtpm-up: cannot write %s: %s\n", env, strerror(errno));
                vg_swtpm_stop(tpm, NULL);
                return 1;
        }
        put_env(stdout, tpm);
        return fflush(stdout) == 0 ? 0 : 1;
}
