#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo flow through a local
# asflowd (started on demand by asflowctl), twice: the second run finds
# every output present and runs nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
echo "== building asflow (the first build takes a few minutes)"
"$root/scripts/build.sh" >/dev/null
ctl="$root/build/client/asflowctl"

# The daemon accepts workspaces under $HOME by default, so the demo runs in
# a copy there.
demo=${ASFLOW_DEMO_DIR:-$HOME/asflow-demo}
mkdir -p "$demo"
cp -r "$root/examples/demo/." "$demo/"
cd "$demo"

echo "== first run: fetches everything"
"$ctl" run demo.flow.yaml
echo
echo "== second run: every output exists, nothing runs"
"$ctl" run demo.flow.yaml
echo
echo "outputs are in $demo/data; read one with:"
echo "  $ctl cat $demo/data/transcripts/vid001.jsonl.gz | head -3"
"$ctl" cat "$demo/data/transcripts/vid001.jsonl.gz" | head -3
echo "the daemon keeps running; stop it with: $ctl daemon stop"
