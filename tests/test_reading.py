"""The book as a reader sees it: results tables with labelled columns and numbers to what the seeds resolve
(:func:`hessreg.plots.table`), figures as wide as the content column with legible legends and every failed run
marked and named. The rendered pages themselves are checked in Chromium (tests_browser/test_pages.mjs)."""
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hessreg import landscape, plots, stats  # noqa: E402


def runs(n_seeds: int = 3) -> pd.DataFrame:
    """A small sweep as :meth:`hessreg.book.ChapterResult.outcomes` gives it: SGD, and SAM at two ρ, two
    activations; SAM with ReLU at ρ = 1 collapses once and diverges once (no accuracy)."""
    rng = np.random.default_rng(0)
    rows = []
    for act in ("relu", "gelu"):
        for seed in range(n_seeds):
            rows.append(dict(method="sgd", activation=act, hp_rho=np.nan, seed=seed, test_acc=0.86 + 0.001 * seed))
            for rho in (0.1, 1.0):
                rows.append(dict(method="sam", activation=act, hp_rho=rho, seed=seed,
                                 test_acc=0.85 - 0.05 * rho + 0.002 * rng.standard_normal()))
    df = pd.DataFrame(rows).assign(diverged=False)
    bad = df.index[(df["method"] == "sam") & (df["activation"] == "relu") & (df["hp_rho"] == 1.0)]
    df.loc[bad[0], "test_acc"] = 0.1
    df.loc[bad[1], ["test_acc", "diverged"]] = [np.nan, True]
    return stats.outcomes(plots.with_labels(df))


def cells(styler) -> list[list[str]]:
    return styler.data.values.tolist()


def test_summary_table_reads_like_a_paper_table():
    df = runs()
    t = plots.table(stats.summary(df, ["method_label", "activation_label", "hp_rho"]))
    assert list(t.data.columns) == ["method", "activation", "ρ", "test accuracy % (mean ± sd)", "seeds",
                                    "seeds healthy / collapsed / recovered / diverged"]
    html = t.to_html()
    assert "row_heading" not in html and "blank" not in html  # no index column
    assert 'class="dataframe reader-table"' in html
    assert html == plots.table(stats.summary(df, ["method_label", "activation_label", "hp_rho"])).to_html()
    rows = {(r[0], r[1], r[2]): r[3:] for r in cells(t)}
    assert rows[("SGD", "ReLU", "—")][0] == f"{86.1:.2f} ± {0.1:.2f}"  # SGD has no ρ; 2 decimals of %
    assert rows[("SAM", "ReLU", "1")][2] == "1/1/0/1"
    assert all(re.fullmatch(r"\d+\.\d{2}( ± \d+\.\d{2})?", r[3]) for r in cells(t))


def test_percentages_keep_one_decimal_when_the_seeds_spread_by_points():
    frame = pd.DataFrame({"variant": ["a", "b"], "epochs": [30, 15], "mean": [81.864, 91.29],
                          "std": [2.8, 1.9], "n": [5, 5]})
    assert cells(plots.table(frame)) == [["a", "30", "81.9 ± 2.8", "5"], ["b", "15", "91.3 ± 1.9", "5"]]
    one_seed = frame.assign(std=np.nan, n=1)  # nothing to resolve against: 2 decimals, no "± nan"
    assert [r[2] for r in cells(plots.table(one_seed))] == ["81.86", "91.29"]


def test_grouped_frames_settings_and_relative_changes():
    df = runs()
    g = df.groupby(["method_label", "hp_rho"])["test_acc"].agg(["mean", "std", "count"])
    t = plots.table(g, "test accuracy (fraction)")
    assert list(t.data.columns) == ["method", "ρ", "test accuracy (fraction) (mean ± sd)", "seeds"]
    assert re.fullmatch(r"0\.\d+ ± 0\.\d+", cells(t)[0][2])  # two significant digits of the typical sd
    settings = pd.DataFrame({"method": ["SAM", "NSO"], "setting": ["rho=0.05", "sigma=0.01, k=2"],
                             "val_acc_mean": [95.3, 96.0], "test_acc_mean": [95.63, 96.11],
                             "test_acc_std": [0.56, 0.29], "n": [5, 5], "diverged": [0, 0], "_keys": [[1], [2]]})
    t = plots.table(settings)
    assert list(t.data.columns) == ["method", "setting", "validation accuracy % (mean)",
                                    "test accuracy % (mean ± sd)", "seeds", "seeds diverged"]
    assert cells(t)[1][:4] == ["NSO", "σ = 0.01, k = 2", "96.00", "96.11 ± 0.29"]
    change = pd.DataFrame({"method": ["SAM", "NSO"], "trace_mean": [139.662, 198.832], "trace_std": [12.85, 26.95],
                           "n": [5, 5], "trace_change_%": [42.367, 0.0], "trace_change_se_%": [10.43, np.nan]})
    t = plots.table(change)
    assert list(t.data.columns) == ["method", "Hessian trace (mean ± sd)", "seeds",
                                    "Hessian trace: change, NSO vs method, % (± se)"]
    assert cells(t) == [["SAM", "140 ± 13", "5", "42.4 ± 10.4"], ["NSO", "199 ± 27", "5", "0.0"]]


def legend_texts(fig):
    return [t for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
            for t in legend.get_texts()]


def figures():
    """Each figure function of the book, on small data (built when called)."""
    df = runs()
    hist = pd.DataFrame({"epoch": [1, 2, 1, 2], "penalty": [3.0, -40.0, 2.0, 1.5], "seed": [0, 0, 0, 0],
                         "method_label": ["Hessian-trace penalty"] * 2 + ["GN-trace penalty"] * 2})
    nonzero = pd.DataFrame({"beta": [1.0, 10.0] * 2, "total": [1.0, 0.8, 1.0, 0.9], "when": ["init"] * 2 + ["final"] * 2,
                            "method_label": ["SGD"] * 4, "method": ["sgd"] * 4})
    return {"curves, two panels": lambda: plots.curves(df, x="hp_rho", hue="method_label", col="activation_label"),
            "curves, one panel": lambda: plots.curves(df, x="hp_rho", hue="activation_label"),
            "metric_by_group": lambda: plots.metric_by_group(df, "activation_label", rotate=30).figure,
            "metric_panels": lambda: plots.metric_panels(df.assign(acc2=df["test_acc"]), "method_label",
                                                         {"test_acc": "a", "acc2": "b"}, rotate=30),
            "penalty_trajectories": lambda: plots.penalty_trajectories(hist),
            "nonzero_fractions": lambda: plots.nonzero_fractions(nonzero)}


LEGENDS = {"curves, two panels", "curves, one panel", "penalty_trajectories", "nonzero_fractions"}


@pytest.mark.parametrize("name", list(figures()))
def test_figures_fit_the_column_with_legible_legends(name, tmp_path):
    plots.style()
    fig = figures()[name]()
    assert fig.get_size_inches()[0] == pytest.approx(plots.WIDTH)
    fig.savefig(tmp_path / "f.png", dpi=100, bbox_inches="tight")  # what the book shows (inline backend)
    width = plt.imread(tmp_path / "f.png").shape[1]
    assert 0.85 * 100 * plots.WIDTH <= width <= 1.05 * 100 * plots.WIDTH, f"{name}: {width} px"
    texts = legend_texts(fig)
    assert bool(texts) == (name in LEGENDS), name
    assert all(t.get_fontsize() >= 9 for t in texts), name
    plt.close("all")


def test_failed_runs_are_marked_and_named():
    fig = plots.curves(runs(), x="hp_rho", hue="method_label", col="activation_label")
    labels = [t.get_text() for t in legend_texts(fig)]
    assert "collapsed: 1 run" in labels and "diverged: 1 run" in labels
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)  # one legend, under the panels
    marks = [c for ax in fig.axes for c in ax.collections if c.get_label() == "diverged: 1 run"]
    assert len(marks) == 1
    (x, y), = marks[0].get_offsets()
    assert (x, y) == (1.0, stats.CHANCE)  # no accuracy: drawn at chance, not dropped
    plt.close("all")


def test_the_landscape_figure_fits_the_column(tmp_path):
    fig7 = landscape.figure7(dict(scale="smoke", device="cpu", seed=0, hidden=3, weights=[[0, 0], [1, 0]],
                                  target=-1.5, grid_points=30, extent=2.0, beta=10.0, betas=[10.0]))
    fig = plots.nme_landscape(fig7)
    assert fig.get_size_inches()[0] == pytest.approx(plots.WIDTH)
    fig.savefig(tmp_path / "f.png", dpi=100, bbox_inches="tight")
    assert plt.imread(tmp_path / "f.png").shape[1] <= 1.05 * 100 * plots.WIDTH
    texts = legend_texts(fig)
    assert texts and all(t.get_fontsize() >= 9 for t in texts)
    plt.close("all")


def test_curvature_tables_show_each_trace_with_its_standard_error():
    """The report's traces as a reader table: model and layer as columns, "trace ± se" to the se's resolution
    (two significant digits of the typical se), the NME's share, and the eigenvalues to 3 significant digits."""
    index = pd.MultiIndex.from_tuples([("relu", "1"), ("relu", "total"), ("gelu", "1"), ("gelu", "total")],
                                      names=["model", "layer"])
    traces = pd.DataFrame({"tr H": [57.4723, 184.1178, 78.8328, 230.0], "± H": [1.986, 6.67, 2.81, 7.0],
                           "tr G": [57.4723, 184.1178, 59.8614, 200.0], "± G": [1.986, 6.67, 2.51, 6.0],
                           "tr N": [0.0, 0.0, 18.9713, 30.0], "± N": [0.0, 0.0, 0.7269, 1.2]}, index=index)
    traces["tr N / tr H"] = traces["tr N"] / traces["tr H"]
    eig = pd.DataFrame({"λ1(H)": [35.40304, 44.544578], "λ1(G)": [35.377941, 44.466225]}, index=["relu", "gelu"])
    t, e = plots.curvature_tables(traces, eig)
    shown, top = t.data, e.data
    assert list(shown.columns) == ["model", "layer", "tr H (± se)", "tr G (± se)", "tr N (± se)", "tr N / tr H"]
    assert shown["tr H (± se)"].tolist() == ["57.5 ± 2.0", "184.1 ± 6.7", "78.8 ± 2.8", "230.0 ± 7.0"]
    assert shown["tr N / tr H"].tolist() == ["0.00", "0.00", "0.24", "0.13"]
    assert top.to_dict("list") == {"model": ["relu", "gelu"], "λ1(H)": ["35.4", "44.5"], "λ1(G)": ["35.4", "44.5"]}
    assert "index" not in t.to_html() and "reader-table" in t.to_html()
