/* vigil bench: the HTTP server under load. Serves a Keylime-style JSON reply on 127.0.0.1 so
 * that an external load generator (wrk) measures requests/s and latency; bench/http.sh runs it. */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_server.h"
#include "log.h"
#include "tls.h"

/* What GET /v2.1/quotes/identity might answer, minus the TPM: a realistic body size. */
static void reply_quote(struct vg_http_request *req, void *userdata)
{
        (void)userdata;
        json_t *results = json_pack("{s:s, s:s, s:s, s:s}", "quote",
                                    "r/1RDR4AYACIAC1d5ZmV0aW1lX3F1b3RlX3N0dWIAAAAAAAAAAAAAAAAAAAAA",
                                    "hash_alg", "sha256", "enc_alg", "rsa", "sign_alg", "rsassa");
        vg_http_reply_keylime(req, 200, "Success", results);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
        (void)fd, (void)what;
        event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
        const char *tls_dir = NULL;
        bool mtls = false;
        int port = 0;
        struct vg_error err = { 0 };

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
                        port = atoi(argv[++i]);
                else if (strcmp(argv[i], "--tls") == 0 && i + 1 < argc)
                        tls_dir = argv[++i];
                else if (strcmp(argv[i], "--mtls") == 0)
                        mtls = true;
                else {
                        fprintf(stderr, "usage: bench_http --port N [--tls CA_DIR [--mtls]]\n"
                                        "  CA_DIR as made by `vigil ca init`\n");
                        return 2;
                }
        }
        vg_log_setup(&(struct vg_log_config){ .component = "bench_http", .level = VG_LOG_WARNING });

        struct event_base *base = event_base_new();
        SSL_CTX *ctx = NULL;
        if (tls_dir) {
                char cert[4096], key[4096], ca[4096];
                snprintf(cert, sizeof(cert), "%s/server-cert.crt", tls_dir);
                snprintf(key, sizeof(key), "%s/server-private.pem", tls_dir);
                snprintf(ca, sizeof(ca), "%s/cacert.crt", tls_dir);
                ctx = vg_tls_server_ctx_new(
                    &(struct vg_tls_server_config){
                        .cert_file = cert,
                        .key_file = key,
                        .client_auth = mtls ? VG_TLS_CLIENT_AUTH_REQUIRED : VG_TLS_CLIENT_AUTH_NONE,
                        .client_ca_file = ca },
                    &err);
                if (!ctx) {
                        fprintf(stderr, "bench_http: %s\n", vg_error_str(&err));
                        return 1;
                }
        }
        struct vg_http_server *srv;
        if (vg_http_server_new(
                base,
                &(struct vg_http_server_config){
                    .address = "127.0.0.1", .port = (uint16_t)port, .tls = ctx, .name = "bench" },
                &srv, &err) < 0) {
                fprintf(stderr, "bench_http: %s\n", vg_error_str(&err));
                return 1;
        }
        SSL_CTX_free(ctx);
        vg_http_server_route(srv, "GET", "/v{version}/quotes/identity", reply_quote, NULL);
        struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
        struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
        event_add(sigterm, NULL);
        event_add(sigint, NULL);
        printf("listening on 127.0.0.1:%d\n", vg_http_server_port(srv));
        fflush(stdout);
        event_base_dispatch(base);
        vg_http_server_free(srv);
        event_free(sigterm);
        event_free(sigint);
        event_base_free(base);
        return 0;
}
