"""Training methods, each one step: forward/backward passes that leave the update direction in ``.grad``.

A method is a function ``step(model, x, y, loss_fn, **hparams) -> StepOutput``. It must leave in every
trainable parameter's ``.grad`` the direction the optimizer should step along (the optimizer, weight decay and
schedule stay the run's choice), and return the loss and logits of its first forward pass at the current
weights θ (used for the training metrics). Methods that spend no pass at θ (weight noise, RSAM, NSO with λ = 0)
return the mean loss of their perturbed passes and the logits of the first one instead, rather than pay for a
clean pass. ``StepOutput.penalty`` carries the regularizer's estimate where there is one (‖∇L‖, tr H, tr G).

Methods and conventions (g = ∇L(θ), H = ∇²L, G = Jᵀ H_z J):

==========================  ===================================  =============================================
name                        hyperparameters                      update direction
==========================  ===================================  =============================================
sgd                         —                                    g
sam                         rho                                  ∇L(θ + ρ g/‖g‖)
asam                        rho, eta                             ∇L(θ + ρ T²g/‖Tg‖), T = |w| + η on weights
rsam                        rho, sigma                           ∇L(θ + ρ g̃/‖g̃‖), g̃ = ∇L(θ + ε)
psam                        rho                                  ∇(L + ρ‖g‖) = g + ρ Hg/‖g‖
pusam                       rho                                  ∇(L + (ρ/2)‖g‖²) = g + ρ Hg
gradient_penalty            rho, p ∈ {1, 2}                      psam (p = 1) or pusam (p = 2)
gn_psam                     rho                                  g + ρ Gg/‖g‖ (App. C.1, the NME ablated)
weight_noise                sigma (std)                          ∇L(θ + ε), ε ∼ N(0, σ²I) ≈ ∇(L + ½σ² tr H)
hessian_trace               sigma2, n_probes                     ∇(L + σ² vᵀHv), Gaussian v (3rd order)
gn_trace                    sigma2                               ∇(L + σ² B‖∇L̄(θ, ŷ)‖²), ŷ ∼ softmax(z)
gn_trace_hutchinson         sigma2, n_probes                     ∇(L + σ² vᵀGv), vᵀGv = (Jv)ᵀH_z(Jv)
nso                         sigma, k, two_sided, lam             λg + (1−λ) mean_j ½[∇L(θ+U_j) + ∇L(θ−U_j)]
label_smoothing             alpha                                ∇ CE with label smoothing α
==========================  ===================================  =============================================

So ``weight_noise(sigma=σ)`` and ``hessian_trace(sigma2=σ²/2)`` have the same expected update to second order
(Paper A's x-axis σ² drops the ½). ``gn_trace``, ``gn_trace_hutchinson`` and ``label_smoothing`` need a
classification loss (softmax cross-entropy); the others work with any loss.

Randomness (weight noise, NSO's U, Hutchinson probes, sampled labels) is drawn from torch's global RNG on the
parameters' device, which the training loop seeds. BatchNorm running statistics are updated exactly once per
step (see each method); every extra pass runs under :func:`hessreg.models.frozen_stats`.

The registry of these steps with their hyperparameters is :data:`hessreg.methods.METHODS`.
"""
from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.weak import WeakTensorKeyDictionary

from .curvature import jvp_forward_mode
from .models import batchnorm_mode, frozen_stats

LossFn = Callable[[Tensor, Tensor], Tensor]


class StepOutput(NamedTuple):
    loss: Tensor  # detached scalar: the data loss L(θ) of the first forward pass
    logits: Tensor  # detached logits of that pass
    penalty: Tensor | None = None  # detached regularizer estimate (‖∇L‖, tr H or tr G estimate), if any


# ------------------------------------------------------------------------------------------------------ SGD

def sgd_step(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn) -> StepOutput:
    """Plain gradient: ∇L(θ)."""
    logits = model(x)
    loss = loss_fn(logits, y)
    loss.backward()
    return StepOutput(loss.detach(), logits.detach())


# --------------------------------------------------------------------------------------------------- helpers

def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters a step updates (``requires_grad``)."""
    return [p for p in model.parameters() if p.requires_grad]


def _named_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _norm(tensors: list[Tensor]) -> Tensor:
    """Global Euclidean norm of a list of tensors."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def _dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _accumulate(params: list[nn.Parameter], grads) -> None:
    """Add ``grads`` into ``.grad`` (the caller zeroed them), as ``backward`` would."""
    for p, g in zip(params, grads):  # ``grads`` are fresh tensors (autograd.grad outputs or sums of them)
        if p.grad is None:
            p.grad = g.detach()
        else:
            p.grad.add_(g.detach())


def _gaussian(params: list[Tensor], std: float) -> list[Tensor]:
    """One draw of N(0, std² I) per tensor, from torch's global RNG (the tests may replace this function)."""
    return [torch.randn_like(p).mul_(std) for p in params]


@torch.no_grad()
def _sample_labels(logits: Tensor) -> Tensor:
    """ŷ ∼ softmax(z), one label per row, from torch's global RNG (no gradient; the tests may replace it).

    A row with non-finite logits (a diverging run) samples from the uniform distribution instead, so the step
    returns its non-finite loss and the run is recorded as diverged rather than raising in ``multinomial``."""
    prob = torch.softmax(logits.detach().float(), -1)
    ok = torch.isfinite(prob).all(-1, keepdim=True)
    prob = torch.where(ok, prob, torch.full_like(prob, 1.0 / prob.shape[-1]))
    return torch.multinomial(prob, 1).squeeze(-1)


_SCRATCH = WeakTensorKeyDictionary()  # parameter → its scratch tensor


def _scratch(p: nn.Parameter) -> Tensor:
    """A tensor like ``p`` kept between steps (reused memory: no allocation per perturbed pass)."""
    t = _SCRATCH.get(p)
    if t is None or t.shape != p.shape or t.dtype != p.dtype or t.device != p.device:
        t = _SCRATCH[p] = torch.empty_like(p.data)
    return t


@contextlib.contextmanager
def _moved(params: list[nn.Parameter], delta: list[Tensor], sign: float = 1.0):
    """The parameters at θ + sign · delta inside the block, at θ again after it.

    Each parameter is pointed at its scratch tensor, filled with θ + sign · delta, and back at θ's own storage, so
    θ comes back exactly without the clone/copy/restore a perturbation otherwise costs (a fixed cost that is a
    sizeable share of a small model's step). Gradients of passes inside the block accumulate into ``p.grad``; run
    their backward inside the block (the next perturbation overwrites the scratch, which autograd would refuse)."""
    theta = [p.data for p in params]
    moved = [_scratch(p) for p in params]
    torch._foreach_copy_(moved, theta)
    torch._foreach_add_(moved, delta, alpha=sign)
    for p, t in zip(params, moved):
        p.data = t
    try:
        yield
    finally:
        for p, t in zip(params, theta):
            p.data = t


class _AveragedStats:
    """Running statistics that average the batch statistics of several passes, counted as one update.

    Before each pass the buffers are reset to their values at the start of the step; after each pass the updated
    buffers are summed; ``finish`` stores their mean: (1 − m) r₀ + m · mean_j s_j, one momentum step towards the
    passes' mean batch statistics. For NSO's ± pairs that mean is the batch statistics at θ up to O(σ²)."""

    def __init__(self, model: nn.Module):
        self.mods = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                     and m.training and m.track_running_stats and m.running_mean is not None
                     and getattr(m, "update_stats", True)]
        self.start = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                      for m in self.mods]
        self.sums = [(torch.zeros_like(a), torch.zeros_like(b)) for a, b, _ in self.start]
        self.count = 0

    @torch.no_grad()
    def before(self) -> None:
        for m, (mean, var, n) in zip(self.mods, self.start):
            m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(n)

    @torch.no_grad()
    def after(self) -> None:
        for m, (sm, sv) in zip(self.mods, self.sums):
            sm.add_(m.running_mean), sv.add_(m.running_var)
        self.count += 1

    @torch.no_grad()
    def finish(self) -> None:
        for m, (sm, sv), (_, _, n) in zip(self.mods, self.sums, self.start):
            m.running_mean.copy_(sm / self.count), m.running_var.copy_(sv / self.count)
            m.num_batches_tracked.copy_(n + 1)


def _forward(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn) -> tuple[Tensor, Tensor]:
    logits = model(x)
    return logits, loss_fn(logits, y)


# ------------------------------------------------------------------------------------------- SAM and ASAM

def _ascent_step(model, x, y, loss_fn, scale) -> StepOutput:
    """Gradient at θ + e(g) (e from ``scale``), applied at θ. Running stats: from the clean pass only."""
    params = trainable(model)
    logits, loss = _forward(model, x, y, loss_fn)
    grads = torch.autograd.grad(loss, params)
    with _moved(params, scale(grads)), frozen_stats(model):
        loss_fn(model(x), y).backward()
    return StepOutput(loss.detach(), logits.detach())


def sam_step(model, x, y, loss_fn, rho: float) -> StepOutput:
    """SAM (Foret et al. 2021): ∇L(θ + ρ g/‖g‖), g = ∇L(θ), applied at θ. Two forward/backward passes; the
    BatchNorm running statistics are updated by the first (clean) pass only."""
    if rho == 0:
        return sgd_step(model, x, y, loss_fn)

    def scale(g):
        n = _norm(list(g)) + 1e-12
        return torch._foreach_mul(list(g), rho / n)
    return _ascent_step(model, x, y, loss_fn, scale)


def asam_step(model, x, y, loss_fn, rho: float, eta: float) -> StepOutput:
    """ASAM (Kwon et al. 2021), as its official code: e = ρ T²g/‖Tg‖, T = |w| + η for parameters whose name
    contains 'weight', T = 1 for the others (biases); gradient at θ + e applied at θ."""
    if rho == 0:
        return sgd_step(model, x, y, loss_fn)
    names = [n for n, _ in _named_trainable(model)]
    params = trainable(model)

    def scale(g):
        t = [p.detach().abs() + eta if "weight" in n else torch.ones_like(p) for n, p in zip(names, params)]
        tg = [a * b for a, b in zip(t, g)]
        n = _norm(tg) + 1e-12
        return [rho * a * b / n for a, b in zip(t, tg)]
    return _ascent_step(model, x, y, loss_fn, scale)


def rsam_step(model, x, y, loss_fn, rho: float, sigma: float) -> StepOutput:
    """RSAM (random SAM, Paper B's baseline, as the NSO authors' code structures it): g̃ = ∇L(θ + ε),
    ε ∼ N(0, σ²I); then the gradient at θ + ρ g̃/‖g̃‖ (ascent from θ, not θ + ε), applied at θ. Deviation: their
    code normalises by ‖(λ‖g̃_p‖ + ‖ε_p‖)_p‖ over tensors p and scales the noise per filter; we use the plain
    ‖g̃‖ and N(0, σ²I). Two passes; the first (at θ + ε) updates the running stats and its loss is returned."""
    params = trainable(model)
    with _moved(params, _gaussian(params, sigma)):
        logits, loss = _forward(model, x, y, loss_fn)
        grads = list(torch.autograd.grad(loss, params))
    with _moved(params, torch._foreach_mul(grads, rho / (_norm(grads) + 1e-12))), frozen_stats(model):
        loss_fn(model(x), y).backward()
    return StepOutput(loss.detach(), logits.detach())


# ---------------------------------------------------------------------------------- gradient penalties

def gradient_penalty_step(model, x, y, loss_fn, rho: float, p: int) -> StepOutput:
    """Gradient of L + ρ‖∇L‖ (p = 1, PSAM) or L + (ρ/2)‖∇L‖² (p = 2, PUSAM), by double backward.

    p = 1: ∇L + ρ H∇L/‖∇L‖;  p = 2: ∇L + ρ H∇L (on ½θᵀAθ: (A + ρA²)θ, Paper A App. B.2's λ + ρλ²).
    One forward pass (running stats updated once); ``penalty`` is ‖∇L‖."""
    params = trainable(model)
    logits, loss = _forward(model, x, y, loss_fn)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    g = [t.detach() for t in grads]
    norm = _norm(g)
    if rho == 0:
        _accumulate(params, g)
        return StepOutput(loss.detach(), logits.detach(), norm)
    coef = rho / (norm + 1e-12) if p == 1 else rho
    hv = torch.autograd.grad(grads, params, grad_outputs=[coef * t for t in g])
    _accumulate(params, [a + b for a, b in zip(g, hv)])
    return StepOutput(loss.detach(), logits.detach(), norm)


def psam_step(model, x, y, loss_fn, rho: float) -> StepOutput:
    """PSAM: L + ρ‖∇L‖, update ∇L + ρ H∇L/‖∇L‖."""
    return gradient_penalty_step(model, x, y, loss_fn, rho, 1)


def pusam_step(model, x, y, loss_fn, rho: float) -> StepOutput:
    """PUSAM: L + (ρ/2)‖∇L‖², update ∇L + ρ H∇L."""
    return gradient_penalty_step(model, x, y, loss_fn, rho, 2)


def _forward_jvp_wins(model: nn.Module) -> bool:
    """Whether J u is cheaper by forward mode than by the double-backward trick: on convolutional networks, whose
    double-backward kernels are costly (``experiments/bench_methods.py``, one CPU thread, batch 128: GN-PSAM on
    WRN-10-1 ≈ 30 % faster with forward mode), not on MLPs, with or without BatchNorm (≈ 20–30 % slower)."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def gn_psam_step(model, x, y, loss_fn, rho: float) -> StepOutput:
    """PSAM with the full NME ablated (Paper A App. C.1): ∇L + ρ G∇L/‖∇L‖, G = Jᵀ H_z J.

    Equivalent to differentiating ρ‖g̃‖, g̃ = J(θ̃)ᵀ∇_zL(z(θ), y), θ̃ = stop_grad(θ), only through ∇_zL(z(θ)).
    Computed as Jᵀ(∇_zL + ρ H_z J u), u = ∇L/‖∇L‖: J u by forward mode on convolutional networks (a second
    forward pass carrying tangents, running stats frozen), else by the double-backward trick; H_z(Ju) by
    a Hessian-vector product of the loss in z (cheap); one final backward. Needs only 2nd-order derivatives of the
    network, so native BatchNorm suffices; running stats are updated once, by the first pass."""
    names, params = zip(*_named_trainable(model))
    logits, loss = _forward(model, x, y, loss_fn)
    (dz,) = torch.autograd.grad(loss, logits, create_graph=True)  # ∇_zL(z(θ)): graph through the loss only
    forward_jvp = _forward_jvp_wins(model)
    if forward_jvp:
        jtw = torch.autograd.grad(logits, params, grad_outputs=dz.detach(), retain_graph=True)  # = ∇L
    else:
        w = dz.detach().requires_grad_()
        jtw = torch.autograd.grad(logits, params, grad_outputs=w, create_graph=True)  # Jᵀw, linear in w; = ∇L
    g = [t.detach() for t in jtw]
    norm = _norm(g)
    if rho == 0:
        _accumulate(params, g)
        return StepOutput(loss.detach(), logits.detach(), norm)
    u = torch._foreach_div(g, norm + 1e-12)
    if forward_jvp:
        ju = jvp_forward_mode(model, x, dict(zip(names, u)))
    else:
        (ju,) = torch.autograd.grad(jtw, w, grad_outputs=u, retain_graph=True)  # J u
    (hju,) = torch.autograd.grad(dz, logits, grad_outputs=ju, retain_graph=True)  # H_z J u
    out = torch.autograd.grad(logits, params, grad_outputs=dz.detach() + rho * hju)
    _accumulate(params, out)
    return StepOutput(loss.detach(), logits.detach(), norm)


# ------------------------------------------------------------------------------- noise and trace penalties

def weight_noise_step(model, x, y, loss_fn, sigma: float) -> StepOutput:
    """Weight noise: ∇L(θ + ε), ε ∼ N(0, σ²I) fresh each step, applied at θ.

    Convention: E_ε L(θ + ε) = L + ½σ² tr H + O(σ⁴), so ``weight_noise(sigma=σ)`` matches
    ``hessian_trace(sigma2=σ²/2)`` to second order (Paper A plots both against σ², dropping the ½).
    One pass, at θ + ε: it updates the running statistics and its loss is the one returned."""
    params = trainable(model)
    with _moved(params, _gaussian(params, sigma)):
        logits, loss = _forward(model, x, y, loss_fn)
        loss.backward()
    return StepOutput(loss.detach(), logits.detach())


def _penalty_step(model, x, y, loss_fn, sigma2: float, estimate, *, elementary_bn: bool) -> StepOutput:
    """Gradient of L + σ² · ``estimate(logits, loss, params)`` from one forward pass (running stats updated once);
    ``penalty`` is the estimate. σ² = 0 is the plain gradient. ``elementary_bn``: the estimate's gradient needs
    third-order derivatives, so BatchNorm runs in elementary ops (``batchnorm_mode(primitive=True)``)."""
    params = trainable(model)
    with batchnorm_mode(model, primitive=True) if elementary_bn else contextlib.nullcontext():
        logits, loss = _forward(model, x, y, loss_fn)
        if sigma2 == 0:
            loss.backward()
            return StepOutput(loss.detach(), logits.detach())
        est = estimate(logits, loss, params)
        _accumulate(params, torch.autograd.grad(loss + sigma2 * est, params))
    return StepOutput(loss.detach(), logits.detach(), est.detach())


def hessian_trace_step(model, x, y, loss_fn, sigma2: float, n_probes: int) -> StepOutput:
    """Gradient of L + σ² tr H, tr H by Hutchinson with ``n_probes`` Gaussian probes, vᵀHv averaged.

    Third-order autodiff, so BatchNorm runs in elementary ops. One forward pass; ``penalty`` is the tr H
    estimate."""
    def trace_h(logits, loss, params):
        grads = torch.autograd.grad(loss, params, create_graph=True)
        est = 0.0
        for _ in range(n_probes):
            v = _gaussian(params, 1.0)
            hv = torch.autograd.grad(grads, params, grad_outputs=v, create_graph=True)
            est = est + _dot(v, hv)
        return est / n_probes
    return _penalty_step(model, x, y, loss_fn, sigma2, trace_h, elementary_bn=True)


def gn_trace_step(model, x, y, loss_fn, sigma2: float) -> StepOutput:
    """Gradient of L + σ² tr G, tr G estimated by sampled labels ŷ ∼ softmax(z) (no gradient through sampling).

    For the batch-mean cross-entropy L̄(θ, ŷ) over B examples, E_ŷ ‖∇L̄(θ, ŷ)‖² = tr(G)/B, so the estimate is
    B ‖∇L̄(θ, ŷ)‖² (unbiased for tr G of the batch-mean loss). Second-order autodiff; one forward pass."""
    def trace_g(logits, loss, params):
        sampled = torch.autograd.grad(F.cross_entropy(logits, _sample_labels(logits)), params, create_graph=True)
        return logits.shape[0] * sum(t.square().sum() for t in sampled)
    return _penalty_step(model, x, y, loss_fn, sigma2, trace_g, elementary_bn=False)


def gn_trace_hutchinson_step(model, x, y, loss_fn, sigma2: float, n_probes: int) -> StepOutput:
    """Control for ``gn_trace``: tr G by Hutchinson on G, vᵀGv = uᵀH_z u, u = Jv (a JVP by the double-backward
    trick), for the batch-mean softmax cross-entropy: (1/B) Σ_b [Σ_k p_k u_k² − (Σ_k p_k u_k)²].

    Differentiating u = Jv needs 3rd-order derivatives of BatchNorm, so it runs in elementary ops."""
    def trace_g(logits, loss, params):
        w = torch.zeros_like(logits, requires_grad=True)
        jtw = torch.autograd.grad(logits, params, grad_outputs=w, create_graph=True)
        prob = torch.softmax(logits, -1)
        est = 0.0
        for _ in range(n_probes):
            (u,) = torch.autograd.grad(jtw, w, grad_outputs=_gaussian(params, 1.0), create_graph=True)
            est = est + ((prob * u * u).sum(-1) - (prob * u).sum(-1).square()).mean()
        return est / n_probes
    return _penalty_step(model, x, y, loss_fn, sigma2, trace_g, elementary_bn=True)


# -------------------------------------------------------------------------------------------------- NSO

def nso_step(model, x, y, loss_fn, sigma: float, k: int, two_sided: bool, lam: float) -> StepOutput:
    """NSO (Paper B): λ ∇L(θ) + (1 − λ) · mean over j ≤ k of ½[∇L(θ + U_j) + ∇L(θ − U_j)], U_j ∼ N(0, σ²I)
    (one-sided: mean of ∇L(θ + U_j)), all on the same batch, applied at θ.

    No clean pass is spent when λ = 0. Running statistics: with λ > 0 the clean pass updates them and the
    perturbed passes run frozen; with λ = 0 they take one momentum step towards the mean of the perturbed
    passes' batch statistics (for ± pairs, the statistics at θ up to O(σ²)) — the official code instead spends
    a clean pass, and never updating them would leave eval-mode BatchNorm untrained."""
    params = trainable(model)
    first = None
    if lam > 0:
        logits, loss = _forward(model, x, y, loss_fn)
        (lam * loss).backward()
        first = (loss.detach(), logits.detach())
        if lam == 1:
            return StepOutput(*first)
    signs = (1.0, -1.0) if two_sided else (1.0,)
    weight = (1 - lam) / (k * len(signs))
    stats = _AveragedStats(model) if first is None else None
    losses, first_logits = [], None
    for _ in range(k):
        noise = _gaussian(params, sigma)
        for s in signs:
            with _moved(params, noise, s):
                if stats is not None:
                    stats.before()
                    logits, loss = _forward(model, x, y, loss_fn)
                    stats.after()
                else:
                    with frozen_stats(model):
                        logits, loss = _forward(model, x, y, loss_fn)
                (weight * loss).backward()
            losses.append(loss.detach())
            if first_logits is None:
                first_logits = logits.detach()
    if stats is not None:
        stats.finish()
    return StepOutput(*first) if first is not None else StepOutput(torch.stack(losses).mean(), first_logits)


# ------------------------------------------------------------------------------------------ label smoothing

def label_smoothing_step(model, x, y, loss_fn, alpha: float) -> StepOutput:
    """Cross-entropy with label smoothing α (targets (1 − α) onehot + α/C). ``loss`` reports ``loss_fn``."""
    logits = model(x)
    F.cross_entropy(logits, y, label_smoothing=alpha).backward()
    with torch.no_grad():
        loss = loss_fn(logits, y)
    return StepOutput(loss.detach(), logits.detach())
