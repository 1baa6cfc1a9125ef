/* vigil tests: vigil-tang against the real clevis, jose and tangd (Debian packages): clevis
 * encrypt/decrypt, thp pinning, advertisements that verify and carry tangd's key set, JWEs made
 * against tangd decrypting against vigil-tang and back, rotation through inotify, and tangd's
 * status codes for bad requests. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

static char *dir, *db;

/* Run a shell snippet with W (work dir), DB and the ports in the environment. */
static int sh(char **out, const char *script)
{
        return tap_runl(out, "/bin/sh", "-c", script, NULL);
}

static char *curl_code(const char *args)
{
        char *out = NULL, *cmd = tap_strf("curl -s -o /dev/null -w '%%{http_code}' %s", args);
        sh(&out, cmd);
        free(cmd);
        return out;
}

int main(void)
{
        const char *vt = getenv("VIGIL_TANG");
        char *out = NULL, *cmd, *url, *turl;
        int port, tport;
        pid_t vpid, tpid;

        signal(SIGPIPE, SIG_IGN);
        if (access("/usr/libexec/tangd", X_OK) != 0 || access("/usr/bin/clevis", X_OK) != 0) {
                printf("1..0 # SKIP tang or clevis not installed\n");
                return 0;
        }
        tap_plan(29);
        dir = tap_tmpdir();
        db = tap_strf("%s/db", dir);
        setenv("W", dir, 1);
        setenv("DB", db, 1);
        /* Started as root, vigil-tang would become _tang; the test directory is root's. */
        setenv("VIGIL_TANG_USER", "root", 1);
        is_int(sh(NULL, "mkdir -p \"$DB\" && /usr/libexec/tangd-keygen \"$DB\" >/dev/null 2>&1; "
                        "ls \"$DB\"/*.jwk | wc -l | grep -qx 2"),
               0, "tangd-keygen made two keys");

        port = tap_free_port();
        tport = tap_free_port();
        while (tport == port)
                tport = tap_free_port();
        url = tap_strf("http://127.0.0.1:%d", port);
        turl = tap_strf("http://127.0.0.1:%d", tport);
        setenv("URL", url, 1);
        setenv("TURL", turl, 1);
        {
                char *listen = tap_strf("127.0.0.1:%d", port),
                     *listen6 = tap_strf("[::1]:%d", port);
                char *const argv[] = { (char *)vt, "-f",       "--jwkdir", db,  "--listen",
                                       listen,     "--listen", listen6,    NULL };
                vpid = tap_spawn(argv);
                free(listen);
                free(listen6);
        }
        {
                char *exec = tap_strf("EXEC:/usr/libexec/tangd %s", db);
                char *lst = tap_strf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", tport);
                char *const argv[] = { "socat", lst, exec, NULL };
                tpid = tap_spawn(argv);
                free(exec);
                free(lst);
        }
        ok(tap_wait_http(port, "/adv"), "vigil-tang answers on %s", url);
        ok(tap_wait_http(tport, "/adv"), "tangd under socat answers on %s", turl);

        /* clevis round trip. */
        is_int(sh(&out, "echo plaintext | clevis encrypt tang \"{\\\"url\\\":\\\"$URL\\\"}\" -y "
                        "> \"$W/ct1.jwe\" && clevis decrypt < \"$W/ct1.jwe\""),
               0, "clevis encrypt + decrypt against vigil-tang");
        is_str(out, "plaintext\n", "clevis decrypt gives the plaintext");
        free(out);

        /* IPv6 listener. */
        cmd = tap_strf("-g http://[::1]:%d/adv", port);
        out = curl_code(cmd);
        is_str(out, "200", "GET /adv on [::1]");
        free(out);
        free(cmd);

        /* /adv verifies and carries the key set tangd serves. */
        is_int(sh(&out, "curl -sf \"$URL/adv\" > \"$W/adv.jws\" && "
                        "jose fmt -j \"$W/adv.jws\" -g payload -yOo- > \"$W/keys.json\" && "
                        "jose jwk use -i \"$W/keys.json\" -r -u verify -o \"$W/ver.jwk\" && "
                        "jose jws ver -i \"$W/adv.jws\" -k \"$W/ver.jwk\" -a"),
               0, "/adv verifies with jose jws ver against its own verify key");
        free(out);
        is_int(sh(&out, "curl -sf \"$TURL/adv\" | jose fmt -j- -g payload -yOo- > "
                        "\"$W/tkeys.json\" && "
                        "for f in keys tkeys; do jose jwk thp -i \"$W/$f.json\" -a S256 "
                        "| sort > \"$W/$f.thp\"; done; "
                        "test -s \"$W/keys.thp\" && cmp \"$W/keys.thp\" \"$W/tkeys.thp\""),
               0, "/adv carries the same keys as tangd's");
        free(out);

        /* Pinning. */
        is_int(sh(&out, "T=$(jose jwk thp -i \"$W/ver.jwk\" -a S256) && echo pinned | "
                        "clevis encrypt tang \"{\\\"url\\\":\\\"$URL\\\",\\\"thp\\\":\\\"$T\\\"}\" "
                        "> \"$W/ct2.jwe\" && clevis decrypt < \"$W/ct2.jwe\""),
               0, "clevis with the right thp");
        is_str(out, "pinned\n", "pinned ciphertext decrypts");
        free(out);
        ok(sh(&out,
              "echo x | clevis encrypt tang "
              "\"{\\\"url\\\":\\\"$URL\\\",\\\"thp\\\":\\\"AAAAbadthumbprintAAAA\\\"}\"") != 0,
           "a bad thp is refused");
        contains(out, "Unable to fetch advertisement", "with clevis's error");
        free(out);

        /* Interop with tangd on the same key directory. */
        is_int(sh(&out, "echo fromtangd | clevis encrypt tang \"{\\\"url\\\":\\\"$TURL\\\"}\" -y "
                        "> \"$W/ct3.jwe\" && test -s \"$W/ct3.jwe\""),
               0, "JWE made against tangd");
        free(out);
        /* Point the JWE's url at vigil-tang: the url is in the protected header, so instead
         * decrypt it while tangd is stopped and vigil-tang took its port. */
        tap_stop(&tpid);
        {
                char *listen = tap_strf("127.0.0.1:%d", tport);
                char *const argv[] = { (char *)vt, "-f", "--jwkdir", db, "--listen", listen, NULL };
                pid_t p2 = tap_spawn(argv);
                ok(tap_wait_http(tport, "/adv"), "vigil-tang on tangd's port");
                is_int(sh(&out, "clevis decrypt < \"$W/ct3.jwe\""), 0,
                       "a JWE made against tangd decrypts against vigil-tang");
                is_str(out, "fromtangd\n", "with the plaintext");
                free(out);
                tap_stop(&p2);
                free(listen);
        }
        {
                /* And back: a JWE made against vigil-tang decrypts against tangd. */
                char *lst = tap_strf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", port);
                char *exec = tap_strf("EXEC:/usr/libexec/tangd %s", db);
                char *const argv[] = { "socat", lst, exec, NULL };
                tap_stop(&vpid);
                tpid = tap_spawn(argv);
                ok(tap_wait_http(port, "/adv"), "tangd on vigil-tang's port");
                is_int(sh(&out, "clevis decrypt < \"$W/ct1.jwe\""), 0,
                       "a JWE made against vigil-tang decrypts against tangd");
                is_str(out, "plaintext\n", "with the plaintext");
                free(out);
                tap_stop(&tpid);
                free(lst);
                free(exec);
        }
        {
                char *listen = tap_strf("127.0.0.1:%d", port);
                char *const argv[] = { (char *)vt, "-f", "--jwkdir", db, "--listen", listen, NULL };
                vpid = tap_spawn(argv);
                ok(tap_wait_http(port, "/adv"), "vigil-tang restarted");
                free(listen);
        }

        /* Bad requests: tangd's status codes. */
        out = curl_code("-X POST -d 'not json' \"$URL/rec/abc\"");
        is_str(out, "400", "POST /rec with a body that is not JSON: 400");
        free(out);
        out = curl_code("-X POST -d \"$(jose jwk gen -i '{\"alg\":\"ECMR\"}' | jose jwk pub "
                        "-i-)\" \"$URL/rec/unknownkid\"");
        is_str(out, "404", "unknown kid: 404");
        free(out);
        {
                char *x = NULL;
                sh(&x, "jose jwk use -i \"$W/keys.json\" -r -u deriveKey -o- | jose jwk thp "
                       "-i- -a S256 | tr -d '\\n'");
                setenv("KID", x, 1);
                free(x);
        }
        out = curl_code("-X POST -d \"$(jose jwk gen -i '{\"alg\":\"ECMR\",\"crv\":\"P-256\"}' "
                        "| jose jwk pub -i-)\" \"$URL/rec/$KID\"");
        is_str(out, "400", "a P-256 point for a P-521 key: 400");
        free(out);
        out = curl_code("-X POST -d \"$(jose jwk gen -i '{\"alg\":\"ECMR\"}' | jose jwk pub -i- "
                        "| sed 's/\"x\":\"[^\"]*\"/\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"/')\" "
                        "\"$URL/rec/$KID\"");
        is_str(out, "400", "a point not on the curve: 400");
        free(out);
        sh(NULL, "head -c 70000 /dev/zero | tr '\\0' ' ' > \"$W/big\"");
        out = curl_code("-X POST --data-binary \"@$W/big\" \"$URL/rec/$KID\"");
        is_str(out, "413", "a 70000-byte body: 413");
        free(out);
        out = curl_code("\"$URL/rec/$KID\"");
        is_str(out, "405", "GET /rec: 405");
        free(out);
        out = curl_code("-X POST \"$URL/adv\"");
        is_str(out, "405", "POST /adv: 405");
        free(out);

        /* Rotation through inotify: hide the keys, make new ones. */
        /* The reload follows the directory's changes; give a loaded machine up to 10 s. */
        is_int(sh(&out, "cd \"$DB\" && for k in *.jwk; do mv -- \"$k\" \".$k\"; done && "
                        "/usr/libexec/tangd-keygen \"$DB\" >/dev/null 2>&1; "
                        "ls \"$DB\" | sed -n 's/\\.jwk$//p' | sort > \"$W/files.thp\"; "
                        "for i in $(seq 200); do "
                        "curl -sf \"$URL/adv\" | jose fmt -j- -g payload -yOo- | "
                        "jose jwk thp -i- -a S256 | sort > \"$W/new.thp\"; "
                        "cmp -s \"$W/new.thp\" \"$W/files.thp\" && break; sleep 0.05; done; "
                        "cmp \"$W/new.thp\" \"$W/files.thp\" && ! grep -qf \"$W/keys.thp\" "
                        "\"$W/new.thp\""),
               0, "after rotation /adv advertises only the new keys");
        free(out);
        is_int(sh(&out, "clevis decrypt < \"$W/ct1.jwe\""), 0,
               "old ciphertext still decrypts through the hidden key");
        free(out);

        tap_stop(&vpid);
        free(url);
        free(turl);
        free(db);
        free(dir);
        return tap_done();
}
