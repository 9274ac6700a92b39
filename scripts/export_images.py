"""Write a class-balanced set of Fashion-MNIST images as PNG files: a reference folder for
``sweep --reference DIR`` or ``fid`` on models that know nothing of the dataset (the shipped aMUSEd
pipeline). Usage: python scripts/export_images.py --split test --num 1000 --out runs/fashion_test_1000"""

import argparse
from pathlib import Path

from migm_shortcut.embedded.data import load_dataset, to_model_range
from migm_shortcut.images import save_pngs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["train", "test"], default="test")
    parser.add_argument("--num", type=int, default=1000, help="images, a multiple of 10 (the same count per class)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.num < 10 or args.num % 10:
        parser.error("--num must be a positive multiple of 10")
    data = load_dataset("fashion-mnist", args.split).balanced(args.num // 10)
    paths = save_pngs(to_model_range(data.images), Path(args.out))
    print(f"wrote {len(paths)} images to {args.out}")


if __name__ == "__main__":
    main()
