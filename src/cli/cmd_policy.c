/* vigil CLI: `vigil policy create|sign|verify|convert`, Keylime-compatible runtime policy tooling
 * (keylime-policy and keylime_convert_runtime_policy). The work is in src/lib/policy_create.c
 * and src/lib/dsse.c. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cleanup.h"
#include "commands.h"
#include "dsse.h"
#include "error.h"
#include "eventlog.h"
#include "mb_policy.h"
#include "policy_create.h"

#define MAX_INPUT_BYTES (1024u << 20) /* allowlists, logs, policies: 1 GiB */
#define MAX_LIST_ITEMS  256
#define DEFAULT_KEY     "keylime-ecdsa-key.pem" /* where keylime-policy writes a new key */

VG_DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
VG_DEFINE_CLEANUP_FUNC(X509, X509_free)

/* --- files ---------------------------------------------------------------------------------- */

/* Read a whole file ("-" is stdin); prints why not. */
static int slurp(const char *cmd, const char *path, char **out, size_t *len)
{
        _cleanup_close_ int fd = strcmp(path, "-") == 0 ? dup(0) : open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, cap = 0;

        if (fd < 0) {
                fprintf(stderr, "vigil %s: %s: cannot open: %s\n", cmd, path, strerror(errno));
                return -errno;
        }
        for (;;) {
                ssize_t got;

                if (cap - n < 65536) {
                        char *b;

                        if (cap >= MAX_INPUT_BYTES) {
                                fprintf(stderr,
                                        "vigil %s: %s: expected at most %u MiB, found more\n", cmd,
                                        path, MAX_INPUT_BYTES >> 20);
                                return -EFBIG;
                        }
                        cap = cap ? 2 * cap : 1 << 20;
                        b = realloc(buf, cap + 1);
                        if (!b) {
                                fprintf(stderr, "vigil %s: out of memory\n", cmd);
                                return -ENOMEM;
                        }
                        buf = b;
                }
                got = read(fd, buf + n, cap - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        fprintf(stderr, "vigil %s: %s: cannot read: %s\n", cmd, path,
                                strerror(errno));
                        return -errno;
                }
                if (got == 0)
                        break;
                n += (size_t)got;
        }
        buf[n] = '\0';
        *out = TAKE_PTR(buf);
        *len = n;
        return 0;
}

/* Write data to path (NULL or "-": stdout). */
static int spew(const char *cmd, const char *path, const char *data, size_t len, bool newline)
{
        _cleanup_close_ int fd = -1;
        int out = 1;
        size_t off = 0;

        if (path && strcmp(path, "-") != 0) {
                fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd < 0) {
                        fprintf(stderr, "vigil %s: %s: cannot create: %s\n", cmd, path,
                                strerror(errno));
                        return 1;
                }
                out = fd;
        }
        while (off < len + newline) {
                const char *p = off < len ? data + off : "\n";
                size_t n = off < len ? len - off : 1;
                ssize_t w = write(out, p, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        fprintf(stderr, "vigil %s: %s: cannot write: %s\n", cmd,
                                path ? path : "stdout", strerror(errno));
                        return 1;
                }
                off += (size_t)w;
        }
        if (fd >= 0 && close(TAKE_FD(fd)) < 0) {
                fprintf(stderr, "vigil %s: %s: cannot write: %s\n", cmd, path, strerror(errno));
                return 1;
        }
        return 0;
}

static int fail(const char *cmd, const struct vg_error *err, int status)
{
        fprintf(stderr, "vigil %s: %s\n", cmd, vg_error_str(err));
        return status;
}

struct list {
        const char *v[MAX_LIST_ITEMS + 1]; /* NULL-terminated */
        size_t n;
};

static int list_add(const char *cmd, struct list *l, const char *opt, const char *value)
{
        if (l->n == MAX_LIST_ITEMS)
                return cli_usage_error(cmd, "%s: expected at most %d of them, found more", opt,
                                       MAX_LIST_ITEMS);
        l->v[l->n++] = value;
        return 0;
}

/* --- create ----------------------------------------------------------------------------------- */

static void create_help(FILE *out)
{
        fprintf(out,
                "Usage: vigil policy create [runtime] [OPTIONS]\n\n"
                "Create a Keylime runtime policy (JSON v1) from a root filesystem, initramfs\n"
                "images, an IMA measurement list, allowlists and exclude lists, as\n"
                "`keylime-policy create runtime` does. Files are hashed with SHA-256 unless\n"
                "told otherwise; paths are recorded as they are on the target.\n\n"
                "Inputs (at least one):\n"
                "  --rootfs DIR            hash the regular files under DIR (symlinks not\n"
                "                          followed; root-owned files only, as Keylime does;\n"
                "                          /proc /sys /dev /run /tmp skipped)\n"
                "  --ramdisk FILE          hash the files of an initramfs image (cpio, plain or\n"
                "                          gzip/xz/zstd/... compressed, early microcode\n"
                "                          archives included); may be repeated\n"
                "  --ramdisk-dir DIR       every initr* file in DIR, as keylime-policy does\n"
                "  -m, --ima-log FILE      digests from an IMA ASCII measurement list\n"
                "  -a, --allowlist FILE    a flat (`<hex>  <path>`) or legacy JSON allowlist\n"
                "  -e, --exclude FILE      an exclude list: one regex per line\n"
                "  -p, --base-policy FILE  a runtime policy to add to\n\n"
                "Options:\n"
                "  --hash-alg ALG          sha256 (default), sha384, sha512, or sha1 with\n"
                "                          --force-sha1\n"
                "  --force-sha1            allow sha1, which is insecure (RHEL 9 deprecated it)\n"
                "  -s, --skip-path PREFIX  do not hash files under PREFIX, a path on the target\n"
                "                          (may be repeated or comma-separated)\n"
                "  --all-owners            also hash files not owned by root\n"
                "  --no-default-skips      also descend into /proc /sys /dev /run /tmp\n"
                "  -k, --keyrings          with --ima-log: keys measured into keyrings\n"
                "  -b, --ima-buf           with --ima-log: other ima-buf entries\n"
                "  --ignored-keyring NAME  a keyring the verifier does not check (repeatable)\n"
                "  --threads N             hashing threads (default: one per CPU)\n"
                "  --flat                  write the legacy flat allowlist instead of JSON\n"
                "  -o, --output FILE       write there instead of standard output\n"
                "  -h, --help              this text\n\n"
                "A progress bar goes to standard error when it is a terminal. Files that cannot\n"
                "be read are reported and counted, and do not stop the run.\n"
                "See vigil-policy(1).\n");
}

struct progress {
        bool tty;
        bool drawn;
        bool finished; /* the 100% line was drawn */
        struct timespec last;
};

static void progress_cb(uint64_t done, uint64_t total, void *ud)
{
        struct progress *pg = ud;
        struct timespec now;
        int width = 30, fill;

        if (!pg->tty || (done == total && pg->finished))
                return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (done < total && pg->drawn &&
            (now.tv_sec - pg->last.tv_sec) * 1000000000L + (now.tv_nsec - pg->last.tv_nsec) <
                100000000L)
                return;
        pg->last = now;
        pg->drawn = true;
        fill = total ? (int)(done * (uint64_t)width / total) : width;
        fprintf(stderr, "\r\033[Khashing %llu/%llu files [%.*s%*s] %3d%%", (unsigned long long)done,
                (unsigned long long)total, fill, "##############################", width - fill, "",
                total ? (int)(done * 100 / total) : 100);
        if (done == total) {
                fputc('\n', stderr);
                pg->drawn = false;
                pg->finished = true;
        }
}

static void unreadable_cb(const char *path, int errnum, void *ud)
{
        struct progress *pg = ud;

        fprintf(stderr, "%svigil policy create: %s: cannot read: %s\n",
                pg->tty && pg->drawn ? "\r\033[K" : "", path, strerror(errnum));
}

/* initr* files of a directory, in name order (keylime-policy's --ramdisk-dir). */
static int ramdisk_dir(const char *cmd, const char *dir, struct list *ramdisks, char ***owned,
                       size_t *n_owned)
{
        struct dirent **names = NULL;
        int n = scandir(dir, &names, NULL, alphasort);
        int r = 0;

        if (n < 0) {
                fprintf(stderr, "vigil %s: %s: %s\n", cmd, dir, strerror(errno));
                return 1;
        }
        for (int i = 0; i < n; i++) {
                char *path = NULL;
                struct stat sb;

                if (r == 0 && strncmp(names[i]->d_name, "initr", 5) == 0 &&
                    asprintf(&path, "%s/%s", dir, names[i]->d_name) >= 0) {
                        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                                char **o = realloc(*owned, (*n_owned + 1) * sizeof(*o));

                                if (!o) {
                                        free(path);
                                        r = 1;
                                } else {
                                        *owned = o;
                                        o[(*n_owned)++] = path;
                                        r = list_add(cmd, ramdisks, "--ramdisk-dir", path);
                                }
                        } else {
                                free(path);
                        }
                }
                free(names[i]);
        }
        free(names);
        return r;
}

enum {
        O_ROOTFS = 256,
        O_RAMDISK,
        O_RAMDISK_DIR,
        O_HASH_ALG,
        O_FORCE_SHA1,
        O_ALL_OWNERS,
        O_NO_DEFAULT_SKIPS,
        O_IGNORED_KEYRING,
        O_THREADS,
        O_FLAT,
        O_CERT,
};

static int policy_create(int argc, char **argv)
{
        static const struct option opts[] = {
                { "rootfs", required_argument, NULL, O_ROOTFS },
                { "ramdisk", required_argument, NULL, O_RAMDISK },
                { "ramdisk-dir", required_argument, NULL, O_RAMDISK_DIR },
                { "ima-log", required_argument, NULL, 'm' },
                { "ima-measurement-list", required_argument, NULL, 'm' },
                { "allowlist", required_argument, NULL, 'a' },
                { "exclude", required_argument, NULL, 'e' },
                { "excludelist", required_argument, NULL, 'e' },
                { "base-policy", required_argument, NULL, 'p' },
                { "hash-alg", required_argument, NULL, O_HASH_ALG },
                { "algo", required_argument, NULL, O_HASH_ALG },
                { "force-sha1", no_argument, NULL, O_FORCE_SHA1 },
                { "skip-path", required_argument, NULL, 's' },
                { "all-owners", no_argument, NULL, O_ALL_OWNERS },
                { "no-default-skips", no_argument, NULL, O_NO_DEFAULT_SKIPS },
                { "keyrings", no_argument, NULL, 'k' },
                { "ima-buf", no_argument, NULL, 'b' },
                { "ignored-keyring", required_argument, NULL, O_IGNORED_KEYRING },
                { "ignored-keyrings", required_argument, NULL, O_IGNORED_KEYRING },
                { "threads", required_argument, NULL, O_THREADS },
                { "flat", no_argument, NULL, O_FLAT },
                { "show-legacy-allowlist", no_argument, NULL, O_FLAT },
                { "output", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *cmd = "policy create";
        struct list ramdisks = { 0 }, allowlists = { 0 }, excludes = { 0 }, skips = { 0 },
                    ignored = { 0 }, bases = { 0 };
        const char *rootfs = NULL, *ima_log = NULL, *output = NULL, *alg_name = "sha256";
        bool force_sha1 = false, flat = false, keyrings = false, ima_buf = false;
        struct vg_policy_scan_opts so = { 0 };
        struct vg_policy_scan_stats st = { 0 };
        struct progress pg = { .tty = isatty(2) == 1 };
        _cleanup_policy_ struct vg_policy *p = NULL;
        _cleanup_free_ char *out = NULL;
        struct vg_error err = { 0 };
        char **owned = NULL, *skip_copy[MAX_LIST_ITEMS] = { 0 };
        size_t n_owned = 0, n_skip_copy = 0, out_len = 0;
        struct timespec t0, t1;
        int c, r = 0;

        optind = 1;
        opterr = 0;
        while (r == 0 && (c = getopt_long(argc, argv, ":hm:a:e:p:s:kbo:", opts, NULL)) != -1) {
                switch (c) {
                case 'h':
                        create_help(stdout);
                        r = -1;
                        break;
                case O_ROOTFS:
                        if (rootfs)
                                r = cli_usage_error(cmd, "--rootfs: expected one, found two");
                        rootfs = optarg;
                        break;
                case O_RAMDISK:
                        r = list_add(cmd, &ramdisks, "--ramdisk", optarg);
                        break;
                case O_RAMDISK_DIR:
                        r = ramdisk_dir(cmd, optarg, &ramdisks, &owned, &n_owned);
                        break;
                case 'm':
                        if (ima_log)
                                r = cli_usage_error(cmd, "--ima-log: expected one, found two");
                        ima_log = optarg;
                        break;
                case 'a':
                        r = list_add(cmd, &allowlists, "--allowlist", optarg);
                        break;
                case 'e':
                        r = list_add(cmd, &excludes, "--exclude", optarg);
                        break;
                case 'p':
                        r = list_add(cmd, &bases, "--base-policy", optarg);
                        break;
                case O_HASH_ALG:
                        alg_name = optarg;
                        break;
                case O_FORCE_SHA1:
                        force_sha1 = true;
                        break;
                case 's': {
                        /* keylime-policy takes a comma-separated list */
                        char *copy = strdup(optarg), *save = NULL;

                        if (!copy || n_skip_copy == MAX_LIST_ITEMS) {
                                free(copy);
                                r = cli_usage_error(cmd, "--skip-path: too many");
                                break;
                        }
                        skip_copy[n_skip_copy++] = copy;
                        for (char *t = strtok_r(copy, ",", &save); t && r == 0;
                             t = strtok_r(NULL, ",", &save)) {
                                if (t[0] != '/')
                                        r = cli_usage_error(cmd,
                                                            "--skip-path: expected an absolute "
                                                            "path on the target, found '%s'",
                                                            t);
                                else
                                        r = list_add(cmd, &skips, "--skip-path", t);
                        }
                        break;
                }
                case O_ALL_OWNERS:
                        so.all_owners = true;
                        break;
                case O_NO_DEFAULT_SKIPS:
                        so.no_default_skips = true;
                        break;
                case 'k':
                        keyrings = true;
                        break;
                case 'b':
                        ima_buf = true;
                        break;
                case O_IGNORED_KEYRING:
                        r = list_add(cmd, &ignored, "--ignored-keyring", optarg);
                        break;
                case O_THREADS: {
                        char *end;
                        long v = strtol(optarg, &end, 10);

                        if (*end || v < 1 || v > 16)
                                r = cli_usage_error(cmd, "--threads: expected 1 to 16, found '%s'",
                                                    optarg);
                        so.threads = (unsigned)v;
                        break;
                }
                case O_FLAT:
                        flat = true;
                        break;
                case 'o':
                        output = optarg;
                        break;
                case ':':
                        r = cli_usage_error(cmd, "option %s: expected a value", argv[optind - 1]);
                        break;
                default:
                        r = cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
                        break;
                }
        }
        if (r == 0 && optind < argc)
                r = cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        if (r == 0 && !rootfs && !ramdisks.n && !ima_log && !allowlists.n && !bases.n &&
            !excludes.n)
                r = cli_usage_error(cmd,
                                    "expected at least one input (--rootfs, --ramdisk, --ima-log, "
                                    "--allowlist, --base-policy or --exclude), found none");
        if (r == 0 && (vg_hash_alg_from_name(alg_name, &so.alg) < 0))
                r = cli_usage_error(
                    cmd, "--hash-alg: expected sha256, sha384, sha512 or sha1, found '%s'",
                    alg_name);
        if (r == 0 && so.alg == VG_HASH_SHA1 && !force_sha1) {
                fprintf(stderr,
                        "vigil %s: refusing to hash with SHA-1: it is insecure (collisions are "
                        "practical) and RHEL 9 deprecated it; use sha256 (the default), or add "
                        "--force-sha1 if the target's IMA really measures with SHA-1\n",
                        cmd);
                r = 2;
        }
        if (r != 0)
                goto done;
        if (so.alg == VG_HASH_SHA1)
                fprintf(stderr, "vigil %s: warning: hashing with SHA-1, which is insecure\n", cmd);

        so.skip = skips.v;
        so.progress = progress_cb;
        so.unreadable = unreadable_cb;
        so.userdata = &pg;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (vg_policy_new(&p) < 0) {
                r = 1;
                goto done;
        }
        for (size_t i = 0; i < bases.n && r == 0; i++) {
                _cleanup_free_ char *text = NULL;
                size_t len;

                r = slurp(cmd, bases.v[i], &text, &len) < 0 ? 1 : 0;
                if (r == 0 && vg_policy_merge_json(p, text, len, bases.v[i], &err) < 0)
                        r = fail(cmd, &err, 1);
        }
        for (size_t i = 0; i < allowlists.n && r == 0; i++) {
                _cleanup_free_ char *text = NULL;
                size_t len;

                r = slurp(cmd, allowlists.v[i], &text, &len) < 0 ? 1 : 0;
                if (r == 0 && vg_policy_add_allowlist(p, text, len, allowlists.v[i], &err) < 0)
                        r = fail(cmd, &err, 1);
        }
        for (size_t i = 0; i < excludes.n && r == 0; i++) {
                _cleanup_free_ char *text = NULL;
                size_t len;

                r = slurp(cmd, excludes.v[i], &text, &len) < 0 ? 1 : 0;
                if (r == 0 && vg_policy_add_exclude_list(p, text, len, excludes.v[i], &err) < 0)
                        r = fail(cmd, &err, 1);
        }
        for (size_t i = 0; i < ignored.n && r == 0; i++)
                if (vg_policy_add_ignored_keyring(p, ignored.v[i], &err) < 0)
                        r = fail(cmd, &err, 1);
        if (r == 0 && ima_log) {
                _cleanup_free_ char *text = NULL;
                size_t len;

                r = slurp(cmd, ima_log, &text, &len) < 0 ? 1 : 0;
                if (r == 0 &&
                    vg_policy_add_ima_log(p, text, len, ima_log, keyrings, ima_buf, &err) < 0)
                        r = fail(cmd, &err, 1);
        }
        for (size_t i = 0; i < ramdisks.n && r == 0; i++)
                if (vg_policy_add_initramfs(p, ramdisks.v[i], &so, &st, &err) < 0)
                        r = fail(cmd, &err, 1);
        if (r == 0 && rootfs && vg_policy_add_rootfs(p, rootfs, &so, &st, &err) < 0)
                r = fail(cmd, &err, 1);
        if (r != 0)
                goto done;
        clock_gettime(CLOCK_MONOTONIC, &t1);

        if (flat)
                r = vg_policy_to_flat(p, &out, &out_len, &err);
        else
                r = vg_policy_to_json(p, &out, &err);
        if (r < 0) {
                r = fail(cmd, &err, 1);
                goto done;
        }
        if (!flat)
                out_len = strlen(out);
        r = spew(cmd, output, out, out_len, !flat);
        if (r == 0 && (rootfs || ramdisks.n)) {
                double secs =
                    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

                fprintf(stderr,
                        "vigil %s: %llu files hashed (%.1f MiB, %s) in %.2f s (%.0f files/s)", cmd,
                        (unsigned long long)st.hashed, (double)st.bytes / 1048576.0,
                        vg_hash_alg_name(so.alg), secs, secs > 0 ? (double)st.hashed / secs : 0.0);
                if (st.unreadable)
                        fprintf(stderr, ", %llu unreadable", (unsigned long long)st.unreadable);
                if (st.not_root)
                        fprintf(stderr, ", %llu not owned by root skipped (see --all-owners)",
                                (unsigned long long)st.not_root);
                if (st.skipped)
                        fprintf(stderr, ", %llu skipped by path", (unsigned long long)st.skipped);
                if (st.bad_name)
                        fprintf(stderr, ", %llu with non-UTF-8 names left out",
                                (unsigned long long)st.bad_name);
                fputc('\n', stderr);
        }
done:
        for (size_t i = 0; i < n_owned; i++)
                free(owned[i]);
        free(owned);
        for (size_t i = 0; i < n_skip_copy; i++)
                free(skip_copy[i]);
        return r < 0 ? 0 : r;
}

/* --- sign ---------------------------------------------------------------------------------------
 */

static void sign_help(FILE *out)
{
        fprintf(
            out,
            "Usage: vigil policy sign [runtime] -r POLICY [-k KEY.pem | -p NEWKEY.pem] [-o OUT]\n\n"
            "Sign a runtime policy into a DSSE envelope as `keylime-policy sign runtime`\n"
            "does: ECDSA-SHA256 over PAE(\"" VG_DSSE_KEYLIME_PAYLOAD_TYPE "\", policy),\n"
            "keyid = SHA-256 of the public key's PEM. The policy is checked first.\n\n"
            "Options:\n"
            "  -r, --runtime-policy FILE  the runtime policy to sign (required)\n"
            "  -k, --keyfile KEY.pem      the EC private key to sign with\n"
            "  -p, --keypath FILE         without -k: where to write a new P-256 key\n"
            "                             (default " DEFAULT_KEY "; never overwritten)\n"
            "  -o, --output FILE          the envelope (default: standard output)\n"
            "  -h, --help                 this text\n\n"
            "See vigil-policy(1).\n");
}

static int policy_sign(int argc, char **argv)
{
        static const struct option opts[] = {
                { "runtime-policy", required_argument, NULL, 'r' },
                { "keyfile", required_argument, NULL, 'k' },
                { "keypath", required_argument, NULL, 'p' },
                { "output", required_argument, NULL, 'o' },
                { "backend", required_argument, NULL, 'b' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *cmd = "policy sign";
        const char *policy = NULL, *keyfile = NULL, *keypath = NULL, *output = NULL;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        _cleanup_free_ char *text = NULL, *env = NULL, *keyid = NULL;
        struct vg_error err = { 0 };
        size_t len;
        int c;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hr:k:p:o:b:", opts, NULL)) != -1) {
                switch (c) {
                case 'h':
                        sign_help(stdout);
                        return 0;
                case 'r':
                        policy = optarg;
                        break;
                case 'k':
                        keyfile = optarg;
                        break;
                case 'p':
                        keypath = optarg;
                        break;
                case 'o':
                        output = optarg;
                        break;
                case 'b':
                        if (strcmp(optarg, "ecdsa") != 0)
                                return cli_usage_error(cmd,
                                                       "--backend: expected ecdsa (the x509 "
                                                       "backend is not supported), found '%s'",
                                                       optarg);
                        break;
                case ':':
                        return cli_usage_error(cmd, "option %s: expected a value",
                                               argv[optind - 1]);
                default:
                        return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        if (!policy)
                return cli_usage_error(cmd, "expected -r POLICY, found none");
        if (keyfile && keypath)
                return cli_usage_error(cmd,
                                       "expected -k KEY (sign with it) or -p FILE (write a new "
                                       "key there), found both");
        if (slurp(cmd, policy, &text, &len) < 0)
                return 2;
        if (vg_policy_check_json(text, len, &err) < 0) {
                fprintf(stderr, "vigil %s: %s: not a valid runtime policy: %s\n", cmd, policy,
                        vg_error_str(&err));
                return 2;
        }
        if (keyfile) {
                if (vg_dsse_load_private_key(keyfile, &key, &err) < 0)
                        return fail(cmd, &err, 2);
        } else {
                if (!keypath)
                        keypath = DEFAULT_KEY;
                if (vg_dsse_generate_key(keypath, &key, &err) < 0) {
                        if (err.code == -EEXIST)
                                fprintf(stderr,
                                        "vigil %s: %s already exists; sign with it using -k, or "
                                        "choose another file with -p\n",
                                        cmd, keypath);
                        else
                                fail(cmd, &err, 1);
                        return 1;
                }
                fprintf(stderr, "vigil %s: wrote a new EC P-256 key to %s\n", cmd, keypath);
        }
        if (vg_dsse_keyid(key, &keyid) < 0 ||
            vg_dsse_sign(key, keyid, VG_DSSE_KEYLIME_PAYLOAD_TYPE, text, len, &env, &err) < 0)
                return fail(cmd, &err, 1);
        if (spew(cmd, output, env, strlen(env), true) != 0)
                return 1;
        fprintf(stderr, "vigil %s: signed %s with keyid %s\n", cmd, policy, keyid);
        return 0;
}

/* --- verify -------------------------------------------------------------------------------------
 */

static void verify_help(FILE *out)
{
        fprintf(out,
                "Usage: vigil policy verify [runtime] -r SIGNED (-k KEY.pem | --cert CERT.pem) "
                "[-o POLICY]\n\n"
                "Check a DSSE-signed runtime policy as Keylime's verifier does: a signature of\n"
                "the envelope must verify (ECDSA-SHA256 over PAE) with the EC key.\n\n"
                "Options:\n"
                "  -r, --runtime-policy FILE  the envelope (required)\n"
                "  -k, --keyfile FILE         PEM public key (an EC private key also works)\n"
                "  --cert FILE                PEM X.509 certificate holding the key\n"
                "  -o, --output FILE          write the verified policy there\n"
                "  -h, --help                 this text\n\n"
                "Exit status: 0 valid, 1 invalid (no signature verifies), 2 unusable input.\n"
                "See vigil-policy(1).\n");
}

static int policy_verify(int argc, char **argv)
{
        static const struct option opts[] = {
                { "runtime-policy", required_argument, NULL, 'r' },
                { "keyfile", required_argument, NULL, 'k' },
                { "cert", required_argument, NULL, O_CERT },
                { "output", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *cmd = "policy verify";
        const char *signed_path = NULL, *keyfile = NULL, *certfile = NULL, *output = NULL;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        _cleanup_(X509_freep) X509 *cert = NULL;
        _cleanup_(vg_dsse_verified_clear) struct vg_dsse_verified v = { 0 };
        _cleanup_free_ char *text = NULL, *keyid = NULL;
        struct vg_error err = { 0 };
        size_t len;
        int c, r;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hr:k:o:", opts, NULL)) != -1) {
                switch (c) {
                case 'h':
                        verify_help(stdout);
                        return 0;
                case 'r':
                        signed_path = optarg;
                        break;
                case 'k':
                        keyfile = optarg;
                        break;
                case O_CERT:
                        certfile = optarg;
                        break;
                case 'o':
                        output = optarg;
                        break;
                case ':':
                        return cli_usage_error(cmd, "option %s: expected a value",
                                               argv[optind - 1]);
                default:
                        return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        if (!signed_path)
                return cli_usage_error(cmd, "expected -r SIGNED, found none");
        if (!keyfile == !certfile)
                return cli_usage_error(cmd, "expected one of -k KEY or --cert CERT, found %s",
                                       keyfile ? "both" : "neither");
        if (vg_dsse_load_public_key(keyfile ? keyfile : certfile, certfile != NULL, &key, &cert,
                                    &err) < 0)
                return fail(cmd, &err, 2);
        if (slurp(cmd, signed_path, &text, &len) < 0)
                return 2;
        r = vg_dsse_verify(text, len, key, &v, &err);
        if (r == -EKEYREJECTED) {
                fprintf(stderr, "vigil %s: %s: INVALID: %s %s\n", cmd, signed_path,
                        vg_error_str(&err), keyfile ? keyfile : certfile);
                return 1;
        }
        if (r < 0) {
                fprintf(stderr, "vigil %s: %s: %s\n", cmd, signed_path, vg_error_str(&err));
                return 2;
        }
        if (vg_dsse_keyid(key, &keyid) < 0)
                return 1;
        printf("%s: valid signature by keyid %s (payloadType %s, %zu bytes)\n", signed_path, keyid,
               v.type, v.len);
        if (strcmp(v.type, VG_DSSE_KEYLIME_PAYLOAD_TYPE) != 0)
                fprintf(stderr, "vigil %s: warning: payloadType is '%s', not Keylime's '%s'\n", cmd,
                        v.type, VG_DSSE_KEYLIME_PAYLOAD_TYPE);
        else if (vg_policy_check_json((const char *)v.payload, v.len, &err) < 0)
                fprintf(stderr,
                        "vigil %s: warning: the signed payload is not a valid runtime policy: %s\n",
                        cmd, vg_error_str(&err));
        if (output && spew(cmd, output, (const char *)v.payload, v.len, false) != 0)
                return 2;
        return 0;
}

/* --- convert ------------------------------------------------------------------------------------
 */

static void convert_help(FILE *out)
{
        fprintf(out,
                "Usage: vigil policy convert (-a ALLOWLIST | -i POLICY) [-e EXCLUDE] [-o OUT]\n\n"
                "Turn a legacy allowlist (flat `<hex>  <path>` lines, or JSON with \"hashes\")\n"
                "and exclude list into a runtime policy JSON v1, as\n"
                "keylime_convert_runtime_policy does.\n\n"
                "Options:\n"
                "  -a, --allowlist FILE       the legacy allowlist\n"
                "  -i, --runtime-policy FILE  an existing runtime policy to bring up to date\n"
                "  -e, --excludelist FILE     an exclude list: one regex per line\n"
                "  -o, --output FILE          write there (default: standard output)\n"
                "  -h, --help                 this text\n\n"
                "See vigil-policy(1).\n");
}

static int policy_convert(int argc, char **argv)
{
        static const struct option opts[] = {
                { "allowlist", required_argument, NULL, 'a' },
                { "runtime-policy", required_argument, NULL, 'i' },
                { "runtime_policy", required_argument, NULL, 'i' },
                { "excludelist", required_argument, NULL, 'e' },
                { "exclude", required_argument, NULL, 'e' },
                { "output", required_argument, NULL, 'o' },
                { "output_file", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *cmd = "policy convert";
        const char *allowlist = NULL, *policy = NULL, *exclude = NULL, *output = NULL;
        _cleanup_policy_ struct vg_policy *p = NULL;
        _cleanup_free_ char *text = NULL, *ex = NULL, *out = NULL;
        struct vg_error err = { 0 };
        size_t len, ex_len;
        int c;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":ha:i:e:o:", opts, NULL)) != -1) {
                switch (c) {
                case 'h':
                        convert_help(stdout);
                        return 0;
                case 'a':
                        allowlist = optarg;
                        break;
                case 'i':
                        policy = optarg;
                        break;
                case 'e':
                        exclude = optarg;
                        break;
                case 'o':
                        output = optarg;
                        break;
                case ':':
                        return cli_usage_error(cmd, "option %s: expected a value",
                                               argv[optind - 1]);
                default:
                        return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        if (!allowlist == !policy)
                return cli_usage_error(cmd, "expected one of -a ALLOWLIST or -i POLICY, found %s",
                                       allowlist ? "both" : "neither");
        if (vg_policy_new(&p) < 0)
                return 1;
        if (slurp(cmd, allowlist ? allowlist : policy, &text, &len) < 0)
                return 1;
        if (allowlist && vg_policy_add_allowlist(p, text, len, allowlist, &err) < 0)
                return fail(cmd, &err, 1);
        if (policy) {
                if (vg_policy_merge_json(p, text, len, policy, &err) < 0)
                        return fail(cmd, &err, 1);
                vg_policy_set_generator(p, VG_POLICY_GEN_COMPATIBLE);
        }
        if (exclude) {
                if (slurp(cmd, exclude, &ex, &ex_len) < 0)
                        return 1;
                if (vg_policy_add_exclude_list(p, ex, ex_len, exclude, &err) < 0)
                        return fail(cmd, &err, 1);
        }
        if (vg_policy_to_json(p, &out, &err) < 0)
                return fail(cmd, &err, 1);
        if (spew(cmd, output, out, strlen(out), true) != 0)
                return 1;
        fprintf(stderr, "vigil %s: %zu digests for %s, %zu keyring digests, %zu excludes\n", cmd,
                vg_policy_count(p, VG_POLICY_DIGESTS), allowlist ? allowlist : policy,
                vg_policy_count(p, VG_POLICY_KEYRINGS), vg_policy_exclude_count(p));
        return 0;
}

/* --- create measured-boot (keylime-policy create measured-boot) ------------------------------ */

static void mb_create_help(FILE *out)
{
        fprintf(out,
                "Usage: vigil policy create measured-boot -e EVENTLOG [-i] [-o OUT] [--force]\n\n"
                "Create a Keylime measured-boot reference state (the refstate of Keylime's\n"
                "example policy) from a known-good binary UEFI event log, as\n"
                "`keylime-policy create measured-boot` does. The policy is checked against\n"
                "the log it came from; when it would not pass that log, the failures are\n"
                "listed and nothing is written (unless --force).\n\n"
                "Options:\n"
                "  -e, --eventlog FILE       the binary event log (normally\n"
                "                            /sys/kernel/security/tpm0/binary_bios_measurements);\n"
                "                            also --eventlog-file\n"
                "  -i, --without-secureboot  allow a log with Secure Boot off (measured boot only:\n"
                "                            the kernel is pinned by its plain digest)\n"
                "  -o, --output FILE         where to write the JSON ('-', the default: stdout)\n"
                "      --force               write the policy even if it fails its own log\n"
                "  -h, --help                this text\n");
}

static void mb_warn(const char *msg, void *ud)
{
        fprintf(stderr, "vigil %s: warning: %s\n", (const char *)ud, msg);
}

static int policy_create_mb(int argc, char **argv)
{
        enum { O_FORCE = 0x100 };
        static const struct option opts[] = {
                { "eventlog", required_argument, NULL, 'e' },
                { "eventlog-file", required_argument, NULL, 'e' },
                { "without-secureboot", no_argument, NULL, 'i' },
                { "output", required_argument, NULL, 'o' },
                { "force", no_argument, NULL, O_FORCE },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *cmd = "policy create measured-boot", *log_path = NULL, *out_path = "-";
        struct vg_mb_create_opts o = { .warn = mb_warn, .ud = (void *)cmd };
        struct vg_error err = { 0 };
        struct vg_evlog *log = NULL;
        struct vg_mb_policy *pol = NULL;
        struct vg_mb_result res = { 0 };
        json_t *ref = NULL;
        _cleanup_free_ char *text = NULL;
        bool force = false;
        int c, status = 1;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":e:io:h", opts, NULL)) != -1) {
                switch (c) {
                case 'e':
                        if (log_path)
                                return cli_usage_error(cmd, "--eventlog: expected one, found two");
                        log_path = optarg;
                        break;
                case 'i':
                        o.without_secureboot = true;
                        break;
                case 'o':
                        out_path = optarg;
                        break;
                case O_FORCE:
                        force = true;
                        break;
                case 'h':
                        mb_create_help(stdout);
                        return 0;
                case ':':
                        return cli_usage_error(cmd, "option %s: expected a value",
                                               argv[optind - 1]);
                default:
                        return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        if (!log_path)
                return cli_usage_error(cmd, "expected --eventlog FILE, found none");
        if (vg_evlog_load(log_path, &log, &err) < 0)
                return fail(cmd, &err, 1);
        if (vg_mb_policy_create(log, &o, &ref, &err) < 0) {
                vg_error_prefix(&err, "%s: ", log_path);
                status = fail(cmd, &err, 1);
                goto out;
        }
        if (vg_mb_policy_from_json(ref, &pol, &err) < 0) {
                status = fail(cmd, &err, 1);
                goto out;
        }
        if (vg_mb_policy_evaluate(pol, log, &res, &err) < 0) {
                if (res.n_failures == 0) {
                        status = fail(cmd, &err, 1);
                        goto out;
                }
                fprintf(stderr,
                        "vigil %s: %s: the generated policy does not pass the log it came from "
                        "(%zu failure%s; Keylime's example policy rejects this boot too):\n",
                        cmd, log_path, res.n_failures, res.n_failures == 1 ? "" : "s");
                for (size_t i = 0; i < res.n_failures; i++)
                        fprintf(stderr, "  %s\n", res.failures[i].msg);
                if (!force)
                        goto out;
        }
        text = json_dumps(ref, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text) {
                fprintf(stderr, "vigil %s: out of memory\n", cmd);
                goto out;
        }
        status = spew(cmd, out_path, text, strlen(text), true);
out:
        vg_mb_result_clear(&res);
        vg_mb_policy_free(pol);
        json_decref(ref);
        vg_evlog_free(log);
        return status;
}

/* --- vigil policy -------------------------------------------------------------------------------
 */

static void policy_help(FILE *out)
{
        fprintf(out,
                "Usage: vigil policy VERB [OPTIONS]\n\n"
                "Keylime runtime policies: create them from a system, sign and verify them\n"
                "(DSSE), and convert legacy allowlists.\n\n"
                "Verbs:\n"
                "  create [runtime]  a runtime policy from a rootfs, initramfs, IMA log, lists\n"
                "  create measured-boot  a measured-boot refstate from a UEFI event log\n"
                "  sign [runtime]    a DSSE envelope around a policy (ECDSA)\n"
                "  verify [runtime]  check a DSSE envelope with a key or certificate\n"
                "  convert           a legacy allowlist and exclude list to a policy\n\n"
                "`vigil policy VERB --help` describes each verb; see also vigil-policy(1).\n");
}

int cmd_policy(int argc, char **argv)
{
        static const struct {
                const char *verb;
                int (*run)(int argc, char **argv);
        } verbs[] = {
                { "create", policy_create },
                { "sign", policy_sign },
                { "verify", policy_verify },
                { "convert", policy_convert },
        };

        if (argc < 2) {
                policy_help(stderr);
                return 2;
        }
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
            strcmp(argv[1], "help") == 0) {
                policy_help(stdout);
                return 0;
        }
        for (size_t i = 0; i < VG_ARRAY_SIZE(verbs); i++) {
                if (strcmp(argv[1], verbs[i].verb) != 0)
                        continue;
                argc--, argv++;
                /* `keylime-policy create runtime`: the noun is optional here, runtime is the
                 * only kind vigil makes. */
                if (argc > 1 && strcmp(argv[1], "runtime") == 0) {
                        argv[1] = argv[0];
                        argc--, argv++;
                }
                if (verbs[i].run == policy_create && argc > 1 &&
                    strcmp(argv[1], "measured-boot") == 0)
                        return policy_create_mb(argc - 1, argv + 1);
                return verbs[i].run(argc, argv);
        }
        return cli_usage_error("policy", "unknown verb '%s'", argv[1]);
}
