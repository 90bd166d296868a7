/* The network policy (lib/netpolicy.c): parsing (bad input refused with a
 * message naming the rule), the canonical text, matching (the host's
 * loopback only by a rule naming it, even with all; IPv4 and IPv6 rules
 * apart; ports) and the daemon's ceiling. */
#include <arpa/inet.h>
#include <string.h>

#include "cowfork/error.h"
#include "cowfork/netpolicy.h"
#include "tap.h"

static struct cf_net_policy p;

static const uint8_t *a4(const char *s)
{
  static uint8_t a[16];
  memset(a, 0, 10);
  a[10] = a[11] = 0xff;
  inet_pton(AF_INET, s, a + 12);
  return a;
}

static const uint8_t *a6(const char *s)
{
  static uint8_t a[16];
  inet_pton(AF_INET6, s, a);
  return a;
}

static const char *canon(const char *spec)
{
  static char buf[4096];
  if (cf_net_parse(spec, &p) < 0)
    return "ERR";
  cf_net_format(&p, buf, sizeof buf);
  return buf;
}

static bool allows(const char *spec, const uint8_t *a, uint16_t port)
{
  struct cf_net_policy q;
  if (cf_net_parse(spec, &q) < 0)
    return false;
  return cf_net_allows(&q, a, port);
}

static bool within(const char *req, const char *ceil)
{
  struct cf_net_policy q, c;
  char why[200] = "";
  if (cf_net_parse(req, &q) < 0 || cf_net_parse(ceil, &c) < 0)
    return false;
  return cf_net_within(&q, &c, why, sizeof why);
}

int main(void)
{
  /* canonical forms */
  ok(!strcmp(canon(NULL), "none"), "NULL is none");
  ok(!strcmp(canon(""), "none"), "\"\" is none");
  ok(!strcmp(canon("none"), "none"), "none");
  ok(!strcmp(canon("all"), "all"), "all");
  ok(!strcmp(canon("allow=127.0.0.1:8080"), "allow=127.0.0.1:8080"), "one IPv4 rule with a port");
  ok(!strcmp(canon("allow=10.0.0.0/8,192.168.1.0/24:443"), "allow=10.0.0.0/8,192.168.1.0/24:443"), "two rules");
  ok(!strcmp(canon("allow=[::1]:80,[2001:db8::/32]:443,2001:db8::/48"), "allow=[::1]:80,[2001:db8::/32]:443,[2001:db8::/48]"),
     "IPv6 rules: %s", canon("allow=[::1]:80,[2001:db8::/32]:443,2001:db8::/48"));
  ok(!strcmp(canon("allow=[2001:db8::]/32:443"), "allow=[2001:db8::/32]:443"), "[ADDR]/BITS:PORT");
  ok(!strcmp(canon("allow=0.0.0.0/0"), "allow=0.0.0.0/0"), "0.0.0.0/0");

  /* refused, with a message naming the rule */
  const char *badv[] = {"allow=", "allow", "some", "allow=,", "allow=1.2.3.4,", "allow=1.2.3", "allow=1.2.3.4.5",
                        "allow=256.1.1.1", "allow=example.com", "allow=localhost:80", "allow=1.2.3.4:0",
                        "allow=1.2.3.4:65536", "allow=1.2.3.4:-1", "allow=1.2.3.4:80x", "allow=1.2.3.4/33",
                        "allow=1.2.3.4/", "allow=1.2.3.4/-1", "allow=10.0.0.1/8", "allow=1.2.3.4:", "allow=:80",
                        "allow=[::1", "allow=[::1]x", "allow=[::1]:", "allow=[::1/129]", "allow=[1.2.3.4]",
                        "allow=[::ffff:1.2.3.4]", "allow=::1:80:", "allow=[]", "allow=1.2.3.4/08",
                        "allow=1.2.3.4:080", "ALL", "allow=1.2.3.4 ", " allow=1.2.3.4", "allow=[::1]/64:80",
                        "allow=\xff\xfe", "allow=1.2.3.4:99999999999999999999"};
  for (size_t i = 0; i < sizeof badv / sizeof *badv; i++) {
    int r = cf_net_parse(badv[i], &p);
    ok(r < 0 && strstr(cf_error(), "net:") && cf_net_none(&p), "refused: '%s' (%s)", badv[i], cf_error());
  }
  int r = cf_net_parse("allow=1.2.3.4:80,bogus", &p);
  ok(r < 0 && strstr(cf_error(), "'bogus'"), "the message names the bad rule: %s", cf_error());
  char many[4096] = "allow=";
  for (int i = 0; i < CF_NET_MAX_RULES + 1; i++)
    snprintf(many + strlen(many), sizeof many - strlen(many), "%s10.0.0.%d", i ? "," : "", i % 250);
  ok(cf_net_parse(many, &p) < 0 && strstr(cf_error(), "more than"), "too many rules: %s", cf_error());

  /* matching */
  ok(!allows("none", a4("1.2.3.4"), 80), "none allows nothing");
  ok(allows("all", a4("1.2.3.4"), 80), "all: an outside address");
  ok(allows("all", a6("2001:db8::1"), 443), "all: an outside IPv6 address");
  ok(!allows("all", a4("127.0.0.1"), 80), "all: not the host's loopback");
  ok(!allows("all", a4("127.1.2.3"), 80), "all: not 127/8");
  ok(!allows("all", a6("::1"), 80), "all: not ::1");
  ok(allows("allow=127.0.0.1:8080", a4("127.0.0.1"), 8080), "a rule naming 127.0.0.1:8080 reaches it");
  ok(!allows("allow=127.0.0.1:8080", a4("127.0.0.1"), 8081), "... and no other port");
  ok(!allows("allow=127.0.0.1:8080", a4("127.0.0.2"), 8080), "... nor another address");
  ok(!allows("allow=0.0.0.0/0", a4("127.0.0.1"), 80), "0.0.0.0/0 does not name the loopback");
  ok(allows("allow=0.0.0.0/0", a4("8.8.8.8"), 53), "0.0.0.0/0: any IPv4");
  ok(!allows("allow=0.0.0.0/0", a6("2001:db8::1"), 53), "0.0.0.0/0: no IPv6");
  ok(!allows("allow=[::]/0", a4("8.8.8.8"), 53), "::/0: no IPv4");
  ok(allows("allow=[::]/0", a6("2001:db8::1"), 53), "::/0: any IPv6");
  ok(allows("allow=127.0.0.0/8", a4("127.9.9.9"), 1), "127.0.0.0/8 names the loopback");
  ok(!allows("allow=64.0.0.0/2", a4("127.0.0.1"), 1), "a wider prefix holding 127/8 does not");
  ok(allows("allow=[::1]:22", a6("::1"), 22), "[::1]:22");
  ok(!allows("allow=[::1]:22", a4("127.0.0.1"), 22), "[::1] is not 127.0.0.1");
  ok(allows("allow=10.0.0.0/8:443", a4("10.200.3.4"), 443), "a prefix and port");
  ok(!allows("allow=10.0.0.0/8:443", a4("10.200.3.4"), 80), "... not another port");
  ok(!allows("allow=10.0.0.0/8:443", a4("11.0.0.1"), 443), "... not outside the prefix");
  ok(allows("allow=10.1.2.2/31", a4("10.1.2.3"), 9) && !allows("allow=10.1.2.2/31", a4("10.1.2.4"), 9), "/31");
  ok(allows("allow=192.168.0.0/17", a4("192.168.127.255"), 9) && !allows("allow=192.168.0.0/17", a4("192.168.128.0"), 9),
     "/17 boundary");
  ok(!cf_net_allows(NULL, a4("1.2.3.4"), 1), "no policy allows nothing");

  /* the ceiling */
  ok(within("none", "none"), "none within none");
  ok(!within("all", "none"), "all not within none");
  ok(within("all", "all"), "all within all");
  ok(!within("all", "allow=0.0.0.0/0"), "all not within a rule");
  ok(within("allow=1.2.3.4:80", "all"), "a rule within all");
  ok(!within("allow=127.0.0.1:80", "all"), "a loopback rule not within all");
  ok(within("allow=127.0.0.1:80", "allow=127.0.0.0/8"), "a loopback rule within a wider loopback one");
  ok(!within("allow=127.0.0.0/8", "allow=127.0.0.1:80"), "a wider rule not within a narrower one");
  ok(within("allow=10.1.0.0/16:443", "allow=10.0.0.0/8"), "a prefix within a wider prefix, any port");
  ok(!within("allow=10.1.0.0/16", "allow=10.0.0.0/8:443"), "any port not within one port");
  ok(!within("allow=10.1.0.0/16,11.0.0.1", "allow=10.0.0.0/8"), "one rule of two beyond");
  struct cf_net_policy q, c;
  char why[200] = "";
  cf_net_parse("allow=10.0.0.1,12.0.0.0/8:22", &q);
  cf_net_parse("allow=10.0.0.0/8", &c);
  ok(!cf_net_within(&q, &c, why, sizeof why) && strstr(why, "12.0.0.0/8:22"), "why names the rule: %s", why);
  return done_testing();
}
