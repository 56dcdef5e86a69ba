#!/bin/sh
# mixed.sh MARKER ID: "bad" fails after 0.3 s (exit 1, a message on
# stderr), "slow" sleeps 30 s in a child, anything else prints one line
# after 0.3 s. Records each execution in counter.txt. MARKER (also in the
# environment as ASFLOW_PARAM_marker) lets the test find leftovers.
echo "$2" >> counter.txt
case "$2" in
  bad) sleep 0.3; echo "unexpected answer for bad" >&2; exit 1 ;;
  slow) sleep 30 ;;
  *) sleep 0.3; echo "{\"id\":\"$2\"}" ;;
esac
