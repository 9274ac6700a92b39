"""The long base run's training curve: held-out masked-token CE of the EMA and raw weights per step,
with each milestone's Inception FID marked (docs/results/base_long/head_edge.json).

    python scripts/plot_base_curve.py migm_shortcut/weights/backbone_curve.jsonl \
        --milestones docs/results/base_long/head_edge.json --out docs/base_long_curve.png
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from migm_shortcut.io import read_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curve", help="a train-base curve.jsonl")
    parser.add_argument("--milestones", help="head_edge.json from scripts/base_milestone_eval.py")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    path = Path(args.curve)
    if not path.is_file():
        sys.exit(f"error: {path} not found: pass a train-base --curve-images run's curve.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["val_masked_ce"] for r in rows], "o-", ms=3, label="EMA weights (saved)")
    if all("raw_val_masked_ce" in r for r in rows):
        ax.plot(steps, [r["raw_val_masked_ce"] for r in rows], ".--", alpha=0.6, label="raw weights")
    if args.milestones:
        for m in read_json(args.milestones)["milestones"]:
            if m.get("quick"):
                continue
            ax.axvline(m["step"], color="0.8", lw=0.8, zorder=0)
            ax.annotate(f"FID {m['fid_n16']:.1f}", (m["step"], m["val_masked_ce"]), textcoords="offset points",
                        xytext=(4, 8), fontsize=8)
    ax.set_xlabel("training step (batch 128; step 0 = the shipped weights)")
    ax.set_ylabel("held-out masked-token CE (1000 test images)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
