"""This package's re-implementation of MaskGIT-pytorch's ``MaskTransformer`` (valeoai; the
``Network/transformer.py`` of the v1.0 code that MIGM-Shortcut's MaskGIT fork builds on, with its
``f_factor`` argument and ``ret_last_feat`` output). Released checkpoints (``MaskGIT/*.pth``) load
into it directly: the package cannot ship the published file, so it rebuilds the same network in
its own words.

What it matches, exactly:

* **constructor**: ``MaskTransformer(img_size, hidden_dim, codebook_size, f_factor, depth, heads,
  mlp_dim, dropout, nclass)``; the grid is ``f_factor`` tokens a side;
* **state-dict keys and shapes**: ``tok_emb.weight`` (codes, the mask, the classes, "no class":
  ``codebook_size + 1 + nclass + 1`` rows), ``pos_emb`` (1, grid² + 1, C), ``first_layer.{0,2,4,6}``,
  ``transformer.layers.{i}.0`` (``PreNorm`` ``norm`` + ``fn.mha``, a ``nn.MultiheadAttention``) and
  ``.1`` (``PreNorm`` ``norm`` + ``fn.net.{0,3}``, the feed-forward), ``last_layer.{0,2,4}``, ``bias``
  (grid² + 1, vocabulary): the per-position output bias;
* **forward**: ``forward(img_token, y, drop_label, return_attn=False, ret_last_feat=False)`` appends
  the class token ``y + codebook_size + 1`` after the grid (``codebook_size + 1 + nclass`` where
  ``drop_label`` is set); logits are ``last_layer(x) @ tok_emb.weight.T + bias`` sliced to the grid
  and the codebook; it returns ``(logits, last_feat)``.

Proved by ``tests/test_maskgit.py``: the adapter's features are ``last_layer``'s output, its logits
equal this forward's (dropped label included), and a checkpoint in the released layout round-trips
through ``load_model`` (its keys checked one by one by ``maskgit.model.check_state``). Checked by
reading the published file; what needs the released weights to confirm is listed in docs/models.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x, **kwargs):
        return self.fn(self.norm(x), **kwargs)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class Attention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.mha = nn.MultiheadAttention(embed_dim, num_heads=num_heads, dropout=dropout, batch_first=True, bias=True)

    def forward(self, x):
        b, length, dim = x.shape
        q, k, v = F.linear(x, self.mha.in_proj_weight, self.mha.in_proj_bias).chunk(3, dim=-1)
        split = lambda t: t.view(b, length, self.num_heads, -1).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=False)
        return F.linear(out.transpose(1, 2).reshape(b, length, dim), self.mha.out_proj.weight, self.mha.out_proj.bias), None


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([PreNorm(dim, Attention(dim, heads, dropout)),
                                                   PreNorm(dim, FeedForward(dim, mlp_dim, dropout))])
                                    for _ in range(depth))

    def forward(self, x):
        weights = []
        for attn, ff in self.layers:
            value, weight = attn(x)
            x = x + value
            x = x + ff(x)
            weights.append(weight)
        return x, weights


class MaskTransformer(nn.Module):
    def __init__(self, img_size: int = 256, hidden_dim: int = 768, codebook_size: int = 1024, f_factor: int = 16,
                 depth: int = 24, heads: int = 8, mlp_dim: int = 3072, dropout: float = 0.1, nclass: int = 1000):
        super().__init__()
        self.nclass, self.patch_size, self.codebook_size = nclass, f_factor, codebook_size
        self.tok_emb = nn.Embedding(codebook_size + 1 + nclass + 1, hidden_dim)
        self.pos_emb = nn.init.trunc_normal_(nn.Parameter(torch.zeros(1, f_factor * f_factor + 1, hidden_dim)), 0.0, 0.02)
        self.first_layer = nn.Sequential(
            nn.LayerNorm(hidden_dim, eps=1e-12), nn.Dropout(dropout), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.LayerNorm(hidden_dim, eps=1e-12), nn.Dropout(dropout), nn.Linear(hidden_dim, hidden_dim))
        self.transformer = TransformerEncoder(hidden_dim, depth, heads, mlp_dim, dropout)
        self.last_layer = nn.Sequential(
            nn.LayerNorm(hidden_dim, eps=1e-12), nn.Dropout(dropout), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.LayerNorm(hidden_dim, eps=1e-12))
        self.bias = nn.Parameter(torch.zeros(f_factor * f_factor + 1, codebook_size + 1 + nclass + 1))

    def forward(self, img_token, y=None, drop_label=None, return_attn=False, ret_last_feat=False):
        b = img_token.shape[0]
        cls_token = y.view(b, -1) + self.codebook_size + 1
        cls_token[drop_label] = self.codebook_size + 1 + self.nclass
        tokens = torch.cat([img_token.view(b, -1), cls_token.view(b, -1)], -1)
        x = self.tok_emb(tokens) + self.pos_emb
        x = self.first_layer(x)
        x, attn = self.transformer(x)
        x = self.last_layer(x)
        last_feat = x.clone() if ret_last_feat else None
        logit = torch.matmul(x, self.tok_emb.weight.T) + self.bias
        logit = logit[:, : self.patch_size * self.patch_size, : self.codebook_size]
        if return_attn:
            return logit, attn, last_feat
        return logit, last_feat


# The published 512x512 ImageNet model: 24 layers, 768 wide, 32 x 32 tokens of a 1024-code VQ.
MASKGIT_512 = dict(img_size=512, hidden_dim=768, codebook_size=1024, f_factor=32, depth=24, heads=16, mlp_dim=3072,
                   dropout=0.1, nclass=1000)
