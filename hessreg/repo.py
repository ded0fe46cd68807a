"""The project on disk, a leaf every layer may import: where its files are (:func:`root`), the commit of the code
that produced a result (:func:`git_commit`), and writes that readers never see half done (:func:`write_atomic`).

The project root holds ``experiments/params`` (each chapter's parameter files), ``results/`` (committed records)
and ``_build/`` (build outputs, never committed). It is found from an explicit place, not from inside the
installed package: ``$HESSREG_ROOT``; else the current directory or its nearest parent holding
``experiments/params``; else the source checkout this package was imported from. :class:`RootNotFoundError`
names every place looked.
"""
from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no temp-file locks
    fcntl = None

PARAMS = Path("experiments") / "params"  # relative to the root
PACKAGE = Path(__file__).resolve().parent


class RootNotFoundError(FileNotFoundError):
    """No project root (a folder holding ``experiments/params``): the message lists where it was looked for."""


def root() -> Path:
    """The project root (see the module docstring): ``$HESSREG_ROOT``, else the current directory or its nearest
    parent holding ``experiments/params``, else the checkout holding this package."""
    env = os.environ.get("HESSREG_ROOT")
    if env:
        if (Path(env) / PARAMS).is_dir():
            return Path(env).resolve()
        raise RootNotFoundError(f"HESSREG_ROOT={env} holds no {PARAMS}/: point it at a hessreg checkout")
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS).is_dir():
            return folder
    if (PACKAGE.parent / PARAMS).is_dir():
        return PACKAGE.parent
    raise RootNotFoundError(
        f"no hessreg project root: looked for {PARAMS}/ in $HESSREG_ROOT (not set), in {here} and each of its "
        f"parents, and beside the package ({PACKAGE.parent}). Run from a hessreg checkout or set HESSREG_ROOT")


def build_dir(*parts: str) -> Path:
    """``<root>/_build/<parts>``: outputs that are never committed."""
    return root().joinpath("_build", *parts)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of this package's code, '+dirty' when its files differ from it (``$HESSREG_COMMIT`` or
    'unknown' outside a git checkout)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                               cwd=PACKAGE, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("HESSREG_COMMIT", "unknown")


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Write ``content`` (text or bytes) to ``path`` so that readers see the old file or the new one, never a
    part: a temporary file ``.<name>.<random>.tmp`` in the same folder, fsync'd, then renamed into place. The
    writer holds an ``flock`` on the temporary file, which tells :meth:`hessreg.results.RecordStore.clean` it is
    live."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide shared and committed records from other users
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)  # while the lock is held: clean() never sees this file unlocked
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
