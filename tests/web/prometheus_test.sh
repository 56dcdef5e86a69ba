#!/usr/bin/env bash
# /metrics against a real Prometheus (Debian's prometheus package): asflowd
# with --http runs a few flows (failed, cached, cancelled, succeeded);
# promtool checks the page; Prometheus scrapes it with the bearer token;
# PromQL over the scraped data must give the same counts as
# `asflowctl runs`. Everything listens on 127.0.0.1 in a temporary
# directory; the processes it starts are stopped by PID at the end.
#   ASFLOW_BUILD=build tests/web/prometheus_test.sh
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${ASFLOW_BUILD:-$ROOT/build}
PY=/usr/bin/python3

fail() { echo "prometheus_test: FAIL: $*" >&2; exit 1; }
for tool in prometheus promtool curl; do
  command -v "$tool" >/dev/null || fail "$tool not found (scripts/install-deps.sh installs prometheus and curl)"
done

T=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT

# N polls, times ASFLOW_TEST_TIME_SCALE (scripts/test-tsan.sh: the binaries
# are that many times slower): how long to wait for what is to happen.
polls() { awk -v n="$1" -v s="${ASFLOW_TEST_TIME_SCALE:-1}" 'BEGIN { printf "%d", n * s }'; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

mkdir -p "$T/ws" "$T/prom"
cp -r "$ROOT/tests/testdata/web/scripts" "$T/ws/"
echo "prom-$RANDOM-$RANDOM-token" >"$T/token"
FLOW="$ROOT/tests/testdata/web/dash.flow.yaml"

"$BUILD/server/asflowd" --socket "$T/d.sock" --state "$T/state.db" --allow-root "$T" \
  --http 127.0.0.1:0 --token-file "$T/token" >"$T/asflowd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq "$(polls 100)"); do
  PORT=$(sed -n 's/.*serving http on 127.0.0.1:\([0-9]*\).*/\1/p' "$T/asflowd.log")
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "${PORT:-}" ] || fail "asflowd did not start: $(cat "$T/asflowd.log")"
ctl() { (cd "$T/ws" && "$BUILD/client/asflowctl" --socket "$T/d.sock" "$@"); }

# Run 1 fails (id 3) after the rest, with two skipped (10, 20: as many
# skipped as failed would hide a column summed for another); run 2 finds
# 18 outputs cached and fails again; run 3 is cancelled while it runs; run 4 (a fresh list of
# two) succeeds with both fetches cached.
ctl run "$FLOW" --plain --keep-going -p n=21 -p sleep=0 >/dev/null && fail "run 1 should fail"
ctl run "$FLOW" --plain --keep-going -p n=21 -p sleep=0 >/dev/null && fail "run 2 should fail"
RUN3=$(ctl run "$FLOW" --detach -p n=30 -p sleep=3)
sleep 1
ctl cancel "$RUN3" >/dev/null
rm "$T/ws/data/list.jsonl"
ctl run "$FLOW" --plain -p n=2 -p sleep=0 >/dev/null || fail "run 4 should succeed"

curl -sf -H "Authorization: Bearer $(cat "$T/token")" "http://127.0.0.1:$PORT/metrics" >"$T/metrics.txt" ||
  fail "GET /metrics"
promtool check metrics <"$T/metrics.txt" || fail "promtool check metrics"
# Wrong token: refused.
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer nope" "http://127.0.0.1:$PORT/metrics")
[ "$code" = 401 ] || fail "/metrics with a wrong token answered $code"

PPORT=$(free_port)
cat >"$T/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: asflowd
    static_configs:
      - targets: ['127.0.0.1:$PORT']
    authorization:
      credentials_file: $T/token
EOF
promtool check config "$T/prom/prometheus.yml" >/dev/null || fail "promtool check config"
prometheus --config.file="$T/prom/prometheus.yml" --storage.tsdb.path="$T/prom/data" \
  --web.listen-address="127.0.0.1:$PPORT" >"$T/prometheus.log" 2>&1 &
PIDS+=($!)

# query EXPR: the value of a PromQL expression with one result (or 0).
query() {
  curl -sf --get "http://127.0.0.1:$PPORT/api/v1/query" --data-urlencode "query=$1" |
    "$PY" -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)'
}
# Wait for a scrape of the daemon (after every run above ended).
for _ in $(seq "$(polls 150)"); do
  [ "$(query 'up{job="asflowd"}' 2>/dev/null || echo 0)" = 1 ] &&
    [ "$(query 'sum(asflow_runs_finished_total)' 2>/dev/null || echo 0)" = 4 ] && break
  sleep 0.2
done
[ "$(query 'up{job="asflowd"}')" = 1 ] || fail "Prometheus did not scrape asflowd: $(tail -5 "$T/prometheus.log")"

# What asflowctl runs says, summed over the runs: the table for the log,
# and its --json form for the counts (a column's position in the table is
# not a format to parse: it once summed SKIPPED as FAILED, which agreed
# only while each run skipped as many instances as it failed).
ctl runs
ctl runs --json >"$T/runs.jsonl"
read -r total done cached skipped failed < <("$PY" - "$T/runs.jsonl" <<'PYEOF'
import json, sys
sums = {"total": 0, "done": 0, "cached": 0, "skipped": 0, "failed": 0}
for line in open(sys.argv[1]):
    for task in json.loads(line).get("tasks", []):
        for key in sums:
            sums[key] += int(task.get(key, 0))
print(*sums.values())
PYEOF
)
states() {  # the number of runs in state $1 (succeeded, failed, ...)
  "$PY" -c 'import json, sys
print(sum(json.loads(l)["state"] == "RUN_" + sys.argv[2].upper() for l in open(sys.argv[1])))' "$T/runs.jsonl" "$1"
}

check() {  # check WHAT PROMQL EXPECTED
  local got
  got=$(query "$2")
  echo "$1: PromQL $2 = $got, asflowctl runs: $3"
  [ "$got" = "$3" ] || fail "$1: Prometheus says $got, asflowctl runs says $3"
}
check "done instances" 'sum(asflow_instances_finished_total{state="done"})' "$done"
check "cached instances" 'sum(asflow_instances_finished_total{state="cached"})' "$cached"
check "skipped instances" 'sum(asflow_instances_finished_total{state="skipped"})' "$skipped"
check "failed instances" 'sum(asflow_instances_finished_total{state="failed"})' "$failed"
check "instances" 'sum(asflow_instances_finished_total)' "$total"
for s in succeeded failed cancelled running; do
  check "$s runs" "sum(asflow_runs{state=\"$s\"})" "$(states "$s")"
done
[ "$done" -gt 0 ] && [ "$cached" -gt 0 ] && [ "$skipped" -gt 0 ] && [ "$failed" -gt 0 ] ||
  fail "the runs should have done, cached, skipped and failed instances"
echo "prometheus_test: 10 passed, 0 failed"
