"""Runs per hour of a scale on this machine, per process layout (one process with T threads, or P processes with
one thread each, as ``experiments/sweep.py --shard i/P``) and per variant (allocator, memory format), on the same
sample of its grid.

    python experiments/bench_layout.py --out results/bench/layout_cpu.json
    python experiments/bench_layout.py --scale noisy_cnn --every 9 --epochs 2 --layouts 2x1 --repeats 2 \
        --variants glibc,retained,retained+channels_last --out results/bench/layout_noisy_cnn_variants.json

The sample is every ``--every``-th run of the scale's whole grid (all chapters, in the order the sweep runs them),
so it has the grid's mix of cheap and costly methods; ``--epochs`` shortens every run of it alike. Each (layout,
variant) trains the sample from an empty temporary store and its wall time gives runs per hour; with ``--repeats``
they alternate (A, B, A, B), so a machine that drifts shifts all alike. A short sample's wall time waits for its
slowest shard, so the runs' own summed wall times are reported too (``runs_per_hour_busy``: P processes kept busy,
as a long sweep keeps them). A variant names an allocator — ``glibc``
leaves glibc's malloc defaults, ``retained`` keeps freed memory in the process as training does
(``hessreg.allocator``) — and ``+channels_last`` trains with ``memory_format="channels_last"`` (another float
rounding, so other records). The first repeat's records are compared with the first variant's, run by run:
``all_identical`` (bit for bit) where the memory format is the same, the largest differences where it is not.
Run it on an otherwise idle machine.
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


ALLOCATORS = ("glibc", "retained")
OPTIONS = ("channels_last",)  # after a "+": a config field the variant sets


def parse_variant(spec: str) -> tuple[str, str]:
    """'retained+channels_last' → ('retained', 'channels_last'); ValueError naming the valid parts otherwise."""
    allocator_setting, *options = spec.split("+")
    if allocator_setting not in ALLOCATORS or any(o not in OPTIONS for o in options) or len(options) > 1:
        raise ValueError(f"unknown variant {spec!r}; valid: an allocator ({', '.join(ALLOCATORS)}), optionally "
                         f"+{' or +'.join(OPTIONS)}")
    return allocator_setting, options[0] if options else "nchw"


def sample(scale: str, every: int, epochs: int | None = None) -> list[dict]:
    configs = unique(c for ch in chapters.GRIDS if chapters.has_params(ch, scale)
                     for c in chapters.configs(ch, chapters.load_params(ch, scale)))
    return [c.to_dict() | ({"epochs": epochs} if epochs else {}) for c in configs[::every]]


def configs_of(variant: str, runs: list[dict]):
    from hessreg.config import Config
    return [Config.from_dict(d | {"memory_format": parse_variant(variant)[1]}) for d in runs]


def worker(path: str, shard: str, threads: int, store: str, variant: str) -> None:
    """Train this shard of the sample into ``store`` (a subprocess of :func:`layout`)."""
    import torch
    from hessreg import allocator
    from hessreg.results import RecordStore
    from hessreg.sweep import sweep
    torch.set_num_threads(threads)
    if parse_variant(variant)[0] == "glibc":
        allocator._state = False  # as if already tried and refused: training leaves glibc's defaults
    i, n = (int(v) for v in shard.split("/"))
    sweep(configs_of(variant, json.loads(Path(path).read_text())), RecordStore(store), shard=(i, n), progress=False)


def layout(processes: int, threads: int, variant: str, store: str) -> float:
    """Wall seconds to train the sample into ``store`` with ``processes`` processes of ``threads`` threads."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "HESSREG_WEIGHTS": str(build_dir("weights"))}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", f"{i}/{processes}", "--threads", str(threads),
                               "--store", store, "--variant", variant], env=env)
             for i in range(processes)]
    if any(p.wait() for p in procs):
        raise RuntimeError("a worker failed")
    return time.perf_counter() - t0


def run_seconds(store: str) -> float:
    """The summed wall time of the runs in ``store`` (each record's own ``wall_time_s``): what the sample costs with
    every process busy, without the wait for the last shard that a short sample's wall time includes."""
    from hessreg.results import RecordStore
    return sum(r.wall_time_s for r in RecordStore(store))


def compare(stores: dict[str, str], runs: list[dict]) -> dict:
    """Each variant's records against the first variant's, run by run (``provenance.differences``): identical
    bit for bit where the memory format is the same; otherwise how far apart (another float rounding)."""
    from hessreg.provenance import differences
    from hessreg.results import RecordStore
    (base, base_store), *others = stores.items()
    first = [RecordStore(base_store).load(c.key) for c in configs_of(base, runs)]
    out = {}
    for variant, store in others:
        again = [RecordStore(store).load(c.key) for c in configs_of(variant, runs)]
        diffs = [differences(a, b) for a, b in zip(first, again)]
        out[variant] = {"against": base, "records": len(diffs), "all_identical": all(d["identical"] for d in diffs),
                        "same_memory_format": parse_variant(variant)[1] == parse_variant(base)[1],
                        "max_test_acc_pp": max(d["test_acc_pp"] for d in diffs),
                        "max_first_epoch_train_loss_rel": max(d["first_epoch_train_loss_rel"] or 0 for d in diffs)}
    return out


def main(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="cpu", choices=[s for s in chapters.SCALES if any(
        chapters.has_params(ch, s) for ch in chapters.GRIDS)], help="the grid sampled")
    ap.add_argument("--every", type=int, default=40, help="take every n-th run of the scale's grid")
    ap.add_argument("--epochs", type=int, default=None, help="train each sampled run for this many epochs")
    ap.add_argument("--layouts", default="1x2,2x1", help="PxT: P processes of T threads, comma-separated")
    ap.add_argument("--variants", default="retained",
                    help=f"comma-separated, alternated: an allocator ({', '.join(ALLOCATORS)}), optionally "
                         "+channels_last (see the module docstring); the first is the baseline")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of every (layout, variant)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="retained", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(str(SAMPLE), args.worker, args.threads, args.store, args.variant)
        return None
    variants = [v.strip() for v in args.variants.split(",")]
    try:
        [parse_variant(v) for v in variants]
    except ValueError as e:
        ap.error(str(e))
    runs = sample(args.scale, args.every, args.epochs)
    write_atomic(SAMPLE, json.dumps(runs))
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "scale": args.scale, "runs": len(runs),
           "every": args.every, "epochs": args.epochs or "the grid's", "methods": sorted({r["method"] for r in runs}),
           "order": f"{args.repeats} round(s) of {', '.join(variants)} per layout, alternated", "layouts": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.layouts.split(","):
            p, t = (int(v) for v in spec.split("x"))
            entry = out["layouts"][spec] = {"processes": p, "threads": t, "variants": {}}
            kept = {}
            for r in range(args.repeats):
                for a in variants:
                    store = kept.setdefault(a, f"{tmp}/{spec}-{a}") if r == 0 else tempfile.mkdtemp(dir=tmp)
                    seconds = layout(p, t, a, store)
                    busy = run_seconds(store)
                    now = {"wall_s": seconds, "runs_per_hour": 3600 * len(runs) / seconds, "run_s": busy,
                           "runs_per_hour_busy": p * 3600 * len(runs) / busy}
                    row = entry["variants"].setdefault(a, {k: [] for k in now})
                    for k, v in now.items():
                        row[k].append(v)
                    print(f"{p} process(es) × {t} thread(s), {a}: {seconds:.0f} s for {len(runs)} runs → "
                          f"{now['runs_per_hour']:.0f} runs/hour; the runs themselves {busy:.0f} s → "
                          f"{now['runs_per_hour_busy']:.0f} runs/hour with every process busy", flush=True)
            if len(kept) > 1:
                entry["records"] = compare(kept, runs)
                for metric in ("runs_per_hour", "runs_per_hour_busy"):
                    rph = {a: sum(v[metric]) / len(v[metric]) for a, v in entry["variants"].items()}
                    entry[f"speedup_{metric}"] = {a: rph[a] / rph[variants[0]] for a in variants[1:]}
    if args.out:
        write_atomic(Path(args.out), json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
