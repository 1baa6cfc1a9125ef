/* vigil tests: the openssl command as an independent oracle for certificates and keys we make
 * (CA, mTLS, EK checks): what it prints and whether it accepts them. */
#pragma once

#include <stdbool.h>

/* `openssl x509 -noout -in cert WHAT [ARG]`'s output ("-ext subjectAltName", "-serial"). */
char *ossl_x509(const char *cert, const char *what, const char *arg);
/* `openssl verify -x509_strict -purpose PURPOSE -CAfile CAFILE CERT`: its exit status. */
int ossl_verify(const char *cafile, const char *purpose, const char *cert);
/* 0 when the certificate is still valid `days` from now (openssl x509 -checkend). */
int ossl_valid_in_days(const char *cert, long days);
/* Whether key (opened with openssl's -passin form, "pass:..."; NULL for none) is cert's key. */
bool ossl_key_matches(const char *cert, const char *key, const char *passin);
/* The serial as `openssl x509 -serial` prints it, or "(none)". */
char *ossl_serial(const char *cert);
