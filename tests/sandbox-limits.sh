#!/usr/bin/env bash
# Resource limits and the alternate signal stack against the same program
# run natively (tests/sandbox/limits.c): setrlimit/getrlimit/prlimit64 keep
# per-sandbox limits, RLIMIT_NOFILE is enforced (EMFILE, EBADF, EINVAL as
# Linux), bad limits fail as Linux; sigaltstack sets a stack, SA_ONSTACK
# handlers run on it, SS_ONSTACK/EPERM while on it, ENOMEM below
# MINSIGSTKSZ, SS_AUTODISARM, SS_DISABLE, and a stack overflow is caught on
# it. Both survive a template: its children keep the limits and the stack.
# (Before, setrlimit returned 0 and changed nothing and sigaltstack ignored a
# new stack: every comparison here failed.)
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
T=$TMP/limits
gcc -static -O1 -o "$T" "$here/sandbox/limits.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"


same_as_native "resource limits" "$T" rlimit
same_as_native "the alternate signal stack" "$T" altstack

echo go >"$TMP/in"
"$T" keep <"$TMP/in" >"$TMP/n.out" || fail "native keep"
cowfork template create lim --root / --mem 64M -- "$T" keep </dev/null >/dev/null 2>"$TMP/c.err" ||
  fail "template create: $(cat "$TMP/c.err")"
out=$(timeout 60 "$COWFORK" fork lim -n 2 --input "$TMP/in" 2>&1) || fail "fork: $out"
[ "$(sort -u <<<"$out")" = "$(sort -u "$TMP/n.out")" ] && [ "$(wc -l <<<"$out")" = $((2 * $(wc -l <"$TMP/n.out"))) ] ||
  { echo "native:"; cat "$TMP/n.out"; echo "children:"; echo "$out"; fail "a template's limits and stack are not its children's"; }
echo "ok   a template's limits and alternate stack are every child's"
