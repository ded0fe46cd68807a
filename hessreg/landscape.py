"""Loss and NME landscapes over two weights of one hidden layer (Paper A, Fig. 7; claim A7).

The network is a one-hidden-layer MLP with a scalar output, f(x) = W2 σ(W1 x + b1) + b2, on **one** data
point (x, y) with the loss L = ½(f − y)². Two entries of W1, w_p = W1[i_p, j_p] and w_q = W1[i_q, j_q], are set
to the coordinates (a, b) of a grid; everything else is fixed. With θ = (a, b) and the pre-activations
h_i = Σ_j W1[i, j] x_j + b1[i] (affine in θ), the 2×2 blocks of Paper A's Gauss-Newton / NME split are

    G = J Jᵀ,           J = ∂f/∂θ = (W2[i_p] σ'(h_{i_p}) x_{j_p},  W2[i_q] σ'(h_{i_q}) x_{j_q}),
    N = (f − y) ∇²_θ f,  (∇²_θ f)_{rs} = W2[i_r] σ''(h_{i_r}) x_{j_r} x_{j_s} · [i_r = i_s],
    H = G + N.

So the NME of these two weights carries σ'' of the (at most two) hidden units they feed, and nothing else. For
ReLU, σ'' is a Dirac delta at h = 0 that autodiff returns as 0: the computed N is exactly 0 at every grid point,
and the true N is a line measure supported on the **region boundaries** {h_i(a, b) = 0}, which are straight
lines in the (a, b) plane (h_i is affine in θ) and are drawn from their equations, not from the grid. Between
them f is affine in θ, so the loss is piecewise quadratic. For β-GELU, σ''_β(h) = β φ(βh)(2 − β²h²) is a smooth
bump of width 1/β in h, so N is concentrated within about 1/β (in pre-activation units) of the same lines.

**How the grid is computed.** The grid of K points is evaluated as one batch by :class:`GridMLP`: batch row k is
the MLP with its own copy of the two chosen weights, (a_k + δ_k, b_k + δ'_k), at δ = 0. The batch-mean loss
(1/K) Σ_k ½(f_k − y)² is separable in the δ_k, so its Hessian (and its G and N parts) is block-diagonal with the
blocks H_k/K; one product of :func:`hessreg.curvature.matvec` with the probe e_r in every row returns column r
of every block. The 2×2 blocks thus come from the same H, G and N products as the rest of the book
(loss ``'mse'``, float64), not from re-derived formulas; the tests check them against the closed forms above
and against ``torch.func.hessian``.

**Distance to a boundary** is measured in pre-activation units, |h_i|, the variable σ''_β is a function of. In
the weight plane the Euclidean distance to line i is |h_i| / ‖∇_θ h_i‖; for the default data point the varied
weights multiply x_0 = 1, so the two agree.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from . import curvature
from .activations import DEFAULT_BETA, make_activation, normal_pdf, uses_beta

Index = tuple[int, int]

# ---------------------------------------------------------------------------------------------- the network


@dataclass
class ToyMLP:
    """f(x) = W2 σ(W1 x + b1) + b2 on one data point (x, y), with two entries ``weights`` = (p, q) of W1 varied.

    W1: hidden × d, b1: hidden, W2: 1 × hidden, b2: 1; x: d; y: scalar. The entries p, q of W1 hold the values
    of the base network but are overwritten by the grid coordinates (a, b)."""
    W1: Tensor
    b1: Tensor
    W2: Tensor
    b2: Tensor
    x: Tensor
    y: Tensor
    weights: tuple[Index, Index]

    @property
    def hidden(self) -> int:
        return self.W1.shape[0]

    def masked_W1(self) -> Tensor:
        """W1 with the two varied entries set to 0."""
        W = self.W1.clone()
        for i, j in self.weights:
            W[i, j] = 0.0
        return W

    def preactivation_coefficients(self) -> tuple[Tensor, Tensor, Tensor]:
        """(r, α, γ) with h_i(a, b) = r_i + α_i a + γ_i b exactly: r = W1° x + b1 (W1° = W1 with the varied entries
        zeroed), α = x_{j_p} e_{i_p}, γ = x_{j_q} e_{i_q}."""
        (ip, jp), (iq, jq) = self.weights
        r = self.masked_W1() @ self.x + self.b1
        alpha, gamma = torch.zeros_like(r), torch.zeros_like(r)
        alpha[ip], gamma[iq] = self.x[jp], self.x[jq]
        return r, alpha, gamma

    def boundaries(self) -> list[Boundary]:
        """The ReLU region boundaries in the (a, b) plane: {h_i = 0} for each hidden unit whose pre-activation
        depends on (a, b), i.e. the units i_p and i_q (one line when both weights feed the same unit)."""
        r, alpha, gamma = self.preactivation_coefficients()
        return [Boundary(i, float(r[i]), float(alpha[i]), float(gamma[i]))
                for i in sorted({self.weights[0][0], self.weights[1][0]}) if alpha[i] != 0 or gamma[i] != 0]

    def crossing(self) -> tuple[float, float]:
        """The point of the (a, b) plane nearest to the origin that solves h_i(a, b) = 0 for every boundary in
        the least-squares sense: the crossing of two boundaries, or the foot of the perpendicular on one."""
        lines = self.boundaries()
        A = torch.tensor([[ln.alpha, ln.gamma] for ln in lines], dtype=torch.float64)
        rhs = torch.tensor([-ln.r for ln in lines], dtype=torch.float64)
        sol = torch.linalg.pinv(A) @ rhs
        return float(sol[0]), float(sol[1])


@dataclass(frozen=True)
class Boundary:
    """The line h_unit(a, b) = r + α a + γ b = 0 in the plane of the two varied weights."""
    unit: int
    r: float
    alpha: float
    gamma: float

    def preactivation(self, a, b):
        """h_unit(a, b) = r + α a + γ b (works on floats, arrays and tensors)."""
        return self.r + self.alpha * a + self.gamma * b

    def points(self, a_range: tuple[float, float], b_range: tuple[float, float], n: int = 2) -> np.ndarray:
        """n points (n × 2) on the line, parametrised along the axis it is least steep in, clipped to the box."""
        if abs(self.gamma) >= abs(self.alpha):
            a = np.linspace(*a_range, n)
            b = -(self.r + self.alpha * a) / self.gamma
        else:
            b = np.linspace(*b_range, n)
            a = -(self.r + self.gamma * b) / self.alpha
        pts = np.stack([a, b], 1)
        inside = ((a >= a_range[0] - 1e-12) & (a <= a_range[1] + 1e-12) & (b >= b_range[0] - 1e-12)
                  & (b <= b_range[1] + 1e-12))
        pts[~inside] = np.nan
        return pts

    def label(self) -> str:
        return f"h{self.unit + 1} = 0"


def toy_mlp(seed: int = 0, hidden: int = 3, weights: Sequence[Sequence[int]] = ((0, 0), (1, 0)),
            x: Sequence[float] = (1.0, 0.5), y: float = -1.5, dtype: torch.dtype = torch.float64) -> ToyMLP:
    """The network of Fig. 7: d = len(x) inputs, ``hidden`` units, 1 output; W1, b1, W2, b2 with i.i.d. N(0, 1)
    entries drawn from ``torch.Generator().manual_seed(seed)``; the data point (x, y); the varied entries
    ``weights`` = ((i_p, j_p), (i_q, j_q)) of W1 (distinct, 0-based (unit, input) indices)."""
    p, q = (tuple(int(k) for k in w) for w in weights)
    d = len(x)
    for i, j in (p, q):
        if not (0 <= i < hidden and 0 <= j < d):
            raise ValueError(f"weight index {(i, j)} outside W1 of shape {(hidden, d)}")
    if p == q:
        raise ValueError(f"the two varied weights must differ, got {p} twice")
    g = torch.Generator().manual_seed(seed)
    W1, b1, W2, b2 = (torch.randn(s, generator=g, dtype=dtype) for s in ((hidden, d), (hidden,), (1, hidden), (1,)))
    return ToyMLP(W1, b1, W2, b2, torch.tensor(x, dtype=dtype), torch.tensor(float(y), dtype=dtype), (p, q))


class GridMLP(nn.Module):
    """The MLP at K points (a_k, b_k) of the weight plane as one batch: row k of ``forward(x)`` is
    f(x; W1 with (w_p, w_q) = (a_k + δ_k0, b_k + δ_k1)). ``delta`` (K × 2, zero) is the only parameter, so the
    Hessian of the batch-mean loss in ``delta`` is block-diagonal with blocks H_k / K."""

    def __init__(self, net: ToyMLP, a: Tensor, b: Tensor, activation: nn.Module):
        super().__init__()
        self.act = activation
        self.delta = nn.Parameter(torch.zeros(a.numel(), 2, dtype=net.W1.dtype))
        (ip, jp), (iq, jq) = net.weights
        Ep, Eq = torch.zeros_like(net.W1), torch.zeros_like(net.W1)
        Ep[ip, jp], Eq[iq, jq] = 1.0, 1.0
        for name, t in dict(W1=net.masked_W1(), b1=net.b1, W2=net.W2, b2=net.b2, Ep=Ep, Eq=Eq,
                            a=a.reshape(-1), b=b.reshape(-1)).items():
            self.register_buffer(name, t.clone())

    def weight_matrices(self) -> Tensor:
        """W1 of every row: K × hidden × d."""
        a, b = self.a + self.delta[:, 0], self.b + self.delta[:, 1]
        return self.W1 + a[:, None, None] * self.Ep + b[:, None, None] * self.Eq

    def preactivations(self, x: Tensor) -> Tensor:
        """h = W1_k x_k + b1 for every row k: K × hidden."""
        return torch.einsum("kij,kj->ki", self.weight_matrices(), x) + self.b1

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.preactivations(x)) @ self.W2.T + self.b2


# ------------------------------------------------------------------------------------------- the landscape

@dataclass
class LandscapeResult:
    """Loss and 2×2 curvature blocks of L = ½(f − y)² over the grid a (axis 0) × b (axis 1).

    ``loss``, ``nme_norm`` (‖N‖_F), ``distance`` (min over boundaries of |h_i|), ``region`` (the ReLU activation
    pattern Σ_u [h_u > 0] 2^u of the boundary units): n_a × n_b; ``H``, ``G``, ``N``: n_a × n_b × 2 × 2;
    ``preact``: n_a × n_b × hidden."""
    activation: str
    beta: float | None
    net: ToyMLP
    a: Tensor
    b: Tensor
    loss: Tensor
    H: Tensor | None
    G: Tensor | None
    N: Tensor
    preact: Tensor
    boundaries: list[Boundary] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        names = {"relu": "ReLU", "beta_gelu": "β-GELU"}
        name = names.get(self.activation, self.activation)
        return name if self.beta is None else f"{name} (β = {self.beta:g})"

    @property
    def nme_norm(self) -> Tensor:
        """‖N‖_F, the Frobenius norm of the 2×2 NME block."""
        return torch.linalg.matrix_norm(self.N)

    @property
    def distance(self) -> Tensor:
        """min_i |h_i(a, b)| over the boundary units: the distance to the nearest boundary in pre-activation
        units (the analytic h_i = r_i + α_i a + γ_i b)."""
        A, B = torch.meshgrid(self.a, self.b, indexing="ij")
        return torch.stack([ln.preactivation(A, B).abs() for ln in self.boundaries]).amin(0)

    @property
    def region(self) -> Tensor:
        """The ReLU activation pattern of the boundary units at each grid point, as an integer."""
        units = [ln.unit for ln in self.boundaries]
        return sum((self.preact[..., u] > 0).long() << k for k, u in enumerate(units))

    @property
    def step(self) -> float:
        """The grid step (the larger of the two axes')."""
        return max(float(self.a[1] - self.a[0]), float(self.b[1] - self.b[0]))

    def frame(self) -> pd.DataFrame:
        """Long format, one row per grid point: activation, beta, w_p, w_q, loss, nme_norm, distance."""
        A, B = torch.meshgrid(self.a, self.b, indexing="ij")
        return pd.DataFrame(dict(activation=self.activation, beta=self.beta, w_p=A.reshape(-1).numpy(),
                                 w_q=B.reshape(-1).numpy(), loss=self.loss.reshape(-1).numpy(),
                                 nme_norm=self.nme_norm.reshape(-1).numpy(),
                                 distance=self.distance.reshape(-1).numpy()))


def grid_axes(net: ToyMLP, grid_points: int, extent: float) -> tuple[Tensor, Tensor]:
    """Two axes of ``grid_points`` values each, spanning ±``extent`` around :meth:`ToyMLP.crossing`. With an even
    ``grid_points`` the centre, which lies on the boundaries, is half a step from the nearest grid point."""
    if grid_points < 4 or extent <= 0:
        raise ValueError(f"need grid_points ≥ 4 and extent > 0, got {grid_points}, {extent}")
    ca, cb = net.crossing()
    axis = torch.linspace(-extent, extent, grid_points, dtype=net.W1.dtype)
    return ca + axis, cb + axis


def _blocks(kind: str, model: GridMLP, data: tuple[Tensor, Tensor]) -> Tensor:
    """The 2×2 block of A ∈ {H, G, N} at every grid point, K × 2 × 2, from two batched products with
    e_0 and e_1 in every row (column r of block k is K · (A e_r)[k], since the mean loss weighs each row 1/K)."""
    K = model.delta.shape[0]
    v = {"delta": torch.eye(2, dtype=model.delta.dtype)[:, None, :].expand(2, K, 2).contiguous()}
    cols = curvature.matvec(kind, model, data, v, loss="mse", params=["delta"], batched=True)["delta"]
    return K * cols.permute(1, 2, 0)  # [k, s, r] = (A e_r)_s at row k


def nme_landscape(activation: str, beta: float | None = None, *, net: ToyMLP | None = None,
                  grid_points: int = 200, extent: float = 2.0, seed: int = 0, hidden: int = 3,
                  weights: Sequence[Sequence[int]] = ((0, 0), (1, 0)), target: float = -1.5,
                  device: str = "cpu", kinds: Sequence[str] = ("H", "G", "N")) -> LandscapeResult:
    """Loss, H, G and N = H − G (computed as its own product) of ½(f − y)² on a grid of the two weights.

    ``activation``: a name for :func:`hessreg.activations.make_activation` (``'relu'``, ``'beta_gelu'``, …);
    ``net``: the network (default :func:`toy_mlp` (seed, hidden, weights, y = ``target``)); the grid is
    :func:`grid_axes` (``grid_points`` per axis, ±``extent`` around the boundaries' crossing); ``kinds``: the
    blocks to compute (the others are left ``None``)."""
    if "N" not in kinds or not set(kinds) <= {"H", "G", "N"}:
        raise ValueError(f"kinds must include 'N' and be among 'H', 'G', 'N', got {kinds!r}")
    if uses_beta(activation):
        beta = DEFAULT_BETA.get(activation, 1.0) if beta is None else float(beta)
    else:
        beta = None
    t0 = time.perf_counter()
    net = net or toy_mlp(seed, hidden, weights, y=target)
    a, b = grid_axes(net, grid_points, extent)
    A, B = torch.meshgrid(a, b, indexing="ij")
    model = GridMLP(net, A, B, make_activation(activation, beta)).to(device)
    K = A.numel()
    x = net.x.expand(K, -1).to(device)
    y = net.y.reshape(1, 1).expand(K, 1).to(device)
    with torch.no_grad():
        f = model(x)
        loss = 0.5 * (f - y).pow(2).reshape(A.shape)
        preact = model.preactivations(x).reshape(*A.shape, -1)
    H, G, N = (_blocks(k, model, (x, y)).reshape(*A.shape, 2, 2).cpu() if k in kinds else None
               for k in ("H", "G", "N"))
    return LandscapeResult(activation, beta, net, a, b, loss.cpu(), H, G, N,
                           preact.cpu(), net.boundaries(), time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------- statistics

def nme_mass_within(r: LandscapeResult, d: float) -> float:
    """Fraction of the NME mass Σ_grid ‖N‖_F that lies at grid points with distance ≤ d to a boundary (the grid
    is uniform, so this is the Riemann sum of ∫ ‖N‖_F over the band over the integral over the whole box)."""
    w = r.nme_norm
    total = float(w.sum())
    return float(w[r.distance <= d].sum()) / total if total > 0 else math.nan


def area_within(r: LandscapeResult, d: float) -> float:
    """Fraction of grid points with distance ≤ d to a boundary: what a uniform NME would put in the band."""
    return float((r.distance <= d).double().mean())


def mass_radius(r: LandscapeResult, fraction: float = 0.9) -> float:
    """The smallest distance d (among the grid's distances) with nme_mass_within(r, d) ≥ fraction."""
    order = torch.argsort(r.distance.reshape(-1))
    w = r.nme_norm.reshape(-1)[order]
    cum = torch.cumsum(w, 0) / w.sum()
    k = int(torch.searchsorted(cum, torch.tensor(fraction, dtype=cum.dtype)))
    return float(r.distance.reshape(-1)[order][min(k, len(cum) - 1)])


def _profile(n: int = 400_001, top: float = 40.0) -> tuple[Tensor, Tensor]:
    """u ≥ 0 on a fine grid and the cumulative share of |φ(u)(2 − u²)| (symmetric in u) in [0, u]."""
    u = torch.linspace(0, top, n, dtype=torch.float64)
    g = (normal_pdf(u) * (2 - u * u)).abs()
    return u, torch.cumsum(g, 0) / g.sum()


def profile_mass_within(c: float) -> float:
    """The 1-D prediction of :func:`nme_mass_within` at d = c/β: ∫_{|u|<c} |φ(u)(2 − u²)| du / ∫ |φ(u)(2 − u²)| du,
    the share of |σ''_β| within c/β of 0 (it holds for one boundary with a constant prefactor (f − y) W2 x²)."""
    u, cum = _profile()
    return float(cum[u <= c][-1])


def profile_radius(fraction: float = 0.9) -> float:
    """The 1-D prediction of β·:func:`mass_radius`: the smallest c with profile_mass_within(c) ≥ ``fraction``."""
    u, cum = _profile()
    return float(u[int(torch.searchsorted(cum, torch.tensor(fraction, dtype=cum.dtype)))])


def concentration(r: LandscapeResult, cs: Sequence[float] = (1, 2, 3, 5)) -> pd.DataFrame:
    """For each c: the NME mass fraction within c/β of a boundary, the grid-area fraction of that band, and the
    1-D prediction (β-GELU only)."""
    if r.beta is None:
        raise ValueError("concentration is defined relative to 1/β: give a β-GELU landscape")
    return pd.DataFrame([dict(beta=r.beta, c=c, distance=c / r.beta, nme_mass=nme_mass_within(r, c / r.beta),
                              area=area_within(r, c / r.beta), profile=profile_mass_within(c)) for c in cs])


def max_nme_off_boundaries(r: LandscapeResult, min_distance: float = 0.0) -> float:
    """max ‖N‖_F over grid points farther than ``min_distance`` from every boundary (0: every grid point)."""
    keep = r.distance > min_distance
    return float(r.nme_norm[keep].max()) if bool(keep.any()) else math.nan


def quadratic_residual(r: LandscapeResult) -> float:
    """Largest |loss − q_R(a, b)| over the grid, where q_R is the least-squares quadratic in (a, b) fitted to the
    loss in each ReLU region R (activation pattern), relative to the loss's range over the grid: ≈ 1e-15 when
    the loss is piecewise quadratic with pieces = regions."""
    A, B = torch.meshgrid(r.a, r.b, indexing="ij")
    X = torch.stack([torch.ones_like(A), A, B, A * A, A * B, B * B], -1)
    worst = 0.0
    for reg in torch.unique(r.region):
        m = r.region == reg
        coef = torch.linalg.lstsq(X[m], r.loss[m][:, None]).solution
        worst = max(worst, float((X[m] @ coef - r.loss[m][:, None]).abs().max()))
    return worst / float(r.loss.max() - r.loss.min())


def decomposition_error(r: LandscapeResult) -> float:
    """max |H − G − N| over the grid, relative to max |H|: N is computed as its own product, so this checks the
    split H = G + N."""
    return float((r.H - r.G - r.N).abs().max() / r.H.abs().max())


def beta_sweep(betas: Sequence[float], fraction: float = 0.9, known: Sequence[LandscapeResult] = (),
               **kw) -> pd.DataFrame:
    """For each β: the NME mass within 1/β and 3/β of a boundary and the radius d₉₀ holding ``fraction`` of the
    mass, with β·d₉₀ (constant if the NME band scales as 1/β). ``kw`` go to :func:`nme_landscape` (only N is
    computed); β-GELU landscapes in ``known`` with the same ``kw`` are reused."""
    rows = []
    reuse = {r.beta: r for r in known if r.activation == "beta_gelu"}
    for beta in betas:
        r = reuse.get(beta) or nme_landscape("beta_gelu", beta, kinds=("N",), **kw)
        d90 = mass_radius(r, fraction)
        rows.append(dict(beta=beta, mass_within_1_over_beta=nme_mass_within(r, 1 / beta),
                         mass_within_3_over_beta=nme_mass_within(r, 3 / beta), d90=d90, beta_d90=beta * d90,
                         grid_steps_per_width=1 / (beta * r.step)))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- the chapter

@dataclass
class Figure7:
    """Everything chapter 09 shows: the ReLU and β-GELU landscapes and the β sweep."""
    relu: LandscapeResult
    gelu: LandscapeResult
    sweep: pd.DataFrame
    params: dict

    def frame(self) -> pd.DataFrame:
        """Both landscapes in long format (:meth:`LandscapeResult.frame`)."""
        return pd.concat([self.relu.frame(), self.gelu.frame()], ignore_index=True)

    def figure_data(self, digits: int = 6) -> pd.DataFrame:
        """:meth:`frame` with the floats written to ``digits`` significant digits (strings): the figure's CSV."""
        df = self.frame()
        for c in ("w_p", "w_q", "loss", "nme_norm", "distance"):
            df[c] = [f"{v:.{digits}g}" for v in df[c].tolist()]
        return df


def figure7(params: dict) -> Figure7:
    """Chapter 09's one call: landscapes for ReLU and β-GELU (β = ``params['beta']``) and the sweep over
    ``params['betas']``, on the network and grid the parameters name."""
    kw = dict(grid_points=params["grid_points"], extent=params["extent"], seed=params["seed"],
              hidden=params["hidden"], weights=params["weights"], target=params["target"],
              device="cpu" if params["device"] == "auto" else params["device"])
    relu, gelu = nme_landscape("relu", **kw), nme_landscape("beta_gelu", params["beta"], **kw)
    return Figure7(relu, gelu, beta_sweep(params["betas"], known=[gelu], **kw), params)
