"""The cpu scale's calibration, as tables: accuracy against training length, the go/no-go cells, the cost of
each candidate model and of every chapter's grid (book/appendix_cpu_scale.ipynb)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import chapters, results, stats
from .repo import root
from .sweep import sweep


def epochs_curve(frame: pd.DataFrame) -> pd.DataFrame:
    """SGD runs of the calibration grid: test accuracy (%) per activation, epochs and seed."""
    d = frame[frame["method"] == "sgd"]
    return d.assign(test_acc_pct=100 * d["test_acc"])[["activation", "epochs", "seed", "test_acc_pct",
                                                      "wall_time_s"]]


def gonogo(frame: pd.DataFrame, epochs: int, chance_margin: float = 5.0) -> pd.DataFrame:
    """The go/no-go cells (every method but SGD at the grid's ``epochs``): mean ± sd test accuracy (%), outcome
    counts (healthy/collapsed/diverged) and mean wall time per model, method and activation."""
    d = stats.outcomes(frame[(frame["method"] != "sgd") & (frame["epochs"] == epochs)], chance_margin)
    hp = [c for c in ("hp_rho", "hp_sigma2") if c in d]
    d = d.assign(setting=d[hp].bfill(axis=1).iloc[:, 0] if hp else None)
    g = d.groupby(["model", "method", "setting", "activation"], sort=True)
    out = g["acc"].agg(mean="mean", sd="std", n="count")
    out["healthy/collapsed/diverged"] = g["outcome"].agg(stats.outcome_counts)
    out["s_per_run"] = g["wall_time_s"].mean()
    return out.round(2).reset_index()


def cost_path() -> Path:
    """Where ``experiments/calibrate.py cost`` writes its step times: ``<root>/results/calibration/cost_cpu.json``."""
    return root() / "results" / "calibration" / "cost_cpu.json"


def step_costs(path: Path | None = None) -> pd.DataFrame | None:
    """``experiments/calibrate.py cost``'s step times per candidate and method, as a table (None if not run)."""
    path = path or cost_path()
    if not Path(path).exists():
        return None
    r = json.loads(Path(path).read_text())
    rows = [{"model": m, "method": k, "ms per step": v["ms"], "× SGD step": v["ratio"],
             f"s per run ({r['steps_per_run']} steps)": v["s_per_run"]}
            for m, d in r["models"].items() for k, v in d["methods"].items()]
    return pd.DataFrame(rows).round(2)


def grid_cost(scale: str = "cpu") -> pd.DataFrame:
    """Per chapter with a grid at ``scale``: runs requested and stored, and the training time of the stored
    ones (CPU seconds of one process; runs shared between chapters are counted in each)."""
    rows = []
    for chapter in chapters.GRIDS:
        if not chapters.has_params(chapter, scale):
            continue
        df = sweep(chapters.configs(chapter, chapters.load_params(chapter, scale)), results.store_for(scale),
                   train=False, progress=False)
        rows.append({"chapter": chapter, "runs": df.attrs["requested"], "stored": len(df),
                     "training minutes": round(df["wall_time_s"].sum() / 60, 1) if len(df) else 0.0})
    return pd.DataFrame(rows)
