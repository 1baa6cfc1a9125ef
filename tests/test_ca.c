/* vigil tests: the CA library (src/lib/ca.c), checked against independent oracles: the openssl
 * command (verify, x509, crl, pkey) and a TLS handshake through python3's ssl module. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "ca.h"
#include "cleanup.h"
#include "error.h"
#include "openssl_oracle.h"
#include "tap.h"

#define DAY 86400

VG_DEFINE_CLEANUP_FUNC(DIR, closedir)

/* A call that must succeed; on failure the error it recorded is shown too. */
#define is_ok(expr, err, ...)                                                                      \
        do {                                                                                       \
                if (!is_int((expr), 0, __VA_ARGS__))                                               \
                        tap_diag("error: %s", (err).msg);                                          \
        } while (0)

/* No ".NAME.random" temporaries left behind. */
static int hidden_files(const char *dir)
{
        _cleanup_(closedirp) DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;

        while (d && (de = readdir(d)))
                if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        n++;
        return n;
}

static void test_parsers(void)
{
        static const char *const good_sans[] = { "IP:1.2.3.4",     "IP:::1",       "ip:fe80::1",
                                                 "DNS:a.example",  "dns:host",     "10.1.2.3",
                                                 "node-1.example", "*.example.com" };
        static const struct {
                const char *san, *why;
        } bad_sans[] = {
                { "URI:https://x", "expected IP:ADDRESS or DNS:NAME, found the type 'URI'" },
                { "IP:999.1.1.1", "expected an IPv4 or IPv6 address after IP:" },
                { "IP:host", "found 'host'" },
                { "DNS:-bad", "expected a host name after DNS:" },
                { "DNS:a..b", "expected a host name" },
                { "DNS:", "expected a host name" },
                { "", "found an empty string" },
                { "a b", "expected IP:ADDRESS, DNS:NAME" },
        };
        enum vg_ca_key_type t = VG_CA_KEY_AUTO;
        struct vg_error err = { 0 };

        is_int(vg_ca_key_type_parse("rsa", &t, NULL), 0, "key type 'rsa' parses");
        is_int(t, VG_CA_KEY_RSA2048, "'rsa' means rsa:2048, Keylime's cert_bits");
        is_int(vg_ca_key_type_parse("EC:p-384", &t, NULL), 0, "key type names are case-blind");
        is_int(t, VG_CA_KEY_EC_P384, "'EC:p-384' is ec:P-384");
        is_int(vg_ca_key_type_parse("ec:prime256v1", &t, NULL), 0, "OpenSSL curve names parse");
        is_str(vg_ca_key_type_name(t), "ec:P-256", "and print as ec:P-256");
        is_str(vg_ca_key_type_name(VG_CA_KEY_AUTO), "rsa:2048", "the default key is rsa:2048");
        is_int(vg_ca_key_type_parse("dsa:1024", &t, &err), -EINVAL, "'dsa:1024' is refused");
        contains(err.msg, "expected a key type rsa:2048", "  saying what was expected");
        contains(err.msg, "found 'dsa:1024'", "  and what was found");

        for (size_t i = 0; i < VG_ARRAY_SIZE(good_sans); i++)
                is_int(vg_ca_san_validate(good_sans[i], NULL), 0, "SAN '%s' is accepted",
                       good_sans[i]);
        for (size_t i = 0; i < VG_ARRAY_SIZE(bad_sans); i++) {
                err = (struct vg_error){ 0 };
                is_int(vg_ca_san_validate(bad_sans[i].san, &err), -EINVAL, "SAN '%s' is refused",
                       bad_sans[i].san);
                contains(err.msg, bad_sans[i].why, "  with a message saying why");
        }

        is_int(vg_ca_name_validate("agent-01.example_a", NULL), 0, "name 'agent-01.example_a'");
        err = (struct vg_error){ 0 };
        is_int(vg_ca_name_validate("ca", &err), -EINVAL, "name 'ca' is refused");
        contains(err.msg, "ca-private.pem", "  because it would be the CA's key file");
        err = (struct vg_error){ 0 };
        is_int(vg_ca_name_validate("../etc/x", &err), -EINVAL, "name '../etc/x' is refused");
        contains(err.msg, "expected a letter or digit first", "  with a reason");
        is_int(vg_ca_name_validate("a/b", NULL), -EINVAL, "name 'a/b' is refused");
        is_int(vg_ca_name_validate("", NULL), -EINVAL, "an empty name is refused");
}

/* The Keylime cv_ca layout from vg_ca_init(), checked with openssl. */
static void test_init_layout(const char *base)
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
        _cleanup_free_ char *dir = tap_strf("%s/cv_ca", base);
        _cleanup_free_ char *ca = tap_strf("%s/cacert.crt", dir);
        _cleanup_free_ char *crl = tap_strf("%s/cacrl.pem", dir);
        _cleanup_free_ char *srv = tap_strf("%s/server-cert.crt", dir);
        _cleanup_free_ char *srv_key = tap_strf("%s/server-private.pem", dir);
        _cleanup_free_ char *cli = tap_strf("%s/client-cert.crt", dir);
        _cleanup_free_ char *cli_key = tap_strf("%s/client-private.pem", dir);
        _cleanup_free_ char *ca_ext = NULL, *srv_ext = NULL, *cli_ext = NULL, *ski = NULL;
        _cleanup_free_ char *aki = NULL, *crl_out = NULL, *s_ca = NULL, *s_srv = NULL;
        _cleanup_free_ char *s_cli = NULL, *before = NULL, *after = NULL;
        _cleanup_(vg_ca_listing_clear) struct vg_ca_listing l = { 0 };
        struct vg_ca_init_params p = { .key_type = VG_CA_KEY_EC_P256 };
        struct vg_error err = { 0 };
        char host[256] = "";

        is_ok(vg_ca_init(dir, &p, &err), err, "vg_ca_init creates a CA in a new directory");
        is_int(tap_file_mode(dir), 0700, "the directory is 0700");
        for (size_t i = 0; i < VG_ARRAY_SIZE(files); i++) {
                _cleanup_free_ char *f = tap_strf("%s/%s", dir, files[i].name);

                is_int(tap_file_mode(f), files[i].mode, "%s is there with mode %04o", files[i].name,
                       files[i].mode);
        }
        is_int(hidden_files(dir), 0, "no temporary files are left behind");

        is_int(ossl_verify(ca, "sslserver", srv), 0,
               "openssl verify -purpose sslserver accepts "
               "server-cert.crt");
        is_int(ossl_verify(ca, "sslclient", cli), 0,
               "openssl verify -purpose sslclient accepts "
               "client-cert.crt");
        ok(ossl_verify(ca, "sslserver", cli) != 0, "a client certificate is not a server's");
        ok(ossl_verify(ca, "sslclient", srv) != 0, "a server certificate is not a client's");
        is_int(tap_runl(NULL, "openssl", "verify", "-crl_check", "-CRLfile", crl, "-CAfile", ca,
                        srv, NULL),
               0, "openssl verify -crl_check with cacrl.pem accepts the server certificate");
        is_int(tap_runl(&crl_out, "openssl", "crl", "-noout", "-text", "-in", crl, "-CAfile", ca,
                        NULL),
               0, "openssl crl reads cacrl.pem");
        contains(crl_out, "verify OK", "  and verifies its signature with the CA");
        contains(crl_out, "No Revoked Certificates", "  it revokes nothing");
        contains(crl_out, "CRL Number", "  and has a CRL number");

        ca_ext = ossl_x509(ca, "-ext", "basicConstraints,keyUsage");
        contains(ca_ext, "Basic Constraints: critical", "CA: basicConstraints is critical");
        contains(ca_ext, "CA:TRUE, pathlen:0", "CA: CA:TRUE, pathlen:0");
        contains(ca_ext, "Key Usage: critical", "CA: keyUsage is critical");
        contains(ca_ext, "Certificate Sign, CRL Sign", "CA: keyCertSign and cRLSign");
        ski = ossl_x509(ca, "-ext", "subjectKeyIdentifier");
        contains(ski, "Subject Key Identifier", "CA: has a subject key identifier");
        aki = ossl_x509(srv, "-ext", "authorityKeyIdentifier");
        {
                char *id = ski ? strchr(ski, '\n') : NULL;

                id = id ? id + strspn(id, " \n") : NULL;
                if (id)
                        id[strcspn(id, "\n")] = '\0';
                ok(id && *id && strstr(aki, id),
                   "server: authorityKeyIdentifier is the CA's "
                   "key identifier %s",
                   id ? id : "(none)");
        }

        srv_ext =
            ossl_x509(srv, "-ext", "subjectAltName,extendedKeyUsage,keyUsage,basicConstraints");
        contains(srv_ext, "TLS Web Server Authentication", "server: EKU serverAuth");
        contains(srv_ext, "IP Address:127.0.0.1", "server: SAN 127.0.0.1 by default");
        contains(srv_ext, "IP Address:0:0:0:0:0:0:0:1", "server: SAN ::1 by default");
        contains(srv_ext, "DNS:localhost", "server: SAN localhost by default");
        if (gethostname(host, sizeof(host) - 1) == 0 && strcmp(host, "localhost") &&
            vg_ca_san_validate(host, NULL) == 0) {
                _cleanup_free_ char *want = tap_strf("DNS:%s", host);

                contains(srv_ext, want, "server: SAN with the host name by default");
        } else {
                tap_skip("the host name is not a DNS name", "server: SAN with the host name");
        }
        contains(srv_ext, "CA:FALSE", "server: CA:FALSE");
        contains(srv_ext, "Digital Signature", "server: keyUsage digitalSignature");
        cli_ext = ossl_x509(cli, "-ext", "subjectAltName,extendedKeyUsage");
        contains(cli_ext, "TLS Web Client Authentication", "client: EKU clientAuth");
        ok(cli_ext && !strstr(cli_ext, "Server Authentication"), "client: no serverAuth");
        ok(cli_ext && !strstr(cli_ext, "Alternative Name"), "client: no SANs by default");

        ok(ossl_key_matches(srv, srv_key, NULL), "server-private.pem is server-cert.crt's key");
        ok(ossl_key_matches(cli, cli_key, NULL), "client-private.pem is client-cert.crt's key");
        ok(!ossl_key_matches(srv, cli_key, NULL), "(the oracle tells keys apart)");
        before = ossl_x509(srv, "-text", NULL);
        contains(before, "NIST CURVE: P-256", "the server key is ec:P-256 as asked");
        contains(before, "ecdsa-with-SHA256", "signed with ECDSA-SHA256");

        s_ca = ossl_serial(ca);
        s_srv = ossl_serial(srv);
        s_cli = ossl_serial(cli);
        ok(strlen(s_srv) >= 16 && strlen(s_srv) <= 40, "serial %s is 64 to 160 bits", s_srv);
        ok(strlen(s_srv) < 40 || s_srv[0] < '8', "serial %s is positive in 20 octets", s_srv);
        ok(strcmp(s_ca, s_srv) && strcmp(s_srv, s_cli) && strcmp(s_ca, s_cli),
           "the three serials differ");

        is_int(ossl_valid_in_days(ca, 3649), 0,
               "the CA is valid for 3650 days (Keylime's default)");
        ok(ossl_valid_in_days(ca, 3651) != 0, "  and not longer");
        is_int(ossl_valid_in_days(srv, 364), 0, "the server certificate is valid for 365 days");
        ok(ossl_valid_in_days(srv, 366) != 0, "  and not longer");

        /* vg_ca_list describes what openssl sees. */
        is_int(vg_ca_list(dir, &l, &err), 0, "vg_ca_list reads the directory");
        is_str(l.ca.serial, s_ca, "  the CA's serial is what openssl prints");
        is_int(l.ca.status, VG_CA_CERT_OK, "  the CA is ok");
        ok(l.ca.is_ca, "  and is a CA");
        is_int(l.n_certs, 2, "  two certificates");
        if (l.n_certs == 2) {
                is_str(l.certs[0].name, "client", "  client first");
                is_str(l.certs[1].name, "server", "  then server");
                is_str(l.certs[1].serial, s_srv, "  the server's serial matches openssl's");
                is_str(l.certs[1].subject, "CN=server", "  its subject is CN=server");
                contains(l.certs[1].sans, "IP:127.0.0.1, IP:::1, DNS:localhost",
                         "  its SANs are listed");
                ok(l.certs[1].server_auth && !l.certs[1].client_auth, "  serverAuth only");
                ok(l.certs[0].client_auth && !l.certs[0].server_auth, "  client: clientAuth only");
                is_int(l.certs[0].status, VG_CA_CERT_OK, "  the client certificate is ok");
                is_str(l.certs[0].key_type, "ec:P-256", "  and its key is ec:P-256");
        }
        ok(l.have_crl && l.crl_ok && l.crl_revoked == 0, "  the CRL is there, signed, empty");

        /* Refuse to replace the CA; replace it with force. */
        free(before);
        before = tap_read_file(ca, NULL);
        err = (struct vg_error){ 0 };
        is_int(vg_ca_init(dir, &p, &err), -EEXIST, "a second vg_ca_init is refused");
        contains(err.msg, "cacert.crt already exists; refusing to overwrite it",
                 "  naming the file");
        after = tap_read_file(ca, NULL);
        is_str(after, before, "  and cacert.crt is unchanged");
        is_int(hidden_files(dir), 0, "  and nothing is left behind");
        p.force = true;
        is_int(vg_ca_init(dir, &p, &err), 0, "with force it replaces the CA");
        free(after);
        after = tap_read_file(ca, NULL);
        ok(after && before && strcmp(after, before), "  cacert.crt is a new one");
        is_int(ossl_verify(ca, "sslserver", srv), 0, "  and the new server certificate verifies");
}

/* Keylime compatibility: the default key type is RSA-2048. */
static void test_default_rsa(const char *base)
{
        _cleanup_free_ char *dir = tap_strf("%s/rsa", base);
        _cleanup_free_ char *ca = tap_strf("%s/cacert.crt", dir);
        _cleanup_free_ char *srv = tap_strf("%s/server-cert.crt", dir);
        _cleanup_free_ char *cli = tap_strf("%s/client-cert.crt", dir);
        _cleanup_free_ char *text = NULL, *ext = NULL;
        struct vg_ca_init_params p = { 0 };
        struct vg_error err = { 0 };

        is_ok(vg_ca_init(dir, &p, &err), err, "vg_ca_init with the defaults");
        text = ossl_x509(srv, "-text", NULL);
        contains(text, "Public-Key: (2048 bit)", "the server key is RSA-2048");
        contains(text, "sha256WithRSAEncryption", "signed with RSA-SHA256");
        ext = ossl_x509(srv, "-ext", "keyUsage");
        contains(ext, "Digital Signature, Key Encipherment", "RSA: keyEncipherment for TLS 1.2");
        is_int(ossl_verify(ca, "sslserver", srv), 0, "openssl verify accepts the RSA server");
        is_int(ossl_verify(ca, "sslclient", cli), 0, "openssl verify accepts the RSA client");
}

static void test_issue(const char *base)
{
        static const char *const sans[] = { "IP:10.1.2.3", "DNS:node.example", NULL };
        _cleanup_free_ char *dir = tap_strf("%s/issue", base);
        _cleanup_free_ char *out_dir = tap_strf("%s/issue-out", base);
        _cleanup_free_ char *ca_path = tap_strf("%s/cacert.crt", dir);
        _cleanup_free_ char *node = tap_strf("%s/node-cert.crt", dir);
        _cleanup_free_ char *node_key = tap_strf("%s/node-private.pem", dir);
        _cleanup_free_ char *admin = tap_strf("%s/admin-cert.crt", out_dir);
        _cleanup_free_ char *admin_key = tap_strf("%s/admin-private.pem", out_dir);
        _cleanup_free_ char *ext = NULL, *text = NULL, *before = NULL, *after = NULL;
        _cleanup_(vg_ca_freep) struct vg_ca *ca = NULL;
        _cleanup_(vg_ca_freep) struct vg_ca *loaded = NULL;
        _cleanup_(vg_ca_issued_freep) struct vg_ca_issued *c = NULL;
        _cleanup_(vg_ca_issued_freep) struct vg_ca_issued *c2 = NULL;
        _cleanup_(vg_ca_issued_freep) struct vg_ca_issued *c3 = NULL;
        struct vg_ca_params cap = { .key_type = VG_CA_KEY_EC_P256, .cn = "test CA", .days = 30 };
        struct vg_ca_issue_params ip = {
                .usage = VG_CA_SERVER,
                .cn = "node.example",
                .sans = sans,
                .key_type = VG_CA_KEY_EC_P384,
                .days = 10,
        };
        struct vg_ca_cert_info info, ca_info;
        struct vg_error err = { 0 };

        is_ok(vg_ca_new(&cap, &ca, &err), err, "vg_ca_new");
        is_ok(vg_ca_save(ca, dir, NULL, &err), err, "vg_ca_save writes it");
        is_ok(vg_ca_load(dir, NULL, &loaded, &err), err, "vg_ca_load reads it back");
        if (!loaded)
                return;
        is_ok(vg_ca_issue(loaded, &ip, &c, &err), err, "vg_ca_issue: a server certificate");
        is_ok(vg_ca_issued_save(c, dir, "node", NULL, &err), err, "  saved as node");
        is_int(ossl_verify(ca_path, "sslserver", node), 0,
               "openssl verify -purpose sslserver "
               "accepts it");
        ext = ossl_x509(node, "-ext", "subjectAltName");
        contains(ext, "IP Address:10.1.2.3, DNS:node.example", "exactly the SANs asked for");
        ok(ext && !strstr(ext, "localhost"), "  and not the defaults");
        text = ossl_x509(node, "-text", NULL);
        contains(text, "NIST CURVE: P-384", "the key is ec:P-384 as asked");
        contains(text, "Subject: CN = node.example", "the subject is CN=node.example");
        contains(text, "Issuer: CN = test CA", "the issuer is the CA");
        is_int(ossl_valid_in_days(node, 9), 0, "valid for the 10 days asked");
        ok(ossl_valid_in_days(node, 11) != 0, "  and not longer");
        ok(ossl_key_matches(node, node_key, NULL), "node-private.pem is its key");
        is_int(tap_file_mode(node_key), 0600, "the key is 0600");

        err = (struct vg_error){ 0 };
        before = tap_read_file(node, NULL);
        is_int(vg_ca_issued_save(c, dir, "node", NULL, &err), -EEXIST,
               "saving over node-cert.crt is refused");
        contains(err.msg, "node-cert.crt already exists", "  naming the certificate");
        after = tap_read_file(node, NULL);
        is_str(after, before, "  and the file is unchanged");

        /* A client certificate in another directory; its key type follows the request. */
        ip = (struct vg_ca_issue_params){ .usage = VG_CA_CLIENT,
                                          .cn = "admin",
                                          .key_type = VG_CA_KEY_RSA2048 };
        is_int(vg_ca_issue(loaded, &ip, &c2, &err), 0, "vg_ca_issue: an RSA client certificate");
        is_ok(vg_ca_issued_save(c2, out_dir, "admin", NULL, &err), err,
              "  saved to another directory");
        is_int(tap_file_mode(out_dir), 0700, "  which is created 0700");
        is_int(ossl_verify(ca_path, "sslclient", admin), 0,
               "openssl verify -purpose sslclient "
               "accepts it");
        ok(ossl_key_matches(admin, admin_key, NULL), "  with its key");

        /* Never past the CA's expiry; with AUTO the key follows the CA's type. */
        ip = (struct vg_ca_issue_params){ .usage = VG_CA_CLIENT, .cn = "long", .days = 365 };
        is_int(vg_ca_issue(loaded, &ip, &c3, &err), 0, "a 365-day certificate from a 30-day CA");
        vg_ca_issued_info(c3, &info);
        vg_ca_info(loaded, &ca_info);
        is_int(info.not_after, ca_info.not_after, "  ends when the CA does");
        is_str(info.key_type, "ec:P-256", "  and has the CA's key type");
        ok(info.client_auth && !info.server_auth && !info.is_ca, "  a client certificate");

        err = (struct vg_error){ 0 };
        ip = (struct vg_ca_issue_params){ .usage = VG_CA_SERVER, .cn = "x", .days = 40000 };
        vg_ca_issued_free(c3);
        c3 = NULL;
        is_int(vg_ca_issue(loaded, &ip, &c3, &err), -EINVAL, "40000 days is refused");
        contains(err.msg, "expected a lifetime of 1 to 36500 days", "  saying the limit");
        ip = (struct vg_ca_issue_params){ .usage = VG_CA_SERVER, .cn = NULL };
        is_int(vg_ca_issue(loaded, &ip, &c3, NULL), -EINVAL, "no common name is refused");
}

static void test_load_errors(const char *base)
{
        _cleanup_free_ char *good = tap_strf("%s/good", base);
        _cleanup_free_ char *other = tap_strf("%s/other", base);
        _cleanup_free_ char *bad = tap_strf("%s/bad", base);
        _cleanup_free_ char *empty = tap_strf("%s/empty", base);
        _cleanup_free_ char *missing = tap_strf("%s/missing", base);
        _cleanup_free_ char *old = tap_strf("%s/old", base);
        _cleanup_free_ char *from = NULL, *to = NULL;
        _cleanup_(vg_ca_freep) struct vg_ca *ca = NULL;
        _cleanup_(vg_ca_freep) struct vg_ca *expired = NULL;
        struct vg_ca_init_params p = { .key_type = VG_CA_KEY_EC_P256 };
        struct vg_ca_params old_p = { .key_type = VG_CA_KEY_EC_P256,
                                      .not_before = time(NULL) - 20 * DAY,
                                      .days = 10 };
        struct vg_error err = { 0 };

        if (vg_ca_init(good, &p, &err) < 0 || vg_ca_init(other, &p, &err) < 0 ||
            vg_ca_init(bad, &p, &err) < 0 || mkdir(empty, 0700) < 0)
                tap_bail("cannot set up: %s", err.msg);

        is_int(vg_ca_load(missing, NULL, &ca, &err), -ENOENT, "loading a missing directory fails");
        contains(err.msg, "expected a CA directory, found nothing", "  saying so");
        is_int(vg_ca_load(empty, NULL, &ca, &err), -ENOENT, "loading an empty directory fails");
        contains(err.msg, "found no cacert.crt", "  saying what is missing");

        /* The key of another CA. */
        from = tap_strf("%s/ca-private.pem", other);
        to = tap_strf("%s/ca-private.pem", bad);
        tap_copy_file(from, to);
        err = (struct vg_error){ 0 };
        is_int(vg_ca_load(bad, NULL, &ca, &err), -EINVAL, "another CA's key is refused");
        contains(err.msg, "ca-private.pem does not match", "  naming the key file");
        contains(err.msg, "cacert.crt", "  and the certificate");

        /* A key file that is no key. */
        tap_write_file(to, "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n");
        err = (struct vg_error){ 0 };
        is_int(vg_ca_load(bad, NULL, &ca, &err), -EBADMSG, "a garbage key file is refused");
        contains(err.msg, "ca-private.pem: expected a PEM private key", "  naming the file");

        /* A server certificate (with its own key) in the CA's place. */
        free(from), free(to);
        from = tap_strf("%s/server-private.pem", good);
        to = tap_strf("%s/ca-private.pem", bad);
        tap_copy_file(from, to);
        free(from), free(to);
        from = tap_strf("%s/server-cert.crt", good);
        to = tap_strf("%s/cacert.crt", bad);
        tap_copy_file(from, to);
        err = (struct vg_error){ 0 };
        is_int(vg_ca_load(bad, NULL, &ca, &err), -EINVAL, "an end-entity certificate is no CA");
        contains(err.msg, "cacert.crt: expected a CA certificate (basicConstraints CA:TRUE)",
                 "  saying what was expected");
        contains(err.msg, "CN=server", "  and what was found");

        tap_write_file(to, "hello\n");
        err = (struct vg_error){ 0 };
        is_int(vg_ca_load(bad, NULL, &ca, &err), -EBADMSG, "a garbage cacert.crt is refused");
        contains(err.msg, "cacert.crt: expected a PEM certificate", "  naming the file");

        /* A CA that expired ten days ago: valid from 20 days ago for 10 days. */
        is_int(vg_ca_new(&old_p, &expired, &err), 0, "an already expired CA can be made");
        is_int(vg_ca_save(expired, old, NULL, &err), 0, "  and saved");
        err = (struct vg_error){ 0 };
        is_int(vg_ca_load(old, NULL, &ca, &err), -EKEYEXPIRED, "loading it for issuing fails");
        contains(err.msg, "the CA expired on", "  saying when it expired");
        contains(err.msg, "cacert.crt", "  naming the file");
        ok(ca == NULL, "  and returns no CA");
}

static void test_listing(const char *base)
{
        _cleanup_free_ char *dir = tap_strf("%s/list", base);
        _cleanup_free_ char *other = tap_strf("%s/list-other", base);
        _cleanup_free_ char *from = tap_strf("%s/server-cert.crt", other);
        _cleanup_free_ char *to = tap_strf("%s/stranger-cert.crt", dir);
        _cleanup_free_ char *junk = tap_strf("%s/junk-cert.crt", dir);
        _cleanup_free_ char *ignored = tap_strf("%s/notes.txt", dir);
        _cleanup_(vg_ca_freep) struct vg_ca *ca = NULL;
        _cleanup_(vg_ca_issued_freep) struct vg_ca_issued *c = NULL;
        _cleanup_(vg_ca_listing_clear) struct vg_ca_listing l = { 0 };
        struct vg_ca_init_params p = { .key_type = VG_CA_KEY_EC_P256 };
        struct vg_ca_issue_params ip = {
                .usage = VG_CA_CLIENT, .cn = "old", .not_before = time(NULL) - 20 * DAY, .days = 10
        };
        struct vg_error err = { 0 };
        const char *want[] = { "client", "junk", "old", "server", "stranger" };

        if (vg_ca_init(dir, &p, &err) < 0 || vg_ca_init(other, &p, &err) < 0)
                tap_bail("cannot set up: %s", err.msg);
        tap_copy_file(from, to);
        tap_write_file(junk, "not a certificate\n");
        tap_write_file(ignored, "x\n");
        if (vg_ca_load(dir, NULL, &ca, &err) < 0 || vg_ca_issue(ca, &ip, &c, &err) < 0 ||
            vg_ca_issued_save(c, dir, "old", NULL, &err) < 0)
                tap_bail("cannot issue: %s", err.msg);

        is_ok(vg_ca_list(dir, &l, &err), err, "vg_ca_list");
        is_int(l.n_certs, VG_ARRAY_SIZE(want), "every NAME-cert.crt is listed, nothing else");
        for (size_t i = 0; i < l.n_certs && i < VG_ARRAY_SIZE(want); i++)
                is_str(l.certs[i].name, want[i], "  #%zu is %s", i, want[i]);
        if (l.n_certs != VG_ARRAY_SIZE(want))
                return;
        is_int(l.certs[1].status, VG_CA_CERT_UNREADABLE, "junk: unreadable");
        contains(l.certs[1].problem, "expected a PEM certificate", "  saying why");
        is_int(l.certs[2].status, VG_CA_CERT_EXPIRED, "old: expired");
        contains(l.certs[2].problem, "expired on", "  saying when");
        is_int(l.certs[4].status, VG_CA_CERT_FOREIGN, "stranger: not issued by this CA");
        contains(l.certs[4].problem, "with another key", "  (same name, another key)");
        is_int(l.certs[3].status, VG_CA_CERT_OK, "server: ok");
}

/* Encrypted keys, and a second TLS stack as the oracle: python3's ssl module loads the
 * encrypted keys and completes a mutual-TLS handshake with host name checking. */
static const char handshake_py[] =
    "import ssl, socket, sys, threading\n"
    "d, pw, host = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "srv.load_cert_chain(d + '/server-cert.crt', d + '/server-private.pem', password=pw)\n"
    "srv.load_verify_locations(d + '/cacert.crt')\n"
    "srv.verify_mode = ssl.CERT_REQUIRED\n"
    "cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
    "cli.load_cert_chain(d + '/client-cert.crt', d + '/client-private.pem', password=pw)\n"
    "cli.load_verify_locations(d + '/cacert.crt')\n"
    "ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(1)\n"
    "peer = {}\n"
    "def serve():\n"
    "    c, _ = ls.accept()\n"
    "    try:\n"
    "        with srv.wrap_socket(c, server_side=True) as s:\n"
    "            peer['cn'] = dict(x[0] for x in s.getpeercert()['subject'])['commonName']\n"
    "            s.sendall(b'hello')\n"
    "    except Exception as e:\n"
    "        peer['err'] = str(e)\n"
    "t = threading.Thread(target=serve); t.start()\n"
    "with socket.create_connection(ls.getsockname()) as c:\n"
    "    with cli.wrap_socket(c, server_hostname=host) as s:\n"
    "        data = s.recv(5)\n"
    "t.join()\n"
    "print('server saw client', peer.get('cn'), peer.get('err', ''))\n"
    "print('client got', data.decode())\n";

static void test_password(const char *base)
{
        _cleanup_free_ char *dir = tap_strf("%s/secret", base);
        _cleanup_free_ char *key = tap_strf("%s/server-private.pem", dir);
        _cleanup_free_ char *cert = tap_strf("%s/server-cert.crt", dir);
        _cleanup_free_ char *pem = NULL, *out = NULL;
        _cleanup_(vg_ca_freep) struct vg_ca *ca = NULL;
        struct vg_ca_init_params p = { .key_type = VG_CA_KEY_EC_P256, .password = "s3cret" };
        struct vg_error err = { 0 };

        is_ok(vg_ca_init(dir, &p, &err), err, "vg_ca_init with a password");
        pem = tap_read_file(key, NULL);
        contains(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----", "the keys are encrypted PKCS#8");
        ok(ossl_key_matches(cert, key, "pass:s3cret"),
           "openssl decrypts the key with the password");
        ok(!ossl_key_matches(cert, key, "pass:wrong"), "  and not with another");

        is_int(vg_ca_load(dir, NULL, &ca, &err), -EACCES, "loading without a password fails");
        contains(err.msg, "ca-private.pem: the key is encrypted; expected a password",
                 "  saying a password is needed");
        err = (struct vg_error){ 0 };
        is_int(vg_ca_load(dir, "wrong", &ca, &err), -EACCES, "a wrong password fails");
        contains(err.msg, "wrong password", "  saying so");
        is_int(vg_ca_load(dir, "s3cret", &ca, &err), 0, "the right password loads the CA");

        if (tap_runl(NULL, "python3", "-c", "import ssl", NULL) != 0) {
                tap_skip("python3 with ssl is not available", "python3 mTLS handshake");
                return;
        }
        is_int(tap_runl(&out, "python3", "-c", handshake_py, dir, "s3cret", "localhost", NULL), 0,
               "python3 ssl: a mutual-TLS handshake with host name 'localhost'");
        contains(out, "server saw client client", "  the server authenticated the client");
        contains(out, "client got hello", "  the client authenticated the server");
        free(out);
        out = NULL;
        ok(tap_runl(&out, "python3", "-c", handshake_py, dir, "s3cret", "elsewhere.example",
                    NULL) != 0,
           "python3 ssl: a host name not in the SANs is refused");
        contains(out, "match", "  as a host name mismatch");
}

int main(void)
{
        _cleanup_free_ char *base = tap_tmpdir();

        test_parsers();
        test_init_layout(base);
        test_default_rsa(base);
        test_issue(base);
        test_load_errors(base);
        test_listing(base);
        test_password(base);
        return tap_done();
}
