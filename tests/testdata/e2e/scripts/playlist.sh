#!/bin/sh
# Prints N JSON lines {"id":"v01","n":1} ... {"id":"vNN","n":N} and records
# its execution in counter.txt (in the workspace).
n=$1
echo playlist >> counter.txt
i=1
while [ "$i" -le "$n" ]; do
  printf '{"id":"v%02d","n":%d}\n' "$i" "$i"
  i=$((i + 1))
done
