#!/bin/sh
# sleeper.sh MARKER ID: a long sleep in a child process. MARKER (also in the
# environment as ASFLOW_PARAM_marker) lets the test find leftovers.
echo "$2 started"
sleep 30
echo "$2 woke up"
