/* vigil CLI: `vigil eventlog show|replay`, a TCG PC Client boot event log decoded (device paths,
 * variables, certificates, command lines) or replayed into PCRs (src/lib/eventlog.c). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cleanup.h"
#include "commands.h"
#include "error.h"
#include "eventlog.h"

static void eventlog_help(FILE *out)
{
        fprintf(out,
                "Usage: vigil eventlog show FILE [--json]\n"
                "       vigil eventlog replay FILE [--pcrs LIST] [--bank ALG]\n\n"
                "Read a TCG PC Client boot event log (binary_bios_measurements; SHA-1 or\n"
                "crypto-agile format). Every length is checked; a malformed log is refused with\n"
                "the event index, byte offset and what is wrong.\n\n"
                "  show      one block per event: index, PCR, type, digests per bank and the\n"
                "            decoded data (device paths as text, EFI variables with GUID and\n"
                "            name, certificate subjects, kernel command line, GPT partitions),\n"
                "            then the secure-boot state (SecureBoot, PK, KEK, db, dbx, MokList,\n"
                "            SbatLevel, authorities)\n"
                "  replay    the PCR values the log produces, one line per bank and PCR:\n"
                "              sha256 PCR_4 <lowercase hex>\n"
                "            (PCRs no event extends are left out unless --pcrs names them)\n\n"
                "Options:\n"
                "  --json        show: machine-readable JSON (events, secure boot, PCRs)\n"
                "  --pcrs LIST   replay: only these PCRs, e.g. 0,4,7 or 0-7,14\n"
                "  --bank ALG    replay: only this bank (sha1, sha256, sha384, sha512, ...)\n"
                "  -h, --help    this text\n\n"
                "Exit status: 0 success, 1 a malformed or unreadable log, 2 bad arguments.\n");
}

VG_DEFINE_CLEANUP_FUNC(struct vg_evlog, vg_evlog_free)

static int parse_pcr_list(const char *s, bool sel[VG_EVLOG_PCRS])
{
        const char *p = s;

        memset(sel, 0, VG_EVLOG_PCRS * sizeof(bool));
        while (*p) {
                char *end;
                long a = strtol(p, &end, 10), b;
                if (end == p || a < 0 || a >= VG_EVLOG_PCRS)
                        return -EINVAL;
                b = a;
                p = end;
                if (*p == '-') {
                        b = strtol(p + 1, &end, 10);
                        if (end == p + 1 || b < a || b >= VG_EVLOG_PCRS)
                                return -EINVAL;
                        p = end;
                }
                for (long i = a; i <= b; i++)
                        sel[i] = true;
                if (*p == ',')
                        p++;
                else if (*p)
                        return -EINVAL;
        }
        return 0;
}

static int eventlog_show(const char *file, bool json)
{
        _cleanup_(vg_evlog_freep) struct vg_evlog *log = NULL;
        struct vg_error err = { 0 };

        if (vg_evlog_load(file, &log, &err) < 0) {
                fprintf(stderr, "vigil eventlog: %s\n", vg_error_str(&err));
                return 1;
        }
        if (json) {
                json_t *j = vg_evlog_to_json(log, &err);
                if (!j || json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0) {
                        json_decref(j);
                        fprintf(stderr, "vigil eventlog: %s\n",
                                j ? "write error" : vg_error_str(&err));
                        return 1;
                }
                json_decref(j);
                putchar('\n');
                return fflush(stdout) == 0 ? 0 : 1;
        }
        if (vg_evlog_print(log, stdout, &err) < 0) {
                fprintf(stderr, "vigil eventlog: %s\n", vg_error_str(&err));
                return 1;
        }
        return 0;
}

static int eventlog_replay(const char *file, const char *pcrs_arg, const char *bank_arg)
{
        _cleanup_(vg_evlog_freep) struct vg_evlog *log = NULL;
        _cleanup_free_ struct vg_evlog_pcrs *pcrs = NULL;
        struct vg_error err = { 0 };
        bool sel[VG_EVLOG_PCRS];
        uint16_t bank_id = 0;

        if (pcrs_arg && parse_pcr_list(pcrs_arg, sel) < 0)
                return cli_usage_error("eventlog",
                                       "--pcrs %s: expected a list such as 0,4,7 or "
                                       "0-7 of PCRs 0..23",
                                       pcrs_arg);
        if (bank_arg && vg_evlog_alg_from_name(bank_arg, &bank_id) < 0)
                return cli_usage_error("eventlog", "--bank %s: unknown algorithm", bank_arg);
        if (vg_evlog_load(file, &log, &err) < 0) {
                fprintf(stderr, "vigil eventlog: %s\n", vg_error_str(&err));
                return 1;
        }
        pcrs = malloc(sizeof(*pcrs));
        if (!pcrs || vg_evlog_replay(log, SIZE_MAX, pcrs, &err) < 0) {
                fprintf(stderr, "vigil eventlog: %s\n",
                        pcrs ? vg_error_str(&err) : "out of memory");
                return 1;
        }
        if (bank_arg && !vg_evlog_pcrs_bank(pcrs, bank_id)) {
                fprintf(stderr, "vigil eventlog: %s: the log has no %s bank\n", file, bank_arg);
                return 1;
        }
        for (unsigned k = 0; k < pcrs->n_banks; k++) {
                const struct vg_evlog_bank *b = &pcrs->banks[k];
                const char *name = vg_evlog_alg_name(b->alg_id);
                if (bank_arg && b->alg_id != bank_id)
                        continue;
                if (!b->replayed) {
                        fprintf(stderr, "vigil eventlog: bank 0x%04x cannot be replayed here\n",
                                b->alg_id);
                        continue;
                }
                for (uint32_t i = 0; i < VG_EVLOG_PCRS; i++) {
                        if (pcrs_arg ? !sel[i] : b->n_extends[i] == 0)
                                continue;
                        printf("%s PCR_%u ", name, i);
                        for (unsigned j = 0; j < b->size; j++)
                                printf("%02x", b->pcr[i][j]);
                        putchar('\n');
                }
        }
        return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_eventlog(int argc, char **argv)
{
        const char *verb = NULL, *file = NULL, *pcrs = NULL, *bank = NULL;
        bool json = false;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                        eventlog_help(stdout);
                        return 0;
                }
                if (strcmp(a, "--json") == 0) {
                        json = true;
                } else if (strcmp(a, "--pcrs") == 0 || strcmp(a, "--bank") == 0) {
                        if (i + 1 >= argc)
                                return cli_usage_error("eventlog", "%s needs a value", a);
                        *(a[2] == 'p' ? &pcrs : &bank) = argv[++i];
                } else if (strncmp(a, "--pcrs=", 7) == 0) {
                        pcrs = a + 7;
                } else if (strncmp(a, "--bank=", 7) == 0) {
                        bank = a + 7;
                } else if (a[0] == '-' && a[1]) {
                        return cli_usage_error("eventlog", "unknown option %s", a);
                } else if (!verb) {
                        verb = a;
                } else if (!file) {
                        file = a;
                } else {
                        return cli_usage_error("eventlog", "unexpected argument %s", a);
                }
        }
        if (!verb)
                return cli_usage_error("eventlog", "expected show or replay");
        if (strcmp(verb, "show") != 0 && strcmp(verb, "replay") != 0)
                return cli_usage_error("eventlog", "unknown command %s (show, replay)", verb);
        if (!file)
                return cli_usage_error("eventlog", "%s needs a FILE", verb);
        if (verb[0] == 's') {
                if (pcrs || bank)
                        return cli_usage_error("eventlog", "--pcrs and --bank are for replay");
                return eventlog_show(file, json);
        }
        if (json)
                return cli_usage_error("eventlog", "--json is for show");
        return eventlog_replay(file, pcrs, bank);
}
