#!/usr/bin/env bash
# The Python SDK (sdk/python/cowfork.py) with pytest, against real daemons
# (tests/sdk/conftest.py starts them).
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
# Debian's python3 (the one python3-pytest installs into), not a PATH shim.
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
$PY -m pytest --version >/dev/null 2>&1 || skip "pytest missing (apt-get install python3-pytest)"
cd "$(dirname "$0")/.."
$PY -m pytest -q -p no:cacheprovider tests/sdk
