#!/usr/bin/env bash
# CPython's suites of everyday library modules (Debian's
# libpython3.11-testsuite) in a sandbox against the same run natively: the
# general Linux semantics programs lean on without naming them (locale,
# pwd/grp, resource limits, ioctl/termios answers without a terminal,
# syslog, sysconfig, dbm files, zipimport, pipes, pstats...), beyond the
# thread, process, file and network suites of their own scripts. regrtest
# -v, one process, from /; each case's result, each module's counts and
# regrtest's summary must be the same.
#
# Under emulated KVM (COWFORK_EMULATED, scripts/kvm-vm.sh) a subset of the
# fastest (said in the output): the whole list took 2 min in an emulated
# sandbox (41 modules, 2026-12-07; the sweep that found /dev/tty opening a
# terminal that was not the controlling one: test_ioctl).
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires_cpython_suite
mods="test_copy test_getopt test_http_cookies test_textwrap test_bisect test_fnmatch test_pwd test_urlparse
      test_abc test_contextlib test_filecmp test_linecache test_locale test_optparse test_string test_dbm test_dis
      test_fileinput test_pipes test_file test_genericpath test_ioctl test_sysconfig test_posixpath test_syslog
      test_dataclasses test_sched test_typing test_zipimport test_enum test_heapq test_secrets test_tokenize
      test_sort test_struct test_shlex test_minidom test_inspect test_grp test_resource"
if [ -n "${COWFORK_EMULATED:-}" ]; then
  mods="test_pwd test_grp test_resource test_locale test_ioctl test_syslog test_sysconfig test_dbm test_pipes
        test_fileinput test_filecmp test_zipimport"
  echo "emulated KVM: a subset of $(echo $mods | wc -w) modules ($(echo $mods))"
fi
REGRTEST_CASES=1 regrtest_vs_native "everyday library suites ($(echo $mods | wc -w) modules)" 1G 1500 $mods
