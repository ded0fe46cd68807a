"""Estimates built from curvature products (:mod:`hessreg.curvature`): Hutchinson traces of H, G and N, the
sampled-label GN trace, top eigenpairs (Lanczos, power iteration), the fraction of non-zero σ'' over a model's
activation inputs, Paper B's flatness, and :data:`MEASUREMENTS`, the ones a training run can take.

The conventions (vectors as dicts in the parameter layout, losses, data as one batch or several, BatchNorm modes,
HVP methods, generators) are those of :mod:`hessreg.curvature`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from . import activations
from .curvature import (LossArg, Vector, _batches, _check_choice, _check_split, _model_fn, _product, _quadratic,
                        _setup, _weighted, flatten, loss_function, measuring, select_params, unflatten)

DISTRIBUTIONS = ("rademacher", "gaussian")

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


# ------------------------------------------------------------------------------------- Paper B's flatness

def flatness(model: nn.Module, ds, *, n_samples: int = 1000, batch_size: int = 16, max_probes: int = 100,
             rtol: float = 1e-3, max_iter: int = 100, tol: float = 1e-3, seed: int = 0) -> dict:
    """Paper B's Hessian metrics of the training loss at the model's weights: the trace by Hutchinson
    (Rademacher probes, stop when a probe moves the running mean by ≤ ``rtol`` relative, or after
    ``max_probes``) and the top eigenvalue (largest in magnitude) by power iteration (≤ ``max_iter``
    products, stop at ``tol`` relative change), in eval mode (BatchNorm on running statistics), over the first
    ``n_samples`` training samples of the dataset ``ds`` in batches of ``batch_size`` (the mean over batches
    weighted by size, so in eval mode the batching changes only rounding). Probes and the start vector come from
    a generator seeded with ``seed``: the same probes for every model."""
    x, y = ds.x_train[:n_samples], ds.y_train[:n_samples]
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]
    gen = torch.Generator(device=x.device).manual_seed(seed)
    tr = hutchinson_trace(model, batches, train_mode=False, n_probes=max_probes, distribution="rademacher",
                          rtol=rtol, generator=gen)
    gen = torch.Generator(device=x.device).manual_seed(seed + 1)
    eig = top_eigen(model, batches, algorithm="power", train_mode=False, max_iter=max_iter, tol=tol, generator=gen)
    return {"trace": tr.trace, "trace_se": tr.std_err, "n_probes": tr.n_samples,
            "top_eig": float(eig.values[0]), "eig_iters": eig.n_iter, "n_samples": len(y),
            "batch_size": batch_size}


# ------------------------------------------------------------------------------- what a run can measure

def nonzero_d2(model: nn.Module, ds) -> dict:
    """Fraction of exactly non-zero σ'' over the activations' inputs on the first 512 training images of ``ds``
    (batch statistics, running statistics untouched), per layer and in total (Paper A Fig. 9)."""
    f = nonzero_second_derivative_fraction(model, (ds.x_train[:512], ds.y_train[:512]), threshold=0.0,
                                           train_mode=True)
    return {"total": float(f.total), "per_layer": {k: float(v) for k, v in f.per_layer.items()},
            "threshold": f.threshold}


# name → fn(model, dataset) -> JSON-able value, taken at initialization and after training (``Config.measure``).
# "nso_flatness" is Paper B's protocol exactly; "nso_flatness_fast" the same quantity with batches of 500 (eval
# mode: the batching changes only rounding); "nso_flatness_smoke" a cheap version that only exercises the code.
MEASUREMENTS: dict[str, Callable[[nn.Module, Any], Any]] = {
    "nonzero_d2": nonzero_d2,
    "nso_flatness": lambda model, ds: flatness(model, ds),
    "nso_flatness_fast": lambda model, ds: flatness(model, ds, batch_size=500),
    "nso_flatness_smoke": lambda model, ds: flatness(model, ds, n_samples=64, batch_size=64, max_probes=5,
                                                     max_iter=5),
}
