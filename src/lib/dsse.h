/* vigil: DSSE envelopes (secure-systems-lab/dsse v1) as keylime-policy signs runtime policies:
 * ECDSA P-256/SHA-256 over PAE(type, payload), keyids as Keylime computes them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cleanup.h"
#include "error.h"

/* The payloadType keylime-policy puts on runtime policies. */
#define VG_DSSE_KEYLIME_PAYLOAD_TYPE "application/vnd.keylime+json"
/* The largest envelope vg_dsse_verify reads (a big runtime policy is tens of MiB). */
#define VG_DSSE_MAX_ENVELOPE (512u << 20)

/* PAE(type, body) = "DSSEv1 <len(type)> <type> <len(body)> <body>", lengths in decimal. */
int vg_dsse_pae(const char *type, const void *payload, size_t len, uint8_t **out, size_t *out_len);

/* Keylime's keyid for the ecdsa backend: lower-case hex SHA-256 of the public key's
 * SubjectPublicKeyInfo PEM text. */
int vg_dsse_keyid(EVP_PKEY *key, char **out);
/* Keylime's keyid for the x509 backend: standard base64 of the certificate's PEM text. */
int vg_dsse_keyid_cert(X509 *cert, char **out);

/* An envelope {"payload", "payloadType", "signatures": [{"keyid", "sig"}]} with one ECDSA-SHA256
 * (DER) signature by key (an EC private key); keyid NULL means vg_dsse_keyid(key). */
int vg_dsse_sign(EVP_PKEY *key, const char *keyid, const char *type, const void *payload,
                 size_t len, char **envelope, struct vg_error *err);

struct vg_dsse_verified {
        char *type;       /* payloadType */
        uint8_t *payload; /* decoded, NUL-terminated for convenience */
        size_t len;
        char *keyid;       /* keyid of the signature that verified (NULL if it had none) */
        size_t signatures; /* signatures in the envelope */
};
void vg_dsse_verified_clear(struct vg_dsse_verified *v);

/*
 * Check an envelope with an EC public key. Like Keylime (strict_id_matching off), every
 * signature is tried whatever its keyid says; DER signatures as Keylime writes them, and raw
 * r||s as some DSSE signers do. 0: a signature verified (out filled when non-NULL);
 * -EKEYREJECTED: well-formed, no signature verified; -EBADMSG: not an envelope (what is wrong is
 * named); -EINVAL: the key is not an EC key.
 */
int vg_dsse_verify(const char *envelope, size_t len, EVP_PKEY *key, struct vg_dsse_verified *out,
                   struct vg_error *err);

/* An EC private key from a PEM file (SEC1 "EC PRIVATE KEY" or PKCS#8, unencrypted). */
int vg_dsse_load_private_key(const char *path, EVP_PKEY **out, struct vg_error *err);
/* A public key from a PEM file holding a public key, an EC private key, or (cert true) an X.509
 * certificate; *cert_out (may be NULL) gets the certificate. */
int vg_dsse_load_public_key(const char *path, bool cert, EVP_PKEY **out, X509 **cert_out,
                            struct vg_error *err);
/* A new P-256 key written to path as SEC1 PEM, mode 0600; an existing file is not replaced
 * (-EEXIST). */
int vg_dsse_generate_key(const char *path, EVP_PKEY **out, struct vg_error *err);
