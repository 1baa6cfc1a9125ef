/* vigil: Keylime revocation notifications on the agent: RSA-PSS-SHA256 signature check over the
 * message and the revocation actions (keylime-agent revocation.rs behaviour, confined). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "cleanup.h"
#include "encoding.h"
#include "log.h"
#include "payload.h"
#include "revocation.h"

VG_DEFINE_CLEANUP_FUNC(EVP_MD_CTX, EVP_MD_CTX_free)

static int pss_init(EVP_MD_CTX *ctx, EVP_PKEY *key, bool sign)
{
        EVP_PKEY_CTX *pctx = NULL;
        int r;

        r = sign ? EVP_DigestSignInit_ex(ctx, &pctx, "SHA256", NULL, NULL, key, NULL)
                 : EVP_DigestVerifyInit_ex(ctx, &pctx, "SHA256", NULL, NULL, key, NULL);
        if (r != 1 || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) != 1 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, sign ? RSA_PSS_SALTLEN_MAX
                                                        : RSA_PSS_SALTLEN_AUTO) != 1)
                return -EINVAL;
        return 0;
}

int vg_revocation_verify(const char *msg, const char *signature_b64, EVP_PKEY *revocation_pub,
                         struct vg_error *err)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        _cleanup_free_ uint8_t *sig = NULL;
        size_t sig_len = 0;

        if (!msg)
                return vg_error_set(err, -EINVAL, "revocation: msg is missing");
        if (!signature_b64 || !*signature_b64)
                return vg_error_set(err, -EBADMSG,
                                    "revocation: the notification is unsigned; "
                                    "expected an RSA-PSS signature from the revocation key");
        if (!revocation_pub || !EVP_PKEY_is_a(revocation_pub, "RSA"))
                return vg_error_set(err, -EINVAL, "revocation: expected an RSA revocation key");
        if (vg_b64_decode(signature_b64, strlen(signature_b64), VG_B64_STD, &sig, &sig_len) < 0)
                return vg_error_set(err, -EBADMSG, "revocation: signature is not valid base64");
        ctx = EVP_MD_CTX_new();
        if (!ctx || pss_init(ctx, revocation_pub, false) < 0)
                return vg_error_set(err, -ENOMEM, "revocation: cannot set up RSA-PSS");
        if (EVP_DigestVerify(ctx, sig, sig_len, (const uint8_t *)msg, strlen(msg)) != 1)
                return vg_error_set(err, -EBADMSG,
                                    "revocation: the signature does not verify "
                                    "with the revocation key (RSA-PSS-SHA256); ignored");
        return 0;
}

int vg_revocation_sign(const char *msg, EVP_PKEY *key, char **signature_b64, struct vg_error *err)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        _cleanup_free_ uint8_t *sig = NULL;
        size_t sig_len = 0;

        *signature_b64 = NULL;
        if (!msg || !key || !EVP_PKEY_is_a(key, "RSA"))
                return vg_error_set(err, -EINVAL,
                                    "revocation: expected a message and an RSA "
                                    "private key");
        ctx = EVP_MD_CTX_new();
        if (!ctx || pss_init(ctx, key, true) < 0 ||
            EVP_DigestSign(ctx, NULL, &sig_len, (const uint8_t *)msg, strlen(msg)) != 1)
                return vg_error_set(err, -EINVAL, "revocation: cannot set up RSA-PSS signing");
        sig = malloc(sig_len);
        if (!sig)
                return -ENOMEM;
        if (EVP_DigestSign(ctx, sig, &sig_len, (const uint8_t *)msg, strlen(msg)) != 1)
                return vg_error_set(err, -EIO, "revocation: RSA-PSS signing failed");
        *signature_b64 = vg_b64_encode(sig, sig_len, VG_B64_STD);
        return *signature_b64 ? 0 : -ENOMEM;
}

static bool action_name_ok(const char *name)
{
        return name && *name && name[0] != '.' && !strchr(name, '/');
}

static void run_one(const char *dir, const char *name, const char *json, const char *origin,
                    unsigned timeout_s, unsigned *ran, unsigned *failed)
{
        _cleanup_free_ char *path = NULL;
        int status = -1, r;

        if (!action_name_ok(name)) {
                vg_err(VG_F("action", name, "origin", origin),
                       "revocation action refused: expected a plain script name (no '/', not "
                       "starting with '.')");
                (*failed)++;
                return;
        }
        if (asprintf(&path, "%s/%s", dir, name) < 0) {
                path = NULL;
                (*failed)++;
                return;
        }
        {
                char *argv[] = { path, (char *)json, NULL };

                r = vg_run_confined(dir, argv, timeout_s, &status);
        }
        (*ran)++;
        if (r < 0 || status != 0) {
                (*failed)++;
                vg_err(VG_F("action", name, "origin", origin),
                       "revocation action failed with status %d%s", status,
                       status == 127 ? " (not found or not executable)" : "");
        } else {
                vg_info(VG_F("action", name, "origin", origin), "revocation action succeeded");
        }
}

static int write_msg_file(const char *tmp_dir, const char *msg, char **out)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        size_t len = strlen(msg), off = 0;

        if (asprintf(&path, "%s/vigil-revocation-XXXXXX.json", tmp_dir) < 0)
                return -ENOMEM;
        fd = mkstemps(path, 5); /* 0600 */
        if (fd < 0)
                return -errno;
        while (off < len) {
                ssize_t n = write(fd, msg + off, len - off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int r = n < 0 ? -errno : -EIO;

                        unlink(path);
                        return r;
                }
                off += (size_t)n;
        }
        /* The scripts only read it. */
        if (fchmod(fd, 0400) < 0 || close(TAKE_FD(fd)) < 0) {
                int r = -errno;

                unlink(path);
                return r;
        }
        *out = TAKE_PTR(path);
        return 0;
}

int vg_revocation_run_actions(const struct vg_revocation_actions_config *cfg, const char *msg,
                              unsigned *ran, unsigned *failed, struct vg_error *err)
{
        _cleanup_free_ char *json = NULL, *pdir = NULL;
        const char *tmp = cfg->tmp_dir;
        int r;

        *ran = *failed = 0;
        if (!msg)
                return vg_error_set(err, -EINVAL, "revocation: msg is missing");
        if (!tmp)
                tmp = getenv("TMPDIR");
        if (!tmp || !*tmp)
                tmp = "/tmp";
        r = write_msg_file(tmp, msg, &json);
        if (r < 0)
                return vg_error_set(err, r, "%s: cannot write the revocation message: %s", tmp,
                                    strerror(-r));

        if (cfg->actions) {
                if (!cfg->actions_dir)
                        vg_err(NULL, "revocation_actions set but no revocation_actions_dir");
                for (char *const *a = cfg->actions; *a; a++) {
                        if (!cfg->actions_dir) {
                                (*failed)++;
                                continue;
                        }
                        run_one(cfg->actions_dir, *a, json, "config", cfg->timeout_s, ran, failed);
                }
        }

        if (cfg->payload_action_list && !cfg->allow_payload_actions) {
                vg_notice(VG_F("file", cfg->payload_action_list),
                          "payload revocation actions not run: "
                          "allow_payload_revocation_actions is off");
        } else if (cfg->payload_action_list) {
                const char *slash = strrchr(cfg->payload_action_list, '/');
                char **names = NULL;
                _cleanup_close_ int dfd = -1;

                pdir = slash ? strndup(cfg->payload_action_list,
                                       (size_t)(slash - cfg->payload_action_list))
                             : strdup(".");
                if (pdir && !*pdir) {
                        free(pdir);
                        pdir = strdup("/");
                }
                if (!pdir) {
                        unlink(json);
                        return -ENOMEM;
                }
                dfd = open(pdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                r = dfd < 0 ? -errno
                            : vg_action_list_read(dfd, slash ? slash + 1 : cfg->payload_action_list,
                                                  &names);
                if (r == -ENOENT) {
                        vg_debug(VG_F("file", cfg->payload_action_list), "no action_list");
                } else if (r < 0) {
                        vg_err(VG_F("file", cfg->payload_action_list),
                               "cannot read the payload action_list: %s", strerror(-r));
                        (*failed)++;
                } else {
                        for (char **p = names; *p; p++)
                                run_one(pdir, *p, json, "payload", cfg->timeout_s, ran, failed);
                        vg_strv_free(names);
                }
        }
        unlink(json);
        vg_info(NULL, "revocation actions: %u ran, %u failed", *ran, *failed);
        return 0;
}

int vg_revocation_process(const char *msg, const char *signature_b64, EVP_PKEY *revocation_pub,
                          const struct vg_revocation_actions_config *cfg, unsigned *ran,
                          unsigned *failed, struct vg_error *err)
{
        int r;

        *ran = *failed = 0;
        r = vg_revocation_verify(msg, signature_b64, revocation_pub, err);
        if (r < 0) {
                vg_err(NULL, "revocation notification refused: %s", vg_error_str(err));
                return r;
        }
        return vg_revocation_run_actions(cfg, msg, ran, failed, err);
}
