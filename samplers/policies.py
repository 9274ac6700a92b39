"""Step policies: the one seam for acceleration in the sampler.

At every step the sampler hands the policy a ``StepState`` and gets back the features of
every sequence (both CFG branches) and which samples paid for a full backbone pass. The
vanilla policy always runs the backbone; the shortcut head and the caching baselines are
other policies that supply features more cheaply on some steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Callable, ClassVar

import torch

from migm_shortcut.checks import check_whole
from migm_shortcut.errors import MigmError
from migm_shortcut.interface import MaskedImageModel


@dataclass
class StepState:
    step: int                     # 0-based step index
    num_steps: int                # N
    backbone: MaskedImageModel    # the base model, through the model interface only
    input_ids: torch.Tensor       # (branches * B, L) current sequences, conditional branch first
    num_branches: int             # 2 with classifier-free guidance, else 1
    prev_features: torch.Tensor | None    # (branches * B, L, C) features used at the previous step
    masked_index: torch.Tensor    # (B, M) image indices still masked before this step, in image order
    mask_ratio: torch.Tensor      # (B,) fraction of image tokens still masked
    num_newly: int = 0            # tokens each sample committed at the previous step (the schedule's, known on the host)
    newly_index: torch.Tensor | None = None  # (B, num_newly) their image indices, in image order (None at step 0)

    # The (B, N_img) masks are built only when a policy asks (the caching baselines do): the sampler
    # itself keeps indices, and a mask per step is three more operations on every step of every policy.
    @cached_property
    def masked(self) -> torch.Tensor:
        """(B, N_img) bool: image tokens still masked before this step."""
        return self._mask_of(self.masked_index)

    @cached_property
    def newly_committed(self) -> torch.Tensor | None:
        """(B, N_img) bool: image tokens committed at the previous step (None at step 0)."""
        return None if self.newly_index is None else self._mask_of(self.newly_index)

    def _mask_of(self, index: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(index.shape[0], self.backbone.layout.num_image_tokens, dtype=torch.bool, device=index.device)
        return mask.scatter_(1, index, True)

    @property
    def batch_size(self) -> int:
        return self.masked_index.shape[0]

    def rows(self, samples: torch.Tensor) -> torch.Tensor:
        """Sequence rows of these sample indices in every CFG branch (cond rows, then uncond rows)."""
        return torch.cat([samples + i * self.batch_size for i in range(self.num_branches)])

    def subset(self, samples: torch.Tensor) -> "StepState":
        """The same step restricted to some samples (both branches of each), for per-sample decisions."""
        rows = self.rows(samples)
        pick = lambda t: None if t is None else t[samples.to(t.device)]  # noqa: E731
        return StepState(
            step=self.step, num_steps=self.num_steps, backbone=self.backbone,
            input_ids=self.input_ids[rows.to(self.input_ids.device)], num_branches=self.num_branches,
            prev_features=None if self.prev_features is None else self.prev_features[rows.to(self.prev_features.device)],
            masked_index=pick(self.masked_index), mask_ratio=pick(self.mask_ratio),
            num_newly=self.num_newly, newly_index=pick(self.newly_index),
        )

    def flags(self, value: bool) -> torch.Tensor:
        """(B,) bool on the model's device: every sample full (True) or cheap (False)."""
        return torch.full((self.batch_size,), value, dtype=torch.bool, device=self.input_ids.device)


@dataclass
class StepOutput:
    features: torch.Tensor  # (branches * B, L, C)
    full: torch.Tensor      # (B,) bool: did this sample pay for a backbone pass
    # CFG scale for the samples that did not (``full`` False); None: the sampler's own scale.
    # Guidance multiplies the error of cheap features by up to 2s + 1, so a policy may guide
    # its cheap steps more gently than its full ones.
    cheap_guidance: float | None = None


# Checks the policies share for their parameters (whole numbers: migm_shortcut.checks.check_whole).
def check_nonnegative(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MigmError(f"{name} must be a number >= 0, got {value!r}")


def check_eps(eps: float, max_reuse: int | None, early_eps: float | None = None) -> None:
    for name, value in (("eps", eps), ("early_eps", early_eps)):
        if value is not None:
            check_nonnegative(value, name)
    if max_reuse is not None:
        check_whole(max_reuse, "max_reuse (K)")


def setting(help: str, kind: Any = int, flag: str | None = None):
    """One declared parameter of a policy: a ``Settings`` field, None unless given (the policy's
    constructor holds the default, which ``help`` states). ``kind``: int, float, bool or "steps" (a
    comma-separated list of step indices); ``flag``: the CLI flag when it is not ``--field-name``."""
    return field(default=None, metadata={"help": help, "kind": kind, "flag": flag})


@dataclass
class NoSettings:
    """A policy without parameters."""


# What a policy may read from files, and what each is.
POLICY_FILES = {
    "head": "shortcut head folder (default: the model's shortcut_head/)",
    "calibration": "sensitivity table from `calibrate` (default: the model's calibration.json)",
}


class StepPolicy:
    """Base class. ``reset`` is called once per generation, ``step`` once per step.

    A policy declares its parameters as a ``Settings`` dataclass (fields made with ``setting``) and
    the files it reads in ``files`` (keys of ``POLICY_FILES``); the constructor takes exactly those
    as keyword arguments. CLI flags and sweep-config keys are generated from the declaration.
    """

    name: ClassVar[str] = "base"
    Settings: ClassVar[type] = NoSettings
    files: ClassVar[tuple[str, ...]] = ()

    def reset(self, batch_size: int, num_steps: int) -> None:
        pass

    def step(self, state: StepState) -> StepOutput:
        raise NotImplementedError

    def check_base(self, backbone) -> None:
        """One line when the policy's files belong to another model (a head, a calibration)."""

    def describe(self) -> dict[str, Any]:
        """Plain settings recorded in run.json and sweep tables."""
        return {"policy": self.name}

    @classmethod
    def cheap_step_cost(cls, params: dict[str, Any], head_cost: float) -> float:
        """What a step without a full backbone pass costs, in full passes, where a head step costs
        ``head_cost`` of one (``params``: the setting's parameters). It prices a measured setting at
        another model's size (``report --price-at``). The default is a step that reuses cached features:
        no model work."""
        return 0.0


class VanillaPolicy(StepPolicy):
    """Every step runs the backbone: the reference every acceleration is measured against."""

    name = "vanilla"

    def step(self, state: StepState) -> StepOutput:
        features = state.backbone.features(state.input_ids)
        return StepOutput(features, state.flags(True))


def features_where(state: StepState, full: torch.Tensor, cheap: Callable[[StepState], torch.Tensor]) -> torch.Tensor:
    """Backbone features for the samples with ``full`` set, ``cheap(substate)`` for the rest.

    The backbone runs only on the rows that need it (a batch pays for what its samples need);
    when every sample needs it, this is exactly one full-batch pass, as in vanilla sampling.
    """
    if bool(full.all()):
        return state.backbone.features(state.input_ids)
    need, skip = full.nonzero()[:, 0], (~full).nonzero()[:, 0]
    cheap_features = cheap(state.subset(skip))
    out = torch.empty(state.input_ids.shape + cheap_features.shape[-1:], dtype=cheap_features.dtype,
                      device=cheap_features.device)
    out[state.rows(skip).to(out.device)] = cheap_features
    if len(need):
        rows = state.rows(need).to(state.input_ids.device)
        out[rows.to(out.device)] = state.backbone.features(state.input_ids[rows]).to(out.dtype)
    return out


POLICIES: dict[str, type[StepPolicy]] = {"vanilla": VanillaPolicy}


def register_policy(cls: type[StepPolicy]) -> type[StepPolicy]:
    """Make a policy class known by its ``name`` (a class decorator): the CLI's ``--policy``, its
    flags, and sweep configs all come from the registry."""
    POLICIES[cls.name] = cls
    return cls


def policy_class(name: str) -> type[StepPolicy]:
    if name not in POLICIES:
        raise MigmError(f"unknown policy {name!r}; choose one of: {', '.join(POLICIES)}")
    return POLICIES[name]


def policy_parameters(name: str) -> tuple[str, ...]:
    """Every key a policy takes: its declared settings, then its files."""
    cls = policy_class(name)
    return tuple(f.name for f in fields(cls.Settings)) + cls.files


def make_policy(name: str, **params: Any) -> StepPolicy:
    """The policy ``name`` with these parameters (unset ones keep its defaults); an unknown key is
    one line naming the keys the policy takes."""
    cls = policy_class(name)
    allowed = policy_parameters(name)
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise MigmError(f"policy {name!r} takes no {', '.join(map(repr, unknown))}; its parameters: "
                        f"{', '.join(allowed) or 'none'}")
    return cls(**{k: v for k, v in params.items() if v is not None})
