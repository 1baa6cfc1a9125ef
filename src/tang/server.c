/* vigil-tang: the server.
 *
 * Threads: N workers (option workers, default one per CPU), each with its own event loop and
 * HTTP server. Worker 0 runs on the daemon's loop (which also owns the reload, inotify and flush
 * events); the others each run a thread, stopped through an eventfd.
 *
 * Listening sockets:
 *  - --listen / listen addresses (no socket activation): every worker opens its OWN socket per
 *    address, with SO_REUSEPORT, and accepts only on it. The kernel spreads incoming
 *    connections across these sockets by a hash of the connection's addresses, so a burst of
 *    connections cannot all land on whichever loop woke first while the other cores idle.
 *    Consequence of SO_REUSEPORT: another process of the same user that also sets it may bind
 *    the same port and share the connections; a server without it (tangd under socat) on the
 *    port makes our bind fail as before.
 *  - systemd socket activation (LISTEN_FDS): there is one socket per address and it is not
 *    ours to duplicate, so every worker's loop waits on every shared socket and whichever
 *    wakes first accepts.
 *
 * Shared state across workers: the loaded keys (swapped on reload under keys_lock, each request
 * holding a reference) and the recovery times (under rec_lock, written by a 1 s timer). */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "http_server.h"
#include "log.h"
#include "rec.h"
#include "tang_keys.h"
#include "tls.h"

static const struct vg_config_option tangd_options[] = {
        { "jwkdir", VG_CONFIG_PATH, "/var/db/tang",
          "key directory as tang lays it out: *.jwk advertised, .*.jwk hidden", 0, 0 },
        { "listen", VG_CONFIG_STRING_LIST, "0.0.0.0:7500",
          "addresses to listen on: 127.0.0.1:7500, [::1]:7500 (port 7500 when omitted)", 0, 0 },
        { "workers", VG_CONFIG_INTEGER, "0",
          "threads serving requests, each with its own event loop and, unless socket-activated, "
          "its own SO_REUSEPORT socket per listen address (0: one per CPU)",
          0, 256 },
        { "user", VG_CONFIG_STRING, NULL,
          "user to run as after binding when started as root (unset: _tang if it exists, "
          "else nobody)",
          0, 0 },
        { "watch", VG_CONFIG_BOOLEAN, "true",
          "reload the keys when the key directory changes (inotify); SIGHUP always reloads", 0, 0 },
        { "server_cert", VG_CONFIG_PATH, NULL,
          "serve HTTPS with this certificate (PEM, then its chain); unset: plain HTTP as tangd", 0,
          0 },
        { "server_key", VG_CONFIG_PATH, NULL, "private key of server_cert (PEM)", 0, 0 },
        { "server_key_password", VG_CONFIG_STRING, NULL, "password of an encrypted server_key", 0,
          0 },
        { "trusted_client_ca", VG_CONFIG_PATH, NULL,
          "with server_cert: require client certificates issued by these CAs (mTLS)", 0, 0 },
        {},
};

const struct vg_config_schema vg_tangd_schema = {
        .component = "tang",
        .section = "tang",
        .options = tangd_options,
};

/* A loaded key directory shared by the workers: a request holds a reference for its duration,
 * a reload swaps the pointer under keys_lock and drops the old reference. */
struct keyref {
        struct vg_tang_keys *k;
        atomic_int refs;
};

struct worker {
        struct vg_tangd *t;
        struct event_base *base; /* worker 0: the daemon's loop */
        struct vg_http_server *srv;
        struct evconnlistener **ls;
        size_t n_ls;
        int *own_fds; /* this worker's SO_REUSEPORT sockets (not socket-activated) */
        size_t n_own_fds;
        int stop_fd; /* eventfd: other workers' loops are stopped through it */
        struct event *stop_ev;
        pthread_t thread;
        bool started;
};

struct vg_tangd {
        struct event_base *base;
        char *dir;
        pthread_mutex_t keys_lock;
        struct keyref *keys;
        int *fds; /* systemd's listening sockets, shared by every worker (else none) */
        size_t n_fds;
        struct worker *workers;
        size_t n_workers;
        int inotify_fd;
        struct event *inotify_ev;
        struct event *reload_timer;
        pthread_mutex_t rec_lock; /* recoveries, dirty */
        json_t *recoveries;
        bool dirty;
        struct event *flush_timer;
        SSL_CTX *tls; /* HTTPS: shared by every worker's server; NULL: plain HTTP */
};

static struct keyref *keys_get(struct vg_tangd *t)
{
        struct keyref *r;

        pthread_mutex_lock(&t->keys_lock);
        r = t->keys;
        atomic_fetch_add(&r->refs, 1);
        pthread_mutex_unlock(&t->keys_lock);
        return r;
}

static void keys_put(struct keyref *r)
{
        if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
                vg_tang_keys_free(r->k);
                free(r);
        }
}

int vg_tangd_parse_listen(const char *spec, char *addr, size_t addr_len, unsigned *port,
                          struct vg_error *err)
{
        const char *host = spec, *colon = NULL, *end;
        size_t n;

        *port = VG_TANGD_DEFAULT_PORT;
        if (spec[0] == '[') {
                host = spec + 1;
                end = strchr(host, ']');
                if (!end || (end[1] && end[1] != ':'))
                        return vg_error_set(err, -EINVAL, "listen \"%s\": expected [IPv6]:PORT",
                                            spec);
                if (end[1] == ':')
                        colon = end + 1;
        } else {
                colon = strrchr(spec, ':');
                if (colon && strchr(spec, ':') != colon)
                        return vg_error_set(err, -EINVAL,
                                            "listen \"%s\": write IPv6 addresses as [ADDR]:PORT",
                                            spec);
                end = colon ? colon : spec + strlen(spec);
        }
        n = (size_t)(end - host);
        if (n == 0 || n >= addr_len)
                return vg_error_set(err, -EINVAL, "listen \"%s\": no address", spec);
        memcpy(addr, host, n);
        addr[n] = '\0';
        if (colon) {
                char *e;
                unsigned long p;

                errno = 0;
                p = strtoul(colon + 1, &e, 10);
                if (!colon[1] || *e || errno || p == 0 || p > 65535)
                        return vg_error_set(err, -EINVAL, "listen \"%s\": port must be 1 to 65535",
                                            spec);
                *port = (unsigned)p;
        }
        return 0;
}

/* ---- recovery times ---------------------------------------------------------------------- */

void vg_tangd_flush(struct vg_tangd *t)
{
        char path[PATH_MAX], tmp[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        FILE *f;

        pthread_mutex_lock(&t->rec_lock);
        if (t->dirty)
                text = json_dumps(t->recoveries, JSON_SORT_KEYS | JSON_COMPACT);
        t->dirty = false;
        pthread_mutex_unlock(&t->rec_lock);
        if (!text)
                return;
        snprintf(path, sizeof(path), "%s/%s", t->dir, VG_TANGD_RECOVERIES_FILE);
        snprintf(tmp, sizeof(tmp), "%s/%s.tmp", t->dir, VG_TANGD_RECOVERIES_FILE);
        f = fopen(tmp, "we");
        if (!f || fputs(text, f) < 0 || fclose(TAKE_PTR(f)) != 0 || rename(tmp, path) < 0) {
                vg_warn(VG_F("path", path), "cannot record recovery times: %s", strerror(errno));
                if (f)
                        fclose(f);
                unlink(tmp);
        }
}

/* Every second on the daemon's loop: the record is written at most once a second. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
        vg_tangd_flush(arg);
}

static void note_recovery(struct vg_tangd *t, const struct vg_tang_exc *key)
{
        const char *thp = vg_tang_exc_thp(key);
        json_int_t now = (json_int_t)time(NULL);
        json_t *old;

        pthread_mutex_lock(&t->rec_lock);
        old = json_object_get(t->recoveries, thp);
        if (!old || json_integer_value(old) != now) {
                json_object_set_new(t->recoveries, thp, json_integer(now));
                t->dirty = true;
        }
        pthread_mutex_unlock(&t->rec_lock);
}

static void load_recoveries(struct vg_tangd *t)
{
        char path[PATH_MAX];
        json_t *j;

        snprintf(path, sizeof(path), "%s/%s", t->dir, VG_TANGD_RECOVERIES_FILE);
        j = json_load_file(path, 0, NULL);
        if (json_is_object(j)) {
                t->recoveries = j;
                return;
        }
        json_decref(j);
        t->recoveries = json_object();
}

/* ---- routes ------------------------------------------------------------------------------ */

static bool thumbprint_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;

        return n > 0 &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

static void log_request(struct vg_http_request *req, int status, const char *why)
{
        vg_debug(VG_F("peer", vg_http_request_peer(req)), "%s %s => %d%s%s",
                 vg_http_request_method(req), vg_http_request_path(req), status, why ? ": " : "",
                 why ? why : "");
}

static void adv_cb(struct vg_http_request *req, void *arg)
{
        struct vg_tangd *t = arg;
        const char *thp = vg_http_request_param(req, "thp");
        struct keyref *keys = keys_get(t);
        const char *adv = NULL;
        size_t len = 0;

        if (!thp)
                adv = vg_tang_keys_adv(keys->k, &len);
        else if (thumbprint_ok(thp))
                adv = vg_tang_keys_adv_thp(keys->k, thp, &len);
        if (!adv) {
                log_request(req, 404,
                            thp ? "no signing key has this thumbprint"
                                : "no advertised signing key");
                vg_http_reply(req, 404, NULL, NULL, 0);
        } else {
                log_request(req, 200, NULL);
                vg_http_reply(req, 200, "application/jose+json", adv, len);
        }
        keys_put(keys);
}

static void rec_cb(struct vg_http_request *req, void *arg)
{
        struct vg_tangd *t = arg;
        const char *kid = vg_http_request_param(req, "kid");
        struct vg_error err = { 0 };
        const struct vg_tang_exc *key = NULL;
        bool signing = false;
        _cleanup_free_ char *reply = NULL;
        const uint8_t *body;
        size_t len, reply_len;
        int status;

        struct keyref *keys = keys_get(t);

        body = vg_http_request_body(req, &len);
        if (thumbprint_ok(kid)) {
                key = vg_tang_keys_exchange(keys->k, kid);
                if (!key) {
                        size_t alen;
                        signing = vg_tang_keys_adv_thp(keys->k, kid, &alen) != NULL;
                }
        }
        status = vg_tangd_rec_exc(key, signing, body, len, &reply, &reply_len, &err);
        if (status != 200) {
                log_request(req, status, vg_error_str(&err));
                vg_http_reply(req, status, NULL, NULL, 0);
        } else {
                note_recovery(t, key);
                log_request(req, 200, NULL);
                vg_http_reply(req, 200, "application/jwk+json", reply, reply_len);
        }
        keys_put(keys);
}

/* ---- listening sockets and workers ------------------------------------------------------ */

/* A listening socket on spec, with SO_REUSEPORT so that every worker can bind its own. */
static int listen_socket(const char *spec, struct vg_error *err)
{
        char addr[INET6_ADDRSTRLEN + 1];
        struct sockaddr_storage ss = { 0 };
        socklen_t sl;
        unsigned port;
        int fd, one = 1, r;

        r = vg_tangd_parse_listen(spec, addr, sizeof(addr), &port, err);
        if (r < 0)
                return r;
        if (strchr(addr, ':')) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t)port);
                if (inet_pton(AF_INET6, addr, &in6->sin6_addr) != 1)
                        return vg_error_set(err, -EINVAL, "listen \"%s\": not an IPv6 address",
                                            spec);
                sl = sizeof(*in6);
        } else {
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t)port);
                if (inet_pton(AF_INET, addr, &in->sin_addr) != 1)
                        return vg_error_set(err, -EINVAL, "listen \"%s\": not an IPv4 address",
                                            spec);
                sl = sizeof(*in);
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return vg_error_set(err, -errno, "listen \"%s\": %s", spec, strerror(errno));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
                r = -errno;
                close(fd);
                return vg_error_set(err, r, "listen \"%s\": SO_REUSEPORT: %s", spec, strerror(-r));
        }
        if (ss.ss_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1024) < 0) {
                r = -errno;
                close(fd);
                return vg_error_set(err, r, "listen \"%s\": %s", spec, strerror(-r));
        }
        return fd;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
        struct worker *w = arg;

        vg_http_server_accept(w->srv, fd, sa);
}

/* LISTEN_FDS/LISTEN_PID as sd_listen_fds(3) reads them; the number of sockets adopted. */
static int adopt_systemd_sockets(struct vg_tangd *t, struct vg_error *err)
{
        const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
        long n;

        if (!pid || !fds || strtol(pid, NULL, 10) != (long)getpid())
                return 0;
        n = strtol(fds, NULL, 10);
        if (n <= 0 || n > 64)
                return 0;
        t->fds = calloc((size_t)n, sizeof(*t->fds));
        if (!t->fds)
                return vg_error_set(err, -ENOMEM, "out of memory");
        for (int fd = 3; fd < 3 + n; fd++) {
                int listening = 0, type = 0;
                socklen_t len = sizeof(int);

                if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 ||
                    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &(socklen_t){ sizeof(int) }) < 0 ||
                    !listening || type != SOCK_STREAM)
                        return vg_error_set(err, -EINVAL,
                                            "LISTEN_FDS: file descriptor %d is not a listening "
                                            "stream socket (the socket unit needs "
                                            "ListenStream= and Accept=no)",
                                            fd);
                fcntl(fd, F_SETFD, FD_CLOEXEC);
                evutil_make_socket_nonblocking(fd);
                t->fds[t->n_fds++] = fd;
        }
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        vg_info(NULL,
                "socket-activated: serving the %ld socket(s) systemd passed; listen is ignored", n);
        return (int)n;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
        struct worker *w = arg;
        uint64_t v;

        if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                vg_debug(NULL, "worker stop: %s", strerror(errno));
        event_base_loopbreak(w->base);
}

static void *worker_main(void *arg)
{
        struct worker *w = arg;

        event_base_dispatch(w->base);
        return NULL;
}

/* This worker's own socket on every listen address (none under socket activation). */
static int worker_listen(struct worker *w, char *const *listen, bool log, struct vg_error *err)
{
        size_t n = 0;
        int fd;

        while (listen[n])
                n++;
        w->own_fds = calloc(n, sizeof(*w->own_fds));
        if (!w->own_fds)
                return vg_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                fd = listen_socket(listen[i], err);
                if (fd < 0)
                        return fd;
                w->own_fds[w->n_own_fds++] = fd;
                if (log)
                        vg_info(VG_F("listen", listen[i]),
                                w->t->tls ? "listening (HTTPS)" : "listening");
        }
        return 0;
}

/* An HTTP server on w->base (base, or a new loop on a new thread when NULL) taking connections
 * from its own sockets on the listen addresses, or from systemd's shared ones. */
static int worker_init(struct vg_tangd *t, struct worker *w, struct event_base *base,
                       char *const *listen, struct vg_error *err)
{
        struct vg_http_server_config cfg = {
                .no_listener = true,
                .name = "tang",
                .max_start_line = 4096 + 64,
                .max_body_bytes = VG_TANGD_MAX_BODY,
                .tls = t->tls,
        };
        int r;

        w->t = t;
        w->stop_fd = -1;
        w->base = base ? base : event_base_new();
        if (!w->base)
                return vg_error_set(err, -ENOMEM, "cannot create an event loop");
        r = vg_http_server_new(w->base, &cfg, &w->srv, err);
        if (r < 0)
                return r;
        if (vg_http_server_route(w->srv, "GET", "/adv", adv_cb, t) < 0 ||
            vg_http_server_route(w->srv, "GET", "/adv/{thp}", adv_cb, t) < 0 ||
            vg_http_server_route(w->srv, "POST", "/rec/{kid}", rec_cb, t) < 0)
                return vg_error_set(err, -EINVAL, "cannot add the routes");
        if (!t->n_fds) {
                r = worker_listen(w, listen, base != NULL, err);
                if (r < 0)
                        return r;
        }
        /* Socket-activated: every loop waits on every shared socket; whichever wakes first
         * accepts. Otherwise each loop has its own sockets and the kernel picks the loop. */
        const int *fds = t->n_fds ? t->fds : w->own_fds;
        size_t n_fds = t->n_fds ? t->n_fds : w->n_own_fds;

        w->ls = calloc(n_fds, sizeof(*w->ls));
        if (!w->ls)
                return vg_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n_fds; i++) {
                w->ls[i] = evconnlistener_new(w->base, accept_cb, w, 0, -1, fds[i]);
                if (!w->ls[i])
                        return vg_error_set(err, -ENOMEM, "cannot listen on socket %d", fds[i]);
                w->n_ls++;
        }
        if (!base) {
                w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                if (w->stop_fd < 0)
                        return vg_error_set(err, -errno, "eventfd: %s", strerror(errno));
                w->stop_ev = event_new(w->base, w->stop_fd, EV_READ, stop_cb, w);
                if (!w->stop_ev || event_add(w->stop_ev, NULL) < 0)
                        return vg_error_set(err, -ENOMEM, "out of memory");
                r = pthread_create(&w->thread, NULL, worker_main, w);
                if (r)
                        return vg_error_set(err, -r, "cannot start a worker: %s", strerror(r));
                w->started = true;
        }
        return 0;
}

static void worker_stop(struct worker *w)
{
        uint64_t one = 1;

        if (w->started) {
                if (write(w->stop_fd, &one, sizeof(one)) < 0)
                        vg_warn(NULL, "cannot stop a worker: %s", strerror(errno));
                pthread_join(w->thread, NULL);
                w->started = false;
        }
}

static void worker_free(struct worker *w)
{
        for (size_t i = 0; i < w->n_ls; i++)
                evconnlistener_free(w->ls[i]);
        free(w->ls);
        for (size_t i = 0; i < w->n_own_fds; i++)
                close(w->own_fds[i]);
        free(w->own_fds);
        if (w->srv)
                vg_http_server_free(w->srv);
        if (w->stop_ev)
                event_free(w->stop_ev);
        if (w->stop_fd >= 0)
                close(w->stop_fd);
        if (w->base && w->base != w->t->base)
                vg_event_base_free_drained(w->base);
}

/* ---- reloads ----------------------------------------------------------------------------- */

int vg_tangd_reload(struct vg_tangd *t, struct vg_error *err)
{
        struct keyref *n = calloc(1, sizeof(*n)), *old;
        int r;

        const char *const *skipped;
        size_t n_skipped;

        if (!n)
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = vg_tang_keys_load(t->dir, &n->k, err);
        if (r < 0) {
                free(n);
                return r;
        }
        skipped = vg_tang_keys_skipped(n->k, &n_skipped);
        for (size_t i = 0; i < n_skipped; i++)
                vg_warn(VG_F("jwkdir", t->dir), "key file left out: %s", skipped[i]);
        atomic_init(&n->refs, 1);
        pthread_mutex_lock(&t->keys_lock);
        old = t->keys;
        t->keys = n;
        pthread_mutex_unlock(&t->keys_lock);
        keys_put(old);
        return 0;
}

static void reload_cb(evutil_socket_t fd, short what, void *arg)
{
        struct vg_tangd *t = arg;
        struct vg_error err = { 0 };

        if (vg_tangd_reload(t, &err) < 0)
                vg_warn(VG_F("jwkdir", t->dir), "keeping the keys loaded before: %s",
                        vg_error_str(&err));
        else
                vg_info(VG_F("jwkdir", t->dir), "keys reloaded");
}

static void inotify_cb(evutil_socket_t fd, short what, void *arg)
{
        struct vg_tangd *t = arg;
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        bool relevant = false;
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf))) > 0) {
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *)p;
                        /* Our own recovery file changes on every flush: not a key change. */
                        if (!ev->len || strncmp(ev->name, ".vigil-", 7) != 0)
                                relevant = true;
                        p += sizeof(*ev) + ev->len;
                }
        }
        if (relevant) {
                /* A rotation is a burst of renames and creations: reload once it settles. */
                struct timeval tv = { .tv_usec = 50 * 1000 };
                evtimer_add(t->reload_timer, &tv);
        }
}

/* ---- life cycle -------------------------------------------------------------------------- */

static bool has_advertised_pair(const struct vg_tang_keys *k)
{
        const struct vg_tang_key_info *info;
        size_t n = vg_tang_keys_list(k, &info);
        bool sig = false, exc = false;

        for (size_t i = 0; i < n; i++)
                if (!info[i].hidden)
                        *(info[i].signing ? &sig : &exc) = true;
        return sig && exc;
}

/* As tangd: a directory without an advertised signing and exchange key gets a new pair, owned
 * like the directory (root starting us for a _tang directory must not leave root's files). */
static int generate_keys(struct vg_tangd *t, struct vg_error *err)
{
        _cleanup_free_ char *s = NULL, *e = NULL;
        struct stat st;
        int r;

        r = vg_tang_keygen(t->dir, &s, &e, err);
        if (r < 0) {
                vg_error_prefix(err, "no advertised keys, and generating them failed: ");
                return r;
        }
        if (geteuid() == 0 && stat(t->dir, &st) == 0 && st.st_uid != 0) {
                const char *thp[] = { s, e };
                for (size_t i = 0; i < 2; i++) {
                        _cleanup_free_ char *path = NULL;
                        if (asprintf(&path, "%s/%s.jwk", t->dir, thp[i]) < 0)
                                return vg_error_set(err, -ENOMEM, "out of memory");
                        if (chown(path, st.st_uid, st.st_gid) < 0)
                                return vg_error_set(err, -errno, "%s: chown: %s", path,
                                                    strerror(errno));
                }
        }
        vg_notice(VG_F("jwkdir", t->dir, "signing", s, "exchange", e),
                  "no advertised keys: generated a new pair");
        return vg_tangd_reload(t, err);
}

/* Optional HTTPS (and mTLS with trusted_client_ca): one context for every worker. */
static int tls_init(struct vg_tangd *t, const struct vg_config *cfg, struct vg_error *err)
{
        struct vg_tls_server_config tc = {
                .cert_file = vg_config_string(cfg, "server_cert"),
                .key_file = vg_config_string(cfg, "server_key"),
                .key_password = vg_config_string(cfg, "server_key_password"),
                .client_ca_file = vg_config_string(cfg, "trusted_client_ca"),
        };

        if (tc.cert_file && !tc.cert_file[0])
                tc.cert_file = NULL;
        if (tc.key_file && !tc.key_file[0])
                tc.key_file = NULL;
        if (tc.client_ca_file && !tc.client_ca_file[0])
                tc.client_ca_file = NULL;
        if (!tc.cert_file && !tc.key_file) {
                if (tc.client_ca_file)
                        return vg_error_set(err, -EINVAL,
                                            "trusted_client_ca needs server_cert and server_key");
                return 0;
        }
        if (!tc.cert_file || !tc.key_file)
                return vg_error_set(err, -EINVAL, "HTTPS needs both server_cert and server_key");
        tc.client_auth = tc.client_ca_file ? VG_TLS_CLIENT_AUTH_REQUIRED : VG_TLS_CLIENT_AUTH_NONE;
        t->tls = vg_tls_server_ctx_new(&tc, err);
        return t->tls ? 0 : -EINVAL;
}

int vg_tangd_new(struct event_base *base, const struct vg_config *cfg, struct vg_tangd **out,
                 struct vg_error *err)
{
        _cleanup_(vg_tangd_freep) struct vg_tangd *t = calloc(1, sizeof(*t));
        const char *dir = vg_config_string(cfg, "jwkdir");
        char *const *listen = vg_config_strv(cfg, "listen");
        int64_t nw = vg_config_integer(cfg, "workers");
        struct timeval second = { .tv_sec = 1 };
        int r;

        if (!t)
                return vg_error_set(err, -ENOMEM, "out of memory");
        t->base = base;
        t->inotify_fd = -1;
        pthread_mutex_init(&t->keys_lock, NULL);
        pthread_mutex_init(&t->rec_lock, NULL);
        if (!dir || !dir[0])
                return vg_error_set(err, -EINVAL, "no key directory: set jwkdir or --jwkdir");
        t->dir = strdup(dir);
        t->reload_timer = evtimer_new(base, reload_cb, t);
        t->flush_timer = event_new(base, -1, EV_PERSIST, flush_cb, t);
        if (!t->dir || !t->reload_timer || !t->flush_timer ||
            event_add(t->flush_timer, &second) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = vg_tangd_reload(t, err);
        if (r == 0 && !has_advertised_pair(t->keys->k))
                r = generate_keys(t, err);
        if (r < 0)
                return r;
        load_recoveries(t);
        r = tls_init(t, cfg, err);
        if (r < 0)
                return r;

        r = adopt_systemd_sockets(t, err);
        if (r < 0)
                return r;
        if (r == 0 && (!listen || !listen[0]))
                return vg_error_set(err, -EINVAL, "no listen address");
        if (nw <= 0) {
                long cpus = sysconf(_SC_NPROCESSORS_ONLN);
                nw = cpus > 0 ? cpus : 1;
        }
        t->workers = calloc((size_t)nw, sizeof(*t->workers));
        if (!t->workers)
                return vg_error_set(err, -ENOMEM, "out of memory");
        for (int64_t i = 0; i < nw; i++) {
                t->n_workers++;
                r = worker_init(t, &t->workers[i], i == 0 ? base : NULL, listen, err);
                if (r < 0)
                        return r;
        }
        vg_debug(NULL, "%zu workers, %s", t->n_workers,
                 t->n_fds ? "sharing systemd's sockets"
                          : "one SO_REUSEPORT socket each per address");

        if (!vg_config_boolean(cfg, "watch")) {
                vg_info(VG_F("jwkdir", t->dir),
                        "not watching the key directory: reload with SIGHUP");
                *out = TAKE_PTR(t);
                return 0;
        }
        t->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (t->inotify_fd < 0 ||
            inotify_add_watch(t->inotify_fd, t->dir,
                              IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE |
                                  IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF) < 0)
                vg_warn(VG_F("jwkdir", t->dir),
                        "cannot watch the key directory (%s): reload with SIGHUP", strerror(errno));
        else {
                t->inotify_ev = event_new(base, t->inotify_fd, EV_READ | EV_PERSIST, inotify_cb, t);
                if (!t->inotify_ev || event_add(t->inotify_ev, NULL) < 0)
                        return vg_error_set(err, -ENOMEM, "out of memory");
        }
        *out = TAKE_PTR(t);
        return 0;
}

void vg_tangd_free(struct vg_tangd *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n_workers; i++)
                worker_stop(&t->workers[i]);
        for (size_t i = 0; i < t->n_workers; i++)
                worker_free(&t->workers[i]);
        free(t->workers);
        for (size_t i = 0; i < t->n_fds; i++)
                close(t->fds[i]);
        free(t->fds);
        if (t->recoveries)
                vg_tangd_flush(t);
        if (t->inotify_ev)
                event_free(t->inotify_ev);
        if (t->inotify_fd >= 0)
                close(t->inotify_fd);
        if (t->reload_timer)
                event_free(t->reload_timer);
        if (t->flush_timer)
                event_free(t->flush_timer);
        json_decref(t->recoveries);
        keys_put(t->keys);
        SSL_CTX_free(t->tls);
        pthread_mutex_destroy(&t->keys_lock);
        pthread_mutex_destroy(&t->rec_lock);
        free(t->dir);
        free(t);
}
