/* vigil bench: TCG event-log parse + replay time (median over many runs) on a real log, and
 * tpm2_eventlog's time on the same file for comparison. One JSON object per line.
 * Usage: bench_eventlog [LOG] [RUNS] [TPM2_RUNS]   (default ../shared/data/eventlog/ideapad1.bin,
 * 5000 runs, 50 tpm2_eventlog runs; 0 skips tpm2_eventlog) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "eventlog.h"

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        return v[(int)(p * (n - 1))];
}

int main(int argc, char **argv)
{
        const char *path = argc > 1 ? argv[1] : "../shared/data/eventlog/ideapad1.bin";
        int runs = argc > 2 ? atoi(argv[2]) : 5000, tpm2_runs = argc > 3 ? atoi(argv[3]) : 50;
        FILE *f = fopen(path, "rb");
        static uint8_t buf[VG_EVLOG_MAX_LOG_SIZE / 64];
        size_t len;
        struct vg_evlog_pcrs *pcrs = malloc(sizeof(*pcrs));
        double *t = calloc((size_t)(runs > tpm2_runs ? runs : tpm2_runs) + 1, sizeof(double));
        size_t n_events = 0;

        if (!f || !pcrs || !t || runs < 1) {
                fprintf(stderr, "bench_eventlog: cannot read %s\n", path);
                return 1;
        }
        len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        for (int i = 0; i < runs + 100; i++) {
                struct vg_evlog *log = NULL;
                struct vg_error err = { 0 };
                double t0 = now();
                if (vg_evlog_parse(buf, len, &log, &err) < 0 ||
                    vg_evlog_replay(log, SIZE_MAX, pcrs, &err) < 0) {
                        fprintf(stderr, "bench_eventlog: %s\n", vg_error_str(&err));
                        return 1;
                }
                double dt = now() - t0;
                n_events = log->n_events;
                vg_evlog_free(log);
                if (i >= 100) /* warm-up */
                        t[i - 100] = dt * 1e6;
        }
        printf("{\"bench\":\"eventlog_parse_replay\",\"file\":\"%s\",\"bytes\":%zu,\"events\":%zu,"
               "\"banks\":%u,\"runs\":%d,\"median_us\":%.1f,\"p90_us\":%.1f,\"min_us\":%.1f}\n",
               path, len, n_events, pcrs->n_banks, runs, pct(t, runs, 0.5), pct(t, runs, 0.9),
               pct(t, runs, 0.0));
        /* parse only */
        for (int i = 0; i < runs; i++) {
                struct vg_evlog *log = NULL;
                double t0 = now();
                vg_evlog_parse(buf, len, &log, NULL);
                t[i] = (now() - t0) * 1e6;
                vg_evlog_free(log);
        }
        printf("{\"bench\":\"eventlog_parse\",\"runs\":%d,\"median_us\":%.1f}\n", runs,
               pct(t, runs, 0.5));
        if (tpm2_runs <= 0)
                return 0;
        int ok = 0;
        for (int i = 0; i < tpm2_runs; i++) {
                double t0 = now();
                pid_t pid = fork();
                if (pid == 0) {
                        int fd = open("/dev/null", O_WRONLY);
                        dup2(fd, 1);
                        dup2(fd, 2);
                        execlp("tpm2_eventlog", "tpm2_eventlog", path, (char *)NULL);
                        _exit(127);
                }
                int st = 0;
                waitpid(pid, &st, 0);
                t[i] = (now() - t0) * 1e3;
                ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
        }
        printf("{\"bench\":\"tpm2_eventlog\",\"runs\":%d,\"exit_0\":%d,\"median_ms\":%.2f,"
               "\"p90_ms\":%.2f}\n",
               tpm2_runs, ok, pct(t, tpm2_runs, 0.5), pct(t, tpm2_runs, 0.9));
        return 0;
}
