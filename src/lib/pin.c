/* vigil: pin dispatch and decryption (placeholder: being written; see pin.h). */
#include <errno.h>

#include "pin_private.h"

int vg_pin_encrypt(const char *pin, const json_t *cfg, const void *pt, size_t pt_len,
                   const struct vg_pin_opts *opts, char **jwe, struct vg_error *err)
{
        return vg_error_set(err, -ENOSYS, "pins are not implemented yet");
}

int vg_pin_decrypt(const char *jwe, size_t jwe_len, const struct vg_pin_opts *opts, uint8_t **pt,
                   size_t *pt_len, struct vg_error *err)
{
        return vg_error_set(err, -ENOSYS, "pins are not implemented yet");
}

int vg_pin_config(const char *jwe, size_t jwe_len, char **pin, json_t **cfg, struct vg_error *err)
{
        return vg_error_set(err, -ENOSYS, "pins are not implemented yet");
}
