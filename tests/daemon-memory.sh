#!/usr/bin/env bash
# The daemon gives memory back after sandboxes are deleted (issue 11, item
# 13: Pss ~39 MB after 500 busybox sandboxes created and deleted, ~78 KiB
# each). Pss of the daemon (/proc/PID/smaps_rollup) after N sandboxes
# created, exec'd once and deleted must stay within 16 KiB a sandbox (+ 2
# MiB, see the bound below) of its Pss after the first 20. N is 500, or 100 under emulation
# (COWFORK_EMULATED, set by scripts/kvm-vm.sh), where 500 take too long.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/daemon/api.sh"

[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
# --- 3. memory given back after sandboxes are deleted ----------------------------------
cowfork template create sh --mem 64M -- /bin/busybox sh 2>/dev/null || fail "template create"
up "$TMP/log3" -q
pss() { awk '/^Pss:/ { print $2 }' "/proc/$DPID/smaps_rollup"; }
round() { # round N: create N sandboxes, exec each once, delete them
  local ids id
  ids=$(jget "$(api POST /v1/sandboxes "{\"template\":\"sh\",\"count\":$1}")" '" ".join(j["ids"])')
  for id in $ids; do api POST /v1/sandboxes/$id/exec '{"input":"v=a; i=0; while [ $i -lt 16 ]; do v=$v$v; i=$((i+1)); done; echo ${#v}\n"}' >/dev/null; done
  for id in $ids; do api DELETE /v1/sandboxes/$id >/dev/null; done
}
trims() { api GET /v1/metrics | awk '/^cowfork_malloc_trims_total/ { print $2 }'; }
settled() { # settled T: wait (30 s at most) until the daemon trimmed after the count was T
  # and the count has stopped moving for 0.5 s: the trim after the last
  # DELETE runs once its answer is sent, an earlier one already counts
  local i n last=-1 same=0
  for ((i = 0; i < 300; i++)); do
    n=$(trims)
    if [ "$n" -gt "$1" ] 2>/dev/null; then
      [ "$n" = "$last" ] && same=$((same + 1)) || same=0
      [ $same -ge 5 ] && return 0
    fi
    last=$n
    sleep 0.1
  done
}
# The daemon has transparent huge pages off (daemon.c cf_daemon_run): with
# THP "always", khugepaged turned the first 2 MiB of a worker's malloc arena
# (~100 KiB in use after the trim) into one huge page at any time, +1.9 MiB
# an arena; CI saw +6.1 MiB after 100 sandboxes (nested KVM, a loaded host).
thp=$(awk '/^THP_enabled:/ { print $2 }' "/proc/$DPID/status")
[ "${thp:-0}" = 0 ] || fail "the daemon may get transparent huge pages (THP_enabled: $thp in /proc/$DPID/status)"
echo "ok   the daemon has transparent huge pages off (THP_enabled: ${thp:-n/a})"
t=$(trims)
round 20
settled "$t"
p0=$(pss)
N=${DAEMON_MEMORY_N:-$([ -n "${COWFORK_EMULATED:-}" ] && echo 100 || echo 500)}
for ((k = 0; k < N; k += 50)); do
  t=$(trims)
  round 50
done
settled "$t"
p1=$(pss)
echo "Pss after 20 sandboxes: $p0 kB; after $N more created, exec'd and deleted: $p1 kB"
# The bound: 16 KiB a sandbox plus 2 MiB for the allocator's steps. Pss
# does not grow smoothly: in one run under emulation it stayed within
# 9470-9791 kB from 50 to 250 sandboxes, then stepped to 10999 kB at 300
# (a malloc arena of a worker thread growing), and at N=100 one such step
# alone exceeded 16 KiB x 100. Not a step of that kind: a huge page in an
# arena (+1.9 MiB each; THP is off in the daemon, checked above). The leak
# this guards against (issue 11: ~78 KiB a sandbox) still exceeds it several
# times over at N=100 (7.8 MB; a deliberate 78 KiB leak a delete failed with
# +7988 kB, fixed daemon, scripts/kvm-vm.sh).
bound=$((N * 16 + 2048))
[ $((p1 - p0)) -lt $bound ] || fail "the daemon kept $((p1 - p0)) kB after $N sandboxes were deleted (bound $bound kB)"
echo "ok   memory is given back after deletes (+$((p1 - p0)) kB over $N sandboxes; AnonHugePages $(awk '/^AnonHugePages:/ { print $2 }' "/proc/$DPID/smaps_rollup") kB)"
