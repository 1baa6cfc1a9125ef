/* vigil: a pin's configuration rebuilt from a Clevis JWE header, as `clevis luks list` prints
 * it (clevis_luks_print_pin_config in clevis-luks-common-functions); regen rebinds with it. */
#include <errno.h>
#include <string.h>

#include "cleanup.h"
#include "pin_private.h"

/* sss inside sss inside ...: deeper than any real policy, shallow enough for the stack. */
#define MAX_DEPTH 8

static int config_of(const char *jwe, size_t jwe_len, unsigned depth, char **pin, json_t **cfg,
                     struct vg_error *err);

/* tang: {"url":...} only; clevis luks list shows neither thp nor adv (the adv pinned in the
 * header is what decryption trusts; a regen fetches the current one). */
static int tang_config(const json_t *tang, json_t **cfg, struct vg_error *err)
{
        const json_t *url = json_object_get(tang, "url");

        if (!json_is_string(url) || json_string_length(url) == 0)
                return vg_error_set(err, -EINVAL,
                                    "JWE header clevis.tang.url: missing or not a string");
        *cfg = json_pack("{s:O}", "url", url);
        return *cfg ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
}

/* sss: {"t":N,"pins":{"tang":[...],"tpm2":[...],"sss":{...}}} in clevis's order; several
 * nested sss become an array (clevis would show only the last one). */
static int sss_config(const json_t *sss, unsigned depth, json_t **cfg, struct vg_error *err)
{
        const json_t *t = json_object_get(sss, "t"), *jwes = json_object_get(sss, "jwe"), *v;
        json_auto_t *tang = json_array(), *tpm2 = json_array(), *nested = json_array();
        json_auto_t *pins = json_object(), *out = NULL;
        size_t i;
        int r;

        if (!tang || !tpm2 || !nested || !pins)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if (!json_is_integer(t) || json_integer_value(t) < 1)
                return vg_error_set(err, -EINVAL,
                                    "JWE header clevis.sss.t: missing or not a positive integer");
        if (!json_is_array(jwes) || json_array_size(jwes) == 0)
                return vg_error_set(err, -EINVAL,
                                    "JWE header clevis.sss.jwe: missing or not a non-empty array");
        if ((size_t)json_integer_value(t) > json_array_size(jwes))
                return vg_error_set(err, -EINVAL,
                                    "JWE header clevis.sss: threshold %lld above %zu shares",
                                    (long long)json_integer_value(t), json_array_size(jwes));
        json_array_foreach (jwes, i, v) {
                _cleanup_free_ char *cpin = NULL;
                json_t *ccfg = NULL;
                json_t *group;

                if (!json_is_string(v))
                        return vg_error_set(err, -EINVAL,
                                            "JWE header clevis.sss.jwe[%zu]: not a string", i);
                r = config_of(json_string_value(v), json_string_length(v), depth + 1, &cpin, &ccfg,
                              err);
                if (r < 0) {
                        vg_error_prefix(err, "clevis.sss.jwe[%zu]: ", i);
                        return r;
                }
                group = strcmp(cpin, "tang") == 0   ? tang
                        : strcmp(cpin, "tpm2") == 0 ? tpm2
                                                    : nested;
                if (json_array_append_new(group, ccfg) < 0)
                        return vg_error_set(err, -ENOMEM, "out of memory");
        }
        if ((json_array_size(tang) && json_object_set(pins, "tang", tang) < 0) ||
            (json_array_size(tpm2) && json_object_set(pins, "tpm2", tpm2) < 0) ||
            (json_array_size(nested) == 1 &&
             json_object_set(pins, "sss", json_array_get(nested, 0)) < 0) ||
            (json_array_size(nested) > 1 && json_object_set(pins, "sss", nested) < 0))
                return vg_error_set(err, -ENOMEM, "out of memory");
        out = json_pack("{s:I, s:O}", "t", (json_int_t)json_integer_value(t), "pins", pins);
        if (!out)
                return vg_error_set(err, -ENOMEM, "out of memory");
        *cfg = TAKE_PTR(out);
        return 0;
}

static int config_of(const char *jwe, size_t jwe_len, unsigned depth, char **pin, json_t **cfg,
                     struct vg_error *err)
{
        struct vg_jwe parsed = { 0 };
        const json_t *clevis, *p, *body;
        const char *name;
        json_t *c = NULL;
        int r;

        if (depth > MAX_DEPTH)
                return vg_error_set(err, -ELOOP, "sss pins nested deeper than %d", MAX_DEPTH);
        r = vg_jwe_parse(jwe, jwe_len, &parsed, err);
        if (r < 0)
                return r;
        clevis = json_object_get(parsed.header, "clevis");
        p = json_object_get(clevis, "pin");
        if (!json_is_object(clevis) || !json_is_string(p)) {
                vg_jwe_clear(&parsed);
                return vg_error_set(err, -EINVAL, "JWE header clevis.pin: missing or not a string");
        }
        name = json_string_value(p);
        body = json_object_get(clevis, name);
        if (strcmp(name, "tang") != 0 && strcmp(name, "sss") != 0 && strcmp(name, "tpm2") != 0)
                r = vg_error_set(err, -ENOTSUP, "JWE header clevis.pin: unknown pin \"%.64s\"",
                                 name);
        else if (!json_is_object(body))
                r = vg_error_set(err, -EINVAL, "JWE header clevis.%s: missing or not a JSON object",
                                 name);
        else if (strcmp(name, "tang") == 0)
                r = tang_config(body, &c, err);
        else if (strcmp(name, "sss") == 0)
                r = sss_config(body, depth, &c, err);
        else
                r = vg_pin_tpm2_config(body, &c, err);
        if (r >= 0 && !(*pin = strdup(name))) {
                json_decref(c);
                r = vg_error_set(err, -ENOMEM, "out of memory");
        }
        vg_jwe_clear(&parsed);
        if (r < 0)
                return r;
        *cfg = c;
        return 0;
}

int vg_pin_config(const char *jwe, size_t jwe_len, char **pin, json_t **cfg, struct vg_error *err)
{
        return config_of(jwe, jwe_len, 0, pin, cfg, err);
}
