/* vigil bench: quote latency and agent memory, as a Keylime verifier sees them: integrity
 * quotes over mTLS from a running vigil-agent, at a steady rate and back to back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "log.h"
#include "tls.h"

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(int pid)
{
        char path[64], line[256];
        long kib = -1;

        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        FILE *f = fopen(path, "r");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

/* One integrity quote (PCR 10 and 16, IMA list from entry 0); its latency in ms, or -1. */
static double one_quote(struct vg_http_client_config *cc, SSL_CTX *tls, int port, unsigned i)
{
        char url[256];
        struct vg_http_response *resp = NULL;
        struct vg_error err = { 0 };

        snprintf(url, sizeof(url),
                 "https://127.0.0.1:%d/v2.1/quotes/integrity?nonce=bench%08u&mask=0x400"
                 "&partial=1&ima_ml_entry=0",
                 port, i);
        struct vg_http_client_request req = { .url = url, .tls = tls };
        double t0 = now();
        if (vg_http_fetch(cc, &req, &resp, &err) < 0) {
                fprintf(stderr, "bench_quote: %s\n", vg_error_str(&err));
                return -1;
        }
        int status = resp->status;
        vg_http_response_free(resp);
        return status == 200 ? (now() - t0) * 1000 : -1;
}

static void report(const char *phase, double *ms, size_t n, long rss)
{
        qsort(ms, n, sizeof(*ms), cmp_double);
        printf("{\"bench\":\"quote\",\"phase\":\"%s\",\"quotes\":%zu,\"median_ms\":%.2f,"
               "\"p99_ms\":%.2f,\"agent_rss_kib\":%ld}\n",
               phase, n, ms[n / 2], ms[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], rss);
        fflush(stdout);
}

int main(int argc, char **argv)
{
        if (argc != 5) {
                fprintf(stderr, "usage: bench_quote AGENT_PORT AGENT_PID AGENT_CERT CA_DIR\n"
                                "  AGENT_CERT: the agent's server certificate (pinned)\n"
                                "  CA_DIR: a `vigil ca init` dir whose client cert the agent "
                                "trusts\n");
                return 2;
        }
        int port = atoi(argv[1]), pid = atoi(argv[2]);
        char cert[1024], key[1024];
        struct vg_error err = { 0 };

        vg_log_setup(&(struct vg_log_config){ .component = "bench_quote", .level = VG_LOG_ERR });
        snprintf(cert, sizeof(cert), "%s/client-cert.crt", argv[4]);
        snprintf(key, sizeof(key), "%s/client-private.pem", argv[4]);
        SSL_CTX *tls = vg_tls_client_ctx_new(
                &(struct vg_tls_client_config){
                        .pinned_cert_file = argv[3], .cert_file = cert, .key_file = key },
                &err);
        if (!tls) {
                fprintf(stderr, "bench_quote: %s\n", vg_error_str(&err));
                return 1;
        }
        struct vg_http_client_config cc = { .timeout_ms = 10000 };
        static double ms[2000];

        /* Warm up (first TLS handshake, first quote), then the agent at rest. */
        one_quote(&cc, tls, port, 0);
        sleep(2);
        printf("{\"bench\":\"quote\",\"phase\":\"idle\",\"agent_rss_kib\":%ld}\n", rss_kib(pid));

        /* A verifier polling at 10 quotes/s (Keylime's default is one every 2 s per agent):
         * each request is a new connection, as Keylime's verifier makes them. */
        size_t n = 0;
        long peak = 0;
        double start = now();
        for (unsigned i = 1; i <= 200; i++) {
                double due = start + i * 0.1, t = now();
                if (due > t)
                        usleep((useconds_t)((due - t) * 1e6));
                double v = one_quote(&cc, tls, port, i);
                if (v < 0)
                        return 1;
                ms[n++] = v;
                long r = rss_kib(pid);
                peak = r > peak ? r : peak;
        }
        report("10_per_s", ms, n, peak);

        /* Back to back: what one agent can serve. */
        n = 0;
        start = now();
        for (unsigned i = 1000; i < 1500; i++) {
                double v = one_quote(&cc, tls, port, i);
                if (v < 0)
                        return 1;
                ms[n++] = v;
        }
        double secs = now() - start;
        report("back_to_back", ms, n, rss_kib(pid));
        printf("{\"bench\":\"quote\",\"phase\":\"back_to_back\",\"quotes_per_s\":%.1f}\n",
               (double)n / secs);
        SSL_CTX_free(tls);
        return 0;
}
