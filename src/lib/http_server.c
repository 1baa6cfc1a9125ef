/* vigil: HTTP/1.1 server on libevent bufferevents (plain or OpenSSL). One request per connection
 * is in flight at a time, so pipelined requests are answered in order by construction. */
#include "http_server.h"
#include "cleanup.h"
#include "log.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PEER_LEN 64
/* Unparsed input held while a handler works; reading pauses above it (pipelining back-pressure). */
#define INPUT_HIGH_WATERMARK (256 * 1024)
/* Lingering close: how long and how much we keep reading after the last response. */
#define LINGER_MS        2000
#define LINGER_MAX_BYTES (1024 * 1024)

struct segment {
        char *prefix; /* the whole literal when param is NULL */
        char *suffix;
        char *param;
};

struct route {
        char *method;
        struct segment *segs;
        size_t n_segs;
        vg_http_handler_fn fn;
        void *userdata;
};

struct conn;

struct vg_http_server {
        struct event_base *base;
        struct evconnlistener *listener;
        SSL_CTX *tls;
        char *name;
        struct vg_http_limits limits;
        unsigned max_connections;
        unsigned header_timeout_ms, body_timeout_ms, idle_timeout_ms, write_timeout_ms;
        struct route *routes;
        size_t n_routes;
        struct conn *conns;
        size_t n_conns;
        uint64_t accepted;
};

enum conn_state {
        C_HANDSHAKE, /* TLS handshake in progress */
        C_READ,      /* reading a request (or waiting for one) */
        C_HANDLER,   /* a handler holds the request */
        C_WRITE,     /* the response is leaving */
        C_LINGER,    /* write side shut, draining input before close */
};

enum timer_kind {
        T_NONE,
        T_HANDSHAKE,
        T_HEADER,
        T_BODY,
        T_IDLE,
        T_LINGER,
};

struct conn {
        struct vg_http_server *srv;
        struct conn *prev, *next;
        struct bufferevent *bev;
        struct event *timer;
        enum timer_kind timer_kind;
        struct vg_http_parser *parser;
        enum conn_state state;
        bool tls;
        bool close_after; /* close once the current response is written */
        struct vg_http_request *req;
        X509 *peer_cert;
        char *peer_subject;
        char peer[PEER_LEN];
        size_t lingered;
        unsigned long served;
};

struct kv {
        char *name;
        char *value;
};

struct vg_http_request {
        struct conn *conn; /* NULL once the client is gone */
        struct vg_http_message *msg;
        char *path;
        struct kv *params;
        size_t n_params;
        struct kv *query;
        size_t n_query;
        struct evbuffer *headers; /* extra response headers */
        vg_http_cancel_fn cancel_fn;
        void *cancel_ud;
        bool head; /* HEAD served by a GET route: no body */
        X509 *peer_cert;
        char *peer_subject;
        char peer[PEER_LEN];
};

static void process_input(struct conn *c);
static void conn_free(struct conn *c);

static const char *const known_methods[] = {
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
};

static void format_peer(const struct sockaddr *sa, char *out, size_t len)
{
        char host[INET6_ADDRSTRLEN] = "?";

        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                snprintf(out, len, "%s:%u", host, ntohs(in->sin_port));
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
        } else {
                snprintf(out, len, "unknown");
        }
}

static void arm(struct conn *c, enum timer_kind kind, unsigned ms)
{
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        c->timer_kind = kind;
        evtimer_add(c->timer, &tv);
}

static void disarm(struct conn *c)
{
        c->timer_kind = T_NONE;
        evtimer_del(c->timer);
}

/* ---- requests ---------------------------------------------------------------------------- */

static void kv_free(struct kv *kv, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(kv[i].name);
                free(kv[i].value);
        }
        free(kv);
}

static void request_free(struct vg_http_request *req)
{
        if (!req)
                return;
        vg_http_message_free(req->msg);
        free(req->path);
        kv_free(req->params, req->n_params);
        kv_free(req->query, req->n_query);
        if (req->headers)
                evbuffer_free(req->headers);
        X509_free(req->peer_cert);
        free(req->peer_subject);
        free(req);
}

const char *vg_http_request_method(const struct vg_http_request *req)
{
        return req->msg->method;
}

const char *vg_http_request_target(const struct vg_http_request *req)
{
        return req->msg->target;
}

const char *vg_http_request_path(const struct vg_http_request *req)
{
        return req->path;
}

static const char *kv_get(const struct kv *kv, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(kv[i].name, name) == 0)
                        return kv[i].value;
        return NULL;
}

const char *vg_http_request_param(const struct vg_http_request *req, const char *name)
{
        return kv_get(req->params, req->n_params, name);
}

const char *vg_http_request_query(const struct vg_http_request *req, const char *name)
{
        return kv_get(req->query, req->n_query, name);
}

const char *vg_http_request_header(const struct vg_http_request *req, const char *name)
{
        return vg_http_message_header(req->msg, name);
}

const struct vg_http_message *vg_http_request_message(const struct vg_http_request *req)
{
        return req->msg;
}

const uint8_t *vg_http_request_body(const struct vg_http_request *req, size_t *len)
{
        if (len)
                *len = req->msg->body_len;
        return req->msg->body;
}

const char *vg_json_type_name(const json_t *v)
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
        default:
                return "null";
        }
}

json_t *vg_http_request_json(const struct vg_http_request *req, struct vg_error *err)
{
        json_error_t je;
        json_t *j = json_loadb((const char *)req->msg->body, req->msg->body_len, 0, &je);

        if (!j)
                vg_error_set(err, -EINVAL,
                             "request body is not valid JSON: %s (line %d, column %d)", je.text,
                             je.line, je.column);
        return j;
}

const char *vg_http_request_peer(const struct vg_http_request *req)
{
        return req->peer;
}

X509 *vg_http_request_peer_cert(const struct vg_http_request *req)
{
        return req->peer_cert;
}

const char *vg_http_request_peer_subject(const struct vg_http_request *req)
{
        return req->peer_subject;
}

bool vg_http_request_connected(const struct vg_http_request *req)
{
        return req->conn != NULL;
}

void vg_http_request_on_cancel(struct vg_http_request *req, vg_http_cancel_fn fn, void *userdata)
{
        req->cancel_fn = fn;
        req->cancel_ud = userdata;
}

int vg_http_reply_header(struct vg_http_request *req, const char *name, const char *value)
{
        static const char *const reserved[] = { "content-length", "transfer-encoding", "connection",
                                                "date" };

        if (!vg_http_is_token(name) || !vg_http_is_field_value(value))
                return -EINVAL;
        for (size_t i = 0; i < VG_ARRAY_SIZE(reserved); i++)
                if (strcasecmp(name, reserved[i]) == 0)
                        return -EINVAL;
        if (!req->headers && !(req->headers = evbuffer_new()))
                return -ENOMEM;
        return evbuffer_add_printf(req->headers, "%s: %s\r\n", name, value) < 0 ? -ENOMEM : 0;
}

/* ---- responses --------------------------------------------------------------------------- */

/* IMF-fixdate (RFC 9110 5.6.7), independent of the locale. */
static void http_date(char *out, size_t len)
{
        static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        time_t now = time(NULL);
        struct tm tm;

        gmtime_r(&now, &tm);
        snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
                 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Queue one whole response on the connection; the write callback takes it from there. All of
 * it goes into the output buffer before the loop runs, so it leaves in one write. */
static void respond(struct conn *c, const struct vg_http_request *req, int status,
                    const char *ctype, const void *body, size_t len)
{
        struct evbuffer *out = bufferevent_get_output(c->bev);
        bool has_body = status >= 200 && status != 204 && status != 304;
        char date[40];

        if (!req)
                c->close_after = true;
        http_date(date, sizeof(date));
        evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
                            vg_http_status_reason(status), date);
        if (has_body) {
                if (ctype)
                        evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
                evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
        }
        if (c->close_after)
                evbuffer_add_printf(out, "Connection: close\r\n");
        else if (req && req->msg->version == 10)
                evbuffer_add_printf(out, "Connection: keep-alive\r\n");
        if (req && req->headers)
                evbuffer_add_buffer(out, req->headers);
        evbuffer_add(out, "\r\n", 2);
        if (has_body && len && !(req && req->head))
                evbuffer_add(out, body, len);
        disarm(c);
        c->state = C_WRITE;
}

static json_t *keylime_envelope(int code, const char *status, json_t *results)
{
        json_t *o = json_object();
        json_t *s = status ? json_string(status) : NULL;

        if (!s)
                s = json_string(vg_http_status_reason(code));
        json_object_set_new(o, "code", json_integer(code));
        json_object_set_new(o, "status", s);
        json_object_set_new(o, "results", results ? results : json_object());
        return o;
}

/* A response the server makes itself (parse errors, timeouts, routing): Keylime's envelope. */
static void respond_error(struct conn *c, const struct vg_http_request *req, int status,
                          const char *msg)
{
        json_t *o = keylime_envelope(status, msg, NULL);
        char *s = o ? json_dumps(o, 0) : NULL;

        respond(c, req, status, "application/json", s ? s : "", s ? strlen(s) : 0);
        free(s);
        json_decref(o);
}

int vg_http_reply(struct vg_http_request *req, int status, const char *content_type,
                  const void *body, size_t len)
{
        struct conn *c = req->conn;
        int r = 0;

        if (!c) {
                request_free(req);
                return -ENOTCONN;
        }
        if (status < 200 || status > 599 ||
            (content_type && !vg_http_is_field_value(content_type))) {
                vg_err(VG_F("server", c->srv->name, "peer", req->peer),
                       "handler for %s %s gave an invalid reply (status %d)", req->msg->method,
                       req->path, status);
                respond_error(c, req, 500, "Internal Server Error");
                r = -EINVAL;
        } else {
                respond(c, req, status, content_type, body, len);
        }
        vg_debug(VG_F("server", c->srv->name, "peer", req->peer, "client", req->peer_subject),
                 "%s %s -> %d", req->msg->method, req->msg->target, r ? 500 : status);
        c->req = NULL;
        request_free(req);
        return r;
}

int vg_http_reply_json(struct vg_http_request *req, int status, json_t *json)
{
        char *s = json ? json_dumps(json, JSON_ENCODE_ANY) : NULL;
        int r;

        json_decref(json);
        if (!s) {
                struct conn *c = req->conn;
                if (c) {
                        respond_error(c, req, 500, "Internal Server Error");
                        c->req = NULL;
                }
                request_free(req);
                return c ? -ENOMEM : -ENOTCONN;
        }
        r = vg_http_reply(req, status, "application/json", s, strlen(s));
        free(s);
        return r;
}

int vg_http_reply_keylime(struct vg_http_request *req, int code, const char *status,
                          json_t *results)
{
        return vg_http_reply_json(req, code, keylime_envelope(code, status, results));
}

int vg_http_reply_error(struct vg_http_request *req, int code, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return vg_http_reply_keylime(req, code, msg, NULL);
}

int vg_http_refuse(struct vg_http_request *req, int code, const char *agent, const char *fmt, ...)
{
        char msg[700];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        vg_warn(VG_F("agent", agent, "peer", vg_http_request_peer(req)), "%s %s refused (%d): %s",
                vg_http_request_method(req), vg_http_request_path(req), code, msg);
        vg_http_reply_error(req, code, "%s", msg);
        return 0;
}

/* ---- routing ----------------------------------------------------------------------------- */

static void segments_free(struct segment *segs, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(segs[i].prefix);
                free(segs[i].suffix);
                free(segs[i].param);
        }
        free(segs);
}

static int parse_segment(const char *s, size_t n, struct segment *seg)
{
        const char *open = memchr(s, '{', n), *close = memchr(s, '}', n);

        if (!open && !close) {
                seg->prefix = strndup(s, n);
                return seg->prefix ? 0 : -ENOMEM;
        }
        if (!open || !close || close < open + 2)
                return -EINVAL;
        for (const char *p = open + 1; p < close; p++)
                if (!(*p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                      (*p >= 'A' && *p <= 'Z')))
                        return -EINVAL;
        if (memchr(close + 1, '{', (size_t)(s + n - close - 1)) ||
            memchr(close + 1, '}', (size_t)(s + n - close - 1)))
                return -EINVAL;
        seg->prefix = strndup(s, (size_t)(open - s));
        seg->param = strndup(open + 1, (size_t)(close - open - 1));
        seg->suffix = strndup(close + 1, (size_t)(s + n - close - 1));
        return seg->prefix && seg->param && seg->suffix ? 0 : -ENOMEM;
}

int vg_http_server_route(struct vg_http_server *srv, const char *method, const char *pattern,
                         vg_http_handler_fn fn, void *userdata)
{
        struct segment *segs = NULL;
        size_t n = 0;
        int r = 0;

        if (!vg_http_is_token(method) || !pattern || pattern[0] != '/' || !fn)
                return -EINVAL;
        for (const char *p = pattern; *p;) {
                size_t len = strcspn(p, "/");
                if (len) {
                        struct segment *ns = realloc(segs, (n + 1) * sizeof(*segs));
                        if (!ns) {
                                r = -ENOMEM;
                                break;
                        }
                        segs = ns;
                        memset(&segs[n], 0, sizeof(segs[n]));
                        r = parse_segment(p, len, &segs[n++]);
                        if (r < 0)
                                break;
                }
                p += len;
                if (*p == '/')
                        p++;
        }
        if (r == 0) {
                struct route *nr = realloc(srv->routes, (srv->n_routes + 1) * sizeof(*nr));
                char *m = strdup(method);
                if (!nr || !m) {
                        free(m);
                        if (nr)
                                srv->routes = nr;
                        r = -ENOMEM;
                } else {
                        srv->routes = nr;
                        nr[srv->n_routes++] = (struct route){ .method = m,
                                                              .segs = segs,
                                                              .n_segs = n,
                                                              .fn = fn,
                                                              .userdata = userdata };
                        return 0;
                }
        }
        segments_free(segs, n);
        return r;
}

/* rank[i]: 2 for a literal, 1 for a parameter with a prefix or suffix, 0 for a bare one. */
static bool route_match(const struct route *rt, char **segs, size_t n, uint8_t *rank)
{
        if (rt->n_segs != n)
                return false;
        for (size_t i = 0; i < n; i++) {
                const struct segment *s = &rt->segs[i];
                if (!s->param) {
                        if (strcmp(segs[i], s->prefix) != 0)
                                return false;
                        rank[i] = 2;
                        continue;
                }
                size_t lp = strlen(s->prefix), ls = strlen(s->suffix), lv = strlen(segs[i]);
                if (lv <= lp + ls || strncmp(segs[i], s->prefix, lp) != 0 ||
                    strcmp(segs[i] + lv - ls, s->suffix) != 0)
                        return false;
                rank[i] = lp || ls ? 1 : 0;
        }
        return true;
}

static const struct route *find_route(struct vg_http_server *srv, const char *method, char **segs,
                                      size_t n, uint8_t *rank, uint8_t *best_rank)
{
        const struct route *best = NULL;

        for (size_t i = 0; i < srv->n_routes; i++) {
                const struct route *rt = &srv->routes[i];
                if (strcmp(rt->method, method) != 0 || !route_match(rt, segs, n, rank))
                        continue;
                if (best && memcmp(rank, best_rank, n) <= 0)
                        continue;
                best = rt;
                memcpy(best_rank, rank, n);
        }
        return best;
}

static void strv_free(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/* Split the path into decoded, non-empty segments. -EINVAL for bad escapes and dot segments. */
static int split_path(const char *path, char ***out, size_t *n_out)
{
        char **segs = NULL;
        size_t n = 0;

        for (const char *p = path; *p;) {
                size_t len = strcspn(p, "/");
                if (len) {
                        char **ns = realloc(segs, (n + 1) * sizeof(*segs));
                        if (!ns) {
                                strv_free(segs, n);
                                return -ENOMEM;
                        }
                        segs = ns;
                        int r = vg_http_percent_decode(p, len, false, &segs[n]);
                        if (r < 0) {
                                strv_free(segs, n);
                                return r;
                        }
                        n++;
                        /* Dot segments would let a {name} parameter reach a parent directory. */
                        if (strcmp(segs[n - 1], ".") == 0 || strcmp(segs[n - 1], "..") == 0) {
                                strv_free(segs, n);
                                return -EINVAL;
                        }
                }
                p += len;
                if (*p == '/')
                        p++;
        }
        *out = segs;
        *n_out = n;
        return 0;
}

static int parse_query(struct vg_http_request *req, const char *q)
{
        while (q && *q) {
                const char *amp = strchr(q, '&');
                size_t n = amp ? (size_t)(amp - q) : strlen(q);
                const char *eq = memchr(q, '=', n);
                size_t klen = eq ? (size_t)(eq - q) : n;

                if (n) {
                        struct kv *nq = realloc(req->query, (req->n_query + 1) * sizeof(*nq));
                        if (!nq)
                                return -ENOMEM;
                        req->query = nq;
                        struct kv *kv = &nq[req->n_query];
                        *kv = (struct kv){ 0 };
                        int r = vg_http_percent_decode(q, klen, true, &kv->name);
                        if (r == 0)
                                r = eq ? vg_http_percent_decode(eq + 1, n - klen - 1, true,
                                                                &kv->value)
                                       : ((kv->value = strdup("")) ? 0 : -ENOMEM);
                        req->n_query++;
                        if (r < 0)
                                return r;
                }
                q = amp ? amp + 1 : NULL;
        }
        return 0;
}

/* Add a method to an Allow value once (RFC 9110 10.2.1). */
static void allow_add(char *allow, size_t size, const char *method)
{
        size_t n = strlen(method), len = strlen(allow);

        for (const char *p = allow; (p = strstr(p, method)); p += n)
                if ((p == allow || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
                        return;
        if (len + n + 3 < size)
                snprintf(allow + len, size - len, "%s%s", len ? ", " : "", method);
}

static void refuse(struct conn *c, struct vg_http_request *req, int status, const char *msg)
{
        vg_notice(VG_F("server", c->srv->name, "peer", req->peer, "client", req->peer_subject),
                  "refused %.16s %.200s: %d %s", req->msg->method, req->msg->target, status, msg);
        respond_error(c, req, status, msg);
        c->req = NULL;
        request_free(req);
}

static void route_request(struct conn *c, struct vg_http_request *req)
{
        struct vg_http_server *srv = c->srv;
        const char *method = req->msg->method, *t = req->msg->target;
        _cleanup_free_ uint8_t *rank = NULL, *best_rank = NULL;
        char **segs = NULL, allow[128] = "";
        const struct route *rt;
        size_t n = 0;
        bool known = false, path_matches = false;

        /* absolute-form must be accepted (RFC 9112 3.2.2); only origin-form is routed. */
        if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
                t = strstr(t, "://") + 3;
                t += strcspn(t, "/?");
        }
        if (*t != '/' && *t != '?' && *t != '\0') {
                refuse(c, req, 400, "unsupported request target");
                return;
        }
        size_t plen = strcspn(t, "?");
        req->path = *t == '/' ? strndup(t, plen) : strdup("/");
        if (!req->path) {
                refuse(c, req, 500, "out of memory");
                return;
        }
        if (parse_query(req, t[plen] == '?' ? t + plen + 1 : NULL) < 0) {
                refuse(c, req, 400, "malformed query string");
                return;
        }
        if (split_path(req->path, &segs, &n) < 0) {
                refuse(c, req, 400, "malformed path");
                return;
        }
        rank = calloc(n + 1, 1);
        best_rank = calloc(n + 1, 1);
        if (!rank || !best_rank) {
                strv_free(segs, n);
                refuse(c, req, 500, "out of memory");
                return;
        }

        rt = find_route(srv, method, segs, n, rank, best_rank);
        if (!rt && strcmp(method, "HEAD") == 0) {
                rt = find_route(srv, "GET", segs, n, rank, best_rank);
                req->head = rt != NULL;
        }
        if (!rt) {
                for (size_t i = 0; i < VG_ARRAY_SIZE(known_methods); i++)
                        known = known || strcmp(method, known_methods[i]) == 0;
                for (size_t i = 0; i < srv->n_routes; i++) {
                        const struct route *r = &srv->routes[i];
                        known = known || strcmp(method, r->method) == 0;
                        if (!route_match(r, segs, n, rank))
                                continue;
                        path_matches = true;
                        allow_add(allow, sizeof(allow), r->method);
                        if (strcmp(r->method, "GET") == 0)
                                allow_add(allow, sizeof(allow), "HEAD");
                }
        }
        if (!rt) {
                strv_free(segs, n);
                if (!known) {
                        refuse(c, req, 501, "method not implemented");
                        return;
                }
                if (!path_matches) {
                        refuse(c, req, 404, "Not Found");
                        return;
                }
                vg_http_reply_header(req, "Allow", allow);
                refuse(c, req, 405, "Method Not Allowed");
                return;
        }

        for (size_t i = 0; i < n; i++) {
                const struct segment *s = &rt->segs[i];
                if (!s->param)
                        continue;
                struct kv *np = realloc(req->params, (req->n_params + 1) * sizeof(*np));
                if (!np)
                        break;
                req->params = np;
                size_t lp = strlen(s->prefix), ls = strlen(s->suffix);
                np[req->n_params].name = strdup(s->param);
                np[req->n_params].value = strndup(segs[i] + lp, strlen(segs[i]) - lp - ls);
                req->n_params++;
        }
        strv_free(segs, n);
        rt->fn(req, rt->userdata);
}

/* ---- connections ------------------------------------------------------------------------- */

static void dispatch(struct conn *c, struct vg_http_message *msg)
{
        struct vg_http_request *req = calloc(1, sizeof(*req));

        disarm(c);
        if (!req) {
                vg_http_message_free(msg);
                vg_err(VG_F("server", c->srv->name, "peer", c->peer), "out of memory");
                respond_error(c, NULL, 500, "Internal Server Error");
                return;
        }
        req->conn = c;
        req->msg = msg;
        snprintf(req->peer, sizeof(req->peer), "%s", c->peer);
        if (c->peer_cert && X509_up_ref(c->peer_cert) == 1)
                req->peer_cert = c->peer_cert;
        if (c->peer_subject)
                req->peer_subject = strdup(c->peer_subject);
        c->req = req;
        c->state = C_HANDLER;
        c->close_after = !msg->keep_alive;
        route_request(c, req);
}

static void on_head(struct conn *c)
{
        const struct vg_http_message *m = vg_http_parser_message(c->parser);

        if (!m || !(m->chunked || m->content_length > 0))
                return;
        arm(c, T_BODY, c->srv->body_timeout_ms);
        /* RFC 9110 10.1.1: the client waits for this before sending the body (curl does). */
        if (m->expect_continue)
                evbuffer_add_printf(bufferevent_get_output(c->bev),
                                    "HTTP/1.1 100 Continue\r\n\r\n");
}

static void process_input(struct conn *c)
{
        struct evbuffer *in = bufferevent_get_input(c->bev);

        while (c->state == C_READ) {
                struct evbuffer_iovec v = { 0 };
                bool started = vg_http_parser_started(c->parser);
                size_t used = 0;
                const char *msg;
                int status;

                if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
                        v.iov_len = 0;
                enum vg_http_parse_result r =
                    vg_http_parser_feed(c->parser, v.iov_base, v.iov_len, &used);
                if (used)
                        evbuffer_drain(in, used);
                if (!started && vg_http_parser_started(c->parser) && c->timer_kind == T_IDLE)
                        arm(c, T_HEADER, c->srv->header_timeout_ms);
                else if (c->timer_kind == T_BODY && used)
                        arm(c, T_BODY, c->srv->body_timeout_ms);

                switch (r) {
                case VG_HTTP_PARSE_AGAIN:
                        if (used == 0 || evbuffer_get_length(in) == 0)
                                return;
                        break;
                case VG_HTTP_PARSE_HEAD:
                        on_head(c);
                        break;
                case VG_HTTP_PARSE_DONE:
                        dispatch(c, vg_http_parser_take(c->parser));
                        /* The handler may have done anything; c is valid but touch nothing. */
                        return;
                case VG_HTTP_PARSE_ERROR:
                        status = vg_http_parser_error(c->parser, &msg);
                        vg_notice(VG_F("server", c->srv->name, "peer", c->peer),
                                  "refused request: %d %s", status, msg);
                        respond_error(c, NULL, status, msg);
                        return;
                }
        }
}

/* After the last response: close, lingering on plain sockets (RFC 9112 9.6) so that request
 * bytes still in flight do not turn into a RST that destroys the response before it is read. */
static void conn_finish(struct conn *c)
{
        int fd = bufferevent_getfd(c->bev);

        if (c->tls) {
                SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
                if (ssl)
                        SSL_shutdown(ssl);
                ERR_clear_error();
                conn_free(c);
                return;
        }
        if (fd < 0 || shutdown(fd, SHUT_WR) < 0) {
                conn_free(c);
                return;
        }
        c->state = C_LINGER;
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
        bufferevent_disable(c->bev, EV_WRITE);
        bufferevent_enable(c->bev, EV_READ);
        arm(c, T_LINGER, LINGER_MS);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
        struct conn *c = arg;
        struct evbuffer *in = bufferevent_get_input(bev);

        if (c->state == C_LINGER) {
                c->lingered += evbuffer_get_length(in);
                evbuffer_drain(in, evbuffer_get_length(in));
                if (c->lingered > LINGER_MAX_BYTES)
                        conn_free(c);
                return;
        }
        if (c->state == C_READ)
                process_input(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
        struct conn *c = arg;

        if (c->state != C_WRITE || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
                return;
        c->served++;
        if (c->close_after) {
                conn_finish(c);
                return;
        }
        c->state = C_READ;
        arm(c, T_IDLE, c->srv->idle_timeout_ms);
        process_input(c);
}

static void on_handshake(struct conn *c)
{
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        X509 *cert = ssl ? SSL_get1_peer_certificate(ssl) : NULL;

        if (cert && SSL_get_verify_result(ssl) == X509_V_OK) {
                char fp[65];
                c->peer_cert = cert;
                c->peer_subject = vg_tls_cert_subject(cert);
                vg_tls_cert_fingerprint(cert, fp);
                vg_debug(VG_F("server", c->srv->name, "peer", c->peer, "client", c->peer_subject),
                         "TLS client certificate sha256:%s", fp);
        } else {
                X509_free(cert);
        }
        c->state = C_READ;
        /* The header deadline, armed at accept, covers the handshake and the first request. */
        c->timer_kind = T_HEADER;
        process_input(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
        struct conn *c = arg;
        const char *const *f = VG_F("server", c->srv->name, "peer", c->peer);

        if (what & BEV_EVENT_CONNECTED) {
                if (c->state == C_HANDSHAKE)
                        on_handshake(c);
                return;
        }
        if (c->state == C_HANDSHAKE) {
                char why[256];
                unsigned long e = 0, last;
                /* The first queued error is the cause; the rest are consequences. */
                while ((last = bufferevent_get_openssl_error(bev)))
                        if (!e)
                                e = last;
                if (what & BEV_EVENT_ERROR) {
                        vg_tls_describe_failure(bufferevent_openssl_get_ssl(bev), e, why,
                                                sizeof(why));
                        vg_notice(f, "refused TLS connection: %s", why);
                } else {
                        vg_notice(f, "client closed the connection during the TLS handshake");
                }
                conn_free(c);
                return;
        }
        if (what & BEV_EVENT_TIMEOUT) {
                vg_notice(f, "closing connection: response not taken within %u ms",
                          c->srv->write_timeout_ms);
                conn_free(c);
                return;
        }
        if (c->state == C_WRITE && !(what & BEV_EVENT_ERROR)) {
                /* A client may half-close after its request and still read the answer. */
                c->close_after = true;
                return;
        }
        if (c->state == C_READ && vg_http_parser_started(c->parser))
                vg_notice(f, "client closed the connection in the middle of a request");
        else if (c->state == C_HANDLER && c->req)
                vg_info(f, "client went away before the reply to %.16s %.200s", c->req->msg->method,
                        c->req->msg->target);
        conn_free(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
        struct conn *c = arg;
        const char *const *f = VG_F("server", c->srv->name, "peer", c->peer);
        enum timer_kind kind = c->timer_kind;

        c->timer_kind = T_NONE;
        switch (kind) {
        case T_HANDSHAKE:
                vg_notice(f, "closing connection: no TLS handshake within %u ms",
                          c->srv->header_timeout_ms);
                conn_free(c);
                break;
        case T_HEADER:
                if (!vg_http_parser_started(c->parser)) {
                        vg_notice(f, "closing connection: no request within %u ms",
                                  c->srv->header_timeout_ms);
                        conn_free(c);
                        break;
                }
                vg_notice(f, "refused request: 408 header section not complete within %u ms",
                          c->srv->header_timeout_ms);
                respond_error(c, NULL, 408, "request header not received in time");
                break;
        case T_BODY:
                vg_notice(f, "refused request: 408 request body stalled for %u ms",
                          c->srv->body_timeout_ms);
                respond_error(c, NULL, 408, "request body not received in time");
                break;
        case T_IDLE:
                vg_debug(f, "closing idle keep-alive connection after %lu requests", c->served);
                conn_free(c);
                break;
        case T_LINGER:
        case T_NONE:
                conn_free(c);
                break;
        }
}

static void conn_free(struct conn *c)
{
        struct vg_http_server *srv = c->srv;
        struct vg_http_request *req = TAKE_PTR(c->req);

        if (req) {
                req->conn = NULL;
                if (req->cancel_fn) {
                        vg_http_cancel_fn fn = TAKE_PTR(req->cancel_fn);
                        fn(req, req->cancel_ud);
                }
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                srv->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        srv->n_conns--;
        bufferevent_free(c->bev);
        event_free(c->timer);
        vg_http_parser_free(c->parser);
        X509_free(c->peer_cert);
        free(c->peer_subject);
        free(c);
}

static int conn_start(struct vg_http_server *srv, struct bufferevent *bev, const char *peer,
                      bool tls)
{
        struct vg_http_limits lim = srv->limits;
        struct timeval wtv = { .tv_sec = srv->write_timeout_ms / 1000,
                               .tv_usec = (srv->write_timeout_ms % 1000) * 1000 };
        struct conn *c = calloc(1, sizeof(*c));

        if (!c || vg_http_parser_new(VG_HTTP_KIND_REQUEST, &lim, &c->parser) < 0 ||
            !(c->timer = evtimer_new(srv->base, timer_cb, c))) {
                if (c)
                        vg_http_parser_free(c->parser);
                free(c);
                bufferevent_free(bev);
                return -ENOMEM;
        }
        c->srv = srv;
        c->bev = bev;
        c->tls = tls;
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
        c->next = srv->conns;
        if (srv->conns)
                srv->conns->prev = c;
        srv->conns = c;
        srv->n_conns++;
        srv->accepted++;

        bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
        bufferevent_setwatermark(bev, EV_READ, 0, INPUT_HIGH_WATERMARK);
        bufferevent_set_timeouts(bev, NULL, &wtv);
        bufferevent_enable(bev, EV_READ | EV_WRITE);
        c->state = tls ? C_HANDSHAKE : C_READ;
        arm(c, tls ? T_HANDSHAKE : T_HEADER, srv->header_timeout_ms);
        return 0;
}

void vg_http_server_accept(struct vg_http_server *srv, evutil_socket_t fd,
                           const struct sockaddr *sa)
{
        struct bufferevent *bev;
        char peer[PEER_LEN];
        int one = 1;
        int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;

        format_peer(sa, peer, sizeof(peer));
        if (srv->n_conns >= srv->max_connections) {
                vg_warn(VG_F("server", srv->name, "peer", peer),
                        "refused connection: %zu connections open, the limit", srv->n_conns);
                close(fd);
                return;
        }
        /* Responses leave in one write; Nagle would only delay them (tang.md 3, finding 3). */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (srv->tls) {
                SSL *ssl = SSL_new(srv->tls);
                bev = ssl ? bufferevent_openssl_socket_new(srv->base, fd, ssl,
                                                           BUFFEREVENT_SSL_ACCEPTING, opts)
                          : NULL;
                if (!bev)
                        SSL_free(ssl);
                else
                        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        } else {
                bev = bufferevent_socket_new(srv->base, fd, opts);
        }
        if (!bev) {
                vg_err(VG_F("server", srv->name, "peer", peer),
                       "refused connection: out of memory");
                close(fd);
                return;
        }
        if (conn_start(srv, bev, peer, srv->tls != NULL) < 0)
                vg_err(VG_F("server", srv->name, "peer", peer),
                       "refused connection: out of memory");
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
        vg_http_server_accept(arg, fd, sa);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
        struct vg_http_server *srv = arg;
        int e = EVUTIL_SOCKET_ERROR();

        vg_warn(VG_F("server", srv->name), "cannot accept a connection: %s",
                evutil_socket_error_to_string(e));
}

int vg_http_server_adopt(struct vg_http_server *srv, struct bufferevent *bev, const char *peer)
{
        if (srv->n_conns >= srv->max_connections) {
                vg_warn(VG_F("server", srv->name, "peer", peer),
                        "refused connection: %zu connections open, the limit", srv->n_conns);
                bufferevent_free(bev);
                return -EBUSY;
        }
        return conn_start(srv, bev, peer ? peer : "adopted", false);
}

/* ---- the server -------------------------------------------------------------------------- */

static int listen_on(struct vg_http_server *srv, const char *address, uint16_t port,
                     struct vg_error *err)
{
        struct sockaddr_storage ss = { 0 };
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        socklen_t len;
        int one = 1;
        _cleanup_close_ int fd = -1;

        if (inet_pton(AF_INET, address, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons(port);
                len = sizeof(*in);
        } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                len = sizeof(*in6);
        } else {
                return vg_error_set(err, -EINVAL,
                                    "listen address \"%s\" is not an IPv4 or IPv6 "
                                    "address",
                                    address);
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return vg_error_set(err, -errno, "cannot create a socket for %s: %s", address,
                                    strerror(errno));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* "::" should not also take the IPv4 port: an IPv4 server may want it. */
        if (ss.ss_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 511) < 0)
                return vg_error_set(err, -errno, "cannot listen on %s%s%s:%u: %s",
                                    ss.ss_family == AF_INET6 ? "[" : "", address,
                                    ss.ss_family == AF_INET6 ? "]" : "", port, strerror(errno));
        srv->listener = evconnlistener_new(srv->base, accept_cb, srv,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
        if (!srv->listener)
                return vg_error_set(err, -ENOMEM, "cannot listen on %s: out of memory", address);
        TAKE_FD(fd);
        evconnlistener_set_error_cb(srv->listener, accept_error_cb);
        return 0;
}

int vg_http_server_new(struct event_base *base, const struct vg_http_server_config *cfg,
                       struct vg_http_server **out, struct vg_error *err)
{
        struct vg_http_server *srv = calloc(1, sizeof(*srv));
        int r;

        if (!srv)
                return vg_error_set(err, -ENOMEM, "out of memory");
        srv->base = base;
        if (cfg->name && !(srv->name = strdup(cfg->name))) {
                free(srv);
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        srv->limits = (struct vg_http_limits){
                .max_start_line = cfg->max_start_line,
                .max_header_bytes = cfg->max_header_bytes,
                .max_headers = cfg->max_headers,
                .max_body = cfg->max_body_bytes,
        };
        srv->max_connections = cfg->max_connections ? cfg->max_connections : 1024;
        srv->header_timeout_ms = cfg->header_timeout_ms ? cfg->header_timeout_ms : 10000;
        srv->body_timeout_ms = cfg->body_timeout_ms ? cfg->body_timeout_ms : 30000;
        srv->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 60000;
        srv->write_timeout_ms = cfg->write_timeout_ms ? cfg->write_timeout_ms : 30000;
        if (cfg->tls) {
                SSL_CTX_up_ref(cfg->tls);
                srv->tls = cfg->tls;
        }
        if (!cfg->no_listener) {
                r = listen_on(srv, cfg->address ? cfg->address : "127.0.0.1", cfg->port, err);
                if (r < 0) {
                        vg_http_server_free(srv);
                        return r;
                }
        }
        *out = srv;
        return 0;
}

void vg_http_server_free(struct vg_http_server *srv)
{
        if (!srv)
                return;
        if (srv->listener)
                evconnlistener_free(srv->listener);
        while (srv->conns)
                conn_free(srv->conns);
        for (size_t i = 0; i < srv->n_routes; i++) {
                free(srv->routes[i].method);
                segments_free(srv->routes[i].segs, srv->routes[i].n_segs);
        }
        free(srv->routes);
        SSL_CTX_free(srv->tls);
        free(srv->name);
        free(srv);
}

int vg_http_server_port(const struct vg_http_server *srv)
{
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        if (!srv->listener ||
            getsockname(evconnlistener_get_fd(srv->listener), (struct sockaddr *)&ss, &len) < 0)
                return -EBADF;
        if (ss.ss_family == AF_INET)
                return ntohs(((struct sockaddr_in *)&ss)->sin_port);
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

size_t vg_http_server_connections(const struct vg_http_server *srv)
{
        return srv->n_conns;
}

uint64_t vg_http_server_accepted(const struct vg_http_server *srv)
{
        return srv->accepted;
}
