"""The published DiMOO-Shortcut head, as an architecture of the package's one head module.

It computes what MIGM-Shortcut's ``DiMOO-Shortcut/model/shortcut_model.py`` (``MDMShortcut``,
Kaiwen-Zhu/MIGM-Shortcut at 93349c4) computes, with the same module names, so the released state
dict (``dimoo-shortcut.pth``) loads key for key (``import_head``). The published head is the base's
own LLaDA llama block at the base's config with ``d_model`` divided by the bottleneck ratio (heads,
MLP size, RoPE base and norm epsilon kept). Read top to bottom:

* ``proj_in`` / ``new_token_proj_in`` / ``proj_out``: C -> C/ratio -> C (identities at ratio 1);
* ``blocks``: each a cross-attention llama block (``cross_attn``: queries from the features, keys and
  values from the new tokens, both through the *same* ``attn_norm``) then a self-attention llama
  block (``self_attn``). A llama block: RMS ``attn_norm``; bias-free ``q_proj``/``k_proj``/``v_proj``;
  RoPE in fp32 (rotate-half over a head of inner/heads channels) with the queries at their sequence
  positions and, in cross-attention, the keys at each new token's own position; scaled dot products;
  ``attn_out``; residual; RMS ``ff_norm``; SwiGLU ``ff_out(silu(ff_proj(x)) * up_proj(x))`` at the
  base's full MLP size; residual;
* ``ln_f`` (RMS), then scale and shift from ``adaLN_modulation(time_embedder(1000 x mask_ratio))``:
  ``x * (1 + scale) + shift``;
* the output: ``proj_out(x) + prev_features``.

New tokens are the base's bare ``wte`` rows (``backbone.embed_ids``): the tokens committed at the
previous step and, for the conditional branch, the prompt tokens.

Where the batched version departs from the published module (which runs at batch 1 only: its RoPE
gather flattens the positions over the batch), it keeps the published result row by row:

* each row's new tokens keep their own positions, and padded new-token slots are masked out of
  the cross-attention;
* Lumina-DiMOO's rows are left-padded to one prompt length and the base never sees that padding
  (``feature_valid``): the padding is masked out of the head's self-attention, every position is
  counted from the row's first real token (so RoPE sees the published positions), and the padding's
  features pass through unchanged.

Dtype: the published loop runs this head under bf16 autocast, with fp32 weights, on the base's bf16
features. ``place`` keeps the weights in fp32 and ``forward`` autocasts to the features' dtype when it
is below fp32; on fp32 features everything is fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from migm_shortcut.errors import MigmError
from migm_shortcut.modeling import PretrainedModule
from migm_shortcut.released_heads import released_sizes
from migm_shortcut.shortcut import ShortcutHead, ShortcutHeadConfig, TimestepEmbedder, register_head_architecture


class RMSLayerNorm(nn.Module):
    """LLaDA's RMS norm: normalise in fp32, back to the input's dtype, then times the weight."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            y = x.float()
            y = (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return self.weight * y


def rotary(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE on (B, H, T, D) at per-row positions (B, T), in fp32, returned in ``x``'s dtype."""
    d = x.shape[-1]
    with torch.autocast(x.device.type, enabled=False):
        inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float) / d))
        angles = positions.float()[..., None] * inv_freq
        angles = torch.cat([angles, angles], -1)[:, None]  # (B, 1, T, D)
        y = x.float()
        first, second = y.chunk(2, -1)
        y = y * angles.cos() + torch.cat([-second, first], -1) * angles.sin()
    return y.to(x.dtype)


class LlamaBlock(nn.Module):
    """LLaDA's llama block; with ``context`` the cross-attention variant of the published head."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, theta: float, eps: float):
        super().__init__()
        self.heads, self.theta = heads, theta
        self.attn_norm, self.ff_norm = RMSLayerNorm(dim, eps), RMSLayerNorm(dim, eps)
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.ff_proj = nn.Linear(dim, mlp_hidden, bias=False)
        self.up_proj = nn.Linear(dim, mlp_hidden, bias=False)
        self.ff_out = nn.Linear(mlp_hidden, dim, bias=False)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, positions: torch.Tensor, context: torch.Tensor | None = None,
                context_positions: torch.Tensor | None = None, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        h = self.attn_norm(x)
        c = h if context is None else self.attn_norm(context)
        split = lambda y: y.view(b, y.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(h)), split(self.k_proj(c)), split(self.v_proj(c))
        q = rotary(q, positions, self.theta)
        k = rotary(k, positions if context is None else context_positions, self.theta)
        mask = None if key_valid is None else key_valid[:, None, None, :]
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.attn_out(att.transpose(1, 2).reshape(b, t, d))
        h = self.ff_norm(x)
        return x + self.ff_out(self.act(self.ff_proj(h)) * self.up_proj(h))


class ShortcutAttnBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_hidden: int, theta: float, eps: float):
        super().__init__()
        self.cross_attn = LlamaBlock(dim, heads, mlp_hidden, theta, eps)
        self.self_attn = LlamaBlock(dim, heads, mlp_hidden, theta, eps)

    def forward(self, x, positions, new_tokens, new_positions, new_valid, feature_valid):
        x = self.cross_attn(x, positions, new_tokens, new_positions, new_valid)
        return self.self_attn(x, positions, key_valid=feature_valid)


@register_head_architecture("dimoo-shortcut")
class DiMOOShortcutHead(ShortcutHead):
    """``ShortcutHeadConfig(architecture="dimoo-shortcut", width=C, ratio=2, heads=<base's>, mlp_hidden=<base's>,
    rope_theta=<base's>, norm_eps=<base's>)``; Lumina-DiMOO's published head: C=4096, ratio 2, 32 heads,
    MLP 12288, 1 block (``DiMOOModel.head_options`` reads them off the checkpoint's config)."""

    applies_positions = True

    def __init__(self, config: ShortcutHeadConfig = ShortcutHeadConfig(architecture="dimoo-shortcut")):
        PretrainedModule.__init__(self, config)  # the network below, not the generic one
        dim = round(config.width / config.ratio)
        heads = config.resolve_heads()
        if dim % heads or (dim // heads) % 2:
            raise MigmError(f"head inner width {dim} does not split into {heads} heads of an even size (RoPE)")
        mlp_hidden = config.mlp_hidden or int(dim * config.mlp_ratio)
        projection = (lambda a, b: nn.Linear(a, b)) if config.ratio != 1 else (lambda a, b: nn.Identity())  # noqa: E731
        self.proj_in, self.proj_out = projection(config.width, dim), projection(dim, config.width)
        self.new_token_proj_in = projection(config.width, dim)
        self.blocks = nn.ModuleList(ShortcutAttnBlock(dim, heads, mlp_hidden, config.rope_theta, config.norm_eps)
                                    for _ in range(config.num_blocks))
        self.ln_f = RMSLayerNorm(dim, config.norm_eps)
        self.time_embedder = TimestepEmbedder(dim)
        self.adaLN_modulation = nn.Linear(dim, 2 * dim)
        # Start from "copy the previous features", as the generic head does (a released head overwrites it).
        nn.init.zeros_(self.adaLN_modulation.weight)
        nn.init.zeros_(self.adaLN_modulation.bias)
        if isinstance(self.proj_out, nn.Linear):
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def place(self, device: torch.device, dtype: torch.dtype) -> "DiMOOShortcutHead":
        return self.to(device)  # fp32 weights; forward autocasts to the features' dtype, as published

    def forward(self, features: torch.Tensor, token_embeddings: torch.Tensor, token_valid: torch.Tensor,
                mask_ratio: torch.Tensor, token_positions: torch.Tensor | None = None,
                feature_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Next-step features (shapes as ``ShortcutHead.forward``); ``token_embeddings`` are bare ``wte`` rows."""
        self.check_inputs(features, token_embeddings, token_valid, mask_ratio)
        if token_positions is None:
            raise MigmError("the dimoo-shortcut head needs the new tokens' positions (it applies RoPE itself)")
        low = features.dtype if features.dtype in (torch.bfloat16, torch.float16) else None
        with torch.autocast(features.device.type, dtype=low or torch.bfloat16, enabled=low is not None):
            return self._predict(features, token_embeddings, token_valid.bool(), mask_ratio, token_positions, feature_valid)

    def _predict(self, prev, new_tokens, new_valid, mask_ratio, new_positions, feature_valid):
        b, length, _ = prev.shape
        positions = torch.arange(length, device=prev.device).expand(b, -1)
        if feature_valid is not None:  # count positions from each row's first real token, as the base saw the row
            offset = (~feature_valid).sum(1, keepdim=True)
            positions, new_positions = positions - offset, new_positions - offset
            if bool(feature_valid.all()):
                feature_valid = None
        new_valid = None if bool(new_valid.all()) else new_valid
        x = self.proj_in(prev)
        new_tokens = self.new_token_proj_in(new_tokens)
        for block in self.blocks:
            x = block(x, positions, new_tokens, new_positions, new_valid, feature_valid)
        x = self.ln_f(x)
        scale, shift = self.adaLN_modulation(self.time_embedder(mask_ratio * 1000)).unsqueeze(1).chunk(2, -1)
        out = self.proj_out(x * (1 + scale) + shift) + prev
        return out if feature_valid is None else torch.where(feature_valid[..., None], out, prev.to(out.dtype))

    @staticmethod
    def config_from_state(state: dict[str, torch.Tensor], backbone, options: dict) -> ShortcutHeadConfig:
        """The head's config from a released state dict (``dimoo-shortcut.pth``) and the base it is for: the
        width and bottleneck from ``proj_in`` (or, at ratio 1, ``ln_f``), the MLP size from ``ff_proj``, the
        block count from the keys. Heads, the RoPE base and the norm epsilon cannot be read off the tensors:
        they are the base's (``options``, from the checkpoint's config), as the published head takes them."""
        width, ratio, num_blocks = released_sizes(state, backbone, "ln_f.weight", "DiMOO-Shortcut")
        ff = state.get("blocks.0.cross_attn.ff_proj.weight")
        return ShortcutHeadConfig(architecture="dimoo-shortcut", width=width, ratio=ratio, heads=options["heads"],
                                  num_blocks=num_blocks,
                                  mlp_hidden=int(ff.shape[0]) if ff is not None else options.get("mlp_hidden", 0),
                                  rope_theta=options.get("rope_theta", 10000.0), norm_eps=options.get("norm_eps", 1e-5),
                                  base_fingerprint=backbone.fingerprint)
