#!/usr/bin/env bash
# The report pages in a real browser (issue 21): a tiny run (with eval) and a tiny sweep on
# generated data, each report.html rendered by headless Chromium with the network denied. Fails
# when a page is blank, an image does not load, or the page requests anything; then checks
# that these checks do fail on a broken page. Installs Debian's chromium when missing.
#
#   bash scripts/check-report-browser.sh target/release/mnist-train [SCREENSHOT_DIR]
set -euo pipefail
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
shots="${2:-}"

chrome="$(command -v chromium || command -v chromium-headless-shell || true)"
if [ -z "$chrome" ]; then
  t=$(date +%s)
  echo "== installing chromium (headless browser for the report check)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  chrome="$(command -v chromium)"
  echo "== chromium install took $(( $(date +%s) - t )) s"
fi
echo "== $("$chrome" --version 2>/dev/null | head -1)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# A learnable toy MNIST (class c lights rows 3c..3c+2), written with the standard library.
python3 - data 640 200 <<'PY'
import os, random, struct, sys
root, n_train, n_test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = os.path.join(root, "mnist")
os.makedirs(d, exist_ok=True)
for name, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
    rnd = random.Random(seed)
    labels = bytes(rnd.randrange(10) for _ in range(n))
    px = bytearray()
    for c in labels:
        for r in range(28):
            px.extend((180 + rnd.randrange(60)) if r // 3 == c else rnd.randrange(60)
                      for _ in range(28))
    with open(os.path.join(d, f"{name}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + px)
    with open(os.path.join(d, f"{name}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels)
PY
export MNIST_DATA_DIR="$work/data" MNIST_TRAIN_THREADS=1
"$bin" --run-dir run --hidden 64,32 --batch-size 32 --epochs 2 --eval-every 5 \
  --valid-split 100 --lr 0.0005 --quiet
"$bin" eval --checkpoint run >/dev/null
cat > sweep.json <<'JSON'
{"name": "browser-check", "base": {"hidden": [32], "batch_size": 64, "eval_every": 2},
 "grid": {"activation": ["relu", "sigmoid"], "init": ["he", "xavier"]}, "seeds": [0, 1]}
JSON
"$bin" sweep sweep.json --out sweep >/dev/null
"$bin" report run >/dev/null
"$bin" report sweep >/dev/null

check="$here/check-report-browser.py"
python3 "$check" "$chrome" run/report.html run.png --expect-images 1
python3 "$check" "$chrome" sweep/report.html sweep.png
python3 "$check" "$chrome" sweep/relu-he-uniform-1x32-s0-*/report.html trial.png
python3 "$check" "$chrome" --self-test run/report.html "$work"
if [ -n "$shots" ]; then
  mkdir -p "$shots"
  cp run.png sweep.png "$shots/"
fi
echo "== report pages: run $(stat -c %s run/report.html) bytes, sweep $(stat -c %s sweep/report.html) bytes; rendered, every image loaded, nothing requested"
