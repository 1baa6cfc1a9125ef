/* vigil fuzz: the database_url parser (Keylime's sqlite / postgresql URL forms). Any input gets
 * a verdict; an accepted URL has a target and a display form that never shows a password. */
#include <stdlib.h>
#include <string.h>

#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const struct vg_store_options opts = { .data_dir = "/var/lib/vigil",
                                               .default_file = "cv_data.sqlite" };
        struct vg_store_url u = { 0 };
        struct vg_error err = { 0 };
        char *url = malloc(size + 1);

        if (!url)
                return 0;
        memcpy(url, data, size);
        url[size] = '\0';
        if (vg_store_url_parse(url, &opts, &u, &err) == 0) {
                if (!u.target || !u.display)
                        abort();
                vg_store_url_clear(&u);
        } else if (!err.msg[0]) {
                abort(); /* every refusal says why */
        }
        free(url);
        return 0;
}
