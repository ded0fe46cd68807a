"""The scales' calibrations, as tables: for the cpu scale accuracy against training length, the go/no-go cells, the
cost of each candidate model and of every chapter's grid (book/appendix_cpu_scale.ipynb); for the noisy scale the
positive controls of each candidate (book/appendix_noisy_scale.ipynb)."""
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


def controls(d: pd.DataFrame, min_effect: float = 1.0) -> pd.DataFrame:
    """The noisy scale's go/no-go: per candidate (model, label noise) and regularizer, its test accuracy minus
    SGD's (plain fine-tuning's for Paper B's stand-in), paired by seed, every run counted (``d`` from
    :func:`hessreg.stats.outcomes`), with the 95 % Student-t interval, and whether the control holds: the interval
    above 0 and the mean ≥ ``min_effect`` pp for SAM and the GN-trace penalty; PSAM only not below SGD (the
    interval's upper end ≥ 0)."""
    hp = [c for c in ("hp_rho", "hp_sigma2", "hp_alpha", "hp_sigma") if c in d]
    d = d.assign(setting=d[hp].bfill(axis=1).iloc[:, 0] if hp else None)
    rows = []
    d = d.assign(train_size=d["train_size"].fillna(-1))  # None (the whole set) would drop out of the groups
    for (dataset, model, size, noise), g in d.groupby(["dataset", "model", "train_size", "label_noise"], sort=True):
        base = g[g["method"] == "sgd"].set_index("seed")["acc"]
        for (method, setting), m in g[g["method"] != "sgd"].groupby(["method", "setting"], sort=True):
            iv = stats.Interval.of((m.set_index("seed")["acc"] - base).dropna())
            go = iv.hi95 >= 0 if method == "psam" else iv.lo95 > 0 and iv.mean >= min_effect
            rows.append({"dataset": dataset, "model": model, "train size": "all" if size < 0 else int(size),
                         "label noise": noise, "method": method, "setting": setting,
                         "SGD": round(base.mean(), 2), "method − SGD (pp)": round(iv.mean, 2),
                         "95 % interval": f"[{iv.lo95:+.2f}, {iv.hi95:+.2f}]", "seeds": iv.n,
                         "outcomes": stats.outcome_counts(m["outcome"]), "control holds": bool(go)})
    return pd.DataFrame(rows)
