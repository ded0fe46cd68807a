"""Activations: derivatives at every order, replaced σ'', torch.func, bad input. All in float64."""
import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import grad, jvp, vmap
from torch.nn import functional as F

from hessreg.activations import (ACTIVATIONS, DEFAULT_BETA, beta_gelu_second_derivative, make_activation,
                                 normal_pdf, uses_beta)

DT = torch.float64
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _x(n=24, device="cpu", lo=0.05, hi=3.0, seed=0):
    """Points away from 0 (ReLU's kink defeats finite differences there), both signs."""
    g = torch.Generator().manual_seed(seed)
    mag = lo + (hi - lo) * torch.rand(n, generator=g, dtype=DT)
    sign = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(DT)
    return (mag * sign).to(device).requires_grad_()


def derivatives(act, x, order):
    """[σ(x), σ'(x), …] up to ``order`` by repeated backward (elementwise activation, so sum() is exact)."""
    out = [act(x)]
    for _ in range(order):
        (d,) = torch.autograd.grad(out[-1].sum(), x, create_graph=True)
        out.append(d)
    return out


def second_map(act):
    """x ↦ σ''(x) as double backward sees it."""
    def f(x):
        return derivatives(act, x, 2)[2]
    return f


STANDARD = [("relu", 1.0), ("gelu", 1.0), ("gelu_tanh", 1.0), ("beta_gelu", 0.5), ("beta_gelu", 3.0)]
REPLACED = [("gelu_nme_ablated", 1.0), ("relu_synthetic_nme", 100.0), ("relu_synthetic_nme", 2.0)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,beta", STANDARD)
def test_standard_gradcheck_gradgradcheck(name, beta, device):
    act = make_activation(name, beta)
    x = _x(device=device)
    assert gradcheck(act, (x,))
    assert gradgradcheck(act, (x,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,beta", REPLACED)
def test_replaced_gradcheck_and_higher_orders_consistent(name, beta, device):
    """σ' is the base activation's (gradcheck); the replaced σ'' is the true derivative of what 3rd-order
    backward sees (gradcheck and gradgradcheck of x ↦ σ''(x): orders 3 and 4 consistent with order 2)."""
    act = make_activation(name, beta)
    x = _x(device=device, hi=3.0 / max(beta, 1.0) * 3)
    assert gradcheck(act, (x,))
    assert gradcheck(second_map(act), (x,))
    assert gradgradcheck(second_map(act), (x,))


def test_replaced_sigma2_really_differs_from_finite_differences():
    """gradgradcheck must fail for the ablated GELU: finite differences of σ' see GELU's true σ''."""
    act = make_activation("gelu_nme_ablated")
    assert not gradgradcheck(act, (_x(),), raise_exception=False)


@pytest.mark.parametrize("device", DEVICES)
def test_gelu_nme_ablated(device):
    x = torch.linspace(-6, 6, 1001, dtype=DT, device=device).requires_grad_()
    ablated = derivatives(make_activation("gelu_nme_ablated"), x, 3)
    gelu = derivatives(make_activation("gelu"), x, 2)
    torch.testing.assert_close(ablated[0], gelu[0], rtol=0, atol=1e-15)
    torch.testing.assert_close(ablated[1], gelu[1], rtol=0, atol=1e-14)
    assert torch.equal(ablated[2], torch.zeros_like(x))
    assert torch.equal(ablated[3], torch.zeros_like(x))
    assert gelu[2].abs().max() > 0.7  # GELU's own σ''(0) = 2φ(0) ≈ 0.80: the ablation changed something


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("beta", [100.0, 7.0])
def test_relu_synthetic_nme(beta, device):
    x = torch.linspace(-12 / beta, 12 / beta, 24001, dtype=DT, device=device).requires_grad_()
    s = derivatives(make_activation("relu_synthetic_nme", beta), x, 3)
    torch.testing.assert_close(s[0], torch.relu(x), rtol=0, atol=0)
    torch.testing.assert_close(s[1], (x > 0).to(DT), rtol=0, atol=0)
    bx = beta * x.detach()
    # Eq. 19: (β/√(2π)) exp(−β²x²/2) — with the /2 the code snippet drops
    torch.testing.assert_close(s[2], beta / math.sqrt(2 * math.pi) * torch.exp(-bx * bx / 2), rtol=1e-13, atol=0)
    torch.testing.assert_close(s[3], -beta ** 2 * bx * normal_pdf(bx) , rtol=1e-12, atol=1e-12 * beta ** 2)
    integral = torch.trapezoid(s[2].detach(), x.detach())
    assert abs(float(integral) - 1.0) < 1e-9  # tails beyond 12/β are < 1e-32; trapezoid error ~ h²


def test_synthetic_nme_default_beta_is_the_papers():
    assert DEFAULT_BETA["relu_synthetic_nme"] == 100.0 and uses_beta("relu_synthetic_nme")
    x = torch.zeros(1, dtype=DT, requires_grad=True)
    s2 = derivatives(make_activation("relu_synthetic_nme"), x, 2)[2]
    torch.testing.assert_close(s2, torch.full_like(x, 100 / math.sqrt(2 * math.pi)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("beta", [0.3, 1.0, 4.0, 30.0])
def test_beta_gelu_second_derivative_closed_form(beta, device):
    x = torch.linspace(-8 / beta, 8 / beta, 2001, dtype=DT, device=device).requires_grad_()
    d = derivatives(make_activation("beta_gelu", beta), x, 2)
    torch.testing.assert_close(d[0], x.detach() * 0.5 * (1 + torch.erf(beta * x.detach() / math.sqrt(2))))
    torch.testing.assert_close(d[2], beta_gelu_second_derivative(x.detach(), beta), rtol=1e-10, atol=1e-12 * beta)


def test_beta_gelu_tends_to_relu():
    """sup_x |x Φ(βx) − relu(x)| = c/β with c = max_t t Φ(−t) ≈ 0.16997: → 0 like 1/β."""
    t = torch.linspace(0, 5, 200001, dtype=DT)
    c = float((t * 0.5 * torch.erfc(t / math.sqrt(2))).max())
    x = torch.linspace(-3, 3, 600001, dtype=DT)
    gaps = []
    for beta in [1.0, 10.0, 100.0, 1000.0]:
        with torch.no_grad():
            gap = float((make_activation("beta_gelu", beta)(x) - torch.relu(x)).abs().max())
        assert gap <= c / beta * (1 + 1e-6)
        assert gap >= c / beta * 0.99  # the bound is attained (up to the grid): the test can fail
        gaps.append(gap)
    assert gaps[-1] < 2e-4


@pytest.mark.parametrize("name,beta", REPLACED + [("gelu", 1.0), ("beta_gelu", 3.0)])
def test_torch_func_transforms(name, beta):
    """grad, grad∘grad∘grad, vmap and jvp (forward-over-reverse) agree with autograd's derivatives."""
    act = make_activation(name, beta)
    x = _x(n=16, hi=3.0 / max(beta, 1.0) * 3)
    ref = [d.detach() for d in derivatives(act, x, 3)]
    x = x.detach()
    scalar = lambda t: act(t)  # noqa: E731  (scalar in, scalar out under vmap)
    torch.testing.assert_close(vmap(grad(scalar))(x), ref[1])
    torch.testing.assert_close(vmap(grad(grad(scalar)))(x), ref[2])
    torch.testing.assert_close(vmap(grad(grad(grad(scalar))))(x), ref[3])
    torch.testing.assert_close(grad(lambda t: act(t).sum())(x), ref[1])
    tangent = torch.linspace(0.5, 1.5, x.numel(), dtype=DT)
    _, out = jvp(act, (x,), (tangent,))
    torch.testing.assert_close(out, ref[1] * tangent)
    _, out = jvp(grad(lambda t: act(t).sum()), (x,), (tangent,))  # forward-over-reverse: σ'' t
    torch.testing.assert_close(out, ref[2] * tangent)
    torch.testing.assert_close(vmap(act)(x.view(4, 4)), act(x).view(4, 4))


def test_registry_and_bad_input():
    assert {"relu", "gelu", "gelu_tanh", "beta_gelu", "gelu_nme_ablated", "relu_synthetic_nme"} <= set(ACTIVATIONS)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        make_activation("swish")
    for name in ["beta_gelu", "relu_synthetic_nme"]:
        for bad in [0.0, -1.0]:
            with pytest.raises(ValueError, match="beta > 0"):
                make_activation(name, bad)
    assert not uses_beta("gelu_nme_ablated")


@pytest.mark.parametrize("name,beta", REPLACED)
def test_network_hvp_torch_func_matches_double_backward(name, beta):
    """In a network, forward-over-reverse (torch.func.jvp of grad over functional_call), vmap over probes, and
    double backward give the same Hessian-vector products; and the replaced σ'' changes them vs the base."""
    from hessreg.models import MLP
    torch.manual_seed(0)
    x = torch.randn(6, 3, dtype=DT) / max(beta, 1.0) ** 0.5
    y = torch.randint(0, 3, (6,))

    def hvps(act_name):
        torch.manual_seed(1)
        model = MLP(3, 3, width=5, depth=2, activation=act_name, beta=beta).to(DT)
        params = {k: v.detach() for k, v in model.named_parameters()}
        loss = lambda p: F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)  # noqa: E731
        vs = {k: torch.randn(3, *v.shape, dtype=DT) for k, v in params.items()}
        fwd_rev = vmap(lambda v: jvp(grad(loss), (params,), (v,))[1])(vs)
        ps = list(model.parameters())
        g = torch.autograd.grad(F.cross_entropy(model(x), y), ps, create_graph=True)
        for i in range(3):
            hv = torch.autograd.grad(g, ps, [vs[k][i] for k in params], retain_graph=True)
            for k, h in zip(params, hv):
                torch.testing.assert_close(fwd_rev[k][i], h, rtol=1e-10, atol=1e-12)
        return torch.cat([t.reshape(-1) for t in fwd_rev.values()])

    base = "gelu" if name == "gelu_nme_ablated" else "relu"
    assert (hvps(name) - hvps(base)).abs().max() > 1e-6


@pytest.mark.parametrize("channels_last", [False, True])
def test_convolutional_gelu_is_pytorchs_to_first_order_and_exact_beyond(channels_last):
    """GELU on (N, C, H, W) CPU tensors runs as activations._GELU: F.gelu's values and gradients bit for bit
    (float32: first-order records of convnets do not move), its closed-form 2nd and 3rd derivatives equal
    PyTorch's in float64, in either memory format, and torch.func and forward mode still work."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = (torch.randn(4, 3, 5, 5, generator=gen, dtype=dtype) * 3).contiguous(memory_format=fmt)
        v = torch.randn(x.shape, generator=gen, dtype=dtype)
        res = []
        for f in (F.gelu, make_activation("gelu")):
            xi = x.clone().requires_grad_()
            y = f(xi)
            g = torch.autograd.grad((y ** 3).sum(), xi, create_graph=True)[0]
            hv = torch.autograd.grad((g * v).sum(), xi, create_graph=True)[0]
            res.append((y, g, hv, torch.autograd.grad((hv * v).sum(), xi)[0]))
        assert torch.equal(res[0][0], res[1][0]) and torch.equal(res[0][1], res[1][1])
        if dtype == torch.float64:
            for a, b in zip(res[0][2:], res[1][2:]):
                torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
            assert res[1][2].is_contiguous(memory_format=fmt)
    act = make_activation("gelu")
    _, t = torch.func.jvp(act, (x,), (v,))
    torch.testing.assert_close(t, torch.func.jvp(F.gelu, (x,), (v,))[1])
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        torch.testing.assert_close(fwAD.unpack_dual(act(fwAD.make_dual(x, v))).tangent, t)
