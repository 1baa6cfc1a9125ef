/* vigil: logging. One line per event, plain ("LEVEL component: agent=X file=Y: message") or
 * JSON lines; every line names the object it is about through key/value fields. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

enum vg_log_level {
        VG_LOG_ERR = 3, /* syslog numbering, so journald priorities line up */
        VG_LOG_WARNING = 4,
        VG_LOG_NOTICE = 5,
        VG_LOG_INFO = 6,
        VG_LOG_DEBUG = 7,
};

struct vg_log_config {
        const char *component;   /* "vigil-agent"; copied */
        enum vg_log_level level; /* lines above this level are dropped */
        bool json;               /* JSON lines instead of plain text */
        bool syslog;             /* to syslog(3) (a detached daemon) instead of out */
        FILE *out;               /* NULL means stderr */
};

/* Logging is the one piece of process-wide state: main() configures it once, before any
 * other thread or event loop exists. Until then lines go to stderr at INFO. */
void vg_log_setup(const struct vg_log_config *cfg);

/* Parse "error|warning|notice|info|debug" (also "warn", "err"); returns -EINVAL otherwise. */
int vg_log_level_from_string(const char *s, enum vg_log_level *out);
const char *vg_log_level_to_string(enum vg_log_level level);
bool vg_log_enabled(enum vg_log_level level);

/* fields: NULL, or a NULL-terminated list of key, value, key, value... strings; a NULL value
 * skips its pair. Build it with VG_F("agent", uuid, "file", path). */
void vg_log(enum vg_log_level level, const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vg_logv(enum vg_log_level level, const char *const *fields, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define VG_F(...) ((const char *const[]){ __VA_ARGS__, NULL })

#define vg_err(fields, ...)    vg_log(VG_LOG_ERR, fields, __VA_ARGS__)
#define vg_warn(fields, ...)   vg_log(VG_LOG_WARNING, fields, __VA_ARGS__)
#define vg_notice(fields, ...) vg_log(VG_LOG_NOTICE, fields, __VA_ARGS__)
#define vg_info(fields, ...)   vg_log(VG_LOG_INFO, fields, __VA_ARGS__)
#define vg_debug(fields, ...)                                                                      \
        do {                                                                                       \
                if (vg_log_enabled(VG_LOG_DEBUG))                                                  \
                        vg_log(VG_LOG_DEBUG, fields, __VA_ARGS__);                                 \
        } while (0)
