"""The record store: one JSON file per run, named by the hash of its canonical config, written atomically.

A run's record lives at ``<root>/<key>.json``. Writes go to a temporary file in the same folder and are renamed
into place (``os.replace`` is atomic on POSIX), so a killed process leaves either the whole record or none.

Stores by scale: ``results/records`` (committed, full and paper scale) and ``_build/records`` (smoke; or
``$HESSREG_STORE``). See :func:`store_for`.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from .train import Config, Record

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "results" / "records"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the code that produced a record, '+dirty' when the work tree differs from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "hessreg"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("HESSREG_COMMIT", "unknown")


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text or bytes) to ``path`` so that readers see the old file or the new one, never a
    part: a temporary file in the same folder, fsync'd, then renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RecordStore:
    """Records keyed by config: ``put``, ``get``, ``in``, iteration, and a DataFrame of everything."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RecordStore({str(self.root)!r})"

    def path(self, config: Config) -> Path:
        return self.root / f"{config.key}.json"

    def __contains__(self, config: Config) -> bool:
        return self.path(config).exists()

    def load(self, key: str) -> Record:
        """The record stored under ``key`` (``FileNotFoundError`` if there is none)."""
        return Record.from_dict(json.loads((self.root / f"{key}.json").read_text()))

    def get(self, config: Config) -> Record | None:
        try:
            record = self.load(config.key)
        except FileNotFoundError:
            return None
        if record.key != config.key:  # a file renamed by hand, or a hash collision: never mix configs
            raise ValueError(f"{self.path(config)} holds record {record.key}, not {config.key}")
        return record

    def put(self, record: Record) -> Path:
        path = self.root / f"{record.key}.json"
        write_atomic(path, json.dumps(record.to_dict(), indent=1, sort_keys=True))
        return path

    def __iter__(self) -> Iterator[Record]:
        for path in sorted(self.root.glob("*.json")):
            yield self.load(path.stem)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.json"))


def store_for(scale: str) -> RecordStore:
    """``results/records`` for cpu, full and paper scale (committed), ``$HESSREG_STORE`` or ``_build/records``
    for smoke (never committed)."""
    if scale == "smoke":
        return RecordStore(os.environ.get("HESSREG_STORE", REPO / "_build" / "records"))
    return RecordStore(COMMITTED)


def frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record: config fields, hyperparameters (``hp_<name>``), final metrics, provenance."""
    rows = []
    for r in records:
        cfg = dict(r.config)
        hp = cfg.pop("hparams", {}) or {}
        last = r.history[-1] if r.history else {}
        rows.append(cfg | {f"hp_{k}": v for k, v in hp.items()} | {
            "key": r.key, "test_acc": r.test_acc, "test_loss": r.test_loss, "val_acc": r.val_acc,
            "train_loss": last.get("train_loss"), "train_acc": last.get("train_acc"),
            "epochs_done": len(r.history), "diverged": r.diverged, "wall_time_s": r.wall_time_s,
            "commit": r.provenance.get("commit"), "device_name": r.provenance.get("device"),
            "torch": r.provenance.get("torch"), "threads": r.provenance.get("threads")})
    return pd.DataFrame(rows)


def history_frame(records: Iterable[Record]) -> pd.DataFrame:
    """Long format learning curves: one row per (record, epoch) with the record's key, method, activation,
    hyperparameters (``hp_<name>``) and seed beside the epoch's entries (train loss/accuracy, lr, penalty)."""
    rows = []
    for r in records:
        hp = {f"hp_{k}": v for k, v in (r.config.get("hparams") or {}).items()}
        ident = {"key": r.key, "method": r.config["method"], "activation": r.config["activation"],
                 "seed": r.config["seed"], "diverged": r.diverged} | hp
        rows += [ident | h for h in r.history]
    return pd.DataFrame(rows)


def metrics_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per (record, measurement): key, activation, β, method, seed, when ('init'/'final'), name, and the
    measurement's scalar fields (a dict value is spread into columns)."""
    rows = []
    for r in records:
        ident = {"key": r.key, "method": r.config["method"], "activation": r.config["activation"],
                 "beta": r.config.get("beta"), "seed": r.config["seed"]}
        for m in r.metrics:
            if m["value"] is None:  # not measured (a diverged run's final weights)
                continue
            value = m["value"] if isinstance(m["value"], dict) else {"value": m["value"]}
            rows.append(ident | {"when": m["when"], "name": m["name"]} |
                        {k: v for k, v in value.items() if not isinstance(v, dict)})
    return pd.DataFrame(rows)
