/* vigil-registrar: the daemon shell around registrar.c: command line and configuration
 * (daemon.h), both listeners and the database, readiness, run until SIGTERM. */
#include "daemon.h"
#include "log.h"
#include "registrar.h"

int main(int argc, char **argv)
{
        static const struct vg_daemon_info info = {
                .name = "vigil-registrar",
                .summary = "Keylime-compatible registrar: TPM identities (EK, AK) of agents.",
                .schema = &vg_registrar_schema,
        };
        _cleanup_(vg_daemon_freep) struct vg_daemon *d = NULL;
        struct vg_error err = { 0 };
        int r;

        r = vg_daemon_init(&info, argc, argv, &d);
        if (!d)
                return r;

        /* Freed before the daemon: the servers live on its event loop. */
        _cleanup_(vg_registrar_freep) struct vg_registrar *reg = NULL;
        if (vg_registrar_new(vg_daemon_base(d), vg_daemon_config(d), &reg, &err) < 0) {
                vg_err(NULL, "%s", vg_error_str(&err));
                return 1;
        }
        if (vg_daemon_ready(d) < 0)
                return 1;
        r = vg_daemon_run(d);
        vg_registrar_free(TAKE_PTR(reg));
        return r;
}
