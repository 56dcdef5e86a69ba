#!/usr/bin/env bash
# CI smoke test for the benchmark drivers: runs `bench/run.sh --quick` (small
# N, one rep, < 60 s) and `bench/remote.sh --quick` (< 30 s) and checks that
# the tables have a row for every workload and setup and that every target
# line was evaluated. It does not judge the numbers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp)
rout=$(mktemp)
trap 'rm -f "$out" "$rout"' EXIT
"$here/run.sh" --quick >"$out"
cat "$out"
"$here/remote.sh" --quick >"$rout"
cat "$rout"
fail=0
need() {  # regex [file]
  if ! grep -qE "$1" "${2:-$out}"; then
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
need '^\| workload \| setup \| N \| median wall s \| throughput \| daemon peak RSS \|' "$rout"
for row in 'R[12] \| local pool' 'R[12] \| 1 worker x 8 slots' 'R[12] \| 2 workers x 4 slots'; do
  [ "$(grep -cE "^\| $row .* inst/s \|" "$rout")" = 2 ] || { echo "smoke_test: remote.sh rows missing: $row" >&2; fail=1; }
done
for row in 'R3 \| local pool' 'R3 \| 1 worker x 1 slot \|' 'R3 \| gen \\\| zstd -3 \|'; do
  need "^\| $row" "$rout"
done
[ "$fail" = 0 ] && echo "smoke_test: OK"
exit "$fail"
