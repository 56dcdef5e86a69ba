#!/bin/sh
# fail.sh ID CODE MESSAGE: records its execution in counter.txt, prints
# "first line ID" and then MESSAGE on stderr and exits with CODE.
echo "$1" >> counter.txt
echo "first line $1" >&2
echo "$3" >&2
exit "$2"
