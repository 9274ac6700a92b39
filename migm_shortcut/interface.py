"""The model contract: everything the sampler, the policies, the trainers and the evaluation may
ask of a model, in two parts.

* ``MaskedImageModel`` (with its ``TokenLayout``) is the *backbone*: one bidirectional pass over a
  token sequence that holds the prompt and the image codes (or carries the prompt beside it), its
  last-layer features, its own output layer and its frozen token embedding. The step policies and
  the shortcut head see only this.
* ``LoadedModel`` is what ``load_model`` returns for a folder: the backbone plus what the family
  knows about it: how codes become images, its sampling rule and default settings, how it reads
  prompts, an optional judge and reference images, the head and calibration that belong to it and
  the head architecture it trains by default. Every member has a default here, so a family states
  only what it has, and no caller probes a model with ``hasattr``.

Each family implements both in its own folder (``migm_shortcut/embedded``, ``amused``, ``dimoo``,
``maskgit``) and registers its folder kinds with ``migm_shortcut.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Protocol, Sequence, runtime_checkable

import torch

from migm_shortcut.checks import check_sampling
from migm_shortcut.errors import MigmError
from migm_shortcut.rules import DiMOORule, SamplingRule


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
    recomputation against cached keys/values) — only ML-Cache needs them. With defaults in
    ``ModelInfo``: ``embed_ids(ids)``, the bare token embedding for heads that place positions
    themselves (the published DiMOO-Shortcut head applies RoPE), and ``feature_valid(prompt_rows)``,
    (B, P) prompt ids of each row -> (B, L) bool, False at positions the model's own forward never
    sees (Lumina-DiMOO strips its batching padding), or None when it sees them all.
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
# The optional members: ModelInfo gives embed_ids and feature_valid defaults; features_at is ML-Cache's.
OPTIONAL_MEMBERS = ("embed_ids", "feature_valid", "features_at")
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

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        raise MigmError(f"{type(self).__name__} does not expose its bare token embedding (embed_ids), which a head "
                        "that applies positions itself needs; train a generic head for it (--architecture generic)")

    def feature_valid(self, prompt_rows: torch.Tensor) -> torch.Tensor | None:
        return None  # the model's forward sees every position of its sequence


def has_partial_forward(backbone) -> bool:
    """Whether a backbone offers the optional partial recomputation against cached keys/values
    (``features(ids, kv_cache=)`` and ``features_at(ids, index, cache)``; ML-Cache and hybrid need it)."""
    return callable(getattr(backbone, "features_at", None))


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
                        "see migm_shortcut.interface.MaskedImageModel, or load a supported folder with load_model")


HEAD_FOLDER = "shortcut_head"  # where a model folder keeps the head that belongs to it, in every family


def own_head(folder: Path | str | None) -> Path | None:
    """``folder/shortcut_head`` when it holds a saved head (the model's default head), else None."""
    head = None if folder is None else Path(folder) / HEAD_FOLDER
    return head if head is not None and (head / "config.json").is_file() else None


@dataclass(frozen=True)
class SamplingDefaults:
    """A family's own sampling settings: what a command uses when a flag is left unset."""

    num_steps: int
    guidance_scale: float
    temperature: float = 1.0

    def __post_init__(self):
        check_sampling(self.num_steps, self.guidance_scale, self.temperature)


@dataclass
class ReferenceImages:
    """Real images a family scores FID against: (N, C, H, W) in [-1, 1], the set's name (it keys the
    FID cache), and the prompt each image answers where the set is labelled (prompt accuracy of real
    images)."""

    images: torch.Tensor
    name: str
    prompts: list | None = None


class PromptJudge(Protocol):
    """An optional judge of generated images: the share whose content matches their prompt, and the
    image features its FID is computed on (``domain FID``)."""

    num_features: int   # width of ``features``
    identity: str       # names the judge's weights (keys the FID cache)

    def accuracy(self, images: torch.Tensor, prompts: Sequence) -> float: ...
    def features(self, images: torch.Tensor) -> torch.Tensor: ...


class LoadedModel:
    """The loaded-model contract (see the module docstring); families subclass it.

    Required: ``backbone`` (a ``MaskedImageModel``), ``decode(codes)`` and the class attributes
    ``kind`` and ``defaults``. The rest is optional with the defaults below.
    """

    kind: ClassVar[str] = "base"
    defaults: ClassVar[SamplingDefaults]
    rule: SamplingRule = DiMOORule()
    head_architecture: ClassVar[str] = "generic"  # the ShortcutHead architecture train-head builds by default
    head_options: ClassVar[dict] = {}              # and its sizes (ratio, heads, num_blocks) where the family has published ones
    backbone: MaskedImageModel
    path: Path | None = None
    checkpoint: Path | None = None         # the weights file it was loaded from, where the folder holds several
    head_path: Path | None = None          # the head that belongs to the model, where one exists
    calibration_path: Path | None = None   # its sensitivity table, where one exists
    judge: PromptJudge | None = None       # judges prompt accuracy (and domain FID), where the family has one
    image_tokenizer = None                 # encodes images to codes (``encode``/``decode``), where the family has one
    pipe = None                            # the diffusers pipeline the model came from, where it did
    # ``trajectory_prompt(seed, index) -> (prompt, label)``: the prompts collection and online training
    # cycle through without a prompts file, where the family has its own (None: it has none).
    trajectory_prompt: Callable[[int, int], tuple] | None = None

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, H, W) codes -> images in [-1, 1]."""
        raise NotImplementedError

    def parse_prompt(self, text: str):
        """A prompt as typed (a line of a prompts file) -> as the layout takes it."""
        return text

    def parse_prompts(self, lines: Sequence[str]) -> list:
        return [self.parse_prompt(line) for line in lines]

    def default_prompts(self, num: int) -> list | None:
        """``num`` prompts for calibration and collection without a prompts file; None: the family has none."""
        return None

    def demo_prompts(self) -> list | None:
        """The demo's rows; None: the family has none."""
        return None

    def evaluation_prompts(self, per_class: int) -> tuple[list, list[int]] | None:
        """The built-in evaluation set (prompts and their class), for sweeps without a prompts file."""
        return None

    def class_prompts(self, per_class: int) -> list | None:
        """Every class of a class-conditional model, ``per_class`` times each, class by class (as an
        evaluation over a labelled validation set draws them); None: the family is not class-conditional."""
        return None

    def reference_images(self, split: str = "test", size: int | None = None) -> ReferenceImages | None:
        """Real images of ``split`` to score FID against (``size`` of them); None: the family has none."""
        return None

    def require_prompts(self, prompts: list | None, num: int | None = None) -> list:
        """The prompts given, else the family's defaults, else one line saying what to pass."""
        if prompts:
            return list(prompts) if num is None else [prompts[i % len(prompts)] for i in range(num)]
        defaults = self.default_prompts(num or 1)
        if defaults is None:
            raise MigmError(f"this model ({self.kind}) has no built-in prompts; pass --prompts-file FILE (one prompt per line)")
        return defaults
