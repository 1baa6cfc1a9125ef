/* vigil fuzz: TPM2B_PUBLIC parsing (Keylime's ek_tpm / aik_tpm) must refuse or accept any
 * bytes without crashing; an accepted key must also export, name and check cleanly. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tpm_public.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vg_tpm_public *pub = NULL;
        struct vg_error err = { 0 };
        char *pem = NULL, *name;

        if (vg_tpm_public_parse(data, size, &pub, &err) < 0)
                return 0;
        if (vg_tpm_public_to_pem(pub, &pem, &err) == 0)
                free(pem);
        name = vg_tpm_public_name_hex(pub);
        free(name);
        vg_tpm_public_check_ak(pub, &err);
        vg_tpm_public_check_ek(pub, &err);
        vg_tpm_public_free(pub);
        return 0;
}
