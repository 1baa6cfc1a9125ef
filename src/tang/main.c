/* vigil-tang: the daemon shell around server.c: command line (the daemon options plus
 * --jwkdir DIR and repeatable --listen ADDR[:PORT]), configuration, privileges, SIGHUP, run. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "server.h"

/* Take --jwkdir and --listen out of argv (the rest is daemon.h's); listen values joined by
 * commas into *listen. Returns 0, or 2 after a usage error. */
static int take_options(int *argc, char **argv, const char **jwkdir, char **listen)
{
        int out = 1;

        for (int i = 1; i < *argc; i++) {
                const char *a = argv[i], *val = NULL;
                bool is_dir = false, is_listen = false;

                if (strcmp(a, "--") == 0) {
                        while (i < *argc)
                                argv[out++] = argv[i++];
                        break;
                }
                if (strncmp(a, "--jwkdir", 8) == 0 && (a[8] == '\0' || a[8] == '='))
                        is_dir = true;
                else if (strncmp(a, "--listen", 8) == 0 && (a[8] == '\0' || a[8] == '='))
                        is_listen = true;
                if (!is_dir && !is_listen) {
                        argv[out++] = argv[i];
                        continue;
                }
                if (a[8] == '=') {
                        val = a + 9;
                } else if (i + 1 < *argc) {
                        val = argv[++i];
                } else {
                        fprintf(stderr, "vigil-tang: %s needs a value\n", a);
                        return 2;
                }
                if (is_dir) {
                        *jwkdir = val;
                } else {
                        char *s;
                        if (asprintf(&s, "%s%s%s", *listen ? *listen : "", *listen ? "," : "",
                                     val) < 0)
                                return 2;
                        free(*listen);
                        *listen = s;
                }
        }
        argv[out] = NULL;
        *argc = out;
        return 0;
}

static int drop_privileges(const struct vg_config *cfg)
{
        const char *user = vg_config_string(cfg, "user");
        struct passwd *pw;

        if (geteuid() != 0)
                return 0;
        if (user && user[0])
                pw = getpwnam(user);
        else if (!(pw = getpwnam("_tang")))
                pw = getpwnam(user = "nobody");
        if (!pw) {
                vg_err(NULL, "cannot drop privileges: no user \"%s\"", user ? user : "_tang");
                return -ENOENT;
        }
        if (pw->pw_uid == 0) {
                vg_warn(VG_F("user", pw->pw_name), "keeping root privileges");
                return 0;
        }
        if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
                vg_err(NULL, "cannot become user \"%s\": %s", pw->pw_name, strerror(errno));
                return -errno;
        }
        vg_info(VG_F("user", pw->pw_name), "dropped privileges");
        return 0;
}

static void sighup_cb(evutil_socket_t sig, short what, void *arg)
{
        struct vg_tangd *t = arg;
        struct vg_error err = { 0 };

        if (vg_tangd_reload(t, &err) < 0)
                vg_warn(NULL, "SIGHUP: keeping the keys loaded before: %s", vg_error_str(&err));
        else
                vg_info(NULL, "SIGHUP: keys reloaded");
}

int main(int argc, char **argv)
{
        static const struct vg_daemon_info info = {
                .name = "vigil-tang",
                .summary = "Tang-compatible key server (GET /adv, POST /rec); also --jwkdir DIR "
                           "and --listen ADDR[:PORT] (repeatable).",
                .schema = &vg_tangd_schema,
        };
        _cleanup_(vg_daemon_freep) struct vg_daemon *d = NULL;
        _cleanup_free_ char *listen = NULL, *abs_dir = NULL;
        const char *jwkdir = NULL;
        struct vg_error err = { 0 };
        struct event *hup;
        int r;

        r = take_options(&argc, argv, &jwkdir, &listen);
        if (r)
                return r;
        r = vg_daemon_init(&info, argc, argv, &d);
        if (!d)
                return r;
        /* tangd takes a relative directory; the configuration wants absolute paths. */
        if (jwkdir && jwkdir[0] != '/') {
                _cleanup_free_ char *cwd = get_current_dir_name();
                if (!cwd || asprintf(&abs_dir, "%s/%s", cwd, jwkdir) < 0) {
                        vg_err(NULL, "--jwkdir %s: cannot resolve the current directory", jwkdir);
                        return 1;
                }
                jwkdir = abs_dir;
        }
        if ((jwkdir && vg_config_set(vg_daemon_config_mut(d), "jwkdir", jwkdir, &err) < 0) ||
            (listen && vg_config_set(vg_daemon_config_mut(d), "listen", listen, &err) < 0)) {
                vg_err(NULL, "%s", vg_error_str(&err));
                return 1;
        }

        /* Freed before the daemon: the servers live on its event loop. */
        _cleanup_(vg_tangd_freep) struct vg_tangd *t = NULL;
        if (vg_tangd_new(vg_daemon_base(d), vg_daemon_config(d), &t, &err) < 0) {
                vg_err(NULL, "%s", vg_error_str(&err));
                return 1;
        }
        if (drop_privileges(vg_daemon_config(d)) < 0)
                return 1;
        hup = evsignal_new(vg_daemon_base(d), SIGHUP, sighup_cb, t);
        if (!hup || evsignal_add(hup, NULL) < 0) {
                vg_err(NULL, "cannot handle SIGHUP");
                return 1;
        }
        if (vg_daemon_ready(d) < 0) {
                event_free(hup);
                return 1;
        }
        r = vg_daemon_run(d);
        event_free(hup);
        vg_tangd_free(TAKE_PTR(t));
        return r;
}
