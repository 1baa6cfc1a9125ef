/* vigil: the PostgreSQL backend of the store, on libpq: serializable transactions, typed
 * parameters, SQLSTATEs mapped onto the errno values store.h promises, redacted URLs in messages.
 */
#include "store.h"
#include "store_backend.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Type OIDs (PostgreSQL's src/include/catalog/pg_type.dat; fixed since 8.x). */
#define BOOLOID    16
#define BYTEAOID   17
#define CHAROID    18
#define NAMEOID    19
#define INT8OID    20
#define INT2OID    21
#define INT4OID    23
#define TEXTOID    25
#define OIDOID     26
#define FLOAT4OID  700
#define FLOAT8OID  701
#define BPCHAROID  1042
#define VARCHAROID 1043
#define NUMERICOID 1700

/* The key of the advisory lock that serialises schema migrations ("vigilsch"). */
#define SCHEMA_LOCK_KEY "8532483097432187752"

#define FORMAT_TEXT   0
#define FORMAT_BINARY 1

struct pg_conn {
        PGconn *pg;
        char *name; /* the redacted URL */
        char *target;
        unsigned busy_timeout_ms;
        bool in_txn;
        /* The connection lives until it is closed and its last statement is freed: a
         * statement needs it to run, and may be freed after vg_store_close(). */
        unsigned refs;
};

struct pg_param {
        char *value; /* NULL: SQL NULL */
        int len;
        int format;
        char int8[8];
};

struct pg_stmt {
        struct pg_conn *c;
        char *sql;
        int n_params;
        Oid *types; /* [n_params]: the types the server inferred for $1..$N */
        struct pg_param *params;
        int n_cols;
        char **col_names;
        bool binary; /* every result column has a binary form decoded here */
        PGresult *res;
        int row;
        char **conv; /* [n_cols]: values converted for a getter, freed at the next step */
        size_t *conv_len;
        int64_t changes;
};

static void conn_unref(struct pg_conn *c)
{
        if (c && --c->refs == 0) {
                free(c->name);
                free(c->target);
                free(c);
        }
}

/* libpq's messages end in a newline and may span lines; one line reads better in logs. */
static void one_line(const char *in, char *out, size_t size)
{
        size_t n = 0;
        bool space = false;

        for (const char *p = in ? in : ""; *p && n + 2 < size; p++) {
                if (isspace((unsigned char)*p)) {
                        space = n > 0;
                        continue;
                }
                if (space)
                        out[n++] = ' ';
                space = false;
                out[n++] = *p;
        }
        out[n] = '\0';
}

/* SQLSTATE (PostgreSQL Appendix A) -> the errno values of store.h. */
static int sqlstate_errno(const char *st)
{
        static const struct {
                const char *state;
                int code;
        } exact[] = {
                { "40001", -EBUSY },     /* serialization_failure */
                { "40P01", -EBUSY },     /* deadlock_detected */
                { "55P03", -EBUSY },     /* lock_not_available: lock_timeout */
                { "23505", -EEXIST },    /* unique_violation */
                { "23P01", -EEXIST },    /* exclusion_violation */
                { "22003", -ERANGE },    /* numeric_value_out_of_range */
                { "53100", -ENOSPC },    /* disk_full */
                { "53200", -ENOMEM },    /* out_of_memory */
                { "53300", -EAGAIN },    /* too_many_connections */
                { "57014", -ETIMEDOUT }, /* query_canceled: statement_timeout */
                { "3D000", -ENOENT },    /* invalid_catalog_name */
                { "42501", -EACCES },    /* insufficient_privilege */
                { "25006", -EROFS },     /* read_only_sql_transaction */
                { "XX001", -EBADMSG },   /* data_corrupted */
                { "XX002", -EBADMSG },   /* index_corrupted */
                { "0A000", -ENOTSUP },   /* feature_not_supported */
        };

        if (!st || strlen(st) != 5)
                return -EIO;
        for (size_t i = 0; i < VG_ARRAY_SIZE(exact); i++)
                if (strcmp(st, exact[i].state) == 0)
                        return exact[i].code;
        if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0)
                return -ECONNRESET; /* connection exception, server shutting down */
        if (strncmp(st, "28", 2) == 0)
                return -EACCES;
        /* Constraints, data exceptions, syntax and access rule violations, aborted
         * transactions: the statement or its use is wrong. */
        if (strncmp(st, "23", 2) == 0 || strncmp(st, "22", 2) == 0 || strncmp(st, "42", 2) == 0 ||
            strncmp(st, "25", 2) == 0 || strncmp(st, "21", 2) == 0 || strncmp(st, "2B", 2) == 0 ||
            strncmp(st, "0L", 2) == 0 || strncmp(st, "34", 2) == 0 || strncmp(st, "26", 2) == 0)
                return -EINVAL;
        return -EIO;
}

/* Turn a failed result (or, with res NULL, the connection's error) into a message naming the
 * database and the statement. Clears res. */
static int pg_fail(struct pg_conn *c, PGresult *res, const char *sql, struct vg_error *err)
{
        const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
        char msg[300], ex[112], det[200] = "", state_buf[6] = "";
        const char *state = NULL;
        int code;

        /* Copied: res is cleared before the message is written. */
        if (sqlstate) {
                snprintf(state_buf, sizeof(state_buf), "%s", sqlstate);
                state = state_buf;
        }

        one_line(primary ? primary : PQerrorMessage(c->pg), msg, sizeof(msg));
        vg_store_sql_excerpt(sql ? sql : "", ex, sizeof(ex));
        code = state ? sqlstate_errno(state) : -EIO;
        if (!state && PQstatus(c->pg) == CONNECTION_BAD)
                code = -ECONNRESET;
        /* The key that collided or is missing says which row; other details ("Failing row
         * contains ...") could carry secrets into logs. */
        if (detail && state && (strcmp(state, "23505") == 0 || strcmp(state, "23503") == 0)) {
                det[0] = ' ';
                det[1] = '(';
                one_line(detail, det + 2, sizeof(det) - 3);
                strcat(det, ")");
        }
        PQclear(res);
        if (code == -ECONNRESET)
                return vg_error_set(err, code,
                                    "database %s: statement \"%s\": the connection to the server "
                                    "was lost: %s",
                                    c->name, ex, msg);
        if (state && strcmp(state, "55P03") == 0)
                return vg_error_set(err, code,
                                    "database %s: statement \"%s\": %s (another connection held "
                                    "a lock for more than the %u ms busy timeout)",
                                    c->name, ex, msg, c->busy_timeout_ms);
        if (code == -EBUSY)
                return vg_error_set(err, code,
                                    "database %s: statement \"%s\": %s (it conflicted with "
                                    "another connection's transaction; retry the transaction)",
                                    c->name, ex, msg);
        return vg_error_set(err, code, "database %s: statement \"%s\" failed: %s%s", c->name, ex,
                            msg, det);
}

/* PQexec for commands without parameters; rows are discarded. */
static int pg_command(struct pg_conn *c, const char *sql, struct vg_error *err)
{
        PGresult *res = PQexec(c->pg, sql);
        ExecStatusType st = PQresultStatus(res);

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                return pg_fail(c, res, sql, err);
        PQclear(res);
        return 0;
}

/* ---- connections ------------------------------------------------------------------------- */

static int pg_configure(struct pg_conn *c, struct vg_error *err)
{
        char sql[64];

        if (PQserverVersion(c->pg) < 100000)
                return vg_error_set(err, -ENOTSUP,
                                    "database %s: PostgreSQL %d.%d is too old; vigil needs 10 or "
                                    "newer",
                                    c->name, PQserverVersion(c->pg) / 10000,
                                    PQserverVersion(c->pg) / 100 % 100);
        /* The busy timeout bounds waits for another connection's row or table locks, as
         * SQLite's does for its write lock. A long statement that waits for nothing is not
         * cut short. */
        snprintf(sql, sizeof(sql), "SET lock_timeout = %u",
                 c->busy_timeout_ms > INT_MAX ? INT_MAX : c->busy_timeout_ms);
        return pg_command(c, sql, err);
}

/* Connection failures: libpq gives no SQLSTATE, only its (English, unless translated) text. */
static int connect_errno(const char *msg)
{
        if (strstr(msg, "password authentication failed") || strstr(msg, "no password supplied") ||
            strstr(msg, "pg_hba.conf") || strstr(msg, "authentication failed"))
                return -EACCES;
        if (strstr(msg, "does not exist"))
                return -ENOENT;
        if (strstr(msg, "Connection refused"))
                return -ECONNREFUSED;
        if (strstr(msg, "timeout expired"))
                return -ETIMEDOUT;
        if (strstr(msg, "could not translate host name"))
                return -EHOSTUNREACH;
        if (strstr(msg, "too many clients"))
                return -EAGAIN;
        return -EIO;
}

/* Notices ("relation already exists, skipping" of CREATE TABLE IF NOT EXISTS) would go to
 * stderr by default. */
static void ignore_notice(void *arg, const char *message)
{
        (void)arg;
        (void)message;
}

static int pg_connect(struct pg_conn *c, struct vg_error *err)
{
        /* Ours first: with expand_dbname, what the URL says overrides them. */
        const char *const keys[] = { "application_name", "connect_timeout", "client_encoding",
                                     "dbname", NULL };
        const char *const vals[] = { "vigil", "10", "UTF8", c->target, NULL };
        char msg[400];

        if (c->pg)
                PQfinish(c->pg);
        c->pg = PQconnectdbParams(keys, vals, 1);
        if (!c->pg)
                return -ENOMEM;
        PQsetNoticeProcessor(c->pg, ignore_notice, c);
        if (PQstatus(c->pg) != CONNECTION_OK) {
                one_line(PQerrorMessage(c->pg), msg, sizeof(msg));
                return vg_error_set(err, connect_errno(msg), "database %s: cannot connect: %s",
                                    c->name, msg);
        }
        return pg_configure(c, err);
}

/* A connection that broke (server restart, idle timeout) is made again at the next use outside
 * a transaction; inside one, the transaction is lost and the caller hears so. */
static int pg_usable(struct pg_conn *c, struct vg_error *err)
{
        if (!c->pg)
                return vg_error_set(err, -EBADF, "database %s is closed", c->name);
        if (PQstatus(c->pg) == CONNECTION_OK)
                return 0;
        if (c->in_txn)
                return vg_error_set(err, -ECONNRESET,
                                    "database %s: the connection to the server was lost during a "
                                    "transaction",
                                    c->name);
        vg_info(VG_F("database", c->name), "connection lost, reconnecting");
        return pg_connect(c, err);
}

static void pg_close(void *conn)
{
        struct pg_conn *c = conn;

        if (!c)
                return;
        if (c->pg)
                PQfinish(c->pg);
        c->pg = NULL;
        conn_unref(c);
}

static int pg_open(const struct vg_store_url *url, const struct vg_store_options *opts, void **out,
                   struct vg_error *err)
{
        struct pg_conn *c;
        int r;

        *out = NULL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->refs = 1;
        c->busy_timeout_ms = opts->busy_timeout_ms;
        c->name = strdup(url->display);
        c->target = strdup(url->target);
        if (!c->name || !c->target) {
                pg_close(c);
                return -ENOMEM;
        }
        r = pg_connect(c, err);
        if (r < 0) {
                pg_close(c);
                return r;
        }
        *out = c;
        return 0;
}

/* ---- SQL text: statements and $N ------------------------------------------------------------ */

/*
 * One pass over SQL as PostgreSQL's lexer sees it: quoted strings ('..', E'..'), quoted
 * identifiers, dollar-quoted strings, comments (-- and nested C-style), so that $N, ';' and
 * placeholders of other dialects are only found where they mean something. Statements are reported
 * through the callback with their parameters' highest number.
 */
struct sql_scan {
        const char *start; /* of the current statement */
        bool content;      /* the statement has more than blanks and comments */
        bool used[SHRT_MAX + 1];
        int max;
        char bad[24]; /* the first refused placeholder */
        int bad_gap;  /* the first $N never used */
};

static bool ident_char(char ch)
{
        return isalnum((unsigned char)ch) || ch == '_' || ch == '$' || (unsigned char)ch >= 0x80;
}

/* Skip a literal or comment starting at p; returns the position after it, or NULL for a
 * construct that does not start at p. */
static const char *skip_quoted(const char *sql, const char *p)
{
        if (p[0] == '-' && p[1] == '-') {
                p += strcspn(p, "\n");
                return p;
        }
        if (p[0] == '/' && p[1] == '*') {
                int depth = 1;

                for (p += 2; *p && depth > 0; p++) {
                        if (p[0] == '/' && p[1] == '*')
                                depth++, p++;
                        else if (p[0] == '*' && p[1] == '/')
                                depth--, p++;
                }
                return p;
        }
        if (*p == '\'') {
                /* E'...' takes backslash escapes. */
                bool esc = p > sql && (p[-1] == 'E' || p[-1] == 'e') &&
                           (p - 1 == sql || !ident_char(p[-2]));

                for (p++; *p; p++) {
                        if (esc && *p == '\\' && p[1])
                                p++;
                        else if (*p == '\'' && p[1] == '\'')
                                p++;
                        else if (*p == '\'')
                                return p + 1;
                }
                return p;
        }
        if (*p == '"') {
                for (p++; *p; p++) {
                        if (*p == '"' && p[1] == '"')
                                p++;
                        else if (*p == '"')
                                return p + 1;
                }
                return p;
        }
        if (*p == '$' && (p == sql || !ident_char(p[-1])) && !isdigit((unsigned char)p[1])) {
                /* $tag$ ... $tag$ */
                const char *q = p + 1, *end;
                size_t taglen;

                while (*q && *q != '$' && (isalnum((unsigned char)*q) || *q == '_'))
                        q++;
                if (*q != '$')
                        return NULL;
                taglen = (size_t)(q + 1 - p);
                for (end = q + 1; *end; end++)
                        if (strncmp(end, p, taglen) == 0)
                                return end + taglen;
                return end;
        }
        return NULL;
}

/* Scan one statement from p; returns where the next begins (after its ';') or the end. */
static const char *scan_statement(const char *sql, const char *p, struct sql_scan *sc)
{
        sc->start = p;
        sc->content = false;
        sc->max = 0;
        memset(sc->used, 0, sizeof(sc->used));
        while (*p && *p != ';') {
                const char *q = skip_quoted(sql, p);

                if (q) {
                        if (p[0] != '-' && p[0] != '/')
                                sc->content = true;
                        p = q;
                        continue;
                }
                if (isspace((unsigned char)*p)) {
                        p++;
                        continue;
                }
                sc->content = true;
                bool word_start = p == sql || !ident_char(p[-1]);
                if (*p == '$' && word_start && isdigit((unsigned char)p[1])) {
                        const char *q2 = p + 1;
                        long v = 0;

                        while (isdigit((unsigned char)*q2) && v <= SHRT_MAX)
                                v = v * 10 + (*q2++ - '0');
                        if (p[1] == '0' || v > SHRT_MAX || ident_char(*q2)) {
                                if (!sc->bad[0])
                                        snprintf(sc->bad, sizeof(sc->bad), "%.*s",
                                                 (int)strspn(p + 1,
                                                             "0123456789abcdefghijklmnopqrstuvwxyz"
                                                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") +
                                                     1,
                                                 p);
                        } else {
                                sc->used[v] = true;
                                if (v > sc->max)
                                        sc->max = (int)v;
                        }
                        p = q2;
                        continue;
                }
                /* Other dialects' placeholders: ?, ?1, :name, $name. An array slice a[lo:hi]
                 * and a cast x::text are not placeholders. */
                if ((*p == '$' && word_start) || (*p == '?') ||
                    (*p == ':' && word_start && p[1] != ':' &&
                     (isalpha((unsigned char)p[1]) || p[1] == '_'))) {
                        size_t n = 1 + strspn(p + 1, "0123456789abcdefghijklmnopqrstuvwxyz"
                                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");

                        if (!sc->bad[0])
                                snprintf(sc->bad, sizeof(sc->bad), "%.*s", (int)n, p);
                        p += n;
                        continue;
                }
                if (*p == ':' && p[1] == ':') {
                        p += 2;
                        continue;
                }
                p++;
        }
        sc->bad_gap = 0;
        for (int i = 1; i <= sc->max; i++)
                if (!sc->used[i]) {
                        sc->bad_gap = i;
                        break;
                }
        return *p == ';' ? p + 1 : p;
}

static int refuse_placeholder(struct pg_conn *c, const char *sql, const struct sql_scan *sc,
                              struct vg_error *err)
{
        char ex[112];

        vg_store_sql_excerpt(sql, ex, sizeof(ex));
        if (sc->bad[0])
                return vg_error_set(err, -EINVAL,
                                    "database %s: statement \"%s\": placeholder \"%s\" is not "
                                    "allowed; write $1, $2, ... (they work with SQLite too)",
                                    c->name, ex, sc->bad);
        return vg_error_set(err, -EINVAL,
                            "database %s: statement \"%s\": $%d is never used; parameters must "
                            "be numbered $1..$%d without gaps",
                            c->name, ex, sc->bad_gap, sc->max);
}

static int pg_exec(void *conn, const char *sql, struct vg_error *err)
{
        struct pg_conn *c = conn;
        struct sql_scan *sc;
        const char *p = sql, *next;
        int r;

        r = pg_usable(c, err);
        if (r < 0)
                return r;
        sc = calloc(1, sizeof(*sc));
        if (!sc)
                return -ENOMEM;
        /* Statement by statement: a multi-statement query string would run as one implicit
         * transaction, and the message could not say which statement failed. */
        for (; *p; p = next) {
                _cleanup_free_ char *one = NULL;

                next = scan_statement(sql, p, sc);
                if (!sc->content)
                        continue;
                if (sc->bad[0] || sc->max > 0) {
                        r = sc->bad[0] ? refuse_placeholder(c, sql, sc, err)
                                       : vg_error_set(err, -EINVAL,
                                                      "database %s: a script cannot take "
                                                      "parameters; prepare the statement instead",
                                                      c->name);
                        break;
                }
                one = strndup(p, (size_t)(next - p));
                if (!one) {
                        r = -ENOMEM;
                        break;
                }
                if (next > p && next[-1] == ';')
                        one[next - p - 1] = '\0';
                r = pg_command(c, one, err);
                if (r < 0)
                        break;
        }
        free(sc);
        return r;
}

static int pg_check_integrity(void *conn, struct vg_error *err)
{
        /* The server keeps its own files consistent (and checksums pages when initdb was
         * told to); what can be checked from here is that it answers. */
        return pg_exec(conn, "SELECT 1", err);
}

static int pg_begin(void *conn, struct vg_error *err)
{
        struct pg_conn *c = conn;
        int r = pg_usable(c, err);

        if (r < 0)
                return r;
        /* SERIALIZABLE: as with SQLite's single writer, a transaction's reads and writes
         * behave as if no other ran at the same time; a conflict gives SQLSTATE 40001, i.e.
         * -EBUSY, and vg_store_transact() runs the transaction again. */
        r = pg_command(c, "BEGIN ISOLATION LEVEL SERIALIZABLE", err);
        if (r >= 0)
                c->in_txn = true;
        return r;
}

static int pg_commit(void *conn, struct vg_error *err)
{
        struct pg_conn *c = conn;
        PGresult *res;
        int r = 0;

        res = PQexec(c->pg, "COMMIT");
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_fail(c, res, "COMMIT", err);
        /* COMMIT of a transaction in which a statement failed rolls back, and says so only in
         * its command tag. */
        if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
                r = vg_error_set(err, -EINVAL,
                                 "database %s: the transaction was rolled back instead of "
                                 "committed, because one of its statements had failed",
                                 c->name);
        PQclear(res);
        c->in_txn = false;
        return r;
}

static int pg_rollback(void *conn, struct vg_error *err)
{
        struct pg_conn *c = conn;

        c->in_txn = false;
        if (!c->pg || PQstatus(c->pg) != CONNECTION_OK ||
            PQtransactionStatus(c->pg) == PQTRANS_IDLE)
                return 0;
        return pg_command(c, "ROLLBACK", err);
}

/* Migrations: one migrator at a time, and it must see what the previous one committed. */
static int pg_lock_schema(void *conn, struct vg_error *err)
{
        struct pg_conn *c = conn;

        /* READ COMMITTED instead of SERIALIZABLE: each statement then sees what committed
         * before it started, so reading the schema version after waiting for the lock sees
         * the other migrator's work. The lock ends with the transaction. */
        return pg_command(c,
                          "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"
                          "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")",
                          err);
}

static int pg_has_table(void *conn, const char *table, bool *exists, struct vg_error *err)
{
        static const char sql[] = "SELECT to_regclass($1) IS NOT NULL";
        struct pg_conn *c = conn;
        const char *vals[1] = { table };
        PGresult *res;
        int r;

        *exists = false;
        r = pg_usable(c, err);
        if (r < 0)
                return r;
        res = PQexecParams(c->pg, sql, 1, NULL, vals, NULL, NULL, FORMAT_TEXT);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_fail(c, res, sql, err);
        *exists = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        return 0;
}

/* ---- statements ------------------------------------------------------------------------- */

static void clear_conv(struct pg_stmt *s)
{
        if (!s->conv)
                return;
        for (int i = 0; i < s->n_cols; i++) {
                free(s->conv[i]);
                s->conv[i] = NULL;
        }
}

static void pg_reset(void *stmt)
{
        struct pg_stmt *s = stmt;

        clear_conv(s);
        PQclear(s->res);
        s->res = NULL;
        s->row = -1;
}

static void pg_finalize(void *stmt)
{
        struct pg_stmt *s = stmt;

        if (!s)
                return;
        pg_reset(s);
        for (int i = 0; i < s->n_params; i++)
                free(s->params[i].value);
        for (int i = 0; i < s->n_cols && s->col_names; i++)
                free(s->col_names[i]);
        free(s->col_names);
        free(s->conv);
        free(s->conv_len);
        free(s->params);
        free(s->types);
        free(s->sql);
        conn_unref(s->c);
        free(s);
}
VG_DEFINE_CLEANUP_FUNC(struct pg_stmt, pg_finalize)

/* Types whose binary form is decoded here; a result with any other column comes as text. */
static bool binary_ok(Oid t)
{
        switch (t) {
        case BOOLOID:
        case BYTEAOID:
        case CHAROID:
        case NAMEOID:
        case INT8OID:
        case INT2OID:
        case INT4OID:
        case TEXTOID:
        case OIDOID:
        case FLOAT4OID:
        case FLOAT8OID:
        case BPCHAROID:
        case VARCHAROID:
                return true;
        default:
                return false;
        }
}

static int pg_prepare(void *conn, const char *sql, void **out, int *n_params, struct vg_error *err)
{
        _cleanup_(pg_finalizep) struct pg_stmt *s = NULL;
        struct pg_conn *c = conn;
        struct sql_scan *sc;
        const char *p, *next;
        PGresult *res;
        char ex[112];
        int statements = 0, r;

        *out = NULL;
        r = pg_usable(c, err);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->c = c;
        c->refs++;
        s->row = -1;
        s->sql = strdup(sql);
        if (!s->sql)
                return -ENOMEM;
        vg_store_sql_excerpt(sql, ex, sizeof(ex));

        sc = calloc(1, sizeof(*sc));
        if (!sc)
                return -ENOMEM;
        for (p = sql; *p; p = next) {
                next = scan_statement(sql, p, sc);
                if (!sc->content)
                        continue;
                if (++statements > 1)
                        break;
                if (sc->bad[0] || sc->bad_gap) {
                        r = refuse_placeholder(c, sql, sc, err);
                        free(sc);
                        return r;
                }
                s->n_params = sc->max;
        }
        free(sc);
        if (statements == 0)
                return vg_error_set(err, -EINVAL, "database %s: empty statement \"%s\"", c->name,
                                    ex);
        if (statements > 1)
                return vg_error_set(err, -EINVAL,
                                    "database %s: \"%s\" holds more than one statement; prepare "
                                    "them one by one, or run a script with vg_store_exec()",
                                    c->name, ex);

        /* The unnamed statement: parsed and checked now, its parameter and column types
         * described; each run sends the text again with those types (one round trip, as a
         * named statement would take), and nothing is left on the server to deallocate. */
        res = PQprepare(c->pg, "", sql, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_fail(c, res, sql, err);
        PQclear(res);
        res = PQdescribePrepared(c->pg, "");
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_fail(c, res, sql, err);
        if (PQnparams(res) != s->n_params) {
                PQclear(res);
                return vg_error_set(err, -EINVAL,
                                    "database %s: statement \"%s\": PostgreSQL counts %d "
                                    "parameters where vigil counted %d",
                                    c->name, ex, PQnparams(res), s->n_params);
        }
        s->types = calloc((size_t)s->n_params + 1, sizeof(Oid));
        s->params = calloc((size_t)s->n_params + 1, sizeof(*s->params));
        s->n_cols = PQnfields(res);
        s->col_names = calloc((size_t)s->n_cols + 1, sizeof(char *));
        s->conv = calloc((size_t)s->n_cols + 1, sizeof(char *));
        s->conv_len = calloc((size_t)s->n_cols + 1, sizeof(size_t));
        if (!s->types || !s->params || !s->col_names || !s->conv || !s->conv_len) {
                PQclear(res);
                return -ENOMEM;
        }
        for (int i = 0; i < s->n_params; i++)
                s->types[i] = PQparamtype(res, i);
        s->binary = true;
        for (int i = 0; i < s->n_cols; i++) {
                s->col_names[i] = strdup(PQfname(res, i));
                if (!s->col_names[i]) {
                        PQclear(res);
                        return -ENOMEM;
                }
                if (!binary_ok(PQftype(res, i)))
                        s->binary = false;
        }
        PQclear(res);
        *n_params = s->n_params;
        *out = TAKE_PTR(s);
        return 0;
}

static const char *type_name(Oid t)
{
        switch (t) {
        case BOOLOID:
                return "boolean";
        case BYTEAOID:
                return "bytea";
        case INT2OID:
        case INT4OID:
        case INT8OID:
                return "integer";
        case FLOAT4OID:
        case FLOAT8OID:
        case NUMERICOID:
                return "a number";
        default:
                return "a non-text type";
        }
}

static bool texty(Oid t)
{
        return t == TEXTOID || t == VARCHAROID || t == BPCHAROID || t == NAMEOID;
}

static int set_param(struct pg_param *pp, const void *v, size_t len, int format)
{
        char *copy;

        if (len > INT_MAX)
                return -E2BIG;
        copy = malloc(len + 1);
        if (!copy)
                return -ENOMEM;
        if (len)
                memcpy(copy, v, len);
        copy[len] = '\0';
        free(pp->value);
        pp->value = copy;
        pp->len = (int)len;
        pp->format = format;
        return 0;
}

static int pg_bind_null(void *stmt, int idx, struct vg_error *err)
{
        struct pg_stmt *s = stmt;

        (void)err;
        free(s->params[idx - 1].value);
        s->params[idx - 1] = (struct pg_param){ 0 };
        return 0;
}

static int pg_bind_int64(void *stmt, int idx, int64_t v, struct vg_error *err)
{
        struct pg_stmt *s = stmt;
        char text[24];
        int n;

        (void)err;
        if (s->types[idx - 1] == INT8OID) {
                uint8_t be[8];

                for (int i = 0; i < 8; i++)
                        be[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
                return set_param(&s->params[idx - 1], be, sizeof(be), FORMAT_BINARY);
        }
        /* Anything else (int4, numeric, text, boolean) parses the decimal form; the server
         * refuses a value out of the parameter type's range. */
        n = snprintf(text, sizeof(text), "%" PRId64, v);
        return set_param(&s->params[idx - 1], text, (size_t)n, FORMAT_TEXT);
}

static int pg_bind_text(void *stmt, int idx, const char *text, struct vg_error *err)
{
        struct pg_stmt *s = stmt;

        (void)err;
        /* Into bytea, text goes as its bytes: the text form would read backslashes. */
        return set_param(&s->params[idx - 1], text, strlen(text),
                         s->types[idx - 1] == BYTEAOID ? FORMAT_BINARY : FORMAT_TEXT);
}

static int pg_bind_blob(void *stmt, int idx, const void *p, size_t len, struct vg_error *err)
{
        struct pg_stmt *s = stmt;
        Oid t = s->types[idx - 1];
        char ex[112];

        /* The binary form of bytea is the bytes, and that of text is its characters (the
         * server checks the encoding); other types would misread them. */
        if (t != BYTEAOID && !texty(t)) {
                vg_store_sql_excerpt(s->sql, ex, sizeof(ex));
                return vg_error_set(err, -EINVAL,
                                    "database %s: statement \"%s\": cannot bind a blob to $%d, "
                                    "which PostgreSQL takes as %s (type oid %u)",
                                    s->c->name, ex, idx, type_name(t), (unsigned)t);
        }
        return set_param(&s->params[idx - 1], p, len, FORMAT_BINARY);
}

/* "INSERT 0 3", "UPDATE 3", "DELETE 3", "MERGE 3": the rows a data change touched. */
static int64_t command_changes(PGresult *res)
{
        const char *tag = PQcmdStatus(res);

        if (strncmp(tag, "INSERT ", 7) != 0 && strncmp(tag, "UPDATE ", 7) != 0 &&
            strncmp(tag, "DELETE ", 7) != 0 && strncmp(tag, "MERGE ", 6) != 0)
                return 0;
        return strtoll(PQcmdTuples(res), NULL, 10);
}

static int pg_step(void *stmt, struct vg_error *err)
{
        struct pg_stmt *s = stmt;
        struct pg_conn *c = s->c;
        ExecStatusType st;
        int r;

        clear_conv(s);
        if (!s->res) {
                const char **vals = NULL;
                int *lens = NULL, *fmts = NULL;

                r = pg_usable(c, err);
                if (r < 0)
                        return r;
                if (s->n_params) {
                        vals = calloc((size_t)s->n_params, sizeof(*vals));
                        lens = calloc((size_t)s->n_params, sizeof(*lens));
                        fmts = calloc((size_t)s->n_params, sizeof(*fmts));
                        if (!vals || !lens || !fmts) {
                                free(vals);
                                free(lens);
                                free(fmts);
                                return -ENOMEM;
                        }
                        for (int i = 0; i < s->n_params; i++) {
                                vals[i] = s->params[i].value;
                                lens[i] = s->params[i].len;
                                fmts[i] = s->params[i].format;
                        }
                }
                s->res = PQexecParams(c->pg, s->sql, s->n_params, s->types, vals, lens, fmts,
                                      s->binary ? FORMAT_BINARY : FORMAT_TEXT);
                free(vals);
                free(lens);
                free(fmts);
                st = PQresultStatus(s->res);
                if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
                        r = pg_fail(c, s->res, s->sql, err);
                        s->res = NULL;
                        return r;
                }
                /* The same SQL with the same parameter types: the columns cannot differ
                 * from the description, unless the schema changed meanwhile. */
                if (PQnfields(s->res) != s->n_cols) {
                        char ex[112];

                        PQclear(s->res);
                        s->res = NULL;
                        vg_store_sql_excerpt(s->sql, ex, sizeof(ex));
                        return vg_error_set(err, -EINVAL,
                                            "database %s: statement \"%s\": its result columns "
                                            "changed since it was prepared; prepare it again",
                                            c->name, ex);
                }
                s->changes = command_changes(s->res);
                s->row = -1;
        }
        if (++s->row < PQntuples(s->res))
                return 1;
        s->row = PQntuples(s->res);
        return 0;
}

static int pg_column_count(void *stmt)
{
        return ((struct pg_stmt *)stmt)->n_cols;
}

static const char *pg_column_name(void *stmt, int col)
{
        return ((struct pg_stmt *)stmt)->col_names[col];
}

static bool has_value(const struct pg_stmt *s, int col)
{
        return s->res && s->row >= 0 && s->row < PQntuples(s->res) &&
               !PQgetisnull(s->res, s->row, col);
}

static uint64_t be_uint(const char *p, int n)
{
        uint64_t v = 0;

        for (int i = 0; i < n; i++)
                v = v << 8 | (uint8_t)p[i];
        return v;
}

static double be_double(const char *p, int n)
{
        uint64_t bits = be_uint(p, n);

        if (n == 4) {
                uint32_t b32 = (uint32_t)bits;
                float f;

                memcpy(&f, &b32, sizeof(f));
                return f;
        }
        double d;
        memcpy(&d, &bits, sizeof(d));
        return d;
}

static enum vg_store_type pg_column_type(void *stmt, int col)
{
        struct pg_stmt *s = stmt;
        Oid t;

        if (!has_value(s, col))
                return VG_STORE_NULL;
        t = PQftype(s->res, col);
        switch (t) {
        case INT2OID:
        case INT4OID:
        case INT8OID:
        case OIDOID:
        case BOOLOID:
                return VG_STORE_INT;
        case FLOAT4OID:
        case FLOAT8OID:
                return VG_STORE_REAL;
        case NUMERICOID: {
                /* sum() of bigints is numeric: whole numbers read as integers, as in SQLite. */
                const char *v = PQgetvalue(s->res, s->row, col);

                return strpbrk(v, ".eEN") ? VG_STORE_REAL : VG_STORE_INT;
        }
        case BYTEAOID:
                return VG_STORE_BLOB;
        default:
                return VG_STORE_TEXT;
        }
}

/* Whether the value arrived in binary form (only for the types binary_ok() accepts). */
static bool is_binary(const struct pg_stmt *s, int col)
{
        return PQfformat(s->res, col) == FORMAT_BINARY;
}

static int64_t pg_column_int64(void *stmt, int col)
{
        struct pg_stmt *s = stmt;
        const char *v;
        Oid t;
        int len;

        if (!has_value(s, col))
                return 0;
        v = PQgetvalue(s->res, s->row, col);
        len = PQgetlength(s->res, s->row, col);
        t = PQftype(s->res, col);
        if (is_binary(s, col)) {
                switch (t) {
                case INT2OID:
                        return len == 2 ? (int16_t)be_uint(v, 2) : 0;
                case INT4OID:
                        return len == 4 ? (int32_t)be_uint(v, 4) : 0;
                case INT8OID:
                        return len == 8 ? (int64_t)be_uint(v, 8) : 0;
                case OIDOID:
                        return len == 4 ? (int64_t)be_uint(v, 4) : 0;
                case BOOLOID:
                        return len == 1 && v[0] != 0;
                case FLOAT4OID:
                case FLOAT8OID:
                        if (len != 4 && len != 8)
                                return 0;
                        double d = be_double(v, len);
                        return d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
                default:
                        break; /* text types: as below; libpq NUL-terminates every value */
                }
        }
        if (t == BOOLOID)
                return v[0] == 't';
        if (t == FLOAT4OID || t == FLOAT8OID || (t == NUMERICOID && strpbrk(v, ".eEN"))) {
                double d = strtod(v, NULL);
                return d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
        }
        /* Text converts by its leading digits, as SQLite's getter does. */
        return strtoll(v, NULL, 10);
}

static int hexval(char ch)
{
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* A value in a form the getters hand out, kept until the next step: bytes for bytea in text
 * form ("\x0a0b"), text for numbers in binary form. */
static const char *converted(struct pg_stmt *s, int col, size_t *len)
{
        const char *v = PQgetvalue(s->res, s->row, col);
        size_t n = (size_t)PQgetlength(s->res, s->row, col);
        Oid t = PQftype(s->res, col);
        char *out;

        if (s->conv[col]) {
                *len = s->conv_len[col];
                return s->conv[col];
        }
        if (t == BYTEAOID && !is_binary(s, col)) {
                if (n < 2 || v[0] != '\\' || v[1] != 'x' || n % 2)
                        return NULL; /* bytea_output = escape: not set by vigil */
                out = malloc((n - 2) / 2 + 1);
                if (!out)
                        return NULL;
                for (size_t i = 0; i < (n - 2) / 2; i++) {
                        int hi = hexval(v[2 + 2 * i]), lo = hexval(v[3 + 2 * i]);

                        if (hi < 0 || lo < 0) {
                                free(out);
                                return NULL;
                        }
                        out[i] = (char)(hi << 4 | lo);
                }
                n = (n - 2) / 2;
                out[n] = '\0';
        } else if (is_binary(s, col) && (t == FLOAT4OID || t == FLOAT8OID)) {
                if (asprintf(&out, "%.17g", be_double(v, (int)n)) < 0)
                        return NULL;
                n = strlen(out);
        } else if (is_binary(s, col) &&
                   (t == INT2OID || t == INT4OID || t == INT8OID || t == OIDOID || t == BOOLOID)) {
                if (asprintf(&out, "%" PRId64, pg_column_int64(s, col)) < 0)
                        return NULL;
                n = strlen(out);
        } else if (!is_binary(s, col) && t == BOOLOID) {
                out = strdup(v[0] == 't' ? "1" : "0");
                if (!out)
                        return NULL;
                n = 1;
        } else {
                *len = n;
                return v;
        }
        s->conv[col] = out;
        s->conv_len[col] = n;
        *len = n;
        return out;
}

static const char *pg_column_text(void *stmt, int col, size_t *len)
{
        struct pg_stmt *s = stmt;

        *len = 0;
        if (!has_value(s, col))
                return NULL;
        return converted(s, col, len);
}

static const void *pg_column_blob(void *stmt, int col, size_t *len)
{
        return pg_column_text(stmt, col, len);
}

static int64_t pg_changes(void *stmt)
{
        return ((struct pg_stmt *)stmt)->changes;
}

/* lastval(): the value the last nextval() of this session returned, which is what a serial
 * or identity column takes. It is an error (55000) before any; inside a transaction that
 * error would abort it, so it is fenced by a savepoint there. */
static int64_t pg_last_insert_id(void *stmt)
{
        struct pg_stmt *s = stmt;
        struct pg_conn *c = s->c;
        bool fence;
        PGresult *res;
        int64_t id = 0;

        if (!c->pg || PQstatus(c->pg) != CONNECTION_OK)
                return 0;
        fence = PQtransactionStatus(c->pg) == PQTRANS_INTRANS;
        if (fence && pg_command(c, "SAVEPOINT vigil_lastval", NULL) < 0)
                return 0;
        res = PQexec(c->pg, "SELECT lastval()");
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
                id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        if (fence) {
                if (id == 0)
                        pg_command(c, "ROLLBACK TO SAVEPOINT vigil_lastval", NULL);
                pg_command(c, "RELEASE SAVEPOINT vigil_lastval", NULL);
        }
        return id;
}

const struct vg_store_ops vg_store_pg_ops = {
        .name = "PostgreSQL",
        .open = pg_open,
        .close = pg_close,
        .exec = pg_exec,
        .check_integrity = pg_check_integrity,
        .begin = pg_begin,
        .commit = pg_commit,
        .rollback = pg_rollback,
        .lock_schema = pg_lock_schema,
        .has_table = pg_has_table,
        .prepare = pg_prepare,
        .finalize = pg_finalize,
        .bind_null = pg_bind_null,
        .bind_int64 = pg_bind_int64,
        .bind_text = pg_bind_text,
        .bind_blob = pg_bind_blob,
        .step = pg_step,
        .reset = pg_reset,
        .column_count = pg_column_count,
        .column_name = pg_column_name,
        .column_type = pg_column_type,
        .column_int64 = pg_column_int64,
        .column_text = pg_column_text,
        .column_blob = pg_column_blob,
        .changes = pg_changes,
        .last_insert_id = pg_last_insert_id,
};
