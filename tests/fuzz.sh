#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/*.c) with clang and runs each for
# a short while from its corpus in tests/fuzz/corpus/NAME. FUZZ_SECONDS
# (default 15) sets the time per target. A crash fails the test.
. "$(dirname "$0")/functions.sh"
requires clang
cd "$(dirname "$0")/.."
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$TMP/probe.c"
clang -fsanitize=fuzzer "$TMP/probe.c" -o "$TMP/probe" 2>/dev/null ||
  skip "clang cannot link libFuzzer here (libclang-rt-14-dev missing?)"
make -s fuzz >"$TMP/build.log" 2>&1 || { cat "$TMP/build.log"; fail "fuzz build failed"; }
for src in tests/fuzz/*.c; do
  name=$(basename "$src" .c)
  mkdir -p "$TMP/$name" "tests/fuzz/corpus/$name"
  echo "fuzzing $name for ${FUZZ_SECONDS:-15}s"
  (cd "$TMP" && "$OLDPWD/build-fuzz/$name" -max_total_time="${FUZZ_SECONDS:-15}" -timeout=10 \
    -rss_limit_mb=2048 "$TMP/$name" "$OLDPWD/tests/fuzz/corpus/$name") >"$TMP/$name.log" 2>&1 ||
    { tail -n 40 "$TMP/$name.log"; fail "fuzzer $name found a crash"; }
  grep -E '^Done' "$TMP/$name.log" || true
done
