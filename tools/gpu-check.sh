#!/usr/bin/env bash
# One prepared check for a machine with a real GPU (Vulkan): the adapter, the op tests on it, its roofline, the
# training-step benchmark and one profiled step with its trace, all written under one folder:
#   bash tools/gpu-check.sh [OUT_DIR]        (default: gpu-check/; needs Node 20 and `npm ci` done, or network)
# Pick the adapter with WGKD_ADAPTER=NAME (a substring of its name) when the machine has several.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
mkdir -p "$out"
adapter_flags=()
[ -n "${WGKD_ADAPTER:-}" ] && adapter_flags=(--adapter "$WGKD_ADAPTER")
step() { # step NAME COMMAND...: runs it, output to OUT/NAME.log, and records its exit status
  local name=$1; shift
  echo "[gpu-check] $name: $*"
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$out/summary.txt"
}
: >"$out/summary.txt"
command -v node >/dev/null || { echo "[gpu-check] node not found: install Node 20" | tee -a "$out/summary.txt"; exit 1; }
[ -d node_modules ] || step npm-ci npm ci --no-audit --no-fund
wgkd() { node --import tsx src/cli/main.ts "$@"; }
step info wgkd info "${adapter_flags[@]}"
# The op tests run on whatever adapter Dawn picks first; WGKD_ADAPTER is not read by them, VK_ICD_FILENAMES is.
step op-tests npx vitest run test/conv.test.ts test/batchnorm.test.ts test/pool.test.ts test/softmax.test.ts \
  test/loss.test.ts test/relational.test.ts test/matmul.test.ts test/optim.test.ts
step roofline bash -c "node --import tsx src/cli/main.ts roofline --json --remeasure ${adapter_flags[*]} > '$out/roofline.json'"
step bench-train bash -c "npm run -s bench:train -- --json > '$out/bench-train.jsonl'"
teacher=data/fashion-mnist/teacher-train.safetensors
step profile-demo wgkd profile "${adapter_flags[@]}" --model dwpw --recipe kd+rkd --teacher "$teacher" --batch 64 --lr 0.006 \
  --steps 3 --warmup 2 --trace "$out/profile-demo.trace.json" --timeline "$out/profile-demo.png"
echo "[gpu-check] done: $out/ (summary.txt, *.log, roofline.json, bench-train.jsonl, profile-demo.*)"
