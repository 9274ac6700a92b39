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

Read top to bottom: config, layout, K/V cache, attention, block, model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .errors import MigmError
from .io import tensor_digest
from .modeling import PretrainedModule
from .prompts import WORDS, prompt_class, split_words

# Special token ids; text words follow them, image codes follow the words.
PAD, MASK, BOI, EOI, EOR, UNCOND = range(6)
NUM_SPECIAL = 6


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


def grid_positions(start: int, grid: int, end_of_row: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence positions of a row-major image grid starting at ``start``, and of the end-of-row
    tokens after each row (none when ``end_of_row`` is False)."""
    rows = torch.arange(grid).repeat_interleave(grid)
    cols = torch.arange(grid).repeat(grid)
    stride = grid + 1 if end_of_row else grid
    eor = start + torch.arange(grid) * stride + grid if end_of_row else torch.zeros(0, dtype=torch.long)
    return start + rows * stride + cols, eor


def check_sequence_shape(input_ids: torch.Tensor, seq_len: int) -> None:
    if input_ids.ndim != 2 or input_ids.shape[1] != seq_len:
        raise MigmError(f"input_ids must be (batch, {seq_len}), got {tuple(input_ids.shape)}")


class SequenceLayout:
    """Where everything sits in the sequence, and how prompts become token ids.

    ``image_delimiters=True`` is the Lumina-DiMOO layout (BOI, an end-of-row token after every
    row, EOI); ``False`` is the plain ``[prompt][image grid]`` layout of models whose image
    input is the bare token grid (aMUSEd). ``prompt_in_sequence`` says whether the prompt tokens
    are part of the model's own input sequence (DiMOO) or only conditioning beside it (aMUSEd's
    cross-attention); the shortcut head sees prompt tokens among the new tokens only in the first case.
    """

    def __init__(self, config, image_delimiters: bool = True, prompt_in_sequence: bool = True):
        self.config = config
        self.image_delimiters = image_delimiters
        self.prompt_in_sequence = prompt_in_sequence
        self.word_to_id = {w: NUM_SPECIAL + i for i, w in enumerate(config.words)}
        self.code_offset = NUM_SPECIAL + len(config.words)
        self.codebook_size = config.codebook_size
        self.vocab_size = self.code_offset + config.codebook_size
        g = config.grid_size
        self.prompt_len = config.prompt_len
        self.pad_id = PAD
        self.num_image_tokens = g * g
        if image_delimiters:
            self.boi_position = config.prompt_len
            self.seq_len = config.prompt_len + 1 + g * (g + 1) + 1
            self.image_positions, self.eor_positions = grid_positions(self.boi_position + 1, g, end_of_row=True)
        else:
            self.seq_len = config.prompt_len + g * g
            self.image_positions, self.eor_positions = grid_positions(config.prompt_len, g, end_of_row=False)

    def encode_prompt(self, prompt: str | None) -> torch.Tensor:
        """Prompt words -> ``prompt_len`` ids (``None`` is the unconditional prompt)."""
        ids = torch.full((self.config.prompt_len,), PAD, dtype=torch.long)
        if prompt is None:
            ids[0] = UNCOND
            return ids
        prompt_class(prompt)  # rejects unknown words and prompts that name no class
        words = split_words(prompt)
        if len(words) > self.config.prompt_len:
            raise MigmError(f"prompt {prompt!r} has {len(words)} words; at most {self.config.prompt_len} fit")
        ids[: len(words)] = torch.tensor([self.word_to_id[w] for w in words])
        return ids

    def template(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """Full sequences with every image token masked: (B, prompt_len) -> (B, seq_len)."""
        b = prompt_ids.shape[0]
        seq = torch.full((b, self.seq_len), MASK, dtype=torch.long, device=prompt_ids.device)
        seq[:, : self.config.prompt_len] = prompt_ids
        if self.image_delimiters:
            seq[:, self.boi_position] = BOI
            seq[:, self.eor_positions.to(seq.device)] = EOR
            seq[:, -1] = EOI
        return seq

    def with_codes(self, seq: torch.Tensor, codes: torch.Tensor, committed: torch.Tensor) -> torch.Tensor:
        """Write image codes (B, N_img) into ``seq`` where ``committed``; MASK elsewhere."""
        image = torch.where(committed, codes + self.code_offset, torch.full_like(codes, MASK))
        seq = seq.clone()
        seq[:, self.image_positions.to(seq.device)] = image
        return seq


class KVCache:
    """Keys and values of every layer from the last full pass: ``keys[i]`` is (B, heads, L, head_dim).

    A full pass (``index is None``) replaces a layer's entry; a partial pass writes the keys and
    values of the positions it recomputed into it, in place.
    """

    def __init__(self):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.keys)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor | None):
        if index is None:
            k, v = k.clone(), v.clone()  # own storage: partial passes write into it in place
            if layer < len(self.keys):
                self.keys[layer], self.values[layer] = k, v
            else:
                self.keys.append(k)
                self.values.append(v)
            return k, v
        if layer >= len(self.keys):
            raise MigmError("partial forward without a filled K/V cache: run a full step with this cache first")
        where = index[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        self.keys[layer].scatter_(2, where, k)
        self.values[layer].scatter_(2, where, v)
        return self.keys[layer], self.values[layer]


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


class MiniDiMOO(PretrainedModule):
    config_class = BackboneConfig
    model_type = "mini-dimoo"

    def __init__(self, config: BackboneConfig = BackboneConfig()):
        super().__init__(config)
        if config.width % config.heads:
            raise MigmError(f"width {config.width} is not divisible by heads {config.heads}")
        self.layout = SequenceLayout(config)
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

    def check_input_ids(self, input_ids: torch.Tensor) -> None:
        check_sequence_shape(input_ids, self.layout.seq_len)
        if input_ids.min() < 0 or input_ids.max() >= self.layout.vocab_size:
            raise MigmError(f"token ids must lie in 0..{self.layout.vocab_size - 1}")

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids, torch.arange(input_ids.shape[1], device=input_ids.device))

    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token plus position embedding of arbitrary (id, position) pairs: the shortcut head's input."""
        return self.token_embedding(ids) + self.position_embedding(positions)

    def features(self, input_ids: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """Last-layer features after the final norm: (B, L) ids -> (B, L, width).

        With ``kv_cache`` every layer's keys and values are stored in it (for ``features_at``).
        """
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

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
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
