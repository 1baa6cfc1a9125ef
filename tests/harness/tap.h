/* vigil tests: a small TAP producer for `meson test --protocol tap`. Each check prints one
 * "ok N - what" line; a failure also prints what was expected and what was found. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>

void tap_plan(int n);
/* Print "1..N" for the checks run so far and return the exit status for main(). */
int tap_done(void);
/* Keep p (a string made inline for one check) until tap_done() frees it; returns p. */
char *tap_keep(char *p);

bool tap_ok(bool cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool tap_is_int(long long got, long long want, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
bool tap_is_str(const char *got, const char *want, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
bool tap_is_mem(const void *got, size_t got_len, const void *want, size_t want_len,
                const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* got must contain needle. */
bool tap_contains(const char *got, const char *needle, const char *file, int line, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
void tap_skip(const char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Stop the whole test program: "Bail out! why". */
__attribute__((noreturn, format(printf, 1, 2))) void tap_bail(const char *fmt, ...);

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)                                                                     \
        tap_is_int((long long)(got), (long long)(want), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...) tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)
#define is_mem(got, glen, want, wlen, ...)                                                         \
        tap_is_mem((got), (glen), (want), (wlen), __FILE__, __LINE__, __VA_ARGS__)
#define contains(got, needle, ...) tap_contains((got), (needle), __FILE__, __LINE__, __VA_ARGS__)

/* Helpers every test needs. */
/* A fresh private directory under $TMPDIR, removed (recursively) at exit. */
char *tap_tmpdir(void);
/* Path of a file in ../shared/data (VIGIL_SHARED_DATA); bails out when it is missing. */
char *tap_shared_data(const char *rel);
/* Read a whole file; NULL on error. */
char *tap_read_file(const char *path, size_t *len);
int tap_write_file(const char *path, const char *content);
/* Run argv, capture stdout+stderr into *output (may be NULL); returns the exit status, or
 * -1 if it could not run or died by a signal. */
int tap_run(char *const argv[], char **output);
/* The same with stdin read from in_path (tap_run gives /dev/null). */
int tap_run_input(char *const argv[], const char *in_path, char **output);
/* The same with the command as a NULL-terminated list of arguments after arg0 (at most 31). */
int tap_runl(char **output, const char *arg0, ...) __attribute__((sentinel));
int tap_runv(char **output, const char *arg0, va_list ap);
/* A new string, printf-style; bails out when out of memory. */
char *tap_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The permission bits of path, or -1. */
int tap_file_mode(const char *path);
/* Copy a text file; bails out on failure. */
void tap_copy_file(const char *from, const char *to);
/* A free TCP port on 127.0.0.1 (bound and released; good enough for tests). */
int tap_free_port(void);
/* Start argv (searched in PATH) as a child that gets SIGTERM when the test dies; its pid. */
pid_t tap_spawn(char *const argv[]);
/* The same with stdout and stderr appended to log_path (created if need be). */
pid_t tap_spawn_log(char *const argv[], const char *log_path);
/* Whether the file at path comes to contain needle within ms milliseconds. */
bool tap_wait_file_contains(const char *path, const char *needle, int ms);
/* SIGTERM a child from tap_spawn() and reap it; *pid becomes -1. No-op when *pid <= 0. */
void tap_stop(pid_t *pid);
/* Whether something accepts TCP connections on 127.0.0.1:PORT within ms milliseconds. */
bool tap_wait_port(int port, int ms);
/* Whether http://127.0.0.1:PORT/PATH answers 2xx (curl) within 5 s. */
bool tap_wait_http(int port, const char *path);
