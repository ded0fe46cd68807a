"""The book's figures: seaborn, mean ± standard deviation over seeds, every seed visible."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm, PowerNorm

from .landscape import Boundary


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def metric_by_group(df: pd.DataFrame, x: str, metric: str = "test_acc", order=None, ax=None,
                    ylabel: str | None = None, rotate: float = 0):
    """Mean ± sd per category (points with error bars) over the individual seeds (dots); categories in the
    order they appear (or ``order``), their names turned by ``rotate`` degrees."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    scale = 100 if metric.endswith("acc") else 1
    d = df.assign(_y=df[metric] * scale)
    sns.stripplot(data=d, x=x, y="_y", order=order, ax=ax, color="0.5", alpha=0.6, size=4, jitter=0.1)
    sns.pointplot(data=d, x=x, y="_y", order=order, ax=ax, errorbar="sd", linestyle="none", capsize=0.2,
                  markers="D", color="C0")
    ax.set_ylabel(ylabel or ("test accuracy (%)" if metric == "test_acc" else metric))
    ax.set_xlabel("")
    if rotate:
        ax.tick_params(axis="x", labelrotation=rotate)
        ax.figure.tight_layout()
    return ax


def metric_panels(df: pd.DataFrame, x: str, metrics: dict[str, str], rotate: float = 0):
    """:func:`metric_by_group` side by side, one panel per metric (``metrics``: column → axis label)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8))
    for ax, (metric, label) in zip(axes, metrics.items()):
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
    curve). With an ``outcome`` column (:func:`hessreg.stats.outcomes`), collapsed and diverged runs are marked ×.
    Returns the figure."""
    reg, base_runs = df[df["method"] != baseline], df[df["method"] == baseline]
    panels = [None] if col is None else list(dict.fromkeys(reg[col]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), sharey=True, squeeze=False)
    scale = 100 if metric.endswith("acc") else 1
    hues = list(dict.fromkeys(reg[hue]))
    palette = dict(zip(hues, sns.color_palette("colorblind", len(hues))))
    for ax, panel in zip(axes[0], panels):
        d = reg if panel is None else reg[reg[col] == panel]
        d = d.assign(_y=d[metric] * scale)
        sns.lineplot(data=d, x=x, y="_y", hue=hue, palette=palette, errorbar="sd", marker="o", ax=ax)
        sns.scatterplot(data=d, x=x, y="_y", hue=hue, palette=palette, alpha=0.35, s=14, legend=False, ax=ax)
        if "outcome" in d:  # collapsed (to chance) and diverged runs: marked, never hidden in the mean
            for outcome, marker in (("collapsed", "x"), ("diverged", "X")):
                bad = d[d["outcome"] == outcome]
                if len(bad):
                    ax.scatter(bad[x], bad["_y"], marker=marker, color="k", s=28, zorder=5,
                               label=f"{outcome} ({len(bad)} runs)")
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
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def penalty_trajectories(history: pd.DataFrame):
    """The epoch-mean penalty estimate along training (``history``: :attr:`hessreg.book.ChapterResult.history`
    with labels), one line per run, on a symmetric-log y axis around 0."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    sns.lineplot(data=history, x="epoch", y="penalty", hue="method_label", units="seed", estimator=None, marker="o",
                 ax=ax)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("penalty's trace estimate")
    ax.legend(title=None)
    return fig


def nonzero_fractions(metrics: pd.DataFrame):
    """The fraction of non-zero σ'' against β (log-log), at initialization and after training (``when``), one line
    style per method; ``metrics``: the ``nonzero_d2`` rows of :attr:`hessreg.book.ChapterResult.metrics` with
    labels. Mean ± sd over seeds."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    sns.lineplot(data=metrics, x="beta", y="total", hue="when", style="method_label", errorbar="sd", marker="o",
                 ax=ax)
    ax.set(xscale="log", yscale="log", xlabel="β (β-GELU sharpness)", ylabel="fraction of σ'' ≠ 0")
    return fig


def accuracy_vs_epochs(curve: pd.DataFrame):
    """Test accuracy (%) against the number of epochs (log₂ axis) per activation: mean ± sd, seeds as dots
    (``curve``: :func:`hessreg.calibration.epochs_curve`)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.lineplot(data=curve, x="epochs", y="test_acc_pct", hue="activation", errorbar="sd", marker="o", ax=ax)
    sns.scatterplot(data=curve, x="epochs", y="test_acc_pct", hue="activation", legend=False, alpha=0.4, ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_ylabel("test accuracy (%)")
    return fig


def nme_landscape(fig7, nme_floor: float = 1e-6, band: float = 3.0):
    """Paper A Fig. 7 from :func:`hessreg.landscape.figure7`'s result. 2×2 panels: loss (top, square-root colour scale: colour ∝ |f − y|) and ‖N‖_F (bottom, log colour scale,
    values below ``nme_floor`` × max shown at the floor), ReLU (left) and β-GELU (right); the analytic boundaries
    h_i = 0 as dashed lines, and on the β-GELU NME panel the band edges |h_i| = ``band``/β as dotted lines."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.4), sharex=True, sharey=True, constrained_layout=True)
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
        ax.set_title(f"{r.label}: loss ½(f − y)²")
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
            ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
        ax.set_title(f"{r.label}: NME norm ‖N‖_F")
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
    axes[0, 0].legend(loc="upper left", fontsize=8, framealpha=0.85)
    return fig
