import copy

import pytest
import torch

from migm_shortcut.samplers import generate

from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO
from migm_shortcut.embedded.classifier import ImageClassifier
from migm_shortcut.errors import MigmError
from migm_shortcut.embedded.model import EmbeddedModel
from migm_shortcut.embedded.tokenizer import VQTokenizer


def test_backbone_round_trip_and_fingerprint(tmp_path, tiny_backbone):
    tiny_backbone.save_pretrained(tmp_path / "b")
    loaded = MiniDiMOO.from_pretrained(tmp_path / "b")
    ids = tiny_backbone.layout.template(torch.stack([tiny_backbone.layout.encode_prompt("dress")]))
    rounded = copy.deepcopy(tiny_backbone).half().float()
    torch.testing.assert_close(loaded.features(ids), rounded.features(ids), atol=2e-3, rtol=0)
    assert loaded.fingerprint == tiny_backbone.fingerprint  # the fp16 round trip keeps the fingerprint
    other = MiniDiMOO(tiny_backbone.config)
    assert other.fingerprint != loaded.fingerprint


def test_features_and_head_are_the_forward(tiny_backbone):
    ids = tiny_backbone.layout.template(torch.stack([tiny_backbone.layout.encode_prompt("bag")]))
    h = tiny_backbone.features(ids)
    assert h.shape == (1, tiny_backbone.layout.seq_len, 32)
    logits = tiny_backbone.logits_from_features(h)
    assert logits.shape[-1] == 16
    torch.testing.assert_close(logits, tiny_backbone(ids))


def test_bad_input_ids(tiny_backbone):
    with pytest.raises(MigmError, match=r"input_ids must be \(batch, "):
        tiny_backbone.features(torch.zeros(2, 5, dtype=torch.long))


def test_tokenizer_round_trip_shapes(tiny_weights):
    tok = VQTokenizer.from_pretrained(tiny_weights / "vq")
    codes = tok.encode(torch.rand(3, 1, 28, 28) * 2 - 1)
    assert codes.shape == (3, 14, 14) and codes.max() < 16
    assert tok.decode(codes).shape == (3, 1, 28, 28)
    with pytest.raises(MigmError, match="code ids"):
        tok.decode(torch.full((1, 14, 14), 99))


def test_corrupt_safetensors_is_one_clear_error(tmp_path, tiny_backbone):
    tiny_backbone.save_pretrained(tmp_path / "b")
    path = tmp_path / "b" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(MigmError, match="corrupt or truncated"):
        MiniDiMOO.from_pretrained(tmp_path / "b")


def test_wrong_model_type_and_missing_folder(tmp_path, tiny_weights):
    with pytest.raises(MigmError, match="not a 'mini-dimoo'"):
        MiniDiMOO.from_pretrained(tiny_weights / "classifier")
    with pytest.raises(MigmError, match="not found"):
        ImageClassifier.from_pretrained(tmp_path / "nothing")
    with pytest.raises(MigmError, match="train-base"):
        EmbeddedModel.from_pretrained(tmp_path / "nothing")


def test_nan_weights_are_refused(tmp_path, tiny_backbone):
    broken = MiniDiMOO(tiny_backbone.config)
    with torch.no_grad():
        broken.lm_head.weight[0, 0] = float("nan")
    broken.save_pretrained(tmp_path / "b")
    with pytest.raises(MigmError, match="NaN"):
        MiniDiMOO.from_pretrained(tmp_path / "b")


def test_shape_mismatch_between_config_and_weights(tmp_path, tiny_backbone):
    tiny_backbone.save_pretrained(tmp_path / "b")
    other = MiniDiMOO(BackboneConfig(codebook_size=16, grid_size=4, width=64, depth=2, heads=2))
    other.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").replace(tmp_path / "b" / "model.safetensors")
    with pytest.raises(MigmError, match="shape"):
        MiniDiMOO.from_pretrained(tmp_path / "b")


def test_embedded_model_generates_images(tiny_weights):
    model = EmbeddedModel.from_pretrained(tiny_weights)
    images, out = generate(model, ["a photo of a coat", "a bag"], seeds=[0, 1], num_steps=3)
    assert images.shape == (2, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    assert out.full_steps.tolist() == [3, 3]


def test_shipped_weights_follow_prompts():
    """The weights inside the package load, and the model draws what it is asked for."""
    from migm_shortcut.io import read_json
    from migm_shortcut.embedded.model import SHIPPED_WEIGHTS
    from migm_shortcut.embedded.prompts import canonical_prompt

    metrics = read_json(SHIPPED_WEIGHTS / "metrics.json")
    assert metrics["classifier"]["test_accuracy"] >= 0.90
    model = EmbeddedModel.from_pretrained()
    prompts = [canonical_prompt(c) for c in range(10) for _ in range(2)]
    images, out = generate(model, prompts, seeds=list(range(20)), num_steps=8)
    accuracy = (model.classifier.predict(images) == torch.arange(10).repeat_interleave(2)).float().mean().item()
    assert accuracy >= 0.7
    assert out.full_steps.tolist() == [8] * 20
