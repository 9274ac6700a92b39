"""Lumina-DiMOO: its LLaDA transformer behind the package's model interface, through hooks only.

Lumina-DiMOO is an LLaDA-style bidirectional transformer (``LLaDAModelLM``: ``model.transformer``
holds ``wte``, ``blocks``, ``ln_f`` and, without weight tying, ``ff_out``). Text and image
share one vocabulary; the image codes are its last ``codebook_size`` ids, and an image is laid
out as ``[prompt][image header][rows of codes, each ending in a newline token][image footer]``.

* **features** — the output of ``transformer.ln_f`` (the final norm, before the output
  projection), read by a forward hook. The hook then stops the forward: the full-vocabulary
  projection after it (about 8% of an 8B forward at 1024 tokens) is not needed, because the
  sampler only reads the image-code slice, which ``logits_from_features`` computes;
* **logits_from_features** — ``ff_out`` (or ``wte`` when weights are tied) restricted to the
  image-code rows, with LLaDA's optional logit scaling: exactly the model's own logits there;
* **embed_tokens** — the frozen ``wte`` plus a fixed 1D sine-cosine code of the position
  (LLaDA uses RoPE inside attention and has no position table, so the head gets an explicit one).

``LLaDAImageLayout`` builds the sequences from prompt ids made by the user's own tokenizer
(the DiMOO tokenizer cannot be shipped here). ``TinyLLaDA`` is a small randomly initialised
model with the same module structure and names, used by the tests and by ``bench-cost`` (at
LLaDA-8B size). With real weights, see the README section "Lumina-DiMOO".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import check_sequence_shape, grid_positions
from ..errors import MigmError
from ..io import tensor_digest


# -- the layout --------------------------------------------------------------------------
class LLaDAImageLayout:
    """``[prompt (padded to prompt_len)][header][grid x (grid codes + newline)][footer]``."""

    prompt_in_sequence = True
    image_delimiters = True

    def __init__(self, tokenize: Callable[[str], Sequence[int]], *, prompt_len: int, grid_size: int, code_offset: int,
                 codebook_size: int, mask_id: int, newline_id: int, pad_id: int, uncond_ids: Sequence[int],
                 header_ids: Sequence[int] = (), footer_ids: Sequence[int] = ()):
        self.tokenize = tokenize
        self.prompt_len, self.code_offset, self.mask_id = prompt_len, code_offset, mask_id
        self.newline_id, self.pad_id = newline_id, pad_id
        self.uncond_ids = list(uncond_ids)
        self.header_ids, self.footer_ids = list(header_ids), list(footer_ids)
        self.codebook_size = codebook_size
        self.vocab_size = code_offset + codebook_size
        self.grid_size = g = grid_size
        self.num_image_tokens = g * g
        start = prompt_len + len(self.header_ids)
        self.image_positions, self.eor_positions = grid_positions(start, g, end_of_row=True)
        self.seq_len = start + g * (g + 1) + len(self.footer_ids)
        self.config = self  # the sampler reads layout.config.grid_size

    def encode_prompt(self, prompt: str | None) -> torch.Tensor:
        ids = self.uncond_ids if prompt is None else list(self.tokenize(prompt))
        if len(ids) > self.prompt_len:
            raise MigmError(f"prompt {prompt!r} is {len(ids)} tokens; at most {self.prompt_len} fit (raise prompt_len)")
        out = torch.full((self.prompt_len,), self.pad_id, dtype=torch.long)
        out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
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
        image = torch.where(committed, codes + self.code_offset, torch.full_like(codes, self.mask_id))
        seq = seq.clone()
        seq[:, self.image_positions.to(seq.device)] = image
        return seq


# -- the adapter ---------------------------------------------------------------------------
class _FeaturesReady(Exception):
    """Raised by the ln_f hook to end the forward once the features exist."""


def _transformer_dict(model: nn.Module) -> nn.ModuleDict:
    """``model.transformer`` of an ``LLaDAModel``, or of the ``LLaDAModel`` inside an ``LLaDAModelLM``."""
    for candidate in (model, getattr(model, "model", None)):
        blocks = getattr(candidate, "transformer", None)
        if isinstance(blocks, nn.ModuleDict) and {"wte", "ln_f"} <= set(blocks.keys()):
            return blocks
    raise MigmError(f"{type(model).__name__} is not an LLaDA-style model (expected .transformer or .model.transformer "
                    "with wte and ln_f); supported: Lumina-DiMOO / LLaDA (LLaDAModelLM, LLaDAModel)")


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class LLaDAImageBackbone(nn.Module):
    """An unmodified LLaDA / Lumina-DiMOO model + its image layout = the package's model interface."""

    def __init__(self, model: nn.Module, layout: LLaDAImageLayout):
        super().__init__()
        self.model = model
        self.transformer = _transformer_dict(model)
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

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, C): the output of ``ln_f``; the rest of the forward is skipped."""
        check_sequence_shape(input_ids, self.layout.seq_len)
        box: list[torch.Tensor] = []

        def grab(module, inputs, output):
            box.append(output)
            raise _FeaturesReady

        handle = self.transformer["ln_f"].register_forward_hook(grab)
        try:
            pad = input_ids == self.layout.pad_id
            mask = (~pad).long() if bool(pad.any()) else None
            self.model(input_ids, attention_mask=mask)
        except _FeaturesReady:
            pass
        finally:
            handle.remove()
        if not box:
            raise MigmError("the model's forward never reached transformer.ln_f; unsupported LLaDA variant")
        return box[0]

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
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

    @cached_property
    def fingerprint(self) -> str:
        t, lay = self.transformer, self.layout
        n_layers = len(t["blocks"]) if "blocks" in t.keys() else sum(len(g) for g in t["block_groups"])
        arch = f"llada:d{self.width}:l{n_layers}:v{t['wte'].weight.shape[0]}:k{lay.codebook_size}@{lay.code_offset}"
        lo, hi = lay.code_offset, lay.vocab_size
        return f"{arch}:{tensor_digest(t['wte'].weight[lo:hi], t['ln_f'].weight, self.output_weight[lo:hi])}"


# -- a tiny model with LLaDA's module structure and names --------------------------------
@dataclass
class TinyLLaDAConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_hidden_size: int = 128
    vocab_size: int = 600
    rope_theta: float = 500000.0
    weight_tying: bool = False
    scale_logits: bool = False
    rms_norm_eps: float = 1e-5


class RMSLayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)


def apply_rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding over the last dim of (B, H, L, D)."""
    d, length = x.shape[-1], x.shape[-2]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * inv
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(x.dtype), torch.cat([angles.sin()] * 2, -1).to(x.dtype)
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat([-x2, x1], -1) * sin


class LLaDALlamaBlock(nn.Module):
    """``x + attn_out(Attn(attn_norm(x)))``, then ``x + ff_out(act(ff_proj(h)) * up_proj(h))`` (SwiGLU)."""

    def __init__(self, cfg: TinyLLaDAConfig):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.attn_norm, self.ff_norm = RMSLayerNorm(d, cfg.rms_norm_eps), RMSLayerNorm(d, cfg.rms_norm_eps)
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_proj = nn.Linear(d, cfg.mlp_hidden_size, bias=False)
        self.up_proj = nn.Linear(d, cfg.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(cfg.mlp_hidden_size, d, bias=False)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, attention_bias: torch.Tensor | None = None) -> torch.Tensor:
        b, length, d = x.shape
        h = self.attn_norm(x)
        split = lambda t: t.view(b, length, self.cfg.n_heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(h)), split(self.k_proj(h)), split(self.v_proj(h))
        q, k = apply_rope(q, self.cfg.rope_theta), apply_rope(k, self.cfg.rope_theta)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_bias)  # bidirectional
        x = x + self.attn_out(att.transpose(1, 2).reshape(b, length, d))
        h = self.ff_norm(x)
        return x + self.ff_out(self.act(self.ff_proj(h)) * self.up_proj(h))


@dataclass
class LLaDAOutput:
    logits: torch.Tensor


class LLaDAModel(nn.Module):
    def __init__(self, cfg: TinyLLaDAConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.d_model), emb_drop=nn.Dropout(0.0),
            ln_f=RMSLayerNorm(cfg.d_model, cfg.rms_norm_eps),
            blocks=nn.ModuleList(LLaDALlamaBlock(cfg) for _ in range(cfg.n_layers)),
        ))
        if not cfg.weight_tying:
            self.transformer.update({"ff_out": nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> LLaDAOutput:
        x = self.transformer.emb_drop(self.transformer.wte(input_ids))
        bias = None
        if attention_mask is not None:
            bias = (attention_mask[:, None, None, :] > 0)
        for block in self.transformer.blocks:
            x = block(x, bias)
        x = self.transformer.ln_f(x)
        t = self.transformer
        logits = t.ff_out(x) if "ff_out" in t.keys() else F.linear(x, t.wte.weight)
        if self.config.scale_logits:
            logits = logits / math.sqrt(self.config.d_model)
        return LLaDAOutput(logits)


class TinyLLaDA(nn.Module):
    """Stand-in for ``LLaDAModelLM``: ``.model`` is an ``LLaDAModel``; random weights."""

    def __init__(self, cfg: TinyLLaDAConfig = TinyLLaDAConfig()):
        super().__init__()
        self.config = cfg
        self.model = LLaDAModel(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> LLaDAOutput:
        return self.model(input_ids, attention_mask)


def tiny_dimoo(cfg: TinyLLaDAConfig = TinyLLaDAConfig(), grid_size: int = 4, codebook_size: int = 64,
               prompt_len: int = 6, seed: int = 0) -> LLaDAImageBackbone:
    """A random ``TinyLLaDA`` with a DiMOO-like layout: text ids first, image codes last in the
    vocabulary; ids below 100 are words (a toy tokenizer maps characters), 100.. are specials."""
    torch.manual_seed(seed)
    code_offset = cfg.vocab_size - codebook_size
    mask_id, newline_id, pad_id, boi, eoi, uncond = range(100, 106)
    tokenize = lambda text: [ord(ch) % 100 for ch in text][:prompt_len]  # noqa: E731
    layout = LLaDAImageLayout(tokenize, prompt_len=prompt_len, grid_size=grid_size, code_offset=code_offset,
                              codebook_size=codebook_size, mask_id=mask_id, newline_id=newline_id, pad_id=pad_id,
                              uncond_ids=[uncond], header_ids=[boi], footer_ids=[eoi])
    return LLaDAImageBackbone(TinyLLaDA(cfg).eval(), layout)
