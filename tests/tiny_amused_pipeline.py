"""A tiny random ``AmusedPipeline`` written with ``save_pretrained`` (nothing downloaded): a UVit2D, a
CLIPTextModelWithProjection and a character-level CLIPTokenizer whose files the test writes."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

CODEBOOK, GRID, WIDTH, PROMPT_TOKENS = 16, 4, 32, 16


def tiny_clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """Every letter alone and word-final: any lower-case word tokenizes, one token per letter."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + "-":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=PROMPT_TOKENS,
                         pad_token="<|endoftext|>")


def write_tiny_amused_pipeline(folder: Path, seed: int = 0) -> Path:
    folder = Path(folder)
    tokenizer = tiny_clip_tokenizer(folder / "_tokenizer_files")
    torch.manual_seed(seed)
    text = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=PROMPT_TOKENS, projection_dim=WIDTH, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    transformer = UVit2DModel(
        hidden_size=WIDTH, use_bias=False, cond_embed_dim=WIDTH, micro_cond_encode_dim=8, micro_cond_embed_dim=40,
        encoder_hidden_size=WIDTH, vocab_size=CODEBOOK + 1, codebook_size=CODEBOOK, in_channels=WIDTH,
        block_out_channels=WIDTH, num_res_blocks=1, block_num_heads=2, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, sample_size=GRID)
    vqvae = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                    up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1, latent_channels=4,
                    vq_embed_dim=4, num_vq_embeddings=CODEBOOK, norm_num_groups=4, lookup_from_codebook=True,
                    mid_block_add_attention=False)
    scheduler = AmusedScheduler(mask_token_id=CODEBOOK)
    pipe = AmusedPipeline(vqvae=vqvae, tokenizer=tokenizer, text_encoder=text, transformer=transformer, scheduler=scheduler)
    pipe.save_pretrained(str(folder))
    return folder


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny random CLIPModel and its processor (the character tokenizer above), saved to ``folder``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    folder = Path(folder)
    tokenizer = tiny_clip_tokenizer(folder / "_tokenizer_files")
    torch.manual_seed(seed)
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=PROMPT_TOKENS, bos_token_id=0, eos_token_id=1,
                          pad_token_id=1)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8)
    CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_reference_images(folder: Path, count: int = 6, size: int = 8) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"real_{i}.png")
    return folder
