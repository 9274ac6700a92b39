"""Step policies: the one seam for acceleration in the sampler.

At every step the sampler hands the policy a ``StepState`` and gets back the features of
every sequence (both CFG branches) and which samples paid for a full backbone pass. The
vanilla policy always runs the backbone; the shortcut head and the caching baselines are
other policies that supply features more cheaply on some steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from migm_shortcut.errors import MigmError


@dataclass
class StepState:
    step: int                     # 0-based step index
    num_steps: int                # N
    backbone: Any                 # the base model (exposes features / logits_from_features / layout)
    input_ids: torch.Tensor       # (branches * B, L) current sequences, conditional branch first
    num_branches: int             # 2 with classifier-free guidance, else 1
    prev_features: torch.Tensor | None    # (branches * B, L, C) features used at the previous step
    newly_committed: torch.Tensor | None  # (B, N_img) bool: image tokens committed at the previous step
    masked: torch.Tensor          # (B, N_img) bool: image tokens still masked before this step
    mask_ratio: torch.Tensor      # (B,) fraction of image tokens still masked

    @property
    def batch_size(self) -> int:
        return self.masked.shape[0]


@dataclass
class StepOutput:
    features: torch.Tensor  # (branches * B, L, C)
    full: torch.Tensor      # (B,) bool: did this sample pay for a backbone pass


class StepPolicy:
    """Base class. ``reset`` is called once per generation, ``step`` once per step."""

    name: ClassVar[str] = "base"

    def reset(self, batch_size: int, num_steps: int) -> None:
        pass

    def step(self, state: StepState) -> StepOutput:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Plain settings recorded in run.json and sweep tables."""
        return {"policy": self.name}


class VanillaPolicy(StepPolicy):
    """Every step runs the backbone: the reference every acceleration is measured against."""

    name = "vanilla"

    def step(self, state: StepState) -> StepOutput:
        features = state.backbone.features(state.input_ids)
        return StepOutput(features, torch.ones(state.batch_size, dtype=torch.bool))


POLICIES: dict[str, Callable[..., StepPolicy]] = {"vanilla": VanillaPolicy}


def register_policy(name: str, factory: Callable[..., StepPolicy]) -> None:
    POLICIES[name] = factory


def make_policy(name: str, **params: Any) -> StepPolicy:
    if name not in POLICIES:
        raise MigmError(f"unknown policy {name!r}; choose one of: {', '.join(sorted(POLICIES))}")
    try:
        return POLICIES[name](**params)
    except TypeError as exc:
        raise MigmError(f"bad parameters for policy {name!r}: {exc}") from None
