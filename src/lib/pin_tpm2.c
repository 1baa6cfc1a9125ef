/* vigil: the tpm2 pin (placeholder: being written). */
#include <errno.h>

#include "pin_private.h"

int vg_pin_tpm2_encrypt(const json_t *cfg, const void *pt, size_t pt_len,
                        const struct vg_pin_opts *opts, char **jwe, struct vg_error *err)
{
        return vg_error_set(err, -ENOSYS, "the tpm2 pin is not implemented yet");
}

int vg_pin_tpm2_decrypt(const struct vg_jwe *jwe, const struct vg_pin_opts *opts, uint8_t **pt,
                        size_t *pt_len, struct vg_error *err)
{
        return vg_error_set(err, -ENOSYS, "the tpm2 pin is not implemented yet");
}

int vg_pin_tpm2_config(const json_t *clevis_tpm2, json_t **cfg, struct vg_error *err)
{
        return vg_error_set(err, -ENOSYS, "the tpm2 pin is not implemented yet");
}
