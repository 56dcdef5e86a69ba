#!/usr/bin/env bash
# A/B of two asflow builds on asflow's own workloads (W1 fan-out exec, W2
# nothing to do, W3 scheduling overhead; see bench/README.md), interleaved
# rep by rep (A B, then B A, ...) so that a shared, noisy machine loads both
# alike, and printed as medians with the ratio NEW / BASE.
#
#   bench/compare.sh BASE_BUILD [NEW_BUILD] [--quick] [--reps N] [--only W1,W3]
#
# BUILD is a CMake build directory holding server/asflowd and
# client/asflowctl (NEW_BUILD defaults to this tree's build/). Use it before
# and after a change to a hot path: e.g. a worktree of the old commit,
# built, as BASE_BUILD. Runs under /dev/shm like bench/run.sh.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BASE_BUILD=$(cd "$1" && pwd); shift
NEW_BUILD=$ROOT/build
if [ $# -ge 1 ] && [ "${1#-}" = "$1" ]; then NEW_BUILD=$(cd "$1" && pwd); shift; fi

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
parse_args "W1,W2,W3" "$@"
if [ "$QUICK" = 1 ]; then N1=300; N3=5000; REPS=3; else N1=2000; N3=50000; fi
LIMIT=4

for build in "$BASE_BUILD" "$NEW_BUILD"; do
  for bin in server/asflowd client/asflowctl; do
    [ -x "$build/$bin" ] || die "$build/$bin not found (build it first)"
  done
done
make_bench_dir asflow-compare
for side in base new; do
  build=$BASE_BUILD; [ "$side" = new ] && build=$NEW_BUILD
  mkdir -p "$B/bin/$side"
  cp "$build/server/asflowd" "$build/client/asflowctl" "$B/bin/$side/"
done
SOCK="$B/asflowd.sock"
STATE="$B/state.db"
WS="$B/ws"
cp "$HERE/item.sh" "$HERE"/flows/*.yaml "$WS/"
use() { ASFLOWD="$B/bin/$1/asflowd"; CTL="$B/bin/$1/asflowctl"; }
clean() { rm -rf "$WS/data" "$WS/ids.txt" "$WS/ids3.txt" "$STATE" "$STATE"-*; }

declare -A TIMES=() CPU=()
# measure SIDE WORKLOAD: one rep of WORKLOAD with SIDE's binaries.
measure() {
  local side="$1" w="$2"
  use "$side"
  case "$w" in
    W1)
      clean; daemon_start; time_run w1.yaml -p "n=$N1"; daemon_stop
      [ "$(find "$WS/data" -name '*.jsonl.zst' | wc -l)" = "$N1" ] || die "W1 $side: outputs missing"
      ;;
    W2)
      clean; daemon_start; time_run w1.yaml -p "n=$N1"; daemon_stop  # setup, not measured
      daemon_start; time_run w1.yaml -p "n=$N1"; daemon_stop
      grep -q "item: $N1 instances, $N1 cached" "$B/run.log" || die "W2 $side: not all cached: $(head -3 "$B/run.log")"
      ;;
    W3)
      clean; daemon_start; time_run w3.yaml -p "n=$N3"; daemon_stop
      ;;
  esac
  TIMES["$w/$side"]+="$T "
  CPU["$w/$side"]+="$CPU_S "
}

log "base: $BASE_BUILD; new: $NEW_BUILD; $REPS reps, interleaved (load $(cut -d' ' -f1-3 /proc/loadavg))"
for w in W1 W2 W3; do
  wants "$w" || continue
  for rep in $(seq "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="base new"; else order="new base"; fi
    for side in $order; do measure "$side" "$w"; done
    log "$w rep $rep: base $(echo "${TIMES[$w/base]}" | awk '{ print $NF }') s, new $(echo "${TIMES[$w/new]}" | awk '{ print $NF }') s"
  done
done

echo "| workload | N | base median s | new median s | new / base | base daemon CPU s | new daemon CPU s |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for w in W1 W2 W3; do
  wants "$w" || continue
  n=$N1; [ "$w" = W3 ] && n=$N3
  # shellcheck disable=SC2086
  mb=$(median ${TIMES[$w/base]}); mn=$(median ${TIMES[$w/new]})
  # shellcheck disable=SC2086
  cb=$(median ${CPU[$w/base]}); cn=$(median ${CPU[$w/new]})
  ratio=$(awk -v a="$mb" -v b="$mn" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')
  echo "| $w | $n | $mb | $mn | $ratio | $cb | $cn |"
done
echo
echo "Per-rep wall times (s):"
for w in W1 W2 W3; do
  wants "$w" || continue
  echo "- $w base: ${TIMES[$w/base]}"
  echo "- $w new: ${TIMES[$w/new]}"
done
echo
echo "Machine: $(nproc) CPUs, load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
