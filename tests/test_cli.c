/* vigil tests: the `vigil` command line as a user runs it ($VIGIL_CLI): help, usage errors,
 * `vigil ca init|issue|show`, judged by openssl and a real mutual-TLS handshake on loopback. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "openssl_oracle.h"
#include "tap.h"

#define MAX_ARGS 32

struct ctx {
        const char *cli;  /* $VIGIL_CLI */
        const char *base; /* this run's temporary directory */
};

/* The CLI under test with the given arguments. */
static int vigil(const struct ctx *c, char **out, ...)
{
        va_list ap;
        int r;

        va_start(ap, out);
        r = tap_runv(out, c->cli, ap);
        va_end(ap);
        return r;
}

static void test_help(const struct ctx *c)
{
        static const char *const verbs[] = { "init", "issue", "show" };
        _cleanup_free_ char *out = NULL;

        is_int(vigil(c, &out, "--help", NULL), 0, "vigil --help exits 0");
        contains(out, "ca ", "  and lists the ca command");
        free(out);
        is_int(vigil(c, &out, "--version", NULL), 0, "vigil --version exits 0");
        is_str(out, "vigil " VIGIL_VERSION "\n", "  and prints the version");
        free(out);
        is_int(vigil(c, &out, "ca", "--help", NULL), 0, "vigil ca --help exits 0");
        contains(out, "init DIR", "  and lists init");
        contains(out, "issue DIR", "  issue");
        contains(out, "show DIR", "  and show");
        for (size_t i = 0; i < VG_ARRAY_SIZE(verbs); i++) {
                _cleanup_free_ char *want = tap_strf("Usage: vigil ca %s DIR", verbs[i]);

                free(out);
                is_int(vigil(c, &out, "ca", verbs[i], "--help", NULL), 0,
                       "vigil ca %s --help exits 0", verbs[i]);
                contains(out, want, "  and shows its usage");
        }
        free(out);
        is_int(vigil(c, &out, "ca", "init", "-h", NULL), 0, "-h works too");
        contains(out, "--key-type", "  and describes the options");
        free(out);
        out = NULL;
}

/* Exit status 2, a message saying what was expected and found, a pointer to --help, and no
 * side effects. */
static void test_usage_errors(const struct ctx *c)
{
        _cleanup_free_ char *d = tap_strf("%s/never", c->base);
        _cleanup_free_ char *d2 = tap_strf("%s/never2", c->base);
        const struct {
                const char *argv[10];
                const char *want, *hint;
        } cases[] = {
                { { "ca" }, "Usage: vigil ca VERB", NULL },
                { { "ca", "frob" },
                  "unknown verb 'frob'; expected init, issue or show",
                  "Try 'vigil ca --help'." },
                { { "ca", "--frob" },
                  "expected a verb (init, issue or show) first, found the option '--frob'",
                  "Try 'vigil ca --help'." },
                { { "ca", "init" },
                  "vigil ca init: expected a directory, found none",
                  "Try 'vigil ca init --help'." },
                { { "ca", "init", d, "--key-type", "dsa" },
                  "--key-type: expected a key type rsa:2048, rsa:3072, rsa:4096, ec:P-256 or "
                  "ec:P-384, found 'dsa'",
                  "Try 'vigil ca init --help'." },
                { { "ca", "init", d, "--days", "ten" },
                  "--days: expected a whole number of days from 1 to 36500, found 'ten'",
                  NULL },
                { { "ca", "init", d, "--days=99999" }, "found '99999'", NULL },
                { { "ca", "init", d, "--days", "-5" }, "found '-5'", NULL },
                { { "ca", "init", d, "--bogus" },
                  "unknown option '--bogus'",
                  "Try 'vigil ca init --help'." },
                { { "ca", "init", d, "-x" }, "unknown option '-x'", NULL },
                { { "ca", "init", d, "--days" },
                  "option --days: expected a value, found the end of the command line",
                  NULL },
                { { "ca", "init", d, "--force=yes" },
                  "option --force takes no value, found 'yes'",
                  NULL },
                { { "ca", "init", d, d2 }, "expected one directory, found", NULL },
                { { "ca", "init", d, "--san", "URI:x" },
                  "--san: subjectAltName 'URI:x': expected IP:ADDRESS or DNS:NAME, found the "
                  "type 'URI'",
                  NULL },
                { { "ca", "init", d, "--san", "IP:300.1.1.1" },
                  "expected an IPv4 or IPv6 address after IP:, found '300.1.1.1'",
                  NULL },
                { { "ca", "init", d, "--san", "IP:1.2.3.4,,DNS:x" }, "found an empty entry", NULL },
                { { "ca", "init", d, "--days", "10", "--cert-days", "20" },
                  "--cert-days: expected at most the CA's --days (10), found 20",
                  NULL },
                { { "ca", "issue", d, "--server" },
                  "expected --name NAME, found none",
                  "Try 'vigil ca issue --help'." },
                { { "ca", "issue", d, "--name", "a" },
                  "expected one of --server or --client, found neither",
                  NULL },
                { { "ca", "issue", d, "--name", "a", "--server", "--client" },
                  "expected one of --server or --client, found both",
                  NULL },
                { { "ca", "issue", d, "--name", "ca", "--client" },
                  "certificate name 'ca' is reserved",
                  NULL },
                { { "ca", "issue", d, "--name", "../x", "--client" },
                  "expected a letter or digit first, found '.'",
                  NULL },
                { { "ca", "issue", "--name", "a", "--client" },
                  "expected the CA directory, found none",
                  NULL },
                { { "ca", "show" },
                  "vigil ca show: expected a directory, found none",
                  "Try 'vigil ca show --help'." },
                { { "ca", "show", d, "--long" }, "unknown option '--long'", NULL },
                { { "frob" }, "unknown command 'frob'", NULL },
                { { "--frob" }, "unknown option '--frob'", NULL },
        };

        for (size_t i = 0; i < VG_ARRAY_SIZE(cases); i++) {
                const char *argv[12] = { c->cli };
                _cleanup_free_ char *out = NULL;
                char line[160] = "vigil";

                for (size_t k = 0; cases[i].argv[k]; k++) {
                        argv[k + 1] = cases[i].argv[k];
                        snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s",
                                 strncmp(cases[i].argv[k], c->base, strlen(c->base))
                                     ? cases[i].argv[k]
                                     : "DIR");
                }
                is_int(tap_run_input((char *const *)argv, NULL, &out), 2, "'%s' exits 2", line);
                contains(out, cases[i].want, "  saying what was wrong");
                if (cases[i].hint)
                        contains(out, cases[i].hint, "  and pointing at --help");
        }
        ok(access(d, F_OK) != 0, "no usage error created the directory");
}

static void test_init(const struct ctx *c, const char *dir)
{
        static const struct {
                const char *name;
                int mode;
        } files[] = {
                { "cacert.crt", 0644 },         { "ca-private.pem", 0600 },
                { "cacrl.pem", 0644 },          { "server-cert.crt", 0644 },
                { "server-private.pem", 0600 }, { "client-cert.crt", 0644 },
                { "client-private.pem", 0600 },
        };
        _cleanup_free_ char *ca = tap_strf("%s/cacert.crt", dir);
        _cleanup_free_ char *crl = tap_strf("%s/cacrl.pem", dir);
        _cleanup_free_ char *srv = tap_strf("%s/server-cert.crt", dir);
        _cleanup_free_ char *srv_key = tap_strf("%s/server-private.pem", dir);
        _cleanup_free_ char *cli = tap_strf("%s/client-cert.crt", dir);
        _cleanup_free_ char *cli_key = tap_strf("%s/client-private.pem", dir);
        _cleanup_free_ char *out = NULL, *before = NULL, *after = NULL, *ext = NULL;

        is_int(vigil(c, &out, "ca", "init", dir, "--key-type", "ec:P-256", NULL), 0,
               "vigil ca init DIR --key-type ec:P-256 exits 0");
        contains(out, "Created a CA in", "  and says what it did");
        contains(out, "server-cert.crt", "  listing the files");
        is_int(tap_file_mode(dir), 0700, "DIR is created 0700");
        for (size_t i = 0; i < VG_ARRAY_SIZE(files); i++) {
                _cleanup_free_ char *f = tap_strf("%s/%s", dir, files[i].name);

                is_int(tap_file_mode(f), files[i].mode, "DIR/%s has mode %04o", files[i].name,
                       files[i].mode);
        }

        is_int(ossl_verify(ca, "sslserver", srv), 0,
               "openssl verify -purpose sslserver: server ok");
        is_int(ossl_verify(ca, "sslclient", cli), 0,
               "openssl verify -purpose sslclient: client ok");
        ok(ossl_verify(ca, "sslserver", cli) != 0, "the client certificate is no server's");
        ok(ossl_verify(ca, "sslclient", srv) != 0, "the server certificate is no client's");
        is_int(tap_runl(NULL, "openssl", "verify", "-crl_check", "-CRLfile", crl, "-CAfile", ca,
                        cli, NULL),
               0, "openssl verify -crl_check with DIR/cacrl.pem: client ok");
        ok(ossl_key_matches(srv, srv_key, NULL), "server-private.pem matches server-cert.crt");
        ok(ossl_key_matches(cli, cli_key, NULL), "client-private.pem matches client-cert.crt");
        ext = ossl_x509(srv, "-ext", "subjectAltName,extendedKeyUsage");
        contains(ext, "TLS Web Server Authentication", "server: EKU serverAuth");
        contains(ext, "IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:localhost",
                 "server: the default SANs");
        free(ext);
        ext = ossl_x509(cli, "-ext", "extendedKeyUsage");
        contains(ext, "TLS Web Client Authentication", "client: EKU clientAuth (Keylime 7.14)");

        before = tap_read_file(ca, NULL);
        free(out);
        is_int(vigil(c, &out, "ca", "init", dir, "--key-type", "ec", NULL), 1,
               "a second init into DIR exits 1");
        contains(out, "cacert.crt already exists; refusing to overwrite it; pass --force",
                 "  naming the file and the way out");
        after = tap_read_file(ca, NULL);
        is_str(after, before, "  and leaves cacert.crt alone");
}

static void test_init_options(const struct ctx *c)
{
        _cleanup_free_ char *d1 = tap_strf("%s/opts", c->base);
        _cleanup_free_ char *ca1 = tap_strf("%s/cacert.crt", d1);
        _cleanup_free_ char *srv1 = tap_strf("%s/server-cert.crt", d1);
        _cleanup_free_ char *d2 = tap_strf("%s/rsa", c->base);
        _cleanup_free_ char *ca2 = tap_strf("%s/cacert.crt", d2);
        _cleanup_free_ char *srv2 = tap_strf("%s/server-cert.crt", d2);
        _cleanup_free_ char *out = NULL, *ext = NULL, *text = NULL, *before = NULL;
        _cleanup_free_ char *after = NULL;

        is_int(vigil(c, &out, "ca", "init", d1, "--key-type=ec:P-384", "--cn", "Example Org CA",
                     "--days", "100", "--cert-days", "50", "--san", "IP:192.0.2.1", "--san",
                     "DNS:verifier.example,DNS:alt.example", NULL),
               0, "ca init with --cn, --days, --cert-days and --san exits 0");
        ext = ossl_x509(srv1, "-ext", "subjectAltName");
        contains(ext, "IP Address:192.0.2.1, DNS:verifier.example, DNS:alt.example",
                 "the server has exactly the SANs given");
        ok(ext && !strstr(ext, "localhost"), "  instead of the defaults");
        text = ossl_x509(ca1, "-subject", NULL);
        contains(text, "CN = Example Org CA", "the CA has the --cn given");
        free(text);
        text = ossl_x509(srv1, "-text", NULL);
        contains(text, "NIST CURVE: P-384", "--key-type=ec:P-384 applies to the certificates");
        contains(text, "ecdsa-with-SHA384", "  and a P-384 CA signs with SHA-384");
        is_int(ossl_valid_in_days(ca1, 99), 0, "the CA lives --days 100");
        ok(ossl_valid_in_days(ca1, 101) != 0, "  and no longer");
        is_int(ossl_valid_in_days(srv1, 49), 0, "the server lives --cert-days 50");
        ok(ossl_valid_in_days(srv1, 51) != 0, "  and no longer");

        before = tap_read_file(ca1, NULL);
        free(out);
        is_int(vigil(c, &out, "ca", "init", d1, "--key-type", "ec", "--force", NULL), 0,
               "ca init --force replaces an existing CA");
        after = tap_read_file(ca1, NULL);
        ok(before && after && strcmp(before, after), "  cacert.crt is a new one");
        is_int(ossl_verify(ca1, "sslserver", srv1), 0, "  and the new server certificate verifies");

        /* Keylime's default: RSA-2048, CA 3650 days, certificates 365 days. */
        free(out);
        is_int(vigil(c, &out, "ca", "init", d2, NULL), 0, "ca init with the defaults exits 0");
        free(text);
        text = ossl_x509(ca2, "-text", NULL);
        contains(text, "Public-Key: (2048 bit)", "the default CA key is RSA-2048");
        free(text);
        text = ossl_x509(srv2, "-text", NULL);
        contains(text, "Public-Key: (2048 bit)", "the default server key is RSA-2048");
        is_int(ossl_valid_in_days(ca2, 3649), 0, "the default CA lives 3650 days");
        ok(ossl_valid_in_days(ca2, 3651) != 0, "  and no longer");
        is_int(ossl_valid_in_days(srv2, 364), 0, "the default server certificate lives 365 days");
        ok(ossl_valid_in_days(srv2, 366) != 0, "  and no longer");
        is_int(ossl_verify(ca2, "sslserver", srv2), 0, "openssl verify accepts the RSA server");
}

static void test_issue(const struct ctx *c, const char *dir)
{
        _cleanup_free_ char *ca = tap_strf("%s/cacert.crt", dir);
        _cleanup_free_ char *agent = tap_strf("%s/agent-cert.crt", dir);
        _cleanup_free_ char *agent_key = tap_strf("%s/agent-private.pem", dir);
        _cleanup_free_ char *admin_dir = tap_strf("%s/admin", dir);
        _cleanup_free_ char *admin = tap_strf("%s/admin/admin-cert.crt", dir);
        _cleanup_free_ char *admin_key = tap_strf("%s/admin/admin-private.pem", dir);
        _cleanup_free_ char *big = tap_strf("%s/big-cert.crt", dir);
        _cleanup_free_ char *out = NULL, *ext = NULL, *s1 = NULL, *s2 = NULL, *text = NULL;

        is_int(vigil(c, &out, "ca", "issue", dir, "--name", "agent", "--server", "--san",
                     "IP:192.0.2.7", "--san", "DNS:agent.example", "--days", "10", NULL),
               0, "ca issue --server exits 0");
        contains(out, "agent-cert.crt", "  and names the certificate");
        contains(out, "IP:192.0.2.7, DNS:agent.example", "  and its SANs");
        is_int(ossl_verify(ca, "sslserver", agent), 0,
               "openssl verify -purpose sslserver accepts it");
        ext = ossl_x509(agent, "-ext", "subjectAltName");
        contains(ext, "IP Address:192.0.2.7, DNS:agent.example", "it has the SANs asked for");
        is_int(ossl_valid_in_days(agent, 9), 0, "it lives the 10 days asked for");
        ok(ossl_valid_in_days(agent, 11) != 0, "  and no longer");
        ok(ossl_key_matches(agent, agent_key, NULL), "agent-private.pem is its key");
        is_int(tap_file_mode(agent_key), 0600, "  and is 0600");
        is_int(tap_file_mode(agent), 0644, "the certificate is 0644");

        free(out);
        is_int(vigil(c, &out, "ca", "issue", dir, "--name", "admin", "--client", "--out-dir",
                     admin_dir, NULL),
               0, "ca issue --client --out-dir exits 0");
        is_int(ossl_verify(ca, "sslclient", admin), 0,
               "openssl verify -purpose sslclient accepts it");
        ok(ossl_verify(ca, "sslserver", admin) != 0, "  but not as a server");
        ok(ossl_key_matches(admin, admin_key, NULL), "  with its key, in --out-dir");
        free(ext);
        ext = ossl_x509(admin, "-subject", NULL);
        contains(ext, "CN = admin", "the common name defaults to --name");

        s1 = ossl_serial(admin);
        free(out);
        is_int(vigil(c, &out, "ca", "issue", dir, "--name", "admin", "--client", "--out-dir",
                     admin_dir, NULL),
               1, "issuing over an existing certificate exits 1");
        contains(out, "admin-cert.crt already exists; refusing to overwrite it; pass --force",
                 "  naming the file and the way out");
        free(out);
        is_int(vigil(c, &out, "ca", "issue", dir, "--name", "admin", "--client", "--out-dir",
                     admin_dir, "--force", NULL),
               0, "with --force it is replaced");
        s2 = ossl_serial(admin);
        ok(strcmp(s1, s2) != 0, "  by a certificate with a new serial");

        free(out);
        is_int(vigil(c, &out, "ca", "issue", dir, "--name", "big", "--server", "--key-type",
                     "rsa:3072", "--cn", "big.example", NULL),
               0, "ca issue --key-type rsa:3072 --cn big.example exits 0");
        text = ossl_x509(big, "-text", NULL);
        contains(text, "Public-Key: (3072 bit)", "  the key is RSA-3072");
        contains(text, "Subject: CN = big.example", "  the subject is the --cn given");
        contains(text, "DNS:localhost", "  with the default server SANs");
        is_int(ossl_verify(ca, "sslserver", big), 0, "  and an EC CA's signature verifies");
}

static void test_show(const struct ctx *c, const char *dir, const char *other)
{
        _cleanup_free_ char *srv = tap_strf("%s/server-cert.crt", dir);
        _cleanup_free_ char *from = tap_strf("%s/server-cert.crt", other);
        _cleanup_free_ char *to = tap_strf("%s/stranger-cert.crt", dir);
        _cleanup_free_ char *out = NULL, *serial = ossl_serial(srv);
        _cleanup_free_ char *want_ca = tap_strf("ca: %s/cacert.crt", dir);
        _cleanup_free_ char *want_srv = tap_strf("server: %s/server-cert.crt", dir);
        _cleanup_free_ char *want_serial = tap_strf("serial    %s", serial);

        tap_copy_file(from, to);
        is_int(vigil(c, &out, "ca", "show", dir, NULL), 0, "ca show DIR exits 0");
        contains(out, want_ca, "  shows the CA");
        contains(out, "subject   CN=vigil CA", "  with its subject");
        contains(out, want_srv, "  shows the server certificate");
        contains(out, want_serial, "  with the serial openssl reads");
        contains(out, "SANs      IP:127.0.0.1, IP:::1, DNS:localhost", "  and its SANs");
        contains(out, "agent: ", "  shows the issued agent certificate");
        contains(out, "SANs      IP:192.0.2.7, DNS:agent.example", "  with its SANs");
        contains(out, "usage     client (clientAuth)", "  shows what a certificate is for");
        contains(out, "valid     ", "  and its validity");
        contains(out, "status    ok", "  and whether it is ok");
        contains(out, "status    not issued by this CA: expected a certificate signed by",
                 "  and flags a certificate from another CA");
        contains(out, "revoked   0", "  and the CRL revokes nothing");
}

static void test_bad_dirs(const struct ctx *c, const char *other)
{
        _cleanup_free_ char *missing = tap_strf("%s/missing", c->base);
        _cleanup_free_ char *deep = tap_strf("%s/no/such/dir", c->base);
        _cleanup_free_ char *empty = tap_strf("%s/empty", c->base);
        _cleanup_free_ char *file = tap_strf("%s/a-file", c->base);
        _cleanup_free_ char *mixed = tap_strf("%s/mixed", c->base);
        _cleanup_free_ char *from = tap_strf("%s/ca-private.pem", other);
        _cleanup_free_ char *to = tap_strf("%s/ca-private.pem", mixed);
        _cleanup_free_ char *out = NULL;

        mkdir(empty, 0700);
        tap_write_file(file, "x\n");
        is_int(vigil(c, &out, "ca", "show", missing, NULL), 1, "ca show of a missing DIR exits 1");
        contains(out, "missing: expected a CA directory, found nothing", "  saying so");
        free(out);
        is_int(vigil(c, &out, "ca", "show", file, NULL), 1, "ca show of a file exits 1");
        contains(out, "expected a CA directory, found a file", "  saying so");
        free(out);
        is_int(vigil(c, &out, "ca", "issue", empty, "--name", "x", "--server", NULL), 1,
               "ca issue from a DIR without a CA exits 1");
        contains(out, "expected a CA directory holding cacert.crt, found no cacert.crt",
                 "  saying what is missing");
        free(out);
        is_int(vigil(c, &out, "ca", "init", file, "--key-type", "ec", NULL), 1,
               "ca init onto a file exits 1");
        contains(out, "a-file: expected a directory, found a file", "  saying so");
        free(out);
        is_int(vigil(c, &out, "ca", "init", deep, "--key-type", "ec", NULL), 1,
               "ca init with a missing parent exits 1");
        contains(out, "expected its parent directory to exist", "  saying so");
        ok(access(deep, F_OK) != 0, "  and creates nothing");

        free(out);
        is_int(vigil(c, &out, "ca", "init", mixed, "--key-type", "ec", NULL), 0,
               "(a CA whose key gets swapped)");
        tap_copy_file(from, to);
        free(out);
        is_int(vigil(c, &out, "ca", "issue", mixed, "--name", "x", "--client", NULL), 1,
               "ca issue with another CA's key exits 1");
        contains(out, "ca-private.pem does not match", "  naming the key file");
}

static void test_password(const struct ctx *c)
{
        _cleanup_free_ char *dir = tap_strf("%s/secret", c->base);
        _cleanup_free_ char *pw = tap_strf("%s/pw", c->base);
        _cleanup_free_ char *empty_pw = tap_strf("%s/empty-pw", c->base);
        _cleanup_free_ char *missing = tap_strf("%s/missing-pw", c->base);
        _cleanup_free_ char *passin = tap_strf("file:%s", pw);
        _cleanup_free_ char *key = tap_strf("%s/server-private.pem", dir);
        _cleanup_free_ char *cert = tap_strf("%s/server-cert.crt", dir);
        _cleanup_free_ char *n_key = tap_strf("%s/n-private.pem", dir);
        _cleanup_free_ char *n_cert = tap_strf("%s/n-cert.crt", dir);
        _cleanup_free_ char *out = NULL, *pem = NULL;

        tap_write_file(pw, "hunter2\n");
        tap_write_file(empty_pw, "\n");
        is_int(vigil(c, &out, "ca", "init", dir, "--key-type", "ec", "--password-file", pw, NULL),
               0, "ca init --password-file exits 0");
        pem = tap_read_file(key, NULL);
        contains(pem, "BEGIN ENCRYPTED PRIVATE KEY", "  the keys are encrypted");
        ok(ossl_key_matches(cert, key, passin), "  openssl opens them with the password");
        ok(!ossl_key_matches(cert, key, "pass:wrong"), "  and not without it");
        free(out);
        is_int(vigil(c, &out, "ca", "issue", dir, "--name", "n", "--client", NULL), 1,
               "ca issue without the password exits 1");
        contains(out, "ca-private.pem: the key is encrypted; expected a password",
                 "  saying a password is needed");
        free(out);
        is_int(vigil(c, &out, "ca", "issue", dir, "--name", "n", "--client", "--password-file", pw,
                     NULL),
               0, "ca issue --password-file exits 0");
        ok(ossl_key_matches(n_cert, n_key, passin), "  and its new key is encrypted the same way");
        free(out);
        is_int(vigil(c, &out, "ca", "issue", dir, "--name", "m", "--client", "--password-file",
                     missing, NULL),
               1, "a missing password file exits 1");
        contains(out, "cannot read the password file", "  saying so");
        free(out);
        is_int(vigil(c, &out, "ca", "issue", dir, "--name", "m", "--client", "--password-file",
                     empty_pw, NULL),
               1, "an empty password file exits 1");
        contains(out, "expected a password on the first line, found an empty line", "  saying so");
}

/* --- a real mutual-TLS handshake: openssl s_server and s_client on 127.0.0.1 ------------ */

struct server {
        pid_t pid;
        int stdin_fd; /* held open: s_server must not see end of input */
        int port;
};

static bool start_server(const struct ctx *c, const char *dir, const char *ca_dir, struct server *s)
{
        _cleanup_free_ char *cafile = tap_strf("%s/cacert.crt", ca_dir);
        _cleanup_free_ char *cert = tap_strf("%s/server-cert.crt", dir);
        _cleanup_free_ char *key = tap_strf("%s/server-private.pem", dir);
        _cleanup_free_ char *log = NULL;
        char accept[64];
        int pfd[2];

        /* One log per server: a reused file could still show the last server's ACCEPT. */
        s->port = tap_free_port();
        log = tap_strf("%s/s_server-%d.log", c->base, s->port);
        snprintf(accept, sizeof(accept), "127.0.0.1:%d", s->port);
        if (s->port < 0 || pipe2(pfd, O_CLOEXEC) < 0)
                return false;
        unlink(log);
        fflush(stdout);
        s->pid = fork();
        if (s->pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

                if (fd < 0 || dup2(pfd[0], STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0 ||
                    dup2(fd, STDERR_FILENO) < 0)
                        _exit(127);
                /* -Verify 1: a client certificate is required; -verify_return_error: a bad
                 * one ends the handshake; -www: answer "GET /" so the client sees success. */
                execlp("openssl", "openssl", "s_server", "-Verify", "1", "-verify_return_error",
                       "-CAfile", cafile, "-cert", cert, "-key", key, "-accept", accept, "-www",
                       (char *)NULL);
                _exit(127);
        }
        close(pfd[0]);
        s->stdin_fd = pfd[1];
        if (s->pid < 0)
                return false;
        for (int i = 0; i < 500; i++) {
                _cleanup_free_ char *text = tap_read_file(log, NULL);
                int status;

                if (text && strstr(text, "ACCEPT"))
                        return true;
                if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
                        tap_diag("s_server exited: %s", text ? text : "");
                        s->pid = -1;
                        return false;
                }
                nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
        }
        return false;
}

static void stop_server(struct server *s)
{
        if (s->pid > 0) {
                kill(s->pid, SIGTERM);
                waitpid(s->pid, NULL, 0);
        }
        s->pid = -1;
        if (s->stdin_fd >= 0)
                close(s->stdin_fd);
        s->stdin_fd = -1;
}

/* s_client with a client certificate (NULL: none); its output in *out; 0 on success. */
static int s_client(const struct ctx *c, const struct server *s, const char *ca_dir,
                    const char *cert, const char *key, char **out)
{
        _cleanup_free_ char *cafile = tap_strf("%s/cacert.crt", ca_dir);
        _cleanup_free_ char *req = tap_strf("%s/request", c->base);
        char connect[64];
        const char *argv[MAX_ARGS] = {
                "timeout",          "20",        "openssl",
                "s_client",         "-connect",  connect,
                "-CAfile",          cafile,      "-verify_return_error",
                "-verify_hostname", "localhost", "-ign_eof",
        };
        size_t n = 12;

        snprintf(connect, sizeof(connect), "127.0.0.1:%d", s->port);
        if (cert) {
                argv[n++] = "-cert";
                argv[n++] = cert;
                argv[n++] = "-key";
                argv[n++] = key;
        }
        argv[n] = NULL;
        tap_write_file(req, "GET / HTTP/1.0\r\n\r\n");
        return tap_run_input((char *const *)argv, req, out);
}

static void test_mtls(const struct ctx *c, const char *dir, const char *other)
{
        _cleanup_free_ char *cli = tap_strf("%s/client-cert.crt", dir);
        _cleanup_free_ char *cli_key = tap_strf("%s/client-private.pem", dir);
        _cleanup_free_ char *admin = tap_strf("%s/admin/admin-cert.crt", dir);
        _cleanup_free_ char *admin_key = tap_strf("%s/admin/admin-private.pem", dir);
        _cleanup_free_ char *srv = tap_strf("%s/server-cert.crt", dir);
        _cleanup_free_ char *srv_key = tap_strf("%s/server-private.pem", dir);
        _cleanup_free_ char *o_cli = tap_strf("%s/client-cert.crt", other);
        _cleanup_free_ char *o_cli_key = tap_strf("%s/client-private.pem", other);
        _cleanup_free_ char *out = NULL;
        struct server s = { .pid = -1, .stdin_fd = -1 };

        if (!start_server(c, dir, dir, &s)) {
                stop_server(&s);
                tap_bail("cannot start openssl s_server on 127.0.0.1");
        }
        is_int(s_client(c, &s, dir, cli, cli_key, &out), 0,
               "mTLS: s_client with client-cert.crt connects to s_server with server-cert.crt");
        contains(out, "Verify return code: 0 (ok)",
                 "  the client verified the server as "
                 "localhost");
        contains(out, "HTTP/1.0 200 ok", "  and the server accepted the client certificate");
        free(out);
        is_int(s_client(c, &s, dir, admin, admin_key, &out), 0,
               "mTLS: an issued client certificate (admin) is accepted too");
        contains(out, "HTTP/1.0 200 ok", "  and gets an answer");
        free(out);
        ok(s_client(c, &s, dir, o_cli, o_cli_key, &out) != 0,
           "mTLS: a client certificate from another CA is refused");
        ok(out && !strstr(out, "200 ok"), "  and gets no answer");
        free(out);
        ok(s_client(c, &s, dir, srv, srv_key, &out) != 0,
           "mTLS: a server certificate used as a client's is refused (EKU)");
        ok(out && !strstr(out, "200 ok"), "  and gets no answer");
        free(out);
        ok(s_client(c, &s, dir, NULL, NULL, &out) != 0, "mTLS: no client certificate is refused");
        stop_server(&s);

        /* A server whose certificate comes from another CA. */
        if (!start_server(c, other, other, &s)) {
                stop_server(&s);
                tap_bail("cannot start openssl s_server on 127.0.0.1");
        }
        free(out);
        ok(s_client(c, &s, dir, cli, cli_key, &out) != 0,
           "mTLS: a server certificate from another CA is refused by the client");
        contains(out, "certificate verify failed", "  because it does not verify");
        stop_server(&s);
}

int main(void)
{
        _cleanup_free_ char *base = tap_tmpdir();
        struct ctx c = { .cli = getenv("VIGIL_CLI"), .base = base };
        _cleanup_free_ char *dir = tap_strf("%s/cv_ca", base);
        _cleanup_free_ char *other = tap_strf("%s/other_ca", base);
        _cleanup_free_ char *out = NULL;

        if (!c.cli)
                tap_bail("VIGIL_CLI is not set (run the tests through meson test)");
        test_help(&c);
        test_usage_errors(&c);
        test_init(&c, dir);
        test_init_options(&c);
        test_issue(&c, dir);
        if (vigil(&c, &out, "ca", "init", other, "--key-type", "ec", NULL) != 0)
                tap_bail("cannot create a second CA: %s", out);
        test_show(&c, dir, other);
        test_bad_dirs(&c, other);
        test_password(&c);
        test_mtls(&c, dir, other);
        return tap_done();
}
