/* Small helpers of the daemon and its client: base64 (RFC 4648, padded)
 * and UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"

size_t utf8_seq_len(const unsigned char *p, size_t n)
{
  unsigned c = p[0];
  if (c < 0x80)
    return 1;
  size_t len;
  unsigned min;
  uint32_t cp;
  if ((c & 0xe0) == 0xc0) {
    len = 2, min = 0x80, cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3, min = 0x800, cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

bool utf8_valid(const char *p, size_t n)
{
  for (size_t i = 0; i < n;) {
    size_t l = p[i] ? utf8_seq_len((const unsigned char *)p + i, n - i) : 0;
    if (!l)
      return false;
    i += l;
  }
  return true;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const void *data, size_t n)
{
  const unsigned char *p = data;
  char *out = malloc((n + 2) / 3 * 4 + 1), *q = out;
  if (!out)
    return NULL;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *q++ = b64[v >> 18];
    *q++ = b64[(v >> 12) & 63];
    *q++ = b64[(v >> 6) & 63];
    *q++ = b64[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
    *q++ = b64[v >> 18];
    *q++ = b64[(v >> 12) & 63];
    *q++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    *q++ = '=';
  }
  *q = 0;
  return out;
}

char *base64_decode(const char *s, size_t n, size_t *outlen)
{
  if (n % 4)
    return NULL;
  char *out = malloc(n / 4 * 3 + 1);
  if (!out)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (int j = 0; j < 4; j++) {
      char c = s[i + j];
      const char *at = c ? strchr(b64, c) : NULL;
      if (c == '=' && i + 4 == n && j >= 2 && (j == 3 || s[i + 3] == '=')) {
        pad++;
        v <<= 6;
      } else if (at && !pad) {
        v = v << 6 | (uint32_t)(at - b64);
      } else {
        free(out);
        return NULL;
      }
    }
    out[k++] = (char)(v >> 16);
    if (pad < 2)
      out[k++] = (char)(v >> 8);
    if (pad < 1)
      out[k++] = (char)v;
  }
  out[k] = 0;
  *outlen = k;
  return out;
}
