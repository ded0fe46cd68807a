"""The verdict statistics: run outcomes from whole trajectories, graded effects among healthy runs, failure rates,
positive controls, and the equivalence test.

A verdict is ``reproduced``, ``reproduced as training failure`` (a degradation the data show only as runs that
fail to train, not as a graded loss among runs that train), ``not reproduced``, ``inconclusive`` (the data cannot
decide at this scale and seed count), ``not testable`` (a claim about a benefit whose benefit — its positive
control — does not exist at this scale) or ``not evaluated`` (smoke scale, or runs of the pre-registered grid
missing). Accuracies are in percentage points (pp). The rules, in the order they are applied:

1. **Run outcomes from the whole trajectory.** *diverged*: a non-finite loss, or no finite accuracy; *collapsed*:
   final test accuracy within ``chance_margin`` pp of chance; *recovered* (collapsed, then recovered): training
   accuracy within the chance margin for ≥ ``collapse_epochs`` consecutive epochs, yet a final accuracy above it;
   else *healthy*. Collapsed and diverged runs count at chance where accuracies are averaged.
2. **A degradation (a directional comparison of two arms) is two findings.** (a) *Graded*: at every grid value of
   the claim, the paired difference a − b over the seeds where both arms are healthy (≥ ``MIN_PAIRS`` such seeds,
   else that value is not testable), its 95 % Student-t interval, directional status per value; the graded
   finding holds if it holds at every testable value. (b) *Failure rate*: the failing runs (collapsed, recovered
   or diverged) of each arm over the claim's values, compared by a one-sided Fisher exact test at ``ALPHA``.
   The part is *reproduced* from (a) alone; if (a) does not hold and (b) does, *reproduced as training failure*.
3. **Positive controls** (claims about a benefit): the method − SGD, every run counted (failures at chance),
   averaged over the control's values, 95 % interval above 0. Without it the claim is *not testable*.
4. **Equivalence** ("≈", "flat") is two one-sided tests: reproduced when the 90 % interval lies within
   ± ``tolerance``, not reproduced when the 95 % interval lies wholly outside it. Where a claim contrasts two
   conditions (GELU ≈, ReLU not), the same test on the contrast must not pass, or the tolerance cannot tell them
   apart and the part is inconclusive.
5. **Composite claims** hold when every part holds and fail when any part fails.

Each scale's parameter files hold the thresholds (``verdict:``); ``experiments/params/rules.yaml`` names the hash
of this rule code each scale was registered with (:mod:`hessreg.rules`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as _t

STATUSES = ("reproduced", "reproduced as training failure", "not reproduced", "inconclusive", "not testable",
            "not evaluated")
OUTCOMES = ("healthy", "collapsed", "recovered", "diverged")  # "recovered": collapsed for epochs, then recovered
CHANCE = 10.0  # pp: every dataset of the book has 10 classes
MIN_PAIRS = 3  # seeds healthy in both arms that a grid value needs for a graded comparison
ALPHA = 0.05  # one-sided Fisher exact test of failure rates


@dataclass
class Part:
    """One tested part of a claim: its status, the statistic (with numbers), the rule, the headline effect
    (``effect`` ± ``se`` in ``unit``) and the run outcome counts per cell. For the verdict's picture the same
    numbers as data: ``cells`` (one interval per grid value, :meth:`Interval.cell`), ``band`` (the effects too
    small to matter, or the equivalence tolerance, in ``unit``) and ``failures`` (:func:`failure_rates`)."""

    what: str
    status: str
    statistic: str
    rule: str
    effect: float = math.nan
    se: float = math.nan
    unit: str = "pp"
    counts: str = ""
    failure: str = ""  # the failure-rate finding of a degradation, beside the graded one
    control: bool = False  # a positive control: the claim is not testable unless it is reproduced
    cells: list[dict] = field(default_factory=list)
    band: tuple[float, float] | None = None
    failures: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def headline(self) -> str:
        if not math.isfinite(self.effect):
            return ""
        return f"{self.effect:+.2f}" + (f" ± {self.se:.2f}" if math.isfinite(self.se) else "") + f" {self.unit}"


def combine(statuses: Sequence[str]) -> str:
    """The status of a claim made of parts (or of a claim at every grid value): not reproduced if any part is
    not, else not evaluated or not testable if any part is, else reproduced if every part is, reproduced as
    training failure if every part is reproduced one way or the other; otherwise inconclusive. No parts: not
    evaluated."""
    if not statuses:
        return "not evaluated"
    for status in ("not reproduced", "not evaluated", "not testable"):
        if status in statuses:
            return status
    if all(s == "reproduced" for s in statuses):
        return "reproduced"
    failure = "reproduced as training failure"
    return failure if all(s in ("reproduced", failure) for s in statuses) else "inconclusive"


# ------------------------------------------------------------------------------------------ run outcomes

def outcomes(df: pd.DataFrame, chance_margin: float = 5.0, metric: str = "test_acc",
             chance: float = CHANCE, collapse_epochs: int = 3) -> pd.DataFrame:
    """``df`` with ``outcome`` (healthy / collapsed / recovered / diverged, module docstring) and ``acc``
    (``metric`` in pp; collapsed and diverged runs at ``chance``). A run without a finite accuracy is diverged:
    NaN never drops a seed. The trajectory is ``df["train_accs"]`` (per-epoch training accuracy, from
    :func:`hessreg.results.frame`); without that column no run is classed recovered."""
    acc = 100 * pd.to_numeric(df[metric], errors="coerce").astype(float)
    diverged = df["diverged"].astype(bool) | ~np.isfinite(acc) if "diverged" in df else ~np.isfinite(acc)
    collapsed = ~diverged & (acc <= chance + chance_margin)
    stuck = df["train_accs"].map(lambda t: _longest_run([100 * a <= chance + chance_margin for a in t or []])) \
        if "train_accs" in df else pd.Series(0, index=df.index)
    recovered = ~diverged & ~collapsed & (stuck >= collapse_epochs)
    outcome = np.where(diverged, "diverged", np.where(collapsed, "collapsed",
                                                      np.where(recovered, "recovered", "healthy")))
    return df.assign(outcome=outcome, acc=np.where(np.isin(outcome, ["collapsed", "diverged"]), chance, acc))


def _longest_run(flags: Sequence[bool]) -> int:
    """The length of the longest run of consecutive True values."""
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


def summary(df: pd.DataFrame, by: str | list[str], metric: str = "test_acc") -> pd.DataFrame:
    """Mean, standard deviation and seed count of ``metric`` per group (accuracies in %), with the run outcomes
    (healthy / collapsed / diverged) when ``df`` comes from :func:`outcomes`."""
    g = df.assign(_m=df[metric] * (100 if metric.endswith("acc") else 1)).groupby(by, sort=False, dropna=False)
    out = g["_m"].agg(mean="mean", std="std", n="count")
    if "outcome" in df:
        out[OUTCOME_HEADER] = g["outcome"].agg(outcome_counts)
    elif "diverged" in df:
        out["diverged"] = g["diverged"].sum()
    return out.reset_index()


OUTCOME_HEADER = "healthy/collapsed/recovered/diverged"


def outcome_counts(outcome: pd.Series) -> str:
    """'healthy/collapsed/recovered/diverged' run counts of an ``outcome`` column, e.g. '4/1/0/0'."""
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

    def cell(self, at: str, status: str) -> dict:
        """This interval at grid value ``at`` with its ``status``, as data (non-finite numbers as None)."""
        nums = {k: getattr(self, k) for k in ("mean", "se", "lo95", "hi95", "lo90", "hi90")}
        return {"at": at, "status": status, "n": self.n} | {k: float(v) if math.isfinite(v) else None
                                                             for k, v in nums.items()}

    def text(self, unit: str = "pp") -> str:
        return (f"D = {self.mean:+.2f} {unit}, SE {self.se:.2f}, 95 % interval [{self.lo95:+.2f}, "
                f"{self.hi95:+.2f}], n = {self.n} seeds")


def _directional(iv: Interval, direction: str, min_effect: float) -> str:
    """``below``: the claim is D < 0; ``above``: D > 0."""
    if iv.n < 2:
        return "inconclusive"
    lo, hi = (iv.lo95, iv.hi95) if direction == "above" else (-iv.hi95, -iv.lo95)
    return "reproduced" if lo > 0 else "not reproduced" if hi < min_effect else "inconclusive"


def _directional_band(direction: str, min_effect: float) -> tuple[float, float]:
    """The effects a directional rule reads as too small to matter: between 0 and the smallest effect."""
    return (-min_effect, 0.0) if direction == "below" else (0.0, min_effect)


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
    failing = [(p["outcome"] != "healthy").astype(int) for p in parts]
    return pd.DataFrame({"acc": acc, "healthy": sum(failing) == 0})


def differences(d: pd.DataFrame, a: Arm, b: Arm, over: str, values: Sequence) -> tuple[pd.DataFrame, list]:
    """Per-seed differences a − b at each grid value (a seeds × values frame; every run counts, failures at
    chance: an equivalence keeps values where both arms fail, since there the arms agree), and the missing cells
    (``(value, arm)``)."""
    cols, missing = {}, []
    for v in values:
        xa, xb = _arm(d, a, over, v), _arm(d, b, over, v)
        if xa.empty or xb.empty:
            missing += [(v, name) for name, x in (("a", xa), ("b", xb)) if x.empty]
            continue
        cols[v] = xa["acc"] - xb["acc"]
    diff = pd.DataFrame(cols)
    missing += [(v, "seed") for v in diff.columns if diff[v].isna().any()]
    return diff, missing


def _counts(d: pd.DataFrame, arms: dict[str, Arm], over: str, values: Sequence) -> str:
    """'name at v: healthy/collapsed/diverged' for every arm and value."""
    out = []
    for name, arm in arms.items():
        cells = [f"{_label(v)}: " + "+".join(outcome_counts(d.loc[m & (d[over] == v), "outcome"])
                                             for m in _masks(arm)) for v in values]
        out.append(f"{name} — " + ", ".join(cells))
    return "; ".join(out) + f" ({OUTCOME_HEADER})"


def compare(d: pd.DataFrame, a: Arm, b: Arm, over: str | None, values: Sequence, what: str, *, direction: str = "below",
            min_effect: float = 1.0, names: tuple[str, str] = ("a", "b")) -> Part:
    """Arm ``a`` ``below`` (or ``above``) arm ``b`` over the grid ``values`` of column ``over``, as two findings
    (module docstring, rule 2): graded among seeds healthy in both arms at every value, and failure rates (arms of
    one mask each). ``d`` comes from :func:`outcomes`; an arm given as several masks is their per-seed mean."""
    if direction not in ("below", "above"):
        raise ValueError(f"direction must be 'below' or 'above', got {direction!r}")
    d, over, values = _grid(d, over, values)
    counts = _counts(d, dict(zip(names, (a, b))), over, values)
    rule = (_directional_rule(direction, min_effect) + f" — graded: among seeds healthy in both arms (≥ {MIN_PAIRS}),"
            " at every grid value; failures (collapsed, recovered, diverged): one-sided Fisher exact test, p < "
            f"{ALPHA:g}; a part that holds only through failures is reproduced as training failure")
    per, missing = {}, []
    for v in values:
        xa, xb = _arm(d, a, over, v), _arm(d, b, over, v)
        if xa.empty or xb.empty or len(xa.index.symmetric_difference(xb.index)):
            missing += [(v, name) for name, x in (("a", xa), ("b", xb)) if x.empty] or [(v, "seed")]
            continue
        ok = xa["healthy"] & xb["healthy"]
        per[v] = (xa["acc"] - xb["acc"])[ok]
    if missing:
        return Part(what, "not evaluated", f"missing cells: {missing}", rule, counts=counts)
    ivs = {v: Interval.of(x) for v, x in per.items() if len(x) >= MIN_PAIRS}
    st = {v: _directional(iv, direction, min_effect) for v, iv in ivs.items()}
    graded = combine(list(st.values())) if st else "inconclusive"
    failure, failed, failures = failure_rates(d, a, b, over, values, direction, names)
    status = "reproduced" if graded == "reproduced" else "reproduced as training failure" if failed else graded
    at = (lambda v: "") if over == "_cell" else (lambda v: f"{over.removeprefix('hp_')} = {_label(v)}: ")
    cells = [ivs[v].cell(at(v).removesuffix(": "), st[v]) if v in ivs else
             {"at": at(v).removesuffix(": "), "status": "not testable", "n": len(per[v])} for v in per]
    text = "; ".join(f"{at(v)}{iv.text()} → {st[v]}" for v, iv in ivs.items())
    blind = [_label(v) for v in per if v not in ivs] if over != "_cell" else ["the one cell"] * (not ivs)
    text += (f"; not testable (fewer than {MIN_PAIRS} seeds healthy in both arms): {', '.join(blind)}" if blind
             else "")
    effect = float(np.mean([iv.mean for iv in ivs.values()])) if ivs else math.nan
    return Part(what, status, f"graded, {names[0]} − {names[1]} among healthy pairs: {text or 'no testable value'} "
                f"→ {graded}", rule, effect, ivs[next(iter(ivs))].se if len(ivs) == 1 else math.nan,
                counts=counts, failure=failure, cells=cells, band=_directional_band(direction, min_effect),
                failures=failures)


def failure_rates(d: pd.DataFrame, a: Arm, b: Arm, over: str, values: Sequence, direction: str,
                  names: tuple[str, str]) -> tuple[str, bool, dict]:
    """Failing runs (not healthy) of each arm over ``values``, whether arm ``a`` fails more (``below``; fewer:
    ``above``) than ``b`` by a one-sided Fisher exact test at :data:`ALPHA`, and the counts as data. Arms of
    several masks: not tested."""
    if not (isinstance(a, pd.Series) and isinstance(b, pd.Series)):
        return "", False, {}
    cells = [d[m & d[over].isin(list(values))]["outcome"] for m in (a, b)]
    (fa, na), (fb, nb) = ((int((c != "healthy").sum()), len(c)) for c in cells)
    if not na or not nb:
        return "", False, {}
    p = _t.fisher_exact([[fa, na - fa], [fb, nb - fb]], alternative="greater" if direction == "below" else "less")[1]
    shown = p < ALPHA
    return (f"failures {names[0]} {fa}/{na}, {names[1]} {fb}/{nb}; one-sided Fisher exact p = {p:.2g} → "
            f"{'more failures in ' + (names[0] if direction == 'below' else names[1]) if shown else 'no difference shown'}"
            ), bool(shown), {"names": list(names), "failed": [fa, fb], "runs": [na, nb], "p": float(p)}


def control(d: pd.DataFrame, a: pd.Series, b: pd.Series, over: str | None, values: Sequence, what: str, *,
            names: tuple[str, str] = ("method", "SGD")) -> Part:
    """Positive control (module docstring, rule 3): per seed, arm ``a`` averaged over the ``values`` of ``over``
    minus arm ``b`` (the baseline, whatever its ``over``), every run counted; reproduced iff the 95 % interval lies
    above 0 — else the claim it controls is not testable."""
    a_runs = d[a] if over is None else d[a & d[over].isin(list(values))]
    xa = a_runs.groupby("seed")["acc"].mean()
    xb = d[b].groupby("seed")["acc"].mean()
    rule = "reproduced (the benefit exists here) if the 95 % t interval lies wholly above 0; otherwise the claim is " \
           "not testable at this scale"
    if xa.empty or xb.empty or set(xa.index) != set(xb.index):
        return Part(what, "not evaluated", "missing runs", rule, control=True)
    iv = Interval.of(xa - xb)
    status = "reproduced" if iv.n > 1 and iv.lo95 > 0 else "not reproduced"
    return Part(what, status, f"{names[0]} − {names[1]}{_over(over or '_cell', values)}: {iv.text()}", rule, iv.mean,
                iv.se, control=True, cells=[iv.cell(f"{names[0]} − {names[1]}", status)], band=(0.0, 0.0))


def equivalent(d: pd.DataFrame, a: Arm, b: Arm, over: str | None, values: Sequence, what: str, *, tolerance: float,
               names: tuple[str, str] = ("a", "b"), contrast: tuple[Arm, Arm, str] | None = None) -> Part:
    """Equivalence (two one-sided tests): arms ``a`` and ``b`` agree within ``tolerance`` pp, paired by seed,
    averaged over the grid ``values`` of ``over`` (``None``: no grid). Values where both arms sit at chance count
    (they agree). With ``contrast`` (two arms and a name) the same test must not pass on them, or the tolerance
    cannot tell the conditions apart: then a passing part is inconclusive."""
    d, over, values = _grid(d, over, values)
    counts = _counts(d, dict(zip(names, (a, b))), over, values)
    diff, missing = differences(d, a, b, over, values)
    rule = _equivalence_rule(tolerance)
    if missing:
        return Part(what, "not evaluated", f"missing cells: {missing}", rule, counts=counts)
    iv = Interval.of(diff.mean(axis=1))
    status = _equivalent(iv, tolerance)
    stat = f"{names[0]} − {names[1]}{_over(over, values)}: {iv.text()}, 90 % interval [{iv.lo90:+.2f}, {iv.hi90:+.2f}]"
    cells = [iv.cell(f"{names[0]} − {names[1]}", status)]
    if contrast is not None:
        other = Interval.of(differences(d, contrast[0], contrast[1], over, values)[0].mean(axis=1))
        passes = _equivalent(other, tolerance) == "reproduced"
        cells.append(other.cell(f"the same for {contrast[2]}", "contrast: passes" if passes else "contrast: fails"))
        stat += (f"; the same test for {contrast[2]}: {other.text()}, 90 % interval [{other.lo90:+.2f}, "
                 f"{other.hi90:+.2f}] → {'passes too: the tolerance cannot tell them apart' if passes else 'fails'}")
        rule += f"; inconclusive if {contrast[2]} passes the same test"
        status = "inconclusive" if passes and status == "reproduced" else status
    return Part(what, status, stat, rule, iv.mean, iv.se, counts=counts, cells=cells, band=(-tolerance, tolerance))


def slope(d: pd.DataFrame, arm: pd.Series, x: str, what: str, *, baseline: pd.Series | None = None,
          y: str = "acc", tolerance: float | None = None, direction: str = "below", min_effect: float = 0.5,
          unit: str = "pp per decade", healthy_only: bool = False) -> Part:
    """Per seed, the least-squares slope of ``y`` (minus the ``baseline`` arm's, paired by seed and x) against
    log10 ``x``; the mean slope is tested for equivalence with 0 (``tolerance`` given: "flat") or for its sign
    (``direction``). A slope, not the range of the means, so that more grid values make the test sharper. With
    ``healthy_only`` (a graded finding), only seeds whose runs of both arms are all healthy."""
    a = d[arm].pivot_table(index="seed", columns=x, values=y, aggfunc="mean")
    if baseline is not None:
        a = a - d[baseline].pivot_table(index="seed", columns=x, values=y, aggfunc="mean")
    if healthy_only:
        rows = d[arm if baseline is None else arm | baseline]
        a = a.loc[[s for s in a.index if (rows.loc[rows["seed"] == s, "outcome"] == "healthy").all()]]
    rule = (_equivalence_rule(tolerance, unit) if tolerance is not None else
            _directional_rule(direction, min_effect, unit)) + f"; slope of {y} against log10 {x}, per seed"
    if healthy_only and len(a) < MIN_PAIRS:
        return Part(what, "inconclusive", f"fewer than {MIN_PAIRS} seeds healthy at every {x}", rule, unit=unit)
    if a.empty or a.isna().any().any() or a.shape[1] < 2:
        return Part(what, "not evaluated", f"incomplete grid of {x} × seed", rule, unit=unit)
    lx = np.log10(a.columns.to_numpy(dtype=float))
    slopes = [np.polyfit(lx, row.to_numpy(dtype=float), 1)[0] for _, row in a.iterrows()]
    iv = Interval.of(slopes)
    means = ", ".join(f"{_label(v)}: {m:.2f}" for v, m in a.mean().items())
    status = _equivalent(iv, tolerance) if tolerance is not None else _directional(iv, direction, min_effect)
    band = (-tolerance, tolerance) if tolerance is not None else _directional_band(direction, min_effect)
    return Part(what, status, f"slope {iv.text(unit)} (means by {x}: {means})", rule, iv.mean, iv.se, unit,
                cells=[iv.cell("slope", status)], band=band)


def stable(d: pd.DataFrame, arm: pd.Series, over: str, what: str) -> Part:
    """Every run of ``arm`` healthy (none collapsed or diverged) at every grid value of ``over``."""
    sub = d[arm]
    counts = ", ".join(f"{_label(v)}: {outcome_counts(g['outcome'])}" for v, g in sub.groupby(over))
    bad = int((sub["outcome"] != "healthy").sum())
    status = "not evaluated" if sub.empty else "reproduced" if bad == 0 else "not reproduced"
    return Part(what, status, f"{bad} of {len(sub)} runs collapsed, recovered from a collapse or diverged",
                "reproduced if every run is healthy; not reproduced if any collapsed, recovered from a collapse or "
                "diverged", counts=f"{counts} ({OUTCOME_HEADER})")
