"""A fifth model family, whole in this one file: a folder kind (``toy.json`` beside a ``net/``
backbone), its loaded model and its registration. ``test_registry.py`` runs the CLI on it without
touching anything else in the package."""

from __future__ import annotations

from pathlib import Path

import torch

from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO
from migm_shortcut.interface import LoadedModel, SamplingDefaults
from migm_shortcut.io import read_json, write_json
from migm_shortcut.registry import ModelKind, register_model_kind




class ToyModel(LoadedModel):
    kind = "toy"
    defaults = SamplingDefaults(num_steps=4, guidance_scale=2.0, temperature=1.0)

    def __init__(self, backbone, path: Path):
        self.backbone, self.path = backbone, path

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Each code is a grey level: (N, H, W) -> (N, 1, H, W) in [-1, 1]."""
        return (codes.float() / (self.backbone.config.codebook_size - 1) * 2 - 1)[:, None]

    def default_prompts(self, num: int) -> list[str]:
        return [["a bag", "a sneaker"][i % 2] for i in range(num)]


def write_toy_folder(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = BackboneConfig(codebook_size=8, grid_size=4, prompt_len=6, width=16, depth=1, heads=2)
    MiniDiMOO(config).save_pretrained(folder / "net")
    write_json(folder / "toy.json", {"family": "toy"})
    return folder


def load(folder: Path, device="cpu", dtype=None, **options) -> ToyModel:
    return ToyModel(MiniDiMOO.from_pretrained(folder / "net", device=device), folder)


def is_toy_folder(folder: Path) -> bool:
    return (folder / "toy.json").is_file() and read_json(folder / "toy.json").get("family") == "toy"


register_model_kind(ModelKind("toy", "a toy folder (toy.json + net/)", is_toy_folder, load, order=90))
