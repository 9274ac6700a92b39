"""Image data: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, or the user's own.

Three sources are accepted wherever a command takes ``--data``:

* ``fashion-mnist`` (default): the IDX gzip files under ``/usr/share/datasets/fashion-mnist``
  (override the folder with the ``MIGM_FASHION_MNIST`` environment variable);
* a folder of images: class sub-folders (named by class index or class name) give labels,
  images directly in the folder are unlabelled (label -1);
* an ``.npz`` file with an ``images`` array (N x H x W, uint8 or float in [0, 1]) and an
  optional ``labels`` array.

Images are returned as uint8 tensors (N x 28 x 28, grayscale); ``to_model_range`` maps them
to [-1, 1] floats with a channel axis.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from migm_shortcut.errors import MigmError
from migm_shortcut.images import to_uint8  # noqa: F401  (re-exported: the dataset's images as PNG pixels)
from migm_shortcut.embedded.prompts import CLASS_NAMES

IMAGE_SIZE = 28
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_DATASET = "fashion-mnist"  # the name load_dataset reads as Fashion-MNIST
_SPLIT_FILES = {"train": "train", "test": "t10k"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@dataclass
class ImageDataset:
    images: torch.Tensor  # uint8, N x 28 x 28
    labels: torch.Tensor  # int64, N (-1 where unknown)
    source: str

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor | slice) -> "ImageDataset":
        return ImageDataset(self.images[index], self.labels[index], self.source)

    def balanced(self, per_class: int) -> "ImageDataset":
        """The first ``per_class`` images of every class, in class order (a fixed, reproducible pick)."""
        picks = []
        for c in range(len(CLASS_NAMES)):
            idx = torch.nonzero(self.labels == c).flatten()[:per_class]
            if len(idx) < per_class:
                raise MigmError(f"{self.source} has only {len(idx)} images of class {c}, {per_class} needed")
            picks.append(idx)
        return self.subset(torch.cat(picks))


def balanced_subset(data: ImageDataset, size: int) -> ImageDataset:
    """``size`` images, as many of each class as labels allow (the first ``size`` when unlabelled)."""
    if (data.labels < 0).any():
        return data.subset(slice(0, size))
    return data.balanced(size // 10)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W -> float N x 1 x H x W in [-1, 1]."""
    return images.float().div(127.5).sub(1.0).unsqueeze(1)


def fashion_mnist_dir() -> Path:
    return Path(os.environ.get("MIGM_FASHION_MNIST", DEFAULT_FASHION_MNIST_DIR))


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise MigmError(f"cannot read {path} ({exc}); reinstall it with `apt-get install --reinstall dataset-fashion-mnist`") from None
    if len(data) < 4:
        raise MigmError(f"{path} is not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise MigmError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise MigmError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {body.size}")
    return body.reshape(shape)


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> ImageDataset:
    if split not in _SPLIT_FILES:
        raise MigmError(f"unknown split {split!r}; use 'train' or 'test'")
    root = Path(root) if root is not None else fashion_mnist_dir()
    prefix = _SPLIT_FILES[split]
    img_path = root / f"{prefix}-images-idx3-ubyte.gz"
    lbl_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    if not img_path.is_file() or not lbl_path.is_file():
        raise MigmError(
            f"Fashion-MNIST not found in {root}: install it with `apt-get install dataset-fashion-mnist` "
            "or pass --data PATH (a folder of images or an .npz)"
        )
    images = _read_idx(img_path)
    labels = _read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise MigmError(f"Fashion-MNIST files in {root} disagree: {images.shape} images vs {labels.shape} labels")
    return ImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)), f"fashion-mnist:{split}")


def _load_npz(path: Path) -> ImageDataset:
    try:
        arrays = np.load(path)
        images = arrays["images"]
        labels = arrays["labels"] if "labels" in arrays.files else np.full(len(images), -1)
    except KeyError:
        raise MigmError(f"{path} has no 'images' array; save it with np.savez(path, images=..., labels=...)") from None
    except (OSError, ValueError) as exc:
        raise MigmError(f"cannot read {path} as .npz ({exc})") from None
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise MigmError(f"{path}: images must be N x H x W grayscale, got shape {images.shape}")
    if images.dtype != np.uint8:
        if images.max() > 1.0 + 1e-6 or images.min() < -1e-6:
            raise MigmError(f"{path}: float images must lie in [0, 1]")
        images = (images * 255).round().astype(np.uint8)
    if len(labels) != len(images):
        raise MigmError(f"{path}: {len(images)} images but {len(labels)} labels")
    tensor = torch.from_numpy(images.copy())
    if tensor.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        tensor = _resize(tensor)
    return ImageDataset(tensor, torch.from_numpy(np.asarray(labels, dtype=np.int64)), f"npz:{path}")


def _resize(images: torch.Tensor) -> torch.Tensor:
    resized = torch.nn.functional.interpolate(images[:, None].float(), size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")
    return resized[:, 0].round().clamp(0, 255).to(torch.uint8)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L")
            if img.size != (IMAGE_SIZE, IMAGE_SIZE):
                img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise MigmError(f"cannot read image {path} ({exc})") from None


def _class_of(folder_name: str) -> int:
    if folder_name.isdigit() and int(folder_name) < len(CLASS_NAMES):
        return int(folder_name)
    key = folder_name.lower().replace("_", " ").replace("-", " ")
    for i, name in enumerate(CLASS_NAMES):
        if key == name.replace("-", " "):
            return i
    raise MigmError(f"sub-folder {folder_name!r} is not a class index 0-9 or one of {', '.join(CLASS_NAMES)}")


def load_image_folder(path: Path) -> ImageDataset:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    labels = [-1] * len(files)
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        sub_files = sorted(p for p in sub.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if sub_files:
            cls = _class_of(sub.name)
            files += sub_files
            labels += [cls] * len(sub_files)
    if not files:
        raise MigmError(f"no images (.png/.jpg) found in {path} or its class sub-folders")
    images = np.stack([_read_image(p) for p in files])
    return ImageDataset(torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64), f"folder:{path}")


def load_dataset(source: str | Path = "fashion-mnist", split: str = "train") -> ImageDataset:
    """Load images from ``fashion-mnist`` (with ``split``), a folder, or an ``.npz`` file."""
    if str(source) == "fashion-mnist":
        return load_fashion_mnist(split)
    path = Path(source)
    if path.is_dir():
        return load_image_folder(path)
    if path.is_file() and path.suffix == ".npz":
        return _load_npz(path)
    if path.exists():
        raise MigmError(f"--data {path}: expected a folder of images or an .npz file")
    raise MigmError(f"--data {path} does not exist; pass a folder of images, an .npz, or 'fashion-mnist'")
