/* vigil tests: software MakeCredential activated by a real swtpm (tpm2_activatecredential with
 * the EK's PolicySecret session), compared with tpm2_makecredential, and Keylime's auth_tag. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credential.h"
#include "encoding.h"
#include "swtpm.h"
#include "tap.h"

static void spill(const char *dir, const char *name, const uint8_t *data, size_t len)
{
        _cleanup_free_ char *path = NULL;
        FILE *f;

        if (asprintf(&path, "%s/%s", dir, name) < 0 || !(f = fopen(path, "wb")))
                tap_bail("cannot write %s", name);
        fwrite(data, 1, len, f);
        fclose(f);
}

/* ActivateCredential the tpm2-tools way: the EK needs PolicySecret(endorsement). */
static int activate(struct vg_swtpm *tpm, const char *dir, const char *ak, const char *blob,
                    const char *out)
{
        return vg_swtpm_sh(
            tpm, dir, NULL,
            "rm -f %s; tpm2_startauthsession --policy-session -S s.ctx; "
            "tpm2_policysecret -S s.ctx -c e >/dev/null; "
            "tpm2_activatecredential -c %s.ctx -C ek.ctx -i %s -o %s -P session:s.ctx "
            ">/dev/null 2>&1 || { fl; exit 1; }; fl",
            out, ak, blob, out);
}

static void suite(enum vg_swtpm_ek ek_kind, const char *label)
{
        _cleanup_swtpm_ struct vg_swtpm *tpm = NULL;
        struct vg_swtpm_opts opts = { .ek = ek_kind };
        _cleanup_tpm_public_ struct vg_tpm_public *ek = NULL, *ak = NULL, *ak2 = NULL;
        _cleanup_free_ uint8_t *raw = NULL, *blob = NULL, *got = NULL, *theirs = NULL;
        struct vg_credential cred, parsed, ref;
        struct vg_error err = { 0 };
        _cleanup_free_ char *dir = tap_tmpdir();
        char challenge[VG_CHALLENGE_LEN + 1];
        size_t len;

        if (vg_swtpm_start(&opts, &tpm, &err) < 0)
                tap_bail("swtpm: %s", vg_error_str(&err));
        if (!is_int(vg_swtpm_sh(
                        tpm, dir, NULL,
                        "tpm2_createek -G %s -c ek.ctx -u ek.pub; fl; "
                        "tpm2_createak -C ek.ctx -G rsa -g sha256 -s rsassa -c ak.ctx -u ak.pub "
                        "-n ak.name; fl; "
                        "tpm2_createak -C ek.ctx -G ecc -g sha256 -s ecdsa -c ak2.ctx -u ak2.pub; "
                        "fl",
                        label),
                    0, "%s: EK and two AKs", label))
                return;
        raw = vg_swtpm_slurp(dir, "ek.pub", &len);
        ok(raw && vg_tpm_public_parse(raw, len, &ek, &err) == 0, "%s: EK parses", label);
        free(raw);
        raw = vg_swtpm_slurp(dir, "ak.pub", &len);
        ok(raw && vg_tpm_public_parse(raw, len, &ak, &err) == 0, "%s: AK parses", label);
        free(raw);
        raw = vg_swtpm_slurp(dir, "ak2.pub", &len);
        ok(raw && vg_tpm_public_parse(raw, len, &ak2, &err) == 0, "%s: AK2 parses", label);
        free(raw);
        raw = vg_swtpm_slurp(dir, "ak.name", &len);
        if (!ek || !ak || !ak2 || !raw)
                return;
        is_mem(ak->name, ak->name_len, raw, len, "%s: our AK Name equals tpm2_createak -n", label);

        vg_registration_challenge(challenge);
        if (!is_int(vg_credential_make(ek, ak->name, ak->name_len, (uint8_t *)challenge,
                                       VG_CHALLENGE_LEN, &cred, &err),
                    0, "%s: MakeCredential in software", label)) {
                tap_diag("%s", vg_error_str(&err));
                return;
        }
        vg_credential_blob(&cred, &blob, &len);
        spill(dir, "ours.blob", blob, len);
        is_int(vg_credential_blob_parse(blob, len, &parsed, &err), 0, "%s: our blob re-parses",
               label);
        is_mem(parsed.secret, parsed.secret_len, cred.secret, cred.secret_len,
               "%s: blob round trip", label);
        is_int(activate(tpm, dir, "ak", "ours.blob", "ours.out"), 0,
               "%s: swtpm activates our credential", label);
        got = vg_swtpm_slurp(dir, "ours.out", &len);
        is_mem(got, got ? len : 0, challenge, VG_CHALLENGE_LEN,
               "%s: the recovered secret is the challenge", label);
        ok(activate(tpm, dir, "ak2", "ours.blob", "wrong.out") != 0,
           "%s: it does not activate with another AK", label);
        {
                struct vg_credential other;
                _cleanup_free_ uint8_t *ob = NULL;
                size_t olen;

                vg_credential_make(ek, ak2->name, ak2->name_len, (uint8_t *)challenge,
                                   VG_CHALLENGE_LEN, &other, &err);
                vg_credential_blob(&other, &ob, &olen);
                spill(dir, "other.blob", ob, olen);
                ok(activate(tpm, dir, "ak", "other.blob", "wrong2.out") != 0,
                   "%s: a credential made for another AK's name does not activate", label);
        }
        /* tpm2_makecredential -T none as a second oracle: same structure, both activate. */
        spill(dir, "secret", (uint8_t *)challenge, VG_CHALLENGE_LEN);
        {
                _cleanup_free_ char *hex = vg_hex_encode(ak->name, ak->name_len);

                is_int(vg_swtpm_sh(
                           NULL, dir, NULL,
                           "tpm2_makecredential -T none -u ek.pub -s secret -n %s -o theirs.blob "
                           ">/dev/null 2>&1",
                           hex),
                       0, "%s: tpm2_makecredential -T none", label);
        }
        theirs = vg_swtpm_slurp(dir, "theirs.blob", &len);
        if (theirs && is_int(vg_credential_blob_parse(theirs, len, &ref, &err), 0,
                             "%s: tpm2_makecredential's blob parses", label)) {
                is_int(ref.id_object_len, cred.id_object_len, "%s: TPM2B_ID_OBJECT sizes agree",
                       label);
                is_int(ref.secret_len, cred.secret_len, "%s: TPM2B_ENCRYPTED_SECRET sizes agree",
                       label);
        }
        is_int(activate(tpm, dir, "ak", "theirs.blob", "theirs.out"), 0,
               "%s: tpm2_makecredential's credential activates too", label);
        is_int(
            vg_credential_make(ek, ak->name, ak->name_len, (uint8_t *)challenge, 33, &cred, &err),
            -EINVAL, "%s: a credential longer than the digest is refused", label);
}

static void registration(void)
{
        char challenge[VG_CHALLENGE_LEN + 1], key[VG_CHALLENGE_KEY_LEN + 1];
        char tag[VG_AUTH_TAG_LEN + 1];
        const char *uuid = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000";
        _cleanup_free_ char *out = NULL, *cmd = NULL;
        struct vg_error err = { 0 };
        bool alnum = true;

        is_int(vg_registration_challenge(challenge), 0, "challenge");
        is_int(strlen(challenge), 32, "challenge has 32 characters");
        for (size_t i = 0; i < 32; i++)
                alnum &= !!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                                  challenge[i]);
        ok(alnum, "challenge is alphanumeric");
        is_int(vg_registration_key("0123456789abcdefghijABCDEFGHIJ01", 32, key), 0, "key");
        is_str(key, "MDEyMzQ1Njc4OWFiY2RlZmdoaWpBQkNERUZHSElKMDE=", "key = b64(challenge)");
        is_int(vg_auth_tag(key, uuid, tag), 0, "auth_tag");
        /* Oracle: openssl dgst -hmac over the UUID with the base64 text as the key. */
        if (asprintf(&cmd, "printf %%s '%s' | openssl dgst -sha384 -hmac '%s' | sed 's/.*= //'",
                     uuid, key) < 0)
                tap_bail("oom");
        {
                char *argv[] = { "sh", "-c", cmd, NULL };

                is_int(tap_run(argv, &out), 0, "openssl dgst -hmac");
                if (out)
                        out[strcspn(out, "\n")] = '\0';
                is_str(tag, out, "auth_tag equals openssl's HMAC-SHA384");
        }
        is_int(vg_auth_tag_check(key, uuid, tag, &err), 0, "auth_tag check passes");
        for (size_t i = 0; tag[i]; i++)
                tag[i] = (char)(tag[i] >= 'a' ? tag[i] - 32 : tag[i]);
        is_int(vg_auth_tag_check(key, uuid, tag, &err), 0, "upper-case hex passes");
        tag[0] = tag[0] == '0' ? '1' : '0';
        is_int(vg_auth_tag_check(key, uuid, tag, &err), -EKEYREJECTED, "a wrong tag fails");
        contains(vg_error_str(&err), uuid, "  error: %s", vg_error_str(&err));
        is_int(vg_auth_tag_check(key, uuid, "abc", &err), -EKEYREJECTED, "a short tag fails");
        {
                struct vg_credential c;
                static const uint8_t bad[] = { 0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 2 };

                ok(vg_credential_blob_parse(bad, sizeof(bad), &c, &err) == -EBADMSG,
                   "a blob of version 2 is refused");
        }
}

int main(void)
{
        registration();
        suite(VG_SWTPM_EK_RSA2048, "rsa");
        suite(VG_SWTPM_EK_ECC_P256, "ecc");
        return tap_done();
}
