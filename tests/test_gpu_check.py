"""The prepared GPU check runs its whole path on a CPU (--device cpu --quick) and writes one JSON file."""

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_script_runs_on_cpu_and_writes_one_json(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--device", "cpu", "--quick"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["device"] == "cpu" and "passed" in result["tests"] and "failed" not in result["tests"]
    (loop,) = result["bench_loop"]
    vanilla, shortcut = loop["runs"]
    assert loop["size"] == "embedded" and vanilla["budget"] is None and shortcut["budget"] == 2
    assert shortcut["e2e_speedup"] > 0 and shortcut["ideal_speedup"] > 1 and shortcut["loop_ms_per_step"] >= 0
    assert result["bench_cost"][0]["config"] == "embedded"


def test_gpu_check_refuses_unknown_arguments():
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--fast"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "unknown argument --fast" in run.stderr
