#!/usr/bin/env bash
# A sandbox sees its own /proc, /dev, environment and hostname, never the
# host's (issue 12, item 2), with the default root (the host's /): busybox
# and python3 in a sandbox try what an attacker tried, and what a program
# needs from /proc works.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
BB=/bin/busybox
n=0
check() { # NAME EXPECTED ACTUAL
  n=$((n + 1))
  [ "$2" = "$3" ] || fail "$1: expected [$2], got [$3]"
  echo "ok $n - $1"
}
run() { cowfork run --timeout 60 "$@" 2>&1; }

# Nothing of the host: other processes (pid 1, this shell, the cowfork
# process itself), the kernel log, a path through /proc/1/root. The
# sandbox's /proc/1 is its own init's (docs/sandbox.md), whose environ,
# cmdline and maps are empty.
for p in /proc/1/root/etc/shadow /proc/self/mem /dev/kmsg /dev/mem; do
  cowfork run -- $BB cat "$p" >/dev/null 2>&1 && fail "the guest read $p"
  echo "ok - cannot read $p"
done
check "the sandbox's /proc/1 (its init): empty environ, cmdline and maps, comm init" "0 0 0 init" \
  "$(run $BB sh -c 'for f in environ cmdline maps; do printf "%s " $(wc -c < /proc/1/$f); done; cat /proc/1/comm')"
# The cowfork process's own pid, as the guest could learn it (not at all:
# its pid is 2); it tries every pid the host has now (but 1 and 2: the
# sandbox's own).
pids=$(ls /proc | grep -E '^[0-9]+$' | grep -vx -e 1 -e 2 | tr '\n' ' ')
check "no host pid's maps or mem" "" \
  "$(run $BB sh -c "for p in $pids; do for f in maps mem environ; do { :; } 2>/dev/null </proc/\$p/\$f && echo LEAK \$p/\$f; done; done")"
check "ls /proc: the sandbox's entries only" "1 2 cpuinfo loadavg meminfo mounts self stat sys thread-self uptime" \
  "$(run $BB ls -1 /proc | tr '\n' ' ' | sed 's/ *$//')"
check "ls /dev: the sandbox's entries only" "fd full null random shm stderr stdin stdout tty urandom zero" \
  "$(run $BB ls -1 /dev | tr '\n' ' ' | sed 's/ *$//')"

# The process's own files.
st=$(run $BB cat /proc/self/status)
check "status Pid" "2" "$(echo "$st" | $BB awk '/^Pid:/{print $2}')"
check "status PPid" "1" "$(echo "$st" | $BB awk '/^PPid:/{print $2}')"
check "status Uid" "$(id -u)" "$(echo "$st" | $BB awk '/^Uid:/{print $2}')"
maps=$(run $BB cat /proc/self/maps)
echo "$maps" | grep -q '\[stack\]$' || fail "maps has no [stack]: $maps"
echo "$maps" | grep -qE '^[0-9a-f]+-[0-9a-f]+ r-xp ' || fail "maps has no r-x mapping (busybox's text): $maps"
echo "ok - /proc/self/maps lists the program's own mappings ($(echo "$maps" | wc -l) lines)"
check "cmdline" "busybox cat /proc/self/cmdline " "$(run $BB cat /proc/self/cmdline | tr '\0' ' ' | sed 's|^/bin/||')"
check "cat /dev/stdin" "piped" "$(echo piped | cowfork run -- $BB cat /dev/stdin)"

# The environment: the caller's SECRETVAR is not there, --env is.
env_out=$(SECRETVAR=hunter2 K2=passed run --env FOO=bar --env K2 -- $BB env)
echo "$env_out" | grep -q SECRETVAR && fail "SECRETVAR leaked into the sandbox: $env_out"
echo "ok - the caller's SECRETVAR is not in the guest's env"
echo "$env_out" | grep -qx 'FOO=bar' || fail "--env FOO=bar missing: $env_out"
echo "$env_out" | grep -qx 'K2=passed' || fail "--env K2 missing: $env_out"
echo "$env_out" | grep -qx 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' || fail "PATH: $env_out"
echo "$env_out" | grep -qx 'LANG=C.UTF-8' || fail "LANG: $env_out"
echo "ok - --env K=V and --env K, the default PATH and LANG"
env_env=$(SECRETVAR=hunter2 run $BB cat /proc/self/environ | tr '\0' '\n')
echo "$env_env" | grep -q SECRETVAR && fail "SECRETVAR in /proc/self/environ"
echo "$env_env" | grep -qx 'LANG=C.UTF-8' || fail "/proc/self/environ: $env_env"
echo "ok - /proc/self/environ is what the program was started with"

# Hostname.
check "uname -n (default)" "cowfork" "$(run $BB uname -n)"
check "uname -n --hostname" "box-1" "$(run --hostname box-1 -- $BB uname -n)"
check "/proc/sys/kernel/hostname" "box-1" "$(run --hostname box-1 -- $BB cat /proc/sys/kernel/hostname)"

# A template's children keep its environment and hostname, with their own /proc.
SECRETVAR=hunter2 cowfork template create idt --mem 64M --hostname tmpl-host --env TV=1 -- $BB sh \
  2>"$TMP/create.err" || fail "template create: $(cat "$TMP/create.err")"
printf 'read -r h < /proc/sys/kernel/hostname; echo "$h S=$SECRETVAR TV=$TV"\n' >"$TMP/in"
out=$(cowfork fork idt -n 2 --input "$TMP/in" 2>&1)
check "fork: children keep the template's hostname and env" \
  "tmpl-host S= TV=1 tmpl-host S= TV=1" "$(echo "$out" | tr '\n' ' ' | sed 's/ *$//')"

# Python: what its standard library reads from /proc.
if [ -x /usr/bin/python3 ]; then
  py=$(run --hostname pyhost -- /usr/bin/python3 -c '
import os, platform
u = open("/proc/sys/kernel/random/uuid").read().strip()
print(os.cpu_count() >= 1, len(os.getloadavg()), platform.node(), len(u), u != open("/proc/sys/kernel/random/uuid").read().strip())
print(sorted(os.listdir("/proc/self/fd"))[:3], os.readlink("/proc/self/exe"))
')
  check "python: cpu_count, getloadavg, platform.node, uuid" "True 3 pyhost 36 True
['0', '1', '2'] PY" "$(echo "$py" | sed "s|/usr/bin/python3[.0-9]*$|PY|")"
else
  echo "# python3 missing: the Python checks are not made"
fi
echo "1..$n"
