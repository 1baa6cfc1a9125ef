/* vigil CLI: one entry point per noun; each parses its own verb and options and returns the
 * process exit status (0 success, 1 failure, 2 usage error). */
#pragma once

int cmd_ca(int argc, char **argv);
int cmd_tenant(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_tang(int argc, char **argv);
int cmd_pin(int argc, char **argv);
int cmd_luks(int argc, char **argv);
int cmd_eventlog(int argc, char **argv);
int cmd_baseline(int argc, char **argv);

/* Exit status for a bad command line, after printing "vigil NOUN: msg" and a --help hint. */
int cli_usage_error(const char *noun, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
