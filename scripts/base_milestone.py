"""Save a long train-base run's progress as a milestone folder that outlives the machine.

    python scripts/base_milestone.py ~/migm-runs/base_long milestones/base_long

The milestone (EMA weights in fp16, step, clock, curve and log) is small enough to commit;
``scripts/train_base_long.sh`` continues from it when its run folder is gone.
"""

import argparse
import sys
from pathlib import Path

from migm_shortcut.errors import MigmError
from migm_shortcut.train.base import export_milestone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a train-base --out folder with a backbone checkpoint")
    parser.add_argument("dest", help="the milestone folder to write (replaced atomically)")
    args = parser.parse_args()
    try:
        info = export_milestone(Path(args.run), Path(args.dest))
    except MigmError as exc:
        sys.exit(f"error: {exc}")
    print(f"milestone at step {info['step']} ({info['train_seconds']:.0f} s of training) written to {args.dest}")


if __name__ == "__main__":
    main()
