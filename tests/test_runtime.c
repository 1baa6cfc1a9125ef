/* vigil tests: runtime attestation end to end. The IMA simulator against a bare swtpm (its log
 * replays to PCR 10 in both banks), the runtime-monitoring guide's scenario on a whole stack
 * (registrar, verifier, agent, tenant, policy), IMA tamper cases, and the burst test. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "encoding.h"
#include "hash.h"
#include "ima.h"
#include "stack.h"
#include "swtpm.h"
#include "tap.h"

#define FREE(p)                                                                                    \
        do {                                                                                       \
                free(p);                                                                           \
                (p) = NULL;                                                                        \
        } while (0)

/* The rate a burst must reach: 5000 entries/s (the figure), lowered only by
 * VIGIL_BURST_MIN_RATE for instrumented builds (scripts/check's ASan+UBSan run). */
static double burst_min_rate(void)
{
        const char *env = getenv("VIGIL_BURST_MIN_RATE");

        return env && atof(env) > 0 ? atof(env) : 5000;
}

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
        struct timespec ts = { .tv_sec = (time_t)s,
                               .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };

        nanosleep(&ts, NULL);
}

static void write_file(const char *path, const char *content, mode_t mode)
{
        if (tap_write_file(path, content) < 0 || chmod(path, mode) < 0)
                tap_bail("cannot write %s: %s", path, strerror(errno));
}

static void append_file(const char *path, const char *content)
{
        FILE *f = fopen(path, "a");

        if (!f || fputs(content, f) == EOF || fclose(f) != 0)
                tap_bail("cannot append to %s", path);
}

static size_t count_lines(const char *text)
{
        size_t n = 0;

        for (const char *p = text; p && *p; p++)
                n += *p == '\n';
        return n;
}

static char *hex(const uint8_t *p, size_t n)
{
        char *h = vg_hex_encode(p, n);

        if (!h)
                tap_bail("out of memory");
        return h;
}

/* ---- an independent model of the kernel's ima-ng entries (the oracle for the simulator) ---- */

struct model_entry {
        char *line;
        uint8_t sha1[20], sha256[32]; /* what the kernel extends into each bank */
};

/* ima-ng template data: u32le length + "sha256:\0" + digest, u32le length + path + "\0". */
static void model_ng(const char *path, const uint8_t digest[32], struct model_entry *m)
{
        size_t plen = strlen(path) + 1, n = 4 + 8 + 32 + 4 + plen;
        uint8_t *t = calloc(1, n);
        _cleanup_free_ char *th = NULL, *dh = NULL;

        if (!t)
                tap_bail("out of memory");
        t[0] = 40;
        memcpy(t + 4, "sha256:", 7);
        memcpy(t + 12, digest, 32);
        t[44] = (uint8_t)plen;
        t[45] = (uint8_t)(plen >> 8);
        memcpy(t + 48, path, plen);
        vg_hash(VG_HASH_SHA1, t, n, m->sha1);
        vg_hash(VG_HASH_SHA256, t, n, m->sha256);
        free(t);
        th = hex(m->sha1, 20);
        dh = hex(digest, 32);
        m->line = tap_strf("10 %s ima-ng sha256:%s %s\n", th, dh, path);
}

/* Replay PCR 10 of both banks over an ASCII list of ima-ng / ima-sig entries written by the
 * simulator, from the line text alone; false (with a diagnostic) if a template hash is off. */
static bool model_replay(const char *log, uint8_t sha1[20], uint8_t sha256[32])
{
        _cleanup_free_ char *copy = strdup(log);
        char *save = NULL;

        memset(sha1, 0, 20);
        memset(sha256, 0, 32);
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char th[41], tpl[16], dig[200], path[512], sig[512] = "";
                uint8_t t[2048], d1[20], d256[32], want[20], digest[64];
                size_t n = 0, dlen;
                int f = sscanf(line, "10 %40s %15s %199s %511s %511s", th, tpl, dig, path, sig);
                const char *colon = strchr(dig, ':');
                bool violation = strcmp(th, "0000000000000000000000000000000000000000") == 0;

                if (f < 4 || !colon) {
                        tap_diag("cannot model line: %s", line);
                        return false;
                }
                dlen = strlen(colon + 1) / 2;
                if (vg_hex_decode_exact(colon + 1, dlen * 2, digest, dlen) < 0)
                        return false;
                uint32_t l1 = (uint32_t)(colon - dig) + 2 + (uint32_t)dlen;
                memcpy(t + n, &l1, 4); /* little-endian host */
                n += 4;
                memcpy(t + n, dig, (size_t)(colon - dig) + 1);
                n += (size_t)(colon - dig) + 1;
                t[n++] = 0;
                memcpy(t + n, digest, dlen);
                n += dlen;
                uint32_t l2 = (uint32_t)strlen(path) + 1;
                memcpy(t + n, &l2, 4);
                n += 4;
                memcpy(t + n, path, l2);
                n += l2;
                if (strcmp(tpl, "ima-sig") == 0) {
                        uint32_t l3 = (uint32_t)strlen(sig) / 2;
                        memcpy(t + n, &l3, 4);
                        n += 4;
                        vg_hex_decode_exact(sig, l3 * 2, t + n, l3);
                        n += l3;
                }
                vg_hash(VG_HASH_SHA1, t, n, d1);
                vg_hash(VG_HASH_SHA256, t, n, d256);
                if (violation) {
                        memset(d1, 0xff, 20);
                        memset(d256, 0xff, 32);
                } else if (vg_hex_decode_exact(th, 40, want, 20) < 0 || memcmp(want, d1, 20)) {
                        tap_diag("template hash of this line is off: %s", line);
                        return false;
                }
                vg_hash_extend(VG_HASH_SHA1, sha1, d1);
                vg_hash_extend(VG_HASH_SHA256, sha256, d256);
        }
        return true;
}

/* PCR `pcr` of bank alg as tpm2_pcrread prints it, lower-case hex. */
static char *pcr_read(struct vg_swtpm *tpm, const char *dir, const char *alg, int pcr)
{
        _cleanup_free_ char *out = NULL;
        char *p, *h;

        if (vg_swtpm_sh(tpm, dir, &out, "tpm2_pcrread %s:%d", alg, pcr) != 0)
                tap_bail("tpm2_pcrread %s:%d failed: %s", alg, pcr, out ? out : "");
        p = strstr(out, "0x");
        if (!p)
                tap_bail("tpm2_pcrread printed no value: %s", out);
        h = strndup(p + 2, strcspn(p + 2, "\n \r"));
        for (char *c = h; *c; c++)
                *c = (char)(*c >= 'A' && *c <= 'F' ? *c - 'A' + 'a' : *c);
        return h;
}

/* ---- the simulator alone ---- */

static int sim_run(const char *log, const char *tcti, char **out, const char *arg0, ...)
    __attribute__((sentinel));
static int sim_run(const char *log, const char *tcti, char **out, const char *arg0, ...)
{
        const char *argv[40] = { getenv("VIGIL_IMA_SIM"), "--log", log, "--tcti", tcti };
        size_t n = 5;
        va_list ap;

        if (!argv[0])
                tap_bail("VIGIL_IMA_SIM is not set (run the tests through meson)");
        va_start(ap, arg0);
        for (const char *a = arg0; a && n < 39; a = va_arg(ap, const char *))
                argv[n++] = a;
        va_end(ap);
        argv[n] = NULL;
        return tap_run((char *const *)argv, out);
}

/* Does an offline vg_ima_verify of the whole log reach the quoted value in bank alg? */
static bool engine_matches(const char *log, enum vg_hash_alg alg, const char *pcr_hex)
{
        _cleanup_(vg_ima_state_freep) struct vg_ima_state *st = NULL;
        struct vg_ima_result res = { 0 };
        struct vg_error err = { 0 };
        uint8_t pcr[VG_HASH_MAX_SIZE];

        if (vg_hex_decode_exact(pcr_hex, strlen(pcr_hex), pcr, vg_hash_size(alg)) < 0 ||
            vg_ima_state_new(alg, &st) < 0)
                return false;
        if (vg_ima_verify(NULL, st, log, strlen(log), 0, pcr, NULL, &res, &err) < 0) {
                tap_diag("vg_ima_verify: %s", vg_error_str(&err));
                return false;
        }
        if (!res.pass || !res.pcr_matched || res.match_entry != count_lines(log))
                tap_diag(
                    "vg_ima_verify (%s): pass %d matched %d at %llu of %zu, template-hash %llu",
                    vg_hash_alg_name(alg), res.pass, res.pcr_matched,
                    (unsigned long long)res.match_entry, count_lines(log),
                    (unsigned long long)res.counts.template_hash);
        return res.pass && res.pcr_matched && res.match_entry == count_lines(log);
}

static void test_simulator(void)
{
        struct vg_swtpm_opts o = { .banks = VG_SWTPM_BANK_SHA1 | VG_SWTPM_BANK_SHA256 };
        _cleanup_swtpm_ struct vg_swtpm *tpm = NULL;
        _cleanup_free_ char *dir = tap_tmpdir(), *log = tap_strf("%s/ima.ascii", dir);
        _cleanup_free_ char *prog = tap_strf("%s/prog.sh", dir), *out = NULL, *text = NULL;
        _cleanup_free_ char *pcrs = NULL, *agg = NULL, *p1 = NULL, *p256 = NULL;
        _cleanup_free_ char *m1 = NULL, *m256 = NULL;
        struct vg_error err = { 0 };
        uint8_t r1[20], r256[32], zero_pcrs[10 * 32], ba[32], d[32];
        struct model_entry m = { 0 };
        const char *tcti;
        double rate = 0;

        if (vg_swtpm_start(&o, &tpm, &err) < 0)
                tap_bail("swtpm: %s", vg_error_str(&err));
        tcti = vg_swtpm_tcti(tpm);
        write_file(prog, "#!/bin/sh\necho hello\n", 0755);

        /* boot_aggregate: SHA-256 over PCRs 0-9 of the sha256 bank (0 made non-zero first). */
        vg_swtpm_sh(tpm, dir, NULL,
                    "tpm2_pcrextend 0:sha256=0101010101010101010101010101010101010101010101010101"
                    "010101010101");
        is_int(sim_run(log, tcti, &agg, "boot", NULL), 0, "ima-sim boot");
        vg_swtpm_sh(tpm, dir, &pcrs, "tpm2_pcrread -o pcrs.bin sha256:0,1,2,3,4,5,6,7,8,9");
        FREE(pcrs);
        size_t len = 0;
        pcrs = (char *)vg_swtpm_slurp(dir, "pcrs.bin", &len);
        if (pcrs && len == sizeof(zero_pcrs)) {
                vg_hash(VG_HASH_SHA256, pcrs, len, ba);
                FREE(out);
                out = hex(ba, 32);
                agg[strcspn(agg, "\n")] = '\0';
                is_str(agg, out, "it prints SHA-256(PCR 0 || ... || PCR 9) of the sha256 bank");
        } else {
                ok(false, "tpm2_pcrread -o gave %zu bytes of PCRs 0-9", len);
        }
        text = tap_read_file(log, NULL);
        FREE(out);
        out = tap_strf("ima-ng sha256:%s boot_aggregate\n", agg);
        contains(text, out, "and logs it as the boot_aggregate entry");
        FREE(text);
        FREE(out);

        is_int(sim_run(log, tcti, &out, "exec", prog, NULL), 0, "ima-sim exec FILE");
        FREE(out);
        _cleanup_free_ char *as_bad = tap_strf("/root/bad-script.sh=%s", prog);
        _cleanup_free_ char *as_burst = tap_strf("/root/bad-burst.sh=%s", prog);
        _cleanup_free_ char *as_a = tap_strf("/usr/bin/a=%s", prog);
        _cleanup_free_ char *as_b = tap_strf("/usr/bin/b=%s", prog);
        is_int(sim_run(log, tcti, &out, "exec-as", as_bad, NULL), 0,
               "ima-sim exec-as TARGET=LOCAL");
        FREE(out);
        is_int(sim_run(log, tcti, &out, "violation", "/var/log/messages", NULL), 0,
               "ima-sim violation");
        FREE(out);
        is_int(sim_run(log, tcti, &out, "--template", "ima-sig", "record", "/usr/bin/signed",
                       "0202020202020202020202020202020202020202020202020202020202020202",
                       "030204deadbeef", NULL),
               0, "ima-sim --template ima-sig record PATH HEX SIG");
        FREE(out);

        text = tap_read_file(log, NULL);
        vg_hash_file(VG_HASH_SHA256, prog, d);
        model_ng("/root/bad-script.sh", d, &m);
        contains(text, m.line,
                 "exec-as logs the local file's digest under the target path, as the kernel would");
        free(m.line);
        char *real = realpath(prog, NULL);
        model_ng(real, d, &m);
        contains(text, m.line, "exec logs the file under its absolute path");
        free(real);
        free(m.line);
        contains(text,
                 "10 0000000000000000000000000000000000000000 ima-ng sha256:"
                 "0000000000000000000000000000000000000000000000000000000000000000 "
                 "/var/log/messages\n",
                 "a violation has an all-zero template hash and digest");
        contains(text,
                 " ima-sig sha256:0202020202020202020202020202020202020202020202020202020202020202 "
                 "/usr/bin/signed 030204deadbeef\n",
                 "an ima-sig entry carries its signature in hex");

        p1 = pcr_read(tpm, dir, "sha1", 10);
        p256 = pcr_read(tpm, dir, "sha256", 10);
        ok(model_replay(text, r1, r256),
           "every template hash in the log is SHA-1 of its template data");
        m1 = hex(r1, 20);
        m256 = hex(r256, 32);
        is_str(p1, m1, "PCR 10 sha1 bank (tpm2_pcrread) = replay of the log");
        is_str(p256, m256, "PCR 10 sha256 bank (tpm2_pcrread) = replay of the log");
        ok(engine_matches(text, VG_HASH_SHA1, p1),
           "the verifier's IMA engine replays it to PCR 10 (sha1)");
        ok(engine_matches(text, VG_HASH_SHA256, p256), "and to PCR 10 (sha256)");
        FREE(text);

        /* A paced burst: one extend per entry, the injected file after entry 1000. */
        is_int(sim_run(log, tcti, &out, "burst", "--rate", "6500", "--duration", "2", "--inject-at",
                       "1000", as_burst, as_a, as_b, NULL),
               0, "ima-sim burst --rate 6500 --duration 2 --inject-at 1000");
        char *r = out ? strstr(out, "entries/s") : NULL;
        while (r && r > out && r[-1] == ' ')
                r--;
        while (r && r > out && (r[-1] == '.' || (r[-1] >= '0' && r[-1] <= '9')))
                r--;
        rate = r ? atof(r) : 0;
        tap_diag("%s", out ? out : "");
        ok(rate >= burst_min_rate(), "the burst sustains >= %.0f measurements/s (%.0f/s)",
           burst_min_rate(), rate);
        text = tap_read_file(log, NULL);
        const char *w = out ? strstr(out, "burst: ") : NULL;
        is_int(count_lines(text), 5 + (w ? atol(w + 7) : -1),
               "the log holds the entries it reports, the injected one among them");
        FREE(p1);
        FREE(p256);
        p1 = pcr_read(tpm, dir, "sha1", 10);
        p256 = pcr_read(tpm, dir, "sha256", 10);
        ok(engine_matches(text, VG_HASH_SHA1, p1) && engine_matches(text, VG_HASH_SHA256, p256),
           "after the burst PCR 10 still replays from the log in both banks");
        /* The injected entry is line 6 (boot, exec, exec-as, violation, ima-sig) + 1000 + 1. */
        const char *p = text;
        for (int i = 0; i < 5 + 1000 && p; i++) {
                p = strchr(p, '\n');
                p = p ? p + 1 : NULL;
        }
        _cleanup_free_ char *inj = p ? strndup(p, strcspn(p, "\n")) : NULL;
        const char *sp = inj ? strrchr(inj, ' ') : NULL;
        is_str(sp ? sp + 1 : "", "/root/bad-burst.sh",
               "the injected file is the entry right after the first 1000 of the burst");
        FREE(text);
        FREE(out);
}

/* ---- the stack ---- */

static const char *uuid_of(struct vg_stack *s)
{
        return s->uuid;
}

/* A key anywhere in a JSON document. */
static json_t *json_find(json_t *j, const char *key)
{
        const char *k;
        json_t *v, *r;
        size_t i;

        if (json_is_object(j)) {
                if ((v = json_object_get(j, key)))
                        return v;
                json_object_foreach (j, k, v)
                        if ((r = json_find(v, key)))
                                return r;
        } else if (json_is_array(j)) {
                json_array_foreach (j, i, v)
                        if ((r = json_find(v, key)))
                                return r;
        }
        return NULL;
}

struct cv {
        long long count, next_entry;
        char status[32], state[64];
        bool ok;
};

/* `vigil tenant -c cvstatus`: the verifier's view of the agent. */
static struct cv cv_status(struct vg_stack *s)
{
        _cleanup_free_ char *out = NULL;
        struct cv cv = { .count = -1, .next_entry = -1 };
        json_t *j, *v;
        const char *brace;

        vg_stack_tenant(s, &out, "-c", "cvstatus", "-u", uuid_of(s), NULL);
        brace = out ? strchr(out, '{') : NULL;
        j = brace ? json_loads(brace, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
        if (!j) {
                tap_diag("cvstatus: %s", out ? out : "(nothing)");
                return cv;
        }
        cv.ok = true;
        if ((v = json_find(j, "attestation_count")))
                cv.count = json_integer_value(v);
        if ((v = json_find(j, "ima_next_entry")))
                cv.next_entry = json_integer_value(v);
        if ((v = json_find(j, "attestation_status")))
                snprintf(cv.status, sizeof(cv.status), "%s", json_string_value(v));
        if ((v = json_find(j, "operational_state_str")))
                snprintf(cv.state, sizeof(cv.state), "%s", json_string_value(v));
        json_decref(j);
        return cv;
}

/* Wait until the verifier counts `more` attestations beyond `from` (PASS all along). */
static bool wait_attestations(struct vg_stack *s, long long from, long long more, double secs)
{
        double end = now() + secs;
        struct cv cv;

        do {
                cv = cv_status(s);
                if (cv.count >= from + more && strcmp(cv.status, "PASS") == 0)
                        return true;
                if (strcmp(cv.status, "FAIL") == 0)
                        return false;
                sleep_s(0.1);
        } while (now() < end);
        tap_diag("attestation_count %lld (wanted %lld), status %s", cv.count, from + more,
                 cv.status);
        return false;
}

static bool wait_status(struct vg_stack *s, const char *status, double secs)
{
        double end = now() + secs;

        do {
                struct cv cv = cv_status(s);
                if (strcmp(cv.status, status) == 0)
                        return true;
                sleep_s(0.1);
        } while (now() < end);
        return false;
}

static int sim(struct vg_stack *s, const char *arg0, ...) __attribute__((sentinel));
static int sim(struct vg_stack *s, const char *arg0, ...)
{
        const char *a[16] = { arg0 };
        _cleanup_free_ char *out = NULL;
        size_t n = 1;
        va_list ap;
        int r;

        va_start(ap, arg0);
        while (n < 15 && (a[n] = va_arg(ap, const char *)))
                n++;
        va_end(ap);
        a[n] = NULL;
        r = vg_stack_ima_sim(s, &out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
                             a[10], a[11], a[12], a[13], a[14], (char *)NULL);
        if (r != 0)
                tap_diag("vigil-ima-sim %s: exit %d: %s", arg0, r, out ? out : "");
        return r;
}

/* The "programs" of the demo: a small root filesystem. */
struct demo {
        char *rootfs, *allowlist, *exclude, *payload, *bad;
};

static void demo_files(struct vg_stack *s, struct demo *d)
{
        static const struct {
                const char *path, *content;
        } files[] = {
                { "usr/bin/hello", "#!/bin/sh\necho hello\n" },
                { "usr/bin/greet", "#!/bin/sh\necho \"greetings, $1\"\n" },
                { "usr/sbin/backup", "#!/bin/sh\ntar czf /var/backups/home.tgz /home\n" },
                { "usr/lib/libdemo.so.1", "\177ELF not really a library\n" },
                { "etc/demo.conf", "answer = 42\n" },
        };

        d->rootfs = tap_strf("%s/rootfs", s->dir);
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                _cleanup_free_ char *path = tap_strf("%s/%s", d->rootfs, files[i].path);
                _cleanup_free_ char *cmd = tap_strf("mkdir -p \"$(dirname '%s')\"", path);
                char *argv[] = { "sh", "-c", cmd, NULL };

                tap_run(argv, NULL);
                write_file(path, files[i].content, 0755);
        }
        d->allowlist = tap_strf("%s/allowlist.txt", s->dir);
        d->exclude = tap_strf("%s/excludelist.txt", s->dir);
        d->payload = tap_strf("%s/payload1", s->dir);
        d->bad = tap_strf("%s/bad-script.sh", s->dir);
        /* The guide's exclude example, and one for scratch files under /var/tmp. */
        write_file(d->exclude, "/tmp/.*\n/var/tmp/.*\n", 0644);
        /* payload1: a zip, which the agent unpacks into its secure directory (Keylime's
         * extract_payload_zip default). */
        _cleanup_free_ char *secret = tap_strf("%s/secret.txt", s->dir), *out = NULL;
        write_file(secret, "the secret the agent receives once it attests\n", 0600);
        /* (zip adds .zip to a name without an extension) */
        if (tap_runl(&out, "sh", "-c", "zip -q -j \"$0.zip\" \"$1\" && mv \"$0.zip\" \"$0\"",
                     d->payload, secret, (char *)NULL) != 0)
                tap_bail("zip failed: %s", out ? out : "");
        write_file(d->bad, "#!/bin/sh\n\necho -e \"Hello Evil!\"\n", 0755);
}

static void demo_free(struct demo *d)
{
        free(d->rootfs);
        free(d->allowlist);
        free(d->exclude);
        free(d->payload);
        free(d->bad);
}

/* The allowlist from the rootfs and the boot_aggregate in the IMA log, as the guide's
 * create_allowlist.sh does, with `vigil policy create`. */
static bool demo_policy(struct vg_stack *s, struct demo *d)
{
        _cleanup_free_ char *out = NULL, *text = NULL;
        int r;

        r = vg_stack_vigil(s, &out, "policy", "create", "--rootfs", d->rootfs, "--all-owners",
                           "--ima-log", s->ima_path, "--flat", "-o", d->allowlist, NULL);
        if (r != 0) {
                tap_diag("vigil policy create: exit %d: %s", r, out ? out : "");
                return false;
        }
        text = tap_read_file(d->allowlist, NULL);
        return text && strstr(text, "/usr/bin/hello") && strstr(text, "boot_aggregate");
}

/* tenant -c add as in the guide; returns the exit status. */
static int demo_add(struct vg_stack *s, struct demo *d, char **out)
{
        return vg_stack_tenant(s, out, "-c", "add", "-t", "127.0.0.1", "-v", "127.0.0.1", "-u",
                               uuid_of(s), "--allowlist", d->allowlist, "--exclude", d->exclude,
                               "-f", d->payload, NULL);
}

/* Byte offset of needle in the daemon's log, or -1. */
static long log_pos(const struct vg_stack_daemon *dm, const char *needle)
{
        _cleanup_free_ char *text = tap_read_file(dm->log, NULL);
        const char *p = text ? strstr(text, needle) : NULL;

        return p ? (long)(p - text) : -1;
}

static bool log_has(const struct vg_stack_daemon *dm, const char *needle)
{
        return log_pos(dm, needle) >= 0;
}

static char *log_line_with(const struct vg_stack_daemon *dm, const char *needle)
{
        _cleanup_free_ char *text = tap_read_file(dm->log, NULL);
        const char *p = text ? strstr(text, needle) : NULL, *b;

        if (!p)
                return NULL;
        for (b = p; b > text && b[-1] != '\n'; b--)
                ;
        return strndup(b, strcspn(b, "\n"));
}

/* A started stack with the boot entry logged, the demo files, policy and enrolment. */
static struct vg_stack *enrolled_stack(struct demo *d, const struct vg_stack_opts *opts)
{
        struct vg_stack *s;
        _cleanup_free_ char *out = NULL;

        vg_stack_start(opts, &s);
        demo_files(s, d);
        if (sim(s, "boot", NULL) != 0)
                tap_bail("the IMA simulator failed at boot");
        if (!demo_policy(s, d))
                tap_bail("vigil policy create failed");
        if (demo_add(s, d, &out) != 0) {
                vg_stack_daemon_show_log(&s->verifier);
                tap_bail("vigil tenant -c add failed: %s", out ? out : "");
        }
        if (!wait_attestations(s, 0, 1, 20)) {
                vg_stack_daemon_show_log(&s->verifier);
                tap_bail("the agent was not attested after enrolment");
        }
        return s;
}

static void test_demo_scenario(void)
{
        struct vg_stack *s;
        struct demo d = { 0 };
        _cleanup_free_ char *out = NULL, *secure = NULL, *got = NULL, *line = NULL;
        _cleanup_free_ char *hello = NULL, *greet = NULL, *backup = NULL, *lib = NULL;
        _cleanup_free_ char *bad = NULL, *scratch = NULL, *tmp = NULL;
        struct cv before, after;
        long quoted, delivered;
        int r;

        vg_stack_start(NULL, &s);
        demo_files(s, &d);
        is_int(sim(s, "boot", NULL), 0, "boot: the simulator logs boot_aggregate from PCRs 0-9");
        ok(demo_policy(s, &d),
           "vigil policy create --rootfs DIR --ima-log LOG --flat: an allowlist with the "
           "programs and boot_aggregate");
        r = demo_add(s, &d, &out);
        if (!is_int(r, 0,
                    "vigil tenant -c add -t 127.0.0.1 -v 127.0.0.1 -u %s --allowlist "
                    "allowlist.txt --exclude excludelist.txt -f payload1",
                    uuid_of(s)))
                tap_diag("%s", out ? out : "");

        /* The payload is decrypted once the verifier saw a good quote and sent V. */
        secure = tap_strf("%s/secure/unzipped/secret.txt", s->agent.dir);
        ok(vg_stack_wait_log(&s->agent, "payload delivered", 20), "the agent decrypts the payload");
        got = tap_read_file(secure, NULL);
        is_str(got, "the secret the agent receives once it attests\n",
               "payload1's secret.txt is unpacked in the agent's secure directory");
        quoted = log_pos(&s->agent, "integrity quote requested");
        delivered = log_pos(&s->agent, "V received");
        ok(quoted >= 0 && delivered > quoted,
           "V (and so the payload) came only after the verifier's first integrity quote");
        ok(wait_attestations(s, 0, 1, 20), "attestation passes");

        /* Allowed programs run; attestation keeps passing. */
        before = cv_status(s);
        hello = tap_strf("/usr/bin/hello=%s/usr/bin/hello", d.rootfs);
        greet = tap_strf("/usr/bin/greet=%s/usr/bin/greet", d.rootfs);
        backup = tap_strf("/usr/sbin/backup=%s/usr/sbin/backup", d.rootfs);
        lib = tap_strf("/usr/lib/libdemo.so.1=%s/usr/lib/libdemo.so.1", d.rootfs);
        scratch = tap_strf("/tmp/build-1234/conftest=%s", d.bad); /* excluded: /tmp/.* */
        is_int(sim(s, "exec-as", hello, greet, lib, NULL), 0, "allowed programs run");
        is_int(sim(s, "exec-as", backup, scratch, hello, NULL), 0,
               "more of them, and a file under the excluded /tmp");
        ok(wait_attestations(s, before.count, 5, 20),
           "attestation keeps passing (count %lld -> +5)", before.count);
        after = cv_status(s);
        is_str(after.status, "PASS", "cvstatus: attestation_status PASS");
        ok(after.count > before.count, "cvstatus: attestation_count grows (%lld -> %lld)",
           before.count, after.count);
        ok(!log_has(&s->verifier, "failed"), "the verifier logs no failure");

        /* ./bad-script.sh */
        bad = tap_strf("/root/bad-script.sh=%s", d.bad);
        is_int(sim(s, "exec-as", bad, NULL), 0, "bad-script.sh is executed");
        ok(wait_status(s, "FAIL", 20), "cvstatus: attestation_status FAIL");
        ok(vg_stack_wait_log(&s->verifier, "File not found in allowlist: /root/bad-script.sh", 5),
           "verifier: File not found in allowlist: /root/bad-script.sh");
        line = log_line_with(&s->verifier, "File not found in allowlist: /root/bad-script.sh");
        ok(line && strstr(line, uuid_of(s)), "that line names the agent: %s", line ? line : "");
        free(line);
        line = log_line_with(&s->verifier, "IMA ERRORS:");
        contains(line, "IMA ERRORS: template-hash 0 fnf 1 hash 0 good ",
                 "verifier: IMA ERRORS: template-hash 0 fnf 1 hash 0 good N");
        ok(line && strstr(line, uuid_of(s)), "naming the agent");
        free(line);
        tmp = tap_strf("agent %s failed", uuid_of(s));
        ok(vg_stack_wait_log(&s->verifier, tmp, 5), "verifier: agent %s failed", uuid_of(s));
        line = log_line_with(&s->verifier, tmp);
        if (line)
                tap_diag("%s", line);
        if (!ok(!log_has(&s->verifier, "File not found in allowlist: /usr/") &&
                    !log_has(&s->verifier, "File not found in allowlist: /tmp/"),
                "no allowed or excluded program is reported"))
                vg_stack_daemon_show_log(&s->verifier);

        if (getenv("VIGIL_SHOW_LOGS"))
                vg_stack_daemon_show_log(&s->verifier);
        demo_free(&d);
        vg_stack_free(s);
}

/* ---- IMA tamper cases: each must fail attestation ---- */

/* Extend PCR 10 in both banks as the kernel would for m, without touching the log. */
static void extend_only(struct vg_stack *s, const struct model_entry *m)
{
        _cleanup_free_ char *h1 = hex(m->sha1, 20), *h256 = hex(m->sha256, 32), *out = NULL;

        if (vg_swtpm_sh(s->tpm, s->dir, &out, "tpm2_pcrextend 10:sha1=%s,sha256=%s", h1, h256) != 0)
                tap_bail("tpm2_pcrextend failed: %s", out ? out : "");
}

static void model_file(const char *target, const char *local, struct model_entry *m)
{
        uint8_t d[32];

        if (vg_hash_file(VG_HASH_SHA256, local, d) < 0)
                tap_bail("cannot hash %s", local);
        model_ng(target, d, m);
}

enum tamper { T_MODIFIED, T_REORDERED, T_TRUNCATED, T_NEVER_CATCHES_UP };

static void test_tamper(enum tamper kind, const char *what)
{
        struct demo d = { 0 };
        struct vg_stack *s = enrolled_stack(&d, NULL);
        _cleanup_free_ char *hello = tap_strf("%s/usr/bin/hello", d.rootfs);
        _cleanup_free_ char *greet = tap_strf("%s/usr/bin/greet", d.rootfs);
        _cleanup_free_ char *hello_as = tap_strf("/usr/bin/hello=%s", hello);
        _cleanup_free_ char *greet_as = tap_strf("/usr/bin/greet=%s", greet);
        _cleanup_free_ char *text = NULL, *both = NULL;
        struct model_entry a = { 0 }, b = { 0 };
        struct cv cv = cv_status(s);
        long long count = cv.count;

        model_file("/usr/bin/hello", hello, &a);
        model_file("/usr/bin/greet", greet, &b);
        switch (kind) {
        case T_MODIFIED: {
                /* The kernel measured hello; the list says it had other content. */
                char *digest = strstr(a.line, "sha256:") + 7;
                digest[0] = digest[0] == '0' ? '1' : '0';
                append_file(s->ima_path, a.line);
                extend_only(s, &a);
                break;
        }
        case T_REORDERED:
                /* Two entries in the list, extended in the other order. */
                both = tap_strf("%s%s", a.line, b.line);
                append_file(s->ima_path, both);
                extend_only(s, &b);
                extend_only(s, &a);
                break;
        case T_TRUNCATED:
                /* Two more good entries, attested; then the list loses its last one. */
                sim(s, "exec-as", hello_as, greet_as, NULL);
                ok(wait_attestations(s, count, 2, 20), "%s: two more entries attest first", what);
                text = tap_read_file(s->ima_path, NULL);
                if (!text || truncate(s->ima_path, (off_t)(strlen(text) - strlen(b.line))) < 0)
                        tap_bail("cannot truncate %s", s->ima_path);
                break;
        case T_NEVER_CATCHES_UP:
                /* PCR 10 moves; the list never gets the line. */
                extend_only(s, &a);
                break;
        }
        if (!ok(wait_status(s, "FAIL", 20), "%s: attestation fails", what))
                vg_stack_daemon_show_log(&s->verifier);
        cv = cv_status(s);
        tap_diag("%s: %s, %s", what, cv.state, cv.status);
        switch (kind) {
        case T_MODIFIED:
                ok(vg_stack_wait_log(&s->verifier, "IMA ERRORS: template-hash 1 ", 5),
                   "%s: the verifier counts a template-hash error", what);
                break;
        case T_REORDERED:
        case T_TRUNCATED:
        case T_NEVER_CATCHES_UP:
                ok(vg_stack_wait_log(&s->verifier, "does not match TPM PCR 10", 5),
                   "%s: the verifier says the list does not match PCR 10", what);
                break;
        }
        free(a.line);
        free(b.line);
        demo_free(&d);
        vg_stack_free(s);
}

/* ---- the burst (RHBZ#2138167 class) ---- */

/* Start the simulator in the background, its output to out_path. */
static pid_t sim_spawn(struct vg_stack *s, const char *out_path, const char *const *args)
{
        const char *argv[40] = { getenv("VIGIL_IMA_SIM"), "--log", s->ima_path, "--tcti",
                                 vg_swtpm_tcti(s->tpm) };
        size_t n = 5;
        pid_t pid;

        for (size_t i = 0; args[i] && n < 39; i++)
                argv[n++] = args[i];
        argv[n] = NULL;
        fflush(stdout);
        pid = fork();
        if (pid < 0)
                tap_bail("fork: %s", strerror(errno));
        if (pid == 0) {
                int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0)
                        _exit(127);
                dup2(fd, 1);
                dup2(fd, 2);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        return pid;
}

static double burst_rate(const char *out)
{
        const char *p = out ? strstr(out, "entries in") : NULL, *q;

        if (!p)
                return 0;
        q = strchr(p, ',');
        return q ? atof(q + 1) : 0;
}

static void test_burst(void)
{
        const char *env = getenv("VIGIL_BURST_SECONDS");
        long seconds = env && atol(env) > 0 ? atol(env) : 60;
        struct demo d = { 0 };
        struct vg_stack *s = enrolled_stack(&d, NULL);
        _cleanup_free_ char *dur = tap_strf("%ld", seconds), *out_path = NULL, *out = NULL;
        _cleanup_free_ char *f1 = tap_strf("/usr/bin/hello=%s/usr/bin/hello", d.rootfs);
        _cleanup_free_ char *f2 = tap_strf("/usr/bin/greet=%s/usr/bin/greet", d.rootfs);
        _cleanup_free_ char *f3 = tap_strf("/usr/sbin/backup=%s/usr/sbin/backup", d.rootfs);
        _cleanup_free_ char *f4 =
            tap_strf("/usr/lib/libdemo.so.1=%s/usr/lib/libdemo.so.1", d.rootfs);
        _cleanup_free_ char *f5 = tap_strf("/tmp/cc1-%d.s=%s/etc/demo.conf", 1, d.rootfs);
        _cleanup_free_ char *badf = tap_strf("/root/bad-burst.sh=%s", d.bad), *text = NULL;
        struct cv start = cv_status(s), cv;
        long long polls = 0, not_pass = 0, last = start.count;
        size_t lines;
        double t0, rate;
        int status;
        pid_t pid;

        /* Part 1: only allowed (and excluded) files, >= 5000/s, the verifier polling every
         * 0.2 s: not one failure. */
        out_path = tap_strf("%s/burst1.out", s->dir);
        const char *args1[] = { "burst", "--rate", "6500", "--duration", dur, f1,
                                f2,      f3,       f4,     f5,           NULL };
        tap_diag("burst: %ld s at 6500 entries/s while the verifier polls every 0.2 s", seconds);
        t0 = now();
        pid = sim_spawn(s, out_path, args1);
        while (waitpid(pid, &status, WNOHANG) == 0) {
                cv = cv_status(s);
                polls++;
                if (strcmp(cv.status, "PASS") != 0) {
                        not_pass++;
                        tap_diag("at %.1f s: attestation_status %s (%s)", now() - t0, cv.status,
                                 cv.state);
                }
                if (cv.count > last)
                        last = cv.count;
                sleep_s(0.5);
        }
        out = tap_read_file(out_path, NULL);
        tap_diag("%s", out ? out : "");
        is_int(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0, "the simulator ran the burst");
        rate = burst_rate(out);
        ok(rate >= burst_min_rate(), "it appended >= %.0f measurements/s (%.0f/s) for %ld s",
           burst_min_rate(), rate, seconds);
        is_int(not_pass, 0, "attestation_status stayed PASS in all %lld cvstatus checks", polls);
        text = tap_read_file(s->ima_path, NULL);
        lines = count_lines(text);
        FREE(text);
        /* Once the burst stops the quote catches up with the list: all of it is attested. */
        double end = now() + 60;
        do {
                cv = cv_status(s);
                if (cv.next_entry >= (long long)lines)
                        break;
                sleep_s(0.2);
        } while (now() < end);
        is_int(cv.next_entry, lines, "the verifier attested every entry (%zu) once the burst ended",
               lines);
        is_str(cv.status, "PASS", "and still says PASS");
        ok(cv.count - start.count >= seconds,
           "attestation_count grew by %lld during the %ld s (at least one a second)",
           cv.count - start.count, seconds);
        ok(!log_has(&s->verifier, "event=") && !log_has(&s->verifier, "IMA ERRORS") &&
               !log_has(&s->verifier, "does not match"),
           "the verifier logged no failure event");
        /* A quote the agent could not match to its PCR reads (ten tries) is retried by the
         * verifier, not a failure; it must stay rare. */
        long retried = 0;
        _cleanup_free_ char *vlog = tap_read_file(s->verifier.log, NULL);
        for (const char *q = vlog; q && (q = strstr(q, "quote request answered")); q++)
                retried++;
        /* Sanitizers slow the agent's read-quote-read loop several times, so more quotes miss
         * the moving PCR 10: scripts/check's ASan run allows more (VIGIL_BURST_MAX_RETRY_PCT). */
        const char *pct_env = getenv("VIGIL_BURST_MAX_RETRY_PCT");
        long max_pct = pct_env && atol(pct_env) > 0 ? atol(pct_env) : 10;
        ok(retried * 100 <= max_pct * (cv.count - start.count),
           "quote requests retried: %ld of %lld (at most %ld%%)", retried, cv.count - start.count,
           max_pct);

        /* Part 2: the same burst with bad-burst.sh slipped in after 10,000 entries. */
        FREE(out);
        FREE(out_path);
        out_path = tap_strf("%s/burst2.out", s->dir);
        const char *args2[] = { "burst", "--rate", "6500", "--duration", "4", "--inject-at",
                                "10000", badf,     f1,     f2,           f3,  f4,
                                f5,      NULL };
        pid = sim_spawn(s, out_path, args2);
        waitpid(pid, &status, 0);
        out = tap_read_file(out_path, NULL);
        tap_diag("%s", out ? out : "");
        contains(out, "injected after 10000 entries", "a second burst injects bad-burst.sh");
        ok(wait_status(s, "FAIL", 30), "the agent fails");
        ok(vg_stack_wait_log(&s->verifier, "File not found in allowlist: /root/bad-burst.sh", 10),
           "verifier: File not found in allowlist: /root/bad-burst.sh");
        _cleanup_free_ char *line = log_line_with(&s->verifier, "IMA ERRORS:");
        contains(line, "IMA ERRORS: template-hash 0 fnf 1 hash 0 good ",
                 "exactly that one file is reported among the burst's entries");
        ok(!log_has(&s->verifier, "does not match"), "and no PCR mismatch, ever");
        if (getenv("VIGIL_SHOW_LOGS"))
                vg_stack_daemon_show_log(&s->verifier);
        demo_free(&d);
        vg_stack_free(s);
}

int main(void)
{
        /* VIGIL_RUNTIME_ONLY=sim,demo,tamper,burst runs some of them (while debugging). */
        const char *only = getenv("VIGIL_RUNTIME_ONLY");
#define WANT(name) (!only || strstr(only, name))
        if (WANT("sim"))
                test_simulator();
        if (WANT("demo"))
                test_demo_scenario();
        if (WANT("tamper")) {
                test_tamper(T_MODIFIED, "modified IMA entry");
                test_tamper(T_REORDERED, "reordered entries");
                test_tamper(T_TRUNCATED, "truncated log");
                test_tamper(T_NEVER_CATCHES_UP, "a log that never catches up");
        }
        if (WANT("burst"))
                test_burst();
        return tap_done();
}
