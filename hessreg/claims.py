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

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from . import verdict_figure
from .repo import build_dir, write_atomic
from .stats import STATUSES, Part, combine


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
    scale_free: bool = False  # the same computation at every scale (the landscape): one verdict for all

    def judge(self, result, *parts: "Part") -> "Verdict":
        """The verdict on this claim from its ``parts`` (all must hold), given the chapter's ``result``
        (:class:`hessreg.book.ChapterResult`: its scale, and its frame's count of missing runs). A claim with a
        positive control (a part marked ``control``) that does not hold is not testable at this scale."""
        early = self.unevaluated(result)
        if early is not None:
            return early
        failed = [p.what for p in parts if p.control and p.status != "reproduced"]
        status = "not testable" if failed else combine([p.status for p in parts if not p.control])
        rule = "every part reproduced; any part not reproduced fails the claim" if len(parts) > 1 else ""
        if any(p.control for p in parts):
            rule += ("; " if rule else "") + "a positive control that does not hold makes the claim not testable"
        return Verdict(self, status, list(parts), f"positive control not met: {'; '.join(failed)}" if failed else "",
                       rule, result.scale)

    def unevaluated(self, result) -> "Verdict | None":
        """The 'not evaluated' verdict of a chapter ``result`` at smoke scale or with runs of its grid missing;
        None when the claim can be judged."""
        scale = result.scale
        if scale == "smoke":
            return Verdict(self, "not evaluated", [], "runs at smoke scale only check the code",
                           "claims are evaluated at the cpu, noisy, noisy_cnn, lowdata, full or paper scale", scale)
        missing, requested = result.frame.attrs.get("missing", 0), result.frame.attrs.get("requested")
        if missing:
            return Verdict(self, "not evaluated", [], f"{requested - missing} of {requested} runs of the "
                           f"pre-registered grid are stored; {missing} missing",
                           "a claim is evaluated on its complete grid only", scale)
        return None


@dataclass
class Verdict:
    claim: Claim
    status: str
    parts: list[Part] = field(default_factory=list)
    statistic: str = ""  # for verdicts without parts (not evaluated)
    rule: str = ""
    scale: str = ""
    other_reading: dict | None = None  # the verdict under the rule code the scale was registered with, if it changed

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
            if p.failure:
                lines.append(f"  Failure rates: {p.failure}.")
            if p.counts:
                lines.append(f"  Runs per cell: {p.counts}.")
            lines.append(f"  Rule: {p.rule}")
        if self.rule:
            lines.append(f"- Rule: {self.rule}.")
        lines.append(f"- Paper: {c.paper}")
        if self.other_reading:
            o = self.other_reading
            lines += ["", f"**Under the rules registered with the {self.scale} scale ({o['registered']}): "
                      f"{o['status']}.** {o['statistic']} (stored in `{o['source']}`). The rules changed after this "
                      f"scale's runs, so both readings are shown: {o['why']}."]
        return "\n".join(lines)

    _repr_markdown_ = markdown

    def to_dict(self) -> dict:
        return {"claim_id": self.claim.id, "claim": self.claim.statement, "status": self.status,
                "scale": self.scale, "effect": self.effect, "statistic": self.statistic or " | ".join(
                    f"({i}) {p.what}: {p.status}; {p.statistic}" for i, p in enumerate(self.parts, 1)),
                "parts": [{k: None if isinstance(v, float) and not math.isfinite(v) else v
                           for k, v in asdict(p).items()} for p in self.parts],
                "rule": self.rule, "paper": self.claim.paper,
                "registered_reading": (self.other_reading or {}).get("status")}

    def save(self, chapter: str) -> Path:
        """``<verdicts_dir()>/<scale>/<claim id>.json`` (``any/`` for a claim whose computation is the same at every
        scale)."""
        path = verdicts_dir() / ("any" if self.claim.scale_free else self.scale) / f"{self.claim.id}.json"
        write_atomic(path, json.dumps(self.to_dict() | {"chapter": chapter}, indent=1, allow_nan=False,
                                      default=str))
        return path


class Verdicts(list):
    """A claim's verdicts at several scales. In a notebook: their picture (:mod:`hessreg.verdict_figure`), then
    one line per scale — the status and each part's — with the statistics, rules and run counts folded below."""

    def markdown(self) -> str:
        return "\n\n".join(v.markdown() for v in self)

    def brief(self) -> str:
        """The claim, one line per scale, and :meth:`markdown` in a folded ``<details>`` block."""
        if not self:
            return ""
        c = self[0].claim
        lines = [f"**Claim {c.id}.** {c.statement} *The paper:* {c.paper}", ""]
        for v in self:
            parts = "; ".join(f"({i}) {p.what}: {p.status}" for i, p in enumerate(v.parts, 1))
            line = f"- **{v.scale}: {v.status}.** {parts or v.statistic}".rstrip(".") + "."
            if v.other_reading:
                line += (f" Under the rules registered with the {v.scale} scale ({v.other_reading['registered']}): "
                         f"**{v.other_reading['status']}** (both readings are in the details).")
            lines.append(line)
        return "\n".join(lines + ["", "<details><summary>Statistics, rules and runs per cell</summary>", "",
                                   self.markdown(), "", "</details>"])

    _repr_markdown_ = brief

    def _ipython_display_(self) -> None:
        fig = verdict_figure.figure(self)
        if fig is not None:
            display(fig)
            plt.close(fig)
        display(Markdown(self.brief()))


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
          "09_nme_landscape", "Fig. 7: a two-weight slice of a small MLP's loss and NME norm (figure only).",
          scale_free=True),
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
