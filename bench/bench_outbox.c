/* vigil bench: the integrity-event outbox on SQLite. Append rate (one event per transaction and
 * batches), then events delivered per second to a local mosquitto with QoS 1, counted as
 * PUBACK-confirmed cursor advances. Usage: bench_outbox [EVENTS [BATCH]]; prints key=value lines.
 */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "integrity_event.h"
#include "log.h"
#include "outbox.h"
#include "store.h"

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int free_port(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

        if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
                port = ntohs(sa.sin_port);
        close(fd);
        return port;
}

static pid_t start_broker(const char *dir, int port)
{
        char conf[512], text[512];
        FILE *f;

        snprintf(conf, sizeof(conf), "%s/mosquitto.conf", dir);
        snprintf(text, sizeof(text),
                 "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                 "log_dest none\n",
                 port);
        f = fopen(conf, "w");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                return -1;
        pid_t pid = fork();
        if (pid == 0) {
                execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf, (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 250; i++) {
                struct sockaddr_in sa = { .sin_family = AF_INET,
                                          .sin_port = htons((uint16_t)port),
                                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                int fd = socket(AF_INET, SOCK_STREAM, 0);
                int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
                close(fd);
                if (r == 0)
                        return pid;
                usleep(20000);
        }
        kill(pid, SIGTERM);
        return -1;
}

static json_t *make_event(unsigned i)
{
        char agent[64];
        struct vg_ievent_measurement m = { .alg = VG_HASH_SHA256, .pcr = 4 };
        struct vg_ievent_header h = { .agent_id = agent,
                                      .boot_counter = i,
                                      .severity = VG_IEVENT_ERROR };

        /* 16 agents, as a verifier's events interleave */
        snprintf(agent, sizeof(agent), "d432fbb3-d2f1-4a97-9ef7-75bd81c%05u", i % 16);
        memset(m.value, (int)i, sizeof(m.value));
        return vg_ievent_boot_report(&h, true, false, &m, 1, &m, 1, NULL);
}

static int append_n(struct vg_outbox *ob, unsigned from, unsigned n, unsigned per_call)
{
        json_t **evs = calloc(per_call, sizeof(*evs));
        struct vg_error err = { 0 };

        for (unsigned i = 0; i < n; i += per_call) {
                unsigned k = n - i < per_call ? n - i : per_call;
                for (unsigned j = 0; j < k; j++)
                        evs[j] = make_event(from + i + j);
                int r = vg_outbox_append(ob, evs, k, NULL, &err);
                for (unsigned j = 0; j < k; j++)
                        json_decref(evs[j]);
                if (r < 0) {
                        fprintf(stderr, "append: %s\n", vg_error_str(&err));
                        free(evs);
                        return r;
                }
        }
        free(evs);
        return 0;
}

int main(int argc, char **argv)
{
        unsigned events = argc > 1 ? (unsigned)atoi(argv[1]) : 50000;
        unsigned batch = argc > 2 ? (unsigned)atoi(argv[2]) : 1000;
        char dir[] = "/tmp/vigil-bench-outbox-XXXXXX", url[300];
        struct vg_error err = { 0 };
        struct vg_store *db = NULL;
        struct vg_outbox *ob = NULL;
        struct vg_sink *sink = NULL;
        struct event_base *base;
        double t0, t1;
        int rc = 1;

        signal(SIGPIPE, SIG_IGN);
        vg_log_setup(
            &(struct vg_log_config){ .component = "bench_outbox", .level = VG_LOG_WARNING });
        if (!mkdtemp(dir))
                return 1;
        snprintf(url, sizeof(url), "%s/cv_data.sqlite", dir);
        base = event_base_new();
        if (vg_store_open(&db, url, NULL, &err) < 0 ||
            vg_outbox_new(base, db, &(struct vg_outbox_config){ .batch_size = batch }, &ob, &err) <
                0) {
                fprintf(stderr, "%s\n", vg_error_str(&err));
                return 1;
        }

        /* append rates */
        unsigned singles = events / 10 < 2000 ? events / 10 : 2000;
        t0 = now_s();
        if (append_n(ob, 0, singles, 1) < 0)
                return 1;
        t1 = now_s();
        printf("append_1_per_txn_events_per_s=%.0f\n", singles / (t1 - t0));
        t0 = now_s();
        if (append_n(ob, singles, events - singles, 100) < 0)
                return 1;
        t1 = now_s();
        printf("append_100_per_txn_events_per_s=%.0f\n", (events - singles) / (t1 - t0));

        /* delivery to mosquitto, QoS 1 */
        int port = free_port();
        pid_t broker = start_broker(dir, port);
        if (broker < 0) {
                fprintf(stderr, "cannot start mosquitto\n");
                return 1;
        }
        struct vg_sink_mqtt_config mc = { .port = port,
                                          .client_id = "vigil-bench",
                                          .max_inflight = batch };
        if (vg_sink_mqtt_new(&mc, &sink, &err) < 0) {
                fprintf(stderr, "%s\n", vg_error_str(&err));
                goto out;
        }
        int64_t head = 0;
        vg_outbox_head(ob, &head, &err);
        t0 = now_s();
        if (vg_outbox_add_sink(ob, sink, &err) < 0) {
                fprintf(stderr, "%s\n", vg_error_str(&err));
                goto out;
        }
        struct vg_outbox_sink_status st = { 0 };
        double first = 0;
        for (;;) {
                struct timeval tv = { 0, 5000 };
                event_base_loopexit(base, &tv);
                event_base_dispatch(base);
                vg_outbox_sink_status(ob, "mqtt", &st);
                if (!first && st.delivered > 0)
                        first = now_s();
                if (st.cursor >= head || now_s() - t0 > 120)
                        break;
        }
        t1 = now_s();
        if (st.cursor < head) {
                fprintf(stderr, "only %lld of %lld delivered (%s)\n", (long long)st.cursor,
                        (long long)head, st.last_error);
                goto out;
        }
        printf("mqtt_qos1_events=%lld\nmqtt_qos1_batch=%u\n", (long long)head, batch);
        printf("mqtt_qos1_connect_s=%.3f\n", first - t0);
        printf("mqtt_qos1_delivered_per_s=%.0f\n", (double)head / (t1 - t0));
        printf("mqtt_qos1_delivered_per_s_after_connect=%.0f\n", (double)head / (t1 - first));
        rc = 0;
out:
        vg_outbox_free(ob);
        vg_store_close(db);
        vg_event_base_free_drained(base);
        kill(broker, SIGTERM);
        waitpid(broker, NULL, 0);
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                rc = 1;
        return rc;
}
