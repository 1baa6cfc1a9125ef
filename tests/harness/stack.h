/* vigil tests: a whole vigil deployment on loopback for end-to-end tests: one CA (`vigil ca
 * init`), a swtpm, and vigil-registrar, vigil-verifier and vigil-agent as real subprocesses. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

#include "swtpm.h"

#define VG_STACK_UUID "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"

/* A daemon of the stack. Its environment is the test's own plus `env`; it runs with `-f
 * --log-level debug --pid-file DIR/NAME.pid` and counts as up once that pid file exists. */
struct vg_stack_daemon {
        const char *name; /* "registrar", "verifier", "agent" */
        const char *bin;
        pid_t pid;
        int port;     /* the main port: registrar 8890-like, verifier, agent */
        int tls_port; /* registrar only */
        char *dir;    /* its data_dir */
        char *log;    /* stdout and stderr, appended across restarts */
        char *pid_file;
        char *env[48]; /* "NAME=value", NULL-terminated; the harness fills the basics */
};

struct vg_stack_opts {
        bool no_registrar, no_verifier, no_agent;
        const char *uuid;         /* the agent's; NULL: VG_STACK_UUID */
        enum vg_swtpm_ek ek;      /* EK of the swtpm */
        unsigned banks;           /* PCR banks; 0: sha1 and sha256 as IMA wants */
        const char *database_url; /* the verifier's; NULL: sqlite in its data_dir */
        double quote_interval;    /* the verifier's; 0: 0.2 s */
        /* Extra "NAME=value" environment per daemon (NULL-terminated lists; may be NULL),
         * e.g. "VIGIL_VERIFIER_IGNORE_TOMTOU_ERRORS=true". They come after the basics, so
         * they override them. */
        const char *const *registrar_env;
        const char *const *verifier_env;
        const char *const *agent_env;
};

struct vg_stack {
        char *dir;    /* the test's private directory (removed unless VIGIL_KEEP_TMP) */
        char *ca_dir; /* `vigil ca init`: cacert.crt, server-*, client-* */
        char *uuid;
        struct vg_swtpm *tpm;
        char *ima_path; /* the agent's ima_ml_path: an ASCII list the IMA simulator appends to */
        char *mb_path;  /* the agent's measuredboot_ml_path (empty file unless replaced) */
        struct vg_stack_daemon registrar, verifier, agent;
};

/*
 * Start what opts asks for (NULL: everything) and wait until each daemon is up and, for the
 * agent, registered and activated with the registrar. Bails out of the test (tap_bail) with the
 * daemon's log when something does not come up within 20 s. SIGPIPE is ignored from then on,
 * and the daemons get SIGTERM if the thread that started them exits (the test died).
 */
void vg_stack_start(const struct vg_stack_opts *opts, struct vg_stack **out);
/* Stop every daemon (SIGTERM, then SIGKILL after 10 s), the TPM, remove the directory. */
void vg_stack_free(struct vg_stack *s);

/* (Re)start or stop one daemon with its current environment; start waits until it is up. */
void vg_stack_daemon_start(struct vg_stack *s, struct vg_stack_daemon *d);
/* SIGTERM and wait; returns the exit status (128 + signal), -1 when it had to be killed. */
int vg_stack_daemon_stop(struct vg_stack_daemon *d);
/* Add or replace "NAME=value" in a daemon's environment (takes effect at its next start). */
void vg_stack_daemon_setenv(struct vg_stack_daemon *d, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Print the daemon's log as TAP diagnostics (for failing tests). */
void vg_stack_daemon_show_log(const struct vg_stack_daemon *d);
/* Wait up to secs for `needle` to appear in the daemon's log; true when it did. */
bool vg_stack_wait_log(const struct vg_stack_daemon *d, const char *needle, double secs);

/*
 * Run `vigil tenant ARGS...` (NULL-terminated) configured for this stack through its
 * VIGIL_TENANT_* environment: registrar and verifier ports, the CA's client certificate,
 * the swtpm EK CA as tpm_cert_store. *output (may be NULL) gets stdout and stderr.
 * Returns the exit status.
 */
int vg_stack_tenant(struct vg_stack *s, char **output, const char *arg0, ...)
    __attribute__((sentinel));
/* The same for any `vigil` command, with the tenant environment set. */
int vg_stack_vigil(struct vg_stack *s, char **output, const char *arg0, ...)
    __attribute__((sentinel));

/* Run the IMA simulator against this stack's log and TPM: `vigil-ima-sim ARGS...`. */
int vg_stack_ima_sim(struct vg_stack *s, char **output, const char *arg0, ...)
    __attribute__((sentinel));
