"""The clean-fid backend (optional extra ``migm-shortcut[cleanfid]``).

clean-fid needs torchvision, which on CPU-only machines drags in the CUDA build of torch, so
it is never a core dependency. It scores two folders of images with its own resizing
("clean" mode). Its Inception weights are fetched on first use and cached by clean-fid; on
an offline machine place them in clean-fid's cache beforehand.
"""

from __future__ import annotations

from pathlib import Path

import torch

from migm_shortcut.errors import MigmError
from migm_shortcut.io import tensor_digest

from .fid import cache_dir


def require_cleanfid():
    try:
        from cleanfid import fid  # noqa: F401
    except ImportError:
        raise MigmError("clean-fid is not installed: pip install 'migm-shortcut[cleanfid]' "
                        "(it needs torchvision), or use the default torchmetrics backend") from None
    return fid


def reference_folder(images: torch.Tensor, name: str) -> Path:
    """Write the reference images once as PNGs (clean-fid compares folders)."""
    from migm_shortcut.images import save_pngs

    folder = cache_dir() / "cleanfid-reference" / f"{name.replace(':', '_').replace('/', '_')}-{tensor_digest(images)}"
    done = folder / ".complete"
    if not done.is_file():
        save_pngs(images, folder)
        done.write_text("ok\n")
    return folder


def cleanfid_score(generated_dir: str | Path, reference: torch.Tensor, reference_name: str) -> float:
    fid = require_cleanfid()
    ref_dir = reference_folder(reference, reference_name)
    try:
        return float(fid.compute_fid(str(generated_dir), str(ref_dir), mode="clean", num_workers=0))
    except Exception as exc:  # clean-fid fails on a missing weights download among others
        raise MigmError(f"clean-fid failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
