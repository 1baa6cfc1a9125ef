/* vigil: JWE as Clevis writes it; see jwe.h. */
#include "jwe.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "cleanup.h"
#include "encoding.h"

void vg_jwe_clear(struct vg_jwe *jwe)
{
        free(jwe->protected_b64);
        json_decref(jwe->header);
        free(jwe->iv);
        free(jwe->ciphertext);
        free(jwe->tag);
        memset(jwe, 0, sizeof(*jwe));
}

/* Decode one base64url part named what; want > 0 requires that many bytes. */
static int part(const char *what, const char *s, size_t len, size_t want, uint8_t **out,
                size_t *out_len, struct vg_error *err)
{
        size_t n = 0;

        if (vg_b64_decode(s, len, VG_B64_URL, out, &n) < 0)
                return vg_error_set(err, -EINVAL, "JWE %s: not base64url", what);
        if (want && n != want) {
                free(TAKE_PTR(*out));
                return vg_error_set(err, -EINVAL, "JWE %s: %zu bytes, expected %zu", what, n, want);
        }
        if (out_len)
                *out_len = n;
        return 0;
}

static int parse_parts(const char *prot, size_t prot_len, const char *ek, size_t ek_len,
                       const char *iv, size_t iv_len, const char *ct, size_t ct_len,
                       const char *tag, size_t tag_len, struct vg_jwe *out, struct vg_error *err)
{
        _cleanup_free_ uint8_t *hdr = NULL;
        struct vg_jwe j = { 0 };
        json_error_t jerr;
        const char *enc;
        size_t hdr_len = 0;
        int r;

        if (ek_len)
                return vg_error_set(err, -EINVAL,
                                    "JWE encrypted_key: not empty (Clevis JWEs use alg dir or "
                                    "ECDH-ES, without an encrypted key)");
        if (!prot_len)
                return vg_error_set(err, -EINVAL, "JWE protected header: missing");
        r = part("protected header", prot, prot_len, 0, &hdr, &hdr_len, err);
        if (r < 0)
                return r;
        j.header = json_loadb((const char *)hdr, hdr_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j.header) {
                r = vg_error_set(err, -EINVAL, "JWE protected header: not JSON: %s", jerr.text);
                goto fail;
        }
        if (!json_is_object(j.header)) {
                r = vg_error_set(err, -EINVAL, "JWE protected header: not a JSON object");
                goto fail;
        }
        enc = json_string_value(json_object_get(j.header, "enc"));
        if (!enc) {
                r = vg_error_set(err, -EINVAL, "JWE protected header: no \"enc\"");
                goto fail;
        }
        if (strcmp(enc, "A256GCM") != 0) {
                r = vg_error_set(err, -ENOTSUP,
                                 "JWE protected header: enc \"%.32s\" is not supported "
                                 "(Clevis uses A256GCM)",
                                 enc);
                goto fail;
        }
        if ((r = part("iv", iv, iv_len, VG_JWE_IV_LEN, &j.iv, NULL, err)) < 0 ||
            (r = part("tag", tag, tag_len, VG_JWE_TAG_LEN, &j.tag, NULL, err)) < 0 ||
            (r = part("ciphertext", ct, ct_len, 0, &j.ciphertext, &j.ciphertext_len, err)) < 0)
                goto fail;
        if (!(j.protected_b64 = strndup(prot, prot_len))) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        *out = j;
        return 0;
fail:
        vg_jwe_clear(&j);
        return r;
}

static const char *member(const json_t *obj, const char *name, size_t *len, bool required,
                          struct vg_error *err, int *r)
{
        const json_t *v = json_object_get(obj, name);

        *len = 0;
        if (*r < 0) /* keep the first error */
                return "";
        if (!v) {
                if (required)
                        *r = vg_error_set(err, -EINVAL, "JWE: no \"%s\" member", name);
                return "";
        }
        if (!json_is_string(v)) {
                *r = vg_error_set(err, -EINVAL, "JWE: \"%s\" is not a string", name);
                return NULL;
        }
        *len = json_string_length(v);
        return json_string_value(v);
}

int vg_jwe_parse_json(const json_t *obj, struct vg_jwe *out, struct vg_error *err)
{
        const json_t *rcp = obj, *recipients;
        const char *p, *ek, *iv, *ct, *tag;
        size_t pl, ekl, ivl, ctl, tagl;
        int r = 0;

        if (!json_is_object(obj))
                return vg_error_set(err, -EINVAL, "JWE: not a JSON object");
        recipients = json_object_get(obj, "recipients");
        if (recipients) {
                if (!json_is_array(recipients) || json_array_size(recipients) != 1 ||
                    !json_is_object(json_array_get(recipients, 0)))
                        return vg_error_set(err, -EINVAL,
                                            "JWE: \"recipients\" must hold exactly one object");
                rcp = json_array_get(recipients, 0);
        }
        if (json_object_get(obj, "aad"))
                return vg_error_set(err, -EINVAL, "JWE: \"aad\" is not used by Clevis");
        p = member(obj, "protected", &pl, true, err, &r);
        ek = member(rcp, "encrypted_key", &ekl, false, err, &r);
        iv = member(obj, "iv", &ivl, true, err, &r);
        ct = member(obj, "ciphertext", &ctl, true, err, &r);
        tag = member(obj, "tag", &tagl, true, err, &r);
        if (r < 0)
                return r;
        return parse_parts(p, pl, ek, ekl, iv, ivl, ct, ctl, tag, tagl, out, err);
}

int vg_jwe_parse(const char *text, size_t len, struct vg_jwe *out, struct vg_error *err)
{
        const char *dot[4], *end;
        size_t n = 0;

        if (len > VG_JWE_MAX_BYTES)
                return vg_error_set(err, -EFBIG, "JWE: %zu bytes, more than the %u accepted", len,
                                    VG_JWE_MAX_BYTES);
        while (len && strchr(" \t\r\n", text[0])) {
                text++;
                len--;
        }
        while (len && strchr(" \t\r\n", text[len - 1]))
                len--;
        if (!len)
                return vg_error_set(err, -EINVAL, "JWE: empty input");
        if (text[0] == '{') {
                json_error_t jerr;
                json_auto_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
                if (!j)
                        return vg_error_set(err, -EINVAL, "JWE: not JSON: %s (line %d)", jerr.text,
                                            jerr.line);
                return vg_jwe_parse_json(j, out, err);
        }
        end = text + len;
        for (const char *c = text; c < end; c++) {
                if (*c == '.') {
                        if (n == 4)
                                return vg_error_set(err, -EINVAL,
                                                    "JWE: more than five parts (a JWS or "
                                                    "something else?)");
                        dot[n++] = c;
                }
        }
        if (n != 4)
                return vg_error_set(err, -EINVAL,
                                    "JWE: %zu part%s, expected the five of the compact "
                                    "serialization",
                                    n + 1, n ? "s" : "");
        return parse_parts(text, (size_t)(dot[0] - text), dot[0] + 1, (size_t)(dot[1] - dot[0] - 1),
                           dot[1] + 1, (size_t)(dot[2] - dot[1] - 1), dot[2] + 1,
                           (size_t)(dot[3] - dot[2] - 1), dot[3] + 1, (size_t)(end - dot[3] - 1),
                           out, err);
}

char *vg_jwe_compact(const struct vg_jwe *jwe)
{
        _cleanup_free_ char *iv = vg_b64_encode(jwe->iv, VG_JWE_IV_LEN, VG_B64_URL);
        _cleanup_free_ char *ct = vg_b64_encode(jwe->ciphertext, jwe->ciphertext_len, VG_B64_URL);
        _cleanup_free_ char *tag = vg_b64_encode(jwe->tag, VG_JWE_TAG_LEN, VG_B64_URL);
        char *out;

        if (!iv || !ct || !tag ||
            asprintf(&out, "%s..%s.%s.%s", jwe->protected_b64, iv, ct, tag) < 0)
                return NULL;
        return out;
}

json_t *vg_jwe_json(const struct vg_jwe *jwe)
{
        _cleanup_free_ char *iv = vg_b64_encode(jwe->iv, VG_JWE_IV_LEN, VG_B64_URL);
        _cleanup_free_ char *ct = vg_b64_encode(jwe->ciphertext, jwe->ciphertext_len, VG_B64_URL);
        _cleanup_free_ char *tag = vg_b64_encode(jwe->tag, VG_JWE_TAG_LEN, VG_B64_URL);

        if (!iv || !ct || !tag)
                return NULL;
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "ciphertext", ct, "encrypted_key", "", "iv",
                         iv, "protected", jwe->protected_b64, "tag", tag);
}

static int gcm(bool enc, const uint8_t cek[VG_JWE_CEK_LEN], const uint8_t *iv, const char *aad,
               const uint8_t *in, size_t in_len, uint8_t *out, uint8_t *tag)
{
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int n = 0, ok;

        ok = c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, cek, iv, enc) == 1 &&
             EVP_CipherUpdate(c, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
             (in_len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)in_len) == 1) &&
             (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, VG_JWE_TAG_LEN, tag) == 1) &&
             EVP_CipherFinal_ex(c, out + (in_len ? n : 0), &n) == 1 &&
             (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, VG_JWE_TAG_LEN, tag) == 1);
        EVP_CIPHER_CTX_free(c);
        return ok ? 0 : -EBADMSG;
}

int vg_jwe_seal(const json_t *header, const uint8_t cek[VG_JWE_CEK_LEN], const void *pt,
                size_t pt_len, struct vg_jwe *out, struct vg_error *err)
{
        _cleanup_free_ char *text = NULL;
        struct vg_jwe j = { 0 };
        int r;

        if (!json_is_object(header))
                return vg_error_set(err, -EINVAL, "JWE header: not a JSON object");
        if (pt_len > VG_JWE_MAX_BYTES)
                return vg_error_set(err, -EFBIG, "JWE plaintext: %zu bytes, more than %u", pt_len,
                                    VG_JWE_MAX_BYTES);
        j.header = json_deep_copy(header);
        if (!j.header || json_object_set_new(j.header, "enc", json_string("A256GCM")) < 0 ||
            !(text = json_dumps(j.header, JSON_SORT_KEYS | JSON_COMPACT)) ||
            !(j.protected_b64 = vg_b64_encode(text, strlen(text), VG_B64_URL)) ||
            !(j.iv = malloc(VG_JWE_IV_LEN)) || !(j.tag = malloc(VG_JWE_TAG_LEN)) ||
            !(j.ciphertext = malloc(pt_len ? pt_len : 1))) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        if (RAND_bytes(j.iv, VG_JWE_IV_LEN) != 1) {
                r = vg_error_set(err, -EIO, "no random bytes for the JWE IV");
                goto fail;
        }
        j.ciphertext_len = pt_len;
        if (gcm(true, cek, j.iv, j.protected_b64, pt, pt_len, j.ciphertext, j.tag) < 0) {
                r = vg_error_set(err, -EIO, "A256GCM encryption failed");
                goto fail;
        }
        *out = j;
        return 0;
fail:
        vg_jwe_clear(&j);
        return r;
}

int vg_jwe_open(const struct vg_jwe *jwe, const uint8_t cek[VG_JWE_CEK_LEN], uint8_t **pt,
                size_t *pt_len, struct vg_error *err)
{
        _cleanup_free_ uint8_t *out = malloc(jwe->ciphertext_len + 1);

        if (!out)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (gcm(false, cek, jwe->iv, jwe->protected_b64, jwe->ciphertext, jwe->ciphertext_len, out,
                jwe->tag) < 0)
                return vg_error_set(err, -EBADMSG,
                                    "JWE authentication failed (wrong key, or the JWE was "
                                    "modified)");
        out[jwe->ciphertext_len] = '\0';
        *pt_len = jwe->ciphertext_len;
        *pt = TAKE_PTR(out);
        return 0;
}

static void be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

int vg_jwe_concat_kdf(const uint8_t *z, size_t z_len, const char *alg, const uint8_t *apu,
                      size_t apu_len, const uint8_t *apv, size_t apv_len, uint8_t *out,
                      size_t out_len, struct vg_error *err)
{
        EVP_MD_CTX *md;
        uint8_t counter[4], len[4], bits[4], digest[32];
        size_t alg_len = strlen(alg);
        unsigned digest_len = 0;
        int ok;

        if (out_len == 0 || out_len > sizeof(digest))
                return vg_error_set(err, -EINVAL, "Concat KDF: %zu bytes asked, 1 to 32 supported",
                                    out_len);
        /* One SHA-256 round gives up to 256 bits: round 1 || Z || AlgorithmID || PartyUInfo ||
         * PartyVInfo || SuppPubInfo, each datum but Z length-prefixed (32 bits BE). */
        md = EVP_MD_CTX_new();
        be32(counter, 1);
        be32(bits, (uint32_t)(out_len * 8));
        ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, counter, 4) == 1 && EVP_DigestUpdate(md, z, z_len) == 1;
        be32(len, (uint32_t)alg_len);
        ok = ok && EVP_DigestUpdate(md, len, 4) == 1 && EVP_DigestUpdate(md, alg, alg_len) == 1;
        be32(len, (uint32_t)apu_len);
        ok = ok && EVP_DigestUpdate(md, len, 4) == 1 &&
             (!apu_len || EVP_DigestUpdate(md, apu, apu_len) == 1);
        be32(len, (uint32_t)apv_len);
        ok = ok && EVP_DigestUpdate(md, len, 4) == 1 &&
             (!apv_len || EVP_DigestUpdate(md, apv, apv_len) == 1);
        ok = ok && EVP_DigestUpdate(md, bits, 4) == 1 &&
             EVP_DigestFinal_ex(md, digest, &digest_len) == 1 && digest_len == sizeof(digest);
        EVP_MD_CTX_free(md);
        if (!ok)
                return vg_error_set(err, -EIO, "Concat KDF failed");
        memcpy(out, digest, out_len);
        return 0;
}
