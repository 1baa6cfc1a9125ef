/* vigil fuzz target: vigil-responder's rules parser, event parser and matcher on arbitrary bytes.
 * The input is a rules file, an event, or both separated by a line "%%" (then every rule is
 * matched against the event). Refusals must say where; accepted input must hold together. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond, what)                                                                          \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz_responder_rules: %s\n", what);                       \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static void check_rules(const struct vg_rules *rules)
{
        for (size_t k = 0; k < rules->n_rules; k++) {
                const struct vg_resp_rule *r = &rules->rules[k];
                check(r->name && r->name[0], "a rule without a name");
                check(r->n_actions > 0 && r->actions[r->n_actions] == NULL,
                      "a rule's actions are not a non-empty NULL-terminated list");
                for (size_t j = 0; j < r->n_actions; j++)
                        check(vg_rules_action(rules, r->actions[j]->name) == r->actions[j],
                              "a rule names an action that is not in the set");
        }
        for (size_t k = 0; k < rules->n_actions; k++) {
                const struct vg_resp_action *a = &rules->actions[k];
                check(a->timeout_s >= 1, "an action without a timeout");
                if (a->type == VG_RESP_ACT_EXEC || a->type == VG_RESP_ACT_REPROVISION)
                        check(a->command && a->command[0], "a command action without a command");
                if (a->type == VG_RESP_ACT_WEBHOOK)
                        check(a->url != NULL, "a webhook without a url");
                if (a->then)
                        check(a->then->type != VG_RESP_ACT_REPROVISION &&
                                  a->then->type != VG_RESP_ACT_RELEARN,
                              "then names a reprovision or relearn action");
        }
}

static struct vg_resp_event *parse_event(const uint8_t *data, size_t size)
{
        struct vg_resp_event *ev = NULL;
        struct vg_error err = { 0 };
        char pcrs[96];

        if (vg_resp_event_parse(data, size, &ev, &err) < 0) {
                check(strncmp(err.msg, "malformed event: ", 17) == 0 || err.code == -ENOMEM,
                      "an event refusal that does not say so");
                return NULL;
        }
        check(ev->event_id && ev->event_id[0] && ev->agent_id && ev->agent_id[0],
              "an accepted event without ids");
        check(ev->severity && ev->severity_level >= 0, "an accepted event without severity");
        check(ev->passed >= -1 && ev->passed <= 1, "passed out of range");
        check(ev->changed_pcrs >> (VG_RESP_MAX_PCR + 1) == 0, "a changed PCR out of range");
        vg_resp_event_pcr_list(ev, pcrs, sizeof(pcrs));
        check(strlen(pcrs) < sizeof(pcrs), "PCR list overflow");
        return ev;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static bool quiet;
        const uint8_t *sep = NULL;
        struct vg_error err = { 0 };
        struct vg_rules *rules = NULL;

        if (!quiet) {
                vg_log_setup(&(struct vg_log_config){ .component = "fuzz", .level = VG_LOG_ERR });
                quiet = true;
        }
        for (size_t k = 0; k + 4 <= size; k++)
                if (memcmp(data + k, "\n%%\n", 4) == 0) {
                        sep = data + k;
                        break;
                }
        size_t rules_len = sep ? (size_t)(sep - data) : size;

        if (vg_rules_parse((const char *)data, rules_len, "fuzz.toml", &rules, &err) == 0) {
                check_rules(rules);
        } else {
                check(strncmp(err.msg, "fuzz.toml", 9) == 0 || err.code == -ENOMEM,
                      "a rules refusal that does not name the file");
        }
        if (sep) {
                struct vg_resp_event *ev = parse_event(sep + 4, size - rules_len - 4);
                char why[256];
                for (size_t k = 0; ev && rules && k < rules->n_rules; k++) {
                        why[0] = '\0';
                        if (!vg_rule_matches(&rules->rules[k], ev, why, sizeof(why)))
                                check(why[0], "a non-match without a reason");
                }
                vg_resp_event_free(ev);
        } else {
                vg_resp_event_free(parse_event(data, size));
        }
        vg_rules_free(rules);
        return 0;
}
