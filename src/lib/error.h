/* vigil: error reporting. Functions return 0 or a negative errno; those whose failure a user
 * must understand also fill a struct vg_error with one sentence saying what was wrong where. */
#pragma once

#include <stdarg.h>

struct vg_error {
        int code;      /* negative errno, 0 when no error was recorded */
        char msg[512]; /* "FILE:LINE: expected X, found Y" or "peer 127.0.0.1:8890: ..." */
};

/* Record an error (err may be NULL) and return code, so callers can
 * `return vg_error_set(err, -EINVAL, "...")`. code must be negative. */
int vg_error_set(struct vg_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int vg_error_setv(struct vg_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Prepend context ("while reading /etc/vigil/agent.conf: ") to an error already recorded. */
void vg_error_prefix(struct vg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The message, or strerror(-code) if none was recorded. Never NULL. */
const char *vg_error_str(const struct vg_error *err);
