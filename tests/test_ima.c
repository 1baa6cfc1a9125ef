/* vigil tests: IMA verification (vg_ima) on real Keylime/rust-keylime logs and on logs built here
 * entry by entry (template data as the kernel hashes it), with independent PCR replays, runtime
 * policies, excludes, violations, incremental state, ima-sig/ima-buf keys, and `vigil verify`. */
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "encoding.h"
#include "hash.h"
#include "ima.h"
#include "tap.h"

/* ---- helpers ------------------------------------------------------------------------------- */

/* Strings made inline for one call, freed at exit (so the ASan run sees no leak). */
static char *kept[512];
static size_t n_kept;

static char *keep(char *s)
{
        if (n_kept == VG_ARRAY_SIZE(kept))
                tap_bail("too many kept strings");
        return kept[n_kept++] = s;
}

static void free_kept(void)
{
        while (n_kept)
                free(kept[--n_kept]);
}

#define F(...) keep(tap_strf(__VA_ARGS__))

struct text {
        char *p;
        size_t len, cap;
};

static void tappend(struct text *t, const char *s, size_t n)
{
        if (t->len + n + 1 > t->cap) {
                t->cap = (t->len + n + 1) * 2;
                t->p = realloc(t->p, t->cap);
                if (!t->p)
                        tap_bail("out of memory");
        }
        memcpy(t->p + t->len, s, n);
        t->len += n;
        t->p[t->len] = '\0';
}

static void tputs(struct text *t, const char *s)
{
        tappend(t, s, strlen(s));
}

static char *hexs(const uint8_t *d, size_t n)
{
        char *h = vg_hex_encode(d, n);
        if (!h)
                tap_bail("out of memory");
        return h;
}

static char *shared(const char *rel, size_t *len)
{
        _cleanup_free_ char *path = tap_shared_data(rel);
        char *t = tap_read_file(path, len);

        if (!t)
                tap_bail("cannot read %s", path);
        return t;
}

/* Failures collected by on_failure. */
struct fails {
        int n;
        enum vg_ima_failure_kind kind[16];
        char msg[16][800];
        uint64_t line[16];
};

static void on_failure(const struct vg_ima_failure *f, void *ud)
{
        struct fails *fs = ud;

        if (fs->n < 16) {
                fs->kind[fs->n] = f->kind;
                fs->line[fs->n] = f->line;
                snprintf(fs->msg[fs->n], sizeof(fs->msg[0]), "%s", f->message);
        }
        fs->n++;
}

static void put_u32le(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

/* A log line for tpl ("ima-ng", "ima-sig", "ima-buf") with the sha1 template hash computed here
 * from the kernel's layout; also extends the sha1 and sha256 PCRs given (may be NULL). */
static void add_entry(struct text *log, const char *tpl, const char *alg, const uint8_t *digest,
                      size_t dlen, const char *path, const uint8_t *extra, size_t extra_len,
                      uint8_t *pcr1, uint8_t *pcr256)
{
        size_t alen = strlen(alg), plen = strlen(path), o = 0;
        uint8_t *td = malloc(64 + alen + dlen + plen + extra_len);
        uint8_t th1[20], th256[32], buf[64];
        bool has_extra = strcmp(tpl, "ima-ng") != 0;

        put_u32le(td, (uint32_t)(alen + 2 + dlen));
        memcpy(td + 4, alg, alen);
        o = 4 + alen;
        td[o++] = ':';
        td[o++] = 0;
        memcpy(td + o, digest, dlen);
        o += dlen;
        put_u32le(td + o, (uint32_t)plen + 1);
        memcpy(td + o + 4, path, plen + 1);
        o += 4 + plen + 1;
        if (has_extra) {
                put_u32le(td + o, (uint32_t)extra_len);
                if (extra_len)
                        memcpy(td + o + 4, extra, extra_len);
                o += 4 + extra_len;
        }
        vg_hash(VG_HASH_SHA1, td, o, th1);
        vg_hash(VG_HASH_SHA256, td, o, th256);
        free(td);
        if (pcr1) {
                memcpy(buf, pcr1, 20);
                memcpy(buf + 20, th1, 20);
                vg_hash(VG_HASH_SHA1, buf, 40, pcr1);
        }
        if (pcr256) {
                memcpy(buf, pcr256, 32);
                memcpy(buf + 32, th256, 32);
                vg_hash(VG_HASH_SHA256, buf, 64, pcr256);
        }
        _cleanup_free_ char *th = hexs(th1, 20), *dh = hexs(digest, dlen);
        _cleanup_free_ char *xh = extra_len ? hexs(extra, extra_len) : strdup("");
        char *line =
            tap_strf("10 %s %s %s:%s %s%s%s\n", th, tpl, alg, dh, path, has_extra ? " " : "", xh);
        tputs(log, line);
        free(line);
}

static void add_file(struct text *log, const char *path, const char *content, uint8_t *pcr1,
                     uint8_t *pcr256)
{
        uint8_t d[32];

        vg_hash(VG_HASH_SHA256, content, strlen(content), d);
        add_entry(log, "ima-ng", "sha256", d, 32, path, NULL, 0, pcr1, pcr256);
}

static char *digest_hex_of(const char *content)
{
        uint8_t d[32];

        vg_hash(VG_HASH_SHA256, content, strlen(content), d);
        return hexs(d, 32);
}

/* A runtime policy JSON v1 with the given "digests" body, excludes, keyrings and keys. */
static char *policy_json(const char *digests, const char *excludes, const char *keyrings,
                         const char *vkeys)
{
        return tap_strf("{\"meta\": {\"version\": 1, \"generator\": 0}, \"release\": 0, "
                        "\"digests\": {%s}, \"excludes\": [%s], \"keyrings\": {%s}, "
                        "\"ima\": {\"ignored_keyrings\": [], \"log_hash_alg\": \"sha1\", "
                        "\"dm_policy\": null}, \"ima-buf\": {}, \"verification-keys\": \"%s\"}",
                        digests, excludes ? excludes : "", keyrings ? keyrings : "",
                        vkeys ? vkeys : "");
}

static struct vg_ima_policy *parse_policy(const char *json)
{
        struct vg_ima_policy *p = NULL;
        struct vg_error err = { 0 };

        if (vg_ima_policy_parse(json, strlen(json), &p, &err) < 0)
                tap_diag("policy refused: %s", err.msg);
        return p;
}

static int verify(const struct vg_ima_policy *p, enum vg_hash_alg bank, const char *log, size_t len,
                  const uint8_t *pcr, const struct vg_ima_options *o, struct vg_ima_result *res)
{
        _cleanup_(vg_ima_state_freep) struct vg_ima_state *st = NULL;
        struct vg_error err = { 0 };

        vg_ima_state_new(bank, &st);
        return vg_ima_verify(p, st, log, len, 0, pcr, o, res, &err);
}

/* ---- real logs ----------------------------------------------------------------------------- */

struct gen {
        char *paths[2048];
        struct text digests[2048];
        int n;
        const char *skip; /* leave this path out */
};

/* A policy generated from a log: every digest seen per path, as `keylime-policy create runtime
 * -m` does. */
static int gen_entry(const struct vg_ima_entry *e, void *ud)
{
        struct gen *g = ud;
        _cleanup_free_ char *d = hexs(e->digest, e->digest_len);
        char *item;
        int i;

        if (g->skip && strcmp(e->path, g->skip) == 0)
                return 0;
        for (i = 0; i < g->n && strcmp(g->paths[i], e->path) != 0; i++)
                ;
        if (i == g->n) {
                if (g->n == 2048)
                        tap_bail("too many paths");
                g->paths[g->n++] = strdup(e->path);
        } else if (strstr(g->digests[i].p, d)) {
                return 0;
        }
        item = tap_strf("%s\"%s\"", g->digests[i].len ? ", " : "", d);
        tputs(&g->digests[i], item);
        free(item);
        return 0;
}

static char *policy_from_log(const char *log, size_t len, const char *skip)
{
        struct gen *g = calloc(1, sizeof(*g));
        struct text body = { 0 };
        struct vg_error err = { 0 };
        char *json;

        g->skip = skip;
        tputs(&body, "");
        if (vg_ima_parse_log(log, len, gen_entry, g, &err) < 0)
                tap_bail("parse: %s", err.msg);
        for (int i = 0; i < g->n; i++) {
                char *item =
                    tap_strf("%s\"%s\": [%s]", i ? ", " : "", g->paths[i], g->digests[i].p);
                tputs(&body, item);
                free(item);
                free(g->paths[i]);
                free(g->digests[i].p);
        }
        json = policy_json(body.p, NULL, NULL, NULL);
        free(body.p);
        free(g);
        return json;
}

/* PCR 10 (sha1 bank) from column 2 alone, the way a TPM extends it: independent of our
 * template reconstruction. n entries, or all when n < 0. */
static void pcr_from_column2(const char *log, int n, uint8_t pcr[20])
{
        const char *p = log;

        memset(pcr, 0, 20);
        for (int i = 0; *p && (n < 0 || i < n); i++) {
                uint8_t buf[40];
                const char *h = strchr(p, ' ') + 1;

                memcpy(buf, pcr, 20);
                if (vg_hex_decode_exact(h, 40, buf + 20, 20) < 0)
                        tap_bail("bad column 2");
                if (memcmp(buf + 20, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20) == 0)
                        memset(buf + 20, 0xff, 20);
                vg_hash(VG_HASH_SHA1, buf, 40, pcr);
                p = strchr(p, '\n') + 1;
        }
}

static void test_real_logs(void)
{
        static const char *algs[] = { "sha1", "sha256", "sha384", "sha512" };

        for (size_t i = 0; i < 4; i++) {
                size_t llen, alen, plen;
                _cleanup_free_ char *log =
                    shared(F("ima/keylime-ima-log-%s.ascii", algs[i]), &llen);
                _cleanup_free_ char *al =
                    shared(F("policy/keylime-allowlist-%s.txt", algs[i]), &alen);
                _cleanup_free_ char *pj =
                    shared(F("policy/keylime-policy-%s.json", algs[i]), &plen);
                _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *pol = NULL, *flat = NULL;
                struct vg_ima_result res;
                struct fails fs = { 0 };
                struct vg_ima_options o = { .on_failure = on_failure, .userdata = &fs };
                struct vg_error err = { 0 };
                bool boot_violation = strstr(log, "10 0000000000000000000000000000000000000000 ");

                /* The shipped policy is keylime-policy's output for another base: it parses,
                 * every template hash checks, and /data is reported as not allowed. */
                ok(vg_ima_policy_parse(pj, plen, &pol, &err) == 0, "%s: keylime-policy JSON parses",
                   algs[i]);
                is_int(verify(pol, VG_HASH_SHA256, log, llen, NULL, &o, &res), 0, "%s: walked",
                       algs[i]);
                is_int(res.counts.template_hash, 0, "%s: every template hash checks", algs[i]);
                is_int(res.counts.fnf, boot_violation ? 1 : 2, "%s: /data%s not in that policy",
                       algs[i], boot_violation ? "" : " and boot_aggregate");
                contains(fs.msg[fs.n - 1], "File not found in allowlist: /data", "%s: named",
                         algs[i]);

                /* The allowlist names the same file as "data" (a relative rootfs path): rooted at
                 * "/", it allows the log's /data digest, which must therefore verify. */
                char *rooted =
                    tap_strf("%.*s/%s", (int)(strstr(al, "  ") + 2 - al), al, strstr(al, "  ") + 2);
                ok(vg_ima_policy_from_lists(rooted, strlen(rooted), "boot_aggregate\n", 15, &flat,
                                            &err) == 0,
                   "%s: flat allowlist parses", algs[i]);
                fs.n = 0;
                verify(flat, VG_HASH_SHA1, log, llen, NULL, &o, &res);
                ok(res.pass && res.counts.good == 1 && res.counts.fnf == 0,
                   "%s: the log verifies against its allowlist (good %llu, failures %d)", algs[i],
                   (unsigned long long)res.counts.good, fs.n);
                free(rooted);
        }
}

static void test_rust_keylime_log(void)
{
        size_t len;
        _cleanup_free_ char *log = shared("ima/rust-keylime-ima-ng-sha1-826.ascii", &len);
        _cleanup_free_ char *json = policy_from_log(log, len, NULL);
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p = parse_policy(json);
        uint8_t pcr[20], pcr500[20];
        struct vg_ima_result res;
        struct fails fs = { 0 };
        struct vg_ima_options o = { .on_failure = on_failure, .userdata = &fs };

        pcr_from_column2(log, -1, pcr);
        ok(p != NULL, "826: a policy generated from the log parses");
        is_int(verify(p, VG_HASH_SHA1, log, len, pcr, &o, &res), 0, "826: walked");
        ok(res.pass, "826: passes");
        is_int(res.entries, 826, "826: 826 entries");
        is_int(res.counts.good, 826, "826: all good");
        ok(res.pcr_matched && res.match_entry == 826,
           "826: replay reaches the PCR computed from column 2, after the last entry");
        is_int(fs.n, 0, "826: no failure reported");

        /* One digest removed: exactly one fnf, named. */
        const char *victim = "/lib/x86_64-linux-gnu/ld-2.23.so";
        _cleanup_free_ char *json2 = policy_from_log(log, len, victim);
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p2 = parse_policy(json2);
        fs.n = 0;
        verify(p2, VG_HASH_SHA1, log, len, pcr, &o, &res);
        ok(!res.pass && res.counts.fnf >= 1, "826: a path left out fails");
        int expect_fnf = 0;
        for (const char *q = log; (q = strstr(q, " /lib/x86_64-linux-gnu/ld-2.23.so\n")); q++)
                expect_fnf++;
        is_int(res.counts.fnf, expect_fnf, "826: one fnf per measurement of %s", victim);
        is_str(fs.msg[0], "File not found in allowlist: /lib/x86_64-linux-gnu/ld-2.23.so",
               "826: Keylime's message");
        ok(res.pcr_matched, "826: the replay still matches");

        /* A modified entry: the template hash no longer checks. */
        _cleanup_free_ char *mod = strdup(log);
        char *l5 = mod;
        for (int i = 0; i < 4; i++)
                l5 = strchr(l5, '\n') + 1;
        char *dg = strstr(l5, "sha1:") + 5;
        *dg = *dg == 'a' ? 'b' : 'a';
        fs.n = 0;
        verify(p, VG_HASH_SHA1, mod, len, pcr, &o, &res);
        is_int(res.counts.template_hash, 1, "826: a modified digest is one template-hash failure");
        ok(fs.n >= 1 && fs.kind[0] == VG_IMA_FAIL_TEMPLATE_HASH && fs.line[0] == 5,
           "826: reported on line 5");
        ok(!res.pcr_matched,
           "826: and the replay (of the data's own hash, as the kernel extends) misses the PCR");

        /* Reordered: swap lines 10 and 11; the PCR never matches. */
        _cleanup_free_ char *re = strdup(log);
        char *a = re;
        for (int i = 0; i < 9; i++)
                a = strchr(a, '\n') + 1;
        char *b = strchr(a, '\n') + 1, *c = strchr(b, '\n') + 1;
        size_t la = (size_t)(b - a), lb = (size_t)(c - b);
        char *tmp = malloc(la + lb);
        memcpy(tmp, b, lb);
        memcpy(tmp + lb, a, la);
        memcpy(a, tmp, la + lb);
        free(tmp);
        fs.n = 0;
        verify(p, VG_HASH_SHA1, re, len, pcr, &o, &res);
        ok(!res.pass && !res.pcr_matched, "826: reordered entries do not match the PCR");
        is_int(res.counts.template_hash + res.counts.fnf + res.counts.hash, 0,
               "826: (each entry alone is still fine)");
        ok(fs.n == 1 && fs.kind[0] == VG_IMA_FAIL_PCR_MISMATCH, "826: reported as pcr-mismatch");

        /* Truncated: the last entry missing. */
        size_t tlen = len - 1;
        while (log[tlen - 1] != '\n')
                tlen--;
        verify(p, VG_HASH_SHA1, log, tlen, pcr, NULL, &res);
        ok(!res.pass && !res.pcr_matched && res.entries == 825,
           "826: a truncated log does not reach the PCR");

        /* A log ahead of the quote: the quote covers 500 entries; the state stops there. */
        _cleanup_(vg_ima_state_freep) struct vg_ima_state *st = NULL;
        struct vg_error err = { 0 };
        pcr_from_column2(log, 500, pcr500);
        vg_ima_state_new(VG_HASH_SHA1, &st);
        vg_ima_verify(p, st, log, len, 0, pcr500, NULL, &res, &err);
        ok(res.pass && res.match_entry == 500 && vg_ima_state_next_entry(st) == 500,
           "826: a log ahead of the quote matches at entry 500");
        is_mem(vg_ima_state_pcr(st), 20, pcr500, 20, "826: state holds the PCR at entry 500");
        const char *from500 = log;
        for (int i = 0; i < 500; i++)
                from500 = strchr(from500, '\n') + 1;
        vg_ima_verify(p, st, from500, len - (size_t)(from500 - log), 500, pcr, NULL, &res, &err);
        ok(res.pass && vg_ima_state_next_entry(st) == 826 && res.entries == 326,
           "826: the next quote resumes at entry 500 and reaches 826");
        vg_ima_verify(p, st, "", 0, 826, pcr, NULL, &res, &err);
        ok(res.pass && res.entries == 0, "826: no new entries: the quote matches the state");
        fs.n = 0;
        vg_ima_verify(p, st, from500, len - (size_t)(from500 - log), 500, pcr, &o, &res, &err);
        ok(!res.pass && fs.n == 1 && fs.kind[0] == VG_IMA_FAIL_ENTRY_NUMBER,
           "826: a list from an entry other than 0 or the one asked fails: %s", fs.msg[0]);
        vg_ima_verify(p, st, log, len, 0, pcr, NULL, &res, &err);
        ok(res.pass && vg_ima_state_next_entry(st) == 826,
           "826: a list from entry 0 (agent rebooted) starts over");

        /* Three chunks with state carried == all at once. */
        _cleanup_(vg_ima_state_freep) struct vg_ima_state *s3 = NULL;
        vg_ima_state_new(VG_HASH_SHA1, &s3);
        const char *cut[4] = { log, NULL, NULL, log + len };
        int at[2] = { 300, 650 };
        for (int k = 0; k < 2; k++) {
                cut[k + 1] = log;
                for (int i = 0; i < at[k]; i++)
                        cut[k + 1] = strchr(cut[k + 1], '\n') + 1;
        }
        uint64_t good = 0;
        bool all = true;
        for (int k = 0; k < 3; k++) {
                uint8_t q[20];
                pcr_from_column2(log, k < 2 ? at[k] : -1, q);
                vg_ima_verify(p, s3, cut[k], (size_t)(cut[k + 1] - cut[k]),
                              vg_ima_state_next_entry(s3), q, NULL, &res, &err);
                all = all && res.pass;
                good += res.counts.good;
        }
        ok(all && good == 826 && vg_ima_state_next_entry(s3) == 826,
           "826: three chunks with state carried pass with 826 good");
        is_mem(vg_ima_state_pcr(s3), 20, pcr, 20, "826: and end at the same PCR");

        /* Without a policy: parse, template hashes and replay only. */
        verify(NULL, VG_HASH_SHA1, log, len, pcr, NULL, &res);
        ok(res.pass && res.counts.good == 0, "826: no policy: replay only, passes");
}

/* ---- built logs ---------------------------------------------------------------------------- */

static void test_violations_and_excludes(void)
{
        struct text log = { 0 };
        uint8_t pcr1[20] = { 0 }, pcr256[32] = { 0 }, buf[64];
        struct vg_ima_result res;
        struct fails fs = { 0 };
        struct vg_ima_options o = { .on_failure = on_failure, .userdata = &fs };

        add_file(&log, "/usr/bin/a", "a", pcr1, pcr256);
        /* A violation: template hash all zeros, the PCR extended with 0xff.. */
        tputs(&log, "10 0000000000000000000000000000000000000000 ima-ng "
                    "sha256:0000000000000000000000000000000000000000000000000000000000000000 "
                    "/var/log/busy\n");
        memcpy(buf, pcr1, 20);
        memset(buf + 20, 0xff, 20);
        vg_hash(VG_HASH_SHA1, buf, 40, pcr1);
        memcpy(buf, pcr256, 32);
        memset(buf + 32, 0xff, 32);
        vg_hash(VG_HASH_SHA256, buf, 64, pcr256);
        add_file(&log, "/tmp/x", "tmp", pcr1, pcr256);
        add_file(&log, "/var/tmp/x", "vartmp", pcr1, pcr256);

        _cleanup_free_ char *da = digest_hex_of("a");
        char *json = policy_json(F("\"/usr/bin/a\": [\"%s\"]", da), "\"/tmp/.*\"", NULL, NULL);
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p = parse_policy(json);
        free(json);

        verify(p, VG_HASH_SHA256, log.p, log.len, pcr256, &o, &res);
        ok(res.pcr_matched, "violation: the sha256 replay extends 0xff.. and matches");
        is_int(res.counts.violation, 1, "violation: counted");
        is_int(res.counts.excluded, 1, "exclude: /tmp/x excluded by \"/tmp/.*\"");
        is_int(res.counts.fnf, 1, "exclude: /var/tmp/x is not (re.match anchors at the start)");
        is_str(fs.msg[0], "File not found in allowlist: /var/tmp/x",
               "exclude: the fnf is /var/tmp/x");
        ok(!res.pass, "exclude: fails on /var/tmp/x");

        /* With /var/tmp/x allowed: violations accepted by default, failed when asked. */
        _cleanup_free_ char *dv = digest_hex_of("vartmp");
        json = policy_json(F("\"/usr/bin/a\": [\"%s\"], \"/var/tmp/x\": [\"%s\"]", da, dv),
                           "\"/tmp/.*\"", NULL, NULL);
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p2 = parse_policy(json);
        free(json);
        verify(p2, VG_HASH_SHA1, log.p, log.len, pcr1, NULL, &res);
        ok(res.pass && res.counts.good == 2, "violation: accepted by default (sha1 bank)");
        fs.n = 0;
        o.fail_on_violations = true;
        verify(p2, VG_HASH_SHA1, log.p, log.len, pcr1, &o, &res);
        ok(!res.pass && fs.n == 1 && fs.kind[0] == VG_IMA_FAIL_VIOLATION && fs.line[0] == 2,
           "violation: fails with fail_on_violations, on line 2");

        /* A wrong digest for a known path: hash failure with both sides. */
        char *bad = policy_json(F("\"/usr/bin/a\": [\"%s\"], \"/var/tmp/x\": [\"%s\"]", dv, dv),
                                "\"/tmp/.*\"", NULL, NULL);
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p3 = parse_policy(bad);
        free(bad);
        fs.n = 0;
        o.fail_on_violations = false;
        verify(p3, VG_HASH_SHA1, log.p, log.len, pcr1, &o, &res);
        ok(res.counts.hash == 1 && fs.n == 1 && fs.kind[0] == VG_IMA_FAIL_HASH,
           "hash: a digest not allowed is one hash failure");
        contains(fs.msg[0], F("Hashes for file /usr/bin/a don't match %s not in [%s]", da, dv),
                 "hash: message names found and allowed");

        /* boot_aggregate is checked like a file, plus the aggregates given by the caller. */
        struct text blog = { 0 };
        uint8_t agg[32];
        vg_hash(VG_HASH_SHA256, "boot", 4, agg);
        add_entry(&blog, "ima-ng", "sha256", agg, 32, "boot_aggregate", NULL, 0, NULL, NULL);
        json = policy_json("", NULL, NULL, NULL);
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p4 = parse_policy(json);
        free(json);
        fs.n = 0;
        verify(p4, VG_HASH_SHA1, blog.p, blog.len, NULL, &o, &res);
        ok(!res.pass && fs.n == 1 && fs.kind[0] == VG_IMA_FAIL_BOOT_AGGREGATE,
           "boot_aggregate: not in the policy fails");
        uint8_t aggs[2][VG_HASH_MAX_SIZE] = { { 0 } };
        memcpy(aggs[1], agg, 32);
        o.boot_aggregates = (const uint8_t(*)[VG_HASH_MAX_SIZE])aggs;
        o.n_boot_aggregates = 2;
        verify(p4, VG_HASH_SHA1, blog.p, blog.len, NULL, &o, &res);
        ok(res.pass, "boot_aggregate: accepted when the caller's aggregates hold it");
        free(blog.p);
        free(log.p);
}

static void test_parse_errors(void)
{
        struct text log = { 0 };
        struct vg_error err = { 0 };
        struct vg_ima_result res;
        struct fails fs = { 0 };
        struct vg_ima_options o = { .on_failure = on_failure, .userdata = &fs };

        add_file(&log, "/a", "a", NULL, NULL);
        tputs(&log, "10 1111111111111111111111111111111111111111 ima-ngv2 sha256:00 /b\n");
        tputs(&log, "10 zz ima-ng sha256:00 /c\n");
        verify(NULL, VG_HASH_SHA1, log.p, log.len, NULL, &o, &res);
        ok(!res.pass && res.counts.parse == 2 && fs.n == 2, "parse: two bad lines, two failures");
        contains(fs.msg[0], "line 2: unknown template \"ima-ngv2\"",
                 "parse: unknown template named");
        contains(fs.msg[1], "line 3: expected the template hash in hex", "parse: bad hash, line 3");
        is_int(vg_ima_parse_log(log.p, log.len, NULL, NULL, &err), -EBADMSG,
               "parse_log: stops at the first bad line");
        contains(err.msg, "line 2", "parse_log: names line 2");

        static const char *const bad[] = {
                "x 11 ima-ng sha1:00 /a\n",
                "10 1111111111111111111111111111111111111111 ima-ng 00 /a\n",
                "10 1111111111111111111111111111111111111111 ima-ng sha256:0g /a\n",
                "10 1111111111111111111111111111111111111111 ima-ng sha256:00\n",
                "10 1111111111111111111111111111111111111111 ima 00112233 /a\n",
                "10 1111111111111111111111111111111111111111 ima-sig sha256:00 /a 123\n",
                "10 1111111111111111111111111111111111111111\n",
        };
        for (size_t i = 0; i < VG_ARRAY_SIZE(bad); i++) {
                err.msg[0] = 0;
                ok(vg_ima_parse_log(bad[i], strlen(bad[i]), NULL, NULL, &err) == -EBADMSG &&
                       strstr(err.msg, "line 1: "),
                   "parse: refused with a line number: %s", err.msg);
        }
        free(log.p);

        /* Legacy "ima": digest + name padded to 256 bytes, no length prefixes. */
        uint8_t td[20 + 256] = { 0 }, th[20];
        vg_hash(VG_HASH_SHA1, "legacy", 6, td);
        memcpy(td + 20, "/bin/legacy", 11);
        vg_hash(VG_HASH_SHA1, td, sizeof(td), th);
        _cleanup_free_ char *thh = hexs(th, 20), *dh = hexs(td, 20);
        char *line = tap_strf("10 %s ima %s /bin/legacy\n", thh, dh);
        verify(NULL, VG_HASH_SHA1, line, strlen(line), NULL, NULL, &res);
        ok(res.pass && res.counts.template_hash == 0, "legacy ima: template hash checks");
        free(line);
}

/* ---- signatures and keyrings --------------------------------------------------------------- */

static uint32_t keyid_of(EVP_PKEY *pk)
{
        uint8_t sha[20];
        unsigned char *der = NULL;
        size_t n = 0;
        int len;

        if (EVP_PKEY_base_id(pk) == EVP_PKEY_RSA) {
                len = i2d_PublicKey(pk, &der);
        } else {
                EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0,
                                                &n);
                der = OPENSSL_malloc(n);
                EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, der, n, &n);
                len = (int)n;
        }
        vg_hash(VG_HASH_SHA1, der, (size_t)len, sha);
        OPENSSL_free(der);
        return (uint32_t)sha[16] << 24 | (uint32_t)sha[17] << 16 | (uint32_t)sha[18] << 8 | sha[19];
}

/* signature_v2_hdr over a sha256 file digest. */
static size_t sign_v2(EVP_PKEY *pk, const uint8_t *digest, uint8_t *out)
{
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
        size_t siglen = 1024;
        uint32_t id = keyid_of(pk);

        if (!ctx || EVP_PKEY_sign_init(ctx) != 1 ||
            EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1 ||
            (EVP_PKEY_base_id(pk) == EVP_PKEY_RSA &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1) ||
            EVP_PKEY_sign(ctx, out + 9, &siglen, digest, 32) != 1)
                tap_bail("signing failed");
        EVP_PKEY_CTX_free(ctx);
        out[0] = 3;
        out[1] = 2;
        out[2] = 4; /* HASH_ALGO_SHA256 */
        out[3] = (uint8_t)(id >> 24);
        out[4] = (uint8_t)(id >> 16);
        out[5] = (uint8_t)(id >> 8);
        out[6] = (uint8_t)id;
        out[7] = (uint8_t)(siglen >> 8);
        out[8] = (uint8_t)siglen;
        return siglen + 9;
}

static char *spki_b64(EVP_PKEY *pk, uint8_t **der_out, size_t *der_len)
{
        unsigned char *der = NULL;
        int len = i2d_PUBKEY(pk, &der);
        char *b = vg_b64_encode(der, (size_t)len, VG_B64_STD);

        if (der_out) {
                *der_out = malloc((size_t)len);
                memcpy(*der_out, der, (size_t)len);
                *der_len = (size_t)len;
        }
        OPENSSL_free(der);
        return b;
}

static void test_signatures(void)
{
        EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        uint8_t d[32], sig[600];
        struct vg_ima_result res;
        struct fails fs = { 0 };
        struct vg_ima_options o = { .on_failure = on_failure, .userdata = &fs };

        if (!rsa || !ec)
                tap_bail("keygen failed");
        vg_hash(VG_HASH_SHA256, "signed", 6, d);
        EVP_PKEY *keys[2] = { rsa, ec };
        const char *names[2] = { "RSA", "ECDSA" };
        for (int k = 0; k < 2; k++) {
                struct text log = { 0 };
                size_t n = sign_v2(keys[k], d, sig);
                _cleanup_free_ char *b64 = spki_b64(keys[k], NULL, NULL);
                char *vk = tap_strf("{\\\"meta\\\": {\\\"version\\\": 1}, \\\"keyids\\\": [], "
                                    "\\\"pubkeys\\\": [\\\"%s\\\"]}",
                                    b64);
                char *json = policy_json("", NULL, NULL, vk);
                _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p = parse_policy(json);

                ok(p != NULL, "%s: policy with verification-keys parses", names[k]);
                add_entry(&log, "ima-sig", "sha256", d, 32, "/usr/bin/signed", sig, n, NULL, NULL);
                fs.n = 0;
                verify(p, VG_HASH_SHA1, log.p, log.len, NULL, &o, &res);
                ok(res.pass && res.counts.good == 1,
                   "%s: a valid v2 signature accepts a file the allowlist does not name", names[k]);
                sig[n - 1] ^= 1;
                log.len = 0;
                add_entry(&log, "ima-sig", "sha256", d, 32, "/usr/bin/signed", sig, n, NULL, NULL);
                fs.n = 0;
                verify(p, VG_HASH_SHA1, log.p, log.len, NULL, &o, &res);
                ok(!res.pass && res.counts.fnf == 1,
                   "%s: a bad signature falls back to the allowlist (fnf)", names[k]);
                free(log.p);
                free(json);
                free(vk);
        }

        /* ima-buf: an RSA key measured onto .ima is learned once its digest is allowed; then
         * an ima-sig entry signed with it verifies. State save/load keeps the key. */
        uint8_t *der;
        size_t der_len;
        free(spki_b64(rsa, &der, &der_len)); /* only the DER is needed here */
        uint8_t kd[32];
        vg_hash(VG_HASH_SHA256, der, der_len, kd);
        _cleanup_free_ char *kdh = hexs(kd, 32);
        struct text log = { 0 };
        add_entry(&log, "ima-buf", "sha256", kd, 32, ".ima", der, der_len, NULL, NULL);
        size_t n = sign_v2(rsa, d, sig);
        add_entry(&log, "ima-sig", "sha256", d, 32, "/usr/bin/signed", sig, n, NULL, NULL);

        char *json = policy_json("", NULL, F("\".ima\": [\"%s\"]", kdh), NULL);
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p = parse_policy(json);
        free(json);
        _cleanup_(vg_ima_state_freep) struct vg_ima_state *st = NULL;
        struct vg_error err = { 0 };
        vg_ima_state_new(VG_HASH_SHA256, &st);
        fs.n = 0;
        vg_ima_verify(p, st, log.p, log.len, 0, NULL, &o, &res, &err);
        ok(res.pass && res.counts.good == 2 && vg_ima_state_learned_keys(st) == 1,
           "ima-buf: the .ima key is learned and verifies the next ima-sig entry (%s)",
           fs.n ? fs.msg[0] : "no failure");

        uint8_t *saved;
        size_t saved_len;
        _cleanup_(vg_ima_state_freep) struct vg_ima_state *back = NULL;
        ok(vg_ima_state_save(st, &saved, &saved_len) == 0 &&
               vg_ima_state_load(saved, saved_len, &back, &err) == 0,
           "state: save and load");
        ok(back && vg_ima_state_next_entry(back) == 2 &&
               vg_ima_state_bank(back) == VG_HASH_SHA256 && vg_ima_state_learned_keys(back) == 1 &&
               memcmp(vg_ima_state_pcr(back), vg_ima_state_pcr(st), 32) == 0,
           "state: entry, bank, PCR and learned key survive");
        /* The loaded state verifies a later signed entry with the learned key alone. */
        struct text later = { 0 };
        add_entry(&later, "ima-sig", "sha256", d, 32, "/usr/bin/signed", sig, n, NULL, NULL);
        vg_ima_verify(p, back, later.p, later.len, 2, NULL, NULL, &res, &err);
        ok(res.pass && res.counts.good == 1, "state: the learned key still verifies after load");
        bool all_refused = true;
        struct vg_ima_state *tmp = NULL;
        for (size_t cut = 0; cut < saved_len; cut += 7) {
                if (vg_ima_state_load(saved, cut, &tmp, &err) != -EBADMSG)
                        all_refused = false;
                vg_ima_state_free(tmp);
        }
        ok(all_refused, "state: every truncation is refused with -EBADMSG");
        saved[4] = 9;
        is_int(vg_ima_state_load(saved, saved_len, &tmp, &err), -EBADMSG,
               "state: an unknown version is refused");
        contains(err.msg, "version", "state: saying so");
        free(saved);

        /* Without the keyring digest: a keyring failure, and the signed entry is then fnf. */
        json = policy_json("", NULL, NULL, NULL);
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p2 = parse_policy(json);
        free(json);
        fs.n = 0;
        verify(p2, VG_HASH_SHA1, log.p, log.len, NULL, &o, &res);
        ok(!res.pass && res.counts.keyring == 1 && res.counts.fnf == 1 &&
               fs.kind[0] == VG_IMA_FAIL_KEYRING,
           "ima-buf: a key whose digest is not in keyrings is refused and not learned");
        /* Ignored keyrings are accepted but not learned. */
        json = tap_strf("{\"meta\": {\"version\": 1, \"generator\": 0}, \"release\": 0, "
                        "\"digests\": {}, \"excludes\": [], \"keyrings\": {}, \"ima\": "
                        "{\"ignored_keyrings\": [\"*\"], \"log_hash_alg\": \"sha1\", "
                        "\"dm_policy\": null}, \"ima-buf\": {}, \"verification-keys\": \"\"}");
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p3 = parse_policy(json);
        free(json);
        verify(p3, VG_HASH_SHA1, log.p, log.len, NULL, NULL, &res);
        ok(res.counts.keyring == 0 && res.counts.fnf == 1,
           "ima-buf: an ignored keyring is accepted, its key not learned");
        free(log.p);
        free(later.p);
        free(der);
        EVP_PKEY_free(rsa);
        EVP_PKEY_free(ec);
}

/* ---- policies ------------------------------------------------------------------------------ */

static void policy_error(const char *json, const char *needle, const char *what)
{
        struct vg_ima_policy *p = NULL;
        struct vg_error err = { 0 };

        ok(vg_ima_policy_parse(json, strlen(json), &p, &err) == -EINVAL && !p, "policy: %s refused",
           what);
        contains(err.msg, needle, "policy: %s: the error names it", what);
        vg_ima_policy_unref(p);
}

static void test_policies(void)
{
        _cleanup_free_ char *d40 = strdup("0123456789abcdef0123456789abcdef01234567");
        char *j;

        j = policy_json(F("\"/usr/bin/bash\": [\"%s\", \"XYZ\"]", d40), NULL, NULL, NULL);
        policy_error(j, "digests./usr/bin/bash[1]", "a bad digest");
        free(j);
        j = policy_json(F("\"boot_aggregate\": [\"sha256:%s\"]", d40), NULL, NULL, NULL);
        policy_error(j, "without an algorithm prefix", "a sha256:-prefixed digest (as Keylime)");
        free(j);
        j = policy_json("\"/a\": []", NULL, NULL, NULL);
        policy_error(j, "digests./a: expected at least one digest", "an empty digest list");
        free(j);
        j = policy_json("", "\"(unclosed\"", NULL, NULL);
        policy_error(j, "excludes[0]: not a valid regular expression", "a bad exclude");
        free(j);
        policy_error("{\"meta\": {\"version\": 1, \"generator\": 0}, \"release\": 0}",
                     "missing required key \"digests\"", "a missing key");
        policy_error("{\"meta\": {\"version\": 2, \"generator\": 0}}", "meta.version", "version 2");
        j = policy_json(F("\"/a\": [\"%s\"], \"/a\": [\"%s\"]", d40, d40), NULL, NULL, NULL);
        policy_error(j, "digests./a: duplicate key", "a duplicate path");
        free(j);
        policy_error("{\"meta\": {\"version\": 1, \"generator\": 0}, \"release\": 0,}", "line 1",
                     "a trailing comma");
        j = policy_json("", NULL, NULL, NULL);
        char *dm = strdup(j);
        free(j);
        char *at = strstr(dm, "\"dm_policy\": null");
        memcpy(at, "\"dm_policy\": 1234", 17);
        policy_error(dm, "ima.dm_policy", "a device-mapper policy");
        free(dm);

        /* Keylime's own policies and lists. */
        static const char *files[] = { "policy/keylime-runtime-policy.json",
                                       "policy/keylime-policy-sha256.json" };
        for (size_t i = 0; i < 2; i++) {
                size_t len;
                _cleanup_free_ char *t = shared(files[i], &len);
                _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p = NULL, *again = NULL;
                struct vg_error err = { 0 };
                _cleanup_free_ char *out = NULL, *out2 = NULL;

                ok(vg_ima_policy_parse(t, len, &p, &err) == 0, "%s parses", files[i]);
                ok(p && vg_ima_policy_to_json(p, &out, &err) == 0 &&
                       vg_ima_policy_parse(out, strlen(out), &again, &err) == 0 &&
                       vg_ima_policy_to_json(again, &out2, &err) == 0 && strcmp(out, out2) == 0 &&
                       vg_ima_policy_digest_count(again) == vg_ima_policy_digest_count(p),
                   "%s: to_json parses back to the same policy", files[i]);
                if (i == 0)
                        ok(out && strncmp(out, t, strlen(out)) == 0 &&
                               strcmp(t + strlen(out), "\n") == 0,
                           "%s: to_json writes Keylime's own bytes back (but the final newline)",
                           files[i]);
        }
        size_t len;
        _cleanup_free_ char *flat = shared("policy/keylime-allowlist-short.txt", &len);
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *fp = NULL;
        struct vg_error err = { 0 };
        _cleanup_free_ char *fj = NULL;
        ok(vg_ima_policy_from_lists(flat, len, NULL, 0, &fp, &err) == 0,
           "flat: Keylime's allowlist-short parses (%s)", err.msg);
        ok(fp && vg_ima_policy_to_json(fp, &fj, &err) == 0 &&
               strstr(fj, "\"keyrings\": {\".ima\": [\"a7d52aaa18c23d2d9bb2abb4308c0eeee67387a42"
                          "259f4a6b1a42257065f3d5a\"]}") &&
               strstr(fj, "\"boot_aggregate\": [\"4309217e"),
           "flat: %%keyring:.ima goes to keyrings, sha256: prefixes are stripped");
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *bp = NULL;
        ok(vg_ima_policy_from_lists("0123 /a\n", 8, NULL, 0, &bp, &err) == -EINVAL &&
               strstr(err.msg, "allowlist:1"),
           "flat: a bad line is named by number (%s)", err.msg);
        ok(vg_ima_policy_from_lists("", 0, "ok\n(bad\n", 8, &bp, &err) == -EINVAL &&
               strstr(err.msg, "exclude list[1]"),
           "flat: a bad exclude regex is named (%s)", err.msg);

        /* The cache: the same bytes give the same object, parsed once. */
        struct vg_ima_policy_cache *c;
        struct vg_ima_policy *a = NULL, *b = NULL, *x = NULL;
        j = policy_json(F("\"/a\": [\"%s\"]", d40), NULL, NULL, NULL);
        char *j2 = strdup(j);
        vg_ima_policy_cache_new(1, &c);
        ok(vg_ima_policy_cache_get(c, j, strlen(j), &a, &err) == 0 &&
               vg_ima_policy_cache_get(c, j2, strlen(j2), &b, &err) == 0 && a == b,
           "cache: the same bytes give the same policy");
        is_int(vg_ima_policy_cache_parses(c), 1, "cache: parsed once");
        char *j3 = policy_json("", NULL, NULL, NULL);
        vg_ima_policy_cache_get(c, j3, strlen(j3), &x, &err);
        ok(x && x != a && vg_ima_policy_cache_parses(c) == 2, "cache: other bytes parse again");
        struct vg_ima_policy *none = NULL;
        is_int(vg_ima_policy_cache_get(c, "{", 1, &none, &err), -EINVAL,
               "cache: a bad policy fails");
        vg_ima_policy_unref(a);
        vg_ima_policy_unref(b);
        vg_ima_policy_cache_free(c);
        vg_ima_policy_unref(x);
        free(j);
        free(j2);
        free(j3);
}

/* ---- vigil verify ima ---------------------------------------------------------------------- */

static void test_cli(void)
{
        const char *cli = getenv("VIGIL_CLI");
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_free_ char *logpath = tap_shared_data("ima/rust-keylime-ima-ng-sha1-826.ascii");
        size_t len;
        _cleanup_free_ char *log = shared("ima/rust-keylime-ima-ng-sha1-826.ascii", &len);
        _cleanup_free_ char *good = policy_from_log(log, len, NULL);
        _cleanup_free_ char *missing = policy_from_log(log, len, "/bin/sh");
        char *gp = tap_strf("%s/good.json", dir), *mp = tap_strf("%s/missing.json", dir);
        char *bp = tap_strf("%s/bad.json", dir), *out = NULL;
        uint8_t pcr[20];

        if (!cli) {
                tap_skip("VIGIL_CLI not set", "vigil verify ima");
                return;
        }
        tap_write_file(gp, good);
        tap_write_file(mp, missing);
        tap_write_file(bp, "{\"meta\": 1}");
        pcr_from_column2(log, -1, pcr);
        _cleanup_free_ char *pcrhex = hexs(pcr, 20);

        is_int(tap_runl(&out, cli, "verify", "ima", "--log", logpath, "--policy", gp, "--pcr10",
                        pcrhex, "--bank", "sha1", NULL),
               0, "cli: a good log passes (exit 0)");
        contains(out, "template-hash 0 fnf 0 hash 0 good 826", "cli: counts line");
        free(out);
        is_int(tap_runl(&out, cli, "verify", "ima", "--log", logpath, "--policy", mp, NULL), 1,
               "cli: a path left out fails (exit 1)");
        contains(out, "File not found in allowlist: /bin/sh", "cli: the failing entry is printed");
        contains(out, "line 3", "cli: with its line number");
        contains(out, "fnf 1 ", "cli: counted");
        free(out);
        pcrhex[0] = pcrhex[0] == '0' ? '1' : '0';
        is_int(tap_runl(&out, cli, "verify", "ima", "--log", logpath, "--policy", gp, "--pcr10",
                        pcrhex, "--bank", "sha1", NULL),
               1, "cli: a PCR the log does not reach fails");
        contains(out, "does not match", "cli: saying so");
        free(out);
        is_int(tap_runl(&out, cli, "verify", "ima", "--log", logpath, "--policy", bp, NULL), 2,
               "cli: a policy that does not parse is unusable input (exit 2)");
        contains(out, "meta", "cli: naming where");
        free(out);
        is_int(
            tap_runl(&out, cli, "verify", "ima", "--log", "/nonexistent/log", "--policy", gp, NULL),
            2, "cli: an unreadable log is exit 2");
        free(out);
        is_int(tap_runl(&out, cli, "verify", "ima", "--log", logpath, NULL), 2,
               "cli: no policy is a usage error");
        free(out);
        is_int(tap_runl(&out, cli, "verify", "ima", "--log", logpath, "--policy", gp, "--pcr10",
                        "abcd", NULL),
               2, "cli: a PCR of the wrong size is a usage error");
        free(out);
        is_int(tap_runl(&out, cli, "verify", "ima", "--help", NULL), 0, "cli: --help");
        contains(out, "--fail-on-violations", "cli: --help lists the options");
        free(out);

        /* The flat form: --allowlist + --exclude. */
        char *al = tap_strf("%s/allowlist.txt", dir), *ex = tap_strf("%s/exclude.txt", dir);
        struct text t = { 0 };
        for (const char *q = log; *q; q = strchr(q, '\n') + 1) {
                const char *d = strstr(q, "sha1:") + 5, *path = strchr(d, ' ') + 1;
                const char *nl = strchr(path, '\n');
                char *l = tap_strf("%.40s  %.*s\n", d, (int)(nl - path), path);
                tputs(&t, l);
                free(l);
        }
        tap_write_file(al, t.p);
        tap_write_file(ex, "# nothing under /usr is checked\n/usr/.*\n");
        is_int(tap_runl(&out, cli, "verify", "ima", "--log", logpath, "--allowlist", al,
                        "--exclude", ex, NULL),
               0, "cli: a flat allowlist and exclude list pass");
        ok(out && !strstr(out, "good 826"), "cli: excluded entries are not counted good");
        free(out);
        free(t.p);
        free(al);
        free(ex);
        free(gp);
        free(mp);
        free(bp);
}

int main(void)
{
        test_real_logs();
        test_rust_keylime_log();
        test_violations_and_excludes();
        test_parse_errors();
        test_signatures();
        test_policies();
        test_cli();
        free_kept();
        return tap_done();
}
