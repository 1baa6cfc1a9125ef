/* vigil tests: a private PostgreSQL 15 server per test program, started from a cached initdb
 * template in well under a second, listening on 127.0.0.1 and a unix socket in its directory. */
#pragma once

#include "cleanup.h"
#include "error.h"

struct vg_pg;

/*
 * Start a server: copy the cached template cluster (made by initdb on first use, under
 * $TMPDIR/vigil-pg-cache-<uid>) into a fresh directory, start postgres on a free port of
 * 127.0.0.1 with fsync off, and wait until it accepts connections. When running as root, the
 * server runs as "nobody". The superuser is "vigil" with a password (host connections use
 * scram-sha-256; the unix socket trusts).
 * -ENOENT when PostgreSQL is not installed: the caller skips, with err as the reason.
 * The binaries are taken from $VIGIL_PG_BINDIR, else /usr/lib/postgresql/15/bin.
 */
int vg_pg_start(struct vg_pg **out, struct vg_error *err);
/* "postgresql://vigil:PASSWORD@127.0.0.1:PORT/postgres". */
const char *vg_pg_url(const struct vg_pg *pg);
int vg_pg_port(const struct vg_pg *pg);
const char *vg_pg_user(const struct vg_pg *pg);
const char *vg_pg_password(const struct vg_pg *pg);
/* The server's log file (for diagnostics). */
const char *vg_pg_log(const struct vg_pg *pg);
/* Create database name (letters, digits, '_') and give its URL in *url (caller frees). */
int vg_pg_create_db(struct vg_pg *pg, const char *name, char **url, struct vg_error *err);
/* The URL of database name on this server, without creating it (caller frees). */
char *vg_pg_db_url(const struct vg_pg *pg, const char *name);
/* Stop the server (by its PID: fast shutdown, then SIGKILL) and remove its directory. */
void vg_pg_free(struct vg_pg *pg);
VG_DEFINE_CLEANUP_FUNC(struct vg_pg, vg_pg_free)
