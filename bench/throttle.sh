#!/usr/bin/env bash
# What a throttle key costs per start (issue 16's gate check): W3's
# builtin.noop fan-out (no process, no output) with and without `uses: [k]`
# (a key of limit 1,000,000, which never holds anything back), reps
# interleaved (plain, key, plain, key, ...), a fresh asflowd and state file
# each; prints the medians of the fan-out (first start to last finish of
# the noop instances, read back from state.db) and the ratio.
#
#   bench/throttle.sh [--quick] [--reps N]      (default N = 50,000, 5 reps)
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${ASFLOW_BUILD:-$ROOT/build}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
parse_args "W3" "$@"
[ "$QUICK" = 1 ] && N=2000 || N=50000
[ "$QUICK" = 1 ] || [ "$REPS" != 3 ] || REPS=5  # parse_args defaults to 3
command -v sqlite3 >/dev/null || die "sqlite3 not found (apt-get install sqlite3): the fan-out is read from state.db"
[ -x "$BUILD/server/asflowd" ] && [ -x "$BUILD/client/asflowctl" ] || ninja -C "$BUILD" asflowd asflowctl >&2

make_bench_dir asflow-throttle "$BUILD/server/asflowd" "$BUILD/client/asflowctl"
ASFLOWD="$B/bin/asflowd"
CTL="$B/bin/asflowctl"
SOCK="$B/asflowd.sock"
STATE="$B/state.db"
WS="$B/ws"
cp "$HERE/flows/w3.yaml" "$HERE/flows/w3_key.yaml" "$WS/"

declare -A FAN WALL CPU
log "throttle key cost: N=$N, $REPS interleaved reps"
for rep in $(seq "$REPS"); do
  for variant in plain key; do
    flow=w3.yaml
    [ "$variant" = key ] && flow=w3_key.yaml
    rm -f "$WS/ids3.txt" "$STATE" "$STATE"-*
    daemon_start
    time_run "$flow" -p "n=$N"
    daemon_stop
    read -r cnt fan_ms < <(sqlite3 -separator ' ' "$STATE" \
      "SELECT count(*), max(finished_ms) - min(started_ms) FROM instances WHERE task = 'noop' AND state = 3")
    [ "$cnt" = "$N" ] || die "$variant: $cnt noop instances DONE in SQLite, expected $N"
    FAN[$variant]+="$(awk -v ms="$fan_ms" 'BEGIN { printf "%.3f", ms / 1000 }') "
    WALL[$variant]+="$T "
    CPU[$variant]+="$CPU_S "
    log "rep $rep $variant: fan-out ${fan_ms} ms, wall $T s, daemon CPU $CPU_S s"
  done
done

# shellcheck disable=SC2086
{
  fp=$(median ${FAN[plain]}); fk=$(median ${FAN[key]})
  wp=$(median ${WALL[plain]}); wk=$(median ${WALL[key]})
  cp_=$(median ${CPU[plain]}); ck=$(median ${CPU[key]})
}
echo "| variant | N | fan-out median (s) | inst/s | wall median (s) | daemon CPU median (s) | fan-out per rep (s) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
echo "| builtin.noop | $N | $fp | $(per_s "$N" "$fp") | $wp | $cp_ | ${FAN[plain]}|"
echo "| builtin.noop, uses: [k] | $N | $fk | $(per_s "$N" "$fk") | $wk | $ck | ${FAN[key]}|"
echo
awk -v fp="$fp" -v fk="$fk" -v cp="$cp_" -v ck="$ck" -v n="$N" 'BEGIN {
  printf "ratio (key / plain): fan-out %.3f, daemon CPU %.3f; a key costs %+.2f us per start (fan-out difference / N)\n",
    fk / fp, (cp > 0 ? ck / cp : 0), (fk - fp) * 1e6 / n }'
