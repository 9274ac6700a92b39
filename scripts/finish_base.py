"""The stronger base's end-game: from the long run's final milestone to a shipped base, head and
calibration, and the sweeps that replace the README's numbers.

    python scripts/finish_base.py --backbone milestones/base_long/backbone --work ~/migm-runs/finish
    python scripts/finish_base.py ... --install      # after reading the sweeps: copy into migm_shortcut/weights

Stages, each resumable (rerun after a kill; a finished stage is skipped):

1. a weights folder in WORK: the shipped tokenizer and classifier with the new backbone;
2. ``collect`` 2000 teacher trajectories at N=16 (the shipped head's data size);
3. ``train-head`` from the shipped head, re-bound to the new base (``--rebind-init-head``), with
   the shipped recipe (KL weight 5, MSE at still-masked positions, rollout 3), 4000 steps;
4. ``calibrate`` the sensitivity table (128 vanilla trajectories, as shipped);
5. the default and the baselines sweeps at 1000 images against that folder (the baselines sweep
   reuses the default sweep's rows: its settings are a subset of them), each with its
   ``report --frontier`` summary (``frontier.json``: which method wins where);
6. ``--install``: backbone, head and calibration into ``migm_shortcut/weights`` together (a head
   and table record the base they belong to, so they move as one).

``--quick`` runs every stage at a toy size, the sweeps as the two-row ``base_check`` (testing the script).
``--device cuda --skip-sweeps`` runs stages 1-4 on a GPU (scripts/gpu_finish_base.sh); the sweeps then
run where their FID reference lives, resuming from the copied WORK folder.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from base_milestone_eval import cli, weights_folder

from migm_shortcut.errors import MigmError
from migm_shortcut.io import atomic_dir, read_json, write_json
from migm_shortcut.modeling import SHIPPED_WEIGHTS

CONFIGS = SHIPPED_WEIGHTS.parent / "configs"
RECIPE = {"trajectories": 2000, "teacher_steps": 16, "head_steps": 4000, "batch_size": 32, "lr": 2e-4,
          "kl_weight": 5.0, "rollout": 3, "val_trajectories": 64, "calibration_samples": 128}
QUICK = {"trajectories": 12, "head_steps": 4, "val_trajectories": 4, "calibration_samples": 4}


def backbone_metrics(milestone: Path, shipped: dict) -> dict:
    """metrics.json's backbone entry for the long run's milestone: its schedule, clock and last curve point."""
    info = read_json(milestone / "milestone.json")
    last = [json.loads(line) for line in (milestone / "curve.jsonl").read_text().splitlines() if line.strip()][-1]
    return {"train_seconds": info["train_seconds"], "steps": info["step"], "batch_size": info["backbone_batch_size"],
            "lr": info["backbone_lr"], "parameters": shipped.get("parameters"),
            "val_masked_ce": last["val_masked_ce"], "val_masked_accuracy": last["val_masked_accuracy"], "device": info.get("device", "cpu"),
            "warm_start": {k: shipped.get(k) for k in ("steps", "batch_size", "train_seconds", "val_masked_ce")}}


def install(work: Path, milestone: Path) -> None:
    """Replace the shipped backbone, head and calibration with the ones in WORK, all or nothing; the
    backbone's entry in metrics.json and its training curve come from the milestone."""
    weights = work / "weights"
    parts = {"backbone": weights / "backbone", "head": work / "head" / "head", "calibration.json": work / "calibration.json"}
    missing = [str(p) for p in parts.values() if not p.exists()]
    if missing:
        raise MigmError(f"nothing installed: {missing[0]} is missing; run the stages first")
    with atomic_dir(SHIPPED_WEIGHTS) as staged:
        shutil.copytree(SHIPPED_WEIGHTS, staged, dirs_exist_ok=True)
        for name, source in parts.items():
            target = staged / name
            if target.is_dir():
                shutil.rmtree(target)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        for name in ("metrics.json", "train.log"):  # the head's provenance travels with it, as shipped
            if (work / "head" / name).is_file():
                shutil.copy2(work / "head" / name, staged / "head" / name)
        metrics = read_json(staged / "metrics.json")
        metrics["backbone"] = backbone_metrics(milestone, metrics["backbone"])
        write_json(staged / "metrics.json", metrics)
        shutil.copy2(milestone / "curve.jsonl", staged / "backbone_curve.jsonl")
    print(f"installed the backbone, head and calibration from {work} into {SHIPPED_WEIGHTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", required=True, help="the final milestone's backbone folder")
    parser.add_argument("--work", required=True, help="scratch folder (weights, trajectories, head, sweeps)")
    parser.add_argument("--install", action="store_true", help="copy the results into migm_shortcut/weights")
    parser.add_argument("--quick", action="store_true", help="every stage at a toy size (testing the script)")
    parser.add_argument("--device", default="cpu", help="device for collect, train-head, calibrate and the sweeps")
    parser.add_argument("--skip-sweeps", action="store_true", help="stop after the calibration (stages 1-4)")
    args = parser.parse_args()
    work = Path(args.work)
    recipe = dict(RECIPE, **(QUICK if args.quick else {}))
    quick = ["--quick"] if args.quick else []
    try:
        if args.install:
            install(work, Path(args.backbone).parent)
            return
        work.mkdir(parents=True, exist_ok=True)
        weights = str(weights_folder(Path(args.backbone), work))
        if not (work / "head" / "head").is_dir():  # a finished head (here or brought from a GPU) is kept
            cli("collect", "--num", str(recipe["trajectories"]), "--steps", str(recipe["teacher_steps"]),
                "--out", str(work / "traj"), "--weights", weights, "--device", args.device)
            cli("train-head", "--data", str(work / "traj"), "--out", str(work / "head"), "--weights", weights,
                "--init-head", str(SHIPPED_WEIGHTS / "head"), "--rebind-init-head", "--steps", str(recipe["head_steps"]),
                "--batch-size", str(recipe["batch_size"]), "--lr", str(recipe["lr"]), "--kl-weight", str(recipe["kl_weight"]),
                "--rollout", str(recipe["rollout"]), "--masked-only", "--val-trajectories", str(recipe["val_trajectories"]),
                "--resume", "--device", args.device)
        if not (work / "calibration.json").is_file():
            cli("calibrate", "--num", str(recipe["calibration_samples"]), "--out", str(work / "calibration.json"),
                "--weights", weights, "--device", args.device)
        # The sweeps sample with this folder's own head and table: put them where a weights folder keeps them.
        for name, source in (("head", work / "head" / "head"), ("calibration.json", work / "calibration.json")):
            if not (Path(weights) / name).exists():
                (shutil.copytree if source.is_dir() else shutil.copy2)(source, Path(weights) / name)
        if args.skip_sweeps:
            print(f"done: head and calibration in {work}; run again without --skip-sweeps for the sweeps")
            return
        # (--quick checks the plumbing with the two-row base_check sweep instead.)
        configs = ("base_check",) if args.quick else ("default_sweep", "baselines_sweep")
        # The baselines sweep's rows are a subset of the default sweep's (same prompts, seeds and
        # settings), so it reuses them instead of sampling 15 rows of 1000 images again.
        reuse: list[str] = []
        for config in configs:
            cli("sweep", "--config", str(CONFIGS / f"{config}.json"), "--out", str(work / config), "--weights", weights,
                "--resume", "--device", args.device, *reuse, *quick)
            reuse += ["--reuse-from", str(work / config / "results.json")]
            # Which method wins where: the closing comparison, from the sweep just written.
            cli("report", str(work / config / "results.json"), "--frontier", "--out", str(work / config / "frontier.json"))
    except MigmError as exc:
        sys.exit(f"error: {exc}")
    print(f"done: sweeps in {', '.join(str(work / c) for c in configs)}; read them, then rerun with --install")


if __name__ == "__main__":
    main()
