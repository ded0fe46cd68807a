"""The book's figures: seaborn, mean ± standard deviation over seeds, every seed visible."""
from __future__ import annotations


import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def metric_by_group(df: pd.DataFrame, x: str, metric: str = "test_acc", order=None, ax=None,
                    ylabel: str | None = None):
    """Mean ± sd per category (points with error bars) over the individual seeds (dots)."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    scale = 100 if metric.endswith("acc") else 1
    d = df.assign(_y=df[metric] * scale)
    sns.stripplot(data=d, x=x, y="_y", order=order, ax=ax, color="0.5", alpha=0.6, size=4, jitter=0.1)
    sns.pointplot(data=d, x=x, y="_y", order=order, ax=ax, errorbar="sd", linestyle="none", capsize=0.2,
                  markers="D", color="C0")
    ax.set_ylabel(ylabel or ("test accuracy (%)" if metric == "test_acc" else metric))
    ax.set_xlabel("")
    return ax


METHOD_LABELS = {"sgd": "SGD", "sam": "SAM", "asam": "ASAM", "psam": "PSAM", "pusam": "PUSAM",
                 "gn_psam": "GN-PSAM (NME ablated)", "weight_noise": "weight noise",
                 "hessian_trace": "Hessian-trace penalty", "gn_trace": "GN-trace penalty",
                 "gn_trace_hutchinson": "GN-trace penalty (Hutchinson)", "nso": "NSO",
                 "label_smoothing": "label smoothing"}
ACTIVATION_LABELS = {"relu": "ReLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh)", "beta_gelu": "β-GELU",
                     "gelu_nme_ablated": "GELU, activation NME ablated", "relu_synthetic_nme": "ReLU + synthetic NME"}


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add readable ``method_label`` and ``activation_label`` columns (β shown where it matters)."""
    act = [ACTIVATION_LABELS.get(a, a) + (f" (β={b:g})" if a in ("beta_gelu", "relu_synthetic_nme") else "")
           for a, b in zip(df["activation"], df.get("beta", [None] * len(df)))]
    return df.assign(method_label=df["method"].map(lambda m: METHOD_LABELS.get(m, m)), activation_label=act)


def curves(df: pd.DataFrame, x: str, hue: str, col: str | None = None, metric: str = "test_acc",
           xlabel: str | None = None, logx: bool = True, baseline: str | None = "sgd"):
    """Paper-style sweep figure: ``metric`` vs ``x`` (log axis) for every ``hue`` (mean ± sd over seeds, seeds as
    dots), one panel per ``col``; runs of the ``baseline`` method (SGD) drawn as dashed lines with ± sd bands,
    one per activation in the panel (``baseline=None``: every method is a curve). Returns the figure."""
    reg, sgd = df[df["method"] != baseline], df[df["method"] == baseline]
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
        for i, act in enumerate(dict.fromkeys(d["activation"])):
            base = sgd[sgd["activation"] == act][metric] * scale
            if len(base):
                m, s = base.mean(), base.std() if len(base) > 1 else 0.0
                ax.axhline(m, color="0.3", ls=("--", ":", "-.")[i % 3], lw=1,
                           label=f"SGD, {ACTIVATION_LABELS.get(act, act)}")
                ax.axhspan(m - s, m + s, color="0.3", alpha=0.07)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel("test accuracy (%)" if metric == "test_acc" else metric)
        ax.set_title("" if panel is None else str(panel))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
