"""Benchmark: a Hessian-vector product against an SGD step, same model, same batch, same run.

Times, per batch size (median over ``--iters`` interleaved rounds, each variant once per round, after ``--warmup``;
CUDA events on the GPU, perf_counter on the CPU):

- ``sgd/<variant>``: zero_grad, forward, backward, optimizer step (train-mode BatchNorm, running stats updated);
  variants NCHW, channels_last and, on CUDA, the whole step captured in a CUDA graph;
- ``hv_toolkit/<method>/<bn>_bn/<variant>``: :func:`hessreg.curvature.hvp_function` (``fwd``: jvp over grad;
  ``rev``: double backward) with the native (``rev`` only: inside torch.func BatchNorm always runs in elementary
  ops) or the elementary-op BatchNorm kernel, train-mode BatchNorm with
  frozen running stats, same memory-format and CUDA-graph variants;
- ``hv_double_backward/<variant>``: what PyHessian does: ``autograd.grad(loss, create_graph=True)`` then
  ``autograd.grad(g, θ, v)``;
- ``hv_curvlinops/nchw``: curvlinops' ``HessianLinearOperator`` on the same batch, applied to the same v;
- ``probe_vmap<k>/<variant>``: k Hutchinson probes in one vmapped forward-over-reverse product, time per probe.

Ratios use the *fastest* SGD variant (a slower baseline flatters them): ``hv_toolkit_over_sgd`` (the
fastest toolkit variant), ``hv_double_backward_over_sgd`` and ``hv_curvlinops_over_sgd``. The goal is Hv ≤ 3× an
SGD step, faster than both PyHessian-style double backward and curvlinops.

    python experiments/bench_curvature.py --device cuda --out results/bench_curvature.json
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import allocator, curvature as C  # noqa: E402
from experiments.timing import time_interleaved  # noqa: E402
from hessreg.models import batchnorm_mode, build_model, frozen_stats  # noqa: E402


def cuda_graphed(fn: Callable[[], object], warmup: int = 3) -> Callable[[], None]:
    """Capture ``fn`` (static inputs, allocations from the graph pool) and return the replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def sgd_step_fn(model: nn.Module, x: Tensor, y: Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def double_backward_fn(model: nn.Module, x: Tensor, y: Tensor, v: list[Tensor]) -> Callable[[], tuple]:
    params = [p for p in model.parameters() if p.requires_grad]

    def hv() -> tuple:
        with frozen_stats(model):
            g = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
            return torch.autograd.grad(g, params, v)
    return hv


def curvlinops_fn(model: nn.Module, x: Tensor, y: Tensor, v: list[Tensor]) -> Callable[[], list[Tensor]]:
    """curvlinops' Hessian operator (``HessianLinearOperator``) applied to ``v``, on the one batch (x, y)."""
    from curvlinops import HessianLinearOperator
    params = [p for p in model.parameters() if p.requires_grad]
    H = HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(x, y)], check_deterministic=False)

    def hv() -> list[Tensor]:
        with frozen_stats(model):
            out = H @ v
        return list(out) if isinstance(out, (list, tuple)) else [out]
    return hv


def variants(model: nn.Module, x: Tensor, device: torch.device) -> dict[str, tuple[nn.Module, Tensor]]:
    """NCHW and channels_last copies of the model (4D inputs only), each with its input."""
    out = {"nchw": (model, x)}
    if x.dim() == 4:
        out["channels_last"] = (copy.deepcopy(model).to(memory_format=torch.channels_last),
                                x.contiguous(memory_format=torch.channels_last))
    return out


def bench_batch(model: nn.Module, batch: int, device: torch.device, shape: tuple[int, int, int],
                num_classes: int, warmup: int, iters: int, graphs: bool, probe_batch: int) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, *shape, generator=g, device=device)
    y = torch.randint(0, num_classes, (batch,), generator=g, device=device)
    v = {n: torch.randn(t.shape, generator=g, device=device, dtype=t.dtype) for n, t in C.select_params(model).items()}
    fns, failed, outputs = {}, {}, {}

    def record(name: str, fn: Callable[[], object], graph: bool = False) -> None:
        """Try the variant once (its output kept for the agreement check); time it later with the others."""
        try:
            fns[name] = cuda_graphed(fn) if graph else fn
            out = fns[name]()
            if not graph and name.startswith("hv_"):
                outputs[name] = out
        except Exception as e:  # a variant the hardware or torch version rejects is reported, not fatal
            fns.pop(name, None)
            failed[name] = f"{type(e).__name__}: {e}"[:300]

    for fmt, (m, xf) in variants(model, x, device).items():
        sgd_model = copy.deepcopy(m).train()
        record(f"sgd/{fmt}", sgd_step_fn(sgd_model, xf, y))
        if graphs:
            record(f"sgd/{fmt}/cuda_graph", sgd_step_fn(copy.deepcopy(m).train(), xf, y), graph=True)
        m.train()
        vf = {n: torch.empty_like(p).copy_(v[n]) for n, p in C.select_params(m).items()}  # the model's strides
        for method, bn in itertools.product(C.HVP_METHODS, ("native", "primitive")):
            if method == "fwd" and bn == "native":
                continue  # inside torch.func transforms BatchNorm always runs in elementary ops (models.py)
            hv = C.hvp_function(m, train_mode=True, method=method)

            def fn(hv=hv, m=m, xf=xf, bn=bn) -> list[Tensor]:
                with batchnorm_mode(m, primitive=bn == "primitive"):
                    return list(hv(xf, y, vf).values())
            record(f"hv_toolkit/{method}/{bn}_bn/{fmt}", fn)
            if graphs:
                record(f"hv_toolkit/{method}/{bn}_bn/{fmt}/cuda_graph", fn, graph=True)
        record(f"hv_double_backward/{fmt}", double_backward_fn(m, xf, y, list(vf.values())))
        if fmt == "nchw":
            record("hv_curvlinops/nchw", curvlinops_fn(m, xf, y, list(vf.values())))
        if probe_batch > 1:  # Hutchinson's probes batched with vmap: time per probe (not an Hv of its own)
            V = {n: t.expand(probe_batch, *t.shape).contiguous() for n, t in v.items()}
            record(f"probe_vmap{probe_batch}/{fmt}", lambda m=m, xf=xf, V=V: C.matvec(
                "H", m, (xf, y), V, train_mode=True, batched=True))
    times = time_interleaved(fns, device, warmup, iters)  # every variant once per round: drift hits all alike
    for name in times:
        if name.startswith("probe_vmap"):
            times[name] /= probe_batch

    def fastest(prefix: str) -> str | None:
        return min((k for k in times if k.startswith(prefix)), key=times.__getitem__, default=None)

    def ratio(name: str | None) -> float:
        return times[name] / times[sgd] if name and sgd else math.nan
    sgd, tool, dbl = fastest("sgd/"), fastest("hv_toolkit/"), fastest("hv_double_backward/")
    cvl = fastest("hv_curvlinops/")
    flat = {k: torch.cat([t.flatten() for t in o]).float() for k, o in outputs.items()}
    ref = flat.get("hv_double_backward/nchw")  # the same v everywhere
    agree = {k: ((o - ref).norm() / ref.norm()).item() if ref is not None else math.nan for k, o in flat.items()}
    return {"batch": batch, "times_ms": times, "failed": failed, "sgd_fastest": sgd, "hv_toolkit_fastest": tool,
            "hv_double_backward_fastest": dbl, "hv_toolkit_over_sgd": ratio(tool),
            "hv_double_backward_over_sgd": ratio(dbl), "hv_curvlinops_over_sgd": ratio(cvl),
            "goal_met": ratio(tool) <= 3 and ratio(tool) < ratio(dbl) and not ratio(tool) >= ratio(cvl),
            "relative_difference_to_double_backward": agree}


def run_benchmark(model: str = "wrn-16-4", device: str = "cuda", batch_sizes: list[int] = (128, 1024),
                  warmup: int = 5, iters: int = 20, image_size: int = 28, in_channels: int = 1,
                  num_classes: int = 10, activation: str = "gelu", cuda_graphs: bool = True,
                  tf32: bool = True, probe_batch: int = 8) -> dict:
    """Run every variant at every batch size; returns a JSON-ready record with provenance."""
    dev = torch.device(device)
    load_start = os.getloadavg()
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.manual_seed(0)
    net = build_model(model, num_classes, in_channels, image_size, activation).to(dev)
    shape = (in_channels, image_size, image_size)
    results = [bench_batch(net, b, dev, shape, num_classes, warmup, iters, cuda_graphs and dev.type == "cuda",
                           probe_batch) for b in batch_sizes]
    return {"model": model, "activation": activation, "device": dev.type, "probe_batch": probe_batch,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "dtype": "float32", "tf32": tf32 and dev.type == "cuda",
            "bn_mode": "train (Hv with frozen running stats)", "warmup": warmup, "iters": iters,
            "input_shape": list(shape), "threads": torch.get_num_threads(), "results": results,
            "load_avg": {"start": load_start, "end": os.getloadavg(), "cpus": os.cpu_count(),
                         "note": "os.getloadavg() (1, 5, 15 min): other processes share the CPUs"}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="wrn-16-4")
    ap.add_argument("--activation", default="gelu")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--probe-batch", type=int, default=8, help="probes per vmapped Hv (1: skip)")
    ap.add_argument("--no-cuda-graphs", action="store_true")
    ap.add_argument("--no-tf32", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--out", type=Path, default=None, help="write the record as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.device == "cpu":
        allocator.retain_freed_memory()  # as training runs (hessreg.allocator)
    record = run_benchmark(a.model, a.device, a.batch_sizes, a.warmup, a.iters, a.image_size, a.in_channels,
                           activation=a.activation, cuda_graphs=not a.no_cuda_graphs, tf32=not a.no_tf32,
                           probe_batch=a.probe_batch)
    for r in record["results"]:
        print(f"batch {r['batch']}: Hv toolkit {r['hv_toolkit_over_sgd']:.2f}× SGD ({r['hv_toolkit_fastest']}), "
              f"double backward {r['hv_double_backward_over_sgd']:.2f}×, curvlinops "
              f"{r['hv_curvlinops_over_sgd']:.2f}× SGD; fastest SGD {r['sgd_fastest']} "
              f"{r['times_ms'][r['sgd_fastest']]:.2f} ms; failed: {sorted(r['failed']) or 'none'}")
    record["allocator"] = None if a.device != "cpu" else allocator.describe()
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
