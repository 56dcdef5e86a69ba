#!/usr/bin/env bash
# Builds asflow and runs the whole test suite (unit and end-to-end) with ctest.
# With ASFLOW_ASAN=1 it also runs the sanitizer pass
# (scripts/test-asan.sh: ASan + UBSan, by default over the common and spec
# libraries' suites and fuzzers; docs/testing.md) in build-asan-ci/, over the plain tree's
# generated code. ASFLOW_ASAN_BUILD says when its tree is built:
# "background" (under nice, while the plain suite runs, whose end-to-end
# tests spend most of their time waiting on processes) or "after" (once the
# plain suite is over); its tests always run after the plain suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
asan=${ASFLOW_ASAN:-0}
asan_build=${ASFLOW_ASAN_BUILD:-background}
case "$asan_build" in
  background|after) ;;
  *) echo "test.sh: ASFLOW_ASAN_BUILD=$asan_build: expected background or after" >&2; exit 2 ;;
esac
export ASFLOW_ASAN_PRESET=${ASFLOW_ASAN_PRESET:-asan-ci}
# The common scope unless told otherwise (ASFLOW_ASAN_SCOPE=pass for the unit
# and core suites too): the whole pass added ~13 minutes to CI at stop 24.
export ASFLOW_ASAN_SCOPE=${ASFLOW_ASAN_SCOPE:-common}
asan_pid=
asan_log=$root/build/asan-build.log
# Its own process group (setsid), so an early exit stops ninja and the
# compilers with it.
stop_asan() { if [ -n "$asan_pid" ]; then kill -- "-$asan_pid" 2>/dev/null || true; fi; }
if [ "$asan" = 1 ] && [ "$asan_build" = background ]; then
  setsid "$root/scripts/test-asan.sh" --build-only >"$asan_log" 2>&1 </dev/null &
  asan_pid=$!
  trap stop_asan EXIT
fi
cd "$root/build"
status=0
ctest --output-on-failure --timeout 300 -j "$(nproc)" || status=$?
if [ "$asan" = 1 ]; then
  built=0
  if [ -n "$asan_pid" ]; then
    if wait "$asan_pid"; then built=1; fi
    asan_pid=
  elif "$root/scripts/test-asan.sh" --build-only >"$asan_log" 2>&1 </dev/null; then
    built=1
  fi
  if [ "$built" = 1 ]; then
    "$root/scripts/test-asan.sh" --test-only || status=1
  else
    tail -n 50 "$asan_log"
    echo "test.sh: the sanitizer pass did not build (log: $asan_log)" >&2
    status=1
  fi
fi
exit $status
