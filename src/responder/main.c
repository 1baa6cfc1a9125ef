/* vigil-responder: the daemon shell around responder.c: command line (the daemon options plus
 * --rules, --event, --dry-run, --check-rules), configuration, then either one-shot processing
 * of event files or the MQTT subscription until SIGTERM. */
#include <errno.h>
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "responder.h"
#include "rules.h"

static const struct vg_config_option responder_options[] = {
        { "rules", VG_CONFIG_PATH, VIGIL_SYSCONFDIR "/responder-rules.toml",
          "the rule set (TOML: [[rule]] and [action.NAME] tables, see vigil-responder(8))", 0, 0 },
        { "database_url", VG_CONFIG_STRING, "sqlite",
          "state database: handled event ids and reprovision attempts (\"sqlite\" = "
          "/var/lib/vigil/responder.sqlite, or postgresql://...)",
          0, 0 },
        { "retention_days", VG_CONFIG_INTEGER, "30",
          "forget handled events after this many days (0: never)", 0, 36500 },
        { "mqtt_host", VG_CONFIG_STRING, "127.0.0.1", "MQTT broker to subscribe to", 0, 0 },
        { "mqtt_port", VG_CONFIG_INTEGER, "1883", "its port (8883 is usual with TLS)", 1, 65535 },
        { "mqtt_topic", VG_CONFIG_STRING, "vigil/events/#",
          "topic filter (the verifier publishes vigil/events/<agentId>/<eventType>)", 0, 0 },
        { "mqtt_client_id", VG_CONFIG_STRING, "vigil-responder",
          "fixed client id: the broker keeps this session's QoS 1 events while the responder is "
          "down",
          0, 0 },
        { "mqtt_username", VG_CONFIG_STRING, NULL, "broker user name", 0, 0 },
        { "mqtt_password", VG_CONFIG_STRING, NULL, "broker password", 0, 0 },
        { "mqtt_ca", VG_CONFIG_PATH, NULL, "connect with TLS, trusting these CAs", 0, 0 },
        { "mqtt_cert", VG_CONFIG_PATH, NULL, "client certificate for the broker (TLS)", 0, 0 },
        { "mqtt_key", VG_CONFIG_PATH, NULL, "its private key", 0, 0 },
        { "mqtt_keepalive", VG_CONFIG_INTEGER, "60", "seconds between MQTT pings", 5, 3600 },
        { "mqtt_reconnect_max", VG_CONFIG_INTEGER, "30",
          "longest wait in seconds between reconnection attempts to the broker (doubling from 1)",
          1, 3600 },
        { "verifier_url", VG_CONFIG_STRING, NULL,
          "the verifier relearn-if-known-good actions ask (https://127.0.0.1:8881)", 0, 0 },
        { "trusted_server_ca", VG_CONFIG_PATH, NULL, "CA the verifier's certificate chains to", 0,
          0 },
        { "client_cert", VG_CONFIG_PATH, NULL, "client certificate for the verifier (mTLS)", 0, 0 },
        { "client_key", VG_CONFIG_PATH, NULL, "its private key", 0, 0 },
        { "client_key_password", VG_CONFIG_STRING, NULL, "password of an encrypted client_key", 0,
          0 },
        {},
};

static const struct vg_config_schema responder_schema = {
        .component = "responder",
        .section = "responder",
        .options = responder_options,
};

struct cmdline {
        const char *rules;
        char **events; /* --event FILE, repeatable; "-" is stdin */
        size_t n_events;
        bool dry_run;
        bool check_rules;
};

/* Take our options out of argv (the rest is daemon.h's). Returns 0, or 2 after a usage error. */
static int take_options(int *argc, char **argv, struct cmdline *cl)
{
        int out = 1;

        for (int i = 1; i < *argc; i++) {
                const char *a = argv[i], *name = NULL, *val = NULL;

                if (strcmp(a, "--") == 0) {
                        while (i < *argc)
                                argv[out++] = argv[i++];
                        break;
                }
                if (strcmp(a, "--dry-run") == 0) {
                        cl->dry_run = true;
                        continue;
                }
                if (strcmp(a, "--check-rules") == 0) {
                        cl->check_rules = true;
                        continue;
                }
                if (strncmp(a, "--rules", 7) == 0 && (a[7] == '\0' || a[7] == '='))
                        name = "--rules";
                else if (strncmp(a, "--event", 7) == 0 && (a[7] == '\0' || a[7] == '='))
                        name = "--event";
                if (!name) {
                        argv[out++] = argv[i];
                        continue;
                }
                if (a[7] == '=') {
                        val = a + 8;
                } else if (i + 1 < *argc) {
                        val = argv[++i];
                } else {
                        fprintf(stderr, "vigil-responder: %s needs a value\n", name);
                        return 2;
                }
                if (strcmp(name, "--rules") == 0) {
                        cl->rules = val;
                } else {
                        char **ev = reallocarray(cl->events, cl->n_events + 1, sizeof(char *));
                        if (!ev)
                                return 2;
                        cl->events = ev;
                        cl->events[cl->n_events++] = (char *)val;
                }
        }
        argv[out] = NULL;
        *argc = out;
        return 0;
}

static char *read_all(FILE *f, size_t *len)
{
        char *buf = NULL;
        size_t cap = 0, n = 0;

        for (;;) {
                if (n + 4096 + 1 > cap) {
                        if (cap > 64 * 1024 * 1024) {
                                free(buf);
                                errno = EFBIG;
                                return NULL;
                        }
                        cap = cap ? cap * 2 : 65536;
                        char *nb = realloc(buf, cap);
                        if (!nb) {
                                free(buf);
                                return NULL;
                        }
                        buf = nb;
                }
                size_t got = fread(buf + n, 1, cap - n - 1, f);
                n += got;
                if (got == 0)
                        break;
        }
        if (ferror(f)) {
                free(buf);
                return NULL;
        }
        buf[n] = '\0';
        *len = n;
        return buf;
}

/* A file holds one JSON event (pretty-printed or not) or JSON lines (the file sink's
 * events.jsonl): a file whose text parses as one value is one event, else each non-empty line
 * is one. Returns 0, 1 if an action failed or an event was rejected, < 0 if the state database
 * failed. */
static int process_file(struct vg_responder *r, const char *path)
{
        _cleanup_free_ char *text = NULL;
        char source[600];
        struct vg_error err = { 0 };
        size_t len = 0;
        int status = 0, rc;
        FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");

        if (!f) {
                vg_err(VG_F("file", path), "cannot open the event file: %s", strerror(errno));
                return 1;
        }
        text = read_all(f, &len);
        if (f != stdin)
                fclose(f);
        if (!text) {
                vg_err(VG_F("file", path), "cannot read the event file: %s", strerror(errno));
                return 1;
        }
        json_t *whole = json_loadb(text, len, 0, NULL);
        bool single = whole != NULL || !memchr(text, '\n', len) || strspn(text, " \t\r\n") == len;
        json_decref(whole);
        if (single) {
                snprintf(source, sizeof(source), "file %s", strcmp(path, "-") ? path : "stdin");
                rc = vg_responder_handle(r, text, len, source, &err);
                return rc < 0 && rc != -EINVAL ? rc : rc != 0;
        }
        unsigned line = 0;
        for (char *p = text, *nl; p < text + len; p = nl + 1) {
                nl = memchr(p, '\n', (size_t)(text + len - p));
                if (!nl)
                        nl = text + len;
                line++;
                if ((size_t)(nl - p) == strspn(p, " \t\r"))
                        continue;
                snprintf(source, sizeof(source), "file %s:%u", strcmp(path, "-") ? path : "stdin",
                         line);
                rc = vg_responder_handle(r, p, (size_t)(nl - p), source, &err);
                if (rc < 0 && rc != -EINVAL)
                        return rc;
                if (rc != 0)
                        status = 1;
        }
        return status;
}

int main(int argc, char **argv)
{
        static const struct vg_daemon_info info = {
                .name = "vigil-responder",
                .summary = "Acts on integrity events (MQTT, or --event FILE) by a TOML rule set; "
                           "also --rules FILE, --event FILE|- (repeatable: process and exit), "
                           "--dry-run (print what would be done), --check-rules.",
                .schema = &responder_schema,
        };
        _cleanup_(vg_daemon_freep) struct vg_daemon *d = NULL;
        _cleanup_(vg_rules_freep) struct vg_rules *rules = NULL;
        _cleanup_free_ char **events = NULL;
        _cleanup_free_ char **args = NULL;
        struct cmdline cl = { 0 };
        struct vg_error err = { 0 };
        int r;

        r = take_options(&argc, argv, &cl);
        events = cl.events;
        if (r)
                return r;
        /* One-shot modes stay in the foreground: there is nothing to detach for. */
        args = calloc((size_t)argc + 2, sizeof(char *));
        if (!args)
                return 1;
        memcpy(args, argv, (size_t)argc * sizeof(char *));
        if (cl.n_events || cl.check_rules)
                args[argc++] = "-f";
        r = vg_daemon_init(&info, argc, args, &d);
        if (!d)
                return r;
        const struct vg_config *cfg = vg_daemon_config(d);
        const char *rules_path = cl.rules ? cl.rules : vg_config_string(cfg, "rules");
        if (!rules_path) {
                vg_err(NULL, "no rules file: set rules in responder.conf or pass --rules FILE");
                return 1;
        }
        if (vg_rules_load(rules_path, &rules, &err) < 0) {
                fprintf(stderr, "vigil-responder: %s\n", vg_error_str(&err));
                return 1;
        }
        if (cl.check_rules) {
                printf("%s: %zu rule%s, %zu action%s: OK\n", rules_path, rules->n_rules,
                       rules->n_rules == 1 ? "" : "s", rules->n_actions,
                       rules->n_actions == 1 ? "" : "s");
                return 0;
        }
        vg_info(VG_F("file", rules_path), "%zu rules, %zu actions loaded", rules->n_rules,
                rules->n_actions);

        struct vg_responder_options ro = {
                .database_url = vg_config_string(cfg, "database_url"),
                .dry_run = cl.dry_run,
                .retention_days = (unsigned)vg_config_integer(cfg, "retention_days"),
                .verifier_url = vg_config_string(cfg, "verifier_url"),
                .trusted_server_ca = vg_config_string(cfg, "trusted_server_ca"),
                .client_cert = vg_config_string(cfg, "client_cert"),
                .client_key = vg_config_string(cfg, "client_key"),
                .client_key_password = vg_config_string(cfg, "client_key_password"),
        };
        _cleanup_(vg_responder_freep) struct vg_responder *resp = NULL;
        if (vg_responder_new(rules, &ro, &resp, &err) < 0) {
                vg_err(NULL, "%s", vg_error_str(&err));
                return 1;
        }

        if (cl.n_events) {
                int status = 0;
                for (size_t k = 0; k < cl.n_events; k++) {
                        r = process_file(resp, cl.events[k]);
                        if (r < 0)
                                return 1;
                        status |= r;
                }
                return status;
        }

        mosquitto_lib_init();
        struct vg_resp_mqtt_options mo = {
                .host = vg_config_string(cfg, "mqtt_host"),
                .port = (int)vg_config_integer(cfg, "mqtt_port"),
                .topic = vg_config_string(cfg, "mqtt_topic"),
                .client_id = vg_config_string(cfg, "mqtt_client_id"),
                .username = vg_config_string(cfg, "mqtt_username"),
                .password = vg_config_string(cfg, "mqtt_password"),
                .ca_file = vg_config_string(cfg, "mqtt_ca"),
                .cert_file = vg_config_string(cfg, "mqtt_cert"),
                .key_file = vg_config_string(cfg, "mqtt_key"),
                .keepalive = (int)vg_config_integer(cfg, "mqtt_keepalive"),
                .reconnect_max = (unsigned)vg_config_integer(cfg, "mqtt_reconnect_max"),
                .ephemeral = cl.dry_run,
        };
        if (!mo.host || !mo.topic || !mo.client_id) {
                vg_err(NULL, "mqtt_host, mqtt_topic and mqtt_client_id must be set");
                mosquitto_lib_cleanup();
                return 1;
        }
        struct vg_resp_mqtt *m = NULL;
        if (vg_resp_mqtt_start(resp, &mo, &m, &err) < 0) {
                vg_err(NULL, "%s", vg_error_str(&err));
                mosquitto_lib_cleanup();
                return 1;
        }
        if (vg_daemon_ready(d) < 0) {
                vg_resp_mqtt_stop(m);
                mosquitto_lib_cleanup();
                return 1;
        }
        r = vg_daemon_run(d);
        vg_resp_mqtt_stop(m);
        mosquitto_lib_cleanup();
        return r;
}
