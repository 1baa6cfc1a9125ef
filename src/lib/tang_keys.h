/* vigil: Tang key directories (reference/tang.md §1.5-1.7): signing (ES512) and exchange
 * (ECMR) keys as tang lays them out (`*.jwk` advertised, `.*.jwk` hidden), their RFC 7638
 * thumbprints, and the signed advertisements computed once per load, not per request. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>

#include "cleanup.h"
#include "error.h"

/* A loaded directory. Immutable once loaded: a reload builds a new one and swaps it in. */
struct vg_tang_keys;

/*
 * Read every *.jwk (advertised) and .*.jwk (hidden) file of dir. As tangd does, a file that is
 * not a private EC JWK usable for signing (alg ES256/384/512) or exchange (alg ECMR) is left
 * out, not fatal: vg_tang_keys_skipped() says which and why, for the caller to log; only an
 * unreadable directory or no memory fails the load. Precompute: the JWK set of the advertised public keys, the default
 * advertisement (a JWS over it signed by every advertised signing key), and for each
 * thumbprint of any signing key (advertised or hidden, every hash S1, S224, S256, S384, S512)
 * the advertisement signed additionally by that key. A directory without keys loads (empty
 * advertisement); the server then answers 404 as tangd does.
 */
int vg_tang_keys_load(const char *dir, struct vg_tang_keys **out, struct vg_error *err);
void vg_tang_keys_free(struct vg_tang_keys *k);
/* The key files the load left out, each as "<file>: <what is wrong>"; *n of them. */
const char *const *vg_tang_keys_skipped(const struct vg_tang_keys *k, size_t *n);
VG_DEFINE_CLEANUP_FUNC(struct vg_tang_keys, vg_tang_keys_free)

/* GET /adv: the default advertisement (the JWS as tangd sends it: jansson's default dump;
 * libjose's flattened serialization with one signing key, general with several), or NULL
 * when no signing key is advertised. */
const char *vg_tang_keys_adv(const struct vg_tang_keys *k, size_t *len);
/* GET /adv/{thp}: the advertisement also signed by the signing key with that thumbprint, or
 * NULL (404) when there is none. */
const char *vg_tang_keys_adv_thp(const struct vg_tang_keys *k, const char *thp, size_t *len);
/* POST /rec/{kid}: the private exchange (ECMR) key with that thumbprint, advertised or
 * hidden (borrowed), or NULL when unknown. */
const json_t *vg_tang_keys_exchange_key(const struct vg_tang_keys *k, const char *kid);
/*
 * The McCallum-Relyea exchange on raw OpenSSL (tang.md §1.4): an ECMR private key converted
 * once (curve group, constant-time scalar, its S256 thumbprint), immutable, usable from any
 * thread at once.
 */
struct vg_tang_exc;
/* Convert a private ECMR JWK (crv P-256, P-384 or P-521, "d"); err says what is wrong. */
int vg_tang_exc_new(const json_t *jwk, struct vg_tang_exc **out, struct vg_error *err);
void vg_tang_exc_free(struct vg_tang_exc *e);
VG_DEFINE_CLEANUP_FUNC(struct vg_tang_exc, vg_tang_exc_free)
const char *vg_tang_exc_crv(const struct vg_tang_exc *e);
/* The key's S256 thumbprint (what the recovery record is keyed by). */
const char *vg_tang_exc_thp(const struct vg_tang_exc *e);
/*
 * y = S·x for the client point x given by its base64url coordinates: -EINVAL (err says why)
 * when they do not decode or the point is not on the key's curve or is the point at infinity.
 * On success *out (malloc'd, *out_len bytes) is the reply JWK exactly as tangd sends it
 * (libjose's result, sorted compact): {"alg":"ECMR","crv":..,"key_ops":["deriveKey"],
 * "kty":"EC","x":..,"y":..}, coordinates padded to the curve's size.
 */
int vg_tang_exc_mul(const struct vg_tang_exc *e, const char *x, const char *y, char **out,
                    size_t *out_len, struct vg_error *err);
/* POST /rec/{kid}: the converted exchange key with that thumbprint (borrowed), or NULL. */
const struct vg_tang_exc *vg_tang_keys_exchange(const struct vg_tang_keys *k, const char *kid);
/* Any key (signing or exchange, advertised or hidden) with that thumbprint (borrowed), or
 * NULL: lets the server answer 403 for a signing kid on /rec as tangd does, 404 for none. */
const json_t *vg_tang_keys_find(const struct vg_tang_keys *k, const char *thp);
/* Whether the key named by thumbprint kid is hidden (for the recovery log). */
bool vg_tang_keys_is_hidden(const struct vg_tang_keys *k, const char *kid);

/* Thumbprints (S256, as tang-show-keys prints them) of the advertised keys, or of the hidden
 * ones; a NULL-terminated array owned by k. */
const char *const *vg_tang_keys_thumbprints(const struct vg_tang_keys *k, bool hidden);

/* Every key loaded, in directory order. */
struct vg_tang_key_info {
        const char *file; /* the file name inside dir */
        const char *thp;  /* S256 thumbprint */
        bool hidden;      /* .*.jwk */
        bool signing;     /* ES256/384/512 sign+verify; otherwise ECMR deriveKey */
};
size_t vg_tang_keys_list(const struct vg_tang_keys *k, const struct vg_tang_key_info **out);

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

/*
 * Backups: every *.jwk and .*.jwk of dir in one JSON file
 * {"vigil-tang-backup":1,"keys":[{"name":"<file>","mode":<octal as number>,"jwk":"<bytes>"}]}
 * (file contents kept byte for byte), created O_EXCL mode 0400. restore checks the whole
 * bundle (names, JWKs) and that none of its files exists in dir before writing any, then
 * creates them O_EXCL with their recorded modes. Both return the number of keys, or a
 * negative errno with err naming the file at fault.
 */
int vg_tang_backup(const char *dir, const char *file, struct vg_error *err);
int vg_tang_restore(const char *file, const char *dir, struct vg_error *err);

/* The server's record of the last recovery per exchange key: {"<kid>": <unix time>, ...},
 * kid being the thumbprint the client named; written atomically by vigil-tang. */
#define VG_TANG_RECOVERIES_FILE ".vigil-recoveries.json"

/*
 * Remove the hidden keys of dir. Unless force, refuse (-EBUSY, err naming the key and when it
 * was last used) while any hidden key recovered a client less than window_s seconds before
 * now according to dir/VG_TANG_RECOVERIES_FILE (by any of its thumbprints). Returns the
 * number of files removed.
 */
int vg_tang_purge_hidden(const char *dir, bool force, time_t window_s, time_t now,
                         struct vg_error *err);
