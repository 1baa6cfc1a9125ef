/* vigil: base64 (standard and URL-safe), hex, constant-time compare. */
#include "encoding.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t vg_b64_encoded_len(size_t n, enum vg_b64_variant v)
{
        if (v == VG_B64_STD)
                return (n + 2) / 3 * 4;
        return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

char *vg_b64_encode(const void *data, size_t len, enum vg_b64_variant v)
{
        const char *alpha = v == VG_B64_URL ? b64_url : b64_std;
        const uint8_t *in = data;
        size_t outlen = vg_b64_encoded_len(len, v);
        char *out, *o;
        size_t i;

        if (len > (SIZE_MAX - 4) / 4 * 3)
                return NULL;
        out = malloc(outlen + 1);
        if (!out)
                return NULL;
        o = out;
        for (i = 0; i + 2 < len; i += 3) {
                uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
                *o++ = alpha[w >> 18 & 63];
                *o++ = alpha[w >> 12 & 63];
                *o++ = alpha[w >> 6 & 63];
                *o++ = alpha[w & 63];
        }
        if (i < len) {
                uint32_t w = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
                *o++ = alpha[w >> 18 & 63];
                *o++ = alpha[w >> 12 & 63];
                if (i + 1 < len)
                        *o++ = alpha[w >> 6 & 63];
                else if (v == VG_B64_STD)
                        *o++ = '=';
                if (v == VG_B64_STD)
                        *o++ = '=';
        }
        *o = '\0';
        return out;
}

/* Decoding tables: the 6-bit value of each byte, 0xff for bytes outside the alphabet. Written
 * once, under pthread_once, and only read afterwards. */
static uint8_t b64_table[2][256];
static pthread_once_t b64_table_once = PTHREAD_ONCE_INIT;

static void b64_table_init(void)
{
        memset(b64_table, 0xff, sizeof(b64_table));
        for (int i = 0; i < 64; i++) {
                b64_table[VG_B64_STD][(uint8_t)b64_std[i]] = (uint8_t)i;
                b64_table[VG_B64_URL][(uint8_t)b64_url[i]] = (uint8_t)i;
        }
}

int vg_b64_decode(const char *s, size_t len, enum vg_b64_variant v, uint8_t **out, size_t *out_len)
{
        const uint8_t *in = (const uint8_t *)s;
        const uint8_t *table;
        size_t pad = 0, data_len, n = 0, i = 0;
        uint8_t *buf;

        pthread_once(&b64_table_once, b64_table_init);
        table = b64_table[v == VG_B64_URL ? VG_B64_URL : VG_B64_STD];
        while (pad < 2 && len > pad && s[len - 1 - pad] == '=')
                pad++;
        data_len = len - pad;
        if (v == VG_B64_STD && len % 4 != 0)
                return -EINVAL;
        if (v == VG_B64_URL && pad && len % 4 != 0)
                return -EINVAL;
        if (data_len % 4 == 1)
                return -EINVAL;

        buf = malloc(data_len / 4 * 3 + 3 + 1);
        if (!buf)
                return -ENOMEM;
        /* Whole quanta: four characters to three bytes; any invalid one sets bit 7 of bad. */
        for (; i + 4 <= data_len; i += 4) {
                uint8_t a = table[in[i]], b = table[in[i + 1]], c = table[in[i + 2]],
                        d = table[in[i + 3]];
                if ((a | b | c | d) & 0x80)
                        goto invalid;
                uint32_t w = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
                buf[n++] = (uint8_t)(w >> 16);
                buf[n++] = (uint8_t)(w >> 8);
                buf[n++] = (uint8_t)w;
        }
        /* A final partial quantum of 2 or 3 characters; its unused low bits must be zero, or
         * two encodings would decode to the same bytes. */
        if (i < data_len) {
                size_t rest = data_len - i;
                uint8_t a = table[in[i]], b = table[in[i + 1]],
                        c = rest == 3 ? table[in[i + 2]] : 0;
                if ((a | b | c) & 0x80)
                        goto invalid;
                uint32_t w = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
                buf[n++] = (uint8_t)(w >> 16);
                if (rest == 3)
                        buf[n++] = (uint8_t)(w >> 8);
                if (w & (rest == 3 ? 0xffu : 0xffffu))
                        goto invalid;
        }
        buf[n] = 0;
        *out = buf;
        *out_len = n;
        return 0;
invalid:
        free(buf);
        return -EINVAL;
}

char *vg_hex_encode(const void *data, size_t len)
{
        static const char digits[] = "0123456789abcdef";
        const uint8_t *in = data;
        char *out;

        if (len > (SIZE_MAX - 1) / 2)
                return NULL;
        out = malloc(2 * len + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * len] = '\0';
        return out;
}

int vg_hex_digit_value(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int vg_hex_decode_exact(const char *s, size_t len, uint8_t *out, size_t want)
{
        if (len % 2 || len / 2 != want)
                return -EINVAL;
        for (size_t i = 0; i < want; i++) {
                int hi = vg_hex_digit_value(s[2 * i]), lo = vg_hex_digit_value(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
}

int vg_hex_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
        uint8_t *buf;
        int r;

        if (len % 2)
                return -EINVAL;
        buf = malloc(len / 2 + 1);
        if (!buf)
                return -ENOMEM;
        r = vg_hex_decode_exact(s, len, buf, len / 2);
        if (r < 0) {
                free(buf);
                return r;
        }
        *out = buf;
        *out_len = len / 2;
        return 0;
}

bool vg_ct_equal(const void *a, const void *b, size_t len)
{
        return CRYPTO_memcmp(a, b, len) == 0;
}
