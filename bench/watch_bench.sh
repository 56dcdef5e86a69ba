#!/usr/bin/env bash
# watch_bench.sh: what Watch consumers cost. Two modes, by hand, not in CI;
# they build nothing.
#
# Default: one slow consumer. Runs tests/testdata/watch/many.flow.yaml (N
# builtin.noop instances, about 2N events) on a fresh asflowd in /dev/shm,
# ROUNDS times without a watcher and ROUNDS times with one watcher whose
# stdout is a pipe nobody reads until the run is over; prints a markdown
# table of the median run wall time (the run's own created..finished) and
# the daemon's peak RSS (VmHWM).
#   bench/watch_bench.sh [N] [ROUNDS]        (defaults: 20000 3)
#   ASFLOW_BUILD=build-h bench/watch_bench.sh
#
# w5: bench/run.sh's W5 (the W1 flow, limit 4, `run --detach`, then K
# `watch RUN --json > /dev/null` plus one `watch RUN --plain`, timed from
# the submit until the last watcher exits) with N as an argument and
# several builds compared in one session, reps interleaved (rep 1 of every
# build with 0 and with K watchers, then rep 2, ...). Prints one line per
# measurement (wall, daemon peak RSS, daemon CPU and its children's CPU,
# the clients' CPU, load) and a table of medians.
#   bench/watch_bench.sh w5 N REPS K LABEL=BUILD_DIR [LABEL=BUILD_DIR...]
#   e.g. bench/watch_bench.sh w5 4000 3 50 main=/dev/shm/main-build new=build
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

if [[ ${1:-} = w5 ]]; then
  [[ $# -ge 5 ]] || { sed -n '2,25p' "$0" >&2; exit 2; }
  export LC_ALL=C
  n=$2 reps=$3 k=$4
  shift 4
  work=$(mktemp -d /dev/shm/asflow-w5-bench.XXXXXX)
  daemon_pid=
  trap '[[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null; rm -rf "$work"' EXIT
  mkdir -p "$work/ws"
  cp "$root/bench/item.sh" "$root/bench/flows/w1.yaml" "$work/ws/"
  labels=()
  for set in "$@"; do
    label=${set%%=*} dir=${set#*=}
    [[ $dir = /* ]] || dir=$root/$dir
    mkdir -p "$work/bin/$label"
    # Copies: a rebuild during the run does not change what is measured.
    cp "$dir/server/asflowd" "$dir/client/asflowctl" "$work/bin/$label/"
    labels+=("$label")
  done
  sock=$work/d.sock state=$work/state.db
  children_cpu() {  # sets CC: CPU seconds of this shell's reaped children
    times >"$work/times"
    CC=$(tail -1 "$work/times" | awk '{ s = 0; for (i = 1; i <= 2; ++i) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%.2f", s }')
  }
  measure() {  # LABEL WATCHERS: one line of results
    local bin=$work/bin/$1 watchers=$2 pids=() rc=0 c0 t0 t1 id p
    rm -rf "$work/ws/data" "$work/ws/ids.txt" "$state" "$state"-* "$sock"
    "$bin/asflowd" --socket "$sock" --state "$state" --allow-root "$work" --pool-size 8 >>"$work/d.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 200); do [[ -S $sock ]] && break; sleep 0.02; done
    sleep 0.1
    children_cpu; c0=$CC
    t0=$EPOCHREALTIME
    id=$(cd "$work/ws" && "$bin/asflowctl" --socket "$sock" run w1.yaml -p "n=$n" --detach)
    for _ in $(seq "$watchers"); do
      "$bin/asflowctl" --socket "$sock" watch "$id" --json >/dev/null 2>>"$work/watch.err" &
      pids+=($!)
    done
    "$bin/asflowctl" --socket "$sock" watch "$id" --plain >"$work/run.log" 2>&1 || rc=$?
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    t1=$EPOCHREALTIME
    children_cpu
    local hwm cpu outputs
    hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$daemon_pid/status")
    cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f %.2f", ($14 + $15) / hz, ($16 + $17) / hz }' "/proc/$daemon_pid/stat")
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
    daemon_pid=
    outputs=$(find "$work/ws/data" -name '*.jsonl.zst' | wc -l)
    if [[ $rc != 0 || $outputs != "$n" ]]; then
      echo "watch_bench: $1 with $watchers watchers failed (exit $rc, $outputs outputs): $(tail -3 "$work/watch.err")" >&2
      exit 1
    fi
    # label watchers wall_s rss_mb daemon_cpu_s children_cpu_s clients_cpu_s load
    printf '%s %d %.3f %d %s %.2f %s\n' "$1" "$watchers" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
      $((hwm / 1024)) "$cpu" "$(awk -v a="$c0" -v b="$CC" 'BEGIN { print b - a }')" "$(cut -d' ' -f1 /proc/loadavg)"
  }
  echo "watch_bench w5: N=$n, $reps reps, $k watchers, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  echo "# label watchers wall_s daemon_rss_mb daemon_cpu_s daemon_children_cpu_s clients_cpu_s load" >&2
  : >"$work/results"
  for rep in $(seq "$reps"); do
    for label in "${labels[@]}"; do
      for watchers in 0 "$k"; do
        measure "$label" "$watchers" | tee -a "$work/results" >&2
      done
    done
  done
  printf '| build | watchers | median wall s | vs 0 watchers | max daemon RSS MB | median daemon CPU s | median clients CPU s |\n'
  printf '|---|---|---|---|---|---|---|\n'
  for label in "${labels[@]}"; do
    base=
    for watchers in 0 "$k"; do
      med() { awk -v l="$label" -v w="$watchers" -v c="$1" '$1 == l && $2 == w { print $c }' "$work/results" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
      wall=$(med 3)
      [[ -n $base ]] || base=$wall
      rss=$(awk -v l="$label" -v w="$watchers" '$1 == l && $2 == w { print $4 }' "$work/results" | sort -g | tail -1)
      printf '| %s | %d | %s | %s | %s | %s | %s |\n' "$label" "$watchers" "$wall" \
        "$(awk -v a="$base" -v b="$wall" 'BEGIN { printf "%+.0f%%", 100 * (b / a - 1) }')" "$rss" "$(med 5)" "$(med 7)"
    done
  done
  exit 0
fi

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
