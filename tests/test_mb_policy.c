/* vigil tests: Keylime measured-boot refstates (mb_policy): the strict reader, generation from the
 * real event logs of ../shared/data/eventlog, evaluation of those logs and of modified copies,
 * and `vigil policy create measured-boot`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventlog.h"
#include "harness/tap.h"
#include "mb_policy.h"

static struct vg_evlog *load_log(const char *name)
{
        struct vg_error err = { 0 };
        struct vg_evlog *log = NULL;
        char *path = tap_keep(tap_shared_data(tap_keep(tap_strf("eventlog/%s", name))));

        if (vg_evlog_load(path, &log, &err) < 0)
                tap_bail("%s: %s", name, vg_error_str(&err));
        return log;
}

static struct vg_mb_policy *policy_from(json_t *j)
{
        struct vg_error err = { 0 };
        struct vg_mb_policy *p = NULL;

        if (vg_mb_policy_from_json(j, &p, &err) < 0)
                tap_bail("policy: %s", vg_error_str(&err));
        return p;
}

static json_t *generate(const struct vg_evlog *log, bool without_sb)
{
        struct vg_mb_create_opts o = { .without_secureboot = without_sb };
        struct vg_error err = { 0 };
        json_t *j = NULL;

        if (vg_mb_policy_create(log, &o, &j, &err) < 0)
                tap_bail("create: %s", vg_error_str(&err));
        return j;
}

/* All failure messages joined by newlines (kept until tap_done). */
static char *evaluate(const struct vg_mb_policy *p, const struct vg_evlog *log, size_t *n)
{
        struct vg_mb_result res = { 0 };
        struct vg_error err = { 0 };
        size_t len = 1;
        char *all;
        int r = vg_mb_policy_evaluate(p, log, &res, &err);

        if (r < 0 && r != -EBADMSG)
                tap_bail("evaluate: %s", vg_error_str(&err));
        for (size_t i = 0; i < res.n_failures; i++)
                len += strlen(res.failures[i].msg) + 1;
        all = calloc(1, len);
        if (!all)
                tap_bail("out of memory");
        for (size_t i = 0; i < res.n_failures; i++) {
                strcat(all, res.failures[i].msg);
                strcat(all, "\n");
        }
        *n = res.n_failures;
        vg_mb_result_clear(&res);
        return tap_keep(all);
}

static const char *parse_error(const char *text)
{
        struct vg_error err = { 0 };
        struct vg_mb_policy *p = NULL;

        if (vg_mb_policy_parse(text, strlen(text), &p, &err) == 0) {
                vg_mb_policy_free(p);
                return "(accepted)";
        }
        return tap_keep(strdup(vg_error_str(&err)));
}

/* The n-th (0-based) event of type in pcr, or NULL. */
static const struct vg_evlog_event *nth_event(const struct vg_evlog *log, uint32_t pcr,
                                              uint32_t type, int n)
{
        for (size_t i = 0; i < log->n_events; i++)
                if (log->events[i].pcr == pcr && log->events[i].type == type && n-- == 0)
                        return &log->events[i];
        return NULL;
}

static const struct vg_evlog_event *var_event(const struct vg_evlog *log, const char *name,
                                              struct vg_efi_variable *var)
{
        for (size_t i = 0; i < log->n_events; i++) {
                const struct vg_evlog_event *ev = &log->events[i];

                if (ev->type == VG_EV_EFI_VARIABLE_DRIVER_CONFIG &&
                    vg_efi_variable_parse(ev->data, ev->data_len, var, NULL) == 0 &&
                    strcmp(var->name, name) == 0)
                        return ev;
        }
        return NULL;
}

/* A copy of log's bytes with byte `off` xor-ed with x, parsed. */
static struct vg_evlog *modified(const struct vg_evlog *log, size_t off, uint8_t x)
{
        struct vg_error err = { 0 };
        struct vg_evlog *out = NULL;
        uint8_t *copy = malloc(log->raw_len);

        if (!copy)
                tap_bail("out of memory");
        memcpy(copy, log->raw, log->raw_len);
        copy[off] ^= x;
        if (vg_evlog_parse(copy, log->raw_len, &out, &err) < 0)
                tap_bail("modified log: %s", vg_error_str(&err));
        free(copy);
        return out;
}

#define KFMT                                                                                       \
        "{\"shim_authcode_sha256\": \"0x%s\", \"grub_authcode_sha256\": \"0x%s\", \"%s\": "        \
        "\"0x%s\", \"initrd_plain_sha256\": \"0x%s\", \"kernel_cmdline\": \"%s\"}"

static void test_reader(void)
{
        struct vg_error err = { 0 };
        struct vg_mb_policy *p = NULL;
        json_t *back, *orig;
        json_error_t jerr;
        const char *path = tap_keep(tap_shared_data("policy/keylime-example-mb-refstate.json"));

        is_int(vg_mb_policy_load(path, &p, &err), 0,
               "Keylime's example_reference_state.json loads");
        if (p) {
                ok(vg_mb_policy_has_secureboot(p), "no has_secureboot key means Secure Boot");
                is_int(vg_mb_policy_kernel_count(p), 1, "it lists one kernel");
                back = vg_mb_policy_to_json(p);
                orig = json_load_file(path, 0, &jerr);
                ok(back && orig && json_equal(back, orig), "written back, it is the same JSON");
                json_decref(back);
                json_decref(orig);
                vg_mb_policy_free(p);
        }

        contains(parse_error("[]"), "refstate: expected an object", "a list is no refstate");
        contains(parse_error("{\"kernels\": [], \"scrtm_and_bios\": [], \"pk\": [], \"kek\": [], "
                             "\"db\": [], \"mokdig\": [], \"mokxdig\": []}"),
                 "refstate.dbx: missing", "a missing dbx is named");
        contains(parse_error("{\"kernel\": []}"), "refstate: unknown key \"kernel\"",
                 "a misspelt key is named");
        contains(parse_error("{\"has_secureboot\": \"yes\", \"kernels\": []}"),
                 "refstate.has_secureboot: expected true or false, found \"yes\"",
                 "has_secureboot must be a boolean");
        contains(parse_error("{\"kernels\": [{\"shim_authcode_sha256\": \"0xAB\"}]}"),
                 "refstate.kernels[0].shim_authcode_sha256: expected \"0x\" and 64 lowercase hex "
                 "digits, found \"0xAB\"",
                 "an upper-case short digest is named with its path");
        {

                const char *h = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
                char *good =
                    tap_keep(tap_strf(KFMT, h, h, "kernel_authcode_sha256", h, h, "ro .*"));
                char *badre =
                    tap_keep(tap_strf(KFMT, h, h, "kernel_authcode_sha256", h, h, "ro (["));
                char *nosb = tap_keep(tap_strf(KFMT, h, h, "kernel_authcode_sha256", h, h, "x"));
                const char *rest = "\"scrtm_and_bios\": [], \"pk\": [], \"kek\": [], \"db\": [], "
                                   "\"dbx\": [], \"mokdig\": [], \"mokxdig\": []";

                is_str(parse_error(tap_keep(tap_strf("{\"kernels\": [%s], %s}", good, rest))),
                       "(accepted)", "a minimal complete refstate is accepted");
                contains(parse_error(tap_keep(tap_strf("{\"kernels\": [%s], %s}", badre, rest))),
                         "refstate.kernels[0].kernel_cmdline: not a valid regular expression",
                         "a broken kernel_cmdline regex is refused with its path");
                contains(parse_error(tap_keep(tap_strf(
                             "{\"has_secureboot\": false, \"kernels\": [%s], %s}", nosb, rest))),
                         "refstate.kernels[0].vmlinuz_plain_sha256: missing",
                         "without Secure Boot a kernel needs vmlinuz_plain_sha256 (example.py)");
                contains(parse_error(tap_keep(tap_strf(
                             "{\"kernels\": [%s], %s, \"vendor_db\": [{\"SignatureOwner\": "
                             "\"nope\", \"SignatureData\": \"0x00\"}]}",
                             good, rest))),
                         "refstate.vendor_db[0].SignatureOwner: expected a GUID",
                         "a bad SignatureOwner is named");
                contains(parse_error(tap_keep(tap_strf(
                             "{\"kernels\": [%s], \"scrtm_and_bios\": [{\"platform_firmware\": "
                             "[]}], \"pk\": [], \"kek\": [], \"db\": [], \"dbx\": [], "
                             "\"mokdig\": [], \"mokxdig\": []}",
                             good))),
                         "refstate.scrtm_and_bios[0].scrtm: missing",
                         "an scrtm_and_bios entry without scrtm is refused");
                contains(parse_error(tap_keep(tap_strf(
                             "{\"kernels\": [%s], \"scrtm_and_bios\": [], \"pk\": [], \"kek\": "
                             "[], \"db\": [], \"dbx\": [], \"mokdig\": [{\"md5\": \"0x00\"}], "
                             "\"mokxdig\": []}",
                             good))),
                         "refstate.mokdig[0]: unknown hash algorithm \"md5\"",
                         "an unknown digest algorithm is named");
        }
        contains(parse_error("{\"kernels\": "), "refstate: line 1", "bad JSON gives its line");
}

static void test_escape(void)
{
        /* Python 3.11: re.escape("(hd0,gpt2)/vmlinuz-5.14 root=/dev/x ro crashkernel=1G-4G:192M
         * a&b~c#d") */
        const char *in = "(hd0,gpt2)/vmlinuz-5.14 root=/dev/x ro crashkernel=1G-4G:192M a&b~c#d";
        const char *want = "\\(hd0,gpt2\\)/vmlinuz\\-5\\.14\\ root=/dev/x\\ ro\\ "
                           "crashkernel=1G\\-4G:192M\\ a\\&b\\~c\\#d";
        char *got = vg_mb_regex_escape(in, strlen(in));

        is_str(got, want, "kernel_cmdline is escaped as Python's re.escape does");
        free(got);
}

/* Logs whose generated policy passes the log itself (what Keylime's create_mb_policy and
 * example policy also give; see the report of the measured-boot work). */
static void test_roundtrip(void)
{
        static const struct {
                const char *name;
                bool without_sb;
        } logs[] = { { "keylime-rhel95-secureboot.bin", false },
                     { "tpm2tools-event-moklisttrusted.bin", false },
                     { "swtpm_measurements.bin", true } };

        for (size_t i = 0; i < sizeof(logs) / sizeof(logs[0]); i++) {
                struct vg_evlog *log = load_log(logs[i].name);
                json_t *j = generate(log, logs[i].without_sb);
                struct vg_mb_policy *p = policy_from(j);
                size_t n;
                char *f = evaluate(p, log, &n);

                is_int(n, 0, "%s: the policy generated from it passes it", logs[i].name);
                if (n)
                        tap_diag("%s", f);
                is_int(json_is_true(json_object_get(j, "has_secureboot")), !logs[i].without_sb,
                       "%s: has_secureboot follows the SecureBoot variable", logs[i].name);
                vg_mb_policy_free(p);
                json_decref(j);
                vg_evlog_free(log);
        }
}

static const char *kernel_field(json_t *j, const char *k)
{
        return json_string_value(
            json_object_get(json_array_get(json_object_get(j, "kernels"), 0), k));
}

/* Values keylime-policy create measured-boot wrote for the same log (Keylime 9b1f6e6, run with
 * tpm2-tools 5.4). */
static void test_keylime_equal(void)
{
        struct vg_evlog *log = load_log("keylime-rhel95-secureboot.bin");
        json_t *j = generate(log, false);
        json_t *sb = json_array_get(json_object_get(j, "scrtm_and_bios"), 0);

        is_str(kernel_field(j, "kernel_authcode_sha256"),
               "0x219b8b53c54951cd07a580622e384391bbd9e113448a12ad319903fcafb81e79",
               "kernel Authenticode digest as Keylime's");
        is_str(kernel_field(j, "shim_authcode_sha256"),
               "0x27b12463e599b3147635f272e3722960e443def60fef088eba600697017529f2",
               "shim Authenticode digest as Keylime's");
        is_str(kernel_field(j, "grub_authcode_sha256"),
               "0x0abc88ee4d2915c3c5c010a331be980766d6445419c22fe236867b92d254f01f",
               "grub Authenticode digest as Keylime's");
        is_str(kernel_field(j, "initrd_plain_sha256"),
               "0x2142e3702f4aa7a2a3b218e1d924a66686895bb0b501cca8ce79ef21ab1db0e6",
               "initrd digest as Keylime's");
        is_str(kernel_field(j, "kernel_cmdline"),
               "\\(hd0,gpt2\\)/vmlinuz\\-5\\.14\\.0\\-503\\.11\\.1\\.el9_5\\.x86_64\\ "
               "root=/dev/mapper/rhel_rhel\\-\\-9\\-root\\ ro\\ "
               "crashkernel=1G\\-4G:192M,4G\\-64G:256M,64G\\-:512M\\ "
               "resume=/dev/mapper/rhel_rhel\\-\\-9\\-swap\\ rd\\.lvm\\.lv=rhel_rhel\\-9/root\\ "
               "rd\\.lvm\\.lv=rhel_rhel\\-9/swap\\ rhgb\\ quiet\\ console=tty0\\ console=ttyS0",
               "kernel_cmdline regex as Keylime's");
        is_str(json_string_value(json_object_get(json_object_get(sb, "scrtm"), "sha256")),
               "0x65976c0bfab22fdf2edbb6cc4fdaaf4581a1e36b9c8542d5e5a774c41748f34a",
               "S-CRTM digest as Keylime's");
        is_int(json_array_size(json_object_get(sb, "platform_firmware")), 2,
               "two platform firmware blobs, as Keylime's");
        is_str(json_string_value(
                   json_object_get(json_array_get(json_object_get(j, "pk"), 0), "SignatureOwner")),
               "a0baa8a3-041d-48a8-bc87-c36d121b5e3d", "PK owner GUID as Keylime's");
        is_int(json_array_size(json_object_get(j, "vendor_db")), 1,
               "vendor_db holds shim's vendor certificate (tpm2-tools 5.4 left Keylime's empty)");
        json_decref(j);
        vg_evlog_free(log);
}

static void test_modified_logs(void)
{
        struct vg_evlog *log = load_log("keylime-rhel95-secureboot.bin");
        json_t *j = generate(log, false);
        struct vg_mb_policy *p = policy_from(j);
        const struct vg_evlog_event *kern =
            nth_event(log, 4, VG_EV_EFI_BOOT_SERVICES_APPLICATION, 2);
        const struct vg_evlog_digest *d =
            kern ? vg_evlog_event_digest(kern, VG_EVLOG_ALG_SHA256) : NULL;
        struct vg_efi_variable sbvar, dbvar;
        const struct vg_evlog_event *sbev = var_event(log, "SecureBoot", &sbvar);
        const struct vg_evlog_event *dbev = var_event(log, "db", &dbvar);
        struct vg_evlog *m;
        size_t n;
        char *f;

        if (!kern || !d || !sbev || !dbev)
                tap_bail("the RHEL 9.5 log lacks its kernel, SecureBoot or db event");

        m = modified(log, (size_t)(d->digest - log->raw), 0x01);
        f = evaluate(p, m, &n);
        ok(n >= 1, "a changed kernel digest fails");
        contains(f,
                 tap_keep(tap_strf("PCR 4: event %u EV_EFI_BOOT_SERVICES_APPLICATION: kernel "
                                   "Authenticode digest sha256:%02x",
                                   kern->index, d->digest[0] ^ 0x01)),
                 "the failure names the kernel's event and its digest");
        contains(f, "is not among the policy's kernels", "and says it is not in the policy");
        vg_evlog_free(m);

        m = modified(log, (size_t)(sbvar.data - log->raw), 0x01);
        f = evaluate(p, m, &n);
        contains(f,
                 tap_keep(tap_strf("PCR 7: event %u EV_EFI_VARIABLE_DRIVER_CONFIG: Secure Boot "
                                   "is disabled, the policy expects it enabled",
                                   sbev->index)),
                 "SecureBoot=0 fails naming the event");
        vg_evlog_free(m);

        /* A byte inside db's first certificate (list header 28 bytes, owner 16). */
        m = modified(log, (size_t)(dbvar.data - log->raw) + 28 + 16 + 100, 0x20);
        f = evaluate(p, m, &n);
        contains(f,
                 tap_keep(tap_strf("PCR 7: event %u EV_EFI_VARIABLE_DRIVER_CONFIG: db holds ",
                                   dbev->index)),
                 "a changed db certificate fails naming the event");
        contains(f, "which is not in the policy's db", "and says db is not a subset");
        vg_evlog_free(m);

        /* Two changes at once: both are reported. */
        {
                uint8_t *copy = malloc(log->raw_len);
                struct vg_error err = { 0 };

                memcpy(copy, log->raw, log->raw_len);
                copy[d->digest - log->raw] ^= 0x80;
                copy[sbvar.data - log->raw] = 0;
                if (vg_evlog_parse(copy, log->raw_len, &m, &err) < 0)
                        tap_bail("%s", vg_error_str(&err));
                free(copy);
                f = evaluate(p, m, &n);
                ok(strstr(f, "Secure Boot is disabled") && strstr(f, "kernel Authenticode digest"),
                   "every failure is reported, not only the first");
                vg_evlog_free(m);
        }

        /* Policy-side changes. */
        {
                json_t *j2 = json_deep_copy(j);
                json_t *dbx = json_object_get(j2, "dbx");
                struct vg_mb_policy *p2;

                while (json_array_size(dbx) > 3)
                        json_array_remove(dbx, json_array_size(dbx) - 1);
                p2 = policy_from(j2);
                f = evaluate(p2, log, &n);
                is_int(n, 0, "a dbx with more entries than the policy requires passes (superset)");
                vg_mb_policy_free(p2);
                json_array_append_new(
                    dbx, json_pack(
                             "{s:s, s:s}", "SignatureOwner", "77fa9abd-0359-4d32-bd60-28f4e78f784b",
                             "SignatureData",
                             "0x0000000000000000000000000000000000000000000000000000000000000001"));
                p2 = policy_from(j2);
                f = evaluate(p2, log, &n);
                contains(f, "dbx lacks the policy's dbx[3]", "a revocation missing from dbx fails");
                vg_mb_policy_free(p2);

                json_object_set_new(json_array_get(json_object_get(j2, "kernels"), 0),
                                    "kernel_cmdline", json_string("\\(hd0,gpt2\\)/vmlinuz.* ro"));
                json_object_set_new(j2, "dbx", json_array());
                p2 = policy_from(j2);
                f = evaluate(p2, log, &n);
                contains(f, "PCR 8: event", "a different kernel_cmdline regex fails on PCR 8");
                contains(f, "matches no kernel_cmdline of the policy's kernels",
                         "naming the command line");
                vg_mb_policy_free(p2);
                json_decref(j2);
        }
        {
                struct vg_evlog *swtpm = load_log("swtpm_measurements.bin");
                json_t *js = generate(swtpm, true);
                struct vg_mb_policy *ps = policy_from(js);

                f = evaluate(ps, log, &n);
                contains(f, "Secure Boot is enabled, the policy expects it disabled",
                         "a no-Secure-Boot policy fails a Secure Boot log");
                f = evaluate(p, swtpm, &n);
                contains(f, "Secure Boot is disabled, the policy expects it enabled",
                         "a Secure Boot policy fails a log with Secure Boot off");
                vg_mb_policy_free(ps);
                json_decref(js);
                vg_evlog_free(swtpm);
        }
        {
                struct vg_mb_policy *empty = NULL;
                struct vg_error err = { 0 };

                vg_mb_policy_parse("{}", 2, &empty, &err);
                ok(empty && vg_mb_policy_is_empty(empty), "{} is the empty policy");
                f = evaluate(empty, log, &n);
                is_int(n, 0, "the empty policy passes any log (replay only)");
                vg_mb_policy_free(empty);
        }
        {
                struct vg_mb_policy *ex = NULL;
                struct vg_error err = { 0 };

                vg_mb_policy_load(
                    tap_keep(tap_shared_data("policy/keylime-example-mb-refstate.json")), &ex,
                    &err);
                f = ex ? evaluate(ex, log, &n) : "";
                ok(ex && n > 5,
                   "Keylime's example refstate (an Ubuntu OVMF VM) fails the RHEL "
                   "log with many failures (%zu)",
                   n);
                contains(f, "PK holds certificate", "among them the PK");
                contains(f, "shim Authenticode digest", "and shim");
                vg_mb_policy_free(ex);
        }
        vg_mb_policy_free(p);
        json_decref(j);
        vg_evlog_free(log);
}

/* Logs Keylime's example policy cannot attest; vigil says why, as Keylime does. */
static void test_unattestable(void)
{
        struct vg_evlog *log = load_log("201123-eventlog.bin");
        json_t *j = generate(log, false);
        struct vg_mb_policy *p = policy_from(j);
        struct vg_mb_create_opts o = { 0 };
        struct vg_error err = { 0 };
        json_t *none = NULL;
        size_t n;
        char *f = evaluate(p, log, &n);

        contains(f,
                 "PCR 0: event 2 EV_POST_CODE: the measured-boot policy does not allow "
                 "EV_POST_CODE events in PCR 0",
                 "201123: an EV_POST_CODE in PCR 0 fails (Keylime stops at the same event)");
        vg_mb_policy_free(p);
        json_decref(j);
        vg_evlog_free(log);

        log = load_log("goattest-coreos_36_shielded_vm_no_secure_boot_eventlog.bin");
        is_int(vg_mb_policy_create(log, &o, &none, &err), -EINVAL,
               "a log with Secure Boot off needs --without-secureboot");
        contains(vg_error_str(&err), "--without-secureboot", "and the error says so");
        vg_evlog_free(log);

        log = load_log("tpm2tools-event-gce-ubuntu-2104-log.bin");
        o.without_secureboot = true;
        is_int(vg_mb_policy_create(log, &o, &none, &err), -EINVAL,
               "GCE Ubuntu 21.04: no initrd measured, no refstate");
        contains(vg_error_str(&err), "no initrd/initramfs EV_IPL event in PCR 9",
                 "and the error says what is missing");
        vg_evlog_free(log);
}

static void test_cli(void)
{
        const char *cli = getenv("VIGIL_CLI");
        char *dir = tap_keep(tap_tmpdir()), *out = tap_keep(tap_strf("%s/mb.json", dir)), *o = NULL;
        struct vg_mb_policy *p = NULL;
        struct vg_error err = { 0 };
        int st;

        if (!cli)
                tap_bail("VIGIL_CLI is not set (run the tests through meson test)");
        st = tap_runl(&o, cli, "policy", "create", "measured-boot", "--eventlog",
                      tap_keep(tap_shared_data("eventlog/keylime-rhel95-secureboot.bin")), "-o",
                      out, NULL);
        is_int(st, 0, "vigil policy create measured-boot exits 0 on the RHEL 9.5 log");
        free(o);
        is_int(vg_mb_policy_load(out, &p, &err), 0, "and writes a refstate vigil reads back");
        vg_mb_policy_free(p);

        st = tap_runl(&o, cli, "policy", "create", "measured-boot", "-e",
                      tap_keep(tap_shared_data("eventlog/inspur.bin")), "-i", "-o", out, NULL);
        is_int(st, 1, "on a log its own policy fails, it exits 1");
        contains(o, "does not pass the log it came from", "saying the policy fails its log");
        contains(o, "PCR 0: event 2 EV_POST_CODE", "listing the failures");
        free(o);

        st = tap_runl(&o, cli, "policy", "create", "measured-boot", NULL);
        is_int(st, 2, "without --eventlog it is a usage error");
        contains(o, "expected --eventlog FILE", "naming the missing option");
        free(o);
}

int main(void)
{
        test_reader();
        test_escape();
        test_roundtrip();
        test_keylime_equal();
        test_modified_logs();
        test_unattestable();
        test_cli();
        return tap_done();
}
