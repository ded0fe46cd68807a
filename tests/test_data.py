"""Data: the real Fashion-MNIST, the search order and its error, the CIFAR-10 / ImageFolder loaders on small
files written in the real formats, device batching and augmentation."""
import gzip
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from hessreg import data


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(root, n_train=64, n_test=32):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / data.FASHION_MNIST_FILES["train_images"], rng.integers(0, 256, (n_train, 28, 28)))
    write_idx(root / data.FASHION_MNIST_FILES["train_labels"], rng.integers(0, 10, n_train))
    write_idx(root / data.FASHION_MNIST_FILES["test_images"], rng.integers(0, 256, (n_test, 28, 28)))
    write_idx(root / data.FASHION_MNIST_FILES["test_labels"], rng.integers(0, 10, n_test))
    return root


def test_real_fashion_mnist_shapes_and_normalisation():
    xtr, ytr, xte, yte = data.load_fashion_mnist_arrays()
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28) and xtr.dtype == np.uint8
    assert sorted(np.unique(ytr)) == list(range(10)) and np.bincount(ytr).tolist() == [6000] * 10
    ds = data.load("fashion_mnist", train_size=2000, test_size=500)
    assert ds.x_train.shape == (2000, 1, 28, 28) and ds.x_train.dtype == torch.float32
    assert ds.y_train.dtype == torch.long and ds.x_test.shape == (500, 1, 28, 28)
    assert abs(ds.x_train.mean().item()) < 1e-5 and abs(ds.x_train.std().item() - 1) < 1e-4
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 1, 28)


def test_subset_is_fixed_and_independent_of_run_seed():
    a = data.load("fashion_mnist", train_size=300, test_size=100)
    data._cached.cache_clear()
    b = data.load("fashion_mnist", train_size=300, test_size=100)
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.x_train, b.x_train)


def test_search_order_explicit_then_env(tmp_path, monkeypatch):
    explicit = fake_fashion_mnist(tmp_path / "explicit")
    env = fake_fashion_mnist(tmp_path / "env")
    monkeypatch.setenv("HESSREG_DATA", str(env))
    assert data.find_fashion_mnist(explicit) == explicit
    assert data.find_fashion_mnist() == env
    torchvision_layout = fake_fashion_mnist(tmp_path / "tv" / "FashionMNIST" / "raw")
    assert data.find_fashion_mnist(tmp_path / "tv") == torchvision_layout


def test_missing_data_error_names_all_four_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSREG_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setattr(data.torchvision.datasets, "FashionMNIST",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("offline")))
    with pytest.raises(data.DataNotFoundError) as e:
        data.find_fashion_mnist(tmp_path / "empty")
    msg = str(e.value)
    for way in ("root=", "HESSREG_DATA", "apt-get install dataset-fashion-mnist", "torchvision", "offline"):
        assert way in msg


def test_idx_reader_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(data.read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="IDX"):
        data.read_idx(tmp_path / "bad")


def write_cifar10(root, n_per_batch=4, n_test=6):
    rng = np.random.default_rng(0)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else n_per_batch
        with open(base / name, "wb") as f:  # the official pickles' layout: bytes keys would also do
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n).tolist()}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_cifar10_loader_on_files_in_torchvision_layout(tmp_path):
    write_cifar10(tmp_path)
    ds = data.load("cifar10", root=tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
    assert ds.in_channels == 3 and ds.pad == 4
    with pytest.raises(data.DataNotFoundError, match="cifar-10-batches-py"):
        data.load("cifar10", root=tmp_path / "missing")


def test_image_folder_loader(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.jpg")
    ds = data.load("imagenet", root=tmp_path)
    ds.num_workers = 0
    assert (ds.num_classes, ds.num_train, ds.image_size) == (2, 6, 224)
    x, y = next(ds.train_batches(4, torch.Generator().manual_seed(0)))
    assert x.shape == (4, 3, 224, 224) and y.shape == (4,)
    xs = torch.cat([x for x, _ in ds.test_batches(4)])
    assert xs.shape == (6, 3, 224, 224)
    with pytest.raises(data.DataNotFoundError, match="train/<class>"):
        data.load("imagenet", root=tmp_path / "none")


def test_unknown_dataset_names_choices():
    with pytest.raises(ValueError, match="fashion_mnist, cifar10"):
        data.load("mnist")


def test_batches_cover_an_epoch_once_and_augment_on_device():
    ds = data.load("fashion_mnist", train_size=1000, test_size=100)
    g = torch.Generator().manual_seed(0)
    batches = list(ds.train_batches(128, g))
    assert len(batches) == 1000 // 128 and all(len(y) == 128 for _, y in batches)
    x, _ = batches[0]
    flipped = data.augment(x, torch.Generator().manual_seed(1), flip=True, pad=0)
    same = [torch.equal(a, b) or torch.equal(a, b.flip(-1)) for a, b in zip(flipped, x)]
    assert all(same) and not torch.equal(flipped, x)
    shifted = data.augment(x, torch.Generator().manual_seed(2), flip=False, pad=2)
    # each crop is a translate of the original by at most 2 pixels, zero-filled
    i = 0
    xp = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
    assert any(torch.equal(shifted[i], xp[:, dy:dy + 28, dx:dx + 28]) for dy in range(5) for dx in range(5))
