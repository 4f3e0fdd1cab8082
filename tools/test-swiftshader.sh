#!/usr/bin/env bash
# Runs the op test files (or the vitest arguments given) on SwiftShader instead of the default adapter: a second
# software Vulkan driver with other limits, subgroup size and exp/log precision than lavapipe.
set -euo pipefail
cd "$(dirname "$0")/.."
icd=$(bash tools/swiftshader-icd.sh)
export VK_ICD_FILENAMES="$icd"
adapter=$(node --import tsx tools/probe.ts 2>/dev/null | grep '^adapter' | head -n1 || true)
case "$adapter" in
  *SwiftShader*) echo "[test:swiftshader] adapter: $adapter" ;;
  *) echo "[test:swiftshader] VK_ICD_FILENAMES=$icd did not give a SwiftShader adapter (got: '${adapter:-none}')" >&2; exit 1 ;;
esac
ops=(activation autograd batchnorm conv conv-transpose elementwise loss matmul optim pool reduce relational softmax)
if [ "$#" -eq 0 ]; then set -- "${ops[@]/#/test/}"; set -- "${@/%/.test.ts}"; fi
exec npx vitest run "$@"
