#!/usr/bin/env bash
# Builds asflow and runs the whole test suite (unit and end-to-end) with ctest.
# With ASFLOW_ASAN=1 it then runs the sanitizer pass (scripts/test-asan.sh:
# ASan + UBSan over the unit and core suites and the fuzzers; docs/testing.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
cd "$root/build"
ctest --output-on-failure --timeout 300 -j "$(nproc)"
if [ "${ASFLOW_ASAN:-0}" = 1 ]; then
  "$root/scripts/test-asan.sh"
fi
