/* vigil: the tang pin (reference/tang.md 1.4, 2.1): encryption against a Tang server's signed
 * advertisement (ECDH-ES to its exchange key) and recovery by the McCallum-Relyea exchange. */
#include <errno.h>
#include <fcntl.h>
#include <jose/b64.h>
#include <jose/jwk.h>
#include <jose/jws.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "encoding.h"
#include "pin_private.h"

/* Largest advertisement accepted (a file or a server reply). */
#define ADV_MAX_BYTES (1u << 20)
#define MAX_COORD     66 /* P-521 */

/* ---- EC helpers (OpenSSL) ---- */

static EC_GROUP *group_of(const char *crv, size_t *clen)
{
        int nid;
        EC_GROUP *g;

        if (!crv)
                return NULL;
        if (strcmp(crv, "P-256") == 0)
                nid = NID_X9_62_prime256v1;
        else if (strcmp(crv, "P-384") == 0)
                nid = NID_secp384r1;
        else if (strcmp(crv, "P-521") == 0)
                nid = NID_secp521r1;
        else
                return NULL;
        g = EC_GROUP_new_by_curve_name(nid);
        if (g && clen)
                *clen = ((size_t)EC_GROUP_get_degree(g) + 7) / 8;
        return g;
}

static BIGNUM *coord(const json_t *jwk, const char *name, size_t clen)
{
        const char *s = json_string_value(json_object_get(jwk, name));
        uint8_t *raw = NULL;
        size_t len = 0;
        BIGNUM *bn;

        if (!s || vg_b64_decode(s, strlen(s), VG_B64_URL, &raw, &len) < 0 || len == 0 ||
            len > clen) {
                free(raw);
                return NULL;
        }
        bn = BN_bin2bn(raw, (int)len, NULL);
        free(raw);
        return bn;
}

/* The public point of an EC JWK on grp, checked to be on the curve; what names it in errors. */
static EC_POINT *jwk_point(const EC_GROUP *grp, size_t clen, const json_t *jwk, const char *what,
                           BN_CTX *ctx, struct vg_error *err)
{
        BIGNUM *x = coord(jwk, "x", clen), *y = coord(jwk, "y", clen);
        EC_POINT *p = NULL;

        if (!x || !y) {
                vg_error_set(err, -EINVAL,
                             "%s: \"x\" or \"y\" is missing or not a base64url "
                             "coordinate",
                             what);
                goto out;
        }
        p = EC_POINT_new(grp);
        if (!p) {
                vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        if (EC_POINT_set_affine_coordinates(grp, p, x, y, ctx) != 1 ||
            EC_POINT_is_on_curve(grp, p, ctx) != 1 || EC_POINT_is_at_infinity(grp, p)) {
                EC_POINT_free(p);
                p = NULL;
                vg_error_set(err, -EINVAL, "%s: the point is not on its curve", what);
        }
out:
        BN_free(x);
        BN_free(y);
        return p;
}

/* Base64url x and y of p, each padded to clen bytes. */
static int point_coords(const EC_GROUP *grp, size_t clen, const EC_POINT *p, BN_CTX *ctx, char **x,
                        char **y, uint8_t *raw_x)
{
        uint8_t bx[MAX_COORD], by[MAX_COORD];
        BIGNUM *X = BN_new(), *Y = BN_new();
        int r = -EIO;

        if (X && Y && EC_POINT_get_affine_coordinates(grp, p, X, Y, ctx) == 1 &&
            BN_bn2binpad(X, bx, (int)clen) >= 0 && BN_bn2binpad(Y, by, (int)clen) >= 0) {
                r = 0;
                if (raw_x)
                        memcpy(raw_x, bx, clen);
                if (x && !(*x = vg_b64_encode(bx, clen, VG_B64_URL)))
                        r = -ENOMEM;
                if (y && !(*y = vg_b64_encode(by, clen, VG_B64_URL)))
                        r = -ENOMEM;
        }
        BN_free(X);
        BN_free(Y);
        return r;
}

/* A random scalar in [1, order). */
static BIGNUM *random_scalar(const EC_GROUP *grp)
{
        BIGNUM *k = BN_secure_new();

        if (!k)
                return NULL;
        BN_set_flags(k, BN_FLG_CONSTTIME);
        do {
                if (BN_priv_rand_range(k, EC_GROUP_get0_order(grp)) != 1) {
                        BN_clear_free(k);
                        return NULL;
                }
        } while (BN_is_zero(k));
        return k;
}

/* CEK = Concat KDF(Z = x, "A256GCM") as libjose's ECDH-ES does for direct agreement. */
static int derive_cek(const uint8_t *z, size_t z_len, uint8_t cek[VG_JWE_CEK_LEN],
                      struct vg_error *err)
{
        return vg_jwe_concat_kdf(z, z_len, "A256GCM", NULL, 0, NULL, 0, cek, VG_JWE_CEK_LEN, err);
}

static int thumbprint(const json_t *jwk, const char *hash, char out[128])
{
        uint8_t dig[64];
        size_t dlen = jose_jwk_thp_buf(NULL, NULL, hash, NULL, 0), elen;

        if (dlen == SIZE_MAX || dlen > sizeof(dig) || !jose_jwk_thp_buf(NULL, jwk, hash, dig, dlen))
                return -EINVAL;
        elen = jose_b64_enc_buf(dig, dlen, out, 127);
        if (elen == SIZE_MAX || elen >= 128)
                return -EINVAL;
        out[elen] = '\0';
        return 0;
}

/* ---- encryption ---- */

static int read_adv_file(const char *path, json_t **out, struct vg_error *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        _cleanup_free_ char *buf = NULL;
        json_error_t jerr;
        struct stat st;
        size_t n = 0;
        ssize_t k;

        if (fd < 0)
                return vg_error_set(err, -errno, "tang: advertisement file '%s' %s", path,
                                    errno == ENOENT ? "not found" : strerror(errno));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return vg_error_set(err, -EINVAL, "tang: advertisement file '%s' is not a file",
                                    path);
        if ((size_t)st.st_size > ADV_MAX_BYTES)
                return vg_error_set(err, -EFBIG,
                                    "tang: advertisement file '%s' is larger than %u "
                                    "bytes",
                                    path, ADV_MAX_BYTES);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return vg_error_set(err, -ENOMEM, "out of memory");
        while (n < (size_t)st.st_size && (k = read(fd, buf + n, (size_t)st.st_size - n)) > 0)
                n += (size_t)k;
        *out = json_loadb(buf, n, 0, &jerr);
        if (!*out || !json_is_object(*out)) {
                json_decref(*out);
                *out = NULL;
                return vg_error_set(err, -EINVAL, "tang: advertisement file '%s' is malformed: %s",
                                    path, jerr.text[0] ? jerr.text : "not a JSON object");
        }
        return 0;
}

static int fetch_adv(const char *url, const char *thp, const struct vg_pin_opts *opts, json_t **out,
                     struct vg_error *err)
{
        unsigned attempts = opts->attempts ? opts->attempts : VG_PIN_ATTEMPTS;
        unsigned timeout = opts->timeout_ms ? opts->timeout_ms : VG_PIN_TIMEOUT_MS;
        _cleanup_free_ char *adv_url = NULL;
        struct vg_error e = { 0 };
        struct vg_pin_run run = { .opts = *opts };
        SSL_CTX *tls = NULL;
        const char *what;
        bool tls_failed;
        int r = 0;

        if (asprintf(&adv_url, "%s/adv/%s", url, thp ? thp : "") < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (strncmp(url, "https://", 8) == 0) {
                tls = vg_pin_run_tls(&run, err);
                if (!tls)
                        return err ? err->code : -EIO;
        }
        for (unsigned i = 1; i <= attempts; i++) {
                struct vg_http_response *resp = NULL;
                struct vg_http_client_request req = { .url = adv_url,
                                                      .timeout_ms = timeout,
                                                      .tls = tls };

                memset(&e, 0, sizeof(e));
                r = vg_http_fetch(
                    &(struct vg_http_client_config){ .timeout_ms = timeout,
                                                     .max_response_bytes = ADV_MAX_BYTES,
                                                     .no_keepalive = true },
                    &req, &resp, &e);
                if (r == -EINVAL && !resp) {
                        r = vg_error_set(err, r, "tang: %s: %s", adv_url, e.msg);
                        break;
                }
                if (r >= 0 && resp->status == 200) {
                        json_error_t jerr;

                        *out = json_loadb((const char *)resp->body, resp->body_len, 0, &jerr);
                        vg_http_response_free(resp);
                        if (!*out || !json_is_object(*out)) {
                                json_decref(*out);
                                *out = NULL;
                                r = vg_error_set(err, -EINVAL,
                                                 "tang: %s: the advertisement is malformed (not "
                                                 "a JSON object)",
                                                 adv_url);
                        } else {
                                r = 0;
                        }
                        break;
                }
                if (r >= 0) {
                        int status = resp->status;

                        vg_http_response_free(resp);
                        if (status == 404 && thp) {
                                r = vg_error_set(err, -ENOENT,
                                                 "tang: %s: the server has no signing key %s "
                                                 "(404)",
                                                 adv_url, thp);
                                break;
                        }
                        r = vg_error_set(&e, status >= 500 ? -EIO : -EPROTO, "HTTP %d", status);
                        if (status < 500) {
                                r = vg_error_set(err, r,
                                                 "tang: %s: unable to fetch the "
                                                 "advertisement (HTTP %d)",
                                                 adv_url, status);
                                break;
                        }
                }
                /* A certificate that did not verify will not verify on a second try. */
                tls_failed = strncmp(e.msg, "TLS handshake", 13) == 0;
                if (i < attempts && !tls_failed) {
                        usleep((VG_PIN_BACKOFF_MS << (i - 1)) * 1000);
                        continue;
                }
                if (r == -ECONNREFUSED && strncmp(e.msg, "connect to ", 11) == 0)
                        what = "connection refused";
                else if (r == -ETIMEDOUT)
                        what = "timed out";
                else
                        what = e.msg;
                r = vg_error_set(err, r,
                                 "tang: %s: unable to fetch the advertisement: %s (%u "
                                 "attempt%s)",
                                 adv_url, what, i, i > 1 ? "s" : "");
                break;
        }
        if (run.own_tls)
                SSL_CTX_free(run.tls);
        return r;
}

/* Ask on the controlling terminal, as clevis does; true when the user answers y or Y. */
static bool ask_trust(const json_t *ver)
{
        FILE *tty = fopen("/dev/tty", "r+");
        char line[16] = "";
        size_t i;
        json_t *k;
        bool yes;

        if (!tty)
                return false;
        fprintf(stderr, "The advertisement contains the following signing keys:\n\n");
        json_array_foreach (ver, i, k) {
                char t[128];

                if (thumbprint(k, "S256", t) == 0)
                        fprintf(stderr, "%s\n", t);
        }
        fprintf(stderr, "\nDo you wish to trust these keys? [ynYN] ");
        fflush(stderr);
        yes = fgets(line, sizeof(line), tty) && (line[0] == 'y' || line[0] == 'Y') &&
              (line[1] == '\n' || line[1] == '\0');
        fclose(tty);
        return yes;
}

/* Whether thp (S256, else S1, as clevis accepts) names one of the keys. */
static bool thp_in(const json_t *keys, const char *thp)
{
        static const char *const hashes[] = { "S256", "S1" };
        size_t i;
        json_t *k;

        for (size_t h = 0; h < 2; h++)
                json_array_foreach (keys, i, k) {
                        char t[128];

                        if (thumbprint(k, hashes[h], t) == 0 && strcmp(t, thp) == 0)
                                return true;
                }
        return false;
}

/* ECDH-ES to the exchange key exc: epk (new) and the content key. */
static int ecdh(const json_t *exc, json_t **epk, uint8_t cek[VG_JWE_CEK_LEN], struct vg_error *err)
{
        const char *crv = json_string_value(json_object_get(exc, "crv"));
        size_t clen = 0;
        EC_GROUP *grp = group_of(crv, &clen);
        BN_CTX *ctx = BN_CTX_new();
        EC_POINT *s = NULL, *c_pub = NULL, *z = NULL;
        BIGNUM *c = NULL;
        char *x = NULL, *y = NULL;
        uint8_t zx[MAX_COORD];
        int r;

        if (!grp) {
                r = vg_error_set(err, -EINVAL,
                                 "tang: the exchange key's curve \"%.16s\" is not supported "
                                 "(P-256, P-384, P-521)",
                                 crv ? crv : "");
                goto out;
        }
        if (!ctx) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        s = jwk_point(grp, clen, exc, "tang: the advertisement's exchange key", ctx, err);
        if (!s) {
                r = err ? err->code : -EINVAL;
                goto out;
        }
        c = random_scalar(grp);
        c_pub = EC_POINT_new(grp);
        z = EC_POINT_new(grp);
        if (!c || !c_pub || !z || EC_POINT_mul(grp, c_pub, c, NULL, NULL, ctx) != 1 ||
            EC_POINT_mul(grp, z, NULL, s, c, ctx) != 1 || EC_POINT_is_at_infinity(grp, z) ||
            point_coords(grp, clen, z, ctx, NULL, NULL, zx) < 0 ||
            point_coords(grp, clen, c_pub, ctx, &x, &y, NULL) < 0) {
                r = vg_error_set(err, -EIO, "tang: the ECDH-ES key agreement failed");
                goto out;
        }
        r = derive_cek(zx, clen, cek, err);
        if (r < 0)
                goto out;
        *epk = json_pack("{s:s, s:s, s:s, s:s}", "crv", crv, "kty", "EC", "x", x, "y", y);
        r = *epk ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
out:
        explicit_bzero(zx, sizeof(zx));
        free(x);
        free(y);
        BN_clear_free(c);
        EC_POINT_free(s);
        EC_POINT_free(c_pub);
        EC_POINT_free(z);
        BN_CTX_free(ctx);
        EC_GROUP_free(grp);
        return r;
}

int vg_pin_tang_encrypt(const json_t *cfg, const void *pt, size_t pt_len,
                        const struct vg_pin_opts *opts, char **jwe, struct vg_error *err)
{
        const char *url = json_string_value(json_object_get(cfg, "url"));
        const char *thp = json_string_value(json_object_get(cfg, "thp"));
        const json_t *adv = json_object_get(cfg, "adv");
        json_auto_t *jws = NULL, *payload = NULL, *ver = json_array(), *epk = NULL, *hdr = NULL,
                    *exc = NULL;
        _cleanup_free_ uint8_t *pl = NULL;
        struct vg_jwe out = { 0 };
        uint8_t cek[VG_JWE_CEK_LEN];
        const json_t *keys, *sigkeys;
        bool trusted = false;
        char kid[128];
        size_t pl_len = 0, i;
        json_t *k;
        const char *p64;
        int r;

        if (!ver)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (!url)
                return vg_error_set(err, -EINVAL,
                                    "tang: the configuration has no \"url\" (a string)");
        if (json_object_get(cfg, "thp") && !thp)
                return vg_error_set(err, -EINVAL, "tang: \"thp\" is not a string");
        if (thp && strlen(thp) != 43 && strlen(thp) != 27)
                return vg_error_set(err, -EINVAL,
                                    "tang: thp \"%.100s\" is neither an S256 (43 characters) nor "
                                    "an S1 (27) thumbprint",
                                    thp);
        /* The advertisement: inline or from a file (both trusted), else from the server. */
        if (json_is_object(adv)) {
                jws = json_deep_copy(adv);
                trusted = true;
        } else if (json_is_string(adv)) {
                r = read_adv_file(json_string_value(adv), &jws, err);
                if (r < 0)
                        return r;
                trusted = true;
        } else if (adv) {
                return vg_error_set(err, -EINVAL,
                                    "tang: \"adv\" must be a file name or a JSON object");
        } else {
                r = fetch_adv(url, thp, opts, &jws, err);
                if (r < 0)
                        return r;
        }
        if (!jws)
                return vg_error_set(err, -ENOMEM, "out of memory");
        p64 = json_string_value(json_object_get(jws, "payload"));
        if (!p64 || vg_b64_decode(p64, strlen(p64), VG_B64_URL, &pl, &pl_len) < 0 ||
            !(payload = json_loadb((const char *)pl, pl_len, 0, NULL)) ||
            !json_is_object(payload) || !json_is_array(keys = json_object_get(payload, "keys")))
                return vg_error_set(err, -EINVAL,
                                    "tang: %s: the advertisement is malformed (expected a JWS "
                                    "whose payload is a JWK set)",
                                    url);
        json_array_foreach (keys, i, k) {
                if (jose_jwk_prm(NULL, k, true, "verify") && json_array_append(ver, k) < 0)
                        return vg_error_set(err, -ENOMEM, "out of memory");
        }
        /* Every signing key the advertisement lists must have signed it (clevis: jws ver -a). */
        sigkeys = ver;
        if (json_array_size(ver) == 0 || !jose_jws_ver(NULL, jws, NULL, sigkeys, true))
                return vg_error_set(err, -EBADMSG,
                                    "tang: %s: the advertisement is missing signatures (not "
                                    "signed by each of its %zu signing keys)",
                                    url, json_array_size(ver));
        if (thp && !thp_in(ver, thp))
                return vg_error_set(
                    err, -EPERM, "tang: %s: advertisement not signed by trusted key %s", url, thp);
        if (!thp && !trusted && !opts->trust) {
                if (!opts->ask || !ask_trust(ver)) {
                        char list[300] = "";
                        size_t n = 0;

                        json_array_foreach (ver, i, k) {
                                char t[128];

                                if (thumbprint(k, "S256", t) == 0 &&
                                    n + strlen(t) + 3 < sizeof(list))
                                        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s",
                                                              n ? ", " : "", t);
                        }
                        return vg_error_set(err, -EPERM,
                                            "tang: %s: the advertisement's signing keys (%s) "
                                            "are not trusted: pass -y to trust them, or give "
                                            "\"thp\" or a trusted \"adv\"",
                                            url, list);
                }
        }
        /* The exchange key: the first with deriveKey (clevis: jwk use -r -u deriveKey). */
        json_array_foreach (keys, i, k) {
                if (jose_jwk_prm(NULL, k, true, "deriveKey")) {
                        exc = json_deep_copy(k);
                        break;
                }
        }
        if (!exc)
                return vg_error_set(err, -ENOENT,
                                    "tang: %s: the advertisement has no exchange (deriveKey) key",
                                    url);
        json_object_del(exc, "key_ops");
        json_object_del(exc, "alg");
        if (thumbprint(exc, "S256", kid) < 0)
                return vg_error_set(err, -EINVAL, "tang: %s: the exchange key is not a valid JWK",
                                    url);
        r = ecdh(exc, &epk, cek, err);
        if (r < 0)
                return r;
        hdr = json_pack("{s:s, s:{s:s, s:{s:O, s:s}}, s:O, s:s}", "alg", "ECDH-ES", "clevis", "pin",
                        "tang", "tang", "adv", payload, "url", url, "epk", epk, "kid", kid);
        if (!hdr) {
                explicit_bzero(cek, sizeof(cek));
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        r = vg_jwe_seal(hdr, cek, pt, pt_len, &out, err);
        explicit_bzero(cek, sizeof(cek));
        if (r < 0)
                return r;
        *jwe = vg_jwe_compact(&out);
        vg_jwe_clear(&out);
        return *jwe ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
}

/* ---- decryption: the McCallum-Relyea exchange, asynchronously ---- */

struct tang {
        char *url;     /* the server's base URL */
        char *rec_url; /* URL/rec/KID */
        char *kid;
        char *body; /* the blinded point x = c + e·g as a JWK */
        char *crv;
        size_t clen;
        EC_GROUP *grp;
        EC_POINT *es; /* e·s, subtracted from the reply */
        SSL_CTX *tls;
        unsigned attempt;
        struct vg_http_call *call;
        struct event *retry;
        struct vg_error last; /* of the last failed attempt */
};

static void tang_cancel(struct vg_pin_node *node)
{
        struct tang *t = node->priv;

        if (!t)
                return;
        if (t->call)
                vg_http_call_cancel(t->call);
        t->call = NULL;
        if (t->retry)
                evtimer_del(t->retry);
}

static void tang_destroy(struct vg_pin_node *node)
{
        struct tang *t = node->priv;

        if (!t)
                return;
        tang_cancel(node);
        if (t->retry)
                event_free(t->retry);
        free(t->url);
        free(t->rec_url);
        free(t->kid);
        free(t->body);
        free(t->crv);
        EC_POINT_clear_free(t->es);
        EC_GROUP_free(t->grp);
        free(t);
        node->priv = NULL;
}

static void tang_fail(struct vg_pin_node *node, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void tang_fail(struct vg_pin_node *node, int code, const char *fmt, ...)
{
        struct vg_error e = { 0 };
        va_list ap;

        va_start(ap, fmt);
        vg_error_setv(&e, code, fmt, ap);
        va_end(ap);
        vg_pin_node_finish(node, code, NULL, 0, &e);
}

static void tang_send(struct vg_pin_node *node);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        tang_send(arg);
}

/* A transient failure (connection, timeout, 5xx): try again after a backoff, or give up. */
static void tang_transient(struct vg_pin_node *node)
{
        struct tang *t = node->priv;
        unsigned attempts = node->run->opts.attempts;
        const char *what = t->last.msg;
        char suffix[32] = "";
        struct timeval tv;
        unsigned ms;

        /* A certificate that did not verify will not verify on a second try. */
        if (t->attempt < attempts && strncmp(what, "TLS handshake", 13) != 0) {
                ms = VG_PIN_BACKOFF_MS << (t->attempt - 1);
                if (!t->retry)
                        t->retry = evtimer_new(node->run->base, retry_cb, node);
                tv.tv_sec = ms / 1000;
                tv.tv_usec = (ms % 1000) * 1000;
                if (t->retry && evtimer_add(t->retry, &tv) == 0)
                        return;
        }
        if (attempts > 1)
                snprintf(suffix, sizeof(suffix), " (%u attempts)", t->attempt);
        if (t->last.code == -ECONNREFUSED && strncmp(what, "connect to ", 11) == 0)
                what = "connection refused";
        if (t->last.code == -ETIMEDOUT)
                tang_fail(node, -ETIMEDOUT, "%s: timed out after %u ms%s", t->url,
                          node->run->opts.timeout_ms, suffix);
        else
                tang_fail(node, t->last.code, "%s: %s%s", t->url, what, suffix);
}

static void tang_reply(struct vg_pin_node *node, const struct vg_http_response *resp)
{
        struct tang *t = node->priv;
        json_auto_t *jwk = NULL;
        const char *kty, *crv;
        BN_CTX *ctx = BN_CTX_new();
        EC_POINT *y = NULL, *k = NULL;
        uint8_t zx[MAX_COORD], cek[VG_JWE_CEK_LEN];
        struct vg_error e = { 0 };
        uint8_t *pt = NULL;
        size_t pt_len = 0;
        int r;

        jwk = json_loadb((const char *)resp->body, resp->body_len, 0, NULL);
        kty = json_string_value(json_object_get(jwk, "kty"));
        crv = json_string_value(json_object_get(jwk, "crv"));
        if (!ctx) {
                tang_fail(node, -ENOMEM, "out of memory");
                goto out;
        }
        if (!json_is_object(jwk) || !kty || strcmp(kty, "EC") != 0 || !crv ||
            strcmp(crv, t->crv) != 0) {
                tang_fail(node, -EPROTO,
                          "%s: invalid server reply (expected an EC JWK on %s from POST "
                          "%s)",
                          t->url, t->crv, t->rec_url);
                goto out;
        }
        y = jwk_point(t->grp, t->clen, jwk, "server reply", ctx, &e);
        if (!y) {
                tang_fail(node, -EPROTO, "%s: invalid server reply: %s", t->url, e.msg);
                goto out;
        }
        /* K = y - e·s = S·c, the point the encryption derived its key from. */
        k = EC_POINT_new(t->grp);
        if (!k || EC_POINT_invert(t->grp, t->es, ctx) != 1 ||
            EC_POINT_add(t->grp, k, y, t->es, ctx) != 1 || EC_POINT_is_at_infinity(t->grp, k) ||
            point_coords(t->grp, t->clen, k, ctx, NULL, NULL, zx) < 0) {
                tang_fail(node, -EPROTO, "%s: the server's reply does not give a key", t->url);
                goto out;
        }
        r = derive_cek(zx, t->clen, cek, &e);
        if (r >= 0)
                r = vg_jwe_open(&node->jwe, cek, &pt, &pt_len, &e);
        explicit_bzero(cek, sizeof(cek));
        if (r < 0) {
                if (r == -EBADMSG)
                        tang_fail(node, r,
                                  "%s: %s; the key recovered with server key %s does not open "
                                  "it (a different server behind that URL?)",
                                  t->url, e.msg, t->kid);
                else
                        vg_pin_node_finish(node, r, NULL, 0, &e);
                goto out;
        }
        vg_pin_node_finish(node, 0, pt, pt_len, NULL);
out:
        explicit_bzero(zx, sizeof(zx));
        EC_POINT_free(y);
        EC_POINT_clear_free(k);
        BN_CTX_free(ctx);
}

static void tang_cb(struct vg_http_response *resp, const struct vg_error *err, void *userdata)
{
        struct vg_pin_node *node = userdata;
        struct tang *t = node->priv;

        t->call = NULL;
        if (!resp) {
                t->last = *err;
                tang_transient(node);
                return;
        }
        switch (resp->status) {
        case 200:
                tang_reply(node, resp);
                return;
        case 404:
                tang_fail(node, -ENOENT,
                          "%s: the server no longer has key %s (404; rotated away and purged?)",
                          t->url, t->kid);
                return;
        case 403:
                tang_fail(node, -EACCES,
                          "%s: the server refused recovery with key %s (403: not an exchange "
                          "key there)",
                          t->url, t->kid);
                return;
        case 400:
                tang_fail(node, -EPROTO,
                          "%s: the server rejected the recovery request for key %s (400: "
                          "curve or point refused)",
                          t->url, t->kid);
                return;
        default:
                if (resp->status >= 500) {
                        vg_error_set(&t->last, -EIO, "server error (HTTP %d)", resp->status);
                        tang_transient(node);
                        return;
                }
                tang_fail(node, -EPROTO, "%s: unexpected HTTP status %d from POST %s", t->url,
                          resp->status, t->rec_url);
        }
}

static void tang_send(struct vg_pin_node *node)
{
        struct tang *t = node->priv;
        struct vg_error e = { 0 };
        struct vg_http_client_request req = {
                .method = "POST",
                .url = t->rec_url,
                .body = t->body,
                .body_len = strlen(t->body),
                .content_type = "application/jwk+json",
                .timeout_ms = node->run->opts.timeout_ms,
                .tls = t->tls,
        };
        int r;

        t->attempt++;
        r = vg_http_client_send(node->run->http, &req, tang_cb, node, &t->call, &e);
        if (r < 0)
                tang_fail(node, r, "%s: %s", t->url, e.msg);
}

void vg_pin_tang_start(struct vg_pin_node *node)
{
        const json_t *h = node->jwe.header, *tang, *adv, *epk, *keys, *key = NULL, *k;
        const char *kid, *url, *alg;
        struct tang *t;
        struct vg_error e = { 0 };
        BN_CTX *ctx = NULL;
        EC_POINT *c = NULL, *s = NULL, *x = NULL;
        BIGNUM *eph = NULL;
        char *bx = NULL, *by = NULL;
        size_t i;

        node->priv = t = calloc(1, sizeof(*t));
        node->cancel = tang_cancel;
        node->destroy = tang_destroy;
        if (!t) {
                tang_fail(node, -ENOMEM, "out of memory");
                return;
        }
        tang = json_object_get(json_object_get(h, "clevis"), "tang");
        adv = json_object_get(tang, "adv");
        url = json_string_value(json_object_get(tang, "url"));
        epk = json_object_get(h, "epk");
        kid = json_string_value(json_object_get(h, "kid"));
        alg = json_string_value(json_object_get(h, "alg"));
        if (!json_is_object(tang)) {
                tang_fail(node, -EINVAL, "JWE protected header: no \"clevis\".\"tang\" object");
                return;
        }
        if (!url) {
                tang_fail(node, -EINVAL, "JWE protected header: no \"clevis\".\"tang\".\"url\"");
                return;
        }
        if (!alg || strcmp(alg, "ECDH-ES") != 0) {
                tang_fail(node, -EINVAL,
                          "JWE protected header: alg \"%.32s\" (the tang pin uses ECDH-ES)",
                          alg ? alg : "");
                return;
        }
        if (!json_is_object(epk)) {
                tang_fail(node, -EINVAL,
                          "JWE protected header: no \"epk\" (the tang pin's client key)");
                return;
        }
        if (!kid) {
                tang_fail(node, -EINVAL,
                          "JWE protected header: no \"kid\" (the Tang exchange key's "
                          "thumbprint)");
                return;
        }
        if (!json_is_object(adv) || !json_is_array(keys = json_object_get(adv, "keys"))) {
                tang_fail(node, -EINVAL,
                          "JWE protected header: no \"clevis\".\"tang\".\"adv\" (the server's "
                          "keys as a JWK set)");
                return;
        }
        /* The key the kid names, by S256 thumbprint, else S1 (clevis before v17). */
        for (size_t h2 = 0; h2 < 2 && !key; h2++)
                json_array_foreach (keys, i, k) {
                        char th[128];

                        if (thumbprint(k, h2 ? "S1" : "S256", th) == 0 && strcmp(th, kid) == 0) {
                                key = k;
                                break;
                        }
                }
        if (!key) {
                tang_fail(node, -EINVAL,
                          "JWE protected header: kid %.100s is not the thumbprint of a key of "
                          "\"clevis\".\"tang\".\"adv\"",
                          kid);
                return;
        }
        t->crv = strdup(json_string_value(json_object_get(epk, "crv")) ?: "");
        t->url = strdup(url);
        t->kid = strdup(kid);
        if (!t->crv || !t->url || !t->kid || asprintf(&t->rec_url, "%s/rec/%s", url, kid) < 0) {
                t->rec_url = NULL;
                tang_fail(node, -ENOMEM, "out of memory");
                return;
        }
        t->grp = group_of(t->crv, &t->clen);
        if (!t->grp) {
                tang_fail(node, -EINVAL,
                          "JWE protected header: epk curve \"%.16s\" (expected P-256, P-384 or "
                          "P-521)",
                          t->crv);
                return;
        }
        if (strcmp(json_string_value(json_object_get(key, "crv")) ?: "", t->crv) != 0) {
                tang_fail(node, -EINVAL,
                          "JWE protected header: epk is on %s but the server key %s is not", t->crv,
                          kid);
                return;
        }
        if (strncmp(url, "https://", 8) == 0 && !(t->tls = vg_pin_run_tls(node->run, &e))) {
                tang_fail(node, e.code, "%s: %s", url, e.msg);
                return;
        }
        ctx = BN_CTX_new();
        if (!ctx) {
                tang_fail(node, -ENOMEM, "out of memory");
                return;
        }
        c = jwk_point(t->grp, t->clen, epk, "JWE protected header: epk", ctx, &e);
        s = c ? jwk_point(t->grp, t->clen, key, "JWE protected header: the server key", ctx, &e)
              : NULL;
        if (!c || !s) {
                tang_fail(node, e.code, "%s", e.msg);
                goto out;
        }
        /* x = c + e·g: the server sees only a uniformly random point. */
        eph = random_scalar(t->grp);
        x = EC_POINT_new(t->grp);
        t->es = EC_POINT_new(t->grp);
        if (!eph || !x || !t->es || EC_POINT_mul(t->grp, x, eph, NULL, NULL, ctx) != 1 ||
            EC_POINT_add(t->grp, x, x, c, ctx) != 1 ||
            point_coords(t->grp, t->clen, x, ctx, &bx, &by, NULL) < 0 ||
            asprintf(&t->body,
                     "{\"alg\":\"ECMR\",\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\","
                     "\"y\":\"%s\"}",
                     t->crv, bx, by) < 0) {
                t->body = NULL;
                tang_fail(node, -EIO, "tang: the exchange computation failed");
                goto out;
        }
        tang_send(node);
        /* e·s while the request is on its way. */
        if (!node->finished && EC_POINT_mul(t->grp, t->es, NULL, s, eph, ctx) != 1)
                tang_fail(node, -EIO, "tang: the exchange computation failed");
out:
        free(bx);
        free(by);
        BN_clear_free(eph);
        EC_POINT_free(c);
        EC_POINT_free(s);
        EC_POINT_free(x);
        BN_CTX_free(ctx);
}
