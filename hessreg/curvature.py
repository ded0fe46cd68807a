"""Curvature of a loss: Hessian, Gauss-Newton and NME products, Hutchinson traces, top eigenpairs, σ'' counts.

Notation (Paper A): logits z = f(θ, x) ∈ ℝ^{B×C}, batch-mean loss L(z, y), J = ∂z/∂θ, H_z = ∂²L/∂z². Then

    H = ∇²_θ L = Jᵀ H_z J + Σ_i (∂L/∂z_i) ∇²_θ z_i = G + N      (Gauss-Newton + Nonlinear Modeling Error).

Conventions used by every function here:

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
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap
from torch.nn import functional as F

from . import activations
from .models import frozen_stats

Vector = dict[str, Tensor]
Batch = tuple[Tensor, Tensor]
LossArg = str | Callable[[Tensor, Tensor], Tensor]
SPLIT_LOSSES = ("ce", "mse")
CURVATURES = ("H", "G", "N")
HVP_METHODS = ("fwd", "rev")
DISTRIBUTIONS = ("rademacher", "gaussian")

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


def hvp(model: nn.Module, data, v: Mapping[str, Tensor], **kw) -> Vector:
    """H v = ∇²_θ L v (``method`` 'fwd': jvp of grad; 'rev': double backward)."""
    return matvec("H", model, data, v, **kw)


def gvp(model: nn.Module, data, v: Mapping[str, Tensor], **kw) -> Vector:
    """G v = Jᵀ H_z J v: J v by a JVP, H_z in closed form, Jᵀ(·) by a VJP."""
    return matvec("G", model, data, v, **kw)


def nvp(model: nn.Module, data, v: Mapping[str, Tensor], **kw) -> Vector:
    """N v = Σ_i (∂L/∂z_i) ∇²_θ z_i v, the HVP of ⟨stop_grad(∇_z L), z(θ)⟩ (equals H v − G v)."""
    return matvec("N", model, data, v, **kw)


# --------------------------------------------------------------------------------------------------- traces

@dataclass
class TraceEstimate:
    """Monte-Carlo trace: the mean of ``samples``, its standard error, and the number of samples used."""
    trace: float
    std_err: float
    n_samples: int
    samples: Tensor


def _estimate(samples: Tensor) -> TraceEstimate:
    n = samples.numel()
    se = samples.std().item() / math.sqrt(n) if n > 1 else math.nan
    return TraceEstimate(samples.mean().item(), se, n, samples)


def probes(theta: Vector, k: int, distribution: str = "rademacher",
           generator: torch.Generator | None = None) -> Vector:
    """k probe vectors (leading dimension) with E[v vᵀ] = I: Rademacher ±1 or standard Gaussian entries."""
    _check_choice(distribution, DISTRIBUTIONS, "probe distribution")
    if distribution == "gaussian":
        return {n: torch.randn((k, *t.shape), generator=generator, dtype=t.dtype, device=t.device)
                for n, t in theta.items()}
    return {n: torch.randint(0, 2, (k, *t.shape), generator=generator, device=t.device).to(t.dtype) * 2 - 1
            for n, t in theta.items()}


def hutchinson_trace(model: nn.Module, data, *, curvature: str = "H", loss: LossArg = "ce",
                     params: Sequence[str | nn.Module] | None = None, train_mode: bool = False,
                     n_probes: int = 100, distribution: str = "rademacher", rtol: float | None = None,
                     probe_batch: int = 1, method: str = "fwd",
                     generator: torch.Generator | None = None) -> TraceEstimate:
    """tr(A) ≈ (1/n) Σ_j v_jᵀ A v_j, E[v vᵀ] = I; Var(vᵀAv) = 2‖A‖²_F (Gaussian), 2(‖A‖²_F − Σ A_ii²) (Rademacher).

    ``probe_batch`` probes are evaluated at once with vmap. With ``rtol``, stops once a chunk of probes moves the
    running mean by at most ``rtol`` relative to its previous value (PyHessian's rule), else after ``n_probes``.
    """
    if n_probes < 1 or probe_batch < 1:
        raise ValueError(f"n_probes and probe_batch must be ≥ 1, got {n_probes}, {probe_batch}")
    theta, batches = _setup(model, data, params, curvature, loss, method)
    samples: list[Tensor] = []
    with measuring(model, train_mode):
        f = _model_fn(model, theta)
        while len(samples) < n_probes:
            v = probes(theta, min(probe_batch, n_probes - len(samples)), distribution, generator)
            q = _weighted(batches, lambda x, y: _quadratic(curvature, f, theta, x, y, v, loss, method))
            old = torch.stack(samples).mean() if samples else None
            samples.extend(q.detach())
            new = torch.stack(samples).mean()
            if rtol is not None and old is not None and (new - old).abs() <= rtol * old.abs():
                break
    return _estimate(torch.stack(samples))


def _gn_terms(f: Callable, theta: Vector, lf: Callable, x: Tensor, labels: Tensor) -> Tensor:
    """B ‖∇_θ L(θ; x, ŷ_j)‖² for each of k label draws ŷ_j (leading dimension of ``labels``), vmapped."""
    def one(yh: Tensor) -> Tensor:
        return sum(t.pow(2).sum() for t in grad(lambda p: lf(f(p, x), yh))(theta).values())
    return len(x) * vmap(one)(labels)


def gn_trace_term(model: nn.Module, x: Tensor, labels: Tensor, *, loss: str = "ce",
                  params: Sequence[str | nn.Module] | None = None, train_mode: bool = False) -> Tensor:
    """B ‖∇_θ L(θ; x, ŷ_j)‖² for k given label draws ``labels`` (k × B, or k × B × C for 'mse'): shape (k,).

    Its expectation over ŷ ∼ softmax(z) is tr(G): with g = ∇_z L(z, ŷ), E[g gᵀ] = H_z/B ('ce': g = (p − e_ŷ)/B;
    'mse' with ŷ ∼ N(z, I): g = (z − ŷ)/B), so E‖Jᵀg‖² = tr(Jᵀ H_z J)/B — also with train-mode BatchNorm,
    where J couples the samples of the batch.
    """
    _check_split(loss)
    theta = select_params(model, params)
    with measuring(model, train_mode):
        return _gn_terms(_model_fn(model, theta), theta, loss_function(loss), x, labels)


def sample_labels(z: Tensor, loss: str, k: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """k draws (leading dimension) of ŷ ∼ softmax(z) for 'ce' (class indices), ŷ ∼ N(z, I) for 'mse'."""
    z = z.detach()
    if _check_split(loss) == "ce":
        return torch.multinomial(torch.softmax(z, -1), k, replacement=True, generator=generator).T
    return z + torch.randn((k, *z.shape), generator=generator, dtype=z.dtype, device=z.device)


def gn_trace_sampled(model: nn.Module, data, *, loss: str = "ce", params: Sequence[str | nn.Module] | None = None,
                     train_mode: bool = False, n_samples: int = 1, sample_batch: int = 1,
                     generator: torch.Generator | None = None) -> TraceEstimate:
    """tr(G) ≈ mean over label draws of Σ_b (B_b/N) B_b ‖∇_θ L(θ; x_b, ŷ_b)‖², ŷ_b ∼ softmax(z_b) (no gradient
    through the sampling); ``sample_batch`` draws are differentiated at once with vmap."""
    if n_samples < 1 or sample_batch < 1:
        raise ValueError(f"n_samples and sample_batch must be ≥ 1, got {n_samples}, {sample_batch}")
    theta, batches = _setup(model, data, params, "G", loss, "fwd")
    lf = loss_function(loss)
    values = []
    with measuring(model, train_mode):
        f = _model_fn(model, theta)
        with torch.no_grad():
            labels = [sample_labels(f(theta, x), loss, n_samples, generator) for x, _ in batches]
        for s in range(0, n_samples, sample_batch):
            chunk = [(x, ys[s:s + sample_batch]) for (x, _), ys in zip(batches, labels)]
            values.extend(_weighted(chunk, lambda x, ys: _gn_terms(f, theta, lf, x, ys)).detach())
    return _estimate(torch.stack(values))


# ---------------------------------------------------------------------------------------------- eigenvalues

@dataclass
class Eigen:
    """Top eigenvalues (descending) and unit eigenvectors (dicts in the parameter layout)."""
    values: Tensor
    vectors: list[Vector]
    n_iter: int  # matrix-vector products used


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


def _lanczos(mv: Callable[[Tensor], Tensor], q: Tensor, k: int, steps: int, tol: float):
    """Lanczos with full reorthogonalisation: Ritz pairs of the top k algebraic eigenvalues."""
    Q, alpha, beta = [q[0] / q[0].norm()], [], []
    for j in range(steps):
        w = mv(Q[j])
        alpha.append(torch.dot(w, Q[j]).item())
        B = torch.stack(Q)
        for _ in range(2):
            w = w - B.T @ (B @ w)
        a, off = torch.tensor(alpha, dtype=torch.float64), torch.tensor(beta, dtype=torch.float64)
        vals, vecs = torch.linalg.eigh(torch.diag(a) + torch.diag(off, 1) + torch.diag(off, -1))
        b = w.norm().item()
        top = slice(max(len(alpha) - k, 0), None)
        resid = b * vecs[-1, top].abs()
        if j + 1 == steps or b < 1e-12 * max(vals.abs().max().item(), 1e-30) or (
                len(alpha) >= k and bool((resid <= tol * vals[top].abs().clamp_min(1e-30)).all())):
            S = vecs[:, top].flip(1).to(B)
            return vals[top].flip(0), (B.T @ S).T, j + 1
        beta.append(b)
        Q.append(w / b)


def _power(mv: Callable[[Tensor], Tensor], q: Tensor, k: int, steps: int, tol: float):
    """Power iteration, orthogonal to the vectors already found: top k eigenvalues by magnitude (q: k starts)."""
    vals, vecs, used = [], [], 0
    for v in q:
        lam = None
        for _ in range(steps):
            for u in vecs:
                v = v - torch.dot(u, v) * u
            w = mv(v / v.norm())
            new, old, used = torch.dot(w, v / v.norm()).item(), lam, used + 1
            v, lam = w, new
            if old is not None and abs(new - old) <= tol * abs(old):
                break
        vals.append(lam)
        vecs.append(v / v.norm())
    return torch.tensor(vals, dtype=torch.float64), torch.stack(vecs), used


def top_eigen(model: nn.Module, data, *, k: int = 1, curvature: str = "H", algorithm: str = "lanczos",
              loss: LossArg = "ce", params: Sequence[str | nn.Module] | None = None, train_mode: bool = False,
              max_iter: int = 100, tol: float = 1e-6, method: str = "fwd",
              generator: torch.Generator | None = None) -> Eigen:
    """Top-k eigenpairs of A ∈ {H, G, N} from matrix-vector products only.

    ``'lanczos'``: the k largest (algebraic) eigenvalues; stops when every Ritz residual β_m|s_mi| ≤ tol·|θ_i| or
    after ``max_iter`` steps (≤ dimension). ``'power'``: the k largest in magnitude, one at a time, each stopped
    when |λ_new − λ_old| ≤ tol·|λ_old| or after ``max_iter`` products (PyHessian's rule; NSO uses tol = 1e-3).
    """
    _check_choice(algorithm, ("lanczos", "power"), "eigen algorithm")
    theta, batches = _setup(model, data, params, curvature, loss, method)
    dim = sum(t.numel() for t in theta.values())
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and the number of parameters {dim}, got {k}")
    ref = next(iter(theta.values()))
    q = torch.randn(k, dim, generator=generator, dtype=ref.dtype, device=ref.device)  # power: k starts
    with measuring(model, train_mode):
        f = _model_fn(model, theta)

        def mv(u: Tensor) -> Tensor:
            v = unflatten(u, theta)
            return flatten(_weighted(batches, lambda x, y: _product(curvature, f, theta, x, y, v, loss, method,
                                                                  False))).detach()
        run = _lanczos if algorithm == "lanczos" else _power
        vals, vecs, n = run(mv, q, k, max(k, min(max_iter, dim)) if algorithm == "lanczos" else max_iter, tol)
    return Eigen(vals, [unflatten(u, theta) for u in vecs], n)


# ------------------------------------------------------------------------------------------ σ'' non-zero count

@dataclass
class SecondDerivativeFraction:
    """Fraction of activation inputs with |σ''(h)| > threshold, per activation module (by name) and in total."""
    per_layer: dict[str, float]
    counts: dict[str, tuple[int, int]]  # name → (non-zero, total)
    total: float
    threshold: float


def activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules whose class is defined in hessreg.activations or built by its ACTIVATIONS registry."""
    registered = {type(make(1.0)) for make, _ in activations.ACTIVATIONS.values()}
    return {n: m for n, m in model.named_modules()
            if type(m).__module__ == activations.__name__ or type(m) in registered}


def second_derivative(act: nn.Module, h: Tensor) -> Tensor:
    """σ''(h) elementwise by autodiff of the activation module itself: ∂/∂h Σ σ'(h)."""
    with torch.enable_grad():
        h = h.detach().requires_grad_()
        (d1,) = torch.autograd.grad(act.forward(h).sum(), h, create_graph=True)  # forward: no hooks
        if not d1.requires_grad:
            return torch.zeros_like(h)
        (d2,) = torch.autograd.grad(d1.sum(), h, materialize_grads=True)
    return d2


def nonzero_second_derivative_fraction(model: nn.Module, data, *, threshold: float = 0.0,
                                       train_mode: bool = False) -> SecondDerivativeFraction:
    """Counts |σ''(h)| > ``threshold`` (exactly non-zero by default) over every activation input.

    ``data``: inputs x, a batch (x, y) or an iterable of batches; σ'' is computed in the model's dtype.
    """
    acts = activation_modules(model)
    if not acts:
        raise ValueError("the model has no activation module from hessreg.activations")
    counts = {n: [0, 0] for n in acts}

    def hook(name: str) -> Callable:
        def count(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            d2 = second_derivative(module, inputs[0])
            counts[name][0] += int((d2.abs() > threshold).sum())
            counts[name][1] += d2.numel()
        return count
    xs = [x for x, _ in _batches((data, data) if isinstance(data, Tensor) else data)]
    handles = [m.register_forward_hook(hook(n)) for n, m in acts.items()]
    try:
        with measuring(model, train_mode), torch.no_grad():
            for x in xs:
                model(x)
    finally:
        for h in handles:
            h.remove()
    nonzero, total = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    return SecondDerivativeFraction({n: c[0] / max(c[1], 1) for n, c in counts.items()},
                                    {n: (c[0], c[1]) for n, c in counts.items()}, nonzero / max(total, 1), threshold)
