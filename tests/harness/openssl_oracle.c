/* vigil tests: the openssl command as an independent oracle for certificates and keys. */
#include "openssl_oracle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "tap.h"

char *ossl_x509(const char *cert, const char *what, const char *arg)
{
        char *out = NULL;

        tap_runl(&out, "openssl", "x509", "-noout", "-in", cert, what, arg, NULL);
        return out;
}

int ossl_verify(const char *cafile, const char *purpose, const char *cert)
{
        return tap_runl(NULL, "openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile",
                        cafile, cert, NULL);
}

int ossl_valid_in_days(const char *cert, long days)
{
        char secs[32];

        snprintf(secs, sizeof(secs), "%ld", days * 86400);
        return tap_runl(NULL, "openssl", "x509", "-noout", "-in", cert, "-checkend", secs, NULL);
}

bool ossl_key_matches(const char *cert, const char *key, const char *passin)
{
        _cleanup_free_ char *a = NULL, *b = NULL;
        int ra = tap_runl(&a, "openssl", "x509", "-noout", "-pubkey", "-in", cert, NULL);
        int rb = tap_runl(&b, "openssl", "pkey", "-pubout", "-in", key, "-passin",
                          passin ? passin : "pass:", NULL);

        return ra == 0 && rb == 0 && strstr(a, "BEGIN PUBLIC KEY") && strcmp(a, b) == 0;
}

char *ossl_serial(const char *cert)
{
        _cleanup_free_ char *out = ossl_x509(cert, "-serial", NULL);
        char *p = out ? strstr(out, "serial=") : NULL;

        if (!p)
                return strdup("(none)");
        p += strlen("serial=");
        p[strcspn(p, "\r\n")] = '\0';
        return strdup(p);
}
