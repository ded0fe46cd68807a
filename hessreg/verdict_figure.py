"""The verdict as a picture: for each tested part of a claim, at each scale and grid value, the paired difference
with its interval, coloured by what the rule read from it, over the band the rule reads as too small to matter
(or the equivalence tolerance), with the failure counts beside. It draws only what the rule code put in the
parts (:class:`hessreg.stats.Part`: ``cells``, ``band``, ``failures``); it decides nothing.
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from .plots import BADGES, WIDTH
from .stats import Part

# cells of the contrast an equivalence must fail (A1: "GELU ≈, unlike ReLU"): failing is what the claim needs
CONTRAST = {"contrast: fails": BADGES["reproduced"][0], "contrast: passes": BADGES["not reproduced"][0]}
GREEK = {"rho": "ρ", "sigma2": "σ²", "sigma": "σ", "beta": "β"}  # grid columns as the chapters write them
ROW_IN = 0.32  # inches per interval drawn
PANEL_IN = 0.9  # inches of title, axis and ticks per panel


def colour(status: str) -> str:
    return CONTRAST.get(status) or BADGES.get(status, BADGES["not evaluated"])[0]


def panels(verdicts: Sequence) -> list[tuple[str, str, list[tuple[str, dict, Part, bool]]]]:
    """One panel per part of the claim that carries intervals: its name, unit and rows, one per cell as (scale,
    cell, part, first cell of its scale); parts are matched across scales by position (the same rule makes the
    same parts)."""
    out = []
    for i in range(max((len(v.parts) for v in verdicts), default=0)):
        parts = [(v.scale, v.parts[i]) for v in verdicts if i < len(v.parts) and v.parts[i].cells]
        if parts:
            rows = [(scale, c, part, j == 0) for scale, part in parts for j, c in enumerate(part.cells)]
            out.append((f"({i + 1}) {parts[0][1].what}", parts[0][1].unit, rows))
    return out


def _shaded(band: tuple | None) -> bool:
    """Whether a part's band covers an interval (a control's band is the zero line alone)."""
    return band is not None and band[0] < band[1]


def _failures(f: dict) -> str:
    (a, b), (fa, fb), (na, nb) = f["names"], f["failed"], f["runs"]
    return f"failed: {a} {fa}/{na}, {b} {fb}/{nb}; p = {f['p']:.2g}"


def _at(at: str) -> str:
    name, eq, value = at.partition(" = ")
    return f"{GREEK.get(name, name)} = {value}" if eq else at


def figure(verdicts: Sequence):
    """The picture of a claim's verdicts (one per scale), or None when no part carries an interval."""
    shown = panels(verdicts)
    if not shown:
        return None
    heights = [len(rows) * ROW_IN + PANEL_IN for *_, rows in shown]
    fig, axes = plt.subplots(len(shown), 1, figsize=(WIDTH, sum(heights)), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": heights})
    for ax, (title, unit, rows) in zip(axes[:, 0], shown):
        _panel(ax, title, unit, rows)
    statuses = sorted({c["status"] for *_, rows in shown for _, c, _, _ in rows},
                      key=lambda s: list(BADGES).index(s) if s in BADGES else len(BADGES))
    handles = [Line2D([], [], color=colour(s), marker="o", lw=2, label=s) for s in statuses]
    handles += [Line2D([], [], color="0.3", lw=4, label="90 % interval"),
                Line2D([], [], color="0.3", lw=1.2, label="95 % interval")]
    if any(_shaded(p.band) for *_, rows in shown for _, _, p, _ in rows):
        handles.append(Patch(color="0.85", label="too small to matter / within tolerance"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    return fig


def _panel(ax, title: str, unit: str, cells: list) -> None:
    """One part's rows; each scale's rows over that scale's own band (its thresholds may differ)."""
    n = len(cells)
    ax.axvline(0, color="0.4", lw=0.8, zorder=1)
    bands = [p.band for _, _, p, _ in cells if _shaded(p.band)]
    ends = [b for band in bands for b in band]
    finite = [x for _, c, _, _ in cells for x in (c.get("lo95"), c.get("hi95"), c.get("mean")) if _finite(x)]
    lo, hi = (min(finite + ends + [0.0]), max(finite + ends + [0.0])) if finite else (-1, 1)
    pad = 0.06 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    width = min((max(abs(b) for b in band) for band in bands), default=0.0)
    if width and hi - lo > 20 * width:  # an interval far outside the band: keep the band readable
        ax.set_xscale("symlog", linthresh=width)
        left, right = min(lo * 1.4, -width), max(hi * 1.4, width)
        ax.set_xlim(left, right)
        decades = [10.0 ** k for k in range(math.ceil(math.log10(width)), 6) if 10.0 ** k > 2 * width]
        ticks = [-width, 0.0, width] + [t * sign for t in decades for sign in (-1, 1)]
        ax.set_xticks(sorted(t for t in ticks if left <= t <= right))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    labels = []
    for y, (scale, c, part, first) in zip(range(n - 1, -1, -1), cells):
        labels.append(f"{scale} · {_at(c['at'])}" if c["at"] else scale)
        col = colour(c["status"])
        if _finite(c.get("mean")):
            if _finite(c.get("lo95")):
                ax.plot([c["lo95"], c["hi95"]], [y, y], color=col, lw=1.2, solid_capstyle="butt")
                ax.plot([c["lo90"], c["hi90"]], [y, y], color=col, lw=4, solid_capstyle="butt")
            ax.plot(c["mean"], y, "o", color=col, ms=6, mec="white", mew=0.8, zorder=3)
        else:
            ax.text(0.5, y, f"{c['status']}: {c.get('n', 0)} healthy pair(s)", transform=ax.get_yaxis_transform(),
                    ha="center", va="center", fontsize=9, color=col)
        if first:
            if y < n - 1:
                ax.axhline(y + 0.5, color="0.6", lw=0.6)
            rows = len(part.cells)
            if _shaded(part.band):
                ax.fill_betweenx([y - rows + 0.5, y + 0.5], *part.band, color="0.85", zorder=0, lw=0)
            ax.annotate(f"→ {part.status}", (1.01, y), xycoords=("axes fraction", "data"), fontsize=9, va="center",
                        ha="left", color=colour(part.status), weight="bold", annotation_clip=False)
            if part.failures:
                ax.annotate(_failures(part.failures), (1.01, y - 0.45), xycoords=("axes fraction", "data"),
                            fontsize=8, va="center", ha="left", color="0.25", annotation_clip=False)
    ax.set_yticks(range(n - 1, -1, -1), labels, fontsize=9)
    ax.set_ylim(-0.7, n - 0.3)
    ax.grid(axis="y", visible=False)
    ax.set_title(title, loc="left", fontsize=10)
    unit = unit.split(" (")[0]  # "% (mean over methods)": the panel shows each method
    what = "slope" if " per " in unit else "change" if unit == "%" else "difference"
    ax.set_xlabel(f"{what} ({unit})" if unit else what, fontsize=9)


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)
