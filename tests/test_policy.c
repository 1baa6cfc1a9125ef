/* vigil tests: `vigil policy create|sign|verify|convert` through the real CLI, with OpenSSL,
 * sha256sum, gzip/xz/zstd and libarchive's writer as independent oracles, and Keylime's data. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "dsse.h"
#include "encoding.h"
#include "ima.h"
#include "policy_create.h"
#include "tap.h"

static char *dir;       /* test-wide temporary directory */
static const char *cli; /* the vigil binary */

/* Test strings live until the end: kept here so that LeakSanitizer sees them reachable. */
static void **kept;
static size_t n_kept;

static void *gc(void *p)
{
        void **v = realloc(kept, (n_kept + 1) * sizeof(*v));

        if (!v)
                tap_bail("out of memory");
        kept = v;
        kept[n_kept++] = p;
        return p;
}

#define fmt(...)    ((char *)gc(tap_strf(__VA_ARGS__)))
#define rd(...)     ((char *)gc(tap_read_file(__VA_ARGS__)))
#define shared(rel) ((char *)gc(tap_shared_data(rel)))

static char *P(const char *rel)
{
        return fmt("%s/%s", dir, rel);
}

static int sh(const char *cmd, char **output)
{
        char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)cmd, NULL };
        int st = tap_run(argv, output);

        if (output && *output)
                gc(*output);
        return st;
}

static void mkdirs(const char *path)
{
        char *cmd = fmt("mkdir -p '%s'", path);

        if (sh(cmd, NULL) != 0)
                tap_bail("mkdir -p %s failed", path);
        free(cmd);
}

static void put(const char *root, const char *rel, const void *data, size_t len)
{
        char *path = fmt("%s/%s", root, rel), *slash = strrchr(path, '/');
        int fd;

        *slash = '\0';
        mkdirs(path);
        *slash = '/';
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len) || close(fd) < 0)
                tap_bail("cannot write %s", path);
        free(path);
}

/* Hex digest by OpenSSL itself, not by vigil's hash module. */
static char *md_hex(const char *alg, const void *data, size_t len)
{
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        char *hex = malloc(2 * EVP_MAX_MD_SIZE + 1);

        if (!EVP_Digest(data, len, d, &n, EVP_get_digestbyname(alg), NULL))
                tap_bail("EVP_Digest %s", alg);
        for (unsigned i = 0; i < n; i++)
                sprintf(hex + 2 * i, "%02x", d[i]);
        return gc(hex);
}

static json_t *load(const char *path)
{
        json_error_t je;
        json_t *j = json_load_file(path, 0, &je);

        if (!j)
                tap_diag("%s: %s", path, je.text);
        return j;
}

static const char *digest0(json_t *policy, const char *map, const char *path)
{
        return json_string_value(
            json_array_get(json_object_get(json_object_get(policy, map), path), 0));
}

/* ---- the files of a test tree, shared by the rootfs and initramfs checks ----------------------
 */

struct tfile {
        const char *rel;    /* on disk */
        const char *target; /* in the policy */
        char *data;
        size_t len;
};

static struct tfile tree[] = {
        { "usr/bin/a", "/usr/bin/a", "#!/bin/sh\necho a\n", 0 },
        { "usr/bin/empty", "/usr/bin/empty", "", 0 },
        { "usr/lib/x/y/deep.so", "/usr/lib/x/y/deep.so",
          "\x7f"
          "ELF deep",
          0 },
        { "usr/share/big", "/usr/share/big", NULL, 0 }, /* 1.5 MiB, several reads */
        { "etc/my file.conf", "/etc/my_file.conf", "spaces become underscores\n", 0 },
        { "etc/secret", "/etc/secret", "root only\n", 0 },
};

static void tree_init(void)
{
        for (size_t i = 0; i < sizeof(tree) / sizeof(tree[0]); i++) {
                if (!tree[i].data) {
                        tree[i].len = 1536 * 1024;
                        tree[i].data = malloc(tree[i].len);
                        for (size_t k = 0; k < tree[i].len; k++)
                                tree[i].data[k] = (char)(k * 7 + k / 4096);
                } else {
                        tree[i].len = strlen(tree[i].data);
                }
        }
}

/* The digests object must be exactly the tree's files (minus those in `except`) plus extra. */
static void check_tree(json_t *pol, const char *alg, const char *except[], size_t extra,
                       const char *what)
{
        json_t *dg = json_object_get(pol, "digests");
        size_t want = 0;
        int bad = 0;

        for (size_t i = 0; i < sizeof(tree) / sizeof(tree[0]); i++) {
                bool skip = false;
                char *hex;

                for (size_t k = 0; except && except[k]; k++)
                        skip |= strcmp(except[k], tree[i].target) == 0;
                if (skip) {
                        if (json_object_get(dg, tree[i].target)) {
                                tap_diag("%s present", tree[i].target);
                                bad++;
                        }
                        continue;
                }
                want++;
                hex = md_hex(alg, tree[i].data, tree[i].len);
                if (!digest0(pol, "digests", tree[i].target) ||
                    strcmp(digest0(pol, "digests", tree[i].target), hex) != 0 ||
                    json_array_size(json_object_get(dg, tree[i].target)) != 1) {
                        tap_diag("%s: want %s, got %s", tree[i].target, hex,
                                 digest0(pol, "digests", tree[i].target));
                        bad++;
                }
                free(hex);
        }
        want += extra;
        is_int(json_object_size(dg), want, "%s: exactly the expected paths", what);
        is_int(bad, 0, "%s: every digest equals OpenSSL's %s of the file", what, alg);
}

/* `vigil policy ARGS...`: its exit status, and its stdout+stderr (never NULL). */
static char *run(int *status, ...) __attribute__((sentinel));
static char *run(int *status, ...)
{
        const char *argv[32] = { cli, "policy" };
        size_t n = 2;
        char *out = NULL;
        va_list ap;

        va_start(ap, status);
        while (n < 31 && (argv[n] = va_arg(ap, const char *)))
                n++;
        va_end(ap);
        argv[n] = NULL;
        *status = tap_run((char *const *)argv, &out);
        return out ? out : strdup("");
}

/* ---- rootfs
 * --------------------------------------------------------------------------------------- */

static void test_rootfs(void)
{
        char *root = P("root"), *out_json = P("pub/root.json"), *o, *cmd;
        char *out_nobody = P("pub/nobody.json");
        bool am_root = geteuid() == 0;
        const char *owners = am_root ? NULL : "--all-owners";
        json_t *pol;
        int st;

        for (size_t i = 0; i < sizeof(tree) / sizeof(tree[0]); i++)
                put(root, tree[i].rel, tree[i].data, tree[i].len);
        put(root, "proc/1/status", "skipped by default", 18);
        put(root, "tmp/t", "skipped by default", 18);
        put(root, "opt/nobody.txt", "not root's", 10);
        mkdirs(P("pub"));
        cmd = fmt("chmod 0755 '%s' && chmod 0777 '%s/pub' && ln -s a '%s/usr/bin/link' && "
                  "ln -s lib '%s/usr/dirlink' && mkfifo '%s/usr/bin/fifo' && "
                  "ln -s /etc/passwd '%s/etc/passwd'%s",
                  dir, dir, root, root, root, root,
                  am_root ? fmt(" && chown 65534 '%s/opt/nobody.txt'", root) : "");
        is_int(sh(cmd, NULL), 0, "rootfs: test tree with symlinks and a fifo");

        /* Default: root-owned regular files; symlinks, fifo, /proc, /tmp left out. */
        o = run(&st, "create", "runtime", "--rootfs", root, "-o", out_json, owners, NULL, NULL,
                NULL);
        is_int(st, 0, "rootfs: create runtime exits 0");
        pol = load(out_json);
        ok(pol, "rootfs: output is JSON");
        {
                const char *except[] = { NULL };

                check_tree(pol, "sha256", except, 0, "rootfs default");
        }
        if (am_root)
                contains(o, "1 not owned by root skipped", "rootfs: the not-root file is counted");
        else
                tap_skip("not root", "rootfs: the not-root file is counted");
        ok(!strstr(o, "hashing "), "rootfs: no progress bar when stderr is not a terminal");
        json_decref(pol);
        free(o);

        /* --all-owners takes in files of other users; --no-default-skips /proc and /tmp. */
        o = run(&st, "create", "--rootfs", root, "--all-owners", "--no-default-skips", "-o",
                out_json, NULL, NULL, NULL);
        pol = load(out_json);
        is_int(st, 0, "rootfs --all-owners --no-default-skips exits 0");
        ok(digest0(pol, "digests", "/opt/nobody.txt") &&
               digest0(pol, "digests", "/proc/1/status") && digest0(pol, "digests", "/tmp/t"),
           "rootfs: other owners and /proc /tmp are in when asked");
        ok(!json_object_get(json_object_get(pol, "digests"), "/usr/bin/link") &&
               !json_object_get(json_object_get(pol, "digests"), "/usr/dirlink/x/y/deep.so") &&
               !json_object_get(json_object_get(pol, "digests"), "/etc/passwd") &&
               !json_object_get(json_object_get(pol, "digests"), "/usr/bin/fifo"),
           "rootfs: symlinks are not followed, fifos not read");
        json_decref(pol);
        free(o);

        /* --skip-path, comma-separated as keylime-policy takes it. */
        o = run(&st, "create", "--rootfs", root, "-s", "/usr/lib,/etc", "-o", out_json, owners,
                NULL, NULL, NULL);
        pol = load(out_json);
        {
                const char *except[] = { "/usr/lib/x/y/deep.so", "/etc/my_file.conf", "/etc/secret",
                                         NULL };

                check_tree(pol, "sha256", except, 0, "rootfs --skip-path");
        }
        json_decref(pol);
        free(o);

        /* An unreadable file is reported and counted, not fatal. */
        cmd = am_root ? fmt("chmod 000 '%s/etc/secret' && setpriv --reuid=65534 --regid=65534 "
                            "--clear-groups '%s' policy create --rootfs '%s' -o '%s'",
                            root, cli, root, out_nobody)
                      : fmt("chmod 000 '%s/etc/secret' && '%s' policy create --rootfs '%s' "
                            "--all-owners -o '%s'",
                            root, cli, root, out_nobody);
        o = NULL;
        is_int(sh(cmd, &o), 0, "rootfs: an unreadable file does not fail the run");
        contains(o, "etc/secret: cannot read: Permission denied",
                 "rootfs: the unreadable file is named");
        contains(o, "1 unreadable", "rootfs: and counted");
        pol = load(out_nobody);
        {
                const char *except[] = { "/etc/secret", NULL };

                check_tree(pol, "sha256", except, 0, "rootfs with an unreadable file");
        }
        json_decref(pol);
        free(o);
        sh(fmt("chmod 644 '%s/etc/secret'", root), NULL);

        /* sha1 is refused unless forced; sha384/512 work. */
        o = run(&st, "create", "--rootfs", root, "--hash-alg", "sha1", "-o", out_json, NULL, NULL,
                NULL, NULL);
        is_int(st, 2, "sha1: refused (exit 2)");
        contains(o, "SHA-1: it is insecure", "sha1: the refusal says SHA-1 is insecure");
        contains(o, "RHEL 9 deprecated it", "sha1: and that RHEL 9 deprecated it");
        free(o);
        o = run(&st, "create", "--rootfs", root, "--hash-alg", "sha1", "--force-sha1", "-o",
                out_json, owners, NULL, NULL, NULL);
        is_int(st, 0, "sha1 with --force-sha1: exit 0");
        pol = load(out_json);
        {
                const char *except[] = { NULL };

                check_tree(pol, "sha1", except, 0, "rootfs --force-sha1");
        }
        json_decref(pol);
        free(o);
        o = run(&st, "create", "--rootfs", root, "--hash-alg", "sha512", "-o", out_json, owners,
                NULL, NULL, NULL);
        pol = load(out_json);
        {
                const char *except[] = { NULL };

                check_tree(pol, "sha512", except, 0, "rootfs --hash-alg sha512");
        }
        json_decref(pol);
        free(o);
        o = run(&st, "create", "--rootfs", root, "--hash-alg", "md5", NULL, NULL, NULL, NULL, NULL,
                NULL);
        is_int(st, 2, "--hash-alg md5: usage error");
        contains(o, "expected sha256, sha384, sha512 or sha1, found 'md5'",
                 "--hash-alg md5: says what is accepted");
        free(o);

        /* A progress bar appears on a terminal. */
        cmd = fmt("script -qec \"'%s' policy create --rootfs '%s' --all-owners -o '%s'\" /dev/null",
                  cli, root, out_json);
        o = NULL;
        if (access("/usr/bin/script", X_OK) == 0) {
                sh(cmd, &o);
                contains(o ? o : "", "hashing 7/7 files [", "rootfs: progress bar on a terminal");
        } else {
                tap_skip("no script(1)", "rootfs: progress bar on a terminal");
        }
        free(o);

        o = run(&st, "create", "--rootfs", P("nonexistent"), NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL);
        is_int(st, 1, "rootfs missing: exit 1");
        contains(o, "nonexistent: No such file or directory", "rootfs missing: named");
        free(o);
}

/* ---- flat output and initramfs ------------------------------------------------------------------
 */

static void write_cpio(const char *path, const char *const *names, const char *const *datas,
                       const size_t *lens, size_t n, bool with_dirs)
{
        struct archive *a = archive_write_new();
        struct archive_entry *e = archive_entry_new();

        archive_write_set_format_cpio_newc(a);
        if (archive_write_open_filename(a, path) != ARCHIVE_OK)
                tap_bail("cpio %s: %s", path, archive_error_string(a));
        if (with_dirs) {
                archive_entry_set_pathname(e, ".");
                archive_entry_set_filetype(e, AE_IFDIR);
                archive_entry_set_perm(e, 0755);
                archive_write_header(a, e);
                archive_entry_clear(e);
                archive_entry_set_pathname(e, "./usr/bin/sh");
                archive_entry_set_filetype(e, AE_IFLNK);
                archive_entry_set_symlink(e, "a");
                archive_entry_set_perm(e, 0777);
                archive_write_header(a, e);
        }
        for (size_t i = 0; i < n; i++) {
                archive_entry_clear(e);
                archive_entry_set_pathname(e, names[i]);
                archive_entry_set_filetype(e, AE_IFREG);
                archive_entry_set_perm(e, 0644);
                archive_entry_set_size(e, (la_int64_t)lens[i]);
                if (archive_write_header(a, e) != ARCHIVE_OK ||
                    (lens[i] && archive_write_data(a, datas[i], lens[i]) != (la_ssize_t)lens[i]))
                        tap_bail("cpio %s: %s", path, archive_error_string(a));
        }
        archive_entry_free(e);
        archive_write_close(a);
        archive_write_free(a);
}

static char *sorted(const char *text)
{
        char *in = P("sort-in"), *cmd, *out = NULL;

        tap_write_file(in, text);
        cmd = fmt("LC_ALL=C sort '%s'", in);
        sh(cmd, &out);
        free(cmd);
        return out;
}

static void test_flat_and_initramfs(void)
{
        char *img = P("img"), *flat = P("img.flat"), *o, *cmd, *want, *got, *tree_flat;
        const char *names[16], *datas[16];
        size_t lens[16], n = 0;
        int st;

        /* A tree of root-owned (or, not as root, --all-owners) files and its sha256sum. */
        for (size_t i = 0; i < sizeof(tree) / sizeof(tree[0]); i++) {
                put(img, tree[i].rel, tree[i].data, tree[i].len);
                names[n] = fmt(i % 2 ? "./%s" : "%s", tree[i].rel); /* both cpio spellings */
                datas[n] = tree[i].data;
                lens[n++] = tree[i].len;
        }
        o = run(&st, "create", "--rootfs", img, "--all-owners", "--flat", "-o", flat, NULL, NULL,
                NULL);
        is_int(st, 0, "flat: create --flat exits 0");
        tree_flat = rd(flat, NULL);
        cmd = fmt("cd '%s' && find . -type f -print0 | xargs -0 sha256sum | sed -e 's#  \\./#  /#' "
                  "-e 's#/etc/my file.conf#/etc/my_file.conf#'",
                  img);
        want = NULL;
        sh(cmd, &want);
        got = sorted(tree_flat);
        is_str(got, sorted(want), "flat: the allowlist is sha256sum's output with target paths");
        free(o);

        /* The same files as an initramfs: plain, gzip, xz, zstd. */
        write_cpio(P("main.cpio"), names, datas, lens, n, true);
        cmd = fmt("cd '%s' && gzip -9 -n -k -c main.cpio > main.cpio.gz && "
                  "xz --check=crc32 -k -c main.cpio > main.cpio.xz && "
                  "zstd -q -c main.cpio > main.cpio.zst",
                  dir);
        is_int(sh(cmd, NULL), 0, "initramfs: compressed with gzip, xz and zstd");
        const char *variants[] = { "main.cpio", "main.cpio.gz", "main.cpio.xz", "main.cpio.zst" };

        for (size_t i = 0; i < 4; i++) {
                o = run(&st, "create", "--ramdisk", P(variants[i]), "--flat", "-o", flat, NULL,
                        NULL, NULL, NULL);
                is_int(st, 0, "initramfs %s: exit 0", variants[i]);
                is_str(rd(flat, NULL), tree_flat,
                       "initramfs %s: the same digests as the tree it came from", variants[i]);
                free(o);
        }

        /* Early microcode: two plain cpio archives, zero padding, then the zstd main archive. */
        {
                const char *mn[] = { "kernel/x86/microcode/GenuineIntel.bin" };
                const char *md[] = { "intel ucode" };
                size_t ml[] = { 11 };
                const char *an[] = { "kernel/x86/microcode/AuthenticAMD.bin" };
                const char *ad[] = { "amd ucode" };
                size_t al[] = { 9 };
                char *combo = P("initrd.img");
                json_t *pol;

                write_cpio(P("early1.cpio"), mn, md, ml, 1, false);
                write_cpio(P("early2.cpio"), an, ad, al, 1, false);
                cmd = fmt("cd '%s' && { cat early1.cpio; head -c 200 /dev/zero; cat early2.cpio; "
                          "head -c 512 /dev/zero; cat main.cpio.zst; } > initrd.img",
                          dir);
                is_int(sh(cmd, NULL), 0, "initramfs: early microcode image assembled");
                o = run(&st, "create", "--ramdisk", combo, "-o", P("combo.json"), NULL, NULL, NULL,
                        NULL, NULL);
                is_int(st, 0, "initramfs with early microcode: exit 0");
                pol = load(P("combo.json"));
                {
                        const char *except[] = { NULL };

                        check_tree(pol, "sha256", except, 2, "initramfs early+main");
                }
                free(o);
                o = md_hex("sha256", "intel ucode", 11);
                is_str(digest0(pol, "digests", "/kernel/x86/microcode/GenuineIntel.bin"), o,
                       "initramfs: the early archive's files are there too");
                json_decref(pol);
                free(o);

                /* --ramdisk-dir takes initr* files, as keylime-policy does. */
                o = run(&st, "create", "--ramdisk-dir", dir, "--flat", "-o", flat, NULL, NULL, NULL,
                        NULL);
                is_int(st, 0, "initramfs --ramdisk-dir: exit 0");
                contains(rd(flat, NULL), "  /kernel/x86/microcode/AuthenticAMD.bin",
                         "initramfs --ramdisk-dir: found initrd.img");
                free(o);

                /* Damage is named with the offset of the archive that holds it. */
                cmd = fmt(
                    "cd '%s' && head -c $(($(stat -c %%s initrd.img) - 40)) initrd.img > bad.img",
                    dir);
                sh(cmd, NULL);
                o = run(&st, "create", "--ramdisk", P("bad.img"), "-o", flat, NULL, NULL, NULL,
                        NULL, NULL);
                is_int(st, 1, "initramfs truncated: exit 1");
                contains(o, "bad.img: offset ", "initramfs truncated: the offset is named");
                free(o);
                tap_write_file(P("junk.img"), "this is not an initramfs at all\n");
                o = run(&st, "create", "--ramdisk", P("junk.img"), NULL, NULL, NULL, NULL, NULL,
                        NULL);
                is_int(st, 1, "initramfs junk: exit 1");
                contains(o, "junk.img: offset 0: expected a cpio archive",
                         "initramfs junk: says what was expected");
                free(o);
        }

        /* newc hard links: the data comes with the last name; every name gets its digest. */
        {
                struct archive *a = archive_write_new();
                struct archive_entry *e = archive_entry_new();
                static char mem[8192];
                size_t used = 0;
                struct vg_policy *p = NULL;
                struct vg_policy_scan_opts so = { .alg = VG_HASH_SHA256 };
                struct vg_policy_scan_stats ss = { 0 };
                struct vg_error err = { 0 };
                char *h = md_hex("sha256", "hello", 5);

                archive_write_set_format_cpio_newc(a);
                archive_write_open_memory(a, mem, sizeof(mem), &used);
                for (int i = 0; i < 2; i++) {
                        archive_entry_clear(e);
                        archive_entry_set_pathname(e, i ? "bin/h2" : "bin/h1");
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_perm(e, 0755);
                        archive_entry_set_ino(e, 42);
                        archive_entry_set_nlink(e, 2);
                        archive_entry_set_size(e, i ? 5 : 0);
                        archive_write_header(a, e);
                        if (i)
                                archive_write_data(a, "hello", 5);
                }
                archive_entry_free(e);
                archive_write_close(a);
                archive_write_free(a);
                vg_policy_new(&p);
                is_int(vg_policy_add_initramfs_mem(p, mem, used, "links", &so, &ss, &err), 0,
                       "initramfs hard links: read (%s)", vg_error_str(&err));
                ok(vg_policy_has(p, VG_POLICY_DIGESTS, "/bin/h1", h) &&
                       vg_policy_has(p, VG_POLICY_DIGESTS, "/bin/h2", h),
                   "initramfs hard links: both names get the data's digest");
                is_int(vg_policy_count(p, VG_POLICY_DIGESTS), 2,
                       "initramfs hard links: two entries");
                vg_policy_free(p);
                free(h);
        }
}

/* ---- allowlists, Keylime's data
 * ------------------------------------------------------------------ */

static void check_complete(json_t *pol, const char *what)
{
        static const char *const keys[] = { "meta",     "release", "digests", "excludes",
                                            "keyrings", "ima",     "ima-buf", "verification-keys" };
        int missing = 0;

        for (size_t i = 0; i < 8; i++)
                missing += !json_object_get(pol, keys[i]);
        is_int(missing, 0, "%s: every key runtime policy v1 requires", what);
        ok(json_integer_value(json_object_get(json_object_get(pol, "meta"), "version")) == 1 &&
               json_integer_value(json_object_get(json_object_get(pol, "meta"), "generator")) ==
                   3 &&
               json_is_string(json_object_get(json_object_get(pol, "meta"), "timestamp")) &&
               json_is_null(json_object_get(json_object_get(pol, "ima"), "dm_policy")) &&
               json_is_string(json_object_get(json_object_get(pol, "ima"), "log_hash_alg")),
           "%s: meta {version 1, generator 3, timestamp}, ima.dm_policy null", what);
}

/* The IMA module's own parser must take what we write (when it is linked in). */
static void ima_accepts(const char *path, const char *what)
{
        size_t len = 0;
        char *text = rd(path, &len);
        struct vg_ima_policy *ip = NULL;
        struct vg_error err = { 0 };

        is_int(vg_ima_policy_parse(text, len, &ip, &err), 0,
               "%s: vg_ima_policy_parse accepts it (%s)", what, vg_error_str(&err));
        vg_ima_policy_unref(ip);
        free(text);
}

/* An ima-buf line as the kernel writes it: template data d-ng | n-ng | buf (little-endian u32
 * lengths), template hash SHA-1 over it. */
static char *ima_buf_line(const char *name, const void *buf, size_t len)
{
        unsigned char d[32], td[4096], th[20];
        size_t n = 0;
        uint32_t l;
        char *dhex, *thex, *bhex, *line;

        SHA256(buf, len, d);
        l = 7 + 1 + 32; /* "sha256:" NUL digest */
        memcpy(td + n, &l, 4), n += 4;
        memcpy(td + n, "sha256:", 8), n += 8;
        memcpy(td + n, d, 32), n += 32;
        l = (uint32_t)strlen(name) + 1;
        memcpy(td + n, &l, 4), n += 4;
        memcpy(td + n, name, l), n += l;
        l = (uint32_t)len;
        memcpy(td + n, &l, 4), n += 4;
        memcpy(td + n, buf, len), n += len;
        SHA1(td, n, th);
        dhex = vg_hex_encode(d, 32);
        thex = vg_hex_encode(th, 20);
        bhex = vg_hex_encode(buf, len);
        line = fmt("10 %s ima-buf sha256:%s %s %s\n", thex, dhex, name, bhex);
        free(dhex);
        free(thex);
        free(bhex);
        return line;
}

static void test_ima_buf(void)
{
        char *cmd = fmt("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                        "-keyout '%s/imakey.pem' -subj /CN=ima -days 2 -outform DER -out "
                        "'%s/ima.der' 2>/dev/null",
                        dir, dir);
        size_t der_len = 0;
        char *der, *log, *out = P("imabuf.json"), *o, *kh, *bh;
        json_t *pol;
        int st;

        is_int(sh(cmd, NULL), 0, "ima-buf: openssl makes a DER certificate");
        der = rd(P("ima.der"), &der_len);
        log = fmt("%s%s", ima_buf_line(".ima", der, der_len),
                  ima_buf_line("kernel_version", "6.1.0", 5));
        tap_write_file(P("imabuf.log"), log);
        kh = md_hex("sha256", der, der_len);
        bh = md_hex("sha256", "6.1.0", 5);

        o = run(&st, "create", "-m", P("imabuf.log"), "-o", out, NULL);
        pol = load(out);
        is_int(st, 0, "ima-buf: create -m exits 0 (%s)", o);
        ok(json_object_size(json_object_get(pol, "keyrings")) == 0 &&
               json_object_size(json_object_get(pol, "ima-buf")) == 0 &&
               json_object_size(json_object_get(pol, "digests")) == 0,
           "ima-buf: without -k/-b nothing is taken from ima-buf entries");
        json_decref(pol);
        free(o);
        o = run(&st, "create", "-m", P("imabuf.log"), "-k", "-b", "-o", out, NULL);
        pol = load(out);
        is_str(digest0(pol, "keyrings", ".ima"), kh,
               "ima-buf -k: the certificate measured into .ima goes to keyrings");
        is_str(digest0(pol, "ima-buf", "kernel_version"), bh,
               "ima-buf -b: other buffers go to ima-buf");
        ok(!json_object_get(json_object_get(pol, "ima-buf"), ".ima"),
           "ima-buf: a key never goes to ima-buf");
        ima_accepts(out, "ima-buf policy");
        json_decref(pol);
        free(o);
        o = run(&st, "create", "-m", P("imabuf.log"), "-k", "--ignored-keyring", ".ima", "-o", out,
                NULL);
        pol = load(out);
        ok(json_object_size(json_object_get(pol, "keyrings")) == 0,
           "ima-buf: an ignored keyring is not recorded");
        is_str(json_string_value(json_array_get(
                   json_object_get(json_object_get(pol, "ima"), "ignored_keyrings"), 0)),
               ".ima", "ima-buf: and is listed in ima.ignored_keyrings");
        json_decref(pol);
        free(o);
        free(kh);
        free(bh);
}

static void test_allowlists(void)
{
        char *out = P("conv.json"), *o;
        json_t *pol;
        int st;

        o = run(&st, "convert", "-a", shared("policy/keylime-allowlist-short.txt"), "-o", out, NULL,
                NULL, NULL, NULL);
        is_int(st, 0, "convert allowlist-short: exit 0");
        pol = load(out);
        check_complete(pol, "convert allowlist-short");
        is_int(json_object_size(json_object_get(pol, "digests")), 21,
               "convert allowlist-short: 20 files and boot_aggregate");
        is_str(
            digest0(pol, "digests", "boot_aggregate"),
            "4309217e9709def327c3409407f4d52907aeba46ef1b4f46529fd095f2ef9fb2",
            "convert allowlist-short: the sha256: prefix is dropped (the schema wants bare hex)");
        is_str(digest0(pol, "digests", "/boot/grub2/i386-pc/pata.mod"),
               "ee4d2b601c0efc0ea97314c2818667a83272eac1",
               "convert allowlist-short: a file digest");
        is_str(digest0(pol, "keyrings", ".ima"),
               "a7d52aaa18c23d2d9bb2abb4308c0eeee67387a42259f4a6b1a42257065f3d5a",
               "convert allowlist-short: %%keyring:.ima goes to keyrings");
        ima_accepts(out, "convert allowlist-short");
        json_decref(pol);
        free(o);

        /* keylime's create-runtime-policy fixtures: allowlist + base policy + IMA log agree. */
        const char *algs[] = { "sha1", "sha256", "sha384", "sha512" };

        for (size_t i = 0; i < 4; i++) {
                char *al = shared(fmt("policy/keylime-allowlist-%s.txt", algs[i]));
                char *bp = shared(fmt("policy/keylime-policy-%s.json", algs[i]));
                char *log = shared(fmt("ima/keylime-ima-log-%s.ascii", algs[i]));
                json_t *base = load(bp), *fromlog;
                char *text = rd(al, NULL), *sp = strchr(text, ' ');

                *sp = '\0';
                o = run(&st, "create", "-a", al, "-p", bp, "-o", out, NULL, NULL, NULL, NULL);
                is_int(st, 0, "%s: allowlist + base policy: exit 0", algs[i]);
                pol = load(out);
                is_str(digest0(pol, "digests", "data"), text,
                       "%s: the allowlist's digest is in the policy", algs[i]);
                is_str(digest0(pol, "digests", "/base_policy_data"),
                       digest0(base, "digests", "/base_policy_data"),
                       "%s: the base policy's digest is kept", algs[i]);
                json_decref(pol);
                free(o);
                o = run(&st, "create", "--ima-log", log, "-o", out, NULL, NULL, NULL, NULL, NULL,
                        NULL);
                fromlog = load(out);
                is_str(digest0(fromlog, "digests", "/data"), text,
                       "%s: the IMA log's /data digest equals the allowlist's", algs[i]);
                ok(digest0(fromlog, "digests", "boot_aggregate") != NULL,
                   "%s: boot_aggregate comes from the IMA log", algs[i]);
                ima_accepts(out, fmt("%s: policy from the IMA log", algs[i]));
                json_decref(fromlog);
                json_decref(base);
                free(o);
        }

        test_ima_buf();

        /* A legacy JSON allowlist {"hashes": ...} and an exclude list. */
        tap_write_file(P("legacy.json"),
                       "{\"meta\": {\"version\": 1}, \"hashes\": {\"/usr/bin/x\": "
                       "[\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"]}, \"keyrings\": {}}");
        tap_write_file(P("excl.txt"), "# comment\n/tmp/.*\n\n^/var/log/.*\n");
        o = run(&st, "convert", "-a", P("legacy.json"), "-e", P("excl.txt"), "-o", out, NULL, NULL,
                NULL);
        is_int(st, 0, "convert legacy JSON allowlist: exit 0");
        pol = load(out);
        is_str(digest0(pol, "digests", "/usr/bin/x"), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
               "convert legacy JSON: hashes become digests (lower-case)");
        is_int(json_array_size(json_object_get(pol, "excludes")), 2,
               "convert: the exclude list's two regexes");
        json_decref(pol);
        free(o);

        /* Malformed inputs name what is wrong. */
        tap_write_file(P("bad-al.txt"), "4860656c6855b6db0c7a2ccc6227a395928986a7  /ok\n\n"
                                        "xyz  /bad\n");
        o = run(&st, "convert", "-a", P("bad-al.txt"), NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        is_int(st, 1, "bad allowlist: exit 1");
        contains(o, "bad-al.txt:3: expected a hex digest", "bad allowlist: file:line and what");
        free(o);
        tap_write_file(P("bad-al2.txt"), "4860656c6855b6db0c7a2ccc6227a395928986a7\n");
        o = run(&st, "convert", "-a", P("bad-al2.txt"), NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        contains(o, "bad-al2.txt:1: expected '<hex digest> <path>', found one field",
                 "allowlist line without a path is named");
        free(o);
        tap_write_file(P("bad-ex.txt"), "/ok/.*\n/bad/(\n");
        o = run(&st, "create", "-e", P("bad-ex.txt"), NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        is_int(st, 1, "bad exclude: exit 1");
        contains(o, "bad-ex.txt:2: exclude '/bad/(' is not a valid regex",
                 "bad exclude: file:line and regex");
        free(o);
        tap_write_file(P("bad-base.json"), "{\"digests\": {\"/x\": [\"sha256:zz\"]}}");
        o = run(&st, "create", "-p", P("bad-base.json"), NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        is_int(st, 1, "bad base policy: exit 1");
        contains(o, "digests./x[0]", "bad base policy: the JSON path is named");
        free(o);
        o = run(&st, "convert", "-a", shared("policy/keylime-runtime-policy.json"), NULL, NULL,
                NULL, NULL, NULL, NULL, NULL);
        contains(o, "already a runtime policy",
                 "convert of a runtime policy: told to use it as a base");
        free(o);
}

/* ---- DSSE
 * ---------------------------------------------------------------------------------------- */

static char *b64_file(const char *path)
{
        size_t len = 0;
        char *data = rd(path, &len);
        char *b = (char *)gc(vg_b64_encode(data, len, VG_B64_STD));

        free(data);
        return b;
}

static void test_dsse(void)
{
        char *policy = shared("policy/keylime-runtime-policy.json");
        char *key = P("k.pem"), *pub = P("pub.pem"), *env = P("signed.json"), *o, *cmd;
        json_t *e;
        int st;

        o = run(&st, "sign", "runtime", "-r", policy, "-p", key, "-o", env, NULL, NULL, NULL);
        is_int(st, 0, "sign: a new key and an envelope");
        is_int(tap_file_mode(key), 0600, "sign: the new key file is 0600");
        free(o);
        cmd = fmt("openssl ec -in '%s' -pubout -out '%s' 2>&1", key, pub);
        is_int(sh(cmd, NULL), 0, "openssl reads the key we wrote");
        e = load(env);
        is_str(json_string_value(json_object_get(e, "payloadType")), VG_DSSE_KEYLIME_PAYLOAD_TYPE,
               "sign: payloadType is Keylime's");
        {
                size_t len = 0;
                char *pem = rd(pub, &len), *want = md_hex("sha256", pem, len);

                is_str(json_string_value(json_object_get(
                           json_array_get(json_object_get(e, "signatures"), 0), "keyid")),
                       want,
                       "sign: keyid is SHA-256 of the public key PEM (Keylime's ecdsa keyid)");
                is_str(json_string_value(json_object_get(e, "payload")), b64_file(policy),
                       "sign: payload is the policy, base64");
        }

        o = run(&st, "verify", "runtime", "-r", env, "-k", pub, "-o", P("verified.json"), NULL,
                NULL, NULL);
        is_int(st, 0, "verify with the public key: valid");
        contains(o, "valid signature by keyid", "verify: says valid");
        is_str(rd(P("verified.json"), NULL), rd(policy, NULL),
               "verify -o: the verified policy is written");
        free(o);
        o = run(&st, "verify", "-r", env, "-k", key, NULL, NULL, NULL, NULL, NULL, NULL);
        is_int(st, 0, "verify with the private key file: valid");
        free(o);

        /* The openssl CLI checks our signature over a PAE it builds itself. */
        {
                const char *sig = json_string_value(
                    json_object_get(json_array_get(json_object_get(e, "signatures"), 0), "sig"));
                size_t plen = 0;
                char *ptext = rd(policy, &plen);
                FILE *f = fopen(P("pae.bin"), "w");

                fprintf(f, "DSSEv1 %zu %s %zu ", strlen(VG_DSSE_KEYLIME_PAYLOAD_TYPE),
                        VG_DSSE_KEYLIME_PAYLOAD_TYPE, plen);
                fwrite(ptext, 1, plen, f);
                fclose(f);
                tap_write_file(P("sig.b64"), sig);
                cmd = fmt("cd '%s' && base64 -d sig.b64 > sig.der && openssl dgst -sha256 "
                          "-verify pub.pem -signature sig.der pae.bin",
                          dir);
                o = NULL;
                is_int(sh(cmd, &o), 0, "openssl dgst -verify accepts our signature over the PAE");
                free(o);

                /* And an envelope the openssl CLI signed verifies with vigil. */
                cmd =
                    fmt("cd '%s' && openssl ecparam -name prime256v1 -genkey -noout -out o.pem && "
                        "openssl ec -in o.pem -pubout -out opub.pem 2>/dev/null && "
                        "openssl dgst -sha256 -sign o.pem -out osig.der pae.bin && "
                        "printf '{\"payload\": \"%%s\", \"payloadType\": \"%s\", \"signatures\": "
                        "[{\"keyid\": \"\", \"sig\": \"%%s\"}]}' \"$(base64 -w0 '%s')\" "
                        "\"$(base64 -w0 osig.der)\" > ossl-env.json",
                        dir, VG_DSSE_KEYLIME_PAYLOAD_TYPE, policy);
                is_int(sh(cmd, NULL), 0, "openssl CLI made an envelope");
                o = run(&st, "verify", "-r", P("ossl-env.json"), "-k", P("opub.pem"), NULL, NULL,
                        NULL, NULL, NULL, NULL);
                is_int(st, 0, "verify: an openssl-made envelope is valid");
                free(o);
                o = run(&st, "verify", "-r", P("ossl-env.json"), "-k", pub, NULL, NULL, NULL, NULL,
                        NULL, NULL);
                is_int(st, 1, "verify: the openssl envelope with our key is invalid");
                free(o);
                free(ptext);
        }

        /* A certificate holding the key works as well. */
        cmd = fmt("openssl req -x509 -new -key '%s' -subj /CN=dsse_lib -days 2 -out '%s' 2>&1", key,
                  P("cert.pem"));
        is_int(sh(cmd, NULL), 0, "openssl makes a certificate for the key");
        o = run(&st, "verify", "-r", env, "--cert", P("cert.pem"), NULL, NULL, NULL, NULL, NULL,
                NULL);
        is_int(st, 0, "verify --cert: valid");
        free(o);

        /* A modified payload, a wrong key. */
        {
                json_t *m = json_deep_copy(e);
                char *mod = fmt("%s", rd(policy, NULL));
                char *b;

                mod[strlen(mod) / 2] ^= 1;
                b = (char *)gc(vg_b64_encode(mod, strlen(mod), VG_B64_STD));
                json_object_set_new(m, "payload", json_string(b));
                json_dump_file(m, P("modified.json"), 0);
                o = run(&st, "verify", "-r", P("modified.json"), "-k", pub, NULL, NULL, NULL, NULL,
                        NULL, NULL);
                is_int(st, 1, "verify: a modified payload is invalid (exit 1)");
                contains(o, "INVALID", "verify: says INVALID");
                free(o);
                json_object_set_new(m, "payload",
                                    json_object_get(e, "payload")
                                        ? json_incref(json_object_get(e, "payload"))
                                        : NULL);
                json_object_set_new(m, "payloadType", json_string("application/json"));
                json_dump_file(m, P("modtype.json"), 0);
                o = run(&st, "verify", "-r", P("modtype.json"), "-k", pub, NULL, NULL, NULL, NULL,
                        NULL, NULL);
                is_int(st, 1, "verify: a changed payloadType is invalid (PAE binds it)");
                free(o);
                json_decref(m);
        }
        o = run(&st, "sign", "-r", policy, "-p", P("k2.pem"), "-o", P("signed2.json"), NULL, NULL,
                NULL);
        free(o);
        o = run(&st, "verify", "-r", env, "-k", P("k2.pem"), NULL, NULL, NULL, NULL, NULL, NULL);
        is_int(st, 1, "verify: a wrong key is invalid (exit 1)");
        free(o);
        o = run(&st, "sign", "-r", policy, "-k", P("k2.pem"), "-o", P("signed3.json"), NULL, NULL,
                NULL);
        is_int(st, 0, "sign -k with an existing key");
        free(o);
        o = run(&st, "verify", "-r", P("signed3.json"), "-k", P("k2.pem"), NULL, NULL, NULL, NULL,
                NULL, NULL);
        is_int(st, 0, "verify: the envelope signed with -k is valid");
        free(o);

        /* Unusable input: exit 2, named. */
        o = run(&st, "sign", "-r", policy, "-p", key, NULL, NULL, NULL, NULL, NULL, NULL);
        is_int(st, 1, "sign -p over an existing key: refused");
        contains(o, "already exists", "sign -p over an existing key: says so");
        free(o);
        tap_write_file(P("notenv.json"), "{\"payload\": \"e30=\", \"payloadType\": \"x\"}");
        o = run(&st, "verify", "-r", P("notenv.json"), "-k", pub, NULL, NULL, NULL, NULL, NULL,
                NULL);
        is_int(st, 2, "verify: an envelope without signatures is unusable (exit 2)");
        contains(o, "expected \"signatures\"", "verify: names the missing signatures");
        free(o);
        tap_write_file(P("badb64.json"), "{\"payload\": \"@@@\", \"payloadType\": \"x\", "
                                         "\"signatures\": [{\"sig\": \"AA==\"}]}");
        o = run(&st, "verify", "-r", P("badb64.json"), "-k", pub, NULL, NULL, NULL, NULL, NULL,
                NULL);
        is_int(st, 2, "verify: bad base64 is unusable");
        contains(o, "payload: expected base64", "verify: names the bad payload");
        free(o);
        tap_write_file(P("rsa.cmd"), "");
        cmd = fmt(
            "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out '%s' 2>/dev/null",
            P("rsa.pem"));
        sh(cmd, NULL);
        o = run(&st, "verify", "-r", env, "-k", P("rsa.pem"), NULL, NULL, NULL, NULL, NULL, NULL);
        is_int(st, 2, "verify with an RSA key: unusable");
        contains(o, "expected an EC", "verify with an RSA key: says an EC key is needed");
        free(o);
        tap_write_file(P("bad-policy.json"), "{\"meta\": {\"version\": 1, \"generator\": 3}, "
                                             "\"digests\": {}}");
        o = run(&st, "sign", "-r", P("bad-policy.json"), "-k", key, NULL, NULL, NULL, NULL, NULL,
                NULL);
        is_int(st, 2, "sign: an incomplete policy is refused");
        contains(o, "expected the key \"release\"", "sign: names the missing key");
        free(o);
        o = run(&st, "verify", "-r", env, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        is_int(st, 2, "verify without a key: usage error");
        free(o);
        json_decref(e);
}

int main(void)
{
        cli = getenv("VIGIL_CLI");
        if (!cli)
                tap_bail("VIGIL_CLI is not set (run the tests through meson test)");
        dir = tap_tmpdir();
        tree_init();
        test_rootfs();
        test_flat_and_initramfs();
        test_allowlists();
        test_dsse();
        return tap_done();
}
