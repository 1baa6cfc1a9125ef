/* vigil tests: the TOML reader: every form it accepts (TOML 1.0 values), every form it refuses
 * with the exact FILE:LINE message a user sees, robustness on cut input, and the writer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "tap.h"
#include "toml.h"

/* Parse from a heap copy of exactly len bytes, no terminator, so that ASan sees any read past
 * the input. */
static int parse(const char *text, size_t len, struct vg_toml_doc **doc, struct vg_error *err)
{
        char *copy = malloc(len ? len : 1);
        int r;

        if (!copy)
                tap_bail("out of memory");
        memcpy(copy, text, len);
        *doc = NULL;
        r = vg_toml_parse(copy, len, "agent.conf", doc, err);
        free(copy);
        return r;
}

static struct vg_toml_doc *parse_ok(const char *text, const char *what)
{
        struct vg_toml_doc *doc = NULL;
        struct vg_error err = { 0 };
        int r = parse(text, strlen(text), &doc, &err);

        if (!ok(r == 0, "accepted: %s", what))
                tap_diag("error: %s", err.msg);
        return doc;
}

/* text is refused with exactly message (which includes "agent.conf:LINE: "). */
static void refused_len(const char *text, size_t len, const char *message, const char *what)
{
        struct vg_toml_doc *doc = NULL;
        struct vg_error err = { 0 };
        int r = parse(text, len, &doc, &err);

        is_int(r, -EINVAL, "refused: %s", what);
        is_str(err.msg, message, "message: %s", what);
        ok(doc == NULL, "no document on error: %s", what);
        vg_toml_doc_free(doc);
}

static void refused(const char *text, const char *message, const char *what)
{
        refused_len(text, strlen(text), message, what);
}

static const struct vg_toml_entry *entry(const struct vg_toml_doc *doc, const char *table,
                                         const char *key)
{
        for (size_t i = 0; doc && i < doc->n_entries; i++)
                if (strcmp(doc->entries[i].table, table) == 0 &&
                    strcmp(doc->entries[i].key, key) == 0)
                        return &doc->entries[i];
        return NULL;
}

static void is_string_entry(const struct vg_toml_doc *doc, const char *table, const char *key,
                            const char *want, const char *what)
{
        const struct vg_toml_entry *e = entry(doc, table, key);

        if (!ok(e && e->value.type == VG_TOML_STRING, "%s: [%s] %s is a string", what, table, key))
                return;
        is_str(e->value.string, want, "%s: value of %s", what, key);
}

static void is_int_entry(const struct vg_toml_doc *doc, const char *key, long long want,
                         const char *what)
{
        const struct vg_toml_entry *e = entry(doc, "", key);

        if (!ok(e && e->value.type == VG_TOML_INTEGER, "%s: %s is an integer", what, key))
                return;
        is_int(e->value.integer, want, "%s: value of %s", what, key);
}

static void test_keylime_dropin(void)
{
        /* The Keylime guide's /etc/keylime/agent.conf.d/00-registrar-ip.conf. */
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *doc =
            parse_ok("[agent]\n\nregistrar_ip = \"127.0.0.1\"\n", "Keylime drop-in");

        is_int(doc ? doc->n_entries : 0, 1, "one entry");
        is_string_entry(doc, "agent", "registrar_ip", "127.0.0.1", "Keylime drop-in");
        is_int(doc && doc->n_entries ? doc->entries[0].line : 0, 3, "registrar_ip is on line 3");
}

static void test_tables(void)
{
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *doc =
            parse_ok("top = 1\n"
                     "[agent]\n"
                     "a = 1\n"
                     "[revocations.webhook]\n"
                     "url = \"https://example.com\"\n"
                     "[ spaced . name ]\n"
                     "b = 2\n"
                     "[site.\"dotted.name\"]\n"
                     "c = 3\n"
                     "[\"quoted\"]\n"
                     "d = 4\n"
                     "['literal table'.x]\n"
                     "e = 5\n"
                     "[x.y.z]\n"
                     "[x]    # a super-table after its sub-table is fine (TOML 1.0)\n"
                     "f = 6\n"
                     "[x.y]\n"
                     "g = 7\n",
                     "tables");

        ok(entry(doc, "", "top") != NULL, "top-level key has table \"\"");
        ok(entry(doc, "agent", "a") != NULL, "[agent]");
        ok(entry(doc, "revocations.webhook", "url") != NULL, "dotted header");
        ok(entry(doc, "spaced.name", "b") != NULL, "spaces around the dot");
        ok(entry(doc, "site.\"dotted.name\"", "c") != NULL,
           "a quoted component with a dot stays quoted in the table name");
        ok(entry(doc, "quoted", "d") != NULL, "[\"quoted\"] is the same as [quoted]");
        ok(entry(doc, "\"literal table\".x", "e") != NULL, "literal-quoted component");
        ok(entry(doc, "x", "f") != NULL, "implicit table defined later");
        ok(entry(doc, "x.y", "g") != NULL, "implicit prefix [x.y] defined later");
        is_int(doc ? doc->entries[doc->n_entries - 1].line : 0, 18, "lines are counted");
}

static void test_strings(void)
{
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *doc =
            parse_ok("escapes = \"q\\\" b\\\\ n\\n t\\t r\\r f\\f b\\b\"\n"
                     "unicode = \"caf\\u00e9 \\u20AC \\U0001F600\"\n"
                     "raw = \"h\xc3\xa9llo\twith a tab\"\n"
                     "literal = 'C:\\Users\\no\\escapes \"here\"'\n"
                     "empty = \"\"\n"
                     "empty_literal = ''\n"
                     "hash = \"a # not a comment\"  # a comment\n",
                     "strings");

        is_string_entry(doc, "", "escapes", "q\" b\\ n\n t\t r\r f\f b\b", "escapes");
        is_string_entry(doc, "", "unicode", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                        "\\u and \\U escapes become UTF-8");
        is_string_entry(doc, "", "raw", "h\xc3\xa9llo\twith a tab", "raw UTF-8 and tab");
        is_string_entry(doc, "", "literal", "C:\\Users\\no\\escapes \"here\"", "literal string");
        is_string_entry(doc, "", "empty", "", "empty basic string");
        is_string_entry(doc, "", "empty_literal", "", "empty literal string");
        is_string_entry(doc, "", "hash", "a # not a comment", "'#' inside a string");
}

static void test_keys(void)
{
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *doc = parse_ok("bare_key-1 = 1\n"
                                                                        "1234 = 2\n"
                                                                        "\"quoted key\" = 3\n"
                                                                        "'literal key' = 4\n"
                                                                        "\"\" = 5\n"
                                                                        "\"tab\\tkey\" = 6\n"
                                                                        "true = 7\n"
                                                                        "spaced\t=\t8\n"
                                                                        "tight=9\n",
                                                                        "keys");

        is_int_entry(doc, "bare_key-1", 1, "bare key with _ and -");
        is_int_entry(doc, "1234", 2, "all-digit bare key");
        is_int_entry(doc, "quoted key", 3, "quoted key");
        is_int_entry(doc, "literal key", 4, "literal quoted key");
        is_int_entry(doc, "", 5, "empty quoted key");
        is_int_entry(doc, "tab\tkey", 6, "escape in a quoted key");
        is_int_entry(doc, "true", 7, "'true' is a key too");
        is_int_entry(doc, "spaced", 8, "tabs around '='");
        is_int_entry(doc, "tight", 9, "no spaces around '='");
}

static void test_integers_booleans(void)
{
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *doc =
            parse_ok("zero = 0\n"
                     "plus = +17\n"
                     "minus = -17\n"
                     "minus_zero = -0\n"
                     "sep = 1_000_000\n"
                     "hex = 0xDEAD_beef\n"
                     "hex0 = 0x00ff\n"
                     "oct = 0o755\n"
                     "bin = 0b1101\n"
                     "max = 9223372036854775807\n"
                     "min = -9223372036854775808\n"
                     "hexmax = 0x7fffffffffffffff\n"
                     "yes = true\n"
                     "no = false\n",
                     "integers and booleans");

        is_int_entry(doc, "zero", 0, "0");
        is_int_entry(doc, "plus", 17, "+17");
        is_int_entry(doc, "minus", -17, "-17");
        is_int_entry(doc, "minus_zero", 0, "-0");
        is_int_entry(doc, "sep", 1000000, "'_' separators");
        is_int_entry(doc, "hex", 0xdeadbeef, "hex, mixed case");
        is_int_entry(doc, "hex0", 255, "hex with leading zeros");
        is_int_entry(doc, "oct", 0755, "octal");
        is_int_entry(doc, "bin", 13, "binary");
        is_int_entry(doc, "max", INT64_MAX, "INT64_MAX");
        is_int_entry(doc, "min", INT64_MIN, "INT64_MIN");
        is_int_entry(doc, "hexmax", INT64_MAX, "largest hex");

        const struct vg_toml_entry *t = entry(doc, "", "yes"), *f = entry(doc, "", "no");
        ok(t && t->value.type == VG_TOML_BOOLEAN && t->value.boolean, "true");
        ok(f && f->value.type == VG_TOML_BOOLEAN && !f->value.boolean, "false");
}

static void is_array(const struct vg_toml_doc *doc, const char *key, const char *const *want,
                     const char *what)
{
        const struct vg_toml_entry *e = entry(doc, "", key);
        size_t n = 0;

        while (want[n])
                n++;
        if (!ok(e && e->value.type == VG_TOML_STRING_ARRAY, "%s: %s is an array", what, key))
                return;
        is_int(e->value.array.n, n, "%s: %zu items", what, n);
        ok(e->value.array.items[e->value.array.n] == NULL, "%s: NULL-terminated", what);
        for (size_t i = 0; i < n && i < e->value.array.n; i++)
                is_str(e->value.array.items[i], want[i], "%s: item %zu", what, i);
}

static void test_arrays(void)
{
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *doc =
            parse_ok("empty = []\n"
                     "spaced_empty = [  ]\n"
                     "one = [\"a\"]\n"
                     "trailing = [\"a\", 'b',]\n"
                     "multi = [\n"
                     "    \"/etc/keylime/cv_ca/cacert.crt\",  # verifier CA\n"
                     "    # a whole-line comment\n"
                     "\n"
                     "    '/etc/keylime/tenant_ca/cacert.crt'\n"
                     "]\n"
                     "after = 1\n",
                     "arrays");

        is_array(doc, "empty", (const char *const[]){ NULL }, "[]");
        is_array(doc, "spaced_empty", (const char *const[]){ NULL }, "[  ]");
        is_array(doc, "one", (const char *const[]){ "a", NULL }, "one item");
        is_array(doc, "trailing", (const char *const[]){ "a", "b", NULL }, "trailing comma");
        is_array(doc, "multi",
                 (const char *const[]){ "/etc/keylime/cv_ca/cacert.crt",
                                        "/etc/keylime/tenant_ca/cacert.crt", NULL },
                 "over several lines with comments");
        const struct vg_toml_entry *e = entry(doc, "", "after");
        is_int(e ? e->line : 0, 11, "lines inside an array are counted");
}

static void test_layout(void)
{
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *crlf =
            parse_ok("# comment\r\n[agent]\r\nport = 1\r\nlist = [\r\n\"a\",\r\n]\r\nx = 2",
                     "CRLF line ends, no final newline");
        const struct vg_toml_entry *e = entry(crlf, "agent", "x");
        is_int(e ? e->line : 0, 7, "CRLF counts as one line end");

        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *bom =
            parse_ok("\xef\xbb\xbf[agent]\nport = 1\n", "UTF-8 byte order mark");
        ok(entry(bom, "agent", "port") != NULL, "the BOM is not part of the first line");

        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *blank =
            parse_ok("\n\n   \n\t# only comments\n  # indented \xc3\xa9 comment\n", "blank");
        is_int(blank ? blank->n_entries : 1, 0, "no entries");

        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *empty = parse_ok("", "empty input");
        is_int(empty ? empty->n_entries : 1, 0, "empty input: no entries");

        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *indented =
            parse_ok("  [agent]  # header comment\n\tport = 1 # trailing\n", "indentation");
        ok(entry(indented, "agent", "port") != NULL, "indented header and key");
}

static void test_refused_values(void)
{
        refused("[agent]\n\n\n\n\n\nratio = 1.5\n",
                "agent.conf:7: floats are not supported (found '1.5')", "float");
        refused("x = 1e6\n", "agent.conf:1: floats are not supported (found '1e6')", "exponent");
        refused("x = -3.14e-2\n", "agent.conf:1: floats are not supported (found '-3.14e-2')",
                "float with exponent");
        refused("x = inf\n", "agent.conf:1: floats are not supported (found 'inf')", "inf");
        refused("x = -nan\n", "agent.conf:1: floats are not supported (found '-nan')", "nan");
        refused("when = 1979-05-27\n",
                "agent.conf:1: dates and times are not supported (found '1979-05-27')", "date");
        refused("when = 1979-05-27T07:32:00Z\n",
                "agent.conf:1: dates and times are not supported (found '1979-05-27T07:32:00Z')",
                "date-time");
        refused("when = 07:32:00\n",
                "agent.conf:1: dates and times are not supported (found '07:32:00')", "time");
        refused("t = {x = 1}\n", "agent.conf:1: inline tables ({...}) are not supported",
                "inline table");
        refused("s = \"\"\"multi\"\"\"\n",
                "agent.conf:1: multi-line strings (\"\"\") are not supported", "multi-line basic");
        refused("s = '''multi'''\n", "agent.conf:1: multi-line strings (''') are not supported",
                "multi-line literal");
        refused("[agent]\nregistrar_ip = 127.0.0.1\n",
                "agent.conf:2: invalid value '127.0.0.1' for 'registrar_ip': strings must be "
                "quoted",
                "unquoted IP address");
        refused("tcti = swtpm\n",
                "agent.conf:1: invalid value 'swtpm' for 'tcti': strings must be quoted",
                "bare word");
        refused("secure_size = 1m\n",
                "agent.conf:1: invalid value '1m' for 'secure_size': strings must be quoted",
                "number with a unit");
        refused("flag = True\n",
                "agent.conf:1: invalid value 'True' for 'flag': booleans are lower-case true or "
                "false",
                "Python-style boolean");
        refused("port =\n", "agent.conf:1: expected a value for 'port', found end of line",
                "missing value");
        refused("port = ", "agent.conf:1: expected a value for 'port', found end of file",
                "missing value at end of file");
        refused("port = # none\n", "agent.conf:1: expected a value for 'port', found '#'",
                "comment instead of value");
        refused("port = 1 2\n", "agent.conf:1: expected end of line after the value, found '2'",
                "two values");
        refused("s = \"a\" \"b\"\n",
                "agent.conf:1: expected end of line after the value, found '\"'", "two strings");
}

static void test_refused_integers(void)
{
        refused("n = 9223372036854775808\n",
                "agent.conf:1: integer overflow: '9223372036854775808' does not fit in 64 bits "
                "(signed)",
                "INT64_MAX + 1");
        refused("n = -9223372036854775809\n",
                "agent.conf:1: integer overflow: '-9223372036854775809' does not fit in 64 bits "
                "(signed)",
                "INT64_MIN - 1");
        refused("n = 0x8000000000000000\n",
                "agent.conf:1: integer overflow: '0x8000000000000000' does not fit in 64 bits "
                "(signed)",
                "hex past INT64_MAX");
        refused("n = 99999999999999999999999999999999999999999999999999\n",
                "agent.conf:1: integer overflow: '9999999999999999999999999999999999999999...' "
                "does not fit in 64 bits (signed)",
                "long overflow, shortened in the message");
        refused("n = 012\n", "agent.conf:1: invalid integer '012': leading zeros are not allowed",
                "leading zero");
        refused("n = -01\n", "agent.conf:1: invalid integer '-01': leading zeros are not allowed",
                "signed leading zero");
        refused("n = 1__2\n",
                "agent.conf:1: invalid integer '1__2': '_' must be between two digits",
                "double underscore");
        refused("n = 1_\n", "agent.conf:1: invalid integer '1_': '_' must be between two digits",
                "trailing underscore");
        refused("n = _1\n", "agent.conf:1: invalid integer '_1': '_' must be between two digits",
                "leading underscore");
        refused("n = 0x_1\n",
                "agent.conf:1: invalid integer '0x_1': '_' must be between two digits",
                "underscore after prefix");
        refused("n = +0x10\n",
                "agent.conf:1: invalid integer '+0x10': hexadecimal, octal and binary integers "
                "cannot have a sign",
                "signed hex");
        refused("n = 0x\n", "agent.conf:1: invalid integer '0x': no digits", "prefix only");
        refused("n = +\n", "agent.conf:1: invalid integer '+': no digits", "sign only");
        refused("n = 0b102\n", "agent.conf:1: invalid integer '0b102': '2' is not a base-2 digit",
                "binary digit");
        refused("n = 0o8\n", "agent.conf:1: invalid integer '0o8': '8' is not a base-8 digit",
                "octal digit");
        refused("n = 0xfg\n", "agent.conf:1: invalid integer '0xfg': 'g' is not a base-16 digit",
                "hex digit");
        refused("n = 1-2\n", "agent.conf:1: invalid integer '1-2': '-' is not a base-10 digit",
                "sign inside");
}

static void test_refused_strings(void)
{
        refused("name = \"no end\n",
                "agent.conf:1: unterminated string: missing closing \" before end of line",
                "unterminated at end of line");
        refused("name = \"no end",
                "agent.conf:1: unterminated string: missing closing \" before end of file",
                "unterminated at end of file");
        refused("name = 'no end\n",
                "agent.conf:1: unterminated string: missing closing ' before end of line",
                "unterminated literal");
        refused("name = \"ends in escape\\",
                "agent.conf:1: unterminated string: missing closing \" before end of file",
                "backslash at end of file");
        refused("s = \"a\\qb\"\n",
                "agent.conf:1: invalid escape '\\q' in string (valid: \\b \\t \\n \\f \\r \\\" "
                "\\\\ \\uXXXX \\UXXXXXXXX)",
                "unknown escape");
        refused("s = \"\\x41\"\n",
                "agent.conf:1: invalid escape '\\x' in string (valid: \\b \\t \\n \\f \\r \\\" "
                "\\\\ \\uXXXX \\UXXXXXXXX)",
                "\\x is not TOML");
        refused("s = \"\\e\"\n",
                "agent.conf:1: invalid escape '\\e' in string (valid: \\b \\t \\n \\f \\r \\\" "
                "\\\\ \\uXXXX \\UXXXXXXXX)",
                "\\e is TOML 1.1, not 1.0");
        refused("s = \"\\u12G4\"\n",
                "agent.conf:1: invalid escape '\\u12G4': expected 4 hex digits after '\\u'",
                "bad \\u digits");
        refused("s = \"\\u12\"\n",
                "agent.conf:1: invalid escape '\\u12': expected 4 hex digits after '\\u'",
                "short \\u");
        refused("s = \"\\U0001F60\"\n",
                "agent.conf:1: invalid escape '\\U0001F60': expected 8 hex digits after '\\U'",
                "short \\U");
        refused("s = \"\\uD800\"\n",
                "agent.conf:1: invalid escape '\\uD800': not a Unicode scalar value", "surrogate");
        refused("s = \"\\U00110000\"\n",
                "agent.conf:1: invalid escape '\\U00110000': not a Unicode scalar value",
                "past U+10FFFF");
        refused("s = \"\\u0000\"\n",
                "agent.conf:1: invalid escape '\\u0000': strings cannot hold a NUL character",
                "escaped NUL");
        refused("s = \"a\x01\"\n",
                "agent.conf:1: control character U+0001 in a string must be escaped (\\u0001)",
                "raw control character");
        refused("s = \"a\x7f\"\n",
                "agent.conf:1: control character U+007F in a string must be escaped (\\u007F)",
                "raw DEL");
        refused("s = 'a\x1b'\n",
                "agent.conf:1: control character U+001B is not allowed in a literal string",
                "control character in a literal string");
        refused("s = \"a\rb\"\n",
                "agent.conf:1: control character U+000D in a string must be escaped (\\u000D)",
                "lone CR in a string");
}

static void test_refused_structure(void)
{
        refused("[agent]\nport = 9002\nport = 9003\n",
                "agent.conf:3: duplicate key 'port' (first set at line 2)", "duplicate key");
        refused("\"port\" = 1\nport = 2\n",
                "agent.conf:2: duplicate key 'port' (first set at line 1)",
                "quoted and bare spellings are the same key");
        refused("\"a b\" = 1\n'a b' = 2\n",
                "agent.conf:2: duplicate key \"a b\" (first set at line 1)",
                "duplicate quoted key");
        refused("[a]\nk = 1\n[b]\n[a]\n", "agent.conf:4: table [a] defined twice (first at line 1)",
                "table redefinition");
        refused("[a.b]\n[\"a\".'b']\n", "agent.conf:2: table [a.b] defined twice (first at line 1)",
                "table redefinition with quoted names");
        refused("[x.y]\n[x]\n[x]\n", "agent.conf:3: table [x] defined twice (first at line 2)",
                "implicit table defined twice");
        refused("a = 1\n[a]\n",
                "agent.conf:2: cannot define table [a]: a is already a key (set at line 1)",
                "table over a key");
        refused("[a]\nb = 1\n[a.b.c]\n",
                "agent.conf:3: cannot define table [a.b.c]: a.b is already a key (set at line 2)",
                "sub-table under a key");
        refused("[a.b]\n[a]\nb = 1\n", "agent.conf:3: key 'b' conflicts with table [a.b] (line 1)",
                "key over a table");
        refused("[[servers]]\n", "agent.conf:1: arrays of tables ([[...]]) are not supported",
                "array of tables");
        refused("[agent]\nrevocation.actions = \"x\"\n",
                "agent.conf:2: dotted keys are not supported (after key 'revocation'); use a "
                "[table] header",
                "dotted key");
        refused("port 9002\n", "agent.conf:1: expected '=' after key 'port', found '9002'",
                "missing '='");
        refused("[agent]\nport\n", "agent.conf:2: expected '=' after key 'port', found end of line",
                "key alone");
        refused("port: 9002\n", "agent.conf:1: expected '=' after key 'port', found ':'",
                "YAML habit");
        refused("= 3\n", "agent.conf:1: expected a key, found '='", "no key");
        refused("k\xc3\xa9y = 1\n", "agent.conf:1: expected '=' after key 'k', found '\xc3\xa9'",
                "non-ASCII in a bare key");
        refused("[agent\nport = 1\n",
                "agent.conf:1: expected '.' or ']' in table header, found end of line",
                "unclosed header");
        refused("[]\n", "agent.conf:1: expected a table name between '[' and ']'", "empty header");
        refused("[a.]\n", "agent.conf:1: expected a key, found ']'", "empty header component");
        refused("[agent] port = 1\n",
                "agent.conf:1: expected end of line after the table header, found 'port'",
                "key on the header line");
        refused("a = 1\rb = 2\n",
                "agent.conf:1: carriage return (U+000D) not followed by a line feed",
                "lone carriage return");
}

static void test_refused_arrays(void)
{
        refused("list = [\"a\", 1]\n", "agent.conf:1: arrays may only hold strings (found '1')",
                "integer in an array");
        refused("list = [true]\n", "agent.conf:1: arrays may only hold strings (found 'true')",
                "boolean in an array");
        refused("list = [[\"a\"]]\n",
                "agent.conf:1: arrays may only hold strings (found a nested array)",
                "nested array");
        refused("list = [{}]\n",
                "agent.conf:1: arrays may only hold strings (found an inline table)",
                "inline table in an array");
        refused("list = [,]\n", "agent.conf:1: expected an array item or ']', found ','",
                "leading comma");
        refused("list = [\"a\",,]\n", "agent.conf:1: expected an array item or ']', found ','",
                "double comma");
        refused("list = [\"a\" \"b\"]\n",
                "agent.conf:1: expected ',' or ']' after an array item, found '\"'",
                "missing comma");
        refused("x = 1\nlist = [\n  \"a\",\n  \"b\"\n",
                "agent.conf:2: unterminated array: no ']' before end of file",
                "unterminated array names the line it opened");
        refused("list = [\"a\" # c\x01\n]\n",
                "agent.conf:1: control character U+0001 is not allowed in a comment",
                "control character in a comment inside an array");
}

static void test_refused_encoding(void)
{
        refused_len("a = 1\nb = 2\0\n", 12, "agent.conf:2: NUL byte in input (at byte 11)",
                    "NUL byte");
        refused_len("\0", 1, "agent.conf:1: NUL byte in input (at byte 0)", "only a NUL byte");
        refused("a = \"\xff\"\n", "agent.conf:1: invalid UTF-8 (byte 0xff at byte 5)",
                "invalid byte in a string");
        refused("# ok\n# \xc0\xaf overlong\n", "agent.conf:2: invalid UTF-8 (byte 0xc0 at byte 7)",
                "overlong encoding in a comment");
        refused("a = \"\xed\xa0\x80\"\n", "agent.conf:1: invalid UTF-8 (byte 0xed at byte 5)",
                "UTF-8-encoded surrogate");
        refused("a = \"\xf4\x90\x80\x80\"\n", "agent.conf:1: invalid UTF-8 (byte 0xf4 at byte 5)",
                "past U+10FFFF");
        refused("a = 1 # \xe2\x82", "agent.conf:1: invalid UTF-8 (byte 0xe2 at byte 8)",
                "sequence cut by end of input");
        refused("# bell\x07\n",
                "agent.conf:1: control character U+0007 is not allowed in a comment",
                "control character in a comment");
        refused("# del\x7f\n", "agent.conf:1: control character U+007F is not allowed in a comment",
                "DEL in a comment");
        refused("a = 1\x01\n",
                "agent.conf:1: expected end of line after the value, found control character "
                "U+0001",
                "control character after a value");
}

/* Every prefix of a document using every feature either parses or is refused with a
 * located message; the copy has no terminator, so ASan catches any read past the end. */
static void test_cut_input(void)
{
        static const char doc[] =
            "\xef\xbb\xbf# c\xc3\xa9\r\n[a . \"b\\u00e9\"]\nk = 'v'\n\"q\\U0001F600\" = "
            "[\n \"x\", # c\n 'y',\n]\nn = -1\nb = false\ni = 0x1_f\n[t]\ns = \"\\\"\"\n";
        int bad = 0;

        for (size_t len = 0; len <= sizeof(doc) - 1; len++) {
                struct vg_toml_doc *d = NULL;
                struct vg_error err = { 0 };
                int r = parse(doc, len, &d, &err);
                if (r < 0 && strncmp(err.msg, "agent.conf:", 11) != 0)
                        bad++;
                if (r == 0 && !d)
                        bad++;
                vg_toml_doc_free(d);
        }
        is_int(bad, 0, "every prefix of a rich document parses or fails with FILE:LINE");

        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *whole = NULL;
        struct vg_error err = { 0 };
        is_int(parse(doc, sizeof(doc) - 1, &whole, &err), 0, "the whole document parses");
        is_int(whole ? whole->n_entries : 0, 6, "with all its entries");
}

static void test_parse_value(void)
{
        struct vg_toml_value v;
        struct vg_error err = { 0 };

        is_int(vg_toml_parse_value(" [\"a\", 'b,c'] ", 14, "environment X", &v, &err), 0,
               "value: an array with spaces around");
        ok(v.type == VG_TOML_STRING_ARRAY && v.array.n == 2 && strcmp(v.array.items[1], "b,c") == 0,
           "value: items parsed");
        vg_toml_value_clear(&v);

        is_int(vg_toml_parse_value("[\n\"a\",\n]", 8, "environment X", &v, &err), 0,
               "value: an array over lines");
        vg_toml_value_clear(&v);

        is_int(vg_toml_parse_value("0x10", 4, "environment X", &v, &err), 0, "value: integer");
        is_int(v.integer, 16, "value: 0x10");

        is_int(vg_toml_parse_value("1.5", 3, "environment X", &v, &err), -EINVAL,
               "value: float refused");
        is_str(err.msg, "environment X: floats are not supported (found '1.5')",
               "value errors name what, not a line");
        is_int(vg_toml_parse_value("[\"a\"] x", 7, "environment X", &v, &err), -EINVAL,
               "value: trailing text refused");
        is_str(err.msg, "environment X: expected nothing after the value, found 'x'",
               "value: trailing text message");
        is_int(vg_toml_parse_value("", 0, "environment X", &v, &err), -EINVAL, "value: empty");
        is_str(err.msg, "environment X: expected a value, found end of file",
               "value: empty message");
}

static char *written(void (*fn)(FILE *, const void *), const void *arg)
{
        char *text = NULL;
        size_t len;
        FILE *f = open_memstream(&text, &len);

        if (!f)
                tap_bail("open_memstream failed");
        fn(f, arg);
        fclose(f);
        return text;
}

static void write_key(FILE *f, const void *arg)
{
        vg_toml_write_key(f, arg);
}

static void write_string(FILE *f, const void *arg)
{
        vg_toml_write_string(f, arg);
}

static void write_doc(FILE *f, const void *arg)
{
        vg_toml_doc_write(arg, f);
}

static void test_writer(void)
{
        _cleanup_free_ char *k1 = written(write_key, "registrar_port");
        _cleanup_free_ char *k2 = written(write_key, "a.b c");
        _cleanup_free_ char *k3 = written(write_key, "");
        _cleanup_free_ char *s1 = written(write_string, "q\"b\\\n\t\x01\x7f\xc3\xa9");

        is_str(k1, "registrar_port", "bare key written bare");
        is_str(k2, "\"a.b c\"", "other keys quoted");
        is_str(k3, "\"\"", "empty key quoted");
        is_str(s1, "\"q\\\"b\\\\\\n\\t\\u0001\\u007F\xc3\xa9\"", "string escapes");

        static const char src[] = "top = 'x'\n[b]\nlist = ['1', \"2\"]\n[a.\"c d\"]\n\"k k\" = "
                                  "-5\nflag = true\n[b.x]\ne = \"\\u0007\"\n";
        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *doc = parse_ok(src, "writer input");
        _cleanup_free_ char *out = doc ? written(write_doc, doc) : NULL;
        is_str(out,
               "top = \"x\"\n\n[b]\nlist = [\"1\", \"2\"]\n\n[a.\"c d\"]\n\"k k\" = -5\nflag = "
               "true\n\n[b.x]\ne = \"\\u0007\"\n",
               "document written in canonical form");

        _cleanup_(vg_toml_doc_freep) struct vg_toml_doc *again =
            out ? parse_ok(out, "written document") : NULL;
        ok(again && again->n_entries == 5 && entry(again, "a.\"c d\"", "k k") &&
               strcmp(entry(again, "b.x", "e")->value.string, "\x07") == 0,
           "written document reads back the same");

        is_str(vg_toml_type_name(VG_TOML_STRING_ARRAY), "array of strings", "type names");
        ok(vg_toml_utf8_valid("caf\xc3\xa9", 5) && !vg_toml_utf8_valid("\xc3", 1), "UTF-8 check");
}

int main(void)
{
        test_keylime_dropin();
        test_tables();
        test_strings();
        test_keys();
        test_integers_booleans();
        test_arrays();
        test_layout();
        test_refused_values();
        test_refused_integers();
        test_refused_strings();
        test_refused_structure();
        test_refused_arrays();
        test_refused_encoding();
        test_cut_input();
        test_parse_value();
        test_writer();
        return tap_done();
}
