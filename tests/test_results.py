"""The record store and the sweep: atomic writes, resume after a kill, no mixing of configs, read-only use."""
import io
import json
import os
import sys

import pytest

import hessreg as hr
from hessreg import repo, results, sweep
from hessreg.sweep import grid

TINY = hr.Config(train_size=128, test_size=64, model="mlp-16x1", epochs=1, batch_size=64, device="cpu",
                 augment=False)


def test_put_get_roundtrip(tmp_path):
    store = hr.RecordStore(tmp_path)
    r = hr.run(TINY)
    store.put(r)
    assert TINY in store and len(store) == 1
    back = store.get(TINY)
    assert back.to_dict() == r.to_dict()
    assert store.get(TINY.replace(seed=9)) is None


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    repo.write_atomic(path, "old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk died")))
    with pytest.raises(OSError):
        repo.write_atomic(path, b"new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_store_refuses_a_record_under_another_key(tmp_path):
    store = hr.RecordStore(tmp_path)
    store.put(hr.run(TINY))
    other = TINY.replace(seed=5)
    os.rename(store.path(TINY), store.path(other))
    with pytest.raises(ValueError, match="not"):
        store.get(other)


def test_sweep_resumes_after_interruption_with_nothing_lost(tmp_path, monkeypatch):
    store = hr.RecordStore(tmp_path)
    configs = grid(TINY, seed=[0, 1, 2])
    calls = []
    real_run = sweep.run

    def dying_run(config):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed during the third run
        calls.append(config.seed)
        return real_run(config)

    monkeypatch.setattr(sweep, "run", dying_run)
    with pytest.raises(KeyboardInterrupt):
        sweep.sweep(configs, store, progress=False)
    assert len(store) == 2 and not list(tmp_path.glob(".*tmp"))
    monkeypatch.setattr(sweep, "run", lambda c: calls.append(c.seed) or real_run(c))
    df = sweep.sweep(configs, store, progress=False)
    assert calls == [0, 1, 2] and len(df) == 3 and sorted(df["seed"]) == [0, 1, 2]
    monkeypatch.setattr(sweep, "run", lambda c: pytest.fail("a stored run was retrained"))
    assert len(sweep.sweep(configs, store, progress=False)) == 3


def test_grid_axes_and_hparams_and_validation_before_training(tmp_path):
    configs = grid(TINY, activation=["relu", "gelu"], seed=[0, 1])
    assert len(configs) == 4 and {c.activation for c in configs} == {"relu", "gelu"}
    with pytest.raises(ValueError, match="no hyperparameter"):
        grid(TINY, rho=[0.1])  # sgd has no rho: fails while building the grid
    with pytest.raises(TypeError, match="list of values"):
        grid(TINY, seed=3)
    assert len(list(tmp_path.iterdir())) == 0


def test_sweep_read_only_and_frame(tmp_path):
    store = hr.RecordStore(tmp_path)
    configs = grid(TINY, seed=[0, 1])
    df = sweep.sweep(configs, store, train=False, progress=False)
    assert df.empty and df.attrs["missing"] == 2
    sweep.sweep(configs[:1], store, progress=False)
    df = sweep.sweep(configs + configs, store, train=False, progress=False)  # duplicates collapse
    assert len(df) == 1 and df.attrs["missing"] == 1
    assert {"test_acc", "seed", "activation", "commit", "diverged", "key"} <= set(df.columns)


def test_sharded_sweeps_split_the_work(tmp_path):
    store = hr.RecordStore(tmp_path)
    configs = grid(TINY, seed=[0, 1, 2])
    sweep.sweep(configs, store, shard=(0, 2), progress=False)
    assert len(store) == 2
    sweep.sweep(configs, store, shard=(1, 2), progress=False)
    assert len(store) == 3
    with pytest.raises(ValueError, match="shard"):
        sweep.sweep(configs, store, shard=(2, 2))


def test_stored_json_is_strict(tmp_path):
    store = hr.RecordStore(tmp_path)
    path = store.put(hr.run(TINY))
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_every_committed_record_is_found_by_its_key():
    """Config.key must not move for a valid config: each committed record's key, recomputed from its stored config
    (validated again as it is built), is its file name. Read-only: nothing under results/records is written."""
    paths = sorted(results.store_for("cpu").root.glob("*.json"))
    assert paths, "no committed records"
    for path in paths:
        d = json.loads(path.read_text())
        assert hr.Config.from_dict(d["config"]).key == d["key"] == path.stem, path


def test_stale_temporary_and_claim_files_are_invisible_and_cleaned(tmp_path):
    store = hr.RecordStore(tmp_path)
    path = store.put(hr.run(TINY))
    (tmp_path / f".{path.name}.abc123.tmp").write_text('{"key": "trunc')  # a write killed before its rename
    (tmp_path / f"{TINY.replace(seed=7).key}.lock").write_text("12345 elsewhere\n")  # a claim of a dead process
    assert len(store) == 1 and [r.key for r in store] == [TINY.key]
    assert store.clean(min_age_s=3600) == [tmp_path / f"{TINY.replace(seed=7).key}.lock"]  # the temp file is young
    assert [p.name for p in store.clean(min_age_s=0)] == [f".{path.name}.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == [path.name] and oct(path.stat().st_mode & 0o777) == "0o644"


def test_a_claim_is_exclusive_and_a_dead_holder_s_claim_is_taken_over(tmp_path):
    store = hr.RecordStore(tmp_path)
    with store.claim(TINY) as held:
        assert held and str(os.getpid()) in store.claimant(TINY)
        fd = os.open(tmp_path / f"{TINY.key}.lock", os.O_RDWR)  # another process's view: the flock is taken
        import fcntl
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    assert store.claimant(TINY) == "" and list(tmp_path.iterdir()) == []
    (tmp_path / f"{TINY.key}.lock").write_text("999999 a-dead-host\n")  # left by a killed process: no flock
    with store.claim(TINY) as held:
        assert held and store.claimant(TINY).startswith(str(os.getpid()))


def test_progress_bars_go_to_a_terminal_only(tmp_path, capfd, monkeypatch):
    """In a notebook sys.stdout and sys.stderr are the cell's output, and ipykernel forwards file descriptor 2 there
    too: the sweep draws its bars on the process's own stderr only when that is a terminal."""
    assert sweep.TERMINAL is sys.__stderr__
    monkeypatch.setattr(sweep, "TERMINAL", io.StringIO())  # not a terminal, as in a kernel or a log
    sweep.sweep(grid(TINY, seed=[0]), hr.RecordStore(tmp_path / "a"), progress=True)
    out, err = capfd.readouterr()
    assert "run/s" not in out + err and "%|" not in out + err
    bars = []
    terminal = type("Terminal", (), {"isatty": lambda self: True, "write": lambda self, s: bars.append(s),
                                     "flush": lambda self: None})()
    monkeypatch.setattr(sweep, "TERMINAL", terminal)
    sweep.sweep(grid(TINY, seed=[1]), hr.RecordStore(tmp_path / "b"), progress=True)
    out, err = capfd.readouterr()
    assert "1/1" in "".join(bars) and "%|" not in out + err  # drawn on the terminal, not in the output
