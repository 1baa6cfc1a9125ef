/* vigil fuzz: the measured-boot refstate reader (any JSON) and its evaluation against a fixed
 * small crypto-agile event log built here (S-CRTM, firmware blob, SecureBoot, separator, shim/
 * grub/kernel, grub's cmdline and files, MokList, and one EV_POST_CODE that always fails). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "mb_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t logbuf[2048];
static size_t loglen;

static void put(const void *p, size_t n)
{
        if (loglen + n <= sizeof(logbuf)) {
                memcpy(logbuf + loglen, p, n);
                loglen += n;
        }
}

static void put32(uint32_t v)
{
        uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

        put(b, 4);
}

/* TCG_PCR_EVENT2 with one sha256 digest: fill bytes, or the hash of the data when fill is 0. */
static void event(uint32_t pcr, uint32_t type, uint8_t fill, const void *ev, size_t n)
{
        uint8_t d[32];
        uint8_t alg[2] = { 0x0B, 0x00 };

        if (fill)
                memset(d, fill, sizeof(d));
        else
                vg_hash(VG_HASH_SHA256, ev, n, d);
        put32(pcr);
        put32(type);
        put32(1);
        put(alg, 2);
        put(d, 32);
        put32((uint32_t)n);
        put(ev, n);
}

static void build_log(void)
{
        static const uint8_t specid[] = { 'S', 'p', 'e', 'c', ' ', 'I', 'D',  ' ', 'E', 'v', 'e',
                                          'n', 't', '0', '3', 0,   0,   0,    0,   0,   0,   2,
                                          0,   2,   1,   0,   0,   0,   0x0B, 0,   32,  0,   0 };
        static const uint8_t zero20[20] = { 0 }, sep[4] = { 0 }, blob[16] = { 0 };
        static const char name[] = "SecureBoot";
        uint8_t var[16 + 16 + 20 + 1], image[32] = { 0 };
        size_t o = 0;

        put32(0);
        put32(VG_EV_NO_ACTION);
        put(zero20, 20);
        put32(sizeof(specid));
        put(specid, sizeof(specid));
        event(0, VG_EV_S_CRTM_VERSION, 0x11, "1\0\0", 4);
        event(0, VG_EV_EFI_PLATFORM_FIRMWARE_BLOB, 0x22, blob, sizeof(blob));
        memcpy(var, VG_EFI_GLOBAL_VARIABLE.b, 16);
        o = 16;
        memset(var + o, 0, 16);
        var[o] = 10;    /* UnicodeNameLength */
        var[o + 8] = 1; /* VariableDataLength */
        o += 16;
        for (size_t i = 0; i < 10; i++, o += 2) {
                var[o] = (uint8_t)name[i];
                var[o + 1] = 0;
        }
        var[o++] = 1;
        event(7, VG_EV_EFI_VARIABLE_DRIVER_CONFIG, 0x12, var, o);
        event(7, VG_EV_SEPARATOR, 0, sep, 4);
        event(4, VG_EV_EFI_BOOT_SERVICES_APPLICATION, 0x33, image, sizeof(image));
        event(4, VG_EV_EFI_BOOT_SERVICES_APPLICATION, 0x44, image, sizeof(image));
        event(4, VG_EV_EFI_BOOT_SERVICES_APPLICATION, 0x55, image, sizeof(image));
        event(8, VG_EV_IPL, 0x66, "grub_cmd: linux /vmlinuz-6 ro", 30);
        event(8, VG_EV_IPL, 0x67, "kernel_cmdline: /vmlinuz-6 ro", 30);
        event(9, VG_EV_IPL, 0x77, "/boot/vmlinuz-6", 16);
        event(9, VG_EV_IPL, 0x88, "/boot/initrd-6", 15);
        event(14, VG_EV_IPL, 0x99, "MokList", 8);
        event(0, VG_EV_POST_CODE, 0xAA, blob, sizeof(blob));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct vg_evlog *log;
        struct vg_mb_policy *p = NULL;
        struct vg_mb_result res = { 0 };
        struct vg_error err = { 0 };

        if (!log) {
                build_log();
                if (vg_evlog_parse(logbuf, loglen, &log, &err) < 0)
                        abort(); /* the fixed log must parse */
        }
        if (vg_mb_policy_parse((const char *)data, size, &p, &err) == 0) {
                json_t *back = vg_mb_policy_to_json(p);

                vg_mb_policy_evaluate(p, log, &res, &err);
                /* The POST_CODE event fails every non-empty policy. */
                if (!vg_mb_policy_is_empty(p) && res.n_failures == 0)
                        abort();
                vg_mb_result_clear(&res);
                json_decref(back);
                vg_mb_policy_free(p);
        }
        return 0;
}
