#!/usr/bin/env bash
# Hyperparameter search with Optuna (https://optuna.org), driven through Optuna's own command
# line, for when a grid (`mnist-train sweep`) gets too big. Each trial is
#
#   optuna ask    → Optuna picks lr, dropout, init, activation, batchnorm from SEARCH_SPACE
#   mnist-train   → one ordinary run in runs/optuna/<study>/trial-<N>
#   optuna tell   → the run's final test accuracy, read from its summary.json
#
# The study lives in a storage that any number of copies of this script share, on one machine
# or on many (array tasks), and each copy asks for its own trials; Optuna's sampler (TPE by
# default) sees every finished trial of every copy.
#
#   python3 -m venv .venv && .venv/bin/pip install optuna && . .venv/bin/activate  # Optuna >= 4
#   mnist-train download            # once: the trials run --offline, so copies never race to fetch
#   examples/optuna-search.sh                                  # 10 trials on the full data
#   examples/optuna-search.sh --trials 30 -- --train-limit 10000 --epochs 2  # mnist-train flags
#
#   # Two copies at once on a 4-core machine, sharing runs/optuna/optuna.db (SQLite). Ctrl-C
#   # does not reach background jobs: stop them with `kill -INT %1 %2`.
#   for i in 1 2; do examples/optuna-search.sh -- --threads 2 & done; wait
#
#   # A Slurm array of 8 tasks on any nodes, sharing a journal file on a shared filesystem:
#   mkdir -p runs && OPTUNA_STORAGE=runs/optuna/mnist.journal sbatch --array=0-7 -c 4 \
#     --output='runs/optuna-%A_%a.out' --wrap 'examples/optuna-search.sh -- --threads 4'
#
#   # Look at the study at any time, from anywhere that reaches the storage:
#   optuna trials --storage sqlite:///runs/optuna/optuna.db --study-name mnist
#   optuna best-trial --storage sqlite:///runs/optuna/optuna.db --study-name mnist
#
# Settings: the options below, or the environment (options win).
#   --storage URL     OPTUNA_STORAGE     [sqlite:///runs/optuna/optuna.db]
#       sqlite:///PATH        one machine. SQLite lets one process write at a time, and Python
#                             gives up on its lock after 5 s ("database is locked"), which copies
#                             telling and asking at once can exceed: this script adds
#                             ?timeout=60 unless the URL sets one. Not on NFS: its locks are
#                             unreliable there.
#       PATH (no "://")       a journal file (Optuna's JournalFileBackend): an append-only log
#                             with a lock that works on NFS; the choice for array tasks on a
#                             cluster's shared filesystem.
#       postgresql://… mysql://…  a database server that all machines reach (pip install
#                             psycopg2-binary or PyMySQL next to optuna).
#   --study NAME      OPTUNA_STUDY       [mnist]  created if missing; also the run folder's name
#   --trials N        OPTUNA_TRIALS      [10]     trials THIS copy runs (as Optuna's n_trials):
#                                                 4 copies of --trials 10 make 40
#   --runs-dir DIR    OPTUNA_RUNS_DIR    [runs/optuna]  trial N runs in DIR/<study>/trial-N
#   MNIST_TRAIN       the binary         [mnist-train on PATH; or target/release/mnist-train]
#   MNIST_DATA_DIR    the data           [mnist-train's default, ~/.cache/mnist-train]
#   OPTUNA_CLI        the optuna command [optuna on PATH]
#   PYTHON            any Python 3, to read JSON  [python3]
#   OPTUNA_SAMPLER, OPTUNA_SAMPLER_KWARGS  e.g. RandomSampler, or TPESampler with
#                     '{"constant_liar": true}' (steers parallel copies apart)  [TPESampler].
#                     No "seed": every ask builds its sampler afresh, so a seed would hand
#                     every trial the same parameters.
#   OPTUNA_METRIC, OPTUNA_DIRECTION  [final_test_accuracy, maximize]: a key of summary.json;
#                     see "What is maximized" in this script before you trust the best trial
#   OPTUNA_MAX_FAILURES  stop after this many failed trials in a row  [3]
# mnist-train's own settings go after `--` (--train-limit, --epochs, --threads, --seed,
# --hidden, …), the same for every trial; a flag that SEARCH_SPACE also sets is refused by
# mnist-train (exit 2). Trials run --quiet --eval-every 0 (a test evaluation per epoch, not
# per step) unless you pass --json/--quiet or --eval-every. Give each copy --threads (or
# MNIST_TRAIN_THREADS) so that the copies on one machine share its cores instead of each
# taking all of them.
#
# Stopping. Ctrl-C, or SIGTERM to the whole process group (`kill -TERM -- -PGID`, Slurm's time
# limit, scancel), stops the running trial at once (mnist-train checkpoints first), marks it
# FAIL in the study, and exits 130 (143). Its run directory keeps the checkpoint; `mnist-train
# train --resume DIR` can finish it for a look, but Optuna takes no value for a trial once it
# is finished, so the search does not use it. A signal to this script alone (`kill PID`) lets
# the running trial finish and be told, then stops. A copy killed outright (kill -9, a lost
# node) leaves its trial RUNNING in the study for good; mark it yourself:
#   optuna tell --storage … --study-name … --trial-number N --state fail
#
# Failed runs are told FAIL, and the sampler ignores them. Exit 5 (the loss diverged: that
# lr/init pair is bad) is a result and the search goes on. Exit 2 (a bad flag after --, a value
# out of range, a run directory that already holds a run because the study was deleted and
# made again under its old name), 3 (data missing) and 6 (no GPU) would fail every trial
# alike: the copy stops at once. Any other failure stops it after OPTUNA_MAX_FAILURES in a row.
set -euo pipefail

# What Optuna chooses from (edit here, or set SEARCH_SPACE): each key is a `mnist-train train`
# flag (underscores become dashes), each value an Optuna distribution as JSON, as
# optuna.distributions.distribution_to_json writes it. Changing it for a running study is
# allowed (Optuna samples what each ask names), but the sampler learns less from trials that
# had another space.
SEARCH_SPACE=${SEARCH_SPACE:-'{
  "lr":         {"name": "FloatDistribution",
                 "attributes": {"low": 1e-4, "high": 1e-2, "log": true}},
  "dropout":    {"name": "FloatDistribution", "attributes": {"low": 0.0, "high": 0.5}},
  "init":       {"name": "CategoricalDistribution",
                 "attributes": {"choices": ["random-normal", "xavier-uniform", "he-uniform"]}},
  "activation": {"name": "CategoricalDistribution",
                 "attributes": {"choices": ["relu", "tanh", "selu", "leaky-relu"]}},
  "batchnorm":  {"name": "CategoricalDistribution", "attributes": {"choices": [false, true]}}
}'}

# What is maximized: a key of the run's summary.json. It is the run's own record, written only
# when the run succeeds, and stays next to the checkpoint to check later; `--json` on stdout
# has no final line, only one object per step. `final_test_accuracy` is the model the run ends
# with (`best_test_accuracy`, the best of every evaluation, would pick a step by the test set
# as well). Be honest about the result: the test set that ranks the trials is then no longer
# unseen, and the best of many trials' test accuracies overstates what that configuration
# scores on new data (on 10,000 test images one accuracy near 98% has a standard error of
# 0.14%, before the spread between seeds: trials a few tenths of a percent apart may differ
# by chance alone). Report it as a selection score; for a clean
# estimate pick on a validation split (once mnist-train has one, name its summary key here)
# and score the chosen configuration once on the test set, or again with other seeds.
METRIC=${OPTUNA_METRIC:-final_test_accuracy}
DIRECTION=${OPTUNA_DIRECTION:-maximize}   # minimize for a loss, e.g. final_test_loss

STORAGE=${OPTUNA_STORAGE:-sqlite:///runs/optuna/optuna.db}
STUDY=${OPTUNA_STUDY:-mnist}
TRIALS=${OPTUNA_TRIALS:-10}
RUNS_DIR=${OPTUNA_RUNS_DIR:-runs/optuna}
MNIST_TRAIN=${MNIST_TRAIN:-mnist-train}
OPTUNA_CLI=${OPTUNA_CLI:-optuna}
PYTHON=${PYTHON:-python3}
MAX_FAILURES=${OPTUNA_MAX_FAILURES:-3}

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }
die() { echo "optuna-search: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --storage) STORAGE=${2:?--storage needs a value}; shift 2 ;;
    --study) STUDY=${2:?--study needs a value}; shift 2 ;;
    --trials) TRIALS=${2:?--trials needs a value}; shift 2 ;;
    --runs-dir) RUNS_DIR=${2:?--runs-dir needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (mnist-train's flags go after --; see --help)" ;;
  esac
done
EXTRA=("$@")
[[ $TRIALS =~ ^[0-9]+$ ]] || die "--trials must be a number, not '$TRIALS'"
[[ $MAX_FAILURES =~ ^[1-9][0-9]*$ ]] || die "OPTUNA_MAX_FAILURES must be a positive number"
[[ ${OPTUNA_SAMPLER_KWARGS:-} != *seed* ]] \
  || die "no seed in OPTUNA_SAMPLER_KWARGS: each ask would draw the same parameters again"
command -v "$OPTUNA_CLI" >/dev/null \
  || die "no '$OPTUNA_CLI' command: pip install optuna (or set OPTUNA_CLI)"
command -v "$MNIST_TRAIN" >/dev/null || die "no '$MNIST_TRAIN' binary (set MNIST_TRAIN)"

storage_args=(--storage "$STORAGE")
case $STORAGE in
  sqlite:///*)
    db=${STORAGE#sqlite:///}
    mkdir -p "$(dirname "${db%%\?*}")"
    if [[ $STORAGE != *timeout=* ]]; then
      [[ $STORAGE == *\?* ]] && sep='&' || sep='?'
      storage_args=(--storage "$STORAGE${sep}timeout=60")
    fi ;;
  *://*) ;;   # a database server (or redis://): Optuna knows the class from the URL
  *)
    # A plain path is a journal file. Optuna guesses that only once the file exists, so the
    # first copy would otherwise try it as a database URL.
    mkdir -p "$(dirname "$STORAGE")"
    storage_args+=(--storage-class JournalFileBackend) ;;
esac

# Optuna flags its ask/tell/trials/best-trial commands experimental on every call; say so once
# here rather than on every trial. (A category filter misses: ExperimentalWarning is Optuna's.)
export PYTHONWARNINGS="ignore:'ask' is an experimental CLI,ignore:'tell' is an experimental CLI,\
ignore:'trials' is an experimental CLI,ignore:'best-trial' is an experimental CLI"
run_optuna() { "$OPTUNA_CLI" "$1" -q "${storage_args[@]}" --study-name "$STUDY" "${@:2}"; }

# The first signal is remembered and acted on between steps; see "Stopping" above.
stop=""
on_signal() { [ -n "$stop" ] || stop=$1; }
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

# Runs `optuna "$@"` immune to Ctrl-C and SIGTERM, so that the study's bookkeeping is never cut
# in half: an ask stopped after Optuna stored the trial but before it printed the number would
# leave a RUNNING trial that nobody can tell. The child starts with the signals ignored (set
# before the fork, so there is no window), and the script waits for it even when a signal
# interrupts `wait` (the signal is only recorded).
shielded() {
  trap '' INT TERM
  run_optuna "$@" &
  local pid=$!
  trap 'on_signal INT' INT
  trap 'on_signal TERM' TERM
  while kill -0 "$pid" 2>/dev/null; do wait "$pid" || true; done
  wait "$pid"   # bash keeps the status of a finished child for this
}

# Telling and creating are safe to repeat (--skip-if-finished, --skip-if-exists), so a storage
# that is briefly busy or unreachable costs a retry, not the trial. Asking is not: a retry could
# make a second trial. The likeliest failure is harmless: copies that start together on a new
# SQLite file race to create its tables, and all but one fail once ("table studies already
# exists"); so a failed attempt shows only its last line, the last attempt everything.
last_error() {   # the exception line of a Python traceback
  grep -E '^[[:alpha:]_][[:alnum:]_.]*(Error|Exception): ' "$1" | tail -n 1 | grep . \
    || tail -n 1 "$1"
}
retried() {
  local attempt err
  err=$(mktemp)
  for attempt in 1 2 3 4 5; do
    if shielded "$@" 2>"$err"; then
      rm -f "$err"
      return 0
    fi
    if [ "$attempt" -eq 5 ]; then
      cat "$err" >&2
      rm -f "$err"
      return 1
    fi
    echo "optuna-search: 'optuna $1' failed, retrying in $attempt s: $(last_error "$err")" >&2
    sleep "$attempt" || true
  done
}

# The trial asked for and not yet told: if the script stops anywhere in between, even on an
# error of its own, the trial is told FAIL instead of staying RUNNING for good.
trial=""
tell_fail() {
  retried tell --trial-number "$trial" --state fail --skip-if-finished || true
  trial=""
}
trap '[ -z "$trial" ] || tell_fail' EXIT

retried create-study --direction "$DIRECTION" --skip-if-exists >/dev/null \
  || die "cannot create or open study '$STUDY' in $STORAGE"

# The trial's parameters as mnist-train flags; the first line is the trial number.
ask_to_flags='
import json, sys
t = json.loads(sys.stdin.read().strip().splitlines()[-1])
print(t["number"])
for name, value in t["params"].items():
    if isinstance(value, bool):
        value = str(value).lower()
    print("--%s=%s" % (name.replace("_", "-"), value))   # repr of a float round-trips
'
# The metric from summary.json, as a float that round-trips, or a message and exit 1.
read_metric='
import json, math, sys
path, key = sys.argv[1], sys.argv[2]
value = json.load(open(path))
for part in key.split("."):
    value = value.get(part) if isinstance(value, dict) else None
if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    sys.exit("optuna-search: %s holds no finite number at %r (got %r)" % (path, key, value))
print(repr(float(value)))
'

data_args=(--offline)
[ -z "${MNIST_DATA_DIR:-}" ] || data_args+=(--data-dir "$MNIST_DATA_DIR")
# The run's lines go to its train.log; per-step lines there would only repeat metrics.jsonl.
# Only the end matters to the search, and mnist-train's default of a test-set evaluation
# after every step takes ten times as long as the training (full data, 1 epoch: 24 s against
# 2 s), so the trials evaluate at each epoch's end unless told otherwise after --.
quiet=(--quiet)
evaluate=(--eval-every 0)
for arg in "${EXTRA[@]}"; do
  case $arg in
    -q | --quiet | --json) quiet=() ;;
    --eval-every | --eval-every=*) evaluate=() ;;
  esac
done
defaults=("${quiet[@]}" "${evaluate[@]}")

sampler_args=()
[ -z "${OPTUNA_SAMPLER:-}" ] || sampler_args+=(--sampler "$OPTUNA_SAMPLER")
[ -z "${OPTUNA_SAMPLER_KWARGS:-}" ] || sampler_args+=(--sampler-kwargs "$OPTUNA_SAMPLER_KWARGS")

echo "optuna-search: study '$STUDY' in $STORAGE, $TRIALS trials, runs in $RUNS_DIR/$STUDY"
failures=0
status=0
for ((i = 1; i <= TRIALS; i++)); do
  [ -z "$stop" ] || break
  asked=$(mktemp)
  if ! shielded ask --search-space "$SEARCH_SPACE" "${sampler_args[@]}" -f json >"$asked"; then
    rm -f "$asked"
    die "'optuna ask' failed (see above)"
  fi
  mapfile -t flags < <("$PYTHON" -c "$ask_to_flags" <"$asked")
  rm -f "$asked"
  [[ ${flags[0]:-} =~ ^[0-9]+$ ]] || die "cannot read the trial 'optuna ask' made"
  number=${flags[0]}
  trial=$number
  flags=("${flags[@]:1}")
  [ -z "$stop" ] || break   # a signal during the ask: the EXIT trap fails the trial

  run_dir=$RUNS_DIR/$STUDY/trial-$number
  mkdir -p "$run_dir"
  echo "trial $number: ${flags[*]}"
  rc=0
  "$MNIST_TRAIN" train "${data_args[@]}" "${defaults[@]}" --run-dir "$run_dir" \
    "${flags[@]}" "${EXTRA[@]}" >"$run_dir/train.log" 2>&1 || rc=$?

  if [ "$rc" -eq 0 ]; then
    if ! value=$("$PYTHON" -c "$read_metric" "$run_dir/summary.json" "$METRIC"); then
      tell_fail
      status=1
      break
    fi
    retried tell --trial-number "$number" --values "$value" --state complete --skip-if-finished \
      || die "cannot tell trial $number its $METRIC $value"
    trial=""
    failures=0
    echo "trial $number: $METRIC $value"
    continue
  fi

  tell_fail
  echo "trial $number failed: mnist-train exited $rc; from $run_dir/train.log:" >&2
  { grep -E '^error|panicked' "$run_dir/train.log" || tail -n 3 "$run_dir/train.log"; } \
    | tail -n 3 | sed 's/^/  /' >&2
  case $rc in
    # Stopped by a signal that reached mnist-train, with or without this script.
    130) on_signal INT; break ;;
    143) on_signal TERM; break ;;
    5) ;;
    2 | 3 | 6)
      echo "optuna-search: every further trial would fail the same way; stopping" >&2
      status=$rc
      break ;;
    *)
      failures=$((failures + 1))
      if [ "$failures" -ge "$MAX_FAILURES" ]; then
        echo "optuna-search: $failures failed trials in a row; stopping" >&2
        status=1
        break
      fi ;;
  esac
done

# A signal during an ask leaves that trial unrun.
[ -z "$trial" ] || tell_fail

# Where the whole study stands, all copies together. (Through files: a big study's JSON is
# longer than one command-line argument may be.)
summary='
import json, sys
trials_file, best_file, study, metric, runs = sys.argv[1:]
with open(trials_file) as f:
    trials = json.loads(f.read() or "[]")
with open(best_file) as f:
    best = json.loads(f.read() or "null")
states = {}
for t in trials:
    states[t["state"].lower()] = states.get(t["state"].lower(), 0) + 1
counts = ", ".join("%d %s" % (n, state) for state, n in sorted(states.items()))
print("study %s: %s" % (study, counts or "no trials"))
if best:
    flags = " ".join("--%s=%s" % (k.replace("_", "-"), str(v).lower() if isinstance(v, bool) else v)
                     for k, v in best["params"].items())
    print("best so far: trial %d, %s %s: %s" % (best["number"], metric, best["value"], flags))
    print("  run: %s/trial-%d" % (runs, best["number"]))
'
all_trials=$(mktemp)
best=$(mktemp)
shielded trials -f json >"$all_trials" 2>/dev/null || : >"$all_trials"
shielded best-trial -f json >"$best" 2>/dev/null || : >"$best"   # fails until one completes
"$PYTHON" -c "$summary" "$all_trials" "$best" "$STUDY" "$METRIC" "$RUNS_DIR/$STUDY" || true
rm -f "$all_trials" "$best"

if [ -n "$stop" ]; then
  echo "optuna-search: stopped by SIG$stop" >&2
  # Die of the signal itself, so that a calling shell or loop stops too rather than carrying
  # on; where the signal was ignored from the start (a background job of a script), the kill
  # does nothing and the exit status says it instead.
  trap - EXIT "$stop"
  kill -s "$stop" $$
  [ "$stop" = INT ] && exit 130 || exit 143
fi
exit "$status"
