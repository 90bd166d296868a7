#!/usr/bin/env bash
# The jail of the process that runs guests (lib/jail.c, docs/security.md):
# run as root with --root DIR, `cowfork run`, `template create` and `fork`
# move into their own mount namespace whose root holds only DIR, the store,
# a fresh /proc and the VM's device nodes; --user NAME then drops to that
# user. Checked from the host while the sandbox runs: /proc/PID/ns/mnt
# differs from ours, /proc/PID/root shows no host file outside DIR and the
# store, /proc/PID/status shows the user's uid. And a guest cannot name a
# host file outside its root ("..", /proc/1/root, /proc/self/root).
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
[ "$(id -u)" = 0 ] || skip "the mount namespace is made where run as root"
requires setpriv
R=$TMP/root
mkdir -p "$R/bin" "$TMP/outside"
cp /bin/busybox "$R/bin/busybox"
chmod 755 "$R" "$R/bin"
echo "host-secret-$$" >"$TMP/outside/secret"
SECRET="host-secret-$$"
echo "inside-ok" >"$R/inside"
my_ns=$(readlink /proc/self/ns/mnt)

# wait_jailed PID: until PID's mount namespace is not ours (the jail is made
# before the VM starts); prints it.
wait_jailed() {
  local i ns
  for ((i = 0; i < 1500; i++)); do
    ns=$(readlink "/proc/$1/ns/mnt" 2>/dev/null) || fail "cowfork exited: $(cat "$TMP/err")"
    [ "$ns" != "$my_ns" ] && { echo "$ns"; return 0; }
    sleep 0.02
  done
  fail "cowfork ($1) never left the host's mount namespace"
}
# check_view PID WHAT: the process sees its root and the store, nothing else
check_view() {
  local p=/proc/$1/root
  [ -x "$p$R/bin/busybox" ] || fail "$2: the root $R is not visible to it"
  [ -e "$p/dev/kvm" ] || fail "$2: /dev/kvm is not visible to it"
  [ -e "$p/proc/self/maps" ] || fail "$2: it has no /proc"
  for f in "$TMP/outside/secret" /etc/passwd /etc/shadow /root /home /usr/bin "$COWFORK" /var/tmp/x /dev/sda /dev/mem /sys/kernel; do
    [ -e "$p$f" ] && fail "$2: host path $f is visible to the process that runs guests"
  done
  [ -z "$(ls "$p/dev" | grep -vxE 'kvm|userfaultfd|null|zero|random|urandom')" ] ||
    fail "$2: /dev holds more: $(ls "$p/dev")"
  # the root bound read-only (mountinfo: ID PARENT DEV ROOT MOUNTPOINT OPTIONS ...)
  awk -v m="$R" '$5 == m { print $6 }' "/proc/$1/mountinfo" | grep -q '^ro' ||
    fail "$2: the root $R is not bound read-only: $(grep " $R " "/proc/$1/mountinfo")"
  echo "ok   $2: own mount namespace; visible: the root, $(ls "$p/" | tr '\n' ' ')"
}

# cowfork run: a guest that lives long enough to be looked at.
"$COWFORK" run --root "$R" -- /bin/busybox sleep 20 >/dev/null 2>"$TMP/err" &
P=$!
cleanup_fn "kill -9 $P 2>/dev/null"
ns=$(wait_jailed $P)
check_view $P "run"
kill -9 $P 2>/dev/null || true; wait $P 2>/dev/null || true

# The guest: "..", /proc/1/root, /proc/self/root, absolute host paths
# (shell builtins only: a sandbox's processes do not fork).
out=$("$COWFORK" run --root "$R" -- /bin/busybox sh -c "
  r() { while IFS= read -r l; do echo \"\$l\"; done <\"\$1\"; }
  r /../../..$TMP/outside/secret; r ../../../..$TMP/outside/secret
  r /proc/1/root$TMP/outside/secret; r /proc/self/root/../../..$TMP/outside/secret
  cd /; cd ..; cd ..; r .$TMP/outside/secret; echo /proc/*/root/*; r /etc/passwd; r /inside; echo done" 2>&1) || true
[[ $out == *done* && $out == *inside-ok* ]] || fail "the guest did not run (or could not read its own /inside): $out"
[[ $out == *"$SECRET"* ]] && fail "the guest read a host file outside its root: $out"
echo "ok   the guest cannot reach $TMP/outside/secret by '..', /proc/1/root or /proc/self/root"

# --user: needs root, and a user who can open /dev/kvm. nobody (65534) can
# where /dev/kvm is 0666; kvm-vm's own /dev (COWFORK_EMULATED=1, private
# to its VM) is made so.
kvm_ok() { setpriv --reuid=65534 --regid=65534 --clear-groups test -r /dev/kvm -a -w /dev/kvm; }
if ! kvm_ok && [ "${COWFORK_EMULATED:-0}" = 1 ]; then chmod 666 /dev/kvm; fi
# Not root: refused, clearly.
rc=0
setpriv --reuid=65534 --regid=65534 --clear-groups "$COWFORK" run --user nobody -- /bin/busybox true \
  2>"$TMP/err" || rc=$?
[ $rc != 0 ] && grep -q "needs root" "$TMP/err" || fail "--user as non-root: exit $rc: $(cat "$TMP/err")"
echo "ok   --user without root: $(head -n1 "$TMP/err")"
if kvm_ok; then
  "$COWFORK" run --root "$R" --user nobody -- /bin/busybox sleep 20 >/dev/null 2>"$TMP/err" &
  P=$!
  cleanup_fn "kill -9 $P 2>/dev/null"
  wait_jailed $P >/dev/null
  for ((i = 0; i < 500; i++)); do
    uid=$(awk '/^Uid:/ {print $2 "," $3 "," $4 "," $5}' /proc/$P/status)
    [ "$uid" = 65534,65534,65534,65534 ] && break
    sleep 0.02
  done
  [ "$uid" = 65534,65534,65534,65534 ] || fail "--user nobody: uids $uid"
  gid=$(awk '/^Gid:/ {print $2}' /proc/$P/status)
  [ "$gid" = 65534 ] || fail "--user nobody: gid $gid"
  check_view $P "run --user nobody"
  kill -9 $P 2>/dev/null || true; wait $P 2>/dev/null || true
  out=$("$COWFORK" run --root "$R" --user nobody -- /bin/busybox echo hi-as-nobody 2>&1) ||
    fail "run --user nobody: $out"
  [ "$out" = hi-as-nobody ] || fail "run --user nobody: $out"
  echo "ok   run --user nobody: uid and gid 65534 while the sandbox runs; the program ran"
else
  echo "ok   # SKIP --user nobody: nobody cannot open /dev/kvm here (not 0666, not in its group)"
fi
rc=0
"$COWFORK" run --root "$R" --user no-such-user-$$ -- /bin/busybox true 2>"$TMP/err" || rc=$?
[ $rc != 0 ] && grep -q "no such user" "$TMP/err" || fail "--user unknown: exit $rc: $(cat "$TMP/err")"
echo "ok   --user with an unknown user: $(head -n1 "$TMP/err")"

# template create and fork: the store is visible too (the save, the layers).
"$COWFORK" template create sh --root "$R" -- /bin/busybox sh 2>"$TMP/err" || fail "template create: $(cat "$TMP/err")"
printf 'while :; do :; done\n' >"$TMP/in"
"$COWFORK" fork sh -n 1 --input "$TMP/in" >"$TMP/fout" 2>"$TMP/err" &
P=$!
cleanup_fn "kill -9 $P 2>/dev/null"
wait_jailed $P >/dev/null
[ -d "/proc/$P/root$COWFORK_STORE/layers" ] || [ -d "/proc/$P/root$COWFORK_STORE/images" ] ||
  fail "fork: the store is not visible to it: $(ls "/proc/$P/root$COWFORK_STORE" 2>&1)"
check_view $P "fork"
kill -9 $P 2>/dev/null || true; wait $P 2>/dev/null || true
printf 'echo kid-$((40+2))\n' >"$TMP/in"
out=$("$COWFORK" fork sh -n 2 --input "$TMP/in" 2>&1) || fail "fork: $out"
[ "$(grep -c kid-42 <<<"$out")" = 2 ] || fail "fork: $out"
out=$("$COWFORK" fork sh -n 1 --backend uffd --input "$TMP/in" 2>&1) || fail "fork --backend uffd: $out"
grep -q kid-42 <<<"$out" || fail "fork --backend uffd: $out"
"$COWFORK" snapshot sh sh2 --input "$TMP/in" >/dev/null 2>"$TMP/err" || fail "snapshot: $(cat "$TMP/err")"
echo "ok   template create, fork (file and uffd backends) and a branch in the jail"
# --root / (unsafe, documented): the namespace, no new root.
"$COWFORK" run --root / -- /bin/busybox sleep 20 >/dev/null 2>"$TMP/err" &
P=$!
cleanup_fn "kill -9 $P 2>/dev/null"
wait_jailed $P >/dev/null
[ -e "/proc/$P/root/etc/passwd" ] || fail "--root /: the host's / should be its root"
kill -9 $P 2>/dev/null || true; wait $P 2>/dev/null || true
echo "ok   --root /: its own mount namespace, the host's files (unsafe, docs/security.md)"

# daemon_up SOCK ERR: wait for the daemon $P to answer on SOCK, out of the
# host's mount namespace.
daemon_up() {
  for ((i = 0; i < 1500; i++)); do
    curl -s --unix-socket "$1" -o /dev/null http://cowfork/v1/health && break
    kill -0 $P 2>/dev/null || fail "daemon exited: $(cat "$2")"
    sleep 0.02
  done
  [ "$(readlink /proc/$P/ns/mnt)" != "$my_ns" ] || fail "daemon: the host's mount namespace"
}
# The daemon (as root): its own new root showing the store and its roots;
# a root outside them is refused, in a request or a template's.
requires curl
"$COWFORK" root create box --from-dir "$R" >/dev/null 2>"$TMP/err" || fail "root create: $(cat "$TMP/err")"
"$COWFORK" template create hostsh --root / --mem 64M -- /bin/busybox sh 2>"$TMP/err" ||
  fail "template create --root /: $(cat "$TMP/err")"
"$COWFORK" daemon --socket "$TMP/d.sock" -q 2>"$TMP/derr0" &
P=$!
cleanup_fn "kill -9 $P 2>/dev/null"
daemon_up "$TMP/d.sock" "$TMP/derr0"
[ -e "/proc/$P/root/etc/passwd" ] && fail "daemon: the host's /etc is visible to it"
[ -x "/proc/$P/root$COWFORK_STORE/roots/box/root/bin/busybox" ] || fail "daemon: its roots are not visible to it"
dapi() { curl -s --unix-socket "$TMP/d.sock" -X POST -H 'Content-Type: application/json' -w ' %{http_code}' \
  --data-binary "$2" "http://cowfork$1"; }
out=$(dapi /v1/templates '{"name":"h2","program":"/bin/busybox","args":["sh"],"root":"/"}')
[[ $out == *" 400" && $out == *"own mount namespace"* ]] || fail "daemon: a template with root / was not refused: $out"
out=$(dapi /v1/sandboxes '{"template":"hostsh"}')
[[ $out == *" 409" ]] || fail "daemon: a sandbox of a template in root / was not refused: $out"
out=$(dapi /v1/templates '{"name":"b2","program":"/bin/busybox","args":["sh"],"root":"box","mem":"64M"}')
[[ $out == *" 20"[01] ]] || fail "daemon: template create in root box: $out $(cat "$TMP/derr0")"
id=$(dapi /v1/sandboxes '{"template":"b2"}' | grep -o 'sb-[0-9a-f]*' | head -n1)
[ -n "$id" ] || fail "daemon: create in root box failed: $(cat "$TMP/derr0")"
out=$(dapi "/v1/sandboxes/$id/exec" '{"input":"echo kid-$((40+2)); read l </inside; echo $l\n"}')
[[ $out == *kid-42* && $out == *inside-ok* ]] || fail "daemon: exec in root box: $out $(cat "$TMP/derr0")"
kill $P; wait $P 2>/dev/null || true
echo "ok   daemon: own new root (no host /etc; its roots visible); root / refused (400, 409); a sandbox in root box ran"

# --user nobody with a store that is nobody's.
if kvm_ok; then
  chmod 711 "$TMP"
  S2=$TMP/store-nobody
  mkdir -p "$TMP/dn"
  COWFORK_STORE=$S2 "$COWFORK" root create box --from-dir "$R" >/dev/null 2>"$TMP/err" ||
    fail "root create: $(cat "$TMP/err")"
  ln -s box "$S2/roots/default" # the daemon's default root: built at start when missing (slow under emulation)
  COWFORK_STORE=$S2 "$COWFORK" template create sh --root box --mem 64M -- /bin/busybox sh 2>"$TMP/err" ||
    fail "template create: $(cat "$TMP/err")"
  chown -R 65534:65534 "$S2" "$TMP/dn"
  COWFORK_STORE=$S2 "$COWFORK" daemon --socket "$TMP/dn/sock" --user nobody -q 2>"$TMP/derr" &
  P=$!
  cleanup_fn "kill -9 $P 2>/dev/null"
  daemon_up "$TMP/dn/sock" "$TMP/derr"
  uid=$(awk '/^Uid:/ {print $2 "," $3 "," $4 "," $5}' /proc/$P/status)
  [ "$uid" = 65534,65534,65534,65534 ] || fail "daemon --user nobody: uids $uid"
  id=$(curl -s --unix-socket "$TMP/dn/sock" -X POST -H 'Content-Type: application/json' \
    --data-binary '{"template":"sh"}' http://cowfork/v1/sandboxes | grep -o 'sb-[0-9a-f]*' | head -n1)
  [ -n "$id" ] || fail "daemon --user nobody: create failed: $(cat "$TMP/derr")"
  out=$(curl -s --unix-socket "$TMP/dn/sock" -X POST -H 'Content-Type: application/json' \
    --data-binary '{"input":"echo kid-$((40+2))\n"}' "http://cowfork/v1/sandboxes/$id/exec")
  [[ $out == *kid-42* ]] || fail "daemon --user nobody: exec: $out $(cat "$TMP/derr")"
  kill $P; wait $P 2>/dev/null || true
  echo "ok   daemon --user nobody: own mount namespace, uid 65534, a sandbox created and run"
else
  echo "ok   # SKIP daemon --user nobody: nobody cannot open /dev/kvm here"
fi
