/* vigil: error records carrying one user-facing sentence, and secret wiping. */
#include "error.h"
#include "cleanup.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

int vg_error_setv(struct vg_error *err, int code, const char *fmt, va_list ap)
{
        if (err) {
                err->code = code;
                vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        }
        return code;
}

int vg_error_set(struct vg_error *err, int code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vg_error_setv(err, code, fmt, ap);
        va_end(ap);
        return code;
}

void vg_error_prefix(struct vg_error *err, const char *fmt, ...)
{
        char prefix[256], old[sizeof(err->msg)];
        va_list ap;

        if (!err)
                return;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof(old));
        size_t n = strlen(prefix);
        if (n >= sizeof(err->msg))
                n = sizeof(err->msg) - 1;
        memcpy(err->msg, prefix, n);
        /* The message may lose its tail; the prefix (where) and the start (what) matter most. */
        size_t rest = strnlen(old, sizeof(old) - 1);
        if (rest > sizeof(err->msg) - 1 - n)
                rest = sizeof(err->msg) - 1 - n;
        memcpy(err->msg + n, old, rest);
        err->msg[n + rest] = '\0';
}

const char *vg_error_str(const struct vg_error *err)
{
        if (!err)
                return "unknown error";
        if (err->msg[0])
                return err->msg;
        return err->code ? strerror(-err->code) : "no error";
}

void vg_secret_free(struct vg_secret *s)
{
        if (s->p) {
                OPENSSL_cleanse(s->p, s->len);
                free(s->p);
        }
        s->p = NULL;
        s->len = 0;
}
