/* vigil: Clevis bindings of LUKS2 volumes through libcryptsetup. A binding is a keyslot whose
 * passphrase (a random 320-bit key) is encrypted with a pin, stored as a LUKS2 token
 * {"type":"clevis","keyslots":["N"],"jwe":{flattened JWE}} (reference/tang.md 2.4), so volumes
 * bound by `clevis luks bind` and by vigil are interchangeable. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cleanup.h"
#include "error.h"
#include "pin.h"

/* The type of a Clevis LUKS2 token. */
#define VG_LUKS_TOKEN_TYPE "clevis"
/* The passphrase of a binding: base64url of this many random bytes (54 characters), the "k"
 * of `jose jwk gen -i '{"kty":"oct","bytes":40}'` (clevis 19 uses pwmake instead). */
#define VG_LUKS_KEY_BYTES 40
/* Keyslots made for bindings use PBKDF2-SHA256 with this many iterations, as clevis's do: the
 * passphrase is a random 320-bit key, so stretching it adds nothing but unlock time. */
#define VG_LUKS_PBKDF_ITERATIONS 1000
/* "Any free keyslot" / "any free token id" (libcryptsetup's CRYPT_ANY_SLOT, CRYPT_ANY_TOKEN). */
#define VG_LUKS_ANY (-1)

struct vg_luks;

/* Open the LUKS2 volume at path (a block device or an image file). Errors: not found, not
 * LUKS, LUKS1 ("DEV is a LUKS1 volume; vigil luks handles LUKS2 only"). */
int vg_luks_open(const char *path, struct vg_luks **out, struct vg_error *err);
void vg_luks_free(struct vg_luks *luks);
VG_DEFINE_CLEANUP_FUNC(struct vg_luks, vg_luks_free)
const char *vg_luks_path(const struct vg_luks *luks);

/* One keyslot's Clevis binding. */
struct vg_luks_binding {
        int slot;
        int token;
        char *jwe; /* compact serialization */
};
void vg_luks_binding_clear(struct vg_luks_binding *b);

/*
 * Parse a LUKS2 token's JSON text as a Clevis token: "type" "clevis", "keyslots" an array of
 * decimal strings (*slots and *n_slots, a new array, may be empty: an orphan token), "jwe" a
 * flattened JSON JWE (*jwe: its compact form, a new string). Errors name the member:
 * "token keyslots[0]: not a keyslot number ...", "token jwe: JWE iv: ...". A token of
 * another type gives -ENOENT.
 */
int vg_luks_token_parse(const char *json, int **slots, size_t *n_slots, char **jwe,
                        struct vg_error *err);
/* The token text for a binding of slot to the compact JWE (new string). */
int vg_luks_token_build(int slot, const char *jwe, char **json, struct vg_error *err);

/* Whether keyslot slot is in use; -EINVAL (with a message) when slot is out of range. */
int vg_luks_slot_active(struct vg_luks *luks, int slot, struct vg_error *err);
/* The binding of slot. Errors: "DEV: keyslot N is not in use", "DEV: keyslot N has no clevis
 * token" (-ENOENT), and a malformed token's error prefixed with "DEV: token T (keyslot N): ". */
int vg_luks_binding(struct vg_luks *luks, int slot, struct vg_luks_binding *out,
                    struct vg_error *err);

/*
 * The clevis luks list view: for each active keyslot with a clevis token, in slot order, a
 * binding in (*out)[i]; a token that cannot be read leaves slot set, jwe NULL and its error in
 * (*errors)[i] (a new string). *out and *errors are new arrays of *n entries.
 */
int vg_luks_list(struct vg_luks *luks, struct vg_luks_binding **out, char ***errors, size_t *n,
                 struct vg_error *err);

/* The passphrase a binding recovers (NUL-terminated, the caller's to free), after checking
 * that it opens its keyslot. Decryption errors say which servers failed and why. */
int vg_luks_pass(struct vg_luks *luks, int slot, const struct vg_pin_opts *opts, char **pass,
                 struct vg_error *err);

/*
 * Bind: unlock the volume with the existing passphrase key/key_len, make a new random
 * passphrase, encrypt it with pin and cfg, add it in keyslot slot (VG_LUKS_ANY: the first
 * free one) and store the token as token id token (VG_LUKS_ANY: the first free one). The
 * pin runs before the header is touched; if storing the token fails the new keyslot is
 * destroyed again. Orphan clevis tokens (no keyslots) are removed first, as clevis does.
 * *slot_out (may be NULL) is the keyslot used.
 */
int vg_luks_bind(struct vg_luks *luks, int slot, int token, const void *key, size_t key_len,
                 const char *pin, const json_t *cfg, const struct vg_pin_opts *opts, int *slot_out,
                 struct vg_error *err);

/* Unbind: destroy keyslot slot and remove its clevis token. Refuses when slot is the last
 * active keyslot (the volume would become unopenable) or has no clevis token. */
int vg_luks_unbind(struct vg_luks *luks, int slot, struct vg_error *err);

/*
 * Rebind slot in place (clevis luks edit / regen): recover its passphrase through the current
 * binding, make a new one, encrypt it with pin/cfg (NULL: those of the current binding, as
 * clevis luks list shows them: a regen), change the keyslot's passphrase and replace its token
 * (same token id). A failure after the keyslot changed puts the old passphrase back.
 */
int vg_luks_rebind(struct vg_luks *luks, int slot, const char *pin, const json_t *cfg,
                   const struct vg_pin_opts *opts, struct vg_error *err);
