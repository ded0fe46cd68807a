"""PyHessian 0.1 next to the curvature report, on one model and batch, against exact references: tr H from the
report's ``exact`` path (Σ_i e_iᵀH e_i, one product per parameter) and λ1, λ2 from scipy's ARPACK (``eigsh``,
implicitly restarted Lanczos to tolerance 1e-10) on a plain double-backward H·v operator.

    pip install --target /tmp/pyhessian --no-deps pyhessian==0.1   # only for this comparison: not a dependency
    PYTHONPATH=/tmp/pyhessian python experiments/compare_pyhessian.py

The model is issue 26's (``bench_report.issue_mlp``: 784-32-32-10 GELU, float64, untrained, ``--seed``) on the first
``--samples`` Fashion-MNIST training images in one batch, one thread. Both Hutchinson estimates use Rademacher
probes: the report a fixed ``--probes`` (standard error sd/√k); PyHessian's ``trace()`` until its running mean m
moves by less than 1e-3 · (m + 1e-6) (its rule, which holds at once whenever m < 0), then once more with the rule
off (``tol=-inf``) for ``--probes`` probes. PyHessian's eigenvalues are power iterations (relative tolerance 1e-3,
100 steps at most), deflated one after the other; the report's are Lanczos (20 products at most). About two
minutes, mostly the exact traces. Output: a Markdown table on stdout, JSON in ``--out`` (not committed).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.bench_report import issue_mlp  # noqa: E402
from hessreg import report  # noqa: E402


def arpack_top(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> list[float]:
    """The k largest eigenvalues of H = ∇²_θ L by ARPACK on v ↦ ∂(gᵀv)/∂θ, g = ∇_θ L (double backward)."""
    params = list(model.parameters())
    g = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)

    def hv(v: np.ndarray) -> np.ndarray:
        vs = torch.from_numpy(np.ascontiguousarray(v).reshape(-1)).split([p.numel() for p in params])
        h = torch.autograd.grad(g, params, [u.view_as(p) for u, p in zip(vs, params)], retain_graph=True)
        return torch.cat([t.reshape(-1) for t in h]).numpy()
    n = sum(p.numel() for p in params)
    values = eigsh(LinearOperator((n, n), matvec=hv, dtype=np.float64), k=k, which="LA", tol=1e-10,
                   return_eigenvectors=False)
    return sorted(values.tolist(), reverse=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0, help="of the initial weights and of every method's probes")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--probes", type=int, default=256, help="the report's Hutchinson probes per layer")
    p.add_argument("--out", default="_build/bench/pyhessian.json")
    a = p.parse_args(argv)
    try:
        from pyhessian import hessian
    except ImportError:
        sys.exit("error: PyHessian is not installed (not a dependency of the book): pip install --target "
                 "/tmp/pyhessian --no-deps pyhessian==0.1, then run with PYTHONPATH=/tmp/pyhessian")
    torch.set_num_threads(1)
    batches, _ = report.load_batches("fashion_mnist", a.samples, a.samples, dtype=torch.float64)
    x, y = batches[0]
    model = issue_mlp([32, 32], a.seed)
    ours = report.prepare(model)
    mc = report.curvature_report(ours, [(x, y)], probes=a.probes, eigs=2, seed=a.seed, probe_batch=64)
    ex = report.curvature_report(ours, [(x, y)], exact=True, eigs=0, probe_batch=64)
    torch.manual_seed(a.seed)
    ph = hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    ph_trace = np.array(ph.trace(maxIter=1000, tol=1e-3))
    ph_fixed = np.array(ph.trace(maxIter=a.probes, tol=-np.inf))  # its stopping rule off: a.probes probes
    ph_eigs = ph.eigenvalues(top_n=2)[0]
    mean_se = lambda t: (t.mean(), t.std(ddof=1) / np.sqrt(len(t)))  # noqa: E731
    H = lambda r: r.traces.query("curvature == 'H' and layer == 'total'").iloc[0]  # noqa: E731
    rows = {"exact (report --exact; ARPACK)": (H(ex).trace, 0.0, "every parameter", arpack_top(model, x, y, 2)),
            "report (Hutchinson; Lanczos)": (H(mc).trace, H(mc).std_err, f"{a.probes} per layer",
                                             mc.eigen.query("curvature == 'H'")["value"].tolist()),
            "PyHessian 0.1 trace(), eigenvalues(top_n=2)": (*mean_se(ph_trace), f"{len(ph_trace)}", ph_eigs),
            f"PyHessian 0.1 trace(maxIter={a.probes}, tol=-inf)": (*mean_se(ph_fixed), f"{a.probes}", [])}
    print("| | tr H | ± (standard error) | probes | λ1, λ2 (H) |\n|---|---|---|---|---|")
    for name, (tr, se, k, eigs) in rows.items():
        print(f"| {name} | {tr:.2f} | {se:.2f} | {k} | {', '.join(f'{e:.4f}' for e in eigs) or '—'} |")
    result = dict(model="issue_mlp([32, 32]) 784-32-32-10 GELU float64, untrained", seed=a.seed,
                  samples=a.samples, torch=torch.__version__,
                  rows={k: dict(trace=float(v[0]), std_err=float(v[1]), probes=v[2], top2=[float(e) for e in v[3]])
                        for k, v in rows.items()})
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
