#!/usr/bin/env bash
# docs/syscalls.md is generated from the shim's system-call table
# (`cowfork syscalls --markdown`, `make docs`): fail when it is stale. Also
# checks the table's other forms: --json parses and has one entry per line of
# the text form, and every call the table gives a handler is not "absent".
. "$(dirname "$0")/functions.sh"
requires python3
doc="$(dirname "$0")/../docs/syscalls.md"
cowfork syscalls --markdown >"$TMP/syscalls.md" || fail "cowfork syscalls --markdown"
diff -u "$doc" "$TMP/syscalls.md" >"$TMP/diff" ||
  { head -40 "$TMP/diff"; fail "docs/syscalls.md is stale: run make docs"; }
echo "ok   docs/syscalls.md is the table's"
cowfork syscalls >"$TMP/text" || fail "cowfork syscalls"
cowfork syscalls --json >"$TMP/json" || fail "cowfork syscalls --json"
python3 - "$TMP/json" "$(wc -l <"$TMP/text")" <<'PY' || fail "cowfork syscalls --json"
import json, sys
t = json.load(open(sys.argv[1]))
assert len(t) == int(sys.argv[2]), (len(t), sys.argv[2])
names = {e["name"]: e for e in t}
for n in ("read", "getpid", "mmap", "rt_sigaction", "clock_gettime", "execve"):
    assert names[n]["status"] != "absent", n
assert names["read"]["flags"] == ["blocks", "reads-fd0", "host-io"], names["read"]
assert names["poll"]["flags"][:2] == ["blocks", "readiness"], names["poll"]
assert names["io_uring_setup"]["status"] == "absent"
assert all(e["status"] in ("supported", "partial", "absent") and e["note"] is not None for e in t)
PY
echo "ok   --json has $(wc -l <"$TMP/text") calls, the flags the run loop uses"
cowfork syscalls --bogus 2>/dev/null && fail "a bad option was accepted"
echo "ok   a bad option is a usage error"
