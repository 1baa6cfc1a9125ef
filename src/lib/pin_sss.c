/* vigil: the sss pin (reference/tang.md 2.2): Shamir secret sharing of the content key over
 * other pins, in clevis's format: a fresh 256-bit safe prime p per encryption, shares x||y. */
#include <errno.h>
#include <jose/b64.h>
#include <openssl/bn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "encoding.h"
#include "pin_private.h"

/* The field size: clevis uses a 256-bit prime, the content key being e[0]. */
#define SSS_BYTES VG_JWE_CEK_LEN

static void bn_clear_freep(BIGNUM **p)
{
        BN_clear_free(*p);
}
#define _cleanup_bn_ _cleanup_(bn_clear_freep)

static size_t count_pins(const json_t *pins)
{
        const char *name;
        const json_t *v;
        size_t n = 0;

        json_object_foreach ((json_t *)pins, name, v) {
                if (json_is_object(v))
                        n++;
                else if (json_is_array(v))
                        n += json_array_size(v);
        }
        return n;
}

/* y = sum e[i]·x^i mod p by Horner's rule. */
static int share_point(BIGNUM *const *e, size_t t, const BIGNUM *p, BN_CTX *ctx,
                       uint8_t out[2 * SSS_BYTES])
{
        _cleanup_bn_ BIGNUM *x = BN_secure_new();
        _cleanup_bn_ BIGNUM *y = BN_secure_new();

        if (!x || !y || BN_rand_range(x, p) != 1 || !BN_copy(y, e[t - 1]))
                return -EIO;
        for (size_t i = t - 1; i-- > 0;)
                if (BN_mod_mul(y, y, x, p, ctx) != 1 || BN_mod_add(y, y, e[i], p, ctx) != 1)
                        return -EIO;
        if (BN_bn2binpad(x, out, SSS_BYTES) < 0 || BN_bn2binpad(y, out + SSS_BYTES, SSS_BYTES) < 0)
                return -EIO;
        return 0;
}

int vg_pin_sss_encrypt(const json_t *cfg, const void *pt, size_t pt_len,
                       const struct vg_pin_opts *opts, unsigned depth, char **jwe,
                       struct vg_error *err)
{
        const json_t *pins = json_object_get(cfg, "pins"), *tv = json_object_get(cfg, "t");
        json_auto_t *shares = json_array(), *hdr = NULL;
        _cleanup_bn_ BIGNUM *p = BN_new();
        BN_CTX *ctx = BN_CTX_new();
        BIGNUM *e[256] = { 0 };
        uint8_t cek[SSS_BYTES], point[2 * SSS_BYTES], pb[SSS_BYTES];
        _cleanup_free_ char *p64 = NULL;
        struct vg_jwe out = { 0 };
        json_int_t t = 1;
        const char *name;
        const json_t *v;
        size_t n;
        int r = 0;

        if (!json_is_object(pins)) {
                r = vg_error_set(err, -EINVAL, "sss: the configuration has no \"pins\" object");
                goto out;
        }
        if (tv && !json_is_integer(tv)) {
                r = vg_error_set(err, -EINVAL, "sss: \"t\" is not an integer");
                goto out;
        }
        if (tv)
                t = json_integer_value(tv);
        n = count_pins(pins);
        if (t < 1 || (size_t)t > n || t > 255) {
                r = vg_error_set(err, -EINVAL,
                                 "sss: invalid threshold (required: 1 <= %lld <= %zu)",
                                 (long long)t, n);
                goto out;
        }
        if (!shares || !p || !ctx) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        /* A fresh safe prime per encryption, as clevis does (sss_generate). */
        if (BN_generate_prime_ex(p, SSS_BYTES * 8, 1, NULL, NULL, NULL) != 1) {
                r = vg_error_set(err, -EIO, "sss: cannot generate the prime");
                goto out;
        }
        for (json_int_t i = 0; i < t; i++) {
                e[i] = BN_secure_new();
                if (!e[i] || BN_rand_range(e[i], p) != 1) {
                        r = vg_error_set(err, -EIO, "sss: cannot generate the polynomial");
                        goto out;
                }
        }
        json_object_foreach ((json_t *)pins, name, v) {
                size_t count = json_is_array(v) ? json_array_size(v) : 1;

                if (!json_is_object(v) && !json_is_array(v)) {
                        r = vg_error_set(err, -EINVAL,
                                         "sss: pins.%.64s must be an object or an array of "
                                         "objects",
                                         name);
                        goto out;
                }
                for (size_t i = 0; i < count; i++) {
                        const json_t *c = json_is_array(v) ? json_array_get(v, i) : v;
                        char *child = NULL;

                        if (!json_is_object(c)) {
                                r = vg_error_set(err, -EINVAL,
                                                 "sss: pins.%.64s[%zu] is not an object", name, i);
                                goto out;
                        }
                        if (share_point(e, (size_t)t, p, ctx, point) < 0) {
                                r = vg_error_set(err, -EIO, "sss: cannot compute a share");
                                goto out;
                        }
                        r = vg_pin_encrypt_depth(name, c, point, sizeof(point), opts, depth + 1,
                                                 &child, err);
                        explicit_bzero(point, sizeof(point));
                        if (r < 0)
                                goto out;
                        if (json_array_append_new(shares, json_string(child)) < 0) {
                                free(child);
                                r = vg_error_set(err, -ENOMEM, "out of memory");
                                goto out;
                        }
                        free(child);
                }
        }
        if (BN_bn2binpad(p, pb, SSS_BYTES) < 0 || BN_bn2binpad(e[0], cek, SSS_BYTES) < 0 ||
            !(p64 = vg_b64_encode(pb, SSS_BYTES, VG_B64_URL))) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        hdr = json_pack("{s:s, s:{s:s, s:{s:O, s:s, s:I}}}", "alg", "dir", "clevis", "pin", "sss",
                        "sss", "jwe", shares, "p", p64, "t", t);
        if (!hdr) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        r = vg_jwe_seal(hdr, cek, pt, pt_len, &out, err);
        if (r < 0)
                goto out;
        *jwe = vg_jwe_compact(&out);
        vg_jwe_clear(&out);
        r = *jwe ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
out:
        explicit_bzero(cek, sizeof(cek));
        for (size_t i = 0; i < 256; i++)
                BN_clear_free(e[i]);
        BN_CTX_free(ctx);
        return r;
}

/* ---- decryption ---- */

struct sss {
        size_t n, t, ok, failed;
        uint8_t p[SSS_BYTES];
        struct vg_pin_node **child; /* NULL once freed */
        int *state;                 /* per share: 0 running, 1 decrypted, -1 failed */
        char **why;                 /* per failed share */
        uint8_t (*points)[2 * SSS_BYTES];
};

static void sss_cancel(struct vg_pin_node *node)
{
        struct sss *s = node->priv;

        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++) {
                vg_pin_node_free(s->child[i]);
                s->child[i] = NULL;
        }
}

static void sss_destroy(struct vg_pin_node *node)
{
        struct sss *s = node->priv;

        if (!s)
                return;
        sss_cancel(node);
        for (size_t i = 0; i < s->n; i++)
                free(s->why ? s->why[i] : NULL);
        if (s->points)
                explicit_bzero(s->points, s->n * sizeof(*s->points));
        free(s->points);
        free(s->why);
        free(s->state);
        free(s->child);
        free(s);
        node->priv = NULL;
}

/* Lagrange interpolation at 0 over the t decrypted shares: the content key. */
static int interpolate(const struct sss *s, uint8_t cek[SSS_BYTES])
{
        _cleanup_bn_ BIGNUM *p = BN_bin2bn(s->p, SSS_BYTES, NULL);
        _cleanup_bn_ BIGNUM *k = BN_new(), *acc = BN_new(), *tmp = BN_new(), *xi = BN_new(),
                            *xj = BN_new(), *yi = BN_new();
        BN_CTX *ctx = BN_CTX_new();
        int r = -EIO;

        if (!p || !k || !acc || !tmp || !xi || !xj || !yi || !ctx)
                goto out;
        BN_zero(k);
        for (size_t i = 0; i < s->n; i++) {
                if (s->state[i] != 1)
                        continue;
                if (!BN_bin2bn(s->points[i], SSS_BYTES, xi) ||
                    !BN_bin2bn(s->points[i] + SSS_BYTES, SSS_BYTES, yi) || !BN_one(acc))
                        goto out;
                for (size_t j = 0; j < s->n; j++) {
                        if (j == i || s->state[j] != 1)
                                continue;
                        /* acc *= (0 - xj) / (xi - xj) */
                        if (!BN_bin2bn(s->points[j], SSS_BYTES, xj) ||
                            BN_mod_sub(tmp, p, xj, p, ctx) != 1 ||
                            BN_mod_mul(acc, acc, tmp, p, ctx) != 1 ||
                            BN_mod_sub(tmp, xi, xj, p, ctx) != 1 ||
                            !BN_mod_inverse(tmp, tmp, p, ctx) ||
                            BN_mod_mul(acc, acc, tmp, p, ctx) != 1) {
                                r = -EDOM;
                                goto out;
                        }
                }
                if (BN_mod_mul(acc, acc, yi, p, ctx) != 1 || BN_mod_add(k, k, acc, p, ctx) != 1)
                        goto out;
        }
        r = BN_bn2binpad(k, cek, SSS_BYTES) < 0 ? -EIO : 0;
out:
        BN_CTX_free(ctx);
        return r;
}

static void sss_give_up(struct vg_pin_node *node)
{
        struct sss *s = node->priv;
        char msg[sizeof(((struct vg_error *)0)->msg)];
        struct vg_error e = { 0 };
        size_t len;

        len = (size_t)snprintf(msg, sizeof(msg), "sss: %zu of %zu shares decrypted, %zu needed",
                               s->ok, s->n, s->t);
        for (size_t i = 0; i < s->n && len < sizeof(msg); i++)
                if (s->state[i] < 0)
                        len += (size_t)snprintf(msg + len, sizeof(msg) - len, "; share %zu: %s",
                                                i + 1, s->why[i] ? s->why[i] : "failed");
        vg_error_set(&e, -ENOKEY, "%s", msg);
        vg_pin_node_finish(node, -ENOKEY, NULL, 0, &e);
}

static void share_done(struct vg_pin_node *child, void *userdata)
{
        struct vg_pin_node *node = userdata;
        struct sss *s = node->priv;
        uint8_t cek[SSS_BYTES], *pt = NULL;
        struct vg_error e = { 0 };
        size_t i, pt_len = 0;
        int r;

        if (node->finished || !s)
                return;
        for (i = 0; i < s->n && s->child[i] != child; i++)
                ;
        if (i == s->n)
                return;
        if (child->r >= 0 && child->pt_len != 2 * SSS_BYTES) {
                child->r = vg_error_set(&child->err, -EINVAL,
                                        "the share is %zu bytes, expected %d (x and y)",
                                        child->pt_len, 2 * SSS_BYTES);
        }
        if (child->r < 0) {
                s->state[i] = -1;
                s->failed++;
                s->why[i] = strdup(vg_error_str(&child->err));
                if (s->n - s->failed < s->t)
                        sss_give_up(node);
                return;
        }
        memcpy(s->points[i], child->pt, 2 * SSS_BYTES);
        s->state[i] = 1;
        if (++s->ok < s->t)
                return;
        /* Enough: the rest are cancelled by finish. */
        r = interpolate(s, cek);
        if (r < 0) {
                vg_error_set(&e, r, "sss: the shares do not interpolate (%s)",
                             r == -EDOM ? "two shares have the same x" : "arithmetic failed");
                vg_pin_node_finish(node, r, NULL, 0, &e);
                return;
        }
        r = vg_jwe_open(&node->jwe, cek, &pt, &pt_len, &e);
        explicit_bzero(cek, sizeof(cek));
        if (r < 0) {
                vg_error_prefix(&e, "sss: ");
                vg_pin_node_finish(node, r, NULL, 0, &e);
                return;
        }
        vg_pin_node_finish(node, 0, pt, pt_len, NULL);
}

void vg_pin_sss_start(struct vg_pin_node *node)
{
        const json_t *sss = json_object_get(json_object_get(node->jwe.header, "clevis"), "sss");
        const json_t *tv = json_object_get(sss, "t"), *jwes = json_object_get(sss, "jwe");
        const char *p64 = json_string_value(json_object_get(sss, "p"));
        const char *alg = json_string_value(json_object_get(node->jwe.header, "alg"));
        struct vg_error e = { 0 };
        _cleanup_free_ uint8_t *p = NULL;
        size_t p_len = 0, n;
        struct sss *s;

        node->cancel = sss_cancel;
        node->destroy = sss_destroy;
        if (!alg || strcmp(alg, "dir") != 0) {
                vg_error_set(&e, -EINVAL, "JWE protected header: alg \"%.32s\" (sss uses dir)",
                             alg ? alg : "");
                goto fail;
        }
        if (!json_is_object(sss)) {
                vg_error_set(&e, -EINVAL, "JWE protected header: no \"clevis\".\"sss\" object");
                goto fail;
        }
        if (!p64 || vg_b64_decode(p64, strlen(p64), VG_B64_URL, &p, &p_len) < 0 ||
            p_len != SSS_BYTES) {
                vg_error_set(&e, -EINVAL,
                             "JWE protected header: \"clevis\".\"sss\".\"p\" is not a base64url "
                             "%d-byte prime",
                             SSS_BYTES);
                goto fail;
        }
        if (!json_is_array(jwes) || !(n = json_array_size(jwes))) {
                vg_error_set(&e, -EINVAL,
                             "JWE protected header: \"clevis\".\"sss\".\"jwe\" is not a non-empty "
                             "array");
                goto fail;
        }
        if (!json_is_integer(tv) || json_integer_value(tv) < 1 ||
            (size_t)json_integer_value(tv) > n) {
                vg_error_set(&e, -EINVAL,
                             "JWE protected header: \"clevis\".\"sss\".\"t\" must be an integer "
                             "from 1 to %zu (the number of shares)",
                             n);
                goto fail;
        }
        for (size_t i = 0; i < n; i++)
                if (!json_is_string(json_array_get(jwes, i))) {
                        vg_error_set(&e, -EINVAL,
                                     "JWE protected header: \"clevis\".\"sss\".\"jwe\"[%zu] is not "
                                     "a string",
                                     i);
                        goto fail;
                }
        node->priv = s = calloc(1, sizeof(*s));
        if (!s || !(s->child = calloc(n, sizeof(*s->child))) ||
            !(s->state = calloc(n, sizeof(*s->state))) || !(s->why = calloc(n, sizeof(*s->why))) ||
            !(s->points = calloc(n, sizeof(*s->points)))) {
                vg_error_set(&e, -ENOMEM, "out of memory");
                goto fail;
        }
        s->n = n;
        s->t = (size_t)json_integer_value(tv);
        memcpy(s->p, p, SSS_BYTES);
        /* Every share at once; their network requests share the loop. */
        for (size_t i = 0; i < n && !node->finished; i++) {
                const json_t *j = json_array_get(jwes, i);

                s->child[i] = vg_pin_node_start(node->run, node->depth + 1, json_string_value(j),
                                                json_string_length(j), share_done, node);
                if (!s->child[i]) {
                        vg_error_set(&e, -ENOMEM, "out of memory");
                        goto fail;
                }
        }
        return;
fail:
        vg_pin_node_finish(node, e.code, NULL, 0, &e);
}
