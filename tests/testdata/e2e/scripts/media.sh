#!/bin/sh
# media.sh ID PAUSE FAIL: writes video.bin, then sub/info.json, then
# `complete` into $ASFLOW_OUTPUT_DIR, PAUSE seconds apart; records ID in
# counter.txt; exits 1 after the first file if ID = FAIL.
set -e
echo "$1" >> counter.txt
printf 'video %s\n' "$1" > "$ASFLOW_OUTPUT_DIR/video.bin"
if [ "$1" = "$3" ]; then echo "cannot fetch $1" >&2; exit 1; fi
sleep "$2"
mkdir "$ASFLOW_OUTPUT_DIR/sub"
printf '{"id":"%s"}\n' "$1" > "$ASFLOW_OUTPUT_DIR/sub/info.json"
sleep "$2"
: > "$ASFLOW_OUTPUT_DIR/complete"
echo "fetched $1"
