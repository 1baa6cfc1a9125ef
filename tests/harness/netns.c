/* vigil tests: a network namespace with a veth pair; see netns.h. */
#include "netns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

void tap_netns_cleanup(struct tap_netns *n)
{
        if (!n->made)
                return;
        char *argv1[] = { "ip", "link", "del", n->host_if, NULL };
        char *argv2[] = { "ip", "netns", "del", n->name, NULL };
        tap_run(argv1, NULL); /* usually gone with the namespace already */
        tap_run(argv2, NULL);
        n->made = false;
}

bool tap_netns_setup(struct tap_netns *n, const char *prefix, char tag)
{
        char *out = NULL;
        int id = (int)(getpid() % 100000);

        if (geteuid() != 0 || tap_runl(&out, "ip", "netns", "list", NULL) != 0) {
                free(out);
                return false;
        }
        free(out);
        snprintf(n->name, sizeof(n->name), "%s-%d", prefix, (int)getpid());
        snprintf(n->host_if, sizeof(n->host_if), "vg%c%dh", tag, id);
        snprintf(n->ns_if, sizeof(n->ns_if), "vg%c%dn", tag, id);
        if (tap_runl(NULL, "ip", "netns", "add", n->name, NULL) != 0)
                return false;
        n->made = true;
        if (tap_runl(NULL, "ip", "link", "add", n->host_if, "type", "veth", "peer", "name",
                     n->ns_if, NULL) != 0 ||
            tap_runl(NULL, "ip", "link", "set", n->ns_if, "netns", n->name, NULL) != 0 ||
            tap_netns_link_set_up(n) != 0 ||
            tap_runl(NULL, "ip", "link", "set", n->host_if, "up", NULL) != 0) {
                tap_netns_cleanup(n);
                return false;
        }
        return true;
}

int tap_netns_link_up(const struct tap_netns *n)
{
        char *out = NULL;
        int rc = tap_runl(&out, "ip", "-n", n->name, "-o", "link", "show", n->ns_if, NULL);
        int up = -1;

        if (rc == 0 && out) {
                char *lt = strchr(out, '<'), *gt = lt ? strchr(lt, '>') : NULL;
                if (lt && gt) {
                        *gt = '\0';
                        up = 0;
                        for (char *tok = strtok(lt + 1, ","); tok; tok = strtok(NULL, ","))
                                if (strcmp(tok, "UP") == 0)
                                        up = 1;
                }
        }
        free(out);
        return up;
}

int tap_netns_link_set_up(const struct tap_netns *n)
{
        return tap_runl(NULL, "ip", "-n", n->name, "link", "set", n->ns_if, "up", NULL);
}
