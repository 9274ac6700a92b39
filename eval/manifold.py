"""Precision, recall, density and coverage of generated images against real ones, on Inception features.

``PrecisionRecall`` is a small torchmetrics ``Metric``: ``update(features, real=...)`` collects pool
features of either side, ``compute()`` returns the four numbers as MaskGIT's published evaluation
(MIGM-Shortcut's ``Metrics/inception_metrics.py``, ``manifold_metrics``) computes them: each side's
features split into 5 parts in the order they came, the parts matched real to fake; in each pair the
k-th nearest-neighbour distance of every point within its own part (k = 3, the point itself not counted)
is its radius, and

* precision: the share of generated points inside some real point's radius (Kynkäänniemi et al.);
* recall: the share of real points inside some generated point's radius;
* density: the mean over generated points of how many real radii hold them, over k (Naeem et al.);
* coverage: the share of real points whose nearest generated point is inside their own radius;

each averaged over the 5 pairs. Distances are Euclidean in float64. Under torchrun the generated
features of every process are gathered before computing (a list state, concatenated in rank order), so
K processes give the numbers of one process whose images came in that order; the reference, the same in
every process, is not synced.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from migm_shortcut.distributed import all_sum, cpu_group
from migm_shortcut.errors import MigmError

NEAREST_K = 3   # the published manifold_k
PARTS = 5       # the published num_splits


def kth_neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    distances = torch.cdist(features, features, compute_mode="donot_use_mm_for_euclid_dist")
    return distances.kthvalue(k + 1, dim=1).values  # the smallest is the point itself (0)


def manifold_scores(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K) -> dict[str, float]:
    """The four numbers for one (real, fake) pair of feature sets."""
    real, fake = real.double(), fake.double()
    real_radii, fake_radii = kth_neighbour_radii(real, k), kth_neighbour_radii(fake, k)
    between = torch.cdist(real, fake, compute_mode="donot_use_mm_for_euclid_dist")  # (real, fake)
    inside_real = between < real_radii[:, None]
    return {"precision": inside_real.any(dim=0).double().mean().item(),
            "recall": (between < fake_radii[None, :]).any(dim=1).double().mean().item(),
            "density": (inside_real.double().sum(dim=0) / k).mean().item(),
            "coverage": (between.min(dim=1).values < real_radii).double().mean().item()}


class PrecisionRecall(Metric):
    """``update(features, real)`` then ``compute()`` -> {"precision", "recall", "density", "coverage"}."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, nearest_k: int = NEAREST_K, parts: int = PARTS, **kwargs):
        super().__init__(process_group=cpu_group(), **kwargs)
        self.nearest_k, self.parts = nearest_k, parts
        # The reference is the same in every process, so only the generated side is a synced state;
        # reset() clears that one (a reference is set once and kept, as the FID metric keeps its own).
        self.real_features: list[torch.Tensor] = []
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, real: bool) -> None:
        (self.real_features if real else self.fake_features).append(features.detach().double().cpu())

    def counts(self) -> tuple[int, int]:
        """(reference, generated) features held, the generated ones of every process (collective under torchrun)."""
        fake = sum(len(f) for f in self.fake_features) if isinstance(self.fake_features, list) else len(self.fake_features)
        return sum(len(r) for r in self.real_features), int(all_sum([fake])[0])

    def enough(self) -> bool:
        """Whether each side holds enough points for ``parts`` parts of more than k."""
        need = self.parts * (self.nearest_k + 1)
        return min(self.counts()) >= need

    def compute(self) -> dict[str, float]:
        real = torch.cat(self.real_features) if self.real_features else torch.zeros(0, 0, dtype=torch.float64)
        fake = torch.cat(self.fake_features) if isinstance(self.fake_features, list) else self.fake_features
        need = self.parts * (self.nearest_k + 1)
        if len(real) < need or len(fake) < need:
            raise MigmError(f"precision and recall need at least {need} real and {need} generated images "
                            f"({self.parts} parts of more than k={self.nearest_k}); got {len(real)} and {len(fake)}")
        scores = [manifold_scores(r, f, self.nearest_k)
                  for r, f in zip(real.chunk(self.parts), fake.chunk(self.parts))]
        return {name: sum(s[name] for s in scores) / len(scores) for name in scores[0]}
