"""Execute chapters with papermill at a scale, into an output folder.

    python experiments/run.py                                   # every chapter, smoke scale, into _build/executed
    python experiments/run.py 01_sgd_activations --scale full --out _build/full
    python experiments/run.py 01_sgd_activations --scale full -p seeds '[0, 1]' -p device cuda

Parameters come from ``experiments/params/<chapter>/<scale>.yaml``; ``-p NAME VALUE`` overrides one (VALUE
is parsed as YAML). Every parameter is checked, as the notebook checks it, before any chapter runs.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import papermill
import yaml
from traitlets.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import book, chapters, sources  # noqa: E402
from hessreg.repo import build_dir, root  # noqa: E402


def execute(notebook: Path, output: Path, parameters: dict, *, kernel: str, cwd: Path):
    """``papermill.execute_notebook`` with the kernel on IPC sockets in a private temporary folder.

    Over TCP (Jupyter's default, even on localhost) the kernel's traffic is plain text on ports any local user can
    reach, and ipykernel warns about it at every start; a Unix socket in a folder only this user can open is
    private, so there is nothing to warn about. The socket path is set here because jupyter_client's IPC default
    (``kernel-ipc-<n>`` in the current directory) would put sockets in book/ and be shared by concurrent runs."""
    with tempfile.TemporaryDirectory(prefix="hessreg-kernel-") as sockets:
        ipc = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})
        return papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                                          cwd=str(cwd), progress_bar=False, config=ipc)


def override(name: str, value: str):
    """``-p NAME VALUE``'s value, read as YAML."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ValueError(f"-p {name} {value!r}: the value is not YAML ({str(e).splitlines()[0]})") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help=f"default: all ({', '.join(chapters.names())})")
    ap.add_argument("--scale", default="smoke", choices=chapters.SCALES)
    ap.add_argument("--out", default=str(build_dir("executed")))
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--kernel", default="hessreg", help="Jupyter kernel name (make setup registers 'hessreg')")
    args = ap.parse_args(argv)
    names = args.chapters or chapters.names()
    try:  # the notebook's own check, run here first: a bad parameter is refused before any chapter starts
        overrides = {k: override(k, v) for k, v in args.param}
        jobs = [(chapter, chapters.load_params(chapter, args.scale) | overrides) for chapter in names]
        for chapter, params in jobs:
            book.check_parameters(chapter, **params)
    except (ValueError, TypeError, FileNotFoundError) as e:
        # unknown chapter or parameter, a scale the chapter lacks, a bad value or type: the message says which
        ap.error(str(e))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.chapters:
        jobs.append(("intro", {}))  # the landing page's scoreboard reads the verdicts the chapters just saved
    for name, params in jobs:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="hessreg-nb-") as tmp:  # papermill reads .ipynb; the source is MyST
            execute(sources.to_ipynb(name, Path(tmp)), out / f"{name}.ipynb", params, kernel=args.kernel,
                    cwd=root() / "book")
        print(f"{name}: executed at {args.scale} scale in {time.perf_counter() - t0:.0f} s → {out / name}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
