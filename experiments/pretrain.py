"""Commit the backbones a chapter's fine-tuning runs start from: ``results/weights/<key>.pt`` and its record.

    python experiments/pretrain.py 12_nso_accuracy --scale cpu

Each ``pretrain:`` init of the chapter's grid is trained by ``hessreg.train.pretrained`` (or taken from the local
cache, ``_build/weights``, where an earlier run left it) and copied into ``results/weights`` with its training
record, which names the file's SHA-256. Fine-tuning records then name that SHA-256 in their provenance. Commit
both files: every record fine-tuned from the backbone depends on its exact bytes.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import chapters, train  # noqa: E402
from hessreg.config import pretrain_config  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapter", choices=list(chapters.GRIDS), metavar="CHAPTER", help="a chapter with runs")
    ap.add_argument("--scale", default="cpu", choices=chapters.SCALES)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (as the sweeps use: 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    specs = sorted({c.init for c in chapters.configs(args.chapter, chapters.load_params(args.chapter, args.scale))
                    if c.init and c.init.startswith("pretrain:")})
    if not specs:
        ap.exit(2, f"{ap.prog}: error: chapter {args.chapter} at {args.scale} scale fine-tunes no pretrained model\n")
    target = train.committed_weights_dir()
    for spec in specs:
        _, digest = train.pretrained(spec, "cpu")
        key = pretrain_config(spec).key
        if not (target / f"{key}.pt").exists():
            target.mkdir(parents=True, exist_ok=True)
            for suffix in (".json", ".pt"):  # the record first: a backbone is only read beside its record
                shutil.copyfile(train.weights_dir() / f"{key}{suffix}", target / f"{key}{suffix}")
        print(f"{spec}\n  → {target / key}.pt  sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
