/* vigil fuzz: the JWE reader (compact and JSON serializations) and the pin configuration that
 * clevis luks list shows, from bytes as they come from a command line or a LUKS2 token. */
#include <stdint.h>
#include <stdlib.h>

#include "jwe.h"
#include "pin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vg_jwe jwe = { 0 };
        struct vg_error err = { 0 };
        char *pin = NULL;
        json_t *cfg = NULL;

        if (vg_jwe_parse((const char *)data, size, &jwe, &err) == 0) {
                char *compact = vg_jwe_compact(&jwe);
                json_t *j = vg_jwe_json(&jwe);
                free(compact);
                json_decref(j);
                vg_jwe_clear(&jwe);
        }
        if (vg_pin_config((const char *)data, size, &pin, &cfg, &err) == 0) {
                free(pin);
                json_decref(cfg);
        }
        return 0;
}
