/* vigil tests: Keylime quote strings built from tpm2_quote output on a real swtpm, verified by
 * our code and by tpm2_checkquote; every tampering fails with its own status and message. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "quote.h"
#include "swtpm.h"
#include "tap.h"
#include "tpm_public.h"

/* The Keylime string from tpm2_quote's -m, -s and -o files. */
static char *keylime_string(const char *dir, const char *tag)
{
        _cleanup_free_ uint8_t *m = NULL, *s = NULL, *p = NULL;
        _cleanup_free_ char *fm = NULL, *fs = NULL, *fp = NULL, *bm = NULL, *bs = NULL, *bp = NULL;
        size_t ml, sl, pl;
        char *out;

        if (asprintf(&fm, "%s.msg", tag) < 0 || asprintf(&fs, "%s.sig", tag) < 0 ||
            asprintf(&fp, "%s.pcrs", tag) < 0)
                tap_bail("oom");
        m = vg_swtpm_slurp(dir, fm, &ml);
        s = vg_swtpm_slurp(dir, fs, &sl);
        p = vg_swtpm_slurp(dir, fp, &pl);
        if (!m || !s || !p)
                return NULL;
        bm = vg_b64_encode(m, ml, VG_B64_STD);
        bs = vg_b64_encode(s, sl, VG_B64_STD);
        bp = vg_b64_encode(p, pl, VG_B64_STD);
        if (asprintf(&out, "r%s:%s:%s", bm, bs, bp) < 0)
                tap_bail("oom");
        return out;
}

static struct vg_tpm_public *load_pub(const char *dir, const char *name)
{
        _cleanup_free_ uint8_t *raw = NULL;
        struct vg_tpm_public *pub = NULL;
        struct vg_error err = { 0 };
        size_t len;

        raw = vg_swtpm_slurp(dir, name, &len);
        if (!raw || vg_tpm_public_parse(raw, len, &pub, &err) < 0)
                tap_bail("%s: %s", name, vg_error_str(&err));
        return pub;
}

/* Parse and verify; return the status. */
static enum vg_quote_status verify(const char *s, EVP_PKEY *ak, const char *nonce,
                                   enum vg_hash_alg alg, struct vg_error *err)
{
        _cleanup_quote_ struct vg_quote *q = NULL;
        enum vg_quote_status st = VG_QUOTE_OK;
        struct vg_quote_expect exp = { .nonce = (const uint8_t *)nonce,
                                       .nonce_len = strlen(nonce),
                                       .hash_alg = alg };

        if (vg_quote_parse(s, strlen(s), &q, err) < 0)
                return VG_QUOTE_MALFORMED;
        vg_quote_verify(q, ak, &exp, &st, err);
        return st;
}

/* Flip one byte of the decoded field (0 attest, 1 signature, 2 pcrblob) at offset off. */
static char *tamper(const char *s, int field, size_t off)
{
        _cleanup_free_ char *copy = strdup(s + 1);
        char *parts[3], *save = NULL, *out;
        _cleanup_free_ uint8_t *raw = NULL;
        _cleanup_free_ char *b64 = NULL;
        size_t len;

        parts[0] = strtok_r(copy, ":", &save);
        parts[1] = strtok_r(NULL, ":", &save);
        parts[2] = strtok_r(NULL, ":", &save);
        if (vg_b64_decode(parts[field], strlen(parts[field]), VG_B64_STD, &raw, &len) < 0 ||
            off >= len)
                tap_bail("tamper: bad field");
        raw[off] ^= 0x01;
        b64 = vg_b64_encode(raw, len, VG_B64_STD);
        parts[field] = b64;
        if (asprintf(&out, "r%s:%s:%s", parts[0], parts[1], parts[2]) < 0)
                tap_bail("oom");
        return out;
}

static void expect_fail(const char *s, EVP_PKEY *ak, const char *nonce, enum vg_hash_alg alg,
                        enum vg_quote_status want, const char *needle, const char *what)
{
        struct vg_error err = { 0 };

        is_str(vg_quote_status_str(verify(s, ak, nonce, alg, &err)), vg_quote_status_str(want),
               "%s", what);
        contains(vg_error_str(&err), needle, "  error: %s", vg_error_str(&err));
}

/* Offset of the pcrblob's first digest value in digest list 0 (after size field). */
#define BLOB_FIRST_DIGEST (4 + 16 * 8 + 4 + 4 + 2)

static void quote_suite(struct vg_swtpm *tpm, const char *dir, const char *ak, const char *label,
                        EVP_PKEY *other_ak)
{
        _cleanup_free_ char *s = NULL, *pub = NULL, *out = NULL;
        _cleanup_tpm_public_ struct vg_tpm_public *akp = NULL;
        struct vg_error err = { 0 };
        const char *nonce = "Ai5M5SjYjnkyv4P7itH1";
        char *t;

        if (asprintf(&pub, "%s.pub", ak) < 0)
                tap_bail("oom");
        akp = load_pub(dir, pub);
        is_int(vg_swtpm_sh(
                   tpm, dir, NULL,
                   "tpm2_quote -c %s.ctx -l sha256:0,1,10,16 -q $(printf %%s %s | od -An -tx1 | "
                   "tr -d ' \\n') -m %s.msg -s %s.sig -o %s.pcrs -g sha256 --scheme %s "
                   ">/dev/null; fl",
                   ak, nonce, label, label, label, label),
               0, "%s: tpm2_quote with the nonce", label);
        s = keylime_string(dir, label);
        if (!ok(s, "%s: quote files read", label))
                return;
        is_int(verify(s, akp->pkey, nonce, VG_HASH_SHA256, &err), VG_QUOTE_OK,
               "%s: the quote verifies", label);
        if (err.code)
                tap_diag("%s", vg_error_str(&err));
        /* tpm2_checkquote (5.4) verifies RSA quotes with PKCS#1 v1.5 only. */
        if (strcmp(label, "rsapss") != 0)
                is_int(
                    vg_swtpm_sh(tpm, dir, &out,
                                "tpm2_checkquote -u %s -m %s.msg -s %s.sig -f %s.pcrs -g sha256 -q "
                                "$(printf %%s %s | od -An -tx1 | tr -d ' \\n') >/dev/null",
                                pub, label, label, label, nonce),
                    0, "%s: tpm2_checkquote agrees it is good", label);
        expect_fail(s, akp->pkey, "Ai5M5SjYjnkyv4P7itH2", VG_HASH_SHA256, VG_QUOTE_NONCE_MISMATCH,
                    "not the nonce", "wrong nonce");
        ok(vg_swtpm_sh(
               tpm, dir, NULL,
               "tpm2_checkquote -u %s -m %s.msg -s %s.sig -f %s.pcrs -g sha256 -q 00 >/dev/null",
               pub, label, label, label) != 0,
           "%s: tpm2_checkquote also refuses the wrong nonce", label);
        expect_fail(s, akp->pkey, nonce, VG_HASH_SHA384, VG_QUOTE_HASH_ALG_MISMATCH,
                    "expected sha384", "wrong hash alg");
        expect_fail(s, other_ak, nonce, VG_HASH_SHA256,
                    EVP_PKEY_is_a(other_ak, "EC") == EVP_PKEY_is_a(akp->pkey, "EC")
                        ? VG_QUOTE_BAD_SIGNATURE
                        : VG_QUOTE_KEY_MISMATCH,
                    "AK", "wrong AK");
        t = tamper(s, 0, 40);
        expect_fail(t, akp->pkey, nonce, VG_HASH_SHA256, VG_QUOTE_BAD_SIGNATURE, "does not verify",
                    "a flipped byte in TPMS_ATTEST");
        free(t);
        t = tamper(s, 1, 20);
        expect_fail(t, akp->pkey, nonce, VG_HASH_SHA256, VG_QUOTE_BAD_SIGNATURE, "does not verify",
                    "a flipped byte in the signature");
        free(t);
        for (unsigned i = 0; i < 4; i++) {
                t = tamper(s, 2, BLOB_FIRST_DIGEST + i * 66 + 5);
                expect_fail(t, akp->pkey, nonce, VG_HASH_SHA256, VG_QUOTE_PCR_DIGEST_MISMATCH,
                            "(sha256 PCRs 0, 1, 10, 16)", "a flipped byte in a PCR value");
                free(t);
        }
        /* Selection: drop PCR16 from the pcrblob (a consistent blob, 3 PCRs). */
        {
                _cleanup_quote_ struct vg_quote *q = NULL;
                _cleanup_free_ uint8_t *blob = NULL;
                _cleanup_free_ char *again = NULL, *b64 = NULL, *forged = NULL;
                enum vg_quote_status st;
                struct vg_quote_expect exp = { .nonce = (const uint8_t *)nonce,
                                               .nonce_len = strlen(nonce),
                                               .hash_alg = VG_HASH_SHA256 };
                size_t len;

                if (!ok(vg_quote_parse(s, strlen(s), &q, &err) == 0, "%s: parses", label))
                        return;
                ok(vg_quote_format(q, &again) == 0 && strcmp(again, s) == 0,
                   "%s: re-encoding reproduces the string", label);
                exp.sig_algs = 1u << (q->sig.alg == VG_QUOTE_SIG_ECDSA ? VG_QUOTE_SIG_RSASSA
                                                                       : VG_QUOTE_SIG_ECDSA);
                vg_quote_verify(q, akp->pkey, &exp, &st, &err);
                is_str(vg_quote_status_str(st), vg_quote_status_str(VG_QUOTE_SIG_ALG_REFUSED),
                       "%s: a scheme not accepted", label);
                q->pcrs.selection.bank[0].mask &= ~(1u << 16);
                vg_pcrblob_build(&q->pcrs, &blob, &len);
                b64 = vg_b64_encode(blob, len, VG_B64_STD);
                if (asprintf(&forged, "%.*s%s", (int)(strrchr(s, ':') + 1 - s), s, b64) < 0)
                        tap_bail("oom");
                expect_fail(forged, akp->pkey, nonce, VG_HASH_SHA256, VG_QUOTE_SELECTION_MISMATCH,
                            "covers sha256 PCRs 0, 1, 10, 16 but the PCRs sent are sha256 PCRs "
                            "0, 1, 10",
                            "selection mismatch");
        }
}

static void multi_bank(struct vg_swtpm *tpm, const char *dir)
{
        _cleanup_free_ char *s = NULL;
        _cleanup_quote_ struct vg_quote *q = NULL;
        _cleanup_tpm_public_ struct vg_tpm_public *akp = load_pub(dir, "rsa_ak.pub");
        struct vg_error err = { 0 };
        size_t len;
        _cleanup_free_ uint8_t *blob = NULL;

        is_int(vg_swtpm_sh(
                   tpm, dir, NULL,
                   "tpm2_pcrextend 3:sha1=%s,sha256=%s; "
                   "tpm2_quote -c rsa_ak.ctx -l sha1:0,1,2,3,4,5,6,7,8,9+sha256:3,16 -q 6e6f6e6365 "
                   "-m mb.msg -s mb.sig -o mb.pcrs -g sha256 >/dev/null; fl",
                   "0101010101010101010101010101010101010101",
                   "0202020202020202020202020202020202020202020202020202020202020202"),
               0, "sha1+sha256 quote with 12 PCRs");
        blob = vg_swtpm_slurp(dir, "mb.pcrs", &len);
        is_int(len, 4 + 128 + 4 + 2 * 532, "tpm2-tools wrote two digest lists");
        s = keylime_string(dir, "mb");
        is_int(verify(s, akp->pkey, "nonce", VG_HASH_SHA256, &err), VG_QUOTE_OK,
               "a quote over two banks and two digest lists verifies");
        if (err.code)
                tap_diag("%s", vg_error_str(&err));
        if (vg_quote_parse(s, strlen(s), &q, &err) == 0) {
                uint8_t want[32];
                const uint8_t *v = vg_pcr_value(&q->pcrs, VG_HASH_SHA256, 3);

                uint8_t d[32];

                memset(want, 0, sizeof(want));
                memset(d, 2, sizeof(d));
                vg_hash_extend(VG_HASH_SHA256, want, d);
                ok(v && memcmp(v, want, 32) == 0, "sha256 PCR 3 is the extended value");
                ok(vg_pcr_value(&q->pcrs, VG_HASH_SHA1, 9) != NULL, "sha1 PCR 9 is there");
                ok(vg_pcr_value(&q->pcrs, VG_HASH_SHA1, 16) == NULL, "sha1 PCR 16 is not");
        }
}

static void pcr16(struct vg_swtpm *tpm, const char *dir)
{
        static const char pem[] = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n";
        uint8_t h[32], want[32];
        _cleanup_free_ char *hex = NULL, *out = NULL, *s = NULL;
        _cleanup_quote_ struct vg_quote *q = NULL;
        struct vg_error err = { 0 };
        enum vg_quote_status st;

        vg_hash(VG_HASH_SHA256, pem, strlen(pem), h);
        hex = vg_hex_encode(h, 32);
        vg_quote_pcr16_expected(VG_HASH_SHA256, pem, strlen(pem), want);
        is_int(vg_swtpm_sh(tpm, dir, &out,
                           "tpm2_pcrreset 16; tpm2_pcrextend 16:sha256=%s; "
                           "tpm2_quote -c rsa_ak.ctx -l sha256:16 -q 01 -m p16.msg -s p16.sig "
                           "-o p16.pcrs -g sha256 >/dev/null; fl; tpm2_pcrread sha256:16",
                           hex),
               0, "PCR16 reset and extended with H(pem)");
        {
                _cleanup_free_ char *wh = vg_hex_encode(want, 32);
                char upper[80];

                for (size_t i = 0; i < 64; i++)
                        upper[i] = (char)((wh[i] >= 'a') ? wh[i] - 32 : wh[i]);
                upper[64] = 0;
                contains(out, upper, "tpm2_pcrread shows the helper's expected PCR16");
        }
        s = keylime_string(dir, "p16");
        if (vg_quote_parse(s, strlen(s), &q, &err) == 0) {
                is_int(vg_quote_check_pcr16(&q->pcrs, VG_HASH_SHA256, pem, strlen(pem), &st, &err),
                       0, "the quote's PCR16 binds the NK");
                ok(vg_quote_check_pcr16(&q->pcrs, VG_HASH_SHA256, "x", 1, &st, &err) < 0 &&
                       st == VG_QUOTE_PCR16_MISMATCH,
                   "another NK does not match");
                ok(vg_quote_check_pcr16(&q->pcrs, VG_HASH_SHA1, pem, strlen(pem), &st, &err) < 0 &&
                       st == VG_QUOTE_PCR_MISSING,
                   "sha1 PCR16 not quoted");
        }
}

static void clock_checks(void)
{
        struct vg_clock_info a = { .clock = 1000, .reset_count = 2, .restart_count = 5, .safe = 1 };
        struct vg_clock_info b = a;
        struct vg_error err = { 0 };
        enum vg_quote_status st;

        b.clock = 2000;
        is_int(vg_quote_check_clock(&a, &b, &st, &err), 0, "clock advanced");
        is_int(vg_quote_check_clock(NULL, &b, &st, &err), 0, "first quote");
        vg_quote_check_clock(&b, &a, &st, &err);
        is_int(st, VG_QUOTE_CLOCK_STALLED, "clock went back");
        contains(vg_error_str(&err), "from 2000 to 1000", "  error: %s", vg_error_str(&err));
        b.safe = 0;
        vg_quote_check_clock(&a, &b, &st, &err);
        is_int(st, VG_QUOTE_CLOCK_UNSAFE, "safe=0");
        b.safe = 1;
        b.reset_count = 1;
        vg_quote_check_clock(&a, &b, &st, &err);
        is_int(st, VG_QUOTE_RESET_DECREASED, "resetCount decreased");
        b.reset_count = 2;
        b.restart_count = 4;
        vg_quote_check_clock(&a, &b, &st, &err);
        is_int(st, VG_QUOTE_RESTART_DECREASED, "restartCount decreased");
        b.reset_count = 3;
        b.restart_count = 0;
        is_int(vg_quote_check_clock(&a, &b, &st, &err), 0, "restartCount restarts after a reset");
}

static void rust_keylime_vector(void)
{
        _cleanup_free_ char *path = tap_shared_data("quote/rust-keylime-test-quote.txt");
        _cleanup_free_ char *s = NULL, *again = NULL;
        _cleanup_quote_ struct vg_quote *q = NULL;
        struct vg_error err = { 0 };
        uint8_t d[20];
        size_t len;

        s = tap_read_file(path, &len);
        while (s && len && (s[len - 1] == '\n' || s[len - 1] == '\r'))
                s[--len] = '\0';
        if (!ok(s, "rust-keylime test quote read"))
                return;
        if (!is_int(vg_quote_parse(s, len, &q, &err), 0, "rust-keylime test quote parses")) {
                tap_diag("%s", vg_error_str(&err));
                return;
        }
        is_mem(q->attest.extra_data, q->attest.extra_data_len, "TEST", 4, "its nonce is TEST");
        is_int(q->sig.alg, VG_QUOTE_SIG_RSASSA, "RSASSA");
        is_int(q->sig.hash, VG_HASH_SHA1, "sha1");
        is_int(q->pcrs.selection.count, 1, "one bank");
        is_int(q->pcrs.selection.bank[0].mask, 1u << 16, "PCR16");
        is_int(q->attest.clock_info.safe, 1, "clock safe");
        /* Without its AK, check the parts agree: pcrDigest = sha1(PCR16). */
        vg_hash(VG_HASH_SHA1, vg_pcr_value(&q->pcrs, VG_HASH_SHA1, 16), 20, d);
        is_mem(q->attest.pcr_digest, q->attest.pcr_digest_len, d, 20,
               "pcrDigest matches the PCR16 value sent");
        ok(vg_quote_format(q, &again) == 0, "re-encodes");
        is_str(again, s, "re-encoding reproduces the original string byte for byte");
}

static void malformed(void)
{
        static const struct {
                const char *s, *needle;
        } cases[] = {
                { "", "empty" },
                { "cAAAA:BBBB:CCCC", "zlib" },
                { "xAAAA:BBBB:CCCC", "expected 'r'" },
                { "rAAAA:BBBB", "three" },
                { "rAAAA:BBBB:CCCC:DDDD", "three" },
                { "r:BBBB:CCCC", "TPMS_ATTEST is empty" },
                { "rAA*A:BBBB:CCCC", "base64" },
                { "rAAAAAAAA:BBBB:CCCC", "magic" },
                { "r/1RDRwAA:BBBB:CCCC", "type 0x0000" },
        };
        struct vg_error err = { 0 };

        for (size_t i = 0; i < VG_ARRAY_SIZE(cases); i++) {
                struct vg_quote *q = NULL;

                ok(vg_quote_parse(cases[i].s, strlen(cases[i].s), &q, &err) < 0 && !q,
                   "refused: \"%s\"", cases[i].s);
                contains(vg_error_str(&err), cases[i].needle, "  error: %s", vg_error_str(&err));
        }
}

static void policy(void)
{
        static const struct {
                const char *json, *needle;
        } bad[] = {
                { "[]", "object" },
                { "{\"10\": [\"00\"]}", "PCR 10" },
                { "{\"16\": \""
                  "0000000000000000000000000000000000000000\"}",
                  "PCR 16" },
                { "{\"24\": []}", "0-23" },
                { "{\"x\": []}", "0-23" },
                { "{\"1\": []}", "no values" },
                { "{\"1\": [\"zz\"]}", "not a hex" },
                { "{\"1\": [1]}", "strings" },
                { "{\"mask\": \"12\"}", "0x" },
                { "{\"mask\": \"0x1\", \"2\": \""
                  "0000000000000000000000000000000000000000\"}",
                  "leaves out" },
        };
        struct vg_error err = { 0 };
        struct vg_tpm_policy *p = NULL;
        struct vg_pcr_values v;
        enum vg_quote_status st;
        char json[512];

        for (size_t i = 0; i < VG_ARRAY_SIZE(bad); i++) {
                ok(vg_tpm_policy_parse(bad[i].json, &p, &err) < 0 && !p, "tpm_policy refused: %s",
                   bad[i].json);
                contains(vg_error_str(&err), bad[i].needle, "  error: %s", vg_error_str(&err));
        }
        memset(&v, 0, sizeof(v));
        v.selection.count = 1;
        v.selection.bank[0] = (struct vg_pcr_bank_sel){ VG_HASH_SHA256, 3, 0x10003 };
        memset(v.value[VG_HASH_SHA256][1], 0xab, 32);
        snprintf(json, sizeof(json),
                 "{\"0\": [\"%064d\"], \"1\": [\"%064d\", \"%s\"], \"mask\": \"0x10403\"}", 0, 1,
                 "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB");
        ok(vg_tpm_policy_parse(json, &p, &err) == 0, "a good tpm_policy parses");
        if (!p) {
                tap_diag("%s", vg_error_str(&err));
                return;
        }
        is_int(p->mask, 0x10403, "mask kept");
        is_int(vg_tpm_policy_check(p, &v, VG_HASH_SHA256, &st, &err), 0,
               "PCR values match the policy");
        v.value[VG_HASH_SHA256][1][0] = 0;
        ok(vg_tpm_policy_check(p, &v, VG_HASH_SHA256, &st, &err) < 0 &&
               st == VG_QUOTE_POLICY_MISMATCH,
           "a changed PCR fails the policy");
        contains(vg_error_str(&err), "sha256 PCR 1 is 00abab", "  error: %s", vg_error_str(&err));
        ok(vg_tpm_policy_check(p, &v, VG_HASH_SHA1, &st, &err) < 0 && st == VG_QUOTE_PCR_MISSING,
           "a bank not quoted fails the policy");
        vg_tpm_policy_free(p);
        ok(vg_tpm_policy_parse("{\"7\": \"0000000000000000000000000000000000000000\"}", &p, &err) ==
                   0 &&
               p->mask == 0x80,
           "a single string value is accepted and the mask computed");
        vg_tpm_policy_free(p);
}

int main(void)
{
        _cleanup_swtpm_ struct vg_swtpm *tpm = NULL;
        struct vg_swtpm_opts opts = { .banks = VG_SWTPM_BANK_SHA1 | VG_SWTPM_BANK_SHA256 };
        struct vg_error err = { 0 };
        _cleanup_free_ char *dir = tap_tmpdir();

        rust_keylime_vector();
        malformed();
        clock_checks();
        policy();
        if (vg_swtpm_start(&opts, &tpm, &err) < 0)
                tap_bail("swtpm: %s", vg_error_str(&err));
        is_int(vg_swtpm_sh(tpm, dir, NULL,
                           "tpm2_createek -G rsa -c ek.ctx -u ek.pub; fl; "
                           "tpm2_createak -C ek.ctx -G rsa -g sha256 -s rsassa -c rsa_ak.ctx "
                           "-u rsa_ak.pub; fl; "
                           "tpm2_createak -C ek.ctx -G rsa -g sha256 -s rsapss -c pss_ak.ctx "
                           "-u pss_ak.pub; fl; "
                           "tpm2_createak -C ek.ctx -G ecc -g sha256 -s ecdsa -c ecc_ak.ctx "
                           "-u ecc_ak.pub; fl"),
               0, "EK and RSASSA, RSAPSS and ECDSA AKs");
        {
                _cleanup_tpm_public_ struct vg_tpm_public *rsa = load_pub(dir, "rsa_ak.pub");
                _cleanup_tpm_public_ struct vg_tpm_public *pss = load_pub(dir, "pss_ak.pub");

                quote_suite(tpm, dir, "rsa_ak", "rsassa", pss->pkey);
                quote_suite(tpm, dir, "pss_ak", "rsapss", rsa->pkey);
                quote_suite(tpm, dir, "ecc_ak", "ecdsa", rsa->pkey);
        }
        multi_bank(tpm, dir);
        pcr16(tpm, dir);
        return tap_done();
}
