"""hessreg: Hessian and sharpness regularization, reproduced (Dauphin et al. 2024; Ju et al., NSO).

Modules, one idea each: ``data``, ``activations``, ``models``, ``curvature``, ``methods``, ``train`` (one run),
``sweep`` (a grid of runs), ``results`` (the record store), ``grids`` (each chapter's runs), ``plots``,
``claims`` (verdicts), ``book`` (chapter plumbing), ``landscape`` (Fig. 7's weight-plane NME), ``transfer``
(fine-tuning: initial weights and the transfer task).
"""
import warnings

# torch's forward-mode decompositions and torchvision call torch.jit.script on first use, which warns that it is
# deprecated: not ours to fix, and noise in every chapter's output.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)

from .results import RecordStore, store_for  # noqa: E402
from .train import Config, Record, run  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Config", "Record", "run", "RecordStore", "store_for"]
