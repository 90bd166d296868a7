/* A sandbox's network policy: parsing, matching and the daemon's ceiling
 * (include/cowfork/netpolicy.h says the syntax and the loopback rule).
 *
 * Addresses are 16 bytes, IPv4 as ::ffff:a.b.c.d with its prefix length
 * counted from 96, so one matcher serves both families; an IPv4 rule never
 * matches an IPv6 address and an IPv6 rule never matches a mapped IPv4 one
 * ([::]/0 is every IPv6 address, 0.0.0.0/0 every IPv4 one). The parser
 * takes addresses only (no host names: a name's addresses change), refuses
 * host bits set past the prefix (10.0.0.1/8 is a typo of 10.0.0.0/8 or of
 * 10.0.0.1/32) and port 0, and names the offending rule. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cowfork/netpolicy.h"
#include "internal.h"

static const uint8_t pre4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is4(const uint8_t *a) { return !memcmp(a, pre4, 12); }

/* Whether the first bits bits of a and b are the same. */
static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
  unsigned k = bits / 8, r = bits % 8;
  if (memcmp(a, b, k))
    return false;
  if (!r)
    return true;
  uint8_t m = (uint8_t)(0xff << (8 - r));
  return (a[k] & m) == (b[k] & m);
}

static bool rule4(const struct cf_net_rule *r) { return r->bits >= 96 && is4(r->addr); }

/* Whether rule r names the loopback: its whole prefix in 127.0.0.0/8 or ::1. */
static bool rule_loop(const struct cf_net_rule *r)
{
  static const uint8_t l6[16] = {[15] = 1};
  if (rule4(r))
    return r->bits >= 104 && r->addr[12] == 127;
  return r->bits == 128 && !memcmp(r->addr, l6, 16);
}

static bool addr_loop(const uint8_t *a)
{
  static const uint8_t l6[16] = {[15] = 1};
  return is4(a) ? a[12] == 127 : !memcmp(a, l6, 16);
}

static bool rule_match(const struct cf_net_rule *r, const uint8_t *a, uint16_t port)
{
  if (rule4(r) != is4(a))
    return false;
  if (r->port && r->port != port)
    return false;
  return prefix_eq(r->addr, a, r->bits);
}

bool cf_net_allows(const struct cf_net_policy *p, const uint8_t a[16], uint16_t port)
{
  if (!p)
    return false;
  bool loop = addr_loop(a);
  if (p->all && !loop)
    return true;
  for (unsigned i = 0; i < p->n; i++)
    if (rule_match(&p->r[i], a, port) && (!loop || rule_loop(&p->r[i])))
      return true;
  return false;
}

bool cf_net_none(const struct cf_net_policy *p) { return !p || (!p->all && !p->n); }

static int bad(const char *rule, size_t len, const char *why)
{
  return cf_fail_("net", EINVAL, "bad rule '%.*s': %s (ADDR[/BITS][:PORT], IPv6 as [ADDR[/BITS]][:PORT])", (int)len,
                 rule, why);
}

/* A decimal number of at most max in s[0..len): -1 if not one. */
static long num(const char *s, size_t len, long max)
{
  if (!len || len > 5)
    return -1;
  long v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  if (len > 1 && s[0] == '0')
    return -1; /* no leading zeros: 010 is not 8 */
  return v > max ? -1 : v;
}

static int parse_rule(const char *s, size_t len, struct cf_net_rule *r)
{
  char a[64];
  const char *addr = s, *bits = NULL, *port = NULL;
  size_t alen, blen = 0, plen = 0;
  bool v6;
  memset(r, 0, sizeof *r);
  if (!len)
    return bad(s, len, "empty");
  if (s[0] == '[') {
    const char *close = memchr(s, ']', len);
    if (!close)
      return bad(s, len, "no ']'");
    addr = s + 1;
    alen = (size_t)(close - addr);
    const char *sl = memchr(addr, '/', alen);
    if (sl) {
      bits = sl + 1;
      blen = (size_t)(close - bits);
      alen = (size_t)(sl - addr);
    }
    const char *rest = close + 1, *end = s + len;
    if (rest < end && *rest == '/' && !bits) { /* [ADDR]/BITS[:PORT] */
      bits = rest + 1;
      const char *c = memchr(bits, ':', (size_t)(end - bits));
      blen = (size_t)((c ? c : end) - bits);
      rest = c ? c : end;
    }
    if (rest < end) {
      if (*rest != ':')
        return bad(s, len, "junk after ']'");
      port = rest + 1;
      plen = (size_t)(end - port);
    }
    v6 = true;
  } else {
    size_t colons = 0;
    for (size_t i = 0; i < len; i++)
      colons += s[i] == ':';
    v6 = colons > 1;
    alen = len;
    if (!v6 && colons == 1) {
      port = memchr(s, ':', len) + 1;
      plen = (size_t)(s + len - port);
      alen = (size_t)(port - 1 - s);
    }
    const char *sl = memchr(addr, '/', alen);
    if (sl) {
      bits = sl + 1;
      blen = (size_t)(addr + alen - bits);
      alen = (size_t)(sl - addr);
    }
  }
  if (!alen || alen >= sizeof a)
    return bad(s, len, "no address");
  memcpy(a, addr, alen);
  a[alen] = 0;
  if (v6) {
    if (inet_pton(AF_INET6, a, r->addr) != 1)
      return bad(s, len, "not an IPv6 address");
    if (is4(r->addr))
      return bad(s, len, "an IPv4-mapped address: write it as IPv4");
  } else {
    memcpy(r->addr, pre4, 12);
    if (inet_pton(AF_INET, a, r->addr + 12) != 1)
      return bad(s, len, "not an IPv4 address (a host name is not taken)");
  }
  long b = v6 ? 128 : 32;
  if (bits && (b = num(bits, blen, v6 ? 128 : 32)) < 0)
    return bad(s, len, v6 ? "BITS is 0-128" : "BITS is 0-32");
  r->bits = (uint8_t)(v6 ? b : 96 + b);
  uint8_t z[16];
  memcpy(z, r->addr, 16);
  for (unsigned i = r->bits; i < 128; i++)
    z[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
  if (memcmp(z, r->addr, 16))
    return bad(s, len, "address bits set past the prefix");
  if (port) {
    long pv = num(port, plen, 65535);
    if (pv <= 0)
      return bad(s, len, "PORT is 1-65535");
    r->port = (uint16_t)pv;
  }
  return 0;
}

int cf_net_parse(const char *spec, struct cf_net_policy *p)
{
  memset(p, 0, sizeof *p);
  if (!spec || !*spec || !strcmp(spec, "none"))
    return 0;
  if (!strcmp(spec, "all")) {
    p->all = true;
    return 0;
  }
  if (strncmp(spec, "allow=", 6))
    return cf_fail_("net", EINVAL, "'%s' is not none, all or allow=ADDR[/BITS][:PORT],...", spec);
  const char *s = spec + 6;
  if (!*s)
    return cf_fail_("net", EINVAL, "allow= names no address");
  for (;;) {
    const char *c = strchr(s, ',');
    size_t len = c ? (size_t)(c - s) : strlen(s);
    if (p->n == CF_NET_MAX_RULES)
      return cf_fail_("net", EINVAL, "more than %d rules", CF_NET_MAX_RULES);
    if (parse_rule(s, len, &p->r[p->n]) < 0) {
      memset(p, 0, sizeof *p);
      return -1;
    }
    p->n++;
    if (!c)
      break;
    s = c + 1;
  }
  return 0;
}

static int rule_fmt(const struct cf_net_rule *r, char *buf, size_t size)
{
  char a[INET6_ADDRSTRLEN];
  if (rule4(r)) {
    inet_ntop(AF_INET, r->addr + 12, a, sizeof a);
    int n = snprintf(buf, size, "%s", a);
    if (r->bits != 128)
      n += snprintf(buf + n, (size_t)n < size ? size - (size_t)n : 0, "/%u", r->bits - 96u);
    if (r->port)
      n += snprintf(buf + n, (size_t)n < size ? size - (size_t)n : 0, ":%u", r->port);
    return n;
  }
  inet_ntop(AF_INET6, r->addr, a, sizeof a);
  int n = snprintf(buf, size, "[%s", a);
  if (r->bits != 128)
    n += snprintf(buf + n, (size_t)n < size ? size - (size_t)n : 0, "/%u", r->bits);
  n += snprintf(buf + n, (size_t)n < size ? size - (size_t)n : 0, "]");
  if (r->port)
    n += snprintf(buf + n, (size_t)n < size ? size - (size_t)n : 0, ":%u", r->port);
  return n;
}

int cf_net_format(const struct cf_net_policy *p, char *buf, size_t size)
{
  if (cf_net_none(p))
    return snprintf(buf, size, "none");
  if (p->all)
    return snprintf(buf, size, "all");
  int n = snprintf(buf, size, "allow=");
  for (unsigned i = 0; i < p->n; i++) {
    if (i)
      n += snprintf(buf + n, (size_t)n < size ? size - (size_t)n : 0, ",");
    n += rule_fmt(&p->r[i], buf + n, (size_t)n < size ? size - (size_t)n : 0);
  }
  return n;
}

/* Whether ceiling rule c allows everything rule q does. */
static bool rule_covers(const struct cf_net_rule *c, const struct cf_net_rule *q)
{
  if (rule4(c) != rule4(q) || c->bits > q->bits || !prefix_eq(c->addr, q->addr, c->bits))
    return false;
  if (c->port && c->port != q->port)
    return false;
  return !rule_loop(q) || rule_loop(c); /* the host's loopback only by a rule naming it */
}

bool cf_net_within(const struct cf_net_policy *req, const struct cf_net_policy *ceil, char *why, size_t size)
{
  char t[64];
  if (cf_net_none(req))
    return true;
  if (req->all) {
    if (ceil && ceil->all)
      return true;
    snprintf(why, size, "'all' is beyond the daemon's ceiling");
    return false;
  }
  for (unsigned i = 0; i < req->n; i++) {
    const struct cf_net_rule *q = &req->r[i];
    bool ok = ceil && ceil->all && !rule_loop(q);
    for (unsigned k = 0; !ok && ceil && k < ceil->n; k++)
      ok = rule_covers(&ceil->r[k], q);
    if (!ok) {
      rule_fmt(q, t, sizeof t);
      snprintf(why, size, "rule %s is beyond the daemon's ceiling", t);
      return false;
    }
  }
  return true;
}
