"""Several seeds of a small model in one process as one vectorized ensemble: runs per hour, against separate runs.

    python experiments/bench_ensemble.py --out results/bench/ensemble_cpu.json

The PyTorch model-ensembling recipe: the K models' parameters stacked (``torch.func.stack_module_state``) and one
``vmap(grad(loss))`` over them, each model on its own batch, then one optimizer step over the stacked tensors —
exact for SGD (the same per-model gradients; checked here to float tolerance before timing). It is timed against K
separate SGD steps (each model with its own optimizer), same models, batches and thread count, in one run. The
ratio separate ÷ ensemble is the gain in runs per hour of one process; the issue keeps the ensemble only if it is at
least 2. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
from pathlib import Path

import torch
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.timing import time_interleaved  # noqa: E402
from hessreg.models import build_model  # noqa: E402
from hessreg.repo import write_atomic  # noqa: E402

KEEP_IF = 2.0  # the ensemble must at least double runs per hour


def _optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def measure(model_name: str, k: int, batch: int, threads: int, warmup: int, iters: int) -> dict:
    """Milliseconds per model-step, separate and as one ensemble, with ``threads`` threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    models = [build_model(model_name, 10, 1, 28, "gelu").train() for _ in range(k)]
    x, y = torch.randn(k, batch, 1, 28, 28), torch.randint(0, 10, (k, batch))
    opts = [_optimizer(m.parameters()) for m in models]

    stacked, buffers = stack_module_state(models)
    stacked = {n: t.detach().clone().requires_grad_() for n, t in stacked.items()}
    base = copy.deepcopy(models[0]).to("meta")
    grads = vmap(grad(lambda p, b, xi, yi: F.cross_entropy(functional_call(base, (p, b), (xi,)), yi)))
    opt = _optimizer(list(stacked.values()))

    got = grads(stacked, buffers, x, y)  # exactness first: the ensemble's gradients are the separate ones
    for i, m in enumerate(models):
        want = torch.autograd.grad(F.cross_entropy(m(x[i]), y[i]), list(m.parameters()))
        for (n, _), w in zip(m.named_parameters(), want):
            torch.testing.assert_close(got[n][i], w, rtol=1e-4, atol=1e-6)

    def separate() -> None:
        for m, o, xi, yi in zip(models, opts, x, y):
            o.zero_grad(set_to_none=True)
            F.cross_entropy(m(xi), yi).backward()
            o.step()

    def ensemble() -> None:
        for n, g in grads(stacked, buffers, x, y).items():
            stacked[n].grad = g
        opt.step()

    ms = time_interleaved({"separate": separate, "ensemble": ensemble}, torch.device("cpu"), warmup, iters)
    sep, ens = ms["separate"] / k, ms["ensemble"] / k
    return {"threads": threads, "separate_ms_per_model_step": sep, "ensemble_ms_per_model_step": ens,
            "runs_per_hour_gain": sep / ens, "kept": sep / ens >= KEEP_IF}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mlp-256x3", help="the cpu scale's model")
    p.add_argument("--seeds", type=int, default=5, help="K models in the ensemble (the cpu scale runs 5 seeds)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    if any(t < 1 for t in threads) or args.seeds < 1:
        raise SystemExit("--threads and --seeds must be positive integers")
    rows = [measure(args.model, args.seeds, args.batch_size, t, args.warmup, args.iters) for t in threads]
    for r in rows:
        print(f"{r['threads']} thread(s): separate {r['separate_ms_per_model_step']:.2f} ms, ensemble "
              f"{r['ensemble_ms_per_model_step']:.2f} ms per model-step → ×{r['runs_per_hour_gain']:.2f} runs/h "
              f"({'kept' if r['kept'] else 'not kept'}: the bar is ×{KEEP_IF})", flush=True)
    out = {"model": args.model, "seeds": args.seeds, "batch_size": args.batch_size, "method": "sgd",
           "warmup": args.warmup, "iters": args.iters, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "keep_if": KEEP_IF, "layouts": rows,
           "versions": {"torch": torch.__version__, "python": platform.python_version()}}
    if args.out:
        write_atomic(Path(args.out), json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
