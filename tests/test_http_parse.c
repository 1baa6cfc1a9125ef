/* vigil tests: the HTTP/1.1 parser on tables of valid and invalid requests and responses, fed
 * whole, byte by byte and split at every boundary; the outcome must not depend on the split. */
#include "http_parse.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct outcome {
        enum vg_http_parse_result result;
        int status;
        char err[200];
        size_t used;
        int heads;
        struct vg_http_message *msg;
};

static void outcome_clear(struct outcome *o)
{
        vg_http_message_free(o->msg);
        memset(o, 0, sizeof(*o));
}

/* Feed pieces until DONE or ERROR. split: 0 whole, SIZE_MAX one byte at a time, else the
 * position of a single split. eof: the peer closes after the input. */
static void run(enum vg_http_kind kind, const struct vg_http_limits *lim, const char *in,
                size_t len, size_t split, bool no_body, bool eof, struct outcome *o)
{
        struct vg_http_parser *p;
        size_t off = 0;

        memset(o, 0, sizeof(*o));
        if (vg_http_parser_new(kind, lim, &p) < 0)
                tap_bail("out of memory");
        if (no_body)
                vg_http_parser_set_no_body(p);
        o->result = VG_HTTP_PARSE_AGAIN;
        while (o->result != VG_HTTP_PARSE_DONE && o->result != VG_HTTP_PARSE_ERROR) {
                size_t end = len;
                if (split == SIZE_MAX)
                        end = off + 1 < len ? off + 1 : len;
                else if (split && off < split)
                        end = split;
                size_t used;
                o->result = vg_http_parser_feed(p, in + off, end - off, &used);
                off += used;
                if (o->result == VG_HTTP_PARSE_HEAD) {
                        o->heads++;
                        continue;
                }
                if (o->result == VG_HTTP_PARSE_AGAIN && off == len) {
                        if (eof)
                                o->result = vg_http_parser_finish(p);
                        break;
                }
        }
        o->used = off;
        if (o->result == VG_HTTP_PARSE_ERROR) {
                const char *m;
                o->status = vg_http_parser_error(p, &m);
                snprintf(o->err, sizeof(o->err), "%s", m);
        }
        if (o->result == VG_HTTP_PARSE_DONE)
                o->msg = vg_http_parser_take(p);
        vg_http_parser_free(p);
}

static bool same_outcome(const struct outcome *a, const struct outcome *b)
{
        if (a->result != b->result || a->status != b->status || strcmp(a->err, b->err) != 0 ||
            a->used != b->used || a->heads != b->heads || !!a->msg != !!b->msg)
                return false;
        if (!a->msg)
                return true;
        const struct vg_http_message *x = a->msg, *y = b->msg;
        if (x->status != y->status || x->version != y->version || x->n_headers != y->n_headers ||
            x->body_len != y->body_len || memcmp(x->body, y->body, x->body_len) != 0 ||
            x->keep_alive != y->keep_alive || x->chunked != y->chunked ||
            x->expect_continue != y->expect_continue || x->content_length != y->content_length)
                return false;
        if (x->kind == VG_HTTP_KIND_REQUEST &&
            (strcmp(x->method, y->method) != 0 || strcmp(x->target, y->target) != 0))
                return false;
        for (size_t i = 0; i < x->n_headers; i++)
                if (strcmp(x->headers[i].name, y->headers[i].name) != 0 ||
                    strcmp(x->headers[i].value, y->headers[i].value) != 0)
                        return false;
        return true;
}

/* The whole-input outcome in *whole; checks every other split against it. */
static void run_all_splits(enum vg_http_kind kind, const struct vg_http_limits *lim,
                           const char *name, const char *in, size_t len, bool no_body, bool eof,
                           struct outcome *whole)
{
        struct outcome o;
        size_t bad = SIZE_MAX - 1;

        run(kind, lim, in, len, 0, no_body, eof, whole);
        run(kind, lim, in, len, SIZE_MAX, no_body, eof, &o);
        if (!same_outcome(whole, &o))
                bad = SIZE_MAX;
        outcome_clear(&o);
        for (size_t k = 1; k < len && bad == SIZE_MAX - 1; k++) {
                run(kind, lim, in, len, k, no_body, eof, &o);
                if (!same_outcome(whole, &o))
                        bad = k;
                outcome_clear(&o);
        }
        if (!ok(bad == SIZE_MAX - 1, "%s: same outcome at every split", name))
                tap_diag("differs when split %s %zu", bad == SIZE_MAX ? "byte by byte" : "at", bad);
}

static const struct vg_http_limits small = {
        .max_start_line = 64,
        .max_header_bytes = 256,
        .max_headers = 4,
        .max_body = 32,
};

struct req_ok {
        const char *name;
        const char *in;
        const char *method, *target;
        int version;
        int n_headers;
        const char *body;
        bool keep_alive;
};

static const struct req_ok req_ok_cases[] = {
        { "Keylime quote",
          "GET /v2.1/quotes/integrity?nonce=ABC123&mask=0x400&partial=1 HTTP/1.1\r\n"
          "Host: 127.0.0.1:9002\r\nAccept: */*\r\n\r\n",
          "GET", "/v2.1/quotes/integrity?nonce=ABC123&mask=0x400&partial=1", 11, 2, "", true },
        { "POST with JSON",
          "POST /v2.1/keys/ukey HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
          "Content-Length: 12\r\n\r\n{\"a\": \"b\"}\r\n",
          "POST", "/v2.1/keys/ukey", 11, 3, "{\"a\": \"b\"}\r\n", true },
        { "chunked with extension and trailer",
          "POST /rec/k HTTP/1.1\r\nHost: a\r\n"
          "Transfer-Encoding: chunked\r\n\r\n4;name=\"v\"\r\nWiki\r\n000a ; a = b\r\n0123456789\r\n"
          "0\r\nTrailer-A: 1\r\n\r\n",
          "POST", "/rec/k", 11, 2, "Wiki0123456789", true },
        { "chunk size in upper case",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
          "A\r\n0123456789\r\n0\r\n\r\n",
          "POST", "/", 11, 2, "0123456789", true },
        { "HTTP/1.0 closes by default", "GET /adv HTTP/1.0\r\n\r\n", "GET", "/adv", 10, 0, "",
          false },
        { "HTTP/1.0 keep-alive", "GET /adv HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET",
          "/adv", 10, 1, "", true },
        { "Connection: close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET", "/",
          11, 2, "", false },
        { "Connection list", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade,  CLOSE \r\n\r\n",
          "GET", "/", 11, 2, "", false },
        { "equal Content-Length list",
          "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", "PUT", "/x", 11, 2,
          "abc", true },
        { "equal Content-Length twice",
          "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
          "content-length: 003\r\n\r\nabc",
          "PUT", "/x", 11, 3, "abc", true },
        { "empty lines before request", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", 11,
          1, "", true },
        { "obs-text and OWS in value",
          "GET / HTTP/1.1\r\nHost: a\r\nX-T: \t caf\xc3\xa9 \t\r\n\r\n", "GET", "/", 11, 2, "",
          true },
        { "empty header value", "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", "GET", "/", 11, 2,
          "", true },
        { "absolute-form",
          "GET http://127.0.0.1:9002/v2.1/agents/a?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET",
          "http://127.0.0.1:9002/v2.1/agents/a?x=1", 11, 1, "", true },
        { "asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "*", 11, 1, "",
          true },
        { "HTTP/1.2 reads as 1.1", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", "GET", "/", 11, 1, "",
          true },
        { "Content-Length: 0",
          "DELETE /v2.1/agents/u HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "DELETE",
          "/v2.1/agents/u", 11, 2, "", true },
        { "extension method", "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", "BREW", "/pot", 11, 1, "",
          true },
};

struct req_bad {
        const char *name;
        const char *in;
        size_t len; /* 0: strlen */
        int status;
        const char *msg;
};

static const struct req_bad req_bad_cases[] = {
        { "CL and TE",
          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
          0, 400, "both Transfer-Encoding and Content-Length" },
        { "TE and CL",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
          0, 400, "both Transfer-Encoding and Content-Length" },
        { "differing CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 0, 400,
          "conflicting Content-Length" },
        { "differing CL headers",
          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, 400,
          "conflicting Content-Length" },
        { "negative CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 0, 400,
          "invalid Content-Length" },
        { "CL with sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 0, 400,
          "invalid Content-Length" },
        { "CL with inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 0,
          400, "invalid Content-Length" },
        { "CL in hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 0, 400,
          "invalid Content-Length" },
        { "empty CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 0, 400,
          "invalid Content-Length" },
        { "empty CL element", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 0, 400,
          "invalid Content-Length" },
        { "huge CL",
          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999999999\r\n\r\n", 0, 413,
          "exceeds the limit" },
        { "CL over the limit", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 33\r\n\r\n", 0, 413,
          "body of 33 bytes exceeds the limit of 32 bytes" },
        { "obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", 0, 400,
          "obsolete line folding" },
        { "obs-fold with tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n", 0, 400,
          "obsolete line folding" },
        { "bare CR in header", "GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n", 0, 400, "bare CR" },
        { "bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n", 0, 400, "bare LF" },
        { "bare LF in header", "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 0, 400, "bare LF" },
        { "space before colon", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
          0, 400, "invalid header name" },
        { "no colon", "GET / HTTP/1.1\r\nHost: a\r\nJunk\r\n\r\n", 0, 400, "without a colon" },
        { "empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 0, 400,
          "invalid header name" },
        { "bad header name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", 0, 400,
          "invalid header name" },
        { "control char in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n", 0, 400,
          "invalid character 0x01" },
        { "DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fz\r\n\r\n", 0, 400,
          "invalid character 0x7f" },
        { "NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0z\r\n\r\n", 33, 400, "NUL byte" },
        { "TE gzip, chunked",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, 501,
          "unsupported transfer coding" },
        { "TE chunked, gzip",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0, 400,
          "does not end in chunked" },
        { "TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 0, 400,
          "does not end in chunked" },
        { "TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 0,
          400, "does not end in chunked" },
        { "TE chunked twice",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
          "Transfer-Encoding: chunked\r\n\r\n",
          0, 400, "malformed Transfer-Encoding" },
        { "TE empty element", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n",
          0, 400, "malformed Transfer-Encoding" },
        { "TE with parameter",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 0, 400,
          "does not end in chunked" },
        { "TE obs-text", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\xff\r\n\r\n", 0,
          400, "does not end in chunked" },
        { "TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400,
          "HTTP/1.0" },
        { "no Host", "GET / HTTP/1.1\r\n\r\n", 0, 400, "missing Host" },
        { "two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, 400,
          "more than one Host" },
        { "HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, 505, "not supported" },
        { "HTTP/0.9 line", "GET /\r\n\r\n", 0, 400, "malformed request line" },
        { "version 1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 0, 400, "malformed HTTP version" },
        { "lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 0, 400,
          "malformed HTTP version" },
        { "double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400, "empty request target" },
        { "trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 0, 400,
          "malformed HTTP version" },
        { "tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400, "invalid method" },
        { "bad method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400, "invalid method" },
        { "non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400,
          "invalid character 0xc3 in request target" },
        { "request line too long",
          "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n"
          "Host: a\r\n\r\n",
          0, 414, "request line longer than 64 bytes" },
        { "header section too large",
          "GET / HTTP/1.1\r\nHost: a\r\nX-A: "
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaa"
          "aaaaa\r\n"
          "X-B: "
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaa"
          "aaaaa\r\n"
          "X-C: "
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaa"
          "aaaaa\r\n\r\n",
          0, 431, "header section larger than 256 bytes" },
        { "too many headers", "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
          0, 431, "more than 4 header fields" },
        { "bad chunk size",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, 400,
          "malformed chunk size" },
        { "chunk size with space",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\n", 0, 400,
          "whitespace after chunk size" },
        { "negative chunk size",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", 0, 400,
          "malformed chunk size" },
        { "chunk data without CRLF",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
          "5\r\nhelloXX0\r\n\r\n",
          0, 400, "chunk data not followed by CRLF" },
        { "chunk data with LF only",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
          "5\r\nhello\n0\r\n\r\n",
          0, 400, "chunk data not followed by CRLF" },
        { "chunk line bare LF",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello", 0, 400,
          "bare LF" },
        { "chunk over the limit",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n21\r\n", 0, 413,
          "chunked body exceeds the limit of 32 bytes" },
        { "chunks over the limit",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
          "10\r\n0123456789abcdef\r\n11\r\n",
          0, 413, "chunked body exceeds the limit" },
        { "chunk size overflow",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
          "fffffffffffffffffffff\r\n",
          0, 413, "exceeds the body limit" },
        { "control in chunk extension",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
          "1;a\x01\r\n",
          0, 400, "invalid character in chunk extension" },
        { "folded trailer",
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n"
          " 2\r\n\r\n",
          0, 400, "obsolete line folding" },
        { "unknown expectation", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 0, 417,
          "unsupported expectation" },
        { "too many empty lines", "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", 0,
          400, "too many empty lines" },
        { "TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0, 400,
          "invalid method" },
        { "bare CR before request", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400, "bare CR" },
};

static void test_requests(void)
{
        for (size_t i = 0; i < sizeof(req_ok_cases) / sizeof(req_ok_cases[0]); i++) {
                const struct req_ok *c = &req_ok_cases[i];
                struct outcome o;

                run_all_splits(VG_HTTP_KIND_REQUEST, NULL, c->name, c->in, strlen(c->in), false,
                               false, &o);
                if (!is_int(o.result, VG_HTTP_PARSE_DONE, "%s: parsed", c->name)) {
                        tap_diag("error %d: %s", o.status, o.err);
                        outcome_clear(&o);
                        continue;
                }
                const struct vg_http_message *m = o.msg;
                ok(strcmp(m->method, c->method) == 0 && strcmp(m->target, c->target) == 0 &&
                       m->version == c->version && (int)m->n_headers == c->n_headers &&
                       m->body_len == strlen(c->body) &&
                       memcmp(m->body, c->body, m->body_len) == 0 &&
                       m->keep_alive == c->keep_alive && o.used == strlen(c->in) && o.heads == 1,
                   "%s: method, target, version, %d headers, body, keep-alive %d", c->name,
                   c->n_headers, c->keep_alive);
                outcome_clear(&o);
        }
        for (size_t i = 0; i < sizeof(req_bad_cases) / sizeof(req_bad_cases[0]); i++) {
                const struct req_bad *c = &req_bad_cases[i];
                size_t len = c->len ? c->len : strlen(c->in);
                struct outcome o;

                run_all_splits(VG_HTTP_KIND_REQUEST, &small, c->name, c->in, len, false, false, &o);
                is_int(o.status, c->status, "%s: refused with %d", c->name, c->status);
                contains(o.err, c->msg, "%s: says why", c->name);
                outcome_clear(&o);
        }
}

static void test_details(void)
{
        struct outcome o;
        const char *in;

        in = "GET / HTTP/1.1\r\nHost: a\r\nX-T: \t caf\xc3\xa9 \t\r\nX-Empty:\r\n\r\n";
        run(VG_HTTP_KIND_REQUEST, NULL, in, strlen(in), 0, false, false, &o);
        is_str(vg_http_message_header(o.msg, "x-t"), "caf\xc3\xa9", "OWS trimmed, obs-text kept");
        is_str(vg_http_message_header(o.msg, "X-EMPTY"), "", "empty value, case-insensitive name");
        ok(vg_http_message_header(o.msg, "X-None") == NULL, "absent header is NULL");
        is_int(o.msg->content_length, -1, "no Content-Length: -1");
        outcome_clear(&o);

        in = "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nok";
        run(VG_HTTP_KIND_REQUEST, NULL, in, strlen(in), 0, false, false, &o);
        ok(o.msg && o.msg->expect_continue && o.msg->content_length == 2, "Expect: 100-continue");
        outcome_clear(&o);

        in =
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        run(VG_HTTP_KIND_REQUEST, NULL, in, strlen(in), 0, false, false, &o);
        ok(o.msg && o.msg->chunked && o.msg->content_length == -1 && o.msg->body[3] == '\0',
           "chunked flag, body NUL-terminated");
        outcome_clear(&o);

        /* Pipelined requests: parsing stops at the end of each, and the rest is the next one. */
        in = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: "
             "1\r\n\r\n"
             "xGET /c HTTP/1.1\r\nHost: a\r\n\r\n";
        struct vg_http_parser *p;
        size_t off = 0, used;
        const char *targets[3] = { 0 };
        int n = 0;
        vg_http_parser_new(VG_HTTP_KIND_REQUEST, NULL, &p);
        while (n < 3 && off <= strlen(in)) {
                enum vg_http_parse_result r =
                    vg_http_parser_feed(p, in + off, strlen(in) - off, &used);
                off += used;
                if (r == VG_HTTP_PARSE_DONE) {
                        struct vg_http_message *m = vg_http_parser_take(p);
                        targets[n++] = strcmp(m->target, "/a") == 0   ? "/a"
                                       : strcmp(m->target, "/b") == 0 ? "/b"
                                       : strcmp(m->target, "/c") == 0 ? "/c"
                                                                      : "?";
                        vg_http_message_free(m);
                } else if (r != VG_HTTP_PARSE_HEAD) {
                        break;
                }
        }
        ok(n == 3 && strcmp(targets[0], "/a") == 0 && strcmp(targets[1], "/b") == 0 &&
               strcmp(targets[2], "/c") == 0 && off == strlen(in),
           "three pipelined requests in order");
        is_int(vg_http_parser_finish(p), VG_HTTP_PARSE_AGAIN, "clean close between requests");
        vg_http_parser_free(p);

        /* A DONE parser waits to be taken; more bytes stay unused. */
        vg_http_parser_new(VG_HTTP_KIND_REQUEST, NULL, &p);
        in = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET";
        enum vg_http_parse_result r = vg_http_parser_feed(p, in, strlen(in), &used);
        ok(r == VG_HTTP_PARSE_HEAD, "HEAD reported first");
        off = used;
        r = vg_http_parser_feed(p, in + off, strlen(in) - off, &used);
        ok(r == VG_HTTP_PARSE_DONE && used == 0, "then DONE without consuming the next request");
        r = vg_http_parser_feed(p, in + off, strlen(in) - off, &used);
        ok(r == VG_HTTP_PARSE_DONE && used == 0, "DONE again until taken");
        ok(vg_http_parser_message(p) != NULL, "message visible before take");
        vg_http_message_free(vg_http_parser_take(p));
        ok(!vg_http_parser_started(p), "not started after take");
        r = vg_http_parser_feed(p, in + off, strlen(in) - off, &used);
        ok(r == VG_HTTP_PARSE_AGAIN && used == 3 && vg_http_parser_started(p),
           "next request started");
        is_int(vg_http_parser_finish(p), VG_HTTP_PARSE_ERROR, "close in the middle of a head");
        const char *m;
        is_int(vg_http_parser_error(p, &m), 400, "is a 400");
        contains(m, "connection closed in the middle of the header section", "and says so");
        r = vg_http_parser_feed(p, "x", 1, &used);
        ok(r == VG_HTTP_PARSE_ERROR && used == 0, "an error sticks");
        vg_http_parser_reset(p);
        r = vg_http_parser_feed(p, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, &used);
        ok(r == VG_HTTP_PARSE_HEAD, "reset clears the error");
        vg_http_parser_free(p);

        /* Body cut short by the peer closing. */
        in = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc";
        run(VG_HTTP_KIND_REQUEST, NULL, in, strlen(in), 0, false, true, &o);
        ok(o.result == VG_HTTP_PARSE_ERROR && strstr(o.err, "middle of the body"),
           "close in the middle of a body");
        outcome_clear(&o);

        /* Limits at exactly their value pass. */
        char line[80];
        snprintf(line, sizeof(line), "GET /%s HTTP/1.1\r\nHost: a\r\n\r\n",
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"); /* request line: 64 bytes */
        run(VG_HTTP_KIND_REQUEST, &small, line, strlen(line), 0, false, false, &o);
        is_int(o.result, VG_HTTP_PARSE_DONE, "a request line of exactly max_start_line");
        outcome_clear(&o);
        in = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
             "32\r\n\r\n0123456789abcdef0123456789abcdef";
        run(VG_HTTP_KIND_REQUEST, &small, in, strlen(in), 0, false, false, &o);
        is_int(o.result, VG_HTTP_PARSE_DONE, "a body of exactly max_body");
        outcome_clear(&o);
        in = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        run(VG_HTTP_KIND_REQUEST, &small, in, strlen(in), 0, false, false, &o);
        is_int(o.result, VG_HTTP_PARSE_DONE, "exactly max_headers fields");
        outcome_clear(&o);
}

struct resp_case {
        const char *name;
        const char *in;
        bool no_body, eof;
        int status; /* of the message, or the error status when err is set */
        const char *body;
        bool keep_alive;
        const char *err;
};

static const struct resp_case resp_cases[] = {
        { "Keylime envelope",
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 49\r\n\r\n"
          "{\"code\": 200, \"status\": \"Success\", \"results\": {}}",
          false, false, 200, "{\"code\": 200, \"status\": \"Success\", \"results\": {}}", true,
          NULL },
        { "chunked response",
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
          "chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
          false, false, 200, "Wikipedia", true, NULL },
        { "close-delimited",
          "HTTP/1.0 200 ok\r\nContent-type: text/html\r\n\r\n<HTML>s_server</HTML>", false, true,
          200, "<HTML>s_server</HTML>", false, NULL },
        { "response to HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, false, 200, "",
          true, NULL },
        { "204 ignores Content-Length", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
          false, false, 204, "", true, NULL },
        { "304 has no body", "HTTP/1.1 304 Not Modified\r\n\r\n", false, false, 304, "", true,
          NULL },
        { "100 Continue", "HTTP/1.1 100 Continue\r\n\r\n", false, false, 100, "", true, NULL },
        { "no reason phrase", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", false, false, 404, "",
          true, NULL },
        { "HTTP/1.0 keep-alive",
          "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false, false,
          200, "ok", true, NULL },
        { "bad status code", "HTTP/1.1 2x0 OK\r\n\r\n", false, false, 400, NULL, false,
          "malformed status code" },
        { "four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", false, false, 400, NULL, false,
          "malformed status code" },
        { "HTTP/2 response", "HTTP/2.0 200 OK\r\n\r\n", false, false, 505, NULL, false,
          "not supported" },
        { "CL and TE",
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
          false, false, 400, NULL, false, "both Transfer-Encoding and Content-Length" },
        { "gzip transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", false,
          true, 501, NULL, false, "unsupported transfer coding" },
        { "body over the limit", "HTTP/1.1 200 OK\r\nContent-Length: 33\r\n\r\n", false, false, 413,
          NULL, false, "exceeds the limit" },
        { "close-delimited over the limit",
          "HTTP/1.1 200 OK\r\n\r\n0123456789abcdef0123456789abcdefX", false, true, 413, NULL, false,
          "exceeds the limit of 32 bytes" },
        { "cut in a chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", false,
          true, 400, NULL, false, "closed in the middle of the body" },
        { "not HTTP", "<html>hello</html>", false, true, 400, NULL, false,
          "malformed status line" },
        { "TLS on a plain port", "\x16\x03\x01\x02\x00\x01", false, false, 400, NULL, false,
          "malformed status line" },
        { "status line too long",
          "HTTP/1.1 200 OKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK\r\n\r\n",
          false, false, 400, NULL, false, "status line longer than 64 bytes" },
        { "control in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", false, false, 400, NULL, false,
          "invalid character in reason phrase" },
};

static void test_responses(void)
{
        for (size_t i = 0; i < sizeof(resp_cases) / sizeof(resp_cases[0]); i++) {
                const struct resp_case *c = &resp_cases[i];
                struct outcome o;

                run_all_splits(VG_HTTP_KIND_RESPONSE, c->err ? &small : NULL, c->name, c->in,
                               strlen(c->in), c->no_body, c->eof, &o);
                if (c->err) {
                        is_int(o.status, c->status, "%s: refused as %d", c->name, c->status);
                        contains(o.err, c->err, "%s: says why", c->name);
                } else if (is_int(o.result, VG_HTTP_PARSE_DONE, "%s: parsed", c->name)) {
                        ok(o.msg->status == c->status && o.msg->body_len == strlen(c->body) &&
                               memcmp(o.msg->body, c->body, o.msg->body_len) == 0 &&
                               o.msg->keep_alive == c->keep_alive,
                           "%s: status %d, body, keep-alive %d", c->name, c->status, c->keep_alive);
                } else {
                        tap_diag("error %d: %s", o.status, o.err);
                }
                outcome_clear(&o);
        }

        struct outcome o;
        const char *in =
            "HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
        run(VG_HTTP_KIND_RESPONSE, NULL, in, strlen(in), 0, false, false, &o);
        ok(o.msg && strcmp(o.msg->reason, "Moved Permanently") == 0 &&
               strcmp(vg_http_message_header(o.msg, "location"), "/x") == 0,
           "reason phrase and headers");
        outcome_clear(&o);
}

static void test_helpers(void)
{
        char *s = NULL, *v = NULL;

        ok(vg_http_percent_decode("a%20b+c%2Fd", 11, true, &s) == 0 && strcmp(s, "a b c/d") == 0,
           "form decoding turns + into a space");
        free(s);
        ok(vg_http_percent_decode("a%20b+c", 7, false, &s) == 0 && strcmp(s, "a b+c") == 0,
           "path decoding keeps +");
        free(s);
        is_int(vg_http_percent_decode("%zz", 3, false, &s), -EINVAL, "bad escape refused");
        is_int(vg_http_percent_decode("a%4", 3, false, &s), -EINVAL, "short escape refused");
        is_int(vg_http_percent_decode("a%00b", 5, false, &s), -EINVAL, "encoded NUL refused");

        const char *q = "nonce=AbC%2B1&mask=0x400&partial&ima_ml_entry=&x=a+b";
        ok(vg_http_query_get(q, "nonce", &v) == 0 && strcmp(v, "AbC+1") == 0, "query nonce");
        free(v);
        ok(vg_http_query_get(q, "mask", &v) == 0 && strcmp(v, "0x400") == 0, "query mask");
        free(v);
        ok(vg_http_query_get(q, "partial", &v) == 0 && strcmp(v, "") == 0, "flag without value");
        free(v);
        ok(vg_http_query_get(q, "ima_ml_entry", &v) == 0 && strcmp(v, "") == 0, "empty value");
        free(v);
        ok(vg_http_query_get(q, "x", &v) == 0 && strcmp(v, "a b") == 0, "+ in a value");
        free(v);
        is_int(vg_http_query_get(q, "missing", &v), -ENOENT, "absent parameter");
        is_int(vg_http_query_get("%GG=1&b=1", "b", &v), -EINVAL, "malformed query");
        ok(vg_http_query_get("a=1&a=2", "a", &v) == 0 && strcmp(v, "1") == 0, "first one wins");
        free(v);

        is_str(vg_http_status_reason(413), "Content Too Large", "413 reason (RFC 9110)");
        is_str(vg_http_status_reason(431), "Request Header Fields Too Large", "431 reason");
        is_str(vg_http_status_reason(799), "Unknown", "unnamed code");
        ok(vg_http_is_token("Content-Type") && !vg_http_is_token("a b") && !vg_http_is_token(""),
           "token check");
        ok(vg_http_is_field_value("x\ty \xc3\xa9") && !vg_http_is_field_value("a\r\nb"),
           "field value check");
}

int main(void)
{
        test_requests();
        test_details();
        test_responses();
        test_helpers();
        return tap_done();
}
