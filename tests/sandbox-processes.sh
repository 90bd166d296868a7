#!/usr/bin/env bash
# Processes in a sandbox against the same commands run natively (issue 14,
# item 7). Each case runs natively and in a sandbox (`cowfork run`, the
# store's default root; the C program's cases in a root holding just it):
# stdout and stderr must be byte-identical and the exit status the same, and
# the native run must print what tests/sandbox/procs.expected stores for it
# (so a case that goes wrong on both sides is caught too). Each case prints
# "ok   NAME" or "not ok NAME" with the difference; the test fails if any
# case does.
#
# Cases: for busybox sh, dash and bash (those installed): a pipeline of 5,
# $( ), background jobs + wait (and kill of one), commands that are not the
# last, subshells and here-documents; once: xargs -P2, find -exec, tar czf/xzf
# (files in /tmp: the only writable directory of a sandbox), perl backticks,
# bash with pipefail and process substitution; Python (tests/sandbox/procs.py):
# subprocess.run, Popen(...).communicate, os.fork + waitpid (exit statuses,
# deaths by signal), os.system, os.popen, multiprocessing.Pool with fork and
# with spawn, multiprocessing Value/Lock/Array and SharedMemory, asyncio's
# PidfdChildWatcher and os.pidfd_open; C
# (tests/sandbox/procs.c): fork, deaths, wait4/waitid options,
# process groups and sessions, shared file offsets, pipes and FIFOs between processes,
# close-on-exec, dup2, vfork/posix_spawn (the child in the parent's memory
# until its exec or exit), 1000 posix_spawn in a row (100 under emulation),
# record locks, timerfds, rusage, zombies in /proc, shared memory (MAP_SHARED,
# /dev/shm, sem_open, pshared semaphores and mutexes), pidfds (pidfd_open,
# pidfd_send_signal, waitid P_PIDFD, poll/epoll, pidfd_getfd, CLONE_PIDFD),
# System V shared memory and semaphores, the sandbox's init (pid 1) against
# a pid namespace's (natively under unshare --pid --fork --mount-proc, or
# the stored output where unshare cannot make one); then a fork bomb under a process
# limit (natively as nobody with RLIMIT_NPROC 32: root has no limit), which
# must end cleanly, leaving no host process or thread behind.
#
# Without /dev/kvm the native half runs alone (and must pass), then the test
# skips; tests/run then runs it whole under scripts/kvm-vm.sh.
# UPDATE_EXPECTED=1 rewrites tests/sandbox/procs.expected from the native runs;
# PROC_ONLY=REGEX runs only the cases whose names match.
#
# tests/sandbox/procs.gaps names the cases whose sandbox side still differs
# for a feature not built yet (NAME<TAB>what is missing): such a case is
# reported as skipped with its reason and the difference, never as passed;
# one listed there that passes fails the test (remove it from the list).
. "$(dirname "$0")/functions.sh"
here=$(cd "$(dirname "$0")" && pwd)
EXP=$here/sandbox/procs.expected
sandbox=1
[ -c /dev/kvm ] && [ -r /dev/kvm ] || sandbox=0
[ "${UPDATE_EXPECTED:-0}" = 1 ] && { sandbox=0; : > "$TMP/new.expected"; }
PY=/usr/bin/python3
# The sandbox's environment is a clean default (docs/sandbox.md "Identity"):
# the native runs get the same, from / as well.
NATIVE_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
            HOME=$([ "$(id -u)" = 0 ] && echo /root || echo /) LANG=C.UTF-8)
: "${PROC_TIMEOUT:=$([ -n "${COWFORK_EMULATED:-}" ] && echo 180 || echo 60)}"
pass=0 nfail=0 nskip=0 failed=()
GAPS=$here/sandbox/procs.gaps
gap() { awk -F'\t' -v n="$1" '$1 == n { print $2 }' "$GAPS" 2>/dev/null; } # NAME: its reason, or nothing

expected() { # NAME: the stored stdout, or nothing (status 1) when none is stored
  awk -v n="=== $1 (exit " '/^=== / { on = index($0, n) == 1; next } on' "$EXP"
}
expected_rc() { # NAME
  grep -F "=== $1 (exit " "$EXP" | head -n 1 | sed -E 's/.*\(exit ([0-9]+)\)$/\1/'
}

# case_ NAME [--root DIR] -- NATIVE_CMD... -- SANDBOX_CMD...: the two commands
# are the same program, by its path natively and in the sandbox's root.
case_() {
  local name=$1 root=() nrc=0 src=0 why=() ncmd=() scmd=()
  shift
  # PROC_ONLY=REGEX: only the cases whose names match (while debugging)
  [ -z "${PROC_ONLY:-}" ] || [[ $name =~ $PROC_ONLY ]] || return 0
  if [ "$1" = --root ]; then root=(--root "$2"); shift 2; fi
  [ "$1" = -- ] && shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do ncmd+=("$1"); shift; done
  [ $# -eq 0 ] || shift
  scmd=("$@")
  [ ${#scmd[@]} -gt 0 ] || scmd=("${ncmd[@]}")
  if [ -n "${NATIVE_STORED:-}" ]; then # the native run cannot be made here: its stored output stands for it
    expected "$name" > "$TMP/n.out"; : > "$TMP/n.err"; nrc=$(expected_rc "$name"); nrc=${nrc:-0}
    echo "     $name: the native side is the stored expectation ($NATIVE_STORED)"
  else
    (cd / && timeout "$PROC_TIMEOUT" "${NATIVE_ENV[@]}" "${ncmd[@]}") </dev/null >"$TMP/n.out" 2>"$TMP/n.err" || nrc=$?
  fi
  [ -z "${SHOW_STDERR:-}" ] || [ ! -s "$TMP/n.err" ] || sed "s/^/    $name stderr: /" "$TMP/n.err"
  if [ "${UPDATE_EXPECTED:-0}" = 1 ]; then
    { echo "=== $name (exit $nrc)"; cat "$TMP/n.out"; } >> "$TMP/new.expected"
  elif ! grep -qF "=== $name (exit " "$EXP"; then
    why+=("no expectation stored for it (UPDATE_EXPECTED=1)")
  else
    expected "$name" > "$TMP/e.out"
    local erc
    erc=$(expected_rc "$name")
    cmp -s "$TMP/e.out" "$TMP/n.out" || why+=("native stdout differs from the stored expectation")
    [ "$nrc" = "$erc" ] || why+=("native exit $nrc, expected $erc")
  fi
  if [ $sandbox = 1 ]; then
    (cd / && timeout "$((PROC_TIMEOUT + 30))" env -u TERM "$COWFORK" run "${root[@]}" --mem "${PROC_MEM:-1G}" \
      --timeout "$PROC_TIMEOUT" -- "${scmd[@]}") </dev/null >"$TMP/s.out" 2>"$TMP/s.err" || src=$?
    cmp -s "$TMP/n.out" "$TMP/s.out" || why+=("stdout differs")
    cmp -s "$TMP/n.err" "$TMP/s.err" || why+=("stderr differs")
    [ "$nrc" = "$src" ] || why+=("exit status: native $nrc, sandbox $src")
  fi
  local g=""
  [ $sandbox = 1 ] && g=$(gap "$name")
  if [ ${#why[@]} -eq 0 ] && [ -n "$g" ]; then
    nfail=$((nfail + 1)); failed+=("$name")
    echo "not ok $name: as natively now, but listed in tests/sandbox/procs.gaps ($g): remove it there"
    return 0
  fi
  if [ ${#why[@]} -eq 0 ]; then
    pass=$((pass + 1))
    echo "ok   $name$([ $sandbox = 1 ] && echo " (as natively: exit $src, $(wc -l <"$TMP/s.out") lines)" || echo " (native, exit $nrc)")"
    return 0
  fi
  local out=/dev/null
  if [ -n "$g" ] && cmp -s "$TMP/e.out" "$TMP/n.out" 2>/dev/null; then
    nskip=$((nskip + 1))
    echo "ok   $name # SKIP not built yet: $g; the sandbox differs: $(IFS=';'; echo "${why[*]}")"
  else
    nfail=$((nfail + 1)); failed+=("$name")
    echo "not ok $name: $(IFS=';'; echo "${why[*]}")"
    out=$TMP/failures # shown again at the end (tests/run shows a failed test's last lines)
    echo "not ok $name: $(IFS=';'; echo "${why[*]}")" >> "$out"
  fi
  {
    if [ -s "$TMP/e.out" ] && ! cmp -s "$TMP/e.out" "$TMP/n.out"; then
      echo "    --- expected / +++ native:"; diff -u "$TMP/e.out" "$TMP/n.out" | tail -n +3 | head -n 40 | sed 's/^/    /' || true
    fi
    if [ $sandbox = 1 ]; then
      echo "    --- native / +++ sandbox, stdout:"; diff -u "$TMP/n.out" "$TMP/s.out" | tail -n +3 | head -n 60 | sed 's/^/    /' || true
      echo "    --- native / +++ sandbox, stderr:"; diff -u "$TMP/n.err" "$TMP/s.err" | tail -n +3 | head -n 30 | sed 's/^/    /' || true
    else
      sed 's/^/    stderr: /' "$TMP/n.err" | head -n 20
    fi
  } | tee -a "$out"
  rm -f "$TMP/e.out"
  return 0
}
skip_case() { nskip=$((nskip + 1)); echo "ok   $1 # SKIP $2"; }

# ---- shells ----
ROOTDIR=${COWFORK_TEST_ROOTS:+$COWFORK_TEST_ROOTS/default/root}
in_root() { # PATH: the default root has it too (where it is known here)
  [ -z "$ROOTDIR" ] || [ ! -d "$ROOTDIR" ] || [ -e "$ROOTDIR$1" ] || [ -L "$ROOTDIR$1" ]
}
PIPE5='seq 1 3000 | grep 7 | sed s/7/seven/g | sort -r | head -n 4; echo "status $?"
printf "b\na\nc\na\nb\na\n" | sort | uniq -c | sort -rn | head -n 2
echo through | cat | cat | cat | cat
seq 1 100000 | cat | cat | cat | wc -l
/bin/false | /bin/true | /bin/true | /bin/true | /bin/false; echo "last stage: $?"'
SUBST='x=$(echo inner); echo "[$x]"
y=$(echo a; echo b | tr a-z A-Z); echo "[$y]"
z=$(exit 3); echo "status $?"
n=$(seq 1 1000 | wc -l); echo "n=$n"
echo "$(echo $(echo $(echo deep)))"
w=`echo backquotes`; echo "$w"
echo "$(printf "trailing\n\n\n")|"
big=$(seq 1 20000); echo "${#big} bytes"
echo $(( $(echo 6) * $(echo 7) ))'
# dash prints "Terminated" to stderr when its wait builtin is what reaps the
# killed job, and nothing when its after-command reap got there first (the
# SIGCHLD came before \`kill\` returned): a race in dash itself, with both
# outcomes seen natively (always the first on 2 CPUs, mostly the second on the
# 1-vCPU test VM), so that wait's stderr is not compared.
BG='d=$(mktemp -d /tmp/cowfork-bg.XXXXXX)
(sleep 0.3; echo slow > $d/a) & a=$!
(echo fast > $d/b) & b=$!
wait $b; echo "b: $? $(cat $d/b)"
wait $a; echo "a: $? $(cat $d/a)"
(exit 7) & wait $!; echo "exit 7: $?"
sleep 10 & k=$!; kill $k; wait $k 2>/dev/null; echo "killed by SIGTERM: $?"
for i in 1 2 3; do (sleep 0.$i; echo $i > $d/j$i) & done; wait; echo "wait for all: $? $(cat $d/j1 $d/j2 $d/j3)"
rm -r $d; echo "wait with none left: $(wait; echo $?)"'
SEQ='/bin/echo one; /bin/echo two
ls -d /tmp
test -d /tmp && echo yes
if /bin/true; then echo then; fi
for i in 1 2 3; do /bin/echo "loop $i"; done
/bin/false || echo "false: $?"
/bin/sh -c "exit 5"; echo "sh -c: $?"
env X=1 /usr/bin/env | grep "^X="
exit 4'
SUB='(cd /tmp && pwd); pwd
(exit 4); echo "subshell: $?"
{ echo x; echo y; } | wc -l
cat <<EOF
here-document $(echo with a substitution)
EOF
cat <<EOF | tr a-z A-Z
piped here-document
EOF
read v <<EOF
read from a here-document
EOF
echo "$v"
f=/tmp/cowfork-sub.$$; echo redirected > $f; cat < $f; rm $f
exec 3>&1; (echo "fd 3 in a subshell" >&3); exec 3>&-'
for sh in "busybox sh" dash bash; do
  bin=${sh%% *}
  if ! command -v "$bin" >/dev/null || ! in_root "/usr/bin/$bin"; then
    for c in "pipeline of 5" '$( )' "background jobs and wait" "commands before the last" "subshells and here-documents"; do
      skip_case "$sh: $c" "$bin is not installed"
    done
    continue
  fi
  p=$(command -v "$bin")
  case $bin in busybox) p=/bin/busybox; args=(sh) ;; *) p=/bin/$bin; args=() ;; esac
  case_ "$sh: pipeline of 5" -- $p "${args[@]}" -c "$PIPE5"
  case_ "$sh: \$( )" -- $p "${args[@]}" -c "$SUBST"
  case_ "$sh: background jobs and wait" -- $p "${args[@]}" -c "$BG"
  case_ "$sh: commands before the last" -- $p "${args[@]}" -c "$SEQ"
  case_ "$sh: subshells and here-documents" -- $p "${args[@]}" -c "$SUB"
done

XARGS='seq 1 40 | xargs -P2 -n 5 echo | sort -n
seq 1 6 | xargs -P2 -I{} sh -c "sleep 0.0{}; echo job {}" | sort
printf "%s\n" a b c | xargs -P2 -n1 sh -c "exit 3"; echo "a failing command: $?"
printf "%s\n" a | xargs -P2 -n1 sh -c "exit 255"; echo "exit 255 stops xargs: $?"
seq 1 4 | xargs -P2 -n2 sh -c "echo \"\$@\" | tr \" \" +" sh | sort'
FIND='d=$(mktemp -d /tmp/cowfork-find.XXXXXX); cd $d
mkdir -p a/b c; echo 1 > a/one; echo 22 > a/b/two; echo 333 > c/three
find . -type f -exec wc -c {} + | sort
find . -type f -exec sh -c "echo \"\$1: \$(cat \$1)\"" sh {} \; | sort
find . -name "t*" -exec basename {} \; | sort
find . -type f -execdir pwd \; | sed "s|^$d|D|" | sort
find . -type f -exec test -s {} \; -print | sort
find . -type f -print0 | xargs -0 cat | sort
cd /; rm -r $d'
TAR='set -e
d=$(mktemp -d /tmp/cowfork-tar.XXXXXX); cd $d
mkdir -p src/sub; seq 1 5000 > src/nums; echo hello > src/sub/h.txt; seq 1 100 | tr -d "\n" > src/sub/x
tar czf a.tgz src
tar tzf a.tgz | sort
gzip -t a.tgz && echo "gzip -t: ok"
mkdir out; tar xzf a.tgz -C out
diff -r src out/src && echo "tar xzf: same tree"
tar cf - src | gzip -c | gzip -dc | tar tf - | sort | md5sum
mkdir out2; tar czf - src | (cd out2 && tar xzf -); cat out2/src/sub/h.txt
gzip -c src/nums | gzip -dc | md5sum
cd /; rm -r $d'
PERL='my $x = `echo hi | tr a-z A-Z`; print "backticks: $x";
print "status: ", $? >> 8, "\n";
my @l = `seq 1 3`; print "lines: ", scalar(@l), "\n";
`sh -c "exit 6"`; print "backticks status: ", $? >> 8, "\n";
system("true; exit 3"); print "system: ", $? >> 8, "\n";
system("sh", "-c", "kill -TERM \$\$"); print "signal: ", $? & 127, "\n";
open(my $p, "-|", "seq", "1", "5") or die; my $s = 0; $s += $_ while <$p>; close $p; print "open -|: $s\n";
$| = 1; open(my $w, "|-", "tr", "a-z", "A-Z") or die; print $w "piped to tr\n"; close $w; print "close |-: $?\n";
my $pid = fork(); if ($pid == 0) { exit 5 } waitpid($pid, 0); print "fork: ", $? >> 8, "\n";
print "qx list: ", join(",", map { chomp; $_ } qx(printf "a\\nb\\n")), "\n";
my @r = readpipe("echo readpipe"); print @r;'
PIPEFAIL='set -o pipefail
true | false | true; echo "pipefail: $?"
(exit 3) | true | (exit 0); echo "a failing first stage: $?"
(exit 3) | (exit 4) | true; echo "the rightmost failing stage: $?"
true | false | (exit 7); echo "PIPESTATUS: ${PIPESTATUS[*]}"
seq 1 100000 | head -n 1; echo "SIGPIPE in a stage: $? (${PIPESTATUS[*]})"
set +o pipefail; false | true; echo "without pipefail: $?"
set -o pipefail -e; trap "echo trapped ERR exit \$?" EXIT; seq 3 | (exit 9) | cat; echo "not reached"'
PROCSUB='diff <(seq 1 4) <(seq 1 5); echo "diff: $?"
while read -r l; do echo "line $l"; done < <(seq 1 3)
echo to tee | tee >(tr a-z A-Z > /tmp/cowfork-psub.$$) > /dev/null; sleep 0.3; cat /tmp/cowfork-psub.$$; rm /tmp/cowfork-psub.$$
coproc C { tr a-z A-Z; }; echo coproc >&"${C[1]}"; exec {C[1]}>&-; read -r r <&"${C[0]}"; echo "coproc: $r"; wait $C_PID; echo "coproc exit: $?"'
case_ "xargs -P2" -- /bin/sh -c "$XARGS"
case_ "find -exec" -- /bin/sh -c "$FIND"
case_ "tar czf and xzf" -- /bin/sh -c "$TAR"
if command -v perl >/dev/null && in_root /usr/bin/perl; then
  case_ "perl backticks" -- /usr/bin/perl -e "$PERL"
else
  skip_case "perl backticks" "perl is not installed"
fi
if command -v bash >/dev/null && in_root /usr/bin/bash; then
  case_ "bash pipefail" -- /bin/bash -c "$PIPEFAIL"
  case_ "bash process substitution and coproc" -- /bin/bash -c "$PROCSUB"
else
  skip_case "bash pipefail" "bash is not installed"
  skip_case "bash process substitution and coproc" "bash is not installed"
fi

# ---- Python ----
if [ -x $PY ] && in_root $PY; then
  pyscript=$(cat "$here/sandbox/procs.py")
  for m in subprocess popen fork system ospopen spawn pool-fork pool-spawn shared pidfd; do
    # (asyncio's import alone takes ~20 s of an emulated VM: C pidfd covers the calls there)
    if [ $m = pidfd ] && [ -n "${COWFORK_EMULATED:-}" ]; then
      skip_case "python pidfd" "emulated KVM: asyncio's PidfdChildWatcher case costs ~22 s there (C pidfd runs)"
      continue
    fi
    case_ "python $m" -- $PY -c "$pyscript" $m
  done
else
  skip_case "python" "$PY is not installed"
fi

# ---- C ----
CROOT=$TMP/croot
mkdir -p "$CROOT"
if ! gcc -static -O1 -pthread -o "$CROOT/procs" "$here/sandbox/procs.c" 2>"$TMP/cc.err"; then
  skip_case "C cases" "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
else
  for m in fork death wait pgrp offsets pipes fifo cloexec dup2 spawn locks timerfd shm pidfd sysv msg rusage zombie; do
    case_ "C $m" --root "$CROOT" -- "$CROOT/procs" $m -- /procs $m
  done
  # The sandbox's init (pid 1) against a pid namespace's: natively the
  # program is the namespace's first process and makes itself that init
  # (procs.c mode_init); where unshare cannot make one (not root, no
  # CAP_SYS_ADMIN), the sandbox is compared with the stored output.
  if us=$(command -v unshare) && (cd / && "$us" --pid --fork --mount-proc /bin/true) 2>/dev/null; then
    case_ "C init" --root "$CROOT" -- "$us" --pid --fork --mount-proc "$CROOT/procs" init -- /procs init
  elif [ "${UPDATE_EXPECTED:-0}" = 1 ]; then
    { echo "=== C init (exit 0)"; expected "C init"; } >> "$TMP/new.expected"
  else
    NATIVE_STORED="unshare --pid --fork --mount-proc is not usable here" \
      case_ "C init" --root "$CROOT" -- "$CROOT/procs" init -- /procs init
  fi
  # 1000 posix_spawn in a row (100 emulated: 0.1-0.2 s each there)
  n=$([ -n "${COWFORK_EMULATED:-}" ] && echo 100 || echo 1000)
  case_ "C spawnloop" --root "$CROOT" -- "$CROOT/procs" spawnloop $n -- /procs spawnloop $n
fi

# ---- a fork bomb ----
# Natively as nobody (RLIMIT_NPROC binds no root process): the bomb must meet
# EAGAIN before 32 processes, and all of them end. In a sandbox the same
# program (a process limit applies inside; --pids where cowfork has it), and
# the host keeps nothing of it: no process carrying the run's marker in its
# environment afterwards, and its peak of host threads is printed.
bomb_native=("$CROOT/procs" bomb 32)
if [ "$(id -u)" = 0 ]; then
  chmod 755 "$TMP" "$CROOT"
  bomb_native=(setpriv --reuid=65534 --regid=65534 --clear-groups "${bomb_native[@]}")
fi
if { [ -z "${PROC_ONLY:-}" ] || [[ "fork bomb" =~ $PROC_ONLY ]]; } && [ -x "$CROOT/procs" ] && { [ "$(id -u)" != 0 ] || command -v setpriv >/dev/null; } && [ "$(id -u)" != 65534 ]; then
  nrc=0
  (cd / && timeout 60 "${bomb_native[@]}") >"$TMP/bn.out" 2>&1 || nrc=$?
  expected "fork bomb" > "$TMP/e.out"
  if [ "${UPDATE_EXPECTED:-0}" = 1 ]; then
    { echo "=== fork bomb (exit $nrc)"; cat "$TMP/bn.out"; } >> "$TMP/new.expected"
  elif ! cmp -s "$TMP/e.out" "$TMP/bn.out" || [ $nrc != 0 ]; then
    nfail=$((nfail + 1)); failed+=("fork bomb (native)")
    echo "not ok fork bomb natively (exit $nrc):"; diff -u "$TMP/e.out" "$TMP/bn.out" | tail -n +3 | sed 's/^/    /' || true
  else
    pass=$((pass + 1)); echo "ok   fork bomb natively as nobody: EAGAIN under RLIMIT_NPROC 32, all ended"
  fi
  if [ $sandbox = 1 ]; then
    pids=()
    "$COWFORK" run --help 2>&1 | grep -q -- '--pids' && pids=(--pids 32)
    mark=cowfork-bomb-$$-$RANDOM
    # (processes come and go while /proc is listed: ls and grep fail then)
    marked() { grep -l -s -a -F "COWFORK_BOMB_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true; }
    threads() { { ls -d /proc/[0-9]*/task/* 2>/dev/null || true; } | wc -l; }
    procs() { { ls -d /proc/[0-9]* 2>/dev/null || true; } | wc -l; }
    before_t=$(threads) before_p=$(procs)
    src=0
    (cd / && COWFORK_BOMB_MARK=$mark timeout 200 env -u TERM "$COWFORK" run --root "$CROOT" --mem 1G --timeout 150 \
      "${pids[@]}" -- /procs bomb 32) >"$TMP/bs.out" 2>&1 &
    bpid=$!
    peak=0
    while kill -0 $bpid 2>/dev/null; do
      n=0
      for p in $(marked); do
        n=$((n + $({ ls /proc/$p/task 2>/dev/null || true; } | wc -l)))
      done
      [ $n -le $peak ] || peak=$n
      sleep 0.2
    done
    wait $bpid || src=$?
    sleep 0.5
    left=$(marked | wc -l)
    after_t=$(threads) after_p=$(procs)
    echo "     host: $before_p processes / $before_t threads before, $after_p / $after_t after; the sandbox's peak: $peak host threads${pids:+ (${pids[*]})}"
    why=()
    cmp -s "$TMP/bn.out" "$TMP/bs.out" || why+=("output differs from the native run")
    [ $src = 0 ] || why+=("sandbox exit $src")
    [ "$left" = 0 ] || why+=("$left host processes of the run left")
    if [ ${#why[@]} -eq 0 ]; then
      pass=$((pass + 1)); echo "ok   fork bomb in a sandbox: as natively, nothing left on the host"
    else
      nfail=$((nfail + 1)); failed+=("fork bomb")
      echo "not ok fork bomb in a sandbox: $(IFS=';'; echo "${why[*]}")"
      diff -u "$TMP/bn.out" "$TMP/bs.out" | tail -n +3 | sed 's/^/    /' || true
    fi
  fi
else
  [ -n "${PROC_ONLY:-}" ] || skip_case "fork bomb" "needs the C program and setpriv (to run the native bomb as nobody)"
fi

if [ "${UPDATE_EXPECTED:-0}" = 1 ]; then
  cp "$TMP/new.expected" "$EXP"
  echo "wrote $EXP ($(grep -c '^=== ' "$EXP") cases)"
  exit 0
fi
echo "$pass passed, $nfail failed, $nskip skipped$([ $sandbox = 0 ] && echo " (native half only)")"
[ $nfail -eq 0 ] || { echo "== the failed cases again:"; cat "$TMP/failures" 2>/dev/null; fail "$nfail cases failed: ${failed[*]}"; }
[ $sandbox = 1 ] || skip "no /dev/kvm: the native half passed, the sandbox half did not run"
