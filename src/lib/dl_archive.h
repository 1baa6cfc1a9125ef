/* vigil: libarchive loaded at run time (dlopen on first use), so that only the code that reads
 * or writes archives pays for it and its dependencies (libxml2, ICU, libstdc++, ...): `vigil pin`
 * and the other commands start without them.
 *
 * Include this instead of <archive.h> and <archive_entry.h>: each archive_*() vigil uses becomes
 * a call through vg_dl_archive, the table vg_dl_archive_load() fills. Call that load at every
 * entry point before the first archive_*() call; an archive_*() call before a successful load is
 * a NULL call. */
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include "error.h"

/* The functions vigil uses; the table and the macros below list the same names. */
#define VG_DL_ARCHIVE_SYMBOLS(X)                                                                   \
        X(archive_entry_dev)                                                                       \
        X(archive_entry_filetype)                                                                  \
        X(archive_entry_free)                                                                      \
        X(archive_entry_hardlink)                                                                  \
        X(archive_entry_ino64)                                                                     \
        X(archive_entry_new)                                                                       \
        X(archive_entry_nlink)                                                                     \
        X(archive_entry_pathname)                                                                  \
        X(archive_entry_set_filetype)                                                              \
        X(archive_entry_set_pathname)                                                              \
        X(archive_entry_set_perm)                                                                  \
        X(archive_entry_set_size)                                                                  \
        X(archive_entry_symlink)                                                                   \
        X(archive_error_string)                                                                    \
        X(archive_filter_bytes)                                                                    \
        X(archive_filter_code)                                                                     \
        X(archive_filter_count)                                                                    \
        X(archive_read_data_block)                                                                 \
        X(archive_read_free)                                                                       \
        X(archive_read_new)                                                                        \
        X(archive_read_next_header)                                                                \
        X(archive_read_open_memory)                                                                \
        X(archive_read_support_filter_all)                                                         \
        X(archive_read_support_format_cpio)                                                        \
        X(archive_read_support_format_zip)                                                         \
        X(archive_write_close)                                                                     \
        X(archive_write_data)                                                                      \
        X(archive_write_data_block)                                                                \
        X(archive_write_disk_new)                                                                  \
        X(archive_write_disk_set_options)                                                          \
        X(archive_write_finish_entry)                                                              \
        X(archive_write_free)                                                                      \
        X(archive_write_header)                                                                    \
        X(archive_write_new)                                                                       \
        X(archive_write_open)                                                                      \
        X(archive_write_set_format_zip)                                                            \
        X(archive_write_zip_set_compression_store)

/* Pointers typed from the real prototypes: a signature change in the header is a compile
 * error here, not a crash at run time. */
struct vg_dl_archive_table {
#define VG_DL_FIELD_(f) __typeof__(&f) f;
        VG_DL_ARCHIVE_SYMBOLS(VG_DL_FIELD_)
#undef VG_DL_FIELD_
};

/* Written once under pthread_once by vg_dl_archive_load(), read-only after. */
extern struct vg_dl_archive_table vg_dl_archive;

/* Load the library (once per process; later calls return the first result). 0, or -ENOENT with
 * "libarchive.so.13 not found: install libarchive13 (...)", or -ELIBBAD when a function is
 * missing from the library found. Thread-safe. */
int vg_dl_archive_load(struct vg_error *err);

#define archive_entry_dev(...)          vg_dl_archive.archive_entry_dev(__VA_ARGS__)
#define archive_entry_filetype(...)     vg_dl_archive.archive_entry_filetype(__VA_ARGS__)
#define archive_entry_free(...)         vg_dl_archive.archive_entry_free(__VA_ARGS__)
#define archive_entry_hardlink(...)     vg_dl_archive.archive_entry_hardlink(__VA_ARGS__)
#define archive_entry_ino64(...)        vg_dl_archive.archive_entry_ino64(__VA_ARGS__)
#define archive_entry_new(...)          vg_dl_archive.archive_entry_new(__VA_ARGS__)
#define archive_entry_nlink(...)        vg_dl_archive.archive_entry_nlink(__VA_ARGS__)
#define archive_entry_pathname(...)     vg_dl_archive.archive_entry_pathname(__VA_ARGS__)
#define archive_entry_set_filetype(...) vg_dl_archive.archive_entry_set_filetype(__VA_ARGS__)
#define archive_entry_set_pathname(...) vg_dl_archive.archive_entry_set_pathname(__VA_ARGS__)
#define archive_entry_set_perm(...)     vg_dl_archive.archive_entry_set_perm(__VA_ARGS__)
#define archive_entry_set_size(...)     vg_dl_archive.archive_entry_set_size(__VA_ARGS__)
#define archive_entry_symlink(...)      vg_dl_archive.archive_entry_symlink(__VA_ARGS__)
#define archive_error_string(...)       vg_dl_archive.archive_error_string(__VA_ARGS__)
#define archive_filter_bytes(...)       vg_dl_archive.archive_filter_bytes(__VA_ARGS__)
#define archive_filter_code(...)        vg_dl_archive.archive_filter_code(__VA_ARGS__)
#define archive_filter_count(...)       vg_dl_archive.archive_filter_count(__VA_ARGS__)
#define archive_read_data_block(...)    vg_dl_archive.archive_read_data_block(__VA_ARGS__)
#define archive_read_free(...)          vg_dl_archive.archive_read_free(__VA_ARGS__)
#define archive_read_new(...)           vg_dl_archive.archive_read_new(__VA_ARGS__)
#define archive_read_next_header(...)   vg_dl_archive.archive_read_next_header(__VA_ARGS__)
#define archive_read_open_memory(...)   vg_dl_archive.archive_read_open_memory(__VA_ARGS__)
#define archive_read_support_filter_all(...)                                                       \
        vg_dl_archive.archive_read_support_filter_all(__VA_ARGS__)
#define archive_read_support_format_cpio(...)                                                      \
        vg_dl_archive.archive_read_support_format_cpio(__VA_ARGS__)
#define archive_read_support_format_zip(...)                                                       \
        vg_dl_archive.archive_read_support_format_zip(__VA_ARGS__)
#define archive_write_close(...)      vg_dl_archive.archive_write_close(__VA_ARGS__)
#define archive_write_data(...)       vg_dl_archive.archive_write_data(__VA_ARGS__)
#define archive_write_data_block(...) vg_dl_archive.archive_write_data_block(__VA_ARGS__)
#define archive_write_disk_new(...)   vg_dl_archive.archive_write_disk_new(__VA_ARGS__)
#define archive_write_disk_set_options(...)                                                        \
        vg_dl_archive.archive_write_disk_set_options(__VA_ARGS__)
#define archive_write_finish_entry(...)   vg_dl_archive.archive_write_finish_entry(__VA_ARGS__)
#define archive_write_free(...)           vg_dl_archive.archive_write_free(__VA_ARGS__)
#define archive_write_header(...)         vg_dl_archive.archive_write_header(__VA_ARGS__)
#define archive_write_new(...)            vg_dl_archive.archive_write_new(__VA_ARGS__)
#define archive_write_open(...)           vg_dl_archive.archive_write_open(__VA_ARGS__)
#define archive_write_set_format_zip(...) vg_dl_archive.archive_write_set_format_zip(__VA_ARGS__)
#define archive_write_zip_set_compression_store(...)                                               \
        vg_dl_archive.archive_write_zip_set_compression_store(__VA_ARGS__)
