/* vigil-agent: Keylime's software crypto over TPM artifacts: the "hash_ek" agent id and the
 * registration auth_tag (reference keylime.md §3, step 4). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define VG_AGENT_AUTH_TAG_LEN 96

/* Lower-case hex SHA-256 of the EK's public key PEM (from its TPM2B_PUBLIC) into out (65). */
int vg_agent_ek_hash(const uint8_t *ek, size_t len, char *out, struct vg_error *err);

/* Keylime's registrar stored key = b64(challenge) and checks HMAC-SHA384(key, uuid); cred is
 * what ActivateCredential recovered (the challenge), so the HMAC key is its base64 text. */
int vg_agent_auth_tag(const uint8_t *cred, size_t cred_len, const char *uuid,
                      char tag[VG_AGENT_AUTH_TAG_LEN + 1]);
