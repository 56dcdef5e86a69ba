#!/bin/sh
# item.sh ID SLEEP LINES: records its execution in counter.txt, sleeps SLEEP
# seconds, then prints LINES JSON lines
# {"id":"ID","line":K,"text":"item ID line K"} for K = 1..LINES.
id=$1
echo "$id" >> counter.txt
if [ "$2" != "0" ]; then sleep "$2"; fi
i=1
while [ "$i" -le "$3" ]; do
  printf '{"id":"%s","line":%d,"text":"item %s line %d"}\n' "$id" "$i" "$id" "$i"
  i=$((i + 1))
done
