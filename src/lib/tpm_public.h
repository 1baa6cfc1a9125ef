/* vigil: TPM2B_PUBLIC (Keylime's `ek_tpm` / `aik_tpm`) parsed in software into an OpenSSL key,
 * with its attributes, TPM Name, PEM form, and a check against an X.509 (EK) certificate. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "error.h"
#include "tpm_types.h"
#include "hash.h"

/* TPMA_OBJECT bits (TPM 2.0 Part 2 §8.3.2). */
#define VG_TPMA_FIXED_TPM             (1u << 1)
#define VG_TPMA_ST_CLEAR              (1u << 2)
#define VG_TPMA_FIXED_PARENT          (1u << 4)
#define VG_TPMA_SENSITIVE_DATA_ORIGIN (1u << 5)
#define VG_TPMA_USER_WITH_AUTH        (1u << 6)
#define VG_TPMA_ADMIN_WITH_POLICY     (1u << 7)
#define VG_TPMA_NO_DA                 (1u << 10)
#define VG_TPMA_ENCRYPTED_DUPLICATION (1u << 11)
#define VG_TPMA_RESTRICTED            (1u << 16)
#define VG_TPMA_DECRYPT               (1u << 17)
#define VG_TPMA_SIGN                  (1u << 18)

/* The largest Name: a 2-byte algorithm and a SHA-512 digest. */
#define VG_TPM_NAME_MAX (2 + VG_HASH_MAX_SIZE)

struct vg_tpm_public {
        enum vg_tpm_key_type type;
        enum vg_hash_alg name_alg;
        uint32_t attributes;  /* TPMA_OBJECT, VG_TPMA_* */
        uint16_t sym_alg;     /* TPM2_ALG_ID: 0x0006 AES, 0x0010 NULL */
        uint16_t sym_bits;    /* 0 when sym_alg is NULL */
        uint16_t sym_mode;    /* 0x0043 CFB for storage keys (EKs) */
        uint16_t scheme;      /* TPM2_ALG_ID: 0x0014 RSASSA, 0x0016 RSAPSS, 0x0018 ECDSA,
                               * 0x0010 NULL */
        uint16_t scheme_hash; /* TPM2_ALG_ID of the scheme's hash, 0x0010 when none */
        uint16_t key_bits;    /* RSA modulus bits, or the ECC curve's field bits */
        uint16_t curve;       /* TPM2_ECC_CURVE: 0x0003 P-256, 0x0004 P-384, 0x0005 P-521 */
        uint8_t ecc_x[66];    /* the ECC point's x, left-padded to the field size (KDFe) */
        size_t ecc_x_len;
        uint8_t name[VG_TPM_NAME_MAX]; /* nameAlg || H(TPMT_PUBLIC) (Part 1 §16) */
        size_t name_len;
        EVP_PKEY *pkey;      /* the public key; owned */
        uint8_t *marshalled; /* the whole TPM2B_PUBLIC as received; owned */
        size_t marshalled_len;
};

/*
 * Parse a marshalled TPM2B_PUBLIC: RSA (1024..4096 bits, exponent 0 meaning 65537) or ECC
 * (NIST P-256, P-384, P-521). Trailing bytes, a size field that disagrees with the contents,
 * unknown algorithms and points off the curve are refused with a message saying which.
 * On success *out is new and must be freed with vg_tpm_public_free().
 */
int vg_tpm_public_parse(const uint8_t *data, size_t len, struct vg_tpm_public **out,
                        struct vg_error *err);
/* The same from base64 (how Keylime sends `ek_tpm` and `aik_tpm`). */
int vg_tpm_public_parse_b64(const char *b64, struct vg_tpm_public **out, struct vg_error *err);
void vg_tpm_public_free(struct vg_tpm_public *pub);
VG_DEFINE_CLEANUP_FUNC(struct vg_tpm_public, vg_tpm_public_free)
#define _cleanup_tpm_public_ _cleanup_(vg_tpm_public_freep)

/* SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----"), NUL-terminated; free(). */
int vg_tpm_public_to_pem(const struct vg_tpm_public *pub, char **pem, struct vg_error *err);
/* Lower-case hex of the Name, as `tpm2_readpublic` prints it; free(). NULL on ENOMEM. */
char *vg_tpm_public_name_hex(const struct vg_tpm_public *pub);

/* "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign" style, into buf. */
const char *vg_tpm_public_attributes_str(uint32_t attributes, char *buf, size_t size);

/*
 * Does the certificate (DER or PEM) certify this very key? 0 when it does; -EKEYREJECTED with
 * a message when the keys differ; -EINVAL when the certificate cannot be read. The registrar
 * checks `ek_tpm` against `ekcert` this way (Keylime registration step 2).
 */
int vg_tpm_public_match_cert(const struct vg_tpm_public *pub, const uint8_t *cert, size_t len,
                             struct vg_error *err);

/* Checks an AK must pass: restricted signing key, fixedTPM and fixedParent, not a decryption
 * key, with a signing scheme. -EKEYREJECTED naming the first missing property. */
int vg_tpm_public_check_ak(const struct vg_tpm_public *pub, struct vg_error *err);
/* Checks an EK must pass: restricted decryption (storage) key with fixedTPM and AES-CFB. */
int vg_tpm_public_check_ek(const struct vg_tpm_public *pub, struct vg_error *err);

VG_DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
VG_DEFINE_CLEANUP_FUNC(EVP_PKEY_CTX, EVP_PKEY_CTX_free)
VG_DEFINE_CLEANUP_FUNC(EVP_MD_CTX, EVP_MD_CTX_free)
