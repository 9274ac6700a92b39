"""A random-weight stand-in for MIGM-Shortcut's published ``MaskGITShortcut`` (MaskGIT-Shortcut/Network/
shortcut_model.py at 93349c4), written from the published code in our own words, awkward parts included:

* the published module names and state-dict keys: ``proj_in``/``proj_out``/``new_token_proj_in``,
  ``blocks.i.{cross_attn,cross_attn_ff,self_attn,self_attn_ff}`` (``PreNorm`` with ``norm`` and ``fn``;
  attention through ``fn.mha``, an ``nn.MultiheadAttention`` whose fused ``in_proj`` is split q, k, v),
  ``last_layer`` (LayerNorm 1e-12, Linear, GELU, LayerNorm 1e-12: keys 0, 1, 3), ``time_embedder.mlp``,
  ``adaLN_modulation``;
* the base's ``tok_emb`` and ``pos_emb`` copied into non-persistent buffers ``wte``/``wpe`` (absent from
  the state dict);
* ``PreNorm`` normalises only the query; keys and values (in self-attention: the features) go in raw;
* the forward signature ``forward(prev_feat, new_token_ids, new_token_map, mask_ratio)``: the new tokens
  by id, their positions as a (B, T) boolean map over the sequence (class-token column included).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x, **kwargs):
        return self.fn(self.norm(x), **kwargs)


class FeedForward(nn.Module):
    def __init__(self, dim, hidden, dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                                 nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, dropout=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.mha = nn.MultiheadAttention(dim, num_heads=num_heads, dropout=dropout, batch_first=True, bias=True)

    def forward(self, x, key=None, value=None):
        b, n, d = x.shape
        w_q, w_k, w_v = self.mha.in_proj_weight.split(d)
        b_q, b_k, b_v = self.mha.in_proj_bias.split(d)
        heads = lambda t: t.view(b, t.shape[1], self.num_heads, d // self.num_heads).transpose(1, 2)  # noqa: E731
        q, k, v = heads(F.linear(x, w_q, b_q)), heads(F.linear(key, w_k, b_k)), heads(F.linear(value, w_v, b_v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=False).transpose(1, 2).reshape(b, n, d)
        return F.linear(out, self.mha.out_proj.weight, self.mha.out_proj.bias), None


class ShortcutAttnBlock(nn.Module):
    def __init__(self, dim, num_heads, dropout=0.0):
        super().__init__()
        self.cross_attn = PreNorm(dim, Attention(dim, num_heads, dropout))
        self.cross_attn_ff = PreNorm(dim, FeedForward(dim, dim * 4, dropout))
        self.self_attn = PreNorm(dim, Attention(dim, num_heads, dropout))
        self.self_attn_ff = PreNorm(dim, FeedForward(dim, dim * 4, dropout))

    def forward(self, x, new_token):
        x = x + self.cross_attn(x, key=new_token, value=new_token)[0]
        x = x + self.cross_attn_ff(x)
        x = x + self.self_attn(x, key=x, value=x)[0]
        return x + self.self_attn_ff(x)


class TimestepEmbedder(nn.Module):
    def __init__(self, dim, frequencies=256):
        super().__init__()
        mid = round(math.sqrt(dim * frequencies))
        self.mlp = nn.Sequential(nn.Linear(frequencies, mid), nn.SiLU(), nn.Linear(mid, dim))
        self.frequencies = frequencies

    def forward(self, t):
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class MaskGITShortcut(nn.Module):
    def __init__(self, hidden_dim, n_block=1, bottleneck_ratio=2, tok_emb=None, pos_emb=None, num_heads=8, dropout=0.1):
        super().__init__()
        dim = round(hidden_dim / bottleneck_ratio)
        make = (lambda a, b: nn.Linear(a, b)) if bottleneck_ratio != 1 else (lambda a, b: nn.Identity())  # noqa: E731
        self.proj_in, self.proj_out, self.new_token_proj_in = make(hidden_dim, dim), make(dim, hidden_dim), make(hidden_dim, dim)
        self.blocks = nn.ModuleList(ShortcutAttnBlock(dim, num_heads, dropout) for _ in range(n_block))
        self.last_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-12), nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim, eps=1e-12))
        self.time_embedder = TimestepEmbedder(dim)
        self.adaLN_modulation = nn.Linear(dim, dim * 2)
        self.register_buffer("wte", tok_emb.weight.detach().clone(), persistent=False)
        self.register_buffer("wpe", pos_emb.detach().clone(), persistent=False)

    def forward(self, prev_feat, new_token_ids, new_token_map, mask_ratio):
        b, t, c = prev_feat.shape
        new_t = new_token_ids.shape[1]
        new_token = F.embedding(new_token_ids, self.wte) + self.wpe.expand(b, -1, -1)[new_token_map].reshape(b, new_t, c)
        new_token = self.new_token_proj_in(new_token)
        x = self.proj_in(prev_feat)
        for block in self.blocks:
            x = block(x, new_token)
        x = self.last_layer(x)
        scale, shift = self.adaLN_modulation(self.time_embedder(mask_ratio * 1000)).unsqueeze(1).chunk(2, dim=-1)
        return self.proj_out(x * (1 + scale) + shift) + prev_feat
