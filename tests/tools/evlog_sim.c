/* vigil-evlog-sim: a test tool standing in for the firmware. It replays a real TCG event log
 * into the PCRs of a (software) TPM, extends extra digests, and writes tampered copies of a log. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "cleanup.h"
#include "encoding.h"
#include "eventlog.h"
#include "hash.h"

static const char usage[] =
    "Usage: vigil-evlog-sim [--tcti TCTI] COMMAND [ARGS...]\n"
    "\n"
    "A test tool that does what firmware and boot loaders do to the TPM during a measured\n"
    "boot: extend, event by event, the digests a TCG PC Client event log records.\n"
    "\n"
    "Commands:\n"
    "  replay LOG [--pcrs LIST]  extend each event's digest into its PCR, in log order, with\n"
    "                            one TPM2_PCR_Extend per event carrying the digest of every\n"
    "                            bank both the TPM and the log have; EV_NO_ACTION events are\n"
    "                            not extended. LIST (default 0-9,11-15) limits the PCRs, e.g.\n"
    "                            \"0-9,14\". A fresh TPM is needed (PCRs at their reset value);\n"
    "                            a log whose StartupLocality is not 0 cannot be reproduced.\n"
    "                            Prints the events extended per PCR.\n"
    "  extend PCR TEXT           extend SHA-x(TEXT) into PCR in every active bank (an\n"
    "                            unlogged measurement). Prints the sha256 digest.\n"
    "  tamper IN OUT EVENT       copy the log IN to OUT with the first byte of every digest of\n"
    "                            event EVENT (its index, as `vigil eventlog show` numbers\n"
    "                            them) inverted. Needs no TPM. Prints the event's PCR and type.\n"
    "\n"
    "  --tcti TCTI   the TPM, as tpm2-tools' -T takes it (swtpm:path=...)\n"
    "  -h, --help    show this text\n"
    "\n"
    "Exit status: 0 on success, 1 on failure (the reason on stderr), 2 on a usage error.\n";

#define MAX_BANKS 8

struct sim {
        ESYS_CONTEXT *esys;
        TSS2_TCTI_CONTEXT *tcti;
        enum vg_hash_alg banks[MAX_BANKS]; /* the TPM's active PCR banks */
        size_t n_banks;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
        va_list ap;

        fputs("vigil-evlog-sim: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

static __attribute__((noreturn)) void usage_error(const char *what)
{
        fprintf(stderr, "vigil-evlog-sim: %s\n%s", what, usage);
        exit(2);
}

static void tpm_open(struct sim *s, const char *tcti)
{
        TPMI_YES_NO more = 0;
        TPMS_CAPABILITY_DATA *cap = NULL;
        TSS2_RC rc;

        if (!tcti)
                usage_error("--tcti is required for this command");
        if ((rc = Tss2_TctiLdr_Initialize(tcti, &s->tcti)) != TSS2_RC_SUCCESS)
                die("cannot open the TPM through TCTI \"%s\" (0x%x)", tcti, rc);
        if ((rc = Esys_Initialize(&s->esys, s->tcti, NULL)) != TSS2_RC_SUCCESS)
                die("Esys_Initialize on \"%s\" failed (0x%x)", tcti, rc);
        rc = Esys_GetCapability(s->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS, 0,
                                1, &more, &cap);
        if (rc != TSS2_RC_SUCCESS)
                die("TPM2_GetCapability(PCRS) on \"%s\" failed (0x%x)", tcti, rc);
        for (UINT32 i = 0; i < cap->data.assignedPCR.count; i++) {
                const TPMS_PCR_SELECTION *sel = &cap->data.assignedPCR.pcrSelections[i];
                enum vg_hash_alg alg;
                bool any = false;

                for (unsigned j = 0; j < sel->sizeofSelect; j++)
                        any = any || sel->pcrSelect[j];
                if (!any || vg_hash_alg_from_tpm_id(sel->hash, &alg) < 0 || s->n_banks == MAX_BANKS)
                        continue;
                s->banks[s->n_banks++] = alg;
        }
        Esys_Free(cap);
        if (s->n_banks == 0)
                die("the TPM on \"%s\" has no active PCR bank this tool knows", tcti);
}

static void tpm_close(struct sim *s)
{
        if (s->esys)
                Esys_Finalize(&s->esys);
        if (s->tcti)
                Tss2_TctiLdr_Finalize(&s->tcti);
}

static void tpm_extend(struct sim *s, unsigned pcr, const TPML_DIGEST_VALUES *v)
{
        TSS2_RC rc = Esys_PCR_Extend(s->esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                     ESYS_TR_NONE, v);

        if (rc != TSS2_RC_SUCCESS)
                die("TPM2_PCR_Extend of PCR %u failed (0x%x)", pcr, rc);
}

/* "0-9,11-15" into a bit mask of PCRs 0..23. */
static uint32_t parse_pcrs(const char *s)
{
        uint32_t mask = 0;
        char *end;

        while (*s) {
                long a = strtol(s, &end, 10), b;
                if (end == s || a < 0 || a > 23)
                        usage_error("--pcrs: expected a list such as 0-9,14");
                b = a;
                if (*end == '-') {
                        s = end + 1;
                        b = strtol(s, &end, 10);
                        if (end == s || b < a || b > 23)
                                usage_error("--pcrs: expected a list such as 0-9,14");
                }
                for (long i = a; i <= b; i++)
                        mask |= 1u << i;
                if (*end == ',')
                        end++;
                else if (*end)
                        usage_error("--pcrs: expected a list such as 0-9,14");
                s = end;
        }
        return mask;
}

static struct vg_evlog *load(const char *path)
{
        struct vg_evlog *log = NULL;
        struct vg_error err = { 0 };

        if (vg_evlog_load(path, &log, &err) < 0)
                die("%s", vg_error_str(&err));
        return log;
}

static int cmd_replay(struct sim *s, const char *path, uint32_t pcrs)
{
        struct vg_evlog *log = load(path);
        unsigned counts[VG_EVLOG_PCRS] = { 0 }, total = 0, skipped = 0;

        if (log->startup_locality > 0)
                die("%s: StartupLocality %d: PCR 0 would start at ...0%d, which TPM2_PCR_Extend "
                    "cannot reproduce",
                    path, log->startup_locality, log->startup_locality);
        for (size_t i = 0; i < log->n_events; i++) {
                const struct vg_evlog_event *ev = &log->events[i];
                TPML_DIGEST_VALUES v = { 0 };

                if (ev->type == VG_EV_NO_ACTION || ev->pcr >= VG_EVLOG_PCRS)
                        continue;
                if (ev->type == VG_EV_EFI_HCRTM_EVENT)
                        die("%s: event %zu is an H-CRTM event, which only the platform can "
                            "start PCR 0 with",
                            path, i);
                if (!(pcrs & (1u << ev->pcr))) {
                        skipped++;
                        continue;
                }
                for (size_t b = 0; b < s->n_banks; b++) {
                        uint16_t id = vg_hash_tpm_alg_id(s->banks[b]);
                        const struct vg_evlog_digest *d = vg_evlog_event_digest(ev, id);
                        if (!d || d->size != vg_hash_size(s->banks[b]))
                                continue;
                        v.digests[v.count].hashAlg = id;
                        memcpy(&v.digests[v.count].digest, d->digest, d->size);
                        v.count++;
                }
                if (v.count == 0)
                        die("%s: event %zu has no digest of a bank the TPM has", path, i);
                tpm_extend(s, ev->pcr, &v);
                counts[ev->pcr]++;
                total++;
        }
        printf("%u events extended from %s (%u outside the PCRs chosen):", total, path, skipped);
        for (unsigned p = 0; p < VG_EVLOG_PCRS; p++)
                if (counts[p])
                        printf(" PCR %u: %u", p, counts[p]);
        printf("\n");
        vg_evlog_free(log);
        return 0;
}

static int cmd_extend(struct sim *s, const char *pcr_s, const char *text)
{
        TPML_DIGEST_VALUES v = { 0 };
        uint8_t sha256[32];
        char *end;
        long pcr = strtol(pcr_s, &end, 10);

        if (*end || pcr < 0 || pcr > 23)
                usage_error("extend: PCR must be 0..23");
        for (size_t b = 0; b < s->n_banks; b++) {
                v.digests[v.count].hashAlg = vg_hash_tpm_alg_id(s->banks[b]);
                if (vg_hash(s->banks[b], text, strlen(text),
                            (uint8_t *)&v.digests[v.count].digest) < 0)
                        die("cannot hash with %s", vg_hash_alg_name(s->banks[b]));
                v.count++;
        }
        tpm_extend(s, (unsigned)pcr, &v);
        vg_hash(VG_HASH_SHA256, text, strlen(text), sha256);
        _cleanup_free_ char *hex = vg_hex_encode(sha256, sizeof(sha256));
        printf("%s\n", hex ? hex : "");
        return 0;
}

static int cmd_tamper(const char *in, const char *out, const char *event_s)
{
        struct vg_evlog *log = load(in);
        char *end;
        long idx = strtol(event_s, &end, 10);
        FILE *f;

        if (*end || idx < 0 || (size_t)idx >= log->n_events)
                die("%s: no event %s (the log has %zu)", in, event_s, log->n_events);
        const struct vg_evlog_event *ev = &log->events[idx];
        if (ev->n_digests == 0)
                die("%s: event %ld carries no digest", in, idx);
        for (unsigned i = 0; i < ev->n_digests; i++) {
                size_t off = (size_t)(ev->digests[i].digest - log->raw);
                log->raw[off] ^= 0xff;
        }
        if (!(f = fopen(out, "wb")) || fwrite(log->raw, 1, log->raw_len, f) != log->raw_len ||
            fclose(f) != 0)
                die("%s: %s", out, strerror(errno));
        const char *name = vg_evlog_type_name(ev->type);
        printf("event %ld PCR %u %s\n", idx, ev->pcr, name ? name : "?");
        vg_evlog_free(log);
        return 0;
}

int main(int argc, char **argv)
{
        struct sim s = { 0 };
        const char *tcti = NULL;
        uint32_t pcrs = 0xFBFF; /* 0-9, 11-15 */
        int i = 1, r;

        for (; i < argc && argv[i][0] == '-'; i++) {
                if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                        fputs(usage, stdout);
                        return 0;
                } else if (strcmp(argv[i], "--tcti") == 0 && i + 1 < argc) {
                        tcti = argv[++i];
                } else {
                        usage_error("unknown option");
                }
        }
        if (i >= argc)
                usage_error("a command is required");
        const char *cmd = argv[i++];
        if (strcmp(cmd, "tamper") == 0) {
                if (argc - i != 3)
                        usage_error("tamper IN OUT EVENT");
                return cmd_tamper(argv[i], argv[i + 1], argv[i + 2]);
        }
        if (strcmp(cmd, "replay") == 0) {
                if (argc - i != 1 && !(argc - i == 3 && strcmp(argv[i + 1], "--pcrs") == 0))
                        usage_error("replay LOG [--pcrs LIST]");
                if (argc - i == 3)
                        pcrs = parse_pcrs(argv[i + 2]);
                tpm_open(&s, tcti);
                r = cmd_replay(&s, argv[i], pcrs);
        } else if (strcmp(cmd, "extend") == 0) {
                if (argc - i != 2)
                        usage_error("extend PCR TEXT");
                tpm_open(&s, tcti);
                r = cmd_extend(&s, argv[i], argv[i + 1]);
        } else {
                usage_error("unknown command");
        }
        tpm_close(&s);
        return r;
}
