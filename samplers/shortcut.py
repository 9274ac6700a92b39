"""The shortcut policy: B full backbone steps out of N, the shortcut head in between.

Full steps follow the published placement (``budget_full_steps``); every other step starts
from the previous step's features, whichever produced them, so consecutive shortcut steps
roll the head forward on its own predictions. Both CFG branches are advanced, each with its
own new tokens (the conditional branch also sees its prompt tokens), and the guided logits
are formed from the base model's own head exactly as on a full step.

>>> policy = ShortcutPolicy(ShortcutHead.from_pretrained("weights/head"), budget=4)
>>> sampler = MaskedTokenSampler(backbone, num_steps=16, policy=policy)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from migm_shortcut.errors import MigmError
from migm_shortcut.sequence import per_branch
from migm_shortcut.shortcut import ShortcutHead, budget_full_steps, new_tokens

from .policies import (StepOutput, StepPolicy, StepState, check_eps, check_nonnegative, features_where, register_policy,
                       setting)
from .sensitivity import SensitivityScore, SensitivityTable, load_calibration

def load_head(head: ShortcutHead | str | Path | None) -> ShortcutHead:
    """A head module or a saved head folder (``None``: one line saying where heads come from)."""
    if isinstance(head, ShortcutHead):
        return head
    if head is None:
        raise MigmError("this policy needs a shortcut head and none was given; pass one (--head DIR, or the head/ of "
                        "the model's weights folder), or train one with `migm-shortcut train-head --model PATH`")
    return ShortcutHead.from_pretrained(Path(head))


def state_new_tokens(state: StepState):
    """The head's control input at this step: tokens committed at the previous step, per branch."""
    layout = state.backbone.layout
    b = state.batch_size
    image_ids = state.input_ids[:b, layout.image_positions.to(state.input_ids.device)]
    prompt_ids = state.input_ids[:b, : layout.prompt_len] if layout.prompt_in_sequence else None
    seen = state.backbone.feature_valid(state.input_ids[:, : layout.prompt_len])  # every branch's rows
    if state.newly_index is not None and state.num_newly > 0:  # the sampler's own indices: no sort
        return new_tokens(image_ids, None, layout.image_positions, prompt_ids, layout.pad_id, state.num_branches,
                          index=state.newly_index.to(image_ids.device), feature_valid=seen)
    return new_tokens(image_ids, state.newly_committed.to(image_ids.device), layout.image_positions, prompt_ids,
                      layout.pad_id, state.num_branches, width=max(state.num_newly, 1), feature_valid=seen)


def shortcut_features(head: ShortcutHead, state: StepState) -> torch.Tensor:
    """Predicted features of every sequence in the batch (both branches)."""
    ratio = per_branch(state.mask_ratio.to(state.prev_features.device), state.num_branches)
    tokens = state_new_tokens(state).to(state.prev_features.device)
    return head.advance(state.backbone, state.prev_features, tokens, ratio).to(state.prev_features.dtype)


@register_policy
class ShortcutPolicy(StepPolicy):
    """B full steps at the published places, the head in between.

    Placement variants for studying where full steps pay: ``final_full`` also forces a full
    last step; ``full_steps`` names the full steps outright (step 0 must be one; B is their count).

    ``shortcut_guidance`` is the CFG scale on shortcut steps (None: the sampler's, as on full
    steps). Guidance ``(1 + s) cond - s uncond`` multiplies the head's error on each branch by
    up to 2s + 1, so a gentler scale on the predicted steps can trade a little guidance for a
    lot less amplified error.
    """

    name = "shortcut"
    files = ("head",)

    @dataclass
    class Settings:
        budget: int | None = setting("full backbone steps B out of N (default 4)")
        final_full: bool | None = setting("also run the backbone on the last step", bool)
        full_steps: list[int] | None = setting("the full steps themselves, e.g. 0,7,10,13 (B = their count)", "steps")
        shortcut_guidance: float | None = setting("CFG scale on shortcut steps (default: the sampler's, as on full steps)",
                                                  float)
        compile: bool | None = setting("torch.compile the head (off by default: it did not pay on CPU)", bool,
                                       flag="compile-head")

    def __init__(self, head: ShortcutHead | str | Path | None = None, budget: int | None = None,
                 final_full: bool = False, full_steps: Sequence[int] | None = None,
                 shortcut_guidance: float | None = None, compile: bool = False):
        if shortcut_guidance is not None:
            check_nonnegative(shortcut_guidance, "shortcut_guidance")
        self.shortcut_guidance = None if shortcut_guidance is None else float(shortcut_guidance)
        self.head = load_head(head)
        # torch.compile of the head's forward: an option, off by default (no gain measured on CPU).
        self.compile = bool(compile)
        self.placement = None
        if full_steps is not None:
            if final_full:
                raise MigmError("give full_steps or final_full, not both")
            if isinstance(full_steps, (str, bytes)) or not all(isinstance(s, int) and s >= 0 for s in full_steps):
                raise MigmError(f"full_steps must be a list of step indices >= 0, got {full_steps!r}")
            self.placement = sorted(set(full_steps))
            if not self.placement or self.placement[0] != 0:
                raise MigmError(f"full_steps must include step 0 (the head needs real features to start from), "
                                f"got {list(full_steps)}")
            if budget is not None and budget != len(self.placement):
                raise MigmError(f"budget {budget} does not match the {len(self.placement)} full_steps given; drop one")
        self.budget = len(self.placement) if self.placement else int(4 if budget is None else budget)
        self.final_full = bool(final_full)
        self.full_steps: set[int] = set()
        self._checked_base: int | None = None

    def reset(self, batch_size: int, num_steps: int) -> None:
        if self.placement is not None:
            if self.placement[-1] >= num_steps:
                raise MigmError(f"full_steps {self.placement} name step {self.placement[-1]}, but the sampler has "
                                f"{num_steps} steps (0..{num_steps - 1})")
            self.full_steps = set(self.placement)
            return
        steps = budget_full_steps(num_steps, self.budget)
        if self.final_full and steps[-1] != num_steps - 1:
            steps = budget_full_steps(num_steps, self.budget - 1) + [num_steps - 1] if self.budget > 1 else [0]
        self.full_steps = set(steps)

    def check_base(self, backbone) -> None:
        if self._checked_base != id(backbone):
            self.head.check_base(backbone)
            self.head.place(backbone.device, backbone.dtype)  # the head's dtype handling (its architecture's)
            if self.compile:
                self.head.forward = torch.compile(self.head.forward)
            self._checked_base = id(backbone)

    def is_full_step(self, state: StepState) -> bool:
        """Whether this step runs the backbone: a full step of the placement, or no features to start from."""
        return state.step in self.full_steps or state.prev_features is None

    def step(self, state: StepState) -> StepOutput:
        self.check_base(state.backbone)
        if self.is_full_step(state):
            features = state.backbone.features(state.input_ids)
            return StepOutput(features, state.flags(True))
        return StepOutput(shortcut_features(self.head, state), state.flags(False), self.shortcut_guidance)

    @classmethod
    def cheap_step_cost(cls, params: dict[str, Any], head_cost: float) -> float:
        return head_cost  # one head pass

    def guidance_setting(self) -> dict[str, Any]:
        """``shortcut_guidance`` for ``describe``, only when set (older records stay as they were)."""
        return {} if self.shortcut_guidance is None else {"shortcut_guidance": self.shortcut_guidance}

    def describe(self) -> dict[str, Any]:
        placement = {"full_steps": self.placement} if self.placement is not None else {"final_full": self.final_full}
        return {"policy": self.name, "budget": self.budget, **placement, **self.guidance_setting()}


@register_policy
class AdaptiveShortcutPolicy(ShortcutPolicy):
    """Sensitivity-triggered shortcut: the head on every cheap step, the backbone only when needed.

    A sample gets a full step when its accumulated sensitivity score (the SenCache-style
    estimate of how far its features have drifted since its last full step, see
    ``samplers/sensitivity.py``) reaches eps, or after ``max_reuse`` shortcut steps in a row.
    Decisions are per sample: the backbone runs on just the samples that need it. Step 0 is
    always full; eps = 0 makes every step full (vanilla sampling).
    """

    name = "adaptive"
    files = ("head", "calibration")

    @dataclass
    class Settings:
        eps: float | None = setting("sensitivity threshold eps (default 0.4; 0: every step full)", float)
        max_reuse: int | None = setting("at most K shortcut steps in a row (default: no limit)")
        shortcut_guidance: float | None = setting("CFG scale on shortcut steps (default: the sampler's)", float)

    def __init__(self, head: ShortcutHead | str | Path | None = None, eps: float = 0.4, max_reuse: int | None = None,
                 calibration: SensitivityTable | str | Path | None = None, shortcut_guidance: float | None = None):
        check_eps(eps, max_reuse)
        super().__init__(head, budget=1, shortcut_guidance=shortcut_guidance)
        self.eps = float(eps)
        self.max_reuse = None if max_reuse is None else int(max_reuse)
        self.sensitivity = SensitivityScore(load_calibration(calibration))

    def reset(self, batch_size: int, num_steps: int) -> None:
        self.sensitivity.reset(num_steps)

    def check_base(self, backbone) -> None:
        self.sensitivity.check_base(backbone)
        super().check_base(backbone)

    def step(self, state: StepState) -> StepOutput:
        self.check_base(state.backbone)
        full = self.sensitivity.decide(state, self.eps, self.max_reuse, force=state.prev_features is None)
        return StepOutput(features_where(state, full, lambda sub: shortcut_features(self.head, sub)), full,
                          self.shortcut_guidance)

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "eps": self.eps, "max_reuse": self.max_reuse, **self.guidance_setting()}
