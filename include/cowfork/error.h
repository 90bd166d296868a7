/* cowfork error convention (docs/error-handling.md).
 *
 * Every libcowfork function that can fail returns -1 (or NULL) and records
 * errno plus a one-line message, prefixed with the API name, in thread-local
 * storage. The caller fetches it with cf_error() before the next call into
 * the library on the same thread. */
#ifndef COWFORK_ERROR_H
#define COWFORK_ERROR_H

/* The message of the last failure on this thread ("" if none). */
const char *cf_error(void);

/* errno of the last failure on this thread (0 if none). */
int cf_errno(void);

#endif
