/* vigil: the agent's TPM through tpm2-tss ESAPI. Every transient object and session this file
 * loads is flushed on every path, so it runs without a resource manager. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "buf.h"
#include "encoding.h"
#include "tpm.h"

/* First bytes of an AK file: ours, and versioned so the layout may change. */
static const uint8_t ak_file_magic[8] = { 'V', 'I', 'G', 'I', 'L', 'A', 'K', '1' };

/* The tpm2-tools credential file (tpm2_makecredential -o, Keylime's "blob"). */
#define CRED_FILE_MAGIC   0xBADCC0DEu
#define CRED_FILE_VERSION 1u

/* EK Credential Profile 2.x, B.3.3/B.3.4: the policy digest of PolicySecret(TPM_RH_ENDORSEMENT)
 * (SHA-256), the authPolicy of both default EK templates. */
static const uint8_t ek_policy[32] = {
        0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC,
        0x8D, 0x46, 0xA5, 0xD7, 0x24, 0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52,
        0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
};

struct vg_tpm {
        TSS2_TCTI_CONTEXT *tcti;
        ESYS_CONTEXT *esys;

        ESYS_TR ek;        /* ESYS_TR_NONE until vg_tpm_ek_load() */
        bool ek_transient; /* created here: flush it; else only close the ESYS_TR */
        enum vg_tpm_key_type ek_alg;
        TPM2B_PUBLIC ek_pub;

        ESYS_TR ak;
        bool ak_transient;
        bool ak_have_private; /* ak_priv is valid (created or loaded from a file) */
        TPM2B_PUBLIC ak_pub;
        TPM2B_PRIVATE ak_priv;
        struct vg_tpm_ak_params ak_params;
};

static void esys_freep(void *p)
{
        Esys_Free(*(void **)p);
}
#define _cleanup_esys_ _cleanup_(esys_freep)

/* An ESYS_TR that must be flushed (transient object, session) when it leaves scope. */
struct tr_guard {
        ESYS_CONTEXT *esys;
        ESYS_TR h;
};

static void tr_guard_flush(struct tr_guard *g)
{
        if (g->h != ESYS_TR_NONE)
                Esys_FlushContext(g->esys, g->h);
        g->h = ESYS_TR_NONE;
}
#define _cleanup_flush_ _cleanup_(tr_guard_flush)

/* Map a TSS2_RC to an errno the caller can act on; the message carries the details. */
static int rc_errno(TSS2_RC rc)
{
        TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
        TSS2_RC base = rc & ~TSS2_RC_LAYER_MASK;

        if (layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER) {
                if (base & TPM2_RC_FMT1)
                        base &= 0xbf; /* drop parameter/handle/session number */
                switch (base) {
                case TPM2_RC_OBJECT_MEMORY:
                case TPM2_RC_SESSION_MEMORY:
                case TPM2_RC_MEMORY:
                case TPM2_RC_OBJECT_HANDLES:
                case TPM2_RC_SESSION_HANDLES:
                        return -ENOSPC;
                case TPM2_RC_RETRY:
                case TPM2_RC_YIELDED:
                case TPM2_RC_TESTING:
                case TPM2_RC_CANCELED:
                        return -EAGAIN;
                case TPM2_RC_LOCKOUT:
                        return -EBUSY;
                case TPM2_RC_FMT1 | TPM2_RC_INTEGRITY:
                case TPM2_RC_FMT1 | TPM2_RC_POLICY_FAIL:
                case TPM2_RC_FMT1 | TPM2_RC_AUTH_FAIL:
                case TPM2_RC_FMT1 | TPM2_RC_BAD_AUTH:
                        return -EACCES;
                default:
                        return -EIO;
                }
        }
        if ((base & 0xffff) == TSS2_BASE_RC_MEMORY)
                return -ENOMEM;
        return -EIO;
}

static int tpm_fail(struct vg_error *err, const char *cmd, TSS2_RC rc)
{
        return vg_error_set(err, rc_errno(rc), "%s failed: %s (0x%x)", cmd, Tss2_RC_Decode(rc),
                            (unsigned)rc);
}

static int mu_fail(struct vg_error *err, const char *what, TSS2_RC rc)
{
        return vg_error_set(err, -EBADMSG, "%s: %s (0x%x)", what, Tss2_RC_Decode(rc), (unsigned)rc);
}

const char *vg_tpm_key_type_name(enum vg_tpm_key_type alg)
{
        return alg == VG_TPM_KEY_ECC ? "ecc" : "rsa";
}

const char *vg_tpm_sign_alg_name(enum vg_tpm_key_type alg)
{
        return alg == VG_TPM_KEY_ECC ? "ecdsa" : "rsassa";
}

static void ek_release(struct vg_tpm *tpm)
{
        if (tpm->ek == ESYS_TR_NONE)
                return;
        if (tpm->ek_transient)
                Esys_FlushContext(tpm->esys, tpm->ek);
        else
                Esys_TR_Close(tpm->esys, &tpm->ek);
        tpm->ek = ESYS_TR_NONE;
}

static void ak_release(struct vg_tpm *tpm)
{
        if (tpm->ak != ESYS_TR_NONE) {
                if (tpm->ak_transient)
                        Esys_FlushContext(tpm->esys, tpm->ak);
                else
                        Esys_TR_Close(tpm->esys, &tpm->ak);
        }
        tpm->ak = ESYS_TR_NONE;
        tpm->ak_have_private = false;
        explicit_bzero(&tpm->ak_priv, sizeof(tpm->ak_priv));
}

/* Handles of one type present in the TPM, starting at first (TPM 2.0 Part 3, 30.2,
 * TPM2_CAP_HANDLES). */
static int get_handles(struct vg_tpm *tpm, TPM2_HANDLE first, TPML_HANDLE *out,
                       struct vg_error *err)
{
        _cleanup_esys_ TPMS_CAPABILITY_DATA *cap = NULL;
        TPMI_YES_NO more = TPM2_NO;
        TSS2_RC rc;

        out->count = 0;
        do {
                TPM2_HANDLE from = out->count ? out->handle[out->count - 1] + 1 : first;

                Esys_Free(cap);
                cap = NULL;
                rc = Esys_GetCapability(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                        TPM2_CAP_HANDLES, from, TPM2_MAX_CAP_HANDLES, &more, &cap);
                if (rc != TSS2_RC_SUCCESS)
                        return tpm_fail(err, "TPM2_GetCapability(handles)", rc);
                for (UINT32 i = 0; i < cap->data.handles.count; i++) {
                        TPM2_HANDLE h = cap->data.handles.handle[i];

                        if (h >> TPM2_HR_SHIFT != first >> TPM2_HR_SHIFT) {
                                more = TPM2_NO;
                                break;
                        }
                        if (out->count == TPM2_MAX_CAP_HANDLES) {
                                more = TPM2_NO;
                                break;
                        }
                        out->handle[out->count++] = h;
                }
                if (cap->data.handles.count == 0)
                        more = TPM2_NO;
        } while (more == TPM2_YES);
        return 0;
}

static int handle_present(struct vg_tpm *tpm, TPM2_HANDLE h, bool *present, struct vg_error *err)
{
        _cleanup_esys_ TPMS_CAPABILITY_DATA *cap = NULL;
        TPMI_YES_NO more;
        TSS2_RC rc;

        rc = Esys_GetCapability(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                TPM2_CAP_HANDLES, h, 1, &more, &cap);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_GetCapability(handles)", rc);
        *present = cap->data.handles.count == 1 && cap->data.handles.handle[0] == h;
        return 0;
}

/* A process that died while holding objects leaves them in a TPM without resource manager
 * until the next TPM2_Startup; flush them so that it does not run out of slots. */
static int flush_stale(struct vg_tpm *tpm, struct vg_error *err)
{
        static const TPM2_HANDLE ranges[] = { TPM2_TRANSIENT_FIRST, TPM2_LOADED_SESSION_FIRST,
                                              TPM2_POLICY_SESSION_FIRST };
        TPML_HANDLE list;
        int r;

        for (size_t i = 0; i < VG_ARRAY_SIZE(ranges); i++) {
                r = get_handles(tpm, ranges[i], &list, err);
                if (r < 0)
                        return r;
                for (UINT32 j = 0; j < list.count; j++) {
                        ESYS_TR tr;
                        TSS2_RC rc;

                        rc = Esys_TR_FromTPMPublic(tpm->esys, list.handle[j], ESYS_TR_NONE,
                                                   ESYS_TR_NONE, ESYS_TR_NONE, &tr);
                        if (rc == TSS2_RC_SUCCESS)
                                rc = Esys_FlushContext(tpm->esys, tr);
                        if (rc != TSS2_RC_SUCCESS)
                                return tpm_fail(err, "TPM2_FlushContext(stale handle)", rc);
                }
        }
        return 0;
}

int vg_tpm_open(const char *tcti, unsigned flags, struct vg_tpm **out, struct vg_error *err)
{
        _cleanup_(vg_tpm_closep) struct vg_tpm *tpm = NULL;
        TSS2_RC rc;
        int r;

        if (!tcti || !*tcti)
                tcti = VG_TPM_DEFAULT_TCTI;
        tpm = calloc(1, sizeof(*tpm));
        if (!tpm)
                return vg_error_set(err, -ENOMEM, "out of memory");
        tpm->ek = tpm->ak = ESYS_TR_NONE;
        rc = Tss2_TctiLdr_Initialize(tcti, &tpm->tcti);
        if (rc != TSS2_RC_SUCCESS)
                return vg_error_set(err, -ENODEV, "TCTI \"%s\": cannot open: %s (0x%x)", tcti,
                                    Tss2_RC_Decode(rc), (unsigned)rc);
        rc = Esys_Initialize(&tpm->esys, tpm->tcti, NULL);
        if (rc != TSS2_RC_SUCCESS)
                return vg_error_set(err, -ENODEV, "TCTI \"%s\": Esys_Initialize: %s (0x%x)", tcti,
                                    Tss2_RC_Decode(rc), (unsigned)rc);
        if (flags & VG_TPM_OPEN_FLUSH_STALE) {
                r = flush_stale(tpm, err);
                if (r < 0) {
                        vg_error_prefix(err, "TCTI \"%s\": ", tcti);
                        return r;
                }
        }
        *out = TAKE_PTR(tpm);
        return 0;
}

void vg_tpm_close(struct vg_tpm *tpm)
{
        if (!tpm)
                return;
        if (tpm->esys) {
                ak_release(tpm);
                ek_release(tpm);
                Esys_Finalize(&tpm->esys);
        }
        if (tpm->tcti)
                Tss2_TctiLdr_Finalize(&tpm->tcti);
        free(tpm);
}

/* ---- NV (EK certificates) ---------------------------------------------------------------- */

/* A DER SEQUENCE's total length, or 0 when buf does not start with one. */
static size_t der_length(const uint8_t *p, size_t len)
{
        size_t n, hdr;

        if (len < 2 || p[0] != 0x30)
                return 0;
        if (p[1] < 0x80) {
                n = p[1];
                hdr = 2;
        } else {
                size_t k = p[1] & 0x7f;

                if (k == 0 || k > 4 || len < 2 + k)
                        return 0;
                n = 0;
                for (size_t i = 0; i < k; i++)
                        n = n << 8 | p[2 + i];
                hdr = 2 + k;
        }
        return n > len - hdr ? 0 : hdr + n;
}

/* TPM2_NV_Read of a whole index in chunks of TPM_PT_NV_BUFFER_MAX (TPM 2.0 Part 3, 31.13),
 * authorised by the index itself with the empty password, as EK certificate indices allow
 * (TCG EK Credential Profile 2.x, 2.2.1.2: TPMA_NV_AUTHREAD, empty authValue). */
static int nv_read(struct vg_tpm *tpm, TPM2_HANDLE index, uint8_t **data, size_t *len,
                   struct vg_error *err)
{
        _cleanup_esys_ TPMS_CAPABILITY_DATA *cap = NULL;
        _cleanup_esys_ TPM2B_NV_PUBLIC *pub = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        TPMI_YES_NO more;
        ESYS_TR nv = ESYS_TR_NONE;
        size_t size, chunk = 512;
        TSS2_RC rc;
        int r = 0;

        rc = Esys_GetCapability(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                TPM2_CAP_TPM_PROPERTIES, TPM2_PT_NV_BUFFER_MAX, 1, &more, &cap);
        if (rc == TSS2_RC_SUCCESS && cap->data.tpmProperties.count == 1 &&
            cap->data.tpmProperties.tpmProperty[0].property == TPM2_PT_NV_BUFFER_MAX &&
            cap->data.tpmProperties.tpmProperty[0].value >= 64)
                chunk = cap->data.tpmProperties.tpmProperty[0].value;

        rc = Esys_TR_FromTPMPublic(tpm->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_NV_ReadPublic", rc);
        rc =
            Esys_NV_ReadPublic(tpm->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(err, "TPM2_NV_ReadPublic", rc);
                goto out;
        }
        size = pub->nvPublic.dataSize;
        buf = malloc(size ? size : 1);
        if (!buf) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        for (size_t off = 0; off < size;) {
                _cleanup_esys_ TPM2B_MAX_NV_BUFFER *part = NULL;
                UINT16 want = (UINT16)(size - off < chunk ? size - off : chunk);

                rc = Esys_NV_Read(tpm->esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                  want, (UINT16)off, &part);
                if (rc != TSS2_RC_SUCCESS) {
                        r = tpm_fail(err, "TPM2_NV_Read", rc);
                        goto out;
                }
                if (part->size != want) {
                        r = vg_error_set(err, -EIO, "TPM2_NV_Read: asked for %u bytes, got %u",
                                         want, part->size);
                        goto out;
                }
                memcpy(buf + off, part->buffer, want);
                off += want;
        }
        *data = TAKE_PTR(buf);
        *len = size;
out:
        Esys_TR_Close(tpm->esys, &nv);
        if (r < 0)
                vg_error_prefix(err, "NV index 0x%08x: ", index);
        return r;
}

int vg_tpm_ek_cert_read(struct vg_tpm *tpm, enum vg_tpm_key_type alg, uint8_t **der, size_t *len,
                        struct vg_error *err)
{
        uint32_t index = alg == VG_TPM_KEY_ECC ? VG_TPM_NV_EK_CERT_ECC : VG_TPM_NV_EK_CERT_RSA;
        bool present;
        size_t n;
        int r;

        r = handle_present(tpm, index, &present, err);
        if (r < 0)
                return r;
        if (!present)
                return vg_error_set(err, -ENOENT,
                                    "no %s EK certificate: NV index 0x%08x is "
                                    "not defined",
                                    vg_tpm_key_type_name(alg), index);
        r = nv_read(tpm, index, der, len, err);
        if (r < 0)
                return r;
        /* Some TPMs store the certificate zero-padded to a fixed index size. */
        n = der_length(*der, *len);
        if (n == 0) {
                free(*der);
                *der = NULL;
                return vg_error_set(err, -EBADMSG,
                                    "NV index 0x%08x: expected a DER "
                                    "certificate, found %zu bytes that are not one",
                                    index, *len);
        }
        *len = n;
        return 0;
}

int vg_tpm_ek_chain_read(struct vg_tpm *tpm, uint8_t **der, size_t *len, struct vg_error *err)
{
        _cleanup_free_ uint8_t *all = NULL;
        size_t total = 0;
        TPML_HANDLE list;
        int r;

        *der = NULL;
        *len = 0;
        r = get_handles(tpm, VG_TPM_NV_EK_CHAIN_FIRST, &list, err);
        if (r < 0)
                return r;
        for (UINT32 i = 0; i < list.count && list.handle[i] <= VG_TPM_NV_EK_CHAIN_LAST; i++) {
                _cleanup_free_ uint8_t *part = NULL;
                size_t n;
                uint8_t *grown;

                r = nv_read(tpm, list.handle[i], &part, &n, err);
                if (r < 0)
                        return r;
                grown = realloc(all, total + n + 1);
                if (!grown)
                        return vg_error_set(err, -ENOMEM, "out of memory");
                all = grown;
                memcpy(all + total, part, n);
                total += n;
        }
        *der = TAKE_PTR(all);
        *len = total;
        return 0;
}

/* ---- EK ------------------------------------------------------------------------------------ */

/* TCG EK Credential Profile 2.x, B.3.3 (template L-1, RSA 2048) and B.3.4 (template L-2,
 * NIST P-256): what an EK certificate certifies, so the key comes out the same every time. */
static void ek_template(enum vg_tpm_key_type alg, TPM2B_PUBLIC *t)
{
        memset(t, 0, sizeof(*t));
        t->publicArea.nameAlg = TPM2_ALG_SHA256;
        t->publicArea.objectAttributes =
            TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
            TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
        t->publicArea.authPolicy.size = sizeof(ek_policy);
        memcpy(t->publicArea.authPolicy.buffer, ek_policy, sizeof(ek_policy));
        if (alg == VG_TPM_KEY_ECC) {
                TPMS_ECC_PARMS *e = &t->publicArea.parameters.eccDetail;

                t->publicArea.type = TPM2_ALG_ECC;
                e->symmetric.algorithm = TPM2_ALG_AES;
                e->symmetric.keyBits.aes = 128;
                e->symmetric.mode.aes = TPM2_ALG_CFB;
                e->scheme.scheme = TPM2_ALG_NULL;
                e->curveID = TPM2_ECC_NIST_P256;
                e->kdf.scheme = TPM2_ALG_NULL;
                t->publicArea.unique.ecc.x.size = 32;
                t->publicArea.unique.ecc.y.size = 32;
        } else {
                TPMS_RSA_PARMS *p = &t->publicArea.parameters.rsaDetail;

                t->publicArea.type = TPM2_ALG_RSA;
                p->symmetric.algorithm = TPM2_ALG_AES;
                p->symmetric.keyBits.aes = 128;
                p->symmetric.mode.aes = TPM2_ALG_CFB;
                p->scheme.scheme = TPM2_ALG_NULL;
                p->keyBits = 2048;
                p->exponent = 0;
                t->publicArea.unique.rsa.size = 256;
        }
}

static int ek_create(struct vg_tpm *tpm, enum vg_tpm_key_type alg, struct vg_error *err)
{
        _cleanup_esys_ TPM2B_PUBLIC *pub = NULL;
        TPM2B_SENSITIVE_CREATE sens = { 0 };
        TPM2B_DATA outside = { 0 };
        TPML_PCR_SELECTION pcrs = { 0 };
        TPM2B_PUBLIC tmpl;
        ESYS_TR h;
        TSS2_RC rc;

        ek_template(alg, &tmpl);
        rc = Esys_CreatePrimary(tpm->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &sens, &tmpl, &outside, &pcrs, &h, &pub, NULL, NULL,
                                NULL);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_CreatePrimary(EK)", rc);
        tpm->ek = h;
        tpm->ek_transient = true;
        tpm->ek_alg = alg;
        tpm->ek_pub = *pub;
        return 0;
}

static int ek_use_persistent(struct vg_tpm *tpm, enum vg_tpm_key_type alg, uint32_t handle,
                             struct vg_error *err)
{
        _cleanup_esys_ TPM2B_PUBLIC *pub = NULL;
        TPMI_ALG_PUBLIC want = alg == VG_TPM_KEY_ECC ? TPM2_ALG_ECC : TPM2_ALG_RSA;
        ESYS_TR h = ESYS_TR_NONE;
        TSS2_RC rc;

        rc = Esys_TR_FromTPMPublic(tpm->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_ReadPublic(EK)", rc);
        rc = Esys_ReadPublic(tpm->esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL,
                             NULL);
        if (rc != TSS2_RC_SUCCESS) {
                Esys_TR_Close(tpm->esys, &h);
                return tpm_fail(err, "TPM2_ReadPublic(EK)", rc);
        }
        /* A restricted decryption key is what ActivateCredential and Create need. */
        if (pub->publicArea.type != want ||
            !(pub->publicArea.objectAttributes & TPMA_OBJECT_RESTRICTED) ||
            !(pub->publicArea.objectAttributes & TPMA_OBJECT_DECRYPT)) {
                Esys_TR_Close(tpm->esys, &h);
                return vg_error_set(err, -EINVAL,
                                    "persistent handle 0x%08x: expected a "
                                    "restricted %s decryption key (an EK), found type 0x%04x "
                                    "attributes 0x%08x",
                                    handle, vg_tpm_key_type_name(alg), pub->publicArea.type,
                                    pub->publicArea.objectAttributes);
        }
        tpm->ek = h;
        tpm->ek_transient = false;
        tpm->ek_alg = alg;
        tpm->ek_pub = *pub;
        return 0;
}

int vg_tpm_ek_load(struct vg_tpm *tpm, enum vg_tpm_key_type alg, uint32_t handle,
                   struct vg_error *err)
{
        bool present = false;
        int r;

        /* The AK's private part is wrapped by the old EK; it cannot stay. */
        ak_release(tpm);
        ek_release(tpm);
        if (handle == VG_TPM_EK_TEMPLATE)
                return ek_create(tpm, alg, err);
        if (handle != VG_TPM_EK_DEFAULT)
                return ek_use_persistent(tpm, alg, handle, err);
        handle = alg == VG_TPM_KEY_ECC ? VG_TPM_EK_HANDLE_ECC : VG_TPM_EK_HANDLE_RSA;
        r = handle_present(tpm, handle, &present, err);
        if (r < 0)
                return r;
        if (present)
                return ek_use_persistent(tpm, alg, handle, err);
        return ek_create(tpm, alg, err);
}

enum vg_tpm_key_type vg_tpm_ek_alg(const struct vg_tpm *tpm)
{
        return tpm->ek_alg;
}

static int marshal_public(const TPM2B_PUBLIC *pub, uint8_t **out, size_t *len, struct vg_error *err)
{
        uint8_t buf[sizeof(TPM2B_PUBLIC)];
        size_t off = 0;
        TSS2_RC rc;

        rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off);
        if (rc != TSS2_RC_SUCCESS)
                return mu_fail(err, "marshalling TPM2B_PUBLIC", rc);
        *out = malloc(off);
        if (!*out)
                return vg_error_set(err, -ENOMEM, "out of memory");
        memcpy(*out, buf, off);
        *len = off;
        return 0;
}

int vg_tpm_ek_public(struct vg_tpm *tpm, uint8_t **out, size_t *len, struct vg_error *err)
{
        if (tpm->ek == ESYS_TR_NONE)
                return vg_error_set(err, -ENOENT, "no EK loaded (vg_tpm_ek_load first)");
        return marshal_public(&tpm->ek_pub, out, len, err);
}

/* A policy session that satisfies the EK's authPolicy: PolicySecret(TPM_RH_ENDORSEMENT) with
 * the (empty) endorsement authorisation (EK Credential Profile 2.x, B.6; TPM 2.0 Part 3,
 * 23.4). A policy session is reset after each use, so every command gets a new one. */
static int ek_policy_session(struct vg_tpm *tpm, struct tr_guard *s, struct vg_error *err)
{
        TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_NULL };
        TSS2_RC rc;

        s->esys = tpm->esys;
        rc =
            Esys_StartAuthSession(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  ESYS_TR_NONE, NULL, TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, &s->h);
        if (rc != TSS2_RC_SUCCESS) {
                s->h = ESYS_TR_NONE;
                return tpm_fail(err, "TPM2_StartAuthSession(policy)", rc);
        }
        rc = Esys_PolicySecret(tpm->esys, ESYS_TR_RH_ENDORSEMENT, s->h, ESYS_TR_PASSWORD,
                               ESYS_TR_NONE, ESYS_TR_NONE, NULL, NULL, NULL, 0, NULL, NULL);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_PolicySecret(TPM_RH_ENDORSEMENT)", rc);
        return 0;
}

/* ---- AK ------------------------------------------------------------------------------------ */

static int ak_template(const struct vg_tpm_ak_params *p, TPM2B_PUBLIC *t, struct vg_error *err)
{
        uint16_t hash;

        if (p->hash >= VG_HASH_ALG_COUNT)
                return vg_error_set(err, -EINVAL, "AK: unknown hash algorithm %d", p->hash);
        hash = vg_hash_tpm_alg_id(p->hash);
        memset(t, 0, sizeof(*t));
        t->publicArea.nameAlg = hash;
        /* A restricted signing key only signs what the TPM produced (TPM 2.0 Part 1, 25.2),
         * which is what makes its quotes evidence. */
        t->publicArea.objectAttributes =
            TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
            TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
        if (p->alg == VG_TPM_KEY_ECC) {
                TPMS_ECC_PARMS *e = &t->publicArea.parameters.eccDetail;

                t->publicArea.type = TPM2_ALG_ECC;
                e->symmetric.algorithm = TPM2_ALG_NULL;
                e->scheme.scheme = TPM2_ALG_ECDSA;
                e->scheme.details.ecdsa.hashAlg = hash;
                e->curveID = TPM2_ECC_NIST_P256;
                e->kdf.scheme = TPM2_ALG_NULL;
        } else if (p->alg == VG_TPM_KEY_RSA) {
                TPMS_RSA_PARMS *r = &t->publicArea.parameters.rsaDetail;

                t->publicArea.type = TPM2_ALG_RSA;
                r->symmetric.algorithm = TPM2_ALG_NULL;
                r->scheme.scheme = TPM2_ALG_RSASSA;
                r->scheme.details.rsassa.hashAlg = hash;
                r->keyBits = 2048;
                r->exponent = 0;
        } else {
                return vg_error_set(err, -EINVAL, "AK: unknown key algorithm %d", p->alg);
        }
        return 0;
}

/* The AK's parameters from its public area; -EINVAL for a key that is not an AK. */
static int ak_params_of(const TPM2B_PUBLIC *pub, struct vg_tpm_ak_params *out)
{
        const TPMT_PUBLIC *t = &pub->publicArea;
        TPMI_ALG_SIG_SCHEME scheme;
        TPMI_ALG_HASH hash;
        enum vg_hash_alg h;

        if (!(t->objectAttributes & TPMA_OBJECT_RESTRICTED) ||
            !(t->objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT))
                return -EINVAL;
        if (t->type == TPM2_ALG_RSA) {
                scheme = t->parameters.rsaDetail.scheme.scheme;
                hash = t->parameters.rsaDetail.scheme.details.anySig.hashAlg;
                if (scheme != TPM2_ALG_RSASSA)
                        return -EINVAL;
                out->alg = VG_TPM_KEY_RSA;
        } else if (t->type == TPM2_ALG_ECC) {
                scheme = t->parameters.eccDetail.scheme.scheme;
                hash = t->parameters.eccDetail.scheme.details.anySig.hashAlg;
                if (scheme != TPM2_ALG_ECDSA)
                        return -EINVAL;
                out->alg = VG_TPM_KEY_ECC;
        } else {
                return -EINVAL;
        }
        if (vg_hash_alg_from_tpm_id(hash, &h) < 0)
                return -EINVAL;
        out->hash = h;
        return 0;
}

/* TPM2_Load of the AK under the EK, authorised by the EK policy (TPM 2.0 Part 3, 12.2). */
static int ak_load_blobs(struct vg_tpm *tpm, const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv,
                         struct vg_error *err)
{
        _cleanup_flush_ struct tr_guard s = { tpm->esys, ESYS_TR_NONE };
        struct vg_tpm_ak_params params;
        ESYS_TR h;
        TSS2_RC rc;
        int r;

        if (ak_params_of(pub, &params) < 0)
                return vg_error_set(err, -EINVAL,
                                    "expected a restricted RSASSA or ECDSA "
                                    "signing key, found type 0x%04x attributes 0x%08x",
                                    pub->publicArea.type, pub->publicArea.objectAttributes);
        r = ek_policy_session(tpm, &s, err);
        if (r < 0)
                return r;
        rc = Esys_Load(tpm->esys, tpm->ek, s.h, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, &h);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_Load(AK)", rc);
        ak_release(tpm);
        tpm->ak = h;
        tpm->ak_transient = true;
        tpm->ak_pub = *pub;
        tpm->ak_priv = *priv;
        tpm->ak_have_private = true;
        tpm->ak_params = params;
        return 0;
}

static int need_ek(struct vg_tpm *tpm, struct vg_error *err)
{
        if (tpm->ek == ESYS_TR_NONE)
                return vg_error_set(err, -ENOENT, "no EK loaded (vg_tpm_ek_load first)");
        return 0;
}

int vg_tpm_ak_create(struct vg_tpm *tpm, const struct vg_tpm_ak_params *params,
                     struct vg_error *err)
{
        _cleanup_flush_ struct tr_guard s = { tpm->esys, ESYS_TR_NONE };
        _cleanup_esys_ TPM2B_PRIVATE *priv = NULL;
        _cleanup_esys_ TPM2B_PUBLIC *pub = NULL;
        TPM2B_SENSITIVE_CREATE sens = { 0 };
        TPM2B_DATA outside = { 0 };
        TPML_PCR_SELECTION pcrs = { 0 };
        TPM2B_PUBLIC tmpl;
        TSS2_RC rc;
        int r;

        r = need_ek(tpm, err);
        if (r < 0)
                return r;
        r = ak_template(params, &tmpl, err);
        if (r < 0)
                return r;
        r = ek_policy_session(tpm, &s, err);
        if (r < 0)
                return r;
        rc = Esys_Create(tpm->esys, tpm->ek, s.h, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
                         &outside, &pcrs, &priv, &pub, NULL, NULL, NULL);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_Create(AK)", rc);
        tr_guard_flush(&s);
        r = ak_load_blobs(tpm, pub, priv, err);
        explicit_bzero(priv, sizeof(*priv));
        return r;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);

                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

int vg_tpm_ak_save(struct vg_tpm *tpm, const char *path, struct vg_error *err)
{
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        uint8_t buf[sizeof(ak_file_magic) + sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
        size_t off = sizeof(ak_file_magic);
        TSS2_RC rc;
        int r;

        if (tpm->ak == ESYS_TR_NONE || !tpm->ak_have_private)
                return vg_error_set(err, -ENOENT, "%s: no AK with a private blob loaded", path);
        memcpy(buf, ak_file_magic, sizeof(ak_file_magic));
        rc = Tss2_MU_TPM2B_PUBLIC_Marshal(&tpm->ak_pub, buf, sizeof(buf), &off);
        if (rc == TSS2_RC_SUCCESS)
                rc = Tss2_MU_TPM2B_PRIVATE_Marshal(&tpm->ak_priv, buf, sizeof(buf), &off);
        if (rc != TSS2_RC_SUCCESS)
                return mu_fail(err, "marshalling the AK", rc);
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return vg_error_set(err, -errno, "%s: cannot create: %m", tmp);
        r = write_all(fd, buf, off);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && close(TAKE_FD(fd)) < 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return vg_error_set(err, r, "%s: cannot write: %s", path, strerror(-r));
        }
        return 0;
}

static int ak_read_file(const char *path, TPM2B_PUBLIC *pub, TPM2B_PRIVATE *priv,
                        struct vg_error *err)
{
        uint8_t buf[sizeof(ak_file_magic) + sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE) + 1];
        _cleanup_close_ int fd = -1;
        size_t len = 0, off = sizeof(ak_file_magic);
        TSS2_RC rc;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return vg_error_set(err, -errno, "%s: cannot open: %m", path);
        while (len < sizeof(buf)) {
                ssize_t n = read(fd, buf + len, sizeof(buf) - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return vg_error_set(err, -errno, "%s: cannot read: %m", path);
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        if (len < sizeof(ak_file_magic) || memcmp(buf, ak_file_magic, sizeof(ak_file_magic)))
                return vg_error_set(err, -EBADMSG,
                                    "%s: expected a vigil AK file (VIGILAK1), "
                                    "found something else",
                                    path);
        memset(pub, 0, sizeof(*pub));
        memset(priv, 0, sizeof(*priv));
        rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(buf, len, &off, pub);
        if (rc == TSS2_RC_SUCCESS)
                rc = Tss2_MU_TPM2B_PRIVATE_Unmarshal(buf, len, &off, priv);
        explicit_bzero(buf, sizeof(buf));
        if (rc != TSS2_RC_SUCCESS)
                return vg_error_set(err, -EBADMSG, "%s: truncated or corrupt AK file: %s", path,
                                    Tss2_RC_Decode(rc));
        if (off != len)
                return vg_error_set(err, -EBADMSG, "%s: %zu bytes of trailing garbage", path,
                                    len - off);
        return 0;
}

int vg_tpm_ak_load(struct vg_tpm *tpm, const char *path, struct vg_error *err)
{
        TPM2B_PUBLIC pub;
        TPM2B_PRIVATE priv;
        int r;

        r = need_ek(tpm, err);
        if (r < 0)
                return r;
        r = ak_read_file(path, &pub, &priv, err);
        if (r == 0)
                r = ak_load_blobs(tpm, &pub, &priv, err);
        explicit_bzero(&priv, sizeof(priv));
        if (r < 0 && r != -ENOENT)
                vg_error_prefix(err, "AK %s: ", path);
        return r;
}

int vg_tpm_ak_load_or_create(struct vg_tpm *tpm, const char *path,
                             const struct vg_tpm_ak_params *params, bool *created,
                             struct vg_error *err)
{
        struct vg_tpm_ak_params have;
        int r;

        if (created)
                *created = false;
        r = need_ek(tpm, err);
        if (r < 0)
                return r;
        if (access(path, F_OK) == 0) {
                r = vg_tpm_ak_load(tpm, path, err);
                if (r < 0)
                        return r;
                have = tpm->ak_params;
                if (have.alg != params->alg || have.hash != params->hash) {
                        ak_release(tpm);
                        return vg_error_set(
                            err, -ESTALE, "AK %s is %s/%s, configured %s/%s", path,
                            vg_tpm_sign_alg_name(have.alg), vg_hash_alg_name(have.hash),
                            vg_tpm_sign_alg_name(params->alg), vg_hash_alg_name(params->hash));
                }
                return 0;
        }
        if (errno != ENOENT)
                return vg_error_set(err, -errno, "%s: %m", path);
        r = vg_tpm_ak_create(tpm, params, err);
        if (r == 0)
                r = vg_tpm_ak_save(tpm, path, err);
        if (r == 0 && created)
                *created = true;
        return r;
}

int vg_tpm_ak_persist(struct vg_tpm *tpm, uint32_t handle, struct vg_error *err)
{
        ESYS_TR h;
        TSS2_RC rc;

        if (tpm->ak == ESYS_TR_NONE || !tpm->ak_transient)
                return vg_error_set(err, -ENOENT, "no transient AK loaded to persist");
        /* TPM 2.0 Part 3, 28.5: the owner hierarchy may persist 0x81000000..0x817fffff. */
        rc = Esys_EvictControl(tpm->esys, ESYS_TR_RH_OWNER, tpm->ak, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                               ESYS_TR_NONE, handle, &h);
        if (rc != TSS2_RC_SUCCESS) {
                tpm_fail(err, "TPM2_EvictControl(AK)", rc);
                vg_error_prefix(err, "handle 0x%08x: ", handle);
                return err ? err->code : rc_errno(rc);
        }
        Esys_FlushContext(tpm->esys, tpm->ak);
        tpm->ak = h;
        tpm->ak_transient = false;
        return 0;
}

int vg_tpm_ak_use_persistent(struct vg_tpm *tpm, uint32_t handle, struct vg_error *err)
{
        _cleanup_esys_ TPM2B_PUBLIC *pub = NULL;
        struct vg_tpm_ak_params params;
        ESYS_TR h;
        TSS2_RC rc;

        rc = Esys_TR_FromTPMPublic(tpm->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_ReadPublic(AK)", rc);
        rc = Esys_ReadPublic(tpm->esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL,
                             NULL);
        if (rc != TSS2_RC_SUCCESS || ak_params_of(pub, &params) < 0) {
                Esys_TR_Close(tpm->esys, &h);
                if (rc != TSS2_RC_SUCCESS)
                        return tpm_fail(err, "TPM2_ReadPublic(AK)", rc);
                return vg_error_set(err, -EINVAL,
                                    "handle 0x%08x: expected a restricted "
                                    "RSASSA or ECDSA signing key",
                                    handle);
        }
        ak_release(tpm);
        tpm->ak = h;
        tpm->ak_transient = false;
        tpm->ak_pub = *pub;
        tpm->ak_params = params;
        return 0;
}

int vg_tpm_evict(struct vg_tpm *tpm, uint32_t handle, struct vg_error *err)
{
        bool present;
        ESYS_TR h, out;
        TSS2_RC rc;
        int r;

        r = handle_present(tpm, handle, &present, err);
        if (r < 0)
                return r;
        if (!present)
                return vg_error_set(err, -ENOENT, "no persistent object at 0x%08x", handle);
        if (tpm->ak != ESYS_TR_NONE && !tpm->ak_transient) {
                TPM2_HANDLE cur;

                if (Esys_TR_GetTpmHandle(tpm->esys, tpm->ak, &cur) == TSS2_RC_SUCCESS &&
                    cur == handle)
                        ak_release(tpm);
        }
        rc = Esys_TR_FromTPMPublic(tpm->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_ReadPublic", rc);
        /* EvictControl of a persistent object removes it and invalidates h (Part 3, 28.5). */
        rc = Esys_EvictControl(tpm->esys, ESYS_TR_RH_OWNER, h, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                               ESYS_TR_NONE, handle, &out);
        if (rc != TSS2_RC_SUCCESS) {
                Esys_TR_Close(tpm->esys, &h);
                return tpm_fail(err, "TPM2_EvictControl", rc);
        }
        return 0;
}

static int need_ak(const struct vg_tpm *tpm, struct vg_error *err)
{
        if (tpm->ak == ESYS_TR_NONE)
                return vg_error_set(err, -ENOENT,
                                    "no AK loaded (vg_tpm_ak_load_or_create "
                                    "first)");
        return 0;
}

int vg_tpm_ak_public(struct vg_tpm *tpm, uint8_t **out, size_t *len, struct vg_error *err)
{
        int r = need_ak(tpm, err);

        return r < 0 ? r : marshal_public(&tpm->ak_pub, out, len, err);
}

int vg_tpm_ak_name(struct vg_tpm *tpm, uint8_t **out, size_t *len, struct vg_error *err)
{
        _cleanup_esys_ TPM2B_NAME *name = NULL;
        TSS2_RC rc;
        int r;

        r = need_ak(tpm, err);
        if (r < 0)
                return r;
        rc = Esys_TR_GetName(tpm->esys, tpm->ak, &name);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "Esys_TR_GetName(AK)", rc);
        *out = malloc(name->size ? name->size : 1);
        if (!*out)
                return vg_error_set(err, -ENOMEM, "out of memory");
        memcpy(*out, name->name, name->size);
        *len = name->size;
        return 0;
}

int vg_tpm_ak_get_params(const struct vg_tpm *tpm, struct vg_tpm_ak_params *out)
{
        if (tpm->ak == ESYS_TR_NONE)
                return -ENOENT;
        *out = tpm->ak_params;
        return 0;
}

/* ---- ActivateCredential -------------------------------------------------------------------- */

int vg_tpm_activate_credential(struct vg_tpm *tpm, const uint8_t *credential_blob, size_t blob_len,
                               const uint8_t *secret, size_t secret_len, uint8_t **cred,
                               size_t *cred_len, struct vg_error *err)
{
        _cleanup_flush_ struct tr_guard s = { tpm->esys, ESYS_TR_NONE };
        _cleanup_esys_ TPM2B_DIGEST *info = NULL;
        TPM2B_ID_OBJECT id = { 0 };
        TPM2B_ENCRYPTED_SECRET es = { 0 };
        size_t off = 0;
        TSS2_RC rc;
        int r;

        r = need_ek(tpm, err);
        if (r == 0)
                r = need_ak(tpm, err);
        if (r < 0)
                return r;
        rc = Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(credential_blob, blob_len, &off, &id);
        if (rc != TSS2_RC_SUCCESS || off != blob_len)
                return vg_error_set(err, -EBADMSG,
                                    "credential blob: expected a TPM2B_ID_OBJECT "
                                    "of %zu bytes, %s",
                                    blob_len, rc ? Tss2_RC_Decode(rc) : "found trailing bytes");
        off = 0;
        rc = Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(secret, secret_len, &off, &es);
        if (rc != TSS2_RC_SUCCESS || off != secret_len)
                return vg_error_set(err, -EBADMSG,
                                    "credential secret: expected a "
                                    "TPM2B_ENCRYPTED_SECRET of %zu bytes, %s",
                                    secret_len, rc ? Tss2_RC_Decode(rc) : "found trailing bytes");
        r = ek_policy_session(tpm, &s, err);
        if (r < 0)
                return r;
        /* The AK is activateHandle (ADMIN role; it has no adminWithPolicy, so its empty
         * password serves), the EK keyHandle (USER role, its policy). Part 3, 12.5. */
        rc = Esys_ActivateCredential(tpm->esys, tpm->ak, tpm->ek, ESYS_TR_PASSWORD, s.h,
                                     ESYS_TR_NONE, &id, &es, &info);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_ActivateCredential", rc);
        *cred = malloc(info->size ? info->size : 1);
        if (!*cred) {
                explicit_bzero(info->buffer, sizeof(info->buffer));
                return vg_error_set(err, -ENOMEM, "out of memory");
        }
        memcpy(*cred, info->buffer, info->size);
        *cred_len = info->size;
        explicit_bzero(info->buffer, sizeof(info->buffer));
        return 0;
}

int vg_tpm_activate_credential_file(struct vg_tpm *tpm, const uint8_t *file, size_t len,
                                    uint8_t **cred, size_t *cred_len, struct vg_error *err)
{
        struct vg_buf b = vg_buf_init(file, len);
        struct vg_buf id, es;
        uint32_t magic, version;
        uint16_t n;
        const uint8_t *start;

        if (!vg_buf_u32be(&b, &magic) || !vg_buf_u32be(&b, &version) || magic != CRED_FILE_MAGIC ||
            version != CRED_FILE_VERSION)
                return vg_error_set(err, -EBADMSG,
                                    "credential file: expected magic 0xBADCC0DE "
                                    "version 1, found %zu bytes that do not start so",
                                    len);
        start = b.p;
        if (!vg_buf_u16be(&b, &n) || !vg_buf_skip(&b, n))
                return vg_error_set(err, -EBADMSG,
                                    "credential file: TPM2B_ID_OBJECT "
                                    "truncated");
        id = vg_buf_init(start, (size_t)(b.p - start));
        start = b.p;
        if (!vg_buf_u16be(&b, &n) || !vg_buf_skip(&b, n))
                return vg_error_set(err, -EBADMSG,
                                    "credential file: TPM2B_ENCRYPTED_SECRET "
                                    "truncated");
        es = vg_buf_init(start, (size_t)(b.p - start));
        if (b.len != 0)
                return vg_error_set(err, -EBADMSG, "credential file: %zu trailing bytes", b.len);
        return vg_tpm_activate_credential(tpm, id.p, id.len, es.p, es.len, cred, cred_len, err);
}

/* ---- PCRs ---------------------------------------------------------------------------------- */

static int check_alg(enum vg_hash_alg alg, struct vg_error *err)
{
        if ((unsigned)alg >= VG_HASH_ALG_COUNT)
                return vg_error_set(err, -EINVAL, "unknown PCR bank %d", (int)alg);
        return 0;
}

static void selection_of(enum vg_hash_alg alg, uint32_t mask, TPML_PCR_SELECTION *sel)
{
        memset(sel, 0, sizeof(*sel));
        sel->count = 1;
        sel->pcrSelections[0].hash = vg_hash_tpm_alg_id(alg);
        sel->pcrSelections[0].sizeofSelect = 3;
        sel->pcrSelections[0].pcrSelect[0] = (uint8_t)mask;
        sel->pcrSelections[0].pcrSelect[1] = (uint8_t)(mask >> 8);
        sel->pcrSelections[0].pcrSelect[2] = (uint8_t)(mask >> 16);
}

int vg_tpm_pcr_read(struct vg_tpm *tpm, enum vg_hash_alg alg, uint32_t mask,
                    struct vg_tpm_pcrs *out, struct vg_error *err)
{
        size_t dsize = vg_hash_size(alg);
        uint32_t left = mask;
        int r;

        r = check_alg(alg, err);
        if (r < 0)
                return r;
        if (mask == 0 || mask >> VG_TPM_PCR_COUNT)
                return vg_error_set(err, -EINVAL, "PCR mask 0x%x: expected PCRs 0..23",
                                    (unsigned)mask);
        memset(out, 0, sizeof(*out));
        out->alg = alg;
        out->mask = mask;
        /* TPML_DIGEST holds 8 digests, so the TPM answers in parts and says in
         * pcrSelectionOut which PCRs it covered (TPM 2.0 Part 3, 22.4). */
        while (left) {
                _cleanup_esys_ TPML_PCR_SELECTION *got = NULL;
                _cleanup_esys_ TPML_DIGEST *vals = NULL;
                TPML_PCR_SELECTION sel;
                uint32_t covered = 0;
                UINT32 k = 0;
                TSS2_RC rc;

                selection_of(alg, left, &sel);
                rc = Esys_PCR_Read(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL,
                                   &got, &vals);
                if (rc != TSS2_RC_SUCCESS)
                        return tpm_fail(err, "TPM2_PCR_Read", rc);
                for (UINT32 i = 0; i < got->count; i++) {
                        const TPMS_PCR_SELECTION *s = &got->pcrSelections[i];

                        if (s->hash != vg_hash_tpm_alg_id(alg))
                                continue;
                        for (unsigned b = 0; b < 8u * s->sizeofSelect && b < 32; b++)
                                if (s->pcrSelect[b / 8] & (1u << (b % 8)))
                                        covered |= 1u << b;
                }
                covered &= left;
                if (covered == 0)
                        return vg_error_set(err, -EOPNOTSUPP,
                                            "TPM2_PCR_Read: the %s bank is "
                                            "not active (no PCR of 0x%06x returned)",
                                            vg_hash_alg_name(alg), (unsigned)left);
                for (unsigned p = 0; p < VG_TPM_PCR_COUNT; p++) {
                        if (!(covered & (1u << p)))
                                continue;
                        if (k >= vals->count || vals->digests[k].size != dsize)
                                return vg_error_set(err, -EIO,
                                                    "TPM2_PCR_Read: PCR %u of the "
                                                    "%s bank: missing or wrong-size digest",
                                                    p, vg_hash_alg_name(alg));
                        memcpy(out->value[p], vals->digests[k].buffer, dsize);
                        k++;
                }
                left &= ~covered;
        }
        return 0;
}

int vg_tpm_pcr_extend(struct vg_tpm *tpm, unsigned pcr, enum vg_hash_alg alg, const uint8_t *digest,
                      struct vg_error *err)
{
        TPML_DIGEST_VALUES v = { 0 };
        TSS2_RC rc;
        int r;

        r = check_alg(alg, err);
        if (r < 0)
                return r;
        if (pcr >= VG_TPM_PCR_COUNT)
                return vg_error_set(err, -EINVAL, "PCR %u: expected 0..23", pcr);
        v.count = 1;
        v.digests[0].hashAlg = vg_hash_tpm_alg_id(alg);
        memcpy(&v.digests[0].digest, digest, vg_hash_size(alg));
        rc = Esys_PCR_Extend(tpm->esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                             ESYS_TR_NONE, &v);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(err, "TPM2_PCR_Extend", rc);
                vg_error_prefix(err, "PCR %u (%s): ", pcr, vg_hash_alg_name(alg));
        }
        return r;
}

int vg_tpm_pcr_reset(struct vg_tpm *tpm, unsigned pcr, struct vg_error *err)
{
        TSS2_RC rc;
        int r = 0;

        if (pcr >= VG_TPM_PCR_COUNT)
                return vg_error_set(err, -EINVAL, "PCR %u: expected 0..23", pcr);
        rc = Esys_PCR_Reset(tpm->esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            ESYS_TR_NONE);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(err, "TPM2_PCR_Reset", rc);
                vg_error_prefix(err, "PCR %u: ", pcr);
        }
        return r;
}

int vg_tpm_pcr16_bind(struct vg_tpm *tpm, enum vg_hash_alg alg, const void *data, size_t len,
                      struct vg_error *err)
{
        uint8_t d[VG_HASH_MAX_SIZE];
        int r;

        r = check_alg(alg, err);
        if (r < 0)
                return r;
        r = vg_hash(alg, data, len, d);
        if (r < 0)
                return vg_error_set(err, r, "hashing the NK public key: %s", strerror(-r));
        r = vg_tpm_pcr_reset(tpm, 16, err);
        if (r == 0)
                r = vg_tpm_pcr_extend(tpm, 16, alg, d, err);
        return r;
}

/* ---- Quote --------------------------------------------------------------------------------- */

void vg_tpm_quote_clear(struct vg_tpm_quote *q)
{
        free(q->attest);
        free(q->sig);
        memset(q, 0, sizeof(*q));
}

int vg_tpm_quote_check_pcrs(const uint8_t *attest, size_t attest_len,
                            const struct vg_tpm_pcrs *pcrs, enum vg_hash_alg digest_alg,
                            struct vg_error *err)
{
        _cleanup_free_ uint8_t *concat = NULL;
        uint8_t want[VG_HASH_MAX_SIZE];
        size_t dsize = vg_hash_size(pcrs->alg), n = 0, off = 0;
        const TPMS_QUOTE_INFO *qi;
        TPML_PCR_SELECTION sel;
        TPMS_ATTEST a;
        TSS2_RC rc;
        int r;

        r = check_alg(digest_alg, err);
        if (r == 0)
                r = check_alg(pcrs->alg, err);
        if (r < 0)
                return r;
        memset(&a, 0, sizeof(a));
        rc = Tss2_MU_TPMS_ATTEST_Unmarshal(attest, attest_len, &off, &a);
        if (rc != TSS2_RC_SUCCESS)
                return mu_fail(err, "TPMS_ATTEST", rc);
        if (off != attest_len || a.magic != TPM2_GENERATED_VALUE || a.type != TPM2_ST_ATTEST_QUOTE)
                return vg_error_set(err, -EBADMSG,
                                    "TPMS_ATTEST: expected a quote (magic "
                                    "0xff544347, type 0x8018), found magic 0x%08x type 0x%04x",
                                    a.magic, a.type);
        qi = &a.attested.quote;
        /* Part 2, 10.12.1: the TPM echoes the selection; compare it as a mask per bank. */
        selection_of(pcrs->alg, pcrs->mask, &sel);
        if (qi->pcrSelect.count != 1 ||
            qi->pcrSelect.pcrSelections[0].hash != sel.pcrSelections[0].hash ||
            qi->pcrSelect.pcrSelections[0].sizeofSelect < 3 ||
            memcmp(qi->pcrSelect.pcrSelections[0].pcrSelect, sel.pcrSelections[0].pcrSelect, 3))
                return vg_error_set(err, -ESTALE,
                                    "quote selects other PCRs than were read "
                                    "(%s 0x%06x)",
                                    vg_hash_alg_name(pcrs->alg), (unsigned)pcrs->mask);
        concat = malloc(VG_TPM_PCR_COUNT * VG_HASH_MAX_SIZE);
        if (!concat)
                return vg_error_set(err, -ENOMEM, "out of memory");
        for (unsigned p = 0; p < VG_TPM_PCR_COUNT; p++) {
                if (!(pcrs->mask & (1u << p)))
                        continue;
                memcpy(concat + n, pcrs->value[p], dsize);
                n += dsize;
        }
        r = vg_hash(digest_alg, concat, n, want);
        if (r < 0)
                return vg_error_set(err, r, "hashing the PCR values: %s", strerror(-r));
        if (qi->pcrDigest.size != vg_hash_size(digest_alg) ||
            memcmp(qi->pcrDigest.buffer, want, qi->pcrDigest.size) != 0)
                return vg_error_set(err, -ESTALE,
                                    "quoted pcrDigest differs from the hash of "
                                    "the PCR values read (a PCR changed in between)");
        return 0;
}

/* One PCR_Read + Quote; -ESTALE (err filled) when a PCR moved between them. */
static int quote_once(struct vg_tpm *tpm, const TPM2B_DATA *qd, enum vg_hash_alg pcr_alg,
                      uint32_t mask, struct vg_tpm_quote *q, struct vg_error *err)
{
        _cleanup_esys_ TPM2B_ATTEST *quoted = NULL;
        _cleanup_esys_ TPMT_SIGNATURE *sig = NULL;
        TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_NULL };
        TPML_PCR_SELECTION sel;
        uint8_t sbuf[sizeof(TPMT_SIGNATURE)];
        size_t soff = 0;
        TSS2_RC rc;
        int r;

        r = vg_tpm_pcr_read(tpm, pcr_alg, mask, &q->pcrs, err);
        if (r < 0)
                return r;
        selection_of(pcr_alg, mask, &sel);
        /* A NULL scheme makes the TPM use the restricted key's own (Part 3, 18.4.1). */
        rc = Esys_Quote(tpm->esys, tpm->ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, qd,
                        &scheme, &sel, &quoted, &sig);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(err, "TPM2_Quote", rc);
        /* pcrDigest uses the signing scheme's hash (Part 3, 18.4.1; Part 2, 10.12.1). */
        r = vg_tpm_quote_check_pcrs(quoted->attestationData, quoted->size, &q->pcrs,
                                    tpm->ak_params.hash, err);
        if (r == -ESTALE) {
                /* An extend landed between the read and the quote: the values after the
                 * quote may be the quoted ones (nothing extended since). */
                r = vg_tpm_pcr_read(tpm, pcr_alg, mask, &q->pcrs, err);
                if (r == 0)
                        r = vg_tpm_quote_check_pcrs(quoted->attestationData, quoted->size, &q->pcrs,
                                                    tpm->ak_params.hash, err);
        }
        if (r < 0)
                return r;
        rc = Tss2_MU_TPMT_SIGNATURE_Marshal(sig, sbuf, sizeof(sbuf), &soff);
        if (rc != TSS2_RC_SUCCESS)
                return mu_fail(err, "marshalling TPMT_SIGNATURE", rc);
        q->attest = malloc(quoted->size);
        q->sig = malloc(soff);
        if (!q->attest || !q->sig)
                return vg_error_set(err, -ENOMEM, "out of memory");
        memcpy(q->attest, quoted->attestationData, quoted->size);
        q->attest_len = quoted->size;
        memcpy(q->sig, sbuf, soff);
        q->sig_len = soff;
        return 0;
}

int vg_tpm_quote(struct vg_tpm *tpm, const uint8_t *nonce, size_t nonce_len,
                 enum vg_hash_alg pcr_alg, uint32_t mask, struct vg_tpm_quote *out,
                 struct vg_error *err)
{
        TPM2B_DATA qd = { 0 };
        unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
        int r = -ESTALE;

        memset(out, 0, sizeof(*out));
        r = need_ak(tpm, err);
        if (r < 0)
                return r;
        if (nonce_len > VG_TPM_NONCE_MAX)
                return vg_error_set(err, -EINVAL, "quote nonce: at most %d bytes, found %zu",
                                    VG_TPM_NONCE_MAX, nonce_len);
        qd.size = (UINT16)nonce_len;
        if (nonce_len)
                memcpy(qd.buffer, nonce, nonce_len);
        for (unsigned i = 1; i <= VG_TPM_QUOTE_ATTEMPTS; i++) {
                vg_tpm_quote_clear(out);
                out->attempts = i;
                r = quote_once(tpm, &qd, pcr_alg, mask, out, err);
                if (r != -ESTALE)
                        break;
                /* A random pause of up to 2 ms before the next try: a steady stream of IMA
                 * extends (thousands a second) otherwise lands between read and quote every
                 * time, in lockstep with the retries. */
                struct timespec ts = { 0, (long)(rand_r(&seed) % 2000) * 1000 };
                nanosleep(&ts, NULL);
        }
        if (r == -ESTALE)
                r = vg_error_set(err, -EAGAIN,
                                 "TPM2_Quote: PCRs kept changing; no quote "
                                 "matched the values read in %d attempts",
                                 VG_TPM_QUOTE_ATTEMPTS);
        if (r < 0)
                vg_tpm_quote_clear(out);
        return r;
}

/* The tpm2-tools in-memory structures as gcc and clang lay them out on Linux: the TSS
 * structs are written with fwrite(), padding included (keylime tpm_util.py). */
#define PB_SELECTION_SIZE 8  /* u16 hash, u8 sizeofSelect, u8 pcrSelect[4], pad 1 */
#define PB_SELECTIONS     16 /* TPM2_NUM_PCR_BANKS */
#define PB_DIGEST_SIZE    66 /* u16 size, u8 buffer[64] */
#define PB_DIGESTS        8  /* TPML_DIGEST.digests[8] */
#define PB_LIST_SIZE      (4 + PB_DIGESTS * PB_DIGEST_SIZE)

static void put_le16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
        put_le16(p, (uint16_t)v);
        put_le16(p + 2, (uint16_t)(v >> 16));
}

int vg_tpm_pcrblob(const struct vg_tpm_pcrs *pcrs, uint8_t **out, size_t *len)
{
        size_t dsize, n = 0, lists, size, off;
        uint8_t *b;

        if ((unsigned)pcrs->alg >= VG_HASH_ALG_COUNT || pcrs->mask >> VG_TPM_PCR_COUNT)
                return -EINVAL;
        dsize = vg_hash_size(pcrs->alg);
        for (unsigned p = 0; p < VG_TPM_PCR_COUNT; p++)
                n += !!(pcrs->mask & (1u << p));
        lists = (n + PB_DIGESTS - 1) / PB_DIGESTS;
        size = 4 + PB_SELECTIONS * PB_SELECTION_SIZE + 4 + lists * PB_LIST_SIZE;
        b = calloc(1, size);
        if (!b)
                return -ENOMEM;
        put_le32(b, 1);
        put_le16(b + 4, vg_hash_tpm_alg_id(pcrs->alg));
        b[6] = 3;
        b[7] = (uint8_t)pcrs->mask;
        b[8] = (uint8_t)(pcrs->mask >> 8);
        b[9] = (uint8_t)(pcrs->mask >> 16);
        off = 4 + PB_SELECTIONS * PB_SELECTION_SIZE;
        put_le32(b + off, (uint32_t)lists);
        off += 4;
        /* Lists of 8 in PCR order: how the TPM splits a PCR_Read and so what tpm2_quote
         * writes. */
        for (unsigned p = 0, k = 0; p < VG_TPM_PCR_COUNT; p++) {
                uint8_t *list = b + off + (k / PB_DIGESTS) * PB_LIST_SIZE;
                uint8_t *d = list + 4 + (k % PB_DIGESTS) * PB_DIGEST_SIZE;

                if (!(pcrs->mask & (1u << p)))
                        continue;
                put_le32(list, k % PB_DIGESTS + 1);
                put_le16(d, (uint16_t)dsize);
                memcpy(d + 2, pcrs->value[p], dsize);
                k++;
        }
        *out = b;
        *len = size;
        return 0;
}

int vg_tpm_quote_string(const struct vg_tpm_quote *q, char **out)
{
        _cleanup_free_ uint8_t *blob = NULL;
        _cleanup_free_ char *a = NULL, *s = NULL, *p = NULL;
        size_t blen;
        int r;

        r = vg_tpm_pcrblob(&q->pcrs, &blob, &blen);
        if (r < 0)
                return r;
        a = vg_b64_encode(q->attest, q->attest_len, VG_B64_STD);
        s = vg_b64_encode(q->sig, q->sig_len, VG_B64_STD);
        p = vg_b64_encode(blob, blen, VG_B64_STD);
        if (!a || !s || !p || asprintf(out, "r%s:%s:%s", a, s, p) < 0)
                return -ENOMEM;
        return 0;
}
