/* vigil: Clevis pins: dispatch by pin name, and the decryption engine that runs a JWE tree (sss
 * shares, nested) on one event loop so that every Tang server is asked at once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "pin_private.h"
#include "tls.h"

int vg_pin_encrypt_depth(const char *pin, const json_t *cfg, const void *pt, size_t pt_len,
                         const struct vg_pin_opts *opts, unsigned depth, char **jwe,
                         struct vg_error *err)
{
        static const struct vg_pin_opts none = { 0 };

        if (!opts)
                opts = &none;
        if (!pin)
                return vg_error_set(err, -EINVAL, "no pin named");
        if (!json_is_object(cfg))
                return vg_error_set(err, -EINVAL, "%s: the configuration is not a JSON object",
                                    pin);
        if (depth > VG_PIN_MAX_DEPTH)
                return vg_error_set(err, -ELOOP, "sss: pins nested more than %d deep",
                                    VG_PIN_MAX_DEPTH);
        if (strcmp(pin, "tang") == 0)
                return vg_pin_tang_encrypt(cfg, pt, pt_len, opts, jwe, err);
        if (strcmp(pin, "sss") == 0)
                return vg_pin_sss_encrypt(cfg, pt, pt_len, opts, depth, jwe, err);
        if (strcmp(pin, "tpm2") == 0)
                return vg_pin_tpm2_encrypt(cfg, pt, pt_len, opts, jwe, err);
        return vg_error_set(err, -ENOENT, "unknown pin \"%.64s\" (expected tang, sss or tpm2)",
                            pin);
}

int vg_pin_encrypt(const char *pin, const json_t *cfg, const void *pt, size_t pt_len,
                   const struct vg_pin_opts *opts, char **jwe, struct vg_error *err)
{
        return vg_pin_encrypt_depth(pin, cfg, pt, pt_len, opts, 0, jwe, err);
}

/* ---- the engine ---- */

SSL_CTX *vg_pin_run_tls(struct vg_pin_run *run, struct vg_error *err)
{
        const char *bundle = getenv("CURL_CA_BUNDLE");
        SSL_CTX *ctx;

        if (run->tls)
                return run->tls;
        if (!bundle || !*bundle)
                bundle = getenv("SSL_CERT_FILE");
        if (bundle && *bundle) {
                ctx =
                    vg_tls_client_ctx_new(&(struct vg_tls_client_config){ .ca_file = bundle }, err);
                if (!ctx)
                        return NULL;
        } else {
                /* The system store, as curl uses it: OpenSSL's default paths. */
                ctx = SSL_CTX_new(TLS_client_method());
                if (!ctx || SSL_CTX_set_default_verify_paths(ctx) != 1) {
                        SSL_CTX_free(ctx);
                        vg_error_set(err, -EIO, "cannot load the system's trusted certificates");
                        return NULL;
                }
                SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
                SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        }
        run->tls = ctx;
        run->own_tls = true;
        return ctx;
}

static void report_cb(evutil_socket_t fd, short what, void *arg)
{
        struct vg_pin_node *node = arg;

        (void)fd;
        (void)what;
        node->cb(node, node->userdata);
}

void vg_pin_node_finish(struct vg_pin_node *node, int r, uint8_t *pt, size_t pt_len,
                        const struct vg_error *err)
{
        static const struct timeval now = { 0, 0 };

        if (node->finished) {
                free(pt);
                return;
        }
        node->finished = true;
        node->r = r;
        if (r < 0) {
                if (err && err->code)
                        node->err = *err;
                else
                        vg_error_set(&node->err, r, "%s", strerror(-r));
                free(pt);
        } else {
                node->pt = pt;
                node->pt_len = pt_len;
        }
        /* Stop what the pin still has running (sss: the shares not needed any more). */
        if (node->cancel)
                node->cancel(node);
        evtimer_add(node->report, &now);
}

void vg_pin_node_free(struct vg_pin_node *node)
{
        if (!node)
                return;
        if (!node->finished && node->cancel)
                node->cancel(node);
        if (node->destroy)
                node->destroy(node);
        if (node->report)
                event_free(node->report);
        vg_jwe_clear(&node->jwe);
        if (node->pt) {
                explicit_bzero(node->pt, node->pt_len);
                free(node->pt);
        }
        free(node);
}

struct vg_pin_node *vg_pin_node_start(struct vg_pin_run *run, unsigned depth, const char *text,
                                      size_t len, vg_pin_node_cb cb, void *userdata)
{
        struct vg_pin_node *node = calloc(1, sizeof(*node));
        struct vg_error err = { 0 };
        const char *pin;
        int r;

        if (!node)
                return NULL;
        node->run = run;
        node->depth = depth;
        node->cb = cb;
        node->userdata = userdata;
        node->report = evtimer_new(run->base, report_cb, node);
        if (!node->report) {
                free(node);
                return NULL;
        }
        r = vg_jwe_parse(text, len, &node->jwe, &err);
        if (r < 0) {
                vg_pin_node_finish(node, r, NULL, 0, &err);
                return node;
        }
        pin =
            json_string_value(json_object_get(json_object_get(node->jwe.header, "clevis"), "pin"));
        if (!pin) {
                vg_pin_node_finish(node,
                                   vg_error_set(&err, -EINVAL,
                                                "JWE protected header: no \"clevis\".\"pin\" (not "
                                                "a Clevis JWE?)"),
                                   NULL, 0, &err);
        } else if (depth > VG_PIN_MAX_DEPTH) {
                vg_pin_node_finish(node,
                                   vg_error_set(&err, -ELOOP, "sss: pins nested more than %d deep",
                                                VG_PIN_MAX_DEPTH),
                                   NULL, 0, &err);
        } else if (strcmp(pin, "tang") == 0) {
                vg_pin_tang_start(node);
        } else if (strcmp(pin, "sss") == 0) {
                vg_pin_sss_start(node);
        } else if (strcmp(pin, "tpm2") == 0) {
                uint8_t *pt = NULL;
                size_t pt_len = 0;

                /* Synchronous: the TPM is local and answers in milliseconds. */
                r = vg_pin_tpm2_decrypt(&node->jwe, &run->opts, &pt, &pt_len, &err);
                vg_pin_node_finish(node, r < 0 ? r : 0, pt, pt_len, &err);
        } else {
                vg_pin_node_finish(node,
                                   vg_error_set(&err, -ENOENT,
                                                "JWE protected header: unknown pin \"%.64s\" "
                                                "(expected tang, sss or tpm2)",
                                                pin),
                                   NULL, 0, &err);
        }
        return node;
}

static void root_done(struct vg_pin_node *node, void *userdata)
{
        *(bool *)userdata = true;
        event_base_loopbreak(node->run->base);
}

int vg_pin_decrypt(const char *jwe, size_t jwe_len, const struct vg_pin_opts *opts, uint8_t **pt,
                   size_t *pt_len, struct vg_error *err)
{
        struct vg_pin_run run = { 0 };
        struct vg_pin_node *root = NULL;
        bool done = false;
        int r;

        *pt = NULL;
        *pt_len = 0;
        if (opts)
                run.opts = *opts;
        if (!run.opts.timeout_ms)
                run.opts.timeout_ms = VG_PIN_TIMEOUT_MS;
        if (!run.opts.attempts)
                run.opts.attempts = VG_PIN_ATTEMPTS;
        run.tls = run.opts.tls;
        run.base = event_base_new();
        if (!run.base)
                return vg_error_set(err, -ENOMEM, "cannot create an event loop");
        r = vg_http_client_new(run.base,
                               &(struct vg_http_client_config){ .timeout_ms = run.opts.timeout_ms,
                                                                .max_response_bytes = 1u << 20 },
                               &run.http, err);
        if (r < 0)
                goto out;
        root = vg_pin_node_start(&run, 0, jwe, jwe_len, root_done, &done);
        if (!root) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        while (!done) {
                r = event_base_loop(run.base, 0);
                if (r < 0) {
                        r = vg_error_set(err, -EIO, "event loop failed");
                        goto out;
                }
                if (!done && r == 1) {
                        r = vg_error_set(err, -EIO, "decryption stalled (internal error)");
                        goto out;
                }
        }
        r = root->r;
        if (r < 0) {
                if (err)
                        *err = root->err;
        } else {
                *pt = TAKE_PTR(root->pt);
                *pt_len = root->pt_len;
                r = 0;
        }
out:
        vg_pin_node_free(root);
        vg_http_client_free(run.http);
        if (run.own_tls)
                SSL_CTX_free(run.tls);
        vg_event_base_free_drained(run.base);
        return r;
}
