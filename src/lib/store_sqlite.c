/* vigil: the SQLite backend of the store: one file, WAL journal, foreign keys on, $N parameters
 * bound by name, and errors that name the file and the statement. */
#include "store.h"
#include "store_backend.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

struct sq_conn {
        sqlite3 *db;
        char *path;
        unsigned busy_timeout_ms;
};

struct sq_stmt {
        struct sq_conn *c; /* for messages only; never touched by finalize */
        sqlite3_stmt *st;
        int *index; /* [n_params]: SQLite's parameter index of $N */
        int n_params;
        int64_t changes, last_id;
};

/* Map a SQLite result code onto the errno values store.h promises. */
static int sq_errno(sqlite3 *db, int rc)
{
        int sys;

        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_CONSTRAINT:
                return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY
                           ? -EEXIST
                           : -EINVAL;
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT:
                return -EBADMSG;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_RANGE:
                return -ERANGE;
        case SQLITE_INTERRUPT:
                return -EINTR;
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
                sys = db ? sqlite3_system_errno(db) : 0;
                return sys > 0 ? -sys : -EIO;
        case SQLITE_ERROR:
        case SQLITE_MISMATCH:
        case SQLITE_MISUSE:
                return -EINVAL;
        default:
                return -EIO;
        }
}

/* Turn the connection's last error into a message. Call it before anything else touches
 * the connection: SQLite keeps only the most recent error text. */
static int sq_fail(struct sq_conn *c, int rc, const char *sql, struct vg_error *err)
{
        const char *msg = sqlite3_errmsg(c->db);
        int code = sq_errno(c->db, rc);
        char ex[112];

        vg_store_sql_excerpt(sql ? sql : "", ex, sizeof(ex));
        switch (rc & 0xff) {
        case SQLITE_NOTADB:
                return vg_error_set(err, code,
                                    "database %s: the file is not a SQLite database; it was left "
                                    "as it is",
                                    c->path);
        case SQLITE_CORRUPT:
                return vg_error_set(err, code,
                                    "database %s is corrupt (%s) at statement \"%s\"; restore it "
                                    "from a backup",
                                    c->path, msg, ex);
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                if (rc == SQLITE_BUSY)
                        return vg_error_set(err, code,
                                            "database %s: statement \"%s\": %s (another "
                                            "connection held it for more than the %u ms busy "
                                            "timeout)",
                                            c->path, ex, msg, c->busy_timeout_ms);
                return vg_error_set(err, code,
                                    "database %s: statement \"%s\": %s (it conflicted with "
                                    "another connection's write; retry the transaction)",
                                    c->path, ex, msg);
        default:
                return vg_error_set(err, code, "database %s: statement \"%s\" failed: %s", c->path,
                                    ex, msg);
        }
}

/* Run one parameterless statement to completion; first row's column 0 into text if wanted. */
static int sq_run(struct sq_conn *c, const char *sql, char *text, size_t text_size,
                  struct vg_error *err)
{
        sqlite3_stmt *st = NULL;
        int rc;

        if (text_size)
                text[0] = '\0';
        rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sq_fail(c, rc, sql, err);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const unsigned char *v = sqlite3_column_text(st, 0);

                if (text_size && !text[0] && v)
                        snprintf(text, text_size, "%s", (const char *)v);
        }
        if (rc != SQLITE_DONE) {
                int r = sq_fail(c, rc, sql, err);

                sqlite3_finalize(st);
                return r;
        }
        sqlite3_finalize(st);
        return 0;
}

static void sq_close(void *conn)
{
        struct sq_conn *c = conn;

        if (!c)
                return;
        /* _v2: if the caller still holds statements, the connection lingers until they are
         * finalized instead of failing to close. */
        sqlite3_close_v2(c->db);
        free(c->path);
        free(c);
}
VG_DEFINE_CLEANUP_FUNC(struct sq_conn, sq_close)

static int check_parent_dir(const char *path, struct vg_error *err)
{
        _cleanup_free_ char *dir = strdup(path);
        struct stat st;
        char *slash;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (!slash) {
                free(dir);
                dir = strdup(".");
                if (!dir)
                        return -ENOMEM;
        } else {
                slash[slash == dir ? 1 : 0] = '\0';
        }
        if (stat(dir, &st) < 0) {
                int e = errno;

                if (e == ENOENT)
                        return vg_error_set(err, -ENOENT,
                                            "database %s: directory %s does not exist; create it "
                                            "or point database_url (or data_dir) elsewhere",
                                            path, dir);
                if (e == ENOTDIR)
                        return vg_error_set(
                            err, -ENOTDIR, "database %s: part of %s is not a directory", path, dir);
                return vg_error_set(err, -e, "database %s: cannot access directory %s: %s", path,
                                    dir, strerror(e));
        }
        if (!S_ISDIR(st.st_mode))
                return vg_error_set(err, -ENOTDIR, "database %s: %s is not a directory", path, dir);
        return 0;
}

/* Create the file ourselves, so that it is born 0600 whatever the umask; SQLite would use
 * 0644 and give the -wal and -shm files the same mode as the database. */
static int create_private(const char *path, bool *created, mode_t *mode, struct vg_error *err)
{
        struct stat st;
        int fd, e;

        *created = false;
        *mode = 0600;
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
                /* The umask may only have taken bits away; make sure of the exact mode. */
                if (fchmod(fd, 0600) < 0) {
                        e = errno;
                        close(fd);
                        unlink(path);
                        return vg_error_set(err, -e, "database %s: cannot set mode 0600: %s", path,
                                            strerror(e));
                }
                close(fd);
                *created = true;
                return 0;
        }
        e = errno;
        if (e != EEXIST)
                return vg_error_set(err, -e, "database %s: cannot create the file: %s", path,
                                    strerror(e));
        if (stat(path, &st) < 0) {
                e = errno;
                return vg_error_set(err, -e, "database %s: %s", path, strerror(e));
        }
        if (S_ISDIR(st.st_mode))
                return vg_error_set(err, -EISDIR, "database %s is a directory, not a file", path);
        if (!S_ISREG(st.st_mode))
                return vg_error_set(err, -EINVAL, "database %s is not a regular file", path);
        *mode = st.st_mode & 07777;
        return 0;
}

static int sq_check_integrity(void *conn, struct vg_error *err)
{
        struct sq_conn *c = conn;
        char res[256];
        int r;

        r = sq_run(c, "PRAGMA integrity_check", res, sizeof(res), err);
        if (r < 0)
                return r;
        if (strcmp(res, "ok") != 0)
                return vg_error_set(err, -EBADMSG,
                                    "database %s is corrupt (integrity check: %s); restore it "
                                    "from a backup",
                                    c->path, res);
        return 0;
}

/* Connection settings every vigil database relies on. */
static int sq_configure(struct sq_conn *c, struct vg_error *err)
{
        char v[32];
        int r;

        /* Read the header before anything may write: a file that is not a database must be
         * refused while it is still untouched. */
        r = sq_run(c, "SELECT count(*) FROM sqlite_master", NULL, 0, err);
        if (r < 0)
                return r;
        /* WAL: readers never block the writer, and a crash loses at most the last
         * transactions with synchronous=NORMAL, never consistency. */
        r = sq_run(c, "PRAGMA journal_mode=WAL", v, sizeof(v), err);
        if (r < 0)
                return r;
        if (strcasecmp(v, "wal") != 0)
                return vg_error_set(err, -ENOTSUP,
                                    "database %s: cannot use write-ahead logging (journal mode "
                                    "stays \"%s\"); is it on a network file system?",
                                    c->path, v);
        r = sq_run(c, "PRAGMA synchronous=NORMAL", NULL, 0, err);
        if (r < 0)
                return r;
        r = sq_run(c, "PRAGMA foreign_keys=ON", NULL, 0, err);
        if (r < 0)
                return r;
        r = sq_run(c, "PRAGMA foreign_keys", v, sizeof(v), err);
        if (r < 0)
                return r;
        if (strcmp(v, "1") != 0)
                return vg_error_set(
                    err, -ENOTSUP, "database %s: this SQLite cannot enforce foreign keys", c->path);
        return 0;
}

static int sq_connect(struct sq_conn *c, bool check_integrity, struct vg_error *err)
{
        int rc, r;

        /* No SQLITE_OPEN_CREATE: the file exists now, and if it vanished meanwhile, creating
         * it with SQLite's default mode would be wrong. NOMUTEX: one thread per handle. */
        rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (!c->db)
                return -ENOMEM;
        if (rc != SQLITE_OK)
                return vg_error_set(err, sq_errno(c->db, rc), "database %s: cannot open: %s",
                                    c->path, sqlite3_errmsg(c->db));
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_timeout(c->db,
                             c->busy_timeout_ms > INT_MAX ? INT_MAX : (int)c->busy_timeout_ms);
        /* SQLite falls back to read-only when it may not write; a daemon would only find
         * out at its first update. */
        if (sqlite3_db_readonly(c->db, "main") == 1)
                return vg_error_set(err, -EACCES, "database %s is not writable by this user",
                                    c->path);
        r = sq_configure(c, err);
        if (r >= 0 && check_integrity)
                r = sq_check_integrity(c, err);
        return r;
}

static int sq_open(const struct vg_store_url *url, const struct vg_store_options *opts, void **out,
                   struct vg_error *err)
{
        _cleanup_(sq_closep) struct sq_conn *c = NULL;
        const char *path = url->target;
        bool created = false;
        struct stat st;
        mode_t mode;
        int r;

        *out = NULL;
        r = check_parent_dir(path, err);
        if (r < 0)
                return r;
        r = create_private(path, &created, &mode, err);
        if (r < 0)
                return r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->busy_timeout_ms = opts->busy_timeout_ms;
        c->path = strdup(path);
        if (!c->path)
                return -ENOMEM;
        r = sq_connect(c, opts->check_integrity, err);
        if (r < 0) {
                sq_close(TAKE_PTR(c));
                /* Do not leave behind an empty file this call created, unless someone else
                 * has started using it meanwhile. */
                if (created && stat(path, &st) == 0 && st.st_size == 0)
                        unlink(path);
                return r;
        }
        /* Not refused: the administrator may have reasons (a backup group), but say it. */
        if (mode & 0077)
                vg_warn(VG_F("database", path),
                        "database file is accessible to other users (mode %04o); it holds "
                        "agent identities and should be 0600",
                        (unsigned)mode);
        *out = TAKE_PTR(c);
        return 0;
}

static int sq_exec(void *conn, const char *sql, struct vg_error *err)
{
        struct sq_conn *c = conn;
        const char *p = sql, *tail;
        int rc;

        /* Statement by statement rather than sqlite3_exec(), to say which one failed. */
        while (*p) {
                sqlite3_stmt *st = NULL;

                rc = sqlite3_prepare_v2(c->db, p, -1, &st, &tail);
                if (rc != SQLITE_OK) {
                        /* Quote only the failing statement; its end is not known here, the
                         * next ';' is a good guess for messages. */
                        const char *semi = strchr(p, ';');
                        _cleanup_free_ char *one = semi ? strndup(p, (size_t)(semi - p)) : NULL;

                        return sq_fail(c, rc, one ? one : p, err);
                }
                if (!st) {
                        /* Only blanks or comments were left. */
                        if (tail == p)
                                break;
                        p = tail;
                        continue;
                }
                if (sqlite3_bind_parameter_count(st) > 0) {
                        sqlite3_finalize(st);
                        return vg_error_set(err, -EINVAL,
                                            "database %s: a script cannot take parameters; "
                                            "prepare the statement instead",
                                            c->path);
                }
                while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                        ;
                if (rc != SQLITE_DONE) {
                        int r = sq_fail(c, rc, sqlite3_sql(st), err);

                        sqlite3_finalize(st);
                        return r;
                }
                sqlite3_finalize(st);
                p = tail;
        }
        return 0;
}

static int sq_begin(void *conn, struct vg_error *err)
{
        /* IMMEDIATE: take the write lock now. A deferred transaction that reads first and
         * writes later can fail with SQLITE_BUSY without waiting, half-way through. */
        return sq_run(conn, "BEGIN IMMEDIATE", NULL, 0, err);
}

static int sq_commit(void *conn, struct vg_error *err)
{
        return sq_run(conn, "COMMIT", NULL, 0, err);
}

static int sq_rollback(void *conn, struct vg_error *err)
{
        struct sq_conn *c = conn;

        /* SQLite rolls back by itself after some errors (full disk, I/O). */
        if (sqlite3_get_autocommit(c->db))
                return 0;
        return sq_run(c, "ROLLBACK", NULL, 0, err);
}

static int sq_has_table(void *conn, const char *table, bool *exists, struct vg_error *err)
{
        static const char sql[] = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1";
        struct sq_conn *c = conn;
        sqlite3_stmt *st = NULL;
        int rc, r;

        *exists = false;
        rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 1, table, -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                *exists = rc == SQLITE_ROW;
                if (rc == SQLITE_ROW || rc == SQLITE_DONE)
                        rc = SQLITE_OK;
        }
        r = rc == SQLITE_OK ? 0 : sq_fail(c, rc, sql, err);
        sqlite3_finalize(st);
        return r;
}

static void sq_finalize(void *stmt)
{
        struct sq_stmt *s = stmt;

        if (!s)
                return;
        sqlite3_finalize(s->st);
        free(s->index);
        free(s);
}
VG_DEFINE_CLEANUP_FUNC(struct sq_stmt, sq_finalize)

/* "$12" -> 12; 0 for anything that is not $ followed by a number without leading zeros. */
static int dollar_number(const char *name)
{
        long v = 0;

        if (!name || name[0] != '$' || name[1] < '1' || name[1] > '9')
                return 0;
        for (const char *p = name + 1; *p; p++) {
                if (!isdigit((unsigned char)*p))
                        return 0;
                v = v * 10 + (*p - '0');
                if (v > SHRT_MAX)
                        return 0;
        }
        return (int)v;
}

/*
 * SQLite reads "$1" as a named parameter and numbers named parameters in order of first
 * appearance, so in "... $2 ... $1" the name "$2" has index 1. Binding must therefore go by
 * name; the map is built here once.
 */
static int map_parameters(struct sq_conn *c, struct sq_stmt *s, const char *sql,
                          struct vg_error *err)
{
        int count = sqlite3_bind_parameter_count(s->st), max = 0;
        char ex[112];

        vg_store_sql_excerpt(sql, ex, sizeof(ex));
        for (int i = 1; i <= count; i++) {
                const char *name = sqlite3_bind_parameter_name(s->st, i);
                int n = dollar_number(name);

                if (n == 0)
                        return vg_error_set(err, -EINVAL,
                                            "database %s: statement \"%s\": placeholder \"%s\" is "
                                            "not allowed; write $1, $2, ... (they work with "
                                            "PostgreSQL too)",
                                            c->path, ex, name ? name : "?");
                if (n > max)
                        max = n;
        }
        if (max == 0)
                return 0;
        s->index = calloc((size_t)max, sizeof(int));
        if (!s->index)
                return -ENOMEM;
        for (int i = 1; i <= count; i++)
                s->index[dollar_number(sqlite3_bind_parameter_name(s->st, i)) - 1] = i;
        for (int n = 0; n < max; n++)
                if (s->index[n] == 0)
                        return vg_error_set(err, -EINVAL,
                                            "database %s: statement \"%s\": $%d is never used; "
                                            "parameters must be numbered $1..$%d without gaps",
                                            c->path, ex, n + 1, max);
        s->n_params = max;
        return 0;
}

static int sq_prepare(void *conn, const char *sql, void **out, int *n_params, struct vg_error *err)
{
        _cleanup_(sq_finalizep) struct sq_stmt *s = NULL;
        struct sq_conn *c = conn;
        const char *tail = NULL;
        sqlite3_stmt *more = NULL;
        char ex[112];
        int rc, r;

        *out = NULL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->c = c;
        rc = sqlite3_prepare_v2(c->db, sql, -1, &s->st, &tail);
        if (rc != SQLITE_OK)
                return sq_fail(c, rc, sql, err);
        vg_store_sql_excerpt(sql, ex, sizeof(ex));
        if (!s->st)
                return vg_error_set(err, -EINVAL, "database %s: empty statement \"%s\"", c->path,
                                    ex);
        /* SQLite would silently ignore everything after the first statement. */
        if (tail && *tail) {
                rc = sqlite3_prepare_v2(c->db, tail, -1, &more, NULL);
                sqlite3_finalize(more);
                if (rc != SQLITE_OK || more)
                        return vg_error_set(err, -EINVAL,
                                            "database %s: \"%s\" holds more than one statement; "
                                            "prepare them one by one, or run a script with "
                                            "vg_store_exec()",
                                            c->path, ex);
        }
        r = map_parameters(c, s, sql, err);
        if (r < 0)
                return r;
        *n_params = s->n_params;
        *out = TAKE_PTR(s);
        return 0;
}

static int sq_bind_result(struct sq_stmt *s, int idx, int rc, struct vg_error *err)
{
        char ex[112];

        if (rc == SQLITE_OK)
                return 0;
        vg_store_sql_excerpt(sqlite3_sql(s->st), ex, sizeof(ex));
        return vg_error_set(err, sq_errno(s->c->db, rc),
                            "database %s: statement \"%s\": cannot bind $%d: %s", s->c->path, ex,
                            idx, sqlite3_errstr(rc));
}

static int sq_bind_null(void *stmt, int idx, struct vg_error *err)
{
        struct sq_stmt *s = stmt;

        return sq_bind_result(s, idx, sqlite3_bind_null(s->st, s->index[idx - 1]), err);
}

static int sq_bind_int64(void *stmt, int idx, int64_t v, struct vg_error *err)
{
        struct sq_stmt *s = stmt;

        return sq_bind_result(s, idx, sqlite3_bind_int64(s->st, s->index[idx - 1], v), err);
}

static int sq_bind_text(void *stmt, int idx, const char *text, struct vg_error *err)
{
        struct sq_stmt *s = stmt;

        return sq_bind_result(s, idx,
                              sqlite3_bind_text64(s->st, s->index[idx - 1], text, strlen(text),
                                                  SQLITE_TRANSIENT, SQLITE_UTF8),
                              err);
}

static int sq_bind_blob(void *stmt, int idx, const void *p, size_t len, struct vg_error *err)
{
        struct sq_stmt *s = stmt;

        /* A zero-length blob with a pointer is an empty value, not NULL: SQLite makes NULL of
         * a NULL pointer only, and p is not NULL here. */
        return sq_bind_result(
            s, idx, sqlite3_bind_blob64(s->st, s->index[idx - 1], p, len, SQLITE_TRANSIENT), err);
}

static int sq_step(void *stmt, struct vg_error *err)
{
        struct sq_stmt *s = stmt;
        sqlite3 *db = s->c->db;
        int rc, r;

        rc = sqlite3_step(s->st);
        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE) {
                /* sqlite3_changes() reports the last data change on the connection, which
                 * a query did not make. */
#if SQLITE_VERSION_NUMBER >= 3037000
                s->changes = sqlite3_stmt_readonly(s->st) ? 0 : sqlite3_changes64(db);
#else
                s->changes = sqlite3_stmt_readonly(s->st) ? 0 : sqlite3_changes(db);
#endif
                s->last_id = sqlite3_last_insert_rowid(db);
                return 0;
        }
        r = sq_fail(s->c, rc, sqlite3_sql(s->st), err);
        sqlite3_reset(s->st);
        return r;
}

static void sq_reset(void *stmt)
{
        struct sq_stmt *s = stmt;

        sqlite3_reset(s->st);
}

static int sq_column_count(void *stmt)
{
        return sqlite3_column_count(((struct sq_stmt *)stmt)->st);
}

static const char *sq_column_name(void *stmt, int col)
{
        return sqlite3_column_name(((struct sq_stmt *)stmt)->st, col);
}

static enum vg_store_type sq_column_type(void *stmt, int col)
{
        switch (sqlite3_column_type(((struct sq_stmt *)stmt)->st, col)) {
        case SQLITE_INTEGER:
                return VG_STORE_INT;
        case SQLITE_FLOAT:
                return VG_STORE_REAL;
        case SQLITE_TEXT:
                return VG_STORE_TEXT;
        case SQLITE_BLOB:
                return VG_STORE_BLOB;
        default:
                return VG_STORE_NULL;
        }
}

static int64_t sq_column_int64(void *stmt, int col)
{
        return sqlite3_column_int64(((struct sq_stmt *)stmt)->st, col);
}

static const char *sq_column_text(void *stmt, int col, size_t *len)
{
        sqlite3_stmt *st = ((struct sq_stmt *)stmt)->st;
        /* Pointer first, then length: the documented order for a stable result. */
        const char *p = (const char *)sqlite3_column_text(st, col);

        *len = (size_t)sqlite3_column_bytes(st, col);
        return p;
}

static const void *sq_column_blob(void *stmt, int col, size_t *len)
{
        sqlite3_stmt *st = ((struct sq_stmt *)stmt)->st;
        const void *p = sqlite3_column_blob(st, col);

        *len = (size_t)sqlite3_column_bytes(st, col);
        return p;
}

static int64_t sq_changes(void *stmt)
{
        return ((struct sq_stmt *)stmt)->changes;
}

static int64_t sq_last_insert_id(void *stmt)
{
        return ((struct sq_stmt *)stmt)->last_id;
}

const struct vg_store_ops vg_store_sqlite_ops = {
        .name = "SQLite",
        .open = sq_open,
        .close = sq_close,
        .exec = sq_exec,
        .check_integrity = sq_check_integrity,
        .begin = sq_begin,
        .commit = sq_commit,
        .rollback = sq_rollback,
        .has_table = sq_has_table,
        .prepare = sq_prepare,
        .finalize = sq_finalize,
        .bind_null = sq_bind_null,
        .bind_int64 = sq_bind_int64,
        .bind_text = sq_bind_text,
        .bind_blob = sq_bind_blob,
        .step = sq_step,
        .reset = sq_reset,
        .column_count = sq_column_count,
        .column_name = sq_column_name,
        .column_type = sq_column_type,
        .column_int64 = sq_column_int64,
        .column_text = sq_column_text,
        .column_blob = sq_column_blob,
        .changes = sq_changes,
        .last_insert_id = sq_last_insert_id,
};
