"""The embedded default model as one object: tokenizer + backbone + classifier.

A weights folder holds ``backbone/`` (any class of ``migm_shortcut.interface``: the mini
Lumina-DiMOO or the aMUSEd UVit2D) and optionally ``vq/``, ``classifier/``, ``head/`` and
``calibration.json``; missing ones are the shipped tokenizer and classifier (and, for the
shipped backbone, the shipped head and calibration).

>>> from migm_shortcut import load_model
>>> model = load_model()                              # the weights shipped in the package
>>> images, out = model.generate(["a photo of a sneaker"] * 4, seeds=[0, 1, 2, 3])
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import torch

from migm_shortcut.embedded.classifier import ImageClassifier
from migm_shortcut.embedded.data import balanced_subset, load_dataset, to_model_range
from migm_shortcut.embedded.prompts import CLASS_NAMES, canonical_prompt, class_prompts, prompt_class, random_prompt
from migm_shortcut.embedded.tokenizer import VQTokenizer
from migm_shortcut.errors import MigmError
from migm_shortcut.interface import LoadedModel, ReferenceImages, SamplingDefaults, own_head
from migm_shortcut.io import read_json, tensor_digest
from migm_shortcut.modeling import SHIPPED_WEIGHTS

# Chosen from the quality-vs-steps check in docs/results.md (vanilla sampler, 1000 images per N).
DEFAULT_NUM_STEPS = 16
DEFAULTS = SamplingDefaults(num_steps=DEFAULT_NUM_STEPS, guidance_scale=4.0, temperature=1.0)
REFERENCE_NAME = "fashion-mnist"  # the dataset the reference images come from (FID cache names)


def backbone_classes() -> dict[str, type]:
    """``model_type`` -> class of every backbone a weights folder can hold."""
    from migm_shortcut.amused.model import AmusedBackbone
    from migm_shortcut.embedded.backbone import MiniDiMOO

    return {cls.model_type: cls for cls in (MiniDiMOO, AmusedBackbone)}


def load_backbone(directory: str | Path, device: str | torch.device = "cpu"):
    """The backbone saved in ``directory``, whichever supported class it is."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MigmError(f"backbone folder not found: {directory}")
    model_type = read_json(directory / "config.json").get("model_type")
    classes = backbone_classes()
    if model_type not in classes:
        raise MigmError(f"{directory} holds a {model_type!r} backbone; supported: {', '.join(sorted(classes))}")
    return classes[model_type].from_pretrained(directory, device=device)


class ClassifierJudge:
    """The judge of the embedded family: the project classifier, on the class a prompt names."""

    def __init__(self, classifier: ImageClassifier):
        self.classifier = classifier.eval()
        self.num_features = classifier.config.feature_dim
        self.identity = f"classifier:{tensor_digest(*classifier.state_dict().values())}"

    def accuracy(self, images: torch.Tensor, prompts: Sequence[str]) -> float:
        """Share of images the classifier puts in the class their prompt names."""
        return self.classifier.accuracy(images, torch.tensor([prompt_class(p) for p in prompts]))

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Its penultimate layer (the domain FID's features)."""
        if images.dtype == torch.uint8:
            images = images.float() / 127.5 - 1
        device = next(self.classifier.parameters()).device
        return self.classifier.features(images.to(device)).float().cpu()


class EmbeddedModel(LoadedModel):
    """A weights folder's VQ tokenizer, backbone (MiniDiMOO or the project's aMUSEd UVit) and
    classifier (the judge), with the head and calibration that belong to the backbone, if any."""

    kind = "embedded"
    defaults = DEFAULTS

    def __init__(self, image_tokenizer: VQTokenizer, backbone: torch.nn.Module, classifier: ImageClassifier,
                 path: Path | None = None, head_path: Path | None = None, calibration_path: Path | None = None):
        self.image_tokenizer, self.backbone, self.classifier = image_tokenizer, backbone, classifier
        self.path, self.head_path, self.calibration_path = path, head_path, calibration_path
        self.judge = ClassifierJudge(classifier)

    @classmethod
    def load(cls, directory: str | Path | None = None, device="cpu", dtype: torch.dtype | None = None) -> "EmbeddedModel":
        """The registry's loader: ``from_pretrained``, then the cast."""
        model = cls.from_pretrained(directory, device=device)
        if dtype is not None:
            # The fingerprint names the weights as saved: take it before the cast rounds them (a bf16
            # copy of fp16 weights hashes differently), so the shipped head and table still match.
            model.backbone.fingerprint
            model.backbone.to(dtype)
        return model

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None, device: str = "cpu") -> "EmbeddedModel":
        directory = Path(directory) if directory is not None else SHIPPED_WEIGHTS
        if not directory.is_dir():
            raise MigmError(f"weights folder not found: {directory} (run `migm-shortcut train-base --out {directory}`)")
        # A folder that holds only a backbone (and its head) shares the shipped tokenizer and judge.
        part = lambda name: directory / name if (directory / name).is_dir() else SHIPPED_WEIGHTS / name  # noqa: E731
        tokenizer = VQTokenizer.from_pretrained(part("vq"), device=device)
        backbone = load_backbone(directory / "backbone", device=device)
        classifier = ImageClassifier.from_pretrained(part("classifier"), device=device)
        if backbone.config.codebook_size != tokenizer.codebook_size:
            raise MigmError(f"{directory}: backbone expects {backbone.config.codebook_size} codes, tokenizer has {tokenizer.codebook_size}")
        calibration = directory / "calibration.json"
        return cls(tokenizer, backbone, classifier, directory, own_head(directory),
                   calibration if calibration.is_file() else None)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, h, w) codes -> (N, 1, 28, 28) images in [-1, 1]."""
        return self.image_tokenizer.decode(codes)

    def default_prompts(self, num: int) -> list[str]:
        """``num`` prompts that cycle through the classes (calibration and collection without a prompts file)."""
        per_class = -(-num // 10)
        prompts, _ = class_prompts(per_class)
        order = sorted(range(len(prompts)), key=lambda i: (i % per_class, i))[:num]  # interleave the classes
        return [prompts[i] for i in order]

    def evaluation_prompts(self, per_class: int) -> tuple[list[str], list[int]]:
        """The canonical prompt of every class, ``per_class`` times each, in class order, with its class."""
        return class_prompts(per_class)

    def reference_images(self, split: str = "test", size: int | None = None) -> ReferenceImages:
        """Fashion-MNIST's ``split`` (a class-balanced subset of ``size``) and its classes' prompts."""
        data, name = load_dataset(REFERENCE_NAME, split), f"{REFERENCE_NAME}:{split}"
        if size is not None and size < len(data):
            data, name = balanced_subset(data, size), f"{name}:first{size}"
        return ReferenceImages(to_model_range(data.images), name, [canonical_prompt(int(c)) for c in data.labels])

    def demo_prompts(self) -> list[str]:
        """One prompt per class, in class order (the demo's rows)."""
        return [canonical_prompt(c) for c in range(len(CLASS_NAMES))]

    @staticmethod
    def trajectory_prompt(seed: int, index: int) -> tuple[str, int]:
        """Prompt and class of teacher trajectory ``index``: classes cycle, phrasings vary."""
        label = index % 10
        return random_prompt(label, random.Random(seed * 1_000_003 + index)), label
