/* vigil CLI: `vigil tang`, the Tang key-management procedures (keygen, rotate, show-keys,
 * backup, restore, purge-hidden) on a tang key directory, one command each (src/lib/tang_keys.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jose/jose.h>

#include "cleanup.h"
#include "commands.h"
#include "error.h"
#include "http_client.h"
#include "tang_keys.h"

#define DEFAULT_WINDOW_DAYS 30

static void tang_help(FILE *out)
{
        fprintf(
            out,
            "Usage: vigil tang keygen DIR\n"
            "       vigil tang rotate DIR\n"
            "       vigil tang show-keys [--dir DIR [--hidden] | URL]\n"
            "       vigil tang backup DIR FILE\n"
            "       vigil tang restore FILE DIR\n"
            "       vigil tang purge-hidden DIR [--force] [--window DAYS]\n\n"
            "Manage a Tang key directory (the layout of tangd: *.jwk advertised, .*.jwk\n"
            "hidden but still used for recovery; file names are S256 thumbprints).\n\n"
            "Commands:\n"
            "  keygen DIR          create an ES512 signing key and an ECMR exchange key\n"
            "                      (mode 0440, never overwriting) and print their thumbprints\n"
            "  rotate DIR          hide every advertised key and create a new pair\n"
            "  show-keys           print one line per key: THUMBPRINT signing|exchange\n"
            "                      advertised|hidden; from DIR (hidden keys with --hidden) or\n"
            "                      from the advertisement of the server at URL\n"
            "  backup DIR FILE     save all keys (names, modes, bytes) in FILE (new, 0400)\n"
            "  restore FILE DIR    put the keys of FILE back; refuses to overwrite a key\n"
            "  purge-hidden DIR    delete the hidden keys; refuses while one of them recovered\n"
            "                      a client within --window DAYS (default %d) according to\n"
            "                      DIR/" VG_TANG_RECOVERIES_FILE ", unless --force\n"
            "  -h, --help          this text (also after each command)\n\n"
            "Exit status: 0 success, 1 failure, 2 bad command line.\n",
            DEFAULT_WINDOW_DAYS);
}

static bool want_help(int argc, char **argv)
{
        for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
                        return true;
        return false;
}

static int fail(const struct vg_error *err)
{
        fprintf(stderr, "vigil tang: %s\n", vg_error_str(err));
        return 1;
}

static int tang_keygen(int argc, char **argv, bool rotate)
{
        _cleanup_free_ char *s = NULL, *e = NULL;
        struct vg_error err = { 0 };
        int r;

        if (argc != 2 || argv[1][0] == '-')
                return cli_usage_error("tang", "%s takes exactly one key directory", argv[0]);
        r = rotate ? vg_tang_rotate(argv[1], &s, &e, &err) : vg_tang_keygen(argv[1], &s, &e, &err);
        if (r < 0)
                return fail(&err);
        printf("%s signing\n%s exchange\n", s, e);
        return 0;
}

static int show_dir(const char *dir, bool hidden)
{
        _cleanup_(vg_tang_keys_freep) struct vg_tang_keys *k = NULL;
        const struct vg_tang_key_info *info;
        struct vg_error err = { 0 };
        const char *const *skipped;
        size_t n, n_skipped;

        if (vg_tang_keys_load(dir, &k, &err) < 0)
                return fail(&err);
        /* The server leaves these out too; say so, and fail so that scripts notice. */
        skipped = vg_tang_keys_skipped(k, &n_skipped);
        for (size_t i = 0; i < n_skipped; i++)
                fprintf(stderr, "vigil tang: %s: not a usable key, left out: %s\n", dir,
                        skipped[i]);
        n = vg_tang_keys_list(k, &info);
        for (size_t i = 0; i < n; i++)
                if (!info[i].hidden)
                        printf("%s %s advertised\n", info[i].thp,
                               info[i].signing ? "signing" : "exchange");
        for (size_t i = 0; hidden && i < n; i++)
                if (info[i].hidden)
                        printf("%s %s hidden\n", info[i].thp,
                               info[i].signing ? "signing" : "exchange");
        return n_skipped ? 1 : 0;
}

/* As tang-show-keys: fetch /adv, take the JWK set of its payload. Unlike it, check that the
 * advertisement is signed by one of its own verify keys before printing anything. */
static int show_url(const char *url)
{
        struct vg_http_client_request req = { .method = "GET" };
        struct vg_http_client_config cfg = { .timeout_ms = 10000 };
        struct vg_http_response *resp = NULL;
        _cleanup_free_ char *adv_url = NULL, *payload = NULL;
        json_auto_t *jws = NULL, *set = NULL, *ver = json_array();
        struct vg_error err = { 0 };
        json_t *keys, *jwk;
        size_t len, i, ulen = strlen(url);
        int rc = 1;

        while (ulen && url[ulen - 1] == '/')
                ulen--;
        if (asprintf(&adv_url, "%.*s/adv", (int)ulen, url) < 0 || !ver)
                return 1;
        req.url = adv_url;
        if (vg_http_fetch(&cfg, &req, &resp, &err) < 0)
                return fail(&err);
        if (resp->status != 200) {
                fprintf(stderr, "vigil tang: %s: HTTP %d\n", adv_url, resp->status);
                goto out;
        }
        jws = vg_http_response_json(resp, &err);
        if (!jws) {
                fprintf(stderr, "vigil tang: %s: %s\n", adv_url, vg_error_str(&err));
                goto out;
        }
        len = jose_b64_dec(json_object_get(jws, "payload"), NULL, 0);
        if (len == SIZE_MAX || len > 1024 * 1024 || !(payload = calloc(1, len + 1)) ||
            jose_b64_dec(json_object_get(jws, "payload"), payload, len) != len) {
                fprintf(stderr, "vigil tang: %s: the advertisement has no valid payload\n",
                        adv_url);
                goto out;
        }
        set = json_loads(payload, 0, NULL);
        keys = json_object_get(set, "keys");
        if (!json_is_array(keys)) {
                fprintf(stderr, "vigil tang: %s: the payload is not a JWK set ({\"keys\":[...]})\n",
                        adv_url);
                goto out;
        }
        json_array_foreach (keys, i, jwk)
                if (jose_jwk_prm(NULL, jwk, true, "verify"))
                        json_array_append(ver, jwk);
        if (json_array_size(ver) == 0 || !jose_jws_ver(NULL, jws, NULL, ver, false)) {
                fprintf(stderr,
                        "vigil tang: %s: the advertisement is not signed by any of its keys\n",
                        adv_url);
                goto out;
        }
        json_array_foreach (keys, i, jwk) {
                _cleanup_free_ char *thp = NULL;
                bool sig = jose_jwk_prm(NULL, jwk, true, "verify");

                if (!sig && !jose_jwk_prm(NULL, jwk, true, "deriveKey"))
                        continue;
                if (vg_tang_thumbprint(jwk, "S256", &thp, &err) < 0) {
                        fprintf(stderr, "vigil tang: %s: keys[%zu]: %s\n", adv_url, i,
                                vg_error_str(&err));
                        goto out;
                }
                printf("%s %s advertised\n", thp, sig ? "signing" : "exchange");
        }
        rc = 0;
out:
        vg_http_response_free(resp);
        return rc;
}

static int tang_show(int argc, char **argv)
{
        const char *dir = NULL, *url = NULL;
        bool hidden = false;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--hidden") == 0)
                        hidden = true;
                else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
                        dir = argv[++i];
                else if (strncmp(argv[i], "--dir=", 6) == 0)
                        dir = argv[i] + 6;
                else if (argv[i][0] != '-' && !url)
                        url = argv[i];
                else
                        return cli_usage_error("tang", "show-keys: unexpected argument '%s'",
                                               argv[i]);
        }
        if (!!dir == !!url)
                return cli_usage_error("tang", "show-keys needs either --dir DIR or a URL");
        if (url && hidden)
                return cli_usage_error("tang", "show-keys: --hidden needs --dir (a server does not "
                                               "advertise hidden keys)");
        return dir ? show_dir(dir, hidden) : show_url(url);
}

static int tang_backup(int argc, char **argv, bool restore)
{
        struct vg_error err = { 0 };
        int r;

        if (argc != 3)
                return cli_usage_error("tang", "%s takes two arguments: %s", argv[0],
                                       restore ? "FILE DIR" : "DIR FILE");
        r = restore ? vg_tang_restore(argv[1], argv[2], &err)
                    : vg_tang_backup(argv[1], argv[2], &err);
        if (r < 0)
                return fail(&err);
        printf("%s %d key%s\n", restore ? "restored" : "backed up", r, r == 1 ? "" : "s");
        return 0;
}

static int tang_purge(int argc, char **argv)
{
        const char *dir = NULL;
        bool force = false;
        long days = DEFAULT_WINDOW_DAYS;
        struct vg_error err = { 0 };
        int r;

        for (int i = 1; i < argc; i++) {
                const char *v = NULL;

                if (strcmp(argv[i], "--force") == 0) {
                        force = true;
                        continue;
                }
                if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
                        v = argv[++i];
                else if (strncmp(argv[i], "--window=", 9) == 0)
                        v = argv[i] + 9;
                if (v) {
                        char *end;
                        errno = 0;
                        days = strtol(v, &end, 10);
                        if (errno || end == v || *end || days < 0 || days > 36500)
                                return cli_usage_error("tang",
                                                       "purge-hidden: --window expects days "
                                                       "(0..36500), found '%s'",
                                                       v);
                        continue;
                }
                if (argv[i][0] == '-' || dir)
                        return cli_usage_error("tang", "purge-hidden: unexpected argument '%s'",
                                               argv[i]);
                dir = argv[i];
        }
        if (!dir)
                return cli_usage_error("tang", "purge-hidden needs the key directory");
        r = vg_tang_purge_hidden(dir, force, (time_t)days * 86400, time(NULL), &err);
        if (r < 0)
                return fail(&err);
        printf("removed %d hidden key%s\n", r, r == 1 ? "" : "s");
        return 0;
}

int cmd_tang(int argc, char **argv)
{
        const char *verb = argc >= 2 ? argv[1] : NULL;

        if (!verb || strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0) {
                tang_help(verb ? stdout : stderr);
                return verb ? 0 : 2;
        }
        if (want_help(argc - 1, argv + 1)) {
                tang_help(stdout);
                return 0;
        }
        if (strcmp(verb, "keygen") == 0 || strcmp(verb, "rotate") == 0)
                return tang_keygen(argc - 1, argv + 1, verb[0] == 'r');
        if (strcmp(verb, "show-keys") == 0)
                return tang_show(argc - 1, argv + 1);
        if (strcmp(verb, "backup") == 0 || strcmp(verb, "restore") == 0)
                return tang_backup(argc - 1, argv + 1, verb[0] == 'r');
        if (strcmp(verb, "purge-hidden") == 0)
                return tang_purge(argc - 1, argv + 1);
        return cli_usage_error("tang",
                               "unknown command '%s' (expected keygen, rotate, show-keys, backup, "
                               "restore or purge-hidden)",
                               verb);
}
