/* vigil CLI: `vigil pin encrypt|decrypt`, clevis encrypt / clevis decrypt natively (tang, sss,
 * tpm2 pins; src/lib/pin.c): the same JWEs either way, errors that say which server failed how. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "commands.h"
#include "error.h"
#include "jwe.h"
#include "pin.h"

static void pin_help(FILE *out)
{
        fprintf(
            out,
            "Usage: vigil pin encrypt PIN CONFIG [-y] [OPTIONS] < PLAINTEXT > JWE\n"
            "       vigil pin decrypt [OPTIONS] < JWE > PLAINTEXT\n\n"
            "Encrypt and decrypt as clevis encrypt / clevis decrypt do, with the same JWEs\n"
            "(either tool decrypts the other's).\n\n"
            "Pins and their CONFIG (JSON):\n"
            "  tang  {\"url\":URL [,\"thp\":THUMBPRINT] [,\"adv\":FILE|OBJECT]}\n"
            "        a Tang server; thp (S256 or S1) or adv make its keys trusted,\n"
            "        otherwise -y is needed (or an answer on the terminal)\n"
            "  sss   {\"t\":N, \"pins\":{\"tang\":[CONFIG,...], \"tpm2\":CONFIG, \"sss\":...}}\n"
            "        Shamir secret sharing: any N of the pins decrypt\n"
            "  tpm2  {\"pcr_bank\":\"sha256\", \"pcr_ids\":\"0,7\", ...} sealed to the TPM\n\n"
            "Options:\n"
            "  -y               trust the advertisement's signing keys without asking\n"
            "  --timeout MS     per request to one server (default 10000)\n"
            "  --attempts N     per server, for refused connections, timeouts and server\n"
            "                   errors, with backoff 250 ms, 500 ms, ... (default 3)\n"
            "  -h, --help       this text\n\n"
            "Decryption asks every server of an sss JWE at once and stops when enough\n"
            "shares are decrypted.\n\n"
            "Exit status: 0 success, 1 failure, 2 bad command line.\n");
}

static int fail(const struct vg_error *err)
{
        fprintf(stderr, "vigil pin: %s\n", vg_error_str(err));
        return 1;
}

/* All of stdin, at most max bytes. */
static int read_all(FILE *in, size_t max, char **out, size_t *len)
{
        size_t cap = 4096, n = 0;
        char *buf = malloc(cap + 1), *nb;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                size_t k;

                if (n == cap) {
                        if (cap > max) {
                                free(buf);
                                return -EFBIG;
                        }
                        cap *= 2;
                        nb = realloc(buf, cap + 1);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                }
                k = fread(buf + n, 1, cap - n, in);
                n += k;
                if (k == 0)
                        break;
        }
        if (ferror(in) || n > max) {
                free(buf);
                return ferror(in) ? -EIO : -EFBIG;
        }
        buf[n] = '\0';
        *out = buf;
        *len = n;
        return 0;
}

static int parse_uint(const char *opt, const char *v, unsigned min, unsigned max, unsigned *out)
{
        char *end;
        unsigned long n;

        errno = 0;
        n = v ? strtoul(v, &end, 10) : 0;
        if (!v || errno || end == v || *end || n < min || n > max)
                return cli_usage_error("pin", "%s needs a number from %u to %u", opt, min, max);
        *out = (unsigned)n;
        return 0;
}

/* Options common to both verbs; positional arguments are collected into pos. */
static int parse(int argc, char **argv, struct vg_pin_opts *opts, const char **pos, int *npos,
                 int maxpos)
{
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-y") == 0) {
                        opts->trust = true;
                } else if (strcmp(argv[i], "--timeout") == 0) {
                        if (parse_uint("--timeout", i + 1 < argc ? argv[i + 1] : NULL, 1, 3600000,
                                       &opts->timeout_ms) != 0)
                                return 2;
                        i++;
                } else if (strcmp(argv[i], "--attempts") == 0) {
                        if (parse_uint("--attempts", i + 1 < argc ? argv[i + 1] : NULL, 1, 100,
                                       &opts->attempts) != 0)
                                return 2;
                        i++;
                } else if (argv[i][0] == '-' && argv[i][1]) {
                        return cli_usage_error("pin", "unknown option '%s'", argv[i]);
                } else if (*npos == maxpos) {
                        return cli_usage_error("pin", "%s: unexpected argument '%s'", argv[0],
                                               argv[i]);
                } else {
                        pos[(*npos)++] = argv[i];
                }
        }
        return 0;
}

static int pin_encrypt(int argc, char **argv)
{
        struct vg_pin_opts opts = { 0 };
        struct vg_error err = { 0 };
        _cleanup_free_ char *pt = NULL, *jwe = NULL;
        const char *pos[2];
        json_auto_t *cfg = NULL;
        json_error_t jerr;
        size_t pt_len = 0;
        int npos = 0, r;

        r = parse(argc, argv, &opts, pos, &npos, 2);
        if (r)
                return r;
        if (npos != 2)
                return cli_usage_error("pin", "encrypt needs a PIN and its CONFIG");
        cfg = json_loads(pos[1], 0, &jerr);
        if (!json_is_object(cfg))
                return cli_usage_error("pin", "CONFIG is not a JSON object: %s",
                                       cfg ? "another JSON value" : jerr.text);
        /* As clevis: ask on the terminal only when there is someone to ask. */
        opts.ask = isatty(STDERR_FILENO);
        r = read_all(stdin, VG_JWE_MAX_BYTES, &pt, &pt_len);
        if (r < 0) {
                vg_error_set(&err, r, "cannot read the plaintext from stdin: %s",
                             r == -EFBIG ? "more than 4 MiB" : strerror(-r));
                return fail(&err);
        }
        r = vg_pin_encrypt(pos[0], cfg, pt, pt_len, &opts, &jwe, &err);
        explicit_bzero(pt, pt_len);
        if (r < 0)
                return fail(&err);
        fputs(jwe, stdout);
        if (isatty(STDOUT_FILENO))
                fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : 1;
}

static int pin_decrypt(int argc, char **argv)
{
        struct vg_pin_opts opts = { 0 };
        struct vg_error err = { 0 };
        _cleanup_free_ char *in = NULL;
        _cleanup_free_ uint8_t *pt = NULL;
        const char *pos[1];
        size_t in_len = 0, pt_len = 0;
        int npos = 0, r;

        r = parse(argc, argv, &opts, pos, &npos, 0);
        if (r)
                return r;
        r = read_all(stdin, VG_JWE_MAX_BYTES, &in, &in_len);
        if (r < 0) {
                vg_error_set(&err, r, "cannot read the JWE from stdin: %s",
                             r == -EFBIG ? "more than 4 MiB" : strerror(-r));
                return fail(&err);
        }
        r = vg_pin_decrypt(in, in_len, &opts, &pt, &pt_len, &err);
        if (r < 0)
                return fail(&err);
        r = fwrite(pt, 1, pt_len, stdout) == pt_len && fflush(stdout) == 0 ? 0 : 1;
        explicit_bzero(pt, pt_len);
        return r;
}

int cmd_pin(int argc, char **argv)
{
        const char *verb = argc > 1 ? argv[1] : NULL;

        for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                        pin_help(stdout);
                        return 0;
                }
        if (!verb) {
                pin_help(stderr);
                return 2;
        }
        if (strcmp(verb, "encrypt") == 0)
                return pin_encrypt(argc - 1, argv + 1);
        if (strcmp(verb, "decrypt") == 0)
                return pin_decrypt(argc - 1, argv + 1);
        return cli_usage_error("pin", "unknown command '%s' (encrypt or decrypt)", verb);
}
