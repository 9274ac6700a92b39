"""A stand-in for THUDM's ``image-reward`` package (``import ImageReward``; the real one needs torchvision,
which has no CPU build here), written into a folder the test puts on ``sys.path``. It mirrors what our
wrapper relies on: ``ImageReward(med_config, device)`` builds BLIP's tokenizer with
``BertTokenizer.from_pretrained("bert-base-uncased")`` (a relative name) and reads ``med_config``; its
state dict has ``mlp.layers.*`` and a ``blip.*`` buffer the released file lacks (``position_ids``);
``score(prompt, PIL image) -> float`` is normalised by the module's ``mean`` and ``std``. The score
itself is a small deterministic function of the pixels and the prompt's tokens."""

from pathlib import Path

PACKAGE = '''
import json

import numpy as np
import torch
from torch import nn
from transformers import BertTokenizer


class _Blip(nn.Module):
    def __init__(self, med_config):
        super().__init__()
        self.config = json.load(open(med_config))
        self.tokenizer = BertTokenizer.from_pretrained("bert-base-uncased")
        self.register_buffer("position_ids", torch.arange(4)[None])


class ImageReward(nn.Module):
    def __init__(self, med_config, device="cpu"):
        super().__init__()
        self.device = device
        self.blip = _Blip(med_config)
        self.mlp = nn.Module()
        self.mlp.layers = nn.Sequential(nn.Linear(4, 1))
        self.mean, self.std = 0.1, 2.0

    def score(self, prompt, image):
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255)
        tokens = self.blip.tokenizer(prompt)["input_ids"]
        x = torch.stack([pixels[..., 0].mean(), pixels[..., 1].mean(), pixels[..., 2].mean(),
                         torch.tensor(len(tokens) / 10.0)])
        return ((self.mlp.layers(x) - self.mean) / self.std).item()
'''


def write_package(root: Path) -> Path:
    (root / "ImageReward").mkdir(parents=True, exist_ok=True)
    (root / "ImageReward" / "__init__.py").write_text(PACKAGE)
    return root


def write_weights_folder(folder: Path, with_tokenizer: bool = True) -> Path:
    """``ImageReward.pt`` (a plain state dict, as released), ``med_config.json`` and, optionally, the
    ``bert-base-uncased`` tokenizer files (a tiny vocabulary written here)."""
    import json

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"mlp.layers.0.weight": torch.randn(1, 4), "mlp.layers.0.bias": torch.randn(1)}, folder / "ImageReward.pt")
    (folder / "med_config.json").write_text(json.dumps({"hidden_size": 8, "encoder_width": 8}))
    if with_tokenizer:
        from transformers import BertTokenizer

        vocab = folder / "vocab.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "an", "ankle",
                                    "boot", "dress", "bag", "shirt"]) + "\n")
        BertTokenizer(str(vocab)).save_pretrained(str(folder / "bert-base-uncased"))
        vocab.unlink()
    return folder
