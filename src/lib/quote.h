/* vigil: the Keylime quote string (`r<TPMS_ATTEST>:<TPMT_SIGNATURE>:<pcrblob>`) parsed and
 * verified in software: signature, nonce, PCR selection and digest, clock, PCR16, tpm_policy. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "error.h"
#include "hash.h"

/* Keylime selects with sizeofSelect 3: PCRs 0..23. */
#define VG_PCR_MAX 24
#define VG_PCR_IMA 10
#define VG_PCR_NK  16

/* One bank of a TPML_PCR_SELECTION (Part 2 §10.6.2). */
struct vg_pcr_bank_sel {
        enum vg_hash_alg alg;
        uint8_t size_of_select; /* as received, 1..4; kept so re-encoding is byte-exact */
        uint32_t mask;          /* bit n: PCR n */
};

struct vg_pcr_selection {
        unsigned count; /* banks, in the order given; each alg at most once */
        struct vg_pcr_bank_sel bank[VG_HASH_ALG_COUNT];
};

/* PCR values as sent in the pcrblob: value[alg][pcr] for every PCR the selection names. */
struct vg_pcr_values {
        struct vg_pcr_selection selection;
        uint8_t value[VG_HASH_ALG_COUNT][VG_PCR_MAX][VG_HASH_MAX_SIZE];
};

/* TPMS_CLOCK_INFO (Part 2 §10.11.1). */
struct vg_clock_info {
        uint64_t clock; /* ms the TPM has been powered, non-volatile */
        uint32_t reset_count;
        uint32_t restart_count;
        uint8_t safe;
};

/* TPMS_ATTEST with TPMS_QUOTE_INFO (Part 2 §10.12.8, §10.12.1). */
struct vg_quote_attest {
        uint8_t signer[68]; /* qualifiedSigner, a TPM2B_NAME */
        size_t signer_len;
        uint8_t extra_data[64]; /* the nonce the quote answers */
        size_t extra_data_len;
        struct vg_clock_info clock_info;
        uint64_t firmware_version;
        struct vg_pcr_selection selection;
        uint8_t pcr_digest[VG_HASH_MAX_SIZE];
        size_t pcr_digest_len;
};

enum vg_quote_sig_alg {
        VG_QUOTE_SIG_RSASSA, /* TPM2_ALG_RSASSA 0x0014, RSASSA-PKCS1-v1_5 */
        VG_QUOTE_SIG_RSAPSS, /* TPM2_ALG_RSAPSS 0x0016 */
        VG_QUOTE_SIG_ECDSA,  /* TPM2_ALG_ECDSA 0x0018 */
};

/* TPMT_SIGNATURE (Part 2 §11.3.4). */
struct vg_quote_signature {
        enum vg_quote_sig_alg alg;
        enum vg_hash_alg hash;
        uint8_t sig[512]; /* RSA */
        size_t sig_len;
        uint8_t r[66], s[66]; /* ECDSA */
        size_t r_len, s_len;
};

struct vg_quote {
        uint8_t *attest_raw; /* the signed bytes, exactly as received */
        size_t attest_len;
        struct vg_quote_attest attest;
        struct vg_quote_signature sig;
        struct vg_pcr_values pcrs; /* from the pcrblob; trust them only after vg_quote_verify */
};

/* Why a quote was refused; each check has its own value. */
enum vg_quote_status {
        VG_QUOTE_OK = 0,
        VG_QUOTE_MALFORMED,          /* not a parseable quote */
        VG_QUOTE_SIG_ALG_REFUSED,    /* signature scheme not accepted */
        VG_QUOTE_HASH_ALG_MISMATCH,  /* signature hash differs from the expected hash_alg */
        VG_QUOTE_KEY_MISMATCH,       /* signature scheme does not fit the AK's key type */
        VG_QUOTE_BAD_SIGNATURE,      /* the AK did not sign these TPMS_ATTEST bytes */
        VG_QUOTE_NONCE_MISMATCH,     /* extraData != nonce */
        VG_QUOTE_SELECTION_MISMATCH, /* quoted selection != pcrblob selection */
        VG_QUOTE_PCR_DIGEST_MISMATCH,
        VG_QUOTE_CLOCK_UNSAFE, /* clockInfo.safe == 0 */
        VG_QUOTE_RESET_DECREASED,
        VG_QUOTE_RESTART_DECREASED,
        VG_QUOTE_CLOCK_STALLED,   /* clock did not advance */
        VG_QUOTE_PCR_MISSING,     /* a PCR the check needs was not quoted */
        VG_QUOTE_PCR16_MISMATCH,  /* NK binding */
        VG_QUOTE_POLICY_MISMATCH, /* a PCR differs from tpm_policy */
};
const char *vg_quote_status_str(enum vg_quote_status st);

/*
 * Parse "r<b64>:<b64>:<b64>" (len bytes, no NUL needed). Every structure must be consumed
 * exactly; the legacy zlib form (API 1.0, leading 'c') is refused: Keylime has not sent it
 * since API 2.0. *out is new; free it with vg_quote_free().
 */
int vg_quote_parse(const char *s, size_t len, struct vg_quote **out, struct vg_error *err);
void vg_quote_free(struct vg_quote *q);
VG_DEFINE_CLEANUP_FUNC(struct vg_quote, vg_quote_free)
#define _cleanup_quote_ _cleanup_(vg_quote_freep)

/* Marshal the parsed parts again into the quote string (tests: parse . format == id). */
int vg_quote_format(const struct vg_quote *q, char **out);

/* The pcrblob alone: tpm2-tools' little-endian in-memory TPML_PCR_SELECTION + TPML_DIGEST[]. */
int vg_pcrblob_parse(const uint8_t *data, size_t len, struct vg_pcr_values *out,
                     struct vg_error *err);
int vg_pcrblob_build(const struct vg_pcr_values *pcrs, uint8_t **out, size_t *len);

struct vg_quote_expect {
        const uint8_t *nonce; /* what extraData must be */
        size_t nonce_len;
        enum vg_hash_alg hash_alg; /* the signature's (and so the pcrDigest's) hash */
        unsigned sig_algs;         /* bits 1u << VG_QUOTE_SIG_*; 0 accepts all three */
};

/*
 * Keylime's checkquote, stricter: the hash and scheme are accepted, the scheme fits the AK,
 * the AK signed H(TPMS_ATTEST), extraData == nonce (constant time), the quoted selection equals
 * the pcrblob's, and pcrDigest == H(PCR values in selection order). Returns 0, or -EBADMSG with
 * *status naming the failed check and err saying what differed. On success q->pcrs can be
 * trusted for policy checks.
 */
int vg_quote_verify(const struct vg_quote *q, EVP_PKEY *ak, const struct vg_quote_expect *exp,
                    enum vg_quote_status *status, struct vg_error *err);

/* Keylime's check_quote_timing: safe must be 1; against the previous quote's clock info (may
 * be NULL) resetCount must not decrease, restartCount not within one reset, clock must advance. */
int vg_quote_check_clock(const struct vg_clock_info *prev, const struct vg_clock_info *cur,
                         enum vg_quote_status *status, struct vg_error *err);

/* The value PCR16 holds after PCR_Reset(16) and PCR_Extend(16, H(pem)): H(0..0 || H(pem)). */
int vg_quote_pcr16_expected(enum vg_hash_alg alg, const void *pem, size_t pem_len, uint8_t *out);
/* Check PCR16 of bank alg in pcrs against the NK's PEM. */
int vg_quote_check_pcr16(const struct vg_pcr_values *pcrs, enum vg_hash_alg alg, const void *pem,
                         size_t pem_len, enum vg_quote_status *status, struct vg_error *err);

/* The PCR value of bank alg, or NULL when not in the selection. */
const uint8_t *vg_pcr_value(const struct vg_pcr_values *pcrs, enum vg_hash_alg alg, unsigned pcr);

/* Keylime's tpm_policy: {"<pcr>": ["hex", ...] or "hex", "mask": "0x..."}. */
struct vg_tpm_policy_pcr {
        size_t count;
        uint8_t (*values)[VG_HASH_MAX_SIZE];
        size_t *lens;
};

struct vg_tpm_policy {
        uint32_t mask; /* the given mask ORed with the PCRs that have values */
        uint32_t with_values;
        struct vg_tpm_policy_pcr pcr[VG_PCR_MAX];
};

/* PCR 10 (IMA) and 16 (NK binding) are refused, as are PCRs > 23, bad hex and other keys. */
int vg_tpm_policy_parse(const char *json, struct vg_tpm_policy **out, struct vg_error *err);
void vg_tpm_policy_free(struct vg_tpm_policy *p);
VG_DEFINE_CLEANUP_FUNC(struct vg_tpm_policy, vg_tpm_policy_free)
#define _cleanup_tpm_policy_ _cleanup_(vg_tpm_policy_freep)
/* Every PCR with values must be quoted in bank alg and equal one of them. */
int vg_tpm_policy_check(const struct vg_tpm_policy *p, const struct vg_pcr_values *pcrs,
                        enum vg_hash_alg alg, enum vg_quote_status *status, struct vg_error *err);
