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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .classifier import FashionClassifier
from .errors import MigmError
from .interface import load_backbone
from .modeling import SHIPPED_WEIGHTS
from .models import LoadedModel
from .prompts import CLASS_NAMES, canonical_prompt, class_prompts, prompt_class, random_prompt
from .tokenizer import VQTokenizer

# Chosen from the quality-vs-steps check in docs/results.md (vanilla sampler, 1000 images per N).
DEFAULT_NUM_STEPS = 16
DEFAULT_GUIDANCE_SCALE = 4.0
DEFAULT_TEMPERATURE = 1.0


@dataclass
class EmbeddedModel(LoadedModel):
    tokenizer: VQTokenizer
    backbone: torch.nn.Module  # MiniDiMOO or any backbone of migm_shortcut.interface (AmusedBackbone, ...)
    classifier: FashionClassifier
    path: Path | None = None
    head_path: Path | None = None         # the head that belongs to this backbone, if one exists
    calibration_path: Path | None = None  # its sensitivity table, if one exists

    kind = "embedded"
    defaults = {"num_steps": DEFAULT_NUM_STEPS, "guidance_scale": DEFAULT_GUIDANCE_SCALE, "temperature": DEFAULT_TEMPERATURE}

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None, device: str = "cpu") -> "EmbeddedModel":
        directory = Path(directory) if directory is not None else SHIPPED_WEIGHTS
        if not directory.is_dir():
            raise MigmError(f"weights folder not found: {directory} (run `migm-shortcut train-base --out {directory}`)")
        # A folder that holds only a backbone (and its head) shares the shipped tokenizer and judge.
        part = lambda name: directory / name if (directory / name).is_dir() else SHIPPED_WEIGHTS / name  # noqa: E731
        tokenizer = VQTokenizer.from_pretrained(part("vq"), device=device)
        backbone = load_backbone(directory / "backbone", device=device)
        classifier = FashionClassifier.from_pretrained(part("classifier"), device=device)
        if backbone.config.codebook_size != tokenizer.codebook_size:
            raise MigmError(f"{directory}: backbone expects {backbone.config.codebook_size} codes, tokenizer has {tokenizer.codebook_size}")
        head = directory / "head"
        calibration = directory / "calibration.json"
        return cls(tokenizer, backbone, classifier, directory, head if head.is_dir() else None,
                   calibration if calibration.is_file() else None)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, h, w) codes -> (N, 1, 28, 28) images in [-1, 1]."""
        return self.tokenizer.decode(codes)

    def default_prompts(self, num: int) -> list[str]:
        """``num`` prompts that cycle through the classes (calibration and collection without a prompts file)."""
        per_class = -(-num // 10)
        prompts, _ = class_prompts(per_class)
        order = sorted(range(len(prompts)), key=lambda i: (i % per_class, i))[:num]  # interleave the classes
        return [prompts[i] for i in order]

    @staticmethod
    def class_prompts(per_class: int) -> tuple[list[str], list[int]]:
        """The canonical prompt of every class, ``per_class`` times each, in class order, with its class."""
        return class_prompts(per_class)

    def demo_prompts(self) -> list[str]:
        """One prompt per class, in class order (the demo's rows)."""
        return [canonical_prompt(c) for c in range(len(CLASS_NAMES))]

    def prompt_accuracy(self, images: torch.Tensor, prompts: Sequence[str]) -> float:
        """Share of images the project classifier puts in the class their prompt names."""
        return self.classifier.accuracy(images, torch.tensor([prompt_class(p) for p in prompts]))

    @staticmethod
    def trajectory_prompt(seed: int, index: int) -> tuple[str, int]:
        """Prompt and class of teacher trajectory ``index``: classes cycle, phrasings vary."""
        label = index % 10
        return random_prompt(label, random.Random(seed * 1_000_003 + index)), label
