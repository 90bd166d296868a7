#!/usr/bin/env bash
# Real test suites inside a sandbox against the same run natively:
#  - 25 modules of CPython's own regression tests (Debian's
#    libpython3.11-testsuite), run by regrtest, one process, sequentially;
#  - a subset of numpy's own tests through pytest (python3-pytest,
#    python3-hypothesis for numpy's conftest).
# The result summaries (tests OK / failed / skipped; pytest's counts) must be
# the same. Cases that start child processes run too (a sandbox is a tree of
# processes), except under emulation, where each python3 child takes seconds
# (deselected in both runs there, said in the output); the threaded ones run
# (tests/python-threads.sh runs CPython's thread suites).
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires_cpython_suite

mods="test_json test_math test_string test_collections test_functools test_itertools test_decimal test_re
      test_hashlib test_fractions test_statistics test_heapq test_bisect test_struct test_base64 test_textwrap
      test_operator test_enum test_dataclasses test_difflib test_csv test_binascii test_zlib test_copy test_pprint"
# Under emulated KVM (COWFORK_EMULATED, scripts/kvm-vm.sh) both runs are
# ~20x slower: 8 of the modules and 2 of numpy's files, said in the output.
if [ -n "${COWFORK_EMULATED:-}" ]; then
  mods="test_json test_string test_heapq test_bisect test_base64 test_textwrap test_copy test_pprint"
  echo "emulated KVM: a subset of $(echo $mods | wc -w) CPython modules and 2 numpy files"
fi
# Cases that start processes: json.tool's and base64's command line tests
# and test_struct's shutdown test run python3 in a subprocess, test_re's
# gh94675 a multiprocessing pool: ~20 python3 children, minutes under
# emulation, so deselected there (in both runs).
ign=
if [ -n "${COWFORK_EMULATED:-}" ]; then
  ign="-i TestTool -i TestMain -i test_regression_gh94675 -i test_struct_cleans_up_at_runtime_shutdown"
  echo "emulated KVM: the cases that start python3 children deselected (json.tool's, base64's command line)"
fi
summary() { sed -n '/^== Tests result/,/^Total duration/p' "$1" | grep -v '^Total duration'; }
nrc=0 src=0
(cd / && $PY -m test $ign $mods) > "$TMP/n.txt" 2>&1 || nrc=$?
(cd / && cowfork run --root / --mem 1G --timeout 400 -- $PY -m test $ign $mods) > "$TMP/s.txt" 2>&1 || src=$?
summary "$TMP/n.txt" > "$TMP/n.sum"
summary "$TMP/s.txt" > "$TMP/s.sum"
[ -s "$TMP/n.sum" ] || fail "native regrtest printed no summary: $(tail -n 20 "$TMP/n.txt")"
if ! cmp -s "$TMP/n.sum" "$TMP/s.sum" || [ $nrc != $src ]; then
  echo "native ($nrc):"; cat "$TMP/n.sum"; echo "sandbox ($src):"; cat "$TMP/s.sum"; tail -n 40 "$TMP/s.txt"
  fail "CPython's tests: the sandbox's summary differs from the native run"
fi
echo "ok   CPython regrtest, $(echo $mods | wc -w) modules: $(grep -m1 -E 'tests? OK' "$TMP/s.sum" | sed 's/^ *//') (native: same; $(grep -o 'Total duration.*' "$TMP/n.txt") natively, $(grep -o 'Total duration.*' "$TMP/s.txt" | sed 's/Total duration: //') in the sandbox)"

# numpy's own tests.
if ! $PY -c 'import numpy, pytest, hypothesis' 2>/dev/null; then
  echo "skip numpy's tests: needs python3-numpy, python3-pytest, python3-hypothesis"
  exit 0
fi
N=$($PY -c 'import numpy, os; print(os.path.dirname(numpy.__file__))')
files="$N/core/tests/test_indexing.py $N/core/tests/test_shape_base.py $N/core/tests/test_numeric.py
       $N/lib/tests/test_function_base.py $N/core/tests/test_arrayprint.py $N/core/tests/test_ufunc.py"
[ -n "${COWFORK_EMULATED:-}" ] && files="$N/core/tests/test_shape_base.py $N/core/tests/test_indexing.py"
# This one allocates 4 GiB (in a 1 GiB sandbox it is MemoryError, an
# expected failure, where natively it passes).
sel="not test_identityless_reduction_huge_array"
counts() { tail -n 1 "$1" | sed -E 's/ in [0-9.]+s.*//; s/=//g; s/^ *//'; }
nrc=0 src=0
(cd / && $PY -m pytest -q -p no:cacheprovider -k "$sel" $files) > "$TMP/np-n.txt" 2>&1 || nrc=$?
(cd / && cowfork run --root / --mem 1G --timeout 400 -- $PY -m pytest -q -p no:cacheprovider -k "$sel" $files) > "$TMP/np-s.txt" 2>&1 || src=$?
if [ "$(counts "$TMP/np-n.txt")" != "$(counts "$TMP/np-s.txt")" ] || [ $nrc != $src ]; then
  echo "native ($nrc): $(counts "$TMP/np-n.txt")"; echo "sandbox ($src): $(counts "$TMP/np-s.txt")"; tail -n 40 "$TMP/np-s.txt"
  fail "numpy's tests: the sandbox's counts differ from the native run"
fi
echo "ok   numpy's tests ($(echo $files | wc -w) files): $(counts "$TMP/np-s.txt") in the sandbox and natively"
