import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from migm_shortcut.embedded.data import load_dataset, load_fashion_mnist, to_model_range, to_uint8
from migm_shortcut.errors import MigmError


def test_idx_loader_reads_both_splits(fake_fashion_mnist):
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    assert train.images.shape == (30, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.tolist() == [i % 10 for i in range(20)]
    assert len(test.balanced(2)) == 20


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGM_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(MigmError, match="apt-get install dataset-fashion-mnist.*--data PATH"):
        load_fashion_mnist("train")


def test_truncated_idx_is_reported(fake_fashion_mnist):
    path = fake_fashion_mnist / "t10k-images-idx3-ubyte.gz"
    data = gzip.open(path).read()
    with gzip.open(path, "wb") as f:
        f.write(data[:-100])
    with pytest.raises(MigmError, match="truncated"):
        load_fashion_mnist("test")


def test_npz_with_float_images_and_labels(tmp_path):
    images = np.random.default_rng(0).random((6, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(6))
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.images.dtype == torch.uint8 and ds.labels.tolist() == list(range(6))
    assert abs(ds.images[0, 0, 0].item() - round(images[0, 0, 0] * 255)) <= 1


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", pixels=np.zeros((2, 28, 28)))
    with pytest.raises(MigmError, match="no 'images' array"):
        load_dataset(tmp_path / "bad.npz")
    np.savez(tmp_path / "mismatch.npz", images=np.zeros((3, 28, 28), np.uint8), labels=np.zeros(2))
    with pytest.raises(MigmError, match="3 images but 2 labels"):
        load_dataset(tmp_path / "mismatch.npz")


def test_image_folder_with_class_subfolders(tmp_path):
    for name in ("sneaker", "3"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((56, 56), 200, np.uint8)).save(tmp_path / name / "a.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "loose.png")
    ds = load_dataset(tmp_path)
    assert sorted(ds.labels.tolist()) == [-1, 3, 7]
    assert ds.images.shape == (3, 28, 28)


def test_folder_with_unknown_class_name(tmp_path):
    (tmp_path / "giraffe").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "giraffe" / "a.png")
    with pytest.raises(MigmError, match="giraffe"):
        load_dataset(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(MigmError, match="does not exist"):
        load_dataset(tmp_path / "missing")


def test_pixel_range_round_trip():
    x = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    assert torch.equal(to_uint8(to_model_range(x)), x)
