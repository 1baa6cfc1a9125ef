/* vigil tenant: keylime_tenant's command line (`-c add -t IP -v IP -u UUID ...`) on vigil's
 * libraries. This file parses options and configuration and holds the request helpers. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "cleanup.h"
#include "commands.h"
#include "http_client.h"
#include "tenant.h"
#include "tls.h"

static const struct vg_config_option tenant_options[] = {
        { "verifier_ip", VG_CONFIG_STRING, "127.0.0.1", "verifier address (-v)" },
        { "verifier_port", VG_CONFIG_INTEGER, "8881", "verifier port (-vp)", 1, 65535 },
        { "registrar_ip", VG_CONFIG_STRING, "127.0.0.1", "registrar address (-r)" },
        { "registrar_port", VG_CONFIG_INTEGER, "8891",
          "registrar mTLS port (-rp); the tenant never uses the plain registration port", 1,
          65535 },
        { "tls_dir", VG_CONFIG_PATH, "/var/lib/vigil/cv_ca",
          "a `vigil ca init` directory; relative TLS file names are read from it" },
        { "client_cert", VG_CONFIG_STRING, "client-cert.crt",
          "client certificate presented to the verifier, registrar and agent (PEM)" },
        { "client_key", VG_CONFIG_STRING, "client-private.pem", "its private key (PEM)" },
        { "client_key_password", VG_CONFIG_STRING, NULL, "password of an encrypted client_key" },
        { "trusted_server_ca", VG_CONFIG_STRING, "cacert.crt",
          "CA certificate(s) (PEM) the verifier's and registrar's certificates must chain to" },
        { "enable_agent_mtls", VG_CONFIG_BOOLEAN, "true",
          "talk to agents over mTLS, pinning the certificate they registered" },
        { "tpm_cert_store", VG_CONFIG_PATH, "/var/lib/vigil/tpm_cert_store",
          "directory of trusted EK root and intermediate CA certificates (PEM or DER)" },
        { "require_ek_cert", VG_CONFIG_BOOLEAN, "true",
          "refuse agents whose EK certificate does not chain to tpm_cert_store" },
        { "accept_tpm_hash_algs", VG_CONFIG_STRING_LIST, "sha512,sha384,sha256",
          "quote hash algorithms accepted, sent to the verifier" },
        { "accept_tpm_encryption_algs", VG_CONFIG_STRING_LIST, "ecc,rsa",
          "EK/AK key types accepted (rsa also accepts rsa2048 etc.)" },
        { "accept_tpm_signing_algs", VG_CONFIG_STRING_LIST, "rsassa,ecdsa",
          "quote signature schemes accepted (rsassa, rsapss, ecdsa)" },
        { "tpm_policy", VG_CONFIG_STRING, "{}",
          "default tpm_policy JSON ({\"<pcr>\": [\"hex\", ...]}) when --tpm_policy is not given" },
        { "max_payload_size", VG_CONFIG_INTEGER, "1048576",
          "largest encrypted payload (base64 bytes) -f or --cert may send", 1, INT32_MAX },
        { "request_timeout", VG_CONFIG_INTEGER, "60", "seconds before a request is abandoned", 1,
          3600 },
        { "retry_interval", VG_CONFIG_STRING, "2",
          "seconds between retries (with exponential_backoff: the base of the power)" },
        { "exponential_backoff", VG_CONFIG_BOOLEAN, "true",
          "wait retry_interval^n before try n instead of retry_interval" },
        { "max_retries", VG_CONFIG_INTEGER, "5",
          "tries of the agent's quote, the verifier's add and --verify", 1, 1000 },
        {},
};

const struct vg_config_schema tenant_schema = {
        .component = "tenant",
        .section = "tenant",
        .options = tenant_options,
};

/* ---- output ------------------------------------------------------------------------------ */

void tenant_say(const char *fmt, ...)
{
        va_list ap;

        fputs("vigil tenant: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int tenant_fail(const char *fmt, ...)
{
        va_list ap;

        fputs("vigil tenant: error: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

void tenant_print_json(json_t *j)
{
        _cleanup_free_ char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

        if (s)
                printf("%s\n", s);
        fflush(stdout);
}

/* ---- requests ---------------------------------------------------------------------------- */

const char *tenant_status_text(json_t *reply)
{
        const char *s = json_string_value(json_object_get(reply, "status"));

        return s && *s ? s : "no status text";
}

int tenant_request(struct tenant *t, SSL_CTX *tls, const char *method, const char *base,
                   const char *path, json_t *body, json_t **out, struct vg_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct vg_http_response *resp = NULL;
        struct vg_http_client_config cc = { .tls = tls,
                                            .timeout_ms = t->timeout_ms,
                                            .no_keepalive = true };
        struct vg_http_client_request rq = { .method = method, .json = body };
        json_t *j;
        int status;

        if (out)
                *out = NULL;
        if (asprintf(&url, "%s%s", base, path) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory"), -1;
        rq.url = url;
        /* An empty PUT (reactivate, stop) still says how long its body is. */
        if (!body && (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0)) {
                rq.body = "";
                rq.body_len = 0;
        }
        if (vg_http_fetch(&cc, &rq, &resp, err) < 0) {
                vg_error_prefix(err, "%s %s failed: ", method, url);
                return -1;
        }
        status = resp->status;
        j = resp->body_len ? vg_http_response_json(resp, NULL) : NULL;
        if (out)
                *out = j;
        else
                json_decref(j);
        vg_http_response_free(resp);
        return status;
}

/* ---- small helpers ----------------------------------------------------------------------- */

int tenant_random_alnum(char *out, size_t n)
{
        static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        size_t i = 0;

        while (i < n) {
                unsigned char b[32];

                if (RAND_bytes(b, sizeof(b)) != 1)
                        return -EIO;
                /* 248 = 4 * 62: rejection keeps every character equally likely. */
                for (size_t k = 0; k < sizeof(b) && i < n; k++)
                        if (b[k] < 248)
                                out[i++] = set[b[k] % 62];
        }
        out[n] = '\0';
        return 0;
}

double tenant_retry_delay(const struct tenant *t, unsigned n)
{
        double d = t->retry_interval;

        /* retry_interval ** n, as keylime/common/retry.py */
        for (unsigned i = 1; t->exponential_backoff && t->retry_interval > 1 && i < n && d < 3600;
             i++)
                d *= t->retry_interval;
        return d;
}

void tenant_sleep(double seconds)
{
        struct timespec ts = { .tv_sec = (time_t)seconds,
                               .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9) };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Versions this tenant speaks, oldest first. */
static const char *const api_versions[] = { "2.1", "2.2", "2.3", "2.4", "2.5", "2.6" };

static int version_cmp(const char *a, const char *b)
{
        unsigned am = 0, an = 0, bm = 0, bn = 0;

        sscanf(a, "%u.%u", &am, &an);
        sscanf(b, "%u.%u", &bm, &bn);
        return am != bm ? (am > bm ? 1 : -1) : (an > bn) - (an < bn);
}

void tenant_negotiate(json_t *reply, const char *fallback, char out[8])
{
        json_t *res = json_object_get(reply, "results");
        json_t *list = json_object_get(res, "supported_versions"), *v;
        const char *best = NULL;
        size_t i;

        if (!json_is_array(list)) {
                /* Agents before API 2.x negotiation send only supported_version. */
                list = json_array();
                if (json_is_string(json_object_get(res, "supported_version")))
                        json_array_append(list, json_object_get(res, "supported_version"));
        } else {
                json_incref(list);
        }
        json_array_foreach (list, i, v) {
                const char *s = json_string_value(v);

                for (size_t k = 0; s && k < VG_ARRAY_SIZE(api_versions); k++)
                        if (strcmp(s, api_versions[k]) == 0 && (!best || version_cmp(s, best) > 0))
                                best = api_versions[k];
        }
        json_decref(list);
        snprintf(out, 8, "%s", best ? best : fallback);
}

static const char *negotiate_with(struct tenant *t, const char *base, char cache[8],
                                  const char *who)
{
        json_t *reply = NULL;
        struct vg_error err = { 0 };
        int st;

        if (cache[0])
                return cache;
        st = tenant_request(t, t->tls, "GET", base, "/version", NULL, &reply, &err);
        if (st == 200) {
                tenant_negotiate(reply, "2.5", cache);
        } else {
                /* Keylime falls back to its current version when /version cannot be read. */
                snprintf(cache, 8, "2.5");
                if (st < 0)
                        tenant_say("cannot read the %s's API versions (%s); using %s", who,
                                   vg_error_str(&err), cache);
        }
        json_decref(reply);
        return cache;
}

const char *tenant_verifier_api(struct tenant *t)
{
        return negotiate_with(t, t->verifier_base, t->verifier_api, "verifier");
}

const char *tenant_registrar_api(struct tenant *t)
{
        return negotiate_with(t, t->registrar_base, t->registrar_api, "registrar");
}

bool tenant_alg_accepted(const struct tenant *t, const char *option, const char *name)
{
        char *const *list = vg_config_strv(t->cfg, option);

        if (!name)
                return false;
        for (size_t i = 0; list[i]; i++) {
                size_t len = strlen(list[i]);

                if (strcasecmp(list[i], name) == 0)
                        return true;
                /* "rsa" accepts "rsa2048", "ecc" accepts "ecc256" (API 2.5 enc_alg). */
                if (strncasecmp(list[i], name, len) == 0 && name[len] >= '0' && name[len] <= '9')
                        return true;
        }
        return false;
}

/* ---- command line ------------------------------------------------------------------------- */

enum {
        O_COMMAND = 1,
        O_PUSH,
        O_AGENT_IP,
        O_AGENT_PORT,
        O_CV_AGENT_IP,
        O_REG_IP,
        O_REG_PORT,
        O_CV_IP,
        O_CV_PORT,
        O_CV_ID,
        O_NO_CV_CHECK,
        O_UUID,
        O_FILE,
        O_CERT,
        O_INCLUDE,
        O_ALLOWLIST,
        O_EXCLUDE,
        O_RUNTIME_POLICY,
        O_RUNTIME_POLICY_NAME,
        O_RUNTIME_POLICY_SIG_KEY,
        O_RUNTIME_POLICY_CHECKSUM,
        O_TPM_POLICY,
        O_MB_POLICY,
        O_MB_POLICY_NAME,
        O_VERIFY,
        O_AGENT_API,
        O_CONFIG,
        O_HELP,
};

static const struct {
        const char *short_name, *long_name;
        bool has_value;
        int id;
} tenant_opts[] = {
        { "-c", "--command", true, O_COMMAND },
        { NULL, "--push-model", false, O_PUSH },
        { "-t", "--targethost", true, O_AGENT_IP },
        { "-tp", "--targetport", true, O_AGENT_PORT },
        { NULL, "--cv_targethost", true, O_CV_AGENT_IP },
        { "-r", "--registrarhost", true, O_REG_IP },
        { "-rp", "--registrarport", true, O_REG_PORT },
        { "-v", "--cv", true, O_CV_IP },
        { "-vp", "--cvport", true, O_CV_PORT },
        { "-vi", "--cvid", true, O_CV_ID },
        { "-nvc", "--no-verifier-check", false, O_NO_CV_CHECK },
        { "-u", "--uuid", true, O_UUID },
        { "-f", "--file", true, O_FILE },
        { NULL, "--cert", true, O_CERT },
        { NULL, "--include", true, O_INCLUDE },
        { NULL, "--allowlist", true, O_ALLOWLIST },
        { NULL, "--exclude", true, O_EXCLUDE },
        { NULL, "--runtime-policy", true, O_RUNTIME_POLICY },
        { NULL, "--runtime-policy-name", true, O_RUNTIME_POLICY_NAME },
        { NULL, "--allowlist-name", true, O_RUNTIME_POLICY_NAME },
        { NULL, "--runtime-policy-sig-key", true, O_RUNTIME_POLICY_SIG_KEY },
        { NULL, "--runtime-policy-checksum", true, O_RUNTIME_POLICY_CHECKSUM },
        { NULL, "--tpm_policy", true, O_TPM_POLICY },
        { NULL, "--mb-policy", true, O_MB_POLICY },
        { NULL, "--mb_refstate", true, O_MB_POLICY },
        { NULL, "--mb-policy-name", true, O_MB_POLICY_NAME },
        { NULL, "--verify", false, O_VERIFY },
        { NULL, "--agent-api-version", true, O_AGENT_API },
        { NULL, "--supported-version", true, O_AGENT_API },
        { NULL, "--config", true, O_CONFIG },
        { "-h", "--help", false, O_HELP },
};

static const char *const commands[] = {
        "add",
        "delete",
        "update",
        "regstatus",
        "cvstatus",
        "status",
        "reglist",
        "cvlist",
        "reactivate",
        "regdelete",
        "bulkinfo",
        "addruntimepolicy",
        "showruntimepolicy",
        "deleteruntimepolicy",
        "updateruntimepolicy",
        "listruntimepolicy",
        "addmbpolicy",
        "showmbpolicy",
        "deletembpolicy",
        "updatembpolicy",
        "listmbpolicy",
};

static void usage(FILE *out)
{
        fprintf(out,
                "Usage: vigil tenant [-c COMMAND] [OPTIONS]\n"
                "\n"
                "Enrol agents with the verifier and deliver secrets to them, as keylime_tenant.\n"
                "\n"
                "Commands (-c, --command; default add):\n"
                "  add                  check the agent (registrar record, EK certificate,\n"
                "                       identity quote), send U and the payload to it and add\n"
                "                       it to the verifier\n"
                "  update               delete from the verifier, then add\n"
                "  delete               remove the agent from the verifier\n"
                "  reactivate           restart attestation of a failed agent\n"
                "  status               the registrar's and the verifier's view of the agent\n"
                "  regstatus, cvstatus  one of them\n"
                "  reglist, cvlist      agents known to the registrar / verifier\n"
                "  bulkinfo             every agent of the verifier with its state\n"
                "  regdelete            remove the agent from the registrar\n"
                "  addruntimepolicy, updateruntimepolicy, showruntimepolicy,\n"
                "  deleteruntimepolicy, listruntimepolicy\n"
                "                       named runtime policies on the verifier\n"
                "  addmbpolicy, updatembpolicy, showmbpolicy, deletembpolicy,\n"
                "  listmbpolicy         named measured boot policies (refstates)\n"
                "\n"
                "Options:\n"
                "  -u, --uuid UUID                agent (default " TENANT_DEFAULT_UUID ")\n"
                "  -t, --targethost IP            agent address (default: as registered)\n"
                "  -tp, --targetport PORT         agent port (default: as registered)\n"
                "  --cv_targethost IP             agent address the verifier uses\n"
                "  -v, --cv IP                    verifier address (verifier_ip)\n"
                "  -vp, --cvport PORT             verifier port (verifier_port)\n"
                "  -vi, --cvid ID                 verifier id for cvlist and bulkinfo\n"
                "  -r, --registrarhost IP         registrar address (registrar_ip)\n"
                "  -rp, --registrarport PORT      registrar mTLS port (registrar_port)\n"
                "  -nvc, --no-verifier-check      delete/reactivate without a status request\n"
                "  -f, --file FILE                payload delivered to the agent, encrypted\n"
                "  --cert CA_DIR                  deliver a certificate package from this CA\n"
                "  --include DIR                  extra files for the --cert package\n"
                "  --allowlist FILE               flat allowlist (hash path per line)\n"
                "  --exclude FILE                 exclude list (regexes) for --allowlist\n"
                "  --runtime-policy FILE          runtime policy JSON\n"
                "  --runtime-policy-name NAME     named runtime policy on the verifier\n"
                "  --runtime-policy-sig-key FILE  key that signed the runtime policy\n"
                "  --runtime-policy-checksum HEX  SHA-256 the runtime policy must have\n"
                "  --tpm_policy JSON              PCR values ({\"15\": [\"hex\"]})\n"
                "  --mb-policy FILE               measured boot policy (refstate JSON)\n"
                "  --mb-policy-name NAME          named measured boot policy on the verifier\n"
                "  --verify                       wait until the agent derived the key\n"
                "  --agent-api-version VER        agent API version instead of negotiating\n"
                "  --push-model                   refused: vigil agents are pulled\n"
                "  --config FILE                  configuration instead of tenant.conf\n"
                "  -h, --help                     this text\n"
                "\n"
                "Configuration: /etc/vigil/tenant.conf [tenant], VIGIL_TENANT_<OPTION>.\n"
                "Exit status: 0 success, 1 failure, 2 usage error. See vigil-tenant(1).\n");
}

static bool valid_uuid(const char *s)
{
        /* Keylime's valid_agent_id: letters, digits, '-', '_', '.', at most 255. */
        size_t n = strlen(s);

        if (n == 0 || n > 255)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
                        return false;
        return true;
}

static bool valid_port(const char *s)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        return *s && !*end && !errno && v > 0 && v < 65536;
}

static int parse_args(int argc, char **argv, struct tenant_args *a, const char **config_file)
{
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i], *eq = NULL, *value = NULL;
                size_t len = strlen(arg);
                int id = 0;

                if (arg[0] == '-' && arg[1] == '-' && (eq = strchr(arg, '=')))
                        len = (size_t)(eq - arg);
                for (size_t k = 0; k < VG_ARRAY_SIZE(tenant_opts) && !id; k++) {
                        const char *s = tenant_opts[k].short_name, *l = tenant_opts[k].long_name;

                        if ((s && !eq && strcmp(arg, s) == 0) ||
                            (strlen(l) == len && strncmp(arg, l, len) == 0)) {
                                id = tenant_opts[k].id;
                                if (tenant_opts[k].has_value) {
                                        if (eq)
                                                value = eq + 1;
                                        else if (i + 1 < argc)
                                                value = argv[++i];
                                        else
                                                return cli_usage_error(
                                                    "tenant", "option %s: expected a value", arg);
                                } else if (eq) {
                                        return cli_usage_error(
                                            "tenant", "option %.*s takes no value", (int)len, arg);
                                }
                        }
                }
                switch (id) {
                case 0:
                        return cli_usage_error("tenant", "unknown argument '%s'", arg);
                case O_HELP:
                        usage(stdout);
                        return -1;
                case O_COMMAND:
                        a->command = value;
                        break;
                case O_PUSH:
                        a->push_model = true;
                        break;
                case O_AGENT_IP:
                        a->agent_ip = value;
                        break;
                case O_AGENT_PORT:
                        a->agent_port = value;
                        break;
                case O_CV_AGENT_IP:
                        a->cv_agent_ip = value;
                        break;
                case O_REG_IP:
                        a->registrar_ip = value;
                        break;
                case O_REG_PORT:
                        a->registrar_port = value;
                        break;
                case O_CV_IP:
                        a->verifier_ip = value;
                        break;
                case O_CV_PORT:
                        a->verifier_port = value;
                        break;
                case O_CV_ID:
                        a->verifier_id = value;
                        break;
                case O_NO_CV_CHECK:
                        a->no_verifier_check = true;
                        break;
                case O_UUID:
                        a->uuid = value;
                        break;
                case O_FILE:
                        a->file = value;
                        break;
                case O_CERT:
                        a->cert_dir = value;
                        break;
                case O_INCLUDE:
                        a->include_dir = value;
                        break;
                case O_ALLOWLIST:
                        a->allowlist = value;
                        break;
                case O_EXCLUDE:
                        a->exclude = value;
                        break;
                case O_RUNTIME_POLICY:
                        a->runtime_policy = value;
                        break;
                case O_RUNTIME_POLICY_NAME:
                        a->runtime_policy_name = value;
                        break;
                case O_RUNTIME_POLICY_SIG_KEY:
                        a->runtime_policy_sig_key = value;
                        break;
                case O_RUNTIME_POLICY_CHECKSUM:
                        a->runtime_policy_checksum = value;
                        break;
                case O_TPM_POLICY:
                        a->tpm_policy = value;
                        break;
                case O_MB_POLICY:
                        a->mb_policy = value;
                        break;
                case O_MB_POLICY_NAME:
                        a->mb_policy_name = value;
                        break;
                case O_VERIFY:
                        a->verify = true;
                        break;
                case O_AGENT_API:
                        a->agent_api_version = value;
                        break;
                case O_CONFIG:
                        *config_file = value;
                        break;
                }
        }
        return 0;
}

/* keylime_tenant's option rules (keylime/cli/options.py and Tenant.init_add). */
static int check_args(struct tenant_args *a)
{
        bool known = false;

        for (size_t i = 0; i < VG_ARRAY_SIZE(commands); i++)
                known = known || strcmp(a->command, commands[i]) == 0;
        if (!known)
                return cli_usage_error("tenant", "invalid command '%s' for -c", a->command);
        if (a->push_model)
                return cli_usage_error("tenant",
                                       "--push-model: vigil agents are attested in pull mode "
                                       "only");
        bool needs_uuid =
            strstr(a->command, "list") == NULL && strstr(a->command, "runtimepolicy") == NULL &&
            strstr(a->command, "mbpolicy") == NULL && strcmp(a->command, "bulkinfo") != 0;

        if (!a->uuid && needs_uuid)
                tenant_say("using the default UUID %s", TENANT_DEFAULT_UUID);
        if (!a->uuid)
                a->uuid = TENANT_DEFAULT_UUID;
        if (!valid_uuid(a->uuid))
                return cli_usage_error("tenant",
                                       "-u: expected an agent ID of letters, digits, '-', '_' "
                                       "and '.', found '%s'",
                                       a->uuid);
        if (a->agent_port && !valid_port(a->agent_port))
                return cli_usage_error("tenant", "-tp: expected a port, found '%s'", a->agent_port);
        if ((strcmp(a->command, "addruntimepolicy") == 0 ||
             strcmp(a->command, "updateruntimepolicy") == 0) &&
            !a->allowlist && !a->runtime_policy)
                return cli_usage_error("tenant", "--allowlist or --runtime-policy is required to "
                                                 "add a runtime policy");
        if (a->exclude && !a->allowlist)
                return cli_usage_error("tenant", "--exclude cannot be used without an --allowlist");
        if (a->allowlist && a->runtime_policy)
                return cli_usage_error("tenant",
                                       "--allowlist and --runtime-policy cannot be used together");
        if (a->runtime_policy_checksum && !a->runtime_policy)
                return cli_usage_error("tenant",
                                       "--runtime-policy-checksum needs --runtime-policy");
        if (!!a->file + !!a->cert_dir > 1)
                return cli_usage_error("tenant", "use one of -f and --cert to give the data "
                                                 "delivered to the agent");
        if (a->include_dir && !a->cert_dir)
                return cli_usage_error("tenant", "--include is only valid with --cert");
        if (a->verify && !a->file && !a->cert_dir)
                return cli_usage_error("tenant", "--verify only works when a payload is given "
                                                 "with -f or --cert");
        return 0;
}

/* A TLS file name: absolute as given, otherwise inside tls_dir (Keylime's rule). */
static int tls_path(const struct vg_config *cfg, const char *name, char *out, size_t len,
                    struct vg_error *err)
{
        const char *v = vg_config_string(cfg, name), *dir = vg_config_string(cfg, "tls_dir");

        if (!v || !*v)
                return vg_error_set(err, -EINVAL, "option %s is not set", name);
        if (v[0] == '/')
                snprintf(out, len, "%s", v);
        else if (!dir || !*dir)
                return vg_error_set(err, -EINVAL, "option %s (%s) is relative but tls_dir is unset",
                                    name, v);
        else
                snprintf(out, len, "%s/%s", dir, v);
        return 0;
}

SSL_CTX *tenant_tls_ctx(const struct vg_config *cfg, struct vg_error *err)
{
        char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];

        if (tls_path(cfg, "client_cert", cert, sizeof(cert), err) < 0 ||
            tls_path(cfg, "client_key", key, sizeof(key), err) < 0 ||
            tls_path(cfg, "trusted_server_ca", ca, sizeof(ca), err) < 0)
                return NULL;
        struct vg_tls_client_config tc = {
                .ca_file = ca,
                .cert_file = cert,
                .key_file = key,
                .key_password = vg_config_string(cfg, "client_key_password"),
        };
        SSL_CTX *ctx = vg_tls_client_ctx_new(&tc, err);
        if (!ctx)
                vg_error_prefix(err, "client TLS set-up: ");
        return ctx;
}

void tenant_https_base(char *out, size_t len, const char *ip, long long port)
{
        snprintf(out, len, strchr(ip, ':') ? "https://[%s]:%lld" : "https://%s:%lld", ip, port);
}

static int setup(struct tenant *t, const char *config_file)
{
        struct vg_config_load_opts lo = { .file = config_file };
        struct vg_error err = { 0 };
        const struct {
                const char *value, *option;
        } overrides[] = {
                { t->a.verifier_ip, "verifier_ip" },
                { t->a.verifier_port, "verifier_port" },
                { t->a.registrar_ip, "registrar_ip" },
                { t->a.registrar_port, "registrar_port" },
        };

        if (vg_config_load(&tenant_schema, &lo, &t->cfg, &err) < 0)
                return tenant_fail("configuration: %s", vg_error_str(&err));
        for (size_t i = 0; i < VG_ARRAY_SIZE(overrides); i++)
                if (overrides[i].value &&
                    vg_config_set(t->cfg, overrides[i].option, overrides[i].value, &err) < 0) {
                        cli_usage_error("tenant", "%s: %s", overrides[i].option,
                                        vg_error_str(&err));
                        return 2;
                }
        t->timeout_ms = (unsigned)vg_config_integer(t->cfg, "request_timeout") * 1000u;
        t->max_retries = (unsigned)vg_config_integer(t->cfg, "max_retries");
        t->exponential_backoff = vg_config_boolean(t->cfg, "exponential_backoff");
        {
                const char *ri = vg_config_string(t->cfg, "retry_interval");
                char *end;

                t->retry_interval = ri ? strtod(ri, &end) : 2;
                if (!ri || end == ri || *end || !(t->retry_interval >= 0) ||
                    t->retry_interval > 3600)
                        return tenant_fail("option retry_interval: expected seconds from 0 to "
                                           "3600, found '%s'",
                                           ri ? ri : "");
        }

        const char *vip = vg_config_string(t->cfg, "verifier_ip");
        const char *rip = vg_config_string(t->cfg, "registrar_ip");
        tenant_https_base(t->verifier_base, sizeof(t->verifier_base), vip,
                          (long long)vg_config_integer(t->cfg, "verifier_port"));
        tenant_https_base(t->registrar_base, sizeof(t->registrar_base), rip,
                          (long long)vg_config_integer(t->cfg, "registrar_port"));
        t->tls = tenant_tls_ctx(t->cfg, &err);
        if (!t->tls)
                return tenant_fail("%s", vg_error_str(&err));
        return 0;
}

static void tenant_clear(struct tenant *t)
{
        if (t->tls)
                SSL_CTX_free(t->tls);
        if (t->agent_tls)
                SSL_CTX_free(t->agent_tls);
        json_decref(t->reg.json);
        if (t->have_bundle)
                vg_payload_bundle_clear(&t->bundle);
        free(t->revocation_key);
        free(t->metadata);
        free(t->tpm_policy);
        free(t->runtime_policy_b64);
        free(t->runtime_policy_key);
        free(t->mb_policy);
        vg_config_free(t->cfg);
}

int cmd_tenant(int argc, char **argv)
{
        struct tenant t = { .a.command = "add" };
        const char *config_file = NULL, *c;
        int r;

        r = parse_args(argc, argv, &t.a, &config_file);
        if (r < 0)
                return 0; /* --help */
        if (r > 0)
                return r;
        if ((r = check_args(&t.a)) != 0)
                return r;
        if ((r = setup(&t, config_file)) != 0) {
                tenant_clear(&t);
                return r;
        }
        c = t.a.command;
        if (strcmp(c, "add") == 0)
                r = tenant_cmd_add(&t, false);
        else if (strcmp(c, "update") == 0)
                r = tenant_cmd_add(&t, true);
        else if (strcmp(c, "delete") == 0)
                r = tenant_cmd_delete(&t);
        else if (strcmp(c, "status") == 0)
                r = tenant_cmd_status(&t);
        else if (strcmp(c, "cvstatus") == 0)
                r = tenant_cmd_cvstatus(&t, true, NULL);
        else if (strcmp(c, "regstatus") == 0)
                r = tenant_cmd_regstatus(&t);
        else if (strcmp(c, "reglist") == 0)
                r = tenant_cmd_reglist(&t);
        else if (strcmp(c, "regdelete") == 0)
                r = tenant_cmd_regdelete(&t);
        else if (strcmp(c, "cvlist") == 0)
                r = tenant_cmd_cvlist(&t, false);
        else if (strcmp(c, "bulkinfo") == 0)
                r = tenant_cmd_cvlist(&t, true);
        else if (strcmp(c, "reactivate") == 0)
                r = tenant_cmd_reactivate(&t);
        else if (strstr(c, "mbpolicy"))
                r = tenant_cmd_mb_policy(&t, c);
        else
                r = tenant_cmd_runtime_policy(&t, c);
        tenant_clear(&t);
        return r;
}
