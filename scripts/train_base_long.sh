#!/usr/bin/env bash
# The long run of the stronger embedded base (chosen by scripts/pilot_base.sh; see docs/experiments.md):
# the shipped shape warm-started from the shipped weights, batch 128, lr 1.5e-3, 12000 steps, held-out
# CE after every checkpoint (curve.jsonl). Resumable: rerun this script whenever work starts; it continues
# exactly from the run folder's last checkpoint. When that folder is gone (a new machine) it continues
# from the shipped weights (their backbone/milestone.json records the step, clock and schedule; the run
# ended at step 12000, so it now says so and stops), or from MILESTONE (scripts/base_milestone.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$HOME/migm-runs/base_long}
MILESTONE=${MILESTONE:-migm_shortcut/weights}
CONTINUE=(--continue-from "$MILESTONE")
exec .venv/bin/migm-shortcut train-base --out "$OUT" --stages backbone --device cpu --resume \
  --init-backbone migm_shortcut/weights --backbone-batch-size 128 --backbone-lr 1.5e-3 --backbone-warmup 300 \
  --backbone-steps 12000 --checkpoint-every 250 --curve-images 1000 "${CONTINUE[@]}"
