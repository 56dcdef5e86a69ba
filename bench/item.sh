#!/bin/sh
# W1's tiny command: 100 JSON lines for item $1, with the shell's printf.
# Every tool in the benchmark runs exactly this (sh item.sh ID).
i=0
while [ "$i" -lt 100 ]; do
  printf '{"id":%s,"n":%d,"name":"item-%s-%d","ok":true}\n' "$1" "$i" "$1" "$i"
  i=$((i + 1))
done
