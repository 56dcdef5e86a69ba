#!/usr/bin/env bash
# History retention (issue 15): the state file's size over a soak of
# scheduled-like runs, with `asflowd --keep-runs K` against `--keep-runs
# all`. Each of RUNS runs fans out N builtin.noop instances (one row each,
# no process); after every EVERY-th run it records state.db's size, its
# page_count and freelist_count, and the -wal file's size. Prints a
# markdown table per setup (see docs/benchmarks.md, "History retention").
#
#   bench/retention.sh [--runs R] [--n N] [--keep K] [--every E]
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${ASFLOW_BUILD:-$ROOT/build}
RUNS=40; N=20000; KEEP=5; EVERY=5
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift ;;
    --n) N="$2"; shift ;;
    --keep) KEEP="$2"; shift ;;
    --every) EVERY="$2"; shift ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
  shift
done
command -v sqlite3 >/dev/null || { echo "sqlite3 not found (apt-get install sqlite3)" >&2; exit 1; }
[ -x "$BUILD/server/asflowd" ] && [ -x "$BUILD/client/asflowctl" ] || ninja -C "$BUILD" asflowd asflowctl >&2

B=$(mktemp -d /tmp/asflow-retention-XXXXXX)
DPID=
cleanup() {
  if [ -n "$DPID" ]; then kill "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
  rm -rf "$B"
}
trap cleanup EXIT

mkdir -p "$B/ws"
cat > "$B/ws/flow.yaml" <<YAML
name: soak
params:
  n: "$N"
tasks:
  - name: ids
    on: ids.txt
    run: [seq, "{n}"]
  - name: noop
    for_each: {lines_of: ids, as: i}
    handler: builtin.noop
YAML

# soak KEEP_RUNS [legacy]: a fresh daemon and state file, RUNS runs, a row
# every EVERY. `legacy`: the file is made first with auto_vacuum=NONE, as
# every file made before schema 4 is (a table created and dropped: SQLite
# then refuses to change auto_vacuum without a VACUUM).
soak() {
  local keep="$1" state="$B/state-$1${2:-}.db" sock="$B/d.sock"
  rm -f "$state" "$state-wal" "$state-shm"
  if [ "${2:-}" = legacy ]; then sqlite3 "$state" 'CREATE TABLE old(a); DROP TABLE old;'; fi
  "$BUILD/server/asflowd" --config "" --socket "$sock" --state "$state" --allow-root "$B" \
    --keep-runs "$keep" --prune-every 0.5 --no-sync >"$B/asflowd-$keep.log" 2>&1 &
  DPID=$!
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
  echo
  echo "### --keep-runs $keep${2:+, a file with auto_vacuum=NONE} ($RUNS runs of $N instances)"
  echo
  echo "| runs | database MB (pages) | free pages | state.db file MB | -wal file MB | runs listed |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
  local start=$SECONDS
  for r in $(seq "$RUNS"); do
    (cd "$B/ws" && "$BUILD/client/asflowctl" --socket "$sock" run flow.yaml --plain >/dev/null)
    if [ $((r % EVERY)) -eq 0 ]; then
      sleep 1  # one pruning pass
      local pages free listed
      pages=$(sqlite3 "$state" 'PRAGMA page_count')
      free=$(sqlite3 "$state" 'PRAGMA freelist_count')
      listed=$("$BUILD/client/asflowctl" --socket "$sock" runs -n 100000 | tail -n +2 | wc -l)
      printf '| %d | %.1f (%d) | %d | %.1f | %.1f | %d |\n' "$r" \
        "$(echo "$pages * $(sqlite3 "$state" 'PRAGMA page_size') / 1048576" | bc -l)" "$pages" "$free" \
        "$(echo "$(stat -c %s "$state") / 1048576" | bc -l)" \
        "$(echo "$(stat -c %s "$state-wal" 2>/dev/null || echo 0) / 1048576" | bc -l)" "$listed"
    fi
  done
  echo
  echo "($((SECONDS - start)) s; auto_vacuum=$(sqlite3 "$state" 'PRAGMA auto_vacuum'))"
  kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=
}

soak "$KEEP"
soak "$KEEP" legacy
soak all
