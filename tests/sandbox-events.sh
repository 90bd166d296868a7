#!/usr/bin/env bash
# eventfd, epoll, signalfd, ppoll/epoll_pwait signal masks with handlers,
# select over the event files (issue 13, items 4-5): one static program
# (tests/sandbox/events.c) run natively and in a sandbox, outputs compared;
# then a template paused with an eventfd and an epoll holding it: every
# child finds both as the template left them (state file, event.c).
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
E=$TMP/events
gcc -static -O1 -o "$E" "$here/sandbox/events.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"

SAME_MEM=256M same_as_native "events program" "$E"

cat > "$TMP/tmpl.c" <<'C'
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
int main(void)
{
  char c;
  int e = eventfd(5, EFD_NONBLOCK), ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xfeed};
  epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev);
  if (read(0, &c, 1) < 0) /* the template pauses here */
    return 1;
  int n = epoll_wait(ep, &ev, 1, 1000);
  uint64_t v = 0;
  ssize_t r = read(e, &v, 8);
  printf("child: epoll %d %llx, eventfd %zd %llu\n", n, (unsigned long long)ev.data.u64, r, (unsigned long long)v);
  return 0;
}
C
gcc -static -O1 -o "$TMP/tmpl" "$TMP/tmpl.c"
cowfork template create evt --root / --mem 64M -- "$TMP/tmpl" </dev/null >/dev/null
echo x > "$TMP/in"
out=$(timeout 30 "$COWFORK" fork evt -n 2 --input "$TMP/in" 2>&1) || fail "fork of a template with event files: $out"
[ "$(grep -c "child: epoll 1 feed, eventfd 8 5" <<<"$out")" = 2 ] || fail "children of a template with event files: $out"
echo "ok   a template's eventfd and epoll come back in each child"
