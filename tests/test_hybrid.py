"""The hybrid policy: the shortcut head everywhere, then a partial backbone pass at the least-confident positions."""

import math

import pytest
import torch

from migm_shortcut.errors import MigmError
from migm_shortcut.samplers import MaskedTokenSampler, HybridShortcutPolicy, ShortcutPolicy, VanillaPolicy, make_policy

from test_shortcut import PROMPTS, random_head


class Recording:
    """Wraps a policy and keeps the features it returned at each step."""

    def __init__(self, policy):
        self.policy, self.features = policy, []
        self.name = policy.name

    def reset(self, batch_size, num_steps):
        self.features = []
        self.policy.reset(batch_size, num_steps)

    def step(self, state):
        out = self.policy.step(state)
        self.features.append(out.features)
        return out


def test_hybrid_recomputes_exactly_its_share_of_positions_on_a_cheap_step(tiny_backbone):
    head = random_head(tiny_backbone)
    shortcut, hybrid = Recording(ShortcutPolicy(head, budget=2)), Recording(HybridShortcutPolicy(head, budget=2, recompute=0.1))
    for policy in (shortcut, hybrid):
        MaskedTokenSampler(tiny_backbone, num_steps=6, policy=policy).generate(PROMPTS, seeds=[0, 1, 2])
    # Step 1 is the first cheap step (full steps 0 and 3): both policies start it from the same state.
    length = tiny_backbone.layout.seq_len
    changed = (hybrid.features[1] - shortcut.features[1]).abs().amax(-1) > 1e-6  # (rows, L)
    assert (changed.sum(1) <= math.ceil(0.1 * length)).all() and changed.any(1).all()
    # Full steps are the backbone's own, as for the shortcut policy.
    torch.testing.assert_close(hybrid.features[0], shortcut.features[0])


def test_hybrid_full_steps_are_counted_like_the_shortcut(tiny_backbone):
    head = random_head(tiny_backbone)
    out = MaskedTokenSampler(tiny_backbone, num_steps=6, policy=HybridShortcutPolicy(head, budget=2)).generate(PROMPTS, [0, 1, 2])
    assert out.full_steps.tolist() == [2, 2, 2]


@pytest.mark.parametrize("settings", [{"budget": 6}, {"budget": 2, "recompute": 1.0}])
def test_hybrid_with_every_step_full_or_every_position_recomputed_is_vanilla(tiny_backbone, settings):
    head = random_head(tiny_backbone)
    vanilla = MaskedTokenSampler(tiny_backbone, num_steps=6, policy=VanillaPolicy()).generate(PROMPTS, seeds=[4, 5, 6])
    hybrid = MaskedTokenSampler(tiny_backbone, num_steps=6, policy=HybridShortcutPolicy(head, **settings)).generate(PROMPTS, [4, 5, 6])
    assert torch.equal(vanilla.codes, hybrid.codes)


@pytest.mark.parametrize("params, message", [({"recompute": 0.0}, "recompute ratio must be in"),
                                             ({"recompute": 1.5}, "recompute ratio must be in"),
                                             ({"budget": 0}, "budget must be between 1")])
def test_hybrid_bad_settings_are_one_line(tiny_backbone, params, message):
    with pytest.raises(MigmError, match=message):
        policy = make_policy("hybrid", head=random_head(tiny_backbone), **params)
        policy.reset(1, 6)


def test_hybrid_needs_a_partial_forward(tiny_backbone):
    class NoCache:
        def __getattr__(self, name):
            if name == "features_at":
                raise AttributeError(name)
            return getattr(tiny_backbone, name)

    policy = HybridShortcutPolicy(random_head(tiny_backbone), budget=2)
    with pytest.raises(MigmError, match="needs a backbone with a key/value cache"):
        policy.step(type("State", (), {"backbone": NoCache()})())
