"""The hybrid policy: the shortcut head on every cheap step, then a partial backbone pass.

A change beyond the published method, for bases on which the head alone only ties plain feature
reuse. The head predicts the next step's features everywhere, as in ``ShortcutPolicy``; then the
positions where that prediction matters most and is least sure (the still-masked image positions
whose predicted distribution is least confident, then positions whose token changed since the
last full step) are recomputed through every layer of the backbone against the keys and values
cached at the last full step (ML-Cache's partial step, ``backbone.features_at``). The head
corrects what reuse gets wrong everywhere; the partial pass makes the few decisions about to be
taken exact, up to the staleness of the cache.

>>> policy = HybridShortcutPolicy(head, budget=4, recompute=0.05)

A cheap step costs the head plus a partial pass (about ``recompute`` of a full one); the step
still counts as cheap in ``SampleOutput.full_steps``: sweeps measure the latency itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migm_shortcut.shortcut import ShortcutHead

from .caching import CachedPasses, check_recompute, least_confident_positions, recompute_count, require_partial_forward
from .policies import StepOutput, StepState, register_policy, setting
from .shortcut import ShortcutPolicy, shortcut_features


@register_policy
class HybridShortcutPolicy(ShortcutPolicy):
    """B full steps at the published places (each stores every layer's keys/values); on the others the
    head's prediction, with ``ceil(recompute * L)`` positions per sequence recomputed by the backbone."""

    name = "hybrid"
    files = ("head",)

    @dataclass
    class Settings:
        budget: int | None = setting("full backbone steps B out of N (default 4)")
        recompute: float | None = setting("ratio of positions recomputed on cheap steps (default 0.05)", float)
        final_full: bool | None = setting("also run the backbone on the last step", bool)
        full_steps: list[int] | None = setting("the full steps themselves (B = their count)", "steps")
        shortcut_guidance: float | None = setting("CFG scale on cheap steps (default: the sampler's)", float)

    def __init__(self, head: ShortcutHead | str | Path | None = None, budget: int | None = None,
                 recompute: float = 0.05, final_full: bool = False, full_steps: Sequence[int] | None = None,
                 shortcut_guidance: float | None = None):
        check_recompute(recompute)
        super().__init__(head, budget=budget, final_full=final_full, full_steps=full_steps,
                         shortcut_guidance=shortcut_guidance)
        self.recompute = float(recompute)

    def reset(self, batch_size: int, num_steps: int) -> None:
        super().reset(batch_size, num_steps)
        self.passes = CachedPasses()

    def step(self, state: StepState) -> StepOutput:
        backbone = state.backbone
        require_partial_forward(backbone, "the hybrid policy")
        self.check_base(backbone)
        length = state.input_ids.shape[1]
        if self.is_full_step(state) or self.passes.cache is None or recompute_count(self.recompute, length) >= length:
            return StepOutput(self.passes.full(backbone, state.input_ids), state.flags(True))
        predicted = shortcut_features(self.head, state)
        index = least_confident_positions(state, predicted, self.recompute, self.passes.cached_ids)
        features = self.passes.partial(backbone, state.input_ids, predicted, index)
        return StepOutput(features, state.flags(False), self.shortcut_guidance)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "policy": self.name, "recompute": self.recompute}

    @classmethod
    def cheap_step_cost(cls, params: dict[str, Any], head_cost: float) -> float:
        # the head, plus the recomputed share of the positions through every layer (linear in positions;
        # their attention over the cached keys is counted at the same share, an approximation)
        return head_cost + float(params.get("recompute", 0.05))
