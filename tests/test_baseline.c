/* vigil tests: known-good baselines. The library on SQLite and PostgreSQL (measurement shapes,
 * add/list/rm, matching, TOFU learning, relearning, the hash-chained journal and tampering
 * found), then the verifier's /baselines, /agents/{id}/measurements and /relearn routes through
 * `vigil baseline` against a real vigil-verifier attesting a real agent on swtpm. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "baseline.h"
#include "cleanup.h"
#include "encoding.h"
#include "pg.h"
#include "stack.h"
#include "store.h"
#include "swtpm.h"
#include "tap.h"

static void fill(uint8_t *v, size_t n, uint8_t seed)
{
        for (size_t i = 0; i < n; i++)
                v[i] = (uint8_t)(seed + i);
}

/* sha256 PCRs 4, 5, 8, 9 (seeded), PCR 0 and 7 (early), sha1 PCR 4. */
static void sample(struct vg_measurements *m, uint8_t seed)
{
        uint8_t v[64];
        const unsigned pcrs[] = { 0, 4, 5, 7, 8, 9 };

        for (size_t i = 0; i < VG_ARRAY_SIZE(pcrs); i++) {
                fill(v, 32, (uint8_t)(seed + pcrs[i]));
                vg_measurements_set(m, VG_HASH_SHA256, pcrs[i], v);
        }
        fill(v, 20, seed);
        vg_measurements_set(m, VG_HASH_SHA1, 4, v);
}

static void test_shapes(void)
{
        struct vg_measurements m = { 0 }, m2 = { 0 };
        struct vg_error err = { 0 };
        uint8_t v[32];
        _cleanup_free_ char *b64 = NULL, *hex = NULL;

        fill(v, 32, 7);
        b64 = vg_b64_encode(v, 32, VG_B64_STD);
        hex = vg_hex_encode(v, 32);
        char *gce = tap_keep(tap_strf(
            "{\"insertId\": \"x\", \"severity\": \"ERROR\", \"jsonPayload\": {\"@type\": "
            "\"type.googleapis.com/cloud_integrity.IntegrityEvent\", \"lateBootReportEvent\": "
            "{\"policyEvaluationPassed\": false, \"actualMeasurements\": [{\"hashAlgo\": "
            "\"SHA256\", \"pcrNum\": \"PCR_4\", \"value\": \"%s\"}], \"policyMeasurements\": []}}}",
            b64));
        is_int(vg_measurements_parse(gce, strlen(gce), "gce.json", &m, &err), 0,
               "a GCE log entry: its lateBootReportEvent's actualMeasurements");
        ok(m.n == 1 && m.m[0].pcr == 4 && m.m[0].alg == VG_HASH_SHA256 &&
               memcmp(m.m[0].value, v, 32) == 0,
           "SHA256 PCR_4 with the base64 value decoded");
        char *fs = tap_keep(tap_strf("{\"PCR_4\": {\"hashAlgo\": \"sha256\", \"pcrNum\": 4, "
                                     "\"value\": \"%s\"}}",
                                     hex));
        is_int(vg_measurements_parse(fs, strlen(fs), "fs.json", &m2, &err), 0,
               "GCE's Firestore document shape, a numeric pcrNum and a hex value");
        ok(vg_measurements_equal(&m, &m2), "both shapes give the same measurements");
        const char *bad =
            "[{\"hashAlgo\": \"SHA256\", \"pcrNum\": \"PCR_4\", \"value\": \"AAAA\"}]";
        ok(vg_measurements_parse(bad, strlen(bad), "bad.json", &m, &err) == -EINVAL &&
               strstr(vg_error_str(&err), "bad.json: measurements[0].value: 3 bytes"),
           "a short value is refused naming file and JSON path: %s", vg_error_str(&err));
        const char *bad2 = "{\"policyMeasurements\": [{\"hashAlgo\": \"MD5\"}]}";
        ok(vg_measurements_parse(bad2, strlen(bad2), "p.json", &m, &err) == -EINVAL &&
               strstr(vg_error_str(&err), "policyMeasurements[0].hashAlgo: unknown algorithm"),
           "an unknown algorithm names its path: %s", vg_error_str(&err));
        const char *bad3 = "{\n\"measurements\": [,]}";
        ok(vg_measurements_parse(bad3, strlen(bad3), "s.json", &m, &err) == -EINVAL &&
               strstr(vg_error_str(&err), "s.json: line 2"),
           "a syntax error names the line: %s", vg_error_str(&err));

        /* binary form */
        uint8_t *p = NULL;
        size_t len = 0;
        sample(&m, 1);
        m.time_ms = 1234567;
        m.boot_counter = 3;
        vg_measurements_pack(&m, &p, &len);
        ok(vg_measurements_unpack(p, len, &m2, &err) == 0 && vg_measurements_equal(&m, &m2) &&
               m2.time_ms == 1234567 && m2.boot_counter == 3,
           "pack/unpack round trip (%zu bytes)", len);
        ok(vg_measurements_unpack(p, len - 1, &m2, &err) == -EBADMSG,
           "truncated binary form refused: %s", vg_error_str(&err));
        free(p);
        vg_measurements_clear(&m);
        vg_measurements_clear(&m2);
}

static int64_t count_rows(struct vg_store *db, const char *sql)
{
        _cleanup_(vg_stmt_freep) struct vg_stmt *st = NULL;
        struct vg_error err = { 0 };

        if (vg_store_prepare(db, sql, &st, &err) < 0 || vg_stmt_step(st, &err) <= 0)
                return -1;
        return vg_stmt_column_int64(st, 0);
}

static void test_store(const char *label, const char *url)
{
        _cleanup_(vg_store_closep) struct vg_store *db = NULL;
        struct vg_error err = { 0 };
        struct vg_measurements a = { 0 }, b = { 0 }, c = { 0 };
        struct vg_baseline got;
        struct vg_baseline *list = NULL;
        size_t n = 0, ignored = 0;
        char *name = NULL, *reason = NULL;
        int r;

        if (vg_store_open(&db, url, NULL, &err) < 0 || vg_baseline_migrate(db, &err) < 0)
                tap_bail("%s: %s", label, vg_error_str(&err));
        sample(&a, 10);
        sample(&b, 20);

        is_int(vg_baseline_add(db, "kernel-6.1", &a, "agent:one", "CN=admin", &ignored, &err), 0,
               "%s: add a known-good baseline", label);
        is_int(ignored, 2, "%s: PCR 0 and 7 (early boot) are left out", label);
        is_int(vg_baseline_add(db, "kernel-6.1", &b, "import:x.json", "CN=admin", NULL, &err),
               -EEXIST, "%s: the same name again is -EEXIST", label);
        is_int(vg_baseline_add(db, "history", &b, "import:x", "CN=admin", NULL, &err), -EINVAL,
               "%s: 'history' is not a baseline name", label);
        is_int(vg_baseline_add(db, "kernel-6.2", &b, "import:b.json", "CN=ops", NULL, &err), 0,
               "%s: import a second one", label);
        ok(vg_baseline_get(db, "kernel-6.1", &got, &err) == 0 && got.late.n == 5 &&
               !vg_measurements_get(&got.late, VG_HASH_SHA256, 0) &&
               strcmp(got.source, "agent:one") == 0,
           "%s: get gives the late-boot values (5) and the source", label);
        vg_baseline_clear(&got);
        ok(vg_baseline_list(db, &list, &n, &err) == 0 && n == 2 &&
               strcmp(list[0].name, "kernel-6.1") == 0,
           "%s: list by name", label);
        vg_baseline_list_free(list, n);

        /* matching */
        ok(vg_baseline_match(db, &b, &name, &err) == 1 && name && strcmp(name, "kernel-6.2") == 0,
           "%s: b's late boot matches kernel-6.2", label);
        free(name);
        vg_measurements_copy(&c, &b);
        uint8_t v[32];
        fill(v, 32, 99);
        vg_measurements_set(&c, VG_HASH_SHA256, 0, v);
        vg_measurements_set(&c, VG_HASH_SHA256, 7, v);
        ok(vg_baseline_match(db, &c, &name, &err) == 1 && name,
           "%s: early-boot PCRs do not matter to the match", label);
        free(name);
        vg_measurements_set(&c, VG_HASH_SHA256, 14, v);
        is_int(vg_baseline_match(db, &c, &name, &err), 0,
               "%s: an extra late-boot PCR (14) the baseline lacks: no match", label);
        vg_measurements_copy(&c, &b);
        vg_measurements_set(&c, VG_HASH_SHA256, 4, v);
        is_int(vg_baseline_match(db, &c, &name, &err), 0, "%s: a changed PCR 4: no match", label);
        vg_measurements_copy(&c, &b);
        vg_measurements_set(&c, VG_HASH_SHA384, 4, (uint8_t[48]){ 1 });
        ok(vg_baseline_match(db, &c, &name, &err) == 1,
           "%s: a bank the baseline lacks is not "
           "looked at",
           label);
        free(name);

        /* per-agent baselines */
        is_int(vg_agent_baseline_learn(db, "agent-1", &a, NULL, &err), 1,
               "%s: TOFU learns the first measurements", label);
        is_int(vg_agent_baseline_learn(db, "agent-1", &b, NULL, &err), 0, "%s: and not again",
               label);
        vg_measurements_copy(&c, &b);
        vg_measurements_set(&c, VG_HASH_SHA256, 5, v);
        struct vg_measurements prev = { 0 };
        r = vg_agent_baseline_relearn(db, "agent-1", &c, "CN=responder", "ev-1", &name, &prev,
                                      &reason, &err);
        ok(r == 0 && reason && strstr(reason, "equal no known-good"),
           "%s: relearn refused when nothing known-good matches: %s", label,
           reason ? reason : vg_error_str(&err));
        free(reason);
        r = vg_agent_baseline_relearn(db, "agent-1", &b, "CN=responder", "ev-2", &name, &prev,
                                      &reason, &err);
        ok(r == 1 && name && strcmp(name, "kernel-6.2") == 0,
           "%s: relearned onto kernel-6.2 (%d %s)", label, r, r < 0 ? vg_error_str(&err) : "");
        free(name);
        struct vg_measurements la = { 0 }, lb = { 0 }, ea = { 0 };
        vg_measurements_filter(&la, &a, vg_pcr_late_boot, NULL);
        vg_measurements_filter(&lb, &b, vg_pcr_late_boot, NULL);
        vg_measurements_filter(&ea, &a, vg_pcr_early_boot, NULL);
        ok(vg_measurements_equal(&prev, &la), "%s: the previous late-boot baseline is given back",
           label);
        struct vg_agent_baseline ab;
        ok(vg_agent_baseline_get(db, "agent-1", &ab, &err) == 0 &&
               vg_measurements_equal(&ab.late, &lb) && vg_measurements_equal(&ab.early, &ea) &&
               strcmp(ab.source, "known-good:kernel-6.2") == 0,
           "%s: the agent's late boot is now b's, its early boot still a's (learned)", label);
        vg_agent_baseline_clear(&ab);
        is_int(vg_agent_baseline_set_golden(db, "agent-2", &b, "CN=admin", &err), 0,
               "%s: a golden baseline", label);

        is_int(vg_baseline_remove(db, "kernel-6.1", "CN=admin", &err), 0, "%s: rm", label);
        is_int(vg_baseline_remove(db, "kernel-6.1", "CN=admin", &err), -ENOENT,
               "%s: rm again: -ENOENT", label);

        /* the journal */
        struct vg_journal_entry *e = NULL;
        int64_t bad = 0;
        char problem[256];
        ok(vg_journal_read(db, &e, &n, &err) == 0 && n == 6, "%s: 6 journal entries (%zu)", label,
           n);
        const char *actions[] = { "add", "import", "learn", "relearn", "golden", "rm" };
        bool same = n == 6;
        for (size_t i = 0; same && i < n; i++)
                same = strcmp(e[i].action, actions[i]) == 0;
        ok(same, "%s: add, import, learn, relearn, golden, rm in order", label);
        ok(n >= 4 && strcmp(e[3].actor, "CN=responder") == 0 &&
               strcmp(json_string_value(json_object_get(e[3].after, "eventId")), "ev-2") == 0 &&
               strcmp(e[1].prev_hash, e[0].hash) == 0,
           "%s: relearn's actor and event id; entries chained", label);
        is_int(vg_journal_verify(e, n, &bad, problem, sizeof(problem)), 0,
               "%s: the chain verifies (%s)", label, problem);
        vg_journal_entries_free(e, n);

        vg_store_exec(db, "UPDATE baseline_journal SET actor = 'CN=mallory' WHERE seq = 2", &err);
        vg_journal_read(db, &e, &n, &err);
        ok(vg_journal_verify(e, n, &bad, problem, sizeof(problem)) == 1 && bad == 2 &&
               strstr(problem, "entry 2 (import kernel-6.2)"),
           "%s: a modified entry is named: %s", label, problem);
        vg_journal_entries_free(e, n);
        vg_store_exec(db, "DELETE FROM baseline_journal WHERE seq = 2", &err);
        vg_journal_read(db, &e, &n, &err);
        ok(vg_journal_verify(e, n, &bad, problem, sizeof(problem)) == 1 && bad == 3,
           "%s: a deleted entry shows at the next one: %s", label, problem);
        vg_journal_entries_free(e, n);
        ok(count_rows(db, "SELECT COUNT(*) FROM agent_baselines") == 2,
           "%s: two agent baselines stored", label);

        vg_measurements_clear(&a);
        vg_measurements_clear(&b);
        vg_measurements_clear(&c);
        vg_measurements_clear(&prev);
        vg_measurements_clear(&la);
        vg_measurements_clear(&lb);
        vg_measurements_clear(&ea);
}

/* ---- the verifier and `vigil baseline` --------------------------------------------------------
 */

static struct vg_stack *S;

static int B(char **out, const char *arg0, ...) __attribute__((sentinel));
static int B(char **out, const char *arg0, ...)
{
        const char *argv[24];
        va_list ap;
        int n = 0;

        argv[n++] = "baseline";
        argv[n++] = arg0;
        va_start(ap, arg0);
        while (n < 23 && (argv[n] = va_arg(ap, const char *)))
                n++;
        va_end(ap);
        argv[n] = NULL;
        free(*out);
        *out = NULL;
        switch (n) { /* vg_stack_vigil is variadic */
        case 2:
                return vg_stack_vigil(S, out, argv[0], argv[1], NULL);
        case 3:
                return vg_stack_vigil(S, out, argv[0], argv[1], argv[2], NULL);
        case 4:
                return vg_stack_vigil(S, out, argv[0], argv[1], argv[2], argv[3], NULL);
        case 5:
                return vg_stack_vigil(S, out, argv[0], argv[1], argv[2], argv[3], argv[4], NULL);
        case 6:
                return vg_stack_vigil(S, out, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5],
                                      NULL);
        default:
                return vg_stack_vigil(S, out, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5],
                                      argv[6], NULL);
        }
}

static void sleep_ms(long ms)
{
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* `measurements UUID --json` until its late-boot sha256 PCR 4 differs from not (NULL: any). */
static json_t *wait_measurements(const char *not_pcr4, double secs)
{
        char *out = NULL;

        for (int i = 0; i < secs * 10; i++) {
                if (B(&out, "measurements", S->uuid, "--json", NULL) == 0) {
                        json_t *j = json_loads(out, 0, NULL);
                        const char *p4 = json_string_value(json_object_get(
                            json_object_get(json_object_get(j, "banks"), "sha256"), "4"));
                        if (j && p4 && (!not_pcr4 || strcmp(p4, not_pcr4) != 0)) {
                                free(out);
                                return j;
                        }
                        json_decref(j);
                }
                sleep_ms(100);
        }
        tap_diag("no measurements: %s", out ? out : "");
        free(out);
        return NULL;
}

static void test_stack(void)
{
        _cleanup_free_ char *out = NULL, *tout = NULL, *export = NULL, *dbpath = NULL;
        struct vg_error err = { 0 };
        int r;

        vg_stack_start(NULL, &S);
        is_int(B(&out, NULL, NULL), 2, "vigil baseline without a command: usage error (2)");
        is_int(B(&out, "add", "--name", "x", NULL), 2, "add without --from-agent: 2");
        contains(out, "--from-agent UUID", "the message says what add needs");
        is_int(B(&out, "--help", NULL), 0, "--help: 0");
        contains(out, "history [--verify]", "--help lists the commands");

        /* The late-boot PCRs 4, 5, 8, 9, 11-14 are quoted because its tpm_policy names them
         * (Keylime recomputes the mask from the PCRs with values): a fresh swtpm's zeros. */
        const char *z = "0000000000000000000000000000000000000000000000000000000000000000";
        _cleanup_free_ char *policy =
            tap_strf("{\"4\": [\"%s\"], \"5\": [\"%s\"], \"8\": [\"%s\"], \"9\": [\"%s\"], "
                     "\"11\": [\"%s\"], \"12\": [\"%s\"], \"13\": [\"%s\"], \"14\": [\"%s\"]}",
                     z, z, z, z, z, z, z, z);
        r = vg_stack_tenant(S, &tout, "-c", "add", "-t", "127.0.0.1", "-v", "127.0.0.1", "-u",
                            S->uuid, "--tpm_policy", policy, NULL);
        if (!is_int(r, 0, "the agent is enrolled with a late-boot tpm_policy"))
                tap_diag("%s", tout ? tout : "");

        is_int(B(&out, "relearn", "00000000-0000-4000-8000-000000000000", NULL), 1,
               "relearn of an unknown agent fails");
        contains(out, "404", "with the verifier's 404");
        is_int(B(&out, "add", "--from-agent", "00000000-0000-4000-8000-000000000000", "--name",
                 "kg0", NULL),
               1, "add --from-agent of an unknown agent fails");
        contains(out, "agent 00000000-0000-4000-8000-000000000000 not found", "naming the agent");

        json_t *m1 = wait_measurements(NULL, 20);
        ok(m1 != NULL, "GET /agents/{uuid}/measurements after the first good quote");
        const char *p4 = json_string_value(
            json_object_get(json_object_get(json_object_get(m1, "banks"), "sha256"), "4"));
        json_t *late1 = json_object_get(m1, "lateBoot");
        is_int((long long)json_array_size(late1), 8,
               "late boot: PCRs 4, 5, 8, 9, 11-14 of the quote's sha256 bank (8 values)");

        is_int(B(&out, "relearn", S->uuid, "--event-id", "ev-1", NULL), 1,
               "relearn before any known-good baseline: refused (409)");
        contains(out, "equal no known-good baseline", "with the reason");

        is_int(B(&out, "add", "--from-agent", S->uuid, "--name", "kg1", NULL), 0,
               "add --from-agent UUID --name kg1");
        contains(out, "SHA256: 4 5 8 9 11 12 13 14", "the late-boot PCRs are in it");
        is_int(B(&out, "add", "--from-agent", S->uuid, "--name", "kg1", NULL), 1,
               "the same name again fails");
        contains(out, "409", "with 409");
        is_int(B(&out, "list", NULL), 0, "list");
        contains(out, "agent:" VG_STACK_UUID, "kg1 listed with its source");
        is_int(B(&out, "list", "--json", NULL), 0, "list --json");
        export = tap_strf("%s/export.json", S->dir);
        tap_write_file(export, out ? out : "");

        is_int(B(&out, "relearn", S->uuid, "--event-id", "ev-2", NULL), 0,
               "relearn after add of the current measurements: 200");
        contains(out, "known-good baseline kg1", "relearned onto kg1");

        /* The agent's baseline, read from the verifier's database. */
        dbpath = tap_strf("%s/cv_data.sqlite", S->verifier.dir);
        {
                _cleanup_(vg_store_closep) struct vg_store *db = NULL;
                struct vg_agent_baseline ab = { 0 };
                struct vg_measurements want = { 0 };
                ok(vg_store_open(&db, dbpath, NULL, &err) == 0 &&
                       vg_agent_baseline_get(db, S->uuid, &ab, &err) == 0 &&
                       vg_measurements_from_json(late1, &want, &err) == 0 &&
                       vg_measurements_equal(&ab.late, &want),
                   "the agent's late-boot baseline now equals its measurements (%s)",
                   vg_error_str(&err));
                vg_agent_baseline_clear(&ab);
                vg_measurements_clear(&want);
        }

        is_int(B(&out, "rm", "kg1", NULL), 0, "rm kg1");
        is_int(B(&out, "rm", "kg1", NULL), 1, "rm kg1 again fails");
        contains(out, "404", "with 404");
        is_int(B(&out, "import", export, NULL), 0, "import the list --json export");
        contains(out, "imported known-good baseline kg1", "under its exported name");
        is_int(B(&out, "show", "kg1", NULL), 0, "show kg1");
        contains(out, "import:export.json", "its source is the file");

        /* A kernel upgrade: PCR 4 moves and the late-boot policy fails; the quote is still
         * authentic, so its values are the agent's measurements. Relearn refuses until the
         * new values are known-good. */
        _cleanup_free_ char *sh = NULL;
        vg_swtpm_sh(S->tpm, S->dir, &sh,
                    "tpm2_pcrextend 4:sha1=0101010101010101010101010101010101010101,sha256="
                    "0202020202020202020202020202020202020202020202020202020202020202");
        json_t *m2 = wait_measurements(p4, 10);
        ok(m2 != NULL, "the new PCR 4 shows in the agent's measurements");
        is_int(B(&out, "relearn", S->uuid, NULL), 1, "relearn with the new PCR 4: refused");
        _cleanup_free_ char *gce = tap_strf("%s/gce.json", S->dir);
        json_t *pm = json_pack("{s:{s:O}}", "lateBootReportEvent", "policyMeasurements",
                               json_object_get(m2, "lateBoot"));
        json_dump_file(pm, gce, 0);
        json_decref(pm);
        is_int(B(&out, "import", gce, "--name", "kernel-new", NULL), 0,
               "import a GCE-shaped lateBootReportEvent.policyMeasurements");
        is_int(B(&out, "relearn", S->uuid, NULL), 0, "relearn now succeeds");
        contains(out, "kernel-new", "onto kernel-new");

        is_int(B(&out, "history", "--verify", NULL), 0, "history --verify: the chain holds");
        contains(out, "relearn", "the relearns are in the history");
        contains(out, "CN=", "with the client certificate's subject as actor");
        {
                _cleanup_(vg_store_closep) struct vg_store *db = NULL;
                if (vg_store_open(&db, dbpath, NULL, &err) < 0 ||
                    vg_store_exec(db,
                                  "UPDATE baseline_journal SET after_json = "
                                  "replace(after_json, 'PCR_4', 'PCR_5') WHERE action = 'add'",
                                  &err) < 0)
                        tap_diag("tampering failed: %s", vg_error_str(&err));
        }
        is_int(B(&out, "history", "--verify", NULL), 1,
               "history --verify after an entry was modified in the database: exit 1");
        /* entry 1 is the verifier's TOFU learning of the agent's first boot */
        contains(out, "entry 2 (add kg1)", "naming the first bad entry");

        json_decref(m1);
        json_decref(m2);
        vg_stack_free(S);
}

int main(void)
{
        struct vg_error err = { 0 };
        struct vg_pg *pg = NULL;
        _cleanup_free_ char *dir = tap_tmpdir(), *lite = NULL, *pgurl = NULL;

        signal(SIGPIPE, SIG_IGN);
        test_shapes();
        lite = tap_strf("%s/baseline.sqlite", dir);
        test_store("sqlite", lite);
        int r = vg_pg_start(&pg, &err);
        if (r == -ENOENT)
                tap_skip(vg_error_str(&err), "PostgreSQL library tests");
        else if (r < 0 || vg_pg_create_db(pg, "baselines", &pgurl, &err) < 0)
                tap_bail("cannot start PostgreSQL: %s", vg_error_str(&err));
        else
                test_store("postgresql", pgurl);
        vg_pg_free(pg);
        test_stack();
        return tap_done();
}
