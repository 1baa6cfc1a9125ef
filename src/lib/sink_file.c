/* vigil: the file sink of the outbox: integrity events as JSON lines, each batch written with one
 * write and made durable with fdatasync() before it is confirmed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "outbox.h"

struct file_sink {
        struct vg_sink base;
        char *path;
        unsigned mode;
        int fd;
        char *buf;
        size_t cap;
};

static int file_open(struct file_sink *f, struct vg_error *err)
{
        if (f->fd >= 0)
                return 0;
        f->fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, f->mode);
        if (f->fd < 0)
                return vg_error_set(err, -errno, "cannot open %s: %s", f->path, strerror(errno));
        return 0;
}

static void file_deliver(struct vg_sink *s, const struct vg_outbox_record *recs, size_t n)
{
        struct file_sink *f = (struct file_sink *)s;
        struct vg_error err = { 0 };
        size_t len = 0, off = 0;
        struct stat sb;

        for (size_t i = 0; i < n; i++)
                len += recs[i].body_len + 1;
        if (len > f->cap) {
                char *b = realloc(f->buf, len);
                if (!b) {
                        vg_error_set(&err, -ENOMEM, "out of memory");
                        vg_sink_done(s, 0, &err);
                        return;
                }
                f->buf = b;
                f->cap = len;
        }
        for (size_t i = 0; i < n; i++) {
                memcpy(f->buf + off, recs[i].body, recs[i].body_len);
                off += recs[i].body_len;
                f->buf[off++] = '\n';
        }
        if (file_open(f, &err) < 0) {
                vg_sink_done(s, 0, &err);
                return;
        }
        /* the file may have been rotated away (logrotate's create mode): follow the path */
        struct stat sp;
        if (stat(f->path, &sp) < 0 || fstat(f->fd, &sb) < 0 || sp.st_ino != sb.st_ino ||
            sp.st_dev != sb.st_dev) {
                close(f->fd);
                f->fd = -1;
                if (file_open(f, &err) < 0 || fstat(f->fd, &sb) < 0) {
                        if (!err.code)
                                vg_error_set(&err, -errno, "cannot stat %s: %s", f->path,
                                             strerror(errno));
                        vg_sink_done(s, 0, &err);
                        return;
                }
        }
        off_t before = sb.st_size;
        size_t done = 0;
        while (done < len) {
                ssize_t w = write(f->fd, f->buf + done, len - done);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        vg_error_set(&err, w < 0 ? -errno : -EIO, "cannot write %s: %s", f->path,
                                     w < 0 ? strerror(errno) : "no progress");
                        break;
                }
                done += (size_t)w;
        }
        if (!err.code && fdatasync(f->fd) < 0)
                vg_error_set(&err, -errno, "cannot fdatasync %s: %s", f->path, strerror(errno));
        if (err.code) {
                /* leave whole lines only: the batch is written again on the next attempt */
                if (ftruncate(f->fd, before) < 0) {
                        close(f->fd);
                        f->fd = -1;
                }
                vg_sink_done(s, 0, &err);
                return;
        }
        vg_sink_done(s, n, NULL);
}

static void file_free(struct vg_sink *s)
{
        struct file_sink *f = (struct file_sink *)s;

        if (f->fd >= 0)
                close(f->fd);
        free(f->buf);
        free(f->path);
        free(s->name);
        free(f);
}

static const struct vg_sink_ops file_ops = {
        .kind = "file",
        .deliver = file_deliver,
        .free = file_free,
};

int vg_sink_file_new(const struct vg_sink_file_config *cfg, struct vg_sink **out,
                     struct vg_error *err)
{
        struct file_sink *f = calloc(1, sizeof(*f));

        if (!f)
                return vg_error_set(err, -ENOMEM, "out of memory");
        f->base.ops = &file_ops;
        f->fd = -1;
        f->mode = cfg && cfg->mode ? cfg->mode : 0640;
        f->base.name = strdup(cfg && cfg->name ? cfg->name : "file");
        f->path = strdup(cfg && cfg->path ? cfg->path : "/var/lib/vigil/events.jsonl");
        if (!f->base.name || !f->path) {
                file_free(&f->base);
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        *out = &f->base;
        return 0;
}
