#!/usr/bin/env bash
# Debian's dynamically linked programs (coreutils, not busybox) in a sandbox
# against the same programs run natively: the ELF loader maps the program and
# its interpreter (ld-linux-x86-64.so.2 from the root), ld.so maps libc
# through the shim's copy-on-write file mmap. stdout, stderr and the exit
# status must be byte-identical; -v must show pages mapped, none copied.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
for p in /bin/echo /bin/cat /usr/bin/env /usr/bin/sha256sum /bin/ls /usr/bin/head /usr/bin/sort /usr/bin/wc; do
  [ -x $p ] || skip "$p missing (coreutils)"
done
file_is_dynamic() { head -c 4096 "$1" | grep -q 'ld-linux-x86-64'; }
file_is_dynamic /bin/cat || skip "/bin/cat is not dynamically linked"
D=$(cd "$(dirname "$0")/sandbox" && pwd)
W=$TMP/w
mkdir -p "$W/dir/sub"
printf 'b\na\nc\n' > "$W/dir/f1"
cp "$D/words.txt" "$W/dir/sub/words"
touch -d '2024-01-02 03:04:05' "$W/dir" "$W/dir"/* "$W/dir/sub"/*

cmds=(
  "/bin/echo hello dynamic world"
  "/bin/echo -e 'a\tb\\nc'"
  "/bin/cat $D/words.txt"
  "/bin/cat /nonexistent"
  "/usr/bin/sha256sum $D/words.txt $D/nums.txt"
  "/usr/bin/env -i A=1 B=two /usr/bin/env"
  "/usr/bin/head -n 3 $D/words.txt"
  "/usr/bin/sort -r $W/dir/f1"
  "/usr/bin/wc -l -c $D/words.txt"
  "/bin/ls $W/dir"
  "/bin/ls -la --time-style=+%F $W/dir/sub"
  "/bin/ls -R $W/dir"
  "/bin/ls /nonexistent"
)
bad=0
for c in "${cmds[@]}"; do
  nrc=0 src=0
  (cd / && eval "$c") > "$TMP/n.out" 2> "$TMP/n.err" || nrc=$?
  (cd / && eval "cowfork run --root / -- $c") > "$TMP/s.out" 2> "$TMP/s.err" || src=$?
  if cmp -s "$TMP/n.out" "$TMP/s.out" && cmp -s "$TMP/n.err" "$TMP/s.err" && [ $nrc = $src ]; then
    echo "ok   $c"
  else
    bad=$((bad + 1))
    echo "DIFF $c (status native $nrc, sandbox $src)"
    diff "$TMP/n.out" "$TMP/s.out" | head -5
    diff "$TMP/n.err" "$TMP/s.err" | head -5
  fi
done
[ $bad -eq 0 ] || fail "$bad of ${#cmds[@]} dynamic programs differ from the native run"

# The loader and ld.so map, they do not copy.
cowfork run --root / -v -- /bin/echo x 2> "$TMP/v.err" > /dev/null
grep -q 'file pages: [1-9][0-9]* mapped copy-on-write, 0 copied' "$TMP/v.err" || fail "-v: $(cat "$TMP/v.err")"
echo "ok   $(grep -o 'file pages:.*' "$TMP/v.err")"

# A library in the sandbox's own /tmp has no host backing: copied, still works.
# (Python copies libc into /tmp, then execs /bin/echo with LD_LIBRARY_PATH=/tmp.)
if [ -x /usr/bin/python3 ]; then
  lib=$(ldd /bin/echo | awk '/libc.so.6/ {print $3}')
  cowfork run --root / -v -- /usr/bin/python3 -c "import shutil, os; shutil.copy('$lib', '/tmp/libc.so.6');
os.execve('/bin/echo', ['echo', 'from-tmp-libc'], {'LD_LIBRARY_PATH': '/tmp'})" \
    > "$TMP/t.out" 2> "$TMP/t.err" || fail "libc from /tmp: $(cat "$TMP/t.err")"
  [ "$(cat "$TMP/t.out")" = from-tmp-libc ] || fail "libc from /tmp printed: $(cat "$TMP/t.out")"
  grep -q 'file pages: [1-9][0-9]* mapped copy-on-write, [1-9][0-9]* copied' "$TMP/t.err" || fail "-v: $(cat "$TMP/t.err")"
  echo "ok   libc in the sandbox's /tmp is copied: $(grep -o 'file pages:.*' "$TMP/t.err")"
fi

# A dynamic program exec'ed from a static one, and a missing interpreter.
if [ -x /bin/busybox ]; then
  [ "$(cowfork run --root / -- /bin/busybox sh -c 'exec /bin/echo via-exec')" = via-exec ] || fail "execve of a dynamic program"
  echo "ok   execve of a dynamic program from busybox sh"
fi
mkdir -p "$W/root/bin"
cp /bin/echo "$W/root/bin/echo"
! cowfork run --root "$W/root" -- /bin/echo x 2> "$TMP/m.err" || fail "ran without its interpreter"
grep -q 'interpreter' "$TMP/m.err" || fail "missing interpreter: $(cat "$TMP/m.err")"
echo "ok   a root without ld.so: $(head -c 150 "$TMP/m.err")"
