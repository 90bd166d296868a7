#!/usr/bin/env bash
# The daemon's API against a real running daemon: every route, every error
# status (400 malformed JSON and bad fields, 404 unknown ids and routes, 405,
# 409 conflicts, 413 oversized bodies, 429 over the cap), the exec
# conversation (state kept across execs, stderr, exit, timeout), branch,
# pause/resume, metrics, the CLI on top, and loopback TCP with a token.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/daemon/functions.sh"
make_sh_template sh
! cowfork daemon --socket "$TMP/x.sock" --listen 127.0.0.1:1 --token-file /dev/null 2>/dev/null || fail "--listen with an empty token started"
for bad in "--park-after -1" "--park-after abc" "--park-after inf" "--timeout inf" "--timeout 0" "--cpu-limit nan"; do
  rc=0; cowfork daemon --socket "$TMP/x.sock" $bad 2>"$TMP/bad.err" || rc=$?
  [ $rc = 2 ] && grep -q "bad ${bad%% *}" "$TMP/bad.err" || fail "daemon $bad: exit $rc, $(cat "$TMP/bad.err")"
  rc=0; cowfork run $bad -- /bin/true 2>"$TMP/bad.err" || rc=$?
  case $bad in --park-after*) ;; *) [ $rc = 2 ] && grep -q "bad ${bad%% *}" "$TMP/bad.err" || fail "run $bad: exit $rc";; esac
done
echo "ok   bad --park-after/--timeout/--cpu-limit values refused with a usage error"
printf 'secret-token-0123456789\n' > "$TMP/token"
PORT=$((20000 + RANDOM % 20000))
start_daemon --max-sandboxes 8 --max-body 64K -q --listen 127.0.0.1:$PORT --token-file "$TMP/token"
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "socket mode $(stat -c %a "$SOCK")"
echo "ok   socket mode 0600"

api GET /v1/health >/dev/null; expect 200 "GET /v1/health"
api GET /v1/nope >/dev/null; expect 404 "unknown route"
api GET /v2/health >/dev/null; expect 404 "unknown version"
api POST /v1/health '{}' >/dev/null; expect 405 "POST /v1/health"

# Templates.
api GET /v1/templates > "$TMP/t"; expect 200 "GET /v1/templates"
[ "$(jget "$(cat "$TMP/t")" '[t["name"] for t in j["templates"]]')" = "['sh']" ] || fail "template list: $(cat "$TMP/t")"
api GET /v1/templates/sh > "$TMP/t"; expect 200 "GET /v1/templates/sh"
[ "$(jget "$(cat "$TMP/t")" 'j["mem_size"]')" = 67108864 ] || fail "mem_size: $(cat "$TMP/t")"
api GET /v1/templates/nope >/dev/null; expect 404 "unknown template"
api POST /v1/templates '{"name":"sh2","program":"/bin/busybox","args":["sh"],"mem":"32M"}' > "$TMP/t"
expect 201 "POST /v1/templates"
[ "$(jget "$(cat "$TMP/t")" 'j["pages_stored"] > 0')" = True ] || fail "template create: $(cat "$TMP/t")"
api POST /v1/templates '{"name":"sh2","program":"/bin/busybox","args":["sh"]}' >/dev/null; expect 409 "template exists"
api POST /v1/templates '{"name":"t3","program":"/bin/busybox","args":["true"]}' >/dev/null; expect 400 "program ends before its ready point"
api POST /v1/templates '{"name":"t3","program":"/nonexistent"}' >/dev/null; expect 400 "program not found"
api POST /v1/templates '{"name":"../x","program":"/bin/busybox"}' >/dev/null; expect 400 "bad template name"
api POST /v1/templates '{"name":"_x","program":"/bin/busybox"}' >/dev/null; expect 400 "reserved template name"
api POST /v1/templates '{"name":"t3","program":"/bin/busybox","mem":"3M"}' >/dev/null; expect 400 "bad mem"
api POST /v1/templates '{"name":"t3","program":"/bin/busybox","args":[1]}' >/dev/null; expect 400 "args not strings"
api POST /v1/templates '{"name":"t3","program":"/bin/busybox","mem":"1T"}' >/dev/null; expect 400 "mem over the limit"

# A template with a disk ("disk": issue 15 item 2): the files it writes
# outside /tmp on an ext4 disk, saved as dk.disk; each sandbox writes to an
# overlay of its own; a pause and a branch store the disk's changed blocks.
api POST /v1/templates '{"name":"t3","program":"/bin/busybox","disk":"1M"}' >/dev/null; expect 400 "disk too small"
api POST /v1/templates '{"name":"t3","program":"/bin/busybox","disk":"1P"}' >/dev/null; expect 400 "disk over the limit"
api POST /v1/templates '{"name":"dk","program":"/bin/busybox","args":["sh","-c","echo on-disk >/root/cowfork-dk && exec /bin/busybox sh"],"mem":"32M","disk":"64M"}' > "$TMP/t"
expect 201 "POST /v1/templates with a disk"
[ "$(jget "$(cat "$TMP/t")" '0 < j["disk_bytes_stored"] < 1 << 20')" = True ] || fail "template with a disk: $(cat "$TMP/t")"
api POST /v1/sandboxes '{"template":"dk","count":2}' > "$TMP/c"; expect 201 "two sandboxes of dk"
DA=$(jget "$(cat "$TMP/c")" 'j["ids"][0]'); DB=$(jget "$(cat "$TMP/c")" 'j["ids"][1]')
api POST /v1/sandboxes/$DA/exec '{"input":"cat /root/cowfork-dk; echo a >/root/cowfork-dk-a\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "on-disk" ] || fail "the template's file in a sandbox: $(cat "$TMP/e")"
api POST /v1/sandboxes/$DB/exec '{"input":"ls /root | grep cowfork-dk\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "cowfork-dk" ] || fail "the other sandbox sees the first one's file: $(cat "$TMP/e")"
api POST /v1/sandboxes/$DA/pause >/dev/null; expect 200 "pause a sandbox with a disk"
api POST /v1/sandboxes/$DA/resume >/dev/null; expect 200 "resume it"
api POST /v1/sandboxes/$DA/exec '{"input":"cat /root/cowfork-dk-a\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "a" ] || fail "a file on the disk across pause and resume: $(cat "$TMP/e")"
api POST /v1/sandboxes/$DA/branch '{"template":"dk-a"}' > "$TMP/b"; expect 201 "branch a sandbox with a disk"
[ "$(jget "$(cat "$TMP/b")" '0 < j["disk_bytes_stored"] < 1 << 20')" = True ] || fail "branch with a disk: $(cat "$TMP/b")"
api POST /v1/sandboxes '{"template":"dk-a"}' > "$TMP/c"; DC=$(jget "$(cat "$TMP/c")" 'j["ids"][0]')
api POST /v1/sandboxes/$DC/exec '{"input":"cat /root/cowfork-dk /root/cowfork-dk-a\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "on-disk
a" ] || fail "a sandbox of the branch: $(cat "$TMP/e")"
for x in $DA $DB $DC; do api DELETE /v1/sandboxes/$x >/dev/null; expect 200 "delete sandbox $x"; done
api DELETE /v1/templates/dk-a >/dev/null; expect 200 "delete the branch dk-a"
api DELETE /v1/templates/dk >/dev/null; expect 200 "delete dk"
! ls "$COWFORK_STORE/images" | grep -q 'dk.*\.disk' || fail "disk images left: $(ls "$COWFORK_STORE/images")"
echo "ok   a template with a disk: its sandboxes see its files and not each other's, pause/resume and a branch keep theirs"

# Malformed bodies.
api POST /v1/sandboxes '{"template":' >/dev/null; expect 400 "truncated JSON"
api POST /v1/sandboxes '[1,2]' >/dev/null; expect 400 "JSON not an object"
api POST /v1/sandboxes '{"template":"sh","template":"sh"}' >/dev/null; expect 400 "duplicate keys"
api POST /v1/sandboxes "$(printf '{"template":"s\xff"}')" >/dev/null; expect 400 "invalid UTF-8"
api POST /v1/sandboxes '{}' >/dev/null; expect 400 "template missing"
api POST /v1/sandboxes '{"template":"sh","count":0}' >/dev/null; expect 400 "count 0"
api POST /v1/sandboxes '{"template":"sh","count":"2"}' >/dev/null; expect 400 "count not a number"
api POST /v1/sandboxes '{"template":"sh","backend":"nfs"}' >/dev/null; expect 400 "bad backend"
api POST /v1/sandboxes '{"template":"nope"}' >/dev/null; expect 404 "create from unknown template"
head -c 70000 /dev/zero | tr '\0' x > "$TMP/big"
# Content-Length over the limit is answered before any body is read: only the
# headers are sent (a client still sending its body may see EPIPE first).
code=$(python3 - "$SOCK" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: cowfork\r\nContent-Type: application/json\r\n"
          b"Content-Length: 70000\r\n\r\n")
print(s.recv(4096).split(b" ")[1].decode())
PY
)
[ "$code" = 413 ] || fail "body over --max-body (Content-Length): HTTP $code"
echo "ok   body over --max-body (Content-Length) (413)"
# From a file, not a pipe: a slow pipe (an emulated CPU) kept curl sending
# after the answer; a send that fails after the 413 arrived is still a 413.
code=$(curl -sS --unix-socket "$SOCK" -H 'Transfer-Encoding: chunked' \
  --data-binary "@$TMP/big" -o /dev/null -w '%{http_code}' http://cowfork/v1/sandboxes 2>/dev/null || true)
[ "$code" = 413 ] || fail "chunked oversized body: $code"
echo "ok   body over --max-body (chunked) (413)"

# Sandboxes and the exec conversation.
api POST /v1/sandboxes '{"template":"sh"}' > "$TMP/c"; expect 201 "POST /v1/sandboxes"
ID=$(jget "$(cat "$TMP/c")" 'j["ids"][0]')
api POST /v1/sandboxes/$ID/exec '{"input":"x=41; echo one; echo two >&2\n"}' > "$TMP/e"; expect 200 "exec"
[ "$(jget "$(cat "$TMP/e")" '(j["output"], j["stderr"], j["exit_code"], j["state"])')" = "('one\\n', 'two\\n', None, 'running')" ] ||
  fail "exec answer: $(cat "$TMP/e")"
api POST /v1/sandboxes/$ID/exec '{"input":"x=$((x+1)); echo x=$x\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "x=42" ] || fail "state across execs: $(cat "$TMP/e")"
echo "ok   state kept across execs"
api POST /v1/sandboxes/$ID/exec '{"input_base64":"ZWNobyBiNjQK"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "b64" ] || fail "input_base64: $(cat "$TMP/e")"
api POST /v1/sandboxes/$ID/exec "{\"input_base64\":\"$(printf "printf '\\\\377\\\\n'\\n" | base64 -w0)\"}" > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output_base64"]')" = "/wo=" ] || fail "binary output: $(cat "$TMP/e")"
echo "ok   binary input and output (base64)"
# A background job that lives across execs (each exec ends in a pause of
# the whole tree: issue 14 item 6) and across a pause into the store (the
# tree saved, each process as an image, and forked back whole).
api POST /v1/sandboxes '{"template":"sh"}' > "$TMP/c"; J=$(jget "$(cat "$TMP/c")" 'j["ids"][0]')
api POST /v1/sandboxes/$J/exec '{"input":"(until [ -e /tmp/q ]; do sleep 0.05; done; echo bg saw q > /tmp/bgout) & echo started\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" '(j["output"], j["state"])')" = "('started\\n', 'running')" ] || fail "exec starting a background job: $(cat "$TMP/e")"
api POST /v1/sandboxes/$J/pause >/dev/null; expect 200 "pause (to the store) a sandbox whose background job runs"
api POST /v1/sandboxes/$J/resume >/dev/null; expect 200 "resume it, its background job with it"
api POST /v1/sandboxes/$J/exec '{"input":": > /tmp/q; wait; cat /tmp/bgout\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" '(j["output"], j["state"])')" = "('bg saw q\\n', 'running')" ] || fail "the background job in the next exec: $(cat "$TMP/e")"
api DELETE /v1/sandboxes/$J >/dev/null; expect 200 "delete the sandbox of the background job"
echo "ok   a background job runs across execs and a pause to the store (the tree is saved and goes on)"
api POST /v1/sandboxes/$ID/exec '{"input":1}' >/dev/null; expect 400 "input not a string"
api POST /v1/sandboxes/$ID/exec '{"input":"x","timeout":-1}' >/dev/null; expect 400 "negative timeout"
api POST /v1/sandboxes/$ID/exec '{"input":"x","input_base64":"eA=="}' >/dev/null; expect 400 "input and input_base64"
api POST /v1/sandboxes/$ID/exec '{"input_base64":"!!"}' >/dev/null; expect 400 "bad base64"
api POST /v1/sandboxes/nope/exec '{"input":"x"}' >/dev/null; expect 404 "exec in unknown sandbox"
api POST /v1/sandboxes/$ID/frobnicate '{}' >/dev/null; expect 404 "unknown verb"
api GET /v1/sandboxes/$ID/exec >/dev/null; expect 405 "GET on exec"
api PUT /v1/sandboxes/$ID >/dev/null; expect 405 "PUT on a sandbox"
api GET /v1/sandboxes/$ID > "$TMP/g"; expect 200 "GET /v1/sandboxes/ID"
[ "$(jget "$(cat "$TMP/g")" '(j["state"], j["execs"], j["memory"]["size"], j["age_s"] >= 0)')" = "('running', 4, 67108864, True)" ] ||
  fail "sandbox info: $(cat "$TMP/g")"
api GET /v1/sandboxes/nope >/dev/null; expect 404 "GET unknown sandbox"
api GET /v1/sandboxes > "$TMP/l"; expect 200 "GET /v1/sandboxes"
grep -q "$ID" "$TMP/l" || fail "list: $(cat "$TMP/l")"

# Branch: a new template, the sandbox goes on; 409 on an existing name.
api POST /v1/sandboxes/$ID/branch '{"template":"sh-x"}' > "$TMP/b"; expect 201 "branch"
[ "$(jget "$(cat "$TMP/b")" 'j["parent"]')" = sh ] || fail "branch parent: $(cat "$TMP/b")"
api POST /v1/sandboxes/$ID/branch '{"template":"sh-x"}' >/dev/null; expect 409 "branch onto an existing template"
api POST /v1/sandboxes/$ID/branch '{"template":"a/b"}' >/dev/null; expect 400 "branch with a bad name"
api POST /v1/sandboxes/$ID/exec '{"input":"echo still $x\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "still 42" ] || fail "after branch: $(cat "$TMP/e")"
api POST /v1/sandboxes '{"template":"sh-x","count":2}' > "$TMP/c"; expect 201 "fork the branch twice"
B1=$(jget "$(cat "$TMP/c")" 'j["ids"][0]'); B2=$(jget "$(cat "$TMP/c")" 'j["ids"][1]')
api POST /v1/sandboxes/$B1/exec '{"input":"echo b1 $x; x=1\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "b1 42" ] || fail "branch child: $(cat "$TMP/e")"
api POST /v1/sandboxes/$B2/exec '{"input":"echo b2 $x\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "b2 42" ] || fail "branch children are isolated: $(cat "$TMP/e")"
echo "ok   branch children start from the branch, isolated from each other"
api DELETE /v1/templates/sh-x >/dev/null; expect 409 "delete a template sandboxes use"
api DELETE /v1/templates/sh >/dev/null; expect 409 "delete a template a branch depends on"

# Pause and resume.
api POST /v1/sandboxes/$ID/pause > "$TMP/p"; expect 200 "pause"
api POST /v1/sandboxes/$ID/pause >/dev/null; expect 409 "pause a paused sandbox"
api POST /v1/sandboxes/$ID/exec '{"input":"echo\n"}' >/dev/null; expect 409 "exec in a paused sandbox"
api POST /v1/sandboxes/$ID/branch '{"template":"sh-y"}' >/dev/null; expect 409 "branch a paused sandbox"
[ "$(jget "$(api GET /v1/sandboxes/$ID)" 'j["state"]')" = paused ] || fail "state after pause"
api POST /v1/sandboxes/$ID/resume > "$TMP/r"; expect 200 "resume"
api POST /v1/sandboxes/$ID/resume >/dev/null; expect 409 "resume a running sandbox"
api POST /v1/sandboxes/$ID/exec '{"input":"echo resumed $x\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "resumed 42" ] || fail "after resume: $(cat "$TMP/e")"
echo "ok   pause + resume keeps the sandbox's state"
# A sandbox never exec'd can be paused and branched too.
api POST /v1/sandboxes '{"template":"sh"}' > "$TMP/c"; F=$(jget "$(cat "$TMP/c")" 'j["ids"][0]')
api POST /v1/sandboxes/$F/pause >/dev/null; expect 200 "pause a fresh sandbox"
api POST /v1/sandboxes/$F/resume >/dev/null; expect 200 "resume it"
api POST /v1/sandboxes/$F/exec '{"input":"echo fresh\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = fresh ] || fail "fresh after resume: $(cat "$TMP/e")"

# The program ends; timeouts.
api POST /v1/sandboxes/$F/exec '{"input":"exit 3\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" '(j["exit_code"], j["state"])')" = "(3, 'exited')" ] || fail "exit: $(cat "$TMP/e")"
api POST /v1/sandboxes/$F/exec '{"input":"echo\n"}' >/dev/null; expect 409 "exec after the program ended"
api POST /v1/sandboxes '{"template":"sh"}' > "$TMP/c"; T=$(jget "$(cat "$TMP/c")" 'j["ids"][0]')
api POST /v1/sandboxes/$T/exec '{"input":"while :; do :; done\n","timeout":0.5}' > "$TMP/e"; expect 200 "exec past its timeout"
[ "$(jget "$(cat "$TMP/e")" '(j["timed_out"], j["state"], j["exit_code"])')" = "(True, 'exited', 137)" ] || fail "timeout: $(cat "$TMP/e")"
t=$(jget "$(cat "$TMP/e")" 'j["duration_ms"]')
python3 -c "import sys; sys.exit(not 400 < $t < 3000)" || fail "timeout took $t ms"
echo "ok   the timeout kills the sandbox after ~0.5 s ($t ms)"

# The cap: 8 live sandboxes (ID, B1, B2 + 5) then 429; exited ones do not count.
api POST /v1/sandboxes '{"template":"sh","count":6}' > "$TMP/c"; expect 429 "over the global cap"
api POST /v1/sandboxes '{"template":"sh","count":5}' > "$TMP/c"; expect 201 "up to the cap"
api POST /v1/sandboxes '{"template":"sh"}' >/dev/null; expect 429 "one more"
api GET /v1/metrics > "$TMP/m"; expect 200 "GET /v1/metrics"
for m in 'cowfork_sandboxes{state="running"} 8' 'cowfork_sandboxes{state="exited"} 2' cowfork_fork_seconds_bucket \
  cowfork_exec_seconds_count cowfork_memory_private_bytes cowfork_memory_shared_bytes cowfork_uffd_faults_total \
  'cowfork_capacity_refusals_total 2' 'cowfork_exec_timeouts_total 1'; do
  grep -qF "$m" "$TMP/m" || fail "metrics lack '$m': $(grep -v '^#' "$TMP/m")"
done
echo "ok   metrics (Prometheus text)"
for s in $(jget "$(cat "$TMP/c")" '" ".join(j["ids"])'); do api DELETE /v1/sandboxes/$s >/dev/null; expect 200 "delete $s"; done
# The CPU-time limit: a spinning exec is killed after its CPU time, not its wall time.
api POST /v1/sandboxes '{"template":"sh"}' > "$TMP/c"; T=$(jget "$(cat "$TMP/c")" 'j["ids"][0]')
api POST /v1/sandboxes/$T/exec '{"input":"x","cpu_limit":-1}' >/dev/null; expect 400 "negative cpu_limit"
api POST /v1/sandboxes/$T/exec '{"input":"while :; do :; done\n","cpu_limit":0.3,"timeout":20}' > "$TMP/e"
expect 200 "exec past its CPU limit"
[ "$(jget "$(cat "$TMP/e")" '(j["timed_out"], j["state"], j["exit_code"])')" = "(True, 'exited', 137)" ] || fail "cpu_limit: $(cat "$TMP/e")"
t=$(jget "$(cat "$TMP/e")" 'j["cpu_ms"]')
python3 -c "import sys; sys.exit(not 250 < $t < 3000)" || fail "the CPU limit took $t ms of CPU"
echo "ok   the CPU-time limit kills a spinning exec after ~0.3 s of CPU ($t ms)"
api DELETE /v1/sandboxes/$T >/dev/null; expect 200 "delete the CPU-limited sandbox"
api DELETE /v1/sandboxes/$F >/dev/null; expect 200 "delete an exited sandbox"
api DELETE /v1/sandboxes/$F >/dev/null; expect 404 "delete it again"

# uffd backend.
api POST /v1/sandboxes '{"template":"sh","backend":"uffd"}' > "$TMP/c"; expect 201 "create with the uffd backend"
U=$(jget "$(cat "$TMP/c")" 'j["ids"][0]')
api POST /v1/sandboxes/$U/exec '{"input":"echo uffd; cd /etc; pwd\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "$(printf 'uffd\n/etc')" ] || fail "uffd exec: $(cat "$TMP/e")"
api GET /v1/metrics > "$TMP/m"; grep -q '^cowfork_uffd_faults_total [1-9]' "$TMP/m" || fail "no uffd faults counted"
echo "ok   uffd backend exec, faults counted"

# The CLI on top of the API.
C=$(cowfork sandbox create sh) || fail "sandbox create"
[ "$(cowfork sandbox exec "$C" 'y=7; echo y=$y')" = y=7 ] || fail "sandbox exec"
[ "$(echo 'echo from stdin $y' | cowfork sandbox exec "$C")" = "from stdin 7" ] || fail "sandbox exec from stdin"
cowfork sandbox branch "$C" sh-cli 2>/dev/null || fail "sandbox branch"
[ "$(cowfork sandbox pause "$C")" = "$C paused" ] || fail "sandbox pause"
[ "$(cowfork sandbox resume "$C")" = "$C running" ] || fail "sandbox resume"
cowfork sandbox ls | grep -q "^$C  *running" || fail "sandbox ls: $(cowfork sandbox ls)"
set +e; cowfork sandbox exec "$C" 'exit 5' 2>/dev/null; rc=$?; set -e
[ $rc = 5 ] || fail "sandbox exec exit status $rc"
cowfork sandbox rm "$C" || fail "sandbox rm"
! cowfork sandbox exec nope 'echo' 2>"$TMP/err" && grep -q "no sandbox nope (HTTP 404)" "$TMP/err" || fail "CLI error: $(cat "$TMP/err")"
echo "ok   cowfork sandbox create|exec|branch|pause|resume|ls|rm"
[ "$(printf 'echo no daemon needed\n' | cowfork fork sh --input /dev/stdin)" = "no daemon needed" ] || fail "cowfork fork"
echo "ok   cowfork fork still works on its own"

# Templates: delete once nothing uses them.
api DELETE /v1/templates/sh-cli >/dev/null; expect 200 "delete an unused template"
api GET /v1/templates/sh-cli >/dev/null; expect 404 "it is gone"
[ ! -e "$COWFORK_STORE/templates/sh-cli" ] && [ ! -e "$COWFORK_STORE/images/sh-cli.mem" ] || fail "template files left"
api DELETE /v1/templates/_$ID-p1 >/dev/null; expect 409 "delete the pause template a sandbox runs from"
api DELETE /v1/sandboxes/$ID >/dev/null; expect 200 "delete a resumed sandbox"
ls "$COWFORK_STORE/templates" | grep -q "^_$ID" && fail "pause templates of a deleted sandbox left behind"
echo "ok   a deleted sandbox's pause templates are removed"

# Loopback TCP: token required.
c=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/v1/health)
[ "$c" = 401 ] || fail "TCP without a token: $c"
c=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong-token-0123456789' http://127.0.0.1:$PORT/v1/health)
[ "$c" = 401 ] || fail "TCP with a wrong token: $c"
c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$TMP/token")" http://127.0.0.1:$PORT/v1/health)
[ "$c" = 200 ] || fail "TCP with the token: $c"
echo "ok   loopback TCP needs the bearer token (401 without)"
stop_daemon
[ ! -e "$SOCK" ] || fail "socket left behind"
echo "ok   clean stop"
