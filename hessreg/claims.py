"""Verdicts: each chapter's claim tested on its runs, with the statistic and the rule stated.

The statistics and their rules are in :mod:`hessreg.stats`; here live the claims of both papers
(:data:`CLAIMS`), the verdict a chapter prints and saves for the scoreboard, and the rules that need more than
accuracies (penalty trajectories, σ'' fractions, selection by validation, Hessian measurements, the landscape).
A verdict is ``reproduced``, ``not reproduced``, ``inconclusive`` or ``not evaluated`` (smoke scale, or runs of
the pre-registered grid missing). Each chapter's parameter file holds its thresholds (``verdict:``), committed
before its runs were read.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .chapters import load_params
from .landscape import area_within, max_nme_off_boundaries, nme_mass_within, quadratic_residual
from .paper_b import settings_table
from .repo import build_dir, write_atomic
from .stats import STATUSES, Interval, Part, _directional, _directional_rule, combine, slope


def verdicts_dir() -> Path:
    """Where chapters save their verdicts for the scoreboard: ``$HESSREG_VERDICTS``, else
    ``<root>/_build/verdicts``."""
    return Path(os.environ.get("HESSREG_VERDICTS") or build_dir("verdicts"))


# ------------------------------------------------------------------------------------------------ claims

@dataclass(frozen=True)
class Claim:
    """One claim of the papers: its id, the figure or table it comes from, the statement, the chapter that tests
    it and what the paper reports (shown beside the book's statistic)."""

    id: str
    figure: str
    statement: str
    chapter: str
    paper: str

    def judge(self, result, *parts: "Part") -> "Verdict":
        """The verdict on this claim from its ``parts`` (all must hold), given the chapter's ``result``
        (:class:`hessreg.book.ChapterResult`: its scale, and its frame's count of missing runs)."""
        scale = result.scale
        if scale == "smoke":
            return Verdict(self, "not evaluated", [], "runs at smoke scale only check the code",
                           "claims are evaluated at cpu, full or paper scale", scale)
        missing, requested = result.frame.attrs.get("missing", 0), result.frame.attrs.get("requested")
        if missing:
            return Verdict(self, "not evaluated", [], f"{requested - missing} of {requested} runs of the "
                           f"pre-registered grid are stored; {missing} missing",
                           "a claim is evaluated on its complete grid only", scale)
        status = combine([p.status for p in parts])
        rule = "every part reproduced; any part not reproduced fails the claim" if len(parts) > 1 else ""
        return Verdict(self, status, list(parts), "", rule, scale)


@dataclass
class Verdict:
    claim: Claim
    status: str
    parts: list[Part] = field(default_factory=list)
    statistic: str = ""  # for verdicts without parts (not evaluated)
    rule: str = ""
    scale: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def effect(self) -> str:
        """The parts' headline effects (estimate ± SE), for the scoreboard."""
        return "; ".join(h for h in (p.headline() for p in self.parts) if h)

    def markdown(self) -> str:
        c = self.claim
        lines = [f"**Verdict ({c.id}, {self.scale} scale): {self.status}.** {c.statement}", ""]
        if self.statistic:
            lines.append(f"- {self.statistic}")
        for i, p in enumerate(self.parts, 1):
            lines.append(f"- ({i}) {p.what} — **{p.status}**. {p.statistic}")
            if p.counts:
                lines.append(f"  Runs per cell: {p.counts}.")
            lines.append(f"  Rule: {p.rule}")
        if self.rule:
            lines.append(f"- Rule: {self.rule}.")
        lines.append(f"- Paper: {c.paper}")
        return "\n".join(lines)

    _repr_markdown_ = markdown

    def to_dict(self) -> dict:
        return {"claim_id": self.claim.id, "claim": self.claim.statement, "status": self.status,
                "scale": self.scale, "effect": self.effect, "statistic": self.statistic or " | ".join(
                    f"({i}) {p.what}: {p.status}; {p.statistic}" for i, p in enumerate(self.parts, 1)),
                "parts": [{k: None if isinstance(v, float) and not math.isfinite(v) else v
                           for k, v in asdict(p).items()} for p in self.parts],
                "rule": self.rule, "paper": self.claim.paper}

    def save(self, chapter: str) -> Path:
        path = verdicts_dir() / f"{self.claim.id}.json"
        write_atomic(path, json.dumps(self.to_dict() | {"chapter": chapter}, indent=1, allow_nan=False,
                                      default=str))
        return path


# ------------------------------------------------------------------------------------- the papers' claims

CLAIMS: dict[str, Claim] = {c.id: c for c in (
    Claim("S1", "Paper A, Fig. 8 (SGD)", "SGD's test accuracy does not depend on the activation.",
          "01_sgd_activations", "SGD's accuracy is flat across β-GELU's β (Fig. 8, qualitative; no table)."),
    Claim("A1", "Paper A, Fig. 1", "PSAM ≈ SAM with GELU; with ReLU, PSAM falls below SAM as ρ grows.",
          "02_sam_vs_psam", "Fig. 1: with ReLU, PSAM drops below SAM from ρ ≈ 0.1 on; with GELU the curves "
          "track each other (figure only, no table)."),
    Claim("A2", "Paper A, Fig. 2", "GELU with its activation NME ablated degrades under PSAM like ReLU.",
          "03_activation_nme_ablation", "Fig. 2: the ablated GELU's PSAM curve follows ReLU's, not GELU's "
          "(figure only)."),
    Claim("A3", "Paper A, Fig. 3", "A synthetic NME (β = 100) removes ReLU's degradation under PSAM.",
          "04_synthetic_nme", "Fig. 3: ReLU with the synthetic NME tracks GELU at ρ = 0.1, where plain ReLU "
          "degrades (figure only)."),
    Claim("A4", "Paper A, Fig. 4", "The GN-trace penalty is best and stable; the Hessian-trace penalty and weight "
          "noise help little and degrade at larger σ².", "06_trace_penalties",
          "Fig. 4: GN trace best at every σ²; Hessian trace and weight noise fall at larger σ² (figure only)."),
    Claim("A5", "Paper A, Fig. 5", "With 5 Hutchinson probes the Hessian-trace penalty stays unstable: not an "
          "estimator artefact.", "07_trace_penalties_5_probes", "Fig. 5: 5 probes, 2 seeds; the Hessian-trace "
          "penalty still degrades (figure only)."),
    Claim("A6", "Paper A, Fig. 6", "The Hessian-trace penalty drives tr H large and negative; the GN trace stays "
          "≥ 0 and stable.", "08_trace_during_training", "Fig. 6 (σ² = 1e-3): the tr H estimate falls far below "
          "0 during training; tr G stays positive (figure only)."),
    Claim("A7", "Paper A, Fig. 7", "ReLU's NME lives only on region boundaries; β-GELU's within ~1/β of them.",
          "09_nme_landscape", "Fig. 7: a two-weight slice of a small MLP's loss and NME norm (figure only)."),
    Claim("A8", "Paper A, Fig. 8", "SGD is flat in β; PSAM's benefit vanishes as β grows.", "10_beta_gelu_psam",
          "Fig. 8 (ρ = 0.1): PSAM's gain over SGD shrinks with β and is gone for β ≳ 10³ (figure only)."),
    Claim("A9", "Paper A, Fig. 9", "The fraction of non-zero σ'' falls with β, much more after training.",
          "11_nonzero_second_derivatives", "Fig. 9: the fraction falls with β at initialization and falls "
          "faster after training (figure only)."),
    Claim("A10", "Paper A, Fig. 10", "Removing the NME from PSAM (GN-PSAM) hurts at every ρ.", "05_gn_psam",
          "Fig. 10: GN-PSAM below PSAM at every ρ (figure only)."),
    Claim("B1", "Paper B, main table", "NSO fine-tunes to higher test accuracy than the best baseline.",
          "12_nso_accuracy", "+1.8 pp over the best sharpness-reducing baseline at most (v3; v4: +2.4 pp), "
          "ResNet-34 on six fine-tuning sets."),
    Claim("B2", "Paper B, Hessian table", "NSO lowers the Hessian trace and the top eigenvalue against the "
          "baselines.", "13_nso_flatness", "trace −17.7 %, top eigenvalue −12.8 % (v3; v4: −15.8 % / −9.7 %)."),
    Claim("B3", "Paper B, ablations", "Two-sided NSO beats one-sided noise at matched compute, and NSO combines "
          "with weight decay.", "14_nso_ablations", "two-sided above one-sided; NSO + weight decay above either "
          "alone (ablation tables)."),
)}


def scoreboard(verdicts: Path | None = None) -> pd.DataFrame:
    """One row per claim with the verdict the last build saved in ``verdicts`` (default :func:`verdicts_dir`;
    ``not run`` if none): scale, seeds, the headline effect (estimate ± SE) and the statistic."""
    verdicts = verdicts or verdicts_dir()
    rows = []
    for c in CLAIMS.values():
        path = Path(verdicts) / f"{c.id}.json"
        v = json.loads(path.read_text()) if path.exists() else {}
        scale = v.get("scale")
        seeds = load_params(c.chapter, scale).get("seeds") if scale else None
        seeds = str(len(seeds)) if seeds else "—"  # the landscape (A7) trains nothing
        rows.append({"claim": c.id, "figure": c.figure, "statement": c.statement, "chapter": c.chapter,
                     "verdict": v.get("status", "not run"), "scale": scale or "—", "seeds": seeds,
                     "effect": v.get("effect", ""), "statistic": v.get("statistic", ""), "paper": c.paper})
    return pd.DataFrame(rows)


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
    a diverged or collapsed seed counts as −∞. Test accuracy is never looked at. ``d`` from
    :func:`hessreg.stats.outcomes`."""
    if metric not in d or d[metric].isna().all():
        raise ValueError(f"no {metric} in the records: selection by validation needs Config.val_size")
    table = settings_table(d, by, metric)
    bad = {k for k in d.loc[d["outcome"] != "healthy", "key"]}
    crit = table[f"{metric}_mean"].where([not (set(ks) & bad) for ks in table["_keys"]]).fillna(-math.inf)
    best = table.loc[crit.groupby(table[by], sort=False).idxmax()]
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
    return Part(what, _directional(iv, "above", min_effect), f"{name(method, method)} − {name(rival, rival)} (the "
                f"rival with the best validation accuracy), test accuracy: {iv.text()}",
                _directional_rule("above", min_effect), iv.mean, iv.se)


def flatter(best: pd.DataFrame, method: str, metric: str, what: str, *, min_effect: float = 5.0,
            labels: dict | None = None) -> Part:
    """Claim B2 on :func:`select`'s rows joined with the flatness measurements: per seed, the relative change
    100·(m_method / m_other − 1) % of ``metric`` against every other method's selected setting; reproduced if
    below 0 against all, not reproduced if above −``min_effect`` % against any. A non-positive value (power
    iteration returns the eigenvalue largest in magnitude) cannot be compared and is reported."""
    name = (labels or {}).get
    own = best[best["method"] == method].set_index("seed")[metric]
    rows, statuses, ivs = [], [], []
    for other, g in best[best["method"] != method].groupby("method", sort=False):
        ref = g.set_index("seed")[metric]
        if (own <= 0).any() or (ref <= 0).any():
            statuses.append("inconclusive")
            rows.append(f"{name(other, other)}: a non-positive {metric}, not compared")
            continue
        iv = Interval.of((100 * (own / ref - 1)).dropna())
        statuses.append(_directional(iv, "below", min_effect))
        ivs.append(iv)
        rows.append(f"{name(other, other)}: {iv.mean:+.1f} % [{iv.lo95:+.1f}, {iv.hi95:+.1f}]")
    status = combine(statuses)
    mean = float(np.mean([iv.mean for iv in ivs])) if ivs else math.nan
    return Part(what, status, f"change of {metric} per seed, mean and 95 % interval, against each method: "
                + "; ".join(rows), _directional_rule("below", min_effect, "%") + " — against every method",
                mean, math.nan, "% (mean over methods)")


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
