#!/bin/sh
# Prints a fake playlist: one JSON object per video, like
# `yt-dlp --dump-json --flat-playlist` does.
n=${1:-12}
i=1
while [ "$i" -le "$n" ]; do
  printf '{"id":"vid%03d","title":"Video number %d","duration":%d}\n' "$i" "$i" $((60 + i * 7))
  i=$((i + 1))
done
