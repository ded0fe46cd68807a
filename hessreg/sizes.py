"""How many examples a dataset holds, known before loading it, and the check of a run's sizes against them:
a size the data cannot give is refused for every config of a grid before the first run trains, never clipped.

Fashion-MNIST's counts come from its IDX headers, CIFAR-10's and the digits' splits are fixed, image folders are
counted file by file; missing data raises :class:`~hessreg.data.DataNotFoundError` here, as loading would.
"""
from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path
from typing import NamedTuple

from . import data


class Sizes(NamedTuple):
    """How many examples a dataset holds, known without loading it: its training pool, its test set and, for
    image folders with their own validation folder, that folder (``None`` for in-memory datasets, whose
    validation split ``val_size`` is taken out of the training pool)."""

    train: int
    test: int
    val: int | None = None


# Fixed splits. digits: scikit-learn's 1,797 UCI images, of which DIGITS_TEST = 797 are the test set
# (tests/test_faults.py checks that these agree with the loaders).
KNOWN_SIZES = {"fashion_mnist": Sizes(60000, 10000), "cifar10": Sizes(50000, 10000),
               "digits": Sizes(1797 - data.DIGITS_TEST, data.DIGITS_TEST)}
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _idx_count(path: Path) -> int:
    """The number of items in an IDX file, read from its header (first dimension) without reading the data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[:2] != b"\x00\x00":
        raise ValueError(f"{path} is not an IDX file")
    return int.from_bytes(head[4:8], "big")


def _count_images(folder: Path) -> int:
    """Image files in ``folder/<class>/`` (what torchvision's ImageFolder would load), without opening them.
    Counted once per process while no class folder changes (ImageNet's 1.28M files take seconds to list, and
    every run checks its sizes)."""
    classes = sorted(d for d in folder.iterdir() if d.is_dir())
    return _count_images_in(tuple((str(d), d.stat().st_mtime_ns) for d in classes))


@functools.lru_cache(maxsize=16)
def _count_images_in(classes: tuple[tuple[str, int], ...]) -> int:
    from torchvision.datasets.folder import IMG_EXTENSIONS
    return sum(1 for d, _ in classes for f in Path(d).rglob("*") if f.suffix.lower() in IMG_EXTENSIONS and f.is_file())


def dataset_sizes(name: str, root: str | os.PathLike | None = None) -> Sizes | None:
    """The sizes of dataset ``name`` (see :class:`Sizes`), found without loading any tensor; ``None`` for a
    dataset in :data:`hessreg.data.LOADERS` whose sizes this function does not know.

    Looks the data up as its loader would, so missing data raises :class:`DataNotFoundError` here, before any
    training: Fashion-MNIST's counts come from its IDX headers (a download when it is nowhere, as ``load``
    would), CIFAR-10's files must be there, image folders are counted file by file."""
    data.check_dataset(name)
    if name == "fashion_mnist":
        d = data.find_fashion_mnist(root)
        return Sizes(_idx_count(d / data.FASHION_MNIST_FILES["train_labels"]),
                     _idx_count(d / data.FASHION_MNIST_FILES["test_labels"]))
    if name == "cifar10":  # the official split: its pickles are read only by the loader
        where = root or os.environ.get("HESSREG_DATA")
        base = Path(where) / "cifar-10-batches-py" if where else None
        missing = [f for f in CIFAR10_FILES if base is None or not (base / f).exists()]
        if missing:
            raise data.DataNotFoundError(
                f"CIFAR-10 not found: expected {base or '<root>/cifar-10-batches-py'} holding {', '.join(missing)} "
                "(root=<folder> or $HESSREG_DATA; torchvision's layout: get it with "
                "torchvision.datasets.CIFAR10(root, download=True) on a machine with internet).")
        return KNOWN_SIZES["cifar10"]
    if name == "digits":
        import sklearn.datasets  # noqa: F401  (the loader's one requirement; ImportError says so)
        return KNOWN_SIZES["digits"]
    if name in data.FOLDER_DATASETS or name == "image_folder_splits":
        root = root or os.environ.get("HESSREG_DATA")
        splits = ("train", "val", "test") if name == "image_folder_splits" else ("train", "val")
        missing = [s for s in splits if not root or not (Path(root) / s).is_dir()]
        if missing:
            raise data.DataNotFoundError(
                f"{name}: expected an ImageFolder tree at root=<folder> or $HESSREG_DATA with "
                f"{', '.join(s + '/<class>/' for s in splits)} subfolders of images; got {root!r} "
                f"(missing: {', '.join(missing)}).")
        n = {s: _count_images(Path(root) / s) for s in splits}
        if name == "image_folder_splits":
            return Sizes(n["train"], n["test"], n["val"])
        return Sizes(n["train"], n["val"])  # FolderData tests on val/
    return None


def check_sizes(name: str, *, train_size: int | None, test_size: int | None, val_size: int | None,
                batch_size: int, root: str | os.PathLike | None = None, sizes: Sizes | None = None) -> None:
    """Raise ``ValueError`` naming the field, its value and what the dataset has, for sizes the data cannot
    give: a subset larger than its pool (never clipped silently: ``train_size=70000`` would otherwise train on
    all 60,000 images under another key than ``train_size=None``), a validation split that leaves no training
    data, fewer training examples than one batch, a ``test_size`` or ``val_size`` the dataset does not use.
    ``sizes`` saves the lookup (:func:`dataset_sizes`) when the caller has it."""
    sizes = sizes or dataset_sizes(name, root)
    if sizes is None:
        return
    folder = name in data.FOLDER_DATASETS or sizes.val is not None
    if name in data.FOLDER_DATASETS and val_size is not None:
        raise ValueError(f"val_size={val_size}: {name} has no validation split of its own (its val/ folder is "
                         "the test set); use val_size=None, or dataset image_folder_splits (train/, val/, test/)")
    if folder and test_size is not None:
        which = "test/" if sizes.val is not None else "val/"
        raise ValueError(f"test_size={test_size}: {name} tests on its whole {which} folder ({sizes.test} images); "
                         "use test_size=None")
    pool, pool_text = sizes.train, f"{sizes.train} training examples"
    if not folder and val_size is not None:  # image_folder_splits: val_size caps val/ ("1000000 = all")
        if val_size >= sizes.train:
            raise ValueError(f"val_size={val_size} leaves no training data: {name} has {sizes.train} training "
                             f"examples; use val_size < {sizes.train}")
        pool -= val_size
        pool_text = f"{pool} training examples ({sizes.train} minus val_size={val_size})"
    if train_size is not None and train_size > pool:
        raise ValueError(f"train_size={train_size} is more than {name} has: {pool_text}; use train_size ≤ "
                         f"{pool}, or None for all of them")
    if (train_size or pool) < batch_size:
        raise ValueError(f"batch_size={batch_size} is more than the {train_size or pool} training examples of "
                         f"{name}: no full batch; use batch_size ≤ {train_size or pool}")
    if test_size is not None and test_size > sizes.test:
        raise ValueError(f"test_size={test_size} is more than {name}'s {sizes.test} test examples; use "
                         f"test_size ≤ {sizes.test}, or None for all of them")
