"""The dense float64 oracle shared by the curvature, method and flatness tests: a tiny model's loss as a function of
its flattened trainable parameters θ, and from it, by torch.func alone (no hessreg product), the gradient g, the
Hessian H, the Gauss-Newton matrix G = Jᵀ H_z J and the NME N = H − G.

BatchNorm runs on elementary ops here (``batchnorm_mode(primitive=True)``): in train mode torch.func.hessian (and
jacrev∘jacrev) through the native batch_norm kernel disagrees with plain double backward by 10–30 % (torch 2.14,
CPU, float64), while double backward, jvp∘grad and their vmapped forms agree. The toolkit's products keep the
native kernel and must match this reference.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev
from torch.nn import functional as F

from hessreg import activations
from hessreg.models import BatchNorm, batchnorm_mode


def half_mse(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L = (1/B) Σ_b ½‖z_b − y_b‖² (the curvature toolkit's 'mse')."""
    return 0.5 * (z - y).pow(2).sum() / z.shape[0]


LOSSES = {"ce": F.cross_entropy, "mse": half_mse}


class Dense:
    """Dense quantities of ``model`` on the batch ``(x, y)`` as functions of θ (every trainable parameter,
    flattened in ``named_parameters`` order); ``loss`` is 'ce', 'mse' or a callable ``loss(z, y)``; BatchNorm on
    batch statistics with ``train_mode``, else on running statistics (which never change here)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss="ce", train_mode: bool = False):
        self.model, self.x, self.y, self.train_mode = model, x, y, train_mode
        self.loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names, self.shapes = [n for n, _ in named], [p.shape for _, p in named]
        self.theta = torch.cat([p.detach().reshape(-1) for _, p in named])
        self.fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.fixed.update(dict(model.named_buffers()))

    @contextlib.contextmanager
    def _mode(self):
        modes = {m: m.training for m in self.model.modules()}
        try:
            with batchnorm_mode(self.model.train(self.train_mode), primitive=True, update_stats=False):
                yield
        finally:
            for m, training in modes.items():
                m.training = training

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(theta, [math.prod(s) for s in self.shapes])
        params = {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes)}
        with self._mode():
            return functional_call(self.model, {**self.fixed, **params}, (self.x,))

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.logits(theta), self.y)

    def grad(self) -> torch.Tensor:
        return torch.func.grad(self.loss)(self.theta)

    def hessian(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """H = ∇²_θ L (at ``theta``, default the model's weights)."""
        return hessian(self.loss)(self.theta if theta is None else theta)

    def gauss_newton(self) -> torch.Tensor:
        """G = Jᵀ H_z J with J = ∂z/∂θ and H_z = ∂²L/∂z² at the model's weights."""
        j = jacrev(self.logits)(self.theta).reshape(-1, self.theta.numel())
        z = self.logits(self.theta).detach()
        hz = hessian(lambda zz: self.loss_fn(zz.view_as(z), self.y))(z.reshape(-1))
        return j.T @ hz @ j

    def nme(self) -> torch.Tensor:
        """N = H − G: the Nonlinear Modeling Error."""
        return self.hessian() - self.gauss_newton()

    def grad_trace_hessian(self) -> torch.Tensor:
        """∇_θ tr H(θ) (third order)."""
        return torch.func.grad(lambda t: torch.trace(self.hessian(t)))(self.theta)


def tiny_cnn(activation: str = "gelu") -> nn.Module:
    """Conv → BatchNorm → σ → Linear → BatchNorm → σ → Linear in float64 (3 classes): BatchNorm in 4-D and 2-D."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), BatchNorm(3), activations.make_activation(activation),
        nn.Flatten(), nn.Linear(3 * 4 * 4, 6), BatchNorm(6), activations.make_activation(activation),
        nn.Linear(6, 3)).double()


def tiny_cnn_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Five 1 × 6 × 6 float64 images and their labels, for :func:`tiny_cnn`."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(5, 1, 6, 6, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0])
