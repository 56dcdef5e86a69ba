#!/usr/bin/env bash
# Runs the asflow benchmarks (W1..W5, see bench/README.md) through asflow and
# through the alternatives, on this machine, in one go, and prints a markdown
# table plus the per-rep times and the machine.
#
#   bench/run.sh [--quick] [--reps N] [--only W1,W3]
#
# Everything happens in a fresh directory under /dev/shm (tmpfs), removed at
# the end. Every asflow measurement starts a fresh asflowd on its own socket
# and state file, so the daemon's peak RSS is per measurement.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${ASFLOW_BUILD:-$ROOT/build}

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"  # log, die, timing, daemon_start/stop, record (shared with remote.sh)
parse_args "W1,W2,W3,W4,W5" "$@"

if [ "$QUICK" = 1 ]; then
  N1=300; N3=5000; W4_BYTES=$((50 * 1024 * 1024)); WATCHERS=50
else
  N1=10000; N3=100000; W4_BYTES=$((1024 * 1024 * 1024)); WATCHERS=50
fi
LIMIT=4  # W1's limit, and -P/-j of the alternatives

# --- prerequisites ----------------------------------------------------------
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
for tool in zstd make xargs seq; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install zstd make findutils coreutils)"
done
if ! command -v parallel >/dev/null; then
  log "installing GNU parallel"
  $SUDO apt-get install -y parallel >/dev/null || die "could not install GNU parallel"
fi
if [ ! -x "$BUILD/server/asflowd" ] || [ ! -x "$BUILD/client/asflowctl" ]; then
  log "building asflowd and asflowctl in $BUILD"
  ninja -C "$BUILD" asflowd asflowctl >&2
fi

# --- the bench directory ----------------------------------------------------
make_bench_dir asflow-bench "$BUILD/server/asflowd" "$BUILD/client/asflowctl"
ASFLOWD="$B/bin/asflowd"
CTL="$B/bin/asflowctl"
SOCK="$B/asflowd.sock"
STATE="$B/state.db"
WS="$B/ws"
cp "$HERE/item.sh" "$HERE/bench.mk" "$HERE"/flows/*.yaml "$WS/"
if command -v cc >/dev/null && cc -O2 -o "$WS/gen" "$HERE/gen.c" 2>"$B/cc.log"; then
  GEN_KIND="bench/gen.c (cc -O2)"
else
  # Fallback: a constant line; zstd has less work, the table says so.
  cat >"$WS/gen" <<'GEN'
#!/bin/sh
yes '{"id":1,"user":"u00001","score":1,"tag":"0b51edbf57909697","text":"lorem ipsum"}' | head -c "$1"
GEN
  chmod +x "$WS/gen"
  GEN_KIND="yes | head -c (no C compiler)"
fi
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
SANITIZE=$(sed -n 's/^ASFLOW_SANITIZE:BOOL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

clean_w1() { rm -rf "$WS/data" "$WS/ids.txt" "$STATE" "$STATE"-*; }
check_w1() {  # $1 tool: every output present, and item 1 has its 100 lines
  local n
  n=$(find "$WS/data" -name '*.jsonl.zst' | wc -l)
  [ "$n" = "$N1" ] || die "$1: $n outputs in data/, expected $N1"
  [ "$(zstd -dcq "$WS/data/1.jsonl.zst" | wc -l)" = 100 ] || die "$1: data/1.jsonl.zst is not 100 lines"
}

# --- W1: fan-out exec ---------------------------------------------------------
ALT_W1=(
  "xargs -P$LIMIT|seq $N1 | xargs -P$LIMIT -I{} sh -c 'sh item.sh {} | zstd -q > data/{}.jsonl.zst'"
  "parallel -j$LIMIT|seq $N1 | parallel --will-cite -j$LIMIT 'sh item.sh {} | zstd -q > data/{}.jsonl.zst'"
  "make -j$LIMIT|make -r -j$LIMIT -f bench.mk N=$N1"
)
if wants W1; then
  log "W1 fan-out exec: N=$N1, $REPS reps"
  declare -A W1T=()
  W1_HWM=(); W1_CPU=()
  for rep in $(seq "$REPS"); do
    clean_w1
    daemon_start
    time_run w1.yaml -p "n=$N1"
    daemon_stop
    check_w1 asflow
    W1T[asflow]+="$T "; W1_HWM+=("$HWM_KB"); W1_CPU+=("$CPU_S")
    for alt in "${ALT_W1[@]}"; do
      clean_w1; mkdir -p "$WS/data"
      time_sh "${alt#*|}"
      check_w1 "${alt%%|*}"
      W1T["${alt%%|*}"]+="$T "
    done
  done
  CPUS=("${W1_CPU[@]}")
  # shellcheck disable=SC2086
  record W1 asflow "$N1" inst "$(mb "$(max_of "${W1_HWM[@]}")")" "limit $LIMIT" ${W1T[asflow]}
  for alt in "${ALT_W1[@]}"; do
    # shellcheck disable=SC2086
    record W1 "${alt%%|*}" "$N1" inst "-" "\`${alt#*|}\`" ${W1T[${alt%%|*}]}
  done
fi

# --- W2: nothing to do --------------------------------------------------------
if wants W2; then
  log "W2 nothing to do: N=$N1, $REPS reps"
  clean_w1
  daemon_start
  time_run w1.yaml -p "n=$N1"   # produces the outputs (not measured)
  daemon_stop
  check_w1 "asflow (W2 setup)"
  cp "$STATE" "$B/state.w2"
  T_KEPT=(); T_EMPTY=(); T_MAKE=(); H_KEPT=(); H_EMPTY=(); C_KEPT=(); C_EMPTY=()
  for rep in $(seq "$REPS"); do
    rm -f "$STATE" "$STATE"-*; cp "$B/state.w2" "$STATE"
    daemon_start; time_run w1.yaml -p "n=$N1"; daemon_stop
    grep -q "item: $N1 instances, $N1 cached" "$B/run.log" || die "W2: asflow (state kept) did not find all $N1 cached: $(head -5 "$B/run.log")"
    T_KEPT+=("$T"); H_KEPT+=("$HWM_KB"); C_KEPT+=("$CPU_S")
    rm -f "$STATE" "$STATE"-*
    daemon_start; time_run w1.yaml -p "n=$N1"; daemon_stop
    grep -q "item: $N1 instances, $N1 cached" "$B/run.log" || die "W2: asflow (empty state) did not find all $N1 cached: $(head -5 "$B/run.log")"
    T_EMPTY+=("$T"); H_EMPTY+=("$HWM_KB"); C_EMPTY+=("$CPU_S")
    time_sh "make -r -j$LIMIT -f bench.mk N=$N1"
    grep -q "Nothing to be done" "$B/alt.log" || die "W2: make ran something: $(head -3 "$B/alt.log")"
    T_MAKE+=("$T")
  done
  CPUS=("${C_KEPT[@]}")
  record W2 "asflow" "$N1" inst "$(mb "$(max_of "${H_KEPT[@]}")")" "state of the run that wrote the outputs" "${T_KEPT[@]}"
  CPUS=("${C_EMPTY[@]}")
  record W2 "asflow (empty state)" "$N1" inst "$(mb "$(max_of "${H_EMPTY[@]}")")" "fresh state.db: cached by file only" "${T_EMPTY[@]}"
  record W2 "make -j$LIMIT" "$N1" inst "-" "up to date" "${T_MAKE[@]}"
fi

# --- W3: scheduling overhead --------------------------------------------------
W3_NOTE=""
if wants W3; then
  log "W3 scheduling overhead: N=$N3, $REPS reps"
  T_WALL=(); T_FAN=(); H3=(); PER=(); C3=()
  for rep in $(seq "$REPS"); do
    rm -f "$WS/ids3.txt" "$STATE" "$STATE"-*
    daemon_start
    base=$BASE_KB
    time_run w3.yaml -p "n=$N3"
    daemon_stop
    T_WALL+=("$T"); H3+=("$HWM_KB"); C3+=("$CPU_S")
    PER+=("$(awk -v h="$HWM_KB" -v b="$base" -v n="$N3" 'BEGIN { printf "%.0f", (h - b) * 1024 / n }')")
    if command -v sqlite3 >/dev/null; then
      # Read back from the state file after the daemon stopped: what was
      # recorded durably. Fan-out time = first start .. last finish of noop.
      read -r cnt fan_ms < <(sqlite3 -separator ' ' "$STATE" \
        "SELECT count(*), max(finished_ms) - min(started_ms) FROM instances WHERE task = 'noop' AND state = 3")
      [ "$cnt" = "$N3" ] || die "W3: $cnt noop instances DONE in SQLite, expected $N3"
      T_FAN+=("$(awk -v ms="$fan_ms" 'BEGIN { printf "%.3f", ms / 1000 }')")
    fi
  done
  if [ ${#T_FAN[@]} -gt 0 ]; then
    W3_FAN_MED=$(median "${T_FAN[@]}")
    W3_RATE=$(awk -v n="$N3" -v t="$W3_FAN_MED" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }')
    W3_NOTE="fan-out ${W3_FAN_MED}s (reps: ${T_FAN[*]}) from SQLite"
  else
    W3_RATE=$(awk -v n="$N3" -v t="$(median "${T_WALL[@]}")" 'BEGIN { printf "%.0f", n / t }')
    W3_NOTE="no sqlite3: throughput from whole-run time"
  fi
  W3_PER=$(median "${PER[@]}")
  CPUS=("${C3[@]}")
  record W3 "asflow builtin.noop" "$N3" inst "$(mb "$(max_of "${H3[@]}")")" "$W3_NOTE; ${W3_PER} B/instance above baseline" "${T_WALL[@]}"
  # The row's throughput is the fan-out's, not N / wall.
  ROWS[-1]=$(awk -F"$US" -v OFS="$US" -v r="$W3_RATE inst/s" '{ $5 = r; print }' <<<"${ROWS[-1]}")
fi

# --- W4: one big stream ---------------------------------------------------------
if wants W4; then
  log "W4 one big stream: $W4_BYTES bytes, $REPS reps"
  T_A=(); T_Z=(); T_ZT=(); T_G=(); H4=(); C4=()
  for rep in $(seq "$REPS"); do
    rm -f "$WS/big.jsonl.zst" "$WS/out.zst" "$STATE" "$STATE"-*
    daemon_start; time_run w4.yaml -p "bytes=$W4_BYTES"; daemon_stop
    T_A+=("$T"); H4+=("$HWM_KB"); C4+=("$CPU_S")
    if [ "$rep" = 1 ]; then
      got=$(zstd -dcq "$WS/big.jsonl.zst" | wc -c)
      [ "$got" = "$W4_BYTES" ] || die "W4: big.jsonl.zst holds $got bytes, expected $W4_BYTES"
    fi
    rm -f "$WS/big.jsonl.zst"
    time_sh "./gen $W4_BYTES | zstd -3 -q > out.zst"; T_Z+=("$T"); rm -f "$WS/out.zst"
    time_sh "./gen $W4_BYTES | zstd -3 -T0 -q > out.zst"; T_ZT+=("$T"); rm -f "$WS/out.zst"
    time_sh "./gen $W4_BYTES > /dev/null"; T_G+=("$T")
  done
  CPUS=("${C4[@]}")
  record W4 asflow "$W4_BYTES" bytes "$(mb "$(max_of "${H4[@]}")")" "on: big.jsonl.zst (level 3)" "${T_A[@]}"
  record W4 "gen | zstd -3" "$W4_BYTES" bytes "-" "zstd CLI defaults: -T1 (one compression thread beside its I/O)" "${T_Z[@]}"
  record W4 "gen | zstd -3 -T0" "$W4_BYTES" bytes "-" "extra: zstd on every core" "${T_ZT[@]}"
  record W4 "gen > /dev/null" "$W4_BYTES" bytes "-" "the generator alone ($GEN_KIND)" "${T_G[@]}"
fi

# --- W5: watchers ---------------------------------------------------------------
# Submit with --detach, start K `watch RUN --json > /dev/null` plus one
# `watch RUN --plain > log`; the time runs from the submit to the moment the
# last of the K+1 watchers has exited.
# Sets CC to the CPU seconds (user + system) of this shell's reaped children
# so far (not in a $(...) subshell: it would count its own children).
children_cpu() {
  times >"$B/times"
  CC=$(tail -1 "$B/times" | awk '{ s = 0; for (i = 1; i <= 2; ++i) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%.2f", s }')
}
# Sets T and WCPU (CPU seconds of the submitting asflowctl and the watchers).
time_watched() {
  local k="$1" t0 t1 id pids=() rc=0 p c0
  children_cpu; c0=$CC
  t0=$(now)
  id=$(cd "$WS" && "$CTL" --socket "$SOCK" run w1.yaml -p "n=$N1" --detach) || die "W5: submit failed"
  id=$(grep -o '[0-9]\+' <<<"$id" | head -1)
  for _ in $(seq "$k"); do
    "$CTL" --socket "$SOCK" watch "$id" --json >/dev/null 2>>"$B/watch.err" &
    pids+=($!)
  done
  "$CTL" --socket "$SOCK" watch "$id" --plain >"$B/run.log" 2>&1 || rc=$?
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  t1=$(now)
  children_cpu
  WCPU=$(awk -v a="$c0" -v b="$CC" 'BEGIN { printf "%.2f", b - a }')
  [ "$rc" = 0 ] || die "W5: a watcher exited with $rc: $(tail -3 "$B/run.log") $(tail -3 "$B/watch.err" 2>/dev/null)"
  T=$(elapsed "$t0" "$t1")
}
if wants W5; then
  log "W5 watchers: N=$N1, $WATCHERS watchers, $REPS reps"
  T0W=(); TKW=(); H0=(); HK=(); C0=(); CK=(); W0=(); WK=()
  for rep in $(seq "$REPS"); do
    clean_w1; daemon_start; time_watched 0; daemon_stop; check_w1 "asflow, 0 watchers"
    T0W+=("$T"); H0+=("$HWM_KB"); C0+=("$CPU_S"); W0+=("$WCPU")
    clean_w1; daemon_start; time_watched "$WATCHERS"; daemon_stop; check_w1 "asflow, $WATCHERS watchers"
    TKW+=("$T"); HK+=("$HWM_KB"); CK+=("$CPU_S"); WK+=("$WCPU")
  done
  CPUS=("${C0[@]}")
  record W5 "asflow, 0 extra watchers" "$N1" inst "$(mb "$(max_of "${H0[@]}")")" "--detach + 1 watch; clients' CPU $(median "${W0[@]}") s" "${T0W[@]}"
  CPUS=("${CK[@]}")
  record W5 "asflow, $WATCHERS extra watchers" "$N1" inst "$(mb "$(max_of "${HK[@]}")")" "--detach + 1 watch + $WATCHERS watch --json; clients' CPU $(median "${WK[@]}") s" "${TKW[@]}"
fi

# --- report ---------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
verdict() { if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "NOT met"; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo
echo "## asflow benchmarks ($( [ "$QUICK" = 1 ] && echo quick || echo full ), $REPS rep(s), $(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "| workload | tool | N | median wall s | throughput | daemon peak RSS | daemon CPU s | notes |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
for r in "${ROWS[@]}"; do
  IFS=$US read -r w tool n times tp rss notes cpu <<<"$r"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$w" "${tool//|/\\|}" "$n" "${MED[$w/$tool]}" "$tp" "$rss" "$cpu" "${notes//|/\\|}"
done
echo
print_reps

echo
echo "Targets:"
echo
if wants W1; then
  a=${MED[W1/asflow]}; x=${MED[W1/xargs -P$LIMIT]}; p=${MED[W1/parallel -j$LIMIT]}
  echo "- W1 asflow <= 1.2x xargs: $(ratio "$a" "$x")x ($a s vs $x s) — $(verdict "$a <= 1.2 * $x")"
  echo "- W1 asflow faster than GNU parallel: $a s vs $p s — $(verdict "$a < $p")"
fi
if wants W2; then
  a=${MED[W2/asflow]}; e=${MED[W2/asflow (empty state)]}; m=${MED[W2/make -j$LIMIT]}
  echo "- W2 asflow < 0.5 s: $a s (empty state: $e s) — $(verdict "$a < 0.5")"
  echo "- W2 asflow <= make -j$LIMIT: $a s vs $m s — $(verdict "$a <= $m")"
fi
if wants W3; then
  echo "- W3 >= 20,000 inst/s recorded in SQLite: $W3_RATE inst/s — $(verdict "$W3_RATE >= 20000")"
  echo "- W3 <= 300 B/instance above baseline RSS: $W3_PER B — $(verdict "$W3_PER <= 300")"
fi
if wants W4; then
  a=${MED[W4/asflow]}; z=${MED[W4/gen | zstd -3]}
  echo "- W4 >= 90% of gen | zstd -3: $(awk -v a="$a" -v z="$z" 'BEGIN { printf "%.0f%%", 100 * z / a }') ($a s vs $z s) — $(verdict "$z / $a >= 0.9")"
fi
if wants W5; then
  a=${MED[W5/asflow, 0 extra watchers]}; k=${MED[W5/asflow, $WATCHERS extra watchers]}
  echo "- W5 <= 10% slower with $WATCHERS watchers: $(awk -v a="$a" -v k="$k" 'BEGIN { printf "%+.0f%%", 100 * (k / a - 1) }') ($k s vs $a s) — $(verdict "$k <= 1.1 * $a")"
fi

echo
echo "Machine:"
echo
echo "- CPUs: $(nproc) ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
echo "- RAM: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "- kernel: $(uname -sr)"
echo "- bench dir: $(df -h --output=fstype,size /dev/shm | tail -1 | awk '{ print $1 ", " $2 }') at /dev/shm"
echo "- load average at start / end: $LOAD_START / $LOAD_END"
echo "- asflow build: ${BUILD_TYPE:-unknown}, sanitizers ${SANITIZE:-unknown} ($BUILD); asflowd --pool-size 8"
echo "- tools: $(zstd --version | head -1 | sed 's/^\*\** *//; s/ *\**$//'); $(parallel --version 2>/dev/null | head -1); $(make --version | head -1); xargs $(xargs --version | head -1 | awk '{ print $NF }')"
echo "- W4 generator: $GEN_KIND"
