#!/bin/bash
# Instruction count of one conv2d pass on lavapipe (see bench/conv-count.ts): WHAT X W STRIDE PAD GROUPS IMPL; REPS=2.
# Prints "RESULT ARGS instructions-per-pass": the two busiest threads besides the main one (lavapipe's
# compute threads, one per core on this 2-core machine; set the count to your core count elsewhere).
set -euo pipefail
reps=${REPS:-2}; threads=${GEMM_COUNT_THREADS:-2}
dir=$(mktemp -d)
cd "$(dirname "$0")/.."
valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --callgrind-out-file="$dir/cg.%p" \
  node --import tsx bench/conv-count.ts "$@" "$reps" "$dir/go" > "$dir/log" 2>&1 &
vpid=$!
until grep -q READY "$dir/log" 2>/dev/null; do
  sleep 0.5
  if ! kill -0 $vpid 2>/dev/null; then cat "$dir/log"; exit 1; fi
done
callgrind_control -i on $vpid > /dev/null
touch "$dir/go"
until grep -q DONE "$dir/log"; do sleep 0.5; done
callgrind_control -i off $vpid > /dev/null
touch "$dir/go.done"
wait $vpid
sum=$(for f in "$dir"/cg.*-*; do case $f in *-01) continue;; esac; grep -E "^totals:" "$f" | awk '{print $2}'; done | sort -n | tail -"$threads" | paste -sd+ | bc)
echo "RESULT $* $((sum / reps))"
rm -rf "$dir"
