/* vigil: the shared life cycle of the daemons: command line, configuration, logging, detaching
 * with a readiness pipe, sd_notify, pid file, and a stop on SIGTERM/SIGINT. */
#include "daemon.h"
#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct vg_daemon {
        const struct vg_daemon_info *info;
        struct vg_config *cfg;
        struct event_base *base;
        struct event *sig_term, *sig_int, *sig_hup;
        struct vg_log_config log;
        char *pid_file;
        bool foreground;
        bool pid_file_written;
        int ready_fd; /* background mode: the pipe the waiting parent reads; -1 otherwise */
        int status;
};

enum {
        OPT_LOG_JSON = 0x100,
        OPT_LOG_LEVEL,
        OPT_PID_FILE,
        OPT_CHECK_CONFIG,
        OPT_SHOW_CONFIG,
        OPT_VERSION,
};

static const struct option long_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "foreground", no_argument, NULL, 'f' },
        { "log-json", no_argument, NULL, OPT_LOG_JSON },
        { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
        { "pid-file", required_argument, NULL, OPT_PID_FILE },
        { "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
        { "show-config", no_argument, NULL, OPT_SHOW_CONFIG },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        {},
};

static const char *type_name(enum vg_config_type t)
{
        switch (t) {
        case VG_CONFIG_STRING:
                return "string";
        case VG_CONFIG_PATH:
                return "path";
        case VG_CONFIG_INTEGER:
                return "integer";
        case VG_CONFIG_BOOLEAN:
                return "boolean";
        case VG_CONFIG_STRING_LIST:
                return "list";
        }
        return "?";
}

static void usage(const struct vg_daemon_info *info, FILE *out)
{
        const struct vg_config_schema *s = info->schema;
        char env[64];
        size_t i;

        /* The environment prefix is the component upper-cased, '-' read as '_'. */
        for (i = 0; s->component[i] && i + 1 < sizeof(env); i++)
                env[i] = s->component[i] == '-' ? '_'
                         : (s->component[i] >= 'a' && s->component[i] <= 'z')
                             ? (char)(s->component[i] - 'a' + 'A')
                             : s->component[i];
        env[i] = '\0';

        fprintf(out,
                "Usage: %s [-c FILE] [-f] [--log-json] [--log-level LEVEL] [--pid-file FILE]\n"
                "       %s --check-config | --show-config | --help | --version\n\n%s\n\n"
                "Options:\n"
                "  -c, --config FILE    read FILE instead of %s/%s.conf and its .conf.d/\n"
                "  -f, --foreground     stay in the foreground and log to stderr\n"
                "      --log-json       log lines as JSON objects\n"
                "      --log-level L    error, warning, notice, info (default) or debug\n"
                "      --pid-file FILE  write the PID to FILE once ready\n"
                "      --check-config   check the configuration and exit\n"
                "      --show-config    print the effective configuration and its sources\n"
                "  -h, --help           this text\n"
                "      --version        print the version\n\n"
                "Configuration ([%s] in %s.conf; each also as VIGIL_%s_<OPTION>):\n",
                info->name, info->name, info->summary, VIGIL_SYSCONFDIR, s->component, s->section,
                s->component, env);
        for (const struct vg_config_option *o = s->options; o->name; o++)
                fprintf(out, "  %-24s %-8s %s%s%s%s\n", o->name, type_name(o->type),
                        o->help ? o->help : "", o->def ? " [" : "", o->def ? o->def : "",
                        o->def ? "]" : "");
        fprintf(out, "\nSee %s(8).\n", info->name);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
        struct vg_daemon *d = arg;

        (void)what;
        vg_notice(NULL, "received %s, stopping", strsignal((int)sig));
        event_base_loopbreak(d->base);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
        (void)sig, (void)what, (void)arg;
        vg_notice(NULL, "SIGHUP ignored: restart the service to apply configuration changes");
}

/* Background mode: fork; the parent waits on a pipe for the child's readiness (one byte) and
 * exits 0, or, if the pipe closes first, exits with the child's status. Returns in the child
 * only (or on error in the original process). */
static int detach(struct vg_daemon *d)
{
        int fds[2], status;
        pid_t pid;
        char byte;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        fflush(NULL);
        pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(fds[0]);
                close(fds[1]);
                return r;
        }
        if (pid > 0) {
                close(fds[1]);
                ssize_t n;
                do
                        n = read(fds[0], &byte, 1);
                while (n < 0 && errno == EINTR);
                if (n == 1)
                        _exit(0);
                /* The child died or exited before it was ready: report its status. */
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                        ;
                _exit(WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1);
        }
        close(fds[0]);
        d->ready_fd = fds[1];
        if (setsid() < 0)
                return -errno;
        /* stdin is never read; stdout/stderr stay until ready so startup errors are seen. */
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
                dup2(null, STDIN_FILENO);
                close(null);
        }
        return 0;
}

int vg_daemon_init(const struct vg_daemon_info *info, int argc, char **argv, struct vg_daemon **out)
{
        _cleanup_(vg_daemon_freep) struct vg_daemon *d = NULL;
        struct vg_config_load_opts load = { 0 };
        struct vg_error err = { 0 };
        bool check_only = false, show = false;
        int c, r;

        *out = NULL;
        d = calloc(1, sizeof(*d));
        if (!d)
                return 1;
        d->info = info;
        d->ready_fd = -1;
        d->log = (struct vg_log_config){ .component = info->name, .level = VG_LOG_INFO };

        optind = 1;
        while ((c = getopt_long(argc, argv, "c:fh", long_options, NULL)) != -1) {
                switch (c) {
                case 'c':
                        load.file = optarg;
                        break;
                case 'f':
                        d->foreground = true;
                        break;
                case OPT_LOG_JSON:
                        d->log.json = true;
                        break;
                case OPT_LOG_LEVEL:
                        if (vg_log_level_from_string(optarg, &d->log.level) < 0) {
                                fprintf(stderr,
                                        "%s: --log-level: expected error, warning, notice, info "
                                        "or debug, found '%s'\n",
                                        info->name, optarg);
                                return 2;
                        }
                        break;
                case OPT_PID_FILE:
                        if (optarg[0] != '/') {
                                fprintf(stderr,
                                        "%s: --pid-file: expected an absolute path, found "
                                        "'%s'\n",
                                        info->name, optarg);
                                return 2;
                        }
                        d->pid_file = strdup(optarg);
                        break;
                case OPT_CHECK_CONFIG:
                        check_only = true;
                        break;
                case OPT_SHOW_CONFIG:
                        show = true;
                        break;
                case 'h':
                        usage(info, stdout);
                        return 0;
                case OPT_VERSION:
                        printf("%s %s\n", info->name, VIGIL_VERSION);
                        return 0;
                default:
                        fprintf(stderr, "Try '%s --help'.\n", info->name);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "%s: unexpected argument '%s'\nTry '%s --help'.\n", info->name,
                        argv[optind], info->name);
                return 2;
        }

        vg_log_setup(&d->log);
        r = vg_config_load(info->schema, &load, &d->cfg, &err);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", info->name, vg_error_str(&err));
                return 1;
        }
        if (check_only) {
                printf("%s: configuration OK\n", info->name);
                return 0;
        }
        if (show)
                return vg_config_dump(d->cfg, stdout) < 0 ? 1 : 0;

        if (!d->foreground) {
                r = detach(d);
                if (r < 0) {
                        fprintf(stderr, "%s: cannot detach: %s\n", info->name, strerror(-r));
                        return 1;
                }
        }

        /* A peer that goes away mid-write must not kill the daemon; the write fails instead. */
        signal(SIGPIPE, SIG_IGN);
        d->base = event_base_new();
        if (!d->base) {
                fprintf(stderr, "%s: cannot create the event loop\n", info->name);
                return 1;
        }
        d->sig_term = evsignal_new(d->base, SIGTERM, on_stop_signal, d);
        d->sig_int = evsignal_new(d->base, SIGINT, on_stop_signal, d);
        d->sig_hup = evsignal_new(d->base, SIGHUP, on_hup, d);
        if (!d->sig_term || !d->sig_int || !d->sig_hup || event_add(d->sig_term, NULL) < 0 ||
            event_add(d->sig_int, NULL) < 0 || event_add(d->sig_hup, NULL) < 0) {
                fprintf(stderr, "%s: cannot install signal handlers\n", info->name);
                return 1;
        }
        *out = TAKE_PTR(d);
        return 0;
}

struct event_base *vg_daemon_base(const struct vg_daemon *d)
{
        return d->base;
}

const struct vg_config *vg_daemon_config(const struct vg_daemon *d)
{
        return d->cfg;
}

struct vg_config *vg_daemon_config_mut(struct vg_daemon *d)
{
        return d->cfg;
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET ('@' = abstract namespace). */
static void notify_systemd(const char *state)
{
        const char *path = getenv("NOTIFY_SOCKET");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len;

        if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sa.sun_path))
                return;
        len = strlen(path);
        memcpy(sa.sun_path, path, len);
        if (sa.sun_path[0] == '@')
                sa.sun_path[0] = '\0';
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return;
        if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
                vg_warn(VG_F("socket", path), "cannot notify systemd: %s", strerror(errno));
}

static int write_pid_file(const char *path)
{
        char tmp[4096], pid[32];
        int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());

        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        if (write(fd, pid, (size_t)n) != n || rename(tmp, path) < 0) {
                int r = -errno;
                unlink(tmp);
                return r ? r : -EIO;
        }
        return 0;
}

int vg_daemon_ready(struct vg_daemon *d)
{
        if (d->pid_file) {
                int r = write_pid_file(d->pid_file);
                if (r < 0) {
                        vg_err(VG_F("file", d->pid_file), "cannot write the pid file: %s",
                               strerror(-r));
                        return r;
                }
                d->pid_file_written = true;
        }
        vg_info(NULL, "ready (pid %d)", (int)getpid());
        if (d->ready_fd >= 0) {
                /* From now on nobody watches the terminal: log to syslog, drop stdout/stderr. */
                struct vg_log_config syslog_cfg = d->log;
                syslog_cfg.syslog = true;
                vg_log_setup(&syslog_cfg);
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (null >= 0) {
                        dup2(null, STDOUT_FILENO);
                        dup2(null, STDERR_FILENO);
                        close(null);
                }
                char byte = 1;
                if (write(d->ready_fd, &byte, 1) != 1)
                        vg_warn(NULL, "cannot release the waiting parent: %s", strerror(errno));
                close(d->ready_fd);
                d->ready_fd = -1;
        }
        notify_systemd("READY=1");
        return 0;
}

int vg_daemon_run(struct vg_daemon *d)
{
        if (event_base_dispatch(d->base) < 0) {
                vg_err(NULL, "event loop failed");
                return 1;
        }
        notify_systemd("STOPPING=1");
        vg_info(NULL, "stopped");
        return d->status;
}

void vg_daemon_stop(struct vg_daemon *d, int status)
{
        d->status = status;
        event_base_loopbreak(d->base);
}

void vg_daemon_free(struct vg_daemon *d)
{
        if (!d)
                return;
        if (d->pid_file_written)
                unlink(d->pid_file);
        if (d->ready_fd >= 0)
                close(d->ready_fd);
        if (d->sig_term)
                event_free(d->sig_term);
        if (d->sig_int)
                event_free(d->sig_int);
        if (d->sig_hup)
                event_free(d->sig_hup);
        if (d->base)
                event_base_free(d->base);
        vg_config_free(d->cfg);
        free(d->pid_file);
        free(d);
}
