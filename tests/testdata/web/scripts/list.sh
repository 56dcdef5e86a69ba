#!/bin/sh
# list.sh N: N JSON lines {"id": 1} .. {"id": N}.
i=1
while [ "$i" -le "$1" ]; do
  printf '{"id": %d}\n' "$i"
  i=$((i + 1))
done
