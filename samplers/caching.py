"""Training-free caching baselines, as step policies of the same sampler.

* ``FixedIntervalPolicy`` — the naive cache: compute every k-th step, reuse the features in
  between.
* ``SenCachePolicy`` — SenCache-style sensitivity caching: reuse a sample's last computed
  features (both CFG branches) while its calibrated score stays below eps. How SenCache's
  latent/timestep map onto a masked model is written up in ``samplers/sensitivity.py``.
* ``MLCachePolicy`` — Lumina-DiMOO's ML-Cache: full steps during warm-up and every
  ``interval``-th step after it store every layer's keys/values; partial steps recompute only
  the least-confident positions through every layer against those cached keys/values.

Reused features never see the tokens committed since they were computed: neighbours can
duplicate and confidence rankings go stale. That is the weakness the learned shortcut targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from migm_shortcut.checks import check_whole
from migm_shortcut.errors import MigmError
from migm_shortcut.interface import has_partial_forward
from migm_shortcut.sequence import KVCache

from .policies import (StepOutput, StepPolicy, StepState, check_eps, features_where, register_policy,
                       setting)
from .sensitivity import SensitivityScore, SensitivityTable, load_calibration


def _reuse(state: StepState) -> torch.Tensor:
    return state.prev_features


@register_policy
class FixedIntervalPolicy(StepPolicy):
    """Backbone on steps 0, k, 2k, ...; the last computed features are reused for the k-1 in between."""

    name = "fixed"

    @dataclass
    class Settings:
        interval: int | None = setting("compute every k-th step (default 2)")

    def __init__(self, interval: int = 2):
        check_whole(interval, "interval")
        self.interval = interval

    def step(self, state: StepState) -> StepOutput:
        if state.step % self.interval == 0 or state.prev_features is None:
            return StepOutput(state.backbone.features(state.input_ids), state.flags(True))
        return StepOutput(state.prev_features, state.flags(False))

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "interval": self.interval}


@register_policy
class SenCachePolicy(StepPolicy):
    """Reuse a sample's cached features while ``score < eps`` and fewer than K reuses in a row.

    The first and last steps are always computed; ``early_eps`` (stricter) applies to the first
    20% of steps. eps = 0 never reuses: the policy is then vanilla sampling.
    """

    name = "sencache"
    files = ("calibration",)

    @dataclass
    class Settings:
        eps: float | None = setting("sensitivity threshold eps (default 0.3; 0: never skip a step)", float)
        max_reuse: int | None = setting("at most K cheap steps in a row (default 3)")
        early_eps: float | None = setting("a stricter eps for the first 20%% of steps", float)

    def __init__(self, eps: float = 0.3, max_reuse: int = 3, calibration: SensitivityTable | str | Path | None = None,
                 early_eps: float | None = None):
        check_eps(eps, max_reuse, early_eps)
        self.eps, self.max_reuse = float(eps), int(max_reuse)
        self.early_eps = None if early_eps is None else float(early_eps)
        self.sensitivity = SensitivityScore(load_calibration(calibration))

    def reset(self, batch_size: int, num_steps: int) -> None:
        self.sensitivity.reset(num_steps)

    def threshold(self, step: int, num_steps: int) -> float:
        if self.early_eps is not None and step < math.ceil(0.2 * num_steps):
            return self.early_eps
        return self.eps

    def check_base(self, backbone) -> None:
        self.sensitivity.check_base(backbone)

    def step(self, state: StepState) -> StepOutput:
        self.check_base(state.backbone)
        always = state.prev_features is None or state.step in (0, state.num_steps - 1)
        full = self.sensitivity.decide(state, self.threshold(state.step, state.num_steps), self.max_reuse, force=always)
        return StepOutput(features_where(state, full, _reuse), full)

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "eps": self.eps, "max_reuse": self.max_reuse, "early_eps": self.early_eps}


def check_recompute(recompute: Any) -> None:
    if isinstance(recompute, bool) or not isinstance(recompute, (int, float)) or not 0 < recompute <= 1:
        raise MigmError(f"recompute ratio must be in (0, 1], got {recompute!r}")


def require_partial_forward(backbone, who: str) -> None:
    if not has_partial_forward(backbone):
        raise MigmError(f"{who} needs a backbone with a key/value cache (features_at); {type(backbone).__name__} has none")


def recompute_count(recompute: float, length: int) -> int:
    """Positions per sequence a partial pass recomputes; ``length`` or more is a full pass."""
    return math.ceil(recompute * length)


class CachedPasses:
    """ML-Cache's two kinds of pass, shared by the policies that use them (``mlcache``, ``hybrid``): a
    full pass that stores every layer's keys and values, and partial passes that recompute some
    positions through every layer against them (the cache then holds those positions' new keys
    and values; ``cached_ids`` the tokens they were computed for)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.cache: KVCache | None = None
        self.cached_ids: torch.Tensor | None = None

    def full(self, backbone, input_ids: torch.Tensor) -> torch.Tensor:
        self.cache = KVCache()
        features = backbone.features(input_ids, kv_cache=self.cache)
        self.cached_ids = input_ids.clone()
        return features

    def partial(self, backbone, input_ids: torch.Tensor, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``features`` with the positions in ``index`` (rows, P) recomputed by the backbone."""
        fresh = backbone.features_at(input_ids, index, self.cache)
        where = index[..., None].expand(-1, -1, features.shape[-1]).to(features.device)
        self.cached_ids.scatter_(1, index, input_ids.gather(1, index))
        return features.scatter(1, where, fresh.to(features.dtype))


def least_confident_positions(state: StepState, features: torch.Tensor, recompute: float,
                              cached_ids: torch.Tensor) -> torch.Tensor:
    """(branches*B, ceil(recompute * L)) positions per sequence for a partial pass, the same in both branches.

    First the still-masked image positions whose prediction from ``features`` is least confident
    (lowest max probability of the conditional branch), then positions whose token changed since
    ``cached_ids`` (their cached keys and values are stale), then the rest in a fixed order.
    """
    layout = state.backbone.layout
    length = state.input_ids.shape[1]
    b, device = state.batch_size, state.input_ids.device
    # Priority key per position: confidence in [0, 1] at masked image positions, 2 where the
    # token changed since the cache, 3 + position / L elsewhere (a fixed, deterministic order).
    key = 3 + torch.arange(length, device=device).float().div(length).expand(b, length).clone()
    changed = (state.input_ids != cached_ids).view(state.num_branches, b, length).any(0)  # in any branch
    key = torch.where(changed, 2.0, key)  # (a boolean-mask write would read the mask back to the host)
    image_positions = layout.image_positions.to(device)
    cond_logits = state.backbone.logits_from_features(features[:b, image_positions], image_positions).float()
    confidence = cond_logits.softmax(-1).amax(-1)
    key[:, image_positions] = torch.where(state.masked.to(device), confidence, key[:, image_positions])
    index = key.topk(recompute_count(recompute, length), dim=1, largest=False).indices
    return index.repeat(state.num_branches, 1)


@register_policy
class MLCachePolicy(StepPolicy):
    """Lumina-DiMOO's ML-Cache.

    Full steps: every step up to and including ``int(warmup * N)``, then every ``interval``-th step
    after it (N=16, warmup 0.3, interval 5: steps 0-4, 9 and 14), as the published generator; each
    stores every layer's keys/values. A partial step recomputes ``ceil(recompute * L)``
    positions per sequence through every layer (``backbone.features_at``): the still-masked
    image positions whose cached prediction is least confident (lowest max probability of the
    conditional branch, the same positions in both branches), then — when the ratio asks for
    more — positions whose token changed since the cache, then the rest. All other positions
    reuse their cached features (hence logits). ``recompute = 1`` recomputes every position:
    exactly a full step.
    """

    name = "mlcache"

    @dataclass
    class Settings:
        warmup: float | None = setting("warm-up ratio of full steps (default 0.3)", float)
        interval: int | None = setting("refresh interval after the warm-up (default 5)")
        recompute: float | None = setting("ratio of positions recomputed on partial steps (default 0.1)", float)

    def __init__(self, warmup: float = 0.3, interval: int = 5, recompute: float = 0.1):
        if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup <= 1:
            raise MigmError(f"warmup must be a ratio in [0, 1], got {warmup!r}")
        check_whole(interval, "refresh interval")
        check_recompute(recompute)
        self.warmup, self.interval, self.recompute = float(warmup), interval, float(recompute)

    def reset(self, batch_size: int, num_steps: int) -> None:
        self.passes = CachedPasses()

    def is_full(self, step: int, num_steps: int) -> bool:
        # as Lumina-DiMOO's generator marks its refresh steps: every step up to and including
        # int(N * warmup), then every interval-th step counted from that one
        warm = int(self.warmup * num_steps)
        return step <= warm or (step - warm) % self.interval == 0

    def recompute_index(self, state: StepState) -> torch.Tensor:
        """(branches*B, P) positions to recompute, ranked by the cached prediction's confidence."""
        return least_confident_positions(state, state.prev_features, self.recompute, self.passes.cached_ids)

    def step(self, state: StepState) -> StepOutput:
        backbone = state.backbone
        require_partial_forward(backbone, "ML-Cache")
        length = state.input_ids.shape[1]
        full_step = self.passes.cache is None or state.prev_features is None \
            or self.is_full(state.step, state.num_steps) or recompute_count(self.recompute, length) >= length
        if full_step:
            return StepOutput(self.passes.full(backbone, state.input_ids), state.flags(True))
        features = self.passes.partial(backbone, state.input_ids, state.prev_features, self.recompute_index(state))
        return StepOutput(features, state.flags(False))

    @classmethod
    def cheap_step_cost(cls, params: dict[str, Any], head_cost: float) -> float:
        return float(params.get("recompute", 0.1))  # the recomputed share of the positions, every layer

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "warmup": self.warmup, "interval": self.interval, "recompute": self.recompute}
