/* vigil fuzz: a Keylime payload as the agent receives it, through the real path: the input is
 * the plaintext the tenant encrypts (a zip, usually); the agent decrypts it and extracts it into
 * a fresh directory. Nothing may be written outside that directory, and nothing may crash. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An RSA-2048 NK takes ~100 ms to make: one per fuzzing process (libFuzzer's usual pattern). */
static EVP_PKEY *nk_once(void)
{
        static EVP_PKEY *nk;

        if (!nk)
                nk = EVP_RSA_gen(2048);
        return nk;
}

/* nftw has no user pointer: the allowed prefix for the walk in progress. */
static char allowed[128];
static size_t outer_len;

static int check_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st, (void)flag, (void)ftw;
        /* outer itself, outer/secure, and anything under outer/secure/unzipped. */
        if (strlen(path) == outer_len || strcmp(path + outer_len, "/secure") == 0 ||
            strncmp(path, allowed, strlen(allowed)) == 0)
                return 0;
        fprintf(stderr, "payload wrote outside its directory: %s\n", path);
        abort();
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st, (void)flag, (void)ftw;
        remove(path);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char uuid[] = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000";
        struct vg_payload_bundle b = { 0 };
        struct vg_payload_state *st = NULL;
        struct vg_error err = { 0 };
        char *u = NULL, *v = NULL, outer[] = "/tmp/vigil-fuzz-payload-XXXXXX", secure[64];
        EVP_PKEY *nk = nk_once();
        int status;

        if (!nk || !mkdtemp(outer))
                return 0;
        /* secure_dir sits one level down, so an entry escaping it would land in outer. */
        snprintf(secure, sizeof(secure), "%s/secure", outer);
        if (vg_payload_bundle_new(data, size, uuid, &b, &err) == 0 &&
            vg_payload_encrypt_half(nk, b.u, &u, &err) == 0 &&
            vg_payload_encrypt_half(nk, b.v, &v, &err) == 0 &&
            vg_payload_state_new(nk, uuid, &st) == 0 &&
            vg_payload_add_u(st, u, b.auth_tag_hex, b.payload_b64, &err) == 0 &&
            vg_payload_add_v(st, v, &err) == 0) {
                const struct vg_payload_config cfg = {
                        .secure_dir = secure,
                        .enc_keyname = "derived_tci_key",
                        .dec_payload_file = "decrypted_payload",
                        .extract_zip = true,
                        .payload_script = "autorun.sh",
                        .allow_script = false,
                        .max_unzipped_bytes = 1 << 20,
                        .max_entries = 64,
                };
                vg_payload_deliver(st, &cfg, &status, &err);
                snprintf(allowed, sizeof(allowed), "%s/secure/unzipped", outer);
                outer_len = strlen(outer);
                nftw(outer, check_entry, 16, FTW_PHYS);
        }
        vg_payload_state_free(st);
        vg_payload_bundle_clear(&b);
        free(u);
        free(v);
        nftw(outer, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}
