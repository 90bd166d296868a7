#!/usr/bin/env bash
# A template's state file is input from the store: truncated, emptied or
# flipped, it must give one clear error and exit 1, never a crash.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] || skip "/dev/kvm is missing"
[ -x /bin/busybox ] || skip "/bin/busybox (busybox-static) is missing"
cowfork template create sh --mem 64M -- /bin/busybox sh 2>/dev/null || fail "template create"
f="$COWFORK_STORE/templates/sh"
cp "$f" "$TMP/good"
size=$(stat -c %s "$TMP/good")
for how in empty 10 100 $((size - 1)) flip:0 flip:20 flip:50 flip:$((size / 2)) flip:$((size - 1)); do
  cp "$TMP/good" "$f"; chmod u+w "$f"
  case $how in
    empty) : >"$f" ;;
    flip:*) o=${how#flip:}; python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^0x40]))' "$f" "$o" ;;
    *) truncate -s "$how" "$f" ;;
  esac
  rc=0; echo 'echo hi' | cowfork fork sh --input /dev/stdin >"$TMP/out" 2>"$TMP/err" || rc=$?
  [ $rc = 1 ] || fail "state file $how: exit $rc, want 1: $(cat "$TMP/err")"
  [ "$(wc -l <"$TMP/err")" = 1 ] && grep -q "template 'sh'" "$TMP/err" || fail "state file $how: $(cat "$TMP/err")"
  echo "ok   state file $how: $(cut -c1-120 "$TMP/err")"
done
cp "$TMP/good" "$f"
[ "$(echo 'echo hi' | cowfork fork sh --input /dev/stdin)" = hi ] || fail "the good state file no longer forks"
echo "ok   the good state file forks"
