/* vigil tests: the tpm2 pin against Debian's clevis (clevis-encrypt-tpm2 / clevis-decrypt-tpm2
 * over tpm2-tools) on one swtpm with sha1 and sha256 banks: JWEs made by either tool open with
 * the other, PCR policies break both when a PCR moves, errors name what is wrong. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cleanup.h"
#include "encoding.h"
#include "hash.h"
#include "jwe.h"
#include "pin.h"
#include "pin_private.h"
#include "swtpm.h"
#include "tap.h"
#include "tpm.h"

static const char *dir;
static struct vg_swtpm *tpm;

static const char secret[] = "vigil tpm2 pin: the LUKS passphrase";

/* clevis encrypt tpm2 CFG < secret; the JWE (stdout only), NULL on failure (stderr in *errout). */
static char *clevis_encrypt(const char *cfg, char **errout)
{
        char *in = tap_strf("%s/pt", dir), *out = tap_strf("%s/clevis.jwe", dir);
        char *errf = tap_strf("%s/clevis.err", dir);
        char *jwe = NULL;
        int st;

        tap_write_file(in, secret);
        /* clevis-encrypt-tpm2 leaves a session loaded when it makes a PCR policy (harmless
         * under the kernel's resource manager, not on a bare swtpm): flush it. */
        st = tap_runl(NULL, "sh", "-c",
                      "clevis encrypt tpm2 \"$1\" < \"$2\" > \"$3\" 2> \"$4\"; st=$?; "
                      "tpm2_flushcontext -l 2>/dev/null; exit $st",
                      "sh", cfg, in, out, errf, NULL);
        if (errout)
                *errout = tap_read_file(errf, NULL);
        if (st == 0)
                jwe = tap_read_file(out, NULL);
        free(in);
        free(out);
        free(errf);
        return jwe;
}

/* clevis decrypt < jwe: exit status, stdout in *pt (may be NULL). */
static int clevis_decrypt(const char *jwe, char **pt)
{
        char *in = tap_strf("%s/in.jwe", dir), *out = tap_strf("%s/clevis.pt", dir);
        int st;

        tap_write_file(in, jwe);
        st = tap_runl(NULL, "sh", "-c", "clevis decrypt < \"$1\" > \"$2\" 2>/dev/null", "sh", in,
                      out, NULL);
        if (pt)
                *pt = st == 0 ? tap_read_file(out, NULL) : NULL;
        free(in);
        free(out);
        return st;
}

static int vigil_encrypt(const char *cfg_text, char **jwe, struct vg_error *err)
{
        json_t *cfg = json_loads(cfg_text, 0, NULL);
        int r;

        if (!cfg)
                tap_bail("bad test config %s", cfg_text);
        *err = (struct vg_error){ 0 };
        r = vg_pin_tpm2_encrypt(cfg, secret, strlen(secret), NULL, jwe, err);
        json_decref(cfg);
        return r;
}

/* Decrypt; *pt gets the plaintext (or NULL); returns the error code. */
static int vigil_decrypt_opts(const char *jwe, const struct vg_pin_opts *opts, char **pt,
                              struct vg_error *err)
{
        struct vg_jwe j = { 0 };
        uint8_t *out = NULL;
        size_t len = 0;
        int r;

        *pt = NULL;
        *err = (struct vg_error){ 0 };
        r = vg_jwe_parse(jwe, strlen(jwe), &j, err);
        if (r < 0)
                return r;
        r = vg_pin_tpm2_decrypt(&j, opts, &out, &len, err);
        vg_jwe_clear(&j);
        if (r == 0)
                *pt = (char *)out;
        return r;
}

static int vigil_decrypt(const char *jwe, char **pt, struct vg_error *err)
{
        return vigil_decrypt_opts(jwe, NULL, pt, err);
}

/* The header's clevis.tpm2 object (new reference). */
static json_t *tpm2_header(const char *jwe)
{
        struct vg_jwe j = { 0 };
        struct vg_error err = { 0 };
        json_t *t;

        if (vg_jwe_parse(jwe, strlen(jwe), &j, &err) < 0)
                return NULL;
        t = json_incref(json_object_get(json_object_get(j.header, "clevis"), "tpm2"));
        vg_jwe_clear(&j);
        return t;
}

/* jwk_pub decoded, up to and including authPolicy: type, nameAlg, attributes, policy (the
 * unique field differs between any two objects). */
static char *pub_head_hex(const char *jwe)
{
        json_t *t = tpm2_header(jwe);
        const char *s = json_string_value(json_object_get(t, "jwk_pub"));
        uint8_t *raw = NULL;
        size_t len = 0, head;
        char *hex = NULL;

        if (s && vg_b64_decode(s, strlen(s), VG_B64_URL, &raw, &len) == 0 && len > 12) {
                /* size(2) type(2) nameAlg(2) attributes(4) authPolicy(2 + n) */
                head = 12 + ((size_t)raw[10] << 8 | raw[11]);
                if (head <= len)
                        hex = vg_hex_encode(raw, head);
        }
        free(raw);
        json_decref(t);
        return hex ? tap_keep(hex) : "(none)";
}

/* The header's clevis.tpm2 without jwk_pub/jwk_priv, as sorted compact JSON. */
static char *tpm2_params_text(const char *jwe)
{
        json_t *t = tpm2_header(jwe);
        char *s;

        if (!t)
                return "(none)";
        json_object_del(t, "jwk_pub");
        json_object_del(t, "jwk_priv");
        s = json_dumps(t, JSON_SORT_KEYS | JSON_COMPACT);
        json_decref(t);
        return s ? tap_keep(s) : "(none)";
}

/* A JWE whose clevis.tpm2.<field> is replaced by value. */
static char *with_field(const char *jwe, const char *field, const char *value)
{
        struct vg_jwe j = { 0 };
        struct vg_error err = { 0 };
        char *hdr, *b64, *out;

        if (vg_jwe_parse(jwe, strlen(jwe), &j, &err) < 0)
                tap_bail("%s", err.msg);
        json_object_set_new(json_object_get(json_object_get(j.header, "clevis"), "tpm2"), field,
                            json_string(value));
        hdr = json_dumps(j.header, JSON_SORT_KEYS | JSON_COMPACT);
        b64 = vg_b64_encode(hdr, strlen(hdr), VG_B64_URL);
        out = tap_strf("%s%s", b64, strchr(jwe, '.'));
        free(hdr);
        free(b64);
        vg_jwe_clear(&j);
        return tap_keep(out);
}

static void extend(unsigned pcr, const char *what)
{
        _cleanup_tpm_ struct vg_tpm *t = NULL;
        struct vg_error err = { 0 };
        uint8_t d[VG_HASH_MAX_SIZE];

        if (vg_tpm_open(vg_swtpm_tcti(tpm), 0, &t, &err) < 0)
                tap_bail("%s", err.msg);
        for (int a = VG_HASH_SHA1; a <= VG_HASH_SHA256; a++) {
                vg_hash((enum vg_hash_alg)a, what, strlen(what), d);
                if (vg_tpm_pcr_extend(t, pcr, (enum vg_hash_alg)a, d, &err) < 0)
                        tap_bail("%s", err.msg);
        }
}

static void read_pcr(unsigned pcr, enum vg_hash_alg alg, uint8_t *out)
{
        _cleanup_tpm_ struct vg_tpm *t = NULL;
        struct vg_error err = { 0 };
        struct vg_tpm_pcrs v;

        if (vg_tpm_open(vg_swtpm_tcti(tpm), 0, &t, &err) < 0 ||
            vg_tpm_pcr_read(t, alg, 1u << pcr, &v, &err) < 0)
                tap_bail("%s", err.msg);
        memcpy(out, v.value[pcr], vg_hash_size(alg));
}

/* Both ways for one configuration. */
static void cross(const char *cfg)
{
        struct vg_error err = { 0 };
        char *cjwe, *vjwe = NULL, *pt = NULL, *cerr = NULL;
        int r;

        cjwe = clevis_encrypt(cfg, &cerr);
        if (!ok(cjwe != NULL, "clevis encrypt tpm2 '%s'", cfg))
                tap_diag("%s", cerr ? cerr : "");
        free(cerr);
        if (cjwe) {
                r = vigil_decrypt(cjwe, &pt, &err);
                is_int(r, 0, "vigil decrypts clevis's JWE for %s (%s)", cfg, err.msg);
                is_str(pt, secret, "  plaintext");
                free(pt);
        }
        r = vigil_encrypt(cfg, &vjwe, &err);
        is_int(r, 0, "vigil encrypt tpm2 %s (%s)", cfg, err.msg);
        if (r == 0) {
                is_int(clevis_decrypt(vjwe, &pt), 0, "clevis decrypts vigil's JWE for %s", cfg);
                is_str(pt, secret, "  plaintext");
                free(pt);
                r = vigil_decrypt(vjwe, &pt, &err);
                is_int(r, 0, "vigil decrypts its own JWE for %s (%s)", cfg, err.msg);
                free(pt);
        }
        /* Without pcr_bank the defaults differ: clevis 19 takes sha1, vigil sha256. */
        if (cjwe && vjwe && !(strstr(cfg, "pcr_ids") && !strstr(cfg, "pcr_bank"))) {
                /* Same header parameters, same object type, nameAlg, attributes and policy. */
                is_str(tpm2_params_text(vjwe), tpm2_params_text(cjwe),
                       "  clevis.tpm2 parameters equal clevis's for %s", cfg);
                is_str(pub_head_hex(vjwe), pub_head_hex(cjwe),
                       "  sealed object's type/nameAlg/attributes/authPolicy equal clevis's");
        }
        free(cjwe);
        free(vjwe);
        is_int(vg_swtpm_sh(tpm, dir, NULL,
                           "test -z \"$(tpm2_getcap handles-transient)"
                           "$(tpm2_getcap handles-loaded-session)\""),
               0, "  nothing left loaded in the TPM");
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* VIGIL_BENCH_TPM2=N: median of N decrypts each way (not a check). */
static void bench(void)
{
        const char *env = getenv("VIGIL_BENCH_TPM2");
        int n = env ? atoi(env) : 0;
        const char *cfgs[] = { "{}", "{\"pcr_ids\":\"7\"}" };

        if (n <= 0)
                return;
        for (size_t c = 0; c < VG_ARRAY_SIZE(cfgs); c++) {
                double *v = calloc((size_t)n, sizeof(double)),
                       *cl = calloc((size_t)n, sizeof(double));
                struct vg_error err = { 0 };
                char *jwe = NULL, *pt;

                if (vigil_encrypt(cfgs[c], &jwe, &err) < 0)
                        tap_bail("%s", err.msg);
                for (int i = 0; i < n; i++) {
                        double t0 = now_ms();

                        if (vigil_decrypt(jwe, &pt, &err) < 0)
                                tap_bail("%s", err.msg);
                        v[i] = now_ms() - t0;
                        free(pt);
                        t0 = now_ms();
                        if (clevis_decrypt(jwe, NULL) != 0)
                                tap_bail("clevis decrypt failed");
                        cl[i] = now_ms() - t0;
                }
                qsort(v, (size_t)n, sizeof(double), cmp_double);
                qsort(cl, (size_t)n, sizeof(double), cmp_double);
                tap_diag("bench tpm2 %s: median of %d decrypts: vigil %.2f ms, clevis %.1f ms",
                         cfgs[c], n, v[n / 2], cl[n / 2]);
                free(jwe);
                free(v);
                free(cl);
        }
}

/* sh -c script with $VIGIL (the vigil CLI) and $D (the test directory); stdout+stderr in
 * *out. */
static int sh(char **out, const char *script)
{
        return tap_runl(out, "sh", "-c", script, NULL);
}

/* vigil pin encrypt/decrypt, alone and as a share of sss, against clevis. */
static void cli(void)
{
        char *out = NULL;

        tap_write_file(tap_keep(tap_strf("%s/pt", dir)), secret);
        is_int(sh(&out, "$VIGIL pin encrypt tpm2 '{\"pcr_ids\":\"7\"}' < $D/pt > $D/v.jwe && "
                        "clevis decrypt < $D/v.jwe"),
               0, "vigil pin encrypt tpm2 | clevis decrypt");
        is_str(out, secret, "  plaintext");
        free(out);
        is_int(sh(&out, "clevis encrypt tpm2 '{\"pcr_bank\":\"sha256\",\"pcr_ids\":\"7\"}' "
                        "< $D/pt > $D/c.jwe 2>/dev/null && tpm2_flushcontext -l && $VIGIL pin "
                        "decrypt < $D/c.jwe"),
               0, "clevis encrypt tpm2 | vigil pin decrypt");
        is_str(out, secret, "  plaintext");
        free(out);
        is_int(sh(&out, "$VIGIL pin encrypt sss '{\"t\":1,\"pins\":{\"tpm2\":[{},"
                        "{\"pcr_ids\":\"7\"}]}}' < $D/pt > $D/vs.jwe && clevis decrypt < $D/vs.jwe "
                        "2>/dev/null"),
               0, "vigil pin encrypt sss over two tpm2 pins | clevis decrypt");
        is_str(out, secret, "  plaintext");
        free(out);
        is_int(sh(&out, "clevis encrypt sss '{\"t\":2,\"pins\":{\"tpm2\":[{},{\"pcr_bank\":"
                        "\"sha1\",\"pcr_ids\":\"7\"}]}}' < $D/pt > $D/cs.jwe 2>/dev/null && "
                        "tpm2_flushcontext -l && $VIGIL pin decrypt < $D/cs.jwe"),
               0, "clevis encrypt sss t=2 over two tpm2 pins | vigil pin decrypt");
        is_str(out, secret, "  plaintext");
        free(out);
        extend(7, "cli");
        is_int(sh(&out, "$VIGIL pin decrypt < $D/v.jwe"), 1,
               "vigil pin decrypt after PCR 7 changed: exit 1");
        is_str(out,
               "vigil pin: tpm2: the PCR policy does not match: PCR 7 (sha256) changed since "
               "the key was sealed\n",
               "  the message names PCR 7");
        free(out);
        is_int(sh(&out, "$VIGIL pin decrypt < $D/cs.jwe >/dev/null 2>&1"), 1,
               "the sss t=2 JWE no longer opens with vigil");
        free(out);
        is_int(sh(&out, "$VIGIL pin decrypt < $D/vs.jwe"), 0,
               "the sss t=1 JWE still opens through its PCR-less share");
        free(out);
}

static void bad_configs(void)
{
        static const struct {
                const char *cfg, *msg;
        } cases[] = {
                { "{\"pcr\":\"7\"}", "unknown key \"pcr\"" },
                { "{\"hash\":\"md5\"}", "hash \"md5\": expected sha1, sha256, sha384 or sha512" },
                { "{\"key\":\"dsa\"}", "key \"dsa\": expected ecc or rsa" },
                { "{\"hash\":256}", "hash: expected a string" },
                { "{\"pcr_ids\":\"0,99\"}", "pcr_ids \"0,99\": expected PCR numbers 0..23" },
                { "{\"pcr_ids\":\"7;8\"}", "pcr_ids \"7;8\"" },
                { "{\"pcr_ids\":[7,\"x\"]}", "pcr_ids \"7,x\"" },
                { "{\"pcr_ids\":[7,{}]}", "pcr_ids[1]: expected a PCR number" },
                { "{\"pcr_ids\":7}", "pcr_ids: expected a string like \"0,7\"" },
                { "{\"pcr_bank\":\"sha384\",\"pcr_ids\":\"7\"}",
                  "PCR bank sha384: PCRs 7 are not allocated on this TPM (banks with PCRs: sha1, "
                  "sha256)" },
                { "{\"pcr_digest\":\"AAAA\"}", "pcr_digest needs pcr_ids" },
                { "{\"pcr_ids\":\"7\",\"pcr_digest\":\"AAAA\"}",
                  "pcr_digest: 3 bytes, expected 32 (the 1 values of PCRs 7 in the sha256 bank" },
                { "{\"pcr_ids\":\"7\",\"pcr_digest\":\"!!\"}", "pcr_digest: not base64" },
                { "[]", "tpm2 config: expected a JSON object" },
        };

        for (size_t i = 0; i < VG_ARRAY_SIZE(cases); i++) {
                struct vg_error err = { 0 };
                char *jwe = NULL;
                int r = vigil_encrypt(cases[i].cfg, &jwe, &err);

                ok(r < 0 && !jwe, "bad config %s refused", cases[i].cfg);
                contains(err.msg, cases[i].msg, "  error names it");
                free(jwe);
        }
}

int main(void)
{
        struct vg_swtpm_opts o = { .banks = VG_SWTPM_BANK_SHA1 | VG_SWTPM_BANK_SHA256 };
        struct vg_error err = { 0 };
        char *jwe_nopcr = NULL, *jwe_pcr7 = NULL, *cjwe_pcr7 = NULL, *pt = NULL, *cerr = NULL;
        json_t *cfg = NULL;
        char *s;
        int r;

        dir = tap_tmpdir();
        if (vg_swtpm_start(&o, &tpm, &err) < 0)
                tap_bail("swtpm: %s", err.msg);
        setenv("TPM2TOOLS_TCTI", vg_swtpm_tcti(tpm), 1);
        /* tpm2-tss logs every TPM error it sees to stderr; the messages checked are vigil's. */
        setenv("TSS2_LOG", "all+none", 1);

        cross("{}");
        cross("{\"pcr_ids\":\"7\"}");
        cross("{\"pcr_bank\":\"sha1\",\"pcr_ids\":[0,\"7\"]}");
        cross("{\"key\":\"rsa\",\"pcr_bank\":\"sha256\",\"pcr_ids\":\"0, 7\"}");
        cross("{\"hash\":\"sha1\"}");

        /* hash sha384 with PCRs: the policy session must use the object's nameAlg (clevis 19's
         * tpm2_unseal uses a sha256 session and cannot open these, clevis PR #573). */
        {
                char *v = NULL,
                     *c = clevis_encrypt(
                         "{\"hash\":\"sha384\",\"pcr_bank\":\"sha256\",\"pcr_ids\":\"7\"}", NULL);

                r = vigil_encrypt("{\"hash\":\"sha384\",\"pcr_ids\":\"7\"}", &v, &err);
                is_int(r, 0, "vigil encrypt hash sha384 with PCR 7 (%s)", err.msg);
                r = v ? vigil_decrypt(v, &pt, &err) : -1;
                is_int(r, 0, "  and vigil decrypts it (%s)", err.msg);
                free(pt);
                ok(c != NULL, "clevis encrypt hash sha384 with PCR 7");
                r = c ? vigil_decrypt(c, &pt, &err) : -1;
                is_int(r, 0, "  vigil decrypts it (%s)", err.msg);
                is_str(pt, secret, "  plaintext");
                free(pt);
                free(v);
                free(c);
        }
        /* An empty pcr_ids means no policy, as in clevis. */
        {
                char *v = NULL;

                r = vigil_encrypt("{\"pcr_ids\":\"\"}", &v, &err);
                is_str(r == 0 ? tpm2_params_text(v) : err.msg,
                       "{\"hash\":\"sha256\",\"key\":\"ecc\"}",
                       "pcr_ids \"\" seals without a policy, as clevis does");
                free(v);
        }

        /* The configuration clevis luks list shows. */
        r = vigil_encrypt("{\"pcr_ids\":\"7\"}", &jwe_pcr7, &err);
        is_int(r, 0, "vigil encrypt pcr_ids 7 (%s)", err.msg);
        {
                json_t *t = tpm2_header(jwe_pcr7);

                r = vg_pin_tpm2_config(t, &cfg, &err);
                is_int(r, 0, "vg_pin_tpm2_config (%s)", err.msg);
                s = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
                is_str(s,
                       "{\"hash\":\"sha256\",\"key\":\"ecc\",\"pcr_bank\":\"sha256\",\"pcr_ids\":"
                       "\"7\"}",
                       "  clevis luks list's configuration, in its order");
                free(s);
                json_decref(cfg);
                json_decref(t);
        }
        r = vigil_encrypt("{}", &jwe_nopcr, &err);
        is_int(r, 0, "vigil encrypt without PCRs (%s)", err.msg);
        cjwe_pcr7 = clevis_encrypt("{\"pcr_bank\":\"sha256\",\"pcr_ids\":\"7\"}", &cerr);
        ok(cjwe_pcr7 != NULL, "clevis encrypt pcr_ids 7 (%s)", cerr ? cerr : "");
        free(cerr);

        /* A future PCR 7 value: sealed now, opens only after the extend below. */
        {
                uint8_t v[32], d[32], buf[64];
                char *b64, *c, *vf = NULL, *cf = NULL;

                read_pcr(7, VG_HASH_SHA256, v);
                vg_hash(VG_HASH_SHA256, "boot 2", 6, d);
                memcpy(buf, v, 32);
                memcpy(buf + 32, d, 32);
                vg_hash(VG_HASH_SHA256, buf, 64, v); /* the value after extend(7, "boot 2") */
                b64 = vg_b64_encode(v, 32, VG_B64_URL);
                c = tap_strf("{\"pcr_bank\":\"sha256\",\"pcr_ids\":\"7\",\"pcr_digest\":\"%s\"}",
                             b64);
                r = vigil_encrypt(c, &vf, &err);
                is_int(r, 0, "vigil encrypt with pcr_digest (%s)", err.msg);
                cf = clevis_encrypt(c, NULL);
                ok(cf != NULL, "clevis encrypt with pcr_digest");
                if (vf) {
                        r = vigil_decrypt(vf, &pt, &err);
                        is_int(r, -EACCES,
                               "vigil's pcr_digest JWE does not open before the extend");
                        free(pt);
                }
                if (vf && cf)
                        is_str(pub_head_hex(vf), pub_head_hex(cf),
                               "  same authPolicy as clevis's for the same pcr_digest");

                extend(7, "boot 2");

                if (vf) {
                        r = vigil_decrypt(vf, &pt, &err);
                        is_int(r, 0,
                               "vigil's pcr_digest JWE opens with vigil after the extend (%s)",
                               err.msg);
                        free(pt);
                        is_int(clevis_decrypt(vf, NULL), 0, "  and with clevis");
                }
                if (cf) {
                        r = vigil_decrypt(cf, &pt, &err);
                        is_int(r, 0,
                               "clevis's pcr_digest JWE opens with vigil after the extend (%s)",
                               err.msg);
                        free(pt);
                }
                free(b64);
                free(c);
                free(vf);
                free(cf);
        }

        /* PCR 7 moved since jwe_pcr7 and cjwe_pcr7 were sealed. */
        r = vigil_decrypt(jwe_pcr7, &pt, &err);
        is_int(r, -EACCES, "vigil refuses its JWE after PCR 7 changed");
        is_str(err.msg,
               "tpm2: the PCR policy does not match: PCR 7 (sha256) changed since the key was "
               "sealed",
               "  and says which PCR");
        ok(clevis_decrypt(jwe_pcr7, NULL) != 0, "clevis refuses it too");
        if (cjwe_pcr7) {
                r = vigil_decrypt(cjwe_pcr7, &pt, &err);
                contains(err.msg, "PCR 7 (sha256) changed since the key was sealed",
                         "vigil refuses clevis's PCR 7 JWE after the extend, naming PCR 7");
                ok(clevis_decrypt(cjwe_pcr7, NULL) != 0, "clevis refuses its own too");
        }
        {
                char *two = NULL;

                vigil_encrypt("{\"pcr_ids\":\"0,7\"}", &two, &err);
                extend(0, "firmware update");
                r = vigil_decrypt(two, &pt, &err);
                is_str(err.msg,
                       "tpm2: the PCR policy does not match: one of PCRs 0,7 (sha256) changed "
                       "since the key was sealed",
                       "two PCRs: the error names the set");
                free(two);
        }

        /* Malformed headers: the field is named. */
        r = vigil_decrypt(with_field(jwe_nopcr, "jwk_pub", "AAAA"), &pt, &err);
        contains(err.msg, "JWE clevis.tpm2.jwk_pub: not a TPM2B_PUBLIC", "malformed jwk_pub");
        r = vigil_decrypt(with_field(jwe_nopcr, "jwk_pub", "*"), &pt, &err);
        contains(err.msg, "JWE clevis.tpm2.jwk_pub: not base64url", "jwk_pub not base64url");
        r = vigil_decrypt(with_field(jwe_nopcr, "jwk_priv", "AAEC"), &pt, &err);
        contains(err.msg, "JWE clevis.tpm2.jwk_priv: malformed, the TPM refuses it",
                 "malformed jwk_priv (a well-formed TPM2B holding garbage)");
        r = vigil_decrypt(with_field(jwe_nopcr, "jwk_priv", "AAEAAAA"), &pt, &err);
        contains(err.msg, "JWE clevis.tpm2.jwk_priv: not a TPM2B_PRIVATE (5 bytes, trailing bytes)",
                 "jwk_priv with bytes after the TPM2B");
        r = vigil_decrypt(with_field(jwe_nopcr, "key", "ecc999"), &pt, &err);
        contains(err.msg, "JWE clevis.tpm2.key \"ecc999\"", "unknown key type in the header");
        r = vigil_decrypt(with_field(jwe_nopcr, "pcr_ids", "7"), &pt, &err);
        contains(err.msg, "JWE clevis.tpm2.pcr_bank: missing", "pcr_ids without pcr_bank");
        /* Another object's private part: integrity check fails at load. */
        {
                json_t *a = tpm2_header(jwe_nopcr), *b = tpm2_header(jwe_pcr7);
                const char *bpriv = json_string_value(json_object_get(b, "jwk_priv"));

                r = vigil_decrypt(with_field(jwe_nopcr, "jwk_priv", bpriv), &pt, &err);
                contains(err.msg,
                         "tpm2: the sealed key does not load under this TPM's ecc owner "
                         "primary key",
                         "mismatched jwk_pub/jwk_priv: the key does not load");
                json_decref(a);
                json_decref(b);
        }
        {
                struct vg_pin_opts po = { .tcti = "swtpm:path=/nonexistent/swtpm.sock" };

                r = vigil_decrypt_opts(jwe_nopcr, &po, &pt, &err);
                is_int(r, -ENODEV, "no TPM at the TCTI");
                contains(err.msg, "tpm2: cannot open TCTI swtpm:path=/nonexistent/swtpm.sock",
                         "  the error names the TCTI");
        }

        bad_configs();
        setenv("D", dir, 1);
        if (getenv("VIGIL_CLI"))
                setenv("VIGIL", getenv("VIGIL_CLI"), 1);
        else
                setenv("VIGIL", "vigil", 1);
        cli();
        bench();

        /* Clearing the owner hierarchy (new seed) orphans every sealed key. */
        is_int(vg_swtpm_sh(tpm, dir, NULL, "tpm2_clear -c p"), 0, "tpm2_clear");
        r = vigil_decrypt(jwe_nopcr, &pt, &err);
        is_int(r, -ENOKEY, "after tpm2_clear the key does not load");
        contains(err.msg, "or the owner hierarchy was cleared since", "  and the error says why");

        free(jwe_nopcr);
        free(jwe_pcr7);
        free(cjwe_pcr7);
        vg_swtpm_free(tpm);
        return tap_done();
}
