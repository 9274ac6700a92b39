"""Writing samples: one PNG per image, and labelled grids (matplotlib)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from migm_shortcut.embedded.data import to_uint8
from migm_shortcut.io import write_bytes


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")  # (H, W): grayscale, (H, W, 3): RGB
    return buf.getvalue()


def save_pngs(images: torch.Tensor, out_dir: str | Path, start: int = 0) -> list[Path]:
    """Float images in [-1, 1] (N x 1 or 3 x H x W) -> ``out_dir/000000.png`` ... (each written atomically)."""
    out_dir = Path(out_dir)
    pixels = to_uint8(images).numpy()
    paths = []
    for i, image in enumerate(pixels):
        path = out_dir / f"{start + i:06d}.png"
        write_bytes(path, png_bytes(image))
        paths.append(path)
    return paths


def save_grid(rows: Sequence[torch.Tensor], row_labels: Sequence[str], path: str | Path,
              title: str | None = None, col_labels: Sequence[str] | None = None) -> Path:
    """A labelled grid: one row per entry of ``rows`` (each N x 1 x H x W in [-1, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(0.9 * n_cols + 1.6, 0.9 * n_rows + (0.5 if title else 0.1)),
                             squeeze=False)
    for r, (images, label) in enumerate(zip(rows, row_labels)):
        pixels = to_uint8(images).numpy()
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(pixels):
                ax.imshow(pixels[c], cmap="gray", vmin=0, vmax=255)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and col_labels is not None and c < len(col_labels):
                ax.set_title(col_labels[c], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path
