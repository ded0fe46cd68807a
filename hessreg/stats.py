"""The verdict statistics: run outcomes, paired differences by seed, Student-t and equivalence tests.

A verdict is ``reproduced``, ``not reproduced``, ``inconclusive`` (the data cannot decide at this scale and seed
count) or ``not evaluated`` (smoke scale, or runs of the pre-registered grid missing). Accuracies are in
percentage points (pp). The rules, in the order they are applied:

1. **Run outcomes first.** Every run is *diverged* (a non-finite loss, or no finite accuracy), *collapsed*
   (test accuracy within ``chance_margin`` pp of chance, without a NaN) or *healthy*. Diverged and collapsed runs
   count at chance accuracy — never dropped, never silently averaged as if they trained. Counts per cell are
   printed with the verdict.
2. **Paired by seed.** Runs of one seed share initialization and data order, so arms are compared seed by seed:
   d_s = mean over the claim's grid values of (a_s − b_s). A grid value where both arms collapse or diverge in
   every seed is reported and left out (it cannot tell the arms apart). Any missing cell → not evaluated.
3. **Student's t.** D = mean d_s, SE = sd(d_s)/√n, and the 95 % interval D ± t₀.₉₇₅,ₙ₋₁·SE (t = 4.30 for 3 seeds,
   2.78 for 5). A *directional* claim is reproduced when the interval lies wholly on the claimed side of 0 and
   not reproduced only when it excludes the smallest effect of interest (``min_effect``) — otherwise
   inconclusive. An *equivalence* claim ("≈", "flat") is two one-sided tests: reproduced when the 90 % interval
   lies within ± ``tolerance``, not reproduced when the 95 % interval lies wholly outside it.
4. **Composite claims** hold when every part holds and fail when any part fails.

Each chapter's parameter file holds its thresholds (``verdict:``), committed before its runs were read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as _t

STATUSES = ("reproduced", "not reproduced", "inconclusive", "not evaluated")
OUTCOMES = ("healthy", "collapsed", "diverged")
CHANCE = 10.0  # pp: every dataset of the book has 10 classes


@dataclass
class Part:
    """One tested part of a claim: its status, the statistic (with numbers), the rule, the headline effect
    (``effect`` ± ``se`` in ``unit``) and the run outcome counts per cell."""

    what: str
    status: str
    statistic: str
    rule: str
    effect: float = math.nan
    se: float = math.nan
    unit: str = "pp"
    counts: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def headline(self) -> str:
        if not math.isfinite(self.effect):
            return ""
        return f"{self.effect:+.2f}" + (f" ± {self.se:.2f}" if math.isfinite(self.se) else "") + f" {self.unit}"


def combine(statuses: Sequence[str]) -> str:
    """The status of a claim made of parts (or of a claim at every grid value): not reproduced if any part is
    not, else not evaluated if any part is, else reproduced if every part is; otherwise inconclusive. No parts:
    not evaluated."""
    if not statuses:
        return "not evaluated"
    for status in ("not reproduced", "not evaluated"):
        if status in statuses:
            return status
    return "reproduced" if all(s == "reproduced" for s in statuses) else "inconclusive"


# ------------------------------------------------------------------------------------------ run outcomes

def outcomes(df: pd.DataFrame, chance_margin: float = 5.0, metric: str = "test_acc",
             chance: float = CHANCE) -> pd.DataFrame:
    """``df`` with ``outcome`` (healthy / collapsed / diverged) and ``acc`` (``metric`` in pp; diverged and
    collapsed runs at ``chance``). A run without a finite accuracy is diverged: NaN never drops a seed."""
    acc = 100 * pd.to_numeric(df[metric], errors="coerce").astype(float)
    diverged = df["diverged"].astype(bool) | ~np.isfinite(acc) if "diverged" in df else ~np.isfinite(acc)
    collapsed = ~diverged & (acc <= chance + chance_margin)
    outcome = np.where(diverged, "diverged", np.where(collapsed, "collapsed", "healthy"))
    return df.assign(outcome=outcome, acc=np.where(outcome == "healthy", acc, chance))


def summary(df: pd.DataFrame, by: str | list[str], metric: str = "test_acc") -> pd.DataFrame:
    """Mean, standard deviation and seed count of ``metric`` per group (accuracies in %), with the run outcomes
    (healthy / collapsed / diverged) when ``df`` comes from :func:`outcomes`."""
    g = df.assign(_m=df[metric] * (100 if metric.endswith("acc") else 1)).groupby(by, sort=False, dropna=False)
    out = g["_m"].agg(mean="mean", std="std", n="count")
    if "outcome" in df:
        out["healthy/collapsed/diverged"] = g["outcome"].agg(outcome_counts)
    elif "diverged" in df:
        out["diverged"] = g["diverged"].sum()
    return out.reset_index()


def outcome_counts(outcome: pd.Series) -> str:
    """'healthy/collapsed/diverged' run counts of an ``outcome`` column, e.g. '4/1/0'."""
    return "/".join(str(int((outcome == k).sum())) for k in OUTCOMES)


def _over(over: str, values) -> str:
    return "" if over == "_cell" else f", mean over {over.removeprefix('hp_')} ∈ {{{', '.join(map(_label, values))}}}"


def _label(v) -> str:
    return f"{v:g}" if isinstance(v, (float, int, np.floating, np.integer)) else str(v)


# ------------------------------------------------------------------------------------------- statistics

@dataclass
class Interval:
    """Mean ± Student-t interval of per-seed values."""

    mean: float
    se: float
    n: int
    lo95: float
    hi95: float
    lo90: float
    hi90: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Interval":
        x = np.asarray(values, dtype=float)
        n = len(x)
        mean = float(x.mean()) if n else math.nan
        se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        t95 = _t.t.ppf(0.975, n - 1) if n > 1 else math.nan
        t90 = _t.t.ppf(0.95, n - 1) if n > 1 else math.nan
        return cls(mean, se, n, mean - t95 * se, mean + t95 * se, mean - t90 * se, mean + t90 * se)

    def text(self, unit: str = "pp") -> str:
        return (f"D = {self.mean:+.2f} {unit}, SE {self.se:.2f}, 95 % interval [{self.lo95:+.2f}, "
                f"{self.hi95:+.2f}], n = {self.n} seeds")


def _directional(iv: Interval, direction: str, min_effect: float) -> str:
    """``below``: the claim is D < 0; ``above``: D > 0."""
    if iv.n < 2:
        return "inconclusive"
    lo, hi = (iv.lo95, iv.hi95) if direction == "above" else (-iv.hi95, -iv.lo95)
    return "reproduced" if lo > 0 else "not reproduced" if hi < min_effect else "inconclusive"


def _directional_rule(direction: str, min_effect: float, unit: str = "pp") -> str:
    sign = "<" if direction == "below" else ">"
    far = f"> −{min_effect:g}" if direction == "below" else f"< {min_effect:g}"
    return (f"reproduced if the 95 % t interval of D lies wholly {sign} 0; not reproduced if it lies wholly "
            f"{far} {unit} (the smallest effect of interest); otherwise inconclusive")


def _equivalent(iv: Interval, tolerance: float) -> str:
    if iv.n < 2:
        return "inconclusive"
    if -tolerance < iv.lo90 and iv.hi90 < tolerance:
        return "reproduced"
    return "not reproduced" if iv.lo95 > tolerance or iv.hi95 < -tolerance else "inconclusive"


def _equivalence_rule(tolerance: float, unit: str = "pp") -> str:
    return (f"two one-sided tests: reproduced if the 90 % t interval of D lies within ±{tolerance:g} {unit}; not "
            f"reproduced if the 95 % interval lies wholly outside it; otherwise inconclusive")


# ------------------------------------------------------------------------------------ paired differences

Arm = pd.Series | Sequence[pd.Series]  # a row mask, or several whose per-seed mean is the arm (a midpoint)


def _masks(arm: Arm) -> list[pd.Series]:
    return [arm] if isinstance(arm, pd.Series) else list(arm)


def _grid(d: pd.DataFrame, over: str | None, values: Sequence) -> tuple[pd.DataFrame, str, Sequence]:
    """``over=None`` (no grid): the whole arm is one cell."""
    return (d.assign(_cell=0), "_cell", [0]) if over is None else (d, over, values)


def _arm(d: pd.DataFrame, arm: Arm, over: str, v) -> pd.DataFrame:
    """Per-seed ``acc`` and outcome of one arm at grid value ``v`` (NaN where a seed is missing)."""
    parts = [d[m & (d[over] == v)].set_index("seed") for m in _masks(arm)]
    if any(p.index.duplicated().any() for p in parts):  # a chapter's mask must pick one run per seed and value
        raise ValueError(f"an arm has several runs of one seed at {over} = {v}: make its mask more specific")
    acc = sum(p["acc"] for p in parts) / len(parts)
    bad = sum((p["outcome"] != "healthy").astype(int) for p in parts) == len(parts)
    return pd.DataFrame({"acc": acc, "bad": bad})


def differences(d: pd.DataFrame, a: Arm, b: Arm, over: str, values: Sequence, *,
                leave_out_chance: bool = True) -> tuple[pd.DataFrame, list, list]:
    """Per-seed differences a − b at each grid value (a seeds × values frame), the values left out because
    both arms collapsed or diverged in every seed (with ``leave_out_chance``; an equivalence keeps them: there the
    arms agree), and the missing cells (``(value, arm)``)."""
    cols, skipped, missing = {}, [], []
    for v in values:
        xa, xb = _arm(d, a, over, v), _arm(d, b, over, v)
        if xa.empty or xb.empty:
            missing += [(v, name) for name, x in (("a", xa), ("b", xb)) if x.empty]
            continue
        if leave_out_chance and xa["bad"].all() and xb["bad"].all():
            skipped.append(v)
            continue
        cols[v] = xa["acc"] - xb["acc"]
    diff = pd.DataFrame(cols)
    missing += [(v, "seed") for v in diff.columns if diff[v].isna().any()]
    return diff, skipped, missing


def _counts(d: pd.DataFrame, arms: dict[str, Arm], over: str, values: Sequence) -> str:
    """'name at v: healthy/collapsed/diverged' for every arm and value."""
    out = []
    for name, arm in arms.items():
        cells = [f"{_label(v)}: " + "+".join(outcome_counts(d.loc[m & (d[over] == v), "outcome"])
                                             for m in _masks(arm)) for v in values]
        out.append(f"{name} — " + ", ".join(cells))
    return "; ".join(out) + " (healthy/collapsed/diverged)"


def compare(d: pd.DataFrame, a: Arm, b: Arm, over: str | None, values: Sequence, what: str, *, direction: str = "below",
            min_effect: float = 1.0, every: bool = False, names: tuple[str, str] = ("a", "b")) -> Part:
    """Directional paired test: arm ``a`` is ``below`` (or ``above``) arm ``b`` over the grid ``values`` of column
    ``over`` — averaged over the values, or at ``every`` value (reproduced if at each, not reproduced if not at
    some). ``d`` comes from :func:`outcomes`; an arm given as several masks is their per-seed mean."""
    if direction not in ("below", "above"):
        raise ValueError(f"direction must be 'below' or 'above', got {direction!r}")
    d, over, values = _grid(d, over, values)
    counts = _counts(d, dict(zip(names, (a, b))), over, values)
    diff, skipped, missing = differences(d, a, b, over, values)
    rule = _directional_rule(direction, min_effect) + (" — at every grid value" if every else
                                                       " — D averaged over the grid values")
    if missing:
        return Part(what, "not evaluated", f"missing cells: {missing}", rule, counts=counts)
    note = f"; left out (both arms at chance in every seed): {', '.join(map(_label, skipped))}" if skipped else ""
    if diff.empty:
        return Part(what, "inconclusive", f"no grid value separates the arms{note}", rule, counts=counts)
    label = f"{names[0]} − {names[1]}"
    if every:
        ivs = {v: Interval.of(diff[v]) for v in diff.columns}
        st = [_directional(iv, direction, min_effect) for iv in ivs.values()]
        status = combine(st)
        stat = "; ".join(f"{over.removeprefix('hp_')} = {_label(v)}: {iv.text()} → {s}"
                         for (v, iv), s in zip(ivs.items(), st))
        worst = max(ivs.values(), key=lambda iv: iv.mean if direction == "below" else -iv.mean)
        return Part(what, status, f"{label} per grid value: {stat}{note}", rule, worst.mean, worst.se,
                    counts=counts)
    iv = Interval.of(diff.mean(axis=1))
    per = ", ".join(f"{_label(v)}: {diff[v].mean():+.2f}" for v in diff.columns)
    return Part(what, _directional(iv, direction, min_effect),
                f"{label}{_over(over, diff.columns)}: {iv.text()}"
                + (f" (per value: {per})" if over != "_cell" else "") + note, rule, iv.mean, iv.se, counts=counts)


def equivalent(d: pd.DataFrame, a: Arm, b: Arm, over: str | None, values: Sequence, what: str, *, tolerance: float,
               names: tuple[str, str] = ("a", "b")) -> Part:
    """Equivalence (two one-sided tests): arms ``a`` and ``b`` agree within ``tolerance`` pp, paired by seed,
    averaged over the grid ``values`` of ``over`` (``None``: no grid). Values where both arms sit at chance count
    (they agree)."""
    d, over, values = _grid(d, over, values)
    counts = _counts(d, dict(zip(names, (a, b))), over, values)
    diff, _, missing = differences(d, a, b, over, values, leave_out_chance=False)
    rule = _equivalence_rule(tolerance)
    if missing:
        return Part(what, "not evaluated", f"missing cells: {missing}", rule, counts=counts)
    iv = Interval.of(diff.mean(axis=1))
    return Part(what, _equivalent(iv, tolerance), f"{names[0]} − {names[1]}{_over(over, values)}: {iv.text()}, 90 % interval "
                f"[{iv.lo90:+.2f}, {iv.hi90:+.2f}]", rule, iv.mean, iv.se, counts=counts)


def slope(d: pd.DataFrame, arm: pd.Series, x: str, what: str, *, baseline: pd.Series | None = None,
          y: str = "acc", tolerance: float | None = None, direction: str = "below", min_effect: float = 0.5,
          unit: str = "pp per decade") -> Part:
    """Per seed, the least-squares slope of ``y`` (minus the ``baseline`` arm's, paired by seed and x) against
    log10 ``x``; the mean slope is tested for equivalence with 0 (``tolerance`` given: "flat") or for its sign
    (``direction``). A slope, not the range of the means, so that more grid values make the test sharper."""
    a = d[arm].pivot_table(index="seed", columns=x, values=y, aggfunc="mean")
    if baseline is not None:
        a = a - d[baseline].pivot_table(index="seed", columns=x, values=y, aggfunc="mean")
    rule = (_equivalence_rule(tolerance, unit) if tolerance is not None else
            _directional_rule(direction, min_effect, unit)) + f"; slope of {y} against log10 {x}, per seed"
    if a.empty or a.isna().any().any() or a.shape[1] < 2:
        return Part(what, "not evaluated", f"incomplete grid of {x} × seed", rule, unit=unit)
    lx = np.log10(a.columns.to_numpy(dtype=float))
    slopes = [np.polyfit(lx, row.to_numpy(dtype=float), 1)[0] for _, row in a.iterrows()]
    iv = Interval.of(slopes)
    means = ", ".join(f"{_label(v)}: {m:.2f}" for v, m in a.mean().items())
    status = _equivalent(iv, tolerance) if tolerance is not None else _directional(iv, direction, min_effect)
    return Part(what, status, f"slope {iv.text(unit)} (means by {x}: {means})", rule, iv.mean, iv.se, unit)


def stable(d: pd.DataFrame, arm: pd.Series, over: str, what: str) -> Part:
    """Every run of ``arm`` healthy (none collapsed or diverged) at every grid value of ``over``."""
    sub = d[arm]
    counts = ", ".join(f"{_label(v)}: {outcome_counts(g['outcome'])}" for v, g in sub.groupby(over))
    bad = int((sub["outcome"] != "healthy").sum())
    status = "not evaluated" if sub.empty else "reproduced" if bad == 0 else "not reproduced"
    return Part(what, status, f"{bad} of {len(sub)} runs collapsed or diverged", "reproduced if no run collapsed "
                "or diverged; not reproduced if any did", counts=f"{counts} (healthy/collapsed/diverged)")
