/* vigil: Keylime revocation notifications on the agent (reference/keylime.md §4, §8): the
 * RSA-PSS signature over "msg" and the revocation actions run as `<script> <json-file>`. */
#pragma once

#include <stdbool.h>

#include <openssl/evp.h>

#include "error.h"

/* {"msg": "<json string>", "signature": "<b64>"}: RSA-PSS-SHA256, MGF1-SHA256 (Keylime's
 * crypto.rsa_sign uses the maximum salt length); any valid salt length is accepted. An empty
 * signature (a verifier without revocation key) is refused. -EBADMSG when it does not verify. */
int vg_revocation_verify(const char *msg, const char *signature_b64, EVP_PKEY *revocation_pub,
                         struct vg_error *err);
/* The verifier side, and tests: PSS with the maximum salt length, as Keylime signs. */
int vg_revocation_sign(const char *msg, EVP_PKEY *key, char **signature_b64, struct vg_error *err);

struct vg_revocation_actions_config {
        const char *actions_dir;         /* revocation_actions_dir */
        char *const *actions;            /* revocation_actions, NULL-terminated; may be NULL */
        const char *payload_action_list; /* path of unzipped/action_list, or NULL */
        bool allow_payload_actions;      /* allow_payload_revocation_actions */
        unsigned timeout_s;              /* per action; 0: 300 s */
        const char *tmp_dir;             /* for the JSON file; NULL: $TMPDIR or /tmp */
};

/* Write msg to a private temporary file and run each action as `<script> <json-file>` (cwd the
 * script's directory, clean environment): the configured actions from actions_dir, then, if
 * allowed, the payload's action_list entries (scripts beside action_list). A name with '/' or a
 * leading '.' is refused and counted as failed; a failing action is logged with its name and
 * status and the others still run. Returns 0 once all were tried, -errno if none could be. */
int vg_revocation_run_actions(const struct vg_revocation_actions_config *cfg, const char *msg,
                              unsigned *ran, unsigned *failed, struct vg_error *err);

/* POST /notifications/revocation in one call: verify, and only then run the actions.
 * A forged notification runs nothing and returns -EBADMSG. */
int vg_revocation_process(const char *msg, const char *signature_b64, EVP_PKEY *revocation_pub,
                          const struct vg_revocation_actions_config *cfg, unsigned *ran,
                          unsigned *failed, struct vg_error *err);
