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


def metric_vs(df: pd.DataFrame, x: str, hue: str | None = None, metric: str = "test_acc", ax=None,
              logx: bool = True, baseline: pd.Series | None = None, ylabel: str | None = None):
    """Metric against a hyperparameter (log axis), one line per ``hue``, mean ± sd band, seeds as dots;
    ``baseline`` (e.g. SGD's accuracies) as a horizontal line with its ± sd band."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    scale = 100 if metric.endswith("acc") else 1
    d = df.assign(_y=df[metric] * scale)
    sns.lineplot(data=d, x=x, y="_y", hue=hue, ax=ax, errorbar="sd", marker="o")
    sns.scatterplot(data=d, x=x, y="_y", hue=hue, ax=ax, alpha=0.4, legend=False, s=12)
    if baseline is not None and len(baseline):
        m, s = baseline.mean() * scale, baseline.std() * scale if len(baseline) > 1 else 0.0
        ax.axhline(m, color="k", ls="--", lw=1, label="SGD")
        ax.axhspan(m - s, m + s, color="k", alpha=0.08)
        ax.legend()
    if logx:
        ax.set_xscale("log")
    ax.set_ylabel(ylabel or ("test accuracy (%)" if metric == "test_acc" else metric))
    return ax
