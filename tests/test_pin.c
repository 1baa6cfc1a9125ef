/* vigil tests: `vigil pin` against the real clevis, tangd (under socat) and vigil-tang: tang and
 * sss JWEs made by either tool decrypt with the other (t=1, t=2 of 3, nested sss), thp pinning
 * (S256, S1, wrong), an advertisement file, the -y refusal, and decryption errors that say what
 * happened where: connection refused, a server that never answers (timed out, and an sss that
 * does not wait for it), a purged key (404), malformed JWEs with the part named. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "encoding.h"
#include "jwe.h"
#include "tang_peers.h"
#include "tap.h"

static int sh(char **out, const char *script)
{
        return tap_runl(out, "/bin/sh", "-c", script, NULL);
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A listening socket that is never accepted from: connections succeed, requests hang. */
static int hanging_listener(int *port)
{
        struct sockaddr_in a = { .sin_family = AF_INET };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) < 0)
                tap_bail("cannot make the hanging listener");
        *port = ntohs(a.sin_port);
        return fd;
}

/* Re-seal the header of the JWE in file `from` with member edits, into file `to` (the key is
 * random, so only header checks can pass). */
static void reseal(const char *from, const char *to, const char *del, const char *pin)
{
        struct vg_jwe j = { 0 }, out = { 0 };
        struct vg_error err = { 0 };
        uint8_t cek[VG_JWE_CEK_LEN] = { 1 };
        size_t len = 0;
        char *text = tap_read_file(from, &len), *c;
        json_t *h;

        if (!text || vg_jwe_parse(text, len, &j, &err) < 0)
                tap_bail("reseal: cannot parse %s: %s", from, err.msg);
        h = json_deep_copy(j.header);
        if (del && strncmp(del, "clevis.tang.", 12) == 0)
                json_object_del(json_object_get(json_object_get(h, "clevis"), "tang"), del + 12);
        else if (del)
                json_object_del(h, del);
        if (pin)
                json_object_set_new(json_object_get(h, "clevis"), "pin", json_string(pin));
        if (vg_jwe_seal(h, cek, "x", 1, &out, &err) < 0)
                tap_bail("reseal: %s", err.msg);
        c = vg_jwe_compact(&out);
        tap_write_file(to, c);
        free(c);
        free(text);
        json_decref(h);
        vg_jwe_clear(&j);
        vg_jwe_clear(&out);
}

/* The decoded protected header of the JWE in file path. */
static json_t *header_of(const char *path)
{
        struct vg_jwe j = { 0 };
        size_t len = 0;
        char *text = tap_read_file(path, &len);
        json_t *h = NULL;

        if (text && vg_jwe_parse(text, len, &j, NULL) == 0)
                h = json_incref(j.header);
        vg_jwe_clear(&j);
        free(text);
        return h;
}

static char *keys_of(const json_t *o)
{
        char buf[256] = "";
        const char *k;
        json_t *v;
        void *it;
        size_t n = 0;

        (void)v;
        for (it = json_object_iter((json_t *)o); it; it = json_object_iter_next((json_t *)o, it)) {
                k = json_object_iter_key(it);
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s,", k);
        }
        return tap_keep(strdup(buf));
}

/* Round trips for one config, both ways; what names it. */
static void both_ways(const char *pin, const char *cfg, const char *what)
{
        char *out = NULL, *s;

        setenv("PIN", pin, 1);
        setenv("CFG", cfg, 1);
        s = tap_strf("printf '%s' | \"$VIGIL_CLI\" pin encrypt \"$PIN\" \"$CFG\" -y > \"$W/v.jwe\" "
                     "&& clevis decrypt < \"$W/v.jwe\"",
                     what);
        is_int(sh(&out, s), 0, "%s: vigil pin encrypt, clevis decrypt", what);
        is_str(out, what, "%s: clevis recovers vigil's plaintext", what);
        free(out);
        free(s);
        s = tap_strf("printf '%s' | clevis encrypt \"$PIN\" \"$CFG\" -y > \"$W/c.jwe\" && "
                     "\"$VIGIL_CLI\" pin decrypt < \"$W/c.jwe\"",
                     what);
        is_int(sh(&out, s), 0, "%s: clevis encrypt, vigil pin decrypt", what);
        is_str(out, what, "%s: vigil recovers clevis's plaintext", what);
        free(out);
        free(s);
}

int main(void)
{
        const char *vt = getenv("VIGIL_TANG"), *cli = getenv("VIGIL_CLI");
        char *out = NULL, *dir, *db[3], *url[3], *sig[3] = { 0 }, *exc[3] = { 0 }, *uh;
        int port[3], hport, hfd;
        pid_t pid[3] = { -1, -1, -1 };
        double t0;

        signal(SIGPIPE, SIG_IGN);
        if (access("/usr/libexec/tangd", X_OK) != 0 || access("/usr/bin/clevis", X_OK) != 0) {
                printf("1..0 # SKIP tang or clevis not installed\n");
                return 0;
        }
        if (!vt || !cli)
                tap_bail("VIGIL_TANG or VIGIL_CLI is not set");
        dir = tap_tmpdir();
        setenv("W", dir, 1);
        setenv("VIGIL_TANG_USER", "root", 1);
        for (int i = 0; i < 3; i++) {
                char *cmd;

                db[i] = tap_strf("%s/db%d", dir, i);
                do
                        port[i] = tap_free_port();
                while ((i > 0 && port[i] == port[0]) || (i > 1 && port[i] == port[1]));
                url[i] = tap_strf("http://127.0.0.1:%d", port[i]);
                setenv("DB", db[i], 1);
                cmd = tap_strf("mkdir -p \"$DB\" && \"$VIGIL_CLI\" tang keygen \"$DB\"");
                if (sh(&out, cmd) != 0)
                        tap_bail("vigil tang keygen failed: %s", out);
                sig[i] = tap_tang_thp_of(out, "signing");
                exc[i] = tap_tang_thp_of(out, "exchange");
                free(out);
                free(cmd);
                /* server 0 is tangd (under socat), 1 and 2 are vigil-tang */
                pid[i] = i == 0 ? tap_tang_start_tangd(db[i], port[i])
                                : tap_tang_start_vigil(vt, db[i], port[i]);
                if (!tap_wait_http(port[i], "/adv"))
                        tap_bail("server %d does not answer on %s", i, url[i]);
                setenv(i == 0 ? "U0" : i == 1 ? "U1" : "U2", url[i], 1);
        }
        hfd = hanging_listener(&hport);
        uh = tap_strf("http://127.0.0.1:%d", hport);
        setenv("UH", uh, 1);
        setenv("SIG0", sig[0], 1);
        setenv("SIG1", sig[1], 1);

        /* ---- tang, both ways, against tangd and vigil-tang ---- */
        both_ways("tang", tap_keep(tap_strf("{\"url\":\"%s\"}", url[0])), "tang-tangd");
        both_ways("tang", tap_keep(tap_strf("{\"url\":\"%s\"}", url[1])), "tang-vigil-tang");
        {
                char *vp = tap_strf("%s/v.jwe", dir), *cp = tap_strf("%s/c.jwe", dir);
                json_t *vh = header_of(vp), *ch = header_of(cp);

                ok(vh && ch, "both headers parse");
                is_str(keys_of(vh), keys_of(ch), "vigil's tang header has clevis's members");
                is_str(json_string_value(json_object_get(vh, "kid")),
                       json_string_value(json_object_get(ch, "kid")),
                       "same kid as clevis (S256 of the exchange key)");
                is_str(json_string_value(json_object_get(vh, "kid")), exc[1],
                       "kid is the server's exchange key thumbprint");
                ok(json_equal(json_object_get(
                                  json_object_get(json_object_get(vh, "clevis"), "tang"), "adv"),
                              json_object_get(
                                  json_object_get(json_object_get(ch, "clevis"), "tang"), "adv")),
                   "same stored advertisement as clevis");
                is_str(keys_of(json_object_get(vh, "epk")), "crv,kty,x,y,",
                       "epk holds crv, kty, x, y only");
                json_decref(vh);
                json_decref(ch);
                free(vp);
                free(cp);
        }

        /* ---- trust ---- */
        is_int(sh(&out, "printf t | \"$VIGIL_CLI\" pin encrypt tang \"{\\\"url\\\":\\\"$U1\\\"}\" "
                        "> \"$W/n.jwe\""),
               1, "without -y, thp or adv: refused");
        contains(out, "pass -y", "the refusal says to pass -y");
        contains(out, sig[1], "the refusal shows the signing key's thumbprint");
        free(out);
        /* On a terminal it asks, as clevis does (script(1) gives the command a pty; the
         * plaintext comes from a file, the answer from the terminal). */
        if (access("/usr/bin/script", X_OK) == 0) {
                is_int(sh(&out, "printf asked > \"$W/p.txt\"; (sleep 0.5; echo y) | script -qec "
                                "\"'$VIGIL_CLI' pin encrypt tang '{\\\"url\\\":\\\"$U1\\\"}' "
                                "< '$W/p.txt' > '$W/asked.jwe'\" /dev/null && "
                                "clevis decrypt < \"$W/asked.jwe\""),
                       0, "on a terminal: asks, 'y' trusts, clevis decrypts");
                contains(out, "Do you wish to trust these keys? [ynYN]", "... clevis's question");
                contains(out, sig[1], "... showing the signing key's thumbprint");
                contains(out, "asked", "... and the plaintext comes back");
                free(out);
                ok(sh(&out, "(sleep 0.5; echo n) | script -qec "
                            "\"'$VIGIL_CLI' pin encrypt tang '{\\\"url\\\":\\\"$U1\\\"}' "
                            "< '$W/p.txt' > '$W/refused.jwe'\" /dev/null") != 0,
                   "on a terminal: 'n' refuses");
                free(out);
        } else {
                for (int i = 0; i < 5; i++)
                        tap_skip("script(1) is not installed", "terminal prompt");
        }
        is_int(sh(&out, "printf s256 | \"$VIGIL_CLI\" pin encrypt tang "
                        "\"{\\\"url\\\":\\\"$U1\\\",\\\"thp\\\":\\\"$SIG1\\\"}\" > \"$W/t.jwe\" && "
                        "clevis decrypt < \"$W/t.jwe\""),
               0, "thp S256 of the signing key: no -y needed, clevis decrypts");
        is_str(out, "s256", "... the plaintext");
        free(out);
        is_int(sh(&out, "S1=$(jose jwk thp -a S1 -i \"$W/db1/$SIG1.jwk\") && printf s1 | "
                        "\"$VIGIL_CLI\" pin encrypt tang "
                        "\"{\\\"url\\\":\\\"$U1\\\",\\\"thp\\\":\\\"$S1\\\"}\" > \"$W/t.jwe\" && "
                        "\"$VIGIL_CLI\" pin decrypt < \"$W/t.jwe\""),
               0, "thp S1 (27 characters) of the signing key accepted");
        is_str(out, "s1", "... and decrypts");
        free(out);
        is_int(sh(&out, "printf x | \"$VIGIL_CLI\" pin encrypt tang "
                        "\"{\\\"url\\\":\\\"$U1\\\",\\\"thp\\\":\\\"$SIG0\\\"}\""),
               1, "thp of another server's key: refused");
        contains(out, "no signing key", "... the server has no such key (404 on /adv/THP)");
        contains(out, url[1], "... with the URL");
        free(out);
        is_int(sh(&out, "curl -sf \"$U0/adv\" > \"$W/adv0.jws\" && printf advfile | "
                        "\"$VIGIL_CLI\" pin encrypt tang "
                        "\"{\\\"url\\\":\\\"$U0\\\",\\\"adv\\\":\\\"$W/adv0.jws\\\"}\" "
                        "> \"$W/a.jwe\" && clevis decrypt < \"$W/a.jwe\""),
               0, "adv as a file: trusted without -y, clevis decrypts");
        is_str(out, "advfile", "... the plaintext");
        free(out);
        is_int(sh(&out, "printf x | \"$VIGIL_CLI\" pin encrypt tang "
                        "\"{\\\"url\\\":\\\"$U0\\\",\\\"adv\\\":\\\"$W/adv0.jws\\\","
                        "\\\"thp\\\":\\\"$SIG1\\\"}\""),
               1, "adv file with a thp that did not sign it: refused");
        contains(out, "advertisement not signed by trusted key", "... saying so");
        free(out);
        is_int(sh(&out, "printf x | \"$VIGIL_CLI\" pin encrypt tang "
                        "\"{\\\"url\\\":\\\"$U0\\\",\\\"adv\\\":\\\"$W/nonexistent.jws\\\"}\""),
               1, "adv file missing: refused");
        contains(out, "not found", "... not found");
        free(out);
        is_int(sh(&out, "printf x | \"$VIGIL_CLI\" pin encrypt tang '{\"thp\":\"x\"}'"), 1,
               "no url: refused");
        contains(out, "no \"url\"", "... naming url");
        free(out);
        is_int(sh(&out, "printf x | \"$VIGIL_CLI\" pin encrypt tang '{\"url\":'"), 2,
               "CONFIG not JSON: usage error");
        free(out);

        /* ---- sss ---- */
        {
                char *three = tap_strf("[{\"url\":\"%s\"},{\"url\":\"%s\"},{\"url\":\"%s\"}]",
                                       url[0], url[1], url[2]);

                both_ways("sss", tap_keep(tap_strf("{\"t\":1,\"pins\":{\"tang\":%s}}", three)),
                          "sss-t1-of-3");
                both_ways("sss", tap_keep(tap_strf("{\"t\":2,\"pins\":{\"tang\":%s}}", three)),
                          "sss-t2-of-3");
                both_ways("sss",
                          tap_keep(tap_strf("{\"t\":2,\"pins\":{\"tang\":{\"url\":\"%s\"},"
                                            "\"sss\":{\"t\":1,\"pins\":{\"tang\":[{\"url\":"
                                            "\"%s\"},{\"url\":\"%s\"}]}}}}",
                                            url[0], url[1], url[2])),
                          "sss-nested");
                setenv("CFG", tap_keep(tap_strf("{\"t\":4,\"pins\":{\"tang\":%s}}", three)), 1);
                is_int(sh(&out, "printf x | \"$VIGIL_CLI\" pin encrypt sss \"$CFG\" -y"), 1,
                       "t=4 of 3 pins refused");
                contains(out, "invalid threshold (required: 1 <= 4 <= 3)", "... as clevis says");
                free(out);
                free(three);
        }
        /* t=2 of 3 where the third never answers: decrypts at once, without its timeout. */
        {
                char *cfg = tap_strf("{\"t\":2,\"pins\":{\"tang\":[{\"url\":\"%s\"},{\"url\":"
                                     "\"%s\"},{\"url\":\"%s\",\"adv\":\"%s/adv0.jws\"}]}}",
                                     url[0], url[1], uh, dir);
                setenv("CFG", cfg, 1);
                is_int(sh(&out, "printf two | \"$VIGIL_CLI\" pin encrypt sss \"$CFG\" -y "
                                "> \"$W/hang.jwe\""),
                       0, "sss t=2 with a share on a server that never answers");
                free(out);
                t0 = now_s();
                is_int(sh(&out, "\"$VIGIL_CLI\" pin decrypt --timeout 5000 < \"$W/hang.jwe\""), 0,
                       "t=2 of 3 decrypts with the third server hanging");
                is_str(out, "two", "... the plaintext");
                ok(now_s() - t0 < 2.0, "... without waiting for the hanging server (%.2f s)",
                   now_s() - t0);
                free(out);
                free(cfg);
                cfg = tap_strf("{\"t\":3,\"pins\":{\"tang\":[{\"url\":\"%s\"},{\"url\":"
                               "\"%s\"},{\"url\":\"%s\",\"adv\":\"%s/adv0.jws\"}]}}",
                               url[0], url[1], uh, dir);
                setenv("CFG", cfg, 1);
                sh(NULL, "printf three | \"$VIGIL_CLI\" pin encrypt sss \"$CFG\" -y "
                         "> \"$W/hang3.jwe\"");
                t0 = now_s();
                is_int(sh(&out, "\"$VIGIL_CLI\" pin decrypt --timeout 400 --attempts 1 "
                                "< \"$W/hang3.jwe\""),
                       1, "t=3 of 3 with a hanging server fails");
                contains(out, "2 of 3 shares decrypted, 3 needed", "... counting the shares");
                contains(out, tap_keep(tap_strf("share 3: %s: timed out after 400 ms", uh)),
                         "... share 3 timed out, with its URL");
                ok(now_s() - t0 < 1.5, "... within the timeout (%.2f s)", now_s() - t0);
                free(out);
                free(cfg);
        }
        /* a tang JWE for the hanging server alone (adv from a file) */
        sh(NULL, "printf h | \"$VIGIL_CLI\" pin encrypt tang "
                 "\"{\\\"url\\\":\\\"$UH\\\",\\\"adv\\\":\\\"$W/adv0.jws\\\"}\" > \"$W/h.jwe\"");
        t0 = now_s();
        is_int(sh(&out, "\"$VIGIL_CLI\" pin decrypt --timeout 300 --attempts 2 < \"$W/h.jwe\""), 1,
               "a server that never answers: failure");
        contains(out, tap_keep(tap_strf("%s: timed out after 300 ms (2 attempts)", uh)),
                 "... \"timed out\" with the URL and the attempts");
        ok(now_s() - t0 < 1.5, "... after two timeouts and one backoff (%.2f s)", now_s() - t0);
        free(out);

        /* ---- malformed JWEs ---- */
        sh(NULL, "printf good | \"$VIGIL_CLI\" pin encrypt tang \"{\\\"url\\\":\\\"$U1\\\"}\" -y "
                 "> \"$W/good.jwe\"");
        {
                static const struct {
                        const char *script, *needle, *what;
                } bad[] = {
                        { "head -c 200 \"$W/good.jwe\"", "JWE: 1 part", "truncated JWE" },
                        { "awk -F. -v OFS=. '{ $3 = \"*\" substr($3, 2); print }' \"$W/good.jwe\"",
                          "JWE iv: not base64url", "bad base64" },
                        { "cat \"$W/pin.jwe\"", "unknown pin \"nope\"", "wrong pin name" },
                        { "cat \"$W/epk.jwe\"", "no \"epk\"", "missing epk" },
                        { "cat \"$W/kid.jwe\"", "no \"kid\"", "missing kid" },
                        { "cat \"$W/adv.jwe\"", "\"adv\"", "missing adv" },
                        { "cat \"$W/url.jwe\"", "\"url\"", "missing url" },
                        { "cat \"$W/noclevis.jwe\"", "no \"clevis\".\"pin\"", "not Clevis" },
                        { "printf ''", "empty input", "empty input" },
                        { "echo '{\"protected\":1}'", "\"protected\" is not a string",
                          "JSON with a number for protected" },
                };
                char *good = tap_strf("%s/good.jwe", dir), *p;

                p = tap_strf("%s/pin.jwe", dir);
                reseal(good, p, NULL, "nope");
                free(p);
                p = tap_strf("%s/epk.jwe", dir);
                reseal(good, p, "epk", NULL);
                free(p);
                p = tap_strf("%s/kid.jwe", dir);
                reseal(good, p, "kid", NULL);
                free(p);
                p = tap_strf("%s/adv.jwe", dir);
                reseal(good, p, "clevis.tang.adv", NULL);
                free(p);
                p = tap_strf("%s/url.jwe", dir);
                reseal(good, p, "clevis.tang.url", NULL);
                free(p);
                p = tap_strf("%s/noclevis.jwe", dir);
                reseal(good, p, "clevis", NULL);
                free(p);
                for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                        char *s = tap_strf("%s | \"$VIGIL_CLI\" pin decrypt", bad[i].script);

                        is_int(sh(&out, s), 1, "%s: refused (exit 1, no crash)", bad[i].what);
                        contains(out, bad[i].needle, "%s: the error names it", bad[i].what);
                        free(out);
                        free(s);
                }
                /* the right server, a JWE whose ciphertext was changed */
                is_int(sh(&out, "sed 's/\\.\\([A-Za-z0-9_-]\\)\\([A-Za-z0-9_-]*\\)\\.\\([^.]*\\)$/"
                                ".A\\2.\\3/' \"$W/good.jwe\" > \"$W/tamper.jwe\"; "
                                "cmp -s \"$W/good.jwe\" \"$W/tamper.jwe\" || "
                                "\"$VIGIL_CLI\" pin decrypt < \"$W/tamper.jwe\""),
                       1, "a modified ciphertext is refused");
                contains(out, "authentication failed", "... as an authentication failure");
                free(out);
                free(good);
        }

        /* ---- purged key: 404 ---- */
        sh(NULL, "printf old | \"$VIGIL_CLI\" pin encrypt tang \"{\\\"url\\\":\\\"$U2\\\"}\" -y "
                 "> \"$W/old.jwe\"");
        setenv("DB", db[2], 1);
        is_int(sh(&out, "\"$VIGIL_CLI\" tang rotate \"$DB\" >/dev/null && sleep 0.3 && "
                        "\"$VIGIL_CLI\" pin decrypt < \"$W/old.jwe\""),
               0, "after rotation the old JWE still decrypts (hidden key)");
        is_str(out, "old", "... the plaintext");
        free(out);
        out = NULL;
        {
                int r = 1;

                sh(NULL, "\"$VIGIL_CLI\" tang purge-hidden \"$DB\" --force >/dev/null");
                for (int i = 0; i < 40 && r; i++) {
                        free(out);
                        out = NULL;
                        sh(&out, "\"$VIGIL_CLI\" pin decrypt < \"$W/old.jwe\"");
                        r = strstr(out ? out : "", "no longer has key") ? 0 : 1;
                        if (r)
                                usleep(50 * 1000);
                }
                contains(
                    out,
                    tap_keep(tap_strf("%s: the server no longer has key %s (404", url[2], exc[2])),
                    "purged key: \"no longer has key KID (404...\" with the URL");
                free(out);
        }

        /* ---- https: the CA from CURL_CA_BUNDLE / SSL_CERT_FILE, else the system store ---- */
        {
                int sport = tap_free_port();
                pid_t spid;

                if (sh(&out, "cd \"$W\" && openssl req -x509 -newkey ec -pkeyopt "
                             "ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj "
                             "/CN=test-ca -days 2 && openssl req -newkey ec -pkeyopt "
                             "ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr -subj "
                             "/CN=tang && printf 'subjectAltName=IP:127.0.0.1\\n' > srv.ext && "
                             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
                             "-CAcreateserial -out srv.pem -days 2 -extfile srv.ext 2>&1") != 0)
                        tap_bail("openssl: %s", out);
                free(out);
                setenv("VIGIL_TANG_SERVER_CERT", tap_keep(tap_strf("%s/srv.pem", dir)), 1);
                setenv("VIGIL_TANG_SERVER_KEY", tap_keep(tap_strf("%s/srv.key", dir)), 1);
                spid = tap_tang_start_vigil(vt, db[1], sport);
                unsetenv("VIGIL_TANG_SERVER_CERT");
                unsetenv("VIGIL_TANG_SERVER_KEY");
                setenv("US", tap_keep(tap_strf("https://127.0.0.1:%d", sport)), 1);
                ok(sh(NULL, "for i in $(seq 100); do curl -sf --cacert \"$W/ca.pem\" "
                            "\"$US/adv\" >/dev/null && exit 0; sleep 0.05; done; exit 1") == 0,
                   "vigil-tang over https is up");
                is_int(sh(&out, "printf tls | CURL_CA_BUNDLE=\"$W/ca.pem\" \"$VIGIL_CLI\" pin "
                                "encrypt tang \"{\\\"url\\\":\\\"$US\\\"}\" -y > \"$W/s.jwe\" && "
                                "CURL_CA_BUNDLE=\"$W/ca.pem\" clevis decrypt < \"$W/s.jwe\""),
                       0, "https: vigil pin encrypt (CA in CURL_CA_BUNDLE), clevis decrypt");
                is_str(out, "tls", "... the plaintext");
                free(out);
                is_int(sh(&out, "unset CURL_CA_BUNDLE; SSL_CERT_FILE=\"$W/ca.pem\" \"$VIGIL_CLI\" "
                                "pin decrypt "
                                "< \"$W/s.jwe\""),
                       0, "https: vigil pin decrypt with the CA in SSL_CERT_FILE");
                is_str(out, "tls", "... the plaintext");
                free(out);
                is_int(sh(&out, "unset CURL_CA_BUNDLE SSL_CERT_FILE; \"$VIGIL_CLI\" pin decrypt "
                                "--attempts 1 < \"$W/s.jwe\""),
                       1, "https: a server the system store does not trust is refused");
                contains(out, "certificate verify failed", "... certificate verify failed");
                contains(out, getenv("US"), "... with the URL");
                free(out);
                tap_stop(&spid);
        }

        /* ---- a stopped server: connection refused ---- */
        tap_stop(&pid[0]);
        sh(NULL, "for i in 1 2 3 4 5 6 7 8 9 10; do curl -s -o /dev/null \"$U0/adv\" || break; "
                 "sleep 0.05; done");
        is_int(sh(&out, "\"$VIGIL_CLI\" pin decrypt --attempts 1 < \"$W/a.jwe\""), 1,
               "server stopped: failure");
        contains(out, tap_keep(tap_strf("%s: connection refused", url[0])),
                 "... \"connection refused\" with the URL");
        free(out);
        t0 = now_s();
        is_int(sh(&out, "\"$VIGIL_CLI\" pin decrypt --attempts 3 < \"$W/a.jwe\""), 1,
               "with 3 attempts: still refused");
        contains(out, "(3 attempts)", "... after 3 attempts");
        ok(now_s() - t0 >= 0.7, "... with backoff between them (250 + 500 ms; %.2f s)",
           now_s() - t0);
        free(out);

        is_int(sh(&out, "printf x | \"$VIGIL_CLI\" pin encrypt tang \"{\\\"url\\\":\\\"$U0\\\"}\" "
                        "-y --attempts 1"),
               1, "encrypt against the stopped server: failure");
        contains(out,
                 tap_keep(tap_strf("%s/adv/: unable to fetch the advertisement: connection "
                                   "refused",
                                   url[0])),
                 "... \"unable to fetch the advertisement: connection refused\" with the URL");
        free(out);

        is_int(sh(&out, "\"$VIGIL_CLI\" pin --help"), 0, "vigil pin --help");
        contains(out, "vigil pin encrypt PIN CONFIG [-y]", "... shows the usage");
        free(out);
        is_int(sh(&out, "\"$VIGIL_CLI\" pin decrypt --attempts 0 < /dev/null"), 2,
               "--attempts 0: usage error");
        free(out);

        close(hfd);
        for (int i = 0; i < 3; i++) {
                tap_stop(&pid[i]);
                free(db[i]);
                free(url[i]);
                free(sig[i]);
                free(exc[i]);
        }
        free(uh);
        free(dir);
        return tap_done();
}
