/* vigil-tang's /rec exchange on raw OpenSSL (vg_tangd_rec_exc, keys converted once) against
 * libjose's jose_jwk_exc as tangd calls it (vg_tangd_rec_jose, the oracle): same status and
 * byte-identical replies on many random client points of every curve, on points with leading
 * zero bytes stripped, on mutated and off-curve points; and the recovery really recovers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jose/jose.h>

#include "rec.h"
#include "tang_keys.h"
#include "tap.h"

#define POINTS 150

static json_t *gen(const char *crv, bool ecmr)
{
        json_t *k = ecmr ? json_pack("{s:s,s:s,s:s}", "kty", "EC", "crv", crv, "alg", "ECMR")
                         : json_pack("{s:s,s:s}", "kty", "EC", "crv", crv);

        if (!k || !jose_jwk_gen(NULL, k))
                abort();
        return k;
}

/* Both paths on one body: 1 when they agree (status, and reply bytes on 200). */
static int agree(const json_t *key, const struct vg_tang_exc *exc, const char *body, int *status)
{
        struct vg_error e1 = { 0 }, e2 = { 0 };
        char *r1 = NULL, *r2 = NULL;
        size_t l1 = 0, l2 = 0;
        int s1, s2, same;

        s1 = vg_tangd_rec_exc(exc, false, body, strlen(body), &r1, &l1, &e1);
        s2 = vg_tangd_rec_jose(key, false, body, strlen(body), &r2, &l2, &e2);
        same = s1 == s2 && (s1 != 200 || (l1 == l2 && r1 && r2 && memcmp(r1, r2, l1) == 0));
        if (!same)
                tap_diag("differ on %s: openssl %d %s / libjose %d %s", body, s1, r1 ? r1 : e1.msg,
                         s2, r2 ? r2 : e2.msg);
        *status = s1;
        free(r1);
        free(r2);
        return same;
}

static char *body_of(const char *crv, const char *x, const char *y)
{
        return tap_strf(
            "{\"kty\":\"EC\",\"alg\":\"ECMR\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", crv, x,
            y);
}

/* x with its leading zero bytes removed (libjose accepts short coordinates), or NULL. */
static char *strip_zero(const char *x)
{
        uint8_t buf[80];
        size_t n = jose_b64_dec_buf(x, strlen(x), buf, sizeof(buf)), i = 0;
        char out[128];
        size_t m;

        if (n == SIZE_MAX || n < 2 || buf[0] != 0)
                return NULL;
        while (i < n - 1 && buf[i] == 0)
                i++;
        m = jose_b64_enc_buf(buf + i, n - i, out, sizeof(out) - 1);
        out[m] = '\0';
        return strdup(out);
}

int main(void)
{
        static const char *const curves[] = { "P-256", "P-384", "P-521" };

        tap_plan(3 * 6 + 2);
        for (size_t c = 0; c < 3; c++) {
                const char *crv = curves[c];
                json_t *key = gen(crv, true);
                struct vg_tang_exc *exc = NULL;
                struct vg_error err = { 0 };
                int same = 0, ok200 = 0, stripped = 0, stripped_same = 0, mut_same = 0, st;

                ok(vg_tang_exc_new(key, &exc, &err) == 0, "%s: ECMR key converted (%s)", crv,
                   err.msg);
                for (int i = 0; i < POINTS; i++) {
                        json_t *p = gen(crv, false);
                        const char *x = json_string_value(json_object_get(p, "x"));
                        const char *y = json_string_value(json_object_get(p, "y"));
                        char *b = body_of(crv, x, y), *sx;
                        char mx[128];

                        same += agree(key, exc, b, &st);
                        ok200 += st == 200;
                        free(b);
                        if ((sx = strip_zero(x))) {
                                b = body_of(crv, sx, y);
                                stripped++;
                                stripped_same += agree(key, exc, b, &st);
                                free(b);
                                free(sx);
                        }
                        /* Mutations: a changed character of x (off the curve), x and y
                         * swapped, y for both. */
                        snprintf(mx, sizeof(mx), "%s", x);
                        mx[i % strlen(mx)] = mx[i % strlen(mx)] == 'A' ? 'B' : 'A';
                        b = body_of(crv, mx, y);
                        mut_same += agree(key, exc, b, &st);
                        free(b);
                        b = body_of(crv, y, x);
                        mut_same += agree(key, exc, b, &st);
                        free(b);
                        b = body_of(crv, y, y);
                        mut_same += agree(key, exc, b, &st);
                        free(b);
                        json_decref(p);
                }
                is_int(same, POINTS, "%s: %d random points: same status and reply bytes", crv,
                       POINTS);
                is_int(ok200, POINTS, "%s: every valid point answered 200", crv);
                is_int(stripped_same, stripped,
                       "%s: %d points with leading zero bytes stripped agree", crv, stripped);
                is_int(mut_same, 3 * POINTS, "%s: mutated points: same status as libjose", crv);
                {
                        char *b = body_of(crv, "AA", "AA");
                        ok(agree(key, exc, b, &st) && st == 400, "%s: (0,0) is refused: %d", crv,
                           st);
                        free(b);
                }
                vg_tang_exc_free(exc);
                json_decref(key);
        }

        /* The exchange recovers: client side as clevis does it (tang.md §1.4). */
        {
                json_t *S = gen("P-521", true), *s = json_deep_copy(S), *C = gen("P-521", true);
                json_t *c = json_deep_copy(C), *E = gen("P-521", true), *xj, *yj, *zj, *Kj, *Kp;
                struct vg_tang_exc *exc = NULL;
                struct vg_error err = { 0 };
                char *reply = NULL, *body;
                size_t len;
                int status;

                jose_jwk_pub(NULL, s);
                jose_jwk_pub(NULL, c);
                Kp = jose_jwk_exc(NULL, C, s); /* provisioning: K = C·s */
                xj = jose_jwk_exc(NULL, c, E); /* x = c + e */
                json_object_set_new(xj, "alg", json_string("ECMR"));
                body = json_dumps(xj, JSON_COMPACT);
                vg_tang_exc_new(S, &exc, &err);
                status = vg_tangd_rec_exc(exc, false, body, strlen(body), &reply, &len, &err);
                is_int(status, 200, "recovery request answered (%s)", err.msg);
                yj = json_loads(reply ? reply : "null", 0, NULL);
                zj = jose_jwk_exc(NULL, E, s); /* z = E·s */
                json_object_set_new(zj, "alg", json_string("ECMR"));
                Kj = yj && zj ? jose_jwk_exc(NULL, yj, zj) : NULL; /* K = y - z */
                ok(Kj && Kp && json_equal(json_object_get(Kj, "x"), json_object_get(Kp, "x")) &&
                       json_equal(json_object_get(Kj, "y"), json_object_get(Kp, "y")),
                   "y - E·s = C·s: the client recovers its key");
                free(body);
                free(reply);
                vg_tang_exc_free(exc);
                json_decref(S);
                json_decref(s);
                json_decref(C);
                json_decref(c);
                json_decref(E);
                json_decref(xj);
                json_decref(yj);
                json_decref(zj);
                json_decref(Kj);
                json_decref(Kp);
        }
        return tap_done();
}
