"""The book's figures: seaborn, mean ± standard deviation over seeds, every seed visible; and its results tables
(:func:`table`). Figures are :data:`WIDTH` inches wide, the book's content column at about 100 pixels per inch, so
they are shown near their own size and their text stays legible (legends ≥ :data:`LEGEND_PT` pt)."""
from __future__ import annotations

import hashlib
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm, PowerNorm

from . import stats
from .landscape import Boundary


WIDTH = 7.0  # inches: the content column (about 690 CSS pixels in a 1280-pixel window) at ~100 pixels per inch
LEGEND_PT = 10  # legend text, pt (≥ 9 stays legible at WIDTH)
# Status colours (the scoreboard's badges, the verdict pictures): white or near-black text on fills chosen for a
# contrast ratio ≥ 4.5 (WCAG AA) in both themes.
BADGES = {"reproduced": ("#1a7f37", "#ffffff"), "reproduced as training failure": ("#9a6700", "#ffffff"),
          "not reproduced": ("#cf222e", "#ffffff"), "inconclusive": ("#57606a", "#ffffff"),
          "not testable": ("#6639ba", "#ffffff"), "not evaluated": ("#d0d7de", "#1f2328")}


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind",
                  rc={"figure.figsize": (WIDTH, 3.8), "legend.fontsize": LEGEND_PT,
                      "legend.title_fontsize": LEGEND_PT})


def metric_by_group(df: pd.DataFrame, x: str, metric: str = "test_acc", order=None, ax=None,
                    ylabel: str | None = None, rotate: float = 0):
    """Mean ± sd per category (points with error bars) over the individual seeds (dots); categories in the
    order they appear (or ``order``), their names turned by ``rotate`` degrees."""
    ax = ax or plt.subplots(figsize=(WIDTH, 3.6))[1]
    scale = 100 if metric.endswith("acc") else 1
    d = df.assign(_y=df[metric] * scale)
    sns.stripplot(data=d, x=x, y="_y", order=order, ax=ax, color="0.5", alpha=0.6, size=4, jitter=0.1)
    sns.pointplot(data=d, x=x, y="_y", order=order, ax=ax, errorbar="sd", linestyle="none", capsize=0.2,
                  markers="D", color="C0")
    ax.set_ylabel(ylabel or ("test accuracy (%)" if metric == "test_acc" else metric))
    ax.set_xlabel("")
    if rotate:
        ax.tick_params(axis="x", labelrotation=rotate)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
        if not ax.figure.get_layout_engine():
            ax.figure.tight_layout()
    return ax


def metric_panels(df: pd.DataFrame, x: str, metrics: dict[str, str], rotate: float = 0):
    """:func:`metric_by_group` one above the other, one panel per metric (``metrics``: column → axis label), the
    categories named under the bottom panel."""
    fig, axes = plt.subplots(len(metrics), 1, figsize=(WIDTH, 2.4 * len(metrics) + 1.2), sharex=True,
                             squeeze=False, layout="constrained")
    for ax, (metric, label) in zip(axes[:, 0], metrics.items()):
        metric_by_group(df, x, metric=metric, ax=ax, ylabel=label, rotate=rotate)
    return fig


METHOD_LABELS = {"sgd": "SGD", "sam": "SAM", "asam": "ASAM", "psam": "PSAM", "pusam": "PUSAM",
                 "gn_psam": "GN-PSAM (NME ablated)", "weight_noise": "weight noise",
                 "hessian_trace": "Hessian-trace penalty", "gn_trace": "GN-trace penalty",
                 "gn_trace_hutchinson": "GN-trace penalty (Hutchinson)", "nso": "NSO", "rsam": "RSAM",
                 "label_smoothing": "label smoothing"}
ACTIVATION_LABELS = {"relu": "ReLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh)", "beta_gelu": "β-GELU",
                     "gelu_nme_ablated": "GELU, activation NME ablated", "relu_synthetic_nme": "ReLU + synthetic NME"}


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add readable ``method_label`` and ``activation_label`` columns (β shown where it matters)."""
    act = [ACTIVATION_LABELS.get(a, a) + (f" (β={b:g})" if a in ("beta_gelu", "relu_synthetic_nme") else "")
           for a, b in zip(df["activation"], df.get("beta", [None] * len(df)))]
    return df.assign(method_label=df["method"].map(lambda m: METHOD_LABELS.get(m, m)), activation_label=act)


def curves(df: pd.DataFrame, x: str, hue: str, col: str | None = None, metric: str = "test_acc",
           xlabel: str | None = None, logx: bool = True, baseline: str | None = "sgd",
           baseline_label: str = "SGD"):
    """Paper-style sweep figure: ``metric`` vs ``x`` (log axis) for every ``hue`` (mean ± sd over seeds, seeds as
    dots), one panel per ``col``; runs of the ``baseline`` method drawn as dashed lines with ± sd bands, one per
    activation in the panel, named ``"<baseline_label>, <activation>"`` (``baseline=None``: every method is a
    curve). With an ``outcome`` column (:func:`hessreg.stats.outcomes`), failed runs are marked in black — ×
    collapsed, + recovered from a collapse, ▼ diverged (at chance when it has no accuracy) — and named in the
    legend with their count over the figure. One legend, under the panels. Returns the figure."""
    reg, base_runs = df[df["method"] != baseline], df[df["method"] == baseline]
    panels = [None] if col is None else list(dict.fromkeys(reg[col]))
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.6 if len(panels) == 1 else 3.3), sharey=True,
                             squeeze=False, layout="constrained")
    scale = 100 if metric.endswith("acc") else 1
    hues = list(dict.fromkeys(reg[hue]))
    palette = dict(zip(hues, sns.color_palette("colorblind", len(hues))))
    failed = {k: int((df["outcome"] == k).sum()) for k in FAILURES} if "outcome" in df else {}
    for ax, panel in zip(axes[0], panels):
        d = reg if panel is None else reg[reg[col] == panel]
        d = d.assign(_y=d[metric] * scale)
        sns.lineplot(data=d, x=x, y="_y", hue=hue, palette=palette, errorbar="sd", marker="o", ax=ax)
        sns.scatterplot(data=d, x=x, y="_y", hue=hue, palette=palette, alpha=0.35, s=14, legend=False, ax=ax)
        for outcome, marker in FAILURES.items():  # failed runs: marked, never hidden in the mean
            bad = d[d["outcome"] == outcome] if failed.get(outcome) else d.iloc[:0]
            if len(bad):
                y = bad["_y"].where(np.isfinite(bad["_y"]), bad["acc"] if "acc" in bad else np.nan)
                ax.scatter(bad[x], y, marker=marker, color="k", s=30, zorder=5,
                           label=f"{outcome}: {failed[outcome]} run{'s' if failed[outcome] > 1 else ''}")
        for i, act in enumerate(dict.fromkeys(d["activation"])):
            base = base_runs[base_runs["activation"] == act][metric] * scale
            if len(base):
                m, s = base.mean(), base.std() if len(base) > 1 else 0.0
                ax.axhline(m, color="0.3", ls=("--", ":", "-.")[i % 3], lw=1,
                           label=f"{baseline_label}, {ACTIVATION_LABELS.get(act, act)}")
                ax.axhspan(m - s, m + s, color="0.3", alpha=0.07)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel("test accuracy (%)" if metric == "test_acc" else metric)
        ax.set_title("" if panel is None else str(panel))
    shared_legend(fig)
    return fig


FAILURES = {"collapsed": "x", "recovered": "+", "diverged": "v"}  # outcome → marker (hessreg.stats.outcomes)


def shared_legend(fig, ncol: int = 3) -> None:
    """One legend for all of ``fig``'s panels, under them (each entry once), in place of the panels' own."""
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if ax.get_legend():
            ax.get_legend().remove()
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncol=min(ncol, len(entries)),
                   fontsize=LEGEND_PT, frameon=False)


def penalty_trajectories(history: pd.DataFrame):
    """The epoch-mean penalty estimate along training (``history``: :attr:`hessreg.book.ChapterResult.history`
    with labels), one line per run, on a symmetric-log y axis around 0."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
    sns.lineplot(data=history, x="epoch", y="penalty", hue="method_label", units="seed", estimator=None, marker="o",
                 ax=ax)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("penalty's trace estimate")
    ax.legend(title=None, fontsize=LEGEND_PT)
    return fig


def nonzero_fractions(metrics: pd.DataFrame):
    """The fraction of non-zero σ'' against β (log-log), at initialization and after training (``when``), one line
    style per method; ``metrics``: the ``nonzero_d2`` rows of :attr:`hessreg.book.ChapterResult.metrics` with
    labels. Mean ± sd over seeds."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
    sns.lineplot(data=metrics.assign(weights=metrics["when"], method=metrics["method_label"]), x="beta", y="total",
                 hue="weights", style="method", errorbar="sd", marker="o", ax=ax)  # the legend's headings
    ax.set(xscale="log", yscale="log", xlabel="β (β-GELU sharpness)", ylabel="fraction of σ'' ≠ 0")
    return fig


def accuracy_vs_epochs(curve: pd.DataFrame):
    """Test accuracy (%) against the number of epochs (log₂ axis) per activation: mean ± sd, seeds as dots
    (``curve``: :func:`hessreg.calibration.epochs_curve`)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.5))
    sns.lineplot(data=curve, x="epochs", y="test_acc_pct", hue="activation", errorbar="sd", marker="o", ax=ax)
    sns.scatterplot(data=curve, x="epochs", y="test_acc_pct", hue="activation", legend=False, alpha=0.4, ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_ylabel("test accuracy (%)")
    return fig


def nme_landscape(fig7, nme_floor: float = 1e-6, band: float = 3.0):
    """Paper A Fig. 7 from :func:`hessreg.landscape.figure7`'s result. 2×2 panels: loss (top, square-root colour scale: colour ∝ |f − y|) and ‖N‖_F (bottom, log colour scale,
    values below ``nme_floor`` × max shown at the floor), ReLU (left) and β-GELU (right); the analytic boundaries
    h_i = 0 as dashed lines, and on the β-GELU NME panel the band edges |h_i| = ``band``/β as dotted lines."""
    fig, axes = plt.subplots(2, 2, figsize=(WIDTH, 6.4), sharex=True, sharey=True, constrained_layout=True)
    rs = (fig7.relu, fig7.gelu)
    top = max(float(r.nme_norm.max()) for r in rs)
    norm = LogNorm(vmin=nme_floor * top, vmax=top)
    lmin, lmax = min(float(r.loss.min()) for r in rs), max(float(r.loss.max()) for r in rs)
    for col, r in enumerate(rs):
        A, B = np.meshgrid(r.a.numpy(), r.b.numpy(), indexing="ij")
        ax = axes[0, col]
        m = ax.pcolormesh(A, B, r.loss.numpy(), shading="auto", cmap="viridis",
                          norm=PowerNorm(0.5, vmin=lmin, vmax=lmax))
        ax.contour(A, B, r.loss.numpy(), levels=12, colors="w", linewidths=0.5, alpha=0.6)
        ax.set_title(f"{r.label}: loss ½(f − y)²", fontsize=10)
        if col == 1:
            fig.colorbar(m, ax=axes[0, :], shrink=0.9, label="loss (square-root colour scale)")
        ax = axes[1, col]
        nme = r.nme_norm.numpy()
        if nme.max() == 0:
            ax.pcolormesh(A, B, np.zeros_like(nme), shading="auto", cmap="Greys", vmin=0, vmax=1)
            ax.text(0.5, 0.06, "‖N‖_F = 0 at every grid point\n(σ'' = Dirac delta on the dashed lines)",
                    transform=ax.transAxes, ha="center", va="bottom", fontsize=9,
                    bbox=dict(boxstyle="round", fc="w", alpha=0.85))
        else:
            m = ax.pcolormesh(A, B, np.clip(nme, nme_floor * top, None), shading="auto", cmap="magma", norm=norm)
            fig.colorbar(m, ax=axes[1, :], shrink=0.9, label="‖N‖_F (log scale)")
            for ln in r.boundaries:
                for h in (-band / r.beta, band / r.beta):
                    edge = Boundary(ln.unit, ln.r - h, ln.alpha, ln.gamma)
                    pts = edge.points((float(r.a[0]), float(r.a[-1])), (float(r.b[0]), float(r.b[-1])))
                    ax.plot(pts[:, 0], pts[:, 1], ls=":", lw=1, color="c")
            ax.plot([], [], ls=":", lw=1, color="c", label=f"|h| = {band:g}/β")
            ax.legend(loc="upper left", fontsize=9, framealpha=0.85)
        ax.set_title(f"{r.label}: NME norm ‖N‖_F", fontsize=10)
        for ax in axes[:, col]:
            for k, ln in enumerate(r.boundaries):
                pts = ln.points((float(r.a[0]), float(r.a[-1])), (float(r.b[0]), float(r.b[-1])))
                ax.plot(pts[:, 0], pts[:, 1], ls="--", lw=1.2, color=("C1", "C2", "C4")[k % 3],
                        label=f"{ln.label()} (analytic)")
            ax.set_xlim(float(r.a[0]), float(r.a[-1]))
            ax.set_ylim(float(r.b[0]), float(r.b[-1]))
    (ip, jp), (iq, jq) = fig7.relu.net.weights
    for ax in axes[1]:
        ax.set_xlabel(f"w_p = W1[{ip + 1},{jp + 1}]")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"w_q = W1[{iq + 1},{jq + 1}]")
    axes[0, 0].legend(loc="upper left", fontsize=9, framealpha=0.85)
    return fig


# ------------------------------------------------------------------------------------------------------ tables

COLUMN_LABELS = {
    "method_label": "method", "activation_label": "activation", "hp_rho": "ρ", "rho": "ρ", "sigma2": "σ²",
    "hp_sigma2": "σ²", "beta": "β", "hp_beta": "β", "hp_sigma": "σ", "sigma": "σ", "weight_decay": "weight decay",
    "n": "seeds", "count": "seeds", stats.OUTCOME_HEADER: "seeds healthy / collapsed / recovered / diverged",
    "diverged": "seeds diverged", "test_acc": "test accuracy %", "test_acc_pct": "test accuracy %",
    "val_acc": "validation accuracy %", "val_loss": "validation loss", "wall_time_s": "wall time (s)",
    "trace": "Hessian trace", "top_eig": "top Hessian eigenvalue", "penalty": "penalty's trace estimate",
    "total": "fraction of σ'' ≠ 0",
    # chapter 9: how concentrated the β-GELU NME is around the region boundaries
    "distance": "d = c/β", "nme_mass": "NME mass within d", "area": "grid area within d", "profile": "1-D prediction",
    "mass_within_1_over_beta": "NME mass within 1/β", "mass_within_3_over_beta": "NME mass within 3/β",
    "d90": "d₉₀", "beta_d90": "β·d₉₀", "grid_steps_per_width": "grid steps per 1/β"}
# settings (grid coordinates): shown as given, "—" where a row has none (SGD has no ρ)
SETTINGS = {"rho", "sigma2", "beta", "sigma", "weight_decay", "epochs", "epoch", "distance", "c"}


def table(frame: pd.DataFrame, value: str = "test accuracy %") -> "pd.io.formats.style.Styler":
    """A results table for readers (a Styler; the frame itself is not changed): labelled columns
    (:data:`COLUMN_LABELS`), no index, each mean beside its sd as one "mean ± sd" column (``mean``/``std`` —
    named ``value``, e.g. :func:`hessreg.stats.summary`'s test accuracy in % — ``<x>_mean``/``<x>_std``, and
    ``<x>_change_%``/``<x>_change_se_%``), numbers to what the seeds resolve: percentages to 2 decimals, 1 when
    the typical sd is ≥ 1 pp; other means to two significant digits of the typical sd; other numbers to 3
    significant digits; settings as given. Columns named ``_…`` are left out."""
    d = frame.reset_index() if any(n is not None for n in frame.index.names) else frame.reset_index(drop=True)
    if isinstance(d.columns, pd.MultiIndex):  # groupby(...).agg(["mean", "std"]) of several columns
        d.columns = ["_".join(str(p) for p in c if str(p)) for c in d.columns]
    d = d[[c for c in d.columns if not str(c).startswith("_")]]
    cols, numeric, used = {}, [], set()
    for c in d.columns:
        if c in used:
            continue
        base, sd, head = _pair(c, d, value)
        if base is not None:
            used |= {c, sd}
            cols[head] = _mean_sd(d[c], d[sd] if sd else None, percent="%" in head)
        else:
            label = COLUMN_LABELS.get(c) or ("seeds" if str(c).endswith("_count") else str(c))
            values = _column(d[c], setting=c in SETTINGS or str(c).startswith("hp_"), percent="%" in label)
            if cols.get(label) == values:
                continue  # one seed count for several means
            cols[label if label not in cols else f"{label} ({c})"] = values
        if pd.api.types.is_numeric_dtype(d[c]) and not pd.api.types.is_bool_dtype(d[c]):
            numeric.append(len(cols) - 1)
    return _styled(pd.DataFrame(cols), numeric)


def curvature_tables(traces: pd.DataFrame, eigenvalues: pd.DataFrame) -> tuple:
    """:func:`hessreg.report.compare`'s traces and :func:`hessreg.report.eigenvalues` for readers (two Stylers): model
    and layer as columns, no index; each trace beside its standard error ("tr H ± se") to two significant digits
    of the typical se; the NME's share tr N / tr H to 2 decimals; eigenvalues to 3 significant digits."""
    d = traces.reset_index()
    cols = {"model": list(d["model"]), "layer": [str(v) for v in d["layer"]]}
    for k in ("H", "G", "N"):
        cols[f"tr {k} (± se)"] = _mean_sd(d[f"tr {k}"], d[f"± {k}"], percent=False)
    cols["tr N / tr H"] = [_number(v, 2) for v in d["tr N / tr H"]]
    eig = {"model": list(eigenvalues.index)} | {c: [_number(v, None) for v in eigenvalues[c]] for c in eigenvalues}
    return (_styled(pd.DataFrame(cols), list(range(2, 6))),
            _styled(pd.DataFrame(eig), list(range(1, len(eig)))))


def _styled(shown: pd.DataFrame, numeric: list[int]) -> "pd.io.formats.style.Styler":
    """The reader-table look: no index, headers left and wrapping, cells on one line, numbers right-aligned."""
    styles = [{"selector": "th", "props": "text-align: left; vertical-align: bottom"}]
    styles += [{"selector": "td", "props": "white-space: nowrap"}]  # cells on one line; headers wrap
    if numeric:  # numbers right-aligned
        styles += [{"selector": ", ".join(f"td.col{i}, th.col{i}" for i in numeric), "props": "text-align: right"}]
    return (shown.style.hide(axis="index").set_table_styles(styles)
            .set_uuid(hashlib.sha1(shown.to_csv().encode()).hexdigest()[:10])  # the same table, the same HTML
            .set_table_attributes('class="dataframe reader-table"'))


def _pair(c: str, d: pd.DataFrame, value: str):
    """(mean column, its sd column or None, header) when ``c`` is a mean, else (None, None, None)."""
    c, columns = str(c), d.columns
    if c == "mean":
        return c, "std" if "std" in columns else None, f"{value} (mean ± sd)" if "std" in columns else f"{value} (mean)"
    if c.endswith("_mean"):
        base = c[:-5]
        sd = f"{base}_std" if f"{base}_std" in columns else None
        return c, sd, COLUMN_LABELS.get(base, base) + (" (mean ± sd)" if sd else " (mean)")
    if c.endswith("_change_%"):
        base = c[:-9]
        se = f"{base}_change_se_%" if f"{base}_change_se_%" in columns else None
        ref = d.loc[(d[c] == 0) & (d[se].isna() if se else True), d.columns[0]]  # the row compared with itself
        vs = f", {ref.iloc[0]} vs method" if len(ref) == 1 else ""
        return c, se, f"{COLUMN_LABELS.get(base, base)}: change{vs}, % (± se)"
    return None, None, None


def _mean_sd(mean: pd.Series, sd: pd.Series | None, percent: bool) -> list[str]:
    spread = pd.to_numeric(sd, errors="coerce").abs() if sd is not None else pd.Series(dtype=float)
    typical = spread[np.isfinite(spread) & (spread > 0)].median() if len(spread) else np.nan
    if percent:
        dec = 1 if typical >= 1 else 2
    else:
        dec = int(np.clip(1 - np.floor(np.log10(typical)), 0, 8)) if np.isfinite(typical) else None
    out = []
    for i, m in enumerate(mean):
        s = spread.iloc[i] if len(spread) else np.nan
        text = _number(m, dec)
        row_dec = dec if dec is not None else (len(text.split(".")[1]) if "." in text and "e" not in text else 0)
        out.append(f"{text} ± {_number(s, row_dec)}" if np.isfinite(s) and text != "—" else text)
    return out


def _column(col: pd.Series, setting: bool, percent: bool) -> list[str]:
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        named = _setting_names if col.name == "setting" else str
        return ["—" if v is None or (isinstance(v, float) and np.isnan(v)) else named(str(v)) for v in col]
    if pd.api.types.is_integer_dtype(col):
        return [str(int(v)) for v in col]
    if setting:
        return ["—" if not np.isfinite(v) else f"{v:g}".replace("-", "−") for v in col]
    return [_number(v, 2 if percent else None) for v in col]


def _setting_names(text: str) -> str:
    """Hyperparameter names in a setting such as ``rho=0.05, k=2`` as the chapters write them (ρ = 0.05, k = 2)."""
    for name, symbol in (("alpha", "α"), ("rho", "ρ"), ("sigma2", "σ²"), ("sigma", "σ"), ("beta", "β")):
        text = re.sub(rf"\b{name}=", f"{symbol} = ", text)
    return re.sub(r"\b(\w+)=", r"\1 = ", text)


def _number(v, decimals: int | None) -> str:
    """``v`` to ``decimals`` decimals (None: 3 significant digits), with a minus sign; "—" when not finite."""
    if v is None or not np.isfinite(v):
        return "—"
    if decimals is None:
        mag = int(np.floor(np.log10(abs(v)))) if v else 0
        decimals = max(0, 2 - mag) if -4 <= mag < 6 else None
        if decimals is None:
            return f"{v:.2e}".replace("-", "−")
    return f"{v:.{decimals}f}".replace("-", "−")
