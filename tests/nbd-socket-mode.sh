#!/usr/bin/env bash
# The Unix data socket's permissions do not follow the umask: under umask 000
# `disk serve --unix` makes it 0600 (only this user connects) and the control
# socket 0600; --socket-mode MODE gives exactly MODE. As root, another user
# (nobody, through setpriv) is refused by 0600 and admitted by 0666.
. "$(dirname "$0")/functions.sh"
requires nbdinfo python3 stat
export PATH="/usr/bin:$PATH"
here=$(cd "$(dirname "$0")" && pwd)
python3 "$here/gen-raw.py" "$TMP/base.raw" 4 3
cowfork image import "$TMP/base.raw" base
chmod 755 "$TMP"
other=
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  other="setpriv --reuid=$(id -u nobody) --regid=$(id -g nobody) --clear-groups"
fi

serve() { # serve SOCKET [ARGS...]: start a server under umask 000, wait for SOCKET
  local sock=$1; shift
  start_server PID "$sock" bash -c 'umask 000; exec "$@"' sh \
    "$COWFORK" disk serve --export d=base --unix "$sock" --quiet "$@"
}
mode() { stat -c %a "$1"; }
stop() { kill -TERM "$PID"; wait "$PID" || fail "server exited $?"; }

S=$TMP/a.sock
serve "$S"
[ "$(mode "$S")" = 600 ] || fail "data socket is $(mode "$S") under umask 000, expected 600"
[ "$(mode "$S.ctl")" = 600 ] || fail "control socket is $(mode "$S.ctl"), expected 600"
nbdinfo --size "nbd+unix:///d?socket=$S" >/dev/null || fail "the owner cannot connect"
if [ -n "$other" ]; then
  $other nbdinfo --size "nbd+unix:///d?socket=$S" >/dev/null 2>&1 && fail "another user connected to a 0600 socket"
fi
stop

S=$TMP/b.sock
serve "$S" --socket-mode 0666
[ "$(mode "$S")" = 666 ] || fail "--socket-mode 0666 gave $(mode "$S")"
[ "$(mode "$S.ctl")" = 600 ] || fail "control socket is $(mode "$S.ctl") with --socket-mode, expected 600"
if [ -n "$other" ]; then
  $other nbdinfo --size "nbd+unix:///d?socket=$S" >/dev/null || fail "another user cannot connect to a 0666 socket"
fi
stop

S=$TMP/c.sock
serve "$S" --socket-mode 640
[ "$(mode "$S")" = 640 ] || fail "--socket-mode 640 gave $(mode "$S")"
stop

expect_usage() {
  local rc=0 out
  out=$("$COWFORK" disk serve --export d=base "$@" 2>&1 >/dev/null) || rc=$?
  [ $rc -eq 2 ] || fail "'$*' exited $rc, expected 2: $out"
}
expect_usage --unix "$TMP/x.sock" --socket-mode 0
expect_usage --unix "$TMP/x.sock" --socket-mode 1777
expect_usage --unix "$TMP/x.sock" --socket-mode 8
expect_usage --unix "$TMP/x.sock" --socket-mode rw
expect_usage --unix "$TMP/x.sock" --socket-mode ""
expect_usage --tcp 127.0.0.1:1 --socket-mode 0600
[ -n "$other" ] || echo "note: not root (or no setpriv/nobody): other-user checks not run"
echo "socket modes: ok"
