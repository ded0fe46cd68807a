"""Execute chapters with papermill at a scale, into an output folder.

    python experiments/run.py                                   # every chapter, smoke scale, into _build/executed
    python experiments/run.py 01_sgd_activations --scale full --out _build/full
    python experiments/run.py 01_sgd_activations --scale full -p seeds '[0, 1]' -p device cuda

Parameters come from ``experiments/params/<chapter>/<scale>.yaml``; ``-p NAME VALUE`` overrides one (VALUE
is parsed as YAML). The notebook checks every parameter's type before it trains anything.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import papermill
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import chapters  # noqa: E402
from hessreg.repo import build_dir, root  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help=f"default: all ({', '.join(chapters.names())})")
    ap.add_argument("--scale", default="smoke", choices=chapters.SCALES)
    ap.add_argument("--out", default=str(build_dir("executed")))
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--kernel", default="hessreg", help="Jupyter kernel name (make setup registers 'hessreg')")
    args = ap.parse_args(argv)
    names = args.chapters or chapters.names()
    for chapter in names:
        chapters.check_chapter(chapter)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(chapter, chapters.load_params(chapter, args.scale) | {k: yaml.safe_load(v) for k, v in args.param})
            for chapter in names]
    if not args.chapters:
        jobs.append(("intro", {}))  # the landing page's scoreboard reads the verdicts the chapters just saved
    for name, params in jobs:
        t0 = time.perf_counter()
        papermill.execute_notebook(root() / "book" / f"{name}.ipynb", out / f"{name}.ipynb", parameters=params,
                                   kernel_name=args.kernel, cwd=str(root() / "book"), progress_bar=False)
        print(f"{name}: executed at {args.scale} scale in {time.perf_counter() - t0:.0f} s → {out / name}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
