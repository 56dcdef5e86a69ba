#!/usr/bin/env bash
# Configures (once) and builds asflow into build/ with CMake + Ninja.
# Extra arguments go to cmake, e.g. -DASFLOW_SANITIZE=ON.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
if [ ! -f "$root/build/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S "$root" -B "$root/build" -G Ninja "$@" >/dev/null
fi
ninja -C "$root/build"
