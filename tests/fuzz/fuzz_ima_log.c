/* vigil fuzz target: the IMA ASCII log through the verifier's engine. The first byte picks the
 * bank and options; the rest is the list. Whatever the input: no crash, every refusal names a
 * line, counts add up, and the state it leaves saves and loads back the same. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ima.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond, what)                                                                          \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz_ima_log: %s\n", what);                               \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* A small policy that exercises every lookup: digests, an exclude, keyrings, ima-buf. */
static const char policy_json[] =
    "{\"meta\": {\"version\": 1, \"generator\": 0}, \"release\": 0, \"digests\": "
    "{\"boot_aggregate\": [\"0000000000000000000000000000000000000000\"], \"/init\": "
    "[\"19f13b42c2745066347e76454788c0fe083643f3\"]}, \"excludes\": [\"/tmp/.*\", "
    "\"/var/(log|cache)/\"], \"keyrings\": {\".ima\": "
    "[\"a7d52aaa18c23d2d9bb2abb4308c0eeee67387a42259f4a6b1a42257065f3d5a\"]}, \"ima\": "
    "{\"ignored_keyrings\": [\".builtin_trusted_keys\"], \"log_hash_alg\": \"sha1\", "
    "\"dm_policy\": null}, \"ima-buf\": {\"kexec-cmdline\": "
    "[\"0000000000000000000000000000000000000000\"]}, \"verification-keys\": \"\"}";

struct count {
        size_t n;
};

static int count_entry(const struct vg_ima_entry *e, void *ud)
{
        struct count *c = ud;

        check(e->path && strlen(e->path) == e->path_len, "path not NUL-terminated at path_len");
        check(e->template_data && e->template_data_len > 0, "no template data");
        check(e->digest_len <= VG_HASH_MAX_SIZE, "digest too long");
        c->n++;
        return 0;
}

static void on_failure(const struct vg_ima_failure *f, void *ud)
{
        size_t *n = ud;

        check(f->message && f->message[0], "failure without a message");
        check(vg_ima_failure_kind_str(f->kind)[0], "failure kind without a name");
        (*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct vg_ima_policy *policy;
        const char *log = (const char *)data + 1;
        size_t len = size ? size - 1 : 0, lines = 0, failures = 0;
        struct vg_ima_state *st = NULL, *back = NULL;
        struct vg_ima_result res;
        struct vg_error err = { 0 };
        struct count c = { 0 };
        uint8_t *saved = NULL;
        size_t saved_len;
        int pr;

        if (!size)
                return 0;
        if (!policy) {
                check(vg_ima_policy_parse(policy_json, strlen(policy_json), &policy, &err) == 0,
                      "fixed policy refused");
        }
        for (size_t i = 0, start = 0; i <= len; i++) {
                if (i == len || log[i] == '\n') {
                        lines += i > start;
                        start = i + 1;
                }
        }

        pr = vg_ima_parse_log(log, len, count_entry, &c, &err);
        if (pr < 0)
                check(strstr(err.msg, "line "), "parse error without a line number");
        else
                check(c.n == lines, "parse_log skipped an entry");

        enum vg_hash_alg bank = (enum vg_hash_alg)(data[0] % VG_HASH_ALG_COUNT);
        struct vg_ima_options o = { .fail_on_violations = data[0] & 0x10,
                                    .on_failure = on_failure,
                                    .userdata = &failures };
        uint8_t pcr[VG_HASH_MAX_SIZE] = { 0 };
        check(vg_ima_state_new(bank, &st) == 0, "state_new");
        check(vg_ima_verify((data[0] & 0x20) ? NULL : policy, st, log, len, 0,
                            (data[0] & 0x40) ? pcr : NULL, &o, &res, &err) == 0,
              "verify refused to walk");
        check(res.entries == lines, "verify miscounted entries");
        check(res.counts.parse == 0 || pr < 0, "verify refused a line parse_log took");
        check(pr == 0 || res.counts.parse > 0, "verify took a line parse_log refused");
        check(res.counts.good + res.counts.excluded <= res.entries, "more good than entries");
        check(!res.pass || (res.counts.template_hash == 0 && res.counts.fnf == 0 &&
                            res.counts.hash == 0 && res.counts.parse == 0),
              "passed with failures");
        check(vg_ima_state_save(st, &saved, &saved_len) == 0, "state_save");
        check(vg_ima_state_load(saved, saved_len, &back, &err) == 0, "state_load of our own save");
        check(vg_ima_state_next_entry(back) == vg_ima_state_next_entry(st) &&
                  memcmp(vg_ima_state_pcr(back), vg_ima_state_pcr(st), vg_hash_size(bank)) == 0 &&
                  vg_ima_state_learned_keys(back) == vg_ima_state_learned_keys(st),
              "state changed through save/load");
        vg_ima_state_free(back);
        back = NULL;
        /* The input as a saved state, too. */
        if (vg_ima_state_load(data, size, &back, &err) == 0)
                vg_ima_state_free(back);
        free(saved);
        vg_ima_state_free(st);
        return 0;
}
