/* vigil: layered configuration for a component: built-in defaults, then
 * /etc/vigil/<component>.conf, then <component>.conf.d/*.conf in lexicographic order (last
 * value wins), then VIGIL_<COMPONENT>_<OPTION> environment variables. Each component declares
 * its options (name, type, default, help) so that types are checked at load time with the
 * file and line that set them, and `vigil config show` can print every effective value with
 * where it came from. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "toml.h"

enum vg_config_type {
        VG_CONFIG_STRING,
        VG_CONFIG_PATH,         /* a string that must be absolute once set (relative refused) */
        VG_CONFIG_INTEGER,
        VG_CONFIG_BOOLEAN,
        VG_CONFIG_STRING_LIST,
};

struct vg_config_option {
        const char *name;       /* in the component's section, e.g. "registrar_port" */
        enum vg_config_type type;
        const char *def;        /* default as text ("8890", "true", "a,b"); NULL = unset */
        const char *help;       /* one line for `vigil config show` and the man page */
        int64_t min, max;       /* VG_CONFIG_INTEGER bounds; min == max == 0 means any */
};

struct vg_config_schema {
        const char *component;                  /* "agent": file agent.conf, env VIGIL_AGENT_ */
        const char *section;                    /* table the options live in, e.g. "agent" */
        const char *const *aliases;             /* other accepted section names (NULL-terminated) */
        const struct vg_config_option *options; /* terminated by an entry with name == NULL */
};

struct vg_config_load_opts {
        const char *conf_dir;   /* NULL: $VIGIL_CONF_DIR or the compiled-in /etc/vigil */
        const char *file;       /* -c FILE: replaces <conf_dir>/<component>.conf; its .d still read
                                 * only when it is the default file */
        char *const *environ;   /* NULL: the process environment */
        bool strict_unknown;    /* unknown keys in the component's section are errors, else
                                 * warnings (logged with FILE:LINE) */
};

struct vg_config;

/* Load and type-check the layers. A missing default file or .d directory is fine; a missing
 * -c FILE, an unreadable file, a syntax error, a type error or an out-of-range integer is an
 * error naming FILE:LINE (or the environment variable). */
int vg_config_load(const struct vg_config_schema *schema, const struct vg_config_load_opts *opts,
                   struct vg_config **out, struct vg_error *err);
void vg_config_free(struct vg_config *cfg);

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
 * environment. */
int vg_config_set(struct vg_config *cfg, const char *name, const char *text, struct vg_error *err);

/* Print "name = value  # source" lines in TOML form, for `vigil config show`. */
void vg_config_dump(const struct vg_config *cfg, FILE *out);
