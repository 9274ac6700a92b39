import pytest
import torch

from migm_shortcut.sequence import MASK
from migm_shortcut.errors import MigmError
from migm_shortcut.samplers import MaskedTokenSampler, StepOutput, VanillaPolicy, guided_logits, masked_counts

PROMPTS = ["a photo of a sneaker", "a photo of an ankle boot", "trousers"]


class RecordingPolicy(VanillaPolicy):
    """Vanilla, but keeps every state it sees."""

    def __init__(self):
        self.states = []

    def step(self, state):
        self.states.append(state)
        return super().step(state)


def test_cfg_arithmetic():
    cond, uncond = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    out = guided_logits(torch.cat([cond, uncond]), 2, 4.0)
    torch.testing.assert_close(out, 5.0 * cond - 4.0 * uncond)
    torch.testing.assert_close(guided_logits(cond, 1, 4.0), cond)


def test_guidance_zero_skips_the_unconditional_branch_without_changing_tokens(tiny_backbone):
    class BothBranches(MaskedTokenSampler):
        num_branches = 2  # run the unconditional branch anyway; weight 0 must make it irrelevant

    one = MaskedTokenSampler(tiny_backbone, num_steps=4, guidance_scale=0.0)
    two = BothBranches(tiny_backbone, num_steps=4, guidance_scale=0.0)
    assert one.num_branches == 1
    assert torch.equal(one.generate(PROMPTS, [1, 2, 3]).codes, two.generate(PROMPTS, [1, 2, 3]).codes)


def test_sampler_shapes_ranges_and_step_counts(tiny_backbone):
    out = MaskedTokenSampler(tiny_backbone, num_steps=5).generate(PROMPTS, seeds=[0, 1, 2])
    assert out.codes.shape == (3, 4, 4)
    assert out.codes.min() >= 0 and out.codes.max() < 16
    assert out.full_steps.tolist() == [5, 5, 5]
    assert out.loop_seconds > 0


def test_schedule_followed_and_no_token_is_remasked(tiny_backbone):
    policy = RecordingPolicy()
    sampler = MaskedTokenSampler(tiny_backbone, num_steps=6, policy=policy)
    out = sampler.generate(PROMPTS, seeds=[0, 1, 2])
    layout = tiny_backbone.layout
    schedule = [layout.num_image_tokens] + masked_counts(layout.num_image_tokens, 6)
    previous_ids = None
    for k, state in enumerate(policy.states):
        assert state.masked.sum(1).tolist() == [schedule[k]] * 3
        cond_image = state.input_ids[:3, layout.image_positions]
        uncond_image = state.input_ids[3:, layout.image_positions]
        torch.testing.assert_close(cond_image, uncond_image)  # both CFG branches see the same image tokens
        assert torch.equal(cond_image == MASK, state.masked)
        assert (state.input_ids[:, layout.eor_positions] != MASK).all()  # end-of-row never masked
        if previous_ids is not None:
            was_committed = previous_ids != MASK
            assert torch.equal(cond_image[was_committed], previous_ids[was_committed])  # committed stays
        if k > 0:
            assert state.newly_committed.sum(1).tolist() == [schedule[k - 1] - schedule[k]] * 3
            # the sampler's own indices of those tokens, in image order, agree with the mask
            assert torch.equal(state.newly_committed.nonzero()[:, 1].view(3, -1), state.newly_index)
            assert torch.allclose(state.mask_ratio, state.masked.float().mean(1))
        previous_ids = cond_image
    final = out.codes.flatten(1) + layout.code_offset
    committed_before_last = previous_ids != MASK
    assert torch.equal(final[committed_before_last], previous_ids[committed_before_last])


def test_same_seed_same_tokens_different_seed_different(tiny_backbone):
    sampler = MaskedTokenSampler(tiny_backbone, num_steps=4)
    a = sampler.generate(PROMPTS, seeds=[7, 8, 9]).codes
    b = sampler.generate(PROMPTS, seeds=[7, 8, 9]).codes
    c = sampler.generate(PROMPTS, seeds=[10, 11, 12]).codes
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sample_does_not_depend_on_its_batch_mates(tiny_backbone):
    sampler = MaskedTokenSampler(tiny_backbone, num_steps=4)
    together = sampler.generate(PROMPTS, seeds=[7, 8, 9]).codes
    alone = sampler.generate(PROMPTS[1:2], seeds=[8]).codes
    assert torch.equal(together[1], alone[0])


def test_greedy_temperature_zero_is_deterministic_across_seeds(tiny_backbone):
    sampler = MaskedTokenSampler(tiny_backbone, num_steps=4, temperature=0.0)
    assert torch.equal(sampler.generate(PROMPTS, [0, 1, 2]).codes, sampler.generate(PROMPTS, [5, 6, 7]).codes)


def test_policy_with_wrong_feature_shape_is_reported(tiny_backbone):
    class Broken(VanillaPolicy):
        name = "broken"

        def step(self, state):
            out = super().step(state)
            return StepOutput(out.features[:, :-1], out.full)

    with pytest.raises(MigmError, match="broken"):
        MaskedTokenSampler(tiny_backbone, num_steps=3, policy=Broken()).generate(PROMPTS, [0, 1, 2])


@pytest.mark.parametrize("kwargs,match", [
    ({"num_steps": 0}, "whole number >= 1"), ({"num_steps": 17}, "cannot exceed"),
    ({"guidance_scale": -1}, "guidance"), ({"temperature": -0.5}, "temperature"),
])
def test_bad_sampler_settings(tiny_backbone, kwargs, match):
    with pytest.raises(MigmError, match=match):
        MaskedTokenSampler(tiny_backbone, **kwargs)


def test_seed_count_must_match(tiny_backbone):
    with pytest.raises(MigmError, match="one seed per prompt"):
        MaskedTokenSampler(tiny_backbone, num_steps=2).generate(PROMPTS, [0])
