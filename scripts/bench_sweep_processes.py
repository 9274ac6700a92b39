"""A sweep's throughput in one process against K processes under torchrun, on the same machine.

The embedded model's sweep config ``--config`` (default: vanilla N=16 and the shortcut at B=4 on 200
class prompts, no FID) runs once in one process with all the machine's threads, then under
``torchrun --nproc-per-node K`` with the threads split between the processes. Each run's
``results.json`` gives per row the images per second of all processes together; the summary pairs them.

    python scripts/bench_sweep_processes.py --processes 2 --out docs/results/sweep_processes_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from migm_shortcut.io import read_json, write_json

CONFIG = {"per_class": 20, "quick_per_class": 20, "batch_size": 10, "reference_size": None,
          "quick_reference_size": None, "inception": False, "real_baseline": False,
          "baseline": {"policy": "vanilla", "steps": 16}, "settings": [{"policy": "shortcut", "steps": 16, "budget": 4}]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default="docs/results/sweep_processes_cpu.json")
    args = p.parse_args()
    exe = Path(sys.executable).parent
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "sweep.json"
        config.write_text(json.dumps(CONFIG))
        for k in (1, args.processes):
            env = {**os.environ, "OMP_NUM_THREADS": str(max(args.threads // k, 1))}
            command = [str(exe / "migm-shortcut"), "--"] if k > 1 else [str(exe / "migm-shortcut")]
            if k > 1:
                command = [str(exe / "torchrun"), "--standalone", "--nproc-per-node", str(k), *command]
            out = Path(tmp) / f"p{k}"
            subprocess.run([*command, "sweep", "--config", str(config), "--out", str(out)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            runs[k] = read_json(out / "results.json")
    rows = []
    for one, many in zip(runs[1]["rows"], runs[args.processes]["rows"]):
        rows.append({"setting": one["setting"], "images": one["num_images"],
                     "one_process_images_per_s": round(one["throughput_images_per_s"], 2),
                     "processes_images_per_s": round(many["throughput_images_per_s"], 2),
                     "ratio": round(many["throughput_images_per_s"] / one["throughput_images_per_s"], 2),
                     "same_prompt_accuracy": one["prompt_accuracy"] == many["prompt_accuracy"]})
        print(rows[-1])
    write_json(Path(args.out), {"kind": "sweep_processes", "processes": args.processes, "threads": args.threads,
                                "command": f"python scripts/bench_sweep_processes.py --processes {args.processes}",
                                "results": rows})


if __name__ == "__main__":
    main()
