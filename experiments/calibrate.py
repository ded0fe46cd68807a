"""The cpu scale's calibration (book/appendix_cpu_scale.ipynb): the runs, and the cost of each candidate model.

    python experiments/calibrate.py runs [--shard 0/2]   # (a) SGD vs epochs, (c) go/no-go cells → results/records
    python experiments/calibrate.py cost                  # (b) step times per candidate → results/calibration/

(a) and (c) are the grid of the ``appendix_cpu_scale`` chapter (its parameter file), run like every other grid.
(b) times one training step of SGD and of the costliest methods for each candidate model, one thread, batch 128,
on random Fashion-MNIST-shaped data (``bench_methods``), and converts it to seconds per cpu-scale run (10,000
images, 20 epochs). Run it on an otherwise idle machine: the timings are the step medians of one process.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments import bench_methods  # noqa: E402
from hessreg.repo import root, write_atomic  # noqa: E402

CANDIDATES = ("mlp-256x3", "mlp-256x3-bn", "wrn-10-1")
METHODS = "sgd,sam,psam,gn_trace,hessian_trace"
STEPS_PER_RUN = (10_000 // 128) * 20  # the cpu scale: 10,000 images, batch 128, 20 epochs


def cost(out: Path, iters: int) -> dict:
    """Median step times (ms) per candidate and method, and the implied seconds per cpu-scale run."""
    torch.set_num_threads(1)
    models = {}
    for model in CANDIDATES:
        r = bench_methods.main(["--device", "cpu", "--model", model, "--activation", "gelu", "--batch-size", "128",
                                "--methods", METHODS, "--warmup", "3", "--iters", str(iters)])
        models[model] = {"sgd_ms": r["denominator"]["ms"],
                         "methods": {m: {"ms": v["ms"], "ratio": v["ratio"],
                                         "s_per_run": v["ms"] * STEPS_PER_RUN / 1e3} for m, v in r["methods"].items()}}
    result = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread",
              "torch": torch.__version__, "batch_size": 128, "steps_per_run": STEPS_PER_RUN, "iters": iters,
              "models": models}
    write_atomic(out, json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("runs", "cost"))
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", default=str(root() / "results" / "calibration" / "cost_cpu.json"))
    args = ap.parse_args(argv)
    if args.part == "runs":
        from experiments import sweep
        return sweep.main(["appendix_cpu_scale", "--scale", "cpu", "--shard", args.shard])
    cost(Path(args.out), args.iters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
