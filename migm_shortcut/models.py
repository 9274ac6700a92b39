"""``load_model(PATH)``: one way to name a model, whatever kind of folder it is.

The kind is read from the folder:

* no path — the embedded model shipped with the package;
* a project weights folder (``backbone/config.json``, written by ``train-base``) — the
  embedded mini DiMOO or the project's aMUSEd UVit2D, with the head and calibration inside;
* a Lumina-DiMOO / LLaDA checkpoint folder (``config.json`` with ``model_type`` "llada").

Anything else is refused with one line listing these kinds. Every loaded model has
``backbone`` (the model interface), ``decode(codes)``, ``sampler(...)``, ``generate(...)``,
``defaults`` (its own N, CFG scale and temperature), ``kind`` and, where one exists, the
``head_path`` and ``calibration_path`` that belong to it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import MigmError
from .io import read_json

MODEL_KINDS = (
    "the embedded model (no --model)",
    "a migm-shortcut weights folder (backbone/config.json, from train-base)",
    "a Lumina-DiMOO / LLaDA checkpoint folder (config.json with model_type 'llada')",
    "a MaskGIT-pytorch folder (MaskGIT/*.pth, the released layout)",
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def detect_kind(path: str | Path | None) -> str:
    """'embedded', 'weights' or 'llada'; one line listing the supported kinds otherwise."""
    if path is None:
        return "embedded"
    folder = Path(path)
    if not folder.is_dir():
        raise MigmError(f"model folder not found: {folder} (train one with `migm-shortcut train-base --out {folder}`, "
                        "or pass a checkpoint folder)")
    if (folder / "backbone" / "config.json").is_file():
        return "weights"
    if (folder / "MaskGIT").is_dir():
        return "maskgit"
    if (folder / "config.json").is_file():
        model_type = read_json(folder / "config.json").get("model_type")
        if model_type == "llada":
            return "llada"
        raise MigmError(f"{folder} holds a {model_type!r} model, which is not supported; supported: {'; '.join(MODEL_KINDS)}")
    raise MigmError(f"{folder} is not a model folder this package knows; supported: {'; '.join(MODEL_KINDS)}")


def load_model(path: str | Path | None = None, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
               trust_remote_code: bool = False, height: int | None = None, width: int | None = None,
               prompt_len: int | None = None, class_names: list[str] | None = None):
    """The model in ``path`` (see the module docstring for the kinds), ready to sample on ``device``.

    ``height``/``width`` (pixels) and ``prompt_len`` (prompt tokens) apply to models that take
    them (Lumina-DiMOO: 1024 x 1024 and 256 by default); ``class_names`` names a class-conditional
    model's classes (MaskGIT: then prompts may be names as well as ids). ``trust_remote_code`` allows a
    checkpoint folder's own Python code to run: it is code execution, so it is off by default.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise MigmError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    kind = detect_kind(path)
    sizes = {k: v for k, v in (("height", height), ("width", width), ("prompt_len", prompt_len)) if v is not None}
    if class_names is not None and kind != "maskgit":
        raise MigmError("class names apply to class-conditional models (MaskGIT); this model takes text prompts")
    if kind == "maskgit":
        from .adapters.maskgit import MaskGITModel

        if sizes:
            raise MigmError(f"{', '.join(sizes)} apply to Lumina-DiMOO checkpoints; a MaskGIT checkpoint has a fixed size")
        return MaskGITModel.from_pretrained(path, device=device, dtype=dtype, class_names=class_names)
    if kind in ("embedded", "weights"):
        from .pipeline import EmbeddedModel

        extra = {k: v for k, v in (("height", height), ("width", width), ("prompt_len", prompt_len)) if v is not None}
        if extra:
            raise MigmError(f"{', '.join(extra)} apply to Lumina-DiMOO checkpoints; this model has a fixed size")
        model = EmbeddedModel.from_pretrained(path, device=device)
        if dtype is not None:
            model.backbone.to(dtype)
        return model
    from .adapters.dimoo import DiMOOModel

    return DiMOOModel.from_pretrained(path, trust_remote_code=trust_remote_code, device=device, dtype=dtype, **sizes)
