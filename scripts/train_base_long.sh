#!/usr/bin/env bash
# The long run of the stronger embedded base (chosen by scripts/pilot_base.sh; see docs/experiments.md):
# the shipped shape warm-started from the shipped weights, batch 128, lr 1.5e-3, 12000 steps, held-out
# CE after every checkpoint (curve.jsonl). Resumable: rerun this script whenever work starts; it continues
# exactly from the run folder's last checkpoint. When that folder is gone (a new machine) it continues
# from the committed milestone (milestones/base_long, written by scripts/base_milestone.py), and failing
# that starts again from the shipped weights.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$HOME/migm-runs/base_long}
MILESTONE=${MILESTONE:-milestones/base_long}
CONTINUE=()
if [ -f "$MILESTONE/milestone.json" ]; then CONTINUE=(--continue-from "$MILESTONE"); fi
exec .venv/bin/migm-shortcut train-base --out "$OUT" --stages backbone --device cpu --resume \
  --init-backbone migm_shortcut/weights --backbone-batch-size 128 --backbone-lr 1.5e-3 --backbone-warmup 300 \
  --backbone-steps 12000 --checkpoint-every 250 --curve-images 1000 "${CONTINUE[@]}"
