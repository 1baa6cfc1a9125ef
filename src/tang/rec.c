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

/* The checks before the key matters, in tangd's order; 0 when *req may go on. */
static int parse_request(const void *body, size_t len, json_t **req_out, struct vg_error *err)
{
        _cleanup_(json_decrefp) json_t *req = NULL;
        json_error_t jerr;
        const char *kty, *alg;

        if (len > VG_TANGD_MAX_BODY)
                return vg_error_set(err, -E2BIG, "request body of %zu bytes, the limit is %d", len,
                                    VG_TANGD_MAX_BODY),
                       413;
        req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!req)
                return vg_error_set(err, -EINVAL, "request body: line %d column %d: %s", jerr.line,
                                    jerr.column, jerr.text),
                       400;
        if (!json_is_object(req))
                return vg_error_set(err, -EINVAL, "request body: expected a JWK object"), 400;
        /* Absent key_ops is fine; present, it must allow deriveKey (jose_jwk_prm, req=false). */
        if (json_object_get(req, "key_ops") && !jose_jwk_prm(NULL, req, false, "deriveKey"))
                return vg_error_set(err, -EPERM, "request JWK: key_ops does not allow deriveKey"),
                       403;
        kty = json_string_value(json_object_get(req, "kty"));
        if (!kty || strcmp(kty, "EC") != 0)
                return vg_error_set(err, -EINVAL, "request JWK: kty must be \"EC\""), 400;
        if (json_object_get(req, "alg")) {
                alg = json_string_value(json_object_get(req, "alg"));
                if (!alg || strcmp(alg, "ECMR") != 0)
                        return vg_error_set(err, -EINVAL, "request JWK: alg must be \"ECMR\""), 400;
        }
        *req_out = TAKE_PTR(req);
        return 0;
}

static int no_key(bool kid_is_signing, struct vg_error *err)
{
        if (kid_is_signing)
                return vg_error_set(err, -EPERM, "the key is a signing key, not for deriveKey"),
                       403;
        return vg_error_set(err, -ENOENT, "no exchange key has this thumbprint"), 404;
}

/* The request's curve and coordinates against the key's curve kcrv; 0 when they may go on. */
static int check_point(const json_t *req, const char *kcrv, struct vg_error *err)
{
        const char *crv = json_string_value(json_object_get(req, "crv"));

        if (!crv || strcmp(crv, kcrv) != 0)
                return vg_error_set(err, -EINVAL, "request JWK: crv must be \"%s\"", kcrv), 400;
        if (!coordinate_ok(json_object_get(req, "x")) || !coordinate_ok(json_object_get(req, "y")))
                return vg_error_set(err, -EINVAL,
                                    "request JWK: x and y must be base64url coordinates"),
                       400;
        return 0;
}

int vg_tangd_rec_exc(const struct vg_tang_exc *exc, bool kid_is_signing, const void *body,
                     size_t len, char **reply, size_t *reply_len, struct vg_error *err)
{
        _cleanup_(json_decrefp) json_t *req = NULL;
        int status, r;

        *reply = NULL;
        *reply_len = 0;
        status = parse_request(body, len, &req, err);
        if (status)
                return status;
        if (!exc)
                return no_key(kid_is_signing, err);
        status = check_point(req, vg_tang_exc_crv(exc), err);
        if (status)
                return status;
        r = vg_tang_exc_mul(exc, json_string_value(json_object_get(req, "x")),
                            json_string_value(json_object_get(req, "y")), reply, reply_len, err);
        if (r == -ENOMEM)
                return 500;
        return r < 0 ? 400 : 200;
}

/* The key as vg_tangd_rec_jose() requires it; 0 when usable. */
static int check_key(const json_t *key, struct vg_error *err)
{
        const char *kalg = json_string_value(json_object_get(key, "alg"));
        const char *kcrv = json_string_value(json_object_get(key, "crv"));

        if (!json_object_get(key, "d") || !kalg || strcmp(kalg, "ECMR") != 0 || !kcrv ||
            !jose_jwk_prm(NULL, key, false, "deriveKey"))
                return vg_error_set(err, -EPERM, "the key is not a private ECMR exchange key"), 403;
        return 0;
}

int vg_tangd_rec(const json_t *key, bool kid_is_signing, const void *body, size_t len, char **reply,
                 size_t *reply_len, struct vg_error *err)
{
        _cleanup_(vg_tang_exc_freep) struct vg_tang_exc *exc = NULL;
        _cleanup_(json_decrefp) json_t *req = NULL;
        int status;

        *reply = NULL;
        *reply_len = 0;
        /* Answer the request's own faults before converting the key, as the server does. */
        status = parse_request(body, len, &req, err);
        if (status)
                return status;
        if (!key)
                return no_key(kid_is_signing, err);
        status = check_key(key, err);
        if (status)
                return status;
        if (vg_tang_exc_new(key, &exc, err) < 0)
                return 403;
        return vg_tangd_rec_exc(exc, false, body, len, reply, reply_len, err);
}

int vg_tangd_rec_jose(const json_t *key, bool kid_is_signing, const void *body, size_t len,
                      char **reply, size_t *reply_len, struct vg_error *err)
{
        _cleanup_(json_decrefp) json_t *req = NULL;
        _cleanup_(json_decrefp) json_t *pub = NULL;
        _cleanup_(json_decrefp) json_t *res = NULL;
        const char *kcrv;
        char *out;
        int status;

        *reply = NULL;
        *reply_len = 0;
        status = parse_request(body, len, &req, err);
        if (status)
                return status;
        if (!key)
                return no_key(kid_is_signing, err);
        status = check_key(key, err);
        if (status)
                return status;
        kcrv = json_string_value(json_object_get(key, "crv"));
        status = check_point(req, kcrv, err);
        if (status)
                return status;
        /* Only the public point goes into the exchange: a "d" in the request must not change
         * which operation libjose picks (it multiplies when the local key has d). */
        pub = json_pack("{s:s,s:s,s:O,s:O,s:s}", "kty", "EC", "crv", kcrv, "x",
                        json_object_get(req, "x"), "y", json_object_get(req, "y"), "alg", "ECMR");
        if (!pub)
                return vg_error_set(err, -ENOMEM, "out of memory"), 500;
        res = jose_jwk_exc(NULL, key, pub);
        if (!res)
                return vg_error_set(err, -EINVAL, "request JWK: the point is not on curve %s",
                                    kcrv),
                       400;
        if (json_object_set_new(res, "alg", json_string("ECMR")) < 0 ||
            json_object_set_new(res, "key_ops", json_pack("[s]", "deriveKey")) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory"), 500;
        json_object_del(res, "d");
        out = json_dumps(res, JSON_SORT_KEYS | JSON_COMPACT);
        if (!out)
                return vg_error_set(err, -ENOMEM, "out of memory"), 500;
        *reply = out;
        *reply_len = strlen(out);
        return 200;
}
