/* vigil tests: the core modules: digests (FIPS 180 vectors), PCR extend, base64 (RFC 4648
 * section 10 vectors), hex, constant-time compare, logging and error records. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cleanup.h"
#include "encoding.h"
#include "error.h"
#include "hash.h"
#include "log.h"
#include "tap.h"

static char *hex_of(const uint8_t *p, size_t n)
{
        return vg_hex_encode(p, n);
}

static void test_digests(void)
{
        static const struct {
                const char *alg, *hex_abc;
        } vec[] = {
                { "sha1", "a9993e364706816aba3e25717850c26c9cd0d89d" },
                { "sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
                { "sha384", "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                            "8086072ba1e7cc2358baeca134c825a7" },
                { "SHA512", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f" },
        };

        for (size_t i = 0; i < VG_ARRAY_SIZE(vec); i++) {
                enum vg_hash_alg alg;
                uint8_t out[VG_HASH_MAX_SIZE];
                struct vg_hash_ctx *ctx;

                is_int(vg_hash_alg_from_name(vec[i].alg, &alg), 0, "%s is a known algorithm",
                       vec[i].alg);
                vg_hash(alg, "abc", 3, out);
                _cleanup_free_ char *h1 = hex_of(out, vg_hash_size(alg));
                is_str(h1, vec[i].hex_abc, "%s(\"abc\") one-shot", vec[i].alg);

                /* Incremental, byte by byte, twice on the same context (final resets it). */
                vg_hash_new(alg, &ctx);
                for (int round = 0; round < 2; round++) {
                        vg_hash_update(ctx, "a", 1);
                        vg_hash_update(ctx, "b", 1);
                        vg_hash_update(ctx, "c", 1);
                        vg_hash_final(ctx, out);
                        _cleanup_free_ char *h2 = hex_of(out, vg_hash_size(alg));
                        is_str(h2, vec[i].hex_abc, "%s incremental, round %d", vec[i].alg, round);
                }
                vg_hash_free(ctx);
        }

        enum vg_hash_alg alg;
        is_int(vg_hash_alg_from_name("md5", &alg), -EINVAL, "md5 is refused");
        is_int(vg_hash_alg_from_tpm_id(0x000B, &alg), 0, "TPM_ALG_SHA256 maps");
        is_int(alg, VG_HASH_SHA256, "0x000B is sha256");
        is_int(vg_hash_tpm_alg_id(VG_HASH_SHA1), 0x0004, "sha1 is TPM_ALG_SHA1");
}

static void test_extend(void)
{
        /* PCR 10 after extending the ima-ng boot_aggregate-style digest of zeroes: sha256 of
         * 64 zero bytes, as a TPM computes it. */
        uint8_t pcr[32] = { 0 }, zero[32] = { 0 }, want[32];
        uint8_t both[64] = { 0 };

        vg_hash(VG_HASH_SHA256, both, sizeof(both), want);
        is_int(vg_hash_extend(VG_HASH_SHA256, pcr, zero), 0, "extend succeeds");
        is_mem(pcr, 32, want, 32, "extend is H(pcr || digest)");
}

static void test_hash_file(void)
{
        char *dir = tap_tmpdir(), path[4096];
        uint8_t out[32];

        snprintf(path, sizeof(path), "%s/f", dir);
        tap_write_file(path, "abc");
        is_int(vg_hash_file(VG_HASH_SHA256, path, out), 0, "hash a file");
        _cleanup_free_ char *h = hex_of(out, 32);
        is_str(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
               "file digest matches");
        snprintf(path, sizeof(path), "%s/missing", dir);
        is_int(vg_hash_file(VG_HASH_SHA256, path, out), -ENOENT, "missing file is -ENOENT");
        free(dir);
}

static void test_base64(void)
{
        static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
        static const char *const std[] = { "",         "Zg==",     "Zm8=",    "Zm9v",
                                           "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
        static const char *const url[] = {
                "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"
        };

        for (size_t i = 0; i < VG_ARRAY_SIZE(plain); i++) {
                _cleanup_free_ char *e1 = vg_b64_encode(plain[i], strlen(plain[i]), VG_B64_STD);
                _cleanup_free_ char *e2 = vg_b64_encode(plain[i], strlen(plain[i]), VG_B64_URL);
                _cleanup_free_ uint8_t *d1 = NULL, *d2 = NULL;
                size_t n1 = 0, n2 = 0;

                is_str(e1, std[i], "base64(\"%s\")", plain[i]);
                is_str(e2, url[i], "base64url(\"%s\")", plain[i]);
                is_int(vg_b64_decode(std[i], strlen(std[i]), VG_B64_STD, &d1, &n1), 0, "decode %s",
                       std[i]);
                is_mem(d1, n1, plain[i], strlen(plain[i]), "round trip %s", std[i]);
                is_int(vg_b64_decode(url[i], strlen(url[i]), VG_B64_URL, &d2, &n2), 0,
                       "decode url %s", url[i]);
                is_mem(d2, n2, plain[i], strlen(plain[i]), "round trip url %s", url[i]);
        }

        const uint8_t bin[] = { 0xfb, 0xff, 0xbf };
        _cleanup_free_ char *s = vg_b64_encode(bin, 3, VG_B64_STD);
        _cleanup_free_ char *u = vg_b64_encode(bin, 3, VG_B64_URL);
        is_str(s, "+/+/", "standard alphabet uses + and /");
        is_str(u, "-_-_", "URL alphabet uses - and _");

        static const char *const bad[] = { "Zm9", "Zm9v\n", "Z===", "Zh==", "-_-_", "Zm 9v" };
        for (size_t i = 0; i < VG_ARRAY_SIZE(bad); i++) {
                uint8_t *d = NULL;
                size_t n;
                is_int(vg_b64_decode(bad[i], strlen(bad[i]), VG_B64_STD, &d, &n), -EINVAL,
                       "standard decoder refuses \"%s\"", bad[i]);
                free(d);
        }
        uint8_t *d = NULL;
        size_t n;
        is_int(vg_b64_decode("+/+/", 4, VG_B64_URL, &d, &n), -EINVAL,
               "URL decoder refuses the standard alphabet");
        free(d);
}

static void test_hex(void)
{
        uint8_t out[4];
        _cleanup_free_ uint8_t *d = NULL;
        size_t n;

        is_int(vg_hex_decode("DEADbeef", 8, &d, &n), 0, "mixed-case hex decodes");
        is_mem(d, n, "\xde\xad\xbe\xef", 4, "hex bytes");
        _cleanup_free_ char *h = vg_hex_encode(d, n);
        is_str(h, "deadbeef", "hex encodes lower case");
        is_int(vg_hex_decode_exact("abc", 3, out, 4), -EINVAL, "odd length is refused");
        is_int(vg_hex_decode_exact("zz", 2, out, 1), -EINVAL, "non-hex is refused");
        is_int(vg_hex_decode_exact("0011", 4, out, 4), -EINVAL, "wrong length is refused");
        ok(vg_ct_equal("abcd", "abcd", 4), "ct_equal equal");
        ok(!vg_ct_equal("abcd", "abce", 4), "ct_equal differs in last byte");
}

static void test_buf(void)
{
        const uint8_t data[] = { 1, 2, 3, 4, 5, 6, 7 };
        struct vg_buf b = vg_buf_init(data, sizeof(data)), sub;
        uint32_t v32;
        uint16_t v16;

        ok(vg_buf_u32le(&b, &v32) && v32 == 0x04030201, "u32le");
        ok(vg_buf_u16be(&b, &v16) && v16 == 0x0506, "u16be");
        ok(!vg_buf_u32le(&b, &v32), "reading past the end fails");
        is_int(b.len, 1, "a failed read does not move the cursor");
        ok(!vg_buf_sub(&b, 2, &sub) && vg_buf_sub(&b, 1, &sub) && sub.p[0] == 7, "sub-cursor");
}

static void test_log(void)
{
        char *dir = tap_tmpdir(), path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/log", dir);
        f = fopen(path, "w+");
        vg_log_setup(
            &(struct vg_log_config){ .component = "vigil-test", .level = VG_LOG_INFO, .out = f });
        vg_info(VG_F("agent", "d432fbb3-d2f1-4a97-9ef7-75bd81c00000", "file", "/etc/x"),
                "quote failed: %s", "bad signature");
        vg_debug(NULL, "not shown");
        vg_log_setup(&(struct vg_log_config){
            .component = "vigil-test", .level = VG_LOG_DEBUG, .json = true, .out = f });
        vg_err(VG_F("file", "/var/\xff.bin", "offset", "128", "skipped", NULL),
               "event log truncated");
        fflush(f);
        fclose(f);
        vg_log_setup(&(struct vg_log_config){ .component = "vigil-test", .level = VG_LOG_INFO });

        _cleanup_free_ char *text = tap_read_file(path, NULL);
        contains(text, "vigil-test[", "plain line names the component");
        contains(text,
                 "info: agent=d432fbb3-d2f1-4a97-9ef7-75bd81c00000 file=/etc/x: quote failed: "
                 "bad signature\n",
                 "plain line names the object and the message");
        ok(!strstr(text, "not shown"), "debug lines are dropped at info level");

        char *second = strchr(text, '\n');
        json_error_t jerr;
        json_t *j = second ? json_loads(second + 1, JSON_DISABLE_EOF_CHECK, &jerr) : NULL;
        ok(j != NULL, "JSON line parses");
        is_str(json_string_value(json_object_get(j, "level")), "error", "JSON level");
        is_str(json_string_value(json_object_get(j, "file")), "/var/?.bin",
               "invalid UTF-8 in a field becomes '?'");
        is_str(json_string_value(json_object_get(j, "offset")), "128", "JSON offset field");
        ok(json_object_get(j, "skipped") == NULL, "a NULL value drops its field");
        is_str(json_string_value(json_object_get(j, "msg")), "event log truncated", "JSON msg");
        json_decref(j);

        enum vg_log_level lvl;
        ok(vg_log_level_from_string("WARN", &lvl) == 0 && lvl == VG_LOG_WARNING, "level names");
        is_int(vg_log_level_from_string("loud", &lvl), -EINVAL, "unknown level refused");
        free(dir);
}

static void test_error(void)
{
        struct vg_error err = { 0 };

        is_int(vg_error_set(&err, -EINVAL, "line %d: expected '='", 3), -EINVAL,
               "vg_error_set returns its code");
        vg_error_prefix(&err, "%s:", "agent.conf");
        is_str(vg_error_str(&err), "agent.conf:line 3: expected '='", "prefix is prepended");
        struct vg_error bare = { .code = -ENOENT };
        is_str(vg_error_str(&bare), strerror(ENOENT), "no message falls back to strerror");
}

int main(void)
{
        test_digests();
        test_extend();
        test_hash_file();
        test_base64();
        test_hex();
        test_buf();
        test_log();
        test_error();
        return tap_done();
}
