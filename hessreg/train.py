"""One run: a :class:`Config` in, a :class:`Record` out. The one training loop every chapter uses.

The method (``hessreg.methods``) computes the update direction into ``.grad``; this loop owns the data order,
the optimizer, the learning-rate schedule, divergence detection and the record. A NaN/inf training loss ends
the run and is recorded as ``diverged`` — it never raises, so a sweep goes on.

Data parallel: when ``torch.distributed`` is initialised (torchrun), ``batch_size`` is the global batch; each of
the ``world_size`` ranks takes its ``batch_size / world_size`` share of every batch, and gradients are averaged
across ranks after the method's step — whatever the method, since every method leaves its direction in
``.grad``. (Per-rank regularizers such as SAM's ascent then use the local batch, as in Foret et al.'s m-sharpness.)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from . import activations, curvature, data, methods, models, transfer

OPTIMIZERS = ("sgd", "adam", "amsgrad")
SCHEDULES = ("constant", "cosine", "onecycle", "step")
LOSSES = ("ce",)
DEVICES = ("auto", "cpu", "cuda")
# Fields that never change what is computed, only where: left out of a run's identity (its key).
NOT_IN_KEY = ("device", "data_root")
# Fields added after records were first stored, with the value those records implicitly had: a field at this
# value is left out of the key, so adding a field never orphans stored records.
LATER_FIELDS: dict[str, Any] = {"val_size": None, "init": None, "measure": (), "checkpoint": "final"}
CHECKPOINTS = ("final", "best_val")


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
    init: str | None = None  # where the initial weights come from (``hessreg.transfer``); None: random init
    measure: tuple[str, ...] = ()  # measurements taken at initialization and after training (MEASUREMENTS)
    checkpoint: str = "final"  # the weights a run ends with: the last epoch's, or "best_val" (Paper B's protocol:
    # validation accuracy after every epoch, the best epoch's weights restored; needs val_size)

    def __post_init__(self):
        if isinstance(self.measure, list):  # YAML and JSON give lists
            object.__setattr__(self, "measure", tuple(self.measure))
        _check_types(self)
        object.__setattr__(self, "hparams", types.MappingProxyType(dict(self.hparams)))
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("loss", LOSSES),
                              ("device", DEVICES), ("checkpoint", CHECKPOINTS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid choices: {', '.join(choices)}")
        data.check_dataset(self.dataset)
        models.check_model(self.model)
        activations.check_activation(self.activation, self.beta)
        methods.check_method(self.method, self.hparams, classification=self.loss == "ce")
        for name in ("epochs", "batch_size", "step_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.checkpoint == "best_val" and not self.val_size:
            raise ValueError("checkpoint='best_val' needs a validation split: set val_size")
        if self.init is not None:
            transfer.check_init(self.init)
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


def _check_types(config: Config) -> None:
    """Type errors name the field and the expected type (papermill parameters arrive from YAML/CLI)."""
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        allowed = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)
        ok = False
        for t in allowed:
            t = typing.get_origin(t) or t
            if t is type(None):
                ok |= value is None
            elif t is float:
                ok |= isinstance(value, (int, float)) and not isinstance(value, bool)
            elif t is int:
                ok |= isinstance(value, int) and not isinstance(value, bool)
            elif t is tuple:
                ok |= isinstance(value, tuple) and all(isinstance(v, str) for v in value)
            else:
                ok |= isinstance(value, t)
        if not ok:
            raise TypeError(f"Config.{f.name} must be {hint}, got {value!r} ({type(value).__name__})")


@dataclass
class Record:
    """What a run leaves: its config, learning curves, final test metrics, divergence and provenance."""

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
    schema: int = 1

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


# --------------------------------------------------------------------------------------------------- the loop

def resolve_device(device: str) -> torch.device:
    """``auto``: CUDA if available. CUDA means the current device (under torchrun, ``cuda:LOCAL_RANK``)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but CUDA is not available; use device='auto' or 'cpu'")
    return torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device(device)


def make_optimizer(config: Config, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, config.lr, weight_decay=config.weight_decay,
                            amsgrad=config.optimizer == "amsgrad")


def lr_factor(config: Config, step: int, steps_per_epoch: int) -> float:
    """The schedule as a multiple of ``config.lr`` at optimizer step ``step`` (0-based)."""
    total = config.epochs * steps_per_epoch
    t = step / max(total, 1)
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if config.schedule == "onecycle":  # linear warm-up over the first 20%, then linear decay to 0
        return t / 0.2 if t < 0.2 else (1 - t) / 0.8
    if config.schedule == "step":
        return config.step_gamma ** ((step // steps_per_epoch) // config.step_epochs)
    return 1.0


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_reduce_mean(tensors: list[torch.Tensor], world_size: int) -> None:
    if world_size > 1:
        for t in tensors:
            torch.distributed.all_reduce(t)
            t.div_(world_size)


def _any_rank(flag: torch.Tensor, world_size: int) -> bool:
    """Whether ``flag`` is set on any rank (every rank must stop at the same step)."""
    if world_size > 1:
        flag = flag.to(torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


@torch.no_grad()
def evaluate(model: nn.Module, batches) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode (BatchNorm on running statistics)."""
    was_training = model.training
    model.eval()
    loss, correct, n = 0.0, 0, 0
    for x, y in batches:
        logits = model(x)
        loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    model.train(was_training)
    return loss / n, correct / n


def provenance(device: torch.device) -> dict:
    from .results import git_commit  # local: results imports train for Record
    return {
        "commit": git_commit(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "hostname": __import__("socket").gethostname(),
        "threads": torch.get_num_threads(),  # CPU results move by ~0.2 pt between 1 and 2 threads
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _measurement_batch(ds, n: int = 512):
    return ds.x_train[:n], ds.y_train[:n]


def _nonzero_d2(model: nn.Module, ds) -> dict:
    """Fraction of exactly non-zero σ'' over the activations' inputs on 512 training images (batch statistics,
    running statistics untouched), per layer and in total (Paper A Fig. 9)."""
    f = curvature.nonzero_second_derivative_fraction(model, _measurement_batch(ds), threshold=0.0, train_mode=True)
    return {"total": float(f.total), "per_layer": {k: float(v) for k, v in f.per_layer.items()},
            "threshold": f.threshold}


# name → fn(model, dataset) -> JSON-able value; taken at initialization and after training.
MEASUREMENTS: dict[str, Callable[[nn.Module, Any], Any]] = {"nonzero_d2": _nonzero_d2, **transfer.MEASUREMENTS}


def run(config: Config, *, check_every: int = 25, return_model: bool = False) -> Record | tuple[Record, nn.Module]:
    """Train one model as ``config`` says and return its :class:`Record` (nothing is written here), and the
    trained model too with ``return_model`` (pretraining for fine-tuning keeps it).

    Divergence is checked every ``check_every`` steps and at each epoch's end (each check synchronises).
    """
    start = time.perf_counter()
    data.check_sizes(config.dataset, train_size=config.train_size, test_size=config.test_size,  # before loading
                     val_size=config.val_size, batch_size=config.batch_size, root=config.data_root)
    device = resolve_device(config.device)
    if device.type == "cuda":  # TF32 matmuls/convolutions: what the full-scale step-time measurements used
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    rank, world = _world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the world size {world}")
    local_batch = config.batch_size // world
    ds = data.load(config.dataset, config.train_size, config.test_size, device, config.data_root, config.val_size)
    torch.manual_seed(config.seed)
    model = models.build_model(config.model, ds.num_classes, ds.in_channels, ds.image_size,
                               config.activation, config.beta).to(device)
    if config.init is not None:
        transfer.initialize(model, config.init, device)
    metrics = [{"when": "init", "name": m, "value": MEASUREMENTS[m](model, ds)} for m in config.measure]
    method = methods.get_method(config.method)
    hp = method.resolve(dict(config.hparams))
    params = methods.trainable(model)
    opt = make_optimizer(config, params)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    steps_per_epoch = ds.num_train // config.batch_size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(config, s, steps_per_epoch))
    loss_fn = F.cross_entropy

    history, diverged_at, step = [], None, 0
    best_val, best_state, selected_epoch = -1.0, None, None
    model.train()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        sums = torch.zeros(6, device=device)  # loss·n, correct, n, Σ penalty, steps with a penalty, Σ penalty²
        bad = torch.zeros((), dtype=torch.bool, device=device)
        for i, (x, y) in enumerate(ds.train_batches(local_batch, gen, config.augment, rank, world)):
            opt.zero_grad(set_to_none=True)
            try:
                out = method.step(model, x, y, loss_fn, **hp)
            except RuntimeError:  # a step that fails on non-finite weights is a divergence, anything else a bug
                if all(bool(torch.isfinite(p).all()) for p in params):
                    raise
                diverged_at = {"epoch": epoch, "step": step}
                break
            _all_reduce_mean([p.grad for p in params if p.grad is not None], world)
            bad |= ~torch.isfinite(out.loss)
            if (i + 1) % check_every == 0 and _any_rank(bad, world):
                diverged_at = {"epoch": epoch, "step": step}
                break
            opt.step()
            sched.step()
            step += 1
            sums[0] += out.loss * len(y)
            sums[1] += (out.logits.argmax(1) == y).sum()
            sums[2] += len(y)
            if out.penalty is not None:  # the method's own regularizer estimate (‖∇L‖, tr H, tr G)
                sums[3] += out.penalty.float()
                sums[4] += 1
                sums[5] += out.penalty.float().square()
        _all_reduce_mean([sums], world)
        if diverged_at is None and _any_rank(bad, world):
            diverged_at = {"epoch": epoch, "step": step}
        if diverged_at is not None:
            break
        loss_n, correct, n, penalty, n_penalty, penalty_sq = sums.tolist()
        mean = penalty / n_penalty if n_penalty else None
        history.append({"epoch": epoch, "train_loss": loss_n / n, "train_acc": correct / n,
                        "lr": opt.param_groups[0]["lr"], "time_s": time.perf_counter() - t0, "penalty": mean,
                        # spread of the per-step estimates: the epoch mean's standard error is sd/√steps
                        "penalty_sd": math.sqrt(max(penalty_sq / n_penalty - mean ** 2, 0.0)) if n_penalty else None,
                        "penalty_steps": int(n_penalty)})
        if config.checkpoint == "best_val":
            history[-1]["val_loss"], history[-1]["val_acc"] = evaluate(model, ds.val_batches())
            if history[-1]["val_acc"] > best_val:  # the first of equally good epochs is kept
                best_val, selected_epoch = history[-1]["val_acc"], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    test_loss, test_acc = evaluate(model, ds.test_batches())
    val_loss, val_acc = evaluate(model, ds.val_batches()) if config.val_size else (None, None)
    # a diverged model's weights are not finite: nothing to measure (the curvature toolkit rejects them)
    metrics += [{"when": "final", "name": m, "value": None if diverged_at else MEASUREMENTS[m](model, ds)}
                for m in config.measure]
    record = Record(key=config.key, config=config.to_dict(), history=history, test_loss=test_loss,
                    test_acc=test_acc, diverged=diverged_at is not None, diverged_at=diverged_at,
                    wall_time_s=time.perf_counter() - start, provenance=provenance(device), metrics=metrics,
                    val_loss=val_loss, val_acc=val_acc, selected_epoch=selected_epoch)
    return (record, model) if return_model else record
