"""The model interface and its three implementations: embedded, aMUSEd (UVit2D + pipeline hook), Lumina-DiMOO."""

import pytest
import torch
from diffusers import AmusedPipeline, AmusedScheduler
from torch import nn

from migm_shortcut import MigmError, ShortcutHead
from migm_shortcut.amused.model import AmusedBackbone, AmusedConfig, UVit2DFeatures
from migm_shortcut.dimoo.model import LLaDAImageBackbone, LLaDAImageLayout
from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO
from migm_shortcut.eval.cost import bench_cost
from migm_shortcut.amused.hook import disable_shortcut, enable_shortcut
from migm_shortcut.schedule import amused_masked_counts
from migm_shortcut.embedded.model import load_backbone
from migm_shortcut.interface import MaskedImageModel, check_model
from migm_shortcut.samplers import MaskedTokenSampler, ShortcutPolicy
from migm_shortcut.shortcut import new_tokens
from migm_shortcut.embedded.tokenizer import VQTokenizer
from migm_shortcut.embedded.prompts import WORDS
from migm_shortcut.train.base import masked_token_batch, prompt_variants
from tiny_dimoo import tiny_llada, tiny_tokenizer

def tiny_dimoo(**overrides) -> LLaDAImageBackbone:
    """A random model with Lumina-DiMOO's classes and vocabulary, 32 x 48 pixel images (2 x 3 tokens)."""
    return LLaDAImageBackbone(tiny_llada(**overrides), LLaDAImageLayout.for_dimoo(tiny_tokenizer(), 32, 48, prompt_len=24))


TINY_AMUSED = dict(words=list(WORDS), width=32, hidden_size=32, block_out_channels=32, num_hidden_layers=1,
                   num_attention_heads=2, intermediate_size=64, block_num_heads=2, micro_cond_encode_dim=8, grid_size=6)


def tiny_amused(seed: int = 0) -> AmusedBackbone:
    torch.manual_seed(seed)
    return AmusedBackbone(AmusedConfig(**TINY_AMUSED)).eval()


def random_head(backbone, seed: int = 1) -> ShortcutHead:
    torch.manual_seed(seed)
    head = ShortcutHead.for_base(backbone, ratio=2, heads=2)
    for p in head.parameters():  # not the zero-initialised copy predictor: every path must matter
        nn.init.normal_(p, std=0.05)
    return head.eval()


@pytest.fixture(scope="module")
def models():
    return {"embedded": MiniDiMOO(BackboneConfig(width=32, depth=1, heads=2, grid_size=4)).eval(),
            "amused": tiny_amused(), "dimoo": tiny_dimoo()}


# -- the interface ---------------------------------------------------------------------------
def test_every_model_implements_the_interface(models):
    for model in models.values():
        assert isinstance(model, MaskedImageModel)
        check_model(model)
        lay = model.layout
        ids = lay.template(torch.stack([lay.encode_prompt("a bag"), lay.encode_prompt(None)]))
        h = model.features(ids)
        assert h.shape == (2, lay.seq_len, model.width)
        assert model.logits_from_features(h[:, lay.image_positions]).shape == (2, lay.num_image_tokens, lay.codebook_size)


def test_a_non_model_is_named_with_what_it_lacks():
    with pytest.raises(MigmError, match="missing .*layout"):
        check_model(nn.Linear(2, 2))


def test_new_tokens_without_prompt_give_every_branch_the_image_tokens():
    image_ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    newly = torch.tensor([[True, False, True], [False, False, False]])
    t = new_tokens(image_ids, newly, torch.tensor([3, 4, 5]), None, 0, num_branches=2)
    assert t.ids.shape[0] == 4
    assert torch.equal(t.ids[:2], t.ids[2:]) and torch.equal(t.valid[:2], t.valid[2:])
    assert t.ids[0, :2].tolist() == [5, 7] and t.valid[1].sum() == 0


# -- aMUSEd ----------------------------------------------------------------------------------
def test_amused_features_are_the_last_norm_output_and_give_the_models_own_logits(models):
    model = models["amused"]
    lay = model.layout
    seq = lay.template(torch.stack([lay.encode_prompt("a bag")] * 2))
    codes = torch.randint(0, model.config.codebook_size, (2, lay.num_image_tokens))
    seq = lay.with_codes(seq, codes, torch.rand(2, lay.num_image_tokens) < 0.5)
    seen = []
    handle = model.transformer.mlm_layer.layer_norm.register_forward_hook(lambda m, i, o: seen.append(o))
    prompt_ids, uvit_ids = model.split(seq)
    logits = model.transformer(uvit_ids, **model.conditioning(prompt_ids))
    handle.remove()
    h = model.features(seq)
    image = h[:, lay.image_positions]
    assert torch.allclose(image, seen[0].flatten(1, 2))
    assert torch.allclose(model.logits_from_features(image), logits.flatten(2).transpose(1, 2), atol=1e-5)
    assert torch.allclose(h[:, : lay.prompt_len], model.conditioning(prompt_ids)["encoder_hidden_states"])


def test_amused_round_trip_and_fingerprint(tmp_path, models):
    model = models["amused"]
    model.save_pretrained(tmp_path / "backbone", dtype=torch.float32)
    loaded = load_backbone(tmp_path / "backbone")
    assert isinstance(loaded, AmusedBackbone) and loaded.fingerprint == model.fingerprint
    head = random_head(model)
    head.check_base(loaded)
    with pytest.raises(MigmError, match="trained for base model"):
        head.check_base(tiny_amused(seed=5))


def test_amused_training_batch_has_no_delimiters(models):
    model = models["amused"]
    lay = model.layout
    codes = torch.randint(0, model.config.codebook_size, (3, lay.num_image_tokens))
    ids, mask = masked_token_batch(lay, codes, torch.tensor([0, 1, 2]), prompt_variants(lay), torch.Generator().manual_seed(0))
    image = ids[:, lay.image_positions]
    assert ids.shape == (3, lay.prompt_len + lay.num_image_tokens)
    assert torch.equal(image[~mask], codes[~mask] + lay.code_offset) and (image[mask] == 1).all()


@pytest.mark.parametrize("name", ["amused", "dimoo"])
def test_shortcut_with_full_budget_equals_vanilla_on_adapters(models, name):
    model = models[name]
    prompts, seeds = ["a bag", "a coat", "a shirt"], [0, 1, 2]
    vanilla = MaskedTokenSampler(model, num_steps=5).generate(prompts, seeds)
    full = MaskedTokenSampler(model, num_steps=5, policy=ShortcutPolicy(random_head(model), budget=5)).generate(prompts, seeds)
    cheap = MaskedTokenSampler(model, num_steps=5, policy=ShortcutPolicy(random_head(model), budget=2)).generate(prompts, seeds)
    assert torch.equal(vanilla.codes, full.codes)
    assert cheap.full_steps.tolist() == [2, 2, 2]


# -- the diffusers pipeline hook ------------------------------------------------------------------
def prompt_kwargs(backbone, prompts: list[str]) -> dict:
    """The pipeline's text inputs precomputed by the backbone's prompt encoder (no CLIP in this pipeline)."""
    layout = backbone.layout
    with torch.no_grad():
        cond = backbone.conditioning(torch.stack([layout.encode_prompt(p) for p in prompts]))
        uncond = backbone.conditioning(torch.stack([layout.encode_prompt(None)] * len(prompts)))
    return dict(prompt_embeds=cond["pooled_text_emb"], encoder_hidden_states=cond["encoder_hidden_states"],
                negative_prompt_embeds=uncond["pooled_text_emb"], negative_encoder_hidden_states=uncond["encoder_hidden_states"])


@pytest.fixture(scope="module")
def pipeline():
    model = tiny_amused()
    vq = VQTokenizer.new().model  # untrained: only the token loop is exercised (output_type="latent")
    pipe = AmusedPipeline(vqvae=vq, tokenizer=None, text_encoder=None, transformer=model.transformer,
                          scheduler=AmusedScheduler(mask_token_id=model.uvit.mask_token_id))
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt_kwargs(model, ["a bag", "a coat"]), output_type="latent", guidance_scale=3.0)
    return model, pipe, kwargs


def _run(pipe, kwargs, steps, seed=0):
    with torch.no_grad():
        return pipe(num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), **kwargs).images


def test_hook_with_full_budget_leaves_the_pipeline_unchanged(pipeline):
    model, pipe, kwargs = pipeline
    before = _run(pipe, kwargs, 6)
    hook = enable_shortcut(model.transformer, random_head(model), budget=6, num_steps=6)
    try:
        assert torch.equal(_run(pipe, kwargs, 6), before)
        assert hook.full_calls == 6 and hook.shortcut_calls == 0
    finally:
        disable_shortcut(model.transformer)
    assert torch.equal(_run(pipe, kwargs, 6), before)  # disabled: the transformer's own forward again


def test_hook_runs_the_transformer_exactly_budget_times_per_generation(pipeline):
    model, pipe, kwargs = pipeline
    passes = []
    counter = model.transformer.embed.register_forward_hook(lambda *a: passes.append(1))
    enable_shortcut(model.transformer, random_head(model), budget=3, num_steps=8)
    try:
        for seed in (0, 1):  # state resets between generations
            passes.clear()
            out = _run(pipe, kwargs, 8, seed)
            assert len(passes) == 3
            assert (out != model.uvit.mask_token_id).all()
    finally:
        disable_shortcut(model.transformer)
        counter.remove()


def test_hook_bad_uses_fail_with_one_line(pipeline):
    model, pipe, kwargs = pipeline
    head = random_head(model)
    with pytest.raises(MigmError, match="not enabled"):
        disable_shortcut(model.transformer)
    with pytest.raises(MigmError, match="UVit2DModel"):
        enable_shortcut(nn.Linear(2, 2), head, budget=2, num_steps=4)
    with pytest.raises(MigmError, match="trained for base model"):
        enable_shortcut(model.transformer, random_head(tiny_amused(seed=7)), budget=2, num_steps=4)
    with pytest.raises(MigmError, match="budget must be between 1"):
        enable_shortcut(model.transformer, head, budget=9, num_steps=8)
    enable_shortcut(model.transformer, head, budget=2, num_steps=8)
    try:
        with pytest.raises(MigmError, match="already enabled"):
            enable_shortcut(model.transformer, head, budget=2, num_steps=8)
        with pytest.raises(MigmError, match="different number of steps"):
            _run(pipe, kwargs, 5)
        assert _run(pipe, kwargs, 8).shape == (2, 6, 6)  # a fresh generation after the error
    finally:
        disable_shortcut(model.transformer)


def test_cosine_counts_follow_the_amused_scheduler():
    from diffusers import AmusedScheduler

    sched = AmusedScheduler(mask_token_id=9)
    sched.set_timesteps(7)
    sample = torch.full((1, 36), 9)
    seen = []
    for t in sched.timesteps[:-1]:
        sample = sched.step(torch.randn(1, 36, 8), t, sample, generator=torch.Generator().manual_seed(0)).prev_sample
        seen.append(int((sample == 9).sum()))
    assert seen == amused_masked_counts(36, 7)


# -- Lumina-DiMOO (a stand-in with the published classes' names, signatures and padding) -------------
@pytest.mark.parametrize("tied", [False, True])
def test_dimoo_features_equal_the_published_batch_one_forward_of_each_row(tied):
    backbone = tiny_dimoo(weight_tying=tied, scale_logits=tied)
    lay = backbone.layout
    prompts = [lay.encode_prompt("a bag"), lay.encode_prompt("a photo of a small red dog over green hills"),
               lay.encode_prompt(None)]
    seq = lay.template(torch.stack(prompts))
    seq = lay.with_codes(seq, torch.randint(0, lay.codebook_size, (3, lay.num_image_tokens)),
                         torch.rand(3, lay.num_image_tokens) < 0.5)
    h = backbone.features(seq)
    assert h.shape == (3, lay.seq_len, backbone.width)
    for row in range(3):
        # DiMOO's own loop: one unpadded sequence at a time, through the published top-level forward
        pad = int((seq[row, : lay.prompt_len] == lay.pad_id).sum())
        output, _ = backbone.model(seq[row : row + 1, pad:], infer=True)
        own = output.logits[0, lay.image_positions - pad, lay.code_offset : lay.vocab_size]
        mine = backbone.logits_from_features(h[row, lay.image_positions])
        assert torch.allclose(mine, own, atol=1e-5)
        assert bool((h[row, :pad] == 0).all())


def test_prompts_of_different_lengths_run_as_one_forward_per_step_with_the_padding_masked():
    from migm_shortcut.samplers import MaskedTokenSampler

    backbone = tiny_dimoo()
    words = "a photo of a small red dog over green hills".split()
    prompts = [" ".join(words[: n + 1]) for n in range(8)]  # 8 prompts of 8 token lengths
    calls = []
    handle = backbone.llada.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape)))
    try:
        out = MaskedTokenSampler(backbone, num_steps=4).generate(prompts, seeds=list(range(8)))
    finally:
        handle.remove()
    assert len(calls) == 4 and calls[0][0] == 16  # one forward per step, both CFG branches of all 8 rows in it
    assert not any("_scaled_dot_product_attention" in vars(block) for block in backbone._blocks)  # the hook is gone
    # each sample as it samples alone (its own batch-1 forwards)
    alone = MaskedTokenSampler(backbone, num_steps=4).generate(prompts[5:6], seeds=[5])
    assert torch.equal(alone.codes[0], out.codes[5])


def test_the_published_forward_cannot_take_an_attention_mask_and_the_adapter_never_passes_one():
    backbone = tiny_dimoo()
    lay = backbone.layout
    seq = lay.template(torch.stack([lay.encode_prompt("a bag"), lay.encode_prompt(None)]))
    with pytest.raises(TypeError, match="multiple values for keyword argument 'attention_mask'"):
        backbone.model(seq, infer=True, attention_mask=torch.ones_like(seq))
    # its attention ignores masks: padding inside a sequence changes the features, so the adapter strips it
    padded, _ = backbone.model.model(seq[:1], attention_mask=(seq[:1] != lay.pad_id).long())
    unpadded = backbone.logits_from_features(backbone.features(seq[:1])[:, lay.image_positions])
    assert not torch.allclose(padded.logits[:, lay.image_positions, lay.code_offset:], unpadded, atol=1e-4)


def test_dimoo_layout_follows_the_published_sequence():
    tok = tiny_tokenizer()
    lay = LLaDAImageLayout.for_dimoo(tok, height=32, width=48, prompt_len=24)
    assert lay.grid_shape == (2, 3) and lay.num_image_tokens == 6
    seq = lay.template(lay.encode_prompt("a red cube")[None])[0].tolist()
    text = "<system>Generate an image according to the text prompt.</system><user>a red cube</user>"
    ids = tok(text)["input_ids"]
    pad = lay.prompt_len - len(ids)
    m, nl = 126336, 126084
    assert seq == [lay.pad_id] * pad + ids + [126354, 126349] + [m, m, m, nl] * 2 + [126350, 126355]
    uncond = lay.template(lay.encode_prompt(None)[None])[0].tolist()
    assert tok(text.replace("a red cube", "<uncondition>"))["input_ids"] == [i for i in uncond[: lay.prompt_len] if i != lay.pad_id]
    assert 126351 in uncond


def test_dimoo_layout_refuses_bad_sizes_and_long_prompts():
    tok = tiny_tokenizer()
    with pytest.raises(MigmError, match="multiple of 16"):
        LLaDAImageLayout.for_dimoo(tok, height=100, width=64)
    lay = LLaDAImageLayout.for_dimoo(tok, height=32, width=32, prompt_len=24)
    with pytest.raises(MigmError, match="at most 24 fit"):
        lay.encode_prompt("a red cube " * 10)
    with pytest.raises(MigmError, match="text prompts"):
        lay.encode_prompt(3)


def test_dimoo_adapter_rejects_other_models():
    with pytest.raises(MigmError, match="not an LLaDA-style model"):
        LLaDAImageBackbone(nn.Linear(2, 2), tiny_dimoo().layout)


# -- bench-cost ------------------------------------------------------------------------------
def test_bench_cost_reports_c_and_the_ideal_speedup():
    (row,) = bench_cost(["embedded"], device="cpu", num_steps=16, budgets=(4, 16), repeats=1, log=lambda *_: None)
    assert 0 < row["c"] < 1 and 0 < row["c_flops"] < 1
    assert row["ideal_speedup"]["16"] == 1.0
    assert row["ideal_speedup"]["4"] == round(16 / (4 + 12 * row["c"]), 2)
    with pytest.raises(MigmError, match="choose from"):
        bench_cost(["sd3"], device="cpu")
    with pytest.raises(MigmError, match="budget must be between 1"):
        bench_cost(["embedded"], device="cpu", budgets=(17,))


def test_uvit_features_adapter_rejects_other_models():
    with pytest.raises(MigmError, match="UVit2DModel"):
        UVit2DFeatures(nn.Linear(2, 2))


def test_the_shipped_amused_pipeline_is_a_real_pipeline_folder_with_its_own_head():
    from diffusers import AmusedPipeline

    from migm_shortcut import load_model
    from migm_shortcut.amused.model import AmusedPipelineModel
    from migm_shortcut.modeling import SHIPPED_WEIGHTS
    from migm_shortcut.samplers import load_head

    folder = SHIPPED_WEIGHTS / "amused_pipeline"
    # the tokenizer files of the published aMUSEd folders: transformers before 5 reads only these two
    assert {"vocab.json", "merges.txt", "tokenizer.json"} <= {p.name for p in (folder / "tokenizer").iterdir()}
    pipe = AmusedPipeline.from_pretrained(str(folder))  # as a user loads it: default dtypes, every component
    assert pipe.vqvae.config.lookup_from_codebook
    pipe.set_progress_bar_config(disable=True)
    image = pipe(["a photo of a bag"], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (28, 28)
    model = load_model(folder)
    assert isinstance(model, AmusedPipelineModel) and model.head_path == folder / "shortcut_head"
    head = load_head(model.head_path)
    head.check_base(model.backbone)
    assert head.num_parameters() * 10 <= model.backbone.num_parameters()
    with pytest.raises(MigmError, match="train a head for this model"):
        load_head(SHIPPED_WEIGHTS / "shortcut_head").check_base(model.backbone)  # the embedded model's head refuses the UVit
