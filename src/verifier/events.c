/* vigil-verifier: structured attestation failures (Keylime's failure.Event): an event id such as
 * "ima.file_not_found", the file, what was expected and found, a severity and recoverability. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "verifier.h"

static const char *const severity_names[] = {
        [VG_SEV_INFO] = "info",           [VG_SEV_NOTICE] = "notice",
        [VG_SEV_WARNING] = "warning",     [VG_SEV_ERROR] = "error",
        [VG_SEV_CRITICAL] = "critical",   [VG_SEV_ALERT] = "alert",
        [VG_SEV_EMERGENCY] = "emergency",
};

const char *vg_cv_severity_str(enum vg_cv_severity s)
{
        return (unsigned)s < VG_ARRAY_SIZE(severity_names) ? severity_names[s] : "emergency";
}

/* vigil's graded default (Keylime puts everything at "emergency"): evidence that cannot be
 * trusted is critical, a runtime policy violation is an error, lag is a warning. */
static enum vg_cv_severity severity_for(const char *id, bool quote_level, bool recoverable)
{
        if (!recoverable)
                return VG_SEV_EMERGENCY;
        if (quote_level)
                return VG_SEV_CRITICAL;
        if (strstr(id, "not_reachable") || strstr(id, "quote_progress"))
                return VG_SEV_WARNING;
        return VG_SEV_ERROR;
}

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

int vg_cv_failure_add(struct vg_cv_failure *f, const char *id, bool quote_level, bool recoverable,
                      const char *file, const char *expected, const char *found, uint64_t entry,
                      const char *fmt, ...)
{
        struct vg_cv_event *e;
        va_list ap;

        if (f->n == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 8;
                struct vg_cv_event *p = realloc(f->ev, cap * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                f->ev = p;
                f->cap = cap;
        }
        e = &f->ev[f->n];
        memset(e, 0, sizeof(*e));
        snprintf(e->id, sizeof(e->id), "%s", id);
        e->file = dup_or_null(file);
        e->expected = dup_or_null(expected);
        e->found = dup_or_null(found);
        e->entry = entry;
        e->quote_level = quote_level;
        e->recoverable = recoverable;
        e->severity = severity_for(id, quote_level, recoverable);
        va_start(ap, fmt);
        if (vasprintf(&e->message, fmt, ap) < 0)
                e->message = NULL;
        va_end(ap);
        f->n++;
        return 0;
}

void vg_cv_failure_clear(struct vg_cv_failure *f)
{
        for (size_t i = 0; i < f->n; i++) {
                free(f->ev[i].file);
                free(f->ev[i].expected);
                free(f->ev[i].found);
                free(f->ev[i].message);
        }
        free(f->ev);
        memset(f, 0, sizeof(*f));
}

enum vg_cv_severity vg_cv_failure_severity(const struct vg_cv_failure *f)
{
        enum vg_cv_severity s = VG_SEV_INFO;

        for (size_t i = 0; i < f->n; i++)
                if (f->ev[i].severity > s)
                        s = f->ev[i].severity;
        return s;
}

bool vg_cv_failure_quote_level(const struct vg_cv_failure *f)
{
        for (size_t i = 0; i < f->n; i++)
                if (f->ev[i].quote_level)
                        return true;
        return false;
}

void vg_cv_event_log(const char *agent, const struct vg_cv_event *e)
{
        char entry[24] = "";

        if (e->entry != UINT64_MAX)
                snprintf(entry, sizeof(entry), "%llu", (unsigned long long)e->entry);
        vg_log(e->severity >= VG_SEV_ERROR ? VG_LOG_ERR : VG_LOG_WARNING,
               VG_F("agent", agent, "event", e->id, "file", e->file, "entry",
                    entry[0] ? entry : NULL, "expected", e->expected, "found", e->found, "severity",
                    vg_cv_severity_str(e->severity), "recoverable", e->recoverable ? "yes" : "no"),
               "%s", e->message ? e->message : e->id);
}

json_t *vg_cv_event_json(const struct vg_cv_event *e)
{
        json_t *ctx = json_object();

        json_object_set_new(ctx, "message", json_string(e->message ? e->message : e->id));
        if (e->file)
                json_object_set_new(ctx, "file", json_string(e->file));
        if (e->expected)
                json_object_set_new(ctx, "expected", json_string(e->expected));
        if (e->found)
                json_object_set_new(ctx, "found", json_string(e->found));
        if (e->entry != UINT64_MAX)
                json_object_set_new(ctx, "entry", json_integer((json_int_t)e->entry));
        json_object_set_new(ctx, "severity", json_string(vg_cv_severity_str(e->severity)));
        json_object_set_new(ctx, "recoverable", json_boolean(e->recoverable));
        return json_pack("{s:s, s:o}", "type", e->id, "context", ctx);
}
