#!/usr/bin/env bash
# Refreshes the vendored front-end libraries from the npm registry (by hand,
# when updating them; the build never runs this and needs no Node.js).
#   web/static/vendor/update.sh [PREACT_VERSION] [HTM_VERSION]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
preact=${1:-11.2.0}
htm=${2:-3.1.1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "preact@$preact" "htm@$htm" >/dev/null
mkdir preact htm
tar xzf "preact-$preact.tgz" -C preact
tar xzf "htm-$htm.tgz" -C htm
cp preact/package/dist/preact.mjs "$here/preact.mjs"
# hooks import "preact" by bare name; the pages load files by path (no
# import map: the Content-Security-Policy allows no inline script).
sed 's|from"preact"|from"./preact.mjs"|' preact/package/hooks/dist/hooks.mjs >"$here/hooks.mjs"
cp htm/package/dist/htm.module.js "$here/htm.mjs"
cp preact/package/LICENSE "$here/LICENSE.preact"
cp htm/package/LICENSE "$here/LICENSE.htm"
printf 'preact %s (MIT)\nhtm %s (Apache-2.0)\n' "$preact" "$htm" >"$here/VERSIONS"
