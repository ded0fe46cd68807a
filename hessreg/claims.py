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
    g = df.assign(_m=df[metric] * (100 if metric.endswith("acc") else 1)).groupby(by, sort=False)
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
