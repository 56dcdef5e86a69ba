#!/usr/bin/env bash
# Runs tests/web/dashboard_test.mjs: installs its npm packages from
# package-lock.json first if they are missing (npm ci: playwright-core
# only, no browser), then drives Debian's /usr/bin/chromium.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null || { echo "node not found (scripts/install-deps.sh installs nodejs)" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium not found (scripts/install-deps.sh installs chromium)" >&2; exit 1; }
if [ ! -d "$here/node_modules/playwright-core" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
exec nice -n 10 node "$here/dashboard_test.mjs"
