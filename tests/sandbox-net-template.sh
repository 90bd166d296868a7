#!/usr/bin/env bash
# Templates holding listening sockets (issue 16 item 5; shim/net.c
# net_save/net_load): tests/sandbox/nettmpl.c listens on 127.0.0.1 (an
# ephemeral port) and on an AF_UNIX abstract name, forks a server process
# that waits in poll() then accept(), and is paused at its read of stdin.
# Forked 50 times (each child its own line of input), every child answers
# itself on its own loopback: the server process's poll goes on in the
# child, the listener is the child's own; the output is the program's
# natively. Then a template holding a connected socket is refused, naming
# the fd. Before, any open socket made `template create` refuse.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
CROOT=$TMP/croot
mkdir -p "$CROOT" "$TMP/in" "$TMP/out" "$TMP/want"
gcc -static -O1 -o "$CROOT/nettmpl" "$(dirname "$0")/sandbox/nettmpl.c" 2>"$TMP/cc.err" ||
  skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
for i in $(seq 0 49); do
  echo "request $i from child $i" > "$TMP/in/$i"
  "$CROOT/nettmpl" < "$TMP/in/$i" | tail -n +2 > "$TMP/want/$i" || fail "the program natively"
done
grep -q '^tcp: REQUEST 7 FROM CHILD 7$' "$TMP/want/7" || fail "native output: $(cat "$TMP/want/7")"

cowfork template create nettmpl --root "$CROOT" --mem 64M -- /nettmpl > "$TMP/create.out" 2>"$TMP/create.err" ||
  fail "template create with listeners: $(cat "$TMP/create.err")"
[ "$(cat "$TMP/create.out")" = ready ] || fail "template create printed: $(cat "$TMP/create.out")"
echo "ok   template create: a TCP and an AF_UNIX listener, a server process in poll()"

cowfork fork nettmpl --input "$TMP/in/3" > "$TMP/one" 2>"$TMP/one.err" || fail "fork: $(cat "$TMP/one.err")"
cmp -s "$TMP/one" "$TMP/want/3" || { diff -u "$TMP/want/3" "$TMP/one" | sed 's/^/    /'; fail "a child differs from the program natively"; }
echo "ok   a child answers itself on its loopback as natively"

COWFORK_CHECK_RESET=1 cowfork fork nettmpl -n 50 --jobs 2 --input-dir "$TMP/in" --output-dir "$TMP/out" \
  2>"$TMP/50.err" || fail "fork -n 50: $(tail -n 3 "$TMP/50.err")"
bad=0
for i in $(seq 0 49); do
  if ! cmp -s "$TMP/out/$i" "$TMP/want/$i"; then
    bad=$((bad + 1))
    [ $bad -gt 1 ] || { diff -u "$TMP/want/$i" "$TMP/out/$i" | sed 's/^/    /'; cat "$TMP/out/$i.err" 2>/dev/null | head -n 5; }
  fi
done
[ $bad = 0 ] || fail "$bad of 50 children differ from the program natively"
echo "ok   50 children (VMs reused, checked), each answering its own request on its own listeners"
cowfork template rm nettmpl 2>/dev/null

# a connected socket cannot be carried: the save names it
cat > "$TMP/conn.c" <<'C'
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void)
{
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
    return 1;
  char c;
  return read(0, &c, 1) < 0;
}
C
gcc -static -O1 -o "$CROOT/conn" "$TMP/conn.c" || fail "cc conn.c"
if cowfork template create nettconn --root "$CROOT" --mem 64M -- /conn > /dev/null 2>"$TMP/conn.err"; then
  fail "a template with a connected socketpair was saved"
fi
grep -q 'fd 3 is a socket (AF_UNIX stream socket, from socketpair) that cannot be saved' "$TMP/conn.err" ||
  fail "the refusal does not name the socket: $(cat "$TMP/conn.err")"
echo "ok   a connected socketpair is refused by name: $(grep -o 'fd 3 is a socket[^:]*' "$TMP/conn.err")"
