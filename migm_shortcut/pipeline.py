"""The embedded default model as one object: tokenizer + backbone + classifier.

A weights folder holds ``backbone/`` (any class of ``migm_shortcut.interface``: the mini
Lumina-DiMOO or the aMUSEd UVit2D) and optionally ``vq/`` and ``classifier/``; missing ones
are the shipped tokenizer and classifier.

>>> from migm_shortcut import EmbeddedModel
>>> model = EmbeddedModel.from_pretrained()          # the weights shipped in the package
>>> images, out = model.generate(["a photo of a sneaker"] * 4, seeds=[0, 1, 2, 3])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .backbone import MiniDiMOO
from .interface import load_backbone
from .classifier import FashionClassifier
from .errors import MigmError
from .modeling import SHIPPED_WEIGHTS
from .samplers import DiMOOSampler, SampleOutput, StepPolicy
from .tokenizer import VQTokenizer

# Chosen from the quality-vs-steps check in the README (vanilla sampler, 1000 images per N).
DEFAULT_NUM_STEPS = 16
DEFAULT_GUIDANCE_SCALE = 4.0
DEFAULT_TEMPERATURE = 1.0


@dataclass
class EmbeddedModel:
    tokenizer: VQTokenizer
    backbone: MiniDiMOO  # or any backbone of migm_shortcut.interface (AmusedBackbone, ...)
    classifier: FashionClassifier

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
        return cls(tokenizer, backbone, classifier)

    def sampler(self, num_steps: int = DEFAULT_NUM_STEPS, guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
                temperature: float = DEFAULT_TEMPERATURE, policy: StepPolicy | None = None) -> DiMOOSampler:
        return DiMOOSampler(self.backbone, num_steps, guidance_scale, temperature, policy)

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], num_steps: int = DEFAULT_NUM_STEPS,
                 policy: StepPolicy | None = None, guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
                 temperature: float = DEFAULT_TEMPERATURE) -> tuple[torch.Tensor, SampleOutput]:
        """Images (B, 1, 28, 28) in [-1, 1] and the sampler's output (codes, step counts, time)."""
        out = self.sampler(num_steps, guidance_scale, temperature, policy).generate(prompts, seeds)
        return self.tokenizer.decode(out.codes), out
