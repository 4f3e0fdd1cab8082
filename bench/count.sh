#!/bin/bash
# Instruction count of a benchmark script's timed part on lavapipe, under callgrind (load-independent, unlike timings
# on a shared machine): bash bench/count.sh SCRIPT.ts ARGS...   (REPS=2 by default)
#   bash bench/count.sh bench/step-count.ts hw13-64 train           one whole training step of a workload
#   bash bench/count.sh bench/gemm-count.ts pw-fwd:64x128x49x128 subgroup:rg4,c4,ku4,fold,v4
#   bash bench/count.sh bench/conv-count.ts fwd 64,3,64,64 16,3,3,3 1 1 1 stem
#   bash bench/count.sh bench/bnpool-count.ts 64x16x64x64 fused-bwd
# The script gets ARGS, then REPS and a go-file: it compiles its pipelines, says READY and waits for the go-file
# (instrumentation goes on), runs REPS times, says DONE and waits for GO-FILE.done (instrumentation off).
# Prints "RESULT ARGS instructions-per-rep": the two busiest threads besides the main one (lavapipe's compute
# threads, one per core on this 2-core machine; set COUNT_THREADS to your core count elsewhere), and
# "HOST ARGS instructions-per-rep": the main thread's (recording, Dawn's validation, waiting).
set -euo pipefail
script=$1; shift
reps=${REPS:-2}; threads=${COUNT_THREADS:-2}
dir=$(mktemp -d)
cd "$(dirname "$0")/.."
valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --callgrind-out-file="$dir/cg.%p" \
  node --import tsx "$script" "$@" "$reps" "$dir/go" > "$dir/log" 2>&1 &
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
host=$(grep -E "^totals:" "$dir"/cg.*-01 | awk '{print $2}')
echo "HOST $* $((host / reps))"
rm -rf "$dir"
