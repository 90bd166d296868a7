/* Private helpers shared by lib/ and the front ends built in this tree
 * (nbd/, vmm/, shim/, daemon/): error recording, scoped cleanup, small
 * utilities. Not installed: a program outside the tree uses
 * include/cowfork/ only. */
#ifndef COWFORK_INTERNAL_H
#define COWFORK_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include "cowfork/error.h"

/* Record errno = errnum and a message "func: fmt..." for this thread, set
 * errno, and return -1, so a failure path reads `return cf_fail(EINVAL, ...)`. */
int cf_fail_(const char *func, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define cf_fail(errnum, ...) cf_fail_(__func__, (errnum), __VA_ARGS__)
/* Same, for NULL-returning functions. */
#define cf_fail_null(errnum, ...) ((void)cf_fail_(__func__, (errnum), __VA_ARGS__), (void *)NULL)

/* Scoped cleanup for locals. */
static inline void cf_cleanup_free(void *p) { free(*(void **)p); }
static inline void cf_cleanup_close(int *fd)
{
  if (*fd >= 0) {
    int e = errno;
    close(*fd);
    errno = e;
  }
}
#define CLEANUP_FREE __attribute__((cleanup(cf_cleanup_free)))
#define CLEANUP_CLOSE __attribute__((cleanup(cf_cleanup_close)))

/* Read or write exactly len bytes at off (retrying short transfers and EINTR).
 * pread_full returns the bytes read, short only at end of file. -1 on error
 * with errno set (no message recorded: the caller names the file). */
ssize_t cf_pread_full(int fd, void *buf, size_t len, uint64_t off);
int cf_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Write buf to path crash-safely: a temp file in path's directory, fsync,
 * mode, rename over path (RENAME_NOREPLACE: EEXIST if path exists), fsync
 * of the directory. Readers see the old file or the new one, never a part. */
int cf_write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode, bool noreplace);
int cf_fsync_dir(const char *dir);

/* The store is private to its owner whatever the umask (docs/format.md):
 * directories 0700, files 0600, files never written again (layers, image
 * headers, template state files) 0400. Everything cowfork makes in a store
 * is made through these, created with (never wider than) its final mode:
 *   cf_private_mkdir   mkdir 0700; an existing directory is fine (EEXIST is
 *                      not an error); a new one gets exactly 0700 even where
 *                      the umask took owner bits;
 *   cf_private_open    open(flags | O_CREAT | O_CLOEXEC) with mode 0600;
 *   cf_write_file_atomic's temp files are mkostemp's 0600, then `mode`
 *                      (callers in the store pass CF_MODE_FILE or CF_MODE_RO). */
#define CF_MODE_DIR 0700
#define CF_MODE_FILE 0600
#define CF_MODE_RO 0400
int cf_private_mkdir(const char *path);
int cf_private_open(const char *path, int flags);

/* The layers a process has checked (lib/store.c): a layer is known good by
 * its id and checksum and the identity of the file that held it when its
 * checksum matched; a file replaced or changed (ctime) is checked again.
 * No padding: compared with memcmp. */
struct cf_layer_key {
  uint8_t id[16];
  uint64_t checksum, dev, ino, size;
  int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
};
struct stat;
/* The key of layer id (its header's checksum) in the file st describes. */
void cf_layer_key_set(struct cf_layer_key *k, const uint8_t id[16], uint64_t checksum, const struct stat *st);
struct cf_store;
struct cf_checked;
struct cf_checked *cf_store_checked_ref(struct cf_store *s);
void cf_checked_unref(struct cf_checked *c);
bool cf_checked_has(struct cf_checked *c, const struct cf_layer_key *k);
void cf_checked_add(struct cf_checked *c, const struct cf_layer_key *k);

/* "4096", "64K", "1M", "2GiB" to bytes; -1 if malformed (no error recorded). */
int cf_parse_size(const char *s, uint64_t *out);
/* Pin the calling thread (a whole single-threaded process) to CPU cpu:
 * 0, or -1 with errno. */
int cf_pin_cpu(int cpu);
/* s as a JSON string (quoted, escaped) on stdout. */
void cf_json_puts(const char *s);
/* Raise the soft RLIMIT_NOFILE to the hard one (a front end that holds
 * files per sandbox: cowfork fork -n 1000 keeps two per child); first the
 * hard one to at least want where this process may (root), 0: never. */
void cf_nofile_raise(unsigned long want);

static inline bool cf_is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

#endif
