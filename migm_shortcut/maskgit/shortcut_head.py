"""The published MaskGIT-Shortcut head, as an architecture of the package's one head module.

It computes what MIGM-Shortcut's ``MaskGIT-Shortcut/Network/shortcut_model.py`` (``MaskGITShortcut``,
Kaiwen-Zhu/MIGM-Shortcut at 93349c4) computes, with the same module names, so a released state
dict (``maskgit-shortcut.pth``) loads key for key (``import_head``). Read top to bottom:

* ``proj_in`` / ``new_token_proj_in`` / ``proj_out``: C -> C/ratio -> C (identities at ratio 1);
* ``blocks``: each a cross-attention of the features (queries) over the new tokens, then a
  self-attention, each ``PreNorm(Attention)`` + ``PreNorm(FeedForward)`` (4x) with residuals.
  ``PreNorm`` normalises only its input: in both attentions the keys and values are taken raw
  (in self-attention, the un-normalised features). The attention is ``nn.MultiheadAttention``'s
  fused ``in_proj`` split q, k, v in that order, scaled dot products, ``out_proj``;
* ``last_layer``: LayerNorm(eps 1e-12), Linear, exact GELU, LayerNorm(eps 1e-12);
* ``time_embedder`` (a DiT timestep embedder: 256 sinusoidal frequencies, cos then sin, of
  ``1000 x mask_ratio``, then Linear-SiLU-Linear with round(sqrt(256 x width)) hidden units) and
  ``adaLN_modulation`` giving scale and shift: ``x * (1 + scale) + shift``;
* the output: ``proj_out(x) + prev_features``.

New tokens enter as the base model's frozen ``tok_emb`` rows plus its ``pos_emb`` at their
positions: the published module keeps copies of both as non-persistent buffers; here they come
from the backbone (``MaskGITBackbone.embed_tokens``), the same tensors. Unlike the published
module, padded new-token slots are masked out of the attention (MaskGIT commits as many tokens in
every row, so there are none there; the mask is applied only when some slot is padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from migm_shortcut.errors import MigmError
from migm_shortcut.maskgit.transformer import FeedForward, PreNorm  # the blocks the published head reuses, as it does
from migm_shortcut.modeling import PretrainedModule
from migm_shortcut.released_heads import released_sizes
from migm_shortcut.shortcut import ShortcutHead, ShortcutHeadConfig, TimestepEmbedder, register_head_architecture


class Attention(nn.Module):
    """Queries from ``x``, keys and values from ``context``, through ``mha``'s weights (its fused in_proj)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True, bias=True)

    def forward(self, x, context, valid=None):
        w_q, w_k, w_v = self.mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.mha.in_proj_bias.chunk(3)
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731  (B, H, L, D)
        q, k, v = split(F.linear(x, w_q, b_q)), split(F.linear(context, w_k, b_k)), split(F.linear(context, w_v, b_v))
        mask = None if valid is None or bool(valid.all()) else valid[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.mha.out_proj(out.transpose(1, 2).flatten(2))


class ShortcutAttnBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.cross_attn = PreNorm(dim, Attention(dim, heads))
        self.cross_attn_ff = PreNorm(dim, FeedForward(dim, 4 * dim))
        self.self_attn = PreNorm(dim, Attention(dim, heads))
        self.self_attn_ff = PreNorm(dim, FeedForward(dim, 4 * dim))

    def forward(self, x, new_tokens, valid):
        x = x + self.cross_attn(x, context=new_tokens, valid=valid)
        x = x + self.cross_attn_ff(x)
        x = x + self.self_attn(x, context=x)
        return x + self.self_attn_ff(x)


@register_head_architecture("maskgit-shortcut")
class MaskGITShortcutHead(ShortcutHead):
    """``ShortcutHeadConfig(architecture="maskgit-shortcut", width=C, ratio=..., heads=..., num_blocks=...)``;
    the published evaluation: C=768, ratio 2, 16 heads, 1 block, with the mask-ratio embedding (the
    published ``embed_t=False`` variant is not built)."""

    def __init__(self, config: ShortcutHeadConfig = ShortcutHeadConfig(architecture="maskgit-shortcut")):
        PretrainedModule.__init__(self, config)  # the network below, not the generic one
        dim = round(config.width / config.ratio)
        if config.resolve_heads() < 1 or dim % config.heads:
            raise MigmError(f"head inner width {dim} is not divisible by heads {config.heads}")
        projection = (lambda a, b: nn.Linear(a, b)) if config.ratio != 1 else (lambda a, b: nn.Identity())  # noqa: E731
        self.proj_in, self.proj_out = projection(config.width, dim), projection(dim, config.width)
        self.new_token_proj_in = projection(config.width, dim)
        self.blocks = nn.ModuleList(ShortcutAttnBlock(dim, config.heads) for _ in range(config.num_blocks))
        self.last_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-12), nn.Linear(dim, dim), nn.GELU(),
                                        nn.LayerNorm(dim, eps=1e-12))
        self.time_embedder = TimestepEmbedder(dim)
        self.adaLN_modulation = nn.Linear(dim, 2 * dim)

    def forward(self, features: torch.Tensor, token_embeddings: torch.Tensor, token_valid: torch.Tensor,
                mask_ratio: torch.Tensor, token_positions: torch.Tensor | None = None,
                feature_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Next-step features (see ``ShortcutHead.forward`` for the shapes; the positions are already in
        ``token_embeddings``, MaskGIT's ``pos_emb``)."""
        self.check_inputs(features, token_embeddings, token_valid, mask_ratio)
        dtype = self.adaLN_modulation.weight.dtype
        prev = features.to(dtype)
        new_tokens = self.new_token_proj_in(token_embeddings.to(dtype))
        x = self.proj_in(prev)
        for block in self.blocks:
            x = block(x, new_tokens, token_valid.bool())
        x = self.last_layer(x)
        scale, shift = self.adaLN_modulation(self.time_embedder(mask_ratio * 1000).to(dtype)).unsqueeze(1).chunk(2, -1)
        x = x * (1 + scale) + shift
        return self.proj_out(x) + prev

    @staticmethod
    def config_from_state(state: dict[str, torch.Tensor], backbone, options: dict) -> ShortcutHeadConfig:
        """The head's config from a released state dict (``maskgit-shortcut.pth``) and the base it is for:
        the width and bottleneck from ``proj_in`` (or, at ratio 1, the blocks' norms), the block count
        from the keys. Heads cannot be read off the tensors: ``options["heads"]`` (the published 16)."""
        width, ratio, num_blocks = released_sizes(state, backbone, "blocks.0.cross_attn.norm.weight", "MaskGIT-Shortcut")
        return ShortcutHeadConfig(architecture="maskgit-shortcut", width=width, ratio=ratio, heads=options["heads"],
                                  num_blocks=num_blocks, base_fingerprint=backbone.fingerprint)
