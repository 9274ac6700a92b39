import copy

import pytest
import torch

from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO
from migm_shortcut.sequence import PAD
from migm_shortcut.errors import MigmError
from migm_shortcut.samplers import SenCachePolicy, MaskedTokenSampler, ShortcutPolicy, StepOutput, make_policy
from migm_shortcut.shortcut import ShortcutHead, budget_full_steps, new_tokens

PROMPTS = ["a photo of a sneaker", "a photo of an ankle boot", "a photo of a bag"]


def random_head(backbone, seed=0, **overrides) -> ShortcutHead:
    torch.manual_seed(seed)
    head = ShortcutHead.for_base(backbone, **overrides)
    with torch.no_grad():  # leave the zero-initialised "copy" state so the head really computes something
        for p in head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return head.eval()


def test_budget_schedule_matches_published_examples():
    assert budget_full_steps(64, 11) == [0, 6, 12, 17, 23, 29, 35, 41, 47, 52, 58]
    assert budget_full_steps(32, 12) == [0, 3, 5, 8, 11, 13, 16, 19, 21, 24, 27, 29]
    assert budget_full_steps(16, 16) == list(range(16))
    assert budget_full_steps(16, 1) == [0]


@pytest.mark.parametrize("budget", [0, -1, 17])
def test_budget_outside_range_is_one_clear_error(budget):
    with pytest.raises(MigmError, match="budget must be between 1 and the number of steps"):
        budget_full_steps(16, budget)


def test_new_tokens_are_ragged_padded_and_branch_specific():
    image_ids = torch.tensor([[10, 11, 12, 13], [20, 21, 22, 23]])
    newly = torch.tensor([[False, True, False, True], [False, False, True, False]])
    positions = torch.tensor([5, 6, 8, 9])
    prompts = torch.tensor([[7, 8, PAD], [9, PAD, PAD]])
    t = new_tokens(image_ids, newly, positions, prompts, PAD, num_branches=2)
    assert t.ids.shape == (4, 3 + 2)
    # conditional rows: prompt (non-pad valid) then the new image tokens
    assert t.ids[0].tolist() == [7, 8, PAD, 11, 13] and t.valid[0].tolist() == [True, True, False, True, True]
    assert t.positions[0, 3:].tolist() == [6, 9]
    assert t.valid[1].tolist() == [True, False, False, True, False] and t.ids[1, 3].item() == 22
    # unconditional rows: only the image tokens
    assert t.valid[2].tolist() == [False, False, False, True, True]
    assert t.valid[3].tolist() == [False, False, False, True, False]


@pytest.mark.parametrize("branches,with_prompt", [(1, False), (2, False), (1, True), (2, True)])
def test_new_tokens_from_the_samplers_indices_equal_the_mask_path(branches, with_prompt):
    # The sampler knows which indices it committed (every row as many): that path skips the sort.
    generator = torch.Generator().manual_seed(0)
    image_ids = torch.randint(10, 99, (3, 12), generator=generator)
    index = torch.stack([torch.randperm(12, generator=generator)[:4].sort().values for _ in range(3)])
    newly = torch.zeros(3, 12, dtype=torch.bool).scatter_(1, index, True)
    positions = torch.arange(12) + 5
    prompts = torch.tensor([[7, 8, PAD], [9, PAD, PAD], [7, 7, 7]]) if with_prompt else None
    from_mask = new_tokens(image_ids, newly, positions, prompts, PAD, branches, width=4)
    from_index = new_tokens(image_ids, None, positions, prompts, PAD, branches, index=index)
    for field in ("ids", "positions", "valid"):
        assert torch.equal(getattr(from_mask, field), getattr(from_index, field)), field


def test_head_shapes_and_padding_does_not_change_a_prediction(tiny_backbone):
    head = random_head(tiny_backbone)
    L, C = tiny_backbone.layout.seq_len, tiny_backbone.width
    feats = torch.randn(2, L, C)
    ids = torch.randint(6, tiny_backbone.layout.vocab_size, (2, 5))
    pos = torch.randint(0, L, (2, 5))
    valid = torch.tensor([[True, True, True, True, True], [True, True, False, False, False]])
    ratio = torch.tensor([0.5, 0.25])
    emb = tiny_backbone.embed_tokens(ids, pos)
    out = head(feats, emb, valid, ratio)
    assert out.shape == feats.shape
    alone = head(feats[1:], emb[1:, :2], valid[1:, :2], ratio[1:])
    assert torch.allclose(out[1], alone[0], atol=1e-5)
    garbage = emb.clone()
    garbage[1, 2:] = 1e3  # padded entries must not leak into the prediction
    assert torch.allclose(head(feats, garbage, valid, ratio)[1], out[1], atol=1e-5)
    # no new token at all is well defined (the null token)
    empty = head(feats, emb, torch.zeros_like(valid), ratio)
    assert torch.isfinite(empty).all()


def test_untrained_head_copies_features(tiny_backbone):
    head = ShortcutHead.for_base(tiny_backbone)
    feats = torch.randn(1, tiny_backbone.layout.seq_len, tiny_backbone.width)
    emb = torch.randn(1, 3, tiny_backbone.width)
    assert torch.equal(head(feats, emb, torch.ones(1, 3, dtype=torch.bool), torch.tensor([0.3])), feats)


def test_the_direct_token_path_starts_at_zero_and_reaches_only_each_tokens_own_position(tiny_backbone):
    plain = random_head(tiny_backbone)
    direct = ShortcutHead.for_base(tiny_backbone, direct_token_path=True)
    missing, unexpected = direct.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["token_at_position.bias", "token_at_position.weight"]
    L, C = tiny_backbone.layout.seq_len, tiny_backbone.width
    torch.manual_seed(3)
    feats, emb = torch.randn(2, L, C), torch.randn(2, 3, C)
    pos, valid, ratio = torch.tensor([[4, 9, 11], [6, 2, 0]]), torch.tensor([[True, True, True], [True, False, False]]), torch.rand(2)
    # at zero: the head it extends, to the bit
    assert torch.equal(direct.eval()(feats, emb, valid, ratio, pos), plain(feats, emb, valid, ratio, pos))
    with torch.no_grad():
        torch.nn.init.normal_(direct.token_at_position.weight)
    placed = direct.tokens_at_positions(emb, valid, pos, L)
    assert placed.shape == (2, L, C // direct.config.ratio)
    assert torch.allclose(placed[0, 9], direct.token_at_position(emb[0, 1]))
    assert torch.allclose(placed[1, 6], direct.token_at_position(emb[1, 0]))
    untouched = torch.ones(2, L, dtype=torch.bool)
    untouched[0, [4, 9, 11]] = untouched[1, 6] = False
    assert (placed[untouched] == 0).all()  # padded entries (row 1 at positions 2 and 0) add nothing
    assert not torch.equal(direct(feats, emb, valid, ratio, pos), plain(feats, emb, valid, ratio, pos))
    with pytest.raises(MigmError, match="needs the new tokens' positions"):
        direct(feats, emb, valid, ratio)


def test_the_direct_token_path_is_refused_for_the_published_networks(tiny_backbone):
    from migm_shortcut.shortcut import ShortcutHeadConfig
    import migm_shortcut.dimoo.shortcut_head  # noqa: F401  (registers the architecture)

    with pytest.raises(MigmError, match="direct_token_path is an option of the generic head"):
        ShortcutHead(ShortcutHeadConfig(architecture="dimoo-shortcut", width=64, direct_token_path=True))


def test_head_is_small_relative_to_the_base():
    base = MiniDiMOO(BackboneConfig(codebook_size=256, grid_size=14, width=192, depth=6, heads=3))
    assert ShortcutHead.for_base(base).num_parameters() <= base.num_parameters() / 10


def test_save_load_round_trip_and_fingerprint_check(tiny_backbone, tmp_path):
    head = random_head(tiny_backbone)
    head.save_pretrained(tmp_path / "head", dtype=torch.float32)
    loaded = ShortcutHead.from_pretrained(tmp_path / "head")
    assert loaded.config == head.config
    for a, b in zip(head.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    loaded.check_base(tiny_backbone)
    torch.manual_seed(1)
    other = MiniDiMOO(tiny_backbone.config).eval()  # same architecture, different weights
    with pytest.raises(MigmError, match="trained for base model"):
        loaded.check_base(other)
    wider = MiniDiMOO(BackboneConfig(codebook_size=16, grid_size=4, width=64, depth=1, heads=2))
    with pytest.raises(MigmError, match="width"):
        loaded.check_base(wider)


def test_head_with_wrong_feature_width_is_reported(tiny_backbone):
    head = random_head(tiny_backbone)
    with pytest.raises(MigmError, match="width"):
        head(torch.randn(1, 10, 7), torch.randn(1, 2, tiny_backbone.width), torch.ones(1, 2, dtype=torch.bool),
             torch.tensor([0.5]))


def test_shortcut_with_full_budget_equals_vanilla_exactly(tiny_backbone):
    seeds = [3, 4, 5]
    vanilla = MaskedTokenSampler(tiny_backbone, num_steps=6).generate(PROMPTS, seeds)
    policy = ShortcutPolicy(random_head(tiny_backbone), budget=6)
    fast = MaskedTokenSampler(tiny_backbone, num_steps=6, policy=policy).generate(PROMPTS, seeds)
    assert torch.equal(vanilla.codes, fast.codes)
    assert fast.full_steps.tolist() == [6, 6, 6]


def test_shortcut_runs_the_budget_and_is_deterministic(tiny_backbone):
    seeds = [3, 4, 5]
    head = random_head(tiny_backbone)
    calls = []
    head.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    make = lambda: MaskedTokenSampler(tiny_backbone, num_steps=8, policy=ShortcutPolicy(head, budget=3))
    a, b = make().generate(PROMPTS, seeds), make().generate(PROMPTS, seeds)
    assert torch.equal(a.codes, b.codes)
    assert a.full_steps.tolist() == [3, 3, 3]
    assert [bool(f[0]) for f in a.step_full] == [k in budget_full_steps(8, 3) for k in range(8)]
    assert calls == [2 * len(PROMPTS)] * (2 * 5)  # 5 shortcut steps per run, both CFG branches in one batch


def test_final_full_variant_places_a_full_last_step(tiny_backbone):
    policy = ShortcutPolicy(random_head(tiny_backbone), budget=3, final_full=True)
    out = MaskedTokenSampler(tiny_backbone, num_steps=8, policy=policy).generate(PROMPTS[:1], [0])
    assert [bool(f[0]) for f in out.step_full] == [k in (0, 4, 7) for k in range(8)]


def test_full_steps_places_the_backbone_passes_exactly(tiny_backbone):
    policy = ShortcutPolicy(random_head(tiny_backbone), full_steps=[0, 5, 6])
    out = MaskedTokenSampler(tiny_backbone, num_steps=8, policy=policy).generate(PROMPTS[:2], [0, 1])
    assert [bool(f[0]) for f in out.step_full] == [k in (0, 5, 6) for k in range(8)]
    assert out.full_steps.tolist() == [3, 3] and policy.describe()["budget"] == 3
    # every step full is vanilla sampling, token for token
    every = ShortcutPolicy(random_head(tiny_backbone), full_steps=list(range(8)))
    vanilla = MaskedTokenSampler(tiny_backbone, num_steps=8).generate(PROMPTS[:2], [0, 1])
    assert torch.equal(MaskedTokenSampler(tiny_backbone, num_steps=8, policy=every).generate(PROMPTS[:2], [0, 1]).codes,
                       vanilla.codes)


@pytest.mark.parametrize("kwargs,match", [
    ({"full_steps": [3, 5]}, "must include step 0"),
    ({"full_steps": [0, 8]}, "name step 8, but the sampler has 8 steps"),
    ({"full_steps": [0, 4], "budget": 3}, "budget 3 does not match the 2 full_steps"),
    ({"full_steps": [0, 4], "final_full": True}, "not both"),
    ({"full_steps": [0, -1]}, "step indices >= 0"),
])
def test_bad_full_steps_are_one_line(tiny_backbone, kwargs, match):
    with pytest.raises(MigmError, match=match):
        make_policy("shortcut", head=random_head(tiny_backbone), **kwargs).reset(1, 8)


def test_head_for_another_base_model_is_refused_by_the_sampler(tiny_backbone):
    torch.manual_seed(7)
    other = MiniDiMOO(tiny_backbone.config).eval()
    policy = ShortcutPolicy(random_head(other), budget=2)
    with pytest.raises(MigmError, match="trained for base model"):
        MaskedTokenSampler(tiny_backbone, num_steps=4, policy=policy).generate(PROMPTS[:1], [0])


def test_budget_larger_than_steps_is_refused(tiny_backbone):
    policy = make_policy("shortcut", head=random_head(tiny_backbone), budget=9)
    with pytest.raises(MigmError, match="budget must be between 1 and the number of steps \\(8\\)"):
        MaskedTokenSampler(tiny_backbone, num_steps=8, policy=policy).generate(PROMPTS[:1], [0])


def test_the_shipped_head_belongs_to_the_shipped_model_and_policies_need_one():
    from migm_shortcut import load_model
    from migm_shortcut.modeling import SHIPPED_WEIGHTS

    model = load_model()
    assert model.head_path == SHIPPED_WEIGHTS / "shortcut_head" and model.calibration_path == SHIPPED_WEIGHTS / "calibration.json"
    with pytest.raises(MigmError, match="needs a shortcut head and none was given"):
        ShortcutPolicy(budget=4)
    with pytest.raises(MigmError, match="needs a sensitivity calibration"):
        SenCachePolicy(eps=0.3)


class ExactButCheap(ShortcutPolicy):
    """The backbone's own features on every step, with some samples marked as on cheap steps:
    isolates what ``shortcut_guidance`` does to sampling from what the head does."""

    def __init__(self, head, cheap_samples, **kwargs):
        super().__init__(head, **kwargs)
        self.cheap_samples = cheap_samples

    def step(self, state):
        full = torch.ones(state.batch_size, dtype=torch.bool)
        full[self.cheap_samples] = False
        return StepOutput(state.backbone.features(state.input_ids), full, self.shortcut_guidance)


def test_shortcut_guidance_is_the_cfg_scale_of_exactly_the_cheap_samples(tiny_backbone):
    # Larger weights than the tiny model's init: its branches must disagree for the CFG scale to matter.
    sharp = copy.deepcopy(tiny_backbone)
    with torch.no_grad():
        for p in sharp.parameters():
            p.mul_(8)
    seeds, head = [3, 4, 5], random_head(sharp)
    at = lambda s: MaskedTokenSampler(sharp, num_steps=6, guidance_scale=s).generate(PROMPTS, seeds).codes
    usual, other = at(4.0), at(0.5)
    assert all(not torch.equal(usual[i], other[i]) for i in range(3))  # the scale matters here, so the checks can fail
    mixed = MaskedTokenSampler(sharp, num_steps=6, guidance_scale=4.0,
                         policy=ExactButCheap(head, [1], shortcut_guidance=0.5)).generate(PROMPTS, seeds).codes
    # sample 1 was on cheap steps throughout: sampled at s = 0.5; samples 0 and 2 paid for full steps: s = 4
    assert torch.equal(mixed[1], other[1])
    assert torch.equal(mixed[0], usual[0]) and torch.equal(mixed[2], usual[2])
    unset = MaskedTokenSampler(sharp, num_steps=6, guidance_scale=4.0,
                         policy=ExactButCheap(head, [0, 1, 2])).generate(PROMPTS, seeds).codes
    assert torch.equal(unset, usual)  # not set: cheap steps are guided like full ones


def test_shortcut_guidance_applies_on_shortcut_steps_only(tiny_backbone):
    seeds = [3, 4, 5]
    head = random_head(tiny_backbone)
    run = lambda policy: MaskedTokenSampler(tiny_backbone, num_steps=8, policy=policy).generate(PROMPTS, seeds).codes
    assert torch.equal(run(ShortcutPolicy(head, budget=8, shortcut_guidance=20.0)),
                       MaskedTokenSampler(tiny_backbone, num_steps=8).generate(PROMPTS, seeds).codes)  # no shortcut step
    assert torch.equal(run(ShortcutPolicy(head, budget=3, shortcut_guidance=4.0)), run(ShortcutPolicy(head, budget=3)))
    other = ShortcutPolicy(head, budget=3, shortcut_guidance=20.0)
    assert not torch.equal(run(other), run(ShortcutPolicy(head, budget=3)))
    assert other.describe()["shortcut_guidance"] == 20.0 and "shortcut_guidance" not in ShortcutPolicy(head).describe()


@pytest.mark.parametrize("policy", ["shortcut", "adaptive"])
@pytest.mark.parametrize("value", [-1.0, float("nan"), "2", True])
def test_bad_shortcut_guidance_is_one_line(tiny_backbone, policy, value):
    with pytest.raises(MigmError, match="shortcut_guidance must be a number >= 0"):
        make_policy(policy, head=random_head(tiny_backbone), shortcut_guidance=value)


def published_refresh_steps(step: int, budget: int) -> list[int]:
    """The full steps as MIGM-Shortcut's ``sample_shortcut`` / DiMOO generator compute them (their order of
    operations, written out here): a boolean mask over the steps, read back as indices."""
    refresh = [False] * step
    refresh[0] = True
    left_budget, left_timesteps, this_refresh_step = budget - 1, step - 1, 0
    for k in range(1, left_budget + 1):
        this_refresh_step = max(this_refresh_step + 1, round((left_timesteps + 1) * (k / (left_budget + 1))))
        refresh[this_refresh_step] = True
    assert sum(refresh) == budget
    return [i for i, full in enumerate(refresh) if full]


def test_the_placement_is_the_published_refresh_steps_for_every_n_and_b():
    mismatched = [(n, b) for n in range(2, 65) for b in range(2, n + 1)
                  if budget_full_steps(n, b) != published_refresh_steps(n, b)]
    assert mismatched == []
    assert budget_full_steps(45, 10) == [0, 4, 9, 14, 18, 22, 27, 31, 36, 40]  # where N * k / B would give 32
