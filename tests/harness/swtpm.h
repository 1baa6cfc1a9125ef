/* vigil tests: a real software TPM (swtpm, on a unix socket in its directory) per test, copied from
 * a cached golden state so it starts in milliseconds, with EK certificates from a local CA to
 * trust. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cleanup.h"
#include "error.h"

/*
 * Every TPM carries both EK certificates a Keylime agent looks for (TCG EK Credential Profile
 * 2.3, "low range"), plus the ECC P-384 one swtpm_setup makes at 0x01c00016. The option only
 * picks which one vg_swtpm_ek_cert() and friends report.
 */
enum vg_swtpm_ek {
        VG_SWTPM_EK_RSA2048 = 0, /* NV 0x01c00002, persistent EK 0x81010001 */
        VG_SWTPM_EK_ECC_P256,    /* NV 0x01c0000a, persistent EK 0x81010002 */
};

enum vg_swtpm_bank {
        VG_SWTPM_BANK_SHA1 = 1u << 0,
        VG_SWTPM_BANK_SHA256 = 1u << 1,
        VG_SWTPM_BANK_SHA384 = 1u << 2,
        VG_SWTPM_BANK_SHA512 = 1u << 3,
};

struct vg_swtpm_opts {
        enum vg_swtpm_ek ek;
        unsigned banks; /* VG_SWTPM_BANK_* bits of the active PCR banks; 0 means sha256 */
        /* Run swtpm_setup for this TPM alone (about a second) so that its EK and EK
         * certificate differ from every other TPM's. Otherwise the TPM is a copy of the golden
         * state and shares the EK of all other copies made with the same banks. */
        bool unique_identity;
        /* Keep swtpm running after this process exits (swtpm-up): no parent-death signal, a
         * session of its own, not stopped by vg_swtpm_free() or at exit. */
        bool detach;
        /* Where the TPM keeps its state, log and pid file. NULL: a new directory under $TMPDIR,
         * removed by vg_swtpm_free() (kept with VIGIL_KEEP_TMP, or when detached). A directory
         * that already holds a TPM started by this harness is resumed with its NV contents. */
        const char *dir;
        /* Golden states and the local CA. NULL: $VIGIL_SWTPM_CACHE, else
         * $TMPDIR/vigil-swtpm-cache-<uid>. Safe to share between processes running at once. */
        const char *cache_dir;
};

struct vg_swtpm;

/*
 * Start a TPM and return once it answers on its control channel, with TPM2_Startup(CLEAR)
 * done. opts may be NULL for the defaults. The first start with a given cache and set of banks
 * also creates the golden state (swtpm_setup, one to two seconds, once). Unless detached, the
 * swtpm process gets SIGTERM when the calling thread exits and is stopped at exit(), so start
 * TPMs from a thread that outlives them; the harness is not meant for use from several threads.
 * Errors name what failed and quote the end of swtpm's log.
 */
int vg_swtpm_start(const struct vg_swtpm_opts *opts, struct vg_swtpm **out, struct vg_error *err);

/* Shut the TPM down as a reboot would (TPM2_Shutdown(CLEAR), then the control channel's
 * shutdown, SIGTERM and SIGKILL only if it does not exit), and wait for the process to go.
 * The state directory stays; vg_swtpm_restart() starts it again. No-op when stopped. */
int vg_swtpm_stop(struct vg_swtpm *tpm, struct vg_error *err);

/* Stop (when running) and start again on the same sockets and state: NV indices, persistent
 * keys and the EK survive; PCRs are reset, as on a reboot. */
int vg_swtpm_restart(struct vg_swtpm *tpm, struct vg_error *err);

/* Take over a TPM that vg_swtpm_start() left running in dir (swtpm-up), e.g. to stop it from
 * another process. It is only adopted if its pid file names a live swtpm serving that dir. */
int vg_swtpm_attach(const char *dir, struct vg_swtpm **out, struct vg_error *err);

/* Stop the TPM unless it is detached, remove its directory if the harness created it, free. */
void vg_swtpm_free(struct vg_swtpm *tpm);
VG_DEFINE_CLEANUP_FUNC(struct vg_swtpm, vg_swtpm_free)
#define _cleanup_swtpm_ _cleanup_(vg_swtpm_freep)

/* "swtpm:path=DIR/swtpm.sock", as tpm2-tools (-T) and libtss2-tcti-swtpm take it. The TPM
 * listens on unix sockets, not TCP: that TCTI connects once per command, and thousands of
 * commands a second over loopback TCP run out of ports (TIME_WAIT). */
const char *vg_swtpm_tcti(const struct vg_swtpm *tpm);
/* The command channel (DIR/swtpm.sock) and the control channel beside it (DIR/swtpm.sock.ctrl,
 * the name the TCTI derives from path=). */
const char *vg_swtpm_socket(const struct vg_swtpm *tpm);
const char *vg_swtpm_ctrl_socket(const struct vg_swtpm *tpm);
/* The swtpm process, or 0 when stopped. */
pid_t vg_swtpm_pid(const struct vg_swtpm *tpm);
const char *vg_swtpm_dir(const struct vg_swtpm *tpm);
const char *vg_swtpm_pidfile(const struct vg_swtpm *tpm);
const char *vg_swtpm_log(const struct vg_swtpm *tpm);

/* The chosen EK's certificate (DER file), the NV index it is stored at and the persistent
 * handle of the EK itself. */
const char *vg_swtpm_ek_cert(const struct vg_swtpm *tpm);
uint32_t vg_swtpm_ek_nv_index(const struct vg_swtpm *tpm);
uint32_t vg_swtpm_ek_handle(const struct vg_swtpm *tpm);
/* The local CA that issued the EK certificates: one PEM file holding its issuing certificate
 * and root (for `openssl verify -CAfile`), and a directory holding the same two certificates
 * as separate .pem files (a registrar's tpm_cert_store). Shared by all TPMs of one cache. */
const char *vg_swtpm_ek_ca_file(const struct vg_swtpm *tpm);
const char *vg_swtpm_ek_ca_dir(const struct vg_swtpm *tpm);

/* Run a shell snippet for tpm2-tools against tpm (NULL: TCTI "none", for software-only tools)
 * in dir, with `set -e` and a shell function `fl` that flushes transient objects and sessions
 * (swtpm has no resource manager). Output and exit status as tap_run(). */
int vg_swtpm_sh(struct vg_swtpm *tpm, const char *dir, char **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The bytes of dir/name (NUL-terminated) and their length; NULL when unreadable. */
uint8_t *vg_swtpm_slurp(const char *dir, const char *name, size_t *len);
