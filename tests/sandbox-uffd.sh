#!/usr/bin/env bash
# The uffd backend against the file backend and a native run, on a template
# whose program allocated memory before its ready point and writes it only
# after (issue 11, item 3): 64 KiB of brk heap and 1 MiB of mmap'ed memory,
# memset in each child. The shim splits guest memory into host VMAs at the
# end of each guest mapping (the rest is PROT_NONE), so the page server's
# growing runs of zero pages cross a VMA end there; it used to get ENOENT and
# retry the same run forever (the child never finished; file: 10 ms). Each
# fork runs under a timeout, so a hang fails the test instead of stalling it.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc timeout
cat >"$TMP/heap.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
int main(void)
{
  size_t small = 64 << 10, big = 1 << 20;
  unsigned char *h = malloc(small); /* below the mmap threshold: the brk heap */
  unsigned char *m = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char line[64];
  if (!h || m == MAP_FAILED || !fgets(line, sizeof line, stdin)) /* the ready point */
    return 1;
  int v = atoi(line);
  memset(h, v, small);
  memset(m, v + 1, big);
  unsigned long s = 0;
  for (size_t i = 0; i < small; i++)
    s += h[i];
  for (size_t i = 0; i < big; i++)
    s += m[i];
  printf("%d %lu\n", v, s);
  return 0;
}
C
gcc -static -O1 -o "$TMP/heap" "$TMP/heap.c" 2>"$TMP/cc.err" ||
  skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
cowfork template create heap --root / --mem 64M -- "$TMP/heap" </dev/null >/dev/null 2>"$TMP/create.err" ||
  fail "template create: $(cat "$TMP/create.err")"
mkdir -p "$TMP/in"
for i in 0 1 2 3; do echo $((i + 3)) >"$TMP/in/$i"; done
for b in file uffd; do
  t0=$(date +%s%N)
  rc=0
  timeout 60 "$COWFORK" fork heap -n 4 --backend $b --input-dir "$TMP/in" --output-dir "$TMP/out.$b" \
    2>"$TMP/$b.err" || rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  [ $rc = 124 ] && fail "$b: 4 children did not finish within 60 s (the page server spins?)"
  [ $rc = 0 ] || fail "$b: fork failed (exit $rc): $(cat "$TMP/$b.err")"
  for i in 0 1 2 3; do
    want=$("$TMP/heap" <"$TMP/in/$i")
    [ "$(cat "$TMP/out.$b/$i")" = "$want" ] ||
      fail "$b child $i printed '$(cat "$TMP/out.$b/$i")', natively '$want'"
  done
  echo "ok   $b: 4 children memset 64 KiB of heap and 1 MiB mapped before the ready point, as natively ($ms ms)"
done
