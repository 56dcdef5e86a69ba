#!/usr/bin/env bash
# The sanitizer pass: builds the asan preset (clang, AddressSanitizer +
# UndefinedBehaviorSanitizer, with the libFuzzer targets) into build-asan/
# and runs a subset of ctest under it: the unit tests, the core end-to-end
# suites (hostile input, auth), every fuzz target's seeds and past crashes
# once, and each fuzz target for ASFLOW_FUZZ_SECONDS (default 10).
# `ASFLOW_ASAN=1 scripts/test.sh` (what .ci/run runs) calls it with --build-only
# and --test-only, with ASFLOW_ASAN_PRESET=asan-ci: the same configuration in
# build-asan-ci/, over the plain build/'s generated code (proto/CMakeLists.txt),
# and ASFLOW_ASAN_SCOPE=common: only the suites and fuzz targets of the
# common and spec libraries (label common), so CI stays well under 20 minutes.
#   ASFLOW_ASAN_SCOPE  pass (default): unit, core, fuzz_regress, fuzz
#                      common: the label common (target sanitizer_common)
#   --full        builds everything and runs the whole suite but deploy (by hand)
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
case "${ASFLOW_ASAN_SCOPE:-pass}" in
  pass) target=sanitizer_pass labels='unit|core|fuzz_regress|fuzz' ;;
  common) target=sanitizer_common labels='common' ;;
  *) echo "ASFLOW_ASAN_SCOPE=$ASFLOW_ASAN_SCOPE: expected pass or common" >&2; exit 2 ;;
esac
tree=build-$preset
cd "$root"
[ -f "$tree/build.ninja" ] || cmake --preset "$preset" >/dev/null
# Every executable of the tree starts with tests/sanitizers/asan_defaults.cc's
# options (whatever environment a test gives the processes it starts):
# reports go to $tree/asan-reports/report.PID, LeakSanitizer stays on with
# tests/sanitizers/lsan.supp (each entry says why it is not our leak). A
# report fails the process that made it; the run fails if any process left
# one, whether or not its test noticed (a daemon SIGKILLed, a worker whose
# exit code nobody reads).
reports=$root/$tree/asan-reports
check_reports() {
  local found=()
  [ -d "$reports" ] && mapfile -t found < <(find "$reports" -type f -name 'report*' | sort)
  [ ${#found[@]} -eq 0 ] && return 0
  echo "ASan/UBSan/LSan: ${#found[@]} process(es) reported ($tree/asan-reports/):" >&2
  for f in "${found[@]}"; do echo "== $f" >&2; head -n 40 "$f" >&2; done
  return 1
}
cd "$tree"
if [ -n "${ASFLOW_FUZZ_SECONDS:-}" ]; then
  cmake -DASFLOW_FUZZ_SECONDS="$ASFLOW_FUZZ_SECONDS" . >/dev/null
fi
status=0
case "$mode" in
  --full)
    ninja
    mkdir -p "$reports" && find "$reports" -type f -delete
    ctest --output-on-failure --timeout 600 -j "$(nproc)" -LE deploy || status=1
    check_reports || status=1
    ;;
  --build-only)
    nice -n 10 ninja "$target"
    ;;
  *)
    [ "$mode" = --test-only ] || ninja "$target"
    mkdir -p "$reports" && find "$reports" -type f -delete
    ctest --output-on-failure --timeout 600 -j "$(nproc)" -L "$labels" || status=1
    check_reports || status=1
    ;;
esac
exit $status
