/* vigil: plain and JSON-lines logging with object fields (agent UUID, file, offset, peer). */
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static struct {
        char component[64];
        enum vg_log_level level;
        bool json;
        bool syslog;
        FILE *out;
} log_state = { .component = "vigil", .level = VG_LOG_INFO };

static const char *const level_names[] = {
        [VG_LOG_ERR] = "error", [VG_LOG_WARNING] = "warning", [VG_LOG_NOTICE] = "notice",
        [VG_LOG_INFO] = "info", [VG_LOG_DEBUG] = "debug",
};

void vg_log_setup(const struct vg_log_config *cfg)
{
        snprintf(log_state.component, sizeof(log_state.component), "%s",
                 cfg->component ? cfg->component : "vigil");
        log_state.level = cfg->level;
        log_state.json = cfg->json;
        log_state.out = cfg->out;
        if (log_state.syslog && !cfg->syslog)
                closelog();
        log_state.syslog = cfg->syslog;
        /* openlog keeps the pointer: log_state.component lives as long as the process. */
        if (cfg->syslog)
                openlog(log_state.component, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

int vg_log_level_from_string(const char *s, enum vg_log_level *out)
{
        static const struct {
                const char *name;
                enum vg_log_level level;
        } names[] = {
                { "error", VG_LOG_ERR },       { "err", VG_LOG_ERR },
                { "warning", VG_LOG_WARNING }, { "warn", VG_LOG_WARNING },
                { "notice", VG_LOG_NOTICE },   { "info", VG_LOG_INFO },
                { "debug", VG_LOG_DEBUG },
        };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (strcasecmp(s, names[i].name) == 0) {
                        *out = names[i].level;
                        return 0;
                }
        }
        return -EINVAL;
}

const char *vg_log_level_to_string(enum vg_log_level level)
{
        if (level < VG_LOG_ERR || level > VG_LOG_DEBUG)
                return "unknown";
        return level_names[level];
}

bool vg_log_enabled(enum vg_log_level level)
{
        return level <= log_state.level;
}

static void format_time(char *out, size_t len)
{
        struct timeval tv;
        struct tm tm;

        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + n, len - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

/* A JSON string from bytes that may not be UTF-8 (file names from an IMA log, say): invalid
 * bytes become '?' rather than losing the whole line. */
static json_t *json_string_lossy(const char *s)
{
        json_t *j = json_string(s);

        if (j)
                return j;
        char *copy = strdup(s);
        if (!copy)
                return json_string("");
        for (char *c = copy; *c; c++)
                if ((unsigned char)*c >= 0x80)
                        *c = '?';
        j = json_string(copy);
        free(copy);
        return j;
}

static void emit_json(FILE *out, const char *ts, enum vg_log_level level, const char *const *fields,
                      const char *msg)
{
        json_t *o = json_object();
        char *line;

        json_object_set_new(o, "ts", json_string(ts));
        json_object_set_new(o, "level", json_string(level_names[level]));
        json_object_set_new(o, "component", json_string_lossy(log_state.component));
        json_object_set_new(o, "pid", json_integer(getpid()));
        for (size_t i = 0; fields && fields[i]; i += 2) {
                if (fields[i + 1])
                        json_object_set_new(o, fields[i], json_string_lossy(fields[i + 1]));
        }
        json_object_set_new(o, "msg", json_string_lossy(msg));
        line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (line) {
                fprintf(out, "%s\n", line);
                free(line);
        }
        json_decref(o);
}

void vg_logv(enum vg_log_level level, const char *const *fields, const char *fmt, va_list ap)
{
        FILE *out = log_state.out ? log_state.out : stderr;
        char msg[2048], ts[40];
        int saved_errno = errno;

        if (level < VG_LOG_ERR)
                level = VG_LOG_ERR;
        if (level > VG_LOG_DEBUG)
                level = VG_LOG_DEBUG;
        if (!vg_log_enabled(level))
                return;

        vsnprintf(msg, sizeof(msg), fmt, ap);
        format_time(ts, sizeof(ts));

        if (log_state.syslog) {
                char line[2560];
                size_t n = 0;
                for (size_t i = 0; fields && fields[i] && n < sizeof(line); i += 2) {
                        if (fields[i + 1])
                                n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s=%s",
                                                      n ? " " : "", fields[i], fields[i + 1]);
                }
                if (n < sizeof(line))
                        snprintf(line + n, sizeof(line) - n, "%s%s", n ? ": " : "", msg);
                syslog((int)level, "%s", line);
                errno = saved_errno;
                return;
        }

        flockfile(out);
        if (log_state.json) {
                emit_json(out, ts, level, fields, msg);
        } else {
                fprintf(out, "%s %s[%d] %s: ", ts, log_state.component, (int)getpid(),
                        level_names[level]);
                bool any = false;
                for (size_t i = 0; fields && fields[i]; i += 2) {
                        if (!fields[i + 1])
                                continue;
                        fprintf(out, "%s%s=%s", any ? " " : "", fields[i], fields[i + 1]);
                        any = true;
                }
                fprintf(out, "%s%s\n", any ? ": " : "", msg);
        }
        fflush(out);
        funlockfile(out);
        errno = saved_errno;
}

void vg_log(enum vg_log_level level, const char *const *fields, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vg_logv(level, fields, fmt, ap);
        va_end(ap);
}
