#!/usr/bin/env bash
# The sanitizer pass: builds the asan preset (clang, AddressSanitizer +
# UndefinedBehaviorSanitizer, with the libFuzzer targets) into build-asan/
# and runs a subset of ctest under it: the unit tests, the core end-to-end
# suites (hostile input, auth), every fuzz target's seeds and past crashes
# once, and each fuzz target for a few seconds. scripts/test.sh runs it in
# CI. --full builds everything and runs the whole suite under ASan (by
# hand: docs/testing.md has the figures).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
full=0
[ "${1:-}" = "--full" ] && full=1
cd "$root"
[ -f build-asan/build.ninja ] || cmake --preset asan >/dev/null
# Any report fails the test that caused it. LeakSanitizer stays on;
# tests/sanitizers/lsan.supp lists what it is told to ignore and why.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/sanitizers/lsan.supp}
cd build-asan
if [ $full = 1 ]; then
  ninja
  ctest --output-on-failure --timeout 600 -j "$(nproc)"
else
  ninja sanitizer_pass
  ctest --output-on-failure --timeout 600 -j "$(nproc)" -L 'unit|core|fuzz_regress|fuzz'
fi
