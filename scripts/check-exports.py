"""Recomputes a trained model's test accuracy from its exports, outside Rust, and compares it
with `mnist-train eval` (within 1 image of 10,000): the safetensors file with a few lines of
NumPy (the lines in docs/using-a-model.md), the ONNX file with onnxruntime. Run by .ci/run.

usage: check-exports.py DATA_DIR EVAL_JSON MODEL.safetensors MODEL.onnx
"""
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from safetensors import safe_open


def read_idx(path: Path) -> np.ndarray:
    raw = path.with_name(path.name + ".gz")
    data = gzip.open(raw).read() if raw.exists() else path.read_bytes()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


# --- docs/using-a-model.md's lines: rebuild the network from the safetensors file ---------
def forward(path, x):
    with safe_open(path, "np") as f:
        meta, t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    slope = float(meta["leaky_relu_slope"])
    act = {
        "relu": lambda v: np.maximum(v, 0),
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
        "tanh": np.tanh,
        "elu": lambda v: np.where(v > 0, v, np.expm1(v)),
        "selu": lambda v: 1.0507009873554805
        * np.where(v > 0, v, 1.6732632423543772 * np.expm1(v)),
        "leaky-relu": lambda v: np.where(v > 0, v, slope * v),
    }[meta["activation"]]
    eps = float(meta["batchnorm_epsilon"])

    def norm(x, name, axes):  # batchnorm on running statistics, over units or channels
        shape = [1, -1] + [1] * (x.ndim - 2)
        p = {k: t[f"{name}.{k}"].reshape(shape) for k in ("weight", "bias", "running_mean", "running_var")}
        return (x - p["running_mean"]) / np.sqrt(p["running_var"] + eps) * p["weight"] + p["bias"]

    if meta.get("model") == "cnn":
        x = x.reshape(-1, 1, 28, 28)
        for i in range(len(json.loads(meta["conv_channels"]))):
            w, b = t[f"conv.{i}.weight"], t[f"conv.{i}.bias"]  # [out, in, 3, 3] (OIHW)
            n, c, h, wd = x.shape
            p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))  # SAME
            cols = np.stack([p[:, :, r : r + h, q : q + wd] for r in range(3) for q in range(3)], 2)
            x = np.einsum("nckhw,ock->nohw", cols, w.reshape(len(w), c, 9)) + b[:, None, None]
            if meta["batchnorm"] == "true":
                x = norm(x, f"conv_norm.{i}", (0, 2, 3))
            x = act(x)
            # 2x2 max-pooling, stride 2; an odd side is padded at its end with -inf (7 -> 4).
            x = np.pad(x, ((0, 0), (0, 0), (0, h % 2), (0, wd % 2)), constant_values=-np.inf)
            x = x.reshape(n, len(w), x.shape[2] // 2, 2, x.shape[3] // 2, 2).max(axis=(3, 5))
        x = x.reshape(len(x), -1)  # [channel, row, column] order
    for i in range(len(json.loads(meta["hidden"]))):
        x = x @ t[f"hidden.{i}.weight"].T + t[f"hidden.{i}.bias"]
        if meta["batchnorm"] == "true":
            x = norm(x, f"norm.{i}", (0,))
        x = act(x)
    return x @ t["output.weight"].T + t["output.bias"]  # logits [N, 10]
# -------------------------------------------------------------------------------------------


def main() -> int:
    data, eval_json, st_path, onnx_path = sys.argv[1:5]
    data = Path(data)
    images = read_idx(data / "t10k-images-idx3-ubyte").reshape(-1, 784)
    labels = read_idx(data / "t10k-labels-idx1-ubyte")
    x = images.astype(np.float32) / 255  # the input format of both exports
    want = json.loads(Path(eval_json).read_text())
    right_eval = round(want["accuracy"] * want["images"])
    assert want["images"] == len(labels), (want["images"], len(labels))

    # In chunks: a convolution's columns for all 10,000 images would take gigabytes.
    logits_np = np.concatenate([forward(st_path, x[i : i + 500]) for i in range(0, len(x), 500)])
    right_np = int((logits_np.argmax(1) == labels).sum())
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": x})
    right_onnx = int((logits.argmax(1) == labels).sum())
    # Any batch size: the batch axis is dynamic.
    (three,) = session.run(["logits"], {"input": x[:3]})
    assert three.shape == (3, 10), three.shape

    n = len(labels)
    print(
        f"{Path(st_path).stem}: eval {right_eval}/{n}, numpy from safetensors {right_np}/{n}, "
        f"onnxruntime {right_onnx}/{n}"
    )
    ok = abs(right_np - right_eval) <= 1 and abs(right_onnx - right_eval) <= 1
    if not ok:
        print("the exports do not reproduce eval's accuracy", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
