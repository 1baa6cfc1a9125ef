/* vigil bench: a TPM in software for LOAD GENERATION ONLY (fleet_sim, bench_quote_verify): keys
 * held in process memory, so nothing it signs proves anything. Never link it into a product. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "error.h"
#include "quote.h"
#include "tpm_public.h"

/* A software key and its TPM2B_PUBLIC (parsed back by the library: Name, marshalled bytes). */
struct sim_key {
        EVP_PKEY *priv;
        struct vg_tpm_public *pub;
};

/* An AK: restricted signing key, fixedTPM|fixedParent, nameAlg SHA-256; ECDSA P-256 or
 * RSASSA-2048, both with SHA-256. */
int sim_ak_new(enum vg_tpm_key_type type, struct sim_key *out, struct vg_error *err);
/* An RSA-2048 EK as the TCG EK profile template L-1 describes (restricted decryption,
 * AES-128-CFB, nameAlg SHA-256, the standard PolicySecret(endorsement) policy). rsa may be an
 * existing RSA-2048 private key (reference taken) or NULL for a new one. */
int sim_ek_new(EVP_PKEY *rsa, struct sim_key *out, struct vg_error *err);
void sim_key_clear(struct sim_key *k);

/* What one TPM2_Quote covers: the SHA-256 bank, PCRs in mask (bit n: PCR n). */
struct sim_quote_in {
        const struct sim_key *ak;
        const uint8_t *nonce; /* extraData, 1..64 bytes */
        size_t nonce_len;
        uint32_t mask;
        const uint8_t (*pcr)[32]; /* all 24 SHA-256 PCR values */
        struct vg_clock_info clock;
        uint64_t firmware;
};

/* The Keylime quote string "r<TPMS_ATTEST>:<TPMT_SIGNATURE>:<pcrblob>" (malloc'd), TPMS_ATTEST
 * and TPMT_SIGNATURE marshalled by tss2-mu, the pcrblob by vg_pcrblob_build(). */
int sim_quote(const struct sim_quote_in *in, char **out, struct vg_error *err);
/* The same pieces, raw, for benchmarks: attest (<= 512 bytes) and signature (<= 600). */
int sim_quote_raw(const struct sim_quote_in *in, uint8_t *attest, size_t *attest_len, uint8_t *sig,
                  size_t *sig_len, struct vg_error *err);

/* TPM2_ActivateCredential (Part 1 §24, Part 3 §12.5) with an RSA EK: the tpm2-tools credential
 * blob as the registrar sends it in `blob`, checked against the AK's Name. out holds 64 bytes. */
int sim_activate_credential(const struct sim_key *ek, const struct vg_tpm_public *ak,
                            const uint8_t *blob, size_t blob_len, uint8_t *out, size_t *out_len,
                            struct vg_error *err);
