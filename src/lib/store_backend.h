/* vigil: the interface between the generic store layer (store.c) and one SQL backend
 * (store_sqlite.c, store_pg.c). Not for callers of the store: they use store.h. */
#pragma once

#include "store.h"

/*
 * The backend interface. Each backend fills one table; the generic
 * layer (store.c) keeps the transaction state, parameter bookkeeping and migrations, so a
 * backend only translates. conn and stmt are the backend's own objects. Every function that
 * takes an err fills it with a message that names the database (and the statement).
 */
struct vg_store_ops {
        const char *name; /* "SQLite" */
        /* opts is complete: never NULL, busy_timeout_ms already resolved. */
        int (*open)(const struct vg_store_url *url, const struct vg_store_options *opts,
                    void **conn, struct vg_error *err);
        void (*close)(void *conn);
        int (*exec)(void *conn, const char *sql, struct vg_error *err);
        int (*check_integrity)(void *conn, struct vg_error *err);
        int (*begin)(void *conn, struct vg_error *err);
        int (*commit)(void *conn, struct vg_error *err);
        /* Must succeed quietly when the server already ended the transaction. */
        int (*rollback)(void *conn, struct vg_error *err);
        /* Called first in each migration transaction: make other migrators of the same
         * database wait until this transaction ends, and let the statements that follow see
         * what they committed. NULL when begin already does that (SQLite's write lock). */
        int (*lock_schema)(void *conn, struct vg_error *err);
        int (*has_table)(void *conn, const char *table, bool *exists, struct vg_error *err);

        /* Sets *n_params to the highest $N; $1..$N must all occur. */
        int (*prepare)(void *conn, const char *sql, void **stmt, int *n_params,
                       struct vg_error *err);
        /* May run after close(): must not use the connection, except for the backend's own
         * bookkeeping that keeps it alive for its statements. */
        void (*finalize)(void *stmt);
        /* idx is 1..n_params; the statement has been reset beforehand if it had run. */
        int (*bind_null)(void *stmt, int idx, struct vg_error *err);
        int (*bind_int64)(void *stmt, int idx, int64_t v, struct vg_error *err);
        int (*bind_text)(void *stmt, int idx, const char *text, struct vg_error *err);
        int (*bind_blob)(void *stmt, int idx, const void *p, size_t len, struct vg_error *err);
        /* 1 row, 0 done (then changes and last_insert_id are current), < 0 error. */
        int (*step)(void *stmt, struct vg_error *err);
        void (*reset)(void *stmt);
        int (*column_count)(void *stmt);
        const char *(*column_name)(void *stmt, int col);
        enum vg_store_type (*column_type)(void *stmt, int col);
        int64_t (*column_int64)(void *stmt, int col);
        const char *(*column_text)(void *stmt, int col, size_t *len);
        const void *(*column_blob)(void *stmt, int col, size_t *len);
        int64_t (*changes)(void *stmt);
        int64_t (*last_insert_id)(void *stmt);
};

extern const struct vg_store_ops vg_store_sqlite_ops;
extern const struct vg_store_ops vg_store_pg_ops;

/* For backends' messages: the SQL on one line, cut to fit size with "..." when longer. */
void vg_store_sql_excerpt(const char *sql, char *buf, size_t size);
