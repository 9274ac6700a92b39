"""Decoding image codes with a diffusers ``VQModel``, for every family whose tokenizer is one."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import MigmError


@torch.no_grad()
def vq_decode(vq, codes: torch.Tensor, what) -> torch.Tensor:
    """Decoder output of a diffusers ``VQModel`` for (N, H, W) code grids (its own value range)."""
    if vq is None:
        raise MigmError(f"{what or 'this model'} has no vqvae/ (a diffusers VQModel), so its codes cannot be decoded to images")
    n, h, w = codes.shape
    codes = codes.to(vq.device)
    if vq.config.lookup_from_codebook:  # DiMOO's VQ: decode looks the codes up itself
        return vq.decode(codes, force_not_quantize=True, shape=(n, h, w, vq.config.latent_channels)).sample.float().cpu()
    emb = vq.quantize.embedding.weight.shape[1]
    quant = vq.quantize.get_codebook_entry(codes.reshape(-1), (n, h, w, emb))
    return vq.decode(quant, force_not_quantize=True).sample.float().cpu()


def load_vqvae(folder: Path, device):
    """A diffusers ``VQModel`` saved in ``folder/vqvae``, or None."""
    if not (Path(folder) / "vqvae" / "config.json").is_file():
        return None
    from diffusers import VQModel

    return VQModel.from_pretrained(str(folder), subfolder="vqvae", low_cpu_mem_usage=False).to(device).eval()
