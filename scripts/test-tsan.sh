#!/usr/bin/env bash
# The ThreadSanitizer pass, by hand (not in CI: the instrumented abseil it
# needs takes ~40 minutes to build; docs/testing.md). Configures the tsan
# preset into build-tsan/, builds everything (nice -n 10, -j2), checks that
# the binaries load the instrumented abseil of scripts/build-tsan-abseil.sh
# and not Debian's, runs ctest, and fails if any process wrote a report.
#
# Every executable of the tsan tree starts with the suppressions of
# tests/sanitizers/tsan.supp and writes its reports to
# build-tsan/tsan-reports/report.PID (tests/sanitizers/tsan_defaults.cc), so
# the reports of processes the tests start — daemons, workers, asflowctl,
# the Python tests' daemons — are found as well as the test binaries' own.
#
# TSan makes the binaries several times slower: the tsan preset sets
# ASFLOW_TEST_TIME_SCALE=5, which multiplies ctest's TIMEOUTs
# (tests/CMakeLists.txt), and this script exports the same number to the
# tests, which multiply their waits and the upper bounds of the durations
# they assert by it (tests/e2e/e2e_process.h, the shell tests). An
# ASFLOW_TEST_TIME_SCALE in the environment overrides it for the tests'
# own bounds (ctest's TIMEOUTs stay the preset's).
#
#   scripts/test-tsan.sh [--build-only|--test-only] [CTEST ARGS...]
# CTEST ARGS default to `-LE deploy` (everything but the podman deploy
# tests, which package the plain build); e.g. `-L unit`, `-R WatchTest`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=
case "${1:-}" in
  --build-only|--test-only) mode=$1; shift ;;
  -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
esac
[ $# -gt 0 ] || set -- -LE deploy
cd "$root"
if [ ! -e build-tsan/abseil/lib/libabsl_synchronization.so ]; then
  echo "build-tsan/abseil is missing: run scripts/build-tsan-abseil.sh first (~40 minutes, once)" >&2
  exit 1
fi
# Configured again each time (quick): a tree configured before the preset
# gained a variable (ASFLOW_TEST_TIME_SCALE) takes it.
cmake --preset tsan >/dev/null
if [ "$mode" != --test-only ]; then
  nice -n 10 ninja -C build-tsan -j2
fi
[ "$mode" = --build-only ] && exit 0

# The whole point of the tree: every binary resolves abseil to the
# instrumented copy. (ldd follows DT_RPATH for indirect dependencies too.)
for bin in build-tsan/server/asflowd build-tsan/client/asflowctl build-tsan/worker/asflow-worker \
           build-tsan/tests/scheduler_test; do
  [ -x "$bin" ] || continue
  if ldd "$bin" | grep 'libabsl_' | grep -v "=> $root/build-tsan/abseil/lib/" >&2; then
    echo "$bin: loads an abseil that is not build-tsan/abseil (above)" >&2
    exit 1
  fi
done

scale=$(sed -n 's/^ASFLOW_TEST_TIME_SCALE:[A-Z]*=//p' build-tsan/CMakeCache.txt)
export ASFLOW_TEST_TIME_SCALE=${ASFLOW_TEST_TIME_SCALE:-${scale:-1}}
echo "ASFLOW_TEST_TIME_SCALE=$ASFLOW_TEST_TIME_SCALE (ctest TIMEOUTs x${scale:-1})"

reports=$root/build-tsan/tsan-reports
rm -rf "$reports"
mkdir -p "$reports"
status=0
(cd build-tsan && nice -n 10 ctest --output-on-failure -j2 "$@") || status=$?
shopt -s nullglob
found=("$reports"/report.*)
if [ ${#found[@]} -gt 0 ]; then
  echo "ThreadSanitizer: ${#found[@]} process(es) reported (build-tsan/tsan-reports/):" >&2
  for f in "${found[@]}"; do
    pid=${f##*.}
    echo "--- $f ($(grep -c '^WARNING: ThreadSanitizer' "$f") warnings)" >&2
    grep -m3 -A12 '^WARNING: ThreadSanitizer' "$f" >&2 || head -20 "$f" >&2
  done
  status=1
else
  echo "ThreadSanitizer: no report"
fi
exit $status
