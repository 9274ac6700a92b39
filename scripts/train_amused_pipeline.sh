#!/usr/bin/env bash
# The shipped Fashion-MNIST aMUSEd pipeline (migm_shortcut/weights/amused_pipeline): the shipped UVit2D
# warm-started, a new small CLIP text encoder and tokenizer trained with it, saved as a diffusers
# AmusedPipeline folder. Resumable: rerun to continue from the last checkpoint.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$HOME/migm-runs/amused_pipeline}
exec .venv/bin/migm-shortcut train-base --out "$OUT" --stages backbone --device cpu --resume \
  --architecture amused-pipeline --init-backbone migm_shortcut/weights/amused --backbone-batch-size 64 \
  --backbone-lr 1e-3 --backbone-warmup 100 --backbone-steps 600 --checkpoint-every 100 --curve-images 500
