"""What a run is and what it leaves: :class:`Config` (validated when built, hashed into the run's key) and
:class:`Record`. The record store (``hessreg.results``) and the grids depend on these types, not on the training
loop (``hessreg.train``).

A config's initial weights (``Config.init``) are named by a spec, checked here and loaded by the training loop:

- ``pretrain:<field>=<value>,…`` — a model pretrained by this package's own training loop with the given
  :class:`Config` fields over :data:`PRETRAIN_DEFAULTS` (Fashion-MNIST, SGD); build specs with
  :func:`pretrain_spec`, read them back with :func:`pretrain_config`;
- ``imagenet:<resnet18|resnet34|resnet50>`` — torchvision's ImageNet weights from the local torch cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from . import activations, data, methods, models
from .estimators import MEASUREMENTS
from .typecheck import conforms

OPTIMIZERS = ("sgd", "adam", "amsgrad")
SCHEDULES = ("constant", "cosine", "onecycle", "step")
LOSSES = ("ce",)
CHECKPOINTS = ("final", "best_val")
MEMORY_FORMATS = ("nchw", "channels_last")
INITS = ("imagenet", "pretrain")
# Fields that never change what is computed, only where: left out of a run's identity (its key).
NOT_IN_KEY = ("device", "data_root")
# Fields added after records were first stored, with the value those records implicitly had: a field at this
# value is left out of the key, so adding a field never orphans stored records. Every entry is relied on by
# committed records (hundreds of them have each field at this value): dropping one would move their keys.
LATER_FIELDS: dict[str, Any] = {"val_size": None, "init": None, "measure": (), "checkpoint": "final",
                                "label_noise": 0.0, "memory_format": "nchw"}


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. Validated on construction: a bad value raises before any training."""

    dataset: str = "fashion_mnist"
    train_size: int | None = None  # None: the whole training set; else a fixed random subset
    test_size: int | None = None
    val_size: int | None = None  # held out of the training pool (fixed), evaluated at the end of the run
    model: str = "wrn-16-4"
    activation: str = "relu"
    beta: float = 1.0  # sharpness of beta_gelu / relu_synthetic_nme; ignored by other activations
    method: str = "sgd"
    hparams: Mapping[str, Any] = field(default_factory=dict)  # the method's hyperparameters
    loss: str = "ce"
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_epochs: int = 10  # schedule "step": multiply by step_gamma every step_epochs epochs
    step_gamma: float = 0.1
    epochs: int = 20
    batch_size: int = 128
    augment: bool = True  # random flip and pad-crop
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    init: str | None = None  # where the initial weights come from (module docstring); None: random init
    measure: tuple[str, ...] = ()  # measurements taken at initialization and after training (MEASUREMENTS)
    checkpoint: str = "final"  # the weights a run ends with: the last epoch's, or "best_val" (Paper B's protocol:
    # validation accuracy after every epoch, the best epoch's weights restored; needs val_size)
    label_noise: float = 0.0  # fraction of training labels replaced by a wrong class, drawn per seed (symmetric
    # noise, data.symmetric_label_noise); validation and test labels stay clean
    memory_format: str = "nchw"  # a convnet's 4-D weights, and so its activations: NCHW or channels_last. The same
    # maths in another float rounding (so part of the key); on the CPU channels_last convnet steps are 1.1–1.3x
    # faster alone, the Hessian-trace penalty's not (results/bench/methods_cpu_cnn-16-32-128-bn_b128.json), and
    # whole runs a few percent (results/bench/layout_noisy_cnn_variants.json)

    def __post_init__(self):
        if isinstance(self.measure, list):  # YAML and JSON give lists
            object.__setattr__(self, "measure", tuple(self.measure))
        hints = typing.get_type_hints(Config)
        for f in dataclasses.fields(self):  # papermill parameters arrive from YAML/CLI: name the field and type
            value = getattr(self, f.name)
            if not conforms(value, hints[f.name]):
                raise TypeError(f"Config.{f.name} must be {hints[f.name]}, got {value!r} ({type(value).__name__})")
        object.__setattr__(self, "hparams", types.MappingProxyType(dict(self.hparams)))
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("loss", LOSSES),
                              ("device", models.DEVICES), ("checkpoint", CHECKPOINTS),
                              ("memory_format", MEMORY_FORMATS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid choices: {', '.join(choices)}")
        data.check_dataset(self.dataset)
        models.check_model(self.model)
        activations.check_activation(self.activation, self.beta)
        methods.check_method(self.method, self.hparams, classification=self.loss == "ce")
        for name in ("epochs", "batch_size", "step_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.label_noise and self.dataset in data.FOLDER_DATASETS:
            raise ValueError(f"label_noise needs an in-memory dataset, not {self.dataset}")
        if self.checkpoint == "best_val" and not self.val_size:
            raise ValueError("checkpoint='best_val' needs a validation split: set val_size")
        if self.init is not None:
            check_init(self.init)
        unknown = [m for m in self.measure if m not in MEASUREMENTS]
        if unknown:
            raise ValueError(f"unknown measurement(s) {unknown}; valid choices: {', '.join(MEASUREMENTS)}")
        for name in ("train_size", "test_size", "val_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1 or None, got {getattr(self, name)}")
        if self.train_size is not None and self.train_size < self.batch_size:
            raise ValueError(f"train_size {self.train_size} < batch_size {self.batch_size}: no full batch")
        # inf and NaN slip through comparisons like `lr > 0` (lr=inf trained, to be recorded as diverged at step 0;
        # weight_decay=nan too): every number is checked finite first
        for name, rule, ok in (("lr", " with lr > 0", lambda v: v > 0),
                               ("weight_decay", " with weight_decay ≥ 0", lambda v: v >= 0),
                               ("momentum", " with 0 ≤ momentum < 1", lambda v: 0 <= v < 1),
                               ("step_gamma", " with 0 < step_gamma ≤ 1", lambda v: 0 < v <= 1),
                               ("label_noise", " with 0 ≤ label_noise < 1", lambda v: 0 <= v < 1),
                               ("beta", "", lambda v: True)):
            value = getattr(self, name)
            if not (math.isfinite(value) and ok(value)):
                raise ValueError(f"{name} must be a finite number{rule}, got {value!r}")
        if not -2 ** 63 <= self.seed < 2 ** 64:  # torch.manual_seed's range
            raise ValueError(f"seed must be in [-2**63, 2**64), got {self.seed}")

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def canonical(self) -> dict:
        """The run's identity: fields that matter for this run, hyperparameters with defaults filled in."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in NOT_IN_KEY}
        d["hparams"] = methods.check_method(self.method, self.hparams, classification=self.loss == "ce")
        if not activations.uses_beta(self.activation):
            del d["beta"]
        if self.optimizer != "sgd":
            del d["momentum"]
        if self.schedule != "step":
            del d["step_epochs"], d["step_gamma"]
        for name, value in LATER_FIELDS.items():
            if d.get(name) == value:
                del d[name]
        return d

    @property
    def key(self) -> str:
        """A stable hash of :meth:`canonical` (16 hex digits): the record's file name."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        """Every field, hyperparameters with defaults filled in (``Config.from_dict`` inverts it)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["hparams"] = methods.check_method(self.method, self.hparams, classification=self.loss == "ce")
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ------------------------------------------------------------------------------------------ initial weights

PRETRAIN_DEFAULTS = dict(dataset="fashion_mnist", model="wrn-10-2", activation="relu", optimizer="sgd", lr=0.05,
                         momentum=0.9, weight_decay=5e-4, schedule="cosine", epochs=10, batch_size=128,
                         augment=True, seed=0, train_size=None)
_NOT_PRETRAIN = ("init", "measure", "val_size", "device", "data_root", "hparams", "method")


def check_init(spec: str) -> None:
    """Validate an initial-weights spec (see the module docstring) before any training."""
    kind, _, name = spec.partition(":")
    if kind == "pretrain":
        pretrain_config(spec)
    elif kind == "imagenet":
        if name not in models.PRETRAINED:
            raise ValueError(f"init {spec!r}: expected imagenet:<{'|'.join(models.PRETRAINED)}>")
    else:
        raise ValueError(f"unknown init {spec!r}; valid kinds: {', '.join(INITS)}")


def pretrain_spec(**fields) -> str:
    """The ``Config.init`` spec of a pretraining run: ``pretrain:`` and the given fields, sorted by name; the
    others take :data:`PRETRAIN_DEFAULTS`. The weights cache is keyed by the pretraining config, so specs that
    spell out a default or leave it implicit share one pretraining."""
    bad = [k for k in fields if k in _NOT_PRETRAIN]
    if bad:
        raise ValueError(f"pretraining fields {bad} cannot be set (plain method, no init, no measurements)")
    return "pretrain:" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(fields.items()))


def pretrain_config(spec: str, device: str = "auto") -> Config:
    """The :class:`Config` of a ``pretrain:`` spec (validated)."""
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


# ------------------------------------------------------------------------------------------------- records

@dataclass
class Record:
    """What a run leaves: its config, learning curves, final test metrics, divergence and provenance. Records
    on disk may carry fields this class no longer has (``schema``): :meth:`from_dict` ignores them."""

    key: str
    config: dict
    history: list[dict]  # per completed epoch: epoch, train_loss, train_acc, lr, time_s, penalty (mean
    # of the method's regularizer estimate over the epoch's steps, None for methods without one), penalty_sd
    # (their standard deviation) and penalty_steps (their number)
    test_loss: float | None
    test_acc: float | None
    diverged: bool
    wall_time_s: float
    provenance: dict
    diverged_at: dict | None = None  # {"epoch", "step"} of the first non-finite loss
    selected_epoch: int | None = None  # checkpoint "best_val": the epoch whose weights the run ended with
    metrics: list[dict] = field(default_factory=list)  # {"when", "name", "value"}: Config.measure's results
    val_loss: float | None = None  # on the held-out validation split (Config.val_size), after training
    val_acc: float | None = None

    def to_dict(self) -> dict:
        return _finite_or_none(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> "Record":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _finite_or_none(obj):
    """NaN/inf → None so records are strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj
