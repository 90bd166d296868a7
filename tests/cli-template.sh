#!/usr/bin/env bash
# cowfork template ls|rm, image rm of a template's image, and a taken name
# refused before anything runs (issue 11, item 10). Templates are fabricated
# by tests/mk-template.py (no /dev/kvm needed); a daemon is started on the
# store (it serves templates without KVM) to check that `template rm` asks it.
. "$(dirname "$0")/functions.sh"
requires python3 curl
here=$(cd "$(dirname "$0")" && pwd)
mk() { python3 "$here/mk-template.py" "$COWFORK" "$COWFORK_STORE" "$@"; }
mkdir -p "$COWFORK_STORE"
mk base
mk br base
mk other

# A taken name is refused before the program runs: sleep 5 would take 5 s
# (it never reads stdin, so it ends before a ready point).
t0=$(date +%s.%N)
if cowfork template create base --mem 64M -- /bin/busybox sleep 5 2>"$TMP/err"; then fail "template create over an existing template"; fi
t1=$(date +%s.%N)
grep -q "template base exists" "$TMP/err" || fail "template create base: $(cat "$TMP/err")"
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 2) }' || fail "template create base ran the program first"
if cowfork fork other --branch br 2>"$TMP/err"; then fail "fork --branch onto an existing template"; fi
grep -q "template br exists" "$TMP/err" || fail "fork --branch br: $(cat "$TMP/err")"
# An image left by an interrupted save also takes the name.
truncate -s 16M "$TMP/z"
cowfork image import "$TMP/z" half.mem
if cowfork template create half --mem 64M -- /bin/busybox sleep 5 2>"$TMP/err"; then fail "template create over an image"; fi
grep -q "an image named half.mem exists" "$TMP/err" || fail "template create half: $(cat "$TMP/err")"
cowfork image rm half.mem || fail "an orphan image (no template) can be removed"
echo "ok   template create and fork --branch refuse a taken name before running anything"

# image rm of a template's image is refused, naming the template.
if cowfork image rm base.mem 2>"$TMP/err"; then fail "image rm base.mem succeeded"; fi
grep -q "memory of template base" "$TMP/err" || fail "image rm base.mem: $(cat "$TMP/err")"
cowfork image info base.mem >/dev/null || fail "base.mem is gone after a refused rm"
echo "ok   image rm refuses a template's image: $(cat "$TMP/err")"

# ls, text and JSON.
cowfork template ls >"$TMP/ls"
grep -q '^base .* br$' "$TMP/ls" || fail "template ls: $(cat "$TMP/ls")"
cowfork template ls --json >"$TMP/ls.json"
python3 - "$TMP/ls.json" <<'PY' || fail "template ls --json: $(cat "$TMP/ls.json")"
import json, sys
t = {x["name"]: x for x in json.load(open(sys.argv[1]))}
assert sorted(t) == ["base", "br", "other"], t
assert t["base"]["branches"] == ["br"] and t["br"]["parent"] == "base" and t["base"]["parent"] == ""
assert t["base"]["image"] == "base.mem" and t["base"]["mem_size"] == 16 << 20 and t["base"]["sandboxes"] == 0
assert not t["base"]["internal"]
PY
echo "ok   template ls lists parents and branches"

# rm: refused while a branch needs it; then the branch, then the parent.
if cowfork template rm base 2>"$TMP/err"; then fail "template rm base with a branch succeeded"; fi
grep -q "template br is a branch of it" "$TMP/err" || fail "template rm base: $(cat "$TMP/err")"
cowfork template rm br base || fail "template rm br base"
[ ! -e "$COWFORK_STORE/templates/base" ] && ! cowfork image info base.mem 2>/dev/null || fail "base left behind"
[ "$(cowfork template ls --json)" = "$(cowfork template ls --json | grep -o '\[{"name":"other".*')" ] ||
  fail "after rm: $(cowfork template ls --json)"
if cowfork template rm nosuch 2>"$TMP/err"; then fail "template rm nosuch"; fi
grep -q "no template nosuch" "$TMP/err" || fail "template rm nosuch: $(cat "$TMP/err")"
echo "ok   template rm refuses while a branch needs it, then removes state file and image"

# A daemon sandbox paused in a template (its record; the daemon is stopped).
mk held
mkdir -p "$COWFORK_STORE/daemon"
cat >"$COWFORK_STORE/daemon/state.json" <<'JSON'
{"version": 1, "sandboxes": [{"id": "sb-00000000000000aa", "state": "paused", "template": "held",
 "current": "held", "gen": 1, "backend": "file", "created": 1, "status": 0, "why": "", "mem_size": 16777216}]}
JSON
if cowfork template rm held 2>"$TMP/err"; then fail "template rm of a template a paused sandbox needs"; fi
grep -q "sb-00000000000000aa" "$TMP/err" || fail "template rm held: $(cat "$TMP/err")"
echo "ok   without a daemon, its state file is read: $(cat "$TMP/err")"

# With the daemon running, template rm and ls ask it.
export COWFORK_SOCKET="$TMP/d.sock"
start_server DPID "$COWFORK_SOCKET" "$COWFORK" daemon -q
for ((i = 0; i < 300; i++)); do curl -s --unix-socket "$COWFORK_SOCKET" -o /dev/null http://x/v1/health && break; sleep 0.01; done
if cowfork template rm held 2>"$TMP/err"; then fail "template rm held with the daemon running"; fi
grep -q "HTTP 409" "$TMP/err" && grep -q "sb-00000000000000aa" "$TMP/err" || fail "template rm via the daemon: $(cat "$TMP/err")"
cowfork template ls --json | python3 -c 'import json,sys; t={x["name"]: x for x in json.load(sys.stdin)}; assert t["held"]["sandboxes"] == 1, t' ||
  fail "template ls via the daemon"
if "$COWFORK" daemon -q --socket "$TMP/d2.sock" 2>"$TMP/err"; then fail "a second daemon started on the same store"; fi
grep -q "another cowfork daemon serves the store" "$TMP/err" || fail "second daemon: $(cat "$TMP/err")"
curl -s --unix-socket "$COWFORK_SOCKET" -X DELETE http://x/v1/sandboxes/sb-00000000000000aa >/dev/null
cowfork template rm held || fail "template rm held after its sandbox was deleted"
[ ! -e "$COWFORK_STORE/templates/held" ] || fail "held is still there"
curl -s --unix-socket "$COWFORK_SOCKET" http://x/v1/templates | grep -q '"held"' && fail "the daemon still lists held"
echo "ok   with a daemon, template rm is its DELETE (409 while its sandbox needs it) and ls its list"
