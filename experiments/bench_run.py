"""Where one training run's time goes: the method's steps, the optimizer, the batches, the rest of the loop, and
what lies outside the epochs (data, model, evaluation), for a fixed sample of a scale's grid.

    python experiments/bench_run.py --scale noisy --out results/bench/run_cpu_noisy.json

Each sampled config (its chapter's first config of each listed method) trains one epoch untimed (to warm the data
cache), then once under cProfile; the JSON has, per config, the run's wall time and the cumulative seconds of
each part, with their shares. cProfile adds a fixed cost per Python call, so the shares of the small parts are
upper bounds. One thread per process, as the sweeps run.
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import chapters  # noqa: E402
from hessreg.train import run  # noqa: E402

# (function name, file suffix) → part of the run, as train.run calls it: the optimizer step through the scheduler's
# wrapper of it, the test evaluation through torch.no_grad's decorator
PARTS = {"method steps": ("_step", "hessreg/steps.py"),
         "optimizer step": ("wrapper", "torch/optim/lr_scheduler.py"),
         "batches": ("train_batches", "hessreg/data.py"),
         "evaluation": ("decorate_context", "torch/utils/_contextlib.py")}
SAMPLE = {"02_sam_vs_psam": ("sgd", "sam", "psam"), "06_trace_penalties": ("gn_trace", "hessian_trace")}


def breakdown(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds per part, counting only calls made by ``hessreg.train.run`` itself (so nothing is
    counted twice); "method steps" is every ``*_step`` of hessreg/steps.py it calls."""
    out = dict.fromkeys(PARTS, 0.0)
    for (path, _, fn), (_, _, _, _, callers) in stats.stats.items():
        for part, (name, suffix) in PARTS.items():
            if path.endswith(suffix) and (fn.endswith(name) if part == "method steps" else fn == name):
                out[part] += sum(c[3] for key, c in callers.items() if key[0].endswith("hessreg/train.py")
                                 and key[2] == "run")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="noisy", choices=chapters.SCALES)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for chapter, methods in SAMPLE.items():
        configs = chapters.configs(chapter, chapters.load_params(chapter, args.scale))
        for m in methods:
            c = next(c for c in configs if c.method == m)
            run(dataclasses.replace(c, epochs=1))  # warm the data cache
            prof = cProfile.Profile()
            t = time.perf_counter()
            prof.enable()
            record = run(c)
            prof.disable()
            wall = time.perf_counter() - t
            parts = breakdown(pstats.Stats(prof))
            epochs = sum(h["time_s"] for h in record.history)
            parts["rest of the loop"] = max(epochs - parts["method steps"] - parts["optimizer step"]
                                            - parts["batches"], 0.0)
            parts["outside the epochs (setup, evaluation)"] = max(wall - epochs, 0.0)
            rows.append({"chapter": chapter, "method": m, "hparams": dict(c.hparams), "model": c.model, "wall_s": wall,
                         "epochs_s": epochs, "diverged": record.diverged,
                         "parts_s": parts, "shares": {k: v / wall for k, v in parts.items()}})
            print(f"{chapter} {m}: {wall:.1f} s; " + ", ".join(f"{k} {100 * v / wall:.0f} %"
                                                              for k, v in parts.items()), flush=True)
    out = {"scale": args.scale, "threads": 1, "load_avg": os.getloadavg(), "torch": torch.__version__,
           "note": "cProfile cumulative seconds; its per-call cost inflates the small parts", "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
