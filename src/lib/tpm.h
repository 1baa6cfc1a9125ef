/* vigil: the agent's TPM through tpm2-tss ESAPI: EK and EK certificates, the AK (created,
 * saved, reloaded), ActivateCredential, PCRs, and quotes in Keylime's wire format. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"
#include "tpm_types.h"
#include "hash.h"

#define VG_TPM_DEFAULT_TCTI "device:/dev/tpmrm0"
#define VG_TPM_PCR_COUNT    24
/* TPM2B_DATA holds at most sizeof(TPMU_HA) bytes (TPM 2.0 Part 2, 10.4.3). */
#define VG_TPM_NONCE_MAX 64
/* How often vg_tpm_quote() re-reads and re-quotes when a PCR moved in between. */
#define VG_TPM_QUOTE_ATTEMPTS 10

/* TCG EK Credential Profile 2.x, 2.2.1.4: NV indices of the EK certificates and the
 * persistent handles of the EKs ("low range"). */
#define VG_TPM_NV_EK_CERT_RSA    0x01c00002u
#define VG_TPM_NV_EK_CERT_ECC    0x01c0000au
#define VG_TPM_NV_EK_CHAIN_FIRST 0x01c00100u
#define VG_TPM_NV_EK_CHAIN_LAST  0x01c001ffu
#define VG_TPM_EK_HANDLE_RSA     0x81010001u
#define VG_TPM_EK_HANDLE_ECC     0x81010002u

/* Special values for the handle argument of vg_tpm_ek_load(). */
#define VG_TPM_EK_DEFAULT  0u          /* the persistent EK if present, else the template */
#define VG_TPM_EK_TEMPLATE 0xffffffffu /* always CreatePrimary from the template */

struct vg_tpm;

/* Flags of vg_tpm_open(). */
enum {
        /* Flush transient objects and sessions left in the TPM by a process that died
         * holding them. Only for a TPM without resource manager that this process alone
         * uses (device:/dev/tpm0, swtpm, mssim); with one it only sees its own handles. */
        VG_TPM_OPEN_FLUSH_STALE = 1u << 0,
};

/* Open a TPM through a TCTI configuration string as tpm2-tools' -T takes it:
 * "device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321", "mssim:...", "tabrmd:...".
 * NULL or "" means VG_TPM_DEFAULT_TCTI. */
int vg_tpm_open(const char *tcti, unsigned flags, struct vg_tpm **out, struct vg_error *err);
/* Flush every transient object this context loaded (the EK if created, the AK), release the
 * handles of persistent ones, and close the TCTI. NULL is a no-op. */
void vg_tpm_close(struct vg_tpm *tpm);
VG_DEFINE_CLEANUP_FUNC(struct vg_tpm, vg_tpm_close)
#define _cleanup_tpm_ _cleanup_(vg_tpm_closep)

/* Protocol names of an algorithm, as Keylime's agent reports them in /agent/info and the
 * quote replies: "rsa"/"ecc" (enc_alg), "rsassa"/"ecdsa" (sign_alg). */
const char *vg_tpm_key_type_name(enum vg_tpm_key_type alg);
const char *vg_tpm_sign_alg_name(enum vg_tpm_key_type alg);

/* ---- EK ---------------------------------------------------------------------------------- */

/* The EK certificate (DER) from NV VG_TPM_NV_EK_CERT_RSA or _ECC, trimmed to its DER length
 * (some TPMs pad the index). -ENOENT when the index is not defined. *der is malloc'd. */
int vg_tpm_ek_cert_read(struct vg_tpm *tpm, enum vg_tpm_key_type alg, uint8_t **der, size_t *len,
                        struct vg_error *err);
/* Every certificate in the chain indices 0x01c00100..0x01c001ff, in index order, as
 * concatenated DER. *len is 0 (and *der NULL) when the TPM has none. */
int vg_tpm_ek_chain_read(struct vg_tpm *tpm, uint8_t **der, size_t *len, struct vg_error *err);

/* Make the EK usable: handle VG_TPM_EK_DEFAULT uses the persistent EK of alg if the TPM has
 * one, else creates it from the TCG default template (EK Credential Profile 2.x, B.3.3
 * template L-1 for RSA, B.3.4 template L-2 for ECC) so it matches the EK certificate;
 * VG_TPM_EK_TEMPLATE always creates it; any other value is a persistent handle to use (the
 * agent's ek_handle option). Replaces an EK loaded before. */
int vg_tpm_ek_load(struct vg_tpm *tpm, enum vg_tpm_key_type alg, uint32_t handle,
                   struct vg_error *err);
/* The EK public area as marshalled TPM2B_PUBLIC (Keylime's ek_tpm). *out is malloc'd. */
int vg_tpm_ek_public(struct vg_tpm *tpm, uint8_t **out, size_t *len, struct vg_error *err);
enum vg_tpm_key_type vg_tpm_ek_alg(const struct vg_tpm *tpm);

/* ---- AK ---------------------------------------------------------------------------------- */

struct vg_tpm_ak_params {
        enum vg_tpm_key_type alg; /* RSA 2048 + RSASSA, or P-256 + ECDSA */
        enum vg_hash_alg hash;    /* signing scheme and name hash (Keylime's tpm_hash_alg) */
};

/* Create a restricted signing key under the EK (TPM2_Create authorised by the EK's policy,
 * PolicySecret(TPM_RH_ENDORSEMENT)) and load it. Needs vg_tpm_ek_load() first. */
int vg_tpm_ak_create(struct vg_tpm *tpm, const struct vg_tpm_ak_params *params,
                     struct vg_error *err);
/* Write the loaded AK's TPM2B_PUBLIC and TPM2B_PRIVATE to path (mode 0600, replaced
 * atomically). The private part is wrapped by the EK, so only this TPM can load it. */
int vg_tpm_ak_save(struct vg_tpm *tpm, const char *path, struct vg_error *err);
/* Load an AK that vg_tpm_ak_save() wrote, under the current EK. -ENOENT when path does not
 * exist; -EBADMSG when it is not an AK file; a TPM error when the EK is not its parent. */
int vg_tpm_ak_load(struct vg_tpm *tpm, const char *path, struct vg_error *err);
/* Agent start-up: load path if it exists and was made with the same params (-ESTALE when
 * not: the caller decides whether to discard it), else create an AK and save it there.
 * *created (may be NULL) says which happened. */
int vg_tpm_ak_load_or_create(struct vg_tpm *tpm, const char *path,
                             const struct vg_tpm_ak_params *params, bool *created,
                             struct vg_error *err);
/* Make the loaded AK persistent at handle (0x81000000..0x817fffff) with TPM2_EvictControl
 * under the owner hierarchy; afterwards the context uses the persistent copy. */
int vg_tpm_ak_persist(struct vg_tpm *tpm, uint32_t handle, struct vg_error *err);
/* Use an AK already persistent at handle (instead of a file). */
int vg_tpm_ak_use_persistent(struct vg_tpm *tpm, uint32_t handle, struct vg_error *err);
/* TPM2_EvictControl the persistent object at handle out of NV; -ENOENT if there is none. */
int vg_tpm_evict(struct vg_tpm *tpm, uint32_t handle, struct vg_error *err);

/* The AK public area as marshalled TPM2B_PUBLIC (Keylime's aik_tpm / ak_tpm). */
int vg_tpm_ak_public(struct vg_tpm *tpm, uint8_t **out, size_t *len, struct vg_error *err);
/* The AK's Name: nameAlg (big-endian u16) || H_nameAlg(TPMT_PUBLIC) (TPM 2.0 Part 1, 16). */
int vg_tpm_ak_name(struct vg_tpm *tpm, uint8_t **out, size_t *len, struct vg_error *err);
/* Parameters of the loaded AK; -ENOENT when none is loaded. */
int vg_tpm_ak_get_params(const struct vg_tpm *tpm, struct vg_tpm_ak_params *out);

/* ---- ActivateCredential -------------------------------------------------------------------- */

/* TPM2_ActivateCredential (TPM 2.0 Part 3, 12.5) of the AK with the EK: credential_blob is
 * the TPM2B_ID_OBJECT, secret the TPM2B_ENCRYPTED_SECRET, both marshalled with their size
 * prefix. *cred gets the recovered credential (caller frees; it is a secret). */
int vg_tpm_activate_credential(struct vg_tpm *tpm, const uint8_t *credential_blob, size_t blob_len,
                               const uint8_t *secret, size_t secret_len, uint8_t **cred,
                               size_t *cred_len, struct vg_error *err);
/* The same from a tpm2-tools credential file, as Keylime's registrar sends it in "blob":
 * u32 0xBADCC0DE, u32 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET, all big-endian. */
int vg_tpm_activate_credential_file(struct vg_tpm *tpm, const uint8_t *file, size_t len,
                                    uint8_t **cred, size_t *cred_len, struct vg_error *err);

/* ---- PCRs ------------------------------------------------------------------------------------ */

/* Values of the PCRs of one bank. */
struct vg_tpm_pcrs {
        enum vg_hash_alg alg;
        uint32_t mask; /* bit n: PCR n is selected and value[n] holds it */
        uint8_t value[VG_TPM_PCR_COUNT][VG_HASH_MAX_SIZE];
};

/* TPM2_PCR_Read of the PCRs in mask from bank alg (as many commands as it takes, 8 digests
 * each). -EOPNOTSUPP when the bank is not active. */
int vg_tpm_pcr_read(struct vg_tpm *tpm, enum vg_hash_alg alg, uint32_t mask,
                    struct vg_tpm_pcrs *out, struct vg_error *err);
/* TPM2_PCR_Extend of one bank: pcr = H(pcr || digest); digest has vg_hash_size(alg) bytes. */
int vg_tpm_pcr_extend(struct vg_tpm *tpm, unsigned pcr, enum vg_hash_alg alg, const uint8_t *digest,
                      struct vg_error *err);
/* TPM2_PCR_Reset (16 and 23 are resettable from locality 0, PC Client PTP). */
int vg_tpm_pcr_reset(struct vg_tpm *tpm, unsigned pcr, struct vg_error *err);
/* Keylime's NK binding: PCR_Reset(16), then PCR_Extend(16, H(data)) in bank alg, where data
 * is the NK public key PEM. The verifier expects H(0...0 || H(data)) in PCR 16. */
int vg_tpm_pcr16_bind(struct vg_tpm *tpm, enum vg_hash_alg alg, const void *data, size_t len,
                      struct vg_error *err);

/* ---- Quote ----------------------------------------------------------------------------------- */

struct vg_tpm_quote {
        uint8_t *attest; /* TPMS_ATTEST as the TPM marshalled it (TPM2B_ATTEST contents) */
        size_t attest_len;
        uint8_t *sig; /* TPMT_SIGNATURE, marshalled */
        size_t sig_len;
        struct vg_tpm_pcrs pcrs; /* exactly the quoted selection; matches its pcrDigest */
        unsigned attempts;       /* 1 unless a PCR changed between read and quote */
};

/* TPM2_Quote (TPM 2.0 Part 3, 18.4) with the AK's scheme over the PCRs in mask of bank
 * pcr_alg with qualifying data nonce (at most VG_TPM_NONCE_MAX bytes). Reads the PCRs first
 * and re-does both until the quote's pcrDigest is the hash of the values read, at most
 * VG_TPM_QUOTE_ATTEMPTS times (-EAGAIN after that). Free out with vg_tpm_quote_clear(). */
int vg_tpm_quote(struct vg_tpm *tpm, const uint8_t *nonce, size_t nonce_len,
                 enum vg_hash_alg pcr_alg, uint32_t mask, struct vg_tpm_quote *out,
                 struct vg_error *err);
void vg_tpm_quote_clear(struct vg_tpm_quote *q);

/* Pure: check that attest (a marshalled TPMS_ATTEST of type quote) selects exactly pcrs'
 * bank and PCRs and that its pcrDigest is H_digest_alg(values in PCR order). -EBADMSG when
 * attest does not parse, -ESTALE when the selection or digest differs. */
int vg_tpm_quote_check_pcrs(const uint8_t *attest, size_t attest_len,
                            const struct vg_tpm_pcrs *pcrs, enum vg_hash_alg digest_alg,
                            struct vg_error *err);

/* Pure: Keylime's pcrblob, the tpm2-tools in-memory (host-endian) TPML_PCR_SELECTION of
 * pcrs' one bank followed by u32 n and n TPML_DIGEST of up to 8 values each, PCR order. */
int vg_tpm_pcrblob(const struct vg_tpm_pcrs *pcrs, uint8_t **out, size_t *len);

/* Pure: the quote string "r" b64(TPMS_ATTEST) ":" b64(TPMT_SIGNATURE) ":" b64(pcrblob). */
int vg_tpm_quote_string(const struct vg_tpm_quote *q, char **out);
