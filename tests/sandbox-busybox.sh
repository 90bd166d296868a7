#!/usr/bin/env bash
# Debian's static busybox in a cowfork sandbox against the same busybox run
# natively: each command of the table runs both ways, from /, and stdout,
# stderr and the exit status must be byte-identical (pipelines, command
# substitution and background jobs included: the sandbox's processes).
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
BB=/bin/busybox
D=$(cd "$(dirname "$0")/sandbox" && pwd)
W=$TMP/w
mkdir -p "$W/tree/sub/deeper"
cp "$D/words.txt" "$W/tree/a.txt"
printf 'int main(void){return 0;}\n' > "$W/tree/sub/m.c"
printf 'x\n' > "$W/tree/sub/deeper/x.c"
ln -s ../a.txt "$W/tree/sub/link"
touch -d '2024-01-02 03:04:05' "$W/tree" "$W/tree"/* "$W/tree/sub"/* "$W/tree/sub/deeper"/*
(cd "$W" && $BB tar -cf "$W/t.tar" tree && $BB tar -cf "$W/t2.tar" tree/a.txt tree/sub/m.c tree/sub/deeper)

# Files the shell commands write: in the sandbox they land in its in-memory
# /tmp, natively in the host's, removed at exit.
F=/tmp/cowfork-sandbox-test.$$
cleanup_fn "rm -f $F.*"

# One command per line: busybox arguments, evaluated by bash in both runs.
cmds=(
  "echo hello world"
  "printf '%s-%d\n' a 1 b 2"
  "cat $D/words.txt"
  "cat < $D/words.txt"
  "wc $D/words.txt"
  "wc -l $D/words.txt $D/nums.txt"
  "head -n 3 $D/words.txt"
  "tail -n 2 $D/words.txt"
  "tail -c 20 $D/words.txt"
  "tr a-z A-Z < $D/words.txt"
  "cut -d' ' -f2,3 $D/words.txt"
  "sort $D/words.txt"
  "sort -n -r $D/nums.txt"
  "uniq -c $D/words.txt"
  "sed 's/o/0/g; 2d' $D/words.txt"
  "awk '{n += NF} END {print n, NR}' $D/words.txt"
  "awk -F' ' '\$1 == \"the\" {print \$NF}' $D/words.txt"
  "grep -n quick $D/words.txt"
  "grep -c zzz $D/words.txt"
  "grep -v -i THE $D/words.txt"
  "md5sum $D/words.txt $D/nums.txt"
  "sha256sum $D/words.txt"
  "sha1sum $D/nums.txt"
  "base64 $D/words.txt"
  "od -c $D/nums.txt"
  "ls $W/tree"
  "ls -l $W/tree/sub"
  "ls -R $W/tree"
  "find $W/tree -type f"
  "find $W/tree -name '*.c'"
  "tar -tvf $W/t.tar"
  "tar -xOf $W/t.tar tree/a.txt"
  "stat -c '%s %a %F %n' $D/words.txt $W/tree/sub"
  "readlink $W/tree/sub/link"
  "expr 3 + 4 '*' 5"
  "seq 3 2 11"
  "basename /a/b/c.txt .txt"
  "dirname /a/b/c.txt"
  "cmp $D/words.txt $D/nums.txt"
  "diff $D/words.txt $W/tree/a.txt"
  "false"
  "true"
  "cat /nonexistent"
  "sh -c 'echo a; echo b'"
  "sh -c 'x=5; echo \$((x * 3))'"
  "sh -c 'for i in 1 2 3; do echo \$i; done; exit 3'"
  "sh -c 'test -f /etc/hostname && echo yes || echo no'"
  "sh -c 'cd /etc && pwd'"
  "sh -c 'echo hi > $F.1; read x < $F.1; echo got \$x'"
  "sh -c 'printf \"%05d\\n\" 42'"
  "sh -c 'echo one > $F.2; echo two >> $F.2; busybox cat $F.2'"
  "sh -c 'cd $W && exec busybox tar -cf - tree' | md5sum"
  "sh -c 'busybox sort -r $D/words.txt'"
  # processes (issue 14): pipelines, $( ), background jobs, exit statuses, find -exec, xargs
  "sh -c 'echo a | $BB wc -c'"
  "sh -c '$BB seq 1 500 | $BB sort -rn | $BB head -n 3 | $BB tr 0-9 a-j | $BB cat -n'"
  "sh -c 'x=\$($BB echo hi; $BB echo there); echo \"[\$x]\"'"
  "sh -c '$BB sleep 0.1 & $BB true & wait; echo waited \$?'"
  "sh -c '$BB false; echo \$?; (exit 4); echo \$?; $BB sh -c \"kill -TERM \\\$\\\$\"; echo \$?'"
  "sh -c '$BB find $D -name words.txt -exec $BB wc -l {} +'"
  "sh -c 'echo $D/words.txt $D/nums.txt | $BB xargs -n1 $BB wc -l'"
)
pass=0 failn=0 failed=()
for c in "${cmds[@]}"; do
  n_rc=0; s_rc=0
  (cd / && eval "$BB $c") >"$TMP/n.out" 2>"$TMP/n.err" </dev/null || n_rc=$?
  (cd / && eval "\"\$COWFORK\" run --root / --timeout 20 -- $BB $c") >"$TMP/s.out" 2>"$TMP/s.err" </dev/null || s_rc=$?
  if [ $n_rc = $s_rc ] && cmp -s "$TMP/n.out" "$TMP/s.out" && cmp -s "$TMP/n.err" "$TMP/s.err"; then
    pass=$((pass + 1)); echo "ok   busybox $c"
  else
    failn=$((failn + 1)); failed+=("$c")
    echo "FAIL busybox $c (native exit $n_rc, sandbox exit $s_rc)"
    diff <(cat "$TMP/n.out" "$TMP/n.err") <(cat "$TMP/s.out" "$TMP/s.err") | head -n 10 | sed "s/^/     /" || true
  fi
done
echo "$pass of ${#cmds[@]} commands identical"

# tar extracting into the sandbox's /tmp lists the same members as natively
# (t2.tar: the in-memory /tmp has no symlinks yet).
mkdir "$TMP/x"
(cd / && $BB tar -xvf "$W/t2.tar" -C "$TMP/x") >"$TMP/n.out" 2>&1
"$COWFORK" run --root / -- $BB tar -xvf "$W/t2.tar" -C /tmp >"$TMP/s.out" 2>&1 || fail "tar -x in the sandbox failed: $(cat "$TMP/s.out")"
cmp "$TMP/n.out" "$TMP/s.out" || fail "tar -xv output differs"
echo "ok   tar -xvf into the sandbox's /tmp"

# /proc/PID of another process of the sandbox: a background child's
# cmdline, its PPid, its place in the /proc listing, as natively.
cat > "$TMP/proc.sh" <<'PROCSH'
/bin/busybox sleep 3 &
p=$!
/bin/busybox sleep 1 # (its exec done)
c=$(/bin/busybox tr '\0' ' ' < /proc/$p/cmdline)
[ "$c" = "/bin/busybox sleep 3 " ] && echo "cmdline ok" || echo "cmdline: [$c]"
pp=$(/bin/busybox awk '/^PPid:/ { print $2 }' /proc/$p/status)
[ "$pp" = "$$" ] && echo "ppid ok" || echo "ppid: $pp, not $$"
/bin/busybox ls /proc | /bin/busybox grep -qx "$p" && echo "listed" || echo "not listed"
[ "$(/bin/busybox cut -d' ' -f4 /proc/$p/stat)" = "$$" ] && echo "stat ppid ok" || echo "stat: $(/bin/busybox cat /proc/$p/stat)"
wait
PROCSH
(cd / && $BB sh "$TMP/proc.sh") >"$TMP/n.out" 2>&1
"$COWFORK" run --root / -- $BB sh "$TMP/proc.sh" >"$TMP/s.out" 2>&1 || fail "/proc of a child: $(cat "$TMP/s.out")"
cmp "$TMP/n.out" "$TMP/s.out" || fail "/proc of a child: native $(cat "$TMP/n.out"), sandbox $(cat "$TMP/s.out")"
echo "ok   /proc/PID of a child process: $(tr '\n' ' ' < "$TMP/s.out")"
# A dynamic executable runs through execve (its interpreter from the root);
# one that cannot be loaded is refused before the point of no return.
rc=0
"$COWFORK" run --root / -- $BB sh -c 'exec /usr/bin/env A=1 /usr/bin/env' >"$TMP/d.out" 2>&1 || rc=$?
[ $rc -eq 0 ] && grep -qx "A=1" "$TMP/d.out" || fail "dynamic exec: $(cat "$TMP/d.out")"
echo "ok   exec of a dynamic executable (Debian's env) from busybox sh"
rc=0
"$COWFORK" run --root / -- $BB sh -c "exec $D/words.txt" >"$TMP/d.out" 2>&1 || rc=$?
[ $rc -ne 0 ] && ! grep -q "killed" "$TMP/d.out" || fail "exec of a non-executable: $(cat "$TMP/d.out")"
echo "ok   exec of a file that is not an executable fails cleanly (exit $rc)"
[ $failn -eq 0 ] || fail "$failn commands differ"
