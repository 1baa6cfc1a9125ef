/* vigil: UEFI structures inside TCG event logs: GUIDs, UEFI_VARIABLE_DATA, EFI_SIGNATURE_LISTs
 * (X.509 subjects through OpenSSL), device paths as UEFI text, GPT, image loads, and the
 * per-event-type decoding of TCG PC Client PFP 1.05 §10.4. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/x509.h>

#include "buf.h"
#include "cleanup.h"
#include "eventlog.h"

/* GUID text "aabbccdd-eeff-gghh-iijj-kkllmmnnoopp": first three fields little-endian. */
#define G(a, b, c, d0, d1, d2, d3, d4, d5, d6, d7)                                                 \
        {                                                                                          \
                {                                                                                  \
                        (a) & 0xff, (a) >> 8 & 0xff, (a) >> 16 & 0xff, (a) >> 24 & 0xff, (b)&0xff, \
                            (b) >> 8 & 0xff, (c)&0xff, (c) >> 8 & 0xff, d0, d1, d2, d3, d4, d5,    \
                            d6, d7                                                                 \
                }                                                                                  \
        }

const struct vg_efi_guid VG_EFI_GLOBAL_VARIABLE =
    G(0x8be4df61u, 0x93ca, 0x11d2, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c);
const struct vg_efi_guid VG_EFI_IMAGE_SECURITY_DATABASE =
    G(0xd719b2cbu, 0x3d3a, 0x4596, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f);
const struct vg_efi_guid VG_EFI_SHIM_LOCK =
    G(0x605dab50u, 0xe046, 0x4300, 0xab, 0xb6, 0x3d, 0xd8, 0x10, 0xdd, 0x8b, 0x23);
const struct vg_efi_guid VG_EFI_CERT_X509 =
    G(0xa5c059a1u, 0x94e4, 0x4aa7, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72);
const struct vg_efi_guid VG_EFI_CERT_SHA256 =
    G(0xc1c41626u, 0x504c, 0x4092, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28);

void vg_efi_guid_str(const struct vg_efi_guid *g, char out[VG_EFI_GUID_STR_LEN])
{
        const uint8_t *b = g->b;

        snprintf(out, VG_EFI_GUID_STR_LEN,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[3], b[2],
                 b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                 b[15]);
}

int vg_efi_guid_parse(const char *s, struct vg_efi_guid *out)
{
        /* byte order of the text's hex pairs in the in-memory GUID */
        static const int pos[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };
        int k = 0;

        if (strlen(s) != 36)
                return -EINVAL;
        for (int i = 0; i < 36;) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return -EINVAL;
                        i++;
                        continue;
                }
                if (!isxdigit((unsigned char)s[i]) || !isxdigit((unsigned char)s[i + 1]))
                        return -EINVAL;
                char hex[3] = { s[i], s[i + 1], 0 };
                out->b[pos[k++]] = (uint8_t)strtoul(hex, NULL, 16);
                i += 2;
        }
        return 0;
}

bool vg_efi_guid_eq(const struct vg_efi_guid *a, const struct vg_efi_guid *b)
{
        return memcmp(a->b, b->b, 16) == 0;
}

/* ---- small string builder ---- */

struct sb {
        char *p;
        size_t len, cap;
        bool oom;
};

static void sb_addn(struct sb *s, const char *p, size_t n)
{
        if (s->oom)
                return;
        if (s->len + n + 1 > s->cap) {
                size_t cap = s->cap ? s->cap : 64;
                while (cap < s->len + n + 1)
                        cap *= 2;
                char *np = realloc(s->p, cap);
                if (!np) {
                        s->oom = true;
                        return;
                }
                s->p = np;
                s->cap = cap;
        }
        memcpy(s->p + s->len, p, n);
        s->len += n;
        s->p[s->len] = 0;
}

__attribute__((format(printf, 2, 3))) static void sb_addf(struct sb *s, const char *fmt, ...)
{
        char tmp[256];
        va_list ap;

        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n > 0)
                sb_addn(s, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void sb_hex(struct sb *s, const uint8_t *p, size_t n)
{
        static const char x[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                char c[2] = { x[p[i] >> 4], x[p[i] & 15] };
                sb_addn(s, c, 2);
        }
}

static void sb_guid(struct sb *s, const uint8_t *p)
{
        char g[VG_EFI_GUID_STR_LEN];
        struct vg_efi_guid guid;

        memcpy(guid.b, p, 16);
        vg_efi_guid_str(&guid, g);
        sb_addn(s, g, 36);
}

/* Append UTF-8 of n UTF-16LE code units; stops at a NUL when stop_at_nul. Unpaired surrogates
 * become U+FFFD. */
static void sb_utf16(struct sb *s, const uint8_t *p, size_t units, bool stop_at_nul)
{
        for (size_t i = 0; i < units; i++) {
                uint32_t c = (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8;
                if (c == 0 && stop_at_nul)
                        break;
                if (c >= 0xD800 && c < 0xDC00 && i + 1 < units) {
                        uint32_t lo = (uint32_t)p[2 * i + 2] | (uint32_t)p[2 * i + 3] << 8;
                        if (lo >= 0xDC00 && lo < 0xE000) {
                                c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                                i++;
                        } else {
                                c = 0xFFFD;
                        }
                } else if (c >= 0xD800 && c < 0xE000) {
                        c = 0xFFFD;
                }
                char u[4];
                size_t n;
                if (c < 0x80) {
                        u[0] = (char)c;
                        n = 1;
                } else if (c < 0x800) {
                        u[0] = (char)(0xC0 | c >> 6);
                        u[1] = (char)(0x80 | (c & 0x3F));
                        n = 2;
                } else if (c < 0x10000) {
                        u[0] = (char)(0xE0 | c >> 12);
                        u[1] = (char)(0x80 | (c >> 6 & 0x3F));
                        u[2] = (char)(0x80 | (c & 0x3F));
                        n = 3;
                } else {
                        u[0] = (char)(0xF0 | c >> 18);
                        u[1] = (char)(0x80 | (c >> 12 & 0x3F));
                        u[2] = (char)(0x80 | (c >> 6 & 0x3F));
                        u[3] = (char)(0x80 | (c & 0x3F));
                        n = 4;
                }
                sb_addn(s, u, n);
        }
}

static char *sb_take(struct sb *s)
{
        if (s->oom) {
                free(s->p);
                return NULL;
        }
        if (!s->p)
                return strdup("");
        return s->p;
}

/* ---- UEFI_VARIABLE_DATA ---- */

int vg_efi_variable_parse(const uint8_t *p, size_t len, struct vg_efi_variable *out,
                          struct vg_error *err)
{
        struct vg_buf b = vg_buf_init(p, len);
        uint64_t name_len, data_len;

        memset(out, 0, sizeof(*out));
        if (!vg_buf_bytes(&b, out->guid.b, 16) || !vg_buf_u64le(&b, &name_len) ||
            !vg_buf_u64le(&b, &data_len))
                return vg_error_set(
                    err, -EINVAL, "UEFI_VARIABLE_DATA: %zu bytes, shorter than its 32-byte header",
                    len);
        if (name_len >= sizeof(out->name) / 4)
                return vg_error_set(
                    err, -EINVAL,
                    "UEFI_VARIABLE_DATA: name length %" PRIu64 " characters is over 31", name_len);
        if (name_len * 2 > b.len)
                return vg_error_set(err, -EINVAL,
                                    "UEFI_VARIABLE_DATA: name of %" PRIu64
                                    " characters exceeds the %zu bytes left",
                                    name_len, b.len);
        if (data_len > b.len - name_len * 2)
                return vg_error_set(err, -EINVAL,
                                    "UEFI_VARIABLE_DATA: data length %" PRIu64
                                    " exceeds the %zu bytes left",
                                    data_len, b.len - (size_t)name_len * 2);
        out->trailing = b.len - (size_t)name_len * 2 - (size_t)data_len;
        struct sb s = { 0 };
        sb_utf16(&s, b.p, name_len, true);
        if (s.oom)
                return -ENOMEM;
        if (s.p)
                snprintf(out->name, sizeof(out->name), "%s", s.p);
        free(s.p);
        out->data = b.p + name_len * 2;
        out->data_len = (size_t)data_len;
        return 0;
}

/* ---- EFI_SIGNATURE_LIST ---- */

static char *x509_name_text(const X509_NAME *name)
{
        BIO *bio = BIO_new(BIO_s_mem());
        char *ret = NULL, *p;
        long n;

        if (!bio)
                return NULL;
        if (X509_NAME_print_ex(bio, name, 0,
                               (XN_FLAG_ONELINE & ~XN_FLAG_SPC_EQ & ~ASN1_STRFLGS_ESC_MSB) |
                                   ASN1_STRFLGS_UTF8_CONVERT) >= 0) {
                n = BIO_get_mem_data(bio, &p);
                if (n >= 0)
                        ret = strndup(p, (size_t)n);
        }
        BIO_free(bio);
        return ret;
}

static int x509_names(const uint8_t *der, size_t len, char **subject, char **issuer)
{
        const unsigned char *q = der;
        X509 *x = d2i_X509(NULL, &q, (long)len);

        *subject = *issuer = NULL;
        if (!x)
                return -EINVAL;
        *subject = x509_name_text(X509_get_subject_name(x));
        *issuer = x509_name_text(X509_get_issuer_name(x));
        X509_free(x);
        return *subject && *issuer ? 0 : -ENOMEM;
}

void vg_efi_signatures_free(struct vg_efi_signature *sigs, size_t n_sigs)
{
        for (size_t i = 0; sigs && i < n_sigs; i++) {
                free(sigs[i].subject);
                free(sigs[i].issuer);
        }
        free(sigs);
}

int vg_efi_siglists_parse(const uint8_t *p, size_t len, struct vg_efi_signature **sigs,
                          size_t *n_sigs, struct vg_error *err)
{
        struct vg_buf b = vg_buf_init(p, len);
        struct vg_efi_signature *v = NULL;
        size_t n = 0, cap = 0;
        int r = 0;

        while (b.len > 0) {
                size_t list_off = vg_buf_offset(&b, p);
                struct vg_efi_guid type;
                uint32_t list_size, hdr_size, sig_size;
                struct vg_buf list;

                if (!vg_buf_bytes(&b, type.b, 16) || !vg_buf_u32le(&b, &list_size) ||
                    !vg_buf_u32le(&b, &hdr_size) || !vg_buf_u32le(&b, &sig_size)) {
                        r = vg_error_set(err, -EINVAL,
                                         "EFI_SIGNATURE_LIST at +%zu: truncated header", list_off);
                        break;
                }
                if (list_size < 28 || list_size - 28 > b.len) {
                        r = vg_error_set(err, -EINVAL,
                                         "EFI_SIGNATURE_LIST at +%zu: list size %" PRIu32
                                         " does not fit the %zu bytes left",
                                         list_off, list_size, b.len + 28);
                        break;
                }
                vg_buf_sub(&b, list_size - 28, &list);
                if (hdr_size > list.len || sig_size < 16 || (list.len - hdr_size) % sig_size != 0) {
                        r = vg_error_set(err, -EINVAL,
                                         "EFI_SIGNATURE_LIST at +%zu: header size %" PRIu32
                                         " and signature size %" PRIu32
                                         " do not divide the list of %" PRIu32 " bytes",
                                         list_off, hdr_size, sig_size, list_size);
                        break;
                }
                vg_buf_skip(&list, hdr_size);
                while (list.len > 0) {
                        if (n == cap) {
                                size_t ncap = cap ? cap * 2 : 8;
                                struct vg_efi_signature *nv = realloc(v, ncap * sizeof(*v));
                                if (!nv) {
                                        r = -ENOMEM;
                                        goto out;
                                }
                                v = nv;
                                cap = ncap;
                        }
                        struct vg_efi_signature *s = &v[n];
                        memset(s, 0, sizeof(*s));
                        s->type = type;
                        vg_buf_bytes(&list, s->owner.b, 16);
                        s->data = list.p;
                        s->data_len = sig_size - 16;
                        vg_buf_skip(&list, sig_size - 16);
                        n++;
                        if (vg_efi_guid_eq(&type, &VG_EFI_CERT_X509) &&
                            x509_names(s->data, s->data_len, &s->subject, &s->issuer) == -ENOMEM) {
                                r = -ENOMEM;
                                goto out;
                        }
                }
        }
out:
        if (r < 0) {
                vg_efi_signatures_free(v, n);
                *sigs = NULL;
                *n_sigs = 0;
                return r;
        }
        *sigs = v;
        *n_sigs = n;
        return 0;
}

/* ---- device paths (UEFI 2.9 §10.3, text forms §10.6) ---- */

static uint64_t le(const uint8_t *p, size_t n)
{
        uint64_t v = 0;
        for (size_t i = n; i-- > 0;)
                v = v << 8 | p[i];
        return v;
}

static void devnode_text(struct sb *s, uint8_t type, uint8_t sub, const uint8_t *d, size_t n)
{
#define NEED(k)                                                                                    \
        if (n < (k))                                                                               \
        goto unknown
        switch (type) {
        case 1: /* hardware */
                if (sub == 1) {
                        NEED(2);
                        sb_addf(s, "Pci(0x%X,0x%X)", d[1], d[0]);
                        return;
                }
                if (sub == 2) {
                        NEED(1);
                        sb_addf(s, "PcCard(0x%X)", d[0]);
                        return;
                }
                if (sub == 3) {
                        NEED(20);
                        sb_addf(s, "MemoryMapped(0x%X,0x%" PRIX64 ",0x%" PRIX64 ")",
                                (unsigned)le(d, 4), le(d + 4, 8), le(d + 12, 8));
                        return;
                }
                if (sub == 4) {
                        NEED(16);
                        sb_addn(s, "VenHw(", 6);
                        sb_guid(s, d);
                        if (n > 16) {
                                sb_addn(s, ",", 1);
                                sb_hex(s, d + 16, n - 16);
                        }
                        sb_addn(s, ")", 1);
                        return;
                }
                if (sub == 5) {
                        NEED(4);
                        sb_addf(s, "Ctrl(0x%X)", (unsigned)le(d, 4));
                        return;
                }
                break;
        case 2: /* ACPI */
                if (sub == 1) {
                        NEED(8);
                        uint32_t hid = (uint32_t)le(d, 4), uid = (uint32_t)le(d + 4, 4);
                        if (hid == 0x0A0341D0)
                                sb_addf(s, "PciRoot(0x%X)", uid);
                        else if (hid == 0x0A0841D0)
                                sb_addf(s, "PcieRoot(0x%X)", uid);
                        else if ((hid & 0xFFFF) == 0x41D0)
                                sb_addf(s, "Acpi(PNP%04X,0x%X)", hid >> 16, uid);
                        else
                                sb_addf(s, "Acpi(0x%08X,0x%X)", hid, uid);
                        return;
                }
                if (sub == 3) {
                        NEED(4);
                        sb_addf(s, "AcpiAdr(0x%X)", (unsigned)le(d, 4));
                        return;
                }
                break;
        case 3: /* messaging */
                switch (sub) {
                case 1:
                        NEED(4);
                        sb_addf(s, "Ata(%s,%s,0x%X)", d[0] ? "Secondary" : "Primary",
                                d[1] ? "Slave" : "Master", (unsigned)le(d + 2, 2));
                        return;
                case 2:
                        NEED(4);
                        sb_addf(s, "Scsi(0x%X,0x%X)", (unsigned)le(d, 2), (unsigned)le(d + 2, 2));
                        return;
                case 5:
                        NEED(2);
                        sb_addf(s, "USB(0x%X,0x%X)", d[0], d[1]);
                        return;
                case 11:
                        NEED(33);
                        sb_addn(s, "MAC(", 4);
                        sb_hex(s, d, d[32] == 0x01 || d[32] == 0x00 ? 6 : 32);
                        sb_addf(s, ",0x%X)", d[32]);
                        return;
                case 12:
                        NEED(8);
                        sb_addf(s, "IPv4(%u.%u.%u.%u)", d[4], d[5], d[6], d[7]);
                        return;
                case 13:
                        NEED(16);
                        sb_addn(s, "IPv6(", 5);
                        for (int i = 0; i < 16; i += 2)
                                sb_addf(s, "%s%x", i ? ":" : "", (unsigned)(d[i] << 8 | d[i + 1]));
                        sb_addn(s, ")", 1);
                        return;
                case 10:
                        NEED(16);
                        sb_addn(s, "VenMsg(", 7);
                        sb_guid(s, d);
                        if (n > 16) {
                                sb_addn(s, ",", 1);
                                sb_hex(s, d + 16, n - 16);
                        }
                        sb_addn(s, ")", 1);
                        return;
                case 17:
                        NEED(1);
                        sb_addf(s, "Unit(0x%X)", d[0]);
                        return;
                case 18:
                        NEED(6);
                        sb_addf(s, "Sata(0x%X,0x%X,0x%X)", (unsigned)le(d, 2),
                                (unsigned)le(d + 2, 2), (unsigned)le(d + 4, 2));
                        return;
                case 23:
                        NEED(12);
                        sb_addf(s, "NVMe(0x%X,", (unsigned)le(d, 4));
                        for (int i = 0; i < 8; i++)
                                sb_addf(s, "%s%02X", i ? "-" : "", d[4 + i]);
                        sb_addn(s, ")", 1);
                        return;
                case 24:
                        sb_addn(s, "Uri(", 4);
                        for (size_t i = 0; i < n; i++)
                                sb_addn(s, isprint(d[i]) ? (const char *)d + i : "?", 1);
                        sb_addn(s, ")", 1);
                        return;
                case 29:
                        NEED(1);
                        sb_addf(s, "eMMC(0x%X)", d[0]);
                        return;
                }
                break;
        case 4: /* media */
                switch (sub) {
                case 1:
                        NEED(38);
                        sb_addf(s, "HD(%u,", (unsigned)le(d, 4));
                        if (d[37] == 2) {
                                sb_addn(s, "GPT,", 4);
                                sb_guid(s, d + 20);
                        } else if (d[37] == 1) {
                                sb_addf(s, "MBR,0x%08X", (unsigned)le(d + 20, 4));
                        } else {
                                sb_addf(s, "%u,", d[37]);
                                sb_hex(s, d + 20, 16);
                        }
                        sb_addf(s, ",0x%" PRIX64 ",0x%" PRIX64 ")", le(d + 4, 8), le(d + 12, 8));
                        return;
                case 2:
                        NEED(20);
                        sb_addf(s, "CDROM(0x%X,0x%" PRIX64 ",0x%" PRIX64 ")", (unsigned)le(d, 4),
                                le(d + 4, 8), le(d + 12, 8));
                        return;
                case 3:
                        NEED(16);
                        sb_addn(s, "VenMedia(", 9);
                        sb_guid(s, d);
                        if (n > 16) {
                                sb_addn(s, ",", 1);
                                sb_hex(s, d + 16, n - 16);
                        }
                        sb_addn(s, ")", 1);
                        return;
                case 4:
                        sb_utf16(s, d, n / 2, true);
                        return;
                case 6:
                        NEED(16);
                        sb_addn(s, "FvFile(", 7);
                        sb_guid(s, d);
                        sb_addn(s, ")", 1);
                        return;
                case 7:
                        NEED(16);
                        sb_addn(s, "Fv(", 3);
                        sb_guid(s, d);
                        sb_addn(s, ")", 1);
                        return;
                case 8:
                        NEED(20);
                        sb_addf(s, "Offset(0x%" PRIX64 ",0x%" PRIX64 ")", le(d + 4, 8),
                                le(d + 12, 8));
                        return;
                }
                break;
        case 5: /* BIOS boot specification */
                if (sub == 1) {
                        NEED(4);
                        sb_addf(s, "BBS(0x%X,", (unsigned)le(d, 2));
                        for (size_t i = 4; i < n && d[i]; i++)
                                sb_addn(s, isprint(d[i]) ? (const char *)d + i : "?", 1);
                        sb_addn(s, ")", 1);
                        return;
                }
                break;
        }
unknown:
        sb_addf(s, "Path(%u,%u", type, sub);
        if (n) {
                sb_addn(s, ",", 1);
                sb_hex(s, d, n);
        }
        sb_addn(s, ")", 1);
#undef NEED
}

int vg_efi_devpath_text(const uint8_t *p, size_t len, char **out, struct vg_error *err)
{
        struct vg_buf b = vg_buf_init(p, len);
        struct sb s = { 0 };
        bool first = true;

        *out = NULL;
        while (b.len > 0) {
                size_t off = vg_buf_offset(&b, p);
                uint8_t type, sub;
                uint16_t nlen;
                if (!vg_buf_u8(&b, &type) || !vg_buf_u8(&b, &sub) || !vg_buf_u16le(&b, &nlen)) {
                        free(s.p);
                        return vg_error_set(err, -EINVAL,
                                            "device path node at +%zu: truncated header", off);
                }
                if (nlen < 4 || nlen - 4u > b.len) {
                        free(s.p);
                        return vg_error_set(err, -EINVAL,
                                            "device path node at +%zu: length %u does not fit "
                                            "the %zu bytes left",
                                            off, nlen, b.len + 4);
                }
                const uint8_t *d = b.p;
                vg_buf_skip(&b, nlen - 4u);
                if (type == 0x7F && sub == 0xFF)
                        break; /* end of the entire path */
                if (type == 0x7F) {
                        sb_addn(&s, ",", 1); /* end of this instance */
                        first = true;
                        continue;
                }
                if (!first)
                        sb_addn(&s, "/", 1);
                first = false;
                devnode_text(&s, type, sub, d, nlen - 4u);
        }
        *out = sb_take(&s);
        return *out ? 0 : -ENOMEM;
}

/* ---- per-event decoding ---- */

static bool printable_ascii(const uint8_t *p, size_t n)
{
        if (n == 0)
                return false;
        while (n > 0 && p[n - 1] == 0) /* trailing NULs are common */
                n--;
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(p[i] >= 0x20 && p[i] < 0x7F) && p[i] != '\n' && p[i] != '\t' && p[i] != '\r')
                        return false;
        return true;
}

static bool utf16_text(const uint8_t *p, size_t n)
{
        if (n < 2 || n % 2)
                return false;
        size_t units = n / 2;
        while (units > 0 && p[2 * units - 2] == 0 && p[2 * units - 1] == 0)
                units--;
        if (units == 0)
                return false;
        for (size_t i = 0; i < units; i++) {
                uint16_t c = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
                /* firmware strings are ASCII or Latin-1 in UTF-16; anything else is more
                 * likely binary (a GUID, a hash) that happens to have an even length */
                if (c < 0x20 && c != '\n' && c != '\t' && c != '\r')
                        return false;
                if (c >= 0x7F && c < 0xA0)
                        return false;
                if (c > 0xFF)
                        return false;
        }
        return true;
}

static char *ascii_dup(const uint8_t *p, size_t n)
{
        while (n > 0 && p[n - 1] == 0)
                n--;
        return strndup((const char *)p, n);
}

static char *utf16_dup(const uint8_t *p, size_t n)
{
        struct sb s = { 0 };
        sb_utf16(&s, p, n / 2, true);
        return sb_take(&s);
}

static void note(struct vg_error *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct vg_error *n, const char *fmt, ...)
{
        va_list ap;
        if (!n)
                return;
        va_start(ap, fmt);
        vg_error_setv(n, -EINVAL, fmt, ap);
        va_end(ap);
}

void vg_evlog_decoded_clear(struct vg_evlog_decoded *d)
{
        free(d->text);
        vg_efi_signatures_free(d->sigs, d->n_sigs);
        free(d->boot_order);
        free(d->boot_option.description);
        free(d->boot_option.device_path);
        free(d->image.device_path);
        free(d->gpt.partitions);
        memset(d, 0, sizeof(*d));
        d->secure_boot = -1;
}

static bool name_is(const struct vg_efi_variable *v, const char *name)
{
        return strcmp(v->name, name) == 0;
}

static bool is_boot_option_name(const char *n)
{
        return strlen(n) == 8 && strncmp(n, "Boot", 4) == 0 && isxdigit((unsigned char)n[4]) &&
               isxdigit((unsigned char)n[5]) && isxdigit((unsigned char)n[6]) &&
               isxdigit((unsigned char)n[7]);
}

/* EFI_SIGNATURE_DATA (owner + data) of EV_EFI_VARIABLE_AUTHORITY, or a bare DER certificate
 * (shim logs its vendor certificate so). */
static int decode_authority(struct vg_evlog_decoded *d)
{
        const uint8_t *p = d->var.data;
        size_t n = d->var.data_len;
        struct vg_efi_signature s = { 0 };

        if (n > 16 + 4 && p[16] == 0x30 && p[17] == 0x82) {
                memcpy(s.owner.b, p, 16);
                s.data = p + 16;
                s.data_len = n - 16;
        } else if (n > 4 && p[0] == 0x30 && p[1] == 0x82) {
                s.data = p;
                s.data_len = n;
        } else if (n == 16 + 32) {
                memcpy(s.owner.b, p, 16);
                s.type = VG_EFI_CERT_SHA256;
                s.data = p + 16;
                s.data_len = 32;
        } else {
                return 0;
        }
        if (!s.data_len)
                return 0;
        int r = x509_names(s.data, s.data_len, &s.subject, &s.issuer);
        if (r == -ENOMEM)
                return r;
        if (r == 0)
                s.type = VG_EFI_CERT_X509;
        else if (s.data_len != 32) /* neither a certificate nor a hash: leave it raw */
                return 0;
        d->sigs = calloc(1, sizeof(*d->sigs));
        if (!d->sigs) {
                free(s.subject);
                free(s.issuer);
                return -ENOMEM;
        }
        d->sigs[0] = s;
        d->n_sigs = 1;
        return 0;
}

static int decode_variable(const struct vg_evlog_event *ev, struct vg_evlog_decoded *d,
                           struct vg_error *nt)
{
        struct vg_error e = { 0 };
        int r;

        r = vg_efi_variable_parse(ev->data, ev->data_len, &d->var, &e);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                note(nt, "%s", e.msg);
                return 0;
        }
        d->kind = VG_EVD_VARIABLE;
        const struct vg_efi_variable *v = &d->var;
        if (v->trailing)
                note(nt,
                     "UEFI_VARIABLE_DATA: %zu bytes after the %zu bytes of VariableData "
                     "(a known shim quirk)",
                     v->trailing, v->data_len);
        if ((name_is(v, "SecureBoot") || name_is(v, "SetupMode") || name_is(v, "AuditMode") ||
             name_is(v, "DeployedMode")) &&
            v->data_len == 1) {
                d->secure_boot = v->data[0];
                return 0;
        }
        if (ev->type == VG_EV_EFI_VARIABLE_AUTHORITY) {
                if (name_is(v, "SbatLevel")) {
                        d->text = ascii_dup(v->data, v->data_len);
                        return d->text ? 0 : -ENOMEM;
                }
                return decode_authority(d);
        }
        if (name_is(v, "PK") || name_is(v, "KEK") || name_is(v, "db") || name_is(v, "dbx") ||
            name_is(v, "dbt") || name_is(v, "dbr") || strncmp(v->name, "MokList", 7) == 0) {
                r = vg_efi_siglists_parse(v->data, v->data_len, &d->sigs, &d->n_sigs, &e);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        note(nt, "variable %s: %s", v->name, e.msg);
                return 0;
        }
        if (name_is(v, "BootOrder")) {
                if (v->data_len % 2) {
                        note(nt, "BootOrder: odd length %zu", v->data_len);
                        return 0;
                }
                d->n_boot_order = v->data_len / 2;
                d->boot_order = calloc(d->n_boot_order + 1, sizeof(uint16_t));
                if (!d->boot_order)
                        return -ENOMEM;
                for (size_t i = 0; i < d->n_boot_order; i++)
                        d->boot_order[i] = (uint16_t)le(v->data + 2 * i, 2);
                return 0;
        }
        if (is_boot_option_name(v->name)) {
                /* EFI_LOAD_OPTION (UEFI 2.9 §3.1.3) */
                struct vg_buf b = vg_buf_init(v->data, v->data_len);
                uint32_t attr;
                uint16_t fplen;
                if (!vg_buf_u32le(&b, &attr) || !vg_buf_u16le(&b, &fplen)) {
                        note(nt, "%s: EFI_LOAD_OPTION truncated", v->name);
                        return 0;
                }
                size_t units = 0;
                while (2 * units + 1 < b.len && (b.p[2 * units] || b.p[2 * units + 1]))
                        units++;
                if (2 * units + 1 >= b.len) {
                        note(nt, "%s: description not NUL-terminated", v->name);
                        return 0;
                }
                const uint8_t *desc = b.p;
                vg_buf_skip(&b, 2 * units + 2);
                if (fplen > b.len) {
                        note(nt, "%s: FilePathListLength %u exceeds the %zu bytes left", v->name,
                             fplen, b.len);
                        return 0;
                }
                char *dp = NULL;
                r = vg_efi_devpath_text(b.p, fplen, &dp, &e);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        note(nt, "%s: %s", v->name, e.msg);
                        return 0;
                }
                d->boot_option.present = true;
                d->boot_option.attributes = attr;
                d->boot_option.device_path = dp;
                d->boot_option.description = utf16_dup(desc, 2 * units);
                return d->boot_option.description ? 0 : -ENOMEM;
        }
        return 0;
}

static int decode_image(const struct vg_evlog_event *ev, struct vg_evlog_decoded *d,
                        struct vg_error *nt)
{
        struct vg_buf b = vg_buf_init(ev->data, ev->data_len);
        uint64_t dplen;
        struct vg_error e = { 0 };

        if (!vg_buf_u64le(&b, &d->image.location) || !vg_buf_u64le(&b, &d->image.length) ||
            !vg_buf_u64le(&b, &d->image.link_address) || !vg_buf_u64le(&b, &dplen)) {
                note(nt, "UEFI_IMAGE_LOAD_EVENT: %u bytes, shorter than its 32-byte header",
                     ev->data_len);
                return 0;
        }
        if (dplen > b.len) {
                note(nt,
                     "UEFI_IMAGE_LOAD_EVENT: device path length %" PRIu64
                     " exceeds the %zu bytes left",
                     dplen, b.len);
                return 0;
        }
        d->kind = VG_EVD_IMAGE;
        if (dplen == 0)
                return 0;
        int r = vg_efi_devpath_text(b.p, (size_t)dplen, &d->image.device_path, &e);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                note(nt, "%s", e.msg);
        return 0;
}

static int decode_gpt(const struct vg_evlog_event *ev, struct vg_evlog_decoded *d,
                      struct vg_error *nt)
{
        const uint8_t *p = ev->data;
        size_t n = ev->data_len;

        /* UEFI_GPT_DATA: EFI_PARTITION_TABLE_HEADER (92 bytes), UINT64 NumberOfPartitions,
         * then the entries, each SizeOfPartitionEntry bytes. */
        if (n < 100 || memcmp(p, "EFI PART", 8) != 0) {
                note(nt, "UEFI_GPT_DATA: no \"EFI PART\" header in %zu bytes", n);
                return 0;
        }
        uint32_t hdr_size = (uint32_t)le(p + 12, 4);
        uint32_t entry_size = (uint32_t)le(p + 84, 4);
        uint64_t count = le(p + 92, 8);
        if (hdr_size != 92) {
                note(nt, "UEFI_GPT_DATA: header size %u, expected 92", hdr_size);
                return 0;
        }
        if (entry_size < 128 || entry_size > 4096 || count > (n - 100) / entry_size ||
            count * entry_size != n - 100) {
                note(nt,
                     "UEFI_GPT_DATA: %" PRIu64 " entries of %u bytes do not fill the %zu bytes"
                     " left",
                     count, entry_size, n - 100);
                return 0;
        }
        d->kind = VG_EVD_GPT;
        memcpy(d->gpt.disk_guid.b, p + 56, 16);
        d->gpt.my_lba = le(p + 24, 8);
        d->gpt.first_usable_lba = le(p + 40, 8);
        d->gpt.last_usable_lba = le(p + 48, 8);
        d->gpt.n_partitions = (size_t)count;
        if (count == 0)
                return 0;
        d->gpt.partitions = calloc((size_t)count, sizeof(*d->gpt.partitions));
        if (!d->gpt.partitions)
                return -ENOMEM;
        for (size_t i = 0; i < count; i++) {
                const uint8_t *e = p + 100 + i * entry_size;
                struct vg_efi_gpt_partition *part = &d->gpt.partitions[i];
                memcpy(part->type_guid.b, e, 16);
                memcpy(part->unique_guid.b, e + 16, 16);
                part->first_lba = le(e + 32, 8);
                part->last_lba = le(e + 40, 8);
                part->attributes = le(e + 48, 8);
                struct sb s = { 0 };
                sb_utf16(&s, e + 56, 36, true);
                if (s.oom)
                        return -ENOMEM;
                snprintf(part->name, sizeof(part->name), "%s", s.p ? s.p : "");
                free(s.p);
        }
        return 0;
}

static int decode_ipl(const struct vg_evlog_event *ev, struct vg_evlog_decoded *d)
{
        const uint8_t *p = ev->data;
        size_t n = ev->data_len;
        static const char grub_cmd[] = "grub_cmd: ", kcmd[] = "kernel_cmdline: ";

        if (printable_ascii(p, n)) {
                d->kind = VG_EVD_IPL;
                d->text = ascii_dup(p, n);
                if (!d->text)
                        return -ENOMEM;
                char *t = d->text;
                if (strncmp(t, grub_cmd, sizeof(grub_cmd) - 1) == 0) {
                        d->ipl_kind = VG_IPL_GRUB_CMD;
                        memmove(t, t + sizeof(grub_cmd) - 1, strlen(t) - sizeof(grub_cmd) + 2);
                } else if (strncmp(t, kcmd, sizeof(kcmd) - 1) == 0) {
                        d->ipl_kind = VG_IPL_KERNEL_CMDLINE;
                        memmove(t, t + sizeof(kcmd) - 1, strlen(t) - sizeof(kcmd) + 2);
                } else if (strncmp(t, "MokList", 7) == 0 && ev->pcr == 14) {
                        d->ipl_kind = VG_IPL_MOK;
                } else if (ev->pcr == 9 && (t[0] == '/' || t[0] == '(')) {
                        d->ipl_kind = VG_IPL_PATH;
                } else {
                        d->ipl_kind = VG_IPL_STRING;
                }
                return 0;
        }
        if (utf16_text(p, n)) {
                d->kind = VG_EVD_IPL;
                d->text = utf16_dup(p, n);
                if (!d->text)
                        return -ENOMEM;
                /* systemd-boot measures the kernel command line as UTF-16 (PCR 12; PCR 8 in
                 * older versions). */
                d->ipl_kind =
                    (ev->pcr == 8 || ev->pcr == 12) ? VG_IPL_KERNEL_CMDLINE : VG_IPL_STRING;
                return 0;
        }
        return 0;
}

static int decode_no_action(const struct vg_evlog *log, const struct vg_evlog_event *ev,
                            struct vg_evlog_decoded *d)
{
        const uint8_t *p = ev->data;
        size_t n = ev->data_len;

        if (ev->index == 0 && log->format == VG_EVLOG_FORMAT_CRYPTO_AGILE) {
                d->kind = VG_EVD_SPECID;
                d->text = strdup(log->spec_signature);
                return d->text ? 0 : -ENOMEM;
        }
        if (n == 17 && memcmp(p, "StartupLocality\0", 16) == 0) {
                d->kind = VG_EVD_STARTUP_LOCALITY;
                d->locality = p[16];
                return 0;
        }
        if (n >= 16) {
                size_t k = 0;
                while (k < 16 && p[k] >= 0x20 && p[k] < 0x7F)
                        k++;
                if (k >= 8 && (k == 16 || p[k] == 0)) {
                        /* "SP800-155 Event", "SP800-155 Event3", "NvIndexInstance",
                         * "NvIndexDynamic", "Spec ID Event03" (repeated), ... */
                        d->kind = VG_EVD_NO_ACTION;
                        d->text = strndup((const char *)p, k);
                        return d->text ? 0 : -ENOMEM;
                }
        }
        return 0;
}

static int decode_blob(const struct vg_evlog_event *ev, struct vg_evlog_decoded *d, bool two,
                       struct vg_error *nt)
{
        struct vg_buf b = vg_buf_init(ev->data, ev->data_len);
        uint8_t dlen = 0;
        const uint8_t *desc = NULL;

        if (two) {
                if (!vg_buf_u8(&b, &dlen) || b.len < dlen) {
                        note(nt, "UEFI_PLATFORM_FIRMWARE_BLOB2: truncated description");
                        return 0;
                }
                desc = b.p;
                vg_buf_skip(&b, dlen);
        }
        if (!vg_buf_u64le(&b, &d->blob.base) || !vg_buf_u64le(&b, &d->blob.length) || b.len) {
                note(nt, "UEFI_PLATFORM_FIRMWARE_BLOB%s: expected %s16 bytes of base and length",
                     two ? "2" : "", two ? "description + " : "");
                return 0;
        }
        d->kind = VG_EVD_BLOB;
        if (desc) {
                struct sb s = { 0 };
                for (size_t i = 0; i < dlen && desc[i]; i++)
                        sb_addn(&s,
                                desc[i] >= 0x20 && desc[i] < 0x7F ? (const char *)desc + i : "?",
                                1);
                d->text = sb_take(&s);
                if (!d->text)
                        return -ENOMEM;
        }
        return 0;
}

static int decode_handoff(const struct vg_evlog_event *ev, struct vg_evlog_decoded *d, bool two,
                          struct vg_error *nt)
{
        struct vg_buf b = vg_buf_init(ev->data, ev->data_len);
        uint8_t dlen = 0;
        const uint8_t *desc = NULL;
        uint64_t count;

        if (two) {
                if (!vg_buf_u8(&b, &dlen) || b.len < dlen) {
                        note(nt, "UEFI_HANDOFF_TABLE_POINTERS2: truncated description");
                        return 0;
                }
                desc = b.p;
                vg_buf_skip(&b, dlen);
        }
        if (!vg_buf_u64le(&b, &count) || count == 0 || count > b.len / 24 || count * 24 != b.len) {
                note(nt, "UEFI_HANDOFF_TABLE_POINTERS: table count does not match the %u bytes",
                     ev->data_len);
                return 0;
        }
        d->kind = VG_EVD_HANDOFF;
        d->handoff.n_tables = (size_t)count;
        memcpy(d->handoff.first_guid.b, b.p, 16);
        if (desc) {
                d->text = printable_ascii(desc, dlen) ? ascii_dup(desc, dlen) : strdup("");
                if (!d->text)
                        return -ENOMEM;
        }
        return 0;
}

int vg_evlog_decode(const struct vg_evlog *log, const struct vg_evlog_event *ev,
                    struct vg_evlog_decoded *d, struct vg_error *nt)
{
        const uint8_t *p = ev->data;
        size_t n = ev->data_len;
        int r = 0;

        memset(d, 0, sizeof(*d));
        d->secure_boot = -1;
        switch (ev->type) {
        case VG_EV_NO_ACTION:
                r = decode_no_action(log, ev, d);
                break;
        case VG_EV_SEPARATOR:
                if (n == 4) {
                        d->kind = VG_EVD_SEPARATOR;
                        d->separator_value = (uint32_t)le(p, 4);
                        d->separator_error =
                            d->separator_value == 0xFFFFFFFF || d->separator_value == 1;
                } else if (printable_ascii(p, n)) {
                        d->kind = VG_EVD_TEXT;
                        d->text = ascii_dup(p, n);
                        r = d->text ? 0 : -ENOMEM;
                } else {
                        note(nt, "separator of %zu bytes, expected 4", n);
                }
                break;
        case VG_EV_EFI_VARIABLE_DRIVER_CONFIG:
        case VG_EV_EFI_VARIABLE_BOOT:
        case VG_EV_EFI_VARIABLE_BOOT2:
        case VG_EV_EFI_VARIABLE_AUTHORITY:
                r = decode_variable(ev, d, nt);
                break;
        case VG_EV_EFI_BOOT_SERVICES_APPLICATION:
        case VG_EV_EFI_BOOT_SERVICES_DRIVER:
        case VG_EV_EFI_RUNTIME_SERVICES_DRIVER:
                r = decode_image(ev, d, nt);
                break;
        case VG_EV_EFI_GPT_EVENT:
        case VG_EV_EFI_GPT_EVENT2:
                r = decode_gpt(ev, d, nt);
                break;
        case VG_EV_IPL:
                r = decode_ipl(ev, d);
                break;
        case VG_EV_EFI_PLATFORM_FIRMWARE_BLOB:
                r = decode_blob(ev, d, false, nt);
                break;
        case VG_EV_EFI_PLATFORM_FIRMWARE_BLOB2:
                r = decode_blob(ev, d, true, nt);
                break;
        case VG_EV_EFI_HANDOFF_TABLES:
                r = decode_handoff(ev, d, false, nt);
                break;
        case VG_EV_EFI_HANDOFF_TABLES2:
                r = decode_handoff(ev, d, true, nt);
                break;
        case VG_EV_EVENT_TAG:
                if (n >= 8 && le(p + 4, 4) <= n - 8) {
                        d->kind = VG_EVD_TAGGED;
                        d->tagged.id = (uint32_t)le(p, 4);
                        d->tagged.len = (uint32_t)le(p + 4, 4);
                        d->tagged.data = p + 8;
                } else {
                        note(nt, "TCG_PCClientTaggedEvent: size does not fit the %zu bytes", n);
                }
                break;
        case VG_EV_POST_CODE:
                if (n == 16) {
                        r = decode_blob(ev, d, false, nt);
                        break;
                }
                /* otherwise often a string such as "ACPI DATA" */
                __attribute__((fallthrough));
        case VG_EV_EFI_ACTION:
        case VG_EV_ACTION:
        case VG_EV_S_CRTM_VERSION:
        case VG_EV_S_CRTM_CONTENTS:
        case VG_EV_EFI_HCRTM_EVENT:
        case VG_EV_COMPACT_HASH:
        case VG_EV_PLATFORM_CONFIG_FLAGS:
        case VG_EV_TABLE_OF_DEVICES:
        case VG_EV_NONHOST_INFO:
        case VG_EV_OMIT_BOOT_DEVICE_EVENTS:
                if (printable_ascii(p, n)) {
                        d->kind = VG_EVD_TEXT;
                        d->text = ascii_dup(p, n);
                        r = d->text ? 0 : -ENOMEM;
                } else if (utf16_text(p, n)) {
                        d->kind = VG_EVD_TEXT;
                        d->text = utf16_dup(p, n);
                        r = d->text ? 0 : -ENOMEM;
                }
                break;
        case VG_EV_EFI_SPDM_FIRMWARE_BLOB:
        case VG_EV_EFI_SPDM_FIRMWARE_CONFIG:
        case VG_EV_EFI_SPDM_DEVICE_POLICY:
        case VG_EV_EFI_SPDM_DEVICE_AUTHORITY:
                /* TCG_DEVICE_SECURITY_EVENT_DATA starts with a 16-byte signature
                 * ("SPDM Device Sec", "SPDM Device Sec2"); the rest stays raw. */
                if (n >= 16) {
                        size_t k = 0;
                        while (k < 16 && p[k] >= 0x20 && p[k] < 0x7F)
                                k++;
                        d->kind = VG_EVD_SPDM;
                        d->text = strndup((const char *)p, k);
                        r = d->text ? 0 : -ENOMEM;
                }
                break;
        default:
                break;
        }
        if (r < 0)
                vg_evlog_decoded_clear(d);
        return r;
}
