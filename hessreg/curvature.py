"""Curvature of a loss as products: Hessian, Gauss-Newton and NME times a vector (the estimates built from
them — traces, eigenpairs, σ'' counts, flatness — are in :mod:`hessreg.estimators`).

Notation (Paper A): logits z = f(θ, x) ∈ ℝ^{B×C}, batch-mean loss L(z, y), J = ∂z/∂θ, H_z = ∂²L/∂z². Then

    H = ∇²_θ L = Jᵀ H_z J + Σ_i (∂L/∂z_i) ∇²_θ z_i = G + N      (Gauss-Newton + Nonlinear Modeling Error).

Conventions used by every function here and in :mod:`hessreg.estimators`:

- **Vectors** are dicts name → tensor with the names and shapes of ``model.named_parameters()``, restricted to the
  chosen subset (``params``: ``None`` for every trainable parameter, or a list of name prefixes and/or modules).
  :func:`select_params` returns that dict (detached values), e.g. to build ``{n: torch.randn_like(t)}``.
- **Losses** ``'ce'``: L = (1/B) Σ_b −log softmax(z_b)[y_b], H_z = (1/B) blockdiag(diag p_b − p_b p_bᵀ);
  ``'mse'``: L = (1/B) Σ_b ½‖z_b − y_b‖², H_z = (1/B) I. Only these two split into G and N; Hv also takes any
  callable ``loss(z, y)``.
- **Data** is one batch ``(x, y)`` or an iterable of batches; products, traces and eigenpairs are of the
  batch-size-weighted mean Σ_b (B_b/N) A_b (the mean-loss curvature over all samples in eval mode).
- **BatchNorm**: ``train_mode=True`` normalises with batch statistics, ``False`` with running statistics. The
  running statistics never change (:func:`~hessreg.models.frozen_stats`) and each module's mode is restored.
- **HVP method**: ``'fwd'`` forward-over-reverse (``jvp`` of ``grad``), ``'rev'`` double backward (PyHessian).
- **Randomness**: an optional ``torch.Generator`` on the parameters' device makes probes and labels reproducible.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap
from torch.nn import functional as F

from .models import frozen_stats

Vector = dict[str, Tensor]
Batch = tuple[Tensor, Tensor]
LossArg = str | Callable[[Tensor, Tensor], Tensor]
SPLIT_LOSSES = ("ce", "mse")
CURVATURES = ("H", "G", "N")
HVP_METHODS = ("fwd", "rev")

# ------------------------------------------------------------------------------------------- inputs and checks


def select_params(model: nn.Module, params: Sequence[str | nn.Module] | None = None) -> Vector:
    """The trainable parameters named by ``params`` (prefixes of ``named_parameters`` names, or modules), detached."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    items = [params] if isinstance(params, (str, nn.Module)) else list(params or [])
    if any(not isinstance(s, (str, nn.Module)) for s in items):
        raise TypeError("params must be None or a list of parameter-name prefixes and/or nn.Module objects")
    ids = {id(p) for s in items if isinstance(s, nn.Module) for p in s.parameters()}
    chosen = named if params is None else [(n, p) for n, p in named if id(p) in ids or any(
        n == q or n.startswith(q + ".") for q in items if isinstance(q, str))]
    if not chosen:
        valid = ", ".join(n for n, _ in named[:8]) + (", …" if len(named) > 8 else "")
        raise ValueError(f"empty parameter subset: {params!r} selects no trainable parameter (names: {valid})")
    return {n: p.detach() for n, p in chosen}


def _check_vector(v: Mapping[str, Tensor], theta: Vector, batched: bool = False) -> Vector:
    """``v`` in the layout of ``theta`` (same names and shapes, after a leading probe dimension if batched)."""
    if not isinstance(v, Mapping):
        raise TypeError(f"a vector must be a dict name → tensor like select_params(...), got {type(v).__name__}")
    if set(v) != set(theta):
        raise ValueError(f"vector names do not match the parameters: missing {sorted(set(theta) - set(v))}, "
                         f"unexpected {sorted(set(v) - set(theta))}")
    out = {}
    for n, t in theta.items():
        shape = tuple(v[n].shape[1:] if batched else v[n].shape)
        if shape != tuple(t.shape):
            raise ValueError(f"vector entry {n!r} has shape {tuple(v[n].shape)}, parameter has {tuple(t.shape)}")
        if not torch.isfinite(v[n]).all():
            raise ValueError(f"vector entry {n!r} has non-finite values")
        out[n] = v[n].to(dtype=t.dtype, device=t.device)
    return out


def _batches(data: Batch | Iterable[Batch]) -> list[Batch]:
    """One batch (x, y) or an iterable of them, as a list; rejects empty data and non-finite inputs."""
    is_one = isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)
    batches = [tuple(data)] if is_one else [tuple(b) for b in data]
    if not batches:
        raise ValueError("data has no batches")
    for x, y in batches:
        for name, t in (("inputs", x), ("targets", y)):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError(f"non-finite values in the batch {name}")
    return batches


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {', '.join(choices)}")


def _setup(model: nn.Module, data, params, kind: str, loss: LossArg, method: str,
           need_data: bool = True) -> tuple[Vector, list[Batch]]:
    """Validated choices, the parameter subset θ (finite) and the batches: one clear error per bad input."""
    _check_choice(kind, CURVATURES, "curvature")
    _check_choice(method, HVP_METHODS, "HVP method")
    if kind != "H" or not callable(loss):
        _check_split(loss)
    theta = select_params(model, params)
    bad = [n for n, t in theta.items() if not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"non-finite values in the parameters {bad}")
    return theta, _batches(data) if need_data else []


def _check_split(loss: LossArg) -> str:
    if not (isinstance(loss, str) and loss in SPLIT_LOSSES):
        raise ValueError(f"cannot split the loss {loss!r} into Gauss-Newton and NME: only 'ce' and 'mse' have a "
                         "closed-form output Hessian H_z here")
    return loss


# -------------------------------------------------------------------------------------------- loss in closed form

def half_mse(z: Tensor, y: Tensor) -> Tensor:
    """L = (1/B) Σ_b ½‖z_b − y_b‖²."""
    return 0.5 * (z - y).pow(2).sum() / z.shape[0]


def loss_function(loss: LossArg) -> Callable[[Tensor, Tensor], Tensor]:
    if callable(loss):
        return loss
    _check_split(loss)
    return F.cross_entropy if loss == "ce" else half_mse


def _grad_z(z: Tensor, y: Tensor, loss: str) -> Tensor:
    """∇_z L: (p − onehot(y))/B for 'ce', (z − y)/B for 'mse'."""
    if loss == "ce":
        return (torch.softmax(z, -1) - F.one_hot(y, z.shape[-1]).to(z.dtype)) / z.shape[0]
    return (z - y) / z.shape[0]


def _hz(z: Tensor, u: Tensor, loss: str) -> Tensor:
    """H_z u: (p ⊙ u − p (pᵀu))/B per sample for 'ce', u/B for 'mse'."""
    if loss == "ce":
        p = torch.softmax(z, -1)
        return (p * u - p * (p * u).sum(-1, keepdim=True)) / z.shape[0]
    return u / z.shape[0]


# ----------------------------------------------------------------------------------------------- the products

@contextlib.contextmanager
def measuring(model: nn.Module, train_mode: bool) -> Iterator[nn.Module]:
    """BatchNorm in train (batch stats) or eval (running stats) mode, running stats frozen, modes restored."""
    modes = {m: m.training for m in model.modules()}
    try:
        with frozen_stats(model.train(train_mode)):
            yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


def _model_fn(model: nn.Module, theta: Vector) -> Callable[[Vector, Tensor], Tensor]:
    """z = f(θ, x) as a pure function of the chosen parameters; the others and the buffers are constants."""
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in theta}
    fixed.update(dict(model.named_buffers()))
    return lambda p, x: functional_call(model, {**fixed, **p}, (x,))


def _hvp(scalar: Callable[[Vector], Tensor], theta: Vector, v: Vector, method: str, batched: bool) -> Vector:
    """∇²s(θ) v: forward-over-reverse (jvp of grad, vmapped over probes) or double backward."""
    if method == "fwd":
        one = lambda u: jvp(grad(scalar), (theta,), (u,))[1]  # noqa: E731
        return vmap(one)(v) if batched else one(v)
    with torch.enable_grad():
        leaves = {n: t.detach().requires_grad_() for n, t in theta.items()}
        g = torch.autograd.grad(scalar(leaves), list(leaves.values()), create_graph=True, materialize_grads=True)
        pairs = [(gi, v[n]) for gi, n in zip(g, leaves) if gi.requires_grad]  # a constant ∂s/∂θ_n: Hv part is 0
        if not pairs:
            return {n: torch.zeros_like(t) for n, t in v.items()}
        hv = torch.autograd.grad([a for a, _ in pairs], list(leaves.values()), [b for _, b in pairs],
                                 allow_unused=True, is_grads_batched=batched)
    return {n: torch.zeros_like(v[n]) if h is None else h for n, h in zip(leaves, hv)}


def _product(kind: str, f: Callable, theta: Vector, x: Tensor, y: Tensor, v: Vector, loss: LossArg,
             method: str, batched: bool) -> Vector:
    """A_b v for one batch, A ∈ {H, G, N}."""
    if kind == "H":
        lf = loss_function(loss)
        return _hvp(lambda p: lf(f(p, x), y), theta, v, method, batched)
    if kind == "N":  # N v = ∇²_θ ⟨stop_grad(∇_z L), z(θ)⟩ v
        with torch.no_grad():
            c = _grad_z(f(theta, x), y, loss)
        return _hvp(lambda p: (c * f(p, x)).sum(), theta, v, method, batched)
    z, pullback = vjp(lambda p: f(p, x), theta)  # G v = Jᵀ (H_z (J v))
    z = z.detach()

    def one(u: Vector) -> Vector:
        return pullback(_hz(z, jvp(lambda p: f(p, x), (theta,), (u,))[1], loss))[0]
    return vmap(one)(v) if batched else one(v)


def _quadratic(kind: str, f: Callable, theta: Vector, x: Tensor, y: Tensor, v: Vector, loss: LossArg,
               method: str) -> Tensor:
    """vᵀA_b v for a batch of probes v (leading dimension); for G only a JVP: (Jv)ᵀ H_z (Jv)."""
    if kind == "G":
        with torch.no_grad():
            z = f(theta, x)
        u = vmap(lambda w: jvp(lambda p: f(p, x), (theta,), (w,))[1])(v)
        return (u * _hz(z, u, loss)).flatten(1).sum(1)
    av = _product(kind, f, theta, x, y, v, loss, method, batched=True)
    return sum((av[n] * v[n]).flatten(1).sum(1) for n in v)


def _weighted(batches: list[Batch], per_batch: Callable[[Tensor, Tensor], Vector | Tensor]) -> Vector | Tensor:
    """Σ_b (B_b/N) r_b for r_b = per_batch(x_b, y_b), dicts added entrywise."""
    total = sum(len(x) for x, _ in batches)
    acc = None
    for x, y in batches:
        r, w = per_batch(x, y), len(x) / total
        if isinstance(r, dict):
            acc = {n: w * t if acc is None else acc[n] + w * t for n, t in r.items()}
        else:
            acc = w * r if acc is None else acc + w * r
    return acc


def matvec(kind: str, model: nn.Module, data: Batch | Iterable[Batch], v: Mapping[str, Tensor], *,
           loss: LossArg = "ce", params: Sequence[str | nn.Module] | None = None, train_mode: bool = False,
           method: str = "fwd", batched: bool = False) -> Vector:
    """A v for A = ``kind`` ∈ {'H', 'G', 'N'}; ``batched``: v has a leading dimension of k vectors (vmapped).

    ``method`` chooses how H v and N v are differentiated; G v is always a JVP, H_z, then a VJP.
    """
    theta, batches = _setup(model, data, params, kind, loss, method)
    v = _check_vector(v, theta, batched)
    with measuring(model, train_mode):
        f = _model_fn(model, theta)
        return _weighted(batches, lambda x, y: _product(kind, f, theta, x, y, v, loss, method, batched))


def hvp_function(model: nn.Module, *, loss: LossArg = "ce", params: Sequence[str | nn.Module] | None = None,
                 train_mode: bool = False, method: str = "fwd") -> Callable[[Tensor, Tensor, Vector], Vector]:
    """(x, y, v) ↦ H v on one batch, without input checks or host-device syncs (training loops, CUDA graphs).

    θ is read live from the model's parameters (shared storage), so optimizer steps are seen.
    """
    theta, _ = _setup(model, [], params, "H", loss, method, need_data=False)

    def hv(x: Tensor, y: Tensor, v: Vector) -> Vector:
        with measuring(model, train_mode):
            return _product("H", _model_fn(model, theta), theta, x, y, v, loss, method, batched=False)
    return hv


def jvp_forward_mode(model: nn.Module, x: Tensor, v: Mapping[str, Tensor]) -> Tensor:
    """J v at the current weights (v over the parameters it names) by forward-mode AD through the model's own
    modules, native kernels and BatchNorm included: one forward pass carrying tangents, running stats frozen (in
    train mode BatchNorm uses this batch's statistics). No input checks: for training steps."""
    params = dict(model.named_parameters())
    with torch.no_grad(), fwAD.dual_level(), frozen_stats(model):
        duals = {n: fwAD.make_dual(params[n].detach(), t) for n, t in v.items()}
        return fwAD.unpack_dual(functional_call(model, duals, (x,))).tangent


def hvp(model: nn.Module, data, v: Mapping[str, Tensor], **kw) -> Vector:
    """H v = ∇²_θ L v (``method`` 'fwd': jvp of grad; 'rev': double backward)."""
    return matvec("H", model, data, v, **kw)


def gvp(model: nn.Module, data, v: Mapping[str, Tensor], **kw) -> Vector:
    """G v = Jᵀ H_z J v: J v by a JVP, H_z in closed form, Jᵀ(·) by a VJP."""
    return matvec("G", model, data, v, **kw)


def nvp(model: nn.Module, data, v: Mapping[str, Tensor], **kw) -> Vector:
    """N v = Σ_i (∂L/∂z_i) ∇²_θ z_i v, the HVP of ⟨stop_grad(∇_z L), z(θ)⟩ (equals H v − G v)."""
    return matvec("N", model, data, v, **kw)


# ------------------------------------------------------------------------------------------- flat vectors

def flatten(v: Vector) -> Tensor:
    """A vector dict as one flat tensor, in parameter order."""
    return torch.cat([t.reshape(-1) for t in v.values()])


def flatten_batched(v: Vector) -> Tensor:
    """k stacked vectors (leading dimension) as a k × P matrix."""
    return torch.cat([t.flatten(1) for t in v.values()], 1)


def unflatten(x: Tensor, like: Vector) -> Vector:
    """The inverse of :func:`flatten`: views of ``x`` shaped like ``like``."""
    out, i = {}, 0
    for n, t in like.items():
        out[n] = x[i:i + t.numel()].view_as(t)
        i += t.numel()
    return out
