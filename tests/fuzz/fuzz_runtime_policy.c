/* vigil fuzz target: runtime policies, as JSON v1 and as a flat allowlist + exclude list (split
 * at the first NUL byte). Whatever parses writes back (to_json) to a policy that parses to the
 * same text; every refusal says where. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ima.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond, what)                                                                          \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz_runtime_policy: %s\n", what);                        \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static void round_trip(const struct vg_ima_policy *p)
{
        struct vg_ima_policy *again = NULL;
        struct vg_error err = { 0 };
        char *a = NULL, *b = NULL;

        check(vg_ima_policy_to_json(p, &a, &err) == 0, "to_json failed");
        if (vg_ima_policy_parse(a, strlen(a), &again, &err) < 0) {
                fprintf(stderr, "written policy refused: %s\n---\n%s\n", err.msg, a);
                abort();
        }
        check(vg_ima_policy_to_json(again, &b, &err) == 0, "second to_json failed");
        check(strcmp(a, b) == 0, "policy changed through to_json and parse");
        check(vg_ima_policy_digest_count(again) == vg_ima_policy_digest_count(p),
              "digest count changed");
        check(vg_ima_policy_exclude_count(again) == vg_ima_policy_exclude_count(p),
              "exclude count changed");
        free(a);
        free(b);
        vg_ima_policy_unref(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vg_ima_policy *p = NULL;
        struct vg_error err = { 0 };
        const char *text = (const char *)data;
        const uint8_t *nul = memchr(data, 0, size);
        size_t alen = nul ? (size_t)(nul - data) : size;

        if (vg_ima_policy_parse(text, size, &p, &err) == 0) {
                round_trip(p);
                vg_ima_policy_unref(p);
        } else {
                check(err.msg[0], "JSON refused without a message");
        }
        p = NULL;
        if (vg_ima_policy_from_lists(text, alen, nul ? text + alen + 1 : NULL,
                                     nul ? size - alen - 1 : 0, &p, &err) == 0) {
                round_trip(p);
                vg_ima_policy_unref(p);
        } else {
                check(strstr(err.msg, "allowlist") || strstr(err.msg, "exclude list"),
                      "flat list refused without saying which");
        }
        return 0;
}
