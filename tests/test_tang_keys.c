/* vigil tests: Tang key directories (vg_tang) and `vigil tang`, checked against Debian's jose
 * CLI, tangd-keygen and tangd itself (the advertisement of the same directory, byte for byte
 * apart from the ECDSA signatures). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jose/jose.h>

#include "tang_keys.h"
#include "tap.h"

#define TANGD_KEYGEN "/usr/libexec/tangd-keygen"
#define TANGD        "/usr/libexec/tangd"

static const char *cli;

#define K tap_keep

static char *trim(char *s)
{
        size_t n = s ? strlen(s) : 0;
        while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
                s[--n] = '\0';
        return s;
}

/* The key files of dir (names), sorted, NULL-terminated. */
static int list_jwk(const char *dir, char names[][128], int max)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;

        if (!d)
                return -1;
        while ((de = readdir(d)) && n < max) {
                size_t l = strlen(de->d_name);
                if (l > 4 && strcmp(de->d_name + l - 4, ".jwk") == 0)
                        snprintf(names[n++], 128, "%s", de->d_name);
        }
        closedir(d);
        qsort(names, (size_t)n, 128, (int (*)(const void *, const void *))strcmp);
        return n;
}

static void test_keygen(const char *dir)
{
        _cleanup_free_ char *s = NULL, *e = NULL;
        struct vg_error err = { 0 };
        char names[8][128];

        is_int(vg_tang_keygen(dir, &s, &e, &err), 0, "keygen: %s", vg_error_str(&err));
        is_int(list_jwk(dir, names, 8), 2, "keygen creates two key files");
        for (int i = 0; i < 2; i++) {
                _cleanup_free_ char *path = tap_strf("%s/%s", dir, names[i]);
                _cleanup_free_ char *text = tap_read_file(path, NULL);
                json_auto_t *jwk = json_loads(text ? text : "", 0, NULL);
                _cleanup_free_ char *canon = NULL;
                const char *hashes[] = { "S1", "S256", "S512" };

                is_int(tap_file_mode(path), 0440, "%s is 0440", names[i]);
                ok(strcmp(names[i], K(tap_strf("%s.jwk", s))) == 0 ||
                       strcmp(names[i], K(tap_strf("%s.jwk", e))) == 0,
                   "%s is named by a returned thumbprint", names[i]);
                canon = tap_strf("%s\n", K(json_dumps(jwk, JSON_SORT_KEYS | JSON_COMPACT)));
                is_str(text, canon,
                       "%s is written as `jose jwk gen` output echoed (sorted, "
                       "compact, newline)",
                       names[i]);
                for (size_t h = 0; h < 3; h++) {
                        _cleanup_free_ char *out = NULL, *mine = NULL;
                        int rc =
                            tap_runl(&out, "jose", "jwk", "thp", "-i", path, "-a", hashes[h], NULL);
                        is_int(rc, 0, "jose jwk thp -a %s runs", hashes[h]);
                        vg_tang_thumbprint(jwk, hashes[h], &mine, &err);
                        is_str(mine, trim(out), "%s thumbprint of %s equals jose's", hashes[h],
                               names[i]);
                        if (h == 1) {
                                _cleanup_free_ char *want = tap_strf("%s.jwk", trim(out));
                                is_str(names[i], want, "file name is the S256 thumbprint");
                        }
                }
        }
}

static void test_tangd_keys(const char *root)
{
        _cleanup_free_ char *dir = tap_strf("%s/tangd", root);
        _cleanup_(vg_tang_keys_freep) struct vg_tang_keys *k = NULL;
        struct vg_error err = { 0 };
        char names[8][128];

        if (access(TANGD_KEYGEN, X_OK) != 0) {
                tap_skip("no " TANGD_KEYGEN, "keys made by tangd-keygen load");
                return;
        }
        mkdir(dir, 0700);
        is_int(tap_runl(NULL, TANGD_KEYGEN, dir, NULL), 0, "tangd-keygen runs");
        is_int(vg_tang_keys_load(dir, &k, &err), 0, "tangd-keygen's keys load: %s",
               vg_error_str(&err));
        is_int(list_jwk(dir, names, 8), 2, "tangd-keygen made two keys");
        if (!k)
                return;
        for (int i = 0; i < 2; i++) {
                names[i][strlen(names[i]) - 4] = '\0';
                ok(vg_tang_keys_find(k, names[i]) != NULL, "key %s found by its file name",
                   names[i]);
        }
}

/* Replace the value of every "signature" member with "-": ECDSA signatures are random. */
static void blank_signatures(char *s)
{
        char *p = s;
        while ((p = strstr(p, "\"signature\": \""))) {
                char *v = p + strlen("\"signature\": \""), *end = strchr(v, '"');
                if (!end)
                        return;
                *v = '-';
                memmove(v + 1, end, strlen(end) + 1);
                p = v;
        }
}

static void check_adv(const char *root, const char *dir, struct vg_tang_keys *k)
{
        const struct vg_tang_key_info *info;
        size_t n = vg_tang_keys_list(k, &info), len = 0, plen;
        const char *adv = vg_tang_keys_adv(k, &len);
        _cleanup_free_ char *adv_path = tap_strf("%s/adv.jws", root), *payload = NULL;
        json_auto_t *jws = NULL, *set = NULL, *want = json_array();
        int nsig = 0;

        ok(adv != NULL && len == strlen(adv), "an advertisement exists");
        if (!adv)
                return;
        tap_write_file(adv_path, adv);
        jws = json_loads(adv, 0, NULL);
        plen = jose_b64_dec(json_object_get(jws, "payload"), NULL, 0);
        payload = calloc(1, plen + 1);
        jose_b64_dec(json_object_get(jws, "payload"), payload, plen);
        set = json_loads(payload, 0, NULL);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = tap_strf("%s/%s", dir, info[i].file);
                _cleanup_free_ char *pub = tap_strf("%s/pub-%zu.jwk", root, i);
                json_auto_t *jwk = json_load_file(path, 0, NULL);
                _cleanup_free_ char *out = NULL;
                int rc;

                jose_jwk_pub(NULL, jwk);
                json_dump_file(jwk, pub, 0);
                if (!info[i].hidden)
                        json_array_append(want, jwk);
                if (!info[i].signing)
                        continue;
                rc = tap_runl(&out, "jose", "jws", "ver", "-i", adv_path, "-k", pub, NULL);
                if (info[i].hidden) {
                        ok(rc != 0, "hidden key %s did not sign /adv", info[i].thp);
                } else {
                        is_int(rc, 0, "jose jws ver: /adv is signed by %s", info[i].thp);
                        nsig++;
                }
        }
        ok(json_equal(json_object_get(set, "keys"), want),
           "the payload is the set of advertised public keys");
        contains(payload, "\"key_ops\": [\"verify\"]", "signing keys advertised for verify only");
        contains(payload, "\"key_ops\": [\"deriveKey\"]", "exchange keys for deriveKey");
        ok(!strstr(payload, "\"d\""), "no private part is advertised");
        if (nsig == 1) {
                is_str(json_string_value(json_object_get(jws, "protected")),
                       "eyJhbGciOiJFUzUxMiIsImN0eSI6Imp3ay1zZXQranNvbiJ9",
                       "protected header {\"alg\":\"ES512\",\"cty\":\"jwk-set+json\"}");
        }

        /* tangd on the same directory: the same bytes except the signatures. */
        if (access(TANGD, X_OK) == 0) {
                _cleanup_free_ char *req = tap_strf("%s/req", root), *out = NULL,
                                    *mine = strdup(adv);
                char *body;
                char *argv[] = { TANGD, (char *)dir, NULL };

                tap_write_file(req, "GET /adv HTTP/1.1\r\nHost: x\r\n\r\n");
                tap_run_input(argv, req, &out);
                body = out ? strstr(out, "\r\n\r\n") : NULL;
                ok(body != NULL, "tangd answered /adv");
                if (body) {
                        body += 4;
                        /* tangd's log line (stderr) may follow the body: compare a prefix. */
                        blank_signatures(body);
                        blank_signatures(mine);
                        ok(strncmp(body, mine, strlen(mine)) == 0,
                           "the advertisement is tangd's, byte for byte but the signatures");
                        if (strncmp(body, mine, strlen(mine)) != 0)
                                tap_diag("tangd: %.300s\nvigil: %.300s", body, mine);
                }
        }
}

static void test_rotate_show(const char *root, const char *dir)
{
        _cleanup_(vg_tang_keys_freep) struct vg_tang_keys *k = NULL;
        _cleanup_free_ char *s = NULL, *e = NULL, *out = NULL, *out2 = NULL;
        struct vg_error err = { 0 };
        char before[8][128], after[8][128];
        const char *const *th;
        int nb = list_jwk(dir, before, 8);

        is_int(vg_tang_rotate(dir, &s, &e, &err), 0, "rotate: %s", vg_error_str(&err));
        is_int(list_jwk(dir, after, 8), nb + 2, "rotate adds a new pair");
        for (int i = 0; i < nb; i++) {
                _cleanup_free_ char *p = tap_strf("%s/.%s", dir, before[i]);
                ok(access(p, F_OK) == 0, "rotate hid %s as .%s", before[i], before[i]);
        }
        is_int(vg_tang_keys_load(dir, &k, &err), 0, "rotated directory loads: %s",
               vg_error_str(&err));
        if (!k)
                return;
        th = vg_tang_keys_thumbprints(k, false);
        ok(th[0] && th[1] && !th[2], "two advertised keys");
        ok(vg_tang_keys_adv_thp(k, s, NULL) != NULL, "/adv/{new signing thp} exists");
        ok(vg_tang_keys_adv_thp(k, e, NULL) == NULL, "/adv/{exchange thp} is 404");
        ok(vg_tang_keys_exchange_key(k, e) != NULL, "exchange key found by S256 kid");
        ok(vg_tang_keys_exchange_key(k, s) == NULL && vg_tang_keys_find(k, s) != NULL,
           "a signing kid is found, but not as an exchange key (403, not 404)");
        ok(vg_tang_keys_exchange_key(k, "nope") == NULL && !vg_tang_keys_find(k, "nope"),
           "unknown kid");
        /* The hidden keys: still usable for recovery, found by every hash. */
        th = vg_tang_keys_thumbprints(k, true);
        ok(th[0] && th[1] && !th[2], "two hidden keys");
        for (int i = 0; th[i]; i++) {
                const json_t *jwk = vg_tang_keys_find(k, th[i]);
                _cleanup_free_ char *s1 = NULL;
                vg_tang_thumbprint(jwk, "S1", &s1, &err);
                ok(vg_tang_keys_is_hidden(k, th[i]) && vg_tang_keys_find(k, s1) == jwk,
                   "hidden key %s found by its S1 thumbprint too", th[i]);
                if (jose_jwk_prm(NULL, jwk, true, "sign")) {
                        size_t l;
                        const char *a = vg_tang_keys_adv_thp(k, th[i], &l);
                        json_auto_t *j = a ? json_loads(a, 0, NULL) : NULL;
                        ok(j && json_array_size(json_object_get(j, "signatures")) == 2 &&
                               jose_jws_ver(NULL, j, NULL, jwk, false),
                           "/adv/{hidden thp} is signed by the advertised key and the hidden one");
                }
        }
        check_adv(root, dir, k);

        is_int(tap_runl(&out, cli, "tang", "show-keys", "--dir", dir, NULL), 0, "show-keys --dir");
        contains(out, K(tap_strf("%s signing advertised\n", s)),
                 "show-keys lists the new signing key");
        contains(out, K(tap_strf("%s exchange advertised\n", e)), "and the new exchange key");
        ok(!strstr(out, "hidden"), "hidden keys only with --hidden");
        is_int(tap_runl(&out2, cli, "tang", "show-keys", "--dir", dir, "--hidden", NULL), 0,
               "show-keys --hidden");
        for (int i = 0; i < nb; i++) {
                before[i][strlen(before[i]) - 4] = '\0';
                contains(out2, K(tap_strf("%s ", before[i])), "hidden key %s listed", before[i]);
        }
        contains(out2, " hidden\n", "marked hidden");
}

static void test_show_url(const char *root, const char *dir)
{
        _cleanup_free_ char *want = NULL, *got = NULL;
        int port = tap_free_port(), rc = -1;
        pid_t pid;

        if (access(TANGD, X_OK) != 0 || access("/usr/bin/socat", X_OK) != 0) {
                tap_skip("no tangd or socat", "show-keys URL against tangd");
                return;
        }
        (void)root;
        pid = fork();
        if (pid == 0) {
                char *listen = tap_strf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", port);
                char *exec = tap_strf("EXEC:" TANGD " %s", dir);
                int null = open("/dev/null", O_WRONLY);
                dup2(null, 2);
                execl("/usr/bin/socat", "socat", listen, exec, (char *)NULL);
                _exit(127);
        }
        tap_runl(&want, cli, "tang", "show-keys", "--dir", dir, NULL);
        for (int i = 0; i < 100 && rc != 0; i++) {
                free(got);
                got = NULL;
                rc = tap_runl(&got, cli, "tang", "show-keys",
                              K(tap_strf("http://127.0.0.1:%d/", port)), NULL);
                if (rc != 0)
                        usleep(50000);
        }
        is_int(rc, 0, "show-keys URL against tangd");
        /* Both list the advertised keys; order: the directory's (tangd's readdir order). */
        is_str(got, want, "show-keys URL prints what show-keys --dir prints");
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
}

static void test_backup(const char *root, const char *dir)
{
        _cleanup_free_ char *bk = tap_strf("%s/backup.json", root),
                            *dst = tap_strf("%s/restored", root);
        _cleanup_free_ char *out = NULL;
        char a[16][128], b[16][128];
        int na, nb;

        mkdir(dst, 0700);
        is_int(tap_runl(&out, cli, "tang", "backup", dir, bk, NULL), 0, "backup");
        is_int(tap_file_mode(bk), 0400, "the backup is 0400");
        free(out);
        is_int(tap_runl(&out, cli, "tang", "backup", dir, bk, NULL), 1,
               "backup refuses to overwrite");
        free(out);
        is_int(tap_runl(&out, cli, "tang", "restore", bk, dst, NULL), 0, "restore");
        na = list_jwk(dir, a, 16);
        nb = list_jwk(dst, b, 16);
        is_int(nb, na, "restore brings back every key (hidden ones too)");
        for (int i = 0; i < na && i < nb; i++) {
                _cleanup_free_ char *pa = tap_strf("%s/%s", dir, a[i]),
                                    *pb = tap_strf("%s/%s", dst, b[i]);
                _cleanup_free_ char *ta = tap_read_file(pa, NULL), *tb = tap_read_file(pb, NULL);
                is_str(b[i], a[i], "same name");
                ok(ta && tb && strcmp(ta, tb) == 0 && tap_file_mode(pa) == tap_file_mode(pb),
                   "%s: same bytes and mode", a[i]);
        }
        free(out);
        is_int(tap_runl(&out, cli, "tang", "restore", bk, dst, NULL), 1,
               "restore refuses to overwrite");
        contains(out, "exists already", "and says which key exists");
        {
                /* rotate never overwrites a hidden key of the same name either */
                _cleanup_free_ char *src = tap_strf("%s/%s", dst, b[nb - 1]);
                _cleanup_free_ char *cp = tap_strf("%s/.%s", dst, b[nb - 1]);
                struct vg_error err = { 0 };
                if (b[nb - 1][0] != '.') {
                        tap_copy_file(src, cp);
                        ok(vg_tang_rotate(dst, NULL, NULL, &err) < 0 &&
                               strstr(vg_error_str(&err), b[nb - 1]),
                           "rotate refuses to replace an existing hidden key: %s",
                           vg_error_str(&err));
                }
        }
}

static void test_purge(const char *root, const char *dir)
{
        _cleanup_(vg_tang_keys_freep) struct vg_tang_keys *k = NULL;
        _cleanup_free_ char *rec = tap_strf("%s/" VG_TANG_RECOVERIES_FILE, dir), *out = NULL;
        _cleanup_free_ char *copy = tap_strf("%s/purge", root),
                            *bk = tap_strf("%s/backup.json", root);
        struct vg_error err = { 0 };
        const char *hidden_exc = NULL;
        const struct vg_tang_key_info *info;
        size_t n;

        vg_tang_keys_load(dir, &k, &err);
        n = k ? vg_tang_keys_list(k, &info) : 0;
        for (size_t i = 0; i < n; i++)
                if (info[i].hidden && !info[i].signing)
                        hidden_exc = info[i].thp;
        ok(hidden_exc != NULL, "a hidden exchange key to purge");
        if (!hidden_exc)
                return;
        tap_write_file(rec,
                       K(tap_strf("{\"%s\": %lld}", hidden_exc, (long long)time(NULL) - 3600)));
        is_int(tap_runl(&out, cli, "tang", "purge-hidden", dir, NULL), 1,
               "purge-hidden refuses: a hidden key recovered a client an hour ago");
        contains(out, hidden_exc, "naming the key");
        ok(vg_tang_keys_thumbprints(k, true)[0] != NULL, "hidden keys still there");
        free(out);
        is_int(tap_runl(&out, cli, "tang", "purge-hidden", dir, "--window", "0", NULL), 0,
               "purge-hidden --window 0 purges");
        {
                char names[16][128];
                int m = list_jwk(dir, names, 16), hid = 0;
                for (int i = 0; i < m; i++)
                        hid += names[i][0] == '.';
                is_int(hid, 0, "no hidden key left");
                is_int(m, 2, "the advertised keys stay");
        }
        /* --force, and an old recovery outside the window */
        mkdir(copy, 0700);
        is_int(vg_tang_restore(bk, copy, &err), 4, "restore a copy with hidden keys");
        tap_write_file(K(tap_strf("%s/" VG_TANG_RECOVERIES_FILE, copy)),
                       K(tap_strf("{\"%s\": %lld}", hidden_exc, (long long)time(NULL) - 60)));
        ok(vg_tang_purge_hidden(copy, false, 86400, time(NULL), &err) == -EBUSY,
           "library: refused within a day");
        is_int(vg_tang_purge_hidden(copy, false, 30, time(NULL), &err), 2,
               "library: purged when the recovery is older than the window");
        is_int(vg_tang_restore(bk, K(tap_strf("%s", copy)), &err), -EEXIST,
               "restore into the purged copy refuses (advertised keys exist)");
        free(out);
        out = NULL;
        {
                _cleanup_free_ char *c2 = tap_strf("%s/purge2", root);
                mkdir(c2, 0700);
                vg_tang_restore(bk, c2, &err);
                tap_write_file(K(tap_strf("%s/" VG_TANG_RECOVERIES_FILE, c2)),
                               K(tap_strf("{\"%s\": %lld}", hidden_exc, (long long)time(NULL))));
                is_int(tap_runl(&out, cli, "tang", "purge-hidden", c2, "--force", NULL), 0,
                       "purge-hidden --force ignores recent recoveries");
        }
}

static void test_malformed(const char *root)
{
        struct {
                const char *name, *content, *why;
        } cases[] = {
                { "garbage.jwk", "garbage", "not JSON" },
                { "rsa.jwk", "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"d\":\"AQAB\"}",
                  "EC key" },
                { "pub.jwk", NULL, "not a private key" },
                { "offcurve.jwk", NULL, "not a valid EC key" },
                { "alg.jwk", NULL, "unsupported alg" },
        };
        json_auto_t *good = json_pack("{s:s}", "alg", "ES512");

        jose_jwk_gen(NULL, good);
        for (size_t i = 0; i < VG_ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *dir = tap_strf("%s/bad%zu", root, i);
                _cleanup_free_ char *path = tap_strf("%s/%s", dir, cases[i].name);
                _cleanup_(vg_tang_keys_freep) struct vg_tang_keys *k = NULL;
                struct vg_error err = { 0 };
                json_auto_t *j = json_deep_copy(good);
                _cleanup_free_ char *text = NULL, *out = NULL;

                mkdir(dir, 0700);
                if (i == 2)
                        json_object_del(j, "d");
                if (i == 3) /* x of the generator of another curve: not on P-521 */
                        json_object_set_new(j, "x", json_string("AQ"));
                if (i == 4)
                        json_object_set_new(j, "alg", json_string("RS256"));
                const char *const *skipped;
                size_t n_skipped = 0;

                text = cases[i].content ? strdup(cases[i].content) : json_dumps(j, 0);
                tap_write_file(path, text);
                is_int(vg_tang_keys_load(dir, &k, &err), 0,
                       "a directory with %s still loads, as in tangd", cases[i].name);
                skipped = k ? vg_tang_keys_skipped(k, &n_skipped) : NULL;
                ok(n_skipped == 1 &&
                       vg_tang_keys_list(k, &(const struct vg_tang_key_info *){ 0 }) == 0,
                   "%s is left out", cases[i].name);
                contains(n_skipped ? skipped[0] : "", cases[i].name, "the reason names the file");
                contains(n_skipped ? skipped[0] : "", cases[i].why, "and says what is wrong");
                is_int(tap_runl(&out, cli, "tang", "show-keys", "--dir", dir, NULL), 1,
                       "show-keys exits 1 on %s", cases[i].name);
        }
}

static void test_help(void)
{
        const char *verbs[] = {
                "keygen", "rotate", "show-keys", "backup", "restore", "purge-hidden"
        };

        for (size_t i = 0; i < VG_ARRAY_SIZE(verbs); i++) {
                _cleanup_free_ char *out = NULL;
                is_int(tap_runl(&out, cli, "tang", verbs[i], "--help", NULL), 0, "%s --help",
                       verbs[i]);
                contains(out, K(tap_strf("vigil tang %s", verbs[i])), "usage of %s", verbs[i]);
        }
        {
                _cleanup_free_ char *out = NULL;
                is_int(tap_runl(&out, cli, "tang", "keygen", NULL), 2,
                       "keygen without DIR is a usage error");
        }
}

int main(void)
{
        _cleanup_free_ char *root = tap_tmpdir(), *dir = NULL;

        cli = getenv("VIGIL_CLI");
        if (!cli)
                tap_bail("VIGIL_CLI is not set");
        dir = tap_strf("%s/db", root);
        mkdir(dir, 0700);
        test_keygen(dir);
        test_tangd_keys(root);
        test_rotate_show(root, dir);
        test_show_url(root, dir);
        test_backup(root, dir);
        test_purge(root, dir);
        test_malformed(root);
        test_help();
        return tap_done();
}
