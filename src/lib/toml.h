/* vigil: a strict reader for the TOML subset vigil's configuration uses: [tables] (dotted
 * names allowed), key = value with bare or quoted keys, basic and literal strings (single
 * line), integers (decimal, 0x/0o/0b, '_' separators), booleans, and arrays of strings (may
 * span lines, trailing comma allowed), comments. Anything else (floats, dates, inline tables,
 * arrays of tables, multi-line strings, dotted keys, duplicate keys) is refused with
 * "FILE:LINE: ..." naming what was found. Also a writer whose output reads back the same. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cleanup.h"
#include "error.h"

enum vg_toml_type {
        VG_TOML_STRING,
        VG_TOML_INTEGER,
        VG_TOML_BOOLEAN,
        VG_TOML_STRING_ARRAY,
};

struct vg_toml_value {
        enum vg_toml_type type;
        union {
                char *string; /* VG_TOML_STRING; UTF-8, NUL-terminated, no embedded NUL */
                int64_t integer;
                bool boolean;
                struct {
                        char **items; /* NULL-terminated */
                        size_t n;
                } array;
        };
};

/* One key/value in document order. table is "" for top-level keys, else the [table] header
 * in force written the canonical TOML way: components joined by '.', each bare when it can be
 * and a quoted basic string otherwise ("agent", "revocations.webhook", "a.\"b.c\""), so that
 * [a."b.c"] and [a.b.c] stay apart and "[" table "]" is a valid header. key is the decoded key. */
struct vg_toml_entry {
        const char *table; /* shared by the entries of one table; owned by the document */
        char *key;
        struct vg_toml_value value;
        unsigned line; /* 1-based line of the key */
};

struct vg_toml_doc {
        struct vg_toml_entry *entries;
        size_t n_entries;
        char **tables; /* the table names entries point to */
        size_t n_tables;
};

/* Parse text (need not be NUL-terminated; a NUL byte in it is an error). filename is used
 * only in messages. On error, returns -EINVAL (or -ENOMEM) and err says
 * "FILE:LINE: expected ..., found ...". */
int vg_toml_parse(const char *text, size_t len, const char *filename, struct vg_toml_doc **out,
                  struct vg_error *err);
void vg_toml_doc_free(struct vg_toml_doc *doc);
VG_DEFINE_CLEANUP_FUNC(struct vg_toml_doc, vg_toml_doc_free)

/* Parse text that is a single TOML value and nothing else but surrounding spaces (the right
 * side of "key = value"; an array may span lines). Used for option values given in the
 * environment. Messages start with "what: " instead of "FILE:LINE: ". On success *out is
 * owned by the caller (vg_toml_value_clear). */
int vg_toml_parse_value(const char *text, size_t len, const char *what, struct vg_toml_value *out,
                        struct vg_error *err);
void vg_toml_value_clear(struct vg_toml_value *v);

const char *vg_toml_type_name(enum vg_toml_type type);

/* TOML text is UTF-8: true if p[0..len) is valid UTF-8 (no overlong forms, no surrogates). */
bool vg_toml_utf8_valid(const void *p, size_t len);

/* Writers. Strings must be valid UTF-8. A key is written bare when it can be, else quoted;
 * a string as a basic string with the escapes TOML needs. */
void vg_toml_write_key(FILE *out, const char *key);
void vg_toml_write_string(FILE *out, const char *s);
void vg_toml_write_value(FILE *out, const struct vg_toml_value *v);
/* The whole document: top-level keys, then a [table] header before each run of keys of one
 * table. Parsing the output gives back the same entries. Returns 0, or -EIO if out failed. */
int vg_toml_doc_write(const struct vg_toml_doc *doc, FILE *out);
