"""Quality of a set of generated images: Inception FID, domain FID, prompt accuracy.

``SampleEvaluator`` holds the reference statistics (computed once, cached on disk) and the
model's judge (``LoadedModel.judge``), and scores any batch of images with their prompts. The
reference comes from the model (``LoadedModel.reference_images``) or from a folder or ``.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from migm_shortcut.embedded.data import balanced_subset, load_dataset, to_model_range
from migm_shortcut.distributed import all_sum
from migm_shortcut.errors import MigmError
from migm_shortcut.interface import ReferenceImages

from .fid import CachedFID, InceptionFeatures, JudgeFeatures

MODEL_REFERENCE = "model"  # the reference set the model's family provides


@dataclass
class QualityScores:
    num_images: int
    prompt_accuracy: float | None  # share of images the judge assigns to the prompted class
    domain_fid: float | None       # FID on the judge's features (not comparable with papers)
    fid: float | None              # Inception FID (standard); None when skipped
    # On the Inception features, as MaskGIT's published evaluation computes them (k=3, 5 parts); None when
    # FID is skipped or there are too few images
    precision: float | None = None
    recall: float | None = None

    def as_dict(self) -> dict:
        return {"num_images": self.num_images, "prompt_accuracy": self.prompt_accuracy,
                "domain_fid": self.domain_fid, "fid": self.fid, "precision": self.precision, "recall": self.recall}


def reference_images(model, source: str | None = MODEL_REFERENCE, size: int | None = None,
                     split: str = "test") -> ReferenceImages:
    """The reference set for FID: the model's own (``source`` "model": its family's real images of
    ``split``) or a folder / ``.npz`` of images (optionally a class-balanced subset of ``size``)."""
    if source in (None, MODEL_REFERENCE):
        reference = None if model is None else model.reference_images(split, size)
        if reference is None:
            raise MigmError("this model has no reference images of its own; pass --reference DIR (real images)")
        return reference
    data, name = load_dataset(source), f"custom:{source}"
    if size is not None and size < len(data):
        data, name = balanced_subset(data, size), f"{name}:first{size}"
    return ReferenceImages(to_model_range(data.images), name)


class SampleEvaluator:
    """Inception FID against a reference, and with a judge, prompt accuracy and domain FID."""

    def __init__(self, judge, reference: ReferenceImages, inception: bool = True, progress: bool = True):
        images, name = reference.images, reference.name
        if len(images) < 2:
            raise MigmError(f"reference {name} has {len(images)} images; FID needs at least 2")
        self.judge = judge
        self.reference_name = name
        self.reference_count = len(images)
        self.domain = (CachedFID(JudgeFeatures(judge), images, name, batch_size=500, progress=progress)
                       if judge is not None else None)
        self.inception = CachedFID(InceptionFeatures(), images, name, progress=progress, manifold=True) if inception else None

    def score(self, images: torch.Tensor, prompts: list | None) -> QualityScores:
        """Under torchrun every rank passes its own images; the scores are those of all of them."""
        judged = self.judge is not None and prompts is not None
        local = self.judge.accuracy(images, prompts) * len(images) if judged and len(images) else 0.0
        correct, count = all_sum([local, len(images)])
        fid = self.inception.score(images) if self.inception is not None else None
        manifold = self.inception.last_manifold if self.inception is not None else None
        return QualityScores(
            num_images=int(count),
            prompt_accuracy=correct / count if judged else None,
            domain_fid=self.domain.score(images) if self.domain is not None else None,
            fid=fid, **{k: (manifold or {}).get(k) for k in ("precision", "recall")},
        )


def score_image_folder(folder, load_model, reference: str, reference_size: int | None, backend: str = "torchmetrics",
                       inception_weights=None) -> dict:
    """``migm-shortcut fid``: a folder of PNGs against a reference, by Inception FID and the domain FID
    of the model's classifier, or by clean-fid (``backend="clean-fid"``, no model needed). Against a
    folder of real images, both folders are read as RGB at Inception's size (what sweeps score), with
    precision and recall, and no model is loaded.
    ``load_model()`` gives the model; it is called only once the folder has been checked, so a
    wrong path is reported before a model is loaded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MigmError(f"--images {folder} is not a folder of PNG images")
    is_folder = reference not in (None, MODEL_REFERENCE) and Path(reference).is_dir()
    if inception_weights is not None and (backend == "clean-fid" or not is_folder):
        raise MigmError("--inception-weights scores against a folder of real images with the torchmetrics backend; "
                        "pass --reference FOLDER")
    if backend != "clean-fid" and reference not in (None, MODEL_REFERENCE) and Path(reference).is_dir():
        # Real images in a folder: both sides as the sweeps score them (RGB at Inception's size, any image size),
        # with precision and recall; no model is needed.
        from .fid import FolderFID, reference_files

        fid = FolderFID(reference, manifold=True, inception_weights=inception_weights)
        files = reference_files(folder)
        value = fid.score_files(files)
        return {"images": str(folder), "num_images": len(files), "reference": str(reference),
                "reference_images": fid.reference_count, "backend": "torchmetrics", "fid": value, "domain_fid": None,
                "prompt_accuracy": None, **{k: (fid.last_manifold or {}).get(k) for k in ("precision", "recall")},
                **(fid.last_inception_score or {})}
    model = load_model() if reference in (None, MODEL_REFERENCE) or backend != "clean-fid" else None
    if backend == "clean-fid":
        from .cleanfid_backend import cleanfid_score

        ref = reference_images(model, reference, reference_size)
        return {"images": str(folder), "reference": ref.name, "backend": "clean-fid",
                "fid": cleanfid_score(folder, ref.images, ref.name)}
    images = to_model_range(load_dataset(folder).images)
    evaluator = SampleEvaluator(model.judge, reference_images(model, reference, reference_size), inception=True)
    scores = evaluator.score(images, None)
    return {"images": str(folder), "num_images": len(images), "reference": evaluator.reference_name,
            "reference_images": evaluator.reference_count, "backend": "torchmetrics", **scores.as_dict()}
