#!/usr/bin/env bash
# Seconds per training step of each pilot recipe, measured alone on this machine (nothing else
# running): 40 steps each after the data is cached; writes $RUNS/timing.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/migm-runs/pilot}
BIN=${BIN:-.venv/bin/migm-shortcut}
STEPS=${STEPS:-40}
codes=$(ls "$RUNS"/*/checkpoints/codes.safetensors 2>/dev/null | head -1)
time_one() {  # name, flags...
  local name=$1; shift
  local out="$RUNS/timing/$name"
  rm -rf "$out"; mkdir -p "$out/checkpoints"
  [ -n "$codes" ] && cp "$codes" "$out/checkpoints/"
  "$BIN" train-base --out "$out" --stages backbone --device cpu --backbone-steps "$STEPS" --checkpoint-every 1000 "$@" > "$out.log" 2>&1
  python3 -c "import json,sys; m=json.load(open('$out/metrics.json'))['backbone']; print(json.dumps({'recipe': '$name', 'flags': '$*', 'steps': m['steps'], 'seconds_per_step': round(m['train_seconds']/m['steps'], 3), 'batch_size': m['batch_size'], 'parameters': m['parameters']}))" | tee -a "$RUNS/timing.jsonl"
}
time_one warm_b64 --init-backbone migm_shortcut/weights
time_one warm_b64_compile --init-backbone migm_shortcut/weights --compile
time_one warm_b128 --init-backbone migm_shortcut/weights --backbone-batch-size 128
time_one scratch_w256_d8 --backbone-width 256 --backbone-depth 8
