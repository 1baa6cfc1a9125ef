/* vigil-responder: the rules file, integrity events and the matcher (rules.h).
 *
 * The rules file is TOML, but needs two things src/lib/toml.c deliberately refuses (arrays of
 * tables for [[rule]], inline tables for labels = { role = "web" }) and integer arrays (pcrs), so
 * this file has its own strict reader of that subset into a small tree, then checks the tree
 * against the rule schema. Everything else TOML has (floats, dates, multi-line strings, dotted
 * keys) is refused by name with FILE:LINE. */
#include "rules.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "encoding.h"
#include "toml.h"

/* ---- A TOML subset into a tree ---------------------------------------------------------- */

enum tv_type { TV_STR, TV_INT, TV_BOOL, TV_ARRAY, TV_TABLE };

struct tv {
        enum tv_type type;
        unsigned line;
        char *str;
        int64_t i;
        bool b;
        struct tv **items; /* array items, or table values (parallel to keys) */
        char **keys;
        size_t n;
        bool header_defined; /* a [header] named this table */
        bool fixed;          /* inline table or literal array: cannot be extended */
        bool aot;            /* array of tables ([[name]]) */
};

static void tv_free(struct tv *v)
{
        if (!v)
                return;
        free(v->str);
        for (size_t k = 0; k < v->n; k++) {
                tv_free(v->items[k]);
                if (v->keys)
                        free(v->keys[k]);
        }
        free(v->items);
        free(v->keys);
        free(v);
}
VG_DEFINE_CLEANUP_FUNC(struct tv, tv_free)

static struct tv *tv_new(enum tv_type type, unsigned line)
{
        struct tv *v = calloc(1, sizeof(*v));
        if (v) {
                v->type = type;
                v->line = line;
        }
        return v;
}

static struct tv *tv_get(const struct tv *t, const char *key)
{
        for (size_t k = 0; k < t->n; k++)
                if (strcmp(t->keys[k], key) == 0)
                        return t->items[k];
        return NULL;
}

/* Append (key may be NULL for arrays); takes ownership of v and key. */
static int tv_append(struct tv *t, char *key, struct tv *v)
{
        struct tv **items = reallocarray(t->items, t->n + 1, sizeof(*items));
        if (!items)
                return -ENOMEM;
        t->items = items;
        if (t->type == TV_TABLE) {
                char **keys = reallocarray(t->keys, t->n + 1, sizeof(*keys));
                if (!keys)
                        return -ENOMEM;
                t->keys = keys;
                t->keys[t->n] = key;
        }
        t->items[t->n++] = v;
        return 0;
}

struct tparser {
        const char *s;
        size_t len, pos;
        unsigned line;
        const char *file;
        struct vg_error *err;
        unsigned depth;
};

#define TP_MAX_DEPTH 16

static int tp_fail(struct tparser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tp_fail(struct tparser *p, const char *fmt, ...)
{
        char msg[400];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return vg_error_set(p->err, -EINVAL, "%s:%u: %s", p->file, p->line, msg);
}

static int tp_peek(const struct tparser *p)
{
        return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

/* What is at the cursor, for "found ..." in messages. */
static const char *tp_found(const struct tparser *p, char *buf, size_t len)
{
        int c = tp_peek(p);
        if (c < 0)
                return "the end of the file";
        if (c == '\n')
                return "the end of the line";
        if (c < 0x20 || c == 0x7f)
                snprintf(buf, len, "control character 0x%02x", c);
        else
                snprintf(buf, len, "'%c'", c);
        return buf;
}

static void tp_skip_ws(struct tparser *p)
{
        while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
                p->pos++;
}

static void tp_skip_comment(struct tparser *p)
{
        if (tp_peek(p) == '#')
                while (p->pos < p->len && p->s[p->pos] != '\n')
                        p->pos++;
}

/* Spaces, comments and newlines (inside arrays). */
static void tp_skip_all(struct tparser *p)
{
        for (;;) {
                tp_skip_ws(p);
                tp_skip_comment(p);
                if (tp_peek(p) == '\n') {
                        p->pos++;
                        p->line++;
                } else if (tp_peek(p) == '\r' && p->pos + 1 < p->len && p->s[p->pos + 1] == '\n') {
                        p->pos += 2;
                        p->line++;
                } else {
                        return;
                }
        }
}

/* After a value or header: spaces, an optional comment, then a newline or the end. */
static int tp_end_of_line(struct tparser *p)
{
        char buf[40];

        tp_skip_ws(p);
        tp_skip_comment(p);
        if (tp_peek(p) == '\r' && p->pos + 1 < p->len && p->s[p->pos + 1] == '\n')
                p->pos++;
        if (tp_peek(p) == '\n') {
                p->pos++;
                p->line++;
                return 0;
        }
        if (tp_peek(p) < 0)
                return 0;
        return tp_fail(p, "expected the end of the line, found %s", tp_found(p, buf, sizeof(buf)));
}

static bool is_bare(int c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
}

static int put_utf8(char *out, size_t *o, uint32_t cp)
{
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0)
                return -1;
        if (cp < 0x80) {
                out[(*o)++] = (char)cp;
        } else if (cp < 0x800) {
                out[(*o)++] = (char)(0xc0 | (cp >> 6));
                out[(*o)++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
                out[(*o)++] = (char)(0xe0 | (cp >> 12));
                out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[(*o)++] = (char)(0x80 | (cp & 0x3f));
        } else {
                out[(*o)++] = (char)(0xf0 | (cp >> 18));
                out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[(*o)++] = (char)(0x80 | (cp & 0x3f));
        }
        return 0;
}

/* A basic ("...") or literal ('...') single-line string at the cursor. */
static int tp_string(struct tparser *p, char **out)
{
        char q = p->s[p->pos];
        size_t start = ++p->pos, o = 0;
        _cleanup_free_ char *buf = NULL;

        if (p->pos + 1 < p->len && p->s[p->pos] == q && p->s[p->pos + 1] == q)
                return tp_fail(p, "multi-line strings are not supported");
        /* The decoded string is never longer than its source. */
        size_t end = start;
        while (end < p->len && p->s[end] != '\n')
                end++;
        buf = malloc(end - start + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                int c = tp_peek(p);
                if (c < 0 || c == '\n')
                        return tp_fail(p, "unterminated string");
                p->pos++;
                if (c == q)
                        break;
                if ((c < 0x20 && c != '\t') || c == 0x7f)
                        return tp_fail(p, "control character 0x%02x in a string", c);
                if (c != '\\' || q == '\'') {
                        buf[o++] = (char)c;
                        continue;
                }
                c = tp_peek(p);
                p->pos++;
                switch (c) {
                case '"':
                        buf[o++] = '"';
                        break;
                case '\\':
                        buf[o++] = '\\';
                        break;
                case 'b':
                        buf[o++] = '\b';
                        break;
                case 't':
                        buf[o++] = '\t';
                        break;
                case 'n':
                        buf[o++] = '\n';
                        break;
                case 'f':
                        buf[o++] = '\f';
                        break;
                case 'r':
                        buf[o++] = '\r';
                        break;
                case 'u':
                case 'U': {
                        unsigned n = c == 'u' ? 4 : 8;
                        uint32_t cp = 0;
                        for (unsigned k = 0; k < n; k++) {
                                int h = p->pos < p->len ? vg_hex_digit_value(p->s[p->pos]) : -1;
                                if (h < 0)
                                        return tp_fail(p, "expected %u hex digits after \\%c", n,
                                                       c);
                                cp = cp << 4 | (uint32_t)h;
                                p->pos++;
                        }
                        /* \U escapes take up to 10 source bytes for at most 4 UTF-8 bytes. */
                        if (put_utf8(buf, &o, cp) < 0)
                                return tp_fail(p,
                                               "\\%c%0*" PRIX32 " is not a Unicode scalar "
                                               "value (or is NUL)",
                                               c, (int)n, cp);
                        break;
                }
                default:
                        return tp_fail(p, "unknown escape \\%c in a string",
                                       c >= 0x20 && c < 0x7f ? c : '?');
                }
        }
        buf[o] = '\0';
        if (strlen(buf) != o)
                return tp_fail(p, "NUL in a string");
        *out = TAKE_PTR(buf);
        return 0;
}

static int tp_key(struct tparser *p, char **out)
{
        char buf[40];
        int c = tp_peek(p);

        if (c == '"' || c == '\'')
                return tp_string(p, out);
        size_t start = p->pos;
        while (p->pos < p->len && is_bare((unsigned char)p->s[p->pos]))
                p->pos++;
        if (p->pos == start)
                return tp_fail(p, "expected a key, found %s", tp_found(p, buf, sizeof(buf)));
        *out = strndup(p->s + start, p->pos - start);
        return *out ? 0 : -ENOMEM;
}

static int tp_value(struct tparser *p, struct tv **out);

static int tp_integer(struct tparser *p, struct tv **out)
{
        size_t start = p->pos;
        char digits[32];
        size_t n = 0;
        bool neg = false;

        if (tp_peek(p) == '+' || tp_peek(p) == '-')
                neg = p->s[p->pos++] == '-';
        while (p->pos < p->len && (isdigit((unsigned char)p->s[p->pos]) || p->s[p->pos] == '_')) {
                if (p->s[p->pos] != '_') {
                        if (n + 1 >= sizeof(digits))
                                return tp_fail(p, "integer out of range");
                        digits[n++] = p->s[p->pos];
                }
                p->pos++;
        }
        int c = tp_peek(p);
        if (c == '.' || c == 'e' || c == 'E' || c == ':' || c == '-' || c == 'T' || c == 'x' ||
            c == 'o' || c == 'b')
                return tp_fail(p, "only decimal integers are supported (no floats, dates or "
                                  "0x/0o/0b)");
        if (n == 0)
                return tp_fail(p, "expected a value, found '%.*s'", (int)(p->pos - start + 1),
                               p->s + start);
        digits[n] = '\0';
        errno = 0;
        long long v = strtoll(digits, NULL, 10);
        if (errno)
                return tp_fail(p, "integer out of range");
        *out = tv_new(TV_INT, p->line);
        if (!*out)
                return -ENOMEM;
        (*out)->i = neg ? -v : v;
        return 0;
}

static int tp_array(struct tparser *p, struct tv **out)
{
        _cleanup_(tv_freep) struct tv *a = tv_new(TV_ARRAY, p->line);
        char buf[40];
        int r;

        if (!a)
                return -ENOMEM;
        a->fixed = true;
        p->pos++; /* [ */
        for (;;) {
                tp_skip_all(p);
                if (tp_peek(p) == ']') {
                        p->pos++;
                        break;
                }
                struct tv *item = NULL;
                r = tp_value(p, &item);
                if (r < 0)
                        return r;
                if (tv_append(a, NULL, item) < 0) {
                        tv_free(item);
                        return -ENOMEM;
                }
                tp_skip_all(p);
                if (tp_peek(p) == ',') {
                        p->pos++;
                } else if (tp_peek(p) == ']') {
                        p->pos++;
                        break;
                } else {
                        return tp_fail(p, "expected ',' or ']' in an array, found %s",
                                       tp_found(p, buf, sizeof(buf)));
                }
        }
        *out = TAKE_PTR(a);
        return 0;
}

static int tp_inline_table(struct tparser *p, struct tv **out)
{
        _cleanup_(tv_freep) struct tv *t = tv_new(TV_TABLE, p->line);
        char buf[40];
        int r;

        if (!t)
                return -ENOMEM;
        t->fixed = true;
        p->pos++; /* { */
        tp_skip_ws(p);
        if (tp_peek(p) == '}') {
                p->pos++;
                *out = TAKE_PTR(t);
                return 0;
        }
        for (;;) {
                _cleanup_free_ char *key = NULL;
                struct tv *v = NULL;

                tp_skip_ws(p);
                r = tp_key(p, &key);
                if (r < 0)
                        return r;
                tp_skip_ws(p);
                if (tp_peek(p) == '.')
                        return tp_fail(p, "dotted keys are not supported");
                if (tp_peek(p) != '=')
                        return tp_fail(p, "expected '=' after key \"%s\", found %s", key,
                                       tp_found(p, buf, sizeof(buf)));
                p->pos++;
                tp_skip_ws(p);
                if (tv_get(t, key))
                        return tp_fail(p, "duplicate key \"%s\"", key);
                r = tp_value(p, &v);
                if (r < 0)
                        return r;
                if (tv_append(t, key, v) < 0) {
                        tv_free(v);
                        return -ENOMEM;
                }
                key = NULL;
                tp_skip_ws(p);
                if (tp_peek(p) == ',') {
                        p->pos++;
                } else if (tp_peek(p) == '}') {
                        p->pos++;
                        break;
                } else {
                        return tp_fail(p,
                                       "expected ',' or '}' in an inline table (one line), "
                                       "found %s",
                                       tp_found(p, buf, sizeof(buf)));
                }
        }
        *out = TAKE_PTR(t);
        return 0;
}

static int tp_value(struct tparser *p, struct tv **out)
{
        char buf[40];
        int c = tp_peek(p), r;

        if (p->depth >= TP_MAX_DEPTH)
                return tp_fail(p, "values nested more than %d deep", TP_MAX_DEPTH);
        p->depth++;
        if (c == '"' || c == '\'') {
                *out = tv_new(TV_STR, p->line);
                if (!*out)
                        r = -ENOMEM;
                else if ((r = tp_string(p, &(*out)->str)) < 0) {
                        tv_free(*out);
                        *out = NULL;
                }
        } else if (c == '[') {
                r = tp_array(p, out);
        } else if (c == '{') {
                r = tp_inline_table(p, out);
        } else if (p->len - p->pos >= 4 && memcmp(p->s + p->pos, "true", 4) == 0 &&
                   !(p->pos + 4 < p->len && is_bare((unsigned char)p->s[p->pos + 4]))) {
                p->pos += 4;
                *out = tv_new(TV_BOOL, p->line);
                r = *out ? ((*out)->b = true, 0) : -ENOMEM;
        } else if (p->len - p->pos >= 5 && memcmp(p->s + p->pos, "false", 5) == 0 &&
                   !(p->pos + 5 < p->len && is_bare((unsigned char)p->s[p->pos + 5]))) {
                p->pos += 5;
                *out = tv_new(TV_BOOL, p->line);
                r = *out ? 0 : -ENOMEM;
        } else if (c == '+' || c == '-' || (c >= '0' && c <= '9')) {
                r = tp_integer(p, out);
        } else {
                r = tp_fail(p,
                            "expected a value (string, integer, boolean, array or inline "
                            "table), found %s",
                            tp_found(p, buf, sizeof(buf)));
        }
        p->depth--;
        return r;
}

/* [a.b] or [[a.b]]: walk from root, creating implicit tables; returns the table to fill. */
static int tp_header(struct tparser *p, struct tv *root, struct tv **cur)
{
        bool aot = p->pos + 1 < p->len && p->s[p->pos + 1] == '[';
        struct tv *t = root;
        char buf[40];
        int r;

        p->pos += aot ? 2 : 1;
        for (unsigned depth = 0;; depth++) {
                _cleanup_free_ char *key = NULL;

                if (depth >= TP_MAX_DEPTH)
                        return tp_fail(p, "table name with more than %d parts", TP_MAX_DEPTH);
                tp_skip_ws(p);
                r = tp_key(p, &key);
                if (r < 0)
                        return r;
                tp_skip_ws(p);
                bool last = tp_peek(p) != '.';
                struct tv *next = tv_get(t, key);

                if (!last) {
                        p->pos++;
                        if (!next) {
                                next = tv_new(TV_TABLE, p->line);
                                if (!next || tv_append(t, key, next) < 0) {
                                        tv_free(next);
                                        return -ENOMEM;
                                }
                                key = NULL;
                        } else if (next->type == TV_ARRAY && next->aot) {
                                next = next->items[next->n - 1];
                        } else if (next->type != TV_TABLE || next->fixed) {
                                return tp_fail(p, "\"%s\" is already defined as a value", key);
                        }
                        t = next;
                        continue;
                }
                if (aot) {
                        if (!next) {
                                next = tv_new(TV_ARRAY, p->line);
                                if (!next || tv_append(t, key, next) < 0) {
                                        tv_free(next);
                                        return -ENOMEM;
                                }
                                key = NULL;
                                next->aot = true;
                        } else if (next->type != TV_ARRAY || !next->aot) {
                                return tp_fail(p, "[[%s]]: \"%s\" is already defined as %s", key,
                                               key, next->type == TV_TABLE ? "a table" : "a value");
                        }
                        struct tv *elem = tv_new(TV_TABLE, p->line);
                        if (!elem || tv_append(next, NULL, elem) < 0) {
                                tv_free(elem);
                                return -ENOMEM;
                        }
                        elem->header_defined = true;
                        t = elem;
                } else {
                        if (!next) {
                                next = tv_new(TV_TABLE, p->line);
                                if (!next || tv_append(t, key, next) < 0) {
                                        tv_free(next);
                                        return -ENOMEM;
                                }
                                key = NULL;
                        } else if (next->type != TV_TABLE || next->fixed) {
                                return tp_fail(p, "[%s]: \"%s\" is already defined as %s", key, key,
                                               next->type == TV_ARRAY ? "an array" : "a value");
                        } else if (next->header_defined) {
                                return tp_fail(p, "table [%s] defined twice (first at line %u)",
                                               key, next->line);
                        }
                        next->header_defined = true;
                        next->line = p->line;
                        t = next;
                }
                break;
        }
        if (tp_peek(p) != ']' || (aot && (p->pos + 1 >= p->len || p->s[p->pos + 1] != ']')))
                return tp_fail(p, "expected '%s' to close the table header, found %s",
                               aot ? "]]" : "]", tp_found(p, buf, sizeof(buf)));
        p->pos += aot ? 2 : 1;
        *cur = t;
        return tp_end_of_line(p);
}

static int tp_document(const char *text, size_t len, const char *file, struct tv **out,
                       struct vg_error *err)
{
        struct tparser p = { .s = text, .len = len, .line = 1, .file = file, .err = err };
        _cleanup_(tv_freep) struct tv *root = tv_new(TV_TABLE, 1);
        struct tv *cur;
        char buf[40];
        int r;

        if (!root)
                return -ENOMEM;
        if (memchr(text, '\0', len))
                return vg_error_set(err, -EINVAL, "%s: contains a NUL byte", file);
        if (!vg_toml_utf8_valid(text, len))
                return vg_error_set(err, -EINVAL, "%s: not valid UTF-8", file);
        cur = root;
        for (;;) {
                tp_skip_all(&p);
                int c = tp_peek(&p);
                if (c < 0)
                        break;
                if (c == '[') {
                        r = tp_header(&p, root, &cur);
                        if (r < 0)
                                return r;
                        continue;
                }
                _cleanup_free_ char *key = NULL;
                struct tv *v = NULL;
                unsigned line = p.line;

                r = tp_key(&p, &key);
                if (r < 0)
                        return r;
                tp_skip_ws(&p);
                if (tp_peek(&p) == '.')
                        return tp_fail(&p, "dotted keys are not supported: write a [table] "
                                           "or an inline table");
                if (tp_peek(&p) != '=')
                        return tp_fail(&p, "expected '=' after key \"%s\", found %s", key,
                                       tp_found(&p, buf, sizeof(buf)));
                p.pos++;
                tp_skip_ws(&p);
                if (tv_get(cur, key))
                        return tp_fail(&p, "duplicate key \"%s\"", key);
                r = tp_value(&p, &v);
                if (r < 0)
                        return r;
                v->line = line;
                if (tv_append(cur, key, v) < 0) {
                        tv_free(v);
                        return -ENOMEM;
                }
                key = NULL;
                r = tp_end_of_line(&p);
                if (r < 0)
                        return r;
        }
        *out = TAKE_PTR(root);
        return 0;
}

/* ---- The rule schema -------------------------------------------------------------------- */

static const char *const event_type_names[] = {
        [VG_RESP_EV_EARLY_BOOT] = "earlyBootReportEvent",
        [VG_RESP_EV_LATE_BOOT] = "lateBootReportEvent",
        [VG_RESP_EV_RUNTIME] = "runtimeReportEvent",
        [VG_RESP_EV_RELEARN] = "relearnEvent",
        [VG_RESP_EV_OTHER] = "other",
};

const char *vg_resp_event_type_name(enum vg_resp_event_type t)
{
        return (unsigned)t < VG_ARRAY_SIZE(event_type_names) ? event_type_names[t] : "?";
}

int vg_resp_event_type_from_name(const char *s, enum vg_resp_event_type *out)
{
        for (unsigned t = 0; t < VG_RESP_EV_COUNT; t++)
                if (strcmp(s, event_type_names[t]) == 0) {
                        *out = (enum vg_resp_event_type)t;
                        return 0;
                }
        return -EINVAL;
}

static const struct {
        const char *name;
        int level;
} severities[] = {
        { "DEFAULT", 0 },    { "DEBUG", 100 },   { "INFO", 200 },
        { "NOTICE", 300 },   { "WARNING", 400 }, { "ERROR", 500 },
        { "CRITICAL", 600 }, { "ALERT", 700 },   { "EMERGENCY", 800 },
};

int vg_resp_severity_from_name(const char *s)
{
        for (size_t k = 0; k < VG_ARRAY_SIZE(severities); k++)
                if (strcasecmp(s, severities[k].name) == 0)
                        return severities[k].level;
        return -1;
}

static const char *const action_type_names[] = {
        [VG_RESP_ACT_EXEC] = "exec",
        [VG_RESP_ACT_WEBHOOK] = "webhook",
        [VG_RESP_ACT_RELEARN] = "relearn-if-known-good",
        [VG_RESP_ACT_REPROVISION] = "reprovision",
        [VG_RESP_ACT_NOTIFY] = "notify",
};

const char *vg_resp_action_type_name(enum vg_resp_action_type t)
{
        return (unsigned)t < VG_ARRAY_SIZE(action_type_names) ? action_type_names[t] : "?";
}

static const char *tv_type_name(const struct tv *v)
{
        switch (v->type) {
        case TV_STR:
                return "a string";
        case TV_INT:
                return "an integer";
        case TV_BOOL:
                return "a boolean";
        case TV_ARRAY:
                return "an array";
        case TV_TABLE:
                return "a table";
        }
        return "?";
}

static void free_strv(char **v)
{
        if (v)
                for (char **p = v; *p; p++)
                        free(*p);
        free(v);
}

void vg_rules_free(struct vg_rules *rules)
{
        if (!rules)
                return;
        for (size_t k = 0; k < rules->n_rules; k++) {
                struct vg_resp_rule *r = &rules->rules[k];
                free(r->name);
                free_strv(r->label_keys);
                free_strv(r->label_values);
                free(r->actions);
        }
        for (size_t k = 0; k < rules->n_actions; k++) {
                struct vg_resp_action *a = &rules->actions[k];
                free(a->name);
                free_strv(a->command);
                free(a->url);
                free(a->secret);
                free(a->ca_file);
                free(a->verifier);
                free(a->client_cert);
                free(a->client_key);
        }
        free(rules->rules);
        free(rules->actions);
        free(rules->file);
        free(rules);
}

const struct vg_resp_action *vg_rules_action(const struct vg_rules *rules, const char *name)
{
        for (size_t k = 0; k < rules->n_actions; k++)
                if (strcmp(rules->actions[k].name, name) == 0)
                        return &rules->actions[k];
        return NULL;
}

/* Context for messages: "FILE:LINE: action \"x\": " */
struct sctx {
        const char *file;
        const char *what; /* "action" or "rule" */
        const char *name;
        struct vg_error *err;
};

static int s_fail(const struct sctx *c, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_fail(const struct sctx *c, unsigned line, const char *fmt, ...)
{
        char msg[400];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return vg_error_set(c->err, -EINVAL, "%s:%u: %s \"%s\": %s", c->file, line, c->what,
                            c->name, msg);
}

static int s_string(const struct sctx *c, const char *key, const struct tv *v, char **out)
{
        if (v->type != TV_STR)
                return s_fail(c, v->line, "%s: expected a string, found %s", key, tv_type_name(v));
        *out = strdup(v->str);
        return *out ? 0 : -ENOMEM;
}

static int s_uint(const struct sctx *c, const char *key, const struct tv *v, int64_t min,
                  int64_t max, unsigned *out)
{
        if (v->type != TV_INT)
                return s_fail(c, v->line, "%s: expected an integer, found %s", key,
                              tv_type_name(v));
        if (v->i < min || v->i > max)
                return s_fail(c, v->line, "%s: expected %" PRId64 " to %" PRId64 ", found %" PRId64,
                              key, min, max, v->i);
        *out = (unsigned)v->i;
        return 0;
}

static int s_strv(const struct sctx *c, const char *key, const struct tv *v, bool nonempty,
                  char ***out)
{
        if (v->type != TV_ARRAY)
                return s_fail(c, v->line, "%s: expected an array of strings, found %s", key,
                              tv_type_name(v));
        if (nonempty && v->n == 0)
                return s_fail(c, v->line, "%s: expected at least one element", key);
        char **s = calloc(v->n + 1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        for (size_t k = 0; k < v->n; k++) {
                if (v->items[k]->type != TV_STR) {
                        free_strv(s);
                        return s_fail(c, v->items[k]->line, "%s[%zu]: expected a string, found %s",
                                      key, k, tv_type_name(v->items[k]));
                }
                if (!(s[k] = strdup(v->items[k]->str))) {
                        free_strv(s);
                        return -ENOMEM;
                }
        }
        *out = s;
        return 0;
}

static bool valid_name(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 64)
                return false;
        for (; *s; s++)
                if (!is_bare((unsigned char)*s) && *s != '.')
                        return false;
        return true;
}

static bool url_ok(const char *u)
{
        return strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0;
}

static int parse_action(const char *file, const char *name, const struct tv *t,
                        struct vg_resp_action *a, struct vg_error *err)
{
        struct sctx c = { .file = file, .what = "action", .name = name, .err = err };
        const struct tv *type = tv_get(t, "type");
        unsigned timeout = 0;
        bool has_timeout = false;
        int r;

        a->line = t->line;
        if (!valid_name(name))
                return s_fail(&c, t->line, "names are 1 to 64 of A-Z a-z 0-9 _ - .");
        if (!(a->name = strdup(name)))
                return -ENOMEM;
        if (t->type != TV_TABLE)
                return s_fail(&c, t->line, "expected a table [action.%s], found %s", name,
                              tv_type_name(t));
        if (!type)
                return s_fail(&c, t->line,
                              "missing type (exec, webhook, relearn-if-known-good, "
                              "reprovision or notify)");
        if (type->type != TV_STR)
                return s_fail(&c, type->line, "type: expected a string, found %s",
                              tv_type_name(type));
        size_t k;
        for (k = 0; k < VG_ARRAY_SIZE(action_type_names); k++)
                if (strcmp(type->str, action_type_names[k]) == 0)
                        break;
        if (k == VG_ARRAY_SIZE(action_type_names))
                return s_fail(&c, type->line,
                              "type: expected exec, webhook, "
                              "relearn-if-known-good, reprovision or notify, "
                              "found \"%s\"",
                              type->str);
        a->type = (enum vg_resp_action_type)k;
        a->retries = 3;
        a->retry_delay_ms = 1000;
        a->max_attempts = 3;

        /* Which keys each type takes. */
        static const char *const keys[][12] = {
                [VG_RESP_ACT_EXEC] = { "type", "command", "timeout" },
                [VG_RESP_ACT_WEBHOOK] = { "type", "url", "secret", "ca", "retries",
                                          "retry_delay_ms", "timeout" },
                [VG_RESP_ACT_RELEARN] = { "type", "verifier", "ca", "client_cert", "client_key",
                                          "timeout" },
                [VG_RESP_ACT_REPROVISION] = { "type", "command", "max_attempts", "then",
                                              "timeout" },
                [VG_RESP_ACT_NOTIFY] = { "type", "command", "url", "secret", "ca", "retries",
                                         "retry_delay_ms", "timeout" },
        };
        for (size_t i = 0; i < t->n; i++) {
                const char *key = t->keys[i];
                const struct tv *v = t->items[i];
                bool known = false;
                for (size_t j = 0; j < VG_ARRAY_SIZE(keys[0]) && keys[a->type][j]; j++)
                        known |= strcmp(keys[a->type][j], key) == 0;
                if (!known) {
                        char list[200] = "";
                        for (size_t j = 0; j < VG_ARRAY_SIZE(keys[0]) && keys[a->type][j]; j++)
                                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                                         j ? ", " : "", keys[a->type][j]);
                        return s_fail(&c, v->line, "unknown key \"%s\" for type %s (expected %s)",
                                      key, type->str, list);
                }
                if (strcmp(key, "type") == 0 || strcmp(key, "then") == 0)
                        r = 0; /* resolved later */
                else if (strcmp(key, "command") == 0)
                        r = s_strv(&c, key, v, true, &a->command);
                else if (strcmp(key, "timeout") == 0)
                        r = s_uint(&c, key, v, 1, 86400, &timeout), has_timeout = true;
                else if (strcmp(key, "url") == 0)
                        r = s_string(&c, key, v, &a->url);
                else if (strcmp(key, "secret") == 0)
                        r = s_string(&c, key, v, &a->secret);
                else if (strcmp(key, "ca") == 0)
                        r = s_string(&c, key, v, &a->ca_file);
                else if (strcmp(key, "retries") == 0)
                        r = s_uint(&c, key, v, 0, 20, &a->retries);
                else if (strcmp(key, "retry_delay_ms") == 0)
                        r = s_uint(&c, key, v, 0, 600000, &a->retry_delay_ms);
                else if (strcmp(key, "verifier") == 0)
                        r = s_string(&c, key, v, &a->verifier);
                else if (strcmp(key, "client_cert") == 0)
                        r = s_string(&c, key, v, &a->client_cert);
                else if (strcmp(key, "client_key") == 0)
                        r = s_string(&c, key, v, &a->client_key);
                else if (strcmp(key, "max_attempts") == 0)
                        r = s_uint(&c, key, v, 1, 1000, &a->max_attempts);
                else
                        r = 0;
                if (r < 0)
                        return r;
        }
        a->timeout_s = has_timeout ? timeout : a->type == VG_RESP_ACT_REPROVISION ? 600 : 60;
        if ((a->type == VG_RESP_ACT_EXEC || a->type == VG_RESP_ACT_REPROVISION) && !a->command)
                return s_fail(&c, t->line, "missing command (an array: [\"program\", \"arg\"])");
        if (a->type == VG_RESP_ACT_WEBHOOK && !a->url)
                return s_fail(&c, t->line, "missing url");
        if (a->type == VG_RESP_ACT_NOTIFY && !a->url == !a->command)
                return s_fail(&c, t->line,
                              "a notify action has either a command (run it) or a "
                              "url (POST to it), not %s",
                              a->url ? "both" : "neither");
        if (a->url && !url_ok(a->url))
                return s_fail(&c, tv_get(t, "url")->line,
                              "url: expected http:// or https://, found \"%s\"", a->url);
        if (a->verifier && !url_ok(a->verifier))
                return s_fail(&c, tv_get(t, "verifier")->line,
                              "verifier: expected http:// or https://, found \"%s\"", a->verifier);
        if (!!a->client_cert != !!a->client_key)
                return s_fail(&c, t->line, "client_cert and client_key go together");
        return 0;
}

static int resolve_then(const char *file, const struct tv *t, struct vg_rules *rules,
                        struct vg_resp_action *a, struct vg_error *err)
{
        struct sctx c = { .file = file, .what = "action", .name = a->name, .err = err };
        const struct tv *then = tv_get(t, "then");

        if (!then)
                return 0;
        if (then->type != TV_STR)
                return s_fail(&c, then->line, "then: expected an action name, found %s",
                              tv_type_name(then));
        const struct vg_resp_action *target = vg_rules_action(rules, then->str);
        if (!target)
                return s_fail(&c, then->line, "then: no action named \"%s\"", then->str);
        if (target->type == VG_RESP_ACT_REPROVISION || target->type == VG_RESP_ACT_RELEARN)
                return s_fail(&c, then->line,
                              "then: \"%s\" is a %s action; expected exec, webhook or notify",
                              then->str, vg_resp_action_type_name(target->type));
        a->then = target;
        return 0;
}

static int parse_rule(const char *file, size_t index, const struct tv *t, struct vg_rules *rules,
                      struct vg_resp_rule *rule, struct vg_error *err)
{
        char idx[32];
        struct sctx c = { .file = file, .what = "rule", .name = idx, .err = err };
        const struct tv *name = tv_get(t, "name"), *actions;
        int r;

        snprintf(idx, sizeof(idx), "#%zu", index + 1);
        rule->line = t->line;
        rule->passed = -1;
        rule->min_severity = -1;
        if (!name)
                return s_fail(&c, t->line, "missing name");
        if (name->type != TV_STR || !valid_name(name->str))
                return s_fail(&c, name->line, "name: expected 1 to 64 of A-Z a-z 0-9 _ - .");
        if (!(rule->name = strdup(name->str)))
                return -ENOMEM;
        c.name = rule->name;
        for (size_t k = 0; k < index; k++)
                if (strcmp(rules->rules[k].name, rule->name) == 0)
                        return s_fail(&c, name->line, "name already used by the rule at line %u",
                                      rules->rules[k].line);

        for (size_t i = 0; i < t->n; i++) {
                const char *key = t->keys[i];
                const struct tv *v = t->items[i];

                if (strcmp(key, "name") == 0 || strcmp(key, "actions") == 0 ||
                    strcmp(key, "description") == 0) {
                        if (v->type != TV_STR && strcmp(key, "actions") != 0)
                                return s_fail(&c, v->line, "%s: expected a string, found %s", key,
                                              tv_type_name(v));
                } else if (strcmp(key, "event") == 0) {
                        size_t n = v->type == TV_ARRAY ? v->n : 1;
                        if (v->type != TV_STR && v->type != TV_ARRAY)
                                return s_fail(&c, v->line,
                                              "event: expected a string or an "
                                              "array of strings, found %s",
                                              tv_type_name(v));
                        for (size_t k = 0; k < n; k++) {
                                const struct tv *e = v->type == TV_ARRAY ? v->items[k] : v;
                                enum vg_resp_event_type et;
                                if (e->type != TV_STR ||
                                    vg_resp_event_type_from_name(e->str, &et) < 0)
                                        return s_fail(&c, e->line,
                                                      "event: expected earlyBootReportEvent, "
                                                      "lateBootReportEvent, runtimeReportEvent "
                                                      "or relearnEvent, found %s%s%s",
                                                      e->type == TV_STR ? "\"" : "",
                                                      e->type == TV_STR ? e->str : tv_type_name(e),
                                                      e->type == TV_STR ? "\"" : "");
                                rule->events |= 1u << et;
                        }
                } else if (strcmp(key, "passed") == 0) {
                        if (v->type != TV_BOOL)
                                return s_fail(&c, v->line,
                                              "passed: expected true or false, "
                                              "found %s",
                                              tv_type_name(v));
                        rule->passed = v->b;
                } else if (strcmp(key, "final") == 0) {
                        if (v->type != TV_BOOL)
                                return s_fail(&c, v->line,
                                              "final: expected true or false, "
                                              "found %s",
                                              tv_type_name(v));
                        rule->final = v->b;
                } else if (strcmp(key, "pcrs") == 0) {
                        if (v->type != TV_ARRAY || v->n == 0)
                                return s_fail(&c, v->line,
                                              "pcrs: expected a non-empty array of "
                                              "PCR numbers, found %s",
                                              v->type == TV_ARRAY ? "[]" : tv_type_name(v));
                        for (size_t k = 0; k < v->n; k++) {
                                const struct tv *e = v->items[k];
                                if (e->type != TV_INT || e->i < 0 || e->i > VG_RESP_MAX_PCR)
                                        return s_fail(&c, e->line,
                                                      "pcrs[%zu]: expected a PCR number 0 to %d", k,
                                                      VG_RESP_MAX_PCR);
                                rule->pcrs |= 1u << e->i;
                        }
                } else if (strcmp(key, "min_severity") == 0) {
                        if (v->type != TV_STR ||
                            (rule->min_severity = vg_resp_severity_from_name(v->str)) < 0)
                                return s_fail(&c, v->line,
                                              "min_severity: expected INFO, NOTICE, WARNING, "
                                              "ERROR or CRITICAL (or another Cloud Logging "
                                              "severity)");
                } else if (strcmp(key, "labels") == 0) {
                        if (v->type != TV_TABLE)
                                return s_fail(&c, v->line,
                                              "labels: expected a table ({ role = "
                                              "\"web\" } or [rule.labels]), found %s",
                                              tv_type_name(v));
                        rule->label_keys = calloc(v->n + 1, sizeof(char *));
                        rule->label_values = calloc(v->n + 1, sizeof(char *));
                        if (!rule->label_keys || !rule->label_values)
                                return -ENOMEM;
                        for (size_t k = 0; k < v->n; k++) {
                                if (v->items[k]->type != TV_STR)
                                        return s_fail(&c, v->items[k]->line,
                                                      "labels.%s: expected a string, found %s",
                                                      v->keys[k], tv_type_name(v->items[k]));
                                if (!(rule->label_keys[k] = strdup(v->keys[k])) ||
                                    !(rule->label_values[k] = strdup(v->items[k]->str)))
                                        return -ENOMEM;
                        }
                } else {
                        return s_fail(&c, v->line,
                                      "unknown key \"%s\" (expected name, description, event, "
                                      "passed, pcrs, min_severity, labels, actions, final)",
                                      key);
                }
        }
        actions = tv_get(t, "actions");
        if (!actions)
                return s_fail(&c, t->line, "missing actions (an array of action names)");
        if (actions->type != TV_ARRAY || actions->n == 0)
                return s_fail(&c, actions->line,
                              "actions: expected a non-empty array of action "
                              "names");
        rule->actions = calloc(actions->n + 1, sizeof(*rule->actions));
        if (!rule->actions)
                return -ENOMEM;
        for (size_t k = 0; k < actions->n; k++) {
                const struct tv *e = actions->items[k];
                if (e->type != TV_STR)
                        return s_fail(&c, e->line,
                                      "actions[%zu]: expected an action name, found %s", k,
                                      tv_type_name(e));
                const struct vg_resp_action *a = vg_rules_action(rules, e->str);
                if (!a) {
                        char list[256] = "";
                        for (size_t j = 0; j < rules->n_actions; j++)
                                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                                         j ? ", " : "", rules->actions[j].name);
                        return s_fail(&c, e->line,
                                      "actions[%zu]: no action named \"%s\" "
                                      "(defined: %s)",
                                      k, e->str, list[0] ? list : "none");
                }
                for (size_t j = 0; j < k; j++)
                        if (rule->actions[j] == a)
                                return s_fail(&c, e->line, "actions[%zu]: \"%s\" listed twice", k,
                                              e->str);
                rule->actions[rule->n_actions++] = a;
        }
        (void)r;
        return 0;
}

int vg_rules_parse(const char *text, size_t len, const char *filename, struct vg_rules **out,
                   struct vg_error *err)
{
        _cleanup_(tv_freep) struct tv *root = NULL;
        _cleanup_(vg_rules_freep) struct vg_rules *rules = NULL;
        const struct tv *rule_arr, *action_tab;
        int r;

        *out = NULL;
        if (len > VG_RULES_MAX_FILE_SIZE)
                return vg_error_set(err, -EFBIG, "%s: larger than %d bytes", filename,
                                    VG_RULES_MAX_FILE_SIZE);
        r = tp_document(text, len, filename, &root, err);
        if (r < 0)
                return r;
        rules = calloc(1, sizeof(*rules));
        if (!rules || !(rules->file = strdup(filename)))
                return -ENOMEM;
        for (size_t k = 0; k < root->n; k++)
                if (strcmp(root->keys[k], "rule") != 0 && strcmp(root->keys[k], "action") != 0)
                        return vg_error_set(err, -EINVAL,
                                            "%s:%u: unknown top-level key \"%s\" (expected "
                                            "[[rule]] and [action.NAME] tables)",
                                            filename, root->items[k]->line, root->keys[k]);
        action_tab = tv_get(root, "action");
        rule_arr = tv_get(root, "rule");
        if (action_tab) {
                if (action_tab->type != TV_TABLE)
                        return vg_error_set(err, -EINVAL,
                                            "%s:%u: action: expected [action.NAME] tables, "
                                            "found %s",
                                            filename, action_tab->line, tv_type_name(action_tab));
                rules->actions = calloc(action_tab->n ? action_tab->n : 1, sizeof(*rules->actions));
                if (!rules->actions)
                        return -ENOMEM;
                for (size_t k = 0; k < action_tab->n; k++) {
                        rules->n_actions++;
                        r = parse_action(filename, action_tab->keys[k], action_tab->items[k],
                                         &rules->actions[k], err);
                        if (r < 0)
                                return r;
                }
                for (size_t k = 0; k < action_tab->n; k++) {
                        r = resolve_then(filename, action_tab->items[k], rules, &rules->actions[k],
                                         err);
                        if (r < 0)
                                return r;
                }
        }
        if (!rule_arr)
                return vg_error_set(err, -EINVAL,
                                    "%s: no [[rule]] table: nothing would ever "
                                    "be done",
                                    filename);
        if (rule_arr->type != TV_ARRAY || !rule_arr->aot)
                return vg_error_set(err, -EINVAL, "%s:%u: rule: expected [[rule]] tables, found %s",
                                    filename, rule_arr->line, tv_type_name(rule_arr));
        rules->rules = calloc(rule_arr->n, sizeof(*rules->rules));
        if (!rules->rules)
                return -ENOMEM;
        for (size_t k = 0; k < rule_arr->n; k++) {
                rules->n_rules++;
                r = parse_rule(filename, k, rule_arr->items[k], rules, &rules->rules[k], err);
                if (r < 0)
                        return r;
        }
        *out = TAKE_PTR(rules);
        return 0;
}

int vg_rules_load(const char *path, struct vg_rules **out, struct vg_error *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t got = 0;

        *out = NULL;
        if (fd < 0)
                return vg_error_set(err, -errno, "%s: cannot open the rules file: %s", path,
                                    strerror(errno));
        if (fstat(fd, &st) < 0)
                return vg_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return vg_error_set(err, -EINVAL, "%s: not a regular file", path);
        if (st.st_size > VG_RULES_MAX_FILE_SIZE)
                return vg_error_set(err, -EFBIG, "%s: larger than %d bytes", path,
                                    VG_RULES_MAX_FILE_SIZE);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return vg_error_set(err, n < 0 ? -errno : -EIO, "%s: read failed", path);
                got += (size_t)n;
        }
        return vg_rules_parse(buf, got, path, out, err);
}

/* ---- Events ----------------------------------------------------------------------------- */

void vg_resp_event_free(struct vg_resp_event *ev)
{
        if (!ev)
                return;
        json_decref(ev->json);
        free(ev);
}

static int ev_fail(struct vg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int ev_fail(struct vg_error *err, const char *fmt, ...)
{
        char msg[480];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return vg_error_set(err, -EINVAL, "malformed event: %s", msg);
}

static const char *jtype(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
                return "an integer";
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        }
        return "?";
}

/* An identifier that goes into logs, file names of nothing, env and SQL parameters: 1 to 128
 * printable ASCII characters. */
static bool printable_id(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 128)
                return false;
        for (; *s; s++)
                if (*s <= 0x20 || *s >= 0x7f)
                        return false;
        return true;
}

struct meas {
        int alg; /* digest size in bytes */
        char alg_name[8];
        unsigned pcr;
        uint8_t digest[64];
};

static int parse_measurements(const char *path, const json_t *arr, struct meas **out, size_t *n,
                              struct vg_error *err)
{
        static const struct {
                const char *name;
                int size;
        } algs[] = { { "SHA1", 20 }, { "SHA256", 32 }, { "SHA384", 48 }, { "SHA512", 64 } };
        size_t i;
        json_t *m;

        *out = NULL;
        *n = 0;
        if (!arr)
                return 0;
        if (!json_is_array(arr))
                return ev_fail(err, "%s: expected an array, found %s", path, jtype(arr));
        if (json_array_size(arr) > 24 * 4)
                return ev_fail(err, "%s: %zu measurements (at most %d)", path, json_array_size(arr),
                               24 * 4);
        *out = calloc(json_array_size(arr) + 1, sizeof(**out));
        if (!*out)
                return -ENOMEM;
        json_array_foreach (arr, i, m) {
                struct meas *x = &(*out)[i];
                const json_t *alg = json_object_get(m, "hashAlgo");
                const json_t *pcr = json_object_get(m, "pcrNum");
                const json_t *val = json_object_get(m, "value");
                size_t k;

                if (!json_is_object(m))
                        return ev_fail(err, "%s[%zu]: expected an object, found %s", path, i,
                                       jtype(m));
                if (!json_is_string(alg))
                        return ev_fail(err,
                                       "%s[%zu].hashAlgo: expected SHA1, SHA256, SHA384 or "
                                       "SHA512",
                                       path, i);
                for (k = 0; k < VG_ARRAY_SIZE(algs); k++)
                        if (strcmp(json_string_value(alg), algs[k].name) == 0)
                                break;
                if (k == VG_ARRAY_SIZE(algs))
                        return ev_fail(err,
                                       "%s[%zu].hashAlgo: expected SHA1, SHA256, SHA384 or "
                                       "SHA512, found \"%.32s\"",
                                       path, i, json_string_value(alg));
                x->alg = algs[k].size;
                snprintf(x->alg_name, sizeof(x->alg_name), "%s", algs[k].name);
                const char *ps = json_is_string(pcr) ? json_string_value(pcr) : "";
                char *end = NULL;
                unsigned long num = 0;
                if (strncmp(ps, "PCR_", 4) == 0 && isdigit((unsigned char)ps[4]))
                        num = strtoul(ps + 4, &end, 10);
                if (!end || *end || num > VG_RESP_MAX_PCR || (ps[4] == '0' && ps[5]))
                        return ev_fail(err,
                                       "%s[%zu].pcrNum: expected \"PCR_<0-%d>\", found %s%.32s%s",
                                       path, i, VG_RESP_MAX_PCR, json_is_string(pcr) ? "\"" : "",
                                       json_is_string(pcr) ? ps
                                       : pcr               ? jtype(pcr)
                                                           : "nothing",
                                       json_is_string(pcr) ? "\"" : "");
                x->pcr = (unsigned)num;
                if (!json_is_string(val))
                        return ev_fail(err, "%s[%zu].value: expected a base64 string, found %s",
                                       path, i, val ? jtype(val) : "nothing");
                _cleanup_free_ uint8_t *d = NULL;
                size_t dlen = 0;
                if (vg_b64_decode(json_string_value(val), json_string_length(val), VG_B64_STD, &d,
                                  &dlen) < 0 ||
                    dlen != (size_t)x->alg)
                        return ev_fail(err,
                                       "%s[%zu].value: expected the standard base64 of a "
                                       "%d-byte %s digest",
                                       path, i, x->alg, x->alg_name);
                memcpy(x->digest, d, dlen);
                for (size_t j = 0; j < i; j++)
                        if ((*out)[j].pcr == x->pcr && (*out)[j].alg == x->alg)
                                return ev_fail(err, "%s[%zu]: %s %s appears twice", path, i,
                                               x->alg_name, ps);
        }
        *n = json_array_size(arr);
        return 0;
}

/* Bit n set when PCR n differs between a and b in some bank (present in one only counts). */
static uint32_t diff_pcrs(const struct meas *a, size_t na, const struct meas *b, size_t nb)
{
        uint32_t mask = 0;

        for (int pass = 0; pass < 2; pass++) {
                const struct meas *x = pass ? b : a, *y = pass ? a : b;
                size_t nx = pass ? nb : na, ny = pass ? na : nb;
                for (size_t i = 0; i < nx; i++) {
                        bool same = false;
                        for (size_t j = 0; j < ny; j++)
                                if (y[j].pcr == x[i].pcr && y[j].alg == x[i].alg)
                                        same =
                                            memcmp(x[i].digest, y[j].digest, (size_t)x[i].alg) == 0;
                        if (!same)
                                mask |= 1u << x[i].pcr;
                }
        }
        return mask;
}

static const char *const gce_other_kinds[] = {
        "startupEvent",
        "shutdownEvent",
        "clearTPMEvent",
        "setShieldedInstanceIntegrityPolicy",
        "updateShieldedInstanceConfig",
        "sevLaunchAttestationReportEvent",
};

/* GCE's log entry -> vigil's flat form (contract §1): agentId := resource.labels.instance_id,
 * eventId := insertId, severity from the entry, labels := resource.labels. */
static int from_gce(json_t *entry, json_t **out, struct vg_error *err)
{
        json_t *payload = json_object_get(entry, "jsonPayload");
        json_t *resource = json_object_get(entry, "resource");
        json_t *rlabels = json_object_get(resource, "labels");
        json_t *instance = json_object_get(rlabels, "instance_id");
        json_t *insert = json_object_get(entry, "insertId");
        json_t *type = json_object_get(payload, "@type");
        const char *key;
        json_t *v;

        if (!json_is_object(payload))
                return ev_fail(err, "jsonPayload: expected an object");
        if (!json_is_string(type) ||
            strcmp(json_string_value(type), "type.googleapis.com/cloud_integrity.IntegrityEvent"))
                return ev_fail(err, "jsonPayload.@type: expected "
                                    "\"type.googleapis.com/cloud_integrity.IntegrityEvent\"");
        if (!json_is_string(instance))
                return ev_fail(err, "resource.labels.instance_id: expected a string (the agent)");
        if (!json_is_string(insert))
                return ev_fail(err, "insertId: expected a string (the event id)");
        json_t *flat = json_object();
        if (!flat)
                return -ENOMEM;
        json_object_set_new(flat, "@type", json_string("vigil.IntegrityEvent"));
        json_object_set(flat, "eventId", insert);
        json_object_set(flat, "agentId", instance);
        json_object_foreach (payload, key, v)
                if (strcmp(key, "@type") != 0)
                        json_object_set(flat, key, v);
        if ((v = json_object_get(entry, "severity")))
                json_object_set(flat, "severity", v);
        if ((v = json_object_get(entry, "timestamp")))
                json_object_set(flat, "time", v);
        if (json_is_object(rlabels)) {
                json_t *labels = json_object();
                json_object_foreach (rlabels, key, v)
                        if (json_is_string(v))
                                json_object_set(labels, key, v);
                json_object_set_new(flat, "labels", labels);
        }
        json_object_set_new(flat, "source", json_string("gce"));
        *out = flat;
        return 0;
}

int vg_resp_event_parse(const void *data, size_t len, struct vg_resp_event **out,
                        struct vg_error *err)
{
        _cleanup_(vg_resp_event_freep) struct vg_resp_event *ev = NULL;
        _cleanup_free_ struct meas *a = NULL, *b = NULL;
        json_error_t jerr;
        json_t *root, *v, *report = NULL;
        const char *report_key = NULL;
        size_t na = 0, nb = 0;
        int r;

        *out = NULL;
        if (len > VG_RESP_EVENT_MAX_SIZE)
                return ev_fail(err, "%zu bytes (at most %d)", len, VG_RESP_EVENT_MAX_SIZE);
        root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return ev_fail(err, "not JSON: %s at line %d column %d", jerr.text, jerr.line,
                               jerr.column);
        ev = calloc(1, sizeof(*ev));
        if (!ev) {
                json_decref(root);
                return -ENOMEM;
        }
        ev->json = root;
        ev->passed = -1;
        if (!json_is_object(root))
                return ev_fail(err, "expected a JSON object, found %s", jtype(root));
        if (json_object_get(root, "jsonPayload")) {
                json_t *flat = NULL;
                r = from_gce(root, &flat, err);
                if (r < 0)
                        return r;
                json_decref(ev->json);
                ev->json = root = flat;
                ev->gce = true;
        } else {
                v = json_object_get(root, "@type");
                if (!json_is_string(v) || strcmp(json_string_value(v), "vigil.IntegrityEvent"))
                        return ev_fail(err, "@type: expected \"vigil.IntegrityEvent\" (or a GCE "
                                            "log entry with jsonPayload)");
        }
        v = json_object_get(root, "eventId");
        if (!json_is_string(v) || !printable_id(json_string_value(v)))
                return ev_fail(err, "eventId: expected 1 to 128 printable characters, found %s",
                               v ? jtype(v) : "nothing");
        ev->event_id = json_string_value(v);
        v = json_object_get(root, "agentId");
        if (!json_is_string(v) || !printable_id(json_string_value(v)))
                return ev_fail(err, "agentId: expected 1 to 128 printable characters, found %s",
                               v ? jtype(v) : "nothing");
        ev->agent_id = json_string_value(v);
        v = json_object_get(root, "bootCounter");
        if (v && !(json_is_string(v) && json_string_length(v) <= 32 &&
                   printable_id(json_string_value(v)[0] ? json_string_value(v) : "0")))
                return ev_fail(err, "bootCounter: expected a string (\"3\"), found %s", jtype(v));
        ev->boot_counter = v ? json_string_value(v) : "";
        v = json_object_get(root, "labels");
        if (v) {
                const char *key;
                json_t *lv;
                if (!json_is_object(v))
                        return ev_fail(err, "labels: expected an object, found %s", jtype(v));
                json_object_foreach (v, key, lv)
                        if (!json_is_string(lv))
                                return ev_fail(err, "labels.%.64s: expected a string, found %s",
                                               key, jtype(lv));
        }

        /* Exactly one report. */
        for (unsigned t = 0; t < VG_RESP_EV_COUNT; t++) {
                json_t *x = json_object_get(root, event_type_names[t]);
                if (!x)
                        continue;
                if (report)
                        return ev_fail(err, "both %s and %s: expected exactly one report",
                                       report_key, event_type_names[t]);
                if (!json_is_object(x))
                        return ev_fail(err, "%s: expected an object, found %s", event_type_names[t],
                                       jtype(x));
                report = x;
                report_key = event_type_names[t];
                ev->type = (enum vg_resp_event_type)t;
        }
        if (!report) {
                if (ev->gce)
                        for (size_t k = 0; k < VG_ARRAY_SIZE(gce_other_kinds); k++)
                                if (json_object_get(root, gce_other_kinds[k])) {
                                        ev->type = VG_RESP_EV_OTHER;
                                        ev->other_kind = gce_other_kinds[k];
                                        break;
                                }
                if (!ev->other_kind)
                        return ev_fail(err, "expected one of earlyBootReportEvent, "
                                            "lateBootReportEvent, runtimeReportEvent, "
                                            "relearnEvent");
        } else if (ev->type == VG_RESP_EV_RELEARN) {
                char path[64];
                v = json_object_get(report, "baseline");
                if (v && !json_is_string(v))
                        return ev_fail(err, "relearnEvent.baseline: expected a string, found %s",
                                       jtype(v));
                snprintf(path, sizeof(path), "relearnEvent.previousMeasurements");
                if ((r = parse_measurements(path, json_object_get(report, "previousMeasurements"),
                                            &a, &na, err)) < 0)
                        return r;
                snprintf(path, sizeof(path), "relearnEvent.newMeasurements");
                if ((r = parse_measurements(path, json_object_get(report, "newMeasurements"), &b,
                                            &nb, err)) < 0)
                        return r;
                ev->changed_pcrs = diff_pcrs(a, na, b, nb);
        } else {
                char path[80];
                v = json_object_get(report, "policyEvaluationPassed");
                if (!json_is_boolean(v))
                        return ev_fail(err,
                                       "%s.policyEvaluationPassed: expected true or false, "
                                       "found %s",
                                       report_key, v ? jtype(v) : "nothing");
                ev->passed = json_is_true(v);
                if (ev->type == VG_RESP_EV_RUNTIME) {
                        v = json_object_get(report, "failures");
                        if (v && !json_is_array(v))
                                return ev_fail(err,
                                               "runtimeReportEvent.failures: expected an "
                                               "array, found %s",
                                               jtype(v));
                } else {
                        snprintf(path, sizeof(path), "%s.actualMeasurements", report_key);
                        if ((r = parse_measurements(path,
                                                    json_object_get(report, "actualMeasurements"),
                                                    &a, &na, err)) < 0)
                                return r;
                        snprintf(path, sizeof(path), "%s.policyMeasurements", report_key);
                        if ((r = parse_measurements(path,
                                                    json_object_get(report, "policyMeasurements"),
                                                    &b, &nb, err)) < 0)
                                return r;
                        ev->changed_pcrs = diff_pcrs(a, na, b, nb);
                }
        }

        v = json_object_get(root, "severity");
        if (v) {
                if (!json_is_string(v) ||
                    (ev->severity_level = vg_resp_severity_from_name(json_string_value(v))) < 0)
                        return ev_fail(err,
                                       "severity: expected INFO, NOTICE, WARNING, ERROR or "
                                       "CRITICAL, found %s%.16s%s",
                                       json_is_string(v) ? "\"" : "",
                                       json_is_string(v) ? json_string_value(v) : jtype(v),
                                       json_is_string(v) ? "\"" : "");
                for (size_t k = 0; k < VG_ARRAY_SIZE(severities); k++)
                        if (severities[k].level == ev->severity_level)
                                ev->severity = severities[k].name;
        } else {
                /* Derived as the verifier would set it: failures are errors. */
                ev->severity = ev->passed == 0                  ? "ERROR"
                               : ev->type == VG_RESP_EV_RELEARN ? "NOTICE"
                                                                : "INFO";
                ev->severity_level = vg_resp_severity_from_name(ev->severity);
        }
        *out = TAKE_PTR(ev);
        return 0;
}

void vg_resp_event_pcr_list(const struct vg_resp_event *ev, char *out, size_t len)
{
        size_t o = 0;

        if (len)
                out[0] = '\0';
        for (unsigned k = 0; k <= VG_RESP_MAX_PCR && o < len; k++)
                if (ev->changed_pcrs & (1u << k)) {
                        int n = snprintf(out + o, len - o, "%s%u", o ? "," : "", k);
                        if (n < 0 || (size_t)n >= len - o)
                                break;
                        o += (size_t)n;
                }
}

const char *vg_resp_event_label(const struct vg_resp_event *ev, const char *key)
{
        return json_string_value(json_object_get(json_object_get(ev->json, "labels"), key));
}

bool vg_rule_matches(const struct vg_resp_rule *rule, const struct vg_resp_event *ev, char *why,
                     size_t why_len)
{
        char buf[64];

        if (ev->type == VG_RESP_EV_OTHER) {
                snprintf(why, why_len, "a %s is never matched", ev->other_kind);
                return false;
        }
        if (rule->events && !(rule->events & (1u << ev->type))) {
                snprintf(why, why_len, "event type is %s", vg_resp_event_type_name(ev->type));
                return false;
        }
        if (rule->passed >= 0 && ev->passed != rule->passed) {
                snprintf(why, why_len,
                         ev->passed < 0 ? "the event has no pass/fail verdict"
                         : ev->passed   ? "the policy evaluation passed"
                                        : "the policy evaluation failed");
                return false;
        }
        if (rule->pcrs && !(rule->pcrs & ev->changed_pcrs)) {
                vg_resp_event_pcr_list(ev, buf, sizeof(buf));
                snprintf(why, why_len, "none of the rule's PCRs changed (changed: %s)",
                         buf[0] ? buf : "none");
                return false;
        }
        if (rule->min_severity >= 0 && ev->severity_level < rule->min_severity) {
                snprintf(why, why_len, "severity %s is below the rule's minimum", ev->severity);
                return false;
        }
        for (size_t k = 0; rule->label_keys && rule->label_keys[k]; k++) {
                const char *v = vg_resp_event_label(ev, rule->label_keys[k]);
                if (!v || strcmp(v, rule->label_values[k]) != 0) {
                        snprintf(why, why_len, "label %s is %s%s%s, not \"%s\"",
                                 rule->label_keys[k], v ? "\"" : "", v ? v : "absent",
                                 v ? "\"" : "", rule->label_values[k]);
                        return false;
                }
        }
        return true;
}
