import gzip
import struct

import numpy as np
import pytest
import torch

from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO
from migm_shortcut.embedded.classifier import ClassifierConfig, ImageClassifier
from migm_shortcut.embedded.tokenizer import VQTokenizer


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGM_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_backbone() -> MiniDiMOO:
    torch.manual_seed(0)
    return MiniDiMOO(BackboneConfig(codebook_size=16, grid_size=4, prompt_len=12, width=32, depth=2, heads=2)).eval()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A complete (random) weights folder in the shipped layout: vq/, backbone/, classifier/."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    tok = VQTokenizer.new(block_out_channels=(32, 32), latent_channels=32, vq_embed_dim=4, num_vq_embeddings=16)
    tok.save_pretrained(root / "vq")
    MiniDiMOO(BackboneConfig(codebook_size=16, grid_size=14, width=32, depth=1, heads=2)).save_pretrained(root / "backbone")
    ImageClassifier(ClassifierConfig(channels=8, feature_dim=16)).save_pretrained(root / "classifier")
    return root


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch):
    """Tiny IDX files laid out like Debian's dataset-fashion-mnist package."""
    root = tmp_path / "fmnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 20)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    monkeypatch.setenv("MIGM_FASHION_MNIST", str(root))
    return root
