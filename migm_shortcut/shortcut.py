"""The shortcut head: a small network that predicts the base model's next-step features.

A masked image generation model's last-layer features ``h_k`` (after the final norm, before
the output head) change from step to step mostly because of the tokens committed in
between. The head learns that map,

    h_{k+1} ~= h_k + S(h_k, new tokens, r),

where ``r`` is the share of image tokens still masked in the sequence whose features are
predicted. Logits on a shortcut step come from the base model's own head, so the sampler
does not know which kind of step it is on.

Architecture (read top to bottom):

* the features are projected down from C to C / ratio (the bottleneck);
* the newly committed tokens are embedded with the base model's *frozen* token embedding and
  position scheme (``backbone.embed_tokens``) and projected the same way; a learned null
  token is always present, so an empty set of new tokens is well defined;
* each block: cross-attention (queries: features; keys/values: new tokens, padding masked
  out) + MLP, then self-attention over the features + MLP, all pre-norm with residuals;
* output: norm, scale/shift from a sinusoidal embedding of ``1000 * r``, projection back to C
  (zero-initialised, so an untrained head is the copy-previous-features predictor), added to
  ``h_k``;
* optionally (``direct_token_path``), each new token's projected embedding is also added to the
  features at its own position before the blocks (zero-initialised). Without it a new token reaches
  its position only through cross-attention matching positions, and the features there are the ones
  that change most when a mask becomes a token.

A saved head records the fingerprint of the base model it was trained for; loading it onto
any other base model fails with one clear line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from migm_shortcut.errors import MigmError
from migm_shortcut.modeling import PretrainedModule
from migm_shortcut.sequence import per_branch


# The head architectures: "generic" is this module's own; a family registers the published one it
# matches (``register_head_architecture``) and names its default in LoadedModel.head_architecture.
HEAD_ARCHITECTURES: dict[str, type] = {}


def register_head_architecture(name: str):
    """Class decorator: ``ShortcutHead(config)`` builds this subclass when ``config.architecture`` is ``name``."""
    def register(cls):
        HEAD_ARCHITECTURES[name] = cls
        return cls

    return register


def head_class(architecture: str) -> type:
    if architecture not in HEAD_ARCHITECTURES:
        from migm_shortcut.registry import model_kinds

        model_kinds()  # the families register their published architectures on import
    if architecture not in HEAD_ARCHITECTURES:
        raise MigmError(f"unknown head architecture {architecture!r}; this version builds: {', '.join(HEAD_ARCHITECTURES)}")
    return HEAD_ARCHITECTURES[architecture]


@dataclass
class ShortcutHeadConfig:
    architecture: str = "generic"  # which network (HEAD_ARCHITECTURES); heads saved before the field are generic
    width: int = 192            # the base model's feature width C
    ratio: int = 2              # bottleneck: the head works at C / ratio
    heads: int = 0              # attention heads; 0: scaled with the width (default_heads), resolved when built
    mlp_ratio: float = 2.0
    num_blocks: int = 1
    base_fingerprint: str = ""  # the base model this head was trained for
    # Used by the architectures built from the base's own blocks (dimoo-shortcut): its MLP size
    # (0: inner x mlp_ratio), its RoPE base and its norms' epsilon.
    mlp_hidden: int = 0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # The generic head only: add each new token's embedding at its own position (see the module docstring).
    direct_token_path: bool = False

    @property
    def inner(self) -> int:
        return self.width // self.ratio

    def resolve_heads(self) -> int:
        """``heads``, or when 0 the default for the inner width; written back so a saved head names it."""
        if self.heads < 0 or self.mlp_hidden < 0:
            raise MigmError(f"head sizes must not be negative (heads {self.heads}, mlp_hidden {self.mlp_hidden}); "
                            "0 means the default")
        if self.heads == 0:
            self.heads = default_heads(self.inner)
        return self.heads


def default_heads(inner: int) -> int:
    """Attention heads for an inner width: the fewest whose head size is at most 128 channels, so heads
    are 64-128 wide wherever the width allows (96 -> 1 head, 384 -> 3, 2048 -> 16). A fixed count
    would give 2 heads of 1024 channels at Lumina-DiMOO's width."""
    for heads in range(1, inner + 1):
        if inner % heads == 0 and inner // heads <= 128:
            return heads
    return 1


class Attention(nn.Module):
    """Multi-head attention; ``context=None`` is self-attention. ``key_valid``: (B, M) bool."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_valid: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q = rearrange(self.q(x), "b l (h d) -> b h l d", h=self.heads)
        k, v = rearrange(self.kv(context), "b m (two h d) -> two b h m d", two=2, h=self.heads)
        mask = None if key_valid is None else key_valid[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


def mlp(dim: int, ratio: float) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class ShortcutBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross = Attention(dim, heads)
        self.norm_cross_mlp = nn.LayerNorm(dim)
        self.cross_mlp = mlp(dim, mlp_ratio)
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm_self_mlp = nn.LayerNorm(dim)
        self.self_mlp = mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + self.cross(self.norm_q(x), self.norm_kv(tokens), valid)
        x = x + self.cross_mlp(self.norm_cross_mlp(x))
        x = x + self.self_attn(self.norm_self(x))
        return x + self.self_mlp(self.norm_self_mlp(x))


def sinusoidal_embedding(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = values.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedder(nn.Module):
    """The published heads' embedding of ``1000 x mask_ratio`` (DiT's timestep embedder): 256 sinusoidal
    frequencies, cos then sin, then Linear-SiLU-Linear with round(sqrt(256 x dim)) hidden units."""

    FREQUENCIES = 256

    def __init__(self, dim: int):
        super().__init__()
        hidden = round(math.sqrt(dim * self.FREQUENCIES))
        self.mlp = nn.Sequential(nn.Linear(self.FREQUENCIES, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.FREQUENCIES))


class ShortcutHead(PretrainedModule):
    """The shortcut head. ``ShortcutHead(config)`` builds the architecture ``config.architecture``
    names: this class is the generic one; the published ones are subclasses registered by their
    families (``maskgit.shortcut_head``). Everything outside the network (binding to a base,
    saving, the shortcut step) is shared."""

    config_class = ShortcutHeadConfig
    model_type = "migm-shortcut-head"
    # How the new tokens reach the head: False, the base's embedding *with* its position scheme
    # (``backbone.embed_tokens``); True, the bare token embedding (``backbone.embed_ids``) plus the
    # positions, which the head applies itself (RoPE, as the published DiMOO-Shortcut head does).
    applies_positions: bool = False

    def __new__(cls, config: ShortcutHeadConfig = ShortcutHeadConfig()):
        if cls is ShortcutHead and config.architecture != "generic":
            cls = head_class(config.architecture)
        if config.direct_token_path and config.architecture != "generic":
            raise MigmError(f"direct_token_path is an option of the generic head; the {config.architecture} head "
                            "is the published network and has no such path")
        return super().__new__(cls)

    def __init__(self, config: ShortcutHeadConfig = ShortcutHeadConfig()):
        super().__init__(config)
        if config.ratio < 1 or config.width % config.ratio:
            raise MigmError(f"head ratio {config.ratio} must be >= 1 and divide the width {config.width}")
        dim = config.inner
        config.resolve_heads()
        if dim % config.heads:
            raise MigmError(f"head inner width {dim} is not divisible by heads {config.heads}")
        self.feature_in = nn.Linear(config.width, dim)
        self.token_in = nn.Linear(config.width, dim)
        self.null_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(ShortcutBlock(dim, config.heads, config.mlp_ratio) for _ in range(config.num_blocks))
        self.out_norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.ratio_embed = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, config.width)
        if config.direct_token_path:
            self.token_at_position = nn.Linear(config.width, dim)
        for block in self.blocks:
            for module in block.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
        # Zero output and modulation: training starts from "copy the previous features".
        # The direct path starts at zero too, so adding it to a trained head leaves its predictions unchanged.
        for layer in (self.out, self.ratio_embed[-1], getattr(self, "token_at_position", None)):
            if layer is None:
                continue
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # -- the base model this head belongs to ------------------------------------------------
    def check_base(self, backbone) -> None:
        """Refuse a base model other than the one the head was trained for."""
        if backbone.width != self.config.width:
            raise MigmError(f"shortcut head expects features of width {self.config.width}, the base model has "
                            f"{backbone.width}; train a head for this model (migm-shortcut train-head)")
        expected = self.config.base_fingerprint
        if expected and expected != backbone.fingerprint:
            raise MigmError(f"this shortcut head was trained for base model {expected[:60]}..., not for "
                            f"{backbone.fingerprint[:60]}...; train a head for this model (migm-shortcut train-head)")

    def rebind(self, backbone) -> bool:
        """Bind a head trained for another checkpoint of ``backbone``'s architecture to ``backbone`` (to
        fine-tune it there); True if it was bound to another. A fingerprint is ``architecture:digest``:
        another architecture is refused."""
        trained_for = self.config.base_fingerprint
        if not trained_for or trained_for == backbone.fingerprint:
            return False
        if trained_for.rsplit(":", 1)[0] != backbone.fingerprint.rsplit(":", 1)[0]:
            raise MigmError(f"--init-head was trained for a base of another architecture ({trained_for[:60]}...); "
                            "--rebind-init-head only carries a head across checkpoints of one architecture")
        self.config.base_fingerprint = backbone.fingerprint
        return True

    @classmethod
    def for_base(cls, backbone, **overrides) -> "ShortcutHead":
        """A fresh head sized for ``backbone`` and bound to its fingerprint."""
        return cls(ShortcutHeadConfig(width=backbone.width, base_fingerprint=backbone.fingerprint, **overrides))

    def place(self, device: torch.device, dtype: torch.dtype) -> "ShortcutHead":
        """Move the head where the sampler runs the base; it computes in the base's dtype (bf16 on a GPU).
        An architecture with its own published dtype handling overrides this (dimoo-shortcut)."""
        return self.to(device, dtype)

    # -- prediction ----------------------------------------------------------------------
    def forward(self, features: torch.Tensor, token_embeddings: torch.Tensor, token_valid: torch.Tensor,
                mask_ratio: torch.Tensor, token_positions: torch.Tensor | None = None,
                feature_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Next-step features.

        features: (B, L, C) previous features; token_embeddings: (B, M, C) the new tokens as
        the base model embeds them; token_valid: (B, M) bool, False at padding;
        mask_ratio: (B,) share of image tokens still masked after the new tokens;
        token_positions: (B, M) the new tokens' sequence positions and feature_valid: (B, L) bool,
        False at positions the base's forward never sees (batching padding), for the architectures
        that place tokens themselves (``applies_positions``); this one reads neither.
        """
        b = features.shape[0]
        self.check_inputs(features, token_embeddings, token_valid, mask_ratio)
        dtype = self.feature_in.weight.dtype
        x = self.feature_in(features.to(dtype))
        if self.config.direct_token_path:
            x = x + self.tokens_at_positions(token_embeddings.to(dtype), token_valid, token_positions, x.shape[1])
        tokens = torch.cat([self.null_token.expand(b, 1, -1), self.token_in(token_embeddings.to(dtype))], dim=1)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=token_valid.device), token_valid.bool()], dim=1)
        for block in self.blocks:
            x = block(x, tokens, valid)
        scale, shift = self.ratio_embed(sinusoidal_embedding(1000 * mask_ratio, x.shape[-1]).to(dtype)).chunk(2, -1)
        x = self.out_norm(x) * (1 + scale[:, None]) + shift[:, None]
        return features.to(dtype) + self.out(x)

    def tokens_at_positions(self, token_embeddings: torch.Tensor, token_valid: torch.Tensor,
                            token_positions: torch.Tensor | None, length: int) -> torch.Tensor:
        """(B, L, inner): each valid new token's projected embedding at its sequence position, zero elsewhere."""
        if token_positions is None or token_positions.shape != token_valid.shape:
            raise MigmError("a head with direct_token_path needs the new tokens' positions (B, M) beside them")
        values = self.token_at_position(token_embeddings) * token_valid[..., None].to(token_embeddings.dtype)
        index = token_positions.long().clamp(0, length - 1)[..., None].expand(-1, -1, values.shape[-1])
        return values.new_zeros(values.shape[0], length, values.shape[-1]).scatter_add_(1, index, values)

    def check_inputs(self, features, token_embeddings, token_valid, mask_ratio) -> None:
        b, _, c = features.shape
        if c != self.config.width:
            raise MigmError(f"features have width {c}, the shortcut head expects {self.config.width}")
        if token_embeddings.shape[0] != b or token_valid.shape != token_embeddings.shape[:2] or mask_ratio.shape != (b,):
            raise MigmError(f"shortcut head inputs disagree: features {tuple(features.shape)}, tokens "
                            f"{tuple(token_embeddings.shape)}, valid {tuple(token_valid.shape)}, ratio {tuple(mask_ratio.shape)}")

    def advance(self, backbone, features: torch.Tensor, new_tokens: "NewTokens", mask_ratio: torch.Tensor) -> torch.Tensor:
        """One shortcut step: embed the new tokens with the base model, then predict."""
        return shortcut_step(self, backbone, features, new_tokens, mask_ratio)


def shortcut_step(head: nn.Module, backbone, features: torch.Tensor, new_tokens: "NewTokens",
                  mask_ratio: torch.Tensor) -> torch.Tensor:
    """``head`` may be a ``ShortcutHead`` or DDP's wrapper of one (training)."""
    module = head.module if isinstance(head, DistributedDataParallel) else head
    with torch.no_grad():
        if module.applies_positions:
            embeddings = backbone.embed_ids(new_tokens.ids)
        else:
            embeddings = backbone.embed_tokens(new_tokens.ids, new_tokens.positions)
    return head(features, embeddings, new_tokens.valid, mask_ratio, new_tokens.positions, new_tokens.feature_valid)


@dataclass
class NewTokens:
    """Ragged sets of new tokens, padded to a common length (``valid`` marks real entries)."""

    ids: torch.Tensor        # (B', M) vocabulary ids
    positions: torch.Tensor  # (B', M) sequence positions
    valid: torch.Tensor      # (B', M) bool
    # (B', L) bool, False at sequence positions the base never sees (its batching padding); None: all seen
    feature_valid: torch.Tensor | None = None

    def to(self, device) -> "NewTokens":
        moved = None if self.feature_valid is None else self.feature_valid.to(device)
        return NewTokens(self.ids.to(device), self.positions.to(device), self.valid.to(device), moved)


def new_tokens(image_ids: torch.Tensor, newly: torch.Tensor | None, image_positions: torch.Tensor,
               prompt_ids: torch.Tensor | None, pad_id: int, num_branches: int, width: int | None = None,
               index: torch.Tensor | None = None, feature_valid: torch.Tensor | None = None) -> NewTokens:
    """The shortcut head's control input for every sequence of a CFG batch.

    image_ids: (B, N_img) vocabulary ids of the image tokens; newly: (B, N_img) bool, the ones
    committed at the step just taken; prompt_ids: (B, P) the conditional prompts, or ``None``
    for models whose prompt is not part of their token sequence. Branch order is the
    sampler's (conditional first). The conditional branch also sees its prompt tokens
    (a constant conditioning signal, as in the Lumina-DiMOO variant of the method); the
    unconditional branch sees only the image tokens. ``width``: the most tokens any row committed,
    when the caller knows it (the sampler does, from its schedule): then nothing is read back
    from the device. ``index`` (B, M): the committed image indices themselves, when every row
    committed M (the sampler's case): then ``newly`` is not read and no sort is needed.
    ``feature_valid``: the backbone's ``feature_valid`` of these rows, carried along for the head.
    """
    if index is not None:
        ids, positions = image_ids.gather(1, index), image_positions.to(index.device)[index]
        valid = torch.ones_like(index, dtype=torch.bool)
    else:
        counts = newly.sum(1)
        if width is None:
            width = max(int(counts.max()), 1)
        # Stable sort puts each row's committed indices first, in image order.
        order = torch.sort((~newly).to(torch.int8), dim=1, stable=True).indices[:, :width]
        valid = torch.arange(width, device=newly.device)[None] < counts[:, None]
        ids = torch.where(valid, image_ids.gather(1, order), pad_id)
        positions = torch.where(valid, image_positions.to(order.device)[order], 0)
    ids, positions, valid = (per_branch(t, num_branches) for t in (ids, positions, valid))
    if prompt_ids is None:  # the prompt is not in the model's sequence: every branch sees image tokens only
        return NewTokens(ids, positions, valid, feature_valid)
    # The conditional rows see their prompt; the unconditional rows padding there, which is invalid.
    prompt_ids = prompt_ids.to(ids.device)
    if num_branches == 2:
        prompt_ids = torch.cat([prompt_ids, torch.full_like(prompt_ids, pad_id)])
    prompt_positions = torch.arange(prompt_ids.shape[1], device=ids.device).expand_as(prompt_ids)
    return NewTokens(torch.cat([prompt_ids, ids], 1), torch.cat([prompt_positions, positions], 1),
                     torch.cat([prompt_ids != pad_id, valid], 1), feature_valid)


def budget_full_steps(num_steps: int, budget: int) -> list[int]:
    """The published placement of B full steps among N: step 0, then ``max(prev + 1, round(N * (k / B)))``.

    The order of operations is the published ``refresh_steps`` one (both MIGM-Shortcut forks): k / B
    first, then times N, then Python's ``round`` (half to even). ``N * k / B`` rounds differently
    at 7 of the (N, B) pairs up to 64, e.g. N=45, B=10.
    """
    if num_steps < 1:
        raise MigmError(f"steps must be at least 1, got {num_steps}")
    if not 1 <= budget <= num_steps:
        raise MigmError(f"budget must be between 1 and the number of steps ({num_steps}), got {budget}")
    steps = [0]
    for k in range(1, budget):
        steps.append(max(steps[-1] + 1, round(num_steps * (k / budget))))
    return steps


HEAD_ARCHITECTURES["generic"] = ShortcutHead
