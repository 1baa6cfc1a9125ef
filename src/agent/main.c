/* vigil-agent: the Keylime-compatible agent daemon (pull model): owns the TPM, registers with the
 * registrar, and serves quotes, the IMA list and the UEFI log over mTLS to the verifier. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "tls.h"

/* Keylime's agent option names (rust-keylime keylime-agent.conf), plus tcti and data_dir. */
static const struct vg_config_option options[] = {
        { "uuid", VG_CONFIG_STRING, NULL,
          "agent id; unset: a UUID made once and kept in data_dir; \"generate\": new each start; "
          "\"hash_ek\": SHA-256 of the EK public key" },
        { "ip", VG_CONFIG_STRING, "127.0.0.1", "address the API listens on" },
        { "port", VG_CONFIG_INTEGER, "9002", "port the API listens on", 1, 65535 },
        { "contact_ip", VG_CONFIG_STRING, NULL, "address given to the registrar (unset: ip)" },
        { "contact_port", VG_CONFIG_INTEGER, "0", "port given to the registrar (0: port)", 0,
          65535 },
        { "registrar_ip", VG_CONFIG_STRING, "127.0.0.1", "registrar address" },
        { "registrar_port", VG_CONFIG_INTEGER, "8890", "registrar port (plain HTTP)", 1, 65535 },
        { "enable_agent_mtls", VG_CONFIG_BOOLEAN, "true",
          "serve HTTPS and require client certificates; false serves plain HTTP (insecure)" },
        { "server_key", VG_CONFIG_PATH, NULL,
          "TLS server key (PEM); unset: generated once in data_dir" },
        { "server_key_password", VG_CONFIG_STRING, NULL, "password of server_key" },
        { "server_cert", VG_CONFIG_PATH, NULL,
          "TLS server certificate (PEM); unset: self-signed, CN = uuid, kept in data_dir" },
        { "trusted_client_ca", VG_CONFIG_STRING_LIST, NULL,
          "CA certificates (absolute paths) a client certificate must chain to; required" },
        { "enc_keyname", VG_CONFIG_STRING, "derived_tci_key",
          "file name of the payload key in the secure directory" },
        { "dec_payload_file", VG_CONFIG_STRING, "decrypted_payload",
          "file name of the decrypted payload" },
        { "extract_payload_zip", VG_CONFIG_BOOLEAN, "true", "unzip the payload" },
        { "payload_script", VG_CONFIG_STRING, "autorun.sh",
          "script run from the unzipped payload" },
        { "enable_insecure_payload", VG_CONFIG_BOOLEAN, "false",
          "run payload scripts without mTLS" },
        { "secure_size", VG_CONFIG_STRING, "1m",
          "size of the payload tmpfs; accepted, not used: the secure directory is "
          "data_dir/secure" },
        { "ima_ml_path", VG_CONFIG_PATH, "/sys/kernel/security/ima/ascii_runtime_measurements",
          "IMA measurement list (ASCII)" },
        { "measuredboot_ml_path", VG_CONFIG_PATH,
          "/sys/kernel/security/tpm0/binary_bios_measurements", "UEFI event log (binary)" },
        { "tpm_hash_alg", VG_CONFIG_STRING, "sha256",
          "AK signing hash and quoted PCR bank: sha1, sha256, sha384, sha512" },
        { "tpm_signing_alg", VG_CONFIG_STRING, "rsassa", "AK scheme: rsassa or ecdsa" },
        { "tpm_encryption_alg", VG_CONFIG_STRING, "rsa", "EK type: rsa or ecc" },
        { "ek_handle", VG_CONFIG_STRING, NULL,
          "EK: unset the persistent EK or the TCG template; \"generate\" the template; or a "
          "persistent handle such as 0x81010001" },
        { "run_as", VG_CONFIG_STRING, NULL,
          "USER[:GROUP] to switch to after the TPM, keys and port are set up (root only)" },
        { "revocation_actions", VG_CONFIG_STRING, "",
          "comma-separated scripts in revocation_actions_dir run on a revocation" },
        { "revocation_actions_dir", VG_CONFIG_PATH, "/usr/libexec/vigil",
          "directory of the revocation actions" },
        { "revocation_cert", VG_CONFIG_STRING, "default",
          "certificate (PEM) whose key signs revocation messages; \"default\": the one in the "
          "payload" },
        { "enable_revocation_notifications", VG_CONFIG_BOOLEAN, "true",
          "accept revocation notifications" },
        { "allow_payload_revocation_actions", VG_CONFIG_BOOLEAN, "true",
          "run revocation actions shipped in the payload" },
        { "tcti", VG_CONFIG_STRING, VG_TPM_DEFAULT_TCTI, "TPM TCTI, as tpm2-tools -T takes it" },
        { "data_dir", VG_CONFIG_PATH, VIGIL_LOCALSTATEDIR,
          "state: agent_uuid, ak.bin, nk-private.pem, server TLS key and certificate" },
        {},
};

static const struct vg_config_schema schema = {
        .component = "agent",
        .section = "agent",
        .options = options,
};

static int parse_algs(struct vg_agent *a)
{
        const struct vg_config *cfg = a->cfg;
        const char *s;

        s = vg_config_string(cfg, "tpm_hash_alg");
        if (vg_hash_alg_from_name(s, &a->hash_alg) < 0) {
                vg_err(VG_F("option", "tpm_hash_alg"),
                       "expected sha1, sha256, sha384 or sha512, found \"%s\"", s);
                return -EINVAL;
        }
        s = vg_config_string(cfg, "tpm_encryption_alg");
        if (strcmp(s, "rsa") == 0) {
                a->enc_alg = VG_TPM_KEY_RSA;
        } else if (strcmp(s, "ecc") == 0) {
                a->enc_alg = VG_TPM_KEY_ECC;
        } else {
                vg_err(VG_F("option", "tpm_encryption_alg"), "expected rsa or ecc, found \"%s\"",
                       s);
                return -EINVAL;
        }
        s = vg_config_string(cfg, "tpm_signing_alg");
        if (strcmp(s, "rsassa") == 0) {
                a->sign_key = VG_TPM_KEY_RSA;
        } else if (strcmp(s, "ecdsa") == 0) {
                a->sign_key = VG_TPM_KEY_ECC;
        } else {
                vg_err(VG_F("option", "tpm_signing_alg"),
                       "expected rsassa or ecdsa (the schemes Keylime's checkquote verifies), "
                       "found \"%s\"",
                       s);
                return -EINVAL;
        }
        return 0;
}

static int parse_ek_handle(const char *s, uint32_t *out)
{
        char *end;
        unsigned long v;

        if (!s || !*s || strcmp(s, "default") == 0) {
                *out = VG_TPM_EK_DEFAULT;
                return 0;
        }
        if (strcmp(s, "generate") == 0) {
                *out = VG_TPM_EK_TEMPLATE;
                return 0;
        }
        errno = 0;
        v = strtoul(s, &end, 16);
        if (errno || *end || v < 0x81000000ul || v > 0x81ffffff) {
                vg_err(VG_F("option", "ek_handle"),
                       "expected \"generate\" or a persistent handle 0x81000000..0x81ffffff, "
                       "found \"%s\"",
                       s);
                return -EINVAL;
        }
        *out = (uint32_t)v;
        return 0;
}

static int tpm_setup(struct vg_agent *a)
{
        const struct vg_config *cfg = a->cfg;
        struct vg_tpm_ak_params ak = { .alg = a->sign_key, .hash = a->hash_alg };
        struct vg_error err = { 0 };
        _cleanup_free_ char *ak_path = NULL;
        _cleanup_free_ uint8_t *chain = NULL;
        size_t chain_len = 0;
        uint32_t ek_handle;
        bool created;
        int r;

        if (parse_ek_handle(vg_config_string(cfg, "ek_handle"), &ek_handle) < 0)
                return -EINVAL;
        /* On a raw /dev/tpm0 nothing else cleans up after a crashed predecessor, and the agent
         * owns the TPM; with a resource manager (tpmrm, tabrmd) that is its job. */
        const char *tcti = vg_config_string(cfg, "tcti");
        unsigned flags = tcti && strncmp(tcti, "device:", 7) == 0 && !strstr(tcti, "tpmrm")
                             ? VG_TPM_OPEN_FLUSH_STALE
                             : 0;
        r = vg_tpm_open(tcti, flags, &a->tpm, &err);
        if (r == 0)
                r = vg_tpm_ek_load(a->tpm, a->enc_alg, ek_handle, &err);
        if (r < 0) {
                vg_err(VG_F("tcti", vg_config_string(cfg, "tcti")), "%s", vg_error_str(&err));
                return r;
        }
        if (vg_tpm_ek_chain_read(a->tpm, &chain, &chain_len, &err) == 0 && chain_len)
                vg_info(NULL,
                        "the TPM holds %zu bytes of EK chain certificates (not sent: the "
                        "registrar takes one EK certificate)",
                        chain_len);
        if (asprintf(&ak_path, "%s/ak.bin", a->data_dir) < 0)
                return -ENOMEM;
        r = vg_tpm_ak_load_or_create(a->tpm, ak_path, &ak, &created, &err);
        if (r == -ESTALE) {
                /* tpm_hash_alg or tpm_signing_alg changed: the old AK cannot sign as asked. */
                vg_warn(VG_F("file", ak_path),
                        "the saved AK was made with other algorithms; creating a new one (the "
                        "agent must register again)");
                unlink(ak_path);
                r = vg_tpm_ak_load_or_create(a->tpm, ak_path, &ak, &created, &err);
        }
        if (r < 0) {
                vg_err(VG_F("file", ak_path),
                       "cannot load or create the AK: %s (an AK file belongs to the TPM that "
                       "made it)",
                       vg_error_str(&err));
                return r;
        }
        vg_info(VG_F("file", ak_path), "%s the AK (%s, %s)", created ? "created" : "loaded",
                vg_tpm_sign_alg_name(a->sign_key), vg_hash_alg_name(a->hash_alg));
        return 0;
}

static SSL_CTX *tls_setup(struct vg_agent *a)
{
        char *const *cas = vg_config_strv(a->cfg, "trusted_client_ca");
        struct vg_error err = { 0 };
        SSL_CTX *ctx;

        if (!cas[0]) {
                vg_err(VG_F("option", "trusted_client_ca"),
                       "no client CA is configured: set trusted_client_ca to the CA that issued "
                       "the verifier's and tenant's client certificates (Keylime: "
                       "cv_ca/cacert.crt), or set enable_agent_mtls = false to serve plain HTTP "
                       "(insecure)");
                return NULL;
        }
        for (size_t i = 0; cas[i]; i++) {
                if (cas[i][0] != '/') {
                        vg_err(VG_F("option", "trusted_client_ca"),
                               "expected an absolute path, found \"%s\"", cas[i]);
                        return NULL;
                }
        }
        struct vg_tls_server_config tc = {
                .cert_file = a->server_cert_file,
                .key_file = a->server_key_file,
                .key_password = vg_config_string(a->cfg, "server_key_password"),
                .client_auth = VG_TLS_CLIENT_AUTH_REQUIRED,
                .client_ca_file = cas[0],
        };
        ctx = vg_tls_server_ctx_new(&tc, &err);
        if (!ctx) {
                vg_err(NULL, "%s", vg_error_str(&err));
                return NULL;
        }
        /* Keylime lists the verifier's and the tenant's CAs separately; trust each. */
        for (size_t i = 1; cas[i]; i++) {
                STACK_OF(X509_NAME) *names = SSL_CTX_get_client_CA_list(ctx);
                if (!SSL_CTX_load_verify_file(ctx, cas[i]) ||
                    (names && !SSL_add_file_cert_subjects_to_stack(names, cas[i]))) {
                        vg_err(VG_F("file", cas[i]),
                               "cannot read the client CA certificate (expected PEM)");
                        SSL_CTX_free(ctx);
                        return NULL;
                }
        }
        return ctx;
}

/* Drop root once everything privileged is done (the TPM is open, the port bound). */
static int drop_privileges(const char *spec)
{
        _cleanup_free_ char *user = strdup(spec);
        char *group;
        struct passwd *pw;
        struct group *gr = NULL;

        if (!user)
                return -ENOMEM;
        group = strchr(user, ':');
        if (group)
                *group++ = '\0';
        if (geteuid() != 0) {
                vg_warn(VG_F("option", "run_as"), "not running as root; keeping uid %u",
                        (unsigned)geteuid());
                return 0;
        }
        pw = getpwnam(user);
        if (!pw || (group && *group && !(gr = getgrnam(group)))) {
                vg_err(VG_F("option", "run_as"), "no such %s: \"%s\"", pw ? "group" : "user",
                       pw ? group : user);
                return -ENOENT;
        }
        gid_t gid = gr ? gr->gr_gid : pw->pw_gid;
        if (initgroups(pw->pw_name, gid) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0) {
                vg_err(VG_F("option", "run_as"), "cannot switch to %s: %s", spec, strerror(errno));
                return -errno;
        }
        vg_info(NULL, "running as %s", spec);
        return 0;
}

/* A missing log means the feature is off on this machine (no IMA policy, no UEFI): the quote
 * then goes without it, as Keylime's agent does. Any other error stops the start. */
static int open_log(const char *option, const char *path, int *fd)
{
        *fd = -1;
        if (!path || !*path)
                return 0;
        *fd = open(path, O_RDONLY | O_CLOEXEC);
        if (*fd >= 0)
                return 0;
        if (errno == ENOENT) {
                vg_warn(VG_F("option", option, "file", path),
                        "does not exist; quotes will be sent without it");
                return 0;
        }
        vg_err(VG_F("option", option, "file", path), "cannot open: %s", strerror(errno));
        return -errno;
}

static void agent_clear(struct vg_agent *a)
{
        if (a->ima_fd >= 0)
                close(a->ima_fd);
        if (a->mb_fd >= 0)
                close(a->mb_fd);
        vg_agent_registration_free(a->reg);
        vg_http_server_free(a->server);
        vg_agent_payload_clear(a);
        vg_tpm_close(a->tpm);
        EVP_PKEY_free(a->nk);
        free(a->nk_pem);
        free(a->server_cert_file);
        free(a->server_key_file);
        free(a->server_cert_pem);
}

static int agent_start(struct vg_agent *a)
{
        const struct vg_config *cfg = a->cfg;
        struct vg_error err = { 0 };
        SSL_CTX *tls = NULL;
        int r;

        if (mkdir(a->data_dir, 0700) < 0 && errno != EEXIST) {
                vg_err(VG_F("dir", a->data_dir), "cannot create data_dir: %s", strerror(errno));
                return -errno;
        }
        if ((r = parse_algs(a)) < 0 || (r = tpm_setup(a)) < 0 || (r = vg_agent_uuid_setup(a)) < 0 ||
            (r = vg_agent_nk_setup(a)) < 0 || (r = vg_agent_tls_setup(a)) < 0)
                return r;
        a->mtls = vg_config_boolean(cfg, "enable_agent_mtls");
        if (a->mtls) {
                tls = tls_setup(a);
                if (!tls)
                        return -EINVAL;
        } else {
                vg_warn(VG_F("agent", a->uuid),
                        "enable_agent_mtls = false: serving plain HTTP; anyone who can reach the "
                        "port can read quotes and logs");
        }
        struct vg_http_server_config hc = {
                .address = vg_config_string(cfg, "ip"),
                .port = (uint16_t)vg_config_integer(cfg, "port"),
                .tls = tls,
                .name = "agent",
        };
        r = vg_http_server_new(a->base, &hc, &a->server, &err);
        SSL_CTX_free(tls);
        if (r < 0) {
                vg_err(VG_F("agent", a->uuid), "%s", vg_error_str(&err));
                return r;
        }
        if ((r = vg_agent_payload_setup(a)) < 0 || (r = vg_agent_api_register(a)) < 0)
                return r;
        if ((r = open_log("ima_ml_path", vg_config_string(cfg, "ima_ml_path"), &a->ima_fd)) < 0 ||
            (r = open_log("measuredboot_ml_path", vg_config_string(cfg, "measuredboot_ml_path"),
                          &a->mb_fd)) < 0)
                return r;
        const char *run_as = vg_config_string(cfg, "run_as");
        if (run_as && *run_as && (r = drop_privileges(run_as)) < 0)
                return r;
        vg_info(VG_F("agent", a->uuid), "serving the Keylime agent API v%s-v%s on %s%s:%d",
                VG_AGENT_API_OLDEST, VG_AGENT_API_NEWEST, a->mtls ? "https://" : "http://",
                hc.address, vg_http_server_port(a->server));
        return vg_agent_registration_start(a);
}

int main(int argc, char **argv)
{
        static const struct vg_daemon_info info = {
                .name = "vigil-agent",
                .summary = "The vigil agent: registers this machine's TPM with a Keylime-"
                           "compatible registrar and serves quotes, the IMA list and the UEFI "
                           "log to the verifier (Keylime agent API v2.1-v2.5, pull model).",
                .schema = &schema,
        };
        _cleanup_(vg_daemon_freep) struct vg_daemon *d = NULL;
        struct vg_agent a = { .ima_fd = -1, .mb_fd = -1 };
        int r;

        r = vg_daemon_init(&info, argc, argv, &d);
        if (!d)
                return r;
        a.cfg = vg_daemon_config(d);
        a.base = vg_daemon_base(d);
        a.data_dir = vg_config_string(a.cfg, "data_dir");
        if (!a.data_dir || !*a.data_dir) {
                vg_err(VG_F("option", "data_dir"), "data_dir must be set");
                return 1;
        }
        r = agent_start(&a);
        if (r == 0)
                r = vg_daemon_ready(d) < 0 ? 1 : vg_daemon_run(d);
        else
                r = 1;
        agent_clear(&a);
        return r;
}
