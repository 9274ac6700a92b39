"""A tiny random Lumina-DiMOO in its real on-disk format, written by the tests (nothing is downloaded).

The folder holds what a DiMOO checkpoint holds: ``config.json`` (``model_type`` "llada", an
``auto_map`` to the model code shipped beside it), ``model.safetensors`` (keys
``model.transformer.*``), a tokenizer with DiMOO's special tokens at DiMOO's ids, and
``vqvae/`` (a diffusers ``VQModel`` over 8192 codes, looked up from its codebook). The model
code in the folder is the test stand-in of the published classes (``tests/llada_standin.py``,
copied in as ``modeling_xllmx_dimoo.py``, with ``configuration_llada.py`` importing its config), so
loading goes through transformers' remote-code path exactly as a real checkpoint does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from migm_shortcut.dimoo.model import DIMOO_SPECIAL_IDS, DIMOO_VOCAB_SIZE
from llada_standin import LLaDAConfig, LLaDAForMultiModalGeneration

WORDS = ["generate", "an", "image", "according", "to", "the", "text", "prompt", ".", "a", "photo", "of", "red",
         "blue", "cube", "bag", "sky", "over", "green", "hills", "small", "dog"]
# Ids of the tokenizer's own special tokens (the text part of the vocabulary, below the image codes).
TOKEN_IDS = {"<|startoftext|>": 126080, "<|endoftext|>": 126081, "<system>": 126340, "</system>": 126341,
             "<user>": 126342, "</user>": 126343, "<|mdm_mask|>": DIMOO_SPECIAL_IDS["mask"],
             "<uncondition>": DIMOO_SPECIAL_IDS["uncondition"]}
TINY = dict(d_model=16, n_heads=2, n_layers=2, mlp_hidden_size=32, vocab_size=DIMOO_VOCAB_SIZE)

CONFIG_CODE = "from .modeling_xllmx_dimoo import LLaDAConfig  # noqa: F401\n"
# The model code a checkpoint ships: the stand-in's own source, as a real folder carries the published file.
MODEL_CODE = (Path(__file__).parent / "llada_standin.py").read_text()


def tiny_tokenizer(uncondition_id: int = DIMOO_SPECIAL_IDS["uncondition"]) -> PreTrainedTokenizerFast:
    ids = {**TOKEN_IDS, "<uncondition>": uncondition_id}
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}, **ids}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.add_special_tokens(list(ids))
    bos = "<|startoftext|>"
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, ids[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="<|endoftext|>",
                                   bos_token=bos, mask_token="<|mdm_mask|>")


def tiny_llada(seed: int = 0, **overrides) -> LLaDAForMultiModalGeneration:
    torch.manual_seed(seed)
    return LLaDAForMultiModalGeneration(LLaDAConfig(**{**TINY, **overrides})).eval()


def tiny_vqvae(seed: int = 0):
    from diffusers import VQModel

    torch.manual_seed(seed)
    return VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                   up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1, latent_channels=4,
                   vq_embed_dim=4, num_vq_embeddings=8192, norm_num_groups=4, lookup_from_codebook=True,
                   mid_block_add_attention=False).eval()


# What the hub folder (Alpha-VLLM/Lumina-DiMOO) carries beside the LLaDA config: a diffusers custom pipeline index.
HUB_MODEL_INDEX = {"_class_name": "LuminaDiMOOPipeline", "_diffusers_version": "0.34.0",
                   "vqvae": ["diffusers", "VQModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"]}


def write_model_code(folder: Path) -> Path:
    """A model-code package laid out like Lumina-DiMOO's ``model/`` (``__init__.py`` exporting the class,
    ``modeling_xllmx_dimoo.py``, ``configuration_llada.py``), for ``--model-code DIR``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("from .modeling_xllmx_dimoo import LLaDAForMultiModalGeneration  # noqa: F401\n")
    (folder / "modeling_xllmx_dimoo.py").write_text(MODEL_CODE)
    (folder / "configuration_llada.py").write_text(CONFIG_CODE)
    return folder


def write_tiny_dimoo(folder: Path, seed: int = 0, with_code: bool = True, uncondition_id: int | None = None,
                     hub: bool = False, **overrides) -> Path:
    """``hub``: the downloaded layout, ``model_index.json`` beside the weights and no model code."""
    folder = Path(folder)
    model = tiny_llada(seed, **overrides)
    model.save_pretrained(folder)
    tiny_tokenizer(uncondition_id or DIMOO_SPECIAL_IDS["uncondition"]).save_pretrained(folder)
    # As the released folder names it (transformers 5 writes its own backend name, which 4.x cannot read).
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    tiny_vqvae(seed).save_pretrained(folder / "vqvae")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["LLaDAForMultiModalGeneration"]
    if with_code:
        (folder / "configuration_llada.py").write_text(CONFIG_CODE)
        (folder / "modeling_xllmx_dimoo.py").write_text(MODEL_CODE)
        config["auto_map"] = {"AutoConfig": "configuration_llada.LLaDAConfig",
                              "AutoModel": "modeling_xllmx_dimoo.LLaDAForMultiModalGeneration"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if hub:
        (folder / "model_index.json").write_text(json.dumps(HUB_MODEL_INDEX, indent=2))
    return folder
