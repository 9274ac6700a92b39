"""A random-weight stand-in for MIGM-Shortcut's published ``MDMShortcut`` (DiMOO-Shortcut/model/
shortcut_model.py at 93349c4), written from the published code in our own words, awkward parts included:

* built from the base's LLaDA config with only ``d_model`` divided by the bottleneck ratio: the
  base's heads, MLP size, RoPE base and RMS epsilon are kept (``MDMShortcut(config, n_block,
  bottleneck_ratio=2)``);
* the published module names and state-dict keys: ``proj_in``/``proj_out``/``new_token_proj_in``,
  ``blocks.i.cross_attn`` (a llama block whose forward takes the new tokens) and ``blocks.i.self_attn``
  (a plain llama block: ``attn_norm``, ``q_proj``/``k_proj``/``v_proj``, ``attn_out``, ``ff_norm``,
  ``ff_proj``, ``up_proj``, ``ff_out``, all bias-free), ``ln_f``, ``time_embedder.mlp``, ``adaLN_modulation``;
* the cross-attention normalises the features and the new tokens with the same ``attn_norm``;
* RoPE: the queries at 0..T-1, the keys at ``new_token_map.nonzero(as_tuple=True)[1]``, which flattens
  the positions over the batch, so the module is right at batch 1 only (as published); no mask;
* the forward signature ``forward(prev_feat, new_token, new_token_map, mask_ratio)``: the new tokens as
  the base's ``wte`` rows, in sequence order; their positions as a (B, T) boolean map; mask_ratio (B,).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from llada_standin import LLaDALlamaBlock, RMSLayerNorm


def rope_table(length: int, dim: int, theta: float):
    """sin and cos of positions 0..length-1, (1, 1, length, dim), built in fp32 as published."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    freqs = torch.einsum("i , j -> i j", torch.arange(length, dtype=torch.float), inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.sin()[None, None], angles.cos()[None, None]


def rotate_half(x):
    b, h, t, d = x.size()
    first, second = x.view(b, h, t, 2, d // 2).unbind(dim=-2)
    return torch.cat((-second, first), dim=-1)


def apply_rope(sin, cos, t):
    return ((t * cos) + (rotate_half(t) * sin)).to(t.dtype)


class SelfAttnBlock(LLaDALlamaBlock):
    """The base's llama block, in fp32 RoPE (``rope_full_precision``) as the published one."""

    def forward(self, x, attention_bias=None, layer_past=None, use_cache=False, to_compute_mask=None, cat=""):
        b, t, d = x.shape
        h = self.attn_norm(x)
        split = lambda y: y.view(b, -1, self.config.n_heads, d // self.config.n_heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(h)), split(self.k_proj(h)), split(self.v_proj(h))
        with torch.autocast(q.device.type, enabled=False):
            sin, cos = rope_table(t, d // self.config.n_heads, self.config.rope_theta)
            sin, cos = sin.to(q.device), cos.to(q.device)
            q_, k_ = apply_rope(sin, cos, q.float()), apply_rope(sin, cos, k.float())
        q, k = q_.type_as(q), k_.type_as(k)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False)
        return self.feed_forward(x + self.attn_out(att.transpose(1, 2).contiguous().view(b, t, d))), None

    def feed_forward(self, x):
        """The llama block's second half, the same in both published blocks: RMS norm, SwiGLU, residual."""
        og = x
        x = self.ff_norm(x)
        x, up = self.ff_proj(x), self.up_proj(x)
        return og + self.ff_out(self.act(x) * up)


class ShortcutCrossAttention(SelfAttnBlock):
    def forward(self, prev_feat, new_token, new_token_map, attention_bias=None, layer_past=None, use_cache=False):
        b, t, d = prev_feat.shape
        x_normed = self.attn_norm(prev_feat)
        new_normed = self.attn_norm(new_token)
        q, k, v = self.q_proj(x_normed), self.k_proj(new_normed), self.v_proj(new_normed)
        n = self.config.n_heads
        q = q.view(b, t, n, d // n).transpose(1, 2)
        k = k.view(b, k.size(1), n, d // n).transpose(1, 2)
        v = v.view(b, v.size(1), n, d // n).transpose(1, 2)
        with torch.autocast(q.device.type, enabled=False):
            sin, cos = rope_table(t, d // n, self.config.rope_theta)
            sin, cos = sin.to(q.device).type_as(q.float()), cos.to(q.device).type_as(q.float())
            q_ = apply_rope(sin, cos, q.float())
            new_idx = new_token_map.nonzero(as_tuple=True)[1]  # flattened over the batch: batch 1 only
            k_ = apply_rope(sin[:, :, new_idx, :], cos[:, :, new_idx, :], k.float())
        q, k = q_.type_as(q), k_.type_as(k)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False)
        return self.feed_forward(prev_feat + self.attn_out(att.transpose(1, 2).contiguous().view(b, t, d))), None


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        mid = round(math.sqrt(hidden_size * frequency_embedding_size))
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, mid), nn.SiLU(), nn.Linear(mid, hidden_size))
        self.frequency_embedding_size = frequency_embedding_size

    def forward(self, t):
        half = self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class ShortcutAttnBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.cross_attn = ShortcutCrossAttention(None, config)
        self.self_attn = SelfAttnBlock(None, config)

    def forward(self, x, new_token, new_token_map):
        x, _ = self.cross_attn(x, new_token, new_token_map)
        x, _ = self.self_attn(x)
        return x


class MDMShortcut(nn.Module):
    def __init__(self, config, n_block: int = 1, bottleneck_ratio: int = 2):
        super().__init__()
        self.config = config
        if bottleneck_ratio != 1:
            config = copy.copy(config)
            orig = config.d_model
            config.d_model = round(orig / bottleneck_ratio)
            self.proj_in, self.proj_out = nn.Linear(orig, config.d_model), nn.Linear(config.d_model, orig)
            self.new_token_proj_in = nn.Linear(orig, config.d_model)
        else:
            self.proj_in = self.proj_out = self.new_token_proj_in = nn.Identity()
        self.blocks = nn.ModuleList(ShortcutAttnBlock(config) for _ in range(n_block))
        self.ln_f = RMSLayerNorm(config.d_model, config.rms_norm_eps)
        self.time_embedder = TimestepEmbedder(config.d_model)
        self.adaLN_modulation = nn.Linear(config.d_model, 2 * config.d_model)

    def forward(self, prev_feat, new_token, new_token_map, mask_ratio=None):
        b, t, _ = prev_feat.shape
        assert new_token_map.shape == (b, t)
        assert torch.all(new_token_map.sum(-1) == new_token.shape[1])
        new_token = self.new_token_proj_in(new_token)
        x = self.proj_in(prev_feat)
        for block in self.blocks:
            x = block(x, new_token, new_token_map)
        x = self.ln_f(x)
        scale, shift = self.adaLN_modulation(self.time_embedder(mask_ratio * 1000)).unsqueeze(1).chunk(2, dim=-1)
        x = x * (1 + scale) + shift
        return self.proj_out(x) + prev_feat


def random_mdm_shortcut(config, seed: int = 0, n_block: int = 1, bottleneck_ratio: int = 2) -> MDMShortcut:
    """A stand-in with every weight random (norm weights and the modulation included), so no part is a no-op."""
    torch.manual_seed(seed)
    head = MDMShortcut(config, n_block, bottleneck_ratio)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return head.eval()
