"""A reference of the precision / recall / density / coverage computation in MaskGIT's published evaluation
(MIGM-Shortcut's ``MaskGIT-Shortcut/Metrics/inception_metrics.py`` at 93349c4: ``compute_prdc`` and
``manifold_metrics``), written in our own words with numpy. The published code takes its distances from
``sklearn.metrics.pairwise_distances(metric="euclidean")``; sklearn is not a dependency here, so they are
computed the way that function computes them for float64: ``sqrt(max(|x|^2 - 2 x.y + |y|^2, 0))``."""

import numpy as np


def pairwise(x, y=None):
    y = x if y is None else y
    squared = (x * x).sum(1)[:, None] - 2 * x @ y.T + (y * y).sum(1)[None, :]
    distances = np.sqrt(np.maximum(squared, 0))
    if y is x:
        np.fill_diagonal(distances, 0)  # sklearn zeroes the diagonal of a set against itself
    return distances


def kth_value(unsorted, k):
    indices = np.argpartition(unsorted, k, axis=-1)[..., :k]
    return np.take_along_axis(unsorted, indices, axis=-1).max(axis=-1)


def prdc(real, fake, k):
    real_radii = kth_value(pairwise(real), k + 1)
    fake_radii = kth_value(pairwise(fake), k + 1)
    between = pairwise(real, fake)
    precision = (between < real_radii[:, None]).any(axis=0).mean()
    recall = (between < fake_radii[None, :]).any(axis=1).mean()
    density = ((1.0 / k) * (between < real_radii[:, None])).sum(axis=0).mean()
    coverage = (between.min(axis=1) < real_radii).mean()
    return precision, recall, density, coverage


def published_manifold_metrics(real, fake, k=3, splits=5):
    """real, fake: float64 torch tensors; the four numbers averaged over the splits, as published."""
    scores = [prdc(r.numpy(), f.numpy(), k) for r, f in zip(real.chunk(splits), fake.chunk(splits))]
    return {name: float(np.mean([s[i] for s in scores]))
            for i, name in enumerate(("precision", "recall", "density", "coverage"))}
