#!/bin/sh
# noisy.sh ID [DIR]: (in DIR if given: a remote worker runs it elsewhere) says on stderr that it waits, waits until go.ID exists in the
# working directory, says it is done, prints one JSON line. ID 3 fails its
# first try (exit 75, "transient") and leaves tried.3 behind.
if [ -n "$2" ]; then cd "$2" || exit 1; fi
if [ "$1" = "3" ] && [ ! -e tried.3 ]; then
  : > tried.3
  echo "$1: transient trouble" >&2
  exit 75
fi
echo "$1: waiting" >&2
while [ ! -e "go.$1" ]; do sleep 0.05; done
printf '%s: done' "$1" >&2   # no newline: the stream must still show it
printf '{"id":"%s"}\n' "$1"
