#!/usr/bin/env bash
# The README's main job (scripts/demo.sh) runs to the end and prints what it
# promises: 100 children forked, a live sandbox paused and resumed, an
# image commit exported identical.
. "$(dirname "$0")/functions.sh"
requires python3 cmp
out=$(COWFORK="$COWFORK" COWFORK_STORE= "$(dirname "$0")/../scripts/demo.sh" 2>&1) || { echo "$out"; fail "scripts/demo.sh failed"; }
echo "$out" | tail -n 5
grep -q '^identical$' <<<"$out" || fail "the committed image did not export identical"
if [ -c /dev/kvm ] && [ -x /bin/busybox ]; then
  grep -q '"children":100,"failed":0' <<<"$out" || fail "the 100-child fork did not report 100 children, 0 failed"
  grep -q 'after pause and resume, x = 41' <<<"$out" || fail "the daemon path did not keep the sandbox's state"
  if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    grep -q '^ *100 \[0.0, 0.0, 0.0, 0.0, 0.0\]$' <<<"$out" || fail "py-numpy: not 100 correct results"
  fi
fi
