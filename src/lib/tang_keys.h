/* vigil: Tang key directories (reference/tang.md §1.5-1.7): signing (ES512) and exchange
 * (ECMR) keys as tang lays them out (`*.jwk` advertised, `.*.jwk` hidden), their RFC 7638
 * thumbprints, and the signed advertisements computed once per load, not per request. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cleanup.h"
#include "error.h"

/* A loaded directory. Immutable once loaded: a reload builds a new one and swaps it in. */
struct vg_tang_keys;

/*
 * Read every *.jwk (advertised) and .*.jwk (hidden) file of dir; refuse (naming the file)
 * anything that is not a private EC JWK usable for signing (alg ES256/384/512) or exchange
 * (alg ECMR). Precompute: the JWK set of the advertised public keys, the default
 * advertisement (a JWS over it signed by every advertised signing key), and for each
 * thumbprint of any signing key (advertised or hidden, every hash S1, S224, S256, S384, S512)
 * the advertisement signed additionally by that key. A directory without keys loads (empty
 * advertisement); the server then answers 404 as tangd does.
 */
int vg_tang_keys_load(const char *dir, struct vg_tang_keys **out, struct vg_error *err);
void vg_tang_keys_free(struct vg_tang_keys *k);
VG_DEFINE_CLEANUP_FUNC(struct vg_tang_keys, vg_tang_keys_free)

/* GET /adv: the default advertisement (compact JSON of the JWS, general serialization as
 * tangd sends it), or NULL when no signing key is advertised. */
const char *vg_tang_keys_adv(const struct vg_tang_keys *k, size_t *len);
/* GET /adv/{thp}: the advertisement also signed by the signing key with that thumbprint, or
 * NULL (404) when there is none. */
const char *vg_tang_keys_adv_thp(const struct vg_tang_keys *k, const char *thp, size_t *len);
/* POST /rec/{kid}: the private exchange (ECMR) key with that thumbprint, advertised or
 * hidden (borrowed), or NULL when unknown. */
const json_t *vg_tang_keys_exchange_key(const struct vg_tang_keys *k, const char *kid);
/* Whether the key named by thumbprint kid is hidden (for the recovery log). */
bool vg_tang_keys_is_hidden(const struct vg_tang_keys *k, const char *kid);

/* Thumbprints (S256, as tang-show-keys prints them) of the advertised keys, or of the hidden
 * ones; a NULL-terminated array owned by k. */
const char *const *vg_tang_keys_thumbprints(const struct vg_tang_keys *k, bool hidden);

/* RFC 7638 thumbprint of jwk with hash "S1", "S224", "S256", "S384" or "S512", base64url. */
int vg_tang_thumbprint(const json_t *jwk, const char *hash, char **out, struct vg_error *err);

/*
 * Key management, as tangd-keygen and tangd-rotate-keys do it: keygen creates an ES512
 * signing key and an ECMR exchange key (P-521) in dir, each named <S256 thumbprint>.jwk,
 * mode 0440, O_EXCL. rotate hides every advertised key (renames x.jwk to .x.jwk) and then
 * creates a new pair, so that old clients still recover and new ones get new keys. The
 * thumbprints of what was created are returned (may be NULL) for the caller to print.
 */
int vg_tang_keygen(const char *dir, char **sig_thp, char **exc_thp, struct vg_error *err);
int vg_tang_rotate(const char *dir, char **sig_thp, char **exc_thp, struct vg_error *err);
