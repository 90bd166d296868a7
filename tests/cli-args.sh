#!/usr/bin/env bash
# Bad numbers on the command line: every integer, size and seconds option of
# the front end refuses a value that is not a number, negative, zero where
# zero means nothing, out of its range, with trailing junk, or past 2^64 —
# with exit code 2, a message naming the option and the value, and without
# doing any of the command's work (no sandbox, no store writes). A good value
# of each option is also tried where that needs no KVM, so a parser
# that refuses everything fails here too. No KVM needed.
. "$(dirname "$0")/functions.sh"

n=0
bad() { # VALUE WORD CMD... : CMD with VALUE refused, the message names WORD and VALUE
  local v=$1 word=$2 rc=0
  shift 2
  "$COWFORK" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null || rc=$?
  [ "$rc" = 2 ] || fail "$* (value '$v'): exit $rc, wanted 2: $(cat "$TMP/err")"
  grep -qF -- "$word" "$TMP/err" || fail "$*: the message does not name $word: $(cat "$TMP/err")"
  grep -qF -- "'$v'" "$TMP/err" || fail "$*: the message does not quote '$v': $(cat "$TMP/err")"
  [ ! -s "$TMP/out" ] || fail "$*: printed on stdout: $(cat "$TMP/out")"
  n=$((n + 1))
}
UINT_BAD=(abc -1 0 12x 99999999999999999999 "" 1e3 0x10)
SIZE_BAD=(abc -1 0 12q 99999999999999999999999 "")
SECS_BAD=(abc -1 0 nan inf 5x "")

for v in "${UINT_BAD[@]}" 122; do bad "$v" --cpus run --cpus "$v" -- /bin/true; done
for v in "${UINT_BAD[@]}" 4097; do bad "$v" --pids run --pids "$v" -- /bin/true; done
for v in "${UINT_BAD[@]}" 15 99999999; do bad "$v" --max-files run --max-files "$v" -- /bin/true; done
for v in "${UINT_BAD[@]}" 122; do bad "$v" --cpus template create t --cpus "$v" -- /bin/true; done
for v in "${SIZE_BAD[@]}" 3M 8M; do bad "$v" --mem run --mem "$v" -- /bin/true; done
for v in "${SIZE_BAD[@]}" 1M 17000K; do bad "$v" --disk run --disk "$v" -- /bin/true; done
for v in "${SIZE_BAD[@]}" 1M 17000K; do bad "$v" --disk template create t --disk "$v" -- /bin/true; done
for v in "${SECS_BAD[@]}"; do bad "$v" --timeout run --timeout "$v" -- /bin/true; done
for v in "${SECS_BAD[@]}"; do bad "$v" --cpu-limit run --cpu-limit "$v" -- /bin/true; done
for v in "${UINT_BAD[@]}" 100001; do bad "$v" -n fork t -n "$v"; done
for v in "${UINT_BAD[@]}" 1025; do bad "$v" --jobs fork t -n 2 --jobs "$v"; done
for v in "${UINT_BAD[@]}" 100001; do bad "$v" --workers daemon --socket "$TMP/d.sock" --workers "$v"; done
for v in "${UINT_BAD[@]}"; do bad "$v" --max-sandboxes daemon --socket "$TMP/d.sock" --max-sandboxes "$v"; done
for v in "${UINT_BAD[@]}" 3; do bad "$v" --max-files daemon --socket "$TMP/d.sock" --max-files "$v"; done
for v in "${UINT_BAD[@]}" 65536; do bad "$v" PORT sandbox port --socket "$TMP/d.sock" -- sb0 "$v"; done
[ ! -e "$TMP/d.sock" ] || fail "a daemon with a bad option made its socket"
echo "ok   $n bad values refused with exit 2, naming the option and the value"

# The good edge values parse: a sandbox option then fails later (no KVM, no
# such template) or runs, never with the usage exit code 2.
good() {
  local rc=0
  "$COWFORK" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null || rc=$?
  [ "$rc" != 2 ] || fail "$*: refused a good value: $(cat "$TMP/err")"
}
good run --cpus 121 --pids 4096 --max-files 16 --mem 16M --timeout 0.5 -- /bin/true
good run --cpus 1 --pids 1 --max-files 65536 --mem 2G --disk 16M --cpu-limit 1 -- /bin/true
good fork no-such-template -n 100000 --jobs 1024
echo "ok   the edge values of each range are taken"
[ -z "$(ls -A "$COWFORK_STORE/templates" 2>/dev/null)" ] || fail "a refused command wrote a template: $(ls "$COWFORK_STORE/templates")"
echo "PASS"
