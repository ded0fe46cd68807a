"""The front page's scoreboard: one compact row per claim, one cell per scale with a status badge and the effect,
beside what the paper reports (book/intro.md), one table per paper with the scales its chapters run at. The full
statistics stay on the chapter pages."""
from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from .chapters import has_params, load_params
from .claims import CLAIMS, verdicts_dir
from .plots import BADGES

SCOREBOARD_SCALES = ("cpu", "noisy", "noisy_cnn", "lowdata", "full", "paper")
NOT_RUN = "not run"  # the claim's chapter has no grid at that scale (no parameter file): nothing to evaluate


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
                row[scale] = None if c.scale_free or has_params(c.chapter, scale) else NOT_RUN
                continue
            v = json.loads(path.read_text())
            seeds = load_params(c.chapter, scale).get("seeds") if not c.scale_free else None
            row[scale] = {"status": v["status"], "effect": v.get("effect", ""), "seeds": len(seeds) if seeds else None,
                          "registered": v.get("registered_reading"), "statistic": v.get("statistic", "")}
        rows.append(row)
    board = pd.DataFrame(rows)
    return board.drop(columns=[s for s in SCOREBOARD_SCALES if s not in _columns(board)])


STYLE = """<style>
table.scoreboard {width: 100%; table-layout: fixed; border-collapse: collapse; font-size: 0.9em}
table.scoreboard th, table.scoreboard td {padding: 0.3em 0.4em; vertical-align: top; overflow-wrap: break-word;
  border-bottom: 1px solid var(--pst-color-border, #d0d7de)}
table.scoreboard col.id {width: 3.2em} table.scoreboard col.says {width: 24%} table.scoreboard col.paper {width: 22%}
table.scoreboard .badge-status {display: inline-block; border-radius: 0.6em; padding: 0.05em 0.45em;
  font-size: 0.8em; font-weight: 600; line-height: 1.35; white-space: normal; word-break: normal; hyphens: none}
table.scoreboard .effect, table.scoreboard .paper, table.scoreboard .registered {font-size: 0.82em}
table.scoreboard .registered, table.scoreboard .not-run {opacity: 0.85}
table.scoreboard caption {caption-side: top; text-align: left; font-weight: 600; padding: 0.6em 0 0.2em}
</style>"""


def badge(status: str) -> str:
    fill, text = BADGES.get(status, BADGES["not evaluated"])
    return f"<span class='badge-status' style='background:{fill};color:{text}'>{html.escape(status)}</span>"


def _cell(v: dict | str | None) -> str:
    if v == NOT_RUN:
        return "<span class='effect not-run'>— not run at this scale</span>"
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


PAPERS = {"Paper A": "Paper A — the neglected Hessian component (Dauphin et al.)",
          "Paper B": "Paper B — Noise Stability Optimization (Ju et al.)"}


def _columns(rows: pd.DataFrame) -> list[str]:
    """The scales of ``rows``'s columns: those where some claim of the group holds a verdict of its own (a
    scale-free claim's one verdict, shown in every column, opens none)."""
    bound = rows[rows["claim"].map(lambda c: not CLAIMS[c].scale_free)]
    return [s for s in SCOREBOARD_SCALES if s in bound and bound[s].map(lambda v: isinstance(v, dict)).any()]


def table(board: pd.DataFrame) -> str:
    """The scoreboard as HTML tables that fit the content column (fixed layout, wrapping cells): one per paper,
    each with the scales its claims were evaluated at."""
    out = [STYLE]
    for key, caption in PAPERS.items():
        rows = board[board["figure"].str.startswith(key)]
        if rows.empty:
            continue
        scales = _columns(rows)
        cols = "<col class='id'><col class='says'>" + "<col>" * len(scales) + "<col class='paper'>"
        head = "<tr><th>claim</th><th>the paper says</th>" + "".join(
            f"<th>{s.replace('_', ' ')} scale</th>" for s in scales) + "<th>the paper reports</th></tr>"
        body = "".join(
            f"<tr><td><a href='{r['chapter']}.html'>{r['claim']}</a></td><td>{html.escape(r['statement'])}</td>"
            + "".join(f"<td>{_cell(r[s])}</td>" for s in scales)
            + f"<td class='paper'>{html.escape(r['reported'])}</td></tr>" for _, r in rows.iterrows())
        out.append(f"<table class='scoreboard'><caption>{html.escape(caption)}</caption><colgroup>{cols}</colgroup>"
                   f"<thead>{head}</thead><tbody>{body}</tbody></table>")
    return "".join(out)


def summary(board: pd.DataFrame) -> str:
    """One line per scale: how many claims reached each status."""
    lines = []
    for s in (s for s in SCOREBOARD_SCALES if s in board):
        counts = pd.Series([v["status"] for v in board[s] if isinstance(v, dict)]).value_counts()
        parts = ", ".join(f"{n} {status}" for status, n in counts.items())
        tested = int((board[s] != NOT_RUN).sum())  # the claims whose chapter has a grid at this scale
        lines.append(f"- **{s} scale**: {counts.get('reproduced', 0)} of {tested} claims reproduced ({parts}).")
    return "\n".join(lines) or "No claim was evaluated in this build (smoke scale only checks the code)."
