/* vigil tests: Keylime payload delivery (U/V halves, AES-GCM, zip, autorun) and revocation
 * notifications, with the openssl CLI and zip as independent oracles. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include "cleanup.h"
#include "encoding.h"
#include "payload.h"
#include "revocation.h"
#include "tap.h"

#define UUID "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"

VG_DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)

static char *dir; /* test-wide temporary directory, set once in main */

/* dir/name, newly allocated. */
static char *pathf(const char *name)
{
        char *p = NULL;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                tap_bail("out of memory");
        return p;
}

static int sh(const char *cmd, char **output)
{
        char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)cmd, NULL };

        return tap_run(argv, output);
}

static bool exists(const char *path)
{
        struct stat sb;

        return lstat(path, &sb) == 0;
}

static EVP_PKEY *load_key(const char *path, bool priv)
{
        BIO *bio = BIO_new_file(path, "r");
        EVP_PKEY *k;

        if (!bio)
                tap_bail("cannot open %s", path);
        k = priv ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                 : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
        if (!k)
                tap_bail("cannot load %s", path);
        return k;
}

static void gen_key(const char *name)
{
        char cmd[1024];

        snprintf(cmd, sizeof(cmd),
                 "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s/%s.pem "
                 "&& openssl pkey -in %s/%s.pem -pubout -out %s/%s.pub",
                 dir, name, dir, name, dir, name);
        if (sh(cmd, NULL) != 0)
                tap_bail("openssl genpkey failed");
}

/* Send both halves of a bundle to st in the given order. */
static int send_pair(struct vg_payload_state *st, EVP_PKEY *pub, const struct vg_payload_bundle *b,
                     bool u_first, struct vg_error *err)
{
        _cleanup_free_ char *eu = NULL, *ev = NULL;
        int r;

        if (vg_payload_encrypt_half(pub, b->u, &eu, err) < 0 ||
            vg_payload_encrypt_half(pub, b->v, &ev, err) < 0)
                return -EIO;
        if (u_first) {
                r = vg_payload_add_u(st, eu, b->auth_tag_hex, b->payload_b64, err);
                if (r == 0)
                        r = vg_payload_add_v(st, ev, err);
        } else {
                r = vg_payload_add_v(st, ev, err);
                if (r == 0)
                        r = vg_payload_add_u(st, eu, b->auth_tag_hex, b->payload_b64, err);
        }
        return r;
}

static struct vg_payload_config config(const char *secure)
{
        return (struct vg_payload_config){
                .secure_dir = secure,
                .enc_keyname = "derived_tci_key",
                .dec_payload_file = "decrypted_payload",
                .extract_zip = true,
                .payload_script = "autorun.sh",
                .allow_script = true,
                .script_timeout_s = 10,
        };
}

enum ent_type { ENT_FILE, ENT_DIR, ENT_SYMLINK };
struct ent {
        const char *name;
        enum ent_type type;
        const char *data; /* content, or link target */
};

/* A zip written with libarchive, so that the test controls every hostile detail. */
static uint8_t *make_zip(const struct ent *ents, size_t n, size_t *len)
{
        _cleanup_free_ char *path = pathf("tmp.zip");
        struct archive *a = archive_write_new();
        uint8_t *data;

        archive_write_set_format_zip(a);
        if (archive_write_open_filename(a, path) != ARCHIVE_OK)
                tap_bail("archive_write_open_filename: %s", archive_error_string(a));
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                size_t size = ents[i].type == ENT_FILE ? strlen(ents[i].data) : 0;

                archive_entry_set_pathname(e, ents[i].name);
                archive_entry_set_perm(e, 0644);
                switch (ents[i].type) {
                case ENT_FILE:
                        archive_entry_set_filetype(e, AE_IFREG);
                        break;
                case ENT_DIR:
                        archive_entry_set_filetype(e, AE_IFDIR);
                        break;
                case ENT_SYMLINK:
                        archive_entry_set_filetype(e, AE_IFLNK);
                        archive_entry_set_symlink(e, ents[i].data);
                        break;
                }
                archive_entry_set_size(e, (la_int64_t)size);
                if (archive_write_header(a, e) != ARCHIVE_OK)
                        tap_bail("zip header %s: %s", ents[i].name, archive_error_string(a));
                if (size && archive_write_data(a, ents[i].data, size) != (la_ssize_t)size)
                        tap_bail("zip data %s", ents[i].name);
                archive_entry_free(e);
        }
        archive_write_close(a);
        archive_write_free(a);
        data = (uint8_t *)tap_read_file(path, len);
        unlink(path);
        return data;
}

/* Tenant bundle -> agent state -> deliver. */
static int deliver(EVP_PKEY *nk, EVP_PKEY *pub, const void *data, size_t len,
                   const struct vg_payload_config *cfg, int *status, struct vg_error *err)
{
        _cleanup_(vg_payload_state_freep) struct vg_payload_state *st = NULL;
        struct vg_payload_bundle b;
        int r;

        if (vg_payload_bundle_new(data, len, UUID, &b, err) < 0)
                return -EIO;
        vg_payload_state_new(nk, UUID, &st);
        r = send_pair(st, pub, &b, true, err);
        if (r == 0)
                r = vg_payload_deliver(st, cfg, status, err);
        vg_payload_bundle_clear(&b);
        return r;
}

/* keylime_tenant -f takes any file: one that is not a zip is delivered as it is, even with
 * extract_payload_zip on (the guide's `-f payload1`); a damaged zip is still refused. */
static void test_plain_file_payload(EVP_PKEY *nk, EVP_PKEY *pub)
{
        static const char data[] = "#!/bin/sh\necho payload1\n";
        static const char damaged[] = "PK\x03\x04 not really a zip";
        _cleanup_free_ char *secure = pathf("plain"), *secure2 = pathf("damaged");
        _cleanup_free_ char *ppath = tap_strf("%s/unzipped/decrypted_payload", secure);
        _cleanup_free_ char *p = NULL;
        struct vg_payload_config cfg = config(secure), cfg2 = config(secure2);
        struct vg_error err = { 0 };
        size_t plen = 0;
        int status = 0;

        cfg.extract_zip = cfg2.extract_zip = true;
        is_int(deliver(nk, pub, data, strlen(data), &cfg, &status, &err), 0,
               "a plain file is delivered with extract_payload_zip on (%s)", vg_error_str(&err));
        p = tap_read_file(ppath, &plen);
        is_mem(p, plen, data, strlen(data), "decrypted_payload holds it");
        ok(deliver(nk, pub, damaged, sizeof(damaged) - 1, &cfg2, &status, &err) < 0,
           "a damaged zip is refused");
        contains(vg_error_str(&err), "zip", "the error says it is the zip (%s)",
                 vg_error_str(&err));
}

static void test_round_trip(EVP_PKEY *nk, EVP_PKEY *pub)
{
        static const char data[] = "secret payload\0with a NUL and \xff bytes";
        for (int order = 0; order < 2; order++) {
                _cleanup_(vg_payload_state_freep) struct vg_payload_state *st = NULL;
                _cleanup_free_ char *secure = pathf(order ? "rt1" : "rt0");
                _cleanup_free_ char *kpath = NULL, *ppath = NULL, *k = NULL, *p = NULL;
                struct vg_payload_config cfg = config(secure);
                struct vg_error err = { 0 };
                struct vg_payload_bundle b;
                size_t klen = 0, plen = 0;
                int status = 0;

                ok(vg_payload_bundle_new(data, sizeof(data), UUID, &b, &err) == 0, "bundle");
                vg_payload_state_new(nk, UUID, &st);
                is_int(send_pair(st, pub, &b, order == 0, &err), 0, "%s first: pair accepted (%s)",
                       order ? "V" : "U", vg_error_str(&err));
                ok(vg_payload_have_key(st), "%s first: K available", order ? "V" : "U");
                cfg.extract_zip = false;
                is_int(vg_payload_deliver(st, &cfg, &status, &err), 0, "deliver (%s)",
                       vg_error_str(&err));
                is_int(status, -1, "no script ran");
                if (asprintf(&kpath, "%s/unzipped/derived_tci_key", secure) < 0 ||
                    asprintf(&ppath, "%s/unzipped/decrypted_payload", secure) < 0)
                        tap_bail("oom");
                k = tap_read_file(kpath, &klen);
                p = tap_read_file(ppath, &plen);
                is_mem(k, klen, b.k, sizeof(b.k), "enc_keyname holds K");
                is_mem(p, plen, data, sizeof(data), "decrypted payload is byte-exact");
                {
                        struct stat sb;

                        ok(stat(ppath, &sb) == 0 && (sb.st_mode & 0777) == 0600,
                           "plaintext is 0600");
                        ok(stat(secure, &sb) == 0 && (sb.st_mode & 0777) == 0700,
                           "secure dir is 0700");
                }
                vg_payload_bundle_clear(&b);
        }
}

static void test_wrong_tag(EVP_PKEY *nk, EVP_PKEY *pub)
{
        _cleanup_(vg_payload_state_freep) struct vg_payload_state *st = NULL;
        _cleanup_free_ char *secure = pathf("wrongtag");
        _cleanup_free_ char *eu = NULL, *ev = NULL;
        struct vg_payload_config cfg = config(secure);
        struct vg_payload_bundle b, other;
        struct vg_error err = { 0 };
        int status = 0;

        vg_payload_bundle_new("x", 1, UUID, &b, &err);
        vg_payload_bundle_new(NULL, 0, "another-uuid", &other, &err);
        vg_payload_state_new(nk, UUID, &st);
        vg_payload_encrypt_half(pub, b.u, &eu, &err);
        vg_payload_encrypt_half(pub, b.v, &ev, &err);
        is_int(vg_payload_add_u(st, eu, other.auth_tag_hex, b.payload_b64, &err), 0,
               "U with a wrong auth_tag is held until V arrives");
        is_int(vg_payload_add_v(st, ev, &err), -EKEYREJECTED, "V completing a wrong pair refused");
        contains(vg_error_str(&err), "auth_tag", "error names the auth_tag");
        ok(!vg_payload_have_key(st), "no K after a mismatch");
        is_int(vg_payload_deliver(st, &cfg, &status, &err), -EAGAIN, "nothing to deliver");
        ok(!exists(secure), "nothing written");
        /* The halves were discarded: the right U alone must not complete a key. */
        is_int(vg_payload_add_u(st, eu, b.auth_tag_hex, b.payload_b64, &err), 0, "right U");
        ok(!vg_payload_have_key(st), "the discarded V does not pair with the right U");
        is_int(vg_payload_add_v(st, ev, &err), 0, "right V");
        ok(vg_payload_have_key(st), "a fresh right pair works");
        vg_payload_bundle_clear(&b);
        vg_payload_bundle_clear(&other);
}

static void test_foreign_v(EVP_PKEY *nk, EVP_PKEY *pub)
{
        _cleanup_(vg_payload_state_freep) struct vg_payload_state *st = NULL;
        _cleanup_free_ char *eu = NULL, *ev = NULL, *ev2 = NULL, *eu2 = NULL;
        struct vg_payload_bundle a, b;
        struct vg_error err = { 0 };
        char h1[97], h2[97];

        vg_payload_bundle_new(NULL, 0, UUID, &a, &err);
        vg_payload_bundle_new(NULL, 0, UUID, &b, &err);
        vg_payload_state_new(nk, UUID, &st);
        vg_payload_encrypt_half(pub, a.u, &eu, &err);
        vg_payload_encrypt_half(pub, b.v, &ev, &err);
        vg_payload_encrypt_half(pub, a.v, &ev2, &err);
        vg_payload_encrypt_half(pub, b.u, &eu2, &err);
        vg_payload_add_u(st, eu, a.auth_tag_hex, NULL, &err);
        is_int(vg_payload_add_v(st, ev, &err), -EKEYREJECTED, "a V for another K is refused");
        ok(!vg_payload_have_key(st), "no K from a foreign V");
        is_int(vg_payload_verify_hmac(st, "challenge", h1, &err), -EAGAIN,
               "keys/verify before K: -EAGAIN");

        /* Re-keying: K_a stays until a whole new pair authenticates. */
        vg_payload_add_u(st, eu, a.auth_tag_hex, NULL, &err);
        vg_payload_add_v(st, ev2, &err);
        ok(vg_payload_have_key(st), "pair A gives K");
        vg_payload_verify_hmac(st, "challenge", h1, &err);
        is_int(vg_payload_add_v(st, ev, &err), 0, "a lone new V is accepted as pending");
        vg_payload_verify_hmac(st, "challenge", h2, &err);
        is_str(h2, h1, "a lone new half leaves K in force");
        is_int(vg_payload_add_u(st, eu2, b.auth_tag_hex, NULL, &err), 0, "new pair B completes");
        vg_payload_verify_hmac(st, "challenge", h2, &err);
        ok(strcmp(h1, h2) != 0, "K replaced by the new authenticated pair");
        vg_payload_bundle_clear(&a);
        vg_payload_bundle_clear(&b);
}

static void test_tampered(EVP_PKEY *nk, EVP_PKEY *pub)
{
        _cleanup_(vg_payload_state_freep) struct vg_payload_state *st = NULL;
        _cleanup_free_ char *secure = pathf("tampered");
        _cleanup_free_ uint8_t *raw = NULL;
        struct vg_payload_config cfg = config(secure);
        struct vg_payload_bundle b;
        struct vg_error err = { 0 };
        size_t len = 0;
        int status = 0;

        vg_payload_bundle_new("attack at dawn", 14, UUID, &b, &err);
        vg_b64_decode(b.payload_b64, strlen(b.payload_b64), VG_B64_STD, &raw, &len);
        raw[20] ^= 1; /* a ciphertext byte */
        free(b.payload_b64);
        b.payload_b64 = vg_b64_encode(raw, len, VG_B64_STD);
        vg_payload_state_new(nk, UUID, &st);
        is_int(send_pair(st, pub, &b, true, &err), 0, "key halves still fine");
        is_int(vg_payload_deliver(st, &cfg, &status, &err), -EBADMSG, "tampered payload refused");
        contains(vg_error_str(&err), "authentication", "error says the tag failed");
        {
                _cleanup_free_ char *u = NULL;

                if (asprintf(&u, "%s/unzipped", secure) < 0)
                        tap_bail("oom");
                ok(!exists(u), "no unzipped dir, no plaintext written");
        }
        vg_payload_bundle_clear(&b);
}

static void test_autorun(EVP_PKEY *nk, EVP_PKEY *pub)
{
        _cleanup_free_ char *src = pathf("zipsrc");
        _cleanup_free_ char *marker = pathf("autorun-marker");
        _cleanup_free_ char *secure = pathf("autorun");
        _cleanup_free_ char *secure2 = pathf("noscript");
        _cleanup_free_ char *cmd = NULL, *script = NULL, *zip = NULL, *out = NULL;
        struct vg_payload_config cfg = config(secure);
        struct vg_error err = { 0 };
        size_t len = 0;
        int status = 0;

        mkdir(src, 0700);
        /* The script proves it ran in unzipped/ with a clean environment and stdin /dev/null. */
        if (asprintf(&script, "%s/autorun.sh", src) < 0 ||
            asprintf(&cmd, "cd %s && zip -q ../payload.zip autorun.sh notes.txt", src) < 0)
                tap_bail("oom");
        {
                _cleanup_free_ char *body = NULL;

                if (asprintf(&body,
                             "echo \"$PATH|$HOME|$(cat derived_tci_key | wc -c)|"
                             "$(cat notes.txt)|$(cat)\" > %s\n",
                             marker) < 0)
                        tap_bail("oom");
                tap_write_file(script, body);
        }
        {
                _cleanup_free_ char *notes = pathf("zipsrc/notes.txt");

                tap_write_file(notes, "hello");
        }
        if (!getenv("VIGIL_NO_ZIP_CLI") && sh("command -v zip", NULL) == 0) {
                is_int(sh(cmd, &out), 0, "zip CLI made the payload");
        } else {
                free(cmd);
                if (asprintf(&cmd,
                             "cd %s && python3 -m zipfile -c ../payload.zip autorun.sh "
                             "notes.txt",
                             src) < 0)
                        tap_bail("oom");
                is_int(sh(cmd, &out), 0, "python zipfile made the payload");
        }
        {
                _cleanup_free_ char *zp = pathf("payload.zip");

                zip = tap_read_file(zp, &len);
        }
        is_int(deliver(nk, pub, zip, len, &cfg, &status, &err), 0, "zip payload delivered (%s)",
               vg_error_str(&err));
        is_int(status, 0, "autorun.sh exit status reported");
        {
                _cleanup_free_ char *m = tap_read_file(marker, NULL);

                is_str(m, "/usr/sbin:/usr/bin:/sbin:/bin||32|hello|\n",
                       "autorun.sh ran in unzipped/ with a clean environment");
        }
        unlink(marker);
        cfg = config(secure2);
        cfg.allow_script = false;
        is_int(deliver(nk, pub, zip, len, &cfg, &status, &err), 0, "delivered without mTLS");
        is_int(status, -1, "allow_script=false: no status");
        ok(!exists(marker), "allow_script=false: script not run");
        {
                _cleanup_free_ char *f = NULL;

                if (asprintf(&f, "%s/unzipped/notes.txt", secure2) < 0)
                        tap_bail("oom");
                ok(exists(f), "files still unzipped");
        }
}

static void test_zip_slip(EVP_PKEY *nk, EVP_PKEY *pub)
{
        static const struct {
                struct ent e;
                const char *why;
                const char *msg;
        } cases[] = {
                { { "../x", ENT_FILE, "owned" }, "dot-dot", "escape" },
                { { "a/../../x", ENT_FILE, "owned" }, "inner dot-dot", "escape" },
                { { "/tmp/vigil-abs-x", ENT_FILE, "owned" }, "absolute", "escape" },
                { { "etc", ENT_SYMLINK, "/etc" }, "symlink to /etc", "symbolic link" },
                { { "up", ENT_SYMLINK, "../.." }, "relative symlink up", "symbolic link" },
        };
        for (size_t i = 0; i < VG_ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *secure = NULL, *u = NULL, *outside = NULL;
                _cleanup_free_ uint8_t *zip = NULL;
                struct vg_error err = { 0 };
                struct ent ents[3] = { { "ok.txt", ENT_FILE, "fine" },
                                       cases[i].e,
                                       { "etc/passwd", ENT_FILE, "pwned" } };
                struct vg_payload_config cfg;
                size_t len = 0;
                int status = 0, r;

                if (asprintf(&secure, "%s/slip%zu", dir, i) < 0 ||
                    asprintf(&u, "%s/unzipped", secure) < 0 ||
                    asprintf(&outside, "%s/x", secure) < 0)
                        tap_bail("oom");
                cfg = config(secure);
                zip = make_zip(ents, 3, &len);
                r = deliver(nk, pub, zip, len, &cfg, &status, &err);
                is_int(r, -EPERM, "%s entry refused", cases[i].why);
                contains(vg_error_str(&err), cases[i].msg, "%s: clear error", cases[i].why);
                ok(!exists(outside) && !exists("/tmp/vigil-abs-x") && !exists(u),
                   "%s: nothing written outside, no partial unzipped/", cases[i].why);
        }
}

static void test_caps(EVP_PKEY *nk, EVP_PKEY *pub)
{
        _cleanup_free_ char *secure = pathf("caps");
        _cleanup_free_ char *big = malloc(70000);
        _cleanup_free_ uint8_t *zip = NULL, *zip2 = NULL;
        struct vg_payload_config cfg = config(secure);
        struct vg_error err = { 0 };
        static const struct ent many[] = {
                { "a", ENT_FILE, "x" }, { "b/", ENT_DIR, NULL }, { "b/c", ENT_FILE, "x" },
                { "d", ENT_FILE, "x" }, { "e", ENT_FILE, "x" },  { "f", ENT_FILE, "x" },
        };
        size_t len = 0;
        int status;

        memset(big, 'A', 69999); /* deflates to almost nothing */
        big[69999] = '\0';
        zip = make_zip(&(struct ent){ "bomb", ENT_FILE, big }, 1, &len);
        cfg.max_unzipped_bytes = 65536;
        is_int(deliver(nk, pub, zip, len, &cfg, &status, &err), -EFBIG, "expansion cap");
        contains(vg_error_str(&err), "more than 65536 bytes", "cap error names the limit");
        zip2 = make_zip(many, VG_ARRAY_SIZE(many), &len);
        cfg = config(secure);
        cfg.max_entries = 5;
        is_int(deliver(nk, pub, zip2, len, &cfg, &status, &err), -EFBIG, "entry-count cap");
        cfg.max_entries = 6;
        is_int(deliver(nk, pub, zip2, len, &cfg, &status, &err), 0, "at the cap is fine (%s)",
               vg_error_str(&err));
        {
                _cleanup_free_ char *c = NULL;
                struct stat sb;

                if (asprintf(&c, "%s/unzipped/b", secure) < 0)
                        tap_bail("oom");
                ok(stat(c, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & 0777) == 0700,
                   "directory entry extracted 0700");
        }
}

/* Gone, or a zombie waiting for a PID 1 that does not reap (containers). */
static bool process_dead(int pid)
{
        _cleanup_free_ char *path = NULL, *stat = NULL;
        char *paren;

        if (kill(pid, 0) < 0 && errno == ESRCH)
                return true;
        if (asprintf(&path, "/proc/%d/stat", pid) < 0)
                return false;
        stat = tap_read_file(path, NULL);
        paren = stat ? strrchr(stat, ')') : NULL;
        return !stat || (paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

static void test_timeout(EVP_PKEY *nk, EVP_PKEY *pub)
{
        _cleanup_free_ char *secure = pathf("timeout");
        _cleanup_free_ char *pidfile = pathf("bg.pid");
        _cleanup_free_ char *body = NULL, *pid = NULL;
        _cleanup_free_ uint8_t *zip = NULL;
        struct vg_payload_config cfg = config(secure);
        struct vg_error err = { 0 };
        struct timespec t0, t1;
        size_t len = 0;
        int status = 0;

        if (asprintf(&body, "sleep 60 &\necho $! > %s\nsleep 60\n", pidfile) < 0)
                tap_bail("oom");
        zip = make_zip(&(struct ent){ "autorun.sh", ENT_FILE, body }, 1, &len);
        cfg.script_timeout_s = 1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        is_int(deliver(nk, pub, zip, len, &cfg, &status, &err), 0, "delivered");
        clock_gettime(CLOCK_MONOTONIC, &t1);
        is_int(status, 128 + SIGKILL, "hung script killed, status 137");
        ok(t1.tv_sec - t0.tv_sec < 5, "killed at the timeout (%lds)",
           (long)(t1.tv_sec - t0.tv_sec));
        pid = tap_read_file(pidfile, NULL);
        /* SIGKILL is delivered at once, but a loaded machine may take a while to reap. */
        for (int i = 0; i < 250 && pid && !process_dead(atoi(pid)); i++)
                usleep(20 * 1000);
        ok(pid && process_dead(atoi(pid)), "its background child (same process group) is gone "
                                           "too");
}

static void test_verify_hmac(EVP_PKEY *nk, EVP_PKEY *pub)
{
        _cleanup_(vg_payload_state_freep) struct vg_payload_state *st = NULL;
        _cleanup_free_ char *khex = NULL, *cmd = NULL, *out = NULL;
        struct vg_payload_bundle b;
        struct vg_error err = { 0 };
        const char *challenge = "abcdefghij0123456789";
        char mine[97];

        vg_payload_bundle_new(NULL, 0, UUID, &b, &err);
        vg_payload_state_new(nk, UUID, &st);
        send_pair(st, pub, &b, false, &err);
        is_int(vg_payload_verify_hmac(st, challenge, mine, &err), 0, "keys/verify");
        khex = vg_hex_encode(b.k, sizeof(b.k));
        if (asprintf(&cmd,
                     "printf %%s '%s' | openssl dgst -sha384 -mac HMAC -macopt hexkey:%s "
                     "| sed 's/.*= //'",
                     challenge, khex) < 0)
                tap_bail("oom");
        is_int(sh(cmd, &out), 0, "openssl dgst -hmac");
        if (out && strchr(out, '\n'))
                *strchr(out, '\n') = '\0';
        is_str(mine, out, "HMAC-SHA384(K, challenge) matches openssl");
        /* And the tenant's auth_tag is HMAC(K, uuid), as openssl computes it. */
        free(out);
        out = NULL;
        free(cmd);
        if (asprintf(&cmd,
                     "printf %%s '%s' | openssl dgst -sha384 -mac HMAC -macopt hexkey:%s "
                     "| sed 's/.*= //'",
                     UUID, khex) < 0)
                tap_bail("oom");
        sh(cmd, &out);
        if (out && strchr(out, '\n'))
                *strchr(out, '\n') = '\0';
        is_str(b.auth_tag_hex, out, "auth_tag = HMAC-SHA384(K, uuid) per openssl");
        vg_payload_bundle_clear(&b);
}

static void test_oaep_interop(EVP_PKEY *nk, EVP_PKEY *pub)
{
        _cleanup_(vg_payload_state_freep) struct vg_payload_state *st = NULL;
        _cleanup_free_ char *half = pathf("u.bin"), *enc = pathf("u.enc");
        _cleanup_free_ char *cmd = NULL, *ct = NULL, *eu = NULL, *ev = NULL, *dec = NULL;
        struct vg_payload_bundle b;
        struct vg_error err = { 0 };
        size_t ct_len = 0, dec_len = 0;
        FILE *f;

        vg_payload_bundle_new(NULL, 0, UUID, &b, &err);
        f = fopen(half, "w");
        fwrite(b.u, 1, sizeof(b.u), f);
        fclose(f);
        if (asprintf(&cmd,
                     "openssl pkeyutl -encrypt -pubin -inkey %s/nk.pub -pkeyopt "
                     "rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -in %s -out %s",
                     dir, half, enc) < 0)
                tap_bail("oom");
        is_int(sh(cmd, NULL), 0, "openssl pkeyutl OAEP-SHA1 encrypt");
        ct = tap_read_file(enc, &ct_len);
        eu = vg_b64_encode(ct, ct_len, VG_B64_STD);
        vg_payload_encrypt_half(pub, b.v, &ev, &err);
        vg_payload_state_new(nk, UUID, &st);
        is_int(vg_payload_add_u(st, eu, b.auth_tag_hex, NULL, &err), 0,
               "U from openssl pkeyutl decrypts (%s)", vg_error_str(&err));
        vg_payload_add_v(st, ev, &err);
        ok(vg_payload_have_key(st), "and combines into K");

        /* Ours -> openssl pkeyutl -decrypt. */
        free(ct);
        ct = NULL;
        {
                _cleanup_free_ uint8_t *raw = NULL;
                size_t n = 0;

                vg_b64_decode(ev, strlen(ev), VG_B64_STD, &raw, &n);
                f = fopen(enc, "w");
                fwrite(raw, 1, n, f);
                fclose(f);
        }
        free(cmd);
        if (asprintf(&cmd,
                     "openssl pkeyutl -decrypt -inkey %s/nk.pem -pkeyopt "
                     "rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -in %s -out %s",
                     dir, enc, half) < 0)
                tap_bail("oom");
        is_int(sh(cmd, NULL), 0, "openssl pkeyutl decrypts our OAEP-SHA1");
        dec = tap_read_file(half, &dec_len);
        is_mem(dec, dec_len, b.v, sizeof(b.v), "the same 32 bytes");

        /* A half that is not 32 bytes is refused. */
        tap_write_file(half, "0123456789012345678901234567890"); /* 31 */
        free(cmd);
        if (asprintf(&cmd,
                     "openssl pkeyutl -encrypt -pubin -inkey %s/nk.pub -pkeyopt "
                     "rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -in %s -out %s",
                     dir, half, enc) < 0)
                tap_bail("oom");
        sh(cmd, NULL);
        ct = tap_read_file(enc, &ct_len);
        free(eu);
        eu = vg_b64_encode(ct, ct_len, VG_B64_STD);
        vg_payload_reset(st);
        is_int(vg_payload_add_v(st, eu, &err), -EINVAL, "a 31-byte half is refused");
        contains(vg_error_str(&err), "found 31 bytes", "error says what was found");
        is_int(vg_payload_add_v(st, "!!!", &err), -EINVAL, "bad base64 refused");
        is_int(vg_payload_add_u(st, ev, "abcd", NULL, &err), -EINVAL, "short auth_tag refused");
        vg_payload_bundle_clear(&b);
}

static void test_revocation(void)
{
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *rk = NULL, *rpub = NULL, *other = NULL;
        _cleanup_free_ char *actions = pathf("actions");
        _cleanup_free_ char *pay = pathf("payact");
        _cleanup_free_ char *sig = NULL, *sig_other = NULL, *cmd = NULL, *out = NULL;
        _cleanup_free_ char *msgfile = pathf("msg.json");
        const char *msg = "{\"type\": \"revocation\", \"agent_id\": \"" UUID "\", \"ip\": "
                          "\"127.0.0.1\", \"port\": 9002, \"event_id\": \"x\"}";
        char *acts[] = { (char *)"mark_a",  (char *)"fails",  (char *)"../evil",
                         (char *)".hidden", (char *)"mark_b", NULL };
        struct vg_revocation_actions_config cfg = {
                .actions_dir = actions,
                .actions = acts,
                .timeout_s = 10,
                .tmp_dir = dir,
        };
        struct vg_error err = { 0 };
        unsigned ran = 0, failed = 0;

        gen_key("rev");
        gen_key("other");
        {
                _cleanup_free_ char *p1 = pathf("rev.pem"), *p2 = pathf("rev.pub");
                _cleanup_free_ char *p3 = pathf("other.pem");

                rk = load_key(p1, true);
                rpub = load_key(p2, false);
                other = load_key(p3, true);
        }
        mkdir(actions, 0700);
        mkdir(pay, 0700);
        {
                static const char *names[] = { "mark_a", "mark_b", "fails", "pay_a" };

                for (size_t i = 0; i < VG_ARRAY_SIZE(names); i++) {
                        _cleanup_free_ char *p = NULL, *body = NULL;

                        if (asprintf(&p, "%s/%s", i == 3 ? pay : actions, names[i]) < 0 ||
                            asprintf(&body,
                                     i == 2 ? "#!/bin/sh\nexit 3\n"
                                            : "#!/bin/sh\ncat \"$1\" > %s/%s.out\n",
                                     dir, names[i]) < 0)
                                tap_bail("oom");
                        tap_write_file(p, body);
                        chmod(p, 0700);
                }
                if (asprintf(&cmd, "printf 'pay_a,\\n' > %s/action_list", pay) < 0)
                        tap_bail("oom");
                sh(cmd, NULL);
        }

        is_int(vg_revocation_sign(msg, rk, &sig, &err), 0, "sign");
        is_int(vg_revocation_verify(msg, sig, rpub, &err), 0, "our signature verifies");

        /* Independent oracle: openssl dgst with PSS, max salt. */
        tap_write_file(msgfile, msg);
        free(cmd);
        if (asprintf(&cmd,
                     "openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt "
                     "rsa_pss_saltlen:max -sign %s/rev.pem %s | base64 -w0",
                     dir, msgfile) < 0)
                tap_bail("oom");
        is_int(sh(cmd, &out), 0, "openssl dgst -sign");
        is_int(vg_revocation_verify(msg, out, rpub, &err), 0,
               "openssl's PSS signature verifies "
               "(%s)",
               vg_error_str(&err));
        free(out);
        out = NULL;
        free(cmd);
        if (asprintf(&cmd,
                     "printf %%s '%s' | base64 -d > %s/sig.bin && openssl dgst -sha256 "
                     "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max -verify "
                     "%s/rev.pub -signature %s/sig.bin %s",
                     sig, dir, dir, dir, msgfile) < 0)
                tap_bail("oom");
        is_int(sh(cmd, &out), 0, "openssl verifies ours with max salt: %s", out ? out : "");

        /* Forged: altered message, another key, garbage, unsigned. */
        vg_revocation_sign(msg, other, &sig_other, &err);
        is_int(vg_revocation_process(msg, sig_other, rpub, &cfg, &ran, &failed, &err), -EBADMSG,
               "signed by another key: refused");
        is_int(ran, 0, "and nothing ran");
        is_int(vg_revocation_process("{\"type\": \"x\"}", sig, rpub, &cfg, &ran, &failed, &err),
               -EBADMSG, "altered message refused");
        is_int(vg_revocation_process(msg, "", rpub, &cfg, &ran, &failed, &err), -EBADMSG,
               "unsigned refused");
        {
                _cleanup_free_ char *a = pathf("mark_a.out");

                ok(!exists(a), "forged notifications ran no action");
        }

        cfg.payload_action_list = NULL;
        {
                _cleanup_free_ char *al = NULL;

                if (asprintf(&al, "%s/action_list", pay) < 0)
                        tap_bail("oom");
                cfg.payload_action_list = al;
                cfg.allow_payload_actions = false;
                is_int(vg_revocation_process(msg, sig, rpub, &cfg, &ran, &failed, &err), 0,
                       "signed notification processed");
                is_int(ran, 3, "mark_a, fails, mark_b ran");
                is_int(failed, 3, "fails, ../evil and .hidden counted as failed");
                {
                        _cleanup_free_ char *a = pathf("mark_a.out");
                        _cleanup_free_ char *bb = pathf("mark_b.out");
                        _cleanup_free_ char *p = pathf("pay_a.out");
                        _cleanup_free_ char *ca = tap_read_file(a, NULL);
                        _cleanup_free_ char *cb = tap_read_file(bb, NULL);

                        is_str(ca, msg, "action got the JSON file as $1");
                        is_str(cb, msg, "actions after a failing one still ran");
                        ok(!exists(p), "payload action_list not honoured when not allowed");
                }
                cfg.allow_payload_actions = true;
                is_int(vg_revocation_process(msg, sig, rpub, &cfg, &ran, &failed, &err), 0,
                       "again, payload actions allowed");
                is_int(ran, 4, "payload action ran too");
                {
                        _cleanup_free_ char *p = pathf("pay_a.out");
                        _cleanup_free_ char *cp = tap_read_file(p, NULL);

                        is_str(cp, msg, "payload action got the JSON");
                }
                cfg.payload_action_list = NULL;
        }
}

int main(void)
{
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *nk = NULL, *pub = NULL;

        dir = tap_tmpdir();
        gen_key("nk");
        {
                _cleanup_free_ char *p1 = pathf("nk.pem"), *p2 = pathf("nk.pub");

                nk = load_key(p1, true);
                pub = load_key(p2, false);
        }
        test_round_trip(nk, pub);
        test_plain_file_payload(nk, pub);
        test_wrong_tag(nk, pub);
        test_foreign_v(nk, pub);
        test_tampered(nk, pub);
        test_autorun(nk, pub);
        test_zip_slip(nk, pub);
        test_caps(nk, pub);
        test_timeout(nk, pub);
        test_verify_hmac(nk, pub);
        test_oaep_interop(nk, pub);
        test_revocation();
        free(dir);
        return tap_done();
}
