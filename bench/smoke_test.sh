#!/usr/bin/env bash
# CI smoke test for the benchmark driver: runs `bench/run.sh --quick` (small
# N, one rep, < 60 s) and checks that the table has a row for every workload
# and that every target line was evaluated. It does not judge the numbers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$here/run.sh" --quick >"$out"
cat "$out"
fail=0
need() {
  if ! grep -qE "$1" "$out"; then
    echo "smoke_test: missing: $1" >&2
    fail=1
  fi
}
need '^\| workload \| tool \| N \| median wall s \| throughput \| daemon peak RSS \| daemon CPU s \|'
for row in 'W1 \| asflow \|' 'W1 \| xargs' 'W1 \| parallel' 'W1 \| make' \
           'W2 \| asflow \|' 'W2 \| make' 'W3 \| asflow' \
           'W4 \| asflow \|' 'W4 \| gen \\\| zstd -3 \|' \
           'W5 \| asflow, 0 ' 'W5 \| asflow, 50 '; do
  need "^\| $row"
done
[ "$(grep -cE '^- W[1-5] .* — (met|NOT met)$' "$out")" -ge 8 ] || { echo "smoke_test: target lines missing" >&2; fail=1; }
[ "$fail" = 0 ] && echo "smoke_test: OK"
exit "$fail"
