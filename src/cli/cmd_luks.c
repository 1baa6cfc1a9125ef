/* vigil CLI: `vigil luks`, Clevis LUKS2 bindings with clevis luks's commands and flags (bind,
 * unbind, list, pass, edit, regen) over src/lib/luks.c; tokens are interchangeable with clevis's.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cleanup.h"
#include "commands.h"
#include "error.h"
#include "luks.h"

/* Largest key file read, as cryptsetup's default --keyfile-size limit (8 MiB). */
#define MAX_KEYFILE (8u * 1024 * 1024)
/* Longest passphrase read from a terminal or standard input (cryptsetup's is 512). */
#define MAX_PASSPHRASE 512

static void luks_help(FILE *out)
{
        fputs("Usage: vigil luks bind -d DEV [-s SLOT] [-k KEYFILE|-] [-t TOKEN_ID] [-y] [-f] PIN "
              "CFG\n"
              "       vigil luks unbind -d DEV -s SLOT [-f]\n"
              "       vigil luks list -d DEV [-s SLOT]\n"
              "       vigil luks pass -d DEV -s SLOT\n"
              "       vigil luks edit -d DEV -s SLOT -c CFG [-f]\n"
              "       vigil luks regen -d DEV -s SLOT [-q]\n\n"
              "Clevis bindings of LUKS2 volumes (clevis luks's commands and flags): a keyslot\n"
              "with a random passphrase, encrypted with a pin (tang, sss, tpm2) and stored as a\n"
              "LUKS2 token of type \"clevis\"; clevis and vigil read each other's bindings.\n\n"
              "Commands:\n"
              "  bind      unlock DEV with an existing passphrase (asked on the terminal, or\n"
              "            -k KEYFILE, or -k - for one line of standard input), add a new random\n"
              "            passphrase in a free keyslot (or -s SLOT) and store it encrypted with\n"
              "            PIN CFG as a token (first free id, or -t TOKEN_ID); -y trusts the\n"
              "            Tang advertisement's signing keys without asking; -f is accepted\n"
              "  unbind    destroy keyslot SLOT and its clevis token (asks unless -f); the\n"
              "            last keyslot of a volume is never removed\n"
              "  list      print each binding as clevis luks list does: SLOT: PIN 'CFG'\n"
              "  pass      print the passphrase the binding of SLOT recovers (no newline)\n"
              "  edit      rebind SLOT with the configuration CFG (same pin): a new passphrase\n"
              "            in the same keyslot, the token replaced; refuses an unchanged\n"
              "            configuration unless -f\n"
              "  regen     rebind SLOT with its current configuration, to the servers'\n"
              "            current keys (after a Tang key rotation); asks unless -q\n"
              "  -h, --help  this text (also after each command)\n\n"
              "Keyslots for bindings use PBKDF2-SHA256 with 1000 iterations, as clevis's: the\n"
              "passphrase is a random 320-bit key.\n\n"
              "Exit status: 0 success, 1 failure, 2 bad command line.\n",
              out);
}

static int fail(const struct vg_error *err)
{
        fprintf(stderr, "vigil luks: %s\n", vg_error_str(err));
        return 1;
}

static bool parse_num(const char *s, int *out)
{
        char *end;
        long v;

        if (!s || !*s)
                return false;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || v < 0 || v > 1000)
                return false;
        *out = (int)v;
        return true;
}

static int parse_cfg(const char *text, json_t **cfg)
{
        json_error_t jerr;

        *cfg = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(*cfg)) {
                json_decref(*cfg);
                *cfg = NULL;
                fprintf(stderr,
                        "vigil luks: configuration is malformed; it should be a JSON object%s%s\n",
                        jerr.text[0] ? ": " : "", jerr.text);
                return -EINVAL;
        }
        return 0;
}

/* Ask a yes/no question on the terminal (clevis's [ynYN]): 1 yes, 0 no, -1 no terminal. */
static int confirm(const char *question)
{
        FILE *tty = fopen("/dev/tty", "r+");
        char line[16] = "";
        bool yes;

        if (!tty)
                return -1;
        fprintf(tty, "%s [ynYN] ", question);
        fflush(tty);
        yes = fgets(line, sizeof(line), tty) && (line[0] == 'y' || line[0] == 'Y') &&
              (line[1] == '\n' || line[1] == '\0');
        fclose(tty);
        return yes;
}

/* One line from f, without its newline; NULL at EOF or when longer than MAX_PASSPHRASE. */
static char *read_line(FILE *f)
{
        char *buf = calloc(1, MAX_PASSPHRASE + 2);
        size_t n;

        if (!buf)
                return NULL;
        if (!fgets(buf, MAX_PASSPHRASE + 2, f)) {
                free(buf);
                return NULL;
        }
        n = strlen(buf);
        if (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        else if (n > MAX_PASSPHRASE) {
                OPENSSL_cleanse(buf, n);
                free(buf);
                return NULL;
        }
        return buf;
}

/* The existing passphrase of bind: -k FILE (whole file, as cryptsetup --key-file reads it),
 * -k - (one line of standard input), or asked on the terminal without echo. */
static int existing_key(const char *keyspec, char **key, size_t *len)
{
        if (keyspec && strcmp(keyspec, "-") != 0) {
                _cleanup_close_ int fd = open(keyspec, O_RDONLY | O_CLOEXEC);
                char *buf = malloc(MAX_KEYFILE + 1);
                size_t n = 0;
                ssize_t r = 1;

                if (fd < 0 || !buf) {
                        fprintf(stderr, "vigil luks: cannot read key file '%s': %s\n", keyspec,
                                strerror(fd < 0 ? errno : ENOMEM));
                        free(buf);
                        return -1;
                }
                while (n <= MAX_KEYFILE && (r = read(fd, buf + n, MAX_KEYFILE + 1 - n)) > 0)
                        n += (size_t)r;
                if (r < 0 || n > MAX_KEYFILE || n == 0) {
                        fprintf(stderr, "vigil luks: key file '%s': %s\n", keyspec,
                                r < 0 ? strerror(errno)
                                : n   ? "larger than 8 MiB"
                                      : "empty");
                        OPENSSL_cleanse(buf, n);
                        free(buf);
                        return -1;
                }
                *key = buf;
                *len = n;
                return 0;
        }
        if (keyspec) {
                *key = read_line(stdin);
        } else {
                FILE *tty = fopen("/dev/tty", "r+");
                struct termios old, quiet;
                bool echo_off;

                if (!tty) {
                        fprintf(stderr, "vigil luks: no terminal to ask for the existing LUKS "
                                        "passphrase; give it with -k KEYFILE or -k -\n");
                        return -1;
                }
                fputs("Enter existing LUKS password: ", tty);
                fflush(tty);
                echo_off = tcgetattr(fileno(tty), &old) == 0;
                if (echo_off) {
                        quiet = old;
                        quiet.c_lflag &= ~(tcflag_t)ECHO;
                        tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
                }
                *key = read_line(tty);
                if (echo_off)
                        tcsetattr(fileno(tty), TCSAFLUSH, &old);
                fputs("\n", tty);
                fclose(tty);
        }
        if (!*key || !**key) {
                fprintf(stderr, "vigil luks: no existing passphrase given (or longer than %d)\n",
                        MAX_PASSPHRASE);
                free(*key);
                *key = NULL;
                return -1;
        }
        *len = strlen(*key);
        return 0;
}

/* Options shared by the commands; which apply is checked per command. */
struct args {
        const char *dev, *keyspec, *cfg_text;
        int slot, token;
        bool yes, force, quiet;
        int npos;
        char **pos;
};

static int parse_args(const char *verb, const char *optstring, int argc, char **argv,
                      struct args *a)
{
        static const struct option longopts[] = { { "help", no_argument, NULL, 'h' },
                                                  { NULL, 0, NULL, 0 } };
        int c;

        *a = (struct args){ .slot = VG_LUKS_ANY, .token = VG_LUKS_ANY };
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
                switch (c) {
                case 'h':
                        luks_help(stdout);
                        return 1;
                case 'd':
                        a->dev = optarg;
                        break;
                case 's':
                        if (!parse_num(optarg, &a->slot))
                                return cli_usage_error("luks",
                                                       "%s: -s wants a keyslot number, "
                                                       "not '%s'",
                                                       verb, optarg);
                        break;
                case 't':
                        if (!parse_num(optarg, &a->token))
                                return cli_usage_error("luks", "%s: -t wants a token id, not '%s'",
                                                       verb, optarg);
                        break;
                case 'k':
                        a->keyspec = optarg;
                        break;
                case 'c':
                        a->cfg_text = optarg;
                        break;
                case 'y':
                        a->yes = true;
                        break;
                case 'f':
                        a->force = true;
                        break;
                case 'q':
                        a->quiet = true;
                        break;
                case ':':
                        return cli_usage_error("luks", "%s: -%c needs an argument", verb, optopt);
                default:
                        return cli_usage_error("luks", "%s: unknown option '%s'", verb,
                                               argv[optind - 1]);
                }
        }
        a->pos = argv + optind;
        a->npos = argc - optind;
        if (!a->dev)
                return cli_usage_error("luks", "%s: did not specify a device (-d DEV)", verb);
        return 0;
}

static int need_slot(const char *verb, const struct args *a)
{
        if (a->slot == VG_LUKS_ANY)
                return cli_usage_error("luks", "%s: did not specify a slot (-s SLOT)", verb);
        if (a->npos != 0)
                return cli_usage_error("luks", "%s: unexpected argument '%s'", verb, a->pos[0]);
        return 0;
}

static int luks_bind(int argc, char **argv)
{
        _cleanup_(vg_luks_freep) struct vg_luks *luks = NULL;
        struct vg_error err = { 0 };
        struct vg_pin_opts opts = { 0 };
        struct args a;
        json_t *cfg = NULL;
        char *key = NULL;
        size_t key_len = 0;
        int r, slot = -1;

        r = parse_args("bind", "hd:s:k:t:yf", argc, argv, &a);
        if (r)
                return r == 1 ? 0 : r;
        if (a.npos != 2)
                return cli_usage_error("luks", "bind: wants PIN CFG after the options");
        if (parse_cfg(a.pos[1], &cfg) < 0)
                return 1;
        r = vg_luks_open(a.dev, &luks, &err);
        if (r >= 0 && existing_key(a.keyspec, &key, &key_len) < 0) {
                json_decref(cfg);
                return 1;
        }
        opts.trust = a.yes;
        opts.ask = !a.yes;
        if (r >= 0)
                r = vg_luks_bind(luks, a.slot, a.token, key, key_len, a.pos[0], cfg, &opts, &slot,
                                 &err);
        if (key) {
                OPENSSL_cleanse(key, key_len);
                free(key);
        }
        json_decref(cfg);
        return r < 0 ? fail(&err) : 0;
}

static int luks_unbind(int argc, char **argv)
{
        _cleanup_(vg_luks_freep) struct vg_luks *luks = NULL;
        struct vg_error err = { 0 };
        struct args a;
        int r;

        r = parse_args("unbind", "hd:s:f", argc, argv, &a);
        if (r)
                return r == 1 ? 0 : r;
        if ((r = need_slot("unbind", &a)))
                return r;
        if (vg_luks_open(a.dev, &luks, &err) < 0)
                return fail(&err);
        if (!a.force) {
                char q[512];

                fprintf(stderr, "The unbind operation will wipe a slot. This operation is "
                                "unrecoverable.\n");
                snprintf(q, sizeof(q), "Do you wish to erase LUKS slot %d on %s?", a.slot, a.dev);
                r = confirm(q);
                if (r < 0)
                        fprintf(stderr, "vigil luks: unbind: no terminal to confirm on; "
                                        "-f unbinds without asking\n");
                if (r <= 0)
                        return r < 0 ? 1 : 0;
        }
        return vg_luks_unbind(luks, a.slot, &err) < 0 ? fail(&err) : 0;
}

static void print_binding(const struct vg_luks_binding *b)
{
        _cleanup_free_ char *pin = NULL, *text = NULL;
        struct vg_error err = { 0 };
        json_t *cfg = NULL;

        if (vg_pin_config(b->jwe, strlen(b->jwe), &pin, &cfg, &err) < 0) {
                fprintf(stderr, "vigil luks: keyslot %d: %s\n", b->slot, vg_error_str(&err));
                return;
        }
        text = json_dumps(cfg, JSON_COMPACT);
        printf("%d: %s '%s'\n", b->slot, pin, text ? text : "");
        json_decref(cfg);
}

static int luks_list(int argc, char **argv)
{
        _cleanup_(vg_luks_freep) struct vg_luks *luks = NULL;
        struct vg_luks_binding *b = NULL;
        struct vg_error err = { 0 };
        char **errors = NULL;
        size_t n = 0;
        struct args a;
        int r, status = 0;

        r = parse_args("list", "hd:s:", argc, argv, &a);
        if (r)
                return r == 1 ? 0 : r;
        if (a.npos != 0)
                return cli_usage_error("luks", "list: unexpected argument '%s'", a.pos[0]);
        if (vg_luks_open(a.dev, &luks, &err) < 0)
                return fail(&err);
        if (a.slot != VG_LUKS_ANY) {
                struct vg_luks_binding one = { 0 };

                if (vg_luks_binding(luks, a.slot, &one, &err) < 0)
                        return fail(&err);
                print_binding(&one);
                vg_luks_binding_clear(&one);
                return 0;
        }
        if (vg_luks_list(luks, &b, &errors, &n, &err) < 0)
                return fail(&err);
        for (size_t i = 0; i < n; i++) {
                if (b[i].jwe) {
                        print_binding(&b[i]);
                } else {
                        fprintf(stderr, "vigil luks: %s\n", errors[i] ? errors[i] : "?");
                        status = 1;
                }
                vg_luks_binding_clear(&b[i]);
                free(errors[i]);
        }
        free(b);
        free(errors);
        return status;
}

static int luks_pass(int argc, char **argv)
{
        _cleanup_(vg_luks_freep) struct vg_luks *luks = NULL;
        struct vg_error err = { 0 };
        struct vg_pin_opts opts = { 0 };
        struct args a;
        char *pass = NULL;
        int r;

        r = parse_args("pass", "hd:s:", argc, argv, &a);
        if (r)
                return r == 1 ? 0 : r;
        if ((r = need_slot("pass", &a)))
                return r;
        if (vg_luks_open(a.dev, &luks, &err) < 0 ||
            vg_luks_pass(luks, a.slot, &opts, &pass, &err) < 0)
                return fail(&err);
        fputs(pass, stdout);
        fflush(stdout);
        OPENSSL_cleanse(pass, strlen(pass));
        free(pass);
        return 0;
}

static int luks_edit(int argc, char **argv, bool regen)
{
        _cleanup_(vg_luks_freep) struct vg_luks *luks = NULL;
        _cleanup_free_ char *pin = NULL, *text = NULL;
        struct vg_luks_binding b = { 0 };
        struct vg_error err = { 0 };
        struct vg_pin_opts opts = { .trust = true }; /* clevis passes -y when rebinding */
        json_t *cur = NULL, *cfg = NULL;
        const char *verb = regen ? "regen" : "edit";
        struct args a;
        int r;

        r = parse_args(verb, regen ? "hd:s:q" : "hd:s:c:f", argc, argv, &a);
        if (r)
                return r == 1 ? 0 : r;
        if ((r = need_slot(verb, &a)))
                return r;
        if (!regen && !a.cfg_text)
                return cli_usage_error("luks", "edit: wants the new configuration (-c CFG)");
        if (!regen && parse_cfg(a.cfg_text, &cfg) < 0)
                return 1;
        r = vg_luks_open(a.dev, &luks, &err);
        if (r >= 0)
                r = vg_luks_binding(luks, a.slot, &b, &err);
        if (r >= 0) {
                r = vg_pin_config(b.jwe, strlen(b.jwe), &pin, &cur, &err);
                if (r < 0)
                        vg_error_prefix(&err, "%s: keyslot %d: ", a.dev, a.slot);
        }
        vg_luks_binding_clear(&b);
        if (r < 0) {
                json_decref(cfg);
                return fail(&err);
        }
        text = json_dumps(cur, JSON_COMPACT);
        if (regen) {
                printf("Regenerating binding (device %s, slot %d):\nPin: %s, Config: '%s'\n", a.dev,
                       a.slot, pin, text ? text : "");
                fflush(stdout);
                if (!a.quiet) {
                        int yes = confirm("Do you want to proceed?");

                        if (yes < 0) {
                                fprintf(stderr, "vigil luks: regen: no terminal to confirm on; "
                                                "-q regenerates without asking\n");
                                r = -1;
                        }
                        if (yes <= 0)
                                goto done;
                }
        } else {
                if (json_equal(cur, cfg) && !a.force) {
                        fprintf(stderr,
                                "vigil luks: %s: keyslot %d: no changes detected; "
                                "exiting (-f rebinds anyway)\n",
                                a.dev, a.slot);
                        r = -1;
                        goto done;
                }
                printf("Updating binding...\n");
                fflush(stdout);
        }
        r = vg_luks_rebind(luks, a.slot, pin, regen ? cur : cfg, &opts, &err);
        if (r < 0)
                fail(&err);
        else
                fprintf(stderr, "Binding %s successfully\n", regen ? "regenerated" : "edited");
done:
        json_decref(cur);
        json_decref(cfg);
        return r < 0 ? 1 : 0;
}

int cmd_luks(int argc, char **argv)
{
        const char *verb = argc > 1 ? argv[1] : NULL;

        if (!verb)
                return cli_usage_error("luks", "missing command");
        if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0) {
                luks_help(stdout);
                return 0;
        }
        if (strcmp(verb, "bind") == 0)
                return luks_bind(argc - 1, argv + 1);
        if (strcmp(verb, "unbind") == 0)
                return luks_unbind(argc - 1, argv + 1);
        if (strcmp(verb, "list") == 0)
                return luks_list(argc - 1, argv + 1);
        if (strcmp(verb, "pass") == 0)
                return luks_pass(argc - 1, argv + 1);
        if (strcmp(verb, "edit") == 0)
                return luks_edit(argc - 1, argv + 1, false);
        if (strcmp(verb, "regen") == 0)
                return luks_edit(argc - 1, argv + 1, true);
        return cli_usage_error("luks", "unknown command '%s'", verb);
}
