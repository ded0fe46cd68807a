"""What a chapter notebook needs besides the science: parameter checks, the best records the repo holds,
captions with provenance, figure data as CSV, and myst-nb glue.

A chapter runs at the scale of its ``scale`` parameter. At smoke scale, when the committed store
(``results/records``) already holds every run of the chapter's *full* grid, the chapter shows those records
instead and trains nothing: the rendered book always shows the best results the repo holds, and says which.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from . import grids, results
from .sweep import sweep

REPO = Path(__file__).resolve().parent.parent
FIGURE_DATA = Path(os.environ.get("HESSREG_FIGURES", REPO / "_build" / "figures"))


def check_parameters(chapter: str, **values) -> dict:
    """Papermill parameters, checked against the chapter's smoke file: names, types and the scale.

    Returns the parameters as a dict. A wrong type raises ``TypeError`` naming the parameter and the type
    expected, before any training. A list or dict given as a string is read as YAML first: papermill's
    ``-p seeds '[0, 1]'`` passes the string ``'[0, 1]'`` (``-y 'seeds: [0, 1]'`` passes the list)."""
    defaults = grids.load_params(chapter, "smoke")
    unknown = set(values) - set(defaults)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {chapter}; valid: {', '.join(defaults)}")
    values = dict(values)
    for name, value in values.items():
        want = defaults[name]
        if isinstance(want, (list, dict)) and isinstance(value, str):
            try:
                value = values[name] = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise TypeError(f"parameter {name!r} of {chapter} must be {type(want).__name__}, got {value!r}, "
                                f"which is not YAML ({str(e).splitlines()[0]})") from None
        if want is None or value is None:
            continue
        numbers = (int, float)
        ok = (isinstance(value, numbers) and not isinstance(value, bool) if isinstance(want, float)
              else isinstance(value, type(want)))
        if isinstance(want, list) and ok and want:
            elem = type(want[0])
            ok = all(isinstance(v, numbers) and not isinstance(v, bool) if elem is float else isinstance(v, elem)
                     for v in value)
        if not ok:
            raise TypeError(f"parameter {name!r} of {chapter} must be {type(want).__name__}"
                            f"{f' of {type(want[0]).__name__}' if isinstance(want, list) and want else ''}, "
                            f"got {value!r}")
    if values.get("scale") not in grids.SCALES:
        raise ValueError(f"unknown scale {values.get('scale')!r}; valid choices: {', '.join(grids.SCALES)}")
    return defaults | values


def parameters(chapter: str, namespace: dict) -> dict:
    """The chapter's parameters picked by name from the notebook's namespace (papermill injects them as
    variables), checked by :func:`check_parameters`."""
    names = grids.load_params(chapter, "smoke")
    return check_parameters(chapter, **{k: namespace[k] for k in names if k in namespace})


@dataclass
class ChapterResult:
    chapter: str
    scale: str  # the scale whose records are shown
    frame: pd.DataFrame  # one row per run (results.frame); attrs["store"], attrs["keys"] locate the records
    params: dict

    @property
    def records(self) -> list:
        """The shown runs' full records (read from their store when asked: curves and measurements)."""
        store = results.RecordStore(self.frame.attrs["store"])
        return [store.load(key) for key in self.frame.attrs["keys"]]

    @property
    def history(self) -> pd.DataFrame:
        """Learning curves, one row per run and epoch (results.history_frame)."""
        return results.history_frame(self.records)

    @property
    def metrics(self) -> pd.DataFrame:
        """Measurements at initialization and after training (results.metrics_frame)."""
        return results.metrics_frame(self.records)

    @property
    def provenance(self) -> str:
        df = self.frame
        if df.empty:
            return "no records"
        commits = sorted({str(c)[:10] for c in df["commit"]})
        threads = ""
        if "threads" in df and df["threads"].notna().any():
            threads = f" ({', '.join(str(int(t)) for t in sorted(set(df['threads'].dropna())))} thread(s))"
        return (f"{len(df)} runs on {', '.join(sorted(set(df['device_name'])))}{threads}, torch "
                f"{', '.join(sorted(set(df['torch'])))}, commit {', '.join(commits)}, "
                f"{df['wall_time_s'].sum() / 60:.1f} min of training")

    def caption(self, what: str) -> str:
        seeds = self.frame["seed"].nunique() if not self.frame.empty else 0
        missing, requested = self.frame.attrs.get("missing", 0), self.frame.attrs.get("requested", len(self.frame))
        part = f" Only {requested - missing} of {requested} runs of the grid are stored." if missing else ""
        return f"{what} Scale: {self.scale}; {seeds} seed(s); {self.provenance}.{part}"


def run_chapter(chapter: str, params: dict, *, progress: bool = True) -> ChapterResult:
    """The chapter's grid at ``params['scale']`` — or, at smoke scale, the best committed records: the full
    scale's if its grid is complete, else the cpu scale's if any of its grid is stored (a partial grid is shown
    as such: its caption says "n of m runs" and its verdict is not evaluated). Nothing committed is retrained."""
    scale = params["scale"]
    # committed records stand in for the smoke grid only when the reader asked for the default smoke grid
    # (a changed parameter — another method, more seeds — runs what was asked)
    if scale == "smoke" and params == grids.load_params(chapter, "smoke"):
        for shown in ("full", "cpu"):
            if not (grids.PARAMS / chapter / f"{shown}.yaml").exists():
                continue
            p = grids.load_params(chapter, shown)
            df = sweep(grids.configs(chapter, p), results.store_for(shown), train=False, progress=False)
            if df.attrs["missing"] == 0 or (shown == "cpu" and len(df)):
                return ChapterResult(chapter, shown, df, p)
    df = sweep(grids.configs(chapter, params), results.store_for(scale), progress=progress, desc=chapter)
    return ChapterResult(chapter, scale, df, params)


def save_figure_data(df: pd.DataFrame, label: str) -> Path:
    """Write a figure's data as ``<label>.csv`` beside the book's figures; returns the path."""
    FIGURE_DATA.mkdir(parents=True, exist_ok=True)
    path = FIGURE_DATA / f"{label}.csv"
    results.write_atomic(path, df.to_csv(index=False))
    return path


def figure(name: str, fig, caption: str, *, data: pd.DataFrame | None = None, csv: str | None = None) -> None:
    """A chapter's numbered figure: ``fig`` glued as ``name`` and its caption as ``<name>_caption`` (the
    markdown's ``{glue:figure}`` shows them once), the data behind it written as ``<csv>.csv``, the figure closed
    (so the cell does not show it a second time)."""
    import matplotlib.pyplot as plt
    if data is not None:
        save_figure_data(data, csv or name)
    glue(name, fig)
    glue(f"{name}_caption", caption)
    plt.close(fig)


def glue(name: str, value) -> None:
    """myst-nb glue, silent outside a notebook build (so chapters also run as plain Python)."""
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=False)
