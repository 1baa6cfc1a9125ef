/* vigil bench: IMA verification per entry (100k-entry ima-ng log against a 100k-entry runtime
 * policy, sha1 and sha256 banks) and runtime policy load time (ours and jansson's json_loadb).
 * Prints one JSON object per line. Usage: bench_ima [ENTRIES] [REPEATS] [DUMP_DIR]
 * With DUMP_DIR, the generated log, policy and PCR 10 values are written there, so that
 * bench/keylime_anchor.py can time Keylime on exactly the same inputs. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hash.h"
#include "ima.h"

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hex(char *out, const uint8_t *d, size_t n)
{
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", d[i]);
}

static void put_u32le(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

struct text {
        char *p;
        size_t len, cap;
};

static void append(struct text *t, const char *s, size_t n)
{
        if (t->len + n + 1 > t->cap) {
                t->cap = (t->len + n + 1) * 2;
                t->p = realloc(t->p, t->cap);
                if (!t->p)
                        abort();
        }
        memcpy(t->p + t->len, s, n);
        t->len += n;
        t->p[t->len] = '\0';
}

static int write_text(const char *dir, const char *name, const char *data, size_t len)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "w");
        if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
                fprintf(stderr, "cannot write %s\n", path);
                return -1;
        }
        return 0;
}

static int dump(const char *dir, const struct text *log, const struct text *pol,
                const uint8_t pcr1[20], const uint8_t pcr256[32])
{
        char h1[41], h256[65];

        hex(h1, pcr1, 20);
        hex(h256, pcr256, 32);
        if (write_text(dir, "ascii_runtime_measurements", log->p, log->len) < 0 ||
            write_text(dir, "runtime_policy.json", pol->p, pol->len) < 0 ||
            write_text(dir, "pcr10.sha1", h1, 40) < 0 ||
            write_text(dir, "pcr10.sha256", h256, 64) < 0)
                return -1;
        return 0;
}

int main(int argc, char **argv)
{
        size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
        int repeats = argc > 2 ? atoi(argv[2]) : 5;
        struct text log = { 0 }, pol = { 0 };
        uint8_t pcr1[20] = { 0 }, pcr256[32] = { 0 };
        struct vg_error err = { 0 };
        const char *head = "{\"meta\": {\"version\": 1, \"generator\": 0, \"timestamp\": "
                           "\"2026-11-23 00:00:00\"}, \"release\": 0, \"digests\": {";

        /* Synthetic system: n files, each with a sha256 digest, measured once in ima-ng. */
        append(&pol, head, strlen(head));
        for (size_t i = 0; i < n; i++) {
                char path[128], dhex[65], thex[41], line[400];
                uint8_t d[32], td[256], th1[20], th256[32], buf[64];
                size_t plen, tlen = 0;

                plen = (size_t)snprintf(path, sizeof(path), "/usr/lib/pkg%04zu/lib%06zu.so.%zu",
                                        i % 1000, i, i % 7);
                vg_hash(VG_HASH_SHA256, path, plen, d);
                hex(dhex, d, 32);
                put_u32le(td, 7 + 1 + 32);
                memcpy(td + 4, "sha256:", 8);
                memcpy(td + 12, d, 32);
                tlen = 44;
                put_u32le(td + tlen, (uint32_t)plen + 1);
                memcpy(td + tlen + 4, path, plen + 1);
                tlen += 4 + plen + 1;
                vg_hash(VG_HASH_SHA1, td, tlen, th1);
                vg_hash(VG_HASH_SHA256, td, tlen, th256);
                memcpy(buf, pcr1, 20);
                memcpy(buf + 20, th1, 20);
                vg_hash(VG_HASH_SHA1, buf, 40, pcr1);
                memcpy(buf, pcr256, 32);
                memcpy(buf + 32, th256, 32);
                vg_hash(VG_HASH_SHA256, buf, 64, pcr256);
                hex(thex, th1, 20);
                append(&log, line,
                       (size_t)snprintf(line, sizeof(line), "10 %s ima-ng sha256:%s %s\n", thex,
                                        dhex, path));
                append(&pol, line,
                       (size_t)snprintf(line, sizeof(line), "%s\"%s\": [\"%s\"]", i ? ", " : "",
                                        path, dhex));
        }
        const char *tail = "}, \"excludes\": [\"/tmp/.*\", \"/var/log/.*\"], \"keyrings\": {}, "
                           "\"ima\": {\"ignored_keyrings\": [], \"log_hash_alg\": \"sha1\", "
                           "\"dm_policy\": null}, \"ima-buf\": {}, \"verification-keys\": \"\"}";
        append(&pol, tail, strlen(tail));
        if (argc > 3 && dump(argv[3], &log, &pol, pcr1, pcr256) < 0)
                return 1;

        /* Policy load: ours, best of repeats; and jansson alone for comparison. */
        double best = 1e9, jbest = 1e9;
        struct vg_ima_policy *p = NULL;
        for (int r = 0; r < repeats; r++) {
                struct vg_ima_policy *q;
                double t0 = now();
                if (vg_ima_policy_parse(pol.p, pol.len, &q, &err) < 0) {
                        fprintf(stderr, "policy refused: %s\n", err.msg);
                        return 1;
                }
                double t = now() - t0;
                best = t < best ? t : best;
                if (p)
                        vg_ima_policy_unref(p);
                p = q;
                t0 = now();
                json_t *j = json_loadb(pol.p, pol.len, 0, NULL);
                t = now() - t0;
                jbest = t < jbest ? t : jbest;
                json_decref(j);
        }
        printf("{\"bench\":\"ima_policy_load\",\"entries\":%zu,\"bytes\":%zu,\"ms\":%.1f,"
               "\"jansson_loadb_ms\":%.1f}\n",
               vg_ima_policy_digest_count(p), pol.len, best * 1e3, jbest * 1e3);

        /* Verification, both banks: every entry must be good and the replay must match. */
        static const enum vg_hash_alg banks[] = { VG_HASH_SHA256, VG_HASH_SHA1 };
        for (size_t b = 0; b < 2; b++) {
                double vbest = 1e9;
                struct vg_ima_result res;

                for (int r = 0; r < repeats; r++) {
                        struct vg_ima_state *st;
                        vg_ima_state_new(banks[b], &st);
                        double t0 = now();
                        vg_ima_verify(p, st, log.p, log.len, 0,
                                      banks[b] == VG_HASH_SHA1 ? pcr1 : pcr256, NULL, &res, &err);
                        double t = now() - t0;
                        vbest = t < vbest ? t : vbest;
                        vg_ima_state_free(st);
                        if (!res.pass || res.counts.good != n || res.match_entry != n) {
                                fprintf(stderr, "verification failed: good %llu of %zu\n",
                                        (unsigned long long)res.counts.good, n);
                                return 1;
                        }
                }
                printf("{\"bench\":\"ima_verify\",\"entries\":%zu,\"policy_entries\":%zu,"
                       "\"template\":\"ima-ng\",\"digest\":\"sha256\",\"log_hash\":\"sha1\","
                       "\"bank\":\"%s\",\"us_per_entry\":%.3f,\"ms\":%.1f}\n",
                       n, vg_ima_policy_digest_count(p), vg_hash_alg_name(banks[b]),
                       vbest * 1e6 / (double)n, vbest * 1e3);
        }
        vg_ima_policy_unref(p);
        free(log.p);
        free(pol.p);
        return 0;
}
