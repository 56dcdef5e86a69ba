#!/usr/bin/env bash
# Remote worker pools against the in-process pool (issue 5's benchmark; a
# measurement, not a timed test). On this machine, over loopback TCP:
#   R1  trivial exec instances (`echo {i}` into data/{i}.txt), instances/s
#   R2  builtin.noop instances (no process, no output), instances/s
#   R3  one instance streaming BYTES of JSON lines into a .zst file, MB/s
# through the local pool, one worker and two workers (same total slots),
# plus `gen | zstd -3` for R3. Prints a markdown table (see bench/README.md).
#
#   bench/remote.sh [--quick] [--reps N] [--only R1,R2,R3]
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${ASFLOW_BUILD:-$ROOT/build}

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"  # log, die, timing, daemon_start/stop, record
parse_args "R1,R2,R3" "$@"

if [ "$QUICK" = 1 ]; then
  N_EXEC=200; N_NOOP=2000; BYTES=$((20 * 1024 * 1024))
else
  N_EXEC=3000; N_NOOP=20000; BYTES=$((1024 * 1024 * 1024))
fi
SLOTS=8  # total slots of every setup: --pool-size 8, 1 x 8, 2 x 4, and the tasks' limit

# --- prerequisites ----------------------------------------------------------
for tool in zstd seq cc; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install zstd coreutils gcc)"
done
if [ ! -x "$BUILD/server/asflowd" ] || [ ! -x "$BUILD/client/asflowctl" ] || [ ! -x "$BUILD/worker/asflow-worker" ]; then
  log "building asflowd, asflowctl and asflow-worker in $BUILD"
  ninja -C "$BUILD" asflowd asflowctl asflow-worker >&2
fi

# --- the bench directory ----------------------------------------------------
WPIDS=()
stop_workers_now() {
  local p
  for p in "${WPIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${WPIDS[@]}"; do
    # A drain waits for running instances; a second signal stops at once.
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
    wait "$p" 2>/dev/null || true
  done
  WPIDS=()
}
cleanup_extra() { stop_workers_now; }
make_bench_dir asflow-rbench "$BUILD/server/asflowd" "$BUILD/client/asflowctl" "$BUILD/worker/asflow-worker"
ASFLOWD="$B/bin/asflowd"
CTL="$B/bin/asflowctl"
WORKER="$B/bin/asflow-worker"
SOCK="$B/asflowd.sock"
STATE="$B/state.db"
WS="$B/ws"
cc -O2 -o "$WS/gen" "$HERE/gen.c" 2>"$B/cc.log" || die "cc bench/gen.c failed: $(cat "$B/cc.log")"
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
SANITIZE=$(sed -n 's/^ASFLOW_SANITIZE:BOOL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- flows ------------------------------------------------------------------
# One file per workload and pool; they differ only in `pool:`. Remote
# commands run in a scratch directory on the worker, hence the absolute path
# of gen. Every task sets limit 8 (the default limit is the CPU count).

# fanout_flow FILE NAME N POOL STEP: `seq N`, then one instance per line
# doing STEP (its `on:`/`run:` or `handler:` lines) in POOL.
fanout_flow() {
  cat >"$1" <<EOF
name: $2
params:
  n: "$3"
tasks:
  - name: ids
    on: ids.txt
    run: [seq, "{n}"]
  - name: item
    for_each:
      lines_of: ids
      as: i
    $5
    pool: $4
    limit: $SLOTS
EOF
}
write_flows() {  # pool
  local pool="$1"
  fanout_flow "$WS/exec.$pool.yaml" bench_remote_exec "$N_EXEC" "$pool" $'on: data/{i}.txt\n    run: [echo, "{i}"]'
  fanout_flow "$WS/noop.$pool.yaml" bench_remote_noop "$N_NOOP" "$pool" 'handler: builtin.noop'
  cat >"$WS/big.$pool.yaml" <<EOF
name: bench_remote_big
params:
  bytes: "$BYTES"
tasks:
  - name: item
    on: big.jsonl.zst
    run: ["$WS/gen", "{bytes}"]
    pool: $pool
EOF
}
write_flows local
write_flows remote

# --- one asflow measurement --------------------------------------------------
# Setups: "K S" = K workers with S slots each on pool "remote" (K = 0: the
# daemon's own pool). Every daemon listens on TCP, also for the local setup,
# so the only difference is where instances run.
setup_name() {  # K S
  local w=workers sl=slots
  [ "$1" != 1 ] || w=worker
  [ "$2" != 1 ] || sl=slot
  if [ "$1" = 0 ]; then echo "local pool (--pool-size $SLOTS)"; else echo "$1 $w x $2 $sl"; fi
}
flow_pool() { [ "$1" = 0 ] && echo local || echo remote; }

start_workers() {  # K S PORT
  local k="$1" s="$2" port="$3" i p
  for i in $(seq "$k"); do
    "$WORKER" --server "127.0.0.1:$port" --pool remote --slots "$s" --name "w$i" \
      --scratch "$B/scratch-w$i" --token-file "$B/token" >>"$B/worker.w$i.log" 2>&1 &
    WPIDS+=($!)
  done
  # Ready = listed by the daemon; the run is submitted only then, so worker
  # start-up is not timed.
  for _ in $(seq 300); do
    [ "$("$CTL" --socket "$SOCK" workers 2>/dev/null | grep -c ' ready ')" = "$k" ] && return 0
    for p in "${WPIDS[@]}"; do
      kill -0 "$p" 2>/dev/null || die "asflow-worker exited at start; log: $(tail -3 "$B"/worker.w*.log)"
    done
    sleep 0.05
  done
  die "$k worker(s) did not join: $("$CTL" --socket "$SOCK" workers 2>&1 | tail -3)"
}
# Stops the workers with a drain (nothing is running any more); sets
# WCPU_S (their summed user + system CPU seconds) and WHWM_KB (the highest
# VmHWM among them), read just before.
stop_workers() {
  local p rc
  WCPU_S=0; WHWM_KB=0
  for p in "${WPIDS[@]}"; do
    WCPU_S=$(awk -v hz="$(getconf CLK_TCK)" -v s="$WCPU_S" '{ printf "%.2f", s + ($14 + $15) / hz }' "/proc/$p/stat")
    WHWM_KB=$(max_of "$WHWM_KB" "$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$p/status")")
  done
  for p in "${WPIDS[@]}"; do kill -TERM "$p"; done
  for p in "${WPIDS[@]}"; do
    rc=0; wait "$p" || rc=$?
    [ "$rc" = 0 ] || die "asflow-worker exited with $rc at drain; log: $(tail -3 "$B"/worker.w*.log)"
  done
  WPIDS=()
}

# Times one run of FLOW (WORKLOAD.POOL.yaml) on a fresh daemon with K
# workers of S slots. Sets T, HWM_KB, CPU_S, WCPU_S, WHWM_KB and FAN_S
# (first start .. last finish of the `item` instances, read back from
# state.db after the daemon stopped; all EXPECT of them must be DONE).
measure() {  # workload K S expect
  local w="$1" k="$2" s="$3" expect="$4" off port cnt fan_ms
  rm -rf "$WS/data" "$WS/ids.txt" "$WS/big.jsonl.zst" "$STATE" "$STATE"-* "$B"/scratch-*
  off=$(stat -c %s "$B/asflowd.log" 2>/dev/null || echo 0)
  [ -f "$B/token" ] || { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo; } >"$B/token"
  DAEMON_ARGS=(--listen 127.0.0.1:0 --token-file "$B/token")
  daemon_start
  port=""
  for _ in $(seq 200); do
    port=$(tail -c +$((off + 1)) "$B/asflowd.log" | sed -n 's/.*asflowd listening on tcp 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | head -1)
    [ -n "$port" ] && break
    sleep 0.02
  done
  [ -n "$port" ] || die "no 'asflowd listening on tcp' line in the log"
  WCPU_S="-"; WHWM_KB=""
  [ "$k" = 0 ] || start_workers "$k" "$s" "$port"
  time_run "$w.$(flow_pool "$k").yaml"
  [ "$k" = 0 ] || stop_workers
  daemon_stop
  read -r cnt fan_ms < <(sqlite3 -separator ' ' "$STATE" \
    "SELECT count(*), max(finished_ms) - min(started_ms) FROM instances WHERE task = 'item' AND state = 3")
  [ "$cnt" = "$expect" ] || die "$w $(setup_name "$k" "$s"): $cnt item instances DONE in state.db, expected $expect"
  # shellcheck disable=SC2034  # read through eval in run_fanout / R3
  FAN_S=$(awk -v ms="$fan_ms" 'BEGIN { printf "%.3f", ms / 1000 }')
}
check_exec() {  # setup name
  local n
  n=$(find "$WS/data" -name '*.txt' | wc -l)
  [ "$n" = "$N_EXEC" ] || die "R1 $1: $n outputs in data/, expected $N_EXEC"
  [ "$(cat "$WS/data/$N_EXEC.txt")" = "$N_EXEC" ] || die "R1 $1: data/$N_EXEC.txt is not '$N_EXEC'"
}
check_big() {  # setup name
  local got
  got=$(zstd -dcq "$WS/big.jsonl.zst" | wc -c)
  [ "$got" = "$BYTES" ] || die "R3 $1: big.jsonl.zst holds $got bytes, expected $BYTES"
}

command -v sqlite3 >/dev/null || die "sqlite3 not found (apt-get install sqlite3): the fan-out times are read from state.db"

declare -A WCPU_MED  # "R1/setup" -> median of the workers' CPU seconds
# Records an asflow row from the arrays of the setup's reps.
record_setup() {  # workload setup N unit note-prefix
  local w="$1" name="$2" n="$3" unit="$4" note="$5" key="$1/$2"
  local -n _t="T_$6" _h="H_$6" _c="C_$6" _wc="WC_$6" _wh="WH_$6" _f="F_$6"
  local fan rate
  fan=$(median "${_f[@]}")
  if [ "$unit" = bytes ]; then
    rate=$(awk -v b="$n" -v t="$fan" 'BEGIN { if (t > 0) printf "%.0f MB/s", b / 1e6 / t; else print "-" }')
  else
    rate=$(per_s "$n" "$fan")
  fi
  note="${note:+$note; }instance(s) alone: ${fan} s = $rate (from state.db; reps: ${_f[*]})"
  if [ "${_wc[0]}" != "-" ]; then
    WCPU_MED["$key"]=$(median "${_wc[@]}")
    note="$note; worker peak RSS $(mb "$(max_of "${_wh[@]}")")"
  fi
  CPUS=("${_c[@]}")
  record "$w" "$name" "$n" "$unit" "$(mb "$(max_of "${_h[@]}")")" "$note" "${_t[@]}"
}

SETUPS_AB=("0 $SLOTS" "1 $SLOTS" "2 $((SLOTS / 2))")
# Runs workload W (exec|noop) over SETUPS_AB, reps interleaved.
run_fanout() {  # R-name workload N
  local r="$1" w="$2" n="$3" rep i k s
  log "$r $w: N=$n, $REPS reps"
  for i in "${!SETUPS_AB[@]}"; do
    eval "T_$i=(); H_$i=(); C_$i=(); WC_$i=(); WH_$i=(); F_$i=()"
  done
  for rep in $(seq "$REPS"); do
    for i in "${!SETUPS_AB[@]}"; do
      read -r k s <<<"${SETUPS_AB[$i]}"
      measure "$w" "$k" "$s" "$n"
      [ "$w" != exec ] || check_exec "$(setup_name "$k" "$s")"
      eval "T_$i+=(\"\$T\"); H_$i+=(\"\$HWM_KB\"); C_$i+=(\"\$CPU_S\"); WC_$i+=(\"\$WCPU_S\"); WH_$i+=(\"\$WHWM_KB\"); F_$i+=(\"\$FAN_S\")"
      log "$r rep $rep $(setup_name "$k" "$s"): ${T}s"
    done
  done
  for i in "${!SETUPS_AB[@]}"; do
    read -r k s <<<"${SETUPS_AB[$i]}"
    record_setup "$r" "$(setup_name "$k" "$s")" "$n" inst "" "$i"
  done
}

# --- R1: trivial exec instances -------------------------------------------------
wants R1 && run_fanout R1 exec "$N_EXEC"
# --- R2: builtin.noop instances -------------------------------------------------
wants R2 && run_fanout R2 noop "$N_NOOP"

# --- R3: one big stream -----------------------------------------------------------
if wants R3; then
  log "R3 one big stream: $BYTES bytes, $REPS reps"
  SETUPS_C=("0 $SLOTS" "1 1")
  for i in "${!SETUPS_C[@]}"; do
    eval "T_$i=(); H_$i=(); C_$i=(); WC_$i=(); WH_$i=(); F_$i=()"
  done
  T_Z=(); T_G=()
  for rep in $(seq "$REPS"); do
    for i in "${!SETUPS_C[@]}"; do
      read -r k s <<<"${SETUPS_C[$i]}"
      measure big "$k" "$s" 1
      [ "$rep" != 1 ] || check_big "$(setup_name "$k" "$s")"
      rm -f "$WS/big.jsonl.zst"
      eval "T_$i+=(\"\$T\"); H_$i+=(\"\$HWM_KB\"); C_$i+=(\"\$CPU_S\"); WC_$i+=(\"\$WCPU_S\"); WH_$i+=(\"\$WHWM_KB\"); F_$i+=(\"\$FAN_S\")"
      log "R3 rep $rep $(setup_name "$k" "$s"): ${T}s"
    done
    time_sh "./gen $BYTES | zstd -3 -q > out.zst"; T_Z+=("$T"); rm -f "$WS/out.zst"
    time_sh "./gen $BYTES > /dev/null"; T_G+=("$T")
  done
  for i in "${!SETUPS_C[@]}"; do
    read -r k s <<<"${SETUPS_C[$i]}"
    record_setup R3 "$(setup_name "$k" "$s")" "$BYTES" bytes "on: big.jsonl.zst (level 3)" "$i"
  done
  record R3 "gen | zstd -3" "$BYTES" bytes "-" "\`./gen $BYTES | zstd -3 -q > out.zst\`" "${T_Z[@]}"
  record R3 "gen > /dev/null" "$BYTES" bytes "-" "the generator alone (bench/gen.c, cc -O2)" "${T_G[@]}"
fi

# --- report ---------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo
echo "## asflow remote workers ($( [ "$QUICK" = 1 ] && echo quick || echo full ), $REPS rep(s), $(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "| workload | setup | N | median wall s | throughput | daemon peak RSS | daemon CPU s | workers CPU s | notes |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for r in "${ROWS[@]}"; do
  IFS=$US read -r w tool n times tp rss notes cpu <<<"$r"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$w" "${tool//|/\\|}" "$n" "${MED[$w/$tool]}" "$tp" "$rss" "$cpu" \
    "${WCPU_MED[$w/$tool]:--}" "${notes//|/\\|}"
done
echo
print_reps
echo
echo "Remote / local (median wall time ratio; > 1: remote is slower):"
echo
L="$(setup_name 0 "$SLOTS")"
for r in R1 R2; do
  wants "$r" || continue
  for k in "1 $SLOTS" "2 $((SLOTS / 2))"; do
    # shellcheck disable=SC2086
    name=$(setup_name $k)
    echo "- $r $name: $(ratio "${MED[$r/$name]}" "${MED[$r/$L]}")x"
  done
done
if wants R3; then
  name=$(setup_name 1 1)
  echo "- R3 $name: $(ratio "${MED[R3/$name]}" "${MED[R3/$L]}")x; local pool vs gen | zstd -3: $(ratio "${MED[R3/$L]}" "${MED[R3/gen | zstd -3]}")x"
fi
echo
echo "Machine:"
echo
echo "- CPUs: $(nproc) ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
echo "- RAM: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "- kernel: $(uname -sr)"
echo "- bench dir: $(df -h --output=fstype,size /dev/shm | tail -1 | awk '{ print $1 ", " $2 }') at /dev/shm; workers on 127.0.0.1 (plaintext gRPC, bearer token)"
echo "- load average at start / end: $LOAD_START / $LOAD_END"
echo "- asflow build: ${BUILD_TYPE:-unknown}, sanitizers ${SANITIZE:-unknown} ($BUILD); asflowd --pool-size $SLOTS --listen 127.0.0.1:0 --token-file"
echo "- tools: $(zstd --version | head -1 | sed 's/^\*\** *//; s/ *\**$//')"
