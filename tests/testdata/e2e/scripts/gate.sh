#!/bin/sh
# gate.sh ID: records ID in counter.txt; for ID 1, then waits until the test
# writes a line to gate.fifo (a FIFO it made); prints one JSON line.
echo "$1" >> counter.txt
if [ "$1" = "1" ]; then read -r line < gate.fifo; fi
printf '{"id":"%s"}\n' "$1"
