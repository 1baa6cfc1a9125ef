/* vigil tests: the HTTP server and client on one event loop, plain and TLS/mTLS, against each
 * other and against independent peers (curl, openssl s_client/s_server, python3 http.server). */
#include "http_client.h"
#include "http_server.h"
#include "log.h"
#include "tap.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Test-program state: one loop, one scratch directory, one log file. */
static struct event_base *base;
static char *dir;
static char logpath[600];
static FILE *logfile;
static bool have_curl, have_python, have_ipv6;

static char ca[600], ca2[600], srv_crt[600], srv_key[600], cli_crt[600], cli_key[600],
    cli2_crt[600], cli2_key[600], other_crt[600], other_key[600], agent_crt[600], agent_key[600],
    agent2_crt[600], enc_key[600];

/* ---- helpers ----------------------------------------------------------------------------- */

static long now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
        *(bool *)arg = true;
}

/* Run the loop until *flag or ms pass. */
static bool wait_for(bool *flag, int ms)
{
        bool expired = false;
        struct event *t = evtimer_new(base, deadline_cb, &expired);
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        evtimer_add(t, &tv);
        while (!*flag && !expired)
                event_base_loop(base, EVLOOP_ONCE);
        event_free(t);
        return *flag;
}

static void spin(int ms)
{
        bool never = false;

        wait_for(&never, ms);
}

static long log_mark(void)
{
        size_t len = 0;
        char *s = tap_read_file(logpath, &len);

        free(s);
        return (long)len;
}

/* Log lines written since mark. */
static char *log_since(long mark)
{
        size_t len = 0;
        char *s = tap_read_file(logpath, &len);
        char *r = strdup(s && (size_t)mark <= len ? s + mark : "");

        free(s);
        return r;
}

static int sh(const char *cmd)
{
        char *argv[] = { "sh", "-c", (char *)cmd, NULL };
        char *out = NULL;
        int r = tap_run(argv, &out);

        if (r != 0)
                tap_diag("command failed (%d): %s\n%s", r, cmd, out ? out : "");
        free(out);
        return r;
}

static void make_certs(void)
{
        char cmd[4096];

        snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
        snprintf(ca2, sizeof(ca2), "%s/ca2.crt", dir);
        snprintf(srv_crt, sizeof(srv_crt), "%s/server.crt", dir);
        snprintf(srv_key, sizeof(srv_key), "%s/server.key", dir);
        snprintf(cli_crt, sizeof(cli_crt), "%s/client.crt", dir);
        snprintf(cli_key, sizeof(cli_key), "%s/client.key", dir);
        snprintf(cli2_crt, sizeof(cli2_crt), "%s/rogue.crt", dir);
        snprintf(cli2_key, sizeof(cli2_key), "%s/rogue.key", dir);
        snprintf(other_crt, sizeof(other_crt), "%s/other.crt", dir);
        snprintf(other_key, sizeof(other_key), "%s/other.key", dir);
        snprintf(agent_crt, sizeof(agent_crt), "%s/agent.crt", dir);
        snprintf(agent_key, sizeof(agent_key), "%s/agent.key", dir);
        snprintf(agent2_crt, sizeof(agent2_crt), "%s/agent2.crt", dir);
        snprintf(enc_key, sizeof(enc_key), "%s/client-enc.key", dir);
        snprintf(
            cmd, sizeof(cmd),
            "set -e; cd '%s'; "
            "EC='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'; "
            "for c in ca ca2; do openssl req -x509 $EC -keyout $c.key -out $c.crt -days 2 "
            "  -subj /CN=vigil-test-$c -addext basicConstraints=critical,CA:TRUE "
            "  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; done; "
            "printf 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\\n"
            "extendedKeyUsage=serverAuth\\nbasicConstraints=CA:FALSE\\n' > server.ext; "
            "printf 'subjectAltName=DNS:other.example\\nextendedKeyUsage=serverAuth\\n' > "
            "other.ext; "
            "printf 'extendedKeyUsage=clientAuth\\nbasicConstraints=CA:FALSE\\n' > client.ext; "
            "leaf() { openssl req -new $EC -keyout $1.key -out $1.csr -subj /CN=$2 2>/dev/null; "
            "  openssl x509 -req -in $1.csr -CA $3.crt -CAkey $3.key -CAcreateserial -days 2 "
            "  -out $1.crt -extfile $4.ext 2>/dev/null; }; "
            "leaf server vigil-server ca server; leaf other other-server ca other; "
            "leaf client vigil-client ca client; leaf rogue rogue-client ca2 client; "
            "for a in agent agent2; do openssl req -x509 $EC -keyout $a.key -out $a.crt "
            "  -days 2 -subj /CN=$a-self-signed 2>/dev/null; done; "
            "openssl pkey -in client.key -aes256 -passout pass:s3cret -out client-enc.key",
            dir);
        if (sh(cmd) != 0)
                tap_bail("cannot make test certificates with openssl");
}

/* ---- client calls ------------------------------------------------------------------------ */

struct result {
        bool done, failed;
        int status;
        char *body;
        char *ctype;
        char *x_vigil;
        struct vg_error err;
};

static void result_clear(struct result *r)
{
        free(r->body);
        free(r->ctype);
        free(r->x_vigil);
        memset(r, 0, sizeof(*r));
}

static void result_cb(struct vg_http_response *resp, const struct vg_error *err, void *ud)
{
        struct result *r = ud;
        const char *h;

        r->done = true;
        if (!resp) {
                r->failed = true;
                r->err = *err;
                return;
        }
        r->status = resp->status;
        r->body = strndup((const char *)resp->body, resp->body_len);
        if ((h = vg_http_response_header(resp, "Content-Type")))
                r->ctype = strdup(h);
        if ((h = vg_http_response_header(resp, "X-Vigil")))
                r->x_vigil = strdup(h);
}

static void do_request(struct vg_http_client *cl, const struct vg_http_client_request *req,
                       struct result *r)
{
        memset(r, 0, sizeof(*r));
        if (vg_http_client_send(cl, req, result_cb, r, NULL, &r->err) < 0) {
                r->done = r->failed = true;
                return;
        }
        if (!wait_for(&r->done, 10000))
                tap_bail("request to %s never completed", req->url);
}

static void get(struct vg_http_client *cl, const char *url, struct result *r)
{
        struct vg_http_client_request req = { .url = url };

        do_request(cl, &req, r);
}

/* ---- raw sockets ------------------------------------------------------------------------- */

static int raw_connect(int family, int port)
{
        struct sockaddr_storage ss = { 0 };
        socklen_t len;
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                in->sin_family = AF_INET;
                in->sin_port = htons(port);
                in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                len = sizeof(*in);
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                in6->sin6_addr = in6addr_loopback;
                len = sizeof(*in6);
        }
        if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0)
                tap_bail("cannot connect to port %d: %s", port, strerror(errno));
        return fd;
}

static void raw_send(int fd, const void *data, size_t len)
{
        const char *p = data;

        while (len) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EAGAIN) {
                        event_base_loop(base, EVLOOP_NONBLOCK);
                        continue;
                }
                if (n <= 0)
                        return;
                p += n;
                len -= (size_t)n;
        }
}

/* Read while running the loop, until `until` was received, the peer closed, or ms passed. */
static char *raw_read(int fd, const char *until, int ms, bool *closed)
{
        long end = now_ms() + ms;
        size_t len = 0, cap = 4096;
        char *buf = calloc(1, cap);

        *closed = false;
        while (now_ms() < end) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                event_base_loop(base, EVLOOP_NONBLOCK);
                if (poll(&pfd, 1, 2) <= 0)
                        continue;
                if (len + 4096 >= cap)
                        buf = realloc(buf, cap *= 2);
                ssize_t n = recv(fd, buf + len, 4096, MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n <= 0) {
                        *closed = true;
                        break;
                }
                len += (size_t)n;
                buf[len] = '\0';
                if (until && strstr(buf, until))
                        break;
        }
        return buf;
}

static char *raw_exchange(int port, const char *req, bool *closed)
{
        int fd = raw_connect(AF_INET, port);
        char *out;

        raw_send(fd, req, strlen(req));
        out = raw_read(fd, NULL, 3000, closed);
        close(fd);
        return out;
}

static int count(const char *hay, const char *needle)
{
        int n = 0;

        for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* ---- child processes --------------------------------------------------------------------- */

/* Run argv to completion while the loop keeps serving; stdin from a file or /dev/null. */
static int run_cmd(char *const argv[], const char *stdin_file, char **out)
{
        int pipefd[2], status;
        size_t len = 0, cap = 8192;
        char *buf = calloc(1, cap);
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                tap_bail("pipe: %s", strerror(errno));
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                int in = open(stdin_file ? stdin_file : "/dev/null", O_RDONLY);
                dup2(in, STDIN_FILENO);
                dup2(pipefd[1], STDOUT_FILENO);
                dup2(pipefd[1], STDERR_FILENO);
                execvp(argv[0], argv);
                _exit(127);
        }
        close(pipefd[1]);
        for (;;) {
                struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
                event_base_loop(base, EVLOOP_NONBLOCK);
                if (poll(&pfd, 1, 2) <= 0)
                        continue;
                if (len + 4096 >= cap)
                        buf = realloc(buf, cap *= 2);
                ssize_t n = read(pipefd[0], buf + len, 4096);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
                buf[len] = '\0';
        }
        close(pipefd[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        *out = buf;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static pid_t spawn(char *const argv[])
{
        char path[700];
        pid_t pid;

        snprintf(path, sizeof(path), "%s/child-%s.log", dir, argv[0]);
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
                int in = open("/dev/null", O_RDONLY);
                dup2(in, STDIN_FILENO);
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                execvp(argv[0], argv);
                _exit(127);
        }
        return pid;
}

static void stop(pid_t pid)
{
        if (pid <= 0)
                return;
        kill(pid, SIGTERM);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

/* ---- handlers ---------------------------------------------------------------------------- */

static int handled;
static struct vg_http_request *held;
static bool held_cancelled;

static void h_quote(struct vg_http_request *req, void *ud)
{
        json_t *r = json_object();
        const char *names[] = { "nonce", "mask", "partial" };

        handled++;
        for (size_t i = 0; i < 3; i++) {
                const char *v = vg_http_request_query(req, names[i]);
                json_object_set_new(r, names[i], v ? json_string(v) : json_null());
        }
        json_object_set_new(r, "version", json_string(vg_http_request_param(req, "version")));
        vg_http_reply_keylime(req, 200, "Success", r);
}

static void h_echo(struct vg_http_request *req, void *ud)
{
        size_t len;
        const uint8_t *body = vg_http_request_body(req, &len);
        const char *subject = vg_http_request_peer_subject(req);
        json_t *o = json_object();

        handled++;
        json_object_set_new(o, "route", json_string(ud));
        json_object_set_new(o, "method", json_string(vg_http_request_method(req)));
        json_object_set_new(o, "path", json_string(vg_http_request_path(req)));
        json_object_set_new(o, "uuid", json_string(vg_http_request_param(req, "uuid")));
        json_object_set_new(o, "body", json_stringn((const char *)body, len));
        json_object_set_new(o, "peer", json_string(vg_http_request_peer(req)));
        json_object_set_new(o, "subject", subject ? json_string(subject) : json_null());
        json_object_set_new(o, "cert", json_boolean(vg_http_request_peer_cert(req) != NULL));
        if (vg_http_reply_header(req, "X-Vigil", "yes") != 0 ||
            vg_http_reply_header(req, "Content-Length", "1") != -EINVAL ||
            vg_http_reply_header(req, "X-Bad", "a\r\nb") != -EINVAL)
                json_object_set_new(o, "header_api", json_string("broken"));
        vg_http_reply_json(req, 200, o);
}

static void h_json(struct vg_http_request *req, void *ud)
{
        struct vg_error err = { 0 };
        json_t *j = vg_http_request_json(req, &err);

        handled++;
        if (!j) {
                vg_http_reply_error(req, 400, "%s", err.msg);
                return;
        }
        json_object_set_new(j, "seen", json_true());
        vg_http_reply_keylime(req, 200, "Success", j);
}

struct delayed {
        struct event *ev;
        struct vg_http_request *req;
        char body[32];
};

static void delayed_cb(evutil_socket_t fd, short what, void *arg)
{
        struct delayed *d = arg;

        vg_http_reply(d->req, 200, "text/plain", d->body, strlen(d->body));
        event_free(d->ev);
        free(d);
}

static void h_delay(struct vg_http_request *req, void *ud)
{
        struct delayed *d = calloc(1, sizeof(*d));
        int ms = atoi(vg_http_request_param(req, "ms"));
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        handled++;
        d->req = req;
        snprintf(d->body, sizeof(d->body), "delayed %d", ms);
        d->ev = evtimer_new(base, delayed_cb, d);
        evtimer_add(d->ev, &tv);
}

static void hold_cancelled(struct vg_http_request *req, void *ud)
{
        held_cancelled = true;
}

static void h_hold(struct vg_http_request *req, void *ud)
{
        handled++;
        held = req;
        vg_http_request_on_cancel(req, hold_cancelled, NULL);
}

static void add_routes(struct vg_http_server *s)
{
        vg_http_server_route(s, "GET", "/v{version}/quotes/integrity", h_quote, NULL);
        vg_http_server_route(s, "GET", "/v{version}/agents/{uuid}", h_echo, "agent");
        vg_http_server_route(s, "DELETE", "/v{version}/agents/{uuid}", h_echo, "delete");
        vg_http_server_route(s, "GET", "/v{version}/agents/list", h_echo, "literal");
        vg_http_server_route(s, "GET", "/v{version}/agents/", h_echo, "all");
        vg_http_server_route(s, "GET", "/{anything}/agents/list", h_echo, "bare");
        vg_http_server_route(s, "PUT", "/v{version}/agents/{uuid}/activate", h_echo, "activate");
        vg_http_server_route(s, "POST", "/v{version}/keys/ukey", h_json, NULL);
        vg_http_server_route(s, "GET", "/echo", h_echo, "echo");
        vg_http_server_route(s, "POST", "/echo", h_echo, "echo");
        vg_http_server_route(s, "GET", "/adv", h_echo, "adv");
        vg_http_server_route(s, "GET", "/adv/{thp}", h_echo, "adv-thp");
        vg_http_server_route(s, "POST", "/rec/{kid}", h_echo, "rec");
        vg_http_server_route(s, "GET", "/delay/{ms}", h_delay, NULL);
        vg_http_server_route(s, "GET", "/hold", h_hold, NULL);
        vg_http_server_route(s, "GET", "/keys/{uuid}.jwk", h_echo, "suffix");
}

static struct vg_http_server *server(const struct vg_http_server_config *cfg)
{
        struct vg_http_server *s = NULL;
        struct vg_error err = { 0 };

        if (vg_http_server_new(base, cfg, &s, &err) < 0)
                tap_bail("cannot start a server: %s", err.msg);
        add_routes(s);
        return s;
}

static struct vg_http_client *client(const struct vg_http_client_config *cfg)
{
        struct vg_http_client *c = NULL;
        struct vg_error err = { 0 };

        if (vg_http_client_new(base, cfg, &c, &err) < 0)
                tap_bail("cannot make a client: %s", err.msg);
        return c;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_tls_contexts(void)
{
        struct vg_error err = { 0 };
        char missing[700];
        SSL_CTX *ctx;

        snprintf(missing, sizeof(missing), "%s/nope.crt", dir);
        ctx = vg_tls_server_ctx_new(
            &(struct vg_tls_server_config){ .cert_file = missing, .key_file = srv_key }, &err);
        ok(!ctx && strstr(err.msg, missing) && strstr(err.msg, "No such file"),
           "missing certificate file named: %s", err.msg);
        ctx = vg_tls_server_ctx_new(
            &(struct vg_tls_server_config){ .cert_file = srv_crt, .key_file = cli_key }, &err);
        ok(!ctx && strstr(err.msg, "does not match") && strstr(err.msg, cli_key),
           "key mismatch named: %s", err.msg);
        ctx = vg_tls_server_ctx_new(
            &(struct vg_tls_server_config){ .cert_file = ca, .key_file = srv_crt }, &err);
        ok(!ctx && strstr(err.msg, "cannot load private key") && strstr(err.msg, srv_crt),
           "a certificate is not a key: %s", err.msg);
        ctx = vg_tls_server_ctx_new(
            &(struct vg_tls_server_config){ .cert_file = srv_key, .key_file = srv_key }, &err);
        ok(!ctx && strstr(err.msg, "cannot load certificate"), "a key is not a certificate: %s",
           err.msg);
        ctx = vg_tls_server_ctx_new(
            &(struct vg_tls_server_config){ .cert_file = srv_crt,
                                            .key_file = srv_key,
                                            .client_auth = VG_TLS_CLIENT_AUTH_REQUIRED },
            &err);
        ok(!ctx && strstr(err.msg, "no client CA"), "mTLS without a CA: %s", err.msg);
        ctx = vg_tls_client_ctx_new(&(struct vg_tls_client_config){ .ca_file = ca,
                                                                    .cert_file = cli_crt,
                                                                    .key_file = enc_key },
                                    &err);
        ok(!ctx && strstr(err.msg, enc_key) && strstr(err.msg, "password"),
           "encrypted key without its password: %s", err.msg);
        ctx = vg_tls_client_ctx_new(
            &(struct vg_tls_client_config){
                .ca_file = ca, .cert_file = cli_crt, .key_file = enc_key, .key_password = "wrong" },
            &err);
        ok(!ctx, "encrypted key with a wrong password: %s", err.msg);
        ctx = vg_tls_client_ctx_new(&(struct vg_tls_client_config){ .ca_file = ca,
                                                                    .cert_file = cli_crt,
                                                                    .key_file = enc_key,
                                                                    .key_password = "s3cret" },
                                    &err);
        ok(ctx != NULL, "encrypted key with its password");
        SSL_CTX_free(ctx);
        ctx = vg_tls_client_ctx_new(&(struct vg_tls_client_config){ 0 }, &err);
        ok(!ctx && strstr(err.msg, "exactly one"), "a client needs a trust anchor: %s", err.msg);
        ctx = vg_tls_client_ctx_new(&(struct vg_tls_client_config){ .pinned_cert_pem = "junk" },
                                    &err);
        ok(!ctx && strstr(err.msg, "not a PEM certificate"), "junk pin refused: %s", err.msg);
        ctx = vg_tls_client_ctx_new(&(struct vg_tls_client_config){ .ca_file = missing }, &err);
        ok(!ctx && strstr(err.msg, missing), "missing CA file named: %s", err.msg);

        ctx = vg_tls_client_ctx_new(&(struct vg_tls_client_config){ .pinned_cert_file = agent_crt },
                                    &err);
        ok(ctx && vg_tls_ctx_is_pinned(ctx), "pinned context");
        SSL_CTX_free(ctx);

        FILE *f = fopen(cli_crt, "r");
        X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
        char fp[65], *subject = vg_tls_cert_subject(x);
        if (f)
                fclose(f);
        is_str(subject, "CN=vigil-client", "certificate subject (RFC 2253)");
        ok(vg_tls_cert_fingerprint(x, fp) == 0 && strlen(fp) == 64, "SHA-256 fingerprint %s", fp);
        free(subject);
        X509_free(x);
}

static void test_plain(void)
{
        struct vg_http_server *s = server(&(struct vg_http_server_config){ .name = "plain" });
        struct vg_http_client *cl = client(NULL);
        int port = vg_http_server_port(s);
        struct result r;
        char url[256], *out;
        bool closed;

        ok(port > 0, "ephemeral port %d", port);
        struct vg_http_server *dup = NULL;
        struct vg_error err = { 0 };
        char want[128];
        snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%d: Address already in use", port);
        ok(vg_http_server_new(base, &(struct vg_http_server_config){ .port = (uint16_t)port }, &dup,
                              &err) == -EADDRINUSE &&
               strcmp(err.msg, want) == 0,
           "port in use: %s", err.msg);
        ok(vg_http_server_new(base, &(struct vg_http_server_config){ .address = "localhost" }, &dup,
                              &err) == -EINVAL &&
               strstr(err.msg, "\"localhost\" is not an IPv4 or IPv6 address"),
           "listen address must be a literal: %s", err.msg);

        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/v2.1/quotes/integrity?nonce=AbC%%2B1&mask=0x400&partial",
                 port);
        get(cl, url, &r);
        is_int(r.status, 200, "Keylime quote route answers");
        is_str(r.body,
               "{\"code\": 200, \"status\": \"Success\", \"results\": {\"nonce\": \"AbC+1\", "
               "\"mask\": \"0x400\", \"partial\": \"\", \"version\": \"2.1\"}}",
               "Keylime envelope byte for byte, query decoded, {version} from v{version}");
        is_str(r.ctype, "application/json", "JSON content type");
        result_clear(&r);

        snprintf(url, sizeof(url), "http://127.0.0.1:%d/v2.1/keys/ukey", port);
        json_t *body = json_pack("{s:s, s:s}", "auth_tag", "ab12", "encrypted_key", "AAAA");
        struct vg_http_client_request post = { .method = "POST", .url = url, .json = body };
        do_request(cl, &post, &r);
        json_decref(body);
        is_str(r.body,
               "{\"code\": 200, \"status\": \"Success\", \"results\": {\"auth_tag\": \"ab12\", "
               "\"encrypted_key\": \"AAAA\", \"seen\": true}}",
               "JSON body in and out");
        result_clear(&r);
        struct vg_http_client_request bad = { .method = "POST",
                                              .url = url,
                                              .body = "{nope",
                                              .body_len = 5,
                                              .content_type = "application/json" };
        do_request(cl, &bad, &r);
        ok(r.status == 400 && strstr(r.body, "\"code\": 400") &&
               strstr(r.body, "request body is not valid JSON"),
           "malformed JSON is a 400: %s", r.body);
        result_clear(&r);

        /* Routing. */
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/v2.1/agents/d432fbb3%%2Dx", port);
        get(cl, url, &r);
        ok(strstr(r.body, "\"route\": \"agent\"") && strstr(r.body, "\"uuid\": \"d432fbb3-x\""),
           "{uuid} parameter, percent-decoded");
        is_str(r.x_vigil, "yes", "handler's response header; reserved and malformed refused");
        ok(strstr(r.body, "\"peer\": \"127.0.0.1:"), "peer address visible to the handler");
        result_clear(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/v2.1/agents/list", port);
        get(cl, url, &r);
        contains(r.body, "\"route\": \"literal\"", "a literal beats a parameter");
        result_clear(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/x2/agents/list", port);
        get(cl, url, &r);
        contains(r.body, "\"route\": \"bare\"", "a bare parameter matches what a prefix does not");
        result_clear(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d//v2.1//agents/", port);
        get(cl, url, &r);
        contains(r.body, "\"route\": \"all\"", "empty segments ignored (\"/agents/\" and \"//\")");
        result_clear(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/keys/S256.jwk", port);
        get(cl, url, &r);
        ok(strstr(r.body, "\"route\": \"suffix\"") && strstr(r.body, "\"uuid\": \"S256\""),
           "{name}.jwk: a parameter with a suffix");
        result_clear(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/keys/.jwk", port);
        get(cl, url, &r);
        is_int(r.status, 404, "an empty parameter does not match");
        result_clear(&r);
        struct vg_http_server *tmp = NULL;
        vg_http_server_new(base, &(struct vg_http_server_config){ .no_listener = true }, &tmp,
                           NULL);
        ok(vg_http_server_route(tmp, "GET", "/a/{b", h_echo, NULL) == -EINVAL &&
               vg_http_server_route(tmp, "GET", "/a/{b}{c}", h_echo, NULL) == -EINVAL &&
               vg_http_server_route(tmp, "GET", "/a/{b-c}", h_echo, NULL) == -EINVAL &&
               vg_http_server_route(tmp, "GET", "a", h_echo, NULL) == -EINVAL &&
               vg_http_server_route(tmp, "G T", "/a", h_echo, NULL) == -EINVAL &&
               vg_http_server_route(tmp, "GET", "/a/x{b}y", h_echo, NULL) == 0,
           "malformed route patterns refused");
        vg_http_server_free(tmp);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/nowhere", port);
        get(cl, url, &r);
        ok(r.status == 404 && strcmp(r.body, "{\"code\": 404, \"status\": \"Not Found\", "
                                             "\"results\": {}}") == 0,
           "404 with a Keylime body");
        result_clear(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/adv/../../etc/passwd", port);
        get(cl, url, &r);
        is_int(r.status, 400, "dot segments refused");
        result_clear(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/adv/%%2e%%2e", port);
        get(cl, url, &r);
        is_int(r.status, 400, "encoded dot segments refused");
        result_clear(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo?a=%%zz", port);
        get(cl, url, &r);
        ok(r.status == 400 && strstr(r.body, "malformed query"), "malformed query refused");
        result_clear(&r);

        long mark = log_mark();
        out = raw_exchange(port,
                           "PUT /adv HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n",
                           &closed);
        ok(strncmp(out, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0 &&
               strstr(out, "\r\nAllow: GET, HEAD\r\n") && strstr(out, "\"code\": 405"),
           "405 with Allow and a Keylime body");
        free(out);
        char *log = log_since(mark);
        ok(strstr(log, "peer=127.0.0.1:") && strstr(log, "refused PUT /adv: 405"),
           "refused request logged with the peer");
        free(log);
        out = raw_exchange(port,
                           "PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n",
                           &closed);
        contains(out, "\r\nAllow: GET, HEAD, POST\r\n", "Allow lists every method of the path");
        free(out);
        out = raw_exchange(port, "BREW /adv HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                           &closed);
        contains(out, "HTTP/1.1 501 Not Implemented", "unknown method: 501");
        free(out);
        out = raw_exchange(port, "HEAD /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                           &closed);
        ok(strstr(out, "HTTP/1.1 200 OK") && strstr(out, "Content-Length: ") &&
               strstr(out, "\r\n\r\n")[4] == '\0',
           "HEAD on a GET route: headers, no body");
        free(out);
        out = raw_exchange(port,
                           "GET http://127.0.0.1/v2.1/agents/abs HTTP/1.1\r\nHost: a\r\n"
                           "Connection: close\r\n\r\n",
                           &closed);
        contains(out, "\"uuid\": \"abs\"", "absolute-form target routed by its path");
        free(out);
        out = raw_exchange(port, "GET /echo HTTP/1.0\r\n\r\n", &closed);
        ok(strstr(out, "HTTP/1.1 200 OK") && strstr(out, "Connection: close") && closed,
           "HTTP/1.0 request: answered and closed");
        free(out);
        out = raw_exchange(port, "GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                           &closed);
        ok(strstr(out, "\r\nDate: ") && strstr(out, " GMT\r\n"), "Date header");
        free(out);

        /* Expect: 100-continue */
        int fd = raw_connect(AF_INET, port);
        const char *expect = "POST /rec/kid HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                             "Content-Type: application/jwk+json\r\nContent-Length: 2\r\n\r\n";
        raw_send(fd, expect, strlen(expect));
        out = raw_read(fd, "\r\n\r\n", 2000, &closed);
        is_str(out, "HTTP/1.1 100 Continue\r\n\r\n", "100 Continue before the body");
        free(out);
        raw_send(fd, "{}", 2);
        out = raw_read(fd, "\"body\": \"{}\"", 2000, &closed);
        ok(strstr(out, "HTTP/1.1 200 OK") && strstr(out, "\"route\": \"rec\""), "then the answer");
        free(out);
        close(fd);

        vg_http_client_free(cl);
        vg_http_server_free(s);
}

static void test_keepalive_pipelining(void)
{
        struct vg_http_server *s = server(&(struct vg_http_server_config){ .name = "ka" });
        struct vg_http_client *cl = client(NULL);
        int port = vg_http_server_port(s);
        struct result r;
        char url[128], *out;
        bool closed, all = true;

        snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", port);
        for (int i = 0; i < 5; i++) {
                get(cl, url, &r);
                all = all && r.status == 200;
                result_clear(&r);
        }
        ok(all, "five requests answered");
        is_int(vg_http_server_accepted(s), 1, "over one kept-alive connection (server)");
        is_int(vg_http_client_connects(cl), 1, "over one kept-alive connection (client)");

        /* Pipelined: the first answer is slow, yet answers leave in request order. */
        int fd = raw_connect(AF_INET, port);
        const char *req = "GET /delay/120 HTTP/1.1\r\nHost: a\r\n\r\n"
                          "GET /v2.1/agents/second HTTP/1.1\r\nHost: a\r\n\r\n"
                          "GET /delay/15 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        raw_send(fd, req, strlen(req));
        out = raw_read(fd, NULL, 3000, &closed);
        close(fd);
        const char *a = strstr(out, "delayed 120"), *b = strstr(out, "\"uuid\": \"second\""),
                   *c = strstr(out, "delayed 15");
        ok(count(out, "HTTP/1.1 200 OK") == 3 && a && b && c && a < b && b < c && closed,
           "three pipelined requests answered in order, then closed");
        free(out);
        is_int(vg_http_server_accepted(s), 2, "pipelining used one connection");

        /* Async reply. */
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/delay/150", port);
        long t0 = now_ms();
        get(cl, url, &r);
        ok(r.status == 200 && strcmp(r.body, "delayed 150") == 0 && now_ms() - t0 >= 140,
           "a handler replies 150 ms later");
        result_clear(&r);

        vg_http_client_free(cl);
        vg_http_server_free(s);
}

static void test_limits(void)
{
        struct vg_http_server *s = server(&(struct vg_http_server_config){ .name = "limits",
                                                                           .max_body_bytes = 1024,
                                                                           .max_header_bytes = 2048,
                                                                           .max_start_line = 512,
                                                                           .max_connections = 3 });
        int port = vg_http_server_port(s);
        char *out, req[8192], big[4000];
        bool closed;
        long mark = log_mark();

        snprintf(req, sizeof(req),
                 "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n");
        memset(req + strlen(req), 'x', 2000);
        req[strlen("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n") + 2000] = '\0';
        handled = 0;
        out = raw_exchange(port, req, &closed);
        ok(strncmp(out, "HTTP/1.1 413 Content Too Large\r\n", 32) == 0 &&
               strstr(out, "\"code\": 413") && strstr(out, "Connection: close") && closed &&
               !handled,
           "413 for a body over the limit, handler not called, connection closed");
        free(out);
        char *log = log_since(mark);
        ok(strstr(log, "peer=127.0.0.1:") && strstr(log, "refused request: 413"), "413 logged");
        free(log);

        memset(big, 'h', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: %s\r\n\r\n", big);
        out = raw_exchange(port, req, &closed);
        ok(strstr(out, "HTTP/1.1 431 Request Header Fields Too Large") &&
               strstr(out, "\"code\": 431") && closed,
           "431 for a huge header");
        free(out);
        big[600] = '\0';
        snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: a\r\n\r\n", big);
        out = raw_exchange(port, req, &closed);
        contains(out, "HTTP/1.1 414 URI Too Long", "414 for a long request line");
        free(out);
        handled = 0;
        out = raw_exchange(port,
                           "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /echo HTTP/1.1\r\n"
                           "Host: a\r\n\r\n",
                           &closed);
        ok(strstr(out, "HTTP/1.1 400 Bad Request") && count(out, "HTTP/1.1") == 1 && !handled &&
               closed,
           "CL+TE refused; the smuggled request is never served");
        free(out);
        out = raw_exchange(port, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", &closed);
        ok(strstr(out, "HTTP/1.1 400 Bad Request") && closed, "TLS on the plain port: 400 at once");
        free(out);

        /* max_connections = 3: the fourth is closed at once. */
        int fds[4];
        spin(100);
        is_int(vg_http_server_connections(s), 0, "refused connections are closed after lingering");
        for (int i = 0; i < 3; i++)
                fds[i] = raw_connect(AF_INET, port);
        spin(50);
        is_int(vg_http_server_connections(s), 3, "three connections open");
        mark = log_mark();
        fds[3] = raw_connect(AF_INET, port);
        out = raw_read(fds[3], NULL, 1000, &closed);
        ok(closed && !*out, "connection over max_connections closed");
        free(out);
        log = log_since(mark);
        ok(strstr(log, "refused connection") && strstr(log, "peer=127.0.0.1:"),
           "refused connection logged with the peer");
        free(log);
        for (int i = 0; i < 4; i++)
                close(fds[i]);
        spin(50);
        is_int(vg_http_server_connections(s), 0, "closed connections are gone");

        if (have_curl) {
                char url[128], path[700], *argv[16];
                int n = 0;
                snprintf(path, sizeof(path), "%s/big.json", dir);
                FILE *f = fopen(path, "w");
                for (int i = 0; i < 200000; i++)
                        fputs("0123456789", f);
                fclose(f);
                snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", port);
                char data[720];
                snprintf(data, sizeof(data), "@%s", path);
                argv[n++] = "curl";
                argv[n++] = "-sS";
                argv[n++] = "-o";
                argv[n++] = "/dev/null";
                argv[n++] = "-w";
                argv[n++] = "%{http_code}";
                argv[n++] = "--data-binary";
                argv[n++] = data;
                argv[n++] = url;
                argv[n] = NULL;
                int rc = run_cmd(argv, NULL, &out);
                ok(rc == 0 && strcmp(out, "413") == 0, "curl posting 2 MB gets 413 (%s)", out);
                free(out);
        } else {
                tap_skip("curl is not installed", "curl posting 2 MB gets 413");
        }
        vg_http_server_free(s);
}

static void test_timeouts(void)
{
        struct vg_http_server *s =
            server(&(struct vg_http_server_config){ .name = "slow",
                                                    .header_timeout_ms = 300,
                                                    .body_timeout_ms = 300,
                                                    .idle_timeout_ms = 300 });
        int port = vg_http_server_port(s), fd;
        char *out, *log;
        bool closed;
        long mark = log_mark(), t0 = now_ms();

        fd = raw_connect(AF_INET, port);
        out = raw_read(fd, NULL, 3000, &closed);
        long took = now_ms() - t0;
        ok(closed && !*out && took >= 250 && took < 2000,
           "a client that sends nothing is dropped after the header timeout (%ld ms)", took);
        free(out);
        close(fd);
        log = log_since(mark);
        ok(strstr(log, "no request within 300 ms") && strstr(log, "peer=127.0.0.1:"),
           "and that is logged with the peer");
        free(log);

        fd = raw_connect(AF_INET, port);
        raw_send(fd, "GET /echo HTTP/1.1\r\nHost: a\r\n", 29);
        out = raw_read(fd, NULL, 3000, &closed);
        ok(strstr(out, "HTTP/1.1 408 Request Timeout") && strstr(out, "\"code\": 408") && closed,
           "an incomplete header gets 408");
        free(out);
        close(fd);

        /* A slow drip does not extend the header deadline. */
        fd = raw_connect(AF_INET, port);
        t0 = now_ms();
        const char *drip = "GET /echo HTTP/1.1\r\nHost: a\r\nX: ";
        for (size_t i = 0; i < strlen(drip); i++) {
                raw_send(fd, drip + i, 1);
                spin(20);
        }
        out = raw_read(fd, NULL, 3000, &closed);
        took = now_ms() - t0;
        ok(strstr(out, "408") && took < 1500, "a dripping header still times out (%ld ms)", took);
        free(out);
        close(fd);

        fd = raw_connect(AF_INET, port);
        raw_send(fd, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", 56);
        out = raw_read(fd, NULL, 3000, &closed);
        ok(strstr(out, "HTTP/1.1 408") && strstr(out, "body") && closed, "a stalled body gets 408");
        free(out);
        close(fd);

        fd = raw_connect(AF_INET, port);
        raw_send(fd, "GET /echo HTTP/1.1\r\nHost: a\r\n\r\n", 31);
        out = raw_read(fd, NULL, 3000, &closed);
        ok(count(out, "HTTP/1.1 200 OK") == 1 && closed, "an idle keep-alive connection is closed");
        free(out);
        close(fd);
        vg_http_server_free(s);
}

static void test_disconnects(void)
{
        struct vg_http_server *s = server(&(struct vg_http_server_config){ .name = "gone" });
        int port = vg_http_server_port(s);
        struct vg_http_client *cl = client(NULL);
        struct result r;
        char url[128];

        held = NULL;
        held_cancelled = false;
        int fd = raw_connect(AF_INET, port);
        raw_send(fd, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n", 31);
        while (!held)
                event_base_loop(base, EVLOOP_ONCE);
        ok(vg_http_request_connected(held), "handler holds the request");
        close(fd);
        wait_for(&held_cancelled, 2000);
        ok(held_cancelled && !vg_http_request_connected(held),
           "client disconnect before the reply: cancel callback");
        is_int(vg_http_reply_error(held, 200, "late"), -ENOTCONN, "a late reply goes nowhere");
        held = NULL;

        /* The client gives up first. */
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/hold", port);
        held_cancelled = false;
        struct vg_http_client_request req = { .url = url, .timeout_ms = 200 };
        long t0 = now_ms();
        do_request(cl, &req, &r);
        ok(r.failed && r.err.code == -ETIMEDOUT && strstr(r.err.msg, "timed out after 200 ms") &&
               now_ms() - t0 < 1500,
           "client timeout: %s", r.err.msg);
        result_clear(&r);
        wait_for(&held_cancelled, 2000);
        ok(held_cancelled, "server saw the client go");
        vg_http_reply(held, 200, "text/plain", "x", 1);
        held = NULL;

        /* The server goes away with a request in a handler's hands. */
        held_cancelled = false;
        struct vg_http_call *call = NULL;
        memset(&r, 0, sizeof(r));
        vg_http_client_send(cl, &(struct vg_http_client_request){ .url = url }, result_cb, &r,
                            &call, NULL);
        while (!held)
                event_base_loop(base, EVLOOP_ONCE);
        vg_http_server_free(s);
        ok(held_cancelled, "freeing the server cancels held requests");
        is_int(vg_http_reply_error(held, 200, "late"), -ENOTCONN, "their late reply only frees");
        held = NULL;
        wait_for(&r.done, 3000);
        ok(r.failed && strstr(r.err.msg, "closed before a response"), "client told: %s", r.err.msg);
        result_clear(&r);

        /* Cancelling a call: its callback never runs. */
        s = server(&(struct vg_http_server_config){ .name = "gone2" });
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/delay/50", vg_http_server_port(s));
        memset(&r, 0, sizeof(r));
        vg_http_client_send(cl, &(struct vg_http_client_request){ .url = url }, result_cb, &r,
                            &call, NULL);
        spin(10);
        vg_http_call_cancel(call);
        spin(150);
        ok(!r.done, "a cancelled call does not call back");

        /* Client errors. */
        int free_port = tap_free_port();
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/", free_port);
        get(cl, url, &r);
        char want[128];
        snprintf(want, sizeof(want), "connect to 127.0.0.1:%d failed: Connection refused",
                 free_port);
        ok(r.failed && strcmp(r.err.msg, want) == 0 && r.err.code == -ECONNREFUSED,
           "connection refused: %s", r.err.msg);
        result_clear(&r);
        struct vg_error err = { 0 };
        ok(vg_http_client_send(cl, &(struct vg_http_client_request){ .url = "ftp://x/" }, result_cb,
                               &r, NULL, &err) == -EINVAL &&
               strstr(err.msg, "expected http://"),
           "bad scheme refused at once: %s", err.msg);
        ok(vg_http_client_send(cl, &(struct vg_http_client_request){ .url = "https://127.0.0.1/" },
                               result_cb, &r, NULL, &err) == -EINVAL &&
               strstr(err.msg, "no TLS context"),
           "https without a TLS context: %s", err.msg);
        const char *bad_hdr[] = { "X-A", "b\r\nEvil: 1", NULL };
        ok(vg_http_client_send(cl,
                               &(struct vg_http_client_request){ .url = url, .headers = bad_hdr },
                               result_cb, &r, NULL, &err) == -EINVAL,
           "header injection refused");
        vg_http_client_free(cl);
        vg_http_server_free(s);
}

/* A fake server that sends canned bytes, for the client's error paths. */
static const char *canned;

static void canned_write_cb(struct bufferevent *bev, void *arg)
{
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
                bufferevent_free(bev);
}

static void canned_event_cb(struct bufferevent *bev, short what, void *arg)
{
        bufferevent_free(bev);
}

static void canned_read_cb(struct bufferevent *bev, void *arg)
{
        struct evbuffer *in = bufferevent_get_input(bev);

        /* Answer once the request head is in. */
        if (!evbuffer_search(in, "\r\n\r\n", 4, NULL).pos && evbuffer_get_length(in) < 4)
                return;
        if (evbuffer_search(in, "\r\n\r\n", 4, NULL).pos < 0)
                return;
        evbuffer_drain(in, evbuffer_get_length(in));
        bufferevent_setcb(bev, NULL, canned_write_cb, canned_event_cb, NULL);
        bufferevent_write(bev, canned, strlen(canned));
}

static void canned_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int len, void *arg)
{
        struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);

        bufferevent_setcb(bev, canned_read_cb, NULL, canned_event_cb, NULL);
        bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void test_client_against_fakes(void)
{
        struct sockaddr_in sin = { .sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct evconnlistener *l = evconnlistener_new_bind(
            base, canned_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
            (struct sockaddr *)&sin, sizeof(sin));
        struct vg_http_client *cl =
            client(&(struct vg_http_client_config){ .max_response_bytes = 1024 });
        socklen_t slen = sizeof(sin);
        struct result r;
        char url[128];

        getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &slen);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(sin.sin_port));

        canned = "garbage\r\n\r\n";
        get(cl, url, &r);
        ok(r.failed && strstr(r.err.msg, "malformed response from 127.0.0.1:") &&
               strstr(r.err.msg, "malformed status line"),
           "garbage response: %s", r.err.msg);
        result_clear(&r);
        canned = "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n";
        get(cl, url, &r);
        ok(r.failed && strstr(r.err.msg, "too large") && r.err.code == -EMSGSIZE,
           "response over the size limit: %s", r.err.msg);
        result_clear(&r);
        canned = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-delimited body";
        get(cl, url, &r);
        ok(r.status == 200 && strcmp(r.body, "close-delimited body") == 0,
           "close-delimited HTTP/1.0 response");
        result_clear(&r);
        canned = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        get(cl, url, &r);
        ok(r.status == 201 && strcmp(r.body, "ok") == 0, "interim 100 skipped");
        result_clear(&r);
        canned = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        get(cl, url, &r);
        ok(r.failed && strstr(r.err.msg, "middle of the body"), "truncated body: %s", r.err.msg);
        result_clear(&r);
        struct vg_http_client_request head = { .method = "HEAD", .url = url };
        canned = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        do_request(cl, &head, &r);
        ok(r.status == 200 && r.body && !*r.body, "HEAD response has no body");
        result_clear(&r);

        vg_http_client_free(cl);
        evconnlistener_free(l);
}

static void test_ipv6(void)
{
        if (!have_ipv6) {
                tap_skip("no IPv6 loopback", "IPv6 server and client");
                return;
        }
        struct vg_http_server *s =
            server(&(struct vg_http_server_config){ .address = "::1", .name = "v6" });
        struct vg_http_client *cl = client(NULL);
        struct result r;
        char url[128];

        snprintf(url, sizeof(url), "http://[::1]:%d/echo", vg_http_server_port(s));
        get(cl, url, &r);
        ok(r.status == 200 && strstr(r.body, "\"peer\": \"[::1]:"), "IPv6 [::1]: served, peer %s",
           r.body);
        result_clear(&r);
        if (have_curl) {
                char *argv[] = { "curl", "-sS", "-g", url, NULL }, *out;
                int rc = run_cmd(argv, NULL, &out);
                ok(rc == 0 && strstr(out, "\"route\": \"echo\""), "curl over IPv6");
                free(out);
        } else {
                tap_skip("curl is not installed", "curl over IPv6");
        }
        vg_http_client_free(cl);
        vg_http_server_free(s);
}

static SSL_CTX *server_ctx(const char *crt, const char *key, enum vg_tls_client_auth auth)
{
        struct vg_error err = { 0 };
        SSL_CTX *ctx = vg_tls_server_ctx_new(
            &(struct vg_tls_server_config){ .cert_file = crt,
                                            .key_file = key,
                                            .client_auth = auth,
                                            .client_ca_file = auth ? ca : NULL },
            &err);

        if (!ctx)
                tap_bail("server TLS context: %s", err.msg);
        return ctx;
}

static SSL_CTX *client_ctx(const struct vg_tls_client_config *cfg)
{
        struct vg_error err = { 0 };
        SSL_CTX *ctx = vg_tls_client_ctx_new(cfg, &err);

        if (!ctx)
                tap_bail("client TLS context: %s", err.msg);
        return ctx;
}

static void tls_get(const char *url, SSL_CTX *ctx, struct result *r)
{
        struct vg_http_client *cl = client(&(struct vg_http_client_config){ .tls = ctx });

        get(cl, url, r);
        vg_http_client_free(cl);
}

static void test_tls(void)
{
        SSL_CTX *sctx = server_ctx(srv_crt, srv_key, VG_TLS_CLIENT_AUTH_NONE);
        struct vg_http_server *s =
            server(&(struct vg_http_server_config){ .tls = sctx, .name = "tls" });
        SSL_CTX *trust = client_ctx(&(struct vg_tls_client_config){ .ca_file = ca });
        SSL_CTX *trust2 = client_ctx(&(struct vg_tls_client_config){ .ca_file = ca2 });
        int port = vg_http_server_port(s);
        struct result r;
        char url[128];

        SSL_CTX_free(sctx); /* the server holds its own reference */
        snprintf(url, sizeof(url), "https://127.0.0.1:%d/v2.1/agents/tls", port);
        tls_get(url, trust, &r);
        ok(r.status == 200 && strstr(r.body, "\"uuid\": \"tls\"") &&
               strstr(r.body, "\"cert\": false"),
           "HTTPS with CA verification and the IP in the SAN");
        result_clear(&r);
        tls_get(url, trust2, &r);
        ok(r.failed && strstr(r.err.msg, "TLS handshake with 127.0.0.1:") &&
               strstr(r.err.msg, "certificate verify failed"),
           "untrusted server: %s", r.err.msg);
        result_clear(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", port);
        {
                struct vg_http_client *cl = client(NULL);
                get(cl, url, &r);
                vg_http_client_free(cl);
        }
        ok(r.failed || r.status == 400, "plain HTTP to a TLS port fails");
        result_clear(&r);
        vg_http_server_free(s);

        /* The certificate names other.example only. */
        sctx = server_ctx(other_crt, other_key, VG_TLS_CLIENT_AUTH_NONE);
        s = server(&(struct vg_http_server_config){ .tls = sctx });
        SSL_CTX_free(sctx);
        snprintf(url, sizeof(url), "https://127.0.0.1:%d/echo", vg_http_server_port(s));
        tls_get(url, trust, &r);
        ok(r.failed && strstr(r.err.msg, "IP address mismatch"), "wrong name in the cert: %s",
           r.err.msg);
        result_clear(&r);
        vg_http_server_free(s);

        /* Pinning: the agent's self-signed certificate, no names at all. */
        sctx = server_ctx(agent_crt, agent_key, VG_TLS_CLIENT_AUTH_NONE);
        s = server(&(struct vg_http_server_config){ .tls = sctx });
        SSL_CTX_free(sctx);
        snprintf(url, sizeof(url), "https://127.0.0.1:%d/echo", vg_http_server_port(s));
        char *pem = tap_read_file(agent_crt, NULL);
        SSL_CTX *pin = client_ctx(&(struct vg_tls_client_config){ .pinned_cert_pem = pem });
        SSL_CTX *pin2 =
            client_ctx(&(struct vg_tls_client_config){ .pinned_cert_file = agent2_crt });
        free(pem);
        struct vg_http_client *cl = client(NULL);
        struct vg_http_client_request req = { .url = url, .tls = pin };
        do_request(cl, &req, &r);
        is_int(r.status, 200,
               "pinned self-signed agent certificate accepted (per-request context)");
        result_clear(&r);
        req.tls = pin2;
        do_request(cl, &req, &r);
        ok(r.failed && strstr(r.err.msg, "not the pinned certificate"), "another cert refused: %s",
           r.err.msg);
        result_clear(&r);
        tls_get(url, trust, &r);
        ok(r.failed && strstr(r.err.msg, "certificate verify failed"),
           "the same cert without the pin is untrusted: %s", r.err.msg);
        result_clear(&r);
        vg_http_client_free(cl);
        vg_http_server_free(s);
        SSL_CTX_free(pin);
        SSL_CTX_free(pin2);

        /* openssl s_server -www: an independent TLS server, close-delimited HTTP/1.0 answer. */
        int sport = tap_free_port();
        char portstr[16];
        snprintf(portstr, sizeof(portstr), "%d", sport);
        char *argv[] = { "openssl", "s_server", "-accept", portstr,  "-cert", srv_crt,
                         "-key",    srv_key,    "-www",    "-quiet", NULL };
        pid_t pid = spawn(argv);
        snprintf(url, sizeof(url), "https://127.0.0.1:%d/", sport);
        for (int i = 0; i < 50; i++) {
                tls_get(url, trust, &r);
                if (!r.failed || !strstr(r.err.msg, "refused"))
                        break;
                result_clear(&r);
                spin(100);
        }
        ok(r.status == 200 && r.body && strstr(r.body, "s_server"),
           "our client against openssl s_server -www");
        result_clear(&r);
        stop(pid);

        SSL_CTX_free(trust);
        SSL_CTX_free(trust2);
}

static void test_mtls(void)
{
        SSL_CTX *sctx = server_ctx(srv_crt, srv_key, VG_TLS_CLIENT_AUTH_REQUIRED);
        struct vg_http_server *s =
            server(&(struct vg_http_server_config){ .tls = sctx, .name = "mtls" });
        SSL_CTX *anon = client_ctx(&(struct vg_tls_client_config){ .ca_file = ca });
        SSL_CTX *good = client_ctx(&(struct vg_tls_client_config){
            .ca_file = ca, .cert_file = cli_crt, .key_file = cli_key });
        SSL_CTX *rogue = client_ctx(&(struct vg_tls_client_config){
            .ca_file = ca, .cert_file = cli2_crt, .key_file = cli2_key });
        int port = vg_http_server_port(s);
        struct result r;
        char url[128], *log;
        long mark;

        SSL_CTX_free(sctx);
        snprintf(url, sizeof(url), "https://127.0.0.1:%d/echo", port);

        handled = 0;
        mark = log_mark();
        tls_get(url, anon, &r);
        ok(r.failed && !handled, "mTLS required, no client cert: refused (%s)", r.err.msg);
        result_clear(&r);
        spin(50);
        log = log_since(mark);
        ok(strstr(log, "server=mtls peer=127.0.0.1:") && strstr(log, "refused TLS connection") &&
               strstr(log, "peer did not return a certificate"),
           "logged with the peer");
        free(log);

        mark = log_mark();
        tls_get(url, rogue, &r);
        ok(r.failed && !handled, "client cert from another CA refused (%s)", r.err.msg);
        result_clear(&r);
        spin(50);
        log = log_since(mark);
        ok(strstr(log, "peer=127.0.0.1:") && strstr(log, "certificate verify failed"),
           "logged: certificate verify failed");
        free(log);

        tls_get(url, good, &r);
        ok(r.status == 200 && strstr(r.body, "\"subject\": \"CN=vigil-client\"") &&
               strstr(r.body, "\"cert\": true"),
           "right client cert accepted and visible to the handler");
        result_clear(&r);

        if (have_curl) {
                char *argv[] = { "curl",  "-sS",   "--cacert", ca,  "--cert", cli_crt,
                                 "--key", cli_key, url,        url, NULL },
                     *out;
                uint64_t before = vg_http_server_accepted(s);
                int rc = run_cmd(argv, NULL, &out);
                ok(rc == 0 && count(out, "\"subject\": \"CN=vigil-client\"") == 2,
                   "curl with a client cert, two requests");
                is_int(vg_http_server_accepted(s) - before, 1, "curl reused the connection");
                free(out);
                char *argv2[] = { "curl", "-sS", "--cacert", ca, url, NULL };
                rc = run_cmd(argv2, NULL, &out);
                ok(rc != 0, "curl without a client cert fails (exit %d)", rc);
                free(out);
        } else {
                tap_skip("curl is not installed", "curl with a client cert");
                tap_skip("curl is not installed", "curl reused the connection");
                tap_skip("curl is not installed", "curl without a client cert fails");
        }

        char reqfile[700], *out;
        snprintf(reqfile, sizeof(reqfile), "%s/s_client.req", dir);
        tap_write_file(reqfile, "GET /v2.1/agents/sclient HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Connection: close\r\n\r\n");
        char connect[64];
        snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
        char *argv[] = { "openssl",
                         "s_client",
                         "-connect",
                         connect,
                         "-CAfile",
                         ca,
                         "-cert",
                         cli_crt,
                         "-key",
                         cli_key,
                         "-verify_return_error",
                         "-quiet",
                         "-ign_eof",
                         NULL };
        int rc = run_cmd(argv, reqfile, &out);
        ok(rc == 0 && strstr(out, "HTTP/1.1 200 OK") && strstr(out, "\"uuid\": \"sclient\"") &&
               strstr(out, "CN=vigil-client"),
           "openssl s_client with a client cert");
        free(out);
        vg_http_server_free(s);

        /* Optional: no certificate is fine, a presented one must verify. */
        sctx = server_ctx(srv_crt, srv_key, VG_TLS_CLIENT_AUTH_OPTIONAL);
        s = server(&(struct vg_http_server_config){ .tls = sctx, .name = "optional" });
        SSL_CTX_free(sctx);
        snprintf(url, sizeof(url), "https://127.0.0.1:%d/echo", vg_http_server_port(s));
        tls_get(url, anon, &r);
        ok(r.status == 200 && strstr(r.body, "\"cert\": false") &&
               strstr(r.body, "\"subject\": null"),
           "optional mTLS without a cert: served, no cert");
        result_clear(&r);
        tls_get(url, good, &r);
        ok(r.status == 200 && strstr(r.body, "\"subject\": \"CN=vigil-client\""),
           "optional mTLS with a cert: subject visible");
        result_clear(&r);
        tls_get(url, rogue, &r);
        ok(r.failed, "optional mTLS with an untrusted cert: refused");
        result_clear(&r);

        /* A TLS client that never says hello is dropped after the header timeout. */
        vg_http_server_free(s);
        sctx = server_ctx(srv_crt, srv_key, VG_TLS_CLIENT_AUTH_NONE);
        s = server(&(struct vg_http_server_config){ .tls = sctx, .header_timeout_ms = 200 });
        SSL_CTX_free(sctx);
        mark = log_mark();
        int fd = raw_connect(AF_INET, vg_http_server_port(s));
        bool closed;
        out = raw_read(fd, NULL, 2000, &closed);
        close(fd);
        free(out);
        log = log_since(mark);
        ok(closed && strstr(log, "no TLS handshake within 200 ms"), "silent TLS client dropped");
        free(log);
        vg_http_server_free(s);

        SSL_CTX_free(anon);
        SSL_CTX_free(good);
        SSL_CTX_free(rogue);
}

static void test_independent_peers(void)
{
        struct vg_http_server *s = server(&(struct vg_http_server_config){ .name = "curl" });
        int port = vg_http_server_port(s);
        char url[160], *out;

        if (have_curl) {
                snprintf(url, sizeof(url),
                         "http://127.0.0.1:%d/v2.1/quotes/integrity?nonce=n0nce&mask=0x1", port);
                char *argv[] = { "curl", "-sS", url, NULL };
                int rc = run_cmd(argv, NULL, &out);
                ok(rc == 0 &&
                       strcmp(out, "{\"code\": 200, \"status\": \"Success\", \"results\": "
                                   "{\"nonce\": \"n0nce\", \"mask\": \"0x1\", \"partial\": null, "
                                   "\"version\": \"2.1\"}}") == 0,
                   "curl GET: %s", out);
                free(out);
                snprintf(url, sizeof(url), "http://127.0.0.1:%d/rec/S256kid", port);
                char *argv2[] = { "curl",
                                  "-sSf",
                                  "-X",
                                  "POST",
                                  "-H",
                                  "Content-Type: application/jwk+json",
                                  "--data-binary",
                                  "{\"kty\":\"EC\"}",
                                  url,
                                  NULL };
                rc = run_cmd(argv2, NULL, &out);
                ok(rc == 0 && strstr(out, "\"body\": \"{\\\"kty\\\":\\\"EC\\\"}\""),
                   "curl POST as clevis does for /rec");
                free(out);
                snprintf(url, sizeof(url), "http://127.0.0.1:%d/missing", port);
                char *argv3[] = {
                        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url, NULL
                };
                rc = run_cmd(argv3, NULL, &out);
                is_str(out, "404", "curl sees 404");
                free(out);
        } else {
                tap_skip("curl is not installed", "curl GET");
                tap_skip("curl is not installed", "curl POST");
                tap_skip("curl is not installed", "curl sees 404");
        }

        if (have_python) {
                char www[700], file[760], portstr[16];
                int pport = tap_free_port();
                snprintf(www, sizeof(www), "%s/www", dir);
                mkdir(www, 0700);
                snprintf(file, sizeof(file), "%s/policy.json", www);
                tap_write_file(file, "{\"meta\": {\"version\": 1}}\n");
                snprintf(portstr, sizeof(portstr), "%d", pport);
                char *argv[] = { "python3",     "-m", "http.server", "--bind", "127.0.0.1",
                                 "--directory", www,  portstr,       NULL };
                pid_t pid = spawn(argv);
                struct vg_http_response *resp = NULL;
                struct vg_error err = { 0 };
                int r = -1;
                snprintf(url, sizeof(url), "http://127.0.0.1:%d/policy.json", pport);
                for (int i = 0; i < 100 && r < 0; i++) {
                        r = vg_http_fetch(NULL, &(struct vg_http_client_request){ .url = url },
                                          &resp, &err);
                        if (r < 0)
                                usleep(50000);
                }
                ok(r == 0 && resp && resp->status == 200 &&
                       strcmp((const char *)resp->body, "{\"meta\": {\"version\": 1}}\n") == 0,
                   "blocking fetch from python3 http.server");
                vg_http_response_free(resp);
                resp = NULL;
                snprintf(url, sizeof(url), "http://127.0.0.1:%d/nothing", pport);
                r = vg_http_fetch(NULL, &(struct vg_http_client_request){ .url = url }, &resp,
                                  &err);
                ok(r == 0 && resp->status == 404, "and its 404");
                vg_http_response_free(resp);
                stop(pid);
        } else {
                tap_skip("python3 is not installed", "blocking fetch from python3 http.server");
                tap_skip("python3 is not installed", "and its 404");
        }
        vg_http_server_free(s);
}

static void test_urls(void)
{
        struct vg_http_url u;
        struct vg_error err = { 0 };

        ok(vg_http_url_parse("http://127.0.0.1:9002/v2.1/quotes?nonce=1#frag", &u, &err) == 0 &&
               !u.https && strcmp(u.host, "127.0.0.1") == 0 && u.port == 9002 &&
               strcmp(u.target, "/v2.1/quotes?nonce=1") == 0,
           "URL with port, query and fragment");
        vg_http_url_clear(&u);
        ok(vg_http_url_parse("HTTPS://[::1]/", &u, &err) == 0 && u.https &&
               strcmp(u.host, "::1") == 0 && u.port == 443,
           "IPv6 literal, default https port");
        vg_http_url_clear(&u);
        ok(vg_http_url_parse("http://tang.example?x", &u, &err) == 0 && u.port == 80 &&
               strcmp(u.target, "/?x") == 0,
           "no path");
        vg_http_url_clear(&u);
        const char *bad[] = { "http://",     "http://a:0/",  "http://a:65536/", "http://a:x/",
                              "http://u@a/", "http://[::1/", "http://[zz]/",    "http://a b/",
                              "http://a/ b", "ftp://a/",     "http://[::1]x/" };
        bool all = true;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (vg_http_url_parse(bad[i], &u, &err) != -EINVAL) {
                        all = false;
                        tap_diag("accepted %s", bad[i]);
                        vg_http_url_clear(&u);
                }
        }
        ok(all, "malformed URLs refused");
}

int main(void)
{
        struct vg_log_config lc = { .component = "test_http", .level = VG_LOG_INFO };
        int fd;

        signal(SIGPIPE, SIG_IGN);
        dir = tap_tmpdir();
        snprintf(logpath, sizeof(logpath), "%s/log", dir);
        logfile = fopen(logpath, "w");
        lc.out = logfile;
        vg_log_setup(&lc);
        base = event_base_new();

        char *argv_curl[] = { "curl", "--version", NULL },
             *argv_py[] = { "python3", "-c", "", NULL };
        have_curl = tap_run(argv_curl, NULL) == 0;
        have_python = tap_run(argv_py, NULL) == 0;
        fd = socket(AF_INET6, SOCK_STREAM, 0);
        struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = in6addr_loopback };
        have_ipv6 = fd >= 0 && bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == 0;
        if (fd >= 0)
                close(fd);

        make_certs();
        test_urls();
        test_tls_contexts();
        test_plain();
        test_keepalive_pipelining();
        test_limits();
        test_timeouts();
        test_disconnects();
        test_client_against_fakes();
        test_ipv6();
        test_tls();
        test_mtls();
        test_independent_peers();

        vg_event_base_free_drained(base);
        vg_log_setup(&(struct vg_log_config){ .level = VG_LOG_INFO });
        fclose(logfile);
        free(dir);
        return tap_done();
}
