/* vigil tests: Tang servers as test peers; see tang_peers.h. */
#include "tang_peers.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"

pid_t tap_tang_start_vigil(const char *vigil_tang, const char *jwkdir, int port)
{
        char *listen = tap_strf("127.0.0.1:%d", port);
        char *const argv[] = { (char *)vigil_tang, "-f",   "--jwkdir", (char *)jwkdir,
                               "--listen",         listen, NULL };
        pid_t pid = tap_spawn(argv);

        free(listen);
        return pid;
}

pid_t tap_tang_start_tangd(const char *jwkdir, int port)
{
        char *exec = tap_strf("EXEC:/usr/libexec/tangd %s", jwkdir);
        char *lst = tap_strf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", port);
        char *const argv[] = { "socat", lst, exec, NULL };
        pid_t pid = tap_spawn(argv);

        free(exec);
        free(lst);
        return pid;
}

char *tap_tang_thp_of(const char *out, const char *role)
{
        for (const char *l = out; l && *l;) {
                const char *sp = strchr(l, ' '), *nl = strchr(l, '\n');

                if (sp && (!nl || sp < nl) && strncmp(sp + 1, role, strlen(role)) == 0)
                        return strndup(l, (size_t)(sp - l));
                l = nl ? nl + 1 : NULL;
        }
        return NULL;
}
