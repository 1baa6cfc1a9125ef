/* vigil-tang: the Tang server on one event loop: listeners (explicit addresses, or systemd
 * socket activation), the routes of tangd, the loaded key directory and its reloads, and the
 * per-kid last-recovery times. */
#pragma once

#include <event2/event.h>

#include "cleanup.h"
#include "config.h"
#include "error.h"

/* tangd-compatible default port of the key-management guide's examples. */
#define VG_TANGD_DEFAULT_PORT 7500
/* In the key directory: {"<S256 thumbprint of an exchange key>": <unix seconds of its last
 * successful recovery>, ...}, written atomically at most once a second. */
#define VG_TANGD_RECOVERIES_FILE ".vigil-recoveries.json"

extern const struct vg_config_schema vg_tangd_schema;

struct vg_tangd;

/* Load the keys of cfg's jwkdir, listen on every listen address (or on the sockets systemd
 * passed), watch the directory. */
int vg_tangd_new(struct event_base *base, const struct vg_config *cfg, struct vg_tangd **out,
                 struct vg_error *err);
/* Reload the key directory now (SIGHUP); on failure the old keys stay. */
int vg_tangd_reload(struct vg_tangd *t, struct vg_error *err);
/* Write pending recovery times now. */
void vg_tangd_flush(struct vg_tangd *t);
void vg_tangd_free(struct vg_tangd *t);
VG_DEFINE_CLEANUP_FUNC(struct vg_tangd, vg_tangd_free)

/* Split "127.0.0.1:7500", "[::1]:7500", "0.0.0.0" or "[::]" into an address and a port
 * (default VG_TANGD_DEFAULT_PORT). */
int vg_tangd_parse_listen(const char *spec, char *addr, size_t addr_len, unsigned *port,
                          struct vg_error *err);
