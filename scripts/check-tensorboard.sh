#!/usr/bin/env bash
# Writes TensorBoard files the ways a user does (a run paused and resumed, so its event file
# and metrics.csv are rewritten from metrics.jsonl; a run with batchnorm; a small sweep with
# HParams) and has scripts/check-tensorboard.py read them back with TensorBoard's own Python
# reader and compare every value with metrics.jsonl.
# usage: check-tensorboard.sh MNIST_TRAIN_BINARY PYTHON [DATA_DIR]
set -euo pipefail
bin=$1 python=$2 data=${3:-../shared/data}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--data-dir "$data" --offline --train-limit 2560 --test-limit 1000 --quiet)

# Paused mid-epoch at step 25, then resumed with a changed cadence: the resumed run keeps
# steps 1-25 and appends the rest.
"$bin" "${common[@]}" --epochs 2 --eval-every 7 --checkpoint-every 10 --max-steps 25 \
  --run-dir "$work/resumed" >/dev/null
"$bin" --resume "$work/resumed" --eval-every 3 --data-dir "$data" --offline --quiet >/dev/null
"$bin" "${common[@]}" --init he --batchnorm --eval-every 5 --run-dir "$work/bn" >/dev/null
# Validation metrics, a schedule's lr and diagnostics on every step.
"$bin" "${common[@]}" --valid-split 500 --eval-every 4 --lr-schedule cosine --lr-warmup-steps 5 \
  --diagnostics-every 1 --activation sigmoid --run-dir "$work/valid" >/dev/null
# No TensorBoard file when asked for none; metrics.csv still.
"$bin" "${common[@]}" --eval-every 0 --no-tensorboard --run-dir "$work/off" >/dev/null
if compgen -G "$work/off/*tfevents*" >/dev/null; then
  echo "--no-tensorboard wrote an event file" >&2
  exit 1
fi
[ -s "$work/off/metrics.csv" ] || { echo "no metrics.csv without TensorBoard" >&2; exit 1; }

cat >"$work/sweep.json" <<JSON
{"name": "tb-check",
 "base": {"train_limit": 1280, "test_limit": 500, "eval_every": 5},
 "grid": {"activation": ["relu", "tanh"], "hidden": [[32], [64, 32]]},
 "seeds": [0, 1]}
JSON
"$bin" sweep "$work/sweep.json" --out "$work/sweep" --jobs 2 --threads 1 \
  --data-dir "$data" --offline >/dev/null 2>&1

"$python" "$here/check-tensorboard.py" "$work/resumed" "$work/bn" "$work/valid" "$work/sweep"
