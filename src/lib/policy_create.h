/* vigil: building Keylime runtime policies (JSON v1, reference/keylime.md §5) from a root
 * filesystem, initramfs images, IMA logs, flat/legacy allowlists, exclude lists and base policies.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"
#include "hash.h"

/* Keylime's RUNTIME_POLICY_GENERATOR values (meta.generator). */
enum vg_policy_generator {
        VG_POLICY_GEN_UNKNOWN = 0,
        VG_POLICY_GEN_EMPTY = 1,
        VG_POLICY_GEN_COMPATIBLE = 2,
        VG_POLICY_GEN_LEGACY = 3, /* what keylime-policy and the converter write */
};

/* Which map of the policy a digest goes to. */
enum vg_policy_map {
        VG_POLICY_DIGESTS,  /* "digests": file path -> digests */
        VG_POLICY_KEYRINGS, /* "keyrings": keyring name -> digests of keys */
        VG_POLICY_IMA_BUF,  /* "ima-buf": buffer name -> digests */
};

/* A runtime policy being assembled: maps of unique digests, excludes, ima settings. */
struct vg_policy;

int vg_policy_new(struct vg_policy **out);
void vg_policy_free(struct vg_policy *p);
VG_DEFINE_CLEANUP_FUNC(struct vg_policy, vg_policy_free)
#define _cleanup_policy_ _cleanup_(vg_policy_freep)

/* Add one digest (lower- or upper-case hex of 40..128 characters; kept lower-case, once).
 * -EINVAL for a digest that is not hex or of a wrong length, -EILSEQ for a path that is not
 * UTF-8 (JSON cannot carry it). */
int vg_policy_add_digest(struct vg_policy *p, enum vg_policy_map map, const char *path,
                         const char *hex, struct vg_error *err);
/* Add an exclude regex (checked with PCRE2, the verifier's engine; -EINVAL names the error). */
int vg_policy_add_exclude(struct vg_policy *p, const char *regex, struct vg_error *err);
int vg_policy_add_ignored_keyring(struct vg_policy *p, const char *name, struct vg_error *err);
void vg_policy_set_log_hash_alg(struct vg_policy *p, enum vg_hash_alg alg);
void vg_policy_set_generator(struct vg_policy *p, enum vg_policy_generator gen);

size_t vg_policy_count(const struct vg_policy *p,
                       enum vg_policy_map map); /* (name, digest) pairs */
size_t vg_policy_exclude_count(const struct vg_policy *p);
/* Whether `path` in `map` allows digest `hex` (either case); with hex NULL, whether the path
 * is there at all. */
bool vg_policy_has(const struct vg_policy *p, enum vg_policy_map map, const char *path,
                   const char *hex);

/* ---- Inputs ---------------------------------------------------------------------------------- */

/*
 * An allowlist, auto-detected: a legacy JSON allowlist ({"hashes": {path: [hex]}, optionally
 * "excludes", "keyrings", "ima", "ima-buf", "verification-keys"}), or the flat form, one
 * `<hex><whitespace><path>` per line as sha256sum writes it (`%keyring:<name>` paths go to
 * "keyrings"; blank lines and `#` comments skipped). A digest prefixed with its algorithm
 * ("sha256:...", as IMA logs print it) loses the prefix when the length matches. Spaces in
 * paths become '_' as IMA writes them (Keylime does the same). A runtime policy given here is
 * refused (-EINVAL: "use it as a base policy"). `name` is used in messages ("FILE:LINE: ...").
 */
int vg_policy_add_allowlist(struct vg_policy *p, const char *text, size_t len, const char *name,
                            struct vg_error *err);
/* An exclude list: one regex per line, blank lines and `#` comments skipped. */
int vg_policy_add_exclude_list(struct vg_policy *p, const char *text, size_t len, const char *name,
                               struct vg_error *err);
/*
 * Merge a runtime policy JSON (a base policy, as keylime-policy --base-policy does): digests,
 * excludes, keyrings, ima-buf, ignored keyrings, log_hash_alg and verification-keys. Missing
 * keys are fine here; a wrong type or digest is named by its JSON path.
 */
int vg_policy_merge_json(struct vg_policy *p, const char *json, size_t len, const char *name,
                         struct vg_error *err);
/* Check that json is a complete runtime policy v1 as Keylime's schema wants it (every key,
 * bare lower-case hex digests, dm_policy null). 0 or -EINVAL naming the first problem. */
int vg_policy_check_json(const char *json, size_t len, struct vg_error *err);

/*
 * An IMA ASCII measurement list (ima, ima-ng, ima-sig; boot_aggregate included): each file
 * entry's digest is added under its path, and ima.log_hash_alg follows the template hash
 * length of the log. With keyrings, ima-buf entries whose buffer is a key (DER certificate or
 * public key) go to "keyrings" unless ignored; with ima_buf, the other ima-buf entries go to
 * "ima-buf". Uses vg_ima_parse_log; a malformed line is -EBADMSG naming its line.
 */
int vg_policy_add_ima_log(struct vg_policy *p, const char *log, size_t len, const char *name,
                          bool keyrings, bool ima_buf, struct vg_error *err);

/* How files are found and hashed (rootfs and initramfs). */
struct vg_policy_scan_opts {
        enum vg_hash_alg alg;
        /* Rootfs: also hash files not owned by root (Keylime hashes root-owned files only). */
        bool all_owners;
        /* Target paths (as in the policy) not descended into nor hashed; NULL-terminated, or
         * NULL. A prefix matches itself and what is below it ("/usr/share" not "/usr/shared"). */
        const char *const *skip;
        /* Rootfs: do not skip /proc /sys /dev /run /tmp, which are skipped by default. */
        bool no_default_skips;
        unsigned threads; /* hashing threads; 0 means one per online CPU (at most 16) */
        /* Called on the calling thread as files get hashed (done <= total); may be NULL. */
        void (*progress)(uint64_t done, uint64_t total, void *userdata);
        /* Called for each file or directory that could not be read; may be NULL. */
        void (*unreadable)(const char *path, int errnum, void *userdata);
        void *userdata;
};

struct vg_policy_scan_stats {
        uint64_t hashed;     /* regular files hashed into the policy */
        uint64_t bytes;      /* bytes hashed */
        uint64_t unreadable; /* files and directories that could not be read (not fatal) */
        uint64_t not_root;   /* regular files skipped because root does not own them */
        uint64_t skipped;    /* files and directories under a skip prefix */
        uint64_t bad_name;   /* paths that are not UTF-8 and cannot go into JSON */
};

/*
 * Hash every regular file under rootfs (symlinks are not followed, devices/fifos/sockets
 * ignored), recorded under its path on the target: rootfs "/mnt/img" and file
 * "/mnt/img/usr/bin/ls" give "/usr/bin/ls". Unreadable files are reported and counted, not
 * fatal; a rootfs that is not a readable directory is. Stats are added to (may be NULL).
 */
int vg_policy_add_rootfs(struct vg_policy *p, const char *rootfs,
                         const struct vg_policy_scan_opts *opts, struct vg_policy_scan_stats *st,
                         struct vg_error *err);

/*
 * Hash every regular file of an initramfs image: one or more cpio archives one after the other
 * (the early-microcode case: uncompressed cpio, zero padding, then the main archive), each
 * uncompressed or gzip/xz/zstd/bzip2/lz4/lzma/lzop compressed. Paths become absolute
 * ("./usr/bin/sh" -> "/usr/bin/sh"); newc hard links all get the digest of their data. A
 * compressed archive ends the image (what follows it is not read). Damage is -EBADMSG with the
 * byte offset of the archive that held it.
 */
int vg_policy_add_initramfs(struct vg_policy *p, const char *path,
                            const struct vg_policy_scan_opts *opts, struct vg_policy_scan_stats *st,
                            struct vg_error *err);
int vg_policy_add_initramfs_mem(struct vg_policy *p, const void *data, size_t len, const char *name,
                                const struct vg_policy_scan_opts *opts,
                                struct vg_policy_scan_stats *st, struct vg_error *err);

/* ---- Outputs --------------------------------------------------------------------------------- */

/*
 * Runtime policy JSON v1 with every key Keylime requires, on one line as keylime-policy writes
 * it (paths and digests sorted; non-ASCII as \u escapes). meta.timestamp is the local time as
 * Python's str(datetime.now()) prints it, or SOURCE_DATE_EPOCH (UTC) when that is set.
 */
int vg_policy_to_json(const struct vg_policy *p, char **out, struct vg_error *err);
/* The flat allowlist: `<hex>  <path>` lines, boot_aggregate first, then paths in order;
 * keyrings as `%keyring:<name>`. */
int vg_policy_to_flat(const struct vg_policy *p, char **out, size_t *len, struct vg_error *err);
