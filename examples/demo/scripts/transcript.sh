#!/bin/sh
# Prints a fake transcript for one video: one JSON line per segment. Takes a
# moment, like a real API call.
id=$1
sleep 0.3
i=0
while [ "$i" -lt 40 ]; do
  printf '{"video_id":"%s","start":%d.0,"text":"segment %d of %s"}\n' "$id" $((i * 5)) "$i" "$id"
  i=$((i + 1))
done
