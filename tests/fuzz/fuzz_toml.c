/* vigil fuzz target: the TOML reader and config loader on arbitrary bytes. Whatever parses must
 * write back (vg_toml_doc_write, vg_config_dump) and read back the same; refusals say where. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond, what)                                                                          \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz_toml: %s\n", what);                                  \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static bool values_equal(const struct vg_toml_value *a, const struct vg_toml_value *b)
{
        if (a->type != b->type)
                return false;
        switch (a->type) {
        case VG_TOML_STRING:
                return strcmp(a->string, b->string) == 0;
        case VG_TOML_INTEGER:
                return a->integer == b->integer;
        case VG_TOML_BOOLEAN:
                return a->boolean == b->boolean;
        case VG_TOML_STRING_ARRAY:
                if (a->array.n != b->array.n || a->array.items[a->array.n] ||
                    b->array.items[b->array.n])
                        return false;
                for (size_t i = 0; i < a->array.n; i++)
                        if (strcmp(a->array.items[i], b->array.items[i]) != 0)
                                return false;
                return true;
        }
        return false;
}

static char *write_doc(const struct vg_toml_doc *doc, size_t *len)
{
        char *text = NULL;
        FILE *f = open_memstream(&text, len);

        check(f, "open_memstream");
        check(vg_toml_doc_write(doc, f) == 0, "writing failed");
        fclose(f);
        return text;
}

/* Writing a parsed document and parsing the result gives the same entries, and writing that
 * gives the same text again. */
static void round_trip(const struct vg_toml_doc *doc)
{
        struct vg_toml_doc *again = NULL;
        struct vg_error err = { 0 };
        size_t len, len2;
        char *text = write_doc(doc, &len);

        if (vg_toml_parse(text, len, "rewritten", &again, &err) < 0) {
                fprintf(stderr, "rewritten document refused: %s\n---\n%s---\n", err.msg, text);
                abort();
        }
        check(again->n_entries == doc->n_entries, "entry count changed");
        for (size_t i = 0; i < doc->n_entries; i++) {
                const struct vg_toml_entry *a = &doc->entries[i], *b = &again->entries[i];
                check(strcmp(a->table, b->table) == 0, "table changed");
                check(strcmp(a->key, b->key) == 0, "key changed");
                check(values_equal(&a->value, &b->value), "value changed");
        }
        char *text2 = write_doc(again, &len2);
        check(len == len2 && memcmp(text, text2, len) == 0, "second write differs");
        free(text2);
        free(text);
        vg_toml_doc_free(again);
}

static const struct vg_config_option fuzz_options[] = {
        { "uuid", VG_CONFIG_STRING, NULL, "a string", 0, 0 },
        { "registrar_ip", VG_CONFIG_STRING, "127.0.0.1", NULL, 0, 0 },
        { "port", VG_CONFIG_INTEGER, "9002", NULL, 1, 65535 },
        { "registrar_port", VG_CONFIG_INTEGER, NULL, NULL, 0, 0 },
        { "enable_agent_mtls", VG_CONFIG_BOOLEAN, "true", NULL, 0, 0 },
        { "server_key", VG_CONFIG_PATH, NULL, NULL, 0, 0 },
        { "data_dir", VG_CONFIG_PATH, "/var/lib/vigil", NULL, 0, 0 },
        { "trusted_client_ca", VG_CONFIG_STRING_LIST, NULL, NULL, 0, 0 },
        { "api_versions", VG_CONFIG_STRING_LIST, "2.1,2.2", NULL, 0, 0 },
        { 0 },
};

static const char *const fuzz_aliases[] = { "cloud_agent", NULL };

static const struct vg_config_schema fuzz_schema = {
        .component = "agent",
        .section = "agent",
        .aliases = fuzz_aliases,
        .options = fuzz_options,
};

static char *const no_env[] = { NULL };

/* Load text as the -c file of a config, through a memory file: the whole pipeline (read,
 * parse, type checks, warnings) as a daemon runs it. */
static int load_text(const void *text, size_t len, struct vg_config **cfg, struct vg_error *err)
{
        int fd = memfd_create("fuzz.conf", MFD_CLOEXEC);
        char path[64];
        int r;

        check(fd >= 0 && write(fd, text, len) == (ssize_t)len, "memfd");
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        const struct vg_config_load_opts opts = {
                .conf_dir = "/nonexistent/vigil-fuzz",
                .file = path,
                .environ = no_env,
        };
        r = vg_config_load(&fuzz_schema, &opts, cfg, err);
        close(fd);
        return r;
}

static char *dump(const struct vg_config *cfg, size_t *len)
{
        char *text = NULL;
        FILE *f = open_memstream(&text, len);

        check(f, "open_memstream");
        check(vg_config_dump(cfg, f) == 0, "dump failed");
        fclose(f);
        return text;
}

static bool same_config(const struct vg_config *a, const struct vg_config *b)
{
        for (const struct vg_config_option *o = fuzz_options; o->name; o++) {
                switch (o->type) {
                case VG_CONFIG_STRING:
                case VG_CONFIG_PATH: {
                        const char *x = vg_config_string(a, o->name);
                        const char *y = vg_config_string(b, o->name);
                        if ((x || y) && (!x || !y || strcmp(x, y) != 0))
                                return false;
                        break;
                }
                case VG_CONFIG_INTEGER:
                        if (vg_config_integer(a, o->name) != vg_config_integer(b, o->name))
                                return false;
                        break;
                case VG_CONFIG_BOOLEAN:
                        if (vg_config_boolean(a, o->name) != vg_config_boolean(b, o->name))
                                return false;
                        break;
                case VG_CONFIG_STRING_LIST: {
                        char *const *x = vg_config_strv(a, o->name);
                        char *const *y = vg_config_strv(b, o->name);
                        for (; *x && *y; x++, y++)
                                if (strcmp(*x, *y) != 0)
                                        return false;
                        if (*x || *y)
                                return false;
                        break;
                }
                }
        }
        return true;
}

/* What vg_config_dump prints loads back to the same values. */
static void config_round_trip(const struct vg_config *cfg)
{
        struct vg_config *again = NULL;
        struct vg_error err = { 0 };
        size_t len;
        char *text = dump(cfg, &len);

        if (load_text(text, len, &again, &err) < 0) {
                fprintf(stderr, "dump refused: %s\n---\n%s---\n", err.msg, text);
                abort();
        }
        check(same_config(cfg, again), "dump loads back to other values");
        vg_config_free(again);
        free(text);
}

/* The input as a configuration file. */
static void config_file(const uint8_t *data, size_t size)
{
        struct vg_config *cfg = NULL;
        struct vg_error err = { 0 };

        if (load_text(data, size, &cfg, &err) < 0) {
                check(err.msg[0], "refused without a message");
                return;
        }
        config_round_trip(cfg);
        vg_config_free(cfg);
}

/* The input as option text (as from the environment or the command line), for every type. */
static void option_text(const uint8_t *data, size_t size)
{
        struct vg_config *cfg = NULL;
        struct vg_error err = { 0 };
        char *text = strndup((const char *)data, size);

        check(text, "strndup");
        check(load_text("", 0, &cfg, &err) == 0, "empty config refused");
        for (size_t i = 0; fuzz_options[i].name; i++) {
                if (vg_config_set(cfg, fuzz_options[i].name, text, &err) < 0)
                        check(strncmp(err.msg, "command line: ", 14) == 0, "unlocated error");
        }
        config_round_trip(cfg);
        vg_config_free(cfg);
        free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static bool quiet;
        struct vg_toml_doc *doc = NULL;
        struct vg_toml_value v;
        struct vg_error err = { 0 };

        if (!quiet) {
                /* Unknown-key warnings would drown libFuzzer's output. */
                vg_log_setup(&(struct vg_log_config){ .component = "fuzz", .level = VG_LOG_ERR });
                quiet = true;
        }
        if (vg_toml_parse((const char *)data, size, "fuzz.conf", &doc, &err) == 0) {
                round_trip(doc);
                vg_toml_doc_free(doc);
                config_file(data, size);
        } else {
                check(strncmp(err.msg, "fuzz.conf:", 10) == 0, "error without FILE:LINE");
        }

        if (vg_toml_parse_value((const char *)data, size, "value", &v, &err) == 0)
                vg_toml_value_clear(&v);
        else
                check(strncmp(err.msg, "value: ", 7) == 0, "value error without its name");

        /* Option text is a C string (environment, argv): no NUL, and short is enough. */
        if (size < 4096 && !memchr(data, 0, size))
                option_text(data, size);
        return 0;
}
