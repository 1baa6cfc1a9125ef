/* vigil: the few TPM notions both sides share: the agent's TPM layer (tpm.h) and the
 * verifier's and registrar's software checks (tpm_public.h, quote.h, credential.h). */
#pragma once

/* The asymmetric algorithm of a TPM key (TPM2_ALG_RSA 0x0001 / TPM2_ALG_ECC 0x0023). The agent
 * creates RSA 2048 or NIST P-256 keys; an AK then signs with RSASSA or ECDSA. */
enum vg_tpm_key_type {
        VG_TPM_KEY_RSA,
        VG_TPM_KEY_ECC,
};
