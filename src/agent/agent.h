/* vigil-agent: the Keylime-compatible agent's shared context: identity (UUID, AK, NK, TLS
 * certificate), the TPM, the HTTPS API and the registration client, all on one event loop. */
#pragma once

#include <event2/event.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "error.h"
#include "hash.h"
#include "http_client.h"
#include "http_server.h"
#include "payload.h"
#include "tpm.h"

/* Keylime agent API versions served under /v<major>.<minor>/, oldest first. */
#define VG_AGENT_API_OLDEST "2.1"
#define VG_AGENT_API_NEWEST "2.5"
extern const char *const vg_agent_api_versions[];

/* A UUID or other agent id: what Keylime accepts in a URL segment. */
#define VG_AGENT_ID_MAX 255

struct vg_agent_registration; /* registration.c */

struct vg_agent {
        const struct vg_config *cfg;
        struct event_base *base;
        char uuid[VG_AGENT_ID_MAX + 1];
        const char *data_dir;

        struct vg_tpm *tpm;
        enum vg_hash_alg hash_alg;     /* tpm_hash_alg: AK scheme hash and quoted PCR bank */
        enum vg_tpm_key_type enc_alg;  /* tpm_encryption_alg: the EK's type */
        enum vg_tpm_key_type sign_key; /* tpm_signing_alg: the AK's type */

        EVP_PKEY *nk; /* the payload key (Keylime's NK), RSA 2048 */
        char *nk_pem; /* its SubjectPublicKeyInfo PEM: /keys/pubkey, PCR16 binding */

        char *server_cert_file; /* the TLS certificate and key the API serves with */
        char *server_key_file;
        char *server_cert_pem; /* sent to the registrar as mtls_cert */
        bool mtls;             /* enable_agent_mtls */

        /* The IMA list and UEFI log, opened once before run_as drops root (securityfs files
         * are root-only); -1 when absent. The UEFI log is re-read for each quote. */
        int ima_fd, mb_fd;
        /* Where entries of the IMA list start (entry number -> byte offset), so that a quote
         * for ima_ml_entry=N reads on from the nearest known entry instead of from the top,
         * as Keylime's agent does. A ring of the latest marks; emptied when the list shrinks. */
        struct vg_agent_ima_mark {
                uint64_t entry, offset; /* offset 0 means an unused slot */
        } ima_marks[32];
        unsigned ima_mark_next;

        struct vg_http_server *server;
        struct vg_agent_registration *reg;

        /* Payloads and revocations (payload_api.c). */
        struct vg_payload_state *payload;
        struct vg_payload_config payload_cfg;
        char *secure_dir;          /* data_dir/secure */
        bool secure_mounted;       /* a tmpfs the agent mounted there (and unmounts) */
        char **revocation_actions; /* revocation_actions, split */
        struct event *deliver_ev;  /* delivers the payload after the reply has gone */
        struct event *sigchld_ev;  /* reaps the children below */
        struct {
                pid_t pid; /* 0: free slot */
                const char *what;
        } children[8]; /* payload script supervisors and revocation-action runs */
};

/* identity.c: the agent's persistent identity under data_dir. Each logs its own errors. */
int vg_agent_uuid_setup(struct vg_agent *a);
int vg_agent_nk_setup(struct vg_agent *a);
int vg_agent_tls_setup(struct vg_agent *a);
/* Read a whole file into a NUL-terminated buffer; -errno. */
int vg_agent_read_file(const char *path, size_t max, char **out, size_t *len);
/* The same from an open descriptor, from offset 0 (securityfs files have no useful size). */
int vg_agent_read_fd(int fd, size_t max, char **out, size_t *len);

/* api.c: routes of the Keylime agent API on a->server. */
int vg_agent_api_register(struct vg_agent *a);
/* Every versioned route checks its {version} first; returns false after answering 400. */
bool vg_agent_version_ok(struct vg_http_request *req);

/* payload_api.c: the U/V key halves, /keys/verify and revocation notifications. */
int vg_agent_payload_setup(struct vg_agent *a);
void vg_agent_payload_clear(struct vg_agent *a);
int vg_agent_payload_api_register(struct vg_agent *a);
/* Track a child process so that its exit is logged with what it was. */
void vg_agent_child_add(struct vg_agent *a, pid_t pid, const char *what);

/* registration.c: POST + ActivateCredential + PUT against the registrar, retried until it
 * succeeds; runs on the loop, never blocks the API. */
int vg_agent_registration_start(struct vg_agent *a);
void vg_agent_registration_free(struct vg_agent_registration *r);
