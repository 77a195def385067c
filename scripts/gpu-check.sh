#!/usr/bin/env bash
# Runs mnist-train on a GPU from the bundle scripts/package-gpu.sh makes: a Linux x86-64
# machine with an NVIDIA GPU (or any Vulkan GPU), no internet and no Rust toolchain needed.
# Prints the adapter, a lecture-protocol epoch (full test set after every step), a training
# epoch without evaluation, one 10k test pass, and the final test accuracy of the lecture's
# main job, then checks the H100 targets. Finishes in well under 5 minutes on a GPU.
#
# Usage: bash gpu-bundle/gpu-check.sh [--data-dir DIR] [--adapter auto|discrete[:N]|...]
#                                     [--reps N] [--keep]
#   --data-dir  directory with the MNIST files (default: the bundle's data/)
#   --adapter   which GPU (default auto: discrete, then integrated, then virtual)
#   --keep      keep the work folder (binary, run directory, bench.json)
#   --smoke     a quick check of the script itself on a subset (2,560 train / 1,000 test
#               images): works on a software adapter (`--adapter cpu`); targets not judged
# Exit status: 0 all ran and met the targets, 1 a target missed, other: a step failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

data=$here/data
adapter=auto
reps=3
keep=0
limits=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data=$2; shift 2 ;;
    --adapter) adapter=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --smoke) limits=(--train-limit 2560 --test-limit 1000); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gpu-check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# Seconds: the targets on an H100.
target_protocol_epoch=1.0
target_train_epoch=0.5

work=$(mktemp -d "${TMPDIR:-/tmp}/mnist-gpu-check.XXXXXX")
if [ "$keep" = 0 ]; then trap 'rm -rf "$work"' EXIT; else echo "work folder: $work"; fi

# The binary: xz (or zstd) compressed next to this script, or a plain one.
bin=$work/mnist-train
if [ -f "$here/mnist-train.xz" ]; then
  if command -v xz >/dev/null; then
    xz -dc "$here/mnist-train.xz" > "$bin"
  elif command -v python3 >/dev/null; then
    python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' \
      "$here/mnist-train.xz" > "$bin"
  else
    echo "gpu-check.sh: need xz or python3 to unpack mnist-train.xz" >&2; exit 2
  fi
elif [ -f "$here/mnist-train.zst" ]; then
  zstd -dq "$here/mnist-train.zst" -o "$bin"
elif [ -x "$here/mnist-train" ]; then
  cp "$here/mnist-train" "$bin"
else
  echo "gpu-check.sh: no mnist-train binary next to this script (run scripts/package-gpu.sh)" >&2
  exit 2
fi
chmod +x "$bin"

# The Vulkan loader: the system's, else the bundled Debian one.
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
  if [ -f "$here/lib/libvulkan.so.1" ]; then
    echo "using the bundled Vulkan loader (libvulkan1 from Debian)"
    export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    echo "warning: no libvulkan.so.1 on this machine and none bundled" >&2
  fi
fi

# NVIDIA's Vulkan driver registers itself with an ICD file; compute-only driver installs and
# containers often ship the library (libGLX_nvidia.so.0) without the file: write one.
icd_dirs="/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d"
if [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ] \
  && ! ls $icd_dirs 2>/dev/null | grep -qi nvidia; then
  lib=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 /{print $NF; exit}')
  if [ -n "$lib" ]; then
    echo "no NVIDIA Vulkan ICD file found; registering $lib"
    cat > "$work/nvidia_icd.json" <<EOF
{ "file_format_version": "1.0.0",
  "ICD": { "library_path": "$lib", "api_version": "1.3.0" } }
EOF
    export VK_ICD_FILENAMES=$work/nvidia_icd.json VK_DRIVER_FILES=$work/nvidia_icd.json
  fi
fi

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
echo "mnist-train: $("$bin" --version)"

# Kernel autotune results go here (the first run on a machine tunes; later runs reuse them).
export MNIST_TRAIN_GPU_CACHE=${MNIST_TRAIN_GPU_CACHE:-$HOME/.cache/mnist-train/cubecl}
started=$(date +%s)

echo
echo "== bench: training epoch, lecture-protocol epoch, 10k test pass (wgpu, $adapter)"
timeout 240 "$bin" bench --backends wgpu --adapter "$adapter" --reps "$reps" \
  --protocol-reps 2 --data-dir "$data" --offline --json "${limits[@]}" > "$work/bench.json"

# Pretty JSON from serde: the median is the line after the field's name.
median() { awk -v key="\"$1\"" '$1 == key":" {getline; gsub(/[^0-9.e+-]/, "", $2); print $2; exit}' "$work/bench.json"; }
train=$(median train_epoch_s)
protocol=$(median protocol_epoch_s)
pass=$(median test_pass_s)
imgs=$(awk '/"test_images"/ {gsub(/[^0-9]/, "", $2); print $2; exit}' "$work/bench.json")
printf 'training epoch, no evaluation:        %8.3f s  (target <= %s s)\n' "$train" "$target_train_epoch"
steps=$(awk '/"steps_per_epoch"/ {gsub(/[^0-9]/, "", $2); print $2; exit}' "$work/bench.json")
printf 'lecture-protocol epoch (%s passes):  %8.3f s  (target <= %s s)\n' "$steps" "$protocol" "$target_protocol_epoch"
printf 'one test pass over %s images:      %8.2f ms\n' "$imgs" "$(awk -v s="$pass" 'BEGIN{print s*1000}')"

echo
echo "== the lecture's main job on wgpu: relu + He + dropout 0.5, 1 epoch, test set every step"
timeout 120 "$bin" --backend wgpu --adapter "$adapter" --init he --dropout 0.5 \
  --data-dir "$data" --offline --quiet --run-dir "$work/run" "${limits[@]}"

echo
echo "== gpu-check took $(( $(date +%s) - started )) s"
if [ ${#limits[@]} -gt 0 ]; then
  echo "smoke run on a subset: targets not judged"
  exit 0
fi
ok=$(awk -v t="$train" -v p="$protocol" -v tt="$target_train_epoch" -v tp="$target_protocol_epoch" \
  'BEGIN{print (t <= tt && p <= tp) ? 1 : 0}')
if [ "$ok" = 1 ]; then
  echo "targets met"
else
  echo "targets missed (training epoch <= $target_train_epoch s, protocol epoch <= $target_protocol_epoch s)"
  exit 1
fi
