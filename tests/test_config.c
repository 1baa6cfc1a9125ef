/* vigil tests: layered configuration: precedence (default < main file < drop-ins in strcmp
 * order < environment < command line), type and path checks, sources, warnings, dump. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "log.h"
#include "tap.h"

static const char *const agent_aliases[] = { "cloud_agent", NULL };

static const struct vg_config_option agent_options[] = {
        { "uuid", VG_CONFIG_STRING, "d432fbb3-d2f1-4a97-9ef7-75bd81c00000", "agent UUID", 0, 0 },
        { "ip", VG_CONFIG_STRING, "127.0.0.1", "address to listen on", 0, 0 },
        { "port", VG_CONFIG_INTEGER, "9002", "port to listen on", 1, 65535 },
        { "registrar_ip", VG_CONFIG_STRING, "127.0.0.1", "registrar address", 0, 0 },
        { "registrar_port", VG_CONFIG_INTEGER, "8890", "registrar port", 1, 65535 },
        { "enable_agent_mtls", VG_CONFIG_BOOLEAN, "true", "require client certificates", 0, 0 },
        { "server_key", VG_CONFIG_PATH, NULL, "TLS key; generated when unset", 0, 0 },
        { "data_dir", VG_CONFIG_PATH, "/var/lib/vigil", "state directory", 0, 0 },
        { "trusted_client_ca", VG_CONFIG_STRING_LIST, NULL, "client CA certificates", 0, 0 },
        { "api_versions", VG_CONFIG_STRING_LIST, "2.1, 2.2", "API versions served", 0, 0 },
        { "tcti", VG_CONFIG_STRING, NULL, "TPM connection", 0, 0 },
        { "quote-interval", VG_CONFIG_INTEGER, "2", NULL, 0, 0 },
        { "retry_count", VG_CONFIG_INTEGER, NULL, "retries; unset means forever", 0, 0 },
        { 0 },
};

static const struct vg_config_schema agent_schema = {
        .component = "agent",
        .section = "agent",
        .aliases = agent_aliases,
        .options = agent_options,
};

static char *const no_env[] = { NULL };

static char *path_join(const char *dir, const char *rel)
{
        char *p;

        if (asprintf(&p, "%s/%s", dir, rel) < 0)
                tap_bail("out of memory");
        return p;
}

/* Write dir/rel, creating rel's directories. */
static char *put(const char *dir, const char *rel, const char *content)
{
        char *path = path_join(dir, rel);

        for (char *slash = strchr(path + strlen(dir) + 1, '/'); slash;
             slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                mkdir(path, 0755);
                *slash = '/';
        }
        if (tap_write_file(path, content) < 0)
                tap_bail("cannot write %s", path);
        return path;
}

/* Write dir/rel when the test does not need its path. */
static void put_only(const char *dir, const char *rel, const char *content)
{
        free(put(dir, rel, content));
}

/* Log lines go to a memory buffer while a test looks for a warning. */
struct capture {
        FILE *f;
        char *text;
        size_t len;
};

static void capture_start(struct capture *c)
{
        *c = (struct capture){ 0 };
        c->f = open_memstream(&c->text, &c->len);
        if (!c->f)
                tap_bail("open_memstream failed");
        vg_log_setup(
            &(struct vg_log_config){ .component = "test", .level = VG_LOG_INFO, .out = c->f });
}

static char *capture_end(struct capture *c)
{
        vg_log_setup(&(struct vg_log_config){ .component = "test", .level = VG_LOG_INFO });
        fclose(c->f);
        return c->text;
}

struct load {
        const char *conf_dir;
        const char *file;
        char *const *env;
        bool strict;
};

static int load(const struct load *l, struct vg_config **cfg, struct vg_error *err)
{
        const struct vg_config_load_opts opts = {
                .conf_dir = l->conf_dir,
                .file = l->file,
                .environ = l->env ? l->env : no_env,
                .strict_unknown = l->strict,
        };

        *cfg = NULL;
        *err = (struct vg_error){ 0 };
        return vg_config_load(&agent_schema, &opts, cfg, err);
}

static struct vg_config *load_ok(const struct load *l, const char *what)
{
        struct vg_config *cfg;
        struct vg_error err;

        if (!ok(load(l, &cfg, &err) == 0, "loads: %s", what))
                tap_diag("error: %s", err.msg);
        return cfg;
}

static void load_fails(const struct load *l, int code, const char *message, const char *what)
{
        struct vg_config *cfg;
        struct vg_error err;

        is_int(load(l, &cfg, &err), code, "refused: %s", what);
        is_str(err.msg, message, "message: %s", what);
        ok(cfg == NULL, "no config on error: %s", what);
        vg_config_free(cfg);
}

static __attribute__((format(printf, 1, 2))) char *fmt(const char *f, ...)
{
        va_list ap;
        char *s;
        int r;

        va_start(ap, f);
        r = vasprintf(&s, f, ap);
        va_end(ap);
        if (r < 0)
                tap_bail("out of memory");
        return s;
}

static void is_strv(char *const *got, const char *const *want, const char *what)
{
        size_t n = 0, m = 0;

        while (got && got[n])
                n++;
        while (want[m])
                m++;
        if (!is_int(n, m, "%s: %zu items", what, m))
                return;
        for (size_t i = 0; i < n; i++)
                is_str(got[i], want[i], "%s: item %zu", what, i);
}

static void test_defaults(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_(vg_config_freep) struct vg_config *cfg =
            load_ok(&(struct load){ .conf_dir = dir }, "no files at all");

        if (!cfg)
                return;
        is_str(vg_config_string(cfg, "uuid"), "d432fbb3-d2f1-4a97-9ef7-75bd81c00000", "string");
        is_int(vg_config_integer(cfg, "port"), 9002, "integer default");
        ok(vg_config_boolean(cfg, "enable_agent_mtls"), "boolean default");
        is_str(vg_config_string(cfg, "data_dir"), "/var/lib/vigil", "path default");
        ok(vg_config_string(cfg, "server_key") == NULL, "unset path is NULL");
        ok(vg_config_string(cfg, "tcti") == NULL, "unset string is NULL");
        is_int(vg_config_integer(cfg, "retry_count"), 0, "unset integer reads 0");
        is_strv(vg_config_strv(cfg, "api_versions"), (const char *const[]){ "2.1", "2.2", NULL },
                "list default, comma-separated");
        is_strv(vg_config_strv(cfg, "trusted_client_ca"), (const char *const[]){ NULL },
                "unset list is empty, not NULL");
        is_str(vg_config_source(cfg, "port"), "default", "source of a default");
        is_str(vg_config_source(cfg, "server_key"), "default", "source of an unset option");
}

static void test_keylime_dropin(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        /* The Keylime guide's example, as it would sit in our drop-in directory. */
        _cleanup_free_ char *path = put(dir, "agent.conf.d/00-registrar-ip.conf",
                                        "[agent]\n\nregistrar_ip = \"192.0.2.10\"\n");
        _cleanup_free_ char *path2 =
            put(dir, "agent.conf.d/10-same.conf", "[agent]\nregistrar_ip = \"127.0.0.1\"\n");
        _cleanup_(vg_config_freep) struct vg_config *cfg =
            load_ok(&(struct load){ .conf_dir = dir }, "Keylime guide drop-in");
        _cleanup_free_ char *src = fmt("%s:2", path2);

        if (!cfg)
                return;
        is_str(vg_config_string(cfg, "registrar_ip"), "127.0.0.1", "registrar_ip set");
        is_str(vg_config_source(cfg, "registrar_ip"), src, "source is the drop-in's line");
        unlink(path2);

        _cleanup_(vg_config_freep) struct vg_config *cfg2 =
            load_ok(&(struct load){ .conf_dir = dir }, "Keylime guide drop-in alone");
        _cleanup_free_ char *src2 = fmt("%s:3", path);
        is_str(cfg2 ? vg_config_string(cfg2, "registrar_ip") : NULL, "192.0.2.10",
               "registrar_ip from the guide's drop-in");
        is_str(cfg2 ? vg_config_source(cfg2, "registrar_ip") : NULL, src2, "line 3 of it");
}

static void test_precedence(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_free_ char *main_file =
            put(dir, "agent.conf",
                "# main\n[agent]\nip = \"10.0.0.1\"\nport = 1000\ntcti = \"main\"\n");
        _cleanup_free_ char *a =
            put(dir, "agent.conf.d/10-a.conf", "[agent]\nport = 2000\nregistrar_port = 111\n");
        _cleanup_free_ char *b = put(dir, "agent.conf.d/20-b.conf", "[agent]\n\nport = 3000\n");
        char *env[] = { "VIGIL_AGENT_TCTI=swtpm:host=127.0.0.1,port=2321", NULL };
        _cleanup_(vg_config_freep) struct vg_config *cfg =
            load_ok(&(struct load){ .conf_dir = dir, .env = env }, "all layers");
        _cleanup_free_ char *ip_src = fmt("%s:3", main_file);
        _cleanup_free_ char *rp_src = fmt("%s:3", a);
        _cleanup_free_ char *port_src = fmt("%s:3", b);

        if (!cfg)
                return;
        is_str(vg_config_string(cfg, "ip"), "10.0.0.1", "main file beats default");
        is_str(vg_config_source(cfg, "ip"), ip_src, "source: main file line");
        is_int(vg_config_integer(cfg, "registrar_port"), 111, "drop-in beats default");
        is_str(vg_config_source(cfg, "registrar_port"), rp_src, "source: first drop-in");
        is_int(vg_config_integer(cfg, "port"), 3000, "later drop-in beats earlier and main");
        is_str(vg_config_source(cfg, "port"), port_src, "source: last drop-in");
        is_str(vg_config_string(cfg, "tcti"), "swtpm:host=127.0.0.1,port=2321",
               "environment beats main file");
        is_str(vg_config_source(cfg, "tcti"), "environment VIGIL_AGENT_TCTI",
               "source: environment variable");
        is_str(vg_config_source(cfg, "uuid"), "default", "untouched option keeps its default");

        char *env2[] = { "VIGIL_AGENT_PORT=4000", NULL };
        _cleanup_(vg_config_freep) struct vg_config *cfg2 =
            load_ok(&(struct load){ .conf_dir = dir, .env = env2 }, "environment on top");
        is_int(cfg2 ? vg_config_integer(cfg2, "port") : 0, 4000, "environment beats drop-ins");
        is_str(cfg2 ? vg_config_source(cfg2, "port") : NULL, "environment VIGIL_AGENT_PORT",
               "source: environment");

        struct vg_error err = { 0 };
        if (cfg2) {
                is_int(vg_config_set(cfg2, "port", "5000", &err), 0, "command line set");
                is_int(vg_config_integer(cfg2, "port"), 5000, "command line beats environment");
                is_str(vg_config_source(cfg2, "port"), "command line", "source: command line");
        }
}

static void test_dropin_order(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_free_ char *d9 = put(dir, "agent.conf.d/9-z.conf", "[agent]\nport = 9\n");
        put_only(dir, "agent.conf.d/10-a.conf", "[agent]\nport = 10\n");
        put_only(dir, "agent.conf.d/Z.conf", "[agent]\ntcti = \"Z\"\n");
        put_only(dir, "agent.conf.d/a.conf", "[agent]\ntcti = \"a\"\n");
        /* Not drop-ins: each would be an error if it were read. */
        put_only(dir, "agent.conf.d/30-c.conf.disabled", "port = oops\n");
        put_only(dir, "agent.conf.d/README", "not toml at all\n");
        put_only(dir, "agent.conf.d/.hidden.conf", "port = oops\n");
        put_only(dir, "agent.conf.d/40.conf~", "port = oops\n");
        put_only(dir, "agent.conf.d/50.CONF", "port = oops\n");
        put_only(dir, "agent.conf.d/.conf", "port = oops\n");
        _cleanup_(vg_config_freep) struct vg_config *cfg =
            load_ok(&(struct load){ .conf_dir = dir }, "drop-ins with other files around");
        _cleanup_free_ char *src = fmt("%s:2", d9);

        if (!cfg)
                return;
        is_int(vg_config_integer(cfg, "port"), 9, "strcmp order: 9-z.conf comes after 10-a.conf");
        is_str(vg_config_source(cfg, "port"), src, "source: 9-z.conf");
        is_str(vg_config_string(cfg, "tcti"), "a", "strcmp order: Z.conf before a.conf");
}

static void test_main_file_choice(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_free_ char *other = tap_tmpdir();
        _cleanup_free_ char *def = put(dir, "agent.conf", "[agent]\nport = 1\n");
        put_only(dir, "agent.conf.d/50.conf", "[agent]\ntcti = \"d\"\n");
        _cleanup_free_ char *cfile = put(other, "custom.conf", "[agent]\nport = 2\n");
        _cleanup_free_ char *efile = put(other, "env.conf", "[agent]\nport = 3\n");
        put_only(other, "etc/agent.conf", "[agent]\nport = 4\n");
        _cleanup_free_ char *etc = path_join(other, "etc");
        _cleanup_free_ char *env_config = fmt("VIGIL_AGENT_CONFIG=%s", efile);
        _cleanup_free_ char *env_dir = fmt("VIGIL_CONF_DIR=%s", etc);
        _cleanup_free_ char *c_src = fmt("%s:2", cfile);
        _cleanup_free_ char *e_src = fmt("%s:2", efile);
        _cleanup_free_ char *d_src = fmt("%s:2", def);
        struct vg_config *cfg;

        cfg = load_ok(&(struct load){ .conf_dir = dir, .file = cfile }, "-c FILE");
        is_int(cfg ? vg_config_integer(cfg, "port") : 0, 2, "-c replaces the main file");
        is_str(cfg ? vg_config_source(cfg, "port") : NULL, c_src, "-c: source");
        ok(cfg && vg_config_string(cfg, "tcti") == NULL, "-c: drop-ins are not read");
        vg_config_free(cfg);

        cfg = load_ok(&(struct load){ .conf_dir = dir, .file = def }, "-c the default file");
        ok(cfg && vg_config_string(cfg, "tcti") != NULL,
           "-c naming the default file still reads its drop-ins");
        vg_config_free(cfg);

        char *env1[] = { env_config, NULL };
        cfg = load_ok(&(struct load){ .conf_dir = dir, .env = env1 }, "VIGIL_AGENT_CONFIG");
        is_int(cfg ? vg_config_integer(cfg, "port") : 0, 3, "VIGIL_AGENT_CONFIG replaces the file");
        is_str(cfg ? vg_config_source(cfg, "port") : NULL, e_src, "VIGIL_AGENT_CONFIG: source");
        ok(cfg && vg_config_string(cfg, "tcti") == NULL,
           "VIGIL_AGENT_CONFIG: drop-ins are not read");
        vg_config_free(cfg);

        cfg = load_ok(&(struct load){ .conf_dir = dir, .file = cfile, .env = env1 },
                      "-c and VIGIL_AGENT_CONFIG");
        is_int(cfg ? vg_config_integer(cfg, "port") : 0, 2, "-c beats VIGIL_AGENT_CONFIG");
        vg_config_free(cfg);

        char *env_empty[] = { "VIGIL_AGENT_CONFIG=", NULL };
        cfg = load_ok(&(struct load){ .conf_dir = dir, .env = env_empty }, "empty CONFIG");
        is_str(cfg ? vg_config_source(cfg, "port") : NULL, d_src,
               "an empty VIGIL_AGENT_CONFIG is as if unset");
        vg_config_free(cfg);

        char *env2[] = { env_dir, NULL };
        cfg = load_ok(&(struct load){ .env = env2 }, "VIGIL_CONF_DIR");
        is_int(cfg ? vg_config_integer(cfg, "port") : 0, 4, "VIGIL_CONF_DIR picks the directory");
        vg_config_free(cfg);

        cfg =
            load_ok(&(struct load){ .conf_dir = dir, .env = env2 }, "conf_dir and VIGIL_CONF_DIR");
        is_int(cfg ? vg_config_integer(cfg, "port") : 0, 1, "opts->conf_dir beats VIGIL_CONF_DIR");
        vg_config_free(cfg);

        _cleanup_free_ char *missing = path_join(other, "missing.conf");
        _cleanup_free_ char *msg1 =
            fmt("cannot open %s (named by -c): No such file or directory", missing);
        load_fails(&(struct load){ .conf_dir = dir, .file = missing }, -ENOENT, msg1,
                   "missing -c file");

        _cleanup_free_ char *env_missing = fmt("VIGIL_AGENT_CONFIG=%s", missing);
        char *env3[] = { env_missing, NULL };
        _cleanup_free_ char *msg2 = fmt("cannot open %s (named by VIGIL_AGENT_CONFIG): No such "
                                        "file or directory",
                                        missing);
        load_fails(&(struct load){ .conf_dir = dir, .env = env3 }, -ENOENT, msg2,
                   "missing VIGIL_AGENT_CONFIG file");

        _cleanup_free_ char *nodir = path_join(other, "no/such/dir");
        cfg = load_ok(&(struct load){ .conf_dir = nodir }, "missing default file and directory");
        is_int(cfg ? vg_config_integer(cfg, "port") : 0, 9002, "defaults when nothing exists");
        vg_config_free(cfg);
}

static void test_environment(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        char *env[] = {
                "VIGIL_AGENT_ENABLE_AGENT_MTLS=No",
                "VIGIL_AGENT_API_VERSIONS= 2.3 ,2.4,, 2.5 ",
                "VIGIL_AGENT_TRUSTED_CLIENT_CA=[\"/etc/a,b.crt\", '/etc/c.crt']",
                "VIGIL_AGENT_QUOTE_INTERVAL=-7",
                "VIGIL_AGENT_SERVER_KEY=/var/lib/vigil/key.pem",
                "VIGIL_AGENT_UUID=",
                "vigil_agent_port=1",
                "VIGIL_AGENT_PORTX=1",
                "OTHER=VIGIL_AGENT_PORT=1",
                NULL,
        };
        struct capture cap;

        capture_start(&cap);
        _cleanup_(vg_config_freep) struct vg_config *cfg =
            load_ok(&(struct load){ .conf_dir = dir, .env = env }, "environment of all types");
        _cleanup_free_ char *log = capture_end(&cap);

        if (!cfg)
                return;
        ok(!vg_config_boolean(cfg, "enable_agent_mtls"), "boolean 'No'");
        is_strv(vg_config_strv(cfg, "api_versions"),
                (const char *const[]){ "2.3", "2.4", "2.5", NULL },
                "comma-separated list, spaces trimmed, empty items dropped");
        is_strv(vg_config_strv(cfg, "trusted_client_ca"),
                (const char *const[]){ "/etc/a,b.crt", "/etc/c.crt", NULL }, "TOML array");
        is_int(vg_config_integer(cfg, "quote-interval"), -7,
               "option with '-' read from VIGIL_AGENT_QUOTE_INTERVAL");
        is_str(vg_config_string(cfg, "server_key"), "/var/lib/vigil/key.pem", "absolute path");
        is_str(vg_config_string(cfg, "uuid"), "", "empty string is a value for a string");
        is_int(vg_config_integer(cfg, "port"), 9002,
               "lower-case name and longer name do not set port");
        contains(log,
                 "variable=VIGIL_AGENT_PORTX: environment variable names no agent option, "
                 "ignored",
                 "misspelt variable warned about");
        ok(!strstr(log, "OTHER"), "variables without the prefix are not mentioned");

        static const struct {
                const char *text;
                bool want;
        } bools[] = {
                { "true", true },   { "TRUE", true }, { "yes", true }, { "Yes", true },
                { "on", true },     { "ON", true },   { "1", true },   { "false", false },
                { "False", false }, { "no", false },  { "NO", false }, { "off", false },
                { "Off", false },   { "0", false },
        };
        for (size_t i = 0; i < VG_ARRAY_SIZE(bools); i++) {
                struct vg_error err = { 0 };
                is_int(vg_config_set(cfg, "enable_agent_mtls", bools[i].text, &err), 0,
                       "boolean text '%s'", bools[i].text);
                is_int(vg_config_boolean(cfg, "enable_agent_mtls"), bools[i].want,
                       "boolean text '%s' value", bools[i].text);
        }

        struct vg_error err = { 0 };
        is_int(vg_config_set(cfg, "api_versions", "", &err), 0, "empty list text");
        is_strv(vg_config_strv(cfg, "api_versions"), (const char *const[]){ NULL },
                "empty text is the empty list");
        is_int(vg_config_set(cfg, "api_versions", "[]", &err), 0, "empty TOML array text");
        is_strv(vg_config_strv(cfg, "api_versions"), (const char *const[]){ NULL }, "[] is empty");
        is_int(vg_config_set(cfg, "api_versions", "single", &err), 0, "one item");
        is_strv(vg_config_strv(cfg, "api_versions"), (const char *const[]){ "single", NULL },
                "one item without commas");
        is_int(vg_config_set(cfg, "server_key", "", &err), 0, "empty path");
        ok(vg_config_string(cfg, "server_key") == NULL, "an empty path unsets it");
        is_str(vg_config_source(cfg, "server_key"), "command line", "and says who unset it");
        is_int(vg_config_set(cfg, "port", "+0080", &err), 0, "decimal with sign and zeros");
        is_int(vg_config_integer(cfg, "port"), 80, "decimal, not octal");
}

/* Loading with var in the environment fails with message (-EINVAL, or -ERANGE for bounds),
 * or succeeds if message is NULL. */
static void env_fails(const char *var, const char *message, const char *what)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        char *env[] = { (char *)var, NULL };
        int code = message && strstr(message, "must be between") ? -ERANGE : -EINVAL;

        if (message)
                load_fails(&(struct load){ .conf_dir = dir, .env = env }, code, message, what);
        else
                vg_config_free(load_ok(&(struct load){ .conf_dir = dir, .env = env }, what));
}

static void test_environment_errors(void)
{
        env_fails("VIGIL_AGENT_PORT=abc",
                  "environment VIGIL_AGENT_PORT: 'port' expects a decimal integer, found 'abc'",
                  "integer");
        env_fails("VIGIL_AGENT_PORT=0x10",
                  "environment VIGIL_AGENT_PORT: 'port' expects a decimal integer, found '0x10'",
                  "hex is not decimal");
        env_fails("VIGIL_AGENT_PORT= 80",
                  "environment VIGIL_AGENT_PORT: 'port' expects a decimal integer, found ' 80'",
                  "spaces are not trimmed from integers");
        env_fails("VIGIL_AGENT_PORT=",
                  "environment VIGIL_AGENT_PORT: 'port' expects a decimal integer, found ''",
                  "empty integer");
        env_fails("VIGIL_AGENT_RETRY_COUNT=9223372036854775808",
                  "environment VIGIL_AGENT_RETRY_COUNT: 'retry_count' expects a decimal "
                  "integer, found '9223372036854775808'",
                  "overflow");
        env_fails("VIGIL_AGENT_ENABLE_AGENT_MTLS=maybe",
                  "environment VIGIL_AGENT_ENABLE_AGENT_MTLS: 'enable_agent_mtls' expects a "
                  "boolean (true/false, yes/no, on/off, 1/0), found 'maybe'",
                  "boolean");
        env_fails("VIGIL_AGENT_SERVER_KEY=keys/server.key",
                  "environment VIGIL_AGENT_SERVER_KEY: 'server_key' must be an absolute path, "
                  "found 'keys/server.key'",
                  "relative path");
        env_fails("VIGIL_AGENT_API_VERSIONS=[\"2.1\", 2]",
                  "environment VIGIL_AGENT_API_VERSIONS: arrays may only hold strings (found "
                  "'2')",
                  "TOML array with a number");
        env_fails("VIGIL_AGENT_API_VERSIONS=[\"2.1\"",
                  "environment VIGIL_AGENT_API_VERSIONS: unterminated array: no ']' before end "
                  "of file",
                  "unterminated TOML array");
        env_fails("VIGIL_AGENT_TCTI=bad\xff",
                  "environment VIGIL_AGENT_TCTI: the value of 'tcti' is not valid UTF-8",
                  "invalid UTF-8");
        env_fails("VIGIL_AGENT_TCTI=a\x01", NULL, "control characters are fine in a string value");

        /* Bounds, from the environment and from a file. */
        env_fails("VIGIL_AGENT_PORT=70000",
                  "environment VIGIL_AGENT_PORT: 'port' must be between 1 and 65535, found 70000",
                  "above the maximum");
        env_fails("VIGIL_AGENT_PORT=0",
                  "environment VIGIL_AGENT_PORT: 'port' must be between 1 and 65535, found 0",
                  "below the minimum");
        env_fails("VIGIL_AGENT_PORT=65535", NULL, "at the maximum");
        env_fails("VIGIL_AGENT_RETRY_COUNT=-9223372036854775808", NULL,
                  "no bounds: INT64_MIN is fine");
}

/* dir/agent.conf holding content is refused with "PATH:message" (PATH is prepended). */
static void file_fails(const char *content, int code, const char *message, const char *what)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_free_ char *path = put(dir, "agent.conf", content);
        char *msg;

        if (asprintf(&msg, "%s%s", path, message) < 0)
                tap_bail("out of memory");
        load_fails(&(struct load){ .conf_dir = dir }, code, msg, what);
        free(msg);
}

static void test_file_errors(void)
{
        file_fails("[agent]\nuuid = \"x\"\nip = \"a\"\nport = 1\n\n# ratio\nratio = 1.5\n", -EINVAL,
                   ":7: floats are not supported (found '1.5')", "syntax error at line 7");
        file_fails("[agent]\nport = \"9002\"\n", -EINVAL,
                   ":2: 'port' expects an integer, found a string (\"9002\"); write numbers "
                   "without quotes",
                   "quoted integer");
        file_fails("[agent]\nport = \"ninety\"\n", -EINVAL,
                   ":2: 'port' expects an integer, found a string (\"ninety\")", "string integer");
        file_fails("[agent]\nport = true\n", -EINVAL,
                   ":2: 'port' expects an integer, found a boolean (true)", "boolean integer");
        file_fails("[agent]\nenable_agent_mtls = \"True\"\n", -EINVAL,
                   ":2: 'enable_agent_mtls' expects a boolean (true or false), found a string "
                   "(\"True\"); write true or false without quotes",
                   "quoted boolean");
        file_fails("[agent]\nenable_agent_mtls = 1\n", -EINVAL,
                   ":2: 'enable_agent_mtls' expects a boolean (true or false), found an integer "
                   "(1)",
                   "integer boolean");
        file_fails("[agent]\nip = 5\n", -EINVAL,
                   ":2: 'ip' expects a string, found an integer (5); strings must be quoted",
                   "integer string");
        file_fails("[agent]\nip = [\"a\"]\n", -EINVAL,
                   ":2: 'ip' expects a string, found an array of strings; strings must be quoted",
                   "array string");
        file_fails("[agent]\ntrusted_client_ca = 5\n", -EINVAL,
                   ":2: 'trusted_client_ca' expects an array of strings, found an integer (5)",
                   "integer list");
        file_fails("[agent]\nregistrar_port = 70000\n", -ERANGE,
                   ":2: 'registrar_port' must be between 1 and 65535, found 70000",
                   "out of bounds");
        file_fails("[agent]\nserver_key = \"keys/server.key\"\n", -EINVAL,
                   ":2: 'server_key' must be an absolute path, found 'keys/server.key'",
                   "relative key path");
        file_fails("[agent]\ndata_dir = \"./state\"\n", -EINVAL,
                   ":2: 'data_dir' must be an absolute path, found './state'", "dot-relative path");
        file_fails("[agent]\nserver_key = \"~/key.pem\"\n", -EINVAL,
                   ":2: 'server_key' must be an absolute path, found '~/key.pem'",
                   "tilde is not expanded");
        file_fails("[agent]\nip = \"x\"\nip = \"y\"\n", -EINVAL,
                   ":3: duplicate key 'ip' (first set at line 2)", "duplicate key");
        file_fails("[agent]\ntcti = \"a\x01\"\n", -EINVAL,
                   ":2: control character U+0001 in a string must be escaped (\\u0001)",
                   "control character");
        file_fails("[agent]\ntcti = \"\xc3\x28\"\n", -EINVAL,
                   ":2: invalid UTF-8 (byte 0xc3 at byte 16)", "invalid UTF-8");
        file_fails("[agent]\ntrusted_client_ca = \"[1]\"\n", -EINVAL,
                   ":2: arrays may only hold strings (found '1')",
                   "list written as a string holding a bad array");

        /* An error in a drop-in names the drop-in. */
        _cleanup_free_ char *dir = tap_tmpdir();
        put_only(dir, "agent.conf", "[agent]\nport = 1\n");
        _cleanup_free_ char *bad = put(dir, "agent.conf.d/20-bad.conf", "[agent]\n\nport = -1\n");
        _cleanup_free_ char *msg = fmt("%s:3: 'port' must be between 1 and 65535, found -1", bad);
        load_fails(&(struct load){ .conf_dir = dir }, -ERANGE, msg, "error in a drop-in");
}

static void test_file_forms(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_free_ char *main_file =
            put(dir, "agent.conf",
                "[agent]\n"
                "trusted_client_ca = [\"/etc/vigil/ca.crt\",\n  '/etc/vigil/tenant.crt',\n]\n"
                "api_versions = \"2.1, 2.2 ,latest\"\n"
                "server_key = \"\"\n"
                "data_dir = \"/srv/vigil\"\n"
                "[cloud_agent]\n"
                "port = 0x2332\n"
                "[agent.sub]\n"
                "port = 1\n"
                "[verifier]\n"
                "port = 8881\n"
                "quote_interval = 1.5\n");

        /* The last line is a syntax error even though [verifier] is not ours: the whole file
         * must be valid TOML. Replace it and check the rest. */
        struct vg_config *cfg;
        struct vg_error err;
        ok(load(&(struct load){ .conf_dir = dir }, &cfg, &err) == -EINVAL,
           "a syntax error in another component's section is still an error");
        vg_config_free(cfg);

        free(put(dir, "agent.conf",
                 "[agent]\n"
                 "trusted_client_ca = [\"/etc/vigil/ca.crt\",\n  '/etc/vigil/tenant.crt',\n]\n"
                 "api_versions = \"2.1, 2.2 ,latest\"\n"
                 "server_key = \"\"\n"
                 "data_dir = \"/srv/vigil\"\n"
                 "[cloud_agent]\n"
                 "port = 0x2332\n"
                 "[agent.sub]\n"
                 "port = 1\n"
                 "[verifier]\n"
                 "port = 8881\n"
                 "unknown_to_us = true\n"));
        struct capture cap;
        capture_start(&cap);
        cfg = load_ok(&(struct load){ .conf_dir = dir }, "all value forms");
        _cleanup_free_ char *log = capture_end(&cap);
        _cleanup_free_ char *port_src = fmt("%s:9", main_file);

        if (!cfg)
                return;
        is_strv(vg_config_strv(cfg, "trusted_client_ca"),
                (const char *const[]){ "/etc/vigil/ca.crt", "/etc/vigil/tenant.crt", NULL },
                "array over lines");
        is_strv(vg_config_strv(cfg, "api_versions"),
                (const char *const[]){ "2.1", "2.2", "latest", NULL },
                "a list written as one string (Keylime style)");
        ok(vg_config_string(cfg, "server_key") == NULL, "server_key = \"\" leaves it unset");
        is_str(vg_config_string(cfg, "data_dir"), "/srv/vigil", "path");
        is_int(vg_config_integer(cfg, "port"), 0x2332, "section alias [cloud_agent], hex");
        is_str(vg_config_source(cfg, "port"), port_src, "alias source");
        is_str(log, "", "other sections and sub-tables are ignored silently");
        vg_config_free(cfg);
}

static void test_unknown_keys(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_free_ char *path = put(dir, "agent.conf",
                                        "port = 1\n[agent]\nregistrar_prot = 8891\nfrobnicate = 1\n"
                                        "prot = 1\nzz = 1\n[verifier]\nanything = 1\n");
        struct capture cap;

        capture_start(&cap);
        _cleanup_(vg_config_freep) struct vg_config *cfg =
            load_ok(&(struct load){ .conf_dir = dir }, "unknown keys warn");
        _cleanup_free_ char *log = capture_end(&cap);
        _cleanup_free_ char *w1 = fmt("file=%s line=3: unknown option 'registrar_prot' in [agent], "
                                      "ignored; did you mean 'registrar_port'?",
                                      path);
        _cleanup_free_ char *w2 = fmt("file=%s line=4: unknown option 'frobnicate' in [agent], "
                                      "ignored\n",
                                      path);
        _cleanup_free_ char *w3 = fmt("file=%s line=1: 'port' is outside any [agent] section, "
                                      "ignored",
                                      path);

        contains(log, "warning", "logged as a warning");
        contains(log, w1, "unknown key: FILE:LINE and a suggestion");
        contains(log, w2, "unknown key without a close match");
        contains(log, w3, "known option before any section header");
        _cleanup_free_ char *w4 = fmt("file=%s line=5: unknown option 'prot' in [agent], "
                                      "ignored; did you mean 'port'?",
                                      path);
        contains(log, w4, "a swap of two letters is one edit");
        contains(log, "line=6: unknown option 'zz' in [agent], ignored\n",
                 "no suggestion for a short name two edits away");
        ok(!strstr(log, "anything"), "other sections' keys are not ours to judge");
        is_int(cfg ? vg_config_integer(cfg, "port") : 0, 9002, "nothing was set");

        _cleanup_free_ char *msg = fmt("%s:3: unknown option 'registrar_prot' in [agent]; did you "
                                       "mean 'registrar_port'?",
                                       path);
        load_fails(&(struct load){ .conf_dir = dir, .strict = true }, -EINVAL, msg,
                   "strict_unknown makes it an error");
}

static void test_file_kinds(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_free_ char *sub = path_join(dir, "adir");
        struct vg_config *cfg;

        mkdir(sub, 0755);
        _cleanup_free_ char *m1 = fmt("%s (named by -c) is a directory, expected a file", sub);
        load_fails(&(struct load){ .conf_dir = dir, .file = sub }, -EISDIR, m1, "-c a directory");

        _cleanup_free_ char *d2 = tap_tmpdir();
        _cleanup_free_ char *asdir = path_join(d2, "agent.conf");
        mkdir(asdir, 0755);
        _cleanup_free_ char *m2 = fmt("%s is a directory, expected a file", asdir);
        load_fails(&(struct load){ .conf_dir = d2 }, -EISDIR, m2, "agent.conf is a directory");

        _cleanup_free_ char *d3 = tap_tmpdir();
        _cleanup_free_ char *dropdir = path_join(d3, "agent.conf.d/50-dir.conf");
        free(put(d3, "agent.conf.d/50-dir.conf/x", ""));
        _cleanup_free_ char *m3 = fmt("%s is a directory, expected a file", dropdir);
        load_fails(&(struct load){ .conf_dir = d3 }, -EISDIR, m3, "a drop-in that is a directory");

        _cleanup_free_ char *d4 = tap_tmpdir();
        _cleanup_free_ char *notdir = put(d4, "agent.conf.d", "[agent]\n");
        _cleanup_free_ char *m4 = fmt("cannot read directory %s: Not a directory", notdir);
        load_fails(&(struct load){ .conf_dir = d4 }, -ENOTDIR, m4, "agent.conf.d is a file");

        /* Exactly 1 MiB is fine; one byte more is refused. */
        _cleanup_free_ char *d5 = tap_tmpdir();
        _cleanup_free_ char *big = malloc(VG_CONFIG_MAX_FILE_SIZE + 2);
        if (!big)
                tap_bail("out of memory");
        memset(big, '#', VG_CONFIG_MAX_FILE_SIZE);
        memcpy(big, "[agent]\nport = 7\n", 17);
        big[VG_CONFIG_MAX_FILE_SIZE - 1] = '\n';
        big[VG_CONFIG_MAX_FILE_SIZE] = '\0';
        _cleanup_free_ char *bigpath = put(d5, "agent.conf", big);
        cfg = load_ok(&(struct load){ .conf_dir = d5 }, "a file of exactly 1 MiB");
        is_int(cfg ? vg_config_integer(cfg, "port") : 0, 7, "1 MiB file read");
        vg_config_free(cfg);
        big[VG_CONFIG_MAX_FILE_SIZE] = '\n';
        big[VG_CONFIG_MAX_FILE_SIZE + 1] = '\0';
        free(put(d5, "agent.conf", big));
        _cleanup_free_ char *m5 =
            fmt("%s is too large (1048577 bytes; the limit is 1 MiB)", bigpath);
        load_fails(&(struct load){ .conf_dir = d5 }, -EFBIG, m5, "a file over 1 MiB");

        /* A NUL byte in a file (tap_write_file cannot write one). */
        _cleanup_free_ char *d6 = tap_tmpdir();
        _cleanup_free_ char *nulpath = path_join(d6, "agent.conf");
        FILE *f = fopen(nulpath, "wb");
        if (!f)
                tap_bail("cannot write %s", nulpath);
        fwrite("[agent]\nport = 1\0\n", 1, 19, f);
        fclose(f);
        _cleanup_free_ char *m6 = fmt("%s:2: NUL byte in input (at byte 16)", nulpath);
        load_fails(&(struct load){ .conf_dir = d6 }, -EINVAL, m6, "NUL byte in a file");

        /* /dev/null as -c: an empty configuration, not an error. */
        cfg = load_ok(&(struct load){ .conf_dir = d6, .file = "/dev/null" }, "-c /dev/null");
        vg_config_free(cfg);

        if (geteuid() == 0) {
                tap_skip("root reads any file", "unreadable file");
                tap_skip("root reads any file", "unreadable file: message");
                tap_skip("root reads any file", "unreadable file: no config");
                return;
        }
        _cleanup_free_ char *d7 = tap_tmpdir();
        _cleanup_free_ char *secret = put(d7, "agent.conf", "[agent]\n");
        chmod(secret, 0);
        _cleanup_free_ char *m7 = fmt("cannot open %s: Permission denied", secret);
        load_fails(&(struct load){ .conf_dir = d7 }, -EACCES, m7, "unreadable file");
}

static void test_set(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_(vg_config_freep) struct vg_config *cfg =
            load_ok(&(struct load){ .conf_dir = dir }, "for vg_config_set");
        struct vg_error err = { 0 };

        if (!cfg)
                return;
        is_int(vg_config_set(cfg, "port", "x", &err), -EINVAL, "bad value");
        is_str(err.msg, "command line: 'port' expects a decimal integer, found 'x'",
               "bad value message");
        is_int(vg_config_integer(cfg, "port"), 9002, "a failed set changes nothing");
        is_str(vg_config_source(cfg, "port"), "default", "nor the source");
        is_int(vg_config_set(cfg, "prot", "1", &err), -ENOENT, "undeclared option");
        is_str(err.msg, "command line: unknown agent option 'prot'", "undeclared option message");
        is_int(vg_config_set(cfg, "data_dir", "rel", &err), -EINVAL, "relative path");
        is_str(err.msg, "command line: 'data_dir' must be an absolute path, found 'rel'",
               "relative path message");
        is_str(vg_config_string(cfg, "data_dir"), "/var/lib/vigil", "path unchanged");
}

static char *dump(const struct vg_config *cfg)
{
        char *text = NULL;
        size_t len;
        FILE *f = open_memstream(&text, &len);

        if (!f)
                tap_bail("open_memstream failed");
        is_int(vg_config_dump(cfg, f), 0, "dump succeeds");
        fclose(f);
        return text;
}

static bool same_strv(char *const *a, char *const *b)
{
        for (; *a && *b; a++, b++)
                if (strcmp(*a, *b) != 0)
                        return false;
        return !*a && !*b;
}

static void test_dump(void)
{
        /* A directory name with a newline and a quote ends up in sources, hence in comments. */
        _cleanup_free_ char *base = tap_tmpdir();
        _cleanup_free_ char *dir = path_join(base, "odd\ndir \"x\"");
        mkdir(dir, 0755);
        _cleanup_free_ char *path = put(dir, "agent.conf",
                                        "[agent]\n"
                                        "registrar_ip = \"192.0.2.1\"\n"
                                        "trusted_client_ca = ['/etc/a \"b\".crt', "
                                        "'/etc/\xc3\xa9']\n"
                                        "enable_agent_mtls = false\n");
        char *env[] = {
                "VIGIL_AGENT_PORT=4000",
                "VIGIL_AGENT_TCTI=quote\" back\\ nl\n tab\t bell\x07 \xe2\x82\xac",
                "VIGIL_AGENT_DATA_DIR=",
                NULL,
        };
        _cleanup_(vg_config_freep) struct vg_config *cfg =
            load_ok(&(struct load){ .conf_dir = dir, .env = env }, "for dump");

        if (!cfg)
                return;
        _cleanup_free_ char *text = dump(cfg);
        tap_diag("dump:\n%s", text);
        _cleanup_free_ char *ip_line = fmt("registrar_ip = \"192.0.2.1\"  # %s", base);

        contains(text, "[agent]\n", "section header");
        contains(text, "\n# port to listen on\nport = 4000  # environment VIGIL_AGENT_PORT\n",
                 "help comment, value and source");
        contains(text, ip_line, "string value and file source");
        ok(strstr(path, "odd\ndir"), "the file's path holds a newline");
        contains(text, "/odd?dir \"x\"/agent.conf:2\n", "control characters in sources made safe");
        contains(text, "tcti = \"quote\\\" back\\\\ nl\\n tab\\t bell\\u0007 \xe2\x82\xac\"",
                 "string escaped as TOML");
        contains(text, "enable_agent_mtls = false  # ", "boolean");
        contains(text, "api_versions = [\"2.1\", \"2.2\"]  # default", "list");
        contains(text, "# retry_count is not set  # default", "unset integer commented out");
        contains(text, "data_dir = \"\"  # environment VIGIL_AGENT_DATA_DIR",
                 "unset path written as \"\"");
        contains(text, "\nquote-interval = 2  # default\n", "option without help");

        /* Round trip: the dump, loaded as a -c file, gives the same values. */
        _cleanup_free_ char *d2 = tap_tmpdir();
        _cleanup_free_ char *again_path = put(d2, "dumped.conf", text);
        _cleanup_(vg_config_freep) struct vg_config *again =
            load_ok(&(struct load){ .conf_dir = d2, .file = again_path, .strict = true },
                    "the dump loads back, even with strict_unknown");
        if (!again)
                return;
        int differ = 0;
        for (const struct vg_config_option *o = agent_options; o->name; o++) {
                switch (o->type) {
                case VG_CONFIG_STRING:
                case VG_CONFIG_PATH: {
                        const char *a = vg_config_string(cfg, o->name);
                        const char *b = vg_config_string(again, o->name);
                        differ += (a || b) && (!a || !b || strcmp(a, b) != 0);
                        break;
                }
                case VG_CONFIG_INTEGER:
                        differ +=
                            vg_config_integer(cfg, o->name) != vg_config_integer(again, o->name);
                        break;
                case VG_CONFIG_BOOLEAN:
                        differ +=
                            vg_config_boolean(cfg, o->name) != vg_config_boolean(again, o->name);
                        break;
                case VG_CONFIG_STRING_LIST:
                        differ += !same_strv(vg_config_strv(cfg, o->name),
                                             vg_config_strv(again, o->name));
                        break;
                }
        }
        is_int(differ, 0, "every option has the same value after the round trip");
}

static void test_schema_errors(void)
{
        static const struct vg_config_option bad_default[] = {
                { "port", VG_CONFIG_INTEGER, "ninety", NULL, 0, 0 },
                { 0 },
        };
        static const struct vg_config_option relative_default[] = {
                { "dir", VG_CONFIG_PATH, "var/lib", NULL, 0, 0 },
                { 0 },
        };
        static const struct vg_config_option reserved[] = {
                { "config", VG_CONFIG_STRING, NULL, NULL, 0, 0 },
                { 0 },
        };
        const struct {
                struct vg_config_schema schema;
                const char *message;
        } cases[] = {
                { { "x", "x", NULL, bad_default },
                  "default of x option: 'port' expects a decimal integer, found 'ninety'" },
                { { "x", "x", NULL, relative_default },
                  "default of x option: 'dir' must be an absolute path, found 'var/lib'" },
                { { "x", "x", NULL, reserved },
                  "schema x: option name 'config' is invalid, reserved or declared twice" },
                { { "x y", "x", NULL, reserved },
                  "invalid configuration schema: component, section and options must be set, "
                  "names A-Za-z0-9_-" },
        };
        const struct vg_config_load_opts opts = { .conf_dir = "/nonexistent", .environ = no_env };

        for (size_t i = 0; i < VG_ARRAY_SIZE(cases); i++) {
                struct vg_config *cfg = NULL;
                struct vg_error err = { 0 };
                is_int(vg_config_load(&cases[i].schema, &opts, &cfg, &err), -EINVAL,
                       "bad schema %zu refused", i);
                is_str(err.msg, cases[i].message, "bad schema %zu message", i);
                vg_config_free(cfg);
        }
}

/* A getter asked for an undeclared option, or for the wrong type, stops the program. */
static void test_getter_misuse(void)
{
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_(vg_config_freep) struct vg_config *cfg =
            load_ok(&(struct load){ .conf_dir = dir }, "for getter misuse");
        const char *names[] = { "undeclared", "port" };

        for (size_t i = 0; cfg && i < VG_ARRAY_SIZE(names); i++) {
                int status = 0;
                pid_t pid = fork();
                if (pid == 0) {
                        freopen("/dev/null", "w", stderr);
                        vg_config_string(cfg, names[i]);
                        _exit(0);
                }
                waitpid(pid, &status, 0);
                ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                   "vg_config_string(\"%s\") aborts", names[i]);
        }
}

int main(void)
{
        test_defaults();
        test_keylime_dropin();
        test_precedence();
        test_dropin_order();
        test_main_file_choice();
        test_environment();
        test_environment_errors();
        test_file_errors();
        test_file_forms();
        test_unknown_keys();
        test_file_kinds();
        test_set();
        test_dump();
        test_schema_errors();
        test_getter_misuse();
        return tap_done();
}
