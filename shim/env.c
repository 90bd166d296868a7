/* A sandbox's environment: a clean default plus what the caller names
 * (cowfork run --env, the daemon's "env"). Never the caller's environment
 * as a whole: a sandbox runs code nobody trusts, and a caller's variables
 * hold tokens and paths (docs/sandbox.md, "Identity"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cowfork/shim.h"
#include "internal.h"

static const char *lookup(char *const *from, const char *name, size_t nl)
{
  for (size_t i = 0; from && from[i]; i++)
    if (strncmp(from[i], name, nl) == 0 && from[i][nl] == '=')
      return from[i] + nl + 1;
  return NULL;
}

bool cf_sandbox_hostname_ok(const char *name)
{
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > 64)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f || name[i] == '/')
      return false;
  return true;
}

char **cf_sandbox_env(const char *const *set, size_t n, char *const *from, int uid, const char *term)
{
  /* Entries as (name length, "K=V" string), the last one of a name wins
   * in place of the first. */
  size_t cap = n + 4, cnt = 0;
  const char **e = calloc(cap, sizeof *e);
  char **tmp = calloc(n + 1, sizeof *tmp); /* "K=" + value made for "K" entries */
  if (!e || !tmp) {
    free(e);
    free(tmp);
    return cf_fail_null(ENOMEM, "out of memory");
  }
  e[cnt++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  e[cnt++] = uid == 0 ? "HOME=/root" : "HOME=/";
  e[cnt++] = "LANG=C.UTF-8";
  char *termv = NULL;
  char **out = NULL;
  if (term && (termv = malloc(strlen(term) + 6)))
    strcat(strcpy(termv, "TERM="), term);
  if (term && !termv)
    goto nomem;
  if (termv)
    e[cnt++] = termv;
  for (size_t i = 0; i < n; i++) {
    const char *s = set[i], *eq = strchr(s, '=');
    size_t nl = eq ? (size_t)(eq - s) : strlen(s);
    if (nl == 0) {
      cf_fail(EINVAL, "bad environment entry '%s' (K=V or K)", s);
      goto out;
    }
    if (!eq) {
      if (!from) {
        cf_fail(EINVAL, "bad environment entry '%s' (K=V)", s);
        goto out;
      }
      const char *v = lookup(from, s, nl);
      if (!v)
        continue; /* not set in the caller: not set here either */
      if (!(tmp[i] = malloc(nl + strlen(v) + 2)))
        goto nomem;
      memcpy(tmp[i], s, nl);
      tmp[i][nl] = '=';
      strcpy(tmp[i] + nl + 1, v);
      s = tmp[i];
    }
    size_t j = 0;
    for (; j < cnt; j++)
      if (strncmp(e[j], s, nl) == 0 && e[j][nl] == '=')
        break;
    e[j] = s;
    if (j == cnt)
      cnt++;
  }
  size_t bytes = (cnt + 1) * sizeof(char *);
  for (size_t j = 0; j < cnt; j++)
    bytes += strlen(e[j]) + 1;
  if (!(out = malloc(bytes)))
    goto nomem;
  char *p = (char *)(out + cnt + 1);
  for (size_t j = 0; j < cnt; j++) {
    out[j] = strcpy(p, e[j]);
    p += strlen(e[j]) + 1;
  }
  out[cnt] = NULL;
  goto out;
nomem:
  cf_fail(ENOMEM, "out of memory");
out:
  for (size_t i = 0; i < n; i++)
    free(tmp[i]);
  free(tmp);
  free(termv);
  free(e);
  return out;
}
