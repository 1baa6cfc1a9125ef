/* vigil tests: TAP output and the small helpers every test program uses. */
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int tap_count, tap_failed, tap_planned = -1;
static char *tmpdirs[64];
static int n_tmpdirs;
static pid_t tap_pid;

void tap_plan(int n)
{
        tap_planned = n;
        printf("1..%d\n", n);
        fflush(stdout);
}

static char **kept;
static size_t n_kept;

char *tap_keep(char *p)
{
        char **n = realloc(kept, (n_kept + 1) * sizeof(*kept));

        if (!n)
                tap_bail("out of memory");
        kept = n;
        kept[n_kept++] = p;
        return p;
}

int tap_done(void)
{
        for (size_t i = 0; i < n_kept; i++)
                free(kept[i]);
        free(kept);
        kept = NULL;
        n_kept = 0;
        if (tap_planned < 0)
                printf("1..%d\n", tap_count);
        else if (tap_planned != tap_count)
                printf("# planned %d checks but ran %d\n", tap_planned, tap_count);
        fflush(stdout);
        return tap_failed || (tap_planned >= 0 && tap_planned != tap_count) ? 1 : 0;
}

static __attribute__((format(printf, 4, 0))) bool report(bool cond, const char *file, int line,
                                                         const char *fmt, va_list ap)
{
        char *what = NULL;

        tap_count++;
        if (vasprintf(&what, fmt, ap) < 0)
                what = NULL;
        printf("%s %d - ", cond ? "ok" : "not ok", tap_count);
        /* A description is one line: a newline in it would end the TAP line early. */
        for (const char *c = what ? what : "?"; *c; c++) {
                if (*c == '\n')
                        fputs("\\n", stdout);
                else
                        putchar(*c);
        }
        printf("\n");
        free(what);
        if (!cond) {
                tap_failed++;
                printf("#   failed at %s:%d\n", file, line);
        }
        fflush(stdout);
        return cond;
}

bool tap_ok(bool cond, const char *file, int line, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        report(cond, file, line, fmt, ap);
        va_end(ap);
        return cond;
}

bool tap_is_int(long long got, long long want, const char *file, int line, const char *fmt, ...)
{
        va_list ap;
        bool r;

        va_start(ap, fmt);
        r = report(got == want, file, line, fmt, ap);
        va_end(ap);
        if (!r)
                printf("#   got: %lld\n#   expected: %lld\n", got, want);
        return r;
}

bool tap_is_str(const char *got, const char *want, const char *file, int line, const char *fmt, ...)
{
        bool same = (got && want) ? strcmp(got, want) == 0 : got == want;
        va_list ap;

        va_start(ap, fmt);
        report(same, file, line, fmt, ap);
        va_end(ap);
        if (!same)
                printf("#   got: %s%s%s\n#   expected: %s%s%s\n", got ? "'" : "",
                       got ? got : "NULL", got ? "'" : "", want ? "'" : "", want ? want : "NULL",
                       want ? "'" : "");
        return same;
}

bool tap_is_mem(const void *got, size_t got_len, const void *want, size_t want_len,
                const char *file, int line, const char *fmt, ...)
{
        bool same = got_len == want_len && (got_len == 0 || memcmp(got, want, got_len) == 0);
        va_list ap;

        va_start(ap, fmt);
        report(same, file, line, fmt, ap);
        va_end(ap);
        if (!same) {
                printf("#   got %zu bytes:", got_len);
                for (size_t i = 0; got && i < got_len && i < 48; i++)
                        printf(" %02x", ((const unsigned char *)got)[i]);
                printf("\n#   expected %zu bytes:", want_len);
                for (size_t i = 0; want && i < want_len && i < 48; i++)
                        printf(" %02x", ((const unsigned char *)want)[i]);
                printf("\n");
        }
        return same;
}

bool tap_contains(const char *got, const char *needle, const char *file, int line, const char *fmt,
                  ...)
{
        bool found = got && needle && strstr(got, needle);
        va_list ap;

        va_start(ap, fmt);
        report(found, file, line, fmt, ap);
        va_end(ap);
        if (!found)
                printf("#   got: %s\n#   expected to contain: %s\n", got ? got : "NULL",
                       needle ? needle : "NULL");
        return found;
}

void tap_skip(const char *why, const char *fmt, ...)
{
        va_list ap;

        tap_count++;
        printf("ok %d - ", tap_count);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf(" # SKIP %s\n", why);
        fflush(stdout);
}

void tap_diag(const char *fmt, ...)
{
        char *text = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&text, fmt, ap) < 0)
                text = NULL;
        va_end(ap);
        /* Every line of a diagnostic must start with '#', or TAP readers take it for output. */
        for (char *line = text, *next; line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                printf("# %s\n", line);
        }
        free(text);
        fflush(stdout);
}

void tap_bail(const char *fmt, ...)
{
        va_list ap;

        printf("Bail out! ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
        exit(1);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st, (void)flag, (void)ftw;
        remove(path);
        return 0;
}

static void remove_tmpdirs(void)
{
        if (getpid() != tap_pid || getenv("VIGIL_KEEP_TMP"))
                return;
        for (int i = 0; i < n_tmpdirs; i++) {
                nftw(tmpdirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
                free(tmpdirs[i]);
        }
        n_tmpdirs = 0;
}

char *tap_tmpdir(void)
{
        const char *base = getenv("TMPDIR");
        char *path;

        if (n_tmpdirs == (int)(sizeof(tmpdirs) / sizeof(tmpdirs[0])))
                tap_bail("too many temporary directories");
        if (asprintf(&path, "%s/vigil-test-XXXXXX", base && *base ? base : "/tmp") < 0 ||
            !mkdtemp(path))
                tap_bail("cannot create a temporary directory: %s", strerror(errno));
        if (n_tmpdirs == 0) {
                tap_pid = getpid();
                atexit(remove_tmpdirs);
        }
        tmpdirs[n_tmpdirs++] = path;
        return strdup(path);
}

char *tap_shared_data(const char *rel)
{
        const char *base = getenv("VIGIL_SHARED_DATA");
        char *path;

        if (!base)
                tap_bail("VIGIL_SHARED_DATA is not set (run the tests through meson test)");
        if (asprintf(&path, "%s/%s", base, rel) < 0)
                tap_bail("out of memory");
        if (access(path, R_OK) != 0)
                tap_bail("test vector %s is missing: %s", path, strerror(errno));
        return path;
}

char *tap_read_file(const char *path, size_t *len)
{
        FILE *f = fopen(path, "rb");
        char *buf = NULL;
        size_t n = 0, cap = 0;

        if (!f)
                return NULL;
        for (;;) {
                if (n + 4096 + 1 > cap) {
                        cap = cap ? cap * 2 : 8192;
                        char *nb = realloc(buf, cap);
                        if (!nb) {
                                free(buf);
                                fclose(f);
                                return NULL;
                        }
                        buf = nb;
                }
                size_t got = fread(buf + n, 1, 4096, f);
                n += got;
                if (got == 0)
                        break;
        }
        fclose(f);
        buf[n] = '\0';
        if (len)
                *len = n;
        return buf;
}

int tap_write_file(const char *path, const char *content)
{
        FILE *f = fopen(path, "wb");

        if (!f)
                return -errno;
        fputs(content, f);
        return fclose(f) == 0 ? 0 : -errno;
}

int tap_run_input(char *const argv[], const char *in_path, char **output)
{
        int pipefd[2], status;
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -1;
        fflush(stdout);
        pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                /* Never the test's own stdin: a child that reads it would hang the test. */
                int in = open(in_path ? in_path : "/dev/null", O_RDONLY | O_CLOEXEC);
                if (in < 0 || dup2(in, STDIN_FILENO) < 0) {
                        fprintf(stderr, "cannot open %s: %s\n", in_path ? in_path : "/dev/null",
                                strerror(errno));
                        _exit(127);
                }
                dup2(pipefd[1], STDOUT_FILENO);
                dup2(pipefd[1], STDERR_FILENO);
                execvp(argv[0], argv);
                fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        close(pipefd[1]);
        char *buf = NULL;
        size_t n = 0, cap = 0;
        for (;;) {
                if (n + 4097 > cap) {
                        cap = cap ? cap * 2 : 8192;
                        buf = realloc(buf, cap);
                        if (!buf)
                                abort();
                }
                ssize_t got = read(pipefd[0], buf + n, 4096);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        break;
                n += (size_t)got;
        }
        close(pipefd[0]);
        buf[n] = '\0';
        if (output)
                *output = buf;
        else
                free(buf);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int tap_run(char *const argv[], char **output)
{
        return tap_run_input(argv, NULL, output);
}

int tap_runv(char **output, const char *arg0, va_list ap)
{
        const char *argv[32] = { arg0 };
        size_t n = 1;

        while (n < 31 && (argv[n] = va_arg(ap, const char *)))
                n++;
        argv[n] = NULL;
        return tap_run_input((char *const *)argv, NULL, output);
}

int tap_runl(char **output, const char *arg0, ...)
{
        va_list ap;
        int r;

        va_start(ap, arg0);
        r = tap_runv(output, arg0, ap);
        va_end(ap);
        return r;
}

char *tap_strf(const char *fmt, ...)
{
        char *p;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&p, fmt, ap) < 0)
                tap_bail("out of memory");
        va_end(ap);
        return p;
}

int tap_file_mode(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

void tap_copy_file(const char *from, const char *to)
{
        char *data = tap_read_file(from, NULL);

        if (!data || tap_write_file(to, data) < 0)
                tap_bail("cannot copy %s to %s", from, to);
        free(data);
}

int tap_free_port(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

        if (fd < 0)
                return -1;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
                port = ntohs(sa.sin_port);
        close(fd);
        return port;
}

pid_t tap_spawn_log(char *const argv[], const char *log_path)
{
        pid_t pid = fork();

        if (pid < 0)
                tap_bail("fork: %s", strerror(errno));
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (log_path) {
                        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                        if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
                                _exit(127);
                }
                execvp(argv[0], argv);
                _exit(127);
        }
        return pid;
}

pid_t tap_spawn(char *const argv[])
{
        return tap_spawn_log(argv, NULL);
}

bool tap_wait_file_contains(const char *path, const char *needle, int ms)
{
        for (int waited = 0;; waited += 20) {
                char *text = tap_read_file(path, NULL);
                bool found = text && strstr(text, needle);

                free(text);
                if (found)
                        return true;
                if (waited >= ms)
                        return false;
                usleep(20 * 1000);
        }
}

void tap_stop(pid_t *pid)
{
        if (*pid > 0) {
                kill(*pid, SIGTERM);
                waitpid(*pid, NULL, 0);
                *pid = -1;
        }
}

bool tap_wait_port(int port, int ms)
{
        for (int waited = 0; waited < ms; waited += 20) {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_in sa = { .sin_family = AF_INET,
                                          .sin_port = htons((uint16_t)port),
                                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                bool up = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

                if (fd >= 0)
                        close(fd);
                if (up)
                        return true;
                usleep(20 * 1000);
        }
        return false;
}

bool tap_wait_http(int port, const char *path)
{
        for (int i = 0; i < 100; i++) {
                char *url = tap_strf("http://127.0.0.1:%d%s", port, path);
                int r = tap_runl(NULL, "curl", "-sf", "-o", "/dev/null", url, (char *)NULL);

                free(url);
                if (r == 0)
                        return true;
                usleep(50 * 1000);
        }
        return false;
}
