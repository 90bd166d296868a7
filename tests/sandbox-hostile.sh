#!/usr/bin/env bash
# Hostile programs in a sandbox: wild pointers to system calls, jumps into
# garbage, a stack overflow, a division by zero, an endless loop killed by
# --timeout, a fork bomb. The VMM must survive every one: cowfork itself
# exits normally with 128+signal and a report, never crashes or hangs.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
H=$TMP/hostile
gcc -static -O1 -o "$H" "$here/sandbox/hostile.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"

# expect WHAT STATUS STDERR-PATTERN [OPTIONS...]
expect() {
  local what=$1 want=$2 pat=$3 rc=0
  shift 3
  timeout 30 "$COWFORK" run --root / "$@" -- "$H" "$what" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [ "$rc" != "$want" ] || ! grep -q -- "$pat" "$TMP/err" "$TMP/out"; then
    cat "$TMP/out" "$TMP/err"
    fail "$what: exit $rc (want $want), output should match '$pat'"
  fi
  echo "ok   $what: exit $rc: $(grep -m1 -- "$pat" "$TMP/err" "$TMP/out" | cut -c1-150)"
}

# Every bad pointer is EFAULT (14), the unknown call ENOSYS (38).
expect wild-syscalls 0 "" </dev/null
[ "$(cat "$TMP/out")" = "-1 14 -1 14 -1 14 -1 14 -1 14 -1 14 -1 38" ] || fail "wild-syscalls: $(cat "$TMP/out")"
echo "ok   wild-syscalls: all EFAULT, unknown call ENOSYS"
expect null 139 "killed by SIGSEGV: #PF page fault.*address 0x0"
expect wild-jump 139 "killed by SIGSEGV.*0x12345678"
expect garbage 132 "killed by SIGILL"
expect stack 139 "killed by SIGSEGV"
expect div0 136 "killed by SIGFPE: #DE"
expect rodata 139 "killed by SIGSEGV"
expect abort 134 "killed by SIGABRT"
expect handler 42 "caught signal 11 at 0x10"
# 1000 forks never waited for: the sandbox holds 64 processes (--pids),
# zombies included, as a cgroup's pids.max; the rest are EAGAIN.
expect fork-bomb 0 "forked 63, refused 937"
# The host fds of all the sandbox's processes share its budget
# (--max-files 1024): the parent holds 700, a child that closed
# its copies gets 324 more, then ENFILE (natively it would get its own 1024).
expect fd-fork 0 "child opened 324: ENFILE" --max-files 1024
start=$(date +%s)
expect loop 137 "timed out after 1 s" --timeout 1
[ $(( $(date +%s) - start )) -le 5 ] || fail "the timeout took more than 5 s"
# The CPU-time limit ends a spinning program, and does not count sleeping.
expect loop 137 "CPU time limit of 0.5 s exceeded" --cpu-limit 0.5
rc=0; [ -x /bin/busybox ] && { "$COWFORK" run --root / --cpu-limit 0.3 -- /bin/busybox sleep 1 2>"$TMP/err" || rc=$?; }
[ $rc = 0 ] || fail "a sleeping program was killed by the CPU limit: $(cat "$TMP/err")"
echo "ok   sleeping 1 s under --cpu-limit 0.3 is not killed"
# A child process computing while the first one waits: the limit counts the
# whole tree (it counted the first process's threads only).
if [ -x /bin/busybox ]; then
  rc=0; start=$(date +%s)
  timeout 120 "$COWFORK" run --root / --cpu-limit 0.5 -- /bin/busybox sh -c '/bin/busybox sh -c "while :; do :; done" & wait' \
    >"$TMP/out" 2>"$TMP/err" || rc=$?
  [ $rc = 137 ] && grep -q "CPU time limit of 0.5 s exceeded" "$TMP/err" ||
    fail "a child process computing escaped --cpu-limit: exit $rc: $(cat "$TMP/err")"
  echo "ok   --cpu-limit 0.5 counts a child process's CPU time (exit $rc after $(( $(date +%s) - start )) s)"
fi
