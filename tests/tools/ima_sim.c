/* vigil-ima-sim: a test tool standing in for the kernel's IMA. It appends ima-ng / ima-sig
 * entries to an ASCII measurement list and extends the same template data into PCR 10. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "cleanup.h"
#include "encoding.h"
#include "hash.h"

static const char usage[] =
    "Usage: vigil-ima-sim --log FILE --tcti TCTI [--template ima-ng|ima-sig]\n"
    "                     [--hash sha256|sha1] COMMAND [ARGS...]\n"
    "\n"
    "A test tool that does what the kernel's IMA does when a file is measured: append one\n"
    "line to an ASCII measurement list (ascii_runtime_measurements format) and then extend\n"
    "the hash of the same template data into PCR 10 of the TPM, in every active bank\n"
    "(SHA-1 bank: SHA-1 of the template data, SHA-256 bank: SHA-256 of it, ...), with one\n"
    "TPM2_PCR_Extend per entry. A line is always in the file before its extend.\n"
    "\n"
    "Commands:\n"
    "  boot                    the boot_aggregate entry: for sha256, SHA-256 over PCRs 0-9\n"
    "                          of the sha256 bank (Linux >= 5.8); for sha1, SHA-1 over PCRs\n"
    "                          0-7 of the sha1 bank. Prints the digest in hex.\n"
    "  exec PATH...            measure files under their absolute paths\n"
    "  exec-as TARGET=LOCAL... measure LOCAL's content under the path TARGET\n"
    "  record PATH HEX [SIG]   an entry with this file digest (and ima-sig signature, hex)\n"
    "  violation PATH          a ToMToU/open-writers entry: all-zero template hash and file\n"
    "                          digest in the log, 0xFF... extended into every bank\n"
    "  burst --rate N --duration S [--inject-at K BADFILE] FILE...\n"
    "                          append N entries a second, round-robin over FILEs (PATH or\n"
    "                          TARGET=LOCAL), for S seconds; with --inject-at, an entry for\n"
    "                          BADFILE (PATH or TARGET=LOCAL) goes in after the K-th entry.\n"
    "                          Entries that fall behind the pace (the TPM busy with a quote)\n"
    "                          are dropped, not extended back to back later. Prints the\n"
    "                          entries written and the rate achieved.\n"
    "\n"
    "  --log FILE        the measurement list to append to (created if missing)\n"
    "  --tcti TCTI       the TPM, as tpm2-tools' -T takes it (swtpm:path=...)\n"
    "  --template NAME   ima-ng (default) or ima-sig (signature field empty unless given)\n"
    "  --hash ALG        file digest algorithm: sha256 (default) or sha1\n"
    "  -h, --help        show this text\n"
    "\n"
    "Exit status: 0 on success, 1 on failure (the reason on stderr), 2 on a usage error.\n";

#define IMA_PCR    10
#define MAX_BANKS  4
#define BATCH_MAX  256    /* lines written (and flushed) before their extends in a burst */
#define MAX_LAG    0.0002 /* seconds a burst may fall behind before entries are dropped */
#define NAME_MAX_L 4096

struct sim {
        FILE *log;
        const char *log_path;
        ESYS_CONTEXT *esys;
        TSS2_TCTI_CONTEXT *tcti;
        bool sig_template;
        enum vg_hash_alg file_alg;
        enum vg_hash_alg banks[MAX_BANKS]; /* the TPM's active PCR banks */
        size_t n_banks;
};

/* One measurement, ready to be written and extended any number of times. */
struct entry {
        char *line;                /* with its '\n' */
        TPML_DIGEST_VALUES extend; /* one digest per active bank */
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
        va_list ap;

        fputs("vigil-ima-sim: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the TPM ---- */

static void tpm_open(struct sim *s, const char *tcti)
{
        TPMI_YES_NO more = 0;
        TPMS_CAPABILITY_DATA *cap = NULL;
        TSS2_RC rc;

        rc = Tss2_TctiLdr_Initialize(tcti, &s->tcti);
        if (rc != TSS2_RC_SUCCESS)
                die("cannot open the TPM through TCTI \"%s\" (0x%x)", tcti, rc);
        rc = Esys_Initialize(&s->esys, s->tcti, NULL);
        if (rc != TSS2_RC_SUCCESS)
                die("Esys_Initialize on \"%s\" failed (0x%x)", tcti, rc);
        rc = Esys_GetCapability(s->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS, 0,
                                1, &more, &cap);
        if (rc != TSS2_RC_SUCCESS)
                die("TPM2_GetCapability(PCRS) on \"%s\" failed (0x%x)", tcti, rc);
        /* The kernel extends every allocated bank; one whose PCR 10 is not selected is not. */
        for (UINT32 i = 0; i < cap->data.assignedPCR.count; i++) {
                const TPMS_PCR_SELECTION *sel = &cap->data.assignedPCR.pcrSelections[i];
                enum vg_hash_alg alg;

                if (sel->sizeofSelect < 2 || !(sel->pcrSelect[IMA_PCR / 8] & (1u << IMA_PCR % 8)))
                        continue;
                if (vg_hash_alg_from_tpm_id(sel->hash, &alg) < 0 || s->n_banks == MAX_BANKS)
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

static void tpm_extend(struct sim *s, const TPML_DIGEST_VALUES *v)
{
        TSS2_RC rc = Esys_PCR_Extend(s->esys, ESYS_TR_PCR0 + IMA_PCR, ESYS_TR_PASSWORD,
                                     ESYS_TR_NONE, ESYS_TR_NONE, v);

        if (rc != TSS2_RC_SUCCESS)
                die("TPM2_PCR_Extend of PCR %d failed (0x%x)", IMA_PCR, rc);
}

/* PCRs first..last of one bank, in order, each vg_hash_size(alg) bytes, into out. */
static void tpm_pcr_read(struct sim *s, enum vg_hash_alg alg, unsigned first, unsigned last,
                         uint8_t *out)
{
        size_t size = vg_hash_size(alg);

        for (unsigned pcr = first; pcr <= last; pcr++) {
                TPML_PCR_SELECTION sel = { .count = 1 };
                TPML_DIGEST *values = NULL;
                TSS2_RC rc;

                sel.pcrSelections[0].hash = vg_hash_tpm_alg_id(alg);
                sel.pcrSelections[0].sizeofSelect = 3;
                sel.pcrSelections[0].pcrSelect[pcr / 8] = (uint8_t)(1u << pcr % 8);
                rc = Esys_PCR_Read(s->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL,
                                   NULL, &values);
                if (rc != TSS2_RC_SUCCESS)
                        die("TPM2_PCR_Read of %s PCR %u failed (0x%x)", vg_hash_alg_name(alg), pcr,
                            rc);
                if (values->count != 1 || values->digests[0].size != size) {
                        Esys_Free(values);
                        die("the %s bank is not active: PCR %u cannot be read",
                            vg_hash_alg_name(alg), pcr);
                }
                memcpy(out + (pcr - first) * size, values->digests[0].buffer, size);
                Esys_Free(values);
        }
}

/* ---- entries ---- */

static void put_le32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
}

/*
 * The template data exactly as the kernel hashes it (ima_calc_field_array_hash_tfm): for each
 * field a u32 length in host order (little-endian here), then its bytes. d-ng is "<alg>:\0"
 * and the digest, n-ng the path with its NUL, ima-sig's sig the signature bytes (maybe none).
 */
static uint8_t *template_data(const struct sim *s, const uint8_t *digest, const char *path,
                              const uint8_t *sig, size_t sig_len, size_t *len)
{
        const char *alg = vg_hash_alg_name(s->file_alg);
        size_t alg_len = strlen(alg) + 2, dsize = vg_hash_size(s->file_alg);
        size_t path_len = strlen(path) + 1;
        size_t n = 4 + alg_len + dsize + 4 + path_len + (s->sig_template ? 4 + sig_len : 0);
        uint8_t *t = calloc(1, n), *p = t;

        if (!t)
                die("out of memory");
        put_le32(p, (uint32_t)(alg_len + dsize));
        p += 4;
        memcpy(p, alg, alg_len - 2);
        p[alg_len - 2] = ':';
        p += alg_len; /* and the NUL calloc left */
        memcpy(p, digest, dsize);
        p += dsize;
        put_le32(p, (uint32_t)path_len);
        p += 4;
        memcpy(p, path, path_len);
        p += path_len;
        if (s->sig_template) {
                put_le32(p, (uint32_t)sig_len);
                p += 4;
                if (sig_len)
                        memcpy(p, sig, sig_len);
        }
        *len = n;
        return t;
}

/* Build the entry for (digest, path, sig); violation: the kernel's ToMToU record. */
static void entry_make(const struct sim *s, const uint8_t *digest, const char *path,
                       const uint8_t *sig, size_t sig_len, bool violation, struct entry *e)
{
        uint8_t sha1[VG_HASH_MAX_SIZE];
        _cleanup_free_ uint8_t *t = NULL;
        _cleanup_free_ char *th = NULL, *dh = NULL, *sh = NULL;
        size_t len;

        if (!*path || strlen(path) >= NAME_MAX_L || strpbrk(path, "\n"))
                die("not a path IMA would record: \"%s\"", path);
        t = template_data(s, digest, path, sig, sig_len, &len);
        memset(e, 0, sizeof(*e));
        e->extend.count = (UINT32)s->n_banks;
        for (size_t i = 0; i < s->n_banks; i++) {
                TPMT_HA *ha = &e->extend.digests[i];

                ha->hashAlg = vg_hash_tpm_alg_id(s->banks[i]);
                /* A violation invalidates the PCR: 0xFF... instead of the template hash. */
                if (violation)
                        memset(&ha->digest, 0xff, vg_hash_size(s->banks[i]));
                else if (vg_hash(s->banks[i], t, len, (uint8_t *)&ha->digest) < 0)
                        die("cannot hash with %s", vg_hash_alg_name(s->banks[i]));
        }
        /* Column 2 is always SHA-1 of the template data; a violation shows zeros. */
        if (violation)
                memset(sha1, 0, 20);
        else if (vg_hash(VG_HASH_SHA1, t, len, sha1) < 0)
                die("cannot hash with sha1");
        th = vg_hex_encode(sha1, 20);
        dh = vg_hex_encode(digest, vg_hash_size(s->file_alg));
        sh = vg_hex_encode(sig, sig_len);
        if (!th || !dh || !sh)
                die("out of memory");
        /* ima_ascii_measurements_show(): " " before every field, a field's text only when it
         * is not empty, so ima-sig without a signature ends in "path ". */
        if (asprintf(&e->line, "%d %s %s %s:%s %s%s%s\n", IMA_PCR, th,
                     s->sig_template ? "ima-sig" : "ima-ng", vg_hash_alg_name(s->file_alg), dh,
                     path, s->sig_template ? " " : "", sh) < 0)
                die("out of memory");
}

static void entry_clear(struct entry *e)
{
        free(e->line);
        e->line = NULL;
}

/* The entry for a file on disk, recorded under `target`. */
static void entry_for_file(const struct sim *s, const char *target, const char *local,
                           struct entry *e)
{
        uint8_t d[VG_HASH_MAX_SIZE];
        int r = vg_hash_file(s->file_alg, local, d);

        if (r < 0)
                die("cannot read %s: %s", local, strerror(-r));
        entry_make(s, d, target, NULL, 0, false, e);
}

/* "PATH" (recorded under its absolute path) or "TARGET=LOCAL". */
static void entry_for_arg(const struct sim *s, const char *arg, bool allow_as, struct entry *e)
{
        const char *eq = allow_as ? strchr(arg, '=') : NULL;
        char real[PATH_MAX];

        if (eq) {
                _cleanup_free_ char *target = strndup(arg, (size_t)(eq - arg));

                if (!target)
                        die("out of memory");
                if (target[0] != '/')
                        die("%s: the target path must be absolute", arg);
                entry_for_file(s, target, eq + 1, e);
                return;
        }
        if (!realpath(arg, real))
                die("cannot resolve %s: %s", arg, strerror(errno));
        entry_for_file(s, real, real, e);
}

/* Append lines (one write, flushed) and only then extend each, in order: the kernel's order,
 * so a reader may see the list ahead of PCR 10 but never behind it. */
static void emit(struct sim *s, struct entry *const *batch, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (fputs(batch[i]->line, s->log) == EOF)
                        die("cannot write %s: %s", s->log_path, strerror(errno));
        if (fflush(s->log) != 0)
                die("cannot write %s: %s", s->log_path, strerror(errno));
        for (size_t i = 0; i < n; i++)
                tpm_extend(s, &batch[i]->extend);
}

static void emit_one(struct sim *s, struct entry *e)
{
        emit(s, &e, 1);
        entry_clear(e);
}

/* ---- commands ---- */

static int cmd_boot(struct sim *s)
{
        /* ima_calc_boot_aggregate_tfm(): PCRs 0-7, plus 8-9 for every bank but SHA-1 (Linux
         * 5.8, "ima: extend boot_aggregate with kernel measurements"). */
        unsigned last = s->file_alg == VG_HASH_SHA1 ? 7 : 9;
        uint8_t pcrs[10 * VG_HASH_MAX_SIZE], agg[VG_HASH_MAX_SIZE];
        _cleanup_free_ char *hex = NULL;
        struct entry e;

        tpm_pcr_read(s, s->file_alg, 0, last, pcrs);
        if (vg_hash(s->file_alg, pcrs, (last + 1) * vg_hash_size(s->file_alg), agg) < 0)
                die("cannot hash");
        entry_make(s, agg, "boot_aggregate", NULL, 0, false, &e);
        emit_one(s, &e);
        hex = vg_hex_encode(agg, vg_hash_size(s->file_alg));
        if (!hex)
                die("out of memory");
        printf("%s\n", hex);
        return 0;
}

static int cmd_exec(struct sim *s, int argc, char **argv, bool as)
{
        if (argc < 1)
                die("%s needs at least one %s", as ? "exec-as" : "exec",
                    as ? "TARGET=LOCAL" : "PATH");
        for (int i = 0; i < argc; i++) {
                struct entry e;

                if (as && !strchr(argv[i], '='))
                        die("exec-as: expected TARGET=LOCAL, found \"%s\"", argv[i]);
                entry_for_arg(s, argv[i], as, &e);
                emit_one(s, &e);
        }
        return 0;
}

static int cmd_record(struct sim *s, int argc, char **argv)
{
        uint8_t d[VG_HASH_MAX_SIZE];
        _cleanup_free_ uint8_t *sig = NULL;
        size_t sig_len = 0, dsize = vg_hash_size(s->file_alg);
        struct entry e;

        if (argc < 2 || argc > 3)
                die("record needs PATH HEX [SIGHEX]");
        if (vg_hex_decode_exact(argv[1], strlen(argv[1]), d, dsize) < 0)
                die("record: \"%s\" is not a %zu-byte %s digest in hex", argv[1], dsize,
                    vg_hash_alg_name(s->file_alg));
        if (argc == 3) {
                if (!s->sig_template)
                        die("record: a signature needs --template ima-sig");
                if (vg_hex_decode(argv[2], strlen(argv[2]), &sig, &sig_len) < 0)
                        die("record: the signature \"%.40s\" is not hex", argv[2]);
        }
        entry_make(s, d, argv[0], sig, sig_len, false, &e);
        emit_one(s, &e);
        return 0;
}

static int cmd_violation(struct sim *s, int argc, char **argv)
{
        uint8_t zero[VG_HASH_MAX_SIZE] = { 0 };
        struct entry e;

        if (argc != 1)
                die("violation needs one PATH");
        entry_make(s, zero, argv[0], NULL, 0, true, &e);
        emit_one(s, &e);
        return 0;
}

static long parse_long(const char *what, const char *s, long min)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min)
                die("%s must be a whole number >= %ld, found \"%s\"", what, min, s);
        return v;
}

static int cmd_burst(struct sim *s, int argc, char **argv)
{
        static const struct option opts[] = {
                { "rate", required_argument, NULL, 'r' },
                { "duration", required_argument, NULL, 'd' },
                { "inject-at", required_argument, NULL, 'i' },
                { NULL, 0, NULL, 0 },
        };
        long rate = 0, duration = 0, inject_at = -1;
        const char *bad = NULL;
        struct entry *files, bad_entry = { 0 };
        struct entry *batch[BATCH_MAX];
        unsigned long long written = 0, total;
        size_t n_files, next = 0;
        double start, origin, elapsed;
        int c;

        optind = 1;
        while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
                switch (c) {
                case 'r':
                        rate = parse_long("--rate", optarg, 1);
                        break;
                case 'd':
                        duration = parse_long("--duration", optarg, 1);
                        break;
                case 'i':
                        inject_at = parse_long("--inject-at", optarg, 0);
                        if (optind >= argc)
                                die("--inject-at K needs the FILE to inject after it");
                        bad = argv[optind++];
                        break;
                default:
                        fputs(usage, stderr);
                        exit(2);
                }
        }
        if (!rate || !duration || optind >= argc)
                die("burst needs --rate N --duration S and at least one FILE");
        n_files = (size_t)(argc - optind);
        files = calloc(n_files, sizeof(*files));
        if (!files)
                die("out of memory");
        /* Hash every file once: each of its entries is the same line and the same extend. */
        for (size_t i = 0; i < n_files; i++)
                entry_for_arg(s, argv[optind + (int)i], true, &files[i]);
        if (bad)
                entry_for_arg(s, bad, true, &bad_entry);

        total = (unsigned long long)rate * (unsigned long long)duration;
        /* Entry k is due at origin + k / rate. When the TPM was busy (a quote takes
         * milliseconds), what fell behind by more than MAX_LAG is dropped from the schedule
         * instead of being extended back to back: measurements are late, not doubled up. */
        start = now();
        origin = start;
        for (;;) {
                double t = now(), lag = t - (origin + (double)written / (double)rate);
                size_t n = 0;

                if (written >= total || t - start >= (double)duration)
                        break;
                if (lag > MAX_LAG)
                        origin += lag - MAX_LAG;
                else if (lag < 0) {
                        /* Ahead of the pace: sleep until the next entry is due. */
                        struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)(-lag * 1e9) };
                        if (ts.tv_nsec >= 1000000000L)
                                ts.tv_nsec = 999999999L;
                        nanosleep(&ts, NULL);
                        continue;
                }
                unsigned long long due = (unsigned long long)((t - origin) * (double)rate) + 1;
                if (due > total)
                        due = total;
                while (written + n < due && n < BATCH_MAX) {
                        if (bad && written + n == (unsigned long long)inject_at &&
                            n + 1 < BATCH_MAX) {
                                batch[n++] = &bad_entry;
                                printf("injected after %ld entries: %s", inject_at, bad_entry.line);
                                bad = NULL;
                                continue;
                        }
                        batch[n++] = &files[next];
                        next = (next + 1) % n_files;
                }
                emit(s, batch, n);
                written += n;
        }
        elapsed = now() - start;
        printf("burst: %llu entries in %.2f s, %.0f entries/s\n", written, elapsed,
               elapsed > 0 ? (double)written / elapsed : 0.0);
        for (size_t i = 0; i < n_files; i++)
                entry_clear(&files[i]);
        entry_clear(&bad_entry);
        free(files);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "log", required_argument, NULL, 'l' },
                { "tcti", required_argument, NULL, 't' },
                { "template", required_argument, NULL, 'T' },
                { "hash", required_argument, NULL, 'H' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        struct sim s = { .file_alg = VG_HASH_SHA256 };
        const char *tcti = NULL, *cmd;
        int c, r;

        /* "+": stop at the command, whose own options (burst --rate) come after it. */
        while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
                switch (c) {
                case 'l':
                        s.log_path = optarg;
                        break;
                case 't':
                        tcti = optarg;
                        break;
                case 'T':
                        if (strcmp(optarg, "ima-ng") == 0)
                                s.sig_template = false;
                        else if (strcmp(optarg, "ima-sig") == 0)
                                s.sig_template = true;
                        else
                                die("--template must be ima-ng or ima-sig, found \"%s\"", optarg);
                        break;
                case 'H':
                        if (strcmp(optarg, "sha256") == 0)
                                s.file_alg = VG_HASH_SHA256;
                        else if (strcmp(optarg, "sha1") == 0)
                                s.file_alg = VG_HASH_SHA1;
                        else
                                die("--hash must be sha256 or sha1, found \"%s\"", optarg);
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        fputs(usage, stderr);
                        return 2;
                }
        }
        if (optind >= argc || !s.log_path || !tcti) {
                fprintf(stderr, "vigil-ima-sim: --log, --tcti and a COMMAND are required\n%s",
                        usage);
                return 2;
        }
        cmd = argv[optind];
        argc -= optind + 1;
        argv += optind + 1;
        if (strcmp(cmd, "boot") && strcmp(cmd, "exec") && strcmp(cmd, "exec-as") &&
            strcmp(cmd, "record") && strcmp(cmd, "violation") && strcmp(cmd, "burst")) {
                fprintf(stderr, "vigil-ima-sim: unknown command \"%s\"\n%s", cmd, usage);
                return 2;
        }
        s.log = fopen(s.log_path, "ae");
        if (!s.log)
                die("cannot open %s: %s", s.log_path, strerror(errno));
        /* Large enough for a burst batch, so that one flush is one write(). */
        setvbuf(s.log, NULL, _IOFBF, 1 << 20);
        tpm_open(&s, tcti);

        if (strcmp(cmd, "boot") == 0)
                r = argc == 0 ? cmd_boot(&s) : (die("boot takes no arguments"), 1);
        else if (strcmp(cmd, "exec") == 0)
                r = cmd_exec(&s, argc, argv, false);
        else if (strcmp(cmd, "exec-as") == 0)
                r = cmd_exec(&s, argc, argv, true);
        else if (strcmp(cmd, "record") == 0)
                r = cmd_record(&s, argc, argv);
        else if (strcmp(cmd, "violation") == 0)
                r = cmd_violation(&s, argc, argv);
        else
                r = cmd_burst(&s, argc + 1, argv - 1); /* getopt wants a program name first */

        tpm_close(&s);
        if (fclose(s.log) != 0)
                die("cannot write %s: %s", s.log_path, strerror(errno));
        return r;
}
