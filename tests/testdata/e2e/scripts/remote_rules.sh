#!/bin/sh
# remote_rules.sh DIR ID: ok1 succeeds; gone fails with a suppressible
# stderr line; flaky exits 75 ("HTTP 503") on its first attempt (counted
# in DIR/flaky.count) and succeeds on the next; slow outlives its timeout.
dir=$1 id=$2
case "$id" in
  gone) echo "TranscriptsDisabled: $id" >&2; exit 3 ;;
  flaky)
    n=$(cat "$dir/flaky.count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$dir/flaky.count"
    if [ "$n" = 1 ]; then echo "HTTP 503" >&2; exit 75; fi ;;
  slow) sleep 30 ;;
esac
echo "{\"id\":\"$id\",\"worker\":\"$ASFLOW_WORKER\"}"
