/* vigil: layered configuration for a component: built-in defaults, then
 * /etc/vigil/<component>.conf, then the "*.conf" files of <component>.conf.d/ in strcmp
 * order (last value wins), then VIGIL_<COMPONENT>_<OPTION> environment variables. Each
 * component declares its options (name, type, default, help) so that types are checked at
 * load time with the file and line that set them, and `vigil config show` can print every
 * effective value with where it came from. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cleanup.h"
#include "error.h"
#include "toml.h"

/* Files larger than this are refused rather than read. */
#define VG_CONFIG_MAX_FILE_SIZE (1024 * 1024)

enum vg_config_type {
        VG_CONFIG_STRING,
        VG_CONFIG_PATH, /* a string that must be absolute (relative refused); "" unsets */
        VG_CONFIG_INTEGER,
        VG_CONFIG_BOOLEAN,
        VG_CONFIG_STRING_LIST, /* in a file: an array of strings, or a string read as text */
};

struct vg_config_option {
        const char *name; /* in the component's section, e.g. "registrar_port" */
        enum vg_config_type type;
        const char *def;  /* default as text ("8890", "true", "a,b"); NULL = unset */
        const char *help; /* one line for `vigil config show` and the man page */
        int64_t min, max; /* VG_CONFIG_INTEGER bounds; min == max == 0 means any */
};

/* Names (component, section, aliases, options) are bare TOML keys: A-Za-z0-9_-. */
struct vg_config_schema {
        const char *component;                  /* "agent": file agent.conf, env VIGIL_AGENT_ */
        const char *section;                    /* table the options live in, e.g. "agent" */
        const char *const *aliases;             /* other accepted section names (NULL-terminated) */
        const struct vg_config_option *options; /* terminated by an entry with name == NULL */
};

/* The main file is the first of: -c FILE, $VIGIL_<COMPONENT>_CONFIG (as Keylime's
 * KEYLIME_AGENT_CONFIG), <conf_dir>/<component>.conf; the drop-ins ("*.conf" in <main>.d/) are
 * read only for the last, the default file. */
struct vg_config_load_opts {
        const char *conf_dir; /* NULL: $VIGIL_CONF_DIR or the compiled-in /etc/vigil */
        const char *file;     /* -c FILE: replaces <conf_dir>/<component>.conf; its .d still read
                               * only when it is the default file */
        char *const *environ; /* NULL: the process environment */
        bool strict_unknown;  /* unknown keys in the component's section are errors, else
                               * warnings (logged with FILE:LINE) */
};

struct vg_config;

/* Load and type-check the layers (opts may be NULL). A missing default file or .d directory is
 * fine; a missing -c FILE, an unreadable file, a directory or a file over 1 MiB where a file
 * should be, a syntax error, a type error or an out-of-range integer is an error naming
 * FILE:LINE (or the environment variable); the return value is then a negative errno. Text
 * from the environment: integers in decimal; booleans true/false, yes/no, on/off, 1/0 (any
 * case); string lists as a TOML array ["a", "b"] or comma-separated ("" is the empty list). */
int vg_config_load(const struct vg_config_schema *schema, const struct vg_config_load_opts *opts,
                   struct vg_config **out, struct vg_error *err);
void vg_config_free(struct vg_config *cfg);
VG_DEFINE_CLEANUP_FUNC(struct vg_config, vg_config_free)

/* Getters take an option name declared in the schema; asking for an undeclared name or with
 * the wrong type is a programming error (abort). Strings stay owned by cfg. */
const char *vg_config_string(const struct vg_config *cfg, const char *name); /* NULL if unset */
int64_t vg_config_integer(const struct vg_config *cfg, const char *name);
bool vg_config_boolean(const struct vg_config *cfg, const char *name);
/* NULL-terminated, never NULL (empty list if unset). */
char *const *vg_config_strv(const struct vg_config *cfg, const char *name);

/* Where the effective value came from: "default", "/etc/vigil/agent.conf:12",
 * "environment VIGIL_AGENT_PORT". */
const char *vg_config_source(const struct vg_config *cfg, const char *name);

/* Set a value as if from the command line (source "command line"); text is parsed as for the
 * environment. An undeclared name is -ENOENT, a bad value -EINVAL; cfg is unchanged then. */
int vg_config_set(struct vg_config *cfg, const char *name, const char *text, struct vg_error *err);

/* Print the section header and "name = value  # source" lines (help as a comment above each;
 * unset options commented out), for `vigil config show`. The output loads back as a config
 * file with the same values. Returns 0, or -EIO if writing failed. */
int vg_config_dump(const struct vg_config *cfg, FILE *out);
