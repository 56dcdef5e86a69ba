#!/usr/bin/env bash
# The sanitizer pass: builds the asan preset (clang, AddressSanitizer +
# UndefinedBehaviorSanitizer, with the libFuzzer targets) into build-asan/
# and runs a subset of ctest under it: the unit tests, the core end-to-end
# suites (hostile input, auth), every fuzz target's seeds and past crashes
# once, and each fuzz target for ASFLOW_FUZZ_SECONDS (default 10).
# `ASFLOW_ASAN=1 scripts/test.sh` (what CI runs) calls it with --build-only
# and --test-only, with ASFLOW_ASAN_PRESET=asan-ci: the same configuration in
# build-asan-ci/, over the plain build/'s generated code (proto/CMakeLists.txt).
#   --full        builds everything and runs the whole suite (by hand)
#   --build-only  builds the pass's targets (nice -n 10), runs nothing
#   --test-only   runs the pass's tests over what is built
# docs/testing.md has the figures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-}
case "$mode" in
  ""|--full|--build-only|--test-only) ;;
  *) echo "usage: $0 [--full|--build-only|--test-only]" >&2; exit 2 ;;
esac
preset=${ASFLOW_ASAN_PRESET:-asan}
tree=build-$preset
cd "$root"
[ -f "$tree/build.ninja" ] || cmake --preset "$preset" >/dev/null
# Any report fails the test that caused it. LeakSanitizer stays on;
# tests/sanitizers/lsan.supp lists what it is told to ignore and why.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/sanitizers/lsan.supp}
cd "$tree"
if [ -n "${ASFLOW_FUZZ_SECONDS:-}" ]; then
  cmake -DASFLOW_FUZZ_SECONDS="$ASFLOW_FUZZ_SECONDS" . >/dev/null
fi
case "$mode" in
  --full)
    ninja
    ctest --output-on-failure --timeout 600 -j "$(nproc)"
    ;;
  --build-only)
    nice -n 10 ninja sanitizer_pass
    ;;
  *)
    [ "$mode" = --test-only ] || ninja sanitizer_pass
    ctest --output-on-failure --timeout 600 -j "$(nproc)" -L 'unit|core|fuzz_regress|fuzz'
    ;;
esac
