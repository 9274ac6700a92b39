"""Pieces every training loop here shares: device choice, logging, EMA, LR schedule, checkpoints."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from migm_shortcut.errors import MigmError
from migm_shortcut.io import load_torch, save_torch


class RunLog:
    """Appends timestamped lines to a log file (and echoes them through tqdm's writer)."""

    def __init__(self, path: Path, echo: bool = True):
        self.path = Path(path)
        self.echo = echo

    def __call__(self, message: str) -> None:
        # The folder appears with the first line, so a run refused before it starts leaves nothing behind.
        self.path.parent.mkdir(parents=True, exist_ok=True)
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


def batch_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


def train_loop(*, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, total_steps: int,
               warmup: int, loss_at: Callable[[int], torch.Tensor], checkpoint: Path, log: RunLog,
               resume: bool, checkpoint_every: int, ema: EMA | None = None, grad_clip: float = 1.0,
               on_interval: Callable[[int], None] | None = None, interval: int = 250,
               on_checkpoint: Callable[[int, float], None] | None = None, is_main: bool = True,
               stop_at: int | None = None, start: tuple[int, float] | None = None, rewarmup: int = 50) -> float:
    """The loop every trainer here shares; returns the wall-clock seconds it took (resumes included).

    The batch of step ``s`` must be a pure function of ``s`` (see ``batch_generator``), so a
    resumed run continues exactly. ``stop_at`` ends this run early at that step (with a checkpoint;
    the schedule still spans ``total_steps``, so a later ``--resume`` carries on unchanged).
    ``start=(step, elapsed)`` continues a schedule from a milestone (weights already loaded, fresh
    optimizer state) when there is no checkpoint to resume: the learning rate ramps back up over
    ``rewarmup`` steps, because new AdamW moments at full rate would jolt the weights.
    ``on_checkpoint(step, elapsed)`` runs after each checkpoint
    is written (held-out validation curves); it must not draw from the training's random
    state. Under DDP pass the unwrapped module as ``model`` (its
    gradients are already averaged by the wrapped one inside ``loss_at``); only the main
    process writes checkpoints and logs.
    """
    start_step, elapsed = 0, 0.0
    ramp_from = None   # the step a milestone continuation started at (its LR ramp), kept across resumes
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    if resume and checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.shadow.load_state_dict(state["ema"])
        start_step, elapsed = state["step"], state["elapsed"]
        ramp_from = state.get("ramp_from")
        log(f"{name}: resumed at step {start_step}")
    elif start is not None:
        start_step, elapsed = start
        ramp_from = start_step
        log(f"{name}: continuing the schedule at step {start_step} (fresh optimizer state, {rewarmup}-step LR ramp)")
    t0 = time.perf_counter()
    end = total_steps if stop_at is None else min(total_steps, stop_at)
    bar = tqdm(range(start_step, end), desc=name, initial=start_step, total=total_steps, disable=not is_main)
    for step in bar:
        mult = warmup_cosine(step, total_steps, warmup)
        if ramp_from is not None and step - ramp_from < rewarmup:
            mult *= (step - ramp_from + 1) / rewarmup
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * mult
        model.train()
        loss = loss_at(step)
        check_finite(loss, step, checkpoint)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update(model)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        if on_interval is not None and done % interval == 0:
            on_interval(done)
        if is_main and (done % checkpoint_every == 0 or done == end):
            state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), step=done,
                         elapsed=elapsed + time.perf_counter() - t0)
            if ema is not None:
                state["ema"] = ema.shadow.state_dict()
            if ramp_from is not None:
                state["ramp_from"] = ramp_from
            save_checkpoint(checkpoint, **state)
            log(f"{name}: step {done}/{total_steps} loss {loss.item():.4f}")
            if on_checkpoint is not None:
                on_checkpoint(done, state["elapsed"])
    return elapsed + time.perf_counter() - t0


