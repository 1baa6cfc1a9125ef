/* vigil CLI: `vigil ca init|issue|show`, a small CA that lays out Keylime's cv_ca directory for
 * the daemons' mTLS, as keylime_ca does for Keylime. The work is in src/lib/ca.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca.h"
#include "cleanup.h"
#include "commands.h"
#include "error.h"

#define MAX_SANS     64
#define MAX_PASSWORD 1024

/* --- a small option parser: "--opt VALUE", "--opt=VALUE", "--", -h/--help --------------- */

enum {
        OPT_END = -1,
        OPT_ARG = -2,   /* a positional argument, in it->value */
        OPT_ERROR = -3, /* already reported; exit 2 */
        OPT_HELP = -4,
};

struct opt {
        const char *name;
        bool has_value;
        int id;
};

struct opt_iter {
        const char *cmd; /* "ca init", for messages */
        char **argv;
        int argc, i;
        const struct opt *opts;
        size_t n_opts;
        bool only_args; /* after "--" */
        const char *value;
};

static int opt_next(struct opt_iter *it)
{
        const char *a, *eq;
        size_t len;

        if (it->i >= it->argc)
                return OPT_END;
        a = it->value = it->argv[it->i++];
        if (it->only_args || a[0] != '-' || a[1] == '\0')
                return OPT_ARG;
        if (strcmp(a, "--") == 0) {
                it->only_args = true;
                return opt_next(it);
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
                return OPT_HELP;
        eq = strchr(a, '=');
        len = eq ? (size_t)(eq - a) : strlen(a);
        for (size_t k = 0; a[1] == '-' && k < it->n_opts; k++) {
                const struct opt *o = &it->opts[k];

                if (strlen(o->name) != len || strncmp(o->name, a, len) != 0)
                        continue;
                if (!o->has_value && eq) {
                        cli_usage_error(it->cmd, "option %s takes no value, found '%s'", o->name,
                                        eq + 1);
                        return OPT_ERROR;
                }
                if (o->has_value && eq) {
                        it->value = eq + 1;
                } else if (o->has_value) {
                        if (it->i >= it->argc) {
                                cli_usage_error(it->cmd,
                                                "option %s: expected a value, found the end of "
                                                "the command line",
                                                o->name);
                                return OPT_ERROR;
                        }
                        it->value = it->argv[it->i++];
                }
                return o->id;
        }
        cli_usage_error(it->cmd, "unknown option '%.*s'", (int)len, a);
        return OPT_ERROR;
}

/* 0, or the exit status of a usage error. */
static int parse_days(const char *cmd, const char *opt, const char *s, unsigned *out)
{
        char *end;
        unsigned long v = 0;

        errno = 0;
        if (s[0] >= '0' && s[0] <= '9')
                v = strtoul(s, &end, 10);
        if (!(s[0] >= '0' && s[0] <= '9') || errno || *end || v == 0 || v > VG_CA_MAX_DAYS)
                return cli_usage_error(cmd,
                                       "%s: expected a whole number of days from 1 to %u, "
                                       "found '%s'",
                                       opt, VG_CA_MAX_DAYS, s);
        *out = (unsigned)v;
        return 0;
}

struct san_list {
        char *items[MAX_SANS + 1]; /* NULL-terminated, for vg_ca_issue_params.sans */
        size_t n;
};

static void san_list_free(struct san_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i]);
        l->n = 0;
}

/* --san takes one SAN or a comma-separated list; checked here so a typo is a usage error. */
static int san_list_add(const char *cmd, struct san_list *l, const char *arg)
{
        const char *p = arg;
        struct vg_error err = { 0 };

        for (;;) {
                size_t len = strcspn(p, ",");
                char *item;

                if (len == 0)
                        return cli_usage_error(cmd,
                                               "--san: expected IP:ADDRESS or DNS:NAME, found an "
                                               "empty entry in '%s'",
                                               arg);
                if (l->n == MAX_SANS)
                        return cli_usage_error(cmd, "--san: expected at most %d names, found more",
                                               MAX_SANS);
                item = strndup(p, len);
                if (!item) {
                        fprintf(stderr, "vigil %s: out of memory\n", cmd);
                        return 1;
                }
                l->items[l->n++] = item;
                if (vg_ca_san_validate(item, &err) < 0)
                        return cli_usage_error(cmd, "--san: %s", vg_error_str(&err));
                if (!p[len])
                        return 0;
                p += len + 1;
        }
}

/* The first line of FILE; 0 or exit status 1. A password never goes on the command line,
 * where every user could read it in /proc. */
static int read_password(const char *cmd, const char *path, struct vg_secret *out)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t n = 0;

        if (fd < 0) {
                fprintf(stderr, "vigil %s: %s: cannot read the password file: %s\n", cmd, path,
                        strerror(errno));
                return 1;
        }
        out->len = MAX_PASSWORD + 2;
        out->p = calloc(1, out->len);
        if (!out->p) {
                out->len = 0;
                fprintf(stderr, "vigil %s: out of memory\n", cmd);
                return 1;
        }
        while (n < MAX_PASSWORD + 1) {
                ssize_t got = read(fd, out->p + n, MAX_PASSWORD + 1 - n);

                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        fprintf(stderr, "vigil %s: %s: cannot read the password file: %s\n", cmd,
                                path, strerror(errno));
                        return 1;
                }
                if (got == 0)
                        break;
                n += (size_t)got;
        }
        out->p[strcspn((char *)out->p, "\r\n")] = '\0';
        if (n > MAX_PASSWORD) {
                fprintf(stderr,
                        "vigil %s: %s: expected a password of at most %d bytes, found more\n", cmd,
                        path, MAX_PASSWORD);
                return 1;
        }
        if (!out->p[0]) {
                fprintf(stderr,
                        "vigil %s: %s: expected a password on the first line, found "
                        "an empty line\n",
                        cmd, path);
                return 1;
        }
        return 0;
}

static int fail(const char *cmd, const struct vg_error *err, const char *exists_hint)
{
        fprintf(stderr, "vigil %s: %s", cmd, vg_error_str(err));
        if (err->code == -EEXIST && exists_hint)
                fprintf(stderr, "; %s", exists_hint);
        fputc('\n', stderr);
        return 1;
}

static const char *fmt_time(time_t t, char buf[static 32])
{
        struct tm tm;

        if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%d %H:%M:%S UTC", &tm))
                snprintf(buf, 32, "@%lld", (long long)t);
        return buf;
}

static const char *usage_of(const struct vg_ca_cert_info *ci)
{
        if (ci->is_ca)
                return "certificate authority";
        if (ci->server_auth && ci->client_auth)
                return "server and client (serverAuth, clientAuth)";
        if (ci->server_auth)
                return "server (serverAuth)";
        if (ci->client_auth)
                return "client (clientAuth)";
        return "neither server nor client (no TLS extendedKeyUsage)";
}

static void print_cert(const char *dir, const struct vg_ca_cert_info *ci)
{
        char a[32], b[32];

        printf("%s: %s/%s\n", ci->name, dir, ci->file);
        if (ci->status != VG_CA_CERT_UNREADABLE) {
                printf("  subject   %s\n", ci->subject);
                printf("  issuer    %s\n", ci->issuer);
                printf("  usage     %s\n", usage_of(ci));
                if (!ci->is_ca || ci->sans[0])
                        printf("  SANs      %s\n", ci->sans[0] ? ci->sans : "none");
                printf("  serial    %s\n", ci->serial);
                printf("  valid     %s to %s\n", fmt_time(ci->not_before, a),
                       fmt_time(ci->not_after, b));
                printf("  key       %s\n", ci->key_type);
                printf("  sha256    %s\n", ci->sha256);
        }
        printf("  status    %s%s%s\n", vg_ca_cert_status_name(ci->status),
               ci->problem[0] ? ": " : "", ci->problem);
}

/* --- vigil ca init ---------------------------------------------------------------------- */

static void init_help(FILE *out)
{
        fprintf(out,
                "Usage: vigil ca init DIR [--key-type T] [--days N] [--cert-days N] [--cn NAME]\n"
                "                         [--san SAN]... [--password-file FILE] [--force]\n\n"
                "Create a CA in DIR (made 0700 when missing) with a server and a client\n"
                "certificate, in Keylime's cv_ca layout; a component whose tls_dir is DIR uses\n"
                "them. Either every file is written or none:\n"
                "  cacert.crt          the CA certificate\n"
                "  ca-private.pem      the CA's private key (0600; needed only to issue)\n"
                "  cacrl.pem           an empty CRL signed by the CA\n"
                "  server-cert.crt     CN \"server\", extendedKeyUsage serverAuth\n"
                "  server-private.pem  its private key (0600)\n"
                "  client-cert.crt     CN \"client\", extendedKeyUsage clientAuth\n"
                "  client-private.pem  its private key (0600)\n\n"
                "Options:\n"
                "  --key-type T        rsa:2048 (default, as Keylime), rsa:3072, rsa:4096,\n"
                "                      ec:P-256 or ec:P-384; for the CA and both certificates\n"
                "  --days N            the CA's lifetime in days (default %u)\n"
                "  --cert-days N       the certificates' lifetime in days (default %u)\n"
                "  --cn NAME           the CA's common name (default \"%s\")\n"
                "  --san SAN           the server certificate's subjectAltNames, IP:ADDRESS or\n"
                "                      DNS:NAME, repeated or comma-separated, instead of the\n"
                "                      defaults IP:127.0.0.1, IP:::1, DNS:localhost and\n"
                "                      DNS:<this host's name>\n"
                "  --password-file FILE\n"
                "                      encrypt every private key with the first line of FILE\n"
                "  --force             replace an existing CA and certificates in DIR\n"
                "  -h, --help          this text\n",
                VG_CA_DEFAULT_CA_DAYS, VG_CA_DEFAULT_CERT_DAYS, VG_CA_DEFAULT_CN);
}

static void print_created(const char *dir)
{
        _cleanup_(vg_ca_listing_clear) struct vg_ca_listing l = { 0 };
        struct vg_error err = { 0 };
        char until[32], key[NAME_MAX + 16];

        if (vg_ca_list(dir, &l, &err) < 0) {
                printf("Created a CA in %s\n", dir);
                return;
        }
        printf("Created a CA in %s:\n", dir);
        printf("  %-19s %s, %s, valid until %s\n", VG_CA_CERT_FILE, l.ca.subject, l.ca.key_type,
               fmt_time(l.ca.not_after, until));
        printf("  %-19s the CA's private key; keep it secret\n", VG_CA_KEY_FILE);
        printf("  %-19s an empty CRL\n", VG_CA_CRL_FILE);
        for (size_t i = 0; i < l.n_certs; i++) {
                const struct vg_ca_cert_info *ci = &l.certs[i];

                /* Certificates issued earlier may share the directory; list only ours. */
                if (strcmp(ci->name, "server") && strcmp(ci->name, "client"))
                        continue;
                printf("  %-19s %s, %s, valid until %s%s%s\n", ci->file, ci->subject, usage_of(ci),
                       fmt_time(ci->not_after, until), ci->sans[0] ? "; " : "", ci->sans);
                snprintf(key, sizeof(key), "%s" VG_CA_KEY_SUFFIX, ci->name);
                printf("  %-19s its private key\n", key);
        }
        printf("Set tls_dir = %s in the registrar's and verifier's configuration to use them.\n",
               dir);
}

static int ca_init(int argc, char **argv)
{
        enum { KEY_TYPE, DAYS, CERT_DAYS, CN, SAN, PASSWORD_FILE, FORCE };
        static const struct opt opts[] = {
                { "--key-type", true, KEY_TYPE },
                { "--days", true, DAYS },
                { "--cert-days", true, CERT_DAYS },
                { "--cn", true, CN },
                { "--san", true, SAN },
                { "--password-file", true, PASSWORD_FILE },
                { "--force", false, FORCE },
        };
        struct opt_iter it = { .cmd = "ca init",
                               .argv = argv,
                               .argc = argc,
                               .i = 1,
                               .opts = opts,
                               .n_opts = VG_ARRAY_SIZE(opts) };
        _cleanup_(san_list_free) struct san_list sans = { 0 };
        _cleanup_secret_ struct vg_secret password = { 0 };
        struct vg_ca_init_params p = { 0 };
        struct vg_error err = { 0 };
        const char *dir = NULL, *password_file = NULL;
        int id, r = 0;

        while (r == 0 && (id = opt_next(&it)) != OPT_END) {
                switch (id) {
                case OPT_ERROR:
                        return 2;
                case OPT_HELP:
                        init_help(stdout);
                        return 0;
                case OPT_ARG:
                        if (dir)
                                return cli_usage_error(it.cmd,
                                                       "expected one directory, found '%s' and "
                                                       "'%s'",
                                                       dir, it.value);
                        dir = it.value;
                        break;
                case KEY_TYPE:
                        if (vg_ca_key_type_parse(it.value, &p.key_type, &err) < 0)
                                return cli_usage_error(it.cmd, "--key-type: %s",
                                                       vg_error_str(&err));
                        break;
                case DAYS:
                        r = parse_days(it.cmd, "--days", it.value, &p.days);
                        break;
                case CERT_DAYS:
                        r = parse_days(it.cmd, "--cert-days", it.value, &p.cert_days);
                        break;
                case CN:
                        p.cn = it.value;
                        break;
                case SAN:
                        r = san_list_add(it.cmd, &sans, it.value);
                        break;
                case PASSWORD_FILE:
                        password_file = it.value;
                        break;
                case FORCE:
                        p.force = true;
                        break;
                }
        }
        if (r)
                return r;
        if (!dir)
                return cli_usage_error(it.cmd, "expected a directory, found none");
        if (p.days && p.cert_days > p.days)
                return cli_usage_error(it.cmd,
                                       "--cert-days: expected at most the CA's --days (%u), "
                                       "found %u",
                                       p.days, p.cert_days);
        if (password_file && (r = read_password(it.cmd, password_file, &password)))
                return r;
        p.password = password.p ? (const char *)password.p : NULL;
        p.server_sans = sans.n ? (const char *const *)sans.items : NULL;
        if (vg_ca_init(dir, &p, &err) < 0)
                return fail(it.cmd, &err, "pass --force to replace the existing CA");
        print_created(dir);
        return 0;
}

/* --- vigil ca issue --------------------------------------------------------------------- */

static void issue_help(FILE *out)
{
        fprintf(out,
                "Usage: vigil ca issue DIR --name NAME (--server|--client) [--san SAN]...\n"
                "                          [--days N] [--key-type T] [--cn CN] [--out-dir D]\n"
                "                          [--password-file FILE] [--force]\n\n"
                "Issue a certificate and a fresh key from the CA in DIR, written as\n"
                "NAME-cert.crt (0644) and NAME-private.pem (0600) in DIR or --out-dir.\n\n"
                "Options:\n"
                "  --name NAME         the files' NAME: letters, digits, '.', '_', '-'\n"
                "  --server            extendedKeyUsage serverAuth; default SANs IP:127.0.0.1,\n"
                "                      IP:::1, DNS:localhost and DNS:<this host's name>\n"
                "  --client            extendedKeyUsage clientAuth (admin requests need it)\n"
                "  --san SAN           IP:ADDRESS or DNS:NAME, repeated or comma-separated;\n"
                "                      replaces the server defaults\n"
                "  --days N            lifetime in days (default %u, at most until the CA\n"
                "                      expires)\n"
                "  --key-type T        rsa:2048, rsa:3072, rsa:4096, ec:P-256 or ec:P-384\n"
                "                      (default: the CA key's type)\n"
                "  --cn CN             the subject's common name (default NAME)\n"
                "  --out-dir D         write the files to D instead of DIR\n"
                "  --password-file FILE\n"
                "                      decrypt the CA key with, and encrypt the new key with,\n"
                "                      the first line of FILE\n"
                "  --force             replace an existing NAME-cert.crt and NAME-private.pem\n"
                "  -h, --help          this text\n",
                VG_CA_DEFAULT_CERT_DAYS);
}

static int ca_issue(int argc, char **argv)
{
        enum { NAME, SERVER, CLIENT, SAN, DAYS, KEY_TYPE, CN, OUT_DIR, PASSWORD_FILE, FORCE };
        static const struct opt opts[] = {
                { "--name", true, NAME },
                { "--server", false, SERVER },
                { "--client", false, CLIENT },
                { "--san", true, SAN },
                { "--days", true, DAYS },
                { "--key-type", true, KEY_TYPE },
                { "--cn", true, CN },
                { "--out-dir", true, OUT_DIR },
                { "--password-file", true, PASSWORD_FILE },
                { "--force", false, FORCE },
        };
        struct opt_iter it = { .cmd = "ca issue",
                               .argv = argv,
                               .argc = argc,
                               .i = 1,
                               .opts = opts,
                               .n_opts = VG_ARRAY_SIZE(opts) };
        _cleanup_(san_list_free) struct san_list sans = { 0 };
        _cleanup_secret_ struct vg_secret password = { 0 };
        _cleanup_(vg_ca_freep) struct vg_ca *ca = NULL;
        _cleanup_(vg_ca_issued_freep) struct vg_ca_issued *cert = NULL;
        struct vg_ca_issue_params p = { 0 };
        struct vg_ca_save_opts so = { 0 };
        struct vg_ca_cert_info ci, cai;
        struct vg_error err = { 0 };
        const char *dir = NULL, *name = NULL, *out_dir = NULL, *password_file = NULL;
        bool server = false, client = false;
        char a[32], b[32];
        int id, r = 0;

        while (r == 0 && (id = opt_next(&it)) != OPT_END) {
                switch (id) {
                case OPT_ERROR:
                        return 2;
                case OPT_HELP:
                        issue_help(stdout);
                        return 0;
                case OPT_ARG:
                        if (dir)
                                return cli_usage_error(it.cmd,
                                                       "expected one CA directory, found '%s' "
                                                       "and '%s'",
                                                       dir, it.value);
                        dir = it.value;
                        break;
                case NAME:
                        name = it.value;
                        if (vg_ca_name_validate(name, &err) < 0)
                                return cli_usage_error(it.cmd, "--name: %s", vg_error_str(&err));
                        break;
                case SERVER:
                        server = true;
                        break;
                case CLIENT:
                        client = true;
                        break;
                case SAN:
                        r = san_list_add(it.cmd, &sans, it.value);
                        break;
                case DAYS:
                        r = parse_days(it.cmd, "--days", it.value, &p.days);
                        break;
                case KEY_TYPE:
                        if (vg_ca_key_type_parse(it.value, &p.key_type, &err) < 0)
                                return cli_usage_error(it.cmd, "--key-type: %s",
                                                       vg_error_str(&err));
                        break;
                case CN:
                        p.cn = it.value;
                        break;
                case OUT_DIR:
                        out_dir = it.value;
                        break;
                case PASSWORD_FILE:
                        password_file = it.value;
                        break;
                case FORCE:
                        so.force = true;
                        break;
                }
        }
        if (r)
                return r;
        if (!dir)
                return cli_usage_error(it.cmd, "expected the CA directory, found none");
        if (!name)
                return cli_usage_error(it.cmd, "expected --name NAME, found none");
        if (server == client)
                return cli_usage_error(it.cmd, "expected one of --server or --client, found %s",
                                       server ? "both" : "neither");
        if (password_file && (r = read_password(it.cmd, password_file, &password)))
                return r;
        so.password = password.p ? (const char *)password.p : NULL;
        p.usage = server ? VG_CA_SERVER : VG_CA_CLIENT;
        p.cn = p.cn ?: name;
        p.sans = sans.n ? (const char *const *)sans.items : NULL;
        out_dir = out_dir ?: dir;

        if (vg_ca_load(dir, so.password, &ca, &err) < 0 || vg_ca_issue(ca, &p, &cert, &err) < 0 ||
            vg_ca_issued_save(cert, out_dir, name, &so, &err) < 0)
                return fail(it.cmd, &err, "pass --force to replace it");
        vg_ca_issued_info(cert, &ci);
        vg_ca_info(ca, &cai);
        printf("Issued %s/%s%s and %s/%s%s\n", out_dir, name, VG_CA_CERT_SUFFIX, out_dir, name,
               VG_CA_KEY_SUFFIX);
        printf("  subject   %s\n", ci.subject);
        printf("  usage     %s\n", usage_of(&ci));
        printf("  SANs      %s\n", ci.sans[0] ? ci.sans : "none");
        printf("  serial    %s\n", ci.serial);
        printf("  valid     %s to %s%s\n", fmt_time(ci.not_before, a), fmt_time(ci.not_after, b),
               ci.not_after == cai.not_after ? " (the CA's own expiry)" : "");
        printf("  key       %s\n", ci.key_type);
        return 0;
}

/* --- vigil ca show ---------------------------------------------------------------------- */

static void show_help(FILE *out)
{
        fprintf(out, "Usage: vigil ca show DIR\n\n"
                     "List the CA in DIR, every NAME-cert.crt there and the CRL: subject, usage,\n"
                     "SANs, serial, validity, key type, SHA-256 fingerprint, and whether each\n"
                     "certificate is valid now and signed by this CA. Needs no private key.\n\n"
                     "Options:\n"
                     "  -h, --help          this text\n");
}

static int ca_show(int argc, char **argv)
{
        struct opt_iter it = { .cmd = "ca show", .argv = argv, .argc = argc, .i = 1 };
        _cleanup_(vg_ca_listing_clear) struct vg_ca_listing l = { 0 };
        struct vg_error err = { 0 };
        const char *dir = NULL;
        char a[32], b[32];
        int id;

        while ((id = opt_next(&it)) != OPT_END) {
                if (id == OPT_ERROR)
                        return 2;
                if (id == OPT_HELP) {
                        show_help(stdout);
                        return 0;
                }
                if (dir)
                        return cli_usage_error(
                            it.cmd, "expected one directory, found '%s' and '%s'", dir, it.value);
                dir = it.value;
        }
        if (!dir)
                return cli_usage_error(it.cmd, "expected a directory, found none");
        if (vg_ca_list(dir, &l, &err) < 0)
                return fail(it.cmd, &err, NULL);
        print_cert(dir, &l.ca);
        for (size_t i = 0; i < l.n_certs; i++) {
                printf("\n");
                print_cert(dir, &l.certs[i]);
        }
        printf("\ncrl: %s/%s\n", dir, VG_CA_CRL_FILE);
        if (!l.have_crl) {
                printf("  status    missing\n");
        } else if (!l.crl_ok) {
                printf("  status    invalid: %s\n", l.crl_problem);
        } else {
                printf("  revoked   %zu\n", l.crl_revoked);
                printf("  updated   %s, next update %s\n", fmt_time(l.crl_last_update, a),
                       fmt_time(l.crl_next_update, b));
                printf("  status    %s\n", l.crl_next_update < time(NULL) ? "expired" : "ok");
        }
        return 0;
}

/* --- vigil ca --------------------------------------------------------------------------- */

static void ca_help(FILE *out)
{
        fprintf(out, "Usage: vigil ca VERB [OPTIONS]\n\n"
                     "A small certificate authority for vigil's mutual TLS, in Keylime's cv_ca\n"
                     "layout: point a component's tls_dir at the directory.\n\n"
                     "Verbs:\n"
                     "  init DIR    create a CA with a server and a client certificate\n"
                     "  issue DIR   issue another server or client certificate from the CA\n"
                     "  show DIR    list the CA, its certificates and its CRL\n\n"
                     "`vigil ca VERB --help` describes each verb; see also vigil(1).\n");
}

int cmd_ca(int argc, char **argv)
{
        static const struct {
                const char *verb;
                int (*run)(int argc, char **argv);
        } verbs[] = {
                { "init", ca_init },
                { "issue", ca_issue },
                { "show", ca_show },
        };

        if (argc < 2) {
                ca_help(stderr);
                return 2;
        }
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
            strcmp(argv[1], "help") == 0) {
                ca_help(stdout);
                return 0;
        }
        for (size_t i = 0; i < VG_ARRAY_SIZE(verbs); i++)
                if (strcmp(argv[1], verbs[i].verb) == 0)
                        return verbs[i].run(argc - 1, argv + 1);
        if (argv[1][0] == '-')
                return cli_usage_error("ca",
                                       "expected a verb (init, issue or show) first, found "
                                       "the option '%s'",
                                       argv[1]);
        return cli_usage_error("ca", "unknown verb '%s'; expected init, issue or show", argv[1]);
}
