/* vigil: a strict reader for the TOML subset vigil's configuration uses: [tables] (dotted
 * names allowed), key = value with bare or quoted keys, basic and literal strings (single
 * line), decimal integers, booleans, and arrays of strings (may span lines, trailing comma
 * allowed), comments. Anything else (floats, dates, inline tables, arrays of tables,
 * multi-line strings, duplicate keys) is refused with "FILE:LINE: ..." naming what was found. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
                char *string;           /* VG_TOML_STRING; NUL-terminated, no embedded NUL */
                int64_t integer;
                bool boolean;
                struct {
                        char **items;   /* NULL-terminated */
                        size_t n;
                } array;
        };
};

/* One key/value in document order: table is "" for top-level keys, else the full dotted
 * name of the [table] header in force ("agent", "revocations.webhook"). */
struct vg_toml_entry {
        char *table;
        char *key;
        struct vg_toml_value value;
        unsigned line;          /* 1-based line of the key */
};

struct vg_toml_doc {
        struct vg_toml_entry *entries;
        size_t n_entries;
};

/* Parse text (need not be NUL-terminated). filename is used only in messages. On error,
 * returns -EINVAL (or -ENOMEM) and err says "FILE:LINE: expected ..., found ...". */
int vg_toml_parse(const char *text, size_t len, const char *filename, struct vg_toml_doc **out,
                  struct vg_error *err);
void vg_toml_doc_free(struct vg_toml_doc *doc);
const char *vg_toml_type_name(enum vg_toml_type type);
