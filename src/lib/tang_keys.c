/* vigil: Tang key directories on libjose: loading and checking tang's key files, thumbprints,
 * advertisements signed once per load, and keygen/rotate/backup/restore/purge-hidden. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jose/jose.h>
#include <jose/openssl.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>

#include "encoding.h"
#include "tang_keys.h"

/* A key file is a few hundred bytes; anything much larger is not one. */
#define MAX_KEY_FILE (64 * 1024)
/* A backup or the recovery record: thousands of keys at most. */
#define MAX_BUNDLE (64UL * 1024 * 1024)

static const char *const hashes[] = { "S1", "S224", "S256", "S384", "S512" };
#define N_HASHES VG_ARRAY_SIZE(hashes)
#define S256     2

struct tang_key {
        json_t *jwk; /* private, as on disk */
        char *file;
        char *thp[N_HASHES];
        bool hidden, signing;
        char *adv; /* signing keys: the advertisement also signed by this key */
        size_t adv_len;
        struct vg_tang_exc *exc; /* exchange keys, converted for OpenSSL */
};

struct vg_tang_exc {
        EC_GROUP *grp;
        BIGNUM *d;
        const char *crv;
        size_t clen; /* bytes of a coordinate */
        char *thp;
};

struct thp_entry {
        const char *thp;
        size_t key;
};

struct vg_tang_keys {
        struct tang_key *keys;
        size_t n;
        struct vg_tang_key_info *info;
        struct thp_entry *map; /* sorted by thp */
        size_t nmap;
        char *adv;
        size_t adv_len;
        const char **thp_adv, **thp_hidden;
        char **skipped; /* "<file>: <why>" for each key file left out */
        size_t n_skipped;
};

static void key_clear(struct tang_key *k)
{
        json_decref(k->jwk);
        free(k->file);
        for (size_t i = 0; i < N_HASHES; i++)
                free(k->thp[i]);
        free(k->adv);
        vg_tang_exc_free(k->exc);
}

void vg_tang_keys_free(struct vg_tang_keys *k)
{
        if (!k)
                return;
        for (size_t i = 0; i < k->n; i++)
                key_clear(&k->keys[i]);
        free(k->keys);
        free(k->info);
        free(k->map);
        free(k->adv);
        free(k->thp_adv);
        free(k->thp_hidden);
        for (size_t i = 0; i < k->n_skipped; i++)
                free(k->skipped[i]);
        free(k->skipped);
        free(k);
}

int vg_tang_thumbprint(const json_t *jwk, const char *hash, char **out, struct vg_error *err)
{
        uint8_t dig[64];
        char enc[128];
        size_t dlen, elen;

        dlen = jose_jwk_thp_buf(NULL, NULL, hash, NULL, 0);
        if (dlen == SIZE_MAX || dlen > sizeof(dig))
                return vg_error_set(err, -EINVAL,
                                    "unknown thumbprint hash \"%s\" (expected S1, S224, S256, "
                                    "S384 or S512)",
                                    hash);
        if (!jose_jwk_thp_buf(NULL, jwk, hash, dig, dlen))
                return vg_error_set(err, -EINVAL, "cannot compute the %s thumbprint of the JWK",
                                    hash);
        elen = jose_b64_enc_buf(dig, dlen, enc, sizeof(enc) - 1);
        if (elen == SIZE_MAX || elen >= sizeof(enc))
                return vg_error_set(err, -EINVAL, "cannot encode the thumbprint");
        enc[elen] = '\0';
        *out = strdup(enc);
        return *out ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
}

static bool is_key_file(const char *name)
{
        size_t n = strlen(name);

        return n > 4 && strcmp(name + n - 4, ".jwk") == 0 && strcmp(name, ".jwk") != 0;
}

/* Read a whole file of at most max bytes, NUL-terminated. */
static int read_file(int dirfd, const char *name, size_t max, char **out, size_t *len,
                     struct stat *st_out, struct vg_error *err)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t n = 0;

        if (fd < 0 || fstat(fd, &st) < 0)
                return vg_error_set(err, -errno, "%s: %s", name, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return vg_error_set(err, -EINVAL, "%s: not a regular file", name);
        if ((uint64_t)st.st_size > max)
                return vg_error_set(err, -EFBIG, "%s: %lld bytes, more than the %zu expected", name,
                                    (long long)st.st_size, max);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return vg_error_set(err, -ENOMEM, "out of memory");
        while (n < (size_t)st.st_size) {
                ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return vg_error_set(err, -errno, "%s: %s", name, strerror(errno));
                if (r == 0)
                        break;
                n += (size_t)r;
        }
        buf[n] = '\0';
        *len = n;
        if (st_out)
                *st_out = st;
        *out = TAKE_PTR(buf);
        return 0;
}

/* Check a key as vigil-tang will use it: a private EC key that is a signing key (ES256/384/
 * 512 allowed to sign and verify) or an ECMR exchange key (allowed deriveKey), whose point
 * OpenSSL accepts. Sets *signing. */
static int check_jwk(const char *name, const json_t *jwk, bool *signing, struct vg_error *err)
{
        const char *kty = NULL, *alg = NULL, *crv = NULL;
        EVP_PKEY *pkey;

        if (!json_is_object(jwk))
                return vg_error_set(err, -EINVAL, "%s: expected a JWK (JSON object), found %s",
                                    name, json_is_array(jwk) ? "an array" : "another value");
        if (json_unpack((json_t *)jwk, "{s:s,s?s,s?s}", "kty", &kty, "alg", &alg, "crv", &crv) <
                0 ||
            strcmp(kty, "EC") != 0)
                return vg_error_set(err, -EINVAL,
                                    "%s: expected an EC key (\"kty\":\"EC\"), found %s", name,
                                    kty ? kty : "no kty");
        if (!json_is_string(json_object_get(jwk, "d")))
                return vg_error_set(err, -EINVAL, "%s: not a private key (no \"d\")", name);
        if (!alg)
                return vg_error_set(err, -EINVAL,
                                    "%s: no \"alg\" (expected ES256, ES384, ES512 or ECMR)", name);
        if (strcmp(alg, "ECMR") == 0) {
                if (!jose_jwk_prm(NULL, jwk, false, "deriveKey"))
                        return vg_error_set(err, -EINVAL,
                                            "%s: ECMR key whose key_ops do not allow deriveKey",
                                            name);
                *signing = false;
        } else if (strcmp(alg, "ES256") == 0 || strcmp(alg, "ES384") == 0 ||
                   strcmp(alg, "ES512") == 0) {
                if (!jose_jwk_prm(NULL, jwk, false, "sign") ||
                    !jose_jwk_prm(NULL, jwk, false, "verify"))
                        return vg_error_set(err, -EINVAL,
                                            "%s: %s key whose key_ops do not allow sign and verify",
                                            name, alg);
                *signing = true;
        } else {
                return vg_error_set(err, -EINVAL,
                                    "%s: unsupported alg \"%s\" (expected ES256, ES384, ES512 or "
                                    "ECMR)",
                                    name, alg);
        }
        pkey = jose_openssl_jwk_to_EVP_PKEY(NULL, jwk);
        if (!pkey)
                return vg_error_set(err, -EINVAL,
                                    "%s: not a valid EC key (curve %s; coordinates or private "
                                    "scalar rejected)",
                                    name, crv ? crv : "missing");
        EVP_PKEY_free(pkey);
        return 0;
}

static int load_jwk_file(int dirfd, const char *name, json_t **out, bool *signing, struct stat *st,
                         struct vg_error *err)
{
        _cleanup_free_ char *buf = NULL;
        json_auto_t *jwk = NULL;
        json_error_t jerr;
        size_t len;
        int r;

        r = read_file(dirfd, name, MAX_KEY_FILE, &buf, &len, st, err);
        if (r < 0)
                return r;
        jwk = json_loadb(buf, len, 0, &jerr);
        if (!jwk)
                return vg_error_set(err, -EINVAL, "%s:%d: not JSON: %s", name, jerr.line,
                                    jerr.text);
        r = check_jwk(name, jwk, signing, err);
        if (r < 0)
                return r;
        *out = TAKE_PTR(jwk);
        return 0;
}

/* The advertisement as tang builds it (src/keys.c jwk_sign): payload = the public parts of
 * the advertised keys as {"keys":[...]} dumped with jansson's default flags, one signature per
 * key of sig with the protected header {"cty":"jwk-set+json"} (libjose adds "alg"); the reply
 * is the JWS dumped the same way (tangd's adv(): json_dumps(jws, 0)). */
static char *sign_adv(const json_t *payload_keys, const json_t *sig, size_t *len)
{
        json_auto_t *pub = json_deep_copy(payload_keys);
        json_auto_t *payload = NULL, *tmpl = NULL, *jws = NULL;
        _cleanup_free_ char *data = NULL;
        char *out;

        if (!pub || !jose_jwk_pub(NULL, pub))
                return NULL;
        payload = json_pack("{s:O}", "keys", pub);
        tmpl = json_pack("{s:{s:s}}", "protected", "cty", "jwk-set+json");
        if (!payload || !tmpl || !(data = json_dumps(payload, 0)))
                return NULL;
        jws = json_pack("{s:o}", "payload", jose_b64_enc(data, strlen(data)));
        if (!jws || !jose_jws_sig(NULL, jws, tmpl, sig))
                return NULL;
        out = json_dumps(jws, 0);
        if (out)
                *len = strlen(out);
        return out;
}

static int cmp_entry(const void *a, const void *b)
{
        return strcmp(((const struct thp_entry *)a)->thp, ((const struct thp_entry *)b)->thp);
}

static int cmp_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The key file names of dir, in readdir order (tang's order in the advertisement). */
static int list_key_files(DIR *d, char ***out, size_t *n, struct vg_error *err, const char *dir)
{
        char **names = NULL;
        size_t cnt = 0, cap = 0;
        struct dirent *de;
        int r = 0;

        errno = 0;
        while ((de = readdir(d))) {
                if (!is_key_file(de->d_name))
                        continue;
                if (cnt == cap) {
                        char **nn = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*nn));
                        if (!nn) {
                                r = vg_error_set(err, -ENOMEM, "out of memory");
                                break;
                        }
                        names = nn;
                }
                if (!(names[cnt] = strdup(de->d_name))) {
                        r = vg_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                cnt++;
        }
        if (!r && errno)
                r = vg_error_set(err, -errno, "%s: %s", dir, strerror(errno));
        if (r < 0) {
                for (size_t i = 0; i < cnt; i++)
                        free(names[i]);
                free(names);
                return r;
        }
        *out = names;
        *n = cnt;
        return 0;
}

static void free_names(char **names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

int vg_tang_keys_load(const char *dir, struct vg_tang_keys **out, struct vg_error *err)
{
        _cleanup_(vg_tang_keys_freep) struct vg_tang_keys *k = NULL;
        json_auto_t *payload = json_array(), *sig = json_array();
        char **names = NULL;
        size_t nnames = 0, na = 0, nh = 0;
        DIR *d;
        int r;

        d = opendir(dir);
        if (!d)
                return vg_error_set(err, -errno, "key directory %s: %s", dir, strerror(errno));
        r = list_key_files(d, &names, &nnames, err, dir);
        if (r < 0) {
                closedir(d);
                return r;
        }
        k = calloc(1, sizeof(*k));
        if (!k || !payload || !sig ||
            (nnames && (!(k->keys = calloc(nnames, sizeof(*k->keys))) ||
                        !(k->info = calloc(nnames, sizeof(*k->info))) ||
                        !(k->skipped = calloc(nnames, sizeof(*k->skipped))) ||
                        !(k->map = calloc(nnames * N_HASHES, sizeof(*k->map)))))) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < nnames; i++) {
                struct tang_key *key = &k->keys[k->n];

                struct vg_error why = { 0 };

                /* As tangd: a file that is not a usable key is left out, not fatal. */
                r = load_jwk_file(dirfd(d), names[i], &key->jwk, &key->signing, NULL, &why);
                if (r == 0 && !key->signing && (r = vg_tang_exc_new(key->jwk, &key->exc, &why)) < 0)
                        vg_error_prefix(&why, "%s: ", names[i]);
                if (r == -ENOMEM) {
                        vg_error_set(err, r, "out of memory");
                        goto out;
                }
                if (r < 0) {
                        json_decref(TAKE_PTR(key->jwk));
                        if (!(k->skipped[k->n_skipped++] = strdup(vg_error_str(&why)))) {
                                r = vg_error_set(err, -ENOMEM, "out of memory");
                                goto out;
                        }
                        continue;
                }
                key->file = TAKE_PTR(names[i]);
                key->hidden = key->file[0] == '.';
                k->n++;
                for (size_t h = 0; h < N_HASHES; h++) {
                        r = vg_tang_thumbprint(key->jwk, hashes[h], &key->thp[h], err);
                        if (r < 0)
                                goto out;
                        k->map[k->nmap++] = (struct thp_entry){ key->thp[h], k->n - 1 };
                }
                k->info[k->n - 1] = (struct vg_tang_key_info){ key->file, key->thp[S256],
                                                               key->hidden, key->signing };
                if (key->hidden) {
                        nh++;
                        continue;
                }
                na++;
                if (json_array_append(payload, key->jwk) < 0 ||
                    (key->signing && json_array_append(sig, key->jwk) < 0)) {
                        r = vg_error_set(err, -ENOMEM, "out of memory");
                        goto out;
                }
        }
        if (k->nmap)
                qsort(k->map, k->nmap, sizeof(*k->map), cmp_entry);

        k->thp_adv = calloc(na + 1, sizeof(char *));
        k->thp_hidden = calloc(nh + 1, sizeof(char *));
        if (!k->thp_adv || !k->thp_hidden) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        na = nh = 0;
        for (size_t i = 0; i < k->n; i++) {
                if (k->keys[i].hidden)
                        k->thp_hidden[nh++] = k->keys[i].thp[S256];
                else
                        k->thp_adv[na++] = k->keys[i].thp[S256];
        }

        if (json_array_size(sig) > 0) {
                k->adv = sign_adv(payload, sig, &k->adv_len);
                if (!k->adv) {
                        r = vg_error_set(err, -EINVAL,
                                         "key directory %s: signing the advertisement failed", dir);
                        goto out;
                }
        }
        /* /adv/{thp}: tang signs with the advertised signing keys plus the named one. */
        for (size_t i = 0; i < k->n; i++) {
                struct tang_key *key = &k->keys[i];
                json_auto_t *s2 = NULL;

                if (!key->signing)
                        continue;
                s2 = json_copy(sig);
                if (!s2 || json_array_append(s2, key->jwk) < 0 ||
                    !(key->adv = sign_adv(payload, s2, &key->adv_len))) {
                        r = vg_error_set(
                            err, -EINVAL,
                            "key directory %s: signing the advertisement with %s failed", dir,
                            key->file);
                        goto out;
                }
        }
        *out = TAKE_PTR(k);
        r = 0;
out:
        free_names(names, nnames);
        closedir(d);
        return r;
}

const char *const *vg_tang_keys_skipped(const struct vg_tang_keys *k, size_t *n)
{
        *n = k->n_skipped;
        return (const char *const *)k->skipped;
}

static const struct tang_key *find_key(const struct vg_tang_keys *k, const char *thp)
{
        struct thp_entry key = { thp, 0 }, *e;

        if (!k || !thp || !k->nmap)
                return NULL;
        e = bsearch(&key, k->map, k->nmap, sizeof(*k->map), cmp_entry);
        return e ? &k->keys[e->key] : NULL;
}

const char *vg_tang_keys_adv(const struct vg_tang_keys *k, size_t *len)
{
        if (k->adv && len)
                *len = k->adv_len;
        return k->adv;
}

const char *vg_tang_keys_adv_thp(const struct vg_tang_keys *k, const char *thp, size_t *len)
{
        const struct tang_key *key = find_key(k, thp);

        if (!key || !key->signing || !key->adv)
                return NULL;
        if (len)
                *len = key->adv_len;
        return key->adv;
}

const json_t *vg_tang_keys_exchange_key(const struct vg_tang_keys *k, const char *kid)
{
        const struct tang_key *key = find_key(k, kid);

        return key && !key->signing ? key->jwk : NULL;
}

const json_t *vg_tang_keys_find(const struct vg_tang_keys *k, const char *thp)
{
        const struct tang_key *key = find_key(k, thp);

        return key ? key->jwk : NULL;
}

bool vg_tang_keys_is_hidden(const struct vg_tang_keys *k, const char *kid)
{
        const struct tang_key *key = find_key(k, kid);

        return key && key->hidden;
}

const char *const *vg_tang_keys_thumbprints(const struct vg_tang_keys *k, bool hidden)
{
        return hidden ? k->thp_hidden : k->thp_adv;
}

size_t vg_tang_keys_list(const struct vg_tang_keys *k, const struct vg_tang_key_info **out)
{
        *out = k->info;
        return k->n;
}

/* ---- key management ---- */

static int write_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Create dir/name with exactly these bytes and mode, never replacing a file (O_EXCL); the
 * mode is set at creation, so the file is never readable more widely (CVE-2023-1672). */
static int create_file(int dirfd, const char *dir, const char *name, const char *data, size_t len,
                       mode_t mode, struct vg_error *err)
{
        int fd, r;

        fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return vg_error_set(err, -errno, "%s/%s: %s", dir, name,
                                    errno == EEXIST ? "exists already, not overwritten"
                                                    : strerror(errno));
        /* O_CREAT applies the umask: make the mode exact. */
        r = fchmod(fd, mode) < 0 ? -errno : 0;
        if (!r)
                r = write_all(fd, data, len);
        if (!r && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && !r)
                r = -errno;
        if (r < 0) {
                unlinkat(dirfd, name, 0);
                return vg_error_set(err, r, "%s/%s: %s", dir, name, strerror(-r));
        }
        return 0;
}

/* One key as tangd-keygen makes it: `jose jwk gen -i '{"alg":ALG}'` printed by echo, i.e.
 * sorted compact JSON and a newline, in <S256 thumbprint>.jwk, mode 0440. */
static int gen_key(int dirfd, const char *dir, const char *alg, char **thp_out,
                   struct vg_error *err)
{
        json_auto_t *jwk = json_pack("{s:s}", "alg", alg);
        _cleanup_free_ char *thp = NULL, *text = NULL, *name = NULL;
        int r;

        if (!jwk || !jose_jwk_gen(NULL, jwk))
                return vg_error_set(err, -EIO, "generating a %s key failed", alg);
        r = vg_tang_thumbprint(jwk, "S256", &thp, err);
        if (r < 0)
                return r;
        text = json_dumps(jwk, JSON_SORT_KEYS | JSON_COMPACT);
        if (!text || asprintf(&name, "%s.jwk", thp) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        {
                size_t n = strlen(text);
                _cleanup_free_ char *line = malloc(n + 2);
                if (!line)
                        return vg_error_set(err, -ENOMEM, "out of memory");
                memcpy(line, text, n);
                line[n] = '\n';
                r = create_file(dirfd, dir, name, line, n + 1, 0440, err);
                explicit_bzero(line, n + 1);
        }
        explicit_bzero(text, strlen(text));
        if (r < 0)
                return r;
        if (thp_out)
                *thp_out = TAKE_PTR(thp);
        return 0;
}

int vg_tang_keygen(const char *dir, char **sig_thp, char **exc_thp, struct vg_error *err)
{
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_free_ char *s = NULL, *e = NULL;
        int r;

        if (dfd < 0)
                return vg_error_set(err, -errno, "key directory %s: %s", dir, strerror(errno));
        r = gen_key(dfd, dir, "ES512", &s, err);
        if (r < 0)
                return r;
        r = gen_key(dfd, dir, "ECMR", &e, err);
        if (r < 0)
                return r;
        if (fsync(dfd) < 0)
                return vg_error_set(err, -errno, "key directory %s: %s", dir, strerror(errno));
        if (sig_thp)
                *sig_thp = TAKE_PTR(s);
        if (exc_thp)
                *exc_thp = TAKE_PTR(e);
        return 0;
}

int vg_tang_rotate(const char *dir, char **sig_thp, char **exc_thp, struct vg_error *err)
{
        char **names = NULL;
        size_t n = 0;
        DIR *d;
        int r = 0;

        d = opendir(dir);
        if (!d)
                return vg_error_set(err, -errno, "key directory %s: %s", dir, strerror(errno));
        r = list_key_files(d, &names, &n, err, dir);
        for (size_t i = 0; r == 0 && i < n; i++) {
                _cleanup_free_ char *hidden = NULL;

                if (names[i][0] == '.')
                        continue;
                if (asprintf(&hidden, ".%s", names[i]) < 0) {
                        r = vg_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                if (renameat2(dirfd(d), names[i], dirfd(d), hidden, RENAME_NOREPLACE) < 0)
                        r = vg_error_set(err, -errno, "%s: hiding %s as %s: %s", dir, names[i],
                                         hidden, strerror(errno));
        }
        if (r == 0)
                r = vg_tang_keygen(dir, sig_thp, exc_thp, err);
        free_names(names, n);
        closedir(d);
        return r;
}

/* ---- backup, restore, purge ---- */

int vg_tang_backup(const char *dir, const char *file, struct vg_error *err)
{
        json_auto_t *keys = json_array(), *bundle = NULL;
        _cleanup_free_ char *text = NULL;
        char **names = NULL;
        size_t n = 0;
        DIR *d;
        int r;

        if (!keys)
                return vg_error_set(err, -ENOMEM, "out of memory");
        d = opendir(dir);
        if (!d)
                return vg_error_set(err, -errno, "key directory %s: %s", dir, strerror(errno));
        r = list_key_files(d, &names, &n, err, dir);
        if (r == 0)
                qsort(names, n, sizeof(*names), cmp_name);
        for (size_t i = 0; r == 0 && i < n; i++) {
                _cleanup_free_ char *buf = NULL;
                json_auto_t *jwk = NULL;
                struct stat st;
                size_t len;
                bool sign;

                /* Back up only what restores into a working directory. */
                r = load_jwk_file(dirfd(d), names[i], &jwk, &sign, &st, err);
                if (r == 0)
                        r = read_file(dirfd(d), names[i], MAX_KEY_FILE, &buf, &len, NULL, err);
                if (r < 0) {
                        vg_error_prefix(err, "key directory %s: ", dir);
                        break;
                }
                if (json_array_append_new(keys, json_pack("{s:s,s:i,s:s%}", "name", names[i],
                                                          "mode", (int)(st.st_mode & 07777), "jwk",
                                                          buf, len)) < 0)
                        r = vg_error_set(err, -ENOMEM, "out of memory");
                explicit_bzero(buf, len);
        }
        free_names(names, n);
        closedir(d);
        if (r < 0)
                return r;
        bundle = json_pack("{s:i,s:O}", "vigil-tang-backup", 1, "keys", keys);
        if (!bundle || !(text = json_dumps(bundle, JSON_INDENT(1))))
                return vg_error_set(err, -ENOMEM, "out of memory");
        {
                const char *slash = strrchr(file, '/');
                _cleanup_free_ char *parent =
                    slash ? strndup(file, slash == file ? 1 : (size_t)(slash - file)) : strdup(".");
                _cleanup_close_ int pfd = -1;
                size_t tlen = strlen(text);

                if (!parent)
                        return vg_error_set(err, -ENOMEM, "out of memory");
                pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (pfd < 0)
                        return vg_error_set(err, -errno, "%s: %s", parent, strerror(errno));
                r = create_file(pfd, parent, slash ? slash + 1 : file, text, tlen, 0400, err);
                explicit_bzero(text, tlen);
        }
        return r < 0 ? r : (int)json_array_size(keys);
}

static bool valid_key_name(const char *name)
{
        return name[0] && !strchr(name, '/') && is_key_file(name) && strcmp(name, "..jwk") != 0 &&
               strlen(name) < 256;
}

int vg_tang_restore(const char *file, const char *dir, struct vg_error *err)
{
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int dfd = -1;
        json_auto_t *bundle = NULL;
        json_error_t jerr;
        json_t *keys, *e;
        size_t len, i;
        int version = 0, r;

        r = read_file(AT_FDCWD, file, MAX_BUNDLE, &text, &len, NULL, err);
        if (r < 0)
                return r;
        bundle = json_loadb(text, len, 0, &jerr);
        explicit_bzero(text, len);
        if (!bundle)
                return vg_error_set(err, -EINVAL, "%s:%d: not JSON: %s", file, jerr.line,
                                    jerr.text);
        if (json_unpack(bundle, "{s:i,s:o}", "vigil-tang-backup", &version, "keys", &keys) < 0 ||
            version != 1 || !json_is_array(keys))
                return vg_error_set(
                    err, -EINVAL,
                    "%s: not a vigil tang backup (expected {\"vigil-tang-backup\":1,"
                    "\"keys\":[...]})",
                    file);
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return vg_error_set(err, -errno, "key directory %s: %s", dir, strerror(errno));
        /* Check everything before writing anything. */
        json_array_foreach (keys, i, e) {
                const char *name = NULL, *data = NULL;
                json_int_t mode = 0;
                json_auto_t *jwk = NULL;
                size_t dlen = 0;
                bool sign;

                if (json_unpack(e, "{s:s,s:I,s:s%}", "name", &name, "mode", &mode, "jwk", &data,
                                &dlen) < 0 ||
                    !valid_key_name(name) || mode < 0 || mode > 0777)
                        return vg_error_set(err, -EINVAL,
                                            "%s: keys[%zu]: expected {\"name\":\"<x>.jwk\","
                                            "\"mode\":<0..0777>,\"jwk\":\"...\"}",
                                            file, i);
                jwk = json_loadb(data, dlen, 0, &jerr);
                if (!jwk)
                        return vg_error_set(err, -EINVAL, "%s: keys[%zu] (%s): not JSON: %s", file,
                                            i, name, jerr.text);
                r = check_jwk(name, jwk, &sign, err);
                if (r < 0) {
                        vg_error_prefix(err, "%s: keys[%zu]: ", file, i);
                        return r;
                }
                if (faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
                        return vg_error_set(err, -EEXIST,
                                            "%s/%s exists already; restore does not overwrite "
                                            "keys",
                                            dir, name);
        }
        json_array_foreach (keys, i, e) {
                const char *name = json_string_value(json_object_get(e, "name"));
                const char *data = json_string_value(json_object_get(e, "jwk"));
                size_t dlen = json_string_length(json_object_get(e, "jwk"));
                mode_t mode = (mode_t)json_integer_value(json_object_get(e, "mode"));

                r = create_file(dfd, dir, name, data, dlen, mode, err);
                if (r < 0)
                        return r;
        }
        if (fsync(dfd) < 0)
                return vg_error_set(err, -errno, "key directory %s: %s", dir, strerror(errno));
        return (int)json_array_size(keys);
}

int vg_tang_purge_hidden(const char *dir, bool force, time_t window_s, time_t now,
                         struct vg_error *err)
{
        _cleanup_(vg_tang_keys_freep) struct vg_tang_keys *k = NULL;
        _cleanup_close_ int dfd = -1;
        json_auto_t *rec = NULL;
        int r, removed = 0;

        r = vg_tang_keys_load(dir, &k, err);
        if (r < 0)
                return r;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return vg_error_set(err, -errno, "key directory %s: %s", dir, strerror(errno));
        if (!force) {
                _cleanup_free_ char *text = NULL;
                struct vg_error e2 = { 0 };
                json_error_t jerr;
                size_t len;

                r = read_file(dfd, VG_TANG_RECOVERIES_FILE, MAX_BUNDLE, &text, &len, NULL, &e2);
                if (r == -ENOENT) {
                        rec = json_object();
                } else if (r < 0) {
                        return vg_error_set(err, r, "%s/%s", dir, vg_error_str(&e2));
                } else {
                        rec = json_loadb(text, len, 0, &jerr);
                        if (!json_is_object(rec))
                                return vg_error_set(err, -EINVAL,
                                                    "%s/%s:%d: expected {\"<kid>\": <unix time>, "
                                                    "...}%s%s",
                                                    dir, VG_TANG_RECOVERIES_FILE,
                                                    rec ? 1 : jerr.line, rec ? "" : ": ",
                                                    rec ? "" : jerr.text);
                }
                for (size_t i = 0; i < k->n; i++) {
                        const struct tang_key *key = &k->keys[i];

                        if (!key->hidden)
                                continue;
                        for (size_t h = 0; h < N_HASHES; h++) {
                                json_t *t = json_object_get(rec, key->thp[h]);
                                double when;

                                if (!t)
                                        continue;
                                if (!json_is_number(t))
                                        return vg_error_set(
                                            err, -EINVAL,
                                            "%s/%s: \"%s\": expected a unix time, "
                                            "found %s",
                                            dir, VG_TANG_RECOVERIES_FILE, key->thp[h],
                                            json_is_string(t) ? "a string" : "another value");
                                when = json_number_value(t);
                                if (when > (double)(now - window_s))
                                        return vg_error_set(
                                            err, -EBUSY,
                                            "hidden key %s (%s) recovered a client %.0f s ago, "
                                            "within the %lld s window; clients still use it "
                                            "(rebind them, or --force)",
                                            key->thp[S256], key->file,
                                            (double)now - when > 0 ? (double)now - when : 0,
                                            (long long)window_s);
                        }
                }
        }
        for (size_t i = 0; i < k->n; i++) {
                if (!k->keys[i].hidden)
                        continue;
                if (unlinkat(dfd, k->keys[i].file, 0) < 0)
                        return vg_error_set(err, -errno, "%s/%s: %s", dir, k->keys[i].file,
                                            strerror(errno));
                removed++;
        }
        if (removed && fsync(dfd) < 0)
                return vg_error_set(err, -errno, "key directory %s: %s", dir, strerror(errno));
        return removed;
}

/* ---- the McCallum-Relyea exchange on OpenSSL ---- */

void vg_tang_exc_free(struct vg_tang_exc *e)
{
        if (!e)
                return;
        EC_GROUP_free(e->grp);
        BN_clear_free(e->d);
        free(e->thp);
        free(e);
}

int vg_tang_exc_new(const json_t *jwk, struct vg_tang_exc **out, struct vg_error *err)
{
        _cleanup_(vg_tang_exc_freep) struct vg_tang_exc *e = calloc(1, sizeof(*e));
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        const char *d = json_string_value(json_object_get(jwk, "d"));
        uint8_t *raw = NULL;
        size_t raw_len = 0;
        int nid, r;

        if (!e)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (!crv)
                return vg_error_set(err, -EINVAL, "exchange key without \"crv\"");
        if (strcmp(crv, "P-256") == 0) {
                nid = NID_X9_62_prime256v1;
                e->crv = "P-256";
        } else if (strcmp(crv, "P-384") == 0) {
                nid = NID_secp384r1;
                e->crv = "P-384";
        } else if (strcmp(crv, "P-521") == 0) {
                nid = NID_secp521r1;
                e->crv = "P-521";
        } else {
                return vg_error_set(err, -EINVAL,
                                    "exchange key on curve \"%s\" (expected P-256, P-384 or "
                                    "P-521)",
                                    crv);
        }
        if (!d || vg_b64_decode(d, strlen(d), VG_B64_URL, &raw, &raw_len) < 0)
                return vg_error_set(err, -EINVAL, "exchange key: \"d\" is not base64url");
        e->grp = EC_GROUP_new_by_curve_name(nid);
        e->d = BN_secure_new();
        if (e->d)
                BN_set_flags(e->d, BN_FLG_CONSTTIME);
        if (!e->grp || !e->d || !BN_bin2bn(raw, (int)raw_len, e->d)) {
                explicit_bzero(raw, raw_len);
                free(raw);
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        explicit_bzero(raw, raw_len);
        free(raw);
        if (BN_is_zero(e->d) || BN_cmp(e->d, EC_GROUP_get0_order(e->grp)) >= 0)
                return vg_error_set(err, -EINVAL, "exchange key: \"d\" is not a scalar of %s", crv);
        e->clen = ((size_t)EC_GROUP_get_degree(e->grp) + 7) / 8;
        r = vg_tang_thumbprint(jwk, "S256", &e->thp, err);
        if (r < 0)
                return r;
        *out = TAKE_PTR(e);
        return 0;
}

const char *vg_tang_exc_crv(const struct vg_tang_exc *e)
{
        return e->crv;
}

const char *vg_tang_exc_thp(const struct vg_tang_exc *e)
{
        return e->thp;
}

static BIGNUM *coordinate(const char *s, size_t max, const char *name, struct vg_error *err)
{
        uint8_t *raw = NULL;
        size_t len = 0;
        BIGNUM *bn;

        if (!s || vg_b64_decode(s, strlen(s), VG_B64_URL, &raw, &len) < 0 || len == 0 ||
            len > max) {
                free(raw);
                vg_error_set(err, -EINVAL, "request JWK: %s is not a base64url coordinate", name);
                return NULL;
        }
        bn = BN_bin2bn(raw, (int)len, NULL);
        free(raw);
        if (!bn)
                vg_error_set(err, -ENOMEM, "out of memory");
        return bn;
}

int vg_tang_exc_mul(const struct vg_tang_exc *e, const char *x, const char *y, char **out,
                    size_t *out_len, struct vg_error *err)
{
        /* A P-521 coordinate is 66 bytes; libjose reads any length, the request check caps it. */
        enum { MAX_COORD = 66 };
        BN_CTX *ctx = NULL;
        BIGNUM *X = NULL, *Y = NULL, *RX = NULL, *RY = NULL;
        EC_POINT *p = NULL, *res = NULL;
        uint8_t bx[MAX_COORD], by[MAX_COORD];
        char *ex = NULL, *ey = NULL, *json = NULL;
        int r, n;

        *out = NULL;
        *out_len = 0;
        X = coordinate(x, MAX_COORD, "x", err);
        if (!X)
                return err && err->code ? err->code : -EINVAL;
        Y = coordinate(y, MAX_COORD, "y", err);
        if (!Y) {
                r = err && err->code ? err->code : -EINVAL;
                goto out;
        }
        ctx = BN_CTX_new();
        p = EC_POINT_new(e->grp);
        res = EC_POINT_new(e->grp);
        RX = BN_new();
        RY = BN_new();
        if (!ctx || !p || !res || !RX || !RY) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        /* OpenSSL refuses a point off the curve here (coordinates are reduced mod p first, as
         * for libjose); the point at infinity has no affine coordinates but is checked too. */
        if (EC_POINT_set_affine_coordinates(e->grp, p, X, Y, ctx) != 1 ||
            EC_POINT_is_on_curve(e->grp, p, ctx) != 1 || EC_POINT_is_at_infinity(e->grp, p)) {
                r = vg_error_set(err, -EINVAL, "request JWK: the point is not on curve %s", e->crv);
                goto out;
        }
        /* One point, one scalar: OpenSSL's constant-time ladder (d has BN_FLG_CONSTTIME). */
        if (EC_POINT_mul(e->grp, res, NULL, p, e->d, ctx) != 1 ||
            EC_POINT_is_at_infinity(e->grp, res) ||
            EC_POINT_get_affine_coordinates(e->grp, res, RX, RY, ctx) != 1 ||
            BN_bn2binpad(RX, bx, (int)e->clen) < 0 || BN_bn2binpad(RY, by, (int)e->clen) < 0) {
                r = vg_error_set(err, -EINVAL, "request JWK: the exchange failed on curve %s",
                                 e->crv);
                goto out;
        }
        ex = vg_b64_encode(bx, e->clen, VG_B64_URL);
        ey = vg_b64_encode(by, e->clen, VG_B64_URL);
        if (!ex || !ey) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        n = asprintf(&json,
                     "{\"alg\":\"ECMR\",\"crv\":\"%s\",\"key_ops\":[\"deriveKey\"],"
                     "\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
                     e->crv, ex, ey);
        if (n < 0) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        *out = json;
        *out_len = (size_t)n;
        r = 0;
out:
        free(ex);
        free(ey);
        BN_free(X);
        BN_free(Y);
        BN_free(RX);
        BN_free(RY);
        EC_POINT_free(p);
        EC_POINT_free(res);
        BN_CTX_free(ctx);
        return r;
}

const struct vg_tang_exc *vg_tang_keys_exchange(const struct vg_tang_keys *k, const char *kid)
{
        const struct tang_key *key = find_key(k, kid);

        return key && !key->signing ? key->exc : NULL;
}
