/* vigil bench: digest and encoding throughput, the inner loops of IMA/FIM verification and of
 * every JSON body. Prints one JSON object per line: {"bench":..,"alg":..,"size":..,"MBps":..}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "encoding.h"
#include "hash.h"

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run fn until at least min_seconds have passed; return bytes per second. */
static double measure(void (*fn)(void *, size_t), void *arg, size_t size, double min_seconds)
{
        double start = now(), elapsed;
        size_t iters = 0;

        do {
                for (int i = 0; i < 16; i++)
                        fn(arg, size);
                iters += 16;
                elapsed = now() - start;
        } while (elapsed < min_seconds);
        return (double)iters * (double)size / elapsed;
}

struct hash_arg {
        enum vg_hash_alg alg;
        const uint8_t *data;
};

static void do_hash(void *p, size_t size)
{
        struct hash_arg *a = p;
        uint8_t out[VG_HASH_MAX_SIZE];

        vg_hash(a->alg, a->data, size, out);
}

static void do_b64_encode(void *p, size_t size)
{
        free(vg_b64_encode(p, size, VG_B64_STD));
}

static void do_b64_decode(void *p, size_t size)
{
        uint8_t *out;
        size_t n;

        if (vg_b64_decode(p, size, VG_B64_STD, &out, &n) == 0)
                free(out);
}

int main(int argc, char **argv)
{
        static const size_t sizes[] = { 64, 4096, 1 << 20 };
        double secs = argc > 1 ? atof(argv[1]) : 0.5;
        uint8_t *data = malloc(1 << 20);

        for (size_t i = 0; i < (1 << 20); i++)
                data[i] = (uint8_t)(i * 2654435761u >> 24);

        for (int alg = 0; alg < VG_HASH_ALG_COUNT; alg++) {
                for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                        struct hash_arg a = { (enum vg_hash_alg)alg, data };
                        double bps = measure(do_hash, &a, sizes[s], secs);
                        printf("{\"bench\":\"hash\",\"alg\":\"%s\",\"size\":%zu,\"MBps\":%.1f}\n",
                               vg_hash_alg_name((enum vg_hash_alg)alg), sizes[s], bps / 1e6);
                }
        }
        double enc = measure(do_b64_encode, data, 1 << 20, secs);
        char *b64 = vg_b64_encode(data, 1 << 20, VG_B64_STD);
        double dec = measure(do_b64_decode, b64, strlen(b64), secs);
        printf("{\"bench\":\"base64_encode\",\"size\":%d,\"MBps\":%.1f}\n", 1 << 20, enc / 1e6);
        printf("{\"bench\":\"base64_decode\",\"size\":%zu,\"MBps\":%.1f}\n", strlen(b64),
               dec / 1e6);
        free(b64);
        free(data);
        return 0;
}
