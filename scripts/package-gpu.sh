#!/usr/bin/env bash
# Builds everything scripts/gpu-check.sh needs to run on a Linux x86-64 machine with an NVIDIA
# GPU, no internet and no Rust toolchain, into one folder (default: gpu-bundle/):
#
#   mnist-train.xz       the release binary with the `wgpu` feature, stripped, xz-compressed
#   lib/libvulkan.so.1   Debian's Vulkan loader (amd64), for machines that lack one
#   debs/libvulkan1_*.deb  the same loader as Debian ships it (`apt-get download libvulkan1`)
#   data/mnist/*.gz      the four MNIST files, when found (../shared/data or --data DIR)
#   gpu-check.sh, SHA256SUMS
#
# Usage: scripts/package-gpu.sh [--out DIR] [--data DIR] [--no-data]
# Copy the folder to the GPU machine and run `bash gpu-bundle/gpu-check.sh`.
# The build uses target-wgpu/ (or $CARGO_TARGET_DIR): about 16 minutes on 2 cores from clean.
set -euo pipefail
cd "$(dirname "$0")/.."

out=gpu-bundle
data=../shared/data
with_data=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --no-data) with_data=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "package-gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

target=${CARGO_TARGET_DIR:-$PWD/target-wgpu}
echo "== building the wgpu release binary in $target"
CARGO_TARGET_DIR=$target cargo build --release --locked --features wgpu

rm -rf "$out"
mkdir -p "$out/lib" "$out/debs"
echo "== stripping and compressing"
strip -o "$out/mnist-train" "$target/release/mnist-train"
xz -9 -T0 -f "$out/mnist-train"

echo "== fetching Debian's Vulkan loader (libvulkan1, amd64)"
sandbox=()
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)  # root: no `_apt` user warning
(cd "$out/debs" && apt-get download -q "${sandbox[@]}" libvulkan1:amd64)
deb=$(ls "$out"/debs/libvulkan1_*.deb)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
cp -L "$tmp"/usr/lib/x86_64-linux-gnu/libvulkan.so.1 "$out/lib/libvulkan.so.1"

if [ "$with_data" = 1 ]; then
  src=$data
  [ -d "$data/mnist" ] && src=$data/mnist
  if ls "$src"/t10k-images-idx3-ubyte* >/dev/null 2>&1; then
    mkdir -p "$out/data/mnist"
    cp "$src"/{train,t10k}-{images-idx3,labels-idx1}-ubyte* "$out/data/mnist/"
    chmod -R u+w "$out/data"
  else
    echo "== no MNIST files in $data: the bundle needs --data-dir on the GPU machine"
  fi
fi

cp scripts/gpu-check.sh "$out/gpu-check.sh"
chmod +x "$out/gpu-check.sh"
(cd "$out" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum > SHA256SUMS)
size=$(du -sb "$out" | cut -f1)
echo "== $out: $(( size / 1024 / 1024 )) MiB ($size bytes)"
if [ "$size" -gt $(( 64 * 1024 * 1024 )) ]; then
  echo "package-gpu.sh: the bundle exceeds 64 MiB" >&2
  exit 1
fi
