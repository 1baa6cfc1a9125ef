/* vigil tests: the agent's TPM layer against a real swtpm without resource manager, with
 * tpm2-tools and OpenSSL as independent oracles for quotes, EKs, credentials and PCRs. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>

#include "encoding.h"
#include "hash.h"
#include "swtpm.h"
#include "tap.h"
#include "tpm.h"

#define AK_HANDLE 0x81000100u

static char *work;

/* A Keylime tenant's identity nonce: 20 alphanumeric characters, quoted as their bytes. */
static const char nonce[] = "Vg7nq2XkLp0aZr5TbW9e";

static char *path(const char *name)
{
        char *p;

        if (asprintf(&p, "%s/%s", work, name) < 0)
                tap_bail("out of memory");
        return p;
}

static int run(char **out, const char *arg0, ...)
{
        const char *argv[40] = { arg0 };
        va_list ap;
        int n = 1;

        va_start(ap, arg0);
        while (n < 39 && (argv[n] = va_arg(ap, const char *)))
                n++;
        va_end(ap);
        argv[n] = NULL;
        return tap_run((char *const *)argv, out);
}

static void write_bytes(const char *file, const void *p, size_t len)
{
        FILE *f = fopen(file, "wb");

        if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0)
                tap_bail("cannot write %s", file);
}

static bool file_is(const char *file, const void *p, size_t len)
{
        size_t n = 0;
        _cleanup_free_ char *got = tap_read_file(file, &n);

        return got && n == len && memcmp(got, p, len) == 0;
}

static struct vg_swtpm *start_tpm(enum vg_swtpm_ek ek, unsigned banks)
{
        struct vg_swtpm_opts o = { .ek = ek, .banks = banks };
        struct vg_error err = { 0 };
        struct vg_swtpm *t = NULL;

        if (vg_swtpm_start(&o, &t, &err) < 0)
                tap_bail("swtpm: %s", vg_error_str(&err));
        return t;
}

static struct vg_tpm *open_tpm(const struct vg_swtpm *t)
{
        struct vg_error err = { 0 };
        struct vg_tpm *tpm = NULL;

        if (vg_tpm_open(vg_swtpm_tcti(t), 0, &tpm, &err) < 0)
                tap_bail("vg_tpm_open: %s", vg_error_str(&err));
        return tpm;
}

/* tpm2_getcap on a TPM without resource manager sees every handle anyone left behind. */
static void no_handles_left(const struct vg_swtpm *t, const char *what)
{
        static const char *const caps[] = { "handles-transient", "handles-loaded-session",
                                            "handles-saved-session" };

        for (size_t i = 0; i < VG_ARRAY_SIZE(caps); i++) {
                _cleanup_free_ char *out = NULL;
                int rc = run(&out, "tpm2_getcap", "-T", vg_swtpm_tcti(t), caps[i], NULL);

                ok(rc == 0 && !strstr(out, "0x"), "%s: tpm2_getcap %s is empty", what, caps[i]);
                if (rc != 0 || strstr(out, "0x"))
                        tap_diag("%s", out ? out : "(no output)");
        }
}

static char *hex(const void *p, size_t n)
{
        char *h = vg_hex_encode(p, n);

        if (!h)
                tap_bail("out of memory");
        return h;
}

/* ---- open ------------------------------------------------------------------------------------ */

static void test_open_errors(void)
{
        struct vg_error err = { 0 };
        struct vg_tpm *tpm = NULL;
        char tcti[64];

        is_int(vg_tpm_open("nosuchtcti:foo", 0, &tpm, &err), -ENODEV,
               "open: an unknown TCTI is -ENODEV");
        contains(err.msg, "nosuchtcti:foo", "open: the error names the TCTI");
        snprintf(tcti, sizeof(tcti), "swtpm:host=127.0.0.1,port=%d", tap_free_port());
        err = (struct vg_error){ 0 };
        ok(vg_tpm_open(tcti, 0, &tpm, &err) < 0 && tpm == NULL,
           "open: a swtpm TCTI with nothing listening fails");
        contains(err.msg, "swtpm:host=127.0.0.1", "open: ... and says where it tried");
        vg_tpm_close(NULL);
}

/* ---- EK ------------------------------------------------------------------------------------- */

/* The public key of a DER certificate must be the EK's unique field (RSA modulus, or the
 * ECC point x||y): what Keylime's registrar checks between ek_tpm and ekcert. */
static bool cert_matches_public(const uint8_t *der, size_t der_len, const uint8_t *pub_b,
                                size_t pub_len)
{
        const unsigned char *p = der;
        X509 *x = d2i_X509(NULL, &p, (long)der_len);
        TPM2B_PUBLIC pub = { 0 };
        size_t off = 0;
        bool same = false;

        if (!x || Tss2_MU_TPM2B_PUBLIC_Unmarshal(pub_b, pub_len, &off, &pub) != 0) {
                X509_free(x);
                return false;
        }
        EVP_PKEY *k = X509_get0_pubkey(x);
        if (pub.publicArea.type == TPM2_ALG_RSA) {
                BIGNUM *n = NULL;
                uint8_t m[256];

                if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
                    BN_bn2binpad(n, m, sizeof(m)) == sizeof(m))
                        same = pub.publicArea.unique.rsa.size == 256 &&
                               memcmp(m, pub.publicArea.unique.rsa.buffer, 256) == 0;
                BN_free(n);
        } else {
                uint8_t pt[65];
                size_t n = 0;
                const TPMS_ECC_POINT *e = &pub.publicArea.unique.ecc;

                if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                                                    sizeof(pt), &n) == 1 &&
                    n == 65 && e->x.size == 32 && e->y.size == 32)
                        same = memcmp(pt + 1, e->x.buffer, 32) == 0 &&
                               memcmp(pt + 33, e->y.buffer, 32) == 0;
        }
        X509_free(x);
        return same;
}

static void test_ek(enum vg_swtpm_ek which)
{
        const char *what = which == VG_SWTPM_EK_ECC_P256 ? "ECC EK" : "RSA EK";
        enum vg_tpm_key_type alg = which == VG_SWTPM_EK_ECC_P256 ? VG_TPM_KEY_ECC : VG_TPM_KEY_RSA;
        _cleanup_swtpm_ struct vg_swtpm *t = start_tpm(which, 0);
        _cleanup_free_ uint8_t *der = NULL, *chain = NULL, *persistent = NULL, *created = NULL;
        size_t der_len = 0, chain_len = 0, p_len = 0, c_len = 0;
        struct vg_error err = { 0 };

        {
                _cleanup_tpm_ struct vg_tpm *tpm = open_tpm(t);

                is_int(vg_tpm_ek_cert_read(tpm, alg, &der, &der_len, &err), 0,
                       "%s: certificate read from NV", what);
                ok(der && file_is(vg_swtpm_ek_cert(t), der, der_len),
                   "%s: it is the certificate swtpm_setup stored (%zu bytes)", what, der_len);
                is_int(vg_tpm_ek_chain_read(tpm, &chain, &chain_len, &err), 0,
                       "%s: chain indices read", what);
                is_int(chain_len, 0, "%s: swtpm has no chain certificates", what);

                is_int(vg_tpm_ek_load(tpm, alg, VG_TPM_EK_DEFAULT, &err), 0,
                       "%s: the persistent EK is used: %s", what, err.msg);
                is_int(vg_tpm_ek_public(tpm, &persistent, &p_len, &err), 0,
                       "%s: its TPM2B_PUBLIC is exported", what);
                ok(persistent && cert_matches_public(der, der_len, persistent, p_len),
                   "%s: the certificate certifies the persistent EK (OpenSSL)", what);

                is_int(vg_tpm_ek_load(tpm, alg, VG_TPM_EK_TEMPLATE, &err), 0,
                       "%s: created from the TCG default template: %s", what, err.msg);
                is_int(vg_tpm_ek_public(tpm, &created, &c_len, &err), 0,
                       "%s: its TPM2B_PUBLIC is exported", what);
                ok(created && cert_matches_public(der, der_len, created, c_len),
                   "%s: the certificate certifies the EK made from the template", what);
                is_mem(created, c_len, persistent, p_len,
                       "%s: template EK and persistent EK are the same TPM2B_PUBLIC", what);

                err = (struct vg_error){ 0 };
                is_int(vg_tpm_ek_load(tpm, alg, AK_HANDLE, &err), -EIO,
                       "%s: a persistent handle that does not exist fails", what);
                contains(err.msg, "TPM2_ReadPublic", "%s: ... naming the TPM command", what);
                contains(err.msg, "handle", "%s: ... and the TPM_RC (%s)", what, err.msg);
        }
        no_handles_left(t, what);
}

/* ---- quote ---------------------------------------------------------------------------------- */

struct quote_case {
        const char *what;
        enum vg_swtpm_ek ek;
        struct vg_tpm_ak_params ak;
        enum vg_hash_alg bank;
        unsigned banks;
        uint32_t mask;
};

static const char nk_pem[] = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOC\n"
                             "-----END PUBLIC KEY-----\n";

static void test_quote(const struct quote_case *c)
{
        _cleanup_swtpm_ struct vg_swtpm *t = start_tpm(c->ek, c->banks);
        enum vg_tpm_key_type ek_alg =
            c->ek == VG_SWTPM_EK_ECC_P256 ? VG_TPM_KEY_ECC : VG_TPM_KEY_RSA;
        const char *w = c->what;
        _cleanup_free_ char *msg = path("quote.msg"), *sig = path("quote.sig");
        _cleanup_free_ char *pcrs = path("pcrs.out"), *akpem = path("ak.pem");
        _cleanup_free_ char *akpub = path("ak.pub"), *tools_pub = path("ak-tools.pub");
        _cleanup_free_ char *ekpub = path("ek.pub"), *blob = path("cred.blob");
        _cleanup_free_ char *bad_blob = path("cred-bad.blob"), *secret = path("secret.bin");
        _cleanup_free_ char *tmsg = path("t.msg"), *tsig = path("t.sig"), *tpcrs = path("t.pcrs");
        _cleanup_free_ char *nonce_hex = hex(nonce, strlen(nonce)), *name_hex = NULL;
        _cleanup_free_ char *bad_name_hex = NULL, *qstr = NULL, *out = NULL, *sel = NULL;
        _cleanup_free_ uint8_t *pb = NULL, *ak_b = NULL, *ek_b = NULL, *name = NULL;
        _cleanup_free_ uint8_t *cred = NULL;
        size_t pb_len = 0, ak_len = 0, ek_len = 0, name_len = 0, cred_len = 0;
        struct vg_tpm_quote q = { 0 };
        struct vg_error err = { 0 };
        uint8_t want16[VG_HASH_MAX_SIZE] = { 0 }, d[VG_HASH_MAX_SIZE];
        char pcrlist[128];
        int n = 0;

        for (unsigned p = 0; p < VG_TPM_PCR_COUNT; p++)
                if (c->mask & (1u << p))
                        n += snprintf(pcrlist + n, sizeof(pcrlist) - (size_t)n, "%s%u",
                                      n ? "," : "", p);
        if (asprintf(&sel, "%s:%s", vg_hash_alg_name(c->bank), pcrlist) < 0)
                tap_bail("out of memory");

        {
                _cleanup_tpm_ struct vg_tpm *tpm = open_tpm(t);

                /* Leftover from an earlier run of this case would make EvictControl fail. */
                vg_tpm_evict(tpm, AK_HANDLE, NULL);
                is_int(vg_tpm_ek_load(tpm, ek_alg, VG_TPM_EK_DEFAULT, NULL), 0, "%s: EK", w);
                is_int(vg_tpm_ak_create(tpm, &c->ak, &err), 0, "%s: AK created: %s", w, err.msg);
                is_int(vg_tpm_pcr16_bind(tpm, c->bank, nk_pem, strlen(nk_pem), &err), 0,
                       "%s: PCR 16 reset and extended with H(NK PEM)", w);
                is_int(vg_tpm_quote(tpm, (const uint8_t *)nonce, strlen(nonce), c->bank, c->mask,
                                    &q, &err),
                       0, "%s: quote of %s: %s", w, sel, err.msg);
                is_int(q.attempts, 1, "%s: first attempt matched (no PCR moved)", w);
                vg_hash(c->bank, nk_pem, strlen(nk_pem), d);
                vg_hash_extend(c->bank, want16, d);
                ok(q.pcrs.mask & (1u << 16) &&
                       !memcmp(q.pcrs.value[16], want16, vg_hash_size(c->bank)),
                   "%s: PCR 16 holds H(0..0 || H(NK PEM)) as the verifier expects", w);
                is_int(vg_tpm_pcrblob(&q.pcrs, &pb, &pb_len), 0, "%s: pcrblob built", w);
                is_int(vg_tpm_ak_public(tpm, &ak_b, &ak_len, &err), 0, "%s: AK public", w);
                is_int(vg_tpm_ek_public(tpm, &ek_b, &ek_len, &err), 0, "%s: EK public", w);
                is_int(vg_tpm_ak_name(tpm, &name, &name_len, &err), 0, "%s: AK name", w);
                is_int(vg_tpm_quote_string(&q, &qstr), 0, "%s: quote string built", w);
                is_int(vg_tpm_ak_persist(tpm, AK_HANDLE, &err), 0,
                       "%s: AK made persistent for tpm2-tools: %s", w, err.msg);
        }
        write_bytes(msg, q.attest, q.attest_len);
        write_bytes(sig, q.sig, q.sig_len);
        write_bytes(pcrs, pb, pb_len);
        write_bytes(akpub, ak_b, ak_len);
        write_bytes(ekpub, ek_b, ek_len);

        /* Oracle 1: tpm2_checkquote over what this module produced. */
        is_int(run(&out, "tpm2_readpublic", "-T", vg_swtpm_tcti(t), "-c", "0x81000100", "-f", "pem",
                   "-o", akpem, NULL),
               0, "%s: tpm2_readpublic exports the persisted AK", w);
        free(out);
        out = NULL;
        is_int(run(&out, "tpm2_readpublic", "-T", vg_swtpm_tcti(t), "-c", "0x81000100", "-o",
                   tools_pub, NULL),
               0, "%s: ... and its TPM2B_PUBLIC", w);
        ok(file_is(tools_pub, ak_b, ak_len), "%s: our AK TPM2B_PUBLIC equals tpm2_readpublic's", w);
        free(out);
        out = NULL;
        is_int(run(&out, "tpm2_checkquote", "-u", akpem, "-m", msg, "-s", sig, "-f", pcrs, "-g",
                   vg_hash_alg_name(c->ak.hash), "-q", nonce_hex, NULL),
               0, "%s: tpm2_checkquote accepts quote, signature and pcrblob", w);
        if (out && !strstr(out, "pcrs:"))
                tap_diag("%s", out);
        free(out);
        out = NULL;
        ok(run(&out, "tpm2_checkquote", "-u", akpem, "-m", msg, "-s", sig, "-f", pcrs, "-g",
               vg_hash_alg_name(c->ak.hash), "-q", "00112233", NULL) != 0,
           "%s: tpm2_checkquote refuses it with another nonce", w);
        free(out);
        out = NULL;

        /* Oracle 2: tpm2_quote writes the same pcrblob, byte for byte (PCRs unchanged). */
        is_int(run(&out, "tpm2_quote", "-T", vg_swtpm_tcti(t), "-c", "0x81000100", "-l", sel, "-g",
                   vg_hash_alg_name(c->ak.hash), "-q", nonce_hex, "-m", tmsg, "-s", tsig, "-o",
                   tpcrs, NULL),
               0, "%s: tpm2_quote with the same AK and selection", w);
        {
                size_t tn = 0;
                _cleanup_free_ char *tb = tap_read_file(tpcrs, &tn);

                is_mem(pb, pb_len, tb, tn, "%s: our pcrblob is tpm2_quote's -o file (%zu B)", w,
                       tn);
        }
        free(out);
        out = NULL;

        /* The Keylime quote string carries exactly these three parts. */
        {
                _cleanup_free_ char *a = vg_b64_encode(q.attest, q.attest_len, VG_B64_STD);
                _cleanup_free_ char *s = vg_b64_encode(q.sig, q.sig_len, VG_B64_STD);
                _cleanup_free_ char *p = vg_b64_encode(pb, pb_len, VG_B64_STD);
                _cleanup_free_ char *want = NULL;

                if (asprintf(&want, "r%s:%s:%s", a, s, p) < 0)
                        tap_bail("out of memory");
                is_str(qstr, want, "%s: quote string is r<attest>:<sig>:<pcrblob>", w);
        }

        /* Oracle 3: tpm2_makecredential (software) to the EK and AK name; we activate it. */
        name_hex = hex(name, name_len);
        name[name_len - 1] ^= 1;
        bad_name_hex = hex(name, name_len);
        write_bytes(secret, "0123456789abcdefghijklmnopqrstuv", 32);
        ok(run(&out, "tpm2_makecredential", "-T", "none", "-e", ekpub, "-s", secret, "-n", name_hex,
               "-o", blob, NULL) == 0 &&
               run(NULL, "tpm2_makecredential", "-T", "none", "-e", ekpub, "-s", secret, "-n",
                   bad_name_hex, "-o", bad_blob, NULL) == 0,
           "%s: tpm2_makecredential to our EK and AK name", w);
        {
                _cleanup_tpm_ struct vg_tpm *tpm = open_tpm(t);
                size_t bl = 0;
                _cleanup_free_ char *b = NULL, *bb = NULL;

                b = tap_read_file(blob, &bl);
                is_int(vg_tpm_ek_load(tpm, ek_alg, VG_TPM_EK_DEFAULT, NULL), 0, "%s: EK", w);
                is_int(vg_tpm_ak_use_persistent(tpm, AK_HANDLE, &err), 0, "%s: persistent AK used",
                       w);
                err = (struct vg_error){ 0 };
                is_int(
                    vg_tpm_activate_credential_file(tpm, (uint8_t *)b, bl, &cred, &cred_len, &err),
                    0, "%s: ActivateCredential: %s", w, err.msg);
                is_mem(cred, cred_len, "0123456789abcdefghijklmnopqrstuv", 32,
                       "%s: ... recovers the secret", w);
                bb = tap_read_file(bad_blob, &bl);
                err = (struct vg_error){ 0 };
                ok(vg_tpm_activate_credential_file(tpm, (uint8_t *)bb, bl, &cred, &cred_len, &err) <
                       0,
                   "%s: a credential for another AK name is refused", w);
                contains(err.msg, "TPM2_ActivateCredential", "%s: ... by the TPM (%s)", w, err.msg);
                err = (struct vg_error){ 0 };
                is_int(vg_tpm_activate_credential_file(tpm, (uint8_t *)"\xba\xdc\xc0\xde", 4, &cred,
                                                       &cred_len, &err),
                       -EBADMSG, "%s: a truncated credential file is -EBADMSG", w);
                is_int(vg_tpm_evict(tpm, AK_HANDLE, &err), 0, "%s: persistent AK evicted", w);
        }
        no_handles_left(t, w);
        vg_tpm_quote_clear(&q);
}

/* The race check itself: a PCR value that differs from what the TPM quoted is caught. */
static void test_quote_check(void)
{
        _cleanup_swtpm_ struct vg_swtpm *t = start_tpm(VG_SWTPM_EK_RSA2048, 0);
        _cleanup_tpm_ struct vg_tpm *tpm = open_tpm(t);
        struct vg_tpm_ak_params p = { VG_TPM_KEY_RSA, VG_HASH_SHA256 };
        struct vg_tpm_quote q = { 0 };
        struct vg_error err = { 0 };
        uint8_t big[VG_TPM_NONCE_MAX + 1] = { 0 };

        vg_tpm_ek_load(tpm, VG_TPM_KEY_RSA, VG_TPM_EK_DEFAULT, NULL);
        vg_tpm_ak_create(tpm, &p, NULL);
        is_int(vg_tpm_quote(tpm, big, sizeof(big) - 1, VG_HASH_SHA256, 1u << 16, &q, &err), 0,
               "check: a 64-byte nonce is accepted");
        is_int(vg_tpm_quote_check_pcrs(q.attest, q.attest_len, &q.pcrs, VG_HASH_SHA256, &err), 0,
               "check: the quote matches the values read");
        q.pcrs.value[16][0] ^= 1;
        is_int(vg_tpm_quote_check_pcrs(q.attest, q.attest_len, &q.pcrs, VG_HASH_SHA256, &err),
               -ESTALE, "check: a PCR that moved is detected");
        q.pcrs.value[16][0] ^= 1;
        q.pcrs.mask |= 1u << 10;
        is_int(vg_tpm_quote_check_pcrs(q.attest, q.attest_len, &q.pcrs, VG_HASH_SHA256, &err),
               -ESTALE, "check: another selection is detected");
        is_int(vg_tpm_quote_check_pcrs(q.attest, q.attest_len - 1, &q.pcrs, VG_HASH_SHA256, &err),
               -EBADMSG, "check: a truncated TPMS_ATTEST is -EBADMSG");
        vg_tpm_quote_clear(&q);
        is_int(vg_tpm_quote(tpm, big, sizeof(big), VG_HASH_SHA256, 1u << 16, &q, &err), -EINVAL,
               "check: a 65-byte nonce is refused");
        err = (struct vg_error){ 0 };
        is_int(vg_tpm_quote(tpm, big, 8, VG_HASH_SHA512, 1u << 16, &q, &err), -EOPNOTSUPP,
               "check: quoting an inactive bank is -EOPNOTSUPP");
        contains(err.msg, "sha512", "check: ... naming the bank (%s)", err.msg);
        ok(q.attest == NULL && q.sig == NULL, "check: a failed quote leaves nothing allocated");
}

/* ---- PCRs ------------------------------------------------------------------------------------ */

static void test_pcrs(void)
{
        _cleanup_swtpm_ struct vg_swtpm *t =
            start_tpm(VG_SWTPM_EK_RSA2048, VG_SWTPM_BANK_SHA1 | VG_SWTPM_BANK_SHA256);
        static const enum vg_hash_alg algs[] = { VG_HASH_SHA1, VG_HASH_SHA256 };
        uint8_t want[2][VG_HASH_MAX_SIZE] = { { 0 } };
        struct vg_error err = { 0 };
        struct vg_tpm_pcrs all;

        {
                _cleanup_tpm_ struct vg_tpm *tpm = open_tpm(t);

                /* A reset clears PCR 23 in every bank. */
                is_int(vg_tpm_pcr_reset(tpm, 23, &err), 0, "pcr: reset 23");
                for (size_t i = 0; i < 2; i++) {
                        enum vg_hash_alg a = algs[i];
                        struct vg_tpm_pcrs r;
                        uint8_t d[VG_HASH_MAX_SIZE];

                        for (int k = 0; k < 3; k++) {
                                memset(d, 'a' + k, sizeof(d));
                                vg_hash_extend(a, want[i], d);
                                is_int(vg_tpm_pcr_extend(tpm, 23, a, d, &err), 0,
                                       "pcr: extend %s PCR 23 (#%d)", vg_hash_alg_name(a), k);
                        }
                        is_int(vg_tpm_pcr_read(tpm, a, 1u << 23, &r, &err), 0, "pcr: read");
                        is_mem(r.value[23], vg_hash_size(a), want[i], vg_hash_size(a),
                               "pcr: %s PCR 23 is what vg_hash_extend computes",
                               vg_hash_alg_name(a));
                }
                is_int(vg_tpm_pcr_read(tpm, VG_HASH_SHA256, 0xffffff, &all, &err), 0,
                       "pcr: all 24 sha256 PCRs read (3 TPM2_PCR_Read answers)");
                err = (struct vg_error){ 0 };
                is_int(vg_tpm_pcr_reset(tpm, 0, &err), -EIO, "pcr: PCR 0 is not resettable");
                contains(err.msg, "TPM2_PCR_Reset", "pcr: ... the error names the command (%s)",
                         err.msg);
                is_int(vg_tpm_pcr_extend(tpm, 24, VG_HASH_SHA256, want[1], &err), -EINVAL,
                       "pcr: PCR 24 does not exist");
        }
        for (size_t i = 0; i < 2; i++) {
                _cleanup_free_ char *out = NULL, *h = NULL, *sel = NULL;

                h = hex(want[i], vg_hash_size(algs[i]));
                for (char *p = h; *p; p++)
                        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
                if (asprintf(&sel, "%s:23", vg_hash_alg_name(algs[i])) < 0)
                        tap_bail("out of memory");
                run(&out, "tpm2_pcrread", "-T", vg_swtpm_tcti(t), sel, NULL);
                contains(out, h, "pcr: tpm2_pcrread shows the same %s PCR 23",
                         vg_hash_alg_name(algs[i]));
        }
        ok(all.mask == 0xffffff && !memcmp(all.value[23], want[1], 32),
           "pcr: the full read holds PCR 23 in place");
}

/* ---- AK persistence ---------------------------------------------------------------------- */

static void test_restart(void)
{
        _cleanup_swtpm_ struct vg_swtpm *t = start_tpm(VG_SWTPM_EK_RSA2048, 0);
        _cleanup_free_ char *akfile = path("ak.bin"), *junk = path("junk.bin");
        _cleanup_free_ uint8_t *a = NULL, *b = NULL;
        size_t a_len = 0, b_len = 0;
        struct vg_tpm_ak_params p = { VG_TPM_KEY_ECC, VG_HASH_SHA256 };
        struct vg_tpm_ak_params rsa = { VG_TPM_KEY_RSA, VG_HASH_SHA256 };
        struct vg_error err = { 0 };
        struct stat st;
        bool created = false;

        unlink(akfile);
        {
                _cleanup_tpm_ struct vg_tpm *tpm = open_tpm(t);

                is_int(vg_tpm_ak_load_or_create(tpm, akfile, &p, &created, &err), -ENOENT,
                       "restart: an AK needs an EK first");
                vg_tpm_ek_load(tpm, VG_TPM_KEY_RSA, VG_TPM_EK_TEMPLATE, NULL);
                is_int(vg_tpm_ak_load_or_create(tpm, akfile, &p, &created, &err), 0,
                       "restart: AK created on first start: %s", err.msg);
                ok(created, "restart: ... and says so");
                vg_tpm_ak_public(tpm, &a, &a_len, NULL);
        }
        ok(stat(akfile, &st) == 0 && (st.st_mode & 0777) == 0600, "restart: AK file is 0600");
        {
                struct vg_error e2 = { 0 };

                if (vg_swtpm_restart(t, &e2) < 0)
                        tap_bail("swtpm restart: %s", vg_error_str(&e2));
        }
        {
                _cleanup_tpm_ struct vg_tpm *tpm = open_tpm(t);
                struct vg_tpm_quote q = { 0 };

                vg_tpm_ek_load(tpm, VG_TPM_KEY_RSA, VG_TPM_EK_DEFAULT, NULL);
                is_int(vg_tpm_ak_load_or_create(tpm, akfile, &p, &created, &err), 0,
                       "restart: AK reloaded after a TPM restart: %s", err.msg);
                ok(!created, "restart: ... not created again");
                vg_tpm_ak_public(tpm, &b, &b_len, NULL);
                is_mem(b, b_len, a, a_len, "restart: the same AK public (identity kept)");
                is_int(
                    vg_tpm_quote(tpm, (const uint8_t *)"x", 1, VG_HASH_SHA256, 1u << 16, &q, &err),
                    0, "restart: the reloaded AK quotes");
                vg_tpm_quote_clear(&q);
                err = (struct vg_error){ 0 };
                is_int(vg_tpm_ak_load_or_create(tpm, akfile, &rsa, &created, &err), -ESTALE,
                       "restart: an AK file of other parameters is -ESTALE");
                contains(err.msg, "ecdsa/sha256", "restart: ... saying what it holds (%s)",
                         err.msg);
                tap_write_file(junk, "VIGILAK1 but then nothing useful");
                is_int(vg_tpm_ak_load(tpm, junk, &err), -EBADMSG,
                       "restart: a corrupt AK file is -EBADMSG");
                tap_write_file(junk, "hello");
                is_int(vg_tpm_ak_load(tpm, junk, &err), -EBADMSG,
                       "restart: a foreign file is -EBADMSG");
                /* An AK wrapped by another parent (the ECC EK) must not load. */
                vg_tpm_ek_load(tpm, VG_TPM_KEY_ECC, VG_TPM_EK_TEMPLATE, NULL);
                err = (struct vg_error){ 0 };
                ok(vg_tpm_ak_load(tpm, akfile, &err) < 0, "restart: the AK does not load under "
                                                          "another EK");
                contains(err.msg, "TPM2_Load", "restart: ... the TPM says why (%s)", err.msg);
        }
        no_handles_left(t, "restart");
}

/* An agent killed while holding its EK and AK leaves them in a TPM without resource
 * manager; the next start flushes them instead of running out of object slots. */
static void test_crash_recovery(void)
{
        _cleanup_swtpm_ struct vg_swtpm *t = start_tpm(VG_SWTPM_EK_RSA2048, 0);
        struct vg_tpm_ak_params p = { VG_TPM_KEY_RSA, VG_HASH_SHA256 };
        _cleanup_free_ char *out = NULL;
        struct vg_error err = { 0 };
        int status = 0;
        pid_t pid;

        for (int round = 0; round < 3; round++) {
                pid = fork();
                if (pid == 0) {
                        struct vg_tpm *tpm = NULL;

                        if (vg_tpm_open(vg_swtpm_tcti(t), VG_TPM_OPEN_FLUSH_STALE, &tpm, NULL) <
                                0 ||
                            vg_tpm_ek_load(tpm, VG_TPM_KEY_RSA, VG_TPM_EK_TEMPLATE, NULL) < 0 ||
                            vg_tpm_ak_create(tpm, &p, NULL) < 0)
                                _exit(1);
                        _exit(0); /* no close: as if killed */
                }
                waitpid(pid, &status, 0);
                ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "crash: agent #%d loaded EK and AK and died holding them", round);
        }
        run(&out, "tpm2_getcap", "-T", vg_swtpm_tcti(t), "handles-transient", NULL);
        ok(out && strstr(out, "0x80"), "crash: its objects are still in the TPM");
        {
                _cleanup_tpm_ struct vg_tpm *tpm = NULL;

                is_int(vg_tpm_open(vg_swtpm_tcti(t), VG_TPM_OPEN_FLUSH_STALE, &tpm, &err), 0,
                       "crash: the next start flushes them: %s", err.msg);
        }
        no_handles_left(t, "crash");
}

/* ---- 1,000 quotes ----------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_many_quotes(enum vg_tpm_key_type alg, int count)
{
        const char *w = alg == VG_TPM_KEY_ECC ? "ecdsa" : "rsassa";
        _cleanup_swtpm_ struct vg_swtpm *t = start_tpm(VG_SWTPM_EK_RSA2048, 0);
        _cleanup_free_ double *lat = calloc((size_t)count, sizeof(double));
        struct vg_tpm_ak_params p = { alg, VG_HASH_SHA256 };
        struct vg_error err = { 0 };
        int done = 0, retried = 0;
        double t0, total;

        if (!lat)
                tap_bail("out of memory");
        {
                _cleanup_tpm_ struct vg_tpm *tpm = open_tpm(t);

                vg_tpm_ek_load(tpm, VG_TPM_KEY_RSA, VG_TPM_EK_DEFAULT, NULL);
                is_int(vg_tpm_ak_create(tpm, &p, &err), 0, "%d quotes: %s AK", count, w);
                t0 = now_ms();
                for (; done < count; done++) {
                        struct vg_tpm_quote q = { 0 };
                        char nk[64];
                        double s = now_ms();
                        int r;

                        snprintf(nk, sizeof(nk), "NK %d", done);
                        r = vg_tpm_pcr16_bind(tpm, VG_HASH_SHA256, nk, strlen(nk), &err);
                        if (r == 0)
                                r = vg_tpm_quote(tpm, (const uint8_t *)nonce, strlen(nonce),
                                                 VG_HASH_SHA256, 1u << 16 | 1u << 10, &q, &err);
                        retried += q.attempts > 1;
                        vg_tpm_quote_clear(&q);
                        lat[done] = now_ms() - s;
                        if (r < 0)
                                break;
                }
                total = now_ms() - t0;
        }
        is_int(done, count, "%d quotes (%s): all succeeded%s%s", count, w, done < count ? ": " : "",
               done < count ? err.msg : "");
        is_int(retried, 0, "%d quotes (%s): none needed a retry", count, w);
        if (done > 0) {
                qsort(lat, (size_t)done, sizeof(double), cmp_double);
                tap_diag("%d quotes (%s AK, PCR16 reset+extend each): %.1f s, %.0f quotes/s, "
                         "median %.2f ms, p99 %.2f ms",
                         done, w, total / 1e3, done / (total / 1e3), lat[done / 2],
                         lat[(done * 99) / 100]);
        }
        no_handles_left(t, "after the quotes");
}

int main(void)
{
        static const struct quote_case cases[] = {
                { "rsa/rsassa-sha256, sha256 PCRs 0-23",
                  VG_SWTPM_EK_RSA2048,
                  { VG_TPM_KEY_RSA, VG_HASH_SHA256 },
                  VG_HASH_SHA256,
                  0,
                  0xffffff },
                { "ecc/ecdsa-sha256, sha256 PCR 16",
                  VG_SWTPM_EK_ECC_P256,
                  { VG_TPM_KEY_ECC, VG_HASH_SHA256 },
                  VG_HASH_SHA256,
                  0,
                  1u << 16 },
                { "rsa/rsassa-sha384, sha1 PCRs 10,16",
                  VG_SWTPM_EK_RSA2048,
                  { VG_TPM_KEY_RSA, VG_HASH_SHA384 },
                  VG_HASH_SHA1,
                  VG_SWTPM_BANK_SHA1 | VG_SWTPM_BANK_SHA256,
                  1u << 10 | 1u << 16 },
                { "ecc-ek/rsassa-sha256 AK, sha256 PCRs 0-9,16",
                  VG_SWTPM_EK_ECC_P256,
                  { VG_TPM_KEY_RSA, VG_HASH_SHA256 },
                  VG_HASH_SHA256,
                  0,
                  0x103ff },
        };

        /* The failures provoked on purpose would otherwise be logged by tpm2-tss too; the
         * module's own errors carry the TPM_RC. */
        setenv("TSS2_LOG", "all+none", 1);
        work = tap_tmpdir();
        test_open_errors();
        test_ek(VG_SWTPM_EK_RSA2048);
        test_ek(VG_SWTPM_EK_ECC_P256);
        for (size_t i = 0; i < VG_ARRAY_SIZE(cases); i++)
                test_quote(&cases[i]);
        test_quote_check();
        test_pcrs();
        test_restart();
        test_crash_recovery();
        test_many_quotes(VG_TPM_KEY_RSA, 1000);
        /* tcti-swtpm opens a TCP connection per command; keep the second run short. */
        test_many_quotes(VG_TPM_KEY_ECC, 200);
        return tap_done();
}
