# Helpers shared by bench/run.sh and bench/remote.sh (sourced, not run):
# logging, timing, medians, a fresh asflowd per measurement, result rows.
# The caller sets B (bench dir), ASFLOWD, CTL, SOCK, STATE and WS first; the
# results (T, DPID, HWM_KB, ROWS, MED, ...) are globals for the caller.
# shellcheck shell=bash disable=SC2034

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

# parse_args DEFAULT_ONLY ARGS...: the drivers' common flags. Sets QUICK
# (0/1), REPS and ONLY (comma-separated workloads; `wants W` tests one).
parse_args() {
  ONLY="$1"
  shift
  QUICK=0
  REPS=3
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) QUICK=1; REPS=1 ;;
      --reps) [ $# -ge 2 ] || usage; REPS="$2"; shift ;;
      --only) [ $# -ge 2 ] || usage; ONLY="$2"; shift ;;
      -h|--help) usage ;;
      *) echo "${0##*/}: unknown argument '$1'" >&2; usage ;;
    esac
    shift
  done
  case "$REPS" in ''|*[!0-9]*|0) echo "${0##*/}: --reps wants a positive integer" >&2; exit 2 ;; esac
}
wants() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# make_bench_dir NAME BINARY...: a fresh directory B under /dev/shm with
# copies of the binaries in $B/bin (another build may replace build/ while
# we run) and an empty $B/ws. On exit the caller's cleanup_extra (if it
# defines one) runs, then the daemon DPID is stopped and B removed.
make_bench_dir() {
  B=$(mktemp -d "/dev/shm/$1.XXXXXX")
  shift
  DPID=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$B/bin" "$B/ws"
  [ $# -eq 0 ] || cp "$@" "$B/bin/"
}
bench_cleanup() {
  if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
  if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
    kill -TERM "$DPID" 2>/dev/null || true
    wait "$DPID" 2>/dev/null || true
  fi
  rm -rf "$B"
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
max_of() { printf '%s\n' "$@" | sort -g | tail -1; }
kb_of() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$DPID/status"; }

# Starts a fresh asflowd (with the extra arguments in DAEMON_ARGS, if any);
# sets DPID and BASE_KB (VmRSS right after start).
daemon_start() {
  rm -f "$SOCK"
  "$ASFLOWD" --socket "$SOCK" --state "$STATE" --allow-root "$B" --pool-size 8 ${DAEMON_ARGS[@]+"${DAEMON_ARGS[@]}"} \
    >>"$B/asflowd.log" 2>&1 &
  DPID=$!
  local _
  for _ in $(seq 200); do
    [ -S "$SOCK" ] && break
    kill -0 "$DPID" 2>/dev/null || die "asflowd exited at start; log: $(tail -5 "$B/asflowd.log")"
    sleep 0.02
  done
  [ -S "$SOCK" ] || die "asflowd did not create $SOCK"
  sleep 0.1  # let it settle before reading the baseline
  BASE_KB=$(kb_of VmRSS)
}
# Stops it; sets HWM_KB (VmHWM just before stopping) and CPU_S (its user +
# system CPU seconds so far).
daemon_stop() {
  HWM_KB=$(kb_of VmHWM)
  CPU_S=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$DPID/stat")
  kill -TERM "$DPID"
  wait "$DPID" || die "asflowd exited with status $? at stop; log: $(tail -5 "$B/asflowd.log")"
  DPID=""
}
# Times `asflowctl run FLOW ARGS... --plain` in the workspace; sets T.
time_run() {
  local flow="$1"; shift
  local t0 t1 rc=0
  t0=$(now)
  (cd "$WS" && "$CTL" --socket "$SOCK" run "$flow" "$@" --plain >"$B/run.log" 2>&1) || rc=$?
  t1=$(now)
  [ "$rc" = 0 ] || die "asflowctl run $flow failed ($rc): $(tail -5 "$B/run.log")"
  T=$(elapsed "$t0" "$t1")
}
# Times a shell command in the workspace; sets T.
time_sh() {
  local t0 t1 rc=0
  t0=$(now)
  (cd "$WS" && bash -c "$1" >"$B/alt.log" 2>&1) || rc=$?
  t1=$(now)
  [ "$rc" = 0 ] || die "'$1' failed ($rc): $(tail -5 "$B/alt.log")"
  T=$(elapsed "$t0" "$t1")
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# Results: one entry per row, fields separated by US (\x1f):
# workload tool N rep-times throughput peak-RSS notes daemon-CPU
US=$'\x1f'
ROWS=()
add_row() { ROWS+=("$1$US$2$US$3$US$4$US$5$US$6$US$7$US$8"); }
per_s() { awk -v n="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f inst/s", n / t; else print "-" }'; }
declare -A MED  # "W1/asflow" -> median seconds, for the target checks

# Prints every row's wall time per rep, as a markdown list.
print_reps() {
  local r w tool n times
  echo "Per-rep wall times (s):"
  echo
  for r in "${ROWS[@]}"; do
    IFS=$US read -r w tool n times _ <<<"$r"
    printf -- '- %s %s: %s\n' "$w" "$tool" "$times"
  done
}
CPUS=()  # daemon CPU seconds of the reps of the next record (empty: no daemon)
record() {  # workload tool N unit(inst|bytes) rss notes times...
  local w="$1" tool="$2" n="$3" unit="$4" rss="$5" notes="$6" cpu="-"; shift 6
  [ ${#CPUS[@]} -eq 0 ] || cpu=$(median "${CPUS[@]}")
  CPUS=()
  local m tp
  m=$(median "$@")
  MED["$w/$tool"]=$m
  if [ "$unit" = bytes ]; then
    tp=$(awk -v b="$n" -v t="$m" 'BEGIN { printf "%.0f MB/s", b / 1e6 / t }')
  else
    tp=$(per_s "$n" "$m")
  fi
  add_row "$w" "$tool" "$n" "$*" "$tp" "$rss" "$notes" "$cpu"
  log "$w $tool: median ${m}s ($tp) reps: $*"
}
