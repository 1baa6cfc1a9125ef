/* vigil tests: TCG event logs. Every log in ../shared/data/eventlog is parsed, shown and replayed,
 * and the replay is compared bank by bank with Debian's tpm2_eventlog (tpm2-tools 5.4), with
 * each known difference explained; malformed logs give errors naming event and offset. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "encoding.h"
#include "eventlog.h"
#include "tap.h"

/* strings the harness frees at tap_done() */
#define KS(...) tap_keep(tap_strf(__VA_ARGS__))
#define SD(rel) tap_keep(tap_shared_data(rel))

struct tpm2_pcr {
        char bank[16];
        unsigned pcr;
        char hex[2 * VG_EVLOG_DIGEST_MAX + 1];
};

/* The final "pcrs:" section of tpm2_eventlog's YAML. Returns the count, -1 when absent. */
static int tpm2_pcrs(const char *out, struct tpm2_pcr *v, int max)
{
        const char *p = strstr(out, "\npcrs:\n");
        char bank[16] = "";
        int n = 0;

        if (!p)
                return -1;
        p += 7;
        while (*p && n < max) {
                const char *eol = strchr(p, '\n');
                size_t len = eol ? (size_t)(eol - p) : strlen(p);
                char line[256];
                snprintf(line, sizeof(line), "%.*s", (int)(len < 255 ? len : 255), p);
                unsigned idx;
                char hex[2 * VG_EVLOG_DIGEST_MAX + 1];
                if (line[0] == ' ' && line[1] == ' ' && line[2] >= 'a' && line[2] <= 'z') {
                        sscanf(line + 2, "%15[a-z0-9_]", bank);
                } else if (sscanf(line, " %u : 0x%128s", &idx, hex) == 2) {
                        snprintf(v[n].bank, sizeof(v[n].bank), "%s", bank);
                        v[n].pcr = idx;
                        memcpy(v[n].hex, hex, sizeof(hex));
                        n++;
                } else if (line[0] && line[0] != ' ') {
                        break;
                }
                if (!eol)
                        break;
                p = eol + 1;
        }
        return n;
}

static char *hexs(const uint8_t *p, size_t n)
{
        return tap_keep(vg_hex_encode(p, n));
}

/* Compare vigil's replay of log with tpm2_eventlog's pcrs: list. pcr0_skip: PCR 0 is known to
 * differ (returned in *pcr0_tpm2 for the caller to explain). Returns the number compared. */
static int compare_with_tpm2(const char *name, const struct vg_evlog *log, const char *tpm2_out,
                             bool pcr0_skip, char *pcr0_tpm2)
{
        struct tpm2_pcr v[8 * 24];
        struct vg_evlog_pcrs pcrs;
        struct vg_error err = { 0 };
        int n = tpm2_pcrs(tpm2_out, v, 8 * 24), same = 0, extended = 0;

        if (!ok(n > 0, "%s: tpm2_eventlog prints a pcrs: section", name))
                return 0;
        if (!ok(vg_evlog_replay(log, SIZE_MAX, &pcrs, &err) == 0, "%s: replay (%s)", name,
                vg_error_str(&err)))
                return 0;
        for (unsigned k = 0; k < pcrs.n_banks; k++)
                for (unsigned i = 0; i < VG_EVLOG_PCRS; i++)
                        extended += pcrs.banks[k].n_extends[i] > 0;
        bool all = true;
        for (int i = 0; i < n; i++) {
                uint16_t alg;
                const struct vg_evlog_bank *b = NULL;
                if (vg_evlog_alg_from_name(v[i].bank, &alg) == 0)
                        b = vg_evlog_pcrs_bank(&pcrs, alg);
                if (!b || v[i].pcr >= VG_EVLOG_PCRS) {
                        all = ok(false, "%s: tpm2_eventlog's %s PCR %u has a vigil bank", name,
                                 v[i].bank, v[i].pcr);
                        continue;
                }
                const char *mine = hexs(b->pcr[v[i].pcr], b->size);
                if (pcr0_skip && v[i].pcr == 0) {
                        if (pcr0_tpm2 && strcmp(v[i].bank, "sha256") == 0)
                                strcpy(pcr0_tpm2, v[i].hex);
                        continue;
                }
                if (strcmp(mine, v[i].hex) != 0) {
                        all = false;
                        is_str(mine, v[i].hex, "%s: %s PCR %u equals tpm2_eventlog's", name,
                               v[i].bank, v[i].pcr);
                }
                same++;
        }
        ok(all, "%s: vigil's replay equals tpm2_eventlog's for all %d PCR values it lists", name,
           same);
        is_int(n, extended, "%s: both list the same PCRs (the ones the log extends)", name);
        return same;
}

static int write_bytes(const char *path, const void *p, size_t n)
{
        FILE *f = fopen(path, "wb");
        if (!f)
                return -errno;
        size_t w = fwrite(p, 1, n, f);
        return fclose(f) == 0 && w == n ? 0 : -EIO;
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
        return (uint8_t *)tap_read_file(path, n);
}

/* A copy of log without the events for which drop() is true. */
static uint8_t *without_events(const struct vg_evlog *log,
                               bool (*drop)(const struct vg_evlog_event *), size_t *out_len)
{
        uint8_t *o = malloc(log->raw_len);
        size_t n = 0;
        for (size_t e = 0; e < log->n_events; e++) {
                const struct vg_evlog_event *ev = &log->events[e];
                size_t end = e + 1 < log->n_events ? log->events[e + 1].offset : log->raw_len;
                if (drop(ev))
                        continue;
                memcpy(o + n, log->raw + ev->offset, end - ev->offset);
                n += end - ev->offset;
        }
        *out_len = n;
        return o;
}

static bool is_pcr_minus_one(const struct vg_evlog_event *ev)
{
        return ev->pcr == 0xFFFFFFFF;
}

static void sha_extend(const char *md, uint8_t *pcr, size_t n, const uint8_t *d)
{
        uint8_t buf[2 * VG_EVLOG_DIGEST_MAX];
        unsigned int outl;
        memcpy(buf, pcr, n);
        memcpy(buf + n, d, n);
        EVP_Digest(buf, 2 * n, pcr, &outl, EVP_get_digestbyname(md), NULL);
}

static void test_shared_logs(const char *cli, const char *tmp)
{
        char *dir = SD("eventlog");
        struct dirent **names;
        int n = scandir(dir, &names, NULL, alphasort), n_bin = 0, n_compared = 0;

        ok(n > 2, "the shared event logs are there (%s)", dir);
        for (int i = 0; i < n; i++) {
                const char *fn = names[i]->d_name;
                size_t fl = strlen(fn);
                if (fn[0] == '.')
                        goto next;
                char *path = KS("%s/%s", dir, fn);
                if (fl > 5 && strcmp(fn + fl - 5, ".json") == 0) {
                        /* go-attestation's Windows quote vector: a SHA-1 log with the quoted
                         * PCRs 0-23 */
                        json_error_t je;
                        json_t *j = json_load_file(path, 0, &je);
                        const char *raw =
                            json_string_value(json_object_get(json_object_get(j, "Log"), "Raw"));
                        uint8_t *bin = NULL;
                        size_t bin_len = 0;
                        ok(raw && vg_b64_decode(raw, strlen(raw), VG_B64_STD, &bin, &bin_len) == 0,
                           "%s: Log.Raw decodes (%zu bytes)", fn, bin_len);
                        struct vg_evlog *log = NULL;
                        struct vg_error err = { 0 };
                        ok(bin && vg_evlog_parse(bin, bin_len, &log, &err) == 0, "%s: parses (%s)",
                           fn, vg_error_str(&err));
                        if (!log) {
                                free(bin);
                                json_decref(j);
                                goto next;
                        }
                        is_int(log->format, VG_EVLOG_FORMAT_SHA1, "%s: a SHA-1 format log", fn);
                        json_t *pcrs = json_object_get(json_object_get(j, "Log"), "PCRs"), *pv;
                        struct vg_evlog_pcr_value want[24];
                        size_t k, nw = 0;
                        json_array_foreach (pcrs, k, pv) {
                                const char *d = json_string_value(json_object_get(pv, "Digest"));
                                uint8_t *dd = NULL;
                                size_t dl = 0;
                                if (nw < 24 && d &&
                                    vg_b64_decode(d, strlen(d), VG_B64_STD, &dd, &dl) == 0 &&
                                    dl == 20) {
                                        want[nw].alg_id = VG_EVLOG_ALG_SHA1;
                                        want[nw].pcr = (uint32_t)json_integer_value(
                                            json_object_get(pv, "Index"));
                                        want[nw].size = 20;
                                        memcpy(want[nw].digest, dd, 20);
                                        nw++;
                                }
                                free(dd);
                        }
                        is_int(nw, 24, "%s: 24 quoted SHA-1 PCR values", fn);
                        ok(vg_evlog_replay_check(log, want, nw, NULL, NULL, &err) == 0,
                           "%s: the replay reaches all 24 quoted PCR values (PCR 0, 4, 5, 7, "
                           "11-14 extended, 17-22 ff..ff, the rest zero) (%s)",
                           fn, vg_error_str(&err));
                        char *binpath = tap_strf("%s/windows.bin", tmp);
                        write_bytes(binpath, bin, bin_len);
                        char *out = NULL;
                        is_int(tap_runl(&out, "tpm2_eventlog", binpath, NULL), 0,
                               "%s: tpm2_eventlog reads the raw log", fn);
                        n_compared += compare_with_tpm2(fn, log, out ? out : "", false, NULL);
                        free(out);
                        free(binpath);
                        vg_evlog_free(log);
                        free(bin);
                        json_decref(j);
                        goto next;
                }
                if (fl < 4 || strcmp(fn + fl - 4, ".bin") != 0)
                        goto next;
                n_bin++;
                struct vg_evlog *log = NULL;
                struct vg_error err = { 0 };
                if (!ok(vg_evlog_load(path, &log, &err) == 0, "%s: parses (%s)", fn,
                        vg_error_str(&err)))
                        goto next;
                char *out = NULL;
                int rc = tap_runl(&out, "tpm2_eventlog", path, NULL);
                bool has_minus_one = false;
                for (size_t e = 0; e < log->n_events; e++)
                        has_minus_one |= log->events[e].pcr == 0xFFFFFFFF;
                if (has_minus_one) {
                        /* Windows logs EV_NO_ACTION events on PCR -1 (0xFFFFFFFF, e.g. the
                         * "Windows AIK" trust point); they are not extended. tpm2_eventlog 5.4
                         * refuses the whole log. Compare on a copy without them. */
                        ok(rc != 0 && out && strstr(out, "PCR Index -1 is out of bounds"),
                           "%s: tpm2_eventlog 5.4 refuses EV_NO_ACTION on PCR -1 (\"PCR Index -1 "
                           "is out of bounds\"); vigil accepts it: such events are not extended",
                           fn);
                        size_t cl;
                        uint8_t *copy = without_events(log, is_pcr_minus_one, &cl);
                        char *cpath = tap_strf("%s/%s.nominus1", tmp, fn);
                        write_bytes(cpath, copy, cl);
                        free(out);
                        out = NULL;
                        rc = tap_runl(&out, "tpm2_eventlog", cpath, NULL);
                        is_int(rc, 0, "%s: tpm2_eventlog reads the copy without PCR -1 events", fn);
                        struct vg_evlog *c = NULL;
                        ok(vg_evlog_parse(copy, cl, &c, &err) == 0 && c->n_events < log->n_events,
                           "%s: the copy parses too", fn);
                        vg_evlog_free(c);
                        free(copy);
                        free(cpath);
                } else {
                        is_int(rc, 0, "%s: tpm2_eventlog reads it", fn);
                }
                bool loc3 = log->startup_locality == 3;
                char pcr0[160] = "";
                n_compared += compare_with_tpm2(fn, log, out ? out : "", loc3, pcr0);
                free(out);

                /* show and --json work */
                out = NULL;
                is_int(tap_runl(&out, cli, "eventlog", "show", path, NULL), 0, "%s: show", fn);
                tap_keep(out);
                contains(out, "event 1: PCR", "%s: show prints the events", fn);
                contains(out, "secure boot:", "%s: show prints the secure-boot state", fn);
                out = NULL;
                is_int(tap_runl(&out, cli, "eventlog", "show", path, "--json", NULL), 0,
                       "%s: show --json", fn);
                json_error_t je;
                json_t *j = out ? json_loads(out, 0, &je) : NULL;
                ok(j && json_array_size(json_object_get(j, "events")) == log->n_events,
                   "%s: --json is JSON with all %zu events", fn, log->n_events);
                json_decref(j);
                free(out);
                vg_evlog_free(log);
        next:
                free(names[i]);
        }
        free(names);
        ok(n_bin >= 19, "%d binary logs checked, %d PCR values compared with tpm2_eventlog", n_bin,
           n_compared);
}

/* No shared log carries StartupLocality; a real one (Keylime's Boot Guard log) has locality 3.
 * Insert the 17-byte StartupLocality=3 EV_NO_ACTION after the SpecID event of a real log. */
static void test_startup_locality(const char *tmp)
{
        struct vg_evlog *bad = NULL;
        size_t len;
        uint8_t *raw = read_bytes(SD("eventlog/tpm2tools-event-gce-ubuntu-2104-log.bin"), &len);
        struct vg_evlog *log = NULL, *l3 = NULL;
        struct vg_error err = { 0 };

        if (!ok(raw && vg_evlog_parse(raw, len, &log, &err) == 0, "GCE log parses"))
                return;
        size_t at = log->events[1].offset;
        /* TCG_PCR_EVENT2: PCR 0, EV_NO_ACTION, 3 zero digests, 17 bytes of data */
        uint8_t ev[12 + 3 * 2 + 20 + 32 + 48 + 4 + 17], *p = ev;
        memset(ev, 0, sizeof(ev));
        p[4] = 3;
        p[8] = 3;
        p += 12;
        *p = 0x04, p += 2 + 20;
        *p = 0x0B, p += 2 + 32;
        *p = 0x0C, p += 2 + 48;
        *p = 17, p += 4;
        memcpy(p, "StartupLocality\0\3", 17);
        uint8_t *mod = malloc(len + sizeof(ev));
        memcpy(mod, raw, at);
        memcpy(mod + at, ev, sizeof(ev));
        memcpy(mod + at + sizeof(ev), raw + at, len - at);
        ok(vg_evlog_parse(mod, len + sizeof(ev), &l3, &err) == 0 && l3->startup_locality == 3,
           "a log with StartupLocality 3 parses (%s)", vg_error_str(&err));
        if (!l3)
                goto out;
        /* independent replay of PCR 0 sha256 from 00..03 */
        uint8_t want[32] = { 0 };
        want[31] = 3;
        for (size_t e = 1; e < log->n_events; e++)
                if (log->events[e].pcr == 0 && log->events[e].type != VG_EV_NO_ACTION)
                        sha_extend(
                            "SHA256", want, 32,
                            vg_evlog_event_digest(&log->events[e], VG_EVLOG_ALG_SHA256)->digest);
        struct vg_evlog_pcrs a, b;
        vg_evlog_replay(log, SIZE_MAX, &a, NULL);
        vg_evlog_replay(l3, SIZE_MAX, &b, NULL);
        is_str(hexs(b.banks[1].pcr[0], 32), hexs(want, 32),
               "StartupLocality 3: PCR 0 starts at 00..03 (PFP 3.3.3), so the replay is "
               "H(..H(00..03 || d1)..)");
        ok(memcmp(a.banks[1].pcr[0], b.banks[1].pcr[0], 32) != 0,
           "StartupLocality 3 changes PCR 0 against the same log without it");
        bool rest = true;
        for (unsigned k = 0; k < 3; k++)
                for (int i = 1; i < 24; i++)
                        rest &= memcmp(a.banks[k].pcr[i], b.banks[k].pcr[i], 64) == 0;
        ok(rest, "StartupLocality changes no other PCR");

        char *path = tap_strf("%s/loc3.bin", tmp), *out = NULL;
        write_bytes(path, mod, len + sizeof(ev));
        is_int(tap_runl(&out, "tpm2_eventlog", path, NULL), 0, "tpm2_eventlog reads the loc3 log");
        char pcr0[160] = "";
        compare_with_tpm2("loc3", l3, out ? out : "", true, pcr0);
        /* The documented difference (fim_boot.md 3.2): tpm2-tools before 5.6 (commit 576a31bc,
         * "add support for replay with different StartupLocality") does not start PCR 0 at
         * 00..03; 5.4 (Debian 12) treats the StartupLocality EV_NO_ACTION as an ordinary event
         * and extends its all-zero digest into a PCR 0 that starts at 00..00. A TPM started at
         * locality 3 never holds that value. */
        uint8_t t54[32] = { 0 }, zero[32] = { 0 };
        sha_extend("SHA256", t54, 32, zero);
        for (size_t e = 1; e < log->n_events; e++)
                if (log->events[e].pcr == 0 && log->events[e].type != VG_EV_NO_ACTION)
                        sha_extend(
                            "SHA256", t54, 32,
                            vg_evlog_event_digest(&log->events[e], VG_EVLOG_ALG_SHA256)->digest);
        if (strcmp(pcr0, hexs(b.banks[1].pcr[0], 32)) == 0)
                ok(true, "this tpm2_eventlog honours StartupLocality 3 (5.6 or later): PCR 0 "
                         "agrees");
        else
                is_str(pcr0, hexs(t54, 32),
                       "tpm2_eventlog 5.4 differs on PCR 0 only, as documented: it extends the "
                       "StartupLocality event's zero digest into PCR 0 from 00..00 instead of "
                       "starting PCR 0 at 00..03 (not extending EV_NO_ACTION)");
        free(out);
        free(path);

        /* StartupLocality after PCR 0 was extended, or twice, is refused */
        size_t at2 = log->events[2].offset; /* after the S-CRTM version on PCR 0 */
        memcpy(mod, raw, at2);
        memcpy(mod + at2, ev, sizeof(ev));
        memcpy(mod + at2 + sizeof(ev), raw + at2, len - at2);
        ok(vg_evlog_parse(mod, len + sizeof(ev), &bad, &err) == -EINVAL &&
               strstr(err.msg, "event 2 at offset") &&
               strstr(err.msg, "StartupLocality event after PCR 0 was extended"),
           "StartupLocality after a PCR 0 extend is refused: %s", err.msg);
out:
        vg_evlog_free(bad);
        free(mod);
        vg_evlog_free(l3);
        vg_evlog_free(log);
        free(raw);
}

static void test_malformed(void)
{
        size_t len;
        uint8_t *raw = read_bytes(SD("eventlog/tpm2tools-event-gce-ubuntu-2104-log.bin"), &len);
        struct vg_evlog *log = NULL, *t = NULL;
        struct vg_error err = { 0 };
        int r;

        if (!ok(vg_evlog_parse(raw, len, &log, &err) == 0, "GCE log parses"))
                return;
        /* truncated at every 97th byte: either a whole prefix of events (a valid shorter log)
         * or an error naming the event that was cut and its offset */
        int cuts = 0, good = 0;
        for (size_t cut = 97; cut < len; cut += 97) {
                size_t k = 0;
                while (k + 1 < log->n_events && log->events[k + 1].offset <= cut)
                        k++;
                bool boundary = log->events[k].offset == cut;
                memset(&err, 0, sizeof(err));
                r = vg_evlog_parse(raw, cut, &t, &err);
                cuts++;
                if (boundary)
                        good += r == 0 && t->n_events == k;
                else {
                        char want[64];
                        snprintf(want, sizeof(want), "event %zu at offset 0x%zx: ", k,
                                 log->events[k].offset);
                        good += r == -EINVAL && strncmp(err.msg, want, strlen(want)) == 0;
                        if (r != -EINVAL || strncmp(err.msg, want, strlen(want)) != 0)
                                tap_diag("cut %zu: %d %s (want %s)", cut, r, err.msg, want);
                }
                vg_evlog_free(t);
                t = NULL;
        }
        is_int(good, cuts,
               "%d truncations every 97 bytes: each an error naming the cut event and "
               "its offset (or a shorter valid log at an event boundary)",
               cuts);
        memset(&err, 0, sizeof(err));
        vg_evlog_parse(raw, 97, &t, &err);
        is_str(err.msg, "event 1 at offset 0x49: sha1 digest of 20 bytes exceeds the 10 bytes left",
               "a cut inside a digest says which digest and how many bytes are left");

        /* corrupted size of event 42 */
        uint8_t *m = malloc(len);
        const struct vg_evlog_event *e42 = &log->events[42];
        size_t size_at = (size_t)(e42->data - log->raw) - 4;
        memcpy(m, raw, len);
        memset(m + size_at, 0xFF, 4);
        r = vg_evlog_parse(m, len, &t, &err);
        char *want = tap_strf("event 42 at offset 0x%zx: event size 4294967295 exceeds the %zu "
                              "bytes left",
                              e42->offset, len - size_at - 4);
        ok(r == -EINVAL && strcmp(err.msg, want) == 0, "event size 0xFFFFFFFF: %s", err.msg);
        free(want);
        /* a size that fits the buffer but not the limit */
        uint8_t *big = calloc(1, len + (2u << 20));
        memcpy(big, raw, len);
        uint32_t bsz = (1u << 20) + 1;
        /* make the last event's data huge: put the new size at its size field */
        const struct vg_evlog_event *last = &log->events[log->n_events - 1];
        size_t last_size_at = (size_t)(last->data - log->raw) - 4;
        memcpy(big + last_size_at, &bsz, 4);
        r = vg_evlog_parse(big, last_size_at + 4 + bsz, &t, &err);
        ok(r == -E2BIG && strstr(err.msg, "exceeds the 1048576-byte limit"),
           "an event over 1 MiB is refused: %s", err.msg);
        free(big);
        r = vg_evlog_parse(raw, (size_t)VG_EVLOG_MAX_LOG_SIZE + 1, &t, &err);
        ok(r == -E2BIG && strstr(err.msg, "64 MiB"), "a log over 64 MiB is refused: %s", err.msg);

        /* unknown algorithm in event 5's first digest (sha1 at +12) */
        memcpy(m, raw, len);
        m[log->events[5].offset + 12] = 0x99;
        r = vg_evlog_parse(m, len, &t, &err);
        ok(r == -EINVAL && strstr(err.msg, "event 5 at offset") &&
               strstr(err.msg, "algorithm 0x0099 (unknown) is not declared in the SpecID header"),
           "unknown algorithm: %s", err.msg);
        /* SpecID with a wrong sha256 size: algorithms start at offset 32 + 28 */
        memcpy(m, raw, len);
        m[32 + 28 + 4 + 2] = 20;
        r = vg_evlog_parse(m, len, &t, &err);
        ok(r == -EINVAL && strstr(err.msg, "event 0 at offset 0x0: SpecID: sha256 digest size 20, "
                                           "expected 32"),
           "SpecID digest size: %s", err.msg);
        /* digest count above the SpecID's */
        memcpy(m, raw, len);
        m[log->events[3].offset + 8] = 4;
        r = vg_evlog_parse(m, len, &t, &err);
        ok(r == -EINVAL && strstr(err.msg, "event 3 at offset") &&
               strstr(err.msg, "digest count 4 exceeds the 3 algorithms"),
           "digest count: %s", err.msg);
        /* PCR 24 */
        memcpy(m, raw, len);
        m[log->events[3].offset] = 24;
        r = vg_evlog_parse(m, len, &t, &err);
        ok(r == -EINVAL && strstr(err.msg, "PCR 24 is out of range"), "PCR 24: %s", err.msg);
        free(m);
        /* zero-length and tiny */
        r = vg_evlog_parse(raw, 0, &t, &err);
        ok(r == -EINVAL && strcmp(err.msg, "empty event log") == 0, "zero-length: %s", err.msg);
        r = vg_evlog_parse(raw, 10, &t, &err);
        ok(r == -EINVAL && strstr(err.msg, "event 0 at offset 0x0"), "10 bytes: %s", err.msg);
        vg_evlog_free(log);
        free(raw);

        /* the SHA-1-only log: parses as such; truncated it names the event */
        raw = read_bytes(SD("eventlog/tpm2tools-event-uefi-sha1-log.bin"), &len);
        r = vg_evlog_parse(raw, len, &log, &err);
        ok(r == 0 && log->format == VG_EVLOG_FORMAT_SHA1 && log->n_algs == 1 &&
               log->events[0].type == VG_EV_S_CRTM_VERSION,
           "a SHA-1 log parses: its first event is an ordinary one (%zu events)",
           log ? log->n_events : 0);
        r = vg_evlog_parse(raw, len - 3, &t, &err);
        ok(r == -EINVAL && strstr(err.msg, "exceeds the") &&
               strstr(err.msg, KS("event %zu at offset", log->n_events - 1)),
           "a truncated SHA-1 log: %s", err.msg);
        vg_evlog_free(log);
        free(raw);
}

static bool is_pcr4_bsa(const struct vg_evlog_event *ev)
{
        return ev->pcr == 4 && ev->type == VG_EV_EFI_BOOT_SERVICES_APPLICATION;
}

static void test_replay_check(void)
{
        size_t len;
        uint8_t *raw = read_bytes(SD("eventlog/tpm2tools-event-gce-ubuntu-2104-log.bin"), &len);
        struct vg_evlog *log = NULL, *mod = NULL;
        struct vg_evlog_pcrs pcrs;
        struct vg_error err = { 0 };
        struct vg_evlog_mismatch *mm = NULL;
        size_t n_mm = 0;

        vg_evlog_parse(raw, len, &log, &err);
        vg_evlog_replay(log, SIZE_MAX, &pcrs, &err);
        struct vg_evlog_pcr_value want[2] = { 0 };
        for (int i = 0; i < 2; i++) {
                want[i].alg_id = VG_EVLOG_ALG_SHA256;
                want[i].pcr = i ? 7 : 4;
                want[i].size = 32;
                memcpy(want[i].digest,
                       vg_evlog_pcrs_bank(&pcrs, VG_EVLOG_ALG_SHA256)->pcr[want[i].pcr], 32);
        }
        is_int(vg_evlog_replay_check(log, want, 2, &mm, &n_mm, &err), 0,
               "replay check passes with the replayed values");
        /* the quote was taken before the last PCR 4 event (the log grew after the quote) */
        struct vg_evlog_pcr_step *st = NULL;
        size_t ns = 0;
        is_int(vg_evlog_pcr_history(log, VG_EVLOG_ALG_SHA256, 4, &st, &ns, &err), 0,
               "PCR 4 history");
        ok(ns >= 3 && memcmp(st[ns - 1].value, want[0].digest, 32) == 0,
           "the history ends at the final value (%zu steps)", ns);
        memcpy(want[0].digest, st[ns - 2].value, 32);
        int r = vg_evlog_replay_check(log, want, 2, &mm, &n_mm, &err);
        ok(r == -EBADMSG && n_mm == 1 && mm[0].pcr == 4 &&
               mm[0].agreed_after_event == st[ns - 2].event && mm[0].last_event == st[ns - 1].event,
           "a quote before the last PCR 4 event: mismatch on PCR 4 only, agreed after event "
           "%" PRIu32,
           st[ns - 2].event);
        contains(err.msg,
                 KS("PCR 4 sha256: replay %s, expected %s; the expected value is "
                    "reached after event %" PRIu32,
                    hexs(st[ns - 1].value, 32), hexs(st[ns - 2].value, 32), st[ns - 2].event),
                 "the error names the PCR, bank, both values and the last agreeing event");
        free(mm);
        want[0].digest[0] ^= 1;
        memcpy(want[0].digest, st[0].value, 32);
        want[0].digest[5] ^= 0x55;
        r = vg_evlog_replay_check(log, want, 2, &mm, &n_mm, &err);
        contains(err.msg,
                 KS("extend it, the last is event %" PRIu32 " (EV_EFI_BOOT_SERVICES_APPLICATION)",
                    st[ns - 1].event),
                 "an unreachable value: the error names the number and the last PCR 4 event");
        ok(r == -EBADMSG && mm[0].agreed_after_event == -1 && mm[0].n_events == ns,
           "no prefix agrees");
        free(mm);
        want[1].alg_id = VG_EVLOG_ALG_SHA512;
        want[1].size = 64;
        r = vg_evlog_replay_check(log, want, 2, &mm, &n_mm, &err);
        ok(r == -EBADMSG && n_mm == 2 && mm[1].bank_missing, "a bank the log lacks is a mismatch");
        free(mm);
        free(st);

        /* which event changed PCR 4: flip a byte of the second PCR 4 image's sha256 digest */
        uint8_t *m = malloc(len);
        memcpy(m, raw, len);
        size_t bsa[8], nb = 0;
        for (size_t e = 0; e < log->n_events && nb < 8; e++)
                if (is_pcr4_bsa(&log->events[e]))
                        bsa[nb++] = e;
        const struct vg_evlog_digest *d =
            vg_evlog_event_digest(&log->events[bsa[1]], VG_EVLOG_ALG_SHA256);
        m[d->digest - log->raw] ^= 0xFF;
        vg_evlog_parse(m, len, &mod, &err);
        struct vg_evlog_divergence dv;
        is_int(vg_evlog_first_divergence(log, mod, VG_EVLOG_ALG_SHA256, 4, &dv, &err), 0,
               "first divergence on PCR 4");
        ok(dv.diverged && dv.ref_event == (int64_t)bsa[1] && dv.act_event == (int64_t)bsa[1] &&
               dv.last_agreed_ref_event >= 0 && dv.last_agreed_ref_event < (int64_t)bsa[1],
           "a changed grub image: PCR 4 diverges at event %zu, after %u agreeing events", bsa[1],
           dv.agreed_events);
        vg_evlog_first_divergence(log, mod, VG_EVLOG_ALG_SHA256, 7, &dv, &err);
        ok(!dv.diverged && dv.agreed_events > 3, "PCR 7 does not diverge");
        size_t cl;
        uint8_t *cut = without_events(log, is_pcr4_bsa, &cl);
        struct vg_evlog *c = NULL;
        vg_evlog_parse(cut, cl, &c, &err);
        vg_evlog_first_divergence(log, c, VG_EVLOG_ALG_SHA256, 4, &dv, &err);
        ok(c && dv.diverged && dv.ref_event == (int64_t)bsa[0],
           "images missing from a log: diverges at the first of them");
        vg_evlog_free(c);
        free(cut);
        vg_evlog_free(mod);
        free(m);

        /* secure-boot summary and decoding details of the GCE log */
        struct vg_evlog_secureboot sb;
        is_int(vg_evlog_secureboot(log, &sb, &err), 0, "secure-boot summary");
        ok(sb.secure_boot == 0 && sb.pk.n_x509 == 1 && sb.kek.n_x509 == 1 && sb.db.n_x509 == 2 &&
               sb.dbx.present && sb.dbx.n_sigs == 0 && sb.mok_list.present && sb.mok_list_x.present,
           "GCE: SecureBoot 0, PK 1 cert, KEK 1, db 2, dbx empty, MokList and MokListX measured");
        is_str(sb.db.sigs[0].subject,
               "C=US, ST=Washington, L=Redmond, O=Microsoft Corporation, CN=Microsoft Corporation "
               "UEFI CA 2011",
               "db certificate subject");
        is_str(sb.sbat_level, "sbat,1,2021030218\n", "SbatLevel");
        vg_evlog_secureboot_clear(&sb);
        struct vg_evlog_decoded dd;
        vg_evlog_decode(log, &log->events[bsa[0]], &dd, NULL);
        is_str(dd.image.device_path,
               "PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/"
               "HD(15,GPT,6ea6f740-25ef-4269-838d-1a6f21ebf27f,0x2800,0x35000)/"
               "\\EFI\\ubuntu\\shimx64.efi",
               "shim's device path as UEFI text");
        vg_evlog_decoded_clear(&dd);
        bool found = false;
        for (size_t e = 0; e < log->n_events && !found; e++) {
                if (log->events[e].type != VG_EV_IPL || log->events[e].pcr != 8)
                        continue;
                vg_evlog_decode(log, &log->events[e], &dd, NULL);
                if (dd.ipl_kind == VG_IPL_KERNEL_CMDLINE) {
                        found = true;
                        contains(dd.text, "/boot/vmlinuz-5.11.0-1008-gcp root=PARTUUID=",
                                 "grub's kernel_cmdline: decoded without the prefix");
                        contains(dd.text, "ima_hash=sha256", "it carries ima_hash");
                }
                vg_evlog_decoded_clear(&dd);
        }
        ok(found, "the kernel command line is found on PCR 8");
        vg_evlog_free(log);
        free(raw);

        /* systemd-boot: UTF-16 command line */
        raw = read_bytes(SD("eventlog/tpm2tools-event-sd-boot-fedora37.bin"), &len);
        vg_evlog_parse(raw, len, &log, &err);
        found = false;
        for (size_t e = 0; log && e < log->n_events && !found; e++) {
                if (log->events[e].type != VG_EV_IPL)
                        continue;
                vg_evlog_decode(log, &log->events[e], &dd, NULL);
                found = dd.ipl_kind == VG_IPL_KERNEL_CMDLINE && dd.text &&
                        strstr(dd.text, "console=ttyS0 console=tty0 efi=debug");
                vg_evlog_decoded_clear(&dd);
        }
        ok(found, "systemd-boot's UTF-16 kernel command line is decoded");
        vg_evlog_free(log);
        free(raw);

        /* keylime's Secure Boot log: enabled, authorities with subjects */
        raw = read_bytes(SD("eventlog/keylime-rhel95-secureboot.bin"), &len);
        vg_evlog_parse(raw, len, &log, &err);
        vg_evlog_secureboot(log, &sb, &err);
        ok(sb.secure_boot == 1 && sb.n_authorities >= 3 && sb.dbx.n_sha256 > 0,
           "keylime secure-boot log: SecureBoot 1, %zu authorities, dbx %zu hashes",
           sb.n_authorities, sb.dbx.n_sha256);
        bool subj = false;
        for (size_t i = 0; i < sb.n_authorities; i++)
                subj |= sb.authorities[i].subject != NULL;
        ok(subj, "an authority carries a certificate subject");
        vg_evlog_secureboot_clear(&sb);
        vg_evlog_free(log);
        free(raw);
}

static void test_cli(const char *cli)
{
        char *out = NULL, *gce = SD("eventlog/tpm2tools-event-gce-ubuntu-2104-log.bin");
        is_int(tap_runl(&out, cli, "eventlog", "replay", gce, "--pcrs", "0,4,7", "--bank", "sha256",
                        NULL),
               0, "replay --pcrs 0,4,7 --bank sha256");
        is_str(out,
               "sha256 PCR_0 24af52a4f429b71a3184a6d64cddad17e54ea030e2aa6576bf3a5a3d8bd3328f\n"
               "sha256 PCR_4 295aeaeacad1d507930bab18418f905eeda633ea67b2ab94c5e5fd3a4d47ac58\n"
               "sha256 PCR_7 ca37324eeffabd318d30a20f15bf27ce25dc33e2c9856279ff6c2ced58b02efa\n",
               "exactly one line per PCR, the values of tpm2-tools' golden YAML");
        free(out);
        is_int(tap_runl(&out, cli, "eventlog", "--help", NULL), 0, "--help");
        tap_keep(out);
        contains(out, "vigil eventlog replay FILE [--pcrs LIST] [--bank ALG]",
                 "help: replay usage");
        is_int(tap_runl(&out, cli, "eventlog", "replay", "/nonexistent", NULL), 1,
               "a missing file exits 1");
        tap_keep(out);
        char *bad = KS("%s/bad.bin", tap_keep(tap_tmpdir()));
        size_t len;
        uint8_t *raw = read_bytes(gce, &len);
        write_bytes(bad, raw, 1000);
        free(raw);
        is_int(tap_runl(&out, cli, "eventlog", "show", bad, NULL), 1, "a truncated log exits 1");
        tap_keep(out);
        contains(out, "bad.bin: event 4 at offset 0x23c: event size 842 exceeds the",
                 "with the error");
        is_int(tap_runl(&out, cli, "eventlog", "replay", gce, "--bank", "sha999", NULL), 2,
               "an unknown bank is a usage error");
        tap_keep(out);
        is_int(tap_runl(&out, cli, "eventlog", "replay", gce, "--pcrs", "0,24", NULL), 2,
               "PCR 24 is a usage error");
        tap_keep(out);
}

int main(void)
{
        const char *cli = getenv("VIGIL_CLI");
        char *tmp = tap_keep(tap_tmpdir());

        if (!cli)
                tap_bail("VIGIL_CLI is not set");
        test_shared_logs(cli, tmp);
        test_startup_locality(tmp);
        test_malformed();
        test_replay_check();
        test_cli(cli);
        return tap_done();
}
