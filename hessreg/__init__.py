"""hessreg: Hessian and sharpness regularization, reproduced (Dauphin et al. 2024; Ju et al., NSO).

Modules, one idea each: ``data``, ``activations``, ``models``, ``curvature``, ``methods``, ``train`` (one run),
``sweep`` (a grid of runs), ``results`` (the record store), ``grids`` (each chapter's runs), ``plots``,
``claims`` (verdicts), ``book`` (chapter plumbing).
"""
from .results import RecordStore, store_for
from .train import Config, Record, run

__version__ = "0.1.0"
__all__ = ["Config", "Record", "run", "RecordStore", "store_for"]
