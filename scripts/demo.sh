#!/usr/bin/env bash
# The main job: make a template sandbox (busybox sh paused at its first read
# of stdin), fork 100 children from it, and show the figures; the same for
# Python with numpy preloaded (forkd's workload); the same
# template as a live sandbox through the daemon (exec, pause, resume); then the same
# copy-on-write on a disk image: store a 256 MiB raw disk (half zero), commit
# a 1 % change as a child and show what each stores. Runs in a private store
# under a temp directory unless COWFORK_STORE is set. The sandbox part needs
# /dev/kvm and busybox-static and is skipped, saying so, without them.
set -euo pipefail
cd "$(dirname "$0")/.."
COWFORK=${COWFORK:-$PWD/build/cowfork}
W=$(mktemp -d /tmp/cowfork-demo.XXXXXX)
trap 'rm -rf "$W"' EXIT
export COWFORK_STORE=${COWFORK_STORE:-$W/store}
if [ -c /dev/kvm ] && [ -x /bin/busybox ]; then
  echo "== cowfork template create sh --mem 64M -- /bin/busybox sh"
  "$COWFORK" template create sh --mem 64M -- /bin/busybox sh
  printf 'echo "hello from a child, \$RANDOM=$RANDOM"\n' >"$W/req"
  echo "== cowfork fork sh -n 3 --input req"
  "$COWFORK" fork sh -n 3 --input "$W/req"
  echo "== cowfork fork sh -n 100 --input req --json (summary line)"
  "$COWFORK" fork sh -n 100 --input "$W/req" --json | tail -n 1
  "$COWFORK" image info sh.mem | grep -E 'size|stored|empty'
  if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    echo "== Python with numpy: cowfork template create py-numpy --mem 256M -- /usr/bin/python3 /usr/lib/cowfork/driver.py --preload numpy"
    "$COWFORK" template create py-numpy --mem 256M -- /usr/bin/python3 /usr/lib/cowfork/driver.py --preload numpy
    printf 'print(numpy.zeros(5).tolist())\n' >"$W/code.py"
    echo "== cowfork fork py-numpy -n 100 --input code.py (the 100 results, counted)"
    "$COWFORK" fork py-numpy -n 100 --input "$W/code.py" | sort | uniq -c
    "$COWFORK" fork py-numpy -n 100 --input "$W/code.py" --json | tail -n 1
  fi
  echo "== the daemon path: cowfork daemon, then a live sandbox through the API"
  export COWFORK_SOCKET="$W/cowfork.sock"
  "$COWFORK" daemon -q &
  dpid=$!
  trap 'kill $dpid 2>/dev/null || true; wait $dpid 2>/dev/null || true; rm -rf "$W"' EXIT
  for _ in $(seq 100); do [ -S "$COWFORK_SOCKET" ] && break; sleep 0.05; done
  id=$("$COWFORK" sandbox create sh)
  echo "sandbox $id"
  "$COWFORK" sandbox exec "$id" 'x=41; echo "x+1 = $((x + 1))"'
  "$COWFORK" sandbox pause "$id"
  "$COWFORK" sandbox resume "$id"
  "$COWFORK" sandbox exec "$id" 'echo "after pause and resume, x = $x"'
  "$COWFORK" sandbox rm "$id"
  kill "$dpid"
  wait "$dpid" || true
else
  echo "== skipping the sandbox part: needs /dev/kvm and /bin/busybox (busybox-static)"
fi
echo "== a 256 MiB raw disk, about half of its 4 KiB blocks zero"
python3 tests/gen-raw.py "$W/disk.raw" 256
echo "== cowfork image import disk.raw template"
"$COWFORK" image import "$W/disk.raw" template
"$COWFORK" image info template
echo "== change 1 % of the blocks, then: cowfork image commit template disk.raw child"
python3 - "$W/disk.raw" <<'PY'
import os, random, sys
r = random.Random(1)
with open(sys.argv[1], "r+b") as f:
    for blk in r.sample(range(65536), 655):
        f.seek(blk * 4096)
        f.write(os.urandom(4096))
PY
"$COWFORK" image commit template "$W/disk.raw" child
"$COWFORK" image info child
echo "== cowfork image export child out.raw; cmp with the changed disk"
"$COWFORK" image export child "$W/out.raw"
cmp "$W/disk.raw" "$W/out.raw" && echo "identical"
"$COWFORK" image verify child
"$COWFORK" image ls
