/* vigil tests: the shared daemon life cycle through a real daemon (vigil-testd): command line,
 * configuration errors with FILE:LINE, --show-config sources, foreground and background runs,
 * readiness for systemd, pid file, and a clean stop on SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "tap.h"

static const char *testd;
static char *dir;

static char *path_in(const char *name)
{
        char *p;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                tap_bail("out of memory");
        return p;
}

/* Start testd with argv in the background, output to log; returns its pid. */
static pid_t spawn(char *const argv[], const char *log)
{
        pid_t pid = fork();

        if (pid < 0)
                tap_bail("fork: %s", strerror(errno));
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                execv(argv[0], argv);
                _exit(127);
        }
        return pid;
}

static bool wait_for_file(const char *path, int ms)
{
        for (int i = 0; i < ms / 10; i++) {
                size_t len = 0;
                _cleanup_free_ char *s = tap_read_file(path, &len);
                if (s && len > 0 && s[len - 1] == '\n')
                        return true;
                usleep(10 * 1000);
        }
        return false;
}

static int wait_exit(pid_t pid, int ms)
{
        int status;

        for (int i = 0; i < ms / 10; i++) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                usleep(10 * 1000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
}

static char *get_greeting(int port)
{
        char url[128];
        char *out = NULL;

        snprintf(url, sizeof(url), "http://127.0.0.1:%d/greeting", port);
        char *argv[] = { "curl", "-s", "--max-time", "5", url, NULL };
        if (tap_run(argv, &out) != 0) {
                free(out);
                return NULL;
        }
        return out;
}

static void test_command_line(void)
{
        char *out = NULL;

        is_int(tap_run((char *[]){ (char *)testd, "--help", NULL }, &out), 0, "--help exits 0");
        contains(out, "Usage: vigil-testd [-c FILE] [-f]", "--help shows the common synopsis");
        contains(out, "greeting", "--help lists the component's options");
        contains(out, "VIGIL_TESTD_<OPTION>", "--help names the environment prefix");
        free(out);

        is_int(tap_run((char *[]){ (char *)testd, "--version", NULL }, &out), 0, "--version");
        contains(out, "vigil-testd " VIGIL_VERSION, "--version prints name and version");
        free(out);

        is_int(tap_run((char *[]){ (char *)testd, "--bogus", NULL }, &out), 2,
               "an unknown option is a usage error");
        contains(out, "Try 'vigil-testd --help'", "with a hint");
        free(out);

        is_int(tap_run((char *[]){ (char *)testd, "-f", "extra", NULL }, &out), 2,
               "a stray argument is a usage error");
        contains(out, "unexpected argument 'extra'", "naming the argument");
        free(out);

        is_int(tap_run((char *[]){ (char *)testd, "--log-level", "loud", NULL }, &out), 2,
               "a bad log level is a usage error");
        contains(out, "expected error, warning, notice, info or debug, found 'loud'",
                 "saying what was expected and found");
        free(out);

        is_int(tap_run((char *[]){ (char *)testd, "--pid-file", "rel.pid", NULL }, &out), 2,
               "a relative pid file is refused");
        free(out);
}

static void test_configuration(void)
{
        _cleanup_free_ char *bad = path_in("bad.conf"), *missing = path_in("missing.conf");
        _cleanup_free_ char *confdir = path_in("etc"), *main_conf = path_in("etc/testd.conf");
        _cleanup_free_ char *dropdir = path_in("etc/testd.conf.d");
        _cleanup_free_ char *drop = path_in("etc/testd.conf.d/50-port.conf");
        char *out = NULL;

        tap_write_file(bad, "[testd]\nport = \"eighty\"\n");
        is_int(tap_run((char *[]){ (char *)testd, "--check-config", "-c", bad, NULL }, &out), 1,
               "--check-config fails on a type error");
        contains(out, "bad.conf:2", "the error names the file and line");
        free(out);

        is_int(tap_run((char *[]){ (char *)testd, "--check-config", "-c", missing, NULL }, &out), 1,
               "a missing -c file is an error");
        contains(out, "missing.conf", "naming the file");
        free(out);

        mkdir(confdir, 0755);
        mkdir(dropdir, 0755);
        tap_write_file(main_conf, "[testd]\ngreeting = \"from the file\"\nport = 1\n");
        tap_write_file(drop, "[testd]\nport = 2\n");
        setenv("VIGIL_CONF_DIR", confdir, 1);
        setenv("VIGIL_TESTD_IP", "::1", 1);
        is_int(tap_run((char *[]){ (char *)testd, "--check-config", NULL }, &out), 0,
               "--check-config passes on a good configuration");
        contains(out, "configuration OK", "and says so");
        free(out);
        is_int(tap_run((char *[]){ (char *)testd, "--show-config", NULL }, &out), 0,
               "--show-config");
        contains(out, "greeting = \"from the file\"", "shows the file's value");
        contains(out, "testd.conf:2", "with the file and line it came from");
        contains(out, "port = 2", "a drop-in overrides the main file");
        contains(out, "50-port.conf:2", "and is named as the source");
        contains(out, "ip = \"::1\"", "the environment overrides both");
        contains(out, "environment VIGIL_TESTD_IP", "and is named as the source");
        free(out);
        unsetenv("VIGIL_CONF_DIR");
        unsetenv("VIGIL_TESTD_IP");
}

static void test_foreground(void)
{
        _cleanup_free_ char *log = path_in("fg.log"), *port_file = path_in("fg.port");
        _cleanup_free_ char *sock_path = path_in("notify.sock");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char buf[64] = "";

        /* A stand-in for systemd's notification socket. */
        int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        ok(bind(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0, "notify socket bound");
        setenv("NOTIFY_SOCKET", sock_path, 1);
        setenv("VIGIL_TESTD_PORT_FILE", port_file, 1);
        setenv("VIGIL_TESTD_GREETING", "hi from the environment", 1);
        pid_t pid = spawn((char *[]){ (char *)testd, "-f", "--log-json", NULL }, log);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("VIGIL_TESTD_PORT_FILE");
        unsetenv("VIGIL_TESTD_GREETING");

        struct timeval tv = { .tv_sec = 5 };
        setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ssize_t n = recv(sock, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        is_str(buf, "READY=1", "the daemon tells systemd it is ready");
        ok(wait_for_file(port_file, 5000), "the daemon wrote its port");
        _cleanup_free_ char *port = tap_read_file(port_file, NULL);
        _cleanup_free_ char *reply = get_greeting(port ? atoi(port) : 0);
        contains(reply, "\"greeting\": \"hi from the environment\"",
                 "it serves requests with its configuration");

        kill(pid, SIGTERM);
        is_int(wait_exit(pid, 5000), 0, "SIGTERM stops it with status 0");
        n = recv(sock, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        is_str(buf, "STOPPING=1", "and it tells systemd it is stopping");
        close(sock);
        _cleanup_free_ char *text = tap_read_file(log, NULL);
        contains(text, "\"msg\":\"ready (pid ", "--log-json logs JSON lines");
        contains(text, "\"component\":\"vigil-testd\"", "naming the daemon");
        contains(text, "received Terminated, stopping", "the stop is logged with its cause");
}

static void test_background(void)
{
        _cleanup_free_ char *pid_file = path_in("bg.pid"), *port_file = path_in("bg.port");
        char *out = NULL;

        setenv("VIGIL_TESTD_PORT_FILE", port_file, 1);
        is_int(tap_run((char *[]){ (char *)testd, "--pid-file", pid_file, NULL }, &out), 0,
               "without -f the command returns 0 once the daemon is ready");
        unsetenv("VIGIL_TESTD_PORT_FILE");
        free(out);
        _cleanup_free_ char *pid_text = tap_read_file(pid_file, NULL);
        ok(pid_text != NULL, "the pid file exists when the command returns");
        pid_t pid = pid_text ? (pid_t)atoi(pid_text) : 0;
        ok(pid > 1 && kill(pid, 0) == 0, "the detached daemon is running");
        _cleanup_free_ char *port = tap_read_file(port_file, NULL);
        _cleanup_free_ char *reply = get_greeting(port ? atoi(port) : 0);
        contains(reply, "\"greeting\": \"hello\"", "the detached daemon serves requests");

        if (pid > 1)
                kill(pid, SIGTERM);
        bool gone = false;
        for (int i = 0; i < 500 && !gone; i++) {
                /* It is not our child (it detached), so it cannot be reaped here: a zombie
                 * under a non-reaping init counts as gone once its pid file is removed. */
                gone = access(pid_file, F_OK) != 0;
                usleep(10 * 1000);
        }
        ok(gone, "SIGTERM stops it and its pid file is removed");

        setenv("VIGIL_TESTD_FAIL_BEFORE_READY", "yes", 1);
        is_int(tap_run((char *[]){ (char *)testd, NULL }, &out), 3,
               "a daemon that fails before ready: the command exits with its status");
        unsetenv("VIGIL_TESTD_FAIL_BEFORE_READY");
        contains(out, "failing before ready", "and its error reaches the terminal");
        free(out);

        setenv("VIGIL_TESTD_IP", "not-an-address", 1);
        is_int(tap_run((char *[]){ (char *)testd, NULL }, &out), 1,
               "a bind failure in the background is reported by the command");
        unsetenv("VIGIL_TESTD_IP");
        contains(out, "not-an-address", "naming the address");
        free(out);
}

int main(void)
{
        testd = getenv("VIGIL_TESTD");
        if (!testd)
                tap_bail("VIGIL_TESTD is not set (run through meson test)");
        dir = tap_tmpdir();
        test_command_line();
        test_configuration();
        test_foreground();
        test_background();
        free(dir);
        return tap_done();
}
