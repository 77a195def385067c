"""Reads mnist-train's TensorBoard files back with TensorBoard's own Python code and checks them
against metrics.jsonl; checks metrics.csv against it too.

Usage: check-tensorboard.py RUN_OR_SWEEP_DIR...  Every directory below the arguments that holds
a metrics.jsonl is checked as a run; one that holds a sweep manifest is checked as a sweep (its
HParams experiment, and each trial's session against the trial's config.json).
"""

import csv
import json
import math
import os
import sys

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg, file=sys.stderr)


def f32(x):
    return float(np.float32(x))


def load(run):
    acc = event_accumulator.EventAccumulator(run, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc


def jsonl(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def expected_scalars(steps):
    """tag -> [(step, value)] as metrics.jsonl has them: the top-level numbers, and the per-layer
    diagnostics as layers/<layer>/<statistic>."""
    want = {}
    for s in steps:
        for key, v in s.items():
            if isinstance(v, float) and key != "elapsed_s":
                want.setdefault(key, []).append((s["global_step"], f32(v)))
        for layer in s.get("layers") or []:
            for stat, v in layer.items():
                if stat != "name":
                    tag = f"layers/{layer['name']}/{stat}"
                    want.setdefault(tag, []).append((s["global_step"], f32(v)))
    return want


def check_run(run):
    steps = jsonl(run)
    if not steps:
        fail(f"{run}: metrics.jsonl is empty")
        return
    acc = load(run)
    tags = set(acc.Tags()["scalars"])
    want = expected_scalars(steps)
    if tags != set(want):
        fail(f"{run}: TensorBoard has tags {sorted(tags ^ set(want))} that metrics.jsonl has "
             f"not, or the other way round")
    for tag in sorted(set(want) & tags):
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        if got != want[tag]:
            diff = next((w, g) for w, g in zip(want[tag], got + [None] * len(want[tag]))
                        if w != g)
            fail(f"{run}: {tag}: {len(got)} values in TensorBoard, {len(want[tag])} in "
                 f"metrics.jsonl; first difference (jsonl, tensorboard): {diff}")
    check_csv(run, steps)
    layers = sum(1 for t in tags if t.startswith("layers/"))
    print(f"ok  {run}: {len(steps)} steps, {len(tags) - layers} metrics and {layers} "
          "per-layer series")


def check_csv(run, steps):
    with open(os.path.join(run, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    # The per-layer diagnostics are nested, and stay out of the table.
    if len(rows) != len(steps):
        fail(f"{run}: metrics.csv has {len(rows)} rows, metrics.jsonl {len(steps)} steps")
        return
    for row, step in zip(rows, steps):
        for key, cell in row.items():
            want = step.get(key)
            if want is None:
                if cell != "":
                    fail(f"{run}: metrics.csv step {step['global_step']} {key}={cell!r}, "
                         "jsonl has none")
                    return
            elif float(cell) != float(want):
                fail(f"{run}: metrics.csv step {step['global_step']} {key}={cell}, jsonl {want}")
                return


def plugin_data(acc, tag):
    content = acc.SummaryMetadata(tag).plugin_data.content
    return plugin_data_pb2.HParamsPluginData.FromString(content)


def value_of(v):
    kind = v.WhichOneof("kind")
    return getattr(v, kind)


def config_value(config, key):
    v = config.get(key)
    if isinstance(v, list):
        return ",".join(str(i) for i in v)
    if v is None:
        return "none"
    return v


def check_sweep(sweep):
    root = load(sweep)
    if "_hparams_/experiment" not in root.Tags()["tensors"]:
        fail(f"{sweep}: no HParams experiment summary")
        return
    exp = plugin_data(root, "_hparams_/experiment").experiment
    names = [h.name for h in exp.hparam_infos]
    metrics = [m.name.tag for m in exp.metric_infos]
    if "seed" not in names or "test_accuracy" not in metrics:
        fail(f"{sweep}: experiment hparams {names}, metrics {metrics}")
    with open(os.path.join(sweep, "sweep.json")) as f:
        manifest = json.load(f)
    configs = []
    for t in manifest["trials"]:
        trial = os.path.join(sweep, t["dir"])
        with open(os.path.join(trial, "config.json")) as f:
            config = json.load(f)
        configs.append(config)
        acc = load(trial)
        tensors = acc.Tags()["tensors"]
        if "_hparams_/session_start_info" not in tensors:
            fail(f"{trial}: no HParams session")
            continue
        start = plugin_data(acc, "_hparams_/session_start_info").session_start_info
        got = {k: value_of(v) for k, v in start.hparams.items()}
        want = {k: config_value(config, k) for k in names}
        for k in names:
            g, w = got.get(k), want[k]
            same = g == w or (isinstance(g, float) and isinstance(w, (int, float))
                              and math.isclose(g, w)) or str(g) == str(w)
            if not same:
                fail(f"{trial}: hparam {k} = {g!r} in TensorBoard, {w!r} in config.json")
        if "_hparams_/session_end_info" not in tensors:
            fail(f"{trial}: session has no end")
        elif plugin_data(acc, "_hparams_/session_end_info").session_end_info.status != 1:
            fail(f"{trial}: session did not end in success")
    # Every key the experiment lists varies (or is the seed), and every varying key is listed.
    for key in set().union(*(c.keys() for c in configs)):
        varies = len({json.dumps(c.get(key)) for c in configs}) > 1
        if varies != (key in names) and key != "seed":
            fail(f"{sweep}: key {key} {'varies' if varies else 'is constant'} but is "
                 f"{'not ' if varies else ''}an experiment hparam")
    check_hparams_tab(sweep, manifest, names)
    print(f"ok  {sweep}: HParams experiment with {names}, {len(configs)} sessions")


def check_hparams_tab(sweep, manifest, names):
    """What TensorBoard's HParams tab shows: its plugin's own /experiment and /session_groups
    answers over the sweep directory, as the tab requests them."""
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug import test as wtest
    from werkzeug import wrappers

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(sweep)
    mux.Reload()
    ctx = base_plugin.TBContext(
        logdir=sweep, multiplexer=mux,
        data_provider=data_provider.MultiplexerDataProvider(mux, sweep))
    apps = hparams_plugin.HParamsPlugin(ctx).get_plugin_apps()

    def post(route, body):
        client = wtest.Client(apps[route], wrappers.Response)
        r = client.post(route, data=json.dumps(body), content_type="application/json")
        if r.status_code != 200:
            fail(f"{sweep}: HParams {route} answered {r.status_code}: {r.get_data(as_text=True)}")
            return None
        return json.loads(r.get_data(as_text=True))

    exp = post("/experiment", {"experimentName": ""})
    if exp is None:
        return
    shown = [h["name"] for h in exp["hparamInfos"]]
    if shown != names:
        fail(f"{sweep}: the HParams tab shows columns {shown}, the experiment lists {names}")
    groups = post("/session_groups", {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                            "STATUS_RUNNING"],
        "colParams": [], "startIndex": 0, "sliceSize": 1000})
    if groups is None:
        return
    by_dir = {t["dir"]: t for t in manifest["trials"]}
    seen = set()
    for g in groups["sessionGroups"]:
        for session in g["sessions"]:
            trial = by_dir.get(os.path.basename(session["name"]))
            if trial is None:
                fail(f"{sweep}: HParams session {session['name']} is no trial of the sweep")
                continue
            seen.add(trial["dir"])
            steps = jsonl(os.path.join(sweep, trial["dir"]))
            last = [s["test_accuracy"] for s in steps if s.get("test_accuracy") is not None][-1]
            shown = {m["name"]["tag"]: m["value"] for m in session["metricValues"]}
            if shown.get("test_accuracy") != f32(last):
                fail(f"{sweep}: HParams tab shows test_accuracy {shown.get('test_accuracy')} "
                     f"for {trial['dir']}, its metrics.jsonl ends at {last}")
            if session["status"] != "STATUS_SUCCESS":
                fail(f"{sweep}: HParams tab shows {trial['dir']} as {session['status']}")
    if seen != set(by_dir):
        fail(f"{sweep}: the HParams tab lists {len(seen)} of {len(by_dir)} trials")


def main(paths):
    runs = sweeps = 0
    for path in paths:
        for dirpath, _, files in os.walk(path):
            if "metrics.jsonl" in files:
                check_run(dirpath)
                runs += 1
            if "sweep.json" in files:
                check_sweep(dirpath)
                sweeps += 1
    if runs == 0:
        fail(f"no run directories under {paths}")
    if failures:
        print(f"{len(failures)} problem(s) in {runs} runs and {sweeps} sweeps", file=sys.stderr)
        sys.exit(1)
    print(f"TensorBoard and metrics.csv agree with metrics.jsonl in {runs} runs and "
          f"{sweeps} sweeps")


if __name__ == "__main__":
    main(sys.argv[1:])
