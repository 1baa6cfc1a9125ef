/* vigil tests: the store's PostgreSQL backend against a real PostgreSQL 15 server: typed
 * statements, constraint errors, transactions, concurrent writers and migrators, connection
 * errors that name the URL without its password. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "pg.h"
#include "store.h"
#include "tap.h"

static struct vg_pg *server;

static char *new_db(const char *name)
{
        struct vg_error err = { 0 };
        char *url;

        if (vg_pg_create_db(server, name, &url, &err) < 0)
                tap_bail("%s", vg_error_str(&err));
        return url;
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

/* ---- URLs and connecting -------------------------------------------------------------------- */

static void test_connect(void)
{
        struct vg_error err = { 0 };
        struct vg_store *s = (struct vg_store *)&err;
        _cleanup_free_ char *bad_pw = NULL, *no_db = NULL, *refused = NULL, *shown = NULL;
        _cleanup_(vg_store_url_clear) struct vg_store_url u = { 0 };
        int port = vg_pg_port(server);

        is_int(vg_store_url_parse(vg_pg_url(server), NULL, &u, &err), 0, "the server's URL parses");
        is_int(u.backend, VG_STORE_POSTGRESQL, "as PostgreSQL");
        shown = tap_strf("postgresql://vigil:***@127.0.0.1:%d/postgres", port);
        is_str(u.display, shown, "and is shown without its password");

        s = open_or_bail(vg_pg_url(server), NULL);
        is_int(vg_store_backend(s), VG_STORE_POSTGRESQL, "a PostgreSQL URL opens a connection");
        is_str(vg_store_name(s), shown, "named by the URL without its password");
        _cleanup_free_ char *lt = query_text(s, "SELECT current_setting('lock_timeout')");
        is_str(lt, "5s", "the default busy timeout becomes lock_timeout = 5 s");
        is_int(vg_store_check_integrity(s, &err), 0, "the integrity check asks the server");
        vg_store_close(s);

        struct vg_store_options quick = { .busy_timeout_ms = 250 };
        s = open_or_bail(vg_pg_url(server), &quick);
        free(lt);
        lt = query_text(s, "SELECT current_setting('lock_timeout')");
        is_str(lt, "250ms", "busy_timeout_ms becomes lock_timeout");
        vg_store_close(s);

        bad_pw = tap_strf("postgresql://vigil:WRONGPASS@127.0.0.1:%d/postgres", port);
        s = (struct vg_store *)&err;
        err = (struct vg_error){ 0 };
        is_int(vg_store_open(&s, bad_pw, NULL, &err), -EACCES, "a wrong password gives -EACCES");
        ok(s == NULL, "and no handle");
        _cleanup_free_ char *bad_shown =
            tap_strf("database postgresql://vigil:***@127.0.0.1:%d/postgres: cannot connect", port);
        contains(err.msg, bad_shown, "the message names the URL with the password redacted");
        contains(err.msg, "password authentication failed", "and says what failed");
        ok(!strstr(err.msg, "WRONGPASS"), "and does not show the password: %s", err.msg);

        no_db =
            tap_strf("postgresql://vigil:%s@127.0.0.1:%d/nosuchdb", vg_pg_password(server), port);
        err = (struct vg_error){ 0 };
        is_int(vg_store_open(&s, no_db, NULL, &err), -ENOENT, "a missing database gives -ENOENT");
        contains(err.msg, "\"nosuchdb\" does not exist", "with the server's reason");
        ok(!strstr(err.msg, vg_pg_password(server)), "and without the password");

        /* A port nobody listens on. */
        refused = tap_strf("postgresql://vigil:s3cret@127.0.0.1:%d/kl?connect_timeout=2",
                           tap_free_port());
        err = (struct vg_error){ 0 };
        is_int(vg_store_open(&s, refused, NULL, &err), -ECONNREFUSED,
               "an unreachable server gives -ECONNREFUSED");
        contains(err.msg, "postgresql://vigil:***@127.0.0.1:", "the message names the URL");
        contains(err.msg, "Connection refused", "and the reason");
        ok(!strstr(err.msg, "s3cret"), "and not the password: %s", err.msg);

        err = (struct vg_error){ 0 };
        is_int(vg_store_open(&s, "postgresql://u:pw@127.0.0.1:1/x?bogus=1", NULL, &err), -EIO,
               "a parameter libpq does not know is refused");
        contains(err.msg, "bogus", "naming it");
        ok(!strstr(err.msg, ":pw@"), "without the password");
}

/* ---- statements ----------------------------------------------------------------------------- */

/* Portable except for the id: SQLite's INTEGER PRIMARY KEY is a plain int4 here. */
static const struct vg_store_migration crud_schema[] = {
        { 1, "values table",
          "CREATE TABLE vals (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
          " i BIGINT, t TEXT, b BYTEA, n TEXT, r DOUBLE PRECISION, small INTEGER);" },
        { 2, "parents and children",
          "CREATE TABLE parent (uuid TEXT PRIMARY KEY);"
          "CREATE TABLE child (id INTEGER PRIMARY KEY,"
          "  uuid TEXT NOT NULL REFERENCES parent(uuid) ON DELETE CASCADE,"
          "  age INTEGER CHECK (age >= 0));" },
};

static void test_crud(const char *url)
{
        _cleanup_(vg_store_closep) struct vg_store *s = open_or_bail(url, NULL);
        _cleanup_(vg_stmt_freep) struct vg_stmt *ins = NULL, *sel = NULL, *st = NULL;
        _cleanup_free_ char *big = NULL;
        const char *name = vg_store_name(s);
        struct vg_error err = { 0 };
        uint8_t blob[256];
        const size_t big_len = 4 * 1024 * 1024 + 17;
        size_t len;
        const void *p;
        int r;

        for (size_t i = 0; i < sizeof(blob); i++)
                blob[i] = (uint8_t)(i * 7);
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
        is_int(vg_stmt_last_insert_id(ins), 1, "its id is 1 (lastval())");

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
        is_int(vg_stmt_column_type(sel, 1), VG_STORE_INT, "i (BIGINT) is an integer");
        is_int(vg_stmt_column_int64(sel, 1), INT64_MIN, "INT64_MIN round-trips");
        is_str(vg_stmt_column_text(sel, 2, &len), "Grüße, ключ", "UTF-8 text round-trips");
        is_int(len, strlen("Grüße, ключ"), "text length is in bytes");
        is_int(vg_stmt_column_type(sel, 2), VG_STORE_TEXT, "t is text");
        is_int(vg_stmt_column_type(sel, 3), VG_STORE_BLOB, "b (BYTEA) is a blob");
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

        /* A column of a type without a binary decoder (numeric): the result comes as text. */
        vg_stmt_free(TAKE_PTR(st));
        is_int(vg_store_prepare(s,
                                "SELECT sum(i::numeric) / 2, b, 2.5::float8, 1.5::numeric, "
                                "(1 = 1), 7::int2 FROM vals WHERE id = 1 GROUP BY b",
                                &st, &err),
               0, "a query with numeric, float, bool and int2 columns prepares");
        is_int(vg_stmt_step(st, &err), 1, "and runs");
        is_int(vg_stmt_column_type(st, 0), VG_STORE_INT, "a whole numeric reads as an integer");
        is_int(vg_stmt_column_int64(st, 0), INT64_MIN / 2, "with its value");
        p = vg_stmt_column_blob(st, 1, &len);
        is_mem(p, len, blob, sizeof(blob), "bytea in text form is decoded to the same bytes");
        is_int(vg_stmt_column_type(st, 2), VG_STORE_REAL, "float8 is REAL");
        is_str(vg_stmt_column_text(st, 2, NULL), "2.5", "and reads as text");
        is_int(vg_stmt_column_type(st, 3), VG_STORE_REAL, "a fractional numeric is REAL");
        is_int(vg_stmt_column_int64(st, 3), 1, "and truncates to an integer");
        is_int(vg_stmt_column_type(st, 4), VG_STORE_INT, "a boolean is an integer");
        is_int(vg_stmt_column_int64(st, 4), 1, "true is 1");
        is_str(vg_stmt_column_text(st, 4, NULL), "1", "also as text");
        is_int(vg_stmt_column_int64(st, 5), 7, "int2 reads as an integer");
        vg_stmt_free(TAKE_PTR(st));

        /* Binary results: float8, int2 and bool decoded from their binary form. */
        is_int(vg_store_prepare(s, "SELECT -2.25::float8, (-7)::int2, (1 = 0), 'x'::varchar", &st,
                                &err),
               0, "binary-result query prepares");
        is_int(vg_stmt_step(st, &err), 1, "and runs");
        is_str(vg_stmt_column_text(st, 0, NULL), "-2.25", "float8 from binary");
        is_int(vg_stmt_column_int64(st, 1), -7, "negative int2 from binary");
        is_str(vg_stmt_column_text(st, 1, NULL), "-7", "and as text");
        is_int(vg_stmt_column_int64(st, 2), 0, "false is 0");
        is_str(vg_stmt_column_text(st, 3, NULL), "x", "varchar is text");
        vg_stmt_free(TAKE_PTR(st));

        /* Parameters into columns of other types: int64 into INTEGER and DOUBLE, text into
         * BYTEA (as its bytes). */
        is_int(vg_store_prepare(s,
                                "INSERT INTO vals (small, r, b) VALUES ($1, $2, $3) "
                                "RETURNING id, small, r, b",
                                &st, &err),
               0, "INSERT ... RETURNING prepares");
        vg_stmt_bind_int64(st, 1, -5);
        vg_stmt_bind_int64(st, 2, 3);
        vg_stmt_bind_text(st, 3, "a\\x00b");
        is_int(vg_stmt_step(st, &err), 1, "RETURNING gives a row");
        is_int(vg_stmt_column_int64(st, 0), 3, "with the new id");
        is_int(vg_stmt_column_int64(st, 1), -5, "int64 went into an INTEGER column");
        is_str(vg_stmt_column_text(st, 2, NULL), "3", "and into a DOUBLE PRECISION one");
        p = vg_stmt_column_blob(st, 3, &len);
        is_mem(p, len, "a\\x00b", 6, "text bound into BYTEA keeps its bytes, backslash included");
        is_int(vg_stmt_step(st, &err), 0, "and finishes");
        is_int(vg_stmt_changes(st), 1, "INSERT ... RETURNING changed one row");
        vg_stmt_bind_int64(st, 1, (int64_t)1 << 40);
        vg_stmt_bind_null(st, 2);
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_step(st, &err), -ERANGE, "a value too large for INTEGER gives -ERANGE");
        contains(err.msg, "out of range", "with the server's reason");
        vg_stmt_free(TAKE_PTR(st));
        is_int(vg_store_prepare(s, "SELECT count(*) FROM vals WHERE small = $1", &st, &err), 0,
               "prepares");
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_bind_blob(st, 1, "x", 1), -EINVAL, "a blob for an integer is refused");
        is_int(vg_stmt_step(st, &err), -EINVAL, "reported by the next step");
        contains(err.msg, "cannot bind a blob to $1, which PostgreSQL takes as integer",
                 "saying why");
        vg_stmt_free(TAKE_PTR(st));

        /* $N are matched by number; each may appear several times. */
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

        /* Literals and comments with $, ?, ; and : inside are not parameters. */
        is_int(vg_store_prepare(s,
                                "SELECT 'a;?$1:x' || $1 -- ? $2 ;\n"
                                "  || /* $3 /* ; */ ? */ $$ $9 ; $$ || E'\\';$2' || \"t\""
                                " FROM (SELECT 'q' AS \"t\") AS sub",
                                &st, &err),
               0, "placeholders inside literals and comments are ignored");
        is_int(vg_stmt_param_count(st), 1, "one parameter");
        vg_stmt_bind_text(st, 1, "P");
        is_int(vg_stmt_step(st, &err), 1, "it runs");
        is_str(vg_stmt_column_text(st, 0, NULL), "a;?$1:xP $9 ; ';$2q", "with the literal text");
        vg_stmt_free(TAKE_PTR(st));

        /* UPDATE / DELETE counts, DELETE ... RETURNING. */
        is_int(vg_store_prepare(s, "UPDATE vals SET n = $1 WHERE id >= $2", &st, &err), 0,
               "UPDATE prepares");
        vg_stmt_bind_text(st, 1, "x");
        vg_stmt_bind_int64(st, 2, 1);
        is_int(vg_stmt_exec(st, &err), 0, "UPDATE runs");
        is_int(vg_stmt_changes(st), 3, "UPDATE changed 3 rows");
        vg_stmt_free(TAKE_PTR(st));
        is_int(vg_store_prepare(s, "DELETE FROM vals WHERE id = $1 RETURNING i", &st, &err), 0,
               "DELETE ... RETURNING prepares");
        vg_stmt_bind_int64(st, 1, 2);
        is_int(vg_stmt_step(st, &err), 1, "RETURNING gives a row");
        is_int(vg_stmt_column_int64(st, 0), INT64_MAX, "with the deleted value");
        is_int(vg_stmt_step(st, &err), 0, "and finishes");
        is_int(vg_stmt_changes(st), 1, "DELETE removed 1 row");
        vg_stmt_free(TAKE_PTR(st));
        is_int(query_int(s, "SELECT count(*) FROM vals"), 2, "two rows left");
        is_int(vg_store_prepare(s, "SELECT id FROM vals", &st, &err), 0, "a query");
        is_int(vg_stmt_exec(st, &err), 0, "runs to the end");
        is_int(vg_stmt_changes(st), 0, "and changed nothing");
        vg_stmt_free(TAKE_PTR(st));

        /* Constraints surface as errno values callers can act on. */
        is_int(vg_store_prepare(s, "INSERT INTO parent (uuid) VALUES ($1)", &st, &err), 0,
               "INSERT parent prepares");
        vg_stmt_bind_text(st, 1, "d432fbb3-d2f1-4a97-9ef7-75bd81c00000");
        is_int(vg_stmt_exec(st, &err), 0, "a parent row is inserted");
        is_int(vg_stmt_last_insert_id(st), 3, "last_insert_id: still the last identity value");
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_exec(st, &err), -EEXIST, "the same primary key again gives -EEXIST");
        contains(err.msg, "duplicate key value violates unique constraint \"parent_pkey\"",
                 "naming the constraint");
        contains(err.msg, "Key (uuid)=(d432fbb3-d2f1-4a97-9ef7-75bd81c00000) already exists",
                 "and the key");
        contains(err.msg, "INSERT INTO parent (uuid) VALUES ($1)", "and the statement");
        contains(err.msg, name, "and the database");
        vg_stmt_free(TAKE_PTR(st));

        is_int(
            vg_store_prepare(s, "INSERT INTO child (id, uuid, age) VALUES ($1, $2, $3)", &st, &err),
            0, "INSERT child prepares");
        vg_stmt_bind_int64(st, 1, 1);
        vg_stmt_bind_text(st, 2, "no-such-parent");
        vg_stmt_bind_int64(st, 3, 1);
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_exec(st, &err), -EINVAL, "a dangling foreign key gives -EINVAL");
        contains(err.msg, "violates foreign key constraint", "saying so");
        vg_stmt_bind_text(st, 2, NULL);
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_exec(st, &err), -EINVAL, "NULL in a NOT NULL column gives -EINVAL");
        contains(err.msg, "violates not-null constraint", "saying so");
        ok(!strstr(err.msg, "Failing row"), "without the row's values in the message");
        vg_stmt_bind_text(st, 2, "d432fbb3-d2f1-4a97-9ef7-75bd81c00000");
        vg_stmt_bind_int64(st, 3, -1);
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_exec(st, &err), -EINVAL, "a failed CHECK gives -EINVAL");
        contains(err.msg, "violates check constraint", "saying so");
        vg_stmt_bind_int64(st, 3, 30);
        is_int(vg_stmt_exec(st, &err), 0, "a child of an existing parent is accepted");
        is_int(vg_stmt_last_insert_id(st), 3, "no sequence involved: lastval() is unchanged");
        vg_stmt_free(TAKE_PTR(st));
        exec_or_bail(s, "DELETE FROM parent");
        is_int(query_int(s, "SELECT count(*) FROM child"), 0, "ON DELETE CASCADE works");

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
                { "SELEC 1", "syntax error at or near \"SELEC\"" },
                { "SELECT nosuchcol FROM vals", "column \"nosuchcol\" does not exist" },
        };
        for (size_t i = 0; i < VG_ARRAY_SIZE(badsql); i++) {
                err = (struct vg_error){ 0 };
                r = vg_store_prepare(s, badsql[i].sql, &st, &err);
                ok(r == -EINVAL && st == NULL, "refused: %s", badsql[i].sql);
                contains(err.msg, badsql[i].msg, "message for: %s", badsql[i].sql);
                contains(err.msg, name, "the message names the database");
        }
        is_int(vg_store_prepare(s, "SELECT 1; -- trailing comment\n ;", &st, &err), 0,
               "a trailing semicolon and comment are fine");
        vg_stmt_free(TAKE_PTR(st));

        is_int(vg_store_prepare(s, "SELECT $1, $2", &st, &err), 0, "SELECT $1, $2 prepares");
        vg_stmt_bind_int64(st, 1, 1);
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_step(st, &err), -EINVAL, "running with $2 unbound is refused");
        contains(err.msg, "$2 was not bound", "with a message naming $2");
        is_int(vg_stmt_bind_int64(st, 3, 3), -ERANGE, "binding $3 fails at once");
        vg_stmt_bind_int64(st, 2, 2);
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_step(st, &err), -ERANGE, "and is reported by the next step");
        is_int(vg_stmt_step(st, &err), 1, "once reported, the statement runs");
        is_int(vg_stmt_column_int64(st, 1), 2, "with the values bound (untyped $N read as text)");
        vg_stmt_free(TAKE_PTR(st));

        err = (struct vg_error){ 0 };
        is_int(vg_store_exec(s,
                             "CREATE TABLE e (x INTEGER); INSERT INTO e VALUES (1); "
                             "INSERT INTO nosuch VALUES (2); INSERT INTO e VALUES (3)",
                             &err),
               -EINVAL, "a script stops at its first failing statement");
        contains(err.msg, "\"INSERT INTO nosuch VALUES (2)\" failed: relation \"nosuch\" does not",
                 "and the message quotes that statement");
        is_int(query_int(s, "SELECT count(*) FROM e"), 1, "statements before it ran");
        err = (struct vg_error){ 0 };
        is_int(vg_store_exec(s, "SELECT $1", &err), -EINVAL, "a script with $1 is refused");
        contains(err.msg, "cannot take parameters", "saying so");
}

/* ---- transactions ------------------------------------------------------------------------- */

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

static void test_transactions(const char *url)
{
        _cleanup_(vg_store_closep) struct vg_store *s = open_or_bail(url, NULL);
        _cleanup_(vg_store_closep) struct vg_store *other = open_or_bail(url, NULL);
        _cleanup_(vg_stmt_freep) struct vg_stmt *ins = NULL;
        struct vg_error err = { 0 };
        int v;

        exec_or_bail(s, "CREATE TABLE t (x INTEGER);"
                        "CREATE TABLE u (id BIGSERIAL PRIMARY KEY, x INTEGER UNIQUE)");

        is_int(vg_store_begin(s, &err), 0, "begin");
        ok(vg_store_in_transaction(s), "in a transaction");
        exec_or_bail(s, "INSERT INTO t VALUES (1)");
        is_int(query_int(other, "SELECT count(*) FROM t"), 0,
               "another connection does not see uncommitted rows");
        is_int(vg_store_begin(s, &err), -EINVAL, "begin does not nest");
        is_int(vg_store_rollback(s, &err), 0, "rollback");
        is_int(query_int(s, "SELECT count(*) FROM t"), 0, "the row is gone");
        is_int(vg_store_rollback(s, &err), 0, "rollback without a transaction is a no-op");

        is_int(vg_store_begin(s, &err), 0, "begin again");
        _cleanup_free_ char *iso = query_text(s, "SHOW transaction_isolation");
        is_str(iso, "serializable", "transactions are SERIALIZABLE");
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
        is_int(query_int(other, "SELECT count(*) FROM t WHERE x = 4"), 0,
               "and its work is rolled back");

        /* A failed statement inside a transaction: PostgreSQL aborts the transaction. */
        is_int(vg_store_prepare(s, "INSERT INTO u (x) VALUES ($1) RETURNING id", &ins, &err), 0,
               "INSERT u prepares");
        vg_store_begin(s, &err);
        vg_stmt_bind_int64(ins, 1, 1);
        is_int(vg_stmt_exec(ins, &err), 0, "a row in a transaction");
        is_int(vg_stmt_last_insert_id(ins), 1, "last_insert_id inside a transaction");
        err = (struct vg_error){ 0 };
        is_int(vg_stmt_exec(ins, &err), -EEXIST, "a duplicate fails");
        err = (struct vg_error){ 0 };
        is_int(vg_store_commit(s, &err), -EINVAL, "committing after a failed statement fails");
        contains(err.msg, "rolled back instead of committed", "saying what happened");
        ok(!vg_store_in_transaction(s), "and the transaction is over");
        is_int(query_int(other, "SELECT count(*) FROM u"), 0, "nothing of it was kept");
        vg_store_begin(s, &err);
        exec_or_bail(s, "INSERT INTO t VALUES (8)");
        vg_stmt_bind_int64(ins, 1, 5);
        is_int(vg_stmt_step(ins, &err), 1, "an insert that takes a serial");
        /* The failed insert used up id 2: sequences do not roll back. */
        int64_t id = vg_stmt_column_int64(ins, 0);
        is_int(vg_stmt_step(ins, &err), 0, "finishes");
        exec_or_bail(s, "INSERT INTO t VALUES (9)");
        is_int(vg_stmt_last_insert_id(ins), id,
               "lastval() is its id (%" PRId64 "), also after "
               "an insert without a sequence",
               id);
        exec_or_bail(s, "INSERT INTO t VALUES (10)");
        is_int(vg_store_commit(s, &err), 0, "and the transaction commits");
        is_int(query_int(other, "SELECT count(*) FROM t WHERE x >= 8"), 3, "with all its rows");

        /* lastval() before any sequence was used must not abort the transaction. */
        _cleanup_(vg_store_closep) struct vg_store *fresh = open_or_bail(url, NULL);
        _cleanup_(vg_stmt_freep) struct vg_stmt *plain = NULL;
        vg_store_begin(fresh, &err);
        vg_store_prepare(fresh, "INSERT INTO t (x) VALUES (11)", &plain, &err);
        is_int(vg_stmt_exec(plain, &err), 0, "an insert without a sequence");
        is_int(vg_stmt_last_insert_id(plain), 0, "has no last insert id");
        is_int(vg_store_commit(fresh, &err), 0, "and asking did not break the transaction");
        is_int(query_int(other, "SELECT count(*) FROM t WHERE x = 11"), 1, "its row is there");

        /* Closing with a transaction open loses it. */
        vg_store_begin(s, &err);
        exec_or_bail(s, "INSERT INTO t VALUES (5)");
        vg_stmt_free(TAKE_PTR(ins));
        _cleanup_(vg_stmt_freep) struct vg_stmt *late = NULL;
        vg_store_prepare(s, "SELECT x FROM t", &late, &err);
        vg_stmt_step(late, &err);
        vg_store_close(TAKE_PTR(s));
        is_int(query_int(other, "SELECT count(*) FROM t WHERE x = 5"), 0,
               "closing rolls back an open transaction");
        is_int(vg_stmt_step(late, &err), -EBADF, "a statement of a closed store refuses to run");
        is_int(vg_stmt_column_count(late), 1, "its description can still be read");

        /* The server ends the connection: the next use outside a transaction reconnects. */
        s = open_or_bail(url, NULL);
        int64_t pid = query_int(s, "SELECT pg_backend_pid()");
        _cleanup_(vg_stmt_freep) struct vg_stmt *kill = NULL;
        vg_store_prepare(other, "SELECT pg_terminate_backend($1::int)", &kill, &err);
        vg_stmt_bind_int64(kill, 1, pid);
        is_int(vg_stmt_step(kill, &err), 1, "another connection terminates this one");
        usleep(50 * 1000);
        err = (struct vg_error){ 0 };
        int64_t n = query_int(s, "SELECT count(*) FROM t");
        ok(n == INT64_MIN, "the next statement fails");
        ok(query_int(s, "SELECT count(*) FROM t") >= 0, "and the one after it reconnects");
        ok(query_int(s, "SELECT pg_backend_pid()") != pid, "to a new server process");
}

/* ---- migrations --------------------------------------------------------------------------- */

#define M1                                                                                         \
        {                                                                                          \
                1, "agents table", "CREATE TABLE agents (uuid TEXT PRIMARY KEY, ek_tpm BYTEA);"    \
        }
#define M2                                                                                         \
        {                                                                                          \
                2, "registration count",                                                           \
                    "ALTER TABLE agents ADD COLUMN regcount INTEGER NOT NULL DEFAULT 0;"           \
                    "CREATE INDEX agents_count ON agents (regcount);"                              \
        }
#define M3                                                                                         \
        {                                                                                          \
                3, "active flag",                                                                  \
                    "ALTER TABLE agents ADD COLUMN active INTEGER NOT NULL DEFAULT 0"              \
        }

static void test_migrations(const char *url)
{
        static const struct vg_store_migration v2[] = { M1, M2 }, v3[] = { M1, M2, M3 };
        static const struct vg_store_migration broken[] = {
                M1,
                M2,
                { 3, "half-done change",
                  "CREATE TABLE half (x INTEGER); UPDATE agents SET regcount = 99;"
                  "INSERT INTO nosuchtable VALUES (1)" },
        };
        _cleanup_(vg_store_closep) struct vg_store *s = open_or_bail(url, NULL);
        _cleanup_free_ char *when = NULL, *before = NULL, *after = NULL;
        struct vg_error err = { 0 };
        int v = -1;

        is_int(vg_store_schema_version(s, "registrar", &v, &err), 0, "version of a fresh database");
        is_int(v, 0, "is 0");
        is_int(vg_store_migrate(s, "registrar", v2, VG_ARRAY_SIZE(v2), &err), 0,
               "migrations 1-2 apply");
        vg_store_schema_version(s, "registrar", &v, &err);
        is_int(v, 2, "registrar schema is at version 2");
        when = query_text(s, "SELECT applied_at FROM vigil_schema WHERE version = 2");
        ok(when && strlen(when) == 20 && when[10] == 'T' && when[19] == 'Z',
           "applied_at is an ISO 8601 UTC time: %s", when ? when : "(null)");
        exec_or_bail(s, "INSERT INTO agents (uuid, ek_tpm, regcount) "
                        "VALUES ('a1', '\\x00ff00', 3)");
        is_int(vg_store_migrate(s, "registrar", v2, VG_ARRAY_SIZE(v2), &err), 0,
               "the same migrations again succeed");
        is_int(query_int(s, "SELECT count(*) FROM vigil_schema"), 2, "and record nothing new");

        err = (struct vg_error){ 0 };
        is_int(vg_store_migrate(s, "registrar", broken, VG_ARRAY_SIZE(broken), &err), -EINVAL,
               "a failing migration fails");
        contains(err.msg, "migration 3 (half-done change) of the registrar schema failed",
                 "the message names the migration");
        contains(err.msg, "relation \"nosuchtable\" does not exist", "and the cause");
        vg_store_schema_version(s, "registrar", &v, &err);
        is_int(v, 2, "the database stays at version 2");
        is_int(query_int(s, "SELECT count(*) FROM pg_tables WHERE tablename = 'half'"), 0,
               "the migration's DDL was rolled back");
        is_int(query_int(s, "SELECT regcount FROM agents WHERE uuid = 'a1'"), 3,
               "data it changed is as it was");

        is_int(vg_store_migrate(s, "registrar", v3, VG_ARRAY_SIZE(v3), &err), 0,
               "migration 3 applies incrementally");
        is_int(query_int(s, "SELECT regcount + active FROM agents WHERE uuid = 'a1'"), 3,
               "existing rows kept their data");

        before = query_text(s, "SELECT string_agg(component || version || applied_at, ',' "
                               "ORDER BY component, version) FROM vigil_schema");
        err = (struct vg_error){ 0 };
        is_int(vg_store_migrate(s, "registrar", v2, VG_ARRAY_SIZE(v2), &err), -EPROTO,
               "a database newer than the code is refused");
        contains(err.msg, "schema is at version 3, but this vigil knows versions up to 2",
                 "the message gives both versions");
        contains(err.msg, vg_store_name(s), "and the database");
        after = query_text(s, "SELECT string_agg(component || version || applied_at, ',' "
                              "ORDER BY component, version) FROM vigil_schema");
        is_str(after, before, "vigil_schema is unchanged");
        is_int(query_int(s, "SELECT count(*) FROM information_schema.columns "
                            "WHERE table_name = 'agents'"),
               4, "and so is the table");
}

/* ---- several processes -------------------------------------------------------------------- */

static int bump(struct vg_store *s, void *data, struct vg_error *err)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        int *attempts = data;
        int64_t n;
        int r;

        (*attempts)++;
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

/* Exit status: 0, or 1 on failure; the number of retried attempts goes to fd. */
static int bump_many(const char *url, int times, int fd)
{
        struct vg_store_options o = { .busy_timeout_ms = 20000 };
        _cleanup_(vg_store_closep) struct vg_store *s = NULL;
        struct vg_error err = { 0 };
        int attempts = 0;

        if (vg_store_open(&s, url, &o, &err) < 0) {
                fprintf(stderr, "writer: %s\n", vg_error_str(&err));
                return -1;
        }
        for (int i = 0; i < times; i++)
                if (vg_store_transact(s, bump, &attempts, &err) < 0) {
                        fprintf(stderr, "writer: %s\n", vg_error_str(&err));
                        return -1;
                }
        if (fd >= 0 && write(fd, &attempts, sizeof(attempts)) < 0)
                return -1;
        return 0;
}

static const struct vg_store_migration tang_schema[] = {
        { 1, "keys", "CREATE TABLE tang_keys (thp TEXT PRIMARY KEY, jwk TEXT NOT NULL)" },
        { 2, "hidden", "ALTER TABLE tang_keys ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0" },
        { 3, "created", "ALTER TABLE tang_keys ADD COLUMN created INTEGER" },
};

static int migrate_tang(const char *url)
{
        _cleanup_(vg_store_closep) struct vg_store *s = NULL;
        struct vg_error err = { 0 };

        if (vg_store_open(&s, url, NULL, &err) < 0 ||
            vg_store_migrate(s, "tang", tang_schema, VG_ARRAY_SIZE(tang_schema), &err) < 0) {
                fprintf(stderr, "migrate: %s\n", vg_error_str(&err));
                return -1;
        }
        return 0;
}

static void test_concurrency(void)
{
        _cleanup_free_ char *url = new_db("shared");
        _cleanup_(vg_store_closep) struct vg_store *s = open_or_bail(url, NULL);
        struct vg_error err = { 0 };
        int fds[2], child_attempts = 0, go[2], res[2];
        pid_t pid;

        exec_or_bail(s, "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
                        "INSERT INTO counter VALUES (1, 0);"
                        "CREATE TABLE t (x INTEGER)");

        if (pipe(fds) < 0)
                tap_bail("pipe");
        fflush(stdout);
        pid = fork();
        if (pid == 0)
                _exit(bump_many(url, 200, fds[1]) < 0 ? 1 : 0);
        is_int(bump_many(url, 200, -1), 0, "parent's 200 read-modify-write transactions succeed");
        is_int(wait_child(pid), 0, "child's 200 concurrent transactions succeed");
        if (read(fds[0], &child_attempts, sizeof(child_attempts)) != sizeof(child_attempts))
                child_attempts = 0;
        close(fds[0]);
        close(fds[1]);
        is_int(query_int(s, "SELECT n FROM counter"), 400, "no update was lost");
        tap_diag("the child needed %d attempts for its 200 transactions", child_attempts);

        /* Two processes migrating the same fresh database at once, a few times over. */
        for (int round = 0; round < 4; round++) {
                _cleanup_free_ char *name = tap_strf("mig%d", round);
                _cleanup_free_ char *murl = new_db(name);
                _cleanup_(vg_store_closep) struct vg_store *m = NULL;
                pid_t kids[3];
                int failed = 0;

                fflush(stdout);
                for (int k = 0; k < 3; k++) {
                        kids[k] = fork();
                        if (kids[k] == 0)
                                _exit(migrate_tang(murl) < 0 ? 1 : 0);
                }
                failed += migrate_tang(murl) < 0;
                for (int k = 0; k < 3; k++)
                        failed += wait_child(kids[k]) != 0;
                is_int(failed, 0, "round %d: four simultaneous migrators all succeed", round);
                m = open_or_bail(murl, NULL);
                is_int(query_int(m, "SELECT count(*) FROM vigil_schema WHERE component = 'tang'"),
                       3, "round %d: each migration was applied and recorded once", round);
        }

        /* A writer holds a row lock: a 100 ms busy timeout gives -EBUSY; the default one waits,
         * and vg_store_transact retries the serialization failure that follows. */
        if (pipe(go) < 0 || pipe(res) < 0)
                tap_bail("pipe");
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                struct vg_store_options quick = { .busy_timeout_ms = 100 };
                struct vg_store *c = NULL;
                struct vg_error cerr = { 0 };
                int r1, r2 = -1, attempts = 0;
                double t0, waited;
                char msg[512], byte;

                close(go[1]);
                close(res[0]);
                if (read(go[0], &byte, 1) != 1)
                        _exit(2);
                r1 = vg_store_open(&c, url, &quick, &cerr);
                if (r1 == 0)
                        r1 = vg_store_transact(c, bump, &attempts, &cerr);
                snprintf(msg, sizeof(msg), "%s", cerr.msg);
                vg_store_close(c);
                c = NULL;
                if (write(res[1], &r1, sizeof(r1)) < 0 || write(res[1], msg, sizeof(msg)) < 0)
                        _exit(2);
                t0 = now_s();
                attempts = 0;
                if (vg_store_open(&c, url, NULL, &cerr) == 0)
                        r2 = vg_store_transact(c, bump, &attempts, &cerr);
                waited = now_s() - t0;
                if (r2 < 0)
                        fprintf(stderr, "child: %s\n", cerr.msg);
                vg_store_close(c);
                if (write(res[1], &r2, sizeof(r2)) < 0 ||
                    write(res[1], &waited, sizeof(waited)) < 0 ||
                    write(res[1], &attempts, sizeof(attempts)) < 0)
                        _exit(2);
                _exit(0);
        }
        is_int(vg_store_begin(s, &err), 0, "parent begins");
        exec_or_bail(s, "UPDATE counter SET n = n + 1000 WHERE id = 1");
        if (write(go[1], "g", 1) != 1)
                tap_bail("pipe");
        close(go[0]);
        close(go[1]);
        close(res[1]);
        int r1 = 0, r2 = 0, attempts = 0;
        double waited = 0;
        char msg[512] = "";
        if (read(res[0], &r1, sizeof(r1)) != sizeof(r1) || read(res[0], msg, sizeof(msg)) <= 0)
                tap_bail("child did not report");
        is_int(r1, -EBUSY, "a second writer with a 100 ms busy timeout gets -EBUSY");
        contains(msg, "lock timeout", "the message says it timed out on a lock");
        contains(msg, "100 ms busy timeout", "and for how long it waited");
        contains(msg, vg_store_name(s), "and names the database");
        usleep(300 * 1000);
        is_int(vg_store_commit(s, &err), 0, "parent commits");
        if (read(res[0], &r2, sizeof(r2)) != sizeof(r2) ||
            read(res[0], &waited, sizeof(waited)) != sizeof(waited) ||
            read(res[0], &attempts, sizeof(attempts)) != sizeof(attempts))
                tap_bail("child did not report");
        close(res[0]);
        is_int(wait_child(pid), 0, "child exits cleanly");
        is_int(r2, 0, "a writer with the default busy timeout waits and succeeds");
        ok(waited >= 0.2, "it waited for the lock (%.3f s)", waited);
        is_int(attempts, 2, "after a serialization failure and one retry");
        is_int(query_int(s, "SELECT n FROM counter"), 1401, "both writers' updates are there");
}

int main(void)
{
        struct vg_error err = { 0 };
        int r;

        signal(SIGPIPE, SIG_IGN);
        r = vg_pg_start(&server, &err);
        if (r == -ENOENT) {
                printf("1..0 # SKIP %s\n", vg_error_str(&err));
                return 0;
        }
        if (r < 0)
                tap_bail("cannot start PostgreSQL: %s", vg_error_str(&err));

        _cleanup_free_ char *crud = new_db("crud"), *txn = new_db("txn"), *mig = new_db("mig");
        test_connect();
        test_crud(crud);
        test_transactions(txn);
        test_migrations(mig);
        test_concurrency();
        vg_pg_free(server);
        return tap_done();
}
