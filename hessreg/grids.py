"""Each chapter's experiment: its parameters (a papermill parameter file per scale) → the list of runs.

The parameter files live in ``experiments/params/<chapter>/<scale>.yaml``; the chapter notebook's
``parameters`` cell holds the smoke values (a test checks that they agree). A grid function is the only place a
chapter's runs are defined, so the notebook, the papermill runner and the GPU sweep script (which needs no
Jupyter) all run the same configs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import yaml

from .sweep import grid
from .train import Config

PARAMS = Path(__file__).resolve().parent.parent / "experiments" / "params"
SCALES = ("smoke", "full", "paper")


def load_params(chapter: str, scale: str) -> dict:
    """The parameter file of ``chapter`` at ``scale``."""
    check_chapter(chapter)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid choices: {', '.join(SCALES)}")
    path = PARAMS / chapter / f"{scale}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no {scale} parameters for chapter {chapter!r}: {path}")
    return yaml.safe_load(path.read_text())


def base_config(p: dict, **fields) -> Config:
    """The fields every chapter's parameter file carries, as a Config."""
    return Config(dataset=p["dataset"], train_size=p["train_size"], test_size=p["test_size"], model=p["model"],
                  epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"],
                  schedule=p["schedule"], augment=p["augment"], device=p["device"], **fields)


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


GRIDS: dict[str, Callable[[dict], list[Config]]] = {
    "01_sgd_activations": sgd_activations,
    "02_sam_vs_psam": penalty_vs_rho,
    "03_activation_nme_ablation": penalty_vs_rho,
    "04_synthetic_nme": penalty_vs_rho,
    "05_gn_psam": penalty_vs_rho,
}


def check_chapter(chapter: str) -> None:
    if chapter not in GRIDS:
        raise ValueError(f"unknown chapter {chapter!r}; valid choices: {', '.join(GRIDS)}")


def configs(chapter: str, params: dict) -> list[Config]:
    check_chapter(chapter)
    return GRIDS[chapter](params)
