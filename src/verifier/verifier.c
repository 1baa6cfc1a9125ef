/* vigil-verifier: the daemon's assembly: options, database, TLS contexts, the REST server, the
 * shared HTTP client and policy cache, this verifier's agents resumed, the batched-write timer. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "http_client.h"
#include "http_server.h"
#include "integrity.h"
#include "log.h"
#include "store.h"
#include "tls.h"
#include "verifier.h"

static int tls_path(const struct vg_config *cfg, const char *name, char *out, size_t len,
                    struct vg_error *err)
{
        const char *val = vg_config_string(cfg, name), *dir = vg_config_string(cfg, "tls_dir");

        if (!val || !*val)
                return vg_error_set(err, -EINVAL, "option %s is not set", name);
        if (val[0] == '/')
                snprintf(out, len, "%s", val);
        else if (!dir || !*dir)
                return vg_error_set(err, -EINVAL, "option %s is relative but tls_dir is unset",
                                    name);
        else if ((size_t)snprintf(out, len, "%s/%s", dir, val) >= len)
                return vg_error_set(err, -ENAMETOOLONG, "option %s: path too long", name);
        return 0;
}

static int parse_seconds(const struct vg_config *cfg, const char *name, double min, double *out,
                         struct vg_error *err)
{
        const char *s = vg_config_string(cfg, name);
        char *end;

        *out = s ? strtod(s, &end) : 0;
        if (!s || !*s || *end || *out < min || *out > 86400)
                return vg_error_set(err, -EINVAL,
                                    "option %s: expected seconds (a decimal number from %g), "
                                    "found \"%s\"",
                                    name, min, s ? s : "");
        return 0;
}

static int load_options(struct vg_verifier *v, struct vg_error *err)
{
        const struct vg_config *c = v->cfg;
        struct vg_cv_options *o = &v->o;
        int r;

        o->uuid = vg_config_string(c, "uuid");
        if (!o->uuid || !*o->uuid)
                return vg_error_set(err, -EINVAL, "option uuid must not be empty");
        if ((r = parse_seconds(c, "quote_interval", 0.01, &o->quote_interval, err)) < 0 ||
            (r = parse_seconds(c, "request_timeout", 0.1, &o->request_timeout, err)) < 0 ||
            (r = parse_seconds(c, "retry_interval", 0.01, &o->retry_interval, err)) < 0 ||
            (r = parse_seconds(c, "state_flush_interval", 0.01, &o->flush_interval, err)) < 0)
                return r;
        o->max_retries = vg_config_integer(c, "max_retries");
        o->exponential_backoff = vg_config_boolean(c, "exponential_backoff");
        o->ignore_tomtou_errors = vg_config_boolean(c, "ignore_tomtou_errors");
        o->max_quotes_without_progress = vg_config_integer(c, "max_quotes_without_progress");
        o->stop_polling_on_failure = vg_config_boolean(c, "stop_polling_on_failure");
        o->require_allow_list_signatures = vg_config_boolean(c, "require_allow_list_signatures");
        o->enable_agent_mtls = vg_config_boolean(c, "enable_agent_mtls");
        o->webhook_url = vg_config_string(c, "webhook_url");
        o->poll_workers = (unsigned)vg_config_integer(c, "poll_workers");
        if (o->poll_workers == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                o->poll_workers = n > 0 ? (unsigned)(n > 64 ? 64 : n) : 1;
        }
        for (char *const *n = vg_config_strv(c, "enabled_revocation_notifications"); *n; n++) {
                if (strcmp(*n, "agent") == 0)
                        o->notify_agent = true;
                else if (strcmp(*n, "webhook") == 0)
                        o->notify_webhook = true;
                else if (strcmp(*n, "zeromq") == 0)
                        vg_warn(VG_F("option", "enabled_revocation_notifications"),
                                "zeromq notifications are not supported; ignored");
                else
                        return vg_error_set(err, -EINVAL,
                                            "option enabled_revocation_notifications: unknown "
                                            "notifier \"%s\" (agent, webhook)",
                                            *n);
        }
        if (o->notify_webhook && (!o->webhook_url || !*o->webhook_url))
                return vg_error_set(err, -EINVAL,
                                    "webhook notifications are enabled but webhook_url is empty");
        return 0;
}

static void on_flush(evutil_socket_t fd, short what, void *userdata)
{
        struct vg_verifier *v = userdata;
        struct vg_error err = { 0 };

        (void)fd;
        (void)what;
        if (vg_cv_db_flush(v, &err) < 0)
                vg_err(VG_F("database", vg_store_name(v->db)),
                       "writing attestation state failed (kept for the next try): %s",
                       vg_error_str(&err));
}

static void on_main_wake(evutil_socket_t fd, short what, void *userdata)
{
        uint64_t n;

        (void)what;
        if (read(fd, &n, sizeof(n)) < 0) {
                /* EAGAIN: the outbox is drained anyway */
        }
        vg_cv_notify_drain(userdata);
}

static void ssl_ctx_freep(SSL_CTX **c)
{
        if (*c)
                SSL_CTX_free(*c);
}

int vg_verifier_new(struct event_base *base, const struct vg_config *cfg, struct vg_verifier **out,
                    struct vg_error *err)
{
        _cleanup_(vg_verifier_freep) struct vg_verifier *v = calloc(1, sizeof(*v));
        char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
        int r;

        *out = NULL;
        if (!v)
                return -ENOMEM;
        v->base = base;
        v->cfg = cfg;
        v->main_wake_fd = -1;
        pthread_mutex_init(&v->snap_lock, NULL);
        v->outbox_tail = &v->outbox;
        v->main_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (v->main_wake_fd < 0)
                return vg_error_set(err, -errno, "eventfd: %s", strerror(errno));
        v->main_wake_ev = event_new(base, v->main_wake_fd, EV_READ | EV_PERSIST, on_main_wake, v);
        if (!v->main_wake_ev || event_add(v->main_wake_ev, NULL) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if ((r = load_options(v, err)) < 0)
                return r;
        if ((r = tls_path(cfg, "server_cert", cert, sizeof(cert), err)) < 0 ||
            (r = tls_path(cfg, "server_key", key, sizeof(key), err)) < 0 ||
            (r = tls_path(cfg, "trusted_client_ca", ca, sizeof(ca), err)) < 0 ||
            (r = tls_path(cfg, "client_cert", v->client_cert, sizeof(v->client_cert), err)) < 0 ||
            (r = tls_path(cfg, "client_key", v->client_key, sizeof(v->client_key), err)) < 0)
                return r;
        v->client_key_password = vg_config_string(cfg, "client_key_password");
        /* Admin actions need a client certificate (checked per route); /version and /verify
         * are public as in Keylime 2.5, so a certificate is optional at the handshake, but one
         * that is offered must chain to trusted_client_ca. */
        struct vg_tls_server_config tc = {
                .cert_file = cert,
                .key_file = key,
                .key_password = vg_config_string(cfg, "server_key_password"),
                .client_auth = VG_TLS_CLIENT_AUTH_OPTIONAL,
                .client_ca_file = ca,
        };
        _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = vg_tls_server_ctx_new(&tc, err);
        if (!ctx)
                return err->code ? err->code : -EINVAL;
        /* Check the client pair now, not at the first poll. */
        struct vg_tls_client_config cc = {
                .ca_file = ca,
                .cert_file = v->client_cert,
                .key_file = v->client_key,
                .key_password = v->client_key_password,
        };
        _cleanup_(ssl_ctx_freep) SSL_CTX *cctx = vg_tls_client_ctx_new(&cc, err);
        if (!cctx)
                return err->code ? err->code : -EINVAL;
        if ((r = vg_cv_notify_load_key(v, err)) < 0)
                return r;
        if ((r = vg_ima_policy_cache_new(16, &v->policies)) < 0)
                return vg_error_set(err, r, "cannot create the policy cache");
        struct vg_http_client_config hc = {
                .tls = cctx,
                .timeout_ms = (unsigned)(v->o.request_timeout * 1000),
                .max_response_bytes = 256u << 20, /* IMA lists of busy machines */
                .max_idle_per_origin = 2,
                .idle_timeout_ms = (unsigned)(v->o.quote_interval * 1000) + 30000,
        };
        if ((r = vg_http_client_new(base, &hc, &v->client, err)) < 0 ||
            (r = vg_cv_workers_new(v, cctx, err)) < 0)
                return r;
        if ((r = vg_cv_db_open(v, err)) < 0 || (r = vg_cv_db_load_agents(v, err)) < 0)
                return r;
        if ((r = vg_cv_integrity_new(v, err)) < 0) /* the outbox and its sinks */
                return r;

        struct vg_http_server_config sc = {
                .address = vg_config_string(cfg, "ip"),
                .port = (uint16_t)vg_config_integer(cfg, "port"),
                .tls = ctx,
                .name = "verifier",
                .max_body_bytes = (size_t)vg_config_integer(cfg, "max_upload_size"),
        };
        if ((r = vg_http_server_new(base, &sc, &v->srv, err)) < 0 ||
            (r = vg_cv_api_register(v)) < 0)
                return r;

        /* Resume: every agent of this verifier where it was, IMA position included. */
        size_t resumed = 0, idle = 0;
        for (struct vg_cv_agent *a = v->agents; a; a = a->next) {
                struct vg_error aerr = { 0 };
                vg_cv_agent_assign(v, a);
                if (vg_cv_agent_prepare(v, a, &aerr) < 0) {
                        vg_err(VG_F("agent", a->id), "cannot resume: %s", vg_error_str(&aerr));
                        continue;
                }
                if (a->state == VG_CV_TENANT_FAILED || a->state == VG_CV_TERMINATED ||
                    (v->o.stop_polling_on_failure &&
                     (a->state == VG_CV_FAILED || a->state == VG_CV_INVALID_QUOTE))) {
                        idle++;
                        continue;
                }
                a->in_failure = a->state == VG_CV_FAILED || a->state == VG_CV_INVALID_QUOTE;
                vg_info(VG_F("agent", a->id),
                        "resuming agent %s: %s, %lld attestations, IMA next entry %llu", a->id,
                        vg_cv_state_str(a->state), (long long)a->attestation_count,
                        (unsigned long long)vg_ima_state_next_entry(a->ima));
                vg_cv_poll_start(a, 0);
                resumed++;
        }
        struct timeval tv = {
                (time_t)v->o.flush_interval,
                (suseconds_t)((v->o.flush_interval - (double)(time_t)v->o.flush_interval) * 1e6)
        };
        v->flush_ev = event_new(base, -1, EV_PERSIST, on_flush, v);
        if (!v->flush_ev || event_add(v->flush_ev, &tv) < 0)
                return vg_error_set(err, -ENOMEM, "cannot start the state writer");
        if ((r = vg_cv_workers_run(v, err)) < 0)
                return r;
        vg_info(VG_F("database", vg_store_name(v->db), "verifier_id", v->o.uuid),
                "listening on %s port %d; %zu agents resumed, %zu not polled; %u poller "
                "thread(s)",
                sc.address, vg_http_server_port(v->srv), resumed, idle, v->n_workers);
        *out = TAKE_PTR(v);
        return 0;
}

void vg_verifier_free(struct vg_verifier *v)
{
        struct vg_error err = { 0 };

        if (!v)
                return;
        vg_cv_workers_free(v); /* threads joined, polling stopped, dirty state queued */
        if (v->db && vg_cv_db_flush(v, &err) < 0)
                vg_err(NULL, "writing attestation state at shutdown failed: %s",
                       vg_error_str(&err));
        if (v->flush_ev)
                event_free(v->flush_ev);
        vg_http_server_free(v->srv);
        while (v->agents) {
                struct vg_cv_agent *a = v->agents;
                v->agents = a->next;
                vg_cv_agent_free(a);
        }
        vg_cv_notify_free_all(v);
        vg_http_client_free(v->client);
        vg_cv_workers_release(v);
        vg_cv_snaps_free(v);
        free(v->by_id);
        if (v->main_wake_ev)
                event_free(v->main_wake_ev);
        if (v->main_wake_fd >= 0)
                close(v->main_wake_fd);
        pthread_mutex_destroy(&v->snap_lock);
        vg_ima_policy_cache_free(v->policies);
        EVP_PKEY_free(v->revocation_key);
        vg_cv_integrity_free(v); /* after the workers: appends what they handed over */
        vg_store_close(v->db);
        free(v);
}

int vg_verifier_port(const struct vg_verifier *v)
{
        return v->srv ? vg_http_server_port(v->srv) : (int)vg_config_integer(v->cfg, "port");
}
