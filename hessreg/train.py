"""One run: a :class:`~hessreg.config.Config` in, a :class:`~hessreg.config.Record` out. The one training loop
every chapter uses.

The method (``hessreg.methods``) computes the update direction into ``.grad``; this loop owns the initial
weights (``Config.init``: loaded here, a ``pretrain:`` model trained here by this same loop, once, and cached), the
data order, the optimizer, the learning-rate schedule, divergence detection, the measurements
(``hessreg.estimators.MEASUREMENTS``) and the record. A NaN/inf training loss ends the run and is recorded as
``diverged`` — it never raises, so a sweep goes on.

Data parallel: when ``torch.distributed`` is initialised (torchrun), ``batch_size`` is the global batch; each of
the ``world_size`` ranks takes its ``batch_size / world_size`` share of every batch, and gradients are averaged
across ranks after the method's step — whatever the method, since every method leaves its direction in
``.grad``. (Per-rank regularizers such as SAM's ascent then use the local batch, as in Foret et al.'s m-sharpness.)
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from . import allocator, data, distributed, methods, models, sizes
from .provenance import provenance, sha256
from .config import Config, Record, pretrain_config
from .estimators import MEASUREMENTS
from .repo import build_dir, root, write_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock (one process pretrains at a time)
    fcntl = None

log = logging.getLogger(__name__)

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


# ------------------------------------------------------------------------------------------ initial weights

def initialize(model: nn.Module, spec: str, device) -> str | None:
    """Load the initial weights ``Config.init`` names into every layer but the head (:func:`models.load_backbone`);
    return the SHA-256 of the weights file of a ``pretrain:`` spec (None for torchvision's ImageNet weights)."""
    kind, _, name = spec.partition(":")
    if kind == "imagenet":
        models.load_backbone(model, models.load_pretrained_state(name))
        return None
    state, digest = pretrained(spec, device)  # "pretrain", checked by Config
    models.load_backbone(model, state)
    return digest


def committed_weights_dir() -> Path:
    """``<root>/results/weights``: the backbones the committed fine-tuning records start from, one ``<key>.pt`` per
    pretraining config with its training record ``<key>.json`` (which names the file's SHA-256)."""
    return root() / "results" / "weights"


def weights_dir() -> Path:
    """Where backbones that are not committed are cached: ``$HESSREG_WEIGHTS``, else ``$HESSREG_STORE/weights``,
    else ``_build/weights`` (never committed)."""
    if os.environ.get("HESSREG_WEIGHTS"):
        return Path(os.environ["HESSREG_WEIGHTS"])
    if os.environ.get("HESSREG_STORE"):
        return Path(os.environ["HESSREG_STORE"]) / "weights"
    return build_dir("weights")


class BackboneError(RuntimeError):
    """A committed backbone whose bytes are not the ones its record names."""


def pretrained(spec: str, device="auto") -> tuple[dict, str]:
    """The state dict of the ``pretrain:`` spec's model and its file's SHA-256.

    Looked for in :func:`committed_weights_dir` first (its SHA-256 checked against its record: a committed
    backbone is evidence, so a mismatch is an error, never a retraining). Otherwise trained by :func:`run`, once,
    and cached in :func:`weights_dir` with its record beside it (written atomically, under a file lock so that
    parallel sweep processes pretrain once) — logged, since runs from a backbone trained here round like this
    machine, not like the committed records (``experiments/pretrain.py`` commits one)."""
    dev = torch.device(device) if not isinstance(device, str) or device != "auto" else None
    config = pretrain_config(spec, "auto" if dev is None else dev.type)
    committed = committed_weights_dir() / f"{config.key}.pt"
    if committed.exists():
        digest, named = sha256(committed), json.loads(committed.with_suffix(".json").read_text())["weights_sha256"]
        if digest != named:
            raise BackboneError(f"{committed}: SHA-256 {digest} but its record names {named}; restore it with "
                                f"`git checkout -- {committed}`")
        return torch.load(committed, map_location="cpu", weights_only=True), digest
    path = weights_dir() / f"{config.key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not path.exists():
            log.warning("pretraining %s here (no committed backbone %s): runs fine-tuned from it round like this "
                        "machine", spec, committed)
            with torch.random.fork_rng():  # the fine-tuning run that triggered this keeps its random stream
                record, model = run(config, return_model=True)
            if record.diverged:
                raise RuntimeError(f"pretraining {spec!r} diverged at {record.diverged_at}")
            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, buffer)
            write_atomic(path, buffer.getvalue())
            write_atomic(path.with_suffix(".json"), json.dumps(record.to_dict() | {"weights_sha256": sha256(path)},
                                                               indent=1, sort_keys=True))
    return torch.load(path, map_location="cpu", weights_only=True), sha256(path)


def pretrain_record(spec: str) -> dict | None:
    """The record (as a dict) of a pretraining run, committed or cached here; None if it has not run here."""
    key = pretrain_config(spec).key
    for folder in (committed_weights_dir(), weights_dir()):
        if (folder / f"{key}.json").exists():
            return json.loads((folder / f"{key}.json").read_text())
    return None


# -------------------------------------------------------------------------------------------------- one run

def run(config: Config, *, check_every: int = 25, return_model: bool = False) -> Record | tuple[Record, nn.Module]:
    """Train one model as ``config`` says and return its :class:`Record` (nothing is written here), and the
    trained model too with ``return_model`` (pretraining for fine-tuning keeps it).

    Divergence is checked every ``check_every`` steps and at each epoch's end (each check synchronises).
    """
    start = time.perf_counter()
    sizes.check_sizes(config.dataset, train_size=config.train_size, test_size=config.test_size,  # before loading
                     val_size=config.val_size, batch_size=config.batch_size, root=config.data_root)
    device = models.resolve_device(config.device)
    if device.type == "cpu":  # fewer page faults per step, same numbers (hessreg.allocator)
        allocator.retain_freed_memory()
    if device.type == "cuda":  # TF32 matmuls/convolutions: what the full-scale step-time measurements used
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    rank, world = distributed.rank_and_world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the world size {world}")
    local_batch = config.batch_size // world
    ds = data.load(config.dataset, config.train_size, config.test_size, device, config.data_root, config.val_size)
    if config.label_noise:  # a new dataset object: the loaded one is cached and shared
        ds = dataclasses.replace(ds, y_train=data.symmetric_label_noise(ds.y_train, config.label_noise,
                                                                        ds.num_classes, config.seed))
    torch.manual_seed(config.seed)
    model = models.build_model(config.model, ds.num_classes, ds.in_channels, ds.image_size,
                               config.activation, config.beta).to(device)
    if config.memory_format == "channels_last":  # convolutions given channels_last weights return channels_last
        model = model.to(memory_format=torch.channels_last)
    init_sha256 = initialize(model, config.init, device) if config.init is not None else None
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
                    wall_time_s=time.perf_counter() - start, metrics=metrics,
                    provenance=provenance(device, **({"init_sha256": init_sha256} if init_sha256 else {})),
                    val_loss=val_loss, val_acc=val_acc, selected_epoch=selected_epoch)
    return (record, model) if return_model else record
