/* vigil-agent: the Keylime agent REST API (pull model, v2.1..v2.5): version, agent info, the
 * NK public key, and identity and integrity quotes with the IMA and UEFI logs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "encoding.h"
#include "log.h"

const char *const vg_agent_api_versions[] = { "2.1", "2.2", "2.3", "2.4", "2.5", NULL };

/* The UEFI log is small (tens of KiB); the IMA list can grow to hundreds of MiB on a busy
 * machine, which is why the verifier asks for it from an offset. */
#define MB_LOG_MAX  (16u << 20)
#define IMA_LOG_MAX (1024u << 20)

#define PCR_NK 16u

bool vg_agent_version_ok(struct vg_http_request *req)
{
        const char *v = vg_http_request_param(req, "version");

        for (size_t i = 0; vg_agent_api_versions[i]; i++)
                if (v && strcmp(v, vg_agent_api_versions[i]) == 0)
                        return true;
        vg_http_reply_error(req, 400, "API version v%s is not supported: expected one of %s to %s",
                            v ? v : "", VG_AGENT_API_OLDEST, VG_AGENT_API_NEWEST);
        return false;
}

static void get_version(struct vg_http_request *req, void *userdata)
{
        json_t *list = json_array();

        for (size_t i = 0; vg_agent_api_versions[i]; i++)
                json_array_append_new(list, json_string(vg_agent_api_versions[i]));
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:o}", "supported_version", VG_AGENT_API_NEWEST,
                                        "supported_versions", list));
}

static void get_agent_info(struct vg_http_request *req, void *userdata)
{
        struct vg_agent *a = userdata;

        if (!vg_agent_version_ok(req))
                return;
        /* ak_handle: the AK is a transient object loaded from data_dir/ak.bin, whose handle is
         * an ESAPI detail; rust-keylime's number is as meaningless to a verifier. 0 says so. */
        vg_http_reply_keylime(req, 200, "Success",
                              json_pack("{s:s, s:s, s:s, s:s, s:i}", "agent_uuid", a->uuid,
                                        "tpm_hash_alg", vg_hash_alg_name(a->hash_alg),
                                        "tpm_enc_alg", vg_tpm_key_type_name(a->enc_alg),
                                        "tpm_sign_alg", vg_tpm_sign_alg_name(a->sign_key),
                                        "ak_handle", 0));
}

static void get_pubkey(struct vg_http_request *req, void *userdata)
{
        struct vg_agent *a = userdata;

        if (!vg_agent_version_ok(req))
                return;
        vg_http_reply_keylime(req, 200, "Success", json_pack("{s:s}", "pubkey", a->nk_pem));
}

/* Keylime's tenant sends 20 alphanumeric characters; the TPM takes at most 64 bytes. */
static bool nonce_valid(const char *n)
{
        size_t len = strlen(n);

        if (len == 0 || len > VG_TPM_NONCE_MAX)
                return false;
        for (; *n; n++)
                if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') ||
                      (*n >= '0' && *n <= '9')))
                        return false;
        return true;
}

/* "0x408000" or "408000": a bitmap of PCRs 0..23. */
static bool parse_mask(const char *s, uint32_t *mask)
{
        uint64_t v = 0;

        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                s += 2;
        if (!*s)
                return false;
        for (; *s; s++) {
                int d = vg_hex_digit_value((unsigned char)*s);
                if (d < 0)
                        return false;
                v = v << 4 | (uint64_t)d;
                if (v >> VG_TPM_PCR_COUNT)
                        return false;
        }
        *mask = (uint32_t)v;
        return true;
}

static bool parse_entry(const char *s, uint64_t *out)
{
        uint64_t v = 0;

        if (!*s || strlen(s) > 18)
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return false;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        *out = v;
        return true;
}

/* Bind the NK into PCR16 and quote mask | PCR16 with the nonce; fills results with the
 * fields both quote endpoints share. Answers the request itself on failure. */
static json_t *quote(struct vg_agent *a, struct vg_http_request *req, const char *nonce,
                     uint32_t mask)
{
        struct vg_tpm_quote q = { 0 };
        struct vg_error err = { 0 };
        _cleanup_free_ char *qs = NULL;
        int r;

        /*
         * The TPM is driven synchronously from the loop: a bind plus quote takes a few ms on
         * swtpm and tens of ms on a hardware TPM, and a TPM executes one command at a time
         * anyway, so a worker thread would only move the queue, not shorten it.
         */
        r = vg_tpm_pcr16_bind(a->tpm, a->hash_alg, a->nk_pem, strlen(a->nk_pem), &err);
        if (r == 0)
                r = vg_tpm_quote(a->tpm, (const uint8_t *)nonce, strlen(nonce), a->hash_alg,
                                 mask | 1u << PCR_NK, &q, &err);
        if (r == 0)
                r = vg_tpm_quote_string(&q, &qs);
        vg_tpm_quote_clear(&q);
        if (r < 0) {
                vg_err(VG_F("agent", a->uuid), "quote failed: %s", vg_error_str(&err));
                vg_http_reply_error(req, 500, "TPM quote failed: %s", vg_error_str(&err));
                return NULL;
        }
        return json_pack("{s:s, s:s, s:s, s:s}", "quote", qs, "hash_alg",
                         vg_hash_alg_name(a->hash_alg), "enc_alg", vg_tpm_key_type_name(a->enc_alg),
                         "sign_alg", vg_tpm_sign_alg_name(a->sign_key));
}

static const char *nonce_param(struct vg_http_request *req)
{
        const char *nonce = vg_http_request_query(req, "nonce");

        if (!nonce) {
                vg_http_reply_error(req, 400, "missing query parameter nonce");
                return NULL;
        }
        if (!nonce_valid(nonce)) {
                vg_http_reply_error(req, 400,
                                    "nonce must be 1 to %d letters and digits, found %zu "
                                    "characters%s",
                                    VG_TPM_NONCE_MAX, strlen(nonce),
                                    strlen(nonce) > VG_TPM_NONCE_MAX ? "" : " with others");
                return NULL;
        }
        return nonce;
}

static void get_identity_quote(struct vg_http_request *req, void *userdata)
{
        struct vg_agent *a = userdata;
        const char *nonce;
        json_t *res;

        if (!vg_agent_version_ok(req) || !(nonce = nonce_param(req)))
                return;
        vg_debug(VG_F("agent", a->uuid, "peer", vg_http_request_peer(req)),
                 "identity quote requested, nonce %s", nonce);
        res = quote(a, req, nonce, 0);
        if (!res)
                return;
        json_object_set_new(res, "pubkey", json_string(a->nk_pem));
        vg_http_reply_keylime(req, 200, "Success", res);
}

static void ima_marks_clear(struct vg_agent *a)
{
        memset(a->ima_marks, 0, sizeof(a->ima_marks));
        a->ima_mark_next = 0;
}

static void ima_mark_add(struct vg_agent *a, uint64_t entry, uint64_t offset)
{
        if (entry == 0 || offset == 0)
                return; /* entry 0 at offset 0 needs no mark */
        for (size_t i = 0; i < VG_ARRAY_SIZE(a->ima_marks); i++)
                if (a->ima_marks[i].offset && a->ima_marks[i].entry == entry) {
                        a->ima_marks[i].offset = offset;
                        return;
                }
        a->ima_marks[a->ima_mark_next] = (struct vg_agent_ima_mark){ entry, offset };
        a->ima_mark_next = (a->ima_mark_next + 1) % VG_ARRAY_SIZE(a->ima_marks);
}

/* The nearest mark at or before entry that still sits just after a newline of the list; a
 * list that shrank (reboot, rotation in a test) or whose bytes moved drops all marks. */
static struct vg_agent_ima_mark ima_mark_find(struct vg_agent *a, int fd, uint64_t entry)
{
        struct vg_agent_ima_mark best = { 0, 0 };
        struct stat st;
        char c;

        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
                for (size_t i = 0; i < VG_ARRAY_SIZE(a->ima_marks); i++)
                        if (a->ima_marks[i].offset > (uint64_t)st.st_size) {
                                ima_marks_clear(a);
                                return best;
                        }
        for (size_t i = 0; i < VG_ARRAY_SIZE(a->ima_marks); i++) {
                const struct vg_agent_ima_mark *m = &a->ima_marks[i];
                if (m->offset && m->entry <= entry && m->entry > best.entry)
                        best = *m;
        }
        if (best.offset && (pread(fd, &c, 1, (off_t)best.offset - 1) != 1 || c != '\n')) {
                ima_marks_clear(a);
                best = (struct vg_agent_ima_mark){ 0, 0 };
        }
        return best;
}

/* Everything from offset to the end of the file (securityfs files have no useful size). */
static int read_from(int fd, uint64_t offset, size_t max, char **out, size_t *len)
{
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, cap = 0;

        for (;;) {
                if (cap - n < 65536) {
                        cap = cap ? cap * 2 : 1u << 20;
                        char *p = realloc(buf, cap + 1);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                }
                ssize_t got = pread(fd, buf + n, cap - n, (off_t)(offset + n));
                if (got < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (got == 0)
                        break;
                n += (size_t)got;
                if (n > max)
                        return -EFBIG;
        }
        buf[n] = '\0';
        *out = TAKE_PTR(buf);
        *len = n;
        return 0;
}

/*
 * The IMA list from entry *entry on, complete lines only (the kernel's file never shows half
 * a line; a writer appending to a plain file might). Read after the quote: every entry the
 * quote's PCR 10 covers is then in the text, so the verifier finds the quote's point in the
 * log. As Keylime's agent: entry == number of entries gives an empty list (nothing new yet);
 * an entry past that gives the whole list and *entry = 0 (the verifier then knows the list
 * restarted). Returns -ENOENT when there is no list (IMA off), which leaves the fields out.
 */
static int ima_slice(struct vg_agent *a, uint64_t *entry, char **text)
{
        struct vg_agent_ima_mark m;
        _cleanup_free_ char *buf = NULL;
        const char *p, *end, *start = NULL;
        uint64_t n;
        size_t len = 0;
        int r;

        if (a->ima_fd < 0)
                return -ENOENT;
        m = ima_mark_find(a, a->ima_fd, *entry);
        r = read_from(a->ima_fd, m.offset, IMA_LOG_MAX, &buf, &len);
        if (r < 0)
                return r;
        /* Count complete lines from the mark; note where the asked-for entry starts. */
        p = buf;
        end = buf + len;
        n = m.entry;
        for (;;) {
                if (n == *entry)
                        start = p;
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl)
                        break;
                p = nl + 1;
                n++;
        }
        /* p: just after the last complete line, which is entry n - 1. */
        ima_mark_add(a, n, m.offset + (uint64_t)(p - buf));
        if (!start) {
                if (*entry == 0)
                        return -EIO; /* cannot happen: entry 0 starts the file */
                *entry = 0;
                return ima_slice(a, entry, text);
        }
        ima_mark_add(a, *entry, m.offset + (uint64_t)(start - buf));
        *text = strndup(start, (size_t)(p - start));
        return *text ? 0 : -ENOMEM;
}

static void get_integrity_quote(struct vg_http_request *req, void *userdata)
{
        struct vg_agent *a = userdata;
        const char *nonce, *s;
        uint32_t mask = 0;
        uint64_t entry = 0;
        bool partial = false;
        json_t *res;
        int r;

        if (!vg_agent_version_ok(req) || !(nonce = nonce_param(req)))
                return;
        s = vg_http_request_query(req, "mask");
        if (s && !parse_mask(s, &mask)) {
                vg_http_reply_error(req, 400,
                                    "mask must be a hex bitmap of PCRs 0 to 23 such as 0x408000, "
                                    "found \"%.40s\"",
                                    s);
                return;
        }
        s = vg_http_request_query(req, "partial");
        if (s && strcmp(s, "0") != 0 && strcmp(s, "1") != 0) {
                vg_http_reply_error(req, 400, "partial must be 0 or 1, found \"%.20s\"", s);
                return;
        }
        partial = s && strcmp(s, "1") == 0;
        s = vg_http_request_query(req, "ima_ml_entry");
        if (s && !parse_entry(s, &entry)) {
                vg_http_reply_error(req, 400,
                                    "ima_ml_entry must be a non-negative line number, found "
                                    "\"%.20s\"",
                                    s);
                return;
        }
        vg_debug(VG_F("agent", a->uuid, "peer", vg_http_request_peer(req)),
                 "integrity quote requested, nonce %s mask 0x%x partial %d ima_ml_entry %llu",
                 nonce, mask, partial, (unsigned long long)entry);

        res = quote(a, req, nonce, mask);
        if (!res)
                return;
        if (!partial)
                json_object_set_new(res, "pubkey", json_string(a->nk_pem));

        const char *ima = vg_config_string(a->cfg, "ima_ml_path");
        _cleanup_free_ char *text = NULL;
        r = ima_slice(a, &entry, &text);
        if (r == 0) {
                json_object_set_new(res, "ima_measurement_list", json_string(text));
                json_object_set_new(res, "ima_measurement_list_entry",
                                    json_integer((json_int_t)entry));
        } else if (r != -ENOENT) {
                vg_err(VG_F("agent", a->uuid, "file", ima), "cannot read the IMA list: %s",
                       strerror(-r));
                json_decref(res);
                vg_http_reply_error(req, 500, "cannot read the IMA measurement list: %s",
                                    strerror(-r));
                return;
        }

        /* Keylime sends the UEFI log only when measured boot is being checked (PCR 0 asked). */
        if (mask & 1u) {
                const char *mb = vg_config_string(a->cfg, "measuredboot_ml_path");
                _cleanup_free_ char *log = NULL, *b64 = NULL;
                size_t len;
                r = a->mb_fd >= 0 ? vg_agent_read_fd(a->mb_fd, MB_LOG_MAX, &log, &len) : -ENOENT;
                if (r == 0 && !(b64 = vg_b64_encode(log, len, VG_B64_STD)))
                        r = -ENOMEM;
                if (r == 0)
                        json_object_set_new(res, "mb_measurement_list", json_string(b64));
                else
                        vg_warn(VG_F("agent", a->uuid, "file", mb),
                                "PCR 0 was asked for but the UEFI event log cannot be read: %s",
                                strerror(-r));
        }
        vg_http_reply_keylime(req, 200, "Success", res);
}

int vg_agent_api_register(struct vg_agent *a)
{
        /* /keys/ukey, /keys/vkey, /keys/verify and /notifications/revocation: payload_api.c. */
        static const struct {
                const char *pattern;
                vg_http_handler_fn fn;
        } routes[] = {
                { "/version", get_version },
                { "/v{version}/agent/info", get_agent_info },
                { "/v{version}/keys/pubkey", get_pubkey },
                { "/v{version}/quotes/identity", get_identity_quote },
                { "/v{version}/quotes/integrity", get_integrity_quote },
        };
        int r;

        for (size_t i = 0; i < VG_ARRAY_SIZE(routes); i++) {
                r = vg_http_server_route(a->server, "GET", routes[i].pattern, routes[i].fn, a);
                if (r < 0)
                        return r;
        }
        return vg_agent_payload_api_register(a);
}
