/* vigil: the command-line tool. Dispatches `vigil NOUN VERB ...` to the noun's handler. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "log.h"

static const struct {
        const char *noun;
        int (*run)(int argc, char **argv);
        const char *summary;
} nouns[] = {
        { "ca", cmd_ca, "create a certificate authority and issue mTLS certificates" },
        { "tenant", cmd_tenant, "enrol agents with the registrar and verifier (keylime_tenant)" },
        { "policy", cmd_policy, "create, sign, verify and convert runtime policies" },
        { "verify", cmd_verify, "verify evidence offline (IMA measurement lists)" },
        { "tang", cmd_tang, "manage Tang key directories: keygen, rotate, show-keys, backup, purge" },
        { "pin", cmd_pin, "Clevis-compatible encryption: encrypt/decrypt with tang, sss, tpm2 pins" },
        { "eventlog", cmd_eventlog, "TCG PC Client boot event logs: show (decoded), replay (PCRs)" },
        { "baseline", cmd_baseline, "known-good boot measurements: add, import, list, rm, history" },
        { "luks", cmd_luks, "Clevis-compatible LUKS2 bindings: bind, unbind, list, pass, edit, regen" },
};

static void usage(FILE *out)
{
        fprintf(out, "Usage: vigil [--log-json] [-v] NOUN VERB [OPTIONS]\n\n"
                     "vigil is a platform-integrity suite: measured boot, runtime (IMA) and file\n"
                     "integrity, attested secrets and automatic response.\n\nCommands:\n");
        for (size_t i = 0; i < sizeof(nouns) / sizeof(nouns[0]); i++)
                fprintf(out, "  %-8s %s\n", nouns[i].noun, nouns[i].summary);
        fprintf(out, "\nOptions:\n"
                     "  --log-json   write log lines as JSON\n"
                     "  -v           verbose (debug) logging\n"
                     "  --version    print the version and exit\n"
                     "  -h, --help   this text\n\n"
                     "`vigil NOUN --help` describes each command; see also vigil(1).\n");
}

int cli_usage_error(const char *noun, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "vigil %s: ", noun);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'vigil %s --help'.\n", noun);
        return 2;
}

int main(int argc, char **argv)
{
        struct vg_log_config log = { .component = "vigil", .level = VG_LOG_NOTICE };
        int i = 1;

        for (; i < argc && argv[i][0] == '-'; i++) {
                if (strcmp(argv[i], "--log-json") == 0) {
                        log.json = true;
                } else if (strcmp(argv[i], "-v") == 0) {
                        log.level = VG_LOG_DEBUG;
                } else if (strcmp(argv[i], "--version") == 0) {
                        printf("vigil %s\n", VIGIL_VERSION);
                        return 0;
                } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                        usage(stdout);
                        return 0;
                } else {
                        fprintf(stderr, "vigil: unknown option '%s'\n", argv[i]);
                        usage(stderr);
                        return 2;
                }
        }
        vg_log_setup(&log);
        /* tpm2-tss prints its own WARNING/ERROR lines before vigil's message says what failed;
         * keep them for -v (or an explicit TSS2_LOG). */
        if (log.level < VG_LOG_DEBUG)
                setenv("TSS2_LOG", "all+none", 0);
        if (i == argc) {
                usage(stderr);
                return 2;
        }
        for (size_t n = 0; n < sizeof(nouns) / sizeof(nouns[0]); n++)
                if (strcmp(argv[i], nouns[n].noun) == 0)
                        return nouns[n].run(argc - i, argv + i);
        if (strcmp(argv[i], "help") == 0) {
                usage(stdout);
                return 0;
        }
        fprintf(stderr, "vigil: unknown command '%s'\n", argv[i]);
        usage(stderr);
        return 2;
}
