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
    grid_shape: tuple[int, int]    # (H, W) image tokens; rectangular grids are allowed
    prompt_len: int                # P: the prompt occupies positions 0..P-1
    pad_id: int
    code_offset: int               # image code c has vocabulary id code_offset + c
    codebook_size: int
    vocab_size: int
    num_image_tokens: int          # H * W
    image_positions: torch.Tensor  # (H*W,) sequence position of every image token, row-major
    prompt_in_sequence: bool       # prompt tokens are model input (DiMOO) or only conditioning (aMUSEd)

    # Conditioning: a prompt (text, or a class id for class-conditional models) -> (P,) ids;
    # None is the model's own unconditional input, as its authors define it.
    def encode_prompt(self, prompt: str | int | None) -> torch.Tensor: ...
    def template(self, prompt_ids: torch.Tensor) -> torch.Tensor: ...                 # (B, P) -> (B, L) all masked
    def with_codes(self, seq: torch.Tensor, codes: torch.Tensor, committed: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class MaskedImageModel(Protocol):
    """The seam every policy and the head plug into.

    * ``features(input_ids)`` — (B, L) -> (B, L, C): the last-layer features (after the final
      norm, before the output projection) at every sequence position;
    * ``logits_from_features(h, positions=None)`` — (..., C) -> (..., codebook_size): the model's
      own output layer restricted to the image codes, so predicted features give logits exactly as
      real ones; ``positions`` (the rows' sequence positions, shaped like ``h[..., 0]``) is for
      models whose output layer depends on the position (MaskGIT's per-position bias); callers
      always pass it, others ignore it;
    * ``embed_tokens(ids, positions)`` — (..., ) -> (..., C): the frozen token embedding plus the
      position scheme, how the shortcut head reads the tokens just committed;
    * ``embed(input_ids)`` — ``embed_tokens`` at positions 0..L-1 (the sensitivity score's input);
    * ``width`` (C), ``layout`` (a ``TokenLayout``: positions, and conditioning through
      ``layout.encode_prompt``), ``fingerprint`` (architecture + a hash of the embedding and
      output weights: a head trained on one model refuses any other);
    * ``num_parameters()``, ``device``, ``dtype`` — what training, benchmarks and the sampler
      need to know about where and how the model runs (``ModelInfo`` supplies them for modules).

    Optional: ``features(ids, kv_cache=)`` and ``features_at(ids, index, cache)`` (partial
    recomputation against cached keys/values) — only ML-Cache needs them.
    """

    width: int
    layout: TokenLayout
    fingerprint: str
    device: torch.device
    dtype: torch.dtype

    def features(self, input_ids: torch.Tensor) -> torch.Tensor: ...
    def logits_from_features(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor: ...
    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor: ...
    def num_parameters(self) -> int: ...


INTERFACE_MEMBERS = ("width", "layout", "fingerprint", "device", "dtype", "features", "logits_from_features",
                     "embed_tokens", "embed", "num_parameters")
LAYOUT_MEMBERS = ("seq_len", "grid_shape", "prompt_len", "pad_id", "code_offset", "codebook_size", "num_image_tokens",
                  "image_positions", "prompt_in_sequence", "encode_prompt", "template", "with_codes")


class ModelInfo:
    """``device``, ``dtype`` and ``num_parameters`` for a model that is an ``nn.Module``."""

    def _first_parameter(self) -> torch.Tensor:
        for p in self.parameters():
            return p
        raise MigmError(f"{type(self).__name__} has no parameters")

    @property
    def device(self) -> torch.device:
        return self._first_parameter().device

    @property
    def dtype(self) -> torch.dtype:
        return self._first_parameter().dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


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
    """One line naming what a would-be model lacks, instead of an AttributeError mid-sampling.

    Every entry point (the sampler, collection, head training, calibration, the sweep, the
    pipeline hook's adapter) calls it once with the model it was given.
    """
    missing = [name for name in INTERFACE_MEMBERS if not hasattr(model, name)]
    if not missing:
        missing = [f"layout.{name}" for name in LAYOUT_MEMBERS if not hasattr(model.layout, name)]
    if missing:
        raise MigmError(f"{type(model).__name__} does not implement the model interface (missing {', '.join(missing)}); "
                        "see migm_shortcut.interface.MaskedImageModel, or use a supported model: "
                        f"{', '.join(sorted(backbone_classes()))}")
