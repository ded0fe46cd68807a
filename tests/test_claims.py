"""Every verdict rule on synthetic run frames with the outcome asserted: a collapsed seed, a NaN seed, one seed, a
missing cell, identical arms, a real effect (hessreg.stats and hessreg.claims)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from hessreg import claims, rules
from hessreg.stats import Interval, compare, control, equivalent, outcomes, slope, stable, summary


def frame(cells: dict[tuple[str, float], list[float]], diverged: dict | None = None) -> pd.DataFrame:
    """One row per (arm, ρ, seed); accuracies given in %, stored as fractions like real records."""
    rows = []
    for (arm, rho), accs in cells.items():
        for seed, a in enumerate(accs):
            rows.append({"arm": arm, "hp_rho": rho, "seed": seed, "test_acc": a / 100, "key": f"{arm}{rho}{seed}",
                         "diverged": bool((diverged or {}).get((arm, rho, seed), False))})
    return pd.DataFrame(rows)


def arms(d):
    return (d["arm"] == "a"), (d["arm"] == "b")


def run_compare(cells, **kw):
    d = outcomes(frame(cells, kw.pop("diverged", None)))
    a, b = arms(d)
    values = kw.pop("values", sorted({rho for _, rho in cells}))
    return compare(d, a, b, "hp_rho", values, "test", **kw)


def test_interval_uses_student_t():
    iv = Interval.of([1.0, 2.0, 3.0])
    assert iv.se == pytest.approx(1 / math.sqrt(3))
    assert iv.hi95 - iv.mean == pytest.approx(st.t.ppf(0.975, 2) * iv.se)  # 4.30, not 2
    assert st.t.ppf(0.975, 2) == pytest.approx(4.303, abs=1e-3)


def test_outcomes_classify_before_any_statistic():
    d = outcomes(pd.DataFrame({"test_acc": [0.86, 0.10, 0.14, np.nan, 0.80], "diverged": [0, 0, 0, 0, 1]}),
                 chance_margin=5.0)
    assert list(d["outcome"]) == ["healthy", "collapsed", "collapsed", "diverged", "diverged"]
    assert list(d["acc"]) == [86.0, 10.0, 10.0, 10.0, 10.0]  # NaN counts at chance, never dropped


def test_outcomes_read_the_whole_trajectory():
    """Training accuracy at chance for ≥ collapse_epochs epochs, then a partial recovery: not healthy."""
    curves = [[0.6, 0.7, 0.8], [0.5, 0.11, 0.1, 0.12, 0.4, 0.6], [0.5, 0.11, 0.1, 0.4, 0.6], [0.1, 0.1, 0.1, 0.1]]
    d = outcomes(pd.DataFrame({"test_acc": [0.86, 0.62, 0.63, 0.10], "diverged": [False] * 4, "train_accs": curves}),
                 chance_margin=5.0, collapse_epochs=3)
    assert list(d["outcome"]) == ["healthy", "recovered", "healthy", "collapsed"]  # 3 epochs stuck; 2 is not
    assert list(d["acc"]) == [86.0, 62.0, 63.0, 10.0]  # a recovered run keeps its accuracy, a collapse is chance


def test_real_effect_is_reproduced():
    v = run_compare({("a", 1.0): [80, 81, 79, 80.5, 79.5], ("b", 1.0): [86, 86.2, 85.8, 86.1, 85.9]})
    assert v.status == "reproduced" and v.effect == pytest.approx(-6.0)


def test_identical_arms_are_not_reproduced_only_when_the_interval_excludes_the_effect_of_interest():
    same = [86.0, 86.3, 85.9, 86.1, 86.2]
    assert run_compare({("a", 1.0): same, ("b", 1.0): same}, min_effect=1.0).status == "not reproduced"


def test_zero_difference_with_a_huge_spread_is_inconclusive_not_a_failure():
    # D = 0 but SE = 14 pp: the old rule said "not reproduced"
    v = run_compare({("a", 1.0): [86, 40, 86, 40], ("b", 1.0): [40, 86, 40, 86]}, min_effect=1.0)
    assert v.effect == pytest.approx(0.0) and v.status == "inconclusive"


def test_one_seed_is_inconclusive():
    assert run_compare({("a", 1.0): [50.0], ("b", 1.0): [86.0]}).status == "inconclusive"


def test_a_collapsed_seed_that_is_the_effect_still_reproduces():
    # a true −2 pp effect where one seed of arm a collapsed to chance: paired, it counts at 10 %
    v = run_compare({("a", 1.0): [84.0, 84.2, 10.0, 83.9, 84.1], ("b", 1.0): [86.0, 86.1, 86.2, 85.9, 86.0]})
    # graded among the 4 seeds healthy in both arms: the −2 pp holds; the one collapse is counted, and one failure
    # in five is no failure-rate finding
    assert v.status == "reproduced" and v.effect == pytest.approx(-1.95, abs=0.1)
    assert "a — 1: 4/1/0/0" in v.counts and "failures a 1/5, b 0/5" in v.failure


def test_nan_seed_is_a_failure_not_dropped():
    cells = {("a", 1.0): [70.0, 71.0, float("nan")], ("b", 1.0): [86.0, 86.0, 86.0]}
    v = run_compare(cells)  # 2 healthy pairs: too few for a graded test; the NaN run is counted as a failure
    assert "2/0/0/1" in v.counts and "failures a 1/3" in v.failure and v.status == "inconclusive"
    assert "not testable" in v.statistic


def test_cells_where_both_arms_collapse_in_every_seed_are_left_out():
    cells = {("a", 0.5): [80.0, 80.5, 79.5], ("b", 0.5): [86.0, 86.5, 85.5],
             ("a", 1.0): [10.0, 10.0, 10.0], ("b", 1.0): [10.0, 10.0, 10.0]}
    v = run_compare(cells)
    assert v.effect == pytest.approx(-6.0) and "not testable" in v.statistic and v.status == "reproduced"


def test_all_collapsed_is_inconclusive_never_reproduced_by_negation():
    cells = {("a", 1.0): [10.0] * 3, ("b", 1.0): [10.0] * 3}
    assert run_compare(cells).status == "inconclusive"
    d = outcomes(frame(cells))
    a, b = arms(d)
    # equivalence of two collapsed arms is a real agreement (both at chance) — it is reported as such
    assert equivalent(d, a, b, "hp_rho", [1.0], "eq", tolerance=2.0).counts.count("0/3/0/0") == 2


def test_a_degradation_seen_only_through_failures_is_its_own_status():
    """No graded loss among runs that train (a ≈ b at ρ = 0.5), but arm a collapses in every seed at ρ = 1:
    'reproduced as training failure', and a claim made of it says so."""
    healthy = [86.0, 86.1, 85.9, 86.2, 86.0]
    cells = {("a", 0.5): healthy, ("b", 0.5): healthy, ("a", 1.0): [10.0] * 5, ("b", 1.0): [80, 80.5, 79.5, 80.2, 79.8]}
    v = run_compare(cells, min_effect=1.0)
    assert v.status == "reproduced as training failure"
    assert "→ not reproduced" in v.statistic and "failures a 5/10, b 0/10" in v.failure and "more failures" in v.failure
    d = frame({("a", 1.0): [80.0]})
    assert claims.CLAIMS["A1"].judge(result(d), v).status == "reproduced as training failure"
    good = run_compare({("a", 1.0): [80, 81, 79], ("b", 1.0): [86, 86.2, 85.8]})
    assert claims.CLAIMS["A1"].judge(result(d), v, good).status == "reproduced as training failure"
    assert claims.CLAIMS["A1"].judge(result(d), good).status == "reproduced"


def test_a_missing_cell_is_not_evaluated():
    cells = {("a", 0.5): [80.0, 81.0], ("b", 0.5): [86.0, 86.0], ("a", 1.0): [80.0, 81.0]}
    v = run_compare(cells, values=[0.5, 1.0])
    assert v.status == "not evaluated" and "missing" in v.statistic
    cells[("b", 1.0)] = [86.0]  # one seed short
    assert run_compare(cells, values=[0.5, 1.0]).status == "not evaluated"


def test_a_graded_effect_must_hold_at_each_value():
    cells = {("a", 0.1): [86.0, 86.1, 85.9], ("b", 0.1): [86.0, 86.1, 85.9],
             ("a", 1.0): [80.0, 80.5, 79.5], ("b", 1.0): [86.0, 86.5, 85.5]}
    assert run_compare(cells).status == "not reproduced"  # no effect at ρ = 0.1
    assert run_compare(cells, values=[1.0]).status == "reproduced"


def test_direction_above():
    v = run_compare({("a", 1.0): [86, 86.2, 85.8], ("b", 1.0): [80, 80.1, 79.9]}, direction="above")
    assert v.status == "reproduced"


def test_midpoint_arm_tests_closer_to_one_than_the_other():
    d = outcomes(frame({("a", 1.0): [62.0, 64, 63], ("relu", 1.0): [60.0, 61, 59], ("gelu", 1.0): [76.0, 75, 77]}))
    mid = [d["arm"] == "relu", d["arm"] == "gelu"]
    assert compare(d, d["arm"] == "a", mid, "hp_rho", [1.0], "like ReLU").status == "reproduced"
    # with ReLU collapsed, "like ReLU" is a failure, not a graded position between the two: not graded
    d = outcomes(frame({("a", 1.0): [20.0, 22, 21], ("relu", 1.0): [10.0, 10, 10], ("gelu", 1.0): [76.0, 75, 77]}))
    mid = [d["arm"] == "relu", d["arm"] == "gelu"]
    assert compare(d, d["arm"] == "a", mid, "hp_rho", [1.0], "like ReLU").status == "inconclusive"


@pytest.mark.parametrize("shift, expected", [(0.0, "reproduced"), (3.0, "not reproduced"),
                                             (-3.0, "not reproduced")])
def test_equivalence_two_sided(shift, expected):
    rng = np.random.default_rng(0)
    base = 86 + rng.normal(0, 0.2, 5)
    d = outcomes(frame({("a", 1.0): list(base + shift + rng.normal(0, 0.1, 5)), ("b", 1.0): list(base)}))
    a, b = arms(d)
    assert equivalent(d, a, b, "hp_rho", [1.0], "eq", tolerance=1.0).status == expected


def test_equivalence_needs_the_contrast_to_fail():
    """GELU: PSAM ≈ SAM is only evidence if ReLU, the contrast, does not pass the same test."""
    d = outcomes(frame({("a", 1.0): [86.0, 86.1, 85.9], ("b", 1.0): [86.1, 86.0, 85.9],
                        ("ra", 1.0): [86.0, 86.2, 85.8], ("rb", 1.0): [86.1, 86.0, 85.9],
                        ("ca", 1.0): [40.0, 45.0, 42.0]}))
    is_ = lambda arm: d["arm"] == arm  # noqa: E731
    assert equivalent(d, is_("a"), is_("b"), "hp_rho", [1.0], "eq", tolerance=2.0).status == "reproduced"
    v = equivalent(d, is_("a"), is_("b"), "hp_rho", [1.0], "eq", tolerance=2.0, contrast=(is_("ra"), is_("rb"), "ReLU"))
    assert v.status == "inconclusive" and "cannot tell them apart" in v.statistic
    v = equivalent(d, is_("a"), is_("b"), "hp_rho", [1.0], "eq", tolerance=2.0, contrast=(is_("ca"), is_("rb"), "ReLU"))
    assert v.status == "reproduced" and "→ fails" in v.statistic


def test_a_benefit_claim_without_its_positive_control_is_not_testable():
    d = outcomes(frame({("m", 1.0): [86.0, 86.1, 85.9], ("sgd", 1.0): [86.1, 86.0, 85.95],
                        ("h", 1.0): [80.0, 80.5, 79.5]}))
    is_ = lambda arm: d["arm"] == arm  # noqa: E731
    ctrl = control(d, is_("m"), is_("sgd"), "hp_rho", [1.0], "control")
    assert ctrl.control and ctrl.status == "not reproduced"
    degrades = compare(d, is_("h"), is_("m"), "hp_rho", [1.0], "h below m")
    assert degrades.status == "reproduced"
    v = claims.CLAIMS["A4"].judge(result(frame({("a", 1.0): [80.0]})), ctrl, degrades)
    assert v.status == "not testable" and "positive control not met: control" in v.statistic
    helps = control(d, is_("m"), is_("h"), "hp_rho", [1.0], "control")  # +6 pp: the benefit exists
    assert claims.CLAIMS["A4"].judge(result(frame({("a", 1.0): [80.0]})), helps, degrades).status == "reproduced"


def test_equivalence_above_is_not_equal():
    # PSAM 3 pp *above* SAM passed the old "not below" rule
    d = outcomes(frame({("a", 1.0): [89.0, 89.1, 88.9, 89.2], ("b", 1.0): [86.0, 86.1, 85.9, 86.2]}))
    a, b = arms(d)
    assert equivalent(d, a, b, "hp_rho", [1.0], "eq", tolerance=2.0).status == "not reproduced"


def slopes_frame(acc):
    rows = [{"beta": b, "seed": s, "test_acc": acc(b, s) / 100, "diverged": False, "key": f"{b}{s}"}
            for b in (1.0, 10.0, 100.0, 1000.0, 10000.0, 30.0, 3.0) for s in range(3)]
    return outcomes(pd.DataFrame(rows))


def test_flat_in_beta_is_a_slope_and_identical_means_are_flat():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.15, (100, 3))
    d = slopes_frame(lambda b, s: 86 + noise[int(b) % 100, s])
    all_rows = pd.Series(True, index=d.index)
    assert slope(d, all_rows, "beta", "flat", tolerance=0.5).status == "reproduced"
    d = slopes_frame(lambda b, s: 86 - 2 * math.log10(b) + 0.1 * s)
    assert slope(d, all_rows, "beta", "flat", tolerance=0.5).status == "not reproduced"
    assert slope(d, all_rows, "beta", "falls", direction="below").status == "reproduced"


def test_stable_counts_collapses():
    d = outcomes(frame({("a", 1.0): [86.0, 85.0, 12.0]}))
    assert stable(d, d["arm"] == "a", "hp_rho", "stable").status == "not reproduced"
    d = outcomes(frame({("a", 1.0): [86.0, 85.0, 84.0]}))
    assert stable(d, d["arm"] == "a", "hp_rho", "stable").status == "reproduced"


def result(d, scale="cpu", missing=0):
    d = d.copy()
    d.attrs.update(requested=len(d) + missing, missing=missing)
    return SimpleNamespace(scale=scale, frame=d)


def test_judge_smoke_missing_and_composition():
    claim = claims.CLAIMS["A1"]
    good = run_compare({("a", 1.0): [80, 81, 79], ("b", 1.0): [86, 86.2, 85.8]})
    bad = run_compare({("a", 1.0): [86.0, 86.1, 85.9], ("b", 1.0): [86.0, 86.1, 85.9]})
    d = frame({("a", 1.0): [80.0]})
    assert claim.judge(result(d, "smoke"), good).status == "not evaluated"
    missing = claim.judge(result(d, missing=3), good)
    assert missing.status == "not evaluated" and "3 missing" in missing.statistic
    assert claim.judge(result(d), good).status == "reproduced"
    assert claim.judge(result(d), good, bad).status == "not reproduced"
    v = claim.judge(result(d), good)
    assert "±" in v.effect and claim.paper in v.markdown()


def test_verdict_saves_strict_json(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSREG_VERDICTS", str(tmp_path))
    d = frame({("a", 1.0): [80.0]})
    v = claims.CLAIMS["A1"].judge(result(d), run_compare({("a", 1.0): [80.0], ("b", 1.0): [86.0]}))
    path = v.save("02_sam_vs_psam")
    assert '"status": "inconclusive"' in path.read_text()


def history(seeds_traces):
    rows = []
    for method, traces in seeds_traces.items():
        for seed, trace in enumerate(traces):
            rows += [{"method": method, "seed": seed, "epoch": e + 1, "penalty": p, "penalty_sd": 10.0,
                      "penalty_steps": 100} for e, p in enumerate(trace)]
    return pd.DataFrame(rows)


def test_trace_negative_needs_large_and_significant_negative_values_in_every_seed():
    runs = outcomes(pd.DataFrame({"method": ["hessian_trace"] * 3 + ["gn_trace"] * 3, "seed": [0, 1, 2] * 2,
                                  "test_acc": [0.8] * 6, "diverged": [False] * 6, "key": list("abcdef")}))
    gn = [[5.0, 6.0, 7.0]] * 3
    yes = history({"hessian_trace": [[50.0, -200.0, -900.0]] * 3, "gn_trace": gn})
    h, g = rules.trace_negative(yes, runs, "hessian_trace", "gn_trace", "A6")
    assert h.status == "reproduced" and g.status == "reproduced"
    tiny = history({"hessian_trace": [[50.0, -1e-9, 3.0]] * 3, "gn_trace": gn})  # −1e-9 is noise, not a fall
    assert rules.trace_negative(tiny, runs, "hessian_trace", "gn_trace", "A6")[0].status == "not reproduced"
    blind = history({"hessian_trace": [[50.0, -900.0]] * 2, "gn_trace": gn})  # seed 2 diverged in epoch 1
    assert rules.trace_negative(blind, runs, "hessian_trace", "gn_trace", "A6")[0].status == "inconclusive"


def test_fraction_slopes_count_the_initial_measurement_once():
    rows = []
    for method in ("sgd", "psam"):
        for s in range(3):
            for b in (1.0, 10.0, 100.0, 1000.0):
                rows.append({"method": method, "seed": s, "beta": b, "when": "init", "name": "nonzero_d2",
                             "total": 0.9 / b ** 0.5})
                rows.append({"method": method, "seed": s, "beta": b, "when": "final", "name": "nonzero_d2",
                             "total": 0.9 / b ** (0.9 + 0.01 * s)})
    p1, p2 = rules.fraction_slopes(pd.DataFrame(rows), "sgd")
    assert p1.status == "reproduced" and p2.status == "reproduced"
    assert "n = 3 seeds" in p2.statistic  # not 6


def nso_frame(nso_acc, rival_acc, diverged_rival_setting=False):
    rows = []
    for seed in range(4):
        rows.append({"method": "nso", "hp_sigma": 0.01, "seed": seed, "val_acc": 0.95, "test_acc": nso_acc[seed],
                     "diverged": False, "key": f"n{seed}"})
        for rho, val in ((0.01, 0.94), (0.05, 0.99)):
            rows.append({"method": "sam", "hp_rho": rho, "seed": seed, "val_acc": val,
                         "test_acc": rival_acc[seed] + (0.002 if rho == 0.05 else 0),
                         "diverged": diverged_rival_setting and rho == 0.05 and seed == 0, "key": f"s{rho}{seed}"})
    return outcomes(pd.DataFrame(rows))


def test_select_counts_a_setting_with_a_diverged_seed_as_minus_infinity():
    best = rules.select(nso_frame([0.9] * 4, [0.8] * 4, diverged_rival_setting=True))
    assert set(best.loc[best["method"] == "sam", "hp_rho"]) == {0.01}
    best = rules.select(nso_frame([0.9] * 4, [0.8] * 4))
    assert set(best.loc[best["method"] == "sam", "hp_rho"]) == {0.05}  # on validation, never on test


def test_beats_best_paired_by_seed():
    best = rules.select(nso_frame([0.90, 0.91, 0.905, 0.9], [0.80, 0.81, 0.80, 0.805]))
    assert rules.beats_best(best, "nso", "B1").status == "reproduced"
    best = rules.select(nso_frame([0.80, 0.81, 0.80, 0.805], [0.80, 0.81, 0.80, 0.805]))
    assert rules.beats_best(best, "nso", "B1", min_effect=0.5).status == "not reproduced"


def test_flatter_against_every_method_with_a_sign_check():
    rows = [{"method": m, "seed": s, "trace": t + 0.1 * s, "top_eig": e}
            for m, t, e in (("nso", 80.0, 8.0), ("sam", 100.0, 10.0), ("sgd", 120.0, -1.0)) for s in range(3)]
    best = pd.DataFrame(rows)
    assert rules.flatter(best, "nso", "trace", "B2").status == "reproduced"
    assert rules.flatter(best, "nso", "top_eig", "B2").status == "inconclusive"  # SGD's λ is negative


def test_select_uses_validation_not_test():
    rows = [("sam", 0.1, 0, 0.90, 0.70), ("sam", 0.1, 1, 0.88, 0.71),  # best validation, worse test
            ("sam", 0.2, 0, 0.80, 0.95), ("sam", 0.2, 1, 0.82, 0.96),
            ("sgd", None, 0, 0.70, 0.60), ("sgd", None, 1, 0.71, 0.61),
            ("nso", 0.1, 0, float("nan"), 0.99), ("nso", 0.1, 1, float("nan"), 0.99),  # no validation value
            ("nso", 0.3, 0, 0.50, 0.30), ("nso", 0.3, 1, 0.50, 0.30)]
    df = pd.DataFrame([dict(zip(["method", "hp_rho", "seed", "val_acc", "test_acc"], r)) | {"diverged": False}
                       for r in rows]).assign(key=lambda d: [f"k{i}" for i in range(len(d))])
    best = rules.select(outcomes(df))
    assert set(best.loc[best["method"] == "sam", "hp_rho"]) == {0.1}
    assert set(best.loc[best["method"] == "nso", "hp_rho"]) == {0.3}  # NaN validation counts as −∞
    assert len(best) == 6 and set(best["setting"]) == {"rho=0.1", "rho=0.3", "—"}
    with pytest.raises(ValueError, match="selection by validation needs"):
        rules.select(outcomes(df.assign(val_acc=float("nan"))))


def test_summary_counts_outcomes():
    d = outcomes(frame({("a", 1.0): [86.0, 10.0, 85.0]}))
    s = summary(d, "arm")
    assert s.loc[0, "n"] == 3 and s.loc[0, "healthy/collapsed/recovered/diverged"] == "2/1/0/0"


def test_select_breaks_a_tie_by_validation_loss_then_the_smaller_hyperparameter():
    """Equal mean validation accuracy (a 200-image split resolves 0.5 pp): the lower validation loss wins; equal
    losses too, the smaller σ."""
    rows = []
    for sigma, val_loss in ((0.01, 0.30), (0.02, 0.25), (0.03, 0.25)):
        for seed, val in enumerate((0.95, 0.955, 0.945)):
            rows.append({"method": "nso", "hp_sigma": sigma, "seed": seed, "val_acc": val, "val_loss": val_loss,
                         "test_acc": 0.9, "diverged": False, "key": f"{sigma}{seed}"})
    df = pd.DataFrame(rows)
    assert set(rules.select(outcomes(df))["hp_sigma"]) == {0.02}  # 0.02 and 0.03 tie on loss: the smaller
    assert set(rules.select(outcomes(df.assign(val_loss=0.3)))["hp_sigma"]) == {0.01}


def test_b3_compares_nso_with_weight_decay_against_nso_alone():
    """Claim B3's second part: NSO + the selected weight decay against NSO alone (not the plain optimizer + wd)."""
    rows = []
    for seed in range(3):
        for method, wd, acc in (("nso", 0.0, 0.90), ("nso", 5e-4, 0.905), ("nso", 5e-3, 0.93), ("sgd", 0.0, 0.80),
                                ("sgd", 5e-4, 0.80), ("sgd", 5e-3, 0.80)):
            for sides, k, sigma in (((True, 1, 0.01), (False, 2, 0.01)) if method == "nso" and wd == 0 else
                                    ((True, 1, 0.01),)):
                rows.append({"method": method, "weight_decay": wd, "epochs": 30, "seed": seed,
                             "test_acc": acc + 0.001 * seed - (0.01 if not sides else 0), "val_acc": acc,
                             "val_loss": 0.3, "diverged": False, "key": f"{method}{wd}{sides}{seed}",
                             "hp_two_sided": sides if method == "nso" else np.nan,
                             "hp_k": k if method == "nso" else np.nan, "hp_sigma": sigma if method == "nso" else np.nan})
    frame_ = pd.DataFrame(rows)
    params = {"optimizer": "amsgrad", "epochs": 30, "weight_decay": 0.0, "ks": [1], "sigma": 0.01, "sigmas": [0.01],
              "weight_decays": [0.0, 5e-4, 5e-3], "verdict": {"chance_margin": 5.0, "min_effect": 0.5}}
    r = SimpleNamespace(frame=frame_, params=params, outcomes=lambda f: outcomes(f))
    sides, wd = rules.b3(r)
    assert wd.what.startswith("NSO with weight decay 0.005") and wd.status == "reproduced"
    assert wd.effect == pytest.approx(3.0) and "NSO + wd − NSO" in wd.statistic  # 93 − 90, not 93 − 80
