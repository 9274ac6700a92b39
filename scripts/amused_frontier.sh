#!/usr/bin/env bash
# The aMUSEd frontier in docs/results/amused_frontier.json: the shipped AmusedPipeline folder, a reference
# folder of 1000 class-balanced Fashion-MNIST test images, 10 class prompts x 50 seeds, and the sweep in
# migm_shortcut/configs/amused_pipeline_sweep.json (plain pipeline, fewer steps, shortcut hook, cache-dit).
# Resumable: rerun with the same OUT to keep the rows already measured.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/amused_frontier}
mkdir -p "$OUT"
[ -d "$OUT/reference" ] || .venv/bin/python scripts/export_images.py --split test --num 1000 --out "$OUT/reference"
for c in t-shirt trouser pullover dress coat sandal shirt sneaker bag "ankle boot"; do
  case $c in a*) echo "a photo of an $c";; *) echo "a photo of a $c";; esac
done > "$OUT/prompts.txt"
.venv/bin/migm-shortcut sweep --model migm_shortcut/weights/amused_pipeline --prompts-file "$OUT/prompts.txt" \
  --per-prompt 50 --reference "$OUT/reference" --config migm_shortcut/configs/amused_pipeline_sweep.json \
  --out "$OUT/sweep" --resume
mkdir -p docs/results && cp "$OUT/sweep/results.json" docs/results/amused_frontier.json
cp "$OUT/sweep/pareto.png" docs/amused_frontier.png
