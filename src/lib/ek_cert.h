/* vigil: EK certificate validation against a tpm_cert_store directory: chain building
 * with OpenSSL to a trusted root, validity dates, and the certified key equal to ek_tpm. */
#pragma once

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"
#include "tpm_public.h"

/* The trust material of one tpm_cert_store: self-signed certificates are the anchors, every
 * other CA certificate is an intermediate the chain may pass through. */
struct vg_ek_store;

/*
 * Read every regular file of dir (PEM with one or more certificates, or one DER certificate;
 * files that are neither are skipped with a warning, as vendor stores carry README files).
 * -ENOENT/-ENOTDIR/-EACCES naming dir when it cannot be read; a directory without any
 * certificate is fine (every EK certificate then fails to chain, with that reason).
 */
int vg_ek_store_load(const char *dir, struct vg_ek_store **out, struct vg_error *err);
void vg_ek_store_free(struct vg_ek_store *st);
VG_DEFINE_CLEANUP_FUNC(struct vg_ek_store, vg_ek_store_free)
size_t vg_ek_store_count(const struct vg_ek_store *st);

/* An EK certificate as an agent sends it in `ekcert`: base64 of DER, or a PEM chain. */
struct vg_ek_cert {
        X509 *leaf;             /* the first certificate: the EK's */
        STACK_OF(X509) * extra; /* any further ones: intermediates offered by the agent */
        uint8_t *der;           /* the leaf re-encoded as DER (what GET returns as `ekcert`) */
        size_t der_len;
};

/* Decode `ekcert`: "-----BEGIN CERTIFICATE-----" text is a PEM chain, anything else is base64
 * of one or more concatenated DER certificates. -EINVAL with a message saying what was wrong. */
int vg_ek_cert_decode(const char *text, struct vg_ek_cert *out, struct vg_error *err);
void vg_ek_cert_clear(struct vg_ek_cert *c);

/*
 * Is cert a valid EK certificate for ek? Checks, in this order: the certificate's key is the
 * ek_tpm key; a chain to a self-signed certificate of the store can be built (intermediates
 * from the store and from cert->extra), with every signature, validity period and CA
 * constraint checked at the current time. 0 when valid; otherwise -EKEYREJECTED and err holds
 * the failed check, e.g. "unable to get local issuer certificate (issuer CN=swtpm-localca)".
 */
int vg_ek_cert_verify(const struct vg_ek_store *st, const struct vg_ek_cert *cert,
                      const struct vg_tpm_public *ek, struct vg_error *err);
