"""aMUSEd: diffusers' ``UVit2DModel`` behind the package's model interface.

Two layers, so the same feature definition serves both ways of sampling:

* ``UVit2DFeatures`` wraps any ``UVit2DModel`` *without editing it*. The features are the
  output of ``mlm_layer.layer_norm`` — the last norm before the model's output convolution —
  read by a forward hook; ``logits_from_features`` applies the model's own 1x1 output
  convolution (``mlm_layer.conv2``) to them; the shortcut head embeds new tokens with the
  model's frozen token embedding (``embed.embeddings`` + ``embed.layer_norm``) plus a fixed 2D
  sine-cosine position code (a UVit has no position table of its own: its convolutions carry
  position). The drop-in pipeline hook (``migm_shortcut.amused.hook``) uses this layer alone.
* ``AmusedBackbone`` adds a small prompt encoder and a ``[prompt][image grid]`` token layout,
  so the package's sampler, trajectory collection, head training and sweeps run on a UVit2D
  exactly as on the embedded model. It is what ``train-base --architecture amused`` trains.

Feature rows: the head works on one sequence per sample, ``[prompt rows][image rows]``. The
prompt rows are the text states the UVit cross-attends to (``encoder_hidden_states``, when
their width equals the feature width, as in aMUSEd-256: 768 and 768); the image rows are the
features above. So the head sees the prompt, as it does on a DiMOO-style model whose prompt
is in the sequence, and the pipeline hook can build the same rows from the pipeline's inputs.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from migm_shortcut.interface import LoadedModel, ModelInfo, SamplingDefaults, own_head
from migm_shortcut.sequence import MASK, PAD, SequenceLayout, check_sequence_shape, write_image_codes
from migm_shortcut.errors import MigmError
from migm_shortcut.io import tensor_digest
from migm_shortcut.modeling import PretrainedModule
from migm_shortcut.vq import vq_decode

from diffusers import UVit2DModel


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) fixed 2D sine-cosine position code, row-major (half the channels per axis)."""
    if dim % 4:
        raise MigmError(f"feature width {dim} must be divisible by 4 for the 2D position code")
    quarter = dim // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    coords = torch.arange(grid, dtype=torch.float32)
    rows, cols = coords.repeat_interleave(grid), coords.repeat(grid)
    parts = []
    for axis in (rows, cols):
        angles = axis[:, None] * freqs[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1)


class UVit2DFeatures:
    """Features, logits-from-features and token embeddings of one ``UVit2DModel``, by hooks only."""

    def __init__(self, transformer: UVit2DModel):
        if not isinstance(transformer, UVit2DModel):
            raise MigmError(f"the aMUSEd adapter and enable_shortcut support diffusers UVit2DModel (aMUSEd) transformers, "
                            f"not {type(transformer).__name__}; for Lumina-DiMOO use migm_shortcut.dimoo.model "
                            "with the package's sampler")
        self.transformer = transformer
        cfg = transformer.config
        self.width = cfg.in_channels
        self.codebook_size = cfg.codebook_size
        self.mask_token_id = cfg.vocab_size - 1
        self.grid_size = cfg.sample_size

    def uvit_ids(self, ids: torch.Tensor, code_offset: int) -> torch.Tensor:
        """Package ids -> the UVit's own ids: image codes (``code_offset ..``) become codes 0..K-1,
        anything else (the mask, prompt positions) the UVit's mask token."""
        is_code = (ids >= code_offset) & (ids < code_offset + self.codebook_size)
        return torch.where(is_code, ids - code_offset, torch.full_like(ids, self.mask_token_id))

    @contextmanager
    def capture(self):
        """Within the block, every forward of the transformer leaves its features in ``box[0]``."""
        box: list[torch.Tensor] = []
        handle = self.transformer.mlm_layer.layer_norm.register_forward_hook(lambda m, i, out: box.append(out))
        try:
            yield box
        finally:
            handle.remove()

    def image_features(self, forward, input_ids: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``forward`` (the transformer's forward, or the original one under a hook) and return
        (logits, features (B, H*W, C))."""
        with self.capture() as box:
            logits = forward(input_ids, *args, **kwargs)
        if not box:
            raise MigmError("the UVit2DModel forward did not pass through mlm_layer.layer_norm; unsupported model variant")
        return logits, box[-1].flatten(1, 2)

    def head_rows(self, states: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor:
        """The shortcut head's rows: the text states (when as wide as the features) before the image features."""
        if states is not None and states.shape[-1] == image.shape[-1]:
            return torch.cat([states.to(image.dtype), image], dim=1)
        return image

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The model's own output convolution as a linear map: (..., C) -> (..., codebook_size)."""
        conv = self.transformer.mlm_layer.conv2
        return F.linear(features.to(conv.weight.dtype), conv.weight[:, :, 0, 0], conv.bias)

    @cached_property
    def position_code(self) -> torch.Tensor:
        return sincos_2d(self.grid_size, self.width)

    def embed_image_tokens(self, uvit_ids: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """Frozen token embedding of UVit ids (codes or its mask id) at grid indices (row-major)."""
        embed = self.transformer.embed
        x = embed.layer_norm(embed.embeddings(uvit_ids))
        return x + self.position_code.to(x.device, x.dtype)[image_index]

    def embed_tokens(self, uvit_ids: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """What ``shortcut_step`` embeds new tokens with, in the hook: the UVit's own ids at grid indices."""
        return self.embed_image_tokens(uvit_ids, image_index)

    @cached_property  # taken once, from the weights as loaded (before a cast), like every adapter's
    def fingerprint(self) -> str:
        c = self.transformer.config
        arch = (f"amused-uvit2d:c{c.in_channels}:h{c.hidden_size}:l{c.num_hidden_layers}:b{c.block_out_channels}"
                f":k{c.codebook_size}:s{c.sample_size}")
        mlm = self.transformer.mlm_layer
        return f"{arch}:{tensor_digest(self.transformer.embed.embeddings.weight, mlm.layer_norm.weight, mlm.conv2.weight)}"


@dataclass
class AmusedConfig:
    """A small UVit2DModel (defaults sized for 14x14 tokens of 256 codes), plus its prompt encoder and layout."""

    words: list[str] = field(default_factory=list)   # the prompt vocabulary (train-base gives the data's)
    codebook_size: int = 256
    grid_size: int = 14
    prompt_len: int = 12
    width: int = 128              # token embedding = feature width = text width (UVit in_channels)
    hidden_size: int = 192        # transformer layers
    block_out_channels: int = 128
    num_res_blocks: int = 1
    block_num_heads: int = 2
    num_hidden_layers: int = 4
    num_attention_heads: int = 3
    intermediate_size: int = 512
    micro_cond_encode_dim: int = 16
    image_size: int = 28          # micro-conditioning: (width, height, crop x, crop y, aesthetic score)
    aesthetic_score: float = 6.0

    def uvit_kwargs(self) -> dict:
        return dict(
            hidden_size=self.hidden_size, use_bias=False, cond_embed_dim=self.width,
            micro_cond_encode_dim=self.micro_cond_encode_dim, micro_cond_embed_dim=5 * self.micro_cond_encode_dim,
            encoder_hidden_size=self.width, vocab_size=self.codebook_size + 1, codebook_size=self.codebook_size,
            in_channels=self.width, block_out_channels=self.block_out_channels, num_res_blocks=self.num_res_blocks,
            block_num_heads=self.block_num_heads, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
            sample_size=self.grid_size,
        )


class PromptEncoder(nn.Module):
    """Prompt ids -> (per-token states, pooled embedding): the text side a UVit2D conditions on.

    Per-token: word embedding + learned position, normalised (no mixing across tokens, so a
    token's state depends on the token and its slot only). Pooled: the mean over non-padding
    tokens. It stands in for aMUSEd's CLIP encoder at the embedded testbed's scale.
    """

    def __init__(self, vocab: int, prompt_len: int, width: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = nn.Embedding(prompt_len, width)
        self.norm = nn.LayerNorm(width)

    def embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.norm(self.token_embedding(ids) + self.position_embedding(positions))

    def forward(self, prompt_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.embed(prompt_ids, torch.arange(prompt_ids.shape[1], device=prompt_ids.device))
        keep = (prompt_ids != PAD).float()[..., None]
        pooled = (states * keep).sum(1) / keep.sum(1).clamp(min=1)
        return states, pooled


class AmusedBackbone(ModelInfo, PretrainedModule):
    """A diffusers ``UVit2DModel`` + prompt encoder, exposing the package's model interface."""

    config_class = AmusedConfig
    model_type = "amused-uvit2d"

    def __init__(self, config: AmusedConfig = AmusedConfig()):
        super().__init__(config)
        self.layout = SequenceLayout(config, image_delimiters=False, prompt_in_sequence=False)
        self.prompt_encoder = PromptEncoder(self.layout.code_offset, config.prompt_len, config.width)
        self.transformer = UVit2DModel(**config.uvit_kwargs())
        self.uvit = UVit2DFeatures(self.transformer)
        c = config
        self.register_buffer("micro_conds", torch.tensor([c.image_size, c.image_size, 0.0, 0.0, c.aesthetic_score]),
                             persistent=False)

    @property
    def width(self) -> int:
        return self.config.width

    @property
    def fingerprint(self) -> str:
        return self.uvit.fingerprint

    def split(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt ids (B, P), UVit image ids (B, g, g)) from package sequences."""
        check_sequence_shape(input_ids, self.layout.seq_len)
        layout, g = self.layout, self.config.grid_size
        image = input_ids[:, layout.image_positions.to(input_ids.device)]
        is_code = image >= layout.code_offset
        if not bool((is_code | (image == MASK)).all()):
            raise MigmError("image positions must hold image codes or MASK")
        return input_ids[:, : layout.prompt_len], self.uvit.uvit_ids(image, layout.code_offset).view(-1, g, g)

    def conditioning(self, prompt_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        states, pooled = self.prompt_encoder(prompt_ids)
        micro = self.micro_conds.to(states.dtype).expand(prompt_ids.shape[0], -1)
        return {"encoder_hidden_states": states, "pooled_text_emb": pooled, "micro_conds": micro}

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, C): prompt rows are the text states, image rows the UVit's features."""
        prompt_ids, uvit_ids = self.split(input_ids)
        cond = self.conditioning(prompt_ids)
        _, image = self.uvit.image_features(self.transformer, uvit_ids, **cond)
        return self.uvit.head_rows(cond["encoder_hidden_states"], image)  # width == text width by construction

    def logits_from_features(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.uvit.logits_from_features(features)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(input_ids))

    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Embedding of (id, sequence position) pairs: image codes and MASK through the UVit's
        frozen embedding + 2D position code, prompt tokens through the prompt encoder."""
        layout = self.layout
        is_image = positions >= layout.prompt_len
        image = self.uvit.embed_image_tokens(self.uvit.uvit_ids(ids, layout.code_offset),
                                            (positions - layout.prompt_len).clamp(min=0))
        text = self.prompt_encoder.embed(ids.clamp(max=layout.code_offset - 1), positions.clamp(max=layout.prompt_len - 1))
        return torch.where(is_image[..., None], image, text.to(image.dtype))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids, torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids))


# -- a real AmusedPipeline folder ----------------------------------------------------------------
class CLIPPromptLayout:
    """``[77 CLIP prompt ids][H x W image codes]`` for an ``AmusedPipeline``: prompts tokenized exactly
    as the pipeline does (padded to the tokenizer's ``model_max_length``, truncated), the empty
    prompt as the unconditional branch (the pipeline's default negative prompt). Image codes sit
    after the text vocabulary (``code_offset = len(tokenizer)``), the mask after the codes."""

    prompt_in_sequence = False
    image_delimiters = False

    def __init__(self, tokenizer, grid: int, codebook_size: int):
        self.tokenizer = tokenizer
        self.prompt_len = int(tokenizer.model_max_length)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.code_offset, self.codebook_size = len(tokenizer), codebook_size
        self.vocab_size = self.code_offset + codebook_size
        self.mask_id = self.vocab_size
        self.grid_shape = (grid, grid)
        self.num_image_tokens = grid * grid
        self.seq_len = self.prompt_len + grid * grid
        self.image_positions = self.prompt_len + torch.arange(grid * grid)

    def encode_prompt(self, prompt: str | None) -> torch.Tensor:
        if prompt is not None and not isinstance(prompt, str):
            raise MigmError(f"this model takes text prompts, got {prompt!r}")
        return self.tokenizer("" if prompt is None else prompt, return_tensors="pt", padding="max_length",
                              truncation=True, max_length=self.prompt_len).input_ids[0]

    def template(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        seq = torch.full((prompt_ids.shape[0], self.seq_len), self.mask_id, dtype=torch.long, device=prompt_ids.device)
        seq[:, : self.prompt_len] = prompt_ids
        return seq

    def with_codes(self, seq: torch.Tensor, codes: torch.Tensor, committed: torch.Tensor) -> torch.Tensor:
        return write_image_codes(self, seq, codes, committed)


class AmusedPipelineBackbone(ModelInfo, nn.Module):
    """An unmodified ``AmusedPipeline``'s transformer and CLIP text encoder = the model interface.

    Text states are computed as the pipeline computes them (``hidden_states[-2]`` and
    ``text_embeds`` of ``CLIPTextModelWithProjection``), once per distinct prompt (cached), and
    fed with the pipeline's micro-conditioning to the UVit; features are ``mlm_layer.layer_norm``'s
    output (``UVit2DFeatures``), with the text states as the prompt rows, exactly the rows the
    pipeline hook builds, so heads trained here drive ``enable_shortcut`` in the pipeline too.
    """

    def __init__(self, transformer: UVit2DModel, text_encoder, tokenizer, image_size: int, aesthetic_score: float = 6.0):
        super().__init__()
        self.transformer, self.text_encoder = transformer, text_encoder
        self.uvit = UVit2DFeatures(transformer)
        self.layout = CLIPPromptLayout(tokenizer, self.uvit.grid_size, self.uvit.codebook_size)
        self.width = self.uvit.width
        self.micro = [float(image_size), float(image_size), 0.0, 0.0, float(aesthetic_score)]
        self._text_cache: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}
        self._text_version = -1

    @property
    def fingerprint(self) -> str:
        return self.uvit.fingerprint

    def text_states(self, prompt_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden_states[-2], text_embeds) per row; each distinct prompt goes through CLIP once."""
        if torch.is_grad_enabled():  # training the text encoder: its states must carry gradients, no cache
            out = self.text_encoder(prompt_ids, return_dict=True, output_hidden_states=True)
            return out.hidden_states[-2], out.text_embeds
        version = sum(p._version for p in self.text_encoder.parameters())  # in-place updates (EMA, optimiser) bump it
        if version != self._text_version:
            self._text_cache.clear()
            self._text_version = version
        rows = [r.tobytes() for r in prompt_ids.cpu().numpy()]
        todo = sorted({r for r in rows if r not in self._text_cache})
        if todo:
            if len(self._text_cache) > 4096:  # bounded: a long online training run sees many prompts
                self._text_cache.clear()
            ids = torch.stack([torch.frombuffer(bytearray(r), dtype=torch.long) for r in todo]).to(prompt_ids.device)
            out = self.text_encoder(ids, return_dict=True, output_hidden_states=True)
            for r, hidden, pooled in zip(todo, out.hidden_states[-2], out.text_embeds):
                self._text_cache[r] = (hidden, pooled)
        hidden, pooled = zip(*(self._text_cache[r] for r in rows))
        return torch.stack(hidden), torch.stack(pooled)

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        check_sequence_shape(input_ids, self.layout.seq_len)
        lay, g = self.layout, self.uvit.grid_size
        uvit_ids = self.uvit.uvit_ids(input_ids[:, lay.prompt_len:], lay.code_offset).view(-1, g, g)
        hidden, pooled = self.text_states(input_ids[:, : lay.prompt_len])
        micro = torch.tensor(self.micro, device=hidden.device, dtype=hidden.dtype).expand(len(input_ids), -1)
        _, features = self.uvit.image_features(self.transformer, uvit_ids, micro_conds=micro, pooled_text_emb=pooled,
                                               encoder_hidden_states=hidden)
        if hidden.shape[-1] != features.shape[-1]:  # text states of another width cannot be rows: zeros stand in
            hidden = hidden.new_zeros(hidden.shape[:2] + features.shape[-1:])
        return self.uvit.head_rows(hidden, features)

    def logits_from_features(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.uvit.logits_from_features(features)

    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Image ids through the UVit's frozen embedding + 2D position code (as the hook embeds them);
        prompt positions embed to zero (the prompt never changes while an image is sampled)."""
        lay = self.layout
        is_image = positions >= lay.prompt_len
        image = self.uvit.embed_image_tokens(self.uvit.uvit_ids(ids, lay.code_offset), (positions - lay.prompt_len).clamp(min=0))
        return torch.where(is_image[..., None], image, torch.zeros_like(image))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids, torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids))


class AmusedPipelineModel(LoadedModel):
    """A diffusers ``AmusedPipeline`` folder: its UVit and CLIP behind the interface, its VQ decoder.

    Defaults follow the pipeline's: 12 steps, its CFG ``uncond + 10 (cond - uncond)``, which is
    ``(1 + s) cond - s uncond`` with s = 9 here. The pipeline's scheduler anneals its own sampling
    temperature (2 -> 0); this package's sampler uses its DiMOO rule at temperature 1 instead, so
    samples match the pipeline's in form, not token for token (``enable_shortcut`` runs inside the
    pipeline's own loop when that is what you need).
    """

    kind = "amused-pipeline"
    defaults = SamplingDefaults(num_steps=12, guidance_scale=9.0, temperature=1.0)

    def __init__(self, pipe, path=None):
        # The pipeline object itself is the model's ``pipe`` (pipeline rows and the hook run inside it).
        self.pipe, self.path = pipe, path
        # A head trained for this pipeline and saved next to its components (train-head --out FOLDER/shortcut_head)
        # is its default head; AmusedPipeline.from_pretrained ignores the extra folder.
        self.head_path = own_head(path)
        size = pipe.transformer.config.sample_size * pipe.vae_scale_factor
        self.backbone = AmusedPipelineBackbone(pipe.transformer, pipe.text_encoder, pipe.tokenizer, image_size=size)

    @classmethod
    def from_pretrained(cls, folder, device="cpu", dtype: torch.dtype | None = None) -> "AmusedPipelineModel":
        from diffusers import AmusedPipeline
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()  # stderr stays for the one line a user error gets
        transformers_logging.disable_progress_bar()
        try:
            pipe = AmusedPipeline.from_pretrained(str(folder), torch_dtype=torch.float32, low_cpu_mem_usage=False)
        except (OSError, ValueError, ImportError) as exc:
            raise MigmError(f"cannot load the AmusedPipeline in {folder}: {str(exc).splitlines()[0]}") from None
        finally:
            diffusers_logging.enable_progress_bar()
            transformers_logging.enable_progress_bar()
        pipe.set_progress_bar_config(disable=True)
        loaded = cls(pipe, folder)
        # The fingerprint names the weights as saved (loaded in fp32, which holds fp16 and bf16 files
        # exactly), so a head trained on one dtype loads on another: take it before the cast.
        loaded.backbone.fingerprint
        pipe.to(device, dtype or torch.float32, silence_dtype_warnings=True)
        return loaded

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, H, W) codes -> images in [-1, 1] through the pipeline's VQModel (which outputs [0, 1])."""
        return vq_decode(self.pipe.vqvae, codes, self.path).clamp(0, 1) * 2 - 1
