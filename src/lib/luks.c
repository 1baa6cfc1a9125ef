/* vigil: Clevis bindings of LUKS2 volumes on libcryptsetup: the token format clevis's
 * clevis-luks-common-functions writes (reference/tang.md 2.4), bind/unbind/list/pass/rebind. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cleanup.h"
#include "dl_cryptsetup.h"
#include "encoding.h"
#include "jwe.h"
#include "luks.h"

_Static_assert(VG_LUKS_ANY == CRYPT_ANY_SLOT && VG_LUKS_ANY == CRYPT_ANY_TOKEN,
               "VG_LUKS_ANY is libcryptsetup's 'any'");

struct vg_luks {
        struct crypt_device *cd;
        char *path;
        char last_error[256]; /* libcryptsetup's last error message, for ours */
};

static void free_secret_str(char **p)
{
        if (*p) {
                OPENSSL_cleanse(*p, strlen(*p));
                free(*p);
        }
}
#define _cleanup_secret_str_ _cleanup_(free_secret_str)

/* libcryptsetup reports what went wrong through its log; keep the last error for our message
 * instead of letting it print. */
static void log_cb(int level, const char *msg, void *usrptr)
{
        struct vg_luks *l = usrptr;
        size_t n;

        if (level != CRYPT_LOG_ERROR || !msg)
                return;
        snprintf(l->last_error, sizeof(l->last_error), "%s", msg);
        n = strlen(l->last_error);
        while (n > 0 && (l->last_error[n - 1] == '\n' || l->last_error[n - 1] == '.'))
                l->last_error[--n] = '\0';
}

/* The cause of a libcryptsetup failure r: its own message when it logged one. */
static const char *cause(struct vg_luks *l, int r)
{
        return l->last_error[0] ? l->last_error : strerror(-r);
}

static int max_slots(void)
{
        return crypt_keyslot_max(CRYPT_LUKS2);
}

static int max_tokens(void)
{
        return crypt_token_max(CRYPT_LUKS2);
}

int vg_luks_open(const char *path, struct vg_luks **out, struct vg_error *err)
{
        _cleanup_(vg_luks_freep) struct vg_luks *l = calloc(1, sizeof(*l));
        const char *type;
        int r;

        if (!l || !(l->path = strdup(path)))
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = vg_dl_cryptsetup_load(err);
        if (r < 0)
                return r;
        r = crypt_init(&l->cd, path);
        if (r < 0)
                return vg_error_set(err, r, "%s: cannot open: %s", path, strerror(-r));
        crypt_set_log_callback(l->cd, log_cb, l);
        r = crypt_load(l->cd, CRYPT_LUKS, NULL);
        if (r < 0)
                return vg_error_set(err, r, "%s: not a LUKS volume (%s)", path, cause(l, r));
        type = crypt_get_type(l->cd);
        if (!type || strcmp(type, CRYPT_LUKS2) != 0)
                return vg_error_set(err, -ENOTSUP,
                                    "%s is a %s volume; vigil luks handles LUKS2 only", path,
                                    type ? type : "unknown");
        *out = TAKE_PTR(l);
        return 0;
}

void vg_luks_free(struct vg_luks *luks)
{
        if (!luks)
                return;
        if (luks->cd) /* NULL when libcryptsetup could not be loaded */
                crypt_free(luks->cd);
        free(luks->path);
        free(luks);
}

const char *vg_luks_path(const struct vg_luks *luks)
{
        return luks->path;
}

void vg_luks_binding_clear(struct vg_luks_binding *b)
{
        free(b->jwe);
        *b = (struct vg_luks_binding){ .slot = -1, .token = -1 };
}

/* ---- tokens ---- */

/* A keyslot number as LUKS2 writes it in JSON: a decimal string without sign or leading
 * zeros, below the LUKS2 maximum. */
static int parse_slot_str(const char *s)
{
        long v = 0;

        if (!s || !*s || strlen(s) > 3 || (s[0] == '0' && s[1]))
                return -1;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -1;
                v = v * 10 + (*p - '0');
        }
        return v < max_slots() ? (int)v : -1;
}

/* The "keyslots" of a clevis token object; -ENOENT when it is not a clevis token. */
static int token_slots(const json_t *tok, int **slots, size_t *n_slots, struct vg_error *err)
{
        const json_t *type, *ks, *v;
        _cleanup_free_ int *arr = NULL;
        size_t i;

        if (!json_is_object(tok))
                return vg_error_set(err, -EINVAL, "token: not a JSON object");
        type = json_object_get(tok, "type");
        if (!json_is_string(type))
                return vg_error_set(err, -EINVAL, "token type: missing or not a string");
        if (strcmp(json_string_value(type), VG_LUKS_TOKEN_TYPE) != 0)
                return vg_error_set(err, -ENOENT, "token type: \"%s\", not \"clevis\"",
                                    json_string_value(type));
        ks = json_object_get(tok, "keyslots");
        if (!json_is_array(ks))
                return vg_error_set(err, -EINVAL, "token keyslots: missing or not an array");
        if (json_array_size(ks) > (size_t)max_slots())
                return vg_error_set(err, -EINVAL, "token keyslots: %zu entries, at most %d",
                                    json_array_size(ks), max_slots());
        arr = calloc(json_array_size(ks) + 1, sizeof(*arr));
        if (!arr)
                return vg_error_set(err, -ENOMEM, "out of memory");
        json_array_foreach (ks, i, v) {
                arr[i] = json_is_string(v) ? parse_slot_str(json_string_value(v)) : -1;
                if (arr[i] < 0)
                        return vg_error_set(err, -EINVAL,
                                            "token keyslots[%zu]: not a keyslot number "
                                            "(a string \"0\"..\"%d\")",
                                            i, max_slots() - 1);
        }
        *slots = TAKE_PTR(arr);
        *n_slots = json_array_size(ks);
        return 0;
}

/* The "jwe" of a clevis token, in compact form. */
static int token_jwe(const json_t *tok, char **jwe, struct vg_error *err)
{
        const json_t *j = json_object_get(tok, "jwe");
        struct vg_jwe parsed = { 0 };
        int r;

        if (!json_is_object(j))
                return vg_error_set(err, -EINVAL, "token jwe: missing or not a JSON object");
        r = vg_jwe_parse_json(j, &parsed, err);
        if (r < 0) {
                vg_error_prefix(err, "token jwe: ");
                return r;
        }
        *jwe = vg_jwe_compact(&parsed);
        vg_jwe_clear(&parsed);
        return *jwe ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
}

int vg_luks_token_parse(const char *json, int **slots, size_t *n_slots, char **jwe,
                        struct vg_error *err)
{
        json_error_t jerr;
        json_auto_t *tok = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
        _cleanup_free_ int *s = NULL;
        size_t n = 0;
        int r;

        r = vg_dl_cryptsetup_load(err); /* for max_slots() */
        if (r < 0)
                return r;
        if (!tok)
                return vg_error_set(err, -EINVAL, "token: not JSON: %s (line %d)", jerr.text,
                                    jerr.line);
        r = token_slots(tok, &s, &n, err);
        if (r < 0)
                return r;
        r = token_jwe(tok, jwe, err);
        if (r < 0)
                return r;
        *slots = TAKE_PTR(s);
        *n_slots = n;
        return 0;
}

int vg_luks_token_build(int slot, const char *jwe, char **json, struct vg_error *err)
{
        struct vg_jwe parsed = { 0 };
        json_auto_t *tok = NULL;
        json_t *j;
        char num[16];
        int r;

        r = vg_dl_cryptsetup_load(err); /* for max_slots() */
        if (r < 0)
                return r;
        if (slot < 0 || slot >= max_slots())
                return vg_error_set(err, -EINVAL, "keyslot %d out of range 0..%d", slot,
                                    max_slots() - 1);
        r = vg_jwe_parse(jwe, strlen(jwe), &parsed, err);
        if (r < 0)
                return r;
        j = vg_jwe_json(&parsed);
        vg_jwe_clear(&parsed);
        snprintf(num, sizeof(num), "%d", slot);
        tok = json_pack("{s:s, s:[s], s:o}", "type", VG_LUKS_TOKEN_TYPE, "keyslots", num, "jwe", j);
        if (!tok || !(*json = json_dumps(tok, JSON_COMPACT)))
                return vg_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

/* ---- keyslots and their tokens ---- */

int vg_luks_slot_active(struct vg_luks *luks, int slot, struct vg_error *err)
{
        crypt_keyslot_info st;

        if (slot < 0 || slot >= max_slots())
                return vg_error_set(err, -EINVAL, "%s: keyslot %d out of range 0..%d", luks->path,
                                    slot, max_slots() - 1);
        st = crypt_keyslot_status(luks->cd, slot);
        return st == CRYPT_SLOT_ACTIVE || st == CRYPT_SLOT_ACTIVE_LAST;
}

/*
 * The clevis token that lists slot: *token (-1 when there is none) and, when its JWE reads,
 * *jwe. A token that lists slot but whose JWE does not read gives its error in jwe_err (and
 * *jwe NULL): unbind still removes such a token, list and pass report it.
 */
static int find_token(struct vg_luks *l, int slot, int *token, char **jwe, struct vg_error *jwe_err)
{
        *token = -1;
        *jwe = NULL;
        for (int t = 0; t < max_tokens(); t++) {
                const char *type = NULL, *text = NULL;
                json_auto_t *tok = NULL;
                _cleanup_free_ int *slots = NULL;
                size_t n = 0;
                bool listed = false;
                struct vg_error e = { 0 };

                if (crypt_token_status(l->cd, t, &type) == CRYPT_TOKEN_INACTIVE || !type ||
                    strcmp(type, VG_LUKS_TOKEN_TYPE) != 0)
                        continue;
                if (crypt_token_json_get(l->cd, t, &text) < 0 || !text)
                        continue;
                tok = json_loads(text, 0, NULL);
                if (!tok || token_slots(tok, &slots, &n, &e) < 0)
                        continue; /* libcryptsetup validated the keyslots; not ours to judge */
                for (size_t i = 0; i < n; i++)
                        listed |= slots[i] == slot;
                if (!listed)
                        continue;
                *token = t;
                if (token_jwe(tok, jwe, jwe_err) < 0)
                        vg_error_prefix(jwe_err, "%s: token %d (keyslot %d): ", l->path, t, slot);
                return 0;
        }
        return 0;
}

int vg_luks_binding(struct vg_luks *luks, int slot, struct vg_luks_binding *out,
                    struct vg_error *err)
{
        int r, token;
        char *jwe = NULL;

        r = vg_luks_slot_active(luks, slot, err);
        if (r < 0)
                return r;
        if (r == 0)
                return vg_error_set(err, -ENOENT, "%s: keyslot %d is not in use", luks->path, slot);
        r = find_token(luks, slot, &token, &jwe, err);
        if (r < 0)
                return r;
        if (token < 0)
                return vg_error_set(err, -ENOENT, "%s: keyslot %d has no clevis token", luks->path,
                                    slot);
        if (!jwe)
                return err ? err->code : -EINVAL;
        *out = (struct vg_luks_binding){ .slot = slot, .token = token, .jwe = jwe };
        return 0;
}

int vg_luks_list(struct vg_luks *luks, struct vg_luks_binding **out, char ***errors, size_t *n,
                 struct vg_error *err)
{
        int max = max_slots();
        struct vg_luks_binding *b = calloc((size_t)max, sizeof(*b));
        char **e = calloc((size_t)max, sizeof(*e));
        size_t k = 0;

        if (!b || !e) {
                free(b);
                free(e);
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        for (int s = 0; s < max; s++) {
                struct vg_error je = { 0 };
                char *jwe = NULL;
                int token;

                if (vg_luks_slot_active(luks, s, NULL) <= 0)
                        continue;
                find_token(luks, s, &token, &jwe, &je);
                if (token < 0)
                        continue;
                b[k] = (struct vg_luks_binding){ .slot = s, .token = token, .jwe = jwe };
                e[k] = jwe ? NULL : strdup(vg_error_str(&je));
                k++;
        }
        *out = b;
        *errors = e;
        *n = k;
        return 0;
}

/* ---- passphrases ---- */

/* A new binding passphrase: base64url of VG_LUKS_KEY_BYTES random bytes. */
static int new_passphrase(char **out, struct vg_error *err)
{
        unsigned char raw[VG_LUKS_KEY_BYTES];

        if (RAND_bytes(raw, sizeof(raw)) != 1)
                return vg_error_set(err, -EIO, "no random bytes from OpenSSL");
        *out = vg_b64_encode(raw, sizeof(raw), VG_B64_URL);
        OPENSSL_cleanse(raw, sizeof(raw));
        return *out ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
}

/* Keyslots for bindings: PBKDF2 as clevis makes them (VG_LUKS_PBKDF_ITERATIONS). */
static int set_binding_pbkdf(struct vg_luks *l, struct vg_error *err)
{
        const struct crypt_pbkdf_type pbkdf = {
                .type = CRYPT_KDF_PBKDF2,
                .hash = "sha256",
                .iterations = VG_LUKS_PBKDF_ITERATIONS,
                .flags = CRYPT_PBKDF_NO_BENCHMARK,
        };
        int r = crypt_set_pbkdf_type(l->cd, &pbkdf);

        return r < 0 ? vg_error_set(err, r, "%s: cannot set the PBKDF: %s", l->path, cause(l, r))
                     : 0;
}

static int decrypt_binding(struct vg_luks *l, const struct vg_luks_binding *b,
                           const struct vg_pin_opts *opts, char **pass, struct vg_error *err)
{
        uint8_t *pt = NULL;
        size_t len = 0;
        int r = vg_pin_decrypt(b->jwe, strlen(b->jwe), opts, &pt, &len, err);

        if (r < 0) {
                vg_error_prefix(err, "%s: keyslot %d: ", l->path, b->slot);
                return r;
        }
        if (len == 0 || memchr(pt, '\0', len)) {
                OPENSSL_cleanse(pt, len);
                free(pt);
                return vg_error_set(err, -EBADMSG,
                                    "%s: keyslot %d: the token decrypts to %s, not a passphrase",
                                    l->path, b->slot, len ? "binary data" : "nothing");
        }
        *pass = (char *)pt;
        return 0;
}

int vg_luks_pass(struct vg_luks *luks, int slot, const struct vg_pin_opts *opts, char **pass,
                 struct vg_error *err)
{
        struct vg_luks_binding b = { 0 };
        _cleanup_secret_str_ char *pt = NULL;
        int r;

        r = vg_luks_binding(luks, slot, &b, err);
        if (r < 0)
                return r;
        r = decrypt_binding(luks, &b, opts, &pt, err);
        vg_luks_binding_clear(&b);
        if (r < 0)
                return r;
        luks->last_error[0] = '\0';
        r = crypt_activate_by_passphrase(luks->cd, NULL, slot, pt, strlen(pt), 0);
        if (r < 0)
                return vg_error_set(err, r,
                                    "%s: keyslot %d: the passphrase recovered from token %d "
                                    "does not open the keyslot (%s)",
                                    luks->path, slot, b.token, cause(luks, r));
        *pass = TAKE_PTR(pt);
        return 0;
}

/* ---- bind, unbind, rebind ---- */

/* Remove clevis tokens bound to no keyslot, as clevis_luks2_save_slot does. */
static void remove_orphans(struct vg_luks *l)
{
        for (int t = 0; t < max_tokens(); t++) {
                const char *type = NULL, *text = NULL;
                json_auto_t *tok = NULL;
                const json_t *ks;

                if (crypt_token_status(l->cd, t, &type) == CRYPT_TOKEN_INACTIVE || !type ||
                    strcmp(type, VG_LUKS_TOKEN_TYPE) != 0)
                        continue;
                if (crypt_token_json_get(l->cd, t, &text) < 0 || !(tok = json_loads(text, 0, NULL)))
                        continue;
                ks = json_object_get(tok, "keyslots");
                if (json_is_array(ks) && json_array_size(ks) == 0)
                        crypt_token_json_set(l->cd, t, NULL);
        }
}

int vg_luks_bind(struct vg_luks *luks, int slot, int token, const void *key, size_t key_len,
                 const char *pin, const json_t *cfg, const struct vg_pin_opts *opts, int *slot_out,
                 struct vg_error *err)
{
        _cleanup_secret_str_ char *pass = NULL;
        _cleanup_free_ char *jwe = NULL, *json = NULL;
        _cleanup_free_ char *vk = NULL;
        size_t vk_size;
        int r, ks, t;

        if (slot != VG_LUKS_ANY) {
                r = vg_luks_slot_active(luks, slot, err);
                if (r < 0)
                        return r;
                if (r > 0)
                        return vg_error_set(err, -EEXIST, "%s: keyslot %d is in use", luks->path,
                                            slot);
        }
        if (token != VG_LUKS_ANY) {
                if (token < 0 || token >= max_tokens())
                        return vg_error_set(err, -EINVAL, "%s: token %d out of range 0..%d",
                                            luks->path, token, max_tokens() - 1);
                if (crypt_token_status(luks->cd, token, NULL) != CRYPT_TOKEN_INACTIVE)
                        return vg_error_set(err, -EEXIST, "%s: token %d is in use", luks->path,
                                            token);
        }
        if (slot == VG_LUKS_ANY) {
                for (int s = 0; s < max_slots() && slot < 0; s++)
                        if (crypt_keyslot_status(luks->cd, s) == CRYPT_SLOT_INACTIVE)
                                slot = s;
                if (slot < 0)
                        return vg_error_set(err, -ENOSPC, "%s: no free keyslot", luks->path);
        }

        /* The existing passphrase first: nothing else is worth doing without it. */
        r = crypt_get_volume_key_size(luks->cd);
        if (r <= 0)
                return vg_error_set(err, -EINVAL, "%s: unknown volume key size", luks->path);
        vk_size = (size_t)r;
        vk = malloc(vk_size);
        if (!vk)
                return vg_error_set(err, -ENOMEM, "out of memory");
        luks->last_error[0] = '\0';
        r = crypt_volume_key_get(luks->cd, CRYPT_ANY_SLOT, vk, &vk_size, key, key_len);
        if (r < 0) {
                OPENSSL_cleanse(vk, vk_size);
                if (r == -EPERM)
                        return vg_error_set(err, r, "%s: the existing passphrase opens no keyslot",
                                            luks->path);
                return vg_error_set(err, r, "%s: cannot unlock: %s", luks->path, cause(luks, r));
        }

        /* Then the pin (network, TPM): the header is untouched if it fails. */
        r = new_passphrase(&pass, err);
        if (r >= 0)
                r = vg_pin_encrypt(pin, cfg, pass, strlen(pass), opts, &jwe, err);
        if (r < 0) {
                OPENSSL_cleanse(vk, vk_size);
                if (r != -ENOMEM && err)
                        vg_error_prefix(err, "%s: pin %s: ", luks->path, pin);
                return r;
        }
        r = vg_luks_token_build(slot, jwe, &json, err);
        if (r >= 0)
                r = set_binding_pbkdf(luks, err);
        if (r < 0) {
                OPENSSL_cleanse(vk, vk_size);
                return r;
        }

        remove_orphans(luks);
        luks->last_error[0] = '\0';
        ks = crypt_keyslot_add_by_volume_key(luks->cd, slot, vk, vk_size, pass, strlen(pass));
        OPENSSL_cleanse(vk, vk_size);
        if (ks < 0)
                return vg_error_set(err, ks, "%s: cannot add keyslot %d: %s", luks->path, slot,
                                    cause(luks, ks));
        luks->last_error[0] = '\0';
        t = crypt_token_json_set(luks->cd, token, json);
        if (t < 0) {
                vg_error_set(err, t, "%s: cannot store the clevis token for keyslot %d: %s",
                             luks->path, ks, cause(luks, t));
                crypt_keyslot_destroy(luks->cd, ks);
                return t;
        }
        if (slot_out)
                *slot_out = ks;
        return 0;
}

int vg_luks_unbind(struct vg_luks *luks, int slot, struct vg_error *err)
{
        struct vg_error jwe_err = { 0 };
        _cleanup_free_ char *jwe = NULL;
        int r, token;

        r = vg_luks_slot_active(luks, slot, err);
        if (r < 0)
                return r;
        find_token(luks, slot, &token, &jwe, &jwe_err);
        if (token < 0)
                return vg_error_set(err, -ENOENT, "%s: keyslot %d has no clevis token", luks->path,
                                    slot);
        if (r > 0) {
                if (crypt_keyslot_status(luks->cd, slot) == CRYPT_SLOT_ACTIVE_LAST)
                        return vg_error_set(err, -EBUSY,
                                            "%s: keyslot %d is the last keyslot; without it "
                                            "nothing would open the volume",
                                            luks->path, slot);
                luks->last_error[0] = '\0';
                r = crypt_keyslot_destroy(luks->cd, slot);
                if (r < 0)
                        return vg_error_set(err, r, "%s: cannot destroy keyslot %d: %s", luks->path,
                                            slot, cause(luks, r));
        }
        luks->last_error[0] = '\0';
        r = crypt_token_json_set(luks->cd, token, NULL);
        if (r < 0)
                return vg_error_set(err, r, "%s: keyslot %d destroyed, but token %d stays: %s",
                                    luks->path, slot, token, cause(luks, r));
        return 0;
}

int vg_luks_rebind(struct vg_luks *luks, int slot, const char *pin, const json_t *cfg,
                   const struct vg_pin_opts *opts, struct vg_error *err)
{
        struct vg_luks_binding b = { 0 };
        _cleanup_secret_str_ char *old = NULL, *pass = NULL;
        _cleanup_free_ char *cur_pin = NULL, *jwe = NULL, *json = NULL, *old_json = NULL;
        json_auto_t *cur_cfg = NULL;
        const char *text = NULL;
        int r;

        r = vg_luks_binding(luks, slot, &b, err);
        if (r < 0)
                return r;
        r = vg_pin_config(b.jwe, strlen(b.jwe), &cur_pin, &cur_cfg, err);
        if (r < 0) {
                vg_error_prefix(err, "%s: keyslot %d: ", luks->path, slot);
                goto out;
        }
        r = decrypt_binding(luks, &b, opts, &old, err);
        if (r < 0)
                goto out;
        if (!pin)
                pin = cur_pin;
        if (!cfg)
                cfg = cur_cfg;

        r = new_passphrase(&pass, err);
        if (r < 0)
                goto out;
        r = vg_pin_encrypt(pin, cfg, pass, strlen(pass), opts, &jwe, err);
        if (r < 0) {
                vg_error_prefix(err, "%s: keyslot %d: pin %s: ", luks->path, slot, pin);
                goto out;
        }
        r = vg_luks_token_build(slot, jwe, &json, err);
        if (r < 0)
                goto out;
        if (crypt_token_json_get(luks->cd, b.token, &text) < 0 || !text ||
            !(old_json = strdup(text))) {
                r = vg_error_set(err, -EIO, "%s: token %d vanished", luks->path, b.token);
                goto out;
        }
        r = set_binding_pbkdf(luks, err);
        if (r < 0)
                goto out;

        luks->last_error[0] = '\0';
        r = crypt_keyslot_change_by_passphrase(luks->cd, slot, slot, old, strlen(old), pass,
                                               strlen(pass));
        if (r < 0) {
                vg_error_set(err, r, "%s: cannot change the passphrase of keyslot %d: %s",
                             luks->path, slot, cause(luks, r));
                goto out;
        }
        luks->last_error[0] = '\0';
        r = crypt_token_json_set(luks->cd, b.token, json);
        if (r < 0) {
                vg_error_set(err, r, "%s: cannot replace token %d of keyslot %d: %s", luks->path,
                             b.token, slot, cause(luks, r));
                /* Put the old passphrase (and the token that encrypts it) back. */
                if (crypt_keyslot_change_by_passphrase(luks->cd, slot, slot, pass, strlen(pass),
                                                       old, strlen(old)) < 0 ||
                    crypt_token_json_set(luks->cd, b.token, old_json) < 0)
                        vg_error_prefix(err,
                                        "keyslot %d NOT restored: no token recovers its "
                                        "passphrase now; open the volume with another keyslot "
                                        "and unbind it: ",
                                        slot);
                goto out;
        }
        r = 0;
out:
        vg_luks_binding_clear(&b);
        return r;
}
