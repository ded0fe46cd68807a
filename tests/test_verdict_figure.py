"""The verdict's picture draws the numbers the rule computed, no others: each part's cells are the intervals of its
statistic, every cell is one row coloured by its status, the band is the rule's, and a part without intervals
draws nothing. A verdict in a notebook shows the picture, then the words."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex

from hessreg import claims, verdict_figure
from hessreg.stats import Interval, control, equivalent, outcomes, stable

from .test_claims import arms, frame, result, run_compare

matplotlib.use("Agg")

CELLS = {("a", 0.5): [80.0, 81.0, 79.0, 80.5], ("b", 0.5): [86.0, 86.2, 85.8, 86.1],
         ("a", 1.0): [86.0, 86.1, 85.9, 86.2], ("b", 1.0): [86.0, 86.0, 86.1, 86.1]}


def test_a_comparison_carries_the_intervals_of_its_statistic():
    p = run_compare(CELLS, min_effect=1.0)
    assert [c["at"] for c in p.cells] == ["rho = 0.5", "rho = 1"]
    for c, rho in zip(p.cells, (0.5, 1.0)):
        iv = Interval.of(np.subtract(CELLS[("a", rho)], CELLS[("b", rho)]))
        assert c["mean"] == pytest.approx(iv.mean) and c["lo95"] == pytest.approx(iv.lo95)
        assert c["hi90"] == pytest.approx(iv.hi90) and c["n"] == 4
        assert f"[{iv.lo95:+.2f}, {iv.hi95:+.2f}]" in p.statistic  # the same numbers as the words
    assert [c["status"] for c in p.cells] == ["reproduced", "not reproduced"]
    assert p.band == (-1.0, 0.0) and p.failures == {"names": ["a", "b"], "failed": [0, 0], "runs": [8, 8], "p": 1.0}
    assert run_compare(CELLS, direction="above", min_effect=0.5).band == (0.0, 0.5)


def test_a_value_without_enough_healthy_pairs_is_a_cell_without_an_interval():
    p = run_compare({("a", 1.0): [10.0, 10.0, 10.0], ("b", 1.0): [80.0, 81.0, 79.0]})
    assert p.cells == [{"at": "rho = 1", "status": "not testable", "n": 0}]
    assert p.failures["failed"] == [3, 0]


def test_equivalence_and_control_cells():
    d = outcomes(frame({("a", 1.0): [86.0, 86.2, 85.9], ("b", 1.0): [86.1, 86.0, 86.0],
                        ("c", 1.0): [70.0, 72.0, 71.0]}))
    a, b = arms(d)
    p = equivalent(d, a, b, "hp_rho", [1.0], "≈", tolerance=2.0, contrast=(d["arm"] == "c", b, "C"))
    assert p.band == (-2.0, 2.0) and [c["status"] for c in p.cells] == ["reproduced", "contrast: fails"]
    c = control(d, b, d["arm"] == "c", None, [], "control")
    assert c.band == (0.0, 0.0) and c.cells[0]["mean"] == pytest.approx(c.effect)
    assert stable(d, a, "hp_rho", "stable").cells == []


def verdict(scale: str, *parts):
    return claims.CLAIMS["A1"].judge(result(frame({("a", 1.0): [80.0]}), scale), *parts)


def test_one_panel_per_part_with_intervals_one_row_per_cell_coloured_by_status():
    d = outcomes(frame(CELLS))
    a, b = arms(d)
    graded, still = run_compare(CELLS, min_effect=1.0), stable(d, a, "hp_rho", "stable")
    vs = claims.Verdicts([verdict("cpu", graded, still), verdict("noisy", graded, still)])
    fig = verdict_figure.figure(vs)
    (ax,) = fig.axes  # the stable part has no interval: no panel
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cpu · ρ = 0.5", "cpu · ρ = 1", "noisy · ρ = 0.5",
                                                             "noisy · ρ = 1"]  # top to bottom
    points = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(points) == 4
    assert {to_hex(ln.get_color()) for ln in points} == {verdict_figure.colour("reproduced"),
                                                         verdict_figure.colour("not reproduced")}
    shaded = [c.get_paths()[0].get_extents() for c in ax.collections]  # one band per scale, at its rows
    assert [(b.x0, b.x1) for b in shaded] == [(-1.0, 0.0)] * 2 and shaded[0].y0 > shaded[1].y1 - 1e-9
    notes = [t.get_text() for t in ax.texts]
    assert notes.count("→ not reproduced") == 2 and any(n.startswith("failed: a 0/8, b 0/8") for n in notes)
    assert verdict_figure.figure(claims.Verdicts([verdict("cpu", still)])) is None


def test_a_verdict_in_a_notebook_shows_the_picture_then_the_words(monkeypatch):
    shown = []
    monkeypatch.setattr(claims, "display", shown.append)
    vs = claims.Verdicts([verdict("cpu", run_compare(CELLS, min_effect=1.0))])
    vs._ipython_display_()
    assert isinstance(shown[0], matplotlib.figure.Figure) and isinstance(shown[1], claims.Markdown)
    words = shown[1].data
    assert words.startswith("**Claim A1.**") and "- **cpu: not reproduced.** (1) test: not reproduced" in words
    assert "<details>" in words and vs.markdown() in words  # every statistic still there, folded


def test_the_data_fields_save_as_strict_json(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSREG_VERDICTS", str(tmp_path))
    p = run_compare({("a", 1.0): [10.0, 10.0, 10.0], ("b", 1.0): [80.0, 81.0, 79.0]})
    saved = json.loads(verdict("cpu", p).save("02_sam_vs_psam").read_text())
    assert saved["parts"][0]["cells"][0]["status"] == "not testable"
