/* vigil: known-good boot measurements, per-agent baselines and their hash-chained journal. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "baseline.h"
#include "encoding.h"
#include "quote.h"
#include "store.h"

/* ---- PCR classes ---------------------------------------------------------------------------- */

bool vg_pcr_early_boot(unsigned pcr)
{
        return pcr <= 3 || pcr == 7;
}

bool vg_pcr_late_boot(unsigned pcr)
{
        return pcr == 4 || pcr == 5 || pcr == 8 || pcr == 9 || (pcr >= 11 && pcr <= 14);
}

/* ---- time ----------------------------------------------------------------------------------- */

int64_t vg_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vg_rfc3339_ms(int64_t ms, char out[32])
{
        time_t t = (time_t)(ms / 1000);
        struct tm tm;

        gmtime_r(&t, &tm);
        size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);

        snprintf(out + n, 32 - n, ".%03uZ", (unsigned)((ms % 1000 + 1000) % 1000));
}

/* ---- measurement sets ----------------------------------------------------------------------- */

void vg_measurements_clear(struct vg_measurements *s)
{
        free(s->m);
        memset(s, 0, sizeof(*s));
}

static int cmp_key(enum vg_hash_alg a1, unsigned p1, enum vg_hash_alg a2, unsigned p2)
{
        if (a1 != a2)
                return a1 < a2 ? -1 : 1;
        return p1 < p2 ? -1 : p1 > p2;
}

int vg_measurements_set(struct vg_measurements *s, enum vg_hash_alg alg, unsigned pcr,
                        const uint8_t *value)
{
        size_t size = vg_hash_size(alg), i;

        if (pcr >= VG_MEASUREMENT_PCR_MAX || size == 0)
                return -EINVAL;
        /* Quotes come in order: append is the common case. */
        if (s->n == 0 || cmp_key(s->m[s->n - 1].alg, s->m[s->n - 1].pcr, alg, pcr) < 0) {
                i = s->n;
        } else {
                for (i = 0; i < s->n; i++) {
                        int c = cmp_key(s->m[i].alg, s->m[i].pcr, alg, pcr);
                        if (c == 0) {
                                memset(s->m[i].value, 0, sizeof(s->m[i].value));
                                memcpy(s->m[i].value, value, size);
                                return 0;
                        }
                        if (c > 0)
                                break;
                }
        }
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 16;
                struct vg_measurement *m = realloc(s->m, cap * sizeof(*m));
                if (!m)
                        return -ENOMEM;
                s->m = m;
                s->cap = cap;
        }
        memmove(&s->m[i + 1], &s->m[i], (s->n - i) * sizeof(*s->m));
        memset(&s->m[i], 0, sizeof(s->m[i]));
        s->m[i].alg = alg;
        s->m[i].pcr = pcr;
        memcpy(s->m[i].value, value, size);
        s->n++;
        return 0;
}

const uint8_t *vg_measurements_get(const struct vg_measurements *s, enum vg_hash_alg alg,
                                   unsigned pcr)
{
        for (size_t i = 0; i < s->n; i++)
                if (s->m[i].alg == alg && s->m[i].pcr == pcr)
                        return s->m[i].value;
        return NULL;
}

int vg_measurements_copy(struct vg_measurements *dst, const struct vg_measurements *src)
{
        if (dst == src)
                return 0;
        dst->n = 0;
        dst->time_ms = src->time_ms;
        dst->boot_counter = src->boot_counter;
        for (size_t i = 0; i < src->n; i++) {
                int r = vg_measurements_set(dst, src->m[i].alg, src->m[i].pcr, src->m[i].value);
                if (r < 0)
                        return r;
        }
        return 0;
}

int vg_measurements_filter(struct vg_measurements *dst, const struct vg_measurements *src,
                           bool (*keep)(unsigned pcr), size_t *ignored)
{
        size_t skipped = 0;

        dst->n = 0;
        dst->time_ms = src->time_ms;
        dst->boot_counter = src->boot_counter;
        for (size_t i = 0; i < src->n; i++) {
                if (!keep(src->m[i].pcr)) {
                        skipped++;
                        continue;
                }
                int r = vg_measurements_set(dst, src->m[i].alg, src->m[i].pcr, src->m[i].value);
                if (r < 0)
                        return r;
        }
        if (ignored)
                *ignored = skipped;
        return 0;
}

bool vg_measurements_equal(const struct vg_measurements *a, const struct vg_measurements *b)
{
        if (a->n != b->n)
                return false;
        for (size_t i = 0; i < a->n; i++)
                if (a->m[i].alg != b->m[i].alg || a->m[i].pcr != b->m[i].pcr ||
                    memcmp(a->m[i].value, b->m[i].value, vg_hash_size(a->m[i].alg)) != 0)
                        return false;
        return true;
}

int vg_measurements_from_pcrs(struct vg_measurements *s, const struct vg_pcr_values *pcrs)
{
        const struct vg_pcr_selection *sel = &pcrs->selection;

        s->n = 0;
        for (unsigned b = 0; b < sel->count && b < VG_HASH_ALG_COUNT; b++) {
                enum vg_hash_alg alg = sel->bank[b].alg;
                if ((unsigned)alg >= VG_HASH_ALG_COUNT)
                        continue;
                for (unsigned p = 0; p < VG_PCR_MAX; p++) {
                        if (!(sel->bank[b].mask >> p & 1))
                                continue;
                        int r = vg_measurements_set(s, alg, p, pcrs->value[alg][p]);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static void upper(char *dst, const char *src, size_t n)
{
        size_t i;

        for (i = 0; src[i] && i + 1 < n; i++)
                dst[i] = (char)toupper((unsigned char)src[i]);
        dst[i] = '\0';
}

static int parse_alg(const json_t *v, const char *path, enum vg_hash_alg *alg, struct vg_error *err)
{
        const char *s = json_string_value(v);

        if (!s)
                return vg_error_set(err, -EINVAL,
                                    "%s.hashAlgo: expected a string such as "
                                    "\"SHA256\", found %s",
                                    path, v ? "another type" : "nothing");
        if (vg_hash_alg_from_name(s, alg) < 0)
                return vg_error_set(err, -EINVAL,
                                    "%s.hashAlgo: unknown algorithm '%.32s' (SHA1, SHA256, SHA384 "
                                    "or SHA512)",
                                    path, s);
        return 0;
}

static int parse_pcr(const json_t *v, const char *path, unsigned *pcr, struct vg_error *err)
{
        long long n = -1;

        if (json_is_integer(v)) {
                n = json_integer_value(v);
        } else if (json_is_string(v)) {
                const char *s = json_string_value(v);
                char *end;
                if (strncasecmp(s, "PCR_", 4) == 0)
                        s += 4;
                else if (strncasecmp(s, "PCR", 3) == 0)
                        s += 3;
                if (*s >= '0' && *s <= '9') {
                        n = strtoll(s, &end, 10);
                        if (*end || end - s > 2)
                                n = -1;
                }
        }
        if (n < 0 || n >= VG_MEASUREMENT_PCR_MAX)
                return vg_error_set(err, -EINVAL,
                                    "%s.pcrNum: expected \"PCR_0\" to \"PCR_23\" (or a number)",
                                    path);
        *pcr = (unsigned)n;
        return 0;
}

static bool all_hex(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (vg_hex_digit_value((unsigned char)s[i]) < 0)
                        return false;
        return true;
}

static int parse_value(const json_t *v, const char *path, enum vg_hash_alg alg, uint8_t *out,
                       struct vg_error *err)
{
        const char *s = json_string_value(v);
        size_t size = vg_hash_size(alg), len;
        _cleanup_free_ uint8_t *raw = NULL;
        size_t rlen = 0;

        if (!s)
                return vg_error_set(err, -EINVAL,
                                    "%s.value: expected a string (base64 of the PCR value)", path);
        len = json_string_length(v);
        if (len == 2 * size && all_hex(s, len))
                return vg_hex_decode_exact(s, len, out, size) < 0
                           ? vg_error_set(err, -EINVAL, "%s.value: bad hex", path)
                           : 0;
        if (vg_b64_decode(s, len, VG_B64_STD, &raw, &rlen) < 0)
                return vg_error_set(err, -EINVAL,
                                    "%s.value: neither base64 nor hex of a %zu-byte %s value", path,
                                    size, vg_hash_alg_name(alg));
        if (rlen != size)
                return vg_error_set(err, -EINVAL, "%s.value: %zu bytes, but a %s PCR value has %zu",
                                    path, rlen, vg_hash_alg_name(alg), size);
        memcpy(out, raw, size);
        return 0;
}

static int parse_entry(const json_t *o, const char *path, struct vg_measurements *out,
                       struct vg_error *err)
{
        enum vg_hash_alg alg = VG_HASH_SHA256;
        unsigned pcr = 0;
        uint8_t value[VG_HASH_MAX_SIZE] = { 0 };
        int r;

        if (!json_is_object(o))
                return vg_error_set(err, -EINVAL,
                                    "%s: expected an object {\"hashAlgo\", \"pcrNum\", \"value\"}",
                                    path);
        if ((r = parse_alg(json_object_get(o, "hashAlgo"), path, &alg, err)) < 0 ||
            (r = parse_pcr(json_object_get(o, "pcrNum"), path, &pcr, err)) < 0 ||
            (r = parse_value(json_object_get(o, "value"), path, alg, value, err)) < 0)
                return r;
        const uint8_t *old = vg_measurements_get(out, alg, pcr);
        if (old && memcmp(old, value, vg_hash_size(alg)) != 0)
                return vg_error_set(err, -EINVAL,
                                    "%s: %s PCR_%u is given twice with different values", path,
                                    vg_hash_alg_name(alg), pcr);
        return vg_measurements_set(out, alg, pcr, value);
}

static int parse_array(const json_t *a, const char *path, struct vg_measurements *out,
                       struct vg_error *err)
{
        size_t i;
        const json_t *x;
        char p[160];
        int r;

        if (json_array_size(a) > 4 * VG_MEASUREMENT_PCR_MAX * 4)
                return vg_error_set(err, -EINVAL, "%s: %zu entries, too many", path,
                                    json_array_size(a));
        json_array_foreach (a, i, x) {
                snprintf(p, sizeof(p), "%s[%zu]", path, i);
                if ((r = parse_entry(x, p, out, err)) < 0)
                        return r;
        }
        return 0;
}

static bool firestore_shape(const json_t *o)
{
        const char *k;
        const json_t *v;

        if (json_object_size(o) == 0)
                return false;
        json_object_foreach ((json_t *)o, k, v)
                if (strncasecmp(k, "PCR_", 4) != 0 || !json_is_object(v))
                        return false;
        return true;
}

static int from_json(const json_t *j, const char *path, int depth, struct vg_measurements *out,
                     struct vg_error *err)
{
        static const char *const arrays[] = { "measurements", "actualMeasurements",
                                              "newMeasurements", "policyMeasurements" };
        static const char *const wrappers[] = { "jsonPayload", "lateBootReportEvent",
                                                "earlyBootReportEvent", "relearnEvent" };
        char p[160];

        if (json_is_array(j))
                return parse_array(j, *path ? path : "measurements", out, err);
        if (!json_is_object(j) || depth > 3)
                return vg_error_set(err, -EINVAL,
                                    "%s: expected an array of {hashAlgo, pcrNum, value} or an "
                                    "object with measurements, actualMeasurements or "
                                    "policyMeasurements",
                                    *path ? path : "the document");
        for (size_t i = 0; i < VG_ARRAY_SIZE(arrays); i++) {
                const json_t *a = json_object_get(j, arrays[i]);
                if (!a)
                        continue;
                snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", arrays[i]);
                if (!json_is_array(a))
                        return vg_error_set(err, -EINVAL, "%s: expected an array", p);
                return parse_array(a, p, out, err);
        }
        for (size_t i = 0; i < VG_ARRAY_SIZE(wrappers); i++) {
                const json_t *w = json_object_get(j, wrappers[i]);
                if (!w)
                        continue;
                snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", wrappers[i]);
                return from_json(w, p, depth + 1, out, err);
        }
        if (firestore_shape(j)) {
                const char *k;
                const json_t *v;
                int r;
                json_object_foreach ((json_t *)j, k, v) {
                        snprintf(p, sizeof(p), "%s%s%.20s", path, *path ? "." : "", k);
                        if ((r = parse_entry(v, p, out, err)) < 0)
                                return r;
                }
                return 0;
        }
        return vg_error_set(err, -EINVAL,
                            "%s: no measurements found (expected an array of {hashAlgo, pcrNum, "
                            "value}, or an object with measurements, actualMeasurements or "
                            "policyMeasurements)",
                            *path ? path : "the document");
}

int vg_measurements_from_json(const json_t *j, struct vg_measurements *out, struct vg_error *err)
{
        out->n = 0;
        return from_json(j, "", 0, out, err);
}

int vg_measurements_parse(const char *text, size_t len, const char *what,
                          struct vg_measurements *out, struct vg_error *err)
{
        json_error_t je;
        json_auto_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        int r;

        if (!j)
                return vg_error_set(err, -EINVAL, "%s: line %d: not JSON: %s", what, je.line,
                                    je.text);
        r = vg_measurements_from_json(j, out, err);
        if (r < 0)
                vg_error_prefix(err, "%s: ", what);
        return r;
}

json_t *vg_measurements_json(const struct vg_measurements *s)
{
        json_t *a = json_array();
        char alg[16], pcr[16];

        if (!a)
                return NULL;
        for (size_t i = 0; i < s->n; i++) {
                _cleanup_free_ char *b64 =
                    vg_b64_encode(s->m[i].value, vg_hash_size(s->m[i].alg), VG_B64_STD);
                upper(alg, vg_hash_alg_name(s->m[i].alg), sizeof(alg));
                snprintf(pcr, sizeof(pcr), "PCR_%u", s->m[i].pcr);
                if (!b64 || json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "hashAlgo", alg,
                                                               "pcrNum", pcr, "value", b64)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

json_t *vg_measurements_banks_json(const struct vg_measurements *s)
{
        json_t *o = json_object();
        char pcr[16];

        for (size_t i = 0; o && i < s->n; i++) {
                const char *name = vg_hash_alg_name(s->m[i].alg);
                json_t *bank = json_object_get(o, name);
                if (!bank) {
                        bank = json_object();
                        json_object_set_new(o, name, bank);
                }
                _cleanup_free_ char *hex = vg_hex_encode(s->m[i].value, vg_hash_size(s->m[i].alg));
                snprintf(pcr, sizeof(pcr), "%u", s->m[i].pcr);
                if (hex)
                        json_object_set_new(bank, pcr, json_string(hex));
        }
        return o;
}

/* ---- binary form ---------------------------------------------------------------------------- */

static void put_be(uint8_t *p, uint64_t v, int n)
{
        for (int i = n - 1; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
        uint64_t v = 0;

        for (int i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

int vg_measurements_pack(const struct vg_measurements *s, uint8_t **out, size_t *len)
{
        size_t n = 4 + 8 + 8 + 2;
        uint8_t *p, *q;

        for (size_t i = 0; i < s->n; i++)
                n += 3 + vg_hash_size(s->m[i].alg);
        if (s->n > 0xffff || !(p = malloc(n)))
                return -ENOMEM;
        memcpy(p, "VGM1", 4);
        put_be(p + 4, (uint64_t)s->time_ms, 8);
        put_be(p + 12, (uint64_t)s->boot_counter, 8);
        put_be(p + 20, s->n, 2);
        q = p + 22;
        for (size_t i = 0; i < s->n; i++) {
                size_t size = vg_hash_size(s->m[i].alg);
                put_be(q, vg_hash_tpm_alg_id(s->m[i].alg), 2);
                q[2] = (uint8_t)s->m[i].pcr;
                memcpy(q + 3, s->m[i].value, size);
                q += 3 + size;
        }
        *out = p;
        *len = n;
        return 0;
}

int vg_measurements_unpack(const void *data, size_t len, struct vg_measurements *out,
                           struct vg_error *err)
{
        const uint8_t *p = data, *end = p + len;
        size_t count;
        int r;

        out->n = 0;
        if (len < 22 || memcmp(p, "VGM1", 4) != 0)
                return vg_error_set(err, -EBADMSG, "stored measurements: not VGM1 data");
        out->time_ms = (int64_t)get_be(p + 4, 8);
        out->boot_counter = (int64_t)get_be(p + 12, 8);
        count = (size_t)get_be(p + 20, 2);
        p += 22;
        for (size_t i = 0; i < count; i++) {
                enum vg_hash_alg alg;
                if (end - p < 3 || vg_hash_alg_from_tpm_id((uint16_t)get_be(p, 2), &alg) < 0 ||
                    p[2] >= VG_MEASUREMENT_PCR_MAX || (size_t)(end - p - 3) < vg_hash_size(alg))
                        return vg_error_set(err, -EBADMSG,
                                            "stored measurements: entry %zu is malformed", i);
                if ((r = vg_measurements_set(out, alg, p[2], p + 3)) < 0)
                        return r;
                p += 3 + vg_hash_size(alg);
        }
        if (p != end)
                return vg_error_set(err, -EBADMSG, "stored measurements: trailing bytes");
        return 0;
}

/* ---- schema -----------------------------------------------------------------------------------
 */

static const struct vg_store_migration baseline_migrations[] = {
        { 1, "known-good baselines, agent baselines, journal",
          "CREATE TABLE known_good_baselines ("
          " name TEXT PRIMARY KEY,"
          " source TEXT NOT NULL,"
          " created_at TEXT NOT NULL,"
          " measurements TEXT NOT NULL);"
          "CREATE TABLE agent_baselines ("
          " agent_id TEXT PRIMARY KEY,"
          " kind TEXT NOT NULL,"
          " early TEXT NOT NULL,"
          " late TEXT NOT NULL,"
          " source TEXT NOT NULL,"
          " updated_at TEXT NOT NULL);"
          "CREATE TABLE baseline_journal ("
          " seq BIGINT PRIMARY KEY,"
          " time TEXT NOT NULL,"
          " actor TEXT NOT NULL,"
          " action TEXT NOT NULL,"
          " subject TEXT NOT NULL,"
          " before_json TEXT,"
          " after_json TEXT,"
          " prev_hash TEXT NOT NULL,"
          " hash TEXT NOT NULL);" },
};

int vg_baseline_migrate(struct vg_store *db, struct vg_error *err)
{
        return vg_store_migrate(db, "baseline", baseline_migrations,
                                VG_ARRAY_SIZE(baseline_migrations), err);
}

bool vg_baseline_name_valid(const char *name)
{
        size_t n = name ? strlen(name) : 0;

        if (n == 0 || n > 128 || strcmp(name, "history") == 0 || strcmp(name, ".") == 0 ||
            strcmp(name, "..") == 0)
                return false;
        for (; *name; name++)
                if (!isalnum((unsigned char)*name) && *name != '-' && *name != '_' && *name != '.')
                        return false;
        return true;
}

static int run_txn(struct vg_store *db, vg_store_txn_fn fn, void *ud, struct vg_error *err)
{
        if (vg_store_in_transaction(db))
                return fn(db, ud, err);
        return vg_store_transact(db, fn, ud, err);
}

static char *measurements_text(const struct vg_measurements *m)
{
        json_auto_t *j = vg_measurements_json(m);

        return j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
}

static int measurements_from_text(const char *text, struct vg_measurements *m, struct vg_error *err)
{
        return vg_measurements_parse(text ? text : "[]", text ? strlen(text) : 2,
                                     "stored measurements", m, err);
}

static char *dup_col(struct vg_stmt *st, int col)
{
        const char *s = vg_stmt_column_text(st, col, NULL);

        return strdup(s ? s : "");
}

/* ---- known-good baselines ------------------------------------------------------------------- */

void vg_baseline_clear(struct vg_baseline *b)
{
        free(b->name);
        free(b->source);
        free(b->time);
        vg_measurements_clear(&b->late);
        memset(b, 0, sizeof(*b));
}

json_t *vg_baseline_json(const struct vg_baseline *b)
{
        return json_pack("{s:s, s:s, s:s, s:o*}", "name", b->name, "source", b->source, "time",
                         b->time, "measurements", vg_measurements_json(&b->late));
}

struct add_ctx {
        const char *name, *source, *actor;
        const struct vg_measurements *late;
};

static int add_txn(struct vg_store *db, void *ud, struct vg_error *err)
{
        struct add_ctx *c = ud;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        _cleanup_free_ char *text = measurements_text(c->late);
        char now[32];
        int r;

        if (!text)
                return -ENOMEM;
        vg_rfc3339_ms(vg_now_ms(), now);
        r = vg_store_prepare(db,
                             "INSERT INTO known_good_baselines (name, source, created_at, "
                             "measurements) VALUES ($1, $2, $3, $4)",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, c->name);
        vg_stmt_bind_text(st, 2, c->source);
        vg_stmt_bind_text(st, 3, now);
        vg_stmt_bind_text(st, 4, text);
        if ((r = vg_stmt_exec(st, err)) < 0)
                return r == -EEXIST
                           ? vg_error_set(err, -EEXIST,
                                          "a known-good baseline named %s already exists", c->name)
                           : r;
        struct vg_baseline b = {
                .name = (char *)c->name, .source = (char *)c->source, .time = now, .late = *c->late
        };
        json_auto_t *after = vg_baseline_json(&b);
        return vg_journal_append(db, c->actor,
                                 strncmp(c->source, "agent:", 6) == 0 ? "add" : "import", c->name,
                                 NULL, after, err);
}

int vg_baseline_add(struct vg_store *db, const char *name, const struct vg_measurements *m,
                    const char *source, const char *actor, size_t *ignored, struct vg_error *err)
{
        struct vg_measurements late = { 0 };
        int r;

        if (!vg_baseline_name_valid(name))
                return vg_error_set(err, -EINVAL,
                                    "baseline name '%.140s': letters, digits, '-', '_' and '.' "
                                    "expected (1-128, not 'history')",
                                    name ? name : "");
        r = vg_measurements_filter(&late, m, vg_pcr_late_boot, ignored);
        if (r >= 0 && late.n == 0)
                r = vg_error_set(err, -EINVAL,
                                 "no late-boot measurement (PCR 4, 5, 8, 9, 11-14) to make a "
                                 "known-good baseline of");
        if (r >= 0) {
                struct add_ctx c = { name, source ? source : "import", actor ? actor : "", &late };
                r = run_txn(db, add_txn, &c, err);
        }
        vg_measurements_clear(&late);
        return r;
}

static int baseline_from_row(struct vg_stmt *st, struct vg_baseline *b, struct vg_error *err)
{
        memset(b, 0, sizeof(*b));
        b->name = dup_col(st, 0);
        b->source = dup_col(st, 1);
        b->time = dup_col(st, 2);
        if (!b->name || !b->source || !b->time)
                return -ENOMEM;
        int r = measurements_from_text(vg_stmt_column_text(st, 3, NULL), &b->late, err);
        if (r < 0)
                vg_error_prefix(err, "known-good baseline %s: ", b->name);
        return r;
}

int vg_baseline_get(struct vg_store *db, const char *name, struct vg_baseline *out,
                    struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r;

        memset(out, 0, sizeof(*out));
        r = vg_store_prepare(db,
                             "SELECT name, source, created_at, measurements FROM "
                             "known_good_baselines WHERE name = $1",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, name);
        r = vg_stmt_step(st, err);
        if (r == 0)
                return vg_error_set(err, -ENOENT, "no known-good baseline named %s", name);
        if (r > 0 && (r = baseline_from_row(st, out, err)) < 0)
                vg_baseline_clear(out);
        vg_stmt_reset(st);
        return r < 0 ? r : 0;
}

void vg_baseline_list_free(struct vg_baseline *list, size_t n)
{
        for (size_t i = 0; list && i < n; i++)
                vg_baseline_clear(&list[i]);
        free(list);
}

int vg_baseline_list(struct vg_store *db, struct vg_baseline **out, size_t *n, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_baseline *list = NULL;
        size_t cnt = 0, cap = 0;
        int r;

        *out = NULL;
        *n = 0;
        r = vg_store_prepare(db,
                             "SELECT name, source, created_at, measurements FROM "
                             "known_good_baselines ORDER BY name",
                             &st, err);
        while (r >= 0 && (r = vg_stmt_step(st, err)) > 0) {
                if (cnt == cap) {
                        size_t c2 = cap ? cap * 2 : 16;
                        struct vg_baseline *l2 = realloc(list, c2 * sizeof(*l2));
                        if (!l2) {
                                r = -ENOMEM;
                                break;
                        }
                        list = l2;
                        cap = c2;
                }
                r = baseline_from_row(st, &list[cnt], err);
                cnt++;
                if (r < 0)
                        break;
        }
        if (r < 0) {
                vg_baseline_list_free(list, cnt);
                return r;
        }
        *out = list;
        *n = cnt;
        return 0;
}

struct rm_ctx {
        const char *name, *actor;
};

static int rm_txn(struct vg_store *db, void *ud, struct vg_error *err)
{
        struct rm_ctx *c = ud;
        struct vg_baseline b;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r = vg_baseline_get(db, c->name, &b, err);

        if (r < 0)
                return r;
        json_auto_t *before = vg_baseline_json(&b);
        vg_baseline_clear(&b);
        r = vg_store_prepare(db, "DELETE FROM known_good_baselines WHERE name = $1", &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, c->name);
        if ((r = vg_stmt_exec(st, err)) < 0)
                return r;
        return vg_journal_append(db, c->actor, "rm", c->name, before, NULL, err);
}

int vg_baseline_remove(struct vg_store *db, const char *name, const char *actor,
                       struct vg_error *err)
{
        struct rm_ctx c = { name, actor ? actor : "" };

        return run_txn(db, rm_txn, &c, err);
}

/* Does known-good b match the late-boot part of actual (late)? */
static bool baseline_matches(const struct vg_measurements *b, const struct vg_measurements *late)
{
        bool banks = false;

        for (int alg = 0; alg < VG_HASH_ALG_COUNT; alg++) {
                size_t nb = 0, na = 0;
                bool in_b = false;
                for (size_t i = 0; i < b->n; i++) {
                        if ((int)b->m[i].alg != alg)
                                continue;
                        in_b = true;
                        nb++;
                        const uint8_t *v = vg_measurements_get(late, b->m[i].alg, b->m[i].pcr);
                        if (!v || memcmp(v, b->m[i].value, vg_hash_size(b->m[i].alg)) != 0)
                                return false;
                }
                if (!in_b)
                        continue;
                for (size_t i = 0; i < late->n; i++)
                        na += (int)late->m[i].alg == alg;
                if (na != nb) /* the agent has late-boot PCRs in this bank the baseline lacks */
                        return false;
                banks = true;
        }
        return banks;
}

int vg_baseline_match(struct vg_store *db, const struct vg_measurements *actual, char **name,
                      struct vg_error *err)
{
        struct vg_measurements late = { 0 };
        struct vg_baseline *list = NULL;
        size_t n = 0;
        int r;

        *name = NULL;
        r = vg_measurements_filter(&late, actual, vg_pcr_late_boot, NULL);
        if (r >= 0 && late.n > 0)
                r = vg_baseline_list(db, &list, &n, err);
        for (size_t i = 0; r >= 0 && late.n > 0 && i < n; i++)
                if (baseline_matches(&list[i].late, &late)) {
                        *name = strdup(list[i].name);
                        r = *name ? 1 : -ENOMEM;
                        break;
                }
        vg_baseline_list_free(list, n);
        vg_measurements_clear(&late);
        return r < 0 ? r : r > 0 ? 1 : 0;
}

/* ---- per-agent baselines -------------------------------------------------------------------- */

static const char *kind_str(enum vg_agent_baseline_kind k)
{
        return k == VG_AGENT_BASELINE_GOLDEN ? "golden" : "learned";
}

void vg_agent_baseline_clear(struct vg_agent_baseline *b)
{
        free(b->agent_id);
        free(b->source);
        free(b->time);
        vg_measurements_clear(&b->early);
        vg_measurements_clear(&b->late);
        memset(b, 0, sizeof(*b));
}

json_t *vg_agent_baseline_json(const struct vg_agent_baseline *b)
{
        return json_pack("{s:s, s:s, s:s, s:s, s:o*, s:o*}", "agentId", b->agent_id, "kind",
                         kind_str(b->kind), "source", b->source ? b->source : "", "time",
                         b->time ? b->time : "", "earlyBoot", vg_measurements_json(&b->early),
                         "lateBoot", vg_measurements_json(&b->late));
}

int vg_agent_baseline_get(struct vg_store *db, const char *agent_id, struct vg_agent_baseline *out,
                          struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r;

        memset(out, 0, sizeof(*out));
        r = vg_store_prepare(db,
                             "SELECT agent_id, kind, early, late, source, updated_at FROM "
                             "agent_baselines WHERE agent_id = $1",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, agent_id);
        r = vg_stmt_step(st, err);
        if (r < 0)
                return r;
        if (r == 0)
                return vg_error_set(err, -ENOENT, "agent %s has no baseline", agent_id);
        const char *kind = vg_stmt_column_text(st, 1, NULL);
        out->agent_id = dup_col(st, 0);
        out->kind = kind && strcmp(kind, "golden") == 0 ? VG_AGENT_BASELINE_GOLDEN
                                                        : VG_AGENT_BASELINE_LEARNED;
        out->source = dup_col(st, 4);
        out->time = dup_col(st, 5);
        if (!out->agent_id || !out->source || !out->time)
                r = -ENOMEM;
        else if ((r = measurements_from_text(vg_stmt_column_text(st, 2, NULL), &out->early, err)) >=
                 0)
                r = measurements_from_text(vg_stmt_column_text(st, 3, NULL), &out->late, err);
        vg_stmt_reset(st);
        if (r < 0) {
                vg_error_prefix(err, "agent %s's baseline: ", agent_id);
                vg_agent_baseline_clear(out);
                return r;
        }
        return 0;
}

static int agent_baseline_put(struct vg_store *db, const struct vg_agent_baseline *b,
                              struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        _cleanup_free_ char *early = measurements_text(&b->early);
        _cleanup_free_ char *late = measurements_text(&b->late);
        int r;

        if (!early || !late)
                return -ENOMEM;
        r = vg_store_prepare(db,
                             "INSERT INTO agent_baselines (agent_id, kind, early, late, source, "
                             "updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (agent_id) "
                             "DO UPDATE SET kind = $2, early = $3, late = $4, source = $5, "
                             "updated_at = $6",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, b->agent_id);
        vg_stmt_bind_text(st, 2, kind_str(b->kind));
        vg_stmt_bind_text(st, 3, early);
        vg_stmt_bind_text(st, 4, late);
        vg_stmt_bind_text(st, 5, b->source);
        vg_stmt_bind_text(st, 6, b->time);
        return vg_stmt_exec(st, err);
}

struct learn_ctx {
        const char *agent_id, *actor;
        const struct vg_measurements *m;
        bool golden;
        bool learned;
};

static int learn_txn(struct vg_store *db, void *ud, struct vg_error *err)
{
        struct learn_ctx *c = ud;
        struct vg_agent_baseline old, nb = { 0 };
        char now[32];
        json_auto_t *before = NULL, *after = NULL;
        int r = vg_agent_baseline_get(db, c->agent_id, &old, err);

        c->learned = false;
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0) {
                if (!c->golden) {
                        vg_agent_baseline_clear(&old);
                        return 0;
                }
                before = vg_agent_baseline_json(&old);
                vg_agent_baseline_clear(&old);
        }
        vg_rfc3339_ms(vg_now_ms(), now);
        nb.agent_id = (char *)c->agent_id;
        nb.kind = c->golden ? VG_AGENT_BASELINE_GOLDEN : VG_AGENT_BASELINE_LEARNED;
        nb.source = c->golden ? "golden" : "tofu";
        nb.time = now;
        r = vg_measurements_filter(&nb.early, c->m, vg_pcr_early_boot, NULL);
        if (r >= 0)
                r = vg_measurements_filter(&nb.late, c->m, vg_pcr_late_boot, NULL);
        if (r >= 0)
                r = agent_baseline_put(db, &nb, err);
        if (r >= 0) {
                after = vg_agent_baseline_json(&nb);
                r = vg_journal_append(db, c->actor, c->golden ? "golden" : "learn", c->agent_id,
                                      before, after, err);
        }
        vg_measurements_clear(&nb.early);
        vg_measurements_clear(&nb.late);
        if (r >= 0)
                c->learned = true;
        return r;
}

int vg_agent_baseline_learn(struct vg_store *db, const char *agent_id,
                            const struct vg_measurements *m, const char *actor,
                            struct vg_error *err)
{
        struct learn_ctx c = { agent_id, actor ? actor : "verifier", m, false, false };
        int r = run_txn(db, learn_txn, &c, err);

        return r < 0 ? r : c.learned;
}

int vg_agent_baseline_set_golden(struct vg_store *db, const char *agent_id,
                                 const struct vg_measurements *m, const char *actor,
                                 struct vg_error *err)
{
        struct learn_ctx c = { agent_id, actor ? actor : "", m, true, false };

        return run_txn(db, learn_txn, &c, err);
}

struct relearn_ctx {
        const char *agent_id, *actor, *event_id;
        const struct vg_measurements *late;
        char *baseline;
        struct vg_measurements *previous;
        int result; /* 1 relearned, 0 not (vg_store_transact() gives 0 for both) */
};

static int relearn_txn(struct vg_store *db, void *ud, struct vg_error *err)
{
        struct relearn_ctx *c = ud;
        struct vg_agent_baseline old, nb = { 0 };
        json_auto_t *before = NULL, *after = NULL;
        char now[32], source[160];
        int r;

        free(c->baseline);
        c->baseline = NULL;
        c->result = 0;
        r = vg_baseline_match(db, c->late, &c->baseline, err);
        if (r <= 0)
                return r;
        r = vg_agent_baseline_get(db, c->agent_id, &old, err);
        if (r < 0 && r != -ENOENT)
                return r;
        bool had = r >= 0;
        if (had) {
                before = vg_agent_baseline_json(&old);
                if (c->previous)
                        vg_measurements_copy(c->previous, &old.late);
        }
        vg_rfc3339_ms(vg_now_ms(), now);
        snprintf(source, sizeof(source), "known-good:%s", c->baseline);
        nb.agent_id = (char *)c->agent_id;
        nb.kind = VG_AGENT_BASELINE_LEARNED;
        nb.source = source;
        nb.time = now;
        nb.early = had ? old.early : (struct vg_measurements){ 0 }; /* early boot stays */
        nb.late = *c->late;
        r = agent_baseline_put(db, &nb, err);
        if (r >= 0) {
                after = vg_agent_baseline_json(&nb);
                if (!after)
                        r = -ENOMEM;
        }
        if (r >= 0) {
                json_object_set_new(after, "baseline", json_string(c->baseline));
                if (c->event_id)
                        json_object_set_new(after, "eventId", json_string(c->event_id));
                r = vg_journal_append(db, c->actor, "relearn", c->agent_id, before, after, err);
        }
        if (had)
                vg_agent_baseline_clear(&old);
        if (r >= 0)
                c->result = 1;
        return r < 0 ? r : 0;
}

int vg_agent_baseline_relearn(struct vg_store *db, const char *agent_id,
                              const struct vg_measurements *actual, const char *actor,
                              const char *event_id, char **baseline,
                              struct vg_measurements *previous, char **reason, struct vg_error *err)
{
        struct vg_measurements late = { 0 };
        struct relearn_ctx c = { agent_id, actor ? actor : "", event_id, &late, NULL, previous, 0 };
        int r;

        *baseline = NULL;
        if (reason)
                *reason = NULL;
        r = vg_measurements_filter(&late, actual, vg_pcr_late_boot, NULL);
        if (r < 0)
                goto out;
        late.time_ms = actual->time_ms;
        late.boot_counter = actual->boot_counter;
        if (late.n == 0) {
                if (reason)
                        *reason = strdup("the agent's latest measurements have no late-boot PCR "
                                         "(4, 5, 8, 9, 11-14): they are not quoted");
                r = 0;
                goto out;
        }
        r = run_txn(db, relearn_txn, &c, err);
        if (r >= 0)
                r = c.result;
        if (r == 0 && reason)
                *reason = strdup("the agent's late-boot measurements equal no known-good "
                                 "baseline");
        if (r > 0)
                *baseline = TAKE_PTR(c.baseline);
out:
        free(c.baseline);
        vg_measurements_clear(&late);
        return r;
}

/* ---- journal -------------------------------------------------------------------------------- */

static const char zero_hash[65] =
    "0000000000000000000000000000000000000000000000000000000000000000";

void vg_journal_entries_free(struct vg_journal_entry *e, size_t n)
{
        for (size_t i = 0; e && i < n; i++) {
                free(e[i].time);
                free(e[i].actor);
                free(e[i].action);
                free(e[i].subject);
                json_decref(e[i].before);
                json_decref(e[i].after);
        }
        free(e);
}

static json_t *entry_core(const struct vg_journal_entry *e)
{
        return json_pack("{s:I, s:s, s:s, s:s, s:s, s:O, s:O, s:s}", "seq", (json_int_t)e->seq,
                         "time", e->time ? e->time : "", "actor", e->actor ? e->actor : "",
                         "action", e->action ? e->action : "", "subject",
                         e->subject ? e->subject : "", "before",
                         e->before ? e->before : json_null(), "after",
                         e->after ? e->after : json_null(), "prev_hash", e->prev_hash);
}

json_t *vg_journal_entry_json(const struct vg_journal_entry *e)
{
        json_t *j = entry_core(e);

        if (j)
                json_object_set_new(j, "hash", json_string(e->hash));
        return j;
}

int vg_journal_entry_hash(const struct vg_journal_entry *e, char out[65])
{
        json_auto_t *j = entry_core(e);
        _cleanup_free_ char *canon = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        _cleanup_free_ char *buf = NULL;
        uint8_t d[32];
        size_t pl = strlen(e->prev_hash), cl;

        if (!canon)
                return -ENOMEM;
        cl = strlen(canon);
        if (!(buf = malloc(pl + cl)))
                return -ENOMEM;
        memcpy(buf, e->prev_hash, pl);
        memcpy(buf + pl, canon, cl);
        if (vg_hash(VG_HASH_SHA256, buf, pl + cl, d) < 0)
                return -EIO;
        for (int i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", d[i]);
        return 0;
}

static char *canon_or_null(const json_t *j)
{
        return j && !json_is_null(j) ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
}

int vg_journal_append(struct vg_store *db, const char *actor, const char *action,
                      const char *subject, const json_t *before, const json_t *after,
                      struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        _cleanup_free_ char *btext = canon_or_null(before), *atext = canon_or_null(after);
        struct vg_journal_entry e = { 0 };
        char now[32];
        int r;

        r = vg_store_prepare(db, "SELECT seq, hash FROM baseline_journal ORDER BY seq DESC LIMIT 1",
                             &st, err);
        if (r < 0)
                return r;
        r = vg_stmt_step(st, err);
        if (r < 0)
                return r;
        if (r > 0) {
                const char *h = vg_stmt_column_text(st, 1, NULL);
                e.seq = vg_stmt_column_int64(st, 0) + 1;
                snprintf(e.prev_hash, sizeof(e.prev_hash), "%s", h ? h : "");
        } else {
                e.seq = 1;
                memcpy(e.prev_hash, zero_hash, sizeof(zero_hash));
        }
        vg_stmt_free(TAKE_PTR(st));
        vg_rfc3339_ms(vg_now_ms(), now);
        e.time = now;
        e.actor = (char *)(actor ? actor : "");
        e.action = (char *)action;
        e.subject = (char *)subject;
        /* Hash what will be read back: the canonical texts parsed again. */
        json_auto_t *bj = btext ? json_loads(btext, 0, NULL) : NULL;
        json_auto_t *aj = atext ? json_loads(atext, 0, NULL) : NULL;
        e.before = bj;
        e.after = aj;
        if ((r = vg_journal_entry_hash(&e, e.hash)) < 0)
                return r;
        r = vg_store_prepare(db,
                             "INSERT INTO baseline_journal (seq, time, actor, action, subject, "
                             "before_json, after_json, prev_hash, hash) VALUES ($1, $2, $3, $4, "
                             "$5, $6, $7, $8, $9)",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_int64(st, 1, e.seq);
        vg_stmt_bind_text(st, 2, e.time);
        vg_stmt_bind_text(st, 3, e.actor);
        vg_stmt_bind_text(st, 4, e.action);
        vg_stmt_bind_text(st, 5, e.subject);
        vg_stmt_bind_text(st, 6, btext);
        vg_stmt_bind_text(st, 7, atext);
        vg_stmt_bind_text(st, 8, e.prev_hash);
        vg_stmt_bind_text(st, 9, e.hash);
        return vg_stmt_exec(st, err);
}

int vg_journal_read(struct vg_store *db, struct vg_journal_entry **out, size_t *n,
                    struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_journal_entry *list = NULL;
        size_t cnt = 0, cap = 0;
        int r;

        *out = NULL;
        *n = 0;
        r = vg_store_prepare(db,
                             "SELECT seq, time, actor, action, subject, before_json, after_json, "
                             "prev_hash, hash FROM baseline_journal ORDER BY seq",
                             &st, err);
        while (r >= 0 && (r = vg_stmt_step(st, err)) > 0) {
                if (cnt == cap) {
                        size_t c2 = cap ? cap * 2 : 64;
                        struct vg_journal_entry *l2 = realloc(list, c2 * sizeof(*l2));
                        if (!l2) {
                                r = -ENOMEM;
                                break;
                        }
                        list = l2;
                        cap = c2;
                }
                struct vg_journal_entry *e = &list[cnt++];
                memset(e, 0, sizeof(*e));
                e->seq = vg_stmt_column_int64(st, 0);
                e->time = dup_col(st, 1);
                e->actor = dup_col(st, 2);
                e->action = dup_col(st, 3);
                e->subject = dup_col(st, 4);
                const char *b = vg_stmt_column_text(st, 5, NULL),
                           *a = vg_stmt_column_text(st, 6, NULL);
                /* Text that is not JSON any more is kept as a string: the hash then fails. */
                e->before = b ? json_loads(b, 0, NULL) : json_null();
                if (!e->before)
                        e->before = json_string(b);
                e->after = a ? json_loads(a, 0, NULL) : json_null();
                if (!e->after)
                        e->after = json_string(a);
                snprintf(e->prev_hash, sizeof(e->prev_hash), "%s",
                         vg_stmt_column_text(st, 7, NULL) ? vg_stmt_column_text(st, 7, NULL) : "");
                snprintf(e->hash, sizeof(e->hash), "%s",
                         vg_stmt_column_text(st, 8, NULL) ? vg_stmt_column_text(st, 8, NULL) : "");
                if (!e->time || !e->actor || !e->action || !e->subject) {
                        r = -ENOMEM;
                        break;
                }
        }
        if (r < 0) {
                vg_journal_entries_free(list, cnt);
                return r;
        }
        *out = list;
        *n = cnt;
        return 0;
}

int vg_journal_verify(const struct vg_journal_entry *e, size_t n, int64_t *first_bad, char *problem,
                      size_t problem_len)
{
        const char *prev = zero_hash;
        char want[65];

        *first_bad = 0;
        for (size_t i = 0; i < n; i++) {
                const char *why = NULL;
                if (e[i].seq != (int64_t)i + 1)
                        why = i == 0 || e[i].seq > (int64_t)i + 1 ? "entries before it are missing"
                                                                  : "its sequence number is wrong";
                else if (strcmp(e[i].prev_hash, prev) != 0)
                        why = "its prev_hash is not the previous entry's hash";
                else if (vg_journal_entry_hash(&e[i], want) < 0)
                        return -ENOMEM;
                else if (strcmp(want, e[i].hash) != 0)
                        why = "its content does not match its hash (modified)";
                if (why) {
                        *first_bad = e[i].seq;
                        snprintf(problem, problem_len, "entry %lld (%s %s): %s",
                                 (long long)e[i].seq, e[i].action ? e[i].action : "?",
                                 e[i].subject ? e[i].subject : "?", why);
                        return 1;
                }
                prev = e[i].hash;
        }
        if (problem_len)
                snprintf(problem, problem_len, "%zu entries, chain intact", n);
        return 0;
}
