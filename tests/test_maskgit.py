"""MaskGIT behind the model interface: a tiny random MaskTransformer with the published names and
forward signature, class-conditional sampling with the label drop, MaskGIT's own sampling rule,
a checkpoint folder in the released layout through the whole route, and the one-line refusals."""

import json
import shutil

import pytest
import torch
from torch import nn

from migm_shortcut import MigmError, ShortcutHead, load_model
from migm_shortcut.maskgit.model import MaskGITBackbone
from migm_shortcut.maskgit.transformer import MaskTransformer
from migm_shortcut.rules import DiMOORule, MaskGITRule
from migm_shortcut.samplers import MaskedTokenSampler, ShortcutPolicy

RULES = {"dimoo": DiMOORule(), "maskgit": MaskGITRule()}
from migm_shortcut.schedule import maskgit_masked_counts

from taming_standin import write_taming_vqgan
from tiny_amused_pipeline import write_reference_images
from cli_route import collect_and_train, run

TINY = dict(img_size=64, hidden_dim=32, codebook_size=16, f_factor=4, depth=2, heads=2, mlp_dim=64, dropout=0.0, nclass=5)


def tiny_maskgit(seed: int = 0) -> MaskTransformer:
    torch.manual_seed(seed)
    model = MaskTransformer(**TINY).eval()
    with torch.no_grad():  # a non-zero per-position bias, so the position bookkeeping is tested
        model.bias.normal_(0, 0.5)
    return model


def random_head(backbone, seed: int = 1) -> ShortcutHead:
    torch.manual_seed(seed)
    head = ShortcutHead.for_base(backbone, ratio=2, heads=2)
    for p in head.parameters():
        nn.init.normal_(p, std=0.05)
    return head.eval()


def test_features_are_last_layer_output_and_logits_are_the_models_own():
    model = tiny_maskgit()
    backbone = MaskGITBackbone(model)
    lay = backbone.layout
    assert lay.grid_shape == (4, 4) and lay.codebook_size == 16 and lay.nclass == 5
    seq = lay.template(torch.stack([lay.encode_prompt(3), lay.encode_prompt(None)]))
    seq = lay.with_codes(seq, torch.randint(0, 16, (2, 16)), torch.rand(2, 16) < 0.5)
    seen = []
    handle = model.last_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    logits, _ = model(seq[:, :16].view(2, 4, 4), torch.tensor([3, 0]), torch.tensor([False, True]))
    handle.remove()
    h = backbone.features(seq)
    assert torch.allclose(h, seen[0])
    assert torch.allclose(backbone.logits_from_features(h[:, :16], lay.image_positions), logits, atol=1e-5)
    # rows in any order: the per-position bias follows the positions given
    order = torch.tensor([5, 0, 11])
    assert torch.allclose(backbone.logits_from_features(h[:, order], order), logits[:, order], atol=1e-5)


def test_class_conditional_cfg_uses_the_models_label_drop():
    model = tiny_maskgit()
    backbone = MaskGITBackbone(model)
    lay = backbone.layout
    assert lay.encode_prompt(None).item() == 16 + 1 + 5  # codebook + 1 + nclass: "no class"
    assert lay.encode_prompt(2).item() == 16 + 1 + 2
    seq = lay.template(lay.encode_prompt(None)[None])
    dropped, _ = model(seq[:, :16].view(1, 4, 4), torch.tensor([4]), torch.tensor([True]), ret_last_feat=True)
    assert torch.allclose(backbone.logits_from_features(backbone.features(seq)[:, :16]), dropped, atol=1e-5)
    named = MaskGITBackbone(model, class_names=["cat", "dog", "owl", "fox", "elk"]).layout
    assert torch.equal(named.encode_prompt("owl"), lay.encode_prompt(2))


@pytest.mark.parametrize("rule", ["dimoo", "maskgit"])
def test_shortcut_at_b_equals_n_is_vanilla_and_b_below_n_runs_b_passes(rule):
    backbone = MaskGITBackbone(tiny_maskgit())
    vanilla = MaskedTokenSampler(backbone, num_steps=6, guidance_scale=3.0, rule=RULES[rule]).generate([0, 3, 4], [1, 2, 3])
    head = random_head(backbone)
    full = MaskedTokenSampler(backbone, num_steps=6, guidance_scale=3.0, rule=RULES[rule],
                        policy=ShortcutPolicy(head, budget=6)).generate([0, 3, 4], [1, 2, 3])
    assert torch.equal(full.codes, vanilla.codes)
    calls = []
    features = backbone.features
    backbone.features = lambda ids: calls.append(1) or features(ids)
    out = MaskedTokenSampler(backbone, num_steps=6, rule=RULES[rule], policy=ShortcutPolicy(head, budget=2)).generate([1, 2], [0, 1])
    assert len(calls) == 2 and out.full_steps.tolist() == [2, 2]


def test_maskgit_schedule_matches_the_published_rule_by_hand():
    # N=4, 16 tokens, arccos: r = 1, 2/3, 1/3, 0 -> acos(r)/(pi/2) = 0, 0.5357, 0.7836, 1 (sum 2.3193)
    # -> 16 * v / sum = 0, 3.70, 5.41, 6.90 -> rounded 0 (raised to 1), 4, 5, 7 -> last takes 16 - 17 = 6
    assert maskgit_masked_counts(16, 4) == [15, 11, 6, 0]
    with pytest.raises(MigmError, match="unknown MaskGIT schedule"):
        maskgit_masked_counts(16, 4, "spiral")


class FixedLogits(nn.Module):
    """A model whose conditional and unconditional branches predict fixed, different logits."""

    def __init__(self):
        super().__init__()
        from migm_shortcut.maskgit.model import MaskGITLayout

        self.layout = MaskGITLayout(2, 3, 2)
        self.width, self.fingerprint = 3, "fixed"
        self.anchor = nn.Parameter(torch.zeros(()))
        # cond favours code 0 at position 0 and code 1 at position 3; uncond favours code 2 everywhere
        self.cond = torch.tensor([[5.0, 0, 0], [0, 1, 0], [0, 0.5, 0], [0, 4, 0]])
        self.uncond = torch.tensor([[0, 0, 3.0]] * 4)

    device = property(lambda self: self.anchor.device)
    dtype = property(lambda self: self.anchor.dtype)

    def num_parameters(self):
        return 1

    def features(self, ids):
        is_cond = (ids[:, -1] != self.layout.drop_id)[:, None, None]
        image = torch.where(is_cond, self.cond, self.uncond)
        return torch.cat([image, torch.zeros(len(ids), 1, 3)], 1)

    def logits_from_features(self, h, positions=None):
        return h

    def embed_tokens(self, ids, positions):
        return torch.zeros(*ids.shape, 3)

    def embed(self, ids):
        return torch.zeros(*ids.shape, 3)


def test_maskgit_rule_by_hand_guidance_and_choice_noise_anneal():
    model = FixedLogits()
    # N=2 over 4 tokens: step 0 commits round(v0)->1 token, step 1 the rest. MaskGIT's temperature is
    # sm_temp and multiplies the logits (published ``softmax(logit * sm_temp)``): at 2 the draws are near-certain.
    # Guidance is w * k/(N-1) (0 at step 0: the conditional logits alone) and the choice noise is off
    # (choice temperature 0), so step 0 commits the most confident position of the conditional branch:
    # position 0 (softmax of [5, 0, 0]), code 0.
    sampler = MaskedTokenSampler(model, num_steps=2, guidance_scale=3.0, temperature=2.0, rule=MaskGITRule(choice_temperature=0.0))
    out = sampler.generate([1], [0])
    assert out.commit_step[0].tolist() == [0, 1, 1, 1]
    assert out.codes.flatten().tolist()[0] == 0
    # at step 1 of 2 guidance is full (w * 1/(2-1) = 3): (1+3) c - 3 u pushes every remaining position away from code 2
    assert 2 not in out.codes.flatten().tolist()
    # DiMOO's rule guides from the first step: position 0 is then 4*5 - 0 = 20 vs -9 for code 2 ... still code 0
    dimoo = MaskedTokenSampler(model, num_steps=2, guidance_scale=3.0, temperature=0.0).generate([1], [0])
    assert dimoo.codes.flatten().tolist()[0] == 0


def test_maskgit_annealing_is_the_forks_k_over_n_minus_1():
    """MIGM-Shortcut's MaskGIT fork, ``Trainer/vit.py``: ``_w = w * (indice / (len(scheduler)-1))`` and the
    Gumbel noise times ``(1 - indice / (len(scheduler)-1))``: full guidance and no noise at the last step."""
    rule = MaskGITRule(choice_temperature=7.0)
    assert [rule.guidance_weight(k, 15) for k in (0, 7, 14)] == [0.0, 0.5, 1.0]
    assert [rule.choice_noise(k, 15, 1.0) for k in (0, 7, 14)] == [7.0, 3.5, 0.0]
    assert rule.replace(schedule="cosine").schedule == "cosine"
    with pytest.raises(MigmError, match="the maskgit sampling rule has no setting 'tau'; its settings: schedule, choice_temperature"):
        rule.replace(tau=1)


# -- a checkpoint folder in the released layout ----------------------------------------------------
@pytest.fixture(scope="module")
def maskgit_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maskgit") / "pretrained_maskgit"
    (folder / "MaskGIT").mkdir(parents=True)
    torch.save({"model_state_dict": tiny_maskgit().state_dict(), "iter": 10, "global_epoch": 1},
               folder / "MaskGIT" / "MaskGIT_ImageNet_64.pth")
    (folder / "MaskGIT" / "config.json").write_text(json.dumps(TINY))
    write_taming_vqgan(folder / "VQGAN")  # the released tokenizer layout: VQGAN/last.ckpt + VQGAN/model.yaml
    return folder




def test_a_head_saved_in_the_folder_is_the_models_own(maskgit_folder, tmp_path):
    import shutil

    folder = tmp_path / "with_head"
    shutil.copytree(maskgit_folder, folder)
    assert load_model(folder).head_path is None
    random_head(load_model(folder).backbone).save_pretrained(folder / "shortcut_head")
    assert load_model(folder).head_path == folder / "shortcut_head"


def test_a_bf16_load_keeps_the_fingerprint_of_the_weights_as_saved(maskgit_folder):
    full, half = load_model(maskgit_folder), load_model(maskgit_folder, dtype=torch.bfloat16)
    assert half.backbone.model.tok_emb.weight.dtype == torch.bfloat16
    assert half.backbone.fingerprint == full.backbone.fingerprint


@pytest.fixture(scope="module")
def released_folder(tmp_path_factory):
    """The released layout at two sizes: MaskGIT/ with two checkpoints and no config.json, the Lightning VQGAN."""
    folder = tmp_path_factory.mktemp("released") / "pretrained_maskgit"
    (folder / "MaskGIT").mkdir(parents=True)
    for size, grid in ((64, 4), (128, 8)):
        torch.manual_seed(grid)
        model = MaskTransformer(**{**TINY, "f_factor": grid, "img_size": size, "heads": 16})
        torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": {}, "iter": 1, "global_epoch": 1},
                   folder / "MaskGIT" / f"MaskGIT_ImageNet_{size}.pth")
    write_taming_vqgan(folder / "VQGAN")
    return folder


@pytest.fixture(params=["one-checkpoint", "released-two-checkpoints"])
def maskgit_route(request, maskgit_folder, released_folder):
    if request.param == "one-checkpoint":
        return ["--model", maskgit_folder], load_model(maskgit_folder)
    return ["--model", released_folder, "--image-size", "64"], load_model(released_folder, image_size=64)


def test_the_maskgit_route_from_folder_to_sweep(maskgit_route, tmp_path, capsys):
    m, model = maskgit_route
    assert model.kind == "maskgit" and model.backbone.layout.grid_shape == (4, 4)
    classes = tmp_path / "classes.txt"
    classes.write_text("0\n3\n4\n")
    # vanilla, and the shortcut at B = N equal to it
    head = collect_and_train(capsys, m, classes, tmp_path)
    for name, extra in (("vanilla", []), ("full", ["--policy", "shortcut", "--budget", "4", "--head", head])):
        code, _, err = run(capsys, "sample", *m, "--prompts-file", classes, "--steps", "4", *extra, "--out-dir", tmp_path / name)
        assert code == 0, err
    runs = {n: json.loads((tmp_path / n / "run.json").read_text()) for n in ("vanilla", "full")}
    assert runs["full"]["full_steps"] == runs["vanilla"]["full_steps"] == [4, 4, 4]
    assert [(tmp_path / "vanilla" / f"{i:06d}.png").read_bytes() == (tmp_path / "full" / f"{i:06d}.png").read_bytes()
            for i in range(3)] == [True] * 3
    # online training takes the model's own settings
    code, _, err = run(capsys, "train-head", *m, "--online", "--prompts-file", classes, "--teacher-steps", "4",
                       "--online-trajectories", "2", "--steps", "2", "--batch-size", "2", "--val-trajectories", "1",
                       "--out", tmp_path / "online", "--device", "cpu")
    assert code == 0, err
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"baseline": {"policy": "vanilla", "steps": 4}, "batch_size": 3,
                                  "settings": [{"policy": "shortcut", "steps": 4, "budget": 2, "head": str(head)},
                                               {"policy": "vanilla", "steps": 4, "rule": {"choice_temperature": 7.0}}]}))
    reference = write_reference_images(tmp_path / "imagenet_style", size=8)
    code, _, err = run(capsys, "sweep", *m, "--prompts-file", classes, "--config", config, "--reference", reference,
                       "--out", tmp_path / "sweep")
    assert code == 0, err
    result = json.loads((tmp_path / "sweep" / "results.json").read_text())
    rows = result["rows"]
    assert [r["full_steps"] for r in rows] == [4, 2, 4] and all(r["fid"] > 0 for r in rows)
    assert rows[2]["rule"] == {"choice_temperature": 7.0} and result["guidance_scale"] == 3.0  # the model's own w
    code, _, err = run(capsys, "sample", *m, "--prompt", "3", "--steps", "4", "--out-dir", tmp_path / "png")
    assert code == 0, err
    from PIL import Image

    assert Image.open(next((tmp_path / "png").glob("*.png"))).size == (8, 8)  # 4x4 codes through the VQGAN (f=2)


def test_the_released_taming_vqgan_converts_to_a_diffusers_vqmodel_exactly(tmp_path):
    from migm_shortcut.maskgit.taming_vqgan import load_taming_vqgan
    from migm_shortcut.vq import vq_decode

    taming = write_taming_vqgan(tmp_path / "VQGAN", seed=3)
    vq = load_taming_vqgan(tmp_path / "VQGAN")
    codes = torch.randint(0, 16, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(vq_decode(vq, codes, "t"), taming.decode_code(codes), atol=1e-4)
        x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
        _, _, (_, _, indices) = vq.quantize(vq.quant_conv(vq.encoder(x)))
        _, _, (_, _, taming_indices) = taming.encode(x)  # MaskGIT-pytorch reads the codes this way
        assert torch.equal(indices.view(2, 8, 8), taming_indices.view(2, 8, 8))


def test_taming_checkpoints_that_are_not_plain_tensors_mismatched_or_broken_are_one_line(tmp_path, capsys):
    import argparse

    from migm_shortcut.maskgit.taming_vqgan import load_taming_vqgan
    from migm_shortcut.errors import MigmError

    # The released Lightning file: its tensors load without Lightning and without running code from it.
    write_taming_vqgan(tmp_path / "pickled", extra={"args": argparse.Namespace(lr=1.0)})
    assert load_taming_vqgan(tmp_path / "pickled").config.num_vq_embeddings == 16
    assert load_taming_vqgan(tmp_path / "pickled", trust_remote_code=True).config.num_vq_embeddings == 16
    # Unpickled in full (load_torch, trusted) it needs Lightning: one line saying so, never "corrupt".
    from migm_shortcut.io import load_torch

    with pytest.raises(MigmError, match="names classes of 'pytorch_lightning', which is not installed: pip install"):
        load_torch(tmp_path / "pickled" / "last.ckpt", trust=True)
    (tmp_path / "pickled" / "last.ckpt").write_bytes((tmp_path / "pickled" / "last.ckpt").read_bytes()[:300])
    with pytest.raises(MigmError, match="corrupt or truncated"):
        load_taming_vqgan(tmp_path / "pickled")

    write_taming_vqgan(tmp_path / "wide")
    config = (tmp_path / "wide" / "model.yaml").read_text().replace("ch: 32", "ch: 64")
    (tmp_path / "wide" / "model.yaml").write_text(config)
    with pytest.raises(MigmError, match="encoder.conv_in.weight has shape"):
        load_taming_vqgan(tmp_path / "wide")
    (tmp_path / "wide" / "model.yaml").write_text("model: {params: {n_embed: 4}}")
    with pytest.raises(MigmError, match="not a taming VQGAN config|lacks"):
        load_taming_vqgan(tmp_path / "wide")


def test_bad_classes_and_checkpoints_are_one_line(maskgit_folder, tmp_path, capsys):
    lay = MaskGITBackbone(tiny_maskgit()).layout
    with pytest.raises(MigmError, match="class id must be a whole number in 0..4"):
        lay.encode_prompt(7)
    with pytest.raises(MigmError, match="no names list"):
        lay.encode_prompt("owl")
    bad = tmp_path / "bad"
    (bad / "MaskGIT").mkdir(parents=True)
    (bad / "MaskGIT" / "MaskGIT_ImageNet_64.pth").write_bytes((maskgit_folder / "MaskGIT" / "MaskGIT_ImageNet_64.pth").read_bytes())
    (bad / "MaskGIT" / "config.json").write_text(json.dumps({**TINY, "hidden_dim": 48}))
    code, _, err = run(capsys, "sample", "--model", bad, "--prompt", "1", "--out-dir", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and "pos_emb is (1, 17, 32)" in err and "(1, 17, 48)" in err
    code, _, err = run(capsys, "sample", "--model", maskgit_folder, "--prompt", "9", "--out-dir", tmp_path / "o")
    assert code == 2 and "class id must be a whole number in 0..4" in err and not (tmp_path / "o").exists()


def test_clipscore_is_refused_for_a_class_conditional_model(maskgit_folder, tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_text("0\n3\n")
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"baseline": {"policy": "vanilla", "steps": 4}, "settings": [{"policy": "vanilla", "steps": 2}]}))
    code, _, err = run(capsys, "sweep", "--model", maskgit_folder, "--prompts-file", classes, "--config", config,
                       "--clip", maskgit_folder / "MaskGIT", "--out", tmp_path / "s")
    assert code == 2 and err.count("\n") == 1 and "class-conditional" in err


class _RunsAShellCommand:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling this in full would run `touch PATH`
        import os

        return os.system, (f"touch {self.path}",)


def test_tensor_records_keep_the_tensors_and_run_nothing_from_the_file(tmp_path):
    from migm_shortcut.io import InertObject, load_tensor_records

    marker = tmp_path / "ran"
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "payload": _RunsAShellCommand(marker)}, tmp_path / "x.ckpt")
    loaded = load_tensor_records(tmp_path / "x.ckpt")
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(3.0))
    assert isinstance(loaded["payload"], InertObject) and loaded["payload"].origin.endswith(".system")
    assert not marker.exists()


def test_the_checkpoint_is_chosen_never_guessed_and_the_published_settings_follow_its_size(tmp_path, capsys):
    """The released MaskGIT/ holds MaskGIT_ImageNet_256.pth and _512.pth side by side (here 64 and 512 px
    tiny ones); without MaskGIT/config.json the settings come from the tensors, the codebook from the VQGAN."""
    from migm_shortcut.maskgit.model import PUBLISHED_SETTINGS

    folder = tmp_path / "pretrained_maskgit"
    (folder / "MaskGIT").mkdir(parents=True)
    for name, grid in (("MaskGIT_ImageNet_64.pth", 4), ("MaskGIT_ImageNet_512.pth", 32)):
        torch.manual_seed(0)
        model = MaskTransformer(**{**TINY, "f_factor": grid, "img_size": grid * 16, "heads": 16})
        torch.save({"model_state_dict": model.state_dict(), "iter": 1, "global_epoch": 1}, folder / "MaskGIT" / name)
    write_taming_vqgan(folder / "VQGAN")
    with pytest.raises(MigmError, match=r"holds 2 checkpoints \(MaskGIT_ImageNet_512.pth, MaskGIT_ImageNet_64.pth\); "
                                        "choose one with --image-size 256|512 or --checkpoint FILE"):
        load_model(folder)
    big = load_model(folder, image_size=512)
    assert big.checkpoint.name == "MaskGIT_ImageNet_512.pth" and big.backbone.layout.grid_shape == (32, 32)
    assert big.backbone.layout.codebook_size == 16  # from VQGAN/model.yaml's n_embed, not guessed
    assert (big.defaults, big.rule) == PUBLISHED_SETTINGS[512]
    assert (big.defaults.num_steps, big.defaults.guidance_scale, big.rule.choice_temperature) == (15, 2.8, 7.0)
    small = load_model(folder, checkpoint="MaskGIT_ImageNet_64.pth")
    assert small.backbone.layout.grid_shape == (4, 4) and (small.defaults, small.rule) == PUBLISHED_SETTINGS[256]
    (folder / "MaskGIT" / "config.json").write_text(json.dumps({**TINY, "codebook_size": 1024}))
    with pytest.raises(MigmError, match="says codebook_size 1024, the image tokenizer has 16 codes"):
        load_model(folder, image_size=64)
    (folder / "MaskGIT" / "config.json").unlink()
    for options, what in (({"image_size": 256}, "no single checkpoint for --image-size 256"),
                          ({"checkpoint": "nope.pth"}, "--checkpoint nope.pth: no such file")):
        with pytest.raises(MigmError, match=what):
            load_model(folder, **options)
    code, _, err = run(capsys, "sample", "--model", folder, "--checkpoint", "MaskGIT_ImageNet_64.pth", "--prompt", "3",
                       "--out-dir", tmp_path / "s")
    assert code == 0, err
    record = json.loads((tmp_path / "s" / "run.json").read_text())
    assert record["checkpoint"].endswith("MaskGIT_ImageNet_64.pth") and record["steps"] == 8
    assert record["rule"] == {"rule": "maskgit", "schedule": "arccos", "choice_temperature": 4.5}
    assert record["full_steps"] == [8]  # each image's backbone passes
    # every published setting is settable: the choice temperature and the schedule are the rule's
    code, _, err = run(capsys, "sample", "--model", folder, "--image-size", "512", "--prompt", "3", "--prompt", "4",
                       "--choice-temperature", "3.5", "--schedule", "cosine", "--steps", "4", "--out-dir", tmp_path / "t")
    assert code == 0, err
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["rule"] == {"rule": "maskgit", "schedule": "cosine", "choice_temperature": 3.5}
    assert record["full_steps"] == [4, 4] and record["guidance_scale"] == 2.8
    assert record["load_options"] == {"image_size": 512, "rule_options": {"choice_temperature": 3.5, "schedule": "cosine"}}
    code, _, err = run(capsys, "sample", "--prompt", "a bag", "--choice-temperature", "3", "--out-dir", tmp_path / "u")
    assert code == 2 and "the dimoo sampling rule has no setting 'choice_temperature'; its settings: none" in err


# -- the authors' released head ------------------------------------------------------------------
def released_maskgit_head(backbone_model, path, seed=3, hidden=None, heads=4):
    """The stand-in of the published MaskGITShortcut with random weights, saved as the release is: a plain state dict."""
    from maskgit_shortcut_standin import MaskGITShortcut

    torch.manual_seed(seed)
    published = MaskGITShortcut(hidden or backbone_model.tok_emb.weight.shape[1], n_block=1, bottleneck_ratio=2,
                                tok_emb=backbone_model.tok_emb, pos_emb=backbone_model.pos_emb, num_heads=heads).eval()
    for p in published.parameters():
        nn.init.normal_(p, std=0.1)
    torch.save(published.state_dict(), path)
    return published


def test_an_imported_released_head_computes_what_the_published_module_computes(maskgit_folder, tmp_path, capsys):
    model = load_model(maskgit_folder)
    published = released_maskgit_head(model.backbone.model, tmp_path / "maskgit-shortcut.pth")
    assert not any(k.startswith(("wte", "wpe")) for k in published.state_dict())  # non-persistent, as published
    code, out, err = run(capsys, "import-head", tmp_path / "maskgit-shortcut.pth", "--model", maskgit_folder,
                         "--heads", "4", "--out", tmp_path / "imported")
    assert code == 0 and "imported a maskgit-shortcut head" in out, err
    head = ShortcutHead.from_pretrained(tmp_path / "imported")
    assert type(head).__name__ == "MaskGITShortcutHead" and head.config.base_fingerprint == model.backbone.fingerprint
    # the same inputs both ways: features of a real step, the tokens committed at the previous step
    torch.manual_seed(0)
    b, lay = 3, model.backbone.layout
    features = torch.randn(b, lay.seq_len, model.backbone.width)
    positions = torch.stack([torch.randperm(lay.num_image_tokens)[:5].sort().values for _ in range(b)])
    ids = torch.randint(0, lay.codebook_size, (b, 5))
    token_map = torch.zeros(b, lay.seq_len, dtype=torch.bool).scatter_(1, positions, True)
    ratio = torch.tensor([0.75, 0.5, 0.25])
    with torch.no_grad():
        expected = published(features, ids, token_map, ratio)
        ours = head(features, model.backbone.embed_tokens(ids, positions), torch.ones(b, 5, dtype=torch.bool), ratio)
    assert torch.allclose(ours, expected, atol=1e-5), (ours - expected).abs().max()
    # it samples like any head: exactly B backbone passes
    code, _, err = run(capsys, "sample", "--model", maskgit_folder, "--prompt", "3", "--steps", "6", "--policy", "shortcut",
                       "--budget", "3", "--head", tmp_path / "imported", "--out-dir", tmp_path / "s")
    assert code == 0, err
    assert json.loads((tmp_path / "s" / "run.json").read_text())["full_steps"] == [3]


def test_the_sampler_with_an_imported_head_matches_the_published_loop_token_for_token(maskgit_folder, tmp_path):
    from migm_shortcut.released_heads import import_head
    from migm_shortcut.samplers.sampler import StepNoise
    from published_maskgit_loop import published_maskgit_loop

    model = load_model(maskgit_folder)
    published = released_maskgit_head(model.backbone.model, tmp_path / "maskgit-shortcut.pth")
    head = import_head(tmp_path / "maskgit-shortcut.pth", model, tmp_path / "imported", heads=4)
    steps, budget, w, sm_temp, r_temp, classes, seeds = 8, 3, 3.0, 1.3, 0.5, [0, 1, 3, 4], [5, 8, 2, 7]
    rule = MaskGITRule(schedule="arccos", choice_temperature=r_temp)
    run_with = lambda policy: MaskedTokenSampler(model.backbone, num_steps=steps, guidance_scale=w,  # noqa: E731
                                                 temperature=sm_temp, policy=policy, rule=rule).generate(classes, seeds)
    out = run_with(ShortcutPolicy(head, budget=budget))
    assert out.full_steps.tolist() == [budget] * len(classes)
    assert not torch.equal(run_with(None).codes, out.codes)  # the head's predictions decide tokens here
    g = model.backbone.layout.num_image_tokens
    masked_per_step = [g, *maskgit_masked_counts(g, steps)[:-1]]
    for label, seed, codes in zip(classes, seeds, out.codes):
        noise = StepNoise([torch.Generator().manual_seed(seed)], masked_per_step, torch.device("cpu"))
        expected = published_maskgit_loop(model.backbone.model, published, label, steps, budget, w, sm_temp, r_temp, noise)
        assert torch.equal(expected, codes)


def test_released_heads_that_do_not_fit_are_refused_in_one_line(maskgit_folder, tmp_path, capsys):
    model = load_model(maskgit_folder)

    def refused(path, *extra):
        code, _, err = run(capsys, "import-head", path, "--model", maskgit_folder, "--heads", "4", "--out",
                           tmp_path / "out", *extra)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err

    torch.save(released_maskgit_head(model.backbone.model, tmp_path / "x.pth"), tmp_path / "pickled.pth")  # the module
    assert "loading them can run code" in refused(tmp_path / "pickled.pth")
    wide = MaskTransformer(**{**TINY, "hidden_dim": 64})
    released_maskgit_head(wide, tmp_path / "wide.pth")
    assert "for features of width 64; the model's are 32" in refused(tmp_path / "wide.pth")
    generic = ShortcutHead.for_base(model.backbone)
    torch.save(generic.state_dict(), tmp_path / "generic.pth")
    assert "not a MaskGIT-Shortcut head" in refused(tmp_path / "generic.pth")
    state = torch.load(tmp_path / "x.pth")
    state.pop("adaLN_modulation.bias")
    torch.save(state, tmp_path / "partial.pth")
    assert "lacks the key 'adaLN_modulation.bias'" in refused(tmp_path / "partial.pth")
    assert "head file not found" in refused(tmp_path / "nowhere.pth")
    # imported for one base, refused on another
    assert run(capsys, "import-head", tmp_path / "x.pth", "--model", maskgit_folder, "--heads", "4", "--out",
               tmp_path / "mine")[0] == 0
    other = tmp_path / "other"
    shutil.copytree(maskgit_folder, other)
    torch.manual_seed(9)
    torch.save({"model_state_dict": tiny_maskgit(seed=9).state_dict()}, other / "MaskGIT" / "MaskGIT_ImageNet_64.pth")
    code, _, err = run(capsys, "sample", "--model", other, "--prompt", "1", "--policy", "shortcut", "--budget", "2",
                       "--steps", "4", "--head", tmp_path / "mine", "--out-dir", tmp_path / "o")
    assert code == 2 and "trained for base model" in err
