"""Models: MLP, small convnets, CIFAR-style WideResNet, torchvision ResNets — with a BatchNorm that works at every
order.

**BatchNorm.** Every later method differentiates through BatchNorm: PSAM the gradient of a gradient norm (2nd
order), the Hessian-trace penalty a 3rd order, the curvature toolkit ``torch.func.jvp``/``vmap``. PyTorch's
``nn.BatchNorm2d`` updates its running statistics *in place* (torch.func rejects in-place writes of transformed
values), and on CPU its native kernel refuses 3rd-order derivatives. :class:`BatchNorm` solves both:

- running statistics are updated outside autograd, only when ``update_stats`` is on and not inside a torch.func
  transform; inside one the forward is the elementary-op one (PyTorch's native kernel gives wrong second
  derivatives under ``vmap`` of forward-over-reverse: off by 10% on torch 2.14; tests/test_models.py checks it);
- ``primitive = True`` computes y = (x − μ_B)/√(σ²_B + ε)·γ + β from elementary ops, differentiable to any order
  on any device; the native kernel is faster and enough up to 2nd order. :func:`batchnorm_mode` switches both.

Also here: a pretrained backbone under a new head (:func:`load_backbone`) and the device (:func:`resolve_device`).
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional as F

from .activations import in_functorch_transform, make_activation, max_pool2d, memory_format_of


def _per_channel(t: Tensor, like: Tensor) -> Tensor:
    return t.view([1, -1] + [1] * (like.dim() - 2))


def _channel_dims(x: Tensor) -> list[int]:
    """The dimensions BatchNorm reduces over: all but the channels (dimension 1)."""
    return [0] + list(range(2, x.dim()))


def _batch_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per-channel batch mean and 1/√(σ² + ε) (biased σ²), differentiable in x."""
    dims = _channel_dims(x)
    return x.mean(dims), torch.rsqrt(x.var(dims, unbiased=False) + eps)


def _standardized(x: Tensor, mean: Tensor, invstd: Tensor) -> tuple[Tensor, Tensor]:
    """(s, x̂) broadcast over x: s = 1/√(σ² + ε) per channel, x̂ = (x − μ) s."""
    s = _per_channel(invstd, x)
    return s, (x - _per_channel(mean, x)) * s


def _project(v: Tensor, xh: Tensor, dims: list[int]) -> Tensor:
    """P v = v − mean(v) − x̂ · mean(v x̂) per channel: BatchNorm's backward without its γ·s factor (P = Pᵀ)."""
    return v - v.mean(dims, keepdim=True) - xh * (v * xh).mean(dims, keepdim=True)


class _TrainBatchNorm(torch.autograd.Function):
    """Batch-statistics BatchNorm: PyTorch's native kernels forward and backward (``F.batch_norm``'s numbers on
    the CPU), a forward-mode rule and a closed-form double backward (:class:`_TrainBatchNormBackward`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        out, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var, True,
                                                             momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd), ctx.save_for_forward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, invstd = ctx.saved_tensors
        return (*_TrainBatchNormBackward.apply(dy, x, weight, mean, invstd, ctx.eps), None, None, None, None)

    @staticmethod
    def jvp(ctx, tx, tw, tb, *_):
        """ẏ = γ s P ẋ + γ̇ x̂ + β̇ (s = 1/√(σ² + ε))."""
        x, weight, mean, invstd = ctx.saved_tensors  # those of save_for_forward
        s, xh = _standardized(x, mean, invstd)
        out = 0.0 if tx is None else _per_channel(weight, x) * s * _project(tx, xh, _channel_dims(x))
        if tw is not None:
            out = out + _per_channel(tw, x) * xh
        return out if tb is None else out + _per_channel(tb, x)


class _TrainBatchNormBackward(torch.autograd.Function):
    """BatchNorm's backward (native kernel) as a function of (ẏ, x, γ), with a closed-form backward: the double
    backward of PSAM, PUSAM and the GN-trace penalty, cheaper on the CPU than PyTorch's (bench_methods.py)."""

    @staticmethod
    def forward(ctx, dy, x, weight, mean, invstd, eps):
        ctx.save_for_backward(dy, x, weight, mean, invstd), ctx.save_for_forward(dy, x, weight)
        ctx.eps = eps
        return torch.ops.aten.native_batch_norm_backward(dy, x, weight, None, None, mean, invstd, True, eps,
                                                         [True, True, True])

    @staticmethod
    def jvp(ctx, t_dy, t_x, t_weight, *_):
        """Forward-over-reverse: the JVP of the same map in elementary ops (rarely used: torch.func's is elementary)."""
        dy, x, weight = ctx.saved_tensors[:3]
        dims = _channel_dims(x)

        def elementary(dy, x, weight):  # (dx, dγ, dβ) with the batch statistics recomputed from x
            s, xh = _standardized(x, *_batch_stats(x, ctx.eps))
            return _per_channel(weight, x) * s * _project(dy, xh, dims), (dy * xh).sum(dims), dy.sum(dims)
        tangents = [torch.zeros_like(p) if t is None else t for p, t in zip((dy, x, weight), (t_dy, t_x, t_weight))]
        with torch.enable_grad():  # J t by the double-backward trick (forward mode cannot nest here)
            inputs = [t.detach().requires_grad_() for t in (dy, x, weight)]
            outs = elementary(*inputs)
            ws = [torch.zeros_like(o, requires_grad=True) for o in outs]
            vjps = torch.autograd.grad(outs, inputs, ws, create_graph=True)
            return torch.autograd.grad(vjps, ws, tangents)

    @staticmethod
    def backward(ctx, a, c_weight, c_bias):
        """With dx = γ s P(ẏ), dγ = Σ ẏ x̂, dβ = Σ ẏ and cotangents (a, c_γ, c_β) of Φ = ⟨a, dx⟩ + c_γ·dγ + c_β·dβ:
        ∂Φ/∂ẏ = γ s P a + c_γ x̂ + c_β, ∂Φ/∂γ = s⟨a, P ẏ⟩, ∂Φ/∂x = s P(∂Φ/∂x̂) − (s²/n) γ ⟨a, P ẏ⟩ x̂ with
        ∂Φ/∂x̂ = −(γ s/n)(Σa x̂ · ẏ + Σẏ x̂ · a) + c_γ ẏ, sums and n per channel. Building a graph of this (third
        derivatives), the batch statistics are recomputed from x so that it is differentiable in x too."""
        dy, x, weight, mean, invstd = ctx.saved_tensors
        if x.dim() == 4 and not torch.is_grad_enabled():
            return _fused_double_backward(a, c_weight, c_bias, dy, x, weight, mean, invstd)
        dims, n = _channel_dims(x), x.numel() // x.shape[1]
        if torch.is_grad_enabled():
            mean, invstd = _batch_stats(x, ctx.eps)
        s, xh = _standardized(x, mean, invstd)
        g, cw = _per_channel(weight, x), _per_channel(c_weight, x)
        a_x, dy_x = (a * xh).sum(dims, keepdim=True), (dy * xh).sum(dims, keepdim=True)
        a_pdy = (a * dy).sum(dims, keepdim=True) - a.sum(dims, keepdim=True) * dy.mean(dims, keepdim=True) \
            - a_x * dy_x / n  # ⟨a, P ẏ⟩
        g_dy = g * s * _project(a, xh, dims) + cw * xh + _per_channel(c_bias, x)
        g_xh = (-g * s / n) * (a_x * dy + dy_x * a) + cw * dy
        g_x = s * _project(g_xh, xh, dims) - (s * s / n) * g * a_pdy * xh
        return g_dy, g_x, (s * a_pdy).reshape(-1), None, None, None


def _fused_double_backward(a, c_weight, c_bias, dy, x, weight, mean, invstd):
    """The same derivatives, per-channel sums taken once, each output a per-channel combination of a, ẏ, x̂: 15 passes
    over (N, C, H, W) tensors instead of ~35, in x's memory format. 4-D x only (MLP records keep their rounding)."""
    dims, n = _channel_dims(x), x.numel() // x.shape[1]
    a, dy = (t.contiguous(memory_format=memory_format_of(x)) for t in (a, dy))
    s, xh = _standardized(x, mean, invstd)
    gs, sa, sdy = _per_channel(weight, x) * s, a.sum(dims, keepdim=True), dy.sum(dims, keepdim=True)
    ax, dyx, ady = ((u * v).sum(dims, keepdim=True) for u, v in ((a, xh), (dy, xh), (a, dy)))
    a_pdy = ady - sa * sdy / n - ax * dyx / n  # ⟨a, P ẏ⟩
    b1, b2 = _per_channel(c_weight, x) - gs * ax / n, -gs * dyx / n  # ∂Φ/∂x̂ = b1 ẏ + b2 a
    g_dy = torch.addcmul(_per_channel(c_bias, x) - gs * sa / n, a, gs).addcmul_(xh, b1)
    c_xh = -s * (b1 * dyx + b2 * ax + gs * a_pdy) / n
    g_x = torch.addcmul(-s * (b1 * sdy + b2 * sa) / n, dy, s * b1).addcmul_(a, s * b2).addcmul_(xh, c_xh)
    return g_dy, g_x, (s * a_pdy).reshape(-1), None, None, None


# Devices where BatchNorm is _TrainBatchNorm and MaxPool2d _MaxPool (faster on the CPU); CUDA keeps cuDNN until a
# GPU benchmark says otherwise (add "cuda" here to measure it).
CLOSED_FORM_DEVICES = {"cpu"}


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d``; on :data:`CLOSED_FORM_DEVICES` outside torch.func :func:`~hessreg.activations.max_pool2d`."""

    def forward(self, x: Tensor) -> Tensor:
        if self.return_indices or x.dim() != 4 or x.device.type not in CLOSED_FORM_DEVICES \
                or in_functorch_transform():
            return super().forward(x)
        return max_pool2d(x, (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode))


class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over (N, C) or (N, C, H, W) inputs, differentiable to any order and safe under torch.func.

    In training mode it normalises with the batch statistics μ_B, σ²_B (biased); the running statistics are
    updated with the unbiased σ² as PyTorch does, but without autograd and only when ``update_stats`` is on.
    On the CPU the batch-statistics path is :class:`_TrainBatchNorm`: PyTorch's kernels (``F.batch_norm``'s
    numbers) with a closed-form double backward that also differentiates a third time (``primitive`` is faster).
    """

    primitive: bool = False  # elementary-op forward: any derivative order, any device
    update_stats: bool = True  # False on perturbed passes (SAM's ascent, NSO's W ± U, curvature probes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (2, 4):
            raise ValueError(f"BatchNorm expects a 2D or 4D input, got {x.dim()}D")
        use_batch_stats = self.training or not self.track_running_stats
        functional = in_functorch_transform()
        update = self.training and self.track_running_stats and self.update_stats and not functional
        if not (self.primitive or functional):
            if update:
                self.num_batches_tracked.add_(1)
            running = update or not use_batch_stats  # None: F.batch_norm neither reads nor writes them
            mean, var = (self.running_mean, self.running_var) if running else (None, None)
            if use_batch_stats and self.affine and x.device.type in CLOSED_FORM_DEVICES:
                return _TrainBatchNorm.apply(x, self.weight, self.bias, mean, var, self.momentum, self.eps)
            return F.batch_norm(x, mean, var, self.weight, self.bias, use_batch_stats, self.momentum, self.eps)
        dims = _channel_dims(x)
        shape = [1, -1] + [1] * (x.dim() - 2)
        if use_batch_stats:
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            if update:
                with torch.no_grad():
                    n = x.numel() // x.shape[1]
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_var.lerp_(var.detach() * n / max(n - 1, 1), self.momentum)
                    self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def batchnorms(model: nn.Module) -> list[BatchNorm]:
    return [m for m in model.modules() if isinstance(m, BatchNorm)]


@contextlib.contextmanager
def batchnorm_mode(model: nn.Module, *, primitive: bool | None = None,
                   update_stats: bool | None = None) -> Iterator[nn.Module]:
    """Temporarily set every :class:`BatchNorm` of ``model`` to elementary ops and/or frozen running stats."""
    saved = [(m, m.primitive, m.update_stats) for m in batchnorms(model)]
    try:
        for m, p, u in saved:
            m.primitive = p if primitive is None else primitive
            m.update_stats = u if update_stats is None else update_stats
        yield model
    finally:
        for m, p, u in saved:
            m.primitive, m.update_stats = p, u


def frozen_stats(model: nn.Module) -> contextlib.AbstractContextManager:
    """Forward passes that use batch statistics but leave the running statistics untouched."""
    return batchnorm_mode(model, update_stats=False)


# ----------------------------------------------------------------------------------------------------- models

class MLP(nn.Sequential):
    """Flatten → [Linear → (BatchNorm) → σ] × depth → Linear."""

    def __init__(self, in_features: int, num_classes: int, width: int = 256, depth: int = 2,
                 activation: str = "relu", beta: float = 1.0, batchnorm: bool = False):
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for _ in range(depth):
            layers.append(nn.Linear(d, width))
            if batchnorm:
                layers.append(BatchNorm(width))
            layers.append(make_activation(activation, beta))
            d = width
        layers.append(nn.Linear(d, num_classes))
        super().__init__(*layers)


class SmallCNN(nn.Sequential):
    """[conv 3×3 → (BatchNorm) → σ → max-pool 2] for each of ``channels`` → Flatten → Linear(fc) → σ → Linear: a
    convnet whose second-order steps a 2-core CPU can afford (``cnn-16-32-128-bn``: 0.2 M weights)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, channels: list[int], fc: int,
                 activation: str = "relu", beta: float = 1.0, batchnorm: bool = False):
        layers: list[nn.Module] = []
        for c in channels:
            layers += [nn.Conv2d(in_channels, c, 3, padding=1, bias=not batchnorm)] + \
                [BatchNorm(c)] * batchnorm + [make_activation(activation, beta), MaxPool2d(2)]
            in_channels, image_size = c, image_size // 2
        layers += [nn.Flatten(), nn.Linear(in_channels * image_size ** 2, fc), make_activation(activation, beta),
                   nn.Linear(fc, num_classes)]
        super().__init__(*layers)


class WideBasic(nn.Module):
    """Pre-activation wide basic block (Zagoruyko & Komodakis 2016): BN-σ-conv-BN-σ-conv + shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, activation: str, beta: float):
        super().__init__()
        self.bn1, self.act1 = BatchNorm(cin), make_activation(activation, beta)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.act2 = BatchNorm(cout), make_activation(activation, beta)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        o = self.act1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        o = self.conv2(self.act2(self.bn2(self.conv1(o))))
        return o + skip


class WideResNet(nn.Module):
    """WRN-depth-k for 32×32 or 28×28 images (CIFAR layout: 16 → 16k → 32k → 64k channels)."""

    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10, in_channels: int = 3,
                 activation: str = "relu", beta: float = 1.0):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n ≥ 1 (10, 16, 22, 28, …), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for g in range(3):
            for i in range(n):
                cin = widths[g] if i == 0 else widths[g + 1]
                blocks.append(WideBasic(cin, widths[g + 1], (1 if g == 0 else 2) if i == 0 else 1, activation, beta))
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.act = BatchNorm(widths[3]), make_activation(activation, beta)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        o = self.act(self.bn(self.blocks(self.conv(x))))
        return self.fc(o.mean((2, 3)))


RESNETS = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
           "resnet50": torchvision.models.resnet50}
PRETRAINED = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "resnet50": "ResNet50_Weights"}


def _replace_relus(module: nn.Module, activation: str, beta: float) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, make_activation(activation, beta))
        else:
            _replace_relus(child, activation, beta)


def load_pretrained_state(name: str) -> dict:
    """ImageNet weights for a torchvision ResNet from the local torch hub cache only (never a download)."""
    weights = getattr(torchvision.models, PRETRAINED[name]).IMAGENET1K_V1
    path = torch.hub.get_dir() + "/checkpoints/" + weights.url.rsplit("/", 1)[-1]
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"ImageNet weights for {name} are not in the torch cache: expected {path}. Download "
            f"{weights.url} on a machine with internet and copy it there (or set TORCH_HOME).") from None


def head_name(model: nn.Module) -> str:
    """The classification head: the last ``nn.Linear`` among the model's modules."""
    heads = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head")
    return heads[-1]


def load_backbone(model: nn.Module, state: dict) -> list[str]:
    """Copy every entry of ``state`` into ``model`` except the head's (:func:`head_name`), which stays as built —
    a new head, as in fine-tuning; returns the names copied. Every non-head entry of the model must be in
    ``state`` with the same shape (else ``ValueError`` listing the mismatches): a backbone is loaded whole or not
    at all."""
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


def torchvision_resnet(name: str, num_classes: int, in_channels: int = 3, activation: str = "relu",
                       beta: float = 1.0, pretrained: bool = False) -> nn.Module:
    """torchvision's ResNet with :class:`BatchNorm`, any activation, optionally ImageNet weights, new head."""
    model = RESNETS[name](weights=None, norm_layer=BatchNorm)
    if pretrained:
        model.load_state_dict(load_pretrained_state(name))
    _replace_relus(model, activation, beta)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


MODEL_PATTERNS = {
    "mlp-<width>x<depth>": re.compile(r"mlp-(\d+)x(\d+)(-bn)?"),
    "wrn-<depth>-<width>": re.compile(r"wrn-(\d+)-(\d+)"),
    "cnn-<channels>-…-<fc>[-bn]": re.compile(r"cnn((?:-\d+)+)-(\d+)(-bn)?"),
    "resnet18|resnet34|resnet50[-pretrained]": re.compile(r"(resnet18|resnet34|resnet50)(-pretrained)?"),
}


def check_model(name: str) -> None:
    """Raise ``ValueError`` for a name :func:`build_model` cannot build: an unknown form, or a known form with
    numbers no network has (checked here so that a grid fails before its first run loads any data)."""
    if not any(p.fullmatch(name) for p in MODEL_PATTERNS.values()):
        raise ValueError(f"unknown model {name!r}; valid forms: {', '.join(MODEL_PATTERNS)} "
                         "(e.g. 'mlp-256x2', 'mlp-256x2-bn', 'cnn-16-32-128-bn', 'wrn-16-4', 'wrn-28-10', 'resnet34-pretrained')")
    if m := MODEL_PATTERNS["mlp-<width>x<depth>"].fullmatch(name):
        if int(m[1]) < 1 or int(m[2]) < 1:  # width 0 gives constant logits, depth 0 a linear model by another name
            raise ValueError(f"model {name!r}: an MLP needs width ≥ 1 and depth ≥ 1 (mlp-<width>x<depth>, "
                             f"e.g. 'mlp-256x2'), got width {int(m[1])}, depth {int(m[2])}")
    if m := MODEL_PATTERNS["wrn-<depth>-<width>"].fullmatch(name):
        depth, width = int(m[1]), int(m[2])
        if (depth - 4) % 6 or depth < 10:  # WideResNet's own rule
            raise ValueError(f"model {name!r}: WideResNet depth must be 6n + 4 with n ≥ 1 (10, 16, 22, 28, …), "
                             f"got {depth}")
        if width < 1:
            raise ValueError(f"model {name!r}: WideResNet width must be ≥ 1, got {width}")
    m = MODEL_PATTERNS["cnn-<channels>-…-<fc>[-bn]"].fullmatch(name)
    if m and min(int(c) for c in (*m[1].split("-")[1:], m[2])) < 1:
        raise ValueError(f"model {name!r}: every width of a small CNN must be ≥ 1")


def build_model(name: str, num_classes: int, in_channels: int, image_size: int, activation: str = "relu",
                beta: float = 1.0) -> nn.Module:
    """A model from its name: ``mlp-256x2[-bn]``, ``cnn-16-32-128[-bn]``, ``wrn-16-4``, ``resnet34[-pretrained]``."""
    check_model(name)
    if m := MODEL_PATTERNS["mlp-<width>x<depth>"].fullmatch(name):
        return MLP(in_channels * image_size ** 2, num_classes, int(m[1]), int(m[2]), activation, beta,
                   batchnorm=bool(m[3]))
    if m := MODEL_PATTERNS["wrn-<depth>-<width>"].fullmatch(name):
        return WideResNet(int(m[1]), int(m[2]), num_classes, in_channels, activation, beta)
    if m := MODEL_PATTERNS["cnn-<channels>-…-<fc>[-bn]"].fullmatch(name):
        return SmallCNN(in_channels, image_size, num_classes, [int(c) for c in m[1].split("-")[1:]], int(m[2]),
                        activation, beta, batchnorm=bool(m[3]))
    m = MODEL_PATTERNS["resnet18|resnet34|resnet50[-pretrained]"].fullmatch(name)
    return torchvision_resnet(m[1], num_classes, in_channels, activation, beta, pretrained=bool(m[2]))


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """``auto``: CUDA if available. CUDA means the current device (under torchrun, ``cuda:LOCAL_RANK``)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but CUDA is not available; use device='auto' or 'cpu'")
    return torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device(device)
