/* vigil fuzz: the base64 (standard and URL-safe) and hex decoders. Whatever decodes must
 * re-encode to the same text (they are strict: one encoding per byte string), and nothing may
 * read past the input. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "encoding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_b64(const char *s, size_t len, enum vg_b64_variant v)
{
        uint8_t *out = NULL;
        size_t n = 0;

        if (vg_b64_decode(s, len, v, &out, &n) != 0)
                return;
        char *again = vg_b64_encode(out, n, v);
        /* URL-safe input may carry padding that the unpadded encoder does not write. */
        size_t cmp_len = len;
        while (v == VG_B64_URL && cmp_len && s[cmp_len - 1] == '=')
                cmp_len--;
        if (!again || strlen(again) != cmp_len || memcmp(again, s, cmp_len) != 0)
                abort();
        free(again);
        free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* A private copy with nothing after it, so ASan sees any overread. */
        char *s = malloc(size ? size : 1);
        uint8_t *out = NULL;
        size_t n = 0;

        if (!s)
                return 0;
        memcpy(s, data, size);
        check_b64(s, size, VG_B64_STD);
        check_b64(s, size, VG_B64_URL);
        if (vg_hex_decode(s, size, &out, &n) == 0) {
                char *again = vg_hex_encode(out, n);
                /* Hex input may be upper case; the encoder writes lower case. */
                if (!again || strlen(again) != size || strncasecmp(again, s, size) != 0)
                        abort();
                free(again);
                free(out);
        }
        free(s);
        return 0;
}
