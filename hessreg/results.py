"""The record store: one JSON file per run, named by the hash of its canonical config, written atomically.

A run's record lives at ``<root>/<key>.json``. Stores by scale: ``results/records`` (committed, cpu, full and
paper scale) and ``_build/records`` (smoke; or ``$HESSREG_STORE``). See :func:`store_for`.

**Faults and what each gets** (tests/test_faults.py injects every one):

- *A killed process* (SIGKILL mid-run or mid-write). Writes go to a temporary file ``.<name>.<random>.tmp`` in
  the same folder, fsync'd and renamed into place (``os.replace`` is atomic on POSIX): readers see the whole
  record or none. A temporary file left by a killed write is never read (iteration and ``len`` see only
  ``*.json``) and :meth:`RecordStore.clean` removes it (its writer holds an ``flock`` on it while writing, so a
  live write is never removed). The next sweep trains what is missing.
- *A record file that cannot be read* (truncated, not JSON, not a record, or the record of another key: a copy
  cut short by another tool, a bad merge, a hand edit). **Choice: a clear error, never a silent repair.**
  Reading it raises :class:`CorruptRecordError` naming the file and the two ways on (restore it from git, or
  move it aside so that the next sweep redoes the run). A record store is evidence, so nothing in it is
  renamed or deleted without a person deciding; and :func:`hessreg.sweep.sweep` reads every stored record of
  its grid before the first run, so the error comes before any training, not after hours of it.
- *Two processes given the same runs* (the same shard twice, or a sweep started while another runs). A run is
  claimed before it trains (:meth:`RecordStore.claim`: ``<key>.lock``, an exclusive ``flock`` held for the run
  and the file's pid for people to read). A process skips a run another one holds and comes back to it at the
  end: if it is still missing then (its holder died), it trains it. The kernel drops a dead process's
  ``flock``, so a lock left by a killed process is stale by construction and taken over, whatever its pid.
- *A store that cannot be written* (read-only, no permission, a full disk). :meth:`RecordStore.check_writable`
  writes and removes a probe file before the first run, and fails with :class:`StoreError` naming the folder.
  A write that fails after a run (ENOSPC) raises :class:`StoreError` naming the record's path; the temporary
  file is removed, so no partial file is left.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from .config import Config, Record
from .repo import build_dir, root, write_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no claims (one process per store)
    fcntl = None

log = logging.getLogger(__name__)


class StoreError(OSError):
    """The store cannot be written: the message names the folder or file and what to do."""


class CorruptRecordError(ValueError):
    """A file in the store is not a readable record of its key; ``path`` names it."""

    def __init__(self, path: Path, why: str):
        self.path = path
        super().__init__(
            f"{path}: {why}. hessreg writes a record whole or not at all, so this file was cut short or changed by "
            f"something else (a truncated copy, a bad merge, a hand edit). Restore it (`git checkout -- {path}` "
            f"if it is committed), or move it aside (`mv {path} {path}.corrupt`): the next sweep then redoes "
            "that run.")


def _try_lock(path: Path, wait: bool, create: bool = True) -> int | None:
    """An open descriptor of ``path`` holding its exclusive ``flock``, or None when another process holds it
    (only without ``wait``). The file is created when missing (else ``FileNotFoundError``). A holder removes
    the file before it lets go, so a lock won on a file that is no longer at ``path`` is dropped and tried
    again."""
    while True:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _unlock(path: Path, fd: int) -> None:
    """Remove ``path`` while its lock is held, then let go (the order that keeps :func:`_try_lock` sound)."""
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


class RecordStore:
    """Records keyed by config: ``put``, ``get``, ``in``, iteration, claims; see the module docstring for the
    faults it survives."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RecordStore({str(self.root)!r})"

    def path(self, config: Config) -> Path:
        return self.root / f"{config.key}.json"

    def __contains__(self, config: Config) -> bool:
        return self.path(config).exists()

    def load(self, key: str) -> Record:
        """The record stored under ``key``: ``FileNotFoundError`` if there is none, :class:`CorruptRecordError`
        if the file is not a whole record of that key."""
        path = self.root / f"{key}.json"
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptRecordError(path, f"not valid JSON, cut short or garbled ({e})") from None
        if not isinstance(d, dict):
            raise CorruptRecordError(path, f"not a record (a JSON {type(d).__name__}, not an object)")
        missing = [f for f in ("key", "config", "history", "diverged", "provenance") if f not in d]
        if missing or not isinstance(d["config"], dict):
            raise CorruptRecordError(path, f"not a record (no {', '.join(missing) or 'config object'})")
        if d["key"] != key:  # a file renamed by hand, or a hash collision: never mix configs
            raise CorruptRecordError(path, f"holds the record of key {d['key']}, not {key}")
        try:
            return Record.from_dict(d)
        except TypeError as e:
            raise CorruptRecordError(path, f"not a record ({e})") from None

    def get(self, config: Config) -> Record | None:
        """The record of ``config``, None if it has not run (errors as :meth:`load`)."""
        try:
            return self.load(config.key)
        except FileNotFoundError:
            return None

    def put(self, record: Record) -> Path:
        """Write ``record`` atomically; :class:`StoreError` naming the path when the write fails (nothing partial
        is left; the exception's ``record`` holds the record that could not be written)."""
        path = self.root / f"{record.key}.json"
        try:
            write_atomic(path, json.dumps(record.to_dict(), indent=1, sort_keys=True))
        except OSError as e:
            err = StoreError(f"could not write the record {path} ({e.strerror or e}); no partial file was left. "
                             "Free space or fix the folder's permissions, then rerun the sweep: it skips stored "
                             "runs and redoes this one")
            err.errno, err.record = e.errno, record
            raise err from e
        return path

    def __iter__(self) -> Iterator[Record]:
        for path in sorted(self.root.glob("*.json")):  # temporary files (.<name>.json.<random>.tmp) never match
            yield self.load(path.stem)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.json"))

    # ------------------------------------------------------------------------------------- faults and claims

    def check_writable(self) -> None:
        """Raise :class:`StoreError` naming the folder unless a record can be written there now: the folder is
        created, then a probe file written through :func:`~hessreg.repo.write_atomic` (fsync'd: a full disk fails here, not
        after a run) and removed."""
        probe = self.root / f".write-probe-{os.getpid()}.tmp"  # left by a kill: clean() removes it
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):  # (root passes this; the probe catches the rest)
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            write_atomic(probe, b"probe")
            probe.unlink()
        except OSError as e:
            err = StoreError(f"the record store {self.root} is not writable ({e.strerror or e}); nothing was "
                             "trained. Fix its permissions or free space, or write elsewhere (HESSREG_STORE=<folder> "
                             "at smoke scale, RecordStore(<folder>) in code)")
            err.errno = e.errno
            raise err from e

    @contextlib.contextmanager
    def claim(self, config: Config, *, wait: bool = False) -> Iterator[bool]:
        """Hold ``config``'s claim while the block runs: yields True when this process holds it, False when
        another process does (without ``wait``; with it, block until that process lets go). The claim file
        ``<key>.lock`` holds the claimant's pid and host for people; the claim itself is an ``flock``, which the
        kernel drops when its process dies, so a claim left by a killed process is taken over."""
        if fcntl is None:  # pragma: no cover
            yield True
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{config.key}.lock"
        fd = _try_lock(path, wait)
        if fd is None:
            yield False
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            yield True
        finally:
            _unlock(path, fd)

    def claimant(self, config: Config) -> str:
        """Who holds ``config``'s claim ("<pid> <host> <since>"), as its lock file says; "" if nobody."""
        try:
            return (self.root / f"{config.key}.lock").read_text().strip()
        except FileNotFoundError:
            return ""

    def clean(self, min_age_s: float = 60.0) -> list[Path]:
        """Remove what killed processes left: claim files nobody holds and temporary files older than
        ``min_age_s`` that no writer holds. Returns the removed paths (each also logged)."""
        if fcntl is None or not self.root.is_dir():  # pragma: no cover
            return []
        removed = []
        now = time.time()
        for path in sorted(self.root.glob("*.lock")) + sorted(self.root.glob(".*.tmp")):
            try:
                if path.suffix == ".tmp" and now - path.stat().st_mtime < min_age_s:
                    continue  # a write may be starting: it takes its lock right after creating the file
                fd = _try_lock(path, wait=False, create=False)
            except FileNotFoundError:
                continue
            if fd is not None:
                _unlock(path, fd)
                removed.append(path)
                log.warning("removed %s, left by a killed process", path)
        return removed


def store_for(scale: str) -> RecordStore:
    """``<root>/results/records`` for cpu, full and paper scale (committed), ``$HESSREG_STORE`` or
    ``<root>/_build/records`` for smoke (never committed); the root is :func:`hessreg.repo.root`."""
    if scale == "smoke":
        return RecordStore(os.environ.get("HESSREG_STORE") or build_dir("records"))
    return RecordStore(root() / "results" / "records")


def frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record: config fields, hyperparameters (``hp_<name>``), final metrics, provenance."""
    rows = []
    for r in records:
        cfg = dict(r.config)
        hp = cfg.pop("hparams", {}) or {}
        last = r.history[-1] if r.history else {}
        rows.append(cfg | {f"hp_{k}": v for k, v in hp.items()} | {
            "key": r.key, "test_acc": r.test_acc, "test_loss": r.test_loss, "val_acc": r.val_acc,
            "val_loss": r.val_loss, "train_accs": [h.get("train_acc") for h in r.history],
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
