"""The model interface: what the sampler, the shortcut head, the baselines and the trainer need
from a masked image generation model.

A model is one bidirectional pass over a token sequence that holds the prompt and the image
codes (or carries the prompt beside it). Three models implement it:

* ``MiniDiMOO`` (the embedded default, Lumina-DiMOO layout),
* ``AmusedBackbone`` (a diffusers ``UVit2DModel``, in ``migm_shortcut.adapters.amused``),
* ``LLaDAImageBackbone`` (Lumina-DiMOO's LLaDA transformer, in ``migm_shortcut.adapters.dimoo``).

``MaskedImageModel`` spells the interface out; ``BACKBONES`` maps a saved backbone's
``model_type`` to its class, so a weights folder says itself which model it holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from .errors import MigmError
from .io import read_json


@runtime_checkable
class TokenLayout(Protocol):
    """Where prompt and image tokens sit in the sequence, and how prompts become ids."""

    seq_len: int                   # L
    prompt_len: int                # P: the prompt occupies positions 0..P-1
    pad_id: int
    code_offset: int               # image code c has vocabulary id code_offset + c
    codebook_size: int
    vocab_size: int
    num_image_tokens: int          # grid * grid
    image_positions: torch.Tensor  # (grid*grid,) sequence position of every image token, row-major
    prompt_in_sequence: bool       # prompt tokens are model input (DiMOO) or only conditioning (aMUSEd)

    def encode_prompt(self, prompt: str | None) -> torch.Tensor: ...                  # (P,), None: unconditional
    def template(self, prompt_ids: torch.Tensor) -> torch.Tensor: ...                 # (B, P) -> (B, L) all masked
    def with_codes(self, seq: torch.Tensor, codes: torch.Tensor, committed: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class MaskedImageModel(Protocol):
    """The seam every policy and the head plug into.

    * ``features(input_ids)`` — (B, L) -> (B, L, C): the last-layer features (after the final
      norm, before the output projection) at every sequence position;
    * ``logits_from_features(h)`` — (..., C) -> (..., codebook_size): the model's own output
      layer restricted to the image codes, so predicted features give logits exactly as real ones;
    * ``embed_tokens(ids, positions)`` — (..., ) -> (..., C): the frozen token embedding plus the
      position scheme, how the shortcut head reads the tokens just committed;
    * ``embed(input_ids)`` — ``embed_tokens`` at positions 0..L-1 (the sensitivity score's input);
    * ``width`` (C), ``layout`` (a ``TokenLayout``), ``fingerprint`` (architecture + a hash of
      the embedding and output weights: a head trained on one model refuses any other).

    Optional: ``features(ids, kv_cache=)`` and ``features_at(ids, index, cache)`` (partial
    recomputation against cached keys/values) — only ML-Cache needs them.
    """

    width: int
    layout: TokenLayout
    fingerprint: str

    def features(self, input_ids: torch.Tensor) -> torch.Tensor: ...
    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor: ...
    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor: ...
    def parameters(self, recurse: bool = True): ...


def backbone_classes() -> dict[str, type]:
    """``model_type`` -> class of every backbone that can be saved in a weights folder."""
    from .adapters.amused import AmusedBackbone
    from .backbone import MiniDiMOO

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


def check_model(model) -> None:
    """One line naming what a would-be model lacks, instead of an AttributeError mid-sampling."""
    missing = [name for name in ("width", "layout", "fingerprint", "features", "logits_from_features", "embed_tokens", "embed")
               if not hasattr(model, name)]
    if missing:
        raise MigmError(f"{type(model).__name__} does not implement the model interface (missing {', '.join(missing)}); "
                        "see migm_shortcut.interface.MaskedImageModel, or use a supported model: "
                        f"{', '.join(sorted(backbone_classes()))}")
