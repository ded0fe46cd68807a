"""Datasets → tensors on the device, batched by index and augmented on the device.

Small datasets (Fashion-MNIST, CIFAR-10) live on the device as one normalised tensor each; an epoch is a
random permutation of indices, a batch is an index slice, augmentation (horizontal flip, pad-and-crop) is
done on the device per batch (airbench-style: no DataLoader, no host round trip in the training step).
Large image folders (ImageNet, the NSO fine-tuning sets) stream through a torchvision DataLoader behind the
same ``train_batches``/``test_batches`` interface.

Datasets (:data:`LOADERS`, :data:`FOLDER_DATASETS`): ``fashion_mnist``, ``cifar10``, ``digits`` (Paper B's
offline fine-tuning stand-in: scikit-learn's UCI digits, a fixed test split of :data:`DIGITS_TEST` images),
``imagenet`` and ``image_folder`` (``train/`` and ``val/``), ``image_folder_splits`` (``train/``, ``val/`` for
model selection and ``test/``: Paper B's protocol). How many examples each holds, known before loading:
:mod:`hessreg.sizes`.

Fashion-MNIST is looked for, in order, in: an explicit ``root``; ``$HESSREG_DATA``; Debian's
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); torchvision's download (online only).
"""
from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torchvision
from torch import Tensor

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz",
}
DATA_SEED = 1234  # fixes which training subset a run sees, independently of the run's seed


class DataNotFoundError(FileNotFoundError):
    pass


# ----------------------------------------------------------------------------------------------- raw files

def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not, as a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()  # writable


def _fashion_mnist_dir(candidate: Path) -> Path | None:
    for d in (candidate, candidate / "FashionMNIST" / "raw", candidate / "fashion-mnist"):
        if all((d / f).exists() for f in FASHION_MNIST_FILES.values()):
            return d
    return None


def find_fashion_mnist(root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder holding the four Fashion-MNIST IDX .gz files (search order in the module docstring)."""
    tried = []
    for label, cand in (("explicit root", root), ("$HESSREG_DATA", os.environ.get("HESSREG_DATA")),
                        ("Debian package dataset-fashion-mnist", DEBIAN_FASHION_MNIST)):
        if cand:
            found = _fashion_mnist_dir(Path(cand))
            if found:
                return found
            tried.append(f"{label}: {cand}")
        else:
            tried.append(f"{label}: not set")
    if download:
        target = Path(root or os.environ.get("HESSREG_DATA") or Path.home() / ".cache" / "hessreg")
        try:
            torchvision.datasets.FashionMNIST(str(target), download=True)
            found = _fashion_mnist_dir(target)
            if found:
                return found
        except Exception as e:  # offline: the error below says what to do
            tried.append(f"torchvision download into {target}: {type(e).__name__}: {e}")
    raise DataNotFoundError(
        "Fashion-MNIST not found. Looked in:\n  - " + "\n  - ".join(tried) + "\nProvide it one of four ways: "
        "(1) pass root=<folder with the four IDX .gz files>; (2) set HESSREG_DATA=<that folder>; "
        "(3) `apt-get install dataset-fashion-mnist` (installs into /usr/share/datasets/fashion-mnist); "
        "(4) go online so torchvision can download it.")


def load_fashion_mnist_arrays(root=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = find_fashion_mnist(root)
    return tuple(read_idx(d / FASHION_MNIST_FILES[k])
                 for k in ("train_images", "train_labels", "test_images", "test_labels"))


class _CIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader with presence checks instead of md5s (md5s only fit the official files,
    and a partial or regenerated copy should fail on content, not on a checksum)."""

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = torchvision.datasets.CIFAR10.meta | {"md5": None}


def load_cifar10_arrays(root=None):
    root = root or os.environ.get("HESSREG_DATA")
    if not root:
        raise DataNotFoundError("CIFAR-10 needs root=<folder> or $HESSREG_DATA containing cifar-10-batches-py/ "
                                "(torchvision's layout; get it with torchvision.datasets.CIFAR10(root, "
                                "download=True) on a machine with internet).")
    try:
        tr, te = _CIFAR10(str(root), train=True), _CIFAR10(str(root), train=False)
    except RuntimeError as e:
        raise DataNotFoundError(f"CIFAR-10 not found under {root}/cifar-10-batches-py ({e}). Download it with "
                                "torchvision.datasets.CIFAR10(root, download=True) where there is internet.") from None
    return tr.data, np.asarray(tr.targets), te.data, np.asarray(te.targets)


# Paper B's offline stand-in: the six fine-tuning sets cannot be fetched here, so the book fine-tunes on
# scikit-learn's copy of the UCI handwritten digits (1,797 8×8 images, 0–16 grey levels) upsampled to 28×28: a
# real domain shift from Fashion-MNIST (clothes → digits) with few labels.
DIGITS_TEST = 797  # fixed test split; the other 1,000 images are the training pool (val_size is taken from it)
DIGITS_SEED = DATA_SEED + 3


def load_digits_arrays(size: int = 28) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """UCI handwritten digits (scikit-learn's copy): 8×8 images at 0–16 scaled to 0–255 and upsampled to
    ``size``×``size`` bilinearly; a fixed random split into a training pool and :data:`DIGITS_TEST` test images.
    Returns float arrays (N, size, size) on the 0–255 scale and integer labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataNotFoundError("the digits transfer task needs scikit-learn, which ships the UCI handwritten "
                                "digits: pip install scikit-learn") from None
    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x[:, 0].clamp(0, 255).numpy()
    y = np.asarray(d.target, dtype=np.int64)
    perm = np.random.default_rng(DIGITS_SEED).permutation(len(y))
    test, pool = np.sort(perm[:DIGITS_TEST]), np.sort(perm[DIGITS_TEST:])
    return x[pool], y[pool], x[test], y[test]


# --------------------------------------------------------------------------------------------- on the device

def augment(x: Tensor, generator: torch.Generator, flip: bool = True, pad: int = 0) -> Tensor:
    """Random horizontal flip and random crop after zero-padding by ``pad``, per sample, on x's device."""
    n, _, h, w = x.shape
    if flip:
        mask = torch.rand(n, device=x.device, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    if pad:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = xp[torch.arange(n, device=x.device)[:, None, None, None],
               torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
    return x


@dataclass
class TensorData:
    """A dataset held as normalised float tensors (N, C, H, W) on one device."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    pad: int = 0  # pad-crop margin when augmenting
    x_val: Tensor | None = None  # held out from the training pool when a validation size is asked for
    y_val: Tensor | None = None

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> int:
        return self.x_train.shape[-1]

    def train_batches(self, batch_size: int, generator: torch.Generator, augment_data: bool = False,
                      rank: int = 0, world_size: int = 1) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch in a random order; the last partial batch is dropped (a constant batch size keeps
        the regularizers' scale the same at every step). Under data parallelism each rank takes its shard."""
        n = len(self.y_train)
        perm = torch.randperm(n, device=self.x_train.device, generator=generator)
        step = batch_size * world_size
        for i in range(0, n - step + 1, step):
            idx = perm[i + rank * batch_size: i + (rank + 1) * batch_size]
            x = self.x_train[idx]
            if augment_data:
                x = augment(x, generator, flip=True, pad=self.pad)
            yield x, self.y_train[idx]

    def test_batches(self, batch_size: int = 1000) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(0, len(self.y_test), batch_size):
            yield self.x_test[i:i + batch_size], self.y_test[i:i + batch_size]

    def val_batches(self, batch_size: int = 1000) -> Iterator[tuple[Tensor, Tensor]]:
        if self.y_val is None:
            raise ValueError(f"{self.name} was loaded without a validation split (val_size=None)")
        for i in range(0, len(self.y_val), batch_size):
            yield self.x_val[i:i + batch_size], self.y_val[i:i + batch_size]


def symmetric_label_noise(y: Tensor, fraction: float, num_classes: int, seed: int) -> Tensor:
    """``y`` with ``round(fraction · n)`` labels, chosen at random, each replaced by a class drawn uniformly from
    the other ``num_classes − 1`` (symmetric noise; every corrupted label is wrong, so the fraction is exact).
    The draw depends on ``seed`` (the run's): the arms of one seed share it, seeds differ."""
    rng = np.random.default_rng([DATA_SEED + 3, seed])
    n = len(y)
    which = rng.permutation(n)[:round(fraction * n)]
    shift = torch.as_tensor(rng.integers(1, num_classes, size=len(which)), dtype=y.dtype, device=y.device)
    out = y.clone()
    out[torch.as_tensor(which, device=y.device)] = (y[torch.as_tensor(which, device=y.device)] + shift) % num_classes
    return out


def _subset(n: int, size: int | None, seed: int) -> np.ndarray:
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def tensor_data(name: str, x_train: np.ndarray, y_train, x_test, y_test, num_classes: int,
                train_size: int | None, test_size: int | None, device, pad: int,
                val_size: int | None = None) -> TensorData:
    """Subset, scale to [0, 1], normalise per channel with the training subset's statistics, move to device.

    With ``val_size``, a fixed random validation set is held out of the training pool first and the training
    subset is drawn from the rest (without it, the subset is the same as ever)."""
    pool = np.arange(len(y_train))
    val = None
    if val_size:
        if val_size >= len(pool):
            raise ValueError(f"val_size {val_size} leaves no training data ({len(pool)} examples)")
        perm = np.random.default_rng(DATA_SEED + 2).permutation(len(pool))
        val, pool = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    tr, te = pool[_subset(len(pool), train_size, DATA_SEED)], _subset(len(y_test), test_size, DATA_SEED + 1)

    def prep(x):
        x = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32) / 255.0
        return x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # (N,H,W) or (N,H,W,C) → NCHW

    xtr, xte = prep(x_train[tr]), prep(x_test[te])
    mean, std = xtr.mean((0, 2, 3), keepdim=True), xtr.std((0, 2, 3), keepdim=True)
    as_y = lambda y: torch.as_tensor(np.asarray(y), dtype=torch.long)
    y_train = as_y(y_train)
    xval = None if val is None else ((prep(x_train[val]) - mean) / std).to(device)
    return TensorData(name, ((xtr - mean) / std).to(device), y_train[tr].to(device),
                      ((xte - mean) / std).to(device), as_y(y_test)[te].to(device), num_classes, pad,
                      xval, None if val is None else y_train[val].to(device))


# ---------------------------------------------------------------------------------- folders of image files

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def folder_transforms(train: bool, size: int = 224):
    """The ImageNet recipe: RandomResizedCrop + flip for training, Resize(256)/CenterCrop(224) for testing."""
    T = torchvision.transforms
    head = ([T.RandomResizedCrop(size), T.RandomHorizontalFlip()] if train
            else [T.Resize(int(size * 256 / 224)), T.CenterCrop(size)])
    return T.Compose(head + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@dataclass
class FolderData:
    """ImageFolder datasets (``root/train/<class>/*.jpg``, ``root/val/<class>/*.jpg``) streamed by DataLoader."""

    name: str
    train: torchvision.datasets.ImageFolder
    test: torchvision.datasets.ImageFolder
    device: str
    num_workers: int = 4

    @classmethod
    def from_root(cls, root, name: str, device, train_size=None, image_size: int = 224) -> "FolderData":
        if not root or not (Path(root) / "train").is_dir() or not (Path(root) / "val").is_dir():
            raise DataNotFoundError(
                f"{name}: expected an ImageFolder tree at root=<folder> or $HESSREG_DATA with train/<class>/ and "
                f"val/<class>/ subfolders of images; got {root!r}. ImageNet: extract ILSVRC2012 into that layout.")
        train = torchvision.datasets.ImageFolder(str(Path(root) / "train"), folder_transforms(True, image_size))
        test = torchvision.datasets.ImageFolder(str(Path(root) / "val"), folder_transforms(False, image_size))
        if train_size is not None and train_size < len(train):
            keep = set(_subset(len(train), train_size, DATA_SEED).tolist())
            train.samples = [s for i, s in enumerate(train.samples) if i in keep]
            train.targets = [t for _, t in train.samples]
        return cls(name, train, test, str(device))

    num_train = property(lambda self: len(self.train))
    num_classes = property(lambda self: len(self.train.classes))
    in_channels = property(lambda self: 3)
    image_size = property(lambda self: self.train.transform.transforms[0].size[0])

    def _loader(self, ds, batch_size, shuffle, generator=None, drop_last=False):
        return torch.utils.data.DataLoader(ds, batch_size, shuffle=shuffle, generator=generator,
                                           num_workers=self.num_workers, drop_last=drop_last,
                                           pin_memory=self.device.startswith("cuda"))

    def train_batches(self, batch_size, generator, augment_data=True, rank=0, world_size=1):
        cpu_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        ds = self.train if world_size == 1 else torch.utils.data.Subset(
            self.train, range(rank, len(self.train), world_size))
        for x, y in self._loader(ds, batch_size, True, cpu_gen, drop_last=True):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _in_order(self, ds, batch_size):
        """Every image of ``ds`` once, in order, on the device (evaluation)."""
        for x, y in self._loader(ds, batch_size, False):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def test_batches(self, batch_size=256):
        return self._in_order(self.test, batch_size)


class FolderSplits(FolderData):
    """An ImageFolder tree with a validation split: ``train/`` (trained on), ``val/`` (model selection) and
    ``test/`` (reported), each ``<class>/<image>``. :class:`FolderData` tests on ``val/`` and has no validation
    split; Paper B selects hyperparameters on validation data, so its paper scale uses this."""

    def __init__(self, name, train, test, device, val, num_workers: int = 4):
        super().__init__(name, train, test, device, num_workers)
        self.val = val

    def val_batches(self, batch_size=256):
        return self._in_order(self.val, batch_size)


def load_folder_splits(train_size, test_size, val_size, device, root) -> FolderSplits:
    """``image_folder_splits``: see :class:`FolderSplits`. ``val_size`` caps the validation images used (a fixed
    random subset); ``test_size`` is ignored (the whole ``test/`` folder is the test set)."""
    root = root or os.environ.get("HESSREG_DATA")
    missing = [d for d in ("train", "val", "test") if not root or not (Path(root) / d).is_dir()]
    if missing:
        raise DataNotFoundError(
            f"image_folder_splits: expected an ImageFolder tree at root=<folder> or $HESSREG_DATA with train/, "
            f"val/ and test/ subfolders, each holding <class>/<image> files; got {root!r} (missing: "
            f"{', '.join(missing)}). Paper B's six datasets: split each into that layout.")
    base = FolderData.from_root(root, "image_folder_splits", device, train_size)
    val = base.test  # FolderData reads val/ with the evaluation transforms
    if val_size is not None and val_size < len(val):
        keep = _subset(len(val), val_size, DATA_SEED + 2)
        val.samples = [val.samples[i] for i in keep]
        val.targets = [t for _, t in val.samples]
    test = torchvision.datasets.ImageFolder(str(Path(root) / "test"), folder_transforms(False))
    if test.classes != base.train.classes or val.classes != base.train.classes:
        raise ValueError(f"image_folder_splits: train/, val/ and test/ under {root} must hold the same classes")
    return FolderSplits("image_folder_splits", base.train, test, str(device), val)


# --------------------------------------------------------------------------------------------- every dataset

# name → loader(train_size, test_size, val_size, device, root): the datasets loaded once and cached (in memory,
# and image folders with a validation split); the other image folders (FOLDER_DATASETS) stream.
LOADERS: dict[str, Callable[..., TensorData | FolderSplits]] = {
    "fashion_mnist": lambda tr, te, va, device, root: tensor_data(
        "fashion_mnist", *load_fashion_mnist_arrays(root), 10, tr, te, device, pad=2, val_size=va),
    "cifar10": lambda tr, te, va, device, root: tensor_data(
        "cifar10", *load_cifar10_arrays(root), 10, tr, te, device, pad=4, val_size=va),
    "digits": lambda tr, te, va, device, root: tensor_data(
        "digits", *load_digits_arrays(), 10, tr, te, device, pad=2, val_size=va),
    "image_folder_splits": load_folder_splits,
}
FOLDER_DATASETS = ("imagenet", "image_folder")


@functools.lru_cache(maxsize=4)
def _cached(name: str, train_size, test_size, val_size, device: str, root) -> TensorData:
    return LOADERS[name](train_size, test_size, val_size, device, root)


def load(name: str, train_size: int | None = None, test_size: int | None = None, device="cpu", root=None,
         val_size: int | None = None):
    """Dataset ``name`` ready for training: :class:`TensorData` or :class:`FolderData`."""
    check_dataset(name)
    if name in FOLDER_DATASETS:
        if val_size:
            raise ValueError(f"{name}: a validation split of an image folder is its own val/ folder; "
                             "val_size is for in-memory datasets")
        return FolderData.from_root(root or os.environ.get("HESSREG_DATA"), name, device, train_size)
    return _cached(name, train_size, test_size, val_size, str(device), None if root is None else str(root))


def check_dataset(name: str) -> None:
    valid = (*LOADERS, *FOLDER_DATASETS)
    if name not in valid:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(valid)}")
