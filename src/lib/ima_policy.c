/* vigil: Keylime runtime policies (JSON v1 and the legacy flat allowlist + exclude list) parsed
 * once into path hash tables and one compiled exclude regex, shared by checksum. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "encoding.h"
#include "ima.h"
#include "ima_private.h"

/* ---- A bump allocator for the policy's strings ---------------------------------------------- */

struct vg_ima_arena_block {
        struct vg_ima_arena_block *next;
        size_t used, size;
        char data[];
};

static char *arena_alloc(struct vg_ima_arena_block **a, size_t n)
{
        struct vg_ima_arena_block *b = *a;

        if (!b || b->size - b->used < n) {
                size_t size = n > 65536 ? n : 65536;

                b = malloc(sizeof(*b) + size);
                if (!b)
                        return NULL;
                b->used = 0;
                b->size = size;
                b->next = *a;
                *a = b;
        }
        b->used += n;
        return b->data + b->used - n;
}

static char *arena_strndup(struct vg_ima_arena_block **a, const char *s, size_t n)
{
        char *p = arena_alloc(a, n + 1);

        if (p) {
                memcpy(p, s, n);
                p[n] = '\0';
        }
        return p;
}

static void arena_free(struct vg_ima_arena_block *a)
{
        while (a) {
                struct vg_ima_arena_block *next = a->next;
                free(a);
                a = next;
        }
}

/* ---- Path tables ---------------------------------------------------------------------------- */

static inline uint64_t load64(const char *p)
{
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
}

static inline uint64_t mix64(uint64_t x)
{
        x ^= x >> 32;
        x *= 0xd6e8feb86659fd93ULL;
        x ^= x >> 32;
        return x;
}

uint64_t vg_ima_path_hash(const char *s, size_t len)
{
        uint64_t h = 0x9e3779b97f4a7c15ULL ^ (len * 0xff51afd7ed558ccdULL);

        while (len >= 8) {
                h = (h ^ load64(s)) * 0x9fb21c651e98df25ULL;
                h ^= h >> 29;
                s += 8;
                len -= 8;
        }
        if (len) {
                uint64_t v = 0;
                memcpy(&v, s, len);
                h = (h ^ v) * 0x9fb21c651e98df25ULL;
        }
        h = mix64(h);
        return h ? h : 1; /* 0 marks an empty slot */
}

const struct vg_ima_slot *vg_ima_map_find_h(const struct vg_ima_map *m, const char *key, size_t len,
                                            uint64_t h)
{
        if (!m->count)
                return NULL;
        for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
                const struct vg_ima_slot *s = &m->slots[i];

                if (!s->hash)
                        return NULL;
                if (s->hash == h && s->key_len == len && memcmp(s->key, key, len) == 0)
                        return s;
        }
}

const struct vg_ima_slot *vg_ima_map_find(const struct vg_ima_map *m, const char *key, size_t len)
{
        return m->count ? vg_ima_map_find_h(m, key, len, vg_ima_path_hash(key, len)) : NULL;
}

bool vg_ima_map_allows(const struct vg_ima_map *m, const struct vg_ima_slot *s,
                       const uint8_t *digest, size_t len)
{
        for (uint32_t k = 0; k < s->n; k++) {
                const struct vg_ima_digest *d = &m->digests[s->first + k];

                if (d->len == len && memcmp(d->d, digest, len) == 0)
                        return true;
        }
        return false;
}

static int map_grow(struct vg_ima_map *m)
{
        size_t cap = m->slots ? (m->mask + 1) * 2 : 64;
        struct vg_ima_slot *slots = calloc(cap, sizeof(*slots));
        uint32_t *order = reallocarray(m->order, cap / 2 + 1, sizeof(*order));

        if (!slots || !order) {
                free(slots);
                if (order)
                        m->order = order;
                return -ENOMEM;
        }
        m->order = order;
        for (size_t k = 0; k < m->count; k++) {
                const struct vg_ima_slot *s = &m->slots[m->order[k]];
                size_t i = s->hash & (cap - 1);

                while (slots[i].hash)
                        i = (i + 1) & (cap - 1);
                slots[i] = *s;
                m->order[k] = (uint32_t)i;
        }
        free(m->slots);
        m->slots = slots;
        m->mask = cap - 1;
        return 0;
}

/* Insert key (owned by the arena) with no digests yet; -EEXIST if present. */
static int map_insert(struct vg_ima_map *m, const char *key, size_t len, struct vg_ima_slot **out)
{
        uint64_t h = vg_ima_path_hash(key, len);
        size_t i;

        if (len > UINT32_MAX || m->count >= UINT32_MAX / 2)
                return -E2BIG;
        if (!m->slots || (m->count + 1) * 2 > m->mask + 1) {
                int r = map_grow(m);
                if (r < 0)
                        return r;
        }
        for (i = h & m->mask; m->slots[i].hash; i = (i + 1) & m->mask) {
                const struct vg_ima_slot *s = &m->slots[i];

                if (s->hash == h && s->key_len == len && memcmp(s->key, key, len) == 0)
                        return -EEXIST;
        }
        m->slots[i] = (struct vg_ima_slot){
                .hash = h, .key = key, .key_len = (uint32_t)len, .first = (uint32_t)m->n_digests
        };
        m->order[m->count++] = (uint32_t)i;
        *out = &m->slots[i];
        return 0;
}

static int map_add_digest(struct vg_ima_map *m, struct vg_ima_slot *s, const uint8_t *d, size_t len)
{
        if (m->n_digests == m->cap_digests) {
                size_t cap = m->cap_digests ? m->cap_digests * 2 : 256;
                struct vg_ima_digest *nd;

                if (cap > UINT32_MAX)
                        return -E2BIG;
                nd = reallocarray(m->digests, cap, sizeof(*nd));
                if (!nd)
                        return -ENOMEM;
                m->digests = nd;
                m->cap_digests = cap;
        }
        m->digests[m->n_digests].len = (uint8_t)len;
        memcpy(m->digests[m->n_digests].d, d, len);
        m->n_digests++;
        s->n++;
        return 0;
}

static void map_free(struct vg_ima_map *m)
{
        free(m->slots);
        free(m->order);
        free(m->digests);
        *m = (struct vg_ima_map){ 0 };
}

/* ---- Reference counting and accessors ------------------------------------------------------- */

static void policy_free(struct vg_ima_policy *p)
{
        map_free(&p->digests);
        map_free(&p->keyrings);
        map_free(&p->imabuf);
        pcre2_code_free(p->exclude_re);
        free(p->excludes);
        free(p->ignored_keyrings);
        vg_ima_keyring_clear(&p->vkeys);
        arena_free(p->arena);
        free(p);
}

static struct vg_ima_policy *policy_new(void)
{
        struct vg_ima_policy *p = calloc(1, sizeof(*p));

        if (p) {
                p->refs = 1;
                p->log_hash_alg = VG_HASH_SHA1;
                p->meta_version = 1;
        }
        return p;
}

struct vg_ima_policy *vg_ima_policy_ref(struct vg_ima_policy *p)
{
        if (p)
                __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
        return p;
}

void vg_ima_policy_unref(struct vg_ima_policy *p)
{
        if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
                policy_free(p);
}

const uint8_t *vg_ima_policy_checksum(const struct vg_ima_policy *p)
{
        return p->checksum;
}

size_t vg_ima_policy_digest_count(const struct vg_ima_policy *p)
{
        size_t n = 0;

        for (size_t k = 0; k < p->digests.count; k++)
                n += p->digests.slots[p->digests.order[k]].n;
        return n;
}

size_t vg_ima_policy_exclude_count(const struct vg_ima_policy *p)
{
        return p->n_excludes;
}

enum vg_hash_alg vg_ima_policy_log_hash_alg(const struct vg_ima_policy *p)
{
        return p->log_hash_alg;
}

/* ---- Excludes: Python re.match over "(r1)|(r2)|..." ----------------------------------------- */

static const uint32_t re_options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;

static int compile_excludes(struct vg_ima_policy *p, const char *what, struct vg_error *err)
{
        size_t total = 1, off = 0;
        _cleanup_free_ char *alt = NULL;
        int code;
        PCRE2_SIZE at;

        if (!p->n_excludes)
                return 0;
        for (size_t i = 0; i < p->n_excludes; i++) {
                pcre2_code *one = pcre2_compile((PCRE2_SPTR)p->excludes[i], PCRE2_ZERO_TERMINATED,
                                                re_options, &code, &at, NULL);
                if (!one) {
                        char msg[160];
                        pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof(msg));
                        return vg_error_set(err, -EINVAL,
                                            "%s[%zu]: not a valid regular expression (%s at "
                                            "offset %zu): \"%.120s\"",
                                            what, i, msg, (size_t)at, p->excludes[i]);
                }
                pcre2_code_free(one);
                total += strlen(p->excludes[i]) + 3;
        }
        alt = malloc(total);
        if (!alt)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_excludes; i++) {
                size_t n = strlen(p->excludes[i]);

                if (i)
                        alt[off++] = '|';
                alt[off++] = '(';
                memcpy(alt + off, p->excludes[i], n);
                off += n;
                alt[off++] = ')';
        }
        alt[off] = '\0';
        p->exclude_re =
            pcre2_compile((PCRE2_SPTR)alt, off, re_options | PCRE2_ANCHORED, &code, &at, NULL);
        if (!p->exclude_re) {
                char msg[160];
                pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof(msg));
                return vg_error_set(err, -EINVAL, "%s: the regular expressions do not combine: %s",
                                    what, msg);
        }
        pcre2_jit_compile(p->exclude_re, PCRE2_JIT_COMPLETE); /* best effort */
        return 0;
}

static int add_exclude(struct vg_ima_policy *p, size_t *cap, const char *s, size_t len)
{
        char *copy;

        if (p->n_excludes == *cap) {
                size_t ncap = *cap ? *cap * 2 : 16;
                char **n = reallocarray(p->excludes, ncap, sizeof(*n));
                if (!n)
                        return -ENOMEM;
                p->excludes = n;
                *cap = ncap;
        }
        copy = arena_strndup(&p->arena, s, len);
        if (!copy)
                return -ENOMEM;
        p->excludes[p->n_excludes++] = copy;
        return 0;
}

/* ---- A strict JSON reader for the policy (RFC 8259), building the tables directly ---------- */

#define JSON_MAX_DEPTH 64

struct jr {
        const char *start, *p, *end;
        struct vg_error *err;
        char *sbuf; /* decoded string scratch */
        size_t scap;
        struct vg_ima_policy *pol;
};

static void jr_ws(struct jr *j)
{
        while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r'))
                j->p++;
}

static void jr_position(const struct jr *j, size_t *line, size_t *col)
{
        *line = 1;
        *col = 1;
        for (const char *q = j->start; q < j->p; q++) {
                if (*q == '\n') {
                        (*line)++;
                        *col = 1;
                } else {
                        (*col)++;
                }
        }
}

static const char *jr_found(const struct jr *j, char buf[static 32])
{
        if (j->p >= j->end)
                return "the end of the text";
        if ((unsigned char)*j->p >= 0x20 && (unsigned char)*j->p < 0x7f)
                snprintf(buf, 32, "'%c'", *j->p);
        else
                snprintf(buf, 32, "byte 0x%02x", (unsigned char)*j->p);
        return buf;
}

__attribute__((format(printf, 3, 4))) static int jr_fail(struct jr *j, const char *path,
                                                         const char *fmt, ...)
{
        char msg[300];
        size_t line, col;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        jr_position(j, &line, &col);
        return vg_error_set(j->err, -EINVAL, "%s%s%s (line %zu, column %zu)", path,
                            path[0] ? ": " : "", msg, line, col);
}

static int jr_expect(struct jr *j, const char *path, char c, const char *what)
{
        char b[32];

        jr_ws(j);
        if (j->p < j->end && *j->p == c) {
                j->p++;
                return 0;
        }
        return jr_fail(j, path, "expected %s, found %s", what, jr_found(j, b));
}

static int sbuf_reserve(struct jr *j, size_t n)
{
        if (n > j->scap) {
                size_t cap = j->scap ? j->scap : 256;
                char *nb;

                while (cap < n)
                        cap *= 2;
                nb = realloc(j->sbuf, cap);
                if (!nb)
                        return -ENOMEM;
                j->sbuf = nb;
                j->scap = cap;
        }
        return 0;
}

static int hexval(char c)
{
        return vg_hex_digit_value((unsigned char)c);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
        unsigned c = p[0];
        size_t n;
        uint32_t cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
                n = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 4, cp = c & 0x07;
        else
                return 0;
        if ((size_t)(end - p) < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0;
        return n;
}

static size_t put_utf8(char *o, uint32_t cp)
{
        if (cp < 0x80) {
                o[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (char)(0xc0 | cp >> 6);
                o[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (char)(0xe0 | cp >> 12);
                o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
                o[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        o[0] = (char)(0xf0 | cp >> 18);
        o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

static int jr_u4(struct jr *j, const char *path, uint32_t *out)
{
        uint32_t v = 0;

        if (j->end - j->p < 4)
                return jr_fail(j, path, "expected 4 hex digits after \\u, found the end");
        for (int i = 0; i < 4; i++) {
                int d = hexval(j->p[i]);
                if (d < 0)
                        return jr_fail(j, path, "expected 4 hex digits after \\u");
                v = v << 4 | (uint32_t)d;
        }
        j->p += 4;
        *out = v;
        return 0;
}

/* A string at j->p (after whitespace); decoded into j->sbuf (NUL-terminated), length in *len.
 * The fast path copies runs of plain ASCII. "\u0000" is refused: paths are C strings. */
static int jr_string(struct jr *j, const char *path, size_t *len)
{
        size_t o = 0;
        int r;
        char b[32];

        jr_ws(j);
        if (j->p >= j->end || *j->p != '"')
                return jr_fail(j, path, "expected a string, found %s", jr_found(j, b));
        j->p++;
        for (;;) {
                const char *run = j->p;

                while (j->p < j->end) {
                        unsigned char c = (unsigned char)*j->p;
                        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
                                break;
                        j->p++;
                }
                if ((r = sbuf_reserve(j, o + (size_t)(j->p - run) + 8)) < 0)
                        return r;
                memcpy(j->sbuf + o, run, (size_t)(j->p - run));
                o += (size_t)(j->p - run);
                if (j->p >= j->end)
                        return jr_fail(j, path, "unterminated string");
                unsigned char c = (unsigned char)*j->p;
                if (c == '"') {
                        j->p++;
                        break;
                }
                if (c < 0x20)
                        return jr_fail(j, path, "control character 0x%02x inside a string", c);
                if (c >= 0x80) {
                        size_t n =
                            utf8_seq((const unsigned char *)j->p, (const unsigned char *)j->end);
                        if (!n)
                                return jr_fail(j, path, "invalid UTF-8 inside a string");
                        memcpy(j->sbuf + o, j->p, n);
                        o += n;
                        j->p += n;
                        continue;
                }
                /* backslash */
                j->p++;
                if (j->p >= j->end)
                        return jr_fail(j, path, "unterminated string");
                c = (unsigned char)*j->p++;
                switch (c) {
                case '"':
                case '\\':
                case '/':
                        j->sbuf[o++] = (char)c;
                        break;
                case 'b':
                        j->sbuf[o++] = '\b';
                        break;
                case 'f':
                        j->sbuf[o++] = '\f';
                        break;
                case 'n':
                        j->sbuf[o++] = '\n';
                        break;
                case 'r':
                        j->sbuf[o++] = '\r';
                        break;
                case 't':
                        j->sbuf[o++] = '\t';
                        break;
                case 'u': {
                        uint32_t cp, lo;
                        if ((r = jr_u4(j, path, &cp)) < 0)
                                return r;
                        if (cp >= 0xdc00 && cp <= 0xdfff)
                                return jr_fail(j, path, "lone low surrogate \\u%04x", cp);
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                                        return jr_fail(j, path, "lone high surrogate \\u%04x", cp);
                                j->p += 2;
                                if ((r = jr_u4(j, path, &lo)) < 0)
                                        return r;
                                if (lo < 0xdc00 || lo > 0xdfff)
                                        return jr_fail(j, path, "lone high surrogate \\u%04x", cp);
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        }
                        if (cp == 0)
                                return jr_fail(j, path, "\\u0000 inside a string is refused");
                        o += put_utf8(j->sbuf + o, cp);
                        break;
                }
                default:
                        return jr_fail(j, path, "invalid escape '\\%c'",
                                       c >= 0x20 && c < 0x7f ? c : '?');
                }
        }
        j->sbuf[o] = '\0';
        *len = o;
        return 0;
}

/* A non-negative integer (JSON number without fraction or exponent). */
static int jr_uint(struct jr *j, const char *path, int64_t max, int64_t *out)
{
        int64_t v = 0;
        char b[32];

        jr_ws(j);
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
                return jr_fail(j, path, "expected a whole number from 0 to %" PRId64 ", found %s",
                               max, jr_found(j, b));
        if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
                return jr_fail(j, path, "leading zeros are not JSON");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
                if (v > (max - (*j->p - '0')) / 10)
                        return jr_fail(j, path, "expected a whole number from 0 to %" PRId64, max);
                v = v * 10 + (*j->p++ - '0');
        }
        if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
                return jr_fail(j, path, "expected a whole number, found a fraction or exponent");
        *out = v;
        return 0;
}

static int jr_literal(struct jr *j, const char *lit)
{
        size_t n = strlen(lit);

        if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
                return -1;
        j->p += n;
        return 0;
}

/* Validate and skip any JSON value (keys the schema does not know). */
static int jr_skip(struct jr *j, const char *path, int depth)
{
        char b[32];
        size_t len;
        int r;

        if (depth > JSON_MAX_DEPTH)
                return jr_fail(j, path, "nested deeper than %d levels", JSON_MAX_DEPTH);
        jr_ws(j);
        if (j->p >= j->end)
                return jr_fail(j, path, "expected a value, found the end of the text");
        switch (*j->p) {
        case '"':
                return jr_string(j, path, &len);
        case '{':
        case '[': {
                char close = *j->p == '{' ? '}' : ']';
                bool obj = close == '}';
                j->p++;
                jr_ws(j);
                if (j->p < j->end && *j->p == close) {
                        j->p++;
                        return 0;
                }
                for (;;) {
                        if (obj) {
                                if ((r = jr_string(j, path, &len)) < 0 ||
                                    (r = jr_expect(j, path, ':', "':'")) < 0)
                                        return r;
                        }
                        if ((r = jr_skip(j, path, depth + 1)) < 0)
                                return r;
                        jr_ws(j);
                        if (j->p < j->end && *j->p == ',') {
                                j->p++;
                                continue;
                        }
                        if (j->p < j->end && *j->p == close) {
                                j->p++;
                                return 0;
                        }
                        return jr_fail(j, path, "expected ',' or '%c', found %s", close,
                                       jr_found(j, b));
                }
        }
        case 't':
                if (jr_literal(j, "true") == 0)
                        return 0;
                break;
        case 'f':
                if (jr_literal(j, "false") == 0)
                        return 0;
                break;
        case 'n':
                if (jr_literal(j, "null") == 0)
                        return 0;
                break;
        default:
                if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) {
                        if (*j->p == '-')
                                j->p++;
                        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
                                return jr_fail(j, path, "invalid number");
                        if (*j->p == '0')
                                j->p++;
                        else
                                while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
                                        j->p++;
                        if (j->p < j->end && *j->p == '.') {
                                j->p++;
                                if (j->p >= j->end || *j->p < '0' || *j->p > '9')
                                        return jr_fail(j, path, "invalid number");
                                while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
                                        j->p++;
                        }
                        if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
                                j->p++;
                                if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
                                        j->p++;
                                if (j->p >= j->end || *j->p < '0' || *j->p > '9')
                                        return jr_fail(j, path, "invalid number");
                                while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
                                        j->p++;
                        }
                        return 0;
                }
        }
        return jr_fail(j, path, "expected a JSON value, found %s", jr_found(j, b));
}

/* Iterate an object: calls member(j, key, keylen, ud) positioned at the value. */
typedef int (*jr_member_fn)(struct jr *j, const char *key, size_t keylen, void *ud);

static int jr_object(struct jr *j, const char *path, jr_member_fn member, void *ud)
{
        char b[32];
        int r;

        if ((r = jr_expect(j, path, '{', "an object")) < 0)
                return r;
        jr_ws(j);
        if (j->p < j->end && *j->p == '}') {
                j->p++;
                return 0;
        }
        for (;;) {
                size_t klen;
                _cleanup_free_ char *key = NULL;

                if ((r = jr_string(j, path, &klen)) < 0)
                        return r;
                key = malloc(klen + 1);
                if (!key)
                        return -ENOMEM;
                memcpy(key, j->sbuf, klen + 1);
                if ((r = jr_expect(j, path, ':', "':' after a key")) < 0)
                        return r;
                if ((r = member(j, key, klen, ud)) < 0)
                        return r;
                jr_ws(j);
                if (j->p < j->end && *j->p == ',') {
                        j->p++;
                        continue;
                }
                if (j->p < j->end && *j->p == '}') {
                        j->p++;
                        return 0;
                }
                return jr_fail(j, path, "expected ',' or '}', found %s", jr_found(j, b));
        }
}

/* Decode a policy digest: ^[0-9a-f]{40,128}$ and, as bytes, an even number of digits. */
static bool digest_hex(const char *s, size_t len, uint8_t *out)
{
        if (len < 40 || len > 128 || len % 2)
                return false;
        for (size_t i = 0; i < len; i += 2) {
                int hi = s[i] >= '0' && s[i] <= '9'   ? s[i] - '0'
                         : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10
                                                      : -1;
                int lo = s[i + 1] >= '0' && s[i + 1] <= '9'   ? s[i + 1] - '0'
                         : s[i + 1] >= 'a' && s[i + 1] <= 'f' ? s[i + 1] - 'a' + 10
                                                              : -1;
                if (hi < 0 || lo < 0)
                        return false;
                out[i / 2] = (uint8_t)(hi << 4 | lo);
        }
        return true;
}

struct digests_ctx {
        struct vg_ima_map *map;
        const char *name; /* "digests", "keyrings", "ima-buf" */
};

static int digests_member(struct jr *j, const char *key, size_t klen, void *ud)
{
        struct digests_ctx *c = ud;
        struct vg_ima_policy *p = j->pol;
        struct vg_ima_slot *slot;
        char path[300];
        char b[32];
        size_t idx = 0;
        char *k;
        int r;

        snprintf(path, sizeof(path), "%s.%.200s", c->name, key);
        k = arena_strndup(&p->arena, key, klen);
        if (!k)
                return -ENOMEM;
        r = map_insert(c->map, k, klen, &slot);
        if (r == -EEXIST)
                return jr_fail(j, path, "duplicate key");
        if (r < 0)
                return r;
        slot->first = (uint32_t)c->map->n_digests;
        if ((r = jr_expect(j, path, '[', "an array of hex digests")) < 0)
                return r;
        jr_ws(j);
        if (j->p < j->end && *j->p == ']')
                return jr_fail(j, path, "expected at least one digest, found an empty array");
        for (;; idx++) {
                size_t len;
                uint8_t d[VG_HASH_MAX_SIZE];
                char ipath[320];

                snprintf(ipath, sizeof(ipath), "%s[%zu]", path, idx);
                if ((r = jr_string(j, ipath, &len)) < 0)
                        return r;
                if (!digest_hex(j->sbuf, len, d)) {
                        const char *colon = memchr(j->sbuf, ':', len);
                        return jr_fail(j, ipath,
                                       "expected an even number (40..128) of lower-case hex "
                                       "digits%s, found \"%.140s\"",
                                       colon ? " without an algorithm prefix" : "", j->sbuf);
                }
                if ((r = map_add_digest(c->map, slot, d, len / 2)) < 0)
                        return r;
                jr_ws(j);
                if (j->p < j->end && *j->p == ',') {
                        j->p++;
                        continue;
                }
                if (j->p < j->end && *j->p == ']') {
                        j->p++;
                        return 0;
                }
                return jr_fail(j, path, "expected ',' or ']', found %s", jr_found(j, b));
        }
}

/* An array of strings; each goes to add(). */
static int jr_string_array(struct jr *j, const char *path,
                           int (*add)(struct jr *j, const char *ipath, size_t len, void *ud),
                           void *ud)
{
        char b[32];
        int r;

        if ((r = jr_expect(j, path, '[', "an array of strings")) < 0)
                return r;
        jr_ws(j);
        if (j->p < j->end && *j->p == ']') {
                j->p++;
                return 0;
        }
        for (size_t idx = 0;; idx++) {
                size_t len;
                char ipath[64];

                snprintf(ipath, sizeof(ipath), "%s[%zu]", path, idx);
                if ((r = jr_string(j, ipath, &len)) < 0 || (r = add(j, ipath, len, ud)) < 0)
                        return r;
                jr_ws(j);
                if (j->p < j->end && *j->p == ',') {
                        j->p++;
                        continue;
                }
                if (j->p < j->end && *j->p == ']') {
                        j->p++;
                        return 0;
                }
                return jr_fail(j, path, "expected ',' or ']', found %s", jr_found(j, b));
        }
}

static int add_exclude_j(struct jr *j, const char *ipath, size_t len, void *ud)
{
        (void)ipath;
        return add_exclude(j->pol, ud, j->sbuf, len);
}

static int add_ignored_j(struct jr *j, const char *ipath, size_t len, void *ud)
{
        struct vg_ima_policy *p = j->pol;
        size_t *cap = ud;
        char *copy;

        (void)ipath;
        if (p->n_ignored == *cap) {
                size_t ncap = *cap ? *cap * 2 : 8;
                char **n = reallocarray(p->ignored_keyrings, ncap, sizeof(*n));
                if (!n)
                        return -ENOMEM;
                p->ignored_keyrings = n;
                *cap = ncap;
        }
        if (!(copy = arena_strndup(&p->arena, j->sbuf, len)))
                return -ENOMEM;
        p->ignored_keyrings[p->n_ignored++] = copy;
        if (strcmp(copy, "*") == 0)
                p->ignore_all_keyrings = true;
        return 0;
}

enum {
        SEEN_META = 1 << 0,
        SEEN_RELEASE = 1 << 1,
        SEEN_DIGESTS = 1 << 2,
        SEEN_EXCLUDES = 1 << 3,
        SEEN_KEYRINGS = 1 << 4,
        SEEN_IMA = 1 << 5,
        SEEN_IMABUF = 1 << 6,
        SEEN_VKEYS = 1 << 7,
        SEEN_VERSION = 1 << 8,
        SEEN_GENERATOR = 1 << 9,
        SEEN_IGNORED = 1 << 10,
        SEEN_LOGALG = 1 << 11,
        SEEN_DM = 1 << 12,
        SEEN_TIMESTAMP = 1 << 13,
};

static int seen_once(struct jr *j, const char *path, unsigned *seen, unsigned bit)
{
        if (*seen & bit)
                return jr_fail(j, path, "duplicate key");
        *seen |= bit;
        return 0;
}

static int meta_member(struct jr *j, const char *key, size_t klen, void *ud)
{
        unsigned *seen = ud;
        struct vg_ima_policy *p = j->pol;
        int r;

        (void)klen;
        if (strcmp(key, "version") == 0) {
                if ((r = seen_once(j, "meta.version", seen, SEEN_VERSION)) < 0 ||
                    (r = jr_uint(j, "meta.version", INT32_MAX, &p->meta_version)) < 0)
                        return r;
                if (p->meta_version != 1)
                        return jr_fail(j, "meta.version",
                                       "expected runtime policy version 1, found %" PRId64,
                                       p->meta_version);
                return 0;
        }
        if (strcmp(key, "generator") == 0) {
                if ((r = seen_once(j, "meta.generator", seen, SEEN_GENERATOR)) < 0)
                        return r;
                return jr_uint(j, "meta.generator", 3, &p->generator);
        }
        if (strcmp(key, "timestamp") == 0) {
                size_t len;
                if ((r = seen_once(j, "meta.timestamp", seen, SEEN_TIMESTAMP)) < 0 ||
                    (r = jr_string(j, "meta.timestamp", &len)) < 0)
                        return r;
                p->timestamp = arena_strndup(&p->arena, j->sbuf, len);
                return p->timestamp ? 0 : -ENOMEM;
        }
        return jr_skip(j, "meta", 1);
}

static int ima_member(struct jr *j, const char *key, size_t klen, void *ud)
{
        unsigned *seen = ud;
        struct vg_ima_policy *p = j->pol;
        size_t len;
        int r;

        (void)klen;
        if (strcmp(key, "ignored_keyrings") == 0) {
                size_t cap = 0;
                if ((r = seen_once(j, "ima.ignored_keyrings", seen, SEEN_IGNORED)) < 0)
                        return r;
                return jr_string_array(j, "ima.ignored_keyrings", add_ignored_j, &cap);
        }
        if (strcmp(key, "log_hash_alg") == 0) {
                if ((r = seen_once(j, "ima.log_hash_alg", seen, SEEN_LOGALG)) < 0 ||
                    (r = jr_string(j, "ima.log_hash_alg", &len)) < 0)
                        return r;
                if (strcmp(j->sbuf, "sha1") && strcmp(j->sbuf, "sha256") &&
                    strcmp(j->sbuf, "sha384") && strcmp(j->sbuf, "sha512"))
                        return jr_fail(j, "ima.log_hash_alg",
                                       "expected sha1, sha256, sha384 or sha512, found \"%.40s\"",
                                       j->sbuf);
                return vg_hash_alg_from_name(j->sbuf, &p->log_hash_alg);
        }
        if (strcmp(key, "dm_policy") == 0) {
                char b[32];
                if ((r = seen_once(j, "ima.dm_policy", seen, SEEN_DM)) < 0)
                        return r;
                jr_ws(j);
                if (jr_literal(j, "null") < 0)
                        return jr_fail(j, "ima.dm_policy",
                                       "expected null (device-mapper policies are not "
                                       "supported), found %s",
                                       jr_found(j, b));
                return 0;
        }
        return jr_skip(j, "ima", 1);
}

static int top_member(struct jr *j, const char *key, size_t klen, void *ud)
{
        unsigned *seen = ud;
        struct vg_ima_policy *p = j->pol;
        int r;

        (void)klen;
        if (strcmp(key, "meta") == 0) {
                unsigned s = 0;
                if ((r = seen_once(j, "meta", seen, SEEN_META)) < 0 ||
                    (r = jr_object(j, "meta", meta_member, &s)) < 0)
                        return r;
                if (!(s & SEEN_VERSION))
                        return jr_fail(j, "meta", "missing required key \"version\"");
                if (!(s & SEEN_GENERATOR))
                        return jr_fail(j, "meta", "missing required key \"generator\"");
                return 0;
        }
        if (strcmp(key, "release") == 0) {
                if ((r = seen_once(j, "release", seen, SEEN_RELEASE)) < 0)
                        return r;
                return jr_uint(j, "release", INT64_MAX, &p->release);
        }
        if (strcmp(key, "digests") == 0 || strcmp(key, "keyrings") == 0 ||
            strcmp(key, "ima-buf") == 0) {
                struct digests_ctx c;
                unsigned bit;
                if (key[0] == 'd')
                        c = (struct digests_ctx){ &p->digests, "digests" }, bit = SEEN_DIGESTS;
                else if (key[0] == 'k')
                        c = (struct digests_ctx){ &p->keyrings, "keyrings" }, bit = SEEN_KEYRINGS;
                else
                        c = (struct digests_ctx){ &p->imabuf, "ima-buf" }, bit = SEEN_IMABUF;
                if ((r = seen_once(j, c.name, seen, bit)) < 0)
                        return r;
                return jr_object(j, c.name, digests_member, &c);
        }
        if (strcmp(key, "excludes") == 0) {
                size_t cap = 0;
                if ((r = seen_once(j, "excludes", seen, SEEN_EXCLUDES)) < 0)
                        return r;
                return jr_string_array(j, "excludes", add_exclude_j, &cap);
        }
        if (strcmp(key, "ima") == 0) {
                unsigned s = 0;
                if ((r = seen_once(j, "ima", seen, SEEN_IMA)) < 0 ||
                    (r = jr_object(j, "ima", ima_member, &s)) < 0)
                        return r;
                if (!(s & SEEN_IGNORED))
                        return jr_fail(j, "ima", "missing required key \"ignored_keyrings\"");
                if (!(s & SEEN_LOGALG))
                        return jr_fail(j, "ima", "missing required key \"log_hash_alg\"");
                if (!(s & SEEN_DM))
                        return jr_fail(j, "ima", "missing required key \"dm_policy\"");
                return 0;
        }
        if (strcmp(key, "verification-keys") == 0) {
                size_t len;
                if ((r = seen_once(j, "verification-keys", seen, SEEN_VKEYS)) < 0 ||
                    (r = jr_string(j, "verification-keys", &len)) < 0)
                        return r;
                p->verification_keys = arena_strndup(&p->arena, j->sbuf, len);
                if (!p->verification_keys)
                        return -ENOMEM;
                r = vg_ima_keyring_from_verification_keys(&p->vkeys, p->verification_keys, len,
                                                          j->err);
                if (r < 0)
                        vg_error_prefix(j->err, "verification-keys: ");
                return r;
        }
        return jr_skip(j, key, 0);
}

int vg_ima_policy_parse(const char *json, size_t len, struct vg_ima_policy **out,
                        struct vg_error *err)
{
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p = NULL;
        static const struct {
                unsigned bit;
                const char *name;
        } required[] = {
                { SEEN_META, "meta" },         { SEEN_RELEASE, "release" },
                { SEEN_DIGESTS, "digests" },   { SEEN_EXCLUDES, "excludes" },
                { SEEN_KEYRINGS, "keyrings" }, { SEEN_IMA, "ima" },
                { SEEN_IMABUF, "ima-buf" },    { SEEN_VKEYS, "verification-keys" },
        };
        struct jr j = { .start = json, .p = json, .end = json + len, .err = err };
        unsigned seen = 0;
        char b[32];
        int r;

        *out = NULL;
        if (!json)
                return vg_error_set(err, -EINVAL, "runtime policy: no text given");
        if (!(p = policy_new()))
                return -ENOMEM;
        j.pol = p;
        r = jr_object(&j, "", top_member, &seen);
        if (r == 0) {
                jr_ws(&j);
                if (j.p != j.end)
                        r = jr_fail(&j, "",
                                    "expected the end of the text after the policy "
                                    "object, found %s",
                                    jr_found(&j, b));
        }
        for (size_t i = 0; r == 0 && i < VG_ARRAY_SIZE(required); i++)
                if (!(seen & required[i].bit))
                        r = vg_error_set(err, -EINVAL,
                                         "runtime policy: missing required key \"%s\"",
                                         required[i].name);
        free(j.sbuf);
        if (r == -ENOMEM)
                return vg_error_set(err, r, "runtime policy: out of memory");
        if (r < 0)
                return r;
        if ((r = compile_excludes(p, "excludes", err)) < 0)
                return r;
        if ((r = vg_hash(VG_HASH_SHA256, json, len, p->checksum)) < 0)
                return vg_error_set(err, r, "runtime policy: cannot hash it");
        *out = TAKE_PTR(p);
        return 0;
}

/* ---- The legacy flat lists ----------------------------------------------------------------- */

static bool valid_utf8(const char *s, size_t len)
{
        const unsigned char *p = (const unsigned char *)s, *end = p + len;

        while (p < end) {
                size_t n = utf8_seq(p, end);
                if (!n)
                        return false;
                p += n;
        }
        return true;
}

static int flat_line(struct vg_ima_policy *p, const char *line, size_t len, size_t lineno,
                     struct vg_error *err)
{
        const char *sp, *path, *hex = line;
        size_t hexlen, plen;
        uint8_t d[VG_HASH_MAX_SIZE];
        struct vg_ima_map *m = &p->digests;
        const struct vg_ima_slot *found;
        struct vg_ima_slot *slot;
        int r;

        sp = memchr(line, ' ', len);
        if (!sp)
                sp = memchr(line, '\t', len);
        if (!sp)
                return vg_error_set(err, -EINVAL,
                                    "allowlist:%zu: expected \"<hex digest> <path>\", found "
                                    "\"%.*s\"",
                                    lineno, (int)(len > 80 ? 80 : len), line);
        hexlen = (size_t)(sp - line);
        /* sha256sum-style "sha256:<hex>" as in Keylime's own test allowlists. */
        const char *colon = memchr(hex, ':', hexlen);
        if (colon) {
                hexlen -= (size_t)(colon + 1 - hex);
                hex = colon + 1;
        }
        path = sp;
        while (path < line + len && (*path == ' ' || *path == '\t'))
                path++;
        plen = (size_t)(line + len - path);
        while (plen && (path[plen - 1] == ' ' || path[plen - 1] == '\t' || path[plen - 1] == '\r'))
                plen--;
        if (plen > 1 && path[0] == '*' && path[1] == '/') /* sha256sum binary mode */
                path++, plen--;
        if (!plen)
                return vg_error_set(err, -EINVAL, "allowlist:%zu: expected a path after the digest",
                                    lineno);
        if (!digest_hex(hex, hexlen, d))
                return vg_error_set(err, -EINVAL,
                                    "allowlist:%zu: expected an even number (40..128) of "
                                    "lower-case hex digits, found \"%.*s\"",
                                    lineno, (int)(hexlen > 140 ? 140 : hexlen), hex);
        if (memchr(path, '\0', plen) || !valid_utf8(path, plen))
                return vg_error_set(err, -EINVAL, "allowlist:%zu: the path is not UTF-8 text",
                                    lineno);
        if (plen > 9 && memcmp(path, "%keyring:", 9) == 0) {
                m = &p->keyrings;
                path += 9;
                plen -= 9;
        }
        found = vg_ima_map_find(m, path, plen);
        if (found) {
                /* The digests of one path must be contiguous: append only to the last path. */
                slot = (struct vg_ima_slot *)found;
                if (vg_ima_map_allows(m, slot, d, hexlen / 2))
                        return 0;
                if (slot->first + slot->n != m->n_digests) {
                        /* Move this path's digests to the end (the old copies stay unused). */
                        uint32_t first = slot->first, n = slot->n;

                        slot->first = (uint32_t)m->n_digests;
                        slot->n = 0;
                        for (uint32_t k = 0; k < n; k++) {
                                struct vg_ima_digest copy = m->digests[first + k];
                                if ((r = map_add_digest(m, slot, copy.d, copy.len)) < 0)
                                        return r;
                        }
                }
                return map_add_digest(m, slot, d, hexlen / 2);
        }
        char *k = arena_strndup(&p->arena, path, plen);
        if (!k)
                return -ENOMEM;
        if ((r = map_insert(m, k, plen, &slot)) < 0)
                return r;
        return map_add_digest(m, slot, d, hexlen / 2);
}

int vg_ima_policy_from_lists(const char *allowlist, size_t allowlist_len, const char *exclude,
                             size_t exclude_len, struct vg_ima_policy **out, struct vg_error *err)
{
        _cleanup_(vg_ima_policy_unrefp) struct vg_ima_policy *p = NULL;
        size_t lineno = 0, cap = 0;
        struct vg_hash_ctx *sha = NULL;
        int r;

        *out = NULL;
        if (!(p = policy_new()))
                return -ENOMEM;
        p->generator = 3; /* LegacyAllowList */
        p->verification_keys = arena_strndup(&p->arena, "", 0);
        if (!p->verification_keys)
                return -ENOMEM;
        for (size_t off = 0; allowlist && off < allowlist_len;) {
                const char *line = allowlist + off;
                const char *nl = memchr(line, '\n', allowlist_len - off);
                size_t len = nl ? (size_t)(nl - line) : allowlist_len - off;
                size_t s = 0;

                off += len + (nl ? 1 : 0);
                lineno++;
                while (s < len && (line[s] == ' ' || line[s] == '\t' || line[s] == '\r'))
                        s++;
                if (s == len || line[s] == '#')
                        continue;
                if ((r = flat_line(p, line + s, len - s, lineno, err)) < 0)
                        return r == -ENOMEM ? vg_error_set(err, r, "allowlist: out of memory") : r;
        }
        lineno = 0;
        for (size_t off = 0; exclude && off < exclude_len;) {
                const char *line = exclude + off;
                const char *nl = memchr(line, '\n', exclude_len - off);
                size_t len = nl ? (size_t)(nl - line) : exclude_len - off;

                off += len + (nl ? 1 : 0);
                lineno++;
                while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
                        len--;
                if (!len || line[0] == '#')
                        continue;
                if (memchr(line, '\0', len) || !valid_utf8(line, len))
                        return vg_error_set(err, -EINVAL, "exclude list:%zu: not UTF-8 text",
                                            lineno);
                if ((r = add_exclude(p, &cap, line, len)) < 0)
                        return r;
        }
        if ((r = compile_excludes(p, "exclude list", err)) < 0)
                return r;
        if ((r = vg_hash_new(VG_HASH_SHA256, &sha)) < 0)
                return r;
        if (allowlist_len)
                vg_hash_update(sha, allowlist, allowlist_len);
        vg_hash_update(sha, "", 1);
        if (exclude_len)
                vg_hash_update(sha, exclude, exclude_len);
        r = vg_hash_final(sha, p->checksum);
        vg_hash_free(sha);
        if (r < 0)
                return r;
        *out = TAKE_PTR(p);
        return 0;
}

/* ---- Serialization ------------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
                switch (*c) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                default:
                        if (*c < 0x20)
                                fprintf(f, "\\u%04x", *c);
                        else
                                fputc(*c, f);
                }
        }
        fputc('"', f);
}

static void json_map(FILE *f, const struct vg_ima_map *m)
{
        fputc('{', f);
        for (size_t k = 0; k < m->count; k++) {
                const struct vg_ima_slot *s = &m->slots[m->order[k]];

                if (k)
                        fputs(", ", f);
                json_str(f, s->key);
                fputs(": [", f);
                for (uint32_t i = 0; i < s->n; i++) {
                        const struct vg_ima_digest *d = &m->digests[s->first + i];
                        fputs(i ? ", \"" : "\"", f);
                        for (size_t b = 0; b < d->len; b++)
                                fprintf(f, "%02x", d->d[b]);
                        fputc('"', f);
                }
                fputc(']', f);
        }
        fputc('}', f);
}

int vg_ima_policy_to_json(const struct vg_ima_policy *p, char **out, struct vg_error *err)
{
        char *text = NULL;
        size_t len;
        FILE *f = open_memstream(&text, &len);

        *out = NULL;
        if (!f)
                return vg_error_set(err, -ENOMEM, "runtime policy: out of memory");
        fprintf(f, "{\"meta\": {\"version\": %" PRId64 ", \"generator\": %" PRId64, p->meta_version,
                p->generator);
        if (p->timestamp) {
                fputs(", \"timestamp\": ", f);
                json_str(f, p->timestamp);
        }
        fprintf(f, "}, \"release\": %" PRId64 ", \"digests\": ", p->release);
        json_map(f, &p->digests);
        fputs(", \"excludes\": [", f);
        for (size_t i = 0; i < p->n_excludes; i++) {
                if (i)
                        fputs(", ", f);
                json_str(f, p->excludes[i]);
        }
        fputs("], \"keyrings\": ", f);
        json_map(f, &p->keyrings);
        fputs(", \"ima\": {\"ignored_keyrings\": [", f);
        for (size_t i = 0; i < p->n_ignored; i++) {
                if (i)
                        fputs(", ", f);
                json_str(f, p->ignored_keyrings[i]);
        }
        fprintf(f, "], \"log_hash_alg\": \"%s\", \"dm_policy\": null}, \"ima-buf\": ",
                vg_hash_alg_name(p->log_hash_alg));
        json_map(f, &p->imabuf);
        fputs(", \"verification-keys\": ", f);
        json_str(f, p->verification_keys ? p->verification_keys : "");
        fputc('}', f);
        if (fclose(f) != 0 || !text) {
                free(text);
                return vg_error_set(err, -ENOMEM, "runtime policy: out of memory");
        }
        *out = text;
        return 0;
}

/* ---- The cache ----------------------------------------------------------------------------- */

struct cache_entry {
        uint8_t sum[32];
        struct vg_ima_policy *p;
        uint64_t used; /* tick of the last get */
};

struct vg_ima_policy_cache {
        struct cache_entry *e;
        size_t n, cap, keep_unused, parses;
        uint64_t tick;
};

int vg_ima_policy_cache_new(size_t keep_unused, struct vg_ima_policy_cache **out)
{
        *out = calloc(1, sizeof(**out));
        if (!*out)
                return -ENOMEM;
        (*out)->keep_unused = keep_unused;
        return 0;
}

void vg_ima_policy_cache_free(struct vg_ima_policy_cache *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n; i++)
                vg_ima_policy_unref(c->e[i].p);
        free(c->e);
        free(c);
}

size_t vg_ima_policy_cache_parses(const struct vg_ima_policy_cache *c)
{
        return c->parses;
}

static bool cache_unused(const struct cache_entry *e)
{
        return __atomic_load_n(&e->p->refs, __ATOMIC_ACQUIRE) == 1;
}

/* Drop the least recently used unreferenced policies beyond keep_unused. */
static void cache_prune(struct vg_ima_policy_cache *c)
{
        for (;;) {
                size_t unused = 0, oldest = SIZE_MAX;

                for (size_t i = 0; i < c->n; i++) {
                        if (!cache_unused(&c->e[i]))
                                continue;
                        unused++;
                        if (oldest == SIZE_MAX || c->e[i].used < c->e[oldest].used)
                                oldest = i;
                }
                if (unused <= c->keep_unused)
                        return;
                vg_ima_policy_unref(c->e[oldest].p);
                c->e[oldest] = c->e[--c->n];
        }
}

int vg_ima_policy_cache_get(struct vg_ima_policy_cache *c, const char *json, size_t len,
                            struct vg_ima_policy **out, struct vg_error *err)
{
        uint8_t sum[32];
        struct vg_ima_policy *p;
        int r;

        *out = NULL;
        if ((r = vg_hash(VG_HASH_SHA256, json, len, sum)) < 0)
                return vg_error_set(err, r, "policy cache: cannot hash the policy");
        c->tick++;
        cache_prune(c);
        for (size_t i = 0; i < c->n; i++) {
                if (memcmp(c->e[i].sum, sum, 32) == 0) {
                        c->e[i].used = c->tick;
                        *out = vg_ima_policy_ref(c->e[i].p);
                        return 0;
                }
        }
        if ((r = vg_ima_policy_parse(json, len, &p, err)) < 0)
                return r;
        c->parses++;
        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 8;
                struct cache_entry *ne = reallocarray(c->e, cap, sizeof(*ne));
                if (!ne) {
                        vg_ima_policy_unref(p);
                        return vg_error_set(err, -ENOMEM, "policy cache: out of memory");
                }
                c->e = ne;
                c->cap = cap;
        }
        c->e[c->n++] = (struct cache_entry){ .p = p, .used = c->tick };
        memcpy(c->e[c->n - 1].sum, sum, 32);
        *out = vg_ima_policy_ref(p);
        return 0;
}
