#!/usr/bin/env bash
# watch_bench.sh: what one slow Watch consumer costs the daemon. Runs
# tests/testdata/watch/many.flow.yaml (N builtin.noop instances, about 2N
# events) on a fresh asflowd in /dev/shm, ROUNDS times without a watcher and
# ROUNDS times with one watcher whose stdout is a pipe nobody reads until the
# run is over; prints a markdown table of the median run wall time (the
# run's own created..finished) and the daemon's peak RSS (VmHWM).
#
# By hand, not in CI; builds nothing. Usage:
#   bench/watch_bench.sh [N] [ROUNDS]        (defaults: 20000 3)
#   ASFLOW_BUILD=build-h bench/watch_bench.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${ASFLOW_BUILD:-build}
[[ $build = /* ]] || build=$root/$build
n=${1:-20000}
rounds=${2:-3}
daemon_bin=$build/server/asflowd
ctl_bin=$build/client/asflowctl
flow=$root/tests/testdata/watch/many.flow.yaml
for bin in "$daemon_bin" "$ctl_bin"; do
  [[ -x $bin ]] || { echo "watch_bench: $bin is missing; build it first" >&2; exit 2; }
done

work=$(mktemp -d /dev/shm/asflow-watch-bench.XXXXXX)
daemon_pid=
cleanup() {
  [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

export HOME=$work/home XDG_RUNTIME_DIR=$work/run XDG_STATE_HOME=$work/state LANG=C
mkdir -p "$HOME/ws" "$XDG_RUNTIME_DIR" "$XDG_STATE_HOME"
cp -r "$root/tests/testdata/e2e/scripts" "$HOME/ws/"
sock=$work/d.sock

ctl() { (cd "$HOME/ws" && "$ctl_bin" --socket "$sock" "$@"); }

# One measurement on a fresh daemon: prints "WALL_MS PEAK_KB GAPS".
measure() {  # MODE(alone|slow) ROUND
  local mode=$1 round=$2 state=$work/state-$1-$2.db log=$work/d-$1-$2.log
  "$daemon_bin" --socket "$sock" --state "$state" --allow-root "$HOME" >"$log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 100); do ctl daemon status >/dev/null 2>&1 && break; sleep 0.1; done
  local run watcher= fifo=$work/fifo-$mode-$round
  run=$(ctl run "$flow" --detach -p "n=$n" -p "round=$mode$round")
  if [[ $mode = slow ]]; then
    mkfifo "$fifo"
    ctl watch "$run" --json >"$fifo" &
    watcher=$!
    exec 3<"$fifo"  # held open, not read: the watcher blocks on a full pipe
  fi
  for _ in $(seq 1200); do
    grep -q "run $run (many) finished" "$log" && break
    sleep 0.05
  done
  local gaps=0
  if [[ -n $watcher ]]; then
    gaps=$(grep -c '"gap":true' <&3 || true)
    exec 3<&-
    wait "$watcher" || true
  fi
  local wall peak
  wall=$(ctl watch "$run" --json | tail -n 1 |
    sed -E 's/.*"created_ms":"([0-9]+)".*"finished_ms":"([0-9]+)".*/\2 \1/' | awk '{print $1 - $2}')
  peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$daemon_pid/status")
  kill "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=
  echo "$wall $peak $gaps"
}

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "watch_bench: $n no-op instances, $rounds rounds per row, $(nproc) cores, binaries in $build" >&2
printf '| watchers | instances | run wall time (median of %d) | asflowd peak RSS (median) | gap snapshots |\n' "$rounds"
printf '|---|---|---|---|---|\n'
for mode in alone slow; do
  : >"$work/results"
  for round in $(seq "$rounds"); do
    measure "$mode" "$round" | tee -a "$work/results" | sed "s/^/  $mode round $round: ms kB gaps = /" >&2
  done
  wall=$(cut -d' ' -f1 "$work/results" | median)
  peak=$(cut -d' ' -f2 "$work/results" | median)
  gaps=$(cut -d' ' -f3 "$work/results" | tr '\n' ' ' | sed 's/ $//')
  label=$([[ $mode = alone ]] && echo "none" || echo "1 slow (unread pipe)")
  printf '| %s | %d | %d ms | %d MB | %s |\n' "$label" "$n" "$wall" $((peak / 1024)) "$gaps"
done
