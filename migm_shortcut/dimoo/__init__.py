"""The Lumina-DiMOO family: an unmodified LLaDA / Lumina-DiMOO checkpoint behind the model contract
(its prompt template, special tokens, image layout and VQ decoder).

Registers the ``lumina-dimoo`` folder kind (options: ``height``, ``width``, ``prompt_len``, ``model_code``).
A hub folder's ``model_index.json`` (a ``LuminaDiMOOPipeline``) does not make it another kind:
detection reads the LLaDA ``config.json``.
"""

from pathlib import Path

from migm_shortcut.io import read_json
from migm_shortcut.registry import ModelKind, register_model_kind

from . import shortcut_head  # noqa: F401  (registers the published DiMOO-Shortcut head architecture)


def is_llada_checkpoint(folder: Path) -> bool:
    config = folder / "config.json"
    return config.is_file() and read_json(config).get("model_type") == "llada"


def load(folder: Path, device="cpu", dtype=None, trust_remote_code: bool = False, **sizes):
    from .model import DiMOOModel

    return DiMOOModel.from_pretrained(folder, trust_remote_code=trust_remote_code, device=device, dtype=dtype, **sizes)


register_model_kind(ModelKind("lumina-dimoo", "a Lumina-DiMOO / LLaDA checkpoint folder (config.json with model_type 'llada')",
                              is_llada_checkpoint, load, order=40, options=("height", "width", "prompt_len", "model_code")))
