#!/usr/bin/env bash
# Crash test: SIGKILL the trainer at random moments (inside checkpoint writes too), check after
# every kill that the newest checkpoint loads and that no more than one checkpoint interval of
# work was lost, resume, and at the end compare the finished run with an uninterrupted one:
# summary.json, every metrics line (minus elapsed_s) and the final weights' test loss must match.
#
#   scripts/kill-loop.sh                      # 20 kills, real MNIST from ../shared/data
#   KILLS=50 CKPT_EVERY=3 scripts/kill-loop.sh
#
# Env: BIN (default target/release/mnist-train, built first with `cargo build --release`),
# DATA (../shared/data), KILLS (20), CKPT_EVERY (1: a checkpoint every step, so kills often
# land inside a write), WORK (a fresh temporary directory; kept when the test fails),
# MAX_DELAY_MS (400: longest wait after training resumed before the kill).
# Exit 0 when every check held, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/mnist-train}
DATA=${DATA:-../shared/data}
KILLS=${KILLS:-20}
CKPT_EVERY=${CKPT_EVERY:-1}
MAX_DELAY_MS=${MAX_DELAY_MS:-400}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/kill-loop.XXXXXX")}
export MNIST_TRAIN_THREADS=${MNIST_TRAIN_THREADS:-1}
unset MNIST_DATA_DIR MNIST_TRAIN_BACKEND

[ -x "$BIN" ] || { echo "kill-loop: $BIN not found; run cargo build --release" >&2; exit 1; }
DATA=$(cd "$DATA" && pwd)
ARGS=(--offline --data-dir "$DATA" --quiet --init he --dropout 0.2 --seed 7
      --train-limit 20000 --test-limit 1000 --eval-every 5 --checkpoint-every "$CKPT_EVERY"
      --epochs 2)
REF=$WORK/reference
RUN=$WORK/killed
fail() { echo "kill-loop: FAIL: $*" >&2; echo "kill-loop: files kept in $WORK" >&2; exit 1; }

# Newest complete checkpoint's step (0 if none).
newest() {
  local n
  n=$(ls "$RUN/checkpoints" 2>/dev/null | grep '^step-' | sort | tail -1 | sed 's/^step-0*//')
  echo "${n:-0}"
}
# Global step of the last complete metrics line (0 if none; a torn last line is skipped).
last_metric() {
  local n
  n=$(grep '}$' "$RUN/metrics.jsonl" 2>/dev/null | tail -1 | grep -o '"global_step":[0-9]*' | cut -d: -f2 || true)
  echo "${n:-0}"
}
no_elapsed() { sed 's/,"elapsed_s":[^,}]*//' "$1"; }
json_field() { grep -o "\"$2\": *[^,}]*" "$1" | head -1 | sed 's/.*: *//'; }

echo "kill-loop: work dir $WORK; reference run (uninterrupted) ..."
start=$(date +%s.%N)
"$BIN" "${ARGS[@]}" --run-dir "$REF" > /dev/null
ref_s=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }")
total=$(json_field "$REF/summary.json" steps)
echo "kill-loop: reference: $total steps in ${ref_s}s"

kills=0 startup_kills=0 in_write=0 resumes=0 max_lost=0 finished=0 attempt=0
prev=0
while :; do
  attempt=$((attempt + 1))
  if [ -f "$RUN/config.json" ]; then
    "$BIN" --resume "$RUN" --offline --data-dir "$DATA" --quiet > /dev/null 2> "$WORK/stderr" &
    resumes=$((resumes + 1))
  else
    "$BIN" "${ARGS[@]}" --run-dir "$RUN" > /dev/null 2> "$WORK/stderr" &
  fi
  pid=$!
  if [ "$kills" -ge "$KILLS" ]; then
    wait "$pid" || fail "the final session exited $?: $(cat "$WORK/stderr")"
    finished=1
    break
  fi
  # Every 4th kill at a random moment of start-up (loading data, opening the checkpoint);
  # the others once this session has written a checkpoint of its own, plus a random delay.
  if [ $((attempt % 4)) -eq 0 ]; then
    sleep "0.$(printf '%03d' $((RANDOM % 1000)))"
  else
    while kill -0 "$pid" 2>/dev/null && [ "$(newest)" -le "$prev" ]; do sleep 0.01; done
    sleep "$(printf '0.%03d' $((RANDOM % MAX_DELAY_MS)))"
  fi
  if ! kill -9 "$pid" 2>/dev/null; then
    # It ended by itself: finished before we got to it.
    wait "$pid" || fail "session exited $? on its own: $(cat "$WORK/stderr")"
    finished=1
    break
  fi
  wait "$pid" 2>/dev/null || true
  kills=$((kills + 1))
  step=$(newest)
  seen=$(last_metric)
  tmp=$(ls -a "$RUN/checkpoints" 2>/dev/null | grep -c '^\.tmp-\|^\.old-' || true)
  [ "$tmp" -gt 0 ] && in_write=$((in_write + 1))
  [ "$step" -le "$prev" ] && startup_kills=$((startup_kills + 1))
  [ "$step" -ge "$prev" ] || fail "kill $kills: newest checkpoint went back from $prev to $step"
  lost=$((seen > step ? seen - step : 0))
  [ "$lost" -gt "$max_lost" ] && max_lost=$lost
  # At most one interval (an epoch end also checkpoints, so never more).
  [ "$lost" -le "$CKPT_EVERY" ] || fail "kill $kills: $lost steps lost (metrics at $seen, checkpoint at $step)"
  if [ "$step" -gt 0 ]; then
    "$BIN" eval --checkpoint "$RUN" --offline --data-dir "$DATA" --test-limit 1000 > /dev/null 2> "$WORK/eval-stderr" \
      || fail "kill $kills: eval of the newest checkpoint (step $step) failed: $(cat "$WORK/eval-stderr")"
  fi
  printf 'kill-loop: kill %2d at step %3d of %s (newest checkpoint %3d, %d lost%s)\n' \
    "$kills" "$seen" "$total" "$step" "$lost" "$([ "$tmp" -gt 0 ] && echo ', inside a checkpoint write')"
  prev=$step
done

[ "$finished" = 1 ] || fail "run did not finish"
left=$(ls -a "$RUN/checkpoints" | grep -c '^\.tmp-\|^\.old-' || true)
[ "$left" -eq 0 ] || fail "$left half-written checkpoint directories left in $RUN/checkpoints"
cmp -s <(no_elapsed "$REF/metrics.jsonl") <(no_elapsed "$RUN/metrics.jsonl") \
  || fail "metrics differ from the uninterrupted run: diff <(sed 's/,\"elapsed_s\":[^,}]*//' $REF/metrics.jsonl) <(... $RUN/metrics.jsonl)"
for key in steps final_test_accuracy final_test_loss best_test_accuracy final_train_loss; do
  a=$(json_field "$REF/summary.json" "$key"); b=$(json_field "$RUN/summary.json" "$key")
  [ "$a" = "$b" ] || fail "summary $key: $b, uninterrupted $a"
done
ea=$("$BIN" eval --json --checkpoint "$REF" --offline --data-dir "$DATA" | sed 's/"checkpoint":"[^"]*",//')
eb=$("$BIN" eval --json --checkpoint "$RUN" --offline --data-dir "$DATA" | sed 's/"checkpoint":"[^"]*",//')
[ "$ea" = "$eb" ] || fail "final weights differ: eval $eb, uninterrupted $ea"

echo "kill-loop: PASS: $kills SIGKILLs ($startup_kills before a new checkpoint, $in_write inside a checkpoint write), $resumes resumes, at most $max_lost step(s) lost per kill; final run equals the uninterrupted one ($total steps, final_test_accuracy $(json_field "$RUN/summary.json" final_test_accuracy), metrics identical, eval $eb)"
rm -rf "$WORK"
