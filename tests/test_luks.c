/* vigil tests: `vigil luks` against the real clevis luks on LUKS2 image files (no
 * device-mapper): bindings made by either tool are listed, unlocked and unbound by the other;
 * the key-management guide's rekey flow over three Tang servers (two vigil-tang, one tangd
 * under socat): sss t=1, rotate one server, `vigil luks regen`, purge its hidden keys, stop the
 * other two, and the volume still unlocks; `vigil luks edit`; errors naming the device, slot,
 * servers and the malformed part of a token; nothing half-done after a failed bind; tpm2
 * bindings on swtpm (alone and in sss with tang) both ways, failing by name after a PCR extend. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luks.h"
#include "swtpm.h"
#include "tang_peers.h"
#include "tap.h"

/* Run a shell snippet with V (vigil), W (work dir), the URLs and the images in the
 * environment. */
static int sh(char **out, const char *script)
{
        return tap_runl(out, "/bin/sh", "-c", script, NULL);
}

/* A fresh 32 MiB LUKS2 image $W/NAME with passphrase "pw" in keyslot 0 (fast PBKDF2). */
static bool mkimg(const char *name)
{
        char *cmd = tap_strf("rm -f \"$W/%s\" && truncate -s 32M \"$W/%s\" && printf pw | "
                             "cryptsetup luksFormat --type luks2 --pbkdf pbkdf2 "
                             "--pbkdf-force-iterations 1000 -q \"$W/%s\" -",
                             name, name, name);
        int r = sh(NULL, cmd);

        free(cmd);
        return r == 0;
}

static int free_port_not(int a, int b)
{
        int p;

        do
                p = tap_free_port();
        while (p == a || p == b);
        return p;
}

/* Whether script succeeds within about 10 s (more under a loaded sanitizer build). */
static bool eventually(const char *script)
{
        for (int i = 0; i < 200; i++) {
                if (sh(NULL, script) == 0)
                        return true;
                usleep(50 * 1000);
        }
        return false;
}

/* ---- the token format, through the library ---- */
static void token_checks(void)
{
        struct vg_error err = { 0 };
        int *slots = NULL;
        size_t n = 0;
        char *jwe = NULL, *json = NULL;
        /* A compact JWE of the shape clevis writes (header {"alg":"dir","enc":"A256GCM"}). */
        const char *compact = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..AAAAAAAAAAAAAAAA.AAAA."
                              "AAAAAAAAAAAAAAAAAAAAAA";

        is_int(vg_luks_token_build(3, compact, &json, &err), 0, "token_build: %s",
               vg_error_str(&err));
        contains(json, "\"type\":\"clevis\",\"keyslots\":[\"3\"],\"jwe\":{",
                 "a built token is {type, keyslots, jwe} as clevis writes it");
        contains(json, "\"encrypted_key\":\"\"", "with the empty encrypted_key of jose jwe fmt");
        is_int(vg_luks_token_parse(json, &slots, &n, &jwe, &err), 0, "the built token parses");
        ok(n == 1 && slots && slots[0] == 3, "keyslots [\"3\"]");
        is_str(jwe, compact, "the JWE round-trips to the same compact form");
        free(slots);
        free(jwe);
        free(json);

        static const struct {
                const char *json, *why, *want;
        } bad[] = {
                { "{\"type\":\"clevis\",\"jwe\":{}}", "no keyslots", "token keyslots: missing" },
                { "{\"type\":\"clevis\",\"keyslots\":[\"x\"],\"jwe\":{}}", "keyslot \"x\"",
                  "token keyslots[0]: not a keyslot number" },
                { "{\"type\":\"clevis\",\"keyslots\":[\"32\"],\"jwe\":{}}", "keyslot 32",
                  "token keyslots[0]" },
                { "{\"type\":\"clevis\",\"keyslots\":[1],\"jwe\":{}}", "keyslot as a number",
                  "token keyslots[0]" },
                { "{\"type\":\"clevis\",\"keyslots\":[\"1\"]}", "no jwe", "token jwe: missing" },
                { "{\"type\":\"clevis\",\"keyslots\":[\"1\"],\"jwe\":{\"ciphertext\":\"!!\"}}",
                  "a garbage jwe", "token jwe: " },
                { "{\"type\":\"clevis\",\"keyslots\":[\"1\"],\"jwe\":\"abc\"}", "jwe a string",
                  "token jwe: missing or not a JSON object" },
                { "[1,2]", "not an object", "token: not a JSON object" },
                { "{\"type\":", "not JSON", "token: not JSON" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err = (struct vg_error){ 0 };
                slots = NULL;
                jwe = NULL;
                ok(vg_luks_token_parse(bad[i].json, &slots, &n, &jwe, &err) < 0 && !slots && !jwe,
                   "token with %s is refused", bad[i].why);
                contains(vg_error_str(&err), bad[i].want, "naming the part (%s)", bad[i].why);
        }
        err = (struct vg_error){ 0 };
        is_int(vg_luks_token_parse("{\"type\":\"systemd-tpm2\",\"keyslots\":[\"1\"]}", &slots, &n,
                                   &jwe, &err),
               -ENOENT, "a token of another type is not a clevis token (-ENOENT)");
}

int main(void)
{
        const char *vt = getenv("VIGIL_TANG"), *cli = getenv("VIGIL_CLI");
        char *out = NULL, *out2 = NULL, *dir, *dba, *dbb, *dbc, *url_a, *url_b, *url_c;
        int pa, pb, pc;
        pid_t va = -1, tb = -1, vc = -1;

        signal(SIGPIPE, SIG_IGN);
        token_checks();
        if (access("/usr/libexec/tangd", X_OK) != 0 ||
            access("/usr/bin/clevis-luks-bind", X_OK) != 0 ||
            sh(NULL, "command -v cryptsetup >/dev/null && command -v socat >/dev/null") != 0) {
                tap_skip("tangd, clevis-luks, cryptsetup or socat not installed", "the rest");
                return tap_done();
        }
        if (!vt || !cli)
                tap_bail("VIGIL_TANG or VIGIL_CLI is not set");
        dir = tap_tmpdir();
        dba = tap_strf("%s/dba", dir);
        dbb = tap_strf("%s/dbb", dir);
        dbc = tap_strf("%s/dbc", dir);
        setenv("W", dir, 1);
        setenv("V", cli, 1);
        setenv("DBA", dba, 1);
        setenv("VIGIL_TANG_USER", "root", 1);
        pa = tap_free_port();
        pb = free_port_not(pa, -1);
        pc = free_port_not(pa, pb);
        url_a = tap_strf("http://127.0.0.1:%d", pa);
        url_b = tap_strf("http://127.0.0.1:%d", pb);
        url_c = tap_strf("http://127.0.0.1:%d", pc);
        setenv("A", url_a, 1);
        setenv("B", url_b, 1);
        setenv("C", url_c, 1);
        if (sh(NULL, "mkdir \"$W/dba\" \"$W/dbb\" \"$W/dbc\" && \"$V\" tang keygen \"$W/dba\" && "
                     "\"$V\" tang keygen \"$W/dbc\" && /usr/libexec/tangd-keygen \"$W/dbb\"") != 0)
                tap_bail("cannot make the Tang keys");
        va = tap_tang_start_vigil(vt, dba, pa);
        tb = tap_tang_start_tangd(dbb, pb);
        vc = tap_tang_start_vigil(vt, dbc, pc);
        ok(tap_wait_http(pa, "/adv") && tap_wait_http(pb, "/adv") && tap_wait_http(pc, "/adv"),
           "three Tang servers: vigil-tang %s, tangd %s, vigil-tang %s", url_a, url_b, url_c);

        /* ---- 1. clevis binds, vigil lists, unlocks, unbinds ---- */
        ok(mkimg("c.img"), "a LUKS2 image");
        is_int(sh(&out, "printf pw | clevis luks bind -y -k - -d \"$W/c.img\" tang "
                        "\"{\\\"url\\\":\\\"$A\\\"}\""),
               0, "clevis luks bind tang");
        free(out);
        is_int(sh(&out, "printf pw | clevis luks bind -y -k - -d \"$W/c.img\" sss "
                        "\"{\\\"t\\\":2,\\\"pins\\\":{\\\"tang\\\":[{\\\"url\\\":\\\"$A\\\"},"
                        "{\\\"url\\\":\\\"$B\\\"},{\\\"url\\\":\\\"$C\\\"}]}}\""),
               0, "clevis luks bind sss t=2 over the three servers");
        free(out);
        sh(&out2, "clevis luks list -d \"$W/c.img\"");
        is_int(sh(&out, "\"$V\" luks list -d \"$W/c.img\""), 0, "vigil luks list");
        is_str(out, out2, "vigil luks list prints what clevis luks list prints");
        contains(out, tap_keep(tap_strf("1: tang '{\"url\":\"%s\"}'\n", url_a)),
                 "slot 1: tang with its URL");
        contains(out,
                 tap_keep(tap_strf("2: sss '{\"t\":2,\"pins\":{\"tang\":[{\"url\":\"%s\"},"
                                   "{\"url\":\"%s\"},{\"url\":\"%s\"}]}}'\n",
                                   url_a, url_b, url_c)),
                 "slot 2: sss with its threshold and servers");
        free(out);
        free(out2);
        is_int(sh(&out, "\"$V\" luks list -d \"$W/c.img\" -s 2"), 0, "vigil luks list -s 2");
        ok(out && strncmp(out, "2: sss '", 8) == 0 && !strstr(out, "1: tang"),
           "list -s 2 shows slot 2 only");
        free(out);
        for (int s = 1; s <= 2; s++) {
                char *cmd = tap_strf("\"$V\" luks pass -d \"$W/c.img\" -s %d", s);
                char *cmd2 = tap_strf("clevis luks pass -d \"$W/c.img\" -s %d", s);

                is_int(sh(&out, cmd), 0, "vigil luks pass -s %d on clevis's binding", s);
                sh(&out2, cmd2);
                ok(out && *out && strcmp(out, out2) == 0,
                   "the passphrase of slot %d is the one clevis luks pass prints", s);
                if (out)
                        tap_write_file(tap_keep(tap_strf("%s/pass%d", dir, s)), out);
                free(cmd);
                free(cmd2);
                free(out);
                free(out2);
        }
        is_int(sh(NULL, "cryptsetup open --test-passphrase --key-slot 2 --key-file \"$W/pass2\" "
                        "\"$W/c.img\""),
               0, "cryptsetup accepts the passphrase of slot 2 for slot 2");
        is_int(sh(&out, "\"$V\" luks unbind -d \"$W/c.img\" -s 1 -f"), 0,
               "vigil luks unbind -s 1 of clevis's binding");
        free(out);
        sh(&out, "clevis luks list -d \"$W/c.img\"");
        ok(out && !strstr(out, "1: tang") && strstr(out, "2: sss"),
           "clevis luks list no longer shows slot 1, still slot 2");
        free(out);
        is_int(sh(&out, "cryptsetup luksDump \"$W/c.img\" | grep -cE '^ +[0-9]+: (luks2|clevis)$'"),
               0, "luksDump");
        is_str(out, "3\n", "keyslots 0 and 2 and one clevis token are left");
        free(out);
        ok(sh(NULL, "cryptsetup open --test-passphrase --key-slot 1 --key-file \"$W/pass1\" "
                    "\"$W/c.img\"") != 0,
           "slot 1's passphrase no longer opens the volume");

        /* ---- 2. errors that name device, slot and cause ---- */
        ok(sh(&out, "\"$V\" luks pass -d \"$W/c.img\" -s 0") == 1 &&
               strstr(out, "c.img: keyslot 0 has no clevis token"),
           "pass on a passphrase slot: 'keyslot 0 has no clevis token'");
        free(out);
        ok(sh(&out, "\"$V\" luks list -d \"$W/c.img\" -s 5") == 1 &&
               strstr(out, "c.img: keyslot 5 is not in use"),
           "list -s 5: 'keyslot 5 is not in use'");
        free(out);
        ok(sh(&out, "\"$V\" luks unbind -d \"$W/c.img\" -s 40 -f") == 1 &&
               strstr(out, "keyslot 40 out of range 0..31"),
           "unbind -s 40: out of range");
        free(out);
        ok(sh(&out, "head -c 1M /dev/zero > \"$W/zero\"; \"$V\" luks list -d \"$W/zero\"") == 1 &&
               strstr(out, "zero: not a LUKS volume"),
           "a file of zeros: 'not a LUKS volume'");
        free(out);
        ok(sh(&out, "\"$V\" luks list -d \"$W/missing.img\"") == 1 &&
               strstr(out, "missing.img: cannot open"),
           "a missing file: 'cannot open'");
        free(out);
        ok(sh(&out, "\"$V\" luks pass -d \"$W/c.img\"") == 2 &&
               strstr(out, "did not specify a slot"),
           "pass without -s is a usage error");
        free(out);
        ok(sh(&out, "\"$V\" luks bind -d \"$W/c.img\" -k - tang '{\"url\":' < /dev/null") == 1 &&
               strstr(out, "configuration is malformed"),
           "bind with malformed JSON: 'configuration is malformed'");
        free(out);
        sh(&out, "\"$V\" luks --help");
        contains(out, "vigil luks regen -d DEV -s SLOT [-q]", "--help lists regen");
        free(out);
        sh(&out, "\"$V\" luks edit --help");
        contains(out, "vigil luks edit -d DEV -s SLOT -c CFG", "edit --help");
        free(out);

        /* Malformed clevis tokens: a garbage JWE for keyslot 3 (a passphrase added by hand). */
        is_int(sh(NULL, "printf 'pw\\npw3' | cryptsetup luksAddKey --pbkdf pbkdf2 "
                        "--pbkdf-force-iterations 1000 -q -S 3 \"$W/c.img\" && "
                        "echo '{\"type\":\"clevis\",\"keyslots\":[\"3\"],\"jwe\":{\"ciphertext\":"
                        "\"!!\",\"encrypted_key\":\"\",\"iv\":\"x\",\"protected\":\"e30\",\"tag\":"
                        "\"y\"}}' | cryptsetup token import --token-id 9 \"$W/c.img\""),
               0, "cryptsetup token import of a clevis token with a garbage JWE for keyslot 3");
        ok(sh(&out, "\"$V\" luks list -d \"$W/c.img\"") == 1 && strstr(out, "2: sss '") &&
               strstr(out, "c.img: token 9 (keyslot 3): token jwe: JWE"),
           "list shows the good binding and names the bad token, its slot and the JWE part");
        free(out);
        ok(sh(&out, "\"$V\" luks pass -d \"$W/c.img\" -s 3") == 1 &&
               strstr(out, "token 9 (keyslot 3): token jwe:"),
           "pass -s 3 refuses the garbage token, naming it");
        free(out);
        ok(sh(&out, "\"$V\" luks unbind -d \"$W/c.img\" -s 3 -f") == 0 &&
               sh(NULL, "cryptsetup luksDump \"$W/c.img\" | grep -qE '^ +(9: clevis|3: luks2)$'") !=
                   0,
           "unbind -s 3 removes the broken binding: its keyslot and its token");
        free(out);
        is_int(sh(NULL, "printf pw | cryptsetup open --test-passphrase --key-slot 0 \"$W/c.img\""),
               0, "keyslot 0 still opens the volume");

        /* The last keyslot is never removed. */
        ok(mkimg("last.img"), "another image");
        is_int(sh(&out,
                  "printf pw | clevis luks bind -y -k - -d \"$W/last.img\" tang "
                  "\"{\\\"url\\\":\\\"$B\\\"}\" && cryptsetup luksKillSlot -q \"$W/last.img\" 0"),
               0, "clevis binds slot 1, then keyslot 0 is killed");
        free(out);
        ok(sh(&out, "\"$V\" luks unbind -d \"$W/last.img\" -s 1 -f") == 1 &&
               strstr(out, "keyslot 1 is the last keyslot"),
           "unbind of the last keyslot is refused");
        free(out);
        is_int(sh(&out, "\"$V\" luks pass -d \"$W/last.img\" -s 1"), 0,
               "the binding still unlocks (tangd)");
        free(out);

        /* ---- 3. vigil binds, clevis lists, unlocks, unbinds ---- */
        ok(mkimg("v.img"), "an image for vigil luks bind");
        sh(&out, "cryptsetup luksDump \"$W/v.img\" | sed -n '/^Keyslots:/,$p'");
        ok(sh(&out2, "printf wrong | \"$V\" luks bind -d \"$W/v.img\" -k - -y tang "
                     "\"{\\\"url\\\":\\\"$A\\\"}\"") == 1 &&
               strstr(out2, "v.img: the existing passphrase opens no keyslot"),
           "bind with a wrong passphrase: 'the existing passphrase opens no keyslot'");
        free(out2);
        ok(sh(&out2, "printf pw | \"$V\" luks bind -d \"$W/v.img\" -k - -y tang "
                     "'{\"url\":\"http://127.0.0.1:1\"}'") == 1 &&
               strstr(out2, "http://127.0.0.1:1"),
           "bind to a server that is not there fails naming its URL");
        free(out2);
        sh(&out2, "cryptsetup luksDump \"$W/v.img\" | sed -n '/^Keyslots:/,$p'");
        is_str(out2, out, "the failed binds left the header as it was");
        free(out);
        free(out2);
        is_int(sh(&out, "printf pw | \"$V\" luks bind -d \"$W/v.img\" -k - -y tang "
                        "\"{\\\"url\\\":\\\"$A\\\"}\""),
               0, "vigil luks bind tang (vigil-tang)");
        free(out);
        is_int(sh(&out, "printf 'pw\\n' > \"$W/key\" && truncate -s 2 \"$W/key\" && "
                        "\"$V\" luks bind -d \"$W/v.img\" -k \"$W/key\" -s 5 -t 7 -y tang "
                        "\"{\\\"url\\\":\\\"$B\\\"}\""),
               0, "vigil luks bind -k KEYFILE -s 5 -t 7 tang (tangd)");
        free(out);
        is_int(sh(&out, "clevis luks list -d \"$W/v.img\""), 0, "clevis luks list");
        is_str(out,
               tap_keep(tap_strf("1: tang '{\"url\":\"%s\"}'\n5: tang '{\"url\":\"%s\"}'\n", url_a,
                                 url_b)),
               "clevis luks list shows both vigil bindings in their slots");
        free(out);
        is_int(sh(NULL, "cryptsetup luksDump \"$W/v.img\" | grep -A1 -E '^ +7: clevis$' | "
                        "grep -qE 'Keyslot: +5$'"),
               0, "token 7 is the clevis token of keyslot 5");
        is_int(sh(&out, "clevis luks pass -d \"$W/v.img\" -s 1"), 0,
               "clevis luks pass on vigil's binding");
        is_int(out ? (long long)strlen(out) : -1, 54,
               "the passphrase is 54 characters (40 random bytes)");
        ok(out && strspn(out, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                      strlen(out),
           "all base64url");
        sh(&out2, "\"$V\" luks pass -d \"$W/v.img\" -s 1");
        is_str(out2, out, "vigil luks pass prints the same passphrase");
        if (out)
                tap_write_file(tap_keep(tap_strf("%s/vpass1", dir)), out);
        free(out);
        free(out2);
        is_int(sh(NULL, "cryptsetup open --test-passphrase --key-slot 1 --key-file \"$W/vpass1\" "
                        "\"$W/v.img\""),
               0, "cryptsetup accepts it for keyslot 1");
        is_int(sh(&out, "cryptsetup luksDump \"$W/v.img\" | sed -n '/^  1: luks2/,/^  [0-9]/p'"), 0,
               "luksDump keyslot 1");
        ok(out && strstr(out, "PBKDF:      pbkdf2") && strstr(out, "Iterations: 1000"),
           "vigil's keyslot is PBKDF2 with 1000 iterations, as clevis's");
        free(out);
        ok(sh(&out, "printf pw | \"$V\" luks bind -d \"$W/v.img\" -k - -s 5 -y tang "
                    "\"{\\\"url\\\":\\\"$A\\\"}\"") == 1 &&
               strstr(out, "keyslot 5 is in use"),
           "bind -s 5 again: 'keyslot 5 is in use'");
        free(out);
        ok(sh(&out, "setsid -w \"$V\" luks unbind -d \"$W/v.img\" -s 5 < /dev/null") == 1 &&
               strstr(out, "no terminal to confirm on"),
           "unbind without -f and without a terminal refuses");
        free(out);
        ok(sh(&out, "setsid -w \"$V\" luks regen -d \"$W/v.img\" -s 5 < /dev/null") == 1 &&
               strstr(out, "no terminal to confirm on"),
           "regen without -q and without a terminal refuses");
        free(out);
        is_int(sh(NULL, "\"$V\" luks list -d \"$W/v.img\" -s 5 | grep -q '^5: tang'"), 0,
               "slot 5 is still bound");
        is_int(sh(&out, "clevis luks unbind -f -d \"$W/v.img\" -s 5"), 0,
               "clevis luks unbind of vigil's binding");
        free(out);
        sh(&out, "\"$V\" luks list -d \"$W/v.img\"");
        is_str(out, tap_keep(tap_strf("1: tang '{\"url\":\"%s\"}'\n", url_a)),
               "vigil luks list: slot 5 is gone");
        free(out);

        /* ---- 4. the guide's rekey flow: sss t=1 over three servers ---- */
        ok(mkimg("r.img") && mkimg("stale.img"), "two images for the rekey flow");
        for (int i = 0; i < 2; i++) {
                char *cmd =
                    tap_strf("printf pw | \"$V\" luks bind -d \"$W/%s\" -k - -y sss "
                             "\"{\\\"t\\\":1,\\\"pins\\\":{\\\"tang\\\":[{\\\"url\\\":\\\"$A\\\"},"
                             "{\\\"url\\\":\\\"$B\\\"},{\\\"url\\\":\\\"$C\\\"}]}}\"",
                             i ? "stale.img" : "r.img");

                is_int(sh(&out, cmd), 0, "vigil luks bind sss t=1 over A, B, C (%s)",
                       i ? "stale.img" : "r.img");
                free(out);
                free(cmd);
        }
        sh(&out, "clevis luks list -d \"$W/r.img\" -s 1");
        is_str(out,
               tap_keep(tap_strf("1: sss '{\"t\":1,\"pins\":{\"tang\":[{\"url\":\"%s\"},{\"url\":"
                                 "\"%s\"},{\"url\":\"%s\"}]}}'\n",
                                 url_a, url_b, url_c)),
               "clevis luks list shows vigil's sss binding");
        free(out);
        sh(&out, "\"$V\" luks pass -d \"$W/r.img\" -s 1");
        sh(&out2, "clevis luks pass -d \"$W/r.img\" -s 1");
        ok(out && strlen(out) == 54 && strcmp(out, out2) == 0,
           "vigil and clevis recover the same passphrase from the sss binding");
        free(out);
        free(out2);
        is_int(sh(&out, "\"$V\" tang rotate \"$DBA\" | sed -n 's/ signing$//p' > \"$W/s_new\""), 0,
               "vigil tang rotate A's keys");
        free(out);
        ok(eventually("\"$V\" tang show-keys \"$A\" | grep -qF \"$(cat \"$W/s_new\")\""),
           "A advertises its new keys");
        is_int(sh(&out, "\"$V\" luks regen -d \"$W/r.img\" -s 1 -q"), 0, "vigil luks regen -q");
        contains(out, "Regenerating binding (device", "says what it regenerates");
        contains(out, "Binding regenerated successfully", "and that it did");
        free(out);
        is_int(sh(&out, "\"$V\" tang purge-hidden \"$DBA\" --force"), 0,
               "vigil tang purge-hidden A --force");
        free(out);
        tap_stop(&tb);
        tap_stop(&vc);
        ok(eventually("! curl -s -o /dev/null \"$B/adv\" && ! curl -s -o /dev/null \"$C/adv\""),
           "B and C are down");
        out = NULL;
        {
                int r = 1;

                for (int i = 0; i < 60 && r != 0; i++) {
                        free(out);
                        out = NULL;
                        r = sh(&out, "\"$V\" luks pass -d \"$W/r.img\" -s 1 > \"$W/rpass\"");
                        if (r != 0)
                                usleep(50 * 1000);
                }
                is_int(r, 0, "the regenerated volume still unlocks through A's new keys");
                free(out);
        }
        is_int(sh(NULL, "cryptsetup open --test-passphrase --key-slot 1 --key-file \"$W/rpass\" "
                        "\"$W/r.img\""),
               0, "cryptsetup accepts the recovered passphrase");
        is_int(sh(&out, "clevis luks pass -d \"$W/r.img\" -s 1 | cmp - \"$W/rpass\""), 0,
               "clevis luks pass agrees");
        free(out);

        /* The volume left alone lost all its servers: A purged its key, B and C are down. */
        ok(sh(&out, "\"$V\" luks pass -d \"$W/stale.img\" -s 1") == 1, "the stale volume fails");
        contains(out, "stale.img: keyslot 1: ", "naming the device and slot");
        contains(out, url_a, "and server A");
        contains(out, url_b, "and server B");
        contains(out, url_c, "and server C");
        tap_diag("stale volume: %s", out ? out : "");
        free(out);
        ok(sh(&out, "\"$V\" luks regen -d \"$W/stale.img\" -s 1 -q") == 1 && strstr(out, url_a),
           "regen of the stale volume fails too, naming the servers");
        free(out);

        /* ---- 5. edit: a new configuration in the same slot ---- */
        ok(sh(&out, "\"$V\" luks edit -d \"$W/r.img\" -s 1 -c "
                    "\"{\\\"t\\\":1,\\\"pins\\\":{\\\"tang\\\":[{\\\"url\\\":\\\"$A\\\"},"
                    "{\\\"url\\\":\\\"$B\\\"},{\\\"url\\\":\\\"$C\\\"}]}}\"") == 1 &&
               strstr(out, "no changes detected"),
           "edit to the same configuration: 'no changes detected'");
        free(out);
        is_int(sh(&out, "\"$V\" luks edit -d \"$W/r.img\" -s 1 -c "
                        "\"{\\\"t\\\":1,\\\"pins\\\":{\\\"tang\\\":[{\\\"url\\\":\\\"$A\\\"}]}}\""),
               0, "vigil luks edit -c to sss over A alone");
        contains(out, "Binding edited successfully", "says so");
        free(out);
        sh(&out, "clevis luks list -d \"$W/r.img\"");
        is_str(out,
               tap_keep(
                   tap_strf("1: sss '{\"t\":1,\"pins\":{\"tang\":[{\"url\":\"%s\"}]}}'\n", url_a)),
               "clevis luks list shows the edited configuration in slot 1");
        free(out);
        is_int(sh(&out, "clevis luks pass -d \"$W/r.img\" -s 1 > \"$W/epass\" && "
                        "! cmp -s \"$W/epass\" \"$W/rpass\" && cryptsetup open --test-passphrase "
                        "--key-slot 1 --key-file \"$W/epass\" \"$W/r.img\""),
               0, "clevis luks pass gives the new passphrase, which opens keyslot 1");
        free(out);
        ok(sh(NULL, "cryptsetup open --test-passphrase --key-slot 1 --key-file \"$W/rpass\" "
                    "\"$W/r.img\"") != 0,
           "the passphrase before the edit no longer opens it");
        is_int(sh(NULL, "cryptsetup luksDump \"$W/r.img\" | grep -cE '^ +[0-9]+: clevis$' | "
                        "grep -qx 1"),
               0, "one clevis token: the old one was replaced");
        ok(sh(&out, "\"$V\" luks edit -d \"$W/v.img\" -s 0 -c '{\"url\":\"x\"}'") == 1 &&
               strstr(out, "v.img: keyslot 0 has no clevis token"),
           "edit of a slot without a binding: 'keyslot 0 has no clevis token'");
        free(out);

        /* ---- 6. tpm2 (swtpm), alone and in sss with tang ---- */
        {
                struct vg_swtpm *tpm = NULL;
                struct vg_error err = { 0 };

                if (vg_swtpm_start(NULL, &tpm, &err) < 0)
                        tap_bail("swtpm: %s", err.msg);
                setenv("TPM2TOOLS_TCTI", vg_swtpm_tcti(tpm), 1);
                setenv("TSS2_LOG", "all+none", 1);
                ok(mkimg("t.img"), "an image for tpm2 bindings");
                is_int(sh(&out, "printf pw | \"$V\" luks bind -d \"$W/t.img\" -k - tpm2 "
                                "'{\"pcr_bank\":\"sha256\",\"pcr_ids\":\"7\"}'"),
                       0, "vigil luks bind tpm2 pcr_ids 7");
                free(out);
                /* clevis-encrypt-tpm2 leaves a policy session loaded on a bare swtpm. */
                is_int(sh(&out, "printf pw | clevis luks bind -d \"$W/t.img\" -k - tpm2 "
                                "'{\"pcr_bank\":\"sha256\",\"pcr_ids\":\"7\"}'; st=$?; "
                                "tpm2_flushcontext -l; exit $st"),
                       0, "clevis luks bind tpm2 pcr_ids 7");
                free(out);
                is_int(sh(&out,
                          "printf pw | \"$V\" luks bind -d \"$W/t.img\" -k - -y sss "
                          "\"{\\\"t\\\":2,\\\"pins\\\":{\\\"tang\\\":[{\\\"url\\\":\\\"$A\\\"}],"
                          "\\\"tpm2\\\":{}}}\""),
                       0, "vigil luks bind sss t=2 of tang and tpm2");
                free(out);
                sh(&out2, "clevis luks list -d \"$W/t.img\"");
                is_int(sh(&out, "\"$V\" luks list -d \"$W/t.img\""), 0, "vigil luks list");
                is_str(out, out2, "vigil luks list prints what clevis luks list prints (tpm2)");
                contains(out,
                         "1: tpm2 '{\"hash\":\"sha256\",\"key\":\"ecc\",\"pcr_bank\":"
                         "\"sha256\",\"pcr_ids\":\"7\"}'\n",
                         "slot 1: tpm2 with hash, key, bank and PCRs");
                contains(out,
                         tap_keep(tap_strf("3: sss '{\"t\":2,\"pins\":{\"tang\":[{\"url\":"
                                           "\"%s\"}],\"tpm2\":[{\"hash\":\"sha256\","
                                           "\"key\":\"ecc\"}]}}'\n",
                                           url_a)),
                         "slot 3: sss with its tang and tpm2 shares");
                tap_diag("tpm2 list: %s", out ? out : "");
                free(out);
                free(out2);
                for (int s = 1; s <= 3; s++) {
                        char *cmd = tap_strf("\"$V\" luks pass -d \"$W/t.img\" -s %d > \"$W/tp\" "
                                             "&& clevis luks pass -d \"$W/t.img\" -s %d | "
                                             "cmp - \"$W/tp\" && cryptsetup open "
                                             "--test-passphrase --key-slot %d --key-file "
                                             "\"$W/tp\" \"$W/t.img\"",
                                             s, s, s);

                        is_int(sh(&out, cmd), 0,
                               "slot %d (%s): vigil and clevis recover the same passphrase, "
                               "which opens the keyslot",
                               s, s == 2 ? "clevis's" : "vigil's");
                        free(out);
                        free(cmd);
                }
                is_int(sh(NULL, "tpm2_pcrextend 7:sha256=$(printf '%064d' 1)"), 0, "extend PCR 7");
                ok(sh(&out, "\"$V\" luks pass -d \"$W/t.img\" -s 1") == 1 &&
                       strstr(out, "t.img: keyslot 1: tpm2: ") && strstr(out, "PCR"),
                   "after the extend the tpm2 binding fails, saying the PCRs changed");
                tap_diag("after extend: %s", out ? out : "");
                free(out);
                vg_swtpm_free(tpm);
        }

        tap_stop(&va);
        free(url_a);
        free(url_b);
        free(url_c);
        free(dba);
        free(dbb);
        free(dbc);
        free(dir);
        return tap_done();
}
