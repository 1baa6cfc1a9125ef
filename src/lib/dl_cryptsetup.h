/* vigil: libcryptsetup loaded at run time (dlopen on first use), so that only `vigil luks` pays
 * for it and its dependencies (libdevmapper, libjson-c, ...): `vigil pin` starts without them.
 *
 * Include this instead of <libcryptsetup.h>: each crypt_*() the library uses becomes a call
 * through vg_dl_cryptsetup, the table vg_dl_cryptsetup_load() fills. Call that load at every
 * entry point before the first crypt_*() call; a crypt_*() call before a successful load is a
 * NULL call. */
#pragma once

#include <libcryptsetup.h>

#include "error.h"

/* The functions vigil uses; the table and the macros below list the same names. */
#define VG_DL_CRYPTSETUP_SYMBOLS(X)                                                                \
        X(crypt_activate_by_passphrase)                                                            \
        X(crypt_free)                                                                              \
        X(crypt_get_type)                                                                          \
        X(crypt_get_volume_key_size)                                                               \
        X(crypt_init)                                                                              \
        X(crypt_keyslot_add_by_volume_key)                                                         \
        X(crypt_keyslot_change_by_passphrase)                                                      \
        X(crypt_keyslot_destroy)                                                                   \
        X(crypt_keyslot_max)                                                                       \
        X(crypt_keyslot_status)                                                                    \
        X(crypt_load)                                                                              \
        X(crypt_set_log_callback)                                                                  \
        X(crypt_set_pbkdf_type)                                                                    \
        X(crypt_token_json_get)                                                                    \
        X(crypt_token_json_set)                                                                    \
        X(crypt_token_max)                                                                         \
        X(crypt_token_status)                                                                      \
        X(crypt_volume_key_get)

/* Pointers typed from the real prototypes: a signature change in the header is a compile
 * error here, not a crash at run time. */
struct vg_dl_cryptsetup_table {
#define VG_DL_FIELD_(f) __typeof__(&f) f;
        VG_DL_CRYPTSETUP_SYMBOLS(VG_DL_FIELD_)
#undef VG_DL_FIELD_
};

/* Written once under pthread_once by vg_dl_cryptsetup_load(), read-only after. */
extern struct vg_dl_cryptsetup_table vg_dl_cryptsetup;

/* Load the library (once per process; later calls return the first result). 0, or -ENOENT with
 * "libcryptsetup.so.12 not found: install libcryptsetup12 (vigil luks needs it)", or -ELIBBAD
 * when a function is missing from the library found. Thread-safe. */
int vg_dl_cryptsetup_load(struct vg_error *err);

#define crypt_activate_by_passphrase(...) vg_dl_cryptsetup.crypt_activate_by_passphrase(__VA_ARGS__)
#define crypt_free(...)                   vg_dl_cryptsetup.crypt_free(__VA_ARGS__)
#define crypt_get_type(...)               vg_dl_cryptsetup.crypt_get_type(__VA_ARGS__)
#define crypt_get_volume_key_size(...)    vg_dl_cryptsetup.crypt_get_volume_key_size(__VA_ARGS__)
#define crypt_init(...)                   vg_dl_cryptsetup.crypt_init(__VA_ARGS__)
#define crypt_keyslot_add_by_volume_key(...)                                                       \
        vg_dl_cryptsetup.crypt_keyslot_add_by_volume_key(__VA_ARGS__)
#define crypt_keyslot_change_by_passphrase(...)                                                    \
        vg_dl_cryptsetup.crypt_keyslot_change_by_passphrase(__VA_ARGS__)
#define crypt_keyslot_destroy(...)  vg_dl_cryptsetup.crypt_keyslot_destroy(__VA_ARGS__)
#define crypt_keyslot_max(...)      vg_dl_cryptsetup.crypt_keyslot_max(__VA_ARGS__)
#define crypt_keyslot_status(...)   vg_dl_cryptsetup.crypt_keyslot_status(__VA_ARGS__)
#define crypt_load(...)             vg_dl_cryptsetup.crypt_load(__VA_ARGS__)
#define crypt_set_log_callback(...) vg_dl_cryptsetup.crypt_set_log_callback(__VA_ARGS__)
#define crypt_set_pbkdf_type(...)   vg_dl_cryptsetup.crypt_set_pbkdf_type(__VA_ARGS__)
#define crypt_token_json_get(...)   vg_dl_cryptsetup.crypt_token_json_get(__VA_ARGS__)
#define crypt_token_json_set(...)   vg_dl_cryptsetup.crypt_token_json_set(__VA_ARGS__)
#define crypt_token_max(...)        vg_dl_cryptsetup.crypt_token_max(__VA_ARGS__)
#define crypt_token_status(...)     vg_dl_cryptsetup.crypt_token_status(__VA_ARGS__)
#define crypt_volume_key_get(...)   vg_dl_cryptsetup.crypt_volume_key_get(__VA_ARGS__)
