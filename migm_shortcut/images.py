"""Writing samples: one PNG per image, and labelled grids (matplotlib)."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from migm_shortcut.io import write_bytes


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float N x 1 x H x W in [-1, 1] -> uint8 N x H x W; N x 3 x H x W -> N x H x W x 3 (RGB)."""
    pixels = images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return pixels.squeeze(1) if pixels.shape[1] == 1 else pixels.permute(0, 2, 3, 1)


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


def load_pngs(folder: str | Path, indices) -> torch.Tensor:
    """``folder/000000.png`` ... (the numbers in ``indices``, as ``save_pngs`` wrote them) -> (N, C, H, W) in [-1, 1]."""
    from PIL import Image

    images = []
    for i in indices:
        with Image.open(Path(folder) / f"{i:06d}.png") as image:
            pixels = torch.from_numpy(np.asarray(image).copy())
        images.append((pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)).float() / 127.5 - 1)
    return torch.stack(images)


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
    return _write_figure(fig, path)


def _write_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_bytes(Path(path), buf.getvalue())
    return Path(path)


def mosaic(images: torch.Tensor, columns: int) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one uint8 picture of ``columns`` images per row (a 1-pixel gap)."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    padded = torch.full((rows * columns, c, h + 1, w + 1), 1.0)
    padded[:n, :, :h, :w] = images.clamp(-1, 1)
    tiled = rearrange(padded, "(r k) c h w -> c (r h) (k w)", k=columns)[:, :-1, :-1]
    return to_uint8(tiled[None])[0].numpy()


def save_comparison_grid(cells: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str], col_labels: Sequence[str],
                         path: str | Path, title: str | None = None, per_row: int = 4) -> Path:
    """Methods by prompts: ``cells[i][j]`` (N x C x H x W in [-1, 1]) are method i's images of prompt j,
    drawn as one small mosaic (``per_row`` images across); method labels on the left, prompt labels
    on top and the title inside the figure, wrapped to its width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(cells), max(len(r) for r in cells)
    pictures = [[mosaic(images, min(per_row, len(images))) for images in row] for row in cells]
    tile = 1.3  # inches across a cell; its height follows the mosaic's shape
    aspect = pictures[0][0].shape[0] / pictures[0][0].shape[1]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(tile * n_cols + 2.2, tile * aspect * n_rows + 0.35 * n_rows + 1.0),
                             squeeze=False)
    for r, row in enumerate(pictures):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                ax.imshow(row[c], cmap="gray", vmin=0, vmax=255)
            if c == 0:
                ax.set_ylabel("\n".join(textwrap.wrap(row_labels[r], 18)), rotation=0, ha="right", va="center", fontsize=7)
            if r == 0:
                ax.set_title("\n".join(textwrap.wrap(col_labels[c], 16)) if c < len(col_labels) else "", fontsize=7)
    if title:
        width_chars = int((tile * n_cols + 2.2) * 14)
        fig.suptitle("\n".join(textwrap.wrap(title, width_chars)), fontsize=8)
    fig.tight_layout()
    return _write_figure(fig, path)
