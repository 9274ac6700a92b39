"""The published-style head against the generic one, on the same trajectories with the same budget.

For each testbed one set of teacher trajectories is collected, then two heads are trained on it with
identical settings (steps, batch, learning rate, loss, seed) and scored by ``train-head``'s own
validation on the same held-out trajectories, per step: feature MSE and guided KL, each beside the
copy-previous-features baseline.

* ``embedded`` (the shipped mini Lumina-DiMOO): ``generic`` against ``dimoo-shortcut``, the published
  DiMOO head's network at this base's sizes (its 3 heads and 768-wide MLP, bottleneck 2);
* ``amused-pipeline`` (the shipped Fashion-MNIST ``AmusedPipeline``): ``generic`` against
  ``maskgit-shortcut``, the published MaskGIT head's network (bottleneck 2, heads of 24 channels as in the
  published evaluation: 4 at this width).

Every stage resumes (collection and training are resumable commands), so the script can be killed and
rerun. Runs and logs go to --runs (default ~/migm-runs/head_architectures); the summary to --out.

    python scripts/compare_head_architectures.py --out docs/results/head_architectures.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from migm_shortcut.io import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "migm_shortcut.cli"]
PIPELINE = ROOT / "migm_shortcut" / "weights" / "amused_pipeline"

TESTBEDS = {
    "embedded": dict(model=[], collect=["--num", "768", "--batch-size", "32"],
                     heads={"generic": [], "dimoo-shortcut": ["--heads", "3", "--mlp-hidden", "768"]}),
    "amused-pipeline": dict(model=["--model", str(PIPELINE)], collect=["--num", "576", "--steps", "12", "--guidance-scale", "4",
                                                                       "--batch-size", "32"], prompts=True,
                            heads={"generic": [], "maskgit-shortcut": ["--heads", "4"]},
                            train=["--teacher-steps", "12", "--guidance-scale", "4"]),
}
RECIPE = ["--batch-size", "32", "--lr", "5e-4", "--masked-only", "--kl-weight", "5", "--ratio", "2", "--num-blocks", "1",
          "--val-trajectories", "64", "--seed", "0", "--device", "cpu", "--resume"]


def run(args: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        subprocess.run(args, check=True, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def per_step(validation: list[dict]) -> list[dict]:
    keep = ("step", "mse_head", "mse_copy", "kl_head", "kl_copy")
    return [{k: (round(v[k], 5) if isinstance(v[k], float) else v[k]) for k in keep} for v in validation]


def summary(validation: list[dict]) -> dict:
    mean = lambda key: sum(v[key] for v in validation) / len(validation)  # noqa: E731
    return {"mse_head": round(mean("mse_head"), 5), "mse_copy": round(mean("mse_copy"), 5),
            "kl_head": round(mean("kl_head"), 5), "kl_copy": round(mean("kl_copy"), 5),
            "mse_reduction": round(1 - mean("mse_head") / mean("mse_copy"), 4),
            "kl_reduction": round(1 - mean("kl_head") / mean("kl_copy"), 4),
            "steps_beating_copy_kl": sum(v["kl_head"] < v["kl_copy"] for v in validation)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default=str(Path.home() / "migm-runs" / "head_architectures"))
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "head_architectures.json"))
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps for every head")
    p.add_argument("--testbeds", default=",".join(TESTBEDS))
    args = p.parse_args()
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    log = runs / "compare.log"
    result = {"kind": "head_architectures", "train_steps": args.steps, "recipe": " ".join(RECIPE[:-1]),
              "command": "python scripts/compare_head_architectures.py", "testbeds": {}}
    for name in [t for t in args.testbeds.split(",") if t]:
        bed = TESTBEDS[name]
        traj = runs / name / "traj"
        start = time.time()
        prompts = []
        if bed.get("prompts"):  # the pipeline's training prompts, as scripts/amused_pipeline_head.sh collects them
            from migm_shortcut.train.base import prompt_texts

            (runs / name).mkdir(parents=True, exist_ok=True)
            (runs / name / "prompts.txt").write_text("\n".join(t for ts in prompt_texts() for t in ts) + "\n")
            prompts = ["--prompts-file", str(runs / name / "prompts.txt")]
        run(CLI + ["collect", *bed["model"], *bed["collect"], *prompts, "--out", str(traj)], log)
        print(f"{name}: trajectories ready in {traj} ({time.time() - start:.0f} s)", flush=True)
        heads = {}
        for architecture, extra in bed["heads"].items():
            out = runs / name / architecture
            start = time.time()
            done = (out / "metrics.json").is_file() and read_json(out / "metrics.json").get("steps") == args.steps
            if not done:  # a finished run is read, not rerun
                run(CLI + ["train-head", *bed["model"], "--data", str(traj), "--out", str(out), "--steps", str(args.steps),
                           "--val-every", str(args.steps), "--architecture", architecture, *RECIPE, *extra,
                           *bed.get("train", [])], log)
            metrics = read_json(out / "metrics.json")
            heads[architecture] = {"flags": " ".join(extra), "parameters": metrics["parameters"],
                                   "train_seconds": metrics["train_seconds"], "summary": summary(metrics["validation"]),
                                   "per_step": per_step(metrics["validation"])}
            print(f"{name} / {architecture}: {heads[architecture]['summary']} ({time.time() - start:.0f} s)", flush=True)
        result["testbeds"][name] = {"trajectories": int(bed["collect"][1]), "heads": heads}
        write_json(Path(args.out), result)  # after each testbed, so a cut-off run keeps what finished
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
