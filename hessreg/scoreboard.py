"""The front page's scoreboard: one compact row per claim, one cell per scale with a status badge and the effect,
beside what the paper reports (book/intro.ipynb). The full statistics stay on the chapter pages."""
from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from .chapters import load_params
from .claims import CLAIMS, verdicts_dir

SCOREBOARD_SCALES = ("cpu", "noisy", "noisy_cnn", "lowdata", "full", "paper")


def scoreboard(verdicts: Path | None = None) -> pd.DataFrame:
    """One row per claim: its statement, chapter and what the paper reports (``reported``), and per scale (columns
    :data:`SCOREBOARD_SCALES` that hold any saved verdict) a dict — status, the headline effect, seeds and the
    reading under the registered rules — from the verdicts the last build saved in ``verdicts`` (default
    :func:`verdicts_dir`); None where the scale did not evaluate the claim."""
    verdicts = Path(verdicts or verdicts_dir())
    rows = []
    for c in CLAIMS.values():
        row = {"claim": c.id, "figure": c.figure, "statement": c.statement, "chapter": c.chapter, "reported": c.paper}
        for scale in SCOREBOARD_SCALES:
            path = verdicts / ("any" if c.scale_free else scale) / f"{c.id}.json"
            if not path.exists():
                row[scale] = None
                continue
            v = json.loads(path.read_text())
            seeds = load_params(c.chapter, scale).get("seeds") if not c.scale_free else None
            row[scale] = {"status": v["status"], "effect": v.get("effect", ""), "seeds": len(seeds) if seeds else None,
                          "registered": v.get("registered_reading"), "statistic": v.get("statistic", "")}
        rows.append(row)
    board = pd.DataFrame(rows)
    scale_bound = board["claim"].map(lambda c: not CLAIMS[c].scale_free)  # a scale-free claim opens no column
    empty = [s for s in SCOREBOARD_SCALES if board.loc[scale_bound, s].isna().all()]
    return board.drop(columns=empty)


# Badge colours: white or near-black text on fills chosen for a contrast ratio ≥ 4.5 (WCAG AA) in both themes.
BADGES = {"reproduced": ("#1a7f37", "#ffffff"), "reproduced as training failure": ("#9a6700", "#ffffff"),
          "not reproduced": ("#cf222e", "#ffffff"), "inconclusive": ("#57606a", "#ffffff"),
          "not testable": ("#6639ba", "#ffffff"), "not evaluated": ("#d0d7de", "#1f2328")}
STYLE = """<style>
table.scoreboard {width: 100%; table-layout: fixed; border-collapse: collapse; font-size: 0.9em}
table.scoreboard th, table.scoreboard td {padding: 0.3em 0.4em; vertical-align: top; overflow-wrap: anywhere;
  border-bottom: 1px solid var(--pst-color-border, #d0d7de)}
table.scoreboard col.id {width: 3.2em} table.scoreboard col.paper {width: 24%}
table.scoreboard .badge-status {display: inline-block; border-radius: 0.6em; padding: 0.05em 0.5em;
  font-size: 0.85em; font-weight: 600; line-height: 1.35; white-space: normal}
table.scoreboard .effect, table.scoreboard .paper, table.scoreboard .registered {font-size: 0.82em}
table.scoreboard .registered {opacity: 0.85}
</style>"""


def badge(status: str) -> str:
    fill, text = BADGES.get(status, BADGES["not evaluated"])
    return f"<span class='badge-status' style='background:{fill};color:{text}'>{html.escape(status)}</span>"


def _cell(v: dict | None) -> str:
    if not isinstance(v, dict):  # None (pandas may hold it as NaN): the scale did not evaluate the claim
        return badge("not evaluated")
    out = badge(v["status"])
    if v.get("effect"):
        out += f"<div class='effect'>{html.escape(v['effect'])}</div>"
    if v.get("seeds"):
        out += f"<div class='effect'>{v['seeds']} seeds</div>"
    if v.get("registered") and v["registered"] != v["status"]:
        out += f"<div class='registered'>as registered: {html.escape(v['registered'])}</div>"
    return out


def table(board: pd.DataFrame) -> str:
    """The scoreboard as an HTML table that fits the content column (fixed layout, wrapping cells)."""
    scales = [s for s in SCOREBOARD_SCALES if s in board]
    cols = "<col class='id'><col>" + "<col>" * len(scales) + "<col class='paper'>"
    head = "<tr><th>claim</th><th>the paper says</th>" + "".join(f"<th>{s} scale</th>" for s in scales) + \
        "<th>the paper reports</th></tr>"
    rows = "".join(
        f"<tr><td><a href='{r['chapter']}.html'>{r['claim']}</a></td><td>{html.escape(r['statement'])}</td>"
        + "".join(f"<td>{_cell(r[s])}</td>" for s in scales) + f"<td class='paper'>{html.escape(r['reported'])}</td></tr>"
        for _, r in board.iterrows())
    return f"{STYLE}<table class='scoreboard'><colgroup>{cols}</colgroup><thead>{head}</thead><tbody>{rows}</tbody></table>"


def summary(board: pd.DataFrame) -> str:
    """One line per scale: how many claims reached each status."""
    lines = []
    for s in (s for s in SCOREBOARD_SCALES if s in board):
        counts = pd.Series([v["status"] for v in board[s] if isinstance(v, dict)]).value_counts()
        parts = ", ".join(f"{n} {status}" for status, n in counts.items())
        lines.append(f"- **{s} scale**: {counts.get('reproduced', 0)} of {len(board)} claims reproduced ({parts}).")
    return "\n".join(lines) or "No claim was evaluated in this build (smoke scale only checks the code)."
