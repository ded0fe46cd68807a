"""hessreg: Hessian and sharpness regularization, reproduced (Dauphin et al. 2024; Ju et al., NSO).

Flat modules, one idea each, in three layers; imports point one way, down (tests/test_layers.py checks it):

- **the science** — ``data`` (datasets → tensors on the device), ``sizes`` (what a dataset holds, known before
  loading), ``activations``, ``models``, ``curvature`` (H, G and N products), ``estimators`` (traces, eigenpairs,
  σ'' fractions, flatness, the measurements a run takes), ``steps`` (one training step per method), ``methods``
  (the registry of steps and their hyperparameters), ``landscape`` (Fig. 7's weight-plane NME), ``report`` (the
  curvature report for any classifier). They import no run or book module.
- **the runs** — ``config`` (``Config`` and ``Record``), ``train`` (one run), ``results`` (the record store),
  ``sweep`` (a grid of runs), ``distributed`` (torchrun). They import no book module.
- **the book** — ``chapters`` (each chapter's parameters and runs), ``claims`` (the papers' claims and their
  verdicts), ``stats`` (the verdicts' statistics), ``paper_b`` (Paper B's tables), ``plots``, ``book`` (what a
  chapter notebook needs besides the science: parameters, the records shown, figures), ``calibration`` (the scales'
  appendices), ``scoreboard``, ``sources`` (the chapters' MyST Markdown sources, as notebooks),
  ``verdict_figure`` (a verdict's numbers as a picture), ``rules`` (one verdict rule per claim).

Three leaves any layer may use: ``repo`` (the project root, the code's commit, atomic writes), ``typecheck`` and
``allocator`` (freed memory kept in the process: fewer page faults per CPU step).
"""
import warnings

# torch's forward-mode decompositions and torchvision call torch.jit.script on first use, which warns that it is
# deprecated: not ours to fix, and noise in every chapter's output.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)

from .config import Config, Record  # noqa: E402
from .results import RecordStore, store_for  # noqa: E402
from .train import run  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Config", "Record", "run", "RecordStore", "store_for"]
