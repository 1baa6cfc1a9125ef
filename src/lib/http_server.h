/* vigil: HTTP/1.1 server on the caller's libevent loop: plain or TLS/mTLS, keep-alive and
 * pipelining, hard limits and timeouts, a method + path router, and replies that may come later. */
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "http_parse.h"

struct vg_http_server;
struct vg_http_request;

/* Zero fields take the defaults in brackets. */
struct vg_http_server_config {
        const char *address;        /* IPv4 or IPv6 literal to bind ["127.0.0.1"] */
        uint16_t port;              /* 0: an ephemeral port, see vg_http_server_port() */
        bool no_listener;           /* serve only vg_http_server_adopt() connections */
        SSL_CTX *tls;               /* NULL: plain HTTP; the server takes its own reference */
        const char *name;           /* "registrar": names the server in log lines */
        size_t max_start_line;      /* request line bytes, else 414 [8 KiB] */
        size_t max_header_bytes;    /* header section bytes, else 431 [16 KiB] */
        size_t max_headers;         /* header fields, else 431 [100] */
        size_t max_body_bytes;      /* request body, else 413 [1 MiB] */
        unsigned max_connections;   /* more are closed at once [1024] */
        unsigned header_timeout_ms; /* from accept (TLS handshake included) or from the first byte
                                     * of a request to the end of its header section [10 s] */
        unsigned body_timeout_ms;   /* without progress while a body arrives [30 s] */
        unsigned idle_timeout_ms;   /* keep-alive connection waiting for a request [60 s] */
        unsigned write_timeout_ms;  /* without progress while a response leaves [30 s] */
};

/* Listen (unless no_listener) on cfg->address:cfg->port. err says which address failed why. */
int vg_http_server_new(struct event_base *base, const struct vg_http_server_config *cfg,
                       struct vg_http_server **out, struct vg_error *err);

/* Close the listener and every connection (not from inside one of its handlers). Requests still
 * held by handlers are told through their cancel callback and stay valid until answered;
 * answering them then only frees them. */
void vg_http_server_free(struct vg_http_server *srv);

/* The bound port (useful after port 0). */
int vg_http_server_port(const struct vg_http_server *srv);

/* Connections open now and accepted in total (keep-alive reuse shows as few accepts). */
size_t vg_http_server_connections(const struct vg_http_server *srv);
uint64_t vg_http_server_accepted(const struct vg_http_server *srv);

/* Serve a socket the caller accepted (its own listeners, e.g. one per thread): TCP_NODELAY,
 * TLS when the server has a context, the peer address in logs. The server owns fd from now on,
 * and closes it when refusing it. */
void vg_http_server_accept(struct vg_http_server *srv, evutil_socket_t fd,
                           const struct sockaddr *sa);

/* Serve a connection the caller made (a bufferevent pair, for tests and fuzzing: the same code
 * path as accepted sockets, without a socket). The server owns bev from now on. */
int vg_http_server_adopt(struct vg_http_server *srv, struct bufferevent *bev, const char *peer);

/* A handler gets the request and must answer it exactly once with a vg_http_reply*() call, at
 * once or later from another callback. Until then the request stays valid, even if the client
 * disconnects (the cancel callback says so). */
typedef void (*vg_http_handler_fn)(struct vg_http_request *req, void *userdata);
typedef void (*vg_http_cancel_fn)(struct vg_http_request *req, void *userdata);

/* Route method + pattern to fn. A pattern is '/'-separated segments, each a literal ("agents")
 * or a {name} parameter with an optional literal prefix and suffix ("v{version}", "{kid}.jwk").
 * Empty segments are ignored on both sides, so "/agents/" matches "/agents" and "//adv" matches
 * "/adv" (Tang matches ^/+adv/+ too). A literal beats a prefixed parameter beats a bare parameter,
 * from the left; among equals the first registered wins. A GET route answers HEAD too. A path some
 * route matches with another method gets 405 with Allow; no match at all is 404; a method no
 * route and no RFC 9110 names is 501. -EINVAL for a malformed pattern. */
int vg_http_server_route(struct vg_http_server *srv, const char *method, const char *pattern,
                         vg_http_handler_fn fn, void *userdata);

/* Request accessors. Strings are owned by the request. */
const char *vg_http_request_method(const struct vg_http_request *req);
const char *vg_http_request_target(const struct vg_http_request *req); /* raw, with query */
const char *vg_http_request_path(const struct vg_http_request *req);   /* raw, without query */
/* The value of {name} in the matched pattern, percent-decoded; NULL when there is none. */
const char *vg_http_request_param(const struct vg_http_request *req, const char *name);
/* The query parameter, decoded ('+' is a space); "" for "?partial"; NULL when absent. */
const char *vg_http_request_query(const struct vg_http_request *req, const char *name);
const char *vg_http_request_header(const struct vg_http_request *req, const char *name);
const struct vg_http_message *vg_http_request_message(const struct vg_http_request *req);
const uint8_t *vg_http_request_body(const struct vg_http_request *req, size_t *len);
/* The body parsed as JSON (new reference), or NULL with err saying where it is malformed. */
json_t *vg_http_request_json(const struct vg_http_request *req, struct vg_error *err);
/* "an object", "a string", "an integer", ...: what a body field was, for error messages. */
const char *vg_json_type_name(const json_t *v);
/* "127.0.0.1:43122" or "[::1]:43122". */
const char *vg_http_request_peer(const struct vg_http_request *req);
/* The client certificate verified during the handshake (mTLS), or NULL. Borrowed. */
X509 *vg_http_request_peer_cert(const struct vg_http_request *req);
/* Its subject as RFC 2253 text, or NULL. */
const char *vg_http_request_peer_subject(const struct vg_http_request *req);
/* False once the client has gone; a reply then goes nowhere. */
bool vg_http_request_connected(const struct vg_http_request *req);
/* fn runs once if the client disconnects (or the server is freed) before the reply. The
 * handler must still reply (which then only frees the request). A client that shuts down its
 * sending side while waiting counts as gone, as Tornado (Keylime's server) counts it. */
void vg_http_request_on_cancel(struct vg_http_request *req, vg_http_cancel_fn fn, void *userdata);

/* Add a response header before replying. -EINVAL for a name that is not a token or a value
 * with control characters; Content-Length, Transfer-Encoding, Connection and Date are the
 * server's and refused too. */
int vg_http_reply_header(struct vg_http_request *req, const char *name, const char *value);

/* Each reply ends the handler's ownership of req, whatever it returns: 0 when queued,
 * -ENOTCONN when the client had gone, -EINVAL/-ENOMEM when nothing could be sent (the client
 * then gets a 500). */
int vg_http_reply(struct vg_http_request *req, int status, const char *content_type,
                  const void *body, size_t len);
/* json is consumed (its reference is stolen, as json_object_set_new() does). */
int vg_http_reply_json(struct vg_http_request *req, int status, json_t *json);
/* Keylime's envelope {"code": 200, "status": "Success", "results": {...}}; results is stolen,
 * NULL means {}. */
int vg_http_reply_keylime(struct vg_http_request *req, int code, const char *status,
                          json_t *results);
/* The envelope with an empty results object and a formatted status message. */
int vg_http_reply_error(struct vg_http_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Refuse a request: log a warning "METHOD PATH refused (code): msg" with the agent (may be
 * NULL) and the peer, then answer it with vg_http_reply_error(). Returns 0. */
int vg_http_refuse(struct vg_http_request *req, int code, const char *agent, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
