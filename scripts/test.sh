#!/usr/bin/env bash
# Builds asflow and runs the whole test suite (unit and end-to-end) with ctest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
cd "$root/build"
ctest --output-on-failure --timeout 300 -j "$(nproc)"
