"""Fig. 7 landscapes: the 2×2 blocks against closed forms and torch.func.hessian, the ReLU NME, the analytic
boundaries, the concentration statistics and the verdict (float64, small grids)."""
import math

import numpy as np
import pytest
import torch
from torch.func import hessian

from hessreg import rules
from hessreg import landscape as L
from hessreg.activations import beta_gelu_second_derivative, make_activation


def point_loss(net: L.ToyMLP, act, theta):
    """½(f − y)² at (w_p, w_q) = theta, written directly (no GridMLP)."""
    W1 = net.W1.clone()
    (ip, jp), (iq, jq) = net.weights
    W1 = W1.index_put((torch.tensor([ip]), torch.tensor([jp])), theta[:1])
    W1 = W1.index_put((torch.tensor([iq]), torch.tensor([jq])), theta[1:])
    f = net.W2 @ act(W1 @ net.x + net.b1) + net.b2
    return 0.5 * (f - net.y).pow(2).sum()


def closed_form(net: L.ToyMLP, beta: float, a: float, b: float):
    """(loss, G, N) of β-GELU at (a, b) from the formulas of the module docstring."""
    W1 = net.W1.clone()
    (ip, jp), (iq, jq) = net.weights
    W1[ip, jp], W1[iq, jq] = a, b
    h = W1 @ net.x + net.b1
    act = make_activation("beta_gelu", beta)
    f = (net.W2 @ act(h) + net.b2).squeeze()
    hh = h.clone().requires_grad_()
    (d1,) = torch.autograd.grad(act(hh).sum(), hh)
    d2 = beta_gelu_second_derivative(h, beta)
    units, inputs = (ip, iq), (jp, jq)
    J = torch.stack([net.W2[0, units[r]] * d1[units[r]] * net.x[inputs[r]] for r in range(2)])
    N = torch.zeros(2, 2, dtype=torch.float64)
    for r in range(2):
        for s in range(2):
            if units[r] == units[s]:
                N[r, s] = (f - net.y) * net.W2[0, units[r]] * d2[units[r]] * net.x[inputs[r]] * net.x[inputs[s]]
    return 0.5 * (f - net.y) ** 2, torch.outer(J, J), N


@pytest.mark.parametrize("weights", [((0, 0), (1, 0)), ((0, 0), (0, 1)), ((2, 1), (0, 0))])
def test_blocks_match_closed_form_and_hessian(weights):
    net = L.toy_mlp(seed=3, hidden=3, weights=weights, x=(0.7, -1.3), y=0.4)
    beta = 3.0
    r = L.nme_landscape("beta_gelu", beta, net=net, grid_points=6, extent=1.5)
    act = make_activation("beta_gelu", beta)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        i, k = (int(torch.randint(0, 6, (1,), generator=gen)) for _ in range(2))
        a, b = float(r.a[i]), float(r.b[k])
        loss, G, N = closed_form(net, beta, a, b)
        assert torch.allclose(r.loss[i, k], loss, rtol=1e-12, atol=1e-14)
        assert torch.allclose(r.G[i, k], G, rtol=1e-10, atol=1e-13)
        assert torch.allclose(r.N[i, k], N, rtol=1e-10, atol=1e-13)
        H = hessian(lambda t: point_loss(net, act, t))(torch.tensor([a, b], dtype=torch.float64))
        assert torch.allclose(r.H[i, k], H, rtol=1e-10, atol=1e-13)
        assert torch.allclose(r.H[i, k], r.G[i, k] + r.N[i, k], rtol=1e-10, atol=1e-13)
    if weights[0][0] != weights[1][0]:  # different units: N is diagonal
        assert r.N[..., 0, 1].abs().max() == 0
    else:  # one unit: N ∝ x xᵀ has rank 1
        assert torch.linalg.det(r.N).abs().max() < 1e-12 * r.nme_norm.max() ** 2 + 1e-300


def test_relu_nme_is_exactly_zero_and_loss_piecewise_quadratic():
    r = L.nme_landscape("relu", grid_points=40, extent=1.0)
    assert r.N.abs().max() == 0 and L.max_nme_off_boundaries(r) == 0
    assert torch.equal(r.H, r.G)
    assert float(r.distance.min()) > 0  # the even grid avoids the boundaries
    assert len(torch.unique(r.region)) == 4  # two crossing lines: four activation regions
    assert L.quadratic_residual(r) < 1e-12
    g = L.nme_landscape("beta_gelu", 10.0, grid_points=40, extent=1.0)
    assert L.quadratic_residual(g) > 1e-6  # β-GELU is not piecewise quadratic
    assert L.decomposition_error(g) < 1e-12


def test_boundaries_are_where_the_preactivation_vanishes():
    for weights in (((0, 0), (1, 0)), ((1, 0), (1, 1))):
        net = L.toy_mlp(seed=1, weights=weights, x=(1.0, -0.6))
        lines = net.boundaries()
        assert {ln.unit for ln in lines} == {w[0] for w in weights}
        for ln in lines:
            pts = ln.points((-3.0, 3.0), (-3.0, 3.0), n=7)
            pts = torch.tensor(pts[~np.isnan(pts).any(1)])
            assert len(pts) >= 2
            m = L.GridMLP(net, pts[:, 0], pts[:, 1], make_activation("relu"))
            with torch.no_grad():
                h = m.preactivations(net.x.expand(len(pts), -1))
            assert h[:, ln.unit].abs().max() < 1e-12
            assert torch.allclose(ln.preactivation(pts[:, 0], pts[:, 1]), h[:, ln.unit], atol=1e-12)
        a, b = net.crossing()
        assert all(abs(ln.preactivation(a, b)) < 1e-12 for ln in lines)


def test_gelu_nme_concentrates_near_boundaries_as_beta_grows():
    kw = dict(grid_points=100, extent=2.0, kinds=("N",))
    rs = [L.nme_landscape("beta_gelu", beta, **kw) for beta in (1.0, 4.0, 16.0)]
    near = [L.nme_mass_within(r, 0.25) for r in rs]
    assert near[0] < near[1] < near[2] and near[2] > 0.95
    assert rs[0].H is None and rs[0].G is None
    c = L.concentration(rs[2], cs=(1, 3))
    assert c["nme_mass"].iloc[1] > 0.9 and c["area"].iloc[1] < 0.5
    assert abs(c["nme_mass"].iloc[0] - c["profile"].iloc[0]) < 0.1  # the 1-D profile predicts the mass
    assert 1.5 < 4.0 * L.mass_radius(rs[1]) < 2.6 and abs(L.profile_radius(0.9) - 2.09) < 0.01
    assert abs(L.profile_mass_within(40.0) - 1.0) < 1e-12


def test_figure7_verdict_and_frame():
    params = dict(scale="smoke", device="cpu", seed=0, hidden=3, weights=[[0, 0], [1, 0]], target=-1.5,
                  grid_points=100, extent=2.0, beta=10.0, betas=[5.0, 10.0])
    fig7 = L.figure7(params)
    v = rules.nme_landscape(fig7, "smoke")
    assert v.status == "reproduced" and v.claim.id == "A7" and v.scale == "smoke"
    assert len(fig7.sweep) == 2 and math.isclose(fig7.sweep["beta"].iloc[1], 10.0)
    df = fig7.frame()
    assert len(df) == 2 * 100 * 100 and set(df["activation"]) == {"relu", "beta_gelu"}
    assert len(fig7.figure_data(4)) == len(df)
    coarse = rules.nme_landscape(L.figure7(params | dict(grid_points=40, beta=40.0, betas=[40.0])), "smoke")
    assert coarse.status == "inconclusive"  # 1/β spans < 2 grid steps


def test_bad_inputs():
    with pytest.raises(ValueError, match="must differ"):
        L.toy_mlp(weights=((0, 0), (0, 0)))
    with pytest.raises(ValueError, match="outside W1"):
        L.toy_mlp(hidden=2, weights=((0, 0), (2, 0)))
    with pytest.raises(ValueError, match="grid_points"):
        L.nme_landscape("relu", grid_points=2)
    with pytest.raises(ValueError, match="β-GELU"):
        L.concentration(L.nme_landscape("relu", grid_points=4))
