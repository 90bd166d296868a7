/* Small helpers of the daemon and its client: base64 and UTF-8. */
#ifndef COWFORK_DAEMON_UTIL_H
#define COWFORK_DAEMON_UTIL_H

#include <stddef.h>

/* Length (1-4) of the valid UTF-8 sequence at p, 0 if it is not one. */
size_t utf8_seq_len(const unsigned char *p, size_t n);
/* Whether all of p[0..n) is UTF-8 without NUL bytes (what a JSON string carries). */
#include <stdbool.h>
bool utf8_valid(const char *p, size_t n);
/* malloc'ed, NUL-terminated; NULL when out of memory. */
char *base64_encode(const void *data, size_t n);
/* malloc'ed (*out bytes, NUL-terminated); NULL when s is not base64. */
char *base64_decode(const char *s, size_t n, size_t *out);

#endif
