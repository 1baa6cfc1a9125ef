/* vigil tests: jwe.c, the JWE codec of the pins: clevis-made JWEs (the fuzz seeds) parse in both
 * serializations and round-trip byte for byte, A256GCM seal/open and its authentication, the
 * RFC 7518 Appendix C Concat KDF vector, and malformed inputs refused with the part named. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "jwe.h"
#include "tap.h"

static char *corpus_dir;

static char *seed(const char *name, size_t *len)
{
        char *path = tap_strf("%s/%s", corpus_dir, name);
        char *s = tap_read_file(path, len);

        if (!s)
                tap_bail("cannot read seed %s", path);
        free(path);
        return s;
}

/* Parse text; on failure return the error message (kept), on success NULL. */
static const char *parse_err(const char *text, size_t len)
{
        struct vg_jwe j = { 0 };
        struct vg_error err = { 0 };
        int r = vg_jwe_parse(text, len, &j, &err);

        vg_jwe_clear(&j);
        return r < 0 ? tap_keep(strdup(err.msg)) : NULL;
}

static void check_malformed(const char *text, const char *needle, const char *what)
{
        const char *msg = parse_err(text, strlen(text));

        ok(msg != NULL, "%s: refused", what);
        contains(msg ? msg : "", needle, "%s: the error names it", what);
}

static void seeds(void)
{
        struct vg_jwe j = { 0 }, j2 = { 0 };
        struct vg_error err = { 0 };
        size_t len = 0, len2 = 0;
        char *text = seed("tang-compact", &len), *json_text = seed("tang-json", &len2);
        char *back, *dumped;
        json_t *js, *tok;
        int r;

        /* tang-compact, made by clevis encrypt tang */
        r = vg_jwe_parse(text, len, &j, &err);
        is_int(r, 0, "clevis's tang compact JWE parses (%s)", err.msg);
        is_str(json_string_value(json_object_get(json_object_get(j.header, "clevis"), "pin")),
               "tang", "its header says pin tang");
        is_str(json_string_value(json_object_get(j.header, "alg")), "ECDH-ES", "alg ECDH-ES");
        ok(json_is_object(json_object_get(j.header, "epk")), "it has an epk");
        /* compact -> JSON -> compact gives the same bytes */
        js = vg_jwe_json(&j);
        ok(js && json_is_string(json_object_get(js, "protected")) &&
               strcmp(json_string_value(json_object_get(js, "encrypted_key")), "") == 0,
           "flattened JSON has protected and an empty encrypted_key");
        r = vg_jwe_parse_json(js, &j2, &err);
        is_int(r, 0, "the JSON serialization parses back");
        back = vg_jwe_compact(&j2);
        while (len && strchr(" \r\n", text[len - 1]))
                text[--len] = '\0';
        is_str(back, text, "compact -> JSON -> compact is byte-identical");
        free(back);
        vg_jwe_clear(&j2);
        dumped = json_dumps(js, JSON_COMPACT);
        r = vg_jwe_parse(dumped, strlen(dumped), &j2, &err);
        is_int(r, 0, "the dumped JSON parses as text too");
        free(dumped);
        vg_jwe_clear(&j2);
        json_decref(js);
        vg_jwe_clear(&j);

        /* tang-json, as jose jwe fmt writes it */
        r = vg_jwe_parse(json_text, len2, &j, &err);
        is_int(r, 0, "clevis's JSON JWE parses (%s)", err.msg);
        back = vg_jwe_compact(&j);
        r = vg_jwe_parse(back, strlen(back), &j2, &err);
        is_int(r, 0, "its compact form parses");
        is_int(j2.ciphertext_len, j.ciphertext_len, "same ciphertext length both ways");
        ok(j2.ciphertext_len && memcmp(j.ciphertext, j2.ciphertext, j.ciphertext_len) == 0 &&
               memcmp(j.tag, j2.tag, VG_JWE_TAG_LEN) == 0,
           "same ciphertext and tag both ways");
        free(back);
        vg_jwe_clear(&j2);
        vg_jwe_clear(&j);
        free(text);
        free(json_text);

        /* sss-compact: shares nested in the header */
        text = seed("sss-compact", &len);
        r = vg_jwe_parse(text, len, &j, &err);
        is_int(r, 0, "clevis's sss JWE parses");
        is_int(json_array_size(json_object_get(
                   json_object_get(json_object_get(j.header, "clevis"), "sss"), "jwe")),
               2, "its header holds two share JWEs");
        {
                const json_t *sh = json_array_get(
                    json_object_get(json_object_get(json_object_get(j.header, "clevis"), "sss"),
                                    "jwe"),
                    0);
                r = vg_jwe_parse(json_string_value(sh), json_string_length(sh), &j2, &err);
                is_int(r, 0, "a share is itself a compact JWE");
                vg_jwe_clear(&j2);
        }
        vg_jwe_clear(&j);
        free(text);

        /* the JWE of a LUKS2 token (clevis luks bind) */
        text = seed("luks-token.json", &len);
        tok = json_loadb(text, len, 0, NULL);
        r = vg_jwe_parse_json(json_object_get(tok, "jwe"), &j, &err);
        is_int(r, 0, "a clevis LUKS2 token's jwe parses (%s)", err.msg);
        vg_jwe_clear(&j);
        json_decref(tok);
        free(text);

        text = seed("minimal", &len);
        r = vg_jwe_parse(text, len, &j, &err);
        is_int(r, 0, "the minimal seed parses");
        is_int(j.ciphertext_len, 1, "its ciphertext is one byte");
        vg_jwe_clear(&j);
        free(text);

        text = seed("five-parts", &len);
        contains(parse_err(text, len) ?: "", "JWE encrypted_key: not empty",
                 "a.b.c.d.e: the encrypted key is named");
        free(text);
        text = seed("empty-json", &len);
        contains(parse_err(text, len) ?: "", "JWE protected header: no \"enc\"",
                 "empty JSON parts: the header without enc is named");
        free(text);
}

static void seal_open(void)
{
        uint8_t cek[VG_JWE_CEK_LEN], cek2[VG_JWE_CEK_LEN], *pt = NULL;
        struct vg_jwe j = { 0 }, j2 = { 0 };
        struct vg_error err = { 0 };
        json_t *hdr = json_pack("{s:s, s:i}", "zeta", "z", "alpha", 1);
        uint8_t *raw = NULL;
        size_t pt_len = 0, raw_len = 0;
        char *compact;
        int r;

        memset(cek, 0x42, sizeof(cek));
        memset(cek2, 0x43, sizeof(cek2));
        r = vg_jwe_seal(hdr, cek, "secret text", 11, &j, &err);
        is_int(r, 0, "seal");
        vg_b64_decode(j.protected_b64, strlen(j.protected_b64), VG_B64_URL, &raw, &raw_len);
        is_mem(raw, raw_len, "{\"alpha\":1,\"enc\":\"A256GCM\",\"zeta\":\"z\"}", 38,
               "the protected header is sorted and compact, with enc added (as libjose)");
        free(raw);
        compact = vg_jwe_compact(&j);
        r = vg_jwe_parse(compact, strlen(compact), &j2, &err);
        is_int(r, 0, "the sealed JWE parses");
        r = vg_jwe_open(&j2, cek, &pt, &pt_len, &err);
        is_int(r, 0, "open with the key");
        is_mem(pt, pt_len, "secret text", 11, "the plaintext comes back");
        free(pt);
        pt = NULL;
        r = vg_jwe_open(&j2, cek2, &pt, &pt_len, &err);
        is_int(r, -EBADMSG, "a wrong key fails");
        contains(err.msg, "JWE authentication failed", "... with \"JWE authentication failed\"");
        j2.ciphertext[3] ^= 1;
        memset(&err, 0, sizeof(err));
        r = vg_jwe_open(&j2, cek, &pt, &pt_len, &err);
        is_int(r, -EBADMSG, "a flipped ciphertext bit fails");
        contains(err.msg, "authentication failed", "... as an authentication failure");
        j2.ciphertext[3] ^= 1;
        j2.protected_b64[2] = j2.protected_b64[2] == 'A' ? 'B' : 'A';
        r = vg_jwe_open(&j2, cek, &pt, &pt_len, &err);
        is_int(r, -EBADMSG, "a modified protected header (the AAD) fails");
        vg_jwe_clear(&j2);
        vg_jwe_clear(&j);
        free(compact);
        r = vg_jwe_seal(hdr, cek, "", 0, &j, &err);
        is_int(r, 0, "an empty plaintext seals");
        r = vg_jwe_open(&j, cek, &pt, &pt_len, &err);
        ok(r == 0 && pt_len == 0, "... and opens to nothing");
        free(pt);
        vg_jwe_clear(&j);
        json_decref(hdr);
}

static void concat_kdf(void)
{
        /* RFC 7518 Appendix C: ECDH-ES, Z from the example, A128GCM, apu "Alice", apv "Bob". */
        static const uint8_t z[] = { 158, 86,  217, 29,  129, 113, 53,  211, 114, 131, 66,
                                     131, 191, 132, 38,  156, 251, 49,  110, 163, 218, 128,
                                     106, 72,  246, 218, 167, 121, 140, 254, 144, 196 };
        struct vg_error err = { 0 };
        uint8_t out[16];
        char *b64;
        int r;

        r = vg_jwe_concat_kdf(z, sizeof(z), "A128GCM", (const uint8_t *)"Alice", 5,
                              (const uint8_t *)"Bob", 3, out, sizeof(out), &err);
        is_int(r, 0, "Concat KDF runs");
        b64 = vg_b64_encode(out, sizeof(out), VG_B64_URL);
        is_str(b64, "VqqN6vgjbSBcIijNcacQGg", "RFC 7518 Appendix C derived key");
        free(b64);
        r = vg_jwe_concat_kdf(z, sizeof(z), "A256GCM", NULL, 0, NULL, 0, out, 33, &err);
        is_int(r, -EINVAL, "more than 32 bytes is refused");
}

static void malformed(void)
{
        const char *h = "eyJlbmMiOiJBMjU2R0NNIn0"; /* {"enc":"A256GCM"} */
        char *big;

        check_malformed("", "empty input", "empty input");
        check_malformed("eyJlbmMiOiJBMjU2R0NNIn0..AAAAAAAAAAAAAAAA", "3 parts",
                        "truncated to three parts");
        check_malformed("a.b.c.d.e.f", "more than five parts", "six parts");
        check_malformed("e!!..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA",
                        "JWE protected header: not base64url", "bad base64 in the header");
        check_malformed(tap_keep(tap_strf("%s..AAAA*AAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA", h)),
                        "JWE iv: not base64url", "bad base64 in the iv");
        check_malformed(tap_keep(tap_strf("%s..AAAAAAAAAAAAAAAA.A$.AAAAAAAAAAAAAAAAAAAAAA", h)),
                        "JWE ciphertext: not base64url", "bad base64 in the ciphertext");
        check_malformed(tap_keep(tap_strf("%s..AAAAAAAAAAAAAAAA.AA.AAAA", h)),
                        "JWE tag: 3 bytes, expected 16", "short tag");
        check_malformed(tap_keep(tap_strf("%s..AAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA", h)),
                        "JWE iv: 8 bytes, expected 12", "short iv");
        check_malformed(tap_keep(tap_strf("%s.AAAA.AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA", h)),
                        "JWE encrypted_key: not empty", "an encrypted key");
        check_malformed("bm90IGpzb24..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA",
                        "JWE protected header: not JSON", "header not JSON");
        check_malformed("WzFd..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA",
                        "JWE protected header: not a JSON object", "header an array");
        check_malformed("e30..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA", "no \"enc\"",
                        "header without enc");
        check_malformed("eyJlbmMiOiJBMTI4R0NNIn0..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA",
                        "enc \"A128GCM\" is not supported", "enc A128GCM");
        check_malformed("..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA",
                        "JWE protected header: missing", "no header");
        check_malformed("{\"protected\":\"e30\"", "JWE: not JSON", "truncated JSON");
        check_malformed(tap_keep(tap_strf("{\"protected\":\"%s\",\"ciphertext\":\"AA\","
                                          "\"tag\":\"AAAAAAAAAAAAAAAAAAAAAA\"}",
                                          h)),
                        "no \"iv\" member", "JSON without iv");
        check_malformed(tap_keep(tap_strf("{\"protected\":\"%s\",\"iv\":12,\"ciphertext\":\"AA\","
                                          "\"tag\":\"AAAAAAAAAAAAAAAAAAAAAA\"}",
                                          h)),
                        "\"iv\" is not a string", "JSON iv a number");
        check_malformed(tap_keep(tap_strf("{\"protected\":\"%s\",\"iv\":\"AAAAAAAAAAAAAAAA\","
                                          "\"ciphertext\":\"AA\",\"tag\":"
                                          "\"AAAAAAAAAAAAAAAAAAAAAA\",\"recipients\":[{},{}]}",
                                          h)),
                        "exactly one", "JSON with two recipients");
        big = malloc(VG_JWE_MAX_BYTES + 2);
        memset(big, 'A', VG_JWE_MAX_BYTES + 1);
        big[VG_JWE_MAX_BYTES + 1] = '\0';
        check_malformed(big, "more than the", "a JWE over 4 MiB");
        free(big);
}

int main(void)
{
        const char *shared = getenv("VIGIL_SHARED_DATA"), *suffix = "/../shared/data";
        const char *dir = getenv("VIGIL_JWE_CORPUS");

        if (dir) {
                corpus_dir = strdup(dir);
        } else if (shared && strlen(shared) > strlen(suffix) &&
                   strcmp(shared + strlen(shared) - strlen(suffix), suffix) == 0) {
                /* VIGIL_SHARED_DATA is SOURCE_ROOT/../shared/data */
                corpus_dir = tap_strf("%.*s/tests/fuzz/corpus/jwe",
                                      (int)(strlen(shared) - strlen(suffix)), shared);
        } else {
                tap_bail("cannot locate tests/fuzz/corpus/jwe (set VIGIL_JWE_CORPUS)");
        }
        seeds();
        seal_open();
        concat_kdf();
        malformed();
        free(corpus_dir);
        return tap_done();
}
