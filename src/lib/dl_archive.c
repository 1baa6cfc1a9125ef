/* vigil: libarchive loaded at run time: fills vg_dl_archive once per process (see
 * dl_archive.h), with the soname meson read from the library it found at configure time. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "dl_archive.h"

#define VG_DL_ARCHIVE_USERS "vigil tenant, vigil policy and vigil-agent payloads"

#ifndef VG_DL_ARCHIVE_SONAME
#define VG_DL_ARCHIVE_SONAME "libarchive.so.13" /* Debian 12 */
#endif
#ifndef VG_DL_ARCHIVE_PACKAGE
#define VG_DL_ARCHIVE_PACKAGE "libarchive13"
#endif

struct vg_dl_archive_table vg_dl_archive;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct vg_error load_err; /* the one load's outcome, reported to every caller */

static void load(void)
{
        struct vg_dl_archive_table t = { 0 };
        const char *missing = NULL;
        void *h = dlopen(VG_DL_ARCHIVE_SONAME, RTLD_NOW | RTLD_LOCAL);

        if (!h) {
                const char *why = dlerror();

                if (!why || strstr(why, "No such file"))
                        vg_error_set(&load_err, -ENOENT,
                                     VG_DL_ARCHIVE_SONAME
                                     " not found: install " VG_DL_ARCHIVE_PACKAGE
                                     " (" VG_DL_ARCHIVE_USERS " need it)");
                else
                        vg_error_set(&load_err, -ELIBBAD,
                                     "cannot load " VG_DL_ARCHIVE_SONAME " (" VG_DL_ARCHIVE_USERS
                                     " need it): %s",
                                     why);
                return;
        }
#define VG_DL_SYM_(f)                                                                              \
        if (!missing && !(t.f = (__typeof__(t.f))dlsym(h, #f)))                                    \
                missing = #f;
        VG_DL_ARCHIVE_SYMBOLS(VG_DL_SYM_)
#undef VG_DL_SYM_
        if (missing) {
                vg_error_set(&load_err, -ELIBBAD,
                             VG_DL_ARCHIVE_SONAME " has no %s: libarchive >= 3.6 needed", missing);
                dlclose(h);
                return;
        }
        vg_dl_archive = t; /* the handle stays open for the life of the process */
}

int vg_dl_archive_load(struct vg_error *err)
{
        pthread_once(&load_once, load);
        if (load_err.code < 0)
                return vg_error_set(err, load_err.code, "%s", load_err.msg);
        return 0;
}
