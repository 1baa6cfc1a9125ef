/* vigil-verifier: signed revocation notifications, Keylime's format ({"msg": "<json>",
 * "signature": b64 RSA-PSS}), to every agent of this verifier and to a webhook with retries.
 * The failed agent's owner thread builds and signs the message; the main thread sends it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "http_client.h"
#include "log.h"
#include "revocation.h"
#include "tpm_public.h"
#include "verifier.h"

VG_DEFINE_CLEANUP_FUNC(X509, X509_free)

static int path_in_tls_dir(const struct vg_config *cfg, const char *name, char *out, size_t len)
{
        const char *dir = vg_config_string(cfg, "tls_dir");

        if (name[0] == '/')
                return snprintf(out, len, "%s", name) < (int)len ? 0 : -ENAMETOOLONG;
        return snprintf(out, len, "%s/%s", dir ? dir : ".", name) < (int)len ? 0 : -ENAMETOOLONG;
}

/* A self-signed certificate beside the key, so that agents can be given it as revocation_cert. */
static int write_cert(EVP_PKEY *key, const char *path)
{
        _cleanup_(X509_freep) X509 *x = X509_new();
        FILE *f;
        int ok;

        if (!x)
                return -ENOMEM;
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
        X509_gmtime_adj(X509_getm_notBefore(x), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
        X509_NAME *n = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                                   (const unsigned char *)"RevocationNotifier", -1, -1, 0);
        X509_set_issuer_name(x, n);
        X509_set_pubkey(x, key);
        if (!X509_sign(x, key, EVP_sha256()))
                return -EINVAL;
        f = fopen(path, "wxe");
        if (!f)
                return -errno;
        ok = PEM_write_X509(f, x);
        return fclose(f) == 0 && ok ? 0 : -EIO;
}

int vg_cv_notify_load_key(struct vg_verifier *v, struct vg_error *err)
{
        const char *name = vg_config_string(v->cfg, "revocation_key");
        char path[4096], cert[4200];
        FILE *f;

        if (!name || !*name)
                return 0;
        if (path_in_tls_dir(v->cfg, name, path, sizeof(path)) < 0)
                return vg_error_set(err, -ENAMETOOLONG, "revocation_key: path too long");
        f = fopen(path, "re");
        if (f) {
                v->revocation_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
                fclose(f);
                if (!v->revocation_key)
                        return vg_error_set(err, -EBADMSG,
                                            "revocation_key %s: not a PEM private key", path);
                return 0;
        }
        if (errno != ENOENT)
                return vg_error_set(err, -errno, "revocation_key %s: %s", path, strerror(errno));
        /* Keylime's CA keeps RevocationNotifier-private.pem in its directory; create one. */
        v->revocation_key = EVP_RSA_gen(2048);
        if (!v->revocation_key)
                return vg_error_set(err, -ENOMEM, "cannot generate the revocation key");
        mode_t old = umask(077);
        f = fopen(path, "wxe");
        umask(old);
        if (!f)
                return vg_error_set(err, -errno, "revocation_key %s: %s", path, strerror(errno));
        int ok = PEM_write_PrivateKey(f, v->revocation_key, NULL, NULL, 0, NULL, NULL);
        if (fclose(f) != 0 || !ok)
                return vg_error_set(err, -EIO, "cannot write %s", path);
        snprintf(cert, sizeof(cert), "%.*s-cert.crt",
                 (int)(strstr(path, "-private.pem") ? strstr(path, "-private.pem") - path
                                                    : (ptrdiff_t)strlen(path)),
                 path);
        if (write_cert(v->revocation_key, cert) < 0)
                vg_warn(VG_F("file", cert), "cannot write the revocation certificate");
        vg_notice(VG_F("file", path, "cert", cert),
                  "generated the revocation signing key; give agents %s as revocation_cert", cert);
        return 0;
}

json_t *vg_cv_notify_message(struct vg_cv_agent *a, const char *type, const struct vg_cv_event *e)
{
        char when[64];
        time_t t = time(NULL);
        struct tm tm;

        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm); /* Python's time.asctime() */
        json_t *m = json_pack("{s:s, s:s?, s:s, s:I, s:s?, s:s?, s:s}", "type", type, "ip", a->ip,
                              "agent_id", a->id, "port", (json_int_t)a->port, "tpm_policy",
                              a->tpm_policy_json, "meta_data", a->meta_data, "event_time", when);
        if (m && e) {
                json_t *ev = vg_cv_event_json(e);
                json_object_set_new(m, "event_id", json_string(e->id));
                json_object_set_new(m, "severity_label",
                                    json_string(vg_cv_severity_str(e->severity)));
                json_object_set(m, "context", json_object_get(ev, "context"));
                json_decref(ev);
        }
        return m;
}

/* ---- deliveries in flight ------------------------------------------------------------------- */

/* One notification on its way to the webhook (with retries) or to one agent. Kept on the
 * verifier's list so that a shutdown frees what is still pending. */
struct vg_cv_notice {
        struct vg_verifier *v;
        struct vg_cv_notice *prev, *next;
        json_t *body;
        char *agent_id; /* NULL: the webhook */
        unsigned attempt;
        struct event *timer;
        struct vg_http_call *call;
};

/* A signed notification waiting for the main thread (v->outbox, under v->snap_lock). */
struct vg_cv_outbox {
        struct vg_cv_outbox *next;
        json_t *body;
};

static void notice_free(struct vg_cv_notice *w)
{
        if (w->prev)
                w->prev->next = w->next;
        else if (w->v->notices == w)
                w->v->notices = w->next;
        if (w->next)
                w->next->prev = w->prev;
        if (w->call)
                vg_http_call_cancel(w->call);
        if (w->timer)
                event_free(w->timer);
        json_decref(w->body);
        free(w->agent_id);
        free(w);
}

void vg_cv_notify_free_all(struct vg_verifier *v)
{
        size_t n = 0;

        pthread_mutex_lock(&v->snap_lock);
        while (v->outbox) {
                struct vg_cv_outbox *o = v->outbox;
                v->outbox = o->next;
                json_decref(o->body);
                free(o);
                n++;
        }
        v->outbox_tail = &v->outbox;
        pthread_mutex_unlock(&v->snap_lock);
        for (struct vg_cv_notice *w = v->notices; w; w = w->next)
                n++;
        if (n)
                vg_warn(NULL, "%zu notification(s) still pending at shutdown are dropped", n);
        while (v->notices)
                notice_free(v->notices);
}

static struct vg_cv_notice *notice_new(struct vg_verifier *v, json_t *body, const char *agent)
{
        struct vg_cv_notice *w = calloc(1, sizeof(*w));

        if (!w)
                return NULL;
        w->v = v;
        w->body = json_incref(body);
        w->agent_id = agent ? strdup(agent) : NULL;
        w->next = v->notices;
        if (v->notices)
                v->notices->prev = w;
        v->notices = w;
        return w;
}

static void webhook_send(evutil_socket_t fd, short what, void *userdata);

static void on_webhook(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct vg_cv_notice *w = userdata;
        struct vg_verifier *v = w->v;
        char why[600];

        w->call = NULL;
        if (resp && resp->status >= 200 && resp->status < 300) {
                vg_info(VG_F("url", v->o.webhook_url), "revocation delivered to the webhook");
                notice_free(w);
                return;
        }
        if (resp)
                snprintf(why, sizeof(why), "answered %d", resp->status);
        else
                snprintf(why, sizeof(why), "%s", vg_error_str(err));
        w->attempt++;
        if ((int64_t)w->attempt > v->o.max_retries) {
                vg_err(VG_F("url", v->o.webhook_url),
                       "revocation not delivered to the webhook after %u attempts: %s", w->attempt,
                       why);
                notice_free(w);
                return;
        }
        double d = v->o.exponential_backoff ? v->o.retry_interval * pow(2.0, w->attempt - 1)
                                            : v->o.retry_interval;
        vg_warn(VG_F("url", v->o.webhook_url), "webhook %s; retry %u of %lld in %.1f s", why,
                w->attempt, (long long)v->o.max_retries, d);
        struct timeval tv = { (time_t)d, (suseconds_t)((d - (double)(time_t)d) * 1e6) };
        if (!w->timer)
                w->timer = evtimer_new(v->base, webhook_send, w);
        if (!w->timer || evtimer_add(w->timer, &tv) < 0)
                notice_free(w);
}

static void webhook_send(evutil_socket_t fd, short what, void *userdata)
{
        struct vg_cv_notice *w = userdata;
        struct vg_error err = { 0 };
        struct vg_http_client_request rq = {
                .method = "POST",
                .url = w->v->o.webhook_url,
                .json = w->body,
                .timeout_ms = (unsigned)(w->v->o.request_timeout * 1000),
        };

        (void)fd;
        (void)what;
        if (vg_http_client_send(w->v->client, &rq, on_webhook, w, &w->call, &err) < 0) {
                vg_err(VG_F("url", w->v->o.webhook_url), "webhook: %s", vg_error_str(&err));
                notice_free(w);
        }
}

static void on_agent_notified(struct vg_http_response *resp, const struct vg_error *err,
                              void *userdata)
{
        struct vg_cv_notice *w = userdata;
        const char *id = w->agent_id;

        w->call = NULL;
        if (resp && resp->status == 404)
                vg_info(VG_F("agent", id), "the agent does not take revocation notifications (404: "
                                           "enable_revocation_notifications is off there)");
        else if (!resp || resp->status != 200)
                vg_warn(VG_F("agent", id), "revocation notification not accepted: %s",
                        resp ? (const char *)resp->body : vg_error_str(err));
        else
                vg_debug(VG_F("agent", id), "revocation notification delivered");
        notice_free(w);
}

static void deliver(struct vg_verifier *v, json_t *body);

void vg_cv_notify_drain(struct vg_verifier *v)
{
        struct vg_cv_outbox *o;

        pthread_mutex_lock(&v->snap_lock);
        o = v->outbox;
        v->outbox = NULL;
        v->outbox_tail = &v->outbox;
        pthread_mutex_unlock(&v->snap_lock);
        while (o) {
                struct vg_cv_outbox *next = o->next;
                deliver(v, o->body);
                json_decref(o->body);
                free(o);
                o = next;
        }
}

void vg_cv_notify(struct vg_verifier *v, struct vg_cv_agent *a, const char *type,
                  const struct vg_cv_event *e)
{
        struct vg_error err = { 0 };
        _cleanup_free_ char *msg = NULL, *sig = NULL;
        EVP_PKEY *key = v->revocation_key, *own = NULL;

        if (!v->o.notify_agent && !v->o.notify_webhook)
                return;
        json_auto_t *m = vg_cv_notify_message(a, type, e);
        msg = m ? json_dumps(m, JSON_COMPACT) : NULL;
        if (!msg)
                return;
        /* The tenant's revocation_key (certificate-package mode) signs, as in Keylime. */
        if (a->revocation_key && *a->revocation_key) {
                BIO *b = BIO_new_mem_buf(a->revocation_key, -1);
                own = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
                BIO_free(b);
                if (own)
                        key = own;
        }
        if (key && vg_revocation_sign(msg, key, &sig, &err) < 0)
                vg_err(VG_F("agent", a->id), "cannot sign the revocation: %s", vg_error_str(&err));
        EVP_PKEY_free(own);
        json_t *body = json_pack("{s:s, s:s}", "msg", msg, "signature", sig ? sig : "");
        struct vg_cv_outbox *o = body ? calloc(1, sizeof(*o)) : NULL;
        uint64_t one = 1;

        vg_notice(VG_F("agent", a->id, "event", e ? e->id : NULL), "sending %s notification", type);
        if (!o) {
                json_decref(body);
                vg_err(VG_F("agent", a->id), "out of memory: notification dropped");
                return;
        }
        o->body = body;
        pthread_mutex_lock(&v->snap_lock);
        *v->outbox_tail = o;
        v->outbox_tail = &o->next;
        pthread_mutex_unlock(&v->snap_lock);
        if (write(v->main_wake_fd, &one, sizeof(one)) < 0) {
                /* Only an overflowing counter fails, and then a wake-up is pending anyway. */
        }
}

static void deliver(struct vg_verifier *v, json_t *body)
{
        struct vg_error err = { 0 };

        if (v->o.notify_webhook && v->o.webhook_url && *v->o.webhook_url) {
                struct vg_cv_notice *w = notice_new(v, body, NULL);
                if (w)
                        webhook_send(-1, 0, w);
        }
        if (!v->o.notify_agent)
                return;
        for (struct vg_cv_agent *x = v->agents; x; x = x->next) {
                char *url = NULL;
                bool v6 = x->ip && strchr(x->ip, ':');
                if (asprintf(&url, "%s://%s%s%s:%lld/v%s/notifications/revocation",
                             x->tls ? "https" : "http", v6 ? "[" : "", x->ip ? x->ip : "127.0.0.1",
                             v6 ? "]" : "", (long long)x->port,
                             x->supported_version && *x->supported_version
                                 ? x->supported_version
                                 : VG_VERIFIER_API_CURRENT) < 0)
                        continue;
                struct vg_http_client_request rq = {
                        .method = "POST",
                        .url = url,
                        .json = body,
                        .tls = x->tls,
                        .timeout_ms = (unsigned)(v->o.request_timeout * 1000),
                };
                struct vg_cv_notice *w = notice_new(v, body, x->id);
                if (w &&
                    vg_http_client_send(v->client, &rq, on_agent_notified, w, &w->call, &err) < 0) {
                        vg_warn(VG_F("agent", x->id), "cannot notify: %s", vg_error_str(&err));
                        notice_free(w);
                }
                free(url);
        }
}
