"""Which loss moves the shipped embedded head: fine-tunes of it that differ in one training flag, scored
where the sampler feels them.

The position measurement (scripts/head_error_positions.py) found most of the head's rolled-out error at
the positions just committed and before, which the shipped recipe's MSE (``--masked-only``) never
targets, though those features are the next shortcut step's input. Each arm continues the shipped head
(``--init-head``) for the same steps on the same collected trajectories:

* ``masked``: the shipped recipe (its train.log: rollout 3, MSE at still-masked positions, KL weight 5,
  lr 2e-4), the control: what more steps on these trajectories do by themselves;
* ``all-positions``: the same with the MSE at every position, new and committed ones included;
* ``direct-token-path``: the control's loss, and the head extended with a path from each new token's
  embedding to its own position (``train-head --direct-token-path``, zero at the start);
* ``direct-all-positions``: both, so the path has a target of its own (the new positions' features).

Each head is scored by ``validate-head --by-position`` on the 64 held-out trajectories, rolled 1 and 3
shortcut steps, and by a sweep on the default sweep's 1000 prompts and seeds: each head at B=4 of N=16
(the budget where the head and copying differ most), with the shipped head and fixed-interval reuse k=4
beside it.

Every stage resumes; runs and logs go to --runs (default ~/migm-runs/head_recipes).

    python scripts/head_recipes.py --out docs/results/head_recipes.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compare_head_architectures import run, summary
from head_data_scale import by_position
from migm_shortcut.io import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "migm_shortcut.cli"]
SHIPPED = ROOT / "migm_shortcut" / "weights" / "shortcut_head"
ARMS = {"masked": ["--masked-only"], "all-positions": [], "direct-token-path": ["--masked-only", "--direct-token-path"],
        "direct-all-positions": ["--direct-token-path"]}
RECIPE = ["--init-head", str(SHIPPED), "--batch-size", "32", "--lr", "2e-4", "--kl-weight", "5", "--rollout", "3",
          "--seed", "0", "--device", "cpu", "--resume"]
BUDGETS = (4,)


def sweep_config(heads: dict[str, Path]) -> dict:
    """The default sweep's prompts, seeds and reference; each head at BUDGETS, the shipped head, fixed k=4."""
    default = read_json(ROOT / "migm_shortcut" / "configs" / "default_sweep.json")
    keep = ("per_class", "quick_per_class", "seed", "batch_size", "guidance_scale", "temperature", "reference",
            "reference_size", "quick_reference_size", "inception")
    settings = [{"policy": "shortcut", "steps": 16, "budget": b, "label": f"shortcut B={b}, shipped head"} for b in BUDGETS]
    settings += [{"policy": "shortcut", "steps": 16, "budget": b, "head": str(path), "label": f"shortcut B={b}, {name}"}
                 for name, path in heads.items() for b in BUDGETS]
    settings.append({"policy": "fixed", "steps": 16, "interval": 4})
    return {"description": "scripts/head_recipes.py: fine-tuned heads against the shipped one and fixed reuse",
            **{k: default[k] for k in keep}, "real_baseline": False,
            "baseline": {"policy": "vanilla", "steps": 16}, "settings": settings}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default=str(Path.home() / "migm-runs" / "head_recipes"))
    p.add_argument("--trajectories", default=str(Path.home() / "migm-runs" / "head_architectures" / "embedded" / "traj"),
                   help="the collected set of scripts/compare_head_architectures.py (collected here when missing)")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "head_recipes.json"))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--skip-sweep", action="store_true", help="validation only")
    args = p.parse_args()
    runs, traj = Path(args.runs), Path(args.trajectories)
    runs.mkdir(parents=True, exist_ok=True)
    log = runs / "head_recipes.log"
    run(CLI + ["collect", "--num", "768", "--batch-size", "32", "--out", str(traj)], log)  # a no-op when complete
    result = {"kind": "head_recipes", "train_steps": args.steps, "recipe": " ".join(RECIPE[:-1]).replace(str(ROOT) + "/", ""),
              "command": "python scripts/head_recipes.py", "trajectories": "the 768 trajectories scripts/compare_head_architectures.py collects (the last 64 held out)",
              "arms": {}}
    heads = {}
    for name in [a for a in args.arms.split(",") if a]:
        out = runs / name
        metrics = out / "metrics.json"
        if not (metrics.is_file() and read_json(metrics).get("steps") == args.steps):
            run(CLI + ["train-head", "--data", str(traj), *ARMS[name], "--out", str(out), "--steps", str(args.steps),
                       "--val-every", str(args.steps), *RECIPE], log)
        heads[name] = out / "shortcut_head"
        arm = {"flags": " ".join(ARMS[name])}
        for rollout in (1, 3):
            scored = out / f"held_out_rollout{rollout}.json"
            if not scored.is_file():
                run(CLI + ["validate-head", "--data", str(traj), "--head", str(heads[name]), "--rollout", str(rollout),
                           "--by-position", "--out", str(scored)], log)
            rows = read_json(scored)["rows"]
            arm[f"rollout_{rollout}"] = {"held_out": summary(rows), "by_position": by_position(rows)}
        result["arms"][name] = arm
        write_json(Path(args.out), result)
    shipped = {}
    for rollout in (1, 3):  # the shipped head on the same held-out trajectories
        scored = runs / f"shipped_rollout{rollout}.json"
        if not scored.is_file():
            run(CLI + ["validate-head", "--data", str(traj), "--head", str(SHIPPED), "--rollout", str(rollout),
                       "--by-position", "--out", str(scored)], log)
        rows = read_json(scored)["rows"]
        shipped[f"rollout_{rollout}"] = {"held_out": summary(rows), "by_position": by_position(rows)}
    result["shipped"] = shipped
    if not args.skip_sweep:
        config = runs / "sweep_config.json"
        write_json(config, sweep_config(heads))
        run(CLI + ["sweep", "--config", str(config), "--out", str(runs / "sweep"), "--resume"], log)
        swept = read_json(runs / "sweep" / "results.json")
        rows = swept["rows"]
        result["sweep_images"] = swept["num_images_per_setting"]
        result["sweep"] = [{k: r.get(k) for k in ("setting", "full_steps", "speedup", "fid", "domain_fid", "prompt_accuracy")}
                           for r in rows if r["method"] != "real"]
    write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
