#!/bin/sh
# remote_item.sh DIR ID LINES PAUSE: one instance on a remote worker.
# Records in DIR/slots.log (under an flock on DIR/slots.lock) how many
# instances hold a slot at once, appends "ID WORKER" to DIR/starts.log,
# prints LINES lines "ID line K", holds the slot PAUSE seconds, then
# prints "ID ran on WORKER" ($ASFLOW_WORKER, set by asflow-worker).
dir=$1 id=$2 lines=$3 pause=$4
flock "$dir/slots.lock" sh -c 'n=$(cat "$1/slots.count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$1/slots.count"; echo "$n" >> "$1/slots.log"' sh "$dir"
echo "$id $ASFLOW_WORKER" >> "$dir/starts.log"
seq "$lines" | sed "s/^/$id line /"
sleep "$pause"
flock "$dir/slots.lock" sh -c 'n=$(cat "$1/slots.count"); echo $((n - 1)) > "$1/slots.count"' sh "$dir"
echo "$id ran on $ASFLOW_WORKER"
