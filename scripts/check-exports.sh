#!/usr/bin/env bash
# Trains small models on real MNIST (an MLP with batchnorm + relu, one with selu + dropout, a
# CNN with batchnorm + elu whose last pooling pads 7 -> 4), exports each as safetensors and ONNX, and has scripts/check-exports.py recompute their test accuracy in
# Python (NumPy, onnxruntime) against `mnist-train eval`.
# usage: check-exports.sh MNIST_TRAIN_BINARY PYTHON [DATA_DIR]
set -euo pipefail
bin=$1 python=$2 data=${3:-../shared/data}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--data-dir "$data" --offline --train-limit 10000 --eval-every 0 --quiet)
"$bin" "${common[@]}" --init he --batchnorm --run-dir "$work/bn" >/dev/null
"$bin" "${common[@]}" --init xavier --activation selu --dropout 0.3 --run-dir "$work/selu" >/dev/null
"$bin" --config "$here/../configs/lab11-cnn.json" --data-dir "$data" --offline --quiet \
  --epochs 1 --train-limit 5000 --batchnorm --batchnorm-momentum 0.9 --activation elu \
  --run-dir "$work/cnn" >/dev/null
for run in bn selu cnn; do
  "$bin" eval --checkpoint "$work/$run" --data-dir "$data" --offline --json --out "$work" \
    >"$work/$run.json"
  "$bin" export --checkpoint "$work/$run" --format safetensors --output "$work/$run.safetensors"
  "$bin" export --checkpoint "$work/$run" --format onnx --output "$work/$run.onnx"
  "$python" "$here/check-exports.py" "$data/mnist" "$work/$run.json" \
    "$work/$run.safetensors" "$work/$run.onnx"
done
