"""A grid of runs: validated up front, cached in a :class:`~hessreg.results.RecordStore`, resumable.

``grid`` builds configs as the product of axes; ``sweep`` runs the ones the store lacks (each record written
atomically as soon as its run ends, so a killed sweep resumes with nothing lost) and returns every record of
the grid as a DataFrame. Several processes may share one grid (``shard=(i, n)``): each takes every n-th
run of the grid; on one GPU a few processes give about twice the throughput of one; under torchrun the ranks of a
process group train each run together (:mod:`hessreg.distributed`). Each run is
claimed while it trains, so processes given the same runs (the same shard twice) never train one twice.
Everything that can be refused is refused before the first run: configs as they are built (``Config``), their
sizes against the data, a corrupt stored record, a store that cannot be written (see :func:`sweep`).
"""
from __future__ import annotations

import dataclasses
import itertools
import sys
from typing import Any, Iterable, Sequence

import pandas as pd
from tqdm import tqdm

from . import distributed, results, sizes
from .config import Config, pretrain_config
from .repo import git_commit
from .train import run

CONFIG_FIELDS = {f.name for f in dataclasses.fields(Config)} - {"hparams"}
# Progress bars go to the process's own stderr, and only when it is a terminal: never into a notebook's output (a
# Jupyter kernel's sys.stderr is the cell's output, and ipykernel forwards its file descriptor 2 there too) nor into
# a log file.
TERMINAL = sys.__stderr__


def _bars(progress: bool) -> bool:
    return progress and TERMINAL is not None and TERMINAL.isatty()


def grid(base: Config | None = None, **axes: Sequence[Any]) -> list[Config]:
    """The product of ``axes`` over ``base``. An axis named after a Config field sets that field; any other
    name sets a method hyperparameter (``rho=[0.01, 0.1]`` → ``hparams={"rho": …}``). Each config is
    validated as it is built, so a bad value fails here, before any training."""
    base = base or Config()
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"grid axis {name!r} must be a list of values, got {values!r}")
    names = list(axes)
    out = []
    for combo in itertools.product(*(list(axes[n]) for n in names)):
        fields = {n: v for n, v in zip(names, combo) if n in CONFIG_FIELDS}
        hp = dict(base.hparams) | {n: v for n, v in zip(names, combo) if n not in CONFIG_FIELDS}
        out.append(base.replace(**fields, hparams=hp))
    return out


def unique(configs: Iterable[Config]) -> list[Config]:
    """Configs with duplicate keys dropped (first kept), order preserved."""
    seen, out = set(), []
    for c in configs:
        if c.key not in seen:
            seen.add(c.key)
            out.append(c)
    return out


class GridError(ValueError):
    """Configs of a grid that the data cannot serve (a subset larger than the dataset, …): one message for the
    whole grid, raised before any run trains."""


def check_data(configs: Iterable[Config]) -> None:
    """Check every config's sizes against its dataset (:func:`hessreg.sizes.check_sizes`; a ``pretrain:`` init's
    pretraining run too) and raise one :class:`GridError` listing each problem once with the configs it
    concerns. The data is looked up, not loaded: missing data raises ``DataNotFoundError`` here."""
    problems: dict[str, list[str]] = {}
    known: dict[tuple, sizes.Sizes | None] = {}
    verdicts: dict[tuple, str | None] = {}  # the check's message per distinct set of fields (None: fine)
    for config in configs:
        runs = [config]
        if config.init and config.init.startswith("pretrain:"):
            runs.append(pretrain_config(config.init, "cpu"))
        for c in runs:
            fields = (c.dataset, c.train_size, c.test_size, c.val_size, c.batch_size, c.data_root)
            if fields not in verdicts:
                where = (c.dataset, c.data_root)
                if where not in known:
                    known[where] = sizes.dataset_sizes(c.dataset, c.data_root)
                try:
                    sizes.check_sizes(c.dataset, train_size=c.train_size, test_size=c.test_size,
                                      val_size=c.val_size, batch_size=c.batch_size, root=c.data_root,
                                      sizes=known[where])
                    verdicts[fields] = None
                except ValueError as e:
                    verdicts[fields] = str(e)
            if verdicts[fields]:
                label = _label(config) + (" (its pretraining)" if c is not config else "")
                problems.setdefault(verdicts[fields], []).append(label)
    if problems:
        lines = [f"- {msg} [{len(who)} config(s), e.g. {who[0]}]" for msg, who in problems.items()]
        raise GridError("the grid asks for data its dataset does not have; nothing was trained:\n" + "\n".join(lines))


def sweep(configs: Iterable[Config], store: results.RecordStore, *, progress: bool = True,
          shard: tuple[int, int] = (0, 1), train: bool = True, desc: str = "runs") -> pd.DataFrame:
    """Run every config the store lacks, then return all the grid's stored records as a DataFrame.

    ``train=False`` only reads: missing runs are left out of the frame (and counted in ``frame.attrs``).

    Before the first run trains: every stored record of the grid is read (a corrupt one raises
    :class:`~hessreg.results.CorruptRecordError` naming it), every config's sizes are checked against its data
    (:func:`check_data`), the store is checked writable and cleaned of what killed processes left. Each run is
    claimed while it trains (:meth:`~hessreg.results.RecordStore.claim`): a run another process holds is skipped
    and, if it is still missing when this process's other runs are done, waited for and trained here.
    """
    configs = unique(configs)
    if train:
        git_commit()  # pinned now, when this process has loaded its code (records name it; it is cached)
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard must be (i, n) with 0 ≤ i < n, got {shard}")
    if distributed.rank_and_world()[1] > 1:
        return _sweep_ranks(configs, store, progress=progress, shard=shard, train=train, desc=desc)
    mine = _to_train(configs, store, shard) if train else []
    bar = tqdm(total=len(mine), desc=desc, unit="run", disable=not _bars(progress) or not mine, file=TERMINAL)
    later = []  # claimed by another process when their turn came
    for config in mine:
        bar.set_postfix_str(_label(config), refresh=False)
        with store.claim(config) as held:
            if not held:
                later.append(config)
                continue
            if config not in store:  # another process may have stored it since this one looked
                store.put(run(config))
        bar.update()
    for config in later:
        if config in store:
            bar.update()
            continue
        if progress:
            bar.write(f"waiting for {_label(config)}, claimed by {store.claimant(config) or 'another process'}",
                      file=TERMINAL)
        with store.claim(config, wait=True):
            if config not in store:  # its holder died or failed: train it here
                store.put(run(config))
        bar.update()
    bar.close()
    return _frame(configs, store)


def _to_train(configs: list[Config], store: results.RecordStore, shard: tuple[int, int]) -> list[Config]:
    """This shard's runs that the store lacks (a fixed partition of the grid). When any run of the grid is
    missing, everything that can be refused is refused first: every stored record of the grid is read (a corrupt
    one raises), every config's sizes are checked against its data, the store is checked writable and cleaned."""
    index, count = shard
    stored = {c.key for c in configs if store.get(c) is not None}
    if len(stored) < len(configs):
        check_data(configs)
        store.check_writable()
        store.clean()
    return [c for c in configs[index::count] if c.key not in stored]


def _sweep_ranks(configs: list[Config], store: results.RecordStore, *, progress: bool, shard: tuple[int, int],
                 train: bool, desc: str) -> pd.DataFrame:
    """:func:`sweep` under torchrun: every rank trains the same runs together (each on its share of every batch),
    in the order rank 0 decides from the store; only rank 0 checks, writes and shows progress. No claims: the
    ranks of one group act as one process."""
    rank, _ = distributed.rank_and_world()
    todo = [c.key for c in _to_train(configs, store, shard)] if rank == 0 and train else None
    todo = distributed.broadcast(todo) or []
    by_key = {c.key: c for c in configs}
    for key in tqdm(todo, desc=desc, unit="run", disable=not _bars(progress) or rank != 0 or not todo,
                    file=TERMINAL):
        record = run(by_key[key])
        if rank == 0:
            store.put(record)
    return _frame(configs, store)


def _frame(configs: list[Config], store: results.RecordStore) -> pd.DataFrame:
    """Every stored record of the grid as a frame; ``attrs`` locate them and count what is missing."""
    records = [r for r in (store.get(c) for c in configs) if r is not None]
    df = results.frame(records)
    df.attrs.update(requested=len(configs), missing=len(configs) - len(records), store=str(store.root),
                    keys=[r.key for r in records])
    return df


def _label(config: Config) -> str:
    hp = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.hparams.items())
    return f"{config.method}[{hp}] {config.activation} seed={config.seed}"
