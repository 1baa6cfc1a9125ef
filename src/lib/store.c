/* vigil: the backend-neutral half of the store: database_url parsing, transaction state,
 * parameter bookkeeping, retries and schema migrations, on top of a backend's vg_store_ops. */
#include "store.h"
#include "store_backend.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef VIGIL_LOCALSTATEDIR
#define VIGIL_LOCALSTATEDIR "/var/lib/vigil"
#endif

#define DEFAULT_FILE "vigil.sqlite"
#define URL_FORMS                                                                                  \
        "expected \"sqlite\", \"sqlite:///relative/path\", \"sqlite:////absolute/path\", a "       \
        "file path, or \"postgresql://user:password@host/dbname\""

struct vg_store {
        const struct vg_store_ops *ops;
        void *conn;
        char *name;
        enum vg_store_backend backend;
        unsigned busy_timeout_ms;
        bool in_txn;
        bool closed;
        /* Statements still allocated: the struct lives on until the last is freed. */
        unsigned n_stmts;
};

struct vg_stmt {
        struct vg_store *store;
        void *impl;
        char *sql;
        int n_params;
        bool *bound;  /* [n_params], indexed by $N - 1 */
        bool started; /* stepped since the last reset */
        bool done;    /* the run finished */
        bool has_row; /* the last step returned a row */
        int n_cols;
        struct vg_error bind_err; /* the first bind failure, reported by the next step */
};

/* ---- database_url --------------------------------------------------------------------- */

void vg_store_url_clear(struct vg_store_url *u)
{
        free(u->target);
        free(u->display);
        *u = (struct vg_store_url){ 0 };
}

static int join_path(const char *dir, const char *rel, char **out)
{
        size_t n = strlen(dir);

        while (n > 1 && dir[n - 1] == '/')
                n--;
        if (asprintf(out, "%.*s/%s", (int)n, dir, rel) < 0) {
                *out = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* SQLAlchemy's pysqlite dialect reads "timeout" (seconds, a float) from the query string;
 * Keylime configurations may carry it. Anything else would be silently ignored, so refuse. */
static int parse_sqlite_query(const char *url, const char *q, unsigned *timeout_ms,
                              struct vg_error *err)
{
        _cleanup_free_ char *copy = strdup(q);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
                char *val = strchr(kv, '='), *end;

                if (val)
                        *val++ = '\0';
                if (strcmp(kv, "timeout") != 0)
                        return vg_error_set(err, -EINVAL,
                                            "database_url \"%s\": unsupported parameter \"%s\" "
                                            "(only \"timeout=SECONDS\" is understood)",
                                            url, kv);
                errno = 0;
                double sec = val ? strtod(val, &end) : 0;
                if (!val || end == val || *end || errno || !(sec >= 0) || sec > 86400)
                        return vg_error_set(err, -EINVAL,
                                            "database_url \"%s\": timeout must be a number of "
                                            "seconds between 0 and 86400, found \"%s\"",
                                            url, val ? val : "");
                *timeout_ms = (unsigned)(sec * 1000 + 0.5);
                /* 0 would mean "not given" and fall back to the default. */
                if (*timeout_ms == 0)
                        *timeout_ms = 1;
        }
        return 0;
}

static int parse_sqlite(const char *url, const char *rest, const struct vg_store_options *opts,
                        struct vg_store_url *out, struct vg_error *err)
{
        const char *dir = opts && opts->data_dir ? opts->data_dir : VIGIL_LOCALSTATEDIR;
        _cleanup_free_ char *path = NULL;
        const char *q;
        int r;

        /* SQLAlchemy: sqlite://<host>/<path>, where the host must be empty; an empty path
         * means an in-memory database. */
        if (strncmp(rest, "//", 2) != 0)
                return vg_error_set(err, -EINVAL, "database_url \"%s\": %s", url, URL_FORMS);
        rest += 2;
        if (*rest == '\0')
                return vg_error_set(err, -EINVAL,
                                    "database_url \"%s\" names an in-memory database, which "
                                    "would lose all state at exit; give a file: %s",
                                    url, URL_FORMS);
        if (*rest != '/')
                return vg_error_set(err, -EINVAL,
                                    "database_url \"%s\": SQLite URLs have no host part; %s", url,
                                    URL_FORMS);
        rest++;
        q = strchr(rest, '?');
        path = q ? strndup(rest, (size_t)(q - rest)) : strdup(rest);
        if (!path)
                return -ENOMEM;
        if (path[0] == '\0' || strcmp(path, "/") == 0)
                return vg_error_set(err, -EINVAL, "database_url \"%s\" has no file name; %s", url,
                                    URL_FORMS);
        if (strcmp(path, ":memory:") == 0)
                return vg_error_set(err, -EINVAL,
                                    "database_url \"%s\" names an in-memory database, which "
                                    "would lose all state at exit; give a file",
                                    url);
        if (q) {
                r = parse_sqlite_query(url, q + 1, &out->busy_timeout_ms, err);
                if (r < 0)
                        return r;
        }
        if (path[0] == '/')
                out->target = TAKE_PTR(path);
        else if (join_path(dir, path, &out->target) < 0)
                return -ENOMEM;
        return 0;
}

/* "postgresql://user:secret@host/db?password=x" -> "postgresql://user:***@host/db?password=***":
 * the name goes into logs and error messages. */
static char *redact_password(const char *url)
{
        const char *auth = strstr(url, "://") + 3, *end, *at = NULL, *colon, *p, *q;
        char *out = NULL;
        size_t size;
        FILE *f;

        end = auth + strcspn(auth, "/?");
        for (p = auth; p < end; p++)
                if (*p == '@')
                        at = p;
        colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        f = open_memstream(&out, &size);
        if (!f)
                return NULL;
        p = url;
        if (colon) {
                fwrite(url, 1, (size_t)(colon + 1 - url), f);
                fputs("***", f);
                p = at;
        }
        q = strchr(p, '?');
        fwrite(p, 1, q ? (size_t)(q - p) : strlen(p), f);
        /* libpq also takes the password as a query parameter. */
        for (p = q; p && *p;) {
                size_t len;

                fputc(*p++, f);
                len = strcspn(p, "&");
                if (strncmp(p, "password=", 9) == 0)
                        fputs("password=***", f);
                else
                        fwrite(p, 1, len, f);
                p += len;
        }
        if (fclose(f) != 0) {
                free(out);
                return NULL;
        }
        return out;
}

static bool is_known_scheme(const char *scheme)
{
        static const char *const known[] = { "sqlite", "postgresql", "postgres", "mysql",
                                             "mariadb" };

        for (size_t i = 0; i < VG_ARRAY_SIZE(known); i++)
                if (strcmp(scheme, known[i]) == 0)
                        return true;
        return false;
}

int vg_store_url_parse(const char *url, const struct vg_store_options *opts,
                       struct vg_store_url *out, struct vg_error *err)
{
        const char *dir = opts && opts->data_dir ? opts->data_dir : VIGIL_LOCALSTATEDIR;
        _cleanup_(vg_store_url_clear) struct vg_store_url u = { 0 };
        char scheme[32];
        size_t n = 0;
        int r;

        *out = (struct vg_store_url){ 0 };
        if (!url || !*url)
                return vg_error_set(err, -EINVAL, "database_url is empty; %s", URL_FORMS);

        if (strcmp(url, "sqlite") == 0) {
                /* Keylime: the component's default file in its work directory. */
                u.backend = VG_STORE_SQLITE;
                r = join_path(dir, opts && opts->default_file ? opts->default_file : DEFAULT_FILE,
                              &u.target);
                if (r < 0)
                        return r;
                goto done;
        }

        /* A scheme is letters followed by ':'; anything else is a file path. */
        while (n < sizeof(scheme) - 1 && (isalnum((unsigned char)url[n]) || url[n] == '+'))
                n++;
        bool is_url = n > 0 && url[n] == ':' && isalpha((unsigned char)url[0]);
        memcpy(scheme, url, n);
        scheme[n] = '\0';
        /* SQLAlchemy spells the Python driver after a '+': "postgresql+psycopg2". */
        char *plus = strchr(scheme, '+');
        if (plus)
                *plus = '\0';
        if (is_url && strcmp(scheme, "sqlite") != 0 && strcmp(scheme, "postgresql") != 0 &&
            strcmp(scheme, "postgres") != 0 && strncmp(url + n, "://", 3) != 0)
                is_url = false; /* "foo:bar.db" is a file name */

        if (strstr(url, "://") && (!is_url || !is_known_scheme(scheme))) {
                /* It may carry a password. */
                _cleanup_free_ char *shown = redact_password(url);

                return vg_error_set(err, -EINVAL, "database_url \"%s\": unknown scheme%s%s%s; %s",
                                    shown ? shown : "", is_url ? " \"" : "", is_url ? scheme : "",
                                    is_url ? "\"" : "", URL_FORMS);
        }
        if (!is_url) {
                u.backend = VG_STORE_SQLITE;
                if (url[0] == '/')
                        u.target = strdup(url);
                else if (join_path(dir, url, &u.target) < 0)
                        return -ENOMEM;
                if (!u.target)
                        return -ENOMEM;
        } else if (strcmp(scheme, "sqlite") == 0) {
                u.backend = VG_STORE_SQLITE;
                r = parse_sqlite(url, url + n + 1, opts, &u, err);
                if (r < 0)
                        return r;
        } else if (strcmp(scheme, "postgresql") == 0 || strcmp(scheme, "postgres") == 0) {
                if (strncmp(url + n, "://", 3) != 0)
                        return vg_error_set(err, -EINVAL, "database_url \"%s\": %s", url,
                                            URL_FORMS);
                u.backend = VG_STORE_POSTGRESQL;
                /* libpq wants "postgresql://" or "postgres://" without a driver suffix. */
                if (asprintf(&u.target, "%s%s", scheme, url + n) < 0)
                        return -ENOMEM;
                u.display = redact_password(u.target);
                if (!u.display)
                        return -ENOMEM;
        } else if (strcmp(scheme, "mysql") == 0 || strcmp(scheme, "mariadb") == 0) {
                return vg_error_set(err, -ENOTSUP,
                                    "database_url: MySQL/MariaDB is not supported by vigil; use "
                                    "SQLite (\"sqlite\") or PostgreSQL (\"postgresql://...\")");
        } else {
                return vg_error_set(err, -EINVAL, "database_url: %s", URL_FORMS);
        }
done:
        if (!u.display) {
                u.display = strdup(u.target);
                if (!u.display)
                        return -ENOMEM;
        }
        *out = u;
        u = (struct vg_store_url){ 0 };
        return 0;
}

/* ---- connections ---------------------------------------------------------------------- */

static void store_free(struct vg_store *s)
{
        free(s->name);
        free(s);
}

int vg_store_open(struct vg_store **out, const char *url, const struct vg_store_options *opts,
                  struct vg_error *err)
{
        _cleanup_(vg_store_url_clear) struct vg_store_url u = { 0 };
        struct vg_store_options o = { 0 };
        const struct vg_store_ops *ops;
        struct vg_store *s;
        void *conn = NULL;
        int r;

        *out = NULL;
        r = vg_store_url_parse(url, opts, &u, err);
        if (r < 0)
                return r;
        switch (u.backend) {
        case VG_STORE_SQLITE:
                ops = &vg_store_sqlite_ops;
                break;
        case VG_STORE_POSTGRESQL:
                ops = &vg_store_pg_ops;
                break;
        default:
                return vg_error_set(err, -ENOTSUP, "database %s: unknown backend", u.display);
        }
        /* Backends get the options complete: no NULL, no 0 meaning "default". */
        if (opts)
                o = *opts;
        if (u.busy_timeout_ms)
                o.busy_timeout_ms = u.busy_timeout_ms;
        else if (!o.busy_timeout_ms)
                o.busy_timeout_ms = VG_STORE_DEFAULT_BUSY_TIMEOUT_MS;
        r = ops->open(&u, &o, &conn, err);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s) {
                ops->close(conn);
                return -ENOMEM;
        }
        s->ops = ops;
        s->conn = conn;
        s->backend = u.backend;
        s->busy_timeout_ms = o.busy_timeout_ms;
        s->name = TAKE_PTR(u.display);
        *out = s;
        return 0;
}

void vg_store_close(struct vg_store *s)
{
        if (!s || s->closed)
                return;
        if (s->in_txn)
                s->ops->rollback(s->conn, NULL);
        /* A backend may keep the connection alive until leftover statements are finalized. */
        s->ops->close(s->conn);
        s->conn = NULL;
        s->closed = true;
        if (s->n_stmts == 0)
                store_free(s);
}

enum vg_store_backend vg_store_backend(const struct vg_store *s)
{
        return s->backend;
}

const char *vg_store_name(const struct vg_store *s)
{
        return s->name;
}

int vg_store_exec(struct vg_store *s, const char *sql, struct vg_error *err)
{
        return s->ops->exec(s->conn, sql, err);
}

int vg_store_check_integrity(struct vg_store *s, struct vg_error *err)
{
        return s->ops->check_integrity(s->conn, err);
}

/* ---- transactions --------------------------------------------------------------------- */

int vg_store_begin(struct vg_store *s, struct vg_error *err)
{
        int r;

        if (s->in_txn)
                return vg_error_set(err, -EINVAL,
                                    "database %s: a transaction is already open (transactions "
                                    "do not nest)",
                                    s->name);
        r = s->ops->begin(s->conn, err);
        if (r < 0)
                return r;
        s->in_txn = true;
        return 0;
}

int vg_store_commit(struct vg_store *s, struct vg_error *err)
{
        int r;

        if (!s->in_txn)
                return vg_error_set(err, -EINVAL, "database %s: commit without a transaction",
                                    s->name);
        r = s->ops->commit(s->conn, err);
        if (r < 0) {
                /* Deferred constraints or a full disk: nothing of it may stay half-applied. */
                s->ops->rollback(s->conn, NULL);
        }
        s->in_txn = false;
        return r;
}

int vg_store_rollback(struct vg_store *s, struct vg_error *err)
{
        if (!s->in_txn)
                return 0;
        s->in_txn = false;
        return s->ops->rollback(s->conn, err);
}

bool vg_store_in_transaction(const struct vg_store *s)
{
        return s->in_txn;
}

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void backoff(int attempt)
{
        struct timespec now, ts;
        long ms;

        /* 10, 20, 40 ... 640 ms, each plus up to half again, so that writers that collided
         * once do not collide again in lock-step. The clock's nanoseconds serve as the
         * jitter: good enough, and no generator state to keep. */
        clock_gettime(CLOCK_MONOTONIC, &now);
        ms = 10L << (attempt < 6 ? attempt : 6);
        ms += (long)((unsigned long)now.tv_nsec % (unsigned long)(ms / 2 + 1));
        ts.tv_sec = ms / 1000;
        ts.tv_nsec = (ms % 1000) * 1000000L;
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int vg_store_transact(struct vg_store *s, vg_store_txn_fn fn, void *userdata, struct vg_error *err)
{
        int64_t deadline = now_ms() + s->busy_timeout_ms;
        int r = -EBUSY, attempt;

        if (s->in_txn)
                return vg_error_set(err, -EINVAL,
                                    "database %s: a transaction is already open (transactions "
                                    "do not nest)",
                                    s->name);
        for (attempt = 0; attempt < VG_STORE_TRANSACT_ATTEMPTS; attempt++) {
                /* A begin that timed out has already waited the whole busy timeout; retries
                 * are for conflicts that fail fast, not for stretching that wait. */
                if (attempt > 0 && now_ms() >= deadline)
                        break;
                if (attempt > 0) {
                        vg_debug(VG_F("database", s->name), "busy, retrying transaction (%d)",
                                 attempt);
                        backoff(attempt - 1);
                }
                r = vg_store_begin(s, err);
                if (r == -EBUSY)
                        continue;
                if (r < 0)
                        return r;
                r = fn(s, userdata, err);
                if (r < 0) {
                        vg_store_rollback(s, NULL);
                        if (r == -EBUSY)
                                continue;
                        return r;
                }
                r = vg_store_commit(s, err);
                if (r != -EBUSY)
                        return r;
        }
        if (attempt > 1)
                vg_error_prefix(err, "gave up after %d attempts: ", attempt);
        return r;
}

/* ---- statements ----------------------------------------------------------------------- */

int vg_store_prepare(struct vg_store *s, const char *sql, struct vg_stmt **out,
                     struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r;

        *out = NULL;
        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        st->sql = strdup(sql);
        if (!st->sql)
                return -ENOMEM;
        r = s->ops->prepare(s->conn, sql, &st->impl, &st->n_params, err);
        if (r < 0)
                return r;
        /* Counted only now, so that vg_stmt_free() on a half-built statement stays cheap. */
        st->store = s;
        s->n_stmts++;
        st->bound = calloc((size_t)st->n_params + 1, sizeof(bool));
        if (!st->bound)
                return -ENOMEM;
        st->n_cols = s->ops->column_count(st->impl);
        *out = TAKE_PTR(st);
        return 0;
}

void vg_stmt_free(struct vg_stmt *st)
{
        struct vg_store *s;

        if (!st)
                return;
        s = st->store;
        /* impl is only ever set together with store. */
        if (st->impl)
                s->ops->finalize(st->impl);
        if (s && --s->n_stmts == 0 && s->closed)
                store_free(s);
        free(st->bound);
        free(st->sql);
        free(st);
}

void vg_store_sql_excerpt(const char *sql, char *buf, size_t size)
{
        const char *p;
        bool space = false;
        size_t n = 0;

        if (size < 4) {
                if (size)
                        buf[0] = '\0';
                return;
        }
        for (p = sql; *p; p++) {
                if (isspace((unsigned char)*p)) {
                        space = n > 0;
                        continue;
                }
                /* Keep room for "..." and the NUL. */
                if (n + (space ? 2 : 1) > size - 4)
                        break;
                if (space)
                        buf[n++] = ' ';
                space = false;
                buf[n++] = *p;
        }
        if (*p) {
                memcpy(buf + n, "...", 3);
                n += 3;
        }
        buf[n] = '\0';
}

static int stmt_misuse(struct vg_stmt *st, struct vg_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int stmt_misuse(struct vg_stmt *st, struct vg_error *err, int code, const char *fmt, ...)
{
        char what[256], sql[96];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        vg_store_sql_excerpt(st->sql, sql, sizeof(sql));
        return vg_error_set(err, code, "database %s: statement \"%s\": %s", st->store->name, sql,
                            what);
}

void vg_stmt_reset(struct vg_stmt *st)
{
        if (st->started && !st->store->closed)
                st->store->ops->reset(st->impl);
        st->started = st->done = st->has_row = false;
}

/* Common to every bind: range check, restart a used statement, remember the first error. */
static int bind_prologue(struct vg_stmt *st, int idx)
{
        if (idx < 1 || idx > st->n_params) {
                if (st->bind_err.code == 0 && st->n_params == 0)
                        stmt_misuse(st, &st->bind_err, -ERANGE,
                                    "cannot bind $%d: the statement has no parameters", idx);
                else if (st->bind_err.code == 0)
                        stmt_misuse(st, &st->bind_err, -ERANGE,
                                    "cannot bind $%d: the statement has $1..$%d", idx,
                                    st->n_params);
                return -ERANGE;
        }
        vg_stmt_reset(st);
        return 0;
}

static int bind_epilogue(struct vg_stmt *st, int idx, int r, struct vg_error *e)
{
        if (r < 0) {
                if (st->bind_err.code == 0)
                        st->bind_err = *e;
                return r;
        }
        st->bound[idx - 1] = true;
        return 0;
}

int vg_stmt_bind_null(struct vg_stmt *st, int idx)
{
        struct vg_error e = { 0 };
        int r = bind_prologue(st, idx);

        if (r < 0)
                return r;
        return bind_epilogue(st, idx, st->store->ops->bind_null(st->impl, idx, &e), &e);
}

int vg_stmt_bind_int64(struct vg_stmt *st, int idx, int64_t v)
{
        struct vg_error e = { 0 };
        int r = bind_prologue(st, idx);

        if (r < 0)
                return r;
        return bind_epilogue(st, idx, st->store->ops->bind_int64(st->impl, idx, v, &e), &e);
}

int vg_stmt_bind_text(struct vg_stmt *st, int idx, const char *text)
{
        struct vg_error e = { 0 };
        int r;

        if (!text)
                return vg_stmt_bind_null(st, idx);
        r = bind_prologue(st, idx);
        if (r < 0)
                return r;
        return bind_epilogue(st, idx, st->store->ops->bind_text(st->impl, idx, text, &e), &e);
}

int vg_stmt_bind_blob(struct vg_stmt *st, int idx, const void *p, size_t len)
{
        struct vg_error e = { 0 };
        int r;

        if (!p)
                return vg_stmt_bind_null(st, idx);
        r = bind_prologue(st, idx);
        if (r < 0)
                return r;
        return bind_epilogue(st, idx, st->store->ops->bind_blob(st->impl, idx, p, len, &e), &e);
}

int vg_stmt_step(struct vg_stmt *st, struct vg_error *err)
{
        int r;

        if (!st->store || st->store->closed)
                return vg_error_set(err, -EBADF, "statement used after its database was closed");
        if (st->bind_err.code) {
                /* Reported once; the caller rebinds or gives up. */
                r = vg_error_set(err, st->bind_err.code, "%s", st->bind_err.msg);
                st->bind_err = (struct vg_error){ 0 };
                return r;
        }
        if (st->done)
                return 0;
        if (!st->started) {
                for (int i = 0; i < st->n_params; i++)
                        if (!st->bound[i])
                                return stmt_misuse(st, err, -EINVAL,
                                                   "$%d was not bound (bind NULL explicitly "
                                                   "if that is meant)",
                                                   i + 1);
        }
        st->started = true;
        st->has_row = false;
        r = st->store->ops->step(st->impl, err);
        if (r < 0) {
                /* The backend has reset the statement; the next step starts over. */
                st->started = false;
                return r;
        }
        st->has_row = r > 0;
        st->done = r == 0;
        return r;
}

int vg_stmt_exec(struct vg_stmt *st, struct vg_error *err)
{
        int r;

        vg_stmt_reset(st);
        while ((r = vg_stmt_step(st, err)) > 0)
                ;
        return r;
}

int vg_stmt_param_count(const struct vg_stmt *st)
{
        return st->n_params;
}

int vg_stmt_column_count(const struct vg_stmt *st)
{
        return st->n_cols;
}

const char *vg_stmt_column_name(const struct vg_stmt *st, int col)
{
        if (col < 0 || col >= st->n_cols)
                return NULL;
        return st->store->ops->column_name(st->impl, col);
}

static bool column_ok(const struct vg_stmt *st, int col)
{
        return st->has_row && col >= 0 && col < st->n_cols;
}

enum vg_store_type vg_stmt_column_type(const struct vg_stmt *st, int col)
{
        return column_ok(st, col) ? st->store->ops->column_type(st->impl, col) : VG_STORE_NULL;
}

bool vg_stmt_column_is_null(const struct vg_stmt *st, int col)
{
        return vg_stmt_column_type(st, col) == VG_STORE_NULL;
}

int64_t vg_stmt_column_int64(const struct vg_stmt *st, int col)
{
        return column_ok(st, col) ? st->store->ops->column_int64(st->impl, col) : 0;
}

const char *vg_stmt_column_text(const struct vg_stmt *st, int col, size_t *len)
{
        const char *p = NULL;
        size_t n = 0;

        if (column_ok(st, col) && !vg_stmt_column_is_null(st, col))
                p = st->store->ops->column_text(st->impl, col, &n);
        if (len)
                *len = p ? n : 0;
        return p;
}

const void *vg_stmt_column_blob(const struct vg_stmt *st, int col, size_t *len)
{
        static const uint8_t empty[1];
        const void *p = NULL;
        size_t n = 0;

        if (column_ok(st, col) && !vg_stmt_column_is_null(st, col)) {
                p = st->store->ops->column_blob(st->impl, col, &n);
                /* Tell an empty value from a NULL one. */
                if (!p && n == 0)
                        p = empty;
        }
        if (len)
                *len = n;
        return p;
}

int64_t vg_stmt_changes(const struct vg_stmt *st)
{
        return st->done ? st->store->ops->changes(st->impl) : 0;
}

int64_t vg_stmt_last_insert_id(const struct vg_stmt *st)
{
        /* PostgreSQL asks the server (lastval()), which a closed store cannot. */
        return st->done && !st->store->closed ? st->store->ops->last_insert_id(st->impl) : 0;
}

/* ---- migrations ----------------------------------------------------------------------- */

/* Written for both backends: no AUTOINCREMENT, no BLOB/BYTEA, ISO 8601 text for the time. */
static const char schema_table_sql[] = "CREATE TABLE IF NOT EXISTS vigil_schema ("
                                       " component TEXT NOT NULL,"
                                       " version INTEGER NOT NULL,"
                                       " description TEXT NOT NULL,"
                                       " applied_at TEXT NOT NULL,"
                                       " PRIMARY KEY (component, version))";

static int read_version(struct vg_store *s, const char *component, int *version,
                        struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r;

        r = vg_store_prepare(s,
                             "SELECT COALESCE(MAX(version), 0) FROM vigil_schema "
                             "WHERE component = $1",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, component);
        r = vg_stmt_step(st, err);
        if (r < 0)
                return r;
        int64_t v = vg_stmt_column_int64(st, 0);
        if (v < 0 || v > INT_MAX)
                return vg_error_set(err, -EBADMSG,
                                    "database %s: vigil_schema records version %lld for %s, "
                                    "which is not a schema version",
                                    s->name, (long long)v, component);
        *version = (int)v;
        return 0;
}

int vg_store_schema_version(struct vg_store *s, const char *component, int *version,
                            struct vg_error *err)
{
        bool exists;
        int r;

        *version = 0;
        r = s->ops->has_table(s->conn, "vigil_schema", &exists, err);
        if (r < 0 || !exists)
                return r;
        return read_version(s, component, version, err);
}

static int refuse_newer(struct vg_store *s, const char *component, int found, int known,
                        struct vg_error *err)
{
        return vg_error_set(err, -EPROTO,
                            "database %s: the %s schema is at version %d, but this vigil knows "
                            "versions up to %d; it was written by a newer vigil and is left "
                            "untouched (upgrade vigil or point database_url elsewhere)",
                            s->name, component, found, known);
}

struct migrate_step {
        const char *component;
        const struct vg_store_migration *m;
        int latest;
        bool applied;
};

static int apply_one(struct vg_store *s, void *userdata, struct vg_error *err)
{
        struct migrate_step *ms = userdata;
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        char when[32];
        struct tm tm;
        time_t now;
        int v, r;

        ms->applied = false;
        if (s->ops->lock_schema) {
                r = s->ops->lock_schema(s->conn, err);
                if (r < 0)
                        return r;
        }
        r = vg_store_exec(s, schema_table_sql, err);
        if (r < 0)
                return r;
        /* Another process may have migrated while this one waited for the lock. */
        r = read_version(s, ms->component, &v, err);
        if (r < 0)
                return r;
        if (v > ms->latest)
                return refuse_newer(s, ms->component, v, ms->latest, err);
        if (v >= ms->m->version)
                return 0;
        r = vg_store_exec(s, ms->m->sql, err);
        if (r < 0) {
                vg_error_prefix(err,
                                "migration %d (%s) of the %s schema failed, nothing of it "
                                "was kept: ",
                                ms->m->version, ms->m->description, ms->component);
                return r;
        }
        now = time(NULL);
        gmtime_r(&now, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        r = vg_store_prepare(s,
                             "INSERT INTO vigil_schema (component, version, description, "
                             "applied_at) VALUES ($1, $2, $3, $4)",
                             &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_text(st, 1, ms->component);
        vg_stmt_bind_int64(st, 2, ms->m->version);
        vg_stmt_bind_text(st, 3, ms->m->description);
        vg_stmt_bind_text(st, 4, when);
        r = vg_stmt_exec(st, err);
        if (r < 0)
                return r;
        ms->applied = true;
        return 0;
}

int vg_store_migrate(struct vg_store *s, const char *component,
                     const struct vg_store_migration *migrations, size_t n, struct vg_error *err)
{
        int cur, latest, r;

        if (!component || !*component)
                return vg_error_set(err, -EINVAL, "database %s: migrations need a component name",
                                    s->name);
        for (size_t i = 0; i < n; i++) {
                const struct vg_store_migration *m = &migrations[i];

                if (m->version < 1 || (i > 0 && m->version <= migrations[i - 1].version) ||
                    !m->sql || !m->description)
                        return vg_error_set(err, -EINVAL,
                                            "%s schema: migration #%zu (version %d) is invalid: "
                                            "versions must start at 1 and increase, and each "
                                            "needs a description and SQL",
                                            component, i, m->version);
        }
        if (s->in_txn)
                return vg_error_set(err, -EINVAL,
                                    "database %s: migrations cannot run inside a transaction",
                                    s->name);
        latest = n ? migrations[n - 1].version : 0;

        /* Only read until it is clear there is work: an up-to-date or newer database is not
         * written to at all. */
        r = vg_store_schema_version(s, component, &cur, err);
        if (r < 0)
                return r;
        if (cur > latest)
                return refuse_newer(s, component, cur, latest, err);

        for (size_t i = 0; i < n; i++) {
                struct migrate_step ms = {
                        .component = component,
                        .m = &migrations[i],
                        .latest = latest,
                };

                if (migrations[i].version <= cur)
                        continue;
                r = vg_store_transact(s, apply_one, &ms, err);
                if (r < 0)
                        return r;
                if (ms.applied) {
                        char v[16];

                        snprintf(v, sizeof(v), "%d", migrations[i].version);
                        vg_info(VG_F("database", s->name, "component", component, "version", v),
                                "applied schema migration: %s", migrations[i].description);
                }
        }
        return 0;
}
