"""Step time of every method ÷ the fastest SGD step, same model, same batch, same run.

    python experiments/bench_methods.py --device cuda --model wrn-16-4 --batch-size 128 --out bench.json

Each timed step is the method's step (forward/backward passes) plus the optimizer step (SGD, momentum 0.9,
weight decay 5e-4), on random data of Fashion-MNIST's shape (N, 1, 28, 28). Every method is timed in NCHW and in
channels_last and its faster format counts; the denominator is the faster SGD step. All (method, format) steps are
timed in interleaved rounds (each once per round), so drift of a shared machine cannot favour one of them; on a GPU
with CUDA events, on the CPU with ``time.perf_counter``; the median over rounds counts. Goals (the issue): SAM and NSO (k = 1)
≤ 2.1×; PSAM, PUSAM, GN-PSAM and the GN-trace penalty ≤ 4×; the Hessian-trace penalty ≤ 8× — on the small convnets
(``cnn-…``, issue 24) ≤ 3× and ≤ 6×. Every method that misses its goal is then profiled (``torch.profiler``, a few
steps in its faster format) and the profile's top operators go into the JSON, with the machine's load average.
On the CPU the process keeps freed memory as training does (``hessreg.allocator``; ``--allocator glibc`` measures
glibc's defaults instead), and each method's minor page faults per step go into the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
from pathlib import Path

import torch
import torchvision
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import allocator  # noqa: E402
from hessreg.methods import METHODS, check_method  # noqa: E402
from hessreg.models import CLOSED_FORM_DEVICES, build_model  # noqa: E402
from experiments.timing import time_interleaved  # noqa: E402

GOALS = {"sam": 2.1, "nso": 2.1, "psam": 4.0, "pusam": 4.0, "gn_psam": 4.0, "gn_trace": 4.0, "hessian_trace": 8.0}
CONVNET_GOALS = {**GOALS, "psam": 3.0, "pusam": 3.0, "gn_psam": 3.0, "gn_trace": 3.0, "hessian_trace": 6.0}


def goals_for(model: str) -> dict[str, float]:
    """The issue's goals: tighter on the small convnets (issue 24) than on MLPs and WideResNets."""
    return CONVNET_GOALS if model.startswith("cnn") else GOALS


def profile_top_ops(fn, device, steps: int = 3, top: int = 8) -> list[dict]:
    """The operators with the most self time over ``steps`` calls of ``fn`` (after one untimed call), per step."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts, record_shapes=True) as prof:
        for _ in range(steps):
            fn()
    rows = prof.key_averages(group_by_input_shape=True)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(r, key) for r in rows)
    rows = sorted(rows, key=lambda r: getattr(r, key), reverse=True)[:top]
    return [{"op": r.key, "input_shapes": str(r.input_shapes)[:120], "self_ms_per_step": getattr(r, key) / 1e3 / steps,
             "share": getattr(r, key) / total, "calls_per_step": r.count / steps} for r in rows]


def page_faults_per_step(fn, steps: int = 3) -> float:
    """Minor page faults of this process per call of ``fn`` (pages the kernel maps and zero-fills on first touch)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


def _step_fn(model, opt, method, hparams, x, y):
    """One timed step: the method's step, then the optimizer's."""
    def one():
        opt.zero_grad(set_to_none=True)
        method.step(model, x, y, F.cross_entropy, **hparams)
        opt.step()
    return one


def _setup(args, device, channels_last: bool):
    torch.manual_seed(0)
    model = build_model(args.model, 10, 1, 28, args.activation).to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(args.batch_size, 1, 28, 28, device=device).to(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    return model, opt, x, y


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="wrn-16-4")
    p.add_argument("--activation", default="gelu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--methods", default=",".join(m for m in METHODS if m != "gradient_penalty"),
                   help="comma-separated method names (default: all)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="TF32 convolutions/matmuls on CUDA (the full scale runs with TF32)")
    p.add_argument("--closed-form-bn-on-cuda", action="store_true",
                   help="BatchNorm's closed-form double backward on CUDA too (hessreg.models.CLOSED_FORM_DEVICES)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--profile-steps", type=int, default=3,
                   help="steps profiled of each method that misses its goal (0: no profile)")
    p.add_argument("--allocator", choices=("retained", "glibc"), default="retained",
                   help="CPU: keep freed memory in the process as training does (hessreg.allocator), or glibc's "
                        "defaults")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.allocator == "retained" and args.device == "cpu":
        allocator.retain_freed_memory()
    goals = goals_for(args.model)
    load_start = os.getloadavg()
    if args.closed_form_bn_on_cuda:
        CLOSED_FORM_DEVICES.add("cuda")

    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    hparams = {name: check_method(name, {}) for name in names}  # bad names fail before any timing
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32

    formats = {"nchw": False, "channels_last": True}
    steps, peak = {}, {}
    for name in ["sgd"] + [n for n in names if n != "sgd"]:
        for fmt, channels_last in formats.items():
            model, opt, x, y = _setup(args, device, channels_last)
            steps[name, fmt] = _step_fn(model, opt, METHODS[name], hparams.get(name, {}), x, y)
            if device.type == "cuda":  # peak memory of one step on its own
                torch.cuda.reset_peak_memory_stats(device)
                steps[name, fmt]()
                peak[name, fmt] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    # every (method, format) once per round: drift of the machine hits all of them alike
    ms_all = time_interleaved({f"{n}/{f}": fn for (n, f), fn in steps.items()}, device, args.warmup, args.iters)
    by = {(n, f): ms_all[f"{n}/{f}"] for n, f in steps}

    variants = {f: by["sgd", f] for f in formats}
    sgd_fmt = min(variants, key=variants.get)
    sgd_ms = variants[sgd_fmt]

    results = {}
    for name in names:
        by_format = {f: by[name, f] for f in formats}
        fmt = min(by_format, key=by_format.get)
        ms = by_format[fmt]
        results[name] = {"ms": ms, "memory_format": fmt, "ms_by_format": by_format, "ratio": ms / sgd_ms,
                         "hparams": hparams[name], "goal": goals.get(name),
                         "meets_goal": None if name not in goals else ms / sgd_ms <= goals[name]}
        if device.type == "cuda":
            results[name]["peak_mem_gib"] = peak[name, fmt]
        else:
            results[name]["minflt_per_step"] = page_faults_per_step(steps[name, fmt])
        print(f"{name:22s} {ms:9.2f} ms  {ms / sgd_ms:6.2f}× SGD  ({fmt})"
              + (f"  (goal ≤ {goals[name]}×)" if name in goals else ""), flush=True)
    load_timed = os.getloadavg()
    for name, r in results.items():  # where the time goes, for every goal missed
        if r["meets_goal"] is False and args.profile_steps > 0:
            r["profile"] = profile_top_ops(steps[name, r["memory_format"]], device, args.profile_steps)
            print(f"  {name}: " + "; ".join(f"{o['op']} {o['self_ms_per_step']:.1f} ms" for o in r["profile"][:4]))

    out = {
        "model": args.model, "activation": args.activation, "batch_size": args.batch_size,
        "warmup": args.warmup, "iters": args.iters, "device": str(device), "threads": args.threads,
        "load_avg": {"start": load_start, "after_timing": load_timed, "end": os.getloadavg(),
                     "cpus": os.cpu_count(), "note": "os.getloadavg() (1, 5, 15 min): other processes share the CPUs"},
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "tf32": args.tf32 if device.type == "cuda" else None,
        "closed_form_bn_devices": sorted(CLOSED_FORM_DEVICES),
        "allocator": None if device.type == "cuda" else allocator.describe(),
        "sgd_ms": variants,
        "denominator": {"memory_format": sgd_fmt, "ms": sgd_ms},
        "methods": results,
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "python": platform.python_version(), "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None},
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
