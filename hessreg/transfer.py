"""Paper B's fine-tuning setting: where a run's initial weights come from, the offline transfer task, the
flatness measurement and the selection by validation.

``Config.init`` names the initial weights. ``INITS`` maps a kind to ``(check, initialize)``: ``check(spec)``
validates the spec before any training and ``initialize(model, spec, device)`` loads every weight except the
classification head (the last ``nn.Linear``), which stays as built — a new head, as in the paper. Kinds:

- ``pretrain:<field>=<value>,…`` — a model pretrained by this package's own training loop with the given
  :class:`~hessreg.train.Config` fields over :data:`PRETRAIN_DEFAULTS` (Fashion-MNIST, SGD). The pretraining
  runs once: its weights are cached as ``<weights_dir()>/<key>.pt`` (written atomically, under a file lock so
  parallel sweep processes pretrain once), and every fine-tuning run of a sweep loads them. Build specs with
  :func:`pretrain_spec`.
- ``imagenet:<resnet18|resnet34|resnet50>`` — torchvision's ImageNet weights from the local torch cache
  (:func:`hessreg.models.load_pretrained_state`; a clear error names the missing file). Paper B's setup.

**The offline stand-in.** The six fine-tuning sets and the ImageNet weights cannot be fetched here, so the book
pretrains on Fashion-MNIST and fine-tunes on scikit-learn's copy of the UCI handwritten digits (1,797 8×8
images, 0–16 grey levels), upsampled to 28×28 bilinearly — a real domain shift (clothes → digits) with few
labels. It is registered as the dataset ``digits``: a fixed test split of :data:`DIGITS_TEST` images and a
training pool of the rest, from which ``Config.val_size`` holds out the validation split.

**Flatness** (Paper B's Hessian table): :func:`flatness` — Hessian trace by Hutchinson with Rademacher probes
(stop at 1e-3 relative change or 100 probes) and the top eigenvalue by power iteration (≤ 100 iterations, stop
at 1e-3 relative change), eval mode, on the first 1,000 training samples in batches of 16. Registered as
training measurements (:data:`MEASUREMENTS`, part of ``hessreg.train.MEASUREMENTS``).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from . import curvature, data, models

INITS: dict[str, tuple[Callable[[str], None], Callable[[nn.Module, str, object], None]]] = {}
REPO = Path(__file__).resolve().parent.parent


def _kind(spec: str) -> str:
    kind = spec.split(":", 1)[0]
    if kind not in INITS:
        raise ValueError(f"unknown init {spec!r}; valid kinds: {', '.join(sorted(INITS)) or 'none registered'}")
    return kind


def check_init(spec: str) -> None:
    INITS[_kind(spec)][0](spec)


def initialize(model: nn.Module, spec: str, device) -> None:
    INITS[_kind(spec)][1](model, spec, device)


# ------------------------------------------------------------------------------------------ loading a backbone

def head_name(model: nn.Module) -> str:
    """The classification head: the last ``nn.Linear`` among the model's modules."""
    heads = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head")
    return heads[-1]


def load_backbone(model: nn.Module, state: dict) -> list[str]:
    """Copy every entry of ``state`` into ``model`` except the head's; returns the names copied.

    Every non-head entry of the model must be in ``state`` with the same shape (else ``ValueError`` listing the
    mismatches): a backbone is loaded whole or not at all."""
    head = head_name(model) + "."
    own = model.state_dict()
    body = [k for k in own if not k.startswith(head)]
    missing = [k for k in body if k not in state]
    wrong = [f"{k}: model {tuple(own[k].shape)} vs weights {tuple(state[k].shape)}"
             for k in body if k in state and own[k].shape != state[k].shape]
    extra = [k for k in state if k not in own and not k.startswith(head)]
    if missing or wrong or extra:
        raise ValueError("pretrained weights do not fit the model's backbone: "
                         f"missing {missing[:5]}, shape mismatches {wrong[:5]}, unexpected {extra[:5]}")
    with torch.no_grad():
        for k in body:
            own[k].copy_(state[k].to(own[k].device, own[k].dtype))
    return body


# -------------------------------------------------------------------------------------- pretraining, cached

PRETRAIN_DEFAULTS = dict(dataset="fashion_mnist", model="wrn-10-2", activation="relu", optimizer="sgd", lr=0.05,
                         momentum=0.9, weight_decay=5e-4, schedule="cosine", epochs=10, batch_size=128,
                         augment=True, seed=0, train_size=None)
_NOT_PRETRAIN = ("init", "measure", "val_size", "device", "data_root", "hparams", "method")


def pretrain_spec(**fields) -> str:
    """The ``Config.init`` spec of a pretraining run: ``pretrain:`` and the given fields, sorted by name; the
    others take :data:`PRETRAIN_DEFAULTS`. The weights cache is keyed by the pretraining config, so specs that
    spell out a default or leave it implicit share one pretraining."""
    bad = [k for k in fields if k in _NOT_PRETRAIN]
    if bad:
        raise ValueError(f"pretraining fields {bad} cannot be set (plain method, no init, no measurements)")
    items = sorted(fields.items())
    return "pretrain:" + ",".join(f"{k}={json.dumps(v)}" for k, v in items)


def pretrain_config(spec: str, device: str = "auto"):
    """The :class:`~hessreg.train.Config` of a ``pretrain:`` spec (validated)."""
    from .train import Config  # local: train imports this module
    body = spec.split(":", 1)[1] if ":" in spec else ""
    fields = dict(PRETRAIN_DEFAULTS)
    for item in filter(None, body.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"pretrain spec {spec!r}: expected <field>=<value> items, got {item!r}")
        if name in _NOT_PRETRAIN:
            raise ValueError(f"pretrain spec {spec!r}: field {name!r} cannot be set")
        fields[name] = yaml.safe_load(value)
    if fields["dataset"] in data.FOLDER_DATASETS:
        raise ValueError(f"pretrain spec {spec!r}: pretraining needs an in-memory dataset, not {fields['dataset']}")
    try:
        return Config(**fields, device=device)
    except TypeError as e:
        raise ValueError(f"pretrain spec {spec!r}: {e}") from None


def weights_dir() -> Path:
    """Where pretrained weights are cached: ``$HESSREG_WEIGHTS``, else ``$HESSREG_STORE/weights``, else
    ``_build/weights`` (never committed; a fresh machine pretrains once)."""
    if os.environ.get("HESSREG_WEIGHTS"):
        return Path(os.environ["HESSREG_WEIGHTS"])
    if os.environ.get("HESSREG_STORE"):
        return Path(os.environ["HESSREG_STORE"]) / "weights"
    return REPO / "_build" / "weights"


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` so that readers see the old file or the new one, never a part."""
    from .results import write_atomic  # results → train → transfer: import when used
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (POSIX ``flock``; elsewhere no lock): one process pretrains, others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _train_keeping_model(config):
    """Run ``config`` through the one training loop; the record and the trained weights (on the CPU)."""
    from . import train
    with torch.random.fork_rng():  # the fine-tuning run that triggered this keeps its random stream
        record, model = train.run(config, return_model=True)
    return record, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def pretrained(spec: str, device="auto") -> dict:
    """The state dict of the ``pretrain:`` spec's model, trained once and cached (see :func:`weights_dir`)."""
    dev = torch.device(device) if not isinstance(device, str) or device != "auto" else None
    config = pretrain_config(spec, "auto" if dev is None else dev.type)
    path = weights_dir() / f"{config.key}.pt"
    with _locked(path.with_suffix(".lock")):
        if not path.exists():
            record, state = _train_keeping_model(config)
            if record.diverged:
                raise RuntimeError(f"pretraining {spec!r} diverged at {record.diverged_at}")
            from .results import write_atomic
            write_atomic(path.with_suffix(".json"), json.dumps(record.to_dict(), indent=1, sort_keys=True))
            save_atomic(state, path)
    return torch.load(path, map_location="cpu", weights_only=True)


def pretrain_record(spec: str) -> dict | None:
    """The stored record (as a dict) of a cached pretraining run, or None if it has not run here."""
    path = weights_dir() / f"{pretrain_config(spec).key}.json"
    return json.loads(path.read_text()) if path.exists() else None


INITS["pretrain"] = (lambda spec: pretrain_config(spec) and None,
                     lambda model, spec, device: load_backbone(model, pretrained(spec, device)) and None)


def _check_imagenet(spec: str) -> None:
    name = spec.split(":", 1)[1] if ":" in spec else ""
    if name not in models.PRETRAINED:
        raise ValueError(f"init {spec!r}: expected imagenet:<{'|'.join(models.PRETRAINED)}>")


def _init_imagenet(model: nn.Module, spec: str, device) -> None:
    load_backbone(model, models.load_pretrained_state(spec.split(":", 1)[1]))


INITS["imagenet"] = (_check_imagenet, _init_imagenet)


# -------------------------------------------------------------------------------------- the digits dataset

DIGITS_TEST = 797  # fixed test split; the other 1,000 images are the training pool (val_size is taken from it)
DIGITS_SEED = data.DATA_SEED + 3


def load_digits_arrays(size: int = 28) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """UCI handwritten digits (scikit-learn's copy): 8×8 images at 0–16 scaled to 0–255 and upsampled to
    ``size``×``size`` bilinearly; a fixed random split into a training pool and :data:`DIGITS_TEST` test images.
    Returns float arrays (N, size, size) on the 0–255 scale and integer labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise data.DataNotFoundError("the digits transfer task needs scikit-learn, which ships the UCI "
                                     "handwritten digits: pip install scikit-learn") from None
    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0].clamp(0, 255).numpy()
    y = np.asarray(d.target, dtype=np.int64)
    perm = np.random.default_rng(DIGITS_SEED).permutation(len(y))
    test, pool = np.sort(perm[:DIGITS_TEST]), np.sort(perm[DIGITS_TEST:])
    return x[pool], y[pool], x[test], y[test]


data.LOADERS["digits"] = lambda tr, te, va, device, root: data.tensor_data(
    "digits", *load_digits_arrays(), 10, tr, te, device, pad=2, val_size=va)


# -------------------------------------------------------------------- image folders with a validation split

class FolderSplits(data.FolderData):
    """An ImageFolder tree with a validation split: ``train/`` (trained on), ``val/`` (model selection) and
    ``test/`` (reported), each ``<class>/<image>``. ``hessreg.data.FolderData`` tests on ``val/`` and has no
    validation split; Paper B selects hyperparameters on validation data, so its paper scale uses this."""

    def __init__(self, name, train, test, device, val, num_workers: int = 4):
        super().__init__(name, train, test, device, num_workers)
        self.val = val

    def val_batches(self, batch_size=256):
        return self._in_order(self.val, batch_size)


def load_folder_splits(train_size, test_size, val_size, device, root) -> FolderSplits:
    """``image_folder_splits``: see :class:`FolderSplits`. ``val_size`` caps the validation images used (a fixed
    random subset); ``test_size`` is ignored (the whole ``test/`` folder is the test set)."""
    import torchvision
    root = root or os.environ.get("HESSREG_DATA")
    missing = [d for d in ("train", "val", "test") if not root or not (Path(root) / d).is_dir()]
    if missing:
        raise data.DataNotFoundError(
            f"image_folder_splits: expected an ImageFolder tree at root=<folder> or $HESSREG_DATA with train/, "
            f"val/ and test/ subfolders, each holding <class>/<image> files; got {root!r} (missing: "
            f"{', '.join(missing)}). Paper B's six datasets: split each into that layout.")
    base = data.FolderData.from_root(root, "image_folder_splits", device, train_size)
    val = base.test  # FolderData reads val/ with the evaluation transforms
    if val_size is not None and val_size < len(val):
        keep = data._subset(len(val), val_size, data.DATA_SEED + 2)
        val.samples = [val.samples[i] for i in keep]
        val.targets = [t for _, t in val.samples]
    test = torchvision.datasets.ImageFolder(str(Path(root) / "test"), data.folder_transforms(False))
    if test.classes != base.train.classes or val.classes != base.train.classes:
        raise ValueError(f"image_folder_splits: train/, val/ and test/ under {root} must hold the same classes")
    return FolderSplits("image_folder_splits", base.train, test, str(device), val)


data.LOADERS["image_folder_splits"] = load_folder_splits


# ---------------------------------------------------------------------------------------------- flatness

def flatness(model: nn.Module, ds, *, n_samples: int = 1000, batch_size: int = 16, max_probes: int = 100,
             rtol: float = 1e-3, max_iter: int = 100, tol: float = 1e-3, seed: int = 0) -> dict:
    """Paper B's Hessian metrics of the training loss at the model's weights: the trace by Hutchinson
    (Rademacher probes, stop when a probe moves the running mean by ≤ ``rtol`` relative, or after
    ``max_probes``) and the top eigenvalue (largest in magnitude) by power iteration (≤ ``max_iter``
    products, stop at ``tol`` relative change), in eval mode (BatchNorm on running statistics), over the first
    ``n_samples`` training samples in batches of ``batch_size`` (the mean over batches weighted by size, so in
    eval mode the batching changes only rounding). Probes and the start vector come from a generator seeded
    with ``seed``: the same probes for every model."""
    x, y = ds.x_train[:n_samples], ds.y_train[:n_samples]
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]
    device = x.device
    gen = torch.Generator(device=device).manual_seed(seed)
    tr = curvature.hutchinson_trace(model, batches, train_mode=False, n_probes=max_probes,
                                    distribution="rademacher", rtol=rtol, generator=gen)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    eig = curvature.top_eigen(model, batches, algorithm="power", train_mode=False, max_iter=max_iter, tol=tol,
                              generator=gen)
    return {"trace": tr.trace, "trace_se": tr.std_err, "n_probes": tr.n_samples,
            "top_eig": float(eig.values[0]), "eig_iters": eig.n_iter, "n_samples": len(y),
            "batch_size": batch_size}


# name → fn(model, dataset): the protocol at three costs. "nso_flatness" is the paper's protocol exactly;
# "nso_flatness_fast" is the same quantity with batches of 500 (eval mode: the batching changes only rounding);
# "nso_flatness_smoke" a cheap version that only exercises the code.
MEASUREMENTS: dict[str, Callable] = {
    "nso_flatness": lambda model, ds: flatness(model, ds),
    "nso_flatness_fast": lambda model, ds: flatness(model, ds, batch_size=500),
    "nso_flatness_smoke": lambda model, ds: flatness(model, ds, n_samples=64, batch_size=64, max_probes=5,
                                                     max_iter=5),
}


# ------------------------------------------------------------------------------- selection by validation

def setting_columns(df: pd.DataFrame) -> list[str]:
    """The hyperparameter columns (``hp_*``) that are set for any row of ``df``."""
    return [c for c in df.columns if c.startswith("hp_") and df[c].notna().any()]


def settings_table(df: pd.DataFrame, by: str = "method", metric: str = "val_acc") -> pd.DataFrame:
    """One row per (group, hyperparameter setting): mean ``metric`` over seeds (the selection criterion),
    mean ± sd test accuracy (%), seed count. A setting is named by the group's ``hp_*`` columns that vary in its
    search (all of them when none varies)."""
    rows = []
    for group, d in df.groupby(by, sort=False):
        cols = setting_columns(d)
        varying = [c for c in cols if d[c].nunique(dropna=False) > 1]
        cols = varying or cols  # name a setting by what varies in the group's search
        for setting, s in (d.groupby(cols, dropna=False, sort=True) if cols else [((), d)]):
            setting = setting if isinstance(setting, tuple) else (setting,)
            crit = s[metric].astype(float)
            rows.append({by: group, "setting": ", ".join(f"{c[3:]}={v:g}" if isinstance(v, float) else
                                                          f"{c[3:]}={v}" for c, v in zip(cols, setting)) or "—",
                         f"{metric}_mean": 100 * crit.mean() if crit.notna().any() else math.nan,
                         "test_acc_mean": 100 * s["test_acc"].mean(), "test_acc_std": 100 * s["test_acc"].std(),
                         "n": len(s), "diverged": int(s["diverged"].sum()), "_keys": list(s["key"])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- verdicts

def flatness_frame(records, when: str = "final") -> pd.DataFrame:
    """One row per record with its flatness measurement (``trace``, ``top_eig``, …) taken ``when``, keyed by
    the record's key (join it to ``results.frame``)."""
    rows = []
    for r in records:
        for m in r.metrics:
            if m["when"] == when and m["name"].startswith("nso_flatness") and isinstance(m["value"], dict):
                rows.append({"key": r.key} | {k: v for k, v in m["value"].items()})
    return pd.DataFrame(rows, columns=["key", "trace", "trace_se", "n_probes", "top_eig", "eig_iters",
                                       "n_samples", "batch_size"] if not rows else None)


def reductions(best: pd.DataFrame, method: str, metrics=("trace", "top_eig"), by: str = "method") -> pd.DataFrame:
    """Mean ± sd of each metric per group, and ``method``'s relative change against each group in %:
    100·(m_method / m_group − 1), with a delta-method standard error from the seed spread."""
    g = best.groupby(by, sort=False)[list(metrics)].agg(["mean", "std", "count"])
    rows = []
    for group in g.index:
        row = {by: group}
        for m in metrics:
            mu, sd, n = g.loc[group, (m, "mean")], g.loc[group, (m, "std")], g.loc[group, (m, "count")]
            ref = g.loc[method, (m, "mean")], g.loc[method, (m, "std")], g.loc[method, (m, "count")]
            row |= {f"{m}_mean": mu, f"{m}_std": sd, "n": int(n)}
            if group != method:
                r = ref[0] / mu - 1
                se = abs(ref[0] / mu) * math.sqrt((ref[1] / ref[0]) ** 2 / ref[2] + (sd / mu) ** 2 / n) \
                    if n > 1 and ref[2] > 1 else math.nan
                row |= {f"{m}_change_%": 100 * r, f"{m}_change_se_%": 100 * se}
            else:
                row |= {f"{m}_change_%": 0.0, f"{m}_change_se_%": math.nan}
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ chapter helpers

def method_labels(optimizer: str) -> dict[str, str]:
    """Readable method names for Paper B's chapters (the plain method is named after the optimizer)."""
    plain = {"sgd": "SGD", "adam": "Adam", "amsgrad": "Adam (amsgrad)"}.get(optimizer, optimizer)
    return {"sgd": plain, "label_smoothing": "label smoothing", "sam": "SAM", "asam": "ASAM", "rsam": "RSAM",
            "weight_noise": "one-sided noise", "nso": "NSO"}


def matches(df: pd.DataFrame, **equal) -> pd.Series:
    """Rows whose columns equal the given values (a missing column matches nothing)."""
    mask = pd.Series(True, index=df.index)
    for col, value in equal.items():
        mask &= (df[col] == value) if col in df else False
    return mask


def ablation_frame(df: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Chapter 14's runs, one row per (run, ablation it belongs to) with ``ablation`` ∈ {plain, sides, k,
    weight decay} and a readable ``variant``; a run shared by several ablations appears once in each."""
    plain = method_labels(p["optimizer"])["sgd"]
    full, wd0, nso = df["epochs"] == p["epochs"], df["weight_decay"] == p["weight_decay"], df["method"] == "nso"
    two = matches(df, hp_two_sided=True)
    parts = [
        df[(df["method"] == "sgd") & full & wd0].assign(ablation="plain", variant=plain),
        df[nso & full & wd0 & two & matches(df, hp_k=1)].assign(ablation="sides", variant="NSO two-sided, k = 1"),
        df[nso & full & wd0 & matches(df, hp_two_sided=False, hp_k=2)].assign(ablation="sides",
                                                                             variant="one-sided noise, k = 2"),
    ]
    for k in p["ks"]:
        d = df[nso & wd0 & two & matches(df, hp_k=k, hp_sigma=p["sigma"], epochs=max(1, p["epochs"] // k))]
        parts.append(d.assign(ablation="k", variant=f"NSO k = {k}"))
    wd = df["weight_decay"].isin(p["weight_decays"]) & full
    parts.append(df[wd & nso & two & matches(df, hp_k=1, hp_sigma=p["sigma"])].assign(ablation="weight decay",
                                                                                      variant="NSO"))
    parts.append(df[wd & (df["method"] == "sgd")].assign(ablation="weight decay", variant=plain))
    return pd.concat(parts, ignore_index=True)


def best_weight_decay(df: pd.DataFrame, metric: str = "val_acc") -> float:
    """The non-zero weight decay of NSO's weight-decay ablation with the best mean validation accuracy."""
    d = df[(df["ablation"] == "weight decay") & (df["method"] == "nso") & (df["weight_decay"] > 0)]
    if d.empty:
        raise ValueError("the weight-decay ablation has no NSO run with weight decay > 0")
    return float(d.groupby("weight_decay")[metric].mean().fillna(-math.inf).idxmax())
