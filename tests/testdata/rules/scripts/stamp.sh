#!/bin/sh
# stamp.sh ID CODE: appends "ID SECONDS.NANOSECONDS" (its start time) to
# starts.txt, prints a line, and exits with CODE (a failure says so on
# stderr).
echo "$1 $(date +%s.%N)" >> starts.txt
echo "{\"id\":\"$1\"}"
if [ "$2" != "0" ]; then echo "temporary failure of $1" >&2; fi
exit "$2"
