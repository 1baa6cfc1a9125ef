/* vigil: Clevis pins, natively: tang (McCallum-Relyea exchange with a Tang server), sss (Shamir
 * secret sharing over other pins) and tpm2 (a key sealed to PCRs). The JWEs are those Clevis
 * writes and reads (reference/tang.md section 2), so either tool decrypts the other's.
 *
 * Errors say what happened and where: "http://tang.example:7500: connection refused",
 * "...: timed out after 10000 ms", "...: the server no longer has key <kid> (404; rotated away
 * and purged?)", "...: advertisement not signed by trusted key <thp>", "JWE iv: ...", "tpm2:
 * the PCR policy does not match: PCR 7 (sha256) changed since the key was sealed". */
#pragma once

#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Zero fields take the defaults in brackets. */
struct vg_pin_opts {
        bool trust;          /* -y: trust a fetched advertisement's signing keys (TOFU) */
        bool ask;            /* without trust, thp or adv: show the thumbprints and ask on the
                              * controlling terminal, as clevis does [false: refuse] */
        unsigned timeout_ms; /* one request to one server [10000] */
        unsigned attempts;   /* per server, for connection failures, timeouts and 5xx, with
                              * backoff 250 ms, 500 ms, ... [3] */
        SSL_CTX *tls;        /* for https:// Tang URLs [a context trusting the system store,
                              * or CURL_CA_BUNDLE / SSL_CERT_FILE when set, as curl does] */
        const char *tcti;    /* tpm2 pin [TPM2TOOLS_TCTI, else the TSS default] */
};

/*
 * Encrypt pt with pin ("tang", "sss", "tpm2") and its configuration cfg (a JSON object, as
 * clevis encrypt PIN CFG takes it). *jwe is the compact serialization (new string).
 */
int vg_pin_encrypt(const char *pin, const json_t *cfg, const void *pt, size_t pt_len,
                   const struct vg_pin_opts *opts, char **jwe, struct vg_error *err);

/* Decrypt a JWE made by vg_pin_encrypt or by clevis encrypt (compact or JSON serialization).
 * *pt (NUL-terminated for convenience) is the caller's to free. */
int vg_pin_decrypt(const char *jwe, size_t jwe_len, const struct vg_pin_opts *opts, uint8_t **pt,
                   size_t *pt_len, struct vg_error *err);

/* The pin and its configuration as clevis luks list shows them, reconstructed from a JWE's
 * header: "tang" {"url":"..."}; "sss" {"t":2,"pins":{"tang":[{"url":...},...]}}; "tpm2"
 * {"hash":"sha256","key":"ecc","pcr_bank":"sha256","pcr_ids":"7"}. *cfg is a new reference. */
int vg_pin_config(const char *jwe, size_t jwe_len, char **pin, json_t **cfg, struct vg_error *err);
