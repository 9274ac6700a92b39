"""One row of "the head's edge over copying vs base quality": a backbone checkpoint's held-out
masked-token CE, its Inception FID at 1000 samples (N=16 and N=4), and the edge over copying
features of a head trained briefly, the same way, on trajectories from that backbone.

    python scripts/base_milestone_eval.py --backbone milestones/base_long/backbone --step 2000 \
        --work ~/migm-runs/milestone_eval --results docs/results/base_long/head_edge.json

The brief head recipe is fixed so rows compare: 512 trajectories of N=16; the shipped head
(trained at length for the shipped base, step 0) fine-tuned on them for 600 steps (batch 32, lr
2e-4, KL weight 5, MSE at still-masked positions); scored by validate-head on the 64 held-out
trajectories. A head trained from scratch this briefly stays level with copying on any base
(1500 steps on the shipped base: 6% of copy's MSE removed, guided KL worse), so it would measure
the recipe's length, not the base. Each stage resumes (rerun after a kill); the row replaces any row of
the same step in the results file, which is written atomically.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from migm_shortcut.embedded.backbone import MiniDiMOO
from migm_shortcut.embedded.data import load_dataset, to_model_range
from migm_shortcut.errors import MigmError
from migm_shortcut.io import atomic_dir, read_json, write_json
from migm_shortcut.modeling import SHIPPED_WEIGHTS
from migm_shortcut.embedded.tokenizer import VQTokenizer
from migm_shortcut.train.base import masked_token_validation, prompt_variants

# The CLI as a module of this interpreter: it also works where the package is on PYTHONPATH only
# (the GPU machine, scripts/gpu_finish_base.sh), with no console script installed.
CLI = [sys.executable, "-m", "migm_shortcut.cli"]
HEAD_RECIPE = {"trajectories": 512, "teacher_steps": 16, "init_head": "shipped", "steps": 600, "batch_size": 32,
               "lr": 2e-4, "kl_weight": 5.0, "masked_only": True, "val_trajectories": 64}


def cli(*args: str) -> None:
    print("+ migm-shortcut " + " ".join(args), flush=True)
    if subprocess.run([*CLI, *args]).returncode != 0:
        sys.exit(f"error: migm-shortcut {args[0]} failed (see above); rerun to resume")


def weights_folder(backbone: Path, work: Path) -> Path:
    """The shipped tokenizer and classifier with this backbone (no head, no calibration)."""
    folder = work / "weights"
    if not folder.is_dir():
        with atomic_dir(folder) as tmp:
            for part in ("vq", "classifier"):
                shutil.copytree(SHIPPED_WEIGHTS / part, tmp / part)
            shutil.copytree(backbone, tmp / "backbone")
    return folder


def held_out_ce(backbone: Path, images: int, seed: int = 0) -> dict:
    """The long run's curve metric (EMA weights, 1000 test images, fixed masks), for any backbone."""
    model = MiniDiMOO.from_pretrained(backbone).float()
    tok = VQTokenizer.from_pretrained(SHIPPED_WEIGHTS / "vq")
    test = load_dataset("fashion-mnist", "test")
    with torch.no_grad():
        codes = tok.encode(to_model_range(test.images[:images])).flatten(1)
        return masked_token_validation(model, codes, test.labels[:images], prompt_variants(model.layout), seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", required=True, help="a mini-dimoo backbone folder")
    parser.add_argument("--step", type=int, required=True, help="the long run's step this backbone is at")
    parser.add_argument("--work", required=True, help="scratch folder (trajectories, head, sweep)")
    parser.add_argument("--results", required=True, help="the head-edge JSON to add this row to")
    parser.add_argument("--quick", action="store_true", help="a few samples and trajectories (testing the script)")
    args = parser.parse_args()
    backbone, work = Path(args.backbone), Path(args.work) / f"step_{args.step}"
    recipe = dict(HEAD_RECIPE, **({"trajectories": 12, "steps": 4, "val_trajectories": 4} if args.quick else {}))
    try:
        work.mkdir(parents=True, exist_ok=True)
        weights = str(weights_folder(backbone, work))
        ce = held_out_ce(backbone, 100 if args.quick else 1000)
        cli("sweep", "--config", str(SHIPPED_WEIGHTS.parent / "configs" / "base_check.json"), "--out",
            str(work / "fid"), "--weights", weights, "--resume", *(["--quick"] if args.quick else []))
        cli("collect", "--num", str(recipe["trajectories"]), "--steps", str(recipe["teacher_steps"]),
            "--out", str(work / "traj"), "--weights", weights)
        cli("train-head", "--data", str(work / "traj"), "--out", str(work / "head"), "--weights", weights,
            "--init-head", str(SHIPPED_WEIGHTS / "head"), "--rebind-init-head",
            "--steps", str(recipe["steps"]), "--batch-size", str(recipe["batch_size"]), "--lr", str(recipe["lr"]),
            "--kl-weight", str(recipe["kl_weight"]), "--masked-only",
            "--val-trajectories", str(recipe["val_trajectories"]), "--val-every", str(recipe["steps"]), "--resume")
        cli("validate-head", "--data", str(work / "traj"), "--head", str(work / "head" / "head"), "--weights", weights,
            "--num", str(recipe["val_trajectories"]), "--out", str(work / "validation.json"))
        sweep, validation = read_json(work / "fid" / "results.json"), read_json(work / "validation.json")
    except MigmError as exc:
        sys.exit(f"error: {exc}")
    fid = {row["steps"]: row for row in sweep["rows"] if row.get("method") == "vanilla"}
    mean = validation["mean"]
    row = {"step": args.step, "backbone": str(backbone), **ce,
           "fid_n16": fid[16]["fid"], "fid_n4": fid[4]["fid"],
           "prompt_accuracy_n16": fid[16]["prompt_accuracy"], "samples": fid[16]["num_images"],
           "head": {k: mean[k] for k in ("mse_head", "mse_copy", "kl_head", "kl_copy", "agree_head", "agree_copy",
                                         "cos_head", "cos_copy")},
           "mse_removed": round(1 - mean["mse_head"] / mean["mse_copy"], 4),
           "kl_removed": round(1 - mean["kl_head"] / mean["kl_copy"], 4),
           "per_step": validation["rows"], "recipe": recipe, "quick": args.quick}
    results_path = Path(args.results)
    results = read_json(results_path) if results_path.is_file() else {
        "description": "The head's edge over copying features vs the base model's quality, one row per backbone "
                       "checkpoint of the long run (scripts/base_milestone_eval.py).", "milestones": []}
    results["milestones"] = sorted([r for r in results["milestones"] if r["step"] != args.step] + [row],
                                   key=lambda r: r["step"])
    write_json(results_path, results)
    print(f"step {args.step}: CE {ce['val_masked_ce']}, FID {row['fid_n16']:.1f} (N=4 {row['fid_n4']:.1f}), "
          f"head removes {100 * row['mse_removed']:.1f}% of copy's MSE and {100 * row['kl_removed']:.1f}% of its KL "
          f"-> {results_path}")


if __name__ == "__main__":
    main()
