/* vigil: Keylime's measured-boot refstate (keylime/mba/elchecking/example.py) read strictly from
 * JSON and evaluated natively against a parsed event log; and its generator (create_mb_policy). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "cleanup.h"
#include "encoding.h"
#include "hash.h"
#include "mb_policy.h"

#define SHA256_LEN 32

/* ---- The parsed refstate ------------------------------------------------------------------- */

struct mb_digest {
        uint16_t alg_id;
        uint16_t len;
        uint8_t d[VG_EVLOG_DIGEST_MAX];
};

/* One digest map ({"sha256": "0x.."}) or the union of several (mokdig). */
struct mb_digests {
        size_t n;
        struct mb_digest *v;
};

struct mb_sig {
        struct vg_efi_guid owner;
        struct vg_efi_guid owner_swapped; /* the same text as tpm2-tools < 5.2 printed it */
        uint8_t *data;
        size_t len;
};

struct mb_sigs {
        size_t n;
        struct mb_sig *v;
};

struct mb_scrtm_bios {
        struct mb_digests scrtm;
        size_t n_fw;
        struct mb_digests *fw;
};

struct mb_kernel {
        uint8_t shim[SHA256_LEN], grub[SHA256_LEN], kernel[SHA256_LEN], vmlinuz[SHA256_LEN],
            initrd[SHA256_LEN];
        bool has_kernel, has_vmlinuz;
        char *cmdline;
        pcre2_code *re; /* "kernel_cmdline: " + cmdline, matched whole */
};

struct vg_mb_policy {
        json_t *src;
        bool empty;
        bool has_secureboot;
        size_t n_scrtm_bios;
        struct mb_scrtm_bios *scrtm_bios;
        struct mb_sigs pk, kek, db, dbx, vendor_db;
        struct mb_digests mokdig, mokxdig;
        size_t n_kernels;
        struct mb_kernel *kernels;
};

static void digests_clear(struct mb_digests *d)
{
        free(d->v);
        d->v = NULL;
        d->n = 0;
}

static void sigs_clear(struct mb_sigs *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i].data);
        free(s->v);
        s->v = NULL;
        s->n = 0;
}

void vg_mb_policy_free(struct vg_mb_policy *p)
{
        if (!p)
                return;
        json_decref(p->src);
        for (size_t i = 0; i < p->n_scrtm_bios; i++) {
                digests_clear(&p->scrtm_bios[i].scrtm);
                for (size_t j = 0; j < p->scrtm_bios[i].n_fw; j++)
                        digests_clear(&p->scrtm_bios[i].fw[j]);
                free(p->scrtm_bios[i].fw);
        }
        free(p->scrtm_bios);
        sigs_clear(&p->pk);
        sigs_clear(&p->kek);
        sigs_clear(&p->db);
        sigs_clear(&p->dbx);
        sigs_clear(&p->vendor_db);
        digests_clear(&p->mokdig);
        digests_clear(&p->mokxdig);
        for (size_t i = 0; i < p->n_kernels; i++) {
                free(p->kernels[i].cmdline);
                pcre2_code_free(p->kernels[i].re);
        }
        free(p->kernels);
        free(p);
}
VG_DEFINE_CLEANUP_FUNC(struct vg_mb_policy, vg_mb_policy_free)

bool vg_mb_policy_is_empty(const struct vg_mb_policy *p)
{
        return p->empty;
}

bool vg_mb_policy_has_secureboot(const struct vg_mb_policy *p)
{
        return p->has_secureboot;
}

size_t vg_mb_policy_kernel_count(const struct vg_mb_policy *p)
{
        return p->n_kernels;
}

json_t *vg_mb_policy_to_json(const struct vg_mb_policy *p)
{
        return json_deep_copy(p->src);
}

/* ---- Reading --------------------------------------------------------------------------------- */

static size_t alg_digest_size(uint16_t alg_id)
{
        switch (alg_id) {
        case VG_EVLOG_ALG_SHA1:
                return 20;
        case VG_EVLOG_ALG_SHA256:
        case VG_EVLOG_ALG_SM3_256:
        case VG_EVLOG_ALG_SHA3_256:
                return 32;
        case VG_EVLOG_ALG_SHA384:
        case VG_EVLOG_ALG_SHA3_384:
                return 48;
        case VG_EVLOG_ALG_SHA512:
        case VG_EVLOG_ALG_SHA3_512:
                return 64;
        default:
                return 0;
        }
}

/* A short rendering of a JSON value for error messages. */
static void json_brief(const json_t *v, char *out, size_t size)
{
        if (!v) {
                snprintf(out, size, "nothing");
                return;
        }
        switch (json_typeof(v)) {
        case JSON_STRING: {
                const char *s = json_string_value(v);
                size_t n = strlen(s);

                snprintf(out, size, "\"%.*s%s\"", n > 40 ? 40 : (int)n, s, n > 40 ? "..." : "");
                return;
        }
        case JSON_OBJECT:
                snprintf(out, size, "an object");
                return;
        case JSON_ARRAY:
                snprintf(out, size, "a list");
                return;
        case JSON_INTEGER:
        case JSON_REAL:
                snprintf(out, size, "a number");
                return;
        case JSON_TRUE:
        case JSON_FALSE:
                snprintf(out, size, "%s", json_is_true(v) ? "true" : "false");
                return;
        case JSON_NULL:
                snprintf(out, size, "null");
                return;
        }
        snprintf(out, size, "?");
}

static int bad(struct vg_error *err, const char *path, const char *expected, const json_t *found)
{
        char b[64];

        json_brief(found, b, sizeof(b));
        return vg_error_set(err, -EINVAL, "%s: expected %s, found %s", path, expected, b);
}

/* "0x" + lowercase hex of exactly want bytes (want 0: any even non-zero length). */
static int read_hex(const json_t *v, const char *path, size_t want, uint8_t **owned, uint8_t *buf,
                    size_t *len, struct vg_error *err)
{
        char expected[96];
        const char *s;
        size_t n;

        if (want)
                snprintf(expected, sizeof(expected), "\"0x\" and %zu lowercase hex digits",
                         want * 2);
        else
                snprintf(expected, sizeof(expected), "\"0x\" and lowercase hex digits");
        if (!json_is_string(v))
                return bad(err, path, expected, v);
        s = json_string_value(v);
        n = json_string_length(v);
        if (n < 4 || s[0] != '0' || s[1] != 'x' || (n - 2) % 2 || (want && n - 2 != want * 2))
                return bad(err, path, expected, v);
        for (size_t i = 2; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return bad(err, path, expected, v);
        if (owned) {
                size_t out_len;
                int r = vg_hex_decode(s + 2, n - 2, owned, &out_len);

                if (r < 0)
                        return vg_error_set(err, r, "%s: cannot decode hex", path);
                *len = out_len;
                return 0;
        }
        *len = want;
        return vg_hex_decode_exact(s + 2, n - 2, buf, want) < 0
                   ? vg_error_set(err, -EINVAL, "%s: cannot decode hex", path)
                   : 0;
}

/* {"sha256": "0x..", ...}: appended to d. */
static int read_digest_map(const json_t *v, const char *path, struct mb_digests *d,
                           struct vg_error *err)
{
        const char *alg;
        json_t *hex;

        if (!json_is_object(v))
                return bad(err, path, "a digest object like {\"sha256\": \"0x...\"}", v);
        json_object_foreach ((json_t *)v, alg, hex) {
                char sub[256];
                uint16_t alg_id;
                size_t size, len;
                struct mb_digest *nv;

                snprintf(sub, sizeof(sub), "%s.%s", path, alg);
                if (vg_evlog_alg_from_name(alg, &alg_id) < 0 ||
                    (size = alg_digest_size(alg_id)) == 0)
                        return vg_error_set(err, -EINVAL,
                                            "%s: unknown hash algorithm \"%s\" (expected sha1, "
                                            "sha256, sha384, sha512 or sm3_256)",
                                            path, alg);
                nv = realloc(d->v, (d->n + 1) * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                d->v = nv;
                memset(&d->v[d->n], 0, sizeof(d->v[d->n]));
                d->v[d->n].alg_id = alg_id;
                d->v[d->n].len = (uint16_t)size;
                if (read_hex(hex, sub, size, NULL, d->v[d->n].d, &len, err) < 0)
                        return -EINVAL;
                d->n++;
        }
        return 0;
}

static void guid_swap(const struct vg_efi_guid *in, struct vg_efi_guid *out)
{
        static const int order[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };

        for (int i = 0; i < 16; i++)
                out->b[i] = in->b[order[i]];
}

/* [{"SignatureOwner": guid, "SignatureData": "0x.."}] */
static int read_sigs(const json_t *v, const char *path, struct mb_sigs *s, struct vg_error *err)
{
        size_t i;
        json_t *e;

        if (!json_is_array(v))
                return bad(err, path,
                           "a list of {\"SignatureOwner\": GUID, \"SignatureData\": \"0x...\"}", v);
        s->v = calloc(json_array_size(v) + 1, sizeof(*s->v));
        if (!s->v)
                return -ENOMEM;
        json_array_foreach (v, i, e) {
                char sub[256], key_path[300];
                const char *key;
                json_t *val, *owner, *data;
                struct mb_sig *sig = &s->v[s->n];

                snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
                if (!json_is_object(e))
                        return bad(err, sub, "a signature object", e);
                json_object_foreach (e, key, val) {
                        if (strcmp(key, "SignatureOwner") && strcmp(key, "SignatureData"))
                                return vg_error_set(err, -EINVAL,
                                                    "%s: unknown key \"%s\" (expected "
                                                    "SignatureOwner and SignatureData)",
                                                    sub, key);
                }
                owner = json_object_get(e, "SignatureOwner");
                data = json_object_get(e, "SignatureData");
                snprintf(key_path, sizeof(key_path), "%s.SignatureOwner", sub);
                if (!json_is_string(owner) ||
                    vg_efi_guid_parse(json_string_value(owner), &sig->owner) < 0)
                        return bad(err, key_path,
                                   "a GUID like 8be4df61-93ca-11d2-aa0d-00e098032b8c", owner);
                guid_swap(&sig->owner, &sig->owner_swapped);
                snprintf(key_path, sizeof(key_path), "%s.SignatureData", sub);
                if (read_hex(data, key_path, 0, &sig->data, NULL, &sig->len, err) < 0)
                        return -EINVAL;
                s->n++;
        }
        return 0;
}

static int read_digest_list(const json_t *v, const char *path, struct mb_digests *d,
                            struct vg_error *err)
{
        size_t i;
        json_t *e;

        if (!json_is_array(v))
                return bad(err, path, "a list of digest objects like {\"sha256\": \"0x...\"}", v);
        json_array_foreach (v, i, e) {
                char sub[256];
                int r;

                snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
                r = read_digest_map(e, sub, d, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int read_scrtm_bios(const json_t *v, struct vg_mb_policy *p, struct vg_error *err)
{
        size_t i;
        json_t *e;

        if (!json_is_array(v))
                return bad(err, "refstate.scrtm_and_bios",
                           "a list of {\"scrtm\": digest, \"platform_firmware\": [digests]}", v);
        p->scrtm_bios = calloc(json_array_size(v) + 1, sizeof(*p->scrtm_bios));
        if (!p->scrtm_bios)
                return -ENOMEM;
        json_array_foreach (v, i, e) {
                struct mb_scrtm_bios *sb = &p->scrtm_bios[i];
                char sub[128], path[192];
                const char *key;
                json_t *val, *fw;
                size_t j;
                int r;

                p->n_scrtm_bios = i + 1;
                snprintf(sub, sizeof(sub), "refstate.scrtm_and_bios[%zu]", i);
                if (!json_is_object(e))
                        return bad(err, sub, "an object with scrtm and platform_firmware", e);
                json_object_foreach (e, key, val) {
                        if (strcmp(key, "scrtm") && strcmp(key, "platform_firmware"))
                                return vg_error_set(err, -EINVAL,
                                                    "%s: unknown key \"%s\" (expected scrtm and "
                                                    "platform_firmware)",
                                                    sub, key);
                }
                snprintf(path, sizeof(path), "%s.scrtm", sub);
                if (!json_object_get(e, "scrtm"))
                        return vg_error_set(err, -EINVAL,
                                            "%s: missing (Keylime needs the EV_S_CRTM_VERSION "
                                            "digest)",
                                            path);
                r = read_digest_map(json_object_get(e, "scrtm"), path, &sb->scrtm, err);
                if (r < 0)
                        return r;
                snprintf(path, sizeof(path), "%s.platform_firmware", sub);
                fw = json_object_get(e, "platform_firmware");
                if (!json_is_array(fw))
                        return bad(err, path, "a list of digest objects", fw);
                sb->fw = calloc(json_array_size(fw) + 1, sizeof(*sb->fw));
                if (!sb->fw)
                        return -ENOMEM;
                json_array_foreach (fw, j, val) {
                        char fpath[224];

                        sb->n_fw = j + 1;
                        snprintf(fpath, sizeof(fpath), "%s[%zu]", path, j);
                        r = read_digest_map(val, fpath, &sb->fw[j], err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int read_kernel_digest(const json_t *k, const char *sub, const char *name, uint8_t *out,
                              bool required, bool *present, struct vg_error *err)
{
        char path[192];
        json_t *v = json_object_get(k, name);
        size_t len;

        snprintf(path, sizeof(path), "%s.%s", sub, name);
        if (!v) {
                if (required)
                        return vg_error_set(err, -EINVAL, "%s: missing", path);
                if (present)
                        *present = false;
                return 0;
        }
        if (read_hex(v, path, SHA256_LEN, NULL, out, &len, err) < 0)
                return -EINVAL;
        if (present)
                *present = true;
        return 0;
}

static int compile_cmdline(struct mb_kernel *k, const char *path, struct vg_error *err)
{
        static const char prefix[] = "kernel_cmdline: ";
        size_t n = strlen(k->cmdline);
        _cleanup_free_ char *pat = malloc(sizeof(prefix) + n);
        int code;
        PCRE2_SIZE at;

        if (!pat)
                return -ENOMEM;
        memcpy(pat, prefix, sizeof(prefix) - 1);
        memcpy(pat + sizeof(prefix) - 1, k->cmdline, n + 1);
        /* Python's re.fullmatch: the whole string, '.' not matching a newline. */
        k->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                              PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_DOLLAR_ENDONLY, &code, &at,
                              NULL);
        if (!k->re) {
                PCRE2_UCHAR msg[160];

                pcre2_get_error_message(code, msg, sizeof(msg));
                return vg_error_set(err, -EINVAL, "%s: not a valid regular expression: %s at %zu",
                                    path, (const char *)msg,
                                    at >= sizeof(prefix) - 1 ? (size_t)at - (sizeof(prefix) - 1)
                                                             : 0);
        }
        return 0;
}

static int read_kernels(const json_t *v, struct vg_mb_policy *p, struct vg_error *err)
{
        static const char *const known[] = { "shim_authcode_sha256",   "grub_authcode_sha256",
                                             "kernel_authcode_sha256", "vmlinuz_plain_sha256",
                                             "initrd_plain_sha256",    "kernel_cmdline" };
        size_t i;
        json_t *e;

        if (!json_is_array(v))
                return bad(err, "refstate.kernels", "a list of kernel objects", v);
        p->kernels = calloc(json_array_size(v) + 1, sizeof(*p->kernels));
        if (!p->kernels)
                return -ENOMEM;
        json_array_foreach (v, i, e) {
                struct mb_kernel *k = &p->kernels[i];
                char sub[64], path[128];
                const char *key;
                json_t *val, *cmd;
                int r;

                p->n_kernels = i + 1;
                snprintf(sub, sizeof(sub), "refstate.kernels[%zu]", i);
                if (!json_is_object(e))
                        return bad(err, sub, "a kernel object", e);
                json_object_foreach (e, key, val) {
                        bool ok = false;

                        for (size_t j = 0; j < VG_ARRAY_SIZE(known); j++)
                                ok = ok || strcmp(key, known[j]) == 0;
                        if (!ok)
                                return vg_error_set(
                                    err, -EINVAL,
                                    "%s: unknown key \"%s\" (expected shim_authcode_sha256, "
                                    "grub_authcode_sha256, kernel_authcode_sha256 or "
                                    "vmlinuz_plain_sha256, initrd_plain_sha256, kernel_cmdline)",
                                    sub, key);
                }
                /* example.py: allowed_kernel_test with Secure Boot, else
                 * shim_authcode_sha256_no_secureboot (vmlinuz instead of the kernel). */
                r = read_kernel_digest(e, sub, "shim_authcode_sha256", k->shim, true, NULL, err);
                if (r >= 0)
                        r = read_kernel_digest(e, sub, "grub_authcode_sha256", k->grub, true, NULL,
                                               err);
                if (r >= 0)
                        r = read_kernel_digest(e, sub, "kernel_authcode_sha256", k->kernel,
                                               p->has_secureboot, &k->has_kernel, err);
                if (r >= 0)
                        r = read_kernel_digest(e, sub, "vmlinuz_plain_sha256", k->vmlinuz,
                                               !p->has_secureboot, &k->has_vmlinuz, err);
                if (r >= 0)
                        r = read_kernel_digest(e, sub, "initrd_plain_sha256", k->initrd, true, NULL,
                                               err);
                if (r < 0)
                        return r;
                snprintf(path, sizeof(path), "%s.kernel_cmdline", sub);
                cmd = json_object_get(e, "kernel_cmdline");
                if (!json_is_string(cmd))
                        return bad(err, path, "a regular expression (string)", cmd);
                if (strlen(json_string_value(cmd)) != json_string_length(cmd))
                        return vg_error_set(err, -EINVAL, "%s: contains a NUL character", path);
                k->cmdline = strdup(json_string_value(cmd));
                if (!k->cmdline)
                        return -ENOMEM;
                r = compile_cmdline(k, path, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int vg_mb_policy_from_json(const json_t *refstate, struct vg_mb_policy **out, struct vg_error *err)
{
        static const char *const required[] = { "pk", "kek", "db", "dbx", "mokdig", "mokxdig" };
        _cleanup_(vg_mb_policy_freep) struct vg_mb_policy *p = NULL;
        const char *key;
        json_t *val, *sb;
        int r;

        if (!json_is_object(refstate))
                return bad(err, "refstate", "an object", refstate);
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->src = json_deep_copy(refstate);
        if (!p->src)
                return -ENOMEM;
        if (json_object_size(refstate) == 0) {
                p->empty = true;
                *out = TAKE_PTR(p);
                return 0;
        }
        json_object_foreach ((json_t *)refstate, key, val) {
                static const char *const known[] = {
                        "has_secureboot", "scrtm_and_bios", "pk",      "kek",    "db", "dbx",
                        "vendor_db",      "mokdig",         "mokxdig", "kernels"
                };
                bool ok = false;

                for (size_t j = 0; j < VG_ARRAY_SIZE(known); j++)
                        ok = ok || strcmp(key, known[j]) == 0;
                if (!ok)
                        return vg_error_set(err, -EINVAL,
                                            "refstate: unknown key \"%s\" (expected "
                                            "has_secureboot, scrtm_and_bios, pk, kek, db, dbx, "
                                            "vendor_db, mokdig, mokxdig, kernels)",
                                            key);
        }
        /* example.py: refstate.get("has_secureboot", True) */
        sb = json_object_get(refstate, "has_secureboot");
        if (sb && !json_is_boolean(sb))
                return bad(err, "refstate.has_secureboot", "true or false", sb);
        p->has_secureboot = !sb || json_is_true(sb);

        val = json_object_get(refstate, "kernels");
        if (!val)
                return vg_error_set(err, -EINVAL, "refstate.kernels: missing");
        r = read_kernels(val, p, err);
        if (r < 0)
                return r;
        val = json_object_get(refstate, "scrtm_and_bios");
        if (!val)
                return vg_error_set(err, -EINVAL, "refstate.scrtm_and_bios: missing");
        r = read_scrtm_bios(val, p, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < VG_ARRAY_SIZE(required); i++)
                if (!json_object_get(refstate, required[i]))
                        return vg_error_set(err, -EINVAL, "refstate.%s: missing", required[i]);
        r = read_sigs(json_object_get(refstate, "pk"), "refstate.pk", &p->pk, err);
        if (r >= 0)
                r = read_sigs(json_object_get(refstate, "kek"), "refstate.kek", &p->kek, err);
        if (r >= 0)
                r = read_sigs(json_object_get(refstate, "db"), "refstate.db", &p->db, err);
        if (r >= 0)
                r = read_sigs(json_object_get(refstate, "dbx"), "refstate.dbx", &p->dbx, err);
        /* vendor_db is optional ("for backward compatibility"): absent means []. */
        if (r >= 0 && json_object_get(refstate, "vendor_db"))
                r = read_sigs(json_object_get(refstate, "vendor_db"), "refstate.vendor_db",
                              &p->vendor_db, err);
        if (r >= 0)
                r = read_digest_list(json_object_get(refstate, "mokdig"), "refstate.mokdig",
                                     &p->mokdig, err);
        if (r >= 0)
                r = read_digest_list(json_object_get(refstate, "mokxdig"), "refstate.mokxdig",
                                     &p->mokxdig, err);
        if (r < 0)
                return r == -ENOMEM ? vg_error_set(err, r, "out of memory") : r;
        *out = TAKE_PTR(p);
        return 0;
}

int vg_mb_policy_parse(const char *text, size_t len, struct vg_mb_policy **out,
                       struct vg_error *err)
{
        json_error_t jerr;
        json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        int r;

        if (!j)
                return vg_error_set(err, -EINVAL, "refstate: line %d column %d: %s", jerr.line,
                                    jerr.column, jerr.text);
        r = vg_mb_policy_from_json(j, out, err);
        json_decref(j);
        return r;
}

int vg_mb_policy_load(const char *path, struct vg_mb_policy **out, struct vg_error *err)
{
        json_error_t jerr;
        json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        int r;

        if (!j)
                return vg_error_set(err, -EINVAL, "%s: line %d column %d: %s", path, jerr.line,
                                    jerr.column, jerr.text);
        r = vg_mb_policy_from_json(j, out, err);
        json_decref(j);
        if (r < 0)
                vg_error_prefix(err, "%s: ", path);
        return r;
}

/* ---- Evaluation ------------------------------------------------------------------------------ */

/* What example.py's Dispatcher keys on, counted per evaluation (its OnceTests). */
struct eval {
        const struct vg_mb_policy *p;
        const struct vg_evlog *log;
        struct vg_mb_result *res;
        struct vg_error *err;
        int r; /* -ENOMEM once allocation failed */
        /* Once-only events: index of the first, -1 when none yet. */
        int64_t no_action0, microcode, handoff, handoff2, gpt, pk, kek, db, dbx, vendor_db_cfg;
        int64_t auth_db, auth_vendor_db, auth_sbat, auth_shim, auth_mok_trusted, auth_mok_rt;
        int64_t ipl_mok_trusted;
        unsigned config_flags;
        int64_t secureboot; /* the SecureBoot event, -1 when the log has none */
        /* Delayed to the end (example.py's DelayToFields): event indexes. */
        size_t n_bsas, n_initrds, n_vmlinuz, n_cmdlines, n_scrtms, n_fws;
        uint32_t *bsas, *initrds, *vmlinuz, *cmdlines, *scrtms, *fws;
};

static const char *type_name(uint32_t type, char *buf, size_t size)
{
        const char *n = vg_evlog_type_name(type);

        if (n)
                return n;
        snprintf(buf, size, "event type 0x%08" PRIx32, type);
        return buf;
}

__attribute__((format(printf, 3, 4))) static void
fail(struct eval *c, const struct vg_evlog_event *ev, const char *fmt, ...)
{
        char body[768], tn[32];
        _cleanup_free_ char *msg = NULL;
        struct vg_mb_failure *nf;
        va_list ap;
        int n;

        if (c->r < 0)
                return;
        va_start(ap, fmt);
        vsnprintf(body, sizeof(body), fmt, ap);
        va_end(ap);
        if (ev)
                n = asprintf(&msg, "PCR %" PRIu32 ": event %" PRIu32 " %s: %s", ev->pcr, ev->index,
                             type_name(ev->type, tn, sizeof(tn)), body);
        else
                n = asprintf(&msg, "%s", body);
        if (n < 0) {
                msg = NULL;
                c->r = -ENOMEM;
                return;
        }
        nf = realloc(c->res->failures, (c->res->n_failures + 1) * sizeof(*nf));
        if (!nf) {
                c->r = -ENOMEM;
                return;
        }
        c->res->failures = nf;
        nf[c->res->n_failures++] = (struct vg_mb_failure){
                .event = ev ? (int64_t)ev->index : -1,
                .pcr = ev ? ev->pcr : 0,
                .type = ev ? ev->type : 0,
                .msg = TAKE_PTR(msg),
        };
}

static void push(struct eval *c, uint32_t **v, size_t *n, uint32_t idx)
{
        uint32_t *nv = realloc(*v, (*n + 1) * sizeof(*nv));

        if (!nv) {
                c->r = -ENOMEM;
                return;
        }
        nv[(*n)++] = idx;
        *v = nv;
}

/* OnceTest: the first occurrence passes on to the test, a later one fails. */
static bool once(struct eval *c, const struct vg_evlog_event *ev, int64_t *first, const char *what)
{
        if (*first >= 0) {
                fail(c, ev, "a second %s (the first is event %" PRId64 "); the policy accepts one",
                     what, *first);
                return false;
        }
        *first = ev->index;
        return true;
}

/* "sha256:0123abcd..." of the event's SHA-256 digest (or its first digest). */
static void digest_str(const struct vg_evlog_event *ev, char *out, size_t size)
{
        const struct vg_evlog_digest *d = vg_evlog_event_digest(ev, VG_EVLOG_ALG_SHA256);
        const char *alg;
        size_t o;

        if (!d && ev->n_digests)
                d = &ev->digests[0];
        if (!d) {
                snprintf(out, size, "(no digest)");
                return;
        }
        alg = vg_evlog_alg_name(d->alg_id);
        o = (size_t)snprintf(out, size, "%s:", alg ? alg : "?");
        for (size_t i = 0; i < d->size && o + 3 <= size; i++)
                o += (size_t)snprintf(out + o, size - o, "%02x", d->digest[i]);
}

static const uint8_t *sha256_of(const struct vg_evlog_event *ev)
{
        const struct vg_evlog_digest *d = vg_evlog_event_digest(ev, VG_EVLOG_ALG_SHA256);

        return d && d->size == SHA256_LEN ? d->digest : NULL;
}

/* DigestsTest: some digest the event carries, in an algorithm the map has, equals it. */
static bool digests_match(const struct vg_evlog_event *ev, const struct mb_digests *m)
{
        for (unsigned i = 0; i < ev->n_digests; i++)
                for (size_t j = 0; j < m->n; j++)
                        if (m->v[j].alg_id == ev->digests[i].alg_id &&
                            m->v[j].len == ev->digests[i].size &&
                            memcmp(m->v[j].d, ev->digests[i].digest, m->v[j].len) == 0)
                                return true;
        return false;
}

/* Some bank of the event holds H(data) (EvSeperatorTest, EvEfiActionTest). */
static bool digest_is_hash_of(const struct vg_evlog_event *ev, const void *data, size_t len)
{
        static const struct {
                uint16_t id;
                enum vg_hash_alg alg;
        } algs[] = { { VG_EVLOG_ALG_SHA1, VG_HASH_SHA1 },
                     { VG_EVLOG_ALG_SHA256, VG_HASH_SHA256 },
                     { VG_EVLOG_ALG_SHA384, VG_HASH_SHA384 },
                     { VG_EVLOG_ALG_SHA512, VG_HASH_SHA512 } };

        for (size_t i = 0; i < VG_ARRAY_SIZE(algs); i++) {
                const struct vg_evlog_digest *d = vg_evlog_event_digest(ev, algs[i].id);
                uint8_t h[VG_EVLOG_DIGEST_MAX];

                if (!d || d->size != vg_hash_size(algs[i].alg) ||
                    vg_hash(algs[i].alg, data, len, h) < 0)
                        continue;
                if (memcmp(h, d->digest, d->size) == 0)
                        return true;
        }
        return false;
}

/* An event's data as a string the way Keylime sees it after tpm2_eventlog: one trailing NUL
 * dropped. */
static size_t string_len(const struct vg_evlog_event *ev)
{
        size_t n = ev->data_len;

        if (n && ev->data[n - 1] == '\0')
                n--;
        return n;
}

static bool str_is(const struct vg_evlog_event *ev, const char *s)
{
        size_t n = string_len(ev);

        return n == strlen(s) && memcmp(ev->data, s, n) == 0;
}

/* Python's re.fullmatch(r".*NEEDLE.*", s): contains needle and no newline. */
static bool str_contains_line(const struct vg_evlog_event *ev, const char *needle)
{
        size_t n = string_len(ev);

        return !memchr(ev->data, '\n', n) && memmem(ev->data, n, needle, strlen(needle));
}

/* Printable excerpt of an event's string for messages. */
static void str_excerpt(const struct vg_evlog_event *ev, char *out, size_t size)
{
        size_t n = string_len(ev), o = 0;

        for (size_t i = 0; i < n && o + 8 < size; i++) {
                uint8_t ch = ev->data[i];

                if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
                        out[o++] = (char)ch;
                else
                        o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
        }
        if (o + 8 >= size && n)
                o += (size_t)snprintf(out + o, size - o, "...");
        out[o] = '\0';
}

static void check_separator(struct eval *c, const struct vg_evlog_event *ev)
{
        static const uint8_t zero[4] = { 0, 0, 0, 0 }, ones[4] = { 0xff, 0xff, 0xff, 0xff };

        /* TCG PC Client PFP, Table 9: 0x00000000, or 0xFFFFFFFF on error. */
        if (ev->data_len != 4 || (memcmp(ev->data, zero, 4) && memcmp(ev->data, ones, 4))) {
                fail(c, ev, "separator data is not 00000000 or ffffffff");
                return;
        }
        if (!digest_is_hash_of(ev, ev->data, 4))
                fail(c, ev, "the digest is not the hash of the separator data");
}

static void check_efi_action(struct eval *c, const struct vg_evlog_event *ev)
{
        static const struct {
                uint32_t pcr;
                const char *s;
        } ok[] = { { 1, "Entering ROM Based Setup" },
                   { 4, "Calling EFI Application from Boot Option" },
                   { 4, "Returning from EFI Application from Boot Option" },
                   { 5, "Exit Boot Services Invocation" },
                   { 5, "Exit Boot Services Returned with Failure" },
                   { 5, "Exit Boot Services Returned with Success" } };
        char ex[128];

        for (size_t i = 0; i < VG_ARRAY_SIZE(ok); i++) {
                if (ok[i].pcr != ev->pcr || !str_is(ev, ok[i].s))
                        continue;
                if (!digest_is_hash_of(ev, ok[i].s, strlen(ok[i].s)))
                        fail(c, ev, "the digest is not the hash of \"%s\"", ok[i].s);
                return;
        }
        str_excerpt(ev, ex, sizeof(ex));
        fail(c, ev, "unexpected action \"%s\" for this PCR", ex);
}

static bool sig_in(const struct mb_sigs *s, const struct vg_efi_signature *sig)
{
        for (size_t i = 0; i < s->n; i++)
                if ((vg_efi_guid_eq(&s->v[i].owner, &sig->owner) ||
                     vg_efi_guid_eq(&s->v[i].owner_swapped, &sig->owner)) &&
                    s->v[i].len == sig->data_len &&
                    memcmp(s->v[i].data, sig->data, sig->data_len) == 0)
                        return true;
        return false;
}

static void sig_describe(const struct vg_efi_signature *sig, char *out, size_t size)
{
        char owner[VG_EFI_GUID_STR_LEN];
        _cleanup_free_ char *hex =
            vg_hex_encode(sig->data, sig->data_len < 16 ? sig->data_len : 16);

        vg_efi_guid_str(&sig->owner, owner);
        if (sig->subject)
                snprintf(out, size, "certificate \"%s\" (owner %s)", sig->subject, owner);
        else if (vg_efi_guid_eq(&sig->type, &VG_EFI_CERT_SHA256))
                snprintf(out, size, "SHA-256 hash 0x%s%s (owner %s)", hex ? hex : "?",
                         sig->data_len > 16 ? "..." : "", owner);
        else
                snprintf(out, size, "entry 0x%s%s (owner %s)", hex ? hex : "?",
                         sig->data_len > 16 ? "..." : "", owner);
}

#define MAX_PER_EVENT 8 /* signature failures listed per event before "and N more" */

/* KeySubset / KeySubsetMulti: every signature of the variable is of an allowed type and in the
 * policy's list. */
static void check_subset(struct eval *c, const struct vg_evlog_event *ev,
                         const struct vg_efi_variable *var, const char *key,
                         const struct mb_sigs *allowed, bool sha256_too)
{
        struct vg_efi_signature *sigs = NULL;
        size_t n = 0, bad_count = 0;
        struct vg_error e = { 0 };

        if (vg_efi_siglists_parse(var->data, var->data_len, &sigs, &n, &e) < 0) {
                fail(c, ev, "%s: malformed EFI_SIGNATURE_LIST: %s", var->name, vg_error_str(&e));
                return;
        }
        for (size_t i = 0; i < n; i++) {
                char d[320];
                bool type_ok = vg_efi_guid_eq(&sigs[i].type, &VG_EFI_CERT_X509) ||
                               (sha256_too && vg_efi_guid_eq(&sigs[i].type, &VG_EFI_CERT_SHA256));

                if (type_ok && sig_in(allowed, &sigs[i]))
                        continue;
                if (++bad_count > MAX_PER_EVENT)
                        continue;
                sig_describe(&sigs[i], d, sizeof(d));
                if (!type_ok)
                        fail(c, ev, "%s holds %s of a type the policy does not accept (%s)",
                             var->name, d, sha256_too ? "X.509 or SHA-256" : "X.509 only");
                else
                        fail(c, ev, "%s holds %s, which is not in the policy's %s", var->name, d,
                             key);
        }
        if (bad_count > MAX_PER_EVENT)
                fail(c, ev, "%s: and %zu more entries not in the policy's %s", var->name,
                     bad_count - MAX_PER_EVENT, key);
        vg_efi_signatures_free(sigs, n);
}

/* KeySuperset: dbx holds at least every entry of the policy's dbx. Keylime also requires dbx to
 * be exactly one SHA-256 list; vigil only asks for the entries (see the report). */
static void check_superset(struct eval *c, const struct vg_evlog_event *ev,
                           const struct vg_efi_variable *var, const struct mb_sigs *required)
{
        struct vg_efi_signature *sigs = NULL;
        size_t n = 0, missing = 0;
        struct vg_error e = { 0 };

        if (vg_efi_siglists_parse(var->data, var->data_len, &sigs, &n, &e) < 0) {
                fail(c, ev, "%s: malformed EFI_SIGNATURE_LIST: %s", var->name, vg_error_str(&e));
                return;
        }
        for (size_t i = 0; i < required->n; i++) {
                const struct mb_sig *want = &required->v[i];
                bool found = false;

                for (size_t j = 0; j < n && !found; j++)
                        found = (vg_efi_guid_eq(&want->owner, &sigs[j].owner) ||
                                 vg_efi_guid_eq(&want->owner_swapped, &sigs[j].owner)) &&
                                want->len == sigs[j].data_len &&
                                memcmp(want->data, sigs[j].data, want->len) == 0;
                if (found)
                        continue;
                if (++missing <= MAX_PER_EVENT) {
                        char owner[VG_EFI_GUID_STR_LEN];
                        _cleanup_free_ char *hex =
                            vg_hex_encode(want->data, want->len < 32 ? want->len : 32);

                        vg_efi_guid_str(&want->owner, owner);
                        fail(c, ev,
                             "dbx lacks the policy's dbx[%zu] 0x%s%s (owner %s): a revocation "
                             "is missing",
                             i, hex ? hex : "?", want->len > 32 ? "..." : "", owner);
                }
        }
        if (missing > MAX_PER_EVENT)
                fail(c, ev, "dbx lacks %zu more of the policy's dbx entries",
                     missing - MAX_PER_EVENT);
        vg_efi_signatures_free(sigs, n);
}

static bool parse_var(struct eval *c, const struct vg_evlog_event *ev, struct vg_efi_variable *var)
{
        struct vg_error e = { 0 };

        if (vg_efi_variable_parse(ev->data, ev->data_len, var, &e) < 0) {
                fail(c, ev, "malformed UEFI_VARIABLE_DATA: %s", vg_error_str(&e));
                return false;
        }
        return true;
}

/* tpm2_eventlog's "Enabled": no data or a zero byte is "No", one non-zero byte "Yes"; longer
 * data is an error. Returns 1, 0, or -1. */
static int enabled_of(const struct vg_efi_variable *var)
{
        if (var->data_len == 0)
                return 0;
        if (var->data_len > 1)
                return -1;
        return var->data[0] != 0;
}

static void check_driver_config(struct eval *c, const struct vg_evlog_event *ev)
{
        const struct vg_mb_policy *p = c->p;
        struct vg_efi_variable var;
        bool global, imgsec;
        char g[VG_EFI_GUID_STR_LEN];

        if (!parse_var(c, ev, &var))
                return;
        global = vg_efi_guid_eq(&var.guid, &VG_EFI_GLOBAL_VARIABLE);
        imgsec = vg_efi_guid_eq(&var.guid, &VG_EFI_IMAGE_SECURITY_DATABASE);
        if (global && strcmp(var.name, "SecureBoot") == 0) {
                int en = enabled_of(&var);

                c->secureboot = ev->index;
                if (en < 0)
                        fail(c, ev, "SecureBoot variable holds %zu bytes, expected 1",
                             var.data_len);
                else if (en != p->has_secureboot)
                        fail(c, ev, "Secure Boot is %s, the policy expects it %s",
                             en ? "enabled" : "disabled",
                             p->has_secureboot ? "enabled" : "disabled");
                return;
        }
        /* Without Secure Boot, an empty list in the policy accepts the variable (once). */
        if (global && strcmp(var.name, "PK") == 0) {
                if (once(c, ev, &c->pk, "PK measurement") && (p->has_secureboot || p->pk.n))
                        check_subset(c, ev, &var, "pk", &p->pk, false);
        } else if (global && strcmp(var.name, "KEK") == 0) {
                if (once(c, ev, &c->kek, "KEK measurement") && (p->has_secureboot || p->kek.n))
                        check_subset(c, ev, &var, "kek", &p->kek, false);
        } else if (imgsec && strcmp(var.name, "db") == 0) {
                if (once(c, ev, &c->db, "db measurement") && (p->has_secureboot || p->db.n))
                        check_subset(c, ev, &var, "db", &p->db, true);
        } else if (imgsec && strcmp(var.name, "vendor_db") == 0) {
                if (once(c, ev, &c->vendor_db_cfg, "vendor_db measurement") &&
                    (p->has_secureboot || p->vendor_db.n))
                        check_subset(c, ev, &var, "vendor_db", &p->vendor_db, true);
        } else if (imgsec && strcmp(var.name, "dbx") == 0) {
                if (once(c, ev, &c->dbx, "dbx measurement") && (p->has_secureboot || p->dbx.n))
                        check_superset(c, ev, &var, &p->dbx);
        } else {
                vg_efi_guid_str(&var.guid, g);
                fail(c, ev,
                     "unexpected variable %s (%s): the policy knows SecureBoot, PK, KEK, db, "
                     "dbx and vendor_db",
                     var.name, g);
        }
}

static void check_authority(struct eval *c, const struct vg_evlog_event *ev)
{
        const struct vg_mb_policy *p = c->p;
        struct vg_efi_variable var;
        bool imgsec, shim;
        char g[VG_EFI_GUID_STR_LEN];

        if (!parse_var(c, ev, &var))
                return;
        imgsec = vg_efi_guid_eq(&var.guid, &VG_EFI_IMAGE_SECURITY_DATABASE);
        shim = vg_efi_guid_eq(&var.guid, &VG_EFI_SHIM_LOCK);
        if (imgsec && strcmp(var.name, "db") == 0) {
                /* example.py: the db certificate that verified shim is trusted (once). */
                once(c, ev, &c->auth_db, "db authority");
        } else if (imgsec && strcmp(var.name, "vendor_db") == 0) {
                struct vg_efi_signature sig = { 0 };
                char d[320];

                if (!once(c, ev, &c->auth_vendor_db, "vendor_db authority"))
                        return;
                if (!p->has_secureboot && !p->vendor_db.n)
                        return;
                /* EFI_SIGNATURE_DATA: owner GUID, then the data. */
                if (var.data_len < 16) {
                        fail(c, ev,
                             "vendor_db authority data is %zu bytes, shorter than an "
                             "EFI_SIGNATURE_DATA",
                             var.data_len);
                        return;
                }
                memcpy(sig.owner.b, var.data, 16);
                sig.data = var.data + 16;
                sig.data_len = var.data_len - 16;
                sig.type = VG_EFI_CERT_X509;
                if (!sig_in(&p->vendor_db, &sig)) {
                        sig_describe(&sig, d, sizeof(d));
                        fail(c, ev, "vendor_db authority %s is not in the policy's vendor_db", d);
                }
        } else if (shim && strcmp(var.name, "SbatLevel") == 0) {
                once(c, ev, &c->auth_sbat, "SbatLevel authority");
        } else if (shim && strcmp(var.name, "Shim") == 0) {
                once(c, ev, &c->auth_shim, "Shim authority");
        } else if (shim && strcmp(var.name, "MokListTrusted") == 0) {
                if (once(c, ev, &c->auth_mok_trusted, "MokListTrusted authority") &&
                    enabled_of(&var) < 0)
                        fail(c, ev, "MokListTrusted holds %zu bytes, expected 0 or 1",
                             var.data_len);
        } else if (shim && strcmp(var.name, "MokListRT") == 0) {
                once(c, ev, &c->auth_mok_rt, "MokListRT authority");
        } else {
                vg_efi_guid_str(&var.guid, g);
                fail(c, ev,
                     "unexpected authority %s (%s): the policy knows db, vendor_db, "
                     "SbatLevel, Shim, MokListTrusted and MokListRT",
                     var.name, g);
        }
}

static bool boot_var_name(const char *n)
{
        if (strcmp(n, "BootOrder") == 0)
                return true;
        if (strncmp(n, "Boot", 4) || !n[4])
                return false;
        for (const char *q = n + 4; *q; q++)
                if (vg_hex_digit_value((unsigned char)*q) < 0)
                        return false;
        return true;
}

static void check_boot_var(struct eval *c, const struct vg_evlog_event *ev)
{
        struct vg_efi_variable var;

        if (!parse_var(c, ev, &var))
                return;
        if (!vg_efi_guid_eq(&var.guid, &VG_EFI_GLOBAL_VARIABLE) || !boot_var_name(var.name))
                fail(c, ev,
                     "unexpected boot variable %s: the policy accepts BootOrder and "
                     "Boot####",
                     var.name);
}

static void check_ipl(struct eval *c, const struct vg_evlog_event *ev)
{
        char ex[200];

        switch (ev->pcr) {
        case 8:
                /* grub: "grub_cmd: ..." (any text, newlines too) or "kernel_cmdline: ...". */
                if (string_len(ev) >= 10 && memcmp(ev->data, "grub_cmd: ", 10) == 0)
                        return;
                if (string_len(ev) >= 16 && memcmp(ev->data, "kernel_cmdline: ", 16) == 0 &&
                    !memchr(ev->data, '\n', string_len(ev))) {
                        push(c, &c->cmdlines, &c->n_cmdlines, ev->index);
                        return;
                }
                str_excerpt(ev, ex, sizeof(ex));
                fail(c, ev, "\"%s\" is neither a grub_cmd nor a kernel_cmdline", ex);
                return;
        case 9:
                if (str_contains_line(ev, "/loader/entries") || str_contains_line(ev, "/grub"))
                        return;
                if (str_contains_line(ev, "/vmlinuz")) {
                        push(c, &c->vmlinuz, &c->n_vmlinuz, ev->index);
                        return;
                }
                if (str_contains_line(ev, "/initrd") || str_contains_line(ev, "/initramfs")) {
                        push(c, &c->initrds, &c->n_initrds, ev->index);
                        return;
                }
                str_excerpt(ev, ex, sizeof(ex));
                fail(c, ev,
                     "unexpected file \"%s\": the policy knows /vmlinuz*, /initrd*, "
                     "/initramfs*, /grub* and /loader/entries*",
                     ex);
                return;
        case 14: {
                char d[160];

                digest_str(ev, d, sizeof(d));
                if (str_is(ev, "MokList")) {
                        if (!digests_match(ev, &c->p->mokdig))
                                fail(c, ev, "MokList digest %s is not in the policy's mokdig", d);
                } else if (str_is(ev, "MokListX")) {
                        if (!digests_match(ev, &c->p->mokxdig))
                                fail(c, ev, "MokListX digest %s is not in the policy's mokxdig", d);
                } else if (str_is(ev, "MokListTrusted")) {
                        once(c, ev, &c->ipl_mok_trusted, "MokListTrusted measurement");
                } else {
                        str_excerpt(ev, ex, sizeof(ex));
                        fail(c, ev,
                             "unexpected \"%s\": the policy knows MokList, MokListX and "
                             "MokListTrusted",
                             ex);
                }
                return;
        }
        default:
                break;
        }
}

/* example.py's Dispatcher on (PCRIndex, EventType). */
static void check_event(struct eval *c, const struct vg_evlog_event *ev)
{
        char tn[32];
        uint32_t pcr = ev->pcr, t = ev->type;

        if (t == VG_EV_SEPARATOR && pcr <= 7) {
                check_separator(c, ev);
                return;
        }
        switch (pcr) {
        case 0:
                if (t == VG_EV_NO_ACTION) {
                        once(c, ev, &c->no_action0,
                             "EV_NO_ACTION (only the log header is expected)");
                        return;
                }
                if (t == VG_EV_S_CRTM_VERSION) {
                        push(c, &c->scrtms, &c->n_scrtms, ev->index);
                        return;
                }
                if (t == VG_EV_EFI_PLATFORM_FIRMWARE_BLOB ||
                    t == VG_EV_EFI_PLATFORM_FIRMWARE_BLOB2) {
                        push(c, &c->fws, &c->n_fws, ev->index);
                        return;
                }
                break;
        case 1:
                if (t == VG_EV_CPU_MICROCODE) {
                        once(c, ev, &c->microcode, "EV_CPU_MICROCODE");
                        return;
                }
                if (t == VG_EV_EFI_HANDOFF_TABLES) {
                        once(c, ev, &c->handoff, "EV_EFI_HANDOFF_TABLES");
                        return;
                }
                if (t == VG_EV_EFI_HANDOFF_TABLES2) {
                        once(c, ev, &c->handoff2, "EV_EFI_HANDOFF_TABLES2");
                        return;
                }
                if (t == VG_EV_PLATFORM_CONFIG_FLAGS) {
                        /* edk2 measures up to 4 (keylime issue 1393). */
                        if (++c->config_flags > 4)
                                fail(c, ev, "more than 4 EV_PLATFORM_CONFIG_FLAGS events");
                        return;
                }
                if (t == VG_EV_EFI_VARIABLE_BOOT) {
                        check_boot_var(c, ev);
                        return;
                }
                if (t == VG_EV_EFI_ACTION) {
                        check_efi_action(c, ev);
                        return;
                }
                break;
        case 2:
                if (t == VG_EV_EFI_BOOT_SERVICES_DRIVER)
                        return; /* option ROMs: accepted (example.py) */
                break;
        case 4:
                if (t == VG_EV_EFI_ACTION) {
                        check_efi_action(c, ev);
                        return;
                }
                if (t == VG_EV_EFI_BOOT_SERVICES_APPLICATION) {
                        push(c, &c->bsas, &c->n_bsas, ev->index);
                        return;
                }
                break;
        case 5:
                if (t == VG_EV_EFI_ACTION) {
                        check_efi_action(c, ev);
                        return;
                }
                if (t == VG_EV_EFI_GPT_EVENT) {
                        once(c, ev, &c->gpt, "EV_EFI_GPT_EVENT");
                        return;
                }
                break;
        case 7:
                if (t == VG_EV_EFI_VARIABLE_DRIVER_CONFIG) {
                        check_driver_config(c, ev);
                        return;
                }
                if (t == VG_EV_EFI_VARIABLE_AUTHORITY) {
                        check_authority(c, ev);
                        return;
                }
                break;
        case 8:
        case 9:
        case 14:
                if (t == VG_EV_IPL) {
                        check_ipl(c, ev);
                        return;
                }
                break;
        default:
                break;
        }
        fail(c, ev, "the measured-boot policy does not allow %s events in PCR %" PRIu32,
             type_name(t, tn, sizeof(tn)), pcr);
}

static const struct vg_evlog_event *event_at(const struct eval *c, uint32_t idx)
{
        return &c->log->events[idx];
}

static bool eq256(const struct vg_evlog_event *ev, const uint8_t *want)
{
        const uint8_t *d = sha256_of(ev);

        return d && memcmp(d, want, SHA256_LEN) == 0;
}

static bool cmdline_matches(const struct mb_kernel *k, const struct vg_evlog_event *ev)
{
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(k->re, NULL);
        int rc;

        if (!md)
                return false;
        rc = pcre2_match(k->re, ev->data, string_len(ev), 0, 0, md, NULL);
        pcre2_match_data_free(md);
        return rc >= 0;
}

enum role { ROLE_SHIM, ROLE_GRUB, ROLE_KERNEL };

static const uint8_t *role_digest(const struct mb_kernel *k, enum role r)
{
        return r == ROLE_SHIM ? k->shim : r == ROLE_GRUB ? k->grub : k->kernel;
}

static bool bsas_match(const struct eval *c, const struct mb_kernel *k)
{
        static const enum role sb_roles[4] = { ROLE_SHIM, ROLE_GRUB, ROLE_KERNEL, ROLE_KERNEL };

        if (c->p->has_secureboot ? (c->n_bsas != 3 && c->n_bsas != 4) : c->n_bsas != 2)
                return false;
        for (size_t i = 0; i < c->n_bsas; i++)
                if (!eq256(event_at(c, c->bsas[i]), role_digest(k, sb_roles[i])))
                        return false;
        return true;
}

static bool kernel_matches(const struct eval *c, const struct mb_kernel *k)
{
        if (!bsas_match(c, k) || c->n_initrds != 1 || c->n_vmlinuz != 1 || c->n_cmdlines != 1)
                return false;
        if (!eq256(event_at(c, c->initrds[0]), k->initrd))
                return false;
        if (!c->p->has_secureboot && !eq256(event_at(c, c->vmlinuz[0]), k->vmlinuz))
                return false;
        return cmdline_matches(k, event_at(c, c->cmdlines[0]));
}

static void check_kernels(struct eval *c)
{
        static const char *const role_names[] = { "shim", "grub", "kernel" };
        static const enum role roles[4] = { ROLE_SHIM, ROLE_GRUB, ROLE_KERNEL, ROLE_KERNEL };
        const struct vg_mb_policy *p = c->p;
        size_t before = c->res->n_failures;
        size_t want_min = p->has_secureboot ? 3 : 2, want_max = p->has_secureboot ? 4 : 2;

        for (size_t i = 0; i < p->n_kernels; i++)
                if (kernel_matches(c, &p->kernels[i]))
                        return;
        if (!p->n_kernels) {
                fail(c, NULL, "the policy lists no kernels, so no boot can pass");
                return;
        }
        /* Say which parts match no entry. */
        if (c->n_bsas < want_min || c->n_bsas > want_max)
                fail(c, NULL,
                     "PCR 4 has %zu EV_EFI_BOOT_SERVICES_APPLICATION events, the policy expects "
                     "%s",
                     c->n_bsas,
                     p->has_secureboot ? "3 (shim, grub, kernel) or 4 (the kernel twice)"
                                       : "2 (shim, grub; Secure Boot off)");
        for (size_t i = 0; i < c->n_bsas && i < want_max; i++) {
                const struct vg_evlog_event *ev = event_at(c, c->bsas[i]);
                enum role r = roles[i];
                bool known = false;
                char d[160];

                for (size_t k = 0; k < p->n_kernels && !known; k++)
                        known = eq256(ev, role_digest(&p->kernels[k], r));
                if (known)
                        continue;
                digest_str(ev, d, sizeof(d));
                fail(c, ev, "%s Authenticode digest %s is not among the policy's kernels (%s)",
                     role_names[r], d,
                     r == ROLE_SHIM   ? "shim_authcode_sha256"
                     : r == ROLE_GRUB ? "grub_authcode_sha256"
                                      : "kernel_authcode_sha256");
        }
        for (size_t i = want_max; i < c->n_bsas; i++)
                fail(c, event_at(c, c->bsas[i]),
                     "boot application beyond the %zu the policy expects", want_max);
        if (c->n_initrds != 1)
                fail(c, NULL, "PCR 9 has %zu initrd/initramfs EV_IPL events, the policy expects 1",
                     c->n_initrds);
        for (size_t i = 0; i < c->n_initrds; i++) {
                const struct vg_evlog_event *ev = event_at(c, c->initrds[i]);
                bool known = false;
                char d[160];

                for (size_t k = 0; k < p->n_kernels && !known; k++)
                        known = eq256(ev, p->kernels[k].initrd);
                if (known)
                        continue;
                digest_str(ev, d, sizeof(d));
                fail(c, ev,
                     "initrd digest %s is not among the policy's kernels "
                     "(initrd_plain_sha256)",
                     d);
        }
        if (c->n_vmlinuz != 1)
                fail(c, NULL, "PCR 9 has %zu vmlinuz EV_IPL events, the policy expects 1",
                     c->n_vmlinuz);
        if (!p->has_secureboot)
                for (size_t i = 0; i < c->n_vmlinuz; i++) {
                        const struct vg_evlog_event *ev = event_at(c, c->vmlinuz[i]);
                        bool known = false;
                        char d[160];

                        for (size_t k = 0; k < p->n_kernels && !known; k++)
                                known = eq256(ev, p->kernels[k].vmlinuz);
                        if (known)
                                continue;
                        digest_str(ev, d, sizeof(d));
                        fail(c, ev,
                             "vmlinuz digest %s is not among the policy's kernels "
                             "(vmlinuz_plain_sha256)",
                             d);
                }
        if (c->n_cmdlines != 1)
                fail(c, NULL, "PCR 8 has %zu kernel_cmdline EV_IPL events, the policy expects 1",
                     c->n_cmdlines);
        for (size_t i = 0; i < c->n_cmdlines; i++) {
                const struct vg_evlog_event *ev = event_at(c, c->cmdlines[i]);
                bool known = false;
                char ex[200];

                for (size_t k = 0; k < p->n_kernels && !known; k++)
                        known = cmdline_matches(&p->kernels[k], ev);
                if (known)
                        continue;
                str_excerpt(ev, ex, sizeof(ex));
                fail(c, ev, "\"%s\" matches no kernel_cmdline of the policy's kernels", ex);
        }
        if (c->res->n_failures == before)
                fail(c, NULL,
                     "no single entry of the policy's kernels matches this boot's combination of "
                     "shim, grub, kernel, initrd and command line (each part is allowed by some "
                     "entry)");
}

static bool scrtm_bios_matches(const struct eval *c, const struct mb_scrtm_bios *sb)
{
        if (c->n_scrtms != 1 || !digests_match(event_at(c, c->scrtms[0]), &sb->scrtm))
                return false;
        if (c->n_fws != sb->n_fw)
                return false;
        for (size_t i = 0; i < c->n_fws; i++)
                if (!digests_match(event_at(c, c->fws[i]), &sb->fw[i]))
                        return false;
        return true;
}

static void check_scrtm_bios(struct eval *c)
{
        const struct vg_mb_policy *p = c->p;
        size_t before = c->res->n_failures;
        bool count_ok = false;

        for (size_t i = 0; i < p->n_scrtm_bios; i++)
                if (scrtm_bios_matches(c, &p->scrtm_bios[i]))
                        return;
        if (!p->n_scrtm_bios) {
                fail(c, NULL, "the policy's scrtm_and_bios is empty, so no boot can pass");
                return;
        }
        if (c->n_scrtms != 1)
                fail(c, NULL, "PCR 0 has %zu EV_S_CRTM_VERSION events, the policy expects 1",
                     c->n_scrtms);
        for (size_t i = 0; i < c->n_scrtms; i++) {
                const struct vg_evlog_event *ev = event_at(c, c->scrtms[i]);
                bool known = false;
                char d[160];

                for (size_t k = 0; k < p->n_scrtm_bios && !known; k++)
                        known = digests_match(ev, &p->scrtm_bios[k].scrtm);
                if (known)
                        continue;
                digest_str(ev, d, sizeof(d));
                fail(c, ev, "S-CRTM version digest %s is not in the policy's scrtm_and_bios", d);
        }
        for (size_t k = 0; k < p->n_scrtm_bios; k++)
                count_ok = count_ok || p->scrtm_bios[k].n_fw == c->n_fws;
        if (!count_ok)
                fail(c, NULL,
                     "PCR 0 has %zu platform firmware blobs, no scrtm_and_bios entry of the "
                     "policy lists that many",
                     c->n_fws);
        for (size_t i = 0; i < c->n_fws; i++) {
                const struct vg_evlog_event *ev = event_at(c, c->fws[i]);
                bool known = false;
                char d[160];

                for (size_t k = 0; k < p->n_scrtm_bios && !known; k++)
                        for (size_t j = 0; j < p->scrtm_bios[k].n_fw && !known; j++)
                                known = digests_match(ev, &p->scrtm_bios[k].fw[j]);
                if (known)
                        continue;
                digest_str(ev, d, sizeof(d));
                fail(c, ev,
                     "platform firmware blob digest %s is not in the policy's "
                     "scrtm_and_bios",
                     d);
        }
        if (c->res->n_failures == before)
                fail(c, NULL,
                     "no single scrtm_and_bios entry of the policy matches this "
                     "S-CRTM and firmware blob sequence");
}

void vg_mb_result_clear(struct vg_mb_result *res)
{
        for (size_t i = 0; i < res->n_failures; i++)
                free(res->failures[i].msg);
        free(res->failures);
        res->failures = NULL;
        res->n_failures = 0;
}

int vg_mb_policy_evaluate(const struct vg_mb_policy *p, const struct vg_evlog *log,
                          struct vg_mb_result *res, struct vg_error *err)
{
        struct eval c = {
                .p = p,
                .log = log,
                .res = res,
                .err = err,
                .no_action0 = -1,
                .microcode = -1,
                .handoff = -1,
                .handoff2 = -1,
                .gpt = -1,
                .pk = -1,
                .kek = -1,
                .db = -1,
                .dbx = -1,
                .vendor_db_cfg = -1,
                .auth_db = -1,
                .auth_vendor_db = -1,
                .auth_sbat = -1,
                .auth_shim = -1,
                .auth_mok_trusted = -1,
                .auth_mok_rt = -1,
                .ipl_mok_trusted = -1,
                .secureboot = -1,
        };

        if (p->empty)
                return 0;
        for (size_t i = 0; i < log->n_events && c.r >= 0; i++)
                check_event(&c, &log->events[i]);
        /* Keylime accepts a log without a SecureBoot measurement; vigil does not when the
         * policy requires Secure Boot (a log could otherwise hide the state). */
        if (p->has_secureboot && c.secureboot < 0)
                fail(&c, NULL,
                     "PCR 7: no EV_EFI_VARIABLE_DRIVER_CONFIG SecureBoot event; the policy "
                     "requires Secure Boot to be measured enabled");
        if (c.r >= 0)
                check_kernels(&c);
        if (c.r >= 0)
                check_scrtm_bios(&c);
        free(c.bsas);
        free(c.initrds);
        free(c.vmlinuz);
        free(c.cmdlines);
        free(c.scrtms);
        free(c.fws);
        if (c.r < 0)
                return vg_error_set(err, c.r, "out of memory evaluating the measured-boot policy");
        if (res->n_failures)
                return vg_error_set(err, -EBADMSG, "%s%s", res->failures[0].msg,
                                    res->n_failures > 1 ? " (and more)" : "");
        return 0;
}

/* ---- Generation (create_mb_policy.py) -------------------------------------------------------- */

char *vg_mb_regex_escape(const char *s, size_t len)
{
        /* Python >= 3.7 re.escape: these characters get a backslash, nothing else. */
        static const char special[] = "()[]{}?*+-|^$\\.&~# \t\n\r\v\f";
        char *out = malloc(len * 2 + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] && strchr(special, s[i]))
                        *o++ = '\\';
                *o++ = s[i];
        }
        *o = '\0';
        return out;
}

static void warn(const struct vg_mb_create_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn(const struct vg_mb_create_opts *o, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        if (!o || !o->warn)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        o->warn(msg, o->ud);
}

/* "0x" + hex, as a JSON string. */
static json_t *hex_json(const uint8_t *d, size_t len)
{
        _cleanup_free_ char *hex = vg_hex_encode(d, len);
        _cleanup_free_ char *s = NULL;

        if (!hex || asprintf(&s, "0x%s", hex) < 0) {
                s = NULL;
                return NULL;
        }
        return json_string(s);
}

/* {"sha256": "0x.."} of an event; -EINVAL when it has no SHA-256 digest. */
static int sha256_json(const struct vg_evlog_event *ev, const char *what, json_t **out,
                       struct vg_error *err)
{
        const uint8_t *d = sha256_of(ev);
        char tn[32];

        if (!d)
                return vg_error_set(err, -EINVAL,
                                    "PCR %" PRIu32 ": event %" PRIu32 " %s (%s) has no sha256 "
                                    "digest; Keylime's refstate pins SHA-256",
                                    ev->pcr, ev->index, type_name(ev->type, tn, sizeof(tn)), what);
        *out = hex_json(d, SHA256_LEN);
        return *out ? 0 : -ENOMEM;
}

static int digest_obj(const struct vg_evlog_event *ev, const char *what, json_t **out,
                      struct vg_error *err)
{
        json_t *hex;
        int r = sha256_json(ev, what, &hex, err);

        if (r < 0)
                return r;
        *out = json_object();
        if (!*out || json_object_set_new(*out, "sha256", hex) < 0)
                return -ENOMEM;
        return 0;
}

static json_t *sig_json(const struct vg_efi_guid *owner, const uint8_t *data, size_t len)
{
        char g[VG_EFI_GUID_STR_LEN];
        json_t *o = json_object();

        vg_efi_guid_str(owner, g);
        if (!o || json_object_set_new(o, "SignatureOwner", json_string(g)) < 0 ||
            json_object_set_new(o, "SignatureData", hex_json(data, len)) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static bool is_fv_app(const struct vg_evlog *log, const struct vg_evlog_event *ev)
{
        /* create_mb_policy skips firmware-volume applications (boot menus...):
         * re.match(r"FvVol\(\w{8}-\w{4}-\w{4}-\w{4}-\w{12}\)/FvFile\(<same>\)", DevicePath). */
        static const char *const parts[] = { "FvVol(", ")/FvFile(", ")" };
        static const int groups[] = { 8, 4, 4, 4, 12 };
        struct vg_evlog_decoded d = { 0 };
        bool ok = false;

        if (vg_evlog_decode(log, ev, &d, NULL) == 0 && d.kind == VG_EVD_IMAGE &&
            d.image.device_path) {
                const char *q = d.image.device_path;

                ok = true;
                for (int part = 0; part < 2 && ok; part++) {
                        size_t n = strlen(parts[part]);

                        ok = strncmp(q, parts[part], n) == 0;
                        q += ok ? n : 0;
                        for (int g = 0; g < 5 && ok; g++) {
                                for (int k = 0; k < groups[g] && ok; k++, q++)
                                        ok = (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') ||
                                             (*q >= 'A' && *q <= 'Z') || *q == '_';
                                if (ok && g < 4)
                                        ok = *q++ == '-';
                        }
                }
                ok = ok && *q == ')';
        }
        vg_evlog_decoded_clear(&d);
        return ok;
}

static bool ipl_contains(const struct vg_evlog_event *ev, const char *needle)
{
        return memmem(ev->data, string_len(ev), needle, strlen(needle)) != NULL;
}

static int create_keys(const struct vg_evlog *log, json_t *ref, struct vg_error *err)
{
        static const char *const names[] = { "pk", "kek", "db", "dbx" };
        json_t *lists[4] = { NULL };
        int r = 0;

        for (size_t i = 0; i < log->n_events && r >= 0; i++) {
                const struct vg_evlog_event *ev = &log->events[i];
                struct vg_efi_variable var;
                struct vg_efi_signature *sigs = NULL;
                size_t n = 0;
                char lower[128];
                int which = -1;

                if (ev->type != VG_EV_EFI_VARIABLE_DRIVER_CONFIG ||
                    vg_efi_variable_parse(ev->data, ev->data_len, &var, NULL) < 0)
                        continue;
                for (size_t k = 0; k < sizeof(lower) - 1; k++) {
                        lower[k] = (char)((var.name[k] >= 'A' && var.name[k] <= 'Z')
                                              ? var.name[k] - 'A' + 'a'
                                              : var.name[k]);
                        lower[k + 1] = '\0';
                        if (!var.name[k])
                                break;
                }
                for (int k = 0; k < 4; k++)
                        if (strcmp(lower, names[k]) == 0)
                                which = k;
                if (which < 0)
                        continue;
                r = vg_efi_siglists_parse(var.data, var.data_len, &sigs, &n, err);
                if (r < 0) {
                        vg_error_prefix(err, "PCR %" PRIu32 ": event %" PRIu32 " %s: ", ev->pcr,
                                        ev->index, var.name);
                        break;
                }
                /* The last measurement of a variable wins, as in get_keys(). */
                json_decref(lists[which]);
                lists[which] = json_array();
                for (size_t k = 0; k < n && lists[which]; k++)
                        if (json_array_append_new(
                                lists[which],
                                sig_json(&sigs[k].owner, sigs[k].data, sigs[k].data_len)) < 0)
                                r = -ENOMEM;
                if (!lists[which])
                        r = -ENOMEM;
                vg_efi_signatures_free(sigs, n);
        }
        for (int k = 0; k < 4; k++) {
                if (r >= 0 &&
                    json_object_set_new(ref, names[k], lists[k] ? lists[k] : json_array()) < 0)
                        r = -ENOMEM;
                else if (r < 0)
                        json_decref(lists[k]);
        }
        return r;
}

static int create_kernel(const struct vg_evlog *log, bool secure_boot, json_t **out,
                         struct vg_error *err)
{
        json_t *k = json_object(), *v;
        const struct vg_evlog_event *apps[5], *initrd = NULL, *vmlinuz = NULL, *cmdline = NULL;
        size_t n_apps = 0;
        int r = 0;

        if (!k)
                return -ENOMEM;
        for (size_t i = 0; i < log->n_events; i++) {
                const struct vg_evlog_event *ev = &log->events[i];

                if (ev->type == VG_EV_EFI_BOOT_SERVICES_APPLICATION && !is_fv_app(log, ev)) {
                        if (n_apps < VG_ARRAY_SIZE(apps))
                                apps[n_apps] = ev;
                        n_apps++;
                }
                if (ev->type != VG_EV_IPL)
                        continue;
                if (ev->pcr == 9 && !initrd &&
                    (ipl_contains(ev, "initrd") || ipl_contains(ev, "initramfs")))
                        initrd = ev;
                if (ev->pcr == 9 && !vmlinuz && ipl_contains(ev, "vmlinuz"))
                        vmlinuz = ev;
                /* Keylime looks for "kernel_cmdline" anywhere and cuts 16 characters; vigil
                 * takes the event that starts with the prefix (rhcos logs
                 * "grub_kernel_cmdline ..."). */
                if (ev->pcr == 8 && !cmdline && string_len(ev) >= 16 &&
                    memcmp(ev->data, "kernel_cmdline: ", 16) == 0)
                        cmdline = ev;
        }
        if (secure_boot ? (n_apps != 3 && n_apps != 4) : n_apps != 2)
                r = vg_error_set(err, -EINVAL,
                                 "expected %s UEFI applications to be booted (%s), found %zu "
                                 "EV_EFI_BOOT_SERVICES_APPLICATION events",
                                 secure_boot ? "3" : "2",
                                 secure_boot ? "shim, grub, kernel" : "shim, grub", n_apps);
        if (r >= 0 && secure_boot) {
                r = sha256_json(apps[2], "kernel", &v, err);
                if (r >= 0 && json_object_set_new(k, "kernel_authcode_sha256", v) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0) {
                r = sha256_json(apps[0], "shim", &v, err);
                if (r >= 0 && json_object_set_new(k, "shim_authcode_sha256", v) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0) {
                r = sha256_json(apps[1], "grub", &v, err);
                if (r >= 0 && json_object_set_new(k, "grub_authcode_sha256", v) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0 && !initrd)
                r = vg_error_set(err, -EINVAL,
                                 "no initrd/initramfs EV_IPL event in PCR 9 (grub measures the "
                                 "files it loads there; Keylime's policy pins the initrd)");
        if (r >= 0) {
                r = sha256_json(initrd, "initrd", &v, err);
                if (r >= 0 && json_object_set_new(k, "initrd_plain_sha256", v) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0 && !secure_boot) {
                if (!vmlinuz)
                        r = vg_error_set(err, -EINVAL,
                                         "no vmlinuz EV_IPL event in PCR 9: without Secure Boot "
                                         "the kernel is pinned by that digest");
                else
                        r = sha256_json(vmlinuz, "vmlinuz", &v, err);
                if (r >= 0 && json_object_set_new(k, "vmlinuz_plain_sha256", v) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0 && !cmdline)
                r = vg_error_set(err, -EINVAL, "no \"kernel_cmdline: \" EV_IPL event in PCR 8");
        if (r >= 0) {
                size_t n = string_len(cmdline) - 16;
                _cleanup_free_ char *re = NULL;

                if (memchr(cmdline->data + 16, '\0', n))
                        r = vg_error_set(err, -EINVAL,
                                         "PCR 8: event %" PRIu32 ": the kernel command line "
                                         "holds a NUL character",
                                         cmdline->index);
                else if (!(re = vg_mb_regex_escape((const char *)cmdline->data + 16, n)))
                        r = -ENOMEM;
                else if (json_object_set_new(k, "kernel_cmdline", json_string(re)) < 0)
                        r = vg_error_set(err, -EINVAL,
                                         "PCR 8: event %" PRIu32 ": the kernel command line is "
                                         "not UTF-8",
                                         cmdline->index);
        }
        if (r < 0) {
                json_decref(k);
                return r;
        }
        *out = k;
        return 0;
}

int vg_mb_policy_create(const struct vg_evlog *log, const struct vg_mb_create_opts *opts,
                        json_t **out, struct vg_error *err)
{
        json_auto_t *ref = json_object();
        json_t *sb_list, *entry, *fw, *vendor_db, *mok, *mokx, *kernels, *kernel = NULL, *v;
        const struct vg_evlog_event *scrtm = NULL;
        int secure_boot = -1, r;
        bool without = opts && opts->without_secureboot;

        if (!ref)
                return -ENOMEM;
        for (size_t i = 0; i < log->n_events && secure_boot < 0; i++) {
                const struct vg_evlog_event *ev = &log->events[i];
                struct vg_efi_variable var;

                if (ev->type != VG_EV_EFI_VARIABLE_DRIVER_CONFIG ||
                    vg_efi_variable_parse(ev->data, ev->data_len, &var, NULL) < 0 ||
                    strcmp(var.name, "SecureBoot"))
                        continue;
                secure_boot = enabled_of(&var);
                if (secure_boot < 0)
                        return vg_error_set(err, -EINVAL,
                                            "PCR %" PRIu32 ": event %" PRIu32 ": SecureBoot holds "
                                            "%zu bytes, expected 1",
                                            ev->pcr, ev->index, var.data_len);
        }
        if (secure_boot < 0) {
                warn(opts, "SecureBoot state could not be determined; assuming disabled");
                secure_boot = 0;
        }
        if (!secure_boot && !without)
                return vg_error_set(err, -EINVAL,
                                    "the log has Secure Boot disabled: pass --without-secureboot "
                                    "for a measured-boot-only policy");
        if (secure_boot && without)
                warn(opts, "--without-secureboot was given but the log has Secure Boot enabled; "
                           "ignoring it");

        for (size_t i = 0; i < log->n_events && !scrtm; i++)
                if (log->events[i].type == VG_EV_S_CRTM_VERSION)
                        scrtm = &log->events[i];
        if (!scrtm)
                return vg_error_set(err, -EINVAL,
                                    "no EV_S_CRTM_VERSION event: Keylime's refstate needs one "
                                    "(scrtm_and_bios[].scrtm)");
        if (json_object_set_new(ref, "has_secureboot", json_boolean(secure_boot)) < 0)
                return -ENOMEM;
        sb_list = json_array();
        entry = json_object();
        fw = json_array();
        if (!sb_list || !entry || !fw || json_array_append_new(sb_list, entry) < 0 ||
            json_object_set_new(ref, "scrtm_and_bios", sb_list) < 0) {
                json_decref(fw);
                return -ENOMEM;
        }
        r = digest_obj(scrtm, "S-CRTM version", &v, err);
        if (r < 0 || json_object_set_new(entry, "scrtm", v) < 0 ||
            json_object_set_new(entry, "platform_firmware", fw) < 0)
                return r < 0 ? r : -ENOMEM;
        for (size_t i = 0; i < log->n_events; i++) {
                const struct vg_evlog_event *ev = &log->events[i];

                if (ev->type != VG_EV_EFI_PLATFORM_FIRMWARE_BLOB &&
                    ev->type != VG_EV_EFI_PLATFORM_FIRMWARE_BLOB2)
                        continue;
                r = digest_obj(ev, "platform firmware", &v, err);
                if (r < 0 || json_array_append_new(fw, v) < 0)
                        return r < 0 ? r : -ENOMEM;
        }
        r = create_keys(log, ref, err);
        if (r < 0)
                return r;
        vendor_db = json_array();
        if (!vendor_db || json_object_set_new(ref, "vendor_db", vendor_db) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < log->n_events; i++) {
                const struct vg_evlog_event *ev = &log->events[i];
                struct vg_efi_variable var;

                if (ev->type != VG_EV_EFI_VARIABLE_AUTHORITY ||
                    vg_efi_variable_parse(ev->data, ev->data_len, &var, NULL) < 0 ||
                    strcasecmp(var.name, "vendor_db") || var.data_len < 16)
                        continue;
                if (json_array_append_new(vendor_db, sig_json((const struct vg_efi_guid *)var.data,
                                                              var.data + 16, var.data_len - 16)) <
                    0)
                        return -ENOMEM;
        }
        mok = json_array();
        mokx = json_array();
        if (!mok || !mokx || json_object_set_new(ref, "mokdig", mok) < 0 ||
            json_object_set_new(ref, "mokxdig", mokx) < 0) {
                return -ENOMEM;
        }
        for (size_t i = 0; i < log->n_events; i++) {
                const struct vg_evlog_event *ev = &log->events[i];
                json_t *list;

                if (ev->type != VG_EV_IPL)
                        continue;
                if (str_is(ev, "MokList"))
                        list = mok;
                else if (str_is(ev, "MokListX"))
                        list = mokx;
                else
                        continue;
                r = digest_obj(ev, "MokList", &v, err);
                if (r < 0 || json_array_append_new(list, v) < 0)
                        return r < 0 ? r : -ENOMEM;
        }
        r = create_kernel(log, secure_boot, &kernel, err);
        if (r < 0)
                return r;
        kernels = json_array();
        if (!kernels || json_array_append_new(kernels, kernel) < 0 ||
            json_object_set_new(ref, "kernels", kernels) < 0)
                return -ENOMEM;
        *out = TAKE_PTR(ref);
        return 0;
}
