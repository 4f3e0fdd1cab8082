#!/usr/bin/env bash
# Prints the path of SwiftShader's Vulkan ICD manifest (Debian's chromium package ships one); exit 1 if none.
set -euo pipefail
for f in $(dpkg -L chromium 2>/dev/null | grep 'vk_swiftshader_icd\.json$') /usr/lib/chromium/vk_swiftshader_icd.json; do
  if [ -f "$f" ]; then echo "$f"; exit 0; fi
done
echo "SwiftShader's vk_swiftshader_icd.json not found: run 'npm run setup -- --swiftshader' (installs Debian's chromium)" >&2
exit 1
