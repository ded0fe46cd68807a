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
from hessreg import book, chapters, distributed, results  # noqa: E402
from hessreg.data import DataNotFoundError  # noqa: E402
from hessreg.sweep import GridError, sweep  # noqa: E402


def shard(text: str) -> tuple[int, int]:
    """``--shard i/n`` as (i, n), refused by argparse unless 0 ≤ i < n."""
    i, slash, n = text.partition("/")
    if not (slash and i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise argparse.ArgumentTypeError(f"expected i/n with 0 ≤ i < n (e.g. 0/4), got {text!r}")
    return int(i), int(n)


def chapter_configs(chapter: str, scale: str, overrides: list[str]) -> list:
    """The chapter's runs at ``scale`` with ``--set NAME=VALUE`` overrides (VALUE as YAML), every parameter
    checked as the notebook checks it (:func:`hessreg.book.check_parameters`) and every config validated."""
    params = chapters.load_params(chapter, scale)
    for item in overrides:
        name, _, value = item.partition("=")
        try:
            params[name] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: the value is not YAML ({str(e).splitlines()[0]})") from None
    return chapters.configs(chapter, book.check_parameters(chapter, **params))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="+", help=f"'all', or one or more of: {', '.join(chapters.GRIDS)}")
    ap.add_argument("--scale", default="full", choices=chapters.SCALES)
    ap.add_argument("--shard", default=(0, 1), type=shard, help="i/n: run every n-th config starting at i")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    ap.add_argument("--dry-run", action="store_true", help="only count the runs and how many are stored")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads per process (default 1: on 2 cores two 1-thread processes do more work than "
                         "one 2-thread process; the count is in each record's provenance, as results depend on it)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    i, n = args.shard
    names = args.chapters
    if names == ["all"]:  # every chapter with runs at this scale (the cpu-scale appendix has no full scale)
        names = [c for c in chapters.GRIDS if chapters.has_params(c, args.scale)]
    try:  # every chapter's configs validated before any training
        configs = [c for chapter in names for c in chapter_configs(chapter, args.scale, args.set)]
    except (ValueError, TypeError, FileNotFoundError) as e:
        # the checks' errors (unknown chapter or parameter, a scale the chapter lacks, a bad value or type) name
        # what is wrong: said as argparse says a bad argument, no traceback
        ap.error(str(e))
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
