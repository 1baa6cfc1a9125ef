/* vigil: backend-neutral SQL storage for the registrar, verifier, tang and the event outbox:
 * open by Keylime-style database_url, transactions, typed statements, schema migrations. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"

/*
 * Usage:
 *
 *      static const struct vg_store_migration reg_schema[] = {
 *              { 1, "agents", "CREATE TABLE agents (uuid TEXT PRIMARY KEY, ek_tpm BLOB, "
 *                             "port INTEGER, active INTEGER NOT NULL DEFAULT 0)" },
 *      };
 *      struct vg_store_options o = { .data_dir = "/var/lib/vigil",
 *                                    .default_file = "reg_data.sqlite" };
 *      _cleanup_(vg_store_closep) struct vg_store *db = NULL;
 *      _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
 *
 *      r = vg_store_open(&db, cfg->database_url, &o, &err);
 *      if (r >= 0)
 *              r = vg_store_migrate(db, "registrar", reg_schema, VG_ARRAY_SIZE(reg_schema), &err);
 *      if (r >= 0)
 *              r = vg_store_prepare(db, "SELECT ek_tpm, port FROM agents WHERE uuid = $1",
 *                                   &st, &err);
 *      if (r < 0)
 *              return log_and_fail(vg_error_str(&err));
 *      vg_stmt_bind_text(st, 1, uuid);
 *      while ((r = vg_stmt_step(st, &err)) > 0)
 *              use(vg_stmt_column_blob(st, 0, &len), len, vg_stmt_column_int64(st, 1));
 *
 * Errors are negative errno values; the struct vg_error then holds one sentence naming the
 * database (file or redacted URL) and the statement. The codes callers act on:
 *      -EBUSY     another writer held the database past the busy timeout, or (PostgreSQL) a
 *                 serialization failure; the transaction is lost and may be retried as a whole
 *                 (vg_store_transact() does that)
 *      -EEXIST    a UNIQUE or PRIMARY KEY constraint refused the row
 *      -EBADMSG   the file is not a database, or it is corrupt
 *      -EPROTO    the schema was written by a newer vigil than this one (refused, not modified)
 *      -ENOTSUP   a backend this build does not have (PostgreSQL for now)
 *      -EINVAL    bad SQL, a violated NOT NULL/CHECK/FOREIGN KEY constraint, or API misuse
 *
 * SQL is written once for both backends: parameters are $1, $2, ... (PostgreSQL's spelling;
 * `?` and `:name` are refused so that nothing slips through that PostgreSQL would reject),
 * each number may appear several times, and all of 1..N must be used. New ids are best read
 * with `INSERT ... RETURNING id`, which both backends support.
 *
 * A handle is one connection and is used by one thread at a time. Statements must not outlive
 * the use of their store, though freeing one after vg_store_close() is safe. Open stores after
 * fork(), never before: SQLite keeps its lock state per process, and a child inheriting an open
 * connection can deadlock on it.
 */

enum vg_store_backend {
        VG_STORE_SQLITE = 1,
        VG_STORE_POSTGRESQL,
};

/* What a column holds in the current row. */
enum vg_store_type {
        VG_STORE_NULL,
        VG_STORE_INT,
        VG_STORE_TEXT,
        VG_STORE_BLOB,
        VG_STORE_REAL,
};

struct vg_store_options {
        /* Where the bare "sqlite" URL points (Keylime: its work directory) and what relative
         * paths are relative to, rather than the daemon's current directory.
         * NULL: VIGIL_LOCALSTATEDIR, i.e. /var/lib/vigil. */
        const char *data_dir;
        /* The file the bare "sqlite" URL means, e.g. "cv_data.sqlite" for the verifier and
         * "reg_data.sqlite" for the registrar, as in Keylime. NULL: "vigil.sqlite". */
        const char *default_file;
        /* How long one statement waits for another connection's write lock. 0: 5000 ms. A
         * "?timeout=SECONDS" in the URL (SQLAlchemy's spelling) takes precedence. */
        unsigned busy_timeout_ms;
        /* Read the whole database once when opening to detect corruption early. */
        bool check_integrity;
};

#define VG_STORE_DEFAULT_BUSY_TIMEOUT_MS 5000

/* A parsed database_url. */
struct vg_store_url {
        enum vg_store_backend backend;
        /* SQLite: the absolute or data_dir-relative file path. PostgreSQL: the URL as given,
         * for libpq. */
        char *target;
        /* For messages and logs: the path, or the URL with its password replaced by "***". */
        char *display;
        /* From "?timeout=SECONDS"; 0 when the URL has none. */
        unsigned busy_timeout_ms;
};

/*
 * Parse a Keylime database_url: "sqlite" (data_dir/default_file), "sqlite:///relative",
 * "sqlite:////absolute", a plain path, or "postgresql://user:pass@host[:port]/db" (also
 * "postgres://", and SQLAlchemy driver suffixes such as "sqlite+pysqlite://" or
 * "postgresql+psycopg2://"). Pure: touches no file. opts may be NULL. -ENOTSUP for MySQL,
 * -EINVAL for anything malformed, with a message saying what form was expected.
 */
int vg_store_url_parse(const char *url, const struct vg_store_options *opts,
                       struct vg_store_url *out, struct vg_error *err);
void vg_store_url_clear(struct vg_store_url *u);

struct vg_store;
struct vg_stmt;

/*
 * Open (SQLite: create, mode 0600, if missing) the database a URL names. The directory must
 * already exist. SQLite connections run in WAL mode with synchronous=NORMAL, foreign keys
 * enforced and the busy timeout set; a file that is not a SQLite database is refused without
 * being modified. PostgreSQL URLs give -ENOTSUP until that backend is built.
 */
int vg_store_open(struct vg_store **out, const char *url, const struct vg_store_options *opts,
                  struct vg_error *err);
/* Roll back an open transaction and close. NULL is fine. */
void vg_store_close(struct vg_store *s);
VG_DEFINE_CLEANUP_FUNC(struct vg_store, vg_store_close)

enum vg_store_backend vg_store_backend(const struct vg_store *s);
/* The file path, or the URL without its password: what messages call this database. */
const char *vg_store_name(const struct vg_store *s);

/* Run one or more parameterless statements (a script); rows they return are discarded. */
int vg_store_exec(struct vg_store *s, const char *sql, struct vg_error *err);

/* Full integrity check: -EBADMSG naming the file and the first problem found. */
int vg_store_check_integrity(struct vg_store *s, struct vg_error *err);

/*
 * Transactions. begin takes the write lock at once (SQLite BEGIN IMMEDIATE), so that a busy
 * database shows up here and not half-way through. No nesting: begin inside a transaction is
 * -EINVAL. rollback without a transaction is a no-op, so error paths can always call it.
 */
int vg_store_begin(struct vg_store *s, struct vg_error *err);
int vg_store_commit(struct vg_store *s, struct vg_error *err);
int vg_store_rollback(struct vg_store *s, struct vg_error *err);
bool vg_store_in_transaction(const struct vg_store *s);

/*
 * Run fn inside a transaction and commit. If fn returns < 0 the transaction is rolled back
 * and that value returned. On -EBUSY from begin, fn or commit, everything is rolled back and
 * fn runs again after a short randomised back-off, while the busy timeout has not run out
 * and at most VG_STORE_TRANSACT_ATTEMPTS times; so fn must do all its work through s and
 * keep no effects outside it until it returns.
 */
typedef int (*vg_store_txn_fn)(struct vg_store *s, void *userdata, struct vg_error *err);
#define VG_STORE_TRANSACT_ATTEMPTS 8
int vg_store_transact(struct vg_store *s, vg_store_txn_fn fn, void *userdata, struct vg_error *err);

/* Prepare exactly one statement with $N parameters. */
int vg_store_prepare(struct vg_store *s, const char *sql, struct vg_stmt **out,
                     struct vg_error *err);
void vg_stmt_free(struct vg_stmt *st);
VG_DEFINE_CLEANUP_FUNC(struct vg_stmt, vg_stmt_free)

/*
 * Bind $idx (1-based, as written in the SQL). Values are copied. Binding to a statement that
 * has run starts a new run (other parameters keep their values). A failure is also
 * remembered and reported by the next step, so callers may bind several values and check
 * once. Text is NUL-terminated UTF-8; text NULL or blob NULL bind SQL NULL.
 */
int vg_stmt_bind_null(struct vg_stmt *st, int idx);
int vg_stmt_bind_int64(struct vg_stmt *st, int idx, int64_t v);
int vg_stmt_bind_text(struct vg_stmt *st, int idx, const char *text);
int vg_stmt_bind_blob(struct vg_stmt *st, int idx, const void *p, size_t len);

/*
 * Execute or continue: 1 when a row is available through the column getters, 0 when the
 * statement has finished (and stays finished until reset or rebound), < 0 on error. Every
 * parameter must have been bound. Finish or reset a SELECT promptly: an unfinished one keeps
 * a read snapshot open.
 */
int vg_stmt_step(struct vg_stmt *st, struct vg_error *err);
/* Restart from the top (a no-op if not started); bindings stay. */
void vg_stmt_reset(struct vg_stmt *st);
/* Restart and run to completion, discarding any rows. */
int vg_stmt_exec(struct vg_stmt *st, struct vg_error *err);

/* Number of $N parameters and of result columns. */
int vg_stmt_param_count(const struct vg_stmt *st);
int vg_stmt_column_count(const struct vg_stmt *st);
const char *vg_stmt_column_name(const struct vg_stmt *st, int col);

/*
 * Column getters for the current row, col 0-based. Pointers stay valid until the next step,
 * reset, bind or free. Out of range, or with no current row: NULL type, 0 or NULL. A NULL
 * value gives NULL from the text and blob getters; an empty blob gives a non-NULL pointer
 * and length 0.
 */
enum vg_store_type vg_stmt_column_type(const struct vg_stmt *st, int col);
bool vg_stmt_column_is_null(const struct vg_stmt *st, int col);
int64_t vg_stmt_column_int64(const struct vg_stmt *st, int col);
/* len (may be NULL) receives the length in bytes without the terminating NUL. */
const char *vg_stmt_column_text(const struct vg_stmt *st, int col, size_t *len);
const void *vg_stmt_column_blob(const struct vg_stmt *st, int col, size_t *len);

/* After a run finished: rows it inserted, updated or deleted (0 for a query). */
int64_t vg_stmt_changes(const struct vg_stmt *st);
/* After a run finished: the id of the last row this connection inserted (SQLite rowid,
 * PostgreSQL lastval()). Prefer RETURNING where the statement is yours. */
int64_t vg_stmt_last_insert_id(const struct vg_stmt *st);

/*
 * Schema migrations. Each component keeps its own ordered list; versions start at 1 and
 * strictly increase, and a released migration is never edited, only followed by new ones.
 * vg_store_migrate() applies those newer than the version recorded for the component in
 * the vigil_schema table (component, version, description, applied_at), each in its own
 * transaction together with its vigil_schema row: a migration that fails is rolled back
 * entirely and leaves the database at the previous version. A database recorded at a higher
 * version than the last one given is refused with -EPROTO and left untouched. Safe against
 * another process migrating the same database at the same moment.
 */
struct vg_store_migration {
        int version;
        const char *description;
        /* One or more statements, written for both backends; no BEGIN/COMMIT of their own.
         * Foreign keys stay enforced, so a SQLite table rebuild must not DROP a table that
         * others reference with ON DELETE CASCADE. */
        const char *sql;
};

int vg_store_migrate(struct vg_store *s, const char *component,
                     const struct vg_store_migration *migrations, size_t n, struct vg_error *err);
/* The version recorded for component; 0 when it has none (or there is no vigil_schema). */
int vg_store_schema_version(struct vg_store *s, const char *component, int *version,
                            struct vg_error *err);
