/* vigil: Keylime quote strings parsed from untrusted bytes and verified against an AK: the
 * verifier's checkquote and check_quote_timing, plus the PCR16 and tpm_policy checks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include "buf.h"
#include "encoding.h"
#include "quote.h"
#include "tpm_public.h"

#define GENERATED_VALUE  0xff544347u /* TPM_GENERATED_VALUE, Part 2 §6.2 */
#define ST_ATTEST_QUOTE  0x8018
#define ALG_RSASSA       0x0014
#define ALG_RSAPSS       0x0016
#define ALG_ECDSA        0x0018
#define BLOB_SELECTIONS  16 /* TPML_PCR_SELECTION.pcrSelections[TPM2_NUM_PCR_BANKS] */
#define BLOB_SEL_SIZE    8  /* sizeof(TPMS_PCR_SELECTION) with padding */
#define BLOB_DIGESTS     8  /* TPML_DIGEST.digests[8] */
#define BLOB_DIGEST_SIZE 66 /* sizeof(TPM2B_DIGEST) */
#define BLOB_LIST_SIZE   (4 + BLOB_DIGESTS * BLOB_DIGEST_SIZE)
#define BLOB_SEL_LIST    (4 + BLOB_SELECTIONS * BLOB_SEL_SIZE)

VG_DEFINE_CLEANUP_FUNC(ECDSA_SIG, ECDSA_SIG_free)

const char *vg_quote_status_str(enum vg_quote_status st)
{
        static const char *const names[] = {
                [VG_QUOTE_OK] = "ok",
                [VG_QUOTE_MALFORMED] = "malformed quote",
                [VG_QUOTE_SIG_ALG_REFUSED] = "signature scheme not accepted",
                [VG_QUOTE_HASH_ALG_MISMATCH] = "hash algorithm mismatch",
                [VG_QUOTE_KEY_MISMATCH] = "signature scheme does not fit the AK",
                [VG_QUOTE_BAD_SIGNATURE] = "bad signature",
                [VG_QUOTE_NONCE_MISMATCH] = "nonce mismatch",
                [VG_QUOTE_SELECTION_MISMATCH] = "PCR selection mismatch",
                [VG_QUOTE_PCR_DIGEST_MISMATCH] = "PCR digest mismatch",
                [VG_QUOTE_CLOCK_UNSAFE] = "TPM clock not safe",
                [VG_QUOTE_RESET_DECREASED] = "TPM resetCount decreased",
                [VG_QUOTE_RESTART_DECREASED] = "TPM restartCount decreased",
                [VG_QUOTE_CLOCK_STALLED] = "TPM clock did not advance",
                [VG_QUOTE_PCR_MISSING] = "PCR not quoted",
                [VG_QUOTE_PCR16_MISMATCH] = "PCR16 does not bind the NK",
                [VG_QUOTE_POLICY_MISMATCH] = "PCR differs from tpm_policy",
        };

        if ((unsigned)st >= VG_ARRAY_SIZE(names) || !names[st])
                return "unknown";
        return names[st];
}

static int fail(enum vg_quote_status *status, enum vg_quote_status st, int code,
                struct vg_error *err, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fail(enum vg_quote_status *status, enum vg_quote_status st, int code,
                struct vg_error *err, const char *fmt, ...)
{
        va_list ap;

        if (status)
                *status = st;
        va_start(ap, fmt);
        code = vg_error_setv(err, code, fmt, ap);
        va_end(ap);
        return code;
}

void vg_quote_free(struct vg_quote *q)
{
        if (!q)
                return;
        free(q->attest_raw);
        free(q);
}

/* "sha256 PCRs 10, 16" for messages. */
static void describe_selection(const struct vg_pcr_selection *sel, char *buf, size_t size)
{
        size_t off = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < sel->count && off < size; i++) {
                const char *sep = "";
                int n = snprintf(buf + off, size - off, "%s%s PCRs ", i ? "; " : "",
                                 vg_hash_alg_name(sel->bank[i].alg));

                if (n < 0 || (size_t)n >= size - off)
                        return;
                off += (size_t)n;
                if (!sel->bank[i].mask)
                        n = snprintf(buf + off, size - off, "none");
                for (unsigned p = 0; p < 32; p++) {
                        if (!(sel->bank[i].mask & (1u << p)))
                                continue;
                        n = snprintf(buf + off, size - off, "%s%u", sep, p);
                        if (n < 0 || (size_t)n >= size - off)
                                return;
                        off += (size_t)n;
                        sep = ", ";
                }
        }
}

/* Add one bank to a selection, refusing unknown hashes, duplicates and PCRs above 23. */
static int add_bank(struct vg_pcr_selection *sel, uint16_t hash, uint8_t size_of_select,
                    const uint8_t *select, const char *where, struct vg_error *err)
{
        struct vg_pcr_bank_sel *b;
        enum vg_hash_alg alg;
        uint32_t mask = 0;

        if (vg_hash_alg_from_tpm_id(hash, &alg) < 0)
                return vg_error_set(err, -EBADMSG, "%s: PCR bank 0x%04x is not a known hash", where,
                                    hash);
        if (size_of_select < 1 || size_of_select > 4)
                return vg_error_set(err, -EBADMSG, "%s: sizeofSelect %u, expected 1 to 4", where,
                                    size_of_select);
        for (unsigned i = 0; i < size_of_select; i++)
                mask |= (uint32_t)select[i] << (8 * i);
        if (mask >> VG_PCR_MAX)
                return vg_error_set(err, -EBADMSG, "%s: PCR above %u selected", where,
                                    VG_PCR_MAX - 1);
        for (unsigned i = 0; i < sel->count; i++)
                if (sel->bank[i].alg == alg)
                        return vg_error_set(err, -EBADMSG, "%s: bank %s selected twice", where,
                                            vg_hash_alg_name(alg));
        if (sel->count >= VG_HASH_ALG_COUNT)
                return vg_error_set(err, -EBADMSG, "%s: too many banks", where);
        b = &sel->bank[sel->count++];
        b->alg = alg;
        b->size_of_select = size_of_select;
        b->mask = mask;
        return 0;
}

static bool u64be(struct vg_buf *b, uint64_t *v)
{
        struct vg_buf save = *b;
        uint32_t hi, lo;

        if (!vg_buf_u32be(b, &hi) || !vg_buf_u32be(b, &lo)) {
                *b = save;
                return false;
        }
        *v = (uint64_t)hi << 32 | lo;
        return true;
}

static int attest_short(struct vg_error *err, const char *what)
{
        return vg_error_set(err, -EBADMSG, "TPMS_ATTEST: truncated reading %s", what);
}

/* TPMS_ATTEST for a quote (Part 2 §10.12.8), big-endian. */
static int parse_attest(const uint8_t *data, size_t len, struct vg_quote_attest *a,
                        struct vg_error *err)
{
        struct vg_buf b = vg_buf_init(data, len), t;
        uint32_t magic, count;
        uint16_t type, size;
        int r;

        if (!vg_buf_u32be(&b, &magic) || !vg_buf_u16be(&b, &type))
                return attest_short(err, "magic and type");
        if (magic != GENERATED_VALUE)
                return vg_error_set(err, -EBADMSG,
                                    "TPMS_ATTEST: magic 0x%08x, expected TPM_GENERATED_VALUE "
                                    "0xff544347 (not made by a TPM)",
                                    magic);
        if (type != ST_ATTEST_QUOTE)
                return vg_error_set(err, -EBADMSG,
                                    "TPMS_ATTEST: type 0x%04x, expected TPM_ST_ATTEST_QUOTE 0x8018",
                                    type);
        if (!vg_buf_u16be(&b, &size) || size > sizeof(a->signer) || !vg_buf_sub(&b, size, &t))
                return vg_error_set(err, -EBADMSG, "TPMS_ATTEST: bad qualifiedSigner");
        memcpy(a->signer, t.p, t.len);
        a->signer_len = t.len;
        if (!vg_buf_u16be(&b, &size) || size > sizeof(a->extra_data) || !vg_buf_sub(&b, size, &t))
                return vg_error_set(err, -EBADMSG, "TPMS_ATTEST: bad extraData");
        memcpy(a->extra_data, t.p, t.len);
        a->extra_data_len = t.len;
        if (!u64be(&b, &a->clock_info.clock) || !vg_buf_u32be(&b, &a->clock_info.reset_count) ||
            !vg_buf_u32be(&b, &a->clock_info.restart_count) || !vg_buf_u8(&b, &a->clock_info.safe))
                return attest_short(err, "clockInfo");
        if (a->clock_info.safe > 1)
                return vg_error_set(err, -EBADMSG, "TPMS_ATTEST: clockInfo.safe is %u",
                                    a->clock_info.safe);
        if (!u64be(&b, &a->firmware_version))
                return attest_short(err, "firmwareVersion");
        if (!vg_buf_u32be(&b, &count))
                return attest_short(err, "the PCR selection count");
        if (count > VG_HASH_ALG_COUNT)
                return vg_error_set(err, -EBADMSG, "TPMS_ATTEST: %u PCR banks selected", count);
        memset(&a->selection, 0, sizeof(a->selection));
        for (uint32_t i = 0; i < count; i++) {
                uint8_t sos, select[4];

                if (!vg_buf_u16be(&b, &type) || !vg_buf_u8(&b, &sos) || sos > 4 ||
                    !vg_buf_bytes(&b, select, sos))
                        return attest_short(err, "a PCR selection");
                if ((r = add_bank(&a->selection, type, sos, select, "TPMS_ATTEST", err)) < 0)
                        return r;
        }
        if (!vg_buf_u16be(&b, &size) || size > sizeof(a->pcr_digest) || !vg_buf_sub(&b, size, &t))
                return attest_short(err, "pcrDigest");
        memcpy(a->pcr_digest, t.p, t.len);
        a->pcr_digest_len = t.len;
        if (b.len)
                return vg_error_set(err, -EBADMSG, "TPMS_ATTEST: %zu trailing bytes", b.len);
        return 0;
}

/* TPMT_SIGNATURE (Part 2 §11.3.4): RSASSA, RSAPSS and ECDSA only. */
static int parse_signature(const uint8_t *data, size_t len, struct vg_quote_signature *s,
                           struct vg_error *err)
{
        struct vg_buf b = vg_buf_init(data, len), t;
        uint16_t alg, hash, size;

        if (!vg_buf_u16be(&b, &alg) || !vg_buf_u16be(&b, &hash))
                return vg_error_set(err, -EBADMSG, "TPMT_SIGNATURE: truncated");
        if (vg_hash_alg_from_tpm_id(hash, &s->hash) < 0)
                return vg_error_set(err, -EBADMSG, "TPMT_SIGNATURE: hash 0x%04x is not known",
                                    hash);
        if (alg == ALG_RSASSA || alg == ALG_RSAPSS) {
                s->alg = alg == ALG_RSASSA ? VG_QUOTE_SIG_RSASSA : VG_QUOTE_SIG_RSAPSS;
                if (!vg_buf_u16be(&b, &size) || size > sizeof(s->sig) || !vg_buf_sub(&b, size, &t))
                        return vg_error_set(err, -EBADMSG, "TPMT_SIGNATURE: bad RSA signature");
                memcpy(s->sig, t.p, t.len);
                s->sig_len = t.len;
        } else if (alg == ALG_ECDSA) {
                s->alg = VG_QUOTE_SIG_ECDSA;
                if (!vg_buf_u16be(&b, &size) || size > sizeof(s->r) || !vg_buf_sub(&b, size, &t))
                        return vg_error_set(err, -EBADMSG, "TPMT_SIGNATURE: bad ECDSA r");
                memcpy(s->r, t.p, t.len);
                s->r_len = t.len;
                if (!vg_buf_u16be(&b, &size) || size > sizeof(s->s) || !vg_buf_sub(&b, size, &t))
                        return vg_error_set(err, -EBADMSG, "TPMT_SIGNATURE: bad ECDSA s");
                memcpy(s->s, t.p, t.len);
                s->s_len = t.len;
        } else {
                return vg_error_set(err, -EOPNOTSUPP,
                                    "TPMT_SIGNATURE: scheme 0x%04x is not RSASSA, RSAPSS or ECDSA",
                                    alg);
        }
        if (b.len)
                return vg_error_set(err, -EBADMSG, "TPMT_SIGNATURE: %zu trailing bytes", b.len);
        return 0;
}

int vg_pcrblob_parse(const uint8_t *data, size_t len, struct vg_pcr_values *out,
                     struct vg_error *err)
{
        struct vg_buf b = vg_buf_init(data, len);
        uint32_t count, lists, total = 0, next = 0;
        int r;

        memset(out, 0, sizeof(*out));
        if (!vg_buf_u32le(&b, &count) || b.len < BLOB_SELECTIONS * BLOB_SEL_SIZE)
                return vg_error_set(err, -EBADMSG,
                                    "pcrblob: %zu bytes, too short for the "
                                    "selection (%u)",
                                    len, BLOB_SEL_LIST);
        if (count > VG_HASH_ALG_COUNT)
                return vg_error_set(err, -EBADMSG, "pcrblob: %u PCR banks selected", count);
        for (uint32_t i = 0; i < BLOB_SELECTIONS; i++) {
                struct vg_buf e;
                uint16_t hash;
                uint8_t sos, select[5];

                if (!vg_buf_sub(&b, BLOB_SEL_SIZE, &e) || !vg_buf_u16le(&e, &hash) ||
                    !vg_buf_u8(&e, &sos) || !vg_buf_bytes(&e, select, 5))
                        return vg_error_set(err, -EBADMSG, "pcrblob: truncated selection");
                if (i >= count)
                        continue;
                if (sos > 4)
                        return vg_error_set(err, -EBADMSG, "pcrblob: sizeofSelect %u", sos);
                if ((r = add_bank(&out->selection, hash, sos, select, "pcrblob", err)) < 0)
                        return r;
                total += (uint32_t)__builtin_popcount(out->selection.bank[i].mask);
        }
        if (!vg_buf_u32le(&b, &lists))
                return vg_error_set(err, -EBADMSG, "pcrblob: truncated before the digest count");
        /* tpm2-tools reads until every PCR arrived; a TPM may return fewer than 8 per read. */
        if (lists > (total ? total : 1) || b.len != (size_t)lists * BLOB_LIST_SIZE)
                return vg_error_set(err, -EBADMSG,
                                    "pcrblob: %u digest lists announced, %zu bytes follow (each "
                                    "list is %u)",
                                    lists, b.len, BLOB_LIST_SIZE);
        /* Digests come in selection order: banks as listed, PCRs ascending (Part 3 §22.4). */
        unsigned bank = 0, pcr = 0;
        for (uint32_t l = 0; l < lists; l++) {
                uint32_t n;

                if (!vg_buf_u32le(&b, &n))
                        return vg_error_set(err, -EBADMSG, "pcrblob: truncated digest list");
                if (n > BLOB_DIGESTS)
                        return vg_error_set(err, -EBADMSG,
                                            "pcrblob: digest list %u holds %u "
                                            "digests, at most 8",
                                            l, n);
                for (uint32_t d = 0; d < BLOB_DIGESTS; d++) {
                        struct vg_buf e;
                        uint16_t size;
                        size_t want;

                        if (!vg_buf_sub(&b, BLOB_DIGEST_SIZE, &e))
                                return vg_error_set(err, -EBADMSG, "pcrblob: truncated digest");
                        if (d >= n)
                                continue;
                        if (next >= total)
                                return vg_error_set(err, -EBADMSG,
                                                    "pcrblob: more digests than the %u PCRs "
                                                    "selected",
                                                    total);
                        while (!(out->selection.bank[bank].mask >> pcr & 1)) {
                                if (++pcr == VG_PCR_MAX) {
                                        pcr = 0;
                                        bank++;
                                }
                        }
                        if (!vg_buf_u16le(&e, &size))
                                return vg_error_set(err, -EBADMSG, "pcrblob: truncated digest");
                        want = vg_hash_size(out->selection.bank[bank].alg);
                        if (size != want)
                                return vg_error_set(err, -EBADMSG,
                                                    "pcrblob: %s PCR %u has a %u-byte digest, "
                                                    "expected %zu",
                                                    vg_hash_alg_name(out->selection.bank[bank].alg),
                                                    pcr, size, want);
                        memcpy(out->value[out->selection.bank[bank].alg][pcr], e.p, size);
                        next++;
                        if (++pcr == VG_PCR_MAX) {
                                pcr = 0;
                                bank++;
                        }
                }
        }
        if (next != total)
                return vg_error_set(err, -EBADMSG, "pcrblob: %u digests for the %u PCRs selected",
                                    next, total);
        return 0;
}

static void put_le(uint8_t *p, uint32_t v, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

int vg_pcrblob_build(const struct vg_pcr_values *pcrs, uint8_t **out, size_t *len)
{
        const struct vg_pcr_selection *sel = &pcrs->selection;
        unsigned total = 0, lists, k = 0;
        uint8_t *blob, *p;

        for (unsigned i = 0; i < sel->count; i++)
                total += (unsigned)__builtin_popcount(sel->bank[i].mask);
        lists = (total + BLOB_DIGESTS - 1) / BLOB_DIGESTS;
        *len = BLOB_SEL_LIST + 4 + (size_t)lists * BLOB_LIST_SIZE;
        blob = calloc(1, *len);
        if (!blob)
                return -ENOMEM;
        put_le(blob, sel->count, 4);
        for (unsigned i = 0; i < sel->count; i++) {
                p = blob + 4 + i * BLOB_SEL_SIZE;
                put_le(p, vg_hash_tpm_alg_id(sel->bank[i].alg), 2);
                p[2] = sel->bank[i].size_of_select;
                put_le(p + 3, sel->bank[i].mask, sel->bank[i].size_of_select);
        }
        put_le(blob + BLOB_SEL_LIST, lists, 4);
        for (unsigned i = 0; i < sel->count; i++) {
                size_t dlen = vg_hash_size(sel->bank[i].alg);

                for (unsigned pcr = 0; pcr < VG_PCR_MAX; pcr++) {
                        uint8_t *list;

                        if (!(sel->bank[i].mask >> pcr & 1))
                                continue;
                        list =
                            blob + BLOB_SEL_LIST + 4 + (size_t)(k / BLOB_DIGESTS) * BLOB_LIST_SIZE;
                        put_le(list, k % BLOB_DIGESTS + 1, 4);
                        p = list + 4 + (size_t)(k % BLOB_DIGESTS) * BLOB_DIGEST_SIZE;
                        put_le(p, (uint32_t)dlen, 2);
                        memcpy(p + 2, pcrs->value[sel->bank[i].alg][pcr], dlen);
                        k++;
                }
        }
        *out = blob;
        return 0;
}

/* Decode one ':'-separated base64 field. */
static int b64_field(const char *s, size_t len, const char *what, uint8_t **out, size_t *out_len,
                     struct vg_error *err)
{
        if (len == 0)
                return vg_error_set(err, -EBADMSG, "quote: the %s is empty", what);
        if (vg_b64_decode(s, len, VG_B64_STD, out, out_len) < 0)
                return vg_error_set(err, -EBADMSG, "quote: the %s is not valid base64", what);
        return 0;
}

int vg_quote_parse(const char *s, size_t len, struct vg_quote **out, struct vg_error *err)
{
        _cleanup_quote_ struct vg_quote *q = NULL;
        _cleanup_free_ uint8_t *sig = NULL, *blob = NULL;
        const char *c1, *c2;
        size_t sig_len, blob_len;
        int r;

        *out = NULL;
        if (len == 0)
                return vg_error_set(err, -EBADMSG, "quote: empty");
        if (s[0] == 'c')
                return vg_error_set(err, -EOPNOTSUPP,
                                    "quote: the legacy zlib-compressed form ('c', Keylime API "
                                    "1.0) is not supported; expected 'r'");
        if (s[0] != 'r')
                return vg_error_set(err, -EBADMSG,
                                    "quote: starts with 0x%02x, expected 'r' (raw TPM quote)",
                                    (unsigned char)s[0]);
        c1 = memchr(s + 1, ':', len - 1);
        c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - s)) : NULL;
        if (!c2 || memchr(c2 + 1, ':', len - (size_t)(c2 + 1 - s)))
                return vg_error_set(err, -EBADMSG,
                                    "quote: expected three ':'-separated fields "
                                    "(TPMS_ATTEST:TPMT_SIGNATURE:pcrblob)");
        q = calloc(1, sizeof(*q));
        if (!q)
                return vg_error_set(err, -ENOMEM, "out of memory");
        if ((r = b64_field(s + 1, (size_t)(c1 - s - 1), "TPMS_ATTEST", &q->attest_raw,
                           &q->attest_len, err)) < 0 ||
            (r = b64_field(c1 + 1, (size_t)(c2 - c1 - 1), "TPMT_SIGNATURE", &sig, &sig_len, err)) <
                0 ||
            (r = b64_field(c2 + 1, len - (size_t)(c2 + 1 - s), "pcrblob", &blob, &blob_len, err)) <
                0)
                return r;
        if ((r = parse_attest(q->attest_raw, q->attest_len, &q->attest, err)) < 0 ||
            (r = parse_signature(sig, sig_len, &q->sig, err)) < 0 ||
            (r = vg_pcrblob_parse(blob, blob_len, &q->pcrs, err)) < 0)
                return r;
        *out = TAKE_PTR(q);
        return 0;
}

static uint8_t *put_be(uint8_t *p, uint64_t v, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
        return p + n;
}

static uint8_t *put_2b(uint8_t *p, const uint8_t *data, size_t len)
{
        p = put_be(p, len, 2);
        memcpy(p, data, len);
        return p + len;
}

int vg_quote_format(const struct vg_quote *q, char **out)
{
        const struct vg_quote_attest *a = &q->attest;
        const struct vg_quote_signature *s = &q->sig;
        uint8_t attest[512], sig[600], *p;
        _cleanup_free_ uint8_t *blob = NULL;
        _cleanup_free_ char *b1 = NULL, *b2 = NULL, *b3 = NULL;
        size_t attest_len, sig_len, blob_len;
        static const uint16_t sig_ids[] = { ALG_RSASSA, ALG_RSAPSS, ALG_ECDSA };

        p = put_be(attest, GENERATED_VALUE, 4);
        p = put_be(p, ST_ATTEST_QUOTE, 2);
        p = put_2b(p, a->signer, a->signer_len);
        p = put_2b(p, a->extra_data, a->extra_data_len);
        p = put_be(p, a->clock_info.clock, 8);
        p = put_be(p, a->clock_info.reset_count, 4);
        p = put_be(p, a->clock_info.restart_count, 4);
        p = put_be(p, a->clock_info.safe, 1);
        p = put_be(p, a->firmware_version, 8);
        p = put_be(p, a->selection.count, 4);
        for (unsigned i = 0; i < a->selection.count; i++) {
                const struct vg_pcr_bank_sel *b = &a->selection.bank[i];

                p = put_be(p, vg_hash_tpm_alg_id(b->alg), 2);
                *p++ = b->size_of_select;
                put_le(p, b->mask, b->size_of_select);
                p += b->size_of_select;
        }
        p = put_2b(p, a->pcr_digest, a->pcr_digest_len);
        attest_len = (size_t)(p - attest);

        p = put_be(sig, sig_ids[s->alg], 2);
        p = put_be(p, vg_hash_tpm_alg_id(s->hash), 2);
        if (s->alg == VG_QUOTE_SIG_ECDSA) {
                p = put_2b(p, s->r, s->r_len);
                p = put_2b(p, s->s, s->s_len);
        } else {
                p = put_2b(p, s->sig, s->sig_len);
        }
        sig_len = (size_t)(p - sig);
        if (vg_pcrblob_build(&q->pcrs, &blob, &blob_len) < 0)
                return -ENOMEM;
        b1 = vg_b64_encode(attest, attest_len, VG_B64_STD);
        b2 = vg_b64_encode(sig, sig_len, VG_B64_STD);
        b3 = vg_b64_encode(blob, blob_len, VG_B64_STD);
        if (!b1 || !b2 || !b3 || asprintf(out, "r%s:%s:%s", b1, b2, b3) < 0)
                return -ENOMEM;
        return 0;
}

const uint8_t *vg_pcr_value(const struct vg_pcr_values *pcrs, enum vg_hash_alg alg, unsigned pcr)
{
        if (pcr >= VG_PCR_MAX || (unsigned)alg >= VG_HASH_ALG_COUNT)
                return NULL;
        for (unsigned i = 0; i < pcrs->selection.count; i++)
                if (pcrs->selection.bank[i].alg == alg)
                        return pcrs->selection.bank[i].mask >> pcr & 1 ? pcrs->value[alg][pcr]
                                                                       : NULL;
        return NULL;
}

static bool same_selection(const struct vg_pcr_selection *a, const struct vg_pcr_selection *b)
{
        if (a->count != b->count)
                return false;
        for (unsigned i = 0; i < a->count; i++)
                if (a->bank[i].alg != b->bank[i].alg || a->bank[i].mask != b->bank[i].mask)
                        return false;
        return true;
}

static const char *sig_name(enum vg_quote_sig_alg alg)
{
        return alg == VG_QUOTE_SIG_RSASSA   ? "RSASSA"
               : alg == VG_QUOTE_SIG_RSAPSS ? "RSAPSS"
                                            : "ECDSA";
}

/* The TPM signs H(TPMS_ATTEST) with the scheme's hash (Part 3 §18.4, §18.2.1). */
static int check_signature(const struct vg_quote *q, EVP_PKEY *ak, enum vg_quote_status *status,
                           struct vg_error *err)
{
        const struct vg_quote_signature *s = &q->sig;
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        _cleanup_free_ unsigned char *der = NULL;
        const unsigned char *sigp = s->sig;
        uint8_t digest[VG_HASH_MAX_SIZE];
        size_t sig_len = s->sig_len;
        bool rsa_key = EVP_PKEY_is_a(ak, "RSA"), ec_key = EVP_PKEY_is_a(ak, "EC");
        const char *md = vg_hash_alg_name(s->hash);

        if ((s->alg == VG_QUOTE_SIG_ECDSA && !ec_key) || (s->alg != VG_QUOTE_SIG_ECDSA && !rsa_key))
                return fail(status, VG_QUOTE_KEY_MISMATCH, -EBADMSG, err,
                            "quote signed with %s, but the AK is an %s key", sig_name(s->alg),
                            EVP_PKEY_get0_type_name(ak));
        if (vg_hash(s->hash, q->attest_raw, q->attest_len, digest) < 0)
                return fail(status, VG_QUOTE_MALFORMED, -ENOMEM, err, "hashing failed");
        if (s->alg == VG_QUOTE_SIG_ECDSA) {
                _cleanup_(ECDSA_SIG_freep) ECDSA_SIG *es = ECDSA_SIG_new();
                BIGNUM *r = BN_bin2bn(s->r, (int)s->r_len, NULL);
                BIGNUM *sv = BN_bin2bn(s->s, (int)s->s_len, NULL);
                int n;

                if (!es || !r || !sv || !ECDSA_SIG_set0(es, r, sv)) {
                        BN_free(r);
                        BN_free(sv);
                        return fail(status, VG_QUOTE_MALFORMED, -ENOMEM, err, "out of memory");
                }
                n = i2d_ECDSA_SIG(es, &der);
                if (n <= 0)
                        return fail(status, VG_QUOTE_MALFORMED, -ENOMEM, err, "out of memory");
                sigp = der;
                sig_len = (size_t)n;
        }
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, ak, NULL);
        if (!ctx || EVP_PKEY_verify_init(ctx) <= 0 ||
            EVP_PKEY_CTX_set_signature_md(ctx, EVP_get_digestbyname(md)) <= 0)
                return fail(status, VG_QUOTE_KEY_MISMATCH, -EINVAL, err,
                            "the AK cannot verify %s signatures", md);
        if (s->alg == VG_QUOTE_SIG_RSASSA &&
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
                return fail(status, VG_QUOTE_KEY_MISMATCH, -EINVAL, err, "RSASSA refused");
        /* Part 1 §B.7 lets the TPM pick the salt length; accept any the signature encodes. */
        if (s->alg == VG_QUOTE_SIG_RSAPSS &&
            (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
             EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_AUTO) <= 0))
                return fail(status, VG_QUOTE_KEY_MISMATCH, -EINVAL, err, "RSAPSS refused");
        if (EVP_PKEY_verify(ctx, sigp, sig_len, digest, vg_hash_size(s->hash)) != 1)
                return fail(status, VG_QUOTE_BAD_SIGNATURE, -EBADMSG, err,
                            "the quote's %s/%s signature does not verify with the AK",
                            sig_name(s->alg), md);
        return 0;
}

int vg_quote_verify(const struct vg_quote *q, EVP_PKEY *ak, const struct vg_quote_expect *exp,
                    enum vg_quote_status *status, struct vg_error *err)
{
        const struct vg_quote_attest *a = &q->attest;
        const struct vg_pcr_selection *sel = &q->pcrs.selection;
        uint8_t digest[VG_HASH_MAX_SIZE];
        struct vg_hash_ctx *h = NULL;
        unsigned accepted = exp->sig_algs ? exp->sig_algs : 7u;
        char what[256];
        int r;

        if (status)
                *status = VG_QUOTE_OK;
        if (!(accepted & (1u << q->sig.alg)))
                return fail(status, VG_QUOTE_SIG_ALG_REFUSED, -EBADMSG, err,
                            "quote signed with %s, which is not an accepted signing algorithm",
                            sig_name(q->sig.alg));
        if (q->sig.hash != exp->hash_alg)
                return fail(status, VG_QUOTE_HASH_ALG_MISMATCH, -EBADMSG, err,
                            "quote signed with hash %s, expected %s", vg_hash_alg_name(q->sig.hash),
                            vg_hash_alg_name(exp->hash_alg));
        if ((r = check_signature(q, ak, status, err)) < 0)
                return r;
        if (a->extra_data_len != exp->nonce_len ||
            !vg_ct_equal(a->extra_data, exp->nonce, exp->nonce_len))
                return fail(status, VG_QUOTE_NONCE_MISMATCH, -EBADMSG, err,
                            "the quote's extraData (%zu bytes) is not the nonce sent (%zu bytes)",
                            a->extra_data_len, exp->nonce_len);
        if (!same_selection(&a->selection, sel)) {
                char quoted[256];

                describe_selection(&a->selection, quoted, sizeof(quoted));
                describe_selection(sel, what, sizeof(what));
                return fail(status, VG_QUOTE_SELECTION_MISMATCH, -EBADMSG, err,
                            "the quote covers %s but the PCRs sent are %s", quoted, what);
        }
        /* Part 3 §18.4: pcrDigest hashes the selected PCRs in selection order with the
         * signing scheme's hash. */
        if (vg_hash_new(exp->hash_alg, &h) < 0)
                return fail(status, VG_QUOTE_MALFORMED, -ENOMEM, err, "out of memory");
        for (unsigned i = 0; i < sel->count; i++)
                for (unsigned pcr = 0; pcr < VG_PCR_MAX; pcr++)
                        if (sel->bank[i].mask >> pcr & 1)
                                vg_hash_update(h, q->pcrs.value[sel->bank[i].alg][pcr],
                                               vg_hash_size(sel->bank[i].alg));
        r = vg_hash_final(h, digest);
        vg_hash_free(h);
        if (r < 0)
                return fail(status, VG_QUOTE_MALFORMED, r, err, "hashing failed");
        if (a->pcr_digest_len != vg_hash_size(exp->hash_alg) ||
            !vg_ct_equal(a->pcr_digest, digest, a->pcr_digest_len)) {
                _cleanup_free_ char *hex = vg_hex_encode(a->pcr_digest, a->pcr_digest_len);

                describe_selection(sel, what, sizeof(what));
                return fail(status, VG_QUOTE_PCR_DIGEST_MISMATCH, -EBADMSG, err,
                            "quote's PCR digest %.8s… does not match the PCRs sent (%s)",
                            hex ? hex : "", what);
        }
        return 0;
}

int vg_quote_check_clock(const struct vg_clock_info *prev, const struct vg_clock_info *cur,
                         enum vg_quote_status *status, struct vg_error *err)
{
        if (status)
                *status = VG_QUOTE_OK;
        /* Part 1 §36.6: safe is 0 when the clock may have gone back (unorderly shutdown). */
        if (cur->safe != 1)
                return fail(status, VG_QUOTE_CLOCK_UNSAFE, -EBADMSG, err,
                            "the TPM reports its clock as not safe (safe=%u)", cur->safe);
        if (!prev)
                return 0;
        if (cur->reset_count < prev->reset_count)
                return fail(status, VG_QUOTE_RESET_DECREASED, -EBADMSG, err,
                            "TPM resetCount went from %u to %u", prev->reset_count,
                            cur->reset_count);
        /* restartCount restarts at 0 on a TPM Reset (Part 1 §36.7); compare within one. */
        if (cur->reset_count == prev->reset_count && cur->restart_count < prev->restart_count)
                return fail(status, VG_QUOTE_RESTART_DECREASED, -EBADMSG, err,
                            "TPM restartCount went from %u to %u", prev->restart_count,
                            cur->restart_count);
        if (cur->clock <= prev->clock)
                return fail(status, VG_QUOTE_CLOCK_STALLED, -EBADMSG, err,
                            "TPM clock went from %llu to %llu ms", (unsigned long long)prev->clock,
                            (unsigned long long)cur->clock);
        return 0;
}

int vg_quote_pcr16_expected(enum vg_hash_alg alg, const void *pem, size_t pem_len, uint8_t *out)
{
        uint8_t d[VG_HASH_MAX_SIZE];
        int r;

        memset(out, 0, vg_hash_size(alg));
        if ((r = vg_hash(alg, pem, pem_len, d)) < 0)
                return r;
        return vg_hash_extend(alg, out, d);
}

int vg_quote_check_pcr16(const struct vg_pcr_values *pcrs, enum vg_hash_alg alg, const void *pem,
                         size_t pem_len, enum vg_quote_status *status, struct vg_error *err)
{
        const uint8_t *got = vg_pcr_value(pcrs, alg, VG_PCR_NK);
        uint8_t want[VG_HASH_MAX_SIZE];

        if (status)
                *status = VG_QUOTE_OK;
        if (!got)
                return fail(status, VG_QUOTE_PCR_MISSING, -EBADMSG, err,
                            "%s PCR16 (NK binding) is not in the quote", vg_hash_alg_name(alg));
        if (vg_quote_pcr16_expected(alg, pem, pem_len, want) < 0)
                return fail(status, VG_QUOTE_MALFORMED, -ENOMEM, err, "hashing failed");
        if (!vg_ct_equal(got, want, vg_hash_size(alg))) {
                _cleanup_free_ char *g = vg_hex_encode(got, vg_hash_size(alg));
                _cleanup_free_ char *w = vg_hex_encode(want, vg_hash_size(alg));

                return fail(status, VG_QUOTE_PCR16_MISMATCH, -EBADMSG, err,
                            "%s PCR16 is %s, the NK's public key gives %s", vg_hash_alg_name(alg),
                            g ? g : "", w ? w : "");
        }
        return 0;
}

void vg_tpm_policy_free(struct vg_tpm_policy *p)
{
        if (!p)
                return;
        for (unsigned i = 0; i < VG_PCR_MAX; i++) {
                free(p->pcr[i].values);
                free(p->pcr[i].lens);
        }
        free(p);
}

static int policy_value(struct vg_tpm_policy_pcr *pp, const char *key, json_t *v, size_t i,
                        struct vg_error *err)
{
        _cleanup_free_ uint8_t *raw = NULL;
        const char *s = json_string_value(v);
        size_t len;

        if (!s)
                return vg_error_set(err, -EINVAL, "tpm_policy: PCR %s: values must be strings",
                                    key);
        if (strncmp(s, "0x", 2) == 0 || strncmp(s, "0X", 2) == 0)
                s += 2;
        if (vg_hex_decode(s, strlen(s), &raw, &len) < 0 ||
            (len != 20 && len != 32 && len != 48 && len != 64))
                return vg_error_set(err, -EINVAL,
                                    "tpm_policy: PCR %s: \"%s\" is not a hex SHA-1/256/384/512 "
                                    "digest",
                                    key, json_string_value(v));
        memcpy(pp->values[i], raw, len);
        pp->lens[i] = len;
        return 0;
}

int vg_tpm_policy_parse(const char *json, struct vg_tpm_policy **out, struct vg_error *err)
{
        _cleanup_tpm_policy_ struct vg_tpm_policy *p = NULL;
        _cleanup_(json_decrefp) json_t *root = NULL;
        json_error_t jerr;
        const char *key;
        json_t *v;
        uint32_t given = 0;
        bool have_mask = false;
        int r;

        *out = NULL;
        root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
        if (!root || !json_is_object(root))
                return vg_error_set(err, -EINVAL, "tpm_policy: not a JSON object%s%s",
                                    root ? "" : ": ", root ? "" : jerr.text);
        p = calloc(1, sizeof(*p));
        if (!p)
                return vg_error_set(err, -ENOMEM, "out of memory");
        json_object_foreach (root, key, v) {
                struct vg_tpm_policy_pcr *pp;
                char *end;
                unsigned long pcr;

                if (strcmp(key, "mask") == 0) {
                        const char *m = json_string_value(v);

                        errno = 0;
                        if (!m || strncmp(m, "0x", 2) != 0 || !m[2] ||
                            (given = (uint32_t)strtoul(m + 2, &end, 16), *end) || errno ||
                            strlen(m + 2) > 8)
                                return vg_error_set(err, -EINVAL,
                                                    "tpm_policy: mask must be a \"0x...\" hex "
                                                    "string");
                        have_mask = true;
                        continue;
                }
                if (!*key || strspn(key, "0123456789") != strlen(key) || strlen(key) > 2 ||
                    (pcr = strtoul(key, NULL, 10)) >= VG_PCR_MAX)
                        return vg_error_set(err, -EINVAL,
                                            "tpm_policy: key \"%s\" is not a PCR number 0-23 or "
                                            "\"mask\"",
                                            key);
                if (pcr == VG_PCR_IMA || pcr == VG_PCR_NK)
                        return vg_error_set(
                            err, -EINVAL, "tpm_policy: PCR %lu may not be in tpm_policy (%s)", pcr,
                            pcr == VG_PCR_IMA ? "IMA uses it; give a runtime "
                                                "policy instead"
                                              : "it binds the agent's NK");
                pp = &p->pcr[pcr];
                pp->count = json_is_array(v) ? json_array_size(v) : 1;
                if (pp->count == 0)
                        return vg_error_set(err, -EINVAL, "tpm_policy: PCR %lu has no values", pcr);
                pp->values = calloc(pp->count, sizeof(*pp->values));
                pp->lens = calloc(pp->count, sizeof(*pp->lens));
                if (!pp->values || !pp->lens)
                        return vg_error_set(err, -ENOMEM, "out of memory");
                for (size_t i = 0; i < pp->count; i++)
                        if ((r = policy_value(pp, key, json_is_array(v) ? json_array_get(v, i) : v,
                                              i, err)) < 0)
                                return r;
                p->with_values |= 1u << pcr;
        }
        if (have_mask && (given & p->with_values) != p->with_values)
                return vg_error_set(err, -EINVAL,
                                    "tpm_policy: mask 0x%x leaves out PCRs that have values "
                                    "(0x%x)",
                                    given, p->with_values);
        /* The mask may name PCR 10 (the tenant adds it for IMA) and 16 (always quoted). */
        if (given >> VG_PCR_MAX)
                return vg_error_set(err, -EINVAL, "tpm_policy: mask 0x%x selects a PCR above 23",
                                    given);
        p->mask = given | p->with_values;
        *out = TAKE_PTR(p);
        return 0;
}

int vg_tpm_policy_check(const struct vg_tpm_policy *p, const struct vg_pcr_values *pcrs,
                        enum vg_hash_alg alg, enum vg_quote_status *status, struct vg_error *err)
{
        size_t dlen = vg_hash_size(alg);

        if (status)
                *status = VG_QUOTE_OK;
        for (unsigned pcr = 0; pcr < VG_PCR_MAX; pcr++) {
                const struct vg_tpm_policy_pcr *pp = &p->pcr[pcr];
                const uint8_t *got;
                bool match = false;

                if (!(p->with_values >> pcr & 1))
                        continue;
                got = vg_pcr_value(pcrs, alg, pcr);
                if (!got)
                        return fail(status, VG_QUOTE_PCR_MISSING, -EBADMSG, err,
                                    "tpm_policy names %s PCR %u, which the quote does not cover",
                                    vg_hash_alg_name(alg), pcr);
                for (size_t i = 0; i < pp->count; i++)
                        match |= pp->lens[i] == dlen && vg_ct_equal(pp->values[i], got, dlen);
                if (!match) {
                        _cleanup_free_ char *hex = vg_hex_encode(got, dlen);

                        return fail(status, VG_QUOTE_POLICY_MISMATCH, -EBADMSG, err,
                                    "%s PCR %u is %s, not one of the %zu value(s) tpm_policy "
                                    "allows",
                                    vg_hash_alg_name(alg), pcr, hex ? hex : "", pp->count);
                }
        }
        return 0;
}
