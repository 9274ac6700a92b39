"""``load_model(FOLDER)``: a registry of folder kinds, AutoModel-style.

Each model family registers the folder kinds it reads (``register_model_kind``): how to recognise
one (a cheap look at the folder's files, nothing loaded) and one loader,
``load(folder, device, dtype, **options)``. ``load_model`` asks the kinds in their registered
``order`` and loads the first that matches, so a folder that would match two kinds is resolved by
that documented order, never by accident. The built-in kinds, in detection order:

====  ===================  ==========================================================================
 10   ``weights``          a migm-shortcut weights folder (``backbone/config.json``, from ``train-base``)
 20   ``maskgit``          a MaskGIT-pytorch folder (``MaskGIT/*.pth``, the released layout)
 30   ``amused-pipeline``  a diffusers ``AmusedPipeline`` folder (``model_index.json``)
 40   ``lumina-dimoo``     a Lumina-DiMOO / LLaDA checkpoint (``config.json`` with ``model_type`` "llada")
====  ===================  ==========================================================================

With no folder, the kind registered as the default (``embedded``: the model shipped in the
package). Anything else is refused with one line listing the kinds.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .errors import MigmError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Every loader takes these; a family lists the other options it understands.
COMMON_OPTIONS = ("trust_remote_code",)
# The families shipped with the package: importing each registers its kinds.
BUILTIN_FAMILIES = ("migm_shortcut.embedded", "migm_shortcut.maskgit", "migm_shortcut.amused", "migm_shortcut.dimoo")


@dataclass(frozen=True)
class ModelKind:
    name: str
    description: str                  # how the folder looks, for the list of kinds in error lines
    detect: Callable[[Path], bool]    # cheap: looks at files, loads nothing
    load: Callable[..., object]       # load(folder, device, dtype, **options) -> LoadedModel
    order: int                        # detection order: lower is asked first
    options: tuple[str, ...] = ()     # the load options this kind takes besides COMMON_OPTIONS
    default: bool = False             # the kind load_model(None) loads


_KINDS: dict[str, ModelKind] = {}
_builtins_loaded = False


def register_model_kind(kind: ModelKind) -> ModelKind:
    """Add a folder kind (a family's ``__init__`` calls this); a name or order already taken is refused."""
    for other in _KINDS.values():
        if other.name != kind.name and other.order == kind.order:
            raise MigmError(f"model kind {kind.name!r}: detection order {kind.order} is taken by {other.name!r}")
    _KINDS[kind.name] = kind
    return kind


def model_kinds() -> list[ModelKind]:
    """Every registered kind, in detection order."""
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for family in BUILTIN_FAMILIES:
            importlib.import_module(family)
    return sorted(_KINDS.values(), key=lambda k: k.order)


def kinds_line() -> str:
    return "; ".join(f"{k.name}: {k.description}" for k in model_kinds())


def detect_kind(path: str | Path | None) -> ModelKind:
    """The first registered kind that recognises the folder; one line listing the kinds otherwise."""
    kinds = model_kinds()
    if path is None:
        return next(k for k in kinds if k.default)
    folder = Path(path)
    if not folder.is_dir():
        raise MigmError(f"model folder not found: {folder} (train one with `migm-shortcut train-base --out {folder}`, "
                        "or pass a checkpoint folder)")
    for kind in kinds:
        if not kind.default and kind.detect(folder):
            return kind
    raise MigmError(f"{folder} is not a model folder this package knows; supported: {kinds_line()}")


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise MigmError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
        return DTYPES[dtype]
    return dtype


def load_model(path: str | Path | None = None, *, device: str | torch.device = "cpu",
               dtype: str | torch.dtype | None = None, rule_options: dict | None = None, **options):
    """The model in ``path``, ready to sample on ``device`` (see the module docstring for the kinds).

    ``options`` go to the kind's loader: ``trust_remote_code`` (every kind: allow a checkpoint
    folder's own Python code to run; it is code execution, so it is off by default) and the ones a
    kind lists (Lumina-DiMOO: ``height``, ``width``, ``prompt_len``; MaskGIT: ``class_names``).
    An option the kind does not take is refused in one line. Options left at None are not given.
    ``rule_options`` change settings of the family's sampling rule (MaskGIT: ``choice_temperature``,
    ``schedule``); one the rule does not have is refused in one line.
    """
    dtype = resolve_dtype(dtype)
    kind = detect_kind(path)
    given = {k: v for k, v in options.items() if v is not None}
    for name in given:
        if name in COMMON_OPTIONS or name in kind.options:
            continue
        takers = [k.name for k in model_kinds() if name in k.options]
        if not takers:
            raise MigmError(f"unknown load option {name!r}")
        raise MigmError(f"{name} applies to {', '.join(takers)} models; this folder is a {kind.name} model")
    model = kind.load(None if path is None else Path(path), device=device, dtype=dtype, **given)
    rule_options = {k: v for k, v in (rule_options or {}).items() if v is not None}
    if rule_options:
        model.rule = model.rule.replace(**rule_options)
    return model
