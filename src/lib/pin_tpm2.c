/* vigil: the Clevis tpm2 pin on tpm2-tss ESAPI: a JWK sealed in a keyedhash object under the
 * owner hierarchy's primary key, optionally bound to a PolicyPCR, byte-compatible with what
 * clevis-encrypt-tpm2 over tpm2-tools 5.4 writes and clevis-decrypt-tpm2 reads (tang.md 2.3). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "cleanup.h"
#include "encoding.h"
#include "hash.h"
#include "pin_private.h"

#define PCR_COUNT 24
/* TPM 2.0 Part 2, 11.1.11 (TPMT_SYM_DEF_OBJECT of a restricted decryption key): what
 * tpm2_createprimary puts in its templates ("aes128cfb"). */
#define PRIMARY_SYM_BITS 128
/* MAX_SYM_DATA of the PC Client profile: the most a keyedhash object can seal. */
#define SEAL_MAX 128

/* The configuration keys clevis-encrypt-tpm2 reads, in the order clevis luks list prints them
 * (clevis_luks_print_pin_config in clevis-luks-common-functions). */
static const char *const cfg_keys[] = { "hash", "key", "pcr_bank", "pcr_ids", "pcr_digest" };

/* `tpm2_createprimary -G KEY` as tpm2-tools 5.4 parses KEY (lib/tpm2_alg_util.c handle_rsa,
 * handle_ecc): "rsa" is 2048 bits, "ecc" is NIST P-256. */
struct key_spec {
        const char *name;
        TPMI_ALG_PUBLIC type;
        uint16_t bits_or_curve;
};

static const struct key_spec key_specs[] = {
        { "ecc", TPM2_ALG_ECC, TPM2_ECC_NIST_P256 },
        { "ecc256", TPM2_ALG_ECC, TPM2_ECC_NIST_P256 },
        { "ecc384", TPM2_ALG_ECC, TPM2_ECC_NIST_P384 },
        { "ecc521", TPM2_ALG_ECC, TPM2_ECC_NIST_P521 },
        { "rsa", TPM2_ALG_RSA, 2048 },
        { "rsa2048", TPM2_ALG_RSA, 2048 },
        { "rsa3072", TPM2_ALG_RSA, 3072 },
        { "rsa4096", TPM2_ALG_RSA, 4096 },
};

/* A configuration (from the user's cfg or from a JWE header), checked. */
struct tpm2_params {
        enum vg_hash_alg hash; /* nameAlg of the primary and the sealed object; policy hash */
        const char *hash_name;
        const struct key_spec *key;
        bool pcrs;     /* bound to a PolicyPCR */
        bool bank_set; /* pcr_bank given */
        enum vg_hash_alg bank;
        uint32_t mask;       /* PCRs selected */
        char *pcr_ids;       /* as stored in the header: "0,7" */
        uint8_t *pcr_values; /* pcr_digest: the PCR values to seal to, concatenated */
        size_t pcr_values_len;
};

static void params_clear(struct tpm2_params *p)
{
        free(p->pcr_ids);
        free(p->pcr_values);
        memset(p, 0, sizeof(*p));
}

/* ---- the TPM ------------------------------------------------------------------------------ */

struct tpm2_ctx {
        char tcti_name[256]; /* for messages */
        TSS2_TCTI_CONTEXT *tcti;
        ESYS_CONTEXT *esys;
        ESYS_TR primary;
        ESYS_TR object;
        ESYS_TR session;
};

static void esys_freep(void *p)
{
        Esys_Free(*(void **)p);
}
#define _cleanup_esys_ _cleanup_(esys_freep)

static void ctx_close(struct tpm2_ctx *c)
{
        if (c->esys) {
                /* swtpm and /dev/tpm0 have no resource manager: leave nothing loaded. */
                if (c->session != ESYS_TR_NONE)
                        Esys_FlushContext(c->esys, c->session);
                if (c->object != ESYS_TR_NONE)
                        Esys_FlushContext(c->esys, c->object);
                if (c->primary != ESYS_TR_NONE)
                        Esys_FlushContext(c->esys, c->primary);
                Esys_Finalize(&c->esys);
        }
        if (c->tcti)
                Tss2_TctiLdr_Finalize(&c->tcti);
}

static bool rc_is(TSS2_RC rc, TSS2_RC want)
{
        if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER)
                return false;
        if (rc & TPM2_RC_FMT1)
                rc = (rc & 0xbf) | TPM2_RC_FMT1; /* drop the parameter/handle/session number */
        return rc == want;
}

/* A failed command. A TCTI-layer failure means no TPM answers at the configured TCTI. */
static int tpm_fail(const struct tpm2_ctx *c, struct vg_error *err, const char *cmd, TSS2_RC rc)
{
        if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TCTI_RC_LAYER)
                return vg_error_set(err, -ENODEV, "tpm2: cannot open TCTI %s: %s: %s (0x%x)",
                                    c->tcti_name, cmd, Tss2_RC_Decode(rc), (unsigned)rc);
        if (rc_is(rc, TPM2_RC_LOCKOUT))
                return vg_error_set(err, -EBUSY,
                                    "tpm2: %s: the TPM is in dictionary-attack lockout", cmd);
        return vg_error_set(err, -EIO, "tpm2: %s failed: %s (0x%x)", cmd, Tss2_RC_Decode(rc),
                            (unsigned)rc);
}

/* opts->tcti, else $TPM2TOOLS_TCTI (what clevis's tpm2-tools read), else the TSS default. */
static int ctx_open(const struct vg_pin_opts *opts, struct tpm2_ctx *c, struct vg_error *err)
{
        const char *conf = opts ? opts->tcti : NULL;
        TSS2_RC rc;

        c->primary = c->object = c->session = ESYS_TR_NONE;
        if (!conf || !*conf)
                conf = getenv("TPM2TOOLS_TCTI");
        if (conf && !*conf)
                conf = NULL;
        snprintf(c->tcti_name, sizeof(c->tcti_name), "%s", conf ? conf : "(the TSS default)");
        rc = Tss2_TctiLdr_Initialize(conf, &c->tcti);
        if (rc != TSS2_RC_SUCCESS)
                return vg_error_set(err, -ENODEV, "tpm2: cannot open TCTI %s: %s (0x%x)",
                                    c->tcti_name, Tss2_RC_Decode(rc), (unsigned)rc);
        rc = Esys_Initialize(&c->esys, c->tcti, NULL);
        if (rc != TSS2_RC_SUCCESS)
                return vg_error_set(err, -ENODEV,
                                    "tpm2: cannot open TCTI %s: Esys_Initialize: %s (0x%x)",
                                    c->tcti_name, Tss2_RC_Decode(rc), (unsigned)rc);
        return 0;
}

/* The template of `tpm2_createprimary -C o -g HASH -G KEY` in tpm2-tools 5.4
 * (tools/tpm2_createprimary.c DEFAULT_ATTRS and DEFAULT_PRIMARY_KEY_ALG's aes128cfb,
 * lib/tpm2_alg_util.c tpm2_alg_util_public_init: everything else zero, so no authPolicy, a
 * NULL scheme, exponent 0 and an empty unique). Primary keys are a function of the hierarchy's
 * seed and this template, so clevis and vigil get the same key. */
static void primary_template(const struct tpm2_params *p, TPM2B_PUBLIC *t)
{
        TPMT_PUBLIC *a = &t->publicArea;

        memset(t, 0, sizeof(*t));
        a->type = p->key->type;
        a->nameAlg = vg_hash_tpm_alg_id(p->hash);
        a->objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_FIXEDTPM |
                              TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                              TPMA_OBJECT_USERWITHAUTH;
        if (a->type == TPM2_ALG_ECC) {
                TPMS_ECC_PARMS *e = &a->parameters.eccDetail;

                e->symmetric.algorithm = TPM2_ALG_AES;
                e->symmetric.keyBits.aes = PRIMARY_SYM_BITS;
                e->symmetric.mode.aes = TPM2_ALG_CFB;
                e->scheme.scheme = TPM2_ALG_NULL;
                e->curveID = p->key->bits_or_curve;
                e->kdf.scheme = TPM2_ALG_NULL;
        } else {
                TPMS_RSA_PARMS *r = &a->parameters.rsaDetail;

                r->symmetric.algorithm = TPM2_ALG_AES;
                r->symmetric.keyBits.aes = PRIMARY_SYM_BITS;
                r->symmetric.mode.aes = TPM2_ALG_CFB;
                r->scheme.scheme = TPM2_ALG_NULL;
                r->keyBits = p->key->bits_or_curve;
                r->exponent = 0;
        }
}

static int create_primary(struct tpm2_ctx *c, const struct tpm2_params *p, struct vg_error *err)
{
        TPM2B_SENSITIVE_CREATE sens = { 0 };
        TPM2B_DATA outside = { 0 };
        TPML_PCR_SELECTION creation_pcrs = { 0 };
        TPM2B_PUBLIC tmpl;
        TSS2_RC rc;

        primary_template(p, &tmpl);
        rc = Esys_CreatePrimary(c->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &sens, &tmpl, &outside, &creation_pcrs, &c->primary,
                                NULL, NULL, NULL, NULL);
        if (rc == TSS2_RC_SUCCESS)
                return 0;
        c->primary = ESYS_TR_NONE;
        if (rc_is(rc, TPM2_RC_FMT1 | TPM2_RC_BAD_AUTH) ||
            rc_is(rc, TPM2_RC_FMT1 | TPM2_RC_AUTH_FAIL))
                return vg_error_set(err, -EACCES,
                                    "tpm2: TPM2_CreatePrimary under the owner hierarchy: "
                                    "authorization failed (the owner hierarchy has a password; "
                                    "Clevis's tpm2 pin needs it empty)");
        return tpm_fail(c, err, "TPM2_CreatePrimary (owner hierarchy)", rc);
}

/* A session salted with the primary key, with AES-128-CFB parameter encryption in direction
 * attrs (TPMA_SESSION_DECRYPT: the command's first parameter, the data to seal;
 * TPMA_SESSION_ENCRYPT: the response's, the unsealed data), so the secret never crosses the bus
 * in clear, and the object's nameAlg as session hash, as PolicyPCR needs. */
static int start_session(struct tpm2_ctx *c, TPM2_SE type, const struct tpm2_params *p,
                         TPMA_SESSION attrs, struct vg_error *err)
{
        TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_AES,
                             .keyBits.aes = 128,
                             .mode.aes = TPM2_ALG_CFB };
        TSS2_RC rc;

        rc = Esys_StartAuthSession(c->esys, c->primary, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   ESYS_TR_NONE, NULL, type, &sym, vg_hash_tpm_alg_id(p->hash),
                                   &c->session);
        if (rc != TSS2_RC_SUCCESS) {
                c->session = ESYS_TR_NONE;
                return tpm_fail(c, err, "TPM2_StartAuthSession", rc);
        }
        rc = Esys_TRSess_SetAttributes(c->esys, c->session, attrs | TPMA_SESSION_CONTINUESESSION,
                                       0xff);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(c, err, "Esys_TRSess_SetAttributes", rc);
        return 0;
}

/* Banks with at least one PCR allocated (TPM2_GetCapability(TPM_CAP_PCRS)), as a bit mask
 * over enum vg_hash_alg, and the PCRs allocated in each. */
static int allocated_banks(struct tpm2_ctx *c, unsigned *banks, uint32_t masks[VG_HASH_ALG_COUNT],
                           struct vg_error *err)
{
        _cleanup_esys_ TPMS_CAPABILITY_DATA *cap = NULL;
        TPMI_YES_NO more = TPM2_NO;
        TSS2_RC rc;

        rc = Esys_GetCapability(c->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS, 0,
                                1, &more, &cap);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(c, err, "TPM2_GetCapability(PCRS)", rc);
        *banks = 0;
        memset(masks, 0, sizeof(uint32_t) * VG_HASH_ALG_COUNT);
        for (UINT32 i = 0; i < cap->data.assignedPCR.count && i < TPM2_NUM_PCR_BANKS; i++) {
                const TPMS_PCR_SELECTION *s = &cap->data.assignedPCR.pcrSelections[i];
                enum vg_hash_alg alg;
                uint32_t m = 0;

                if (vg_hash_alg_from_tpm_id(s->hash, &alg) < 0)
                        continue;
                for (unsigned b = 0; b < 8u * s->sizeofSelect && b < PCR_COUNT; b++)
                        if (s->pcrSelect[b / 8] & (1u << (b % 8)))
                                m |= 1u << b;
                masks[alg] = m;
                if (m)
                        *banks |= 1u << alg;
        }
        return 0;
}

static void selection_of(enum vg_hash_alg bank, uint32_t mask, TPML_PCR_SELECTION *sel)
{
        memset(sel, 0, sizeof(*sel));
        sel->count = 1;
        sel->pcrSelections[0].hash = vg_hash_tpm_alg_id(bank);
        /* tpm2-tools (lib/pcr.c) always selects with 3 octets; the size is part of the
         * PolicyPCR digest, so it must be the same here. */
        sel->pcrSelections[0].sizeofSelect = 3;
        sel->pcrSelections[0].pcrSelect[0] = (uint8_t)mask;
        sel->pcrSelections[0].pcrSelect[1] = (uint8_t)(mask >> 8);
        sel->pcrSelections[0].pcrSelect[2] = (uint8_t)(mask >> 16);
}

/* The values of the PCRs in mask, concatenated in PCR order: what `tpm2_pcrread -o` writes and
 * clevis's pcr_digest holds. TPML_DIGEST carries at most 8 values, so it may take several
 * reads (TPM 2.0 Part 3, 22.4). */
static int read_pcrs(struct tpm2_ctx *c, enum vg_hash_alg bank, uint32_t mask, uint8_t *out,
                     struct vg_error *err)
{
        size_t dsize = vg_hash_size(bank);
        uint32_t left = mask;

        while (left) {
                _cleanup_esys_ TPML_PCR_SELECTION *got = NULL;
                _cleanup_esys_ TPML_DIGEST *vals = NULL;
                TPML_PCR_SELECTION sel;
                uint32_t covered = 0;
                UINT32 k = 0;
                TSS2_RC rc;

                selection_of(bank, left, &sel);
                rc = Esys_PCR_Read(c->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL,
                                   &got, &vals);
                if (rc != TSS2_RC_SUCCESS)
                        return tpm_fail(c, err, "TPM2_PCR_Read", rc);
                for (UINT32 i = 0; i < got->count; i++) {
                        const TPMS_PCR_SELECTION *s = &got->pcrSelections[i];

                        if (s->hash != vg_hash_tpm_alg_id(bank))
                                continue;
                        for (unsigned b = 0; b < 8u * s->sizeofSelect && b < PCR_COUNT; b++)
                                if (s->pcrSelect[b / 8] & (1u << (b % 8)))
                                        covered |= 1u << b;
                }
                covered &= left;
                if (!covered)
                        return vg_error_set(err, -EIO,
                                            "tpm2: TPM2_PCR_Read of the %s bank returned "
                                            "no PCR",
                                            vg_hash_alg_name(bank));
                for (unsigned pcr = 0; pcr < PCR_COUNT; pcr++) {
                        if (!(covered & (1u << pcr)))
                                continue;
                        if (k >= vals->count || vals->digests[k].size != dsize)
                                return vg_error_set(err, -EIO,
                                                    "tpm2: TPM2_PCR_Read: PCR %u (%s): missing "
                                                    "or wrong-size value",
                                                    pcr, vg_hash_alg_name(bank));
                        /* out holds the values in PCR order: skip the ones before pcr. */
                        size_t idx = (size_t)__builtin_popcount(mask & ((1u << pcr) - 1));

                        memcpy(out + idx * dsize, vals->digests[k].buffer, dsize);
                        k++;
                }
                left &= ~covered;
        }
        return 0;
}

/* TPM 2.0 Part 3, 23.7 (TPM2_PolicyPCR) from a fresh session: policyDigest =
 * H(0...0 || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || H(values)), H the policy hash; what
 * `tpm2_createpolicy -g HASH --policy-pcr -l BANK:IDS -f FILE` computes (lib/tpm2_policy.c). */
static int policy_pcr_digest(const struct tpm2_params *p, const uint8_t *values, size_t values_len,
                             TPM2B_DIGEST *out, struct vg_error *err)
{
        size_t hsize = vg_hash_size(p->hash);
        uint8_t buf[2 * VG_HASH_MAX_SIZE + 4 + sizeof(TPML_PCR_SELECTION)];
        uint8_t pcr_digest[VG_HASH_MAX_SIZE];
        TPML_PCR_SELECTION sel;
        size_t off = 0;
        TSS2_RC rc;

        selection_of(p->bank, p->mask, &sel);
        if (vg_hash(p->hash, values, values_len, pcr_digest) < 0)
                return vg_error_set(err, -EIO, "tpm2: hashing the PCR values failed");
        memset(buf, 0, hsize);
        off = hsize;
        rc = Tss2_MU_TPM2_CC_Marshal(TPM2_CC_PolicyPCR, buf, sizeof(buf), &off);
        if (rc == TSS2_RC_SUCCESS)
                rc = Tss2_MU_TPML_PCR_SELECTION_Marshal(&sel, buf, sizeof(buf), &off);
        if (rc != TSS2_RC_SUCCESS || off + hsize > sizeof(buf))
                return vg_error_set(err, -EIO, "tpm2: marshalling the PolicyPCR input failed");
        memcpy(buf + off, pcr_digest, hsize);
        off += hsize;
        out->size = (UINT16)hsize;
        if (vg_hash(p->hash, buf, off, out->buffer) < 0)
                return vg_error_set(err, -EIO, "tpm2: hashing the policy failed");
        return 0;
}

/* ---- configuration ------------------------------------------------------------------------- */

static int parse_hash(const char *where, const char *s, enum vg_hash_alg *out, struct vg_error *err)
{
        static const char *const names[] = { "sha1", "sha256", "sha384", "sha512" };

        for (size_t i = 0; i < VG_ARRAY_SIZE(names); i++)
                if (strcmp(s, names[i]) == 0)
                        return vg_hash_alg_from_name(s, out) < 0 ? -EINVAL : 0;
        return vg_error_set(err, -EINVAL, "%s \"%.32s\": expected sha1, sha256, sha384 or sha512",
                            where, s);
}

static int parse_key(const char *where, const char *s, const struct key_spec **out,
                     struct vg_error *err)
{
        for (size_t i = 0; i < VG_ARRAY_SIZE(key_specs); i++)
                if (strcmp(s, key_specs[i].name) == 0) {
                        *out = &key_specs[i];
                        return 0;
                }
        return vg_error_set(err, -EINVAL,
                            "%s \"%.32s\": expected ecc or rsa (or ecc256, ecc384, ecc521, "
                            "rsa2048, rsa3072, rsa4096)",
                            where, s);
}

/* "0,7": decimal PCR numbers 0..23 separated by commas, as tpm2-tools takes them after
 * clevis has removed white space. Sets *mask; an empty list gives 0. */
static int parse_pcr_list(const char *where, const char *s, uint32_t *mask, struct vg_error *err)
{
        const char *q = s;

        *mask = 0;
        if (!*s)
                return 0;
        for (;;) {
                unsigned v = 0;
                size_t digits = 0;

                while (q[digits] >= '0' && q[digits] <= '9' && digits < 3)
                        v = v * 10 + (unsigned)(q[digits++] - '0');
                if (!digits || v >= PCR_COUNT || (q[digits] && q[digits] != ','))
                        return vg_error_set(err, -EINVAL,
                                            "%s \"%.64s\": expected PCR numbers 0..23 separated "
                                            "by commas, like \"0,7\"",
                                            where, s);
                *mask |= 1u << v;
                q += digits;
                if (!*q)
                        return 0;
                q++;
        }
}

/* pcr_ids as clevis-encrypt-tpm2 accepts it: a string "0,7" (white space removed) or an array
 * of numbers or numeric strings, stored as the string of its items joined by commas. */
static int cfg_pcr_ids(const json_t *v, struct tpm2_params *p, struct vg_error *err)
{
        char buf[256] = "";
        size_t len = 0;

        if (json_is_string(v)) {
                for (const char *s = json_string_value(v); *s && len < sizeof(buf) - 1; s++)
                        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
                                buf[len++] = *s;
                if (json_string_length(v) >= sizeof(buf) - 1)
                        return vg_error_set(err, -EINVAL, "tpm2 config: pcr_ids: too long");
        } else if (json_is_array(v)) {
                size_t i;
                json_t *item;

                json_array_foreach (v, i, item) {
                        char one[32];

                        if (json_is_integer(item) && json_integer_value(item) >= 0 &&
                            json_integer_value(item) < PCR_COUNT)
                                snprintf(one, sizeof(one), "%lld",
                                         (long long)json_integer_value(item));
                        else if (json_is_string(item) && json_string_length(item) < 8)
                                snprintf(one, sizeof(one), "%s", json_string_value(item));
                        else
                                return vg_error_set(err, -EINVAL,
                                                    "tpm2 config: pcr_ids[%zu]: expected a PCR "
                                                    "number 0..23",
                                                    i);
                        if (len + strlen(one) + 2 > sizeof(buf))
                                return vg_error_set(err, -EINVAL, "tpm2 config: pcr_ids: too long");
                        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
                                                len ? "," : "", one);
                }
        } else {
                return vg_error_set(err, -EINVAL,
                                    "tpm2 config: pcr_ids: expected a string like \"0,7\" or an "
                                    "array of PCR numbers");
        }
        buf[len] = '\0';
        if (parse_pcr_list("tpm2 config: pcr_ids", buf, &p->mask, err) < 0)
                return -EINVAL;
        p->pcrs = p->mask != 0;
        if (p->pcrs && !(p->pcr_ids = strdup(buf)))
                return vg_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

/* The user's configuration, as clevis encrypt tpm2 CFG takes it. */
static int parse_cfg(const json_t *cfg, struct tpm2_params *p, struct vg_error *err)
{
        const char *k;
        json_t *v;
        int r;

        p->hash = VG_HASH_SHA256;
        p->hash_name = "sha256";
        p->key = &key_specs[0];
        if (!cfg)
                return 0;
        if (!json_is_object(cfg))
                return vg_error_set(err, -EINVAL, "tpm2 config: expected a JSON object");
        json_object_foreach ((json_t *)cfg, k, v) {
                bool known = false;

                for (size_t i = 0; i < VG_ARRAY_SIZE(cfg_keys); i++)
                        known = known || strcmp(k, cfg_keys[i]) == 0;
                if (!known)
                        return vg_error_set(err, -EINVAL,
                                            "tpm2 config: unknown key \"%.64s\" (expected hash, "
                                            "key, pcr_bank, pcr_ids, pcr_digest)",
                                            k);
                if (strcmp(k, "pcr_ids") != 0 && !json_is_string(v))
                        return vg_error_set(err, -EINVAL, "tpm2 config: %s: expected a string", k);
        }
        if ((v = json_object_get(cfg, "hash"))) {
                r = parse_hash("tpm2 config: hash", json_string_value(v), &p->hash, err);
                if (r < 0)
                        return r;
                p->hash_name = json_string_value(v);
        }
        if ((v = json_object_get(cfg, "key")) &&
            (r = parse_key("tpm2 config: key", json_string_value(v), &p->key, err)) < 0)
                return r;
        if ((v = json_object_get(cfg, "pcr_bank"))) {
                r = parse_hash("tpm2 config: pcr_bank", json_string_value(v), &p->bank, err);
                if (r < 0)
                        return r;
                p->bank_set = true;
        }
        if ((v = json_object_get(cfg, "pcr_ids")) && (r = cfg_pcr_ids(v, p, err)) < 0)
                return r;
        if ((v = json_object_get(cfg, "pcr_digest"))) {
                const char *s = json_string_value(v);
                size_t n = strlen(s);

                if (!p->pcrs)
                        return vg_error_set(err, -EINVAL,
                                            "tpm2 config: pcr_digest needs pcr_ids (the PCRs "
                                            "whose values it holds)");
                /* clevis decodes it with `jose b64 dec` (base64url); take standard too. */
                while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
                        n--;
                if (vg_b64_decode(s, n, VG_B64_URL, &p->pcr_values, &p->pcr_values_len) < 0 &&
                    vg_b64_decode(s, n, VG_B64_STD, &p->pcr_values, &p->pcr_values_len) < 0)
                        return vg_error_set(err, -EINVAL, "tpm2 config: pcr_digest: not base64");
        }
        return 0;
}

/* ---- encrypt --------------------------------------------------------------------------------- */

static int b64_member(json_t *obj, const char *name, const uint8_t *data, size_t len,
                      struct vg_error *err)
{
        _cleanup_free_ char *s = vg_b64_encode(data, len, VG_B64_URL);

        if (!s || json_object_set_new(obj, name, json_string(s)) < 0)
                return vg_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

/* The JWK clevis seals: `jose jwk gen -i '{"alg":"A256GCM"}'` printed with a newline (bash's
 * <<<), 111 bytes. */
static int make_jwk(const uint8_t cek[VG_JWE_CEK_LEN], char **out, struct vg_error *err)
{
        _cleanup_free_ char *k = vg_b64_encode(cek, VG_JWE_CEK_LEN, VG_B64_URL);
        json_t *jwk;
        char *s;

        if (!k)
                return vg_error_set(err, -ENOMEM, "out of memory");
        jwk = json_pack("{s:s,s:s,s:[s,s],s:s}", "alg", "A256GCM", "k", k, "key_ops", "encrypt",
                        "decrypt", "kty", "oct");
        OPENSSL_cleanse(k, strlen(k));
        if (!jwk)
                return vg_error_set(err, -ENOMEM, "out of memory");
        s = json_dumps(jwk, JSON_SORT_KEYS | JSON_COMPACT);
        json_decref(jwk); /* the string k inside is jansson's copy; freed unzeroed */
        if (!s)
                return vg_error_set(err, -ENOMEM, "out of memory");
        *out = s;
        return 0;
}

/* Choose the bank, check the PCRs exist, and compute the policy to seal to. */
static int seal_policy(struct tpm2_ctx *c, struct tpm2_params *p, TPM2B_DIGEST *policy,
                       struct vg_error *err)
{
        uint32_t masks[VG_HASH_ALG_COUNT];
        _cleanup_free_ uint8_t *values = NULL;
        size_t dsize, n;
        unsigned banks = 0;
        int r;

        r = allocated_banks(c, &banks, masks, err);
        if (r < 0)
                return r;
        if (!p->bank_set) {
                /* sha256 when the TPM has it, else the first bank with PCRs (clevis 19 says
                 * sha1; later clevis the first allocated bank). */
                if (banks & (1u << VG_HASH_SHA256))
                        p->bank = VG_HASH_SHA256;
                else if (banks)
                        p->bank = (enum vg_hash_alg)__builtin_ctz(banks);
                else
                        return vg_error_set(err, -EOPNOTSUPP,
                                            "tpm2: the TPM has no PCR bank vigil can use "
                                            "(sha1, sha256, sha384, sha512)");
        }
        if ((p->mask & masks[p->bank]) != p->mask) {
                char have[64] = "";
                size_t len = 0;

                for (unsigned a = 0; a < VG_HASH_ALG_COUNT; a++)
                        if (banks & (1u << a))
                                len += (size_t)snprintf(have + len, sizeof(have) - len, "%s%s",
                                                        len ? ", " : "",
                                                        vg_hash_alg_name((enum vg_hash_alg)a));
                return vg_error_set(err, -EOPNOTSUPP,
                                    "tpm2: PCR bank %s: PCRs %s are not allocated on this TPM "
                                    "(banks with PCRs: %s)",
                                    vg_hash_alg_name(p->bank), p->pcr_ids, len ? have : "none");
        }
        dsize = vg_hash_size(p->bank);
        n = (size_t)__builtin_popcount(p->mask) * dsize;
        if (p->pcr_values) {
                if (p->pcr_values_len != n)
                        return vg_error_set(err, -EINVAL,
                                            "tpm2 config: pcr_digest: %zu bytes, expected %zu "
                                            "(the %d values of PCRs %s in the %s bank, "
                                            "concatenated)",
                                            p->pcr_values_len, n, __builtin_popcount(p->mask),
                                            p->pcr_ids, vg_hash_alg_name(p->bank));
                return policy_pcr_digest(p, p->pcr_values, n, policy, err);
        }
        values = malloc(n);
        if (!values)
                return vg_error_set(err, -ENOMEM, "out of memory");
        r = read_pcrs(c, p->bank, p->mask, values, err);
        if (r < 0)
                return r;
        return policy_pcr_digest(p, values, n, policy, err);
}

int vg_pin_tpm2_encrypt(const json_t *cfg, const void *pt, size_t pt_len,
                        const struct vg_pin_opts *opts, char **jwe, struct vg_error *err)
{
        _cleanup_(params_clear) struct tpm2_params p = { 0 };
        _cleanup_(ctx_close) struct tpm2_ctx c = { 0 };
        _cleanup_esys_ TPM2B_PRIVATE *priv = NULL;
        _cleanup_esys_ TPM2B_PUBLIC *pub = NULL;
        _cleanup_(json_decrefp) json_t *hdr = NULL;
        TPM2B_SENSITIVE_CREATE sens = { 0 };
        TPM2B_DATA outside = { 0 };
        TPML_PCR_SELECTION creation_pcrs = { 0 };
        TPM2B_PUBLIC tmpl = { 0 };
        TPM2B_DIGEST policy = { 0 };
        uint8_t cek[VG_JWE_CEK_LEN];
        uint8_t pub_buf[sizeof(TPM2B_PUBLIC)], priv_buf[sizeof(TPM2B_PRIVATE)];
        size_t pub_len = 0, priv_len = 0;
        struct vg_jwe out = { 0 };
        json_t *t;
        char *jwk = NULL;
        size_t jwk_len;
        TSS2_RC rc;
        int r;

        r = parse_cfg(cfg, &p, err);
        if (r < 0)
                return r;
        r = ctx_open(opts, &c, err);
        if (r < 0)
                return r;
        if (p.pcrs && (r = seal_policy(&c, &p, &policy, err)) < 0)
                return r;
        r = create_primary(&c, &p, err);
        if (r < 0)
                return r;

        /* clevis-encrypt-tpm2: keyedhash, fixedtpm|fixedparent|noda|adminwithpolicy, plus
         * userwithauth when no PCR policy guards it; tpm2_create's keyedhash has a NULL
         * scheme. */
        tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
        tmpl.publicArea.nameAlg = vg_hash_tpm_alg_id(p.hash);
        tmpl.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                           TPMA_OBJECT_NODA | TPMA_OBJECT_ADMINWITHPOLICY;
        if (!p.pcrs)
                tmpl.publicArea.objectAttributes |= TPMA_OBJECT_USERWITHAUTH;
        tmpl.publicArea.authPolicy = policy;
        tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;

        if (RAND_bytes(cek, sizeof(cek)) != 1)
                return vg_error_set(err, -EIO, "tpm2: no random bytes for the key");
        r = make_jwk(cek, &jwk, err);
        if (r < 0)
                goto out;
        jwk_len = strlen(jwk);
        if (jwk_len + 1 > SEAL_MAX || jwk_len + 1 > sizeof(sens.sensitive.data.buffer)) {
                r = vg_error_set(err, -EOVERFLOW, "tpm2: the JWK to seal is too long");
                goto out;
        }
        memcpy(sens.sensitive.data.buffer, jwk, jwk_len);
        sens.sensitive.data.buffer[jwk_len] = '\n';
        sens.sensitive.data.size = (UINT16)(jwk_len + 1);

        r = start_session(&c, TPM2_SE_HMAC, &p, TPMA_SESSION_DECRYPT, err);
        if (r < 0)
                goto out;
        rc = Esys_Create(c.esys, c.primary, c.session, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
                         &outside, &creation_pcrs, &priv, &pub, NULL, NULL, NULL);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(&c, err, "TPM2_Create (the sealed key)", rc);
                goto out;
        }
        rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, pub_buf, sizeof(pub_buf), &pub_len);
        if (rc == TSS2_RC_SUCCESS)
                rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, priv_buf, sizeof(priv_buf), &priv_len);
        if (rc != TSS2_RC_SUCCESS) {
                r = vg_error_set(err, -EIO, "tpm2: marshalling the sealed key: %s",
                                 Tss2_RC_Decode(rc));
                goto out;
        }

        /* The header clevis writes: hash, key, [pcr_bank, pcr_ids,] jwk_pub, jwk_priv. */
        hdr = json_pack("{s:s,s:{s:s,s:{s:s,s:s}}}", "alg", "dir", "clevis", "pin", "tpm2", "tpm2",
                        "hash", p.hash_name, "key", p.key->name);
        if (!hdr) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        t = json_object_get(json_object_get(hdr, "clevis"), "tpm2");
        if (p.pcrs &&
            (json_object_set_new(t, "pcr_bank", json_string(vg_hash_alg_name(p.bank))) < 0 ||
             json_object_set_new(t, "pcr_ids", json_string(p.pcr_ids)) < 0)) {
                r = vg_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        if ((r = b64_member(t, "jwk_pub", pub_buf, pub_len, err)) < 0 ||
            (r = b64_member(t, "jwk_priv", priv_buf, priv_len, err)) < 0)
                goto out;
        r = vg_jwe_seal(hdr, cek, pt, pt_len, &out, err);
        if (r < 0)
                goto out;
        *jwe = vg_jwe_compact(&out);
        vg_jwe_clear(&out);
        r = *jwe ? 0 : vg_error_set(err, -ENOMEM, "out of memory");
out:
        OPENSSL_cleanse(cek, sizeof(cek));
        OPENSSL_cleanse(&sens, sizeof(sens));
        if (jwk) {
                OPENSSL_cleanse(jwk, strlen(jwk));
                free(jwk);
        }
        return r;
}

/* ---- decrypt --------------------------------------------------------------------------------- */

static const char *hdr_string(const json_t *t, const char *name, bool required, int *r,
                              struct vg_error *err)
{
        json_t *v = json_object_get(t, name);

        if (!v && !required)
                return NULL;
        if (!json_is_string(v)) {
                *r = vg_error_set(err, -EINVAL, "JWE clevis.tpm2.%s: %s", name,
                                  v ? "not a string" : "missing");
                return NULL;
        }
        return json_string_value(v);
}

/* The pin's parameters from the header's clevis.tpm2 object. */
static int parse_header(const json_t *t, struct tpm2_params *p, TPM2B_PUBLIC *pub,
                        TPM2B_PRIVATE *priv, struct vg_error *err)
{
        const char *hash, *key, *pub_s, *priv_s, *bank = NULL, *ids;
        _cleanup_free_ uint8_t *raw = NULL;
        size_t raw_len = 0, off = 0;
        TSS2_RC rc;
        int r = 0;

        if (!json_is_object(t))
                return vg_error_set(err, -EINVAL, "JWE clevis.tpm2: missing or not an object");
        if (!(hash = hdr_string(t, "hash", true, &r, err)) ||
            !(key = hdr_string(t, "key", true, &r, err)) ||
            !(pub_s = hdr_string(t, "jwk_pub", true, &r, err)) ||
            !(priv_s = hdr_string(t, "jwk_priv", true, &r, err)))
                return r;
        ids = hdr_string(t, "pcr_ids", false, &r, err);
        if (r < 0)
                return r;
        if ((r = parse_hash("JWE clevis.tpm2.hash", hash, &p->hash, err)) < 0 ||
            (r = parse_key("JWE clevis.tpm2.key", key, &p->key, err)) < 0)
                return r;
        p->hash_name = hash;
        if (ids && *ids) {
                if (!(bank = hdr_string(t, "pcr_bank", true, &r, err)))
                        return r;
                if ((r = parse_hash("JWE clevis.tpm2.pcr_bank", bank, &p->bank, err)) < 0 ||
                    (r = parse_pcr_list("JWE clevis.tpm2.pcr_ids", ids, &p->mask, err)) < 0)
                        return r;
                p->pcrs = p->bank_set = true;
                if (!(p->pcr_ids = strdup(ids)))
                        return vg_error_set(err, -ENOMEM, "out of memory");
        }

        if (vg_b64_decode(pub_s, strlen(pub_s), VG_B64_URL, &raw, &raw_len) < 0)
                return vg_error_set(err, -EINVAL, "JWE clevis.tpm2.jwk_pub: not base64url");
        rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(raw, raw_len, &off, pub);
        if (rc != TSS2_RC_SUCCESS || off != raw_len)
                return vg_error_set(err, -EINVAL,
                                    "JWE clevis.tpm2.jwk_pub: not a TPM2B_PUBLIC (%zu bytes%s)",
                                    raw_len, rc == TSS2_RC_SUCCESS ? ", trailing bytes" : "");
        if (pub->publicArea.type != TPM2_ALG_KEYEDHASH)
                return vg_error_set(err, -EINVAL,
                                    "JWE clevis.tpm2.jwk_pub: not a sealed data object (type "
                                    "0x%04x, expected keyedhash 0x0008)",
                                    pub->publicArea.type);
        free(TAKE_PTR(raw));
        off = 0;
        if (vg_b64_decode(priv_s, strlen(priv_s), VG_B64_URL, &raw, &raw_len) < 0)
                return vg_error_set(err, -EINVAL, "JWE clevis.tpm2.jwk_priv: not base64url");
        rc = Tss2_MU_TPM2B_PRIVATE_Unmarshal(raw, raw_len, &off, priv);
        if (rc != TSS2_RC_SUCCESS || off != raw_len || priv->size == 0)
                return vg_error_set(
                    err, -EINVAL, "JWE clevis.tpm2.jwk_priv: not a TPM2B_PRIVATE (%zu bytes%s)",
                    raw_len, rc == TSS2_RC_SUCCESS && off != raw_len ? ", trailing bytes" : "");
        return 0;
}

/* "PCR 7 (sha256) changed", "one of PCRs 0,7 (sha256) changed". */
static int policy_mismatch(const struct tpm2_params *p, struct vg_error *err)
{
        bool one = __builtin_popcount(p->mask) == 1;

        return vg_error_set(err, -EACCES,
                            "tpm2: the PCR policy does not match: %s %s (%s) changed since the key "
                            "was sealed",
                            one ? "PCR" : "one of PCRs", p->pcr_ids, vg_hash_alg_name(p->bank));
}

/* The CEK from the unsealed JWK text (trailing white space allowed, as bash's $(...) strips
 * it). */
static int cek_of_jwk(const uint8_t *data, size_t len, uint8_t cek[VG_JWE_CEK_LEN],
                      struct vg_error *err)
{
        _cleanup_(json_decrefp) json_t *jwk = NULL;
        _cleanup_free_ uint8_t *k = NULL;
        const char *ks, *kty;
        size_t k_len = 0;

        while (len && (data[len - 1] == '\n' || data[len - 1] == ' ' || data[len - 1] == '\r'))
                len--;
        jwk = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(jwk))
                return vg_error_set(err, -EBADMSG, "tpm2: the unsealed data is not a JWK");
        kty = json_string_value(json_object_get(jwk, "kty"));
        ks = json_string_value(json_object_get(jwk, "k"));
        if (!kty || strcmp(kty, "oct") != 0 || !ks)
                return vg_error_set(err, -EBADMSG,
                                    "tpm2: the unsealed JWK is not a symmetric key (kty oct, k)");
        if (vg_b64_decode(ks, strlen(ks), VG_B64_URL, &k, &k_len) < 0 || k_len != VG_JWE_CEK_LEN) {
                if (k)
                        OPENSSL_cleanse(k, k_len);
                return vg_error_set(err, -EBADMSG,
                                    "tpm2: the unsealed JWK's k is not a 256-bit key");
        }
        memcpy(cek, k, VG_JWE_CEK_LEN);
        OPENSSL_cleanse(k, k_len);
        return 0;
}

int vg_pin_tpm2_decrypt(const struct vg_jwe *jwe, const struct vg_pin_opts *opts, uint8_t **pt,
                        size_t *pt_len, struct vg_error *err)
{
        _cleanup_(params_clear) struct tpm2_params p = { 0 };
        _cleanup_(ctx_close) struct tpm2_ctx c = { 0 };
        _cleanup_esys_ TPM2B_SENSITIVE_DATA *data = NULL;
        TPM2B_PUBLIC pub = { 0 };
        TPM2B_PRIVATE priv = { 0 };
        uint8_t cek[VG_JWE_CEK_LEN];
        const char *alg;
        TSS2_RC rc;
        int r;

        alg = json_string_value(json_object_get(jwe->header, "alg"));
        if (!alg || strcmp(alg, "dir") != 0)
                return vg_error_set(
                    err, -EINVAL, "JWE protected header: alg \"%.32s\", the tpm2 pin uses \"dir\"",
                    alg ? alg : "(none)");
        r = parse_header(json_object_get(json_object_get(jwe->header, "clevis"), "tpm2"), &p, &pub,
                         &priv, err);
        if (r < 0)
                return r;
        r = ctx_open(opts, &c, err);
        if (r < 0)
                return r;
        r = create_primary(&c, &p, err);
        if (r < 0)
                return r;
        rc = Esys_Load(c.esys, c.primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub,
                       &c.object);
        if (rc != TSS2_RC_SUCCESS) {
                c.object = ESYS_TR_NONE;
                /* A parameter the TPM cannot parse (not an integrity failure) is a malformed
                 * blob: TPM2_Load's parameter 1 is inPrivate, 2 is inPublic. */
                if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER && (rc & TPM2_RC_FMT1) &&
                    (rc & TPM2_RC_P) && !rc_is(rc, TPM2_RC_FMT1 | TPM2_RC_INTEGRITY) &&
                    ((rc >> 8) & 0xf) <= 2)
                        return vg_error_set(err, -EINVAL,
                                            "JWE clevis.tpm2.%s: malformed, the TPM refuses it "
                                            "(TPM2_Load: %s, 0x%x)",
                                            ((rc >> 8) & 0xf) == 1 ? "jwk_priv" : "jwk_pub",
                                            Tss2_RC_Decode(rc), (unsigned)rc);
                if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER)
                        return vg_error_set(err, -ENOKEY,
                                            "tpm2: the sealed key does not load under this TPM's "
                                            "%s owner primary key (sealed by another TPM, or the "
                                            "owner hierarchy was cleared since): TPM2_Load: %s "
                                            "(0x%x)",
                                            p.key->name, Tss2_RC_Decode(rc), (unsigned)rc);
                return tpm_fail(&c, err, "TPM2_Load", rc);
        }

        if (p.pcrs) {
                TPML_PCR_SELECTION sel;
                TPM2B_DIGEST empty = { 0 };

                r = start_session(&c, TPM2_SE_POLICY, &p, TPMA_SESSION_ENCRYPT, err);
                if (r < 0)
                        return r;
                /* An empty pcrDigest: the TPM takes the PCRs' current values (Part 3, 23.7);
                 * a mismatch shows as a policy failure at Unseal. */
                selection_of(p.bank, p.mask, &sel);
                rc = Esys_PolicyPCR(c.esys, c.session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                    &empty, &sel);
                if (rc != TSS2_RC_SUCCESS)
                        return tpm_fail(&c, err, "TPM2_PolicyPCR", rc);
        } else {
                r = start_session(&c, TPM2_SE_HMAC, &p, TPMA_SESSION_ENCRYPT, err);
                if (r < 0)
                        return r;
        }
        rc = Esys_Unseal(c.esys, c.object, c.session, ESYS_TR_NONE, ESYS_TR_NONE, &data);
        if (rc != TSS2_RC_SUCCESS) {
                if (p.pcrs && (rc_is(rc, TPM2_RC_FMT1 | TPM2_RC_POLICY_FAIL) ||
                               rc_is(rc, TPM2_RC_FMT1 | TPM2_RC_VALUE)))
                        return policy_mismatch(&p, err);
                if (rc_is(rc, TPM2_RC_FMT1 | TPM2_RC_POLICY_FAIL) ||
                    rc_is(rc, TPM2_RC_FMT1 | TPM2_RC_AUTH_UNAVAILABLE) ||
                    rc_is(rc, TPM2_RC_AUTH_UNAVAILABLE))
                        return vg_error_set(err, -EACCES,
                                            "tpm2: TPM2_Unseal refused: the sealed key has a "
                                            "policy but the JWE names no PCRs (%s, 0x%x)",
                                            Tss2_RC_Decode(rc), (unsigned)rc);
                return tpm_fail(&c, err, "TPM2_Unseal", rc);
        }
        r = cek_of_jwk(data->buffer, data->size, cek, err);
        OPENSSL_cleanse(data->buffer, data->size);
        if (r < 0)
                return r;
        r = vg_jwe_open(jwe, cek, pt, pt_len, err);
        OPENSSL_cleanse(cek, sizeof(cek));
        return r;
}

int vg_pin_tpm2_config(const json_t *clevis_tpm2, json_t **cfg, struct vg_error *err)
{
        json_t *out;

        if (!json_is_object(clevis_tpm2))
                return vg_error_set(err, -EINVAL, "JWE clevis.tpm2: missing or not an object");
        out = json_object();
        if (!out)
                return vg_error_set(err, -ENOMEM, "out of memory");
        /* clevis luks list prints the string members among these, in this order. */
        for (size_t i = 0; i < VG_ARRAY_SIZE(cfg_keys); i++) {
                json_t *v = json_object_get(clevis_tpm2, cfg_keys[i]);

                if (json_is_string(v) && json_object_set(out, cfg_keys[i], v) < 0) {
                        json_decref(out);
                        return vg_error_set(err, -ENOMEM, "out of memory");
                }
        }
        *cfg = out;
        return 0;
}
