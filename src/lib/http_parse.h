/* vigil: incremental HTTP/1.1 parser (RFC 9112) over bytes, no I/O, shared by server, client,
 * tests and fuzzers. Framing is strict so that no request can be smuggled. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vg_http_kind {
        VG_HTTP_KIND_REQUEST,
        VG_HTTP_KIND_RESPONSE,
};

/* Hard limits on one message. A zero field takes the default below. */
struct vg_http_limits {
        size_t max_start_line;   /* request-line or status-line bytes; a request over it is 414 */
        size_t max_header_bytes; /* the whole head, start line included (and again the trailers):
                                    431 */
        size_t max_headers;      /* header fields (and again trailer fields): 431 */
        size_t max_body; /* decoded body bytes: 413, before the body is read when declared */
};

#define VG_HTTP_DEFAULT_MAX_START_LINE   8192
#define VG_HTTP_DEFAULT_MAX_HEADER_BYTES 16384
#define VG_HTTP_DEFAULT_MAX_HEADERS      100
#define VG_HTTP_DEFAULT_MAX_BODY         (1024 * 1024)

struct vg_http_header {
        const char *name;  /* as sent; compare case-insensitively */
        const char *value; /* leading and trailing whitespace removed */
};

/* One parsed message. Strings point into storage the message owns. */
struct vg_http_message {
        enum vg_http_kind kind;
        const char *method; /* requests: "GET", case-sensitive as RFC 9110 9.1 says */
        const char
            *target; /* requests: the raw request-target, e.g. "/v2.1/quotes/identity?nonce=1" */
        int status;  /* responses: 100..999 */
        const char *reason; /* responses: possibly "" */
        int version;        /* 10 for HTTP/1.0, 11 for HTTP/1.1 (and later 1.x) */
        struct vg_http_header *headers;
        size_t n_headers;
        uint8_t *body; /* NUL-terminated for convenience (not counted in body_len); never NULL */
        size_t body_len;
        int64_t content_length; /* the declared length, or -1 */
        bool chunked;           /* the body came with Transfer-Encoding: chunked */
        bool keep_alive;        /* the connection may carry another message after this one */
        bool expect_continue;   /* a request with "Expect: 100-continue" */
        char *storage_;         /* private */
};

/* First value of a header (case-insensitive name), or NULL. */
const char *vg_http_message_header(const struct vg_http_message *m, const char *name);
void vg_http_message_free(struct vg_http_message *m);

enum vg_http_parse_result {
        VG_HTTP_PARSE_AGAIN, /* all input used; the message is not complete */
        VG_HTTP_PARSE_HEAD,  /* start line and headers complete: vg_http_parser_message() is set and
                              * the body (if any) follows; reported once per message */
        VG_HTTP_PARSE_DONE,  /* the message is complete; take it before feeding the next one */
        VG_HTTP_PARSE_ERROR, /* vg_http_parser_error(); the parser stays in this state */
};

struct vg_http_parser;

/* limits may be NULL for the defaults. -ENOMEM on allocation failure. */
int vg_http_parser_new(enum vg_http_kind kind, const struct vg_http_limits *limits,
                       struct vg_http_parser **out);
void vg_http_parser_free(struct vg_http_parser *p);

/* Consume bytes; *used says how many. Parsing stops after HEAD and after DONE, so bytes of a
 * pipelined next message stay unused until the finished one is taken. */
enum vg_http_parse_result vg_http_parser_feed(struct vg_http_parser *p, const void *data,
                                              size_t len, size_t *used);

/* The peer closed the connection. DONE when that completes a close-delimited response body,
 * AGAIN when no message had begun (a clean close), ERROR when a message was cut short. */
enum vg_http_parse_result vg_http_parser_finish(struct vg_http_parser *p);

/* The message being parsed, from HEAD on (the body grows until DONE); NULL before. */
const struct vg_http_message *vg_http_parser_message(const struct vg_http_parser *p);

/* Hand the completed message to the caller and get ready for the next one; NULL unless DONE. */
struct vg_http_message *vg_http_parser_take(struct vg_http_parser *p);

/* Forget the current message (and any error) and start over. */
void vg_http_parser_reset(struct vg_http_parser *p);

/* The next response answers a HEAD request, so it has no body whatever its headers say. */
void vg_http_parser_set_no_body(struct vg_http_parser *p);

/* True once any byte of the current message (other than leading empty lines) arrived. */
bool vg_http_parser_started(const struct vg_http_parser *p);

/* After ERROR: the status the server should send (400, 413, 414, 417, 431, 501, 505) and a
 * sentence saying what was wrong. */
int vg_http_parser_error(const struct vg_http_parser *p, const char **msg);

/* "Not Found" for 404 and so on; "Unknown" for codes RFC 9110 does not name. */
const char *vg_http_status_reason(int status);

/* Percent-decode len bytes of s (RFC 3986 2.1) into a new NUL-terminated string; with
 * plus_as_space '+' becomes ' ' (form encoding, for query strings). A malformed escape or an
 * encoded NUL is -EINVAL. */
int vg_http_percent_decode(const char *s, size_t len, bool plus_as_space, char **out);

/* Look up name in an application/x-www-form-urlencoded query ("a=1&b=x%20y"), both decoded.
 * 0 and *value (new string; "" for "a" or "a=") on success, -ENOENT, or -EINVAL when a name
 * before the match, or the value found, is malformed. The first occurrence wins. */
int vg_http_query_get(const char *query, const char *name, char **value);

/* True when s is a token (RFC 9110 5.6.2): a method or header name. */
bool vg_http_is_token(const char *s);
/* True when s may be sent as a field value: no CR, LF, NUL or other control but HTAB. */
bool vg_http_is_field_value(const char *s);
