"""Precision, recall, density and coverage equal the published evaluation's computation on the same features."""

import pytest
import torch

from migm_shortcut import MigmError
from migm_shortcut.eval.manifold import PrecisionRecall

from published_manifold import published_manifold_metrics


def test_precision_and_recall_equal_the_published_computation():
    torch.manual_seed(0)
    real = torch.randn(230, 32, dtype=torch.float64)
    fake = 0.8 * torch.randn(180, 32, dtype=torch.float64) + 0.3  # shifted and narrower: every number below 1
    metric = PrecisionRecall()
    for part in real.split(64):  # in batches, as images come
        metric.update(part, real=True)
    for part in fake.split(50):
        metric.update(part, real=False)
    ours = metric.compute()
    published = published_manifold_metrics(real, fake)
    assert ours == pytest.approx(published, abs=1e-12)
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1 and ours["coverage"] < 1
    metric.reset()
    metric.update(real[:30], real=True)
    metric.update(fake[:10], real=False)
    with pytest.raises(MigmError, match="at least 20 real and 20 generated"):
        metric.compute()


class Pixels(torch.nn.Module):
    """A stand-in extractor: the flattened, pooled pixels (cheap, deterministic)."""

    identity, num_features = "test-pixels", 16

    def forward(self, images):
        return torch.nn.functional.adaptive_avg_pool2d(images.float(), 4).mean(1).flatten(1)


def test_fid_hands_its_features_to_precision_and_recall_and_caches_the_references(tmp_path, monkeypatch):
    from migm_shortcut.eval.fid import CachedFID
    from migm_shortcut.eval.manifold import manifold_scores

    monkeypatch.setenv("MIGM_CACHE", str(tmp_path))
    torch.manual_seed(1)
    real, fake = torch.rand(40, 1, 28, 28) * 2 - 1, torch.rand(30, 1, 28, 28) * 1.5 - 0.8
    fid = CachedFID(Pixels(), real, "r", batch_size=16, progress=False, manifold=True)
    value = fid.score(fake)
    parts = zip(Pixels()(real).double().chunk(5), Pixels()(fake).double().chunk(5))
    expected = [manifold_scores(r, f) for r, f in parts]
    assert fid.last_manifold["precision"] == pytest.approx(sum(e["precision"] for e in expected) / 5, abs=1e-12)
    again = CachedFID(Pixels(), real, "r", batch_size=16, progress=False, manifold=True)  # the reference from the cache
    assert again.score(fake) == pytest.approx(value) and again.last_manifold == pytest.approx(fid.last_manifold)
    assert fid.score(fake[:8]) is not None and fid.last_manifold is None  # too few for 5 parts of k=3
