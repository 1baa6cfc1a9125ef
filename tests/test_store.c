/* vigil tests: the store and its SQLite backend: database_url forms, typed statements,
 * transactions, schema migrations, concurrent writers, and refusing files it must not touch. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "store.h"
#include "tap.h"

static char *tmp;

static char *path_in(const char *dir, const char *name)
{
        char *p;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                tap_bail("out of memory");
        return p;
}

static struct vg_store *open_or_bail(const char *url, const struct vg_store_options *o)
{
        struct vg_error err = { 0 };
        struct vg_store *s;

        if (vg_store_open(&s, url, o, &err) < 0)
                tap_bail("cannot open %s: %s", url, vg_error_str(&err));
        return s;
}

static void exec_or_bail(struct vg_store *s, const char *sql)
{
        struct vg_error err = { 0 };

        if (vg_store_exec(s, sql, &err) < 0)
                tap_bail("%s", vg_error_str(&err));
}

/* First column of the first row as a number; INT64_MIN when the query fails. */
static int64_t query_int(struct vg_store *s, const char *sql)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };

        if (vg_store_prepare(s, sql, &st, &err) < 0 || vg_stmt_step(st, &err) < 0) {
                tap_diag("%s", vg_error_str(&err));
                return INT64_MIN;
        }
        return vg_stmt_column_int64(st, 0);
}

/* First column of the first row as text (caller frees); NULL when none. */
static char *query_text(struct vg_store *s, const char *sql)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };
        const char *v;

        if (vg_store_prepare(s, sql, &st, &err) < 0 || vg_stmt_step(st, &err) <= 0) {
                tap_diag("%s", vg_error_str(&err));
                return NULL;
        }
        v = vg_stmt_column_text(st, 0, NULL);
        return v ? strdup(v) : NULL;
}

static int file_mode(const char *path)
{
        struct stat st;

        return stat(path, &st) < 0 ? -errno : (int)(st.st_mode & 07777);
}

static bool exists(const char *path)
{
        return access(path, F_OK) == 0;
}

/* ---- database_url --------------------------------------------------------------------- */

static void test_url(void)
{
        static const struct {
                const char *url;
                const char *data_dir, *default_file;
                enum vg_store_backend backend;
                const char *target, *display;
                unsigned timeout;
        } good[] = {
                { "sqlite", "/var/lib/keylime", "cv_data.sqlite", VG_STORE_SQLITE,
                  "/var/lib/keylime/cv_data.sqlite", NULL, 0 },
                { "sqlite", "/srv/reg/", "reg_data.sqlite", VG_STORE_SQLITE,
                  "/srv/reg/reg_data.sqlite", NULL, 0 },
                { "sqlite", NULL, NULL, VG_STORE_SQLITE, VIGIL_LOCALSTATEDIR "/vigil.sqlite", NULL,
                  0 },
                { "sqlite:////var/lib/keylime/cv_data.sqlite", "/ignored", NULL, VG_STORE_SQLITE,
                  "/var/lib/keylime/cv_data.sqlite", NULL, 0 },
                { "sqlite:///cv.db", "/data", NULL, VG_STORE_SQLITE, "/data/cv.db", NULL, 0 },
                { "sqlite:///sub/cv.db?timeout=2.5", "/data", NULL, VG_STORE_SQLITE,
                  "/data/sub/cv.db", NULL, 2500 },
                { "sqlite+pysqlite:////x/y.db", NULL, NULL, VG_STORE_SQLITE, "/x/y.db", NULL, 0 },
                { "/abs/path.db", "/data", NULL, VG_STORE_SQLITE, "/abs/path.db", NULL, 0 },
                { "rel.db", "/data", NULL, VG_STORE_SQLITE, "/data/rel.db", NULL, 0 },
                { "odd:name.db", "/data", NULL, VG_STORE_SQLITE, "/data/odd:name.db", NULL, 0 },
                { "postgresql://keylime:s3cret@db.example:5432/keylime", NULL, NULL,
                  VG_STORE_POSTGRESQL, "postgresql://keylime:s3cret@db.example:5432/keylime",
                  "postgresql://keylime:***@db.example:5432/keylime", 0 },
                { "postgresql+psycopg2://kl@db/kl", NULL, NULL, VG_STORE_POSTGRESQL,
                  "postgresql://kl@db/kl", "postgresql://kl@db/kl", 0 },
                { "postgres://db/kl", NULL, NULL, VG_STORE_POSTGRESQL, "postgres://db/kl",
                  "postgres://db/kl", 0 },
                { "postgresql://u@db/kl?sslmode=require&password=pw&connect_timeout=5", NULL, NULL,
                  VG_STORE_POSTGRESQL,
                  "postgresql://u@db/kl?sslmode=require&password=pw&connect_timeout=5",
                  "postgresql://u@db/kl?sslmode=require&password=***&connect_timeout=5", 0 },
        };
        static const struct {
                const char *url;
                int rc;
                const char *msg;
        } bad[] = {
                { "", -EINVAL, "database_url is empty; expected \"sqlite\"" },
                { "sqlite:", -EINVAL, "expected \"sqlite\", \"sqlite:///relative/path\"" },
                { "sqlite:cv.db", -EINVAL, "sqlite:////absolute/path" },
                { "sqlite:/cv.db", -EINVAL, "sqlite:////absolute/path" },
                { "sqlite://", -EINVAL, "in-memory database" },
                { "sqlite:///:memory:", -EINVAL, "in-memory database" },
                { "sqlite:///", -EINVAL, "has no file name" },
                { "sqlite://dbhost/cv.db", -EINVAL, "SQLite URLs have no host part" },
                { "sqlite:////x.db?mode=ro", -EINVAL, "unsupported parameter \"mode\"" },
                { "sqlite:////x.db?timeout=soon", -EINVAL, "found \"soon\"" },
                { "mysql://u:p@h/keylime", -ENOTSUP, "MySQL/MariaDB is not supported" },
                { "mysql+pymysql://u@h/kl", -ENOTSUP, "MySQL/MariaDB is not supported" },
                { "ftp://host/x", -EINVAL, "unknown scheme \"ftp\"" },
                { "a-b://host/x", -EINVAL, "unknown scheme;" },
                { "oracle://scott:tiger@db/x", -EINVAL,
                  "\"oracle://scott:***@db/x\": unknown "
                  "scheme \"oracle\"" },
                { "postgresql:db", -EINVAL, "postgresql://user:password@host/dbname" },
        };

        for (size_t i = 0; i < VG_ARRAY_SIZE(good); i++) {
                struct vg_store_options o = { .data_dir = good[i].data_dir,
                                              .default_file = good[i].default_file };
                _cleanup_(vg_store_url_clear) struct vg_store_url u = { 0 };
                struct vg_error err = { 0 };

                is_int(vg_store_url_parse(good[i].url, &o, &u, &err), 0, "\"%s\" parses",
                       good[i].url);
                is_int(u.backend, good[i].backend, "\"%s\": backend", good[i].url);
                is_str(u.target, good[i].target, "\"%s\": target", good[i].url);
                is_str(u.display, good[i].display ? good[i].display : good[i].target,
                       "\"%s\": name shown in messages", good[i].url);
                is_int(u.busy_timeout_ms, good[i].timeout, "\"%s\": busy timeout", good[i].url);
        }
        for (size_t i = 0; i < VG_ARRAY_SIZE(bad); i++) {
                _cleanup_(vg_store_url_clear) struct vg_store_url u = { 0 };
                struct vg_error err = { 0 };

                is_int(vg_store_url_parse(bad[i].url, NULL, &u, &err), bad[i].rc,
                       "\"%s\" is refused", bad[i].url);
                contains(err.msg, bad[i].msg, "\"%s\": the message says why", bad[i].url);
        }

        struct vg_error err = { 0 };
        struct vg_store *s = (struct vg_store *)&err; /* must be reset to NULL */
        /* Port 1: nothing listens there. test_store_pg runs the backend against a server. */
        is_int(vg_store_open(&s, "postgresql://kl:pw@127.0.0.1:1/kl", NULL, &err), -ECONNREFUSED,
               "a PostgreSQL URL without a server gives -ECONNREFUSED");
        ok(s == NULL, "and no handle");
        contains(err.msg, "postgresql://kl:***@127.0.0.1:1/kl: cannot connect",
                 "the message names the database");
        ok(!strstr(err.msg, "pw@"), "the message does not show the password: %s", err.msg);
}

/* ---- opening ---------------------------------------------------------------------------- */

static void test_open_fresh(void)
{
        _cleanup_free_ char *dir = path_in(tmp, "fresh"), *db = NULL, *wal = NULL, *shm = NULL,
                            *url = NULL, *jm = NULL;
        struct vg_store_options o = { .data_dir = dir, .default_file = "cv_data.sqlite" };
        _cleanup_(vg_store_closep) struct vg_store *s = NULL;
        struct vg_error err = { 0 };
        mode_t old;

        mkdir(dir, 0700);
        db = path_in(dir, "cv_data.sqlite");
        wal = path_in(dir, "cv_data.sqlite-wal");
        shm = path_in(dir, "cv_data.sqlite-shm");

        /* With a umask that lets everything through, the file must still be private. */
        old = umask(0);
        is_int(vg_store_open(&s, "sqlite", &o, &err), 0,
               "\"sqlite\" opens data_dir/cv_data.sqlite");
        if (!s)
                tap_bail("%s", vg_error_str(&err));
        exec_or_bail(s, "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)");
        umask(old);

        is_str(vg_store_name(s), db, "the store is named by its file");
        is_int(vg_store_backend(s), VG_STORE_SQLITE, "backend is SQLite");
        is_int(file_mode(db), 0600, "database file is created 0600 even with umask 0");
        is_int(file_mode(wal), 0600, "its -wal file is 0600");
        is_int(file_mode(shm), 0600, "its -shm file is 0600");
        jm = query_text(s, "PRAGMA journal_mode");
        is_str(jm, "wal", "journal_mode is wal");
        is_int(query_int(s, "PRAGMA foreign_keys"), 1, "foreign keys are enforced");
        is_int(query_int(s, "PRAGMA synchronous"), 1, "synchronous is NORMAL");
        is_int(query_int(s, "PRAGMA busy_timeout"), 5000, "busy timeout defaults to 5 s");
        vg_store_close(TAKE_PTR(s));

        o.busy_timeout_ms = 1234;
        s = open_or_bail("sqlite", &o);
        is_int(query_int(s, "PRAGMA busy_timeout"), 1234, "busy timeout from the options");
        is_int(query_int(s, "SELECT x FROM t"), 1, "data survives reopening");
        vg_store_close(TAKE_PTR(s));

        if (asprintf(&url, "sqlite:///%s?timeout=0.25", db) < 0)
                tap_bail("oom");
        s = open_or_bail(url, &o);
        is_int(query_int(s, "PRAGMA busy_timeout"), 250, "?timeout=SECONDS in the URL wins");
        vg_store_close(TAKE_PTR(s));

        /* An existing file keeps its mode; only new files are ours to make private. */
        chmod(db, 0640);
        s = open_or_bail(db, NULL);
        is_int(file_mode(db), 0640, "an existing file's mode is left alone");
}

static void test_open_refused(void)
{
        _cleanup_free_ char *dir = path_in(tmp, "refused"), *missing = NULL, *garbage = NULL,
                            *small = NULL, *before = NULL, *after = NULL, *sub = NULL, *url = NULL;
        struct vg_store *s = NULL;
        struct vg_error err = { 0 };
        struct stat st1, st2;
        size_t n1 = 0, n2 = 0;

        mkdir(dir, 0700);

        missing = path_in(dir, "no/such/dir/cv.sqlite");
        is_int(vg_store_open(&s, missing, NULL, &err), -ENOENT,
               "a database in a missing directory is refused");
        contains(err.msg, "directory", "the message names the directory...");
        contains(err.msg, "/no/such/dir does not exist", "...and says it does not exist");
        ok(!exists(missing), "nothing was created");

        /* A file that is not a database: refused, byte for byte untouched, no side files. */
        garbage = path_in(dir, "garbage.sqlite");
        {
                FILE *f = fopen(garbage, "w");

                for (int i = 0; i < 300; i++)
                        fprintf(f, "line %d: this is a log file, not a database\n", i);
                fclose(f);
        }
        before = tap_read_file(garbage, &n1);
        stat(garbage, &st1);
        err = (struct vg_error){ 0 };
        is_int(vg_store_open(&s, garbage, NULL, &err), -EBADMSG, "a text file is refused");
        contains(err.msg, garbage, "the message names the file");
        contains(err.msg, "not a SQLite database", "the message says it is not a database");
        after = tap_read_file(garbage, &n2);
        stat(garbage, &st2);
        is_mem(after, n2, before, n1, "the file content is unchanged");
        ok(st1.st_mtim.tv_sec == st2.st_mtim.tv_sec && st1.st_mtim.tv_nsec == st2.st_mtim.tv_nsec,
           "the file was not written to");
        _cleanup_free_ char *gw = NULL, *gs = NULL;
        gw = path_in(dir, "garbage.sqlite-wal");
        gs = path_in(dir, "garbage.sqlite-shm");
        ok(!exists(gw) && !exists(gs), "no -wal or -shm file appeared");

        small = path_in(dir, "small.sqlite");
        tap_write_file(small, "hello\n");
        err = (struct vg_error){ 0 };
        is_int(vg_store_open(&s, small, NULL, &err), -EBADMSG,
               "a 6-byte file is not taken for an empty database");
        free(after);
        after = tap_read_file(small, &n2);
        is_str(after, "hello\n", "and is left as it was");

        sub = path_in(dir, "adir");
        mkdir(sub, 0700);
        err = (struct vg_error){ 0 };
        is_int(vg_store_open(&s, sub, NULL, &err), -EISDIR, "a directory is refused");
        contains(err.msg, "is a directory", "with a message saying so");

        if (asprintf(&url, "sqlite:///%s/notadir/x.sqlite", garbage) < 0)
                tap_bail("oom");
        err = (struct vg_error){ 0 };
        is_int(vg_store_open(&s, url, NULL, &err), -ENOTDIR,
               "a path through a regular file is refused");
        contains(err.msg, "is not a directory", "with a message saying so");
        ok(s == NULL, "no handle was returned for any of them");
}

/* The database belongs to someone else and this user may only read it. */
static int open_readonly_as(const char *db, uid_t uid, char *msg, size_t size)
{
        struct vg_error err = { 0 };
        struct vg_store *s = NULL;
        int r;

        if (uid != (uid_t)-1 && (setgid(uid) < 0 || setuid(uid) < 0))
                return -999;
        r = vg_store_open(&s, db, NULL, &err);
        snprintf(msg, size, "%s", err.msg);
        vg_store_close(s);
        return r;
}

static void test_open_readonly(void)
{
        _cleanup_free_ char *dir = path_in(tmp, "ro"), *db = NULL;
        char msg[512] = "";
        int r, pipefd[2];

        mkdir(dir, 0755);
        db = path_in(dir, "reg_data.sqlite");
        vg_store_close(open_or_bail(db, NULL));
        chmod(db, 0444);
        if (geteuid() != 0) {
                r = open_readonly_as(db, (uid_t)-1, msg, sizeof(msg));
        } else {
                /* root may write anything: try as nobody, with read access only. */
                chmod(tmp, 0755);
                if (pipe(pipefd) < 0)
                        tap_bail("pipe");
                fflush(stdout);
                pid_t pid = fork();
                if (pid == 0) {
                        close(pipefd[0]);
                        r = open_readonly_as(db, 65534, msg, sizeof(msg));
                        if (write(pipefd[1], &r, sizeof(r)) < 0 ||
                            write(pipefd[1], msg, sizeof(msg)) < 0)
                                _exit(2);
                        _exit(0);
                }
                close(pipefd[1]);
                if (read(pipefd[0], &r, sizeof(r)) != sizeof(r) ||
                    read(pipefd[0], msg, sizeof(msg)) <= 0)
                        r = -998;
                close(pipefd[0]);
                waitpid(pid, NULL, 0);
                chmod(tmp, 0700);
        }
        if (r == -999) {
                tap_skip("cannot switch to uid 65534", "a read-only database is refused");
                return;
        }
        is_int(r, -EACCES, "a database this user cannot write is refused at open");
        contains(msg, "is not writable by this user", "with a message naming the problem");
        contains(msg, db, "and the file");
}

/* ---- statements ------------------------------------------------------------------------- */

static const struct vg_store_migration crud_schema[] = {
        { 1, "values table",
          "CREATE TABLE vals (id INTEGER PRIMARY KEY, i INTEGER, t TEXT, b BLOB, n TEXT);" },
        { 2, "parents and children",
          "CREATE TABLE parent (uuid TEXT PRIMARY KEY);"
          "CREATE TABLE child (id INTEGER PRIMARY KEY,"
          "  uuid TEXT NOT NULL REFERENCES parent(uuid) ON DELETE CASCADE);" },
};

static void test_crud(void)
{
        _cleanup_free_ char *db = path_in(tmp, "crud.sqlite"), *big = NULL;
        _cleanup_(vg_store_closep) struct vg_store *s = open_or_bail(db, NULL);
        _cleanup_(vg_stmt_freep) struct vg_stmt *ins = NULL, *sel = NULL, *st = NULL;
        struct vg_error err = { 0 };
        uint8_t blob[256];
        const size_t big_len = 4 * 1024 * 1024 + 17;
        size_t len;
        const void *p;
        int r;

        for (size_t i = 0; i < sizeof(blob); i++)
                blob[i] = (uint8_t)(i * 7); /* 0x00 at 0 and 0xe0 ... plenty of NULs */
        blob[100] = 0;
        big = malloc(big_len + 1);
        for (size_t i = 0; i < big_len; i++)
                big[i] = (char)('a' + i % 26);
        big[big_len] = '\0';

        is_int(vg_store_migrate(s, "crud", crud_schema, VG_ARRAY_SIZE(crud_schema), &err), 0,
               "schema created");

        is_int(vg_store_prepare(s, "INSERT INTO vals (i, t, b, n) VALUES ($1, $2, $3, $4)", &ins,
                                &err),
               0, "INSERT prepares");
        is_int(vg_stmt_param_count(ins), 4, "it has 4 parameters");
        vg_stmt_bind_int64(ins, 1, INT64_MIN);
        vg_stmt_bind_text(ins, 2, "Grüße, ключ");
        vg_stmt_bind_blob(ins, 3, blob, sizeof(blob));
        vg_stmt_bind_null(ins, 4);
        is_int(vg_stmt_exec(ins, &err), 0, "row 1 inserted");
        is_int(vg_stmt_changes(ins), 1, "one row changed");
        is_int(vg_stmt_last_insert_id(ins), 1, "its id is 1");

        vg_stmt_bind_int64(ins, 1, INT64_MAX);
        vg_stmt_bind_text(ins, 2, big);
        vg_stmt_bind_blob(ins, 3, "", 0);
        vg_stmt_bind_text(ins, 4, NULL);
        is_int(vg_stmt_exec(ins, &err), 0, "row 2 (4 MiB text, empty blob) inserted");
        is_int(vg_stmt_last_insert_id(ins), 2, "its id is 2");

        is_int(vg_store_prepare(s, "SELECT id, i, t, b, n FROM vals ORDER BY id", &sel, &err), 0,
               "SELECT prepares");
        is_int(vg_stmt_column_count(sel), 5, "5 result columns");
        is_str(vg_stmt_column_name(sel, 3), "b", "column 3 is named b");
        is_int(vg_stmt_step(sel, &err), 1, "first row");
        is_int(vg_stmt_column_type(sel, 1), VG_STORE_INT, "i is an integer");
        is_int(vg_stmt_column_int64(sel, 1), INT64_MIN, "INT64_MIN round-trips");
        is_str(vg_stmt_column_text(sel, 2, &len), "Grüße, ключ", "UTF-8 text round-trips");
        is_int(len, strlen("Grüße, ключ"), "text length is in bytes");
        is_int(vg_stmt_column_type(sel, 3), VG_STORE_BLOB, "b is a blob");
        p = vg_stmt_column_blob(sel, 3, &len);
        is_mem(p, len, blob, sizeof(blob), "a blob with NUL bytes round-trips");
        ok(vg_stmt_column_is_null(sel, 4), "NULL is NULL");
        ok(vg_stmt_column_text(sel, 4, &len) == NULL && len == 0, "NULL text reads as NULL");
        is_int(vg_stmt_step(sel, &err), 1, "second row");
        is_int(vg_stmt_column_int64(sel, 1), INT64_MAX, "INT64_MAX round-trips");
        p = vg_stmt_column_text(sel, 2, &len);
        is_mem(p, len, big, big_len, "4 MiB of text round-trips");
        p = vg_stmt_column_blob(sel, 3, &len);
        ok(p != NULL && len == 0, "an empty blob is empty, not NULL");
        ok(vg_stmt_column_is_null(sel, 4), "text bound from a NULL pointer is NULL");
        ok(vg_stmt_column_blob(sel, 9, &len) == NULL && vg_stmt_column_int64(sel, -1) == 0,
           "out-of-range columns read as NULL");
        is_int(vg_stmt_step(sel, &err), 0, "no third row");
        is_int(vg_stmt_step(sel, &err), 0, "a finished query stays finished");
        ok(vg_stmt_column_text(sel, 2, NULL) == NULL, "no current row: getters give NULL");
        vg_stmt_reset(sel);
        is_int(vg_stmt_step(sel, &err), 1, "after reset the query runs again");
        vg_stmt_reset(sel);

        /* $N are matched by number, not by order of appearance (SQLite's own numbering). */
        is_int(vg_store_prepare(s, "SELECT $2 || '-' || $1 || '-' || $2", &st, &err), 0,
               "a statement using $2 before $1, and $2 twice, prepares");
        is_int(vg_stmt_param_count(st), 2, "it has 2 parameters");
        vg_stmt_bind_text(st, 1, "one");
        vg_stmt_bind_text(st, 2, "two");
        is_int(vg_stmt_step(st, &err), 1, "and runs");
        is_str(vg_stmt_column_text(st, 0, NULL), "two-one-two", "each $N got its own value");
        vg_stmt_bind_text(st, 1, "uno");
        is_int(vg_stmt_step(st, &err), 1, "rebinding one value starts a new run");
        is_str(vg_stmt_column_text(st, 0, NULL), "two-uno-two", "the other value was kept");
        vg_stmt_free(TAKE_PTR(st));

        /* UPDATE / DELETE counts. */
        is_int(vg_store_prepare(s, "UPDATE vals SET n = $1 WHERE id >= $2", &st, &err), 0,
               "UPDATE prepares");
        vg_stmt_bind_text(st, 1, "x");
        vg_stmt_bind_int64(st, 2, 1);
        is_int(vg_stmt_exec(st, &err), 0, "UPDATE runs");
        is_int(vg_stmt_changes(st), 2, "UPDATE changed 2 rows");
        vg_stmt_free(TAKE_PTR(st));
        is_int(vg_store_prepare(s, "DELETE FROM vals WHERE id = $1 RETURNING i", &st, &err), 0,
               "DELETE ... RETURNING prepares");
        vg_stmt_bind_int64(st, 1, 2);
        is_int(vg_stmt_step(st, &err), 1, "RETURNING gives a row");
        is_int(vg_stmt_column_int64(st, 0), INT64_MAX, "with the deleted value");
        is_int(vg_stmt_step(st, &err), 0, "and finishes");
        is_int(vg_stmt_changes(st), 1, "DELETE removed 1 row");
        vg_stmt_free(TAKE_PTR(st));
        is_int(query_int(s, "SELECT count(*) FROM vals"), 1, "one row left");

        /* Constraints surface as errno values callers can act on. */
        is_int(vg_store_prepare(s, "INSERT INTO parent (uuid) VALUES ($1)", &st, &err), 0,
               "INSERT parent prepares");
        vg_stmt_bind_text(st, 1, "d432fbb3-d2f1-4a97-9ef7-75bd81c00000");
        is_int(vg_stmt_exec(st, &err), 0, "a parent row is inserted");
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_exec(st, &err), -EEXIST, "the same primary key again gives -EEXIST");
        contains(err.msg, "UNIQUE constraint failed: parent.uuid", "naming the constraint");
        contains(err.msg, "INSERT INTO parent (uuid) VALUES ($1)", "and the statement");
        contains(err.msg, db, "and the database");
        vg_stmt_free(TAKE_PTR(st));

        is_int(vg_store_prepare(s, "INSERT INTO child (uuid) VALUES ($1)", &st, &err), 0,
               "INSERT child prepares");
        vg_stmt_bind_text(st, 1, "no-such-parent");
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_exec(st, &err), -EINVAL, "a dangling foreign key is refused");
        contains(err.msg, "FOREIGN KEY constraint failed", "because foreign keys are on");
        vg_stmt_bind_text(st, 1, "d432fbb3-d2f1-4a97-9ef7-75bd81c00000");
        is_int(vg_stmt_exec(st, &err), 0, "a child of an existing parent is accepted");
        vg_stmt_free(TAKE_PTR(st));
        exec_or_bail(s, "DELETE FROM parent");
        is_int(query_int(s, "SELECT count(*) FROM child"), 0, "ON DELETE CASCADE works");

        /* Placeholders PostgreSQL would not accept are refused here already. */
        static const struct {
                const char *sql, *msg;
        } badsql[] = {
                { "SELECT * FROM vals WHERE id = ?", "placeholder \"?\" is not allowed" },
                { "SELECT * FROM vals WHERE id = ?1", "placeholder \"?1\" is not allowed" },
                { "SELECT * FROM vals WHERE id = :id", "placeholder \":id\" is not allowed" },
                { "SELECT * FROM vals WHERE id = $id", "placeholder \"$id\" is not allowed" },
                { "SELECT * FROM vals WHERE id = $01", "placeholder \"$01\" is not allowed" },
                { "SELECT $1, $3", "$2 is never used" },
                { "SELECT 1; SELECT 2", "holds more than one statement" },
                { "  /* nothing */ ", "empty statement" },
                { "SELEC 1", "near \"SELEC\": syntax error" },
                { "SELECT nosuchcol FROM vals", "no such column: nosuchcol" },
        };
        for (size_t i = 0; i < VG_ARRAY_SIZE(badsql); i++) {
                err = (struct vg_error){ 0 };
                r = vg_store_prepare(s, badsql[i].sql, &st, &err);
                ok(r == -EINVAL && st == NULL, "refused: %s", badsql[i].sql);
                contains(err.msg, badsql[i].msg, "message for: %s", badsql[i].sql);
                contains(err.msg, db, "the message names the database");
        }
        is_int(vg_store_prepare(s, "SELECT 1; -- trailing comment\n ;", &st, &err), 0,
               "a trailing semicolon and comment are fine");
        vg_stmt_free(TAKE_PTR(st));

        /* Binding mistakes are reported by the next step. */
        is_int(vg_store_prepare(s, "SELECT $1, $2", &st, &err), 0, "SELECT $1, $2 prepares");
        vg_stmt_bind_int64(st, 1, 1);
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_step(st, &err), -EINVAL, "running with $2 unbound is refused");
        contains(err.msg, "$2 was not bound", "with a message naming $2");
        is_int(vg_stmt_bind_int64(st, 3, 3), -ERANGE, "binding $3 fails at once");
        vg_stmt_bind_int64(st, 2, 2);
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_step(st, &err), -ERANGE, "and is reported by the next step");
        contains(err.msg, "cannot bind $3: the statement has $1..$2", "saying what exists");
        is_int(vg_stmt_step(st, &err), 1, "once reported, the statement runs");
        is_int(vg_stmt_column_int64(st, 1), 2, "with the values bound");

        err = (struct vg_error){ 0 };
        is_int(vg_store_exec(s,
                             "CREATE TABLE e (x); INSERT INTO e VALUES (1); "
                             "INSERT INTO nosuch VALUES (2); INSERT INTO e VALUES (3)",
                             &err),
               -EINVAL, "a script stops at its first failing statement");
        contains(err.msg, "\"INSERT INTO nosuch VALUES (2)\" failed: no such table: nosuch",
                 "and the message quotes that statement");
        is_int(query_int(s, "SELECT count(*) FROM e"), 1, "statements before it ran");
}

/* ---- transactions ----------------------------------------------------------------------- */

static int add_row(struct vg_store *s, void *data, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int r = vg_store_prepare(s, "INSERT INTO t (x) VALUES ($1)", &st, err);

        if (r < 0)
                return r;
        vg_stmt_bind_int64(st, 1, *(int *)data);
        return vg_stmt_exec(st, err);
}

static int add_then_fail(struct vg_store *s, void *data, struct vg_error *err)
{
        int r = add_row(s, data, err);

        return r < 0 ? r : vg_error_set(err, -ENOKEY, "policy not found");
}

struct flaky {
        int calls, fail_first;
};

/* A conflict that clears up: the first fail_first runs report -EBUSY, as a PostgreSQL
 * serialization failure or a stale SQLite snapshot would. */
static int flaky_add(struct vg_store *s, void *data, struct vg_error *err)
{
        struct flaky *f = data;
        int v = 10, r = add_row(s, &v, err);

        if (r < 0)
                return r;
        if (++f->calls <= f->fail_first)
                return vg_error_set(err, -EBUSY, "simulated conflict");
        return 0;
}

static void test_transactions(void)
{
        _cleanup_free_ char *db = path_in(tmp, "txn.sqlite");
        _cleanup_(vg_store_closep) struct vg_store *s = open_or_bail(db, NULL);
        _cleanup_(vg_store_closep) struct vg_store *other = NULL;
        struct vg_error err = { 0 };
        int v;

        exec_or_bail(s, "CREATE TABLE t (x INTEGER)");
        other = open_or_bail(db, NULL);

        is_int(vg_store_begin(s, &err), 0, "begin");
        ok(vg_store_in_transaction(s), "in a transaction");
        exec_or_bail(s, "INSERT INTO t VALUES (1)");
        is_int(query_int(other, "SELECT count(*) FROM t"), 0,
               "another connection does not see uncommitted rows");
        is_int(vg_store_begin(s, &err), -EINVAL, "begin does not nest");
        contains(err.msg, "already open", "and says so");
        is_int(vg_store_rollback(s, &err), 0, "rollback");
        ok(!vg_store_in_transaction(s), "no longer in a transaction");
        is_int(query_int(s, "SELECT count(*) FROM t"), 0, "the row is gone");
        is_int(vg_store_rollback(s, &err), 0, "rollback without a transaction is a no-op");
        err = (struct vg_error){ 0 };
        is_int(vg_store_commit(s, &err), -EINVAL, "commit without a transaction is refused");

        is_int(vg_store_begin(s, &err), 0, "begin again");
        exec_or_bail(s, "INSERT INTO t VALUES (2)");
        is_int(vg_store_commit(s, &err), 0, "commit");
        is_int(query_int(other, "SELECT count(*) FROM t"), 1, "the other connection sees it");

        v = 3;
        is_int(vg_store_transact(s, add_row, &v, &err), 0, "vg_store_transact commits");
        is_int(query_int(other, "SELECT count(*) FROM t WHERE x = 3"), 1, "its row is there");
        v = 4;
        err = (struct vg_error){ 0 };
        is_int(vg_store_transact(s, add_then_fail, &v, &err), -ENOKEY,
               "a failing function's error is passed back");
        is_str(err.msg, "policy not found", "with its message");
        is_int(query_int(other, "SELECT count(*) FROM t WHERE x = 4"), 0,
               "and its work is rolled back");
        ok(!vg_store_in_transaction(s), "no transaction is left open");

        struct flaky f = { .fail_first = 2 };
        is_int(vg_store_transact(s, flaky_add, &f, &err), 0,
               "a transaction that hit a conflict is retried and succeeds");
        is_int(f.calls, 3, "the function ran three times");
        is_int(query_int(other, "SELECT count(*) FROM t WHERE x = 10"), 1,
               "and its row is there once");

        _cleanup_free_ char *url = NULL;
        if (asprintf(&url, "sqlite:///%s?timeout=0.2", db) < 0)
                tap_bail("oom");
        _cleanup_(vg_store_closep) struct vg_store *quick = open_or_bail(url, NULL);
        f = (struct flaky){ .fail_first = 1000 };
        err = (struct vg_error){ 0 };
        is_int(vg_store_transact(quick, flaky_add, &f, &err), -EBUSY,
               "a conflict that does not clear up gives -EBUSY");
        ok(f.calls > 1 && f.calls <= VG_STORE_TRANSACT_ATTEMPTS,
           "after a bounded number of attempts (%d)", f.calls);
        contains(err.msg, "gave up after", "the message says it gave up");
        contains(err.msg, "simulated conflict", "and why");
        is_int(query_int(other, "SELECT count(*) FROM t WHERE x = 10"), 1,
               "none of the failed attempts left a row");

        /* Closing with a transaction open loses it, as a crash would. */
        vg_store_begin(s, &err);
        exec_or_bail(s, "INSERT INTO t VALUES (5)");
        vg_store_close(TAKE_PTR(s));
        is_int(query_int(other, "SELECT count(*) FROM t WHERE x = 5"), 0,
               "closing rolls back an open transaction");

        /* A statement outliving its store may still be freed. */
        _cleanup_(vg_stmt_freep) struct vg_stmt *late = NULL;
        s = open_or_bail(db, NULL);
        vg_store_prepare(s, "SELECT x FROM t", &late, &err);
        vg_stmt_step(late, &err);
        vg_store_close(TAKE_PTR(s));
        is_int(vg_stmt_step(late, &err), -EBADF, "a statement of a closed store refuses to run");
}

/* ---- migrations ------------------------------------------------------------------------- */

#define M1                                                                                         \
        {                                                                                          \
                1, "agents table",                                                                 \
                    "CREATE TABLE agents (uuid TEXT PRIMARY KEY, ek_tpm BLOB, port INTEGER);"      \
        }
#define M2                                                                                         \
        {                                                                                          \
                2, "registration count",                                                           \
                    "ALTER TABLE agents ADD COLUMN regcount INTEGER NOT NULL DEFAULT 0;"           \
                    "CREATE INDEX agents_port ON agents (port);"                                   \
        }
#define M3                                                                                         \
        {                                                                                          \
                3, "active flag",                                                                  \
                    "ALTER TABLE agents ADD COLUMN active INTEGER NOT NULL DEFAULT 0"              \
        }

static void test_migrations(void)
{
        static const struct vg_store_migration v2[] = { M1, M2 }, v3[] = { M1, M2, M3 };
        static const struct vg_store_migration broken[] = {
                M1,
                M2,
                { 3, "half-done change",
                  "CREATE TABLE half (x INTEGER); UPDATE agents SET port = 0;"
                  "INSERT INTO nosuchtable VALUES (1)" },
        };
        static const struct vg_store_migration unordered[] = { M2, M1 };
        static const struct vg_store_migration zero[] = { { 0, "zero", "SELECT 1" } };
        static const struct vg_store_migration verifier[] = {
                { 1, "verifier agents", "CREATE TABLE verifier_agents (uuid TEXT PRIMARY KEY)" },
        };
        _cleanup_free_ char *db = path_in(tmp, "migrate.sqlite"), *when = NULL, *when2 = NULL,
                            *before = NULL, *after = NULL;
        _cleanup_(vg_store_closep) struct vg_store *s = open_or_bail(db, NULL);
        struct vg_error err = { 0 };
        size_t n1, n2;
        int v = -1;

        is_int(vg_store_schema_version(s, "registrar", &v, &err), 0, "version of a fresh database");
        is_int(v, 0, "is 0");
        is_int(vg_store_migrate(s, "registrar", v2, VG_ARRAY_SIZE(v2), &err), 0,
               "migrations 1-2 apply to a fresh database");
        vg_store_schema_version(s, "registrar", &v, &err);
        is_int(v, 2, "registrar schema is at version 2");
        is_int(query_int(s, "SELECT count(*) FROM vigil_schema WHERE component = 'registrar'"), 2,
               "vigil_schema records both migrations");
        when = query_text(s, "SELECT applied_at FROM vigil_schema WHERE version = 2");
        ok(when && strlen(when) == 20 && when[4] == '-' && when[10] == 'T' && when[19] == 'Z',
           "applied_at is an ISO 8601 UTC time: %s", when ? when : "(null)");
        _cleanup_free_ char *desc =
            query_text(s, "SELECT description FROM vigil_schema WHERE version = 2");
        is_str(desc, "registration count", "and the description is recorded");
        exec_or_bail(s, "INSERT INTO agents (uuid, ek_tpm, port, regcount) "
                        "VALUES ('a1', x'00ff00', 9002, 3)");
        vg_store_close(TAKE_PTR(s));

        s = open_or_bail(db, NULL);
        is_int(vg_store_migrate(s, "registrar", v2, VG_ARRAY_SIZE(v2), &err), 0,
               "running the same migrations again succeeds");
        is_int(query_int(s, "SELECT count(*) FROM vigil_schema"), 2, "and records nothing new");
        when2 = query_text(s, "SELECT applied_at FROM vigil_schema WHERE version = 2");
        is_str(when2, when, "applied_at is unchanged");

        err = (struct vg_error){ 0 };
        is_int(vg_store_migrate(s, "registrar", broken, VG_ARRAY_SIZE(broken), &err), -EINVAL,
               "a failing migration fails");
        contains(err.msg, "migration 3 (half-done change) of the registrar schema failed",
                 "the message names the migration");
        contains(err.msg, "no such table: nosuchtable", "and the cause");
        contains(err.msg, "INSERT INTO nosuchtable VALUES (1)", "and the statement");
        contains(err.msg, db, "and the database");
        vg_store_schema_version(s, "registrar", &v, &err);
        is_int(v, 2, "the database stays at version 2");
        is_int(query_int(s, "SELECT count(*) FROM sqlite_master WHERE name = 'half'"), 0,
               "the migration's first statements were rolled back");
        is_int(query_int(s, "SELECT port FROM agents WHERE uuid = 'a1'"), 9002,
               "data it changed is as it was");
        ok(!vg_store_in_transaction(s), "no transaction is left open");

        is_int(vg_store_migrate(s, "registrar", v3, VG_ARRAY_SIZE(v3), &err), 0,
               "migration 3 applies incrementally");
        vg_store_schema_version(s, "registrar", &v, &err);
        is_int(v, 3, "registrar schema is at version 3");
        is_int(query_int(s, "SELECT regcount + active FROM agents WHERE uuid = 'a1'"), 3,
               "existing rows kept their data and got the new column's default");

        is_int(vg_store_migrate(s, "verifier", verifier, 1, &err), 0,
               "another component migrates in the same database");
        vg_store_schema_version(s, "verifier", &v, &err);
        is_int(v, 1, "verifier schema is at version 1");
        vg_store_schema_version(s, "registrar", &v, &err);
        is_int(v, 3, "registrar schema is still at version 3");

        err = (struct vg_error){ 0 };
        is_int(vg_store_migrate(s, "registrar", unordered, 2, &err), -EINVAL,
               "migrations out of order are refused");
        contains(err.msg, "versions must start at 1 and increase", "with the rule");
        is_int(vg_store_migrate(s, "registrar", zero, 1, &err), -EINVAL, "version 0 is refused");
        vg_store_close(TAKE_PTR(s));

        /* An older vigil meets a newer database: refuse and do not write a byte. */
        before = tap_read_file(db, &n1);
        s = open_or_bail(db, NULL);
        err = (struct vg_error){ 0 };
        is_int(vg_store_migrate(s, "registrar", v2, VG_ARRAY_SIZE(v2), &err), -EPROTO,
               "a database newer than the code is refused");
        contains(err.msg, "schema is at version 3, but this vigil knows versions up to 2",
                 "the message gives both versions");
        contains(err.msg, db, "and the database");
        is_int(vg_store_migrate(s, "registrar", NULL, 0, &err), -EPROTO,
               "also by code that knows no migration at all");
        vg_store_close(TAKE_PTR(s));
        after = tap_read_file(db, &n2);
        is_mem(after, n2, before, n1, "the database file is byte for byte unchanged");
}

/* ---- several processes ------------------------------------------------------------------ */

static int bump(struct vg_store *s, void *data, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int64_t n;
        int r;

        /* Read, then write: lost updates would show if two writers overlapped. */
        r = vg_store_prepare(s, "SELECT n FROM counter WHERE id = 1", &st, err);
        if (r < 0 || (r = vg_stmt_step(st, err)) < 0)
                return r;
        n = vg_stmt_column_int64(st, 0);
        vg_stmt_free(TAKE_PTR(st));
        r = vg_store_prepare(s, "UPDATE counter SET n = $1 WHERE id = 1", &st, err);
        if (r < 0)
                return r;
        vg_stmt_bind_int64(st, 1, n + 1);
        return vg_stmt_exec(st, err);
}

static int bump_many(const char *db, int times)
{
        struct vg_store_options o = { .busy_timeout_ms = 10000 };
        _cleanup_(vg_store_closep) struct vg_store *s = NULL;
        struct vg_error err = { 0 };

        if (vg_store_open(&s, db, &o, &err) < 0)
                return -1;
        for (int i = 0; i < times; i++)
                if (vg_store_transact(s, bump, NULL, &err) < 0) {
                        fprintf(stderr, "writer: %s\n", vg_error_str(&err));
                        return -1;
                }
        return 0;
}

static const struct vg_store_migration tang_schema[] = {
        { 1, "keys", "CREATE TABLE tang_keys (thp TEXT PRIMARY KEY, jwk TEXT NOT NULL)" },
        { 2, "hidden", "ALTER TABLE tang_keys ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0" },
        { 3, "created", "ALTER TABLE tang_keys ADD COLUMN created INTEGER" },
};

static int migrate_tang(const char *db)
{
        _cleanup_(vg_store_closep) struct vg_store *s = NULL;
        struct vg_error err = { 0 };

        if (vg_store_open(&s, db, NULL, &err) < 0 ||
            vg_store_migrate(s, "tang", tang_schema, VG_ARRAY_SIZE(tang_schema), &err) < 0) {
                fprintf(stderr, "migrate: %s\n", vg_error_str(&err));
                return -1;
        }
        return 0;
}

static int wait_child(pid_t pid)
{
        int status;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_concurrency(void)
{
        _cleanup_free_ char *db = path_in(tmp, "shared.sqlite");
        _cleanup_(vg_store_closep) struct vg_store *s = open_or_bail(db, NULL);
        struct vg_error err = { 0 };
        int go[2], res[2];
        pid_t pid;

        exec_or_bail(s, "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
                        "INSERT INTO counter VALUES (1, 0);"
                        "CREATE TABLE t (x INTEGER)");

        /* Two processes, 300 read-modify-write transactions each, on one file. */
        fflush(stdout);
        pid = fork();
        if (pid == 0)
                _exit(bump_many(db, 300) < 0 ? 1 : 0);
        is_int(bump_many(db, 300), 0, "parent's 300 transactions succeed");
        is_int(wait_child(pid), 0, "child's 300 concurrent transactions succeed");
        is_int(query_int(s, "SELECT n FROM counter"), 600, "no update was lost");

        /* Two processes starting at once both migrate the same database. */
        fflush(stdout);
        pid = fork();
        if (pid == 0)
                _exit(migrate_tang(db) < 0 ? 1 : 0);
        is_int(migrate_tang(db), 0, "parent's migration succeeds");
        is_int(wait_child(pid), 0, "child's simultaneous migration succeeds");
        is_int(query_int(s, "SELECT count(*) FROM vigil_schema WHERE component = 'tang'"), 3,
               "each migration was applied and recorded exactly once");

        /* A writer holds the lock: a short busy timeout gives a clear -EBUSY; the default
         * one waits until the lock is free. The child is forked before the parent takes the
         * lock: SQLite tracks locks per process, and a child born while its parent held one
         * would inherit a copy that is never released. */
        if (pipe(go) < 0 || pipe(res) < 0)
                tap_bail("pipe");
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                struct vg_store_options quick = { .busy_timeout_ms = 100 };
                struct vg_store *c = NULL;
                struct vg_error cerr = { 0 };
                int r1, r2 = -1;
                double t0, waited;
                char msg[512], byte;

                close(go[1]);
                close(res[0]);
                if (read(go[0], &byte, 1) != 1)
                        _exit(2);
                r1 = vg_store_open(&c, db, &quick, &cerr);
                if (r1 == 0)
                        r1 = vg_store_begin(c, &cerr);
                snprintf(msg, sizeof(msg), "%s", cerr.msg);
                vg_store_close(c);
                c = NULL;
                /* Tell the parent, then try again with the default timeout. */
                if (write(res[1], &r1, sizeof(r1)) < 0 || write(res[1], msg, sizeof(msg)) < 0)
                        _exit(2);
                t0 = now_s();
                if (vg_store_open(&c, db, NULL, &cerr) == 0) {
                        r2 = vg_store_begin(c, &cerr);
                        if (r2 == 0)
                                r2 = vg_store_exec(c, "INSERT INTO t VALUES (2)", &cerr);
                        if (r2 == 0)
                                r2 = vg_store_commit(c, &cerr);
                }
                waited = now_s() - t0;
                if (r2 < 0)
                        fprintf(stderr, "child: %s\n", cerr.msg);
                vg_store_close(c);
                if (write(res[1], &r2, sizeof(r2)) < 0 ||
                    write(res[1], &waited, sizeof(waited)) < 0)
                        _exit(2);
                _exit(0);
        }
        is_int(vg_store_begin(s, &err), 0, "parent takes the write lock");
        exec_or_bail(s, "INSERT INTO t VALUES (1)");
        if (write(go[1], "g", 1) != 1)
                tap_bail("pipe");
        close(go[0]);
        close(go[1]);
        close(res[1]);
        int r1 = 0, r2 = 0;
        double waited = 0;
        char msg[512] = "";
        if (read(res[0], &r1, sizeof(r1)) != sizeof(r1) || read(res[0], msg, sizeof(msg)) <= 0)
                tap_bail("child did not report");
        is_int(r1, -EBUSY, "a second writer with a 100 ms busy timeout gets -EBUSY");
        contains(msg, "database is locked", "the message says the database is locked");
        contains(msg, "100 ms busy timeout", "and for how long it waited");
        contains(msg, db, "and names the file");
        /* Hold the lock a little longer, then let the waiting child in. */
        usleep(300 * 1000);
        is_int(vg_store_commit(s, &err), 0, "parent commits");
        if (read(res[0], &r2, sizeof(r2)) != sizeof(r2) ||
            read(res[0], &waited, sizeof(waited)) != sizeof(waited))
                tap_bail("child did not report");
        close(res[0]);
        is_int(wait_child(pid), 0, "child exits cleanly");
        is_int(r2, 0, "a writer with the default busy timeout waits and succeeds");
        ok(waited >= 0.2, "it waited for the lock (%.3f s)", waited);
        is_int(query_int(s, "SELECT count(*) FROM t"), 2, "both writers' rows are there");
}

/* ---- corruption ------------------------------------------------------------------------- */

static void test_corruption(void)
{
        _cleanup_free_ char *db = path_in(tmp, "corrupt.sqlite");
        struct vg_store_options check = { .check_integrity = true };
        struct vg_store *s = open_or_bail(db, NULL);
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };
        uint8_t junk[8192];
        int fd, r;

        exec_or_bail(s, "CREATE TABLE ima (path TEXT);"
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                        "  SELECT i + 1 FROM n WHERE i < 2000) "
                        "INSERT INTO ima SELECT "
                        "  printf('/usr/bin/tool-%06d-%s', i, hex(randomblob(32))) FROM n");
        is_int(vg_store_check_integrity(s, &err), 0, "a healthy database passes the check");
        vg_store_close(s);
        vg_store_close(open_or_bail(db, &check));
        ok(true, "and opens with check_integrity");

        /* Overwrite the table's pages, keep the header and schema page intact. */
        memset(junk, 0xa5, sizeof(junk));
        fd = open(db, O_WRONLY);
        if (fd < 0 || pwrite(fd, junk, sizeof(junk), 4096) != (ssize_t)sizeof(junk))
                tap_bail("cannot corrupt %s", db);
        close(fd);

        s = NULL;
        err = (struct vg_error){ 0 };
        is_int(vg_store_open(&s, db, &check, &err), -EBADMSG,
               "a corrupt database is refused when opened with check_integrity");
        contains(err.msg, "is corrupt", "the message says it is corrupt");
        contains(err.msg, db, "and names the file");
        ok(s == NULL, "no handle is returned");

        s = open_or_bail(db, NULL);
        err = (struct vg_error){ 0 };
        r = vg_store_prepare(s, "SELECT count(*), max(path) FROM ima", &st, &err);
        if (r == 0)
                r = vg_stmt_step(st, &err);
        is_int(r, -EBADMSG, "reading corrupt pages gives -EBADMSG");
        contains(err.msg, "malformed", "with SQLite's diagnosis");
        contains(err.msg, db, "and the file name");
        vg_stmt_free(TAKE_PTR(st));
        vg_store_close(s);
}

int main(void)
{
        tmp = tap_tmpdir();
        /* The test itself runs the library's log lines into stderr; keep TAP on stdout. */
        signal(SIGPIPE, SIG_IGN);

        test_url();
        test_open_fresh();
        test_open_refused();
        test_open_readonly();
        test_crud();
        test_transactions();
        test_migrations();
        test_concurrency();
        test_corruption();
        free(tmp);
        return tap_done();
}
