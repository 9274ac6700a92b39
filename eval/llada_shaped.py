"""A random-weight transformer in LLaDA-8B's shape, for the cost benchmarks (``bench-cost``,
``bench-loop``) only.

It is not the published code and loads no checkpoint: a real Lumina-DiMOO runs its own model code.
It has what the DiMOO adapter (``LLaDAImageBackbone``) reads — a ``transformer`` ``ModuleDict`` of
``wte``, ``blocks``, ``ln_f`` and ``ff_out`` — and a block of the same cost: RMS norms, rotary
bidirectional attention and a SiLU-gated MLP at LLaDA-8B's width, depth and MLP size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class LLaDAShape:
    d_model: int = 4096
    n_heads: int = 32
    n_layers: int = 32
    mlp_hidden_size: int = 12288
    vocab_size: int = 134548   # LLaDA's text vocabulary + Lumina-DiMOO's 8192 image codes
    rope_theta: float = 500000.0


def rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding of (B, H, L, D) at positions 0..L-1, as complex rotations of channel pairs."""
    length, dim = x.shape[-2:]
    freqs = theta ** (-torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim)
    turns = torch.polar(torch.ones(length, dim // 2, device=x.device), torch.outer(torch.arange(length, device=x.device,
                                                                                             dtype=torch.float32), freqs))
    pairs = torch.view_as_complex(rearrange(x.float(), "... (two d) -> ... d two", two=2).contiguous())
    return rearrange(torch.view_as_real(pairs * turns), "... d two -> ... (two d)").to(x.dtype)


class Block(nn.Module):
    def __init__(self, shape: LLaDAShape):
        super().__init__()
        d, self.heads, self.theta = shape.d_model, shape.n_heads, shape.rope_theta
        self.attn_norm, self.ff_norm = nn.RMSNorm(d), nn.RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.gate_up = nn.Linear(d, 2 * shape.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(shape.mlp_hidden_size, d, bias=False)

    def _scaled_dot_product_attention(self, q, k, v, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False):
        # The published blocks' attention method, as they call it (they drop attn_mask), so the DiMOO
        # adapter's padding hook (dimoo.model.masked_padding) runs here as on the real model.
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=dropout_p, is_causal=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.attn_norm(x)), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        attended = self._scaled_dot_product_attention(rope(q, self.theta), rope(k, self.theta), v, attn_mask=None)
        x = x + self.attn_out(rearrange(attended, "b h l d -> b l (h d)"))
        gate, up = self.gate_up(self.ff_norm(x)).chunk(2, -1)
        return x + self.ff_out(F.silu(gate) * up)


class LLaDAShapedModel(nn.Module):
    def __init__(self, shape: LLaDAShape = LLaDAShape()):
        super().__init__()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(shape.vocab_size, shape.d_model),
            "blocks": nn.ModuleList(Block(shape) for _ in range(shape.n_layers)),
            "ln_f": nn.RMSNorm(shape.d_model),
            "ff_out": nn.Linear(shape.d_model, shape.vocab_size, bias=False),
        })

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        t = self.transformer
        x = t["wte"](input_ids)
        for block in t["blocks"]:
            x = block(x)
        return t["ff_out"](t["ln_f"](x))
