/* vigil tests: a network namespace with one end of a veth pair inside, to quarantine (take a
 * link down) as an operator's script would. Root only; removed by name, only what was made. */
#pragma once

#include <stdbool.h>

struct tap_netns {
        char name[64];    /* "<prefix>-<pid>" */
        char host_if[16]; /* the veth end left on the host */
        char ns_if[16];   /* the end inside the namespace */
        bool made;
};

/* Make the namespace "<prefix>-<pid>" and the veth pair "vg<tag><n>h"/"vg<tag><n>n", both ends
 * up. false (nothing left behind) when not root, without `ip netns`, or on failure. */
bool tap_netns_setup(struct tap_netns *n, const char *prefix, char tag);
/* Delete the veth and the namespace if setup made them; safe to call twice, and from a
 * signal handler's clean-up. */
void tap_netns_cleanup(struct tap_netns *n);
/* 1 when the end inside the namespace is UP, 0 when down, -1 when it cannot be read. */
int tap_netns_link_up(const struct tap_netns *n);
/* Bring the end inside the namespace up again; 0 on success. */
int tap_netns_link_set_up(const struct tap_netns *n);
