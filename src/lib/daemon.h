/* vigil: what every daemon shares: its command line, layered configuration, logging, one event
 * loop, detaching with startup errors still reaching the terminal, readiness, and a clean stop.
 * Each daemon's main() is a thin shell: init, bind and load, ready, run. */
#pragma once

#include <event2/event.h>
#include <stdbool.h>

#include "config.h"

struct vg_daemon_info {
        const char *name;    /* "vigil-registrar": the program and the logs' component */
        const char *summary; /* one line for --help */
        const struct vg_config_schema *schema;
};

struct vg_daemon;

/*
 * Parse the command line (the same for every daemon):
 *   -c, --config FILE   read FILE instead of /etc/vigil/<component>.conf (drop-ins then skipped)
 *   -f, --foreground    stay attached to the terminal, log to stderr (tests, systemd)
 *   --log-json          log lines as JSON objects
 *   --log-level LEVEL   error, warning, notice, info (default) or debug
 *   --pid-file FILE     write the daemon's PID there once it is ready
 *   --check-config      load and check the configuration, then exit 0 or 1
 *   --show-config       print every effective option with where it came from, then exit
 *   -h, --help; --version
 * then load the configuration and set up logging. Unless -f, the process forks here: the parent
 * waits, exits 0 once the daemon calls vg_daemon_ready(), or with the daemon's status if it
 * fails first, so startup errors still reach the terminal and the exit status.
 *
 * Returns 0 with *out set: go on. Returns an exit status (> 0, or 0 after --help and the like)
 * with *out NULL: main() returns it; any message has been printed.
 */
int vg_daemon_init(const struct vg_daemon_info *info, int argc, char **argv,
                   struct vg_daemon **out);

struct event_base *vg_daemon_base(const struct vg_daemon *d);
const struct vg_config *vg_daemon_config(const struct vg_daemon *d);
struct vg_config *vg_daemon_config_mut(struct vg_daemon *d);

/* The daemon listens and has its keys: release the waiting parent (background mode), write the
 * pid file, tell systemd (READY=1 on $NOTIFY_SOCKET), and log "ready". Logging moves to syslog
 * when detached. */
int vg_daemon_ready(struct vg_daemon *d);

/* Run the event loop until SIGTERM or SIGINT (or vg_daemon_stop()); returns the exit status. */
int vg_daemon_run(struct vg_daemon *d);

/* Leave the loop from a callback, with the status vg_daemon_run() should return. */
void vg_daemon_stop(struct vg_daemon *d, int status);

/* Free the loop and configuration, remove the pid file. Owned objects that use the loop (servers,
 * clients) must be freed before. */
void vg_daemon_free(struct vg_daemon *d);
VG_DEFINE_CLEANUP_FUNC(struct vg_daemon, vg_daemon_free)
