#!/usr/bin/env bash
# cowfork disk serve/save options: --tcp with --readonly and --control
# (read-only is advertised and writes get EPERM; saving still works), the
# default export, --cache-dir, and the command line's errors and exit codes.
. "$(dirname "$0")/functions.sh"
requires nbdinfo nbdsh python3 cmp
export PATH="/usr/bin:$PATH"
python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd (nbdsh's module) is not installed"
here=$(cd "$(dirname "$0")" && pwd)
python3 "$here/gen-raw.py" "$TMP/base.raw" 8 3
cowfork image import "$TMP/base.raw" base
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$TMP/cache"
"$COWFORK" disk serve --tcp "127.0.0.1:$port" --readonly --control "$TMP/ctl" --cache-dir "$TMP/cache" \
  --export ro=base:ro-copy 2>"$TMP/serve.log" &
PID=$!
cleanup_fn "kill $PID 2>/dev/null; wait $PID 2>/dev/null"
for i in $(seq 500); do nbdinfo --size "nbd://127.0.0.1:$port/ro" >/dev/null 2>&1 && break; sleep 0.01; done
cat "$TMP/serve.log"
grep -q "serving 1 export on 127.0.0.1:$port" "$TMP/serve.log" || fail "no ready line"
nbdinfo "nbd://127.0.0.1:$port/ro" | grep -q "is_read_only: true" || fail "read-only not advertised"
python3 - "nbd://127.0.0.1:$port/" <<'PY'
import errno, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])   # the default export
assert h.is_read_only() and not h.can_trim() and not h.can_zero()
h.set_strict_mode(0)
for fn, args in ((h.pwrite, (b"x" * 512, 0)), (h.trim, (4096, 0)), (h.zero, (4096, 0))):
    try:
        fn(*args)
        raise AssertionError(f"{fn.__name__} on a read-only export succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, (fn.__name__, e.errnum)
h.flush()
h.shutdown()
print("read-only: ok")
PY
nbdcopy "nbd://127.0.0.1:$port/ro" "$TMP/out.raw"
cmp "$TMP/base.raw" "$TMP/out.raw"
cowfork disk save ro --control "$TMP/ctl" --as ro-now | grep -q "saved export ro as ro-now" || fail "save over --control"
kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
[ $rc -eq 0 ] || fail "exit $rc"
cowfork image export ro-copy "$TMP/ro.raw"
cmp "$TMP/base.raw" "$TMP/ro.raw" || fail "ro-copy differs"
[ -z "$(ls -A "$TMP/cache")" ] || fail "the cache file was left in --cache-dir"

expect() { # expect RC CMD...: the command exits RC with an error on stderr
  local want=$1 rc=0; shift
  out=$("$@" 2>&1 >/dev/null) || rc=$?
  [ $rc -eq "$want" ] || fail "'$*' exited $rc, expected $want: $out"
  [ -n "$out" ] || fail "'$*' printed no error"
}
S=$TMP/s.sock
expect 2 cowfork disk serve --unix "$S"
expect 2 cowfork disk serve --export a=base
expect 2 cowfork disk serve --export a=base --unix "$S" --tcp 127.0.0.1:1
expect 2 cowfork disk serve --export a --unix "$S"
expect 2 cowfork disk serve --export a=base: --unix "$S"
expect 2 cowfork disk serve --export a=base --unix "$S" --bogus
expect 1 cowfork disk serve --export a=nosuch --unix "$S"
expect 1 cowfork disk serve --export a=base:base --unix "$S"
expect 1 cowfork disk serve --export a=base --export a=base --unix "$S"
expect 1 cowfork disk serve --export "a b=base" --unix "$S"
expect 1 cowfork disk serve --export a=base:x --export b=base:x --unix "$S"
expect 2 cowfork disk save
expect 2 cowfork disk save a
expect 1 cowfork disk save a --unix "$TMP/nobody.sock"
[ ! -e "$S" ] || fail "a failed start left its socket"
for c in "disk serve" "disk save"; do
  # shellcheck disable=SC2086
  cowfork $c --help | grep -q "^Usage: cowfork $c" || fail "$c --help"
done
cowfork --help | grep -q "disk serve" || fail "cowfork --help does not list disk serve"
echo "disk options: ok"
