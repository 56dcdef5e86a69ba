#!/usr/bin/env bash
# The standing crash campaign (issue 12): a fan-out of N instances while
# asflowd is SIGKILLed at random moments K times (restarted each time; the
# run resumes on its own), then checks that
#   - every output is whole, byte for byte (plain and zstd outputs),
#   - no temporary is left anywhere in the workspace,
#   - re-runs (executions beyond N) stay within K x limit (only instances
#     in flight at a kill may run again),
#   - the store agrees with the files: the run succeeded and its instances
#     are all done or cached, each with its file.
# With --remote the instances run on two asflow-worker processes, and the
# campaign SIGKILLs or SIGSTOPs (past the lease, then SIGCONT) a random
# worker instead of the daemon; re-runs stay within K x slots (of one
# worker).
#
#   tests/crash_campaign.sh [--instances 2000] [--kills 20] [--remote] [--build DIR]
#
# ctest runs the short form (--kills 3, label crash) for the daemon and the
# remote workers; the long form (the defaults: 20 kills) is run by hand.
# Exit 0 when every check holds; the reasons otherwise.
set -euo pipefail

instances=2000 kills=20 remote=0 limit=4 slots=2
build=${ASFLOW_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
while [ $# -gt 0 ]; do
  case $1 in
    --instances) instances=$2; shift 2 ;;
    --kills) kills=$2; shift 2 ;;
    --remote) remote=1; shift ;;
    --build) build=$2; shift 2 ;;
    *) echo "usage: $0 [--instances N] [--kills K] [--remote] [--build DIR]" >&2; exit 2 ;;
  esac
done
build=$(cd "$build" && pwd)
asflowd=$build/server/asflowd asflowctl=$build/client/asflowctl worker=$build/worker/asflow-worker

half=$(( instances / 2 ))  # half plain outputs, half zstd
tmp=$(mktemp -d "${TMPDIR:-/tmp}/asflow-crash-XXXXXX")
ws=$tmp/ws sock=$tmp/d.sock state=$tmp/state.db
mkdir -p "$ws"
daemon_pid=0 worker_pids=()
cleanup() {
  [ "$daemon_pid" -gt 0 ] && kill -KILL "$daemon_pid" 2>/dev/null || true
  for p in "${worker_pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "crash campaign: FAIL: $*" >&2; exit 1; }

# Each execution appends its id to starts.log, then prints 40 lines that
# depend only on the id. Task item stores them plain, task packed with zstd
# (each has half of the instances).
cat > "$ws/item.sh" <<'EOF'
#!/bin/sh
echo "$2" >> "$1/starts.log"
i=1
while [ $i -le 40 ]; do echo "$2 line $i of a crash campaign, padded to be longer than a few bytes"; i=$((i + 1)); done
EOF
pool_line="" listen=()
if [ $remote = 1 ]; then
  pool_line="    pool: remote"
  echo "crash-campaign-token" > "$tmp/token"
  listen=(--listen 127.0.0.1:0 --token-file "$tmp/token" --worker-lease 1)
fi
cat > "$ws/campaign.flow.yaml" <<EOF
name: campaign
params:
  n: "$half"
  dir: "$ws"
tasks:
  - name: ids
    on: ids.txt
    run: [seq, "{n}"]
  - name: item
    for_each:
      lines_of: ids
      as: i
    on: "data/{i}.txt"
    run: [sh, "{dir}/item.sh", "{dir}", "{i}"]
    limit: $limit
$pool_line
EOF
# The zstd half: a second task over the same ids.
cat >> "$ws/campaign.flow.yaml" <<EOF
  - name: packed
    for_each:
      lines_of: ids
      as: i
    on: "packed/{i}.txt.zst"
    run: [sh, "{dir}/item.sh", "{dir}", "{i}"]
    limit: $limit
$pool_line
EOF

ctl() { (cd "$ws" && "$asflowctl" --socket "$sock" "$@"); }
# N polls, times ASFLOW_TEST_TIME_SCALE (scripts/test-tsan.sh: the binaries
# are that many times slower).
polls() { awk -v n="$1" -v s="${ASFLOW_TEST_TIME_SCALE:-1}" 'BEGIN { printf "%d", n * s }'; }
start_daemon() {
  "$asflowd" --socket "$sock" --state "$state" --allow-root "$tmp" "${listen[@]}" >> "$tmp/asflowd.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq "$(polls 100)"); do
    ctl daemon status >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "asflowd did not start: $(tail -5 "$tmp/asflowd.log")"
}
port() { grep -o 'listening on tcp [0-9.]*:[0-9]*' "$tmp/asflowd.log" | tail -1 | sed 's/.*://'; }
start_worker() {  # start_worker INDEX
  "$worker" --server "127.0.0.1:$(port)" --token-file "$tmp/token" --pool remote --slots $slots \
    --name "w$1" --scratch "$tmp/scratch$1" >> "$tmp/worker$1.log" 2>&1 &
  worker_pids[$1]=$!
}
done_count() { cat "$ws/data/"*.txt "$ws/packed/"*.zst 2>/dev/null | wc -c; }
pause() { sleep "$(awk -v s="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + (s % 120) / 100 }')"; }

start_daemon
if [ $remote = 1 ]; then start_worker 0; start_worker 1; fi
run=$(ctl run "$ws/campaign.flow.yaml" --detach)
t0=$(date +%s)
for k in $(seq "$kills"); do
  pause
  if [ $remote = 0 ]; then
    kill -KILL "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
    start_daemon
    echo "kill $k: asflowd SIGKILLed and restarted"
  else
    w=$((RANDOM % 2)) p=${worker_pids[$w]}
    if [ $((k % 2)) = 1 ]; then
      kill -KILL "$p"; wait "$p" 2>/dev/null || true
      start_worker $w
      echo "kill $k: worker w$w SIGKILLed and restarted"
    else
      kill -STOP "$p"; sleep 1.6; kill -CONT "$p"
      echo "kill $k: worker w$w SIGSTOPped past its lease, then SIGCONTed"
    fi
  fi
done
ctl watch "$run" --plain > "$tmp/watch.log" 2>&1 ||
  fail "run $run did not succeed: $(tail -5 "$tmp/watch.log")"
elapsed=$(( $(date +%s) - t0 ))

# Every output whole: all of them concatenated in id order (one cat, one
# zstd) against the same built by awk; the first that differs is named.
expected() { awk -v n="$half" 'BEGIN { for (i = 1; i <= n; i++) for (k = 1; k <= 40; k++) printf "%d line %d of a crash campaign, padded to be longer than a few bytes\n", i, k }'; }
files() { for i in $(seq "$half"); do printf '%s\n' "$ws/$1/$i$2"; done; }
expected > "$tmp/expected"
files data .txt | xargs cat > "$tmp/data.all" 2>/dev/null || true
files packed .txt.zst | xargs zstd -dcq > "$tmp/packed.all" 2>/dev/null || true
for kind in data packed; do
  if ! cmp -s "$tmp/expected" "$tmp/$kind.all"; then
    for i in $(seq "$half"); do
      f=$ws/$kind/$i.txt; [ $kind = packed ] && f=$f.zst
      [ "$( (cat "$f" | { [ $kind = packed ] && zstd -dcq || cat; }) 2>/dev/null)" = "$(expected | sed -n "$(( (i - 1) * 40 + 1 )),$(( i * 40 ))p")" ] || fail "$f is not whole"
    done
    fail "the $kind outputs differ from what the commands print"
  fi
done
# No temporaries, anywhere.
temps=$(find "$ws" -name '*asflow-tmp*' | head -5)
[ -z "$temps" ] || fail "temporaries left: $temps"
# Re-runs within kills x limit.
runs=$(wc -l < "$ws/starts.log")
# In flight at a kill: both tasks' limit on the daemon; one worker's slots.
allowed=$(( remote ? kills * slots : 2 * kills * limit ))
extra=$(( runs - 2 * half ))
[ $extra -ge 0 ] || fail "only $runs executions for $((2 * half)) instances"
[ $extra -le $allowed ] || fail "$extra re-runs, more than $allowed ($kills kills x $([ $remote = 1 ] && echo "$slots slots" || echo "2 tasks x limit $limit"))"
# The store agrees with the files.
rows=$(ctl tasks "$run" --task item; ctl tasks "$run" --task packed)
settled=$(echo "$rows" | awk '$2 == "done" || $2 == "cached"' | wc -l)
[ "$settled" = $((2 * half)) ] || fail "the store has $settled of $((2 * half)) instances done or cached"
other=$(echo "$rows" | awk 'NR > 1 && $1 != "SEQ" && $2 != "done" && $2 != "cached"' | head -3)
[ -z "$other" ] || fail "instances in other states: $other"
ctl runs | grep -q "^$run  *succeeded" || fail "run $run is not recorded as succeeded"
echo "crash campaign: OK: $((2 * half)) instances, $kills $([ $remote = 1 ] && echo "worker kills/stops" || echo "asflowd kills"), $extra re-runs (at most $allowed), ${elapsed}s"
