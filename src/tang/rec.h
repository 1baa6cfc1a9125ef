/* vigil-tang: the POST /rec/{kid} request path as a pure function (tang.md §1.3-1.4), shared
 * by the server and the fuzz target. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "error.h"
#include "tang_keys.h"

/* tangd's request body limit (tang.md §1.1): larger bodies get 413. */
#define VG_TANGD_MAX_BODY (64 * 1024)

/*
 * Answer a recovery request. key is the private ECMR exchange key kid names (NULL: no exchange
 * key has that thumbprint); kid_is_signing says kid names a signing key instead (tangd: 403).
 * Checks in tangd's order: body not a JSON object 400; key_ops present without deriveKey 403;
 * kty not "EC" or alg present and not "ECMR" 400; unknown kid 404; kid of a key not for
 * deriveKey 403; curve other than the key's, missing or malformed coordinates, point not on the
 * curve 400. Returns the HTTP status; on 200 *reply (malloc'd, *reply_len bytes) is the sorted
 * compact JWK y = S·x with alg ECMR and key_ops [deriveKey]; otherwise err says why.
 * The exchange is raw OpenSSL (vg_tang_exc_mul); key is converted on every call, so the server
 * uses vg_tangd_rec_exc() with the keys converted once at load.
 */
int vg_tangd_rec(const json_t *key, bool kid_is_signing, const void *body, size_t len, char **reply,
                 size_t *reply_len, struct vg_error *err);
/* The same with a key converted at load (vg_tang_keys_exchange()); NULL: no exchange key. */
int vg_tangd_rec_exc(const struct vg_tang_exc *exc, bool kid_is_signing, const void *body,
                     size_t len, char **reply, size_t *reply_len, struct vg_error *err);
/* The same through libjose's jose_jwk_exc(), as tangd does it (about 5x slower): the oracle
 * the tests compare vg_tangd_rec_exc() against, byte for byte. */
int vg_tangd_rec_jose(const json_t *key, bool kid_is_signing, const void *body, size_t len,
                      char **reply, size_t *reply_len, struct vg_error *err);
