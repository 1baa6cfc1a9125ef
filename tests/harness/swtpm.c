/* vigil tests: start, stop and restart software TPMs (swtpm) by copying a golden state that
 * swtpm_setup made once, with EK certificates from a local CA kept in the same cache. */
#include "swtpm.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "encoding.h"

/* Bump when the layout of a golden state changes, so old caches are ignored, not misread. */
#define GOLDEN_VERSION "v1"

/* Files of a TPM directory; a golden state has the first six. */
#define STATE_FILE     "tpm2-00.permall" /* swtpm's NV state */
#define EK_RSA_FILE    "ek-rsa2048.crt"  /* the name swtpm_setup --write-ek-cert-files uses */
#define EK_P256_FILE   "ek-secp256r1.crt"
#define CA_BUNDLE_FILE "ek-ca.pem"
#define CA_DIR         "ek-ca"
#define CA_ISSUER_FILE "ek-ca/issuercert.pem"
#define CA_ROOT_FILE   "ek-ca/rootca-cert.pem"
#define PID_FILE       "swtpm.pid"
#define LOG_FILE       "swtpm.log"
#define SETUP_LOG_FILE "setup.log"
#define INFO_FILE      "vigil-swtpm.info" /* EK choice, for vg_swtpm_attach() */
/* The command channel, and the control channel beside it under the name libtss2's swtpm TCTI
 * derives from the TCTI's path= (path + ".ctrl"). Unix sockets, not TCP: that TCTI connects
 * once per command, and thousands of commands a second over TCP leave thousands of
 * loopback ports in TIME_WAIT until connect() fails. */
#define SOCK_FILE   "swtpm.sock"
#define CTRL_SUFFIX ".ctrl"

/* TCG EK Credential Profile 2.3 section 2.2.1.5 (NV indices) and TCG Provisioning Guidance
 * section 7.8 (persistent handles). */
#define NV_EK_RSA2048     0x01c00002u
#define NV_EK_P256        0x01c0000au
#define HANDLE_EK_RSA2048 0x81010001u
#define HANDLE_EK_P256    0x81010002u

/* Generous: an ASan build on a loaded CI machine. A normal start takes milliseconds. */
#define START_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS  3000

/* swtpm control channel commands (swtpm's tpm_ioctl.h); every field is big-endian. */
#define CTRL_SHUTDOWN           3u
#define CTRL_GET_TPMESTABLISHED 4u
#define CTRL_GET_INFO           0x12u
#define CTRL_INFO_SPEC          1u /* SWTPM_INFO_TPMSPECIFICATION */
#define CTRL_INFO_ATTRS         2u /* SWTPM_INFO_TPMATTRIBUTES */

struct vg_swtpm {
        char *dir, *log, *pidfile, *info;
        char *ek_cert, *ca_file, *ca_dir;
        char *sock, *ctrl_sock, *tcti; /* sock: the command channel; tcti: swtpm:path=<sock> */
        pid_t pid;
        bool child;   /* pid is our child, so waitpid() reaps it and its pid cannot be reused */
        bool own_dir; /* made by the harness, removed by vg_swtpm_free() */
        bool detach;
        enum vg_swtpm_ek ek;
        struct vg_swtpm *next;
};

/* The one piece of process-wide state: exit() must still stop the TPMs a test did not (a check
 * that bails out, say), and an atexit handler takes no argument. Only the process that started
 * them acts on the list, not a forked child that happens to call exit(). */
static struct vg_swtpm *running;
static pid_t running_owner;

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...)
{
        char *s;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? NULL : s;
}

static long long now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep *us microseconds and double it up to 10 ms: polls answer fast, then back off. */
static void nap(long *us)
{
        struct timespec ts = { .tv_sec = 0, .tv_nsec = *us * 1000 };

        nanosleep(&ts, NULL);
        *us = *us * 2 > 10000 ? 10000 : *us * 2;
}

static bool exists(const char *path)
{
        return access(path, F_OK) == 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st, (void)flag, (void)ftw;
        remove(path);
        return 0;
}

static void rm_rf(const char *path)
{
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = -1;
        char buf[16384];
        ssize_t n;

        if (in < 0)
                return -errno;
        out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (out < 0)
                return -errno;
        while ((n = read(in, buf, sizeof(buf))) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (ssize_t off = 0; off < n;) {
                        ssize_t w = write(out, buf + off, (size_t)(n - off));
                        if (w < 0 && errno != EINTR)
                                return -errno;
                        off += w > 0 ? w : 0;
                }
        }
        return 0;
}

/* Write through a temporary name and rename, so a reader never sees half a file. */
static int write_file_atomic(const char *path, const char *content, mode_t mode)
{
        _cleanup_free_ char *tmp = strf("%s.tmp.%d", path, (int)getpid());
        FILE *f;
        int r = 0;

        if (!tmp)
                return -ENOMEM;
        f = fopen(tmp, "we");
        if (!f)
                return -errno;
        fchmod(fileno(f), mode);
        if (fputs(content, f) < 0)
                r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

static off_t file_size(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 ? st.st_size : 0;
}

/* The end of what a log got since offset `from`, on one line, for an error message. */
static void log_tail(const char *path, off_t from, char *buf, size_t size)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        off_t end;
        ssize_t n;
        size_t len;

        buf[0] = '\0';
        if (fd < 0 || size < 2)
                return;
        end = lseek(fd, 0, SEEK_END);
        if (end < from)
                from = 0; /* the writer truncated it */
        if (end - from > (off_t)size - 1)
                from = end - (off_t)size + 1;
        n = pread(fd, buf, size - 1, from);
        if (n <= 0)
                return;
        buf[n] = '\0';
        len = strlen(buf);
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
                buf[--len] = '\0';
        for (char *p = buf; *p; p++)
                if (*p == '\n')
                        *p = '|';
        if (!buf[0])
                snprintf(buf, size, "(log %s is empty)", path);
}

/* An absolute path of an executable in $PATH, for config files that want one. */
static char *find_in_path(const char *name)
{
        const char *path = getenv("PATH");
        _cleanup_free_ char *copy = strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
        char *save = NULL;

        if (!copy)
                return NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                char *p = strf("%s/%s", d, name);
                if (p && access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

/* ---- processes ---- */

struct spawn_opts {
        bool detach; /* a session of its own and no parent-death signal */
        int out_fd;  /* stdout and stderr; -1 for /dev/null */
};

/* Between fork() and exec(): async-signal-safe calls only. */
static void __attribute__((noreturn))
spawn_child(char *const argv[], const struct spawn_opts *so, int errfd, pid_t parent)
{
        sigset_t none;
        int null, e;

        if (so->detach) {
                setsid();
        } else {
                /* Test programs crash and get killed by timeouts; their TPM must go with
                 * them instead of holding ports and CPU. */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(127);
        }
        /* A test that blocks SIGTERM for a signalfd must not pass the mask on to swtpm. */
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        null = open("/dev/null", O_RDWR);
        if (null >= 0)
                dup2(null, STDIN_FILENO);
        dup2(so->out_fd >= 0 ? so->out_fd : null, STDOUT_FILENO);
        dup2(so->out_fd >= 0 ? so->out_fd : null, STDERR_FILENO);
        /* Inherit nothing else: a stray pipe end held by a daemon hangs `$(swtpm-up)` and
         * meson's output capture, a held flock() blocks the next test. errfd stays open
         * until exec succeeds. */
        if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) < 0)
                for (int fd = 3; fd < 1024; fd++)
                        fcntl(fd, F_SETFD, FD_CLOEXEC);
        execvp(argv[0], argv);
        e = errno;
        if (write(errfd, &e, sizeof(e)) < 0)
                _exit(127);
        _exit(127);
}

static int spawn(char *const argv[], const struct spawn_opts *so, pid_t *out, struct vg_error *err)
{
        pid_t parent = getpid(), pid;
        int pipefd[2], child_errno = 0;
        ssize_t n;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return vg_error_set(err, -errno, "cannot create a pipe: %s", strerror(errno));
        pid = fork();
        if (pid < 0) {
                int e = errno;
                close(pipefd[0]);
                close(pipefd[1]);
                return vg_error_set(err, -e, "cannot fork for %s: %s", argv[0], strerror(e));
        }
        if (pid == 0)
                spawn_child(argv, so, pipefd[1], parent);
        close(pipefd[1]);
        /* EOF means exec succeeded (the pipe closed on exec); 4 bytes are its errno. */
        do
                n = read(pipefd[0], &child_errno, sizeof(child_errno));
        while (n < 0 && errno == EINTR);
        close(pipefd[0]);
        if (n == (ssize_t)sizeof(child_errno)) {
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                return vg_error_set(err, -child_errno, "cannot run %s: %s", argv[0],
                                    strerror(child_errno));
        }
        *out = pid;
        return 0;
}

/* Run a setup tool to completion with its output appended to log; on failure the error
 * quotes the end of that output. */
static int run_tool(char *const argv[], const char *log, struct vg_error *err)
{
        _cleanup_close_ int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        struct spawn_opts so = { .out_fd = fd };
        off_t from = file_size(log);
        char tail[300];
        pid_t pid;
        int status, r;

        if (fd < 0)
                return vg_error_set(err, -errno, "cannot open %s: %s", log, strerror(errno));
        r = spawn(argv, &so, &pid, err);
        if (r < 0)
                return r;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return vg_error_set(err, -errno, "waiting for %s: %s", argv[0],
                                            strerror(errno));
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        log_tail(log, from, tail, sizeof(tail));
        if (WIFEXITED(status))
                return vg_error_set(err, -EIO, "%s %s failed with exit status %d: %s", argv[0],
                                    argv[1] ? argv[1] : "", WEXITSTATUS(status), tail);
        return vg_error_set(err, -EIO, "%s was killed by signal %d: %s", argv[0], WTERMSIG(status),
                            tail);
}

/* True while pid is a process that has not exited. A zombie counts as gone: where PID 1 does
 * not reap orphans (some containers), a detached swtpm lingers as one. */
static bool proc_alive(pid_t pid)
{
        char path[64], buf[256];
        _cleanup_close_ int fd = -1;
        ssize_t n;
        char *p;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return kill(pid, 0) == 0 || errno == EPERM;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        /* "pid (comm) S ...": comm may hold spaces and parentheses, so use the last ')'. */
        p = strrchr(buf, ')');
        return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* Wait up to ms for the TPM's process to end; true once it has (and is reaped if ours). */
static bool wait_gone(struct vg_swtpm *tpm, int ms)
{
        long long deadline = now_ms() + ms;
        long delay = 200;
        int status;

        for (;;) {
                if (tpm->child) {
                        pid_t r = waitpid(tpm->pid, &status, WNOHANG);
                        if (r == tpm->pid || (r < 0 && errno == ECHILD))
                                return true;
                } else if (!proc_alive(tpm->pid)) {
                        return true;
                }
                if (now_ms() > deadline)
                        return false;
                nap(&delay);
        }
}

/* ---- sockets: the control channel and the TPM command channel ---- */

static int unix_connect(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* A unix socket connect() is answered at once (accepted into the backlog or refused). */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        return fd;
}

static int io_wait(int fd, short events, long long deadline)
{
        struct pollfd p = { .fd = fd, .events = events };
        int r;

        do {
                long long left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                r = poll(&p, 1, (int)left);
        } while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        return r == 0 ? -ETIMEDOUT : 0;
}

static int write_all(int fd, const void *buf, size_t len, long long deadline)
{
        const uint8_t *p = buf;

        while (len > 0) {
                int r = io_wait(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno != EINTR && errno != EAGAIN)
                        return -errno;
                if (n > 0) {
                        p += n;
                        len -= (size_t)n;
                }
        }
        return 0;
}

static int read_full(int fd, void *buf, size_t len, long long deadline)
{
        uint8_t *p = buf;

        while (len > 0) {
                int r = io_wait(fd, POLLIN, deadline);
                if (r < 0)
                        return r;
                ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0 && errno != EINTR && errno != EAGAIN)
                        return -errno;
                if (n > 0) {
                        p += n;
                        len -= (size_t)n;
                }
        }
        return 0;
}

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

/* Send a control command and read the 4-byte result every response starts with. */
static int ctrl_call(const char *sock, uint32_t cmd, const void *body, size_t body_len,
                     int timeout_ms, int *fd_out)
{
        long long deadline = now_ms() + timeout_ms;
        _cleanup_close_ int fd = unix_connect(sock);
        uint8_t req[64], res[4];
        int r;

        if (fd < 0)
                return fd;
        if (body_len > sizeof(req) - 4)
                return -EINVAL;
        put_be32(req, cmd);
        if (body_len)
                memcpy(req + 4, body, body_len);
        r = write_all(fd, req, 4 + body_len, deadline);
        if (r == 0)
                r = read_full(fd, res, sizeof(res), deadline);
        if (r < 0)
                return r;
        if (be32(res) != 0)
                return -EPROTO;
        if (fd_out)
                *fd_out = TAKE_FD(fd);
        return 0;
}

/* Ready means swtpm's main loop answers and the TPM inside is initialised: the control
 * channel refuses GET_TPMESTABLISHED before that. */
static bool ctrl_ready(const char *sock)
{
        return ctrl_call(sock, CTRL_GET_TPMESTABLISHED, NULL, 0, 1000, NULL) == 0;
}

/* The TPM's self-description, the same JSON swtpm_setup feeds to swtpm_localca. */
static int ctrl_get_info(const char *sock, json_t **out)
{
        uint8_t body[16] = { 0 }, hdr[8];
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        long long deadline = now_ms() + 2000;
        uint32_t total, len;
        int r;

        put_be32(body + 4, CTRL_INFO_SPEC | CTRL_INFO_ATTRS); /* a 64-bit flags field */
        r = ctrl_call(sock, CTRL_GET_INFO, body, sizeof(body), 2000, &fd);
        if (r < 0)
                return r;
        r = read_full(fd, hdr, sizeof(hdr), deadline);
        if (r < 0)
                return r;
        total = be32(hdr);
        len = be32(hdr + 4);
        if (len == 0 || len != total || len > 4096)
                return -EPROTO; /* it fits in one response (3 KiB) unless swtpm changed */
        text = malloc(len + 1);
        if (!text)
                return -ENOMEM;
        r = read_full(fd, text, len, deadline);
        if (r < 0)
                return r;
        text[len] = '\0';
        *out = json_loads(text, 0, NULL);
        return *out ? 0 : -EPROTO;
}

/* TPM2_Shutdown(TPM_SU_CLEAR) (TPM 2.0 Part 3, 9.4) on the command channel. Stopping swtpm
 * without it counts as a disorderly shutdown: libtpms then charges the dictionary-attack
 * counter once DA-protected keys (an AK) were used, and after three restarts quotes fail
 * with TPM_RC_LOCKOUT. Best effort: swtpm serves one connection at a time, so a client
 * that holds the channel open (libtss2's TCTI does not; it connects per command) makes this
 * time out and the shutdown disorderly. */
static void tpm_shutdown_clear(const char *sock)
{
        static const uint8_t cmd[] = { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x45, 0, 0 };
        long long deadline = now_ms() + 300;
        _cleanup_close_ int fd = unix_connect(sock);
        uint8_t res[10];

        if (fd < 0)
                return;
        if (write_all(fd, cmd, sizeof(cmd), deadline) == 0)
                read_full(fd, res, sizeof(res), deadline);
}

/* ---- one swtpm process ---- */

static void registry_remove(struct vg_swtpm *tpm)
{
        for (struct vg_swtpm **pp = &running; *pp; pp = &(*pp)->next)
                if (*pp == tpm) {
                        *pp = tpm->next;
                        tpm->next = NULL;
                        return;
                }
}

static void registry_stop_all(void)
{
        if (getpid() != running_owner)
                return;
        while (running)
                vg_swtpm_free(running); /* removes itself from the list */
}

static void registry_add(struct vg_swtpm *tpm)
{
        static bool registered;

        if (!registered) {
                running_owner = getpid();
                atexit(registry_stop_all);
                registered = true;
        }
        if (running_owner != getpid())
                return; /* a forked child starting its own TPMs relies on the death signal */
        tpm->next = running;
        running = tpm;
}

static int read_pidfile(const char *path, pid_t *pid)
{
        char buf[32] = { 0 };
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;
        char *end;
        long v;

        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return -ENODATA;
        errno = 0;
        v = strtol(buf, &end, 10);
        if (errno || end == buf || v <= 0 || v > INT_MAX)
                return -EINVAL;
        *pid = (pid_t)v;
        return 0;
}

/* Spawn swtpm on tpm's sockets and wait until it is ready; a failure quotes its log. */
static int spawn_swtpm(struct vg_swtpm *tpm, struct vg_error *err)
{
        _cleanup_free_ char *state = strf("dir=%s", tpm->dir);
        _cleanup_free_ char *server = strf("type=unixio,path=%s,mode=0600", tpm->sock);
        _cleanup_free_ char *ctrl = strf("type=unixio,path=%s,mode=0600", tpm->ctrl_sock);
        _cleanup_free_ char *pid = strf("file=%s", tpm->pidfile);
        _cleanup_free_ char *log = strf("file=%s", tpm->log);
        _cleanup_close_ int log_fd = -1;
        char *argv[] = { "swtpm",
                         "socket",
                         "--tpm2",
                         "--tpmstate",
                         state,
                         "--server",
                         server,
                         "--ctrl",
                         ctrl,
                         "--flags",
                         "not-need-init,startup-clear",
                         "--pid",
                         pid,
                         "--log",
                         log,
                         NULL };
        struct spawn_opts so = { .detach = tpm->detach };
        long long deadline;
        long delay = 200;
        char tail[300];
        off_t from;
        int r, status;

        if (!state || !server || !ctrl || !pid || !log)
                return vg_error_set(err, -ENOMEM, "out of memory");
        /* swtpm's own messages before its log is set up (bad options) go to the same file. */
        log_fd = open(tpm->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0)
                return vg_error_set(err, -errno, "cannot open %s: %s", tpm->log, strerror(errno));
        so.out_fd = log_fd;
        from = file_size(tpm->log);
        unlink(tpm->pidfile); /* a stale one must not pass for this process's */
        r = spawn(argv, &so, &tpm->pid, err);
        if (r < 0)
                return r;
        tpm->child = true;
        deadline = now_ms() + START_TIMEOUT_MS;
        for (;;) {
                pid_t written = 0;
                pid_t w = waitpid(tpm->pid, &status, WNOHANG);

                if (w == tpm->pid) {
                        tpm->pid = 0;
                        log_tail(tpm->log, from, tail, sizeof(tail));
                        return vg_error_set(
                            err, -EIO, "swtpm for %s exited (%s %d) before it was ready: %s",
                            tpm->dir, WIFEXITED(status) ? "status" : "signal",
                            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), tail);
                }
                /* swtpm writes its pid file after binding both sockets, so a listener on them
                 * is this process and not one that served the directory before. */
                if (read_pidfile(tpm->pidfile, &written) == 0 && written == tpm->pid &&
                    ctrl_ready(tpm->ctrl_sock))
                        return 0;
                if (now_ms() > deadline)
                        break;
                nap(&delay);
        }
        kill(tpm->pid, SIGKILL);
        while (waitpid(tpm->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        tpm->pid = 0;
        log_tail(tpm->log, from, tail, sizeof(tail));
        return vg_error_set(err, -ETIMEDOUT,
                            "swtpm for %s did not answer on its control socket %s within %d s: "
                            "%s",
                            tpm->dir, tpm->ctrl_sock, START_TIMEOUT_MS / 1000, tail);
}

static int write_info(const struct vg_swtpm *tpm)
{
        _cleanup_free_ char *s =
            strf("ek=%s\n", tpm->ek == VG_SWTPM_EK_ECC_P256 ? "ecc-p256" : "rsa2048");

        return s ? write_file_atomic(tpm->info, s, 0644) : -ENOMEM;
}

/* Start the process on the sockets in its directory, write the info file for attach, and
 * track it unless detached. */
static int start_process(struct vg_swtpm *tpm, struct vg_error *err)
{
        int r = spawn_swtpm(tpm, err);

        if (r < 0)
                return r;
        r = write_info(tpm);
        if (r < 0) {
                vg_swtpm_stop(tpm, NULL);
                return vg_error_set(err, r, "cannot write %s: %s", tpm->info, strerror(-r));
        }
        if (!tpm->detach)
                registry_add(tpm);
        return 0;
}

/* Does /proc say pid is a swtpm whose state directory is dir? Guards against a pid file that
 * outlived its process and a pid the kernel has since given to something else. */
static bool proc_is_swtpm_for(pid_t pid, const char *dir)
{
        char path[64];
        _cleanup_free_ char *want = strf("dir=%s", dir);
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = malloc(65536);
        ssize_t n;
        const char *base;
        bool is_swtpm = false, has_dir = false;

        if (!want || !buf)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        n = read(fd, buf, 65535);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        base = strrchr(buf, '/');
        is_swtpm = strcmp(base ? base + 1 : buf, "swtpm") == 0;
        for (char *p = buf; p < buf + n; p += strlen(p) + 1)
                if (strcmp(p, want) == 0)
                        has_dir = true;
        return is_swtpm && has_dir;
}

/* Signal only our own child (its pid cannot be reused before we reap it) or, for an adopted
 * TPM, a process that still is swtpm serving this directory. */
static void signal_tpm(const struct vg_swtpm *tpm, int sig)
{
        if (tpm->child || proc_is_swtpm_for(tpm->pid, tpm->dir))
                kill(tpm->pid, sig);
}

int vg_swtpm_stop(struct vg_swtpm *tpm, struct vg_error *err)
{
        pid_t pid;

        if (!tpm || tpm->pid <= 0)
                return 0;
        pid = tpm->pid;
        tpm_shutdown_clear(tpm->sock);
        ctrl_call(tpm->ctrl_sock, CTRL_SHUTDOWN, NULL, 0, 1000, NULL);
        if (!wait_gone(tpm, STOP_TIMEOUT_MS)) {
                signal_tpm(tpm, SIGTERM);
                if (!wait_gone(tpm, STOP_TIMEOUT_MS)) {
                        signal_tpm(tpm, SIGKILL);
                        if (!wait_gone(tpm, STOP_TIMEOUT_MS))
                                return vg_error_set(err, -ETIMEDOUT,
                                                    "swtpm %d for %s survived SIGKILL", (int)pid,
                                                    tpm->dir);
                }
        }
        tpm->pid = 0;
        unlink(tpm->pidfile);
        registry_remove(tpm);
        return 0;
}

int vg_swtpm_restart(struct vg_swtpm *tpm, struct vg_error *err)
{
        int r = vg_swtpm_stop(tpm, err);

        if (r < 0)
                return r;
        return start_process(tpm, err);
}

void vg_swtpm_free(struct vg_swtpm *tpm)
{
        if (!tpm)
                return;
        if (!tpm->detach)
                vg_swtpm_stop(tpm, NULL);
        registry_remove(tpm);
        /* A detached TPM keeps its directory while it runs; one that never started does not. */
        if (tpm->own_dir && (!tpm->detach || tpm->pid <= 0) && !getenv("VIGIL_KEEP_TMP"))
                rm_rf(tpm->dir);
        free(tpm->dir);
        free(tpm->log);
        free(tpm->pidfile);
        free(tpm->info);
        free(tpm->ek_cert);
        free(tpm->ca_file);
        free(tpm->ca_dir);
        free(tpm->sock);
        free(tpm->ctrl_sock);
        free(tpm->tcti);
        free(tpm);
}

/* A handle for dir, with every path filled in; no process yet. */
static int tpm_new(const char *dir, enum vg_swtpm_ek ek, struct vg_swtpm **out,
                   struct vg_error *err)
{
        _cleanup_(vg_swtpm_freep) struct vg_swtpm *tpm = calloc(1, sizeof(*tpm));

        if (!tpm)
                return vg_error_set(err, -ENOMEM, "out of memory");
        /* swtpm splits option values at ',' and offers no escape. */
        if (strchr(dir, ','))
                return vg_error_set(err, -EINVAL,
                                    "swtpm cannot use a state directory whose path has a ',': %s",
                                    dir);
        tpm->ek = ek;
        tpm->dir = strdup(dir);
        tpm->log = strf("%s/" LOG_FILE, dir);
        tpm->pidfile = strf("%s/" PID_FILE, dir);
        tpm->info = strf("%s/" INFO_FILE, dir);
        tpm->ek_cert = strf("%s/%s", dir, ek == VG_SWTPM_EK_ECC_P256 ? EK_P256_FILE : EK_RSA_FILE);
        tpm->ca_file = strf("%s/" CA_BUNDLE_FILE, dir);
        tpm->ca_dir = strf("%s/" CA_DIR, dir);
        tpm->sock = strf("%s/" SOCK_FILE, dir);
        tpm->ctrl_sock = strf("%s/" SOCK_FILE CTRL_SUFFIX, dir);
        tpm->tcti = strf("swtpm:path=%s", tpm->sock);
        if (!tpm->dir || !tpm->log || !tpm->pidfile || !tpm->info || !tpm->ek_cert ||
            !tpm->ca_file || !tpm->ca_dir || !tpm->sock || !tpm->ctrl_sock || !tpm->tcti)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (strlen(tpm->ctrl_sock) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return vg_error_set(err, -ENAMETOOLONG,
                                    "the TPM's socket %s would be longer than a unix socket path "
                                    "may be (%zu bytes): use a shorter directory or $TMPDIR",
                                    tpm->ctrl_sock,
                                    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        *out = TAKE_PTR(tpm);
        return 0;
}

/* ---- the cache: configuration, local CA and golden states ---- */

static int cache_resolve(const char *want, char **out, struct vg_error *err)
{
        const char *env = getenv("VIGIL_SWTPM_CACHE"), *tmp = getenv("TMPDIR");
        _cleanup_free_ char *path = NULL;
        char real[PATH_MAX];
        struct stat st;
        int r;

        if (want)
                path = strdup(want);
        else if (env && *env)
                path = strdup(env);
        else
                path =
                    strf("%s/vigil-swtpm-cache-%u", tmp && *tmp ? tmp : "/tmp", (unsigned)getuid());
        if (!path)
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = mkdir_p(path, 0700);
        if (r < 0)
                return vg_error_set(err, r, "cannot create the swtpm cache %s: %s", path,
                                    strerror(-r));
        if (!realpath(path, real) || stat(real, &st) < 0)
                return vg_error_set(err, -errno, "cannot resolve the swtpm cache %s: %s", path,
                                    strerror(errno));
        /* It holds a CA key whose certificates tests trust: in a shared /tmp, refuse a
         * directory someone else made or can write to. */
        if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 022))
                return vg_error_set(err, -EPERM,
                                    "refusing the swtpm cache %s: it must be a directory owned by "
                                    "uid %u and writable only by it (found uid %u, mode %03o)",
                                    real, (unsigned)getuid(), (unsigned)st.st_uid,
                                    (unsigned)(st.st_mode & 0777));
        if (strchr(real, ','))
                return vg_error_set(err, -EINVAL,
                                    "swtpm cannot use a cache directory whose path has a ',': %s",
                                    real);
        *out = strdup(real);
        return *out ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
}

/* Our own swtpm_setup and swtpm_localca configuration: never the system's, whose CA lives in
 * /var/lib/swtpm-localca and which a test must not touch. */
static int write_configs(const char *cache, struct vg_error *err)
{
        _cleanup_free_ char *localca = find_in_path("swtpm_localca");
        _cleanup_free_ char *setup = NULL, *lca = NULL, *setup_path = NULL, *lca_path = NULL;
        _cleanup_free_ char *opts_path = NULL, *ca_dir = NULL;
        int r;

        if (!localca)
                return vg_error_set(err, -ENOENT,
                                    "swtpm_localca is not in PATH "
                                    "(Debian: apt install swtpm-tools)");
        setup_path = strf("%s/swtpm_setup.conf", cache);
        lca_path = strf("%s/swtpm-localca.conf", cache);
        opts_path = strf("%s/swtpm-localca.options", cache);
        ca_dir = strf("%s/localca", cache);
        setup = strf("# vigil test harness (tests/harness/swtpm.c); see swtpm_setup.conf(8)\n"
                     "create_certs_tool = %s\n"
                     "create_certs_tool_config = %s\n"
                     "create_certs_tool_options = %s\n"
                     "active_pcr_banks = sha256\n",
                     localca, lca_path, opts_path);
        lca = strf("# vigil test harness: a local CA for EK certificates, created on first use\n"
                   "statedir = %s\n"
                   "signingkey = %s/signkey.pem\n"
                   "issuercert = %s/issuercert.pem\n"
                   "certserial = %s/certserial\n",
                   ca_dir, ca_dir, ca_dir, ca_dir);
        if (!setup_path || !lca_path || !opts_path || !ca_dir || !setup || !lca)
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = mkdir(ca_dir, 0700) < 0 && errno != EEXIST ? -errno : 0;
        if (r == 0)
                r = write_file_atomic(setup_path, setup, 0644);
        if (r == 0)
                r = write_file_atomic(lca_path, lca, 0644);
        if (r == 0)
                r = write_file_atomic(opts_path,
                                      "--platform-manufacturer vigil\n"
                                      "--platform-version 2.1\n"
                                      "--platform-model swtpm\n",
                                      0644);
        if (r < 0)
                return vg_error_set(err, r, "cannot write the swtpm configuration in %s: %s", cache,
                                    strerror(-r));
        return 0;
}

static int ec_point_hex(const char *pem, char **x_hex, char **y_hex, struct vg_error *err)
{
        FILE *f = fopen(pem, "re");
        EVP_PKEY *pkey = NULL;
        BIGNUM *x = NULL, *y = NULL;
        uint8_t xb[32], yb[32];
        char group[32] = "";
        int r = 0;

        if (!f)
                return vg_error_set(err, -errno, "cannot open %s: %s", pem, strerror(errno));
        pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
        fclose(f);
        if (!pkey ||
            !EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            NULL) ||
            strcmp(group, "prime256v1") != 0 ||
            !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
            !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) ||
            BN_bn2binpad(x, xb, sizeof(xb)) < 0 || BN_bn2binpad(y, yb, sizeof(yb)) < 0) {
                r = vg_error_set(err, -EPROTO, "%s: expected an EC P-256 public key, found %s", pem,
                                 group[0] ? group : "something else");
        } else {
                *x_hex = vg_hex_encode(xb, sizeof(xb));
                *y_hex = vg_hex_encode(yb, sizeof(yb));
                if (!*x_hex || !*y_hex)
                        r = vg_error_set(err, -ENOMEM, "out of memory");
        }
        BN_free(x);
        BN_free(y);
        EVP_PKEY_free(pkey);
        return r;
}

/* swtpm_setup 0.7 makes the ECC EK on P-384 (NV 0x01c00016) only, while a Keylime agent reads
 * the P-256 one at 0x01c0000a. Add it the way a manufacturer would: create the EK from the
 * default template, persist it, have the local CA certify it, store the certificate with the
 * attributes swtpm_setup gives its own (platform-written, write-locked). */
static int provision_p256(const char *cache, const char *dir, struct vg_error *err)
{
        _cleanup_swtpm_ struct vg_swtpm *tpm = NULL;
        _cleanup_free_ char *log = strf("%s/" SETUP_LOG_FILE, dir);
        _cleanup_free_ char *pem = strf("%s/ek-secp256r1.pem", dir);
        _cleanup_free_ char *issued = strf("%s/ek.cert", dir);
        _cleanup_free_ char *cert = strf("%s/" EK_P256_FILE, dir);
        _cleanup_free_ char *lca_conf = strf("%s/swtpm-localca.conf", cache);
        _cleanup_free_ char *lca_opts = strf("%s/swtpm-localca.options", cache);
        _cleanup_free_ char *x = NULL, *y = NULL, *ek = NULL, *level = NULL, *rev = NULL;
        _cleanup_free_ char *size = NULL;
        const char *family, *manufacturer, *model, *version;
        json_t *info = NULL, *spec, *attrs;
        char nv[16], handle[16];
        int r;

        if (!log || !pem || !issued || !cert || !lca_conf || !lca_opts)
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = tpm_new(dir, VG_SWTPM_EK_ECC_P256, &tpm, err);
        if (r < 0)
                return r;
        r = start_process(tpm, err);
        if (r < 0)
                return r;
        snprintf(nv, sizeof(nv), "0x%08x", NV_EK_P256);
        snprintf(handle, sizeof(handle), "0x%08x", HANDLE_EK_P256);

        char *createek[] = { "tpm2_createek", "-T", tpm->tcti, "-G", "ecc", "-c",
                             handle,          "-u", pem,       "-f", "pem", NULL };
        r = run_tool(createek, log, err);
        if (r < 0)
                return r;
        r = ec_point_hex(pem, &x, &y, err);
        if (r < 0)
                return r;

        r = ctrl_get_info(tpm->ctrl_sock, &info);
        if (r < 0)
                return vg_error_set(err, r, "swtpm on %s did not describe itself: %s",
                                    tpm->ctrl_sock, strerror(-r));
        spec = json_object_get(info, "TPMSpecification");
        attrs = json_object_get(info, "TPMAttributes");
        family = json_string_value(json_object_get(spec, "family"));
        manufacturer = json_string_value(json_object_get(attrs, "manufacturer"));
        model = json_string_value(json_object_get(attrs, "model"));
        version = json_string_value(json_object_get(attrs, "version"));
        ek = strf("x=%s,y=%s,id=secp256r1", x, y);
        level = strf("%lld", json_integer_value(json_object_get(spec, "level")));
        rev = strf("%lld", json_integer_value(json_object_get(spec, "revision")));
        if (!family || !manufacturer || !model || !version || !ek || !level || !rev) {
                json_decref(info);
                return vg_error_set(err, -EPROTO,
                                    "swtpm's GET_INFO lacks the TPM specification or attributes");
        }
        char *localca[] = { "swtpm_localca",
                            "--type",
                            "ek",
                            "--ek",
                            ek,
                            "--dir",
                            (char *)dir,
                            "--tpm2",
                            "--configfile",
                            lca_conf,
                            "--optsfile",
                            lca_opts,
                            "--tpm-spec-family",
                            (char *)family,
                            "--tpm-spec-level",
                            level,
                            "--tpm-spec-revision",
                            rev,
                            "--tpm-manufacturer",
                            (char *)manufacturer,
                            "--tpm-model",
                            (char *)model,
                            "--tpm-version",
                            (char *)version,
                            "--logfile",
                            log,
                            NULL };
        r = run_tool(localca, log, err);
        json_decref(info);
        if (r < 0)
                return r;
        if (rename(issued, cert) < 0)
                return vg_error_set(err, -errno, "swtpm_localca left no certificate %s: %s", issued,
                                    strerror(errno));
        size = strf("%lld", (long long)file_size(cert));
        if (!size)
                return vg_error_set(err, -ENOMEM, "out of memory");

        char *define[] = { "tpm2_nvdefine",
                           "-T",
                           tpm->tcti,
                           nv,
                           "-C",
                           "p",
                           "-s",
                           size,
                           "-a",
                           "ppwrite|writedefine|ppread|ownerread|authread|no_da|platformcreate",
                           NULL };
        char *write[] = { "tpm2_nvwrite", "-T", tpm->tcti, nv, "-C", "p", "-i", cert, NULL };
        char *lock[] = { "tpm2_nvwritelock", "-T", tpm->tcti, nv, "-C", "p", NULL };
        r = run_tool(define, log, err);
        if (r == 0)
                r = run_tool(write, log, err);
        if (r == 0)
                r = run_tool(lock, log, err);
        if (r < 0)
                return r;
        return vg_swtpm_stop(tpm, err);
}

/* A small text file as a string; NULL when unreadable. */
static char *read_text(const char *path)
{
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t len = 0;
        ssize_t n;

        if (!f)
                return NULL;
        n = getdelim(&buf, &len, '\0', f);
        fclose(f);
        if (n <= 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

static int copy_ca(const char *cache, const char *dir, struct vg_error *err)
{
        _cleanup_free_ char *issuer = strf("%s/localca/issuercert.pem", cache);
        _cleanup_free_ char *root = strf("%s/localca/swtpm-localca-rootca-cert.pem", cache);
        _cleanup_free_ char *to_dir = strf("%s/" CA_DIR, dir);
        _cleanup_free_ char *to_issuer = strf("%s/" CA_ISSUER_FILE, dir);
        _cleanup_free_ char *to_root = strf("%s/" CA_ROOT_FILE, dir);
        _cleanup_free_ char *bundle = strf("%s/" CA_BUNDLE_FILE, dir);
        _cleanup_free_ char *a = NULL, *b = NULL, *both = NULL;
        int r;

        if (!issuer || !root || !to_dir || !to_issuer || !to_root || !bundle)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (mkdir(to_dir, 0755) < 0 && errno != EEXIST)
                return vg_error_set(err, -errno, "cannot create %s: %s", to_dir, strerror(errno));
        a = read_text(issuer);
        b = read_text(root);
        if (!a || !b)
                return vg_error_set(err, -EIO, "the local CA in %s/localca has no %s", cache,
                                    a ? "root certificate" : "issuer certificate");
        both = strf("%s%s%s", a, a[strlen(a) - 1] == '\n' ? "" : "\n", b);
        if (!both)
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = write_file_atomic(to_issuer, a, 0644);
        if (r == 0)
                r = write_file_atomic(to_root, b, 0644);
        if (r == 0)
                r = write_file_atomic(bundle, both, 0644);
        if (r < 0)
                return vg_error_set(err, r, "cannot copy the local CA's certificates into %s: %s",
                                    dir, strerror(-r));
        return 0;
}

static void banks_string(unsigned banks, char sep, char *buf, size_t size)
{
        static const char *const names[] = { "sha1", "sha256", "sha384", "sha512" };
        size_t n = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < VG_ARRAY_SIZE(names); i++) {
                if (!(banks & (1u << i)))
                        continue;
                if (n && n + 1 < size)
                        buf[n++] = sep;
                n += (size_t)snprintf(buf + n, size - n, "%s", names[i]);
        }
}

/* Manufacture a TPM into dir: swtpm_setup with EK and platform certificates from our CA, the
 * P-256 EK, and copies of the CA's certificates. About a second. */
static int provision(const char *cache, const char *dir, unsigned banks, struct vg_error *err)
{
        _cleanup_free_ char *conf = strf("%s/swtpm_setup.conf", cache);
        _cleanup_free_ char *log = strf("%s/" SETUP_LOG_FILE, dir);
        char bank_list[64];
        int r;

        if (!conf || !log)
                return vg_error_set(err, -ENOMEM, "out of memory");
        banks_string(banks, ',', bank_list, sizeof(bank_list));
        char *setup[] = { "swtpm_setup",
                          "--tpm2",
                          "--tpmstate",
                          (char *)dir,
                          "--config",
                          conf,
                          "--create-ek-cert",
                          "--create-platform-cert",
                          "--lock-nvram",
                          "--pcr-banks",
                          bank_list,
                          "--write-ek-cert-files",
                          (char *)dir,
                          "--logfile",
                          log,
                          NULL };
        r = run_tool(setup, log, err);
        if (r == 0)
                r = provision_p256(cache, dir, err);
        if (r == 0)
                r = copy_ca(cache, dir, err);
        if (r < 0)
                vg_error_prefix(err, "manufacturing a TPM in %s: ", dir);
        return r;
}

/* The golden state for a set of banks, made on first use. Parallel test programs serialise
 * on a lock file; the state is built under a temporary name and renamed into place, so a
 * crash halfway leaves nothing that looks finished. */
static int golden_ensure(const char *cache, unsigned banks, char **out, struct vg_error *err)
{
        _cleanup_free_ char *golden = NULL, *lock_path = NULL, *tmp = NULL;
        _cleanup_close_ int lock = -1;
        char bank_list[64];
        int r;

        banks_string(banks, '-', bank_list, sizeof(bank_list));
        golden = strf("%s/" GOLDEN_VERSION "-%s", cache, bank_list);
        lock_path = strf("%s/lock", cache);
        tmp = strf("%s/tmp-%s-XXXXXX", cache, bank_list);
        if (!golden || !lock_path || !tmp)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (exists(golden))
                goto done;
        lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lock < 0)
                return vg_error_set(err, -errno, "cannot open %s: %s", lock_path, strerror(errno));
        while (flock(lock, LOCK_EX) < 0)
                if (errno != EINTR)
                        return vg_error_set(err, -errno, "cannot lock %s: %s", lock_path,
                                            strerror(errno));
        if (exists(golden))
                goto done;
        r = write_configs(cache, err);
        if (r < 0)
                return r;
        if (!mkdtemp(tmp))
                return vg_error_set(err, -errno, "cannot create %s: %s", tmp, strerror(errno));
        r = provision(cache, tmp, banks, err);
        if (r == 0 && rename(tmp, golden) < 0)
                r = vg_error_set(err, -errno, "cannot rename %s to %s: %s", tmp, golden,
                                 strerror(errno));
        if (r < 0) {
                if (!getenv("VIGIL_KEEP_TMP"))
                        rm_rf(tmp);
                return r;
        }
done:
        *out = TAKE_PTR(golden);
        return 0;
}

static int copy_golden(const char *golden, const char *dir, struct vg_error *err)
{
        static const char *const files[] = { STATE_FILE,     EK_RSA_FILE,    EK_P256_FILE,
                                             CA_BUNDLE_FILE, CA_ISSUER_FILE, CA_ROOT_FILE };
        _cleanup_free_ char *ca_dir = strf("%s/" CA_DIR, dir);

        if (!ca_dir)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (mkdir(ca_dir, 0755) < 0 && errno != EEXIST)
                return vg_error_set(err, -errno, "cannot create %s: %s", ca_dir, strerror(errno));
        for (size_t i = 0; i < VG_ARRAY_SIZE(files); i++) {
                _cleanup_free_ char *from = strf("%s/%s", golden, files[i]);
                _cleanup_free_ char *to = strf("%s/%s", dir, files[i]);
                int r;

                if (!from || !to)
                        return vg_error_set(err, -ENOMEM, "out of memory");
                /* The state is the TPM's secret seeds; the rest is public. */
                r = copy_file(from, to, i == 0 ? 0600 : 0644);
                if (r < 0)
                        return vg_error_set(err, r, "cannot copy %s to %s: %s", from, to,
                                            strerror(-r));
        }
        return 0;
}

/* ---- the public surface ---- */

int vg_swtpm_start(const struct vg_swtpm_opts *opts, struct vg_swtpm **out, struct vg_error *err)
{
        struct vg_swtpm_opts o = opts ? *opts : (struct vg_swtpm_opts){ 0 };
        _cleanup_swtpm_ struct vg_swtpm *tpm = NULL;
        _cleanup_free_ char *cache = NULL, *golden = NULL, *dir = NULL, *state = NULL;
        char real[PATH_MAX];
        bool own_dir = false;
        int r;

        if (!o.banks)
                o.banks = VG_SWTPM_BANK_SHA256;
        if (o.banks & ~0xfu)
                return vg_error_set(err, -EINVAL, "unknown PCR bank bits 0x%x", o.banks);
        if (o.ek != VG_SWTPM_EK_RSA2048 && o.ek != VG_SWTPM_EK_ECC_P256)
                return vg_error_set(err, -EINVAL, "unknown EK type %d", (int)o.ek);
        r = cache_resolve(o.cache_dir, &cache, err);
        if (r < 0)
                return r;

        if (o.dir) {
                r = mkdir_p(o.dir, 0700);
                if (r < 0)
                        return vg_error_set(err, r, "cannot create %s: %s", o.dir, strerror(-r));
                dir = strdup(o.dir);
        } else {
                const char *tmp = getenv("TMPDIR");
                dir = strf("%s/vigil-swtpm-XXXXXX", tmp && *tmp ? tmp : "/tmp");
                if (dir && !mkdtemp(dir))
                        return vg_error_set(err, -errno, "cannot create a directory %s: %s", dir,
                                            strerror(errno));
                own_dir = true;
        }
        if (!dir)
                return vg_error_set(err, -ENOMEM, "out of memory");
        /* Absolute, so that the path in swtpm's command line identifies it (attach). */
        if (!realpath(dir, real))
                return vg_error_set(err, -errno, "cannot resolve %s: %s", dir, strerror(errno));
        r = tpm_new(real, o.ek, &tpm, err);
        if (r < 0) {
                if (own_dir)
                        rmdir(real);
                return r;
        }
        tpm->own_dir = own_dir;
        tpm->detach = o.detach;

        state = strf("%s/" STATE_FILE, tpm->dir);
        if (!state)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (!exists(state)) {
                /* A unique identity needs the golden state too: making it creates the CA. */
                r = golden_ensure(cache, o.banks, &golden, err);
                if (r == 0)
                        r = o.unique_identity ? provision(cache, tpm->dir, o.banks, err)
                                              : copy_golden(golden, tpm->dir, err);
                if (r < 0)
                        return r;
        } else if (!exists(tpm->ek_cert)) {
                return vg_error_set(err, -ENOENT,
                                    "%s holds TPM state but no EK certificate %s: not a "
                                    "directory of this harness",
                                    tpm->dir, tpm->ek_cert);
        }
        r = start_process(tpm, err);
        if (r < 0)
                return r;
        *out = TAKE_PTR(tpm);
        return 0;
}

int vg_swtpm_attach(const char *dir, struct vg_swtpm **out, struct vg_error *err)
{
        _cleanup_swtpm_ struct vg_swtpm *tpm = NULL;
        char real[PATH_MAX], ek[32] = "";
        FILE *f;
        pid_t pid = 0;
        int r;

        if (!realpath(dir, real))
                return vg_error_set(err, -errno, "cannot resolve %s: %s", dir, strerror(errno));
        r = tpm_new(real, VG_SWTPM_EK_RSA2048, &tpm, err);
        if (r < 0)
                return r;
        tpm->detach = true; /* vg_swtpm_free() of an adopted TPM leaves it running */
        f = fopen(tpm->info, "re");
        if (!f)
                return vg_error_set(err, -errno, "%s: no TPM of this harness here (%s: %s)", real,
                                    INFO_FILE, strerror(errno));
        r = fscanf(f, "ek=%31s", ek);
        fclose(f);
        if (r != 1)
                return vg_error_set(err, -EINVAL, "%s: expected ek=rsa2048|ecc-p256", tpm->info);
        if (strcmp(ek, "ecc-p256") == 0) {
                free(tpm->ek_cert);
                tpm->ek = VG_SWTPM_EK_ECC_P256;
                tpm->ek_cert = strf("%s/" EK_P256_FILE, real);
                if (!tpm->ek_cert)
                        return vg_error_set(err, -ENOMEM, "out of memory");
        }
        r = read_pidfile(tpm->pidfile, &pid);
        if (r < 0 || !proc_is_swtpm_for(pid, real))
                return vg_error_set(err, -ESRCH, "no swtpm is running for %s (pid file %s: %s)",
                                    real, tpm->pidfile,
                                    r < 0 ? strerror(-r) : "its process is gone or not swtpm");
        tpm->pid = pid;
        *out = TAKE_PTR(tpm);
        return 0;
}

const char *vg_swtpm_tcti(const struct vg_swtpm *tpm)
{
        return tpm->tcti;
}

const char *vg_swtpm_socket(const struct vg_swtpm *tpm)
{
        return tpm->sock;
}

const char *vg_swtpm_ctrl_socket(const struct vg_swtpm *tpm)
{
        return tpm->ctrl_sock;
}

pid_t vg_swtpm_pid(const struct vg_swtpm *tpm)
{
        return tpm->pid;
}

const char *vg_swtpm_dir(const struct vg_swtpm *tpm)
{
        return tpm->dir;
}

const char *vg_swtpm_pidfile(const struct vg_swtpm *tpm)
{
        return tpm->pidfile;
}

const char *vg_swtpm_log(const struct vg_swtpm *tpm)
{
        return tpm->log;
}

const char *vg_swtpm_ek_cert(const struct vg_swtpm *tpm)
{
        return tpm->ek_cert;
}

uint32_t vg_swtpm_ek_nv_index(const struct vg_swtpm *tpm)
{
        return tpm->ek == VG_SWTPM_EK_ECC_P256 ? NV_EK_P256 : NV_EK_RSA2048;
}

uint32_t vg_swtpm_ek_handle(const struct vg_swtpm *tpm)
{
        return tpm->ek == VG_SWTPM_EK_ECC_P256 ? HANDLE_EK_P256 : HANDLE_EK_RSA2048;
}

const char *vg_swtpm_ek_ca_file(const struct vg_swtpm *tpm)
{
        return tpm->ca_file;
}

const char *vg_swtpm_ek_ca_dir(const struct vg_swtpm *tpm)
{
        return tpm->ca_dir;
}

int vg_swtpm_sh(struct vg_swtpm *tpm, const char *dir, char **out, const char *fmt, ...)
{
        _cleanup_free_ char *cmd = NULL, *script = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&cmd, fmt, ap);
        va_end(ap);
        if (r < 0 || asprintf(&script,
                              "set -e; cd '%s'; export TPM2TOOLS_TCTI='%s'; "
                              "fl() { tpm2_flushcontext -t; tpm2_flushcontext -s; }; %s",
                              dir, tpm ? vg_swtpm_tcti(tpm) : "none", cmd) < 0)
                tap_bail("out of memory");
        char *argv[] = { "sh", "-c", script, NULL };
        return tap_run(argv, out);
}

uint8_t *vg_swtpm_slurp(const char *dir, const char *name, size_t *len)
{
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                tap_bail("out of memory");
        return (uint8_t *)tap_read_file(path, len);
}
