/* vigil: byte encodings used on the wire: base64 (RFC 4648 standard and URL-safe, the latter
 * unpadded as JOSE wants), hex, and a constant-time comparison for MACs and tags. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vg_b64_variant {
        VG_B64_STD, /* A-Z a-z 0-9 + /, '=' padding */
        VG_B64_URL, /* A-Z a-z 0-9 - _, no padding (RFC 7515 base64url) */
};

/* Length of the encoding of n bytes, without the terminating NUL. */
size_t vg_b64_encoded_len(size_t n, enum vg_b64_variant v);
/* Encode into a new NUL-terminated string; NULL on allocation failure. */
char *vg_b64_encode(const void *data, size_t len, enum vg_b64_variant v);
/* Decode a base64 string of length len into a new buffer (*out, *out_len; *out is
 * NUL-terminated for convenience). STD accepts padding and requires it to be correct; URL
 * accepts it absent or present. Whitespace and characters of the other alphabet are refused:
 * -EINVAL. */
int vg_b64_decode(const char *s, size_t len, enum vg_b64_variant v, uint8_t **out, size_t *out_len);

/* Lower-case hex of len bytes into a new string. */
char *vg_hex_encode(const void *data, size_t len);
/* Hex (either case) to bytes; odd length or a non-hex character is -EINVAL. */
int vg_hex_decode(const char *s, size_t len, uint8_t **out, size_t *out_len);
/* Decode into a caller buffer that must be exactly len/2 == want bytes. */
int vg_hex_decode_exact(const char *s, size_t len, uint8_t *out, size_t want);

/* The value of one hex digit (either case), or -1. */
int vg_hex_digit_value(int c);

/* Compare in time that depends only on len (CRYPTO_memcmp). */
bool vg_ct_equal(const void *a, const void *b, size_t len);
