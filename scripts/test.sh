#!/usr/bin/env bash
# Builds asflow and runs the whole test suite (unit and end-to-end) with ctest.
# With ASFLOW_ASAN=1 (what CI runs) it also runs the sanitizer pass
# (scripts/test-asan.sh: ASan + UBSan over the unit and core suites and the
# fuzzers; docs/testing.md): its tree is built under nice while the plain
# suite runs, whose end-to-end tests spend most of their time waiting on
# processes, and its tests run after.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
asan_pid=
asan_log=$root/build/asan-build.log
# Its own process group (setsid), so an early exit stops ninja and the
# compilers with it.
stop_asan() { if [ -n "$asan_pid" ]; then kill -- "-$asan_pid" 2>/dev/null || true; fi; }
if [ "${ASFLOW_ASAN:-0}" = 1 ]; then
  setsid "$root/scripts/test-asan.sh" --build-only >"$asan_log" 2>&1 </dev/null &
  asan_pid=$!
  trap stop_asan EXIT
fi
cd "$root/build"
status=0
ctest --output-on-failure --timeout 300 -j "$(nproc)" || status=$?
if [ -n "$asan_pid" ]; then
  if wait "$asan_pid"; then
    asan_pid=
    "$root/scripts/test-asan.sh" --test-only || status=1
  else
    asan_pid=
    tail -n 50 "$asan_log"
    echo "test.sh: the sanitizer pass did not build (log: $asan_log)" >&2
    status=1
  fi
fi
exit $status
