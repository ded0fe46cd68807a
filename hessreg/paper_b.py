"""Paper B's chapters (12–14) in tables: readable method names, each hyperparameter setting's validation and test
accuracy (the selection by validation reads it: :func:`hessreg.rules.select`), the flatness measurements as a
frame and their relative reductions, and the ablation runs of chapter 14 labelled by ablation.

The runs themselves are the grids of :mod:`hessreg.chapters`; the transfer task (pretraining on Fashion-MNIST,
fine-tuning on the UCI digits) is a ``Config`` with ``init="pretrain:…"`` and ``dataset="digits"``.
"""
from __future__ import annotations

import math

import pandas as pd


# ------------------------------------------------------------------------------- selection by validation

def setting_columns(df: pd.DataFrame) -> list[str]:
    """The hyperparameter columns (``hp_*``) that are set for any row of ``df``."""
    return [c for c in df.columns if c.startswith("hp_") and df[c].notna().any()]


def settings_table(df: pd.DataFrame, by: str = "method", metric: str = "val_acc") -> pd.DataFrame:
    """One row per (group, hyperparameter setting): mean ``metric`` over seeds (the selection criterion),
    mean ± sd test accuracy (%), seed count. A setting is named by the group's ``hp_*`` columns that vary in its
    search (all of them when none varies)."""
    rows = []
    for group, d in df.groupby(by, sort=False):
        cols = setting_columns(d)
        varying = [c for c in cols if d[c].nunique(dropna=False) > 1]
        cols = varying or cols  # name a setting by what varies in the group's search
        for setting, s in (d.groupby(cols, dropna=False, sort=True) if cols else [((), d)]):
            setting = setting if isinstance(setting, tuple) else (setting,)
            crit = s[metric].astype(float)
            rows.append({by: group, "setting": ", ".join(f"{c[3:]}={v:g}" if isinstance(v, float) else
                                                          f"{c[3:]}={v}" for c, v in zip(cols, setting)) or "—",
                         f"{metric}_mean": 100 * crit.mean() if crit.notna().any() else math.nan,
                         "val_loss_mean": s["val_loss"].astype(float).mean() if "val_loss" in s else math.nan,
                         "test_acc_mean": 100 * s["test_acc"].mean(), "test_acc_std": 100 * s["test_acc"].std(),
                         "n": len(s), "diverged": int(s["diverged"].sum()), "_keys": list(s["key"])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- flatness

def flatness_frame(records, when: str = "final") -> pd.DataFrame:
    """One row per record with its flatness measurement (``trace``, ``top_eig``, …) taken ``when``, keyed by
    the record's key (join it to ``results.frame``)."""
    rows = []
    for r in records:
        for m in r.metrics:
            if m["when"] == when and m["name"].startswith("nso_flatness") and isinstance(m["value"], dict):
                rows.append({"key": r.key} | {k: v for k, v in m["value"].items()})
    return pd.DataFrame(rows, columns=["key", "trace", "trace_se", "n_probes", "top_eig", "eig_iters",
                                       "n_samples", "batch_size"] if not rows else None)


def reductions(best: pd.DataFrame, method: str, metrics=("trace", "top_eig"), by: str = "method") -> pd.DataFrame:
    """Mean ± sd of each metric per group, and ``method``'s relative change against each group in %:
    100·(m_method / m_group − 1), with a delta-method standard error from the seed spread."""
    g = best.groupby(by, sort=False)[list(metrics)].agg(["mean", "std", "count"])
    rows = []
    for group in g.index:
        row = {by: group}
        for m in metrics:
            mu, sd, n = g.loc[group, (m, "mean")], g.loc[group, (m, "std")], g.loc[group, (m, "count")]
            ref = g.loc[method, (m, "mean")], g.loc[method, (m, "std")], g.loc[method, (m, "count")]
            row |= {f"{m}_mean": mu, f"{m}_std": sd, "n": int(n)}
            if group != method:
                r = ref[0] / mu - 1
                se = abs(ref[0] / mu) * math.sqrt((ref[1] / ref[0]) ** 2 / ref[2] + (sd / mu) ** 2 / n) \
                    if n > 1 and ref[2] > 1 else math.nan
                row |= {f"{m}_change_%": 100 * r, f"{m}_change_se_%": 100 * se}
            else:
                row |= {f"{m}_change_%": 0.0, f"{m}_change_se_%": math.nan}
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- names, chapter 14 ablations

def method_labels(optimizer: str) -> dict[str, str]:
    """Readable method names for Paper B's chapters (the plain method is named after the optimizer)."""
    plain = {"sgd": "SGD", "adam": "Adam", "amsgrad": "Adam (amsgrad)"}.get(optimizer, optimizer)
    return {"sgd": plain, "label_smoothing": "label smoothing", "sam": "SAM", "asam": "ASAM", "rsam": "RSAM",
            "weight_noise": "one-sided noise", "nso": "NSO"}


def matches(df: pd.DataFrame, **equal) -> pd.Series:
    """Rows whose columns equal the given values (a missing column matches nothing)."""
    mask = pd.Series(True, index=df.index)
    for col, value in equal.items():
        mask &= (df[col] == value) if col in df else False
    return mask


def ablation_frame(df: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Chapter 14's runs, one row per (run, ablation it belongs to) with ``ablation`` ∈ {plain, sides, k,
    weight decay} and a readable ``variant``; a run shared by several ablations appears once in each."""
    plain = method_labels(p["optimizer"])["sgd"]
    full, wd0, nso = df["epochs"] == p["epochs"], df["weight_decay"] == p["weight_decay"], df["method"] == "nso"
    two = matches(df, hp_two_sided=True)
    parts = [
        df[(df["method"] == "sgd") & full & wd0].assign(ablation="plain", variant=plain),
        df[nso & full & wd0 & two & matches(df, hp_k=1)].assign(ablation="sides", variant="NSO two-sided, k = 1"),
        df[nso & full & wd0 & matches(df, hp_two_sided=False, hp_k=2)].assign(ablation="sides",
                                                                             variant="one-sided noise, k = 2"),
    ]
    for k in p["ks"]:
        d = df[nso & wd0 & two & matches(df, hp_k=k, hp_sigma=p["sigma"], epochs=max(1, p["epochs"] // k))]
        parts.append(d.assign(ablation="k", variant=f"NSO k = {k}"))
    wd = df["weight_decay"].isin(p["weight_decays"]) & full
    parts.append(df[wd & nso & two & matches(df, hp_k=1, hp_sigma=p["sigma"])].assign(ablation="weight decay",
                                                                                      variant="NSO"))
    parts.append(df[wd & (df["method"] == "sgd")].assign(ablation="weight decay", variant=plain))
    return pd.concat(parts, ignore_index=True)


def best_weight_decay(df: pd.DataFrame, metric: str = "val_acc") -> float:
    """The non-zero weight decay of NSO's weight-decay ablation with the best mean validation accuracy."""
    d = df[(df["ablation"] == "weight decay") & (df["method"] == "nso") & (df["weight_decay"] > 0)]
    if d.empty:
        raise ValueError("the weight-decay ablation has no NSO run with weight decay > 0")
    return float(d.groupby("weight_decay")[metric].mean().fillna(-math.inf).idxmax())
