/* vigil fuzz: TCG event logs. Each input is parsed; a log that parses is replayed, checked
 * against its own replay, decoded and rendered as text and JSON (src/lib/eventlog.c, efi.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "eventlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vg_evlog *log = NULL;
        struct vg_error err = { 0 };

        if (vg_evlog_parse(data, size, &log, &err) < 0)
                return 0;
        struct vg_evlog_pcrs *pcrs = malloc(sizeof(*pcrs));
        if (pcrs && vg_evlog_replay(log, SIZE_MAX, pcrs, &err) == 0 && pcrs->n_banks > 0 &&
            pcrs->banks[0].replayed) {
                struct vg_evlog_pcr_value v = { .alg_id = pcrs->banks[0].alg_id,
                                                .pcr = 0,
                                                .size = pcrs->banks[0].size };
                struct vg_evlog_mismatch *mm = NULL;
                size_t n = 0;
                v.digest[0] = 1; /* almost surely a mismatch: exercises the history search */
                vg_evlog_replay_check(log, &v, 1, &mm, &n, &err);
                free(mm);
                struct vg_evlog_divergence dv;
                vg_evlog_first_divergence(log, log, v.alg_id, 4, &dv, &err);
        }
        free(pcrs);
        FILE *f = fopen("/dev/null", "w");
        if (f) {
                vg_evlog_print(log, f, &err);
                fclose(f);
        }
        json_t *j = vg_evlog_to_json(log, &err);
        char *s = j ? json_dumps(j, 0) : NULL;
        free(s);
        json_decref(j);
        vg_evlog_free(log);
        return 0;
}
