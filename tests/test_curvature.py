"""Exactness tests of hessreg.curvature (products) and hessreg.estimators in float64 on tiny models (an MLP and a
CNN with BatchNorm).

Dense references come from the shared oracle (tests/oracle.py: torch.func of the loss as a function of the flat
parameter vector). Monte-Carlo tolerances are 5 standard deviations of the estimator, computed from the dense
matrices, never guessed.
"""
from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from hessreg import curvature as C
from hessreg import estimators as E
from hessreg.activations import BetaGELU, make_activation
from hessreg.models import BatchNorm, build_model
from tests.oracle import Dense

DT = torch.float64
ACTS = ["relu", "gelu", "beta_gelu"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def mlp(act: str, dtype=DT) -> nn.Module:
    torch.manual_seed(0)
    return build_model("mlp-5x2", 3, 2, 3, act, beta=3.0).to(dtype)


def cnn(act: str, dtype=DT) -> nn.Module:
    """Conv → BatchNorm → σ → Linear, with non-trivial BN affine parameters and running statistics."""
    torch.manual_seed(1)
    bn = BatchNorm(3)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), bn, make_activation(act, 3.0), nn.Flatten(),
                          nn.Linear(27, 3)).to(dtype)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    return model


def batch(n: int = 6, loss: str = "ce", seed: int = 2, dtype=DT) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 3, 3, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=g) if loss == "ce" else torch.randn(n, 3, generator=g, dtype=dtype)
    return x, y


def flat_dim(model: nn.Module) -> int:
    return sum(t.numel() for t in C.select_params(model).values())


def dense(kind, model, data, loss="ce", train_mode=False, method="fwd") -> torch.Tensor:
    """A from its products with every basis vector (vmapped)."""
    theta = C.select_params(model)
    eye = torch.eye(flat_dim(model), dtype=DT)
    basis = {n: t for n, t in zip(theta, eye.split([t.numel() for t in theta.values()], dim=1))}
    basis = {n: b.reshape(-1, *theta[n].shape) for n, b in basis.items()}
    return C.flatten_batched(C.matvec(kind, model, data, basis, loss=loss, train_mode=train_mode, method=method,
                                    batched=True))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


CASES = [("mlp", "ce", False), ("mlp", "mse", False), ("cnn", "ce", True), ("cnn", "ce", False)]


# ----------------------------------------------------------------------------------------------- H = G + N

@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("arch,loss,train_mode", CASES)
def test_hessian_is_gn_plus_nme(act, arch, loss, train_mode):
    model = (mlp if arch == "mlp" else cnn)(act)
    x, y = batch(loss=loss)
    oracle = Dense(model, x, y, loss, train_mode)
    H = oracle.hessian()
    G = dense("G", model, (x, y), loss, train_mode)
    N = dense("N", model, (x, y), loss, train_mode)
    assert rel(G, oracle.gauss_newton()) < 1e-10 and rel(N, oracle.nme()) < 1e-10
    assert rel(G + N, H) < 1e-10
    for method in C.HVP_METHODS:
        assert rel(dense("H", model, (x, y), loss, train_mode, method), H) < 1e-10
        assert rel(dense("N", model, (x, y), loss, train_mode, method), H - G) < 1e-10
    assert rel(G, G.T) < 1e-12 and torch.linalg.eigvalsh(G).min() > -1e-12 * G.abs().max()  # G is PSD
    assert N.abs().max() > 1e-3 * H.abs().max()  # the NME is not negligible here: the split is tested


def test_relu_nme_diagonal_blocks_are_exactly_zero():
    model, (x, y) = mlp("relu"), batch()
    N = dense("N", model, (x, y))
    sizes = [t.numel() for t in C.select_params(model).values()]
    starts = [0, *itertools.accumulate(sizes)]
    for a, b in zip(starts[:-1], starts[1:]):
        assert torch.count_nonzero(N[a:b, a:b]) == 0
    assert N.abs().max() > 1e-3  # off-diagonal blocks carry the NME
    N_gelu = dense("N", mlp("gelu"), (x, y))
    assert N_gelu[:sizes[0], :sizes[0]].abs().max() > 1e-6  # with σ'' ≠ 0 the first block is not zero


def test_iterable_of_batches_is_size_weighted_mean():
    model, (x, y) = cnn("gelu"), batch(n=6)
    theta = C.select_params(model)
    v = {n: torch.randn_like(t) for n, t in theta.items()}
    parts = [(x[:4], y[:4]), (x[4:], y[4:])]
    for kind in C.CURVATURES:
        whole, split = C.matvec(kind, model, (x, y), v), C.matvec(kind, model, iter(parts), v)
        assert all(torch.allclose(whole[n], split[n], rtol=1e-10, atol=1e-13) for n in v)


def test_subset_by_prefix_and_by_module_is_the_hessian_block():
    model, (x, y) = mlp("gelu"), batch()
    H = Dense(model, x, y).hessian()
    names = list(C.select_params(model))
    sizes = [t.numel() for t in C.select_params(model).values()]
    lo, hi = sum(sizes[:2]), sum(sizes[:4])  # parameters of module '3' (the second Linear)
    sub = C.select_params(model, ["3"])
    assert list(sub) == names[2:4] and list(C.select_params(model, [model[3]])) == names[2:4]
    v = {n: torch.randn_like(t) for n, t in sub.items()}
    for params in (["3"], [model[3]]):
        hv = C.hvp(model, (x, y), v, params=params)
        assert rel(C.flatten(hv), H[lo:hi, lo:hi] @ C.flatten(v)) < 1e-10


def test_float32_methods_agree_and_state_is_restored():
    model, (x, y) = cnn("gelu", torch.float32), batch(dtype=torch.float32)
    model.eval()
    bn = model[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    v = {n: torch.randn_like(t) for n, t in C.select_params(model).items()}
    fwd = C.flatten(C.hvp(model, (x, y), v, train_mode=True, method="fwd"))
    rev = C.flatten(C.hvp(model, (x, y), v, train_mode=True, method="rev"))
    assert fwd.dtype == torch.float32 and rel(fwd, rev) < 1e-4
    assert not model.training and not bn.training
    assert all(torch.equal(a, b) for a, b in zip(before, (bn.running_mean, bn.running_var, bn.num_batches_tracked)))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_wide_resnet_products_in_both_precisions(dtype, tol):
    """WRN-10-1 (BatchNorm in every block), train mode: Hv by both methods, Hv = Gv + Nv, in float32 and float64."""
    torch.manual_seed(0)
    model = build_model("wrn-10-1", 3, 1, 8, "gelu").to(dtype)
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(4, 1, 8, 8, generator=g, dtype=dtype), torch.tensor([0, 1, 2, 1])
    v = {n: torch.randn_like(t) for n, t in C.select_params(model).items()}
    kw = dict(train_mode=True)
    fwd, rev = (C.flatten(C.hvp(model, (x, y), v, method=m, **kw)) for m in C.HVP_METHODS)
    gv, nv = C.flatten(C.gvp(model, (x, y), v, **kw)), C.flatten(C.nvp(model, (x, y), v, **kw))
    assert fwd.dtype == dtype and rel(fwd, rev) < tol and rel(gv + nv, fwd) < tol


@pytest.mark.parametrize("arch", ["mlp-6x2-bn", "wrn-10-1"])
def test_forward_mode_jvp_is_the_dense_jacobian_times_v(arch):
    """jvp_forward_mode (native kernels, train-mode BatchNorm, running stats untouched) = J v with the dense J."""
    torch.manual_seed(0)
    size = 4 if arch.startswith("mlp") else 8
    model = build_model(arch, 3, 1, size, "gelu").to(torch.float64).train()
    x = torch.randn(5, 1, size, size, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    v = {n: torch.randn_like(t) for n, t in C.select_params(model).items()}
    stats = [t.clone() for t in model.buffers()]
    got = C.jvp_forward_mode(model, x, v)
    d = Dense(model, x, y, train_mode=True)
    jac = torch.func.jacrev(d.logits)(d.theta).reshape(-1, d.theta.numel())
    torch.testing.assert_close(got.reshape(-1), jac @ C.flatten(v), rtol=1e-10, atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers())) and model.training


def test_callable_loss_for_hessian_only():
    model, (x, y) = mlp("gelu"), batch()
    v = {n: torch.randn_like(t) for n, t in C.select_params(model).items()}
    ce = lambda z, t: nn.functional.cross_entropy(z, t)  # noqa: E731
    assert rel(C.flatten(C.hvp(model, (x, y), v, loss=ce)), C.flatten(C.hvp(model, (x, y), v))) < 1e-12
    for fn in (C.gvp, C.nvp):
        with pytest.raises(ValueError, match="cannot split"):
            fn(model, (x, y), v, loss=ce)


# -------------------------------------------------------------------------------------------------- traces

def five_sigma(A: torch.Tensor, distribution: str, n: int) -> float:
    """5 standard deviations of the n-probe mean: Var(vᵀAv) = 2‖A‖²_F (Gaussian), 2(‖A‖²_F − Σ A_ii²) (±1)."""
    fro2 = A.pow(2).sum().item()
    var = 2 * fro2 if distribution == "gaussian" else 2 * (fro2 - A.diagonal().pow(2).sum().item())
    return 5 * math.sqrt(var / n)


@pytest.mark.parametrize("distribution", E.DISTRIBUTIONS)
def test_hutchinson_converges_to_dense_trace(distribution):
    model, (x, y) = mlp("gelu"), batch()
    H = Dense(model, x, y).hessian()
    G = dense("G", model, (x, y))
    n, chunk = 1000, 250
    theta = C.select_params(model)
    gen = torch.Generator().manual_seed(3)
    V = torch.cat([C.flatten_batched(E.probes(theta, chunk, distribution, gen)) for _ in range(n // chunk)])
    for kind, A in (("H", H), ("G", G), ("N", H - G)):
        est = E.hutchinson_trace(model, (x, y), curvature=kind, n_probes=n, probe_batch=chunk,
                                 distribution=distribution, generator=torch.Generator().manual_seed(3))
        assert est.n_samples == n and rel(est.samples, ((V @ A) * V).sum(1)) < 1e-10  # each vᵀAv exact
        assert abs(est.trace - A.trace().item()) <= five_sigma(A, distribution, n)  # and the mean converges


def test_hutchinson_train_mode_batchnorm_and_relative_stop():
    model, (x, y) = cnn("beta_gelu"), batch()
    H = Dense(model, x, y, train_mode=True).hessian()
    est = E.hutchinson_trace(model, (x, y), train_mode=True, curvature="H", n_probes=300, probe_batch=100,
                             distribution="gaussian", method="rev", generator=torch.Generator().manual_seed(4))
    assert abs(est.trace - H.trace().item()) <= five_sigma(H, "gaussian", 300)
    early = E.hutchinson_trace(model, (x, y), train_mode=True, n_probes=1000, rtol=0.2,
                               generator=torch.Generator().manual_seed(5))
    assert 2 <= early.n_samples < 1000


def test_sampled_label_gn_trace_is_exact_in_expectation():
    """E_ŷ[B‖∇L(θ; x, ŷ)‖²] over all 3³ label draws, weighted by Π p, equals tr(JᵀH_zJ); MC within 5σ."""
    for model, train_mode in ((mlp("gelu"), False), (cnn("gelu"), True)):
        x, y = batch(n=3)
        G = dense("G", model, (x, y), train_mode=train_mode)
        with C.measuring(model, train_mode), torch.no_grad():
            p = torch.softmax(model(x), -1)
        mean = second = 0.0
        for labels in itertools.product(range(3), repeat=3):
            w = math.prod(p[i, c].item() for i, c in enumerate(labels))
            t = E.gn_trace_term(model, x, torch.tensor([labels]), train_mode=train_mode).item()
            mean, second = mean + w * t, second + w * t * t
        assert abs(mean - G.trace().item()) < 1e-10 * G.trace().item()
        n = 300
        est = E.gn_trace_sampled(model, (x, y), train_mode=train_mode, n_samples=n, sample_batch=100,
                                 generator=torch.Generator().manual_seed(6))
        assert abs(est.trace - mean) <= 5 * math.sqrt((second - mean ** 2) / n)


def test_sampled_label_gn_trace_for_mse():
    """'mse', ŷ ∼ N(z, I): B‖∇L‖² = εᵀ(JJᵀ/B)ε, a Gaussian quadratic form in the nonzero spectrum of G, so its
    mean is tr(G) and its variance 2‖G‖²_F, exactly as for Gaussian Hutchinson probes on G."""
    model, (x, y) = cnn("gelu"), batch(loss="mse")
    G = dense("G", model, (x, y), "mse", train_mode=True)
    n = 400
    est = E.gn_trace_sampled(model, (x, y), loss="mse", train_mode=True, n_samples=n, sample_batch=200,
                             generator=torch.Generator().manual_seed(12))
    assert est.n_samples == n and abs(est.trace - G.trace().item()) <= five_sigma(G, "gaussian", n)


# ----------------------------------------------------------------------------------------------- eigenvalues

@pytest.mark.parametrize("kind", ["H", "G"])
def test_lanczos_top_eigenpairs_match_eigvalsh(kind):
    model, (x, y) = cnn("gelu"), batch()
    A = Dense(model, x, y).hessian() if kind == "H" else dense("G", model, (x, y))
    ref = torch.linalg.eigvalsh(A).flip(0)[:3]
    eig = E.top_eigen(model, (x, y), k=3, curvature=kind, max_iter=flat_dim(model), tol=1e-10,
                      generator=torch.Generator().manual_seed(7))
    assert rel(eig.values, ref) < 1e-8
    for lam, u in zip(eig.values, eig.vectors):
        u = C.flatten(u)
        assert abs(u.norm().item() - 1) < 1e-8 and (A @ u - lam * u).norm() < 1e-6 * ref[0]


def test_power_iteration_top_eigenvalue_of_gn():
    model, (x, y) = mlp("gelu"), batch()
    ref = torch.linalg.eigvalsh(dense("G", model, (x, y)))[-1]
    eig = E.top_eigen(model, (x, y), curvature="G", algorithm="power", max_iter=3000, tol=1e-13,
                      generator=torch.Generator().manual_seed(8))
    assert abs(eig.values[0] - ref) < 1e-6 * ref


# ------------------------------------------------------------------------------------------ curvlinops check

def test_agrees_with_curvlinops():
    import curvlinops  # a test dependency (curvlinops-for-pytorch)

    model, (x, y) = cnn("gelu"), batch()
    model.eval()
    data = [(x[:4], y[:4]), (x[4:], y[4:])]
    params = list(model.parameters())
    theta = C.select_params(model)
    ops = {k: cls(model, nn.CrossEntropyLoss(), params, data) for k, cls in
           (("H", curvlinops.HessianLinearOperator), ("G", curvlinops.GGNLinearOperator))}
    k = 8
    V = E.probes(theta, k, "gaussian", torch.Generator().manual_seed(9))
    Vflat = C.flatten_batched(V)  # k × P
    for kind, op in ops.items():
        ours = C.matvec(kind, model, data, V, batched=True)
        assert rel(C.flatten_batched(ours), (op @ Vflat.T).T) < 1e-10
        dense_trace = (op @ torch.eye(flat_dim(model), dtype=DT)).trace()
        assert rel(dense(kind, model, data).trace(), dense_trace) < 1e-10
        P = E.probes(theta, k, "rademacher", torch.Generator().manual_seed(10))
        Pflat = C.flatten_batched(P)
        est = E.hutchinson_trace(model, data, curvature=kind, n_probes=k, probe_batch=k,
                                 generator=torch.Generator().manual_seed(10))
        assert rel(est.samples, ((op @ Pflat.T).T * Pflat).sum(1)) < 1e-10


# --------------------------------------------------------------------------------------------- σ'' fractions

def test_second_derivative_fraction_counts_underflow():
    """β-GELU's σ''_β(x) = βφ(βx)(2 − β²x²) is exactly 0 in float32 once φ underflows (|βx| ≳ 13–14)."""
    beta = 10.0
    x = torch.linspace(-3, 3, 6001)
    frac = E.nonzero_second_derivative_fraction(nn.Sequential(BetaGELU(beta)), x)
    nonzero, total = frac.counts["0"]
    assert total == x.numel() and frac.threshold == 0.0 and frac.total == frac.per_layer["0"]
    assert (x.abs() * beta < 12).sum() <= nonzero <= (x.abs() * beta <= 15).sum()
    assert E.nonzero_second_derivative_fraction(nn.Sequential(BetaGELU(beta)), x, threshold=1e9).total == 0


def test_second_derivative_fraction_per_layer_and_models():
    x, y = batch(dtype=torch.float32)
    assert E.nonzero_second_derivative_fraction(mlp("relu", torch.float32), (x, y)).total == 0.0
    gelu = E.nonzero_second_derivative_fraction(mlp("gelu", torch.float32), [(x, y), (x, y)])
    assert set(gelu.per_layer) == {"2", "4"} and gelu.counts["2"] == (60, 60) and gelu.total == 1.0
    torch.manual_seed(0)
    fractions = [E.nonzero_second_derivative_fraction(build_model("mlp-16x2-bn", 3, 2, 3, "beta_gelu", b),
                                                      (x, y), train_mode=True).total for b in (1, 10, 100, 1e4)]
    assert fractions[0] == 1.0 and fractions[-1] < 0.05 and fractions == sorted(fractions, reverse=True)
    model = cnn("gelu")
    before = model[1].running_mean.clone()
    E.nonzero_second_derivative_fraction(model, batch(), train_mode=True)
    assert torch.equal(before, model[1].running_mean) and model.training


# ------------------------------------------------------------------------------------------------ bad input

def test_bad_inputs_raise_one_clear_error_each():
    model, (x, y) = mlp("gelu"), batch()
    theta = C.select_params(model)
    v = {n: torch.randn_like(t) for n, t in theta.items()}
    bad_shape = {**v, "1.weight": torch.randn(3, 3, dtype=DT)}
    with pytest.raises(ValueError, match="shape"):
        C.hvp(model, (x, y), bad_shape)
    with pytest.raises(ValueError, match="missing"):
        C.gvp(model, (x, y), {n: t for n, t in v.items() if n != "1.bias"})
    with pytest.raises(ValueError, match="empty parameter subset"):
        C.hvp(model, (x, y), v, params=["no_such_layer"])
    with pytest.raises(ValueError, match="empty parameter subset"):
        E.hutchinson_trace(model, (x, y), params=[nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="non-finite"):
        C.hvp(model, (x, y), {**v, "1.bias": torch.full((5,), math.nan, dtype=DT)})
    with pytest.raises(ValueError, match="non-finite"):
        C.nvp(model, (x.clone().index_fill_(0, torch.tensor([0]), math.inf), y), v)
    with pytest.raises(ValueError, match="cannot split"):
        E.hutchinson_trace(model, (x, y), curvature="N", loss="nll")
    with pytest.raises(ValueError, match="cannot split"):
        E.gn_trace_sampled(model, (x, y), loss=lambda z, t: z.sum())
    with pytest.raises(ValueError, match="curvature"):
        E.top_eigen(model, (x, y), curvature="X")
    with pytest.raises(ValueError, match="no batches"):
        C.hvp(model, [], v)
    with pytest.raises(TypeError, match="dict"):
        C.hvp(model, (x, y), list(v.values()))
    with pytest.raises(TypeError, match="prefixes"):
        C.select_params(model, [3])
    with pytest.raises(ValueError, match="cannot split"):
        C.hvp_function(model, loss="hinge")
    with torch.no_grad():
        model[1].weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="non-finite values in the parameters"):
        C.hvp(model, (x, y), v)


# ----------------------------------------------------------------------------------------------- benchmark

def test_benchmark_smoke_on_cpu(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from experiments.bench_curvature import run_benchmark

    out = run_benchmark(model="wrn-10-1", device="cpu", batch_sizes=[8], warmup=1, iters=1, image_size=4,
                        probe_batch=2)
    assert {"device", "device_name", "torch", "model", "results"} <= set(out)
    (row,) = out["results"]
    assert row["batch"] == 8
    for key in ("hv_toolkit_over_sgd", "hv_double_backward_over_sgd"):
        assert math.isfinite(row[key]) and row[key] > 0
    assert all(t > 0 for t in row["times_ms"].values()) and not row["failed"]
    assert all(d < 1e-4 for d in row["relative_difference_to_double_backward"].values())
