/* vigil: the webhook sink of the outbox: each event POSTed in order, signed with HMAC-SHA256 in
 * X-Vigil-Signature, confirmed by a 2xx answer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cleanup.h"
#include "http_client.h"
#include "outbox.h"
#include "tls.h"

struct webhook_sink {
        struct vg_sink base;
        char *url, *secret, *ca_file, *cert_file, *key_file;
        unsigned timeout_ms;
        SSL_CTX *tls;
        struct vg_http_client *client;
        struct vg_http_call *call;
        const struct vg_outbox_record *recs;
        size_t n, next;
};

int vg_sink_webhook_signature(const char *secret, const void *body, size_t len, char out[65])
{
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        static const char hex[] = "0123456789abcdef";

        if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, mac, &mac_len) ||
            mac_len != 32)
                return -EIO;
        for (unsigned i = 0; i < 32; i++) {
                out[2 * i] = hex[mac[i] >> 4];
                out[2 * i + 1] = hex[mac[i] & 15];
        }
        out[64] = '\0';
        return 0;
}

static void send_next(struct webhook_sink *w);

static void on_response(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct webhook_sink *w = userdata;
        struct vg_error e = { 0 };

        w->call = NULL;
        if (!resp) {
                vg_error_set(&e, err && err->code < 0 ? err->code : -EIO, "POST %s: %s", w->url,
                             err ? vg_error_str(err) : "failed");
                vg_sink_done(&w->base, w->next, &e);
                return;
        }
        if (resp->status < 200 || resp->status > 299) {
                vg_error_set(&e, -EREMOTEIO, "POST %s answered %d for event %s", w->url,
                             resp->status, w->recs[w->next].event_id);
                vg_sink_done(&w->base, w->next, &e);
                return;
        }
        w->next++;
        if (w->next == w->n) {
                vg_sink_done(&w->base, w->n, NULL);
                return;
        }
        send_next(w);
}

static void send_next(struct webhook_sink *w)
{
        const struct vg_outbox_record *rec = &w->recs[w->next];
        char sig[7 + 65] = "sha256=";
        struct vg_error err = { 0 };
        const char *headers[7];
        size_t h = 0;

        if (w->secret) {
                if (vg_sink_webhook_signature(w->secret, rec->body, rec->body_len, sig + 7) < 0) {
                        vg_error_set(&err, -EIO, "HMAC-SHA256 failed");
                        vg_sink_done(&w->base, w->next, &err);
                        return;
                }
                headers[h++] = "X-Vigil-Signature";
                headers[h++] = sig;
        }
        headers[h++] = "X-Vigil-Event-Id";
        headers[h++] = rec->event_id;
        headers[h] = NULL;
        struct vg_http_client_request req = {
                .method = "POST",
                .url = w->url,
                .headers = headers,
                .body = rec->body,
                .body_len = rec->body_len,
                .content_type = "application/json",
                .timeout_ms = w->timeout_ms,
        };
        if (vg_http_client_send(w->client, &req, on_response, w, &w->call, &err) < 0)
                vg_sink_done(&w->base, w->next, &err);
}

static void webhook_deliver(struct vg_sink *s, const struct vg_outbox_record *recs, size_t n)
{
        struct webhook_sink *w = (struct webhook_sink *)s;

        w->recs = recs;
        w->n = n;
        w->next = 0;
        send_next(w);
}

static void webhook_cancel(struct vg_sink *s)
{
        struct webhook_sink *w = (struct webhook_sink *)s;

        if (w->call)
                vg_http_call_cancel(w->call);
        w->call = NULL;
}

static int webhook_start(struct vg_sink *s, struct event_base *base, struct vg_error *err)
{
        struct webhook_sink *w = (struct webhook_sink *)s;
        struct vg_http_url u = { 0 };
        int r = vg_http_url_parse(w->url, &u, err);

        if (r < 0)
                return r;
        if (u.https) {
                if (w->ca_file) {
                        struct vg_tls_client_config tc = { .ca_file = w->ca_file,
                                                           .cert_file = w->cert_file,
                                                           .key_file = w->key_file };
                        w->tls = vg_tls_client_ctx_new(&tc, err);
                } else {
                        w->tls = SSL_CTX_new(TLS_client_method());
                        if (w->tls) {
                                SSL_CTX_set_default_verify_paths(w->tls);
                                SSL_CTX_set_verify(w->tls, SSL_VERIFY_PEER, NULL);
                        } else {
                                vg_error_set(err, -ENOMEM, "cannot create a TLS context");
                        }
                }
                if (!w->tls) {
                        vg_http_url_clear(&u);
                        return err && err->code ? err->code : -EINVAL;
                }
        }
        vg_http_url_clear(&u);
        struct vg_http_client_config cc = { .tls = w->tls, .timeout_ms = w->timeout_ms };
        return vg_http_client_new(base, &cc, &w->client, err);
}

static void webhook_free(struct vg_sink *s)
{
        struct webhook_sink *w = (struct webhook_sink *)s;

        webhook_cancel(s);
        vg_http_client_free(w->client);
        if (w->tls)
                SSL_CTX_free(w->tls);
        if (w->secret)
                OPENSSL_cleanse(w->secret, strlen(w->secret));
        free(w->secret);
        free(w->url);
        free(w->ca_file);
        free(w->cert_file);
        free(w->key_file);
        free(s->name);
        free(w);
}

static const struct vg_sink_ops webhook_ops = {
        .kind = "webhook",
        .start = webhook_start,
        .deliver = webhook_deliver,
        .cancel = webhook_cancel,
        .free = webhook_free,
};

static bool dup_opt(char **dst, const char *src)
{
        *dst = src ? strdup(src) : NULL;
        return !src || *dst;
}

int vg_sink_webhook_new(const struct vg_sink_webhook_config *cfg, struct vg_sink **out,
                        struct vg_error *err)
{
        struct webhook_sink *w;

        if (!cfg || !cfg->url || !*cfg->url)
                return vg_error_set(err, -EINVAL, "webhook sink: no url");
        w = calloc(1, sizeof(*w));
        if (!w)
                return vg_error_set(err, -ENOMEM, "out of memory");
        w->base.ops = &webhook_ops;
        w->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 10000;
        bool ok = dup_opt(&w->base.name, cfg->name ? cfg->name : "webhook") &&
                  dup_opt(&w->url, cfg->url) &&
                  dup_opt(&w->secret, cfg->secret && *cfg->secret ? cfg->secret : NULL) &&
                  dup_opt(&w->ca_file, cfg->ca_file) && dup_opt(&w->cert_file, cfg->cert_file) &&
                  dup_opt(&w->key_file, cfg->key_file);
        if (!ok) {
                webhook_free(&w->base);
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        *out = &w->base;
        return 0;
}
