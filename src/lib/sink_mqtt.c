/* vigil: the MQTT sink of the outbox: QoS 1 PUBLISHes through libmosquitto, confirmed by PUBACK.
 * The network (connect, TLS, reads, writes, keepalive, reconnects) runs on a thread of the sink's
 * own that polls the socket (no select(): no FD_SETSIZE limit in a verifier with many sockets);
 * the loop's thread publishes a whole batch and is told of PUBACKs through an eventfd. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <mosquitto.h>

#include "cleanup.h"
#include "log.h"
#include "outbox.h"

struct ack {
        unsigned gen;
        int mid;
};

struct mqtt_sink {
        struct vg_sink base;
        /* configuration */
        char *host, *client_id, *prefix, *username, *password, *ca_file, *cert_file, *key_file;
        int port;
        bool tls_insecure;
        unsigned keepalive_s, max_inflight, ack_timeout_ms, backoff_min_ms, backoff_max_ms;

        pthread_t thread;
        bool thread_started;
        int wake_fd;   /* loop -> thread: new PUBLISHes to write, or stop */
        int notify_fd; /* thread -> loop: PUBACKs, connection up or down */
        struct event *notify_ev, *timeout_ev;

        /* conn_lock: the current client's lifetime (the loop publishes under it). Taken before
         * state_lock when both are needed; never held by libmosquitto's callbacks. */
        pthread_mutex_t conn_lock;
        struct mosquitto *mosq;
        /* state_lock: what the thread tells the loop. */
        pthread_mutex_t state_lock;
        bool stop, reconnect, up, went_down, came_up, notified;
        bool settled; /* the first connection attempt has an outcome */
        unsigned gen;
        char cause[256];
        struct ack *acks;
        size_t n_acks, cap_acks;
        int connack_rc; /* thread only */

        /* the batch in flight (loop thread only) */
        bool busy, deferred;
        unsigned batch_gen;
        const struct vg_outbox_record *recs;
        size_t n, n_acked;
        bool *acked;
        uint32_t *mid_index; /* mid -> index + 1 in the batch */
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
        mosquitto_lib_init();
}

static void notify_loop(struct mqtt_sink *m)
{
        uint64_t one = 1;

        /* under state_lock */
        if (!m->notified) {
                m->notified = true;
                if (write(m->notify_fd, &one, sizeof(one)) < 0) {
                        /* an eventfd at its maximum is already readable */
                }
        }
}

static void wake_thread(struct mqtt_sink *m)
{
        uint64_t one = 1;

        if (write(m->wake_fd, &one, sizeof(one)) < 0) {
                /* already readable */
        }
}

/* ---- the network thread ---- */

static void on_connect(struct mosquitto *mosq, void *userdata, int rc)
{
        struct mqtt_sink *m = userdata;

        (void)mosq;
        m->connack_rc = rc;
        if (rc != 0)
                return;
        pthread_mutex_lock(&m->state_lock);
        m->gen++;
        m->up = true;
        m->settled = true;
        m->came_up = true;
        notify_loop(m);
        pthread_mutex_unlock(&m->state_lock);
}

static void on_publish(struct mosquitto *mosq, void *userdata, int mid)
{
        struct mqtt_sink *m = userdata;

        (void)mosq;
        pthread_mutex_lock(&m->state_lock);
        if (m->n_acks == m->cap_acks) {
                size_t cap = m->cap_acks ? m->cap_acks * 2 : 1024;
                struct ack *a = realloc(m->acks, cap * sizeof(*a));
                if (!a) {
                        /* lost: the batch times out and is delivered again */
                        pthread_mutex_unlock(&m->state_lock);
                        return;
                }
                m->acks = a;
                m->cap_acks = cap;
        }
        m->acks[m->n_acks++] = (struct ack){ .gen = m->gen, .mid = mid };
        notify_loop(m);
        pthread_mutex_unlock(&m->state_lock);
}

static void describe(int rc, char *cause, size_t len)
{
        if (rc == MOSQ_ERR_ERRNO)
                snprintf(cause, len, "%s", strerror(errno));
        else
                snprintf(cause, len, "%s", mosquitto_strerror(rc));
}

static struct mosquitto *client_new(struct mqtt_sink *m, char *cause, size_t len)
{
        struct mosquitto *mosq = mosquitto_new(m->client_id, false, m);
        int rc = MOSQ_ERR_SUCCESS;

        if (!mosq) {
                snprintf(cause, len, "cannot create an MQTT client: %s", strerror(errno));
                return NULL;
        }
        mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        mosquitto_threaded_set(mosq, true);
        mosquitto_max_inflight_messages_set(mosq, m->max_inflight);
        mosquitto_connect_callback_set(mosq, on_connect);
        mosquitto_publish_callback_set(mosq, on_publish);
        if (m->username)
                rc = mosquitto_username_pw_set(mosq, m->username, m->password);
        if (rc == MOSQ_ERR_SUCCESS && m->ca_file) {
                rc = mosquitto_tls_set(mosq, m->ca_file, NULL, m->cert_file, m->key_file, NULL);
                if (rc == MOSQ_ERR_SUCCESS && m->tls_insecure)
                        rc = mosquitto_tls_insecure_set(mosq, true);
        }
        if (rc != MOSQ_ERR_SUCCESS) {
                describe(rc, cause, len);
                mosquitto_destroy(mosq);
                return NULL;
        }
        return mosq;
}

static bool should_stop(struct mqtt_sink *m, bool *reconnect)
{
        pthread_mutex_lock(&m->state_lock);
        bool stop = m->stop;
        if (reconnect) {
                *reconnect = m->reconnect;
                m->reconnect = false;
        }
        pthread_mutex_unlock(&m->state_lock);
        return stop;
}

static void drain(int fd)
{
        uint64_t v;

        if (read(fd, &v, sizeof(v)) < 0) {
                /* EAGAIN: nothing pending */
        }
}

/* Serve one connection until it fails or the sink stops; the cause in cause. */
static void run_connection(struct mqtt_sink *m, struct mosquitto *mosq, char *cause, size_t len)
{
        bool reconnect = false;

        while (!should_stop(m, &reconnect)) {
                int sock = mosquitto_socket(mosq), rc;
                if (reconnect) {
                        snprintf(cause, len, "no PUBACK within %u ms: reconnecting",
                                 m->ack_timeout_ms);
                        return;
                }
                if (sock < 0) {
                        snprintf(cause, len, "connection closed");
                        return;
                }
                struct pollfd p[2] = {
                        { .fd = sock,
                          .events = (short)(POLLIN | (mosquitto_want_write(mosq) ? POLLOUT : 0)) },
                        { .fd = m->wake_fd, .events = POLLIN },
                };
                if (poll(p, 2, 1000) < 0 && errno != EINTR) {
                        snprintf(cause, len, "poll: %s", strerror(errno));
                        return;
                }
                if (p[1].revents & POLLIN)
                        drain(m->wake_fd);
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        rc = mosquitto_loop_read(mosq, 1);
                        if (rc != MOSQ_ERR_SUCCESS) {
                                if (rc == MOSQ_ERR_CONN_REFUSED || m->connack_rc > 0)
                                        snprintf(cause, len,
                                                 "the broker refused the connection: %s",
                                                 mosquitto_connack_string(m->connack_rc));
                                else if (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_NO_CONN)
                                        snprintf(cause, len, "connection lost");
                                else
                                        describe(rc, cause, len);
                                return;
                        }
                }
                if (mosquitto_want_write(mosq) &&
                    (rc = mosquitto_loop_write(mosq, 1)) != MOSQ_ERR_SUCCESS) {
                        describe(rc, cause, len);
                        return;
                }
                if ((rc = mosquitto_loop_misc(mosq)) != MOSQ_ERR_SUCCESS) {
                        snprintf(cause, len, "keepalive: %s", mosquitto_strerror(rc));
                        return;
                }
        }
}

static void *mqtt_thread(void *arg)
{
        struct mqtt_sink *m = arg;
        unsigned backoff = m->backoff_min_ms;

        while (!should_stop(m, NULL)) {
                char cause[256] = "";
                struct mosquitto *mosq = client_new(m, cause, sizeof(cause));
                if (mosq) {
                        m->connack_rc = -1;
                        int rc = mosquitto_connect(mosq, m->host, m->port, (int)m->keepalive_s);
                        if (rc != MOSQ_ERR_SUCCESS) {
                                describe(rc, cause, sizeof(cause));
                        } else {
                                pthread_mutex_lock(&m->conn_lock);
                                m->mosq = mosq;
                                pthread_mutex_unlock(&m->conn_lock);
                                run_connection(m, mosq, cause, sizeof(cause));
                                if (m->connack_rc == 0)
                                        backoff = m->backoff_min_ms;
                        }
                        pthread_mutex_lock(&m->conn_lock);
                        m->mosq = NULL;
                        pthread_mutex_unlock(&m->conn_lock);
                        mosquitto_destroy(mosq);
                }
                pthread_mutex_lock(&m->state_lock);
                m->up = false;
                m->went_down = true;
                m->settled = true;
                snprintf(m->cause, sizeof(m->cause), "%s", cause);
                notify_loop(m);
                bool stop = m->stop;
                pthread_mutex_unlock(&m->state_lock);
                if (stop)
                        break;
                struct pollfd p = { .fd = m->wake_fd, .events = POLLIN };
                int64_t until = (int64_t)backoff;
                /* wake-ups for PUBLISHes do not cut the back-off short; only stop does */
                while (until > 0 && !should_stop(m, NULL)) {
                        int slice = until > 200 ? 200 : (int)until;
                        if (poll(&p, 1, slice) > 0)
                                drain(m->wake_fd);
                        until -= slice;
                }
                backoff = backoff * 2 > m->backoff_max_ms ? m->backoff_max_ms : backoff * 2;
        }
        return NULL;
}

/* ---- the loop's side ---- */

static void publish_batch(struct mqtt_sink *m);

static void batch_finish(struct mqtt_sink *m, size_t k, const struct vg_error *err)
{
        for (size_t i = 0; i < 65536; i++)
                if (m->mid_index[i])
                        m->mid_index[i] = 0;
        evtimer_del(m->timeout_ev);
        m->busy = false;
        free(m->acked);
        m->acked = NULL;
        vg_sink_done(&m->base, k, err);
}

static size_t acked_prefix(const struct mqtt_sink *m)
{
        size_t k = 0;

        while (k < m->n && m->acked[k])
                k++;
        return k;
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
        struct mqtt_sink *m = arg;
        struct ack *acks;
        size_t n_acks;
        bool down, up, came_up;
        unsigned gen;
        char cause[256];

        (void)what;
        drain(fd);
        pthread_mutex_lock(&m->state_lock);
        m->notified = false;
        acks = m->acks;
        n_acks = m->n_acks;
        m->acks = NULL;
        m->n_acks = m->cap_acks = 0;
        down = m->went_down;
        came_up = m->came_up;
        m->went_down = m->came_up = false;
        up = m->up;
        gen = m->gen;
        snprintf(cause, sizeof(cause), "%s", m->cause);
        pthread_mutex_unlock(&m->state_lock);

        for (size_t i = 0; m->busy && i < n_acks; i++) {
                if (acks[i].gen != m->batch_gen || acks[i].mid < 0 || acks[i].mid > 65535)
                        continue;
                uint32_t idx = m->mid_index[acks[i].mid];
                if (idx && !m->acked[idx - 1]) {
                        m->acked[idx - 1] = true;
                        m->n_acked++;
                }
        }
        free(acks);
        if (m->busy && m->deferred) {
                if (came_up || down) {
                        m->deferred = false;
                        publish_batch(m);
                }
        } else if (m->busy && m->n_acked == m->n) {
                batch_finish(m, m->n, NULL);
        } else if (m->busy && (down || !up || gen != m->batch_gen)) {
                struct vg_error err = { 0 };
                vg_error_set(&err, -ECONNRESET,
                             "MQTT broker %s:%d: connection lost with %zu of %zu PUBACKs (%s)",
                             m->host, m->port, m->n_acked, m->n, cause[0] ? cause : "closed");
                batch_finish(m, acked_prefix(m), &err);
        }
        if (came_up && up)
                vg_sink_ready(&m->base);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
        struct mqtt_sink *m = arg;
        struct vg_error err = { 0 };

        (void)fd;
        (void)what;
        if (!m->busy)
                return;
        pthread_mutex_lock(&m->state_lock);
        m->reconnect = true;
        pthread_mutex_unlock(&m->state_lock);
        wake_thread(m);
        vg_error_set(&err, -ETIMEDOUT, "MQTT broker %s:%d: %zu of %zu PUBACKs within %u ms",
                     m->host, m->port, m->n_acked, m->n, m->ack_timeout_ms);
        batch_finish(m, acked_prefix(m), &err);
}

static void publish_batch(struct mqtt_sink *m)
{
        const struct vg_outbox_record *recs = m->recs;
        struct vg_error err = { 0 };
        size_t i = 0, n = m->n;
        char cause[256];
        bool up, settled;

        pthread_mutex_lock(&m->conn_lock);
        pthread_mutex_lock(&m->state_lock);
        up = m->up && m->mosq;
        settled = m->settled;
        m->batch_gen = m->gen;
        snprintf(cause, sizeof(cause), "%s", m->cause[0] ? m->cause : "connecting");
        pthread_mutex_unlock(&m->state_lock);
        if (!up && !settled) {
                /* starting up: wait for the first connection attempt rather than fail */
                pthread_mutex_unlock(&m->conn_lock);
                m->deferred = true;
                return;
        }
        if (!up) {
                pthread_mutex_unlock(&m->conn_lock);
                vg_error_set(&err, -ENOTCONN, "MQTT broker %s:%d: not connected: %s", m->host,
                             m->port, cause);
                batch_finish(m, 0, &err);
                return;
        }
        for (i = 0; i < n; i++) {
                _cleanup_free_ char *topic = NULL;
                int mid = 0, rc;
                if (asprintf(&topic, "%s/%s/%s", m->prefix, recs[i].agent_id, recs[i].event_type) <
                    0) {
                        vg_error_set(&err, -ENOMEM, "out of memory");
                        break;
                }
                rc = mosquitto_publish(m->mosq, &mid, topic, (int)recs[i].body_len, recs[i].body, 1,
                                       false);
                if (rc != MOSQ_ERR_SUCCESS) {
                        describe(rc, cause, sizeof(cause));
                        vg_error_set(&err, rc == MOSQ_ERR_NO_CONN ? -ENOTCONN : -EIO,
                                     "MQTT broker %s:%d: publishing event %s to %s: %s", m->host,
                                     m->port, recs[i].event_id, topic, cause);
                        break;
                }
                if (mid >= 0 && mid <= 65535)
                        m->mid_index[mid] = (uint32_t)i + 1;
        }
        pthread_mutex_unlock(&m->conn_lock);
        wake_thread(m);
        if (err.code) {
                /* the earlier ones may still be acknowledged: delivered again (at least once) */
                batch_finish(m, 0, &err);
                return;
        }
        struct timeval tv = { .tv_sec = m->ack_timeout_ms / 1000,
                              .tv_usec = (m->ack_timeout_ms % 1000) * 1000 };
        evtimer_add(m->timeout_ev, &tv);
}

static void mqtt_deliver(struct vg_sink *s, const struct vg_outbox_record *recs, size_t n)
{
        struct mqtt_sink *m = (struct mqtt_sink *)s;
        struct vg_error err = { 0 };

        m->acked = calloc(n, sizeof(*m->acked));
        if (!m->acked) {
                vg_error_set(&err, -ENOMEM, "out of memory");
                vg_sink_done(s, 0, &err);
                return;
        }
        m->recs = recs;
        m->n = n;
        m->n_acked = 0;
        m->busy = true;
        m->deferred = false;
        publish_batch(m);
}

static void mqtt_cancel(struct vg_sink *s)
{
        struct mqtt_sink *m = (struct mqtt_sink *)s;

        if (m->timeout_ev)
                evtimer_del(m->timeout_ev);
        m->busy = false;
        m->deferred = false;
        free(m->acked);
        m->acked = NULL;
}

static int mqtt_start(struct vg_sink *s, struct event_base *base, struct vg_error *err)
{
        struct mqtt_sink *m = (struct mqtt_sink *)s;
        int r;

        m->notify_ev = event_new(base, m->notify_fd, EV_READ | EV_PERSIST, on_notify, m);
        m->timeout_ev = evtimer_new(base, on_timeout, m);
        if (!m->notify_ev || !m->timeout_ev || event_add(m->notify_ev, NULL) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = pthread_create(&m->thread, NULL, mqtt_thread, m);
        if (r != 0)
                return vg_error_set(err, -r, "cannot start the MQTT thread: %s", strerror(r));
        m->thread_started = true;
        return 0;
}

static void mqtt_free(struct vg_sink *s)
{
        struct mqtt_sink *m = (struct mqtt_sink *)s;

        if (m->thread_started) {
                pthread_mutex_lock(&m->state_lock);
                m->stop = true;
                pthread_mutex_unlock(&m->state_lock);
                wake_thread(m);
                pthread_join(m->thread, NULL);
        }
        if (m->notify_ev)
                event_free(m->notify_ev);
        if (m->timeout_ev)
                event_free(m->timeout_ev);
        if (m->wake_fd >= 0)
                close(m->wake_fd);
        if (m->notify_fd >= 0)
                close(m->notify_fd);
        pthread_mutex_destroy(&m->conn_lock);
        pthread_mutex_destroy(&m->state_lock);
        free(m->acks);
        free(m->acked);
        free(m->mid_index);
        free(m->host);
        free(m->client_id);
        free(m->prefix);
        free(m->username);
        if (m->password)
                memset(m->password, 0, strlen(m->password));
        free(m->password);
        free(m->ca_file);
        free(m->cert_file);
        free(m->key_file);
        free(s->name);
        free(m);
}

static const struct vg_sink_ops mqtt_ops = {
        .kind = "mqtt",
        .start = mqtt_start,
        .deliver = mqtt_deliver,
        .cancel = mqtt_cancel,
        .free = mqtt_free,
};

static bool dup_opt(char **dst, const char *src)
{
        *dst = src && *src ? strdup(src) : NULL;
        return !src || !*src || *dst;
}

int vg_sink_mqtt_new(const struct vg_sink_mqtt_config *cfg, struct vg_sink **out,
                     struct vg_error *err)
{
        static const struct vg_sink_mqtt_config none = { 0 };
        struct mqtt_sink *m;
        char host[256], id[300];

        if (!cfg)
                cfg = &none;
        const char *prefix = cfg->topic_prefix ? cfg->topic_prefix : "vigil/events";
        if (!*prefix || strpbrk(prefix, "+#") || prefix[strlen(prefix) - 1] == '/')
                return vg_error_set(err, -EINVAL,
                                    "mqtt topic prefix \"%s\": expected topic levels without '+', "
                                    "'#' or a trailing '/'",
                                    prefix);
        if (cfg->port < 0 || cfg->port > 65535)
                return vg_error_set(err, -EINVAL, "mqtt port %d: expected 1 to 65535", cfg->port);
        if (cfg->password && !cfg->username)
                return vg_error_set(err, -EINVAL, "mqtt password without a username");
        pthread_once(&lib_once, lib_init);
        if (gethostname(host, sizeof(host)) < 0)
                snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(id, sizeof(id), "vigil-verifier-%s", host);

        m = calloc(1, sizeof(*m));
        if (!m)
                return vg_error_set(err, -ENOMEM, "out of memory");
        m->base.ops = &mqtt_ops;
        m->wake_fd = m->notify_fd = -1;
        pthread_mutex_init(&m->conn_lock, NULL);
        pthread_mutex_init(&m->state_lock, NULL);
        m->port = cfg->port ? cfg->port : cfg->ca_file ? 8883 : 1883;
        m->tls_insecure = cfg->tls_insecure;
        m->keepalive_s = cfg->keepalive_s ? cfg->keepalive_s : 30;
        m->max_inflight = cfg->max_inflight ? cfg->max_inflight : 1000;
        m->ack_timeout_ms = cfg->ack_timeout_ms ? cfg->ack_timeout_ms : 30000;
        m->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : 500;
        m->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 30000;
        if (m->backoff_max_ms < m->backoff_min_ms)
                m->backoff_max_ms = m->backoff_min_ms;
        m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        m->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        m->mid_index = calloc(65536, sizeof(*m->mid_index));
        bool ok = m->wake_fd >= 0 && m->notify_fd >= 0 && m->mid_index &&
                  dup_opt(&m->base.name, cfg->name ? cfg->name : "mqtt") &&
                  dup_opt(&m->host, cfg->host ? cfg->host : "127.0.0.1") &&
                  dup_opt(&m->client_id, cfg->client_id ? cfg->client_id : id) &&
                  dup_opt(&m->prefix, prefix) && dup_opt(&m->username, cfg->username) &&
                  dup_opt(&m->password, cfg->password) && dup_opt(&m->ca_file, cfg->ca_file) &&
                  dup_opt(&m->cert_file, cfg->cert_file) && dup_opt(&m->key_file, cfg->key_file);
        if (!ok) {
                mqtt_free(&m->base);
                return vg_error_set(err, -ENOMEM, "out of memory or file descriptors");
        }
        *out = &m->base;
        return 0;
}
