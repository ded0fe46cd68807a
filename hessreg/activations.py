"""Activations whose second derivative the experiments control.

Paper A's argument turns on σ'', the activation's second derivative: it enters the Hessian only through the
Nonlinear Modeling Error (NME). This module provides the activations of the paper by name:

- ``relu``: σ(x) = max(x, 0). Autodiff returns σ'' = 0 everywhere (the Dirac delta at 0 is invisible).
- ``gelu``: σ(x) = x Φ(x) with the exact erf; σ''(x) = φ(x)(2 − x²).
- ``gelu_tanh``: GELU with the tanh approximation.
- ``beta_gelu``: σ_β(x) = x Φ(βx) = GELU(βx)/β; σ''_β(x) = β φ(βx)(2 − β²x²). β = 1 is GELU, β → ∞ tends to ReLU.
- ``gelu_nme_ablated``: GELU's value and σ', but σ'' := 0 as double backward sees it (Paper A, Fig. 2).
- ``relu_synthetic_nme``: ReLU's value and σ', but σ'' := (β/√(2π)) exp(−β²x²/2), a Gaussian of width 1/β and
  integral 1 standing in for the Dirac delta (Paper A, Eq. 19, Fig. 3). Here β is the Gaussian's sharpness;
  the paper's setting is β = 100, which is this activation's default (``DEFAULT_BETA``).

Activations with a replaced σ'' (:func:`replaced_second_derivative`) are two ``torch.autograd.Function``s: the
activation, whose backward multiplies by the second Function computing σ'(x), whose own backward multiplies by
the chosen σ'' written in differentiable torch ops — so 3rd-order backward differentiates that σ''. Both have
``setup_context``, a ``jvp`` rule and ``generate_vmap_rule`` so they work under torch.func (grad, jvp, vmap).
Because σ'' is *replaced*, ``gradgradcheck`` on them fails by design (finite differences of σ' see the true σ'');
that is the point, and the tests check the replaced σ'' exactly instead.

``make_activation`` is the one entry point; ``ACTIVATIONS`` lists the valid names.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class BetaGELU(nn.Module):
    """σ_β(x) = x Φ(βx), written as GELU(βx)/β so every derivative order comes from PyTorch's GELU."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        if not beta > 0:
            raise ValueError(f"beta_gelu needs beta > 0, got {beta!r}")
        self.beta = float(beta)

    def forward(self, x: Tensor) -> Tensor:
        if self.beta == 1.0:
            return F.gelu(x)
        return F.gelu(self.beta * x) / self.beta

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}"


def in_functorch_transform() -> bool:
    """True inside torch.func.{vmap, grad, jvp, ...}: the place where in-place buffer writes are illegal."""
    level = getattr(torch._C._functorch, "maybe_current_level", lambda: None)()
    return level is not None


class GELU(nn.Module):
    """F.gelu; exact GELU on (N, C, H, W) CPU tensors outside torch.func runs as :class:`_GELU` (same values)."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        if self.approximate == "none" and x.dim() == 4 and x.device.type == "cpu" and not in_functorch_transform():
            return _GELU.apply(x)
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class ReLU(nn.Module):
    """Out-of-place ReLU: in-place variants break higher-order autodiff and torch.func."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x)


def normal_pdf(x: Tensor) -> Tensor:
    """φ(x), the standard normal density."""
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def beta_gelu_second_derivative(x: Tensor, beta: float) -> Tensor:
    """Closed form σ''_β(x) = β φ(βx)(2 − β²x²) (tests and Fig. 9 compare autodiff against it)."""
    bx = beta * x
    return beta * normal_pdf(bx) * (2 - bx * bx)


class _Replaced(nn.Module):
    """Module wrapper around a replaced-σ'' autograd.Function."""

    def __init__(self, fn, name: str, beta: float | None = None):
        super().__init__()
        self._fn, self._name, self.beta = fn, name, beta

    def forward(self, x: Tensor) -> Tensor:
        return self._fn.apply(x)

    def extra_repr(self) -> str:
        return self._name if self.beta is None else f"{self._name}, beta={self.beta:g}"


def replaced_second_derivative(value: Callable[[Tensor], Tensor], first: Callable[[Tensor], Tensor],
                               second: Callable[[Tensor], Tensor], name: str = "replaced"):
    """An ``autograd.Function`` with forward ``value(x)``, derivative ``first(x)`` and, as double backward sees it,
    second derivative ``second(x)`` (which must be written in differentiable torch ops: its own derivative is
    what 3rd-order backward uses). ``value`` and ``first`` are evaluated without autograd."""

    class Derivative(torch.autograd.Function):  # x ↦ σ'(x), whose derivative is the chosen σ''
        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return first(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * second(x)

        @staticmethod
        def jvp(ctx, tangent):
            (x,) = ctx.saved_tensors
            return tangent * second(x)

    class Activation(torch.autograd.Function):  # x ↦ σ(x), whose derivative is Derivative
        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return value(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * Derivative.apply(x)

        @staticmethod
        def jvp(ctx, tangent):
            (x,) = ctx.saved_tensors
            return tangent * Derivative.apply(x)

    Activation.__name__ = Activation.__qualname__ = name
    Derivative.__name__ = Derivative.__qualname__ = name + "_derivative"
    Activation.derivative = Derivative
    return Activation


def gelu_first_derivative(x: Tensor) -> Tensor:
    """GELU'(x) = Φ(x) + x φ(x) (exact erf form)."""
    return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * normal_pdf(x)


GELUNMEAblatedFn = replaced_second_derivative(
    lambda x: F.gelu(x), gelu_first_derivative, lambda x: x * 0.0, "gelu_nme_ablated")  # differentiable 0


def synthetic_nme_second_derivative(x: Tensor, beta: float) -> Tensor:
    """(β/√(2π)) exp(−β²x²/2) = β φ(βx): a Gaussian of width 1/β with integral 1 (Paper A, Eq. 19).

    Paper A's code snippet writes exp(−β²x²), dropping the /2 of its Eq. 19; we follow the equation."""
    return beta * normal_pdf(beta * x)


_SYNTHETIC_RELU: dict[float, type] = {}


def relu_synthetic_nme_fn(beta: float = 100.0):
    """The ReLU-with-synthetic-NME autograd.Function for sharpness β (cached per β)."""
    beta = float(beta)
    if not beta > 0:
        raise ValueError(f"relu_synthetic_nme needs beta > 0, got {beta!r}")
    if beta not in _SYNTHETIC_RELU:
        _SYNTHETIC_RELU[beta] = replaced_second_derivative(
            torch.relu, lambda x: (x > 0).to(x.dtype), lambda x: synthetic_nme_second_derivative(x, beta),
            "relu_synthetic_nme")
    return _SYNTHETIC_RELU[beta]


def GELUNMEAblated() -> nn.Module:
    """GELU whose σ'' is 0 as double backward sees it: the activation NME ablated (Paper A, Fig. 2)."""
    return _Replaced(GELUNMEAblatedFn, "gelu_nme_ablated")


def ReLUSyntheticNME(beta: float = 100.0) -> nn.Module:
    """ReLU whose σ'' is a Gaussian of width 1/β (Paper A, Eq. 19; the paper uses β = 100)."""
    return _Replaced(relu_synthetic_nme_fn(beta), "relu_synthetic_nme", float(beta))


# name -> (constructor taking beta, whether beta matters). Entries are added by the modules that define them
# (the replaced-σ'' activations register themselves below), so the registry is the single list of choices.
ACTIVATIONS: dict[str, tuple[Callable[[float], nn.Module], bool]] = {
    "relu": (lambda beta: ReLU(), False),
    "gelu": (lambda beta: GELU("none"), False),
    "gelu_tanh": (lambda beta: GELU("tanh"), False),
    "beta_gelu": (lambda beta: BetaGELU(beta), True),
    "gelu_nme_ablated": (lambda beta: GELUNMEAblated(), False),
    "relu_synthetic_nme": (lambda beta: ReLUSyntheticNME(beta), True),
}

# β a name gets when none is given (make_activation(name)); configs that pass β explicitly override it. The
# paper's synthetic NME uses β = 100, so a config for Fig. 3 must pass beta=100 if it passes a beta at all.
DEFAULT_BETA: dict[str, float] = {"beta_gelu": 1.0, "relu_synthetic_nme": 100.0}


def uses_beta(name: str) -> bool:
    """Whether the activation ``name`` has a β hyperparameter (so β belongs to a run's identity)."""
    check_activation(name)
    return ACTIVATIONS[name][1]


def check_activation(name: str, beta: float | None = None) -> None:
    """Raise one clear error for an unknown name or a β ≤ 0."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid choices: {', '.join(sorted(ACTIVATIONS))}")
    if ACTIVATIONS[name][1] and beta is not None and not beta > 0:
        raise ValueError(f"activation {name!r} needs beta > 0, got {beta!r}")


def make_activation(name: str, beta: float | None = None) -> nn.Module:
    """A fresh activation module by name (see ``ACTIVATIONS``); ``beta=None`` takes ``DEFAULT_BETA`` (else 1)."""
    check_activation(name, beta)
    if beta is None:
        beta = DEFAULT_BETA.get(name, 1.0)
    return ACTIVATIONS[name][0](beta)


# ------------------------------------------------------------------------------- convolutional layers' GELU
_LOG_PDF0 = -0.5 * math.log(2 * math.pi)


class _GELU(torch.autograd.Function):
    """Exact GELU of a convolution's output: PyTorch's kernels forward and backward (bit for bit), and a double
    backward (:class:`_GELUBackward`) with σ'' = φ(x)(2 − x²) in 7 passes over the tensor instead of PyTorch's ~12,
    kept in x's memory format. Not on MLPs: their committed records keep PyTorch's rounding."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x), ctx.save_for_forward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, g):
        return _GELUBackward.apply(g, ctx.saved_tensors[0])

    @staticmethod
    def jvp(ctx, tx):
        return torch.ops.aten.gelu_backward(tx, ctx.saved_tensors[0])


class _GELUBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, x):
        g = g.contiguous(memory_format=memory_format_of(x))
        ctx.save_for_backward(g, x), ctx.save_for_forward(g, x)
        return torch.ops.aten.gelu_backward(g, x)

    @staticmethod
    def backward(ctx, a):
        g, x = ctx.saved_tensors
        a = a.contiguous(memory_format=memory_format_of(x))
        if torch.is_grad_enabled():  # a graph of it (third order): differentiable ops
            return _GELUBackward.apply(a, x), a * g * beta_gelu_second_derivative(x, 1.0)
        x2 = x * x
        second = torch.add(_LOG_PDF0, x2, alpha=-0.5).exp_().mul_(torch.rsub(x2, 2))  # φ(x)(2 − x²)
        return torch.ops.aten.gelu_backward(a, x), a * second * g  # out of place: a may be vmapped (is_grads_batched)

    @staticmethod
    def jvp(ctx, tg, tx):
        g, x = ctx.saved_tensors
        out = 0.0 if tg is None else torch.ops.aten.gelu_backward(tg, x)
        return out if tx is None else out + tx * g * beta_gelu_second_derivative(x, 1.0)


# ------------------------------------------------------------------------------------------------ max-pooling
# Max-pooling is piecewise linear like ReLU; its double backward is written here (SmallCNN's MaxPool2d uses it).

def memory_format_of(x: Tensor) -> torch.memory_format:
    """channels_last for a 4-D tensor laid out so (and not also NCHW-contiguous), else NCHW (contiguous)."""
    return torch.channels_last if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last) else torch.contiguous_format


def _gather(t: Tensor, idx: Tensor) -> Tensor:
    """t (N, C, H, W) at max-pooling's flat spatial indices idx (N, C, h, w), in t's memory format."""
    if memory_format_of(t) == torch.contiguous_format:
        return t.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
    n, c, h, w = idx.shape
    i = idx.permute(0, 2, 3, 1).reshape(n, -1, c)
    return t.permute(0, 2, 3, 1).reshape(n, -1, c).gather(1, i).view(n, h, w, c).permute(0, 3, 1, 2)


class _MaxPool(torch.autograd.Function):
    """Max-pooling computed in channels_last whatever x's format (the CPU's NCHW kernel is ~8× slower; max is
    exact, so values and indices are the same) and returned in x's format; PyTorch's backward kernel (bit for
    bit), whose own backward (:class:`_MaxPoolBackward`) gathers in the cotangent's format — PyTorch's makes a
    channels_last one NCHW, and the mixed formats downstream (GELU's double backward) cost ~10× more."""

    @staticmethod
    def forward(ctx, x, args):
        out, idx = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), *args)
        fmt = memory_format_of(x)
        out, idx = out.contiguous(memory_format=fmt), idx.contiguous(memory_format=fmt)
        ctx.save_for_backward(x, idx), ctx.save_for_forward(idx)
        ctx.args = args
        return out

    @staticmethod
    def backward(ctx, g):
        x, idx = ctx.saved_tensors
        return _MaxPoolBackward.apply(g, x, idx, ctx.args), None

    @staticmethod
    def jvp(ctx, tx, _):
        return _gather(tx, ctx.saved_tensors[0])


class _MaxPoolBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, x, idx, args):
        ctx.save_for_backward(idx), ctx.save_for_forward(x, idx)
        ctx.args = args
        return torch.ops.aten.max_pool2d_with_indices_backward(g.contiguous(memory_format=memory_format_of(x)), x, *args,
                                                               idx)

    @staticmethod
    def backward(ctx, gg):  # linear in g, constant in x
        return _gather(gg, ctx.saved_tensors[0]), None, None, None

    @staticmethod
    def jvp(ctx, tg, *_):
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(tg, x, *ctx.args, idx)


def max_pool2d(x: Tensor, args: tuple) -> Tensor:
    """Max-pooling of x (N, C, H, W) with (kernel, stride, padding, dilation, ceil_mode): :class:`_MaxPool`."""
    return _MaxPool.apply(x, args)
