"""The authors' DiMOO-Shortcut head: imported from the released ``.pth`` layout, it computes what the
published module computes (fp32 and bf16 autocast), the sampler with it matches the published inference
loop token for token, and files that do not fit are refused in one line. The published module and
loop are test stand-ins written from the published code (tests/dimoo_shortcut_standin.py,
tests/published_dimoo_loop.py); the base is a tiny random Lumina-DiMOO in its real folder format."""

import pytest
import torch

from migm_shortcut import MigmError, ShortcutHead, load_model
from migm_shortcut.released_heads import import_head
from migm_shortcut.rules import DiMOORule
from migm_shortcut.samplers import MaskedTokenSampler, ShortcutPolicy
from migm_shortcut.samplers.sampler import StepNoise
from migm_shortcut.shortcut import ShortcutHeadConfig, default_heads, new_tokens, shortcut_step

from cli_route import run
from dimoo_shortcut_standin import random_mdm_shortcut
from published_dimoo_loop import published_shortcut_loop
from tiny_dimoo import write_tiny_dimoo

PROMPTS = ["a red cube", "a photo of a small dog over green hills"]


@pytest.fixture(scope="module")
def dimoo(tmp_path_factory):
    folder = write_tiny_dimoo(tmp_path_factory.mktemp("dimoo") / "Lumina-DiMOO")
    return load_model(folder, trust_remote_code=True, height=64, width=64)


@pytest.fixture(scope="module")
def released(dimoo, tmp_path_factory):
    """The stand-in of the published module, and its state dict saved as the released file is."""
    published = random_mdm_shortcut(dimoo.backbone.model.config)
    path = tmp_path_factory.mktemp("released") / "dimoo-shortcut.pth"
    torch.save(published.state_dict(), path)
    return published, path


def unpadded(backbone, ids_row: torch.Tensor) -> int:
    """How many left-padding positions a row has (the base never sees them)."""
    return int((~backbone.feature_valid(ids_row[None, : backbone.layout.prompt_len]))[0].sum())


def test_an_imported_head_computes_what_the_published_module_computes(dimoo, released, tmp_path):
    published, path = released
    head = import_head(path, dimoo, tmp_path / "imported")
    assert type(head).__name__ == "DiMOOShortcutHead" and head.config.heads == 2 and head.config.mlp_hidden == 32
    assert head.config.base_fingerprint == dimoo.backbone.fingerprint
    assert ShortcutHead.from_pretrained(tmp_path / "imported").config == head.config
    backbone, lay = dimoo.backbone, dimoo.backbone.layout
    # a CFG batch of two prompts of different lengths: conditional rows, then unconditional rows
    cond = torch.stack([lay.encode_prompt(p) for p in PROMPTS])
    uncond = torch.stack([lay.encode_prompt(None)] * 2)
    seq = lay.template(torch.cat([cond, uncond]))
    torch.manual_seed(0)
    codes = torch.randint(0, lay.codebook_size, (2, lay.num_image_tokens))
    commit_step = torch.stack([torch.randperm(lay.num_image_tokens) % 4 for _ in range(2)])  # committed at steps 0..3
    both = lambda t: torch.cat([t, t])  # noqa: E731
    features = backbone.features(lay.with_codes(seq, both(codes), both(commit_step) < 1))  # before step 1's commit
    seq = lay.with_codes(seq, both(codes), both(commit_step) <= 1)  # after it
    newly = commit_step == 1
    tokens = new_tokens(codes + lay.code_offset, newly, lay.image_positions, cond, lay.pad_id, 2,
                        feature_valid=backbone.feature_valid(seq[:, : lay.prompt_len]))
    ratio = torch.tensor([0.5, 0.5, 0.5, 0.5])
    with torch.no_grad():
        ours = shortcut_step(head, backbone, features, tokens, ratio)
        for row in range(4):
            n = unpadded(backbone, seq[row])
            row_seq = seq[row, n:]
            token_map = torch.zeros(len(row_seq), dtype=torch.bool)
            if row < 2:  # the conditional branch sees its whole prompt, as published
                token_map[: lay.prompt_len - n] = True
            token_map[lay.image_positions[newly[row % 2]] - n] = True
            new = backbone.transformer["wte"](row_seq[token_map])[None]
            expected = published(features[row : row + 1, n:], new, token_map[None], ratio[:1])
            torch.testing.assert_close(ours[row : row + 1, n:], expected, atol=1e-5, rtol=1e-5)
            assert torch.equal(ours[row, :n], features[row, :n])  # the padding passes through
        # bf16, as published: fp32 weights under bf16 autocast on the base's bf16 features
        ours_bf16 = shortcut_step(head.place(torch.device("cpu"), torch.bfloat16), backbone, features.bfloat16(), tokens, ratio)
        assert head.adaLN_modulation.weight.dtype == torch.float32 and ours_bf16.dtype == torch.bfloat16
        n = unpadded(backbone, seq[0])
        token_map = torch.zeros(lay.seq_len - n, dtype=torch.bool)
        token_map[: lay.prompt_len - n] = True
        token_map[lay.image_positions[newly[0]] - n] = True
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = published(features[:1, n:].bfloat16(), backbone.transformer["wte"](seq[0, n:][token_map])[None].bfloat16(),
                                 token_map[None], ratio[:1])
    scale = expected.float().abs().max()
    assert (ours_bf16[:1, n:].float() - expected.float()).abs().max() <= 2 ** -7 * scale  # bf16's own rounding


def test_the_sampler_with_an_imported_head_matches_the_published_loop_token_for_token(dimoo, released, tmp_path):
    published, path = released
    head = import_head(path, dimoo, tmp_path / "imported")
    backbone, lay = dimoo.backbone, dimoo.backbone.layout
    steps, budget, cfg, temperature, seeds = 8, 3, 4.0, 1.0, [3, 11]
    sampler = MaskedTokenSampler(backbone, num_steps=steps, guidance_scale=cfg, temperature=temperature,
                                 policy=ShortcutPolicy(head, budget=budget), rule=DiMOORule())
    out = sampler.generate(PROMPTS, seeds=seeds)
    assert out.full_steps.tolist() == [budget, budget]
    vanilla = MaskedTokenSampler(backbone, num_steps=steps, guidance_scale=cfg, temperature=temperature,
                                 rule=DiMOORule()).generate(PROMPTS, seeds=seeds)
    assert not torch.equal(vanilla.codes, out.codes)  # the head's predictions decide tokens here
    masked_per_step = [lay.num_image_tokens, *sampler.schedule[:-1]]
    image = lay.image_positions
    for prompt, seed, codes in zip(PROMPTS, seeds, out.codes):
        cond = lay.encode_prompt(prompt)
        n = int((cond == lay.pad_id).sum())
        row = lay.template(cond[None])[:, n:]  # the published sequence: no padding
        uncon = lay.encode_prompt(None)
        uncon = uncon[int((uncon == lay.pad_id).sum()):][None]
        noise = StepNoise([torch.Generator().manual_seed(seed)], masked_per_step, torch.device("cpu"))
        final = published_shortcut_loop(backbone.model, published, row, uncon, code_start=int(image[0]) - n,
                                        timesteps=steps, cfg_scale=cfg, temperature=temperature, budget=budget,
                                        noise=noise, mask_id=lay.mask_id, vocab_offset=lay.code_offset,
                                        codebook_size=lay.codebook_size)
        assert torch.equal(final[0, image - n] - lay.code_offset, codes.flatten())


def test_dimoo_loads_with_the_published_head_architecture_at_the_bases_sizes(dimoo):
    assert dimoo.head_architecture == "dimoo-shortcut"
    options = dimoo.head_options
    assert options == {"ratio": 2, "num_blocks": 1, "heads": 2, "mlp_hidden": 32, "rope_theta": 500000.0, "norm_eps": 1e-5}
    head = ShortcutHead.for_base(dimoo.backbone, architecture="dimoo-shortcut", **options)
    assert type(head).__name__ == "DiMOOShortcutHead"
    # untrained, it is the copy predictor, as the generic head is
    features = torch.randn(2, dimoo.backbone.layout.seq_len, dimoo.backbone.width)
    ids = torch.full((2, 3), dimoo.backbone.layout.code_offset)
    out = head(features, dimoo.backbone.embed_ids(ids), torch.ones(2, 3, dtype=torch.bool), torch.tensor([0.5, 0.5]),
               torch.tensor([[100, 101, 102]] * 2))
    assert torch.equal(out, features)


def test_generic_heads_scale_with_the_width():
    assert [default_heads(n) for n in (8, 96, 128, 192, 384, 512, 2048)] == [1, 1, 1, 2, 3, 4, 16]
    assert ShortcutHead(ShortcutHeadConfig(width=4096)).config.heads == 16  # Lumina-DiMOO's width: 16 heads of 128
    assert ShortcutHead(ShortcutHeadConfig(width=192, heads=2)).config.heads == 2  # a saved head keeps its own
    with pytest.raises(MigmError, match="must not be negative"):
        ShortcutHead(ShortcutHeadConfig(width=192, heads=-1))


def test_released_dimoo_heads_that_do_not_fit_are_refused_in_one_line(dimoo, released, tmp_path, capsys):
    published, path = released
    folder = dimoo.path
    size = ["--height", "64", "--width", "64", "--trust-remote-code"]

    def refused(file):
        code, _, err = run(capsys, "import-head", file, "--model", folder, *size, "--out", tmp_path / "out")
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err

    torch.save(published, tmp_path / "pickled.pth")  # the module itself: loading it would unpickle code
    assert "loading them can run code" in refused(tmp_path / "pickled.pth")
    wide = random_mdm_shortcut(type(dimoo.backbone.model.config)(d_model=32, n_heads=2, mlp_hidden_size=32))
    torch.save(wide.state_dict(), tmp_path / "wide.pth")
    assert "for features of width 32; the model's are 16" in refused(tmp_path / "wide.pth")
    torch.save(ShortcutHead.for_base(dimoo.backbone).state_dict(), tmp_path / "generic.pth")
    assert "not a DiMOO-Shortcut head" in refused(tmp_path / "generic.pth")
    state = dict(published.state_dict())
    state.pop("blocks.0.cross_attn.up_proj.weight")
    torch.save(state, tmp_path / "partial.pth")
    assert "lacks the key 'blocks.0.cross_attn.up_proj.weight'" in refused(tmp_path / "partial.pth")
    # imported for one base, refused on another
    head = import_head(path, dimoo, tmp_path / "mine")
    other = load_model(write_tiny_dimoo(tmp_path / "other", seed=5), trust_remote_code=True, height=64, width=64)
    with pytest.raises(MigmError, match="trained for base model"):
        head.check_base(other.backbone)


def test_an_imported_head_works_wherever_a_trained_head_does(released, tmp_path, capsys):
    """import-head into the folder (its own head), then sample, validate-head, a sweep and fine-tuning."""
    import json
    import shutil

    _, path = released
    folder = tmp_path / "Lumina-DiMOO"
    shutil.copytree(write_tiny_dimoo(tmp_path / "src"), folder)
    model = ["--model", folder, "--height", "64", "--width", "64", "--trust-remote-code"]
    code, out, err = run(capsys, "import-head", path, *model, "--out", folder / "shortcut_head")
    assert code == 0 and "imported a dimoo-shortcut head" in out, err
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    code, _, err = run(capsys, "sample", *model, "--prompts-file", prompts, "--steps", "6", "--policy", "shortcut",
                       "--budget", "2", "--out-dir", tmp_path / "s")  # no --head: the folder's own
    assert code == 0, err
    assert json.loads((tmp_path / "s" / "run.json").read_text())["full_steps"] == [2, 2]
    code, _, err = run(capsys, "collect", *model, "--prompts-file", prompts, "--num", "2", "--steps", "4",
                       "--shard-size", "2", "--batch-size", "2", "--out", tmp_path / "traj")
    assert code == 0, err
    code, _, err = run(capsys, "validate-head", *model, "--data", tmp_path / "traj", "--split", "train", "--num", "2",
                       "--out", tmp_path / "val.json")
    assert code == 0 and json.loads((tmp_path / "val.json").read_text())["trajectories"] == 2, err
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"baseline": {"policy": "vanilla", "steps": 4},
                                  "settings": [{"policy": "shortcut", "steps": 4, "budget": 2}]}))
    code, _, err = run(capsys, "sweep", *model, "--prompts-file", prompts, "--per-prompt", "1", "--config", config,
                       "--out", tmp_path / "sweep")
    assert code == 0, err
    code, _, err = run(capsys, "train-head", *model, "--data", tmp_path / "traj", "--out", tmp_path / "tuned",
                       "--init-head", folder / "shortcut_head", "--steps", "2", "--batch-size", "2",
                       "--val-trajectories", "1", "--device", "cpu")
    assert code == 0, err
    tuned = ShortcutHead.from_pretrained(tmp_path / "tuned" / "shortcut_head")
    assert tuned.config.architecture == "dimoo-shortcut" and tuned.config.mlp_hidden == 32
