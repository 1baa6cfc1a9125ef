/* vigil: layered, schema-checked configuration (defaults, main file, drop-ins, environment,
 * command line) where every effective value remembers the file line or variable that set it. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#ifndef VIGIL_SYSCONFDIR
#define VIGIL_SYSCONFDIR "/etc/vigil"
#endif

struct config_value {
        bool set;     /* false: unset (string NULL, list empty) */
        char *string; /* STRING, PATH */
        int64_t integer;
        bool boolean;
        char **strv; /* STRING_LIST, NULL-terminated */
};

struct config_slot {
        struct config_value value;
        char *source;
};

struct vg_config {
        const struct vg_config_schema *schema;
        size_t n;
        struct config_slot *slots;
};

static char *const empty_strv[] = { NULL };

static void strv_free(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

static void value_clear(struct config_value *v)
{
        free(v->string);
        strv_free(v->strv);
        *v = (struct config_value){ 0 };
}

/* Append s (n bytes) to a NULL-terminated vector of n_items. */
static int strv_push(char ***v, size_t *n_items, const char *s, size_t n)
{
        char **bigger = reallocarray(*v, *n_items + 2, sizeof(char *));

        if (!bigger)
                return -ENOMEM;
        *v = bigger;
        bigger[*n_items] = strndup(s, n);
        if (!bigger[*n_items])
                return -ENOMEM;
        bigger[++*n_items] = NULL;
        return 0;
}

static int oom(struct vg_error *err)
{
        return vg_error_set(err, -ENOMEM, "out of memory");
}

/* Length of the character at p if it is printable UTF-8 (no control character), else 0.
 * Never looks past the terminating NUL. */
static size_t printable_len(const unsigned char *p)
{
        if (*p < 0x80)
                return *p >= 0x20 && *p != 0x7f ? 1 : 0;
        for (size_t n = 2; n <= 4 && p[n - 1]; n++)
                if (vg_toml_utf8_valid(p, n))
                        return n;
        return 0;
}

/* Text from a user, fit for a one-line message: control characters and invalid UTF-8 shown
 * as '?', cut with "..." to fit buf. */
static const char *show_text(const char *s, char *buf, size_t size)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t o = 0;

        while (*p) {
                size_t n = printable_len(p);
                if (o + (n ? n : 1) + 4 > size) {
                        memcpy(buf + o, "...", 4);
                        return buf;
                }
                if (n)
                        memcpy(buf + o, p, n);
                else
                        buf[o] = '?';
                o += n ? n : 1;
                p += n ? n : 1;
        }
        buf[o] = '\0';
        return buf;
}

static const char *expected_what(enum vg_config_type type)
{
        switch (type) {
        case VG_CONFIG_STRING:
                return "a string";
        case VG_CONFIG_PATH:
                return "an absolute path";
        case VG_CONFIG_INTEGER:
                return "an integer";
        case VG_CONFIG_BOOLEAN:
                return "a boolean (true or false)";
        case VG_CONFIG_STRING_LIST:
                return "an array of strings";
        }
        return "a value";
}

static bool parse_decimal(const char *s, int64_t *out)
{
        bool neg = *s == '-';
        uint64_t mag = 0, limit;

        if (*s == '-' || *s == '+')
                s++;
        if (!*s)
                return false;
        limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return false;
                unsigned d = (unsigned)(*s - '0');
                if (mag > (limit - d) / 10)
                        return false;
                mag = mag * 10 + d;
        }
        if (neg)
                *out = mag > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)mag;
        else
                *out = (int64_t)mag;
        return true;
}

static bool parse_bool_text(const char *s, bool *out)
{
        static const char *const yes[] = { "true", "yes", "on", "1" };
        static const char *const no[] = { "false", "no", "off", "0" };

        for (size_t i = 0; i < VG_ARRAY_SIZE(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *out = true;
                        return true;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *out = false;
                        return true;
                }
        }
        return false;
}

/* A string for a STRING or PATH option; an empty path means "not set". */
static int string_value(const struct vg_config_option *opt, const char *s, struct config_value *v)
{
        if (opt->type == VG_CONFIG_PATH && !*s)
                return 0;
        v->string = strdup(s);
        if (!v->string)
                return -ENOMEM;
        v->set = true;
        return 0;
}

/* A string list given as text: a TOML array ["a", "b"], or items separated by commas with
 * spaces around them ignored; "" is the empty list. */
static int list_from_text(const char *text, const char *where, struct config_value *v,
                          struct vg_error *err)
{
        const char *p = text + strspn(text, " \t");
        size_t n = 0;

        if (*p == '[') {
                struct vg_toml_value tv;
                int r = vg_toml_parse_value(text, strlen(text), where, &tv, err);
                if (r < 0)
                        return r;
                if (tv.type != VG_TOML_STRING_ARRAY) {
                        vg_toml_value_clear(&tv);
                        return vg_error_set(err, -EINVAL, "%s: expected an array of strings",
                                            where);
                }
                v->strv = tv.array.items;
                v->set = true;
                return 0;
        }
        v->strv = calloc(1, sizeof(char *));
        if (!v->strv)
                return oom(err);
        for (;;) {
                size_t len = strcspn(p, ",");
                const char *end = p + len;
                while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (len && strv_push(&v->strv, &n, p, len) < 0)
                        return oom(err);
                if (!*end)
                        break;
                p = end + 1 + strspn(end + 1, " \t");
        }
        v->set = true;
        return 0;
}

static int type_error(const struct vg_config_option *opt, const struct vg_toml_value *tv,
                      const char *where, struct vg_error *err)
{
        char shown[80], found[120];
        const char *hint = "";
        int64_t i;
        bool b;

        switch (tv->type) {
        case VG_TOML_STRING:
                snprintf(found, sizeof(found), "a string (\"%s\")",
                         show_text(tv->string, shown, sizeof(shown)));
                if (opt->type == VG_CONFIG_INTEGER && parse_decimal(tv->string, &i))
                        hint = "; write numbers without quotes";
                else if (opt->type == VG_CONFIG_BOOLEAN && parse_bool_text(tv->string, &b))
                        hint = "; write true or false without quotes";
                break;
        case VG_TOML_INTEGER:
                snprintf(found, sizeof(found), "an integer (%" PRId64 ")", tv->integer);
                break;
        case VG_TOML_BOOLEAN:
                snprintf(found, sizeof(found), "a boolean (%s)", tv->boolean ? "true" : "false");
                break;
        case VG_TOML_STRING_ARRAY:
                snprintf(found, sizeof(found), "an array of strings");
                break;
        }
        if ((opt->type == VG_CONFIG_STRING || opt->type == VG_CONFIG_PATH) &&
            tv->type != VG_TOML_STRING)
                hint = "; strings must be quoted";
        return vg_error_set(err, -EINVAL, "%s: '%s' expects %s, found %s%s", where, opt->name,
                            expected_what(opt->type), found, hint);
}

static int value_from_toml(const struct vg_config_option *opt, const struct vg_toml_value *tv,
                           const char *where, struct config_value *v, struct vg_error *err)
{
        switch (opt->type) {
        case VG_CONFIG_STRING:
        case VG_CONFIG_PATH:
                if (tv->type != VG_TOML_STRING)
                        return type_error(opt, tv, where, err);
                return string_value(opt, tv->string, v) < 0 ? oom(err) : 0;
        case VG_CONFIG_INTEGER:
                if (tv->type != VG_TOML_INTEGER)
                        return type_error(opt, tv, where, err);
                v->integer = tv->integer;
                break;
        case VG_CONFIG_BOOLEAN:
                if (tv->type != VG_TOML_BOOLEAN)
                        return type_error(opt, tv, where, err);
                v->boolean = tv->boolean;
                break;
        case VG_CONFIG_STRING_LIST:
                /* Keylime's files write lists as one string ("a, b" or "['a']"): read it as
                 * the environment's text would be. */
                if (tv->type == VG_TOML_STRING)
                        return list_from_text(tv->string, where, v, err);
                if (tv->type != VG_TOML_STRING_ARRAY)
                        return type_error(opt, tv, where, err);
                size_t n = 0;
                v->strv = calloc(1, sizeof(char *));
                if (!v->strv)
                        return oom(err);
                for (size_t i = 0; i < tv->array.n; i++)
                        if (strv_push(&v->strv, &n, tv->array.items[i],
                                      strlen(tv->array.items[i])) < 0)
                                return oom(err);
                break;
        }
        v->set = true;
        return 0;
}

/* Text from the environment, the command line or a schema default. */
static int value_from_text(const struct vg_config_option *opt, const char *text, const char *where,
                           struct config_value *v, struct vg_error *err)
{
        char shown[80];

        /* Everything ends up in TOML (vigil config show), and TOML is UTF-8. */
        if (!vg_toml_utf8_valid(text, strlen(text)))
                return vg_error_set(err, -EINVAL, "%s: the value of '%s' is not valid UTF-8", where,
                                    opt->name);
        switch (opt->type) {
        case VG_CONFIG_STRING:
        case VG_CONFIG_PATH:
                return string_value(opt, text, v) < 0 ? oom(err) : 0;
        case VG_CONFIG_INTEGER:
                if (!parse_decimal(text, &v->integer))
                        return vg_error_set(err, -EINVAL,
                                            "%s: '%s' expects a decimal integer, found '%s'", where,
                                            opt->name, show_text(text, shown, sizeof(shown)));
                break;
        case VG_CONFIG_BOOLEAN:
                if (!parse_bool_text(text, &v->boolean))
                        return vg_error_set(err, -EINVAL,
                                            "%s: '%s' expects a boolean (true/false, yes/no, "
                                            "on/off, 1/0), found '%s'",
                                            where, opt->name,
                                            show_text(text, shown, sizeof(shown)));
                break;
        case VG_CONFIG_STRING_LIST:
                return list_from_text(text, where, v, err);
        }
        v->set = true;
        return 0;
}

/* The checks every layer shares: integer bounds, absolute paths. */
static int check_value(const struct vg_config_option *opt, const struct config_value *v,
                       const char *where, struct vg_error *err)
{
        char shown[80];

        if (!v->set)
                return 0;
        if (opt->type == VG_CONFIG_INTEGER && (opt->min || opt->max) &&
            (v->integer < opt->min || v->integer > opt->max))
                return vg_error_set(err, -ERANGE,
                                    "%s: '%s' must be between %" PRId64 " and %" PRId64
                                    ", found %" PRId64,
                                    where, opt->name, opt->min, opt->max, v->integer);
        if (opt->type == VG_CONFIG_PATH && v->string[0] != '/')
                return vg_error_set(err, -EINVAL, "%s: '%s' must be an absolute path, found '%s'",
                                    where, opt->name, show_text(v->string, shown, sizeof(shown)));
        return 0;
}

static ssize_t option_index(const struct vg_config_schema *schema, const char *name)
{
        for (size_t i = 0; schema->options[i].name; i++)
                if (strcmp(schema->options[i].name, name) == 0)
                        return (ssize_t)i;
        return -1;
}

/* Replace option i's value with *v (taken) and its source with a copy of source. */
static int assign(struct vg_config *cfg, size_t i, struct config_value *v, const char *source,
                  struct vg_error *err)
{
        char *src = strdup(source);

        if (!src) {
                value_clear(v);
                return oom(err);
        }
        value_clear(&cfg->slots[i].value);
        cfg->slots[i].value = *v;
        free(cfg->slots[i].source);
        cfg->slots[i].source = src;
        *v = (struct config_value){ 0 };
        return 0;
}

/* Parse and check text for option i and make it the value, from source; cfg is untouched on
 * error. where names the origin in messages. */
static int set_from_text(struct vg_config *cfg, size_t i, const char *text, const char *where,
                         struct vg_error *err)
{
        const struct vg_config_option *opt = &cfg->schema->options[i];
        struct config_value v = { 0 };
        int r;

        r = value_from_text(opt, text, where, &v, err);
        if (r >= 0)
                r = check_value(opt, &v, where, err);
        if (r < 0) {
                value_clear(&v);
                return r;
        }
        return assign(cfg, i, &v, where, err);
}

/* Edit distance counting a swap of neighbours as one edit (optimal string alignment), for
 * "did you mean"; names longer than 63 bytes get no suggestion. */
static size_t edit_distance(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b);
        size_t r0[64], r1[64], r2[64];
        size_t *before = r0, *prev = r1, *cur = r2;

        if (la > 63 || lb > 63)
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                prev[j] = j;
        for (size_t i = 1; i <= la; i++) {
                cur[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
                        if (prev[j] + 1 < best)
                                best = prev[j] + 1;
                        if (cur[j - 1] + 1 < best)
                                best = cur[j - 1] + 1;
                        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                            before[j - 2] + 1 < best)
                                best = before[j - 2] + 1;
                        cur[j] = best;
                }
                size_t *t = before;
                before = prev, prev = cur, cur = t;
        }
        return prev[lb];
}

static const char *did_you_mean(const struct vg_config_schema *schema, const char *key, char *buf,
                                size_t size)
{
        const char *best = NULL;
        size_t best_d = SIZE_MAX;

        for (size_t i = 0; schema->options[i].name; i++) {
                const char *name = schema->options[i].name;
                size_t d = edit_distance(key, name);
                /* A typo or two, not a different word: short names allow one edit. */
                if (d <= (strlen(name) <= 4 ? 1 : 2) && d < best_d) {
                        best_d = d;
                        best = name;
                }
        }
        if (!best)
                return "";
        snprintf(buf, size, "; did you mean '%s'?", best);
        return buf;
}

static bool in_section(const struct vg_config_schema *schema, const char *table)
{
        if (strcmp(table, schema->section) == 0)
                return true;
        for (const char *const *a = schema->aliases; a && *a; a++)
                if (strcmp(table, *a) == 0)
                        return true;
        return false;
}

static int apply_doc(struct vg_config *cfg, const struct vg_toml_doc *doc, const char *path,
                     bool strict, struct vg_error *err)
{
        const struct vg_config_schema *schema = cfg->schema;
        char line[16], shown[80], hint[100];
        int r;

        for (size_t e = 0; e < doc->n_entries; e++) {
                const struct vg_toml_entry *ent = &doc->entries[e];
                ssize_t i = option_index(schema, ent->key);

                snprintf(line, sizeof(line), "%u", ent->line);
                if (!in_section(schema, ent->table)) {
                        /* Other sections belong to other components; a known option at the
                         * top is most likely a missing [section] header. */
                        if (!*ent->table && i >= 0)
                                vg_warn(VG_F("file", path, "line", line),
                                        "'%s' is outside any [%s] section, ignored", ent->key,
                                        schema->section);
                        continue;
                }
                if (i < 0) {
                        const char *dym = did_you_mean(schema, ent->key, hint, sizeof(hint));
                        show_text(ent->key, shown, sizeof(shown));
                        if (strict)
                                return vg_error_set(err, -EINVAL,
                                                    "%s:%u: unknown option '%s' in [%s]%s", path,
                                                    ent->line, shown, ent->table, dym);
                        vg_warn(VG_F("file", path, "line", line),
                                "unknown option '%s' in [%s], ignored%s", shown, ent->table, dym);
                        continue;
                }

                const struct vg_config_option *opt = &schema->options[i];
                struct config_value v = { 0 };
                _cleanup_free_ char *where = NULL;

                if (asprintf(&where, "%s:%u", path, ent->line) < 0) {
                        where = NULL;
                        return oom(err);
                }
                r = value_from_toml(opt, &ent->value, where, &v, err);
                if (r >= 0)
                        r = check_value(opt, &v, where, err);
                if (r >= 0)
                        r = assign(cfg, (size_t)i, &v, where, err);
                if (r < 0) {
                        value_clear(&v);
                        return r;
                }
        }
        return 0;
}

/* Read a whole configuration file of at most VG_CONFIG_MAX_FILE_SIZE bytes. *text is NULL if
 * the file does not exist and that is fine (!required). named_by says who asked for the file
 * when it was not the default ("-c", "VIGIL_AGENT_CONFIG"). */
static int read_config_file(const char *path, bool required, const char *named_by, char **text,
                            size_t *len, struct vg_error *err)
{
        /* O_NONBLOCK: opening a FIFO planted where a file should be must not hang startup. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        _cleanup_free_ char *buf = NULL;
        char by[80] = "";
        struct stat st;
        size_t n = 0;
        int e;

        if (named_by)
                snprintf(by, sizeof(by), " (named by %s)", named_by);
        *text = NULL;
        if (fd < 0) {
                e = errno;
                if (e == ENOENT && !required)
                        return 0;
                return vg_error_set(err, -e, "cannot open %s%s: %s", path, by, strerror(e));
        }
        if (fstat(fd, &st) < 0 || fcntl(fd, F_SETFL, 0) < 0) {
                e = errno;
                return vg_error_set(err, -e, "cannot read %s%s: %s", path, by, strerror(e));
        }
        if (S_ISDIR(st.st_mode))
                return vg_error_set(err, -EISDIR, "%s%s is a directory, expected a file", path, by);
        if (S_ISREG(st.st_mode) && st.st_size > VG_CONFIG_MAX_FILE_SIZE)
                return vg_error_set(err, -EFBIG, "%s is too large (%jd bytes; the limit is 1 MiB)",
                                    path, (intmax_t)st.st_size);
        buf = malloc(VG_CONFIG_MAX_FILE_SIZE + 1);
        if (!buf)
                return oom(err);
        /* Read one byte past the limit, so that a file that grew since fstat is caught. */
        while (n <= VG_CONFIG_MAX_FILE_SIZE) {
                ssize_t got = read(fd, buf + n, VG_CONFIG_MAX_FILE_SIZE + 1 - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        e = errno;
                        return vg_error_set(err, -e, "cannot read %s%s: %s", path, by, strerror(e));
                }
                if (got == 0)
                        break;
                n += (size_t)got;
        }
        if (n > VG_CONFIG_MAX_FILE_SIZE)
                return vg_error_set(err, -EFBIG, "%s is too large (over 1 MiB)", path);
        *text = TAKE_PTR(buf);
        *len = n;
        return 0;
}

static int load_file(struct vg_config *cfg, const char *path, bool required, const char *named_by,
                     bool strict, struct vg_error *err)
{
        _cleanup_free_ char *text = NULL;
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *doc = NULL;
        size_t len = 0;
        int r;

        r = read_config_file(path, required, named_by, &text, &len, err);
        if (r < 0 || !text)
                return r;
        r = vg_toml_parse(text, len, path, &doc, err);
        if (r < 0)
                return r;
        return apply_doc(cfg, doc, path, strict, err);
}

static int cmp_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_dropin_name(const char *name)
{
        size_t n = strlen(name);

        /* Hidden files are editor and package manager leftovers (.#x.conf, .x.conf.swp). */
        return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".conf") == 0;
}

static int load_dropins(struct vg_config *cfg, const char *dir, bool strict, struct vg_error *err)
{
        DIR *d = opendir(dir);
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        int r = 0, e;

        if (!d) {
                e = errno;
                if (e == ENOENT)
                        return 0;
                return vg_error_set(err, -e, "cannot read directory %s: %s", dir, strerror(e));
        }
        for (;;) {
                errno = 0;
                de = readdir(d);
                if (!de) {
                        e = errno;
                        if (e)
                                r = vg_error_set(err, -e, "cannot read directory %s: %s", dir,
                                                 strerror(e));
                        break;
                }
                if (is_dropin_name(de->d_name) &&
                    strv_push(&names, &n, de->d_name, strlen(de->d_name)) < 0) {
                        r = oom(err);
                        break;
                }
        }
        closedir(d);
        if (n)
                qsort(names, n, sizeof(char *), cmp_names);
        for (size_t i = 0; i < n && r >= 0; i++) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
                        path = NULL;
                        r = oom(err);
                        break;
                }
                r = load_file(cfg, path, true, NULL, strict, err);
        }
        strv_free(names);
        return r;
}

static const char *env_get(char *const *env, const char *name)
{
        size_t n = strlen(name);

        for (; env && *env; env++)
                if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
                        return *env + n + 1;
        return NULL;
}

/* VIGIL_<COMPONENT>_<OPTION>, upper-cased, '-' as '_' (option may be "" for the prefix). */
static char *env_name(const char *component, const char *option)
{
        char *s;

        if (asprintf(&s, "VIGIL_%s_%s", component, option) < 0)
                return NULL;
        for (char *p = s; *p; p++) {
                if (*p == '-')
                        *p = '_';
                else if (*p >= 'a' && *p <= 'z')
                        *p = (char)(*p - 'a' + 'A');
        }
        return s;
}

static int apply_env(struct vg_config *cfg, char *const *env, struct vg_error *err)
{
        const struct vg_config_schema *schema = cfg->schema;
        _cleanup_free_ char *prefix = env_name(schema->component, "");
        _cleanup_free_ char *config_var = env_name(schema->component, "config");
        int r;

        if (!prefix || !config_var)
                return oom(err);
        for (size_t i = 0; i < cfg->n; i++) {
                _cleanup_free_ char *name = env_name(schema->component, schema->options[i].name);
                _cleanup_free_ char *where = NULL;
                const char *text;

                if (!name || asprintf(&where, "environment %s", name) < 0)
                        return oom(err);
                text = env_get(env, name);
                if (!text)
                        continue;
                r = set_from_text(cfg, i, text, where, err);
                if (r < 0)
                        return r;
        }

        /* A misspelt variable would otherwise be silently without effect. */
        for (; env && *env; env++) {
                const char *eq = strchr(*env, '=');
                size_t len = eq ? (size_t)(eq - *env) : strlen(*env);
                bool known = false;
                char shown[80];

                if (strncmp(*env, prefix, strlen(prefix)) != 0)
                        continue;
                _cleanup_free_ char *var = strndup(*env, len);
                if (!var)
                        return oom(err);
                known = strcmp(var, config_var) == 0;
                for (size_t i = 0; !known && i < cfg->n; i++) {
                        _cleanup_free_ char *name =
                            env_name(schema->component, schema->options[i].name);
                        known = name && strcmp(name, var) == 0;
                }
                if (!known)
                        vg_warn(VG_F("variable", show_text(var, shown, sizeof(shown))),
                                "environment variable names no %s option, ignored",
                                schema->component);
        }
        return 0;
}

static bool is_bare_name(const char *s)
{
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
                        return false;
        return true;
}

/* A schema is code, but checking it here turns a typo in a default into a clear message from
 * the first test rather than a surprise in production. */
static int check_schema(const struct vg_config_schema *schema, struct vg_error *err)
{
        if (!schema || !is_bare_name(schema->component) || !is_bare_name(schema->section) ||
            !schema->options)
                return vg_error_set(err, -EINVAL,
                                    "invalid configuration schema: component, section and "
                                    "options must be set, names A-Za-z0-9_-");
        for (const char *const *a = schema->aliases; a && *a; a++)
                if (!is_bare_name(*a))
                        return vg_error_set(err, -EINVAL, "schema %s: invalid section alias",
                                            schema->component);
        for (size_t i = 0; schema->options[i].name; i++) {
                const char *name = schema->options[i].name;
                if (!is_bare_name(name) || strcasecmp(name, "config") == 0 ||
                    option_index(schema, name) != (ssize_t)i)
                        return vg_error_set(err, -EINVAL,
                                            "schema %s: option name '%s' is invalid, reserved "
                                            "or declared twice",
                                            schema->component, name);
        }
        return 0;
}

static int config_new(const struct vg_config_schema *schema, struct vg_config **out,
                      struct vg_error *err)
{
        _cleanup_(vg_config_freep) struct vg_config *cfg = NULL;
        size_t n = 0;
        int r;

        r = check_schema(schema, err);
        if (r < 0)
                return r;
        while (schema->options[n].name)
                n++;
        cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return oom(err);
        cfg->schema = schema;
        cfg->slots = calloc(n + 1, sizeof(*cfg->slots));
        if (!cfg->slots)
                return oom(err);
        cfg->n = n;
        for (size_t i = 0; i < n; i++) {
                const struct vg_config_option *opt = &schema->options[i];
                char where[160];

                snprintf(where, sizeof(where), "default of %s option", schema->component);
                if (opt->def) {
                        r = set_from_text(cfg, i, opt->def, where, err);
                } else if (opt->type == VG_CONFIG_STRING_LIST) {
                        struct config_value v = { .strv = calloc(1, sizeof(char *)) };
                        r = v.strv ? assign(cfg, i, &v, where, err) : oom(err);
                } else {
                        struct config_value v = { 0 };
                        r = assign(cfg, i, &v, where, err);
                }
                if (r < 0)
                        return r;
                /* Every default reports the same word, whatever the text was. */
                free(cfg->slots[i].source);
                cfg->slots[i].source = strdup("default");
                if (!cfg->slots[i].source)
                        return oom(err);
        }
        *out = TAKE_PTR(cfg);
        return 0;
}

int vg_config_load(const struct vg_config_schema *schema, const struct vg_config_load_opts *opts,
                   struct vg_config **out, struct vg_error *err)
{
        static const struct vg_config_load_opts no_opts;
        _cleanup_(vg_config_freep) struct vg_config *cfg = NULL;
        _cleanup_free_ char *default_file = NULL, *config_var = NULL, *dropin_dir = NULL;
        const char *conf_dir, *main_file, *named_by = NULL, *env_file;
        char *const *env;
        bool dropins = false;
        int r;

        if (!opts)
                opts = &no_opts;
        env = opts->environ ? opts->environ : environ;
        r = config_new(schema, &cfg, err);
        if (r < 0)
                return r;

        conf_dir = opts->conf_dir;
        if (!conf_dir || !*conf_dir)
                conf_dir = env_get(env, "VIGIL_CONF_DIR");
        if (!conf_dir || !*conf_dir)
                conf_dir = VIGIL_SYSCONFDIR;
        config_var = env_name(schema->component, "config");
        if (!config_var || asprintf(&default_file, "%s/%s.conf", conf_dir, schema->component) < 0)
                return oom(err);
        env_file = env_get(env, config_var);

        if (opts->file) {
                main_file = opts->file;
                named_by = "-c";
                dropins = strcmp(opts->file, default_file) == 0;
        } else if (env_file && *env_file) {
                main_file = env_file;
                named_by = config_var;
        } else {
                main_file = default_file;
                dropins = true;
        }
        r = load_file(cfg, main_file, named_by != NULL, named_by, opts->strict_unknown, err);
        if (r < 0)
                return r;
        if (dropins) {
                if (asprintf(&dropin_dir, "%s.d", main_file) < 0) {
                        dropin_dir = NULL;
                        return oom(err);
                }
                r = load_dropins(cfg, dropin_dir, opts->strict_unknown, err);
                if (r < 0)
                        return r;
        }
        r = apply_env(cfg, env, err);
        if (r < 0)
                return r;
        *out = TAKE_PTR(cfg);
        return 0;
}

void vg_config_free(struct vg_config *cfg)
{
        if (!cfg)
                return;
        for (size_t i = 0; cfg->slots && i < cfg->n; i++) {
                value_clear(&cfg->slots[i].value);
                free(cfg->slots[i].source);
        }
        free(cfg->slots);
        free(cfg);
}

/* The slot of a declared option of one of the given types; anything else is a bug in the
 * caller, and carrying on with a made-up value would hide it. */
static const struct config_slot *slot_of(const struct vg_config *cfg, const char *name,
                                         enum vg_config_type t1, enum vg_config_type t2,
                                         const char *getter)
{
        ssize_t i = option_index(cfg->schema, name);

        if (i < 0) {
                vg_err(VG_F("option", name), "%s: option is not declared by the %s schema", getter,
                       cfg->schema->component);
                abort();
        }
        if (cfg->schema->options[i].type != t1 && cfg->schema->options[i].type != t2) {
                vg_err(VG_F("option", name), "%s: option has another type", getter);
                abort();
        }
        return &cfg->slots[i];
}

const char *vg_config_string(const struct vg_config *cfg, const char *name)
{
        return slot_of(cfg, name, VG_CONFIG_STRING, VG_CONFIG_PATH, __func__)->value.string;
}

int64_t vg_config_integer(const struct vg_config *cfg, const char *name)
{
        return slot_of(cfg, name, VG_CONFIG_INTEGER, VG_CONFIG_INTEGER, __func__)->value.integer;
}

bool vg_config_boolean(const struct vg_config *cfg, const char *name)
{
        return slot_of(cfg, name, VG_CONFIG_BOOLEAN, VG_CONFIG_BOOLEAN, __func__)->value.boolean;
}

char *const *vg_config_strv(const struct vg_config *cfg, const char *name)
{
        const struct config_slot *s =
            slot_of(cfg, name, VG_CONFIG_STRING_LIST, VG_CONFIG_STRING_LIST, __func__);

        return s->value.strv ? s->value.strv : empty_strv;
}

const char *vg_config_source(const struct vg_config *cfg, const char *name)
{
        ssize_t i = option_index(cfg->schema, name);

        if (i < 0) {
                vg_err(VG_F("option", name), "%s: option is not declared by the %s schema",
                       __func__, cfg->schema->component);
                abort();
        }
        return cfg->slots[i].source;
}

int vg_config_set(struct vg_config *cfg, const char *name, const char *text, struct vg_error *err)
{
        ssize_t i = option_index(cfg->schema, name);
        char shown[80];

        if (i < 0)
                return vg_error_set(err, -ENOENT, "command line: unknown %s option '%s'",
                                    cfg->schema->component, show_text(name, shown, sizeof(shown)));
        return set_from_text(cfg, (size_t)i, text, "command line", err);
}

/* A comment's text: TOML comments may not hold control characters, and a file name can. */
static void write_comment_text(FILE *out, const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                size_t n = printable_len(p);
                if (n)
                        fwrite(p, 1, n, out);
                else
                        fputc('?', out);
                p += n ? n : 1;
        }
}

int vg_config_dump(const struct vg_config *cfg, FILE *out)
{
        const struct vg_config_schema *schema = cfg->schema;

        fputs("# Effective configuration of vigil ", out);
        write_comment_text(out, schema->component);
        fputs("; each value is followed by where it came from.\n[", out);
        vg_toml_write_key(out, schema->section);
        fputs("]\n", out);
        for (size_t i = 0; i < cfg->n; i++) {
                const struct vg_config_option *opt = &schema->options[i];
                const struct config_value *v = &cfg->slots[i].value;

                if (opt->help) {
                        fputs("\n# ", out);
                        write_comment_text(out, opt->help);
                        fputc('\n', out);
                } else {
                        fputc('\n', out);
                }
                /* An unset integer or boolean has no TOML spelling: show it commented out. An
                 * unset path is written "" which loads back as unset. */
                if (!v->set && (opt->type == VG_CONFIG_INTEGER || opt->type == VG_CONFIG_BOOLEAN ||
                                opt->type == VG_CONFIG_STRING)) {
                        fprintf(out, "# %s is not set  # ", opt->name);
                        write_comment_text(out, cfg->slots[i].source);
                        fputc('\n', out);
                        continue;
                }
                vg_toml_write_key(out, opt->name);
                fputs(" = ", out);
                struct vg_toml_value tv = { 0 };
                switch (opt->type) {
                case VG_CONFIG_STRING:
                case VG_CONFIG_PATH:
                        tv.type = VG_TOML_STRING;
                        tv.string = v->set ? v->string : (char *)"";
                        break;
                case VG_CONFIG_INTEGER:
                        tv.type = VG_TOML_INTEGER;
                        tv.integer = v->integer;
                        break;
                case VG_CONFIG_BOOLEAN:
                        tv.type = VG_TOML_BOOLEAN;
                        tv.boolean = v->boolean;
                        break;
                case VG_CONFIG_STRING_LIST:
                        tv.type = VG_TOML_STRING_ARRAY;
                        tv.array.items = v->strv ? v->strv : (char **)empty_strv;
                        while (tv.array.items[tv.array.n])
                                tv.array.n++;
                        break;
                }
                /* The TOML writer spells every value, so the dump parses back as written. */
                vg_toml_write_value(out, &tv);
                fputs("  # ", out);
                write_comment_text(out, cfg->slots[i].source);
                fputc('\n', out);
        }
        return fflush(out) == 0 && !ferror(out) ? 0 : -EIO;
}
