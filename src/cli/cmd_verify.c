/* vigil CLI: `vigil verify ima`, offline verification of an IMA measurement list against a
 * runtime policy (or a flat allowlist) with the verifier's engine (src/lib/ima_log.c). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "commands.h"
#include "encoding.h"
#include "error.h"
#include "hash.h"
#include "ima.h"

/* Inputs are read whole; a runtime policy for a real system is tens of MiB at most. */
#define MAX_INPUT (1024UL * 1024 * 1024)

static void verify_help(FILE *out)
{
        fprintf(out,
                "Usage: vigil verify ima --log FILE (--policy FILE | --allowlist FILE\n"
                "                        [--exclude FILE]) [--pcr10 HEX [--bank sha1|sha256]]\n"
                "                        [--fail-on-violations]\n\n"
                "Verify an IMA measurement list (ascii_runtime_measurements) offline, as the\n"
                "verifier does: every line is parsed (templates ima, ima-ng, ima-sig, ima-buf),\n"
                "its template hash checked, PCR 10 replayed and the entry judged by the policy.\n"
                "Each failing entry is printed with its line number, path, what was expected and\n"
                "what was found; then the verdict and the line\n"
                "  template-hash N fnf N hash N good N\n\n"
                "Options:\n"
                "  --log FILE            the ASCII measurement list\n"
                "  --policy FILE         a Keylime runtime policy (JSON, version 1)\n"
                "  --allowlist FILE      a flat allowlist instead (\"<hex digest> <path>\" lines)\n"
                "  --exclude FILE        with --allowlist: one exclude regex per line\n"
                "  --pcr10 HEX           the quoted PCR 10; the replay must reach it\n"
                "  --bank sha1|sha256    the PCR bank of --pcr10 (default: from its length)\n"
                "  --fail-on-violations  ToMToU/open-writers entries fail (default: accepted)\n"
                "  -h, --help            this text\n\n"
                "Exit status: 0 the list verifies, 1 it does not, 2 unusable input (bad\n"
                "arguments, an unreadable file, a policy that does not parse).\n");
}

static char *read_all(const char *path, size_t *len)
{
        FILE *f = fopen(path, "rb");
        char *buf = NULL;
        size_t cap = 0, n = 0;

        if (!f)
                return NULL;
        for (;;) {
                if (n + 65536 + 1 > cap) {
                        char *nb;
                        cap = cap ? cap * 2 : 1 << 20;
                        if (cap > MAX_INPUT + 65536 + 1 || !(nb = realloc(buf, cap))) {
                                free(buf);
                                fclose(f);
                                errno = EFBIG;
                                return NULL;
                        }
                        buf = nb;
                }
                size_t got = fread(buf + n, 1, 65536, f);
                n += got;
                if (got < 65536) {
                        if (ferror(f)) {
                                free(buf);
                                fclose(f);
                                errno = EIO;
                                return NULL;
                        }
                        break;
                }
        }
        fclose(f);
        buf[n] = '\0';
        *len = n;
        return buf;
}

static void print_failure(const struct vg_ima_failure *f, void *ud)
{
        (void)ud;
        if (f->line)
                printf("FAIL line %llu (entry %llu) %s: %s\n", (unsigned long long)f->line,
                       (unsigned long long)f->entry, vg_ima_failure_kind_str(f->kind), f->message);
        else
                printf("FAIL %s: %s\n", vg_ima_failure_kind_str(f->kind), f->message);
        if (f->path)
                printf("  path      %s\n", f->path);
        if (f->expected)
                printf("  expected  %s\n", f->expected);
        if (f->found)
                printf("  found     %s\n", f->found);
}

static int verify_ima(int argc, char **argv)
{
        const char *log_path = NULL, *policy_path = NULL, *allow_path = NULL, *exclude_path = NULL,
                   *pcr_hex = NULL, *bank_name = NULL;
        bool fail_violations = false;
        _cleanup_free_ char *log = NULL, *policy = NULL, *exclude = NULL;
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p = NULL;
        _cleanup_(vg_ima_state_freep) struct vg_ima_state *st = NULL;
        size_t log_len = 0, policy_len = 0, exclude_len = 0;
        uint8_t pcr[VG_HASH_MAX_SIZE];
        enum vg_hash_alg bank = VG_HASH_SHA1;
        struct vg_error err = { 0 };
        struct vg_ima_result res;
        struct vg_ima_options opts = { .on_failure = print_failure };

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *eq = strchr(a, '=');
                size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
                const char **target = NULL;

                if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                        verify_help(stdout);
                        return 0;
                }
                if (strcmp(a, "--fail-on-violations") == 0) {
                        fail_violations = true;
                        continue;
                }
#define OPT(name, var) else if (nlen == strlen(name) && strncmp(a, name, nlen) == 0) target = &var;
                if (0) {
                }
                OPT("--log", log_path)
                OPT("--policy", policy_path)
                OPT("--allowlist", allow_path)
                OPT("--exclude", exclude_path)
                OPT("--pcr10", pcr_hex)
                OPT("--bank", bank_name)
#undef OPT
                if (!target)
                        return cli_usage_error("verify ima", "unknown option or argument '%s'", a);
                if (eq) {
                        *target = eq + 1;
                } else if (i + 1 < argc) {
                        *target = argv[++i];
                } else {
                        return cli_usage_error("verify ima",
                                               "option %s: expected a value, found the end of "
                                               "the command line",
                                               a);
                }
        }
        if (!log_path)
                return cli_usage_error("verify ima", "expected --log FILE");
        if (!policy_path == !allow_path)
                return cli_usage_error("verify ima",
                                       "expected exactly one of --policy FILE and --allowlist "
                                       "FILE");
        if (exclude_path && !allow_path)
                return cli_usage_error("verify ima",
                                       "--exclude goes with --allowlist (a runtime policy has "
                                       "its own \"excludes\")");
        if (bank_name && !pcr_hex)
                return cli_usage_error("verify ima", "--bank goes with --pcr10");
        if (bank_name && strcmp(bank_name, "sha1") && strcmp(bank_name, "sha256"))
                return cli_usage_error("verify ima", "--bank: expected sha1 or sha256, found '%s'",
                                       bank_name);
        if (pcr_hex) {
                size_t hl = strlen(pcr_hex);

                if (bank_name)
                        vg_hash_alg_from_name(bank_name, &bank);
                else
                        bank = hl == 64 ? VG_HASH_SHA256 : VG_HASH_SHA1;
                if (hl != 2 * vg_hash_size(bank) ||
                    vg_hex_decode_exact(pcr_hex, hl, pcr, vg_hash_size(bank)) < 0)
                        return cli_usage_error("verify ima",
                                               "--pcr10: expected %zu hex digits for a %s PCR, "
                                               "found '%s'",
                                               2 * vg_hash_size(bank), vg_hash_alg_name(bank),
                                               pcr_hex);
        }

        if (!(log = read_all(log_path, &log_len))) {
                fprintf(stderr, "vigil verify ima: %s: cannot read the log: %s\n", log_path,
                        strerror(errno));
                return 2;
        }
        const char *ppath = policy_path ? policy_path : allow_path;
        if (!(policy = read_all(ppath, &policy_len))) {
                fprintf(stderr, "vigil verify ima: %s: cannot read the %s: %s\n", ppath,
                        policy_path ? "policy" : "allowlist", strerror(errno));
                return 2;
        }
        if (exclude_path && !(exclude = read_all(exclude_path, &exclude_len))) {
                fprintf(stderr, "vigil verify ima: %s: cannot read the exclude list: %s\n",
                        exclude_path, strerror(errno));
                return 2;
        }
        if ((policy_path ? vg_ima_policy_parse(policy, policy_len, &p, &err)
                         : vg_ima_policy_from_lists(policy, policy_len, exclude, exclude_len, &p,
                                                    &err)) < 0) {
                fprintf(stderr, "vigil verify ima: %s: %s\n", ppath, vg_error_str(&err));
                return 2;
        }
        if (vg_ima_state_new(bank, &st) < 0) {
                fprintf(stderr, "vigil verify ima: out of memory\n");
                return 2;
        }
        opts.fail_on_violations = fail_violations;
        if (vg_ima_verify(p, st, log, log_len, 0, pcr_hex ? pcr : NULL, &opts, &res, &err) < 0) {
                fprintf(stderr, "vigil verify ima: %s\n", vg_error_str(&err));
                return 2;
        }
        if (pcr_hex && res.pcr_matched)
                printf("PCR 10 (%s): reached after %llu entries\n", vg_hash_alg_name(bank),
                       (unsigned long long)res.match_entry);
        else if (pcr_hex)
                printf("PCR 10 (%s): not reached\n", vg_hash_alg_name(bank));
        printf("%s: %llu entries, %llu excluded, %llu violations\n", res.pass ? "PASS" : "FAIL",
               (unsigned long long)res.entries, (unsigned long long)res.counts.excluded,
               (unsigned long long)res.counts.violation);
        printf("template-hash %llu fnf %llu hash %llu good %llu\n",
               (unsigned long long)res.counts.template_hash, (unsigned long long)res.counts.fnf,
               (unsigned long long)res.counts.hash, (unsigned long long)res.counts.good);
        return res.pass ? 0 : 1;
}

int cmd_verify(int argc, char **argv)
{
        if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
                verify_help(argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (strcmp(argv[1], "ima") == 0)
                return verify_ima(argc - 1, argv + 1);
        return cli_usage_error("verify", "unknown evidence '%s' (expected: ima)", argv[1]);
}
