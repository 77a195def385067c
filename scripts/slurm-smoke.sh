#!/usr/bin/env bash
# Slurm, run for real (issue 13): brings up a one-node Slurm cluster on this machine, submits
# examples/sweep-slurm.sbatch as a job array over a small sweep (scripts/slurm-smoke-sweep.json)
# and checks that
#   1. every trial ran exactly once across the array tasks, and all finished;
#   2. `mnist-train sweep report` over the shared directory gives the same table as the same
#      sweep run locally (same trials, same accuracies; wall times aside);
#   3. a task cancelled with `scancel --signal=TERM` mid-trial leaves a checkpoint, and
#      resubmitting finishes the trial from it, with the uninterrupted run's accuracy.
#
#   bash scripts/slurm-smoke.sh target/release/mnist-train
#
# Needs root: it installs Debian's slurm-wlm and munge when missing and runs munged,
# slurmctld and slurmd directly (no systemd, no cgroups), all state in one temporary
# directory. On exit, success or failure, it cancels the jobs, stops the daemons, kills
# whatever they left and removes the directory (SLURM_SMOKE_KEEP=1 keeps it).
# Data: MNIST_DATA_DIR, default ../shared/data/mnist next to the repository.
# SLURM_SMOKE_WAIT_S bounds every wait (default 600 s), so a hang fails instead of blocking.
set -euo pipefail

die() {
  echo "slurm-smoke: FAIL: $*" >&2
  exit 1
}
log() { echo "== $*"; }

[ $# -eq 1 ] || { echo "usage: bash scripts/slurm-smoke.sh PATH/TO/mnist-train" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$1" ] || die "$1 is not an executable"
# Absolute paths throughout: the jobs start in the submit directory, not in ours.
bin=$(realpath "$1")
data_dir=${MNIST_DATA_DIR:-$repo/../shared/data/mnist}
[ -d "$data_dir" ] || die "no MNIST data in $data_dir (set MNIST_DATA_DIR)"
data_dir=$(realpath "$data_dir")
spec=$repo/scripts/slurm-smoke-sweep.json
sbatch_file=$repo/examples/sweep-slurm.sbatch
wait_s=${SLURM_SMOKE_WAIT_S:-600}
tasks=2 # array size; each task gets one CPU, so both run at once on a 2-core machine
[ "$(id -u)" -eq 0 ] || die "needs root (installs packages, runs slurmd); CI runs as root"
command -v python3 >/dev/null || die "needs python3 (reads the sweeps' JSON)"

start=$(date +%s)
timings=()
phase_name=
# phase NAME ... phase_done: one line of the timings printed at the end.
phase() {
  phase_name=$1
  phase_start=$(date +%s)
}
phase_done() {
  local took=$(($(date +%s) - phase_start))
  timings+=("$(printf '%-42s %4d s' "$phase_name${1:-}" "$took")")
  log "$phase_name${1:-}: $took s"
  phase_name=
}

# --- packages -------------------------------------------------------------------------------
phase "install slurm-wlm, munge (if missing)"
if ! dpkg-query -W -f='${Status}\n' slurm-wlm munge 2>/dev/null \
    | grep -c '^install ok installed' | grep -qx 2; then
  log "installing slurm-wlm munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages' postinst scripts try to start the system services; where there is no
  # systemd (containers) that fails harmlessly, and ours use their own config and ports.
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
phase_done

# --- cluster --------------------------------------------------------------------------------
phase "start munged, slurmctld, slurmd"
work=$(mktemp -d "${TMPDIR:-/tmp}/slurm-smoke.XXXXXX")
conf=$work/etc/slurm.conf
mkdir -p "$work"/{etc,munge,state,spool,log,run,out}
chmod 0755 "$work" # munged wants its socket's directories searchable by all
# Every process started from here on inherits this variable, the daemons and through them
# the jobs and their trials: cleanup finds whatever is left by it, and by nothing broader.
export SLURM_CONF=$conf

daemon_pids=()
# (Clients wait for a dead controller, retrying for seconds.)
ctld_running() { [ -n "${ctld_pid:-}" ] && kill -0 "$ctld_pid" 2>/dev/null; }
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [ -n "$phase_name" ] && phase_done " (failed)"
  phase "stop daemons, clean up"
  if [ "$rc" -ne 0 ]; then
    echo "---- slurm-smoke failed (exit $rc); diagnostics:" >&2
    ctld_running && squeue -a >&2 2>/dev/null
    for f in "$work"/log/slurmctld.log "$work"/log/slurmd.log "$work"/log/munged.log; do
      # (Without the harmless complaints of a fresh cluster: no saved state, no PMIx.)
      [ -s "$f" ] && { echo "---- tail $f" >&2; grep -v -e 'state file' -e 'Trying backup' \
        -e 'PMIx' -e 'mpi/pmix' "$f" | tail -n 25 >&2; }
    done
    for f in "$work"/out/*.out; do
      [ -s "$f" ] && { echo "---- $f" >&2; tail -n 30 "$f" >&2; }
    done
  fi
  if ctld_running; then
    scancel --quiet --user="$(id -un)" 2>/dev/null
    for _ in $(seq 60); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  local pid
  for pid in "${daemon_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  local running
  for _ in $(seq 40); do
    running=0
    for pid in "${daemon_pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ "$running" -eq 0 ] && break
    sleep 0.25
  done
  # Job steps (slurmstepd), batch scripts and trials outlive slurmd when a job could not be
  # cancelled; they all carry our SLURM_CONF.
  # (In a subshell without the variable, so that the pipeline does not find itself.)
  leftovers() (
    unset SLURM_CONF
    grep -lzxF "SLURM_CONF=$conf" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true
  )
  local left
  left=$(leftovers)
  if [ -n "$left" ]; then
    echo "slurm-smoke: stopping leftover processes: $(echo "$left" | tr '\n' ' ')" >&2
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM $left 2>/dev/null
    sleep 2
    left=$(leftovers)
    # shellcheck disable=SC2086
    [ -n "$left" ] && kill -KILL $left 2>/dev/null && sleep 1
    left=$(leftovers)
    if [ -n "$left" ]; then
      echo "slurm-smoke: FAIL: processes still running: $left" >&2
      [ "$rc" -eq 0 ] && rc=1
    fi
  fi
  if [ "${SLURM_SMOKE_KEEP:-0}" = 1 ]; then
    echo "slurm-smoke: kept $work" >&2
  else
    rm -rf "$work"
  fi
  phase_done
  echo "== timings"
  printf '   %s\n' "${timings[@]}"
  echo "   total $(($(date +%s) - start)) s; $([ "$rc" -eq 0 ] && echo passed || echo FAILED)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds; fails after SECONDS.
wait_for() {
  local description=$1 limit=$2
  local deadline=$(($(date +%s) + limit))
  shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after $limit s waiting for $description"
    sleep 0.5
  done
}
# A daemon that died fails the wait at once, with its last words, not after the timeout.
alive() {
  kill -0 "$2" 2>/dev/null || die "$1 exited:
$(tail -n 15 "$work/log/$1.log" "$work/log/$1.stderr" 2>/dev/null)"
}

# A free TCP port from $1 up: a second cluster (or a system one) may hold the default.
free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) * 9 / 10 / 1024))
ctld_port=$(free_port 6817)
slurmd_port=$(free_port $((ctld_port + 1)))
cat >"$conf" <<EOF
ClusterName=smoke
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/munge.socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
# No cgroups or systemd in a container: track processes by parentage, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
# Whole CPUs, memory not a consumable: one CPU per array task, whatever the core layout.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Finished jobs stay visible to scontrol (there is no accounting database for sacct).
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=smoke Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 0400 "$work/munge/munge.key"
munged --foreground --force --key-file="$work/munge/munge.key" \
  --socket="$work/munge/munge.socket" --pid-file="$work/run/munged.pid" \
  --seed-file="$work/munge/munged.seed" --log-file="$work/log/munged.log" \
  2>>"$work/log/munged.log" &
munged_pid=$!
daemon_pids+=("$munged_pid")
munge_ok() {
  alive munged "$munged_pid"
  munge -n -S "$work/munge/munge.socket" 2>/dev/null \
    | unmunge -S "$work/munge/munge.socket" >/dev/null 2>&1
}
wait_for "munged to answer" 60 munge_ok

slurmctld -D -f "$conf" >"$work/log/slurmctld.stderr" 2>&1 &
ctld_pid=$!
daemon_pids+=("$ctld_pid")
ctld_up() {
  alive slurmctld "$ctld_pid"
  scontrol ping 2>/dev/null | grep -q 'is UP'
}
wait_for "slurmctld to answer" 60 ctld_up
slurmd -D -f "$conf" -N "$host" >"$work/log/slurmd.stderr" 2>&1 &
slurmd_pid=$!
daemon_pids+=("$slurmd_pid")
node_idle() {
  alive slurmd "$slurmd_pid"
  [ "$(sinfo -h -N -n "$host" -o %t 2>/dev/null)" = idle ]
}
wait_for "node $host to be idle (sinfo)" 60 node_idle
log "cluster up: node $host, $cpus CPUs, ports $ctld_port/$slurmd_port, in $work"
phase_done

# --- helpers for the jobs -------------------------------------------------------------------
# Submits the example sbatch file, unchanged, as an array of $tasks tasks into sweep dir $1;
# task outputs go to $work/out/$2-<task>.out. Prints the job id.
submit() {
  local id
  id=$(cd "$repo" && SWEEP_SPEC=$spec SWEEP_DIR=$1 MNIST_DATA_DIR=$data_dir MNIST_TRAIN=$bin \
    SWEEP_JOBS=1 sbatch --parsable --array="0-$((tasks - 1))" --cpus-per-task=1 --mem=1G \
    --time=00:10:00 --job-name=mnist-smoke --output="$work/out/$2-%a.out" "$sbatch_file")
  echo "${id%%;*}"
}
# (A failing squeue is no empty queue; a dead controller fails the wait at once.)
queue_empty() {
  local queue
  alive slurmctld "$ctld_pid"
  queue=$(squeue -h -j "$1" -o %i 2>/dev/null) || return 1
  [ -z "$queue" ]
}
# "task state exit_code" for every task of array job $1.
task_states() {
  scontrol -o show job "$1" | tr ' ' '\n' \
    | awk -F= '$1=="ArrayTaskId"{t=$2} $1=="JobState"{s=$2} $1=="ExitCode"{print t, s, $2}' \
    | sort -n
}
expect_completed() {
  local states
  states=$(task_states "$1")
  while read -r line; do echo "   task $line"; done <<<"$states"
  [ "$(echo "$states" | grep -c ' COMPLETED 0:0$')" -eq "$tasks" ] \
    || die "job $1: not every task completed with exit 0 (see above)"
}
# `mnist-train sweep report` of sweep dir $1: rewrites its results.json; prints the table.
report() {
  "$bin" sweep report "$1" >"$work/out/report.md" 2>"$work/out/report.err" \
    || die "mnist-train sweep report $1 failed: $(cat "$work/out/report.err")"
  sed -n 's/^|/   |/p' "$work/out/report.md"
}

# Python for the checks that read JSON. Trial k of the manifest belongs to task k mod n.
check() {
  python3 - "$@" <<'PY'
import json, pathlib, re, sys

def fail(msg):
    sys.exit(f"slurm-smoke: FAIL: {msg}")

def manifest(d):
    return json.loads((pathlib.Path(d) / "sweep.json").read_text())["trials"]

def starts(log):
    """(fresh starts, resumes) in a trial's train.log: each run of the child prints one."""
    text = log.read_text()
    return (len(re.findall(r"^training ", text, re.M)),
            len(re.findall(r"^resuming ", text, re.M)))

def steps_once(run):
    """Every global step logged once, in order: two runs of the trial would repeat steps."""
    steps = []
    for n, line in enumerate((run / "metrics.jsonl").read_text().splitlines(), 1):
        try:
            steps.append(json.loads(line)["global_step"])
        except (ValueError, KeyError):
            fail(f"{run.name}: metrics.jsonl line {n} is not a step record (torn by a kill?): {line[:80]!r}")
    if steps != sorted(set(steps)):
        fail(f"{run.name}: metrics.jsonl repeats or reorders steps")
    return steps[-1] if steps else 0

def ran_by_task(out_prefix, tasks):
    """Trial dirs each task's output reports as run (finished) or skipped."""
    ran, skipped = {}, {}
    for t in range(tasks):
        text = pathlib.Path(f"{out_prefix}-{t}.out").read_text()
        ran[t] = re.findall(r"^\[\d+/\d+\] (\S+): test accuracy", text, re.M)
        skipped[t] = re.findall(r"^\[\d+/\d+\] (\S+): already finished, skipped", text, re.M)
    return ran, skipped

def strip_wall(x):
    if isinstance(x, dict):
        return {k: strip_wall(v) for k, v in x.items() if k != "wall_time_s"}
    if isinstance(x, list):
        return [strip_wall(v) for v in x]
    return x

cmd, *args = sys.argv[1:]
if cmd == "once":  # sweep_dir out_prefix tasks
    d, out_prefix, tasks = pathlib.Path(args[0]), args[1], int(args[2])
    trials = manifest(d)
    ran, _ = ran_by_task(out_prefix, tasks)
    for tr in trials:
        run = d / tr["dir"]
        owners = [t for t in range(tasks) if tr["dir"] in ran[t]]
        if owners != [tr["index"] % tasks]:
            fail(f"trial {tr['index']} {tr['dir']}: run by tasks {owners}, expected [{tr['index'] % tasks}]")
        if ran[owners[0]].count(tr["dir"]) != 1:
            fail(f"{tr['dir']}: task {owners[0]} ran it more than once")
        if starts(run / "train.log") != (1, 0):
            fail(f"{tr['dir']}: train.log shows {starts(run / 'train.log')} (starts, resumes), expected one start")
        if not (run / "summary.json").is_file():
            fail(f"{tr['dir']}: no summary.json")
        steps_once(run)
        print(f"   trial {tr['index']} {tr['dir']}: task {owners[0]}, one start, finished")
elif cmd == "resubmitted":  # sweep_dir out_prefix tasks resumed_index
    # The resubmitted array ran what was left, each trial once; the resumed one started twice.
    d, out_prefix, tasks, resumed = pathlib.Path(args[0]), args[1], int(args[2]), int(args[3])
    ran, skipped = ran_by_task(out_prefix, tasks)
    for tr in manifest(d):
        owner = tr["index"] % tasks
        runs = [t for t in range(tasks) if tr["dir"] in ran[t] + skipped[t]]
        if runs != [owner] or (ran[owner] + skipped[owner]).count(tr["dir"]) != 1:
            fail(f"resubmitted: trial {tr['index']} {tr['dir']} reported by tasks {runs}, expected [{owner}]")
        want = (1, 1) if tr["index"] == resumed else (1, 0)
        if starts(d / tr["dir"] / "train.log") != want:
            fail(f"{tr['dir']}: train.log shows {starts(d / tr['dir'] / 'train.log')} (starts, resumes), expected {want}")
        how = "ran" if tr["dir"] in ran[owner] else "skipped"
        print(f"   trial {tr['index']} {tr['dir']}: task {owner} {how} it; {want[0]} start, {want[1]} resume")
elif cmd == "same":  # dir_a dir_b: the reports agree, wall times aside
    a, b = (strip_wall(json.loads((pathlib.Path(x) / "results.json").read_text())) for x in args)
    if a != b:
        fail(f"the reports of {args[0]} and {args[1]} differ:\n{json.dumps(a, indent=1)}\n---\n{json.dumps(b, indent=1)}")
    if a["done"] != a["trials"] or a["failed"]:
        fail(f"{args[0]}: {a['done']} of {a['trials']} trials done, {a['failed']} failed")
    for row in a["rows"]:
        for t in row["trials"]:
            print(f"   {t['dir']}: final test accuracy {t['final_test_accuracy']:.2f}% in both")
elif cmd == "trial-dir":  # sweep_dir index
    print(manifest(args[0])[int(args[1])]["dir"])
elif cmd == "interrupted":  # run_dir out_file note: stopped at a checkpoint, not finished
    run, out, note = pathlib.Path(args[0]), pathlib.Path(args[1]).read_text(), pathlib.Path(args[2])
    if (run / "summary.json").exists():
        fail(f"{run.name} finished: SIGTERM did not reach it in time (too short a trial? the sweep "
             "not the batch shell, i.e. no `exec` in the sbatch file?)")
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    if not ckpts:
        fail(f"{run.name}: no checkpoint left after SIGTERM")
    if "interrupted by SIGTERM; checkpoint saved" not in (run / "train.log").read_text():
        fail(f"{run.name}: train.log does not say it stopped at a checkpoint on SIGTERM")
    if f"{run.name}: interrupted (exit 143)" not in out:
        fail(f"the task's output does not report {run.name} interrupted (exit 143)")
    print(f"   {run.name}: stopped at {ckpts[-1]} of {steps_once(run)} steps logged, no summary")
    note.write_text(ckpts[-1])  # for "resumed"
elif cmd == "resumed":  # run_dir local_run_dir note
    run, local = pathlib.Path(args[0]), pathlib.Path(args[1])
    ckpt = pathlib.Path(args[2]).read_text().strip()
    log = (run / "train.log").read_text()
    if starts(run / "train.log") != (1, 1):
        fail(f"{run.name}: train.log shows {starts(run / 'train.log')} (starts, resumes), expected one of each")
    if not re.search(rf"^from checkpoint \S*/checkpoints/{ckpt} ", log, re.M):
        fail(f"{run.name}: did not resume from {ckpt}:\n{log}")
    steps_once(run)
    got = json.loads((run / "summary.json").read_text())["final_test_accuracy"]
    want = json.loads((local / "summary.json").read_text())["final_test_accuracy"]
    if got != want:
        fail(f"{run.name}: resumed run ends at test accuracy {got}, the uninterrupted one at {want}")
    print(f"   {run.name}: resumed from {ckpt}, final test accuracy {got} as uninterrupted")
else:
    fail(f"unknown check {cmd}")
PY
}

# --- 1. the array job -----------------------------------------------------------------------
phase "1. array job, each trial once"
shared=$work/shared
sweep_a=$shared/sweep-array
job=$(submit "$sweep_a" array)
log "submitted job array $job ($tasks tasks) into $sweep_a"
wait_for "job $job to finish" "$wait_s" queue_empty "$job"
expect_completed "$job"
check once "$sweep_a" "$work/out/array" "$tasks"
phase_done

# --- 2. the same sweep, locally -------------------------------------------------------------
phase "2. local sweep, same report"
local_dir=$work/local
# Same threads per trial as a task with one CPU; no scheduler variables, so no shard.
env -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT -u SLURM_ARRAY_TASK_MIN \
  -u JOB_COMPLETION_INDEX "$bin" sweep "$spec" --out "$local_dir" --jobs 2 --threads 2 \
  --data-dir "$data_dir" --offline >"$work/out/local.out" 2>&1 \
  || { cat "$work/out/local.out" >&2; die "the local sweep failed"; }
echo "   mnist-train sweep report $sweep_a:"
report "$sweep_a"
report "$local_dir" >/dev/null
check same "$sweep_a" "$local_dir"
phase_done

# --- 3. scancel mid-trial, resubmit ---------------------------------------------------------
phase "3. scancel mid-trial, resubmit"
sweep_c=$shared/sweep-cancel
job=$(submit "$sweep_c" cancel)
log "submitted job array $job into $sweep_c"
manifest_written() { [ -s "$sweep_c/sweep.json" ]; }
wait_for "$sweep_c/sweep.json" "$wait_s" manifest_written
# Trial 0 is task 0's first: cancel that task once the trial has saved a checkpoint.
trial=$sweep_c/$(check trial-dir "$sweep_c" 0)
mid_trial() {
  compgen -G "$trial/checkpoints/step-*" >/dev/null && [ ! -e "$trial/summary.json" ]
}
wait_for "a checkpoint in $trial" "$wait_s" mid_trial
# Without --batch, Slurm signals only job steps (srun), and the sweep runs in the batch step.
# Not --full (nor plain scancel): that signals the trials too, and a trial that gets SIGTERM
# twice, directly and forwarded by the sweep, exits at once without its final checkpoint.
scancel --signal=TERM --batch "${job}_0"
log "scancel --signal=TERM --batch ${job}_0 while $(basename "$trial") was running"
task0_gone() { queue_empty "${job}_0"; }
wait_for "task ${job}_0 to stop" "$wait_s" task0_gone
check interrupted "$trial" "$work/out/cancel-0.out" "$work/out/last-checkpoint"
second=$sweep_c/$(check trial-dir "$sweep_c" "$tasks")
[ ! -e "$second/config.json" ] || die "task 0 went on to its next trial after SIGTERM"
wait_for "job $job to finish" "$wait_s" queue_empty "$job"
task_states "$job" | sed 's/^/   task /'

job=$(submit "$sweep_c" resubmit)
log "resubmitted: job array $job into $sweep_c"
wait_for "job $job to finish" "$wait_s" queue_empty "$job"
expect_completed "$job"
check resumed "$trial" "$local_dir/$(basename "$trial")" "$work/out/last-checkpoint"
check resubmitted "$sweep_c" "$work/out/resubmit" "$tasks" 0
report "$sweep_c" >/dev/null
check same "$sweep_c" "$local_dir"
phase_done

log "slurm smoke test passed"
