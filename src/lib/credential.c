/* vigil: software MakeCredential (TPM 2.0 Part 1 §24, KDFa/KDFe §11.4.10, secret sharing
 * Annex B.10 and C.6) and the Keylime registration challenge and auth_tag around it. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "buf.h"
#include "credential.h"
#include "encoding.h"

#define BLOB_MAGIC   0xbadcc0deu
#define BLOB_VERSION 1u

VG_DEFINE_CLEANUP_FUNC(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free)

static uint8_t *put_be(uint8_t *p, uint32_t v, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
        return p + n;
}

static int hmac(enum vg_hash_alg alg, const uint8_t *key, size_t key_len,
                const uint8_t *const *parts, const size_t *lens, size_t n, uint8_t *out)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        size_t len = VG_HASH_MAX_SIZE;

        pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_HMAC, NULL, key, key_len);
        ctx = EVP_MD_CTX_new();
        if (!pkey || !ctx ||
            EVP_DigestSignInit_ex(ctx, NULL, vg_hash_alg_name(alg), NULL, NULL, pkey, NULL) != 1)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (lens[i] && EVP_DigestSignUpdate(ctx, parts[i], lens[i]) != 1)
                        return -EIO;
        return EVP_DigestSignFinal(ctx, out, &len) == 1 ? 0 : -EIO;
}

/*
 * KDFa (Part 1 §11.4.10.2), the SP 800-108 counter-mode KDF with HMAC:
 * K(i) = HMAC(key, [i]32 || label || 0x00 || contextU || contextV || [bits]32).
 */
static int kdfa(enum vg_hash_alg alg, const uint8_t *key, size_t key_len, const char *label,
                const uint8_t *u, size_t u_len, const uint8_t *v, size_t v_len, unsigned bits,
                uint8_t *out)
{
        size_t hlen = vg_hash_size(alg), want = (bits + 7) / 8, done = 0;
        uint8_t counter[4], nbits[4], block[VG_HASH_MAX_SIZE];
        const uint8_t *parts[] = { counter, (const uint8_t *)label, u, v, nbits };
        size_t lens[] = { 4, strlen(label) + 1, u_len, v_len, 4 };
        int r;

        put_be(nbits, bits, 4);
        for (uint32_t i = 1; done < want; i++) {
                put_be(counter, i, 4);
                if ((r = hmac(alg, key, key_len, parts, lens, VG_ARRAY_SIZE(parts), block)) < 0)
                        return r;
                memcpy(out + done, block, want - done < hlen ? want - done : hlen);
                done += want - done < hlen ? want - done : hlen;
        }
        OPENSSL_cleanse(block, sizeof(block));
        return 0;
}

/* KDFe (Part 1 §11.4.10.3), SP 800-56A concatenation KDF:
 * K(i) = H([i]32 || Z || label || 0x00 || partyUInfo || partyVInfo). */
static int kdfe(enum vg_hash_alg alg, const uint8_t *z, size_t z_len, const char *label,
                const uint8_t *u, size_t u_len, const uint8_t *v, size_t v_len, unsigned bits,
                uint8_t *out)
{
        size_t hlen = vg_hash_size(alg), want = (bits + 7) / 8, done = 0;
        uint8_t counter[4], block[VG_HASH_MAX_SIZE];
        struct vg_hash_ctx *h = NULL;
        int r = vg_hash_new(alg, &h);

        for (uint32_t i = 1; r == 0 && done < want; i++) {
                put_be(counter, i, 4);
                if ((r = vg_hash_update(h, counter, 4)) < 0 ||
                    (r = vg_hash_update(h, z, z_len)) < 0 ||
                    (r = vg_hash_update(h, label, strlen(label) + 1)) < 0 ||
                    (r = vg_hash_update(h, u, u_len)) < 0 ||
                    (r = vg_hash_update(h, v, v_len)) < 0 || (r = vg_hash_final(h, block)) < 0)
                        break;
                memcpy(out + done, block, want - done < hlen ? want - done : hlen);
                done += want - done < hlen ? want - done : hlen;
        }
        vg_hash_free(h);
        OPENSSL_cleanse(block, sizeof(block));
        return r;
}

/* Annex B.10.3: the seed encrypted with RSA-OAEP, nameAlg for OAEP and MGF1, label
 * "IDENTITY" including its terminating NUL. */
static int seed_rsa(const struct vg_tpm_public *ek, const uint8_t *seed, size_t seed_len,
                    struct vg_credential *out, struct vg_error *err)
{
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        const char *md = vg_hash_alg_name(ek->name_alg);
        size_t len = sizeof(out->secret) - 2;
        unsigned char *label = OPENSSL_memdup("IDENTITY", 9);

        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, ek->pkey, NULL);
        if (!label || !ctx || EVP_PKEY_encrypt_init(ctx) <= 0 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, md, NULL) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, md, NULL) <= 0 ||
            EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, 9) <= 0) {
                OPENSSL_free(label);
                return vg_error_set(err, -EINVAL, "RSA-OAEP with %s is not available", md);
        }
        if (EVP_PKEY_encrypt(ctx, out->secret + 2, &len, seed, seed_len) <= 0)
                return vg_error_set(err, -EINVAL, "RSA-OAEP encryption of the seed failed");
        put_be(out->secret, (uint32_t)len, 2);
        out->secret_len = len + 2;
        return 0;
}

/* Annex C.6.4: one-pass ECDH with an ephemeral key on the EK's curve; Z is the shared point's
 * x; seed = KDFe(nameAlg, Z, "IDENTITY", ephemeral x, EK x). The secret is the ephemeral point. */
static int seed_ecc(const struct vg_tpm_public *ek, uint8_t *seed, size_t seed_len,
                    struct vg_credential *out, struct vg_error *err)
{
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *gctx = NULL, *dctx = NULL;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *eph = NULL;
        uint8_t point[1 + 2 * 66], z[66];
        size_t point_len = 0, z_len = sizeof(z), field = ek->ecc_x_len;
        char group[32];
        uint8_t *p;
        int r;

        if (!EVP_PKEY_get_utf8_string_param(ek->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                            sizeof(group), NULL))
                return vg_error_set(err, -EINVAL, "the EK has no curve");
        gctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (!gctx || EVP_PKEY_keygen_init(gctx) <= 0 ||
            EVP_PKEY_CTX_set_group_name(gctx, group) <= 0 || EVP_PKEY_keygen(gctx, &eph) <= 0)
                return vg_error_set(err, -ENOMEM, "generating an ephemeral %s key failed", group);
        if (!EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
                                             &point_len) ||
            point_len != 1 + 2 * field || point[0] != 0x04)
                return vg_error_set(err, -EINVAL, "the ephemeral point is not uncompressed");
        dctx = EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL);
        if (!dctx || EVP_PKEY_derive_init(dctx) <= 0 ||
            EVP_PKEY_derive_set_peer(dctx, ek->pkey) <= 0 ||
            EVP_PKEY_derive(dctx, z, &z_len) <= 0 || z_len != field)
                return vg_error_set(err, -EINVAL, "ECDH with the EK failed");
        r = kdfe(ek->name_alg, z, z_len, "IDENTITY", point + 1, field, ek->ecc_x, field,
                 (unsigned)seed_len * 8, seed);
        OPENSSL_cleanse(z, sizeof(z));
        if (r < 0)
                return vg_error_set(err, r, "KDFe failed");
        /* TPM2B_ENCRYPTED_SECRET holding a marshalled TPMS_ECC_POINT. */
        p = put_be(out->secret, (uint32_t)(4 + 2 * field), 2);
        p = put_be(p, (uint32_t)field, 2);
        memcpy(p, point + 1, field);
        p = put_be(p + field, (uint32_t)field, 2);
        memcpy(p, point + 1 + field, field);
        out->secret_len = 2 + 4 + 2 * field;
        return 0;
}

int vg_credential_make(const struct vg_tpm_public *ek, const uint8_t *ak_name, size_t ak_name_len,
                       const uint8_t *credential, size_t credential_len, struct vg_credential *out,
                       struct vg_error *err)
{
        _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *cctx = NULL;
        size_t dlen = vg_hash_size(ek->name_alg);
        uint8_t seed[VG_HASH_MAX_SIZE], sym[32], hkey[VG_HASH_MAX_SIZE];
        uint8_t plain[2 + VG_HASH_MAX_SIZE], *enc, *p;
        const uint8_t *parts[2];
        size_t lens[2], enc_len = 2 + credential_len;
        char cipher[32];
        int n, r;

        memset(out, 0, sizeof(*out));
        /* Part 3 §12.6.1: the credential is a TPM2B_DIGEST no larger than the nameAlg digest. */
        if (credential_len == 0 || credential_len > dlen)
                return vg_error_set(err, -EINVAL,
                                    "a credential of %zu bytes, the EK's %s allows 1 to %zu",
                                    credential_len, vg_hash_alg_name(ek->name_alg), dlen);
        if (ak_name_len < 2 || ak_name_len > VG_TPM_NAME_MAX)
                return vg_error_set(err, -EINVAL, "an AK name of %zu bytes", ak_name_len);
        if (ek->sym_alg != 0x0006 || ek->sym_mode != 0x0043)
                return vg_error_set(err, -EINVAL,
                                    "the EK's symmetric definition is not AES-CFB (Part 1 §24)");
        if (!(ek->attributes & VG_TPMA_DECRYPT) || !(ek->attributes & VG_TPMA_RESTRICTED))
                return vg_error_set(err, -EINVAL, "the EK is not a restricted decryption key");
        if (RAND_bytes(seed, (int)dlen) != 1)
                return vg_error_set(err, -EIO, "no randomness");
        r = ek->type == VG_TPM_KEY_RSA ? seed_rsa(ek, seed, dlen, out, err)
                                       : seed_ecc(ek, seed, dlen, out, err);
        if (r < 0)
                goto out;
        /* §24.4: symKey = KDFa(nameAlg, seed, "STORAGE", Name(AK), NULL, keyBits). */
        if ((r = kdfa(ek->name_alg, seed, dlen, "STORAGE", ak_name, ak_name_len, NULL, 0,
                      ek->sym_bits, sym)) < 0) {
                r = vg_error_set(err, r, "KDFa failed");
                goto out;
        }
        /* §24.4: encIdentity = CFB(symKey, IV = 0, marshalled TPM2B_DIGEST credential). */
        put_be(plain, (uint32_t)credential_len, 2);
        memcpy(plain + 2, credential, credential_len);
        p = put_be(out->id_object + 2, (uint32_t)dlen, 2);
        enc = p + dlen;
        snprintf(cipher, sizeof(cipher), "AES-%u-CFB", ek->sym_bits);
        {
                EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, cipher, NULL);
                static const uint8_t iv[16];

                cctx = EVP_CIPHER_CTX_new();
                if (!c || !cctx || EVP_EncryptInit_ex2(cctx, c, sym, iv, NULL) != 1 ||
                    EVP_EncryptUpdate(cctx, enc, &n, plain, (int)enc_len) != 1 ||
                    (size_t)n != enc_len) {
                        EVP_CIPHER_free(c);
                        r = vg_error_set(err, -EIO, "%s encryption failed", cipher);
                        goto out;
                }
                EVP_CIPHER_free(c);
        }
        /* §24.5: HMACkey = KDFa(nameAlg, seed, "INTEGRITY", NULL, NULL, digest bits);
         * outerHMAC = HMAC(HMACkey, encIdentity || Name(AK)). */
        if ((r = kdfa(ek->name_alg, seed, dlen, "INTEGRITY", NULL, 0, NULL, 0, (unsigned)dlen * 8,
                      hkey)) < 0) {
                r = vg_error_set(err, r, "KDFa failed");
                goto out;
        }
        parts[0] = enc;
        lens[0] = enc_len;
        parts[1] = ak_name;
        lens[1] = ak_name_len;
        if ((r = hmac(ek->name_alg, hkey, dlen, parts, lens, 2, p)) < 0) {
                r = vg_error_set(err, r, "HMAC failed");
                goto out;
        }
        put_be(out->id_object, (uint32_t)(2 + dlen + enc_len), 2);
        out->id_object_len = 2 + 2 + dlen + enc_len;
        r = 0;
out:
        OPENSSL_cleanse(seed, sizeof(seed));
        OPENSSL_cleanse(sym, sizeof(sym));
        OPENSSL_cleanse(hkey, sizeof(hkey));
        OPENSSL_cleanse(plain, sizeof(plain));
        return r;
}

int vg_credential_blob(const struct vg_credential *c, uint8_t **out, size_t *len)
{
        uint8_t *p;

        *len = 8 + c->id_object_len + c->secret_len;
        *out = malloc(*len);
        if (!*out)
                return -ENOMEM;
        p = put_be(*out, BLOB_MAGIC, 4);
        p = put_be(p, BLOB_VERSION, 4);
        memcpy(p, c->id_object, c->id_object_len);
        memcpy(p + c->id_object_len, c->secret, c->secret_len);
        return 0;
}

int vg_credential_blob_parse(const uint8_t *data, size_t len, struct vg_credential *out,
                             struct vg_error *err)
{
        struct vg_buf b = vg_buf_init(data, len), t;
        uint32_t magic, version;
        uint16_t size;

        memset(out, 0, sizeof(*out));
        if (!vg_buf_u32be(&b, &magic) || !vg_buf_u32be(&b, &version))
                return vg_error_set(err, -EBADMSG, "credential blob: %zu bytes, too short", len);
        if (magic != BLOB_MAGIC || version != BLOB_VERSION)
                return vg_error_set(err, -EBADMSG,
                                    "credential blob: header %08x %08x, expected badcc0de 00000001",
                                    magic, version);
        t = b;
        if (!vg_buf_u16be(&b, &size) || size + 2u > sizeof(out->id_object) ||
            !vg_buf_skip(&b, size))
                return vg_error_set(err, -EBADMSG, "credential blob: bad TPM2B_ID_OBJECT");
        out->id_object_len = size + 2u;
        memcpy(out->id_object, t.p, out->id_object_len);
        t = b;
        if (!vg_buf_u16be(&b, &size) || size + 2u > sizeof(out->secret) || !vg_buf_skip(&b, size))
                return vg_error_set(err, -EBADMSG, "credential blob: bad TPM2B_ENCRYPTED_SECRET");
        out->secret_len = size + 2u;
        memcpy(out->secret, t.p, out->secret_len);
        if (b.len)
                return vg_error_set(err, -EBADMSG, "credential blob: %zu trailing bytes", b.len);
        return 0;
}

int vg_registration_challenge(char challenge[VG_CHALLENGE_LEN + 1])
{
        static const char alnum[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        size_t i = 0;

        /* Rejection sampling keeps the 62 symbols uniform. */
        while (i < VG_CHALLENGE_LEN) {
                uint8_t rnd[64];

                if (RAND_bytes(rnd, sizeof(rnd)) != 1)
                        return -EIO;
                for (size_t j = 0; j < sizeof(rnd) && i < VG_CHALLENGE_LEN; j++)
                        if (rnd[j] < 248)
                                challenge[i++] = alnum[rnd[j] % 62];
                OPENSSL_cleanse(rnd, sizeof(rnd));
        }
        challenge[VG_CHALLENGE_LEN] = '\0';
        return 0;
}

int vg_registration_key(const void *secret, size_t secret_len, char key[VG_CHALLENGE_KEY_LEN + 1])
{
        char *b64;

        if (secret_len != VG_CHALLENGE_LEN)
                return -EINVAL;
        b64 = vg_b64_encode(secret, secret_len, VG_B64_STD);
        if (!b64)
                return -ENOMEM;
        memcpy(key, b64, VG_CHALLENGE_KEY_LEN + 1);
        OPENSSL_cleanse(b64, VG_CHALLENGE_KEY_LEN);
        free(b64);
        return 0;
}

int vg_auth_tag(const char *key, const char *agent_uuid, char tag[VG_AUTH_TAG_LEN + 1])
{
        uint8_t mac[48];
        const uint8_t *parts[] = { (const uint8_t *)agent_uuid };
        size_t lens[] = { strlen(agent_uuid) };
        static const char digits[] = "0123456789abcdef";
        int r;

        if ((r = hmac(VG_HASH_SHA384, (const uint8_t *)key, strlen(key), parts, lens, 1, mac)) < 0)
                return r;
        for (size_t i = 0; i < sizeof(mac); i++) {
                tag[2 * i] = digits[mac[i] >> 4];
                tag[2 * i + 1] = digits[mac[i] & 15];
        }
        tag[VG_AUTH_TAG_LEN] = '\0';
        return 0;
}

int vg_auth_tag_check(const char *key, const char *agent_uuid, const char *tag,
                      struct vg_error *err)
{
        char want[VG_AUTH_TAG_LEN + 1], got[VG_AUTH_TAG_LEN + 1];
        bool equal;

        if (vg_auth_tag(key, agent_uuid, want) < 0)
                return vg_error_set(err, -ENOMEM, "computing the auth_tag failed");
        if (strlen(tag) != VG_AUTH_TAG_LEN)
                return vg_error_set(err, -EKEYREJECTED,
                                    "agent %s: auth_tag has %zu characters, expected %d",
                                    agent_uuid, strlen(tag), VG_AUTH_TAG_LEN);
        for (size_t i = 0; i < VG_AUTH_TAG_LEN; i++)
                got[i] = (char)tolower((unsigned char)tag[i]);
        got[VG_AUTH_TAG_LEN] = '\0';
        equal = vg_ct_equal(got, want, VG_AUTH_TAG_LEN);
        OPENSSL_cleanse(want, sizeof(want));
        if (!equal)
                return vg_error_set(err, -EKEYREJECTED,
                                    "agent %s: auth_tag does not match the challenge's HMAC "
                                    "(ActivateCredential did not recover it)",
                                    agent_uuid);
        return 0;
}
