"""Runs per hour of the cpu scale on this machine, per process layout: one process with T threads, or P processes
with one thread each (``experiments/sweep.py --shard i/P``), on the same sample of the cpu grid.

    python experiments/bench_layout.py --out results/bench/layout_cpu.json

The sample is every ``--every``-th run of the whole cpu grid (all chapters, in the order the sweep runs them), so it
has the grid's mix of cheap and costly methods. Each layout trains the sample from an empty temporary store; its
wall time gives runs per hour. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import chapters  # noqa: E402
from hessreg.repo import build_dir, write_atomic  # noqa: E402
from hessreg.sweep import unique  # noqa: E402

SAMPLE = build_dir("bench_layout_sample.json")


def sample(every: int) -> list[dict]:
    configs = unique(c for ch in chapters.GRIDS if chapters.has_params(ch, "cpu")
                     for c in chapters.configs(ch, chapters.load_params(ch, "cpu")))
    return [c.to_dict() for c in configs[::every]]


def worker(path: str, shard: str, threads: int, store: str) -> None:
    """Train this shard of the sample into ``store`` (a subprocess of :func:`layout`)."""
    import torch
    from hessreg.results import RecordStore
    from hessreg.sweep import sweep
    from hessreg.config import Config
    torch.set_num_threads(threads)
    configs = [Config.from_dict(d) for d in json.loads(Path(path).read_text())]
    i, n = (int(v) for v in shard.split("/"))
    sweep(configs, RecordStore(store), shard=(i, n), progress=False)


def layout(processes: int, threads: int) -> float:
    """Wall seconds to train the sample with ``processes`` processes of ``threads`` threads each."""
    with tempfile.TemporaryDirectory() as store:
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "HESSREG_WEIGHTS": str(build_dir("weights"))}
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", f"{i}/{processes}", "--threads",
                                   str(threads), "--store", store], env=env) for i in range(processes)]
        if any(p.wait() for p in procs):
            raise RuntimeError("a worker failed")
        return time.perf_counter() - t0


def main(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, default=40, help="take every n-th run of the cpu grid")
    ap.add_argument("--layouts", default="1x2,2x1", help="PxT: P processes of T threads, comma-separated")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(str(SAMPLE), args.worker, args.threads, args.store)
        return None
    runs = sample(args.every)
    write_atomic(SAMPLE, json.dumps(runs))
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "runs": len(runs), "every": args.every,
           "methods": sorted({r["method"] for r in runs}), "layouts": {}}
    for spec in args.layouts.split(","):
        p, t = (int(v) for v in spec.split("x"))
        seconds = layout(p, t)
        out["layouts"][spec] = {"processes": p, "threads": t, "wall_s": seconds, "runs_per_hour": 3600 * len(runs) / seconds}
        print(f"{p} process(es) × {t} thread(s): {seconds:.0f} s for {len(runs)} runs → "
              f"{3600 * len(runs) / seconds:.0f} runs/hour", flush=True)
    if args.out:
        write_atomic(Path(args.out), json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
