/* vigil: what the pins share inside vg_pin (not for users of pin.h). pin.c dispatches by pin
 * name and runs decryptions; each pin_<name>.c implements its pin. */
#pragma once

#include "jwe.h"
#include "pin.h"

/* tpm2 (pin_tpm2.c): synchronous, on the TPM named by opts->tcti. encrypt writes the compact
 * JWE; decrypt takes the parsed JWE whose header has clevis.pin "tpm2"; config rebuilds the
 * clevis luks list configuration from the header's clevis.tpm2 object. */
int vg_pin_tpm2_encrypt(const json_t *cfg, const void *pt, size_t pt_len,
                        const struct vg_pin_opts *opts, char **jwe, struct vg_error *err);
int vg_pin_tpm2_decrypt(const struct vg_jwe *jwe, const struct vg_pin_opts *opts, uint8_t **pt,
                        size_t *pt_len, struct vg_error *err);
int vg_pin_tpm2_config(const json_t *clevis_tpm2, json_t **cfg, struct vg_error *err);
