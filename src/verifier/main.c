/* vigil-verifier: the daemon shell around verifier.c: command line and configuration
 * (daemon.h), the REST API and the poller on one event loop, readiness, run until SIGTERM. */
#include "daemon.h"
#include "log.h"
#include "verifier.h"

int main(int argc, char **argv)
{
        static const struct vg_daemon_info info = {
                .name = "vigil-verifier",
                .summary = "Keylime-compatible verifier: continuous attestation of agents (TPM "
                           "quotes, IMA runtime policies).",
                .schema = &vg_verifier_schema,
        };
        _cleanup_(vg_daemon_freep) struct vg_daemon *d = NULL;
        struct vg_error err = { 0 };
        int r;

        r = vg_daemon_init(&info, argc, argv, &d);
        if (!d)
                return r;

        /* Freed before the daemon: the server, client and timers live on its event loop. */
        _cleanup_(vg_verifier_freep) struct vg_verifier *v = NULL;
        if (vg_verifier_new(vg_daemon_base(d), vg_daemon_config(d), &v, &err) < 0) {
                vg_err(NULL, "%s", vg_error_str(&err));
                return 1;
        }
        if (vg_daemon_ready(d) < 0)
                return 1;
        r = vg_daemon_run(d);
        vg_verifier_free(TAKE_PTR(v));
        return r;
}
