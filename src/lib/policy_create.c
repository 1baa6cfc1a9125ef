/* vigil: Keylime runtime policy generation (reference/keylime.md §5): digests gathered from a
 * root filesystem, initramfs images, IMA logs and allowlists, written as runtime policy JSON v1. */
#include "policy_create.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "dl_archive.h"
#include "encoding.h"
#include "ima.h"

#define DIGEST_HEX_MIN 40
#define DIGEST_HEX_MAX 128
#define MAX_THREADS    16

struct vg_policy {
        json_t *maps[3];          /* VG_POLICY_DIGESTS..: object name -> array of hex strings */
        json_t *excludes;         /* array of regex strings, unique */
        json_t *ignored_keyrings; /* array of strings, unique */
        enum vg_hash_alg log_hash_alg;
        enum vg_policy_generator generator;
        char *verification_keys; /* a JSON string in a string, as Keylime keeps it */
        size_t counts[3];
};

static const char *const map_names[] = { "digests", "keyrings", "ima-buf" };

VG_DEFINE_CLEANUP_FUNC(struct vg_hash_ctx, vg_hash_free)

int vg_policy_new(struct vg_policy **out)
{
        struct vg_policy *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        for (size_t i = 0; i < VG_ARRAY_SIZE(p->maps); i++)
                p->maps[i] = json_object();
        p->excludes = json_array();
        p->ignored_keyrings = json_array();
        p->verification_keys = strdup("");
        p->log_hash_alg = VG_HASH_SHA1; /* Keylime's default: the kernel's column 2 is SHA-1 */
        p->generator = VG_POLICY_GEN_LEGACY;
        if (!p->maps[0] || !p->maps[1] || !p->maps[2] || !p->excludes || !p->ignored_keyrings ||
            !p->verification_keys) {
                vg_policy_free(p);
                return -ENOMEM;
        }
        *out = p;
        return 0;
}

void vg_policy_free(struct vg_policy *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < VG_ARRAY_SIZE(p->maps); i++)
                json_decref(p->maps[i]);
        json_decref(p->excludes);
        json_decref(p->ignored_keyrings);
        free(p->verification_keys);
        free(p);
}

/* ---- Small checks ---------------------------------------------------------------------------- */

static bool utf8_valid(const char *s)
{
        const unsigned char *u = (const unsigned char *)s;

        while (*u) {
                unsigned c = *u++;
                int more;
                unsigned cp, min;

                if (c < 0x80)
                        continue;
                if ((c & 0xe0) == 0xc0) {
                        more = 1, cp = c & 0x1f, min = 0x80;
                } else if ((c & 0xf0) == 0xe0) {
                        more = 2, cp = c & 0x0f, min = 0x800;
                } else if ((c & 0xf8) == 0xf0) {
                        more = 3, cp = c & 0x07, min = 0x10000;
                } else {
                        return false;
                }
                for (; more > 0; more--) {
                        if ((*u & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (*u++ & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
        }
        return true;
}

/*
 * A digest as Keylime's schema wants it: ^[0-9a-f]{40,128}$. Lenient input also takes upper
 * case and an "alg:" prefix whose algorithm matches the length (IMA logs print "sha256:...").
 * out gets the canonical form; returns NULL or what is wrong.
 */
static const char *digest_canon(const char *in, bool lenient, char out[DIGEST_HEX_MAX + 1])
{
        const char *colon = strchr(in, ':');
        size_t n;

        if (colon && lenient) {
                char alg[16];
                enum vg_hash_alg a;
                size_t alen = (size_t)(colon - in);

                if (alen == 0 || alen >= sizeof(alg))
                        return "expected a hex digest, found an empty or long algorithm prefix";
                memcpy(alg, in, alen);
                alg[alen] = '\0';
                if (vg_hash_alg_from_name(alg, &a) < 0)
                        return "expected sha1:, sha256:, sha384: or sha512: before the digest";
                in = colon + 1;
                if (strlen(in) != 2 * vg_hash_size(a))
                        return "the digest's length does not match its algorithm prefix";
        }
        n = strlen(in);
        if (n < DIGEST_HEX_MIN || n > DIGEST_HEX_MAX)
                return "expected a hex digest of 40 to 128 characters";
        for (size_t i = 0; i < n; i++) {
                char c = in[i];

                if (c >= 'A' && c <= 'F' && lenient)
                        c = (char)(c - 'A' + 'a');
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return lenient ? "expected a hex digest"
                                       : "expected a lower-case hex digest (^[0-9a-f]{40,128}$)";
                out[i] = c;
        }
        out[n] = '\0';
        return NULL;
}

static int regex_check(const char *re, char *why, size_t why_len)
{
        int code = 0;
        PCRE2_SIZE off = 0;
        pcre2_code *c =
            pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &off, NULL);

        if (c) {
                pcre2_code_free(c);
                return 0;
        }
        char msg[200];

        pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof(msg));
        snprintf(why, why_len, "%s at offset %zu", msg, (size_t)off);
        return -EINVAL;
}

static int array_add_unique(json_t *arr, const char *s)
{
        size_t i;
        json_t *v;

        json_array_foreach (arr, i, v) {
                if (strcmp(json_string_value(v), s) == 0)
                        return 0;
        }
        return json_array_append_new(arr, json_string(s)) < 0 ? -ENOMEM : 1;
}

/* ---- Building ----------------------------------------------------------------------------------
 */

static int add_digest_canon(struct vg_policy *p, enum vg_policy_map map, const char *path,
                            const char *hex, struct vg_error *err)
{
        json_t *arr;
        int r;

        if (!utf8_valid(path))
                return vg_error_set(err, -EILSEQ, "path is not UTF-8, which JSON cannot carry");
        if (!path[0])
                return vg_error_set(err, -EINVAL, "expected a path, found an empty one");
        arr = json_object_get(p->maps[map], path);
        if (!arr) {
                arr = json_array();
                if (!arr || json_object_set_new(p->maps[map], path, arr) < 0)
                        return -ENOMEM;
        }
        r = array_add_unique(arr, hex);
        if (r > 0)
                p->counts[map]++;
        return r < 0 ? r : 0;
}

int vg_policy_add_digest(struct vg_policy *p, enum vg_policy_map map, const char *path,
                         const char *hex, struct vg_error *err)
{
        char canon[DIGEST_HEX_MAX + 1];
        const char *why;

        if ((unsigned)map >= VG_ARRAY_SIZE(p->maps))
                return -EINVAL;
        why = digest_canon(hex, true, canon);
        if (why)
                return vg_error_set(err, -EINVAL, "%s: %s, found '%.140s'", path, why, hex);
        return add_digest_canon(p, map, path, canon, err);
}

int vg_policy_add_exclude(struct vg_policy *p, const char *regex, struct vg_error *err)
{
        char why[256];

        if (!utf8_valid(regex))
                return vg_error_set(err, -EILSEQ, "exclude '%s' is not UTF-8", regex);
        if (regex_check(regex, why, sizeof(why)) < 0)
                return vg_error_set(err, -EINVAL, "exclude '%s' is not a valid regex: %s", regex,
                                    why);
        return array_add_unique(p->excludes, regex) < 0 ? -ENOMEM : 0;
}

int vg_policy_add_ignored_keyring(struct vg_policy *p, const char *name, struct vg_error *err)
{
        if (!utf8_valid(name) || !name[0])
                return vg_error_set(err, -EINVAL, "expected a keyring name, found '%s'", name);
        return array_add_unique(p->ignored_keyrings, name) < 0 ? -ENOMEM : 0;
}

void vg_policy_set_log_hash_alg(struct vg_policy *p, enum vg_hash_alg alg)
{
        p->log_hash_alg = alg;
}

void vg_policy_set_generator(struct vg_policy *p, enum vg_policy_generator gen)
{
        p->generator = gen;
}

size_t vg_policy_count(const struct vg_policy *p, enum vg_policy_map map)
{
        return (unsigned)map < VG_ARRAY_SIZE(p->counts) ? p->counts[map] : 0;
}

size_t vg_policy_exclude_count(const struct vg_policy *p)
{
        return json_array_size(p->excludes);
}

bool vg_policy_has(const struct vg_policy *p, enum vg_policy_map map, const char *path,
                   const char *hex)
{
        char canon[DIGEST_HEX_MAX + 1];
        json_t *arr, *v;
        size_t i;

        if ((unsigned)map >= VG_ARRAY_SIZE(p->maps))
                return false;
        arr = json_object_get(p->maps[map], path);
        if (!arr || !hex)
                return arr != NULL;
        if (digest_canon(hex, true, canon))
                return false;
        json_array_foreach (arr, i, v) {
                if (strcmp(json_string_value(v), canon) == 0)
                        return true;
        }
        return false;
}

/* ---- Allowlists and exclude lists --------------------------------------------------------------
 */

/* IMA writes spaces in file names as '_'; Keylime's generators do the same so that they match. */
static void spaces_to_underscores(char *s)
{
        for (; *s; s++)
                if (*s == ' ')
                        *s = '_';
}

/* Call fn for each line (without its end, trimmed of surrounding white space), with its number. */
static int for_each_line(const char *text, size_t len, const char *name,
                         int (*fn)(char *line, size_t lineno, void *ud), void *ud,
                         struct vg_error *err)
{
        size_t lineno = 0, i = 0;

        while (i < len) {
                const char *nl = memchr(text + i, '\n', len - i);
                size_t end = nl ? (size_t)(nl - text) : len;
                _cleanup_free_ char *line = NULL;
                char *s, *e;
                int r;

                lineno++;
                if (memchr(text + i, '\0', end - i))
                        return vg_error_set(err, -EINVAL, "%s:%zu: expected text, found a NUL byte",
                                            name, lineno);
                line = strndup(text + i, end - i);
                if (!line)
                        return -ENOMEM;
                i = end + 1;
                for (s = line; *s && isspace((unsigned char)*s); s++)
                        ;
                e = s + strlen(s);
                while (e > s && isspace((unsigned char)e[-1]))
                        *--e = '\0';
                if (!*s || *s == '#')
                        continue;
                r = fn(s, lineno, ud);
                if (r < 0) {
                        vg_error_prefix(err, "%s:%zu: ", name, lineno);
                        return r;
                }
        }
        return 0;
}

struct line_ctx {
        struct vg_policy *p;
        struct vg_error *err;
};

static int flat_line(char *line, size_t lineno, void *ud)
{
        struct line_ctx *c = ud;
        char *path = line + strcspn(line, " \t");
        char canon[DIGEST_HEX_MAX + 1];
        enum vg_policy_map map = VG_POLICY_DIGESTS;
        const char *why;

        (void)lineno;
        if (!*path)
                return vg_error_set(c->err, -EINVAL,
                                    "expected '<hex digest> <path>', found one field '%.200s'",
                                    line);
        *path++ = '\0';
        path += strspn(path, " \t");
        why = digest_canon(line, true, canon);
        if (why)
                return vg_error_set(c->err, -EINVAL, "%s, found '%.140s'", why, line);
        if (strncmp(path, "%keyring:", 9) == 0) {
                map = VG_POLICY_KEYRINGS;
                path += 9;
        } else {
                spaces_to_underscores(path);
        }
        return add_digest_canon(c->p, map, path, canon, c->err);
}

static int exclude_line(char *line, size_t lineno, void *ud)
{
        struct line_ctx *c = ud;

        (void)lineno;
        return vg_policy_add_exclude(c->p, line, c->err);
}

int vg_policy_add_exclude_list(struct vg_policy *p, const char *text, size_t len, const char *name,
                               struct vg_error *err)
{
        struct line_ctx c = { p, err };

        return for_each_line(text, len, name, exclude_line, &c, err);
}

static int merge_root(struct vg_policy *p, json_t *root, bool strict, bool legacy, const char *name,
                      struct vg_error *err);

int vg_policy_add_allowlist(struct vg_policy *p, const char *text, size_t len, const char *name,
                            struct vg_error *err)
{
        struct line_ctx c = { p, err };
        size_t i = 0;

        while (i < len && isspace((unsigned char)text[i]))
                i++;
        if (i < len && text[i] == '{') {
                json_error_t je;
                json_auto_t *root = json_loadb(text, len, 0, &je);

                if (!root)
                        return vg_error_set(err, -EINVAL, "%s:%d:%d: not valid JSON: %s", name,
                                            je.line, je.column, je.text);
                if (json_object_get(root, "digests"))
                        return vg_error_set(err, -EINVAL,
                                            "%s: is already a runtime policy (it has \"digests\"), "
                                            "not an allowlist; use it as a base policy",
                                            name);
                if (!json_is_object(json_object_get(root, "hashes")))
                        return vg_error_set(err, -EINVAL,
                                            "%s: expected a JSON allowlist with a \"hashes\" "
                                            "object, found none",
                                            name);
                return merge_root(p, root, false, true, name, err);
        }
        return for_each_line(text, len, name, flat_line, &c, err);
}

/* ---- Runtime policy JSON in -------------------------------------------------------------------
 */

static int merge_map(struct vg_policy *p, enum vg_policy_map map, json_t *obj, const char *key,
                     bool strict, const char *name, struct vg_error *err)
{
        const char *path;
        json_t *arr;

        if (!json_is_object(obj))
                return vg_error_set(err, -EINVAL, "%s: %s: expected an object, found %s", name, key,
                                    obj ? "another JSON type" : "nothing");
        json_object_foreach (obj, path, arr) {
                size_t i;
                json_t *v;

                if (!json_is_array(arr))
                        return vg_error_set(err, -EINVAL, "%s: %s.%s: expected an array", name, key,
                                            path);
                if (strict && json_array_size(arr) == 0)
                        return vg_error_set(err, -EINVAL,
                                            "%s: %s.%s: expected at least one digest, found none",
                                            name, key, path);
                json_array_foreach (arr, i, v) {
                        char canon[DIGEST_HEX_MAX + 1];
                        const char *why;
                        int r;

                        if (!json_is_string(v))
                                return vg_error_set(err, -EINVAL,
                                                    "%s: %s.%s[%zu]: expected a string", name, key,
                                                    path, i);
                        why = digest_canon(json_string_value(v), !strict, canon);
                        if (why)
                                return vg_error_set(err, -EINVAL,
                                                    "%s: %s.%s[%zu]: %s, found '%.140s'", name, key,
                                                    path, i, why, json_string_value(v));
                        if (!p)
                                continue;
                        r = add_digest_canon(p, map, path, canon, err);
                        if (r < 0) {
                                vg_error_prefix(err, "%s: %s.%s: ", name, key, path);
                                return r;
                        }
                }
        }
        return 0;
}

static int merge_strings(json_t *arr, const char *key, bool regexes, json_t *dest, const char *name,
                         struct vg_error *err)
{
        size_t i;
        json_t *v;

        if (!json_is_array(arr))
                return vg_error_set(err, -EINVAL, "%s: %s: expected an array of strings", name,
                                    key);
        json_array_foreach (arr, i, v) {
                char why[256];

                if (!json_is_string(v))
                        return vg_error_set(err, -EINVAL, "%s: %s[%zu]: expected a string", name,
                                            key, i);
                if (regexes && regex_check(json_string_value(v), why, sizeof(why)) < 0)
                        return vg_error_set(err, -EINVAL,
                                            "%s: %s[%zu]: '%s' is not a valid regex: %s", name, key,
                                            i, json_string_value(v), why);
                if (dest && array_add_unique(dest, json_string_value(v)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int check_uint(json_t *root, const char *key, const char *label, long long max,
                      const char *name, struct vg_error *err)
{
        json_t *v = json_object_get(root, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
                return vg_error_set(err, -EINVAL, "%s: %s: expected an integer from 0 to %lld",
                                    name, label, max);
        return 0;
}

/*
 * Merge (p non-NULL) or only check (p NULL) a runtime policy object. strict: Keylime's schema,
 * every key required. legacy: a JSON allowlist, whose digests are under "hashes".
 */
static int merge_root(struct vg_policy *p, json_t *root, bool strict, bool legacy, const char *name,
                      struct vg_error *err)
{
        static const char *const required[] = { "meta",     "release",          "digests",
                                                "excludes", "keyrings",         "ima",
                                                "ima-buf",  "verification-keys" };
        json_t *v, *ima;
        int r;

        if (!json_is_object(root))
                return vg_error_set(err, -EINVAL, "%s: expected a JSON object", name);
        for (size_t i = 0; strict && i < VG_ARRAY_SIZE(required); i++)
                if (!json_object_get(root, required[i]))
                        return vg_error_set(err, -EINVAL,
                                            "%s: expected the key \"%s\" (runtime policy v1 "
                                            "requires it), found none",
                                            name, required[i]);
        v = json_object_get(root, "meta");
        if (strict) {
                if (!json_is_object(v))
                        return vg_error_set(err, -EINVAL, "%s: meta: expected an object", name);
                r = check_uint(v, "version", "meta.version", INT32_MAX, name, err);
                if (r == 0)
                        r = check_uint(v, "generator", "meta.generator", 3, name, err);
                if (r < 0)
                        return r;
                if (json_object_get(v, "timestamp") &&
                    !json_is_string(json_object_get(v, "timestamp")))
                        return vg_error_set(err, -EINVAL, "%s: meta.timestamp: expected a string",
                                            name);
                r = check_uint(root, "release", "release", INT64_MAX, name, err);
                if (r < 0)
                        return r;
        }
        for (int m = 0; m < 3; m++) {
                const char *key = legacy && m == VG_POLICY_DIGESTS ? "hashes" : map_names[m];

                v = json_object_get(root, key);
                if (!v)
                        continue;
                r = merge_map(p, (enum vg_policy_map)m, v, key, strict, name, err);
                if (r < 0)
                        return r;
        }
        v = json_object_get(root, "excludes");
        if (v) {
                r = merge_strings(v, "excludes", true, p ? p->excludes : NULL, name, err);
                if (r < 0)
                        return r;
        }
        ima = json_object_get(root, "ima");
        if (ima && !json_is_object(ima))
                return vg_error_set(err, -EINVAL, "%s: ima: expected an object", name);
        if (strict)
                for (size_t i = 0; i < 3; i++) {
                        static const char *const k[] = { "ignored_keyrings", "log_hash_alg",
                                                         "dm_policy" };
                        if (!json_object_get(ima, k[i]))
                                return vg_error_set(err, -EINVAL,
                                                    "%s: ima: expected the key \"%s\", found none",
                                                    name, k[i]);
                }
        if (ima) {
                enum vg_hash_alg alg;

                v = json_object_get(ima, "ignored_keyrings");
                if (v) {
                        r = merge_strings(v, "ima.ignored_keyrings", false,
                                          p ? p->ignored_keyrings : NULL, name, err);
                        if (r < 0)
                                return r;
                }
                v = json_object_get(ima, "log_hash_alg");
                if (v) {
                        const char *s = json_string_value(v);

                        if (!s || vg_hash_alg_from_name(s, &alg) < 0 ||
                            strcmp(s, vg_hash_alg_name(alg)) != 0)
                                return vg_error_set(err, -EINVAL,
                                                    "%s: ima.log_hash_alg: expected \"sha1\", "
                                                    "\"sha256\", \"sha384\" or \"sha512\"",
                                                    name);
                        if (p)
                                p->log_hash_alg = alg;
                }
                v = json_object_get(ima, "dm_policy");
                if (v && !json_is_null(v))
                        return vg_error_set(err, -EINVAL,
                                            "%s: ima.dm_policy: expected null (Keylime's schema "
                                            "allows nothing else)",
                                            name);
        }
        v = json_object_get(root, "verification-keys");
        if (v) {
                const char *s = json_string_value(v);

                if (!s)
                        return vg_error_set(err, -EINVAL,
                                            "%s: verification-keys: expected a string (JSON "
                                            "inside a string), found another type",
                                            name);
                if (s[0]) {
                        json_error_t je;
                        json_auto_t *keys = json_loads(s, 0, &je);

                        if (!json_is_object(keys))
                                return vg_error_set(err, -EINVAL,
                                                    "%s: verification-keys: expected a JSON "
                                                    "object in the string, found: %s",
                                                    name, keys ? "another type" : je.text);
                }
                if (p && s[0]) {
                        char *dup = strdup(s);

                        if (!dup)
                                return -ENOMEM;
                        free(p->verification_keys);
                        p->verification_keys = dup;
                }
        }
        return 0;
}

static int load_json(const char *json, size_t len, const char *name, json_t **out,
                     struct vg_error *err)
{
        json_error_t je;

        *out = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
        if (!*out)
                return vg_error_set(err, -EINVAL, "%s:%d:%d: not valid JSON: %s", name, je.line,
                                    je.column, je.text);
        return 0;
}

int vg_policy_merge_json(struct vg_policy *p, const char *json, size_t len, const char *name,
                         struct vg_error *err)
{
        json_auto_t *root = NULL;
        int r = load_json(json, len, name, &root, err);

        if (r < 0)
                return r;
        if (json_is_object(root) && json_object_get(root, "payload") &&
            json_object_get(root, "signatures"))
                return vg_error_set(err, -EINVAL,
                                    "%s: is a signed (DSSE) envelope; check it with `vigil policy "
                                    "verify -o` and use the payload",
                                    name);
        return merge_root(p, root, false, false, name, err);
}

int vg_policy_check_json(const char *json, size_t len, struct vg_error *err)
{
        json_auto_t *root = NULL;
        int r = load_json(json, len, "policy", &root, err);

        if (r < 0)
                return r;
        return merge_root(NULL, root, true, false, "policy", err);
}

/* ---- IMA log ----------------------------------------------------------------------------------
 */

struct ima_ctx {
        struct vg_policy *p;
        bool keyrings, ima_buf;
        size_t template_hash_len;
        struct vg_error *err;
};

/* Whether buf is a DER X.509 certificate or SubjectPublicKeyInfo: what the kernel measures into
 * ima-buf when a key is added to a keyring. An outer SEQUENCE that spans the buffer exactly,
 * whose first element is a SEQUENCE, is taken as one. */
static bool looks_like_key(const uint8_t *b, size_t n)
{
        size_t len, hdr;

        if (n < 4 || b[0] != 0x30)
                return false;
        if (b[1] < 0x80) {
                len = b[1], hdr = 2;
        } else {
                size_t k = b[1] & 0x7f;

                if (k == 0 || k > 4 || n < 2 + k)
                        return false;
                len = 0;
                for (size_t i = 0; i < k; i++)
                        len = (len << 8) | b[2 + i];
                hdr = 2 + k;
        }
        return hdr + len == n && n > hdr && b[hdr] == 0x30;
}

static int ima_entry(const struct vg_ima_entry *e, void *ud)
{
        struct ima_ctx *c = ud;
        _cleanup_free_ char *hex = NULL;
        enum vg_policy_map map = VG_POLICY_DIGESTS;

        /* Violation records (all-zero template hash) are taken as they are, as keylime-policy
         * does: their digest is what the log says (zeros for a boot_aggregate without TPM). */
        if (!c->template_hash_len)
                c->template_hash_len = e->template_hash_len;
        if (e->tpl == VG_IMA_TPL_BUF) {
                if (looks_like_key(e->buf, e->buf_len)) {
                        json_t *v;
                        size_t i;

                        if (!c->keyrings)
                                return 0;
                        json_array_foreach (c->p->ignored_keyrings, i, v) {
                                if (strcmp(json_string_value(v), e->path) == 0 ||
                                    strcmp(json_string_value(v), "*") == 0)
                                        return 0;
                        }
                        map = VG_POLICY_KEYRINGS;
                } else if (c->ima_buf) {
                        map = VG_POLICY_IMA_BUF;
                } else {
                        return 0;
                }
        }
        if (e->digest_len < DIGEST_HEX_MIN / 2)
                return 0; /* MD5 in a legacy "ima" entry cannot go into a runtime policy */
        hex = vg_hex_encode(e->digest, e->digest_len);
        if (!hex)
                return -ENOMEM;
        int r = add_digest_canon(c->p, map, e->path, hex, c->err);

        if (r < 0)
                vg_error_prefix(c->err, "line %llu: ", (unsigned long long)e->line);
        return r;
}

int vg_policy_add_ima_log(struct vg_policy *p, const char *log, size_t len, const char *name,
                          bool keyrings, bool ima_buf, struct vg_error *err)
{
        struct ima_ctx c = { .p = p, .keyrings = keyrings, .ima_buf = ima_buf, .err = err };
        int r = vg_ima_parse_log(log, len, ima_entry, &c, err);

        if (r < 0) {
                vg_error_prefix(err, "%s: ", name);
                return r;
        }
        for (int a = 0; a < VG_HASH_ALG_COUNT; a++)
                if (c.template_hash_len && vg_hash_size((enum vg_hash_alg)a) == c.template_hash_len)
                        p->log_hash_alg = (enum vg_hash_alg)a;
        return 0;
}

/* ---- Hashing files ----------------------------------------------------------------------------
 */

static bool under_prefix(const char *path, const char *prefix)
{
        size_t n = strlen(prefix);

        while (n > 1 && prefix[n - 1] == '/')
                n--;
        if (n == 1 && prefix[0] == '/')
                return true;
        return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool skipped(const char *target, const struct vg_policy_scan_opts *o, bool rootfs)
{
        static const char *const defaults[] = { "/proc", "/sys", "/dev", "/run", "/tmp" };

        if (rootfs && !o->no_default_skips)
                for (size_t i = 0; i < VG_ARRAY_SIZE(defaults); i++)
                        if (under_prefix(target, defaults[i]))
                                return true;
        for (const char *const *s = o->skip; s && *s; s++)
                if (under_prefix(target, *s))
                        return true;
        return false;
}

struct scan_file {
        char *host;   /* path to open */
        char *target; /* path in the policy */
        int err;      /* 0, or a negative errno from hashing */
        uint64_t size;
        uint8_t digest[VG_HASH_MAX_SIZE];
};

struct scan_list {
        struct scan_file *v;
        size_t n, cap;
};

static void scan_list_free(struct scan_list *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].host);
                free(l->v[i].target);
        }
        free(l->v);
}

static int scan_list_push(struct scan_list *l, const char *host, const char *target)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 1024;
                struct scan_file *v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        memset(&l->v[l->n], 0, sizeof(l->v[l->n]));
        l->v[l->n].host = strdup(host);
        l->v[l->n].target = strdup(target);
        if (!l->v[l->n].host || !l->v[l->n].target) {
                free(l->v[l->n].host);
                free(l->v[l->n].target);
                return -ENOMEM;
        }
        l->n++;
        return 0;
}

struct walk {
        const struct vg_policy_scan_opts *o;
        struct vg_policy_scan_stats *st;
        struct scan_list files;
        size_t root_len; /* host prefix to strip: 0 when the rootfs is "/" */
};

static void report(const struct vg_policy_scan_opts *o, const char *path, int errnum)
{
        if (o->unreadable)
                o->unreadable(path, errnum, o->userdata);
}

static int name_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collect the regular files under host (a directory); subdirectories are read after this one is
 * closed, so the depth of the tree never holds more than one directory open. */
static int walk_dir(struct walk *w, const char *host)
{
        _cleanup_free_ char **subdirs = NULL;
        size_t n_sub = 0, cap_sub = 0;
        int r = 0;
        DIR *d = opendir(host);

        if (!d) {
                w->st->unreadable++;
                report(w->o, host, errno);
                return 0;
        }
        for (;;) {
                struct dirent *de;
                struct stat sb;
                _cleanup_free_ char *path = NULL;
                const char *target;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno) {
                                w->st->unreadable++;
                                report(w->o, host, errno);
                        }
                        break;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (asprintf(&path, "%s/%s", strcmp(host, "/") == 0 ? "" : host, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                target = w->root_len ? path + w->root_len : path;
                if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
                        w->st->unreadable++;
                        report(w->o, path, errno);
                        continue;
                }
                if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode))
                        continue; /* symlinks are not followed; devices, fifos, sockets */
                if (skipped(target, w->o, true)) {
                        w->st->skipped++;
                        continue;
                }
                if (S_ISDIR(sb.st_mode)) {
                        if (n_sub == cap_sub) {
                                size_t cap = cap_sub ? 2 * cap_sub : 16;
                                char **v = realloc(subdirs, cap * sizeof(*v));

                                if (!v) {
                                        r = -ENOMEM;
                                        break;
                                }
                                subdirs = v;
                                cap_sub = cap;
                        }
                        subdirs[n_sub++] = TAKE_PTR(path);
                        continue;
                }
                if (!w->o->all_owners && sb.st_uid != 0) {
                        w->st->not_root++;
                        continue;
                }
                if (!utf8_valid(target)) {
                        w->st->bad_name++;
                        report(w->o, path, EILSEQ);
                        continue;
                }
                r = scan_list_push(&w->files, path, target);
                if (r < 0)
                        break;
        }
        closedir(d);
        if (n_sub > 1)
                qsort(subdirs, n_sub, sizeof(*subdirs), name_cmp);
        for (size_t i = 0; i < n_sub; i++) {
                if (r == 0)
                        r = walk_dir(w, subdirs[i]);
                free(subdirs[i]);
        }
        return r;
}

/* Hash one regular file without following a symlink or blocking on a fifo swapped in after the
 * walk saw a regular file. */
static int hash_one(struct vg_hash_ctx *ctx, uint8_t *buf, size_t buf_len, struct scan_file *f)
{
        _cleanup_close_ int fd = -1;
        struct stat sb;
        int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK;

        fd = open(f->host, flags | O_NOATIME);
        if (fd < 0 && errno == EPERM)
                fd = open(f->host, flags);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0)
                return -errno;
        if (!S_ISREG(sb.st_mode))
                return -EINVAL;
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        f->size = 0;
        for (;;) {
                ssize_t n = read(fd, buf, buf_len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                f->size += (uint64_t)n;
                vg_hash_update(ctx, buf, (size_t)n);
        }
        return vg_hash_final(ctx, f->digest);
}

struct pool {
        struct scan_list *files;
        enum vg_hash_alg alg;
        atomic_size_t next, done;
};

static void hash_worker(struct pool *pl, const struct vg_policy_scan_opts *progress)
{
        struct vg_hash_ctx *ctx = NULL;
        uint8_t *buf = malloc(256 * 1024);
        size_t total = pl->files->n;

        if (!buf || vg_hash_new(pl->alg, &ctx) < 0) {
                /* Mark what this worker would have taken as failed only if nobody else can
                 * do it: others keep taking items, so simply stop. */
                free(buf);
                vg_hash_free(ctx);
                return;
        }
        for (;;) {
                size_t i = atomic_fetch_add(&pl->next, 1);

                if (i >= total)
                        break;
                pl->files->v[i].err = hash_one(ctx, buf, 256 * 1024, &pl->files->v[i]);
                size_t d = atomic_fetch_add(&pl->done, 1) + 1;

                if (progress && progress->progress)
                        progress->progress(d, total, progress->userdata);
        }
        vg_hash_free(ctx);
        free(buf);
}

static void *hash_thread(void *arg)
{
        hash_worker(arg, NULL);
        return NULL;
}

static unsigned thread_count(const struct vg_policy_scan_opts *o, size_t files)
{
        long n = o->threads ? (long)o->threads : sysconf(_SC_NPROCESSORS_ONLN);

        if (n < 1)
                n = 1;
        if (n > MAX_THREADS)
                n = MAX_THREADS;
        if ((size_t)n > files)
                n = files ? (long)files : 1;
        return (unsigned)n;
}

/* Hash all files with a few threads; the calling thread works too and reports progress. */
static int hash_all(struct scan_list *files, const struct vg_policy_scan_opts *o)
{
        struct pool pl = { .files = files, .alg = o->alg };
        pthread_t th[MAX_THREADS];
        unsigned n = thread_count(o, files->n), started = 0;

        for (unsigned i = 0; i + 1 < n; i++) {
                if (pthread_create(&th[i], NULL, hash_thread, &pl) != 0)
                        break;
                started++;
        }
        hash_worker(&pl, o);
        for (unsigned i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        /* A worker that could not start its hash context leaves items unclaimed only when no
         * other worker ran; the main worker checks the same, so anything left is -ENOMEM. */
        if (atomic_load(&pl.done) < files->n)
                return -ENOMEM;
        if (o->progress)
                o->progress(files->n, files->n, o->userdata);
        return 0;
}

int vg_policy_add_rootfs(struct vg_policy *p, const char *rootfs,
                         const struct vg_policy_scan_opts *opts, struct vg_policy_scan_stats *st,
                         struct vg_error *err)
{
        struct vg_policy_scan_stats local = { 0 };
        struct walk w = { .o = opts, .st = st ? st : &local };
        _cleanup_free_ char *root = realpath(rootfs, NULL);
        struct stat sb;
        int r;

        if (!root)
                return vg_error_set(err, -errno, "rootfs %s: %s", rootfs, strerror(errno));
        if (stat(root, &sb) < 0 || !S_ISDIR(sb.st_mode))
                return vg_error_set(err, -ENOTDIR, "rootfs %s: expected a directory", rootfs);
        if (access(root, R_OK | X_OK) < 0)
                return vg_error_set(err, -errno, "rootfs %s: cannot read it: %s", rootfs,
                                    strerror(errno));
        w.root_len = strcmp(root, "/") == 0 ? 0 : strlen(root);
        r = walk_dir(&w, root);
        if (r == 0)
                r = hash_all(&w.files, opts);
        for (size_t i = 0; r == 0 && i < w.files.n; i++) {
                struct scan_file *f = &w.files.v[i];
                _cleanup_free_ char *hex = NULL;
                char *target = f->target;

                if (f->err) {
                        w.st->unreadable++;
                        report(opts, f->host, -f->err);
                        continue;
                }
                hex = vg_hex_encode(f->digest, vg_hash_size(opts->alg));
                if (!hex) {
                        r = -ENOMEM;
                        break;
                }
                spaces_to_underscores(target);
                r = add_digest_canon(p, VG_POLICY_DIGESTS, target, hex, err);
                w.st->hashed++;
                w.st->bytes += f->size;
        }
        scan_list_free(&w.files);
        if (r == -ENOMEM)
                return vg_error_set(err, r, "rootfs %s: out of memory", rootfs);
        return r;
}

/* ---- Initramfs --------------------------------------------------------------------------------
 */

/* newc hard links: the data comes with the last name of the set, the others have size 0. */
struct link {
        int64_t dev, ino;
        bool have_digest;
        uint8_t digest[VG_HASH_MAX_SIZE];
        char **names;
        size_t n_names;
};

struct links {
        struct link *v;
        size_t n;
};

static void links_free(struct links *l)
{
        for (size_t i = 0; i < l->n; i++) {
                for (size_t k = 0; k < l->v[i].n_names; k++)
                        free(l->v[i].names[k]);
                free(l->v[i].names);
        }
        free(l->v);
        l->v = NULL;
        l->n = 0;
}

static struct link *link_get(struct links *l, int64_t dev, int64_t ino)
{
        struct link *v;

        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].dev == dev && l->v[i].ino == ino)
                        return &l->v[i];
        v = realloc(l->v, (l->n + 1) * sizeof(*v));
        if (!v)
                return NULL;
        l->v = v;
        memset(&v[l->n], 0, sizeof(v[l->n]));
        v[l->n].dev = dev;
        v[l->n].ino = ino;
        return &v[l->n++];
}

static int link_add_name(struct link *k, const char *name)
{
        char **v = realloc(k->names, (k->n_names + 1) * sizeof(*v));

        if (!v)
                return -ENOMEM;
        k->names = v;
        v[k->n_names] = strdup(name);
        if (!v[k->n_names])
                return -ENOMEM;
        k->n_names++;
        return 0;
}

static int add_hashed(struct vg_policy *p, const char *target, const uint8_t *digest,
                      enum vg_hash_alg alg, struct vg_error *err)
{
        _cleanup_free_ char *hex = vg_hex_encode(digest, vg_hash_size(alg));

        if (!hex)
                return -ENOMEM;
        return add_digest_canon(p, VG_POLICY_DIGESTS, target, hex, err);
}

/* "./usr/bin/sh", "usr/bin/sh", "/usr/bin/sh" -> "/usr/bin/sh"; NULL for the root itself. */
static char *initramfs_target(const char *name)
{
        char *t;

        while (name[0] == '.' && name[1] == '/')
                name += 2;
        while (name[0] == '/')
                name++;
        if (!name[0] || strcmp(name, ".") == 0)
                return NULL;
        if (asprintf(&t, "/%s", name) < 0)
                return NULL;
        spaces_to_underscores(t);
        return t;
}

/* One archive (compressed or not) starting at data. *consumed: how many bytes of data the
 * archive took when it was uncompressed (so the next one can follow), 0 when compressed. */
static int read_one_archive(struct vg_policy *p, const uint8_t *data, size_t len, size_t base,
                            const char *name, const struct vg_policy_scan_opts *o,
                            struct vg_policy_scan_stats *st, struct links *links, size_t *consumed,
                            struct vg_error *err)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        _cleanup_(vg_hash_freep) struct vg_hash_ctx *ctx = NULL;
        int r = 0, ar;

        *consumed = 0;
        if (!a || vg_hash_new(o->alg, &ctx) < 0) {
                archive_read_free(a);
                return -ENOMEM;
        }
        archive_read_support_filter_all(a);
        archive_read_support_format_cpio(a);
        if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
                r = vg_error_set(err, -EBADMSG,
                                 "%s: offset %zu: expected a cpio archive (plain or compressed), "
                                 "found something else: %s",
                                 name, base, archive_error_string(a));
                archive_read_free(a);
                return r;
        }
        while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK || ar == ARCHIVE_WARN) {
                _cleanup_free_ char *target = NULL;
                uint8_t digest[VG_HASH_MAX_SIZE];
                uint64_t size = 0;
                const void *blk;
                size_t blen;
                la_int64_t boff;
                int dr;

                if (archive_entry_filetype(e) != AE_IFREG)
                        continue;
                target = initramfs_target(archive_entry_pathname(e));
                if (!target)
                        continue;
                if (!utf8_valid(target)) {
                        st->bad_name++;
                        report(o, target, EILSEQ);
                        continue;
                }
                if (skipped(target, o, false)) {
                        st->skipped++;
                        continue;
                }
                while ((dr = archive_read_data_block(a, &blk, &blen, &boff)) == ARCHIVE_OK) {
                        vg_hash_update(ctx, blk, blen);
                        size += blen;
                }
                if (dr != ARCHIVE_EOF) {
                        r = vg_error_set(err, -EBADMSG,
                                         "%s: offset %zu: %s: cannot read its data: %s", name, base,
                                         target, archive_error_string(a));
                        break;
                }
                vg_hash_final(ctx, digest);
                st->bytes += size;
                if (archive_entry_nlink(e) > 1 || archive_entry_hardlink(e)) {
                        struct link *k =
                            link_get(links, archive_entry_dev(e), archive_entry_ino64(e));

                        if (!k || link_add_name(k, target) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                        if (size > 0 || !k->have_digest) {
                                memcpy(k->digest, digest, sizeof(digest));
                                k->have_digest = size > 0;
                        }
                        continue;
                }
                r = add_hashed(p, target, digest, o->alg, err);
                if (r < 0)
                        break;
                st->hashed++;
        }
        if (r == 0 && ar != ARCHIVE_EOF)
                r = vg_error_set(err, -EBADMSG, "%s: offset %zu: damaged archive: %s", name, base,
                                 archive_error_string(a));
        if (r == 0 && archive_filter_count(a) == 1 &&
            archive_filter_code(a, 0) == ARCHIVE_FILTER_NONE)
                *consumed = (size_t)archive_filter_bytes(a, 0);
        archive_read_free(a);
        return r;
}

static int flush_links(struct vg_policy *p, struct links *links,
                       const struct vg_policy_scan_opts *o, struct vg_policy_scan_stats *st,
                       struct vg_error *err)
{
        uint8_t empty[VG_HASH_MAX_SIZE];
        int r = vg_hash(o->alg, "", 0, empty);

        for (size_t i = 0; r == 0 && i < links->n; i++) {
                struct link *k = &links->v[i];

                for (size_t n = 0; r == 0 && n < k->n_names; n++) {
                        r = add_hashed(p, k->names[n], k->have_digest ? k->digest : empty, o->alg,
                                       err);
                        st->hashed++;
                }
        }
        links_free(links);
        return r;
}

int vg_policy_add_initramfs_mem(struct vg_policy *p, const void *data, size_t len, const char *name,
                                const struct vg_policy_scan_opts *opts,
                                struct vg_policy_scan_stats *st, struct vg_error *err)
{
        struct vg_policy_scan_stats local = { 0 };
        struct links links = { 0 };
        const uint8_t *b = data;
        size_t off = 0;
        unsigned archives = 0;
        int r = 0;

        r = vg_dl_archive_load(err);
        if (r < 0)
                return r;
        if (!st)
                st = &local;
        while (r == 0) {
                size_t used = 0;

                /* The kernel skips zero padding between concatenated archives. */
                while (off < len && b[off] == 0)
                        off++;
                if (off >= len)
                        break;
                r = read_one_archive(p, b + off, len - off, off, name, opts, st, &links, &used,
                                     err);
                archives++;
                if (r < 0 || used == 0)
                        break;
                off += used;
        }
        if (r == 0 && archives == 0)
                r = vg_error_set(err, -EBADMSG, "%s: expected a cpio archive, found %s", name,
                                 len ? "only zero bytes" : "an empty file");
        if (r == 0)
                r = flush_links(p, &links, opts, st, err);
        links_free(&links);
        return r;
}

int vg_policy_add_initramfs(struct vg_policy *p, const char *path,
                            const struct vg_policy_scan_opts *opts, struct vg_policy_scan_stats *st,
                            struct vg_error *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        void *map;
        int r;

        if (fd < 0)
                return vg_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
                return vg_error_set(err, -EINVAL, "%s: expected a regular file", path);
        if (sb.st_size == 0)
                return vg_error_set(err, -EBADMSG,
                                    "%s: expected a cpio archive, found an empty file", path);
        map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
                return vg_error_set(err, -errno, "%s: %s", path, strerror(errno));
        r = vg_policy_add_initramfs_mem(p, map, (size_t)sb.st_size, path, opts, st, err);
        munmap(map, (size_t)sb.st_size);
        return r;
}

/* ---- Output -----------------------------------------------------------------------------------
 */

static int str_cmp(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A new array with the strings of arr sorted. */
static json_t *sorted_array(json_t *arr)
{
        size_t n = json_array_size(arr), i;
        _cleanup_free_ const char **v = calloc(n ? n : 1, sizeof(*v));
        json_t *out = json_array(), *x;

        if (!v || !out) {
                json_decref(out);
                return NULL;
        }
        json_array_foreach (arr, i, x)
                v[i] = json_string_value(x);
        qsort(v, n, sizeof(*v), str_cmp);
        for (i = 0; i < n; i++)
                if (json_array_append_new(out, json_string_nocheck(v[i])) < 0) {
                        json_decref(out);
                        return NULL;
                }
        return out;
}

/* The keys of obj, sorted (array of borrowed strings). */
static const char **sorted_keys(json_t *obj, size_t *n)
{
        const char **v = calloc(json_object_size(obj) + 1, sizeof(*v));
        const char *k;
        json_t *x;
        size_t i = 0;

        if (!v)
                return NULL;
        json_object_foreach (obj, k, x)
                v[i++] = k;
        qsort(v, i, sizeof(*v), str_cmp);
        *n = i;
        return v;
}

static json_t *sorted_map(json_t *obj)
{
        size_t n = 0;
        _cleanup_free_ const char **keys = sorted_keys(obj, &n);
        json_t *out = json_object();

        if (!keys || !out) {
                json_decref(out);
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                json_t *arr = sorted_array(json_object_get(obj, keys[i]));

                if (!arr || json_object_set_new_nocheck(out, keys[i], arr) < 0) {
                        json_decref(out);
                        return NULL;
                }
        }
        return out;
}

/* Python's str(datetime.datetime.now()): "2024-09-12 13:44:44.797331". */
static void timestamp(char *out, size_t len)
{
        const char *sde = getenv("SOURCE_DATE_EPOCH");
        struct timeval tv;
        struct tm tm;
        char *end;

        gettimeofday(&tv, NULL);
        if (sde && *sde) {
                long long v = strtoll(sde, &end, 10);

                if (!*end && v >= 0) {
                        time_t t = (time_t)v;

                        gmtime_r(&t, &tm);
                        strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
                        return;
                }
        }
        localtime_r(&tv.tv_sec, &tm);
        size_t n = strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);

        snprintf(out + n, len - n, ".%06ld", (long)tv.tv_usec);
}

int vg_policy_to_json(const struct vg_policy *p, char **out, struct vg_error *err)
{
        json_auto_t *root = NULL;
        char ts[64];

        timestamp(ts, sizeof(ts));
        /* Key order as keylime-policy writes it; jansson keeps insertion order. */
        root = json_pack(
            "{s:{s:i,s:i,s:s},s:i,s:o*,s:o*,s:o*,s:{s:o*,s:s,s:n},s:o*,s:s}", "meta", "version", 1,
            "generator", (int)p->generator, "timestamp", ts, "release", 0, "digests",
            sorted_map(p->maps[VG_POLICY_DIGESTS]), "excludes", sorted_array(p->excludes),
            "keyrings", sorted_map(p->maps[VG_POLICY_KEYRINGS]), "ima", "ignored_keyrings",
            sorted_array(p->ignored_keyrings), "log_hash_alg", vg_hash_alg_name(p->log_hash_alg),
            "dm_policy", "ima-buf", sorted_map(p->maps[VG_POLICY_IMA_BUF]), "verification-keys",
            p->verification_keys);
        if (!root || json_object_size(root) != 8 ||
            json_object_size(json_object_get(root, "ima")) != 3)
                return vg_error_set(err, -ENOMEM, "out of memory while writing the policy");
        *out = json_dumps(root, JSON_ENSURE_ASCII);
        if (!*out)
                return vg_error_set(err, -ENOMEM, "out of memory while writing the policy");
        return 0;
}

struct strbuf {
        char *p;
        size_t len, cap;
};

static int sb_add(struct strbuf *b, const char *a, const char *c, const char *d)
{
        size_t need = strlen(a) + strlen(c) + strlen(d) + 4;

        if (b->len + need > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                char *n;

                while (b->len + need > cap)
                        cap *= 2;
                n = realloc(b->p, cap);
                if (!n)
                        return -ENOMEM;
                b->p = n;
                b->cap = cap;
        }
        b->len += (size_t)sprintf(b->p + b->len, "%s  %s%s\n", a, c, d);
        return 0;
}

static int flat_map(struct strbuf *b, json_t *obj, const char *prefix, bool boot_first)
{
        size_t n = 0;
        _cleanup_free_ const char **keys = sorted_keys(obj, &n);

        if (!keys)
                return -ENOMEM;
        for (int pass = boot_first ? 0 : 1; pass < 2; pass++)
                for (size_t i = 0; i < n; i++) {
                        bool boot = strcmp(keys[i], "boot_aggregate") == 0;
                        json_auto_t *arr = NULL;
                        json_t *v;
                        size_t k;

                        if (boot_first && (pass == 0) != boot)
                                continue;
                        arr = sorted_array(json_object_get(obj, keys[i]));
                        if (!arr)
                                return -ENOMEM;
                        json_array_foreach (arr, k, v) {
                                if (sb_add(b, json_string_value(v), prefix, keys[i]) < 0)
                                        return -ENOMEM;
                        }
                }
        return 0;
}

int vg_policy_to_flat(const struct vg_policy *p, char **out, size_t *len, struct vg_error *err)
{
        struct strbuf b = { 0 };
        int r = flat_map(&b, p->maps[VG_POLICY_DIGESTS], "", true);

        if (r == 0)
                r = flat_map(&b, p->maps[VG_POLICY_KEYRINGS], "%keyring:", false);
        if (r == 0 && !b.p) {
                b.p = strdup("");
                if (!b.p)
                        r = -ENOMEM;
        }
        if (r < 0) {
                free(b.p);
                return vg_error_set(err, r, "out of memory while writing the allowlist");
        }
        *out = b.p;
        if (len)
                *len = b.len;
        return 0;
}
