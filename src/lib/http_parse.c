/* vigil: incremental HTTP/1.1 parser (RFC 9112). Bytes go in, a message with its framing decided
 * comes out; anything two implementations could read differently is refused with its status. */
#include "http_parse.h"
#include "encoding.h"
#include "cleanup.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Leading empty lines a server ignores before a request-line (RFC 9112 2.2). */
#define MAX_LEADING_CRLF 8
/* A chunk-size line with its extensions. */
#define MAX_CHUNK_LINE 1024
/* First allocation for a body whose length is not known or large. */
#define BODY_CHUNK 16384

enum state {
        ST_START,       /* before the first byte of a message */
        ST_HEAD,        /* accumulating the start line and header fields */
        ST_HEAD_READY,  /* head parsed; HEAD not reported yet */
        ST_BODY_LENGTH, /* Content-Length body, `remaining` bytes to go */
        ST_BODY_EOF,    /* response body delimited by the connection closing */
        ST_CHUNK_LINE,  /* chunk-size [ chunk-ext ] CRLF */
        ST_CHUNK_DATA,  /* `remaining` bytes of chunk data */
        ST_CHUNK_CRLF,  /* the CRLF after chunk data */
        ST_TRAILER,     /* trailer fields after the last chunk */
        ST_DONE,
        ST_ERROR,
};

struct vg_http_parser {
        enum vg_http_kind kind;
        struct vg_http_limits lim;
        enum state st;
        enum state after_head; /* where ST_HEAD_READY goes once HEAD was reported */
        bool no_body;          /* the response answers HEAD */
        bool started;
        bool cr;        /* the previous byte was a CR */
        size_t leading; /* empty lines skipped in ST_START */

        /* Line accumulation: the whole head in ST_HEAD, one line in ST_CHUNK_LINE/ST_TRAILER. */
        char *buf;
        size_t len, cap;
        size_t line_start; /* offset of the current line in buf */
        size_t n_lines;
        size_t trailer_bytes, trailer_fields;

        uint64_t remaining;
        size_t body_cap;
        struct vg_http_message *msg;

        int err_status;
        char err_msg[200];
};

static bool is_tchar(uint8_t c)
{
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                return true;
        return c && strchr("!#$%&'*+-.^_`|~", c);
}

/* field-vchar / SP / HTAB / obs-text (RFC 9110 5.5). */
static bool is_field_char(uint8_t c)
{
        return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(char c)
{
        return c == ' ' || c == '\t';
}

bool vg_http_is_token(const char *s)
{
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (!is_tchar((uint8_t)*s))
                        return false;
        return true;
}

bool vg_http_is_field_value(const char *s)
{
        if (!s)
                return false;
        for (; *s; s++)
                if (!is_field_char((uint8_t)*s))
                        return false;
        return true;
}

static enum vg_http_parse_result fail(struct vg_http_parser *p, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum vg_http_parse_result fail(struct vg_http_parser *p, int status, const char *fmt, ...)
{
        va_list ap;

        /* A response parser has no one to answer; the status still sorts the failure. */
        p->err_status = status;
        va_start(ap, fmt);
        vsnprintf(p->err_msg, sizeof(p->err_msg), fmt, ap);
        va_end(ap);
        p->st = ST_ERROR;
        return VG_HTTP_PARSE_ERROR;
}

void vg_http_message_free(struct vg_http_message *m)
{
        if (!m)
                return;
        free(m->headers);
        free(m->body);
        free(m->storage_);
        free(m);
}

const char *vg_http_message_header(const struct vg_http_message *m, const char *name)
{
        for (size_t i = 0; m && i < m->n_headers; i++)
                if (strcasecmp(m->headers[i].name, name) == 0)
                        return m->headers[i].value;
        return NULL;
}

int vg_http_parser_new(enum vg_http_kind kind, const struct vg_http_limits *limits,
                       struct vg_http_parser **out)
{
        struct vg_http_parser *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->kind = kind;
        if (limits)
                p->lim = *limits;
        if (!p->lim.max_start_line)
                p->lim.max_start_line = VG_HTTP_DEFAULT_MAX_START_LINE;
        if (!p->lim.max_header_bytes)
                p->lim.max_header_bytes = VG_HTTP_DEFAULT_MAX_HEADER_BYTES;
        if (!p->lim.max_headers)
                p->lim.max_headers = VG_HTTP_DEFAULT_MAX_HEADERS;
        if (!p->lim.max_body)
                p->lim.max_body = VG_HTTP_DEFAULT_MAX_BODY;
        p->st = ST_START;
        *out = p;
        return 0;
}

void vg_http_parser_reset(struct vg_http_parser *p)
{
        vg_http_message_free(p->msg);
        p->msg = NULL;
        free(p->buf);
        p->buf = NULL;
        p->len = p->cap = p->line_start = p->n_lines = 0;
        p->trailer_bytes = p->trailer_fields = 0;
        p->remaining = 0;
        p->body_cap = 0;
        p->st = ST_START;
        p->no_body = p->started = p->cr = false;
        p->leading = 0;
        p->err_status = 0;
        p->err_msg[0] = '\0';
}

void vg_http_parser_free(struct vg_http_parser *p)
{
        if (!p)
                return;
        vg_http_parser_reset(p);
        free(p);
}

void vg_http_parser_set_no_body(struct vg_http_parser *p)
{
        p->no_body = true;
}

bool vg_http_parser_started(const struct vg_http_parser *p)
{
        return p->started;
}

const struct vg_http_message *vg_http_parser_message(const struct vg_http_parser *p)
{
        return p->st == ST_HEAD || p->st == ST_START || p->st == ST_ERROR ? NULL : p->msg;
}

struct vg_http_message *vg_http_parser_take(struct vg_http_parser *p)
{
        struct vg_http_message *m;

        if (p->st != ST_DONE)
                return NULL;
        m = TAKE_PTR(p->msg);
        vg_http_parser_reset(p);
        return m;
}

int vg_http_parser_error(const struct vg_http_parser *p, const char **msg)
{
        if (msg)
                *msg = p->st == ST_ERROR ? p->err_msg : "no error";
        return p->st == ST_ERROR ? p->err_status : 0;
}

static int buf_push(struct vg_http_parser *p, const uint8_t *data, size_t n)
{
        if (p->len + n + 1 > p->cap) {
                size_t cap = p->cap ? p->cap : 512;
                while (cap < p->len + n + 1)
                        cap *= 2;
                char *nb = realloc(p->buf, cap);
                if (!nb)
                        return -ENOMEM;
                p->buf = nb;
                p->cap = cap;
        }
        memcpy(p->buf + p->len, data, n);
        p->len += n;
        p->buf[p->len] = '\0';
        return 0;
}

static int body_append(struct vg_http_parser *p, const uint8_t *data, size_t n)
{
        struct vg_http_message *m = p->msg;
        size_t want = m->body_len + n + 1;

        if (want > p->body_cap) {
                /* Grow by doubling rather than trusting a declared length: a peer that announces
                 * 100 MB and sends nothing must not cost 100 MB. */
                size_t cap = p->body_cap ? p->body_cap : BODY_CHUNK;
                while (cap < want)
                        cap *= 2;
                uint8_t *nb = realloc(m->body, cap);
                if (!nb)
                        return -ENOMEM;
                m->body = nb;
                p->body_cap = cap;
        }
        memcpy(m->body + m->body_len, data, n);
        m->body_len += n;
        m->body[m->body_len] = '\0';
        return 0;
}

/* Walk a comma-separated field value (RFC 9110 5.6.1), calling fn on each trimmed element;
 * empty elements are passed too (as length 0) so that callers can refuse them. */
static int for_each_element(const char *v, int (*fn)(const char *e, size_t n, void *ud), void *ud)
{
        for (;;) {
                const char *end = strchr(v, ',');
                size_t n = end ? (size_t)(end - v) : strlen(v);
                const char *s = v;
                while (n && is_ows(*s))
                        s++, n--;
                while (n && is_ows(s[n - 1]))
                        n--;
                int r = fn(s, n, ud);
                if (r)
                        return r;
                if (!end)
                        return 0;
                v = end + 1;
        }
}

struct length_ctx {
        int64_t value; /* -1 until the first element */
        bool conflict, invalid, huge;
};

static int length_element(const char *e, size_t n, void *ud)
{
        struct length_ctx *c = ud;
        uint64_t v = 0;

        if (n == 0) {
                c->invalid = true;
                return 1;
        }
        for (size_t i = 0; i < n; i++) {
                if (e[i] < '0' || e[i] > '9') {
                        c->invalid = true;
                        return 1;
                }
                if (v > (uint64_t)INT64_MAX / 10 - 1) {
                        /* Syntactically a length, just more than any limit. */
                        c->huge = true;
                        return 1;
                }
                v = v * 10 + (uint64_t)(e[i] - '0');
        }
        if (c->value >= 0 && (uint64_t)c->value != v) {
                c->conflict = true;
                return 1;
        }
        c->value = (int64_t)v;
        return 0;
}

struct coding_ctx {
        size_t n, n_chunked;
        bool chunked_last, other, empty;
};

static int coding_element(const char *e, size_t n, void *ud)
{
        struct coding_ctx *c = ud;
        bool chunked = n == 7 && strncasecmp(e, "chunked", 7) == 0;

        if (n == 0)
                c->empty = true;
        else if (chunked)
                c->n_chunked++;
        else
                c->other = true;
        /* Only the last coding counts for "is chunked final" (RFC 9112 6.3). */
        c->chunked_last = chunked;
        c->n++;
        return 0;
}

struct conn_ctx {
        bool close, keep_alive;
};

static int connection_element(const char *e, size_t n, void *ud)
{
        struct conn_ctx *c = ud;

        if (n == 5 && strncasecmp(e, "close", 5) == 0)
                c->close = true;
        else if (n == 10 && strncasecmp(e, "keep-alive", 10) == 0)
                c->keep_alive = true;
        return 0;
}

static bool parse_version(const char *v, int *major, int *minor)
{
        if (strlen(v) != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
            v[6] != '.' || v[7] < '0' || v[7] > '9')
                return false;
        *major = v[5] - '0';
        *minor = v[7] - '0';
        return true;
}

static enum vg_http_parse_result parse_start_line(struct vg_http_parser *p, char *line)
{
        struct vg_http_message *m = p->msg;
        int major, minor;

        if (p->kind == VG_HTTP_KIND_REQUEST) {
                /* request-line = method SP request-target SP HTTP-version, single spaces only:
                 * splitting on runs of whitespace is how parsers come to disagree. */
                char *sp1 = strchr(line, ' '), *sp2;
                if (!sp1 || !(sp2 = strchr(sp1 + 1, ' ')))
                        return fail(p, 400,
                                    "malformed request line: expected METHOD TARGET HTTP/1.1");
                *sp1 = *sp2 = '\0';
                m->method = line;
                m->target = sp1 + 1;
                if (!vg_http_is_token(m->method))
                        return fail(p, 400, "malformed request line: invalid method");
                if (!*m->target)
                        return fail(p, 400, "malformed request line: empty request target");
                for (const char *t = m->target; *t; t++)
                        if ((uint8_t)*t <= 0x20 || (uint8_t)*t >= 0x7f)
                                return fail(p, 400, "invalid character 0x%02x in request target",
                                            (uint8_t)*t);
                if (!parse_version(sp2 + 1, &major, &minor))
                        return fail(p, 400, "malformed HTTP version in request line");
        } else {
                /* status-line = HTTP-version SP status-code SP [ reason-phrase ] */
                char *sp1 = strchr(line, ' ');
                if (!sp1)
                        return fail(p, 400, "malformed status line");
                *sp1 = '\0';
                if (!parse_version(line, &major, &minor))
                        return fail(p, 400, "malformed HTTP version in status line");
                char *code = sp1 + 1;
                if (code[0] < '1' || code[0] > '9' || code[1] < '0' || code[1] > '9' ||
                    code[2] < '0' || code[2] > '9' || (code[3] != ' ' && code[3] != '\0'))
                        return fail(p, 400, "malformed status code in status line");
                m->status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
                m->reason = code[3] ? code + 4 : code + 3;
                for (const char *r = m->reason; *r; r++)
                        if (!is_field_char((uint8_t)*r))
                                return fail(p, 400, "invalid character in reason phrase");
        }
        if (major != 1)
                return fail(p, 505, "HTTP version %d.%d is not supported, only 1.x", major, minor);
        m->version = minor == 0 ? 10 : 11;
        return VG_HTTP_PARSE_AGAIN;
}

static enum vg_http_parse_result parse_field(struct vg_http_parser *p, char *line,
                                             struct vg_http_header *h)
{
        char *colon, *v, *end;

        /* obs-fold (RFC 9112 5.2): refused rather than unfolded. */
        if (*line == ' ' || *line == '\t')
                return fail(p, 400, "obsolete line folding in header section");
        colon = strchr(line, ':');
        if (!colon)
                return fail(p, 400, "header line without a colon");
        *colon = '\0';
        /* No whitespace between name and colon (RFC 9112 5.1): it is not a tchar. */
        if (!vg_http_is_token(line))
                return fail(p, 400, "invalid header name \"%.40s\"", line);
        v = colon + 1;
        while (is_ows(*v))
                v++;
        end = v + strlen(v);
        while (end > v && is_ows(end[-1]))
                end--;
        *end = '\0';
        for (const char *c = v; *c; c++)
                if (!is_field_char((uint8_t)*c))
                        return fail(p, 400, "invalid character 0x%02x in header %s", (uint8_t)*c,
                                    line);
        h->name = line;
        h->value = v;
        return VG_HTTP_PARSE_AGAIN;
}

/* Decide how the body is framed (RFC 9112 6.3) and the connection's persistence (9.3). */
static enum vg_http_parse_result decide_framing(struct vg_http_parser *p)
{
        struct vg_http_message *m = p->msg;
        bool request = p->kind == VG_HTTP_KIND_REQUEST;
        struct length_ctx len = { .value = -1 };
        struct coding_ctx te = { 0 };
        struct conn_ctx conn = { 0 };
        size_t hosts = 0;
        bool have_len = false, have_te = false;

        for (size_t i = 0; i < m->n_headers; i++) {
                const char *n = m->headers[i].name, *v = m->headers[i].value;

                if (strcasecmp(n, "content-length") == 0) {
                        have_len = true;
                        if (for_each_element(v, length_element, &len) && !len.conflict && !len.huge)
                                return fail(p, 400, "invalid Content-Length \"%.40s\"", v);
                        if (len.conflict)
                                return fail(p, 400, "conflicting Content-Length values");
                        if (len.huge)
                                return fail(p, 413,
                                            "Content-Length %.40s exceeds the limit of %zu bytes",
                                            v, p->lim.max_body);
                } else if (strcasecmp(n, "transfer-encoding") == 0) {
                        have_te = true;
                        for_each_element(v, coding_element, &te);
                } else if (strcasecmp(n, "connection") == 0) {
                        for_each_element(v, connection_element, &conn);
                } else if (strcasecmp(n, "host") == 0) {
                        hosts++;
                } else if (request && strcasecmp(n, "expect") == 0) {
                        if (strcasecmp(v, "100-continue") != 0)
                                return fail(p, 417, "unsupported expectation \"%.40s\"", v);
                        m->expect_continue = m->version >= 11;
                }
        }

        if (request && (hosts > 1 || (hosts == 0 && m->version >= 11)))
                return fail(p, 400, hosts ? "more than one Host header" : "missing Host header");
        m->keep_alive = m->version >= 11 ? !conn.close : conn.keep_alive && !conn.close;

        bool bodyless =
            !request && (p->no_body || m->status < 200 || m->status == 204 || m->status == 304);
        if (bodyless) {
                /* Framing headers here describe a representation that is not sent. */
                p->after_head = ST_DONE;
                return VG_HTTP_PARSE_AGAIN;
        }
        if (have_te) {
                if (have_len)
                        return fail(p, 400, "both Transfer-Encoding and Content-Length present");
                if (m->version < 11)
                        return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 message");
                /* chunked at most once (RFC 9112 7) and never an empty list element. */
                if (te.empty || te.n_chunked > 1)
                        return fail(p, 400, "malformed Transfer-Encoding");
                if (!te.chunked_last) {
                        if (request)
                                return fail(p, 400, "Transfer-Encoding does not end in chunked");
                        /* RFC 9112 6.3 would read such a response to the end of the connection,
                         * still coded; nothing here could decode it. */
                        return fail(p, 501, "unsupported transfer coding in response");
                }
                if (te.other)
                        return fail(p, 501, "unsupported transfer coding, only chunked");
                m->chunked = true;
                p->after_head = ST_CHUNK_LINE;
                return VG_HTTP_PARSE_AGAIN;
        }
        if (have_len) {
                m->content_length = len.value;
                if ((uint64_t)len.value > p->lim.max_body)
                        return fail(p, 413, "body of %lld bytes exceeds the limit of %zu bytes",
                                    (long long)len.value, p->lim.max_body);
                p->remaining = (uint64_t)len.value;
                p->after_head = len.value ? ST_BODY_LENGTH : ST_DONE;
                return VG_HTTP_PARSE_AGAIN;
        }
        if (request) {
                p->after_head = ST_DONE;
        } else {
                m->keep_alive = false;
                p->after_head = ST_BODY_EOF;
        }
        return VG_HTTP_PARSE_AGAIN;
}

/* The head is complete in p->buf: lines separated by CRLF, the last one empty, no bare CR/LF
 * and no NUL (checked while it arrived). */
static enum vg_http_parse_result parse_head(struct vg_http_parser *p)
{
        _cleanup_free_ struct vg_http_message *m = calloc(1, sizeof(*m));
        enum vg_http_parse_result r;
        char *line, *next;

        if (!m)
                return fail(p, 500, "out of memory");
        m->kind = p->kind;
        m->content_length = -1;
        m->storage_ = TAKE_PTR(p->buf);
        p->len = p->cap = 0;
        m->body = calloc(1, 1);
        /* n_lines counts the start line and the final empty line. */
        m->headers = calloc(p->n_lines > 2 ? p->n_lines - 2 : 1, sizeof(*m->headers));
        p->msg = TAKE_PTR(m);
        if (!p->msg->body || !p->msg->headers)
                return fail(p, 500, "out of memory");

        line = p->msg->storage_;
        next = strstr(line, "\r\n");
        *next = '\0';
        r = parse_start_line(p, line);
        if (r != VG_HTTP_PARSE_AGAIN)
                return r;
        for (line = next + 2; *line != '\r'; line = next + 2) {
                next = strstr(line, "\r\n");
                *next = '\0';
                r = parse_field(p, line, &p->msg->headers[p->msg->n_headers]);
                if (r != VG_HTTP_PARSE_AGAIN)
                        return r;
                p->msg->n_headers++;
        }
        r = decide_framing(p);
        if (r != VG_HTTP_PARSE_AGAIN)
                return r;
        p->st = ST_HEAD_READY;
        return VG_HTTP_PARSE_AGAIN;
}

/* Track CRLF discipline for one byte: bare CR and bare LF are both refused (RFC 9112 2.2 allows
 * refusing them; accepting them is how front ends and back ends disagree). Returns 1 at the
 * end of a line, 0 otherwise, or the parse error. */
static int line_byte(struct vg_http_parser *p, uint8_t c)
{
        if (p->cr) {
                p->cr = false;
                if (c != '\n') {
                        fail(p, 400, "bare CR in message");
                        return -1;
                }
                return 1;
        }
        if (c == '\r') {
                p->cr = true;
                return 0;
        }
        if (c == '\n') {
                fail(p, 400, "bare LF in message");
                return -1;
        }
        if (c == '\0') {
                fail(p, 400, "NUL byte in message head");
                return -1;
        }
        return 0;
}

static void feed_head(struct vg_http_parser *p, const uint8_t *d, size_t len, size_t *i)
{
        while (*i < len) {
                uint8_t c = d[(*i)++];
                int eol = line_byte(p, c);

                if (eol < 0)
                        return;
                if (p->len + 1 > p->lim.max_header_bytes) {
                        if (p->n_lines == 0 && p->kind == VG_HTTP_KIND_REQUEST)
                                fail(p, 414, "request line longer than %zu bytes",
                                     p->lim.max_start_line);
                        else
                                fail(p, 431, "header section larger than %zu bytes",
                                     p->lim.max_header_bytes);
                        return;
                }
                if (buf_push(p, &c, 1) < 0) {
                        fail(p, 500, "out of memory");
                        return;
                }
                /* Refuse what is not HTTP at its first wrong byte (a TLS ClientHello on a plain
                 * port, a server that is not HTTP) instead of waiting for a line end. */
                if (p->n_lines == 0 && !eol && c != '\r') {
                        if (p->kind == VG_HTTP_KIND_RESPONSE && p->len <= 5 &&
                            c != (uint8_t) "HTTP/"[p->len - 1]) {
                                fail(p, 400, "malformed status line");
                                return;
                        }
                        if (p->kind == VG_HTTP_KIND_REQUEST && !memchr(p->buf, ' ', p->len - 1) &&
                            c != ' ' && !is_tchar(c)) {
                                fail(p, 400, "malformed request line: invalid method");
                                return;
                        }
                }
                if (p->n_lines == 0 && !eol && p->len - (p->cr ? 1 : 0) > p->lim.max_start_line) {
                        if (p->kind == VG_HTTP_KIND_REQUEST)
                                fail(p, 414, "request line longer than %zu bytes",
                                     p->lim.max_start_line);
                        else
                                fail(p, 400, "status line longer than %zu bytes",
                                     p->lim.max_start_line);
                        return;
                }
                if (!eol)
                        continue;
                size_t line_len = p->len - 2 - p->line_start;
                p->n_lines++;
                p->line_start = p->len;
                if (line_len == 0 && p->n_lines > 1) {
                        parse_head(p);
                        return;
                }
                /* Start line + fields + the empty line to come. */
                if (p->n_lines > p->lim.max_headers + 1) {
                        fail(p, 431, "more than %zu header fields", p->lim.max_headers);
                        return;
                }
        }
}

static void feed_chunk_line(struct vg_http_parser *p, const uint8_t *d, size_t len, size_t *i)
{
        while (*i < len) {
                uint8_t c = d[(*i)++];
                int eol = line_byte(p, c);

                if (eol < 0)
                        return;
                if (eol == 0) {
                        if (c != '\r' && buf_push(p, &c, 1) < 0) {
                                fail(p, 500, "out of memory");
                                return;
                        }
                        if (p->len > MAX_CHUNK_LINE) {
                                fail(p, 400, "chunk-size line longer than %d bytes",
                                     MAX_CHUNK_LINE);
                                return;
                        }
                        continue;
                }
                /* chunk = chunk-size [ chunk-ext ] CRLF (RFC 9112 7.1) */
                const char *s = p->buf ? p->buf : "";
                uint64_t size = 0;
                size_t n = 0;
                for (; s[n]; n++) {
                        int v = vg_hex_digit_value(s[n]);
                        if (v < 0)
                                break;
                        if (size > (UINT64_MAX >> 4)) {
                                fail(p, 413, "chunk size exceeds the body limit of %zu bytes",
                                     p->lim.max_body);
                                return;
                        }
                        size = size << 4 | (uint64_t)v;
                }
                if (n == 0) {
                        fail(p, 400, "malformed chunk size");
                        return;
                }
                /* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) */
                const char *e = s + n;
                while (is_ows(*e))
                        e++;
                if (*e && *e != ';') {
                        fail(p, 400, "malformed chunk size");
                        return;
                }
                if (*e == '\0' && e != s + n) {
                        fail(p, 400, "whitespace after chunk size");
                        return;
                }
                for (; *e; e++) {
                        if (!is_field_char((uint8_t)*e)) {
                                fail(p, 400, "invalid character in chunk extension");
                                return;
                        }
                }
                if (size > p->lim.max_body - p->msg->body_len) {
                        fail(p, 413, "chunked body exceeds the limit of %zu bytes",
                             p->lim.max_body);
                        return;
                }
                p->len = 0;
                if (p->buf)
                        p->buf[0] = '\0';
                p->remaining = size;
                p->st = size ? ST_CHUNK_DATA : ST_TRAILER;
                return;
        }
}

static void feed_trailer(struct vg_http_parser *p, const uint8_t *d, size_t len, size_t *i)
{
        while (*i < len) {
                uint8_t c = d[(*i)++];
                int eol = line_byte(p, c);

                if (eol < 0)
                        return;
                if (++p->trailer_bytes > p->lim.max_header_bytes) {
                        fail(p, 431, "trailer section larger than %zu bytes",
                             p->lim.max_header_bytes);
                        return;
                }
                if (eol == 0) {
                        if (c != '\r' && buf_push(p, &c, 1) < 0) {
                                fail(p, 500, "out of memory");
                                return;
                        }
                        continue;
                }
                if (p->len == 0) {
                        p->st = ST_DONE;
                        return;
                }
                /* Trailer fields are checked like header fields and then dropped: nothing here
                 * acts on them (RFC 9110 6.5.1 allows that). */
                struct vg_http_header h;
                if (parse_field(p, p->buf, &h) != VG_HTTP_PARSE_AGAIN)
                        return;
                if (++p->trailer_fields > p->lim.max_headers) {
                        fail(p, 431, "more than %zu trailer fields", p->lim.max_headers);
                        return;
                }
                p->len = 0;
                p->buf[0] = '\0';
        }
}

enum vg_http_parse_result vg_http_parser_feed(struct vg_http_parser *p, const void *data,
                                              size_t len, size_t *used)
{
        const uint8_t *d = data;
        size_t i = 0;

        for (;;) {
                switch (p->st) {
                case ST_ERROR:
                        *used = i;
                        return VG_HTTP_PARSE_ERROR;
                case ST_DONE:
                        *used = i;
                        return VG_HTTP_PARSE_DONE;
                case ST_HEAD_READY:
                        p->st = p->after_head;
                        *used = i;
                        return VG_HTTP_PARSE_HEAD;
                default:
                        break;
                }
                if (i == len) {
                        *used = i;
                        return VG_HTTP_PARSE_AGAIN;
                }

                switch (p->st) {
                case ST_START: {
                        uint8_t c = d[i];
                        if (p->kind == VG_HTTP_KIND_REQUEST &&
                            (c == '\r' || (c == '\n' && p->cr))) {
                                /* Tolerate stray CRLFs between pipelined requests (RFC 9112 2.2).
                                 */
                                int eol = line_byte(p, c);
                                i++;
                                if (eol < 0)
                                        break;
                                if (eol && ++p->leading > MAX_LEADING_CRLF)
                                        fail(p, 400,
                                             "too many empty lines before the request line");
                                break;
                        }
                        if (p->cr) {
                                i++;
                                fail(p, 400, "bare CR in message");
                                break;
                        }
                        p->started = true;
                        p->st = ST_HEAD;
                        break;
                }
                case ST_HEAD:
                        feed_head(p, d, len, &i);
                        break;
                case ST_BODY_LENGTH:
                case ST_CHUNK_DATA: {
                        size_t n = len - i;
                        if (n > p->remaining)
                                n = (size_t)p->remaining;
                        if (body_append(p, d + i, n) < 0) {
                                fail(p, 500, "out of memory");
                                break;
                        }
                        i += n;
                        p->remaining -= n;
                        if (p->remaining == 0)
                                p->st = p->st == ST_BODY_LENGTH ? ST_DONE : ST_CHUNK_CRLF;
                        break;
                }
                case ST_BODY_EOF: {
                        /* Take what fits first, so that the error comes at the same byte however
                         * the input was split. */
                        size_t n = len - i, room = p->lim.max_body - p->msg->body_len;
                        if (room == 0) {
                                fail(p, 413, "body exceeds the limit of %zu bytes",
                                     p->lim.max_body);
                                break;
                        }
                        if (n > room)
                                n = room;
                        if (body_append(p, d + i, n) < 0) {
                                fail(p, 500, "out of memory");
                                break;
                        }
                        i += n;
                        break;
                }
                case ST_CHUNK_LINE:
                        feed_chunk_line(p, d, len, &i);
                        break;
                case ST_CHUNK_CRLF: {
                        /* Exactly CRLF after chunk data: anything else is a framing error. */
                        uint8_t c = d[i++];
                        if (!p->cr && c == '\r') {
                                p->cr = true;
                        } else if (p->cr && c == '\n') {
                                p->cr = false;
                                p->st = ST_CHUNK_LINE;
                        } else {
                                fail(p, 400, "chunk data not followed by CRLF");
                        }
                        break;
                }
                case ST_TRAILER:
                        feed_trailer(p, d, len, &i);
                        break;
                default:
                        break;
                }
        }
}

enum vg_http_parse_result vg_http_parser_finish(struct vg_http_parser *p)
{
        if (p->st == ST_HEAD_READY && p->after_head == ST_BODY_EOF)
                p->st = ST_BODY_EOF;
        switch (p->st) {
        case ST_START:
                return VG_HTTP_PARSE_AGAIN;
        case ST_BODY_EOF:
                p->st = ST_DONE;
                return VG_HTTP_PARSE_DONE;
        case ST_DONE:
                return VG_HTTP_PARSE_DONE;
        case ST_ERROR:
                return VG_HTTP_PARSE_ERROR;
        case ST_HEAD:
                return fail(p, 400, "connection closed in the middle of the header section");
        default:
                return fail(p, 400, "connection closed in the middle of the body");
        }
}

const char *vg_http_status_reason(int status)
{
        static const struct {
                int code;
                const char *text;
        } reasons[] = {
                { 100, "Continue" },
                { 101, "Switching Protocols" },
                { 200, "OK" },
                { 201, "Created" },
                { 202, "Accepted" },
                { 204, "No Content" },
                { 206, "Partial Content" },
                { 301, "Moved Permanently" },
                { 302, "Found" },
                { 304, "Not Modified" },
                { 307, "Temporary Redirect" },
                { 308, "Permanent Redirect" },
                { 400, "Bad Request" },
                { 401, "Unauthorized" },
                { 403, "Forbidden" },
                { 404, "Not Found" },
                { 405, "Method Not Allowed" },
                { 406, "Not Acceptable" },
                { 408, "Request Timeout" },
                { 409, "Conflict" },
                { 410, "Gone" },
                { 411, "Length Required" },
                { 412, "Precondition Failed" },
                { 413, "Content Too Large" },
                { 414, "URI Too Long" },
                { 415, "Unsupported Media Type" },
                { 417, "Expectation Failed" },
                { 422, "Unprocessable Content" },
                { 429, "Too Many Requests" },
                { 431, "Request Header Fields Too Large" },
                { 500, "Internal Server Error" },
                { 501, "Not Implemented" },
                { 502, "Bad Gateway" },
                { 503, "Service Unavailable" },
                { 504, "Gateway Timeout" },
                { 505, "HTTP Version Not Supported" },
        };

        for (size_t i = 0; i < VG_ARRAY_SIZE(reasons); i++)
                if (reasons[i].code == status)
                        return reasons[i].text;
        return "Unknown";
}

int vg_http_percent_decode(const char *s, size_t len, bool plus_as_space, char **out)
{
        char *o = malloc(len + 1);
        size_t n = 0;

        if (!o)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (c == '%') {
                        int hi = i + 2 < len ? vg_hex_digit_value(s[i + 1]) : -1;
                        int lo = hi >= 0 ? vg_hex_digit_value(s[i + 2]) : -1;
                        if (lo < 0 || (hi | lo) == 0) {
                                free(o);
                                return -EINVAL;
                        }
                        c = (char)(hi << 4 | lo);
                        i += 2;
                } else if (c == '+' && plus_as_space) {
                        c = ' ';
                } else if (c == '\0') {
                        free(o);
                        return -EINVAL;
                }
                o[n++] = c;
        }
        o[n] = '\0';
        *out = o;
        return 0;
}

int vg_http_query_get(const char *query, const char *name, char **value)
{
        const char *q = query;

        if (!q)
                return -ENOENT;
        while (*q) {
                const char *amp = strchr(q, '&');
                size_t n = amp ? (size_t)(amp - q) : strlen(q);
                const char *eq = memchr(q, '=', n);
                size_t klen = eq ? (size_t)(eq - q) : n;
                _cleanup_free_ char *key = NULL;
                int r;

                if (n) {
                        r = vg_http_percent_decode(q, klen, true, &key);
                        if (r < 0)
                                return r;
                        if (strcmp(key, name) == 0) {
                                if (!eq)
                                        return (*value = strdup("")) ? 0 : -ENOMEM;
                                return vg_http_percent_decode(eq + 1, n - klen - 1, true, value);
                        }
                }
                if (!amp)
                        break;
                q = amp + 1;
        }
        return -ENOENT;
}
