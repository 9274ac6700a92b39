"""Where the head's error sits: the shipped embedded head rolled 1, 2 and 3 shortcut steps from the teacher's
features on held-out trajectories, its feature MSE split by position (``validate-head --by-position``):

* committed: image tokens committed before the rollout;
* new: committed during it (the head is told these tokens);
* near: still masked, beside a new one (8-neighbourhood on the token grid);
* far: still masked elsewhere.

    python scripts/head_error_positions.py --out docs/results/head_error_positions.json

The trajectories default to the set ``scripts/compare_head_architectures.py`` collects (768 at N=16, the last 64
held out, never seen by the shipped head); runs and logs go to --runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from migm_shortcut.io import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("committed", "new", "near", "far")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(Path.home() / "migm-runs" / "head_architectures" / "embedded" / "traj"))
    p.add_argument("--runs", default=str(Path.home() / "migm-runs" / "positions"))
    p.add_argument("--rollouts", default="1,2,3")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "head_error_positions.json"))
    args = p.parse_args()
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    if not (Path(args.data) / "collection.json").is_file():
        subprocess.run([sys.executable, "-m", "migm_shortcut.cli", "collect", "--num", "768", "--batch-size", "32",
                        "--out", args.data], check=True, cwd=ROOT)
    result = {"kind": "head_error_positions", "command": "python scripts/head_error_positions.py",
              "head": "the shipped embedded head (migm_shortcut/weights/shortcut_head)", "data": Path(args.data).name,
              "rollouts": []}
    for rollout in [int(r) for r in args.rollouts.split(",")]:
        out = runs / f"rollout{rollout}.json"
        subprocess.run([sys.executable, "-m", "migm_shortcut.cli", "validate-head", "--data", args.data, "--rollout",
                        str(rollout), "--out", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        scored = read_json(out)
        rows = scored["rows"]
        mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
        total = sum(mean(f"share_{c}") * mean(f"mse_head_{c}") for c in CLASSES)
        result["trajectories"] = scored["trajectories"]
        result["rollouts"].append({
            "rollout": rollout, "mse_head": round(mean("mse_head"), 5), "mse_copy": round(mean("mse_copy"), 5),
            "classes": {c: {"positions": round(mean(f"share_{c}"), 4), "mse_head": round(mean(f"mse_head_{c}"), 5),
                            "mse_copy": round(mean(f"mse_copy_{c}"), 5),
                            "head_error_share": round(mean(f"share_{c}") * mean(f"mse_head_{c}") / total, 4)}
                        for c in CLASSES}})
        write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
