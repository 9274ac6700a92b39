"""The embedded backbone: a mini Lumina-DiMOO.

One bidirectional transformer over one token sequence that holds text and image::

    [prompt words, padded to prompt_len] [BOI] grid x ([grid x image code] [EOR]) [EOI]

Image codes are a slice of the vocabulary (``code_offset .. code_offset + codebook_size``),
as in Lumina-DiMOO. The model's *features* are the last hidden states after the final norm;
its *head* maps features to logits, and the sampler only reads the image-code slice of it.
That split — ``features(input_ids)`` then ``logits_from_features(h)`` — is the seam the
shortcut head and the caching baselines plug into. ML-Cache additionally needs every layer's
keys and values: ``features(ids, kv_cache=cache)`` fills a ``KVCache``, and
``features_at(ids, index, cache)`` recomputes only the positions in ``index`` through every
layer, their queries attending to the cached keys/values (which they overwrite).

Read top to bottom: config, layout, attention, block, model. The layout and the K/V cache are
shared with the other models (``migm_shortcut.sequence``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from migm_shortcut.errors import MigmError
from migm_shortcut.interface import ModelInfo
from migm_shortcut.io import tensor_digest
from migm_shortcut.modeling import PretrainedModule
from migm_shortcut.embedded.prompts import WORDS, prompt_class
from migm_shortcut.sequence import KVCache, SequenceLayout, check_sequence_shape


@dataclass
class BackboneConfig:
    words: list[str] = field(default_factory=lambda: list(WORDS))
    codebook_size: int = 256
    grid_size: int = 14
    prompt_len: int = 12
    width: int = 192
    depth: int = 6
    heads: int = 3
    mlp_ratio: float = 4.0


class EmbeddedLayout(SequenceLayout):
    """The embedded model's layout: a prompt must also name exactly one Fashion-MNIST class."""

    def tokenize(self, prompt: str) -> list[int]:
        if isinstance(prompt, str):
            prompt_class(prompt)  # rejects unknown words and prompts that name no class
        return super().tokenize(prompt)


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                index: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        if cache is not None:
            k, v = cache.update(layer, k, v, index)
        out = F.scaled_dot_product_attention(q, k, v)  # bidirectional: no causal mask
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                index: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cache, layer, index)
        return x + self.mlp(self.norm2(x))


class MiniDiMOO(ModelInfo, PretrainedModule):
    config_class = BackboneConfig
    model_type = "mini-dimoo"

    def __init__(self, config: BackboneConfig = BackboneConfig()):
        super().__init__(config)
        if config.width % config.heads:
            raise MigmError(f"width {config.width} is not divisible by heads {config.heads}")
        self.layout = EmbeddedLayout(config)
        self.token_embedding = nn.Embedding(self.layout.vocab_size, config.width)
        self.position_embedding = nn.Embedding(self.layout.seq_len, config.width)
        self.blocks = nn.ModuleList(Block(config.width, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(config.width)
        self.lm_head = nn.Linear(config.width, self.layout.vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def width(self) -> int:
        return self.config.width

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids, torch.arange(input_ids.shape[1], device=input_ids.device))

    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token plus position embedding of arbitrary (id, position) pairs: the shortcut head's input."""
        return self.token_embedding(ids) + self.position_embedding(positions)

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The token embedding alone (for heads that place positions themselves)."""
        return self.token_embedding(ids)

    def features(self, input_ids: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """Last-layer features after the final norm: (B, L) ids -> (B, L, width).

        With ``kv_cache`` every layer's keys and values are stored in it (for ``features_at``).
        """
        check_sequence_shape(input_ids, self.layout.seq_len)
        x = self.embed(input_ids)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache, i)
        return self.final_norm(x)

    def features_at(self, input_ids: torch.Tensor, index: torch.Tensor, kv_cache: KVCache) -> torch.Tensor:
        """Features of only the positions ``index`` (B, P), against the cached keys/values of the rest.

        Each selected position is embedded from its current id, and at every layer its query
        attends to all L cached keys/values, after its own fresh key/value has been written into
        the cache. With every position selected this is the full forward pass.
        """
        ids = input_ids.gather(1, index)
        x = self.embed_tokens(ids, index)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache, i, index)
        return self.final_norm(x)

    def logits_from_features(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The model's own head restricted to the image-code slice: (..., width) -> (..., codebook_size)."""
        lo, hi = self.layout.code_offset, self.layout.vocab_size
        return F.linear(features, self.lm_head.weight[lo:hi], self.lm_head.bias[lo:hi])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Image-code logits at every position (training uses the image positions)."""
        return self.logits_from_features(self.features(input_ids))

    @cached_property
    def fingerprint(self) -> str:
        """Identifies this base model: architecture plus a hash of its embeddings and head.

        A shortcut head learns in the feature space of exactly one base model; the
        fingerprint lets a saved head refuse to load onto any other.
        """
        w = self.config
        arch = f"{self.model_type}:w{w.width}:d{w.depth}:h{w.heads}:g{w.grid_size}:k{w.codebook_size}:p{w.prompt_len}"
        digest = tensor_digest(self.token_embedding.weight, self.position_embedding.weight,
                               self.final_norm.weight, self.lm_head.weight)
        return f"{arch}:{digest}"
