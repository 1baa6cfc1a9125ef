/* vigil fuzz target: bytes as one client's input to the HTTP server (the very per-connection code
 * accepted sockets run, over a bufferevent pair), and the parser alone at random split points. */
#include "http_parse.h"
#include "http_server.h"
#include "log.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct vg_http_limits limits = {
        .max_start_line = 256,
        .max_header_bytes = 1024,
        .max_headers = 16,
        .max_body = 4096,
};

/* A transcript of everything the parser reported, to compare two feeds of the same bytes. */
static void transcript(const uint8_t *d, size_t n, uint32_t seed, struct evbuffer *out)
{
        struct vg_http_parser *p;
        size_t off = 0;

        if (vg_http_parser_new(VG_HTTP_KIND_REQUEST, &limits, &p) < 0)
                abort();
        while (off <= n) {
                size_t piece = n - off, used;
                if (seed) {
                        seed = seed * 1103515245u + 12345u;
                        piece = (seed >> 16) % 7;
                        if (piece > n - off)
                                piece = n - off;
                }
                enum vg_http_parse_result r = vg_http_parser_feed(p, d + off, piece, &used);
                if (used > piece)
                        abort();
                off += used;
                if (r == VG_HTTP_PARSE_DONE) {
                        struct vg_http_message *m = vg_http_parser_take(p);
                        uint32_t h = 2166136261u;
                        for (size_t i = 0; i < m->body_len; i++)
                                h = (h ^ m->body[i]) * 16777619u;
                        if (m->body[m->body_len] != '\0')
                                abort();
                        evbuffer_add_printf(out, "M %s %s %d %zu %zu %08x %d %d %d|", m->method,
                                            m->target, m->version, m->n_headers, m->body_len, h,
                                            m->keep_alive, m->chunked, m->expect_continue);
                        for (size_t i = 0; i < m->n_headers; i++)
                                evbuffer_add_printf(out, "%s=%s;", m->headers[i].name,
                                                    m->headers[i].value);
                        vg_http_message_free(m);
                } else if (r == VG_HTTP_PARSE_ERROR) {
                        const char *msg;
                        int st = vg_http_parser_error(p, &msg);
                        evbuffer_add_printf(out, "E %d %s", st, msg);
                        break;
                } else if (r == VG_HTTP_PARSE_HEAD) {
                        evbuffer_add_printf(out, "H|");
                } else if (off == n) {
                        evbuffer_add_printf(out, "A %d", vg_http_parser_finish(p));
                        break;
                }
        }
        vg_http_parser_free(p);
}

static void check_splits(const uint8_t *d, size_t n, uint32_t seed)
{
        struct evbuffer *a = evbuffer_new(), *b = evbuffer_new();

        transcript(d, n, 0, a);
        transcript(d, n, seed | 1, b);
        size_t la = evbuffer_get_length(a), lb = evbuffer_get_length(b);
        if (la != lb || memcmp(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1), la) != 0) {
                fprintf(stderr, "whole: %.*s\nsplit: %.*s\n", (int)la,
                        (char *)evbuffer_pullup(a, -1), (int)lb, (char *)evbuffer_pullup(b, -1));
                abort();
        }
        evbuffer_free(a);
        evbuffer_free(b);
}

static void h_sync(struct vg_http_request *req, void *ud)
{
        json_t *r = json_object();
        const char *nonce = vg_http_request_query(req, "nonce");

        json_object_set_new(r, "version", json_string(vg_http_request_param(req, "version")));
        if (nonce)
                json_object_set_new(r, "nonce", json_stringn(nonce, strlen(nonce)));
        vg_http_reply_header(req, "X-Test", vg_http_request_path(req));
        vg_http_reply_keylime(req, 200, "Success", r);
}

static void h_json(struct vg_http_request *req, void *ud)
{
        json_t *j = vg_http_request_json(req, NULL);

        if (!j) {
                vg_http_reply_error(req, 400, "bad json");
                return;
        }
        vg_http_reply_json(req, 200, j);
}

static void reply_later(evutil_socket_t fd, short what, void *arg)
{
        vg_http_reply(arg, 200, "application/jwk+json", "{}", 2);
}

static void h_async(struct vg_http_request *req, void *ud)
{
        struct timeval zero = { 0, 0 };

        event_base_once(ud, -1, EV_TIMEOUT, reply_later, req, &zero);
}

static void cancelled(struct vg_http_request *req, void *ud)
{
        vg_http_reply_error(req, 503, "gone");
}

static void h_never(struct vg_http_request *req, void *ud)
{
        vg_http_request_on_cancel(req, cancelled, NULL);
}

static void run(struct event_base *base, int rounds)
{
        for (int i = 0; i < rounds; i++)
                event_base_loop(base, EVLOOP_NONBLOCK);
}

static void serve(struct event_base *base, const uint8_t *d, size_t n, uint8_t piece)
{
        struct vg_http_server_config cfg = {
                .no_listener = true,
                .max_start_line = limits.max_start_line,
                .max_header_bytes = limits.max_header_bytes,
                .max_headers = limits.max_headers,
                .max_body_bytes = limits.max_body,
        };
        struct vg_http_server *srv;
        struct bufferevent *pair[2];

        if (vg_http_server_new(base, &cfg, &srv, NULL) < 0)
                abort();
        vg_http_server_route(srv, "GET", "/v{version}/quotes/integrity", h_sync, NULL);
        vg_http_server_route(srv, "GET", "/v{version}/agents/{uuid}", h_sync, NULL);
        vg_http_server_route(srv, "DELETE", "/v{version}/agents/{uuid}", h_sync, NULL);
        vg_http_server_route(srv, "POST", "/v{version}/keys/ukey", h_json, NULL);
        vg_http_server_route(srv, "GET", "/adv", h_async, base);
        vg_http_server_route(srv, "GET", "/adv/{thp}", h_async, base);
        vg_http_server_route(srv, "POST", "/rec/{kid}", h_async, base);
        vg_http_server_route(srv, "GET", "/slow/{id}", h_never, NULL);
        if (bufferevent_pair_new(base, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, pair) < 0)
                abort();
        vg_http_server_adopt(srv, pair[0], "fuzz");
        bufferevent_enable(pair[1], EV_READ | EV_WRITE);
        for (size_t off = 0; off < n;) {
                size_t k = piece ? piece : n - off;
                if (k > n - off)
                        k = n - off;
                bufferevent_write(pair[1], d + off, k);
                off += k;
                run(base, 3);
        }
        run(base, 8);
        /* The client goes away, then the server (with whatever a handler still holds). */
        evbuffer_drain(bufferevent_get_input(pair[1]), (size_t)-1);
        bufferevent_free(pair[1]);
        run(base, 3);
        vg_http_server_free(srv);
        run(base, 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct event_base *base;

        if (size < 2)
                return 0;
        if (!base) {
                /* Refusals are logged per request; a fuzzer would drown in them. */
                vg_log_setup(&(struct vg_log_config){ .level = VG_LOG_ERR });
                base = event_base_new();
        }
        check_splits(data + 2, size - 2, (uint32_t)data[0] << 8 | data[1]);
        serve(base, data + 2, size - 2, data[0] & 0x1f);
        return 0;
}
