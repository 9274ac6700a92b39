"""A random-weight stand-in for Lumina-DiMOO's published model classes (tests and ``bench-cost``).

Lumina-DiMOO ships ``LLaDAForMultiModalGeneration`` (a subclass of ``LLaDAModelLM``) with
``LLaDAConfig`` (``model_type`` "llada"). We cannot ship or copy that code, so this module
re-creates, in our own words, exactly what the adapter relies on, *including the awkward
parts*:

* the module tree and names: ``model.model.transformer`` is a ``ModuleDict`` of ``wte``,
  ``emb_drop``, ``blocks`` (llama-type: ``attn_norm``, ``q_proj``/``k_proj``/``v_proj``,
  ``attn_out``, ``ff_norm``, ``ff_proj``, ``up_proj``, ``ff_out``), ``ln_f`` and, without weight
  tying, ``ff_out``; RMS norms, RoPE inside attention, SiLU gate with a separate ``up_proj``;
* the forward signatures: ``LLaDAModel.forward(input_ids, input_embeddings=None,
  attention_mask=None, attention_bias=None, past_key_values=None, last_logits_only=False,
  output_hidden_states=None, use_cache=False, to_compute_mask=None, cat='', **kwargs)``
  returning ``(output, last_feat)``; ``LLaDAModelLM.forward`` passes its arguments on;
  ``LLaDAForMultiModalGeneration.forward(input_ids=None, labels=None, infer=False,
  use_cache=False, to_compute_mask=None, cat='', **kwargs)`` turns ``input_ids`` into lists,
  right-pads them with 0, **builds its own attention mask** and passes ``**kwargs`` on, so a
  caller's ``attention_mask=`` arrives twice; it returns the output only when ``infer=True``;
* the published attention is bidirectional and **ignores the attention mask** (masked diffusion
  models run with ``attn_mask=None``): each block's ``_scaled_dot_product_attention(q, k, v,
  attn_mask=None, dropout_p=0.0, is_causal=False)`` drops whatever mask it is given, so padding
  inside a sequence changes every feature unless a caller masks it some other way.

It is a transformers ``PreTrainedModel``, so ``save_pretrained`` writes the real on-disk format
(``config.json`` with ``model_type`` "llada", ``model.safetensors`` with keys
``model.transformer.*``), and ``from_pretrained`` reads it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


class LLaDAConfig(PretrainedConfig):
    model_type = "llada"

    def __init__(self, d_model: int = 64, n_heads: int = 4, n_layers: int = 2, mlp_hidden_size: int = 128,
                 vocab_size: int = 134548, embedding_size: int | None = None, weight_tying: bool = False,
                 scale_logits: bool = False, rope_theta: float = 500000.0, rms_norm_eps: float = 1e-5,
                 mask_token_id: int = 126336, block_group_size: int = 1, max_sequence_length: int = 8192, **kwargs):
        self.d_model, self.n_heads, self.n_layers = d_model, n_heads, n_layers
        self.mlp_hidden_size, self.vocab_size, self.embedding_size = mlp_hidden_size, vocab_size, embedding_size
        self.weight_tying, self.scale_logits, self.rope_theta = weight_tying, scale_logits, rope_theta
        self.rms_norm_eps, self.mask_token_id, self.block_group_size = rms_norm_eps, mask_token_id, block_group_size
        self.max_sequence_length = max_sequence_length
        super().__init__(**kwargs)


class RMSLayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding over the head dim of (B, H, L, D), positions 0..L-1."""
    d, length = x.shape[-1], x.shape[-2]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * inv
    angles = torch.cat([angles, angles], -1)
    x1, x2 = x.float().chunk(2, -1)
    return (x.float() * angles.cos() + torch.cat([-x2, x1], -1) * angles.sin()).to(x.dtype)


class LLaDALlamaBlock(nn.Module):
    def _scaled_dot_product_attention(self, q, k, v, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False):
        """As published: bidirectional, and whatever mask is passed is dropped (``attn_mask=None``)."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=dropout_p, is_causal=False)

    def __init__(self, layer_id: int, config: LLaDAConfig):
        super().__init__()
        d = config.d_model
        self.layer_id, self.config = layer_id, config
        self.attn_norm, self.ff_norm = RMSLayerNorm(d, config.rms_norm_eps), RMSLayerNorm(d, config.rms_norm_eps)
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=False)
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=False)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, attention_bias=None, layer_past=None, use_cache: bool = False,
                to_compute_mask=None, cat: str = ""):
        b, length, d = x.shape
        h = self.attn_norm(x)
        split = lambda t: t.view(b, length, self.config.n_heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(h)), split(self.k_proj(h)), split(self.v_proj(h))
        q, k = rotate(q, self.config.rope_theta), rotate(k, self.config.rope_theta)
        att = self._scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
        x = x + self.attn_out(att.transpose(1, 2).reshape(b, length, d))
        h = self.ff_norm(x)
        return x + self.ff_out(self.act(self.ff_proj(h)) * self.up_proj(h)), None


@dataclass
class LLaDAOutput:
    logits: torch.Tensor
    attn_key_values: object = None
    hidden_states: object = None


class LLaDAModel(nn.Module):
    def __init__(self, config: LLaDAConfig, init_params: bool = True):
        super().__init__()
        self.config = config
        vocab = config.embedding_size or config.vocab_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, config.d_model), emb_drop=nn.Dropout(0.0),
            ln_f=RMSLayerNorm(config.d_model, config.rms_norm_eps),
        ))
        self.transformer.update({"blocks": nn.ModuleList(LLaDALlamaBlock(i, config) for i in range(config.n_layers))})
        if not config.weight_tying:
            self.transformer.update({"ff_out": nn.Linear(config.d_model, vocab, bias=False)})

    def forward(self, input_ids: torch.LongTensor, input_embeddings=None, attention_mask=None, attention_bias=None,
                past_key_values=None, last_logits_only: bool = False, output_hidden_states=None, use_cache=False,
                to_compute_mask=None, cat: str = "", **kwargs):
        x = self.transformer.wte(input_ids) if input_embeddings is None else input_embeddings
        x = self.transformer.emb_drop(x)
        if attention_mask is not None and 0.0 in attention_mask:  # built as published, then unused by attention
            attention_bias = (1.0 - attention_mask.float())[:, None, None, :] * torch.finfo(torch.float32).min
        for block in self.transformer.blocks:
            x, _ = block(x, attention_bias=attention_bias, use_cache=use_cache, to_compute_mask=to_compute_mask, cat=cat)
        x = self.transformer.ln_f(x)
        last_feat = x.clone() if kwargs.get("ret_last_feat", False) else None
        t = self.transformer
        logits = F.linear(x, t.wte.weight) if self.config.weight_tying else t.ff_out(x)
        if self.config.scale_logits:
            logits = logits * (1 / math.sqrt(self.config.d_model))
        return LLaDAOutput(logits=logits), last_feat


class LLaDAModelLM(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"
    _no_split_modules = ["LLaDALlamaBlock"]

    # As published: no post_init() (transformers 5 sets tied-weight bookkeeping there) and no _init_weights.
    def __init__(self, config: LLaDAConfig, model: LLaDAModel | None = None, init_params: bool = False):
        super().__init__(config)
        self.model = model or LLaDAModel(config, init_params=init_params)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.transformer.wte

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.transformer.wte = value

    def get_output_embeddings(self):
        return self.model.transformer.wte if self.config.weight_tying else self.model.transformer.ff_out

    def tie_weights(self):  # the published override takes no arguments
        if self.config.weight_tying:
            self.model.transformer.ff_out = self.model.transformer.wte

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, attention_bias=None, past_key_values=None,
                labels=None, output_attentions=None, output_hidden_states=None, return_dict=None, cache_position=None,
                use_cache=False, to_compute_mask=None, cat: str = "", **kwargs):
        outputs, last_feat = self.model.forward(input_ids=input_ids, input_embeddings=inputs_embeds,
                                                attention_mask=attention_mask, attention_bias=attention_bias,
                                                past_key_values=past_key_values, output_hidden_states=output_hidden_states,
                                                use_cache=use_cache, to_compute_mask=to_compute_mask, cat=cat, **kwargs)
        return outputs, last_feat


class LLaDAForMultiModalGeneration(LLaDAModelLM):
    """Right-pads the batch with 0 and builds its own attention mask, as the published class does."""

    def forward(self, input_ids=None, labels=None, infer: bool = False, use_cache: bool = False, to_compute_mask=None,
                cat: str = "", **kwargs):
        rows = input_ids.tolist() if isinstance(input_ids, torch.Tensor) else [list(r) for r in input_ids]
        longest = max(len(r) for r in rows)
        lengths = [len(r) for r in rows]
        ids = torch.tensor([r + [0] * (longest - len(r)) for r in rows], dtype=torch.long, device=self.device)
        attention_mask = torch.zeros(len(rows), longest, dtype=torch.bool, device=self.device)
        for i, n in enumerate(lengths):
            attention_mask[i, :n] = True
        output = LLaDAModelLM.forward(self, input_ids=ids, attention_mask=attention_mask, use_cache=use_cache,
                                      to_compute_mask=to_compute_mask, cat=cat, **kwargs)
        if infer:
            return output
        return None


def llada_8b_config(**overrides) -> LLaDAConfig:
    """Lumina-DiMOO's size (LLaDA-8B: 4096 wide, 32 layers, 12288 MLP, vocabulary with 8192 image codes)."""
    return LLaDAConfig(**{**dict(d_model=4096, n_heads=32, n_layers=32, mlp_hidden_size=12288, vocab_size=134548),
                          **overrides})
