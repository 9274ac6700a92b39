"""Unmasking schedules: how many image tokens stay masked after each step. One module for the
package's sampler (``masked_counts``: Lumina-DiMOO's; ``maskgit_masked_counts``: MaskGIT's) and the
diffusers hook (``amused_masked_counts``: what ``AmusedScheduler`` leaves, to check a pipeline's N).

The cosine keep-schedule of Lumina-DiMOO's sampler:

After step k (0-based) of N, ``floor(L * cos(pi/2 * (k+1)/N))`` image tokens stay masked.
Departure from DiMOO's rule (as MaskGIT's scheduler does): every step commits at least one
token, so no step is a full forward pass that makes no progress. With few tokens and many
steps DiMOO's rule alone leaves such steps (64 tokens, N=32: three of them).
"""

from __future__ import annotations

import math

import torch

from migm_shortcut.errors import MigmError


def check_steps(num_tokens: int, num_steps: int) -> None:
    """Every schedule needs 1 <= N <= the number of image tokens: each step commits a token."""
    if num_steps < 1:
        raise MigmError(f"steps must be at least 1, got {num_steps}")
    if num_steps > num_tokens:
        raise MigmError(f"steps ({num_steps}) cannot exceed the number of image tokens ({num_tokens}): every step commits a token")


def masked_counts(num_tokens: int, num_steps: int) -> list[int]:
    """How many image tokens are still masked after each step; strictly decreasing to 0."""
    check_steps(num_tokens, num_steps)
    counts = []
    previous = num_tokens
    for k in range(num_steps):
        target = math.floor(num_tokens * math.cos(math.pi / 2 * (k + 1) / num_steps))
        remaining_steps = num_steps - 1 - k
        # At least one token per remaining step must still be masked, and this step commits >= 1.
        count = min(max(target, remaining_steps), previous - 1)
        counts.append(count)
        previous = count
    return counts


def committed_counts(num_tokens: int, num_steps: int) -> list[int]:
    """How many tokens each step commits."""
    counts = masked_counts(num_tokens, num_steps)
    return [before - after for before, after in zip([num_tokens] + counts[:-1], counts)]


MASKGIT_SCHEDULES = ("arccos", "cosine", "linear", "square", "root")


def maskgit_masked_counts(num_tokens: int, num_steps: int, mode: str = "arccos") -> list[int]:
    """MaskGIT-pytorch's schedule (its ``adap_sche``) as masked counts after each step.

    Tokens predicted at step k: ``val_k / sum(val) * L`` rounded, at least 1, the last step taking
    what is left, with ``val = arccos(r) / (pi/2)`` (or the other shapes) over ``r = 1 .. 0`` in N
    points. A step that would predict more tokens than are masked predicts what is left.
    """
    check_steps(num_tokens, num_steps)
    if mode not in MASKGIT_SCHEDULES:
        raise MigmError(f"unknown MaskGIT schedule {mode!r}; choose one of: {', '.join(MASKGIT_SCHEDULES)}")
    r = [1 - k / (num_steps - 1) if num_steps > 1 else 1.0 for k in range(num_steps)]
    shape = {"arccos": lambda v: math.acos(v) / (math.pi / 2), "cosine": lambda v: math.cos(v * math.pi / 2),
             "linear": lambda v: 1 - v, "square": lambda v: 1 - v * v, "root": lambda v: 1 - v ** 0.5}[mode]
    values = [shape(v) for v in r]
    total = sum(values) or 1.0
    per_step = [max(round(v / total * num_tokens), 1) for v in values]
    per_step[-1] += num_tokens - sum(per_step)
    counts, masked = [], num_tokens
    for k, t in enumerate(per_step):
        masked = 0 if k == num_steps - 1 else max(masked - max(t, 0), 0)
        counts.append(masked)
    return counts


def amused_masked_counts(num_tokens: int, num_steps: int) -> list[int]:
    """Masked tokens in the input of every call after the first, as ``AmusedScheduler`` (cosine) leaves them."""
    counts, masked = [], num_tokens
    for i in range(num_steps - 1):
        # float32, as the scheduler computes it: a float64 cosine rounds differently at exact halves.
        ratio = torch.tensor([i + 1]) / num_steps
        keep = int((num_tokens * torch.cos(ratio * math.pi / 2)).floor())
        masked = max(1, min(masked - 1, keep))
        counts.append(masked)
    return counts
