/* vigil tests: TPM2B_PUBLIC parsing against tpm2-tools on a real swtpm: PEM, Name, EK
 * certificate match, attribute checks, and refusal of every truncation and of trailing bytes. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swtpm.h"
#include "tap.h"
#include "tpm_public.h"

/* Run a shell snippet in dir with tpm2-tools pointed at tpm; transient objects are flushed
 * after each snippet since swtpm has no resource manager. */
/* "name: 000b..." from tpm2_readpublic's output. */
static char *readpublic_name(const char *out)
{
        const char *p = strstr(out, "\nname: ");

        if (!p && strncmp(out, "name: ", 6) == 0)
                p = out - 1;
        if (!p)
                return NULL;
        p += 7;
        return strndup(p, strcspn(p, "\n"));
}

static void check_key(struct vg_swtpm *tpm, const char *dir, const char *base, bool is_ak)
{
        _cleanup_free_ uint8_t *raw = NULL, *pem_ref = NULL;
        _cleanup_free_ char *out = NULL, *name_ref = NULL, *pem = NULL, *name = NULL;
        _cleanup_tpm_public_ struct vg_tpm_public *pub = NULL;
        struct vg_error err = { 0 };
        size_t len, pem_len;

        is_int(vg_swtpm_sh(tpm, dir, &out, "tpm2_readpublic -c %s.ctx -f pem -o %s.pem; fl", base,
                           base),
               0, "%s: tpm2_readpublic", base);
        {
                _cleanup_free_ char *f = NULL;

                if (asprintf(&f, "%s.pub", base) < 0)
                        tap_bail("oom");
                raw = vg_swtpm_slurp(dir, f, &len);
                free(f);
                if (asprintf(&f, "%s.pem", base) < 0)
                        tap_bail("oom");
                pem_ref = vg_swtpm_slurp(dir, f, &pem_len);
        }
        if (!ok(raw && pem_ref, "%s: tpm2-tools wrote the public area and PEM", base))
                return;
        if (!is_int(vg_tpm_public_parse(raw, len, &pub, &err), 0, "%s: parses", base)) {
                tap_diag("%s", vg_error_str(&err));
                return;
        }
        is_int(vg_tpm_public_to_pem(pub, &pem, &err), 0, "%s: PEM export", base);
        is_str(pem, (char *)pem_ref, "%s: our PEM equals tpm2_readpublic -f pem", base);
        name_ref = out ? readpublic_name(out) : NULL;
        name = vg_tpm_public_name_hex(pub);
        is_str(name, name_ref, "%s: our Name equals tpm2_readpublic's name", base);
        if (is_ak) {
                is_int(vg_tpm_public_check_ak(pub, &err), 0, "%s: passes the AK checks", base);
                ok(vg_tpm_public_check_ek(pub, &err) < 0, "%s: is not an EK", base);
                contains(vg_error_str(&err), "decrypt", "  error: %s", vg_error_str(&err));
        } else {
                is_int(vg_tpm_public_check_ek(pub, &err), 0, "%s: passes the EK checks", base);
                ok(vg_tpm_public_check_ak(pub, &err) < 0, "%s: is not an AK", base);
                is_int(pub->sym_bits, 128, "%s: AES-128 symmetric", base);
        }
        is_int(pub->name_alg, VG_HASH_SHA256, "%s: nameAlg sha256", base);
}

/* Every strict refusal, on a good RSA public area. */
static void check_malformed(const uint8_t *raw, size_t len, const char *base)
{
        _cleanup_free_ uint8_t *buf = malloc(len + 1);
        struct vg_tpm_public *pub = NULL;
        struct vg_error err = { 0 };
        int refused = 0;

        if (!buf)
                tap_bail("oom");
        for (size_t n = 0; n < len; n++) {
                memcpy(buf, raw, n);
                /* Keep the size field consistent, so the inner parser sees the truncation. */
                if (n >= 2) {
                        buf[0] = (uint8_t)((n - 2) >> 8);
                        buf[1] = (uint8_t)(n - 2);
                }
                if (vg_tpm_public_parse(buf, n, &pub, &err) < 0 && !pub)
                        refused++;
                vg_tpm_public_free(pub);
                pub = NULL;
        }
        is_int(refused, len, "%s: all %zu truncations are refused", base, len);
        memcpy(buf, raw, len);
        buf[len] = 0;
        ok(vg_tpm_public_parse(buf, len + 1, &pub, &err) == -EBADMSG,
           "%s: a trailing byte is refused", base);
        contains(vg_error_str(&err), "trailing", "  error: %s", vg_error_str(&err));
        buf[0] = (uint8_t)((len - 1) >> 8);
        buf[1] = (uint8_t)(len - 1);
        ok(vg_tpm_public_parse(buf, len + 1, &pub, &err) == -EBADMSG,
           "%s: a trailing byte inside the size is refused", base);
        contains(vg_error_str(&err), "after the key", "  error: %s", vg_error_str(&err));
        memcpy(buf, raw, len);
        buf[2] = 0x00, buf[3] = 0x08; /* keyedhash */
        ok(vg_tpm_public_parse(buf, len, &pub, &err) == -EOPNOTSUPP,
           "%s: a keyedhash object is refused", base);
        contains(vg_error_str(&err), "type 0x0008", "  error: %s", vg_error_str(&err));
        memcpy(buf, raw, len);
        buf[4] = 0x00, buf[5] = 0x12; /* nameAlg SM3 */
        ok(vg_tpm_public_parse(buf, len, &pub, &err) == -EOPNOTSUPP, "%s: nameAlg SM3 is refused",
           base);
        contains(vg_error_str(&err), "nameAlg 0x0012", "  error: %s", vg_error_str(&err));
}

/* The RSA exponent field (right after keyBits): 0 means 65537 (Part 2 §12.2.3.5). */
static void check_exponent(const uint8_t *raw, size_t len)
{
        _cleanup_free_ uint8_t *buf = malloc(len);
        _cleanup_tpm_public_ struct vg_tpm_public *a = NULL, *b = NULL;
        struct vg_tpm_public *c = NULL;
        struct vg_error err = { 0 };
        size_t off = 0;

        if (!buf)
                tap_bail("oom");
        memcpy(buf, raw, len);
        /* Find keyBits 0x0800 followed by the 4-byte exponent and the 256-byte modulus. */
        for (size_t i = 10; i + 8 < len; i++)
                if (buf[i] == 0x08 && buf[i + 1] == 0x00 && buf[i + 6] == 0x01 &&
                    buf[i + 7] == 0x00 && len - (i + 8) == 256) {
                        off = i + 2;
                        break;
                }
        if (!ok(off, "found the exponent of the RSA EK"))
                return;
        memset(buf + off, 0, 4);
        ok(vg_tpm_public_parse(buf, len, &a, &err) == 0, "exponent 0 parses");
        buf[off + 1] = 0x01, buf[off + 3] = 0x01; /* 0x00010001 */
        ok(vg_tpm_public_parse(buf, len, &b, &err) == 0, "exponent 65537 parses");
        ok(a && b && EVP_PKEY_eq(a->pkey, b->pkey) == 1, "exponent 0 is 65537");
        buf[off + 3] = 0x02;
        ok(vg_tpm_public_parse(buf, len, &c, &err) == -EBADMSG, "an even exponent is refused");
        vg_tpm_public_free(c);
}

static void check_cert(struct vg_swtpm *tpm, const char *dir, const char *pubfile, bool want_match,
                       const char *what)
{
        _cleanup_free_ uint8_t *raw = NULL;
        _cleanup_free_ char *cert = NULL;
        _cleanup_tpm_public_ struct vg_tpm_public *pub = NULL;
        struct vg_error err = { 0 };
        size_t len, clen;

        raw = vg_swtpm_slurp(dir, pubfile, &len);
        cert = tap_read_file(vg_swtpm_ek_cert(tpm), &clen);
        if (!ok(raw && cert && vg_tpm_public_parse(raw, len, &pub, &err) == 0, "%s: inputs", what))
                return;
        if (want_match) {
                is_int(vg_tpm_public_match_cert(pub, (uint8_t *)cert, clen, &err), 0,
                       "%s: the EK certificate matches", what);
        } else {
                is_int(vg_tpm_public_match_cert(pub, (uint8_t *)cert, clen, &err), -EKEYREJECTED,
                       "%s: the EK certificate does not match", what);
                contains(vg_error_str(&err), "differs", "  error: %s", vg_error_str(&err));
        }
}

int main(void)
{
        _cleanup_swtpm_ struct vg_swtpm *rsa = NULL, *ecc = NULL, *other = NULL;
        struct vg_swtpm_opts ecc_opts = { .ek = VG_SWTPM_EK_ECC_P256 };
        struct vg_swtpm_opts other_opts = { .unique_identity = true };
        struct vg_error err = { 0 };
        _cleanup_free_ char *dir = tap_tmpdir();
        _cleanup_free_ uint8_t *ekraw = NULL;
        size_t eklen;

        if (vg_swtpm_start(NULL, &rsa, &err) < 0 || vg_swtpm_start(&ecc_opts, &ecc, &err) < 0 ||
            vg_swtpm_start(&other_opts, &other, &err) < 0)
                tap_bail("swtpm: %s", vg_error_str(&err));

        is_int(vg_swtpm_sh(rsa, dir, NULL,
                           "tpm2_createek -G rsa -c rsa_ek.ctx -u rsa_ek.pub; fl; "
                           "tpm2_createak -C rsa_ek.ctx -G rsa -g sha256 -s rsassa -c rsa_ak.ctx "
                           "-u rsa_ak.pub; fl"),
               0, "RSA EK and AK created with tpm2-tools");
        is_int(
            vg_swtpm_sh(ecc, dir, NULL,
                        "tpm2_createek -G ecc -c ecc_ek.ctx -u ecc_ek.pub; fl; "
                        "tpm2_createak -C ecc_ek.ctx -G ecc -g sha256 -s ecdsa -c ecc_ak.ctx "
                        "-u ecc_ak.pub; fl; "
                        "tpm2_createak -C ecc_ek.ctx -G ecc384 -g sha384 -s ecdsa -c ecc384_ak.ctx "
                        "-u ecc384_ak.pub; fl"),
            0, "ECC EK and P-256/P-384 AKs created with tpm2-tools");
        is_int(vg_swtpm_sh(other, dir, NULL,
                           "tpm2_createek -G rsa -c other_ek.ctx -u other_ek.pub; fl"),
               0, "another TPM's EK");

        check_key(rsa, dir, "rsa_ek", false);
        check_key(rsa, dir, "rsa_ak", true);
        check_key(ecc, dir, "ecc_ek", false);
        check_key(ecc, dir, "ecc_ak", true);
        check_key(ecc, dir, "ecc384_ak", true);

        check_cert(rsa, dir, "rsa_ek.pub", true, "RSA EK");
        check_cert(ecc, dir, "ecc_ek.pub", true, "ECC EK");
        check_cert(rsa, dir, "other_ek.pub", false, "a different TPM's EK");
        check_cert(rsa, dir, "ecc_ek.pub", false, "an ECC EK against an RSA certificate");

        ekraw = vg_swtpm_slurp(dir, "rsa_ek.pub", &eklen);
        if (ekraw) {
                check_malformed(ekraw, eklen, "RSA EK");
                check_exponent(ekraw, eklen);
        }
        {
                _cleanup_free_ uint8_t *e = NULL;
                size_t n;

                e = vg_swtpm_slurp(dir, "ecc_ek.pub", &n);
                if (e) {
                        struct vg_tpm_public *pub = NULL;

                        check_malformed(e, n, "ECC EK");
                        /* Flip a bit of y: the point leaves the curve. */
                        e[n - 1] ^= 1;
                        ok(vg_tpm_public_parse(e, n, &pub, &err) == -EINVAL,
                           "ECC: a point off the curve is refused");
                        contains(vg_error_str(&err), "not on curve P-256", "  error: %s",
                                 vg_error_str(&err));
                        vg_tpm_public_free(pub);
                }
        }
        {
                struct vg_tpm_public *pub = NULL;

                ok(vg_tpm_public_parse_b64("AAA*", &pub, &err) == -EINVAL, "bad base64 refused");
                ok(vg_tpm_public_parse((const uint8_t *)"\x00", 1, &pub, &err) == -EBADMSG,
                   "one byte refused");
                ok(vg_tpm_public_match_cert(NULL, (const uint8_t *)"junk", 4, &err) == -EINVAL,
                   "a non-certificate is refused");
        }
        {
                char buf[128];

                is_str(vg_tpm_public_attributes_str(0x50072, buf, sizeof(buf)),
                       "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
                       "attributes as tpm2-tools names them");
        }
        return tap_done();
}
