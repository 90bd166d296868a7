#!/usr/bin/env bash
# The seccomp-bpf filter of the threads that serve guests (shim/seccomp.c,
# docs/security.md). COWFORK_SECCOMP_TEST=1 makes the shim call a forbidden
# host system call (personality) once while serving a guest: with the filter
# (the default) the process dies of SIGSYS after writing a report naming
# the call; with --no-seccomp or COWFORK_SECCOMP=0 nothing happens. Checked
# on each kind of thread that serves guests: `cowfork run`'s, `cowfork
# fork`'s workers, `template create`'s (the daemon's workers:
# tests/daemon-seccomp.sh). That the filter
# lets every normal path through is what the other sandbox and daemon tests
# show: they run with it (sanitizer builds: only with COWFORK_SECCOMP=1, set
# here for the runs that die before exit; LeakSanitizer's exit-time check
# cannot work under the filter).
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
requires python3

# st CMD...: run CMD with stdin /dev/null, stderr in $TMP/err; prints its exit
# status, or -N when it was killed by signal N.
st() {
  python3 -c '
import subprocess, sys
with open(sys.argv[1], "wb") as err:
    p = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
print(p.returncode)' "$TMP/err" "$@"
}
REPORT="cowfork: seccomp: forbidden host system call 135 (personality)"

# expect_sigsys WHAT CMD...
expect_sigsys() {
  local what=$1 s
  shift
  s=$(COWFORK_SECCOMP=1 COWFORK_SECCOMP_TEST=1 st "$@")
  [ "$s" = -31 ] && grep -qF "$REPORT" "$TMP/err" ||
    { cat "$TMP/err"; fail "$what: status $s (want -31, killed by SIGSYS) and the report"; }
  echo "ok   $what: killed by SIGSYS: $(grep -m1 -oF "$REPORT" "$TMP/err")"
}

# cowfork run: the main thread.
s=$(st "$COWFORK" run -- /bin/busybox true)
[ "$s" = 0 ] || { cat "$TMP/err"; fail "run without the hook: status $s"; }
expect_sigsys "run" "$COWFORK" run -- /bin/busybox true
s=$(COWFORK_SECCOMP=1 COWFORK_SECCOMP_TEST=1 st "$COWFORK" run --no-seccomp -- /bin/busybox true)
[ "$s" = 0 ] || { cat "$TMP/err"; fail "run --no-seccomp: status $s"; }
s=$(COWFORK_SECCOMP_TEST=1 COWFORK_SECCOMP=0 st "$COWFORK" run -- /bin/busybox true)
[ "$s" = 0 ] || { cat "$TMP/err"; fail "run with COWFORK_SECCOMP=0: status $s"; }
echo "ok   run --no-seccomp and COWFORK_SECCOMP=0: the forbidden call is made, the process lives"

# template create: the thread that runs it to its ready point (its first
# system call is served before the pause), then saves it under the filter.
expect_sigsys "template create" "$COWFORK" template create t0 -- /bin/busybox sh
s=$(COWFORK_SECCOMP=1 COWFORK_SECCOMP_TEST=1 st "$COWFORK" template create t0 --no-seccomp -- /bin/busybox sh)
[ "$s" = 0 ] || { cat "$TMP/err"; fail "template create --no-seccomp: status $s"; }
# A template made under the filter (the save runs on the filtered thread).
"$COWFORK" template create sh -- /bin/busybox sh 2>"$TMP/err" || { cat "$TMP/err"; fail "template create"; }
echo "ok   template create under the filter"

# cowfork fork: the worker threads (a child's first call is the pending read).
printf 'echo hi\n' >"$TMP/in"
s=$(st "$COWFORK" fork sh -n 2 --input "$TMP/in")
[ "$s" = 0 ] || { cat "$TMP/err"; fail "fork: status $s"; }
expect_sigsys "fork" "$COWFORK" fork sh -n 2 --input "$TMP/in"
s=$(COWFORK_SECCOMP=1 COWFORK_SECCOMP_TEST=1 st "$COWFORK" fork sh -n 2 --input "$TMP/in" --no-seccomp)
[ "$s" = 0 ] || { cat "$TMP/err"; fail "fork --no-seccomp: status $s"; }
# A branch: the save runs on the worker thread, under the filter.
s=$(st "$COWFORK" snapshot sh sh2 --input "$TMP/in")
[ "$s" = 0 ] || { cat "$TMP/err"; fail "snapshot under the filter: status $s"; }
echo "ok   fork --no-seccomp; a branch saved under the filter"
