/* The cowfork command: shared pieces of the subcommands.
 * Exit codes: 0 success, 1 error (one line on stderr), 2 bad usage. */
#ifndef COWFORK_CLI_H
#define COWFORK_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cowfork/store.h"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

struct cli_cmd {
  const char *name;    /* "image import" */
  const char *summary; /* one line for `cowfork --help` */
  const char *usage;   /* full --help text */
  /* argv[0] is the last word of name; cmd is this entry (for usage and help) */
  int (*run)(const struct cli_cmd *cmd, int argc, char **argv);
};

/* Options every subcommand shares, set by main before dispatch. */
extern const char *cli_store_dir;

/* Open the store (--store, $COWFORK_STORE, ~/.local/share/cowfork), or print
 * the error and return NULL. */
struct cf_store *cli_open_store(void);
/* The store's directory (--store, $COWFORK_STORE, ~/.local/share/cowfork)
 * into buf, or NULL after printing why. */
const char *cli_store_path(char *buf, size_t len);
/* The roots directory ($COWFORK_ROOTS, else STORE/roots), or NULL. */
const char *cli_roots_path(char *buf, size_t len);
/* A --root argument (NULL: "default") to a host directory: a name is a root
 * of the store, built on first use for "default" (a progress bar on a
 * terminal); with a '/', a host directory. -1 after printing why. */
int cli_root_resolve(const char *spec, char *buf, size_t len);

/* The jail of the process that runs guests (lib/jail.c, docs/security.md),
 * once everything it needs is open and before its first thread: where run
 * as root, its own mount namespace; with a root (*root, NULL: none) other
 * than "/", a new root holding only it and the store s (NULL: none); then
 * --user USER (NULL: none). *root is made absolute (in rootbuf, PATH_MAX).
 * COWFORK_JAIL=0 leaves the namespace out (debugging; not with --user).
 * 0, or the exit code of the printed error. */
int cli_jail(const char **root, char *rootbuf, struct cf_store *s, const char *user);

/* Print "cowfork: " + message to stderr and return EXIT_ERR. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a usage error plus "try --help" and return EXIT_USAGE. */
int cli_usage(const struct cli_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse "4096", "64K", "1M", "2G" into bytes; -1 if malformed. */
int cli_parse_size(const char *s, uint64_t *out);
/* Parse a positive, finite number of seconds ("30", "0.5"); -1 if not. */
int cli_parse_seconds(const char *s, double *out);
/* Parse a decimal integer in [lo, hi]; -1 if malformed or outside. */
int cli_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out);

/* A progress bar on stderr, drawn only when stderr is a terminal. Pass
 * cli_progress as the cf_progress_fn with a struct cli_progress as ctx. */
struct cli_progress {
  const char *what;
  bool tty;
  int last_pct;
};
void cli_progress_init(struct cli_progress *p, const char *what);
void cli_progress(void *ctx, uint64_t done, uint64_t total);
void cli_progress_end(struct cli_progress *p);

/* Looks for "--help"/"-h" in argv: prints cmd->usage and returns true. */
bool cli_wants_help(const struct cli_cmd *cmd, int argc, char **argv);

/* Each cli/GROUP.c defines one table; groups not built into this binary are
 * NULL (weak), so adding a group is adding its file and a line in main.c. */
extern const struct cli_cmd cli_image_cmds[] __attribute__((weak));
extern const struct cli_cmd cli_disk_cmds[] __attribute__((weak));
extern const struct cli_cmd cli_mem_cmds[] __attribute__((weak));
extern const struct cli_cmd cli_sandbox_cmds[] __attribute__((weak));
extern const struct cli_cmd cli_daemon_cmds[] __attribute__((weak));
extern const struct cli_cmd cli_template_cmds[] __attribute__((weak));
extern const struct cli_cmd cli_root_cmds[] __attribute__((weak));
extern const struct cli_cmd cli_syscalls_cmds[] __attribute__((weak));

/* cli/template.c. 0 when a template NAME can be made (neither
 * templates/NAME nor images/NAME.mem exists), else -1 after printing why:
 * `template create` and `fork --branch` ask before they run anything. */
int cli_template_name_free(struct cf_store *s, const char *name);
/* 0 when image belongs to no template, else -1 after printing which. */
int cli_image_in_use(struct cf_store *s, const char *image);

#endif
