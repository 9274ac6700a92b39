"""The image tokenizer: a small diffusers ``VQModel`` that maps 28x28 images to a 14x14 code grid.

Each code covers 2x2 pixels, so an image is 196 tokens: enough that the number of sampling
steps matters, as it does for real MIGMs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import VQModel

from migm_shortcut.errors import MigmError

VQ_CONFIG = dict(
    in_channels=1,
    out_channels=1,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    latent_channels=32,
    vq_embed_dim=8,
    num_vq_embeddings=256,
    norm_num_groups=32,
    sample_size=28,
    # Attention at 14x14 costs more than it gives on 28x28 grayscale images.
    mid_block_add_attention=False,
)


class VQTokenizer:
    """Thin wrapper that speaks in code grids: ``encode`` images -> codes, ``decode`` codes -> images."""

    def __init__(self, model: VQModel):
        self.model = model.eval()

    @classmethod
    def new(cls, **overrides) -> "VQTokenizer":
        return cls(VQModel(**{**VQ_CONFIG, **overrides}))

    @property
    def codebook_size(self) -> int:
        return self.model.config.num_vq_embeddings

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def grid_size(self, image_size: int = 28) -> int:
        return image_size // 2 ** (len(self.model.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """N x 1 x H x W in [-1, 1] -> N x h x w code indices."""
        latents = self.model.encode(images.to(self.device)).latents
        _, _, (_, _, indices) = self.model.quantize(latents)
        n, _, h, w = latents.shape
        return indices.view(n, h, w).cpu()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """N x h x w code indices -> N x 1 x H x W images in [-1, 1]."""
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise MigmError(f"code ids must lie in 0..{self.codebook_size - 1}, got {int(codes.min())}..{int(codes.max())}")
        n, h, w = codes.shape
        emb_dim = self.model.quantize.embedding.weight.shape[1]
        quant = self.model.quantize.get_codebook_entry(codes.reshape(-1).to(self.device), (n, h, w, emb_dim))
        return self.model.decode(quant, force_not_quantize=True).sample.clamp(-1, 1).cpu()

    def save_pretrained(self, directory: str | Path) -> None:
        # diffusers writes config.json + diffusion_pytorch_model.safetensors; fp16 keeps it small.
        self.model.to(torch.float16).save_pretrained(str(directory))
        self.model.to(torch.float32)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "VQTokenizer":
        directory = Path(directory)
        if not (directory / "config.json").is_file() or not (directory / "diffusion_pytorch_model.safetensors").is_file():
            raise MigmError(f"VQ tokenizer weights not found in {directory} (run `migm-shortcut train-base`)")
        try:
            model = VQModel.from_pretrained(str(directory), torch_dtype=torch.float32, low_cpu_mem_usage=False)
        except Exception as exc:  # diffusers raises several types for damaged files
            raise MigmError(f"cannot load the VQ tokenizer from {directory}: {str(exc).splitlines()[0]}") from None
        return cls(model.to(device))
