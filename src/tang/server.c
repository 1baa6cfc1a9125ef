/* vigil-tang: the server. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_server.h"
#include "log.h"
#include "rec.h"
#include "tang_keys.h"

static const struct vg_config_option tangd_options[] = {
        { "jwkdir", VG_CONFIG_PATH, "/var/db/tang",
          "key directory as tang lays it out: *.jwk advertised, .*.jwk hidden", 0, 0 },
        { "listen", VG_CONFIG_STRING_LIST, "0.0.0.0:7500",
          "addresses to listen on: 127.0.0.1:7500, [::1]:7500 (port 7500 when omitted)", 0, 0 },
        { "user", VG_CONFIG_STRING, NULL,
          "user to run as after binding when started as root (unset: _tang if it exists, "
          "else nobody)",
          0, 0 },
        {},
};

const struct vg_config_schema vg_tangd_schema = {
        .component = "tang",
        .section = "tang",
        .options = tangd_options,
};

struct vg_tangd {
        struct event_base *base;
        char *dir;
        struct vg_tang_keys *keys;
        struct vg_http_server **servers;
        size_t n_servers;
        struct evconnlistener **activated; /* systemd's sockets, feeding servers[0] */
        size_t n_activated;
        int inotify_fd;
        struct event *inotify_ev;
        struct event *reload_timer;
        json_t *recoveries;
        bool dirty;
        time_t last_flush;
        struct event *flush_timer;
};

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

        if (!t->dirty)
                return;
        t->dirty = false;
        t->last_flush = time(NULL);
        snprintf(path, sizeof(path), "%s/%s", t->dir, VG_TANGD_RECOVERIES_FILE);
        snprintf(tmp, sizeof(tmp), "%s/%s.tmp", t->dir, VG_TANGD_RECOVERIES_FILE);
        if (json_dump_file(t->recoveries, tmp, JSON_SORT_KEYS | JSON_COMPACT) < 0 ||
            rename(tmp, path) < 0) {
                vg_warn(VG_F("path", path), "cannot record recovery times: %s", strerror(errno));
                unlink(tmp);
        }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
        vg_tangd_flush(arg);
}

static void note_recovery(struct vg_tangd *t, const struct vg_tang_exc *key)
{
        const char *thp = vg_tang_exc_thp(key);
        time_t now = time(NULL);
        json_t *old;

        old = json_object_get(t->recoveries, thp);
        if (old && json_integer_value(old) == (json_int_t)now)
                return;
        json_object_set_new(t->recoveries, thp, json_integer((json_int_t)now));
        if (!t->dirty) {
                struct timeval tv = { .tv_sec = now > t->last_flush ? 0 : 1 };

                t->dirty = true;
                evtimer_add(t->flush_timer, &tv);
        }
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
        const char *adv = NULL;
        size_t len = 0;

        if (!thp)
                adv = vg_tang_keys_adv(t->keys, &len);
        else if (thumbprint_ok(thp))
                adv = vg_tang_keys_adv_thp(t->keys, thp, &len);
        if (!adv) {
                log_request(req, 404,
                            thp ? "no signing key has this thumbprint"
                                : "no advertised signing key");
                vg_http_reply(req, 404, NULL, NULL, 0);
                return;
        }
        log_request(req, 200, NULL);
        vg_http_reply(req, 200, "application/jose+json", adv, len);
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

        body = vg_http_request_body(req, &len);
        if (thumbprint_ok(kid)) {
                key = vg_tang_keys_exchange(t->keys, kid);
                if (!key) {
                        size_t alen;
                        signing = vg_tang_keys_adv_thp(t->keys, kid, &alen) != NULL;
                }
        }
        status = vg_tangd_rec_exc(key, signing, body, len, &reply, &reply_len, &err);
        if (status != 200) {
                log_request(req, status, vg_error_str(&err));
                vg_http_reply(req, status, NULL, NULL, 0);
                return;
        }
        note_recovery(t, key);
        log_request(req, 200, NULL);
        vg_http_reply(req, 200, "application/jwk+json", reply, reply_len);
}

static int add_routes(struct vg_tangd *t, struct vg_http_server *srv)
{
        if (vg_http_server_route(srv, "GET", "/adv", adv_cb, t) < 0 ||
            vg_http_server_route(srv, "GET", "/adv/{thp}", adv_cb, t) < 0 ||
            vg_http_server_route(srv, "POST", "/rec/{kid}", rec_cb, t) < 0)
                return -EINVAL;
        return 0;
}

static int new_server(struct vg_tangd *t, const char *addr, unsigned port, bool no_listener,
                      struct vg_error *err)
{
        struct vg_http_server_config cfg = {
                .address = addr,
                .port = (uint16_t)port,
                .no_listener = no_listener,
                .name = "tang",
                .max_start_line = 4096 + 64,
                .max_body_bytes = VG_TANGD_MAX_BODY,
        };
        struct vg_http_server **v, *srv = NULL;
        int r;

        v = realloc(t->servers, (t->n_servers + 1) * sizeof(*v));
        if (!v)
                return vg_error_set(err, -ENOMEM, "out of memory");
        t->servers = v;
        r = vg_http_server_new(t->base, &cfg, &srv, err);
        if (r < 0)
                return r;
        t->servers[t->n_servers++] = srv;
        if (add_routes(t, srv) < 0)
                return vg_error_set(err, -EINVAL, "cannot add the routes");
        return 0;
}

/* ---- systemd socket activation ----------------------------------------------------------- */

static void activated_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                                int salen, void *arg)
{
        struct vg_tangd *t = arg;
        struct bufferevent *bev;
        char host[INET6_ADDRSTRLEN] = "?", peer[INET6_ADDRSTRLEN + 16];
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                snprintf(peer, sizeof(peer), "%s:%u", host, ntohs(in->sin_port));
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                snprintf(peer, sizeof(peer), "[%s]:%u", host, ntohs(in6->sin6_port));
        } else {
                snprintf(peer, sizeof(peer), "?");
        }
        bev = bufferevent_socket_new(t->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (!bev) {
                close(fd);
                return;
        }
        vg_http_server_adopt(t->servers[0], bev, peer);
}

/* LISTEN_FDS/LISTEN_PID as sd_listen_fds(3) reads them; the number of sockets adopted. */
static int adopt_systemd_sockets(struct vg_tangd *t, struct vg_error *err)
{
        const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
        long n;
        int r;

        if (!pid || !fds || strtol(pid, NULL, 10) != (long)getpid())
                return 0;
        n = strtol(fds, NULL, 10);
        if (n <= 0 || n > 64)
                return 0;
        r = new_server(t, NULL, 0, true, err);
        if (r < 0)
                return r;
        t->activated = calloc((size_t)n, sizeof(*t->activated));
        if (!t->activated)
                return vg_error_set(err, -ENOMEM, "out of memory");
        for (int fd = 3; fd < 3 + n; fd++) {
                struct evconnlistener *l;

                fcntl(fd, F_SETFD, FD_CLOEXEC);
                evutil_make_socket_nonblocking(fd);
                l = evconnlistener_new(t->base, activated_accept_cb, t, LEV_OPT_CLOSE_ON_FREE, -1,
                                       fd);
                if (!l)
                        return vg_error_set(err, -ENOMEM, "cannot use socket %d from systemd", fd);
                t->activated[t->n_activated++] = l;
        }
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        return (int)n;
}

/* ---- reloads ----------------------------------------------------------------------------- */

int vg_tangd_reload(struct vg_tangd *t, struct vg_error *err)
{
        struct vg_tang_keys *k = NULL;
        int r;

        r = vg_tang_keys_load(t->dir, &k, err);
        if (r < 0)
                return r;
        if (t->keys)
                vg_tang_keys_free(t->keys);
        t->keys = k;
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

int vg_tangd_new(struct event_base *base, const struct vg_config *cfg, struct vg_tangd **out,
                 struct vg_error *err)
{
        _cleanup_(vg_tangd_freep) struct vg_tangd *t = calloc(1, sizeof(*t));
        const char *dir = vg_config_string(cfg, "jwkdir");
        char *const *listen = vg_config_strv(cfg, "listen");
        int r;

        if (!t)
                return vg_error_set(err, -ENOMEM, "out of memory");
        t->base = base;
        t->inotify_fd = -1;
        if (!dir || !dir[0])
                return vg_error_set(err, -EINVAL, "no key directory: set jwkdir or --jwkdir");
        t->dir = strdup(dir);
        t->reload_timer = evtimer_new(base, reload_cb, t);
        t->flush_timer = evtimer_new(base, flush_cb, t);
        if (!t->dir || !t->reload_timer || !t->flush_timer)
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = vg_tang_keys_load(t->dir, &t->keys, err);
        if (r < 0)
                return r;
        load_recoveries(t);

        r = adopt_systemd_sockets(t, err);
        if (r < 0)
                return r;
        if (r == 0) {
                if (!listen[0])
                        return vg_error_set(err, -EINVAL, "no listen address");
                for (size_t i = 0; listen[i]; i++) {
                        char addr[INET6_ADDRSTRLEN + 1];
                        unsigned port;

                        r = vg_tangd_parse_listen(listen[i], addr, sizeof(addr), &port, err);
                        if (r < 0)
                                return r;
                        r = new_server(t, addr, port, false, err);
                        if (r < 0)
                                return r;
                        vg_info(VG_F("listen", listen[i]), "listening");
                }
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
        if (t->recoveries)
                vg_tangd_flush(t);
        for (size_t i = 0; i < t->n_activated; i++)
                evconnlistener_free(t->activated[i]);
        free(t->activated);
        for (size_t i = 0; i < t->n_servers; i++)
                vg_http_server_free(t->servers[i]);
        free(t->servers);
        if (t->inotify_ev)
                event_free(t->inotify_ev);
        if (t->inotify_fd >= 0)
                close(t->inotify_fd);
        if (t->reload_timer)
                event_free(t->reload_timer);
        if (t->flush_timer)
                event_free(t->flush_timer);
        json_decref(t->recoveries);
        if (t->keys)
                vg_tang_keys_free(t->keys);
        free(t->dir);
        free(t);
}
