"""Build and save a real diffusers ``AmusedPipeline`` from parts trained here.

``train-base --architecture amused-pipeline`` trains a ``UVit2DModel`` together with a small
``CLIPTextModelWithProjection`` whose ``CLIPTokenizer`` is a byte-pair encoding learned (with the
``tokenizers`` library, CLIP's ``</w>`` end-of-word convention) on the training prompts. The result
is saved as a pipeline folder that ``AmusedPipeline.from_pretrained`` loads whole, so everything a
user does with a published aMUSEd checkpoint (``--model FOLDER``, the hook, cache-dit) works on it.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from migm_shortcut.amused.model import AmusedConfig, AmusedPipelineBackbone
from migm_shortcut.io import atomic_dir

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")  # CLIP's BOS and EOS (EOS also pads, as in aMUSEd's)


def train_clip_tokenizer(corpus: list[str], folder: Path, vocab_size: int = 256, max_length: int = 16) -> CLIPTokenizer:
    """A CLIP-format BPE tokenizer learned on ``corpus``; every lower-case letter, digit and '-' stays
    in the alphabet, so unseen words still tokenize (letter by letter) instead of becoming unknown."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()  # letters/digits runs and punctuation runs, like CLIP's regex
    alphabet = list(string.ascii_lowercase + string.digits + "-")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=alphabet, end_of_word_suffix="</w>")
    bpe.train_from_iterator([p.lower() for p in corpus], trainer)
    folder.mkdir(parents=True, exist_ok=True)
    bpe.model.save(str(folder))  # vocab.json + merges.txt, the files CLIPTokenizer reads
    vocab = json.loads((folder / "vocab.json").read_text())
    for ch in alphabet:  # a letter as a whole word ("a") needs its word-final form too
        vocab.setdefault(ch + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length,
                         pad_token=SPECIAL_TOKENS[1], bos_token=SPECIAL_TOKENS[0], eos_token=SPECIAL_TOKENS[1],
                         unk_token=SPECIAL_TOKENS[1])


def new_text_encoder(tokenizer: CLIPTokenizer, width: int, layers: int = 2, heads: int = 2) -> CLIPTextModelWithProjection:
    """A small CLIP text tower; ``hidden_states[-2]`` (what aMUSEd cross-attends to) and the projected
    ``text_embeds`` (its pooled conditioning) are both ``width`` wide, the UVit's text width."""
    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=tokenizer.model_max_length, projection_dim=width,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def new_pipeline_backbone(corpus: list[str], tokenizer_folder: Path, codebook_size: int, grid_size: int,
                          image_size: int) -> AmusedPipelineBackbone:
    cfg = AmusedConfig(codebook_size=codebook_size, grid_size=grid_size, image_size=image_size)
    if (tokenizer_folder / "vocab.json").is_file():  # a resumed run keeps the tokenizer it started with
        tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_folder))
    else:
        tokenizer = train_clip_tokenizer(corpus, tokenizer_folder)
        tokenizer.save_pretrained(str(tokenizer_folder))
    transformer = UVit2DModel(**cfg.uvit_kwargs())
    return AmusedPipelineBackbone(transformer, new_text_encoder(tokenizer, cfg.width), tokenizer, image_size=image_size,
                                  aesthetic_score=cfg.aesthetic_score)


def pipeline_vqvae(vq: VQModel) -> VQModel:
    """The package's VQ tokenizer in the form an ``AmusedPipeline`` decodes with.

    The pipeline looks codes up in the codebook (``lookup_from_codebook``) as vectors of
    ``latent_channels`` and expects images in [0, 1]. So the codebook is moved through the
    post-quantisation 1x1 convolution (which becomes the identity), and the package's [-1, 1]
    output range is folded into the decoder's last convolution: decoding is unchanged, exactly.
    The encoder's 1x1 quantisation convolution absorbs the same map, so encoding (which still
    takes [-1, 1] images) searches the codebook in the wider space and finds the original codes
    for 92% of the embedded testbed's test tokens: text-to-image is exact, img2img is not validated.
    """
    config = dict(vq.config)
    width, old_dim = config["latent_channels"], config.get("vq_embed_dim") or config["latent_channels"]
    config.update(lookup_from_codebook=True, vq_embed_dim=width)
    out = VQModel.from_config(config)
    state = {k: v.float() for k, v in vq.state_dict().items()}
    post_w, post_b = state["post_quant_conv.weight"][:, :, 0, 0], state["post_quant_conv.bias"]  # (width, old_dim)
    quant_w, quant_b = state["quant_conv.weight"][:, :, 0, 0], state["quant_conv.bias"]
    assert post_w.shape == (width, old_dim)
    state["quantize.embedding.weight"] = state["quantize.embedding.weight"] @ post_w.T + post_b
    state["quant_conv.weight"] = (post_w @ quant_w)[:, :, None, None]
    state["quant_conv.bias"] = post_w @ quant_b + post_b
    state["post_quant_conv.weight"] = torch.eye(width)[:, :, None, None]
    state["post_quant_conv.bias"] = torch.zeros(width)
    state["decoder.conv_out.weight"] = state["decoder.conv_out.weight"] * 0.5
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"] * 0.5 + 0.5
    out.load_state_dict(state)
    return out


def save_pipeline(backbone: AmusedPipelineBackbone, vq: VQModel, folder: Path, dtype=torch.float16) -> Path:
    """Write ``folder`` as an ``AmusedPipeline`` (atomically; UVit and VQ weights in ``dtype``)."""
    pipe = AmusedPipeline(vqvae=pipeline_vqvae(vq), tokenizer=backbone.layout.tokenizer, text_encoder=backbone.text_encoder,
                          transformer=backbone.transformer,
                          scheduler=AmusedScheduler(mask_token_id=backbone.uvit.mask_token_id))
    with atomic_dir(folder) as tmp:
        # The text encoder stays fp32 (it is tiny): transformers loads a checkpoint in its saved dtype by
        # default while diffusers loads fp32, and a plain AmusedPipeline.from_pretrained must not mix them.
        pipe.to(dtype)
        pipe.text_encoder.to(torch.float32)
        pipe.save_pretrained(str(tmp))
        write_slow_tokenizer_files(tmp / "tokenizer")
    pipe.to(torch.float32)
    return folder


def write_slow_tokenizer_files(folder: Path) -> None:
    """Add vocab.json and merges.txt, as the published aMUSEd tokenizer folders have them, beside the
    tokenizer.json that recent transformers writes alone: transformers before 5 builds a
    CLIPTokenizer from those two files only."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return
    model = json.loads((folder / "tokenizer.json").read_text())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges))
