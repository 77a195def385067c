#!/usr/bin/env bash
# CI check of examples/optuna-search.sh against real Optuna:
#  1. two copies at once share one SQLite study and run 3 trials each (2000 training images,
#     1000 test images, 1 epoch, 1 thread); Optuna's Python API must then find exactly 6
#     COMPLETE trials, each valued at the final test accuracy its own run directory reports
#     (summary.json and the last evaluation in metrics.jsonl) and trained with the parameters
#     Optuna gave it (the run's config.json);
#  2. a copy whose runs cannot start (an unknown mnist-train flag) stops after one trial,
#     told FAIL, with mnist-train's exit 2;
#  3. a copy stopped by SIGINT (Ctrl-C) during its first trial exits 130 without starting
#     another, the trial told FAIL, its run directory holding mnist-train's checkpoint.
# 2 and 3 keep their studies in a journal file, the storage for many machines.
# usage: optuna-smoke.sh MNIST_TRAIN_BINARY PY_VENV [DATA_DIR]
#   PY_VENV is a virtual environment with optuna installed (pip install optuna).
set -euo pipefail
bin=$1 venv=$2 data=${3:-../shared/data}
here=$(cd "$(dirname "$0")" && pwd)
search=$here/../examples/optuna-search.sh
python=$venv/bin/python
if [ ! -x "$venv/bin/optuna" ]; then
  echo "optuna-smoke: no optuna in $venv (pip install optuna)" >&2
  exit 1
fi
work=$(mktemp -d)
pids=()
stopper=""
cleanup() {
  # Copies still running when a check fails would otherwise outlive the test.
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  [ -z "$stopper" ] || kill -TERM -- -"$stopper" 2>/dev/null || true
  wait || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "optuna-smoke: $*" >&2
  for log in "$work"/*.log; do echo "== $log" >&2; cat "$log" >&2; done
  exit 1
}

export MNIST_TRAIN=$bin MNIST_DATA_DIR=$data OPTUNA_CLI=$venv/bin/optuna PYTHON=$python
export OPTUNA_STORAGE=sqlite:///$work/optuna.db OPTUNA_RUNS_DIR=$work/runs
small=(--train-limit 2000 --test-limit 1000 --epochs 1 --eval-every 0 --threads 1)
took=""
t=$(date +%s)
part() { took="$took, $1 $(($(date +%s) - t)) s"; t=$(date +%s); }

# 1. Both copies start together on a storage that does not exist yet, so they also race to
# create the database and the study.
for copy in 1 2; do
  bash "$search" --study smoke --trials 3 -- "${small[@]}" >"$work/copy-$copy.log" 2>&1 &
  pids+=($!)
done
rcs=()
for pid in "${pids[@]}"; do
  rc=0
  wait "$pid" || rc=$?
  rcs+=("$rc")
done
pids=()
[ "${rcs[*]}" = "0 0" ] || fail "the two copies of the search exited ${rcs[*]}, not 0 0"
for copy in 1 2; do
  n=$(grep -c '^trial [0-9]*: final_test_accuracy ' "$work/copy-$copy.log" || true)
  [ "$n" -eq 3 ] || fail "copy $copy finished $n trials, not 3"
done
part "two copies"

# 2. An unknown flag: mnist-train exits 2 before training, and so would every trial.
rc=0
journal=$work/optuna.journal
bash "$search" --storage "$journal" --study smoke-fail --trials 3 -- "${small[@]}" --no-such-flag \
  >"$work/fail.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "the search with a bad mnist-train flag exited $rc, not 2"
part "bad flag"

# 3. Ctrl-C: SIGINT to the copy's process group, as a terminal sends it, once its first trial
# has trained a step (before that mnist-train exits at once without a checkpoint).
set -m   # its own process group, in which SIGINT is not ignored as for a plain `&`
bash "$search" --storage "$journal" --study smoke-stop --trials 3 \
  -- --train-limit 20000 --epochs 3 --eval-every 0 --threads 1 >"$work/stop.log" 2>&1 &
stopper=$!
set +m
metrics=$work/runs/smoke-stop/trial-0/metrics.jsonl
for _ in $(seq 600); do
  [ -s "$metrics" ] && break
  kill -0 "$stopper" 2>/dev/null || break
  sleep 0.1
done
[ -s "$metrics" ] || fail "the trial to interrupt never trained a step"
kill -INT -- -"$stopper"
rc=0
wait "$stopper" || rc=$?
stopper=""
[ "$rc" -eq 130 ] || fail "the search stopped by SIGINT exited $rc, not 130"
part "Ctrl-C"

"$python" - "$work/optuna.db" "$journal" "$work/runs" <<'EOF' \
  || fail "the studies do not match the runs"
import json, math, os, sys
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

db, journal, runs = sys.argv[1:]
optuna.logging.set_verbosity(optuna.logging.WARNING)
problems = []

def trials(study, storage):
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)

def last_test_accuracy(path):
    accuracy = None
    with open(path) as f:
        for line in f:
            step = json.loads(line)
            accuracy = step.get("test_accuracy", accuracy)
    return accuracy

smoke = trials("smoke", "sqlite:///" + db)
complete = [t for t in smoke if t.state == TrialState.COMPLETE]
if len(smoke) != 6 or len(complete) != 6:
    problems.append("study smoke: %d trials, %d complete; expected 6 and 6: %s"
                    % (len(smoke), len(complete), [(t.number, t.state.name) for t in smoke]))
expected_dirs = sorted("trial-%d" % t.number for t in smoke)
found_dirs = sorted(os.listdir(os.path.join(runs, "smoke")))
if found_dirs != expected_dirs:
    problems.append("run directories %s, trials %s" % (found_dirs, expected_dirs))
for t in complete:
    run = os.path.join(runs, "smoke", "trial-%d" % t.number)
    with open(os.path.join(run, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    reported = summary["final_test_accuracy"]
    # Told as the text of summary.json's number, so the value must be that number exactly.
    if t.value != reported:
        problems.append("trial %d: value %r, summary.json says %r" % (t.number, t.value, reported))
    logged = last_test_accuracy(os.path.join(run, "metrics.jsonl"))
    if logged is None or not math.isclose(t.value, logged, abs_tol=1e-6):
        problems.append("trial %d: value %r, metrics.jsonl's last test_accuracy %r"
                        % (t.number, t.value, logged))
    if not t.params:
        problems.append("trial %d has no parameters" % t.number)
    for name, value in t.params.items():
        if config.get(name.replace("-", "_")) != value:
            problems.append("trial %d: Optuna chose %s=%r, config.json has %r"
                            % (t.number, name, value, config.get(name)))
    if (config["train_limit"], config["test_limit"], summary["test_images"]) != (2000, 1000, 1000):
        problems.append("trial %d did not run on the subset: %s" % (t.number, run))
# Not a check, as it depends on timing: whether the copies really trained at the same time.
spans = [(t.datetime_start, t.datetime_complete) for t in complete]
overlaps = sum(1 for i, (start, end) in enumerate(spans)
               if any(j != i and other[0] < end and start < other[1]
                      for j, other in enumerate(spans)))
print("study smoke: %d complete trials (%d overlapped another), values %s"
      % (len(complete), overlaps, sorted(t.value for t in complete)))

for study, expected in (("smoke-fail", "the one trial of a bad flag"),
                        ("smoke-stop", "the one interrupted trial")):
    got = [(t.number, t.state.name)
           for t in trials(study, JournalStorage(JournalFileBackend(journal)))]
    if got != [(0, "FAIL")]:
        problems.append("study %s holds %s; expected %s, FAIL" % (study, got, expected))
stopped = os.path.join(runs, "smoke-stop", "trial-0")
if os.path.exists(os.path.join(stopped, "summary.json")):
    problems.append("the interrupted trial has a summary.json: it was not interrupted")
checkpoints = os.path.join(stopped, "checkpoints")
if not os.path.isdir(checkpoints) or not os.listdir(checkpoints):
    problems.append("the interrupted trial left no checkpoint")

for problem in problems:
    print("optuna-smoke: " + problem, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
part "checks"
echo "optuna-smoke: ok (${took#, })"
