#!/usr/bin/env bash
# The dashboard benchmark: time to first paint and tab memory of a run page
# of a 100,000-instance run, and asflowd's CPU during W1 with 10 dashboards
# open versus none (bench/dashboard.mjs; results in docs/benchmarks.md).
#   bench/dashboard.sh [--quick] [--reps N]
# Needs built asflowd and asflowctl, Debian's chromium and node (npm
# installs playwright-core into tests/web from its package-lock.json).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export ASFLOW_BUILD=${ASFLOW_BUILD:-$root/build}
[ -x "$ASFLOW_BUILD/server/asflowd" ] || ninja -C "$ASFLOW_BUILD" asflowd asflowctl >&2
[ -x /usr/bin/chromium ] || { echo "dashboard.sh: /usr/bin/chromium not found (apt-get install chromium)" >&2; exit 1; }
if [ ! -d "$root/tests/web/node_modules/playwright-core" ]; then
  (cd "$root/tests/web" && npm ci --no-audit --no-fund --loglevel=error)
fi
exec node "$here/dashboard.mjs" "$@"
