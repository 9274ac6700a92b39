#!/usr/bin/env bash
# The shipped Fashion-MNIST aMUSEd pipeline (migm_shortcut/weights/amused_pipeline), from scratch, in two runs:
# 1. a UVit2D with the package's small prompt encoder (train-base --architecture amused, 1000 steps of 64, 35 min);
# 2. that UVit warm-started with a new small CLIP text encoder and BPE CLIPTokenizer, trained together and saved
#    as a diffusers AmusedPipeline folder (--architecture amused-pipeline, 600 steps of 64, 38 min on 2 cores).
# Both resume: rerun to continue. Then scripts/amused_pipeline_head.sh trains the head inside the folder.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$HOME/migm-runs/amused_pipeline}
BIN=.venv/bin/migm-shortcut
$BIN train-base --out "$OUT/uvit" --stages backbone --device cpu --resume --architecture amused \
  --backbone-steps 1000 --backbone-lr 1e-3 || exit 1
exec $BIN train-base --out "$OUT" --stages backbone --device cpu --resume \
  --architecture amused-pipeline --init-backbone "$OUT/uvit" --backbone-batch-size 64 \
  --backbone-lr 1e-3 --backbone-warmup 100 --backbone-steps 600 --checkpoint-every 100 --curve-images 500
