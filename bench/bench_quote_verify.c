/* vigil bench: what one quote costs the verifier (vg_quote_parse + vg_quote_verify), for
 * RSASSA-2048 and ECDSA P-256 AKs, with the AK parsed from TPM2B_PUBLIC each time or cached. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/rand.h>

#include "cleanup.h"
#include "encoding.h"
#include "soft_tpm.h"

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sample {
        char *quote;
        char nonce[21];
};

static void usage(FILE *f)
{
        fprintf(f,
                "usage: bench_quote_verify [--quotes N] [--rounds R] [--mask 0xHEX] [--dump DIR]\n"
                "  N distinct quotes per key type (default 1000), verified R times each\n"
                "  (default 5); mask: the PCRs quoted (default 0x10400, PCR 10 and 16).\n"
                "  --dump DIR writes one quote, its nonce and the AK (PEM) per key type there\n"
                "  for bench/keylime_anchor.py. One JSON object per line on stdout.\n");
}

/* One verification as the verifier does it for a poll; exits on a verdict other than OK. */
static void verify_one(const struct sample *s, EVP_PKEY *cached, const struct vg_tpm_public *ak)
{
        _cleanup_quote_ struct vg_quote *q = NULL;
        _cleanup_tpm_public_ struct vg_tpm_public *parsed = NULL;
        struct vg_error err = { 0 };
        enum vg_quote_status st = VG_QUOTE_OK;
        struct vg_quote_expect exp = {
                .nonce = (const uint8_t *)s->nonce,
                .nonce_len = strlen(s->nonce),
                .hash_alg = VG_HASH_SHA256,
        };
        EVP_PKEY *key = cached;

        if (!cached) {
                if (vg_tpm_public_parse(ak->marshalled, ak->marshalled_len, &parsed, &err) < 0) {
                        fprintf(stderr, "bench_quote_verify: AK: %s\n", vg_error_str(&err));
                        exit(1);
                }
                key = parsed->pkey;
        }
        if (vg_quote_parse(s->quote, strlen(s->quote), &q, &err) < 0 ||
            vg_quote_verify(q, key, &exp, &st, &err) < 0) {
                fprintf(stderr, "bench_quote_verify: quote refused (%s): %s\n",
                        vg_quote_status_str(st), vg_error_str(&err));
                exit(1);
        }
}

/* The floor: OpenSSL alone verifying a signature over H(msg) with the same key, cached. */
static double openssl_floor_us(EVP_PKEY *priv, EVP_PKEY *pub, unsigned n)
{
        uint8_t msg[150], sig[512];
        size_t sig_len = sizeof(sig);
        double t0, t1;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();

        RAND_bytes(msg, sizeof(msg));
        if (!ctx || EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, priv, NULL) != 1 ||
            EVP_DigestSign(ctx, sig, &sig_len, msg, sizeof(msg)) != 1)
                exit(1);
        t0 = now_s();
        for (unsigned i = 0; i < n; i++)
                if (EVP_DigestVerifyInit_ex(ctx, NULL, "SHA256", NULL, NULL, pub, NULL) != 1 ||
                    EVP_DigestVerify(ctx, sig, sig_len, msg, sizeof(msg)) != 1)
                        exit(1);
        t1 = now_s();
        EVP_MD_CTX_free(ctx);
        return (t1 - t0) * 1e6 / n;
}

/* DIR/quote-NAME.txt, DIR/nonce-NAME.txt and DIR/ak-NAME.pem: one sample for the anchor. */
static void dump(const char *dir, const char *name, const struct sample *s, EVP_PKEY *ak)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/quote-%s.txt", dir, name);
        if (!(f = fopen(path, "w")) || fputs(s->quote, f) < 0 || fclose(f) != 0)
                goto fail;
        snprintf(path, sizeof(path), "%s/nonce-%s.txt", dir, name);
        if (!(f = fopen(path, "w")) || fputs(s->nonce, f) < 0 || fclose(f) != 0)
                goto fail;
        snprintf(path, sizeof(path), "%s/ak-%s.pem", dir, name);
        if (!(f = fopen(path, "w")) || PEM_write_PUBKEY(f, ak) != 1 || fclose(f) != 0)
                goto fail;
        return;
fail:
        fprintf(stderr, "bench_quote_verify: cannot write %s\n", path);
        exit(1);
}

static void run(enum vg_tpm_key_type type, unsigned nq, unsigned rounds, uint32_t mask,
                const char *dump_dir)
{
        static const char alnum[] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const char *name = type == VG_TPM_KEY_ECC ? "ecdsa-p256" : "rsassa-2048";
        struct sim_key ak = { 0 };
        struct vg_error err = { 0 };
        uint8_t pcr[VG_PCR_MAX][32];
        struct sample *s = calloc(nq, sizeof(*s));
        size_t quote_bytes = 0;
        double t0, t1;

        if (!s || sim_ak_new(type, &ak, &err) < 0) {
                fprintf(stderr, "bench_quote_verify: %s AK: %s\n", name, vg_error_str(&err));
                exit(1);
        }
        for (unsigned i = 0; i < VG_PCR_MAX; i++)
                vg_hash(VG_HASH_SHA256, &i, sizeof(i), pcr[i]);
        t0 = now_s();
        for (unsigned i = 0; i < nq; i++) {
                uint8_t rnd[20];
                struct sim_quote_in in = {
                        .ak = &ak,
                        .nonce = (const uint8_t *)s[i].nonce,
                        .nonce_len = 20,
                        .mask = mask,
                        .pcr = (const uint8_t(*)[32])pcr,
                        .clock = { .clock = 1000u + i, .safe = 1 },
                        .firmware = 0x20240101,
                };

                RAND_bytes(rnd, sizeof(rnd));
                for (unsigned j = 0; j < 20; j++)
                        s[i].nonce[j] = alnum[rnd[j] % 62];
                if (sim_quote(&in, &s[i].quote, &err) < 0) {
                        fprintf(stderr, "bench_quote_verify: %s\n", vg_error_str(&err));
                        exit(1);
                }
                quote_bytes = strlen(s[i].quote);
        }
        t1 = now_s();
        printf("{\"bench\":\"quote_sign\",\"key\":\"%s\",\"quotes\":%u,\"us_per_quote\":%.2f,"
               "\"quote_bytes\":%zu}\n",
               name, nq, (t1 - t0) * 1e6 / nq, quote_bytes);

        if (dump_dir)
                dump(dump_dir, name, &s[0], ak.pub->pkey);
        /* Warm up both paths once, then time them. */
        verify_one(&s[0], NULL, ak.pub);
        verify_one(&s[0], ak.pub->pkey, ak.pub);
        for (int cached = 0; cached < 2; cached++) {
                t0 = now_s();
                for (unsigned r = 0; r < rounds; r++)
                        for (unsigned i = 0; i < nq; i++)
                                verify_one(&s[i], cached ? ak.pub->pkey : NULL, ak.pub);
                t1 = now_s();
                double us = (t1 - t0) * 1e6 / ((double)nq * rounds);
                printf("{\"bench\":\"quote_verify\",\"key\":\"%s\",\"mode\":\"%s\",\"mask\":"
                       "\"0x%x\",\"verifications\":%u,\"us_per_quote\":%.2f,\"per_sec_per_core\":"
                       "%.0f,\"target_us\":40,\"keylime_us\":345}\n",
                       name, cached ? "cached_pkey+verify" : "parse_ak+verify", mask, nq * rounds,
                       us, 1e6 / us);
        }
        printf("{\"bench\":\"openssl_verify_floor\",\"key\":\"%s\",\"verifications\":%u,"
               "\"us_per_verify\":%.2f}\n",
               name, nq * rounds, openssl_floor_us(ak.priv, ak.pub->pkey, nq * rounds));
        for (unsigned i = 0; i < nq; i++)
                free(s[i].quote);
        free(s);
        sim_key_clear(&ak);
}

int main(int argc, char **argv)
{
        unsigned nq = 1000, rounds = 5;
        uint32_t mask = 0x10400;
        const char *dump_dir = NULL;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                char *end = NULL;

                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        usage(stdout);
                        return 0;
                }
                if (!v) {
                        usage(stderr);
                        return 2;
                }
                if (!strcmp(a, "--dump")) {
                        dump_dir = v;
                        i++;
                        continue;
                }
                unsigned long x = strtoul(v, &end, 0);
                if (!*v || *end || x == 0 || x > 10000000) {
                        fprintf(stderr, "bench_quote_verify: %s: bad number \"%s\"\n", a, v);
                        return 2;
                }
                if (!strcmp(a, "--quotes"))
                        nq = (unsigned)x;
                else if (!strcmp(a, "--rounds"))
                        rounds = (unsigned)x;
                else if (!strcmp(a, "--mask") && x < (1ul << VG_PCR_MAX))
                        mask = (uint32_t)x;
                else {
                        usage(stderr);
                        return 2;
                }
                i++;
        }
        /* The rust-keylime test vector (shared/data/quote) is not verified: its AK is not there. */
        run(VG_TPM_KEY_ECC, nq, rounds, mask, dump_dir);
        run(VG_TPM_KEY_RSA, nq, rounds, mask, dump_dir);
        return 0;
}
