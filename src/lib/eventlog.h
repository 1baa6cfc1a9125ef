/* vigil: TCG PC Client Platform Firmware Profile event logs (SHA-1 and crypto-agile): a strict
 * parser, EFI decoding of event data (efi.c), PCR replay into every bank, and rendering. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

/* Limits (any larger value in a log is rejected as malformed). */
#define VG_EVLOG_MAX_EVENT_SIZE (1u << 20)  /* bytes of event data per event */
#define VG_EVLOG_MAX_LOG_SIZE   (64u << 20) /* bytes per log */
#define VG_EVLOG_MAX_BANKS      8           /* algorithms in a SpecID header */
#define VG_EVLOG_PCRS           24          /* PCR 0..23 */
#define VG_EVLOG_DIGEST_MAX     64          /* largest digest (sha512) */

/* TPM_ALG_ID values (TCG Algorithm Registry) seen in SpecID headers. */
#define VG_EVLOG_ALG_SHA1     0x0004
#define VG_EVLOG_ALG_SHA256   0x000B
#define VG_EVLOG_ALG_SHA384   0x000C
#define VG_EVLOG_ALG_SHA512   0x000D
#define VG_EVLOG_ALG_SM3_256  0x0012
#define VG_EVLOG_ALG_SHA3_256 0x0027
#define VG_EVLOG_ALG_SHA3_384 0x0028
#define VG_EVLOG_ALG_SHA3_512 0x0029

/* Event types, TCG PC Client PFP 1.05 §10.4.1. */
enum vg_evlog_type {
        VG_EV_PREBOOT_CERT = 0x0,
        VG_EV_POST_CODE = 0x1,
        VG_EV_UNUSED = 0x2,
        VG_EV_NO_ACTION = 0x3,
        VG_EV_SEPARATOR = 0x4,
        VG_EV_ACTION = 0x5,
        VG_EV_EVENT_TAG = 0x6,
        VG_EV_S_CRTM_CONTENTS = 0x7,
        VG_EV_S_CRTM_VERSION = 0x8,
        VG_EV_CPU_MICROCODE = 0x9,
        VG_EV_PLATFORM_CONFIG_FLAGS = 0xA,
        VG_EV_TABLE_OF_DEVICES = 0xB,
        VG_EV_COMPACT_HASH = 0xC,
        VG_EV_IPL = 0xD,
        VG_EV_IPL_PARTITION_DATA = 0xE,
        VG_EV_NONHOST_CODE = 0xF,
        VG_EV_NONHOST_CONFIG = 0x10,
        VG_EV_NONHOST_INFO = 0x11,
        VG_EV_OMIT_BOOT_DEVICE_EVENTS = 0x12,
        VG_EV_POST_CODE2 = 0x13,
        VG_EV_EFI_EVENT_BASE = 0x80000000,
        VG_EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001,
        VG_EV_EFI_VARIABLE_BOOT = 0x80000002,
        VG_EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003,
        VG_EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004,
        VG_EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005,
        VG_EV_EFI_GPT_EVENT = 0x80000006,
        VG_EV_EFI_ACTION = 0x80000007,
        VG_EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008,
        VG_EV_EFI_HANDOFF_TABLES = 0x80000009,
        VG_EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A,
        VG_EV_EFI_HANDOFF_TABLES2 = 0x8000000B,
        VG_EV_EFI_VARIABLE_BOOT2 = 0x8000000C,
        VG_EV_EFI_GPT_EVENT2 = 0x8000000D,
        VG_EV_EFI_HCRTM_EVENT = 0x80000010,
        VG_EV_EFI_VARIABLE_AUTHORITY = 0x800000E0,
        VG_EV_EFI_SPDM_FIRMWARE_BLOB = 0x800000E1,
        VG_EV_EFI_SPDM_FIRMWARE_CONFIG = 0x800000E2,
        VG_EV_EFI_SPDM_DEVICE_POLICY = 0x800000E3,
        VG_EV_EFI_SPDM_DEVICE_AUTHORITY = 0x800000E4,
};

/* "EV_EFI_GPT_EVENT" etc., or NULL for a type this parser has no name for. */
const char *vg_evlog_type_name(uint32_t type);
/* "sha1", "sha256", "sha384", "sha512", "sm3_256", "sha3_256", ...; NULL when unknown. */
const char *vg_evlog_alg_name(uint16_t alg_id);
/* Inverse of vg_evlog_alg_name (case-insensitive); -EINVAL when unknown. */
int vg_evlog_alg_from_name(const char *name, uint16_t *alg_id);

/* ---------------------------------------------------------------------------------------- */
/* The parsed log. Every pointer into event data points into the log's own copy of the bytes
 * and lives as long as the struct vg_evlog. */

enum vg_evlog_format {
        VG_EVLOG_FORMAT_SHA1,         /* TCG_PCClientPCREvent only (TPM 1.2 style) */
        VG_EVLOG_FORMAT_CRYPTO_AGILE, /* "Spec ID Event03" then TCG_PCR_EVENT2 */
};

struct vg_evlog_alg {
        uint16_t alg_id;      /* TPM_ALG_ID */
        uint16_t digest_size; /* from the SpecID header */
        bool replayable;      /* this build can compute the hash (OpenSSL has it) */
};

struct vg_evlog_digest {
        uint16_t alg_id;
        uint16_t size;
        const uint8_t *digest; /* size bytes, into the log */
};

struct vg_evlog_event {
        uint32_t index; /* 0-based position in the log; the SpecID event is 0 */
        size_t offset;  /* byte offset of the event header in the log */
        uint32_t pcr;   /* 0..23, or 0xFFFFFFFF only on EV_NO_ACTION (Windows logs these) */
        uint32_t type;  /* enum vg_evlog_type or any other value (kept raw) */
        unsigned n_digests;
        struct vg_evlog_digest digests[VG_EVLOG_MAX_BANKS];
        const uint8_t *data; /* event data, data_len bytes, into the log */
        uint32_t data_len;
};

struct vg_evlog {
        enum vg_evlog_format format;
        /* SpecID header (crypto-agile logs; for SHA-1 logs only sha1/20 is listed). */
        char spec_signature[17]; /* "Spec ID Event03", "Spec ID Event00" or "" */
        uint32_t platform_class;
        uint8_t spec_version_major, spec_version_minor, spec_errata, uintn_size;
        const uint8_t *vendor_info;
        uint8_t vendor_info_size;
        unsigned n_algs;
        struct vg_evlog_alg algs[VG_EVLOG_MAX_BANKS];
        /* The StartupLocality EV_NO_ACTION's locality byte, or -1 when the log has none. */
        int startup_locality;
        size_t n_events; /* including the first (SpecID or SHA-1) event */
        struct vg_evlog_event *events;
        uint8_t *raw; /* owned copy of the input */
        size_t raw_len;
};

/* Parse a binary event log. The bytes are copied. Errors name the event index, the byte offset
 * and what is wrong: "event 42 at offset 0x1a30: event size 4294967295 exceeds the 112 bytes
 * left". -EINVAL (malformed), -E2BIG (over a limit), -ENOMEM. */
int vg_evlog_parse(const void *data, size_t len, struct vg_evlog **out, struct vg_error *err);
/* Read and parse a file (error prefixed with the path). */
int vg_evlog_load(const char *path, struct vg_evlog **out, struct vg_error *err);
void vg_evlog_free(struct vg_evlog *log);

/* The digest of alg_id in ev, or NULL when the event does not carry that bank. */
const struct vg_evlog_digest *vg_evlog_event_digest(const struct vg_evlog_event *ev,
                                                    uint16_t alg_id);

/* ---------------------------------------------------------------------------------------- */
/* EFI structures (efi.c). GUIDs are kept as the 16 bytes of the log (mixed-endian EFI_GUID). */

struct vg_efi_guid {
        uint8_t b[16];
};
#define VG_EFI_GUID_STR_LEN 37 /* "8be4df61-93ca-11d2-aa0d-00e098032b8c" + NUL */
/* Canonical lowercase text (the first three fields little-endian, as UEFI prints them). */
void vg_efi_guid_str(const struct vg_efi_guid *g, char out[VG_EFI_GUID_STR_LEN]);
/* Parse canonical text; -EINVAL on anything else. */
int vg_efi_guid_parse(const char *s, struct vg_efi_guid *out);
bool vg_efi_guid_eq(const struct vg_efi_guid *a, const struct vg_efi_guid *b);

extern const struct vg_efi_guid VG_EFI_GLOBAL_VARIABLE;         /* 8be4df61-93ca-11d2-aa0d-... */
extern const struct vg_efi_guid VG_EFI_IMAGE_SECURITY_DATABASE; /* d719b2cb-3d3a-4596-a3bc-... */
extern const struct vg_efi_guid VG_EFI_SHIM_LOCK;               /* 605dab50-e046-4300-abb6-... */
extern const struct vg_efi_guid VG_EFI_CERT_X509;               /* a5c059a1-94e4-4aa7-87b5-... */
extern const struct vg_efi_guid VG_EFI_CERT_SHA256;             /* c1c41626-504c-4092-aca9-... */

/* UEFI_VARIABLE_DATA (PFP §10.2.3): GUID, UTF-16 name, data. */
struct vg_efi_variable {
        struct vg_efi_guid guid;
        char name[128];      /* UTF-8 of UnicodeName (longer names are rejected) */
        const uint8_t *data; /* VariableData, into the log */
        size_t data_len;
        size_t trailing; /* bytes after VariableData inside the event (shim logs 6 too many
                            on its "Shim" authority); 0 normally */
};
/* Trailing bytes after VariableData are accepted and counted in ->trailing; a VariableData
 * or name longer than the bytes there is -EINVAL. */
int vg_efi_variable_parse(const uint8_t *p, size_t len, struct vg_efi_variable *out,
                          struct vg_error *err);

/* One EFI_SIGNATURE_DATA of an EFI_SIGNATURE_LIST (UEFI 2.9 §32.4.1). */
struct vg_efi_signature {
        struct vg_efi_guid type;  /* the list's SignatureType: VG_EFI_CERT_X509, _SHA256, ... */
        struct vg_efi_guid owner; /* SignatureOwner */
        const uint8_t *data;      /* SignatureData (DER certificate, SHA-256 hash, ...) */
        size_t data_len;
        char *subject; /* X.509 only: one-line subject ("CN=..., O=..."), else NULL; owned */
        char *issuer;  /* X.509 only, else NULL; owned */
};

/* Parse a whole variable value made of EFI_SIGNATURE_LISTs (PK, KEK, db, dbx, MokList...).
 * *sigs is malloc'd (free with vg_efi_signatures_free). An empty value gives 0 signatures. */
int vg_efi_siglists_parse(const uint8_t *p, size_t len, struct vg_efi_signature **sigs,
                          size_t *n_sigs, struct vg_error *err);
void vg_efi_signatures_free(struct vg_efi_signature *sigs, size_t n_sigs);

/* EFI device path to UEFI text form, e.g.
 * "PciRoot(0x0)/Pci(0x1,0x1)/Sata(0x0,0xFFFF,0x0)/HD(1,GPT,<guid>,0x800,0x100000)/\EFI\x.efi".
 * Unknown nodes are rendered as "Path(type,subtype,hex)". Returns a malloc'd string. */
int vg_efi_devpath_text(const uint8_t *p, size_t len, char **out, struct vg_error *err);

struct vg_efi_gpt_partition {
        struct vg_efi_guid type_guid;
        struct vg_efi_guid unique_guid;
        uint64_t first_lba, last_lba, attributes;
        char name[109]; /* UTF-8 of the 36 UTF-16 characters */
};

/* ---------------------------------------------------------------------------------------- */
/* Per-event decoding (what the event data means for its type). */

enum vg_evlog_kind {
        VG_EVD_RAW,              /* nothing decoded: use ev->data */
        VG_EVD_SPECID,           /* the header event (fields are in struct vg_evlog) */
        VG_EVD_STARTUP_LOCALITY, /* .locality */
        VG_EVD_NO_ACTION,        /* other EV_NO_ACTION: .text = signature ("SP800-155 Event",
                                    "NvIndexInstance", ...) */
        VG_EVD_TEXT,             /* EV_EFI_ACTION, EV_ACTION, EV_S_CRTM_VERSION (UTF-16 decoded),
                                    EV_POST_CODE / EV_COMPACT_HASH / EV_OMIT... when printable */
        VG_EVD_SEPARATOR,        /* .separator_value, .separator_error */
        VG_EVD_VARIABLE,         /* EV_EFI_VARIABLE_*: .var and, by name, .secure_boot / .sigs /
                                    .boot_order / .boot_option / .text (SbatLevel) */
        VG_EVD_IMAGE,   /* EV_EFI_BOOT_SERVICES_APPLICATION/_DRIVER, RUNTIME_SERVICES_DRIVER */
        VG_EVD_GPT,     /* EV_EFI_GPT_EVENT */
        VG_EVD_IPL,     /* EV_IPL: .ipl_kind, .text */
        VG_EVD_BLOB,    /* EV_EFI_PLATFORM_FIRMWARE_BLOB(2): .blob */
        VG_EVD_HANDOFF, /* EV_EFI_HANDOFF_TABLES(2): .handoff */
        VG_EVD_TAGGED,  /* EV_EVENT_TAG: .tagged */
        VG_EVD_SPDM,    /* EV_EFI_SPDM_*: .var-like header not decoded further, .text */
};

enum vg_evlog_ipl_kind {
        VG_IPL_OTHER,          /* .text holds the string when printable, else NULL */
        VG_IPL_GRUB_CMD,       /* "grub_cmd: ..." (PCR 8); .text is after the prefix */
        VG_IPL_KERNEL_CMDLINE, /* "kernel_cmdline: ..." (grub) or UTF-16 (systemd-boot) */
        VG_IPL_PATH,           /* grub PCR 9 file path, e.g. "/boot/vmlinuz-..." */
        VG_IPL_MOK,            /* shim PCR 14 "MokList", "MokListX", "MokListTrusted" */
        VG_IPL_STRING,         /* other printable ASCII or UTF-16 text */
};

struct vg_evlog_decoded {
        enum vg_evlog_kind kind;
        char *text; /* owned, NUL-terminated UTF-8 or NULL; meaning per kind */
        /* VG_EVD_STARTUP_LOCALITY */
        uint8_t locality;
        /* VG_EVD_SEPARATOR */
        uint32_t separator_value;
        bool separator_error; /* value 0xFFFFFFFF or 1 (an error separator) */
        /* VG_EVD_VARIABLE */
        struct vg_efi_variable var;
        int secure_boot; /* SecureBoot/SetupMode/... one-byte variables: 0/1; else -1 */
        struct vg_efi_signature *sigs; /* PK/KEK/db/dbx/MokList*: all EFI_SIGNATURE_DATA; for
                                          EV_EFI_VARIABLE_AUTHORITY the one authorising entry */
        size_t n_sigs;
        uint16_t *boot_order; /* BootOrder, owned */
        size_t n_boot_order;
        struct {
                bool present; /* Boot#### EFI_LOAD_OPTION */
                uint32_t attributes;
                char *description; /* owned */
                char *device_path; /* owned text */
        } boot_option;
        /* VG_EVD_IMAGE: UEFI_IMAGE_LOAD_EVENT */
        struct {
                uint64_t location, length, link_address;
                char *device_path; /* owned text; NULL when the event has none */
        } image;
        /* VG_EVD_GPT: UEFI_GPT_DATA */
        struct {
                struct vg_efi_guid disk_guid;
                uint64_t my_lba, first_usable_lba, last_usable_lba;
                size_t n_partitions;
                struct vg_efi_gpt_partition *partitions; /* owned */
        } gpt;
        /* VG_EVD_IPL */
        enum vg_evlog_ipl_kind ipl_kind;
        /* VG_EVD_BLOB: UEFI_PLATFORM_FIRMWARE_BLOB(2); .text = description for BLOB2 */
        struct {
                uint64_t base, length;
        } blob;
        /* VG_EVD_HANDOFF: UEFI_HANDOFF_TABLE_POINTERS(2); .text = description for TABLES2 */
        struct {
                size_t n_tables;
                struct vg_efi_guid first_guid; /* of the first table (SMBIOS, ACPI...) */
        } handoff;
        /* VG_EVD_TAGGED: TCG_PCClientTaggedEvent */
        struct {
                uint32_t id;
                const uint8_t *data;
                uint32_t len;
        } tagged;
};

/* Decode one event's data. Data that does not match the structure its type calls for is not
 * an error: the result is VG_EVD_RAW and, when note is non-NULL, note says why (firmware logs
 * odd things; the digest, not the data, is what is extended). -ENOMEM only. */
int vg_evlog_decode(const struct vg_evlog *log, const struct vg_evlog_event *ev,
                    struct vg_evlog_decoded *out, struct vg_error *note);
void vg_evlog_decoded_clear(struct vg_evlog_decoded *d);

/* ---------------------------------------------------------------------------------------- */
/* Secure-boot state: the PCR 7 story of a log. */

struct vg_evlog_sb_var {
        bool present;                  /* measured in the log */
        uint32_t event;                /* index of the (last) event measuring it */
        size_t n_sigs;                 /* EFI_SIGNATURE_DATA entries */
        size_t n_x509;                 /* of which X.509 certificates */
        size_t n_sha256;               /* of which SHA-256 hashes */
        struct vg_efi_signature *sigs; /* owned */
};

struct vg_evlog_secureboot {
        int secure_boot; /* SecureBoot variable: 1, 0, or -1 when not measured */
        struct vg_evlog_sb_var pk, kek, db, dbx;
        struct vg_evlog_sb_var mok_list, mok_list_x, mok_list_trusted; /* PCR 14 / 7 */
        char *sbat_level; /* SbatLevel text (EV_EFI_VARIABLE_AUTHORITY) or NULL; owned */
        /* EV_EFI_VARIABLE_AUTHORITY entries, in order: what authorised each image. */
        size_t n_authorities;
        struct vg_evlog_sb_authority {
                uint32_t event;
                char name[128]; /* "db", "Shim", "MokListRT", "SbatLevel", ... */
                struct vg_efi_guid var_guid;
                struct vg_efi_guid owner; /* SignatureOwner when the data is EFI_SIGNATURE_DATA */
                char *subject;            /* X.509 subject when it is a certificate; owned */
        } * authorities;
};

int vg_evlog_secureboot(const struct vg_evlog *log, struct vg_evlog_secureboot *out,
                        struct vg_error *err);
void vg_evlog_secureboot_clear(struct vg_evlog_secureboot *sb);

/* ---------------------------------------------------------------------------------------- */
/* Replay (PFP §3.3.3): PCRs start at 0 (17..22 at 0xFF..); a StartupLocality EV_NO_ACTION sets
 * PCR 0 to 0..0||locality, EV_EFI_HCRTM_EVENT starts PCR 0 at 0..04; EV_NO_ACTION events are not
 * extended; every other event extends every bank it carries. */

struct vg_evlog_bank {
        uint16_t alg_id;
        uint16_t size;
        bool replayed; /* false: the hash is not available (reported, skipped) */
        uint8_t pcr[VG_EVLOG_PCRS][VG_EVLOG_DIGEST_MAX];
        uint32_t n_extends[VG_EVLOG_PCRS]; /* events extended into each PCR */
        int64_t last_event[VG_EVLOG_PCRS]; /* index of the last one, -1 when none */
};

struct vg_evlog_pcrs {
        unsigned n_banks; /* the SpecID algorithms, plus any bank an event carries */
        struct vg_evlog_bank banks[VG_EVLOG_MAX_BANKS];
};

/* Replay the first n_events events (SIZE_MAX: all). */
int vg_evlog_replay(const struct vg_evlog *log, size_t n_events, struct vg_evlog_pcrs *out,
                    struct vg_error *err);
/* The bank of alg_id in a replay, or NULL. */
const struct vg_evlog_bank *vg_evlog_pcrs_bank(const struct vg_evlog_pcrs *pcrs, uint16_t alg_id);

/* An expected (quoted) PCR value. */
struct vg_evlog_pcr_value {
        uint16_t alg_id;
        uint32_t pcr;
        uint16_t size;
        uint8_t digest[VG_EVLOG_DIGEST_MAX];
};

struct vg_evlog_mismatch {
        uint16_t alg_id;
        uint32_t pcr;
        bool bank_missing; /* the log has no such bank (or cannot replay it) */
        uint8_t expected[VG_EVLOG_DIGEST_MAX];
        uint8_t replayed[VG_EVLOG_DIGEST_MAX];
        uint16_t size;
        uint32_t n_events;  /* events extended into this PCR by the log */
        int64_t last_event; /* index of the last of them, -1 when none */
        uint32_t last_event_type;
        /* When the expected value equals the running value after an earlier event of this PCR
         * (the log grew after the quote, or its tail was changed): that event's index, else -1.
         * This is the "last event where replay still agreed". */
        int64_t agreed_after_event;
};

/* Replay all events and compare with expected[0..n). Returns 0 when all agree; -EBADMSG
 * when some differ, with *mismatches (malloc'd, may be NULL when the caller passes NULL) and
 * err naming the first: "PCR 4 sha256: replay 3f..., expected 9a...; 5 events extend it, the
 * last is event 57 (EV_EFI_BOOT_SERVICES_APPLICATION)". Other negative codes for bad input. */
int vg_evlog_replay_check(const struct vg_evlog *log, const struct vg_evlog_pcr_value *expected,
                          size_t n_expected, struct vg_evlog_mismatch **mismatches,
                          size_t *n_mismatches, struct vg_error *err);

/* The running value of one PCR after each event that extends it. *steps is malloc'd. */
struct vg_evlog_pcr_step {
        uint32_t event; /* index of the event */
        uint32_t type;
        uint8_t value[VG_EVLOG_DIGEST_MAX]; /* PCR value after extending it */
};
int vg_evlog_pcr_history(const struct vg_evlog *log, uint16_t alg_id, uint32_t pcr,
                         struct vg_evlog_pcr_step **steps, size_t *n_steps, struct vg_error *err);

/* First divergence of one PCR between a reference log (e.g. the golden boot) and an actual log:
 * compares the events that extend the PCR pairwise (type and digest of alg_id).
 * *diverged = false when the PCR's events are the same in both; else ref_event / act_event are
 * the indexes of the first differing events (-1 when that log ran out of events for the PCR)
 * and agreed_events the number of leading events both share. */
struct vg_evlog_divergence {
        bool diverged;
        uint32_t agreed_events;
        int64_t ref_event, act_event;
        int64_t last_agreed_ref_event, last_agreed_act_event; /* -1 when none */
};
int vg_evlog_first_divergence(const struct vg_evlog *ref, const struct vg_evlog *act,
                              uint16_t alg_id, uint32_t pcr, struct vg_evlog_divergence *out,
                              struct vg_error *err);

/* ---------------------------------------------------------------------------------------- */
/* Rendering (used by `vigil eventlog show`). */

/* One block per event: index, PCR, type name, digests per bank, decoded data; then the
 * secure-boot summary. -errno on write error. */
int vg_evlog_print(const struct vg_evlog *log, FILE *out, struct vg_error *err);
/* {"format", "spec_id": {...}, "algorithms": [...], "startup_locality", "events": [{"index",
 * "offset", "pcr", "type", "type_name", "digests": {"sha256": hex}, "data": hex, "decoded":
 * {...}}], "secureboot": {...}, "pcrs": {"sha256": {"0": hex}}}. NULL on -ENOMEM. */
json_t *vg_evlog_to_json(const struct vg_evlog *log, struct vg_error *err);
