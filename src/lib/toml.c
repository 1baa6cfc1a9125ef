/* vigil: strict reader and writer for the TOML 1.0 subset of vigil's configuration files.
 * Untrusted bytes in, entries in document order out; every refusal says FILE:LINE and what. */
#include "toml.h"
#include "encoding.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A growing string. An allocation failure is sticky, so that a run of appends is checked
 * once at the end. With f set, text goes straight to that stream instead (the writers), so
 * writing needs no memory and cannot fail half-way for want of it. */
struct sbuf {
        char *p;
        size_t len, cap;
        bool oom;
        FILE *f;
};

static void sb_free(struct sbuf *sb)
{
        free(sb->p);
        *sb = (struct sbuf){ 0 };
}

static bool sb_reserve(struct sbuf *sb, size_t extra)
{
        if (sb->oom)
                return false;
        if (sb->cap - sb->len > extra)
                return true;
        if (extra > SIZE_MAX / 4 - sb->len) {
                sb->oom = true;
                return false;
        }
        size_t cap = sb->cap ? sb->cap : 32;
        while (cap - sb->len <= extra)
                cap *= 2;
        char *p = realloc(sb->p, cap);
        if (!p) {
                sb->oom = true;
                return false;
        }
        sb->p = p;
        sb->cap = cap;
        return true;
}

static void sb_put(struct sbuf *sb, const void *p, size_t n)
{
        if (sb->f) {
                fwrite(p, 1, n, sb->f);
                return;
        }
        if (!sb_reserve(sb, n))
                return;
        memcpy(sb->p + sb->len, p, n);
        sb->len += n;
        sb->p[sb->len] = '\0';
}

static void sb_putc(struct sbuf *sb, char c)
{
        sb_put(sb, &c, 1);
}

static void sb_puts(struct sbuf *sb, const char *s)
{
        sb_put(sb, s, strlen(s));
}

/* The string built so far ("" when nothing was appended), owned by the caller; NULL if an
 * allocation failed. */
static char *sb_take(struct sbuf *sb)
{
        if (!sb_reserve(sb, 0)) {
                sb_free(sb);
                return NULL;
        }
        sb->p[sb->len] = '\0';
        char *s = sb->p;
        *sb = (struct sbuf){ 0 };
        return s;
}

/* Length of the UTF-8 sequence at p (at most n bytes), or 0 if it is not a valid one:
 * RFC 3629 forbids overlong forms, surrogates and code points past U+10FFFF. */
static size_t utf8_char_len(const uint8_t *p, size_t n)
{
        uint32_t cp, min;
        size_t need;

        if (p[0] < 0x80)
                return 1;
        if (p[0] >= 0xc2 && p[0] <= 0xdf) {
                need = 2, cp = p[0] & 0x1f, min = 0x80;
        } else if ((p[0] & 0xf0) == 0xe0) {
                need = 3, cp = p[0] & 0x0f, min = 0x800;
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                need = 4, cp = p[0] & 0x07, min = 0x10000;
        } else {
                return 0;
        }
        if (n < need)
                return 0;
        for (size_t i = 1; i < need; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return need;
}

bool vg_toml_utf8_valid(const void *p, size_t len)
{
        const uint8_t *s = p;

        for (size_t i = 0; i < len;) {
                size_t n = utf8_char_len(s + i, len - i);
                if (!n)
                        return false;
                i += n;
        }
        return true;
}

static void utf8_put(struct sbuf *sb, uint32_t cp)
{
        char b[4];
        size_t n;

        if (cp < 0x80) {
                b[0] = (char)cp, n = 1;
        } else if (cp < 0x800) {
                b[0] = (char)(0xc0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
        } else if (cp < 0x10000) {
                b[0] = (char)(0xe0 | cp >> 12), b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
                b[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
        } else {
                b[0] = (char)(0xf0 | cp >> 18), b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
                b[2] = (char)(0x80 | (cp >> 6 & 0x3f)), b[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
        }
        sb_put(sb, b, n);
}

static bool is_bare_key_char(int c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
}

/* Characters that may make up an unquoted value: integers, booleans, and the floats, dates
 * and bare words we refuse, so that a refusal can quote the whole thing ("1.5", "127.0.0.1"). */
static bool is_token_char(int c)
{
        return is_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

/* TOML 1.0 "Comment"/"String": control characters other than tab must not appear raw. */
static bool is_control(int c)
{
        return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

static void append_quoted(struct sbuf *sb, const char *s)
{
        sb_putc(sb, '"');
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                switch (*p) {
                case '"':
                        sb_puts(sb, "\\\"");
                        break;
                case '\\':
                        sb_puts(sb, "\\\\");
                        break;
                case '\b':
                        sb_puts(sb, "\\b");
                        break;
                case '\t':
                        sb_puts(sb, "\\t");
                        break;
                case '\n':
                        sb_puts(sb, "\\n");
                        break;
                case '\f':
                        sb_puts(sb, "\\f");
                        break;
                case '\r':
                        sb_puts(sb, "\\r");
                        break;
                default:
                        if (is_control(*p)) {
                                char esc[8];
                                snprintf(esc, sizeof(esc), "\\u%04X", *p);
                                sb_puts(sb, esc);
                        } else {
                                sb_putc(sb, (char)*p);
                        }
                }
        }
        sb_putc(sb, '"');
}

static bool is_bare_key(const char *key)
{
        if (!*key)
                return false;
        for (const char *p = key; *p; p++)
                if (!is_bare_key_char((unsigned char)*p))
                        return false;
        return true;
}

static void append_key(struct sbuf *sb, const char *key)
{
        if (is_bare_key(key))
                sb_puts(sb, key);
        else
                append_quoted(sb, key);
}

/* A key or a bit of input as messages show it: bare keys in single quotes, anything else as
 * a quoted TOML string, so control characters never reach a terminal raw. */
static const char *show_key(const char *key, char *buf, size_t size)
{
        struct sbuf sb = { 0 };

        if (is_bare_key(key)) {
                snprintf(buf, size, "'%s'", key);
                return buf;
        }
        append_quoted(&sb, key);
        snprintf(buf, size, "%s", sb.oom ? "(key)" : sb.p);
        sb_free(&sb);
        return buf;
}

/* What the document has defined so far, as a tree: each node is one component (a key, or a
 * part of a [table] name) inside the table whose id is scope (0 is the root), with the line
 * that defined it. TOML 1.0 forbids defining a key or a table twice, or one as the other.
 * Keeping components rather than full dotted names keeps memory linear in the input, however
 * long the table names and however many keys each has. */
enum name_kind {
        NAME_TABLE_IMPLICIT, /* a prefix of a [header], may still get its own header */
        NAME_TABLE,
        NAME_KEY,
};

struct name_slot {
        char *name;   /* decoded component; NULL for an empty slot */
        size_t scope; /* id of the table holding it */
        size_t id;    /* a table's own id, the scope of what it holds */
        unsigned line;
        enum name_kind kind;
};

struct name_set {
        struct name_slot *slots;
        size_t cap, used;
};

static uint64_t name_hash(size_t scope, const char *s)
{
        uint64_t h = 0xcbf29ce484222325ULL ^ (scope * 0x9e3779b97f4a7c15ULL); /* FNV-1a */

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
        return h;
}

/* The slot holding (scope, name), or the empty slot where it would go. */
static struct name_slot *names_find(const struct name_set *set, size_t scope, const char *name)
{
        if (!set->cap)
                return NULL;
        for (size_t i = name_hash(scope, name) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
                struct name_slot *slot = &set->slots[i];
                if (!slot->name || (slot->scope == scope && strcmp(slot->name, name) == 0))
                        return slot;
        }
}

static struct name_slot *names_get(const struct name_set *set, size_t scope, const char *name)
{
        struct name_slot *slot = names_find(set, scope, name);

        return slot && slot->name ? slot : NULL;
}

/* Add a copy of name, which must not be there yet. */
static int names_add(struct name_set *set, const struct name_slot *node)
{
        char *name;

        if ((set->used + 1) * 2 > set->cap) {
                size_t cap = set->cap ? set->cap * 2 : 64;
                struct name_slot *slots = calloc(cap, sizeof(*slots));
                if (!slots)
                        return -ENOMEM;
                struct name_set bigger = { .slots = slots, .cap = cap, .used = set->used };
                for (size_t i = 0; i < set->cap; i++) {
                        const struct name_slot *old = &set->slots[i];
                        if (old->name)
                                *names_find(&bigger, old->scope, old->name) = *old;
                }
                free(set->slots);
                *set = bigger;
        }
        name = strdup(node->name);
        if (!name)
                return -ENOMEM;
        struct name_slot *slot = names_find(set, node->scope, name);
        *slot = *node;
        slot->name = name;
        set->used++;
        return 0;
}

static void names_free(struct name_set *set)
{
        for (size_t i = 0; i < set->cap; i++)
                free(set->slots[i].name);
        free(set->slots);
        *set = (struct name_set){ 0 };
}

struct parser {
        const uint8_t *text;
        size_t len, pos;
        unsigned line;
        const char *name; /* file name, or what the value is in value mode */
        bool value_mode;  /* messages say "NAME: ", not "NAME:LINE: " */
        struct vg_error *err;
        struct vg_toml_doc *doc;
        size_t cap_entries;
        struct name_set names;
        size_t next_id;    /* for the next table; 0 is the root */
        size_t scope;      /* id of the [table] in force */
        const char *table; /* its canonical name, owned by doc; "" at the top */
};

/* Every read goes through peek: past the end it is -1, never a byte beyond the input. */
static int peek_at(const struct parser *ps, size_t off)
{
        if (off >= ps->len - ps->pos)
                return -1;
        return ps->text[ps->pos + off];
}

static int peek(const struct parser *ps)
{
        return peek_at(ps, 0);
}

static __attribute__((format(printf, 3, 4))) int fail_at(struct parser *ps, unsigned line,
                                                         const char *fmt, ...)
{
        char msg[400];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (ps->value_mode)
                return vg_error_set(ps->err, -EINVAL, "%s: %s", ps->name, msg);
        return vg_error_set(ps->err, -EINVAL, "%s:%u: %s", ps->name, line, msg);
}

#define fail(ps, ...) fail_at((ps), (ps)->line, __VA_ARGS__)

static int fail_oom(struct parser *ps)
{
        return vg_error_set(ps->err, -ENOMEM, "%s: out of memory", ps->name);
}

/* What the input holds at the cursor, for "found X": end of file, end of line, an unquoted
 * word ('1.5'), a control character (U+0001), or the next character. */
static const char *describe_here(const struct parser *ps, char *buf, size_t size)
{
        int c = peek(ps);
        size_t n = 0;

        if (c < 0)
                return "end of file";
        if (c == '\n' || (c == '\r' && peek_at(ps, 1) == '\n'))
                return "end of line";
        if (c == '\t')
                return "a tab";
        if (is_control(c)) {
                snprintf(buf, size, "control character U+%04X", (unsigned)c);
                return buf;
        }
        if (is_token_char(c)) {
                while (n < 32 && is_token_char(peek_at(ps, n)))
                        n++;
                snprintf(buf, size, "'%.*s%s'", (int)n, (const char *)ps->text + ps->pos,
                         is_token_char(peek_at(ps, n)) ? "..." : "");
                return buf;
        }
        /* One character, whole: the input was checked to be UTF-8 before parsing. */
        n = utf8_char_len(ps->text + ps->pos, ps->len - ps->pos);
        snprintf(buf, size, "'%.*s'", (int)n, (const char *)ps->text + ps->pos);
        return buf;
}

static void skip_ws(struct parser *ps)
{
        while (peek(ps) == ' ' || peek(ps) == '\t')
                ps->pos++;
}

static int skip_comment(struct parser *ps)
{
        int c;

        if (peek(ps) != '#')
                return 0;
        ps->pos++;
        while ((c = peek(ps)) >= 0 && c != '\n') {
                if (c == '\r' && peek_at(ps, 1) == '\n')
                        break;
                if (is_control(c))
                        return fail(ps, "control character U+%04X is not allowed in a comment",
                                    (unsigned)c);
                ps->pos++;
        }
        return 0;
}

/* Consume a line ending (LF or CRLF); a lone CR is not one in TOML. */
static bool take_newline(struct parser *ps)
{
        size_t n = peek(ps) == '\n' ? 1 : peek(ps) == '\r' && peek_at(ps, 1) == '\n' ? 2 : 0;

        if (!n)
                return false;
        ps->pos += n;
        ps->line++;
        return true;
}

static int end_of_line(struct parser *ps, const char *after)
{
        char found[64];
        int r;

        skip_ws(ps);
        r = skip_comment(ps);
        if (r < 0)
                return r;
        if (peek(ps) < 0 || take_newline(ps))
                return 0;
        if (peek(ps) == '\r')
                return fail(ps, "carriage return (U+000D) not followed by a line feed");
        return fail(ps, "expected end of line %s, found %s", after,
                    describe_here(ps, found, sizeof(found)));
}

/* \uXXXX or \UXXXXXXXX, cursor on the 'u'/'U' (TOML 1.0 "String": a Unicode scalar value). */
static int parse_unicode_escape(struct parser *ps, struct sbuf *sb)
{
        size_t digits = peek(ps) == 'u' ? 4 : 8;
        uint32_t cp = 0;
        char shown[16];

        for (size_t i = 0; i < digits; i++) {
                int d = vg_hex_digit_value(peek_at(ps, 1 + i));
                if (d < 0) {
                        size_t n = 1 + i;
                        while (n < 1 + digits && is_bare_key_char(peek_at(ps, n)))
                                n++;
                        return fail(ps,
                                    "invalid escape '\\%.*s': expected %zu hex digits after "
                                    "'\\%c'",
                                    (int)n, (const char *)ps->text + ps->pos, digits,
                                    (char)peek(ps));
                }
                cp = cp << 4 | (uint32_t)d;
        }
        snprintf(shown, sizeof(shown), "\\%.*s", (int)(1 + digits),
                 (const char *)ps->text + ps->pos);
        if (cp == 0)
                return fail(ps, "invalid escape '%s': strings cannot hold a NUL character", shown);
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return fail(ps, "invalid escape '%s': not a Unicode scalar value", shown);
        utf8_put(sb, cp);
        ps->pos += 1 + digits;
        return 0;
}

/* A single-line basic ("...") or literal ('...') string; the cursor is on the opening quote. */
static int parse_string(struct parser *ps, char **out)
{
        int quote = peek(ps);
        bool literal = quote == '\'';
        struct sbuf sb = { 0 };
        int c, r = 0;

        if (peek_at(ps, 1) == quote && peek_at(ps, 2) == quote)
                return fail(ps, "multi-line strings (%c%c%c) are not supported", quote, quote,
                            quote);
        ps->pos++;
        for (;;) {
                c = peek(ps);
                if (c < 0 || c == '\n' || (c == '\r' && peek_at(ps, 1) == '\n')) {
                        r = fail(ps, "unterminated string: missing closing %c before %s", quote,
                                 c < 0 ? "end of file" : "end of line");
                        break;
                }
                if (c == quote) {
                        ps->pos++;
                        break;
                }
                if (is_control(c)) {
                        if (literal)
                                r = fail(ps,
                                         "control character U+%04X is not allowed in a "
                                         "literal string",
                                         (unsigned)c);
                        else
                                r = fail(ps,
                                         "control character U+%04X in a string must be "
                                         "escaped (\\u%04X)",
                                         (unsigned)c, (unsigned)c);
                        break;
                }
                if (c != '\\' || literal) {
                        sb_putc(&sb, (char)c);
                        ps->pos++;
                        continue;
                }
                ps->pos++;
                c = peek(ps);
                const char *simple = c == 'b'    ? "\b"
                                     : c == 't'  ? "\t"
                                     : c == 'n'  ? "\n"
                                     : c == 'f'  ? "\f"
                                     : c == 'r'  ? "\r"
                                     : c == '"'  ? "\""
                                     : c == '\\' ? "\\"
                                                 : NULL;
                if (simple) {
                        sb_putc(&sb, simple[0]);
                        ps->pos++;
                } else if (c == 'u' || c == 'U') {
                        r = parse_unicode_escape(ps, &sb);
                        if (r < 0)
                                break;
                } else if (c < 0 || c == '\n' || c == '\r') {
                        r = fail(ps, "unterminated string: missing closing \" before %s",
                                 c < 0 ? "end of file" : "end of line");
                        break;
                } else if (is_control(c)) {
                        r = fail(ps,
                                 "invalid escape: '\\' followed by control character "
                                 "U+%04X",
                                 (unsigned)c);
                        break;
                } else if (c >= 0x80) {
                        r = fail(ps, "invalid escape: '\\' followed by a non-ASCII character");
                        break;
                } else {
                        r = fail(ps,
                                 "invalid escape '\\%c' in string (valid: \\b \\t \\n \\f "
                                 "\\r \\\" \\\\ \\uXXXX \\UXXXXXXXX)",
                                 (char)c);
                        break;
                }
        }
        if (r < 0) {
                sb_free(&sb);
                return r;
        }
        *out = sb_take(&sb);
        return *out ? 0 : fail_oom(ps);
}

static int parse_key(struct parser *ps, char **out)
{
        char found[64];
        size_t n = 0;

        if (peek(ps) == '"' || peek(ps) == '\'')
                return parse_string(ps, out);
        while (is_bare_key_char(peek_at(ps, n)))
                n++;
        if (!n)
                return fail(ps, "expected a key, found %s",
                            describe_here(ps, found, sizeof(found)));
        *out = strndup((const char *)ps->text + ps->pos, n);
        if (!*out)
                return fail_oom(ps);
        ps->pos += n;
        return 0;
}

static bool all_chars_in(const char *s, size_t n, const char *set)
{
        for (size_t i = 0; i < n; i++)
                if (!strchr(set, s[i]))
                        return false;
        return true;
}

static size_t skip_digits(const char *s, size_t n, size_t i)
{
        while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                i++;
        return i;
}

/* TOML 1.0 "Float" (loosely on '_'), only to say "floats are not supported" about it. */
static bool looks_like_float(const char *s, size_t n)
{
        size_t i = 0, j;
        bool frac = false, exp = false;

        if (i < n && (s[i] == '+' || s[i] == '-'))
                i++;
        if (n - i == 3 && (memcmp(s + i, "inf", 3) == 0 || memcmp(s + i, "nan", 3) == 0))
                return true;
        if (i == n || s[i] < '0' || s[i] > '9')
                return false;
        i = skip_digits(s, n, i);
        if (i < n && s[i] == '.') {
                j = skip_digits(s, n, i + 1);
                if (j == i + 1)
                        return false;
                i = j, frac = true;
        }
        if (i < n && (s[i] == 'e' || s[i] == 'E')) {
                i++;
                if (i < n && (s[i] == '+' || s[i] == '-'))
                        i++;
                j = skip_digits(s, n, i);
                if (j == i)
                        return false;
                i = j, exp = true;
        }
        return i == n && (frac || exp);
}

static bool is_digit_at(const char *s, size_t n, size_t i)
{
        return i < n && s[i] >= '0' && s[i] <= '9';
}

/* 1979-05-27... or 07:32..., the starts of TOML's dates and times. */
static bool looks_like_datetime(const char *s, size_t n)
{
        if (n >= 7 && is_digit_at(s, n, 0) && is_digit_at(s, n, 1) && is_digit_at(s, n, 2) &&
            is_digit_at(s, n, 3) && s[4] == '-' && is_digit_at(s, n, 5) && is_digit_at(s, n, 6))
                return true;
        return n >= 5 && is_digit_at(s, n, 0) && is_digit_at(s, n, 1) && s[2] == ':' &&
               is_digit_at(s, n, 3) && is_digit_at(s, n, 4);
}

/* TOML 1.0 "Integer": [+-] decimal without leading zeros, or unsigned 0x / 0o / 0b; '_' only
 * between two digits; the value must fit in 64 bits, signed. */
static int parse_integer(struct parser *ps, const char *s, size_t n, const char *shown,
                         int64_t *out)
{
        size_t i = 0;
        bool neg = false, prev_digit = false;
        unsigned base = 10;
        uint64_t mag = 0, limit;

        if (s[0] == '+' || s[0] == '-')
                neg = s[0] == '-', i = 1;
        if (n - i >= 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'o' || s[i + 1] == 'b')) {
                if (i)
                        return fail(ps,
                                    "invalid integer '%s': hexadecimal, octal and binary "
                                    "integers cannot have a sign",
                                    shown);
                base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
                i += 2;
        } else if (n - i > 1 && s[i] == '0') {
                return fail(ps, "invalid integer '%s': leading zeros are not allowed", shown);
        }
        if (i == n)
                return fail(ps, "invalid integer '%s': no digits", shown);
        limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (; i < n; i++) {
                if (s[i] == '_') {
                        if (!prev_digit || i + 1 == n)
                                return fail(ps,
                                            "invalid integer '%s': '_' must be between "
                                            "two digits",
                                            shown);
                        prev_digit = false;
                        continue;
                }
                int d = vg_hex_digit_value((unsigned char)s[i]);
                if (d < 0 || (unsigned)d >= base)
                        return fail(ps, "invalid integer '%s': '%c' is not a base-%u digit", shown,
                                    s[i], base);
                if (mag > (limit - (unsigned)d) / base)
                        return fail(ps,
                                    "integer overflow: '%s' does not fit in 64 bits "
                                    "(signed)",
                                    shown);
                mag = mag * base + (unsigned)d;
                prev_digit = true;
        }
        if (neg)
                *out = mag > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)mag;
        else
                *out = (int64_t)mag;
        return 0;
}

static const char *for_key(const char *key, char *buf, size_t size)
{
        char shown[80];

        if (!key)
                return "";
        snprintf(buf, size, " for %s", show_key(key, shown, sizeof(shown)));
        return buf;
}

/* An unquoted value: a boolean or an integer, or a clear refusal of whatever else it is. */
static int parse_bare_value(struct parser *ps, const char *key, struct vg_toml_value *v)
{
        const char *s = (const char *)ps->text + ps->pos;
        char found[64], fk[100];
        size_t n = 0;
        int r;

        while (is_token_char(peek_at(ps, n)))
                n++;
        if (!n)
                return fail(ps, "expected a value%s, found %s", for_key(key, fk, sizeof(fk)),
                            describe_here(ps, found, sizeof(found)));
        /* Messages quote at most 40 bytes of it; the token is ASCII, so any cut is clean. */
        int show_len = n > 40 ? 40 : (int)n;
        const char *more = n > 40 ? "..." : "";

        if (n == 4 && memcmp(s, "true", 4) == 0) {
                *v = (struct vg_toml_value){ .type = VG_TOML_BOOLEAN, .boolean = true };
        } else if (n == 5 && memcmp(s, "false", 5) == 0) {
                *v = (struct vg_toml_value){ .type = VG_TOML_BOOLEAN, .boolean = false };
        } else if (looks_like_datetime(s, n)) {
                return fail(ps, "dates and times are not supported (found '%.*s%s')", show_len, s,
                            more);
        } else if (looks_like_float(s, n)) {
                return fail(ps, "floats are not supported (found '%.*s%s')", show_len, s, more);
        } else if ((n > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) ||
                   (n > 2 && (s[0] == '+' || s[0] == '-') && s[1] == '0' &&
                    (s[2] == 'x' || s[2] == 'o' || s[2] == 'b')) ||
                   all_chars_in(s, n, "0123456789_+-")) {
                /* Digits and signs only, or a base prefix: meant as an integer. */
                char tok[48];
                snprintf(tok, sizeof(tok), "%.*s%s", show_len, s, more);
                r = parse_integer(ps, s, n, tok, &v->integer);
                if (r < 0)
                        return r;
                v->type = VG_TOML_INTEGER;
        } else if ((n == 4 && strncasecmp(s, "true", 4) == 0) ||
                   (n == 5 && strncasecmp(s, "false", 5) == 0)) {
                return fail(ps, "invalid value '%.*s'%s: booleans are lower-case true or false",
                            (int)n, s, for_key(key, fk, sizeof(fk)));
        } else {
                return fail(ps, "invalid value '%.*s%s'%s: strings must be quoted", show_len, s,
                            more, for_key(key, fk, sizeof(fk)));
        }
        ps->pos += n;
        return 0;
}

/* Spaces, line ends and comments between array items. */
static int skip_array_space(struct parser *ps)
{
        int r;

        for (;;) {
                skip_ws(ps);
                r = skip_comment(ps);
                if (r < 0)
                        return r;
                if (!take_newline(ps))
                        return 0;
        }
}

static void strv_free(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

static int parse_array(struct parser *ps, struct vg_toml_value *v)
{
        unsigned open_line = ps->line;
        char **items = calloc(1, sizeof(char *));
        size_t n = 0, cap = 1;
        char found[64];
        int c, r = 0;

        if (!items)
                return fail_oom(ps);
        ps->pos++;
        for (;;) {
                r = skip_array_space(ps);
                if (r < 0)
                        break;
                c = peek(ps);
                if (c == ']') {
                        ps->pos++;
                        break;
                }
                if (c < 0) {
                        r = fail_at(ps, open_line, "unterminated array: no ']' before end of file");
                        break;
                }
                if (c == '[') {
                        r = fail(ps, "arrays may only hold strings (found a nested array)");
                        break;
                }
                if (c == '{') {
                        r = fail(ps, "arrays may only hold strings (found an inline table)");
                        break;
                }
                if (c == ',') {
                        r = fail(ps, "expected an array item or ']', found ','");
                        break;
                }
                if (c != '"' && c != '\'') {
                        r = fail(ps, "arrays may only hold strings (found %s)",
                                 describe_here(ps, found, sizeof(found)));
                        break;
                }
                if (n + 1 == cap) {
                        char **bigger = reallocarray(items, cap * 2, sizeof(char *));
                        if (!bigger) {
                                r = fail_oom(ps);
                                break;
                        }
                        items = bigger;
                        cap *= 2;
                }
                r = parse_string(ps, &items[n]);
                if (r < 0)
                        break;
                items[++n] = NULL;
                r = skip_array_space(ps);
                if (r < 0)
                        break;
                c = peek(ps);
                if (c == ',') {
                        ps->pos++;
                        continue;
                }
                if (c == ']') {
                        ps->pos++;
                        break;
                }
                if (c < 0)
                        r = fail_at(ps, open_line, "unterminated array: no ']' before end of file");
                else
                        r = fail(ps, "expected ',' or ']' after an array item, found %s",
                                 describe_here(ps, found, sizeof(found)));
                break;
        }
        if (r < 0) {
                strv_free(items);
                return r;
        }
        *v = (struct vg_toml_value){ .type = VG_TOML_STRING_ARRAY, .array = { items, n } };
        return 0;
}

static int parse_value(struct parser *ps, const char *key, struct vg_toml_value *v)
{
        int c = peek(ps);
        int r;

        if (c == '"' || c == '\'') {
                r = parse_string(ps, &v->string);
                if (r == 0)
                        v->type = VG_TOML_STRING;
                return r;
        }
        if (c == '[')
                return parse_array(ps, v);
        if (c == '{')
                return fail(ps, "inline tables ({...}) are not supported");
        return parse_bare_value(ps, key, v);
}

void vg_toml_value_clear(struct vg_toml_value *v)
{
        if (v->type == VG_TOML_STRING)
                free(v->string);
        else if (v->type == VG_TOML_STRING_ARRAY)
                strv_free(v->array.items);
        *v = (struct vg_toml_value){ .type = VG_TOML_INTEGER };
}

/* Keep a table's canonical name in the document, for its entries to share. */
static const char *doc_add_table(struct parser *ps, char *name)
{
        struct vg_toml_doc *doc = ps->doc;
        char **tables = reallocarray(doc->tables, doc->n_tables + 1, sizeof(char *));

        if (!tables) {
                free(name);
                return NULL;
        }
        doc->tables = tables;
        doc->tables[doc->n_tables++] = name;
        return name;
}

/* Record a [header]: each prefix becomes an implicit table unless it is a key; the table
 * itself must not exist yet except as such an implicit prefix (TOML 1.0 "Table"). */
static int define_table(struct parser *ps, char **parts, size_t n_parts, unsigned line)
{
        _cleanup_free_ size_t *ends = calloc(n_parts, sizeof(size_t));
        struct sbuf path = { 0 };
        size_t scope = 0;
        int r = 0;

        /* The canonical name, and where each prefix of it ends, for messages. */
        if (!ends)
                return fail_oom(ps);
        for (size_t i = 0; i < n_parts; i++) {
                if (i)
                        sb_putc(&path, '.');
                append_key(&path, parts[i]);
                ends[i] = path.len;
        }
        if (path.oom)
                return fail_oom(ps);
        for (size_t i = 0; i < n_parts && r == 0; i++) {
                struct name_slot *slot = names_get(&ps->names, scope, parts[i]);
                bool last = i + 1 == n_parts;

                if (!slot) {
                        struct name_slot node = {
                                .name = parts[i],
                                .scope = scope,
                                .id = ++ps->next_id,
                                .line = line,
                                .kind = last ? NAME_TABLE : NAME_TABLE_IMPLICIT,
                        };
                        if (names_add(&ps->names, &node) < 0)
                                r = fail_oom(ps);
                        scope = node.id;
                } else if (slot->kind == NAME_KEY) {
                        r = fail_at(ps, line,
                                    "cannot define table [%s]: %.*s is already a key "
                                    "(set at line %u)",
                                    path.p, (int)ends[i], path.p, slot->line);
                } else if (last && slot->kind == NAME_TABLE) {
                        r = fail_at(ps, line, "table [%s] defined twice (first at line %u)", path.p,
                                    slot->line);
                } else {
                        if (last) {
                                slot->kind = NAME_TABLE;
                                slot->line = line;
                        }
                        scope = slot->id;
                }
        }
        if (r == 0) {
                char *name = sb_take(&path);
                ps->table = name ? doc_add_table(ps, name) : NULL;
                ps->scope = scope;
                if (!ps->table)
                        r = fail_oom(ps);
        }
        sb_free(&path);
        return r;
}

static int parse_table_header(struct parser *ps)
{
        unsigned line = ps->line;
        char **parts = NULL;
        size_t n = 0;
        char found[64];
        int r = 0;

        ps->pos++;
        if (peek(ps) == '[')
                return fail(ps, "arrays of tables ([[...]]) are not supported");
        for (;;) {
                char **bigger = reallocarray(parts, n + 1, sizeof(char *));
                if (!bigger) {
                        r = fail_oom(ps);
                        break;
                }
                parts = bigger;
                skip_ws(ps);
                if (n == 0 && peek(ps) == ']') {
                        r = fail(ps, "expected a table name between '[' and ']'");
                        break;
                }
                r = parse_key(ps, &parts[n]);
                if (r < 0)
                        break;
                n++;
                skip_ws(ps);
                if (peek(ps) == ']') {
                        ps->pos++;
                        break;
                }
                if (peek(ps) != '.') {
                        r = fail(ps, "expected '.' or ']' in table header, found %s",
                                 describe_here(ps, found, sizeof(found)));
                        break;
                }
                ps->pos++;
        }
        if (r == 0)
                r = define_table(ps, parts, n, line);
        for (size_t i = 0; i < n; i++)
                free(parts[i]);
        free(parts);
        return r;
}

/* Record "key" in the current table, refusing a duplicate or a clash with a table. */
static int define_key(struct parser *ps, const char *key, unsigned line)
{
        const struct name_slot *slot = names_get(&ps->names, ps->scope, key);
        char shown[80];

        if (slot && slot->kind == NAME_KEY)
                return fail_at(ps, line, "duplicate key %s (first set at line %u)",
                               show_key(key, shown, sizeof(shown)), slot->line);
        if (slot) {
                struct sbuf path = { 0 };
                if (*ps->table) {
                        sb_puts(&path, ps->table);
                        sb_putc(&path, '.');
                }
                append_key(&path, key);
                int r = path.oom ? fail_oom(ps)
                                 : fail_at(ps, line, "key %s conflicts with table [%s] (line %u)",
                                           show_key(key, shown, sizeof(shown)), path.p, slot->line);
                sb_free(&path);
                return r;
        }
        const struct name_slot node = {
                .name = (char *)key, .scope = ps->scope, .line = line, .kind = NAME_KEY
        };
        return names_add(&ps->names, &node) < 0 ? fail_oom(ps) : 0;
}

static int add_entry(struct parser *ps, char *key, struct vg_toml_value *v, unsigned line)
{
        struct vg_toml_doc *doc = ps->doc;

        if (doc->n_entries == ps->cap_entries) {
                size_t cap = ps->cap_entries ? ps->cap_entries * 2 : 16;
                struct vg_toml_entry *e = reallocarray(doc->entries, cap, sizeof(*e));
                if (!e)
                        return fail_oom(ps);
                doc->entries = e;
                ps->cap_entries = cap;
        }
        doc->entries[doc->n_entries++] = (struct vg_toml_entry){
                .table = ps->table,
                .key = key,
                .value = *v,
                .line = line,
        };
        return 0;
}

static int parse_keyval(struct parser *ps)
{
        unsigned line = ps->line;
        _cleanup_free_ char *key = NULL;
        struct vg_toml_value v = { .type = VG_TOML_INTEGER };
        char found[64], shown[80];
        int r;

        r = parse_key(ps, &key);
        if (r < 0)
                return r;
        skip_ws(ps);
        if (peek(ps) == '.')
                return fail(ps,
                            "dotted keys are not supported (after key %s); use a [table] "
                            "header",
                            show_key(key, shown, sizeof(shown)));
        if (peek(ps) != '=')
                return fail(ps, "expected '=' after key %s, found %s",
                            show_key(key, shown, sizeof(shown)),
                            describe_here(ps, found, sizeof(found)));
        ps->pos++;
        skip_ws(ps);
        r = define_key(ps, key, line);
        if (r < 0)
                return r;
        r = parse_value(ps, key, &v);
        if (r < 0)
                return r;
        r = add_entry(ps, key, &v, line);
        if (r < 0) {
                vg_toml_value_clear(&v);
                return r;
        }
        key = NULL; /* the entry owns it now */
        return 0;
}

/* TOML is UTF-8 and our strings are C strings: refuse NUL bytes and invalid UTF-8 up front,
 * so the grammar below only ever sees whole characters. */
static int check_encoding(struct parser *ps)
{
        unsigned line = 1;

        for (size_t i = 0; i < ps->len;) {
                uint8_t c = ps->text[i];
                if (c == 0)
                        return fail_at(ps, line, "NUL byte in input (at byte %zu)", i);
                if (c == '\n')
                        line++;
                size_t n = utf8_char_len(ps->text + i, ps->len - i);
                if (!n)
                        return fail_at(ps, line, "invalid UTF-8 (byte 0x%02x at byte %zu)", c, i);
                i += n;
        }
        return 0;
}

static int parse_document(struct parser *ps)
{
        int r = check_encoding(ps);

        if (r < 0)
                return r;
        /* A UTF-8 byte order mark, as some editors write, is not content. */
        if (ps->len >= 3 && memcmp(ps->text, "\xef\xbb\xbf", 3) == 0)
                ps->pos = 3;
        for (;;) {
                skip_ws(ps);
                int c = peek(ps);
                if (c < 0)
                        return 0;
                r = 0;
                if (c == '[')
                        r = parse_table_header(ps);
                else if (c != '#' && c != '\n' && c != '\r')
                        r = parse_keyval(ps);
                if (r < 0)
                        return r;
                r = end_of_line(ps, c == '[' ? "after the table header" : "after the value");
                if (r < 0)
                        return r;
        }
}

void vg_toml_doc_free(struct vg_toml_doc *doc)
{
        if (!doc)
                return;
        for (size_t i = 0; i < doc->n_entries; i++) {
                free(doc->entries[i].key);
                vg_toml_value_clear(&doc->entries[i].value);
        }
        for (size_t i = 0; i < doc->n_tables; i++)
                free(doc->tables[i]);
        free(doc->entries);
        free(doc->tables);
        free(doc);
}

int vg_toml_parse(const char *text, size_t len, const char *filename, struct vg_toml_doc **out,
                  struct vg_error *err)
{
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *doc = calloc(1, sizeof(*doc));
        struct parser ps = {
                .text = (const uint8_t *)text,
                .len = len,
                .line = 1,
                .name = filename ? filename : "(input)",
                .err = err,
                .doc = doc,
                .table = "",
        };
        int r;

        if (!doc)
                r = fail_oom(&ps);
        else
                r = parse_document(&ps);
        names_free(&ps.names);
        if (r < 0)
                return r;
        *out = TAKE_PTR(doc);
        return 0;
}

int vg_toml_parse_value(const char *text, size_t len, const char *what, struct vg_toml_value *out,
                        struct vg_error *err)
{
        struct parser ps = {
                .text = (const uint8_t *)text,
                .len = len,
                .line = 1,
                .name = what ? what : "(value)",
                .value_mode = true,
                .err = err,
        };
        struct vg_toml_value v = { .type = VG_TOML_INTEGER };
        char found[64];
        int r;

        r = check_encoding(&ps);
        if (r < 0)
                return r;
        skip_ws(&ps);
        r = parse_value(&ps, NULL, &v);
        if (r < 0)
                return r;
        skip_ws(&ps);
        if (peek(&ps) >= 0) {
                vg_toml_value_clear(&v);
                return fail(&ps, "expected nothing after the value, found %s",
                            describe_here(&ps, found, sizeof(found)));
        }
        *out = v;
        return 0;
}

const char *vg_toml_type_name(enum vg_toml_type type)
{
        switch (type) {
        case VG_TOML_STRING:
                return "string";
        case VG_TOML_INTEGER:
                return "integer";
        case VG_TOML_BOOLEAN:
                return "boolean";
        case VG_TOML_STRING_ARRAY:
                return "array of strings";
        }
        return "unknown";
}

void vg_toml_write_key(FILE *out, const char *key)
{
        struct sbuf sb = { .f = out };

        append_key(&sb, key);
}

void vg_toml_write_string(FILE *out, const char *s)
{
        struct sbuf sb = { .f = out };

        append_quoted(&sb, s);
}

void vg_toml_write_value(FILE *out, const struct vg_toml_value *v)
{
        switch (v->type) {
        case VG_TOML_STRING:
                vg_toml_write_string(out, v->string);
                break;
        case VG_TOML_INTEGER:
                fprintf(out, "%" PRId64, v->integer);
                break;
        case VG_TOML_BOOLEAN:
                fputs(v->boolean ? "true" : "false", out);
                break;
        case VG_TOML_STRING_ARRAY:
                fputc('[', out);
                for (size_t i = 0; i < v->array.n; i++) {
                        if (i)
                                fputs(", ", out);
                        vg_toml_write_string(out, v->array.items[i]);
                }
                fputc(']', out);
                break;
        }
}

int vg_toml_doc_write(const struct vg_toml_doc *doc, FILE *out)
{
        const char *table = "";

        /* Each table's keys are contiguous in a parsed document (a header is defined once),
         * so one header per run reproduces it. */
        for (size_t i = 0; i < doc->n_entries; i++) {
                const struct vg_toml_entry *e = &doc->entries[i];
                if (strcmp(e->table, table) != 0) {
                        fprintf(out, "%s[%s]\n", i ? "\n" : "", e->table);
                        table = e->table;
                }
                vg_toml_write_key(out, e->key);
                fputs(" = ", out);
                vg_toml_write_value(out, &e->value);
                fputc('\n', out);
        }
        return ferror(out) ? -EIO : 0;
}
