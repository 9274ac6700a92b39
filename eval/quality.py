"""Quality of a set of generated images: Inception FID, domain FID, prompt accuracy.

``SampleEvaluator`` holds the reference statistics (computed once, cached on disk) and the
project classifier, and scores any batch of images with known target classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from migm_shortcut.classifier import FashionClassifier
from migm_shortcut.data import ImageDataset, load_dataset, to_model_range
from migm_shortcut.errors import MigmError

from .fid import CachedFID, ClassifierFeatures, InceptionFeatures


@dataclass
class QualityScores:
    num_images: int
    prompt_accuracy: float | None  # share of images the classifier assigns to the prompted class
    domain_fid: float              # FID on the project classifier's features (not comparable with papers)
    fid: float | None              # Inception FID (standard); None when skipped

    def as_dict(self) -> dict:
        return {"num_images": self.num_images, "prompt_accuracy": self.prompt_accuracy,
                "domain_fid": self.domain_fid, "fid": self.fid}


def reference_images(source: str = "fashion-mnist-test", size: int | None = None) -> tuple[torch.Tensor, str]:
    """The reference set for FID: the Fashion-MNIST test split (optionally a class-balanced subset) or a folder/.npz."""
    if source in ("fashion-mnist-test", "fashion-mnist"):
        data = load_dataset("fashion-mnist", "test")
        name = "fashion-mnist:test"
    else:
        data = load_dataset(source)
        name = f"custom:{source}"
    if size is not None and size < len(data):
        data = balanced_subset(data, size)
        name += f":first{size}"
    return to_model_range(data.images), name


def balanced_subset(data: ImageDataset, size: int) -> ImageDataset:
    if (data.labels < 0).any():
        return data.subset(slice(0, size))
    return data.balanced(size // 10)


class SampleEvaluator:
    def __init__(self, classifier: FashionClassifier, reference: str = "fashion-mnist-test",
                 reference_size: int | None = None, inception: bool = True, progress: bool = True):
        images, name = reference_images(reference, reference_size)
        if len(images) < 2:
            raise MigmError(f"reference {reference} has {len(images)} images; FID needs at least 2")
        self.classifier = classifier.eval()
        self.reference_name = name
        self.reference_count = len(images)
        self.domain = CachedFID(ClassifierFeatures(classifier), images, name, batch_size=500, progress=progress)
        self.inception = CachedFID(InceptionFeatures(), images, name, progress=progress) if inception else None

    def score(self, images: torch.Tensor, classes: torch.Tensor | None) -> QualityScores:
        accuracy = self.classifier.accuracy(images, classes) if classes is not None else None
        return QualityScores(
            num_images=len(images),
            prompt_accuracy=accuracy,
            domain_fid=self.domain.score(images),
            fid=self.inception.score(images) if self.inception is not None else None,
        )


def score_image_folder(folder, load_model, reference: str, reference_size: int | None, backend: str = "torchmetrics") -> dict:
    """``migm-shortcut fid``: a folder of PNGs against a reference, by Inception FID and the domain FID
    of the model's classifier, or by clean-fid (``backend="clean-fid"``, no model needed).
    ``load_model()`` gives the model; it is called only once the folder has been checked, so a
    wrong path is reported before a model is loaded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MigmError(f"--images {folder} is not a folder of PNG images")
    if backend == "clean-fid":
        from .cleanfid_backend import cleanfid_score

        images, name = reference_images(reference, reference_size)
        return {"images": str(folder), "reference": name, "backend": "clean-fid",
                "fid": cleanfid_score(folder, images, name)}
    images = to_model_range(load_dataset(folder).images)
    model = load_model()
    if not hasattr(model, "classifier"):
        raise MigmError("fid --model needs a migm-shortcut weights folder (its classifier gives the domain FID)")
    evaluator = SampleEvaluator(model.classifier, reference, reference_size, inception=True)
    scores = evaluator.score(images, None)
    return {"images": str(folder), "num_images": len(images), "reference": evaluator.reference_name,
            "reference_images": evaluator.reference_count, "backend": "torchmetrics", **scores.as_dict()}
