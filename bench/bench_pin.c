/* vigil bench: decryption time of one JWE, median over N runs, either a command per run (its
 * stdin the JWE: `vigil pin decrypt`, `clevis decrypt`), or vg_pin_decrypt() in this process.
 *   bench_pin --label L --runs N --in FILE [--expect TEXT] -- COMMAND ARGS...
 *   bench_pin --label L --runs N --in FILE [--expect TEXT] --lib
 * Prints one JSON line: {"bench":"pin","label":..,"runs":..,"median_ms":..,"p90_ms":..,
 * "min_ms":..,"max_ms":..,"errors":..}. Exit 1 when a run failed. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pin.h"

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

/* One run of argv with stdin from in; true when it exits 0 and (if expect) prints expect. */
static bool run_cmd(char **argv, const char *in, const char *expect)
{
        int out[2];
        char buf[4096];
        size_t n = 0;
        ssize_t k;
        pid_t pid;
        int st;

        if (pipe(out) < 0)
                return false;
        pid = fork();
        if (pid < 0)
                return false;
        if (pid == 0) {
                int fd = open(in, O_RDONLY);

                if (fd < 0 || dup2(fd, 0) < 0 || dup2(out[1], 1) < 0)
                        _exit(127);
                close(out[0]);
                execvp(argv[0], argv);
                _exit(127);
        }
        close(out[1]);
        while ((k = read(out[0], buf + n, sizeof(buf) - 1 - n)) > 0 && n < sizeof(buf) - 1)
                n += (size_t)k;
        while (k > 0)
                k = read(out[0], buf, sizeof(buf));
        close(out[0]);
        buf[n] = '\0';
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return false;
        return !expect || strcmp(buf, expect) == 0;
}

static bool run_lib(const char *jwe, size_t len, const char *expect)
{
        struct vg_error err = { 0 };
        uint8_t *pt = NULL;
        size_t pt_len = 0;
        bool good;

        if (vg_pin_decrypt(jwe, len, NULL, &pt, &pt_len, &err) < 0) {
                fprintf(stderr, "bench_pin: %s\n", err.msg);
                return false;
        }
        good = !expect || (pt_len == strlen(expect) && memcmp(pt, expect, pt_len) == 0);
        free(pt);
        return good;
}

int main(int argc, char **argv)
{
        const char *label = "pin", *in = NULL, *expect = NULL;
        char **cmd = NULL, jwe[1 << 20];
        bool lib = false;
        int runs = 50, errors = 0;
        size_t len = 0;
        double *t;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
                        label = argv[++i];
                else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
                        runs = atoi(argv[++i]);
                else if (strcmp(argv[i], "--in") == 0 && i + 1 < argc)
                        in = argv[++i];
                else if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc)
                        expect = argv[++i];
                else if (strcmp(argv[i], "--lib") == 0)
                        lib = true;
                else if (strcmp(argv[i], "--") == 0 && i + 1 < argc) {
                        cmd = argv + i + 1;
                        break;
                } else {
                        fprintf(stderr, "bench_pin: bad argument %s\n", argv[i]);
                        return 2;
                }
        }
        if (!in || runs < 1 || (!lib && !cmd)) {
                fprintf(stderr, "usage: bench_pin --label L --runs N --in FILE [--expect T] "
                                "(--lib | -- COMMAND...)\n");
                return 2;
        }
        if (lib) {
                FILE *f = fopen(in, "r");

                if (!f) {
                        perror(in);
                        return 2;
                }
                len = fread(jwe, 1, sizeof(jwe) - 1, f);
                fclose(f);
                jwe[len] = '\0';
        }
        t = calloc((size_t)runs, sizeof(*t));
        if (!t)
                return 2;
        for (int i = 0; i < runs; i++) {
                double t0 = now_ms();
                bool good = lib ? run_lib(jwe, len, expect) : run_cmd(cmd, in, expect);

                t[i] = now_ms() - t0;
                if (!good)
                        errors++;
        }
        qsort(t, (size_t)runs, sizeof(*t), cmp);
        printf("{\"bench\":\"pin\",\"label\":\"%s\",\"runs\":%d,\"median_ms\":%.2f,"
               "\"p90_ms\":%.2f,\"min_ms\":%.2f,\"max_ms\":%.2f,\"errors\":%d}\n",
               label, runs, t[runs / 2], t[(runs * 9) / 10 < runs ? (runs * 9) / 10 : runs - 1],
               t[0], t[runs - 1], errors);
        free(t);
        return errors ? 1 : 0;
}
