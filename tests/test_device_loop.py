"""The sampling loop stays on the model's device: no per-step host synchronisation, and the same
seed gives the same tokens whatever the batch, on CPU and (when present) on CUDA."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from migm_shortcut.samplers import MaskedTokenSampler, FixedIntervalPolicy, MLCachePolicy, ShortcutPolicy, VanillaPolicy

from test_shortcut import PROMPTS, random_head

FOUR = PROMPTS + ["a photo of a dress"]

# Ops that make the host wait for the device: reading a value back (item, bool, int, tolist) and
# ops whose output shape depends on the data (nonzero, boolean-mask indexing, unique).
SYNCING = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
           "aten._unique2.default", "aten.unique_dim.default", "aten.unique_consecutive.default"}


class SyncCounter(TorchDispatchMode):
    """Counts syncing ops, and copies from a device to the CPU."""

    def __init__(self):
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        if name in SYNCING:
            self.syncs.append(name)
        if name in ("aten._to_copy.default", "aten.copy_.default"):
            source = args[1] if name == "aten.copy_.default" else args[0]
            target = kwargs.get("device") if name == "aten._to_copy.default" else args[0].device
            if isinstance(source, torch.Tensor) and source.device.type != "cpu" and target is not None \
                    and torch.device(target).type == "cpu":
                self.syncs.append(f"{name} to cpu")
        return func(*args, **kwargs)


def syncs_in_generate(backbone, policy, num_steps: int) -> list[str]:
    sampler = MaskedTokenSampler(backbone, num_steps=num_steps, policy=policy)
    sampler.generate(PROMPTS[:2], [0, 1])  # warm-up outside the counter
    with SyncCounter() as counter:
        sampler.generate(PROMPTS[:2], [0, 1])
    return counter.syncs


def policies(backbone):
    head = random_head(backbone)
    return {"vanilla": lambda: VanillaPolicy(), "shortcut": lambda: ShortcutPolicy(head, budget=2),
            "fixed": lambda: FixedIntervalPolicy(interval=2),
            "mlcache": lambda: MLCachePolicy(warmup=0.25, interval=2, recompute=0.25)}


@pytest.mark.parametrize("name", ["vanilla", "shortcut", "fixed", "mlcache"])
def test_no_step_waits_for_the_device(tiny_backbone, name):
    make = policies(tiny_backbone)[name]
    short, long = syncs_in_generate(tiny_backbone, make(), 4), syncs_in_generate(tiny_backbone, make(), 12)
    # whatever happens once per generation (the final NaN check) may stay; nothing may scale with N
    assert len(short) <= 1 and long == short, (short, long)



@pytest.mark.parametrize("device", [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_same_seed_same_tokens_whatever_the_batch(tiny_backbone, device):
    backbone = tiny_backbone.to(device)
    try:
        for make in (lambda: VanillaPolicy(), lambda: ShortcutPolicy(random_head(tiny_backbone).to(device), budget=3)):
            sampler = MaskedTokenSampler(backbone, num_steps=6, policy=make())
            together = sampler.generate(FOUR, [5, 6, 7, 8]).codes
            again = sampler.generate(FOUR, [5, 6, 7, 8]).codes
            alone = torch.cat([sampler.generate([p], [s]).codes for p, s in zip(FOUR, [5, 6, 7, 8])])
            reordered = sampler.generate(FOUR[::-1], [8, 7, 6, 5]).codes.flip(0)
            assert torch.equal(together, again)
            assert torch.equal(together, alone) and torch.equal(together, reordered)
    finally:
        tiny_backbone.to("cpu")


def test_the_compiled_step_samples_the_same_tokens(tiny_backbone):
    # torch.compile of the per-step math is an option (off by default): it must not change the samples
    eager = MaskedTokenSampler(tiny_backbone, num_steps=5, policy=VanillaPolicy())
    compiled = MaskedTokenSampler(tiny_backbone, num_steps=5, policy=VanillaPolicy(), compile_step=True)
    seeds = [3, 4, 5, 6]
    assert torch.equal(eager.generate(FOUR, seeds).codes, compiled.generate(FOUR, seeds).codes)


def test_non_finite_logits_are_refused_after_the_loop(tiny_backbone):
    from migm_shortcut.errors import MigmError

    sampler = MaskedTokenSampler(tiny_backbone, num_steps=3, policy=VanillaPolicy())
    original = tiny_backbone.logits_from_features
    tiny_backbone.logits_from_features = lambda *a, **k: original(*a, **k).index_fill(-1, torch.tensor([3]), float("nan"))
    try:
        with pytest.raises(MigmError, match="non-finite logits"):
            sampler.generate(PROMPTS[:2], [0, 1])
    finally:
        del tiny_backbone.logits_from_features


def test_noise_drawn_once_per_generation_is_the_step_by_step_stream():
    # StepNoise draws every step's uniforms in one call per sample; on CPU a generator's stream does
    # not depend on how it is split into calls, so the tokens are those of drawing at each step.
    from migm_shortcut.samplers.sampler import StepNoise, gumbel

    masked_per_step = [16, 11, 5, 0]
    noise = StepNoise([torch.Generator().manual_seed(s) for s in (3, 4)], masked_per_step, torch.device("cpu"))
    generators = [torch.Generator().manual_seed(s) for s in (3, 4)]
    for k, m in enumerate(masked_per_step):
        drawn = torch.stack([torch.rand(2 * m, generator=g) for g in generators])
        token_uniform, rank_gumbel = noise.step(k)
        assert torch.equal(token_uniform, drawn[:, :m])
        assert torch.equal(rank_gumbel, gumbel(drawn[:, m:]))


def test_selecting_rows_equals_gather():
    from migm_shortcut.samplers.sampler import select_rows

    features = torch.randn(4, 9, 5)
    positions = torch.randint(0, 9, (4, 6))
    expected = features.gather(1, positions[..., None].expand(-1, -1, 5))
    assert torch.equal(select_rows(features, positions), expected)


def test_committing_into_the_sequence_equals_rewriting_it_with_codes(tiny_backbone):
    from migm_shortcut.sequence import write_committed

    layout, branches, batch = tiny_backbone.layout, 2, 3
    sampler = MaskedTokenSampler(tiny_backbone)
    seq = sampler.initial_sequences(PROMPTS[:batch])
    codes = torch.zeros(batch, layout.num_image_tokens, dtype=torch.long)
    committed = torch.zeros(batch, layout.num_image_tokens, dtype=torch.bool)
    order = torch.stack([torch.randperm(layout.num_image_tokens, generator=torch.Generator().manual_seed(i))
                         for i in range(batch)])
    for start in range(0, layout.num_image_tokens, 5):  # commit 5 tokens a step, as the sampler does
        index = order[:, start:start + 5].sort(1).values
        new = torch.randint(layout.codebook_size, index.shape)
        seq = write_committed(layout, seq, layout.image_positions[index], new, branches)
        codes.scatter_(1, index, new)
        committed.scatter_(1, index, True)
        expected = layout.with_codes(sampler.initial_sequences(PROMPTS[:batch]), torch.cat([codes] * branches),
                                     torch.cat([committed] * branches))
        assert torch.equal(seq, expected)


def test_step_state_builds_its_masks_from_the_indices(tiny_backbone):
    from migm_shortcut.samplers import StepState

    n = tiny_backbone.layout.num_image_tokens
    still, newly = torch.tensor([[1, 4, 7], [0, 2, 3]]), torch.tensor([[0, 2], [5, 6]])
    state = StepState(step=1, num_steps=4, backbone=tiny_backbone, input_ids=torch.zeros(4, 1, dtype=torch.long),
                      num_branches=2, prev_features=None, masked_index=still, mask_ratio=torch.full((2,), 3 / n),
                      num_newly=2, newly_index=newly)
    assert state.batch_size == 2
    assert state.masked.shape == (2, n) and state.masked.sum().item() == 6
    assert state.masked[0, [1, 4, 7]].all() and state.masked[1, [0, 2, 3]].all()
    assert torch.equal(state.newly_committed.nonzero(), torch.tensor([[0, 0], [0, 2], [1, 5], [1, 6]]))
    assert torch.equal(state.subset(torch.tensor([1])).masked, state.masked[1:])


def test_embedded_model_cast_to_bf16_keeps_its_shipped_head():
    # A head records the fingerprint of its base's weights as saved; a bf16 copy of fp16 weights
    # hashes differently, so a cast taken before the fingerprint made the shipped head refuse its base.
    from migm_shortcut.registry import load_model
    from migm_shortcut.samplers import load_head

    model = load_model(dtype=torch.bfloat16)
    assert model.backbone.lm_head.weight.dtype == torch.bfloat16
    load_head(model.head_path).check_base(model.backbone)
