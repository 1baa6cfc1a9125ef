/* vigil tests: the Tang key-rotation procedure end to end through our tools, with the real
 * clevis, jose and tangd (Debian packages): `vigil tang keygen`, vigil-tang, clevis encrypt with
 * the old key, `vigil tang rotate`, /adv and `vigil tang show-keys URL` showing only the new
 * keys, the old ciphertext still decrypting through the hidden key, `vigil tang purge-hidden`
 * refusing while the recovery record says the hidden key is in use and purging with --force,
 * after which the old ciphertext no longer decrypts and a new one does. Then an sss pin over
 * vigil-tang and tangd (under socat): t=1 survives either server being down, t=2 needs both. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tang_peers.h"
#include "tap.h"

/* Run a shell snippet with W, DB, TDB, URL, TURL and VIGIL_CLI in the environment. */
static int sh(char **out, const char *script)
{
        return tap_runl(out, "/bin/sh", "-c", script, NULL);
}

static bool wait_down(int port)
{
        for (int i = 0; i < 100; i++) {
                char *cmd = tap_strf("curl -s -o /dev/null http://127.0.0.1:%d/adv", port);
                int r = sh(NULL, cmd);
                free(cmd);
                if (r != 0)
                        return true;
                usleep(50 * 1000);
        }
        return false;
}

int main(void)
{
        const char *vt = getenv("VIGIL_TANG"), *cli = getenv("VIGIL_CLI");
        char *out = NULL, *dir, *db, *tdb, *url, *turl;
        char *s_old = NULL, *e_old = NULL, *s_new = NULL, *e_new = NULL;
        int port, tport;
        pid_t vpid = -1, tpid = -1;

        signal(SIGPIPE, SIG_IGN);
        if (access("/usr/libexec/tangd", X_OK) != 0 || access("/usr/bin/clevis", X_OK) != 0) {
                printf("1..0 # SKIP tang or clevis not installed\n");
                return 0;
        }
        if (!vt || !cli)
                tap_bail("VIGIL_TANG or VIGIL_CLI is not set");
        tap_plan(53);
        dir = tap_tmpdir();
        db = tap_strf("%s/db", dir);
        tdb = tap_strf("%s/tdb", dir);
        setenv("W", dir, 1);
        setenv("DB", db, 1);
        setenv("TDB", tdb, 1);
        /* Started as root, vigil-tang would become _tang; the test directory is root's. */
        setenv("VIGIL_TANG_USER", "root", 1);
        port = tap_free_port();
        tport = tap_free_port();
        while (tport == port)
                tport = tap_free_port();
        url = tap_strf("http://127.0.0.1:%d", port);
        turl = tap_strf("http://127.0.0.1:%d", tport);
        setenv("URL", url, 1);
        setenv("TURL", turl, 1);

        /* ---- 1. The guide's rotation procedure through vigil tang. ---- */
        is_int(sh(&out, "mkdir -p \"$DB\" && \"$VIGIL_CLI\" tang keygen \"$DB\""), 0,
               "vigil tang keygen DB");
        s_old = tap_tang_thp_of(out, "signing");
        e_old = tap_tang_thp_of(out, "exchange");
        ok(s_old && e_old, "keygen names a signing and an exchange key");
        free(out);
        if (!s_old || !e_old)
                tap_bail("no key thumbprints from keygen");
        setenv("S_OLD", s_old, 1);
        setenv("E_OLD", e_old, 1);

        vpid = tap_tang_start_vigil(vt, db, port);
        ok(tap_wait_http(port, "/adv"), "vigil-tang answers on %s", url);
        is_int(sh(&out, "echo plaintext | clevis encrypt tang \"{\\\"url\\\":\\\"$URL\\\"}\" -y "
                        "> \"$W/old.jwe\" && clevis decrypt < \"$W/old.jwe\""),
               0, "clevis encrypt with the old key, and decrypt");
        is_str(out, "plaintext\n", "the old ciphertext decrypts before rotation");
        free(out);
        is_int(sh(&out, "\"$VIGIL_CLI\" tang show-keys \"$URL\""), 0, "show-keys URL");
        contains(out, s_old, "show-keys URL shows the old signing key before rotation");
        free(out);

        is_int(sh(&out, "\"$VIGIL_CLI\" tang rotate \"$DB\""), 0, "vigil tang rotate DB");
        s_new = tap_tang_thp_of(out, "signing");
        e_new = tap_tang_thp_of(out, "exchange");
        ok(s_new && e_new && strcmp(s_new, s_old) != 0 && strcmp(e_new, e_old) != 0,
           "rotate names a new signing and a new exchange key");
        free(out);
        if (!s_new || !e_new)
                tap_bail("no key thumbprints from rotate");
        setenv("S_NEW", s_new, 1);
        setenv("E_NEW", e_new, 1);
        is_int(sh(&out, "ls -A \"$DB\" | grep '\\.jwk$' | LC_ALL=C sort"), 0,
               "list the key directory");
        {
                char *want = NULL;
                sh(&want, "printf '%s\\n' \".$S_OLD.jwk\" \".$E_OLD.jwk\" \"$S_NEW.jwk\" "
                          "\"$E_NEW.jwk\" | LC_ALL=C sort");
                is_str(out, want, "the old keys are hidden (.kid.jwk), the new ones advertised");
                free(want);
        }
        free(out);

        /* vigil-tang picks the change up through inotify; wait until /adv shows the new key. */
        {
                bool seen = false;
                for (int i = 0; i < 60 && !seen; i++) {
                        seen = sh(NULL, "\"$VIGIL_CLI\" tang show-keys \"$URL\" | "
                                        "grep -q \"^$S_NEW signing\"") == 0;
                        if (!seen)
                                usleep(50 * 1000);
                }
                ok(seen, "show-keys URL shows the new signing key after rotation");
        }
        is_int(sh(&out, "\"$VIGIL_CLI\" tang show-keys \"$URL\" | LC_ALL=C sort"), 0,
               "show-keys URL again");
        {
                char *want = NULL;
                sh(&want, "printf '%s\\n' \"$S_NEW signing advertised\" "
                          "\"$E_NEW exchange advertised\" | LC_ALL=C sort");
                is_str(out, want, "show-keys URL: exactly the new pair, the old keys not shown");
                free(want);
        }
        free(out);
        is_int(sh(&out, "curl -sf \"$URL/adv\" > \"$W/adv.jws\" && "
                        "jose fmt -j \"$W/adv.jws\" -g payload -yOo- > \"$W/keys.json\" && "
                        "jose jwk use -i \"$W/keys.json\" -r -u verify -o \"$W/ver.jwk\" && "
                        "jose jws ver -i \"$W/adv.jws\" -k \"$W/ver.jwk\" -a && "
                        "jose jwk thp -i \"$W/ver.jwk\" -a S256"),
               0, "/adv verifies with its own verify key");
        is_str(out, s_new, "/adv's only verify key is the new signing key");
        free(out);
        is_int(sh(&out, "jose jwk thp -i \"$W/keys.json\" -a S256 | LC_ALL=C sort"), 0,
               "thumbprints of /adv's keys");
        {
                char *want = NULL;
                sh(&want, "printf '%s\\n' \"$S_NEW\" \"$E_NEW\" | LC_ALL=C sort");
                is_str(out, want, "/adv advertises exactly the new pair");
                free(want);
        }
        free(out);

        is_int(sh(&out, "clevis decrypt < \"$W/old.jwe\""), 0,
               "the old ciphertext still decrypts after rotation");
        is_str(out, "plaintext\n", "with the plaintext (through the hidden key)");
        free(out);
        is_int(sh(&out, "echo fresh | clevis encrypt tang \"{\\\"url\\\":\\\"$URL\\\"}\" -y "
                        "> \"$W/new.jwe\" && clevis decrypt < \"$W/new.jwe\""),
               0, "a ciphertext made after rotation decrypts");
        is_str(out, "fresh\n", "with its plaintext");
        free(out);

        /* vigil-tang flushes the recovery record within a second. */
        {
                bool seen = false;
                for (int i = 0; i < 60 && !seen; i++) {
                        seen = sh(NULL, "grep -q \"$E_OLD\" \"$DB/.vigil-recoveries.json\"") == 0;
                        if (!seen)
                                usleep(50 * 1000);
                }
                ok(seen, "the recovery with the hidden exchange key is recorded");
        }
        ok(sh(&out, "\"$VIGIL_CLI\" tang purge-hidden \"$DB\"") != 0,
           "purge-hidden refuses while the hidden key recovered a client recently");
        contains(out, e_old, "naming the hidden exchange key");
        free(out);
        is_int(sh(NULL, "test -f \"$DB/.$E_OLD.jwk\" && test -f \"$DB/.$S_OLD.jwk\""), 0,
               "the refused purge left the hidden keys in place");
        is_int(sh(&out, "\"$VIGIL_CLI\" tang purge-hidden \"$DB\" --force"), 0,
               "purge-hidden --force");
        free(out);
        is_int(sh(&out, "ls -A \"$DB\" | grep '\\.jwk$' | LC_ALL=C sort"), 0,
               "list the key directory after the purge");
        {
                char *want = NULL;
                sh(&want, "printf '%s\\n' \"$S_NEW.jwk\" \"$E_NEW.jwk\" | LC_ALL=C sort");
                is_str(out, want, "only the new keys are left");
                free(want);
        }
        free(out);
        is_int(sh(&out, "\"$VIGIL_CLI\" tang show-keys --dir \"$DB\" --hidden | grep -c hidden"), 1,
               "show-keys --dir --hidden lists no hidden key");
        free(out);

        /* The hidden key is gone from vigil-tang too (inotify): the old ciphertext fails. */
        out = NULL;
        {
                int r = 0;
                for (int i = 0; i < 60; i++) {
                        free(out);
                        out = NULL;
                        r = sh(&out, "clevis decrypt < \"$W/old.jwe\"");
                        if (r != 0)
                                break;
                        usleep(50 * 1000);
                }
                ok(r != 0, "after the purge the old ciphertext no longer decrypts");
                ok(!out || !strstr(out, "plaintext"), "and gives no plaintext");
                free(out);
        }
        is_int(sh(&out, "clevis decrypt < \"$W/new.jwe\""), 0,
               "the ciphertext made after rotation still decrypts");
        is_str(out, "fresh\n", "with its plaintext");
        free(out);

        /* SIGHUP reloads (systemctl reload) rather than ending the server. */
        ok(kill(vpid, SIGHUP) == 0, "SIGHUP to vigil-tang");
        usleep(300 * 1000);
        is_int(waitpid(vpid, NULL, WNOHANG), 0, "vigil-tang is still running after SIGHUP");
        is_int(sh(&out, "\"$VIGIL_CLI\" tang show-keys \"$URL\" | LC_ALL=C sort"), 0,
               "show-keys URL after SIGHUP");
        {
                char *want = NULL;
                sh(&want, "printf '%s\\n' \"$S_NEW signing advertised\" "
                          "\"$E_NEW exchange advertised\" | LC_ALL=C sort");
                is_str(out, want, "after SIGHUP the same new pair is advertised");
                free(want);
        }
        free(out);

        /* ---- 2. sss over vigil-tang and tangd. ---- */
        is_int(sh(NULL, "mkdir -p \"$TDB\" && /usr/libexec/tangd-keygen \"$TDB\" >/dev/null 2>&1; "
                        "ls \"$TDB\"/*.jwk | wc -l | grep -qx 2"),
               0, "tangd-keygen made tangd's keys");
        tpid = tap_tang_start_tangd(tdb, tport);
        ok(tap_wait_http(tport, "/adv"), "tangd under socat answers on %s", turl);
        is_int(sh(&out, "echo one | clevis encrypt sss "
                        "\"{\\\"t\\\":1,\\\"pins\\\":{\\\"tang\\\":[{\\\"url\\\":\\\"$URL\\\"},"
                        "{\\\"url\\\":\\\"$TURL\\\"}]}}\" -y > \"$W/t1.jwe\" && "
                        "clevis encrypt sss "
                        "\"{\\\"t\\\":2,\\\"pins\\\":{\\\"tang\\\":[{\\\"url\\\":\\\"$URL\\\"},"
                        "{\\\"url\\\":\\\"$TURL\\\"}]}}\" -y > \"$W/t2.jwe\" <<EOF\ntwo\nEOF\n"),
               0, "clevis encrypt sss t=1 and t=2 over vigil-tang and tangd");
        free(out);

        tap_stop(&tpid);
        ok(wait_down(tport), "tangd stopped");
        is_int(sh(&out, "clevis decrypt < \"$W/t1.jwe\" 2>/dev/null"), 0,
               "t=1 decrypts with tangd down");
        is_str(out, "one\n", "with the plaintext");
        free(out);
        ok(sh(&out, "clevis decrypt < \"$W/t2.jwe\"") != 0, "t=2 fails with tangd down");
        free(out);

        tpid = tap_tang_start_tangd(tdb, tport);
        ok(tap_wait_http(tport, "/adv"), "tangd restarted");
        tap_stop(&vpid);
        ok(wait_down(port), "vigil-tang stopped");
        is_int(sh(&out, "clevis decrypt < \"$W/t1.jwe\" 2>/dev/null"), 0,
               "t=1 decrypts with vigil-tang down");
        is_str(out, "one\n", "with the plaintext");
        free(out);
        ok(sh(&out, "clevis decrypt < \"$W/t2.jwe\"") != 0, "t=2 fails with vigil-tang down");
        free(out);

        vpid = tap_tang_start_vigil(vt, db, port);
        ok(tap_wait_http(port, "/adv"), "vigil-tang restarted");
        is_int(sh(&out, "clevis decrypt < \"$W/t2.jwe\""), 0, "t=2 decrypts with both up");
        is_str(out, "two\n", "with the plaintext");
        free(out);

        tap_stop(&vpid);
        tap_stop(&tpid);
        free(s_old);
        free(e_old);
        free(s_new);
        free(e_new);
        free(url);
        free(turl);
        free(db);
        free(tdb);
        free(dir);
        return tap_done();
}
