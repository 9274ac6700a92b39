"""Pieces every training loop here shares: device choice, logging, EMA, LR schedule, checkpoints."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from torch import nn

from migm_shortcut.errors import MigmError
from migm_shortcut.io import load_torch, save_torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MigmError(f"--device {name} asked for, but no CUDA device is available; use --device cpu")
    return torch.device(name)


class RunLog:
    """Appends timestamped lines to a log file (and echoes them through tqdm's writer)."""

    def __init__(self, path: Path, echo: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        with open(self.path, "a") as f:
            f.write(line + "\n")
        if self.echo:
            from tqdm.auto import tqdm

            tqdm.write(line)


class EMA:
    """Exponential moving average of a module's parameters (the copy that gets saved)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_p, p in zip(self.shadow.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)
        for ema_b, b in zip(self.shadow.buffers(), model.buffers()):
            ema_b.copy_(b)


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.02) -> float:
    """LR multiplier: linear warm-up then cosine decay to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def save_checkpoint(path: Path, **state) -> None:
    save_torch(path, state)


def load_checkpoint(path: Path) -> dict:
    return load_torch(path)


def check_finite(loss: torch.Tensor, step: int, checkpoint: Path) -> None:
    if not torch.isfinite(loss):
        raise MigmError(
            f"loss became {loss.item()} at step {step}; stopped. The last good checkpoint is {checkpoint} "
            "(resume from it with a lower learning rate)"
        )
