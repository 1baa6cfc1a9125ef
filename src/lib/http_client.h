/* vigil: asynchronous HTTP/1.1 client on the caller's libevent loop (http/https, keep-alive per
 * origin, per-request timeouts and TLS contexts), plus a blocking wrapper for CLI tools. */
#pragma once

#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "http_parse.h"

struct vg_http_client;
struct vg_http_call;

/* Zero fields take the defaults in brackets. */
struct vg_http_client_config {
        SSL_CTX *tls;                 /* for https:// URLs; a request may bring its own [none] */
        unsigned timeout_ms;          /* whole request, connect to last byte [30 s] */
        size_t max_response_bytes;    /* response body limit [16 MiB] */
        size_t max_header_bytes;      /* response header section limit [64 KiB] */
        unsigned max_idle_per_origin; /* kept-alive connections per origin [4] */
        bool no_keepalive;            /* one connection per request */
        unsigned idle_timeout_ms;     /* how long an unused connection is kept [30 s] */
        const char *user_agent;       /* ["vigil/VERSION"] */
};

struct vg_http_client_request {
        const char *method;         /* ["GET"] */
        const char *url;            /* http:// or https://, host a name, IPv4 or [IPv6] */
        const char *const *headers; /* NULL-terminated "Name", "value", ... pairs, or NULL */
        const void *body;           /* sent with Content-Length */
        size_t body_len;
        const char *content_type; /* for body */
        json_t *json;             /* instead of body: sent as application/json (borrowed) */
        unsigned timeout_ms;      /* [the client's] */
        SSL_CTX *tls;             /* instead of the client's, e.g. pinning one agent's cert */
};

struct vg_http_response {
        int status;
        const uint8_t *body; /* NUL-terminated; never NULL */
        size_t body_len;
        const struct vg_http_message *message; /* all headers */
        struct vg_http_message *owned_;        /* private */
        bool kept_;                            /* private */
};

const char *vg_http_response_header(const struct vg_http_response *resp, const char *name);
/* The body as JSON (new reference), or NULL with err. */
json_t *vg_http_response_json(const struct vg_http_response *resp, struct vg_error *err);
/* A callback's response is freed when the callback returns, unless it is kept this way; the
 * caller then frees it with vg_http_response_free(). */
struct vg_http_response *vg_http_response_keep(struct vg_http_response *resp);
void vg_http_response_free(struct vg_http_response *resp);

/* Exactly one of resp and err is set. err says what failed and where: "connect to
 * 127.0.0.1:9002 failed: Connection refused", "TLS handshake with [::1]:8891 failed: certificate
 * verify failed: ...", "request to ... timed out after 2000 ms", "malformed response from ...". */
typedef void (*vg_http_client_cb)(struct vg_http_response *resp, const struct vg_error *err,
                                  void *userdata);

int vg_http_client_new(struct event_base *base, const struct vg_http_client_config *cfg,
                       struct vg_http_client **out, struct vg_error *err);
/* Outstanding requests are dropped without their callbacks. */
void vg_http_client_free(struct vg_http_client *client);

/* Start a request. A malformed request (URL, header, no TLS context for https) fails here with
 * -EINVAL; otherwise cb runs exactly once, later, from the loop (never from inside this call),
 * unless the call is cancelled. *call (optional) identifies it until then. */
int vg_http_client_send(struct vg_http_client *client, const struct vg_http_client_request *req,
                        vg_http_client_cb cb, void *userdata, struct vg_http_call **call,
                        struct vg_error *err);

/* Drop a request in flight; its callback will not run. */
void vg_http_call_cancel(struct vg_http_call *call);

/* Connections made (not reused) in total: keep-alive shows as fewer connects than requests. */
uint64_t vg_http_client_connects(const struct vg_http_client *client);

/* Free base after letting it run what is still pending (EVLOOP_NONBLOCK, a few rounds): a
 * bufferevent freed with a deferred callback outstanding is finalized only when that callback
 * runs, and event_base_free() would drop it, leaking the connection and its TLS state. Use it
 * wherever a loop that carried connections is freed. */
void vg_event_base_free_drained(struct event_base *base);

/* Blocking: run one request on a private event loop. *resp is the caller's to free. */
int vg_http_fetch(const struct vg_http_client_config *cfg, const struct vg_http_client_request *req,
                  struct vg_http_response **resp, struct vg_error *err);

/* A parsed URL; host has no brackets ("::1"). */
struct vg_http_url {
        bool https;
        char host[256];
        uint16_t port;
        char *target; /* path and query, at least "/" */
};

int vg_http_url_parse(const char *url, struct vg_http_url *out, struct vg_error *err);
void vg_http_url_clear(struct vg_http_url *u);
