/* vigil: Keylime payload delivery (reference/keylime.md §4): U/V halves under RSA-OAEP-SHA1,
 * K = U xor V authenticated by HMAC-SHA384(K, uuid), AES-256-GCM payload, confined unzip, autorun.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "dl_archive.h"
#include "encoding.h"
#include "log.h"
#include "payload.h"

#define GCM_IV_SIZE         16 /* Keylime's IV; SP 800-38D prefers 12, GCM accepts any */
#define GCM_TAG_SIZE        16
#define DEFAULT_TIMEOUT_S   300u
#define DEFAULT_MAX_BYTES   (256ull << 20)
#define DEFAULT_MAX_ENTRIES 4096u
#define ACTION_LIST_MAX     (64u << 10)
#define CLEAN_PATH          "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

VG_DEFINE_CLEANUP_FUNC(EVP_PKEY_CTX, EVP_PKEY_CTX_free)
VG_DEFINE_CLEANUP_FUNC(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free)
VG_DEFINE_CLEANUP_FUNC(struct archive, archive_read_free)
VG_DEFINE_CLEANUP_FUNC(DIR, closedir)

struct vg_payload_state {
        EVP_PKEY *nk; /* borrowed */
        char *uuid;
        uint8_t u[VG_PAYLOAD_KEY_SIZE], v[VG_PAYLOAD_KEY_SIZE], k[VG_PAYLOAD_KEY_SIZE];
        uint8_t tag[VG_PAYLOAD_AUTH_TAG_HEX / 2]; /* auth_tag that came with the pending U */
        bool have_u, have_v, have_k, delivered;
        uint8_t *pending_payload; /* decoded "payload" of the pending U */
        size_t pending_payload_len;
        uint8_t *payload; /* the payload that belongs to K */
        size_t payload_len;
};

static void wipe_free(uint8_t **p, size_t *len)
{
        if (*p) {
                OPENSSL_cleanse(*p, *len);
                free(*p);
        }
        *p = NULL;
        *len = 0;
}

static void drop_pending(struct vg_payload_state *st)
{
        OPENSSL_cleanse(st->u, sizeof(st->u));
        OPENSSL_cleanse(st->v, sizeof(st->v));
        OPENSSL_cleanse(st->tag, sizeof(st->tag));
        st->have_u = st->have_v = false;
        wipe_free(&st->pending_payload, &st->pending_payload_len);
}

int vg_payload_state_new(EVP_PKEY *nk, const char *uuid, struct vg_payload_state **out)
{
        struct vg_payload_state *st;

        if (!nk || !uuid || !out)
                return -EINVAL;
        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        st->uuid = strdup(uuid);
        if (!st->uuid) {
                free(st);
                return -ENOMEM;
        }
        st->nk = nk;
        *out = st;
        return 0;
}

void vg_payload_reset(struct vg_payload_state *st)
{
        drop_pending(st);
        OPENSSL_cleanse(st->k, sizeof(st->k));
        st->have_k = false;
        st->delivered = false;
        wipe_free(&st->payload, &st->payload_len);
}

void vg_payload_state_free(struct vg_payload_state *st)
{
        if (!st)
                return;
        vg_payload_reset(st);
        free(st->uuid);
        free(st);
}

bool vg_payload_have_key(const struct vg_payload_state *st)
{
        return st && st->have_k;
}

bool vg_payload_delivered(const struct vg_payload_state *st)
{
        return st && st->delivered;
}

static int hmac_sha384(const uint8_t *key, size_t key_len, const void *data, size_t len,
                       uint8_t out[48])
{
        size_t out_len = 0;

        if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA384", NULL, key, key_len, data, len, out, 48,
                       &out_len) ||
            out_len != 48)
                return -EIO;
        return 0;
}

/* RSA-OAEP with SHA-1 for both the label hash and MGF1: what Keylime's tenant and verifier use
 * (keylime/crypto.py rsa_encrypt). Kept for wire compatibility only. */
static int oaep_ctx(EVP_PKEY_CTX *ctx)
{
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, "SHA1", NULL) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, "SHA1", NULL) != 1)
                return -EINVAL;
        return 0;
}

static int decrypt_half(struct vg_payload_state *st, const char *which, const char *b64,
                        uint8_t half[VG_PAYLOAD_KEY_SIZE], struct vg_error *err)
{
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        _cleanup_free_ uint8_t *ct = NULL;
        _cleanup_secret_ struct vg_secret pt = { 0 };
        size_t ct_len = 0;

        if (!b64 || !*b64)
                return vg_error_set(err, -EINVAL, "%s: encrypted_key is missing", which);
        if (vg_b64_decode(b64, strlen(b64), VG_B64_STD, &ct, &ct_len) < 0)
                return vg_error_set(err, -EINVAL, "%s: encrypted_key is not valid base64", which);
        if (!EVP_PKEY_is_a(st->nk, "RSA"))
                return vg_error_set(err, -EINVAL, "%s: the NK is not an RSA key", which);
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, st->nk, NULL);
        if (!ctx || EVP_PKEY_decrypt_init(ctx) != 1 || oaep_ctx(ctx) < 0)
                return vg_error_set(err, -ENOMEM, "%s: cannot set up RSA-OAEP", which);
        if (EVP_PKEY_decrypt(ctx, NULL, &pt.len, ct, ct_len) != 1)
                return vg_error_set(err, -EINVAL,
                                    "%s: encrypted_key (%zu bytes) does not "
                                    "decrypt with the NK",
                                    which, ct_len);
        pt.p = malloc(pt.len ? pt.len : 1);
        if (!pt.p)
                return -ENOMEM;
        if (EVP_PKEY_decrypt(ctx, pt.p, &pt.len, ct, ct_len) != 1)
                return vg_error_set(err, -EINVAL,
                                    "%s: encrypted_key does not decrypt with "
                                    "the NK (RSA-OAEP-SHA1)",
                                    which);
        if (pt.len != VG_PAYLOAD_KEY_SIZE)
                return vg_error_set(err, -EINVAL,
                                    "%s: expected a %d-byte key half, found %zu "
                                    "bytes",
                                    which, VG_PAYLOAD_KEY_SIZE, pt.len);
        memcpy(half, pt.p, VG_PAYLOAD_KEY_SIZE);
        return 0;
}

/* Keylime's try_combine_keys: once both halves are here, K = U xor V must reproduce the
 * auth_tag. Unlike Keylime, a mismatch wipes both halves, so a wrong half cannot linger and pair
 * with the next good one in an unexpected way. */
static int try_combine(struct vg_payload_state *st, struct vg_error *err)
{
        uint8_t k[VG_PAYLOAD_KEY_SIZE], mac[48];
        int r;

        if (!st->have_u || !st->have_v)
                return 0;
        for (size_t i = 0; i < sizeof(k); i++)
                k[i] = st->u[i] ^ st->v[i];
        r = hmac_sha384(k, sizeof(k), st->uuid, strlen(st->uuid), mac);
        if (r == 0 && !vg_ct_equal(mac, st->tag, sizeof(mac)))
                r = -EKEYREJECTED;
        if (r < 0) {
                OPENSSL_cleanse(k, sizeof(k));
                OPENSSL_cleanse(mac, sizeof(mac));
                drop_pending(st);
                vg_warn(VG_F("agent", st->uuid), "U and V do not combine into the key the "
                                                 "auth_tag names; both halves discarded");
                return vg_error_set(err, r,
                                    "agent %s: the U and V halves do not match the "
                                    "auth_tag (HMAC-SHA384(K, uuid)); both discarded, send "
                                    "both halves again",
                                    st->uuid);
        }
        /* A new pair replaces the old K and payload only now that it is authenticated. */
        wipe_free(&st->payload, &st->payload_len);
        memcpy(st->k, k, sizeof(k));
        st->payload = TAKE_PTR(st->pending_payload);
        st->payload_len = st->pending_payload_len;
        st->pending_payload_len = 0;
        st->have_k = true;
        st->delivered = false;
        OPENSSL_cleanse(k, sizeof(k));
        OPENSSL_cleanse(mac, sizeof(mac));
        drop_pending(st);
        vg_info(VG_F("agent", st->uuid), "U and V combined; payload key authenticated");
        return 0;
}

int vg_payload_add_u(struct vg_payload_state *st, const char *encrypted_key_b64,
                     const char *auth_tag_hex, const char *payload_b64, struct vg_error *err)
{
        uint8_t u[VG_PAYLOAD_KEY_SIZE], tag[VG_PAYLOAD_AUTH_TAG_HEX / 2];
        uint8_t *payload = NULL;
        size_t payload_len = 0;
        int r;

        if (!auth_tag_hex || strlen(auth_tag_hex) != VG_PAYLOAD_AUTH_TAG_HEX ||
            vg_hex_decode_exact(auth_tag_hex, VG_PAYLOAD_AUTH_TAG_HEX, tag, sizeof(tag)) < 0)
                return vg_error_set(err, -EINVAL,
                                    "ukey: expected auth_tag as %d hex digits "
                                    "(HMAC-SHA384), found %zu characters",
                                    VG_PAYLOAD_AUTH_TAG_HEX,
                                    auth_tag_hex ? strlen(auth_tag_hex) : 0);
        if (payload_b64 && *payload_b64) {
                size_t n = strlen(payload_b64);

                if (n / 4 * 3 > VG_PAYLOAD_MAX_ENCRYPTED)
                        return vg_error_set(err, -EFBIG,
                                            "ukey: payload of %zu base64 "
                                            "characters is over the %u-byte limit",
                                            n, VG_PAYLOAD_MAX_ENCRYPTED);
                if (vg_b64_decode(payload_b64, n, VG_B64_STD, &payload, &payload_len) < 0)
                        return vg_error_set(err, -EINVAL, "ukey: payload is not valid base64");
                if (payload_len < GCM_IV_SIZE + GCM_TAG_SIZE) {
                        free(payload);
                        return vg_error_set(err, -EINVAL,
                                            "ukey: expected a payload of at "
                                            "least %d bytes (IV, tag), found %zu",
                                            GCM_IV_SIZE + GCM_TAG_SIZE, payload_len);
                }
        }
        r = decrypt_half(st, "ukey", encrypted_key_b64, u, err);
        if (r < 0) {
                free(payload);
                return r;
        }
        /* The payload is ciphertext, but it belongs to a pair; keep it with the pending U. */
        wipe_free(&st->pending_payload, &st->pending_payload_len);
        st->pending_payload = payload;
        st->pending_payload_len = payload_len;
        memcpy(st->u, u, sizeof(u));
        memcpy(st->tag, tag, sizeof(tag));
        st->have_u = true;
        OPENSSL_cleanse(u, sizeof(u));
        return try_combine(st, err);
}

int vg_payload_add_v(struct vg_payload_state *st, const char *encrypted_key_b64,
                     struct vg_error *err)
{
        uint8_t v[VG_PAYLOAD_KEY_SIZE];
        int r;

        r = decrypt_half(st, "vkey", encrypted_key_b64, v, err);
        if (r < 0)
                return r;
        memcpy(st->v, v, sizeof(v));
        st->have_v = true;
        OPENSSL_cleanse(v, sizeof(v));
        return try_combine(st, err);
}

int vg_payload_verify_hmac(const struct vg_payload_state *st, const char *challenge,
                           char out_hex[VG_PAYLOAD_AUTH_TAG_HEX + 1], struct vg_error *err)
{
        static const char digits[] = "0123456789abcdef";
        uint8_t mac[48];
        int r;

        if (!st->have_k)
                return vg_error_set(err, -EAGAIN,
                                    "keys/verify: the payload key is not "
                                    "available yet (U and V not both received)");
        if (!challenge)
                return vg_error_set(err, -EINVAL, "keys/verify: challenge is missing");
        r = hmac_sha384(st->k, sizeof(st->k), challenge, strlen(challenge), mac);
        if (r < 0)
                return vg_error_set(err, r, "keys/verify: HMAC-SHA384 failed");
        for (size_t i = 0; i < sizeof(mac); i++) {
                out_hex[2 * i] = digits[mac[i] >> 4];
                out_hex[2 * i + 1] = digits[mac[i] & 15];
        }
        out_hex[VG_PAYLOAD_AUTH_TAG_HEX] = '\0';
        return 0;
}

/* ---- Files --------------------------------------------------------------------------------- */

static bool safe_name(const char *name)
{
        return name && *name && name[0] != '.' && !strchr(name, '/') && strlen(name) < NAME_MAX;
}

/* Remove a tree without following symlinks: it lives in our private dir, but whatever a script
 * left there must not lead us elsewhere. */
static int rm_tree_at(int pfd, const char *name)
{
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int fd;

        if (unlinkat(pfd, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR && errno != EPERM)
                return -errno;
        fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        while ((de = readdir(d))) {
                int r;

                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                r = rm_tree_at(dirfd(d), de->d_name);
                if (r < 0)
                        return r;
        }
        if (unlinkat(pfd, name, AT_REMOVEDIR) < 0)
                return -errno;
        return 0;
}

static int write_file_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
        _cleanup_close_ int fd = -1;
        const uint8_t *p = data;

        fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                p += n;
                len -= (size_t)n;
        }
        if (close(TAKE_FD(fd)) < 0)
                return -errno;
        return 0;
}

/* b64 payload = IV16 || AES-256-GCM ciphertext || tag16 (keylime/crypto.py encrypt). The
 * plaintext stays in memory until the tag has verified, so a forged payload never touches disk. */
static int decrypt_payload(const uint8_t k[VG_PAYLOAD_KEY_SIZE], const uint8_t *in, size_t len,
                           struct vg_secret *out)
{
        _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *ctx = NULL;
        _cleanup_secret_ struct vg_secret pt = { 0 };
        size_t ct_len = len - GCM_IV_SIZE - GCM_TAG_SIZE;
        int n = 0, fin = 0;

        if (len < GCM_IV_SIZE + GCM_TAG_SIZE || ct_len > INT_MAX)
                return -EINVAL;
        pt.p = malloc(ct_len + 1);
        if (!pt.p)
                return -ENOMEM;
        pt.len = ct_len + 1;
        ctx = EVP_CIPHER_CTX_new();
        if (!ctx || EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, GCM_IV_SIZE, NULL) != 1 ||
            EVP_DecryptInit_ex(ctx, NULL, NULL, k, in) != 1)
                return -ENOMEM;
        if (EVP_DecryptUpdate(ctx, pt.p, &n, in + GCM_IV_SIZE, (int)ct_len) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, GCM_TAG_SIZE,
                                (void *)(in + len - GCM_TAG_SIZE)) != 1 ||
            EVP_DecryptFinal_ex(ctx, pt.p + n, &fin) != 1)
                return -EBADMSG;
        *out = pt;
        out->len = (size_t)n + (size_t)fin;
        pt.p = NULL; /* ownership moved; out->len is the plaintext length, allocation is +1 */
        return 0;
}

static bool path_escapes(const char *name)
{
        const char *p = name;

        if (*name == '/')
                return true;
        while (*p) {
                size_t n = strcspn(p, "/");

                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return true;
                p += n;
                p += strspn(p, "/");
        }
        return false;
}

/* Python's zipfile.extractall, which Keylime uses, sanitises names; vigil refuses instead: an
 * absolute name, a ".." component, a link or a device means a hostile or broken payload, and
 * the whole delivery stops. Sizes are counted from the bytes actually inflated, not from the
 * headers, which an attacker writes. */
static int extract_zip(const char *dest, const uint8_t *data, size_t len, uint64_t max_bytes,
                       unsigned max_entries, struct vg_error *err)
{
        _cleanup_(archive_read_freep) struct archive *a = NULL;
        struct archive *w = NULL;
        struct archive_entry *e;
        uint64_t total = 0;
        unsigned count = 0;
        int r = 0, ar;

        r = vg_dl_archive_load(err);
        if (r < 0)
                return r;
        a = archive_read_new();
        w = archive_write_disk_new();
        if (!a || !w) {
                if (w)
                        archive_write_free(w);
                return -ENOMEM;
        }
        archive_read_support_format_zip(a);
        /* Entries get dest prepended (no chdir in a threaded daemon), so NOABSOLUTEPATHS cannot
         * be used; path_escapes() refuses absolute names before that. */
        archive_write_disk_set_options(w, ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                              ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                              ARCHIVE_EXTRACT_NO_OVERWRITE);
        if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
                r = vg_error_set(err, -EINVAL, "payload is not a zip archive: %s",
                                 archive_error_string(a));
                goto out;
        }
        while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *entry_name = archive_entry_pathname(e);
                mode_t type = archive_entry_filetype(e);
                _cleanup_free_ char *full = NULL, *name = NULL;

                if (++count > max_entries) {
                        r = vg_error_set(err, -EFBIG, "payload zip has more than %u entries",
                                         max_entries);
                        goto out;
                }
                /* A copy: set_pathname below frees the entry's own string. */
                name = entry_name ? strdup(entry_name) : NULL;
                if (entry_name && !name) {
                        r = -ENOMEM;
                        goto out;
                }
                if (!name || !*name || strlen(name) > PATH_MAX / 2) {
                        r = vg_error_set(err, -EPERM, "payload zip entry %u has no usable name",
                                         count);
                        goto out;
                }
                if (path_escapes(name)) {
                        r = vg_error_set(err, -EPERM,
                                         "payload zip entry '%s': absolute or "
                                         "'..' path would escape the payload directory",
                                         name);
                        goto out;
                }
                if (archive_entry_hardlink(e) || archive_entry_symlink(e) ||
                    (type != AE_IFREG && type != AE_IFDIR)) {
                        r = vg_error_set(err, -EPERM,
                                         "payload zip entry '%s': expected a "
                                         "regular file or directory, found a %s",
                                         name,
                                         archive_entry_hardlink(e) ? "hard link"
                                         : type == AE_IFLNK        ? "symbolic link"
                                                                   : "special file");
                        goto out;
                }
                if (asprintf(&full, "%s/%s", dest, name) < 0) {
                        full = NULL;
                        r = -ENOMEM;
                        goto out;
                }
                archive_entry_set_pathname(e, full);
                archive_entry_set_perm(e, type == AE_IFDIR ? 0700 : 0600);
                if (archive_write_header(w, e) != ARCHIVE_OK) {
                        r = vg_error_set(err, -EPERM, "payload zip entry '%s': %s", name,
                                         archive_error_string(w));
                        goto out;
                }
                for (;;) {
                        const void *buf;
                        size_t size;
                        la_int64_t off;

                        ar = archive_read_data_block(a, &buf, &size, &off);
                        if (ar == ARCHIVE_EOF)
                                break;
                        if (ar != ARCHIVE_OK) {
                                r = vg_error_set(err, -EINVAL, "payload zip entry '%s': %s", name,
                                                 archive_error_string(a));
                                goto out;
                        }
                        total += size;
                        if (total > max_bytes) {
                                r = vg_error_set(err, -EFBIG,
                                                 "payload zip expands to more "
                                                 "than %llu bytes (at entry '%s')",
                                                 (unsigned long long)max_bytes, name);
                                goto out;
                        }
                        if (archive_write_data_block(w, buf, size, off) != ARCHIVE_OK) {
                                r = vg_error_set(err, -EIO, "payload zip entry '%s': %s", name,
                                                 archive_error_string(w));
                                goto out;
                        }
                }
                if (archive_write_finish_entry(w) != ARCHIVE_OK) {
                        r = vg_error_set(err, -EIO, "payload zip entry '%s': %s", name,
                                         archive_error_string(w));
                        goto out;
                }
        }
        if (ar != ARCHIVE_EOF)
                r = vg_error_set(err, -EINVAL, "payload zip is corrupt: %s",
                                 archive_error_string(a));
out:
        archive_write_free(w);
        return r;
}

int vg_action_list_read(int dirfd, const char *name, char ***out)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        char **names = NULL, *save = NULL, *tok;
        size_t n = 0, len = 0;
        struct stat sb;

        *out = NULL;
        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0)
                return -errno;
        if (!S_ISREG(sb.st_mode))
                return -EINVAL;
        if (sb.st_size > ACTION_LIST_MAX)
                return -EFBIG;
        text = calloc(1, (size_t)sb.st_size + 1);
        if (!text)
                return -ENOMEM;
        while (len < (size_t)sb.st_size) {
                ssize_t r = read(fd, text + len, (size_t)sb.st_size - len);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                len += (size_t)r;
        }
        /* Keylime writes the list comma-separated; accept newlines and blanks too. */
        names = calloc(len / 2 + 2, sizeof(*names));
        if (!names)
                return -ENOMEM;
        for (tok = strtok_r(text, ", \t\r\n", &save); tok;
             tok = strtok_r(NULL, ", \t\r\n", &save)) {
                names[n] = strdup(tok);
                if (!names[n]) {
                        vg_strv_free(names);
                        return -ENOMEM;
                }
                n++;
        }
        *out = names;
        return 0;
}

void vg_strv_free(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

/* Keylime sets mode 0700 on the scripts named in action_list so that revocation can run them;
 * the others stay 0600. */
static void chmod_action_scripts(int dirfd, const char *uuid)
{
        char **names = NULL;

        if (vg_action_list_read(dirfd, "action_list", &names) < 0)
                return;
        for (char **p = names; *p; p++) {
                struct stat sb;

                if (!safe_name(*p) || fstatat(dirfd, *p, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISREG(sb.st_mode) || fchmodat(dirfd, *p, 0700, 0) < 0)
                        vg_warn(VG_F("agent", uuid, "action", *p),
                                "action_list names no regular file in the payload; skipped");
        }
        vg_strv_free(names);
}

/* A zip archive starts with a local file header, or is empty (end of central directory). */
static bool looks_like_zip(const uint8_t *p, size_t len)
{
        return len >= 4 && p[0] == 'P' && p[1] == 'K' &&
               ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6));
}

static int build_unzipped(struct vg_payload_state *st, const struct vg_payload_config *cfg,
                          const char *staging, struct vg_error *err)
{
        _cleanup_secret_ struct vg_secret pt = { 0 };
        _cleanup_close_ int dfd = -1;
        int r;

        dfd = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return vg_error_set(err, -errno, "%s: %m", staging);
        if (st->payload) {
                r = decrypt_payload(st->k, st->payload, st->payload_len, &pt);
                if (r == -EBADMSG)
                        return vg_error_set(err, r,
                                            "agent %s: the payload failed "
                                            "authentication (AES-GCM tag); nothing written",
                                            st->uuid);
                if (r < 0)
                        return vg_error_set(err, r, "agent %s: cannot decrypt the payload",
                                            st->uuid);
        }
        r = write_file_at(dfd, cfg->enc_keyname, st->k, sizeof(st->k), 0600);
        if (r < 0)
                return vg_error_set(err, r, "%s/%s: %s", staging, cfg->enc_keyname, strerror(-r));
        if (st->payload) {
                r = write_file_at(dfd, cfg->dec_payload_file, pt.p, pt.len, 0600);
                if (r < 0)
                        return vg_error_set(err, r, "%s/%s: %s", staging, cfg->dec_payload_file,
                                            strerror(-r));
                if (cfg->extract_zip && !looks_like_zip(pt.p, pt.len)) {
                        /* keylime_tenant -f sends any file; Keylime's agent keeps it as the
                         * decrypted payload when it is not an archive. A damaged zip (right
                         * signature, bad contents) still fails below. */
                        vg_info(VG_F("agent", st->uuid, "file", cfg->dec_payload_file),
                                "the payload is not a zip archive; delivered as %s without "
                                "extracting",
                                cfg->dec_payload_file);
                } else if (cfg->extract_zip) {
                        r = extract_zip(
                            staging, pt.p, pt.len,
                            cfg->max_unzipped_bytes ? cfg->max_unzipped_bytes : DEFAULT_MAX_BYTES,
                            cfg->max_entries ? cfg->max_entries : DEFAULT_MAX_ENTRIES, err);
                        if (r < 0) {
                                vg_error_prefix(err, "agent %s: ", st->uuid);
                                return r;
                        }
                }
        }
        chmod_action_scripts(dfd, st->uuid);
        return 0;
}

int vg_payload_install(struct vg_payload_state *st, const struct vg_payload_config *cfg,
                       bool *run_script, struct vg_error *err)
{
        _cleanup_close_ int sfd = -1;
        _cleanup_free_ char *staging = NULL, *unzipped = NULL;
        const char *script = cfg->payload_script;
        struct stat sb;
        int r;

        *run_script = false;
        if (!st->have_k)
                return vg_error_set(err, -EAGAIN, "agent %s: no payload key yet", st->uuid);
        if (st->delivered)
                return 0;
        if (!cfg->secure_dir || !safe_name(cfg->enc_keyname) || !safe_name(cfg->dec_payload_file) ||
            !strcmp(cfg->enc_keyname, cfg->dec_payload_file) ||
            (script && *script && !safe_name(script)))
                return vg_error_set(err, -EINVAL,
                                    "payload configuration: secure_dir must be "
                                    "set, and enc_keyname, dec_payload_file and payload_script "
                                    "must be distinct plain file names");
        if (mkdir(cfg->secure_dir, 0700) < 0 && errno != EEXIST)
                return vg_error_set(err, -errno, "%s: cannot create the secure directory: %m",
                                    cfg->secure_dir);
        sfd = open(cfg->secure_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0)
                return vg_error_set(err, -errno, "%s: expected a directory: %m", cfg->secure_dir);
        if (asprintf(&staging, "%s/.unzipped-XXXXXX", cfg->secure_dir) < 0 ||
            asprintf(&unzipped, "%s/unzipped", cfg->secure_dir) < 0)
                return -ENOMEM;
        if (!mkdtemp(staging))
                return vg_error_set(err, -errno, "%s: %m", staging);
        r = build_unzipped(st, cfg, staging, err);
        if (r == 0) {
                /* Replace the previous delivery as a whole: scripts see all files or none. */
                r = rm_tree_at(sfd, "unzipped");
                if (r == 0 && renameat(sfd, strrchr(staging, '/') + 1, sfd, "unzipped") < 0)
                        r = -errno;
                if (r < 0)
                        vg_error_set(err, r, "%s: cannot install the payload: %s", unzipped,
                                     strerror(-r));
        }
        if (r < 0) {
                rm_tree_at(sfd, strrchr(staging, '/') + 1);
                vg_err(VG_F("agent", st->uuid), "payload not delivered: %s", vg_error_str(err));
                return r;
        }
        st->delivered = true;
        vg_info(VG_F("agent", st->uuid, "dir", unzipped), "payload delivered");

        if (!script || !*script || fstatat(sfd, "unzipped", &sb, 0) < 0)
                return 0;
        {
                _cleanup_close_ int ufd = open(unzipped, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                if (ufd < 0 || fstatat(ufd, script, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISREG(sb.st_mode))
                        return 0;
        }
        if (!cfg->allow_script) {
                vg_notice(VG_F("agent", st->uuid, "script", script),
                          "payload script not run: it needs mTLS or enable_insecure_payload");
                return 0;
        }
        *run_script = true;
        return 0;
}

int vg_payload_run_script(const struct vg_payload_state *st, const struct vg_payload_config *cfg,
                          int *script_status, struct vg_error *err)
{
        _cleanup_free_ char *unzipped = NULL;
        const char *script = cfg->payload_script;
        char sh[] = "/bin/sh";
        char *argv[] = { sh, (char *)script, NULL };
        int r;

        if (asprintf(&unzipped, "%s/unzipped", cfg->secure_dir) < 0)
                return -ENOMEM;
        r = vg_run_confined(unzipped, argv, cfg->script_timeout_s, script_status);
        if (r < 0)
                return vg_error_set(err, r, "%s/%s: cannot run: %s", unzipped, script,
                                    strerror(-r));
        if (*script_status == 0)
                vg_info(VG_F("agent", st->uuid, "script", script), "payload script succeeded");
        else
                vg_warn(VG_F("agent", st->uuid, "script", script),
                        "payload script failed with status %d", *script_status);
        return 0;
}

int vg_payload_deliver(struct vg_payload_state *st, const struct vg_payload_config *cfg,
                       int *script_status, struct vg_error *err)
{
        bool run = false;
        int r;

        *script_status = -1;
        r = vg_payload_install(st, cfg, &run, err);
        if (r < 0 || !run)
                return r;
        return vg_payload_run_script(st, cfg, script_status, err);
}

/* ---- Child processes ----------------------------------------------------------------------- */

static long long now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vg_run_confined(const char *dir, char *const argv[], unsigned timeout_s, int *status)
{
        char env_path[] = CLEAN_PATH;
        char *envp[] = { env_path, NULL };
        long long deadline;
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        sigset_t none;
        pid_t pid;
        int ws = 0;

        *status = -1;
        sigemptyset(&none);
        sigemptyset(&dfl.sa_mask);
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                /* Only async-signal-safe calls from here: the agent may have threads. */
                int fd;

                setpgid(0, 0);
                /* The agent may block or ignore signals (SIGPIPE); both survive execve. */
                sigaction(SIGPIPE, &dfl, NULL);
                sigprocmask(SIG_SETMASK, &none, NULL);
                if (chdir(dir) < 0)
                        _exit(126);
                fd = open("/dev/null", O_RDONLY);
                if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
                        _exit(126);
                close_range(3, ~0u, 0);
                execve(argv[0], argv, envp);
                _exit(127);
        }
        /* Also from the parent, so the group exists before we might signal it. */
        setpgid(pid, pid);
        deadline = now_ms() + 1000LL * (timeout_s ? timeout_s : DEFAULT_TIMEOUT_S);
        for (;;) {
                pid_t w = waitpid(pid, &ws, WNOHANG);

                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR)
                        return -errno;
                if (now_ms() >= deadline) {
                        vg_warn(VG_F("program", argv[1] ? argv[1] : argv[0]), "killed after %u s",
                                timeout_s ? timeout_s : DEFAULT_TIMEOUT_S);
                        kill(-pid, SIGKILL);
                        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
                                ;
                        break;
                }
                nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
        if (WIFEXITED(ws))
                *status = WEXITSTATUS(ws);
        else if (WIFSIGNALED(ws))
                *status = 128 + WTERMSIG(ws);
        return 0;
}

/* ---- Tenant side --------------------------------------------------------------------------- */

int vg_payload_bundle_new(const void *data, size_t len, const char *uuid,
                          struct vg_payload_bundle *out, struct vg_error *err)
{
        _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *ctx = NULL;
        _cleanup_free_ uint8_t *blob = NULL;
        uint8_t mac[48], *iv;
        int n = 0, fin = 0;

        memset(out, 0, sizeof(*out));
        if (!uuid || len > INT_MAX - 64)
                return vg_error_set(err, -EINVAL,
                                    "payload bundle: uuid missing or data too "
                                    "large");
        if (RAND_priv_bytes(out->k, sizeof(out->k)) != 1 ||
            RAND_priv_bytes(out->v, sizeof(out->v)) != 1)
                return vg_error_set(err, -EIO, "payload bundle: no randomness");
        for (size_t i = 0; i < sizeof(out->k); i++)
                out->u[i] = out->k[i] ^ out->v[i];
        if (hmac_sha384(out->k, sizeof(out->k), uuid, strlen(uuid), mac) < 0) {
                vg_payload_bundle_clear(out);
                return vg_error_set(err, -EIO, "payload bundle: HMAC failed");
        }
        for (size_t i = 0; i < sizeof(mac); i++)
                snprintf(out->auth_tag_hex + 2 * i, 3, "%02x", mac[i]);
        if (!data)
                return 0;
        blob = malloc(GCM_IV_SIZE + len + GCM_TAG_SIZE);
        ctx = EVP_CIPHER_CTX_new();
        if (!blob || !ctx) {
                vg_payload_bundle_clear(out);
                return -ENOMEM;
        }
        iv = blob;
        if (RAND_bytes(iv, GCM_IV_SIZE) != 1 ||
            EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, GCM_IV_SIZE, NULL) != 1 ||
            EVP_EncryptInit_ex(ctx, NULL, NULL, out->k, iv) != 1 ||
            EVP_EncryptUpdate(ctx, blob + GCM_IV_SIZE, &n, data, (int)len) != 1 ||
            EVP_EncryptFinal_ex(ctx, blob + GCM_IV_SIZE + n, &fin) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, GCM_TAG_SIZE,
                                blob + GCM_IV_SIZE + n + fin) != 1) {
                vg_payload_bundle_clear(out);
                return vg_error_set(err, -EIO, "payload bundle: AES-256-GCM failed");
        }
        out->payload_b64 =
            vg_b64_encode(blob, GCM_IV_SIZE + (size_t)(n + fin) + GCM_TAG_SIZE, VG_B64_STD);
        if (!out->payload_b64) {
                vg_payload_bundle_clear(out);
                return -ENOMEM;
        }
        return 0;
}

void vg_payload_bundle_clear(struct vg_payload_bundle *b)
{
        free(b->payload_b64);
        OPENSSL_cleanse(b, sizeof(*b));
}

int vg_payload_encrypt_half(EVP_PKEY *nk_pub, const uint8_t half[VG_PAYLOAD_KEY_SIZE],
                            char **out_b64, struct vg_error *err)
{
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        _cleanup_free_ uint8_t *ct = NULL;
        size_t ct_len = 0;

        *out_b64 = NULL;
        if (!nk_pub || !EVP_PKEY_is_a(nk_pub, "RSA"))
                return vg_error_set(err, -EINVAL, "expected an RSA NK public key");
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, nk_pub, NULL);
        if (!ctx || EVP_PKEY_encrypt_init(ctx) != 1 || oaep_ctx(ctx) < 0 ||
            EVP_PKEY_encrypt(ctx, NULL, &ct_len, half, VG_PAYLOAD_KEY_SIZE) != 1)
                return vg_error_set(err, -EINVAL, "cannot set up RSA-OAEP-SHA1 to the NK");
        ct = malloc(ct_len);
        if (!ct)
                return -ENOMEM;
        if (EVP_PKEY_encrypt(ctx, ct, &ct_len, half, VG_PAYLOAD_KEY_SIZE) != 1)
                return vg_error_set(err, -EIO, "RSA-OAEP-SHA1 encryption failed");
        *out_b64 = vg_b64_encode(ct, ct_len, VG_B64_STD);
        return *out_b64 ? 0 : -ENOMEM;
}
