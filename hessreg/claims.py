"""Verdicts: each chapter's claim tested on its data, with the statistic and the rule stated.

A verdict is one of ``reproduced``, ``not reproduced``, ``inconclusive`` (the data cannot decide at this
scale/seed count) or ``not evaluated`` (smoke scale: the runs are too small to bear on the claim). Accuracies
are in percentage points (pp). Verdicts are also written to ``_build/verdicts/`` for the book's scoreboard.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from .results import REPO, write_atomic

STATUSES = ("reproduced", "not reproduced", "inconclusive", "not evaluated")
VERDICTS = REPO / "_build" / "verdicts"


@dataclass
class Verdict:
    claim_id: str  # DESIGN §4 id, e.g. "A1"
    claim: str
    status: str
    statistic: str  # what was measured, with numbers
    rule: str  # the decision rule applied
    scale: str

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def markdown(self) -> str:
        return (f"**Verdict ({self.claim_id}, {self.scale} scale): {self.status}.** {self.claim}\n\n"
                f"- Statistic: {self.statistic}\n- Rule: {self.rule}")

    _repr_markdown_ = markdown

    def save(self, chapter: str) -> Path:
        path = VERDICTS / f"{self.claim_id}.json"
        write_atomic(path, json.dumps(asdict(self) | {"chapter": chapter}, indent=1))
        return path


def summary(df: pd.DataFrame, by: str | list[str], metric: str = "test_acc") -> pd.DataFrame:
    """Mean, standard deviation, seed count and diverged count per group; accuracies in %."""
    g = df.assign(_m=df[metric] * (100 if metric.endswith("acc") else 1)).groupby(by, sort=False, dropna=False)
    out = g["_m"].agg(mean="mean", std="std", n="count")
    if "diverged" in df:
        out["diverged"] = g["diverged"].sum()
    return out.reset_index()


def not_evaluated(claim_id: str, claim: str, scale: str) -> Verdict:
    return Verdict(claim_id, claim, "not evaluated", f"runs at {scale} scale are too small to test the claim",
                   "claims are evaluated at full or paper scale only", scale)


def flat(df: pd.DataFrame, by: str, claim_id: str, claim: str, scale: str, tolerance: float = 1.0) -> Verdict:
    """Equivalence test: the groups' mean accuracies lie within ``tolerance`` pp of each other.

    R = max − min of the group means; SE = s·√(2/n) with s the pooled seed standard deviation and n the
    smallest seed count. Reproduced if R + 2·SE ≤ tolerance, not reproduced if R − 2·SE > tolerance, else
    inconclusive."""
    if scale == "smoke":
        return not_evaluated(claim_id, claim, scale)
    s = summary(df, by)
    n = int(s["n"].min())
    means = ", ".join(f"{k}: {m:.2f}" for k, m in zip(s[by], s["mean"]))
    r = s["mean"].max() - s["mean"].min()
    if n < 2:
        return Verdict(claim_id, claim, "inconclusive", f"range of means R = {r:.2f} pp ({means}); 1 seed",
                       "needs ≥ 2 seeds per group to estimate the seed spread", scale)
    pooled = math.sqrt((s["std"] ** 2).mean())
    se = pooled * math.sqrt(2 / n)
    status = ("reproduced" if r + 2 * se <= tolerance else
              "not reproduced" if r - 2 * se > tolerance else "inconclusive")
    return Verdict(claim_id, claim, status,
                   f"range of mean test accuracies R = {r:.2f} pp ({means}); pooled seed std {pooled:.2f} pp, "
                   f"n = {n}, SE of a difference {se:.2f} pp",
                   f"reproduced if R + 2·SE ≤ {tolerance} pp; not reproduced if R − 2·SE > {tolerance} pp", scale)


def _cells(df: pd.DataFrame, mask: pd.Series, over: str) -> pd.DataFrame:
    """Mean, variance and n of test accuracy (%) per value of ``over`` for the rows in ``mask``."""
    d = df[mask].assign(_a=df.loc[mask, "test_acc"] * 100)
    return d.groupby(over)["_a"].agg(mean="mean", var="var", n="count")


def below(df: pd.DataFrame, a: pd.Series, b: pd.Series, over: str, claim_id: str, claim: str, scale: str,
          where=lambda v: True, a_name: str = "a", b_name: str = "b") -> Verdict:
    """Directional test: group ``a`` has lower test accuracy than group ``b`` (boolean row masks), averaged
    over the values ``v`` of column ``over`` with ``where(v)`` (e.g. ρ ≥ 0.1).

    D = mean over the selected values of (mean_a − mean_b), in pp; SE² = Σ (s_a²/n_a + s_b²/n_b) / k² with
    k values. Reproduced if D < −2·SE; not reproduced if D ≥ 0 (no effect, or the opposite one, in the mean);
    inconclusive in between (the right sign, not beyond the seed noise) or with fewer than 2 seeds."""
    if scale == "smoke":
        return not_evaluated(claim_id, claim, scale)
    ca, cb = _cells(df, a, over), _cells(df, b, over)
    values = [v for v in ca.index.intersection(cb.index) if where(v)]
    if not values:
        return Verdict(claim_id, claim, "inconclusive", "no common grid values to compare",
                       "needs both groups at the same grid values", scale)
    diffs = [ca.loc[v, "mean"] - cb.loc[v, "mean"] for v in values]
    d = sum(diffs) / len(diffs)
    per_value = ", ".join(f"{over.removeprefix('hp_')}={v:g}: {x:+.2f}" for v, x in zip(values, diffs))
    n = int(min(ca.loc[values, "n"].min(), cb.loc[values, "n"].min()))
    stat = f"D = mean({a_name} − {b_name}) = {d:+.2f} pp over {len(values)} value(s) ({per_value})"
    if n < 2:
        return Verdict(claim_id, claim, "inconclusive", stat + "; 1 seed", "needs ≥ 2 seeds per cell", scale)
    se = math.sqrt(sum(ca.loc[v, "var"] / ca.loc[v, "n"] + cb.loc[v, "var"] / cb.loc[v, "n"]
                       for v in values)) / len(values)
    status = "reproduced" if d < -2 * se else "not reproduced" if d >= 0 else "inconclusive"
    return Verdict(claim_id, claim, status, f"{stat}; SE {se:.2f} pp, n ≥ {n} seeds per cell",
                   "reproduced if D < −2·SE; not reproduced if D ≥ 0; inconclusive otherwise", scale)


def negate(v: Verdict, claim_id: str, claim: str) -> Verdict:
    """The verdict on the opposite claim ("a is *not* below b"): reproduced ↔ not reproduced."""
    flip = {"reproduced": "not reproduced", "not reproduced": "reproduced"}
    rule = f"the negation of: {v.rule}"
    return Verdict(claim_id, claim, flip.get(v.status, v.status), v.statistic, rule, v.scale)


def all_of(claim_id: str, claim: str, scale: str, *parts: Verdict) -> Verdict:
    """A claim made of parts: reproduced if every part is, not reproduced if any part is not, else
    inconclusive."""
    if scale == "smoke":
        return not_evaluated(claim_id, claim, scale)
    statuses = [p.status for p in parts]
    status = ("reproduced" if all(s == "reproduced" for s in statuses) else
              "not reproduced" if "not reproduced" in statuses else "inconclusive")
    stat = "; ".join(f"({i + 1}) {p.claim} — {p.status}: {p.statistic}" for i, p in enumerate(parts))
    rule = "all parts reproduced; any part not reproduced fails the claim. Parts' rules: " + \
        "; ".join(f"({i + 1}) {p.rule}" for i, p in enumerate(parts))
    return Verdict(claim_id, claim, status, stat, rule, scale)


def trace_goes_negative(history: pd.DataFrame, hessian: pd.Series, gn: pd.Series, claim_id: str, claim: str,
                        scale: str) -> Verdict:
    """Claim A6 on learning curves (``history``: one row per run and epoch with the run's own ``penalty``
    estimate). Reproduced if the Hessian-trace run of every seed reaches a negative epoch-mean tr H estimate
    while the GN-trace runs' tr G estimates stay ≥ 0 and none of them diverged; not reproduced if no seed's
    tr H estimate goes negative; inconclusive otherwise."""
    if scale == "smoke":
        return not_evaluated(claim_id, claim, scale)
    h, g = history[hessian], history[gn]
    h_min = h.groupby("seed")["penalty"].min()
    g_min = g.groupby("seed")["penalty"].min() if len(g) else pd.Series(dtype=float)
    gn_ok = len(g) > 0 and (g_min >= 0).all() and not g["diverged"].any()
    stat = (f"min epoch-mean tr H estimate per seed: {', '.join(f'{v:.3g}' for v in h_min)}; "
            f"min tr G estimate per seed: {', '.join(f'{v:.3g}' for v in g_min)}; "
            f"diverged: Hessian {int(h.groupby('seed')['diverged'].any().sum())}, "
            f"GN {int(g.groupby('seed')['diverged'].any().sum()) if len(g) else 0} seed(s)")
    status = ("reproduced" if len(h_min) and (h_min < 0).all() and gn_ok else
              "not reproduced" if len(h_min) and (h_min >= 0).all() else "inconclusive")
    return Verdict(claim_id, claim, status, stat,
                   "reproduced if tr H goes negative for every seed while tr G stays ≥ 0 without divergence; "
                   "not reproduced if tr H never goes negative", scale)


def falls_with(df: pd.DataFrame, x: str, y: str, claim_id: str, claim: str, scale: str,
               groups: str | None = None, tolerance: float = 0.0) -> Verdict:
    """Monotone-decrease test: the mean of ``y`` over seeds is non-increasing along ``x`` (up to ``tolerance``)
    within every group, and lower at the largest ``x`` than at the smallest. Reproduced if so for every group;
    not reproduced if some group's last mean is not below its first; inconclusive otherwise."""
    if scale == "smoke":
        return not_evaluated(claim_id, claim, scale)
    parts, statuses = [], []
    for name, d in (df.groupby(groups, sort=False) if groups else [("all", df)]):
        means = d.groupby(x)[y].mean().sort_index()
        steps = means.diff().dropna()
        monotone = bool((steps <= tolerance).all())
        falls = means.iloc[-1] < means.iloc[0]
        statuses.append("reproduced" if monotone and falls else "not reproduced" if not falls else "inconclusive")
        parts.append(f"{name}: " + ", ".join(f"{k:g}→{v:.3g}" for k, v in means.items()))
    status = ("reproduced" if all(s == "reproduced" for s in statuses) else
              "not reproduced" if "not reproduced" in statuses else "inconclusive")
    return Verdict(claim_id, claim, status, "; ".join(parts),
                   f"reproduced if the mean {y} never rises along {x} by more than {tolerance:g} and ends below "
                   "its start, in every group", scale)


# id → (figure, the paper's statement, chapter). DESIGN §4; S1 is the book's own SGD baseline.
CLAIMS: dict[str, tuple[str, str, str]] = {
    "S1": ("Paper A, Fig. 8 (SGD)", "SGD's test accuracy does not depend on the activation", "01_sgd_activations"),
    "A1": ("Paper A, Fig. 1", "PSAM ≈ SAM with GELU; with ReLU, PSAM falls below SAM as ρ grows", "02_sam_vs_psam"),
    "A2": ("Paper A, Fig. 2", "GELU with its activation NME ablated degrades like ReLU", "03_activation_nme_ablation"),
    "A3": ("Paper A, Fig. 3", "a synthetic NME (β = 100) removes ReLU's degradation at ρ = 0.1", "04_synthetic_nme"),
    "A4": ("Paper A, Fig. 4", "the GN-trace penalty is best and stable; the Hessian-trace penalty and weight noise "
           "help little and degrade at larger σ²", "06_trace_penalties"),
    "A5": ("Paper A, Fig. 5", "with 5 Hutchinson probes the Hessian-trace penalty stays unstable",
           "07_trace_penalties_5_probes"),
    "A6": ("Paper A, Fig. 6", "the Hessian-trace penalty drives tr H large and negative; tr G stays ≥ 0",
           "08_trace_during_training"),
    "A7": ("Paper A, Fig. 7", "ReLU's NME lives only on region boundaries; β-GELU's within ~1/β of them",
           "09_nme_landscape"),
    "A8": ("Paper A, Fig. 8", "SGD is flat in β; PSAM's benefit vanishes as β grows", "10_beta_gelu_psam"),
    "A9": ("Paper A, Fig. 9", "the fraction of non-zero σ'' falls with β, much more after training",
           "11_nonzero_second_derivatives"),
    "A10": ("Paper A, Fig. 10", "removing the NME from PSAM (GN-PSAM) hurts at every ρ", "05_gn_psam"),
    "B1": ("Paper B, main table", "NSO beats the best sharpness-reducing baseline (up to +1.8 %)", "12_nso_accuracy"),
    "B2": ("Paper B, Hessian table", "NSO lowers the Hessian trace and top eigenvalue (−17.7 % / −12.8 %)",
           "13_nso_flatness"),
    "B3": ("Paper B, ablations", "two-sided beats one-sided; NSO combines with weight decay", "14_nso_ablations"),
}


def scoreboard(verdicts=VERDICTS) -> pd.DataFrame:
    """One row per claim of :data:`CLAIMS`, with the verdict the last build saved (``not run`` if none)."""
    from .grids import load_params
    rows = []
    for claim_id, (figure, statement, chapter) in CLAIMS.items():
        path = Path(verdicts) / f"{claim_id}.json"
        v = json.loads(path.read_text()) if path.exists() else {}
        scale = v.get("scale")
        seeds = len(load_params(chapter, scale).get("seeds", [])) if scale else None
        rows.append({"claim": claim_id, "figure": figure, "statement": statement, "chapter": chapter,
                     "verdict": v.get("status", "not run"), "scale": scale or "—", "seeds": seeds,
                     "statistic": v.get("statistic", "")})
    return pd.DataFrame(rows)




def nme_landscape(fig7, scale: str, band: float = 3.0, mass: float = 0.9, max_area: float = 0.5,
            quadratic_tol: float = 1e-9):
    """Claim A7 tested on the grid (the same computation at every scale, so it is evaluated at smoke scale too).

    Reproduced if (i) the ReLU NME ‖N‖_F is exactly 0 at every grid point (no grid point lies on a boundary),
    (ii) the ReLU loss is quadratic within each region (:func:`quadratic_residual` ≤ ``quadratic_tol``), and
    (iii) ≥ ``mass`` of the β-GELU NME mass lies within ``band``/β of a boundary while that band covers at most
    ``max_area`` of the grid; not reproduced if any fails; inconclusive if the grid resolves 1/β with fewer
    than 2 steps."""
    from .landscape import area_within, max_nme_off_boundaries, nme_mass_within, quadratic_residual
    relu, gelu = fig7.relu, fig7.gelu
    relu_max, quad = max_nme_off_boundaries(relu), quadratic_residual(relu)
    d = band / gelu.beta
    m, area = nme_mass_within(gelu, d), area_within(gelu, d)
    m1 = nme_mass_within(gelu, 1 / gelu.beta)
    steps = 1 / (gelu.beta * gelu.step)
    n = len(relu.a)
    stat = (f"ReLU: max ‖N‖_F over all {n}×{n} grid points = {relu_max:.3g} (nearest grid point |h| = "
            f"{float(relu.distance.min()):.3g} from a boundary); per-region quadratic fit of the loss, max residual "
            f"{quad:.2g} of the loss range (β-GELU: {quadratic_residual(gelu):.2g}). β-GELU (β = {gelu.beta:g}): "
            f"{100 * m:.1f}% of the NME mass Σ‖N‖_F lies within {band:g}/β = {d:.3g} of a boundary "
            f"({100 * m1:.1f}% within 1/β), a band covering {100 * area:.1f}% of the grid; "
            f"1/β = {steps:.1f} grid steps")
    rule = (f"reproduced if the ReLU NME is 0 at every grid point, the ReLU loss is quadratic in each region "
            f"(residual ≤ {quadratic_tol:g}), and ≥ {100 * mass:g}% of the β-GELU NME mass lies within {band:g}/β "
            f"of a boundary in a band covering ≤ {100 * max_area:g}% of the grid; not reproduced if any fails; "
            f"inconclusive if 1/β spans fewer than 2 grid steps. Evaluated at every scale (the computation is the "
            f"same)")
    ok = relu_max == 0 and quad <= quadratic_tol and m >= mass and area <= max_area
    status = "inconclusive" if steps < 2 else "reproduced" if ok else "not reproduced"
    return Verdict("A7", "ReLU: piecewise-quadratic loss, NME only on the region boundaries; β-GELU: NME within "
                   "~1/β of them.", status, stat, rule, scale)


def beats_best(best: pd.DataFrame, method: str, claim_id: str, claim: str, scale: str, by: str = "method",
               labels: dict | None = None):
    """Directional test: ``method`` (its selected setting) has higher test accuracy than the strongest other
    group (the one with the highest mean test accuracy of its selected setting — the hardest comparison).

    D = mean(method) − mean(best other), pp; SE = √(s₁²/n₁ + s₂²/n₂). Reproduced if D > 2·SE; not reproduced if
    D ≤ 0; inconclusive in between or with fewer than 2 seeds."""
    if scale == "smoke":
        return not_evaluated(claim_id, claim, scale)
    name = (labels or {}).get
    s = summary(best, by).set_index(by)
    if method not in s.index or len(s) < 2:
        return Verdict(claim_id, claim, "inconclusive", f"{method} or its baselines have no records",
                       "needs the method and at least one baseline", scale)
    others = s.drop(index=method)
    rival = others["mean"].idxmax()
    a, b = s.loc[method], s.loc[rival]
    d = a["mean"] - b["mean"]
    stat = (f"D = {name(method, method)} − best baseline ({name(rival, rival)}) = {a['mean']:.2f} − "
            f"{b['mean']:.2f} = {d:+.2f} pp (paper: up to +1.8 pp)")
    n = int(min(a["n"], b["n"]))
    if n < 2:
        return Verdict(claim_id, claim, "inconclusive", stat + "; 1 seed", "needs ≥ 2 seeds per method", scale)
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    status = "reproduced" if d > 2 * se else "not reproduced" if d <= 0 else "inconclusive"
    return Verdict(claim_id, claim, status, f"{stat}; SE {se:.2f} pp, n ≥ {n} seeds",
                   "reproduced if D > 2·SE; not reproduced if D ≤ 0; inconclusive otherwise", scale)


def lower_than_all(table: pd.DataFrame, method: str, metric: str, claim_id: str, claim: str, scale: str,
                   paper: float | None = None, by: str = "method", labels: dict | None = None):
    """Directional test on a :func:`reductions` table: ``method``'s ``metric`` is lower than every other group's.

    r_g = relative change against group g (%), SE_g by the delta method. Reproduced if r_g < −2·SE_g for every
    g; not reproduced if r_g ≥ 0 for some g (NSO not flatter than that baseline in the mean); else inconclusive."""
    if scale == "smoke":
        return not_evaluated(claim_id, claim, scale)
    name = (labels or {}).get
    others = table[table[by] != method]
    r, se = others[f"{metric}_change_%"], others[f"{metric}_change_se_%"]
    per = ", ".join(f"{name(g, g)}: {x:+.1f}%" + (f" ± {s:.1f}" if s == s else "")
                    for g, x, s in zip(others[by], r, se))
    stat = f"change of {metric} against each baseline: {per}; mean {r.mean():+.1f}%"
    stat += f" (paper: {paper:+.1f}%)" if paper is not None else ""
    if others.empty:
        return Verdict(claim_id, claim, "inconclusive", "no baselines", "needs baselines", scale)
    if se.isna().any():
        status = "not reproduced" if (r >= 0).any() else "inconclusive"
        return Verdict(claim_id, claim, status, stat + "; < 2 seeds",
                       "not reproduced if the change is ≥ 0 against some baseline; else needs ≥ 2 seeds", scale)
    status = ("reproduced" if (r < -2 * se).all() else "not reproduced" if (r >= 0).any() else "inconclusive")
    return Verdict(claim_id, claim, status, stat,
                   "reproduced if the change < −2·SE against every baseline; not reproduced if ≥ 0 against "
                   "any; inconclusive otherwise", scale)
