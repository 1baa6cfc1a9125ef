/* vigil fuzz target: the integrity event validator on arbitrary bytes (vigil's form and GCE's log
 * entry). Whatever is accepted serializes to a line that parses again to the same line, with the
 * same id, agent and kind; every refusal says why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integrity_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond, what)                                                                          \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz_integrity_event: %s\n", what);                       \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vg_error err = { 0 };
        struct vg_ievent_info info, again_info;
        json_t *ev = NULL, *again = NULL;

        if (vg_ievent_parse(data, size, &ev, &info, &err) < 0) {
                check(err.code < 0 && err.msg[0], "a refusal without a message");
                check(ev == NULL, "a refusal with an event");
                return 0;
        }
        check(vg_ievent_validate(ev, NULL, &err) == 0, "a parsed event does not validate");
        char *line = vg_ievent_dumps(ev);
        check(line && !strchr(line, '\n'), "serialization failed or spans lines");
        if (vg_ievent_parse(line, strlen(line), &again, &again_info, &err) < 0) {
                fprintf(stderr, "serialized event refused: %s\n---\n%s\n", err.msg, line);
                abort();
        }
        check(strcmp(info.event_id, again_info.event_id) == 0, "eventId changed");
        check(strcmp(info.agent_id, again_info.agent_id) == 0, "agentId changed");
        check(info.kind == again_info.kind && info.severity == again_info.severity &&
                  info.passed == again_info.passed && info.boot_counter == again_info.boot_counter,
              "kind, severity, verdict or bootCounter changed");
        char *line2 = vg_ievent_dumps(again);
        check(line2 && strcmp(line, line2) == 0, "serialization is not stable");
        free(line);
        free(line2);
        json_decref(again);
        json_decref(ev);
        return 0;
}
