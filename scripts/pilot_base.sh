#!/usr/bin/env bash
# Pilot for the stronger embedded base: recipes compared on held-out masked-token CE
# (curve.jsonl: 1000 test images after every checkpoint) at equal wall-clock. Each recipe runs
# to the step count that PILOT_SECONDS (default 600 s) buys at its own seconds per step, measured
# alone by scripts/time_recipes.sh ($RUNS/timing.jsonl). Comparing by step count keeps the
# comparison fair even when something else shares the CPU while the pilot runs.
# All recipes share the long run's schedule (20000 steps), so the winner continues with --resume.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/migm-runs/pilot}
BUDGET=${PILOT_SECONDS:-600}
BIN=${BIN:-.venv/bin/migm-shortcut}
COMMON="--stages backbone --device cpu --backbone-steps 20000 --curve-images 1000 --resume"
steps_for() {  # recipe name -> steps that BUDGET seconds buy
  python3 -c "import json; t={json.loads(l)['recipe']: json.loads(l)['seconds_per_step'] for l in open('$RUNS/timing.jsonl')}; print(int($BUDGET / t['$1']))"
}
run() {  # run folder, timing recipe, checkpoint interval, flags...
  local name=$1 recipe=$2 every=$3; shift 3
  local stop; stop=$(steps_for "$recipe")
  echo "== $name: $stop steps ($recipe timing), flags: $*"
  mkdir -p "$RUNS/$name/checkpoints"  # the tokenized data is the same for every recipe: reuse it
  codes=$(ls "$RUNS"/*/checkpoints/codes.safetensors 2>/dev/null | head -1)
  [ -n "$codes" ] && [ ! -f "$RUNS/$name/checkpoints/codes.safetensors" ] && cp "$codes" "$RUNS/$name/checkpoints/"
  "$BIN" train-base --out "$RUNS/$name" $COMMON --checkpoint-every "$every" --stop-at "$stop" "$@" > "$RUNS/$name.out" 2>&1
  tail -n 1 "$RUNS/$name/curve.jsonl"
}
mkdir -p "$RUNS"
run warm_lr1e-3 warm_b64 100 --init-backbone migm_shortcut/weights --backbone-lr 1e-3 --backbone-warmup 300
run warm_b128_lr1.5e-3 warm_b128 50 --init-backbone migm_shortcut/weights --backbone-lr 1.5e-3 --backbone-batch-size 128 --backbone-warmup 300
run scratch_w256_d8 scratch_w256_d8 50 --backbone-width 256 --backbone-depth 8 --backbone-lr 1.5e-3
