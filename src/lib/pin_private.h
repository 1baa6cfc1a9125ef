/* vigil: what the pins share inside vg_pin (not for users of pin.h). pin.c dispatches by pin
 * name and runs decryptions; each pin_<name>.c implements its pin. */
#pragma once

#include <event2/event.h>
#include <openssl/ssl.h>

#include "http_client.h"
#include "jwe.h"
#include "pin.h"

/* tpm2 (pin_tpm2.c): synchronous, on the TPM named by opts->tcti. encrypt writes the compact
 * JWE; decrypt takes the parsed JWE whose header has clevis.pin "tpm2"; config rebuilds the
 * clevis luks list configuration from the header's clevis.tpm2 object. */
int vg_pin_tpm2_encrypt(const json_t *cfg, const void *pt, size_t pt_len,
                        const struct vg_pin_opts *opts, char **jwe, struct vg_error *err);
int vg_pin_tpm2_decrypt(const struct vg_jwe *jwe, const struct vg_pin_opts *opts, uint8_t **pt,
                        size_t *pt_len, struct vg_error *err);
int vg_pin_tpm2_config(const json_t *clevis_tpm2, json_t **cfg, struct vg_error *err);

/* Defaults of struct vg_pin_opts. */
#define VG_PIN_TIMEOUT_MS 10000u
#define VG_PIN_ATTEMPTS   3u
#define VG_PIN_BACKOFF_MS 250u
/* Nesting depth of sss pins accepted (clevis has no limit; a JWE is at most 4 MiB anyway). */
#define VG_PIN_MAX_DEPTH 8

/* tang (pin_tang.c) and sss (pin_sss.c) encryption; both synchronous. sss calls
 * vg_pin_encrypt for its shares, with depth + 1. */
int vg_pin_tang_encrypt(const json_t *cfg, const void *pt, size_t pt_len,
                        const struct vg_pin_opts *opts, char **jwe, struct vg_error *err);
int vg_pin_sss_encrypt(const json_t *cfg, const void *pt, size_t pt_len,
                       const struct vg_pin_opts *opts, unsigned depth, char **jwe,
                       struct vg_error *err);
int vg_pin_encrypt_depth(const char *pin, const json_t *cfg, const void *pt, size_t pt_len,
                         const struct vg_pin_opts *opts, unsigned depth, char **jwe,
                         struct vg_error *err);

/*
 * The decryption engine (pin.c): every JWE of a tree (an sss JWE's shares, nested) is a node;
 * all run on one event loop with one HTTP client, so the Tang requests of every share are in
 * flight at once. A node ends exactly once, through vg_pin_node_finish(), which reports to its
 * parent (or ends the loop for the root) from the loop, never from inside the call that
 * started or finished it. Cancelling a node stops its requests and its children's.
 */
struct vg_pin_run {
        struct event_base *base;
        struct vg_http_client *http;
        struct vg_pin_opts opts; /* defaults filled in */
        SSL_CTX *tls;            /* opts.tls, or made on first https URL */
        bool own_tls;
};

struct vg_pin_node;
typedef void (*vg_pin_node_cb)(struct vg_pin_node *node, void *userdata);

struct vg_pin_node {
        struct vg_pin_run *run;
        unsigned depth;
        struct vg_jwe jwe;
        vg_pin_node_cb cb;
        void *userdata;
        /* the outcome, once finished */
        bool finished;
        int r;
        struct vg_error err;
        uint8_t *pt;
        size_t pt_len;
        /* the pin's state and how to stop and free it */
        void *priv;
        void (*cancel)(struct vg_pin_node *node);
        void (*destroy)(struct vg_pin_node *node);
        struct event *report; /* delivers cb from the loop */
};

/* A new node that will decrypt text (either serialization) and then call cb. Its outcome
 * always arrives through cb (a malformed JWE too). NULL when out of memory. */
struct vg_pin_node *vg_pin_node_start(struct vg_pin_run *run, unsigned depth, const char *text,
                                      size_t len, vg_pin_node_cb cb, void *userdata);
/* Record the outcome (pt taken on success) and schedule the report. */
void vg_pin_node_finish(struct vg_pin_node *node, int r, uint8_t *pt, size_t pt_len,
                        const struct vg_error *err);
/* Stop a node still running (its cb will not run) or drop a finished one; frees it. */
void vg_pin_node_free(struct vg_pin_node *node);
/* The TLS context for https URLs: opts.tls, else one trusting CURL_CA_BUNDLE, SSL_CERT_FILE or
 * the system store, made once per run. NULL with err when it cannot be made. */
SSL_CTX *vg_pin_run_tls(struct vg_pin_run *run, struct vg_error *err);

/* Start the pin's work on node (its JWE parsed, clevis.pin checked); the pin finishes it. */
void vg_pin_tang_start(struct vg_pin_node *node);
void vg_pin_sss_start(struct vg_pin_node *node);
