/* vigil fuzz: vigil-tang's POST /rec/{kid} path (body parser, checks, McCallum-Relyea exchange
 * via libjose) as the pure function the server calls. The first byte picks what kid named: the
 * server's ECMR key, nothing, or a signing key. Every refusal must say why and carry one of
 * tangd's status codes; every 200 must be a public ECMR JWK on the key's curve. */
#include <stdlib.h>
#include <string.h>

#include <jose/jwk.h>

#include "rec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *server_key(void)
{
        static json_t *key;

        if (!key) {
                key = json_pack("{s:s}", "alg", "ECMR");
                if (!key || !jose_jwk_gen(NULL, key))
                        abort();
        }
        return key;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vg_error err = { 0 };
        json_t *key = server_key();
        char *reply = NULL;
        size_t len = 0;
        int status;

        if (size == 0)
                return 0;
        status = vg_tangd_rec(data[0] % 3 == 0 ? key : NULL, data[0] % 3 == 2, data + 1, size - 1,
                              &reply, &len, &err);
        if (status == 200) {
                json_t *y = json_loadb(reply, len, 0, NULL);
                if (!y || json_object_get(y, "d") ||
                    !json_equal(json_object_get(y, "crv"), json_object_get(key, "crv")) ||
                    strcmp(json_string_value(json_object_get(y, "alg")), "ECMR") != 0 ||
                    strlen(reply) != len)
                        abort();
                json_decref(y);
        } else if (status != 400 && status != 403 && status != 404 && status != 413) {
                abort();
        } else if (!err.msg[0] || reply) {
                abort();
        }
        free(reply);
        return 0;
}
