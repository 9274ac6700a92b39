"""Inception Score: the published computation on the TF-2015 Inception's unbiased logits, the classifier
read from the user's weights file and checked against the FID network, the same score for any image order
and process count, and one-line refusals."""

import pytest
import torch

from migm_shortcut import MigmError
from migm_shortcut.eval.fid import CachedFID, InceptionFeatures
from migm_shortcut.eval.inception_score import (SAME_AS_FID_NETWORK, WEIGHTS_FILE, InceptionScoreOnFeatures,
                                                _content_order, load_classifier)

from published_inception_score import published_inception_score


@pytest.fixture(scope="module")
def inception():
    return InceptionFeatures()


def fidelity_weights(path, network, seed=0, **changes):
    """A file in torch-fidelity's layout (its state-dict names): the FID network's tensors where the two
    share them, a random 1008-class classifier (what the real file holds is ImageNet's)."""
    g = torch.Generator().manual_seed(seed)
    ours = dict(network.named_parameters())
    state = {theirs: ours[mine].detach().clone() for theirs, mine in SAME_AS_FID_NETWORK}
    state["Conv2d_1a_3x3.bn.bias"] = ours["net.layers.conv.beta"].detach().clone()
    state["fc.weight"] = torch.randn(1008, 2048, generator=g) * 0.05
    state["fc.bias"] = torch.randn(1008, generator=g)
    state.update(changes)
    torch.save(state, path)
    return state


def test_the_score_equals_the_published_computation_on_the_unbiased_logits(tmp_path, inception):
    state = fidelity_weights(tmp_path / WEIGHTS_FILE, inception.net)
    classifier = load_classifier(tmp_path / WEIGHTS_FILE, inception.net)
    torch.manual_seed(0)
    features = torch.rand(203, 2048) * 2  # pool features are non-negative
    metric = InceptionScoreOnFeatures(classifier)
    for part in features.split(64):
        metric.update(part)
    mean, std = metric.compute()
    logits = features.double() @ state["fc.weight"].double().T  # no bias: logits_unbiased
    order = _content_order(logits)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        shuffle = torch.randperm(len(logits)).numpy()
    assert float(mean) == pytest.approx(published_inception_score(logits.numpy(), order[shuffle]), rel=1e-10)
    assert float(mean) > 1.5 and float(std) > 0
    # the bias is not used: a classifier with another bias scores the same
    fidelity_weights(tmp_path / "other.pth", inception.net, **{"fc.bias": torch.zeros(1008)})
    again = InceptionScoreOnFeatures(load_classifier(tmp_path / "other.pth", inception.net))
    again.update(features)
    assert float(again.compute()[0]) == pytest.approx(float(mean), rel=1e-12)


def test_the_score_does_not_depend_on_the_order_of_the_images_or_the_global_rng(tmp_path, inception):
    fidelity_weights(tmp_path / WEIGHTS_FILE, inception.net)
    classifier = load_classifier(tmp_path / WEIGHTS_FILE, inception.net)
    features = torch.rand(120, 2048, generator=torch.Generator().manual_seed(3))
    first, second = InceptionScoreOnFeatures(classifier), InceptionScoreOnFeatures(classifier)
    first.update(features)
    for part in features[torch.randperm(120)].split(7):
        second.update(part)
    state = torch.random.get_rng_state()
    assert float(first.compute()[0]) == float(second.compute()[0])
    assert torch.equal(torch.random.get_rng_state(), state)
    third = InceptionScoreOnFeatures(classifier, seed=1)
    third.update(features)
    assert float(third.compute()[0]) != float(first.compute()[0])  # the seed is the shuffle's


def test_fid_hands_its_features_to_the_inception_score(tmp_path, monkeypatch, inception):
    monkeypatch.setenv("MIGM_CACHE", str(tmp_path / "cache"))
    state = fidelity_weights(tmp_path / WEIGHTS_FILE, inception.net)
    torch.manual_seed(2)
    real, fake = torch.rand(12, 3, 64, 64) * 2 - 1, torch.rand(20, 3, 64, 64) * 2 - 1
    fid = CachedFID(inception, real, "r", batch_size=8, progress=False, inception_weights=tmp_path / WEIGHTS_FILE)
    fid.score(fake)
    logits = inception(fake).double() @ state["fc.weight"].double().T
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        shuffle = torch.randperm(20).numpy()
    expected = published_inception_score(logits.numpy(), _content_order(logits)[shuffle])
    assert fid.last_inception_score["inception_score"] == pytest.approx(expected, rel=1e-6)
    plain = CachedFID(inception, real, "r", batch_size=8, progress=False)
    plain.score(fake)
    assert plain.last_inception_score is None


def test_refusals_are_one_line(tmp_path, monkeypatch, inception):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MigmError, match="pass --inception-weights FILE"):
        load_classifier(None, inception.net)
    with pytest.raises(MigmError, match="not found"):
        load_classifier(tmp_path / "missing.pth", inception.net)
    fidelity_weights(tmp_path / "bad_fc.pth", inception.net, **{"fc.weight": torch.zeros(1000, 2048)})
    with pytest.raises(MigmError, match=r"fc.weight of shape \(1000, 2048\)"):
        load_classifier(tmp_path / "bad_fc.pth", inception.net)
    fidelity_weights(tmp_path / "other_net.pth", inception.net,
                     **{"Conv2d_1a_3x3.conv.weight": torch.randn(32, 3, 3, 3)})
    with pytest.raises(MigmError, match="not the TF-2015 Inception"):
        load_classifier(tmp_path / "other_net.pth", inception.net)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MigmError, match="corrupt or not a torch.save file"):
        load_classifier(tmp_path / "junk.pth", inception.net)
    # torch-fidelity's cached copy is found without a flag
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    fidelity_weights(tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE, inception.net)
    assert load_classifier(None, inception.net).weight.shape == (1008, 2048)
    metric = InceptionScoreOnFeatures(load_classifier(None, inception.net))
    metric.update(torch.rand(5, 2048))
    with pytest.raises(MigmError, match="at least 10 images"):
        metric.compute()
