/* vigil: asynchronous HTTP/1.1 client on bufferevents: one request per connection at a time,
 * idle connections kept per origin (scheme, host, port, TLS context) and reused.
 *
 * A verifier holds one kept-alive connection per agent, so tens of thousands of connections:
 * nothing on the request path walks them. Idle connections hang off a per-origin entry in a hash
 * table (found in O(1) when a request starts, counted when one is parked); an origin entry lives
 * while it has idle connections. Idle and request timers with the client's default durations are
 * libevent common timeouts (O(1) queues instead of the timer heap). */
#include "http_client.h"
#include "cleanup.h"
#include "log.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef VIGIL_VERSION
#define VIGIL_VERSION "0"
#endif

struct vg_http_call;
struct origin;

struct cconn {
        struct vg_http_client *client;
        struct cconn *prev, *next; /* every connection of the client */
        bool idle;
        struct origin *origin;       /* while idle */
        struct cconn *iprev, *inext; /* the origin's idle connections, last parked first */
        struct bufferevent *bev;
        struct event *connect_ev;
        struct event *idle_timer;
        int fd; /* while connecting */
        struct addrinfo *addrs, *next_addr;
        struct sockaddr_storage literal;
        socklen_t literal_len;
        int last_errno;
        char host[256];
        uint16_t port;
        bool https;
        SSL_CTX *ctx;
        char peer[300]; /* "127.0.0.1:9002", "[::1]:9002" or "name:port" */
        struct vg_http_parser *parser;
        struct vg_http_call *call;
        bool handshaking, connected, reused;
};

struct vg_http_call {
        struct vg_http_client *client;
        struct vg_http_call *prev, *next;
        vg_http_client_cb cb;
        void *userdata;
        struct event *timer; /* first the start (0 s), then the timeout */
        bool started, retried, in_callback, head, idempotent;
        unsigned timeout_ms;
        struct vg_http_url url;
        SSL_CTX *ctx;
        char *bytes; /* the serialized request, kept for a retry */
        size_t len;
        struct cconn *conn;
        char method[32];
};

/* Idle connections to one (scheme, host, port, TLS context). */
struct origin {
        struct origin *hnext; /* hash chain */
        uint64_t hash;
        bool https;
        uint16_t port;
        SSL_CTX *ctx;
        struct cconn *idle; /* last parked first */
        unsigned n_idle;
        char host[256];
};

struct vg_http_client {
        struct event_base *base;
        SSL_CTX *tls;
        unsigned timeout_ms, idle_timeout_ms, max_idle;
        size_t max_response_bytes, max_header_bytes;
        bool no_keepalive;
        char *user_agent;
        struct cconn *conns;
        struct vg_http_call *calls;
        uint64_t connects;
        struct origin **origins; /* hash table of origins with idle connections */
        size_t n_buckets, n_origins;
        const struct timeval *idle_tv, *timeout_tv; /* common timeouts, or the next two */
        struct timeval idle_timeout_tv, timeout_tv_;
};

static void conn_free(struct cconn *c);
static void call_start(struct vg_http_call *call);
static void conn_try_next(struct cconn *c);

/* ---- URLs -------------------------------------------------------------------------------- */

void vg_http_url_clear(struct vg_http_url *u)
{
        free(u->target);
        u->target = NULL;
}

int vg_http_url_parse(const char *url, struct vg_http_url *u, struct vg_error *err)
{
        const char *p, *auth_end, *host, *host_end, *port = NULL;
        unsigned char addr[16];

        memset(u, 0, sizeof(*u));
        if (strncasecmp(url, "http://", 7) == 0) {
                p = url + 7;
        } else if (strncasecmp(url, "https://", 8) == 0) {
                u->https = true;
                p = url + 8;
        } else {
                return vg_error_set(err, -EINVAL, "URL %.200s: expected http:// or https://", url);
        }
        auth_end = p + strcspn(p, "/?#");
        if (memchr(p, '@', (size_t)(auth_end - p)))
                return vg_error_set(err, -EINVAL, "URL %.200s: user info is not supported", url);
        if (*p == '[') {
                host = p + 1;
                host_end = memchr(host, ']', (size_t)(auth_end - host));
                if (!host_end)
                        return vg_error_set(err, -EINVAL, "URL %.200s: unterminated [IPv6]", url);
                if (host_end + 1 < auth_end) {
                        if (host_end[1] != ':')
                                return vg_error_set(err, -EINVAL, "URL %.200s: bad authority", url);
                        port = host_end + 2;
                }
        } else {
                host = p;
                host_end = memchr(p, ':', (size_t)(auth_end - p));
                if (host_end)
                        port = host_end + 1;
                else
                        host_end = auth_end;
        }
        size_t hlen = (size_t)(host_end - host);
        if (hlen == 0 || hlen >= sizeof(u->host))
                return vg_error_set(err, -EINVAL, "URL %.200s: missing or overlong host", url);
        memcpy(u->host, host, hlen);
        u->host[hlen] = '\0';
        if (*p == '[') {
                if (inet_pton(AF_INET6, u->host, addr) != 1)
                        return vg_error_set(err, -EINVAL, "URL %.200s: bad IPv6 address", url);
        } else {
                for (const char *h = u->host; *h; h++)
                        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
                              (*h >= '0' && *h <= '9') || *h == '.' || *h == '-' || *h == '_'))
                                return vg_error_set(err, -EINVAL, "URL %.200s: bad host name", url);
        }
        u->port = u->https ? 443 : 80;
        if (port) {
                unsigned long v = 0;
                size_t n = (size_t)(auth_end - port);
                if (n == 0 || n > 5)
                        return vg_error_set(err, -EINVAL, "URL %.200s: bad port", url);
                for (size_t i = 0; i < n; i++) {
                        if (port[i] < '0' || port[i] > '9')
                                return vg_error_set(err, -EINVAL, "URL %.200s: bad port", url);
                        v = v * 10 + (unsigned long)(port[i] - '0');
                }
                if (v == 0 || v > 65535)
                        return vg_error_set(err, -EINVAL, "URL %.200s: bad port", url);
                u->port = (uint16_t)v;
        }
        /* The fragment is the client's business, never sent (RFC 9110 4.2.4). */
        size_t tlen = strcspn(auth_end, "#");
        for (size_t i = 0; i < tlen; i++)
                if ((uint8_t)auth_end[i] <= 0x20 || (uint8_t)auth_end[i] >= 0x7f)
                        return vg_error_set(err, -EINVAL,
                                            "URL %.200s: characters that need "
                                            "percent-encoding",
                                            url);
        if (asprintf(&u->target, "%s%.*s", *auth_end == '/' ? "" : "/", (int)tlen, auth_end) < 0) {
                u->target = NULL;
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* ---- responses --------------------------------------------------------------------------- */

const char *vg_http_response_header(const struct vg_http_response *resp, const char *name)
{
        return vg_http_message_header(resp->message, name);
}

json_t *vg_http_response_json(const struct vg_http_response *resp, struct vg_error *err)
{
        json_error_t je;
        json_t *j = json_loadb((const char *)resp->body, resp->body_len, 0, &je);

        if (!j)
                vg_error_set(err, -EINVAL,
                             "response body is not valid JSON: %s (line %d, column %d)", je.text,
                             je.line, je.column);
        return j;
}

struct vg_http_response *vg_http_response_keep(struct vg_http_response *resp)
{
        resp->kept_ = true;
        return resp;
}

void vg_http_response_free(struct vg_http_response *resp)
{
        if (!resp)
                return;
        vg_http_message_free(resp->owned_);
        free(resp);
}

/* ---- calls ------------------------------------------------------------------------------- */

static void call_unlink(struct vg_http_call *call)
{
        struct vg_http_client *cl = call->client;

        if (call->prev)
                call->prev->next = call->next;
        else if (cl->calls == call)
                cl->calls = call->next;
        if (call->next)
                call->next->prev = call->prev;
        call->prev = call->next = NULL;
}

static void call_free(struct vg_http_call *call)
{
        if (call->timer)
                event_free(call->timer);
        vg_http_url_clear(&call->url);
        free(call->bytes);
        free(call);
}

/* Finish a call: exactly one of msg and err. The call is off every list before the callback
 * runs, so the callback may free the client. */
static void call_finish(struct vg_http_call *call, struct vg_http_message *msg,
                        const struct vg_error *err)
{
        struct vg_http_response *resp = NULL;

        call_unlink(call);
        if (call->conn) {
                call->conn->call = NULL;
                call->conn = NULL;
        }
        if (msg) {
                resp = calloc(1, sizeof(*resp));
                if (!resp) {
                        struct vg_error oom = { .code = -ENOMEM, .msg = "out of memory" };
                        vg_http_message_free(msg);
                        call->in_callback = true;
                        call->cb(NULL, &oom, call->userdata);
                        call_free(call);
                        return;
                }
                resp->status = msg->status;
                resp->body = msg->body;
                resp->body_len = msg->body_len;
                resp->message = msg;
                resp->owned_ = msg;
        }
        call->in_callback = true;
        call->cb(resp, resp ? NULL : err, call->userdata);
        if (resp && !resp->kept_)
                vg_http_response_free(resp);
        call_free(call);
}

static void call_fail(struct vg_http_call *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void call_fail(struct vg_http_call *call, int code, const char *fmt, ...)
{
        struct vg_error err = { 0 };
        va_list ap;

        va_start(ap, fmt);
        vg_error_setv(&err, code, fmt, ap);
        va_end(ap);
        call_finish(call, NULL, &err);
}

/* The connection failed while carrying a call: drop it and fail the call. */
static void conn_fail(struct cconn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_fail(struct cconn *c, int code, const char *fmt, ...)
{
        struct vg_http_call *call = c->call;
        struct vg_error err = { 0 };
        va_list ap;

        va_start(ap, fmt);
        vg_error_setv(&err, code, fmt, ap);
        va_end(ap);
        conn_free(c);
        if (call)
                call_finish(call, NULL, &err);
}

static void call_timer_cb(evutil_socket_t fd, short what, void *arg)
{
        struct vg_http_call *call = arg;

        if (!call->started) {
                struct timeval tv = { .tv_sec = call->timeout_ms / 1000,
                                      .tv_usec = (call->timeout_ms % 1000) * 1000 };
                struct vg_http_client *cl = call->client;
                call->started = true;
                evtimer_add(call->timer, call->timeout_ms == cl->timeout_ms ? cl->timeout_tv : &tv);
                call_start(call);
                return;
        }
        if (call->conn)
                conn_free(call->conn);
        call_fail(call, -ETIMEDOUT, "request to %s://%s%s%s:%u%s timed out after %u ms",
                  call->url.https ? "https" : "http", strchr(call->url.host, ':') ? "[" : "",
                  call->url.host, strchr(call->url.host, ':') ? "]" : "", call->url.port,
                  call->url.target, call->timeout_ms);
}

void vg_http_call_cancel(struct vg_http_call *call)
{
        if (!call || call->in_callback)
                return;
        call_unlink(call);
        if (call->conn)
                conn_free(call->conn);
        call_free(call);
}

/* ---- origins ----------------------------------------------------------------------------- */

static uint64_t origin_hash(bool https, const char *host, uint16_t port, const SSL_CTX *ctx)
{
        uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the lower-cased host */

        for (const char *p = host; *p; p++) {
                h ^= (uint8_t)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
                h *= 0x100000001b3ull;
        }
        h ^= ((uint64_t)port << 1) | (https ? 1u : 0u);
        h *= 0x100000001b3ull;
        h ^= (uint64_t)(uintptr_t)ctx >> 4;
        h *= 0x100000001b3ull;
        return h ^ (h >> 29);
}

static struct origin **origin_slot(struct vg_http_client *cl, uint64_t hash, bool https,
                                   const char *host, uint16_t port, const SSL_CTX *ctx)
{
        struct origin **p;

        if (!cl->n_buckets)
                return NULL;
        for (p = &cl->origins[hash & (cl->n_buckets - 1)]; *p; p = &(*p)->hnext)
                if ((*p)->hash == hash && (*p)->port == port && (*p)->https == https &&
                    (*p)->ctx == ctx && strcasecmp((*p)->host, host) == 0)
                        break;
        return p;
}

static struct origin *origin_find(struct vg_http_client *cl, bool https, const char *host,
                                  uint16_t port, const SSL_CTX *ctx)
{
        struct origin **p =
            origin_slot(cl, origin_hash(https, host, port, ctx), https, host, port, ctx);

        return p ? *p : NULL;
}

/* Grow at a load of 1; a failed resize keeps the table as it is (longer chains). */
static void origins_grow(struct vg_http_client *cl)
{
        size_t n = cl->n_buckets ? cl->n_buckets * 2 : 64;
        struct origin **t = calloc(n, sizeof(*t));

        if (!t)
                return;
        for (size_t i = 0; i < cl->n_buckets; i++)
                while (cl->origins[i]) {
                        struct origin *o = cl->origins[i];
                        cl->origins[i] = o->hnext;
                        o->hnext = t[o->hash & (n - 1)];
                        t[o->hash & (n - 1)] = o;
                }
        free(cl->origins);
        cl->origins = t;
        cl->n_buckets = n;
}

/* The origin entry of c, created if needed; NULL when out of memory. */
static struct origin *origin_get(struct vg_http_client *cl, const struct cconn *c)
{
        uint64_t hash = origin_hash(c->https, c->host, c->port, c->ctx);
        struct origin **p, *o;

        if (cl->n_origins >= cl->n_buckets)
                origins_grow(cl);
        p = origin_slot(cl, hash, c->https, c->host, c->port, c->ctx);
        if (!p)
                return NULL;
        if (*p)
                return *p;
        o = calloc(1, sizeof(*o));
        if (!o)
                return NULL;
        o->hash = hash;
        o->https = c->https;
        o->port = c->port;
        o->ctx = c->ctx;
        snprintf(o->host, sizeof(o->host), "%s", c->host);
        *p = o;
        cl->n_origins++;
        return o;
}

static void origin_release(struct vg_http_client *cl, struct origin *o)
{
        struct origin **p;

        if (o->n_idle)
                return;
        for (p = &cl->origins[o->hash & (cl->n_buckets - 1)]; *p != o; p = &(*p)->hnext)
                ;
        *p = o->hnext;
        cl->n_origins--;
        free(o);
}

/* Take c off its origin's idle list (it is about to carry a request, or go away). */
static void conn_unpark(struct cconn *c)
{
        struct origin *o = c->origin;

        if (!c->idle)
                return;
        c->idle = false;
        evtimer_del(c->idle_timer);
        if (o) {
                if (c->iprev)
                        c->iprev->inext = c->inext;
                else
                        o->idle = c->inext;
                if (c->inext)
                        c->inext->iprev = c->iprev;
                c->iprev = c->inext = NULL;
                c->origin = NULL;
                o->n_idle--;
                origin_release(c->client, o);
        }
}

/* ---- connections ------------------------------------------------------------------------- */

static void conn_free(struct cconn *c)
{
        struct vg_http_client *cl = c->client;

        if (c->call) {
                c->call->conn = NULL;
                c->call = NULL;
        }
        conn_unpark(c);
        if (c->prev)
                c->prev->next = c->next;
        else if (cl->conns == c)
                cl->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (c->bev)
                bufferevent_free(c->bev);
        if (c->connect_ev)
                event_free(c->connect_ev);
        if (c->fd >= 0)
                close(c->fd);
        if (c->idle_timer)
                event_free(c->idle_timer);
        if (c->addrs)
                freeaddrinfo(c->addrs);
        vg_http_parser_free(c->parser);
        SSL_CTX_free(c->ctx);
        free(c);
}

static void conn_send(struct cconn *c)
{
        struct vg_http_call *call = c->call;

        vg_http_parser_reset(c->parser);
        if (call->head)
                vg_http_parser_set_no_body(c->parser);
        bufferevent_write(c->bev, call->bytes, call->len);
}

static void idle_timer_cb(evutil_socket_t fd, short what, void *arg)
{
        conn_free(arg);
}

/* Keep a connection for the next request to the same origin, if there is room. */
static void conn_park(struct cconn *c)
{
        struct vg_http_client *cl = c->client;
        struct origin *o;

        if (cl->no_keepalive || evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ||
            !(o = origin_get(cl, c)) || o->n_idle >= cl->max_idle) {
                conn_free(c);
                return;
        }
        c->idle = true;
        c->origin = o;
        c->iprev = NULL;
        c->inext = o->idle;
        if (o->idle)
                o->idle->iprev = c;
        o->idle = c;
        o->n_idle++;
        evtimer_add(c->idle_timer, cl->idle_tv);
}

static void conn_done(struct cconn *c, struct vg_http_message *msg)
{
        struct vg_http_call *call = c->call;

        c->call = NULL;
        call->conn = NULL;
        if (msg->keep_alive)
                conn_park(c);
        else
                conn_free(c);
        call_finish(call, msg, NULL);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
        struct cconn *c = arg;
        struct evbuffer *in = bufferevent_get_input(bev);

        if (!c->call) {
                /* Bytes on an idle connection: the server is closing it or misbehaving. */
                conn_free(c);
                return;
        }
        for (;;) {
                struct evbuffer_iovec v = { 0 };
                size_t used = 0;
                const char *why;
                int status;

                if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
                        v.iov_len = 0;
                enum vg_http_parse_result r =
                    vg_http_parser_feed(c->parser, v.iov_base, v.iov_len, &used);
                if (used)
                        evbuffer_drain(in, used);
                switch (r) {
                case VG_HTTP_PARSE_AGAIN:
                        if (used == 0 || evbuffer_get_length(in) == 0)
                                return;
                        break;
                case VG_HTTP_PARSE_HEAD:
                        break;
                case VG_HTTP_PARSE_DONE: {
                        struct vg_http_message *msg = vg_http_parser_take(c->parser);
                        if (msg && msg->status >= 100 && msg->status < 200 && msg->status != 101) {
                                /* Interim response (100 Continue, 103): the final one follows. */
                                vg_http_message_free(msg);
                                if (c->call->head)
                                        vg_http_parser_set_no_body(c->parser);
                                break;
                        }
                        if (!msg || msg->status == 101) {
                                vg_http_message_free(msg);
                                conn_fail(c, -EPROTO, "unexpected protocol switch from %s",
                                          c->peer);
                                return;
                        }
                        conn_done(c, msg);
                        return;
                }
                case VG_HTTP_PARSE_ERROR:
                        status = vg_http_parser_error(c->parser, &why);
                        if (status == 413 || status == 431)
                                conn_fail(c, -EMSGSIZE, "response from %s too large: %s", c->peer,
                                          why);
                        else
                                conn_fail(c, -EPROTO, "malformed response from %s: %s", c->peer,
                                          why);
                        return;
                }
        }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
        struct cconn *c = arg;
        struct vg_http_call *call = c->call;
        SSL *ssl = c->https ? bufferevent_openssl_get_ssl(bev) : NULL;
        unsigned long e = 0, last;
        char why[256];

        if (what & BEV_EVENT_CONNECTED) {
                c->handshaking = false;
                if (call)
                        conn_send(c);
                return;
        }
        if (!call) {
                conn_free(c);
                return;
        }
        while (ssl && (last = bufferevent_get_openssl_error(bev)))
                if (!e)
                        e = last;
        if (c->handshaking) {
                vg_tls_describe_failure(ssl, e, why, sizeof(why));
                conn_fail(c, -ECONNREFUSED, "TLS handshake with %s failed: %s", c->peer, why);
                return;
        }
        if ((what & BEV_EVENT_ERROR) && e) {
                vg_tls_describe_failure(NULL, e, why, sizeof(why));
                conn_fail(c, -EPROTO, "TLS error from %s: %s", c->peer, why);
                return;
        }
        if (what & BEV_EVENT_ERROR) {
                int err = EVUTIL_SOCKET_ERROR();
                conn_fail(c, err ? -err : -EIO, "connection to %s failed: %s", c->peer,
                          err ? strerror(err) : "I/O error");
                return;
        }
        /* EOF: it may end a close-delimited body, or show a kept-alive connection went stale. */
        switch (vg_http_parser_finish(c->parser)) {
        case VG_HTTP_PARSE_DONE:
                conn_done(c, vg_http_parser_take(c->parser));
                return;
        case VG_HTTP_PARSE_AGAIN:
                /* Nothing came back on a reused connection: the server closed it as we sent.
                 * Idempotent requests may be retried (RFC 9110 9.2.2), once. */
                if (c->reused && call->idempotent && !call->retried) {
                        call->retried = true;
                        conn_free(c);
                        call_start(call);
                        return;
                }
                conn_fail(c, -ECONNRESET, "connection to %s closed before a response", c->peer);
                return;
        default: {
                const char *m;
                vg_http_parser_error(c->parser, &m);
                conn_fail(c, -EPROTO, "malformed response from %s: %s", c->peer, m);
                return;
        }
        }
}

static void connected(struct cconn *c)
{
        int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
        int fd = c->fd;
        struct vg_error err = { 0 };

        if (c->https) {
                SSL *ssl = SSL_new(c->ctx);
                if (!ssl || vg_tls_client_prepare(ssl, c->host, &err) < 0) {
                        SSL_free(ssl);
                        conn_fail(c, -EINVAL, "TLS with %s: %s", c->peer,
                                  err.msg[0] ? err.msg : "out of memory");
                        return;
                }
                c->bev = bufferevent_openssl_socket_new(c->client->base, fd, ssl,
                                                        BUFFEREVENT_SSL_CONNECTING, opts);
                if (!c->bev)
                        SSL_free(ssl);
                else
                        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
                c->handshaking = true;
        } else {
                c->bev = bufferevent_socket_new(c->client->base, fd, opts);
        }
        if (!c->bev) {
                conn_fail(c, -ENOMEM, "connection to %s: out of memory", c->peer);
                return;
        }
        c->fd = -1; /* the bufferevent owns it */
        c->connected = true;
        bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        if (!c->https && c->call)
                conn_send(c);
}

static void connect_cb(evutil_socket_t fd, short what, void *arg)
{
        struct cconn *c = arg;
        int soerr = 0;
        socklen_t len = sizeof(soerr);

        event_free(c->connect_ev);
        c->connect_ev = NULL;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
                soerr = errno;
        if (soerr) {
                c->last_errno = soerr;
                close(c->fd);
                c->fd = -1;
                conn_try_next(c);
                return;
        }
        connected(c);
}

static bool connect_one(struct cconn *c, const struct sockaddr *sa, socklen_t len)
{
        int one = 1;

        c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                c->last_errno = errno;
                return false;
        }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(c->fd, sa, len) < 0 && errno != EINPROGRESS) {
                c->last_errno = errno;
                close(c->fd);
                c->fd = -1;
                return false;
        }
        c->connect_ev = event_new(c->client->base, c->fd, EV_WRITE, connect_cb, c);
        if (!c->connect_ev || event_add(c->connect_ev, NULL) < 0) {
                c->last_errno = ENOMEM;
                close(c->fd);
                c->fd = -1;
                return false;
        }
        return true;
}

/* Try the literal address, or the resolved ones in order, until one accepts. */
static void conn_try_next(struct cconn *c)
{
        if (c->literal_len) {
                socklen_t len = c->literal_len;
                c->literal_len = 0;
                if (connect_one(c, (struct sockaddr *)&c->literal, len))
                        return;
        }
        while (c->next_addr) {
                struct addrinfo *ai = c->next_addr;
                c->next_addr = ai->ai_next;
                if (connect_one(c, ai->ai_addr, ai->ai_addrlen))
                        return;
        }
        conn_fail(c, c->last_errno ? -c->last_errno : -ECONNREFUSED, "connect to %s failed: %s",
                  c->peer, strerror(c->last_errno ? c->last_errno : ECONNREFUSED));
}

static struct cconn *conn_new(struct vg_http_call *call)
{
        struct vg_http_client *cl = call->client;
        struct vg_http_limits lim = { .max_header_bytes = cl->max_header_bytes,
                                      .max_body = cl->max_response_bytes,
                                      .max_headers = 256 };
        struct cconn *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->fd = -1;
        c->client = cl;
        if (vg_http_parser_new(VG_HTTP_KIND_RESPONSE, &lim, &c->parser) < 0 ||
            !(c->idle_timer = evtimer_new(cl->base, idle_timer_cb, c))) {
                vg_http_parser_free(c->parser);
                free(c);
                return NULL;
        }
        snprintf(c->host, sizeof(c->host), "%s", call->url.host);
        c->port = call->url.port;
        c->https = call->url.https;
        if (call->ctx) {
                SSL_CTX_up_ref(call->ctx);
                c->ctx = call->ctx;
        }
        snprintf(c->peer, sizeof(c->peer), "%s%s%s:%u", strchr(c->host, ':') ? "[" : "", c->host,
                 strchr(c->host, ':') ? "]" : "", c->port);
        c->next = cl->conns;
        if (cl->conns)
                cl->conns->prev = c;
        cl->conns = c;
        cl->connects++;
        return c;
}

static void call_start(struct vg_http_call *call)
{
        struct vg_http_client *cl = call->client;
        struct sockaddr_in *in;
        struct sockaddr_in6 *in6;
        struct cconn *c;

        /* A parked connection to the same origin and TLS context, unless this is a retry. */
        struct origin *o = call->retried ? NULL
                                         : origin_find(cl, call->url.https, call->url.host,
                                                       call->url.port, call->ctx);
        c = o ? o->idle : NULL;
        if (c) {
                conn_unpark(c);
                c->reused = true;
                c->call = call;
                call->conn = c;
                conn_send(c);
                return;
        }

        c = conn_new(call);
        if (!c) {
                call_fail(call, -ENOMEM, "out of memory");
                return;
        }
        c->call = call;
        call->conn = c;
        in = (struct sockaddr_in *)&c->literal;
        in6 = (struct sockaddr_in6 *)&c->literal;
        if (inet_pton(AF_INET, c->host, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons(c->port);
                c->literal_len = sizeof(*in);
        } else if (inet_pton(AF_INET6, c->host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(c->port);
                c->literal_len = sizeof(*in6);
        } else {
                /* Host names resolve with getaddrinfo(), which blocks the loop for the lookup:
                 * daemons are configured with addresses (Keylime's are), tools may use names. */
                struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
                char port[8];
                int r;

                snprintf(port, sizeof(port), "%u", c->port);
                r = getaddrinfo(c->host, port, &hints, &c->addrs);
                if (r != 0) {
                        c->addrs = NULL;
                        conn_fail(c, -EHOSTUNREACH, "cannot resolve %s: %s", c->host,
                                  gai_strerror(r));
                        return;
                }
                c->next_addr = c->addrs;
        }
        conn_try_next(c);
}

/* ---- the client -------------------------------------------------------------------------- */

int vg_http_client_new(struct event_base *base, const struct vg_http_client_config *cfg,
                       struct vg_http_client **out, struct vg_error *err)
{
        static const struct vg_http_client_config defaults = { 0 };
        struct vg_http_client *cl = calloc(1, sizeof(*cl));

        if (!cfg)
                cfg = &defaults;
        if (!cl)
                return vg_error_set(err, -ENOMEM, "out of memory");
        cl->base = base;
        cl->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 30000;
        cl->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 30000;
        cl->max_idle = cfg->max_idle_per_origin ? cfg->max_idle_per_origin : 4;
        cl->max_response_bytes = cfg->max_response_bytes ? cfg->max_response_bytes : 16 << 20;
        cl->max_header_bytes = cfg->max_header_bytes ? cfg->max_header_bytes : 64 << 10;
        cl->no_keepalive = cfg->no_keepalive;
        struct timeval itv = { .tv_sec = cl->idle_timeout_ms / 1000,
                               .tv_usec = (cl->idle_timeout_ms % 1000) * 1000 };
        struct timeval ttv = { .tv_sec = cl->timeout_ms / 1000,
                               .tv_usec = (cl->timeout_ms % 1000) * 1000 };
        cl->idle_timeout_tv = itv;
        cl->timeout_tv_ = ttv;
        cl->idle_tv = event_base_init_common_timeout(base, &itv);
        cl->timeout_tv = event_base_init_common_timeout(base, &ttv);
        if (!cl->idle_tv)
                cl->idle_tv = &cl->idle_timeout_tv;
        if (!cl->timeout_tv)
                cl->timeout_tv = &cl->timeout_tv_;
        cl->user_agent = strdup(cfg->user_agent ? cfg->user_agent : "vigil/" VIGIL_VERSION);
        if (!cl->user_agent || !vg_http_is_field_value(cl->user_agent)) {
                free(cl->user_agent);
                free(cl);
                return vg_error_set(err, -EINVAL, "invalid User-Agent");
        }
        if (cfg->tls) {
                SSL_CTX_up_ref(cfg->tls);
                cl->tls = cfg->tls;
        }
        *out = cl;
        return 0;
}

void vg_http_client_free(struct vg_http_client *cl)
{
        if (!cl)
                return;
        while (cl->calls)
                vg_http_call_cancel(cl->calls);
        while (cl->conns)
                conn_free(cl->conns);
        free(cl->origins); /* empty: an origin goes with its last idle connection */
        SSL_CTX_free(cl->tls);
        free(cl->user_agent);
        free(cl);
}

uint64_t vg_http_client_connects(const struct vg_http_client *cl)
{
        return cl->connects;
}

static bool header_allowed(const char *name)
{
        static const char *const ours[] = { "content-length", "transfer-encoding", "connection" };

        for (size_t i = 0; i < VG_ARRAY_SIZE(ours); i++)
                if (strcasecmp(name, ours[i]) == 0)
                        return false;
        return true;
}

static int serialize(struct vg_http_client *cl, struct vg_http_call *call,
                     const struct vg_http_client_request *req, struct vg_error *err)
{
        struct evbuffer *b = evbuffer_new();
        _cleanup_free_ char *json = NULL;
        const void *body = req->body;
        size_t body_len = req->body_len;
        const char *ctype = req->content_type;
        bool host_given = false;
        int r = 0;

        if (!b)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (req->json) {
                json = json_dumps(req->json, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!json) {
                        evbuffer_free(b);
                        return vg_error_set(err, -EINVAL, "cannot serialize the JSON body");
                }
                body = json;
                body_len = strlen(json);
                ctype = "application/json";
        }
        evbuffer_add_printf(b, "%s %s HTTP/1.1\r\n", call->method, call->url.target);
        for (size_t i = 0; req->headers && req->headers[i]; i += 2) {
                const char *n = req->headers[i], *v = req->headers[i + 1];
                if (!v || !vg_http_is_token(n) || !vg_http_is_field_value(v) ||
                    !header_allowed(n)) {
                        r = vg_error_set(err, -EINVAL,
                                         "request header %.60s is not allowed or "
                                         "malformed",
                                         n);
                        break;
                }
                host_given = host_given || strcasecmp(n, "host") == 0;
                evbuffer_add_printf(b, "%s: %s\r\n", n, v);
        }
        if (r == 0 && ctype && !vg_http_is_field_value(ctype))
                r = vg_error_set(err, -EINVAL, "malformed Content-Type");
        if (r < 0) {
                evbuffer_free(b);
                return r;
        }
        if (!host_given) {
                bool v6 = strchr(call->url.host, ':');
                bool default_port = call->url.port == (call->url.https ? 443 : 80);
                evbuffer_add_printf(b, "Host: %s%s%s", v6 ? "[" : "", call->url.host,
                                    v6 ? "]" : "");
                if (!default_port)
                        evbuffer_add_printf(b, ":%u", call->url.port);
                evbuffer_add(b, "\r\n", 2);
        }
        evbuffer_add_printf(b, "User-Agent: %s\r\n", cl->user_agent);
        if (body || strcmp(call->method, "POST") == 0 || strcmp(call->method, "PUT") == 0 ||
            strcmp(call->method, "PATCH") == 0) {
                if (ctype)
                        evbuffer_add_printf(b, "Content-Type: %s\r\n", ctype);
                evbuffer_add_printf(b, "Content-Length: %zu\r\n", body ? body_len : 0);
        }
        if (cl->no_keepalive)
                evbuffer_add_printf(b, "Connection: close\r\n");
        evbuffer_add(b, "\r\n", 2);
        if (body && body_len)
                evbuffer_add(b, body, body_len);

        call->len = evbuffer_get_length(b);
        call->bytes = malloc(call->len ? call->len : 1);
        if (!call->bytes) {
                evbuffer_free(b);
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        evbuffer_remove(b, call->bytes, call->len);
        evbuffer_free(b);
        return 0;
}

int vg_http_client_send(struct vg_http_client *cl, const struct vg_http_client_request *req,
                        vg_http_client_cb cb, void *userdata, struct vg_http_call **out,
                        struct vg_error *err)
{
        static const char *const idempotent[] = { "GET", "HEAD", "PUT", "DELETE", "OPTIONS" };
        struct vg_http_call *call;
        const char *method = req->method ? req->method : "GET";
        int r;

        if (!cb || !req->url)
                return vg_error_set(err, -EINVAL, "a request needs a URL and a callback");
        if (!vg_http_is_token(method) || strlen(method) >= sizeof(call->method))
                return vg_error_set(err, -EINVAL, "invalid method %.40s", method);
        call = calloc(1, sizeof(*call));
        if (!call)
                return vg_error_set(err, -ENOMEM, "out of memory");
        call->client = cl;
        call->cb = cb;
        call->userdata = userdata;
        call->timeout_ms = req->timeout_ms ? req->timeout_ms : cl->timeout_ms;
        snprintf(call->method, sizeof(call->method), "%s", method);
        call->head = strcmp(method, "HEAD") == 0;
        for (size_t i = 0; i < VG_ARRAY_SIZE(idempotent); i++)
                call->idempotent = call->idempotent || strcmp(method, idempotent[i]) == 0;
        r = vg_http_url_parse(req->url, &call->url, err);
        if (r == 0 && call->url.https) {
                call->ctx = req->tls ? req->tls : cl->tls;
                if (!call->ctx)
                        r = vg_error_set(err, -EINVAL,
                                         "URL %.200s is https but no TLS context "
                                         "was given",
                                         req->url);
        }
        if (r == 0)
                r = serialize(cl, call, req, err);
        if (r == 0 && !(call->timer = evtimer_new(cl->base, call_timer_cb, call)))
                r = vg_error_set(err, -ENOMEM, "out of memory");
        if (r < 0) {
                call_free(call);
                return r;
        }
        /* Start from the loop, so that the callback never runs inside this function. */
        event_active(call->timer, EV_TIMEOUT, 1);
        call->next = cl->calls;
        if (cl->calls)
                cl->calls->prev = call;
        cl->calls = call;
        if (out)
                *out = call;
        return 0;
}

/* ---- blocking wrapper -------------------------------------------------------------------- */

struct fetch_state {
        bool done;
        struct vg_http_response *resp;
        struct vg_error err;
};

static void fetch_cb(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct fetch_state *st = userdata;

        st->done = true;
        if (resp)
                st->resp = vg_http_response_keep(resp);
        else
                st->err = *err;
}

void vg_event_base_free_drained(struct event_base *base)
{
        if (!base)
                return;
        for (int i = 0; i < 4; i++)
                if (event_base_loop(base, EVLOOP_NONBLOCK) != 0)
                        break; /* nothing registered (1) or an error (-1) */
        event_base_free(base);
}

int vg_http_fetch(const struct vg_http_client_config *cfg, const struct vg_http_client_request *req,
                  struct vg_http_response **resp, struct vg_error *err)
{
        struct event_base *base = event_base_new();
        struct vg_http_client *cl = NULL;
        struct fetch_state st = { 0 };
        int r;

        *resp = NULL;
        if (!base)
                return vg_error_set(err, -ENOMEM, "cannot create an event loop");
        r = vg_http_client_new(base, cfg, &cl, err);
        if (r == 0)
                r = vg_http_client_send(cl, req, fetch_cb, &st, NULL, err);
        while (r == 0 && !st.done)
                if (event_base_loop(base, EVLOOP_ONCE) < 0)
                        r = vg_error_set(err, -EIO, "event loop failed");
        vg_http_client_free(cl);
        vg_event_base_free_drained(base);
        if (r == 0 && !st.resp) {
                if (err)
                        *err = st.err;
                r = st.err.code ? st.err.code : -EIO;
        }
        *resp = st.resp;
        return r;
}
