"""Token sequences every model here shares: grid positions, the word-level layout, the K/V cache.

A masked image model sees one sequence per sample. ``SequenceLayout`` is the package's own
layout (the embedded model and the aMUSEd adapter use it)::

    [prompt ids, padded to prompt_len] [BOI] rows x ([W image codes] [EOR]) [EOI]   (DiMOO-style)
    [prompt ids, padded to prompt_len] [H x W image codes]                          (bare grid)

Image codes are a slice of the vocabulary (``code_offset .. code_offset + codebook_size``).
Other models bring their own layout (``migm_shortcut.dimoo.model.LLaDAImageLayout``); all
follow ``migm_shortcut.interface.TokenLayout``.
"""

from __future__ import annotations

import torch

from migm_shortcut.errors import MigmError

# The package layout's special ids; prompt words follow them, image codes follow the words.
PAD, MASK, BOI, EOI, EOR, UNCOND = range(6)
NUM_SPECIAL = 6


def grid_positions(start: int, height: int, width: int, end_of_row: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence positions of a row-major ``height x width`` image grid starting at ``start``, and of
    the end-of-row tokens after each row (none when ``end_of_row`` is False)."""
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    stride = width + 1 if end_of_row else width
    eor = start + torch.arange(height) * stride + width if end_of_row else torch.zeros(0, dtype=torch.long)
    return start + rows * stride + cols, eor


def check_sequence_shape(input_ids: torch.Tensor, seq_len: int) -> None:
    if input_ids.ndim != 2 or input_ids.shape[1] != seq_len:
        raise MigmError(f"input_ids must be (batch, {seq_len}), got {tuple(input_ids.shape)}")


def write_image_codes(layout, seq: torch.Tensor, codes: torch.Tensor, committed: torch.Tensor) -> torch.Tensor:
    """A copy of ``seq`` with image codes (B, N_img) written where ``committed`` and the mask elsewhere:
    every layout's ``with_codes`` (they differ only in ``code_offset``, ``mask_id`` and positions)."""
    image = torch.where(committed, codes + layout.code_offset, torch.full_like(codes, layout.mask_id))
    seq = seq.clone()
    seq[:, layout.image_positions.to(seq.device)] = image
    return seq


def write_committed(layout, seq: torch.Tensor, positions: torch.Tensor, codes: torch.Tensor,
                    num_branches: int) -> torch.Tensor:
    """A copy of ``seq`` (branches * B, L) with image codes (B, M) written at sequence ``positions``
    (B, M) in every CFG branch: the sampler's commit. One scatter over the branch-major view,
    where ``with_codes`` rewrites every image position; the same ids, since a template starts all
    masked and a committed token is never re-masked."""
    rows = seq.view(num_branches, -1, seq.shape[-1])
    ids = (codes + layout.code_offset).expand(num_branches, -1, -1)
    return rows.scatter(2, positions.expand(num_branches, -1, -1), ids).view_as(seq)


def per_branch(x: torch.Tensor, num_branches: int) -> torch.Tensor:
    """``x`` (B, ...) once per CFG branch: (branches * B, ...), branch-major like the sampler's batch.
    A concatenation: at the loop's sizes it costs half of ``repeat``, and this runs several times a step."""
    return x if num_branches == 1 else torch.cat([x] * num_branches)


def split_words(prompt: str) -> list[str]:
    import re

    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", prompt.lower())


class SequenceLayout:
    """Where everything sits in the sequence, and how prompts become ids (a closed word list).

    ``config`` gives ``words``, ``codebook_size``, ``grid_size`` and ``prompt_len``.
    ``image_delimiters=True`` is the Lumina-DiMOO layout (BOI, an end-of-row token after every
    row, EOI); ``False`` is the bare ``[prompt][image grid]`` layout of models whose image input
    is the token grid (aMUSEd). ``prompt_in_sequence`` says whether the prompt tokens are part of
    the model's own input sequence (DiMOO) or only conditioning beside it (aMUSEd's
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
        self.grid_shape = (g, g)
        self.prompt_len = config.prompt_len
        self.pad_id = PAD
        self.mask_id = MASK
        self.num_image_tokens = g * g
        if image_delimiters:
            self.boi_position = config.prompt_len
            self.seq_len = config.prompt_len + 1 + g * (g + 1) + 1
            self.image_positions, self.eor_positions = grid_positions(self.boi_position + 1, g, g, end_of_row=True)
        else:
            self.seq_len = config.prompt_len + g * g
            self.image_positions, self.eor_positions = grid_positions(config.prompt_len, g, g, end_of_row=False)

    def tokenize(self, prompt: str) -> list[int]:
        words = split_words(prompt) if isinstance(prompt, str) else None
        if words is None:
            raise MigmError(f"this model takes text prompts, got {prompt!r}")
        unknown = [w for w in words if w not in self.word_to_id]
        if unknown:
            raise MigmError(f"unknown word {unknown[0]!r} in prompt {prompt!r}; this model knows: "
                            f"{', '.join(self.word_to_id)}")
        return [self.word_to_id[w] for w in words]

    def encode_prompt(self, prompt: str | None) -> torch.Tensor:
        """A prompt -> ``prompt_len`` ids (``None`` is the unconditional prompt: UNCOND, then padding)."""
        ids = torch.full((self.prompt_len,), PAD, dtype=torch.long)
        if prompt is None:
            ids[0] = UNCOND
            return ids
        tokens = self.tokenize(prompt)
        if len(tokens) > self.prompt_len:
            raise MigmError(f"prompt {prompt!r} has {len(tokens)} words; at most {self.prompt_len} fit")
        ids[: len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids

    def template(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """Full sequences with every image token masked: (B, prompt_len) -> (B, seq_len)."""
        b = prompt_ids.shape[0]
        seq = torch.full((b, self.seq_len), MASK, dtype=torch.long, device=prompt_ids.device)
        seq[:, : self.prompt_len] = prompt_ids
        if self.image_delimiters:
            seq[:, self.boi_position] = BOI
            seq[:, self.eor_positions.to(seq.device)] = EOR
            seq[:, -1] = EOI
        return seq

    def with_codes(self, seq: torch.Tensor, codes: torch.Tensor, committed: torch.Tensor) -> torch.Tensor:
        """Write image codes (B, N_img) into ``seq`` where ``committed``; MASK elsewhere."""
        return write_image_codes(self, seq, codes, committed)


class KVCache:
    """Keys and values of every layer from the last full pass: ``keys[i]`` is (B, heads, L, head_dim).

    A full pass (``index is None``) replaces a layer's entry; a partial pass writes the keys and
    values of the positions it recomputed into it, in place. Any model whose attention layers
    call ``update`` can serve ML-Cache's partial steps (``features(ids, kv_cache=)`` and
    ``features_at(ids, index, cache)``).
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
