"""Is data the head's limit? The same head, recipe and number of optimizer steps, trained on a fixed set of
collected trajectories and on fresh ones generated online, scored on the same held-out trajectories.

* ``fixed``: ``train-head --data`` on the embedded model's 768 collected trajectories (N=16, CFG 4; the
  last 64 held out), the set ``scripts/compare_head_architectures.py`` collects;
* ``fresh``: ``train-head --online``: 64 new teacher trajectories every 16 optimizer steps, so the default
  --steps 1500 sees 6,016 trajectories (3x the shipped head's 2,000; 8.5x the fixed set's 704), --steps 2500 sees 10,048
  and --steps 5000 20,032. On this 2-core CPU the teacher passes dominate: 1500 steps take about an hour.
  At 1500 steps the fixed arm is the generic embedded head of scripts/compare_head_architectures.py.

Both are the generic head from scratch with the comparison's recipe. ``train-head`` validates every
--val-every steps (the curve: the edge over copying against trajectories seen); at the end both EMA heads are
scored by ``validate-head`` on the same 64 held-out trajectories, per step and by position
(``--by-position``: where the error sits).

Every stage resumes (kill it and rerun); runs and logs go to --runs (default ~/migm-runs/data_scale).

    python scripts/head_data_scale.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from compare_head_architectures import run, summary  # the same run-and-log and head-vs-copy summary
from migm_shortcut.io import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "migm_shortcut.cli"]
RECIPE = ["--batch-size", "32", "--lr", "5e-4", "--masked-only", "--kl-weight", "5", "--ratio", "2", "--num-blocks", "1",
          "--architecture", "generic", "--val-trajectories", "64", "--seed", "0", "--device", "cpu", "--resume"]
PER_ROUND, STEPS_PER_ROUND = 64, 16


def by_position(rows: list[dict]) -> dict:
    """Each position class's share of positions and of the head's error, and head/copy MSE there (means over steps)."""
    classes = ("committed", "new", "near", "far")
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    total = sum(mean(f"share_{c}") * mean(f"mse_head_{c}") for c in classes)
    return {c: {"positions": round(mean(f"share_{c}"), 4), "mse_head": round(mean(f"mse_head_{c}"), 5),
                "mse_copy": round(mean(f"mse_copy_{c}"), 5),
                "head_error_share": round(mean(f"share_{c}") * mean(f"mse_head_{c}") / total, 4)} for c in classes}


def plot(result: dict, path: Path) -> None:
    """The edge over copying (guided KL and feature MSE removed) against optimizer steps, one line per arm,
    each point labelled with the trajectories seen by then."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from migm_shortcut.io import write_bytes

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "kl_reduction", "guided KL removed vs copying"),
                           (axes[1], "mse_reduction", "feature MSE removed vs copying")):
        for i, (name, arm) in enumerate(result["arms"].items()):
            steps = [c["step"] for c in arm["curve"]]
            ax.plot(steps, [100 * c[key] for c in arm["curve"]], marker="o", label=f"{name} ({arm['flags'].split()[0]})")
            last = arm["curve"][-1]
            ax.annotate(f"{last['trajectories_seen']:,} traj.", (last["step"], 100 * last[key]), fontsize=8,
                        textcoords="offset points", xytext=(-40, 6 - 18 * i))
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xlabel("optimizer step (batch 32)")
        ax.set_ylabel("% of copying's error removed (held out)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default=str(Path.home() / "migm-runs" / "data_scale"))
    p.add_argument("--trajectories", default=str(Path.home() / "migm-runs" / "head_architectures" / "embedded" / "traj"),
                   help="the collected set (collected here when missing)")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "head_data_scale.json"))
    p.add_argument("--plot", default=str(ROOT / "docs" / "head_data_scale.png"))
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--arms", default="fresh,fixed")
    args = p.parse_args()
    runs, traj = Path(args.runs), Path(args.trajectories)
    runs.mkdir(parents=True, exist_ok=True)
    log = runs / "data_scale.log"
    run(CLI + ["collect", "--num", "768", "--batch-size", "32", "--out", str(traj)], log)  # resumes; a no-op when complete
    result = {"kind": "head_data_scale", "train_steps": args.steps, "recipe": " ".join(RECIPE[:-1]),
              "command": " ".join(["python scripts/head_data_scale.py", *sys.argv[1:]]),
              "held_out": f"the last 64 of the 768 trajectories in {traj.name}",
              "arms": {}}
    arms = {"fixed": ["--data", str(traj)],
            "fresh": ["--online", "--online-trajectories", str(PER_ROUND), "--online-steps-per-round", str(STEPS_PER_ROUND)]}
    for name in [a for a in args.arms.split(",") if a]:
        out = runs / name
        start = time.time()
        done = (out / "metrics.json").is_file() and read_json(out / "metrics.json").get("steps") == args.steps
        if not done:
            run(CLI + ["train-head", *arms[name], "--out", str(out), "--steps", str(args.steps),
                       "--val-every", str(args.val_every), *RECIPE], log)
        scored = out / "held_out.json"
        if not scored.is_file():
            run(CLI + ["validate-head", "--data", str(traj), "--head", str(out / "shortcut_head"), "--by-position",
                       "--out", str(scored)], log)
        held_out = read_json(scored)["rows"]
        curve = []
        for entry in read_json(out / "validation.json")["history"]:
            seen = (704 if name == "fixed" else PER_ROUND * (1 + (entry["step"] - 1) // STEPS_PER_ROUND))
            curve.append({"step": entry["step"], "trajectories_seen": seen, **summary(entry["rows"])})
        metrics = read_json(out / "metrics.json")
        result["arms"][name] = {"flags": " ".join(arms[name]), "parameters": metrics["parameters"],
                                "train_seconds": metrics["train_seconds"], "curve": curve,
                                "held_out": summary(held_out), "by_position": by_position(held_out),
                                "per_step": [{k: round(r[k], 5) if isinstance(r[k], float) else r[k]
                                              for k in ("step", "mse_head", "mse_copy", "kl_head", "kl_copy")}
                                             for r in held_out]}
        print(f"{name}: {result['arms'][name]['held_out']} ({time.time() - start:.0f} s)", flush=True)
        write_json(Path(args.out), result)  # after each arm, so a cut-off run keeps what finished
    plot(result, Path(args.plot))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
