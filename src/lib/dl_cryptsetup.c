/* vigil: libcryptsetup loaded at run time: fills vg_dl_cryptsetup once per process (see
 * dl_cryptsetup.h), with the soname meson read from the library it found at configure time. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "dl_cryptsetup.h"

#ifndef VG_DL_CRYPTSETUP_SONAME
#define VG_DL_CRYPTSETUP_SONAME "libcryptsetup.so.12" /* Debian 12 */
#endif
#ifndef VG_DL_CRYPTSETUP_PACKAGE
#define VG_DL_CRYPTSETUP_PACKAGE "libcryptsetup12"
#endif

struct vg_dl_cryptsetup_table vg_dl_cryptsetup;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct vg_error load_err; /* the one load's outcome, reported to every caller */

static void load(void)
{
        struct vg_dl_cryptsetup_table t = { 0 };
        const char *missing = NULL;
        void *h = dlopen(VG_DL_CRYPTSETUP_SONAME, RTLD_NOW | RTLD_LOCAL);

        if (!h) {
                const char *why = dlerror();

                if (!why || strstr(why, "No such file"))
                        vg_error_set(&load_err, -ENOENT,
                                     VG_DL_CRYPTSETUP_SONAME
                                     " not found: install " VG_DL_CRYPTSETUP_PACKAGE
                                     " (vigil luks needs it)");
                else
                        vg_error_set(&load_err, -ELIBBAD,
                                     "cannot load " VG_DL_CRYPTSETUP_SONAME
                                     " (vigil luks needs it): %s",
                                     why);
                return;
        }
#define VG_DL_SYM_(f)                                                                              \
        if (!missing && !(t.f = (__typeof__(t.f))dlsym(h, #f)))                                    \
                missing = #f;
        VG_DL_CRYPTSETUP_SYMBOLS(VG_DL_SYM_)
#undef VG_DL_SYM_
        if (missing) {
                vg_error_set(&load_err, -ELIBBAD,
                             VG_DL_CRYPTSETUP_SONAME " has no %s: libcryptsetup >= 2.4 needed",
                             missing);
                dlclose(h);
                return;
        }
        vg_dl_cryptsetup = t; /* the handle stays open for the life of the process */
}

int vg_dl_cryptsetup_load(struct vg_error *err)
{
        pthread_once(&load_once, load);
        if (load_err.code < 0)
                return vg_error_set(err, load_err.code, "%s", load_err.msg);
        return 0;
}
