#!/usr/bin/env bash
# One-command setup: npm dependencies, a WebGPU adapter, and the embedded default dataset.
# Idempotent: when everything is in place, a second run only probes and prints what it found.
#   --swiftshader   also install a second software Vulkan driver, SwiftShader (from Debian's chromium package), that
#                   `npm run test:swiftshader` runs the op tests on (CI does; its limits and precision differ from
#                   lavapipe's, so it catches what lavapipe lets pass)
set -euo pipefail
cd "$(dirname "$0")/.."

want_swiftshader=no
for arg in "$@"; do
  case "$arg" in
    --swiftshader) want_swiftshader=yes ;;
    *) echo "[setup] unknown option $arg (--swiftshader)" >&2; exit 2 ;;
  esac
done

DATASET_DIR=/usr/share/datasets/fashion-mnist
say() { printf '[setup] %s\n' "$*"; }

# 1. npm dependencies, exactly as locked (skipped when node_modules already matches the lock file).
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.wgkd-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  say "installing npm dependencies (npm ci)"
  # onnxruntime-node (a test dependency) ships its CPU binaries; its install script would fetch GPU builds.
  export ONNXRUNTIME_NODE_INSTALL=skip
  npm ci --no-audit --no-fund
  echo "$lock_hash" > node_modules/.wgkd-lock-hash
fi

probe() { node --import tsx tools/probe.ts "$@"; }

have_adapter=yes
probe --quiet >/dev/null 2>&1 || have_adapter=no
have_dataset=yes
ls "$DATASET_DIR"/train-images-idx3-ubyte* >/dev/null 2>&1 || have_dataset=no
# The PyTorch interop tools (tools/teacher/) and their cross-check test use Debian's PyTorch.
have_torch=yes
/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1 || have_torch=no
# The demo's PNG plots render SVG text with fontconfig: any installed font will do.
have_fonts=yes
[ -n "$(fc-list 2>/dev/null | head -n1)" ] || have_fonts=no
have_swiftshader=yes
[ "$want_swiftshader" = no ] || bash tools/swiftshader-icd.sh >/dev/null 2>&1 || have_swiftshader=no

if [ "$have_adapter" = yes ] && [ "$have_dataset" = yes ] && [ "$have_torch" = yes ] && [ "$have_fonts" = yes ] && [ "$have_swiftshader" = yes ]; then
  probe
  [ "$want_swiftshader" = no ] || say "SwiftShader: $(bash tools/swiftshader-icd.sh)"
  exit 0
fi

# 2. System packages, only where we can install them: Debian/Ubuntu as root.
. /etc/os-release 2>/dev/null || true
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  [ "$have_adapter" = no ] && cat <<MSG
[setup] No WebGPU adapter was found, and this script can install one only on Debian/Ubuntu as root.
        Install a Vulkan driver for your GPU (or Mesa's lavapipe software driver, Mesa >= 24: on Debian/Ubuntu
        'mesa-vulkan-drivers' and 'libvulkan1'), Metal comes with macOS, D3D12 with Windows. Then: npx wgkd info
MSG
  [ "$have_dataset" = no ] && say "Fashion-MNIST not found in $DATASET_DIR: install Debian's 'dataset-fashion-mnist', or pass --data DIR with the four IDX files."
  [ "$have_fonts" = no ] && say "No fonts found (fc-list): the demo's plots will have no text; install e.g. fonts-dejavu-core."
  [ "$have_torch" = no ] && say "PyTorch not found for /usr/bin/python3: the interop tools and their test need it (Debian: python3-torch python3-torchvision)."
  [ "$have_swiftshader" = no ] && say "SwiftShader not found: on Debian/Ubuntu it comes with the 'chromium' package (vk_swiftshader_icd.json)."
  probe || true
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
packages=()
apt_target=()
if [ "$have_adapter" = no ]; then
  packages+=(mesa-vulkan-drivers libvulkan1)
  if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
    # bookworm's Mesa 22 is too old for Dawn; bookworm-backports has Mesa 25. Use the mirror the machine already uses.
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | grep -v security | head -n1 | awk '{print $2}')
      [ -n "$mirror" ] || mirror=$(grep -hs '^deb ' /etc/apt/sources.list | grep -v security | head -n1 | awk '{print $2}')
      if [ -z "$mirror" ]; then
        say "no Debian mirror found in /etc/apt/sources.list(.d): add bookworm-backports by hand, then install mesa-vulkan-drivers from it"
        exit 1
      fi
      say "adding bookworm-backports from the mirror this machine uses ($mirror)"
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" > /etc/apt/sources.list.d/wgkd-bookworm-backports.sources
    fi
    apt_target=(-t bookworm-backports)
  fi
fi
say "apt-get update"
apt-get update -q
if [ "${#packages[@]}" -gt 0 ]; then
  say "installing ${packages[*]} ${apt_target[*]}"
  apt-get install -y -q "${apt_target[@]}" "${packages[@]}"
fi
if [ "$have_dataset" = no ]; then
  say "installing dataset-fashion-mnist"
  apt-get install -y -q dataset-fashion-mnist
fi
if [ "$have_fonts" = no ]; then
  say "installing fonts-dejavu-core fontconfig (text in the demo's PNG plots)"
  apt-get install -y -q --no-install-recommends fonts-dejavu-core fontconfig
fi
if [ "$have_torch" = no ]; then
  say "installing python3-torch python3-torchvision (PyTorch interop tools and their test)"
  apt-get install -y -q --no-install-recommends python3-torch python3-torchvision
fi
if [ "$have_swiftshader" = no ]; then
  say "installing chromium (for its SwiftShader Vulkan driver: npm run test:swiftshader)"
  apt-get install -y -q --no-install-recommends chromium
fi

probe
[ "$want_swiftshader" = no ] || say "SwiftShader: $(bash tools/swiftshader-icd.sh)"
