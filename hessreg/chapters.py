"""Each chapter's experiment: its parameters (a papermill parameter file per scale) → the list of runs.

The parameter files live in ``<root>/experiments/params/<chapter>/<scale>.yaml``, the root found by
:func:`hessreg.repo.root` (``$HESSREG_ROOT``, the current directory or a parent, or the source checkout); the
chapter notebook's ``parameters`` cell holds the smoke values (a test checks that they agree). A grid function is
the only place a chapter's runs are defined, so the notebook, the papermill runner and the GPU sweep script
(which needs no Jupyter) all run the same configs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml

from .config import Config, pretrain_spec
from .repo import PARAMS, root
from .sweep import grid, unique

SCALES = ("smoke", "cpu", "noisy", "noisy_cnn", "lowdata", "full", "paper")


def params_path(chapter: str, scale: str) -> Path:
    """``<root>/experiments/params/<chapter>/<scale>.yaml`` (it may not exist: :func:`has_params`)."""
    return root() / PARAMS / chapter / f"{scale}.yaml"


def has_params(chapter: str, scale: str) -> bool:
    """Whether ``chapter`` has a parameter file at ``scale`` (not every chapter has every scale)."""
    return params_path(chapter, scale).exists()


def load_params(chapter: str, scale: str) -> dict:
    """The parameter file of ``chapter`` at ``scale``."""
    check_chapter(chapter)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid choices: {', '.join(SCALES)}")
    path = params_path(chapter, scale)
    if not path.exists():
        raise FileNotFoundError(f"no {scale} parameters for chapter {chapter!r}: {path}")
    return yaml.safe_load(path.read_text())


def base_config(p: dict, **fields) -> Config:
    """The fields every chapter's parameter file carries, as a Config."""
    return Config(dataset=p["dataset"], train_size=p["train_size"], test_size=p["test_size"], model=p["model"],
                  epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"],
                  schedule=p["schedule"], augment=p["augment"], device=p["device"],
                  label_noise=p.get("label_noise", 0.0), **fields)


def sgd_activations(p: dict) -> list[Config]:
    """Chapter 1: plain SGD with each activation; β-GELU at each β in ``betas``."""
    base = base_config(p)
    runs = grid(base, activation=p["activations"], seed=p["seeds"])
    runs += grid(base, activation=["beta_gelu"], beta=p["betas"], seed=p["seeds"])
    return runs


def penalty_vs_rho(p: dict) -> list[Config]:
    """Gradient-penalty chapters (Paper A Figs. 1, 2, 3, 10): every method in ``methods`` with every activation
    in ``activations`` at every ρ in ``rhos``, plus an SGD baseline per activation. ``beta`` is the sharpness
    of activations that have one (ReLU + synthetic NME: β = 100)."""
    base = base_config(p, beta=p.get("beta", 1.0))
    runs = grid(base, method=p["methods"], activation=p["activations"], rho=p["rhos"], seed=p["seeds"])
    return runs + grid(base, method=["sgd"], activation=p["activations"], seed=p["seeds"])


def trace_penalties(p: dict) -> list[Config]:
    """Trace-penalty chapters (Paper A Figs. 4, 5, 6): each method in ``methods`` at each penalty weight σ² in
    ``sigma2s``, plus SGD. The x-axis σ² is the weight of the penalty in L + σ² tr(·); weight noise gets variance
    2σ², so that its expected loss L + ½·2σ² tr H is the same second-order objective (Paper A drops the ½)."""
    base = base_config(p, activation=p["activation"])
    runs = []
    for method in p["methods"]:
        if method == "weight_noise":
            runs += grid(base, method=[method], sigma=[(2 * s2) ** 0.5 for s2 in p["sigma2s"]], seed=p["seeds"])
        elif method == "hessian_trace" or method == "gn_trace_hutchinson":
            runs += grid(base, method=[method], sigma2=p["sigma2s"], n_probes=[p["n_probes"]], seed=p["seeds"])
        else:
            runs += grid(base, method=[method], sigma2=p["sigma2s"], seed=p["seeds"])
    return runs + grid(base, method=["sgd"], seed=p["seeds"])


def penalty_weight(df: pd.DataFrame, sigma2s: list[float] | None = None) -> pd.Series:
    """σ² of each run of :func:`trace_penalties` from its record frame: ``hp_sigma2``, or for weight noise
    σ_noise²/2 (its variance is 2σ²). NaN for SGD. With the grid's ``sigma2s``, a value within a relative 1e-9
    of a grid value is that grid value (σ = √(2σ²) squared and halved misses it by a float step)."""
    s2 = df["hp_sigma2"] if "hp_sigma2" in df else np.nan
    out = df.assign(_s=s2)["_s"].fillna(df["hp_sigma"] ** 2 / 2 if "hp_sigma" in df else np.nan)
    for g in sigma2s or []:
        out = out.mask(np.isclose(out, g, rtol=1e-9, atol=0), g)
    return out


def beta_sweep(p: dict) -> list[Config]:
    """β-GELU chapters (Paper A Figs. 8, 9): SGD and PSAM (ρ = ``rho``) with β-GELU at each β in ``betas``;
    the fraction of non-zero σ'' is measured at initialization and after training in the same runs."""
    base = base_config(p, activation="beta_gelu", measure=("nonzero_d2",))
    runs = grid(base, method=["sgd"], beta=p["betas"], seed=p["seeds"])
    return runs + grid(base, method=["psam"], beta=p["betas"], rho=[p["rho"]], seed=p["seeds"])


def calibration(p: dict) -> list[Config]:
    """The cpu scale's calibration (appendix): (a) SGD with ReLU and GELU at each length in ``curve_epochs``
    (seeds ``curve_seeds``); (c) go/no-go cells at ``epochs``: PSAM at ρ = ``gonogo_rho`` with ReLU and GELU for
    each model in ``gonogo_models``, and the Hessian-trace vs GN-trace penalty at σ² = ``gonogo_sigma2`` (GELU)."""
    base = base_config(p)
    runs = grid(base, activation=["relu", "gelu"], epochs=p["curve_epochs"], seed=p["curve_seeds"])
    runs += grid(base, model=p["gonogo_models"], method=["psam"], activation=["relu", "gelu"],
                 rho=[p["gonogo_rho"]], seed=p["seeds"])
    runs += grid(base, activation=["gelu"], method=["hessian_trace"], sigma2=[p["gonogo_sigma2"]], n_probes=[1],
                 seed=p["seeds"])
    return runs + grid(base, activation=["gelu"], method=["gn_trace"], sigma2=[p["gonogo_sigma2"]], seed=p["seeds"])


def noisy_calibration(p: dict) -> list[Config]:
    """The noisy scale's calibration (appendix): for each of ``candidates`` (a model and its label-noise
    fractions ``noise``), the positive controls — SGD, SAM at ``sam_rho``, the GN-trace penalty at each of ``gn_sigma2s``,
    PSAM with GELU at ``psam_rho`` (all GELU) — and, for Paper B's stand-in (``nso``: a fine-tuning parameter
    set with its own ``candidates``, each a target-set size and label-noise fractions), plain fine-tuning, SAM,
    label smoothing and NSO."""
    runs = []
    for c in p["candidates"]:
        base, noise = base_config(p | {"model": c["model"]}, activation="gelu"), c["noise"]
        runs += grid(base, label_noise=noise, seed=p["seeds"])
        runs += grid(base, method=["sam"], rho=[p["sam_rho"]], label_noise=noise, seed=p["seeds"])
        runs += grid(base, method=["gn_trace"], sigma2=p["gn_sigma2s"], label_noise=noise, seed=p["seeds"])
        runs += grid(base, method=["psam"], rho=[p["psam_rho"]], label_noise=noise, seed=p["seeds"])
    b = p["nso"] | {"seeds": p["seeds"]}
    for c in b["candidates"]:  # a target-set size and its label-noise fractions
        base = nso_base(b | {"train_size": c["train_size"]})
        for method, hp in (("sgd", {}), ("sam", {"rho": b["sam_rhos"]}), ("label_smoothing", {"alpha": b["ls_alphas"]}),
                           ("nso", {"sigma": b["sigmas"]})):
            runs += grid(base, method=[method], **hp, label_noise=c["noise"], seed=p["seeds"])
    return runs


# ------------------------------------------------------------------------------------ Paper B (NSO) chapters

NSO_METHOD_GRIDS = {  # method → (its hyperparameter, the parameter-file list of values searched)
    "label_smoothing": ("alpha", "ls_alphas"), "sam": ("rho", "sam_rhos"), "asam": ("rho", "asam_rhos"),
    "rsam": ("rho", "rsam_rhos"), "weight_noise": ("sigma", "sigmas"), "nso": ("sigma", "sigmas"),
}


def nso_base(p: dict, **fields) -> Config:
    """Paper B's fine-tuning run: Adam(amsgrad), StepLR, a validation split, pretrained init, flatness measured
    after training. ``init: pretrain`` pretrains ``model`` on ``pretrain_dataset`` (cached, once); any other
    ``init`` (``imagenet:resnet34``) is passed through."""
    init = p["init"]
    if init == "pretrain":
        init = pretrain_spec(dataset=p["pretrain_dataset"], model=p["model"], epochs=p["pretrain_epochs"],
                                      train_size=p["pretrain_size"])
    return Config(dataset=p["dataset"], train_size=p["train_size"], test_size=p["test_size"],
                  val_size=p["val_size"], model=p["model"], optimizer=p["optimizer"], lr=p["lr"],
                  weight_decay=p["weight_decay"], schedule="step", step_epochs=p["step_epochs"],
                  step_gamma=p["step_gamma"], epochs=p["epochs"], batch_size=p["batch_size"], augment=p["augment"],
                  device=p["device"], data_root=p["data_root"], init=init, checkpoint=p["checkpoint"],
                  measure=(p["flatness"],) if p["flatness"] else (), **fields)


def nso_comparison(p: dict) -> list[Config]:
    """Claims B1 and B2: the plain optimizer, and each method in ``methods`` at each value of its own grid (the
    same search budget per method, :data:`NSO_METHOD_GRIDS`), every seed; the flatness is measured in the
    same runs, so the two chapters share their records."""
    base = nso_base(p)
    runs = grid(base, method=["sgd"], seed=p["seeds"])
    for method in p["methods"]:
        name, values = NSO_METHOD_GRIDS[method]
        runs += grid(base, method=[method], **{name: p[values]}, seed=p["seeds"])
    return runs


def nso_ablations(p: dict) -> list[Config]:
    """Claim B3, all NSO at matched compute (gradient passes per run): (1) σ sensitivity and two-sided (k = 1)
    vs one-sided with k = 2 draws, at each σ in ``sigmas``; (2) k in ``ks`` two-sided at σ = ``sigma`` with
    epochs (and StepLR's period) divided by k; (3) NSO at σ = ``sigma`` and the plain optimizer at each weight
    decay in ``weight_decays``."""
    base = nso_base(p)
    runs = grid(base, method=["sgd"], seed=p["seeds"])
    runs += grid(base, method=["nso"], sigma=p["sigmas"], k=[1], two_sided=[True], seed=p["seeds"])
    runs += grid(base, method=["nso"], sigma=p["sigmas"], k=[2], two_sided=[False], seed=p["seeds"])
    for k in p["ks"]:
        runs += grid(base.replace(epochs=max(1, p["epochs"] // k), step_epochs=max(1, p["step_epochs"] // k)),
                     method=["nso"], sigma=[p["sigma"]], k=[k], two_sided=[True], seed=p["seeds"])
    runs += grid(base, method=["nso"], sigma=[p["sigma"]], k=[1], two_sided=[True],
                 weight_decay=p["weight_decays"], seed=p["seeds"])
    runs += grid(base, method=["sgd"], weight_decay=p["weight_decays"], seed=p["seeds"])
    return unique(runs)


GRIDS: dict[str, Callable[[dict], list[Config]]] = {
    "01_sgd_activations": sgd_activations,
    "02_sam_vs_psam": penalty_vs_rho,
    "03_activation_nme_ablation": penalty_vs_rho,
    "04_synthetic_nme": penalty_vs_rho,
    "05_gn_psam": penalty_vs_rho,
    "06_trace_penalties": trace_penalties,
    "07_trace_penalties_5_probes": trace_penalties,
    "08_trace_during_training": trace_penalties,
    "10_beta_gelu_psam": beta_sweep,
    "11_nonzero_second_derivatives": beta_sweep,
    "12_nso_accuracy": nso_comparison,
    "13_nso_flatness": nso_comparison,
    "14_nso_ablations": nso_ablations,
    "appendix_cpu_scale": calibration,
    "appendix_noisy_scale": noisy_calibration,
}


def names() -> list[str]:
    """Every chapter with parameter files, in book order (a chapter without runs has no GRIDS entry)."""
    return sorted(p.name for p in (root() / PARAMS).iterdir() if (p / "smoke.yaml").exists())


def check_chapter(chapter: str) -> None:
    if chapter not in names():
        raise ValueError(f"unknown chapter {chapter!r}; valid choices: {', '.join(names())}")


def configs(chapter: str, params: dict) -> list[Config]:
    """The runs of ``chapter`` with parameters ``params`` (every config validated as it is built)."""
    check_chapter(chapter)
    if chapter not in GRIDS:
        raise ValueError(f"chapter {chapter!r} trains no models (it has no grid); chapters with runs: "
                         f"{', '.join(GRIDS)}")
    return GRIDS[chapter](params)
