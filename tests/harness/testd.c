/* vigil tests: the smallest daemon built like the real ones (vg_daemon + config + HTTP server),
 * so that the shared daemon life cycle is tested end to end before any real daemon exists. */
#include <stdio.h>
#include <unistd.h>

#include "daemon.h"
#include "http_server.h"
#include "log.h"

static const struct vg_config_option options[] = {
        { "ip", VG_CONFIG_STRING, "127.0.0.1", "address to listen on" },
        { "port", VG_CONFIG_INTEGER, "0", "port to listen on (0: any free port)", 0, 65535 },
        { "port_file", VG_CONFIG_PATH, NULL, "write the bound port there" },
        { "greeting", VG_CONFIG_STRING, "hello", "what GET /greeting answers" },
        { "fail_before_ready", VG_CONFIG_BOOLEAN, "false", "exit 3 instead of becoming ready" },
        {},
};

static const struct vg_config_schema schema = {
        .component = "testd",
        .section = "testd",
        .options = options,
};

static void greeting(struct vg_http_request *req, void *userdata)
{
        const struct vg_config *cfg = userdata;

        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:i}", "greeting", vg_config_string(cfg, "greeting"),
                                        "pid", (int)getpid()));
}

int main(int argc, char **argv)
{
        static const struct vg_daemon_info info = {
                .name = "vigil-testd",
                .summary = "A test daemon that answers GET /greeting.",
                .schema = &schema,
        };
        _cleanup_(vg_daemon_freep) struct vg_daemon *d = NULL;
        struct vg_http_server *srv = NULL;
        struct vg_error err = { 0 };
        int r;

        r = vg_daemon_init(&info, argc, argv, &d);
        if (!d)
                return r;
        const struct vg_config *cfg = vg_daemon_config(d);
        if (vg_config_boolean(cfg, "fail_before_ready")) {
                vg_err(NULL, "failing before ready, as configured");
                return 3;
        }
        struct vg_http_server_config hc = {
                .address = vg_config_string(cfg, "ip"),
                .port = (uint16_t)vg_config_integer(cfg, "port"),
                .name = "testd",
        };
        if (vg_http_server_new(vg_daemon_base(d), &hc, &srv, &err) < 0) {
                vg_err(NULL, "%s", vg_error_str(&err));
                return 1;
        }
        vg_http_server_route(srv, "GET", "/greeting", greeting, (void *)cfg);
        const char *port_file = vg_config_string(cfg, "port_file");
        if (port_file) {
                FILE *f = fopen(port_file, "w");
                if (!f) {
                        vg_err(VG_F("file", port_file), "cannot write the port file");
                        vg_http_server_free(srv);
                        return 1;
                }
                fprintf(f, "%d\n", vg_http_server_port(srv));
                fclose(f);
        }
        r = vg_daemon_ready(d);
        if (r == 0)
                r = vg_daemon_run(d);
        else
                r = 1;
        vg_http_server_free(srv);
        return r;
}
