#!/bin/sh
# slot.sh ID: holds a "slot" for 0.3 s. Under an flock on slots.lock it
# increments slots.count and appends the new count to slots.log, then
# decrements it when done: slots.log records how many ran at once.
flock slots.lock sh -c 'n=$(cat slots.count 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > slots.count; echo "$n" >> slots.log'
sleep 0.3
flock slots.lock sh -c 'n=$(cat slots.count); echo $((n - 1)) > slots.count'
echo "$1"
