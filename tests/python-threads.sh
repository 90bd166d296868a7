#!/usr/bin/env bash
# CPython's own thread, signal and I/O suites (Debian's
# libpython3.11-testsuite) in a sandbox against the same run natively
# (issue 13, item 7): regrtest -v, one process, sequentially; per module
# the number of test cases run and the result line ("OK (skipped=N)"), and
# regrtest's summary, must be the same.
#
# Deselected in both runs (tests/python-threads.ignore, with the reason per
# case): two test_time cases that would set the host's clock natively. The
# cases that start
# processes (os.fork, subprocess, a child interpreter) run: a sandbox has
# processes (issue 14). Under emulation test_threading's
# test_4_daemon_threads is deselected too (below).
#
# --mem 4G: a sandbox's address space is its --mem, and test_queue's
# test_many_threads starts 100 threads at once (8 MiB stacks, 64 MiB malloc
# arenas): at --mem 2G only 56 start.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires_cpython_suite
mods="test_threading test_thread test_queue test_concurrent_futures test_io test_select test_selectors test_time test_signal test_epoll"
grep -v '^#' "$(dirname "$0")/python-threads.ignore" | grep -v '^$' > "$TMP/ignore"
# Under emulated KVM (COWFORK_EMULATED, scripts/kvm-vm.sh) both runs are
# ~10-20x slower: the modules that take a few seconds natively, and not
# test_signal (2-3 minutes in a sandbox there), test_epoll
# (test_unregister_closed bounds one epoll_wait to 10 ms: a loaded emulator
# misses that now and then) nor test_4_daemon_threads (a child interpreter
# with 40 busy threads on 2 vCPUs: 30-60 s in an emulated sandbox, minutes
# on a loaded machine; 5 s natively there).
if [ -n "${COWFORK_EMULATED:-}" ]; then
  mods="test_threading test_thread test_select test_selectors test_time"
  echo "test.test_threading.ThreadJoinOnShutdown.test_4_daemon_threads" >> "$TMP/ignore"
  # test_above_fd_setsize opens socketpairs up to the hard RLIMIT_NOFILE:
  # 65536 in a sandbox of cowfork run (its budget), often 4096 natively in
  # the VM: 32752 pairs take ~18 min in an emulated sandbox (ok there as
  # natively, checked by hand), seconds where KVM is real.
  echo "test.test_selectors.*.test_above_fd_setsize" >> "$TMP/ignore"
  echo "emulated KVM: a subset of $(echo $mods | wc -w) modules ($mods), test_4_daemon_threads and test_above_fd_setsize left out (time)"
fi
regrtest_vs_native "thread suites ($(echo $mods | wc -w) modules)" 4G 1500 --ignorefile "$TMP/ignore" $mods
