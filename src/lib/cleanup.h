/* vigil: scope-bound ownership helpers.
 * `_cleanup_(fn)` runs fn(&var) when var leaves scope; TAKE_PTR hands ownership on. */
#pragma once

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(fn) __attribute__((cleanup(fn)))

/* Define `name##p(type **p)` that calls fn(*p) when *p is not NULL. */
#define VG_DEFINE_CLEANUP_FUNC(type, fn)                                                           \
        static inline void fn##p(type **p)                                                         \
        {                                                                                          \
                if (*p)                                                                            \
                        fn(*p);                                                                    \
        }

static inline void freep(void *p)
{
        free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Zero secret material before freeing it. The pointer must come with its length. */
struct vg_secret {
        unsigned char *p;
        size_t len;
};
void vg_secret_free(struct vg_secret *s);
#define _cleanup_secret_ _cleanup_(vg_secret_free)

/* Return *pp and set it to NULL: ownership moves to the caller. */
#define TAKE_PTR(ptr)                                                                              \
        ({                                                                                         \
                __typeof__(ptr) _tp_ = (ptr);                                                      \
                (ptr) = NULL;                                                                      \
                _tp_;                                                                              \
        })

#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _tf_ = (fd);                                                                   \
                (fd) = -1;                                                                         \
                _tf_;                                                                              \
        })

#define VG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
