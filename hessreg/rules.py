"""The verdict rules: for each claim of :data:`hessreg.claims.CLAIMS`, the parts it is judged on — which arms,
which grid values, which thresholds of the scale's ``verdict:`` block — and the statistics that need more than
accuracies (penalty trajectories, σ'' fractions, selection by validation, Hessian measurements, the landscape).

This module and :mod:`hessreg.stats` are *the rule code*: :func:`rules_hash` is their content hash, and
``experiments/params/rules.yaml`` names the hash each scale was registered with before its runs
(``tests/test_rules.py`` fails when the code changes under a registered scale without a recorded
re-registration). A chapter calls ``result.judge("<claim id>")``; nothing of a verdict is decided in a notebook.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import chapters, paper_b, stats
from .claims import CLAIMS, Verdict
from .landscape import area_within, max_nme_off_boundaries, nme_mass_within, quadratic_residual
from .paper_b import settings_table
from .paper_b import matches as _is
from .stats import (Interval, Part, _directional, _directional_band, _directional_rule, combine,
                    slope)

RULE_FILES = ("stats.py", "rules.py")


def rules_hash() -> str:
    """SHA-256 (16 hex digits) of the rule code: :data:`RULE_FILES`, in that order."""
    h = hashlib.sha256()
    for name in RULE_FILES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- A6: the trace during training

def trace_negative(history: pd.DataFrame, frame: pd.DataFrame, hessian: str, gn: str, what: str, *,
                   z: float = 3.0) -> list[Part]:
    """Claim A6 on learning curves (``history``: one row per run and epoch with the epoch-mean ``penalty``
    estimate, its per-step ``penalty_sd`` and ``penalty_steps``; ``frame``: the same runs after
    :func:`hessreg.stats.outcomes`). Method names ``hessian`` and ``gn``.

    (1) tr H goes large and negative, in every seed: some epoch's mean lies below −z standard errors
    (sd/√steps, the estimator's own noise) *and* below minus its first epoch's mean (as large as the curvature it
    started from). A seed that diverged before its first epoch ended has no trajectory: it is listed and the
    part is inconclusive unless another seed already fails it. (2) tr G stable: every GN run healthy and every
    epoch's estimate finite. tr G ≥ 0 holds by construction (the estimator is B‖g‖²), so it is not tested."""
    parts = []
    h = history[history["method"] == hessian]
    seeds = sorted(frame.loc[frame["method"] == hessian, "seed"])
    rows, fails, blind = [], 0, []
    for s in seeds:
        e = h[h["seed"] == s].sort_values("epoch")
        if e.empty:
            blind.append(s)
            continue
        se = e["penalty_sd"] / np.sqrt(e["penalty_steps"].clip(lower=1))
        neg = e["penalty"] < -z * se
        large = e["penalty"] < -abs(e["penalty"].iloc[0])
        ok = bool((neg & large).any())
        fails += not ok
        rows.append(f"seed {s}: min {e['penalty'].min():.3g} (epoch {int(e.loc[e['penalty'].idxmin(), 'epoch'])}), "
                    f"first epoch {e['penalty'].iloc[0]:.3g} → {'yes' if ok else 'no'}")
    stat = "; ".join(rows) + (f"; diverged before a first epoch ended (no trajectory): seeds {blind}" if blind
                              else "")
    status = ("not evaluated" if not seeds else "not reproduced" if fails else
              "inconclusive" if blind or len(rows) < 2 else "reproduced")
    parts.append(Part(f"{what}: tr H estimate large and negative in every seed", status, stat,
                      f"reproduced if in every seed some epoch-mean tr H estimate < −{z:g}·SE and < −(its first "
                      "epoch's mean); not reproduced if some seed never gets there; inconclusive with seeds that "
                      "diverged before any epoch ended", unit=""))
    g = frame[frame["method"] == gn]
    gh = history[history["method"] == gn]
    bad = int((g["outcome"] != "healthy").sum()) + int((~np.isfinite(gh["penalty"].astype(float))).sum())
    parts.append(Part(f"{what}: GN-trace runs stable", "not evaluated" if g.empty else
                      "reproduced" if bad == 0 else "not reproduced",
                      f"{len(g)} GN-trace runs, {bad} collapsed, diverged or with a non-finite epoch estimate; tr G "
                      f"estimates from {gh['penalty'].min():.3g} to {gh['penalty'].max():.3g} (≥ 0 by construction)",
                      "reproduced if every GN-trace run is healthy with finite estimates", unit=""))
    return parts


# ----------------------------------------------------------------------------- A9: non-zero σ'' fractions

def fraction_slopes(metrics: pd.DataFrame, method: str, *, min_effect: float = 0.05) -> list[Part]:
    """Claim A9 on ``metrics`` (``results.metrics_frame``, measurement ``nonzero_d2``): per seed, the slope of
    log10(fraction of σ'' ≠ 0) against log10 β, (1) at initialization (< 0) and (2) after training minus at
    initialization (< 0: falls faster after training). Runs of ``method`` only, so that the initial measurement
    — the same weights for every method of a seed — is counted once."""
    m = metrics[(metrics["name"] == "nonzero_d2") & (metrics["method"] == method)]
    m = m.assign(logf=np.log10(m["total"].clip(lower=1e-12)))
    unit = "decades per decade of β"
    init, final = m[m["when"] == "init"], m[m["when"] == "final"]
    p1 = slope(init, pd.Series(True, index=init.index), "beta", "fraction falls with β at initialization",
               y="logf", min_effect=min_effect, unit=unit)
    both = final.merge(init[["seed", "beta", "logf"]], on=["seed", "beta"], suffixes=("", "_init"))
    both = both.assign(dlogf=both["logf"] - both["logf_init"])
    p2 = slope(both, pd.Series(True, index=both.index), "beta", "falls faster after training (slope after − "
               "slope at init)", y="dlogf", min_effect=min_effect, unit=unit)
    return [p1, p2]


# ----------------------------------------------------------------------------- Paper B: selection, flatness

def select(d: pd.DataFrame, by: str = "method", metric: str = "val_acc") -> pd.DataFrame:
    """The runs (all seeds) of each group's setting with the highest mean ``metric`` over seeds; a setting with
    a failing seed (collapsed, recovered or diverged) counts as −∞. Ties — equal means to 1e-9 pp, which a small
    validation split makes common — go to the lower mean validation loss, then to the smaller hyperparameter
    (settings are listed in ascending order). Test accuracy is never looked at. ``d`` from
    :func:`hessreg.stats.outcomes`."""
    if metric not in d or d[metric].isna().all():
        raise ValueError(f"no {metric} in the records: selection by validation needs Config.val_size")
    table = settings_table(d, by, metric)
    bad = {k for k in d.loc[d["outcome"] != "healthy", "key"]}
    crit = table[f"{metric}_mean"].where([not (set(ks) & bad) for ks in table["_keys"]]).fillna(-math.inf)
    order = table.assign(_crit=crit.round(9), _loss=table["val_loss_mean"].fillna(math.inf)).sort_values(
        ["_crit", "_loss"], ascending=[False, True], kind="stable")
    best = order.groupby(by, sort=False).head(1)
    keys = {k: s for ks, s in zip(best["_keys"], best["setting"]) for k in ks}
    return d[d["key"].isin(keys)].assign(setting=lambda x: x["key"].map(keys))


def beats_best(best: pd.DataFrame, method: str, what: str, *, min_effect: float = 0.5,
               labels: dict | None = None) -> Part:
    """Claim B1 on :func:`select`'s rows: ``method`` above the rival with the highest mean validation accuracy
    (selected like every method, on validation), paired by seed on test accuracy."""
    name = (labels or {}).get
    others = best[best["method"] != method]
    if others.empty or method not in set(best["method"]):
        return Part(what, "not evaluated", f"{method} or its baselines have no records", "")
    rival = others.groupby("method")["val_acc"].mean().idxmax()
    a = best[best["method"] == method].set_index("seed")["acc"]
    b = best[best["method"] == rival].set_index("seed")["acc"]
    iv = Interval.of((a - b).dropna())
    status = _directional(iv, "above", min_effect)
    return Part(what, status, f"{name(method, method)} − {name(rival, rival)} (the "
                f"rival with the best validation accuracy), test accuracy: {iv.text()}",
                _directional_rule("above", min_effect), iv.mean, iv.se,
                cells=[iv.cell(f"{name(method, method)} − {name(rival, rival)}", status)],
                band=_directional_band("above", min_effect))


def flatter(best: pd.DataFrame, method: str, metric: str, what: str, *, min_effect: float = 5.0,
            labels: dict | None = None) -> Part:
    """Claim B2 on :func:`select`'s rows joined with the flatness measurements: per seed, the relative change
    100·(m_method / m_other − 1) % of ``metric`` against every other method's selected setting; reproduced if
    below 0 against all, not reproduced if above −``min_effect`` % against any. A non-positive value (power
    iteration returns the eigenvalue largest in magnitude) cannot be compared and is reported."""
    name = (labels or {}).get
    own = best[best["method"] == method].set_index("seed")[metric]
    rows, statuses, ivs, cells = [], [], [], []
    for other, g in best[best["method"] != method].groupby("method", sort=False):
        ref = g.set_index("seed")[metric]
        if (own <= 0).any() or (ref <= 0).any():
            statuses.append("inconclusive")
            rows.append(f"{name(other, other)}: a non-positive {metric}, not compared")
            continue
        iv = Interval.of((100 * (own / ref - 1)).dropna())
        statuses.append(_directional(iv, "below", min_effect))
        ivs.append(iv)
        cells.append(iv.cell(f"against {name(other, other)}", statuses[-1]))
        rows.append(f"{name(other, other)}: {iv.mean:+.1f} % [{iv.lo95:+.1f}, {iv.hi95:+.1f}]")
    status = combine(statuses)
    mean = float(np.mean([iv.mean for iv in ivs])) if ivs else math.nan
    return Part(what, status, f"change of {metric} per seed, mean and 95 % interval, against each method: "
                + "; ".join(rows), _directional_rule("below", min_effect, "%") + " — against every method",
                mean, math.nan, "% (mean over methods)", cells=cells, band=_directional_band("below", min_effect))


# ----------------------------------------------------------------------------- A7: the landscape

def nme_landscape(fig7, scale: str, band: float = 3.0, mass: float = 0.9, max_area: float = 0.5,
            quadratic_tol: float = 1e-9):
    """Claim A7 tested on the grid (the same computation at every scale, so it is evaluated at smoke scale too).

    Reproduced if (i) the ReLU NME ‖N‖_F is exactly 0 at every grid point (no grid point lies on a boundary),
    (ii) the ReLU loss is quadratic within each region (:func:`quadratic_residual` ≤ ``quadratic_tol``), and
    (iii) ≥ ``mass`` of the β-GELU NME mass lies within ``band``/β of a boundary while that band covers at most
    ``max_area`` of the grid; not reproduced if any fails; inconclusive if the grid resolves 1/β with fewer
    than 2 steps."""
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
    return Verdict(CLAIMS["A7"], status, [Part("ReLU and β-GELU landscapes", status, stat, rule, unit="")], "", "",
                   scale)


# ------------------------------------------------------------------------------------- one rule per claim

def s1(r) -> list[Part]:
    df, v = r.outcomes(), r.params["verdict"]
    return [stats.equivalent(df, _is(df, activation="relu"), _is(df, activation="gelu"), None, [], "ReLU ≈ GELU",
                             tolerance=v["tolerance"], names=("ReLU", "GELU")),
            slope(df, _is(df, activation="beta_gelu"), "beta", "β-GELU: flat in β", tolerance=v["slope_tolerance"])]


def a1(r) -> list[Part]:
    df, v = r.outcomes(), r.params["verdict"]
    psam, sam = (lambda act, m=m: _is(df, method=m, activation=act) for m in ("psam", "sam"))
    return [stats.compare(df, psam("relu"), sam("relu"), "hp_rho", v["rhos"], "ReLU: PSAM below SAM",
                          min_effect=v["min_effect"], names=("PSAM", "SAM")),
            stats.equivalent(df, psam("gelu"), sam("gelu"), "hp_rho", v["rhos"], "GELU: PSAM ≈ SAM, unlike ReLU",
                             tolerance=v["tolerance"], names=("PSAM", "SAM"),
                             contrast=(psam("relu"), sam("relu"), "ReLU"))]


def _psam_vs(df: pd.DataFrame, v: dict, act: str, others: tuple[str, str], what: tuple[str, str], direction: str,
             label: str) -> list[Part]:
    """Claims A2/A3: PSAM with ``act`` against one activation, then against the midpoint of two."""
    psam = lambda a: _is(df, method="psam", activation=a)  # noqa: E731
    return [stats.compare(df, psam(act), psam(others[0]), "hp_rho", v["rhos"], what[0], direction=direction,
                          min_effect=v["min_effect"], names=(label, {"relu": "ReLU", "gelu": "GELU"}[others[0]])),
            stats.compare(df, psam(act), [psam("relu"), psam("gelu")], "hp_rho", v["rhos"], what[1],
                          direction=direction, min_effect=v["min_effect"], names=(label, "½(ReLU + GELU)"))]


def a2(r) -> list[Part]:
    return _psam_vs(r.outcomes(), r.params["verdict"], "gelu_nme_ablated", ("gelu", "relu"),
                    ("ablated GELU below GELU", "ablated GELU closer to ReLU than to GELU"), "below", "ablated GELU")


def a3(r) -> list[Part]:
    return _psam_vs(r.outcomes(), r.params["verdict"], "relu_synthetic_nme", ("relu", "gelu"),
                    ("synthetic NME above ReLU", "synthetic NME closer to GELU than to ReLU"), "above",
                    "ReLU + synthetic NME")


def a10(r) -> list[Part]:
    df, v = r.outcomes(), r.params["verdict"]
    return [stats.compare(df, _is(df, method="gn_psam", activation="gelu"), _is(df, method="psam", activation="gelu"),
                          "hp_rho", v["rhos"], "GN-PSAM below PSAM at every ρ", min_effect=v["min_effect"],
                          names=("GN-PSAM", "PSAM"))]


def _trace_frame(r) -> pd.DataFrame:
    df = r.outcomes()
    return df.assign(sigma2=chapters.penalty_weight(df, r.params["sigma2s"]))


def a4(r) -> list[Part]:
    df, v = _trace_frame(r), r.params["verdict"]
    gn, sgd = _is(df, method="gn_trace"), _is(df, method="sgd")
    return [stats.control(df, gn, sgd, "sigma2", v["large_sigma2s"], "control: the GN-trace penalty beats SGD",
                          names=("tr G", "SGD")),
            stats.stable(df, gn, "sigma2", "GN-trace penalty stable at every σ²"),
            *(stats.compare(df, _is(df, method=m), gn, "sigma2", v["large_sigma2s"], f"{name} below GN trace at large "
                            "σ²", min_effect=v["min_effect"], names=(short, "tr G"))
              for m, name, short in (("hessian_trace", "Hessian trace", "tr H"), ("weight_noise", "weight noise",
                                                                                 "noise")))]


def a5(r) -> list[Part]:
    df, v = _trace_frame(r), r.params["verdict"]
    gn = _is(df, method="gn_trace_hutchinson")
    return [stats.stable(df, gn, "sigma2", "GN-trace penalty (5 probes) stable at every σ²"),
            stats.compare(df, _is(df, method="hessian_trace"), gn, "sigma2", v["large_sigma2s"],
                          "Hessian trace (5 probes) below GN trace (5 probes) at large σ²", min_effect=v["min_effect"],
                          names=("tr H", "tr G"))]


def a6(r) -> list[Part]:
    df, v = r.outcomes(), r.params["verdict"]
    hist = r.history.query("method != 'sgd' and hp_sigma2 == @v['sigma2']")
    return trace_negative(hist, df[df["hp_sigma2"] == v["sigma2"]], "hessian_trace", "gn_trace",
                          f"σ² = {v['sigma2']:g}", z=v["z"])


def a8(r) -> list[Part]:
    """Paper A's Fig. 8 as the paper states it: PSAM's benefit over SGD exists at β = the grid's smallest (the
    positive control), SGD is flat in β, and the benefit falls as β grows — graded among healthy seeds, or else
    through failures (PSAM at the largest β against PSAM at the smallest)."""
    df, v = r.outcomes(), r.params["verdict"]
    sgd, psam = _is(df, method="sgd"), _is(df, method="psam")
    lo, hi = min(df["beta"]), max(df["beta"])
    falls = slope(df, psam, "beta", "PSAM − SGD falls as β grows", baseline=sgd, direction="below",
                  min_effect=v["min_effect"], healthy_only=True)
    failure, failed, failures = stats.failure_rates(df, psam & (df["beta"] == hi), psam & (df["beta"] == lo), "beta",
                                                    [lo, hi], "below", (f"PSAM at β = {hi:g}", f"PSAM at β = {lo:g}"))
    if falls.status not in ("reproduced", "not evaluated") and failed:
        falls.status = "reproduced as training failure"
    falls.failure, falls.failures = failure, failures
    return [stats.control(df, psam & (df["beta"] == lo), sgd & (df["beta"] == lo), None, [],
                          f"control: PSAM beats SGD at β = {lo:g}", names=("PSAM", "SGD")),
            slope(df, sgd, "beta", "SGD flat in β", tolerance=v["slope_tolerance"]), falls]


def a9(r) -> list[Part]:
    return fraction_slopes(r.metrics, "sgd", min_effect=r.params["verdict"]["min_effect"])


def _selected(r) -> tuple[pd.DataFrame, dict]:
    labels = paper_b.method_labels(r.params["optimizer"])
    return select(r.outcomes(labels=labels)), labels


def b1(r) -> list[Part]:
    """NSO above the best rival, once the rivals beat plain fine-tuning (the positive control)."""
    best, labels = _selected(r)
    rivals = best[~best["method"].isin(["nso", "sgd"])]
    rival = rivals.groupby("method")["val_acc"].mean().idxmax() if not rivals.empty else None
    is_ = lambda m: best["method"] == m  # noqa: E731
    control = stats.control(best, is_(rival), is_("sgd"), None, [], "control: the best rival beats plain "
                            "fine-tuning", names=(labels.get(rival, str(rival)), labels["sgd"]))
    return [control, beats_best(best, "nso", "NSO above the best rival", min_effect=r.params["verdict"]["min_effect"],
                                labels=labels)]


def b2(r) -> list[Part]:
    best, labels = _selected(r)
    best = best.merge(paper_b.flatness_frame(r.records), on="key")
    v = r.params["verdict"]
    return [flatter(best, "nso", m, f"{name} lower than every method's", min_effect=v["min_effect"], labels=labels)
            for m, name in (("trace", "Hessian trace"), ("top_eig", "top eigenvalue"))]


def b3(r) -> list[Part]:
    """Two-sided above one-sided at matched compute; NSO with weight decay (selected on validation) above NSO
    alone — the ablation's claim that the two combine."""
    df, v = r.outcomes(paper_b.ablation_frame(r.frame, r.params)), r.params["verdict"]
    is_ = lambda ablation, **eq: (df["ablation"] == ablation) & paper_b.matches(df, **eq)  # noqa: E731
    wd = paper_b.best_weight_decay(df)
    nso_wd = is_("weight decay", method="nso")
    return [stats.compare(df, is_("sides", hp_two_sided=True), is_("sides", hp_two_sided=False), "hp_sigma",
                          r.params["sigmas"], "two-sided (k = 1) above one-sided (k = 2) at matched compute",
                          direction="above", min_effect=v["min_effect"], names=("two-sided", "one-sided")),
            stats.compare(df, nso_wd & (df["weight_decay"] == wd), nso_wd & (df["weight_decay"] == 0), None, [],
                          f"NSO with weight decay {wd:g} (selected on validation) above NSO alone", direction="above",
                          min_effect=v["min_effect"], names=("NSO + wd", "NSO"))]


RULES: dict[str, Callable] = {"S1": s1, "A1": a1, "A2": a2, "A3": a3, "A4": a4, "A5": a5, "A6": a6, "A8": a8,
                              "A9": a9, "A10": a10, "B1": b1, "B2": b2, "B3": b3}
