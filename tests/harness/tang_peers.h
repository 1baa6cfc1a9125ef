/* vigil tests: Tang servers as test peers on 127.0.0.1: vigil-tang, and Debian's tangd under
 * socat as reference/tang.md runs it. Both are tap_spawn() children (tap_stop() them). */
#pragma once

#include <sys/types.h>

/* vigil-tang -f --jwkdir JWKDIR --listen 127.0.0.1:PORT (VIGIL_TANG_USER must suit JWKDIR when
 * the test runs as root). */
pid_t tap_tang_start_vigil(const char *vigil_tang, const char *jwkdir, int port);
/* socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork EXEC:"/usr/libexec/tangd JWKDIR". */
pid_t tap_tang_start_tangd(const char *jwkdir, int port);
/* The thumbprint on the line "<thp> <role>..." of `vigil tang keygen|rotate|show-keys`
 * output (role "signing" or "exchange"): a new string, or NULL. */
char *tap_tang_thp_of(const char *out, const char *role);
