#!/usr/bin/env bash
# Durability: a clean restart (SIGTERM pauses every running sandbox; all
# resume with their state) and kill -9 (running sandboxes are reported lost,
# paused ones resume; acknowledged creates are never silently dropped; the
# state file survives as written).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/daemon/functions.sh"
make_sh_template sh
start_daemon -q
out() { jget "$(api POST /v1/sandboxes/$1/exec "{\"input\":\"$2\\n\"}")" 'j["output"]'; }
new() { jget "$(api POST /v1/sandboxes '{"template":"sh"}')" 'j["ids"][0]'; }
A=$(new); B=$(new); C=$(new)
[ "$(out $A 'x=1; echo a$x')" = a1 ] || fail "exec A"
[ "$(out $B 'y=2; echo /tmp/$y > /tmp/f; echo b$y')" = b2 ] || fail "exec B"
api POST /v1/sandboxes/$B/pause >/dev/null; expect 200 "pause B"
stop_daemon
[ "$(jget "$(cat "$COWFORK_STORE/daemon/state.json")" 'sorted(s["state"] for s in j["sandboxes"])')" = "['paused', 'paused', 'paused']" ] ||
  fail "a clean stop should pause everything: $(cat "$COWFORK_STORE/daemon/state.json")"
echo "ok   SIGTERM paused every running sandbox"
start_daemon -q
for s in $A $B $C; do api POST /v1/sandboxes/$s/resume >/dev/null; expect 200 "resume $s after a restart"; done
[ "$(out $A 'echo a$x')" = a1 ] || fail "A lost its state across the restart"
[ "$(out $B 'read l < /tmp/f; echo b$y $l')" = "b2 /tmp/2" ] || fail "B lost its state across the restart"
[ "$(out $C 'echo c')" = c ] || fail "C (never exec'd) after the restart"
echo "ok   all three resume with their memory and /tmp after a clean restart"

# kill -9: D and C are running, A paused; E created and acknowledged last.
D=$(new)
[ "$(out $D 'z=3; echo d$z')" = d3 ] || fail "exec D"
api POST /v1/sandboxes/$A/pause >/dev/null; expect 200 "pause A"
E=$(new)
kill -9 "$DPID"; wait "$DPID" 2>/dev/null || true
start_daemon -q
api GET /v1/sandboxes > "$TMP/l"
st() { jget "$(cat "$TMP/l")" "[s['state'] for s in j['sandboxes'] if s['id']=='$1'][0]"; }
[ "$(st $A)" = paused ] && [ "$(st $D)" = lost ] && [ "$(st $E)" = lost ] && [ "$(st $C)" = lost ] && [ "$(st $B)" = lost ] ||
  fail "states after kill -9: $(cat "$TMP/l")"
echo "ok   after kill -9: running sandboxes reported lost (D, E, B, C), paused A kept"
grep -q "running when the daemon stopped" "$TMP/l" || fail "lost sandboxes say why: $(cat "$TMP/l")"
api POST /v1/sandboxes/$D/exec '{"input":"echo\n"}' >/dev/null; expect 409 "exec in a lost sandbox"
api POST /v1/sandboxes/$D/resume >/dev/null; expect 409 "resume a lost sandbox"
api POST /v1/sandboxes/$A/resume >/dev/null; expect 200 "resume A after kill -9"
[ "$(out $A 'echo a$x')" = a1 ] || fail "A after kill -9"
echo "ok   a sandbox paused before kill -9 resumes with its state"
grep -q '^cowfork_lost_at_start 4' <(api GET /v1/metrics) || fail "lost_at_start metric"
for s in $B $C $D $E; do api DELETE /v1/sandboxes/$s >/dev/null; expect 200 "delete lost $s"; done
# The pause templates of deleted sandboxes are gone; A's current one stays.
left=$(ls "$COWFORK_STORE/templates" | grep '^_' | grep -v "^_$A" || true)
[ -z "$left" ] || fail "pause templates left behind: $left"
echo "ok   lost sandboxes deleted with their pause templates"
# An orphan pause template (saved, never recorded: a crash in between) is swept at start.
stop_daemon
cp "$COWFORK_STORE/templates/$(ls "$COWFORK_STORE/templates" | grep "^_$A" | head -n 1)" "$COWFORK_STORE/templates/_sb-0000000000000000-p1"
cp "$COWFORK_STORE/images/$(ls "$COWFORK_STORE/images" | grep "^_$A" | head -n 1)" "$COWFORK_STORE/images/_sb-0000000000000000-p1.mem"
start_daemon -q
[ ! -e "$COWFORK_STORE/templates/_sb-0000000000000000-p1" ] || fail "orphan pause template kept"
echo "ok   an unrecorded pause template is removed at start"
# A corrupt state file stops the daemon with a clear error rather than dropping sandboxes.
stop_daemon
cp "$COWFORK_STORE/daemon/state.json" "$TMP/state.good"
echo '{"version":1,"sandboxes":[{"id":' > "$COWFORK_STORE/daemon/state.json"
! cowfork daemon -q 2>"$TMP/err" || fail "started on a corrupt state file"
grep -q "state.json" "$TMP/err" || fail "error: $(cat "$TMP/err")"
cp "$TMP/state.good" "$COWFORK_STORE/daemon/state.json"
echo "ok   a corrupt state file is refused: $(cat "$TMP/err")"
