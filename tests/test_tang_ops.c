/* vigil tests: running vigil-tang as an operator does: HTTPS and mTLS (clevis over https with
 * the CA in CURL_CA_BUNDLE), systemd socket activation (LISTEN_FDS), reloads on SIGHUP alone
 * with watch = false, key files that are not usable keys (left out and logged, as tangd does),
 * and the privilege drop after binding (as root only), with its consequence for key files only
 * root can read. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

#define K tap_keep

static const char *vt, *cli;
static char *dir;

static int sh(char **out, const char *script)
{
        return tap_runl(out, "/bin/sh", "-c", script, NULL);
}

/* A fresh key directory DIR/NAME made by vigil tang keygen; the new path. */
static char *keydir(const char *name)
{
        char *db = tap_strf("%s/%s", dir, name);

        if (mkdir(db, 0700) < 0 || tap_runl(NULL, cli, "tang", "keygen", db, NULL) != 0)
                tap_bail("cannot make the key directory %s", db);
        return db;
}

/* vigil-tang -f --jwkdir DB --listen 127.0.0.1:PORT, its log in DIR/NAME.log. */
static pid_t start(const char *name, const char *db, int port, char **log)
{
        char *listen = tap_strf("127.0.0.1:%d", port);
        char *const argv[] = { (char *)vt, "-f", "--jwkdir", (char *)db, "--listen", listen, NULL };
        pid_t pid;

        *log = tap_strf("%s/%s.log", dir, name);
        pid = tap_spawn_log(argv, *log);
        free(listen);
        return pid;
}

/* The S256 thumbprints /adv advertises, as vigil tang show-keys URL prints them. */
static char *adv_keys(int port)
{
        char *out = NULL, *url = tap_strf("http://127.0.0.1:%d", port);

        tap_runl(&out, cli, "tang", "show-keys", url, NULL);
        free(url);
        return out;
}

static int exit_status(pid_t pid, int ms)
{
        int st;

        for (int i = 0; i < ms / 20; i++) {
                if (waitpid(pid, &st, WNOHANG) == pid)
                        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                usleep(20 * 1000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
}

static void test_unusable_key_files(void)
{
        char *db = keydir("skip"), *log, *out = NULL;
        int port = tap_free_port();
        pid_t pid;

        tap_write_file(K(tap_strf("%s/garbage.jwk", db)), "not a key");
        tap_write_file(K(tap_strf("%s/.rsa.jwk", db)),
                       "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"d\":\"AQAB\"}");
        pid = start("skip", db, port, &log);
        ok(tap_wait_http(port, "/adv"), "a directory with unusable key files still serves /adv");
        ok(tap_wait_file_contains(log, "garbage.jwk", 2000) &&
               tap_wait_file_contains(log, "not JSON", 0),
           "the log names the file that is not JSON");
        ok(tap_wait_file_contains(log, ".rsa.jwk", 0) && tap_wait_file_contains(log, "left out", 0),
           "and the hidden RSA key left out");
        setenv("URL", K(tap_strf("http://127.0.0.1:%d", port)), 1);
        is_int(sh(&out, "echo kept | clevis encrypt tang \"{\\\"url\\\":\\\"$URL\\\"}\" -y | "
                        "clevis decrypt"),
               0, "the usable keys work");
        is_str(out, "kept\n", "clevis round trip");
        free(out);
        is_int(tap_runl(&out, cli, "tang", "show-keys", "--dir", db, "--hidden", NULL), 1,
               "show-keys --dir exits 1 when a file was left out");
        contains(out, "garbage.jwk", "naming it");
        contains(out, "advertised", "and still lists the usable keys");
        free(out);
        tap_stop(&pid);
        free(log);
        free(db);
}

static void test_https(void)
{
        char *db = keydir("https"), *log = NULL, *out = NULL;
        int port = tap_free_port(), port2;
        pid_t pid;

        setenv("W", dir, 1);
        is_int(sh(&out, "cd \"$W\" && "
                        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                        "-keyout ca.key -out ca.pem -subj /CN=test-ca -days 2 && "
                        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                        "-keyout srv.key -out srv.csr -subj /CN=tang && "
                        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > srv.ext && "
                        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                        "-out srv.pem -days 2 -extfile srv.ext && "
                        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                        "-keyout cl.key -out cl.csr -subj /CN=client && "
                        "openssl x509 -req -in cl.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                        "-out cl.pem -days 2 2>&1"),
               0, "a CA, a server certificate for 127.0.0.1 and a client certificate");
        free(out);

        /* Half a configuration is an error that says what is missing. */
        setenv("VIGIL_TANG_SERVER_CERT", K(tap_strf("%s/srv.pem", dir)), 1);
        pid = start("https-half", db, port, &log);
        is_int(exit_status(pid, 5000), 1, "server_cert without server_key: exit 1");
        ok(tap_wait_file_contains(log, "server_key", 0), "naming server_key");
        free(log);

        setenv("VIGIL_TANG_SERVER_KEY", K(tap_strf("%s/srv.key", dir)), 1);
        pid = start("https", db, port, &log);
        setenv("URL", K(tap_strf("https://127.0.0.1:%d", port)), 1);
        is_int(sh(NULL, "for i in $(seq 100); do curl -sf --cacert \"$W/ca.pem\" \"$URL/adv\" "
                        ">/dev/null && exit 0; sleep 0.05; done; exit 1"),
               0, "GET /adv over HTTPS");
        ok(tap_wait_file_contains(log, "listening (HTTPS)", 0), "the log says HTTPS");
        is_int(sh(&out, "echo overtls | CURL_CA_BUNDLE=\"$W/ca.pem\" clevis encrypt tang "
                        "\"{\\\"url\\\":\\\"$URL\\\"}\" -y > \"$W/tls.jwe\" && "
                        "CURL_CA_BUNDLE=\"$W/ca.pem\" clevis decrypt < \"$W/tls.jwe\""),
               0, "clevis encrypt + decrypt over https");
        is_str(out, "overtls\n", "gives the plaintext");
        free(out);
        ok(sh(NULL, "clevis decrypt < \"$W/tls.jwe\" 2>/dev/null") != 0,
           "clevis without the CA cannot decrypt (the certificate is checked)");
        ok(sh(NULL, "curl -sf \"http://127.0.0.1:${URL##*:}/adv\" >/dev/null 2>&1") != 0,
           "plain HTTP to the HTTPS port fails");
        tap_stop(&pid);
        free(log);

        /* mTLS: a client certificate from trusted_client_ca is required. */
        port2 = tap_free_port();
        setenv("VIGIL_TANG_TRUSTED_CLIENT_CA", K(tap_strf("%s/ca.pem", dir)), 1);
        pid = start("mtls", db, port2, &log);
        setenv("URL", K(tap_strf("https://127.0.0.1:%d", port2)), 1);
        is_int(sh(NULL, "for i in $(seq 100); do curl -sf --cacert \"$W/ca.pem\" --cert "
                        "\"$W/cl.pem\" --key \"$W/cl.key\" \"$URL/adv\" >/dev/null && exit 0; "
                        "sleep 0.05; done; exit 1"),
               0, "mTLS: /adv with a client certificate");
        ok(sh(NULL, "curl -sf --cacert \"$W/ca.pem\" \"$URL/adv\" >/dev/null 2>&1") != 0,
           "mTLS: refused without one");
        ok(sh(NULL, "curl -sf --cacert \"$W/ca.pem\" --cert \"$W/srv.pem\" --key \"$W/srv.key\" "
                    "\"$URL/adv\" >/dev/null 2>&1") == 0,
           "mTLS: any certificate of the trusted CA is accepted");
        tap_stop(&pid);
        free(log);
        unsetenv("VIGIL_TANG_SERVER_CERT");
        unsetenv("VIGIL_TANG_SERVER_KEY");
        unsetenv("VIGIL_TANG_TRUSTED_CLIENT_CA");

        /* trusted_client_ca alone is refused too. */
        setenv("VIGIL_TANG_TRUSTED_CLIENT_CA", K(tap_strf("%s/ca.pem", dir)), 1);
        pid = start("mtls-half", db, port2, &log);
        is_int(exit_status(pid, 5000), 1, "trusted_client_ca without a certificate: exit 1");
        unsetenv("VIGIL_TANG_TRUSTED_CLIENT_CA");
        free(log);
        free(db);
}

static void test_socket_activation(void)
{
        char *db = keydir("socket"), *log = tap_strf("%s/socket.log", dir), *out = NULL;
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, port;
        pid_t pid;

        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
                tap_bail("socket: %s", strerror(errno));
        port = ntohs(sa.sin_port);
        /* As systemd does for vigil-tang.socket: the socket as fd 3, LISTEN_PID, LISTEN_FDS;
         * --listen names another port, which must be ignored. Two workers share the socket. */
        pid = fork();
        if (pid < 0)
                tap_bail("fork: %s", strerror(errno));
        if (pid == 0) {
                char pidbuf[32];
                int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (lfd < 0 || dup2(lfd, 1) < 0 || dup2(lfd, 2) < 0 || (fd != 3 && dup2(fd, 3) < 0))
                        _exit(127);
                snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
                setenv("LISTEN_PID", pidbuf, 1);
                setenv("LISTEN_FDS", "1", 1);
                setenv("VIGIL_TANG_WORKERS", "2", 1);
                execl(vt, vt, "-f", "--jwkdir", db, "--listen", "127.0.0.1:1", (char *)NULL);
                _exit(127);
        }
        close(fd);
        ok(tap_wait_http(port, "/adv"), "socket-activated: /adv on the passed socket");
        ok(tap_wait_file_contains(log, "socket-activated", 0), "the log says socket-activated");
        setenv("URL", K(tap_strf("http://127.0.0.1:%d", port)), 1);
        is_int(sh(&out, "for i in 1 2 3 4 5 6; do echo n$i | clevis encrypt tang "
                        "\"{\\\"url\\\":\\\"$URL\\\"}\" -y | clevis decrypt || exit 1; done"),
               0, "six clevis round trips through the shared socket");
        is_str(out, "n1\nn2\nn3\nn4\nn5\nn6\n", "each gives its plaintext");
        free(out);
        tap_stop(&pid);

        /* A passed descriptor that is not a listening socket is refused by name. */
        pid = fork();
        if (pid == 0) {
                char pidbuf[32];
                int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644),
                    nfd = open("/dev/null", O_RDONLY);

                if (lfd < 0 || nfd < 0 || dup2(lfd, 1) < 0 || dup2(lfd, 2) < 0 || dup2(nfd, 3) < 0)
                        _exit(127);
                snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
                setenv("LISTEN_PID", pidbuf, 1);
                setenv("LISTEN_FDS", "1", 1);
                execl(vt, vt, "-f", "--jwkdir", db, (char *)NULL);
                _exit(127);
        }
        is_int(exit_status(pid, 5000), 1, "LISTEN_FDS with a file that is not a socket: exit 1");
        ok(tap_wait_file_contains(log, "not a listening stream socket", 0), "and says why");
        free(log);
        free(db);
}

static void test_sighup_only(void)
{
        char *db = keydir("hup"), *log, *before, *after = NULL, *out = NULL;
        int port = tap_free_port();
        pid_t pid;

        setenv("VIGIL_TANG_WATCH", "false", 1);
        pid = start("hup", db, port, &log);
        unsetenv("VIGIL_TANG_WATCH");
        ok(tap_wait_http(port, "/adv"), "watch = false: serving");
        ok(tap_wait_file_contains(log, "not watching", 0),
           "the log says the directory is not watched");
        before = adv_keys(port);
        is_int(tap_runl(&out, cli, "tang", "rotate", db, NULL), 0, "rotate the keys");
        free(out);
        usleep(400 * 1000);
        after = adv_keys(port);
        is_str(after, before, "without SIGHUP /adv still advertises the old keys");
        free(after);
        kill(pid, SIGHUP);
        for (int i = 0; i < 100; i++) {
                after = adv_keys(port);
                if (strcmp(after, before) != 0)
                        break;
                free(after);
                after = NULL;
                usleep(20 * 1000);
        }
        ok(after != NULL, "after SIGHUP /adv advertises the new keys");
        ok(tap_wait_file_contains(log, "SIGHUP: keys reloaded", 1000), "and the log says so");
        free(after);
        free(before);
        tap_stop(&pid);
        free(log);
        free(db);
}

static void test_empty_directory(void)
{
        char *db = tap_strf("%s/empty", dir), *log;
        int port = tap_free_port();
        pid_t pid;

        mkdir(db, 0700);
        pid = start("empty", db, port, &log);
        ok(tap_wait_http(port, "/adv"), "an empty key directory: /adv answers, as with tangd");
        setenv("DB", db, 1);
        is_int(sh(NULL, "test $(ls \"$DB\"/*.jwk | wc -l) -eq 2"), 0, "a new pair was generated");
        ok(tap_wait_file_contains(log, "generated a new pair", 0), "and logged");
        tap_stop(&pid);
        free(log);
        free(db);
}

#define DROP_CHECKS 13

static void test_privilege_drop(void)
{
        char *db, *log, *out = NULL, *status, *rec;
        int port = tap_free_port();
        struct stat st;
        pid_t pid;

        if (geteuid() != 0) {
                for (int i = 0; i < DROP_CHECKS; i++)
                        tap_skip("not root", "privilege drop");
                return;
        }
        setenv("VIGIL_TANG_USER", "vigil-no-such-user", 1);
        pid = start("nouser", K(tap_strf("%s/hup", dir)), port, &log);
        is_int(exit_status(pid, 5000), 1, "an unknown user: exit 1");
        ok(tap_wait_file_contains(log, "vigil-no-such-user", 0), "naming the user");
        free(log);

        /* An empty directory owned by nobody, as Debian's /var/lib/tang is by _tang (and the
         * test directory traversable by nobody). */
        chmod(dir, 0711);
        db = tap_strf("%s/drop", dir);
        mkdir(db, 0700);
        setenv("DB", db, 1);
        sh(NULL, "chown nobody \"$DB\"");
        setenv("VIGIL_TANG_USER", "nobody", 1);
        pid = start("drop", db, port, &log);
        ok(tap_wait_http(port, "/adv"), "started as root with user = nobody: serving");
        is_int(sh(NULL, "test -z \"$(find \"$DB\" -name '*.jwk' ! -user nobody)\""), 0,
               "the keys generated in nobody's empty directory are nobody's");
        status = tap_read_file(K(tap_strf("/proc/%d/status", (int)pid)), NULL);
        contains(status, "\nUid:\t65534\t65534\t65534\t65534\n", "runs as nobody (uid 65534)");
        free(status);
        setenv("URL", K(tap_strf("http://127.0.0.1:%d", port)), 1);
        is_int(sh(&out, "echo dropped | clevis encrypt tang \"{\\\"url\\\":\\\"$URL\\\"}\" -y | "
                        "clevis decrypt"),
               0, "clevis round trip after the drop");
        free(out);
        rec = tap_strf("%s/.vigil-recoveries.json", db);
        for (int i = 0; i < 150 && stat(rec, &st) < 0; i++)
                usleep(20 * 1000);
        ok(stat(rec, &st) == 0 && st.st_uid == 65534,
           "the recovery record is written, owned by nobody");
        /* Keys that root creates (0440 root) are unreadable after the drop: left out, logged. */
        is_int(tap_runl(&out, cli, "tang", "rotate", db, NULL), 0, "root rotates the keys");
        free(out);
        ok(tap_wait_file_contains(log, ".jwk: Permission denied", 3000) &&
               tap_wait_file_contains(log, "key file left out", 0),
           "the server logs the new keys it cannot read");
        out = tap_strf("-s -o /dev/null -w %%{http_code} %s/adv", getenv("URL"));
        setenv("CURL_ARGS", out, 1);
        free(out);
        is_int(sh(&out, "curl $CURL_ARGS"), 0, "GET /adv");
        is_str(out, "404", "answers 404 while no advertised key is readable");
        free(out);
        sh(NULL, "chown -R nobody \"$DB\"");
        ok(tap_wait_http(port, "/adv"), "after chown the new keys are loaded and advertised");
        is_int(sh(&out, "echo rotated | clevis encrypt tang \"{\\\"url\\\":\\\"$URL\\\"}\" -y | "
                        "clevis decrypt"),
               0, "and the rotated keys serve");
        free(out);
        unsetenv("VIGIL_TANG_USER");
        tap_stop(&pid);
        free(rec);
        free(log);
        free(db);
}

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        vt = getenv("VIGIL_TANG");
        cli = getenv("VIGIL_CLI");
        if (access("/usr/bin/clevis", X_OK) != 0 || access("/usr/bin/openssl", X_OK) != 0) {
                printf("1..0 # SKIP clevis or openssl not installed\n");
                return 0;
        }
        tap_plan(49);
        dir = tap_tmpdir();
        /* The test directories are root's; test_privilege_drop sets its own user. */
        setenv("VIGIL_TANG_USER", "root", 1);
        test_unusable_key_files();
        test_https();
        test_socket_activation();
        test_sighup_only();
        test_empty_directory();
        unsetenv("VIGIL_TANG_USER");
        test_privilege_drop();
        return tap_done();
}
