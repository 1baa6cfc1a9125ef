/* vigil: TCG PC Client PFP event logs: the strict parser (SHA-1 and crypto-agile formats),
 * PCR replay into every bank with checks against quoted values, and text/JSON rendering. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "buf.h"
#include "cleanup.h"
#include "eventlog.h"

static const struct {
        uint32_t type;
        const char *name;
} type_names[] = {
        { VG_EV_PREBOOT_CERT, "EV_PREBOOT_CERT" },
        { VG_EV_POST_CODE, "EV_POST_CODE" },
        { VG_EV_UNUSED, "EV_UNUSED" },
        { VG_EV_NO_ACTION, "EV_NO_ACTION" },
        { VG_EV_SEPARATOR, "EV_SEPARATOR" },
        { VG_EV_ACTION, "EV_ACTION" },
        { VG_EV_EVENT_TAG, "EV_EVENT_TAG" },
        { VG_EV_S_CRTM_CONTENTS, "EV_S_CRTM_CONTENTS" },
        { VG_EV_S_CRTM_VERSION, "EV_S_CRTM_VERSION" },
        { VG_EV_CPU_MICROCODE, "EV_CPU_MICROCODE" },
        { VG_EV_PLATFORM_CONFIG_FLAGS, "EV_PLATFORM_CONFIG_FLAGS" },
        { VG_EV_TABLE_OF_DEVICES, "EV_TABLE_OF_DEVICES" },
        { VG_EV_COMPACT_HASH, "EV_COMPACT_HASH" },
        { VG_EV_IPL, "EV_IPL" },
        { VG_EV_IPL_PARTITION_DATA, "EV_IPL_PARTITION_DATA" },
        { VG_EV_NONHOST_CODE, "EV_NONHOST_CODE" },
        { VG_EV_NONHOST_CONFIG, "EV_NONHOST_CONFIG" },
        { VG_EV_NONHOST_INFO, "EV_NONHOST_INFO" },
        { VG_EV_OMIT_BOOT_DEVICE_EVENTS, "EV_OMIT_BOOT_DEVICE_EVENTS" },
        { VG_EV_POST_CODE2, "EV_POST_CODE2" },
        { VG_EV_EFI_EVENT_BASE, "EV_EFI_EVENT_BASE" },
        { VG_EV_EFI_VARIABLE_DRIVER_CONFIG, "EV_EFI_VARIABLE_DRIVER_CONFIG" },
        { VG_EV_EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT" },
        { VG_EV_EFI_BOOT_SERVICES_APPLICATION, "EV_EFI_BOOT_SERVICES_APPLICATION" },
        { VG_EV_EFI_BOOT_SERVICES_DRIVER, "EV_EFI_BOOT_SERVICES_DRIVER" },
        { VG_EV_EFI_RUNTIME_SERVICES_DRIVER, "EV_EFI_RUNTIME_SERVICES_DRIVER" },
        { VG_EV_EFI_GPT_EVENT, "EV_EFI_GPT_EVENT" },
        { VG_EV_EFI_ACTION, "EV_EFI_ACTION" },
        { VG_EV_EFI_PLATFORM_FIRMWARE_BLOB, "EV_EFI_PLATFORM_FIRMWARE_BLOB" },
        { VG_EV_EFI_HANDOFF_TABLES, "EV_EFI_HANDOFF_TABLES" },
        { VG_EV_EFI_PLATFORM_FIRMWARE_BLOB2, "EV_EFI_PLATFORM_FIRMWARE_BLOB2" },
        { VG_EV_EFI_HANDOFF_TABLES2, "EV_EFI_HANDOFF_TABLES2" },
        { VG_EV_EFI_VARIABLE_BOOT2, "EV_EFI_VARIABLE_BOOT2" },
        { VG_EV_EFI_GPT_EVENT2, "EV_EFI_GPT_EVENT2" },
        { VG_EV_EFI_HCRTM_EVENT, "EV_EFI_HCRTM_EVENT" },
        { VG_EV_EFI_VARIABLE_AUTHORITY, "EV_EFI_VARIABLE_AUTHORITY" },
        { VG_EV_EFI_SPDM_FIRMWARE_BLOB, "EV_EFI_SPDM_FIRMWARE_BLOB" },
        { VG_EV_EFI_SPDM_FIRMWARE_CONFIG, "EV_EFI_SPDM_FIRMWARE_CONFIG" },
        { VG_EV_EFI_SPDM_DEVICE_POLICY, "EV_EFI_SPDM_DEVICE_POLICY" },
        { VG_EV_EFI_SPDM_DEVICE_AUTHORITY, "EV_EFI_SPDM_DEVICE_AUTHORITY" },
};

const char *vg_evlog_type_name(uint32_t type)
{
        for (size_t i = 0; i < VG_ARRAY_SIZE(type_names); i++)
                if (type_names[i].type == type)
                        return type_names[i].name;
        return NULL;
}

static const struct {
        uint16_t id;
        uint16_t size;
        const char *name;
        const char *ossl; /* OpenSSL digest name */
} algs[] = {
        { VG_EVLOG_ALG_SHA1, 20, "sha1", "SHA1" },
        { VG_EVLOG_ALG_SHA256, 32, "sha256", "SHA256" },
        { VG_EVLOG_ALG_SHA384, 48, "sha384", "SHA384" },
        { VG_EVLOG_ALG_SHA512, 64, "sha512", "SHA512" },
        { VG_EVLOG_ALG_SM3_256, 32, "sm3_256", "SM3" },
        { VG_EVLOG_ALG_SHA3_256, 32, "sha3_256", "SHA3-256" },
        { VG_EVLOG_ALG_SHA3_384, 48, "sha3_384", "SHA3-384" },
        { VG_EVLOG_ALG_SHA3_512, 64, "sha3_512", "SHA3-512" },
};

static int alg_index(uint16_t id)
{
        for (size_t i = 0; i < VG_ARRAY_SIZE(algs); i++)
                if (algs[i].id == id)
                        return (int)i;
        return -1;
}

const char *vg_evlog_alg_name(uint16_t alg_id)
{
        int i = alg_index(alg_id);
        return i < 0 ? NULL : algs[i].name;
}

int vg_evlog_alg_from_name(const char *name, uint16_t *alg_id)
{
        for (size_t i = 0; i < VG_ARRAY_SIZE(algs); i++)
                if (strcasecmp(algs[i].name, name) == 0) {
                        *alg_id = algs[i].id;
                        return 0;
                }
        return -EINVAL;
}

/* "sha256" or "alg 0x1234" for messages */
static const char *alg_label(uint16_t id, char buf[16])
{
        const char *n = vg_evlog_alg_name(id);
        if (n)
                return n;
        snprintf(buf, 16, "alg 0x%04x", id);
        return buf;
}

/* ---------------------------------------------------------------------------------------- */
/* Parser */

void vg_evlog_free(struct vg_evlog *log)
{
        if (!log)
                return;
        free(log->events);
        free(log->raw);
        free(log);
}
VG_DEFINE_CLEANUP_FUNC(struct vg_evlog, vg_evlog_free)

#define EVERR(err, code, ev_i, off, fmt, ...)                                                      \
        vg_error_set(err, code, "event %zu at offset 0x%zx: " fmt, (size_t)(ev_i), (size_t)(off),  \
                     ##__VA_ARGS__)

/* TCG_EfiSpecIDEvent (PFP §10.4.5.1) */
static int parse_specid(struct vg_evlog *log, const uint8_t *p, uint32_t len, size_t off,
                        struct vg_error *err)
{
        struct vg_buf b = vg_buf_init(p, len);
        uint32_t n_algs;
        char l[16];

        memcpy(log->spec_signature, p, 16);
        log->spec_signature[16] = 0;
        vg_buf_skip(&b, 16);
        if (!vg_buf_u32le(&b, &log->platform_class) || !vg_buf_u8(&b, &log->spec_version_minor) ||
            !vg_buf_u8(&b, &log->spec_version_major) || !vg_buf_u8(&b, &log->spec_errata) ||
            !vg_buf_u8(&b, &log->uintn_size) || !vg_buf_u32le(&b, &n_algs))
                return EVERR(err, -EINVAL, 0, off, "SpecID header truncated (%" PRIu32 " bytes)",
                             len);
        if (n_algs == 0 || n_algs > VG_EVLOG_MAX_BANKS)
                return EVERR(err, -EINVAL, 0, off,
                             "SpecID lists %" PRIu32 " algorithms, expected 1 to %d", n_algs,
                             VG_EVLOG_MAX_BANKS);
        for (uint32_t i = 0; i < n_algs; i++) {
                struct vg_evlog_alg *a = &log->algs[i];
                if (!vg_buf_u16le(&b, &a->alg_id) || !vg_buf_u16le(&b, &a->digest_size))
                        return EVERR(err, -EINVAL, 0, off,
                                     "SpecID algorithm table truncated at entry %" PRIu32, i);
                if (a->digest_size == 0 || a->digest_size > VG_EVLOG_DIGEST_MAX)
                        return EVERR(err, -EINVAL, 0, off,
                                     "SpecID: %s digest size %u is not within 1..%d",
                                     alg_label(a->alg_id, l), a->digest_size, VG_EVLOG_DIGEST_MAX);
                int k = alg_index(a->alg_id);
                if (k >= 0 && algs[k].size != a->digest_size)
                        return EVERR(err, -EINVAL, 0, off, "SpecID: %s digest size %u, expected %u",
                                     algs[k].name, a->digest_size, algs[k].size);
                for (uint32_t j = 0; j < i; j++)
                        if (log->algs[j].alg_id == a->alg_id)
                                return EVERR(err, -EINVAL, 0, off, "SpecID lists %s twice",
                                             alg_label(a->alg_id, l));
                if (k >= 0) {
                        EVP_MD *md = EVP_MD_fetch(NULL, algs[k].ossl, NULL);
                        a->replayable = md != NULL;
                        EVP_MD_free(md);
                }
        }
        log->n_algs = n_algs;
        if (!vg_buf_u8(&b, &log->vendor_info_size) || b.len < log->vendor_info_size)
                return EVERR(err, -EINVAL, 0, off, "SpecID vendor info truncated");
        log->vendor_info = b.p;
        vg_buf_skip(&b, log->vendor_info_size);
        if (b.len)
                return EVERR(err, -EINVAL, 0, off,
                             "SpecID header has %zu bytes after the vendor info", b.len);
        return 0;
}

static int push_event(struct vg_evlog *log, size_t *cap, struct vg_evlog_event **out)
{
        if (log->n_events == *cap) {
                size_t ncap = *cap * 2;
                struct vg_evlog_event *n = realloc(log->events, ncap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                log->events = n;
                *cap = ncap;
        }
        *out = &log->events[log->n_events++];
        memset(*out, 0, offsetof(struct vg_evlog_event, digests));
        return 0;
}

int vg_evlog_parse(const void *data, size_t len, struct vg_evlog **out, struct vg_error *err)
{
        _cleanup_(vg_evlog_freep) struct vg_evlog *log = NULL;
        struct vg_evlog_event *ev;
        struct vg_buf b;
        size_t cap;
        bool pcr0_extended = false;
        int r;

        *out = NULL;
        if (len == 0)
                return vg_error_set(err, -EINVAL, "empty event log");
        if (len > VG_EVLOG_MAX_LOG_SIZE)
                return vg_error_set(err, -E2BIG, "event log of %zu bytes exceeds the %u MiB limit",
                                    len, VG_EVLOG_MAX_LOG_SIZE >> 20);
        log = calloc(1, sizeof(*log));
        if (!log)
                return -ENOMEM;
        log->raw = malloc(len);
        cap = len / 80 + 16;
        log->events = malloc(cap * sizeof(*log->events));
        if (!log->raw || !log->events)
                return -ENOMEM;
        memcpy(log->raw, data, len);
        log->raw_len = len;
        log->startup_locality = -1;
        b = vg_buf_init(log->raw, len);

        /* First event: always TCG_PCClientPCREvent (SHA-1 format). */
        if ((r = push_event(log, &cap, &ev)) < 0)
                return r;
        if (!vg_buf_u32le(&b, &ev->pcr) || !vg_buf_u32le(&b, &ev->type) || b.len < 20)
                return EVERR(err, -EINVAL, 0, 0, "header truncated: %zu bytes, need 32", len);
        ev->digests[0] = (struct vg_evlog_digest){ VG_EVLOG_ALG_SHA1, 20, b.p };
        vg_buf_skip(&b, 20);
        if (!vg_buf_u32le(&b, &ev->data_len))
                return EVERR(err, -EINVAL, 0, 0, "header truncated: %zu bytes, need 32", len);
        if (ev->data_len > VG_EVLOG_MAX_EVENT_SIZE || ev->data_len > b.len)
                return EVERR(err, ev->data_len > VG_EVLOG_MAX_EVENT_SIZE ? -E2BIG : -EINVAL, 0, 0,
                             "event size %" PRIu32 " exceeds the %zu bytes left", ev->data_len,
                             b.len);
        ev->data = b.p;
        vg_buf_skip(&b, ev->data_len);
        if (ev->type == VG_EV_NO_ACTION && ev->data_len >= 16 &&
            memcmp(ev->data, "Spec ID Event03\0", 16) == 0) {
                if (ev->pcr != 0)
                        return EVERR(err, -EINVAL, 0, 0,
                                     "SpecID event on PCR %" PRIu32 ", expected PCR 0", ev->pcr);
                log->format = VG_EVLOG_FORMAT_CRYPTO_AGILE;
                ev->n_digests = 1;
                if ((r = parse_specid(log, ev->data, ev->data_len, 0, err)) < 0)
                        return r;
        } else {
                log->format = VG_EVLOG_FORMAT_SHA1;
                log->n_algs = 1;
                log->algs[0] = (struct vg_evlog_alg){ VG_EVLOG_ALG_SHA1, 20, true };
                if (ev->type == VG_EV_NO_ACTION && ev->data_len >= 16 &&
                    memcmp(ev->data, "Spec ID Event", 13) == 0) {
                        memcpy(log->spec_signature, ev->data, 16);
                        log->spec_signature[16] = 0;
                }
                /* In a SHA-1 log the first event is an ordinary event: rewind and parse it in the
                 * loop below. */
                log->n_events = 0;
                b = vg_buf_init(log->raw, len);
        }

        while (b.len > 0) {
                size_t off = vg_buf_offset(&b, log->raw);
                size_t idx = log->n_events;
                char l[16];

                if ((r = push_event(log, &cap, &ev)) < 0)
                        return r;
                ev->index = (uint32_t)idx;
                ev->offset = off;
                if (!vg_buf_u32le(&b, &ev->pcr) || !vg_buf_u32le(&b, &ev->type))
                        return EVERR(err, -EINVAL, idx, off,
                                     "header truncated: %zu bytes left, need %s", b.len + 0,
                                     log->format == VG_EVLOG_FORMAT_SHA1 ? "32" : "at least 12");
                if (log->format == VG_EVLOG_FORMAT_SHA1) {
                        if (b.len < 20)
                                return EVERR(err, -EINVAL, idx, off,
                                             "SHA-1 digest truncated: %zu bytes left", b.len);
                        ev->n_digests = 1;
                        ev->digests[0] = (struct vg_evlog_digest){ VG_EVLOG_ALG_SHA1, 20, b.p };
                        vg_buf_skip(&b, 20);
                } else {
                        uint32_t count;
                        if (!vg_buf_u32le(&b, &count))
                                return EVERR(err, -EINVAL, idx, off, "digest count truncated");
                        if (count > log->n_algs)
                                return EVERR(err, -EINVAL, idx, off,
                                             "digest count %" PRIu32
                                             " exceeds the %u algorithms of the SpecID header",
                                             count, log->n_algs);
                        if (count == 0 && ev->type != VG_EV_NO_ACTION)
                                return EVERR(err, -EINVAL, idx, off, "no digests");
                        for (uint32_t i = 0; i < count; i++) {
                                uint16_t alg;
                                unsigned k;
                                if (!vg_buf_u16le(&b, &alg))
                                        return EVERR(err, -EINVAL, idx, off,
                                                     "digest %" PRIu32 " truncated", i);
                                for (k = 0; k < log->n_algs; k++)
                                        if (log->algs[k].alg_id == alg)
                                                break;
                                if (k == log->n_algs)
                                        return EVERR(err, -EINVAL, idx, off,
                                                     "digest %" PRIu32
                                                     ": algorithm 0x%04x (%s) is not declared in "
                                                     "the SpecID header",
                                                     i, alg,
                                                     vg_evlog_alg_name(alg) ? vg_evlog_alg_name(alg)
                                                                            : "unknown");
                                for (uint32_t j = 0; j < i; j++)
                                        if (ev->digests[j].alg_id == alg)
                                                return EVERR(err, -EINVAL, idx, off,
                                                             "%s digest listed twice",
                                                             alg_label(alg, l));
                                uint16_t sz = log->algs[k].digest_size;
                                if (b.len < sz)
                                        return EVERR(err, -EINVAL, idx, off,
                                                     "%s digest of %u bytes exceeds the %zu "
                                                     "bytes left",
                                                     alg_label(alg, l), sz, b.len);
                                ev->digests[i] = (struct vg_evlog_digest){ alg, sz, b.p };
                                vg_buf_skip(&b, sz);
                        }
                        ev->n_digests = count;
                }
                if (!vg_buf_u32le(&b, &ev->data_len))
                        return EVERR(err, -EINVAL, idx, off, "event size truncated");
                if (ev->data_len > b.len)
                        return EVERR(err, -EINVAL, idx, off,
                                     "event size %" PRIu32 " exceeds the %zu bytes left",
                                     ev->data_len, b.len);
                if (ev->data_len > VG_EVLOG_MAX_EVENT_SIZE)
                        return EVERR(err, -E2BIG, idx, off,
                                     "event size %" PRIu32 " exceeds the %u-byte limit",
                                     ev->data_len, VG_EVLOG_MAX_EVENT_SIZE);
                ev->data = b.p;
                vg_buf_skip(&b, ev->data_len);

                if (ev->type == VG_EV_NO_ACTION) {
                        /* not extended; Windows logs some on PCR -1 */
                        if (ev->pcr >= VG_EVLOG_PCRS && ev->pcr != 0xFFFFFFFF)
                                return EVERR(err, -EINVAL, idx, off,
                                             "PCR %" PRIu32 " is out of range 0..23", ev->pcr);
                        if (ev->data_len >= 16 && memcmp(ev->data, "StartupLocality\0", 16) == 0) {
                                if (ev->data_len != 17 || ev->pcr != 0)
                                        return EVERR(err, -EINVAL, idx, off,
                                                     "StartupLocality event must be 17 bytes on "
                                                     "PCR 0 (found %" PRIu32 " bytes, PCR %" PRIu32
                                                     ")",
                                                     ev->data_len, ev->pcr);
                                if (log->startup_locality >= 0 || pcr0_extended)
                                        return EVERR(err, -EINVAL, idx, off,
                                                     "StartupLocality event after %s",
                                                     pcr0_extended ? "PCR 0 was extended"
                                                                   : "another one");
                                log->startup_locality = ev->data[16];
                        }
                        continue;
                }
                if (ev->pcr >= VG_EVLOG_PCRS)
                        return EVERR(err, -EINVAL, idx, off,
                                     "PCR %" PRIu32 " is out of range 0..23", ev->pcr);
                if (ev->pcr == 0) {
                        if (ev->type == VG_EV_EFI_HCRTM_EVENT &&
                            (pcr0_extended || log->startup_locality >= 0))
                                return EVERR(err, -EINVAL, idx, off,
                                             "H-CRTM event after PCR 0 was started");
                        pcr0_extended = true;
                }
        }
        *out = TAKE_PTR(log);
        return 0;
}

int vg_evlog_load(const char *path, struct vg_evlog **out, struct vg_error *err)
{
        _cleanup_free_ uint8_t *buf = NULL;
        FILE *f = fopen(path, "rb");
        size_t n = 0, cap = 0;
        int r;

        *out = NULL;
        if (!f)
                return vg_error_set(err, -errno, "%s: %s", path, strerror(errno));
        for (;;) {
                if (n == cap) {
                        if (cap > VG_EVLOG_MAX_LOG_SIZE) {
                                fclose(f);
                                return vg_error_set(err, -E2BIG, "%s: larger than the %u MiB limit",
                                                    path, VG_EVLOG_MAX_LOG_SIZE >> 20);
                        }
                        cap = cap ? cap * 2 : 65536;
                        uint8_t *nb = realloc(buf, cap + 1);
                        if (!nb) {
                                fclose(f);
                                return -ENOMEM;
                        }
                        buf = nb;
                }
                size_t got = fread(buf + n, 1, cap - n, f);
                n += got;
                if (got == 0) {
                        if (ferror(f)) {
                                fclose(f);
                                return vg_error_set(err, -EIO, "%s: read error", path);
                        }
                        break;
                }
        }
        fclose(f);
        r = vg_evlog_parse(buf, n, out, err);
        if (r < 0)
                vg_error_prefix(err, "%s: ", path);
        return r;
}

const struct vg_evlog_digest *vg_evlog_event_digest(const struct vg_evlog_event *ev,
                                                    uint16_t alg_id)
{
        for (unsigned i = 0; i < ev->n_digests; i++)
                if (ev->digests[i].alg_id == alg_id)
                        return &ev->digests[i];
        return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Replay */

static void pcr_reset(uint8_t *v, uint16_t size, uint32_t pcr, int locality)
{
        memset(v, pcr >= 17 && pcr <= 22 ? 0xFF : 0, size);
        if (pcr == 0 && locality > 0)
                v[size - 1] = (uint8_t)locality;
}

struct hasher {
        EVP_MD *md;
        EVP_MD_CTX *ctx;
};

static int hasher_init(struct hasher *h, uint16_t alg_id)
{
        int k = alg_index(alg_id);
        h->md = NULL;
        h->ctx = NULL;
        if (k < 0)
                return -ENOTSUP;
        h->md = EVP_MD_fetch(NULL, algs[k].ossl, NULL);
        h->ctx = EVP_MD_CTX_new();
        if (!h->md || !h->ctx) {
                EVP_MD_free(h->md);
                EVP_MD_CTX_free(h->ctx);
                h->md = NULL;
                h->ctx = NULL;
                return -ENOTSUP;
        }
        return 0;
}

static void hasher_done(struct hasher *h)
{
        EVP_MD_free(h->md);
        EVP_MD_CTX_free(h->ctx);
}

static int extend(struct hasher *h, uint8_t *pcr, const uint8_t *digest, uint16_t size)
{
        unsigned int n;
        if (!EVP_DigestInit_ex2(h->ctx, h->md, NULL) || !EVP_DigestUpdate(h->ctx, pcr, size) ||
            !EVP_DigestUpdate(h->ctx, digest, size) || !EVP_DigestFinal_ex(h->ctx, pcr, &n))
                return -EIO;
        return 0;
}

/* The value a PCR holds before its first extend (StartupLocality, H-CRTM). */
static void pcr_initial(const struct vg_evlog *log, const struct vg_evlog_event *first,
                        uint16_t size, uint32_t pcr, uint8_t *v)
{
        int loc = log->startup_locality;
        if (pcr == 0 && first && first->type == VG_EV_EFI_HCRTM_EVENT)
                loc = 4;
        pcr_reset(v, size, pcr, loc);
}

int vg_evlog_replay(const struct vg_evlog *log, size_t n_events, struct vg_evlog_pcrs *out,
                    struct vg_error *err)
{
        struct hasher h[VG_EVLOG_MAX_BANKS] = { 0 };
        int r = 0;

        if (n_events > log->n_events)
                n_events = log->n_events;
        memset(out, 0, sizeof(*out));
        out->n_banks = log->n_algs;
        for (unsigned k = 0; k < log->n_algs; k++) {
                struct vg_evlog_bank *bank = &out->banks[k];
                bank->alg_id = log->algs[k].alg_id;
                bank->size = log->algs[k].digest_size;
                bank->replayed = log->algs[k].replayable && hasher_init(&h[k], bank->alg_id) == 0;
                for (uint32_t i = 0; i < VG_EVLOG_PCRS; i++) {
                        pcr_reset(bank->pcr[i], bank->size, i, log->startup_locality);
                        bank->last_event[i] = -1;
                }
        }
        for (size_t e = 0; e < n_events && r == 0; e++) {
                const struct vg_evlog_event *ev = &log->events[e];
                if (ev->type == VG_EV_NO_ACTION)
                        continue;
                for (unsigned i = 0; i < ev->n_digests; i++) {
                        const struct vg_evlog_digest *d = &ev->digests[i];
                        unsigned k = 0;
                        while (k < out->n_banks && out->banks[k].alg_id != d->alg_id)
                                k++;
                        if (k == out->n_banks)
                                continue; /* cannot happen: the parser rejects these */
                        struct vg_evlog_bank *bank = &out->banks[k];
                        if (ev->pcr == 0 && bank->n_extends[0] == 0 &&
                            ev->type == VG_EV_EFI_HCRTM_EVENT)
                                pcr_reset(bank->pcr[0], bank->size, 0, 4);
                        bank->n_extends[ev->pcr]++;
                        bank->last_event[ev->pcr] = (int64_t)e;
                        if (bank->replayed &&
                            extend(&h[k], bank->pcr[ev->pcr], d->digest, bank->size) < 0)
                                r = vg_error_set(err, -EIO, "event %zu: %s extend failed", e,
                                                 vg_evlog_alg_name(d->alg_id));
                }
        }
        for (unsigned k = 0; k < log->n_algs; k++)
                if (out->banks[k].replayed)
                        hasher_done(&h[k]);
        return r;
}

const struct vg_evlog_bank *vg_evlog_pcrs_bank(const struct vg_evlog_pcrs *pcrs, uint16_t alg_id)
{
        for (unsigned k = 0; k < pcrs->n_banks; k++)
                if (pcrs->banks[k].alg_id == alg_id)
                        return &pcrs->banks[k];
        return NULL;
}

int vg_evlog_pcr_history(const struct vg_evlog *log, uint16_t alg_id, uint32_t pcr,
                         struct vg_evlog_pcr_step **steps, size_t *n_steps, struct vg_error *err)
{
        struct hasher h;
        struct vg_evlog_pcr_step *v = NULL;
        uint8_t cur[VG_EVLOG_DIGEST_MAX];
        size_t n = 0, cap = 0;
        const struct vg_evlog_alg *a = NULL;
        char l[16];
        int r = 0;

        *steps = NULL;
        *n_steps = 0;
        if (pcr >= VG_EVLOG_PCRS)
                return vg_error_set(err, -EINVAL, "PCR %" PRIu32 " is out of range 0..23", pcr);
        for (unsigned k = 0; k < log->n_algs; k++)
                if (log->algs[k].alg_id == alg_id)
                        a = &log->algs[k];
        if (!a)
                return vg_error_set(err, -ENOENT, "the log has no %s bank", alg_label(alg_id, l));
        if (!a->replayable || hasher_init(&h, alg_id) < 0)
                return vg_error_set(err, -ENOTSUP, "cannot compute %s", alg_label(alg_id, l));
        bool first = true;
        for (size_t e = 0; e < log->n_events; e++) {
                const struct vg_evlog_event *ev = &log->events[e];
                if (ev->type == VG_EV_NO_ACTION || ev->pcr != pcr)
                        continue;
                const struct vg_evlog_digest *d = vg_evlog_event_digest(ev, alg_id);
                if (!d)
                        continue;
                if (first)
                        pcr_initial(log, ev, a->digest_size, pcr, cur);
                first = false;
                if (extend(&h, cur, d->digest, a->digest_size) < 0) {
                        r = -EIO;
                        break;
                }
                if (n == cap) {
                        cap = cap ? cap * 2 : 16;
                        struct vg_evlog_pcr_step *nv = realloc(v, cap * sizeof(*v));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                }
                v[n].event = (uint32_t)e;
                v[n].type = ev->type;
                memset(v[n].value, 0, sizeof(v[n].value));
                memcpy(v[n].value, cur, a->digest_size);
                n++;
        }
        hasher_done(&h);
        if (r < 0) {
                free(v);
                return r;
        }
        *steps = v;
        *n_steps = n;
        return 0;
}

static void hex(char *out, const uint8_t *p, size_t n)
{
        static const char x[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = x[p[i] >> 4];
                out[2 * i + 1] = x[p[i] & 15];
        }
        out[2 * n] = 0;
}

int vg_evlog_replay_check(const struct vg_evlog *log, const struct vg_evlog_pcr_value *expected,
                          size_t n_expected, struct vg_evlog_mismatch **mismatches,
                          size_t *n_mismatches, struct vg_error *err)
{
        struct vg_evlog_pcrs *pcrs = malloc(sizeof(*pcrs));
        struct vg_evlog_mismatch *mm = NULL;
        size_t n = 0;
        int r;

        if (mismatches)
                *mismatches = NULL;
        if (n_mismatches)
                *n_mismatches = 0;
        if (!pcrs)
                return -ENOMEM;
        r = vg_evlog_replay(log, SIZE_MAX, pcrs, err);
        if (r < 0)
                goto out;
        for (size_t i = 0; i < n_expected; i++) {
                const struct vg_evlog_pcr_value *x = &expected[i];
                const struct vg_evlog_bank *bank = vg_evlog_pcrs_bank(pcrs, x->alg_id);
                char l[16];
                if (x->pcr >= VG_EVLOG_PCRS) {
                        r = vg_error_set(err, -EINVAL, "expected PCR %" PRIu32 " is out of range",
                                         x->pcr);
                        goto out;
                }
                if (bank && bank->replayed && x->size != bank->size) {
                        r = vg_error_set(err, -EINVAL,
                                         "expected PCR %" PRIu32 " %s has %u bytes, not %u", x->pcr,
                                         alg_label(x->alg_id, l), x->size, bank->size);
                        goto out;
                }
                if (bank && bank->replayed && memcmp(bank->pcr[x->pcr], x->digest, x->size) == 0)
                        continue;
                struct vg_evlog_mismatch *nm = realloc(mm, (n + 1) * sizeof(*mm));
                if (!nm) {
                        r = -ENOMEM;
                        goto out;
                }
                mm = nm;
                struct vg_evlog_mismatch *m = &mm[n++];
                memset(m, 0, sizeof(*m));
                m->alg_id = x->alg_id;
                m->pcr = x->pcr;
                m->size = x->size <= VG_EVLOG_DIGEST_MAX ? x->size : VG_EVLOG_DIGEST_MAX;
                memcpy(m->expected, x->digest, m->size);
                m->last_event = -1;
                m->agreed_after_event = -1;
                if (!bank || !bank->replayed) {
                        m->bank_missing = true;
                        continue;
                }
                memcpy(m->replayed, bank->pcr[x->pcr], m->size);
                m->n_events = bank->n_extends[x->pcr];
                m->last_event = bank->last_event[x->pcr];
                if (m->last_event >= 0)
                        m->last_event_type = log->events[m->last_event].type;
                struct vg_evlog_pcr_step *steps = NULL;
                size_t n_steps = 0;
                if (vg_evlog_pcr_history(log, x->alg_id, x->pcr, &steps, &n_steps, NULL) == 0) {
                        for (size_t s = 0; s < n_steps; s++)
                                if (memcmp(steps[s].value, x->digest, m->size) == 0)
                                        m->agreed_after_event = steps[s].event;
                        free(steps);
                }
        }
        if (n > 0) {
                const struct vg_evlog_mismatch *m = &mm[0];
                char l[16], a[2 * VG_EVLOG_DIGEST_MAX + 1], b[2 * VG_EVLOG_DIGEST_MAX + 1];
                hex(a, m->replayed, m->size);
                hex(b, m->expected, m->size);
                if (m->bank_missing)
                        r = vg_error_set(err, -EBADMSG,
                                         "PCR %" PRIu32 " %s: the log has no %s bank to replay "
                                         "(%zu PCR value%s differ)",
                                         m->pcr, alg_label(m->alg_id, l), alg_label(m->alg_id, l),
                                         n, n == 1 ? "" : "s");
                else if (m->agreed_after_event >= 0)
                        r = vg_error_set(
                            err, -EBADMSG,
                            "PCR %" PRIu32 " %s: replay %s, expected %s; the expected value is "
                            "reached after event %" PRId64 " (%s), %u event%s extend it, the last "
                            "is event %" PRId64 " (%s) (%zu PCR value%s differ)",
                            m->pcr, alg_label(m->alg_id, l), a, b, m->agreed_after_event,
                            vg_evlog_type_name(log->events[m->agreed_after_event].type)
                                ? vg_evlog_type_name(log->events[m->agreed_after_event].type)
                                : "?",
                            m->n_events, m->n_events == 1 ? "" : "s", m->last_event,
                            vg_evlog_type_name(m->last_event_type)
                                ? vg_evlog_type_name(m->last_event_type)
                                : "unknown type",
                            n, n == 1 ? "" : "s");
                else if (m->last_event >= 0)
                        r = vg_error_set(err, -EBADMSG,
                                         "PCR %" PRIu32 " %s: replay %s, expected %s; %u event%s "
                                         "extend it, the last is event %" PRId64
                                         " (%s) (%zu PCR value%s differ)",
                                         m->pcr, alg_label(m->alg_id, l), a, b, m->n_events,
                                         m->n_events == 1 ? "" : "s", m->last_event,
                                         vg_evlog_type_name(m->last_event_type)
                                             ? vg_evlog_type_name(m->last_event_type)
                                             : "unknown type",
                                         n, n == 1 ? "" : "s");
                else
                        r = vg_error_set(err, -EBADMSG,
                                         "PCR %" PRIu32 " %s: replay %s, expected %s; no event "
                                         "of the log extends it (%zu PCR value%s differ)",
                                         m->pcr, alg_label(m->alg_id, l), a, b, n,
                                         n == 1 ? "" : "s");
        }
        if (mismatches) {
                *mismatches = TAKE_PTR(mm);
                *n_mismatches = n;
        }
out:
        free(mm);
        free(pcrs);
        return r;
}

int vg_evlog_first_divergence(const struct vg_evlog *ref, const struct vg_evlog *act,
                              uint16_t alg_id, uint32_t pcr, struct vg_evlog_divergence *out,
                              struct vg_error *err)
{
        size_t i = 0, j = 0;

        memset(out, 0, sizeof(*out));
        out->ref_event = out->act_event = -1;
        out->last_agreed_ref_event = out->last_agreed_act_event = -1;
        if (pcr >= VG_EVLOG_PCRS)
                return vg_error_set(err, -EINVAL, "PCR %" PRIu32 " is out of range 0..23", pcr);
        for (;;) {
                while (i < ref->n_events &&
                       (ref->events[i].type == VG_EV_NO_ACTION || ref->events[i].pcr != pcr))
                        i++;
                while (j < act->n_events &&
                       (act->events[j].type == VG_EV_NO_ACTION || act->events[j].pcr != pcr))
                        j++;
                if (i == ref->n_events && j == act->n_events)
                        return 0;
                const struct vg_evlog_digest *a =
                    i < ref->n_events ? vg_evlog_event_digest(&ref->events[i], alg_id) : NULL;
                const struct vg_evlog_digest *b =
                    j < act->n_events ? vg_evlog_event_digest(&act->events[j], alg_id) : NULL;
                if (i == ref->n_events || j == act->n_events || !a || !b ||
                    ref->events[i].type != act->events[j].type ||
                    memcmp(a->digest, b->digest, a->size) != 0) {
                        out->diverged = true;
                        out->ref_event = i < ref->n_events ? (int64_t)i : -1;
                        out->act_event = j < act->n_events ? (int64_t)j : -1;
                        return 0;
                }
                out->agreed_events++;
                out->last_agreed_ref_event = (int64_t)i++;
                out->last_agreed_act_event = (int64_t)j++;
        }
}

/* ---------------------------------------------------------------------------------------- */
/* Secure-boot summary */

static int sb_take_sigs(struct vg_evlog_sb_var *v, struct vg_evlog_decoded *d, uint32_t event)
{
        vg_efi_signatures_free(v->sigs, v->n_sigs);
        v->present = true;
        v->event = event;
        v->sigs = TAKE_PTR(d->sigs);
        v->n_sigs = d->n_sigs;
        d->n_sigs = 0;
        v->n_x509 = v->n_sha256 = 0;
        for (size_t i = 0; i < v->n_sigs; i++) {
                if (vg_efi_guid_eq(&v->sigs[i].type, &VG_EFI_CERT_X509))
                        v->n_x509++;
                else if (vg_efi_guid_eq(&v->sigs[i].type, &VG_EFI_CERT_SHA256))
                        v->n_sha256++;
        }
        return 0;
}

void vg_evlog_secureboot_clear(struct vg_evlog_secureboot *sb)
{
        struct vg_evlog_sb_var *vars[] = { &sb->pk,
                                           &sb->kek,
                                           &sb->db,
                                           &sb->dbx,
                                           &sb->mok_list,
                                           &sb->mok_list_x,
                                           &sb->mok_list_trusted };
        for (size_t i = 0; i < VG_ARRAY_SIZE(vars); i++)
                vg_efi_signatures_free(vars[i]->sigs, vars[i]->n_sigs);
        free(sb->sbat_level);
        for (size_t i = 0; i < sb->n_authorities; i++)
                free(sb->authorities[i].subject);
        free(sb->authorities);
        memset(sb, 0, sizeof(*sb));
        sb->secure_boot = -1;
}

int vg_evlog_secureboot(const struct vg_evlog *log, struct vg_evlog_secureboot *sb,
                        struct vg_error *err)
{
        int r = 0;

        memset(sb, 0, sizeof(*sb));
        sb->secure_boot = -1;
        for (size_t e = 0; e < log->n_events && r == 0; e++) {
                const struct vg_evlog_event *ev = &log->events[e];
                struct vg_evlog_decoded d;
                struct vg_evlog_sb_var *v = NULL;

                if (ev->type == VG_EV_IPL && ev->pcr == 14) {
                        /* shim: the MokList* contents are not in the log, only their digest */
                        const char *s = (const char *)ev->data;
                        size_t n = ev->data_len;
                        if (n && s[n - 1] == 0)
                                n--;
                        if (n == 7 && memcmp(s, "MokList", 7) == 0)
                                v = &sb->mok_list;
                        else if (n == 8 && memcmp(s, "MokListX", 8) == 0)
                                v = &sb->mok_list_x;
                        else if (n == 14 && memcmp(s, "MokListTrusted", 14) == 0)
                                v = &sb->mok_list_trusted;
                        if (v) {
                                v->present = true;
                                v->event = (uint32_t)e;
                        }
                        continue;
                }
                if (ev->type != VG_EV_EFI_VARIABLE_DRIVER_CONFIG &&
                    ev->type != VG_EV_EFI_VARIABLE_AUTHORITY)
                        continue;
                r = vg_evlog_decode(log, ev, &d, NULL);
                if (r < 0)
                        break;
                if (d.kind != VG_EVD_VARIABLE) {
                        vg_evlog_decoded_clear(&d);
                        continue;
                }
                const char *name = d.var.name;
                if (ev->type == VG_EV_EFI_VARIABLE_AUTHORITY) {
                        if (strcmp(name, "SbatLevel") == 0 && d.text) {
                                free(sb->sbat_level);
                                sb->sbat_level = TAKE_PTR(d.text);
                        } else if (strcmp(name, "MokListTrusted") == 0) {
                                sb->mok_list_trusted.present = true;
                                sb->mok_list_trusted.event = (uint32_t)e;
                        }
                        struct vg_evlog_sb_authority *na =
                            realloc(sb->authorities, (sb->n_authorities + 1) * sizeof(*na));
                        if (!na) {
                                r = -ENOMEM;
                        } else {
                                sb->authorities = na;
                                struct vg_evlog_sb_authority *a = &na[sb->n_authorities++];
                                memset(a, 0, sizeof(*a));
                                a->event = (uint32_t)e;
                                snprintf(a->name, sizeof(a->name), "%s", name);
                                a->var_guid = d.var.guid;
                                if (d.n_sigs) {
                                        a->owner = d.sigs[0].owner;
                                        a->subject = TAKE_PTR(d.sigs[0].subject);
                                }
                        }
                } else if (strcmp(name, "SecureBoot") == 0) {
                        sb->secure_boot = d.secure_boot;
                } else if (strcmp(name, "PK") == 0) {
                        v = &sb->pk;
                } else if (strcmp(name, "KEK") == 0) {
                        v = &sb->kek;
                } else if (strcmp(name, "db") == 0) {
                        v = &sb->db;
                } else if (strcmp(name, "dbx") == 0) {
                        v = &sb->dbx;
                } else if (strcmp(name, "MokList") == 0) {
                        v = &sb->mok_list;
                } else if (strcmp(name, "MokListX") == 0) {
                        v = &sb->mok_list_x;
                }
                if (v)
                        sb_take_sigs(v, &d, (uint32_t)e);
                vg_evlog_decoded_clear(&d);
        }
        if (r < 0) {
                vg_evlog_secureboot_clear(sb);
                return vg_error_set(err, r, "out of memory");
        }
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Text rendering */

static void put_escaped(FILE *f, const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '\n')
                        fputs("\\n", f);
                else if (*p == '\t')
                        fputs("\\t", f);
                else if (*p < 0x20 || *p == 0x7F)
                        fprintf(f, "\\x%02x", *p);
                else
                        fputc(*p, f);
        }
}

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
        static const char x[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                fputc(x[p[i] >> 4], f);
                fputc(x[p[i] & 15], f);
        }
}

static void print_sigs(FILE *f, const struct vg_efi_signature *s, size_t n, const char *indent)
{
        char g[VG_EFI_GUID_STR_LEN];
        for (size_t i = 0; i < n; i++) {
                vg_efi_guid_str(&s[i].owner, g);
                fprintf(f, "%s", indent);
                if (s[i].subject) {
                        fprintf(f, "x509 owner %s subject ", g);
                        put_escaped(f, s[i].subject);
                } else if (vg_efi_guid_eq(&s[i].type, &VG_EFI_CERT_SHA256) && s[i].data_len == 32) {
                        fprintf(f, "sha256 owner %s ", g);
                        put_hex(f, s[i].data, 32);
                } else {
                        char t[VG_EFI_GUID_STR_LEN];
                        vg_efi_guid_str(&s[i].type, t);
                        fprintf(f, "type %s owner %s, %zu bytes", t, g, s[i].data_len);
                }
                fputc('\n', f);
        }
}

static const char *ipl_kind_name(enum vg_evlog_ipl_kind k)
{
        switch (k) {
        case VG_IPL_GRUB_CMD:
                return "grub_cmd";
        case VG_IPL_KERNEL_CMDLINE:
                return "kernel_cmdline";
        case VG_IPL_PATH:
                return "path";
        case VG_IPL_MOK:
                return "mok";
        case VG_IPL_STRING:
                return "string";
        default:
                return "other";
        }
}

static void print_decoded(FILE *f, const struct vg_evlog *log, const struct vg_evlog_event *ev,
                          const struct vg_evlog_decoded *d)
{
        char g[VG_EFI_GUID_STR_LEN];

        switch (d->kind) {
        case VG_EVD_SPECID:
                fprintf(f,
                        "  spec id: %s, platform class %" PRIu32 ", spec %u.%u errata %u, "
                        "uintn size %u, algorithms",
                        log->spec_signature, log->platform_class, log->spec_version_major,
                        log->spec_version_minor, log->spec_errata, log->uintn_size);
                for (unsigned k = 0; k < log->n_algs; k++) {
                        char l[16];
                        fprintf(f, " %s/%u", alg_label(log->algs[k].alg_id, l),
                                log->algs[k].digest_size);
                }
                fprintf(f, ", vendor info %u bytes\n", log->vendor_info_size);
                break;
        case VG_EVD_STARTUP_LOCALITY:
                fprintf(f, "  startup locality: %u\n", d->locality);
                break;
        case VG_EVD_NO_ACTION:
                fputs("  no-action: ", f);
                put_escaped(f, d->text);
                fputc('\n', f);
                break;
        case VG_EVD_TEXT:
        case VG_EVD_SPDM:
                fputs("  text: ", f);
                put_escaped(f, d->text);
                fputc('\n', f);
                break;
        case VG_EVD_SEPARATOR:
                fprintf(f, "  separator: 0x%08" PRIx32 "%s\n", d->separator_value,
                        d->separator_error ? " (error)" : "");
                break;
        case VG_EVD_VARIABLE:
                vg_efi_guid_str(&d->var.guid, g);
                fprintf(f, "  variable: %s ", g);
                put_escaped(f, d->var.name);
                fprintf(f, " (%zu bytes)\n", d->var.data_len);
                if (d->secure_boot >= 0)
                        fprintf(f, "  value: %d (%s)\n", d->secure_boot,
                                d->secure_boot ? "enabled" : "disabled");
                if (d->text) {
                        fputs("  value: ", f);
                        put_escaped(f, d->text);
                        fputc('\n', f);
                }
                if (d->n_sigs)
                        print_sigs(f, d->sigs, d->n_sigs, "  signature: ");
                if (d->boot_order) {
                        fputs("  boot order:", f);
                        for (size_t i = 0; i < d->n_boot_order; i++)
                                fprintf(f, " %04X", d->boot_order[i]);
                        fputc('\n', f);
                }
                if (d->boot_option.present) {
                        fprintf(f, "  boot option: attributes 0x%" PRIx32 ", ",
                                d->boot_option.attributes);
                        put_escaped(f, d->boot_option.description);
                        fputs("\n  device path: ", f);
                        put_escaped(f, d->boot_option.device_path);
                        fputc('\n', f);
                }
                break;
        case VG_EVD_IMAGE:
                fprintf(f,
                        "  image: location 0x%" PRIx64 ", length %" PRIu64
                        ", link address 0x%" PRIx64 "\n",
                        d->image.location, d->image.length, d->image.link_address);
                if (d->image.device_path) {
                        fputs("  device path: ", f);
                        put_escaped(f, d->image.device_path);
                        fputc('\n', f);
                }
                break;
        case VG_EVD_GPT:
                vg_efi_guid_str(&d->gpt.disk_guid, g);
                fprintf(f, "  gpt: disk %s, %zu partitions\n", g, d->gpt.n_partitions);
                for (size_t i = 0; i < d->gpt.n_partitions; i++) {
                        const struct vg_efi_gpt_partition *p = &d->gpt.partitions[i];
                        char t[VG_EFI_GUID_STR_LEN];
                        vg_efi_guid_str(&p->type_guid, t);
                        vg_efi_guid_str(&p->unique_guid, g);
                        fprintf(f, "  partition %zu: type %s uuid %s lba %" PRIu64 "-%" PRIu64 " ",
                                i + 1, t, g, p->first_lba, p->last_lba);
                        put_escaped(f, p->name);
                        fputc('\n', f);
                }
                break;
        case VG_EVD_IPL:
                fprintf(f, "  %s: ", ipl_kind_name(d->ipl_kind));
                put_escaped(f, d->text ? d->text : "");
                fputc('\n', f);
                break;
        case VG_EVD_BLOB:
                fprintf(f, "  firmware blob: base 0x%" PRIx64 ", length %" PRIu64, d->blob.base,
                        d->blob.length);
                if (d->text) {
                        fputs(", ", f);
                        put_escaped(f, d->text);
                }
                fputc('\n', f);
                break;
        case VG_EVD_HANDOFF:
                vg_efi_guid_str(&d->handoff.first_guid, g);
                fprintf(f, "  handoff tables: %zu, first %s", d->handoff.n_tables, g);
                if (d->text) {
                        fputs(", ", f);
                        put_escaped(f, d->text);
                }
                fputc('\n', f);
                break;
        case VG_EVD_TAGGED:
                fprintf(f, "  tagged event: id 0x%" PRIx32 ", %" PRIu32 " bytes\n", d->tagged.id,
                        d->tagged.len);
                break;
        case VG_EVD_RAW:
                break;
        }
        if (d->kind == VG_EVD_RAW || d->kind == VG_EVD_TAGGED) {
                size_t n = ev->data_len < 64 ? ev->data_len : 64;
                fputs("  data: ", f);
                put_hex(f, ev->data, n);
                if (n < ev->data_len)
                        fprintf(f, "... (%" PRIu32 " bytes)", ev->data_len);
                fputc('\n', f);
        }
}

static void print_sb_var(FILE *f, const char *name, const struct vg_evlog_sb_var *v)
{
        if (!v->present) {
                fprintf(f, "  %s: not measured\n", name);
                return;
        }
        fprintf(f, "  %s: event %" PRIu32 ", %zu entries (%zu x509, %zu sha256)\n", name, v->event,
                v->n_sigs, v->n_x509, v->n_sha256);
        for (size_t i = 0; i < v->n_sigs; i++)
                if (v->sigs[i].subject) {
                        fputs("    ", f);
                        put_escaped(f, v->sigs[i].subject);
                        fputc('\n', f);
                }
}

int vg_evlog_print(const struct vg_evlog *log, FILE *f, struct vg_error *err)
{
        struct vg_evlog_secureboot sb;
        int r;

        fprintf(f, "format: %s, %zu events, %zu bytes\n",
                log->format == VG_EVLOG_FORMAT_SHA1 ? "sha1" : "crypto-agile", log->n_events,
                log->raw_len);
        for (size_t e = 0; e < log->n_events; e++) {
                const struct vg_evlog_event *ev = &log->events[e];
                const char *tn = vg_evlog_type_name(ev->type);
                struct vg_evlog_decoded d;
                struct vg_error note = { 0 };

                fprintf(f, "\nevent %zu: PCR %" PRId32 " ", e, (int32_t)ev->pcr);
                if (tn)
                        fputs(tn, f);
                else
                        fprintf(f, "0x%08" PRIx32, ev->type);
                fprintf(f, " (offset 0x%zx, %" PRIu32 " bytes)\n", ev->offset, ev->data_len);
                for (unsigned i = 0; i < ev->n_digests; i++) {
                        char l[16];
                        fprintf(f, "  %-7s ", alg_label(ev->digests[i].alg_id, l));
                        put_hex(f, ev->digests[i].digest, ev->digests[i].size);
                        fputc('\n', f);
                }
                r = vg_evlog_decode(log, ev, &d, &note);
                if (r < 0)
                        return vg_error_set(err, r, "out of memory");
                print_decoded(f, log, ev, &d);
                if (note.code)
                        fprintf(f, "  note: %s\n", note.msg);
                vg_evlog_decoded_clear(&d);
        }
        r = vg_evlog_secureboot(log, &sb, err);
        if (r < 0)
                return r;
        fprintf(f, "\nsecure boot: %s\n",
                sb.secure_boot < 0 ? "not measured"
                : sb.secure_boot   ? "enabled"
                                   : "disabled");
        print_sb_var(f, "PK", &sb.pk);
        print_sb_var(f, "KEK", &sb.kek);
        print_sb_var(f, "db", &sb.db);
        print_sb_var(f, "dbx", &sb.dbx);
        print_sb_var(f, "MokList", &sb.mok_list);
        print_sb_var(f, "MokListX", &sb.mok_list_x);
        print_sb_var(f, "MokListTrusted", &sb.mok_list_trusted);
        if (sb.sbat_level) {
                fputs("  SbatLevel: ", f);
                put_escaped(f, sb.sbat_level);
                fputc('\n', f);
        }
        for (size_t i = 0; i < sb.n_authorities; i++) {
                fprintf(f, "  authority: event %" PRIu32 " %s", sb.authorities[i].event,
                        sb.authorities[i].name);
                if (sb.authorities[i].subject) {
                        fputs(" ", f);
                        put_escaped(f, sb.authorities[i].subject);
                }
                fputc('\n', f);
        }
        vg_evlog_secureboot_clear(&sb);
        if (fflush(f) != 0 || ferror(f))
                return vg_error_set(err, -EIO, "write error");
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* JSON rendering */

static json_t *jhex(const uint8_t *p, size_t n)
{
        char *s = malloc(2 * n + 1);
        json_t *j;
        if (!s)
                return NULL;
        hex(s, p, n);
        j = json_string(s);
        free(s);
        return j;
}

static json_t *jguid(const struct vg_efi_guid *g)
{
        char s[VG_EFI_GUID_STR_LEN];
        vg_efi_guid_str(g, s);
        return json_string(s);
}

/* json_string fails on invalid UTF-8; names from logs are decoded from UTF-16 or ASCII-checked,
 * but be safe */
static json_t *jstr(const char *s)
{
        json_t *j = json_string(s ? s : "");
        return j ? j : json_string("(invalid UTF-8)");
}

static json_t *jsigs(const struct vg_efi_signature *s, size_t n)
{
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++) {
                json_t *o = json_object();
                json_object_set_new(o, "SignatureType", jguid(&s[i].type));
                json_object_set_new(o, "SignatureOwner", jguid(&s[i].owner));
                json_object_set_new(o, "SignatureData", jhex(s[i].data, s[i].data_len));
                if (s[i].subject)
                        json_object_set_new(o, "subject", jstr(s[i].subject));
                if (s[i].issuer)
                        json_object_set_new(o, "issuer", jstr(s[i].issuer));
                json_array_append_new(a, o);
        }
        return a;
}

static json_t *jdecoded(const struct vg_evlog_decoded *d)
{
        json_t *o = json_object();

        if (!o)
                return NULL;
        switch (d->kind) {
        case VG_EVD_RAW:
                json_object_set_new(o, "kind", json_string("raw"));
                break;
        case VG_EVD_SPECID:
                json_object_set_new(o, "kind", json_string("spec_id"));
                break;
        case VG_EVD_STARTUP_LOCALITY:
                json_object_set_new(o, "kind", json_string("startup_locality"));
                json_object_set_new(o, "locality", json_integer(d->locality));
                break;
        case VG_EVD_NO_ACTION:
                json_object_set_new(o, "kind", json_string("no_action"));
                json_object_set_new(o, "signature", jstr(d->text));
                break;
        case VG_EVD_TEXT:
        case VG_EVD_SPDM:
                json_object_set_new(o, "kind",
                                    json_string(d->kind == VG_EVD_TEXT ? "text" : "spdm"));
                json_object_set_new(o, "text", jstr(d->text));
                break;
        case VG_EVD_SEPARATOR:
                json_object_set_new(o, "kind", json_string("separator"));
                json_object_set_new(o, "value", json_integer(d->separator_value));
                json_object_set_new(o, "error", json_boolean(d->separator_error));
                break;
        case VG_EVD_VARIABLE:
                json_object_set_new(o, "kind", json_string("variable"));
                json_object_set_new(o, "VariableName", jguid(&d->var.guid));
                json_object_set_new(o, "UnicodeName", jstr(d->var.name));
                json_object_set_new(o, "VariableData", jhex(d->var.data, d->var.data_len));
                if (d->secure_boot >= 0)
                        json_object_set_new(o, "Enabled",
                                            json_string(d->secure_boot ? "Yes" : "No"));
                if (d->text)
                        json_object_set_new(o, "text", jstr(d->text));
                if (d->sigs)
                        json_object_set_new(o, "signatures", jsigs(d->sigs, d->n_sigs));
                if (d->boot_order) {
                        json_t *a = json_array();
                        for (size_t i = 0; i < d->n_boot_order; i++)
                                json_array_append_new(a, json_integer(d->boot_order[i]));
                        json_object_set_new(o, "BootOrder", a);
                }
                if (d->boot_option.present) {
                        json_object_set_new(o, "Attributes",
                                            json_integer(d->boot_option.attributes));
                        json_object_set_new(o, "Description", jstr(d->boot_option.description));
                        json_object_set_new(o, "DevicePath", jstr(d->boot_option.device_path));
                }
                break;
        case VG_EVD_IMAGE:
                json_object_set_new(o, "kind", json_string("image"));
                json_object_set_new(o, "ImageLocationInMemory",
                                    json_integer((json_int_t)d->image.location));
                json_object_set_new(o, "ImageLengthInMemory",
                                    json_integer((json_int_t)d->image.length));
                json_object_set_new(o, "ImageLinkTimeAddress",
                                    json_integer((json_int_t)d->image.link_address));
                if (d->image.device_path)
                        json_object_set_new(o, "DevicePath", jstr(d->image.device_path));
                break;
        case VG_EVD_GPT: {
                json_t *a = json_array();
                json_object_set_new(o, "kind", json_string("gpt"));
                json_object_set_new(o, "DiskGUID", jguid(&d->gpt.disk_guid));
                for (size_t i = 0; i < d->gpt.n_partitions; i++) {
                        const struct vg_efi_gpt_partition *p = &d->gpt.partitions[i];
                        json_t *po = json_object();
                        json_object_set_new(po, "PartitionTypeGUID", jguid(&p->type_guid));
                        json_object_set_new(po, "UniquePartitionGUID", jguid(&p->unique_guid));
                        json_object_set_new(po, "StartingLBA",
                                            json_integer((json_int_t)p->first_lba));
                        json_object_set_new(po, "EndingLBA", json_integer((json_int_t)p->last_lba));
                        json_object_set_new(po, "Attributes",
                                            json_integer((json_int_t)p->attributes));
                        json_object_set_new(po, "PartitionName", jstr(p->name));
                        json_array_append_new(a, po);
                }
                json_object_set_new(o, "Partitions", a);
                break;
        }
        case VG_EVD_IPL:
                json_object_set_new(o, "kind", json_string("ipl"));
                json_object_set_new(o, "ipl", json_string(ipl_kind_name(d->ipl_kind)));
                json_object_set_new(o, "text", jstr(d->text));
                break;
        case VG_EVD_BLOB:
                json_object_set_new(o, "kind", json_string("firmware_blob"));
                json_object_set_new(o, "BlobBase", json_integer((json_int_t)d->blob.base));
                json_object_set_new(o, "BlobLength", json_integer((json_int_t)d->blob.length));
                if (d->text)
                        json_object_set_new(o, "BlobDescription", jstr(d->text));
                break;
        case VG_EVD_HANDOFF:
                json_object_set_new(o, "kind", json_string("handoff_tables"));
                json_object_set_new(o, "NumberOfTables",
                                    json_integer((json_int_t)d->handoff.n_tables));
                json_object_set_new(o, "FirstVendorGuid", jguid(&d->handoff.first_guid));
                if (d->text)
                        json_object_set_new(o, "TableDescription", jstr(d->text));
                break;
        case VG_EVD_TAGGED:
                json_object_set_new(o, "kind", json_string("tagged"));
                json_object_set_new(o, "EventID", json_integer(d->tagged.id));
                json_object_set_new(o, "EventData", jhex(d->tagged.data, d->tagged.len));
                break;
        }
        return o;
}

static json_t *jsbvar(const struct vg_evlog_sb_var *v)
{
        json_t *o = json_object();
        json_object_set_new(o, "present", json_boolean(v->present));
        if (v->present) {
                json_object_set_new(o, "event", json_integer(v->event));
                json_object_set_new(o, "entries", json_integer((json_int_t)v->n_sigs));
                json_object_set_new(o, "x509", json_integer((json_int_t)v->n_x509));
                json_object_set_new(o, "sha256", json_integer((json_int_t)v->n_sha256));
                json_object_set_new(o, "signatures", jsigs(v->sigs, v->n_sigs));
        }
        return o;
}

json_t *vg_evlog_to_json(const struct vg_evlog *log, struct vg_error *err)
{
        json_t *root = json_object(), *events = json_array(), *a;
        struct vg_evlog_secureboot sb;
        struct vg_evlog_pcrs *pcrs = NULL;
        char l[16];

        if (!root || !events)
                goto oom;
        json_object_set_new(
            root, "format",
            json_string(log->format == VG_EVLOG_FORMAT_SHA1 ? "sha1" : "crypto-agile"));
        if (log->format == VG_EVLOG_FORMAT_CRYPTO_AGILE) {
                json_t *s = json_object();
                json_object_set_new(s, "signature", jstr(log->spec_signature));
                json_object_set_new(s, "platformClass", json_integer(log->platform_class));
                json_object_set_new(s, "specVersionMajor", json_integer(log->spec_version_major));
                json_object_set_new(s, "specVersionMinor", json_integer(log->spec_version_minor));
                json_object_set_new(s, "specErrata", json_integer(log->spec_errata));
                json_object_set_new(s, "uintnSize", json_integer(log->uintn_size));
                json_object_set_new(s, "vendorInfo", jhex(log->vendor_info, log->vendor_info_size));
                json_object_set_new(root, "spec_id", s);
        }
        a = json_array();
        for (unsigned k = 0; k < log->n_algs; k++) {
                json_t *o = json_object();
                json_object_set_new(o, "algorithmId",
                                    json_string(alg_label(log->algs[k].alg_id, l)));
                json_object_set_new(o, "digestSize", json_integer(log->algs[k].digest_size));
                json_array_append_new(a, o);
        }
        json_object_set_new(root, "algorithms", a);
        json_object_set_new(root, "startup_locality",
                            log->startup_locality < 0 ? json_null()
                                                      : json_integer(log->startup_locality));
        for (size_t e = 0; e < log->n_events; e++) {
                const struct vg_evlog_event *ev = &log->events[e];
                json_t *o = json_object(), *dg = json_object();
                struct vg_evlog_decoded d;
                struct vg_error note = { 0 };
                const char *tn = vg_evlog_type_name(ev->type);

                if (!o || !dg) {
                        json_decref(o);
                        json_decref(dg);
                        goto oom;
                }
                json_object_set_new(o, "index", json_integer((json_int_t)e));
                json_object_set_new(o, "offset", json_integer((json_int_t)ev->offset));
                json_object_set_new(o, "pcr", json_integer((int32_t)ev->pcr));
                json_object_set_new(o, "type", json_integer(ev->type));
                json_object_set_new(o, "type_name", tn ? json_string(tn) : json_null());
                for (unsigned i = 0; i < ev->n_digests; i++)
                        json_object_set_new(dg, alg_label(ev->digests[i].alg_id, l),
                                            jhex(ev->digests[i].digest, ev->digests[i].size));
                json_object_set_new(o, "digests", dg);
                json_object_set_new(o, "data", jhex(ev->data, ev->data_len));
                if (vg_evlog_decode(log, ev, &d, &note) < 0) {
                        json_decref(o);
                        goto oom;
                }
                json_object_set_new(o, "decoded", jdecoded(&d));
                if (note.code)
                        json_object_set_new(o, "note", jstr(note.msg));
                vg_evlog_decoded_clear(&d);
                json_array_append_new(events, o);
        }
        json_object_set_new(root, "events", events);
        events = NULL;

        if (vg_evlog_secureboot(log, &sb, err) < 0)
                goto oom;
        json_t *s = json_object();
        json_object_set_new(s, "SecureBoot",
                            sb.secure_boot < 0 ? json_null() : json_boolean(sb.secure_boot));
        json_object_set_new(s, "PK", jsbvar(&sb.pk));
        json_object_set_new(s, "KEK", jsbvar(&sb.kek));
        json_object_set_new(s, "db", jsbvar(&sb.db));
        json_object_set_new(s, "dbx", jsbvar(&sb.dbx));
        json_object_set_new(s, "MokList", jsbvar(&sb.mok_list));
        json_object_set_new(s, "MokListX", jsbvar(&sb.mok_list_x));
        json_object_set_new(s, "MokListTrusted", jsbvar(&sb.mok_list_trusted));
        json_object_set_new(s, "SbatLevel", sb.sbat_level ? jstr(sb.sbat_level) : json_null());
        a = json_array();
        for (size_t i = 0; i < sb.n_authorities; i++) {
                json_t *o = json_object();
                json_object_set_new(o, "event", json_integer(sb.authorities[i].event));
                json_object_set_new(o, "name", jstr(sb.authorities[i].name));
                json_object_set_new(o, "VariableName", jguid(&sb.authorities[i].var_guid));
                if (sb.authorities[i].subject)
                        json_object_set_new(o, "subject", jstr(sb.authorities[i].subject));
                json_array_append_new(a, o);
        }
        json_object_set_new(s, "authorities", a);
        json_object_set_new(root, "secureboot", s);
        vg_evlog_secureboot_clear(&sb);

        pcrs = malloc(sizeof(*pcrs));
        if (!pcrs || vg_evlog_replay(log, SIZE_MAX, pcrs, err) < 0)
                goto oom;
        json_t *jp = json_object();
        for (unsigned k = 0; k < pcrs->n_banks; k++) {
                const struct vg_evlog_bank *b = &pcrs->banks[k];
                if (!b->replayed)
                        continue;
                json_t *bo = json_object();
                for (uint32_t i = 0; i < VG_EVLOG_PCRS; i++) {
                        char key[4];
                        snprintf(key, sizeof(key), "%u", i);
                        json_object_set_new(bo, key, jhex(b->pcr[i], b->size));
                }
                json_object_set_new(jp, alg_label(b->alg_id, l), bo);
        }
        json_object_set_new(root, "pcrs", jp);
        free(pcrs);
        return root;
oom:
        free(pcrs);
        json_decref(events);
        json_decref(root);
        vg_error_set(err, -ENOMEM, "out of memory");
        return NULL;
}
