/* vigil-agent: the payload half of the Keylime agent API: U and V key halves (/keys/ukey,
 * /keys/vkey), key confirmation (/keys/verify) and signed revocation notifications. */
#include <ctype.h>
#include <signal.h>
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "cleanup.h"
#include "log.h"
#include "revocation.h"

VG_DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
VG_DEFINE_CLEANUP_FUNC(X509, X509_free)

/* Keylime's payload-certificate package ships the notifier's certificate under this name. */
#define REVOCATION_CERT_IN_PAYLOAD "RevocationNotifier-cert.crt"

/* What a child is, in logs; the payload script's is also how deliver() finds it. */
static const char PAYLOAD_SCRIPT[] = "payload script";

/* The request's JSON object body, or NULL after answering 400. */
static json_t *object_body(struct vg_http_request *req)
{
        struct vg_error err = { 0 };
        json_t *body = vg_http_request_json(req, &err);

        if (body && json_is_object(body))
                return body;
        json_decref(body);
        vg_http_reply_error(req, 400, "expected a JSON object as the body%s%s",
                            err.msg[0] ? ": " : "", err.msg);
        return NULL;
}

static const char *body_string(json_t *body, const char *field)
{
        return json_string_value(json_object_get(body, field));
}

void vg_agent_child_add(struct vg_agent *a, pid_t pid, const char *what)
{
        for (size_t i = 0; i < VG_ARRAY_SIZE(a->children); i++) {
                if (a->children[i].pid == 0) {
                        a->children[i].pid = pid;
                        a->children[i].what = what;
                        return;
                }
        }
        /* More than a handful at once: it is still reaped, only not logged by name. */
        vg_warn(VG_F("agent", a->uuid), "%s (pid %d) not tracked: too many children", what,
                (int)pid);
}

/* A payload script's supervisor or a revocation-actions child has exited: log how it ended. */
static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
        struct vg_agent *a = arg;
        int status;

        (void)fd, (void)what;
        for (size_t i = 0; i < VG_ARRAY_SIZE(a->children); i++) {
                pid_t pid = a->children[i].pid;
                if (pid <= 0 || waitpid(pid, &status, WNOHANG) != pid)
                        continue;
                a->children[i].pid = 0;
                int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                vg_log(code == 0 ? VG_LOG_INFO : VG_LOG_WARNING, VG_F("agent", a->uuid),
                       "%s (pid %d) exited with status %d%s", a->children[i].what, (int)pid, code,
                       code == 137 ? " (killed at its timeout)" : "");
        }
        /* Untracked ones too, so that none is left a zombie. */
        while (waitpid(-1, &status, WNOHANG) > 0)
                ;
}

/* Decrypt and install the payload once K exists, on the next turn of the loop so that the reply
 * to the request that completed K has gone out first. The script then runs in a child process
 * (which enforces its timeout), so that quotes keep being served while it runs: a verifier
 * polling every few seconds would otherwise see the agent stall and fail it. */
static void deliver(evutil_socket_t fd, short what, void *arg)
{
        struct vg_agent *a = arg;
        struct vg_error err = { 0 };
        bool run = false;

        (void)fd, (void)what;
        if (!vg_payload_have_key(a->payload) || vg_payload_delivered(a->payload))
                return;
        for (size_t i = 0; i < VG_ARRAY_SIZE(a->children); i++) {
                if (a->children[i].pid > 0 && a->children[i].what == PAYLOAD_SCRIPT) {
                        /* Its files would be replaced under it; the new key waits. */
                        vg_warn(VG_F("agent", a->uuid),
                                "the previous payload script (pid %d) is "
                                "still running; the new payload is installed when it ends",
                                (int)a->children[i].pid);
                        event_add(a->deliver_ev, &(struct timeval){ .tv_sec = 1 });
                        return;
                }
        }
        if (vg_payload_install(a->payload, &a->payload_cfg, &run, &err) < 0) {
                vg_err(VG_F("agent", a->uuid, "dir", a->payload_cfg.secure_dir),
                       "payload not delivered: %s", vg_error_str(&err));
                return;
        }
        if (!run)
                return;
        pid_t pid = fork();
        if (pid < 0) {
                vg_err(VG_F("agent", a->uuid), "cannot start the payload script: %s",
                       strerror(errno));
                return;
        }
        if (pid == 0) {
                int status = -1;
                struct vg_error cerr = { 0 };
                /* Only the script's exit status leaves this process. */
                if (vg_payload_run_script(a->payload, &a->payload_cfg, &status, &cerr) < 0)
                        _exit(127);
                _exit(status & 0xff);
        }
        vg_agent_child_add(a, pid, PAYLOAD_SCRIPT);
        vg_info(VG_F("agent", a->uuid, "script", a->payload_cfg.payload_script),
                "payload installed; running its script (pid %d)", (int)pid);
}

static void schedule_delivery(struct vg_agent *a)
{
        static const struct timeval soon = { .tv_usec = 10000 };

        if (vg_payload_have_key(a->payload) && !vg_payload_delivered(a->payload))
                event_add(a->deliver_ev, &soon);
}

/* Both halves answer alike: 200 once stored; 400 naming what was wrong. */
static void reply_half(struct vg_agent *a, struct vg_http_request *req, const char *which, int r,
                       const struct vg_error *err)
{
        if (r == -EKEYREJECTED) {
                vg_warn(VG_F("agent", a->uuid, "peer", vg_http_request_peer(req)), "%s refused: %s",
                        which, vg_error_str(err));
                vg_http_reply_error(req, 400, "%s", vg_error_str(err));
                return;
        }
        if (r < 0) {
                vg_http_reply_error(req, 400, "%s: %s", which, vg_error_str(err));
                return;
        }
        vg_info(VG_F("agent", a->uuid, "peer", vg_http_request_peer(req)), "%s received%s", which,
                vg_payload_have_key(a->payload) ? "; the bootstrap key is complete" : "");
        vg_http_reply_keylime(req, 200, "Success", NULL);
        schedule_delivery(a);
}

static void post_ukey(struct vg_http_request *req, void *userdata)
{
        struct vg_agent *a = userdata;
        struct vg_error err = { 0 };

        if (!vg_agent_version_ok(req))
                return;
        json_auto_t *body = object_body(req);
        if (!body)
                return;
        const char *key = body_string(body, "encrypted_key");
        const char *tag = body_string(body, "auth_tag");
        const char *payload = body_string(body, "payload");
        if (!key || !tag) {
                vg_http_reply_error(req, 400, "expected string fields encrypted_key and auth_tag");
                return;
        }
        int r = vg_payload_add_u(a->payload, key, tag, payload && *payload ? payload : NULL, &err);
        reply_half(a, req, "U", r, &err);
}

static void post_vkey(struct vg_http_request *req, void *userdata)
{
        struct vg_agent *a = userdata;
        struct vg_error err = { 0 };

        if (!vg_agent_version_ok(req))
                return;
        json_auto_t *body = object_body(req);
        if (!body)
                return;
        const char *key = body_string(body, "encrypted_key");
        if (!key) {
                vg_http_reply_error(req, 400, "expected a string field encrypted_key");
                return;
        }
        int r = vg_payload_add_v(a->payload, key, &err);
        reply_half(a, req, "V", r, &err);
}

static void get_verify(struct vg_http_request *req, void *userdata)
{
        struct vg_agent *a = userdata;
        char hmac[VG_PAYLOAD_AUTH_TAG_HEX + 1];
        struct vg_error err = { 0 };

        if (!vg_agent_version_ok(req))
                return;
        const char *challenge = vg_http_request_query(req, "challenge");
        if (!challenge || !*challenge) {
                vg_http_reply_error(req, 400, "expected a challenge parameter");
                return;
        }
        int r = vg_payload_verify_hmac(a->payload, challenge, hmac, &err);
        if (r == -EAGAIN) {
                vg_http_reply_error(req, 400, "the bootstrap key is not available yet");
                return;
        }
        if (r < 0) {
                vg_http_reply_error(req, 400, "%s", vg_error_str(&err));
                return;
        }
        vg_http_reply_keylime(req, 200, "Success", json_pack("{s:s}", "hmac", hmac));
}

/* The notifier's public key: revocation_cert, or with "default" the certificate that came
 * in the payload (Keylime's certificate package). Read per notification: it may arrive late. */
static EVP_PKEY *revocation_key(struct vg_agent *a, struct vg_error *err)
{
        const char *opt = vg_config_string(a->cfg, "revocation_cert");
        _cleanup_free_ char *path = NULL;

        if (!opt || !*opt || strcmp(opt, "default") == 0) {
                if (asprintf(&path, "%s/unzipped/%s", a->payload_cfg.secure_dir,
                             REVOCATION_CERT_IN_PAYLOAD) < 0)
                        return NULL;
        } else {
                path = strdup(opt);
        }
        if (!path)
                return NULL;
        FILE *f = fopen(path, "re");
        if (!f) {
                vg_error_set(err, -errno, "revocation_cert %s: %s", path, strerror(errno));
                return NULL;
        }
        _cleanup_(X509_freep) X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        if (!cert) {
                vg_error_set(err, -EBADMSG, "revocation_cert %s: not a PEM certificate", path);
                return NULL;
        }
        return X509_get_pubkey(cert);
}

static void post_revocation(struct vg_http_request *req, void *userdata)
{
        struct vg_agent *a = userdata;
        struct vg_error err = { 0 };
        unsigned ran = 0, failed = 0;

        if (!vg_agent_version_ok(req))
                return;
        json_auto_t *body = object_body(req);
        if (!body)
                return;
        const char *msg = body_string(body, "msg"), *sig = body_string(body, "signature");
        if (!msg || !sig) {
                vg_http_reply_error(req, 400, "expected string fields msg and signature");
                return;
        }
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = revocation_key(a, &err);
        if (!key) {
                vg_err(VG_F("agent", a->uuid), "revocation refused: %s", vg_error_str(&err));
                vg_http_reply_error(req, 400, "no revocation certificate: %s", vg_error_str(&err));
                return;
        }
        _cleanup_free_ char *action_list = NULL;
        if (asprintf(&action_list, "%s/unzipped/action_list", a->payload_cfg.secure_dir) < 0) {
                vg_http_reply_error(req, 500, "out of memory");
                return;
        }
        const struct vg_revocation_actions_config rc = {
                .actions_dir = vg_config_string(a->cfg, "revocation_actions_dir"),
                .actions = a->revocation_actions,
                .payload_action_list = action_list,
                .allow_payload_actions =
                    vg_config_boolean(a->cfg, "allow_payload_revocation_actions"),
        };
        int r = vg_revocation_verify(msg, sig, key, &err);
        if (r < 0) {
                vg_warn(VG_F("agent", a->uuid, "peer", vg_http_request_peer(req)),
                        "revocation notification refused: %s", vg_error_str(&err));
                vg_http_reply_error(req, 400, "%s", vg_error_str(&err));
                return;
        }
        /* Verified: the actions run in a child, each up to its timeout, while the agent keeps
         * answering (the verifier that sent this may be polling other agents' quotes). */
        pid_t pid = fork();
        if (pid < 0) {
                vg_err(VG_F("agent", a->uuid), "cannot run the revocation actions: %s",
                       strerror(errno));
                vg_http_reply_error(req, 500, "revocation actions could not run: %s",
                                    strerror(errno));
                return;
        }
        if (pid == 0) {
                struct vg_error cerr = { 0 };
                r = vg_revocation_run_actions(&rc, msg, &ran, &failed, &cerr);
                if (r < 0) /* each action's outcome is logged by the library */
                        vg_err(VG_F("agent", a->uuid), "revocation actions: %s",
                               vg_error_str(&cerr));
                _exit(r < 0 || failed ? 1 : 0);
        }
        vg_agent_child_add(a, pid, "revocation actions");
        vg_notice(VG_F("agent", a->uuid, "peer", vg_http_request_peer(req)),
                  "revocation notification verified; running its actions (pid %d)", (int)pid);
        vg_http_reply_keylime(req, 200, "Success", NULL);
}

/* revocation_actions is Keylime's comma-separated list of script names. */
static char **split_actions(const char *s)
{
        size_t n = 0, cap = 4;
        char **v = calloc(cap + 1, sizeof(*v));
        _cleanup_free_ char *copy = strdup(s ? s : "");
        char *save = NULL;

        if (!v || !copy) {
                free(v);
                return NULL;
        }
        for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
                if (n == cap) {
                        char **nv = realloc(v, (2 * cap + 1) * sizeof(*v));
                        if (!nv)
                                break;
                        v = nv;
                        cap *= 2;
                }
                v[n++] = strdup(t);
                v[n] = NULL;
        }
        return v;
}

/* secure_size as Keylime writes it: a number with an optional k, m or g suffix ("1m"). */
static int parse_size(const char *s, unsigned long long *out)
{
        char *end;
        unsigned long long n;

        if (!s || !isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        n = strtoull(s, &end, 10);
        if (errno || n == 0)
                return -EINVAL;
        switch (tolower((unsigned char)*end)) {
        case 'g':
                n <<= 10;
                /* fall through */
        case 'm':
                n <<= 10;
                /* fall through */
        case 'k':
                n <<= 10;
                end++;
                break;
        case '\0':
                break;
        default:
                return -EINVAL;
        }
        if (*end)
                return -EINVAL;
        *out = n;
        return 0;
}

/* Decrypted payloads never touch a disk: as Keylime does, the secure directory is a tmpfs of
 * secure_size when the agent may mount one (root). Otherwise, or if the mount fails, it stays
 * a 0700 directory on data_dir's file system, and the log says so. */
static int secure_dir_setup(struct vg_agent *a)
{
        const char *size = vg_config_string(a->cfg, "secure_size");
        unsigned long long bytes;
        struct stat dir, parent;
        char opts[64];

        if (parse_size(size, &bytes) < 0) {
                vg_err(VG_F("option", "secure_size"),
                       "expected a size such as 1m, 512k or 2g, found \"%s\"", size ? size : "");
                return -EINVAL;
        }
        if (mkdir(a->secure_dir, 0700) < 0 && errno != EEXIST) {
                vg_err(VG_F("dir", a->secure_dir), "cannot create: %s", strerror(errno));
                return -errno;
        }
        if (stat(a->secure_dir, &dir) < 0 || stat(a->data_dir, &parent) < 0)
                return -errno;
        if (dir.st_dev != parent.st_dev) /* already a mount point (ours from a crash, or the
                                          * operator's): use it as it is */
                return 0;
        if (geteuid() != 0) {
                vg_warn(VG_F("dir", a->secure_dir),
                        "not root: payloads are decrypted into a 0700 directory, not a tmpfs");
                return 0;
        }
        snprintf(opts, sizeof(opts), "size=%llu,mode=0700", bytes);
        if (mount("tmpfs", a->secure_dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
                vg_warn(VG_F("dir", a->secure_dir),
                        "cannot mount a tmpfs (%s): payloads are decrypted into a 0700 directory",
                        strerror(errno));
                return 0;
        }
        a->secure_mounted = true;
        vg_info(VG_F("dir", a->secure_dir), "payloads go to a tmpfs of %s", size);
        return 0;
}

int vg_agent_payload_setup(struct vg_agent *a)
{
        const struct vg_config *cfg = a->cfg;
        int r;

        if (asprintf(&a->secure_dir, "%s/secure", a->data_dir) < 0)
                return -ENOMEM;
        if ((r = secure_dir_setup(a)) < 0)
                return r;
        r = vg_payload_state_new(a->nk, a->uuid, &a->payload);
        if (r < 0) {
                vg_err(VG_F("agent", a->uuid), "payload state: %s", strerror(-r));
                return r;
        }
        /* Scripts from a payload run only when the tenant and verifier were authenticated by
         * mTLS, as Keylime requires, unless the operator opts out explicitly. */
        a->payload_cfg = (struct vg_payload_config){
                .secure_dir = a->secure_dir,
                .enc_keyname = vg_config_string(cfg, "enc_keyname"),
                .dec_payload_file = vg_config_string(cfg, "dec_payload_file"),
                .extract_zip = vg_config_boolean(cfg, "extract_payload_zip"),
                .payload_script = vg_config_string(cfg, "payload_script"),
                .allow_script = a->mtls || vg_config_boolean(cfg, "enable_insecure_payload"),
        };
        a->revocation_actions = split_actions(vg_config_string(cfg, "revocation_actions"));
        a->deliver_ev = evtimer_new(a->base, deliver, a);
        a->sigchld_ev = evsignal_new(a->base, SIGCHLD, on_sigchld, a);
        if (!a->revocation_actions || !a->deliver_ev || !a->sigchld_ev ||
            event_add(a->sigchld_ev, NULL) < 0)
                return -ENOMEM;
        return 0;
}

void vg_agent_payload_clear(struct vg_agent *a)
{
        if (a->deliver_ev)
                event_free(a->deliver_ev);
        if (a->sigchld_ev)
                event_free(a->sigchld_ev);
        vg_payload_state_free(a->payload);
        /* The key and plaintext live only in memory; they go when the agent does. */
        if (a->secure_mounted && umount2(a->secure_dir, MNT_DETACH) < 0)
                vg_warn(VG_F("dir", a->secure_dir), "cannot unmount the tmpfs: %s",
                        strerror(errno));
        for (size_t i = 0; a->revocation_actions && a->revocation_actions[i]; i++)
                free(a->revocation_actions[i]);
        free(a->revocation_actions);
        free(a->secure_dir);
}

int vg_agent_payload_api_register(struct vg_agent *a)
{
        int r;

        if ((r = vg_http_server_route(a->server, "POST", "/v{version}/keys/ukey", post_ukey, a)) <
                0 ||
            (r = vg_http_server_route(a->server, "POST", "/v{version}/keys/vkey", post_vkey, a)) <
                0 ||
            (r = vg_http_server_route(a->server, "GET", "/v{version}/keys/verify", get_verify, a)) <
                0)
                return r;
        if (vg_config_boolean(a->cfg, "enable_revocation_notifications"))
                r = vg_http_server_route(a->server, "POST", "/v{version}/notifications/revocation",
                                         post_revocation, a);
        return r;
}
