/* vigil: bounds-checked cursor over untrusted bytes. Every read either succeeds and advances,
 * or fails and leaves the cursor untouched; parsers never index raw pointers themselves. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct vg_buf {
        const uint8_t *p;
        size_t len;
};

static inline struct vg_buf vg_buf_init(const void *p, size_t len)
{
        return (struct vg_buf){ .p = p, .len = len };
}

static inline bool vg_buf_skip(struct vg_buf *b, size_t n)
{
        if (b->len < n)
                return false;
        b->p += n;
        b->len -= n;
        return true;
}

/* Split off the next n bytes as their own cursor. */
static inline bool vg_buf_sub(struct vg_buf *b, size_t n, struct vg_buf *out)
{
        if (b->len < n)
                return false;
        *out = vg_buf_init(b->p, n);
        return vg_buf_skip(b, n);
}

static inline bool vg_buf_bytes(struct vg_buf *b, void *dst, size_t n)
{
        if (b->len < n)
                return false;
        memcpy(dst, b->p, n);
        return vg_buf_skip(b, n);
}

static inline bool vg_buf_u8(struct vg_buf *b, uint8_t *v)
{
        return vg_buf_bytes(b, v, 1);
}

static inline bool vg_buf_u16le(struct vg_buf *b, uint16_t *v)
{
        if (b->len < 2)
                return false;
        *v = (uint16_t)(b->p[0] | b->p[1] << 8);
        return vg_buf_skip(b, 2);
}

static inline bool vg_buf_u32le(struct vg_buf *b, uint32_t *v)
{
        if (b->len < 4)
                return false;
        *v = (uint32_t)b->p[0] | (uint32_t)b->p[1] << 8 | (uint32_t)b->p[2] << 16 |
             (uint32_t)b->p[3] << 24;
        return vg_buf_skip(b, 4);
}

static inline bool vg_buf_u16be(struct vg_buf *b, uint16_t *v)
{
        if (b->len < 2)
                return false;
        *v = (uint16_t)(b->p[0] << 8 | b->p[1]);
        return vg_buf_skip(b, 2);
}

static inline bool vg_buf_u32be(struct vg_buf *b, uint32_t *v)
{
        if (b->len < 4)
                return false;
        *v = (uint32_t)b->p[0] << 24 | (uint32_t)b->p[1] << 16 | (uint32_t)b->p[2] << 8 |
             (uint32_t)b->p[3];
        return vg_buf_skip(b, 4);
}

static inline bool vg_buf_u64le(struct vg_buf *b, uint64_t *v)
{
        uint32_t lo, hi;
        struct vg_buf save = *b;

        if (!vg_buf_u32le(b, &lo) || !vg_buf_u32le(b, &hi)) {
                *b = save;
                return false;
        }
        *v = (uint64_t)hi << 32 | lo;
        return true;
}

/* Offset of the cursor from the start of the input, for error messages. */
static inline size_t vg_buf_offset(const struct vg_buf *b, const void *start)
{
        return (size_t)(b->p - (const uint8_t *)start);
}
