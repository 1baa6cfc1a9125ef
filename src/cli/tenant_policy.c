/* vigil tenant: the policies an enrolment carries (tpm_policy, the runtime policy from
 * --runtime-policy or converted from --allowlist/--exclude as Keylime's convert_runtime_policy
 * does) and the named runtime policy commands (/allowlists/{name} on the verifier). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "commands.h"
#include "encoding.h"
#include "hash.h"
#include "mb_policy.h"
#include "quote.h"
#include "tenant.h"

#define POLICY_MAX_FILE (512u << 20) /* allowlists of whole distributions stay far below */

/* keylime/ima/ima.py RUNTIME_POLICY_GENERATOR.LegacyAllowList */
#define GENERATOR_LEGACY_ALLOWLIST 3

static int read_file(const char *path, char **out, size_t *len, struct vg_error *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        char *buf;
        size_t n = 0;

        if (fd < 0 || fstat(fd, &sb) < 0)
                return vg_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (!S_ISREG(sb.st_mode))
                return vg_error_set(err, -EINVAL, "%s: not a regular file", path);
        if ((uint64_t)sb.st_size > POLICY_MAX_FILE)
                return vg_error_set(err, -EFBIG, "%s: larger than %u MiB", path,
                                    POLICY_MAX_FILE >> 20);
        buf = malloc((size_t)sb.st_size + 1);
        if (!buf)
                return vg_error_set(err, -ENOMEM, "%s: out of memory", path);
        while (n < (size_t)sb.st_size) {
                ssize_t got = read(fd, buf + n, (size_t)sb.st_size - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0) {
                        free(buf);
                        return vg_error_set(err, -EIO, "%s: read failed", path);
                }
                n += (size_t)got;
        }
        buf[n] = '\0';
        *out = buf;
        *len = n;
        return 0;
}

/* ---- tpm_policy ---------------------------------------------------------------------------- */

/* Keylime's readPolicy: single values become lists, hex lower-cased, "mask" recomputed; the
 * IMA PCR joins the mask when a runtime policy is used. */
/* Keylime's MEASUREDBOOT_PCRS: 0-9 and 11-15 (10 is IMA's). */
#define TENANT_MB_PCRS 0xFBFFu

static int normalise_tpm_policy(const char *text, bool ima, bool mb, char **out,
                                struct vg_error *err)
{
        _cleanup_tpm_policy_ struct vg_tpm_policy *checked = NULL;
        json_error_t je;
        json_t *in, *res, *v;
        const char *key;
        uint32_t mask = 0;

        if (vg_tpm_policy_parse(text, &checked, err) < 0)
                return -EINVAL;
        in = json_loads(text, 0, &je);
        if (!json_is_object(in)) {
                json_decref(in);
                return vg_error_set(err, -EINVAL, "expected a JSON object");
        }
        res = json_object();
        json_object_foreach (in, key, v) {
                json_t *list = json_array(), *e;
                size_t i;

                if (strcmp(key, "mask") == 0)
                        continue;
                if (mb && (TENANT_MB_PCRS & (1u << atoi(key)))) { /* keylime enforce_pcrs */
                        json_decref(list);
                        json_decref(res);
                        json_decref(in);
                        return vg_error_set(err, -EINVAL,
                                            "PCR %s is checked by the measured boot policy; it "
                                            "cannot have values in tpm_policy too",
                                            key);
                }
                mask |= 1u << atoi(key);
                if (json_is_string(v))
                        v = json_pack("[O]", v);
                else
                        json_incref(v);
                json_array_foreach (v, i, e) {
                        char *lower = strdup(json_string_value(e) ? json_string_value(e) : "");
                        for (char *p = lower; p && *p; p++)
                                *p = (char)tolower((unsigned char)*p);
                        json_array_append_new(list, json_string(lower ? lower : ""));
                        free(lower);
                }
                json_decref(v);
                json_object_set_new(res, key, list);
        }
        json_decref(in);
        if (ima)
                mask |= 1u << VG_PCR_IMA;
        if (mb)
                mask |= TENANT_MB_PCRS;
        char hex[16];
        snprintf(hex, sizeof(hex), "0x%x", mask);
        json_object_set_new(res, "mask", json_string(hex));
        *out = json_dumps(res, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(res);
        return *out ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
}

/* ---- runtime policy from a flat allowlist ---------------------------------------------------- */

static bool hex_digest(const char *s, size_t len)
{
        if (len < 32 || len > 128 || len % 2)
                return false;
        for (size_t i = 0; i < len; i++)
                if (vg_hex_digit_value((unsigned char)s[i]) < 0)
                        return false;
        return true;
}

static json_t *empty_policy(void)
{
        char ts[64];
        struct timespec now;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &now);
        localtime_r(&now.tv_sec, &tm);
        size_t n = strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(ts + n, sizeof(ts) - n, ".%06ld", now.tv_nsec / 1000);
        return json_pack("{s:{s:i, s:i, s:s}, s:i, s:{}, s:[], s:{}, s:{s:[], s:s, s:n}, s:{}, "
                         "s:s}",
                         "meta", "version", 1, "generator", GENERATOR_LEGACY_ALLOWLIST, "timestamp",
                         ts, "release", 0, "digests", "excludes", "keyrings", "ima",
                         "ignored_keyrings", "log_hash_alg", "sha1", "dm_policy", "ima-buf",
                         "verification-keys", "");
}

static int add_flat_lines(json_t *policy, const char *path, char *text, struct vg_error *err)
{
        json_t *digests = json_object_get(policy, "digests");
        json_t *keyrings = json_object_get(policy, "keyrings");
        unsigned long line = 0;
        char *save = NULL;

        for (char *p = text; p; p = save) {
                char *nl = strchr(p, '\n'), *hash, *name, *end;
                size_t hlen;

                save = nl ? nl + 1 : NULL;
                if (nl)
                        *nl = '\0';
                line++;
                while (isspace((unsigned char)*p))
                        p++;
                end = p + strlen(p);
                while (end > p && isspace((unsigned char)end[-1]))
                        *--end = '\0';
                if (!*p || *p == '#')
                        continue;
                hash = p;
                hlen = strcspn(p, " \t");
                name = p + hlen;
                while (isspace((unsigned char)*name))
                        *name++ = '\0';
                if (!*name)
                        return vg_error_set(err, -EINVAL,
                                            "%s:%lu: expected a digest and a file path, found "
                                            "one field",
                                            path, line);
                hash[hlen] = '\0';
                if (!hex_digest(hash, hlen))
                        return vg_error_set(err, -EINVAL,
                                            "%s:%lu: expected a hex digest of 32 to 128 digits, "
                                            "found '%.40s'",
                                            path, line, hash);
                for (char *c = hash; *c; c++)
                        *c = (char)tolower((unsigned char)*c);
                json_t *table = digests;
                if (strncmp(name, "%keyring:", 9) == 0) {
                        table = keyrings;
                        name += 9;
                }
                json_t *list = json_object_get(table, name);
                if (!list) {
                        list = json_array();
                        json_object_set_new(table, name, list);
                }
                json_array_append_new(list, json_string(hash));
        }
        return 0;
}

int tenant_policy_from_lists(const char *allowlist_path, const char *exclude_path, char **json,
                             struct vg_error *err)
{
        _cleanup_free_ char *text = NULL, *excl = NULL;
        size_t len = 0, elen = 0;
        json_t *policy = empty_policy(), *legacy;
        int r;

        if ((r = read_file(allowlist_path, &text, &len, err)) < 0)
                goto out;
        legacy = json_loadb(text, len, 0, NULL);
        if (json_is_object(legacy)) {
                /* The JSON allowlist of Keylime before 6.6: {"hashes": {path: [hex]}, ...}. */
                json_t *hashes = json_object_get(legacy, "hashes");
                static const char *const keep[] = { "release", "excludes", "keyrings",
                                                    "ima",     "ima-buf",  "verification-keys" };

                if (json_object_get(legacy, "digests")) {
                        json_decref(legacy);
                        r = vg_error_set(err, -EINVAL,
                                         "%s is already a runtime policy: give it with "
                                         "--runtime-policy",
                                         allowlist_path);
                        goto out;
                }
                if (!json_is_object(hashes)) {
                        json_decref(legacy);
                        r = vg_error_set(err, -EINVAL,
                                         "%s: a JSON allowlist needs an object \"hashes\"",
                                         allowlist_path);
                        goto out;
                }
                json_object_set(policy, "digests", hashes);
                for (size_t i = 0; i < VG_ARRAY_SIZE(keep); i++)
                        if (json_object_get(legacy, keep[i]))
                                json_object_set(policy, keep[i], json_object_get(legacy, keep[i]));
                json_decref(legacy);
        } else {
                json_decref(legacy);
                if ((r = add_flat_lines(policy, allowlist_path, text, err)) < 0)
                        goto out;
        }
        if (exclude_path) {
                json_t *excludes = json_object_get(policy, "excludes");
                char *save = NULL;

                if ((r = read_file(exclude_path, &excl, &elen, err)) < 0)
                        goto out;
                for (char *p = excl; p; p = save) {
                        char *nl = strchr(p, '\n'), *end;

                        save = nl ? nl + 1 : NULL;
                        if (nl)
                                *nl = '\0';
                        while (isspace((unsigned char)*p))
                                p++;
                        end = p + strlen(p);
                        while (end > p && isspace((unsigned char)end[-1]))
                                *--end = '\0';
                        if (*p && *p != '#')
                                json_array_append_new(excludes, json_string(p));
                }
        }
        *json = json_dumps(policy, JSON_COMPACT | JSON_PRESERVE_ORDER);
        r = *json ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
out:
        json_decref(policy);
        return r;
}

/* ---- preparing an enrolment ---------------------------------------------------------------- */

static int b64_file(const char *path, char **out, struct vg_error *err)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = read_file(path, &data, &len, err);

        if (r < 0)
                return r;
        *out = vg_b64_encode(data, len, VG_B64_STD);
        return *out ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
}

static int runtime_policy_b64(struct tenant *t, struct vg_error *err)
{
        _cleanup_free_ char *json = NULL;
        size_t len = 0;
        int r;

        if (t->a.allowlist) {
                if ((r = tenant_policy_from_lists(t->a.allowlist, t->a.exclude, &json, err)) < 0)
                        return r;
                len = strlen(json);
        } else if (t->a.runtime_policy) {
                json_error_t je;
                json_t *j;

                if ((r = read_file(t->a.runtime_policy, &json, &len, err)) < 0)
                        return r;
                j = json_loadb(json, len, 0, &je);
                if (!json_is_object(j)) {
                        json_decref(j);
                        return vg_error_set(err, -EINVAL,
                                            "%s:%d: not a runtime policy (a JSON object): %s",
                                            t->a.runtime_policy, je.line, je.text);
                }
                json_decref(j);
                if (t->a.runtime_policy_checksum) {
                        uint8_t d[32];
                        _cleanup_free_ char *hex = NULL;

                        vg_hash(VG_HASH_SHA256, json, len, d);
                        hex = vg_hex_encode(d, sizeof(d));
                        if (!hex || strcasecmp(hex, t->a.runtime_policy_checksum) != 0)
                                return vg_error_set(err, -EINVAL,
                                                    "checksum of runtime policy %s does not "
                                                    "match: expected %s, calculated %s",
                                                    t->a.runtime_policy,
                                                    t->a.runtime_policy_checksum, hex ? hex : "?");
                }
        } else {
                t->runtime_policy_b64 = strdup("");
                return t->runtime_policy_b64 ? 0 : -ENOMEM;
        }
        t->runtime_policy_b64 = vg_b64_encode(json, len, VG_B64_STD);
        return t->runtime_policy_b64 ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
}

/* --mb-policy FILE: a refstate, checked here so that a bad one is named before any request
 * (the error names the JSON path). */
static int mb_policy_read(struct tenant *t, struct vg_error *err)
{
        _cleanup_free_ char *text = NULL;
        struct vg_mb_policy *p = NULL;
        size_t len = 0;
        int r;

        if ((r = read_file(t->a.mb_policy, &text, &len, err)) < 0)
                return r;
        if (memchr(text, 0, len))
                return vg_error_set(err, -EINVAL, "%s: contains a NUL byte", t->a.mb_policy);
        if ((r = vg_mb_policy_parse(text, len, &p, err)) < 0) {
                vg_error_prefix(err, "%s: ", t->a.mb_policy);
                return r;
        }
        vg_mb_policy_free(p);
        free(t->mb_policy);
        t->mb_policy = TAKE_PTR(text);
        return 0;
}

int tenant_policies_prepare(struct tenant *t)
{
        struct vg_error err = { 0 };
        const char *tp = t->a.tpm_policy ? t->a.tpm_policy : vg_config_string(t->cfg, "tpm_policy");
        bool ima = t->a.allowlist || t->a.runtime_policy || t->a.runtime_policy_name;
        bool mb = t->a.mb_policy || t->a.mb_policy_name;

        if (t->a.mb_policy && mb_policy_read(t, &err) < 0)
                return tenant_fail("--mb-policy: %s", vg_error_str(&err));
        if (normalise_tpm_policy(tp && *tp ? tp : "{}", ima, mb, &t->tpm_policy, &err) < 0)
                return tenant_fail("%s: %s", t->a.tpm_policy ? "--tpm_policy" : "tpm_policy",
                                   vg_error_str(&err));
        if (runtime_policy_b64(t, &err) < 0)
                return tenant_fail("%s: %s", t->a.allowlist ? "--allowlist" : "--runtime-policy",
                                   vg_error_str(&err));
        if (t->a.runtime_policy_sig_key) {
                if (b64_file(t->a.runtime_policy_sig_key, &t->runtime_policy_key, &err) < 0)
                        return tenant_fail("--runtime-policy-sig-key: %s", vg_error_str(&err));
        } else if (!(t->runtime_policy_key = strdup(""))) {
                return tenant_fail("out of memory");
        }
        return 0;
}

/* ---- named runtime policies ------------------------------------------------------------------ */

static bool valid_name(const char *s)
{
        if (!*s || strlen(s) > 255)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
                        return false;
        return true;
}

/* The part of every named-policy command after the body is built: the request to
 * /v<api>/<collection>/[<name>], keylime_tenant's "<shown> command response" line for show and
 * list, the failure naming method, URL and status, the JSON printed for show and list, and
 * "<what> <name> added|updated|deleted on Verifier (...)" otherwise. Consumes body. */
static int named_policy_request(struct tenant *t, const char *verb, const char *method,
                                const char *collection, const char *name, json_t *body,
                                const char *shown, const char *what)
{
        bool list = strncmp(verb, "list", 4) == 0, show = strncmp(verb, "show", 4) == 0;
        struct vg_error err = { 0 };
        json_t *reply = NULL;
        char path[400];
        int st;

        if (list)
                snprintf(path, sizeof(path), "/v%s/%s/", tenant_verifier_api(t), collection);
        else
                snprintf(path, sizeof(path), "/v%s/%s/%s", tenant_verifier_api(t), collection,
                         name);
        st = tenant_request(t, t->tls, method, t->verifier_base, path, body, &reply, &err);
        json_decref(body);
        if (st < 0)
                return tenant_fail("%s: %s", verb, vg_error_str(&err));
        if (show || list)
                tenant_say("%s command response: %d.", show ? shown : "list", st);
        if (st >= 400) {
                tenant_fail("%s: %s %s%s: %d %s", verb, method, t->verifier_base, path, st,
                            tenant_status_text(reply));
                json_decref(reply);
                return 1;
        }
        if (show || list)
                tenant_print_json(reply ? reply : json_null());
        else
                tenant_say("%s %s %s on Verifier (%s)", what, name,
                           strcmp(method, "POST") == 0  ? "added"
                           : strcmp(method, "PUT") == 0 ? "updated"
                                                        : "deleted",
                           t->verifier_base + strlen("https://"));
        json_decref(reply);
        return 0;
}

int tenant_cmd_runtime_policy(struct tenant *t, const char *verb)
{
        const char *name = t->a.runtime_policy_name;
        bool list = strcmp(verb, "listruntimepolicy") == 0;
        bool add = strcmp(verb, "addruntimepolicy") == 0;
        bool update = strcmp(verb, "updateruntimepolicy") == 0;
        bool show = strcmp(verb, "showruntimepolicy") == 0;
        const char *method = add ? "POST" : update ? "PUT" : show || list ? "GET" : "DELETE";
        json_t *body = NULL;

        if (!list && !name)
                return cli_usage_error("tenant", "--runtime-policy-name is required for %s", verb);
        if (!list && !valid_name(name))
                return cli_usage_error("tenant",
                                       "--runtime-policy-name: expected letters, digits, '-', "
                                       "'_' and '.', found '%s'",
                                       name);
        if (add || update) {
                int r = tenant_policies_prepare(t);
                if (r)
                        return r;
                body =
                    json_pack("{s:s, s:s, s:s}", "tpm_policy", t->tpm_policy, "runtime_policy",
                              t->runtime_policy_b64, "runtime_policy_key", t->runtime_policy_key);
        }
        return named_policy_request(t, verb, method, "allowlists", name, body, "Show allowlist",
                                    "runtime policy");
}

/* ---- named measured boot policies (keylime_tenant -c addmbpolicy ...) ------------------------ */

int tenant_cmd_mb_policy(struct tenant *t, const char *verb)
{
        const char *name = t->a.mb_policy_name;
        bool list = strcmp(verb, "listmbpolicy") == 0;
        bool add = strcmp(verb, "addmbpolicy") == 0;
        bool update = strcmp(verb, "updatembpolicy") == 0;
        bool show = strcmp(verb, "showmbpolicy") == 0;
        const char *method = add ? "POST" : update ? "PUT" : show || list ? "GET" : "DELETE";
        struct vg_error err = { 0 };
        json_t *body = NULL;

        if (!list && !name)
                return cli_usage_error("tenant", "--mb-policy-name is required for %s", verb);
        if (!list && !valid_name(name))
                return cli_usage_error("tenant",
                                       "--mb-policy-name: expected letters, digits, '-', '_' "
                                       "and '.', found '%s'",
                                       name);
        if (add || update) {
                if (!t->a.mb_policy)
                        return cli_usage_error("tenant", "--mb-policy FILE is required for %s",
                                               verb);
                if (mb_policy_read(t, &err) < 0)
                        return tenant_fail("--mb-policy: %s", vg_error_str(&err));
                /* keylime_tenant sends the refstate as a JSON string. */
                body = json_pack("{s:s}", "mb_policy", t->mb_policy);
        }
        return named_policy_request(t, verb, method, "mbpolicies", name, body, "Show mb_policy",
                                    "measured boot policy");
}
