"""Lumina-DiMOO: its published LLaDA model behind the package's model interface, through hooks only.

Lumina-DiMOO (``LLaDAForMultiModalGeneration``, a subclass of ``LLaDAModelLM``) is a
bidirectional transformer over one sequence holding text and image tokens. What this adapter
matches, from the published code:

* **the sequence** — ``[tokenizer("<system>SYSTEM</system><user>PROMPT</user>")] [answer start]
  [begin image] rows x (W x mask + newline) [end image] [answer end]``; the unconditional branch
  replaces PROMPT with ``<uncondition>``. The grid is height/16 x width/16 (rectangular allowed).
* **the special ids** — mask 126336, newline 126084, answer start/end 126354/126355, begin/end
  of image 126349/126350, uncondition 126351; image codes are ids 126356 .. 126356+8191 of a
  134548-id vocabulary. Loading checks the checkpoint's config and tokenizer against them.
* **features** — the output of ``transformer.ln_f`` (after the final norm, before the output
  projection), read by a forward hook that then ends the forward: the full-vocabulary projection
  after it is not needed, because the sampler reads only the image-code slice, which
  ``logits_from_features`` computes with ``transformer.ff_out`` (or the tied ``wte``) and
  LLaDA's optional logit scaling: exactly the model's own logits there.
* **padding** — the published attention ignores attention masks (``attn_mask=None``), and the
  published ``LLaDAForMultiModalGeneration.forward`` builds its own mask from list lengths, so
  a caller cannot pass one. The layout left-pads each prompt to ``prompt_len``; ``features`` cuts
  the padding every row shares and masks the rest out of the attention through a hook on the
  published blocks' attention method (``masked_padding``), so a batch of prompts of any lengths
  is one forward of the inner ``LLaDAModel``, and each row's features equal DiMOO's own batch-1
  forward of that row (exactly when the lengths are equal, within rounding otherwise).
* **embed_tokens** — the frozen ``wte`` plus a fixed 1D sine-cosine code of the position (LLaDA
  uses RoPE inside attention and has no position table, so the head gets an explicit one).

``DiMOOModel.from_pretrained(folder)`` loads a checkpoint folder as downloaded (``config.json``
with ``model_type`` "llada", the weights, the tokenizer, ``vqvae/`` for decoding, and on the hub a
``model_index.json`` beside them). The model code comes from the folder (``auto_map``) or from
``model_code`` (``--model-code DIR``: Lumina-DiMOO's ``model/`` package); loading it runs that code,
so it happens only with ``trust_remote_code=True`` (CLI ``--trust-remote-code``). How the published
class is loaded on transformers 4.46 to 5.x without editing it: ``dimoo/loading.py``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from migm_shortcut.dimoo import loading
from migm_shortcut.errors import MigmError
from migm_shortcut.interface import LoadedModel, ModelInfo, SamplingDefaults, own_head
from migm_shortcut.io import tensor_digest
from migm_shortcut.vq import load_vqvae, vq_decode
from migm_shortcut.sequence import check_sequence_shape, grid_positions, write_image_codes

# -- facts from the published Lumina-DiMOO code ----------------------------------------------
DIMOO_SPECIAL_IDS = {
    "mask": 126336, "newline": 126084, "answer_start": 126354, "answer_end": 126355,
    "begin_image": 126349, "end_image": 126350, "uncondition": 126351,
}
DIMOO_CODE_OFFSET = 126356
DIMOO_CODEBOOK_SIZE = 8192
DIMOO_VOCAB_SIZE = DIMOO_CODE_OFFSET + DIMOO_CODEBOOK_SIZE  # 134548
DIMOO_SYSTEM_PROMPT = "Generate an image according to the text prompt."
DIMOO_UNCOND_TEXT = "<uncondition>"
PIXELS_PER_TOKEN = 16
DIMOO_DEFAULTS = SamplingDefaults(num_steps=64, guidance_scale=4.0, temperature=1.0)


def dimoo_prompt(text: str) -> str:
    """DiMOO's text-to-image template around a user prompt."""
    return f"<system>{DIMOO_SYSTEM_PROMPT}</system><user>{text}</user>"


def dimoo_grid(height: int, width: int) -> tuple[int, int]:
    """Image tokens per axis for a requested size: 16 pixels per token, as DiMOO computes it."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < PIXELS_PER_TOKEN or value % PIXELS_PER_TOKEN:
            raise MigmError(f"image {name} must be a positive multiple of {PIXELS_PER_TOKEN} pixels "
                            f"(one DiMOO token each), got {value!r}")
    return height // PIXELS_PER_TOKEN, width // PIXELS_PER_TOKEN


# -- the layout --------------------------------------------------------------------------
class LLaDAImageLayout:
    """``[left padding][prompt ids][header][H x (W codes + newline)][footer]``, fixed length.

    ``tokenize(text)`` gives a prompt's ids (for DiMOO: its tokenizer on the template);
    ``uncond_ids`` is the unconditional prompt's. Prompts are left-padded with ``pad_id`` to
    ``prompt_len``; ``LLaDAImageBackbone`` strips that padding before the model sees it.
    """

    prompt_in_sequence = True
    image_delimiters = True

    def __init__(self, tokenize: Callable[[str], Sequence[int]], *, prompt_len: int, grid_shape: tuple[int, int],
                 code_offset: int, codebook_size: int, mask_id: int, newline_id: int, pad_id: int,
                 uncond_ids: Sequence[int], header_ids: Sequence[int] = (), footer_ids: Sequence[int] = ()):
        self.tokenize = tokenize
        self.prompt_len, self.code_offset, self.mask_id = int(prompt_len), code_offset, mask_id
        self.newline_id, self.pad_id = newline_id, pad_id
        self.header_ids, self.footer_ids = list(header_ids), list(footer_ids)
        self.codebook_size = codebook_size
        self.vocab_size = code_offset + codebook_size
        h, w = self.grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
        self.num_image_tokens = h * w
        start = self.prompt_len + len(self.header_ids)
        self.image_positions, self.eor_positions = grid_positions(start, h, w, end_of_row=True)
        self.seq_len = start + h * (w + 1) + len(self.footer_ids)
        self.uncond_ids = self._checked(list(uncond_ids), "the unconditional prompt")

    @classmethod
    def for_dimoo(cls, tokenizer, height: int = 1024, width: int = 1024, prompt_len: int = 256) -> "LLaDAImageLayout":
        """DiMOO's text-to-image sequence for ``height x width`` images, prompts from its own tokenizer."""
        ids = DIMOO_SPECIAL_IDS
        pad = tokenizer.pad_token_id if getattr(tokenizer, "pad_token_id", None) is not None else 0
        return cls(lambda text: tokenizer(dimoo_prompt(text))["input_ids"], prompt_len=prompt_len,
                   grid_shape=dimoo_grid(height, width), code_offset=DIMOO_CODE_OFFSET, codebook_size=DIMOO_CODEBOOK_SIZE,
                   mask_id=ids["mask"], newline_id=ids["newline"], pad_id=pad,
                   uncond_ids=tokenizer(dimoo_prompt(DIMOO_UNCOND_TEXT))["input_ids"],
                   header_ids=[ids["answer_start"], ids["begin_image"]], footer_ids=[ids["end_image"], ids["answer_end"]])

    def _checked(self, ids: list[int], what: str) -> list[int]:
        if len(ids) > self.prompt_len:
            raise MigmError(f"{what} is {len(ids)} tokens; at most {self.prompt_len} fit "
                            "(raise the prompt length: --max-prompt-tokens / prompt_len)")
        if ids and ids[0] == self.pad_id:
            raise MigmError(f"{what} starts with the padding id {self.pad_id}, which the layout uses to left-pad prompts; "
                            "use a tokenizer whose pad token does not start prompts")
        return ids

    def encode_prompt(self, prompt: str | None) -> torch.Tensor:
        if prompt is None:
            ids = self.uncond_ids
        elif isinstance(prompt, str):
            ids = self._checked(list(self.tokenize(prompt)), f"prompt {prompt[:40]!r}")
        else:
            raise MigmError(f"this model takes text prompts, got {prompt!r}")
        out = torch.full((self.prompt_len,), self.pad_id, dtype=torch.long)
        if ids:
            out[self.prompt_len - len(ids):] = torch.tensor(ids, dtype=torch.long)
        return out

    def template(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        b = prompt_ids.shape[0]
        seq = torch.full((b, self.seq_len), self.mask_id, dtype=torch.long, device=prompt_ids.device)
        seq[:, : self.prompt_len] = prompt_ids
        h = len(self.header_ids)
        if h:
            seq[:, self.prompt_len : self.prompt_len + h] = torch.tensor(self.header_ids, device=seq.device)
        seq[:, self.eor_positions.to(seq.device)] = self.newline_id
        if self.footer_ids:
            seq[:, -len(self.footer_ids):] = torch.tensor(self.footer_ids, device=seq.device)
        return seq

    def with_codes(self, seq: torch.Tensor, codes: torch.Tensor, committed: torch.Tensor) -> torch.Tensor:
        return write_image_codes(self, seq, codes, committed)


# -- the adapter ---------------------------------------------------------------------------
class _FeaturesReady(Exception):
    """Raised by the ln_f hook to end the forward once the features exist."""


def inner_llada(model: nn.Module) -> nn.Module:
    """The ``LLaDAModel`` that owns ``.transformer``: the model itself, or ``model.model`` of an
    ``LLaDAModelLM`` / ``LLaDAForMultiModalGeneration``."""
    for candidate in (model, getattr(model, "model", None)):
        blocks = getattr(candidate, "transformer", None)
        if isinstance(blocks, nn.ModuleDict) and {"wte", "ln_f"} <= set(blocks.keys()):
            return candidate
    raise MigmError(f"{type(model).__name__} is not an LLaDA-style model (expected .transformer or .model.transformer "
                    "with wte and ln_f); supported: Lumina-DiMOO / LLaDA (LLaDAForMultiModalGeneration, LLaDAModelLM)")


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


@contextmanager
def masked_padding(blocks: Sequence[nn.Module], key_valid: torch.Tensor):
    """While active, every block's attention leaves out the keys where ``key_valid`` (B, L) is False.

    The published blocks compute attention in ``_scaled_dot_product_attention(q, k, v, attn_mask=None,
    dropout_p=0.0, is_causal=False)``, which drops any mask it is given (masked diffusion models run
    unmasked). The hook shadows that method on each block instance, not in their code, with the same
    computation plus the padding mask (and the published repeat of grouped key/value heads), and
    removes itself on exit."""
    mask = key_valid[:, None, None, :]

    def attend(q, k, v, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False):
        if k.size(1) != q.size(1):
            k = k.repeat_interleave(q.size(1) // k.size(1), dim=1, output_size=q.size(1))
            v = v.repeat_interleave(q.size(1) // v.size(1), dim=1, output_size=q.size(1))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=False)

    for block in blocks:
        block._scaled_dot_product_attention = attend
    try:
        yield
    finally:
        for block in blocks:
            del block._scaled_dot_product_attention


class LLaDAImageBackbone(ModelInfo, nn.Module):
    """An unmodified LLaDA / Lumina-DiMOO model + its image layout = the package's model interface."""

    def __init__(self, model: nn.Module, layout: LLaDAImageLayout):
        super().__init__()
        self.model = model
        self.llada = inner_llada(model)
        self.transformer = self.llada.transformer
        self.layout = layout
        cfg = getattr(model, "config", None)
        self.width = self.transformer["wte"].weight.shape[1]
        self.scale_logits = bool(getattr(cfg, "scale_logits", False))
        out = self.output_weight
        if out.shape[0] < layout.vocab_size:
            raise MigmError(f"the model's output layer has {out.shape[0]} rows, the layout needs {layout.vocab_size} "
                            f"(code_offset {layout.code_offset} + codebook {layout.codebook_size})")

    @property
    def output_weight(self) -> torch.Tensor:
        t = self.transformer
        return t["ff_out"].weight if "ff_out" in t.keys() else t["wte"].weight

    def _ln_f_output(self, input_ids: torch.Tensor) -> torch.Tensor:
        """One forward of the inner ``LLaDAModel``, stopped after ``ln_f``."""
        box: list[torch.Tensor] = []

        def grab(module, inputs, output):
            box.append(output)
            raise _FeaturesReady

        handle = self.transformer["ln_f"].register_forward_hook(grab)
        try:
            self.llada(input_ids)  # no attention_mask: the published forward would not apply it
        except _FeaturesReady:
            pass
        finally:
            handle.remove()
        if not box:
            raise MigmError("the model's forward never reached transformer.ln_f; unsupported LLaDA variant")
        return box[0]

    @cached_property
    def _blocks(self) -> list[nn.Module]:
        t = self.transformer
        return list(t["blocks"]) if "blocks" in t.keys() else [b for group in t["block_groups"] for b in group]

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, C): the output of ``ln_f``; zeros at the left padding of each prompt.

        The padding the rows share is cut off, so a batch of equal-length prompts is the published
        forward exactly. Prompts of different lengths still run as one forward: the rest of the padding
        is masked out of every block's attention (``masked_padding``), which the published attention
        cannot be asked to do; RoPE is relative, so each row's features equal its own unpadded forward
        within the dtype's rounding. A model whose blocks lack the published attention method runs one
        forward per prompt length instead.
        """
        check_sequence_shape(input_ids, self.layout.seq_len)
        valid = self.feature_valid(input_ids[:, : self.layout.prompt_len])
        leading = (~valid).sum(1)
        start = int(leading.min())
        if bool((leading == start).all()):
            h = self._ln_f_output(input_ids[:, start:])
        elif all(callable(getattr(block, "_scaled_dot_product_attention", None)) for block in self._blocks):
            with masked_padding(self._blocks, valid[:, start:]):
                h = self._ln_f_output(input_ids[:, start:])
        else:
            return self._features_per_length(input_ids, leading)
        out = torch.zeros(input_ids.shape + (self.width,), dtype=h.dtype, device=h.device)
        out[:, start:] = h
        return out.masked_fill_(~valid[..., None], 0)

    def _features_per_length(self, input_ids: torch.Tensor, leading: torch.Tensor) -> torch.Tensor:
        out = None
        for n in leading.unique().tolist():
            rows = (leading == n).nonzero()[:, 0]
            h = self._ln_f_output(input_ids[rows, n:])
            if out is None:
                out = torch.zeros(input_ids.shape + (self.width,), dtype=h.dtype, device=h.device)
            out[rows, n:] = h
        return out

    def logits_from_features(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        lo, hi = self.layout.code_offset, self.layout.vocab_size
        t = self.transformer
        bias = t["ff_out"].bias[lo:hi] if "ff_out" in t.keys() and t["ff_out"].bias is not None else None
        w = self.output_weight[lo:hi]
        logits = F.linear(features.to(w.dtype), w, bias)
        return logits / math.sqrt(self.width) if self.scale_logits else logits

    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.transformer["wte"](ids)
        return x + sincos_1d(positions, self.width).to(x.dtype)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids, torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids))

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The frozen ``wte`` alone: what the published DiMOO-Shortcut head reads (it applies RoPE itself)."""
        return self.transformer["wte"](ids)

    def feature_valid(self, prompt_rows: torch.Tensor) -> torch.Tensor:
        """False at each row's left padding, which ``features`` strips before the model sees the row."""
        lay = self.layout
        leading = (prompt_rows[:, : lay.prompt_len] == lay.pad_id).int().cumprod(1).sum(1)
        return torch.arange(lay.seq_len, device=prompt_rows.device)[None] >= leading[:, None]

    @cached_property
    def fingerprint(self) -> str:
        t, lay = self.transformer, self.layout
        n_layers = len(t["blocks"]) if "blocks" in t.keys() else sum(len(g) for g in t["block_groups"])
        arch = f"llada:d{self.width}:l{n_layers}:v{t['wte'].weight.shape[0]}:k{lay.codebook_size}@{lay.code_offset}"
        lo, hi = lay.code_offset, lay.vocab_size
        return f"{arch}:{tensor_digest(t['wte'].weight[lo:hi], t['ln_f'].weight, self.output_weight[lo:hi])}"


# -- a checkpoint folder ------------------------------------------------------------------
def check_dimoo_ids(config, tokenizer, folder: Path) -> None:
    """One line naming every special id in the checkpoint's config or tokenizer that disagrees with DiMOO's."""
    wrong = []
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and vocab != DIMOO_VOCAB_SIZE:
        wrong.append(f"config vocab_size {vocab} (DiMOO: {DIMOO_VOCAB_SIZE}, image codes at {DIMOO_CODE_OFFSET}..)")
    mask = getattr(config, "mask_token_id", None)
    if mask is not None and mask != DIMOO_SPECIAL_IDS["mask"]:
        wrong.append(f"config mask_token_id {mask} (DiMOO: {DIMOO_SPECIAL_IDS['mask']})")
    vocab_map = tokenizer.get_vocab()
    if DIMOO_UNCOND_TEXT in vocab_map and vocab_map[DIMOO_UNCOND_TEXT] != DIMOO_SPECIAL_IDS["uncondition"]:
        wrong.append(f"tokenizer {DIMOO_UNCOND_TEXT} {vocab_map[DIMOO_UNCOND_TEXT]} (DiMOO: {DIMOO_SPECIAL_IDS['uncondition']})")
    if getattr(tokenizer, "mask_token_id", None) is not None and tokenizer.mask_token_id != DIMOO_SPECIAL_IDS["mask"]:
        wrong.append(f"tokenizer mask token {tokenizer.mask_token!r} {tokenizer.mask_token_id} (DiMOO: {DIMOO_SPECIAL_IDS['mask']})")
    if wrong:
        raise MigmError(f"{folder} is not a Lumina-DiMOO checkpoint: its special ids disagree with DiMOO's: {'; '.join(wrong)}")


class DiMOOModel(LoadedModel):
    """A Lumina-DiMOO checkpoint: the backbone behind the model interface, its tokenizer, its VQ decoder.

    >>> model = DiMOOModel.from_pretrained("Lumina-DiMOO", trust_remote_code=True, height=1024, width=768)
    >>> images, out = model.generate(["a red fox in snow"], seeds=[0], policy=ShortcutPolicy(head, budget=11))
    """

    kind = "lumina-dimoo"
    defaults = DIMOO_DEFAULTS
    head_architecture = "dimoo-shortcut"  # the published DiMOO-Shortcut head, sized from the base (head_options)

    def __init__(self, model: nn.Module, tokenizer, vqvae=None, *, height: int = 1024, width: int = 1024,
                 prompt_len: int = 256, path: str | Path | None = None):
        self.tokenizer = tokenizer
        self.vqvae = vqvae
        self.path = path
        self.head_path = own_head(path)  # FOLDER/shortcut_head, where a head was saved or imported next to the checkpoint
        self.backbone = LLaDAImageBackbone(model, LLaDAImageLayout.for_dimoo(tokenizer, height, width, prompt_len))

    @property
    def head_options(self) -> dict:
        """The published head's sizes: bottleneck 2 and one block, with the base's own heads, MLP size, RoPE
        base and RMS epsilon (the published head copies the base's LLaDA config, halving only ``d_model``)."""
        cfg = getattr(self.backbone.model, "config", None)
        read = lambda name, default: getattr(cfg, name, None) or default  # noqa: E731  (LLaDA's config fields)
        return {"ratio": 2, "num_blocks": 1, "heads": int(read("n_heads", 32)),
                "mlp_hidden": int(read("mlp_hidden_size", 4 * self.backbone.width)),
                "rope_theta": float(read("rope_theta", 10000.0)), "norm_eps": float(read("rms_norm_eps", 1e-5))}

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, trust_remote_code: bool = False, height: int = 1024,
                        width: int = 1024, prompt_len: int = 256, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, model_code: str | Path | None = None) -> "DiMOOModel":
        """A checkpoint folder as downloaded (see ``dimoo.loading`` for where its model code comes from)."""
        folder, device = Path(folder), torch.device(device)
        dimoo_grid(height, width)  # a bad size fails before the weights load
        if dtype is None:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model_class = loading.model_class(folder, model_code, trust_remote_code)  # nothing runs without consent
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise MigmError(f"cannot load the tokenizer in {folder}: {str(exc).splitlines()[0]}") from None
        check_dimoo_ids(loading.load_config(folder, model_class), tokenizer, folder)  # before the weights load
        model = loading.load_weights(folder, model_class, dtype, device)
        loaded = cls(model, tokenizer, load_vqvae(folder, device), height=height, width=width, prompt_len=prompt_len,
                     path=folder)
        loaded.model_code = None if model_code is None else str(model_code)
        return loaded

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, H, W) codes -> (N, 3, 16H, 16W) images in [-1, 1], with DiMOO's own VQ decoder (which outputs [0, 1])."""
        return vq_decode(self.vqvae, codes, self.path).clamp(0, 1) * 2 - 1
