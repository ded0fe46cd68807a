"""The floor of the second-order steps: the autodiff passes a step cannot do without, timed beside the step itself
and beside SGD's forward + backward, in the same interleaved rounds.

    python experiments/bench_floor.py --model cnn-16-32-128-bn --out results/bench/floor_cpu_cnn_b128.json

For PSAM (∇L + ρ H∇L/‖∇L‖ by double backward) the passes are a forward, a backward that keeps its graph
(``create_graph=True``) and a backward through that graph (the Hessian-vector product); for the Hessian-trace
penalty (∇(L + σ² vᵀHv)) a forward with BatchNorm in elementary ops, a backward keeping its graph, a Hessian-vector
product keeping its graph, and a backward through all of it (third order); for NSO (k = 1, two-sided) one normal
draw per weight and two forward + backward passes (at θ ± U; the bare passes run at θ, which costs the same). What
a step spends beyond its passes is its arithmetic around them (norms, sums, the probe); the passes themselves are
the floor of the method as it is computed — exact reverse-mode products, whose float rounding the committed
records depend on. Ratios are to the SGD passes (forward + backward) of the same model, batch and memory format.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.timing import time_interleaved  # noqa: E402
from hessreg import allocator  # noqa: E402
from hessreg.models import batchnorm_mode, build_model  # noqa: E402
from hessreg.steps import hessian_trace_step, nso_step, psam_step, sgd_step, trainable  # noqa: E402


def passes(model, x, y) -> dict:
    """The step functions and their bare passes, each a no-argument callable."""
    params = trainable(model)

    def forward():
        F.cross_entropy(model(x), y)

    def sgd_passes():  # into fresh .grad tensors, as every step starts (zero_grad(set_to_none=True))
        for p in params:
            p.grad = None
        F.cross_entropy(model(x), y).backward()

    def grad_with_graph():
        torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)

    def psam_passes():
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
        torch.autograd.grad(grads, params, grad_outputs=[g.detach() for g in grads])

    def hessian_trace_passes():
        with batchnorm_mode(model, primitive=True):
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            v = [torch.randn_like(p) for p in params]
            hv = torch.autograd.grad(grads, params, grad_outputs=v, create_graph=True)
            est = sum((a * b).sum() for a, b in zip(v, hv))
            torch.autograd.grad(loss + 1e-3 * est, params)

    def nso_passes():
        for p in params:
            p.grad = None
        [torch.randn_like(p).mul_(0.01) for p in params]
        for _ in range(2):
            F.cross_entropy(model(x), y).backward()

    def step(fn, **hp):
        def one():
            for p in params:
                p.grad = None
            fn(model, x, y, F.cross_entropy, **hp)
        return one

    return {"forward": forward, "sgd passes (forward + backward)": sgd_passes, "sgd step": step(sgd_step),
            "backward keeping its graph": grad_with_graph, "psam passes": psam_passes,
            "psam step": step(psam_step, rho=0.1), "hessian_trace passes": hessian_trace_passes,
            "hessian_trace step": step(hessian_trace_step, sigma2=1e-3, n_probes=1), "nso passes": nso_passes,
            "nso step": step(nso_step, sigma=0.01, k=1, two_sided=True, lam=0.0)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn-16-32-128-bn")
    p.add_argument("--activation", default="gelu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    allocator.retain_freed_memory()  # as training runs (hessreg.allocator)
    load_start = os.getloadavg()
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = build_model(args.model, 10, 1, 28, args.activation).train().to(memory_format=fmt)
    x = torch.randn(args.batch_size, 1, 28, 28).to(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch_size,))
    ms = time_interleaved(passes(model, x, y), torch.device("cpu"), args.warmup, args.iters)
    base = ms["sgd passes (forward + backward)"]
    out = {"model": args.model, "activation": args.activation, "batch_size": args.batch_size,
           "memory_format": "channels_last" if args.channels_last else "nchw", "threads": args.threads,
           "iters": args.iters, "allocator": allocator.describe(), "ms": ms,
           "ratio_to_sgd_passes": {k: v / base for k, v in ms.items()},
           "load_avg": {"start": load_start, "end": os.getloadavg(), "cpus": os.cpu_count()},
           "versions": {"torch": torch.__version__, "python": platform.python_version()}}
    for k, v in ms.items():
        print(f"{k:34s} {v:9.2f} ms  {v / base:6.2f}×", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
