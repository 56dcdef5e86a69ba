#!/bin/sh
# fetch.sh ID SLEEP: sleeps, then prints three JSON lines for ID; id 3
# fails, multiples of 10 are skipped, 25 is suppressed (see dash.flow.yaml).
sleep "$2"
case "$1" in
  3) echo "RateLimited: the API refused id 3 (HTTP 429)" >&2; exit 1 ;;
  25) echo "NotFound: id 25 is gone" >&2; exit 4 ;;
  *0) echo "TemporaryGlitch: try id $1 later" >&2; exit 1 ;;
esac
for n in 1 2 3; do printf '{"id": %s, "n": %d}\n' "$1" "$n"; done
