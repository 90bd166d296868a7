#!/usr/bin/env bash
# Bounded resources (issue 12 items 4 and 7, "fd exhaustion contained"):
# one tenant (here: a sandbox; the API has no tenant notion) tries to
# exhaust the daemon's fds, memory and sandbox count; another keeps working.
# tests/sandbox/hog.c is the attacker: it opens files until EMFILE and maps
# thousands of distinct files of a tree under its root. Before the fix each
# mapped file kept a host fd for the sandbox's life (shim/mm.c hostfile
# cache): three such sandboxes exhausted a 2048-fd daemon and every other
# request got 500. Also: the start check of the fd budget against
# RLIMIT_NOFILE, 429 at the sandbox cap, 507 at --max-memory, EMFILE at
# --max-files and ENOMEM at the template's memory in the guest.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/daemon/functions.sh"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
R=$TMP/root
NF=800
mkdir -p "$R/many"
gcc -static -O1 -o "$R/hog" "$here/sandbox/hog.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
python3 -c 'import sys
for i in range(int(sys.argv[2])):
    open("%s/many/f%04d" % (sys.argv[1], i), "w").write("file %d\n" % i)' "$R" $NF

# --- the start check: the fd budget must fit RLIMIT_NOFILE ----------------------
ulimit -n 2048 || skip "cannot set RLIMIT_NOFILE to 2048 here"
rc=0; cowfork daemon --socket "$TMP/x.sock" --max-sandboxes 100000 2>"$TMP/refused" || rc=$?
[ $rc != 0 ] && grep -q "more than RLIMIT_NOFILE [0-9]* allows" "$TMP/refused" ||
  fail "--max-sandboxes 100000: exit $rc, $(cat "$TMP/refused")"
echo "ok   --max-sandboxes 100000 x 405 fds does not fit (even raised as root): refused ($(head -c 120 "$TMP/refused")...)"

make_sh_template sh
up "$TMP/log" --max-sandboxes 6 --max-files 32 --max-memory 40M
grep -q "up to 6 live sandboxes of 32 open files, 40 MiB" "$TMP/log" || fail "start line: $(cat "$TMP/log")"
# a root in the store (the daemon shows no other host directory)
cowfork root create hogroot --from-dir "$R" >/dev/null 2>"$TMP/rc.err" || fail "root create: $(cat "$TMP/rc.err")"
api POST /v1/templates "{\"name\":\"hog\",\"program\":\"/hog\",\"root\":\"hogroot\",\"mem\":\"64M\"}" >/dev/null
expect 201 "the attacker's template (root: $NF small files)"

# jf JSON KEY: a scalar field (no python: under emulation each python3 costs
# seconds)
jf() { [[ $1 =~ \"$2\":\"?([^\",}]*) ]] && printf '%s\n' "${BASH_REMATCH[1]}"; }
create() { # create TEMPLATE: its id (expects 201)
  local o
  api POST /v1/sandboxes "{\"template\":\"$1\"}" >"$TMP/o"; o=$(<"$TMP/o")
  [ "$code" = 201 ] || fail "create from $1: HTTP $code: $o"
  [[ $o =~ \"(sb-[0-9a-f]+)\" ]] || fail "create: $o"
  echo "${BASH_REMATCH[1]}"
}
hog() { # hog ID COMMAND: the answer line
  local o
  api POST /v1/sandboxes/$1/exec "{\"input\":\"$2\\n\",\"timeout\":300}" >"$TMP/o"; o=$(<"$TMP/o")
  [ "$code" = 200 ] || fail "exec '$2' in $1: HTTP $code: $o"
  o=$(jf "$o" output)
  echo "${o%\\n}"
}
# The other tenant: its sandbox answers, and a new one can be created,
# used and deleted (unless CREATE is "no": the daemon is full by design).
B=$(create sh)
victim() { # victim WHEN [no]
  local o
  api POST /v1/sandboxes/$B/exec '{"input":"echo alive\n"}' >"$TMP/o"; o=$(<"$TMP/o")
  [ "$code" = 200 ] && [ "$(jf "$o" output)" = 'alive\n' ] || fail "$1: the other sandbox: HTTP $code: $o"
  if [ "${2:-}" != no ]; then
    local b2
    b2=$(create sh)
    api POST /v1/sandboxes/$b2/exec '{"input":"echo fresh\n"}' >"$TMP/o"; o=$(<"$TMP/o")
    [ "$code" = 200 ] && [ "$(jf "$o" output)" = 'fresh\n' ] || fail "$1: a new sandbox: HTTP $code: $o"
    api DELETE /v1/sandboxes/$b2 >/dev/null
    [ "$code" = 200 ] || fail "$1: delete: HTTP $code"
  fi
  if [ "${2:-}" = no ]; then
    echo "ok   $1: the other tenant's sandbox answers (${SECONDS}s; creates refused: the daemon is full)"
  else
    echo "ok   $1: the other tenant's sandbox answers, and a new one is created, used, deleted (${SECONDS}s)"
  fi
}
victim "at start"

# --- fds: open until EMFILE, map $NF distinct files, in three sandboxes --------
health_fds() { # the daemon's open fds, and what its /v1/health says
  local n h
  n=$(ls "/proc/$DPID/fd" | wc -l)
  h=$(jf "$(api GET /v1/health)" host_fds)
  [ $((n - h)) -le 1 ] && [ $((h - n)) -le 1 ] || fail "/v1/health says $h host fds, /proc says $n"
  echo "$n"
}
f0=$(health_fds)
A=()
for i in 1 2 3; do
  a=$(create hog)
  A+=("$a")
  r=$(hog "$a" "open 1000")
  [ "$r" = "opened 29 errno 24" ] || fail "open 1000 in a sandbox of 32 files (0-2 are stdio): '$r', expected 29 then EMFILE"
  r=$(hog "$a" "mmap $NF")
  [ "$r" = "mapped $NF errno 0" ] || fail "mmap of $NF files: '$r'"
  echo "ok   (${SECONDS}s) attacker $i: EMFILE after 29 opens (--max-files 32); $NF files mapped ($(health_fds) daemon fds)"
  victim "after attacker $i"
done
f1=$(health_fds)
per=$(jf "$(api GET /v1/health)" fds_per_sandbox)
[ $((f1 - f0)) -le $((3 * per)) ] || fail "three attackers took $((f1 - f0)) fds, more than 3 x $per"
echo "ok   three attackers hold $((f1 - f0)) host fds (each at most $per)"

# --- memory: --max-memory 40M ----------------------------------------------------
r=$(hog "${A[0]}" "mem 20"); [ "$r" = "touched 20 errno 0" ] || fail "mem 20: '$r'"
r=$(hog "${A[1]}" "mem 20"); [ "$r" = "touched 20 errno 0" ] || fail "mem 20: '$r'"
api POST /v1/sandboxes '{"template":"hog"}' >"$TMP/o"; o=$(<"$TMP/o"); expect 507 "a create past --max-memory 40M (40 MiB touched, plus the mapped files)"
[ "$(jf "$o" code)" = 507 ] && grep -q "max-memory 40 MiB" <<<"$o" || fail "507 body: $o"
victim "memory full" no
r=$(hog "${A[2]}" "mem 100")
case $r in "touched "*" errno 12") ;; *) fail "mem 100 in a 64M sandbox: '$r', expected ENOMEM";; esac
echo "ok   the guest gets ENOMEM past its template's memory ($r)"
api DELETE /v1/sandboxes/${A[0]} >/dev/null; expect 200 "delete an attacker"
api DELETE /v1/sandboxes/${A[1]} >/dev/null; expect 200 "delete an attacker"
api DELETE /v1/sandboxes/${A[2]} >/dev/null; expect 200 "delete an attacker"
victim "after the memory was freed"

# --- sandbox count: --max-sandboxes 6 --------------------------------------------
api POST /v1/sandboxes '{"template":"hog","count":6}' >"$TMP/o"; o=$(<"$TMP/o"); expect 429 "6 more sandboxes past --max-sandboxes 6"
[ "$(jf "$o" code)" = 429 ] && grep -q "max-sandboxes 6" <<<"$o" || fail "429 body: $o"
api POST /v1/sandboxes '{"template":"hog","count":5}' >/dev/null; expect 201 "up to the cap"
api POST /v1/sandboxes '{"template":"hog"}' >/dev/null; expect 429 "one more"
victim "sandbox cap reached" no
api GET /v1/metrics | grep -q '^cowfork_memory_refusals_total 1$' || fail "cowfork_memory_refusals_total"
echo "ok   cowfork_memory_refusals_total 1"
down
! grep -qi "assert\|sanitizer\|segfault" "$TMP/log" || fail "daemon log: $(cat "$TMP/log")"
