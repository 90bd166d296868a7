/* A sandbox's network policy (docs/sandbox.md "Network"): which addresses
 * outside its own loopback a sandbox may reach.
 *
 *   none                          only its own loopback (the default)
 *   all                           any address, except the host's loopback
 *   allow=RULE[,RULE...]          the addresses the rules name
 *   RULE = ADDR[/BITS][:PORT]     IPv4: 10.0.0.0/8:443, 127.0.0.1:8080
 *        | [ADDR6[/BITS]][:PORT]  IPv6: [2001:db8::/32]:443, [::1]:8080
 *        | ADDR6[/BITS]           IPv6 without a port
 *
 * 127.0.0.0/8 and ::1 are always the sandbox's own loopback, even with
 * `all`; a rule whose whole prefix lies in them (127.x.y.z/8 or longer,
 * ::1/128) names the HOST's loopback: a connection matching it goes to the
 * host, any other stays the sandbox's own. So the host's loopback services
 * (the daemon's TCP port among them) are reachable only by a rule that
 * names them. */
#ifndef COWFORK_NETPOLICY_H
#define COWFORK_NETPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CF_NET_MAX_RULES 64

struct cf_net_rule {
  uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d; bits past the prefix zero */
  uint8_t bits;     /* of the 128 (an IPv4 /n is 96 + n) */
  uint16_t port;    /* 0: any */
};

struct cf_net_policy {
  bool all;
  unsigned n;
  struct cf_net_rule r[CF_NET_MAX_RULES];
};

/* Parse spec ("none", "all", "allow=..."; NULL or "" is none) into p: 0, or
 * -1 + cf_error (EINVAL) naming what is wrong. */
int cf_net_parse(const char *spec, struct cf_net_policy *p);
/* The canonical text of p into buf (size bytes): its length, as snprintf. */
int cf_net_format(const struct cf_net_policy *p, char *buf, size_t size);
/* Whether p lets a connection or datagram to a:port (a 16-byte address,
 * IPv4 mapped) go to the host's network. A loopback address only by a rule
 * naming the loopback. */
bool cf_net_allows(const struct cf_net_policy *p, const uint8_t a[16], uint16_t port);
/* Whether everything req allows, ceiling allows too: true, or false and
 * what is beyond it in why. */
bool cf_net_within(const struct cf_net_policy *req, const struct cf_net_policy *ceiling, char *why, size_t size);
/* Whether p allows nothing (none). */
bool cf_net_none(const struct cf_net_policy *p);

#endif
