"""What a chapter notebook needs besides the science: parameter checks, the best records the repo holds,
captions with provenance, figure data as CSV, verdicts saved for the scoreboard, and myst-nb glue. A chapter
opens with :func:`chapter` and talks to the :class:`ChapterResult` it returns.

A chapter runs at the scale of its ``scale`` parameter. At smoke scale with its default parameters it shows the
best committed records (``results/records``) instead and trains nothing: the full grid if complete, else the cpu
grid (a partial one is said to be partial). The rendered book always shows the best results the repo holds, and
says which.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import yaml

from . import chapters, claims, plots, report, results, rules, stats
from .config import Config
from .repo import PARAMS, build_dir, git_commit, root, write_atomic
from .sweep import sweep
from .train import run
from .typecheck import conforms, name as type_name


def figure_data_dir() -> Path:
    """Where figures' data go as CSV: ``$HESSREG_FIGURES``, else ``<root>/_build/figures``."""
    return Path(os.environ.get("HESSREG_FIGURES") or build_dir("figures"))


def check_parameters(chapter: str, **values) -> dict:
    """Papermill parameters, checked against the chapter's smoke file: names, types and the scale.

    Returns the parameters as a dict. A wrong type raises ``TypeError`` naming the parameter and the type
    expected, before any training. A list or dict given as a string is read as YAML first: papermill's
    ``-p seeds '[0, 1]'`` passes the string ``'[0, 1]'`` (``-y 'seeds: [0, 1]'`` passes the list)."""
    defaults = chapters.load_params(chapter, "smoke")
    unknown = set(values) - set(defaults)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {chapter}; valid: {', '.join(defaults)}")
    values = dict(values)
    for name, value in values.items():
        want = defaults[name]
        hint = list[type(want[0])] if isinstance(want, list) and want else type(want)
        if isinstance(want, (list, dict)) and isinstance(value, str):
            try:
                value = values[name] = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise TypeError(f"parameter {name!r} of {chapter} must be {type(want).__name__}, got {value!r}, "
                                f"which is not YAML ({str(e).splitlines()[0]})") from None
        if want is not None and value is not None and not conforms(value, hint):
            raise TypeError(f"parameter {name!r} of {chapter} must be {type_name(hint)}, got {value!r}")
    if values.get("scale") not in chapters.SCALES:
        raise ValueError(f"unknown scale {values.get('scale')!r}; valid choices: {', '.join(chapters.SCALES)}")
    return defaults | values


def parameters(chapter: str, namespace: dict) -> dict:
    """The chapter's parameters picked by name from the notebook's namespace (papermill injects them as
    variables), checked by :func:`check_parameters`."""
    names = chapters.load_params(chapter, "smoke")
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

    def outcomes(self, frame: pd.DataFrame | None = None, labels: dict | None = None) -> pd.DataFrame:
        """The runs (``frame``, default :attr:`frame`) with readable ``method_label`` and ``activation_label``
        (``labels``: method names of the chapter's own) and each run's outcome, classified by
        :func:`hessreg.stats.outcomes` with this scale's chance margin (``verdict: chance_margin``)."""
        d = plots.with_labels(self.frame if frame is None else frame)
        if labels:
            d = d.assign(method_label=d["method"].map(lambda m: labels.get(m, m)))
        v = self.params["verdict"]
        return stats.outcomes(d, v["chance_margin"], collapse_epochs=v.get("collapse_epochs", 3))

    def figure(self, name: str, fig, what: str, **kw) -> None:
        """The chapter's figure ``name`` (:func:`figure`) with :meth:`caption` of ``what``."""
        figure(name, fig, self.caption(what), **kw)

    def judge(self, claim: str, *parts) -> claims.Verdicts:
        """The verdict on ``claim`` (an id of :data:`hessreg.claims.CLAIMS`) by its rule (:data:`hessreg.rules.RULES`;
        or from ``parts`` given here) at this scale, and at every other scale whose committed records hold part of
        the chapter's grid (a partial grid reads "not evaluated", with its count); each saved for the scoreboard."""
        out = [self._judge(claim, parts)]
        for scale in chapters.SCALES[1:]:
            if scale != self.scale and chapters.has_params(self.chapter, scale):
                other = committed(self.chapter, scale)
                if len(other.frame):
                    out.append(other._judge(claim, ()))
        for v in out:
            v.save(self.chapter)
        return claims.Verdicts(out)

    def _judge(self, claim: str, parts: tuple) -> claims.Verdict:
        c = claims.CLAIMS[claim]
        verdict = c.unevaluated(self) or c.judge(self, *(parts or rules.RULES[claim](self)))
        verdict.other_reading = other_reading(claim, self.scale)
        return verdict

    def caption(self, what: str) -> str:
        seeds = self.frame["seed"].nunique() if not self.frame.empty else 0
        missing, requested = self.frame.attrs.get("missing", 0), self.frame.attrs.get("requested", len(self.frame))
        part = f" Only {requested - missing} of {requested} runs of the grid are stored." if missing else ""
        return f"{what} Scale: {self.scale}; {seeds} seed(s); {self.provenance}.{part}"


def other_reading(claim: str, scale: str) -> dict | None:
    """The verdict on ``claim`` under the rule code ``scale`` was registered with, when the scale was
    re-registered after its runs (``experiments/params/rules.yaml``): the stored verdict and why the rules changed."""
    registry = yaml.safe_load((root() / PARAMS / "rules.yaml").read_text()).get(scale, {})
    for r in registry.get("reregistered", []):
        path = root() / r.get("both_verdicts", "") / f"{claim}.json"
        if r.get("after_runs") and path.is_file():
            v = json.loads(path.read_text())
            return {"status": v["status"], "statistic": v.get("statistic", ""), "why": r["why"],
                    "registered": f"commit {registry['registered'].get('commit', '?')}", "source": r["both_verdicts"]}
    return None


def committed(chapter: str, scale: str) -> ChapterResult:
    """The chapter's committed records at ``scale`` (its whole grid or part of it; nothing is trained)."""
    p = chapters.load_params(chapter, scale)
    return ChapterResult(chapter, scale, sweep(chapters.configs(chapter, p), results.store_for(scale), train=False,
                                               progress=False), p)


def run_chapter(chapter: str, params: dict, *, progress: bool = True) -> ChapterResult:
    """The chapter's grid at ``params['scale']`` — or, at smoke scale, the best committed records: the full
    scale's if its grid is complete, else the cpu scale's, else the noisy or lowdata scale's, if any of its grid is stored (a partial grid is shown
    as such: its caption says "n of m runs" and its verdict is not evaluated). Nothing committed is retrained."""
    scale = params["scale"]
    # committed records stand in for the smoke grid only when the reader asked for the default smoke grid
    # (a changed parameter — another method, more seeds — runs what was asked)
    if scale == "smoke" and params == chapters.load_params(chapter, "smoke"):
        for shown in ("full", "cpu", "noisy", "noisy_cnn", "lowdata"):
            if not chapters.has_params(chapter, shown):
                continue
            r = committed(chapter, shown)
            if r.frame.attrs["missing"] == 0 or (shown != "full" and len(r.frame)):
                return r
    df = sweep(chapters.configs(chapter, params), results.store_for(scale), progress=progress, desc=chapter)
    return ChapterResult(chapter, scale, df, params)


def chapter(name: str, namespace: dict, *, progress: bool = True) -> ChapterResult:
    """A chapter notebook's opening: its parameters picked from the notebook's ``namespace`` and checked
    (:func:`parameters`), its runs (:func:`run_chapter`); says which scale's records are shown."""
    result = run_chapter(name, parameters(name, namespace), progress=progress)
    print(f"showing {result.scale} scale: {result.provenance}")
    return result


def save_figure_data(df: pd.DataFrame, label: str) -> Path:
    """Write a figure's data as ``<label>.csv`` beside the book's figures; returns the path."""
    path = figure_data_dir() / f"{label}.csv"
    write_atomic(path, df.to_csv(index=False))
    return path


def figure(name: str, fig, caption: str, *, data: pd.DataFrame | None = None, csv: str | None = None) -> None:
    """A chapter's numbered figure: ``fig`` glued as ``name`` and its caption as ``<name>_caption`` (the
    markdown's ``{glue:figure}`` shows them once), the data behind it written as ``<csv>.csv``, the figure closed
    (so the cell does not show it a second time)."""
    if data is not None:
        save_figure_data(data, csv or name)
    glue(name, fig)
    glue(f"{name}_caption", caption + " " + cite_line(csv or name))
    plt.close(fig)


def cite_line(label: str) -> str:
    """How to cite a figure: the book (CITATION.cff) at the commit that built it, the figure's label, and the
    paper whose figure it reproduces (the chapter's own citation)."""
    return (f"Cite as: hessreg contributors, *hessreg: a reproducibility book for Hessian and sharpness "
            f"regularization* (CITATION.cff), figure `{label}`, commit {git_commit()[:10]}; and the paper it "
            "reproduces.")


def glue(name: str, value) -> None:
    """myst-nb glue, silent outside a notebook build (so chapters also run as plain Python)."""
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=False)


def trained_report(config: Config, **kw) -> report.Report:
    """Train ``config`` (:func:`hessreg.train.run`), then :func:`hessreg.report.report` on the first ``samples`` of
    the images it was trained on; the report's ``meta`` holds the run's test accuracy and training time."""
    record, model = run(config, return_model=True)
    kw.setdefault("name", f"{config.model} {config.activation}")
    out = report.report(model, config.dataset, train_size=config.train_size, device=config.device, **kw)
    out.meta |= dict(test_acc=record.test_acc, train_seconds=record.wall_time_s)
    return out
