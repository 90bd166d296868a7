/* The jail of the process that runs guests (lib/jail.c, docs/security.md):
 * its own mount namespace in which only what it needs is visible, and a
 * user without privileges. */
#ifndef COWFORK_JAIL_H
#define COWFORK_JAIL_H

#include <stdbool.h>
#include <stddef.h>

struct cf_jail_opts {
  /* Absolute paths (directories or files) that stay visible at the same
   * path: the store, the sandbox's root directory. Each must exist. */
  const char *const *keep;
  size_t nkeep;
  /* NULL, or per keep: bound read-only (and nosuid, nodev) — a root. */
  const bool *readonly;
  /* true: a new root (a small tmpfs) holding only `keep`, a fresh /proc,
   * /dev/{kvm,userfaultfd,null,zero,random,urandom} and an empty /tmp.
   * false (a sandbox whose root is the host's /): the namespace only. */
  bool pivot;
  /* NULL, or a user whose uid, gid and groups the process takes last. */
  const char *user;
};

/* Where run as root (euid 0): unshare(CLONE_NEWNS) with private
 * propagation, then the new root (opts->pivot), then the user. Call it once
 * everything the process needs from elsewhere on the host is open. Not
 * root: nothing happens (0), except with opts->user: -1, EPERM. 1 when
 * the namespace was entered; -1 and cf_error() on failure (the process may
 * then be half-way: give up). */
int cf_jail_enter(const struct cf_jail_opts *opts);

#endif
