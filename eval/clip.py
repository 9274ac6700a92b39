"""CLIPScore (torchmetrics) with a CLIP model from a local folder: never downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

from migm_shortcut.distributed import cpu_group
from migm_shortcut.errors import MigmError


def check_clip_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise MigmError(f"CLIP folder not found or incomplete: {folder} (a folder written by CLIPModel.save_pretrained, "
                        "with its processor)")
    return folder


class _FeatureTensors(torch.nn.Module):
    """A CLIPModel whose ``get_image_features`` / ``get_text_features`` return tensors. Newer
    transformers return output objects, which torchmetrics' CLIPScore cannot normalise."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip
        self.config = clip.config

    @staticmethod
    def _tensor(out):
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_image_features(self, *args, **kwargs):
        return self._tensor(self.clip.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs):
        return self._tensor(self.clip.get_text_features(*args, **kwargs))


class LocalCLIPScore:
    """``score(images, prompts)``: torchmetrics' CLIPScore (100 x cosine, clipped at 0) of images in
    [-1, 1] against their prompts, with ``CLIPModel`` and ``CLIPProcessor`` read from ``folder``."""

    def __init__(self, folder: str | Path, batch_size: int = 32):
        folder = check_clip_folder(folder)
        from torchmetrics.multimodal import CLIPScore
        from transformers import CLIPModel, CLIPProcessor

        def load():
            try:
                return (_FeatureTensors(CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()),
                        CLIPProcessor.from_pretrained(str(folder), local_files_only=True))
            except (OSError, ValueError) as exc:
                raise MigmError(f"cannot load CLIP from {folder}: {str(exc).splitlines()[0]}") from None

        self.metric = CLIPScore(model_name_or_path=load, process_group=cpu_group())  # summed over torchrun's ranks
        self.batch_size = batch_size
        self.name = str(folder)

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: list[str]) -> float:
        if any(not isinstance(p, str) for p in prompts):
            raise MigmError("CLIPScore needs text prompts; this model is class-conditional (drop --clip)")
        self.metric.reset()
        pixels = images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
        if pixels.shape[1] == 1:
            pixels = pixels.repeat(1, 3, 1, 1)
        for i in range(0, len(pixels), self.batch_size):
            self.metric.update(list(pixels[i : i + self.batch_size]), prompts[i : i + self.batch_size])
        return float(self.metric.compute())
