#!/usr/bin/env bash
# The prepared GPU check: one run of at most ~8 minutes on a fresh GPU machine. It installs what the
# machine lacks, then runs bench-loop and bench-cost in bf16, the real sizes first (Lumina-DiMOO 8B,
# MaskGIT-512), then the small ones, then the CUDA tests and, on more than one GPU, a data-parallel
# sample; $OUT/gpu_check.json (default outputs/gpu_check/) is rewritten after every stage.
#
#   scripts/gpu_check.sh                        # on the GPU machine (carry .whl: wheels the image lacks)
#   scripts/gpu_check.sh --device cpu --quick   # the same path, small, on a CPU: checks the script itself
#
# .whl holds diffusers and importlib_metadata, made here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform any -d .whl diffusers==0.42.1 importlib_metadata
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh gpu_check "$@"  # parses --device and --quick, sets PY
OUT_DIR=${OUT:-outputs/gpu_check}
mkdir -p "$OUT_DIR"
START=$(date +%s)
"$PY" -c "import torch; assert '$DEVICE' != 'cuda' or torch.cuda.is_available(), 'no CUDA device'"

if [ "$QUICK" = 1 ]; then
  LARGE="--sizes embedded --steps 4 --budgets 2 --repeats 1"
  MASKGIT=""
  COST="--config embedded --steps 4 --budgets 2 --repeats 1 --head-architecture generic,published"
  SMALL=""
else
  LARGE="--sizes dimoo-8b,dimoo-stub --steps 64 --budgets 11,16 --repeats 3"
  MASKGIT="--sizes maskgit-512 --steps 32 --budgets 8,12 --repeats 3"
  COST="--config dimoo-8b,maskgit-512,embedded,amused-256 --steps 16 --budgets 4,6,8 --repeats 5 --head-architecture generic,published"
  SMALL="--sizes embedded,amused-256 --steps 16 --budgets 4,6,8 --repeats 3"
fi

# gpu_check.json is rewritten after every stage from what has finished, so a run cut off still returns it.
summarise() {
  "$PY" - "$OUT_DIR" "$DEVICE" "$QUICK" "$START" <<'PYEOF'
import json, sys, time
from pathlib import Path
import torch
out, device, quick, start = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
read = lambda name: json.loads((out / name).read_text())["results"] if (out / name).is_file() else []
loop = [r for name in ("loop_large.json", "loop_maskgit.json", "loop_small.json") for r in read(name)]
log = out / "tests.log"
tests = log.read_text().strip().splitlines()[-1] if log.is_file() and log.read_text().strip() else "not run yet"
result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "quick": quick,
          "torch": torch.__version__, "gpus": torch.cuda.device_count() if device == "cuda" else 0, "tests": tests,
          "bench_loop": loop, "bench_cost": read("cost.json"), "wall_clock_s": int(time.time()) - start}
(out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"gpu_check.json after {result['wall_clock_s']} s: {len(loop)} loop sizes, {len(result['bench_cost'])} cost rows; "
      f"tests: {tests}")
PYEOF
}

# stage COMMAND FILE ARGS: one benchmark (skipped when ARGS is empty), then the summary of all so far.
stage() {
  if [ -n "$3" ]; then
    echo "== $1 ($2)"
    "$PY" -m migm_shortcut.cli "$1" --device "$DEVICE" $3 --out "$OUT_DIR/$2"
    summarise
  fi
}
stage bench-loop loop_large.json "$LARGE"       # the real sizes first
stage bench-loop loop_maskgit.json "$MASKGIT"
stage bench-cost cost.json "$COST"
stage bench-loop loop_small.json "$SMALL"

echo "== tests on $DEVICE"
# The device-loop tests (determinism and batch invariance run on CUDA when it is there) and the sampler's.
"$PY" -m pytest -q -p no:cacheprovider tests/test_device_loop.py tests/test_sampler.py 2>&1 | tee "$OUT_DIR/tests.log" | tail -n 3
if [ "$DEVICE" = cuda ] && [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -gt 1 ]; then
  echo "== data-parallel sample on every GPU"
  NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
  "$PY" -m torch.distributed.run --standalone --nproc-per-node "$NGPU" -m migm_shortcut.cli sample --device cuda \
      --prompt "a photo of a bag" --per-prompt 64 --batch-size 16 --out-dir "$OUT_DIR/dp_sample" | tail -n 1
else
  echo "== data-parallel case skipped: one device on this machine"
fi
summarise
