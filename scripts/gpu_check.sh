#!/usr/bin/env bash
# The prepared GPU check: one run of at most ~8 minutes on a fresh GPU machine. It installs what the
# machine lacks, runs the CUDA tests, then bench-loop and bench-cost at every size in bf16, and writes
# one JSON file ($OUT/gpu_check.json, default outputs/gpu_check/).
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

echo "== tests on $DEVICE"
# The device-loop tests (determinism and batch invariance run on CUDA when it is there) and the sampler's.
"$PY" -m pytest -q -p no:cacheprovider tests/test_device_loop.py tests/test_sampler.py 2>&1 | tee "$OUT_DIR/tests.log" | tail -n 3

if [ "$QUICK" = 1 ]; then
  SMALL="--sizes embedded --steps 4 --budgets 2 --repeats 1"
  LARGE=""
  MASKGIT=""
  COST="--config embedded --steps 4 --budgets 2 --repeats 1 --head-architecture generic,published"
else
  SMALL="--sizes embedded,amused-256 --steps 16 --budgets 4,6,8 --repeats 3"
  LARGE="--sizes dimoo-8b,dimoo-stub --steps 64 --budgets 11,16 --repeats 2"
  MASKGIT="--sizes maskgit-512 --steps 32 --budgets 8,12 --repeats 3"
  COST="--config dimoo-8b,maskgit-512,embedded,amused-256 --steps 16 --budgets 4,6,8 --repeats 5 --head-architecture generic,published"
fi
echo "== bench-loop"
"$PY" -m migm_shortcut.cli bench-loop --device "$DEVICE" $SMALL --out "$OUT_DIR/loop_small.json"
if [ -n "$LARGE" ]; then
  "$PY" -m migm_shortcut.cli bench-loop --device "$DEVICE" $LARGE --out "$OUT_DIR/loop_large.json"
  "$PY" -m migm_shortcut.cli bench-loop --device "$DEVICE" $MASKGIT --out "$OUT_DIR/loop_maskgit.json"
fi
echo "== bench-cost"
"$PY" -m migm_shortcut.cli bench-cost --device "$DEVICE" $COST --out "$OUT_DIR/cost.json"

"$PY" - "$OUT_DIR" "$DEVICE" "$QUICK" "$START" <<'PYEOF'
import json, sys, time
from pathlib import Path
import torch
out, device, quick, start = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
loop = [r for name in ("loop_small.json", "loop_large.json", "loop_maskgit.json") if (out / name).is_file()
        for r in json.loads((out / name).read_text())["results"]]
tests = (out / "tests.log").read_text().strip().splitlines()[-1]
result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "quick": quick,
          "torch": torch.__version__, "tests": tests, "bench_loop": loop,
          "bench_cost": json.loads((out / "cost.json").read_text())["results"],
          "wall_clock_s": int(time.time()) - start}
(out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"wrote {out / 'gpu_check.json'} ({result['wall_clock_s']} s): {tests}")
PYEOF
