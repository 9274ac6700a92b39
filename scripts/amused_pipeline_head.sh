#!/usr/bin/env bash
# The shortcut head shipped inside the aMUSEd pipeline folder (migm_shortcut/weights/amused_pipeline/shortcut_head):
# 576 teacher trajectories of N=12 from the pipeline's own UVit and CLIP on the training prompts, then the
# recipe of the earlier aMUSEd head (ratio 2, 2 heads, 2000 steps of 32, lr 5e-4). Both steps resume.
set -euo pipefail
cd "$(dirname "$0")/.."
PIPE=${PIPE:-migm_shortcut/weights/amused_pipeline}
OUT=${OUT:-runs/amused_pipeline_head}
mkdir -p "$OUT"
.venv/bin/python -c "from migm_shortcut.train.base import prompt_texts; print('\n'.join(t for ts in prompt_texts() for t in ts))" > "$OUT/prompts.txt"
.venv/bin/migm-shortcut collect --model "$PIPE" --prompts-file "$OUT/prompts.txt" --num 576 --steps 12 \
  --guidance-scale 4 --batch-size 32 --out "$OUT/traj"
.venv/bin/migm-shortcut train-head --model "$PIPE" --data "$OUT/traj" --out "$OUT/run" --steps 2000 --batch-size 32 \
  --lr 5e-4 --ratio 2 --heads 2 --teacher-steps 12 --guidance-scale 4 --device cpu --resume
rm -rf "$PIPE/shortcut_head" && cp -r "$OUT/run/head" "$PIPE/shortcut_head"
cp "$OUT/run/metrics.json" "$PIPE/shortcut_head/metrics.json" 2>/dev/null || true
