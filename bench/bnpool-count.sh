#!/bin/bash
# Instruction count of a BN-ReLU-pool variant on lavapipe (see bench/bnpool-count.ts): SHAPE VARIANT REPS; with
# COUNT_SCRIPT=bench/step-count.ts, of a whole training step: WORKLOAD train REPS.
# Prints "RESULT SPEC KERNEL instructions-per-dispatch": the two busiest threads besides the main one (lavapipe's
# compute threads, one per core on this 2-core machine; set the count to your core count elsewhere).
set -euo pipefail
spec=$1; kernel=$2; reps=${3:-2}; threads=${GEMM_COUNT_THREADS:-2}
dir=$(mktemp -d)
cd "$(dirname "$0")/.."
valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --callgrind-out-file="$dir/cg.%p" \
  node --import tsx "${COUNT_SCRIPT:-bench/bnpool-count.ts}" "$spec" "$kernel" "$reps" "$dir/go" > "$dir/log" 2>&1 &
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
echo "RESULT $spec $kernel $((sum / reps))"
rm -rf "$dir"
