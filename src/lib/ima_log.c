/* vigil: the IMA ASCII measurement list: each line parsed back into the template data the kernel
 * hashed, the template hash checked, PCR 10 replayed per bank and every entry judged by policy. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cleanup.h"
#include "ima.h"
#include "ima_private.h"

#define IMA_PCR            10
#define IMA_NAME_LEN_MAX   255 /* TCG_EVENT_NAME_LEN_MAX: legacy "ima" pads n to 256 bytes */
#define IMA_ALG_NAME_MAX   32
#define IMA_DIGEST_HEX_MAX (2 * VG_HASH_MAX_SIZE)

/* ---- Digests ------------------------------------------------------------------------------- */

/* Three digests per entry over ~100 bytes each: OpenSSL 3's EVP layer allocates and cleanses a
 * provider context on every EVP_DigestInit_ex2, which costs more than the hashing. The
 * low-level functions run the same SHA-NI code without that, so they are used here on purpose
 * (deprecated in 3.0, not removed). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <openssl/sha.h>

struct md {
        enum vg_hash_alg alg;
};

static int md_open(struct md *m, enum vg_hash_alg alg)
{
        m->alg = alg;
        return (unsigned)alg < VG_HASH_ALG_COUNT ? 0 : -EINVAL;
}

static void md_close(struct md *m)
{
        (void)m;
}

static bool md_hash2(struct md *m, const void *a, size_t alen, const void *b, size_t blen,
                     uint8_t *out)
{
        union {
                SHA_CTX s1;
                SHA256_CTX s256;
                SHA512_CTX s512;
        } c;

        switch (m->alg) {
        case VG_HASH_SHA1:
                return SHA1_Init(&c.s1) && SHA1_Update(&c.s1, a, alen) &&
                       (!blen || SHA1_Update(&c.s1, b, blen)) && SHA1_Final(out, &c.s1);
        case VG_HASH_SHA256:
                return SHA256_Init(&c.s256) && SHA256_Update(&c.s256, a, alen) &&
                       (!blen || SHA256_Update(&c.s256, b, blen)) && SHA256_Final(out, &c.s256);
        case VG_HASH_SHA384:
                return SHA384_Init(&c.s512) && SHA384_Update(&c.s512, a, alen) &&
                       (!blen || SHA384_Update(&c.s512, b, blen)) && SHA384_Final(out, &c.s512);
        case VG_HASH_SHA512:
                return SHA512_Init(&c.s512) && SHA512_Update(&c.s512, a, alen) &&
                       (!blen || SHA512_Update(&c.s512, b, blen)) && SHA512_Final(out, &c.s512);
        default:
                return false;
        }
}
#pragma GCC diagnostic pop

/* ---- Parsing one line ----------------------------------------------------------------------- */

static const int8_t hexv[256] = {
        ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
        ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
        ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
        ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
}; /* value + 1; 0 = not hex */

static bool unhex(const char *s, size_t len, uint8_t *out)
{
        if (len % 2)
                return false;
        for (size_t i = 0; i < len; i += 2) {
                int hi = hexv[(unsigned char)s[i]], lo = hexv[(unsigned char)s[i + 1]];
                if (!hi || !lo)
                        return false;
                out[i / 2] = (uint8_t)((hi - 1) << 4 | (lo - 1));
        }
        return true;
}

struct parser {
        uint8_t *scratch;
        size_t cap;
        char alg[IMA_ALG_NAME_MAX + 1];
        char msg[256];
};

static int reserve(struct parser *ps, size_t n)
{
        if (n > ps->cap) {
                size_t cap = ps->cap ? ps->cap : 1024;
                uint8_t *s;

                while (cap < n)
                        cap *= 2;
                s = realloc(ps->scratch, cap);
                if (!s)
                        return -ENOMEM;
                ps->scratch = s;
                ps->cap = cap;
        }
        return 0;
}

__attribute__((format(printf, 2, 3))) static int bad(struct parser *ps, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(ps->msg, sizeof(ps->msg), fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

/* The next space-separated token of [*p, end); the last one runs to end. */
static bool token(const char **p, const char *end, const char **tok, size_t *len)
{
        const char *sp;

        if (*p > end)
                return false;
        sp = memchr(*p, ' ', (size_t)(end - *p));
        *tok = *p;
        *len = (size_t)((sp ? sp : end) - *p);
        *p = sp ? sp + 1 : end + 1;
        return true;
}

static inline void put_u32le(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
}

static void set_alg(struct vg_ima_entry *e, const char *name)
{
        enum vg_hash_alg a;

        e->digest_md5 = strcmp(name, "md5") == 0;
        if (vg_hash_alg_from_name(name, &a) == 0 && strcmp(name, vg_hash_alg_name(a)) == 0)
                e->digest_alg = a;
        else
                e->digest_alg = VG_HASH_ALG_COUNT;
}

/* Rebuild the template data exactly as the kernel hashed it (ima_template_lib.c). */
static int parse_line(struct parser *ps, const char *line, size_t len, uint64_t lineno,
                      struct vg_ima_entry *e)
{
        const char *p = line, *end = line + len, *tok = NULL, *tpl, *dtok, *path, *extra = NULL;
        size_t tlen = 0, tpl_len, dlen, plen, extra_len = 0, hexlen, need;
        const char *colon;
        uint8_t *o;
        unsigned pcr = 0;

        memset(e, 0, offsetof(struct vg_ima_entry, digest));
        e->line = lineno;
        if (memchr(line, '\0', len))
                return bad(ps, "line %" PRIu64 ": a NUL byte inside the line", lineno);
        /* PCR */
        token(&p, end, &tok, &tlen);
        if (tlen == 0 || tlen > 2)
                return bad(ps, "line %" PRIu64 ": expected a PCR number, found \"%.*s\"", lineno,
                           (int)(tlen > 16 ? 16 : tlen), tok);
        for (size_t i = 0; i < tlen; i++) {
                if (tok[i] < '0' || tok[i] > '9')
                        return bad(ps, "line %" PRIu64 ": expected a PCR number, found \"%.*s\"",
                                   lineno, (int)tlen, tok);
                pcr = pcr * 10 + (unsigned)(tok[i] - '0');
        }
        e->pcr = pcr;
        /* template hash */
        if (!token(&p, end, &tok, &tlen) || tlen < 2 || tlen > IMA_DIGEST_HEX_MAX ||
            !unhex(tok, tlen, e->template_hash))
                return bad(ps,
                           "line %" PRIu64 ": expected the template hash in hex, found \"%.*s\"",
                           lineno, (int)(tlen > 140 ? 140 : tlen), p > end + 1 ? "" : tok);
        e->template_hash_len = tlen / 2;
        e->violation = true;
        for (size_t i = 0; i < e->template_hash_len; i++)
                if (e->template_hash[i]) {
                        e->violation = false;
                        break;
                }
        /* template name */
        if (!token(&p, end, &tpl, &tpl_len) || tpl_len == 0)
                return bad(ps, "line %" PRIu64 ": expected a template name after the hash", lineno);
        if (tpl_len == 3 && memcmp(tpl, "ima", 3) == 0)
                e->tpl = VG_IMA_TPL_IMA;
        else if (tpl_len == 6 && memcmp(tpl, "ima-ng", 6) == 0)
                e->tpl = VG_IMA_TPL_NG;
        else if (tpl_len == 7 && memcmp(tpl, "ima-sig", 7) == 0)
                e->tpl = VG_IMA_TPL_SIG;
        else if (tpl_len == 7 && memcmp(tpl, "ima-buf", 7) == 0)
                e->tpl = VG_IMA_TPL_BUF;
        else
                return bad(ps,
                           "line %" PRIu64 ": unknown template \"%.*s\" (supported: ima, ima-ng, "
                           "ima-sig, ima-buf)",
                           lineno, (int)(tpl_len > 64 ? 64 : tpl_len), tpl);
        /* digest */
        if (!token(&p, end, &dtok, &dlen) || dlen == 0)
                return bad(ps, "line %" PRIu64 ": expected a file digest after \"%.*s\"", lineno,
                           (int)tpl_len, tpl);
        if (e->tpl == VG_IMA_TPL_IMA) {
                hexlen = dlen;
                if ((hexlen != 40 && hexlen != 32) || !unhex(dtok, hexlen, e->digest))
                        return bad(ps,
                                   "line %" PRIu64 ": expected a SHA-1 or MD5 digest in hex for "
                                   "template ima, found \"%.*s\"",
                                   lineno, (int)(dlen > 140 ? 140 : dlen), dtok);
                strcpy(ps->alg, hexlen == 40 ? "sha1" : "md5");
        } else {
                colon = memchr(dtok, ':', dlen);
                size_t alen = colon ? (size_t)(colon - dtok) : 0;
                if (!colon || alen == 0 || alen > IMA_ALG_NAME_MAX)
                        return bad(ps,
                                   "line %" PRIu64 ": expected ALGORITHM:HEX as the file digest, "
                                   "found \"%.*s\"",
                                   lineno, (int)(dlen > 140 ? 140 : dlen), dtok);
                for (size_t i = 0; i < alen; i++) {
                        char c = dtok[i];
                        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                              c == '-'))
                                return bad(ps,
                                           "line %" PRIu64 ": \"%.*s\" is not a hash algorithm "
                                           "name",
                                           lineno, (int)alen, dtok);
                }
                memcpy(ps->alg, dtok, alen);
                ps->alg[alen] = '\0';
                hexlen = dlen - alen - 1;
                if (hexlen < 2 || hexlen > IMA_DIGEST_HEX_MAX ||
                    !unhex(colon + 1, hexlen, e->digest))
                        return bad(ps,
                                   "line %" PRIu64 ": expected the %s digest in hex, found "
                                   "\"%.*s\"",
                                   lineno, ps->alg, (int)(hexlen > 140 ? 140 : hexlen), colon + 1);
        }
        e->digest_len = hexlen / 2;
        set_alg(e, ps->alg);
        /* name, and for ima-sig/ima-buf the last field (may be empty) */
        if (p > end)
                return bad(ps, "line %" PRIu64 ": expected a file name after the digest", lineno);
        if (e->tpl == VG_IMA_TPL_SIG || e->tpl == VG_IMA_TPL_BUF) {
                token(&p, end, &path, &plen);
                if (p <= end) {
                        extra = p;
                        extra_len = (size_t)(end - p);
                }
        } else {
                path = p; /* ima, ima-ng: the rest of the line */
                plen = (size_t)(end - p);
        }
        if (plen == 0)
                return bad(ps, "line %" PRIu64 ": expected a file name after the digest", lineno);
        if (e->tpl == VG_IMA_TPL_IMA && plen > IMA_NAME_LEN_MAX)
                return bad(ps,
                           "line %" PRIu64 ": a name of %zu bytes is longer than template ima "
                           "allows (%d)",
                           lineno, plen, IMA_NAME_LEN_MAX);
        if (extra_len % 2)
                return bad(ps, "line %" PRIu64 ": expected the %s field in hex, found %zu digits",
                           lineno, e->tpl == VG_IMA_TPL_SIG ? "signature" : "buffer", extra_len);
        /* template data */
        need = 4 + IMA_ALG_NAME_MAX + 2 + VG_HASH_MAX_SIZE + 4 + plen + 1 + 4 + extra_len / 2 +
               IMA_NAME_LEN_MAX + 1;
        if (reserve(ps, need) < 0)
                return bad(ps, "line %" PRIu64 ": out of memory", lineno);
        o = ps->scratch;
        if (e->tpl == VG_IMA_TPL_IMA) {
                /* d (raw digest) | n (name, NUL-padded to 256 bytes), no length prefixes */
                memcpy(o, e->digest, e->digest_len);
                o += e->digest_len;
                e->path = (const char *)o;
                memcpy(o, path, plen);
                memset(o + plen, 0, IMA_NAME_LEN_MAX + 1 - plen);
                o += IMA_NAME_LEN_MAX + 1;
        } else {
                size_t alen = strlen(ps->alg);
                /* d-ng: "<alg>:\0" + digest; n-ng: name + NUL; each after a u32le length */
                put_u32le(o, (uint32_t)(alen + 2 + e->digest_len));
                o += 4;
                memcpy(o, ps->alg, alen);
                o += alen;
                *o++ = ':';
                *o++ = '\0';
                memcpy(o, e->digest, e->digest_len);
                o += e->digest_len;
                put_u32le(o, (uint32_t)(plen + 1));
                o += 4;
                e->path = (const char *)o;
                memcpy(o, path, plen);
                o[plen] = '\0';
                o += plen + 1;
                if (e->tpl == VG_IMA_TPL_SIG || e->tpl == VG_IMA_TPL_BUF) {
                        put_u32le(o, (uint32_t)(extra_len / 2));
                        o += 4;
                        if (extra_len && !unhex(extra, extra_len, o))
                                return bad(ps, "line %" PRIu64 ": expected the %s field in hex",
                                           lineno,
                                           e->tpl == VG_IMA_TPL_SIG ? "signature" : "buffer");
                        if (e->tpl == VG_IMA_TPL_SIG) {
                                e->sig = extra_len ? o : NULL;
                                e->sig_len = extra_len / 2;
                        } else {
                                e->buf = o;
                                e->buf_len = extra_len / 2;
                        }
                        o += extra_len / 2;
                }
        }
        e->path_len = plen;
        e->digest_alg_name = ps->alg;
        e->template_data = ps->scratch;
        e->template_data_len = (size_t)(o - ps->scratch);
        return 0;
}

int vg_ima_parse_log(const char *log, size_t len, vg_ima_entry_fn fn, void *userdata,
                     struct vg_error *err)
{
        struct parser ps = { 0 };
        struct vg_ima_entry e;
        size_t off = 0, lineno = 0;
        int r = 0;

        if (!log && len)
                return vg_error_set(err, -EINVAL, "IMA log: no text given");
        while (off < len) {
                const char *line = log + off, *nl = memchr(line, '\n', len - off);
                size_t llen = nl ? (size_t)(nl - line) : len - off;

                off += llen + (nl ? 1 : 0);
                lineno++;
                if (!llen)
                        continue;
                if ((r = parse_line(&ps, line, llen, lineno, &e)) < 0) {
                        r = vg_error_set(err, r, "IMA log %s", ps.msg);
                        break;
                }
                if (fn && (r = fn(&e, userdata)) < 0)
                        break;
        }
        free(ps.scratch);
        return r < 0 ? r : 0;
}

/* ---- Per-agent state ------------------------------------------------------------------------ */

struct vg_ima_state {
        enum vg_hash_alg bank;
        uint64_t next_entry;
        uint8_t pcr[VG_HASH_MAX_SIZE];
        struct vg_ima_keyring learned;
};

int vg_ima_state_new(enum vg_hash_alg bank, struct vg_ima_state **out)
{
        if ((unsigned)bank >= VG_HASH_ALG_COUNT)
                return -EINVAL;
        *out = calloc(1, sizeof(**out));
        if (!*out)
                return -ENOMEM;
        (*out)->bank = bank;
        return 0;
}

void vg_ima_state_free(struct vg_ima_state *st)
{
        if (!st)
                return;
        vg_ima_keyring_clear(&st->learned);
        free(st);
}

void vg_ima_state_reset(struct vg_ima_state *st)
{
        st->next_entry = 0;
        memset(st->pcr, 0, sizeof(st->pcr));
        vg_ima_keyring_clear(&st->learned);
}

uint64_t vg_ima_state_next_entry(const struct vg_ima_state *st)
{
        return st->next_entry;
}

enum vg_hash_alg vg_ima_state_bank(const struct vg_ima_state *st)
{
        return st->bank;
}

const uint8_t *vg_ima_state_pcr(const struct vg_ima_state *st)
{
        return st->pcr;
}

size_t vg_ima_state_learned_keys(const struct vg_ima_state *st)
{
        return st->learned.n;
}

/* "VGIS", u8 version 1, u8 bank, u64le next_entry, pcr (bank size), u32le n_keys, then per key:
 * u32le keyidv2, u16le keyring-name length, name, u32le SPKI length, DER SPKI. */
#define STATE_MAGIC   "VGIS"
#define STATE_VERSION 1

int vg_ima_state_save(const struct vg_ima_state *st, uint8_t **out, size_t *len)
{
        size_t n = 4 + 1 + 1 + 8 + vg_hash_size(st->bank) + 4, o = 0;
        uint8_t *b;

        for (size_t i = 0; i < st->learned.n; i++) {
                size_t nl = strlen(st->learned.keys[i].keyring);
                if (nl > UINT16_MAX || st->learned.keys[i].spki_len > UINT32_MAX)
                        return -E2BIG;
                n += 4 + 2 + nl + 4 + st->learned.keys[i].spki_len;
        }
        if (!(b = malloc(n)))
                return -ENOMEM;
        memcpy(b, STATE_MAGIC, 4);
        o = 4;
        b[o++] = STATE_VERSION;
        b[o++] = (uint8_t)st->bank;
        put_u32le(b + o, (uint32_t)st->next_entry);
        put_u32le(b + o + 4, (uint32_t)(st->next_entry >> 32));
        o += 8;
        memcpy(b + o, st->pcr, vg_hash_size(st->bank));
        o += vg_hash_size(st->bank);
        put_u32le(b + o, (uint32_t)st->learned.n);
        o += 4;
        for (size_t i = 0; i < st->learned.n; i++) {
                const struct vg_ima_key *k = &st->learned.keys[i];
                size_t nl = strlen(k->keyring);

                put_u32le(b + o, k->keyid);
                b[o + 4] = (uint8_t)nl;
                b[o + 5] = (uint8_t)(nl >> 8);
                o += 6;
                memcpy(b + o, k->keyring, nl);
                o += nl;
                put_u32le(b + o, (uint32_t)k->spki_len);
                o += 4;
                memcpy(b + o, k->spki, k->spki_len);
                o += k->spki_len;
        }
        *out = b;
        *len = o;
        return 0;
}

int vg_ima_state_load(const uint8_t *data, size_t len, struct vg_ima_state **out,
                      struct vg_error *err)
{
        _cleanup_(vg_ima_state_freep) struct vg_ima_state *st = NULL;
        struct vg_buf b = vg_buf_init(data, len);
        uint8_t magic[4], version, bank;
        uint32_t n_keys;
        int r;

        *out = NULL;
        if (!vg_buf_bytes(&b, magic, 4) || memcmp(magic, STATE_MAGIC, 4) != 0 ||
            !vg_buf_u8(&b, &version))
                return vg_error_set(err, -EBADMSG, "IMA state: not a saved IMA state");
        if (version != STATE_VERSION)
                return vg_error_set(err, -EBADMSG,
                                    "IMA state: expected format version %d, found %u",
                                    STATE_VERSION, version);
        if (!vg_buf_u8(&b, &bank) || bank >= VG_HASH_ALG_COUNT)
                return vg_error_set(err, -EBADMSG, "IMA state: unknown PCR bank");
        if ((r = vg_ima_state_new((enum vg_hash_alg)bank, &st)) < 0)
                return r;
        if (!vg_buf_u64le(&b, &st->next_entry) ||
            !vg_buf_bytes(&b, st->pcr, vg_hash_size(st->bank)) || !vg_buf_u32le(&b, &n_keys))
                return vg_error_set(err, -EBADMSG, "IMA state: truncated");
        for (uint32_t i = 0; i < n_keys; i++) {
                uint32_t keyid, slen;
                uint16_t nlen;
                struct vg_buf name, spki;
                char *kr;

                if (!vg_buf_u32le(&b, &keyid) || !vg_buf_u16le(&b, &nlen) ||
                    !vg_buf_sub(&b, nlen, &name) || !vg_buf_u32le(&b, &slen) ||
                    !vg_buf_sub(&b, slen, &spki))
                        return vg_error_set(err, -EBADMSG, "IMA state: key %u truncated", i);
                if (memchr(name.p, '\0', name.len))
                        return vg_error_set(err, -EBADMSG, "IMA state: key %u: bad keyring name",
                                            i);
                kr = strndup((const char *)name.p, name.len);
                if (!kr)
                        return -ENOMEM;
                r = vg_ima_keyring_add_spki(&st->learned, spki.p, spki.len, keyid, kr);
                free(kr);
                if (r < 0)
                        return vg_error_set(err, r == -ENOMEM ? r : -EBADMSG,
                                            "IMA state: key %u is not an RSA or EC public key", i);
        }
        if (b.len)
                return vg_error_set(err, -EBADMSG, "IMA state: %zu bytes of trailing data", b.len);
        *out = TAKE_PTR(st);
        return 0;
}

/* ---- Verification --------------------------------------------------------------------------- */

const char *vg_ima_failure_kind_str(enum vg_ima_failure_kind k)
{
        static const char *const names[] = {
                [VG_IMA_FAIL_PARSE] = "parse",
                [VG_IMA_FAIL_PCR] = "pcr",
                [VG_IMA_FAIL_TEMPLATE_HASH] = "template-hash",
                [VG_IMA_FAIL_NOT_IN_POLICY] = "fnf",
                [VG_IMA_FAIL_HASH] = "hash",
                [VG_IMA_FAIL_SIGNATURE] = "signature",
                [VG_IMA_FAIL_KEYRING] = "keyring",
                [VG_IMA_FAIL_VIOLATION] = "violation",
                [VG_IMA_FAIL_BOOT_AGGREGATE] = "boot-aggregate",
                [VG_IMA_FAIL_PCR_MISMATCH] = "pcr-mismatch",
                [VG_IMA_FAIL_ENTRY_NUMBER] = "entry-number",
        };
        return (unsigned)k < VG_ARRAY_SIZE(names) && names[k] ? names[k] : "unknown";
}

struct walk {
        const struct vg_ima_policy *p;
        struct vg_ima_state *st;
        const struct vg_ima_options *o;
        struct vg_ima_result *res;
        pcre2_match_data *md;
        uint64_t entry;     /* absolute number of the current entry */
        uint64_t path_hash; /* vg_ima_path_hash of the current entry's path */
        uint64_t failures;
};

static void report(struct walk *w, enum vg_ima_failure_kind kind, uint64_t line, const char *path,
                   const char *expected, const char *found, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void report(struct walk *w, enum vg_ima_failure_kind kind, uint64_t line, const char *path,
                   const char *expected, const char *found, const char *fmt, ...)
{
        char msg[768];
        va_list ap;

        w->failures++;
        if (!w->o || !w->o->on_failure)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        w->o->on_failure(&(struct vg_ima_failure){ .kind = kind,
                                                   .entry = w->entry,
                                                   .line = line,
                                                   .path = path,
                                                   .expected = expected,
                                                   .found = found,
                                                   .message = msg },
                         w->o->userdata);
}

static void hex_into(char *out, size_t cap, const uint8_t *d, size_t n)
{
        static const char x[] = "0123456789abcdef";
        size_t i;

        for (i = 0; i < n && 2 * i + 2 < cap; i++) {
                out[2 * i] = x[d[i] >> 4];
                out[2 * i + 1] = x[d[i] & 15];
        }
        out[2 * i] = '\0';
}

/* "a, b, c" of a path's allowed digests (truncated with "..." when long). */
static void allowed_list(char *out, size_t cap, const struct vg_ima_map *m,
                         const struct vg_ima_slot *s)
{
        size_t o = 0;

        out[0] = '\0';
        for (uint32_t i = 0; s && i < s->n; i++) {
                const struct vg_ima_digest *d = &m->digests[s->first + i];
                if (o + 2 * d->len + 8 > cap) {
                        snprintf(out + o, cap - o, "%s...", i ? ", " : "");
                        return;
                }
                if (i) {
                        memcpy(out + o, ", ", 2);
                        o += 2;
                }
                hex_into(out + o, cap - o, d->d, d->len);
                o += 2 * d->len;
        }
}

static bool excluded(struct walk *w, const char *path, size_t len)
{
        if (!w->p || !w->p->exclude_re)
                return false;
        return pcre2_match(w->p->exclude_re, (PCRE2_SPTR)path, len, 0, 0, w->md, NULL) >= 0;
}

static bool boot_aggregate_option(const struct vg_ima_options *o, const uint8_t *d, size_t len)
{
        static const uint8_t zero[VG_HASH_MAX_SIZE];

        for (size_t i = 0; o && i < o->n_boot_aggregates; i++)
                if (memcmp(o->boot_aggregates[i], d, len) == 0 &&
                    memcmp(o->boot_aggregates[i] + len, zero, VG_HASH_MAX_SIZE - len) == 0)
                        return true;
        return false;
}

/* Look the entry up in one of the policy's tables; false (and a report) when it fails. */
static bool lookup(struct walk *w, const struct vg_ima_entry *e, const struct vg_ima_map *m,
                   const char *table)
{
        const struct vg_ima_slot *s = vg_ima_map_find_h(m, e->path, e->path_len, w->path_hash);
        bool boot =
            e->path_len == 14 && memcmp(e->path, "boot_aggregate", 14) == 0 && m == &w->p->digests;
        enum vg_ima_failure_kind fnf =
            boot ? VG_IMA_FAIL_BOOT_AGGREGATE : VG_IMA_FAIL_NOT_IN_POLICY;
        enum vg_ima_failure_kind hash = boot ? VG_IMA_FAIL_BOOT_AGGREGATE : VG_IMA_FAIL_HASH;
        char found[2 * VG_HASH_MAX_SIZE + 1], expected[1024];

        if (s && vg_ima_map_allows(m, s, e->digest, e->digest_len))
                return true;
        if (boot && boot_aggregate_option(w->o, e->digest, e->digest_len))
                return true;
        hex_into(found, sizeof(found), e->digest, e->digest_len);
        if (!s && !(boot && w->o && w->o->n_boot_aggregates)) {
                if (m != &w->p->keyrings)
                        w->res->counts.fnf++;
                if (m == &w->p->digests)
                        report(w, fnf, e->line, e->path, NULL, found,
                               "File not found in allowlist: %s", e->path);
                else
                        report(w, m == &w->p->keyrings ? VG_IMA_FAIL_KEYRING : fnf, e->line,
                               e->path, NULL, found, "%s %s not found in the policy's %s",
                               m == &w->p->keyrings ? "Keyring" : "Buffer", e->path, table);
                return false;
        }
        allowed_list(expected, sizeof(expected), m, s);
        if (boot && w->o && w->o->n_boot_aggregates) {
                size_t o = strlen(expected);
                for (size_t i = 0; i < w->o->n_boot_aggregates && o + 140 < sizeof(expected); i++) {
                        o += (size_t)snprintf(expected + o, sizeof(expected) - o, "%s",
                                              o ? ", " : "");
                        hex_into(expected + o, sizeof(expected) - o, w->o->boot_aggregates[i],
                                 e->digest_len);
                        o = strlen(expected);
                }
        }
        if (m != &w->p->keyrings)
                w->res->counts.hash++;
        report(w, m == &w->p->keyrings ? VG_IMA_FAIL_KEYRING : hash, e->line, e->path, expected,
               found, "Hashes for %s %s don't match %s not in [%s]",
               m == &w->p->digests    ? "file"
               : m == &w->p->keyrings ? "keyring"
                                      : "buffer",
               e->path, found, expected);
        return false;
}

static bool keyring_ignored(const struct vg_ima_policy *p, const char *name)
{
        if (p->ignore_all_keyrings)
                return true;
        for (size_t i = 0; i < p->n_ignored; i++)
                if (strcmp(p->ignored_keyrings[i], name) == 0)
                        return true;
        return false;
}

/* ima-buf: a key measured onto a keyring is learned once its digest is allowed. */
static bool check_buf(struct walk *w, const struct vg_ima_entry *e)
{
        _cleanup_free_ uint8_t *spki = NULL;
        size_t spki_len;
        uint32_t keyid;
        int r = vg_ima_buf_key(e->buf, e->buf_len, &spki, &spki_len, &keyid);

        if (r == -ENOTSUP) {
                w->res->counts.keyring++;
                report(w, VG_IMA_FAIL_KEYRING, e->line, e->path, NULL, NULL,
                       "Key measured into keyring %s is neither an RSA nor an EC key", e->path);
                return false;
        }
        if (r <= 0)
                return !w->p || lookup(w, e, &w->p->imabuf, "ima-buf");
        if (w->p && keyring_ignored(w->p, e->path))
                return true;
        if (w->p && !lookup(w, e, &w->p->keyrings, "keyrings")) {
                w->res->counts.keyring++;
                return false;
        }
        if (vg_ima_keyring_add_spki(&w->st->learned, spki, spki_len, keyid, e->path) < 0) {
                w->res->counts.keyring++;
                report(w, VG_IMA_FAIL_KEYRING, e->line, e->path, NULL, NULL,
                       "Key measured into keyring %s could not be loaded", e->path);
                return false;
        }
        return true;
}

/* The policy's verdict on one parsed, non-violation entry. */
static void judge(struct walk *w, const struct vg_ima_entry *e)
{
        bool ok;

        if (!w->p) {
                if (e->tpl == VG_IMA_TPL_BUF)
                        check_buf(w, e);
                return;
        }
        if (excluded(w, e->path, e->path_len)) {
                w->res->counts.excluded++;
                return;
        }
        switch (e->tpl) {
        case VG_IMA_TPL_SIG:
                if (e->sig) {
                        const struct vg_ima_keyring *rings[] = { &w->p->vkeys, &w->st->learned };
                        if (vg_ima_sig_verify(rings, 2, e->sig, e->sig_len, e->digest_alg_name,
                                              e->digest, e->digest_len)) {
                                w->res->counts.good++;
                                return;
                        }
                }
                ok = lookup(w, e, &w->p->digests, "digests");
                break;
        case VG_IMA_TPL_BUF:
                ok = check_buf(w, e);
                break;
        default:
                ok = lookup(w, e, &w->p->digests, "digests");
        }
        if (ok)
                w->res->counts.good++;
}

int vg_ima_verify(const struct vg_ima_policy *p, struct vg_ima_state *st, const char *log,
                  size_t len, uint64_t first_entry, const uint8_t *quoted_pcr10,
                  const struct vg_ima_options *opts, struct vg_ima_result *res,
                  struct vg_error *err)
{
        struct parser ps = { 0 };
        struct md mlog = { 0 }, mbank = { 0 };
        struct walk w = { .p = p, .st = st, .o = opts, .res = res };
        enum vg_hash_alg log_alg;
        size_t bsize, lsize, off = 0, lineno = 0;
        uint8_t running[VG_HASH_MAX_SIZE], match_pcr[VG_HASH_MAX_SIZE];
        uint8_t tlog[VG_HASH_MAX_SIZE], tbank[VG_HASH_MAX_SIZE];
        uint64_t match_entry = 0;
        bool matched = false;
        int r = 0;

        if (!st || !res || (!log && len))
                return vg_error_set(err, -EINVAL, "vg_ima_verify: missing state, result or log");
        *res = (struct vg_ima_result){ 0 };
        log_alg = opts && opts->log_hash_alg_set ? opts->log_hash_alg
                  : p                            ? p->log_hash_alg
                                                 : VG_HASH_SHA1;
        if ((unsigned)log_alg >= VG_HASH_ALG_COUNT)
                return vg_error_set(err, -EINVAL, "vg_ima_verify: unknown log hash algorithm");
        bsize = vg_hash_size(st->bank);
        lsize = vg_hash_size(log_alg);

        if (first_entry != st->next_entry) {
                if (first_entry != 0) {
                        char found[32];
                        snprintf(found, sizeof(found), "%" PRIu64, first_entry);
                        w.entry = first_entry;
                        report(&w, VG_IMA_FAIL_ENTRY_NUMBER, 0, NULL, NULL, found,
                               "The measurement list starts at entry %" PRIu64
                               ", expected 0 or %" PRIu64,
                               first_entry, st->next_entry);
                        res->match_entry = st->next_entry;
                        return 0;
                }
                vg_ima_state_reset(st); /* the agent starts over: it rebooted */
        }
        if (md_open(&mlog, log_alg) < 0 || md_open(&mbank, st->bank) < 0) {
                r = vg_error_set(err, -ENOMEM, "vg_ima_verify: out of memory");
                goto out;
        }
        if (p && p->exclude_re &&
            !(w.md = pcre2_match_data_create_from_pattern(p->exclude_re, NULL))) {
                r = vg_error_set(err, -ENOMEM, "vg_ima_verify: out of memory");
                goto out;
        }
        memcpy(running, st->pcr, bsize);
        if (quoted_pcr10 && memcmp(running, quoted_pcr10, bsize) == 0) {
                matched = true;
                match_entry = first_entry;
                memcpy(match_pcr, running, bsize);
        }
        w.entry = first_entry;
        while (off < len) {
                const char *line = log + off, *nl = memchr(line, '\n', len - off);
                size_t llen = nl ? (size_t)(nl - line) : len - off;
                struct vg_ima_entry e;

                off += llen + (nl ? 1 : 0);
                lineno++;
                if (!llen)
                        continue;
                res->entries++;
                if (parse_line(&ps, line, llen, lineno, &e) < 0) {
                        res->counts.parse++;
                        report(&w, VG_IMA_FAIL_PARSE, lineno, NULL, NULL, NULL, "%s", ps.msg);
                        w.entry++;
                        continue;
                }
                if (p) {
                        w.path_hash = vg_ima_path_hash(e.path, e.path_len);
                        vg_ima_map_prefetch(&p->digests, w.path_hash);
                }
                if (e.violation) {
                        res->counts.violation++;
                        memset(tbank, 0xff, bsize);
                } else {
                        if (!md_hash2(&mlog, e.template_data, e.template_data_len, NULL, 0, tlog)) {
                                r = vg_error_set(err, -EIO, "vg_ima_verify: hashing failed");
                                goto out;
                        }
                        if (p)
                                vg_ima_map_prefetch2(&p->digests, w.path_hash);
                        if (st->bank == log_alg)
                                memcpy(tbank, tlog, bsize);
                        else if (!md_hash2(&mbank, e.template_data, e.template_data_len, NULL, 0,
                                           tbank)) {
                                r = vg_error_set(err, -EIO, "vg_ima_verify: hashing failed");
                                goto out;
                        }
                }
                if (!md_hash2(&mbank, running, bsize, tbank, bsize, running)) {
                        r = vg_error_set(err, -EIO, "vg_ima_verify: hashing failed");
                        goto out;
                }
                if (e.pcr != IMA_PCR) {
                        char found[8];
                        res->counts.pcr++;
                        snprintf(found, sizeof(found), "%u", e.pcr);
                        report(&w, VG_IMA_FAIL_PCR, lineno, e.path, "10", found,
                               "Entry for %s was measured into PCR %u, expected PCR 10", e.path,
                               e.pcr);
                } else if (e.violation) {
                        if (opts && opts->fail_on_violations) {
                                res->counts.violation_failed++;
                                report(&w, VG_IMA_FAIL_VIOLATION, lineno, e.path, NULL, NULL,
                                       "ToMToU or open-writers violation for %s", e.path);
                        }
                } else if (e.template_hash_len != lsize ||
                           memcmp(e.template_hash, tlog, lsize) != 0) {
                        char found[2 * VG_HASH_MAX_SIZE + 1], expected[2 * VG_HASH_MAX_SIZE + 1];
                        hex_into(found, sizeof(found), e.template_hash, e.template_hash_len);
                        hex_into(expected, sizeof(expected), tlog, lsize);
                        res->counts.template_hash++;
                        report(&w, VG_IMA_FAIL_TEMPLATE_HASH, lineno, e.path, expected, found,
                               "Template hash for %s does not match: the log says %s, the "
                               "template data hashes to %s (%s)",
                               e.path, found, expected, vg_hash_alg_name(log_alg));
                } else {
                        judge(&w, &e);
                }
                w.entry++;
                if (quoted_pcr10 && memcmp(running, quoted_pcr10, bsize) == 0) {
                        matched = true;
                        match_entry = w.entry;
                        memcpy(match_pcr, running, bsize);
                }
        }
        if (!quoted_pcr10) {
                match_entry = w.entry;
                memcpy(match_pcr, running, bsize);
                st->next_entry = match_entry;
                memcpy(st->pcr, match_pcr, bsize);
        } else if (matched) {
                st->next_entry = match_entry;
                memcpy(st->pcr, match_pcr, bsize);
        } else {
                char found[2 * VG_HASH_MAX_SIZE + 1], expected[2 * VG_HASH_MAX_SIZE + 1];
                hex_into(found, sizeof(found), running, bsize);
                hex_into(expected, sizeof(expected), quoted_pcr10, bsize);
                w.failures--; /* reported, but the caller decides (see ima.h) */
                report(&w, VG_IMA_FAIL_PCR_MISMATCH, 0, NULL, expected, found,
                       "IMA measurement list does not match TPM PCR 10 %s (%s replay of %" PRIu64
                       " entries ends at %s)",
                       expected, vg_hash_alg_name(st->bank), res->entries, found);
        }
        res->pcr_matched = matched || !quoted_pcr10;
        res->match_entry = matched || !quoted_pcr10 ? match_entry : st->next_entry;
        res->pass = w.failures == 0 && res->pcr_matched;
out:
        md_close(&mlog);
        md_close(&mbank);
        pcre2_match_data_free(w.md);
        free(ps.scratch);
        return r;
}
