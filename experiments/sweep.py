"""Run a chapter's grid straight through hessreg — no Jupyter needed (for a bare GPU machine).

    python experiments/sweep.py 01_sgd_activations --scale full                 # the whole grid
    python experiments/sweep.py 01_sgd_activations --scale full --shard 0/4     # one of 4 processes
    python experiments/sweep.py 01_sgd_activations --scale full --set device=cuda --set seeds='[0]'
    python experiments/sweep.py all --scale full --shard 2/4                     # every chapter's runs
    python experiments/sweep.py all --scale cpu --shard 0/2 & python experiments/sweep.py all --scale cpu --shard 1/2
    torchrun --nproc_per_node 8 experiments/sweep.py 12_nso_accuracy --scale paper   # one run on 8 GPUs at a time

Records go to the scale's store (``results/records`` for cpu, full and paper). Rerunning skips stored runs.
Under torchrun the ranks train each run together (each takes its share of every global batch, one GPU per rank);
rank 0 alone writes records and prints.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hessreg import chapters, distributed, results  # noqa: E402
from hessreg.data import DataNotFoundError  # noqa: E402
from hessreg.sweep import GridError, sweep  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="+", help=f"'all', or one or more of: {', '.join(chapters.GRIDS)}")
    ap.add_argument("--scale", default="full", choices=chapters.SCALES)
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th config starting at i")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    ap.add_argument("--dry-run", action="store_true", help="only count the runs and how many are stored")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads per process (default 1: on 2 cores two 1-thread processes do more work than "
                         "one 2-thread process; the count is in each record's provenance, as results depend on it)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    i, n = (int(v) for v in args.shard.split("/"))
    configs = []
    names = args.chapters
    if names == ["all"]:  # every chapter with runs at this scale (the cpu-scale appendix has no full scale)
        names = [c for c in chapters.GRIDS if chapters.has_params(c, args.scale)]
    for chapter in names:
        params = chapters.load_params(chapter, args.scale)
        for item in args.set:
            name, _, value = item.partition("=")
            if name not in params:
                ap.error(f"unknown parameter {name!r}; valid: {', '.join(params)}")
            params[name] = yaml.safe_load(value)
        configs += chapters.configs(chapter, params)  # every config validated before any training
    rank, world = distributed.init_from_env()  # torchrun: one process group, one device per rank
    try:
        df = sweep(configs, results.store_for(args.scale), shard=(i, n), desc=f"shard {i}/{n}",
                   train=not args.dry_run)
    except (GridError, results.CorruptRecordError, results.StoreError, DataNotFoundError) as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")  # each names what is wrong and the way on: no traceback needed
    distributed.finish()
    if rank == 0:
        print(f"{len(df)} of {df.attrs['requested']} distinct runs stored in {df.attrs['store']}"
              + (f" ({world} ranks per run)" if world > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
