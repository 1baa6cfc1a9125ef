/* vigil-registrar: Keylime-compatible registrar (REST API v2.1-v2.5): agent registration and
 * activation on a plain port, admin reads and deletes over mTLS, identities kept in a store. */
#pragma once

#include <event2/event.h>

#include "cleanup.h"
#include "config.h"
#include "error.h"

/* API versions accepted in request paths, oldest first; the last is "current_version". */
#define VG_REGISTRAR_API_VERSIONS "2.1", "2.2", "2.3", "2.4", "2.5"

/* Bodies are an EK certificate chain and two public keys: a few KiB. */
#define VG_REGISTRAR_MAX_BODY (64 * 1024)

extern const struct vg_config_schema vg_registrar_schema;

struct vg_registrar;

/* Open the database (migrating it), read the tpm_cert_store, build the TLS context from
 * tls_dir and listen on ip:port (plain) and ip:tls_port (mTLS). err names what failed. */
int vg_registrar_new(struct event_base *base, const struct vg_config *cfg,
                     struct vg_registrar **out, struct vg_error *err);
void vg_registrar_free(struct vg_registrar *reg);
VG_DEFINE_CLEANUP_FUNC(struct vg_registrar, vg_registrar_free)

/* The bound ports (useful with port 0 in tests). */
int vg_registrar_port(const struct vg_registrar *reg);
int vg_registrar_tls_port(const struct vg_registrar *reg);
