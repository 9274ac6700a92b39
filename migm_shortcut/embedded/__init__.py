"""The embedded family: the small Fashion-MNIST model shipped in the package (a mini Lumina-DiMOO
over a VQ tokenizer, with a classifier that judges prompt accuracy), and the weights folders
``train-base`` writes. It exists so that everything runs and is tested anywhere, offline.

Registers two folder kinds: ``embedded`` (no folder: the shipped weights) and ``weights``.
"""

from pathlib import Path

from migm_shortcut.registry import ModelKind, register_model_kind


def load(folder: Path | None, device="cpu", dtype=None, **options):
    from .model import EmbeddedModel

    return EmbeddedModel.load(folder, device=device, dtype=dtype)


register_model_kind(ModelKind("embedded", "the embedded model (no --model)", lambda folder: False, load, order=0,
                              default=True))
register_model_kind(ModelKind("weights", "a migm-shortcut weights folder (backbone/config.json, from train-base)",
                              lambda folder: (folder / "backbone" / "config.json").is_file(), load, order=10))
