/* vigil: integrity events (issue 7 contract §1): constructors for the four report kinds, the
 * validator for incoming JSON in vigil's form, and the conversion of GCE's log entry. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cleanup.h"
#include "encoding.h"
#include "integrity_event.h"

static const char *const kind_names[] = {
        [VG_IEVENT_EARLY_BOOT] = "earlyBootReportEvent",
        [VG_IEVENT_LATE_BOOT] = "lateBootReportEvent",
        [VG_IEVENT_RUNTIME] = "runtimeReportEvent",
        [VG_IEVENT_RELEARN] = "relearnEvent",
};

static const char *const severity_names[] = {
        [VG_IEVENT_INFO] = "INFO",         [VG_IEVENT_NOTICE] = "NOTICE",
        [VG_IEVENT_WARNING] = "WARNING",   [VG_IEVENT_ERROR] = "ERROR",
        [VG_IEVENT_CRITICAL] = "CRITICAL",
};

static const char *const algo_names[] = {
        [VG_HASH_SHA1] = "SHA1",
        [VG_HASH_SHA256] = "SHA256",
        [VG_HASH_SHA384] = "SHA384",
        [VG_HASH_SHA512] = "SHA512",
};

static const char *const failure_types[] = { "fnf", "hash", "template-hash", "signature",
                                             "policy" };

/* GCE's other IntegrityEvent keys (fim_boot.md §5.1): valid entries that carry no report. */
static const char *const gce_other_kinds[] = {
        "startupEvent",
        "shutdownEvent",
        "clearTPMEvent",
        "setShieldedInstanceIntegrityPolicy",
        "updateShieldedInstanceConfig",
        "sevLaunchAttestationReportEvent",
};

#define MAX_MEASUREMENTS 256
#define MAX_FAILURES     100000
#define MAX_LABELS       256
#define MAX_TEXT         4096

const char *vg_ievent_kind_name(enum vg_ievent_kind k)
{
        return k >= VG_IEVENT_EARLY_BOOT && k <= VG_IEVENT_RELEARN ? kind_names[k] : "unknown";
}

int vg_ievent_kind_from_name(const char *s, enum vg_ievent_kind *out)
{
        for (int k = VG_IEVENT_EARLY_BOOT; s && k <= VG_IEVENT_RELEARN; k++)
                if (strcmp(s, kind_names[k]) == 0) {
                        *out = (enum vg_ievent_kind)k;
                        return 0;
                }
        return -EINVAL;
}

const char *vg_ievent_severity_name(enum vg_ievent_severity s)
{
        return s >= VG_IEVENT_INFO && s <= VG_IEVENT_CRITICAL ? severity_names[s] : "unknown";
}

int vg_ievent_severity_from_name(const char *s, enum vg_ievent_severity *out)
{
        for (int k = VG_IEVENT_INFO; s && k <= VG_IEVENT_CRITICAL; k++)
                if (strcmp(s, severity_names[k]) == 0) {
                        *out = (enum vg_ievent_severity)k;
                        return 0;
                }
        return -EINVAL;
}

bool vg_ievent_pcr_is_early(unsigned pcr)
{
        return pcr <= 3 || pcr == 7;
}

bool vg_ievent_pcr_is_late(unsigned pcr)
{
        return pcr == 4 || pcr == 5 || pcr == 8 || pcr == 9 || (pcr >= 11 && pcr <= 14);
}

void vg_ievent_format_time(int64_t ms, char *buf, size_t len)
{
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;

        gmtime_r(&secs, &tm);
        snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

void vg_ievent_new_uuid(char out[37])
{
        uint8_t b[16];

        if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
                /* getrandom on 16 bytes does not fail once the pool is up; never a fixed id */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                for (size_t i = 0; i < sizeof(b); i++)
                        b[i] ^= (uint8_t)((uint64_t)ts.tv_nsec >> (i % 8) * 8) ^ (uint8_t)rand();
        }
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15]);
}

/* ---- validation ---- */

/* An id usable as an MQTT topic level and in a log line. */
static int check_id(const char *path, const json_t *v, struct vg_error *err)
{
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);

        if (!json_is_string(v))
                return vg_error_set(err, -EINVAL, "%s: expected a string", path);
        if (len == 0 || len > VG_IEVENT_MAX_ID)
                return vg_error_set(err, -EINVAL, "%s: expected 1 to %d bytes, found %zu", path,
                                    VG_IEVENT_MAX_ID, len);
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x20 || c == 0x7f || c == '/' || c == '+' || c == '#')
                        return vg_error_set(err, -EINVAL,
                                            "%s: character 0x%02x at offset %zu is not allowed "
                                            "(no control characters, '/', '+' or '#')",
                                            path, c, i);
        }
        return 0;
}

static int check_text(const char *path, const json_t *v, bool empty_ok, struct vg_error *err)
{
        if (!json_is_string(v))
                return vg_error_set(err, -EINVAL, "%s: expected a string, found %s", path,
                                    v ? "another type" : "nothing");
        if (!empty_ok && json_string_length(v) == 0)
                return vg_error_set(err, -EINVAL, "%s: must not be empty", path);
        if (json_string_length(v) > MAX_TEXT)
                return vg_error_set(err, -EINVAL, "%s: longer than %d bytes", path, MAX_TEXT);
        if (strlen(json_string_value(v)) != json_string_length(v))
                return vg_error_set(err, -EINVAL, "%s: contains a NUL character", path);
        return 0;
}

static bool digits(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM). */
static int check_time(const char *path, const json_t *v, struct vg_error *err)
{
        const char *s = json_string_value(v);
        size_t n = json_string_length(v), i = 19;

        if (!json_is_string(v))
                return vg_error_set(err, -EINVAL, "%s: expected an RFC 3339 time string", path);
        bool ok = n >= 20 && n <= 40 && digits(s, 4) && s[4] == '-' && digits(s + 5, 2) &&
                  s[7] == '-' && digits(s + 8, 2) && (s[10] == 'T' || s[10] == 't') &&
                  digits(s + 11, 2) && s[13] == ':' && digits(s + 14, 2) && s[16] == ':' &&
                  digits(s + 17, 2);
        if (ok && s[i] == '.') {
                size_t start = ++i;
                while (i < n && s[i] >= '0' && s[i] <= '9')
                        i++;
                ok = i > start && i - start <= 9;
        }
        if (ok) {
                if (i == n - 1)
                        ok = s[i] == 'Z' || s[i] == 'z';
                else
                        ok = i + 6 == n && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2) &&
                             s[i + 3] == ':' && digits(s + i + 4, 2);
        }
        if (ok) {
                int mon = (s[5] - '0') * 10 + s[6] - '0', day = (s[8] - '0') * 10 + s[9] - '0';
                int hh = (s[11] - '0') * 10 + s[12] - '0', mm = (s[14] - '0') * 10 + s[15] - '0';
                int ss = (s[17] - '0') * 10 + s[18] - '0';
                ok = mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hh <= 23 && mm <= 59 &&
                     ss <= 60;
        }
        if (!ok)
                return vg_error_set(err, -EINVAL,
                                    "%s: expected an RFC 3339 time such as "
                                    "\"2026-11-23T09:00:00.123Z\", found \"%.40s\"",
                                    path, s);
        return 0;
}

static int check_bool(const char *path, const json_t *v, bool *out, struct vg_error *err)
{
        if (!json_is_boolean(v))
                return vg_error_set(err, -EINVAL, "%s: expected true or false", path);
        *out = json_is_true(v);
        return 0;
}

enum phase { PHASE_ANY, PHASE_EARLY, PHASE_LATE };

static int check_measurements(const char *path, const json_t *arr, enum phase phase,
                              struct vg_error *err)
{
        size_t i;
        const json_t *m;

        if (!json_is_array(arr))
                return vg_error_set(err, -EINVAL, "%s: expected an array of measurements", path);
        if (json_array_size(arr) > MAX_MEASUREMENTS)
                return vg_error_set(err, -EINVAL, "%s: more than %d measurements", path,
                                    MAX_MEASUREMENTS);
        json_array_foreach (arr, i, m) {
                const char *algo = json_string_value(json_object_get(m, "hashAlgo"));
                const char *pcr = json_string_value(json_object_get(m, "pcrNum"));
                const json_t *val = json_object_get(m, "value");
                int alg = -1;
                unsigned n = 0;

                if (!json_is_object(m))
                        return vg_error_set(err, -EINVAL, "%s[%zu]: expected an object", path, i);
                for (int a = 0; algo && a < VG_HASH_ALG_COUNT; a++)
                        if (strcmp(algo, algo_names[a]) == 0)
                                alg = a;
                if (alg < 0)
                        return vg_error_set(err, -EINVAL,
                                            "%s[%zu].hashAlgo: expected SHA1, SHA256, SHA384 or "
                                            "SHA512",
                                            path, i);
                size_t plen = pcr ? strlen(pcr) : 0;
                if (plen < 5 || plen > 6 || strncmp(pcr, "PCR_", 4) != 0 ||
                    !digits(pcr + 4, plen - 4) || (plen == 6 && pcr[4] == '0') ||
                    (n = (unsigned)atoi(pcr + 4)) > 23)
                        return vg_error_set(err, -EINVAL,
                                            "%s[%zu].pcrNum: expected \"PCR_0\" to \"PCR_23\"",
                                            path, i);
                if (phase == PHASE_EARLY && !vg_ievent_pcr_is_early(n))
                        return vg_error_set(err, -EINVAL,
                                            "%s[%zu].pcrNum: PCR %u is not an early-boot PCR "
                                            "(0-3, 7)",
                                            path, i, n);
                if (phase == PHASE_LATE && !vg_ievent_pcr_is_late(n))
                        return vg_error_set(err, -EINVAL,
                                            "%s[%zu].pcrNum: PCR %u is not a late-boot PCR "
                                            "(4, 5, 8, 9, 11-14)",
                                            path, i, n);
                if (!json_is_string(val))
                        return vg_error_set(err, -EINVAL, "%s[%zu].value: expected base64", path,
                                            i);
                _cleanup_free_ uint8_t *raw = NULL;
                size_t raw_len = 0;
                if (vg_b64_decode(json_string_value(val), json_string_length(val), VG_B64_STD, &raw,
                                  &raw_len) < 0)
                        return vg_error_set(err, -EINVAL, "%s[%zu].value: not standard base64",
                                            path, i);
                if (raw_len != vg_hash_size((enum vg_hash_alg)alg))
                        return vg_error_set(err, -EINVAL,
                                            "%s[%zu].value: %s needs %zu bytes, found %zu", path, i,
                                            algo, vg_hash_size((enum vg_hash_alg)alg), raw_len);
        }
        return 0;
}

static int check_runtime(const json_t *r, bool *passed, struct vg_error *err)
{
        const json_t *failures = json_object_get(r, "failures"), *f, *summary, *v;
        const char *key;
        size_t i;
        int ret = check_bool("runtimeReportEvent.policyEvaluationPassed",
                             json_object_get(r, "policyEvaluationPassed"), passed, err);

        if (ret < 0)
                return ret;
        if (!json_is_array(failures))
                return vg_error_set(err, -EINVAL, "runtimeReportEvent.failures: expected an array");
        if (json_array_size(failures) > MAX_FAILURES)
                return vg_error_set(err, -EINVAL, "runtimeReportEvent.failures: more than %d",
                                    MAX_FAILURES);
        json_array_foreach (failures, i, f) {
                char path[96];
                const char *type = json_string_value(json_object_get(f, "type"));
                bool known = false;

                if (!json_is_object(f))
                        return vg_error_set(err, -EINVAL,
                                            "runtimeReportEvent.failures[%zu]: expected an object",
                                            i);
                for (size_t k = 0; type && k < VG_ARRAY_SIZE(failure_types); k++)
                        known |= strcmp(type, failure_types[k]) == 0;
                if (!known)
                        return vg_error_set(err, -EINVAL,
                                            "runtimeReportEvent.failures[%zu].type: expected fnf, "
                                            "hash, template-hash, signature or policy",
                                            i);
                snprintf(path, sizeof(path), "runtimeReportEvent.failures[%zu].file", i);
                if ((ret = check_text(path, json_object_get(f, "file"), true, err)) < 0)
                        return ret;
                static const char *const opt[] = { "expected", "found" };
                for (size_t k = 0; k < 2; k++) {
                        v = json_object_get(f, opt[k]);
                        snprintf(path, sizeof(path), "runtimeReportEvent.failures[%zu].%s", i,
                                 opt[k]);
                        if (v && (ret = check_text(path, v, true, err)) < 0)
                                return ret;
                }
        }
        summary = json_object_get(r, "summary");
        if (summary && !json_is_object(summary))
                return vg_error_set(err, -EINVAL, "runtimeReportEvent.summary: expected an object");
        json_object_foreach ((json_t *)summary, key, v)
                if (!json_is_integer(v) || json_integer_value(v) < 0)
                        return vg_error_set(err, -EINVAL,
                                            "runtimeReportEvent.summary.%.64s: expected a "
                                            "non-negative integer",
                                            key);
        return 0;
}

static int check_report(enum vg_ievent_kind kind, const json_t *r, bool gce, bool *passed,
                        struct vg_error *err)
{
        const char *name = kind_names[kind];
        char path[96];
        int ret;

        if (!json_is_object(r))
                return vg_error_set(err, -EINVAL, "%s: expected an object", name);
        switch (kind) {
        case VG_IEVENT_EARLY_BOOT:
        case VG_IEVENT_LATE_BOOT: {
                /* GCE's own late-boot reports carry PCR 0 and 7 as well (fim_boot.md §5.1) */
                enum phase ph = gce                           ? PHASE_ANY
                                : kind == VG_IEVENT_LATE_BOOT ? PHASE_LATE
                                                              : PHASE_EARLY;
                snprintf(path, sizeof(path), "%s.policyEvaluationPassed", name);
                if ((ret = check_bool(path, json_object_get(r, "policyEvaluationPassed"), passed,
                                      err)) < 0)
                        return ret;
                snprintf(path, sizeof(path), "%s.actualMeasurements", name);
                if ((ret = check_measurements(path, json_object_get(r, "actualMeasurements"), ph,
                                              err)) < 0)
                        return ret;
                snprintf(path, sizeof(path), "%s.policyMeasurements", name);
                const json_t *pm = json_object_get(r, "policyMeasurements");
                /* GCE omits policyMeasurements before a baseline exists */
                if ((pm || !gce) && (ret = check_measurements(path, pm, ph, err)) < 0)
                        return ret;
                return 0;
        }
        case VG_IEVENT_RUNTIME:
                return check_runtime(r, passed, err);
        case VG_IEVENT_RELEARN:
                *passed = true;
                if ((ret = check_text("relearnEvent.baseline", json_object_get(r, "baseline"),
                                      false, err)) < 0 ||
                    (ret = check_measurements("relearnEvent.previousMeasurements",
                                              json_object_get(r, "previousMeasurements"),
                                              PHASE_LATE, err)) < 0 ||
                    (ret = check_measurements("relearnEvent.newMeasurements",
                                              json_object_get(r, "newMeasurements"), PHASE_LATE,
                                              err)) < 0 ||
                    (ret = check_text("relearnEvent.reason", json_object_get(r, "reason"), true,
                                      err)) < 0)
                        return ret;
                return 0;
        }
        return vg_error_set(err, -EINVAL, "unknown report kind");
}

static int check_labels(const char *path, const json_t *labels, struct vg_error *err)
{
        const char *k;
        const json_t *v;

        if (!json_is_object(labels))
                return vg_error_set(err, -EINVAL, "%s: expected an object of strings", path);
        if (json_object_size(labels) > MAX_LABELS)
                return vg_error_set(err, -EINVAL, "%s: more than %d labels", path, MAX_LABELS);
        json_object_foreach ((json_t *)labels, k, v) {
                char p[128];
                snprintf(p, sizeof(p), "%s.%.64s", path, k);
                int r = check_text(p, v, true, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Exactly one report key; GCE's other kinds are -ENOTSUP. */
static int find_report(const json_t *obj, const char *where, enum vg_ievent_kind *kind,
                       struct vg_error *err)
{
        int found = 0;

        for (int k = VG_IEVENT_EARLY_BOOT; k <= VG_IEVENT_RELEARN; k++)
                if (json_object_get(obj, kind_names[k])) {
                        if (found)
                                return vg_error_set(err, -EINVAL,
                                                    "%s: both %s and %s: an event has exactly one "
                                                    "report",
                                                    where, kind_names[found], kind_names[k]);
                        found = k;
                }
        if (found) {
                *kind = (enum vg_ievent_kind)found;
                return 0;
        }
        for (size_t i = 0; i < VG_ARRAY_SIZE(gce_other_kinds); i++)
                if (json_object_get(obj, gce_other_kinds[i]))
                        return vg_error_set(err, -ENOTSUP,
                                            "%s: %s carries no boot or runtime report", where,
                                            gce_other_kinds[i]);
        return vg_error_set(err, -EINVAL,
                            "%s: no report: expected one of earlyBootReportEvent, "
                            "lateBootReportEvent, runtimeReportEvent, relearnEvent",
                            where);
}

static int parse_boot_counter(const char *path, const json_t *v, uint64_t *out,
                              struct vg_error *err)
{
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);

        if (!json_is_string(v) || n == 0 || n > 20 || !digits(s, n))
                return vg_error_set(err, -EINVAL, "%s: expected a decimal string such as \"3\"",
                                    path);
        errno = 0;
        unsigned long long x = strtoull(s, NULL, 10);
        if (errno)
                return vg_error_set(err, -EINVAL, "%s: out of range", path);
        *out = x;
        return 0;
}

int vg_ievent_validate(const json_t *ev, struct vg_ievent_info *info, struct vg_error *err)
{
        struct vg_ievent_info tmp = { 0 };
        const char *type = json_string_value(json_object_get(ev, "@type"));
        int r;

        if (!info)
                info = &tmp;
        if (!json_is_object(ev))
                return vg_error_set(err, -EINVAL, "event: expected a JSON object");
        if (!type || strcmp(type, VG_IEVENT_TYPE_NAME) != 0)
                return vg_error_set(err, -EINVAL, "@type: expected \"%s\"", VG_IEVENT_TYPE_NAME);
        if ((r = check_id("eventId", json_object_get(ev, "eventId"), err)) < 0 ||
            (r = check_id("agentId", json_object_get(ev, "agentId"), err)) < 0 ||
            (r = parse_boot_counter("bootCounter", json_object_get(ev, "bootCounter"),
                                    &info->boot_counter, err)) < 0 ||
            (r = check_time("time", json_object_get(ev, "time"), err)) < 0)
                return r;
        if (vg_ievent_severity_from_name(json_string_value(json_object_get(ev, "severity")),
                                         &info->severity) < 0)
                return vg_error_set(err, -EINVAL,
                                    "severity: expected INFO, NOTICE, WARNING, ERROR or CRITICAL");
        if ((r = check_text("verifierId", json_object_get(ev, "verifierId"), false, err)) < 0)
                return r;
        const json_t *labels = json_object_get(ev, "labels");
        if (labels && (r = check_labels("labels", labels, err)) < 0)
                return r;
        if ((r = find_report(ev, "event", &info->kind, err)) < 0)
                return r;
        /* GCE's late-boot reports carry PCR 0 and 7 too: converted ones keep them */
        bool gce = strcmp(json_string_value(json_object_get(ev, "verifierId")), "gce") == 0;
        if ((r = check_report(info->kind, json_object_get(ev, kind_names[info->kind]), gce,
                              &info->passed, err)) < 0)
                return r;
        info->event_id = json_string_value(json_object_get(ev, "eventId"));
        info->agent_id = json_string_value(json_object_get(ev, "agentId"));
        info->time = json_string_value(json_object_get(ev, "time"));
        return 0;
}

/* ---- construction ---- */

static json_t *header_json(const struct vg_ievent_header *h, struct vg_error *err)
{
        char id[37], when[40], counter[24];
        int64_t ms = h->time_ms;

        if (!h->agent_id)
                return vg_error_set(err, -EINVAL, "agentId: missing"), NULL;
        if (h->severity < VG_IEVENT_INFO || h->severity > VG_IEVENT_CRITICAL)
                return vg_error_set(err, -EINVAL, "severity: not a known level"), NULL;
        if (h->labels && !json_is_object(h->labels))
                return vg_error_set(err, -EINVAL, "labels: expected an object"), NULL;
        if (ms <= 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        }
        if (!h->event_id)
                vg_ievent_new_uuid(id);
        vg_ievent_format_time(ms, when, sizeof(when));
        snprintf(counter, sizeof(counter), "%llu", (unsigned long long)h->boot_counter);
        json_t *labels = h->labels ? json_deep_copy(h->labels) : json_object();
        json_t *j =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "@type", VG_IEVENT_TYPE_NAME,
                      "eventId", h->event_id ? h->event_id : id, "agentId", h->agent_id,
                      "bootCounter", counter, "time", when, "severity", severity_names[h->severity],
                      "verifierId", h->verifier_id ? h->verifier_id : "default", "labels", labels);
        if (!j)
                vg_error_set(err, -ENOMEM, "out of memory");
        return j;
}

static json_t *measurements_json(const struct vg_ievent_measurement *m, size_t n)
{
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < n; i++) {
                char pcr[16];
                if (m[i].alg >= VG_HASH_ALG_COUNT) {
                        json_decref(arr);
                        return NULL;
                }
                _cleanup_free_ char *b64 =
                    vg_b64_encode(m[i].value, vg_hash_size(m[i].alg), VG_B64_STD);
                snprintf(pcr, sizeof(pcr), "PCR_%u", m[i].pcr);
                if (!b64 || json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "hashAlgo",
                                                                 algo_names[m[i].alg], "pcrNum",
                                                                 pcr, "value", b64)) < 0) {
                        json_decref(arr);
                        return NULL;
                }
        }
        return arr;
}

/* Attach the report and validate the whole event: the constructors and the validator cannot
 * disagree on what an event is. */
static json_t *finish(json_t *ev, enum vg_ievent_kind kind, json_t *report, struct vg_error *err)
{
        if (!ev || !report || json_object_set_new(ev, kind_names[kind], report) < 0) {
                if (!ev)
                        json_decref(report);
                json_decref(ev);
                if (err && err->code == 0)
                        vg_error_set(err, -EINVAL, "%s: invalid measurement or out of memory",
                                     kind_names[kind]);
                return NULL;
        }
        if (vg_ievent_validate(ev, NULL, err) < 0) {
                json_decref(ev);
                return NULL;
        }
        return ev;
}

json_t *vg_ievent_boot_report(const struct vg_ievent_header *h, bool late, bool passed,
                              const struct vg_ievent_measurement *actual, size_t n_actual,
                              const struct vg_ievent_measurement *policy, size_t n_policy,
                              struct vg_error *err)
{
        json_t *ev = header_json(h, err);
        json_t *report = ev ? json_pack("{s:b, s:o*, s:o*}", "policyEvaluationPassed", passed,
                                        "actualMeasurements", measurements_json(actual, n_actual),
                                        "policyMeasurements", measurements_json(policy, n_policy))
                            : NULL;
        /* o* skips a NULL; a skipped array is reported by the validator as missing */
        return finish(ev, late ? VG_IEVENT_LATE_BOOT : VG_IEVENT_EARLY_BOOT, report, err);
}

json_t *vg_ievent_runtime_report(const struct vg_ievent_header *h, bool passed,
                                 const struct vg_ievent_runtime_failure *failures, size_t n,
                                 const json_t *summary, struct vg_error *err)
{
        json_t *ev = header_json(h, err);
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < n; i++) {
                json_t *f =
                    json_pack("{s:s?, s:s?}", "type", failures[i].type, "file", failures[i].file);
                if (f && failures[i].expected)
                        json_object_set_new(f, "expected", json_string(failures[i].expected));
                if (f && failures[i].found)
                        json_object_set_new(f, "found", json_string(failures[i].found));
                if (!f || json_array_append_new(arr, f) < 0) {
                        json_decref(arr);
                        arr = NULL;
                }
        }
        json_t *report =
            ev && arr ? json_pack("{s:b, s:O, s:o}", "policyEvaluationPassed", passed, "failures",
                                  arr, "summary", summary ? json_deep_copy(summary) : json_object())
                      : NULL;
        json_decref(arr);
        return finish(ev, VG_IEVENT_RUNTIME, report, err);
}

json_t *vg_ievent_relearn(const struct vg_ievent_header *h, const char *baseline,
                          const struct vg_ievent_measurement *previous, size_t n_previous,
                          const struct vg_ievent_measurement *next, size_t n_next,
                          const char *reason, struct vg_error *err)
{
        _cleanup_free_ char *why = NULL;
        json_t *ev = header_json(h, err);

        if (!reason && baseline &&
            asprintf(&why, "late boot measurements equal known-good baseline %s", baseline) < 0)
                why = NULL;
        json_t *report =
            ev ? json_pack("{s:s?, s:o*, s:o*, s:s?}", "baseline", baseline, "previousMeasurements",
                           measurements_json(previous, n_previous), "newMeasurements",
                           measurements_json(next, n_next), "reason", reason ? reason : why)
               : NULL;
        return finish(ev, VG_IEVENT_RELEARN, report, err);
}

/* ---- parsing, GCE ---- */

static int gce_severity(const char *s, enum vg_ievent_severity *out)
{
        /* Cloud Logging's LogSeverity, folded onto vigil's five levels */
        static const struct {
                const char *name;
                enum vg_ievent_severity sev;
        } map[] = {
                { "DEFAULT", VG_IEVENT_INFO },       { "DEBUG", VG_IEVENT_INFO },
                { "INFO", VG_IEVENT_INFO },          { "NOTICE", VG_IEVENT_NOTICE },
                { "WARNING", VG_IEVENT_WARNING },    { "ERROR", VG_IEVENT_ERROR },
                { "CRITICAL", VG_IEVENT_CRITICAL },  { "ALERT", VG_IEVENT_CRITICAL },
                { "EMERGENCY", VG_IEVENT_CRITICAL },
        };
        for (size_t i = 0; s && i < VG_ARRAY_SIZE(map); i++)
                if (strcmp(s, map[i].name) == 0) {
                        *out = map[i].sev;
                        return 0;
                }
        return -EINVAL;
}

static int from_gce(const json_t *entry, json_t **out, struct vg_error *err)
{
        const json_t *payload = json_object_get(entry, "jsonPayload");
        const json_t *rlabels = json_object_get(json_object_get(entry, "resource"), "labels");
        const json_t *instance = json_object_get(rlabels, "instance_id");
        const json_t *insert = json_object_get(entry, "insertId");
        const json_t *ts = json_object_get(entry, "timestamp");
        const char *k;
        const json_t *v;
        enum vg_ievent_severity sev = VG_IEVENT_INFO;
        enum vg_ievent_kind kind;
        uint64_t counter;
        bool passed;
        int r;

        if (!json_is_object(payload))
                return vg_error_set(err, -EINVAL, "jsonPayload: expected an object");
        if (json_object_get(entry, "severity") &&
            gce_severity(json_string_value(json_object_get(entry, "severity")), &sev) < 0)
                return vg_error_set(err, -EINVAL,
                                    "severity: expected a Cloud Logging severity (DEFAULT, INFO, "
                                    "..., ERROR, CRITICAL)");
        if ((r = check_id("resource.labels.instance_id", instance, err)) < 0 ||
            (r = check_id("insertId", insert, err)) < 0 ||
            (r = parse_boot_counter("jsonPayload.bootCounter",
                                    json_object_get(payload, "bootCounter"), &counter, err)) < 0)
                return r;
        if (ts && (r = check_time("timestamp", ts, err)) < 0)
                return r;
        if ((r = find_report(payload, "jsonPayload", &kind, err)) < 0)
                return r;
        if (kind != VG_IEVENT_EARLY_BOOT && kind != VG_IEVENT_LATE_BOOT)
                return vg_error_set(err, -EINVAL, "jsonPayload: %s is not a GCE report",
                                    kind_names[kind]);
        const json_t *report = json_object_get(payload, kind_names[kind]);
        if ((r = check_report(kind, report, true, &passed, err)) < 0) {
                vg_error_prefix(err, "jsonPayload.");
                return r;
        }
        json_auto_t *labels = json_object();
        if (json_is_object(rlabels))
                json_object_foreach ((json_t *)rlabels, k, v)
                        if (json_is_string(v) && strcmp(k, "instance_id") != 0 &&
                            json_object_size(labels) < MAX_LABELS &&
                            json_string_length(v) <= MAX_TEXT)
                                json_object_set(labels, k, (json_t *)v);
        char now[40];
        if (!ts) {
                struct timespec t;
                clock_gettime(CLOCK_REALTIME, &t);
                vg_ievent_format_time((int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000, now,
                                      sizeof(now));
        }
        json_t *rep = json_deep_copy(report);
        if (rep && !json_object_get(rep, "policyMeasurements"))
                json_object_set_new(rep, "policyMeasurements", json_array());
        json_t *ev = json_pack("{s:s, s:O, s:O, s:O, s:s, s:s, s:s, s:O, s:o}", "@type",
                               VG_IEVENT_TYPE_NAME, "eventId", insert, "agentId", instance,
                               "bootCounter", json_object_get(payload, "bootCounter"), "time",
                               ts ? json_string_value(ts) : now, "severity", severity_names[sev],
                               "verifierId", "gce", "labels", labels, kind_names[kind], rep);
        if (!ev)
                return vg_error_set(err, -ENOMEM, "out of memory");
        *out = ev;
        return 0;
}

int vg_ievent_parse(const void *data, size_t len, json_t **out, struct vg_ievent_info *info,
                    struct vg_error *err)
{
        json_error_t jerr;
        json_t *ev = NULL;
        int r;

        *out = NULL;
        if (len > VG_IEVENT_MAX_BYTES)
                return vg_error_set(err, -EINVAL, "event of %zu bytes: more than the %d allowed",
                                    len, VG_IEVENT_MAX_BYTES);
        json_auto_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j)
                return vg_error_set(err, -EINVAL, "not JSON: %s at line %d, column %d", jerr.text,
                                    jerr.line, jerr.column);
        if (!json_is_object(j))
                return vg_error_set(err, -EINVAL, "event: expected a JSON object");
        const json_t *payload = json_object_get(j, "jsonPayload");
        const char *ptype = json_string_value(json_object_get(payload, "@type"));
        if (payload && !json_object_get(j, "@type")) {
                if (!ptype || strcmp(ptype, VG_IEVENT_GCE_TYPE_NAME) != 0)
                        return vg_error_set(err, -EINVAL, "jsonPayload.@type: expected \"%s\"",
                                            VG_IEVENT_GCE_TYPE_NAME);
                if ((r = from_gce(j, &ev, err)) < 0)
                        return r;
        } else {
                ev = json_incref(j);
        }
        if ((r = vg_ievent_validate(ev, info, err)) < 0) {
                json_decref(ev);
                return r;
        }
        *out = ev;
        return 0;
}

char *vg_ievent_dumps(const json_t *ev)
{
        return json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
}
