/* vigil-tang: POST /rec/{kid}, the server's half of the McCallum-Relyea exchange. */
#include "rec.h"

#include <errno.h>
#include <string.h>

#include <jose/jwk.h>

#include "cleanup.h"

/* A base64url coordinate: only the alphabet, and not longer than a P-521 coordinate needs
 * (66 bytes: 88 characters), so that nothing huge reaches the bignum code. */
static bool coordinate_ok(const json_t *v)
{
        const char *s = json_string_value(v);
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > 88)
                return false;
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

int vg_tangd_rec(const json_t *key, bool kid_is_signing, const void *body, size_t len, char **reply,
                 size_t *reply_len, struct vg_error *err)
{
        _cleanup_(json_decrefp) json_t *req = NULL;
        _cleanup_(json_decrefp) json_t *pub = NULL;
        _cleanup_(json_decrefp) json_t *res = NULL;
        json_error_t jerr;
        const char *kty, *alg, *crv, *kcrv, *kalg;
        char *out;

        *reply = NULL;
        *reply_len = 0;
        if (len > VG_TANGD_MAX_BODY) {
                vg_error_set(err, -E2BIG, "request body of %zu bytes, the limit is %d", len,
                             VG_TANGD_MAX_BODY);
                return 413;
        }
        req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!req) {
                vg_error_set(err, -EINVAL, "request body: line %d column %d: %s", jerr.line,
                             jerr.column, jerr.text);
                return 400;
        }
        if (!json_is_object(req)) {
                vg_error_set(err, -EINVAL, "request body: expected a JWK object");
                return 400;
        }
        /* Absent key_ops is fine; present, it must allow deriveKey (jose_jwk_prm, req=false). */
        if (json_object_get(req, "key_ops") && !jose_jwk_prm(NULL, req, false, "deriveKey")) {
                vg_error_set(err, -EPERM, "request JWK: key_ops does not allow deriveKey");
                return 403;
        }
        kty = json_string_value(json_object_get(req, "kty"));
        if (!kty || strcmp(kty, "EC") != 0) {
                vg_error_set(err, -EINVAL, "request JWK: kty must be \"EC\"");
                return 400;
        }
        if (json_object_get(req, "alg")) {
                alg = json_string_value(json_object_get(req, "alg"));
                if (!alg || strcmp(alg, "ECMR") != 0) {
                        vg_error_set(err, -EINVAL, "request JWK: alg must be \"ECMR\"");
                        return 400;
                }
        }
        if (!key) {
                if (kid_is_signing) {
                        vg_error_set(err, -EPERM, "the key is a signing key, not for deriveKey");
                        return 403;
                }
                vg_error_set(err, -ENOENT, "no exchange key has this thumbprint");
                return 404;
        }
        kalg = json_string_value(json_object_get(key, "alg"));
        kcrv = json_string_value(json_object_get(key, "crv"));
        if (!json_object_get(key, "d") || !kalg || strcmp(kalg, "ECMR") != 0 || !kcrv ||
            !jose_jwk_prm(NULL, key, false, "deriveKey")) {
                vg_error_set(err, -EPERM, "the key is not a private ECMR exchange key");
                return 403;
        }
        crv = json_string_value(json_object_get(req, "crv"));
        if (!crv || strcmp(crv, kcrv) != 0) {
                vg_error_set(err, -EINVAL, "request JWK: crv must be \"%s\"", kcrv);
                return 400;
        }
        if (!coordinate_ok(json_object_get(req, "x")) ||
            !coordinate_ok(json_object_get(req, "y"))) {
                vg_error_set(err, -EINVAL, "request JWK: x and y must be base64url coordinates");
                return 400;
        }
        /* Only the public point goes into the exchange: a "d" in the request must not change
         * which operation libjose picks (it multiplies when the local key has d). */
        pub = json_pack("{s:s,s:s,s:O,s:O,s:s}", "kty", "EC", "crv", kcrv, "x",
                        json_object_get(req, "x"), "y", json_object_get(req, "y"), "alg", "ECMR");
        if (!pub) {
                vg_error_set(err, -ENOMEM, "out of memory");
                return 500;
        }
        res = jose_jwk_exc(NULL, key, pub);
        if (!res) {
                vg_error_set(err, -EINVAL, "request JWK: the point is not on curve %s", kcrv);
                return 400;
        }
        if (json_object_set_new(res, "alg", json_string("ECMR")) < 0 ||
            json_object_set_new(res, "key_ops", json_pack("[s]", "deriveKey")) < 0) {
                vg_error_set(err, -ENOMEM, "out of memory");
                return 500;
        }
        json_object_del(res, "d");
        out = json_dumps(res, JSON_SORT_KEYS | JSON_COMPACT);
        if (!out) {
                vg_error_set(err, -ENOMEM, "out of memory");
                return 500;
        }
        *reply = out;
        *reply_len = strlen(out);
        return 200;
}
