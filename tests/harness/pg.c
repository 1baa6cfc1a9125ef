/* vigil tests: a private PostgreSQL 15 server per test program, started by copying a template
 * cluster that initdb made once into $TMPDIR/vigil-pg-cache-<uid>, and stopped by its PID. */
#include "pg.h"
#include "tap.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_BINDIR "/usr/lib/postgresql/15/bin"
/* Bump when the template's initdb options change, so old caches are ignored. */
#define TEMPLATE_NAME "pg15-template-v1"
#define SUPERUSER     "vigil"
#define PASSWORD      "vigil-test-password"
/* Generous for an ASan build on a loaded machine; a start normally takes ~100 ms. */
#define START_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS  10000
#define PORT_ATTEMPTS    5

struct vg_pg {
        char *dir;  /* ours: the instance directory (socket, log, data/) */
        char *data; /* dir/data */
        char *log;
        char *url;
        int port;
        pid_t pid;
        pid_t owner; /* the process that started it: only it stops it */
        struct vg_pg *next;
};

/* Servers still running, stopped at exit() even when a test bails out early. */
static struct vg_pg *running;

/* Who runs initdb and postgres: PostgreSQL refuses to run as root. */
struct runas {
        bool drop;
        uid_t uid;
        gid_t gid;
};

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...)
{
        va_list ap;
        char *s;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

static const char *bindir(void)
{
        const char *d = getenv("VIGIL_PG_BINDIR");

        return d && *d ? d : DEFAULT_BINDIR;
}

static int runas_get(struct runas *ra, struct vg_error *err)
{
        struct passwd *pw;

        *ra = (struct runas){ 0 };
        if (geteuid() != 0)
                return 0;
        pw = getpwnam("nobody");
        if (!pw)
                return vg_error_set(err, -ENOENT,
                                    "running as root, and there is no user \"nobody\" to run "
                                    "PostgreSQL as (it refuses root)");
        ra->drop = true;
        ra->uid = pw->pw_uid;
        ra->gid = pw->pw_gid;
        return 0;
}

static int give(const struct runas *ra, const char *path)
{
        if (ra->drop && chown(path, ra->uid, ra->gid) < 0)
                return -errno;
        return 0;
}

/* Between fork() and exec(): async-signal-safe calls only. */
static void __attribute__((noreturn)) child(char *const argv[], const struct runas *ra, int outfd,
                                            int errfd, bool die_with_parent, pid_t parent)
{
        sigset_t none;
        int null, e;

        if (ra->drop && (setgroups(0, NULL) < 0 || setgid(ra->gid) < 0 || setuid(ra->uid) < 0)) {
                e = errno;
                if (write(errfd, &e, sizeof(e)) < 0)
                        _exit(127);
                _exit(127);
        }
        /* After setuid(): a change of credentials clears the death signal. */
        if (die_with_parent) {
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(127);
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        null = open("/dev/null", O_RDWR);
        if (null >= 0)
                dup2(null, STDIN_FILENO);
        dup2(outfd >= 0 ? outfd : null, STDOUT_FILENO);
        dup2(outfd >= 0 ? outfd : null, STDERR_FILENO);
        if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) < 0)
                for (int fd = 3; fd < 1024; fd++)
                        fcntl(fd, F_SETFD, FD_CLOEXEC);
        execv(argv[0], argv);
        e = errno;
        if (write(errfd, &e, sizeof(e)) < 0)
                _exit(127);
        _exit(127);
}

static int spawn(char *const argv[], const struct runas *ra, const char *log, bool daemon,
                 pid_t *out, struct vg_error *err)
{
        _cleanup_close_ int logfd = -1;
        pid_t parent = getpid(), pid;
        int pipefd[2], child_errno = 0;
        ssize_t n;

        if (log) {
                logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (logfd < 0)
                        return vg_error_set(err, -errno, "cannot open %s: %s", log,
                                            strerror(errno));
                if (give(ra, log) < 0)
                        return vg_error_set(err, -errno, "cannot chown %s: %s", log,
                                            strerror(errno));
        }
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return vg_error_set(err, -errno, "cannot create a pipe: %s", strerror(errno));
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
                int e = errno;

                close(pipefd[0]);
                close(pipefd[1]);
                return vg_error_set(err, -e, "cannot fork for %s: %s", argv[0], strerror(e));
        }
        if (pid == 0)
                child(argv, ra, logfd, pipefd[1], daemon, parent);
        close(pipefd[1]);
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

static int wait_pid(pid_t pid)
{
        int status;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last lines of a log, for error messages. */
static void log_tail(const char *log, char *buf, size_t size)
{
        _cleanup_free_ char *all = NULL;
        size_t len = 0;

        buf[0] = '\0';
        all = log ? tap_read_file(log, &len) : NULL;
        if (!all)
                return;
        while (len > 0 && isspace((unsigned char)all[len - 1]))
                all[--len] = '\0';
        snprintf(buf, size, "%s", len > size - 1 ? all + len - (size - 1) : all);
        for (char *p = buf; *p; p++)
                if (*p == '\n')
                        *p = '|';
}

static int run(char *const argv[], const struct runas *ra, const char *log, struct vg_error *err)
{
        char tail[300];
        pid_t pid;
        int r, status;

        r = spawn(argv, ra, log, false, &pid, err);
        if (r < 0)
                return r;
        status = wait_pid(pid);
        if (status == 0)
                return 0;
        log_tail(log, tail, sizeof(tail));
        return vg_error_set(err, -EIO, "%s failed (status %d): %s", argv[0], status, tail);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        if (flag == FTW_DP)
                rmdir(path);
        else
                unlink(path);
        return 0;
}

static void rm_rf(const char *path)
{
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Whether "nobody" may walk down to path: every directory on the way needs o+x. */
static bool others_can_traverse(const char *path)
{
        _cleanup_free_ char *p = strdup(path);
        struct stat st;

        if (!p)
                return false;
        for (char *s = p + strlen(p); s > p; s = strrchr(p, '/')) {
                *s = '\0';
                if (stat(*p ? p : "/", &st) < 0 || !(st.st_mode & S_IXOTH))
                        return false;
        }
        return stat(path, &st) == 0 && (st.st_mode & S_IXOTH);
}

/* Where instance directories and the cache go: $TMPDIR, or /tmp when "nobody" could not
 * reach into $TMPDIR. */
static const char *tmp_base(const struct runas *ra)
{
        const char *t = getenv("TMPDIR");

        if (!t || !*t)
                return "/tmp";
        if (ra->drop && !others_can_traverse(t))
                return "/tmp";
        return t;
}

static int cache_dir(const struct runas *ra, char **out, struct vg_error *err)
{
        _cleanup_free_ char *path = strf("%s/vigil-pg-cache-%u", tmp_base(ra), (unsigned)getuid());
        struct stat st;

        if (!path)
                return -ENOMEM;
        /* 0711: "nobody" builds the template in a directory of its own inside. */
        if (mkdir(path, 0711) < 0 && errno != EEXIST)
                return vg_error_set(err, -errno, "cannot create %s: %s", path, strerror(errno));
        if (lstat(path, &st) < 0)
                return vg_error_set(err, -errno, "cannot stat %s: %s", path, strerror(errno));
        /* A template someone else could write to would run their configuration. */
        if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 022))
                return vg_error_set(err, -EPERM,
                                    "refusing the PostgreSQL cache %s: it must be a directory "
                                    "owned by uid %u and writable only by it",
                                    path, (unsigned)getuid());
        if (chmod(path, 0711) < 0)
                return vg_error_set(err, -errno, "cannot chmod %s: %s", path, strerror(errno));
        *out = TAKE_PTR(path);
        return 0;
}

/* The initdb'd template, made on first use. Parallel test programs serialise on a lock; the
 * cluster is built under a temporary name and renamed into place. */
static int template_ensure(const struct runas *ra, char **out, struct vg_error *err)
{
        _cleanup_free_ char *cache = NULL, *tmpl = NULL, *lock_path = NULL, *work = NULL,
                            *data = NULL, *pwfile = NULL, *log = NULL, *initdb = NULL;
        _cleanup_close_ int lock = -1;
        struct stat st;
        int r;

        r = cache_dir(ra, &cache, err);
        if (r < 0)
                return r;
        tmpl = strf("%s/" TEMPLATE_NAME, cache);
        lock_path = strf("%s/lock", cache);
        work = strf("%s/tmp-XXXXXX", cache);
        if (!tmpl || !lock_path || !work)
                return -ENOMEM;
        if (stat(tmpl, &st) == 0)
                goto done;
        lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lock < 0)
                return vg_error_set(err, -errno, "cannot open %s: %s", lock_path, strerror(errno));
        while (flock(lock, LOCK_EX) < 0)
                if (errno != EINTR)
                        return vg_error_set(err, -errno, "cannot lock %s: %s", lock_path,
                                            strerror(errno));
        if (stat(tmpl, &st) == 0)
                goto done;
        if (!mkdtemp(work))
                return vg_error_set(err, -errno, "cannot create %s: %s", work, strerror(errno));
        data = strf("%s/data", work);
        pwfile = strf("%s/pw", work);
        log = strf("%s/initdb.log", work);
        initdb = strf("%s/initdb", bindir());
        if (!data || !pwfile || !log || !initdb)
                return -ENOMEM;
        r = tap_write_file(pwfile, PASSWORD "\n");
        if (r >= 0)
                r = give(ra, work);
        if (r >= 0)
                r = give(ra, pwfile);
        if (r < 0) {
                rm_rf(work);
                return vg_error_set(err, r, "cannot prepare %s: %s", work, strerror(-r));
        }
        char *argv[] = { initdb,
                         "-D",
                         data,
                         "-U",
                         SUPERUSER,
                         "--pwfile",
                         pwfile,
                         "--auth-local=trust",
                         "--auth-host=scram-sha-256",
                         "-E",
                         "UTF8",
                         "--locale=C",
                         "--no-sync",
                         "--no-instructions",
                         NULL };
        r = run(argv, ra, log, err);
        if (r == 0 && rename(data, tmpl) < 0)
                r = vg_error_set(err, -errno, "cannot rename %s to %s: %s", data, tmpl,
                                 strerror(errno));
        rm_rf(work);
        if (r < 0)
                return r;
done:
        *out = TAKE_PTR(tmpl);
        return 0;
}

static void stop(struct vg_pg *pg)
{
        int status;

        if (pg->pid <= 0)
                return;
        /* SIGINT: fast shutdown, which does not wait for clients to disconnect. */
        kill(pg->pid, SIGINT);
        for (int waited = 0; waited < STOP_TIMEOUT_MS; waited += 10) {
                pid_t r = waitpid(pg->pid, &status, WNOHANG);

                if (r == pg->pid || (r < 0 && errno != EINTR)) {
                        pg->pid = 0;
                        return;
                }
                usleep(10 * 1000);
        }
        kill(pg->pid, SIGKILL);
        wait_pid(pg->pid);
        pg->pid = 0;
}

static void stop_all(void)
{
        for (struct vg_pg *pg = running; pg; pg = pg->next)
                if (pg->owner == getpid()) {
                        stop(pg);
                        if (!getenv("VIGIL_KEEP_TMP"))
                                rm_rf(pg->dir);
                }
}

static void unlist(struct vg_pg *pg)
{
        for (struct vg_pg **p = &running; *p; p = &(*p)->next)
                if (*p == pg) {
                        *p = pg->next;
                        return;
                }
}

void vg_pg_free(struct vg_pg *pg)
{
        if (!pg)
                return;
        if (pg->owner == getpid()) {
                stop(pg);
                if (pg->dir && !getenv("VIGIL_KEEP_TMP"))
                        rm_rf(pg->dir);
        }
        unlist(pg);
        free(pg->dir);
        free(pg->data);
        free(pg->log);
        free(pg->url);
        free(pg);
}

/* postmaster.pid's 8th line says "ready" once the server accepts connections (PG 10+). */
static bool is_ready(const struct vg_pg *pg)
{
        _cleanup_free_ char *path = strf("%s/postmaster.pid", pg->data), *text = NULL;
        const char *p;
        size_t len;
        int line = 1;

        if (!path || !(text = tap_read_file(path, &len)))
                return false;
        for (p = text; *p && line < 8; p++)
                if (*p == '\n')
                        line++;
        return line == 8 && strncmp(p, "ready", 5) == 0;
}

static int start_server(struct vg_pg *pg, const struct runas *ra, struct vg_error *err)
{
        _cleanup_free_ char *postgres = strf("%s/postgres", bindir()), *port = NULL;
        char tail[400];
        int status;

        for (int attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
                pg->port = tap_free_port();
                free(port);
                port = strf("%d", pg->port);
                if (!postgres || !port)
                        return -ENOMEM;
                char *argv[] = { postgres,
                                 "-D",
                                 pg->data,
                                 "-p",
                                 port,
                                 "-c",
                                 "listen_addresses=127.0.0.1",
                                 "-c",
                                 tap_strf("unix_socket_directories=%s", pg->dir),
                                 "-c",
                                 "fsync=off",
                                 "-c",
                                 "synchronous_commit=off",
                                 "-c",
                                 "full_page_writes=off",
                                 "-c",
                                 "max_connections=40",
                                 "-c",
                                 "shared_buffers=16MB",
                                 "-c",
                                 "dynamic_shared_memory_type=mmap",
                                 "-c",
                                 "log_min_messages=warning",
                                 NULL };
                int r = spawn(argv, ra, pg->log, true, &pg->pid, err);

                free(argv[8]);
                if (r < 0)
                        return r;
                for (int waited = 0;; waited += 5) {
                        if (is_ready(pg))
                                return 0;
                        if (waitpid(pg->pid, &status, WNOHANG) == pg->pid) {
                                pg->pid = 0;
                                break;
                        }
                        if (waited >= START_TIMEOUT_MS) {
                                stop(pg);
                                log_tail(pg->log, tail, sizeof(tail));
                                return vg_error_set(err, -ETIMEDOUT,
                                                    "PostgreSQL in %s was not ready after %d ms: "
                                                    "%s",
                                                    pg->dir, START_TIMEOUT_MS, tail);
                        }
                        usleep(5 * 1000);
                }
                log_tail(pg->log, tail, sizeof(tail));
                /* Someone took the port between tap_free_port() and the bind: another. */
                if (!strstr(tail, "could not bind") && !strstr(tail, "already in use"))
                        return vg_error_set(err, -EIO, "PostgreSQL in %s exited at start: %s",
                                            pg->dir, tail);
        }
        return vg_error_set(err, -EADDRINUSE, "PostgreSQL found no free port in %d attempts",
                            PORT_ATTEMPTS);
}

int vg_pg_start(struct vg_pg **out, struct vg_error *err)
{
        _cleanup_free_ char *postgres = strf("%s/postgres", bindir()), *tmpl = NULL;
        struct vg_pg *pg;
        struct runas ra;
        int r;

        *out = NULL;
        if (!postgres)
                return -ENOMEM;
        if (access(postgres, X_OK) < 0)
                return vg_error_set(err, -ENOENT,
                                    "PostgreSQL 15 is not installed (no %s; install the Debian "
                                    "package postgresql-15, or set VIGIL_PG_BINDIR)",
                                    postgres);
        r = runas_get(&ra, err);
        if (r < 0)
                return r;
        r = template_ensure(&ra, &tmpl, err);
        if (r < 0)
                return r;

        pg = calloc(1, sizeof(*pg));
        if (!pg)
                return -ENOMEM;
        pg->owner = getpid();
        pg->dir = strf("%s/vigil-pg-XXXXXX", tmp_base(&ra));
        if (!pg->dir || !mkdtemp(pg->dir)) {
                r = vg_error_set(err, -errno, "cannot create a directory for PostgreSQL: %s",
                                 strerror(errno));
                free(pg->dir);
                free(pg);
                return r;
        }
        pg->next = running;
        running = pg;
        static bool registered;
        if (!registered) {
                atexit(stop_all);
                registered = true;
        }
        pg->data = strf("%s/data", pg->dir);
        pg->log = strf("%s/postgres.log", pg->dir);
        if (!pg->data || !pg->log) {
                vg_pg_free(pg);
                return -ENOMEM;
        }
        r = give(&ra, pg->dir);
        if (r < 0) {
                vg_pg_free(pg);
                return vg_error_set(err, r, "cannot chown %s: %s", pg->dir, strerror(-r));
        }
        /* cp -a keeps the owner ("nobody") and the 0700 that postgres insists on. */
        char *cp[] = { "/bin/cp", "-a", tmpl, pg->data, NULL };
        struct runas self = { 0 };
        r = run(cp, &self, NULL, err);
        if (r == 0)
                r = start_server(pg, &ra, err);
        if (r < 0) {
                vg_pg_free(pg);
                return r;
        }
        pg->url = strf("postgresql://" SUPERUSER ":" PASSWORD "@127.0.0.1:%d/postgres", pg->port);
        if (!pg->url) {
                vg_pg_free(pg);
                return -ENOMEM;
        }
        *out = pg;
        return 0;
}

const char *vg_pg_url(const struct vg_pg *pg)
{
        return pg->url;
}

int vg_pg_port(const struct vg_pg *pg)
{
        return pg->port;
}

const char *vg_pg_user(const struct vg_pg *pg)
{
        (void)pg;
        return SUPERUSER;
}

const char *vg_pg_password(const struct vg_pg *pg)
{
        (void)pg;
        return PASSWORD;
}

const char *vg_pg_log(const struct vg_pg *pg)
{
        return pg->log;
}

char *vg_pg_db_url(const struct vg_pg *pg, const char *name)
{
        return strf("postgresql://" SUPERUSER ":" PASSWORD "@127.0.0.1:%d/%s", pg->port, name);
}

int vg_pg_create_db(struct vg_pg *pg, const char *name, char **url, struct vg_error *err)
{
        _cleanup_free_ char *createdb = strf("%s/createdb", bindir()), *port = NULL;
        _cleanup_free_ char *out = NULL;
        int status;

        *url = NULL;
        for (const char *p = name; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '_')
                        return vg_error_set(err, -EINVAL,
                                            "database name \"%s\": only letters, "
                                            "digits and '_' please",
                                            name);
        port = strf("%d", pg->port);
        if (!createdb || !port)
                return -ENOMEM;
        /* Over the unix socket, which trusts: no password in any process list. */
        char *argv[] = { createdb, "-h", pg->dir, "-p", port, "-U", SUPERUSER, (char *)name, NULL };
        status = tap_run(argv, &out);
        if (status != 0)
                return vg_error_set(err, -EIO, "createdb %s failed (status %d): %s", name, status,
                                    out ? out : "");
        *url = vg_pg_db_url(pg, name);
        return *url ? 0 : -ENOMEM;
}
