"""Methods: closed forms on a quadratic, dense-matrix checks on a tiny float64 network, BatchNorm bookkeeping,
Monte-Carlo expectations (5-standard-error bounds), bad input, and a benchmark smoke run."""
import importlib.util
import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import jacrev
from torch.nn import functional as F

from hessreg import steps
from hessreg.methods import METHODS, check_method, get_method
from hessreg.models import MLP, build_model
from tests.oracle import Dense, tiny_cnn, tiny_cnn_batch

DT = torch.float64


# ------------------------------------------------------------------------------------------- quadratic

class Quadratic(nn.Module):
    """z = θ (the input is ignored); with ``quad_loss`` the loss is ½θᵀAθ, ∇L = Aθ, H = A."""

    def __init__(self, theta):
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x):
        return self.theta


def _quadratic(d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
    a = q @ torch.diag(torch.linspace(0.5, 3.0, d, dtype=DT)) @ q.T
    theta = torch.randn(d, generator=g, dtype=DT)
    return Quadratic(theta), a, theta


def _quad_grad(name, model, a, **hp):
    loss_fn = lambda z, y: 0.5 * z @ a @ z  # noqa: E731
    model.zero_grad()
    before = model.theta.detach().clone()
    METHODS[name].step(model, None, None, loss_fn, **check_method(name, hp))
    assert torch.equal(model.theta.detach(), before)  # the step leaves θ where it found it
    return model.theta.grad.detach().clone()


@pytest.mark.parametrize("rho", [0.05, 0.7])
def test_quadratic_closed_forms(rho):
    model, a, th = _quadratic()
    g = a @ th
    close = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_quad_grad("pusam", model, a, rho=rho), (a + rho * a @ a) @ th, **close)
    torch.testing.assert_close(_quad_grad("gradient_penalty", model, a, rho=rho, p=2), (a + rho * a @ a) @ th, **close)
    psam = g + rho * a @ a @ th / g.norm()
    torch.testing.assert_close(_quad_grad("psam", model, a, rho=rho), psam, **close)
    torch.testing.assert_close(_quad_grad("gradient_penalty", model, a, rho=rho, p=1), psam, **close)
    torch.testing.assert_close(_quad_grad("sam", model, a, rho=rho), a @ (th + rho * g / g.norm()), **close)
    torch.testing.assert_close(_quad_grad("sgd", model, a), g, **close)
    # GN-PSAM on a quadratic: z = θ so J = I, H_z = A, G = A: the same as PSAM
    torch.testing.assert_close(_quad_grad("gn_psam", model, a, rho=rho), psam, **close)


def test_quadratic_nso_two_sided_is_exact_for_every_draw():
    model, a, th = _quadratic()
    for seed in range(5):
        for k, lam in [(1, 0.0), (3, 0.0), (2, 0.4)]:
            torch.manual_seed(seed)
            got = _quad_grad("nso", model, a, sigma=1.0, k=k, two_sided=True, lam=lam)
            torch.testing.assert_close(got, a @ th, rtol=1e-12, atol=1e-12)
    torch.manual_seed(0)  # one-sided: the first-order term a U does not cancel (so the test above can fail)
    assert (_quad_grad("nso", model, a, sigma=1.0, k=1, two_sided=False, lam=0.0) - a @ th).abs().max() > 0.1


def test_quadratic_weight_noise_is_gradient_at_perturbed_point(monkeypatch):
    model, a, th = _quadratic()
    eps = [torch.linspace(-1, 1, th.numel(), dtype=DT)]
    monkeypatch.setattr(steps, "_gaussian", lambda params, std: [e * std for e in eps])
    torch.testing.assert_close(_quad_grad("weight_noise", model, a, sigma=0.3), a @ (th + 0.3 * eps[0]))


def test_quadratic_rsam(monkeypatch):
    model, a, th = _quadratic()
    eps = torch.linspace(-1, 1, th.numel(), dtype=DT)
    monkeypatch.setattr(steps, "_gaussian", lambda params, std: [eps * std])
    gt = a @ (th + 0.2 * eps)
    torch.testing.assert_close(_quad_grad("rsam", model, a, rho=0.3, sigma=0.2),
                               a @ (th + 0.3 * gt / gt.norm()), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------- tiny network

def _net(seed=0, batch=5, width=4, classes=3, activation="gelu"):
    torch.manual_seed(seed)
    model = MLP(3, classes, width=width, depth=1, activation=activation).to(DT)
    x = torch.randn(batch, 3, dtype=DT)
    y = torch.randint(0, classes, (batch,))
    return model, x, y


def _flat_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _step(name, model, x, y, loss_fn=F.cross_entropy, **hp):
    model.zero_grad()
    out = METHODS[name].step(model, x, y, loss_fn, **check_method(name, hp))
    return _flat_grad(model).clone(), out


def test_gn_psam_matches_dense_gauss_newton():
    model, x, y = _net()
    d = Dense(model, x, y)
    g, gn = d.grad(), d.gauss_newton()
    rho = 0.3
    got, _ = _step("gn_psam", model, x, y, rho=rho)
    torch.testing.assert_close(got, g + rho * gn @ g / g.norm(), rtol=1e-10, atol=1e-12)
    got, _ = _step("psam", model, x, y, rho=rho)  # and PSAM with the full Hessian differs from it
    torch.testing.assert_close(got, g + rho * d.hessian() @ g / g.norm(), rtol=1e-10, atol=1e-12)
    assert (d.hessian() - gn).abs().max() > 1e-3  # the NME is not negligible here: the tests can fail


def _conv_bn_net():
    """The shared tiny convolutional network with BatchNorm, train mode (GN-PSAM's forward-mode JVP path)."""
    return (tiny_cnn().train(), *tiny_cnn_batch())


@pytest.mark.parametrize("name", ["mlp-6x2-bn", "conv-bn"])
def test_gn_psam_with_batchnorm_matches_dense_gauss_newton(name):
    """Train-mode BatchNorm (batch statistics), both ways of computing J u: the double-backward trick on the MLP,
    a forward-mode JVP on the convolutional network."""
    if name == "conv-bn":
        model, x, y = _conv_bn_net()
    else:
        torch.manual_seed(0)
        model = build_model(name, 3, 1, 4, "gelu").to(DT).train()
        x, y = torch.randn(8, 1, 4, 4, dtype=DT), torch.randint(0, 3, (8,))
    assert steps._forward_jvp_wins(model) == (name == "conv-bn")
    d = Dense(model, x, y, train_mode=True)
    g, gn = d.grad(), d.gauss_newton()
    got, _ = _step("gn_psam", model, x, y, rho=0.4)
    torch.testing.assert_close(got, g + 0.4 * gn @ g / g.norm(), rtol=1e-10, atol=1e-12)
    assert (d.hessian() - gn).abs().max() > 1e-3  # G ≠ H here: a product of H would fail


def test_gn_psam_with_mse_regression():
    """GN-PSAM needs no classification loss: H_z comes from autograd (2/(BC) I for the mean MSE)."""
    model, x, _ = _net(seed=1)
    target = torch.randn(5, 3, dtype=DT)
    d = Dense(model, x, target, F.mse_loss)
    g = d.grad()
    got, _ = _step("gn_psam", model, x, target, F.mse_loss, rho=0.2)
    torch.testing.assert_close(got, g + 0.2 * d.gauss_newton() @ g / g.norm(), rtol=1e-10, atol=1e-12)


def _mean_and_se(samples):
    s = torch.stack(samples)
    return s.mean(0), s.std(0) / math.sqrt(len(samples))


def _basis_draws(monkeypatch):
    """Replace every noise/probe draw by std·√P·(±e_i), cycling over the 2P signed basis vectors. This
    distribution has mean 0 and E[vvᵀ] = std²I like N(0, std²I), so a mean over 2P steps is exactly the
    expectation of anything quadratic in the draw (Hutchinson estimates and their gradients, the second-order
    term of weight noise). That the real draw is N(0, std²I) is tested separately."""
    state = {"i": 0}

    def draw(params, std):
        n = sum(p.numel() for p in params)
        i, sign = divmod(state["i"] % (2 * n), 2)
        state["i"] += 1
        flat = torch.zeros(n, dtype=params[0].dtype)
        flat[i] = (1 - 2 * sign) * std * math.sqrt(n)
        return [c.view_as(p) for c, p in zip(torch.split(flat, [p.numel() for p in params]), params)]

    monkeypatch.setattr(steps, "_gaussian", draw)


def _exact_mean(name, model, x, y, n_steps, **hp):
    steps = [_step(name, model, x, y, **hp) for _ in range(n_steps)]
    pens = [s[1].penalty for s in steps]
    return torch.stack([s[0] for s in steps]).mean(0), None if pens[0] is None else torch.stack(pens).mean()


def test_hessian_trace_penalty_expected_gradient(monkeypatch):
    """E_v[step] = ∇L + σ² ∇tr H and E_v[vᵀHv] = tr H (exact averages over the signed basis)."""
    model, x, y = _net()
    d = Dense(model, x, y)
    _basis_draws(monkeypatch)
    n = d.theta.numel()
    for n_probes in (1, 2):  # 2n signed basis probes in all
        grad, pen = _exact_mean("hessian_trace", model, x, y, 2 * n // n_probes, sigma2=0.5, n_probes=n_probes)
        torch.testing.assert_close(grad, d.grad() + 0.5 * d.grad_trace_hessian(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(pen, torch.trace(d.hessian()), rtol=1e-10, atol=1e-12)


def test_gaussian_draws_are_normal_with_std():
    torch.manual_seed(0)
    for std in (1.0, 0.1):
        v = torch.cat([t.reshape(-1) for t in steps._gaussian([torch.zeros(200, 100, dtype=DT)] * 2, std)]) / std
        assert abs(float(v.mean())) < 5 / math.sqrt(v.numel())
        assert abs(float(v.var()) - 1) < 5 * math.sqrt(2 / v.numel())


def test_weight_noise_matches_half_sigma2_trace_to_second_order(monkeypatch):
    """E_ε ∇L(θ + ε) = ∇L + ½σ²∇tr H + O(σ⁴): averaged exactly over the signed basis (which shares the
    Gaussian's first two moments), the remainder is ≪ the ½σ² term and shrinks like σ⁴ (÷16 when σ halves).
    The Hessian-trace penalty with σ²/2 averages to the same ∇(L + ½σ² tr H)."""
    model, x, y = _net()
    d = Dense(model, x, y)
    n, g, grad_tr = d.theta.numel(), d.grad(), d.grad_trace_hessian()
    _basis_draws(monkeypatch)
    errors = []
    for sigma in (0.004, 0.002):
        target = g + 0.5 * sigma ** 2 * grad_tr
        mean, _ = _exact_mean("weight_noise", model, x, y, 2 * n, sigma=sigma)
        errors.append(float((mean - target).abs().max()))
        assert errors[-1] < 0.05 * float((0.5 * sigma ** 2 * grad_tr).abs().max())
    sigma = 0.004
    trace_mean, _ = _exact_mean("hessian_trace", model, x, y, 2 * n, sigma2=sigma ** 2 / 2)
    torch.testing.assert_close(trace_mean, g + 0.5 * sigma ** 2 * grad_tr, rtol=1e-10, atol=1e-13)
    assert 10 < errors[0] / errors[1] < 24  # O(σ⁴) remainder


def test_gn_trace_expectation_is_trace_g(monkeypatch):
    """Sampled labels: E_ŷ[B‖∇L̄(θ, ŷ)‖²] = tr G, the expectation taken exactly over all C^B label vectors."""
    model, x, y = _net(batch=3)
    trace_g = torch.trace(Dense(model, x, y).gauss_newton())
    prob = torch.softmax(model(x).detach(), -1)
    combos = list(itertools.product(range(3), repeat=3))
    it = iter(combos)
    monkeypatch.setattr(steps, "_sample_labels", lambda logits: torch.tensor(next(it)))
    expectation = 0.0
    for combo in combos:
        weight = math.prod(float(prob[b, c]) for b, c in enumerate(combo))
        expectation += weight * _step("gn_trace", model, x, y, sigma2=1e-3)[1].penalty
    torch.testing.assert_close(expectation, trace_g, rtol=1e-10, atol=1e-12)


def test_sampled_labels_follow_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, -1.0]], dtype=DT).expand(30000, 3)
    freq = torch.bincount(steps._sample_labels(logits), minlength=3).to(DT) / 30000
    p = torch.softmax(logits[0], -1)
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / 30000).sqrt()).all()


def test_gn_trace_hutchinson_expectation_is_trace_g(monkeypatch):
    model, x, y = _net(batch=4)
    d = Dense(model, x, y)
    _basis_draws(monkeypatch)
    _, pen = _exact_mean("gn_trace_hutchinson", model, x, y, 2 * d.theta.numel(), sigma2=1e-3)
    torch.testing.assert_close(pen, torch.trace(d.gauss_newton()), rtol=1e-10, atol=1e-12)


def test_gn_trace_hutchinson_gradient(monkeypatch):
    """For a fixed probe v the update is ∇L + σ² ∇_θ(vᵀG(θ)v), G(θ) from dense matrices."""
    model, x, y = _net(batch=4)
    d = Dense(model, x, y)
    _basis_draws(monkeypatch)  # first probe: v = √n e_0
    got, _ = _step("gn_trace_hutchinson", model, x, y, sigma2=0.1)
    n = d.theta.numel()

    def vgv(theta):
        u = jacrev(d.logits)(theta).reshape(-1, n)[:, 0].reshape(-1, 3) * math.sqrt(n)  # J v
        p = torch.softmax(d.logits(theta), -1)
        return ((p * u * u).sum(-1) - (p * u).sum(-1).square()).mean()

    torch.testing.assert_close(got, d.grad() + 0.1 * torch.func.grad(vgv)(d.theta), rtol=1e-10, atol=1e-12)


def test_penalties_at_zero_weight_are_sgd():
    model, x, y = _net()
    g = Dense(model, x, y).grad()
    for name, hp in [("gn_trace", {"sigma2": 0.0}), ("gn_trace_hutchinson", {"sigma2": 0.0}),
                     ("hessian_trace", {"sigma2": 0.0}), ("psam", {"rho": 0.0}), ("gn_psam", {"rho": 0.0}),
                     ("sam", {"rho": 0.0}), ("asam", {"rho": 0.0}), ("nso", {"lam": 1.0}),
                     ("label_smoothing", {"alpha": 0.0}), ("weight_noise", {"sigma": 0.0}),
                     ("rsam", {"rho": 0.0, "sigma": 0.0})]:
        torch.testing.assert_close(_step(name, model, x, y, **hp)[0], g, rtol=1e-12, atol=1e-14)


def test_gn_trace_gradient_for_fixed_sampled_labels():
    """For the drawn ŷ, the update is ∇L + σ² ∇(B‖∇L̄(θ, ŷ)‖²); ŷ is recovered by replaying the RNG."""
    model, x, y = _net(batch=4)
    d = Dense(model, x, y)
    out, pen = _assert_gn_trace_step(model, x, y, d, rtol=1e-10)
    torch.testing.assert_close(out.penalty, pen(d.theta))


def _assert_gn_trace_step(model, x, y, d: Dense, *, rtol: float):
    """The GN-trace step against the dense oracle for the sampled labels ŷ (recovered by replaying the RNG):
    ∇L + σ² ∇(B‖∇L̄(θ, ŷ)‖²), σ² = 0.01. Returns the step's output and the dense penalty."""
    torch.manual_seed(5)
    got, out = _step("gn_trace", model, x, y, sigma2=0.01)
    torch.manual_seed(5)
    y_hat = steps._sample_labels(out.logits)
    pen = lambda t: len(y) * torch.func.grad(lambda s: F.cross_entropy(d.logits(s), y_hat))(t).square().sum()  # noqa
    torch.testing.assert_close(got, d.grad() + 0.01 * torch.func.grad(pen)(d.theta), rtol=rtol, atol=1e-12)
    return out, pen


def test_asam_perturbation():
    """ASAM's gradient is taken at θ + ρ T²g/‖Tg‖, T = |w| + η on weights, 1 on biases."""
    model, x, y = _net()
    d = Dense(model, x, y)
    g = d.grad()
    t = torch.cat([(p.detach().abs() + 0.01 if "weight" in n else torch.ones_like(p)).reshape(-1)
                   for n, p in model.named_parameters()])
    e = 0.5 * t * t * g / (t * g).norm()
    got, _ = _step("asam", model, x, y, rho=0.5, eta=0.01)
    torch.testing.assert_close(got, torch.func.grad(d.loss)(d.theta + e), rtol=1e-10, atol=1e-12)


def test_label_smoothing_gradient():
    model, x, y = _net()
    d = Dense(model, x, y, lambda z, t: F.cross_entropy(z, t, label_smoothing=0.3))
    got, out = _step("label_smoothing", model, x, y, alpha=0.3)
    torch.testing.assert_close(got, d.grad())
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, y))  # reported loss: the run's loss_fn


# ------------------------------------------------------------------------------------------- BatchNorm

ALL = [n for n in METHODS]


@pytest.mark.parametrize("name", ALL)
def test_every_method_restores_weights_and_updates_stats_once(name):
    torch.manual_seed(0)
    model = build_model("mlp-6x2-bn", 3, 1, 4, "gelu").to(DT).train()
    x, y = torch.randn(8, 1, 4, 4, dtype=DT), torch.randint(0, 3, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hp = {"sigma": 0.05} if "sigma" in METHODS[name].hparams else {}
    grad, out = _step(name, model, x, y, **hp)
    after = model.state_dict()
    for k, v in before.items():
        if k.endswith("num_batches_tracked"):
            assert int(after[k]) == int(v) + 1, k
        elif "running" not in k:
            assert torch.equal(after[k], v), k  # weights restored bit for bit
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert torch.isfinite(out.loss) and out.logits.shape == (8, 3)


@pytest.mark.parametrize("name", ["sgd", "sam", "asam", "psam", "gn_psam", "hessian_trace", "gn_trace"])
def test_running_stats_are_those_of_the_clean_pass(name):
    torch.manual_seed(0)
    model = build_model("mlp-6x2-bn", 3, 1, 4, "gelu").to(DT).train()
    x, y = torch.randn(8, 1, 4, 4, dtype=DT), torch.randint(0, 3, (8,))
    ref = build_model("mlp-6x2-bn", 3, 1, 4, "gelu").to(DT).train()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        ref(x)
    _step(name, model, x, y)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=1e-12, atol=1e-14, msg=k)


def test_nso_running_stats_average_cancels_first_order():
    """λ = 0: no clean pass, running stats from the mean of the ± passes' batch statistics — within O(σ²) of the
    clean pass's, while one perturbed pass alone is O(σ) away."""
    torch.manual_seed(0)
    model = build_model("mlp-6x2-bn", 3, 1, 4, "gelu").to(DT).train()
    x, y = torch.randn(8, 1, 4, 4, dtype=DT), torch.randint(0, 3, (8,))
    clean = build_model("mlp-6x2-bn", 3, 1, 4, "gelu").to(DT).train()
    clean.load_state_dict(model.state_dict())
    with torch.no_grad():
        clean(x)
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def deviation(two_sided):
        model.load_state_dict(start)
        torch.manual_seed(1)
        _step("nso", model, x, y, sigma=1e-3, two_sided=two_sided)
        return max(float((model.state_dict()[k] - clean.state_dict()[k]).abs().max())
                   for k in start if "running" in k)

    two, one = deviation(True), deviation(False)
    assert one > 1e-6 and two < 1e-2 * one


# ------------------------------------------------------------------------------------------- bad input

def test_bad_input_errors():
    with pytest.raises(ValueError, match="rho must be ≥ 0"):
        check_method("sam", {"rho": -0.1})
    with pytest.raises(ValueError, match="rho must be ≥ 0"):
        check_method("psam", {"rho": -1})
    for name in ["weight_noise", "nso", "rsam"]:
        with pytest.raises(ValueError, match="sigma must be ≥ 0"):
            check_method(name, {"sigma": -0.01})
    with pytest.raises(ValueError, match="k must be ≥ 1"):
        check_method("nso", {"k": 0})
    with pytest.raises(TypeError, match="k must be an integer"):
        check_method("nso", {"k": 1.5})
    with pytest.raises(ValueError, match=r"p must be one of \(1, 2\)"):
        check_method("gradient_penalty", {"p": 3})
    with pytest.raises(ValueError, match="unknown method 'sgdd'"):
        get_method("sgdd")
    with pytest.raises(ValueError, match="has no hyperparameter"):
        check_method("sam", {"sigma": 0.1})
    for name in ["gn_trace", "gn_trace_hutchinson", "label_smoothing"]:
        with pytest.raises(ValueError, match="needs a classification"):
            check_method(name, {}, classification=False)
    for name in ["sgd", "sam", "psam", "gn_psam", "hessian_trace", "weight_noise", "nso"]:
        check_method(name, {}, classification=False)  # these work with any loss
    assert check_method("nso", {"k": 2.0})["k"] == 2 and isinstance(check_method("nso", {"k": 2.0})["k"], int)


def test_registry_names():
    assert set(METHODS) >= {"sgd", "sam", "asam", "psam", "pusam", "gradient_penalty", "gn_psam", "weight_noise",
                            "hessian_trace", "gn_trace", "gn_trace_hutchinson", "nso", "label_smoothing", "rsam"}


# ------------------------------------------------------------------------------------------- benchmark

def test_benchmark_smoke(tmp_path):
    path = Path(__file__).resolve().parents[1] / "experiments" / "bench_methods.py"
    spec = importlib.util.spec_from_file_location("bench_methods", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out_file = tmp_path / "bench.json"
    out = bench.main(["--device", "cpu", "--model", "mlp-8x1", "--batch-size", "4", "--warmup", "1",
                      "--iters", "1", "--out", str(out_file)])
    assert out_file.exists()
    assert set(out) >= {"methods", "denominator", "sgd_ms", "versions", "device"}
    assert set(out["methods"]) == set(METHODS) - {"gradient_penalty"}
    for name, r in out["methods"].items():
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0 and r["ms"] > 0, name


@pytest.mark.parametrize("name,hp,passes", [
    ("sgd", {}, 1), ("sam", {}, 2), ("rsam", {}, 2), ("weight_noise", {}, 1), ("psam", {}, 1), ("gn_psam", {}, 1),
    ("hessian_trace", {}, 1), ("gn_trace", {}, 1), ("nso", {}, 2), ("nso", {"k": 3}, 6),
    ("nso", {"two_sided": False, "k": 2}, 2), ("nso", {"lam": 0.5}, 3), ("gn_psam_conv", {}, 2)])
def test_forward_pass_count(name, hp, passes):
    """No wasted passes: NSO with λ = 0 spends exactly 2k (two-sided) or k (one-sided) forward passes."""
    model, x, y = _conv_bn_net() if name == "gn_psam_conv" else _net()  # conv: + 1 forward-mode JVP pass
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    _step(name.removesuffix("_conv"), model, x, y, **hp)
    assert len(calls) == passes


def test_ensemble_benchmark_smoke(tmp_path):
    """The seed-ensemble benchmark checks the ensemble's gradients against separate runs before timing them."""
    from experiments.bench_ensemble import main
    out = main(["--model", "mlp-8x1", "--seeds", "3", "--batch-size", "4", "--threads", "1", "--warmup", "1",
                "--iters", "1", "--out", str(tmp_path / "e.json")])
    (row,) = out["layouts"]
    assert row["runs_per_hour_gain"] > 0 and isinstance(row["kept"], bool) and (tmp_path / "e.json").exists()


# ------------------------------------------------------------------- the small convnet's closed-form paths

def _small_cnn(channels_last: bool):
    """cnn-2-3-4-bn in float64, train mode, in either memory format: conv → BatchNorm (4-D) → GELU → max-pool twice,
    the layers whose double backward is closed-form on the CPU (the dense oracle runs PyTorch's own ops)."""
    torch.manual_seed(0)
    model = build_model("cnn-2-3-4-bn", 3, 1, 8, "gelu").to(DT).train()
    x, y = torch.randn(6, 1, 8, 8, dtype=DT) * 2, torch.randint(0, 3, (6,))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(memory_format=fmt), x.contiguous(memory_format=fmt), y


@pytest.mark.parametrize("channels_last", [False, True])
def test_second_order_steps_on_the_small_cnn_match_the_dense_oracle(channels_last):
    """PSAM, PUSAM and GN-PSAM through the convnet-only closed forms (BatchNorm's fused double backward, GELU's,
    max-pooling's) equal the dense float64 H and G."""
    model, x, y = _small_cnn(channels_last)
    d = Dense(model, x, y, train_mode=True)
    g, h, gn = d.grad(), d.hessian(), d.gauss_newton()
    assert (h - gn).abs().max() > 1e-3
    for name, want in [("psam", g + 0.3 * h @ g / g.norm()), ("pusam", g + 0.3 * h @ g),
                       ("gn_psam", g + 0.3 * gn @ g / g.norm())]:
        got, _ = _step(name, model, x, y, rho=0.3)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gn_trace_on_the_small_cnn_for_fixed_sampled_labels(channels_last):
    model, x, y = _small_cnn(channels_last)
    _assert_gn_trace_step(model, x, y, Dense(model, x, y, train_mode=True), rtol=1e-9)


def test_hessian_trace_on_the_small_cnn(monkeypatch):
    """Third order through the closed forms' graphs: E_v[step] = ∇L + σ² ∇tr H over the signed basis."""
    model, x, y = _small_cnn(channels_last=True)
    d = Dense(model, x, y, train_mode=True)
    _basis_draws(monkeypatch)
    grad, pen = _exact_mean("hessian_trace", model, x, y, 2 * d.theta.numel(), sigma2=0.5, n_probes=1)
    torch.testing.assert_close(pen, torch.trace(d.hessian()), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, d.grad() + 0.5 * d.grad_trace_hessian(), rtol=1e-9, atol=1e-11)
