/* vigil bench: a software TPM for load generation (quotes, AK/EK TPM2B_PUBLIC, and
 * ActivateCredential). Keys live in memory: the output is genuine in form only. */
#include <errno.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "cleanup.h"
#include "credential.h"
#include "encoding.h"
#include "soft_tpm.h"

VG_DEFINE_CLEANUP_FUNC(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free)
VG_DEFINE_CLEANUP_FUNC(ECDSA_SIG, ECDSA_SIG_free)
VG_DEFINE_CLEANUP_FUNC(BIGNUM, BN_free)

/* TCG EK Credential Profile 2.0 §B.3.3: PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256. */
static const uint8_t ek_policy[32] = {
        0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
        0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
        0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
};

void sim_key_clear(struct sim_key *k)
{
        EVP_PKEY_free(k->priv);
        vg_tpm_public_free(k->pub);
        k->priv = NULL;
        k->pub = NULL;
}

static EVP_PKEY *keygen(enum vg_tpm_key_type type)
{
        return type == VG_TPM_KEY_ECC ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                      : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
}

/* Marshal pub, then parse it back with the library so Name and checks are the verifier's. */
static int finish(TPM2B_PUBLIC *pub, EVP_PKEY *priv, struct sim_key *out, struct vg_error *err)
{
        uint8_t buf[sizeof(TPM2B_PUBLIC)];
        size_t off = 0;

        if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off) != 0) {
                EVP_PKEY_free(priv);
                return vg_error_set(err, -EINVAL, "marshalling TPM2B_PUBLIC failed");
        }
        if (vg_tpm_public_parse(buf, off, &out->pub, err) < 0) {
                EVP_PKEY_free(priv);
                return -EINVAL;
        }
        out->priv = priv;
        return 0;
}

static int rsa_modulus(EVP_PKEY *k, uint8_t *out, size_t len)
{
        _cleanup_(BN_freep) BIGNUM *n = NULL;

        if (!EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) ||
            BN_bn2binpad(n, out, (int)len) != (int)len)
                return -EINVAL;
        return 0;
}

int sim_ak_new(enum vg_tpm_key_type type, struct sim_key *out, struct vg_error *err)
{
        TPM2B_PUBLIC pub = { 0 };
        TPMT_PUBLIC *t = &pub.publicArea;
        EVP_PKEY *k = keygen(type);

        memset(out, 0, sizeof(*out));
        if (!k)
                return vg_error_set(err, -ENOMEM, "key generation failed");
        t->nameAlg = TPM2_ALG_SHA256;
        t->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                              TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                              TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
        if (type == VG_TPM_KEY_ECC) {
                uint8_t pt[65];
                size_t len = 0;

                t->type = TPM2_ALG_ECC;
                t->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
                t->parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
                t->parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
                t->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
                t->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
                if (!EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt),
                                                     &len) ||
                    len != 65) {
                        EVP_PKEY_free(k);
                        return vg_error_set(err, -EINVAL, "unexpected EC point");
                }
                t->unique.ecc.x.size = 32;
                memcpy(t->unique.ecc.x.buffer, pt + 1, 32);
                t->unique.ecc.y.size = 32;
                memcpy(t->unique.ecc.y.buffer, pt + 33, 32);
        } else {
                t->type = TPM2_ALG_RSA;
                t->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
                t->parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSASSA;
                t->parameters.rsaDetail.scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
                t->parameters.rsaDetail.keyBits = 2048;
                t->unique.rsa.size = 256;
                if (rsa_modulus(k, t->unique.rsa.buffer, 256) < 0) {
                        EVP_PKEY_free(k);
                        return vg_error_set(err, -EINVAL, "unexpected RSA key");
                }
        }
        return finish(&pub, k, out, err);
}

int sim_ek_new(EVP_PKEY *rsa, struct sim_key *out, struct vg_error *err)
{
        TPM2B_PUBLIC pub = { 0 };
        TPMT_PUBLIC *t = &pub.publicArea;
        EVP_PKEY *k = rsa ? rsa : keygen(VG_TPM_KEY_RSA);

        memset(out, 0, sizeof(*out));
        if (!k)
                return vg_error_set(err, -ENOMEM, "key generation failed");
        if (rsa)
                EVP_PKEY_up_ref(rsa);
        t->type = TPM2_ALG_RSA;
        t->nameAlg = TPM2_ALG_SHA256;
        t->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                              TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY |
                              TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
        t->authPolicy.size = sizeof(ek_policy);
        memcpy(t->authPolicy.buffer, ek_policy, sizeof(ek_policy));
        t->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
        t->parameters.rsaDetail.symmetric.keyBits.aes = 128;
        t->parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
        t->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        t->parameters.rsaDetail.keyBits = 2048;
        t->unique.rsa.size = 256;
        if (rsa_modulus(k, t->unique.rsa.buffer, 256) < 0) {
                EVP_PKEY_free(k);
                return vg_error_set(err, -EINVAL, "the EK is not an RSA-2048 key");
        }
        return finish(&pub, k, out, err);
}

/* TPM2_Sign's view: the AK signs H(TPMS_ATTEST) with its scheme (Part 3 §18.4). */
static int sign(const struct sim_key *ak, const uint8_t *msg, size_t len, TPMT_SIGNATURE *sig,
                struct vg_error *err)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        uint8_t der[512];
        size_t der_len = sizeof(der);

        if (!ctx || EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, ak->priv, NULL) != 1 ||
            EVP_DigestSign(ctx, der, &der_len, msg, len) != 1)
                return vg_error_set(err, -EIO, "signing the quote failed");
        if (ak->pub->type == VG_TPM_KEY_ECC) {
                const uint8_t *p = der;
                _cleanup_(ECDSA_SIG_freep) ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);

                if (!es)
                        return vg_error_set(err, -EIO, "bad ECDSA signature encoding");
                sig->sigAlg = TPM2_ALG_ECDSA;
                sig->signature.ecdsa.hash = TPM2_ALG_SHA256;
                sig->signature.ecdsa.signatureR.size = 32;
                sig->signature.ecdsa.signatureS.size = 32;
                if (BN_bn2binpad(ECDSA_SIG_get0_r(es), sig->signature.ecdsa.signatureR.buffer,
                                 32) != 32 ||
                    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig->signature.ecdsa.signatureS.buffer,
                                 32) != 32)
                        return vg_error_set(err, -EIO, "bad ECDSA signature size");
        } else {
                sig->sigAlg = TPM2_ALG_RSASSA;
                sig->signature.rsassa.hash = TPM2_ALG_SHA256;
                sig->signature.rsassa.sig.size = (UINT16)der_len;
                memcpy(sig->signature.rsassa.sig.buffer, der, der_len);
        }
        return 0;
}

int sim_quote_raw(const struct sim_quote_in *in, uint8_t *attest, size_t *attest_len,
                  uint8_t *sigbuf, size_t *sig_len, struct vg_error *err)
{
        TPMS_ATTEST a = { 0 };
        TPMT_SIGNATURE sig = { 0 };
        TPMS_PCR_SELECTION *sel = &a.attested.quote.pcrSelect.pcrSelections[0];
        struct vg_hash_ctx *h = NULL;
        size_t off = 0;
        int r;

        if (in->nonce_len == 0 || in->nonce_len > sizeof(a.extraData.buffer))
                return vg_error_set(err, -EINVAL, "a nonce of %zu bytes", in->nonce_len);
        a.magic = TPM2_GENERATED_VALUE;
        a.type = TPM2_ST_ATTEST_QUOTE;
        a.qualifiedSigner.size = (UINT16)in->ak->pub->name_len;
        memcpy(a.qualifiedSigner.name, in->ak->pub->name, in->ak->pub->name_len);
        a.extraData.size = (UINT16)in->nonce_len;
        memcpy(a.extraData.buffer, in->nonce, in->nonce_len);
        a.clockInfo.clock = in->clock.clock;
        a.clockInfo.resetCount = in->clock.reset_count;
        a.clockInfo.restartCount = in->clock.restart_count;
        a.clockInfo.safe = in->clock.safe;
        a.firmwareVersion = in->firmware;
        a.attested.quote.pcrSelect.count = 1;
        sel->hash = TPM2_ALG_SHA256;
        sel->sizeofSelect = 3;
        for (unsigned i = 0; i < 3; i++)
                sel->pcrSelect[i] = (uint8_t)(in->mask >> (8 * i));
        /* Part 3 §18.4: pcrDigest = H(the selected PCRs, in selection order). */
        r = vg_hash_new(VG_HASH_SHA256, &h);
        for (unsigned pcr = 0; r == 0 && pcr < VG_PCR_MAX; pcr++)
                if (in->mask >> pcr & 1)
                        r = vg_hash_update(h, in->pcr[pcr], 32);
        if (r == 0)
                r = vg_hash_final(h, a.attested.quote.pcrDigest.buffer);
        vg_hash_free(h);
        if (r < 0)
                return vg_error_set(err, r, "hashing the PCRs failed");
        a.attested.quote.pcrDigest.size = 32;
        if (Tss2_MU_TPMS_ATTEST_Marshal(&a, attest, 512, &off) != 0)
                return vg_error_set(err, -EINVAL, "marshalling TPMS_ATTEST failed");
        *attest_len = off;
        if ((r = sign(in->ak, attest, off, &sig, err)) < 0)
                return r;
        off = 0;
        if (Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, sigbuf, 600, &off) != 0)
                return vg_error_set(err, -EINVAL, "marshalling TPMT_SIGNATURE failed");
        *sig_len = off;
        return 0;
}

int sim_quote(const struct sim_quote_in *in, char **out, struct vg_error *err)
{
        uint8_t attest[512], sig[600];
        size_t attest_len, sig_len, blob_len;
        _cleanup_free_ uint8_t *blob = NULL;
        _cleanup_free_ char *b1 = NULL, *b2 = NULL, *b3 = NULL;
        _cleanup_free_ struct vg_pcr_values *pcrs = calloc(1, sizeof(*pcrs));
        int r;

        if (!pcrs)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if ((r = sim_quote_raw(in, attest, &attest_len, sig, &sig_len, err)) < 0)
                return r;
        pcrs->selection.count = 1;
        pcrs->selection.bank[0] = (struct vg_pcr_bank_sel){ .alg = VG_HASH_SHA256,
                                                            .size_of_select = 3,
                                                            .mask = in->mask };
        for (unsigned pcr = 0; pcr < VG_PCR_MAX; pcr++)
                if (in->mask >> pcr & 1)
                        memcpy(pcrs->value[VG_HASH_SHA256][pcr], in->pcr[pcr], 32);
        if (vg_pcrblob_build(pcrs, &blob, &blob_len) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        b1 = vg_b64_encode(attest, attest_len, VG_B64_STD);
        b2 = vg_b64_encode(sig, sig_len, VG_B64_STD);
        b3 = vg_b64_encode(blob, blob_len, VG_B64_STD);
        if (!b1 || !b2 || !b3 || asprintf(out, "r%s:%s:%s", b1, b2, b3) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

/* KDFa (Part 1 §11.4.10.2) with SHA-256: HMAC(key, [i]32 || label || 0 || u || v || [bits]32). */
static int kdfa(const uint8_t *key, size_t key_len, const char *label, const uint8_t *u,
                size_t u_len, unsigned bits, uint8_t *out)
{
        uint8_t msg[4 + 32 + VG_TPM_NAME_MAX + 4], block[32];
        size_t want = bits / 8, done = 0, lab = strlen(label) + 1, n;
        unsigned len;

        if (lab > 32 || u_len > VG_TPM_NAME_MAX)
                return -EINVAL;
        for (uint32_t i = 1; done < want; i++) {
                uint8_t *p = msg;
                p[0] = (uint8_t)(i >> 24), p[1] = (uint8_t)(i >> 16), p[2] = (uint8_t)(i >> 8),
                p[3] = (uint8_t)i;
                p += 4;
                memcpy(p, label, lab);
                p += lab;
                if (u_len)
                        memcpy(p, u, u_len);
                p += u_len;
                p[0] = (uint8_t)(bits >> 24), p[1] = (uint8_t)(bits >> 16),
                p[2] = (uint8_t)(bits >> 8), p[3] = (uint8_t)bits;
                p += 4;
                if (!HMAC(EVP_sha256(), key, (int)key_len, msg, (size_t)(p - msg), block, &len))
                        return -EIO;
                n = want - done < 32 ? want - done : 32;
                memcpy(out + done, block, n);
                done += n;
        }
        OPENSSL_cleanse(block, sizeof(block));
        return 0;
}

int sim_activate_credential(const struct sim_key *ek, const struct vg_tpm_public *ak,
                            const uint8_t *blob, size_t blob_len, uint8_t *out, size_t *out_len,
                            struct vg_error *err)
{
        struct vg_credential c;
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *cctx = NULL;
        uint8_t seed[512], hkey[32], sym[16], mac[32], plain[2 + 64];
        uint8_t hmsg[sizeof(c.id_object) + VG_TPM_NAME_MAX];
        size_t seed_len = sizeof(seed), secret_len, hmac_len, enc_len;
        unsigned mlen;
        const uint8_t *enc;
        unsigned char *label;
        static const uint8_t iv[16];
        int n, r;

        if ((r = vg_credential_blob_parse(blob, blob_len, &c, err)) < 0)
                return r;
        /* TPM2B_ENCRYPTED_SECRET: the seed under RSA-OAEP-SHA256, label "IDENTITY\0" (B.10.3). */
        secret_len = (size_t)c.secret[0] << 8 | c.secret[1];
        label = OPENSSL_memdup("IDENTITY", 9);
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, ek->priv, NULL);
        if (!label || !ctx || EVP_PKEY_decrypt_init(ctx) <= 0 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, "SHA256", NULL) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, "SHA256", NULL) <= 0 ||
            EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, 9) <= 0) {
                OPENSSL_free(label);
                return vg_error_set(err, -EIO, "RSA-OAEP setup failed");
        }
        if (EVP_PKEY_decrypt(ctx, seed, &seed_len, c.secret + 2, secret_len) <= 0 || seed_len != 32)
                return vg_error_set(err, -EBADMSG,
                                    "ActivateCredential: the seed does not decrypt with this EK");
        /* TPM2B_ID_OBJECT: size, TPM2B_DIGEST integrityHMAC, encIdentity (Part 1 §24.5). */
        hmac_len = (size_t)c.id_object[2] << 8 | c.id_object[3];
        if (hmac_len != 32 || c.id_object_len < 4 + 32 + 2 + 1)
                return vg_error_set(err, -EBADMSG, "ActivateCredential: bad integrity HMAC size");
        enc = c.id_object + 4 + 32;
        enc_len = c.id_object_len - 4 - 32;
        if (enc_len > sizeof(plain))
                return vg_error_set(err, -EBADMSG, "ActivateCredential: credential too long");
        if ((r = kdfa(seed, 32, "INTEGRITY", NULL, 0, 256, hkey)) < 0)
                return vg_error_set(err, r, "KDFa failed");
        memcpy(hmsg, enc, enc_len);
        memcpy(hmsg + enc_len, ak->name, ak->name_len);
        if (!HMAC(EVP_sha256(), hkey, 32, hmsg, enc_len + ak->name_len, mac, &mlen))
                return vg_error_set(err, -EIO, "HMAC failed");
        if (!vg_ct_equal(mac, c.id_object + 4, 32))
                return vg_error_set(err, -EBADMSG,
                                    "ActivateCredential: integrity check failed (not made for "
                                    "this AK and EK)");
        if ((r = kdfa(seed, 32, "STORAGE", ak->name, ak->name_len, 128, sym)) < 0)
                return vg_error_set(err, r, "KDFa failed");
        cctx = EVP_CIPHER_CTX_new();
        if (!cctx || EVP_DecryptInit_ex2(cctx, EVP_aes_128_cfb128(), sym, iv, NULL) != 1 ||
            EVP_DecryptUpdate(cctx, plain, &n, enc, (int)enc_len) != 1 || (size_t)n != enc_len)
                return vg_error_set(err, -EIO, "AES-128-CFB decryption failed");
        *out_len = (size_t)plain[0] << 8 | plain[1];
        if (*out_len == 0 || *out_len + 2 != enc_len || *out_len > 64)
                return vg_error_set(err, -EBADMSG, "ActivateCredential: bad credential size");
        memcpy(out, plain + 2, *out_len);
        OPENSSL_cleanse(seed, sizeof(seed));
        OPENSSL_cleanse(sym, sizeof(sym));
        OPENSSL_cleanse(plain, sizeof(plain));
        return 0;
}
